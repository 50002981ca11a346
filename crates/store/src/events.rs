//! Decision events: one row for every DNS or proxy decision.
//!
//! The schema is defined here, next to the table that keeps it, and the
//! `sheepdog-events` crate re-exports it as the one event type the DNS
//! server and the proxy share. It lives in the store rather than in
//! `sheepdog-events` because that crate writes through the store, and the
//! store cannot depend on it in turn.
//!
//! Events are facts about traffic, not changes to records, so they are not
//! written to the audit log: the audit chain would otherwise grow with every
//! query a school makes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{Store, StoreError};

/// Which server made a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventSource {
    Dns,
    Proxy,
}

impl EventSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dns => "dns",
            Self::Proxy => "proxy",
        }
    }
}

impl std::str::FromStr for EventSource {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "dns" => Ok(Self::Dns),
            "proxy" => Ok(Self::Proxy),
            other => Err(StoreError::Corrupt {
                entity: "decision event",
                problem: format!("unknown source `{other}`"),
            }),
        }
    }
}

/// One filtering decision, attributable as F6 asks: who (client address,
/// device, person), when, what (name or URL, query type, search term) and
/// why (action, category, list, rule).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionEvent {
    pub at: DateTime<Utc>,
    pub source: EventSource,
    /// The client's IP address as it reached sheepdog.
    pub client: String,
    pub device_id: Option<i64>,
    pub device_name: Option<String>,
    /// The person behind the device, when the identity map knows them.
    pub person_id: Option<i64>,
    /// The policy group the decision was made for.
    pub group: Option<String>,
    /// The host name (DNS) or URL (proxy).
    pub target: String,
    /// The DNS record type asked for (`A`, `HTTPS`, …); none for the proxy.
    pub query_type: Option<String>,
    /// `allow`, `monitor`, `warn`, `block`, or `rewrite` for safe search.
    pub action: String,
    /// Illegal content (IWF, CTIRU): the event must say so.
    #[serde(default)]
    pub illegal: bool,
    pub category: Option<String>,
    pub list: Option<String>,
    pub rule: Option<String>,
    /// How long the upstream resolver took, when it was asked.
    pub upstream_ms: Option<u32>,
    pub search_term: Option<String>,
}

/// Which events to read back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only events at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only events from this client address.
    pub client: Option<String>,
    /// Only events for this person.
    pub person_id: Option<i64>,
    /// At most this many, newest first (default 1000).
    pub limit: Option<u32>,
}

const COLUMNS: &str = "at, source, client, device_id, device_name, person_id, group_name, \
                       target, query_type, action, illegal, category, list_name, rule, \
                       upstream_ms, search_term";
const COLUMN_COUNT: usize = 16;
/// Rows per INSERT: 16 columns × 200 rows stays far below the bind-parameter
/// limits of both SQLite (32 766) and PostgreSQL (65 535).
const ROWS_PER_STATEMENT: usize = 200;

fn event_from_row(row: &AnyRow) -> Result<DecisionEvent, StoreError> {
    let at: String = row.try_get("at")?;
    let source: String = row.try_get("source")?;
    let upstream_ms: Option<i64> = row.try_get("upstream_ms")?;
    let illegal: i64 = row.try_get("illegal")?;
    Ok(DecisionEvent {
        at: DateTime::parse_from_rfc3339(&at)
            .map_err(|e| StoreError::Corrupt {
                entity: "decision event",
                problem: format!("time `{at}`: {e}"),
            })?
            .with_timezone(&Utc),
        source: source.parse()?,
        client: row.try_get("client")?,
        device_id: row.try_get("device_id")?,
        device_name: row.try_get("device_name")?,
        person_id: row.try_get("person_id")?,
        group: row.try_get("group_name")?,
        target: row.try_get("target")?,
        query_type: row.try_get("query_type")?,
        action: row.try_get("action")?,
        illegal: illegal != 0,
        category: row.try_get("category")?,
        list: row.try_get("list_name")?,
        rule: row.try_get("rule")?,
        upstream_ms: upstream_ms.and_then(|ms| u32::try_from(ms).ok()),
        search_term: row.try_get("search_term")?,
    })
}

impl Store {
    /// Writes a batch of events in one transaction: all or none, so a batch
    /// that fails can be spooled whole and replayed without duplicates.
    pub async fn insert_events(&self, events: &[DecisionEvent]) -> Result<u64, StoreError> {
        if events.is_empty() {
            return Ok(0);
        }
        // Same writer discipline as every other write: one writer at a time
        // in this process, which SQLite needs.
        let _lock = self.write_lock.clone().lock_owned().await;
        let mut tx = self.pool().begin().await?;
        let mut written = 0;
        for chunk in events.chunks(ROWS_PER_STATEMENT) {
            let mut sql = format!("INSERT INTO decision_events ({COLUMNS}) VALUES ");
            for row in 0..chunk.len() {
                if row > 0 {
                    sql.push_str(", ");
                }
                sql.push('(');
                for column in 0..COLUMN_COUNT {
                    if column > 0 {
                        sql.push_str(", ");
                    }
                    sql.push_str(&format!("${}", row * COLUMN_COUNT + column + 1));
                }
                sql.push(')');
            }
            let mut query = sqlx::query(&sql);
            for event in chunk {
                query = query
                    .bind(crate::format_time(event.at))
                    .bind(event.source.as_str())
                    .bind(&event.client)
                    .bind(event.device_id)
                    .bind(&event.device_name)
                    .bind(event.person_id)
                    .bind(&event.group)
                    .bind(&event.target)
                    .bind(&event.query_type)
                    .bind(&event.action)
                    .bind(i64::from(event.illegal))
                    .bind(&event.category)
                    .bind(&event.list)
                    .bind(&event.rule)
                    .bind(event.upstream_ms.map(i64::from))
                    .bind(&event.search_term);
            }
            written += query.execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(written)
    }

    /// Events matching `filter`, newest first.
    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<DecisionEvent>, StoreError> {
        let mut sql = format!("SELECT {COLUMNS} FROM decision_events WHERE 1 = 1");
        let mut next = 1;
        if filter.since.is_some() {
            sql.push_str(&format!(" AND at >= ${next}"));
            next += 1;
        }
        if filter.client.is_some() {
            sql.push_str(&format!(" AND client = ${next}"));
            next += 1;
        }
        if filter.person_id.is_some() {
            sql.push_str(&format!(" AND person_id = ${next}"));
            next += 1;
        }
        sql.push_str(&format!(" ORDER BY at DESC, id DESC LIMIT ${next}"));
        let mut query = sqlx::query(&sql);
        if let Some(since) = filter.since {
            query = query.bind(crate::format_time(since));
        }
        if let Some(client) = &filter.client {
            query = query.bind(client);
        }
        if let Some(person) = filter.person_id {
            query = query.bind(person);
        }
        let rows = query
            .bind(i64::from(filter.limit.unwrap_or(1000)))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// Up to `limit` events stored after event `after_id`, oldest first,
    /// each with its id: how monitoring follows the events as they are
    /// written without the DNS server ever waiting for it.
    pub async fn events_after(
        &self,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<(i64, DecisionEvent)>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT id, {COLUMNS} FROM decision_events WHERE id > $1 ORDER BY id LIMIT $2"
        ))
        .bind(after_id)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("id")?, event_from_row(row)?)))
            .collect()
    }

    /// The id of the last event stored before `at` (0 when there is none):
    /// where following the events starts after a restart.
    pub async fn last_event_id_before(&self, at: DateTime<Utc>) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT MAX(id) AS id FROM decision_events WHERE at < $1")
            .bind(crate::format_time(at))
            .fetch_one(self.pool())
            .await?;
        let id: Option<i64> = row.try_get("id")?;
        Ok(id.unwrap_or(0))
    }

    /// Deletes events older than `before` (the retention period the school
    /// set, M5) and returns how many went.
    pub async fn prune_events(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let _lock = self.write_lock.clone().lock_owned().await;
        let done = sqlx::query("DELETE FROM decision_events WHERE at < $1")
            .bind(crate::format_time(before))
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }
}
