use sqlx::Row;

use crate::audit::{append, Change};
use crate::{Account, AccountRole, Actor, Store, StoreError};

impl Store {
    /// Creates a console account. `password_hash` is a PHC string (argon2id);
    /// the store never sees a password.
    pub async fn create_account(
        &self,
        actor: &Actor,
        username: &str,
        display_name: &str,
        password_hash: &str,
        roles: &[AccountRole],
    ) -> Result<Account, StoreError> {
        let username = username.trim().to_lowercase();
        if username.is_empty() || username.chars().any(char::is_whitespace) {
            return Err(StoreError::invalid(
                "username",
                "use one word without spaces, such as an email address",
            ));
        }
        if !password_hash.starts_with("$argon2id$") {
            return Err(StoreError::invalid(
                "password hash",
                "only argon2id hashes are stored",
            ));
        }
        let mut write = self.begin_write().await?;
        let result = async {
            let row = sqlx::query(
                "INSERT INTO accounts (username, display_name, password_hash, created_at) \
             VALUES ($1, $2, $3, $4) RETURNING id",
            )
            .bind(&username)
            .bind(display_name)
            .bind(password_hash)
            .bind(crate::now())
            .fetch_one(&mut *write.tx)
            .await
            .map_err(|e| StoreError::on_duplicate(e, "account", &username))?;
            let id: i64 = row.try_get("id")?;
            for role in roles {
                sqlx::query(
                    "INSERT INTO account_roles (account_id, school_id, role) VALUES ($1, $2, $3)",
                )
                .bind(id)
                .bind(role.school_id)
                .bind(role.role.as_str())
                .execute(&mut *write.tx)
                .await?;
            }
            let account = Account {
                id,
                username,
                display_name: display_name.to_string(),
                person_id: None,
                disabled: false,
                roles: roles.to_vec(),
            };
            // The hash is left out of the audit record: it is a secret.
            append(
                &mut write.tx,
                actor,
                Change::new("create", "account", id).after(&account),
            )
            .await?;
            Ok(account)
        }
        .await;
        write.finish(result).await
    }

    /// An account and its password hash, for signing in.
    pub async fn account_for_sign_in(
        &self,
        username: &str,
    ) -> Result<Option<(Account, String)>, StoreError> {
        let username = username.trim().to_lowercase();
        let Some(row) = sqlx::query("SELECT * FROM accounts WHERE username = $1")
            .bind(&username)
            .fetch_optional(self.pool())
            .await?
        else {
            return Ok(None);
        };
        let id: i64 = row.try_get("id")?;
        let role_rows = sqlx::query(
            "SELECT school_id, role FROM account_roles WHERE account_id = $1 ORDER BY role",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        let mut roles = Vec::with_capacity(role_rows.len());
        for role_row in &role_rows {
            let role: String = role_row.try_get("role")?;
            roles.push(AccountRole {
                school_id: role_row.try_get("school_id")?,
                role: role.parse()?,
            });
        }
        let disabled: i64 = row.try_get("disabled")?;
        let account = Account {
            id,
            username: row.try_get("username")?,
            display_name: row.try_get("display_name")?,
            person_id: row.try_get("person_id")?,
            disabled: disabled != 0,
            roles,
        };
        Ok(Some((account, row.try_get("password_hash")?)))
    }

    /// Links a console account to the person it belongs to (or unlinks
    /// it). Need-to-know rules that concern a person, such as never opening
    /// an allegation about oneself, work through this link.
    pub async fn set_account_person(
        &self,
        actor: &Actor,
        account_id: i64,
        person_id: Option<i64>,
    ) -> Result<Account, StoreError> {
        let before = self
            .account(account_id)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                entity: "account",
                key: account_id.to_string(),
            })?;
        let mut write = self.begin_write().await?;
        let result = async {
            sqlx::query("UPDATE accounts SET person_id = $1 WHERE id = $2")
                .bind(person_id)
                .bind(account_id)
                .execute(&mut *write.tx)
                .await?;
            let after = Account {
                person_id,
                ..before.clone()
            };
            append(
                &mut write.tx,
                actor,
                Change::new("link_person", "account", account_id)
                    .before(&before)
                    .after(&after),
            )
            .await?;
            Ok(after)
        }
        .await;
        write.finish(result).await
    }
}
