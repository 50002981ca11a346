//! The policy register (G6) and the yearly filtering and monitoring review
//! (G5).
//!
//! Each policy has the dates it was written and last reviewed, the date
//! its next review is due, an owner and an approver. The review of
//! filtering and monitoring is a guided record: who took part (SLT, DSL,
//! IT and the responsible governor), what they looked at (the risk
//! profile, incidents, checks across groups and devices), and what they
//! decided; it exports as Markdown for the governors' minutes.

use std::fmt::Write as _;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{date_text, optional, optional_date, parse_date, required};
use crate::audit::{append, Change};
use crate::{Actor, Store, StoreError};

/// A policy as entered or edited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyEntry {
    pub title: String,
    pub owner: String,
    pub approver: String,
    pub written_on: NaiveDate,
    pub last_reviewed_on: Option<NaiveDate>,
    pub next_review_on: NaiveDate,
    pub notes: Option<String>,
}

/// A policy in the register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegisteredPolicy {
    pub id: i64,
    pub school_id: i64,
    pub title: String,
    pub owner: String,
    pub approver: String,
    pub written_on: NaiveDate,
    pub last_reviewed_on: Option<NaiveDate>,
    pub next_review_on: NaiveDate,
    pub notes: Option<String>,
}

/// Who took part in a review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    /// `SLT`, `DSL`, `IT`, `Governor`.
    pub role: String,
    pub name: String,
}

/// One check of the filtering, as SWGfL's Test Filtering does it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterCheck {
    /// The group or device checked (`ks2`, `Staff laptop`).
    pub subject: String,
    /// What was tried (`IWF test URL`, `adult content`).
    pub test: String,
    /// What happened (`blocked`).
    pub result: String,
}

/// What the review looked at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewInputs {
    pub risk_profile: String,
    pub incidents: String,
    pub checks: Vec<FilterCheck>,
    /// Changes in risk or technology that prompted or shaped it.
    #[serde(default)]
    pub changes: String,
}

/// A review as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReview {
    pub held_on: NaiveDate,
    pub participants: Vec<Participant>,
    pub inputs: ReviewInputs,
    pub decisions: Vec<String>,
    pub next_review_on: NaiveDate,
}

/// A stored review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FilteringReview {
    pub id: i64,
    pub school_id: i64,
    pub held_on: NaiveDate,
    pub participants: Vec<Participant>,
    pub inputs: ReviewInputs,
    pub decisions: Vec<String>,
    pub next_review_on: NaiveDate,
    pub recorded_by: String,
}

/// The roles G5 asks to take part.
pub const REVIEW_ROLES: &[&str] = &["SLT", "DSL", "IT", "Governor"];

fn policy_from_row(row: &AnyRow) -> Result<RegisteredPolicy, StoreError> {
    Ok(RegisteredPolicy {
        id: row.try_get("id")?,
        school_id: row.try_get("school_id")?,
        title: row.try_get("title")?,
        owner: row.try_get("owner")?,
        approver: row.try_get("approver")?,
        written_on: parse_date("policy_register", &row.try_get::<String, _>("written_on")?)?,
        last_reviewed_on: optional_date("policy_register", row.try_get("last_reviewed_on")?)?,
        next_review_on: parse_date(
            "policy_register",
            &row.try_get::<String, _>("next_review_on")?,
        )?,
        notes: row.try_get("notes")?,
    })
}

fn json<T: for<'de> Deserialize<'de>>(row: &AnyRow, column: &str) -> Result<T, StoreError> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
        entity: "filtering_reviews",
        problem: format!("{column}: {e}"),
    })
}

fn review_from_row(row: &AnyRow) -> Result<FilteringReview, StoreError> {
    Ok(FilteringReview {
        id: row.try_get("id")?,
        school_id: row.try_get("school_id")?,
        held_on: parse_date("filtering_reviews", &row.try_get::<String, _>("held_on")?)?,
        participants: json(row, "participants")?,
        inputs: json(row, "inputs")?,
        decisions: json(row, "decisions")?,
        next_review_on: parse_date(
            "filtering_reviews",
            &row.try_get::<String, _>("next_review_on")?,
        )?,
        recorded_by: row.try_get("recorded_by")?,
    })
}

fn to_json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::invalid("review", e.to_string()))
}

impl Store {
    /// Adds a policy to the register, or updates the one with that title.
    pub async fn save_policy(
        &self,
        actor: &Actor,
        school_id: i64,
        entry: &PolicyEntry,
    ) -> Result<RegisteredPolicy, StoreError> {
        let title = required("title", &entry.title)?.to_owned();
        let owner = required("owner", &entry.owner)?.to_owned();
        let approver = required("approver", &entry.approver)?.to_owned();
        if entry.next_review_on < entry.last_reviewed_on.unwrap_or(entry.written_on) {
            return Err(StoreError::invalid(
                "next review",
                "the next review is before the policy was last written or reviewed",
            ));
        }
        let mut write = self.begin_write().await?;
        let result = async {
            let before =
                sqlx::query("SELECT * FROM policy_register WHERE school_id = $1 AND title = $2")
                    .bind(school_id)
                    .bind(&title)
                    .fetch_optional(&mut *write.tx)
                    .await?
                    .map(|r| policy_from_row(&r))
                    .transpose()?;
            let now = crate::now();
            let id: i64 = match &before {
                Some(b) => {
                    sqlx::query(
                        "UPDATE policy_register SET owner = $1, approver = $2, written_on = $3, \
                         last_reviewed_on = $4, next_review_on = $5, notes = $6, updated_at = $7 \
                         WHERE id = $8",
                    )
                    .bind(&owner)
                    .bind(&approver)
                    .bind(date_text(entry.written_on))
                    .bind(entry.last_reviewed_on.map(date_text))
                    .bind(date_text(entry.next_review_on))
                    .bind(optional(entry.notes.as_deref()))
                    .bind(&now)
                    .bind(b.id)
                    .execute(&mut *write.tx)
                    .await?;
                    b.id
                }
                None => sqlx::query(
                    "INSERT INTO policy_register (school_id, title, owner, approver, written_on, \
                     last_reviewed_on, next_review_on, notes, updated_at) VALUES ($1, $2, $3, $4, \
                     $5, $6, $7, $8, $9) RETURNING id",
                )
                .bind(school_id)
                .bind(&title)
                .bind(&owner)
                .bind(&approver)
                .bind(date_text(entry.written_on))
                .bind(entry.last_reviewed_on.map(date_text))
                .bind(date_text(entry.next_review_on))
                .bind(optional(entry.notes.as_deref()))
                .bind(&now)
                .fetch_one(&mut *write.tx)
                .await?
                .try_get("id")?,
            };
            let row = sqlx::query("SELECT * FROM policy_register WHERE id = $1")
                .bind(id)
                .fetch_one(&mut *write.tx)
                .await?;
            let after = policy_from_row(&row)?;
            let mut change = Change::new(
                if before.is_some() { "update" } else { "create" },
                "policy",
                id,
            )
            .after(&after);
            if let Some(b) = &before {
                change = change.before(b);
            }
            append(&mut write.tx, actor, change).await?;
            Ok(after)
        }
        .await;
        write.finish(result).await
    }

    /// The register, soonest review first.
    pub async fn policies(&self, school_id: i64) -> Result<Vec<RegisteredPolicy>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM policy_register WHERE school_id = $1 ORDER BY next_review_on, title",
        )
        .bind(school_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(policy_from_row).collect()
    }

    /// Policies whose review falls on or before `by`, in one school or
    /// (with `None`) every school.
    pub async fn policies_due(
        &self,
        school_id: Option<i64>,
        by: NaiveDate,
    ) -> Result<Vec<RegisteredPolicy>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM policy_register WHERE ($1 = 0 OR school_id = $1) \
             AND next_review_on <= $2 ORDER BY next_review_on, title",
        )
        .bind(school_id.unwrap_or(0))
        .bind(date_text(by))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(policy_from_row).collect()
    }

    /// Records a filtering and monitoring review. Every G5 role must be
    /// present, with at least one check and one decision.
    pub async fn record_filtering_review(
        &self,
        actor: &Actor,
        school_id: i64,
        new: &NewReview,
    ) -> Result<FilteringReview, StoreError> {
        for role in REVIEW_ROLES {
            if !new
                .participants
                .iter()
                .any(|p| p.role.eq_ignore_ascii_case(role) && !p.name.trim().is_empty())
            {
                return Err(StoreError::invalid(
                    "participants",
                    format!("the review needs someone from {role} (SLT, DSL, IT and the responsible governor take part together)"),
                ));
            }
        }
        required("risk profile", &new.inputs.risk_profile)?;
        if new.inputs.checks.is_empty() {
            return Err(StoreError::invalid(
                "checks",
                "record at least one check of the filtering across groups and devices",
            ));
        }
        let decisions: Vec<String> = new
            .decisions
            .iter()
            .filter_map(|d| optional(Some(d)))
            .collect();
        if decisions.is_empty() {
            return Err(StoreError::invalid("decisions", "record what was decided"));
        }
        if new.next_review_on <= new.held_on {
            return Err(StoreError::invalid(
                "next review",
                "the next review must be after this one",
            ));
        }
        let mut write = self.begin_write().await?;
        let result = async {
            let row = sqlx::query(
                "INSERT INTO filtering_reviews (school_id, held_on, participants, inputs, decisions, \
                 next_review_on, recorded_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 RETURNING *",
            )
            .bind(school_id)
            .bind(date_text(new.held_on))
            .bind(to_json(&new.participants)?)
            .bind(to_json(&new.inputs)?)
            .bind(to_json(&decisions)?)
            .bind(date_text(new.next_review_on))
            .bind(actor.as_str())
            .bind(crate::now())
            .fetch_one(&mut *write.tx)
            .await?;
            let review = review_from_row(&row)?;
            append(
                &mut write.tx,
                actor,
                Change::new("record", "filtering_review", review.id).after(&review),
            )
            .await?;
            Ok(review)
        }
        .await;
        write.finish(result).await
    }

    /// The school's reviews, newest first.
    pub async fn filtering_reviews(
        &self,
        school_id: i64,
    ) -> Result<Vec<FilteringReview>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM filtering_reviews WHERE school_id = $1 ORDER BY held_on DESC, id DESC",
        )
        .bind(school_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(review_from_row).collect()
    }
}

impl FilteringReview {
    /// The review as Markdown, for the governors' minutes and inspection.
    pub fn markdown(&self, school_name: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# Filtering and monitoring review, {school_name}\n\nHeld on {}. Next review due by {}.\n",
            self.held_on, self.next_review_on
        );
        out.push_str("## Participants\n\n");
        for p in &self.participants {
            let _ = writeln!(out, "- {}: {}", p.role, p.name);
        }
        out.push_str("\n## Inputs\n\n### Risk profile\n\n");
        let _ = writeln!(out, "{}\n", self.inputs.risk_profile.trim());
        out.push_str("### Incidents since the last review\n\n");
        let _ = writeln!(out, "{}\n", or_none(&self.inputs.incidents));
        out.push_str("### Changes in risk or technology\n\n");
        let _ = writeln!(out, "{}\n", or_none(&self.inputs.changes));
        out.push_str("### Checks across groups and devices\n\n| Group or device | Check | Result |\n|---|---|---|\n");
        for c in &self.inputs.checks {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                cell(&c.subject),
                cell(&c.test),
                cell(&c.result)
            );
        }
        out.push_str("\n## Decisions\n\n");
        for (i, d) in self.decisions.iter().enumerate() {
            let _ = writeln!(out, "{}. {}", i + 1, d);
        }
        let _ = writeln!(out, "\nRecorded by {}.", self.recorded_by);
        out
    }
}

fn or_none(text: &str) -> &str {
    let text = text.trim();
    if text.is_empty() {
        "None recorded."
    } else {
        text
    }
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}
