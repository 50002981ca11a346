//! Training records (G4): online safety training for all staff at
//! induction and at least yearly, the DSL's refresher, Prevent, and
//! governors' training.
//!
//! What is *overdue* follows from who a person is: every member of staff
//! needs an induction and a yearly online safety update, the DSL team a
//! current DSL refresher, governors their governor training; and any record
//! whose expiry has passed without a newer one of its kind is overdue too.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use chrono::{Days, NaiveDate};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{
    date_text, keep_file, optional_date, parse_date, person_in, required, FileInfo, NewFile,
};
use crate::audit::{append, Change};
use crate::{Actor, Store, StoreError};

/// A kind of training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainingKind {
    Induction,
    OnlineSafetyUpdate,
    DslRefresher,
    Prevent,
    Governor,
}

text_enum!(TrainingKind, "training type", {
    Induction => "induction", OnlineSafetyUpdate => "online_safety_update",
    DslRefresher => "dsl_refresher", Prevent => "prevent", Governor => "governor",
});

impl TrainingKind {
    pub fn title(self) -> &'static str {
        match self {
            Self::Induction => "Induction",
            Self::OnlineSafetyUpdate => "Yearly online safety update",
            Self::DslRefresher => "DSL refresher",
            Self::Prevent => "Prevent",
            Self::Governor => "Governor training",
        }
    }

    /// How long it lasts when the record gives no expiry: the yearly update
    /// a year, the DSL refresher two (as Keeping Children Safe in Education
    /// asks).
    pub fn default_validity_days(self) -> Option<u64> {
        match self {
            Self::OnlineSafetyUpdate => Some(365),
            Self::DslRefresher => Some(730),
            Self::Induction | Self::Prevent | Self::Governor => None,
        }
    }
}

/// A training record as entered.
#[derive(Debug, Clone)]
pub struct NewTraining {
    pub person_id: i64,
    pub kind: TrainingKind,
    pub completed_on: NaiveDate,
    pub provider: String,
    /// A certificate.
    pub evidence: Option<NewFile>,
    /// When it must be renewed; the kind's usual validity when `None`.
    pub expires_on: Option<NaiveDate>,
}

/// A stored training record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrainingRecord {
    pub id: i64,
    pub school_id: i64,
    pub person_id: i64,
    pub person_name: String,
    pub kind: TrainingKind,
    pub completed_on: NaiveDate,
    pub provider: String,
    pub evidence_file_id: Option<i64>,
    pub expires_on: Option<NaiveDate>,
    pub recorded_by: String,
}

/// Training a person needs and has not got in date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OverdueTraining {
    pub person_id: i64,
    pub name: String,
    pub email: Option<String>,
    pub kind: TrainingKind,
    /// The newest record of this kind, if any.
    pub last_completed: Option<NaiveDate>,
    /// When it ran out; `None` when it was never recorded.
    pub expired_on: Option<NaiveDate>,
}

fn record_from_row(row: &AnyRow) -> Result<TrainingRecord, StoreError> {
    Ok(TrainingRecord {
        id: row.try_get("id")?,
        school_id: row.try_get("school_id")?,
        person_id: row.try_get("person_id")?,
        person_name: format!(
            "{} {}",
            row.try_get::<String, _>("given_name")?,
            row.try_get::<String, _>("family_name")?
        ),
        kind: row.try_get::<String, _>("kind")?.parse()?,
        completed_on: parse_date(
            "training_records",
            &row.try_get::<String, _>("completed_on")?,
        )?,
        provider: row.try_get("provider")?,
        evidence_file_id: row.try_get("evidence_file_id")?,
        expires_on: optional_date("training_records", row.try_get("expires_on")?)?,
        recorded_by: row.try_get("recorded_by")?,
    })
}

const SELECT_RECORDS: &str = "SELECT t.*, p.given_name, p.family_name FROM training_records t \
     JOIN people p ON p.id = t.person_id";

impl Store {
    /// Records a course someone took.
    pub async fn record_training(
        &self,
        actor: &Actor,
        school_id: i64,
        new: &NewTraining,
    ) -> Result<TrainingRecord, StoreError> {
        let provider = required("provider", &new.provider)?.to_owned();
        let expires_on = match new.expires_on {
            Some(e) if e < new.completed_on => {
                return Err(StoreError::invalid(
                    "expiry",
                    "the expiry date is before the date the training was completed",
                ))
            }
            Some(e) => Some(e),
            None => new
                .kind
                .default_validity_days()
                .and_then(|d| new.completed_on.checked_add_days(Days::new(d))),
        };
        if new.completed_on > super::today() {
            return Err(StoreError::invalid(
                "completed",
                "the date completed is in the future",
            ));
        }
        let mut write = self.begin_write().await?;
        let result = async {
            person_in(&mut write, school_id, new.person_id).await?;
            let evidence = match &new.evidence {
                Some(file) => Some(keep_file(&mut write, actor, school_id, file).await?),
                None => None,
            };
            let row = sqlx::query(
                "INSERT INTO training_records (school_id, person_id, kind, completed_on, provider, \
                 evidence_file_id, expires_on, recorded_by, created_at) VALUES ($1, $2, $3, $4, $5, \
                 $6, $7, $8, $9) RETURNING id",
            )
            .bind(school_id)
            .bind(new.person_id)
            .bind(new.kind.as_str())
            .bind(date_text(new.completed_on))
            .bind(&provider)
            .bind(evidence.as_ref().map(|e: &FileInfo| e.id))
            .bind(expires_on.map(date_text))
            .bind(actor.as_str())
            .bind(crate::now())
            .fetch_one(&mut *write.tx)
            .await?;
            let id: i64 = row.try_get("id")?;
            let row = sqlx::query(&format!("{SELECT_RECORDS} WHERE t.id = $1"))
                .bind(id)
                .fetch_one(&mut *write.tx)
                .await?;
            let record = record_from_row(&row)?;
            append(
                &mut write.tx,
                actor,
                Change::new("record", "training_record", id).after(&record),
            )
            .await?;
            Ok(record)
        }
        .await;
        write.finish(result).await
    }

    /// The school's training records, newest first; one person's with
    /// `person_id`.
    pub async fn training_records(
        &self,
        school_id: i64,
        person_id: Option<i64>,
    ) -> Result<Vec<TrainingRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "{SELECT_RECORDS} WHERE t.school_id = $1 AND ($2 = 0 OR t.person_id = $2) \
             ORDER BY t.completed_on DESC, t.id DESC"
        ))
        .bind(school_id)
        .bind(person_id.unwrap_or(0))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(record_from_row).collect()
    }

    /// Training that is missing or out of date on `today`, in one school or
    /// (with `None`) every school.
    pub async fn overdue_training(
        &self,
        school_id: Option<i64>,
        today: NaiveDate,
    ) -> Result<Vec<OverdueTraining>, StoreError> {
        let school = school_id.unwrap_or(0);
        let rows = sqlx::query(&format!(
            "{SELECT_RECORDS} WHERE ($1 = 0 OR t.school_id = $1) AND p.active = 1 \
             ORDER BY t.completed_on, t.id"
        ))
        .bind(school)
        .fetch_all(self.pool())
        .await?;
        let mut newest: HashMap<(i64, TrainingKind), TrainingRecord> = HashMap::new();
        for row in &rows {
            let record = record_from_row(row)?;
            newest.insert((record.person_id, record.kind), record);
        }
        let people = sqlx::query(
            "SELECT id, kind, given_name, family_name, email FROM people WHERE active = 1 \
             AND kind IN ('staff', 'governor') AND ($1 = 0 OR school_id = $1) \
             ORDER BY family_name, given_name, id",
        )
        .bind(school)
        .fetch_all(self.pool())
        .await?;
        let roles = sqlx::query("SELECT person_id, role FROM staff_roles")
            .fetch_all(self.pool())
            .await?;
        let mut roles_of: HashMap<i64, Vec<String>> = HashMap::new();
        for row in &roles {
            roles_of
                .entry(row.try_get("person_id")?)
                .or_default()
                .push(row.try_get("role")?);
        }
        let mut overdue = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for row in &people {
            let id: i64 = row.try_get("id")?;
            let kind: String = row.try_get("kind")?;
            let held = roles_of.get(&id).cloned().unwrap_or_default();
            let mut needs = Vec::new();
            if kind == "staff" {
                needs.extend([TrainingKind::Induction, TrainingKind::OnlineSafetyUpdate]);
            }
            if held.iter().any(|r| r == "dsl" || r == "deputy_dsl") {
                needs.push(TrainingKind::DslRefresher);
            }
            if kind == "governor"
                || held.iter().any(|r| {
                    matches!(
                        r.as_str(),
                        "governor" | "safeguarding_governor" | "chair_of_governors"
                    )
                })
            {
                needs.push(TrainingKind::Governor);
            }
            let name = format!(
                "{} {}",
                row.try_get::<String, _>("given_name")?,
                row.try_get::<String, _>("family_name")?
            );
            let email: Option<String> = row.try_get("email")?;
            for need in needs {
                seen.insert((id, need));
                match newest.get(&(id, need)) {
                    None => overdue.push(OverdueTraining {
                        person_id: id,
                        name: name.clone(),
                        email: email.clone(),
                        kind: need,
                        last_completed: None,
                        expired_on: None,
                    }),
                    Some(r) if r.expires_on.is_some_and(|e| e < today) => {
                        overdue.push(OverdueTraining {
                            person_id: id,
                            name: name.clone(),
                            email: email.clone(),
                            kind: need,
                            last_completed: Some(r.completed_on),
                            expired_on: r.expires_on,
                        })
                    }
                    Some(_) => {}
                }
            }
        }
        // Anything else recorded that has run out (Prevent for a teaching
        // assistant, say), where no newer record replaced it.
        let mut rest: Vec<&TrainingRecord> = newest
            .values()
            .filter(|r| !seen.contains(&(r.person_id, r.kind)))
            .filter(|r| r.expires_on.is_some_and(|e| e < today))
            .collect();
        rest.sort_by_key(|r| (r.person_name.clone(), r.kind));
        for r in rest {
            overdue.push(OverdueTraining {
                person_id: r.person_id,
                name: r.person_name.clone(),
                email: None,
                kind: r.kind,
                last_completed: Some(r.completed_on),
                expired_on: r.expires_on,
            });
        }
        Ok(overdue)
    }
}

impl OverdueTraining {
    /// One line for a list or an email.
    pub fn describe(&self) -> String {
        match (self.last_completed, self.expired_on) {
            (None, _) => format!("{}: {} never recorded", self.name, self.kind.title()),
            (Some(done), Some(expired)) => format!(
                "{}: {} completed {done}, expired {expired}",
                self.name,
                self.kind.title()
            ),
            (Some(done), None) => {
                format!("{}: {} completed {done}", self.name, self.kind.title())
            }
        }
    }
}
