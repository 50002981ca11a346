//! Delivery against real servers on loopback: an SMTP server (Python's
//! aiosmtpd) that requires STARTTLS with a throw-away certificate, and an
//! HTTP receiver for the webhook. The mail server is down first: the
//! notification is kept and retried, and goes out when the server is up.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::HeaderMap;
use chrono::{Datelike, Duration, Utc};
use sheepdog_config::NotifyConfig;
use sheepdog_monitor::delivery::sign;
use sheepdog_monitor::Delivery;
use sheepdog_store::{Actor, AlertPolicy, NewAlert, Store, StoreOptions};

/// aiosmtpd from Debian (scripts/test-packages) or, failing that, PyPI.
fn ensure_aiosmtpd() {
    let present = |python: &str| {
        Command::new(python)
            .args(["-c", "import aiosmtpd"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !present("python3") {
        let installed = Command::new("python3")
            .args(["-m", "pip", "install", "--user", "--quiet", "aiosmtpd"])
            .status()
            .unwrap();
        assert!(installed.success(), "cannot install aiosmtpd from PyPI");
        assert!(
            present("python3"),
            "aiosmtpd still missing after pip install"
        );
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct SmtpServer(Child);

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_smtp(port: u16, dir: &Path, outdir: &Path) -> SmtpServer {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp_server.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(port.to_string())
        .arg(dir.join("cert.pem"))
        .arg(dir.join("key.pem"))
        .arg(outdir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "the SMTP server did not start");
    SmtpServer(child)
}

type Received = Arc<Mutex<Vec<(Option<String>, String)>>>;

async fn start_webhook() -> (String, Received) {
    let received: Received = Arc::default();
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(
                |State(received): State<Received>, headers: HeaderMap, body: String| async move {
                    let signature = headers
                        .get("x-sheepdog-signature")
                        .map(|v| v.to_str().unwrap().to_string());
                    received.lock().unwrap().push((signature, body));
                    "ok"
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_reach_the_dsl_by_email_and_webhook_after_an_outage() {
    ensure_aiosmtpd();
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), certified.cert.pem()).unwrap();
    std::fs::write(
        dir.path().join("key.pem"),
        certified.signing_key.serialize_pem(),
    )
    .unwrap();
    std::fs::write(dir.path().join("hook.key"), "a throw-away key\n").unwrap();
    let outdir = dir.path().join("mail");
    std::fs::create_dir(&outdir).unwrap();

    let url = format!("sqlite://{}", dir.path().join("delivery.sqlite").display());
    let store = Store::open(&url, &StoreOptions::default()).await.unwrap();
    let actor = Actor::system("test");
    let school = store
        .create_school(&actor, "Larkmoor Primary", None, "Europe/London")
        .await
        .unwrap();
    let recorded = store
        .record_alert(
            &actor,
            school.id,
            &NewAlert {
                person_id: None,
                subject: "LIB-CHROMEBOOK-07".to_string(),
                device_id: None,
                device_name: Some("LIB-CHROMEBOOK-07".to_string()),
                address: Some("10.0.4.17".to_string()),
                category: "suicide".to_string(),
                grade: 5,
                matched_text: "k1ll mys3lf".to_string(),
                source: "proxy".to_string(),
                at: Utc::now(),
                event_ids: vec![1],
                context: serde_json::json!({}),
            },
            &AlertPolicy::default(),
        )
        .await
        .unwrap();
    assert!(recorded.notify());
    let alert_id = recorded.alert().id;

    let port = free_port();
    let (hook_url, received) = start_webhook().await;
    let delivery = Delivery::from_config(&NotifyConfig {
        console_url: "https://sheepdog.larkmoor.invalid/".to_string(),
        smtp_host: "127.0.0.1".to_string(),
        smtp_port: port,
        smtp_ca_file: dir.path().join("cert.pem"),
        from: "sheepdog@larkmoor.invalid".to_string(),
        dsl_emails: vec![
            "dsl@larkmoor.invalid".to_string(),
            "deputy@larkmoor.invalid".to_string(),
        ],
        webhook_url: hook_url,
        webhook_secret_file: dir.path().join("hook.key"),
        ..NotifyConfig::default()
    })
    .unwrap()
    .unwrap();

    // The mail server is down: nothing is lost, the retry is scheduled.
    let now = Utc::now();
    let counts = delivery.deliver_due(&store, now).await.unwrap();
    assert_eq!((counts.sent, counts.failed), (0, 1));
    assert!(received.lock().unwrap().is_empty());
    let waiting = store
        .due_notifications(now + Duration::hours(1), 10)
        .await
        .unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].attempts, 1);
    assert!(
        store.due_notifications(now, 10).await.unwrap().is_empty(),
        "not due again before its back-off"
    );

    // Up again: the next pass after the back-off delivers it, once.
    let _server = start_smtp(port, dir.path(), &outdir);
    let later = now + Duration::minutes(2);
    let counts = delivery.deliver_due(&store, later).await.unwrap();
    assert_eq!((counts.sent, counts.failed), (1, 0));
    assert_eq!(delivery.deliver_due(&store, later).await.unwrap().sent, 0);
    assert!(store
        .due_notifications(later + Duration::days(30), 10)
        .await
        .unwrap()
        .is_empty());

    let mail = std::fs::read_to_string(outdir.join("0.eml")).unwrap();
    assert!(mail.contains("X-Test-TLS: True"), "{mail}");
    assert!(
        mail.contains("X-Test-To: dsl@larkmoor.invalid,deputy@larkmoor.invalid"),
        "{mail}"
    );
    let link = format!("https://sheepdog.larkmoor.invalid/alerts/{alert_id}");
    assert!(mail.contains(&link), "{mail}");
    assert!(mail.contains("suicide"), "{mail}");
    assert!(
        !mail.contains("k1ll") && !mail.contains("CHROMEBOOK"),
        "{mail}"
    );
    assert_eq!(std::fs::read_dir(&outdir).unwrap().count(), 1);

    let calls = received.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    let (signature, body) = &calls[0];
    assert_eq!(
        signature.as_deref(),
        Some(sign(b"a throw-away key", body).as_str())
    );
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["alert_id"], alert_id);
    assert_eq!(body["grade"], 5);
    assert_eq!(body["link"], link.as_str());
    assert!(!body.to_string().contains("k1ll"));

    // The weekly digest: not before its hour (Monday 07:00 in London),
    // then once that week, with counts and a link, no text.
    let at: chrono::DateTime<Utc> = store
        .alert(alert_id)
        .await
        .unwrap()
        .first_at
        .parse()
        .unwrap();
    // The first Monday 09:00 in London after the alert, so that the
    // alert is inside the digest's seven days whatever day the test runs.
    let london = chrono_tz::Europe::London;
    let local = at.with_timezone(&london);
    let in_london = |date: chrono::NaiveDate, hour: u32, minute: u32| {
        use chrono::TimeZone as _;
        london
            .from_local_datetime(&date.and_hms_opt(hour, minute, 0).unwrap())
            .earliest()
            .unwrap()
            .with_timezone(&Utc)
    };
    let mut monday =
        local.date_naive() - Duration::days(i64::from(local.weekday().num_days_from_monday()));
    if in_london(monday, 9, 0) <= at {
        monday += Duration::days(7);
    }
    let early = in_london(monday, 6, 59);
    assert_eq!(delivery.send_digests(&store, early).await.unwrap(), 0);
    let due = in_london(monday, 9, 0);
    assert_eq!(delivery.send_digests(&store, due).await.unwrap(), 1);
    assert_eq!(delivery.send_digests(&store, due).await.unwrap(), 0);
    let digest = std::fs::read_to_string(outdir.join("1.eml")).unwrap();
    assert!(digest.contains("weekly monitoring digest"), "{digest}");
    assert!(digest.contains("1 alert(s)"), "{digest}");
    assert!(
        digest.contains("https://sheepdog.larkmoor.invalid/alerts"),
        "{digest}"
    );
    assert!(
        !digest.contains("k1ll") && !digest.contains("CHROMEBOOK"),
        "{digest}"
    );

    // The audit log says what happened to the notification.
    let actions: Vec<String> = store
        .audit_entries(None, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.entity == "notification")
        .map(|e| e.action)
        .collect();
    // Newest first.
    assert_eq!(actions, vec!["delivered", "delivery_failed", "owe"]);
}

#[test]
fn nothing_configured_is_no_delivery() {
    assert!(Delivery::from_config(&NotifyConfig::default())
        .unwrap()
        .is_none());
    let missing = Delivery::from_config(&NotifyConfig {
        webhook_url: "http://127.0.0.1:9/hook".to_string(),
        webhook_secret_file: "/nonexistent/sheepdog-hook.key".into(),
        ..NotifyConfig::default()
    });
    let error = missing.unwrap_err().to_string();
    assert!(error.contains("webhook_secret_file"), "{error}");
}

/// Issue 10: the weekly governance reminder goes out for an overdue
/// training record (and a policy due for review), once that week, naming
/// the member of staff but no pupil.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_go_out_for_overdue_training() {
    use sheepdog_store::governance::policies::PolicyEntry;
    use sheepdog_store::governance::training::{NewTraining, TrainingKind};
    use sheepdog_store::{ImportBatch, PersonDetails, PersonKind, StaffRole};

    ensure_aiosmtpd();
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), certified.cert.pem()).unwrap();
    std::fs::write(
        dir.path().join("key.pem"),
        certified.signing_key.serialize_pem(),
    )
    .unwrap();
    let outdir = dir.path().join("mail");
    std::fs::create_dir(&outdir).unwrap();
    let url = format!("sqlite://{}", dir.path().join("reminders.sqlite").display());
    let store = Store::open(&url, &StoreOptions::default()).await.unwrap();
    let actor = Actor::system("test");
    let school = store
        .create_school(&actor, "Larkmoor Primary", None, "Europe/London")
        .await
        .unwrap();
    let teacher = PersonDetails {
        kind: PersonKind::Staff,
        external_id: Some("ST07".to_string()),
        upn: None,
        given_name: "Orrin".to_string(),
        family_name: "Talbrook".to_string(),
        date_of_birth: None,
        year_group: None,
        class_name: None,
        email: None,
        roles: vec![StaffRole::Teacher],
        active: true,
    };
    store
        .import_people(
            &actor,
            school.id,
            &ImportBatch {
                people: vec![teacher],
                guardians: vec![],
            },
            false,
        )
        .await
        .unwrap();
    let teacher_id = store.people(school.id, None).await.unwrap()[0].id;
    let day = |text: &str| chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap();
    let now = Utc::now();
    let today = now.date_naive();
    // Induction on record; the yearly update ran out yesterday.
    for (kind, expires) in [
        (TrainingKind::Induction, None),
        (
            TrainingKind::OnlineSafetyUpdate,
            Some(today - Duration::days(1)),
        ),
    ] {
        store
            .record_training(
                &actor,
                school.id,
                &NewTraining {
                    person_id: teacher_id,
                    kind,
                    completed_on: today - Duration::days(400),
                    provider: "Local authority".to_string(),
                    evidence: None,
                    expires_on: expires,
                },
            )
            .await
            .unwrap();
    }
    store
        .save_policy(
            &actor,
            school.id,
            &PolicyEntry {
                title: "Online safety policy".to_string(),
                owner: "DSL".to_string(),
                approver: "Governing body".to_string(),
                written_on: day("2024-09-01"),
                last_reviewed_on: None,
                next_review_on: today + Duration::days(10),
                notes: None,
            },
        )
        .await
        .unwrap();

    let port = free_port();
    let _server = start_smtp(port, dir.path(), &outdir);
    let delivery = Delivery::from_config(&NotifyConfig {
        console_url: "https://sheepdog.larkmoor.invalid".to_string(),
        smtp_host: "127.0.0.1".to_string(),
        smtp_port: port,
        smtp_ca_file: dir.path().join("cert.pem"),
        from: "sheepdog@larkmoor.invalid".to_string(),
        dsl_emails: vec!["dsl@larkmoor.invalid".to_string()],
        ..NotifyConfig::default()
    })
    .unwrap()
    .unwrap();

    // Monday 09:00 of next week: after the digest hour.
    let days = 7 - i64::from(now.weekday().num_days_from_monday());
    let monday = (now + Duration::days(days)).date_naive();
    let early = monday.and_hms_opt(6, 0, 0).unwrap().and_utc();
    assert_eq!(delivery.send_reminders(&store, early).await.unwrap(), 0);
    let due = monday.and_hms_opt(9, 0, 0).unwrap().and_utc();
    assert_eq!(delivery.send_reminders(&store, due).await.unwrap(), 1);
    assert_eq!(delivery.send_reminders(&store, due).await.unwrap(), 0);

    let mail = std::fs::read_to_string(outdir.join("0.eml")).unwrap();
    assert!(mail.contains("X-Test-TLS: True"), "{mail}");
    assert!(mail.contains("governance reminders"), "{mail}");
    assert!(
        mail.contains("Orrin Talbrook: Yearly online safety update"),
        "{mail}"
    );
    assert!(mail.contains("Online safety policy"), "{mail}");
    assert!(
        mail.contains("https://sheepdog.larkmoor.invalid/governance"),
        "{mail}"
    );
    assert!(!mail.contains("Induction"), "{mail}");
    assert_eq!(std::fs::read_dir(&outdir).unwrap().count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvers_hear_of_a_request_by_email_after_an_outage() {
    use sheepdog_store::requests::{NewRequest, RequestCheck};
    use sheepdog_store::{AccountRole, StaffRole};
    ensure_aiosmtpd();
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), certified.cert.pem()).unwrap();
    std::fs::write(
        dir.path().join("key.pem"),
        certified.signing_key.serialize_pem(),
    )
    .unwrap();
    let outdir = dir.path().join("mail");
    std::fs::create_dir(&outdir).unwrap();
    let url = format!("sqlite://{}", dir.path().join("requests.sqlite").display());
    let store = Store::open(&url, &StoreOptions::default()).await.unwrap();
    let actor = Actor::system("test");
    let school = store
        .create_school(&actor, "Larkmoor Primary", None, "Europe/London")
        .await
        .unwrap();
    let mut accounts = Vec::new();
    for (name, role) in [
        ("teacher@larkmoor.invalid", StaffRole::Teacher),
        ("tech@larkmoor.invalid", StaffRole::Technician),
        ("office@larkmoor.invalid", StaffRole::Office),
    ] {
        accounts.push(
            store
                .create_account(
                    &actor,
                    name,
                    "Orlan Tesk",
                    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
                    &[AccountRole {
                        school_id: Some(school.id),
                        role,
                    }],
                )
                .await
                .unwrap(),
        );
    }
    let start = Utc::now();
    let request = store
        .request_unblock(
            &accounts[0],
            school.id,
            &NewRequest {
                target: "volcanoes.example.org/lesson/3".to_string(),
                policy_group: "ks2".to_string(),
                class_name: None,
                reason: "A private reason the email must not carry".to_string(),
                purpose: "Geography".to_string(),
                starts_at: start,
                ends_at: start + Duration::hours(1),
            },
            &RequestCheck::default(),
            Duration::hours(8),
        )
        .await
        .unwrap();

    let port = free_port();
    let delivery = Delivery::from_config(&NotifyConfig {
        console_url: "https://sheepdog.larkmoor.invalid".to_string(),
        smtp_host: "127.0.0.1".to_string(),
        smtp_port: port,
        smtp_ca_file: dir.path().join("cert.pem"),
        from: "sheepdog@larkmoor.invalid".to_string(),
        dsl_emails: vec!["dsl@larkmoor.invalid".to_string()],
        ..NotifyConfig::default()
    })
    .unwrap()
    .unwrap();
    // The request was stored whatever the mail server does; it is down.
    let now = Utc::now();
    let counts = delivery.deliver_request_notices(&store, now).await.unwrap();
    assert_eq!((counts.sent, counts.failed), (0, 1));
    assert!(store.due_request_notices(now, 10).await.unwrap().is_empty());

    let _server = start_smtp(port, dir.path(), &outdir);
    let later = now + Duration::minutes(2);
    let counts = delivery
        .deliver_request_notices(&store, later)
        .await
        .unwrap();
    assert_eq!((counts.sent, counts.failed), (1, 0));
    assert_eq!(
        delivery
            .deliver_request_notices(&store, later)
            .await
            .unwrap()
            .sent,
        0
    );
    let mail = std::fs::read_to_string(outdir.join("0.eml")).unwrap();
    assert!(mail.contains("X-Test-TLS: True"), "{mail}");
    // Only the approver, not the requester nor the office.
    assert!(
        mail.contains("X-Test-To: tech@larkmoor.invalid\n")
            || mail.contains("X-Test-To: tech@larkmoor.invalid\r\n"),
        "{mail}"
    );
    assert!(mail.contains(&request.reference), "{mail}");
    assert!(mail.contains("volcanoes.example.org"), "{mail}");
    assert!(
        mail.contains("https://sheepdog.larkmoor.invalid/requests"),
        "{mail}"
    );
    assert!(
        !mail.contains("private reason") && !mail.contains("/lesson/3"),
        "{mail}"
    );
    assert_eq!(std::fs::read_dir(&outdir).unwrap().count(), 1);
}
