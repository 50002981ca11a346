//! The filtering policy file as last applied, and its edits on the change
//! log (issue 9, F8).
//!
//! Categories, lists, groups, schedules and safe search live in the policy
//! file, not the console. So that an edit there is as accountable as a
//! change in the console, the store keeps a copy of the policy as last
//! applied, and each apply writes one audit entry per changed item (who,
//! when, before, after, reason) in the same transaction as the new copy.
//! The comparison itself is the caller's (`sheepdog_policy::changes`):
//! the store holds no policy types.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::audit::{append, Change};
use crate::requests::FILTERING_MANAGERS;
use crate::{Account, Actor, Store, StoreError};

/// The audit log's entity for an item of the policy file.
pub const POLICY_ENTITY: &str = "filtering_policy";

/// The reason recorded for an edit found at start-up that nobody applied.
pub const UNAPPLIED_EDIT_REASON: &str = "edited without `sheepdog policy apply`";

/// One applied copy of the policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppliedPolicy {
    pub id: i64,
    /// Canonical JSON of the policy document.
    pub policy: String,
    pub applied_by: String,
    pub applied_at: String,
    pub reason: String,
}

/// One item of the policy that an apply changes: `item` names it (`group
/// ks2: category social`), `before` and `after` are JSON, absent when the
/// item is added or removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyItemChange {
    pub item: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

impl PolicyItemChange {
    fn action(&self) -> &'static str {
        match (&self.before, &self.after) {
            (None, Some(_)) => "add",
            (Some(_), None) => "remove",
            _ => "change",
        }
    }
}

fn applied_from_row(row: &AnyRow) -> Result<AppliedPolicy, StoreError> {
    Ok(AppliedPolicy {
        id: row.try_get("id")?,
        policy: row.try_get("policy")?,
        applied_by: row.try_get("applied_by")?,
        applied_at: row.try_get("applied_at")?,
        reason: row.try_get("reason")?,
    })
}

impl Store {
    /// The policy as last applied, if it ever was.
    pub async fn applied_policy(&self) -> Result<Option<AppliedPolicy>, StoreError> {
        let row = sqlx::query("SELECT * FROM applied_policies ORDER BY id DESC LIMIT 1")
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(applied_from_row).transpose()
    }

    /// Whether `account` may change filtering for the whole deployment: the
    /// policy file is every school's, so its filtering manager must be
    /// every school's too.
    pub async fn manages_all_filtering(&self, account: &Account) -> Result<bool, StoreError> {
        let schools = self.schools().await?;
        if schools.is_empty() {
            return Ok(!account.disabled
                && account
                    .roles
                    .iter()
                    .any(|r| FILTERING_MANAGERS.contains(&r.role)));
        }
        Ok(schools
            .iter()
            .all(|school| account.holds(school.id, FILTERING_MANAGERS)))
    }

    /// Applies a policy on behalf of a filtering manager: stores `policy`
    /// (canonical JSON) as the applied copy and writes one audit entry per
    /// item of `changes`, with `reason`, in one transaction.
    /// `previous` is the id of the copy the changes were worked out
    /// against: if someone applied another since, nothing is written and
    /// the caller compares again.
    pub async fn apply_policy(
        &self,
        account: &Account,
        previous: Option<i64>,
        policy: &str,
        changes: &[PolicyItemChange],
        reason: &str,
    ) -> Result<AppliedPolicy, StoreError> {
        let actor = Actor::account(account.id, &account.username);
        if !self.manages_all_filtering(account).await? {
            let refusal = format!(
                "refused: {} does not hold the filtering manager's role (technician) in every school",
                account.username
            );
            self.audit_refused_change(&actor, "policy file", &refusal)
                .await?;
            return Err(StoreError::Forbidden {
                reason: format!(
                    "{} may not change filtering: only a technician of every school (or a trust \
                     administrator) applies the policy file; the attempt is in the audit log",
                    account.username
                ),
            });
        }
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(StoreError::invalid(
                "reason",
                "say why the policy changes (--reason \"…\"); it goes on the change log",
            ));
        }
        self.record_policy(&actor, previous, policy, changes, reason)
            .await
    }

    /// Records a policy that sheepdog found in force without an apply (an
    /// edit of the file before a start), attributed to the file itself.
    /// The first policy ever seen is recorded as one "initial" item.
    pub async fn record_unapplied_policy(
        &self,
        previous: Option<i64>,
        policy: &str,
        changes: &[PolicyItemChange],
    ) -> Result<AppliedPolicy, StoreError> {
        let reason = if previous.is_none() {
            "initial policy"
        } else {
            UNAPPLIED_EDIT_REASON
        };
        self.record_policy(&Actor::config_file(), previous, policy, changes, reason)
            .await
    }

    async fn record_policy(
        &self,
        actor: &Actor,
        previous: Option<i64>,
        policy: &str,
        changes: &[PolicyItemChange],
        reason: &str,
    ) -> Result<AppliedPolicy, StoreError> {
        let mut write = self.begin_write().await?;
        let result = async {
            let newest: Option<i64> =
                sqlx::query("SELECT id FROM applied_policies ORDER BY id DESC LIMIT 1")
                    .fetch_optional(&mut *write.tx)
                    .await?
                    .map(|row| row.try_get("id"))
                    .transpose()?;
            if newest != previous {
                return Err(StoreError::invalid(
                    "policy",
                    "another apply was recorded while this one was being prepared; run it again",
                ));
            }
            let row = sqlx::query(
                "INSERT INTO applied_policies (policy, applied_by, applied_at, reason) \
                 VALUES ($1, $2, $3, $4) RETURNING *",
            )
            .bind(policy)
            .bind(actor.as_str())
            .bind(crate::now())
            .bind(reason)
            .fetch_one(&mut *write.tx)
            .await?;
            let applied = applied_from_row(&row)?;
            for item in changes {
                let mut change = Change::new(item.action(), POLICY_ENTITY, &item.item);
                change.before = item.before.clone();
                change.after = item.after.clone();
                change.reason = Some(reason);
                append(&mut write.tx, actor, change).await?;
            }
            Ok(applied)
        }
        .await;
        write.finish(result).await
    }
}
