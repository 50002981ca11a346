//! Safeguarding incidents (issue 8): the record a concern becomes, following
//! the response flowchart of the school's online safety policy (R1–R7).
//!
//! Every method takes the signed-in [`Account`] and decides, here in the
//! store rather than in each page, whether that account may do it, so the
//! console and the API cannot disagree. Need-to-know is the rule:
//!
//! - any member of staff may *log* a concern, and gets back a reference,
//!   not the record;
//! - a concern about a pupil (or anyone else) is read by the DSL, the
//!   deputies and the headteacher; a concern about a member of staff by the
//!   headteacher alone; one about the headteacher by the chair of governors
//!   alone (R4);
//! - the person a concern is about can never open it, whatever roles they
//!   hold.
//!
//! Every opening is audited as a view; every change is audited with its
//! before and after, in the same transaction.
//!
//! The flowchart's first question (is illegal material or activity
//! suspected?) sets the incident's [`Path`]. The illegal path creates its
//! fixed steps as entries, each to be ticked off, the reporting steps only
//! with a reference; the internal path needs a record of review by two
//! distinct senior members of staff before the incident can close. An
//! incident of suspected child sexual abuse imagery refuses every image
//! upload, recognised by content, not by name.

pub(crate) mod evidence;
mod types;

use std::collections::HashSet;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::audit::{append, Change};
use crate::{format_time, Account, Actor, StaffRole, Store, StoreError, Write};

pub use evidence::EvidenceKey;
pub use types::*;

/// The categories every school uses (the "4 Cs"); monitoring categories
/// (`self-harm`, `bullying`…) are accepted as written.
pub const CATEGORIES: &[&str] = &["content", "contact", "conduct", "commerce"];

/// The roles that count as senior staff for a record of review (R3).
const SENIOR: &[StaffRole] = &[StaffRole::Headteacher, StaffRole::Dsl, StaffRole::DeputyDsl];

fn actor_of(account: &Account) -> Actor {
    Actor::account(account.id, &account.username)
}

/// The roles that read incidents on a route.
fn readers(route: Route) -> &'static [StaffRole] {
    match route {
        Route::Dsl => &[StaffRole::Dsl, StaffRole::DeputyDsl, StaffRole::Headteacher],
        Route::Headteacher => &[StaffRole::Headteacher],
        Route::ChairOfGovernors => &[StaffRole::ChairOfGovernors],
    }
}

fn refused(reason: impl Into<String>) -> StoreError {
    StoreError::Forbidden {
        reason: reason.into(),
    }
}

/// Whether `account` may open `incident`, and if not, why.
pub fn may_open(account: &Account, incident: &Incident) -> Result<(), StoreError> {
    if let Some(me) = account.person_id {
        if incident
            .people
            .iter()
            .any(|p| p.role == InvolvedRole::Subject && p.person_id == Some(me))
        {
            return Err(refused(
                "this concern is about you, so you cannot open it; it is with the person the policy names",
            ));
        }
    }
    if !account.holds(incident.school_id, readers(incident.route)) {
        return Err(refused(match incident.route {
            Route::Dsl => "incidents are for the safeguarding team and the headteacher",
            Route::Headteacher => "concerns about staff are for the headteacher alone",
            Route::ChairOfGovernors => {
                "concerns about the headteacher are for the chair of governors alone"
            }
        }));
    }
    Ok(())
}

fn required<'a>(field: &'static str, text: &'a str) -> Result<&'a str, StoreError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(StoreError::invalid(field, "this must be filled in"));
    }
    Ok(text)
}

fn optional(text: &Option<String>) -> Option<&str> {
    text.as_deref().map(str::trim).filter(|t| !t.is_empty())
}

fn check_category(category: &str) -> Result<String, StoreError> {
    let category = category.trim().to_lowercase();
    let plain = !category.is_empty()
        && category
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '-' || c == '_');
    if !plain {
        return Err(StoreError::invalid(
            "category",
            format!(
                "`{category}` is not a category; use one of {} or a monitoring category such as self-harm",
                CATEGORIES.join(", ")
            ),
        ));
    }
    Ok(category)
}

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

fn corrupt(problem: String) -> StoreError {
    StoreError::Corrupt {
        entity: "incidents",
        problem,
    }
}

/// The date a record may be reviewed for disposal (R7): when the youngest
/// pupil involved reaches `years_after_birth`, or `years_otherwise` after it
/// was made when no pupil's date of birth is known.
fn retain_until(
    policy: &RetentionPolicy,
    births: &[NaiveDate],
    recorded: DateTime<Utc>,
) -> (String, NaiveDate) {
    let add_years = |date: NaiveDate, years: u32| {
        date.with_year(date.year() + years as i32)
            .or_else(|| {
                date.pred_opt()
                    .and_then(|d| d.with_year(d.year() + years as i32))
            })
            .unwrap_or(date)
    };
    match births.iter().max() {
        Some(youngest) => (
            format!(
                "child protection: until the pupil's {}th birthday",
                policy.years_after_birth
            ),
            add_years(*youngest, policy.years_after_birth),
        ),
        None => (
            format!("{} years from the record", policy.years_otherwise),
            add_years(recorded.date_naive(), policy.years_otherwise),
        ),
    }
}

impl Store {
    /// Logs a concern or opens an incident. Any member of staff of the
    /// school may; escalating an alert needs a reader of incidents, and
    /// marks the alert escalated in the same transaction.
    pub async fn log_concern(
        &self,
        account: &Account,
        school_id: i64,
        new: &NewIncident,
        retention: &RetentionPolicy,
    ) -> Result<Receipt, StoreError> {
        if !account.belongs_to(school_id) {
            return Err(refused("only staff of this school can log a concern here"));
        }
        let category = check_category(&new.category)?;
        let summary = required("summary", &new.summary)?;
        let description = required("description", &new.description)?;
        let recorded = Utc::now();
        if new.occurred_at > recorded + chrono::Duration::minutes(5) {
            return Err(StoreError::invalid(
                "occurred at",
                "that time is in the future; give when it happened",
            ));
        }
        if new.alert_id.is_some() && !account.holds(school_id, readers(Route::Dsl)) {
            return Err(refused(
                "only the safeguarding team can escalate an alert to an incident",
            ));
        }
        for p in &new.people {
            if p.person_id.is_none() && optional(&p.description).is_none() {
                return Err(StoreError::invalid(
                    "people",
                    "describe each person the school holds no record of",
                ));
            }
        }
        let about_adult = matches!(new.about, About::Staff | About::Headteacher);
        if about_adult && !new.people.iter().any(|p| p.role == InvolvedRole::Subject) {
            return Err(StoreError::invalid(
                "people",
                "a concern about an adult must name the person it is about (as subject)",
            ));
        }
        let route = new.about.route();
        let origin = match (new.alert_id, new.event_id) {
            (Some(_), _) => Origin::Alert,
            (None, Some(_)) => Origin::Event,
            (None, None) => Origin::Concern,
        };
        let actor = actor_of(account);
        let mut write = self.begin_write().await?;
        let result = async {
            let mut births = Vec::new();
            for p in &new.people {
                let Some(person_id) = p.person_id else {
                    continue;
                };
                let row =
                    sqlx::query("SELECT school_id, kind, date_of_birth FROM people WHERE id = $1")
                        .bind(person_id)
                        .fetch_optional(&mut *write.tx)
                        .await?
                        .ok_or_else(|| StoreError::NotFound {
                            entity: "person",
                            key: person_id.to_string(),
                        })?;
                let their_school: i64 = row.try_get("school_id")?;
                if their_school != school_id {
                    return Err(StoreError::invalid(
                        "people",
                        format!("person {person_id} is not at this school"),
                    ));
                }
                let kind: String = row.try_get("kind")?;
                let dob: Option<String> = row.try_get("date_of_birth")?;
                if kind == "pupil" {
                    if let Some(dob) =
                        dob.and_then(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok())
                    {
                        births.push(dob);
                    }
                }
            }
            let (rule, until) = retain_until(retention, &births, recorded);
            let year = recorded.year();
            let prefix = format!("INC-{year}-");
            let count: i64 =
                sqlx::query("SELECT COUNT(*) AS n FROM incidents WHERE reference LIKE $1")
                    .bind(format!("{prefix}%"))
                    .fetch_one(&mut *write.tx)
                    .await?
                    .try_get("n")?;
            let reference = format!("{prefix}{:04}", count + 1);
            let now = crate::now();
            let (path, kind) = Path::Undecided.columns();
            let row = sqlx::query(
                "INSERT INTO incidents (school_id, reference, category, summary, description, \
                 occurred_at, recorded_at, device, location, urgency, origin, alert_id, event_id, \
                 about, route, path, illegal_kind, status, retention_rule, retain_until, \
                 created_by, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
                 $10, $11, $12, $13, $14, $15, $16, $17, 'open', $18, $19, $20, $21, $21) \
                 RETURNING id",
            )
            .bind(school_id)
            .bind(&reference)
            .bind(&category)
            .bind(summary)
            .bind(description)
            .bind(format_time(new.occurred_at))
            .bind(format_time(recorded))
            .bind(optional(&new.device))
            .bind(optional(&new.location))
            .bind(new.urgency.as_str())
            .bind(origin.as_str())
            .bind(new.alert_id)
            .bind(new.event_id)
            .bind(new.about.as_str())
            .bind(route.as_str())
            .bind(path)
            .bind(kind)
            .bind(&rule)
            .bind(until.format("%Y-%m-%d").to_string())
            .bind(actor.as_str())
            .bind(&now)
            .fetch_one(&mut *write.tx)
            .await?;
            let id: i64 = row.try_get("id")?;
            for p in &new.people {
                sqlx::query(
                    "INSERT INTO incident_people (incident_id, person_id, description, role) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(id)
                .bind(p.person_id)
                .bind(optional(&p.description))
                .bind(p.role.as_str())
                .execute(&mut *write.tx)
                .await?;
            }
            if let Some(alert_id) = new.alert_id {
                let updated = sqlx::query(
                    "UPDATE monitoring_alerts SET status = 'escalated', status_reason = $1, \
                     status_by = $2, status_at = $3, updated_at = $3 \
                     WHERE id = $4 AND school_id = $5",
                )
                .bind(format!("escalated to incident {reference}"))
                .bind(actor.as_str())
                .bind(&now)
                .bind(alert_id)
                .bind(school_id)
                .execute(&mut *write.tx)
                .await?;
                if updated.rows_affected() != 1 {
                    return Err(StoreError::NotFound {
                        entity: "alert",
                        key: alert_id.to_string(),
                    });
                }
                let mut change = Change::new("escalate", "alert", alert_id);
                let reason = format!("escalated to incident {reference}");
                change.reason = Some(&reason);
                append(&mut write.tx, &actor, change).await?;
            }
            let incident = incident_in(&mut write, id).await?;
            append(
                &mut write.tx,
                &actor,
                Change::new("create", "incident", id).after(&incident),
            )
            .await?;
            Ok(Receipt {
                id,
                reference,
                route,
            })
        }
        .await;
        write.finish(result).await
    }

    /// Opens an incident for `account`, audited as a view.
    pub async fn incident(&self, account: &Account, id: i64) -> Result<Incident, StoreError> {
        let incident = self.incident_unaudited(id).await?;
        self.audit_opening(account, &incident, "incident", id)
            .await?;
        Ok(incident)
    }

    /// Refuses, and records the refusal, or records the view.
    async fn audit_opening(
        &self,
        account: &Account,
        incident: &Incident,
        entity: &str,
        entity_id: i64,
    ) -> Result<(), StoreError> {
        let actor = actor_of(account);
        match may_open(account, incident) {
            Ok(()) => {
                self.audit_view(&actor, entity, &entity_id.to_string())
                    .await
            }
            Err(e) => {
                let reason = e.to_string();
                let mut change = Change::new("refuse", entity, entity_id);
                change.reason = Some(&reason);
                self.audit_only(&actor, change).await?;
                Err(e)
            }
        }
    }

    async fn incident_unaudited(&self, id: i64) -> Result<Incident, StoreError> {
        let row = sqlx::query("SELECT * FROM incidents WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound {
                entity: "incident",
                key: id.to_string(),
            })?;
        let people = sqlx::query(
            "SELECT ip.*, p.given_name, p.family_name FROM incident_people ip \
             LEFT JOIN people p ON p.id = ip.person_id WHERE ip.incident_id = $1 ORDER BY ip.id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        incident_from_rows(&row, &people)
    }

    /// The incidents of a school that `account` may open, newest first. The
    /// listing itself is audited.
    pub async fn incidents(
        &self,
        account: &Account,
        school_id: i64,
        status: Option<IncidentStatus>,
    ) -> Result<Vec<Incident>, StoreError> {
        let ids: Vec<i64> = sqlx::query(
            "SELECT id FROM incidents WHERE school_id = $1 AND ($2 = '' OR status = $2) \
             ORDER BY occurred_at DESC, id DESC",
        )
        .bind(school_id)
        .bind(status.map_or("", IncidentStatus::as_str))
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| r.try_get("id"))
        .collect::<Result<_, _>>()?;
        let visible = self.visible(account, ids).await?;
        self.audit_view(&actor_of(account), "incidents", &school_id.to_string())
            .await?;
        Ok(visible)
    }

    /// Runs `change` on an open incident `account` may work on, audited.
    async fn change_incident<T, F>(
        &self,
        account: &Account,
        id: i64,
        action: &str,
        reason: Option<&str>,
        change: F,
    ) -> Result<T, StoreError>
    where
        F: for<'w> FnOnce(
            &'w mut Write,
            Incident,
            Actor,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<T, StoreError>> + Send + 'w>,
        >,
        T: Send,
    {
        let before = self.incident_unaudited(id).await?;
        if let Err(e) = may_open(account, &before) {
            // Recorded like any refused opening.
            self.audit_opening(account, &before, "incident", id).await?;
            return Err(e);
        }
        let actor = actor_of(account);
        let mut write = self.begin_write().await?;
        let result = async {
            let value = change(&mut write, before.clone(), actor.clone()).await?;
            sqlx::query("UPDATE incidents SET updated_at = $1 WHERE id = $2")
                .bind(crate::now())
                .bind(id)
                .execute(&mut *write.tx)
                .await?;
            let after = incident_in(&mut write, id).await?;
            let mut entry = Change::new(action, "incident", id)
                .before(&before)
                .after(&after);
            entry.reason = reason;
            append(&mut write.tx, &actor, entry).await?;
            Ok(value)
        }
        .await;
        write.finish(result).await
    }

    /// Answers the flowchart's first question. `Some(kind)`: illegal
    /// material or activity is suspected, and the fixed steps are added.
    /// `None`: the internal procedure. Changing an answer already given
    /// needs a reason (an internal review that finds illegal content must
    /// switch to the illegal path at once).
    pub async fn decide_path(
        &self,
        account: &Account,
        id: i64,
        illegal: Option<IllegalKind>,
        reason: Option<&str>,
    ) -> Result<Incident, StoreError> {
        let to = illegal.map_or(Path::Internal, Path::Illegal);
        let reason = reason.map(str::trim).filter(|r| !r.is_empty());
        let owned_reason = reason.map(str::to_owned);
        self.change_incident(
            account,
            id,
            "decide_path",
            reason,
            move |write, before, actor| {
                Box::pin(async move {
                    if before.status == IncidentStatus::Closed {
                        return Err(StoreError::invalid("path", "reopen the incident first"));
                    }
                    if before.path == to {
                        return Err(StoreError::invalid(
                            "path",
                            "the incident is already on that path",
                        ));
                    }
                    let reason = owned_reason;
                    if before.path != Path::Undecided && reason.is_none() {
                        return Err(StoreError::invalid(
                            "reason",
                            "say why the answer to the first question changes",
                        ));
                    }
                    let (path, kind) = to.columns();
                    sqlx::query("UPDATE incidents SET path = $1, illegal_kind = $2 WHERE id = $3")
                        .bind(path)
                        .bind(kind)
                        .bind(id)
                        .execute(&mut *write.tx)
                        .await?;
                    let now = crate::now();
                    insert_entry(
                        write,
                        id,
                        &EntryData::Path {
                            from: before.path,
                            to,
                            reason,
                        },
                        &now,
                        None,
                        Some(&now),
                        &actor,
                    )
                    .await?;
                    if let Path::Illegal(kind) = to {
                        let existing: HashSet<IllegalStep> = entries_in(write, id)
                            .await?
                            .into_iter()
                            .filter_map(|e| match e.data {
                                EntryData::Step { step, .. } => Some(step),
                                _ => None,
                            })
                            .collect();
                        for step in kind.steps() {
                            if existing.contains(&step) {
                                continue;
                            }
                            insert_entry(
                                write,
                                id,
                                &EntryData::Step {
                                    step,
                                    note: None,
                                    reference: None,
                                },
                                &now,
                                None,
                                None,
                                &actor,
                            )
                            .await?;
                        }
                    }
                    Ok(())
                })
            },
        )
        .await?;
        self.incident_unaudited(id).await
    }

    /// Ticks off a step of the illegal path. Reporting steps need the
    /// reference the police, the IWF or CEOP gave.
    pub async fn complete_step(
        &self,
        account: &Account,
        id: i64,
        step: IllegalStep,
        note: Option<&str>,
        reference: Option<&str>,
    ) -> Result<IncidentEntry, StoreError> {
        let note = note
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        let reference = reference
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        self.change_incident(account, id, "complete_step", None, move |write, before, actor| {
            Box::pin(async move {
                if !matches!(before.path, Path::Illegal(_)) {
                    return Err(StoreError::invalid(
                        "step",
                        "steps belong to the illegal path; answer the first question first",
                    ));
                }
                if step.needs_reference() && reference.is_none() {
                    return Err(StoreError::invalid(
                        "reference",
                        format!("record the reference you were given for `{step}`"),
                    ));
                }
                let entry = entries_in(write, id)
                    .await?
                    .into_iter()
                    .find(|e| matches!(e.data, EntryData::Step { step: s, .. } if s == step))
                    .ok_or_else(|| {
                        StoreError::invalid("step", format!("`{step}` is not a step of this incident"))
                    })?;
                if entry.done_at.is_some() {
                    return Err(StoreError::invalid("step", format!("`{step}` is already done")));
                }
                let data = EntryData::Step {
                    step,
                    note,
                    reference,
                };
                let now = crate::now();
                sqlx::query(
                    "UPDATE incident_entries SET data = $1, done_at = $2, done_by = $3 WHERE id = $4",
                )
                .bind(json(&data))
                .bind(&now)
                .bind(actor.as_str())
                .bind(entry.id)
                .execute(&mut *write.tx)
                .await?;
                entry_in(write, entry.id).await
            })
        })
        .await
    }

    /// Records the internal procedure's record of review (R3): two distinct
    /// senior members of staff, the designated computer, what they looked
    /// at, their conclusion and the action.
    pub async fn record_review(
        &self,
        account: &Account,
        id: i64,
        review: &InternalReview,
    ) -> Result<IncidentEntry, StoreError> {
        let computer = required("computer", &review.computer)?.to_owned();
        let conclusion = required("conclusion", &review.conclusion)?.to_owned();
        if review.items.is_empty() {
            return Err(StoreError::invalid(
                "items",
                "record each URL reviewed and describe the content",
            ));
        }
        for item in &review.items {
            required("url", &item.url)?;
            required("item description", &item.description)?;
        }
        let distinct: HashSet<i64> = review.reviewers.iter().map(|r| r.account_id).collect();
        if review.reviewers.len() < 2 || distinct.len() != review.reviewers.len() {
            return Err(StoreError::invalid(
                "reviewers",
                "a review needs two different senior members of staff (R3)",
            ));
        }
        let mut reviewers = Vec::new();
        for r in &review.reviewers {
            let reviewer = self.account(r.account_id).await?.ok_or_else(|| {
                StoreError::invalid(
                    "reviewers",
                    format!("account {} does not exist", r.account_id),
                )
            })?;
            reviewers.push(reviewer);
        }
        let review = review.clone();
        self.change_incident(account, id, "record_review", None, move |write, before, actor| {
            Box::pin(async move {
                if before.path != Path::Internal {
                    return Err(StoreError::invalid(
                        "review",
                        "a record of review belongs to the internal procedure; answer the first question “no” first",
                    ));
                }
                let mut named = Vec::new();
                for reviewer in &reviewers {
                    let role = reviewer
                        .roles
                        .iter()
                        .filter(|r| r.school_id.is_none_or(|s| s == before.school_id))
                        .find(|r| SENIOR.contains(&r.role))
                        .ok_or_else(|| {
                            StoreError::invalid(
                                "reviewers",
                                format!(
                                    "{} is not senior staff (headteacher, DSL or deputy DSL) at this school",
                                    reviewer.display_name
                                ),
                            )
                        })?;
                    if let Err(e) = may_open(reviewer, &before) {
                        return Err(StoreError::invalid(
                            "reviewers",
                            format!("{} cannot review this incident: {e}", reviewer.display_name),
                        ));
                    }
                    named.push(Reviewer {
                        account_id: reviewer.id,
                        name: reviewer.display_name.clone(),
                        role: role.role.as_str().to_owned(),
                    });
                }
                for shot in &review.screenshots {
                    let found = sqlx::query(
                        "SELECT id FROM incident_evidence WHERE id = $1 AND incident_id = $2",
                    )
                    .bind(shot)
                    .bind(id)
                    .fetch_optional(&mut *write.tx)
                    .await?;
                    if found.is_none() {
                        return Err(StoreError::invalid(
                            "screenshots",
                            format!("evidence {shot} is not attached to this incident"),
                        ));
                    }
                }
                let data = EntryData::Review(InternalReview {
                    reviewers: named,
                    computer,
                    conclusion,
                    ..review
                });
                let now = crate::now();
                let entry = insert_entry(write, id, &data, &now, None, Some(&now), &actor).await?;
                entry_in(write, entry).await
            })
        })
        .await
    }

    /// Adds an action, a referral, a record of parents informed, or a note.
    /// Actions and referrals may carry a due time; overdue ones are shown.
    pub async fn add_entry(
        &self,
        account: &Account,
        id: i64,
        data: &EntryData,
        due: Option<DateTime<Utc>>,
    ) -> Result<IncidentEntry, StoreError> {
        match data {
            EntryData::Action { description, owner } => {
                required("description", description)?;
                required("owner", owner)?;
            }
            EntryData::Referral { detail, .. } => {
                required("detail", detail)?;
            }
            EntryData::ParentContact { who, note, .. } => {
                required("who", who)?;
                required("note", note)?;
            }
            EntryData::Note { text } => {
                required("note", text)?;
            }
            _ => {
                return Err(StoreError::invalid(
                    "entry",
                    "steps, reviews, paths, closing and reopening have their own forms",
                ))
            }
        }
        let data = data.clone();
        self.change_incident(
            account,
            id,
            "add_entry",
            None,
            move |write, before, actor| {
                Box::pin(async move {
                    if before.status == IncidentStatus::Closed {
                        return Err(StoreError::invalid("entry", "reopen the incident first"));
                    }
                    let now = crate::now();
                    // Records of things already done are done when written.
                    let done = matches!(
                        data,
                        EntryData::ParentContact { .. } | EntryData::Note { .. }
                    )
                    .then_some(now.as_str());
                    let due = due.map(format_time);
                    let entry =
                        insert_entry(write, id, &data, &now, due.as_deref(), done, &actor).await?;
                    entry_in(write, entry).await
                })
            },
        )
        .await
    }

    /// Marks an action or a referral done.
    pub async fn complete_entry(
        &self,
        account: &Account,
        id: i64,
        entry_id: i64,
    ) -> Result<IncidentEntry, StoreError> {
        self.change_incident(
            account,
            id,
            "complete_entry",
            None,
            move |write, _before, actor| {
                Box::pin(async move {
                    let entry = entry_in(write, entry_id).await?;
                    if entry.incident_id != id {
                        return Err(StoreError::NotFound {
                            entity: "incident entry",
                            key: entry_id.to_string(),
                        });
                    }
                    if !matches!(
                        entry.data,
                        EntryData::Action { .. } | EntryData::Referral { .. }
                    ) {
                        return Err(StoreError::invalid(
                            "entry",
                            "only actions and referrals are completed",
                        ));
                    }
                    if entry.done_at.is_some() {
                        return Err(StoreError::invalid("entry", "already done"));
                    }
                    sqlx::query(
                        "UPDATE incident_entries SET done_at = $1, done_by = $2 WHERE id = $3",
                    )
                    .bind(crate::now())
                    .bind(actor.as_str())
                    .bind(entry_id)
                    .execute(&mut *write.tx)
                    .await?;
                    entry_in(write, entry_id).await
                })
            },
        )
        .await
    }

    /// The entries of an incident in time order, audited as a view.
    pub async fn incident_entries(
        &self,
        account: &Account,
        id: i64,
    ) -> Result<Vec<IncidentEntry>, StoreError> {
        let incident = self.incident_unaudited(id).await?;
        self.audit_opening(account, &incident, "incident", id)
            .await?;
        let rows =
            sqlx::query("SELECT * FROM incident_entries WHERE incident_id = $1 ORDER BY at, id")
                .bind(id)
                .fetch_all(self.pool())
                .await?;
        let now = crate::now();
        rows.iter().map(|r| entry_from_row(r, &now)).collect()
    }

    /// Closes an incident with its outcome and the debrief (R6). The
    /// illegal path needs the police reported; the internal path needs its
    /// record of review.
    pub async fn close_incident(
        &self,
        account: &Account,
        id: i64,
        outcome: &str,
        review: &ClosingReview,
    ) -> Result<Incident, StoreError> {
        let outcome = required("outcome", outcome)?.to_owned();
        required("debrief", &review.debrief)?;
        let review = review.clone();
        self.change_incident(account, id, "close", None, move |write, before, actor| {
            Box::pin(async move {
                if before.status == IncidentStatus::Closed {
                    return Err(StoreError::invalid("status", "the incident is already closed"));
                }
                let entries = entries_in(write, id).await?;
                match before.path {
                    Path::Undecided => {
                        return Err(StoreError::invalid(
                            "path",
                            "answer the first question (is illegal material or activity suspected?) before closing",
                        ))
                    }
                    Path::Illegal(_) => {
                        let reported = entries.iter().any(|e| {
                            e.done_at.is_some()
                                && matches!(e.data, EntryData::Step { step: IllegalStep::ReportPolice, .. })
                        });
                        if !reported {
                            return Err(StoreError::invalid(
                                "steps",
                                "record the police report and its reference before closing",
                            ));
                        }
                    }
                    Path::Internal => {
                        if !entries.iter().any(|e| matches!(e.data, EntryData::Review(_))) {
                            return Err(StoreError::invalid(
                                "review",
                                "record the review by two senior members of staff before closing",
                            ));
                        }
                    }
                }
                let now = crate::now();
                sqlx::query(
                    "UPDATE incidents SET status = 'closed', outcome = $1, closing_review = $2, \
                     closed_at = $3, closed_by = $4 WHERE id = $5",
                )
                .bind(&outcome)
                .bind(json(&review))
                .bind(&now)
                .bind(actor.as_str())
                .bind(id)
                .execute(&mut *write.tx)
                .await?;
                insert_entry(
                    write,
                    id,
                    &EntryData::Close {
                        outcome: outcome.clone(),
                        review: review.clone(),
                    },
                    &now,
                    None,
                    Some(&now),
                    &actor,
                )
                .await?;
                Ok(())
            })
        })
        .await?;
        self.incident_unaudited(id).await
    }

    /// Reopens a closed incident; the reason is recorded and audited.
    pub async fn reopen_incident(
        &self,
        account: &Account,
        id: i64,
        reason: &str,
    ) -> Result<Incident, StoreError> {
        let reason = required("reason", reason)?.to_owned();
        let audit_reason = reason.clone();
        self.change_incident(account, id, "reopen", Some(&audit_reason), move |write, before, actor| {
            Box::pin(async move {
                if before.status != IncidentStatus::Closed {
                    return Err(StoreError::invalid("status", "the incident is open"));
                }
                sqlx::query(
                    "UPDATE incidents SET status = 'open', closed_at = NULL, closed_by = NULL WHERE id = $1",
                )
                .bind(id)
                .execute(&mut *write.tx)
                .await?;
                let now = crate::now();
                insert_entry(write, id, &EntryData::Reopen { reason }, &now, None, Some(&now), &actor)
                    .await?;
                Ok(())
            })
        })
        .await?;
        self.incident_unaudited(id).await
    }

    /// Actions and referrals past their due time and not done, across the
    /// incidents `account` may open.
    pub async fn overdue_entries(
        &self,
        account: &Account,
        school_id: i64,
    ) -> Result<Vec<(String, IncidentEntry)>, StoreError> {
        let now = crate::now();
        let rows = sqlx::query(
            "SELECT e.*, i.reference FROM incident_entries e JOIN incidents i ON i.id = e.incident_id \
             WHERE i.school_id = $1 AND e.done_at IS NULL AND e.due_at IS NOT NULL AND e.due_at < $2 \
             ORDER BY e.due_at",
        )
        .bind(school_id)
        .bind(&now)
        .fetch_all(self.pool())
        .await?;
        let mut ids: Vec<i64> = Vec::new();
        for row in &rows {
            let id: i64 = row.try_get("incident_id")?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        let open: HashSet<i64> = self
            .visible(account, ids)
            .await?
            .iter()
            .map(|i| i.id)
            .collect();
        let mut out = Vec::new();
        for row in &rows {
            let entry = entry_from_row(row, &now)?;
            if open.contains(&entry.incident_id) {
                out.push((row.try_get("reference")?, entry));
            }
        }
        Ok(out)
    }

    /// A pupil's chronology (R1): every incident that involves them, every
    /// alert about them and every entry on those incidents, in time order.
    /// Incidents the account may not open are left out; the reading is
    /// audited against the pupil.
    pub async fn chronology(
        &self,
        account: &Account,
        school_id: i64,
        pupil_id: i64,
    ) -> Result<Vec<ChronologyItem>, StoreError> {
        if !account.holds(school_id, readers(Route::Dsl)) {
            return Err(refused(
                "chronologies are for the safeguarding team and the headteacher",
            ));
        }
        let mut items = Vec::new();
        let ids: Vec<i64> = sqlx::query(
            "SELECT DISTINCT ip.incident_id AS id FROM incident_people ip \
             JOIN incidents i ON i.id = ip.incident_id WHERE ip.person_id = $1 AND i.school_id = $2",
        )
        .bind(pupil_id)
        .bind(school_id)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| r.try_get("id"))
        .collect::<Result<_, _>>()?;
        for incident in self.visible(account, ids).await? {
            let id = incident.id;
            items.push(ChronologyItem {
                at: incident.occurred_at.clone(),
                kind: "incident".to_owned(),
                incident_reference: Some(incident.reference.clone()),
                alert_id: incident.alert_id,
                summary: format!("{} ({})", incident.summary, incident.category),
            });
            let now = crate::now();
            let rows = sqlx::query("SELECT * FROM incident_entries WHERE incident_id = $1")
                .bind(id)
                .fetch_all(self.pool())
                .await?;
            for row in &rows {
                let entry = entry_from_row(row, &now)?;
                items.push(ChronologyItem {
                    at: entry.done_at.clone().unwrap_or(entry.at.clone()),
                    kind: entry.data.kind().to_owned(),
                    incident_reference: Some(incident.reference.clone()),
                    alert_id: None,
                    summary: entry.data.summary(),
                });
            }
        }
        let alerts = sqlx::query(
            "SELECT id, first_at, category, grade, status FROM monitoring_alerts \
             WHERE person_id = $1 AND school_id = $2",
        )
        .bind(pupil_id)
        .bind(school_id)
        .fetch_all(self.pool())
        .await?;
        for row in &alerts {
            let grade: i64 = row.try_get("grade")?;
            let category: String = row.try_get("category")?;
            let status: String = row.try_get("status")?;
            items.push(ChronologyItem {
                at: row.try_get("first_at")?,
                kind: "alert".to_owned(),
                incident_reference: None,
                alert_id: Some(row.try_get("id")?),
                summary: format!("monitoring alert: {category}, grade {grade} ({status})"),
            });
        }
        items.sort_by(|a, b| a.at.cmp(&b.at).then(a.kind.cmp(&b.kind)));
        self.audit_view(&actor_of(account), "chronology", &pupil_id.to_string())
            .await?;
        Ok(items)
    }

    /// Records whose retention date has come (R7), for a person to review.
    /// Nothing is ever deleted by sheepdog itself.
    pub async fn incidents_due_for_review(
        &self,
        account: &Account,
        school_id: i64,
        on: NaiveDate,
    ) -> Result<Vec<Incident>, StoreError> {
        let ids: Vec<i64> = sqlx::query(
            "SELECT id FROM incidents WHERE school_id = $1 AND retain_until <= $2 ORDER BY retain_until",
        )
        .bind(school_id)
        .bind(on.format("%Y-%m-%d").to_string())
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| r.try_get("id"))
        .collect::<Result<_, _>>()?;
        self.visible(account, ids).await
    }

    /// The incidents among `ids` that `account` may open, in the order of
    /// `ids`. Two queries whatever the number: the incidents, then everyone
    /// involved in them, since need-to-know is decided on both.
    async fn visible(&self, account: &Account, ids: Vec<i64>) -> Result<Vec<Incident>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // Ids are integers from the database, so listing them is safe.
        let list = ids
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let rows = sqlx::query(&format!("SELECT * FROM incidents WHERE id IN ({list})"))
            .fetch_all(self.pool())
            .await?;
        let people = sqlx::query(&format!(
            "SELECT ip.*, p.given_name, p.family_name FROM incident_people ip \
             LEFT JOIN people p ON p.id = ip.person_id WHERE ip.incident_id IN ({list}) \
             ORDER BY ip.id"
        ))
        .fetch_all(self.pool())
        .await?;
        let mut by_id = std::collections::HashMap::new();
        for row in &rows {
            let id: i64 = row.try_get("id")?;
            let theirs: Vec<AnyRow> = people
                .iter()
                .filter(|p| p.try_get::<i64, _>("incident_id").ok() == Some(id))
                .cloned()
                .collect();
            by_id.insert(id, incident_from_rows(row, &theirs)?);
        }
        Ok(ids
            .iter()
            .filter_map(|id| by_id.remove(id))
            .filter(|incident| may_open(account, incident).is_ok())
            .collect())
    }

    /// The accounts that may sit on a record of review at a school: its
    /// headteacher, DSL and deputies (R3), as (account id, name, role).
    pub async fn senior_reviewers(
        &self,
        school_id: i64,
    ) -> Result<Vec<(i64, String, StaffRole)>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.id, a.display_name, r.role FROM accounts a \
             JOIN account_roles r ON r.account_id = a.id \
             WHERE a.disabled = 0 AND (r.school_id IS NULL OR r.school_id = $1) \
             ORDER BY a.display_name, a.id",
        )
        .bind(school_id)
        .fetch_all(self.pool())
        .await?;
        let mut out: Vec<(i64, String, StaffRole)> = Vec::new();
        for row in &rows {
            let Ok(role) = row.try_get::<String, _>("role")?.parse::<StaffRole>() else {
                continue;
            };
            let id: i64 = row.try_get("id")?;
            if SENIOR.contains(&role) && !out.iter().any(|(seen, _, _)| *seen == id) {
                out.push((id, row.try_get("display_name")?, role));
            }
        }
        Ok(out)
    }
}

async fn incident_in(write: &mut Write, id: i64) -> Result<Incident, StoreError> {
    let row = sqlx::query("SELECT * FROM incidents WHERE id = $1")
        .bind(id)
        .fetch_one(&mut *write.tx)
        .await?;
    let people = sqlx::query(
        "SELECT ip.*, p.given_name, p.family_name FROM incident_people ip \
         LEFT JOIN people p ON p.id = ip.person_id WHERE ip.incident_id = $1 ORDER BY ip.id",
    )
    .bind(id)
    .fetch_all(&mut *write.tx)
    .await?;
    incident_from_rows(&row, &people)
}

async fn entries_in(write: &mut Write, id: i64) -> Result<Vec<IncidentEntry>, StoreError> {
    let now = crate::now();
    let rows = sqlx::query("SELECT * FROM incident_entries WHERE incident_id = $1 ORDER BY at, id")
        .bind(id)
        .fetch_all(&mut *write.tx)
        .await?;
    rows.iter().map(|r| entry_from_row(r, &now)).collect()
}

async fn entry_in(write: &mut Write, entry_id: i64) -> Result<IncidentEntry, StoreError> {
    let row = sqlx::query("SELECT * FROM incident_entries WHERE id = $1")
        .bind(entry_id)
        .fetch_optional(&mut *write.tx)
        .await?
        .ok_or_else(|| StoreError::NotFound {
            entity: "incident entry",
            key: entry_id.to_string(),
        })?;
    entry_from_row(&row, &crate::now())
}

#[allow(clippy::too_many_arguments)]
async fn insert_entry(
    write: &mut Write,
    incident_id: i64,
    data: &EntryData,
    at: &str,
    due_at: Option<&str>,
    done_at: Option<&str>,
    actor: &Actor,
) -> Result<i64, StoreError> {
    let row = sqlx::query(
        "INSERT INTO incident_entries (incident_id, kind, data, at, due_at, done_at, done_by, \
         created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $4) RETURNING id",
    )
    .bind(incident_id)
    .bind(data.kind())
    .bind(json(data))
    .bind(at)
    .bind(due_at)
    .bind(done_at)
    .bind(done_at.map(|_| actor.as_str()))
    .bind(actor.as_str())
    .fetch_one(&mut *write.tx)
    .await?;
    Ok(row.try_get("id")?)
}

fn entry_from_row(row: &AnyRow, now: &str) -> Result<IncidentEntry, StoreError> {
    let data: String = row.try_get("data")?;
    let due_at: Option<String> = row.try_get("due_at")?;
    let done_at: Option<String> = row.try_get("done_at")?;
    Ok(IncidentEntry {
        id: row.try_get("id")?,
        incident_id: row.try_get("incident_id")?,
        data: serde_json::from_str(&data).map_err(|e| corrupt(format!("entry data: {e}")))?,
        at: row.try_get("at")?,
        overdue: done_at.is_none() && due_at.as_deref().is_some_and(|d| d < now),
        due_at,
        done_at,
        done_by: row.try_get("done_by")?,
        created_by: row.try_get("created_by")?,
    })
}

fn incident_from_rows(row: &AnyRow, people: &[AnyRow]) -> Result<Incident, StoreError> {
    let occurred_at: String = row.try_get("occurred_at")?;
    let recorded_at: String = row.try_get("recorded_at")?;
    let path: String = row.try_get("path")?;
    let kind: Option<String> = row.try_get("illegal_kind")?;
    let about: About = row.try_get::<String, _>("about")?.parse()?;
    let review: Option<String> = row.try_get("closing_review")?;
    let mut involved = Vec::with_capacity(people.len());
    for p in people {
        let given: Option<String> = p.try_get("given_name")?;
        let family: Option<String> = p.try_get("family_name")?;
        involved.push(InvolvedPerson {
            id: p.try_get("id")?,
            person_id: p.try_get("person_id")?,
            name: given.zip(family).map(|(g, f)| format!("{g} {f}")),
            description: p.try_get("description")?,
            role: p.try_get::<String, _>("role")?.parse()?,
        });
    }
    Ok(Incident {
        id: row.try_get("id")?,
        school_id: row.try_get("school_id")?,
        reference: row.try_get("reference")?,
        category: row.try_get("category")?,
        summary: row.try_get("summary")?,
        description: row.try_get("description")?,
        // Times are fixed-width UTC text: the date is the first ten bytes.
        recorded_late: occurred_at.get(..10) < recorded_at.get(..10),
        occurred_at,
        recorded_at,
        device: row.try_get("device")?,
        location: row.try_get("location")?,
        urgency: row.try_get::<String, _>("urgency")?.parse()?,
        origin: row.try_get::<String, _>("origin")?.parse()?,
        alert_id: row.try_get("alert_id")?,
        event_id: row.try_get("event_id")?,
        lado_referral_needed: matches!(about, About::Staff | About::Headteacher),
        about,
        route: row.try_get::<String, _>("route")?.parse()?,
        path: Path::from_columns(&path, kind.as_deref())?,
        status: row.try_get::<String, _>("status")?.parse()?,
        outcome: row.try_get("outcome")?,
        closing_review: review
            .map(|r| serde_json::from_str(&r))
            .transpose()
            .map_err(|e| corrupt(format!("closing review: {e}")))?,
        closed_at: row.try_get("closed_at")?,
        closed_by: row.try_get("closed_by")?,
        retention_rule: row.try_get("retention_rule")?,
        retain_until: row.try_get("retain_until")?,
        created_by: row.try_get("created_by")?,
        people: involved,
    })
}
