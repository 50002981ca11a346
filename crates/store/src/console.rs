//! What the web console keeps between requests: sessions, counts of failed
//! sign-ins, two-factor secrets and recovery codes, and API tokens; and the
//! reads its pages need (one person, one account, a filtered audit log).
//!
//! Tokens reach the store already hashed: the console makes a random token,
//! gives it to the browser or the API client, and keeps only its SHA-256
//! hash here. Signing in, signing out, enrolling two-factor authentication,
//! using a recovery code and making or revoking an API token are audited in
//! the same transaction as the change. Two things are deliberately not
//! audited: a session's "last seen" time, which moves on every request and
//! is bookkeeping rather than a record, and the failure counters, whose
//! refusals the console logs instead (an attacker must not be able to fill
//! the audit log by guessing).

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::audit::{append, Change};
use crate::incidents::evidence::{open_sealed, seal_bound};
use crate::incidents::EvidenceKey;
use crate::people::{person_from_row, with_roles};
use crate::{Account, Actor, AuditEntry, Person, Store, StoreError};

/// How far a browser session has got through signing in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStage {
    /// The password was right; a TOTP or recovery code is still needed.
    SecondFactor,
    /// The password was right and the account must enrol two-factor
    /// authentication before it can go further.
    Enrolment,
    /// Fully signed in.
    SignedIn,
}

/// A browser session, found by its token's hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    pub account_id: i64,
    pub stage: SessionStage,
    /// The token every form of this session must carry.
    pub csrf_token: String,
    pub address: String,
    pub created_at: String,
    pub last_seen_at: String,
    pub expires_at: String,
}

/// A new browser session, as the console starts it.
#[derive(Debug, Clone)]
pub struct NewSession<'a> {
    pub token_hash: &'a str,
    pub account_id: i64,
    pub stage: SessionStage,
    pub csrf_token: &'a str,
    pub address: &'a str,
    /// When the session ends however active it is.
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// Failed sign-ins counted against one username or one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInFailures {
    pub failures: i64,
    pub last_failure_at: String,
}

/// An account's TOTP secret, as kept: sealed under the deployment's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwoFactor {
    account_id: i64,
    /// The column as stored: [`SEALED_SECRET`] and the sealed secret, or a
    /// base32 secret from before secrets were sealed.
    stored: String,
    /// False until the account has proved it can make codes.
    pub confirmed: bool,
    /// The newest time step a code was accepted for.
    pub last_step: i64,
}

/// How a sealed TOTP secret begins in `account_two_factor.secret`. Base32
/// never holds a lower-case letter or a colon, so an unsealed secret left
/// by an older version can be told apart and sealed at start-up.
const SEALED_SECRET: &str = "sealed-v1:";

impl TwoFactor {
    /// The base32 secret, as authenticator apps take it. The server must
    /// read it to check codes, so it is sealed rather than hashed: a copy
    /// of the database without the key file does not give away anyone's
    /// second factor.
    pub fn secret(&self, key: &EvidenceKey) -> Result<String, StoreError> {
        let Some(sealed) = self.stored.strip_prefix(SEALED_SECRET) else {
            return Ok(self.stored.clone());
        };
        let corrupt = |problem: &str| StoreError::Corrupt {
            entity: "account_two_factor",
            problem: format!(
                "account {}: the two-factor secret {problem}",
                self.account_id
            ),
        };
        let (nonce, sealed) = sealed
            .split_once(':')
            .ok_or_else(|| corrupt("has no nonce"))?;
        let sealed = hex::decode(sealed).map_err(|_| corrupt("is not hex"))?;
        let plain =
            open_sealed(key, &secret_binding(self.account_id), nonce, &sealed).map_err(corrupt)?;
        String::from_utf8(plain).map_err(|_| corrupt("is not text"))
    }

    /// True if the secret is still kept as it was before sealing.
    pub fn is_sealed(&self) -> bool {
        self.stored.starts_with(SEALED_SECRET)
    }
}

/// What a TOTP secret is bound to: its account, so that a sealed secret
/// copied to another account's row does not open.
fn secret_binding(account_id: i64) -> Vec<u8> {
    format!("sheepdog-totp-v1:{account_id}").into_bytes()
}

fn seal_secret(key: &EvidenceKey, account_id: i64, secret: &str) -> Result<String, StoreError> {
    let (nonce, sealed) = seal_bound(key, &secret_binding(account_id), secret.as_bytes())?;
    Ok(format!("{SEALED_SECRET}{nonce}:{}", hex::encode(sealed)))
}

/// An API token, without the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiToken {
    pub id: i64,
    pub account_id: i64,
    pub label: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

/// Which audit entries to read; every field narrows the search.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// The actor's text contains this (`account:3:`, a username).
    pub actor: Option<String>,
    pub action: Option<String>,
    pub entity: Option<String>,
    pub entity_id: Option<String>,
    /// At or after this time (text, compared as the store writes times).
    pub since: Option<String>,
    /// Before this time.
    pub until: Option<String>,
    /// At most this many, newest first.
    pub limit: i64,
}

impl SessionStage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SecondFactor => "second_factor",
            Self::Enrolment => "enrolment",
            Self::SignedIn => "signed_in",
        }
    }
}

impl fmt::Display for SessionStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SessionStage {
    type Err = StoreError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "second_factor" => Ok(Self::SecondFactor),
            "enrolment" => Ok(Self::Enrolment),
            "signed_in" => Ok(Self::SignedIn),
            other => Err(StoreError::Corrupt {
                entity: "console session",
                problem: format!("unknown stage `{other}`"),
            }),
        }
    }
}

fn session_from_row(row: &AnyRow) -> Result<ConsoleSession, StoreError> {
    let stage: String = row.try_get("stage")?;
    Ok(ConsoleSession {
        account_id: row.try_get("account_id")?,
        stage: stage.parse()?,
        csrf_token: row.try_get("csrf_token")?,
        address: row.try_get("address")?,
        created_at: row.try_get("created_at")?,
        last_seen_at: row.try_get("last_seen_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

fn token_from_row(row: &AnyRow) -> Result<ApiToken, StoreError> {
    Ok(ApiToken {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        label: row.try_get("label")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

/// The audit action that records a session reaching `stage`.
fn stage_action(stage: SessionStage) -> &'static str {
    match stage {
        SessionStage::SignedIn => "sign_in",
        SessionStage::SecondFactor | SessionStage::Enrolment => "password_accepted",
    }
}

impl Store {
    /// Starts a browser session; reaching [`SessionStage::SignedIn`] is
    /// audited as a sign-in, an earlier stage as an accepted password.
    pub async fn start_session(
        &self,
        actor: &Actor,
        session: &NewSession<'_>,
    ) -> Result<(), StoreError> {
        let mut write = self.begin_write().await?;
        let result = async {
            let now = crate::now();
            sqlx::query(
                "INSERT INTO console_sessions (token_hash, account_id, stage, csrf_token, address, \
                 created_at, last_seen_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $6, $7)",
            )
            .bind(session.token_hash)
            .bind(session.account_id)
            .bind(session.stage.as_str())
            .bind(session.csrf_token)
            .bind(session.address)
            .bind(&now)
            .bind(crate::format_time(session.expires_at))
            .execute(&mut *write.tx)
            .await?;
            let mut change =
                Change::new(stage_action(session.stage), "account", session.account_id);
            change.after = Some(format!(
                "{{\"address\":{}}}",
                serde_json::to_string(session.address).unwrap_or_default()
            ));
            append(&mut write.tx, actor, change).await?;
            Ok(())
        }
        .await;
        write.finish(result).await
    }

    /// The session whose token hashes to `token_hash`, if it exists.
    pub async fn session(&self, token_hash: &str) -> Result<Option<ConsoleSession>, StoreError> {
        sqlx::query("SELECT * FROM console_sessions WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(self.pool())
            .await?
            .map(|row| session_from_row(&row))
            .transpose()
    }

    /// Notes that a session was used now, which restarts its idle time-out.
    pub async fn touch_session(&self, token_hash: &str) -> Result<(), StoreError> {
        // A single statement outside a transaction: nothing is read first,
        // so it cannot fail a lock upgrade, and it is not a record change.
        sqlx::query("UPDATE console_sessions SET last_seen_at = $1 WHERE token_hash = $2")
            .bind(crate::now())
            .bind(token_hash)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Moves a session to a later stage of signing in, or replaces its
    /// token (the console issues a fresh token when a session is promoted,
    /// so a token seen before sign-in is worthless after it).
    pub async fn promote_session(
        &self,
        actor: &Actor,
        old_token_hash: &str,
        new_token_hash: &str,
        stage: SessionStage,
    ) -> Result<bool, StoreError> {
        let mut write = self.begin_write().await?;
        let result = async {
            let Some(row) = sqlx::query("SELECT * FROM console_sessions WHERE token_hash = $1")
                .bind(old_token_hash)
                .fetch_optional(&mut *write.tx)
                .await?
            else {
                return Ok(false);
            };
            let session = session_from_row(&row)?;
            sqlx::query(
                "UPDATE console_sessions SET token_hash = $1, stage = $2, last_seen_at = $3 \
                 WHERE token_hash = $4",
            )
            .bind(new_token_hash)
            .bind(stage.as_str())
            .bind(crate::now())
            .bind(old_token_hash)
            .execute(&mut *write.tx)
            .await?;
            if stage != session.stage {
                append(
                    &mut write.tx,
                    actor,
                    Change::new(stage_action(stage), "account", session.account_id),
                )
                .await?;
            }
            Ok(true)
        }
        .await;
        write.finish(result).await
    }

    /// Ends one session. `reason` says why: signed out, timed out.
    pub async fn end_session(
        &self,
        actor: &Actor,
        token_hash: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        let mut write = self.begin_write().await?;
        let result = async {
            let Some(row) = sqlx::query("SELECT * FROM console_sessions WHERE token_hash = $1")
                .bind(token_hash)
                .fetch_optional(&mut *write.tx)
                .await?
            else {
                return Ok(());
            };
            let session = session_from_row(&row)?;
            sqlx::query("DELETE FROM console_sessions WHERE token_hash = $1")
                .bind(token_hash)
                .execute(&mut *write.tx)
                .await?;
            let mut change = Change::new("sign_out", "account", session.account_id);
            change.reason = Some(reason);
            append(&mut write.tx, actor, change).await?;
            Ok(())
        }
        .await;
        write.finish(result).await
    }

    /// Ends every session of an account ("sign out everywhere"), returning
    /// how many there were.
    pub async fn end_all_sessions(
        &self,
        actor: &Actor,
        account_id: i64,
    ) -> Result<u64, StoreError> {
        let mut write = self.begin_write().await?;
        let result = async {
            let ended = sqlx::query("DELETE FROM console_sessions WHERE account_id = $1")
                .bind(account_id)
                .execute(&mut *write.tx)
                .await?
                .rows_affected();
            let mut change = Change::new("sign_out_everywhere", "account", account_id);
            change.after = Some(format!("{{\"sessions_ended\":{ended}}}"));
            append(&mut write.tx, actor, change).await?;
            Ok(ended)
        }
        .await;
        write.finish(result).await
    }

    /// Deletes sessions past their absolute lifetime or idle since before
    /// `idle_since`; returns how many.
    pub async fn prune_sessions(
        &self,
        idle_since: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, StoreError> {
        let done =
            sqlx::query("DELETE FROM console_sessions WHERE expires_at < $1 OR last_seen_at < $2")
                .bind(crate::now())
                .bind(crate::format_time(idle_since))
                .execute(self.pool())
                .await?;
        Ok(done.rows_affected())
    }

    /// Failed sign-ins counted against `key` (`user:NAME`, `address:IP`).
    pub async fn sign_in_failures(&self, key: &str) -> Result<Option<SignInFailures>, StoreError> {
        let row = sqlx::query("SELECT * FROM sign_in_failures WHERE throttle_key = $1")
            .bind(key)
            .fetch_optional(self.pool())
            .await?;
        row.map(|row| {
            Ok(SignInFailures {
                failures: row.try_get("failures")?,
                last_failure_at: row.try_get("last_failure_at")?,
            })
        })
        .transpose()
    }

    /// Counts one more failure against each key; failures older than
    /// `forget_before` are forgotten first, so the count starts again.
    pub async fn record_sign_in_failure(
        &self,
        keys: &[&str],
        forget_before: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        let mut write = self.begin_write().await?;
        let result = async {
            let now = crate::now();
            for key in keys {
                sqlx::query(
                    "DELETE FROM sign_in_failures WHERE throttle_key = $1 AND last_failure_at < $2",
                )
                .bind(key)
                .bind(crate::format_time(forget_before))
                .execute(&mut *write.tx)
                .await?;
                let updated = sqlx::query(
                    "UPDATE sign_in_failures SET failures = failures + 1, last_failure_at = $1 \
                     WHERE throttle_key = $2",
                )
                .bind(&now)
                .bind(key)
                .execute(&mut *write.tx)
                .await?
                .rows_affected();
                if updated == 0 {
                    sqlx::query(
                        "INSERT INTO sign_in_failures (throttle_key, failures, last_failure_at) \
                         VALUES ($1, 1, $2)",
                    )
                    .bind(key)
                    .bind(&now)
                    .execute(&mut *write.tx)
                    .await?;
                }
            }
            Ok(())
        }
        .await;
        write.finish(result).await
    }

    /// Forgets the failures counted against `key`, after a good sign-in.
    pub async fn clear_sign_in_failures(&self, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sign_in_failures WHERE throttle_key = $1")
            .bind(key)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The account's TOTP secret, confirmed or still being enrolled.
    pub async fn two_factor(&self, account_id: i64) -> Result<Option<TwoFactor>, StoreError> {
        let row = sqlx::query("SELECT * FROM account_two_factor WHERE account_id = $1")
            .bind(account_id)
            .fetch_optional(self.pool())
            .await?;
        row.map(|row| {
            let confirmed: Option<String> = row.try_get("confirmed_at")?;
            Ok(TwoFactor {
                account_id,
                stored: row.try_get("secret")?,
                confirmed: confirmed.is_some(),
                last_step: row.try_get("last_step")?,
            })
        })
        .transpose()
    }

    /// Keeps a new, unconfirmed TOTP secret for an account that is
    /// enrolling, sealed under `key`; a confirmed secret is never replaced
    /// this way.
    pub async fn begin_two_factor_enrolment(
        &self,
        actor: &Actor,
        key: &EvidenceKey,
        account_id: i64,
        secret: &str,
    ) -> Result<(), StoreError> {
        let secret = &seal_secret(key, account_id, secret)?;
        let mut write = self.begin_write().await?;
        let result = async {
            let existing: Option<Option<String>> =
                sqlx::query("SELECT confirmed_at FROM account_two_factor WHERE account_id = $1")
                    .bind(account_id)
                    .fetch_optional(&mut *write.tx)
                    .await?
                    .map(|row| row.try_get("confirmed_at"))
                    .transpose()?;
            match existing {
                Some(Some(_)) => {
                    return Err(StoreError::invalid(
                        "two-factor authentication",
                        "this account has already enrolled",
                    ))
                }
                Some(None) => {
                    sqlx::query("UPDATE account_two_factor SET secret = $1 WHERE account_id = $2")
                        .bind(secret)
                        .bind(account_id)
                        .execute(&mut *write.tx)
                        .await?;
                }
                None => {
                    sqlx::query(
                        "INSERT INTO account_two_factor (account_id, secret) VALUES ($1, $2)",
                    )
                    .bind(account_id)
                    .bind(secret)
                    .execute(&mut *write.tx)
                    .await?;
                }
            }
            // The secret stays out of the audit log.
            append(
                &mut write.tx,
                actor,
                Change::new("two_factor_enrolment_started", "account", account_id),
            )
            .await?;
            Ok(())
        }
        .await;
        write.finish(result).await
    }

    /// Seals every TOTP secret an older version kept unsealed, in one
    /// audited change; returns how many. Run at start-up, where the key
    /// file is at hand.
    pub async fn seal_two_factor_secrets(&self, key: &EvidenceKey) -> Result<usize, StoreError> {
        let mut write = self.begin_write().await?;
        let result = async {
            let rows = sqlx::query("SELECT account_id, secret FROM account_two_factor")
                .fetch_all(&mut *write.tx)
                .await?;
            let mut sealed = 0;
            for row in rows {
                let account_id: i64 = row.try_get("account_id")?;
                let stored: String = row.try_get("secret")?;
                if stored.starts_with(SEALED_SECRET) {
                    continue;
                }
                sqlx::query("UPDATE account_two_factor SET secret = $1 WHERE account_id = $2")
                    .bind(seal_secret(key, account_id, &stored)?)
                    .bind(account_id)
                    .execute(&mut *write.tx)
                    .await?;
                sealed += 1;
            }
            if sealed > 0 {
                let mut change = Change::new("two_factor_secrets_sealed", "account", 0);
                change.after = Some(format!("{{\"sealed\":{sealed}}}"));
                append(&mut write.tx, &Actor::system("start-up"), change).await?;
            }
            Ok(sealed)
        }
        .await;
        write.finish(result).await
    }

    /// Confirms enrolment after a good code at `step`, replacing any
    /// recovery codes with the new ones (hashes).
    pub async fn confirm_two_factor(
        &self,
        actor: &Actor,
        account_id: i64,
        step: i64,
        recovery_code_hashes: &[String],
    ) -> Result<(), StoreError> {
        let mut write = self.begin_write().await?;
        let result = async {
            let updated = sqlx::query(
                "UPDATE account_two_factor SET confirmed_at = $1, last_step = $2 \
                 WHERE account_id = $3 AND confirmed_at IS NULL",
            )
            .bind(crate::now())
            .bind(step)
            .bind(account_id)
            .execute(&mut *write.tx)
            .await?
            .rows_affected();
            if updated == 0 {
                return Err(StoreError::NotFound {
                    entity: "two-factor enrolment",
                    key: account_id.to_string(),
                });
            }
            sqlx::query("DELETE FROM recovery_codes WHERE account_id = $1")
                .bind(account_id)
                .execute(&mut *write.tx)
                .await?;
            for hash in recovery_code_hashes {
                sqlx::query("INSERT INTO recovery_codes (account_id, code_hash) VALUES ($1, $2)")
                    .bind(account_id)
                    .bind(hash)
                    .execute(&mut *write.tx)
                    .await?;
            }
            let mut change = Change::new("two_factor_enrolled", "account", account_id);
            change.after = Some(format!(
                "{{\"recovery_codes\":{}}}",
                recovery_code_hashes.len()
            ));
            append(&mut write.tx, actor, change).await?;
            Ok(())
        }
        .await;
        write.finish(result).await
    }

    /// Records that a TOTP code for `step` was used, refusing (false) a step
    /// no newer than the last one accepted, so that a code works only once.
    pub async fn use_totp_step(&self, account_id: i64, step: i64) -> Result<bool, StoreError> {
        let updated = sqlx::query(
            "UPDATE account_two_factor SET last_step = $1 \
             WHERE account_id = $2 AND last_step < $1 AND confirmed_at IS NOT NULL",
        )
        .bind(step)
        .bind(account_id)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(updated == 1)
    }

    /// Uses up a recovery code (by hash); false if it is unknown or used.
    pub async fn use_recovery_code(
        &self,
        actor: &Actor,
        account_id: i64,
        code_hash: &str,
    ) -> Result<bool, StoreError> {
        let mut write = self.begin_write().await?;
        let result = async {
            let used = sqlx::query(
                "UPDATE recovery_codes SET used_at = $1 \
                 WHERE account_id = $2 AND code_hash = $3 AND used_at IS NULL",
            )
            .bind(crate::now())
            .bind(account_id)
            .bind(code_hash)
            .execute(&mut *write.tx)
            .await?
            .rows_affected();
            if used == 1 {
                append(
                    &mut write.tx,
                    actor,
                    Change::new("recovery_code_used", "account", account_id),
                )
                .await?;
            }
            Ok(used == 1)
        }
        .await;
        write.finish(result).await
    }

    /// Recovery codes the account has not used yet.
    pub async fn recovery_codes_left(&self, account_id: i64) -> Result<i64, StoreError> {
        Ok(sqlx::query(
            "SELECT COUNT(*) AS n FROM recovery_codes WHERE account_id = $1 AND used_at IS NULL",
        )
        .bind(account_id)
        .fetch_one(self.pool())
        .await?
        .try_get("n")?)
    }

    /// Makes an API token for an account; only its hash is kept.
    pub async fn create_api_token(
        &self,
        actor: &Actor,
        account_id: i64,
        label: &str,
        token_hash: &str,
    ) -> Result<ApiToken, StoreError> {
        let label = label.trim();
        if label.is_empty() {
            return Err(StoreError::invalid(
                "token label",
                "say what the token is for, such as \"MIS sync\"",
            ));
        }
        let mut write = self.begin_write().await?;
        let result = async {
            let now = crate::now();
            let row = sqlx::query(
                "INSERT INTO api_tokens (account_id, label, token_hash, created_at) \
                 VALUES ($1, $2, $3, $4) RETURNING id",
            )
            .bind(account_id)
            .bind(label)
            .bind(token_hash)
            .bind(&now)
            .fetch_one(&mut *write.tx)
            .await?;
            let token = ApiToken {
                id: row.try_get("id")?,
                account_id,
                label: label.to_string(),
                created_at: now,
                last_used_at: None,
                revoked_at: None,
            };
            append(
                &mut write.tx,
                actor,
                Change::new("create", "api_token", token.id).after(&token),
            )
            .await?;
            Ok(token)
        }
        .await;
        write.finish(result).await
    }

    /// The account an unrevoked API token belongs to, noting its use.
    pub async fn api_token_account(&self, token_hash: &str) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query(
            "SELECT account_id FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
        )
        .bind(token_hash)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE token_hash = $2")
            .bind(crate::now())
            .bind(token_hash)
            .execute(self.pool())
            .await?;
        Ok(Some(row.try_get("account_id")?))
    }

    /// An account's API tokens, newest first.
    pub async fn api_tokens(&self, account_id: i64) -> Result<Vec<ApiToken>, StoreError> {
        let rows = sqlx::query("SELECT * FROM api_tokens WHERE account_id = $1 ORDER BY id DESC")
            .bind(account_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(token_from_row).collect()
    }

    /// Revokes one of an account's API tokens; false if it has no such
    /// token or it was already revoked.
    pub async fn revoke_api_token(
        &self,
        actor: &Actor,
        account_id: i64,
        token_id: i64,
    ) -> Result<bool, StoreError> {
        let mut write = self.begin_write().await?;
        let result = async {
            let revoked = sqlx::query(
                "UPDATE api_tokens SET revoked_at = $1 \
                 WHERE id = $2 AND account_id = $3 AND revoked_at IS NULL",
            )
            .bind(crate::now())
            .bind(token_id)
            .bind(account_id)
            .execute(&mut *write.tx)
            .await?
            .rows_affected();
            if revoked == 1 {
                append(
                    &mut write.tx,
                    actor,
                    Change::new("revoke", "api_token", token_id),
                )
                .await?;
            }
            Ok(revoked == 1)
        }
        .await;
        write.finish(result).await
    }

    /// One account by its ID, with its roles.
    pub async fn account(&self, account_id: i64) -> Result<Option<Account>, StoreError> {
        let row = sqlx::query("SELECT username FROM accounts WHERE id = $1")
            .bind(account_id)
            .fetch_optional(self.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        let username: String = row.try_get("username")?;
        Ok(self
            .account_for_sign_in(&username)
            .await?
            .map(|(account, _hash)| account))
    }

    /// One person by ID. Callers showing the record to someone must also
    /// record the view with [`Store::audit_view`].
    pub async fn person(&self, person_id: i64) -> Result<Option<Person>, StoreError> {
        let mut conn = self.pool().acquire().await?;
        let row = sqlx::query("SELECT * FROM people WHERE id = $1")
            .bind(person_id)
            .fetch_optional(&mut *conn)
            .await?;
        match row {
            Some(row) => Ok(Some(with_roles(&mut conn, person_from_row(&row)?).await?)),
            None => Ok(None),
        }
    }

    /// Audit entries matching `filter`, newest first.
    pub async fn audit_search(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        let mut sql = String::from("SELECT * FROM audit_log WHERE 1 = 1");
        let mut binds: Vec<String> = Vec::new();
        let mut add = |clause: &str, value: String| {
            binds.push(value);
            sql.push_str(&clause.replace('?', &format!("${}", binds.len())));
        };
        if let Some(actor) = filter.actor.as_deref().filter(|s| !s.is_empty()) {
            add(
                " AND actor LIKE ? ESCAPE '\\'",
                format!("%{}%", escape_like(actor)),
            );
        }
        if let Some(action) = filter.action.as_deref().filter(|s| !s.is_empty()) {
            add(" AND action = ?", action.to_string());
        }
        if let Some(entity) = filter.entity.as_deref().filter(|s| !s.is_empty()) {
            add(" AND entity = ?", entity.to_string());
        }
        if let Some(id) = filter.entity_id.as_deref().filter(|s| !s.is_empty()) {
            add(" AND entity_id = ?", id.to_string());
        }
        if let Some(since) = filter.since.as_deref().filter(|s| !s.is_empty()) {
            add(" AND at >= ?", since.to_string());
        }
        if let Some(until) = filter.until.as_deref().filter(|s| !s.is_empty()) {
            add(" AND at < ?", until.to_string());
        }
        let limit_at = binds.len() + 1;
        sql.push_str(&format!(" ORDER BY seq DESC LIMIT ${limit_at}"));
        let mut query = sqlx::query(&sql);
        for value in &binds {
            query = query.bind(value);
        }
        let rows = query
            .bind(filter.limit.clamp(1, 100_000))
            .fetch_all(self.pool())
            .await?;
        Ok(rows
            .iter()
            .map(AuditEntry::from_row)
            .collect::<Result<_, _>>()?)
    }
}

/// Makes `%`, `_` and `\\` in a search text match themselves, so a typed
/// `%` cannot widen the search to everyone.
fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}
