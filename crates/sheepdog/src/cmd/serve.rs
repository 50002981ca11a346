//! `sheepdog serve`: production.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use sheepdog_config::Config;
use sheepdog_store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::{telemetry, web};

pub async fn run(
    config_path: &Path,
    format: Option<telemetry::Format>,
) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config_path)?;
    telemetry::init_logs(&config, format);
    let store = super::open_store(&config).await?;
    let label = school_label(&store).await?;
    let console = web::bind(config.console.listen, false)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} ([console] listen)",
                config.console.listen
            )
        })?;
    let metrics = if config.metrics.enabled {
        Some(
            web::bind(config.metrics.listen, false)
                .await
                .with_context(|| {
                    format!(
                        "cannot listen on {} ([metrics] listen)",
                        config.metrics.listen
                    )
                })?,
        )
    } else {
        None
    };
    tracing::info!(console = %config.console.listen, school = %label, "sheepdog is serving");
    run_servers(
        &config,
        store,
        console,
        metrics,
        label,
        super::shutdown_signal(),
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// "Name" for one school, "N schools" for a trust.
pub async fn school_label(store: &Store) -> anyhow::Result<String> {
    let schools = store.schools().await?;
    Ok(match schools.as_slice() {
        [] => "no school set up yet: run `sheepdog init`".to_string(),
        [one] => one.name.clone(),
        many => format!("{} schools", many.len()),
    })
}

/// Runs every listener until `shutdown` completes, then stops them all and
/// closes the store.
pub async fn run_servers(
    _config: &Config,
    store: Store,
    console: TcpListener,
    metrics: Option<TcpListener>,
    label: String,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let (stop, stopped) = watch::channel(false);
    let until_stopped = |mut receiver: watch::Receiver<bool>| async move {
        let _ = receiver.wait_for(|stop| *stop).await;
    };
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(web::serve_console(
        console,
        store.clone(),
        label,
        until_stopped(stopped.clone()),
    ));
    if let Some(listener) = metrics {
        let handle = telemetry::init_metrics()?;
        tasks.spawn(web::serve_metrics(
            listener,
            handle,
            store.clone(),
            until_stopped(stopped.clone()),
        ));
    }
    tokio::select! {
        () = shutdown => tracing::info!("stopping"),
        Some(result) = tasks.join_next() => {
            result??;
            anyhow::bail!("a listener stopped unexpectedly");
        }
    }
    let _ = stop.send(true);
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    store.close().await;
    Ok(())
}
