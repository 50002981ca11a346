//! sheepdog's records behind one interface.
//!
//! Every other crate reaches the database through [`Store`]. The same build
//! speaks to an embedded SQLite file (the default: WAL journal, foreign keys
//! on, a busy timeout) or to PostgreSQL (for a trust or a large school),
//! chosen by URL, and runs the same migrations on both at start-up.
//!
//! Every change a method makes is written to the audit log in the same
//! transaction as the change itself, so a record can never change without
//! its audit entry. The audit log is chained by hashes; see [`audit`].
//!
//! Queries are written once, in the SQL both databases share, with `$1`
//! placeholders (which SQLite also reads); the few differences between the
//! dialects live in [`migrate`].

#![forbid(unsafe_code)]

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, ConnectOptions, Executor, Row, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

pub mod audit;
mod error;
mod migrate;
#[macro_use]
mod records;

mod accounts;
pub mod applied_policy;
mod console;
mod devices;
mod events;
pub mod governance;
mod groups;
pub mod incidents;
mod monitoring;
mod people;
mod reports;
pub mod requests;
mod schools;

pub use applied_policy::{AppliedPolicy, PolicyItemChange, UNAPPLIED_EDIT_REASON};
pub use audit::{Actor, AuditEntry, AuditVerification};
pub use console::{
    ApiToken, AuditFilter, ConsoleSession, NewSession, SessionStage, SignInFailures, TwoFactor,
};
pub use error::StoreError;
pub use events::{
    host_key, AddressSeen, Bucket, DecisionEvent, EventCursor, EventFilter, EventSearch,
    EventSource, EventSummary, FoundEvent, PageSeen, TargetMatch,
};
pub use monitoring::{
    Alert, AlertFilter, AlertOutcome, AlertPolicy, AlertStatus, AlertTally, KeywordFigures,
    NewAlert, PendingNotification,
};
pub use people::{ImportBatch, ImportOutcome, ImportedGuardian};
pub use records::*;
pub use reports::{BlockReport, NewBlockReport};

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// Settings for opening a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub max_connections: u32,
    pub busy_timeout: Duration,
}

/// The records of a deployment: one school or a trust of many.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
    /// Serialises this process's write transactions: SQLite allows one
    /// writer, and a deferred transaction that reads before it writes can
    /// otherwise fail to upgrade its lock.
    write_lock: Arc<Mutex<()>>,
}

/// A write transaction holding the store's write lock.
pub(crate) struct Write {
    pub tx: Transaction<'static, Any>,
    _lock: OwnedMutexGuard<()>,
}

impl Store {
    /// Opens (creating if need be) the database at `url` and brings its
    /// schema up to date.
    pub async fn open(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let dialect = Dialect::of_url(url)?;
        let url = match dialect {
            Dialect::Sqlite if !url.contains("mode=") => {
                let joiner = if url.contains('?') { '&' } else { '?' };
                format!("{url}{joiner}mode=rwc")
            }
            _ => url.to_string(),
        };
        let connect = AnyConnectOptions::from_str(&url)
            .map_err(|source| StoreError::Connect {
                url: redact(&url),
                source,
            })?
            .disable_statement_logging();
        let busy_ms = options.busy_timeout.as_millis();
        let pool_of = |connections: u32| {
            AnyPoolOptions::new()
                .max_connections(connections.max(1))
                .after_connect(move |conn, _meta| {
                    Box::pin(async move {
                        if dialect == Dialect::Sqlite {
                            // Safeguarding records must survive a power cut,
                            // so commits wait for the disk (synchronous = FULL).
                            conn.execute(
                                format!(
                                    "PRAGMA busy_timeout = {busy_ms}; PRAGMA foreign_keys = ON; \
                                     PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
                                )
                                .as_str(),
                            )
                            .await?;
                        }
                        Ok(())
                    })
                })
                .connect_with(connect.clone())
        };
        let failed = |source| StoreError::Connect {
            url: redact(&url),
            source,
        };
        // Migrations run on one connection of their own, closed before the
        // store's pool opens. A SQLite connection keeps the schema it last
        // read: one that saw a table before another connection's
        // migration altered it prepares `SELECT *` with the old columns,
        // SQLite re-prepares it with the new ones when it runs, and sqlx,
        // which sized the row from the first, panics (an index out of
        // bounds in its worker thread). Connections opened after every
        // migration never hold an old schema.
        let migrating = Self {
            pool: pool_of(1).await.map_err(failed)?,
            dialect,
            write_lock: Arc::new(Mutex::new(())),
        };
        migrate::run(&migrating).await?;
        migrating.pool.close().await;
        Ok(Self {
            pool: pool_of(options.max_connections).await.map_err(failed)?,
            dialect,
            write_lock: Arc::new(Mutex::new(())),
        })
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A pragma or setting as the database reports it, for diagnostics and
    /// tests (`journal_mode`, `foreign_keys`, `busy_timeout` on SQLite).
    pub async fn sqlite_pragma(&self, name: &str) -> Result<Option<String>, StoreError> {
        if self.dialect != Dialect::Sqlite
            || !name.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        {
            return Ok(None);
        }
        let row = sqlx::query(&format!("SELECT * FROM pragma_{name}"))
            .fetch_one(&self.pool)
            .await?;
        let value = match row.try_get::<i64, _>(0) {
            Ok(number) => number.to_string(),
            Err(_) => row.try_get::<String, _>(0)?,
        };
        Ok(Some(value))
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub(crate) async fn begin_write(&self) -> Result<Write, StoreError> {
        let lock = self.write_lock.clone().lock_owned().await;
        let mut tx = self.pool.begin().await?;
        // Take the database's write lock before the transaction reads
        // anything: a SQLite transaction that reads first and writes later
        // cannot wait for the lock and fails at once; on PostgreSQL this
        // orders writers from every process on the audit chain's head.
        sqlx::query("UPDATE audit_anchor SET touched_at = touched_at WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        Ok(Write { tx, _lock: lock })
    }
}

impl Write {
    /// Commits when the work succeeded and rolls back, before the lock is
    /// released, when it failed, so that no half-finished transaction
    /// outlives the call holding the database's write lock.
    pub(crate) async fn finish<T>(self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        match result {
            Ok(value) => {
                self.tx.commit().await?;
                Ok(value)
            }
            Err(error) => {
                if let Err(rollback) = self.tx.rollback().await {
                    tracing::warn!(%rollback, "rollback after a failed write failed");
                }
                Err(error)
            }
        }
    }
}

impl std::fmt::Debug for Write {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Write")
    }
}

impl Dialect {
    fn of_url(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Self::Postgres)
        } else {
            Err(StoreError::UnsupportedUrl { url: redact(url) })
        }
    }
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// The URL without its password, for error messages and logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// The current time as the store writes it: UTC, fixed width, so that text
/// order is time order.
pub(crate) fn now() -> String {
    format_time(chrono::Utc::now())
}

pub(crate) fn format_time(at: chrono::DateTime<chrono::Utc>) -> String {
    use chrono::{Datelike, Timelike};
    // Written digit by digit: every event is stamped with this, and
    // chrono's general formatter cost about 5 000 instructions a call
    // (callgrind, bench/dns/callgrind.sh). Years outside four digits and
    // leap seconds, which it writes differently, still go through it.
    let year = at.year();
    let nanos = at.nanosecond();
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        return at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    }
    let mut out = [0u8; 27];
    let mut put = |at: usize, value: u32, digits: usize| {
        let mut value = value;
        for i in (0..digits).rev() {
            out[at + i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, year.unsigned_abs(), 4);
    put(5, at.month(), 2);
    put(8, at.day(), 2);
    put(11, at.hour(), 2);
    put(14, at.minute(), 2);
    put(17, at.second(), 2);
    put(20, nanos / 1000, 6);
    for (at, byte) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (26, b'Z'),
    ] {
        out[at] = byte;
    }
    out.iter().map(|&b| char::from(b)).collect()
}

#[cfg(test)]
mod tests;
