//! sheepdog's filtering web proxy.
//!
//! An explicit HTTP/1.1 proxy that browsers reach through their proxy
//! settings, a PAC file or WPAD. Like the DNS server it is thin: it turns
//! requests into [`sheepdog_policy::Query`]s and decisions into forwarded
//! responses, block pages and [`sheepdog_events::DecisionEvent`]s (source
//! `proxy`), with the same identity map.
//!
//! - [`server`] accepts connections, refuses clients outside the configured
//!   networks with 403 (never an open proxy), and serves HTTP/1.1 with
//!   hyper under the configured limits: request line (414), header bytes
//!   and count (431), and the time to send a request head (408); each
//!   closes the connection.
//! - [`proxy`] is the handler: plain `http://` requests are decided on the
//!   full URL and forwarded with keep-alive on both sides; CONNECT is
//!   decided on its host and then on the TLS server name read from the
//!   client's ClientHello ([`sni`]); the proxy's own pages (PAC, WPAD, the
//!   report form's target) are served locally.
//! - [`request`] checks CONNECT targets and URL authorities, [`search`]
//!   finds search terms in URLs, and [`page`] renders the block page,
//!   its reference number and the PAC file.
//!
//! The hot path never waits on the database: the identity map and the
//! policy are in memory behind atomic swaps, and events go to the bounded
//! channel of `sheepdog-events`.

#![forbid(unsafe_code)]

pub mod auth;
pub mod ca;
pub mod inspect;
pub mod page;
pub mod proxy;
pub mod reading;
pub mod request;
pub mod search;
pub mod server;
pub mod sni;
pub mod splice;
pub mod transparent;
pub mod upstream;
/// The warn action's acknowledgements, shared with the DNS server.
pub use sheepdog_events::warning;

pub use auth::{Authenticator, ProxyUser, Verification};
pub use ca::CertificateAuthority;
pub use inspect::Inspection;
pub use proxy::{GuestPortal, Proxy, ProxySettings, PORTAL_PATH};
pub use server::ProxyServer;

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot listen for proxy connections on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// Why TLS inspection cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(
        "{0} already exists: devices trust it, so it is kept; \
         run `sheepdog ca init --replace` only to make a new one and reinstall it everywhere"
    )]
    Exists(std::path::PathBuf),
    #[error("cannot read {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Parse {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error(
        "{path} may be read by other users (mode {mode:o}); whoever reads it can read \
         inspected traffic: run `chmod 600 {path}`"
    )]
    KeyPermissions { path: std::path::PathBuf, mode: u32 },
    #[error("cannot make a certificate: {0}")]
    Mint(rcgen::Error),
    #[error("cannot use a minted key: {0}")]
    Key(String),
    #[error("TLS settings: {0}")]
    Tls(String),
}
