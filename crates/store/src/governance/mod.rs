//! The governance records the seed policies keep on paper (issue 10):
//! acceptable use agreements (G2, M4), image consent (G3), training (G4),
//! the policy register and the yearly filtering and monitoring review (G5,
//! G6), and the asset register (G7).
//!
//! Who may change what is the console's business (`roles.rs`); every method
//! here that changes a record takes the [`Actor`] and writes its audit entry
//! in the same transaction. Dates a person writes (a course taken, a review
//! due) are `YYYY-MM-DD` [`NaiveDate`]s.

use chrono::NaiveDate;
use serde::Serialize;
use sqlx::Row;

use crate::audit::{append, Change};
use crate::incidents::evidence::{digest, open_bound, seal_bound};
use crate::incidents::EvidenceKey;
use crate::{Actor, Store, StoreError, Write};

pub mod agreements;
pub mod assets;
pub mod consent;
pub mod guests;
pub mod policies;
pub mod training;

/// The largest file kept with a record (a scan, a certificate).
pub const MAX_FILE_BYTES: usize = 10 * 1024 * 1024;

/// A file to keep with a record.
#[derive(Debug, Clone)]
pub struct NewFile {
    pub name: String,
    pub media_type: String,
    pub content: Vec<u8>,
    /// The deployment's evidence key: a signed form or a certificate names
    /// people, so it is sealed at rest like incident evidence.
    pub key: EvidenceKey,
}

/// What a kept file belongs to, which decides who may open it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileOwner {
    /// The scan of a paper acceptable use agreement.
    AgreementScan,
    /// A training certificate.
    TrainingEvidence,
    /// A certificate of secure deletion.
    DisposalCertificate,
    /// Kept but attached to nothing (a record whose save failed later).
    Unattached,
}

/// What sealed governance files are bound to, so that neither a governance
/// file nor incident evidence opens as the other, nor as another school's.
fn file_binding(school_id: i64, sha256: &str) -> Vec<u8> {
    format!("sheepdog-governance-file-v1:{school_id}:{sha256}").into_bytes()
}

/// A kept file, without its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileInfo {
    pub id: i64,
    pub name: String,
    pub media_type: String,
    pub sha256: String,
    pub size: i64,
}

pub(crate) fn date_text(date: NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

pub(crate) fn parse_date(entity: &'static str, text: &str) -> Result<NaiveDate, StoreError> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|e| StoreError::Corrupt {
        entity,
        problem: format!("date `{text}`: {e}"),
    })
}

pub(crate) fn optional_date(
    entity: &'static str,
    text: Option<String>,
) -> Result<Option<NaiveDate>, StoreError> {
    text.map(|t| parse_date(entity, &t)).transpose()
}

pub(crate) fn required<'a>(field: &'static str, text: &'a str) -> Result<&'a str, StoreError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(StoreError::invalid(field, "this must be filled in"));
    }
    Ok(text)
}

pub(crate) fn optional(text: Option<&str>) -> Option<String> {
    text.map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

/// Today's date in UTC, which is the school's date for every purpose a
/// review or expiry date serves.
pub fn today() -> NaiveDate {
    chrono::Utc::now().date_naive()
}

/// Checks that a person belongs to the school (and is of an expected kind).
pub(crate) async fn person_in(
    write: &mut Write,
    school_id: i64,
    person_id: i64,
) -> Result<(String, String), StoreError> {
    let row = sqlx::query(
        "SELECT kind, given_name, family_name FROM people WHERE id = $1 AND school_id = $2",
    )
    .bind(person_id)
    .bind(school_id)
    .fetch_optional(&mut *write.tx)
    .await?
    .ok_or_else(|| StoreError::NotFound {
        entity: "person",
        key: person_id.to_string(),
    })?;
    let given: String = row.try_get("given_name")?;
    let family: String = row.try_get("family_name")?;
    Ok((row.try_get("kind")?, format!("{given} {family}")))
}

/// Keeps a file inside the caller's transaction, audited (without its
/// content, which the audit log has no business holding).
pub(crate) async fn keep_file(
    write: &mut Write,
    actor: &Actor,
    school_id: i64,
    file: &NewFile,
) -> Result<FileInfo, StoreError> {
    if file.content.is_empty() {
        return Err(StoreError::invalid(
            "file",
            format!("`{}` is empty", file.name),
        ));
    }
    if file.content.len() > MAX_FILE_BYTES {
        return Err(StoreError::invalid(
            "file",
            format!(
                "`{}` is {} bytes; the largest kept is {MAX_FILE_BYTES} (scan at a lower resolution)",
                file.name,
                file.content.len()
            ),
        ));
    }
    let name = required("file name", &file.name)?.to_owned();
    let sha256 = digest(&file.content);
    let (nonce, sealed) = seal_bound(&file.key, &file_binding(school_id, &sha256), &file.content)?;
    let row = sqlx::query(
        "INSERT INTO governance_files (school_id, name, media_type, sha256, content, nonce, \
         created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(school_id)
    .bind(&name)
    .bind(&file.media_type)
    .bind(&sha256)
    .bind(sealed)
    .bind(&nonce)
    .bind(actor.as_str())
    .bind(crate::now())
    .fetch_one(&mut *write.tx)
    .await?;
    let info = FileInfo {
        id: row.try_get("id")?,
        name,
        media_type: file.media_type.clone(),
        sha256,
        size: i64::try_from(file.content.len()).unwrap_or(i64::MAX),
    };
    append(
        &mut write.tx,
        actor,
        Change::new("create", "governance_file", info.id).after(&info),
    )
    .await?;
    Ok(info)
}

impl Store {
    /// What a school's kept file belongs to; `None` when the school has no
    /// such file.
    pub async fn governance_file_owner(
        &self,
        school_id: i64,
        file_id: i64,
    ) -> Result<Option<FileOwner>, StoreError> {
        let row = sqlx::query(
            "SELECT \
               (SELECT COUNT(*) FROM agreement_signatures WHERE scan_file_id = f.id) AS scans, \
               (SELECT COUNT(*) FROM training_records WHERE evidence_file_id = f.id) AS training, \
               (SELECT COUNT(*) FROM assets WHERE certificate_file_id = f.id) AS disposals \
             FROM governance_files f WHERE f.id = $1 AND f.school_id = $2",
        )
        .bind(file_id)
        .bind(school_id)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let count = |column: &str| row.try_get::<i64, _>(column).map(|n| n > 0);
        Ok(Some(if count("scans")? {
            FileOwner::AgreementScan
        } else if count("training")? {
            FileOwner::TrainingEvidence
        } else if count("disposals")? {
            FileOwner::DisposalCertificate
        } else {
            FileOwner::Unattached
        }))
    }

    /// Opens a kept file for `actor` (whose right to see it the caller has
    /// checked): unseals it, checks its SHA-256, and records the download
    /// in the audit log. `None` when the school has no such file.
    pub async fn open_governance_file(
        &self,
        actor: &Actor,
        school_id: i64,
        file_id: i64,
        key: &EvidenceKey,
    ) -> Result<Option<(FileInfo, Vec<u8>)>, StoreError> {
        let row = sqlx::query("SELECT * FROM governance_files WHERE id = $1 AND school_id = $2")
            .bind(file_id)
            .bind(school_id)
            .fetch_optional(self.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        let stored: Vec<u8> = row.try_get("content")?;
        let nonce: Option<String> = row.try_get("nonce")?;
        let sha256: String = row.try_get("sha256")?;
        let content = match nonce {
            Some(nonce) => open_bound(
                key,
                &file_binding(school_id, &sha256),
                &sha256,
                &nonce,
                &stored,
            )
            .map_err(|problem| StoreError::Corrupt {
                entity: "governance_files",
                problem: format!("file {file_id}: {problem}"),
            })?,
            // Kept before files were sealed (migration 0013).
            None => stored,
        };
        let info = FileInfo {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            media_type: row.try_get("media_type")?,
            sha256,
            size: i64::try_from(content.len()).unwrap_or(i64::MAX),
        };
        self.audit_only(actor, Change::new("download", "governance_file", file_id))
            .await?;
        Ok(Some((info, content)))
    }
}

/// What needs doing, for the reminder email and the console.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GovernanceDue {
    pub overdue_training: Vec<training::OverdueTraining>,
    /// Policies whose review is due within [`POLICY_NOTICE_DAYS`] or past.
    pub policies_due: Vec<policies::RegisteredPolicy>,
    /// People needing to sign or renew, by audience.
    pub agreements: Vec<(agreements::Audience, i64)>,
}

impl GovernanceDue {
    pub fn is_empty(&self) -> bool {
        self.overdue_training.is_empty()
            && self.policies_due.is_empty()
            && self.agreements.is_empty()
    }
}

/// How far ahead a policy review is flagged.
pub const POLICY_NOTICE_DAYS: u64 = 30;

impl Store {
    /// Everything a school's governance reminder covers on `now`.
    pub async fn governance_due(
        &self,
        school_id: i64,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<GovernanceDue, StoreError> {
        let today = now.date_naive();
        let horizon = today
            .checked_add_days(chrono::Days::new(POLICY_NOTICE_DAYS))
            .unwrap_or(today);
        let mut needing: std::collections::BTreeMap<agreements::Audience, i64> =
            std::collections::BTreeMap::new();
        for status in self.agreement_statuses(Some(school_id), now).await? {
            if status.state.needs_signing() {
                *needing.entry(status.audience).or_default() += 1;
            }
        }
        Ok(GovernanceDue {
            overdue_training: self.overdue_training(Some(school_id), today).await?,
            policies_due: self.policies_due(Some(school_id), horizon).await?,
            agreements: needing.into_iter().collect(),
        })
    }

    /// Whether the reminder for `period` (an ISO week) went out.
    pub async fn reminder_sent(&self, school_id: i64, period: &str) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM governance_reminders WHERE school_id = $1 AND period = $2",
        )
        .bind(school_id)
        .bind(period)
        .fetch_one(self.pool())
        .await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
    }

    /// Records that the reminder for `period` went out.
    pub async fn record_reminder(
        &self,
        actor: &Actor,
        school_id: i64,
        period: &str,
        summary: &str,
    ) -> Result<(), StoreError> {
        let mut write = self.begin_write().await?;
        let result = async {
            let row = sqlx::query(
                "INSERT INTO governance_reminders (school_id, period, summary, sent_at) \
                 VALUES ($1, $2, $3, $4) RETURNING id",
            )
            .bind(school_id)
            .bind(period)
            .bind(summary)
            .bind(crate::now())
            .fetch_one(&mut *write.tx)
            .await
            .map_err(|e| StoreError::on_duplicate(e, "governance reminder", period))?;
            let id: i64 = row.try_get("id")?;
            let mut change = Change::new("delivered", "governance_reminder", id);
            change.after = serde_json::to_string(&serde_json::json!({
                "school_id": school_id, "period": period, "summary": summary,
            }))
            .ok();
            append(&mut write.tx, actor, change).await?;
            Ok(())
        }
        .await;
        write.finish(result).await
    }
}
