//! Monitoring records: alerts raised from keyword hits, their triage, and
//! the outbox of notifications owed to the DSL team (issue 6).
//!
//! An alert is one concern about one subject (a person where known, else a
//! device or an address) in one category. While an alert is open (new,
//! acknowledged or escalated), further concerns about the same subject and
//! category within the throttle window merge into it: the occurrences are
//! counted, the worst grade is kept, and the events are referenced, so that
//! a pupil searching the same thing twenty times makes one alert, not
//! twenty. Delivering the same event twice changes nothing.
//!
//! An alert that needs the DSL at once (its grade reaches the notice
//! grade when created, or a merge raises it there) gets a row in the
//! notification outbox in the same transaction, so no alert can be stored
//! without its notification being owed. The notifier takes due rows and
//! marks each sent, or records the failure and when to try again.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::audit::{append, Change};
use crate::{format_time, Actor, Store, StoreError};

/// How many event ids an alert keeps; the count goes on in `occurrences`.
pub const MAX_ALERT_EVENTS: usize = 100;

/// Where an alert is in the DSL's triage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    New,
    Acknowledged,
    Dismissed,
    Escalated,
}

/// A concern to record, as monitoring produced it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewAlert {
    pub person_id: Option<i64>,
    /// Who, for de-duplication: the person's key where known, else the
    /// device or the address. Never empty.
    pub subject: String,
    pub device_id: Option<i64>,
    pub device_name: Option<String>,
    pub address: Option<String>,
    /// A monitoring category (`self-harm`, `drugs`…).
    pub category: String,
    /// 1 to 5.
    pub grade: u8,
    /// The text that matched, as written.
    pub matched_text: String,
    /// Which input it came from (`dns`, `proxy`, `agent`…).
    pub source: String,
    pub at: DateTime<Utc>,
    /// Ids of the events behind the concern.
    pub event_ids: Vec<i64>,
    /// The surrounding events as seen at the time (JSON).
    pub context: serde_json::Value,
}

/// A stored alert.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    pub id: i64,
    pub school_id: i64,
    pub person_id: Option<i64>,
    pub subject: String,
    pub device_id: Option<i64>,
    pub device_name: Option<String>,
    pub address: Option<String>,
    pub category: String,
    pub grade: u8,
    pub matched_text: String,
    pub source: String,
    pub first_at: String,
    pub last_at: String,
    pub occurrences: i64,
    pub event_ids: Vec<i64>,
    pub context: serde_json::Value,
    pub status: AlertStatus,
    pub status_reason: Option<String>,
    pub status_by: Option<String>,
    pub status_at: Option<String>,
}

/// How alerts are de-duplicated and when the DSL is told at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertPolicy {
    /// Concerns about the same subject and category this close together
    /// merge into one open alert.
    pub throttle: Duration,
    /// Alerts at or above this grade notify the DSL team at once.
    pub notify_from_grade: u8,
}

impl Default for AlertPolicy {
    fn default() -> Self {
        Self {
            throttle: Duration::from_secs(60 * 60),
            notify_from_grade: 4,
        }
    }
}

/// What recording a concern did.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertOutcome {
    Created {
        alert: Alert,
        notify: bool,
    },
    /// Merged into an open alert; `notify` when that raised its grade to
    /// the notice grade or beyond.
    Merged {
        alert: Alert,
        notify: bool,
    },
    /// Every event was already recorded on the alert: nothing changed.
    Duplicate {
        alert: Alert,
    },
}

/// Which alerts to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertFilter {
    pub status: Option<AlertStatus>,
    pub min_grade: u8,
    pub person_id: Option<i64>,
    pub limit: i64,
}

impl Default for AlertFilter {
    fn default() -> Self {
        Self {
            status: None,
            min_grade: 1,
            person_id: None,
            limit: 100,
        }
    }
}

/// A notification owed to the DSL team. It carries no offending text,
/// only what is needed to link into the console.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingNotification {
    pub id: i64,
    pub alert_id: i64,
    pub school_id: i64,
    pub category: String,
    pub grade: u8,
    /// `new` or `raised`.
    pub reason: String,
    pub attempts: i64,
    pub due_at: String,
}

impl AlertOutcome {
    pub fn alert(&self) -> &Alert {
        match self {
            Self::Created { alert, .. }
            | Self::Merged { alert, .. }
            | Self::Duplicate { alert } => alert,
        }
    }

    /// Whether the DSL team must be told now.
    pub fn notify(&self) -> bool {
        matches!(
            self,
            Self::Created { notify: true, .. } | Self::Merged { notify: true, .. }
        )
    }
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Acknowledged => "acknowledged",
            Self::Dismissed => "dismissed",
            Self::Escalated => "escalated",
        }
    }

    /// Open alerts still need the DSL; repeats merge into them.
    pub fn is_open(self) -> bool {
        self != Self::Dismissed
    }

    /// The triage moves allowed, and whether each needs a reason.
    /// Dismissal and escalation always need one (M3); a dismissed alert
    /// can only be reopened by escalating it.
    fn change_to(self, next: Self) -> Option<bool> {
        use AlertStatus::*;
        match (self, next) {
            (New, Acknowledged) => Some(false),
            (New | Acknowledged | Escalated, Dismissed) => Some(true),
            (New | Acknowledged | Dismissed, Escalated) => Some(true),
            _ => None,
        }
    }
}

impl fmt::Display for AlertStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AlertStatus {
    type Err = StoreError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "new" => Ok(Self::New),
            "acknowledged" => Ok(Self::Acknowledged),
            "dismissed" => Ok(Self::Dismissed),
            "escalated" => Ok(Self::Escalated),
            other => Err(StoreError::invalid(
                "alert status",
                format!("`{other}` is not one of: new, acknowledged, dismissed, escalated"),
            )),
        }
    }
}

fn alert_from_row(row: &AnyRow) -> Result<Alert, StoreError> {
    let corrupt = |problem: String| StoreError::Corrupt {
        entity: "monitoring_alerts",
        problem,
    };
    let grade: i64 = row.try_get("grade")?;
    let event_ids: String = row.try_get("event_ids")?;
    let context: String = row.try_get("context")?;
    let status: String = row.try_get("status")?;
    Ok(Alert {
        id: row.try_get("id")?,
        school_id: row.try_get("school_id")?,
        person_id: row.try_get("person_id")?,
        subject: row.try_get("subject")?,
        device_id: row.try_get("device_id")?,
        device_name: row.try_get("device_name")?,
        address: row.try_get("address")?,
        category: row.try_get("category")?,
        grade: u8::try_from(grade).map_err(|_| corrupt(format!("grade {grade}")))?,
        matched_text: row.try_get("matched_text")?,
        source: row.try_get("source")?,
        first_at: row.try_get("first_at")?,
        last_at: row.try_get("last_at")?,
        occurrences: row.try_get("occurrences")?,
        event_ids: serde_json::from_str(&event_ids)
            .map_err(|e| corrupt(format!("event ids: {e}")))?,
        context: serde_json::from_str(&context).map_err(|e| corrupt(format!("context: {e}")))?,
        status: status.parse()?,
        status_reason: row.try_get("status_reason")?,
        status_by: row.try_get("status_by")?,
        status_at: row.try_get("status_at")?,
    })
}

fn check(alert: &NewAlert) -> Result<(), StoreError> {
    if !(1..=5).contains(&alert.grade) {
        return Err(StoreError::invalid(
            "alert grade",
            format!("{} is outside 1-5", alert.grade),
        ));
    }
    if alert.subject.trim().is_empty() {
        return Err(StoreError::invalid(
            "alert subject",
            "an alert must say who: a person, a device or an address",
        ));
    }
    if alert.category.trim().is_empty() {
        return Err(StoreError::invalid("alert category", "empty"));
    }
    Ok(())
}

fn json(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_string())
}

impl Store {
    /// Records a concern: a new alert, or a merge into the open alert for
    /// the same subject and category within the throttle window.
    pub async fn record_alert(
        &self,
        actor: &Actor,
        school_id: i64,
        new: &NewAlert,
        policy: &AlertPolicy,
    ) -> Result<AlertOutcome, StoreError> {
        check(new)?;
        let at = format_time(new.at);
        let since = chrono::Duration::from_std(policy.throttle)
            .ok()
            .and_then(|window| new.at.checked_sub_signed(window))
            .map_or_else(String::new, format_time);
        let mut write = self.begin_write().await?;
        let result = async {
            let open = sqlx::query(
                "SELECT * FROM monitoring_alerts WHERE school_id = $1 AND subject = $2 \
                 AND category = $3 AND status <> 'dismissed' AND last_at >= $4 \
                 ORDER BY last_at DESC, id DESC LIMIT 1",
            )
            .bind(school_id)
            .bind(&new.subject)
            .bind(&new.category)
            .bind(&since)
            .fetch_optional(&mut *write.tx)
            .await?
            .map(|row| alert_from_row(&row))
            .transpose()?;
            let now = crate::now();
            let Some(before) = open else {
                let row = sqlx::query(
                    "INSERT INTO monitoring_alerts (school_id, person_id, subject, device_id, \
                     device_name, address, category, grade, matched_text, source, first_at, \
                     last_at, occurrences, event_ids, context, status, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, 1, $12, $13, \
                     'new', $14, $14) RETURNING id",
                )
                .bind(school_id)
                .bind(new.person_id)
                .bind(&new.subject)
                .bind(new.device_id)
                .bind(&new.device_name)
                .bind(&new.address)
                .bind(&new.category)
                .bind(i64::from(new.grade))
                .bind(&new.matched_text)
                .bind(&new.source)
                .bind(&at)
                .bind(json(&capped(&new.event_ids)))
                .bind(json(&new.context))
                .bind(&now)
                .fetch_one(&mut *write.tx)
                .await?;
                let id: i64 = row.try_get("id")?;
                let alert = self.alert_in(&mut write, id).await?;
                append(
                    &mut write.tx,
                    actor,
                    Change::new("create", "alert", id).after(&alert),
                )
                .await?;
                let notify = new.grade >= policy.notify_from_grade;
                if notify {
                    owe_notification(&mut write, actor, &alert, "new", &now).await?;
                }
                return Ok(AlertOutcome::Created { alert, notify });
            };
            if !new.event_ids.is_empty()
                && new.event_ids.iter().all(|e| before.event_ids.contains(e))
            {
                return Ok(AlertOutcome::Duplicate { alert: before });
            }
            let raised = new.grade > before.grade;
            let mut event_ids = before.event_ids.clone();
            for id in &new.event_ids {
                if !event_ids.contains(id) {
                    event_ids.push(*id);
                }
            }
            let event_ids = capped(&event_ids);
            let last_at = before.last_at.clone().max(at);
            let (grade, matched_text) = if raised {
                (new.grade, new.matched_text.clone())
            } else {
                (before.grade, before.matched_text.clone())
            };
            // A worse concern on an alert someone has already looked at
            // puts it back in front of the DSL.
            let status = if raised && before.status == AlertStatus::Acknowledged {
                AlertStatus::New
            } else {
                before.status
            };
            sqlx::query(
                "UPDATE monitoring_alerts SET grade = $1, matched_text = $2, last_at = $3, \
                 occurrences = occurrences + 1, event_ids = $4, status = $5, updated_at = $6 \
                 WHERE id = $7",
            )
            .bind(i64::from(grade))
            .bind(&matched_text)
            .bind(&last_at)
            .bind(json(&event_ids))
            .bind(status.as_str())
            .bind(&now)
            .bind(before.id)
            .execute(&mut *write.tx)
            .await?;
            let alert = self.alert_in(&mut write, before.id).await?;
            append(
                &mut write.tx,
                actor,
                Change::new("merge", "alert", before.id)
                    .before(&before)
                    .after(&alert),
            )
            .await?;
            let notify = raised && grade >= policy.notify_from_grade;
            if notify {
                owe_notification(&mut write, actor, &alert, "raised", &now).await?;
            }
            Ok(AlertOutcome::Merged { alert, notify })
        }
        .await;
        write.finish(result).await
    }

    async fn alert_in(&self, write: &mut crate::Write, id: i64) -> Result<Alert, StoreError> {
        let row = sqlx::query("SELECT * FROM monitoring_alerts WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *write.tx)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                entity: "alert",
                key: id.to_string(),
            })?;
        alert_from_row(&row)
    }

    pub async fn alert(&self, id: i64) -> Result<Alert, StoreError> {
        let row = sqlx::query("SELECT * FROM monitoring_alerts WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound {
                entity: "alert",
                key: id.to_string(),
            })?;
        alert_from_row(&row)
    }

    /// Alerts of a school, worst first, then newest first.
    pub async fn alerts(
        &self,
        school_id: i64,
        filter: &AlertFilter,
    ) -> Result<Vec<Alert>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM monitoring_alerts WHERE school_id = $1 AND grade >= $2 \
             AND ($3 = '' OR status = $3) AND ($4 = 0 OR person_id = $4) \
             ORDER BY grade DESC, last_at DESC, id DESC LIMIT $5",
        )
        .bind(school_id)
        .bind(i64::from(filter.min_grade))
        .bind(filter.status.map_or("", AlertStatus::as_str))
        .bind(filter.person_id.unwrap_or(0))
        .bind(filter.limit.max(0))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(alert_from_row).collect()
    }

    /// Moves an alert through triage. Dismissing and escalating need a
    /// reason; every move is audited with it.
    pub async fn set_alert_status(
        &self,
        actor: &Actor,
        id: i64,
        status: AlertStatus,
        reason: Option<&str>,
    ) -> Result<Alert, StoreError> {
        let reason = reason.map(str::trim).filter(|r| !r.is_empty());
        let mut write = self.begin_write().await?;
        let result = async {
            let before = self.alert_in(&mut write, id).await?;
            let needs_reason = before.status.change_to(status).ok_or_else(|| {
                StoreError::invalid(
                    "alert status",
                    format!("an alert that is {} cannot become {status}", before.status),
                )
            })?;
            if needs_reason && reason.is_none() {
                return Err(StoreError::invalid(
                    "alert status",
                    format!("a reason is needed to mark an alert {status}"),
                ));
            }
            let now = crate::now();
            sqlx::query(
                "UPDATE monitoring_alerts SET status = $1, status_reason = $2, status_by = $3, \
                 status_at = $4, updated_at = $4 WHERE id = $5",
            )
            .bind(status.as_str())
            .bind(reason)
            .bind(actor.as_str())
            .bind(&now)
            .bind(id)
            .execute(&mut *write.tx)
            .await?;
            let after = self.alert_in(&mut write, id).await?;
            let action = match status {
                AlertStatus::New => "reopen",
                AlertStatus::Acknowledged => "acknowledge",
                AlertStatus::Dismissed => "dismiss",
                AlertStatus::Escalated => "escalate",
            };
            let mut change = Change::new(action, "alert", id)
                .before(&before)
                .after(&after);
            change.reason = reason;
            append(&mut write.tx, actor, change).await?;
            Ok(after)
        }
        .await;
        write.finish(result).await
    }

    /// Notifications due at `now`, oldest first.
    pub async fn due_notifications(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<PendingNotification>, StoreError> {
        let rows = sqlx::query(
            "SELECT n.id, n.alert_id, a.school_id, a.category, n.grade, n.reason, n.attempts, \
             n.due_at FROM monitoring_notifications n \
             JOIN monitoring_alerts a ON a.id = n.alert_id \
             WHERE n.sent_at IS NULL AND n.due_at <= $1 ORDER BY n.due_at, n.id LIMIT $2",
        )
        .bind(format_time(now))
        .bind(limit.max(0))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let grade: i64 = row.try_get("grade")?;
                Ok(PendingNotification {
                    id: row.try_get("id")?,
                    alert_id: row.try_get("alert_id")?,
                    school_id: row.try_get("school_id")?,
                    category: row.try_get("category")?,
                    grade: u8::try_from(grade).unwrap_or(5),
                    reason: row.try_get("reason")?,
                    attempts: row.try_get("attempts")?,
                    due_at: row.try_get("due_at")?,
                })
            })
            .collect()
    }

    /// Records that a notification was delivered.
    pub async fn notification_sent(&self, actor: &Actor, id: i64) -> Result<(), StoreError> {
        self.settle_notification(actor, id, None, None).await
    }

    /// Records a failed delivery and when to try again.
    pub async fn notification_failed(
        &self,
        actor: &Actor,
        id: i64,
        error: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.settle_notification(actor, id, Some(error), Some(retry_at))
            .await
    }

    async fn settle_notification(
        &self,
        actor: &Actor,
        id: i64,
        error: Option<&str>,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let mut write = self.begin_write().await?;
        let result = async {
            let now = crate::now();
            let changed = match (error, retry_at) {
                (Some(error), Some(retry_at)) => sqlx::query(
                    "UPDATE monitoring_notifications SET attempts = attempts + 1, \
                         last_error = $1, due_at = $2 WHERE id = $3 AND sent_at IS NULL",
                )
                .bind(error)
                .bind(format_time(retry_at))
                .bind(id),
                _ => sqlx::query(
                    "UPDATE monitoring_notifications SET attempts = attempts + 1, sent_at = $1 \
                         WHERE id = $2 AND sent_at IS NULL",
                )
                .bind(&now)
                .bind(id),
            }
            .execute(&mut *write.tx)
            .await?
            .rows_affected();
            if changed == 0 {
                return Err(StoreError::NotFound {
                    entity: "pending notification",
                    key: id.to_string(),
                });
            }
            let action = if error.is_some() {
                "delivery_failed"
            } else {
                "delivered"
            };
            let mut change = Change::new(action, "notification", id);
            change.reason = error;
            append(&mut write.tx, actor, change).await?;
            Ok(())
        }
        .await;
        write.finish(result).await
    }
}

/// One line of the weekly digest: how many alerts of a category and grade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertTally {
    pub category: String,
    pub grade: u8,
    pub alerts: i64,
    /// Of those, still new (nobody has looked).
    pub unread: i64,
}

impl Store {
    /// Alerts of a school active in `[since, until)`, counted by category
    /// and grade, worst grade first: the weekly digest's table.
    pub async fn alert_tally(
        &self,
        school_id: i64,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<AlertTally>, StoreError> {
        let rows = sqlx::query(
            "SELECT category, grade, COUNT(*) AS alerts, \
             SUM(CASE WHEN status = 'new' THEN 1 ELSE 0 END) AS unread \
             FROM monitoring_alerts WHERE school_id = $1 AND last_at >= $2 AND first_at < $3 \
             GROUP BY category, grade ORDER BY grade DESC, category",
        )
        .bind(school_id)
        .bind(format_time(since))
        .bind(format_time(until))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let grade: i64 = row.try_get("grade")?;
                Ok(AlertTally {
                    category: row.try_get("category")?,
                    grade: u8::try_from(grade).unwrap_or(5),
                    alerts: row.try_get("alerts")?,
                    unread: row.try_get::<Option<i64>, _>("unread")?.unwrap_or(0),
                })
            })
            .collect()
    }

    /// Whether the digest for `week` (`2026-W48`) has gone to the school.
    pub async fn digest_sent(&self, school_id: i64, week: &str) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM monitoring_digests WHERE school_id = $1 AND week = $2",
        )
        .bind(school_id)
        .bind(week)
        .fetch_one(self.pool())
        .await?;
        let n: i64 = row.try_get("n")?;
        Ok(n > 0)
    }

    /// Records that the digest for `week` went out, covering `alerts`.
    pub async fn record_digest(
        &self,
        actor: &Actor,
        school_id: i64,
        week: &str,
        alerts: i64,
    ) -> Result<(), StoreError> {
        let mut write = self.begin_write().await?;
        let result = async {
            let row = sqlx::query(
                "INSERT INTO monitoring_digests (school_id, week, alerts, sent_at) \
                 VALUES ($1, $2, $3, $4) RETURNING id",
            )
            .bind(school_id)
            .bind(week)
            .bind(alerts)
            .bind(crate::now())
            .fetch_one(&mut *write.tx)
            .await?;
            let id: i64 = row.try_get("id")?;
            let mut change = Change::new("delivered", "digest", id);
            change.after = Some(json(&serde_json::json!({
                "school_id": school_id,
                "week": week,
                "alerts": alerts,
            })));
            append(&mut write.tx, actor, change).await?;
            Ok(())
        }
        .await;
        write.finish(result).await
    }
}

async fn owe_notification(
    write: &mut crate::Write,
    actor: &Actor,
    alert: &Alert,
    reason: &str,
    now: &str,
) -> Result<(), StoreError> {
    let row = sqlx::query(
        "INSERT INTO monitoring_notifications (alert_id, reason, grade, due_at, created_at) \
         VALUES ($1, $2, $3, $4, $4) RETURNING id",
    )
    .bind(alert.id)
    .bind(reason)
    .bind(i64::from(alert.grade))
    .bind(now)
    .fetch_one(&mut *write.tx)
    .await?;
    let id: i64 = row.try_get("id")?;
    let mut change = Change::new("owe", "notification", id);
    change.after = Some(format!(
        "{{\"alert_id\":{},\"grade\":{},\"reason\":\"{reason}\"}}",
        alert.id, alert.grade
    ));
    append(&mut write.tx, actor, change).await?;
    Ok(())
}

fn capped(ids: &[i64]) -> Vec<i64> {
    // Keep the first events (how it began) and the latest (where it is).
    if ids.len() <= MAX_ALERT_EVENTS {
        return ids.to_vec();
    }
    let half = MAX_ALERT_EVENTS / 2;
    ids[..half]
        .iter()
        .chain(&ids[ids.len() - half..])
        .copied()
        .collect()
}

impl Store {
    /// How many alerts of each grade a school has had whose latest
    /// occurrence falls in `[since, until)`, worst grade first.
    pub async fn alert_counts_by_grade(
        &self,
        school_id: i64,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<(u8, i64)>, StoreError> {
        sqlx::query(
            "SELECT grade, COUNT(*) AS n FROM monitoring_alerts \
             WHERE school_id = $1 AND last_at >= $2 AND last_at < $3 \
             GROUP BY grade ORDER BY grade DESC",
        )
        .bind(school_id)
        .bind(crate::format_time(since))
        .bind(crate::format_time(until))
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|row| {
            let grade: i64 = row.try_get("grade")?;
            Ok((u8::try_from(grade).unwrap_or(u8::MAX), row.try_get("n")?))
        })
        .collect()
    }
}

/// How the DSL team's triage went for one matched term: the false-positive
/// figures that tell a school which keywords cost it time for nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeywordFigures {
    pub category: String,
    /// The matched term, lower-cased so that spellings in other cases count
    /// together.
    pub term: String,
    pub alerts: i64,
    pub dismissed: i64,
    pub escalated: i64,
}

impl KeywordFigures {
    /// Dismissals per hundred alerts decided (dismissed or escalated);
    /// `None` before any was decided.
    pub fn dismissal_percent(&self) -> Option<i64> {
        let decided = self.dismissed + self.escalated;
        (decided > 0).then(|| self.dismissed * 100 / decided)
    }
}

impl Store {
    /// Alerts of a school counted per category and matched term, with how
    /// many were dismissed and escalated: the most dismissed first.
    pub async fn keyword_figures(&self, school_id: i64) -> Result<Vec<KeywordFigures>, StoreError> {
        let rows = sqlx::query(
            "SELECT category, LOWER(matched_text) AS term, COUNT(*) AS alerts, \
             SUM(CASE WHEN status = 'dismissed' THEN 1 ELSE 0 END) AS dismissed, \
             SUM(CASE WHEN status = 'escalated' THEN 1 ELSE 0 END) AS escalated \
             FROM monitoring_alerts WHERE school_id = $1 \
             GROUP BY category, LOWER(matched_text) \
             ORDER BY dismissed DESC, alerts DESC, category, term",
        )
        .bind(school_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(KeywordFigures {
                    category: row.try_get("category")?,
                    term: row.try_get("term")?,
                    alerts: row.try_get("alerts")?,
                    dismissed: row.try_get::<Option<i64>, _>("dismissed")?.unwrap_or(0),
                    escalated: row.try_get::<Option<i64>, _>("escalated")?.unwrap_or(0),
                })
            })
            .collect()
    }
}
