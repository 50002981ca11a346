//! The weekly governance reminder (issue 10): overdue training (G4),
//! policies due for review (G6) and acceptable use agreements to sign or
//! renew (G2), sent by email to the `[notify]` recipients at the digest's
//! hour, once per school and week, and only when something is due (a
//! week with nothing due is noted without an email).
//!
//! It names staff whose training is overdue (they are who must act) and
//! policies by title; agreements are counted by audience, so no pupil's
//! name leaves the console by email.

use std::fmt::Write as _;

use chrono::{DateTime, Datelike, Timelike, Utc};
use lettre::{AsyncTransport, Message};
use sheepdog_store::governance::GovernanceDue;
use sheepdog_store::Store;

use super::Delivery;
use crate::MonitorError;

/// The email body for one school's reminder.
pub fn reminder_body(school: &str, due: &GovernanceDue, console_url: &str) -> String {
    let mut body = format!("Governance reminders for {school}.\n");
    if !due.overdue_training.is_empty() {
        let _ = writeln!(body, "\nTraining overdue ({}):", due.overdue_training.len());
        for item in &due.overdue_training {
            let _ = writeln!(body, "- {}", item.describe());
        }
    }
    if !due.policies_due.is_empty() {
        let _ = writeln!(
            body,
            "\nPolicies due for review ({}):",
            due.policies_due.len()
        );
        for policy in &due.policies_due {
            let _ = writeln!(
                body,
                "- {}: review due {} (owner {}, approved by {})",
                policy.title, policy.next_review_on, policy.owner, policy.approver
            );
        }
    }
    if !due.agreements.is_empty() {
        body.push_str("\nAcceptable use agreements to sign or renew:\n");
        for (audience, count) in &due.agreements {
            let _ = writeln!(body, "- {}: {count}", audience.title());
        }
    }
    let _ = write!(
        body,
        "\nSee the details in sheepdog:\n{console_url}/governance\n"
    );
    body
}

impl Delivery {
    /// Sends each school its reminder when the week's digest hour has come
    /// and something is due. Returns how many went.
    pub async fn send_reminders(
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
            let due_now = (local.weekday().num_days_from_monday(), local.hour())
                >= (self.digest_day, self.digest_hour);
            let week = local.iso_week();
            let period = format!("{}-W{:02}", week.year(), week.week());
            if !due_now || store.reminder_sent(school.id, &period).await? {
                continue;
            }
            let due = store.governance_due(school.id, now).await?;
            if due.is_empty() {
                // Noted, so the week is not worked out again every pass.
                store
                    .record_reminder(&self.actor, school.id, &period, "nothing due; no email")
                    .await?;
                continue;
            }
            let summary = format!(
                "{} training overdue, {} policies due, {} agreements to sign",
                due.overdue_training.len(),
                due.policies_due.len(),
                due.agreements.iter().map(|(_, n)| n).sum::<i64>()
            );
            let mut message = Message::builder().from(email.from.clone()).subject(format!(
                "[sheepdog] governance reminders {period}: {summary}"
            ));
            for to in &email.to {
                message = message.to(to.clone());
            }
            let message = message
                .body(reminder_body(&school.name, &due, &self.console_url))
                .map_err(|e| MonitorError::Delivery(format!("reminder: {e}")))?;
            email
                .transport
                .send(message)
                .await
                .map_err(|e| MonitorError::Delivery(format!("reminder email: {e}")))?;
            store
                .record_reminder(&self.actor, school.id, &period, &summary)
                .await?;
            sent += 1;
        }
        Ok(sent)
    }
}
