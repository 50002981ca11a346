//! "Report wrongly blocked" from the proxy's block page (issue 5): what a
//! pupil or member of staff said about a block, for the technicians.
//!
//! Anyone behind the proxy can send a report, so the text is bounded here
//! as well as in the form, and each report is audited like any other
//! record: who sent it (the client address), when, and about which block.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::audit::{append, Change};
use crate::{Actor, Store, StoreError};

/// The longest comment kept, in characters; the rest is cut off.
pub const MAX_COMMENT_CHARS: usize = 500;
/// The longest site, reference, category or group kept, in characters.
const MAX_FIELD_CHARS: usize = 2048;

/// A report as the block page's form sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewBlockReport {
    pub at: DateTime<Utc>,
    /// The block's reference number, as shown on the page.
    pub reference: String,
    /// The address the report came from.
    pub client: String,
    /// The person behind the address, when the identity map knows them.
    pub person_id: Option<i64>,
    pub group: Option<String>,
    pub site: String,
    pub category: Option<String>,
    pub comment: String,
}

/// A stored report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockReport {
    pub id: i64,
    pub at: String,
    pub reference: String,
    pub client: String,
    pub person_id: Option<i64>,
    pub group: Option<String>,
    pub site: String,
    pub category: Option<String>,
    pub comment: String,
    pub status: String,
    /// `allowed` or `kept_blocked` once a technician has decided.
    pub resolution: Option<String>,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<String>,
    pub resolution_reason: Option<String>,
    /// The exception an "allow" made (an approved unblock request).
    pub request_id: Option<i64>,
}

fn cut(text: &str, chars: usize) -> String {
    text.chars().take(chars).collect()
}

pub(crate) fn report_from_row(row: &AnyRow) -> Result<BlockReport, StoreError> {
    Ok(BlockReport {
        id: row.try_get("id")?,
        at: row.try_get("at")?,
        reference: row.try_get("reference")?,
        client: row.try_get("client")?,
        person_id: row.try_get("person_id")?,
        group: row.try_get("group_name")?,
        site: row.try_get("site")?,
        category: row.try_get("category")?,
        comment: row.try_get("comment")?,
        status: row.try_get("status")?,
        resolution: row.try_get("resolution")?,
        resolved_by: row.try_get("resolved_by")?,
        resolved_at: row.try_get("resolved_at")?,
        resolution_reason: row.try_get("resolution_reason")?,
        request_id: row.try_get("request_id")?,
    })
}

impl Store {
    /// Stores a "wrongly blocked" report, open, with its audit entry.
    pub async fn record_block_report(
        &self,
        actor: &Actor,
        report: &NewBlockReport,
    ) -> Result<BlockReport, StoreError> {
        let mut write = self.begin_write().await?;
        let result = async {
            let row = sqlx::query(
                "INSERT INTO block_reports (at, reference, client, person_id, group_name, site, \
                 category, comment, status) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'open') \
                 RETURNING id",
            )
            .bind(crate::format_time(report.at))
            .bind(cut(&report.reference, MAX_FIELD_CHARS))
            .bind(cut(&report.client, MAX_FIELD_CHARS))
            .bind(report.person_id)
            .bind(report.group.as_deref().map(|g| cut(g, MAX_FIELD_CHARS)))
            .bind(cut(&report.site, MAX_FIELD_CHARS))
            .bind(report.category.as_deref().map(|c| cut(c, MAX_FIELD_CHARS)))
            .bind(cut(&report.comment, MAX_COMMENT_CHARS))
            .fetch_one(&mut *write.tx)
            .await?;
            // Not `RETURNING *`: SQLite's driver sizes that row from the
            // table as first created, before later migrations added columns.
            let id: i64 = row.try_get("id")?;
            let row = sqlx::query("SELECT * FROM block_reports WHERE id = $1")
                .bind(id)
                .fetch_one(&mut *write.tx)
                .await?;
            let stored = report_from_row(&row)?;
            append(
                &mut write.tx,
                actor,
                Change::new("create", "block_report", stored.id).after(&stored),
            )
            .await?;
            Ok(stored)
        }
        .await;
        write.finish(result).await
    }

    /// The newest reports first, at most `limit`.
    pub async fn block_reports(&self, limit: u32) -> Result<Vec<BlockReport>, StoreError> {
        let rows = sqlx::query("SELECT * FROM block_reports ORDER BY id DESC LIMIT $1")
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(report_from_row).collect()
    }
}
