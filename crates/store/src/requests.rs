//! Temporary unblock requests (issue 9, F8, F11).
//!
//! A member of staff asks for a site or URL for a policy group, with the
//! reason, the lesson or purpose, and a time frame no longer than the
//! school allows. Technicians (the filtering managers) and the DSL team
//! approve or reject with a comment. An approved request is a time-bound
//! exception: the binary reads [`Store::approved_exceptions`] into the
//! running policy, which applies it between its start and end and ignores
//! it afterwards, whether or not anyone acts.
//!
//! The store does not decide what is illegal: the caller checks the target
//! against the filtering engine first and passes what it found as a
//! [`RequestCheck`]. A request that touches an illegal category is kept, as
//! `refused`, with the reason shown to the requester, and no person can
//! approve it.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Utc};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::audit::{append, Change};
use crate::{format_time, Account, Actor, StaffRole, Store, StoreError};

/// Who may decide requests.
pub const APPROVERS: &[StaffRole] = &[StaffRole::Technician, StaffRole::Dsl, StaffRole::DeputyDsl];

/// Where a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    Pending,
    Approved,
    Rejected,
    Withdrawn,
    /// Turned down by the system (an illegal category) before any person.
    Refused,
}

/// What the filtering engine said of the target, checked by the caller.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestCheck {
    /// Illegal content: the request is refused.
    pub illegal: bool,
    /// The category the target is in, if any.
    pub category: Option<String>,
    /// The engine's reason, shown when refused.
    pub reason: String,
}

/// A request as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRequest {
    /// A name (`www.example.org`, covering its subdomains) or a URL.
    pub target: String,
    /// The policy group it is for (`ks2`, `staff`).
    pub policy_group: String,
    pub class_name: Option<String>,
    pub reason: String,
    /// The lesson or purpose.
    pub purpose: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

/// A stored request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnblockRequest {
    pub id: i64,
    pub school_id: i64,
    pub reference: String,
    pub requested_by: String,
    pub requester_account: Option<i64>,
    pub target: String,
    pub policy_group: String,
    pub class_name: Option<String>,
    pub reason: String,
    pub purpose: String,
    pub starts_at: String,
    pub ends_at: String,
    pub status: RequestStatus,
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
    pub comment: Option<String>,
    pub category: Option<String>,
    pub created_at: String,
}

/// An approved request, as the running policy needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovedException {
    pub reference: String,
    pub policy_group: String,
    pub target: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub reason: String,
    pub requested_by: String,
    pub approved_by: String,
}

/// Which requests to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFilter {
    pub status: Option<RequestStatus>,
    /// Only this account's own requests.
    pub requester_account: Option<i64>,
    /// Text in the target, reason or purpose.
    pub text: Option<String>,
    pub limit: i64,
}

text_enum!(RequestStatus, "request status", {
    Pending => "pending", Approved => "approved", Rejected => "rejected",
    Withdrawn => "withdrawn", Refused => "refused",
});

fn required<'a>(field: &'static str, text: &'a str) -> Result<&'a str, StoreError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(StoreError::invalid(field, "this must be filled in"));
    }
    Ok(text)
}

fn request_from_row(row: &AnyRow) -> Result<UnblockRequest, StoreError> {
    Ok(UnblockRequest {
        id: row.try_get("id")?,
        school_id: row.try_get("school_id")?,
        reference: row.try_get("reference")?,
        requested_by: row.try_get("requested_by")?,
        requester_account: row.try_get("requester_account")?,
        target: row.try_get("target")?,
        policy_group: row.try_get("policy_group")?,
        class_name: row.try_get("class_name")?,
        reason: row.try_get("reason")?,
        purpose: row.try_get("purpose")?,
        starts_at: row.try_get("starts_at")?,
        ends_at: row.try_get("ends_at")?,
        status: row.try_get::<String, _>("status")?.parse()?,
        decided_by: row.try_get("decided_by")?,
        decided_at: row.try_get("decided_at")?,
        comment: row.try_get("comment")?,
        category: row.try_get("category")?,
        created_at: row.try_get("created_at")?,
    })
}

fn parse_time(field: &'static str, text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt {
            entity: "unblock_requests",
            problem: format!("{field} `{text}`: {e}"),
        })
}

impl Store {
    /// Records a request. Any member of staff of the school may ask; the
    /// time frame must be in order, end in the future, and be no longer
    /// than `max_length`. A target the engine found illegal is stored as
    /// refused, and the refusal is returned as the request's status.
    pub async fn request_unblock(
        &self,
        account: &Account,
        school_id: i64,
        new: &NewRequest,
        check: &RequestCheck,
        max_length: chrono::Duration,
    ) -> Result<UnblockRequest, StoreError> {
        if !account.belongs_to(school_id) {
            return Err(StoreError::Forbidden {
                reason: "only staff of this school can ask for a site here".to_owned(),
            });
        }
        let target = required("site", &new.target)?.to_lowercase();
        let group = required("group", &new.policy_group)?.to_owned();
        let reason = required("reason", &new.reason)?.to_owned();
        let purpose = required("purpose", &new.purpose)?.to_owned();
        if new.ends_at <= new.starts_at {
            return Err(StoreError::invalid(
                "end",
                "the end must be after the start",
            ));
        }
        if new.ends_at <= Utc::now() {
            return Err(StoreError::invalid("end", "the end has already passed"));
        }
        if new.ends_at - new.starts_at > max_length {
            return Err(StoreError::invalid(
                "end",
                format!(
                    "access can be asked for at most {} hours at a time; ask again for a later lesson",
                    max_length.num_hours()
                ),
            ));
        }
        let actor = Actor::account(account.id, &account.username);
        let status = if check.illegal {
            RequestStatus::Refused
        } else {
            RequestStatus::Pending
        };
        let mut write = self.begin_write().await?;
        let result = async {
            let prefix = format!("REQ-{}-", Utc::now().year());
            let count: i64 =
                sqlx::query("SELECT COUNT(*) AS n FROM unblock_requests WHERE reference LIKE $1")
                    .bind(format!("{prefix}%"))
                    .fetch_one(&mut *write.tx)
                    .await?
                    .try_get("n")?;
            let reference = format!("{prefix}{:04}", count + 1);
            let now = crate::now();
            let (decided_by, decided_at, comment) = if check.illegal {
                (
                    Some("system:policy".to_owned()),
                    Some(now.clone()),
                    Some(format!(
                        "Refused by the system: {} Illegal content is blocked for everyone and no request can change that.",
                        check.reason
                    )),
                )
            } else {
                (None, None, None)
            };
            let row = sqlx::query(
                "INSERT INTO unblock_requests (school_id, reference, requested_by, requester_account, \
                 target, policy_group, class_name, reason, purpose, starts_at, ends_at, status, \
                 decided_by, decided_at, comment, category, created_at, updated_at) VALUES ($1, $2, \
                 $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $17) RETURNING id",
            )
            .bind(school_id)
            .bind(&reference)
            .bind(actor.as_str())
            .bind(account.id)
            .bind(&target)
            .bind(&group)
            .bind(new.class_name.as_deref().map(str::trim).filter(|c| !c.is_empty()))
            .bind(&reason)
            .bind(&purpose)
            .bind(format_time(new.starts_at))
            .bind(format_time(new.ends_at))
            .bind(status.as_str())
            .bind(&decided_by)
            .bind(&decided_at)
            .bind(&comment)
            .bind(&check.category)
            .bind(&now)
            .fetch_one(&mut *write.tx)
            .await?;
            let id: i64 = row.try_get("id")?;
            let request = request_in(&mut write, id).await?;
            append(
                &mut write.tx,
                &actor,
                Change::new("create", "unblock_request", id).after(&request),
            )
            .await?;
            Ok(request)
        }
        .await;
        write.finish(result).await
    }

    /// Approves or rejects a pending request, with a comment (required to
    /// reject). Only technicians and the DSL team decide, and nobody
    /// decides their own request.
    pub async fn decide_request(
        &self,
        account: &Account,
        id: i64,
        approve: bool,
        comment: Option<&str>,
    ) -> Result<UnblockRequest, StoreError> {
        let comment = comment.map(str::trim).filter(|c| !c.is_empty());
        if !approve && comment.is_none() {
            return Err(StoreError::invalid(
                "comment",
                "say why the request is rejected; the requester sees it",
            ));
        }
        let actor = Actor::account(account.id, &account.username);
        let mut write = self.begin_write().await?;
        let result = async {
            let before = request_in(&mut write, id).await?;
            if !account.holds(before.school_id, APPROVERS) {
                return Err(StoreError::Forbidden {
                    reason:
                        "requests are decided by the filtering manager (technician) or the DSL team"
                            .to_owned(),
                });
            }
            if before.requester_account == Some(account.id) {
                return Err(StoreError::Forbidden {
                    reason: "nobody decides their own request; another approver must".to_owned(),
                });
            }
            if before.status != RequestStatus::Pending {
                return Err(StoreError::invalid(
                    "status",
                    format!("the request is {}, not pending", before.status),
                ));
            }
            let status = if approve {
                RequestStatus::Approved
            } else {
                RequestStatus::Rejected
            };
            let now = crate::now();
            sqlx::query(
                "UPDATE unblock_requests SET status = $1, decided_by = $2, decided_at = $3, \
                 comment = $4, updated_at = $3 WHERE id = $5",
            )
            .bind(status.as_str())
            .bind(actor.as_str())
            .bind(&now)
            .bind(comment)
            .bind(id)
            .execute(&mut *write.tx)
            .await?;
            let after = request_in(&mut write, id).await?;
            let mut change = Change::new(
                if approve { "approve" } else { "reject" },
                "unblock_request",
                id,
            )
            .before(&before)
            .after(&after);
            change.reason = comment;
            append(&mut write.tx, &actor, change).await?;
            Ok(after)
        }
        .await;
        write.finish(result).await
    }

    /// Withdraws one's own pending or approved request (an approved one
    /// stops applying at the next policy refresh).
    pub async fn withdraw_request(
        &self,
        account: &Account,
        id: i64,
    ) -> Result<UnblockRequest, StoreError> {
        let actor = Actor::account(account.id, &account.username);
        let mut write = self.begin_write().await?;
        let result = async {
            let before = request_in(&mut write, id).await?;
            if before.requester_account != Some(account.id) {
                return Err(StoreError::Forbidden {
                    reason: "only the requester can withdraw a request".to_owned(),
                });
            }
            if !matches!(
                before.status,
                RequestStatus::Pending | RequestStatus::Approved
            ) {
                return Err(StoreError::invalid(
                    "status",
                    format!("the request is already {}", before.status),
                ));
            }
            sqlx::query(
                "UPDATE unblock_requests SET status = 'withdrawn', updated_at = $1 WHERE id = $2",
            )
            .bind(crate::now())
            .bind(id)
            .execute(&mut *write.tx)
            .await?;
            let after = request_in(&mut write, id).await?;
            append(
                &mut write.tx,
                &actor,
                Change::new("withdraw", "unblock_request", id)
                    .before(&before)
                    .after(&after),
            )
            .await?;
            Ok(after)
        }
        .await;
        write.finish(result).await
    }

    /// Requests of a school, newest first. Approvers see all; anyone else
    /// sees their own.
    pub async fn unblock_requests(
        &self,
        account: &Account,
        school_id: i64,
        filter: &RequestFilter,
    ) -> Result<Vec<UnblockRequest>, StoreError> {
        let own_only = !account.holds(school_id, APPROVERS);
        if own_only && !account.belongs_to(school_id) {
            return Err(StoreError::Forbidden {
                reason: "not a member of staff of this school".to_owned(),
            });
        }
        let requester = if own_only {
            Some(account.id)
        } else {
            filter.requester_account
        };
        let text = filter
            .text
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| format!("%{}%", t.to_lowercase()));
        let rows = sqlx::query(
            "SELECT * FROM unblock_requests WHERE school_id = $1 AND ($2 = '' OR status = $2) \
             AND ($3 = 0 OR requester_account = $3) \
             AND ($4 = '' OR LOWER(target) LIKE $4 OR LOWER(reason) LIKE $4 OR LOWER(purpose) LIKE $4) \
             ORDER BY created_at DESC, id DESC LIMIT $5",
        )
        .bind(school_id)
        .bind(filter.status.map_or("", RequestStatus::as_str))
        .bind(requester.unwrap_or(0))
        .bind(text.unwrap_or_default())
        .bind(if filter.limit > 0 { filter.limit } else { 200 })
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(request_from_row).collect()
    }

    /// How many requests wait for a decision, in every school: a count
    /// that names nobody, for the dashboard.
    pub async fn pending_request_count(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query("SELECT COUNT(*) AS n FROM unblock_requests WHERE status = 'pending'")
                .fetch_one(self.pool())
                .await?
                .try_get("n")?,
        )
    }

    /// Approved requests whose end is still ahead: the exceptions the
    /// running policy must hold. Ended ones are left out (and would be
    /// ignored by the policy anyway).
    pub async fn approved_exceptions(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<ApprovedException>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM unblock_requests WHERE status = 'approved' AND ends_at > $1 \
             ORDER BY id",
        )
        .bind(format_time(now))
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let r = request_from_row(row)?;
            out.push(ApprovedException {
                starts_at: parse_time("starts_at", &r.starts_at)?,
                ends_at: parse_time("ends_at", &r.ends_at)?,
                reference: r.reference,
                policy_group: r.policy_group,
                target: r.target,
                reason: format!("{} ({})", r.reason, r.purpose),
                requested_by: r.requested_by,
                approved_by: r.decided_by.unwrap_or_default(),
            });
        }
        Ok(out)
    }
}

async fn request_in(write: &mut crate::Write, id: i64) -> Result<UnblockRequest, StoreError> {
    let row = sqlx::query("SELECT * FROM unblock_requests WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *write.tx)
        .await?
        .ok_or_else(|| StoreError::NotFound {
            entity: "unblock request",
            key: id.to_string(),
        })?;
    request_from_row(&row)
}
