//! The HTTP listeners: the console's address (for now a status page and a
//! JSON status; the console proper is its own issue) and the Prometheus
//! endpoint. Neither shows any record about a person: only counts.

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use sheepdog_store::Store;
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
struct ConsoleState {
    store: Store,
    school_label: String,
}

/// Serves the console address until `shutdown` completes.
pub async fn serve_console(
    listener: TcpListener,
    store: Store,
    school_label: String,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = Router::new()
        .route("/", get(status_page))
        .route("/healthz", get(healthz))
        .route("/api/v1/status", get(status_json))
        .with_state(ConsoleState {
            store,
            school_label,
        });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
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

async fn healthz(State(state): State<ConsoleState>) -> Response {
    metrics::counter!("sheepdog_http_requests_total", "route" => "healthz").increment(1);
    match state.store.census().await {
        Ok(_) => (StatusCode::OK, "ok\n").into_response(),
        Err(error) => {
            tracing::error!(%error, "health check: database unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response()
        }
    }
}

async fn status_json(State(state): State<ConsoleState>) -> Response {
    metrics::counter!("sheepdog_http_requests_total", "route" => "status").increment(1);
    match state.store.census().await {
        Ok(census) => Json(serde_json::json!({
            "school": state.school_label,
            "version": env!("CARGO_PKG_VERSION"),
            "records": census,
        }))
        .into_response(),
        Err(error) => {
            tracing::error!(%error, "status: database unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response()
        }
    }
}

async fn status_page(State(state): State<ConsoleState>) -> Response {
    metrics::counter!("sheepdog_http_requests_total", "route" => "status_page").increment(1);
    let census = match state.store.census().await {
        Ok(census) => census,
        Err(error) => {
            tracing::error!(%error, "status page: database unavailable");
            return (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response();
        }
    };
    let rows = [
        ("Schools", census.schools),
        ("Pupils", census.pupils),
        ("Staff", census.staff),
        ("Parents and carers", census.parents),
        ("Groups", census.groups),
        ("Devices", census.devices),
        ("Console accounts", census.accounts),
    ]
    .iter()
    .map(|(label, count)| format!("<tr><th scope=\"row\">{label}</th><td>{count}</td></tr>"))
    .collect::<String>();
    let page = format!(
        "<!doctype html>\n<html lang=\"en-GB\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>sheepdog — {school}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;color:#1b1b1b}}\
         table{{border-collapse:collapse}}th,td{{padding:.3rem 1rem;border-bottom:1px solid #ccc;text-align:left}}</style>\
         </head><body><main><h1>sheepdog</h1><p>{school}</p>\
         <table><caption>Records held</caption>{rows}</table>\
         <p>The signed-in console is not part of this build yet. \
         Metrics are on the metrics address at <code>/metrics</code>.</p></main></body></html>\n",
        school = escape(&state.school_label),
    );
    Html(page).into_response()
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

/// Escapes text for HTML.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}
