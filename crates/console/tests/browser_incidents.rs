//! Incidents end to end in a real headless Chromium over WebDriver, as in
//! `browser.rs`: a teacher logs a concern through the form and uses the
//! hide-screen button on the way; the DSL walks the internal route of the
//! flowchart (the first question, the record of review by two senior
//! members of staff) and closes the incident; then tries to attach an image
//! to an incident marked as suspected child sexual abuse imagery and sees
//! the refusal with its reason.
//!
//! Screenshots go to `$CARGO_TARGET_DIR/browser-artifacts/incidents-*.png`.
//! Needs Debian's `chromium` and `chromium-driver`, unless
//! `SHEEPDOG_TEST_BROWSER=skip` is set.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{fill, press, submit};

use std::net::SocketAddr;
use std::path::Path;

use fantoccini::{Client, Locator};
use sheepdog_console::{ConsoleSettings, ConsoleState};
use sheepdog_store::incidents::{
    About, EvidenceKey, IllegalKind, Involved, InvolvedRole, NewIncident, RetentionPolicy, Urgency,
};
use sheepdog_store::{
    AccountRole, Actor, ImportBatch, PersonDetails, PersonKind, StaffRole, Store, StoreOptions,
};

const PASSWORD: &str = "umber kettle lantern orchard";
const TEACHER: &str = "teacher@fernhallow.invalid";
const DSL: &str = "dsl@fernhallow.invalid";
const HEAD: &str = "head@fernhallow.invalid";

struct School {
    store: Store,
    school: i64,
    pupil: i64,
    dsl: sheepdog_store::Account,
}

/// A school with one synthetic pupil, a teacher, a DSL and a headteacher.
async fn school(dir: &Path) -> School {
    let url = format!("sqlite://{}", dir.join("console.sqlite").display());
    let store = Store::open(&url, &StoreOptions::default()).await.unwrap();
    let actor = Actor::command_line("browser test");
    let school = store
        .create_school(&actor, "Fernhallow Primary (test)", None, "Europe/London")
        .await
        .unwrap()
        .id;
    store
        .import_people(
            &actor,
            school,
            &ImportBatch {
                people: vec![PersonDetails {
                    kind: PersonKind::Pupil,
                    external_id: None,
                    upn: Some("A123456789012".to_string()),
                    given_name: "Pella".to_string(),
                    family_name: "Varrowby".to_string(),
                    date_of_birth: Some("2016-05-06".to_string()),
                    year_group: Some("4".to_string()),
                    class_name: Some("4K".to_string()),
                    email: None,
                    roles: vec![],
                    active: true,
                }],
                guardians: vec![],
            },
            false,
        )
        .await
        .unwrap();
    let pupil = store.people(school, Some(PersonKind::Pupil)).await.unwrap()[0].id;
    let hash = sheepdog_console::password::hash(PASSWORD).unwrap();
    let mut accounts = Vec::new();
    for (username, name, role) in [
        (TEACHER, "Test Teacher", StaffRole::Teacher),
        (DSL, "Test DSL", StaffRole::Dsl),
        (HEAD, "Test Head", StaffRole::Headteacher),
    ] {
        accounts.push(
            store
                .create_account(
                    &actor,
                    username,
                    name,
                    &hash,
                    &[AccountRole {
                        school_id: Some(school),
                        role,
                    }],
                )
                .await
                .unwrap(),
        );
    }
    School {
        store,
        school,
        pupil,
        dsl: accounts.swap_remove(1),
    }
}

async fn choose(client: &Client, css: &str, value: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap()
        .select_by_value(value)
        .await
        .unwrap();
}

async fn main_text(client: &Client) -> String {
    client
        .find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn sign_in(client: &Client, base: &str, username: &str) {
    client.goto(&format!("{base}/sign-in")).await.unwrap();
    fill(client, "#username", username).await;
    fill(client, "#password", PASSWORD).await;
    submit(client, "form[action='/sign-in']").await;
    assert_eq!(client.current_url().await.unwrap().path(), "/");
}

async fn shown(client: &Client, css: &str) -> bool {
    client
        .execute(
            "const e = document.querySelector(arguments[0]); \
             return !!e && getComputedStyle(e).display !== 'none';",
            vec![serde_json::json!(css)],
        )
        .await
        .unwrap()
        .as_bool()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_log_a_concern_hide_the_screen_and_the_dsl_follows_the_flowchart() {
    let dir = tempfile::tempdir().unwrap();
    let s = school(dir.path()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let console: SocketAddr = listener.local_addr().unwrap();
    let base = format!("http://{console}");
    // Two-factor sign-in is covered by browser.rs; here it is off so the
    // test can move between three accounts.
    let settings = ConsoleSettings {
        two_factor_roles: Vec::new(),
        ..ConsoleSettings::default()
    };
    let state = ConsoleState::new(s.store.clone(), settings)
        .with_evidence_key(EvidenceKey::generate().unwrap());
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

    // A teacher starts a concern from the navigation.
    sign_in(&client, &base, TEACHER).await;
    press(&client, Locator::LinkText("Log a concern")).await;
    assert_eq!(client.current_url().await.unwrap().path(), "/incidents/new");
    choose(&client, "#about", "pupil").await;
    choose(&client, "#pupil", &s.pupil.to_string()).await;
    choose(&client, "#category", "contact").await;
    fill(&client, "#summary", "Messages from an unknown adult").await;
    fill(
        &client,
        "#description",
        "Pella showed me messages asking to meet after school.",
    )
    .await;
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1))
        .format("%Y-%m-%d 10:30")
        .to_string();
    fill(&client, "#occurred", &yesterday).await;
    fill(&client, "#device", "HALL-PC-01").await;
    choose(&client, "#urgency", "immediate").await;
    common::screenshot(&client, &artefacts, "incidents-01-concern-form").await;

    // Someone walks past: the page turns into a timetable at once, with
    // nothing of the concern visible, and comes back as it was.
    client
        .find(Locator::Id("hide-screen"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(shown(&client, "#neutral").await);
    assert!(!shown(&client, "form.concern").await);
    assert!(!shown(&client, "header").await);
    assert_eq!(client.title().await.unwrap(), "Timetable");
    let visible = client
        .find(Locator::Css("body"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!visible.contains("unknown adult"), "{visible}");
    assert!(!visible.contains("concern"), "{visible}");
    common::screenshot(&client, &artefacts, "incidents-02-hidden").await;
    client
        .find(Locator::Id("unhide"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(shown(&client, "form.concern").await);
    let kept = client
        .find(Locator::Css("#summary"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some("Messages from an unknown adult"));

    // Logged: a reference back, and the teacher cannot open the record.
    submit(&client, "form.concern").await;
    let receipt = main_text(&client).await;
    assert!(receipt.contains("Concern logged"), "{receipt}");
    let reference = client
        .find(Locator::Id("reference"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(reference.starts_with("INC-"), "{reference}");
    common::screenshot(&client, &artefacts, "incidents-03-receipt").await;
    client.goto(&format!("{base}/incidents/1")).await.unwrap();
    assert!(main_text(&client).await.contains("Not allowed"));
    client.goto(&format!("{base}/")).await.unwrap();
    submit(&client, "form[action='/sign-out']").await;

    // The DSL finds it, recorded late, and answers the first question "no".
    sign_in(&client, &base, DSL).await;
    press(&client, Locator::LinkText("Incidents")).await;
    press(&client, Locator::LinkText(&reference)).await;
    let page = main_text(&client).await;
    assert!(page.contains("Recorded late"), "{page}");
    assert!(page.contains("Is illegal material or activity suspected?"));
    client
        .find(Locator::Id("answer-no"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    submit(&client, "form.first-question").await;
    let page = main_text(&client).await;
    assert!(page.contains("Internal procedure"), "{page}");

    // The record of review: two distinct senior members of staff.
    let head = s
        .store
        .senior_reviewers(s.school)
        .await
        .unwrap()
        .into_iter()
        .find(|(_, _, role)| *role == StaffRole::Headteacher)
        .unwrap()
        .0;
    choose(&client, "#reviewer_1", &s.dsl.id.to_string()).await;
    choose(&client, "#reviewer_2", &head.to_string()).await;
    fill(&client, "#computer", "OFFICE-PC-02").await;
    fill(
        &client,
        "#items",
        "https://chat.example/room/4 Messages from an adult asking to meet",
    )
    .await;
    fill(
        &client,
        "#conclusion",
        "Contact by an adult; no illegal content seen",
    )
    .await;
    choose(&client, "#action", "local_authority").await;
    common::screenshot(&client, &artefacts, "incidents-04-review-form").await;
    submit(&client, "form.review").await;
    let page = main_text(&client).await;
    assert!(
        page.contains("Test DSL (dsl) and Test Head (headteacher)"),
        "{page}"
    );
    assert!(page.contains("OFFICE-PC-02"));
    common::screenshot(&client, &artefacts, "incidents-05-reviewed").await;

    // Closed with the debrief.
    fill(&client, "#outcome", "Referred to children's social care").await;
    fill(&client, "#debrief", "Pupil and parents supported").await;
    submit(&client, "form.close").await;
    let status = client
        .find(Locator::Id("status"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(status.starts_with("closed"), "{status}");

    // Suspected child sexual abuse imagery: the page warns, and an image
    // chosen in the upload form is refused with the reason.
    let receipt = s
        .store
        .log_concern(
            &s.dsl,
            s.school,
            &NewIncident {
                category: "content".to_string(),
                summary: "Indecent image reported on a tablet".to_string(),
                description: "Reported by a pupil; the tablet is locked in the office.".to_string(),
                occurred_at: chrono::Utc::now(),
                device: Some("Y4-TABLET-03".to_string()),
                location: None,
                urgency: Urgency::Immediate,
                about: About::Pupil,
                people: vec![Involved {
                    person_id: Some(s.pupil),
                    description: None,
                    role: InvolvedRole::Involved,
                }],
                alert_id: None,
                event_id: None,
            },
            &RetentionPolicy::default(),
        )
        .await
        .unwrap();
    s.store
        .decide_path(
            &s.dsl,
            receipt.id,
            Some(IllegalKind::ChildSexualAbuseImages),
            None,
        )
        .await
        .unwrap();
    client
        .goto(&format!("{base}/incidents/{}", receipt.id))
        .await
        .unwrap();
    assert!(main_text(&client)
        .await
        .contains("No images may be attached"));
    let image = dir.path().join("photo.png");
    std::fs::write(&image, b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01").unwrap();
    client
        .find(Locator::Css("#file"))
        .await
        .unwrap()
        .send_keys(image.to_str().unwrap())
        .await
        .unwrap();
    submit(&client, "form.evidence").await;
    let problem = client
        .find(Locator::Id("problem"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(problem.contains("no images may be uploaded"), "{problem}");
    common::screenshot(&client, &artefacts, "incidents-06-image-refused").await;

    client.close().await.unwrap();
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
