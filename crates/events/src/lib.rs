//! Decision events for sheepdog: the one schema the DNS server and the proxy
//! share, the way events leave the hot path, and who is behind an address.
//!
//! The flow is: a server builds a [`DecisionEvent`] and hands it to an
//! [`EventSink`], which never blocks — when the bounded channel is full the
//! event is dropped and counted (`sheepdog_events_dropped_total`). The
//! [`EventWriter`] task collects events into batches and writes each batch
//! to the store in one transaction. While the database is unavailable, or
//! cannot keep up (a quarter of the channel waiting), batches go to a
//! [`Spool`] of checksummed binary frames under `DATA/spool/`, which the
//! writer replays, oldest first, once the database answers again and
//! events arrive at less than half the rate it absorbs them. The spool has
//! a size limit, past which events are dropped and counted. The writer
//! also prunes events older than the configured retention.
//!
//! The [`warning`] module keeps who chose to continue past a warning
//! page; the proxy records it and the DNS server honours it, through the
//! identity resolver both share.
//!
//! The [`identity`] module maps a client address to its device, person and
//! policy group. It lives here rather than in a crate of its own because it
//! is small, and both servers need it exactly where they build events: the
//! identity is what makes an event attributable (F6, M8).
//!
//! The event struct itself is defined in `sheepdog-store` and re-exported
//! here: the store keeps the table it maps to, and the store cannot depend
//! on this crate, which writes through it.

#![forbid(unsafe_code)]

mod frame;
pub mod guest;
pub mod identity;
mod spool;
pub mod warning;
mod writer;

pub use guest::{GuestNetworks, CAPTIVE_GROUP};
pub use identity::{Identity, IdentityMap, IdentityResolver, UNSIGNED_GROUP};
pub use sheepdog_store::{DecisionEvent, EventFilter, EventSource};
pub use spool::{ReplayReport, Spool};
pub use warning::Warnings;
pub use writer::{EventSink, EventWriter, WriterOptions, WriterStats};

/// Why an event operation failed.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("event spool {path}: {source}")]
    Spool {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot encode an event for the spool: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("event spool {dir} is full ({limit} bytes, [events] spool_max_mb): events are dropped until the database catches up; raise the limit or free the database")]
    SpoolFull { dir: std::path::PathBuf, limit: u64 },
    #[error(transparent)]
    Store(#[from] sheepdog_store::StoreError),
    #[error("`{value}` is not an IP address or range in device {device}; write 10.0.4.17 or 10.0.4.0/24")]
    BadAddress { device: String, value: String },
}

impl EventError {
    pub(crate) fn spool(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Spool {
            path: path.to_path_buf(),
            source,
        }
    }
}
