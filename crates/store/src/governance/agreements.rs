//! Acceptable use agreements (G2, M4).
//!
//! Each audience has its own text, versioned: publishing a new version of
//! an audience's agreement makes every earlier signature of that audience
//! out of date, so everyone affected signs again. A signature also lapses a
//! year after it was given (yearly renewal). A person whose audience has no
//! published agreement is not asked to sign anything; a person whose
//! audience has one and who has no current signature is *unsigned*, and the
//! binary places their devices in the `unsigned` filtering group.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{keep_file, optional, person_in, required, FileInfo, NewFile};
use crate::audit::{append, Change};
use crate::{format_time, Actor, PersonKind, Store, StoreError};

/// How long a signature lasts before it must be renewed.
pub const RENEWAL_DAYS: i64 = 365;

/// Who an agreement is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// Nursery to Year 2: simple words, signed with a parent.
    YoungPupils,
    OlderPupils,
    /// Staff, volunteers and contractors (and governors).
    Staff,
    Parents,
    /// Community users and visitors.
    Community,
}

text_enum!(Audience, "audience", {
    YoungPupils => "young_pupils", OlderPupils => "older_pupils", Staff => "staff",
    Parents => "parents", Community => "community",
});

/// How a signature was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignMethod {
    /// In the console or the captive portal.
    Online,
    /// On paper, recorded by the office (with a scan where there is one).
    Paper,
}

text_enum!(SignMethod, "signing method", { Online => "online", Paper => "paper" });

impl Audience {
    /// The audience whose agreement a person signs.
    pub fn of(kind: PersonKind, year_group: Option<&str>) -> Self {
        match kind {
            PersonKind::Pupil => match year_group.map(str::trim) {
                Some("N" | "R" | "1" | "2") => Self::YoungPupils,
                _ => Self::OlderPupils,
            },
            PersonKind::Staff | PersonKind::Governor => Self::Staff,
            PersonKind::Parent => Self::Parents,
            PersonKind::Visitor => Self::Community,
        }
    }

    /// A heading for people.
    pub fn title(self) -> &'static str {
        match self {
            Self::YoungPupils => "Young pupils (Nursery to Year 2)",
            Self::OlderPupils => "Older pupils (Year 3 upwards)",
            Self::Staff => "Staff, volunteers and contractors",
            Self::Parents => "Parents and carers",
            Self::Community => "Community users and visitors",
        }
    }

    /// The text sheepdog ships, written from the seed policies' rules; the
    /// school edits it by publishing a new version.
    pub fn default_text(self) -> &'static str {
        match self {
            Self::YoungPupils => include_str!("../../agreements/young_pupils.md"),
            Self::OlderPupils => include_str!("../../agreements/older_pupils.md"),
            Self::Staff => include_str!("../../agreements/staff.md"),
            Self::Parents => include_str!("../../agreements/parents.md"),
            Self::Community => include_str!("../../agreements/community.md"),
        }
    }
}

/// One version of an audience's agreement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgreementTemplate {
    pub id: i64,
    pub school_id: i64,
    pub audience: Audience,
    pub version: i64,
    pub title: String,
    /// Markdown.
    pub body: String,
    pub published_by: String,
    pub published_at: String,
}

/// A signature as given.
#[derive(Debug, Clone)]
pub struct NewSignature {
    /// Whom the agreement covers.
    pub person_id: i64,
    /// Who signed, when it is someone else (a parent or carer for a
    /// pupil).
    pub signer_person_id: Option<i64>,
    /// The signer's name as written; the person's own name when empty.
    pub signer_name: String,
    pub method: SignMethod,
    /// The paper form, scanned.
    pub scan: Option<NewFile>,
    /// Where it was signed from (the client address online).
    pub address: Option<String>,
}

/// A stored signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Signature {
    pub id: i64,
    pub template_id: i64,
    pub audience: Audience,
    pub version: i64,
    pub person_id: i64,
    pub signer_person_id: Option<i64>,
    pub signer_name: String,
    pub method: SignMethod,
    pub scan: Option<FileInfo>,
    pub address: Option<String>,
    pub signed_at: String,
    pub recorded_by: String,
}

/// Where a person stands with their agreement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum AgreementState {
    /// No agreement is published for their audience.
    NotRequired,
    /// Signed the current version within the year; renew by `renew_by`.
    Current {
        version: i64,
        signed_at: String,
        renew_by: String,
    },
    /// Never signed.
    Missing,
    /// Signed an earlier version; the new one needs signing.
    Outdated { signed_version: i64 },
    /// Signed more than a year ago.
    Expired { signed_at: String },
}

impl AgreementState {
    /// Needs a signature before full access.
    pub fn needs_signing(&self) -> bool {
        matches!(
            self,
            Self::Missing | Self::Outdated { .. } | Self::Expired { .. }
        )
    }
}

/// One person's agreement status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgreementStatus {
    pub person_id: i64,
    pub school_id: i64,
    pub name: String,
    pub kind: PersonKind,
    pub class_name: Option<String>,
    pub roles: Vec<String>,
    pub email: Option<String>,
    pub audience: Audience,
    pub state: AgreementState,
}

/// Signed and unsigned counts for one class or role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CoverageRow {
    /// `Class 4K`, `Role teacher`, `Parents`.
    pub label: String,
    pub people: i64,
    pub current: i64,
    pub needing: i64,
}

fn template_from_row(row: &AnyRow) -> Result<AgreementTemplate, StoreError> {
    Ok(AgreementTemplate {
        id: row.try_get("id")?,
        school_id: row.try_get("school_id")?,
        audience: row.try_get::<String, _>("audience")?.parse()?,
        version: row.try_get("version")?,
        title: row.try_get("title")?,
        body: row.try_get("body")?,
        published_by: row.try_get("published_by")?,
        published_at: row.try_get("published_at")?,
    })
}

/// The title of a Markdown text: its first `# ` heading, else its first
/// line.
fn title_of(body: &str) -> String {
    let first = body
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("Acceptable use agreement");
    first.trim_start_matches('#').trim().to_owned()
}

impl Store {
    /// Publishes a new version of an audience's agreement: everyone of
    /// that audience signs again.
    pub async fn publish_agreement(
        &self,
        actor: &Actor,
        school_id: i64,
        audience: Audience,
        body: &str,
    ) -> Result<AgreementTemplate, StoreError> {
        let body = required("agreement text", body)?.to_owned();
        let title = title_of(&body);
        let mut write = self.begin_write().await?;
        let result = async {
            let version: i64 = sqlx::query(
                "SELECT COALESCE(MAX(version), 0) AS v FROM agreement_templates \
                 WHERE school_id = $1 AND audience = $2",
            )
            .bind(school_id)
            .bind(audience.as_str())
            .fetch_one(&mut *write.tx)
            .await?
            .try_get("v")?;
            let row = sqlx::query(
                "INSERT INTO agreement_templates (school_id, audience, version, title, body, \
                 published_by, published_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
            )
            .bind(school_id)
            .bind(audience.as_str())
            .bind(version + 1)
            .bind(&title)
            .bind(&body)
            .bind(actor.as_str())
            .bind(crate::now())
            .fetch_one(&mut *write.tx)
            .await?;
            let template = template_from_row(&row)?;
            append(
                &mut write.tx,
                actor,
                Change::new("publish", "agreement_template", template.id).after(&template),
            )
            .await?;
            Ok(template)
        }
        .await;
        write.finish(result).await
    }

    /// Publishes sheepdog's own text for every audience that has none yet;
    /// returns what it published.
    pub async fn publish_default_agreements(
        &self,
        actor: &Actor,
        school_id: i64,
    ) -> Result<Vec<AgreementTemplate>, StoreError> {
        let current = self.current_agreements(school_id).await?;
        let mut published = Vec::new();
        for audience in Audience::ALL {
            if !current.contains_key(audience) {
                published.push(
                    self.publish_agreement(actor, school_id, *audience, audience.default_text())
                        .await?,
                );
            }
        }
        Ok(published)
    }

    /// Every version of every audience's agreement, newest first per
    /// audience.
    pub async fn agreement_templates(
        &self,
        school_id: i64,
    ) -> Result<Vec<AgreementTemplate>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM agreement_templates WHERE school_id = $1 ORDER BY audience, version DESC",
        )
        .bind(school_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(template_from_row).collect()
    }

    /// The version in force for each audience that has one.
    pub async fn current_agreements(
        &self,
        school_id: i64,
    ) -> Result<BTreeMap<Audience, AgreementTemplate>, StoreError> {
        let mut current = BTreeMap::new();
        for template in self.agreement_templates(school_id).await? {
            current.entry(template.audience).or_insert(template);
        }
        Ok(current)
    }

    /// Records a signature of the version in force for the person's
    /// audience. A signature on someone else's behalf must come from one of
    /// a pupil's parents or carers.
    pub async fn sign_agreement(
        &self,
        actor: &Actor,
        school_id: i64,
        new: &NewSignature,
    ) -> Result<Signature, StoreError> {
        let mut write = self.begin_write().await?;
        let result = async {
            let row = sqlx::query(
                "SELECT kind, year_group, given_name, family_name FROM people \
                 WHERE id = $1 AND school_id = $2",
            )
            .bind(new.person_id)
            .bind(school_id)
            .fetch_optional(&mut *write.tx)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                entity: "person",
                key: new.person_id.to_string(),
            })?;
            let kind: PersonKind = row.try_get::<String, _>("kind")?.parse()?;
            let year: Option<String> = row.try_get("year_group")?;
            let audience = Audience::of(kind, year.as_deref());
            let own_name = format!(
                "{} {}",
                row.try_get::<String, _>("given_name")?,
                row.try_get::<String, _>("family_name")?
            );
            let template = sqlx::query(
                "SELECT * FROM agreement_templates WHERE school_id = $1 AND audience = $2 \
                 ORDER BY version DESC LIMIT 1",
            )
            .bind(school_id)
            .bind(audience.as_str())
            .fetch_optional(&mut *write.tx)
            .await?
            .map(|r| template_from_row(&r))
            .transpose()?
            .ok_or_else(|| {
                StoreError::invalid(
                    "agreement",
                    format!(
                        "no agreement is published for {}; publish one first",
                        audience.title().to_lowercase()
                    ),
                )
            })?;
            let mut signer_name = optional(Some(&new.signer_name));
            if let Some(signer) = new.signer_person_id.filter(|s| *s != new.person_id) {
                let guardian = sqlx::query(
                    "SELECT 1 AS yes FROM guardianships WHERE parent_id = $1 AND pupil_id = $2",
                )
                .bind(signer)
                .bind(new.person_id)
                .fetch_optional(&mut *write.tx)
                .await?;
                if guardian.is_none() {
                    return Err(StoreError::invalid(
                        "signer",
                        "only a pupil's own parent or carer can sign on their behalf",
                    ));
                }
                let (_, name) = person_in(&mut write, school_id, signer).await?;
                signer_name.get_or_insert(name);
            }
            let signer_name = signer_name.unwrap_or(own_name);
            let scan = match &new.scan {
                Some(file) if new.method == SignMethod::Paper => {
                    Some(keep_file(&mut write, actor, school_id, file).await?)
                }
                Some(_) => {
                    return Err(StoreError::invalid(
                        "scan",
                        "a scan is kept only with a paper signature",
                    ))
                }
                None => None,
            };
            let signed_at = crate::now();
            let row = sqlx::query(
                "INSERT INTO agreement_signatures (template_id, person_id, signer_person_id, \
                 signer_name, method, scan_file_id, address, signed_at, recorded_by) VALUES \
                 ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
            )
            .bind(template.id)
            .bind(new.person_id)
            .bind(new.signer_person_id)
            .bind(&signer_name)
            .bind(new.method.as_str())
            .bind(scan.as_ref().map(|s| s.id))
            .bind(optional(new.address.as_deref()))
            .bind(&signed_at)
            .bind(actor.as_str())
            .fetch_one(&mut *write.tx)
            .await?;
            let signature = Signature {
                id: row.try_get("id")?,
                template_id: template.id,
                audience,
                version: template.version,
                person_id: new.person_id,
                signer_person_id: new.signer_person_id,
                signer_name,
                method: new.method,
                scan,
                address: optional(new.address.as_deref()),
                signed_at,
                recorded_by: actor.as_str().to_owned(),
            };
            append(
                &mut write.tx,
                actor,
                Change::new("sign", "agreement_signature", signature.id).after(&signature),
            )
            .await?;
            Ok(signature)
        }
        .await;
        write.finish(result).await
    }

    /// The school's paper signatures kept with a scan, newest first, at
    /// most `limit`: (whose agreement, who signed, when, the scan).
    pub async fn agreement_scans(
        &self,
        school_id: i64,
        limit: i64,
    ) -> Result<Vec<(String, String, String, FileInfo)>, StoreError> {
        let rows = sqlx::query(
            "SELECT p.given_name, p.family_name, s.signer_name, s.signed_at, f.id AS file_id, \
             f.name AS file_name, f.media_type, f.sha256 FROM agreement_signatures s \
             JOIN people p ON p.id = s.person_id \
             JOIN governance_files f ON f.id = s.scan_file_id \
             WHERE p.school_id = $1 ORDER BY s.signed_at DESC, s.id DESC LIMIT $2",
        )
        .bind(school_id)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    format!(
                        "{} {}",
                        row.try_get::<String, _>("given_name")?,
                        row.try_get::<String, _>("family_name")?
                    ),
                    row.try_get("signer_name")?,
                    row.try_get("signed_at")?,
                    FileInfo {
                        id: row.try_get("file_id")?,
                        name: row.try_get("file_name")?,
                        media_type: row.try_get("media_type")?,
                        sha256: row.try_get("sha256")?,
                        size: 0,
                    },
                ))
            })
            .collect()
    }

    /// A person's signatures, newest first.
    pub async fn signatures(&self, person_id: i64) -> Result<Vec<Signature>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.*, t.audience, t.version, f.name AS scan_name, f.media_type AS scan_type, \
             f.sha256 AS scan_sha256 FROM agreement_signatures s \
             JOIN agreement_templates t ON t.id = s.template_id \
             LEFT JOIN governance_files f ON f.id = s.scan_file_id \
             WHERE s.person_id = $1 ORDER BY s.signed_at DESC, s.id DESC",
        )
        .bind(person_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let scan_id: Option<i64> = row.try_get("scan_file_id")?;
                let scan = match scan_id {
                    Some(id) => Some(FileInfo {
                        id,
                        name: row.try_get("scan_name")?,
                        media_type: row.try_get("scan_type")?,
                        sha256: row.try_get("scan_sha256")?,
                        size: 0,
                    }),
                    None => None,
                };
                Ok(Signature {
                    id: row.try_get("id")?,
                    template_id: row.try_get("template_id")?,
                    audience: row.try_get::<String, _>("audience")?.parse()?,
                    version: row.try_get("version")?,
                    person_id: row.try_get("person_id")?,
                    signer_person_id: row.try_get("signer_person_id")?,
                    signer_name: row.try_get("signer_name")?,
                    method: row.try_get::<String, _>("method")?.parse()?,
                    scan,
                    address: row.try_get("address")?,
                    signed_at: row.try_get("signed_at")?,
                    recorded_by: row.try_get("recorded_by")?,
                })
            })
            .collect()
    }

    /// Every active person's agreement status, in one school or (with
    /// `None`) every school.
    pub async fn agreement_statuses(
        &self,
        school_id: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<Vec<AgreementStatus>, StoreError> {
        let school = school_id.unwrap_or(0);
        let templates = sqlx::query(
            "SELECT * FROM agreement_templates WHERE ($1 = 0 OR school_id = $1) ORDER BY version",
        )
        .bind(school)
        .fetch_all(self.pool())
        .await?;
        let mut latest: HashMap<(i64, Audience), AgreementTemplate> = HashMap::new();
        for row in &templates {
            let t = template_from_row(row)?;
            latest.insert((t.school_id, t.audience), t);
        }
        // Each person's newest signature and the version it was of.
        let signed = sqlx::query(
            "SELECT s.person_id, s.signed_at, t.version, t.audience FROM agreement_signatures s \
             JOIN agreement_templates t ON t.id = s.template_id \
             WHERE ($1 = 0 OR t.school_id = $1) ORDER BY s.signed_at, s.id",
        )
        .bind(school)
        .fetch_all(self.pool())
        .await?;
        let mut newest: HashMap<(i64, Audience), (String, i64)> = HashMap::new();
        for row in &signed {
            let audience: Audience = row.try_get::<String, _>("audience")?.parse()?;
            newest.insert(
                (row.try_get("person_id")?, audience),
                (row.try_get("signed_at")?, row.try_get("version")?),
            );
        }
        let roles = sqlx::query("SELECT person_id, role FROM staff_roles ORDER BY role")
            .fetch_all(self.pool())
            .await?;
        let mut roles_of: HashMap<i64, Vec<String>> = HashMap::new();
        for row in &roles {
            roles_of
                .entry(row.try_get("person_id")?)
                .or_default()
                .push(row.try_get("role")?);
        }
        let people = sqlx::query(
            "SELECT id, school_id, kind, given_name, family_name, year_group, class_name, email \
             FROM people WHERE active = 1 AND ($1 = 0 OR school_id = $1) \
             ORDER BY school_id, kind, class_name, family_name, given_name, id",
        )
        .bind(school)
        .fetch_all(self.pool())
        .await?;
        let cutoff = format_time(now - Duration::days(RENEWAL_DAYS));
        let mut out = Vec::with_capacity(people.len());
        for row in &people {
            let person_id: i64 = row.try_get("id")?;
            let school_id: i64 = row.try_get("school_id")?;
            let kind: PersonKind = row.try_get::<String, _>("kind")?.parse()?;
            let year: Option<String> = row.try_get("year_group")?;
            let audience = Audience::of(kind, year.as_deref());
            let state = match latest.get(&(school_id, audience)) {
                None => AgreementState::NotRequired,
                Some(template) => match newest.get(&(person_id, audience)) {
                    None => AgreementState::Missing,
                    Some((_, version)) if *version < template.version => AgreementState::Outdated {
                        signed_version: *version,
                    },
                    Some((at, _)) if *at < cutoff => AgreementState::Expired {
                        signed_at: at.clone(),
                    },
                    Some((at, version)) => AgreementState::Current {
                        version: *version,
                        signed_at: at.clone(),
                        renew_by: renew_by(at),
                    },
                },
            };
            out.push(AgreementStatus {
                person_id,
                school_id,
                name: format!(
                    "{} {}",
                    row.try_get::<String, _>("given_name")?,
                    row.try_get::<String, _>("family_name")?
                ),
                kind,
                class_name: row.try_get("class_name")?,
                roles: roles_of.remove(&person_id).unwrap_or_default(),
                email: row.try_get("email")?,
                audience,
                state,
            });
        }
        Ok(out)
    }

    /// The people, in every school, who must sign before full access: the
    /// set the identity map places in the `unsigned` group.
    pub async fn unsigned_people(&self, now: DateTime<Utc>) -> Result<HashSet<i64>, StoreError> {
        Ok(self
            .agreement_statuses(None, now)
            .await?
            .into_iter()
            .filter(|s| s.state.needs_signing())
            .map(|s| s.person_id)
            .collect())
    }

    /// Signed and unsigned counts by class (pupils), by role (staff and
    /// governors), and for parents and visitors.
    pub async fn agreement_coverage(
        &self,
        school_id: i64,
        now: DateTime<Utc>,
    ) -> Result<Vec<CoverageRow>, StoreError> {
        let mut rows: BTreeMap<String, CoverageRow> = BTreeMap::new();
        for status in self.agreement_statuses(Some(school_id), now).await? {
            if status.state == AgreementState::NotRequired {
                continue;
            }
            let labels: Vec<String> = match status.kind {
                PersonKind::Pupil => vec![format!(
                    "Class {}",
                    status.class_name.as_deref().unwrap_or("(none)")
                )],
                PersonKind::Staff | PersonKind::Governor if !status.roles.is_empty() => {
                    status.roles.iter().map(|r| format!("Role {r}")).collect()
                }
                other => vec![format!("{}s", capitalise(other.as_str()))],
            };
            for label in labels {
                let row = rows.entry(label.clone()).or_insert_with(|| CoverageRow {
                    label,
                    ..CoverageRow::default()
                });
                row.people += 1;
                if status.state.needs_signing() {
                    row.needing += 1;
                } else {
                    row.current += 1;
                }
            }
        }
        Ok(rows.into_values().collect())
    }
}

fn renew_by(signed_at: &str) -> String {
    DateTime::parse_from_rfc3339(signed_at)
        .map(|t| {
            (t.with_timezone(&Utc) + Duration::days(RENEWAL_DAYS))
                .format("%Y-%m-%d")
                .to_string()
        })
        .unwrap_or_default()
}

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

impl fmt::Display for AgreementState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotRequired => f.write_str("not required"),
            Self::Current {
                version, renew_by, ..
            } => {
                write!(f, "signed (version {version}), renew by {renew_by}")
            }
            Self::Missing => f.write_str("not signed"),
            Self::Outdated { signed_version } => {
                write!(
                    f,
                    "signed version {signed_version}; the new version needs signing"
                )
            }
            Self::Expired { signed_at } => write!(
                f,
                "signed {}; due for renewal",
                signed_at.get(..10).unwrap_or(signed_at)
            ),
        }
    }
}
