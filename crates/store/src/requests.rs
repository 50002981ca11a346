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
            if status == RequestStatus::Pending {
                // Approvers whose sign-in name is an email address, except
                // the requester: the delivery task sends and retries.
                sqlx::query(
                    "INSERT INTO request_notices (request_id, address, next_attempt_at) \
                     SELECT DISTINCT $1, a.username, $2 FROM accounts a \
                     JOIN account_roles r ON r.account_id = a.id \
                     WHERE a.disabled = 0 AND a.id <> $3 AND a.username LIKE '%@%' \
                     AND (r.school_id IS NULL OR r.school_id = $4) \
                     AND r.role IN ('technician', 'dsl', 'deputy_dsl')",
                )
                .bind(id)
                .bind(&now)
                .bind(account.id)
                .bind(school_id)
                .execute(&mut *write.tx)
                .await?;
            }
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

/// Who may change filtering: the filtering manager. A trust administrator
/// holds the technician's filtering powers across the trust's schools.
pub const FILTERING_MANAGERS: &[StaffRole] =
    &[StaffRole::Technician, StaffRole::TrustAdministrator];

/// The audit log's entities that are changes to filtering: what the change
/// log (`Store::filtering_changes`) shows.
pub const FILTERING_ENTITIES: &[&str] = &[
    "unblock_request",
    "block_report",
    "group",
    "device",
    "filtering",
    crate::applied_policy::POLICY_ENTITY,
];

/// The longest a technician's allowance from an over-blocking report may
/// stand: a school year, after which it is reviewed by asking again.
pub const LONGEST_ALLOWANCE_DAYS: i64 = 366;

/// What a technician decided about an over-blocking report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportDecision {
    /// Allow the site for `policy_group` until `until`.
    Allow {
        policy_group: String,
        until: DateTime<Utc>,
    },
    KeepBlocked,
}

/// Which changes to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeFilter {
    /// Text in the actor, the record, the reason or the before and after.
    pub text: Option<String>,
    /// At or after this time (RFC 3339).
    pub since: Option<String>,
    /// Before this time.
    pub until: Option<String>,
    pub limit: i64,
}

impl Store {
    /// Settles an over-blocking report. "Allow" writes an approved,
    /// time-bound exception for the group (an unblock request decided by
    /// the technician, so it reaches the running policy like any other and
    /// lapses at its end); "keep blocked" closes the report. Both need a
    /// reason and are audited with it. Illegal targets cannot be allowed.
    pub async fn decide_block_report(
        &self,
        account: &Account,
        school_id: i64,
        report_id: i64,
        decision: &ReportDecision,
        check: &RequestCheck,
        reason: &str,
    ) -> Result<crate::BlockReport, StoreError> {
        if !account.holds(school_id, FILTERING_MANAGERS) {
            return Err(StoreError::Forbidden {
                reason: "only the filtering manager decides over-blocking reports".to_owned(),
            });
        }
        let reason = required("reason", reason)?.to_owned();
        if let ReportDecision::Allow { until, .. } = decision {
            if check.illegal {
                return Err(StoreError::Forbidden {
                    reason: format!(
                        "{} Illegal content is blocked for everyone and cannot be allowed.",
                        check.reason
                    ),
                });
            }
            if *until <= Utc::now() {
                return Err(StoreError::invalid("until", "the end has already passed"));
            }
            if *until - Utc::now() > chrono::Duration::days(LONGEST_ALLOWANCE_DAYS) {
                return Err(StoreError::invalid(
                    "until",
                    format!("an allowance stands for at most {LONGEST_ALLOWANCE_DAYS} days; review it then"),
                ));
            }
        }
        let actor = Actor::account(account.id, &account.username);
        let mut write = self.begin_write().await?;
        let result = async {
            let before = report_in(&mut write, report_id).await?;
            if before.resolution.is_some() {
                return Err(StoreError::invalid(
                    "report",
                    "this report has already been decided",
                ));
            }
            let now = crate::now();
            let (resolution, request_id) = match decision {
                ReportDecision::KeepBlocked => ("kept_blocked", None),
                ReportDecision::Allow {
                    policy_group,
                    until,
                } => {
                    let group = required("group", policy_group)?;
                    let prefix = format!("REQ-{}-", Utc::now().year());
                    let count: i64 = sqlx::query(
                        "SELECT COUNT(*) AS n FROM unblock_requests WHERE reference LIKE $1",
                    )
                    .bind(format!("{prefix}%"))
                    .fetch_one(&mut *write.tx)
                    .await?
                    .try_get("n")?;
                    let reference = format!("{prefix}{:04}", count + 1);
                    let row = sqlx::query(
                        "INSERT INTO unblock_requests (school_id, reference, requested_by, \
                         requester_account, target, policy_group, class_name, reason, purpose, \
                         starts_at, ends_at, status, decided_by, decided_at, comment, category, \
                         created_at, updated_at) VALUES ($1, $2, $3, NULL, $4, $5, NULL, $6, $7, \
                         $8, $9, 'approved', $10, $8, $6, $11, $8, $8) RETURNING id",
                    )
                    .bind(school_id)
                    .bind(&reference)
                    .bind(format!("block_report:{}", before.reference))
                    .bind(before.site.to_lowercase())
                    .bind(group)
                    .bind(&reason)
                    .bind(format!("over-blocking report {}", before.reference))
                    .bind(&now)
                    .bind(format_time(*until))
                    .bind(actor.as_str())
                    .bind(&check.category)
                    .fetch_one(&mut *write.tx)
                    .await?;
                    let id: i64 = row.try_get("id")?;
                    let request = request_in(&mut write, id).await?;
                    let mut change =
                        Change::new("allow_from_report", "unblock_request", id).after(&request);
                    change.reason = Some(&reason);
                    append(&mut write.tx, &actor, change).await?;
                    ("allowed", Some(id))
                }
            };
            sqlx::query(
                "UPDATE block_reports SET status = 'closed', resolution = $1, resolved_by = $2, \
                 resolved_at = $3, resolution_reason = $4, request_id = $5 WHERE id = $6",
            )
            .bind(resolution)
            .bind(actor.as_str())
            .bind(&now)
            .bind(&reason)
            .bind(request_id)
            .bind(report_id)
            .execute(&mut *write.tx)
            .await?;
            let after = report_in(&mut write, report_id).await?;
            let mut change = Change::new(
                if request_id.is_some() {
                    "allow"
                } else {
                    "keep_blocked"
                },
                "block_report",
                report_id,
            )
            .before(&before)
            .after(&after);
            change.reason = Some(&reason);
            append(&mut write.tx, &actor, change).await?;
            Ok(after)
        }
        .await;
        write.finish(result).await
    }

    /// Records that `actor` tried to change filtering without the
    /// filtering manager's role: the attempt is refused and kept.
    pub async fn audit_refused_change(
        &self,
        actor: &Actor,
        what: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        let mut change = Change::new("refused", "filtering", what);
        change.reason = Some(reason);
        self.audit_only(actor, change).await
    }

    /// Changes to filtering, newest first: request decisions, exceptions,
    /// report decisions, group membership, devices (the address a device
    /// is on decides its group) and refused attempts, each with who, when,
    /// before, after and the reason, straight from the audit log.
    pub async fn filtering_changes(
        &self,
        filter: &ChangeFilter,
    ) -> Result<Vec<crate::AuditEntry>, StoreError> {
        let entities = FILTERING_ENTITIES
            .iter()
            .map(|e| format!("'{e}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let text = filter
            .text
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| format!("%{}%", t.to_lowercase()))
            .unwrap_or_default();
        // Views are not changes.
        let rows = sqlx::query(&format!(
            "SELECT * FROM audit_log WHERE entity IN ({entities}) AND action <> 'view' \
             AND ($1 = '' OR LOWER(actor) LIKE $1 OR LOWER(COALESCE(reason, '')) LIKE $1 \
             OR LOWER(COALESCE(before_state, '')) LIKE $1 OR LOWER(COALESCE(after_state, '')) LIKE $1) \
             AND ($2 = '' OR at >= $2) AND ($3 = '' OR at < $3) ORDER BY seq DESC LIMIT $4"
        ))
        .bind(text)
        .bind(filter.since.clone().unwrap_or_default())
        .bind(filter.until.clone().unwrap_or_default())
        .bind(if filter.limit > 0 { filter.limit } else { 500 })
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(crate::AuditEntry::from_row)
            .collect::<Result<_, _>>()?)
    }

    /// One unblock request by id, for someone who may see it: an approver
    /// of its school or the requester.
    pub async fn unblock_request(
        &self,
        account: &Account,
        id: i64,
    ) -> Result<UnblockRequest, StoreError> {
        let row = sqlx::query("SELECT * FROM unblock_requests WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound {
                entity: "unblock request",
                key: id.to_string(),
            })?;
        let request = request_from_row(&row)?;
        if account.holds(request.school_id, APPROVERS)
            || request.requester_account == Some(account.id)
        {
            Ok(request)
        } else {
            Err(StoreError::NotFound {
                entity: "unblock request",
                key: id.to_string(),
            })
        }
    }
}

async fn report_in(write: &mut crate::Write, id: i64) -> Result<crate::BlockReport, StoreError> {
    let row = sqlx::query("SELECT * FROM block_reports WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *write.tx)
        .await?
        .ok_or_else(|| StoreError::NotFound {
            entity: "block report",
            key: id.to_string(),
        })?;
    crate::reports::report_from_row(&row)
}

/// An approver to tell of a new request, with what the email says: the
/// site's name only, never the reason typed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestNotice {
    pub id: i64,
    pub request_id: i64,
    pub address: String,
    pub attempts: i64,
    pub reference: String,
    /// The host name of the target (no path).
    pub site: String,
    pub policy_group: String,
    pub starts_at: String,
    pub ends_at: String,
}

impl Store {
    /// Notices due at `now` and not yet sent, oldest first.
    pub async fn due_request_notices(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<RequestNotice>, StoreError> {
        let rows = sqlx::query(
            "SELECT n.id, n.request_id, n.address, n.attempts, r.reference, r.target, \
             r.policy_group, r.starts_at, r.ends_at FROM request_notices n \
             JOIN unblock_requests r ON r.id = n.request_id \
             WHERE n.sent_at IS NULL AND n.next_attempt_at <= $1 ORDER BY n.id LIMIT $2",
        )
        .bind(format_time(now))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let target: String = row.try_get("target")?;
                Ok(RequestNotice {
                    id: row.try_get("id")?,
                    request_id: row.try_get("request_id")?,
                    address: row.try_get("address")?,
                    attempts: row.try_get("attempts")?,
                    reference: row.try_get("reference")?,
                    site: target.split('/').next().unwrap_or("").to_owned(),
                    policy_group: row.try_get("policy_group")?,
                    starts_at: row.try_get("starts_at")?,
                    ends_at: row.try_get("ends_at")?,
                })
            })
            .collect()
    }

    /// Settles a notice: sent, or failed with the error and the time of
    /// the next attempt.
    pub async fn settle_request_notice(
        &self,
        actor: &Actor,
        id: i64,
        outcome: Result<(), (&str, DateTime<Utc>)>,
    ) -> Result<(), StoreError> {
        let mut write = self.begin_write().await?;
        let result = async {
            match outcome {
                Ok(()) => {
                    sqlx::query("UPDATE request_notices SET sent_at = $1 WHERE id = $2")
                        .bind(crate::now())
                        .bind(id)
                        .execute(&mut *write.tx)
                        .await?;
                    append(
                        &mut write.tx,
                        actor,
                        Change::new("sent", "request_notice", id),
                    )
                    .await?;
                }
                Err((error, retry_at)) => {
                    sqlx::query(
                        "UPDATE request_notices SET attempts = attempts + 1, last_error = $1, \
                         next_attempt_at = $2 WHERE id = $3",
                    )
                    .bind(error)
                    .bind(format_time(retry_at))
                    .bind(id)
                    .execute(&mut *write.tx)
                    .await?;
                    let mut change = Change::new("failed", "request_notice", id);
                    change.reason = Some(error);
                    append(&mut write.tx, actor, change).await?;
                }
            }
            Ok(())
        }
        .await;
        write.finish(result).await
    }
}
