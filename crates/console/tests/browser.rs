//! End to end in a real headless Chromium, driven over WebDriver by
//! chromedriver: a DSL of a synthetic school enrols in two-factor
//! authentication, signs out, signs in again with password and TOTP code,
//! opens the dashboard and changes its time range, searches the filtering
//! log, exports the result as CSV, and has a search with bad input refused
//! field by field with what was typed kept.
//!
//! Screenshots of each step are kept under
//! `$CARGO_TARGET_DIR/browser-artifacts/` (or `target/browser-artifacts/`);
//! the test prints the path. Chromium and chromedriver come from Debian
//! (`chromium`, `chromium-driver`; `scripts/test` installs them). Without
//! them the test fails, unless `SHEEPDOG_TEST_BROWSER=skip` is set.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{fill, press, submit};

use std::net::SocketAddr;
use std::path::Path;

use fantoccini::{Client, Locator};
use sheepdog_console::{ConsoleSettings, ConsoleState};
use sheepdog_roster::synthetic::SchoolSpec;
use sheepdog_store::{
    AccountRole, Actor, DecisionEvent, EventSource, PersonKind, StaffRole, Store, StoreOptions,
};
use totp_rs::{Algorithm, TOTP};

const USERNAME: &str = "dsl@fernhallow.invalid";
const PASSWORD: &str = "umber kettle lantern orchard";
/// Blocked visits to the gambling site seeded into the log.
const BLOCKED_BETS: usize = 12;

/// A synthetic school with its pupils, a DSL account and a day of decisions.
async fn school(dir: &Path) -> (Store, usize) {
    let url = format!("sqlite://{}", dir.join("console.sqlite").display());
    let store = Store::open(&url, &StoreOptions::default()).await.unwrap();
    let actor = Actor::command_line("browser test");
    let school = store
        .create_school(&actor, "Fernhallow Primary (test)", None, "Europe/London")
        .await
        .unwrap();
    let roster = SchoolSpec {
        pupils_per_class: 4,
        ..SchoolSpec::default()
    }
    .roster();
    let pupils = sheepdog_roster::parse_bytes(
        roster.pupils_csv.as_bytes(),
        Path::new("pupils.csv"),
        None,
        chrono::Local::now().date_naive(),
    )
    .unwrap();
    assert!(pupils.is_clean(), "{:?}", pupils.problems);
    store
        .import_people(&actor, school.id, &pupils.batch, false)
        .await
        .unwrap();
    let pupils: Vec<i64> = store
        .people(school.id, Some(PersonKind::Pupil))
        .await
        .unwrap()
        .iter()
        .map(|p| p.id)
        .collect();
    let hash = sheepdog_console::password::hash(PASSWORD).unwrap();
    store
        .create_account(
            &actor,
            USERNAME,
            "Test DSL",
            &hash,
            &[AccountRole {
                school_id: Some(school.id),
                role: StaffRole::Dsl,
            }],
        )
        .await
        .unwrap();
    let now = chrono::Utc::now();
    let events: Vec<DecisionEvent> = (0..200)
        .map(|i: usize| {
            let bet = i < BLOCKED_BETS;
            DecisionEvent {
                at: now - chrono::Duration::minutes(i64::try_from(i).unwrap() * 5 + 1),
                source: if i.is_multiple_of(2) {
                    EventSource::Dns
                } else {
                    EventSource::Proxy
                },
                client: format!("10.0.5.{}", 11 + i % 8),
                device_id: None,
                device_name: Some(format!("Y5-CHROMEBOOK-{:02}", 1 + i % 8)),
                person_id: Some(pupils[i % pupils.len()]),
                group: Some("Year 5".to_string()),
                target: if bet {
                    format!("www{}.bet.example", i % 3)
                } else if i.is_multiple_of(7) {
                    "chat.example".to_string()
                } else {
                    "https://learning.example/maths".to_string()
                },
                query_type: Some("A".to_string()),
                action: if bet || i.is_multiple_of(7) {
                    "block"
                } else {
                    "allow"
                }
                .to_string(),
                illegal: false,
                category: Some(
                    if bet {
                        "gambling"
                    } else if i.is_multiple_of(7) {
                        "chat"
                    } else {
                        "education"
                    }
                    .to_string(),
                ),
                list: Some("ut1".to_string()),
                rule: None,
                upstream_ms: Some(9),
                search_term: None,
                school_id: None,
            }
        })
        .collect();
    store.insert_events(&events).await.unwrap();
    let blocked = events.iter().filter(|e| e.action == "block").count();
    (store, blocked)
}

fn code_at(secret: &str, time: u64) -> String {
    let bytes = data_encoding::BASE32_NOPAD
        .decode(secret.as_bytes())
        .unwrap();
    TOTP::new(
        Algorithm::SHA1,
        6,
        1,
        30,
        bytes,
        Some("sheepdog".to_string()),
        USERNAME.to_string(),
    )
    .unwrap()
    .generate(time)
}

async fn path(client: &Client) -> String {
    client.current_url().await.unwrap().path().to_string()
}

async fn sign_in_with_password(client: &Client, base: &str) {
    client.goto(&format!("{base}/sign-in")).await.unwrap();
    fill(client, "#username", USERNAME).await;
    fill(client, "#password", PASSWORD).await;
    submit(client, "form[action='/sign-in']").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dsl_signs_in_with_totp_searches_the_log_and_exports_it() {
    let dir = tempfile::tempdir().unwrap();
    let (store, blocked) = school(dir.path()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let console: SocketAddr = listener.local_addr().unwrap();
    let base = format!("http://{console}");
    let state = ConsoleState::new(store.clone(), ConsoleSettings::default())
        .with_evidence_key(sheepdog_store::incidents::EvidenceKey::generate().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(sheepdog_console::serve(listener, state, async {
        let _ = stopped.await;
    }));

    let Some(common::Browser {
        client,
        driver: _driver,
        artefacts,
    }) = common::start().await
    else {
        return;
    };

    // First sign-in: the DSL's role requires two-factor authentication,
    // so the account enrols with a code from the key the page shows.
    sign_in_with_password(&client, &base).await;
    assert_eq!(path(&client).await, "/two-factor/enrol");
    common::screenshot(&client, &artefacts, "01-enrol").await;
    let secret: String = client
        .find(Locator::Css(".secret strong"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .split_whitespace()
        .collect();
    let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap();
    fill(&client, "#code", &code_at(&secret, now)).await;
    submit(&client, "form[action='/two-factor/enrol']").await;
    let recovery = client
        .find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(recovery.contains("recovery codes"), "{recovery}");
    common::screenshot(&client, &artefacts, "02-recovery-codes").await;
    press(&client, Locator::LinkText("Continue to the console")).await;
    assert_eq!(path(&client).await, "/");
    submit(&client, "form[action='/sign-out']").await;

    // Second sign-in: password, then a code. The enrolment used this time
    // step's code and a code works once, so the next step's is given (the
    // console allows one step of clock drift).
    sign_in_with_password(&client, &base).await;
    assert_eq!(path(&client).await, "/two-factor");
    let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap();
    fill(&client, "#code", &code_at(&secret, now + 30)).await;
    submit(&client, "form[action='/two-factor']").await;
    assert_eq!(path(&client).await, "/");

    // The dashboard: four charts with text alternatives, and a time range
    // chosen without JavaScript.
    client.goto(&format!("{base}/dashboard")).await.unwrap();
    let charts = client
        .find_all(Locator::Css("svg[role='img']"))
        .await
        .unwrap();
    assert_eq!(charts.len(), 4);
    let described = client.find_all(Locator::Css("svg > desc")).await.unwrap();
    assert_eq!(described.len(), 4);
    let page = client
        .find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Blocked and allowed over time"), "{page}");
    let summary = client
        .execute(
            "return document.querySelector('svg > desc').textContent",
            vec![],
        )
        .await
        .unwrap();
    let summary = summary.as_str().unwrap();
    assert!(
        summary.starts_with(&format!("{blocked} blocked and {} allowed", 200 - blocked)),
        "{summary}"
    );
    common::screenshot(&client, &artefacts, "03-dashboard").await;
    client
        .find(Locator::Css("#range"))
        .await
        .unwrap()
        .select_by_value("7d")
        .await
        .unwrap();
    submit(&client, "form[action='/dashboard']").await;
    assert!(client
        .current_url()
        .await
        .unwrap()
        .as_str()
        .contains("range=7d"));
    let chosen = client
        .find(Locator::Css("#range"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(chosen.as_deref(), Some("7d"));

    // A log search by domain and action.
    client.goto(&format!("{base}/logs")).await.unwrap();
    fill(&client, "#domain", "bet.example").await;
    client
        .find(Locator::Css("#action"))
        .await
        .unwrap()
        .select_by_value("block")
        .await
        .unwrap();
    submit(&client, "form.search").await;
    let rows = client
        .find_all(Locator::Css("main table tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), BLOCKED_BETS);
    for row in &rows {
        let text = row.text().await.unwrap();
        assert!(
            text.contains("bet.example") && text.contains("block"),
            "{text}"
        );
    }
    common::screenshot(&client, &artefacts, "04-log-search").await;

    // Its CSV export, fetched by the signed-in browser from the page's link.
    let link = client
        .find(Locator::LinkText("Export every match as CSV"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    let csv = client
        .execute_async(
            "const done = arguments[arguments.length - 1];\
             fetch(arguments[0]).then(r => r.text().then(t => done([r.status, r.headers.get('content-type'), t])));",
            vec![serde_json::json!(link)],
        )
        .await
        .unwrap();
    assert_eq!(csv[0], 200);
    assert!(csv[1].as_str().unwrap().starts_with("text/csv"));
    let text = csv[2].as_str().unwrap();
    std::fs::write(artefacts.join("05-log-export.csv"), text).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let target = headers.iter().position(|h| h == "target").unwrap();
    let action = headers.iter().position(|h| h == "action").unwrap();
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(records.len(), BLOCKED_BETS);
    assert!(records
        .iter()
        .all(|r| r[target].ends_with(".bet.example") && &r[action] == "block"));

    // Bad input: each field says what is wrong and keeps what was typed.
    client.goto(&format!("{base}/logs")).await.unwrap();
    fill(&client, "#person", "Pella V").await;
    fill(&client, "#address", "10.0.5.300").await;
    fill(&client, "#from", "last tuesday").await;
    fill(&client, "#term", "frogs").await;
    submit(&client, "form.search").await;
    for field in ["person", "address", "from"] {
        let message = client
            .find(Locator::Css(&format!("#{field}-error")))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(message.starts_with("Error:"), "{field}: {message}");
    }
    for (field, typed) in [
        ("person", "Pella V"),
        ("address", "10.0.5.300"),
        ("from", "last tuesday"),
        ("term", "frogs"),
    ] {
        let value = client
            .find(Locator::Css(&format!("#{field}")))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap();
        assert_eq!(value.as_deref(), Some(typed), "{field}");
    }
    assert!(client.find(Locator::Css("main table")).await.is_err());
    common::screenshot(&client, &artefacts, "06-log-search-refused").await;

    client.close().await.unwrap();
    let searches = store
        .audit_entries(Some("decision_events"), 10)
        .await
        .unwrap();
    // Opening the page (an unfiltered search) twice, the search and the
    // export; the refused search read nothing.
    assert_eq!(searches.len(), 4, "{searches:?}");
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
