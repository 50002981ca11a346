//! Guests on the guest network (M4): before they get access they see the
//! visitor agreement and the notice that use is filtered and monitored, on
//! the captive portal, and accept it. A guest is known only by the address
//! they accepted from (and a name, if they give one), so an acceptance is
//! kept apart from the signatures of people on record; it lapses after the
//! hours the deployment configures, and the address is captive again.

use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::agreements::Audience;
use super::optional;
use crate::audit::{append, Change};
use crate::{format_time, Actor, Store, StoreError};

/// The longest an acceptance may last: a week (a visitor staying longer
/// is given an account).
pub const MAX_ACCEPTANCE_HOURS: u32 = 24 * 7;

/// The visitor agreement as the portal shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuestAgreement {
    /// The community agreement's version, or `None` for sheepdog's own
    /// text when the school has published none.
    pub template_id: Option<i64>,
    /// 0 for sheepdog's own text.
    pub version: i64,
    /// Markdown.
    pub body: String,
}

/// A guest's acceptance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuestAcceptance {
    pub id: i64,
    pub school_id: i64,
    pub template_id: Option<i64>,
    pub version: i64,
    /// "captive portal": the only way a guest accepts.
    pub method: &'static str,
    pub address: String,
    pub name: Option<String>,
    pub accepted_at: String,
    pub expires_at: String,
}

fn acceptance_from_row(row: &AnyRow) -> Result<GuestAcceptance, StoreError> {
    Ok(GuestAcceptance {
        id: row.try_get("id")?,
        school_id: row.try_get("school_id")?,
        template_id: row.try_get("template_id")?,
        version: row.try_get("version")?,
        method: "captive portal",
        address: row.try_get("address")?,
        name: row.try_get("name")?,
        accepted_at: row.try_get("accepted_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

impl Store {
    /// The visitor agreement in force: the school's community agreement,
    /// or sheepdog's own text until the school publishes one.
    pub async fn guest_agreement(&self, school_id: i64) -> Result<GuestAgreement, StoreError> {
        Ok(
            match self
                .current_agreements(school_id)
                .await?
                .get(&Audience::Community)
            {
                Some(template) => GuestAgreement {
                    template_id: Some(template.id),
                    version: template.version,
                    body: template.body.clone(),
                },
                None => GuestAgreement {
                    template_id: None,
                    version: 0,
                    body: Audience::Community.default_text().to_owned(),
                },
            },
        )
    }

    /// Records that the guest at `address` accepted the visitor agreement
    /// in force, for `hours` from `now`.
    pub async fn accept_guest_agreement(
        &self,
        actor: &Actor,
        school_id: i64,
        address: IpAddr,
        name: Option<&str>,
        hours: u32,
        now: DateTime<Utc>,
    ) -> Result<GuestAcceptance, StoreError> {
        if hours == 0 || hours > MAX_ACCEPTANCE_HOURS {
            return Err(StoreError::invalid(
                "acceptance hours",
                format!("{hours} is not between 1 and {MAX_ACCEPTANCE_HOURS}"),
            ));
        }
        let name = optional(name).map(|n| n.chars().take(100).collect::<String>());
        let agreement = self.guest_agreement(school_id).await?;
        let expires = now + Duration::hours(i64::from(hours));
        let mut write = self.begin_write().await?;
        let result = async {
            let row = sqlx::query(
                "INSERT INTO guest_acceptances (school_id, template_id, version, address, name, \
                 accepted_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
            )
            .bind(school_id)
            .bind(agreement.template_id)
            .bind(agreement.version)
            .bind(address.to_string())
            .bind(&name)
            .bind(format_time(now))
            .bind(format_time(expires))
            .fetch_one(&mut *write.tx)
            .await?;
            let acceptance = acceptance_from_row(&row)?;
            append(
                &mut write.tx,
                actor,
                Change::new("accept", "guest_acceptance", acceptance.id).after(&acceptance),
            )
            .await?;
            Ok(acceptance)
        }
        .await;
        write.finish(result).await
    }

    /// Every address whose acceptance is still in force at `now`, with when
    /// it lapses (the latest, when an address accepted more than once).
    pub async fn current_guest_acceptances(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(IpAddr, DateTime<Utc>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT address, MAX(expires_at) AS until FROM guest_acceptances \
             WHERE expires_at > $1 GROUP BY address ORDER BY address",
        )
        .bind(format_time(now))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let address: String = row.try_get("address")?;
                let until: String = row.try_get("until")?;
                let corrupt = |problem: String| StoreError::Corrupt {
                    entity: "guest_acceptances",
                    problem,
                };
                Ok((
                    address
                        .parse()
                        .map_err(|_| corrupt(format!("address `{address}`")))?,
                    DateTime::parse_from_rfc3339(&until)
                        .map_err(|e| corrupt(format!("expiry `{until}`: {e}")))?
                        .with_timezone(&Utc),
                ))
            })
            .collect()
    }

    /// A school's guest acceptances, newest first, at most `limit`.
    pub async fn guest_acceptances(
        &self,
        school_id: i64,
        limit: i64,
    ) -> Result<Vec<GuestAcceptance>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM guest_acceptances WHERE school_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(school_id)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(acceptance_from_row).collect()
    }
}
