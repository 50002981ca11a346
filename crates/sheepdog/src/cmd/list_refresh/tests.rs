use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sheepdog_policy::{Action, Engine, Query, Target};

use super::{spawn, BuildPlace, Refresher, Round, SwapCause};
use crate::cmd::lists::{self, ListsCommand};

const MINUTE: Duration = Duration::from_secs(60);

/// A school whose "pupils" group blocks the list in `blocked.txt`,
/// refreshed every 30 minutes.
fn school(dir: &Path, blocked: &[&str]) -> std::path::PathBuf {
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        r#"fallback_group = "pupils"
[school]
name = "Refresh Test Primary"
time_zone = "Europe/London"
[[lists]]
name = "local-block"
source = "blocked.txt"
format = "domains"
category = "malware"
refresh_minutes = 30
[[groups]]
name = "pupils"
default = "allow"
[groups.categories]
malware = "block"
"#,
    )
    .unwrap();
    write_list(dir, blocked);
    policy
}

fn write_list(dir: &Path, names: &[&str]) {
    let text: String = names.iter().map(|n| format!("{n}\n")).collect();
    std::fs::write(dir.join("blocked.txt"), text).unwrap();
}

fn action(engine: &Engine, name: &str) -> Action {
    engine
        .decide(&Query {
            group: "pupils",
            target: Target::Name(name),
            at: chrono::Utc::now(),
        })
        .action
}

fn started(dir: &Path, blocked: &[&str]) -> (Arc<Engine>, Refresher) {
    let policy = school(dir, blocked);
    let data = dir.join("data");
    let engine = Arc::new(lists::load_engine(&policy, &data).unwrap());
    let refresher = Refresher::new(engine.clone(), &policy, &data);
    (engine, refresher)
}

#[test]
fn a_changed_list_is_in_force_once_its_refresh_is_due() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, mut refresher) = started(dir.path(), &["one.example", "two.example"]);
    let now = SystemTime::now();
    // Never fetched into the cache: due at once, and the first copy counts
    // as a change.
    assert!(matches!(
        refresher.round(now),
        Round::Swapped {
            names: 2,
            why: SwapCause::ListsChanged
        }
    ));
    assert_eq!(refresher.round(now), Round::Unchanged);

    write_list(dir.path(), &["one.example", "two.example", "three.example"]);
    assert_eq!(action(&engine, "three.example"), Action::Allow);
    // Not due for 30 minutes.
    assert_eq!(refresher.round(now + 10 * MINUTE), Round::Unchanged);
    assert_eq!(action(&engine, "three.example"), Action::Allow);
    assert!(matches!(
        refresher.round(now + 31 * MINUTE),
        Round::Swapped {
            names: 3,
            why: SwapCause::ListsChanged
        }
    ));
    assert_eq!(action(&engine, "three.example"), Action::Block);
    assert_eq!(action(&engine, "www.three.example"), Action::Block);

    // The same bytes when next due: fetched, nothing rebuilt.
    assert_eq!(refresher.round(now + 62 * MINUTE), Round::Unchanged);

    // A restart loads what the refresh wrote.
    let data = dir.path().join("data");
    let restarted = lists::load_engine(&dir.path().join("policy.toml"), &data).unwrap();
    assert_eq!(action(&restarted, "three.example"), Action::Block);
}

#[test]
fn a_list_that_shrinks_by_more_than_half_is_not_put_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..10).map(|i| format!("site{i}.example")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (engine, mut refresher) = started(dir.path(), &refs);
    let now = SystemTime::now();
    assert!(matches!(
        refresher.round(now),
        Round::Swapped { names: 10, .. }
    ));
    write_list(dir.path(), &["site0.example", "new.example"]);
    assert_eq!(refresher.round(now + 31 * MINUTE), Round::Unchanged);
    assert_eq!(action(&engine, "site9.example"), Action::Block);
    assert_eq!(action(&engine, "new.example"), Action::Allow);
}

#[test]
fn new_lists_keep_the_rules_in_force_with_their_exceptions() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, mut refresher) = started(dir.path(), &["one.example", "two.example"]);
    // The console (or an approved request) changed the rules in force
    // since the start: two.example is allowed locally.
    let mut changed = engine.current().document().clone();
    changed.local.allow.push("two.example".to_owned());
    engine.recompile(&changed).unwrap();
    assert_eq!(action(&engine, "two.example"), Action::Allow);

    write_list(dir.path(), &["one.example", "two.example", "three.example"]);
    assert!(matches!(
        refresher.round(SystemTime::now()),
        Round::Swapped { names: 3, .. }
    ));
    assert_eq!(action(&engine, "three.example"), Action::Block);
    assert_eq!(
        action(&engine, "two.example"),
        Action::Allow,
        "the local allow survives the reload"
    );
    assert_eq!(engine.current().document(), &changed);
}

#[test]
fn a_snapshot_written_by_lists_update_is_put_in_force_and_a_bad_one_is_refused_once() {
    let dir = tempfile::tempdir().unwrap();
    let policy = school(dir.path(), &["one.example"]);
    let data = dir.path().join("data");
    let engine = Arc::new(lists::load_engine(&policy, &data).unwrap());
    // This list is never due: only the snapshot file can change.
    let mut never = engine.current().document().clone();
    never.lists[0].refresh_minutes = Some(0);
    engine.recompile(&never).unwrap();
    let mut refresher = Refresher::new(engine.clone(), &policy, &data);
    let now = SystemTime::now();
    assert_eq!(refresher.round(now), Round::Unchanged);

    write_list(dir.path(), &["one.example", "two.example"]);
    lists::run(ListsCommand::Update, &policy, &data).unwrap();
    assert_eq!(
        refresher.round(now),
        Round::Swapped {
            names: 2,
            why: SwapCause::SnapshotReplaced
        }
    );
    assert_eq!(action(&engine, "two.example"), Action::Block);
    assert_eq!(refresher.round(now), Round::Unchanged);

    // A damaged file: refused, the lists in force stay, and it is not
    // retried every round.
    // (Replaced by rename, as every sheepdog command writes it: the file in
    // force is mapped, so it must never be overwritten in place.)
    let bad = data.join("bad.sdsnap");
    std::fs::write(&bad, b"not a snapshot").unwrap();
    std::fs::rename(&bad, lists::snapshot_path(&data)).unwrap();
    assert_eq!(refresher.round(now), Round::Failed);
    assert_eq!(refresher.round(now), Round::Unchanged);
    assert_eq!(action(&engine, "two.example"), Action::Block);
}

#[test]
fn the_refresh_thread_puts_an_updated_snapshot_in_force_while_serving() {
    let dir = tempfile::tempdir().unwrap();
    let policy = school(dir.path(), &["one.example"]);
    let data = dir.path().join("data");
    let engine = Arc::new(lists::load_engine(&policy, &data).unwrap());
    write_list(dir.path(), &["one.example", "two.example"]);
    // In this process: this test's program is the test harness, which has
    // no `build-snapshot` (the binary's own test covers the child).
    let refresh = spawn(
        engine.clone(),
        &policy,
        &data,
        Duration::from_millis(20),
        BuildPlace::InProcess,
    )
    .unwrap();
    // The first round finds the list due (never fetched into the cache)
    // and changed; waiting is bounded so that a thread that never swaps fails the test.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while action(&engine, "two.example") != Action::Block {
        assert!(
            std::time::Instant::now() < deadline,
            "the new list never came into force"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(refresh);
}

#[test]
fn a_rebuild_whose_process_cannot_start_runs_here_and_one_that_fails_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, mut refresher) = started(dir.path(), &["one.example"]);
    let now = SystemTime::now();
    write_list(dir.path(), &["one.example", "two.example"]);

    // A program that exits with an error: the lists in force stay, and
    // nothing is left beside the snapshot.
    refresher.build_in = BuildPlace::ChildProcess("false".into());
    assert_eq!(refresher.round(now), Round::Failed);
    assert_eq!(action(&engine, "two.example"), Action::Allow);
    let snapshot = lists::snapshot_path(&dir.path().join("data"));
    assert!(!snapshot.with_extension("next").exists());

    // No such program: rebuilt on this thread instead.
    refresher.build_in = BuildPlace::ChildProcess(dir.path().join("no-such-program"));
    write_list(dir.path(), &["one.example", "two.example", "three.example"]);
    let round = refresher.round(now + 31 * MINUTE);
    assert!(
        matches!(round, Round::Swapped { names: 3, .. }),
        "{round:?}"
    );
    assert_eq!(action(&engine, "three.example"), Action::Block);
}
