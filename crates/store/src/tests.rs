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
);

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
    assert_eq!(versions, vec![(1,), (2,), (3,)]);
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
        .save_device(&admin(), school.id, details.clone())
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
