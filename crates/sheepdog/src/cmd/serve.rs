//! `sheepdog serve`: production.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use sheepdog_config::Config;
use sheepdog_policy::Engine;
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
    let engine = load_filtering(&config)?;
    if engine.is_some() {
        let doc = sheepdog_policy::PolicyDocument::load(&config.filtering.policy)?;
        super::policy::record_unapplied_edits(&store, &doc).await?;
    }
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
    let dns = start_dns(&config, &store, engine.as_ref()).await?;
    if let Some(engine) = &engine {
        super::dns::warn_of_unsteered_url_rules(&config, engine);
    }
    let _requests = match &engine {
        Some(engine) => Some(super::requests::spawn_exception_refresh(
            engine.clone(),
            sheepdog_policy::PolicyDocument::load(&config.filtering.policy)?,
            store.clone(),
            super::requests::REFRESH,
        )),
        None => None,
    };
    let _lists = match &engine {
        Some(engine) => Some(super::list_refresh::spawn(
            engine.clone(),
            &config.filtering.policy,
            &config.data_dir,
            std::time::Duration::from_secs(u64::from(config.filtering.list_check_seconds)),
            super::list_refresh::BuildPlace::child_of_this_program(),
        )?),
        None => None,
    };
    let proxy = start_proxy(&config, &store, engine.as_ref(), dns.as_ref()).await?;
    let filtering = match &engine {
        Some(engine) => Some(super::requests::console_filtering(&config, engine.clone())?),
        None => None,
    };
    run_servers(
        &config,
        store,
        dns,
        proxy,
        console,
        metrics,
        filtering,
        label,
        super::shutdown_signal(),
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// Starts the DNS resolver when `[dns]` is enabled and a policy is loaded.
pub async fn start_dns(
    config: &Config,
    store: &Store,
    engine: Option<&Arc<Engine>>,
) -> anyhow::Result<Option<super::dns::DnsRuntime>> {
    match (config.dns.enabled, engine) {
        (true, Some(engine)) => {
            let dns = super::dns::start(config, store.clone(), engine.clone()).await?;
            tracing::info!(udp = %dns.udp_addr(), tcp = %dns.tcp_addr(), "DNS resolver answering");
            Ok(Some(dns))
        }
        (true, None) => {
            tracing::warn!(
                "the DNS resolver is not started: it has no filtering policy to enforce"
            );
            Ok(None)
        }
        (false, _) => Ok(None),
    }
}

/// Starts the web proxy when `[proxy]` is enabled and a policy is loaded.
pub async fn start_proxy(
    config: &Config,
    store: &Store,
    engine: Option<&Arc<Engine>>,
    dns: Option<&super::dns::DnsRuntime>,
) -> anyhow::Result<Option<super::proxy::ProxyRuntime>> {
    match (config.proxy.enabled, engine) {
        (true, Some(engine)) => {
            let proxy = super::proxy::start(config, store.clone(), engine.clone(), dns).await?;
            tracing::info!(address = %proxy.addr(), "web proxy serving");
            Ok(Some(proxy))
        }
        (true, None) => {
            tracing::warn!("the web proxy is not started: it has no filtering policy to enforce");
            Ok(None)
        }
        (false, _) => Ok(None),
    }
}

/// The filtering engine, when the configuration names a policy that exists.
/// Without one sheepdog still keeps records, and says loudly that nothing
/// is being filtered.
pub fn load_filtering(config: &Config) -> anyhow::Result<Option<Arc<Engine>>> {
    let policy = &config.filtering.policy;
    if !policy.is_file() {
        tracing::warn!(policy = %policy.display(), "no filtering policy: nothing is filtered until one is written ([filtering] policy)");
        return Ok(None);
    }
    let engine = super::lists::load_engine(policy, &config.data_dir)?;
    let snapshot = engine.current().snapshot().clone();
    for list in snapshot.lists() {
        if list.legal_requirement && list.report.entries == 0 {
            tracing::error!(list = %list.name, "a legally required list has no entries: illegal content from it is NOT blocked");
        }
    }
    tracing::info!(policy = %policy.display(), names = snapshot.stats().names, "filtering policy loaded");
    Ok(Some(Arc::new(engine)))
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
// One parameter per listener: clearer at the two call sites than a struct.
#[allow(clippy::too_many_arguments)]
pub async fn run_servers(
    config: &Config,
    store: Store,
    dns: Option<super::dns::DnsRuntime>,
    mut proxy: Option<super::proxy::ProxyRuntime>,
    console: TcpListener,
    metrics: Option<TcpListener>,
    filtering: Option<sheepdog_console::Filtering>,
    label: String,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let (stop, stopped) = watch::channel(false);
    let until_stopped = |mut receiver: watch::Receiver<bool>| async move {
        let _ = receiver.wait_for(|stop| *stop).await;
    };
    let mut settings = sheepdog_console::ConsoleSettings::from_config(&config.console)?;
    // The certificate only: the key never leaves the proxy.
    settings.inspection_certificate = std::fs::read_to_string(config.inspection_files().0).ok();
    let tls = web::console_tls(config)?;
    let key = web::evidence_key(&config.data_dir)?;
    let sealed = store.seal_two_factor_secrets(&key).await?;
    if sealed > 0 {
        tracing::info!(sealed, "sealed two-factor secrets kept by an older version");
    }
    // The live monitor compiles the school's libraries and hands them to
    // the console too, for text other sources send it.
    let (libraries_compiled, libraries) = watch::channel(None);
    tracing::info!(school = %label, tls = tls.is_some(), "console starting");
    let mut tasks = tokio::task::JoinSet::new();
    let mut state = sheepdog_console::ConsoleState::new(
        store.clone(),
        web::console_settings(settings, tls.as_ref()),
    )
    .with_evidence_key(key)
    .with_monitoring(libraries);
    if let Some(filtering) = filtering {
        state = state.with_filtering(filtering);
    }
    tasks.spawn(web::serve_console(
        console,
        state,
        tls,
        until_stopped(stopped.clone()),
    ));
    let pages = proxy
        .as_mut()
        .and_then(super::proxy::ProxyRuntime::take_pages);
    tasks.spawn(super::monitor::follow_events(
        config.notify.clone(),
        config.monitoring.clone(),
        libraries_compiled,
        pages,
        store.clone(),
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
    // The proxy and DNS stop before the store closes, so their queued
    // events are written; the proxy first, as it may share DNS's writer.
    if let Some(proxy) = proxy {
        proxy.shutdown().await;
    }
    if let Some(dns) = dns {
        dns.shutdown().await?;
    }
    store.close().await;
    Ok(())
}
