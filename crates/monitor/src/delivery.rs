//! Delivery: the notification outbox emptied towards the DSL team, by
//! email (SMTP with STARTTLS required) and by webhook (a JSON POST,
//! optionally signed with HMAC-SHA256).
//!
//! The store writes a notification row in the same transaction as every
//! alert that needs the DSL at once, so delivery only has to read due rows
//! and settle each: sent, or failed with the error and the time of the
//! next attempt, `retry_secs` doubling up to `retry_max_secs`. A row is
//! never deleted, so a mail server that is down for a day delays an alert
//! and loses none. A notification counts as sent when every configured
//! channel took it; when one fails, both are tried again, so the DSL may
//! hear twice but never not at all.
//!
//! Nothing sent names the pupil or quotes what they typed: the email and
//! the webhook carry the category, the grade and a link into the console,
//! where the DSL signs in to see the rest.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Datelike, Timelike, Utc};
use hmac::{Hmac, Mac};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sha2::Sha256;
use sheepdog_config::NotifyConfig;
use sheepdog_store::{Actor, PendingNotification, Store};

use crate::MonitorError;

mod reminders;
pub use reminders::reminder_body;

/// Notifications settled per pass at most.
const BATCH: i64 = 100;

/// The most one SMTP or webhook exchange may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Where notifications go, built from `[notify]`.
#[derive(Clone)]
pub struct Delivery {
    email: Option<Email>,
    webhook: Option<Webhook>,
    console_url: String,
    retry: chrono::Duration,
    retry_max: chrono::Duration,
    /// The weekly digest: days after Monday, and the hour.
    digest_day: u32,
    digest_hour: u32,
    actor: Actor,
}

#[derive(Clone)]
struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

#[derive(Clone)]
struct Webhook {
    url: String,
    secret: Option<Vec<u8>>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("email", &self.email.as_ref().map(|e| e.to.len()))
            .field("webhook", &self.webhook.as_ref().map(|w| &w.url))
            .finish_non_exhaustive()
    }
}

/// What one delivery pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryCounts {
    pub sent: usize,
    pub failed: usize,
}

fn setting(key: &str, problem: impl std::fmt::Display) -> MonitorError {
    MonitorError::Delivery(format!("[notify] {key}: {problem}"))
}

fn read_secret(key: &str, path: &std::path::Path) -> Result<Vec<u8>, MonitorError> {
    let bytes =
        std::fs::read(path).map_err(|e| setting(key, format!("{}: {e}", path.display())))?;
    let trimmed = bytes.trim_ascii();
    if trimmed.is_empty() {
        return Err(setting(key, format!("{} is empty", path.display())));
    }
    Ok(trimmed.to_vec())
}

impl Delivery {
    /// Delivery as `[notify]` configures it; `None` when it configures
    /// neither email nor a webhook.
    pub fn from_config(config: &NotifyConfig) -> Result<Option<Self>, MonitorError> {
        let email = if config.smtp_host.is_empty() {
            None
        } else {
            let mut tls = TlsParameters::builder(config.smtp_host.clone());
            if !config.smtp_ca_file.as_os_str().is_empty() {
                let pem = std::fs::read(&config.smtp_ca_file).map_err(|e| {
                    setting(
                        "smtp_ca_file",
                        format!("{}: {e}", config.smtp_ca_file.display()),
                    )
                })?;
                let certificate =
                    Certificate::from_pem(&pem).map_err(|e| setting("smtp_ca_file", e))?;
                tls = tls.add_root_certificate(certificate);
            }
            let tls = tls.build_rustls().map_err(|e| setting("smtp_host", e))?;
            let mut builder =
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(config.smtp_host.clone())
                    .port(config.smtp_port)
                    .tls(Tls::Required(tls))
                    .hello_name(ClientId::Domain("sheepdog".to_string()))
                    .timeout(Some(EXCHANGE_TIMEOUT));
            if !config.smtp_username.is_empty() {
                let password = read_secret("smtp_password_file", &config.smtp_password_file)?;
                builder = builder.credentials(Credentials::new(
                    config.smtp_username.clone(),
                    String::from_utf8_lossy(&password).into_owned(),
                ));
            }
            let from: Mailbox = config.from.parse().map_err(|e| setting("from", e))?;
            let to = config
                .dsl_emails
                .iter()
                .map(|address| address.parse::<Mailbox>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| setting("dsl_emails", e))?;
            Some(Email {
                transport: builder.build(),
                from,
                to,
            })
        };
        let webhook = if config.webhook_url.is_empty() {
            None
        } else {
            let secret = if config.webhook_secret_file.as_os_str().is_empty() {
                None
            } else {
                Some(read_secret(
                    "webhook_secret_file",
                    &config.webhook_secret_file,
                )?)
            };
            Some(Webhook {
                url: config.webhook_url.clone(),
                secret,
            })
        };
        if email.is_none() && webhook.is_none() {
            return Ok(None);
        }
        Ok(Some(Self {
            email,
            webhook,
            console_url: config.console_url.trim_end_matches('/').to_string(),
            retry: chrono::Duration::seconds(i64::from(config.retry_secs)),
            retry_max: chrono::Duration::seconds(i64::from(config.retry_max_secs)),
            digest_day: sheepdog_config::DAY_NAMES
                .iter()
                .position(|d| *d == config.digest_day)
                .and_then(|d| u32::try_from(d).ok())
                .ok_or_else(|| setting("digest_day", "not a day name"))?,
            digest_hour: u32::from(config.digest_hour),
            actor: Actor::system("notifier"),
        }))
    }

    /// The wait before the next attempt after `attempts` failed ones.
    pub fn backoff(&self, attempts: i64) -> chrono::Duration {
        let doublings = u32::try_from(attempts.clamp(0, 20)).unwrap_or(20);
        self.retry
            .checked_mul(1 << doublings)
            .unwrap_or(self.retry_max)
            .min(self.retry_max)
    }

    /// Sends every notification due at `now` and settles each.
    pub async fn deliver_due(
        &self,
        store: &Store,
        now: DateTime<Utc>,
    ) -> Result<DeliveryCounts, MonitorError> {
        let mut counts = DeliveryCounts::default();
        for pending in store.due_notifications(now, BATCH).await? {
            match self.send(&pending).await {
                Ok(()) => {
                    store.notification_sent(&self.actor, pending.id).await?;
                    counts.sent += 1;
                }
                Err(error) => {
                    let retry_at = now + self.backoff(pending.attempts);
                    tracing::warn!(notification = pending.id, alert = pending.alert_id, %error, %retry_at, "could not notify the DSL team; will retry");
                    store
                        .notification_failed(&self.actor, pending.id, &error, retry_at)
                        .await?;
                    counts.failed += 1;
                }
            }
        }
        Ok(counts)
    }

    /// Sends each school its weekly digest when its time (in the school's
    /// time zone) has come this week and it has not gone yet. Returns how
    /// many went; an error leaves the rest for the next pass.
    pub async fn send_digests(
        &self,
        store: &Store,
        now: DateTime<Utc>,
    ) -> Result<usize, MonitorError> {
        let Some(email) = &self.email else {
            return Ok(0);
        };
        let mut sent = 0;
        for school in store.schools().await? {
            let zone: chrono_tz::Tz = school.timezone.parse().unwrap_or(chrono_tz::Europe::London);
            let local = now.with_timezone(&zone);
            let due = (local.weekday().num_days_from_monday(), local.hour())
                >= (self.digest_day, self.digest_hour);
            let week = local.iso_week();
            let week = format!("{}-W{:02}", week.year(), week.week());
            if !due || store.digest_sent(school.id, &week).await? {
                continue;
            }
            let tally = store
                .alert_tally(school.id, now - chrono::Duration::days(7), now)
                .await?;
            let total: i64 = tally.iter().map(|t| t.alerts).sum();
            let mut body = format!(
                "Monitoring digest for {}, week {week}: {total} alert(s) in the last seven days.\n\n",
                school.name
            );
            if tally.is_empty() {
                body.push_str("No alerts were raised.\n");
            } else {
                body.push_str("grade  category         alerts  not yet read\n");
                for line in &tally {
                    body.push_str(&format!(
                        "{:>5}  {:<15}  {:>6}  {:>12}\n",
                        line.grade, line.category, line.alerts, line.unread
                    ));
                }
            }
            body.push_str(&format!(
                "\nOpen the alerts in sheepdog:\n{}/alerts\n\n\
                 This email deliberately holds no names and none of the text that was found.\n",
                self.console_url
            ));
            let mut message = Message::builder().from(email.from.clone()).subject(format!(
                "[sheepdog] weekly monitoring digest {week}: {total} alert(s)"
            ));
            for to in &email.to {
                message = message.to(to.clone());
            }
            let message = message
                .body(body)
                .map_err(|e| MonitorError::Delivery(format!("digest: {e}")))?;
            email
                .transport
                .send(message)
                .await
                .map_err(|e| MonitorError::Delivery(format!("digest email: {e}")))?;
            store
                .record_digest(&self.actor, school.id, &week, total)
                .await?;
            sent += 1;
        }
        Ok(sent)
    }

    /// Delivers every few seconds until `shutdown` completes.
    pub async fn run(self, store: Store, every: Duration, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut next_digest = Utc::now();
        let mut digest_failures = 0;
        loop {
            if Utc::now() >= next_digest {
                match self.send_digests(&store, Utc::now()).await {
                    Ok(_) => digest_failures = 0,
                    Err(error) => {
                        next_digest = Utc::now() + self.backoff(digest_failures);
                        digest_failures += 1;
                        tracing::warn!(%error, %next_digest, "could not send the weekly digest; will retry");
                    }
                }
                if let Err(error) = self.send_reminders(&store, Utc::now()).await {
                    tracing::warn!(%error, "could not send the governance reminders; will retry");
                }
            }
            match self.deliver_due(&store, Utc::now()).await {
                Ok(counts) if counts.sent + counts.failed > 0 => {
                    tracing::info!(
                        sent = counts.sent,
                        failed = counts.failed,
                        "DSL notifications"
                    );
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "cannot read the notification outbox"),
            }
            match self.deliver_request_notices(&store, Utc::now()).await {
                Ok(counts) if counts.sent + counts.failed > 0 => {
                    tracing::info!(
                        sent = counts.sent,
                        failed = counts.failed,
                        "unblock request notices to approvers"
                    );
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "cannot read the unblock request notices"),
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }

    /// Tells approvers of new unblock requests by email, each notice
    /// settled as sent or retried after the back-off. The email names the
    /// site's domain, the group and the time frame, and links to the
    /// queue; not the requester's reason. Without email, notices wait.
    pub async fn deliver_request_notices(
        &self,
        store: &Store,
        now: DateTime<Utc>,
    ) -> Result<DeliveryCounts, MonitorError> {
        let mut counts = DeliveryCounts::default();
        let Some(email) = &self.email else {
            return Ok(counts);
        };
        for notice in store.due_request_notices(now, BATCH).await? {
            let sent = async {
                let to: Mailbox = notice
                    .address
                    .parse()
                    .map_err(|e| format!("{}: {e}", notice.address))?;
                let body = format!(
                    "An unblock request waits for your decision.\n\n\
                     Reference: {}\nSite: {}\nGroup: {}\nFrom {} to {} (UTC)\n\n\
                     Decide in sheepdog:\n{}/requests\n",
                    notice.reference,
                    notice.site,
                    notice.policy_group,
                    notice.starts_at,
                    notice.ends_at,
                    self.console_url
                );
                let message = Message::builder()
                    .from(email.from.clone())
                    .to(to)
                    .subject(format!(
                        "[sheepdog] unblock request {} for {} waits for a decision",
                        notice.reference, notice.site
                    ))
                    .body(body)
                    .map_err(|e| e.to_string())?;
                email
                    .transport
                    .send(message)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
            .await;
            match sent {
                Ok(()) => {
                    store
                        .settle_request_notice(&self.actor, notice.id, Ok(()))
                        .await?;
                    counts.sent += 1;
                }
                Err(error) => {
                    let retry_at = now + self.backoff(notice.attempts);
                    tracing::warn!(notice = notice.id, request = %notice.reference, %error, %retry_at, "could not tell an approver of a request; will retry");
                    store
                        .settle_request_notice(&self.actor, notice.id, Err((&error, retry_at)))
                        .await?;
                    counts.failed += 1;
                }
            }
        }
        Ok(counts)
    }

    fn link(&self, alert_id: i64) -> String {
        format!("{}/alerts/{alert_id}", self.console_url)
    }

    async fn send(&self, pending: &PendingNotification) -> Result<(), String> {
        if let Some(email) = &self.email {
            self.send_email(email, pending).await?;
        }
        if let Some(webhook) = &self.webhook {
            self.call_webhook(webhook, pending).await?;
        }
        Ok(())
    }

    async fn send_email(&self, email: &Email, pending: &PendingNotification) -> Result<(), String> {
        let what = if pending.reason == "raised" {
            "An alert was raised to"
        } else {
            "A new alert at"
        };
        let body = format!(
            "{what} grade {grade} ({category}) needs the safeguarding team now.\n\n\
             Open it in sheepdog to see who and what:\n{link}\n\n\
             This email deliberately holds no names and none of the text that was found.\n",
            grade = pending.grade,
            category = pending.category,
            link = self.link(pending.alert_id),
        );
        let mut message = Message::builder().from(email.from.clone()).subject(format!(
            "[sheepdog] grade {} {} alert #{}",
            pending.grade, pending.category, pending.alert_id
        ));
        for to in &email.to {
            message = message.to(to.clone());
        }
        let message = message.body(body).map_err(|e| format!("email: {e}"))?;
        email
            .transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| format!("email: {e}"))
    }

    async fn call_webhook(
        &self,
        webhook: &Webhook,
        pending: &PendingNotification,
    ) -> Result<(), String> {
        let body = webhook_body(pending, &self.link(pending.alert_id));
        let signature = webhook.secret.as_deref().map(|key| sign(key, &body));
        let url = webhook.url.clone();
        tokio::task::spawn_blocking(move || {
            let mut request = ureq::post(&url)
                .timeout(EXCHANGE_TIMEOUT)
                .set("Content-Type", "application/json");
            if let Some(signature) = &signature {
                request = request.set("X-Sheepdog-Signature", signature);
            }
            request
                .send_string(&body)
                .map(|_| ())
                .map_err(|e| format!("webhook: {e}"))
        })
        .await
        .map_err(|e| format!("webhook: {e}"))?
    }
}

/// The webhook's JSON: no names, no text.
pub fn webhook_body(pending: &PendingNotification, link: &str) -> String {
    serde_json::json!({
        "alert_id": pending.alert_id,
        "school_id": pending.school_id,
        "category": pending.category,
        "grade": pending.grade,
        "reason": pending.reason,
        "link": link,
    })
    .to_string()
}

/// `sha256=HEX` of HMAC-SHA256 over `body` with `key`.
pub fn sign(key: &[u8], body: &str) -> String {
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(body.as_bytes());
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        }
        // HMAC takes keys of any length; this arm cannot be reached.
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_longest_wait() {
        let delivery = Delivery {
            email: None,
            webhook: None,
            console_url: String::new(),
            retry: chrono::Duration::seconds(60),
            retry_max: chrono::Duration::seconds(3600),
            digest_day: 0,
            digest_hour: 7,
            actor: Actor::system("test"),
        };
        let waits: Vec<i64> = (0..8).map(|a| delivery.backoff(a).num_seconds()).collect();
        assert_eq!(waits, vec![60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(delivery.backoff(i64::MAX).num_seconds(), 3600);
    }

    #[test]
    fn signatures_are_rfc_2104_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"Jefe", "what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
