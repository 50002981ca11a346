//! Logs (tracing) and metrics (Prometheus).

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sheepdog_config::{Config, LogFormat};
use tracing_subscriber::EnvFilter;

/// The log format chosen on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Starts logging to standard error. `RUST_LOG` overrides the configured
/// level for debugging.
pub fn init_logs(config: &Config, format: Option<Format>) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(config.log.level.to_string()));
    let json = match format {
        Some(Format::Json) => true,
        Some(Format::Text) => false,
        None => config.log.format == LogFormat::Json,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second initialisation (as in tests) keeps the first subscriber.
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

/// Installs the Prometheus recorder and describes sheepdog's own metrics.
pub fn init_metrics() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new().install_recorder()?;
    metrics::describe_gauge!("sheepdog_up", "1 while sheepdog is serving");
    metrics::describe_gauge!("sheepdog_records", "records held, by kind");
    metrics::describe_counter!(
        "sheepdog_http_requests_total",
        "console requests served, by route"
    );
    metrics::gauge!("sheepdog_up").set(1.0);
    Ok(handle)
}
