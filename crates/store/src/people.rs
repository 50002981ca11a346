use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::audit::{append, Change};
use crate::groups::{add_member_in, ensure_group_in};
use crate::{Actor, GroupKind, Guardianship, Person, PersonDetails, PersonKind, Store, StoreError};

/// A roster to bring into the store: people, and links from parents or
/// carers to pupils.
#[derive(Debug, Clone, Default)]
pub struct ImportBatch {
    pub people: Vec<PersonDetails>,
    pub guardians: Vec<ImportedGuardian>,
}

/// A parent's link to a pupil as a roster states it, by the MIS contact ID
/// and the pupil's UPN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedGuardian {
    pub parent_external_id: String,
    pub pupil_upn: String,
    pub relationship: String,
    pub parental_responsibility: bool,
    pub contact_priority: Option<i64>,
}

/// What an import did, or would do on a dry run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportOutcome {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub links_created: usize,
    pub dry_run: bool,
}

pub(crate) fn person_from_row(row: &AnyRow) -> Result<Person, StoreError> {
    let kind: String = row.try_get("kind")?;
    let active: i64 = row.try_get("active")?;
    Ok(Person {
        id: row.try_get("id")?,
        school_id: row.try_get("school_id")?,
        details: PersonDetails {
            kind: kind.parse()?,
            external_id: row.try_get("external_id")?,
            upn: row.try_get("upn")?,
            given_name: row.try_get("given_name")?,
            family_name: row.try_get("family_name")?,
            date_of_birth: row.try_get("date_of_birth")?,
            year_group: row.try_get("year_group")?,
            class_name: row.try_get("class_name")?,
            email: row.try_get("email")?,
            roles: Vec::new(),
            active: active != 0,
        },
    })
}

pub(crate) async fn with_roles(
    conn: &mut AnyConnection,
    mut person: Person,
) -> Result<Person, StoreError> {
    let rows = sqlx::query("SELECT role FROM staff_roles WHERE person_id = $1 ORDER BY role")
        .bind(person.id)
        .fetch_all(&mut *conn)
        .await?;
    for row in &rows {
        let role: String = row.try_get("role")?;
        person.details.roles.push(role.parse()?);
    }
    person.details.roles.sort();
    Ok(person)
}

/// The filtering profile a year group falls under by key stage (F3).
pub fn key_stage_profile(year_group: &str) -> &'static str {
    match year_group {
        "N" | "R" => "eyfs",
        "1" | "2" => "ks1",
        "3" | "4" | "5" | "6" => "ks2",
        "12" | "13" => "sixth-form",
        _ => "ks3-4",
    }
}

/// The label a year group's group carries.
fn year_group_label(year_group: &str) -> String {
    match year_group {
        "N" => "Nursery".to_string(),
        "R" => "Reception".to_string(),
        other => format!("Year {other}"),
    }
}

impl Store {
    /// The people of a school, of one kind or all, ordered by name.
    pub async fn people(
        &self,
        school_id: i64,
        kind: Option<PersonKind>,
    ) -> Result<Vec<Person>, StoreError> {
        let mut conn = self.pool().acquire().await?;
        let rows = sqlx::query(
            "SELECT * FROM people WHERE school_id = $1 ORDER BY kind, family_name, given_name, id",
        )
        .bind(school_id)
        .fetch_all(&mut *conn)
        .await?;
        let mut people = Vec::with_capacity(rows.len());
        for row in &rows {
            let person = person_from_row(row)?;
            if kind.is_none_or(|k| k == person.details.kind) {
                people.push(with_roles(&mut conn, person).await?);
            }
        }
        Ok(people)
    }

    /// The parents and carers linked to a pupil.
    pub async fn guardianships(&self, pupil_id: i64) -> Result<Vec<Guardianship>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM guardianships WHERE pupil_id = $1 ORDER BY contact_priority, parent_id",
        )
        .bind(pupil_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let responsibility: i64 = row.try_get("parental_responsibility")?;
                Ok(Guardianship {
                    parent_id: row.try_get("parent_id")?,
                    pupil_id: row.try_get("pupil_id")?,
                    relationship: row.try_get("relationship")?,
                    parental_responsibility: responsibility != 0,
                    contact_priority: row.try_get("contact_priority")?,
                })
            })
            .collect()
    }

    /// Brings a roster into a school in one transaction: a person already
    /// known (pupils by UPN, others by MIS ID) is updated, never duplicated;
    /// pupils join their year and class groups, staff the staff group. With
    /// `dry_run` the transaction is rolled back and only the counts remain.
    pub async fn import_people(
        &self,
        actor: &Actor,
        school_id: i64,
        batch: &ImportBatch,
        dry_run: bool,
    ) -> Result<ImportOutcome, StoreError> {
        let mut write = self.begin_write().await?;
        let result = async {
            let conn = &mut *write.tx;
            let mut outcome = ImportOutcome {
                dry_run,
                ..ImportOutcome::default()
            };
            for details in &batch.people {
                let (person, change) = upsert_person(conn, actor, school_id, details).await?;
                match change {
                    Upsert::Created => outcome.created += 1,
                    Upsert::Updated => outcome.updated += 1,
                    Upsert::Unchanged => outcome.unchanged += 1,
                }
                place_in_groups(conn, actor, &person).await?;
            }
            for link in &batch.guardians {
                if link_guardian(conn, actor, school_id, link).await? {
                    outcome.links_created += 1;
                }
            }
            Ok(outcome)
        }
        .await;
        match result {
            Ok(outcome) if dry_run => {
                write.tx.rollback().await?;
                Ok(outcome)
            }
            result => write.finish(result).await,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upsert {
    Created,
    Updated,
    Unchanged,
}

async fn find_person(
    conn: &mut AnyConnection,
    school_id: i64,
    details: &PersonDetails,
) -> Result<Option<Person>, StoreError> {
    let row = match (&details.upn, &details.external_id) {
        (Some(upn), _) if details.kind == PersonKind::Pupil => {
            sqlx::query("SELECT * FROM people WHERE school_id = $1 AND upn = $2")
                .bind(school_id)
                .bind(upn)
                .fetch_optional(&mut *conn)
                .await?
        }
        (_, Some(external_id)) => {
            sqlx::query(
                "SELECT * FROM people WHERE school_id = $1 AND kind = $2 AND external_id = $3",
            )
            .bind(school_id)
            .bind(details.kind.as_str())
            .bind(external_id)
            .fetch_optional(&mut *conn)
            .await?
        }
        _ => None,
    };
    match row {
        Some(row) => Ok(Some(with_roles(conn, person_from_row(&row)?).await?)),
        None => Ok(None),
    }
}

async fn upsert_person(
    conn: &mut AnyConnection,
    actor: &Actor,
    school_id: i64,
    details: &PersonDetails,
) -> Result<(Person, Upsert), StoreError> {
    let mut details = details.clone();
    details.roles.sort();
    details.roles.dedup();
    if details.kind == PersonKind::Pupil && details.upn.is_none() {
        return Err(StoreError::invalid(
            "UPN",
            "every pupil needs a unique pupil number",
        ));
    }
    if details.kind != PersonKind::Pupil && details.external_id.is_none() {
        return Err(StoreError::invalid(
            "MIS ID",
            "staff and contacts need the MIS's ID so re-imports match",
        ));
    }
    let existing = find_person(conn, school_id, &details).await?;
    let now = crate::now();
    let (id, outcome) = match &existing {
        Some(before) if before.details == details => {
            return Ok((before.clone(), Upsert::Unchanged))
        }
        Some(before) => {
            bind_details(
                sqlx::query(
                    "UPDATE people SET external_id = $1, upn = $2, given_name = $3, family_name = $4, \
                     date_of_birth = $5, year_group = $6, class_name = $7, email = $8, active = $9, \
                     updated_at = $10 WHERE id = $11",
                ),
                &details,
            )
            .bind(&now)
            .bind(before.id)
            .execute(&mut *conn)
            .await?;
            sqlx::query("DELETE FROM staff_roles WHERE person_id = $1")
                .bind(before.id)
                .execute(&mut *conn)
                .await?;
            (before.id, Upsert::Updated)
        }
        None => {
            let row = bind_details(
                sqlx::query(
                    "INSERT INTO people (external_id, upn, given_name, family_name, date_of_birth, \
                     year_group, class_name, email, active, updated_at, created_at, school_id, kind) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12) RETURNING id",
                ),
                &details,
            )
            .bind(&now)
            .bind(school_id)
            .bind(details.kind.as_str())
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| {
                StoreError::on_duplicate(e, "person", details.upn.as_deref().unwrap_or(""))
            })?;
            (row.try_get("id")?, Upsert::Created)
        }
    };
    for role in &details.roles {
        sqlx::query("INSERT INTO staff_roles (person_id, role) VALUES ($1, $2)")
            .bind(id)
            .bind(role.as_str())
            .execute(&mut *conn)
            .await?;
    }
    let person = Person {
        id,
        school_id,
        details,
    };
    let mut change = Change::new(
        if existing.is_some() {
            "update"
        } else {
            "create"
        },
        "person",
        id,
    )
    .after(&person);
    if let Some(before) = &existing {
        change = change.before(before);
    }
    append(conn, actor, change).await?;
    Ok((person, outcome))
}

/// Binds a person's details as `$1` to `$9`, in the order both the insert
/// and the update name them.
fn bind_details<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    details: &'q PersonDetails,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    query
        .bind(&details.external_id)
        .bind(&details.upn)
        .bind(&details.given_name)
        .bind(&details.family_name)
        .bind(&details.date_of_birth)
        .bind(&details.year_group)
        .bind(&details.class_name)
        .bind(&details.email)
        .bind(i64::from(details.active))
}

async fn place_in_groups(
    conn: &mut AnyConnection,
    actor: &Actor,
    person: &Person,
) -> Result<(), StoreError> {
    let details = &person.details;
    let mut memberships = Vec::new();
    match details.kind {
        PersonKind::Pupil => {
            if let Some(year) = &details.year_group {
                memberships.push((
                    year_group_label(year),
                    GroupKind::Year,
                    Some(key_stage_profile(year)),
                ));
            }
            if let Some(class) = &details.class_name {
                memberships.push((class.clone(), GroupKind::Class, None));
            }
        }
        PersonKind::Staff => {
            memberships.push(("Staff".to_string(), GroupKind::Filtering, Some("staff")))
        }
        PersonKind::Governor | PersonKind::Parent | PersonKind::Visitor => {}
    }
    for (name, kind, profile) in memberships {
        let group = ensure_group_in(conn, actor, person.school_id, &name, kind, profile).await?;
        add_member_in(conn, actor, group.id, person.id, "roster import").await?;
    }
    Ok(())
}

async fn link_guardian(
    conn: &mut AnyConnection,
    actor: &Actor,
    school_id: i64,
    link: &ImportedGuardian,
) -> Result<bool, StoreError> {
    let ids = sqlx::query(
        "SELECT p.id AS parent_id, c.id AS pupil_id FROM people p, people c \
         WHERE p.school_id = $1 AND p.kind = 'parent' AND p.external_id = $2 \
           AND c.school_id = $1 AND c.kind = 'pupil' AND c.upn = $3",
    )
    .bind(school_id)
    .bind(&link.parent_external_id)
    .bind(&link.pupil_upn)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| StoreError::NotFound {
        entity: "parent or pupil for contact",
        key: format!("{} → {}", link.parent_external_id, link.pupil_upn),
    })?;
    let guardianship = Guardianship {
        parent_id: ids.try_get("parent_id")?,
        pupil_id: ids.try_get("pupil_id")?,
        relationship: link.relationship.clone(),
        parental_responsibility: link.parental_responsibility,
        contact_priority: link.contact_priority,
    };
    let existing = sqlx::query(
        "SELECT relationship, parental_responsibility, contact_priority FROM guardianships \
         WHERE parent_id = $1 AND pupil_id = $2",
    )
    .bind(guardianship.parent_id)
    .bind(guardianship.pupil_id)
    .fetch_optional(&mut *conn)
    .await?;
    let before = match &existing {
        Some(row) => {
            let responsibility: i64 = row.try_get("parental_responsibility")?;
            Some(Guardianship {
                relationship: row.try_get("relationship")?,
                parental_responsibility: responsibility != 0,
                contact_priority: row.try_get("contact_priority")?,
                ..guardianship.clone()
            })
        }
        None => None,
    };
    if before.as_ref() == Some(&guardianship) {
        return Ok(false);
    }
    sqlx::query("DELETE FROM guardianships WHERE parent_id = $1 AND pupil_id = $2")
        .bind(guardianship.parent_id)
        .bind(guardianship.pupil_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO guardianships (parent_id, pupil_id, relationship, parental_responsibility, contact_priority) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(guardianship.parent_id)
    .bind(guardianship.pupil_id)
    .bind(&guardianship.relationship)
    .bind(i64::from(guardianship.parental_responsibility))
    .bind(guardianship.contact_priority)
    .execute(&mut *conn)
    .await?;
    let mut change = Change::new(
        if before.is_some() { "update" } else { "link" },
        "guardianship",
        guardianship.pupil_id,
    )
    .after(&guardianship);
    if let Some(before) = &before {
        change = change.before(before);
    }
    append(conn, actor, change).await?;
    Ok(before.is_none())
}
