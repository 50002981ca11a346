//! The append-only audit log.
//!
//! Each entry records who did what to which record, when, with the record
//! before and after as JSON. Its hash covers its own content and the hash of
//! the entry before it, and the `audit_anchor` row holds the newest sequence
//! number and hash. Editing an entry breaks its own hash; re-hashing it
//! breaks the next entry's link; deleting one leaves a gap; cutting the tail
//! disagrees with the anchor. [`Store::verify_audit`] reports each of these
//! by sequence number. The log is tamper-evident, not tamper-proof: someone
//! who can rewrite the whole database can rewrite the whole chain, which is
//! why the chain head is also printed for off-site records.

use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::{Store, StoreError};

/// Who made a change or looked at a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(String);

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub entity: String,
    pub entity_id: Option<String>,
    pub before: Option<String>,
    pub after: Option<String>,
    pub reason: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

/// What [`Store::verify_audit`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditVerification {
    /// Entries read.
    pub entries: i64,
    /// The newest entry's hash: worth writing down outside the database.
    pub head: String,
    pub problems: Vec<AuditProblem>,
}

/// One break in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditProblem {
    /// The entry's content no longer matches its hash.
    Altered { seq: i64 },
    /// The entry does not link to the one before it: that one, or this one,
    /// was replaced.
    Relinked { seq: i64 },
    /// Entries are missing before this one.
    Missing { from: i64, to: i64 },
    /// The newest entries are missing or the anchor was changed.
    Truncated { anchor_seq: i64, last_seq: i64 },
}

/// What a write to the audit log says; the store fills in the rest.
#[derive(Debug)]
pub(crate) struct Change<'a> {
    pub action: &'a str,
    pub entity: &'a str,
    pub entity_id: Option<String>,
    pub before: Option<String>,
    pub after: Option<String>,
    pub reason: Option<&'a str>,
}

impl Actor {
    /// A signed-in console or API account.
    pub fn account(id: i64, username: &str) -> Self {
        Self(format!("account:{id}:{username}"))
    }

    /// A command run on the server by an operating-system user.
    pub fn command_line(os_user: &str) -> Self {
        Self(format!("cli:{os_user}"))
    }

    /// The policy file, for an edit found in it that nobody applied: the
    /// person who made it is not known, and the log says so.
    pub fn config_file() -> Self {
        Self("config file".to_owned())
    }

    /// sheepdog itself (a schedule, an import job).
    pub fn system(component: &str) -> Self {
        Self(format!("system:{component}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'a> Change<'a> {
    pub fn new(action: &'a str, entity: &'a str, entity_id: impl ToString) -> Self {
        Self {
            action,
            entity,
            entity_id: Some(entity_id.to_string()),
            before: None,
            after: None,
            reason: None,
        }
    }

    pub fn before<T: Serialize>(mut self, record: &T) -> Self {
        self.before = serde_json::to_string(record).ok();
        self
    }

    pub fn after<T: Serialize>(mut self, record: &T) -> Self {
        self.after = serde_json::to_string(record).ok();
        self
    }
}

impl AuditEntry {
    pub(crate) fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            seq: row.try_get("seq")?,
            at: row.try_get("at")?,
            actor: row.try_get("actor")?,
            action: row.try_get("action")?,
            entity: row.try_get("entity")?,
            entity_id: row.try_get("entity_id")?,
            before: row.try_get("before_state")?,
            after: row.try_get("after_state")?,
            reason: row.try_get("reason")?,
            prev_hash: row.try_get("prev_hash")?,
            hash: row.try_get("hash")?,
        })
    }

    /// The hash this entry should carry.
    fn expected_hash(&self) -> String {
        let content = (
            self.seq,
            &self.at,
            &self.actor,
            &self.action,
            &self.entity,
            &self.entity_id,
            &self.before,
            &self.after,
            &self.reason,
            &self.prev_hash,
        );
        // A tuple of strings and numbers always serialises.
        let bytes = serde_json::to_vec(&content).unwrap_or_default();
        hex::encode(Sha256::digest(&bytes))
    }
}

impl AuditVerification {
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Store {
    /// Records that `actor` looked at a sensitive record.
    pub async fn audit_view(
        &self,
        actor: &Actor,
        entity: &str,
        entity_id: &str,
    ) -> Result<(), StoreError> {
        self.audit_only(actor, Change::new("view", entity, entity_id))
            .await
    }

    /// Writes an audit entry that goes with no change to a record: a
    /// view, a refusal, an opening of evidence.
    pub(crate) async fn audit_only(
        &self,
        actor: &Actor,
        change: Change<'_>,
    ) -> Result<(), StoreError> {
        let mut write = self.begin_write().await?;
        let result = append(&mut write.tx, actor, change).await.map(drop);
        write.finish(result).await
    }

    /// The newest `limit` entries, newest first, optionally for one entity.
    pub async fn audit_entries(
        &self,
        entity: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = match entity {
            Some(entity) => {
                sqlx::query("SELECT * FROM audit_log WHERE entity = $1 ORDER BY seq DESC LIMIT $2")
                    .bind(entity)
                    .bind(limit)
                    .fetch_all(self.pool())
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM audit_log ORDER BY seq DESC LIMIT $1")
                    .bind(limit)
                    .fetch_all(self.pool())
                    .await?
            }
        };
        Ok(rows
            .iter()
            .map(AuditEntry::from_row)
            .collect::<Result<_, _>>()?)
    }

    /// Walks the whole chain and reports every break in it.
    pub async fn verify_audit(&self) -> Result<AuditVerification, StoreError> {
        const PAGE: i64 = 5000;
        let mut problems = Vec::new();
        let mut entries = 0;
        let mut expected_seq = 1;
        let mut prev_hash = String::new();
        loop {
            let rows = sqlx::query("SELECT * FROM audit_log WHERE seq >= $1 ORDER BY seq LIMIT $2")
                .bind(expected_seq)
                .bind(PAGE)
                .fetch_all(self.pool())
                .await?;
            let page_len = rows.len();
            for row in &rows {
                let entry = AuditEntry::from_row(row)?;
                entries += 1;
                if entry.seq != expected_seq {
                    problems.push(AuditProblem::Missing {
                        from: expected_seq,
                        to: entry.seq - 1,
                    });
                } else if entry.prev_hash != prev_hash {
                    problems.push(AuditProblem::Relinked { seq: entry.seq });
                }
                if entry.expected_hash() != entry.hash {
                    problems.push(AuditProblem::Altered { seq: entry.seq });
                }
                expected_seq = entry.seq + 1;
                prev_hash = entry.hash;
            }
            if page_len < PAGE as usize {
                break;
            }
        }
        let anchor = sqlx::query("SELECT seq, hash FROM audit_anchor WHERE id = 1")
            .fetch_one(self.pool())
            .await?;
        let anchor_seq: i64 = anchor.try_get("seq")?;
        let anchor_hash: String = anchor.try_get("hash")?;
        let last_seq = expected_seq - 1;
        if anchor_seq != last_seq || anchor_hash != prev_hash {
            problems.push(AuditProblem::Truncated {
                anchor_seq,
                last_seq,
            });
        }
        Ok(AuditVerification {
            entries,
            head: prev_hash,
            problems,
        })
    }
}

/// Appends one entry inside the caller's transaction, so the change and its
/// record commit or roll back together.
pub(crate) async fn append(
    conn: &mut AnyConnection,
    actor: &Actor,
    change: Change<'_>,
) -> Result<i64, StoreError> {
    let at = crate::now();
    // Writing the anchor first takes the write lock on both databases before
    // anything is read, so two writers cannot both read the same head.
    sqlx::query("UPDATE audit_anchor SET touched_at = $1 WHERE id = 1")
        .bind(&at)
        .execute(&mut *conn)
        .await?;
    let head = sqlx::query("SELECT seq, hash FROM audit_anchor WHERE id = 1")
        .fetch_one(&mut *conn)
        .await?;
    let mut entry = AuditEntry {
        seq: head.try_get::<i64, _>("seq")? + 1,
        at,
        actor: actor.0.clone(),
        action: change.action.to_string(),
        entity: change.entity.to_string(),
        entity_id: change.entity_id,
        before: change.before,
        after: change.after,
        reason: change.reason.map(str::to_string),
        prev_hash: head.try_get("hash")?,
        hash: String::new(),
    };
    entry.hash = entry.expected_hash();
    sqlx::query(
        "INSERT INTO audit_log (seq, at, actor, action, entity, entity_id, before_state, \
         after_state, reason, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(entry.seq)
    .bind(&entry.at)
    .bind(&entry.actor)
    .bind(&entry.action)
    .bind(&entry.entity)
    .bind(&entry.entity_id)
    .bind(&entry.before)
    .bind(&entry.after)
    .bind(&entry.reason)
    .bind(&entry.prev_hash)
    .bind(&entry.hash)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE audit_anchor SET seq = $1, hash = $2 WHERE id = 1")
        .bind(entry.seq)
        .bind(&entry.hash)
        .execute(&mut *conn)
        .await?;
    Ok(entry.seq)
}

impl fmt::Display for AuditProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Altered { seq } => write!(f, "audit entry {seq} was altered: its content no longer matches its hash"),
            Self::Relinked { seq } => write!(f, "audit entry {seq} does not link to the entry before it: entry {} or {seq} was replaced", seq - 1),
            Self::Missing { from, to } if from == to => write!(f, "audit entry {from} was deleted"),
            Self::Missing { from, to } => write!(f, "audit entries {from} to {to} were deleted"),
            Self::Truncated { anchor_seq, last_seq } => write!(f, "the audit log ends at entry {last_seq} but its anchor records entry {anchor_seq}: the newest entries or the anchor were changed"),
        }
    }
}
