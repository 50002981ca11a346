use sqlx::any::AnyRow;
use sqlx::Row;

use crate::audit::{append, Change};
use crate::{Actor, Census, School, Store, StoreError};

fn school_from_row(row: &AnyRow) -> Result<School, sqlx::Error> {
    Ok(School {
        id: row.try_get("id")?,
        urn: row.try_get("urn")?,
        name: row.try_get("name")?,
        timezone: row.try_get("timezone")?,
    })
}

impl Store {
    /// Adds a school to the deployment.
    pub async fn create_school(
        &self,
        actor: &Actor,
        name: &str,
        urn: Option<&str>,
        timezone: &str,
    ) -> Result<School, StoreError> {
        if name.trim().is_empty() {
            return Err(StoreError::invalid("school name", "a school needs a name"));
        }
        let mut write = self.begin_write().await?;
        let result = async {
            let row = sqlx::query(
                "INSERT INTO schools (urn, name, timezone, created_at) VALUES ($1, $2, $3, $4) \
             RETURNING id, urn, name, timezone",
            )
            .bind(urn)
            .bind(name.trim())
            .bind(timezone)
            .bind(crate::now())
            .fetch_one(&mut *write.tx)
            .await
            .map_err(|e| StoreError::on_duplicate(e, "school with URN", urn.unwrap_or("")))?;
            let school = school_from_row(&row)?;
            append(
                &mut write.tx,
                actor,
                Change::new("create", "school", school.id).after(&school),
            )
            .await?;
            Ok(school)
        }
        .await;
        write.finish(result).await
    }

    pub async fn schools(&self) -> Result<Vec<School>, StoreError> {
        let rows = sqlx::query("SELECT id, urn, name, timezone FROM schools ORDER BY id")
            .fetch_all(self.pool())
            .await?;
        Ok(rows.iter().map(school_from_row).collect::<Result<_, _>>()?)
    }

    /// The school called `name`, or the only school when `name` is `None`.
    pub async fn school(&self, name: Option<&str>) -> Result<School, StoreError> {
        let schools = self.schools().await?;
        match name {
            Some(name) => schools
                .into_iter()
                .find(|s| s.name.eq_ignore_ascii_case(name) || s.urn.as_deref() == Some(name)),
            None if schools.len() == 1 => schools.into_iter().next(),
            None => None,
        }
        .ok_or_else(|| StoreError::NotFound {
            entity: "school",
            key: name.map_or_else(
                || "(several schools: name one with --school)".to_string(),
                str::to_string,
            ),
        })
    }

    /// How many of each record the deployment holds.
    pub async fn census(&self) -> Result<Census, StoreError> {
        let row = sqlx::query(
            "SELECT \
               (SELECT COUNT(*) FROM schools) AS schools, \
               (SELECT COUNT(*) FROM people WHERE kind = 'pupil') AS pupils, \
               (SELECT COUNT(*) FROM people WHERE kind = 'staff') AS staff, \
               (SELECT COUNT(*) FROM people WHERE kind = 'parent') AS parents, \
               (SELECT COUNT(*) FROM groups) AS groups, \
               (SELECT COUNT(*) FROM devices) AS devices, \
               (SELECT COUNT(*) FROM accounts) AS accounts",
        )
        .fetch_one(self.pool())
        .await?;
        Ok(Census {
            schools: row.try_get("schools")?,
            pupils: row.try_get("pupils")?,
            staff: row.try_get("staff")?,
            parents: row.try_get("parents")?,
            groups: row.try_get("groups")?,
            devices: row.try_get("devices")?,
            accounts: row.try_get("accounts")?,
        })
    }
}
