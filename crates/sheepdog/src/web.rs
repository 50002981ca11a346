//! The HTTP listeners: the console (pages, sign-in and the JSON API, all
//! in `sheepdog-console`) and the Prometheus endpoint, which shows only
//! counts, never a record about a person.

use std::net::SocketAddr;
use std::path::Path;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use sheepdog_config::Config;
use sheepdog_console::tls::ConsoleCertificate;
use sheepdog_console::{ConsoleSettings, ConsoleState};
use sheepdog_store::incidents::EvidenceKey;
use sheepdog_store::Store;
use tokio::net::TcpListener;

/// Serves the console until `shutdown` completes: over TLS when `tls`
/// holds a certificate (see [`console_tls`]), else plain HTTP.
pub async fn serve_console(
    listener: TcpListener,
    state: ConsoleState,
    tls: Option<ConsoleCertificate>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    match tls {
        Some(certificate) => {
            sheepdog_console::serve_tls(listener, certificate.config, state, shutdown).await
        }
        None => sheepdog_console::serve(listener, state, shutdown).await,
    }
}

/// The console's settings once its listener is known: a console served
/// over TLS sets secure cookies, and says so on every page when its
/// certificate is one it made itself.
pub fn console_settings(
    settings: ConsoleSettings,
    tls: Option<&ConsoleCertificate>,
) -> ConsoleSettings {
    match tls {
        Some(certificate) => ConsoleSettings {
            secure_cookies: true,
            self_signed_certificate: certificate.self_signed,
            ..settings
        },
        None => settings,
    }
}

/// The key incident evidence, governance files and two-factor secrets are
/// sealed with: `evidence.key` in the data directory, made on first start,
/// readable by its owner alone. It is kept beside the database, not in it,
/// so a copy of the database alone reveals neither evidence nor anyone's
/// second factor; back both up together.
pub fn evidence_key(data_dir: &Path) -> anyhow::Result<EvidenceKey> {
    use anyhow::Context;
    let path = data_dir.join("evidence.key");
    match std::fs::read(&path) {
        Ok(bytes) => Ok(EvidenceKey::from_bytes(&bytes)
            .with_context(|| format!("evidence key {}", path.display()))?),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            crate::cmd::create_private_dir(data_dir)?;
            let key = EvidenceKey::generate()?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options
                .open(&path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            std::io::Write::write_all(&mut file, &key.to_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
            tracing::info!(key = %path.display(), "made a new evidence key; back it up with the database");
            Ok(key)
        }
        Err(error) => {
            Err(anyhow::Error::new(error).context(format!("cannot read {}", path.display())))
        }
    }
}

/// The console's certificate as `[console]` asks: none when `tls` is off,
/// the configured PEM pair, or the self-signed one kept in the data
/// directory (made now on first start).
pub fn console_tls(config: &Config) -> anyhow::Result<Option<ConsoleCertificate>> {
    let console = &config.console;
    if !console.tls {
        return Ok(None);
    }
    let configured = (!console.tls_certificate.trim().is_empty()).then(|| {
        (
            Path::new(console.tls_certificate.trim()),
            Path::new(console.tls_key.trim()),
        )
    });
    let mut names = vec!["localhost".to_string()];
    let ip = console.listen.ip();
    if !ip.is_unspecified() {
        names.push(ip.to_string());
    }
    if let Ok(host) = std::fs::read_to_string("/etc/hostname") {
        let host = host.trim();
        if !host.is_empty() {
            names.push(host.to_string());
        }
    }
    let certificate =
        sheepdog_console::tls::load_or_generate(configured, &config.data_dir, &names)?;
    if certificate.self_signed {
        tracing::warn!(
            certificate = %certificate.certificate_path.display(),
            "the console's certificate is self-signed; set [console] tls_certificate and tls_key"
        );
    }
    Ok(Some(certificate))
}

/// Serves `/metrics` until `shutdown` completes.
pub async fn serve_metrics(
    listener: TcpListener,
    handle: PrometheusHandle,
    store: Store,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = Router::new()
        .route("/metrics", get(metrics_text))
        .with_state((handle, store));
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Binds `address`, or when `fallback` is set and the port is taken, any
/// free port on the same host (the demo must start beside other programs).
pub async fn bind(address: SocketAddr, fallback: bool) -> std::io::Result<TcpListener> {
    match TcpListener::bind(address).await {
        Ok(listener) => Ok(listener),
        Err(error) if fallback && error.kind() == std::io::ErrorKind::AddrInUse => {
            TcpListener::bind(SocketAddr::new(address.ip(), 0)).await
        }
        Err(error) => Err(error),
    }
}

async fn metrics_text(State((handle, store)): State<(PrometheusHandle, Store)>) -> Response {
    if let Ok(census) = store.census().await {
        for (kind, count) in [
            ("pupil", census.pupils),
            ("staff", census.staff),
            ("parent", census.parents),
            ("device", census.devices),
        ] {
            metrics::gauge!("sheepdog_records", "kind" => kind).set(count as f64);
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}
