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
    /// The school of the device or signed-in person; `None` for a client
    /// nobody registered (only a trust-wide role sees those).
    #[serde(default)]
    pub school_id: Option<i64>,
}

/// A page the proxy could read (plain HTTP, or HTTPS it inspected), handed
/// to monitoring as it is seen and never stored: the decision that let it
/// through, its title and its text (both bounded by the proxy). Only an
/// alert raised on it keeps anything, and then only the matched words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageSeen {
    pub event: DecisionEvent,
    pub title: Option<String>,
    pub text: String,
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
                       upstream_ms, search_term, school_id";
/// The columns written: the event's, and the host key derived from it.
const INSERT_COLUMNS: &str = "at, source, client, device_id, device_name, person_id, group_name, \
                              target, query_type, action, illegal, category, list_name, rule, \
                              upstream_ms, search_term, school_id, host_key";
const COLUMN_COUNT: usize = 18;
/// Rows per INSERT. Few, because binding is quadratic in the statement's
/// parameters on SQLite: sqlx looks up each `$N` parameter's name, and
/// SQLite finds a name by scanning every named parameter. At 200 rows
/// (3 400 parameters) that lookup was over half of the event writer's
/// instructions (callgrind, bench/dns/callgrind.sh); at 8 rows it is a few
/// per cent, and a batch still needs only an eighth of the round trips of
/// one row per statement.
const ROWS_PER_STATEMENT: usize = 8;

/// `INSERT INTO decision_events (...) VALUES ($1, ...), ...` for `rows`
/// rows. A batch uses only two shapes, full statements and single rows,
/// so both stay prepared in each connection's statement cache.
fn insert_sql(rows: usize) -> String {
    let mut sql = format!("INSERT INTO decision_events ({INSERT_COLUMNS}) VALUES ");
    for row in 0..rows {
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
    sql
}

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
        school_id: row.try_get("school_id")?,
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
        let full = events.len() - events.len() % ROWS_PER_STATEMENT;
        let (whole, rest) = events.split_at(full);
        let chunks = whole.chunks(ROWS_PER_STATEMENT).chain(rest.chunks(1));
        let (many_rows, one_row) = (insert_sql(ROWS_PER_STATEMENT), insert_sql(1));
        for chunk in chunks {
            let sql = if chunk.len() == 1 {
                &one_row
            } else {
                &many_rows
            };
            let mut query = sqlx::query(sql);
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
                    .bind(&event.search_term)
                    .bind(event.school_id)
                    .bind(host_key(&event.target));
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

    /// One event by its id, as the log search shows it.
    pub async fn event_by_id(&self, id: i64) -> Result<Option<FoundEvent>, StoreError> {
        Ok(self
            .events_after(id - 1, 1)
            .await?
            .into_iter()
            .find(|(found, _)| *found == id)
            .map(|(id, event)| FoundEvent { id, event }))
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

/// The host a target names (a DNS name, or the host of a proxy URL), with
/// its labels reversed and a closing dot: `www.example.com` becomes
/// `com.example.www.`. A domain and everything under it is then one prefix
/// of this key, which an index can serve. None when the target names no
/// host.
pub fn host_key(target: &str) -> Option<String> {
    // Most targets are DNS names as the resolver writes them: lower case,
    // nothing but labels. Those are reversed in one pass with one
    // allocation; anything else takes the general path below.
    let plain = target.bytes().all(|b| {
        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-' || b == b'_'
    });
    if plain {
        let host = target.trim_end_matches('.');
        if host.is_empty() {
            return None;
        }
        let mut key = String::with_capacity(host.len() + 1);
        for label in host.rsplit('.') {
            key.push_str(label);
            key.push('.');
        }
        return Some(key);
    }
    host_key_of_any_target(target)
}

/// [`host_key`] for any target: URLs, upper case, ports, IPv6 literals.
pub(crate) fn host_key_of_any_target(target: &str) -> Option<String> {
    let target = target.trim();
    let rest = target.split_once("://").map_or(target, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let host = if authority.starts_with('[') {
        // An IPv6 literal: kept whole, it has no labels to reverse.
        authority
            .split_once(']')
            .map_or(authority, |(inside, _)| inside)
            .trim_start_matches('[')
    } else {
        authority.split(':').next().unwrap_or("")
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() {
        return None;
    }
    if host.contains(':') {
        return Some(format!("{host}."));
    }
    let mut key: String = host.rsplit('.').fold(String::new(), |mut key, label| {
        key.push_str(label);
        key.push('.');
        key
    });
    key.shrink_to_fit();
    Some(key)
}

/// How a search matches the name or URL of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetMatch {
    /// This domain and every name under it (`example.com` finds
    /// `www.example.com`), for DNS names and proxy URLs alike.
    Domain(String),
    /// URLs (or names) that begin with this text, such as
    /// `https://example.com/videos/`.
    Prefix(String),
}

/// A log search (F6, F13): every field set narrows it. Results come newest
/// first, a page at a time; `before` continues after the last row of the
/// previous page (keyset pagination, so a page costs the same however deep).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventSearch {
    /// Events at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Events before this time.
    pub until: Option<DateTime<Utc>>,
    pub person_id: Option<i64>,
    pub device_id: Option<i64>,
    /// The client address.
    pub client: Option<String>,
    /// The policy group's name.
    pub group: Option<String>,
    pub target: Option<TargetMatch>,
    /// Text within the search term (any case).
    pub search_term: Option<String>,
    pub category: Option<String>,
    pub action: Option<String>,
    /// Continue after this event: the cursor of the previous page's last row.
    pub before: Option<EventCursor>,
    /// Rows per page, at most [`EventSearch::MAX_PAGE`].
    pub limit: u32,
    /// Only events of these schools (a school-level viewer's), never those
    /// of unregistered clients; `None`: every event (a trust-wide viewer).
    /// An empty list finds nothing.
    pub schools: Option<Vec<i64>>,
}

impl EventSearch {
    pub const MAX_PAGE: u32 = 100_000;
}

/// Where a page of results ends: the time and row number of its last event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventCursor {
    pub at: DateTime<Utc>,
    pub id: i64,
}

impl EventCursor {
    /// The cursor as one token for a URL: `id` and microseconds since 1970.
    pub fn encode(&self) -> String {
        format!("{}-{}", self.at.timestamp_micros(), self.id)
    }

    /// Reads a token made by [`EventCursor::encode`].
    pub fn decode(token: &str) -> Option<Self> {
        let (micros, id) = token.split_once('-')?;
        Some(Self {
            at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
            id: id.parse().ok()?,
        })
    }
}

/// One event found by a search, with the row number that pages on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FoundEvent {
    pub id: i64,
    #[serde(flatten)]
    pub event: DecisionEvent,
}

impl FoundEvent {
    pub fn cursor(&self) -> EventCursor {
        EventCursor {
            at: self.event.at,
            id: self.id,
        }
    }
}

/// Escapes `%`, `_` and the escape character itself for a LIKE pattern.
fn like_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The first text after every text that starts with `prefix`, in byte
/// order: the prefix with its last character moved on by one.
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = char::from_u32(u32::from(last) + 1) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Events under one domain beyond which a search walks the time index
/// rather than the host index.
const POPULAR_DOMAIN: i64 = 5_000;

/// A bound value of a search query.
enum Bind {
    Text(String),
    Number(i64),
}

/// A WHERE clause being written, with its values in placeholder order.
#[derive(Default)]
struct Conditions {
    sql: String,
    binds: Vec<Bind>,
}

impl Conditions {
    /// The placeholder for `value`, which is bound in order.
    fn bind(&mut self, value: Bind) -> String {
        self.binds.push(value);
        format!("${}", self.binds.len())
    }

    fn and(&mut self, column_test: &str, value: Bind) {
        let placeholder = self.bind(value);
        self.sql
            .push_str(&format!(" AND {column_test} {placeholder}"));
    }
}

/// Whether a URL prefix names its host in full (a `/` follows the host),
/// so that only events for that very host can match it.
fn names_whole_host(prefix: &str) -> bool {
    let rest = prefix.split_once("://").map_or(prefix, |(_, rest)| rest);
    rest.contains(['/', '?', '#'])
}

impl Store {
    /// One page of events matching `search`, newest first.
    pub async fn search_events(&self, search: &EventSearch) -> Result<Vec<FoundEvent>, StoreError> {
        let mut c = Conditions::default();
        if let Some(since) = search.since {
            c.and("at >=", Bind::Text(crate::format_time(since)));
        }
        if let Some(until) = search.until {
            c.and("at <", Bind::Text(crate::format_time(until)));
        }
        if let Some(person) = search.person_id {
            c.and("person_id =", Bind::Number(person));
        }
        if let Some(device) = search.device_id {
            c.and("device_id =", Bind::Number(device));
        }
        if let Some(client) = &search.client {
            c.and("client =", Bind::Text(client.clone()));
        }
        if let Some(group) = &search.group {
            c.and("group_name =", Bind::Text(group.clone()));
        }
        if let Some(category) = &search.category {
            c.and("category =", Bind::Text(category.clone()));
        }
        if let Some(action) = &search.action {
            c.and("action =", Bind::Text(action.clone()));
        }
        if let Some(schools) = &search.schools {
            if schools.is_empty() {
                return Ok(Vec::new());
            }
            let placeholders: Vec<String> = schools
                .iter()
                .map(|school| c.bind(Bind::Number(*school)))
                .collect();
            c.sql
                .push_str(&format!(" AND school_id IN ({})", placeholders.join(", ")));
        }
        match &search.target {
            Some(TargetMatch::Domain(domain)) => {
                let key = host_key(domain).ok_or_else(|| {
                    StoreError::invalid(
                        "log search",
                        "the domain is empty; give a name such as example.com",
                    )
                })?;
                let end = prefix_end(&key).unwrap_or_default();
                // A popular domain matches too many rows to sort by time;
                // walking the time index newest first finds a page of them
                // sooner. Counting a bounded slice of the host index tells
                // which case this is, at the cost of one short index read.
                let popular: i64 = sqlx::query(
                    "SELECT COUNT(*) AS n FROM (SELECT 1 FROM decision_events \
                     WHERE host_key >= $1 AND host_key < $2 LIMIT $3) AS sample",
                )
                .bind(&key)
                .bind(&end)
                .bind(POPULAR_DOMAIN)
                .fetch_one(self.pool())
                .await?
                .try_get("n")?;
                // `host_key || ''` keeps the planner off the host index.
                let column = if popular >= POPULAR_DOMAIN {
                    "host_key || ''"
                } else {
                    "host_key"
                };
                c.and(&format!("{column} >="), Bind::Text(key));
                c.and(&format!("{column} <"), Bind::Text(end));
            }
            Some(TargetMatch::Prefix(prefix)) => {
                // When the prefix names its whole host, that host's index
                // range holds every match; the rest of the prefix is then
                // compared on those rows alone.
                if names_whole_host(prefix) {
                    if let Some(key) = host_key(prefix) {
                        c.and("host_key =", Bind::Text(key));
                    }
                }
                let length = c.bind(Bind::Number(
                    i64::try_from(prefix.chars().count()).unwrap_or(i64::MAX),
                ));
                c.and(
                    &format!("substr(target, 1, CAST({length} AS INTEGER)) ="),
                    Bind::Text(prefix.clone()),
                );
            }
            None => {}
        }
        if let Some(term) = &search.search_term {
            let pattern = c.bind(Bind::Text(format!(
                "%{}%",
                like_literal(&term.to_lowercase())
            )));
            c.sql.push_str(&format!(
                " AND search_term IS NOT NULL AND lower(search_term) LIKE {pattern} ESCAPE '\\'"
            ));
        }
        if let Some(cursor) = &search.before {
            let at = c.bind(Bind::Text(crate::format_time(cursor.at)));
            let id = c.bind(Bind::Number(cursor.id));
            c.sql
                .push_str(&format!(" AND at <= {at} AND (at < {at} OR id < {id})"));
        }
        let limit = c.bind(Bind::Number(i64::from(
            search.limit.clamp(1, EventSearch::MAX_PAGE),
        )));
        let sql = format!(
            "SELECT id, {COLUMNS} FROM decision_events WHERE 1 = 1{} \
             ORDER BY at DESC, id DESC LIMIT {limit}",
            c.sql
        );
        let mut query = sqlx::query(&sql);
        for bind in c.binds {
            query = match bind {
                Bind::Text(text) => query.bind(text),
                Bind::Number(n) => query.bind(n),
            };
        }
        let rows = query.fetch_all(self.pool()).await?;
        rows.iter()
            .map(|row| {
                Ok(FoundEvent {
                    id: row.try_get("id")?,
                    event: event_from_row(row)?,
                })
            })
            .collect()
    }
}

/// How finely the dashboard counts events over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Hour,
    Day,
}

impl Bucket {
    /// Characters of the stored time that name the bucket: `at` is
    /// fixed-width UTC text, so `2026-02-01T09` is an hour and
    /// `2026-02-01` a day.
    fn width(self) -> i64 {
        match self {
            Self::Hour => 13,
            Self::Day => 10,
        }
    }
}

/// Counts for the dashboard over one time range.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EventSummary {
    /// (bucket, action, events), in time order: `2026-02-01T09` for hours,
    /// `2026-02-01` for days.
    pub over_time: Vec<(String, String, i64)>,
    /// (category, blocked events), most first.
    pub top_blocked_categories: Vec<(String, i64)>,
    /// (name or URL, blocked events), most first.
    pub top_blocked_sites: Vec<(String, i64)>,
}

impl Store {
    /// What the dashboard shows for `[since, until)`; `top` limits the
    /// two rankings.
    pub async fn event_summary(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        bucket: Bucket,
        top: i64,
    ) -> Result<EventSummary, StoreError> {
        let since = crate::format_time(since);
        let until = crate::format_time(until);
        let over_time = sqlx::query(
            "SELECT substr(at, 1, CAST($1 AS INTEGER)) AS bucket, action, COUNT(*) AS n \
             FROM decision_events WHERE at >= $2 AND at < $3 \
             GROUP BY 1, 2 ORDER BY 1, 2",
        )
        .bind(bucket.width())
        .bind(&since)
        .bind(&until)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|row| {
            Ok((
                row.try_get("bucket")?,
                row.try_get("action")?,
                row.try_get("n")?,
            ))
        })
        .collect::<Result<_, StoreError>>()?;
        let ranking = |column: &'static str| {
            let since = since.clone();
            let until = until.clone();
            async move {
                sqlx::query(&format!(
                    "SELECT {column} AS name, COUNT(*) AS n FROM decision_events \
                     WHERE action = 'block' AND at >= $1 AND at < $2 AND {column} IS NOT NULL \
                     GROUP BY {column} ORDER BY n DESC, name LIMIT $3"
                ))
                .bind(since)
                .bind(until)
                .bind(top)
                .fetch_all(self.pool())
                .await?
                .iter()
                .map(|row| Ok((row.try_get("name")?, row.try_get("n")?)))
                .collect::<Result<Vec<(String, i64)>, StoreError>>()
            }
        };
        Ok(EventSummary {
            over_time,
            top_blocked_categories: ranking("category").await?,
            top_blocked_sites: ranking("target").await?,
        })
    }
}

/// A client address seen recently, with who the identity map put behind
/// it: "who is on which address now".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddressSeen {
    pub client: String,
    pub device_id: Option<i64>,
    pub device_name: Option<String>,
    pub person_id: Option<i64>,
    pub group: Option<String>,
    pub last_at: String,
    pub requests: i64,
}

impl Store {
    /// The client addresses that made decisions at or after `since`, most
    /// recent first, each with the device, person and group its latest
    /// events carried.
    pub async fn addresses_seen(
        &self,
        since: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<AddressSeen>, StoreError> {
        let rows = sqlx::query(
            "SELECT client, MAX(at) AS last_at, COUNT(*) AS requests, MAX(device_id) AS device_id, \
             MAX(device_name) AS device_name, MAX(person_id) AS person_id, \
             MAX(group_name) AS group_name FROM decision_events WHERE at >= $1 \
             GROUP BY client ORDER BY last_at DESC, client LIMIT $2",
        )
        .bind(crate::format_time(since))
        .bind(limit.max(0))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AddressSeen {
                    client: row.try_get("client")?,
                    device_id: row.try_get("device_id")?,
                    device_name: row.try_get("device_name")?,
                    person_id: row.try_get("person_id")?,
                    group: row.try_get("group_name")?,
                    last_at: row.try_get("last_at")?,
                    requests: row.try_get("requests")?,
                })
            })
            .collect()
    }
}
