use sqlx::any::AnyRow;
use sqlx::Row;

use crate::audit::{append, Change};
use crate::{Actor, Group, GroupKind, Store, StoreError};

fn group_from_row(row: &AnyRow) -> Result<Group, StoreError> {
    let kind: String = row.try_get("kind")?;
    Ok(Group {
        id: row.try_get("id")?,
        school_id: row.try_get("school_id")?,
        name: row.try_get("name")?,
        kind: kind.parse()?,
        filtering_profile: row.try_get("filtering_profile")?,
    })
}

impl Store {
    /// The group called `name` in a school, created if it does not exist.
    pub async fn ensure_group(
        &self,
        actor: &Actor,
        school_id: i64,
        name: &str,
        kind: GroupKind,
        filtering_profile: Option<&str>,
    ) -> Result<Group, StoreError> {
        let mut write = self.begin_write().await?;
        let result = async {
            let group = ensure_group_in(
                &mut write.tx,
                actor,
                school_id,
                name,
                kind,
                filtering_profile,
            )
            .await?;
            Ok(group)
        }
        .await;
        write.finish(result).await
    }

    pub async fn groups(&self, school_id: i64) -> Result<Vec<Group>, StoreError> {
        let rows = sqlx::query("SELECT * FROM groups WHERE school_id = $1 ORDER BY kind, name")
            .bind(school_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(group_from_row).collect()
    }

    /// Adds a person to a group; adding a member twice changes nothing.
    /// Membership decides a person's filtering, so the change needs a
    /// reason, kept in the audit entry and shown on the change log.
    pub async fn add_group_member(
        &self,
        actor: &Actor,
        group_id: i64,
        person_id: i64,
        reason: &str,
    ) -> Result<(), StoreError> {
        let reason = change_reason(reason)?;
        let mut write = self.begin_write().await?;
        let result = async {
            add_member_in(&mut write.tx, actor, group_id, person_id, reason).await?;
            Ok(())
        }
        .await;
        write.finish(result).await
    }

    /// Takes a person out of a group; removing a non-member changes
    /// nothing. Like adding, it needs a reason.
    pub async fn remove_group_member(
        &self,
        actor: &Actor,
        group_id: i64,
        person_id: i64,
        reason: &str,
    ) -> Result<(), StoreError> {
        let reason = change_reason(reason)?;
        let mut write = self.begin_write().await?;
        let result = async {
            let removed =
                sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND person_id = $2")
                    .bind(group_id)
                    .bind(person_id)
                    .execute(&mut *write.tx)
                    .await?;
            if removed.rows_affected() > 0 {
                let member = serde_json::json!({ "group_id": group_id, "person_id": person_id });
                let mut change = Change::new("remove_member", "group", group_id).before(&member);
                change.reason = Some(reason);
                append(&mut write.tx, actor, change).await?;
            }
            Ok(())
        }
        .await;
        write.finish(result).await
    }

    /// The ids of a group's members.
    pub async fn group_members(&self, group_id: i64) -> Result<Vec<i64>, StoreError> {
        let rows = sqlx::query(
            "SELECT person_id FROM group_members WHERE group_id = $1 ORDER BY person_id",
        )
        .bind(group_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|row| row.try_get("person_id"))
            .collect::<Result<_, _>>()?)
    }
}

pub(crate) async fn ensure_group_in(
    conn: &mut sqlx::AnyConnection,
    actor: &Actor,
    school_id: i64,
    name: &str,
    kind: GroupKind,
    filtering_profile: Option<&str>,
) -> Result<Group, StoreError> {
    if name.trim().is_empty() {
        return Err(StoreError::invalid("group name", "a group needs a name"));
    }
    let existing = sqlx::query("SELECT * FROM groups WHERE school_id = $1 AND name = $2")
        .bind(school_id)
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(row) = existing {
        return group_from_row(&row);
    }
    let row = sqlx::query(
        "INSERT INTO groups (school_id, name, kind, filtering_profile, created_at) \
         VALUES ($1, $2, $3, $4, $5) RETURNING *",
    )
    .bind(school_id)
    .bind(name)
    .bind(kind.as_str())
    .bind(filtering_profile)
    .bind(crate::now())
    .fetch_one(&mut *conn)
    .await?;
    let group = group_from_row(&row)?;
    append(
        conn,
        actor,
        Change::new("create", "group", group.id).after(&group),
    )
    .await?;
    Ok(group)
}

pub(crate) async fn add_member_in(
    conn: &mut sqlx::AnyConnection,
    actor: &Actor,
    group_id: i64,
    person_id: i64,
    reason: &str,
) -> Result<(), StoreError> {
    let present =
        sqlx::query("SELECT 1 AS one FROM group_members WHERE group_id = $1 AND person_id = $2")
            .bind(group_id)
            .bind(person_id)
            .fetch_optional(&mut *conn)
            .await?;
    if present.is_some() {
        return Ok(());
    }
    sqlx::query("INSERT INTO group_members (group_id, person_id) VALUES ($1, $2)")
        .bind(group_id)
        .bind(person_id)
        .execute(&mut *conn)
        .await?;
    let member = serde_json::json!({ "group_id": group_id, "person_id": person_id });
    let mut change = Change::new("add_member", "group", group_id).after(&member);
    change.reason = Some(reason);
    append(conn, actor, change).await?;
    Ok(())
}

/// The reason a change to who is filtered how must carry: membership and
/// devices decide a person's filtering, and the change log says why.
pub(crate) fn change_reason(reason: &str) -> Result<&str, StoreError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(StoreError::invalid(
            "reason",
            "say why (such as \"moved to Year 6\"); the reason goes on the change log",
        ));
    }
    Ok(reason)
}
