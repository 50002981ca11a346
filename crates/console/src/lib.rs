//! sheepdog's web console: the pages that designated safeguarding leads,
//! headteachers, technicians, teachers, office staff and governors use, and
//! the JSON API that mirrors them.
//!
//! Pages are rendered on the server and work without JavaScript. Every
//! request is authenticated by [`auth`]: browser sessions live in the store
//! (only a hash of the cookie's token is kept), carry a per-session token
//! that every form must send back, time out when idle and end after a fixed
//! lifetime; roles that can see safeguarding data or change filtering must
//! use TOTP two-factor authentication. What each role may do is one table in
//! [`roles`], documented in `docs/console.md` and tested route by route.
//! Every view of a person's record is written to the audit log.
//!
//! The binary builds a [`ConsoleState`] from the store and the `[console]`
//! configuration and hands a listener to [`serve`].

#![forbid(unsafe_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use sheepdog_config::ConsoleConfig;
use sheepdog_store::incidents::EvidenceKey;
use sheepdog_store::{StaffRole, Store};
use tokio::net::TcpListener;

mod alerts;
mod api;
pub mod auth;
mod certificate;
mod dashboard;
mod error;
mod governance;
mod html;
mod incidents;
mod ingest;
mod logs;
mod pages;
pub mod password;
pub mod requests;
pub mod roles;
mod secrets;
pub mod tls;

pub use error::ConsoleError;
pub use requests::Filtering;

/// How sign-in sessions behave; [`ConsoleSettings::from_config`] reads them
/// from the `[console]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSettings {
    /// A session unused this long is signed out.
    pub idle_timeout: chrono::Duration,
    /// A session ends this long after sign-in however active it is.
    pub session_lifetime: chrono::Duration,
    /// Roles that must use two-factor authentication.
    pub two_factor_roles: Vec<StaffRole>,
    /// Whether cookies carry `Secure`: true when the console is reached over
    /// TLS, which browsers require for such cookies.
    pub secure_cookies: bool,
    /// Whether the console serves a certificate it made itself: every page
    /// then says so.
    pub self_signed_certificate: bool,
    /// The proxy's inspection authority certificate (PEM), offered for
    /// download when HTTPS inspection is set up.
    pub inspection_certificate: Option<String>,
}

/// What every request handler shares: the store and the settings.
#[derive(Debug, Clone)]
pub struct ConsoleState {
    inner: Arc<Inner>,
}

#[derive(Debug, Clone)]
struct Inner {
    store: Store,
    settings: ConsoleSettings,
    /// Seals incident evidence at rest; without it evidence cannot be
    /// uploaded or opened, and the pages say so.
    evidence_key: Option<EvidenceKey>,
    /// The running filter, when a policy is configured (requests, the
    /// policy document).
    filtering: Option<Filtering>,
    /// The keyword libraries monitoring reads with: the shipped ones and
    /// the school's (`[monitoring] libraries`); without it, ingested text
    /// is read with the shipped libraries alone.
    monitoring: Option<MonitoringLibraries>,
}

/// The keyword libraries live monitoring reads with, once compiled: the
/// live monitor compiles them as it starts and sends them here, so that
/// the console's start does not wait for them.
pub type MonitoringLibraries = tokio::sync::watch::Receiver<Option<Arc<sheepdog_monitor::Matcher>>>;

impl ConsoleSettings {
    /// The settings a `[console]` section asks for.
    pub fn from_config(config: &ConsoleConfig) -> Result<Self, ConsoleError> {
        let two_factor_roles = config
            .require_two_factor_roles
            .iter()
            .map(|role| {
                role.parse::<StaffRole>()
                    .map_err(|_| ConsoleError::Settings(format!("`{role}` is not a role")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            idle_timeout: chrono::Duration::minutes(i64::from(config.idle_timeout_minutes.max(1))),
            session_lifetime: chrono::Duration::hours(i64::from(
                config.session_lifetime_hours.max(1),
            )),
            two_factor_roles,
            secure_cookies: false,
            self_signed_certificate: false,
            inspection_certificate: None,
        })
    }
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        // The configuration's defaults are the console's defaults; they
        // always parse, so the fallback below is never used.
        Self::from_config(&ConsoleConfig::default()).unwrap_or(Self {
            idle_timeout: chrono::Duration::minutes(120),
            session_lifetime: chrono::Duration::hours(12),
            two_factor_roles: Vec::new(),
            secure_cookies: false,
            self_signed_certificate: false,
            inspection_certificate: None,
        })
    }
}

impl ConsoleState {
    pub fn new(store: Store, settings: ConsoleSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                settings,
                evidence_key: None,
                filtering: None,
                monitoring: None,
            }),
        }
    }

    /// The same state with one part changed.
    fn with(self, change: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Arc::unwrap_or_clone(self.inner);
        change(&mut inner);
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The same state with the key incident evidence is sealed with.
    pub fn with_evidence_key(self, key: EvidenceKey) -> Self {
        self.with(|inner| inner.evidence_key = Some(key))
    }

    /// The same console, checking requests against and applying decisions
    /// to the running filter.
    pub fn with_filtering(self, filtering: Filtering) -> Self {
        self.with(|inner| inner.filtering = Some(filtering))
    }

    /// The same console, reading ingested text with the libraries the
    /// live monitor reads decision events with, once they are compiled.
    pub fn with_monitoring(self, libraries: MonitoringLibraries) -> Self {
        self.with(|inner| inner.monitoring = Some(libraries))
    }

    pub fn evidence_key(&self) -> Option<&EvidenceKey> {
        self.inner.evidence_key.as_ref()
    }

    pub fn filtering(&self) -> Option<&Filtering> {
        self.inner.filtering.as_ref()
    }

    pub fn monitoring(&self) -> Option<&MonitoringLibraries> {
        self.inner.monitoring.as_ref()
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn settings(&self) -> &ConsoleSettings {
        &self.inner.settings
    }
}

/// The console's routes: pages, the JSON API under `/api/v1`, and the
/// unauthenticated `/healthz` and `/api/v1/status`.
pub fn router(state: ConsoleState) -> axum::Router {
    pages::routes()
        .merge(api::routes())
        .merge(certificate::routes())
        .merge(alerts::routes())
        .merge(incidents::routes())
        .merge(governance::routes())
        .merge(requests::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(axum::middleware::map_response_with_state(
            state.clone(),
            self_signed_warning,
        ))
        .with_state(state)
}

/// The banner a page carries while the certificate is self-signed.
pub const SELF_SIGNED_WARNING: &str =
    "<div class=\"warning\" role=\"alert\" id=\"tls-warning\"><p>\
    <strong>This console uses a self-signed certificate.</strong> Your browser cannot tell it from \
    an impostor's. Ask your technician to configure the school's certificate \
    (<code>[console] tls_certificate</code> and <code>tls_key</code>).</p></div>";

/// Puts [`SELF_SIGNED_WARNING`] at the top of every HTML page when the
/// certificate is self-signed.
async fn self_signed_warning(
    axum::extract::State(state): axum::extract::State<ConsoleState>,
    response: axum::response::Response,
) -> axum::response::Response {
    let is_html = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if !state.settings().self_signed_certificate || !is_html {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 16 * 1024 * 1024).await else {
        return axum::response::Response::from_parts(parts, axum::body::Body::empty());
    };
    let page = String::from_utf8_lossy(&bytes);
    let page = page.replacen(
        "<main id=\"content\">",
        &format!("<main id=\"content\">{SELF_SIGNED_WARNING}"),
        1,
    );
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    axum::response::Response::from_parts(parts, axum::body::Body::from(page))
}

/// Serves the console on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: ConsoleState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state.clone());
    let pruner = tokio::spawn(prune_sessions(state));
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    pruner.abort();
    served
}

/// Serves the console over TLS on `listener` until `shutdown` completes.
pub async fn serve_tls(
    listener: TcpListener,
    certificate: Arc<tokio_rustls::rustls::ServerConfig>,
    state: ConsoleState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let app = router(state.clone());
    // `tap_io` makes axum hand the peer's address to handlers as for TCP.
    let listener = tls::TlsListener::new(listener, certificate)?.tap_io(|_| {});
    let pruner = tokio::spawn(prune_sessions(state));
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    pruner.abort();
    served
}

/// Deletes expired sessions every few minutes, so that the table holds only
/// sessions that could still be used.
async fn prune_sessions(state: ConsoleState) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(300));
    loop {
        tick.tick().await;
        let idle_since = chrono::Utc::now() - state.settings().idle_timeout;
        if let Err(error) = state.store().prune_sessions(idle_since).await {
            tracing::warn!(%error, "cannot prune expired console sessions");
        }
    }
}

#[cfg(test)]
mod tests;
