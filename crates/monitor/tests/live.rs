//! Live monitoring against a real SQLite store: events written as the
//! event writer writes them become alerts linked to the person, device and
//! address, with the surrounding events; repeats merge, restarts do not
//! raise alerts twice.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use chrono::{Duration, Utc};
use sheepdog_monitor::{LiveMonitor, LiveOptions, Matcher};
use sheepdog_store::{
    Actor, AlertFilter, DecisionEvent, EventSource, ImportBatch, PageSeen, PersonDetails,
    PersonKind, Store, StoreOptions,
};

fn event(
    minutes_ago: i64,
    person: Option<i64>,
    target: &str,
    search: Option<&str>,
) -> DecisionEvent {
    DecisionEvent {
        at: Utc::now() - Duration::minutes(minutes_ago),
        source: if search.is_some() {
            EventSource::Proxy
        } else {
            EventSource::Dns
        },
        client: "10.0.4.17".to_string(),
        device_id: None,
        device_name: Some("LIB-CHROMEBOOK-07".to_string()),
        person_id: person,
        group: Some("year-4".to_string()),
        target: target.to_string(),
        query_type: search.is_none().then(|| "A".to_string()),
        action: "allow".to_string(),
        illegal: false,
        category: None,
        list: None,
        rule: None,
        upstream_ms: Some(3),
        search_term: search.map(str::to_string),
        school_id: None,
    }
}

async fn setup(dir: &std::path::Path) -> (Store, i64, i64) {
    let url = format!("sqlite://{}", dir.join("live.sqlite").display());
    let store = Store::open(&url, &StoreOptions::default()).await.unwrap();
    let actor = Actor::system("test");
    let school = store
        .create_school(&actor, "Larkmoor Primary", None, "Europe/London")
        .await
        .unwrap();
    let batch = ImportBatch {
        people: vec![PersonDetails {
            kind: PersonKind::Pupil,
            external_id: None,
            upn: Some("A123456789012".to_string()),
            given_name: "Brisa".to_string(),
            family_name: "Quorbin".to_string(),
            date_of_birth: Some("2017-03-04".to_string()),
            year_group: Some("4".to_string()),
            class_name: Some("4K".to_string()),
            email: None,
            roles: vec![],
            active: true,
        }],
        guardians: vec![],
    };
    store
        .import_people(&actor, school.id, &batch, false)
        .await
        .unwrap();
    let pupil = store.people(school.id, None).await.unwrap()[0].id;
    (store, school.id, pupil)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_events_become_linked_deduplicated_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let (store, school, pupil) = setup(dir.path()).await;
    let matcher = Arc::new(Matcher::shipped().unwrap());
    // Already there when monitoring starts, and within the look-back.
    store
        .insert_events(&[
            event(5, Some(pupil), "www.bbc.co.uk", None),
            event(
                4,
                Some(pupil),
                "www.google.com/search?q=weather",
                Some("weather tomorrow"),
            ),
        ])
        .await
        .unwrap();
    let mut live = LiveMonitor::start(store.clone(), matcher.clone(), LiveOptions::default())
        .await
        .unwrap();
    store
        .insert_events(&[
            event(
                3,
                Some(pupil),
                "www.google.com/search?q=how+to+kill+myself",
                Some("how to kill myself"),
            ),
            // One look-up, three DNS events: read once.
            event(2, None, "buy-weed-online.example", None),
            event(2, None, "buy-weed-online.example", None),
            event(2, None, "buy-weed-online.example", None),
        ])
        .await
        .unwrap();
    let counts = live.scan_new().await.unwrap();
    assert_eq!(counts.events, 6);
    assert_eq!(counts.repeats, 2);
    assert_eq!(counts.created, 2, "{counts:?}");

    let alerts = store.alerts(school, &AlertFilter::default()).await.unwrap();
    let suicide = alerts.iter().find(|a| a.category == "suicide").unwrap();
    assert_eq!(suicide.person_id, Some(pupil));
    assert_eq!(suicide.subject, format!("person:{pupil}"));
    assert_eq!(suicide.device_name.as_deref(), Some("LIB-CHROMEBOOK-07"));
    assert_eq!(suicide.address.as_deref(), Some("10.0.4.17"));
    assert_eq!(suicide.source, "proxy");
    // A primary-age pupil: one grade above the term's severity.
    assert_eq!(suicide.context["age_group"], "ks2");
    assert!(suicide.grade >= 4, "{suicide:?}");
    assert_eq!(suicide.context["group"], "year-4");
    let surrounding = suicide.context["surrounding"].as_array().unwrap();
    assert!(
        surrounding.iter().any(|e| e["target"] == "www.bbc.co.uk"),
        "{surrounding:?}"
    );
    let drugs = alerts.iter().find(|a| a.category == "drugs").unwrap();
    assert_eq!(drugs.person_id, None);
    assert_eq!(drugs.subject, "LIB-CHROMEBOOK-07");
    assert_eq!(drugs.source, "dns");

    // Nothing new: nothing happens.
    assert_eq!(live.scan_new().await.unwrap().events, 0);

    // The same person again in the same category: merged, not a new alert.
    store
        .insert_events(&[event(
            1,
            Some(pupil),
            "search.example/?q=suicide+methods",
            Some("suicide methods"),
        )])
        .await
        .unwrap();
    let counts = live.scan_new().await.unwrap();
    assert_eq!((counts.created, counts.merged), (0, 1), "{counts:?}");
    let merged = store.alert(suicide.id).await.unwrap();
    assert_eq!(merged.occurrences, 2);

    // A restart reads the last hour again, and raises nothing twice.
    let before = store.alerts(school, &AlertFilter::default()).await.unwrap();
    let mut restarted = LiveMonitor::start(store.clone(), matcher, LiveOptions::default())
        .await
        .unwrap();
    let counts = restarted.scan_new().await.unwrap();
    assert_eq!(counts.created, 0, "{counts:?}");
    assert!(counts.duplicates > 0, "{counts:?}");
    let after = store.alerts(school, &AlertFilter::default()).await.unwrap();
    assert_eq!(
        before
            .iter()
            .map(|a| (a.id, a.occurrences))
            .collect::<Vec<_>>(),
        after
            .iter()
            .map(|a| (a.id, a.occurrences))
            .collect::<Vec<_>>()
    );
}

/// The live monitor's loop running on `store`, polling every `poll`,
/// reading `pages` when given; send on the first value to stop it, and
/// the second gives what it did.
async fn running(
    store: &Store,
    poll: std::time::Duration,
    pages: Option<tokio::sync::mpsc::Receiver<PageSeen>>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<sheepdog_monitor::ScanCounts>,
) {
    let mut live = LiveMonitor::start(
        store.clone(),
        Arc::new(Matcher::shipped().unwrap()),
        LiveOptions {
            poll,
            ..LiveOptions::default()
        },
    )
    .await
    .unwrap();
    if let Some(pages) = pages {
        live = live.with_pages(pages);
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(live.run(async {
        let _ = stopped.await;
    }));
    (stop, running)
}

/// The school's alerts once there are any, as the console would see them
/// (none after ten seconds).
async fn alerts_when_raised(store: &Store, school: i64) -> Vec<sheepdog_store::Alert> {
    let mut alerts = Vec::new();
    for _ in 0..500 {
        alerts = store.alerts(school, &AlertFilter::default()).await.unwrap();
        if !alerts.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    alerts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_stops_when_told() {
    let dir = tempfile::tempdir().unwrap();
    let (store, school, pupil) = setup(dir.path()).await;
    let (stop, running) = running(&store, std::time::Duration::from_millis(20), None).await;
    store
        .insert_events(&[event(
            0,
            Some(pupil),
            "search.example/?q=kill+myself",
            Some("kill myself"),
        )])
        .await
        .unwrap();
    let alerts = alerts_when_raised(&store, school).await;
    assert_eq!(alerts.len(), 1);
    stop.send(()).unwrap();
    let total = running.await.unwrap();
    assert_eq!(total.created, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_from_the_proxy_become_alerts_and_are_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (store, school, pupil) = setup(dir.path()).await;
    let (pages, seen) = tokio::sync::mpsc::channel(8);
    // The loop must read pages while it waits between scans.
    let (stop, running) = running(&store, std::time::Duration::from_secs(3600), Some(seen)).await;
    let page = |title: &str, text: &str| PageSeen {
        event: event(0, Some(pupil), "http://forum.example/thread/42", None),
        title: Some(title.to_string()),
        text: text.to_string(),
    };
    // An ordinary page, then one whose text worries, then the same page
    // reloaded (read once).
    pages
        .send(page(
            "Volcanoes for year 4",
            "magma rises through the crust",
        ))
        .await
        .unwrap();
    let worrying = page(
        "Anyone else feel this way",
        "i am going to kill myself tonight, nobody would notice",
    );
    pages.send(worrying.clone()).await.unwrap();
    pages.send(worrying).await.unwrap();
    let alerts = alerts_when_raised(&store, school).await;
    stop.send(()).unwrap();
    let total = running.await.unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert = &alerts[0];
    assert_eq!(alert.category, "suicide");
    assert_eq!(alert.person_id, Some(pupil));
    assert_eq!(alert.matched_text, "kill myself");
    assert_eq!(alert.context["page"]["title"], "Anyone else feel this way");
    assert_eq!(
        alert.context["event"]["target"],
        "http://forum.example/thread/42"
    );
    assert!(alert.event_ids.is_empty(), "a page is not a stored event");
    assert!(
        !alert.context.to_string().contains("nobody would notice"),
        "the page's text is not kept: {}",
        alert.context
    );
    assert_eq!(
        (total.events, total.repeats, total.created),
        (3, 1, 1),
        "{total:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_read_with_their_own_libraries_and_thresholds() {
    let dir = tempfile::tempdir().unwrap();
    let (store, school, pupil) = setup(dir.path()).await;
    let shipped = sheepdog_monitor::Library::shipped().unwrap();
    let mut with_extra = shipped.clone();
    with_extra.push(
        sheepdog_monitor::Library::parse(
            r#"
            [library]
            name = "year-4 extra"
            language = "en"

            [[terms]]
            category = "bullying"
            severity = 3
            phrases = ["glimmerwort"]
            "#,
            "year-4.toml",
        )
        .unwrap(),
    );
    let options = LiveOptions {
        groups: vec![sheepdog_monitor::GroupMonitoring {
            group: "year-4".to_string(),
            matcher: Arc::new(Matcher::new(&with_extra).unwrap()),
            min_grade: 5,
        }],
        ..LiveOptions::default()
    };
    let mut live = LiveMonitor::start(
        store.clone(),
        Arc::new(Matcher::new(&shipped).unwrap()),
        options,
    )
    .await
    .unwrap();
    let mut other = event(
        2,
        None,
        "search.example/?q=glimmerwort",
        Some("glimmerwort"),
    );
    other.group = Some("year-9".to_string());
    other.client = "10.0.9.1".to_string();
    let mut online_casino = event(
        1,
        None,
        "search.example/?q=online+casino",
        Some("online casino"),
    );
    online_casino.client = "10.0.4.18".to_string();
    store
        .insert_events(&[
            // The group's own term, for a primary pupil: grade 4, but the
            // group records only grade 5.
            event(
                3,
                Some(pupil),
                "search.example/?q=glimmerwort+glimmerwort",
                Some("glimmerwort"),
            ),
            // The same term in a group without that library: nothing.
            other,
            // A shipped term below the group's threshold: not recorded.
            online_casino,
            // Grade 5 in the group: recorded.
            event(
                0,
                Some(pupil),
                "search.example/?q=how+to+kill+myself",
                Some("how to kill myself"),
            ),
        ])
        .await
        .unwrap();
    let counts = live.scan_new().await.unwrap();
    assert_eq!(counts.created, 1, "{counts:?}");
    let alerts = store.alerts(school, &AlertFilter::default()).await.unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(
        (alerts[0].category.as_str(), alerts[0].grade),
        ("suicide", 5)
    );

    // Without the group's rules the same term is read at the default
    // threshold: the extra library is what found it.
    let mut plain = LiveMonitor::start(
        store.clone(),
        Arc::new(Matcher::new(&with_extra).unwrap()),
        LiveOptions::default(),
    )
    .await
    .unwrap();
    let counts = plain.scan_new().await.unwrap();
    assert!(counts.created >= 1, "{counts:?}");
    let alerts = store.alerts(school, &AlertFilter::default()).await.unwrap();
    assert!(
        alerts.iter().any(|a| a.category == "bullying"),
        "{alerts:?}"
    );
}

fn blocked(
    minutes_ago: i64,
    person: Option<i64>,
    client: &str,
    target: &str,
    category: &str,
) -> DecisionEvent {
    DecisionEvent {
        client: client.to_string(),
        device_name: None,
        action: "block".to_string(),
        category: Some(category.to_string()),
        ..event(minutes_ago, person, target, None)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_circumvention_attempts_raise_one_alert() {
    let dir = tempfile::tempdir().unwrap();
    let (store, school, pupil) = setup(dir.path()).await;
    let matcher = Arc::new(Matcher::shipped().unwrap());
    let mut live = LiveMonitor::start(store.clone(), matcher, LiveOptions::default())
        .await
        .unwrap();
    let vpns = [
        "www.tunnelfox-vpn.invalid",
        "api.tunnelfox-vpn.invalid",
        "hideaway-proxy.invalid",
        "dl.hidemyroute.invalid",
        "cdn.tunnelfox-vpn.invalid",
        "login.tunnelfox-vpn.invalid",
    ];
    let mut events = Vec::new();
    // The pupil signed in at 10.0.4.17: five attempts within ten minutes
    // (and a sixth just after), VPN and proxy categories.
    for (i, name) in vpns.iter().enumerate() {
        let category = if name.contains("proxy") {
            "proxy"
        } else {
            "vpn"
        };
        events.push(blocked(
            8 - i as i64,
            Some(pupil),
            "10.0.4.17",
            name,
            category,
        ));
    }
    // Another computer: four attempts and the browser's DoH canary, many
    // times over; not enough.
    for name in &vpns[..4] {
        events.push(blocked(6, None, "10.0.4.18", name, "vpn"));
    }
    for minutes in 0..8 {
        events.push(blocked(
            minutes,
            None,
            "10.0.4.18",
            "use-application-dns.net",
            "doh",
        ));
    }
    // Attempts spread over more than the window do not add up either.
    for (i, name) in vpns[..5].iter().enumerate() {
        events.push(blocked(50 - 11 * i as i64, None, "10.0.4.19", name, "vpn"));
    }
    events.sort_by_key(|e| e.at);
    store.insert_events(&events).await.unwrap();

    let counts = live.scan_new().await.unwrap();
    assert_eq!(counts.circumvention, 1, "{counts:?}");
    let alerts = store.alerts(school, &AlertFilter::default()).await.unwrap();
    let circumvention: Vec<_> = alerts
        .iter()
        .filter(|a| a.category == "circumvention")
        .collect();
    assert_eq!(circumvention.len(), 1, "{alerts:?}");
    let alert = circumvention[0];
    assert_eq!(alert.person_id, Some(pupil));
    assert_eq!(alert.address.as_deref(), Some("10.0.4.17"));
    assert_eq!(alert.grade, 4);
    assert_eq!(alert.event_ids.len(), 5);
    assert!(
        alert.matched_text.contains("5 blocked attempts"),
        "{}",
        alert.matched_text
    );
    assert!(
        alert.matched_text.contains("proxy, vpn"),
        "{}",
        alert.matched_text
    );
    // Grade 4 is owed to the DSL team at once, through the outbox.
    assert_eq!(counts.notify, 1, "{counts:?}");
}
