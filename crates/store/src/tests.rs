//! The store's behaviour, run against a real SQLite file and a real
//! PostgreSQL server. `./scripts/test` starts a throw-away PostgreSQL cluster
//! and sets `SHEEPDOG_TEST_PG_URL`; without it the PostgreSQL half fails
//! rather than passing unseen, unless `SHEEPDOG_TEST_PG=skip` says to skip it
//! out loud.

use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::Executor;

use super::*;

static DATABASES: AtomicUsize = AtomicUsize::new(0);

struct Fixture {
    store: Store,
    _dir: Option<tempfile::TempDir>,
}

async fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("test.sqlite").display());
    Fixture {
        store: Store::open(&url, &StoreOptions::default()).await.unwrap(),
        _dir: Some(dir),
    }
}

async fn postgres() -> Option<Fixture> {
    let Ok(admin_url) = std::env::var("SHEEPDOG_TEST_PG_URL") else {
        if std::env::var("SHEEPDOG_TEST_PG").as_deref() == Ok("skip") {
            eprintln!("SKIPPED: PostgreSQL half of this test (SHEEPDOG_TEST_PG=skip)");
            return None;
        }
        panic!(
            "SHEEPDOG_TEST_PG_URL is not set: run ./scripts/test, which starts a PostgreSQL \
             server, or set SHEEPDOG_TEST_PG=skip to skip these tests knowingly"
        );
    };
    sqlx::any::install_default_drivers();
    let name = format!(
        "sheepdog_test_{}_{}",
        std::process::id(),
        DATABASES.fetch_add(1, Ordering::SeqCst)
    );
    let mut admin = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin_url)
        .await
        .unwrap();
    admin
        .execute(format!("DROP DATABASE IF EXISTS {name}").as_str())
        .await
        .unwrap();
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    let base = admin_url
        .rsplit_once('/')
        .map_or(admin_url.as_str(), |(b, _)| b);
    let url = format!("{base}/{name}");
    Some(Fixture {
        store: Store::open(&url, &StoreOptions::default()).await.unwrap(),
        _dir: None,
    })
}

/// Runs a test body once on SQLite and once on PostgreSQL.
macro_rules! on_both {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::sqlite().await.store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(fixture) = super::postgres().await {
                    super::$name(fixture.store).await;
                }
            }
        }
    )+};
}

on_both!(
    migrations_are_idempotent_and_versioned,
    schools_groups_and_devices_round_trip,
    import_updates_rather_than_duplicates,
    dry_run_changes_nothing,
    audit_chain_detects_edits_deletions_and_truncation,
    concurrent_writers_keep_the_chain_intact,
    foreign_keys_are_enforced,
    accounts_keep_hashes_out_of_the_audit_log,
    events_round_trip_filter_and_prune,
    event_search_filters_domains_terms_and_pages,
    event_summary_counts_by_time_category_and_site,
    console_sessions_two_factor_and_tokens,
    alerts_merge_throttle_and_owe_notifications,
    alert_triage_needs_reasons_and_is_audited,
    block_reports_are_bounded_and_audited,
);

async fn block_reports_are_bounded_and_audited(store: Store) {
    let report = NewBlockReport {
        at: chrono::Utc::now(),
        reference: "SD-20261123-153212-ABCD".to_string(),
        client: "10.0.5.11".to_string(),
        person_id: Some(42),
        group: Some("ks2".to_string()),
        site: "http://blocked.test/page".to_string(),
        category: Some("gambling".to_string()),
        comment: "x".repeat(2000),
    };
    let stored = store
        .record_block_report(&Actor::system("proxy"), &report)
        .await
        .unwrap();
    assert_eq!(stored.status, "open");
    assert_eq!(stored.comment.chars().count(), reports::MAX_COMMENT_CHARS);
    let listed = store.block_reports(10).await.unwrap();
    assert_eq!(listed, vec![stored.clone()]);
    let audit = store.audit_entries(Some("block_report"), 10).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].entity_id, Some(stored.id.to_string()));
    assert_eq!(audit[0].actor, "system:proxy");
    assert!(store.verify_audit().await.unwrap().is_intact());
}

fn admin() -> Actor {
    Actor::command_line("test")
}

fn pupil(upn: &str, given: &str, year: &str, class: &str) -> PersonDetails {
    PersonDetails {
        kind: PersonKind::Pupil,
        external_id: None,
        upn: Some(upn.to_string()),
        given_name: given.to_string(),
        family_name: "Quorbin".to_string(),
        date_of_birth: Some("2016-03-04".to_string()),
        year_group: Some(year.to_string()),
        class_name: Some(class.to_string()),
        email: None,
        roles: vec![],
        active: true,
    }
}

fn staff(id: &str, roles: Vec<StaffRole>) -> PersonDetails {
    PersonDetails {
        kind: PersonKind::Staff,
        external_id: Some(id.to_string()),
        upn: None,
        given_name: "Talmer".to_string(),
        family_name: "Vesk".to_string(),
        date_of_birth: None,
        year_group: None,
        class_name: None,
        email: Some(format!("{id}@school.invalid")),
        roles,
        active: true,
    }
}

fn parent(id: &str) -> PersonDetails {
    PersonDetails {
        kind: PersonKind::Parent,
        external_id: Some(id.to_string()),
        ..staff(id, vec![])
    }
}

fn roster() -> ImportBatch {
    ImportBatch {
        people: vec![
            pupil("A123456789012", "Brisa", "4", "4K"),
            pupil("B123456789012", "Coren", "R", "Acorns"),
            staff("ST01", vec![StaffRole::Dsl, StaffRole::Teacher]),
            parent("C001"),
        ],
        guardians: vec![ImportedGuardian {
            parent_external_id: "C001".to_string(),
            pupil_upn: "A123456789012".to_string(),
            relationship: "Mother".to_string(),
            parental_responsibility: true,
            contact_priority: Some(1),
        }],
    }
}

async fn school(store: &Store) -> School {
    store
        .create_school(
            &admin(),
            "Larkmoor Primary",
            Some("999001"),
            "Europe/London",
        )
        .await
        .unwrap()
}

async fn migrations_are_idempotent_and_versioned(store: Store) {
    migrate::run(&store).await.unwrap();
    migrate::run(&store).await.unwrap();
    let versions: Vec<(i64,)> = sqlx::query_as("SELECT version FROM schema_migrations")
        .fetch_all(store.pool())
        .await
        .unwrap();
    let known = migrate::versions();
    assert!(known.windows(2).all(|w| w[0] < w[1]), "{known:?}");
    assert_eq!(known[..4], [1, 2, 3, 4]);
    let applied: Vec<i64> = versions.into_iter().map(|(v,)| v).collect();
    assert_eq!(applied, known);
    if store.dialect() == Dialect::Sqlite {
        assert_eq!(
            store
                .sqlite_pragma("journal_mode")
                .await
                .unwrap()
                .as_deref(),
            Some("wal")
        );
        assert_eq!(
            store
                .sqlite_pragma("foreign_keys")
                .await
                .unwrap()
                .as_deref(),
            Some("1")
        );
        assert_eq!(
            store
                .sqlite_pragma("busy_timeout")
                .await
                .unwrap()
                .as_deref(),
            Some("5000")
        );
    }
}

async fn schools_groups_and_devices_round_trip(store: Store) {
    let school = school(&store).await;
    assert_eq!(store.school(None).await.unwrap(), school);
    assert_eq!(
        store.school(Some("larkmoor primary")).await.unwrap().id,
        school.id
    );
    let duplicate = store
        .create_school(&admin(), "Other", Some("999001"), "Europe/London")
        .await;
    assert!(
        matches!(duplicate, Err(StoreError::Duplicate { .. })),
        "{duplicate:?}"
    );

    let guests = store
        .ensure_group(
            &admin(),
            school.id,
            "Guests",
            GroupKind::Filtering,
            Some("guest"),
        )
        .await
        .unwrap();
    let again = store
        .ensure_group(
            &admin(),
            school.id,
            "Guests",
            GroupKind::Filtering,
            Some("guest"),
        )
        .await
        .unwrap();
    assert_eq!(guests, again);

    let details = DeviceDetails {
        name: "LIB-CHROMEBOOK-07".to_string(),
        mac: Some("AA-BB-CC-00-11-22".to_string()),
        address: Some("10.0.4.17".to_string()),
        owner_id: None,
        group_id: Some(guests.id),
        ownership: Ownership::School,
    };
    let device = store
        .save_device(&admin(), school.id, details.clone(), "new library laptop")
        .await
        .unwrap();
    assert_eq!(device.details.mac.as_deref(), Some("aa:bb:cc:00:11:22"));
    let moved = store
        .save_device(
            &admin(),
            school.id,
            DeviceDetails {
                address: Some("10.0.5.9/24".to_string()),
                ..details.clone()
            },
            "moved to the Year 5 network",
        )
        .await
        .unwrap();
    assert_eq!(moved.id, device.id);
    assert_eq!(moved.details.address.as_deref(), Some("10.0.5.0/24"));
    assert_eq!(store.devices(school.id).await.unwrap(), vec![moved]);

    let bad = store
        .save_device(
            &admin(),
            school.id,
            DeviceDetails {
                mac: Some("not-a-mac".to_string()),
                ..details
            },
            "typo",
        )
        .await;
    assert!(
        matches!(
            bad,
            Err(StoreError::Invalid {
                field: "MAC address",
                ..
            })
        ),
        "{bad:?}"
    );

    let updates = store.audit_entries(Some("device"), 10).await.unwrap();
    assert_eq!(updates.len(), 2);
    assert_eq!(updates[0].action, "update");
    assert!(updates[0]
        .before
        .as_deref()
        .unwrap_or("")
        .contains("10.0.4.17"));
}

async fn import_updates_rather_than_duplicates(store: Store) {
    let school = school(&store).await;
    let first = store
        .import_people(&admin(), school.id, &roster(), false)
        .await
        .unwrap();
    assert_eq!(
        (first.created, first.updated, first.links_created),
        (4, 0, 1)
    );

    let mut changed = roster();
    changed.people[0].class_name = Some("4M".to_string());
    let second = store
        .import_people(&admin(), school.id, &changed, false)
        .await
        .unwrap();
    assert_eq!(
        (
            second.created,
            second.updated,
            second.unchanged,
            second.links_created
        ),
        (0, 1, 3, 0)
    );

    let pupils = store
        .people(school.id, Some(PersonKind::Pupil))
        .await
        .unwrap();
    assert_eq!(pupils.len(), 2);
    let brisa = pupils
        .iter()
        .find(|p| p.details.given_name == "Brisa")
        .unwrap();
    assert_eq!(brisa.details.class_name.as_deref(), Some("4M"));
    let staff = store
        .people(school.id, Some(PersonKind::Staff))
        .await
        .unwrap();
    assert_eq!(
        staff[0].details.roles,
        vec![StaffRole::Dsl, StaffRole::Teacher]
    );

    let links = store.guardianships(brisa.id).await.unwrap();
    assert_eq!(links.len(), 1);
    assert!(links[0].parental_responsibility);

    let groups = store.groups(school.id).await.unwrap();
    let year4 = groups.iter().find(|g| g.name == "Year 4").unwrap();
    assert_eq!(year4.filtering_profile.as_deref(), Some("ks2"));
    let reception = groups.iter().find(|g| g.name == "Reception").unwrap();
    assert_eq!(reception.filtering_profile.as_deref(), Some("eyfs"));
    assert_eq!(store.group_members(year4.id).await.unwrap(), vec![brisa.id]);
    assert!(groups.iter().any(|g| g.name == "4M"));
    assert!(store.verify_audit().await.unwrap().is_intact());
}

async fn dry_run_changes_nothing(store: Store) {
    let school = school(&store).await;
    let before = store.audit_entries(None, 1000).await.unwrap().len();
    let outcome = store
        .import_people(&admin(), school.id, &roster(), true)
        .await
        .unwrap();
    assert_eq!((outcome.created, outcome.dry_run), (4, true));
    assert_eq!(store.census().await.unwrap().pupils, 0);
    assert_eq!(store.audit_entries(None, 1000).await.unwrap().len(), before);
}

async fn audit_chain_detects_edits_deletions_and_truncation(store: Store) {
    let school = school(&store).await;
    store
        .import_people(&admin(), school.id, &roster(), false)
        .await
        .unwrap();
    let intact = store.verify_audit().await.unwrap();
    assert!(intact.is_intact(), "{:?}", intact.problems);
    assert!(intact.entries > 10);

    sqlx::query("UPDATE audit_log SET actor = 'cli:mallory' WHERE seq = 3")
        .execute(store.pool())
        .await
        .unwrap();
    let found = store.verify_audit().await.unwrap();
    assert_eq!(
        found.problems,
        vec![audit::AuditProblem::Altered { seq: 3 }]
    );
    sqlx::query(
        "UPDATE audit_log SET actor = (SELECT actor FROM audit_log WHERE seq = 2) WHERE seq = 3",
    )
    .execute(store.pool())
    .await
    .unwrap();
    assert!(store.verify_audit().await.unwrap().is_intact());

    sqlx::query("DELETE FROM audit_log WHERE seq = 5")
        .execute(store.pool())
        .await
        .unwrap();
    let found = store.verify_audit().await.unwrap();
    assert_eq!(
        found.problems,
        vec![audit::AuditProblem::Missing { from: 5, to: 5 }]
    );

    let last = intact.entries;
    sqlx::query("DELETE FROM audit_log WHERE seq >= $1")
        .bind(last - 1)
        .execute(store.pool())
        .await
        .unwrap();
    let found = store.verify_audit().await.unwrap();
    assert!(
        found.problems.contains(&audit::AuditProblem::Truncated {
            anchor_seq: last,
            last_seq: last - 2
        }),
        "{:?}",
        found.problems
    );
}

async fn concurrent_writers_keep_the_chain_intact(store: Store) {
    let school = school(&store).await;
    let mut tasks = Vec::new();
    for n in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .ensure_group(
                    &admin(),
                    school.id,
                    &format!("Club {n}"),
                    GroupKind::Custom,
                    None,
                )
                .await
                .unwrap();
            store
                .audit_view(&admin(), "group", &n.to_string())
                .await
                .unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let verification = store.verify_audit().await.unwrap();
    assert!(verification.is_intact(), "{:?}", verification.problems);
    assert_eq!(verification.entries, 1 + 32);
}

async fn foreign_keys_are_enforced(store: Store) {
    let school = school(&store).await;
    let orphan = store
        .save_device(
            &admin(),
            school.id,
            DeviceDetails {
                name: "ghost".to_string(),
                mac: None,
                address: None,
                owner_id: Some(424242),
                group_id: None,
                ownership: Ownership::Byod,
            },
            "guest device",
        )
        .await;
    assert!(orphan.is_err());
    assert!(store.devices(school.id).await.unwrap().is_empty());
    assert!(store.verify_audit().await.unwrap().is_intact());
}

async fn accounts_keep_hashes_out_of_the_audit_log(store: Store) {
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
    let roles = [AccountRole {
        school_id: None,
        role: StaffRole::TrustAdministrator,
    }];
    let account = store
        .create_account(&admin(), "Admin@Trust.invalid", "Trust admin", hash, &roles)
        .await
        .unwrap();
    assert_eq!(account.username, "admin@trust.invalid");
    let (found, stored_hash) = store
        .account_for_sign_in("ADMIN@trust.invalid")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((found, stored_hash.as_str()), (account, hash));
    let twice = store
        .create_account(&admin(), "admin@trust.invalid", "x", hash, &[])
        .await;
    assert!(
        matches!(twice, Err(StoreError::Duplicate { .. })),
        "{twice:?}"
    );
    let entries = store.audit_entries(Some("account"), 10).await.unwrap();
    assert!(!entries[0].after.as_deref().unwrap_or("").contains("argon2"));
}

fn event(at: &str, client: &str, target: &str, action: &str) -> DecisionEvent {
    DecisionEvent {
        at: chrono::DateTime::parse_from_rfc3339(at)
            .unwrap()
            .with_timezone(&chrono::Utc),
        source: EventSource::Dns,
        client: client.to_string(),
        device_id: Some(7),
        device_name: Some("KS2-LAPTOP-07".to_string()),
        person_id: Some(42),
        group: Some("ks2".to_string()),
        target: target.to_string(),
        query_type: Some("A".to_string()),
        action: action.to_string(),
        illegal: false,
        category: Some("gambling".to_string()),
        list: Some("ut1".to_string()),
        rule: Some("bet.example".to_string()),
        upstream_ms: Some(12),
        search_term: None,
        school_id: None,
    }
}

async fn events_round_trip_filter_and_prune(store: Store) {
    let mut batch: Vec<DecisionEvent> = (0..450)
        .map(|i| {
            event(
                &format!("2026-01-01T10:{:02}:{:02}Z", i / 60, i % 60),
                if i % 2 == 0 { "10.0.4.17" } else { "10.0.4.18" },
                &format!("host{i}.example"),
                "allow",
            )
        })
        .collect();
    batch[0].illegal = true;
    batch[0].upstream_ms = None;
    batch[0].search_term = Some("how to".to_string());
    assert_eq!(store.insert_events(&batch).await.unwrap(), 450);
    assert_eq!(store.insert_events(&[]).await.unwrap(), 0);

    let newest = store
        .events(&EventFilter {
            limit: Some(2),
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(newest.len(), 2);
    assert_eq!(newest[0], batch[449]);

    let from_one = store
        .events(&EventFilter {
            client: Some("10.0.4.17".to_string()),
            limit: Some(10_000),
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(from_one.len(), 225);
    assert_eq!(from_one.last(), Some(&batch[0]));

    let cutoff = batch[100].at;
    let since = store
        .events(&EventFilter {
            since: Some(cutoff),
            person_id: Some(42),
            limit: Some(10_000),
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(since.len(), 350);

    // Following the events as they are written: by id, oldest first.
    let start = store.last_event_id_before(batch[10].at).await.unwrap();
    let first = store.events_after(start, 5).await.unwrap();
    assert_eq!(first.len(), 5);
    assert_eq!(first[0].1, batch[10]);
    assert!(first.windows(2).all(|w| w[0].0 < w[1].0));
    let next = store.events_after(first[4].0, 1000).await.unwrap();
    assert_eq!(next.len(), 450 - 15);
    assert_eq!(next[0].1, batch[15]);
    assert!(store
        .events_after(next[next.len() - 1].0, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.last_event_id_before(batch[0].at).await.unwrap(), 0);

    assert_eq!(store.prune_events(cutoff).await.unwrap(), 100);
    let left = store
        .events(&EventFilter {
            limit: Some(10_000),
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(left.len(), 350);
}

async fn event_search_filters_domains_terms_and_pages(store: Store) {
    let targets = [
        "example.com",
        "www.example.com",
        "badexample.com",
        "https://video.example.com/watch?v=1",
        "https://video.example.com/shorts/2",
        "https://example.org/search?q=a",
    ];
    let mut batch = Vec::new();
    for i in 0..60 {
        let mut e = event(
            &format!("2026-02-01T09:{:02}:00Z", i),
            if i % 3 == 0 { "10.0.4.17" } else { "10.0.4.18" },
            targets[i % targets.len()],
            if i % 4 == 0 { "block" } else { "allow" },
        );
        e.device_id = Some(i64::try_from(i % 5).unwrap());
        e.group = Some(if i % 2 == 0 { "Year 7" } else { "Staff" }.to_string());
        e.category = Some(if i % 10 == 0 { "gambling" } else { "news" }.to_string());
        if i % 6 == 5 {
            e.search_term = Some(format!("Cheap 100% Offers {i}"));
        }
        // Three schools' devices and unregistered clients, in turn.
        e.school_id = [Some(1), Some(2), Some(3), None][i % 4];
        batch.push(e);
    }
    store.insert_events(&batch).await.unwrap();
    let all = EventSearch {
        limit: 1000,
        ..EventSearch::default()
    };
    let count = |search: EventSearch| {
        let store = store.clone();
        async move { store.search_events(&search).await.unwrap() }
    };
    // Each filter alone finds exactly the events the batch says it should.
    let expect = |keep: &dyn Fn(&DecisionEvent) -> bool| batch.iter().filter(|e| keep(e)).count();
    // A school-level viewer's: their schools' events, never unregistered
    // clients'; nothing for no school at all.
    let schools = count(EventSearch {
        schools: Some(vec![1, 3]),
        ..all.clone()
    })
    .await;
    assert_eq!(
        schools.len(),
        expect(&|e| matches!(e.school_id, Some(1 | 3)))
    );
    assert!(schools
        .iter()
        .all(|f| matches!(f.event.school_id, Some(1 | 3))));
    assert!(count(EventSearch {
        schools: Some(Vec::new()),
        ..all.clone()
    })
    .await
    .is_empty());
    assert_eq!(count(all.clone()).await.len(), batch.len());
    let domain = count(EventSearch {
        target: Some(TargetMatch::Domain("Example.COM.".to_string())),
        ..all.clone()
    })
    .await;
    assert_eq!(
        domain.len(),
        40,
        "example.com and its subdomains, not badexample.com"
    );
    assert!(domain
        .iter()
        .all(|f| !f.event.target.contains("badexample")));
    let prefix = count(EventSearch {
        target: Some(TargetMatch::Prefix(
            "https://video.example.com/sh".to_string(),
        )),
        ..all.clone()
    })
    .await;
    assert_eq!(prefix.len(), 10);
    assert!(prefix.iter().all(|f| f.event.target.ends_with("/shorts/2")));
    let partial_host = count(EventSearch {
        target: Some(TargetMatch::Prefix("https://video.ex".to_string())),
        ..all.clone()
    })
    .await;
    assert_eq!(partial_host.len(), 20);
    let term = count(EventSearch {
        search_term: Some("100% OFF".to_string()),
        ..all.clone()
    })
    .await;
    assert_eq!(term.len(), expect(&|e| e.search_term.is_some()));
    let literal = count(EventSearch {
        search_term: Some("1_0".to_string()),
        ..all.clone()
    })
    .await;
    assert!(
        literal.is_empty(),
        "`_` is a letter in a search, not a wildcard"
    );
    let mixed = count(EventSearch {
        client: Some("10.0.4.17".to_string()),
        action: Some("block".to_string()),
        group: Some("Year 7".to_string()),
        category: Some("news".to_string()),
        device_id: Some(2),
        ..all.clone()
    })
    .await;
    assert_eq!(
        mixed.len(),
        expect(&|e| e.client == "10.0.4.17"
            && e.action == "block"
            && e.group.as_deref() == Some("Year 7")
            && e.category.as_deref() == Some("news")
            && e.device_id == Some(2))
    );
    assert!(!mixed.is_empty());
    let window = count(EventSearch {
        since: Some(batch[10].at),
        until: Some(batch[20].at),
        ..all.clone()
    })
    .await;
    assert_eq!(window.len(), 10);

    // Pages of 7 walk the whole log once, newest first, with no repeats,
    // including events that share a time.
    let mut twin = batch[30].clone();
    twin.target = "twin.example.net".to_string();
    store.insert_events(&[twin]).await.unwrap();
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = count(EventSearch {
            before: before.clone(),
            limit: 7,
            ..EventSearch::default()
        })
        .await;
        let Some(last) = page.last() else { break };
        before = Some(EventCursor::decode(&last.cursor().encode()).unwrap());
        seen.extend(page.iter().map(|f| f.id));
    }
    assert_eq!(seen.len(), 61);
    let mut unique = seen.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 61);
    assert!(store
        .search_events(&EventSearch {
            target: Some(TargetMatch::Domain(" ".to_string())),
            ..all
        })
        .await
        .is_err());
}

async fn event_summary_counts_by_time_category_and_site(store: Store) {
    let mut batch = Vec::new();
    for (i, (hour, target, action, category)) in [
        (9, "bet.example", "block", "gambling"),
        (9, "bet.example", "block", "gambling"),
        (9, "news.example", "allow", "news"),
        (10, "chat.example", "block", "chat"),
        (10, "bet.example", "block", "gambling"),
        (11, "news.example", "allow", "news"),
        (12, "outside.example", "block", "gambling"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut e = event(
            &format!("2026-03-02T{hour:02}:{i:02}:00Z"),
            "10.0.0.1",
            target,
            action,
        );
        e.category = Some(category.to_string());
        batch.push(e);
    }
    store.insert_events(&batch).await.unwrap();
    let at = |text: &str| {
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&chrono::Utc)
    };
    let summary = store
        .event_summary(
            at("2026-03-02T09:00:00Z"),
            at("2026-03-02T12:00:00Z"),
            Bucket::Hour,
            10,
        )
        .await
        .unwrap();
    let row = |b: &str, a: &str, n: i64| (b.to_string(), a.to_string(), n);
    assert_eq!(
        summary.over_time,
        vec![
            row("2026-03-02T09", "allow", 1),
            row("2026-03-02T09", "block", 2),
            row("2026-03-02T10", "block", 2),
            row("2026-03-02T11", "allow", 1),
        ]
    );
    assert_eq!(
        summary.top_blocked_categories,
        vec![("gambling".to_string(), 3), ("chat".to_string(), 1)]
    );
    assert_eq!(
        summary.top_blocked_sites,
        vec![
            ("bet.example".to_string(), 3),
            ("chat.example".to_string(), 1)
        ]
    );
    let days = store
        .event_summary(
            at("2026-03-01T00:00:00Z"),
            at("2026-03-03T00:00:00Z"),
            Bucket::Day,
            1,
        )
        .await
        .unwrap();
    assert_eq!(
        days.over_time,
        vec![row("2026-03-02", "allow", 2), row("2026-03-02", "block", 5)]
    );
    assert_eq!(days.top_blocked_sites.len(), 1);
}

#[test]
fn host_keys_reverse_labels_of_names_and_urls() {
    assert_eq!(
        host_key("www.Example.com.").as_deref(),
        Some("com.example.www.")
    );
    assert_eq!(
        host_key("https://user@video.example.com:8443/x?y").as_deref(),
        Some("com.example.video.")
    );
    assert_eq!(
        host_key("http://[2001:db8::1]:80/").as_deref(),
        Some("2001:db8::1.")
    );
    assert_eq!(host_key("https:///path"), None);
}

/// Pseudo-random numbers for the comparisons below: the same every run.
fn sample(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *seed >> 11
}

#[test]
fn the_quick_host_key_agrees_with_the_general_one() {
    let alphabet = b"ab0-._.:/A @[]";
    let mut seed = 7;
    for _ in 0..200_000 {
        let len = (sample(&mut seed) % 12) as usize;
        let target: String = (0..len)
            .map(|_| char::from(alphabet[(sample(&mut seed) % alphabet.len() as u64) as usize]))
            .collect();
        assert_eq!(
            host_key(&target),
            crate::events::host_key_of_any_target(&target),
            "{target:?}"
        );
    }
}

#[test]
fn stored_times_are_written_as_chrono_writes_them() {
    let mut seed = 11;
    let mut times = vec![
        chrono::DateTime::from_timestamp(0, 0).unwrap(),
        chrono::DateTime::from_timestamp(253_402_300_799, 999_999_999).unwrap(),
        chrono::DateTime::from_timestamp(253_402_300_800, 0).unwrap(),
        chrono::DateTime::from_timestamp(-1, 5).unwrap(),
        chrono::DateTime::from_timestamp(-62_167_219_201, 0).unwrap(),
        chrono::DateTime::from_timestamp(1_483_228_799, 1_500_000_000).unwrap(),
    ];
    for _ in 0..100_000 {
        let seconds = (sample(&mut seed) % 300_000_000_000) as i64 - 70_000_000_000;
        let nanos = (sample(&mut seed) % 1_000_000_000) as u32;
        times.push(chrono::DateTime::from_timestamp(seconds, nanos).unwrap());
    }
    for at in times {
        assert_eq!(
            format_time(at),
            at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            "{at:?}"
        );
    }
}

async fn console_sessions_two_factor_and_tokens(store: Store) {
    let account = store
        .create_account(
            &admin(),
            "dsl@test.invalid",
            "Orlan Tesk",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            &[AccountRole {
                school_id: None,
                role: StaffRole::Dsl,
            }],
        )
        .await
        .unwrap();
    let actor = Actor::account(account.id, &account.username);
    let expires = chrono::Utc::now() + chrono::Duration::hours(1);
    let new = NewSession {
        token_hash: "hash-one",
        account_id: account.id,
        stage: SessionStage::SecondFactor,
        csrf_token: "csrf-one",
        address: "127.0.0.1",
        expires_at: expires,
    };
    store.start_session(&actor, &new).await.unwrap();
    let session = store.session("hash-one").await.unwrap().unwrap();
    assert_eq!(session.stage, SessionStage::SecondFactor);
    assert_eq!(session.csrf_token, "csrf-one");
    store.touch_session("hash-one").await.unwrap();
    assert!(store
        .promote_session(&actor, "hash-one", "hash-two", SessionStage::SignedIn)
        .await
        .unwrap());
    assert!(store.session("hash-one").await.unwrap().is_none());
    assert_eq!(
        store.session("hash-two").await.unwrap().unwrap().stage,
        SessionStage::SignedIn
    );
    store
        .start_session(
            &actor,
            &NewSession {
                token_hash: "hash-three",
                ..new
            },
        )
        .await
        .unwrap();
    assert_eq!(store.end_all_sessions(&actor, account.id).await.unwrap(), 2);
    assert!(store.session("hash-two").await.unwrap().is_none());

    // Failures count per key and are forgotten on request.
    let old = chrono::Utc::now() - chrono::Duration::hours(24);
    for _ in 0..3 {
        store
            .record_sign_in_failure(&["user:dsl@test.invalid", "address:127.0.0.1"], old)
            .await
            .unwrap();
    }
    let counted = store
        .sign_in_failures("user:dsl@test.invalid")
        .await
        .unwrap();
    assert_eq!(counted.unwrap().failures, 3);
    store
        .clear_sign_in_failures("user:dsl@test.invalid")
        .await
        .unwrap();
    assert!(store
        .sign_in_failures("user:dsl@test.invalid")
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store
            .sign_in_failures("address:127.0.0.1")
            .await
            .unwrap()
            .unwrap()
            .failures,
        3
    );

    // Two-factor: a step is accepted once; recovery codes once each.
    let key = crate::incidents::EvidenceKey::generate().unwrap();
    store
        .begin_two_factor_enrolment(&actor, &key, account.id, "JBSWY3DPEHPK3PXP")
        .await
        .unwrap();
    let kept = store.two_factor(account.id).await.unwrap().unwrap();
    assert!(kept.is_sealed());
    assert_eq!(kept.secret(&key).unwrap(), "JBSWY3DPEHPK3PXP");
    // Another deployment's key does not open it.
    assert!(kept
        .secret(&crate::incidents::EvidenceKey::generate().unwrap())
        .is_err());
    assert!(
        !store
            .two_factor(account.id)
            .await
            .unwrap()
            .unwrap()
            .confirmed
    );
    store
        .confirm_two_factor(
            &actor,
            account.id,
            100,
            &["code-a".to_string(), "code-b".to_string()],
        )
        .await
        .unwrap();
    assert!(
        store
            .two_factor(account.id)
            .await
            .unwrap()
            .unwrap()
            .confirmed
    );
    assert!(store
        .begin_two_factor_enrolment(&actor, &key, account.id, "AAAA")
        .await
        .is_err());
    // A secret an older version kept in plain base32 still works, and is
    // sealed at the next start-up, once.
    sqlx::query("UPDATE account_two_factor SET secret = 'JBSWY3DPEHPK3PXP'")
        .execute(store.pool())
        .await
        .unwrap();
    let legacy = store.two_factor(account.id).await.unwrap().unwrap();
    assert!(!legacy.is_sealed());
    assert_eq!(legacy.secret(&key).unwrap(), "JBSWY3DPEHPK3PXP");
    assert_eq!(store.seal_two_factor_secrets(&key).await.unwrap(), 1);
    assert_eq!(store.seal_two_factor_secrets(&key).await.unwrap(), 0);
    let resealed = store.two_factor(account.id).await.unwrap().unwrap();
    assert!(resealed.is_sealed() && resealed.confirmed);
    assert_eq!(resealed.secret(&key).unwrap(), "JBSWY3DPEHPK3PXP");
    assert!(!store.use_totp_step(account.id, 100).await.unwrap());
    assert!(store.use_totp_step(account.id, 101).await.unwrap());
    assert!(store
        .use_recovery_code(&actor, account.id, "code-a")
        .await
        .unwrap());
    assert!(!store
        .use_recovery_code(&actor, account.id, "code-a")
        .await
        .unwrap());
    assert_eq!(store.recovery_codes_left(account.id).await.unwrap(), 1);

    // API tokens: found by hash until revoked.
    let token = store
        .create_api_token(&actor, account.id, "MIS sync", "token-hash")
        .await
        .unwrap();
    assert_eq!(
        store.api_token_account("token-hash").await.unwrap(),
        Some(account.id)
    );
    assert!(store
        .revoke_api_token(&actor, account.id, token.id)
        .await
        .unwrap());
    assert_eq!(store.api_token_account("token-hash").await.unwrap(), None);

    // Every step is audited, and no secret reaches the log.
    let entries = store
        .audit_search(&AuditFilter {
            actor: Some("dsl@test".to_string()),
            limit: 100,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    for expected in [
        "password_accepted",
        "sign_in",
        "sign_out_everywhere",
        "two_factor_enrolled",
        "recovery_code_used",
        "revoke",
    ] {
        assert!(actions.contains(&expected), "{expected}: {actions:?}");
    }
    for entry in &entries {
        let text = format!("{:?}{:?}", entry.before, entry.after);
        assert!(
            !text.contains("JBSWY3DP") && !text.contains("token-hash") && !text.contains("code-a")
        );
    }
    let none = store
        .audit_search(&AuditFilter {
            actor: Some("%".to_string()),
            limit: 100,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert!(none.is_empty(), "a typed % matches only itself");
    assert_eq!(
        store.account(account.id).await.unwrap().unwrap().username,
        "dsl@test.invalid"
    );
}

// --- monitoring alerts (issue 6) ---------------------------------------------

fn concern(subject: &str, category: &str, grade: u8, minute: u32, events: &[i64]) -> NewAlert {
    NewAlert {
        person_id: None,
        subject: subject.to_string(),
        device_id: None,
        device_name: Some("LIB-CHROMEBOOK-07".to_string()),
        address: Some("10.0.4.17".to_string()),
        category: category.to_string(),
        grade,
        matched_text: format!("text {minute}"),
        source: "proxy".to_string(),
        at: format!("2026-11-23T10:{minute:02}:00Z").parse().unwrap(),
        event_ids: events.to_vec(),
        context: serde_json::json!([{"minute": minute}]),
    }
}

async fn alerts_merge_throttle_and_owe_notifications(store: Store) {
    let school = school(&store).await;
    let system = Actor::system("monitor");
    let policy = AlertPolicy::default();
    let first = store
        .record_alert(
            &system,
            school.id,
            &concern("A1", "drugs", 3, 0, &[1]),
            &policy,
        )
        .await
        .unwrap();
    assert!(matches!(first, AlertOutcome::Created { notify: false, .. }));
    let id = first.alert().id;

    // The same event again changes nothing.
    let again = store
        .record_alert(
            &system,
            school.id,
            &concern("A1", "drugs", 3, 1, &[1]),
            &policy,
        )
        .await
        .unwrap();
    assert!(matches!(again, AlertOutcome::Duplicate { .. }));

    // A repeat merges; a worse repeat raises the grade and owes a notice.
    let merged = store
        .record_alert(
            &system,
            school.id,
            &concern("A1", "drugs", 4, 5, &[2]),
            &policy,
        )
        .await
        .unwrap();
    assert!(matches!(merged, AlertOutcome::Merged { notify: true, .. }));
    let alert = store.alert(id).await.unwrap();
    assert_eq!(
        (alert.grade, alert.occurrences, alert.event_ids.clone()),
        (4, 2, vec![1, 2])
    );
    assert_eq!(alert.matched_text, "text 5");
    assert_eq!(alert.first_at, "2026-11-23T10:00:00.000000Z");
    assert_eq!(alert.last_at, "2026-11-23T10:05:00.000000Z");

    // Another person, another category, or outside the window: new alerts.
    for (subject, category, minute) in [("B2", "drugs", 6), ("A1", "gambling", 7)] {
        let outcome = store
            .record_alert(
                &system,
                school.id,
                &concern(subject, category, 5, minute, &[10 + i64::from(minute)]),
                &policy,
            )
            .await
            .unwrap();
        assert!(matches!(
            outcome,
            AlertOutcome::Created { notify: true, .. }
        ));
    }
    let mut late = concern("A1", "drugs", 3, 0, &[99]);
    late.at = "2026-11-23T12:00:00Z".parse().unwrap();
    let outcome = store
        .record_alert(&system, school.id, &late, &policy)
        .await
        .unwrap();
    assert!(matches!(outcome, AlertOutcome::Created { .. }));

    let listed = store
        .alerts(school.id, &AlertFilter::default())
        .await
        .unwrap();
    assert_eq!(listed.len(), 4);
    assert_eq!(listed[0].grade, 5);
    assert!(listed.windows(2).all(|w| w[0].grade >= w[1].grade));
    let serious = store
        .alerts(
            school.id,
            &AlertFilter {
                min_grade: 4,
                status: Some(AlertStatus::New),
                ..AlertFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(serious.len(), 3);
    let by_grade = store
        .alert_counts_by_grade(
            school.id,
            "2026-11-23T10:00:00Z".parse().unwrap(),
            "2026-11-23T11:00:00Z".parse().unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        by_grade,
        vec![(5, 2), (4, 1)],
        "the late alert is outside the range"
    );

    // Three notices owed; a failure keeps one owed, a delivery settles it.
    let now: chrono::DateTime<chrono::Utc> = "2030-01-01T00:00:00Z".parse().unwrap();
    let due = store.due_notifications(now, 10).await.unwrap();
    assert_eq!(due.len(), 3);
    store
        .notification_failed(&system, due[0].id, "connection refused", now)
        .await
        .unwrap();
    store.notification_sent(&system, due[1].id).await.unwrap();
    let due = store.due_notifications(now, 10).await.unwrap();
    assert_eq!(due.len(), 2);
    assert!(due.iter().any(|n| n.attempts == 1));
    assert!(store.notification_sent(&system, 424242).await.is_err());

    let bad = store
        .record_alert(
            &system,
            school.id,
            &concern("", "drugs", 3, 0, &[]),
            &policy,
        )
        .await;
    assert!(matches!(bad, Err(StoreError::Invalid { .. })), "{bad:?}");
    let bad = store
        .record_alert(
            &system,
            school.id,
            &concern("A1", "drugs", 9, 0, &[]),
            &policy,
        )
        .await;
    assert!(matches!(bad, Err(StoreError::Invalid { .. })), "{bad:?}");

    let entries = store.audit_entries(Some("alert"), 100).await.unwrap();
    assert_eq!(entries.len(), 5, "four creations and one merge");
    assert_eq!(
        store
            .audit_entries(Some("notification"), 100)
            .await
            .unwrap()
            .len(),
        5,
        "three owed, one failure, one delivery"
    );
    assert!(store.verify_audit().await.unwrap().is_intact());
}

async fn alert_triage_needs_reasons_and_is_audited(store: Store) {
    let school = school(&store).await;
    let system = Actor::system("monitor");
    let dsl = Actor::account(7, "dsl@school.invalid");
    let policy = AlertPolicy::default();
    let id = store
        .record_alert(
            &system,
            school.id,
            &concern("A1", "self-harm", 4, 0, &[1]),
            &policy,
        )
        .await
        .unwrap()
        .alert()
        .id;
    let acknowledged = store
        .set_alert_status(&dsl, id, AlertStatus::Acknowledged, None)
        .await
        .unwrap();
    assert_eq!(acknowledged.status, AlertStatus::Acknowledged);
    assert_eq!(
        acknowledged.status_by.as_deref(),
        Some("account:7:dsl@school.invalid")
    );

    // A worse concern puts an acknowledged alert back in front of the DSL.
    store
        .record_alert(
            &system,
            school.id,
            &concern("A1", "self-harm", 5, 3, &[2]),
            &policy,
        )
        .await
        .unwrap();
    assert_eq!(store.alert(id).await.unwrap().status, AlertStatus::New);

    let refused = store
        .set_alert_status(&dsl, id, AlertStatus::Dismissed, Some("  "))
        .await;
    assert!(
        matches!(refused, Err(StoreError::Invalid { .. })),
        "{refused:?}"
    );
    let dismissed = store
        .set_alert_status(
            &dsl,
            id,
            AlertStatus::Dismissed,
            Some("searching for a PSHE lesson"),
        )
        .await
        .unwrap();
    assert_eq!(
        dismissed.status_reason.as_deref(),
        Some("searching for a PSHE lesson")
    );
    let refused = store
        .set_alert_status(&dsl, id, AlertStatus::Acknowledged, None)
        .await;
    assert!(refused.is_err());

    // A dismissed alert no longer swallows repeats.
    let outcome = store
        .record_alert(
            &system,
            school.id,
            &concern("A1", "self-harm", 4, 6, &[3]),
            &policy,
        )
        .await
        .unwrap();
    assert!(matches!(outcome, AlertOutcome::Created { .. }));

    let escalated = store
        .set_alert_status(
            &dsl,
            id,
            AlertStatus::Escalated,
            Some("reopened after a disclosure"),
        )
        .await
        .unwrap();
    assert_eq!(escalated.status, AlertStatus::Escalated);
    assert!(store
        .set_alert_status(&dsl, 424242, AlertStatus::Acknowledged, None)
        .await
        .is_err());

    let entries = store.audit_entries(Some("alert"), 100).await.unwrap();
    let actions: Vec<&str> = entries.iter().rev().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        vec![
            "create",
            "acknowledge",
            "merge",
            "dismiss",
            "create",
            "escalate"
        ]
    );
    assert_eq!(
        entries[2].reason.as_deref(),
        Some("searching for a PSHE lesson")
    );
    assert!(store.verify_audit().await.unwrap().is_intact());
}

mod governance;
mod incidents;
mod requests;
