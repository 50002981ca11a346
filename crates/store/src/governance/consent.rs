//! Image consent per pupil and purpose (G3).
//!
//! Each answer a parent or carer (or a pupil, where the school judges it
//! age-appropriate) gives is a row; the newest row for a pupil and purpose
//! is the one in force. Consent counts while it is granted, not withdrawn,
//! and not past its review or expiry date. The purposes are the school's:
//! sheepdog ships the usual list, and a school that stores its own list
//! uses that instead.

use chrono::NaiveDate;
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{date_text, optional, optional_date, parse_date, person_in, required};
use crate::audit::{append, Change};
use crate::{Actor, Store, StoreError};

/// The purposes sheepdog ships: (key, title).
pub const DEFAULT_PURPOSES: &[(&str, &str)] = &[
    ("website", "School website"),
    ("social_media", "Social media"),
    ("local_press", "Local press"),
    ("prospectus", "Prospectus and printed material"),
    ("video", "Video and webcam"),
    ("external_photographers", "External photographers"),
    ("displays", "Displays in school"),
    ("archive", "Historical archive"),
];

/// A purpose images may be used for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsentPurpose {
    pub key: String,
    pub title: String,
}

/// A purpose as the school keeps it, retired ones included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeptPurpose {
    pub key: String,
    pub title: String,
    /// When it left the forms and the publish check; its answers stay.
    pub retired_at: Option<String>,
}

/// An answer as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConsent {
    pub pupil_id: i64,
    pub purpose: String,
    /// Yes or no: a recorded refusal is as important as consent.
    pub granted: bool,
    /// The parent or carer who answered; `None` when the pupil did.
    pub given_by_person_id: Option<i64>,
    /// The name as written on the form, when not a person on record.
    pub given_by_name: String,
    pub given_on: NaiveDate,
    /// When the answer is to be reviewed; after it, consent no longer
    /// counts.
    pub expires_on: Option<NaiveDate>,
}

/// A stored answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageConsent {
    pub id: i64,
    pub school_id: i64,
    pub pupil_id: i64,
    pub purpose: String,
    pub granted: bool,
    pub given_by_person_id: Option<i64>,
    pub given_by_name: String,
    pub given_on: NaiveDate,
    pub expires_on: Option<NaiveDate>,
    pub withdrawn_at: Option<String>,
    pub withdrawn_by: Option<String>,
    pub withdrawal_note: Option<String>,
    pub recorded_by: String,
}

/// Whether a pupil may appear in images for a purpose, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentState {
    Granted,
    /// No answer on record.
    NoAnswer,
    Refused,
    Withdrawn,
    Expired,
}

impl ConsentState {
    pub fn may_appear(self) -> bool {
        self == Self::Granted
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::Granted => "consent given",
            Self::NoAnswer => "no consent on record",
            Self::Refused => "consent refused",
            Self::Withdrawn => "consent withdrawn",
            Self::Expired => "consent expired; ask again",
        }
    }
}

/// One pupil in a "who may appear" list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Appearance {
    pub pupil_id: i64,
    pub name: String,
    pub class_name: Option<String>,
    pub state: ConsentState,
}

impl ImageConsent {
    /// This answer's standing on `today`.
    pub fn state(&self, today: NaiveDate) -> ConsentState {
        if self.withdrawn_at.is_some() {
            ConsentState::Withdrawn
        } else if !self.granted {
            ConsentState::Refused
        } else if self.expires_on.is_some_and(|e| e < today) {
            ConsentState::Expired
        } else {
            ConsentState::Granted
        }
    }
}

fn consent_from_row(row: &AnyRow) -> Result<ImageConsent, StoreError> {
    let granted: i64 = row.try_get("granted")?;
    Ok(ImageConsent {
        id: row.try_get("id")?,
        school_id: row.try_get("school_id")?,
        pupil_id: row.try_get("pupil_id")?,
        purpose: row.try_get("purpose")?,
        granted: granted != 0,
        given_by_person_id: row.try_get("given_by_person_id")?,
        given_by_name: row.try_get("given_by_name")?,
        given_on: parse_date("image_consents", &row.try_get::<String, _>("given_on")?)?,
        expires_on: optional_date("image_consents", row.try_get("expires_on")?)?,
        withdrawn_at: row.try_get("withdrawn_at")?,
        withdrawn_by: row.try_get("withdrawn_by")?,
        withdrawal_note: row.try_get("withdrawal_note")?,
        recorded_by: row.try_get("recorded_by")?,
    })
}

/// A purpose key: lower case letters, digits and underscores.
fn purpose_key(text: &str) -> Result<String, StoreError> {
    let key = required("purpose", text)?.to_lowercase();
    if !key
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(StoreError::invalid(
            "purpose",
            format!("`{text}` is not a purpose key; use letters, digits and underscores (`social_media`)"),
        ));
    }
    Ok(key)
}

impl Store {
    /// The school's purposes in use, in its order; the shipped list when it
    /// has stored none.
    pub async fn consent_purposes(
        &self,
        school_id: i64,
    ) -> Result<Vec<ConsentPurpose>, StoreError> {
        Ok(self
            .kept_consent_purposes(school_id)
            .await?
            .into_iter()
            .filter(|p| p.retired_at.is_none())
            .map(|p| ConsentPurpose {
                key: p.key,
                title: p.title,
            })
            .collect())
    }

    /// Every purpose the school has kept, retired ones included, in its
    /// order; the shipped list when it has stored none.
    pub async fn kept_consent_purposes(
        &self,
        school_id: i64,
    ) -> Result<Vec<KeptPurpose>, StoreError> {
        let rows = sqlx::query(
            "SELECT purpose, title, retired_at FROM consent_purposes WHERE school_id = $1 \
             ORDER BY position",
        )
        .bind(school_id)
        .fetch_all(self.pool())
        .await?;
        if rows.is_empty() {
            return Ok(DEFAULT_PURPOSES
                .iter()
                .map(|(key, title)| KeptPurpose {
                    key: (*key).to_owned(),
                    title: (*title).to_owned(),
                    retired_at: None,
                })
                .collect());
        }
        rows.iter()
            .map(|row| {
                Ok(KeptPurpose {
                    key: row.try_get("purpose")?,
                    title: row.try_get("title")?,
                    retired_at: row.try_get("retired_at")?,
                })
            })
            .collect()
    }

    /// Replaces the school's list of purposes in use. A purpose that leaves
    /// the list is retired, not deleted: the answers recorded for it stay,
    /// and listing it again brings it back.
    pub async fn set_consent_purposes(
        &self,
        actor: &Actor,
        school_id: i64,
        purposes: &[ConsentPurpose],
    ) -> Result<Vec<ConsentPurpose>, StoreError> {
        let mut clean = Vec::with_capacity(purposes.len());
        for p in purposes {
            let key = purpose_key(&p.key)?;
            if clean.iter().any(|c: &ConsentPurpose| c.key == key) {
                return Err(StoreError::invalid(
                    "purpose",
                    format!("`{key}` is listed twice"),
                ));
            }
            clean.push(ConsentPurpose {
                key,
                title: required("purpose title", &p.title)?.to_owned(),
            });
        }
        if clean.is_empty() {
            return Err(StoreError::invalid("purpose", "list at least one purpose"));
        }
        let before = self.kept_consent_purposes(school_id).await?;
        let now = crate::now();
        let mut after: Vec<KeptPurpose> = clean
            .iter()
            .map(|p| KeptPurpose {
                key: p.key.clone(),
                title: p.title.clone(),
                retired_at: None,
            })
            .collect();
        for old in &before {
            if !clean.iter().any(|c| c.key == old.key) {
                after.push(KeptPurpose {
                    retired_at: old.retired_at.clone().or_else(|| Some(now.clone())),
                    ..old.clone()
                });
            }
        }
        self.store_purposes(actor, school_id, &before, &after)
            .await?;
        Ok(clean)
    }

    /// Adds a purpose at the end of the school's list.
    pub async fn add_consent_purpose(
        &self,
        actor: &Actor,
        school_id: i64,
        key: &str,
        title: &str,
    ) -> Result<KeptPurpose, StoreError> {
        let key = purpose_key(key)?;
        let title = required("purpose title", title)?.to_owned();
        let before = self.kept_consent_purposes(school_id).await?;
        if let Some(existing) = before.iter().find(|p| p.key == key) {
            return Err(StoreError::invalid(
                "purpose",
                match existing.retired_at {
                    Some(_) => {
                        format!("`{key}` was retired; bring it back rather than adding it again")
                    }
                    None => format!("`{key}` is already a purpose ({})", existing.title),
                },
            ));
        }
        let added = KeptPurpose {
            key,
            title,
            retired_at: None,
        };
        let mut after = before.clone();
        after.push(added.clone());
        self.store_purposes(actor, school_id, &before, &after)
            .await?;
        Ok(added)
    }

    /// Renames a purpose: its key, and so its answers, stay.
    pub async fn rename_consent_purpose(
        &self,
        actor: &Actor,
        school_id: i64,
        key: &str,
        title: &str,
    ) -> Result<KeptPurpose, StoreError> {
        let title = required("purpose title", title)?.to_owned();
        self.change_purpose(actor, school_id, key, |p| p.title = title)
            .await
    }

    /// Retires a purpose (`retired`) or brings it back: a retired purpose
    /// leaves the forms and the publish check, and its answers are kept.
    pub async fn retire_consent_purpose(
        &self,
        actor: &Actor,
        school_id: i64,
        key: &str,
        retired: bool,
    ) -> Result<KeptPurpose, StoreError> {
        let before = self.kept_consent_purposes(school_id).await?;
        if retired
            && before
                .iter()
                .filter(|p| p.retired_at.is_none() && p.key != key)
                .count()
                == 0
        {
            return Err(StoreError::invalid(
                "purpose",
                "it is the last purpose in use; add another before retiring it",
            ));
        }
        let now = crate::now();
        self.change_purpose(actor, school_id, key, |p| {
            p.retired_at = if retired {
                p.retired_at.clone().or(Some(now))
            } else {
                None
            }
        })
        .await
    }

    async fn change_purpose(
        &self,
        actor: &Actor,
        school_id: i64,
        key: &str,
        change: impl FnOnce(&mut KeptPurpose),
    ) -> Result<KeptPurpose, StoreError> {
        let before = self.kept_consent_purposes(school_id).await?;
        let mut after = before.clone();
        let purpose =
            after
                .iter_mut()
                .find(|p| p.key == key)
                .ok_or_else(|| StoreError::NotFound {
                    entity: "consent purpose",
                    key: key.to_owned(),
                })?;
        change(purpose);
        let changed = purpose.clone();
        self.store_purposes(actor, school_id, &before, &after)
            .await?;
        Ok(changed)
    }

    /// Writes the school's whole list (the shipped list becomes the
    /// school's own on its first change), audited with before and after.
    async fn store_purposes(
        &self,
        actor: &Actor,
        school_id: i64,
        before: &[KeptPurpose],
        after: &[KeptPurpose],
    ) -> Result<(), StoreError> {
        let mut write = self.begin_write().await?;
        let result = async {
            sqlx::query("DELETE FROM consent_purposes WHERE school_id = $1")
                .bind(school_id)
                .execute(&mut *write.tx)
                .await?;
            for (position, p) in after.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO consent_purposes (school_id, purpose, title, position, retired_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(school_id)
                .bind(&p.key)
                .bind(&p.title)
                .bind(i64::try_from(position).unwrap_or(i64::MAX))
                .bind(&p.retired_at)
                .execute(&mut *write.tx)
                .await?;
            }
            append(
                &mut write.tx,
                actor,
                Change::new("update", "consent_purposes", school_id)
                    .before(&before)
                    .after(&after),
            )
            .await?;
            Ok(())
        }
        .await;
        write.finish(result).await
    }

    /// Records a parent's, carer's or pupil's answer for one purpose.
    pub async fn record_consent(
        &self,
        actor: &Actor,
        school_id: i64,
        new: &NewConsent,
    ) -> Result<ImageConsent, StoreError> {
        let purpose = purpose_key(&new.purpose)?;
        if !self
            .consent_purposes(school_id)
            .await?
            .iter()
            .any(|p| p.key == purpose)
        {
            return Err(StoreError::invalid(
                "purpose",
                format!("`{purpose}` is not one of the school's consent purposes"),
            ));
        }
        if new.expires_on.is_some_and(|e| e < new.given_on) {
            return Err(StoreError::invalid(
                "expiry",
                "the review or expiry date is before the date consent was given",
            ));
        }
        let mut write = self.begin_write().await?;
        let result = async {
            let (kind, pupil_name) = person_in(&mut write, school_id, new.pupil_id).await?;
            if kind != "pupil" {
                return Err(StoreError::invalid(
                    "pupil",
                    "image consent is recorded for pupils",
                ));
            }
            let given_by_name = match new.given_by_person_id {
                Some(parent) => {
                    let linked = sqlx::query(
                        "SELECT 1 AS yes FROM guardianships WHERE parent_id = $1 AND pupil_id = $2",
                    )
                    .bind(parent)
                    .bind(new.pupil_id)
                    .fetch_optional(&mut *write.tx)
                    .await?;
                    if linked.is_none() {
                        return Err(StoreError::invalid(
                            "given by",
                            "consent is given by one of the pupil's own parents or carers",
                        ));
                    }
                    let (_, name) = person_in(&mut write, school_id, parent).await?;
                    optional(Some(&new.given_by_name)).unwrap_or(name)
                }
                None => optional(Some(&new.given_by_name)).unwrap_or(pupil_name),
            };
            let now = crate::now();
            let row = sqlx::query(
                "INSERT INTO image_consents (school_id, pupil_id, purpose, granted, \
                 given_by_person_id, given_by_name, given_on, expires_on, recorded_by, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *",
            )
            .bind(school_id)
            .bind(new.pupil_id)
            .bind(&purpose)
            .bind(i64::from(new.granted))
            .bind(new.given_by_person_id)
            .bind(&given_by_name)
            .bind(date_text(new.given_on))
            .bind(new.expires_on.map(date_text))
            .bind(actor.as_str())
            .bind(&now)
            .fetch_one(&mut *write.tx)
            .await?;
            let consent = consent_from_row(&row)?;
            append(
                &mut write.tx,
                actor,
                Change::new("record", "image_consent", consent.id).after(&consent),
            )
            .await?;
            Ok(consent)
        }
        .await;
        write.finish(result).await
    }

    /// Withdraws the answer in force for a pupil and purpose.
    pub async fn withdraw_consent(
        &self,
        actor: &Actor,
        school_id: i64,
        pupil_id: i64,
        purpose: &str,
        note: Option<&str>,
    ) -> Result<ImageConsent, StoreError> {
        let mut write = self.begin_write().await?;
        let result = async {
            let row = sqlx::query(
                "SELECT * FROM image_consents WHERE school_id = $1 AND pupil_id = $2 \
                 AND purpose = $3 ORDER BY id DESC LIMIT 1",
            )
            .bind(school_id)
            .bind(pupil_id)
            .bind(purpose)
            .fetch_optional(&mut *write.tx)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                entity: "image consent",
                key: format!("{pupil_id}/{purpose}"),
            })?;
            let before = consent_from_row(&row)?;
            if before.withdrawn_at.is_some() {
                return Err(StoreError::invalid("consent", "it is already withdrawn"));
            }
            sqlx::query(
                "UPDATE image_consents SET withdrawn_at = $1, withdrawn_by = $2, \
                 withdrawal_note = $3 WHERE id = $4",
            )
            .bind(crate::now())
            .bind(actor.as_str())
            .bind(optional(note))
            .bind(before.id)
            .execute(&mut *write.tx)
            .await?;
            let row = sqlx::query("SELECT * FROM image_consents WHERE id = $1")
                .bind(before.id)
                .fetch_one(&mut *write.tx)
                .await?;
            let after = consent_from_row(&row)?;
            let mut change = Change::new("withdraw", "image_consent", after.id)
                .before(&before)
                .after(&after);
            change.reason = note;
            append(&mut write.tx, actor, change).await?;
            Ok(after)
        }
        .await;
        write.finish(result).await
    }

    /// A pupil's answers, newest first (history included).
    pub async fn image_consents(&self, pupil_id: i64) -> Result<Vec<ImageConsent>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM image_consents WHERE pupil_id = $1 ORDER BY purpose, id DESC",
        )
        .bind(pupil_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(consent_from_row).collect()
    }

    /// Every active pupil of the school (or of one class) with whether they
    /// may appear in images for `purpose` on `today`.
    pub async fn who_may_appear(
        &self,
        school_id: i64,
        class_name: Option<&str>,
        purpose: &str,
        today: NaiveDate,
    ) -> Result<Vec<Appearance>, StoreError> {
        let class = optional(class_name).unwrap_or_default();
        let pupils = sqlx::query(
            "SELECT id, given_name, family_name, class_name FROM people WHERE school_id = $1 \
             AND kind = 'pupil' AND active = 1 AND ($2 = '' OR class_name = $2) \
             ORDER BY class_name, family_name, given_name, id",
        )
        .bind(school_id)
        .bind(&class)
        .fetch_all(self.pool())
        .await?;
        let answers = sqlx::query(
            "SELECT * FROM image_consents WHERE school_id = $1 AND purpose = $2 ORDER BY id",
        )
        .bind(school_id)
        .bind(purpose)
        .fetch_all(self.pool())
        .await?;
        let mut newest = std::collections::HashMap::new();
        for row in &answers {
            let consent = consent_from_row(row)?;
            newest.insert(consent.pupil_id, consent);
        }
        pupils
            .iter()
            .map(|row| {
                let pupil_id: i64 = row.try_get("id")?;
                Ok(Appearance {
                    pupil_id,
                    name: format!(
                        "{} {}",
                        row.try_get::<String, _>("given_name")?,
                        row.try_get::<String, _>("family_name")?
                    ),
                    class_name: row.try_get("class_name")?,
                    state: newest
                        .get(&pupil_id)
                        .map_or(ConsentState::NoAnswer, |c| c.state(today)),
                })
            })
            .collect()
    }
}
