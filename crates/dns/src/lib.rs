//! sheepdog's filtering DNS resolver.
//!
//! The server a school's DHCP hands out. It is thin, as the design asks: it
//! translates packets into [`sheepdog_policy::Query`]s and decisions into
//! answers and [`sheepdog_events::DecisionEvent`]s, and nothing else.
//!
//! - [`server`] listens on UDP (one `SO_REUSEPORT` socket per core) and
//!   TCP. A UDP question that needs no upstream (a block, a cache hit) is
//!   answered in the socket's receive loop; only one for the upstream gets
//!   a task, as does each TCP connection, with limits on both so a flood
//!   cannot exhaust memory.
//! - [`resolver`] is the request handler: it reads a plain query (one
//!   question, perhaps an OPT record: nearly every one) straight from the
//!   packet's bytes (`plain`) and parses anything else with `hickory-proto`,
//!   answers malformed packets with FORMERR (or drops them when not even a
//!   header can be read), finds the client's identity, asks the engine, and
//!   answers: a block answer, a safe-search rewrite, the DoH canary, or the
//!   upstream's answer once every name in its CNAME chain has been checked.
//! - [`cache`] is the shared answer cache (TTL clamps, RFC 2308 negative
//!   caching) and [`upstream`] forwards with per-attempt timeouts, failover
//!   and an overall deadline, after which the client gets SERVFAIL;
//!   identical questions in flight share one upstream exchange.
//! - [`safesearch`] maps search-engine hosts to their enforced hosts (F4).
//!
//! The hot path never waits on the database: the identity map and the
//! policy are in memory behind atomic swaps, and events go to a bounded
//! channel that drops (and counts) rather than block.

#![forbid(unsafe_code)]

mod batch;
pub mod cache;
mod plain;
pub mod resolver;
pub mod safesearch;
pub mod server;
pub mod upstream;

pub use resolver::{Immediate, Resolver, ResolverSettings, Transport};
pub use server::DnsServer;

/// Why the DNS server could not start or answer.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("cannot listen for DNS on {addr} ({transport}): {source}")]
    Bind {
        addr: std::net::SocketAddr,
        transport: &'static str,
        source: std::io::Error,
    },
    #[error("DNS message: {0}")]
    Proto(#[from] hickory_proto::ProtoError),
    #[error("upstream {upstream}: {source}")]
    Upstream {
        upstream: String,
        source: std::io::Error,
    },
    #[error("upstream {upstream} answered a different question")]
    Mismatch { upstream: String },
}
