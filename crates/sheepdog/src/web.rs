//! The HTTP listeners: the console (pages, sign-in and the JSON API, all
//! in `sheepdog-console`) and the Prometheus endpoint, which shows only
//! counts, never a record about a person.

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use sheepdog_console::{ConsoleSettings, ConsoleState};
use sheepdog_store::Store;
use tokio::net::TcpListener;

/// Serves the console with its default settings until `shutdown`
/// completes; `sheepdog_console::serve` with settings from `[console]` is
/// the configurable form. The school label is now worked out by the
/// console itself from the store.
pub async fn serve_console(
    listener: TcpListener,
    store: Store,
    settings: ConsoleSettings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let state = ConsoleState::new(store, settings);
    sheepdog_console::serve(listener, state, shutdown).await
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
