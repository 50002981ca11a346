//! The asset register (G7): hardware with its user, location and
//! encryption, the software inventory, disposals with the certificate of
//! secure deletion attached, and the leaver's checklist of equipment to
//! hand back.

use std::fmt;
use std::str::FromStr;

use chrono::NaiveDate;
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{date_text, keep_file, optional, optional_date, person_in, required, NewFile};
use crate::audit::{append, Change};
use crate::{Actor, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AssetKind {
    Hardware,
    Software,
}

text_enum!(AssetKind, "asset kind", { Hardware => "hardware", Software => "software" });

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Encryption {
    Encrypted,
    NotEncrypted,
    NotApplicable,
    Unknown,
}

text_enum!(Encryption, "encryption", {
    Encrypted => "encrypted", NotEncrypted => "not_encrypted",
    NotApplicable => "not_applicable", Unknown => "unknown",
});

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AssetStatus {
    InUse,
    /// Handed back, waiting for its next user.
    InStore,
    Disposed,
}

text_enum!(AssetStatus, "asset status", {
    InUse => "in_use", InStore => "in_store", Disposed => "disposed",
});

/// An asset as entered or edited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetEntry {
    pub kind: AssetKind,
    /// The asset tag or, for software, its name and edition.
    pub tag: String,
    pub description: String,
    pub assigned_person_id: Option<i64>,
    pub location: Option<String>,
    pub encryption: Encryption,
    /// Licence key reference, seats, renewal (software).
    pub licence: Option<String>,
}

/// An asset in the register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Asset {
    pub id: i64,
    pub school_id: i64,
    pub kind: AssetKind,
    pub tag: String,
    pub description: String,
    pub assigned_person_id: Option<i64>,
    pub location: Option<String>,
    pub encryption: Encryption,
    pub licence: Option<String>,
    pub status: AssetStatus,
    pub returned_on: Option<NaiveDate>,
    pub disposed_on: Option<NaiveDate>,
    pub disposal_method: Option<String>,
    pub certificate_file_id: Option<i64>,
}

impl Asset {
    /// Hardware that may hold personal data and is not known to be
    /// encrypted.
    pub fn encryption_gap(&self) -> bool {
        self.kind == AssetKind::Hardware
            && self.status != AssetStatus::Disposed
            && matches!(
                self.encryption,
                Encryption::NotEncrypted | Encryption::Unknown
            )
    }
}

fn asset_from_row(row: &AnyRow) -> Result<Asset, StoreError> {
    Ok(Asset {
        id: row.try_get("id")?,
        school_id: row.try_get("school_id")?,
        kind: row.try_get::<String, _>("kind")?.parse()?,
        tag: row.try_get("tag")?,
        description: row.try_get("description")?,
        assigned_person_id: row.try_get("assigned_person_id")?,
        location: row.try_get("location")?,
        encryption: row.try_get::<String, _>("encryption")?.parse()?,
        licence: row.try_get("licence")?,
        status: row.try_get::<String, _>("status")?.parse()?,
        returned_on: optional_date("assets", row.try_get("returned_on")?)?,
        disposed_on: optional_date("assets", row.try_get("disposed_on")?)?,
        disposal_method: row.try_get("disposal_method")?,
        certificate_file_id: row.try_get("certificate_file_id")?,
    })
}

async fn asset_by_tag(
    write: &mut crate::Write,
    school_id: i64,
    tag: &str,
) -> Result<Option<Asset>, StoreError> {
    sqlx::query("SELECT * FROM assets WHERE school_id = $1 AND tag = $2")
        .bind(school_id)
        .bind(tag)
        .fetch_optional(&mut *write.tx)
        .await?
        .map(|r| asset_from_row(&r))
        .transpose()
}

async fn asset_by_id(write: &mut crate::Write, id: i64) -> Result<Asset, StoreError> {
    let row = sqlx::query("SELECT * FROM assets WHERE id = $1")
        .bind(id)
        .fetch_one(&mut *write.tx)
        .await?;
    asset_from_row(&row)
}

impl Store {
    /// Adds an asset, or updates the one with that tag. A disposed asset
    /// is not changed any more.
    pub async fn save_asset(
        &self,
        actor: &Actor,
        school_id: i64,
        entry: &AssetEntry,
    ) -> Result<Asset, StoreError> {
        let tag = required("asset tag", &entry.tag)?.to_owned();
        let description = required("description", &entry.description)?.to_owned();
        let mut write = self.begin_write().await?;
        let result = async {
            if let Some(person) = entry.assigned_person_id {
                person_in(&mut write, school_id, person).await?;
            }
            let before = asset_by_tag(&mut write, school_id, &tag).await?;
            let now = crate::now();
            let status = if entry.assigned_person_id.is_some() {
                AssetStatus::InUse
            } else {
                before.as_ref().map_or(AssetStatus::InUse, |b| b.status)
            };
            let id = match &before {
                Some(b) if b.status == AssetStatus::Disposed => {
                    return Err(StoreError::invalid(
                        "asset",
                        format!("{tag} was disposed of on {}; it cannot be changed", b.disposed_on.map(date_text).unwrap_or_default()),
                    ))
                }
                Some(b) => {
                    sqlx::query(
                        "UPDATE assets SET kind = $1, description = $2, assigned_person_id = $3, \
                         location = $4, encryption = $5, licence = $6, status = $7, updated_at = $8 \
                         WHERE id = $9",
                    )
                    .bind(entry.kind.as_str())
                    .bind(&description)
                    .bind(entry.assigned_person_id)
                    .bind(optional(entry.location.as_deref()))
                    .bind(entry.encryption.as_str())
                    .bind(optional(entry.licence.as_deref()))
                    .bind(status.as_str())
                    .bind(&now)
                    .bind(b.id)
                    .execute(&mut *write.tx)
                    .await?;
                    b.id
                }
                None => sqlx::query(
                    "INSERT INTO assets (school_id, kind, tag, description, assigned_person_id, \
                     location, encryption, licence, status, created_at, updated_at) VALUES ($1, $2, \
                     $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING id",
                )
                .bind(school_id)
                .bind(entry.kind.as_str())
                .bind(&tag)
                .bind(&description)
                .bind(entry.assigned_person_id)
                .bind(optional(entry.location.as_deref()))
                .bind(entry.encryption.as_str())
                .bind(optional(entry.licence.as_deref()))
                .bind(status.as_str())
                .bind(&now)
                .fetch_one(&mut *write.tx)
                .await?
                .try_get("id")?,
            };
            let after = asset_by_id(&mut write, id).await?;
            let mut change = Change::new(
                if before.is_some() { "update" } else { "create" },
                "asset",
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

    /// The register, hardware then software, by tag.
    pub async fn assets(
        &self,
        school_id: i64,
        kind: Option<AssetKind>,
    ) -> Result<Vec<Asset>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM assets WHERE school_id = $1 AND ($2 = '' OR kind = $2) ORDER BY kind, tag",
        )
        .bind(school_id)
        .bind(kind.map_or("", AssetKind::as_str))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(asset_from_row).collect()
    }

    /// Records equipment handed back (the leaver's checklist ticks it).
    pub async fn return_asset(
        &self,
        actor: &Actor,
        school_id: i64,
        tag: &str,
        returned_on: NaiveDate,
        location: Option<&str>,
    ) -> Result<Asset, StoreError> {
        let mut write = self.begin_write().await?;
        let result = async {
            let before = asset_by_tag(&mut write, school_id, tag.trim())
                .await?
                .ok_or_else(|| StoreError::NotFound {
                    entity: "asset",
                    key: tag.to_owned(),
                })?;
            if before.status != AssetStatus::InUse {
                return Err(StoreError::invalid(
                    "asset",
                    format!("{} is {}, not in use", before.tag, before.status),
                ));
            }
            sqlx::query(
                "UPDATE assets SET assigned_person_id = NULL, status = 'in_store', returned_on = $1, \
                 location = COALESCE($2, location), updated_at = $3 WHERE id = $4",
            )
            .bind(date_text(returned_on))
            .bind(optional(location))
            .bind(crate::now())
            .bind(before.id)
            .execute(&mut *write.tx)
            .await?;
            let after = asset_by_id(&mut write, before.id).await?;
            append(
                &mut write.tx,
                actor,
                Change::new("return", "asset", after.id).before(&before).after(&after),
            )
            .await?;
            Ok(after)
        }
        .await;
        write.finish(result).await
    }

    /// Records a disposal. Hardware needs its certificate of secure
    /// deletion attached.
    pub async fn dispose_asset(
        &self,
        actor: &Actor,
        school_id: i64,
        tag: &str,
        disposed_on: NaiveDate,
        method: &str,
        certificate: Option<&NewFile>,
    ) -> Result<Asset, StoreError> {
        let method = required("disposal method", method)?.to_owned();
        let mut write = self.begin_write().await?;
        let result = async {
            let before = asset_by_tag(&mut write, school_id, tag.trim())
                .await?
                .ok_or_else(|| StoreError::NotFound {
                    entity: "asset",
                    key: tag.to_owned(),
                })?;
            if before.status == AssetStatus::Disposed {
                return Err(StoreError::invalid("asset", format!("{} is already disposed of", before.tag)));
            }
            let file = match certificate {
                Some(file) => Some(keep_file(&mut write, actor, school_id, file).await?),
                None if before.kind == AssetKind::Hardware => {
                    return Err(StoreError::invalid(
                        "certificate",
                        "attach the certificate of secure deletion for disposed hardware",
                    ))
                }
                None => None,
            };
            sqlx::query(
                "UPDATE assets SET status = 'disposed', assigned_person_id = NULL, disposed_on = $1, \
                 disposal_method = $2, certificate_file_id = $3, updated_at = $4 WHERE id = $5",
            )
            .bind(date_text(disposed_on))
            .bind(&method)
            .bind(file.map(|f| f.id))
            .bind(crate::now())
            .bind(before.id)
            .execute(&mut *write.tx)
            .await?;
            let after = asset_by_id(&mut write, before.id).await?;
            append(
                &mut write.tx,
                actor,
                Change::new("dispose", "asset", after.id).before(&before).after(&after),
            )
            .await?;
            Ok(after)
        }
        .await;
        write.finish(result).await
    }

    /// The leaver's checklist: equipment still assigned to the person, to
    /// be handed back before they go. Empty when they are clear.
    pub async fn leaver_checklist(
        &self,
        school_id: i64,
        person_id: i64,
    ) -> Result<Vec<Asset>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM assets WHERE school_id = $1 AND assigned_person_id = $2 \
             AND status = 'in_use' ORDER BY kind, tag",
        )
        .bind(school_id)
        .bind(person_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(asset_from_row).collect()
    }
}
