//! The writer against a real SQLite store: batches arrive, a store that is
//! down sends them to the spool, and the spool is replayed when it returns.

// Helpers outside #[test] functions fail loudly too: this is a test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use sheepdog_events::{
    DecisionEvent, EventFilter, EventSink, EventSource, EventWriter, Spool, WriterOptions,
};
use sheepdog_store::{Store, StoreOptions};

fn event(i: usize) -> DecisionEvent {
    DecisionEvent {
        at: chrono::Utc::now(),
        source: EventSource::Dns,
        client: "127.0.0.1".to_string(),
        device_id: None,
        device_name: None,
        person_id: None,
        group: Some("guest".to_string()),
        target: format!("host{i}.test"),
        query_type: Some("A".to_string()),
        action: "allow".to_string(),
        illegal: false,
        category: None,
        list: None,
        rule: None,
        upstream_ms: Some(3),
        search_term: None,
        school_id: None,
    }
}

async fn open(dir: &std::path::Path) -> Store {
    let url = format!("sqlite://{}", dir.join("events.sqlite").display());
    Store::open(&url, &StoreOptions::default()).await.unwrap()
}

fn options(dir: &std::path::Path) -> WriterOptions {
    WriterOptions {
        capacity: 10_000,
        batch_size: 100,
        flush_interval: Duration::from_millis(50),
        write_timeout: Duration::from_secs(2),
        spool_dir: dir.join("spool"),
        ..WriterOptions::default()
    }
}

async fn count(store: &Store) -> usize {
    store
        .events(&EventFilter {
            limit: Some(1_000_000),
            ..EventFilter::default()
        })
        .await
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_reach_the_store_and_shutdown_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let (writer, sink) = EventWriter::start(store.clone(), options(dir.path())).unwrap();
    for i in 0..1234 {
        assert!(sink.try_send(event(i)));
    }
    writer.shutdown().await;
    assert_eq!(count(&store).await, 1234);
}

#[test]
fn a_full_channel_drops_instead_of_blocking() {
    let (sink, _rx) = EventSink::channel(2);
    assert!(sink.try_send(event(0)));
    assert!(sink.try_send(event(1)));
    assert!(!sink.try_send(event(2)));
}

/// Events a full channel turns away are counted in the writer's stats, so
/// a benchmark (or an operator) can tell "stored every answered query"
/// from "lost some before the writer saw them".
#[tokio::test]
async fn refused_events_are_counted_in_the_writer_stats() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let mut options = options(dir.path());
    options.capacity = 4;
    // One thread: the writer cannot run until this test awaits.
    let (writer, sink) = EventWriter::start(store.clone(), options).unwrap();
    let accepted = (0..10).filter(|&i| sink.try_send(event(i))).count();
    assert_eq!(accepted, 4);
    assert_eq!(writer.stats().refused, 6);
    writer.shutdown().await;
    assert_eq!(count(&store).await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_database_spools_and_replays() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    // A closed pool fails every write, as a database that went away does.
    store.close().await;
    let (writer, sink) = EventWriter::start(store.clone(), options(dir.path())).unwrap();
    for i in 0..250 {
        assert!(sink.try_send(event(i)));
    }
    writer.shutdown().await;
    let spool = Spool::open(&dir.path().join("spool")).unwrap();
    assert!(!spool.files().unwrap().is_empty());

    // The database is back: a new writer replays the spool on its first tick.
    let store = open(dir.path()).await;
    let (writer, sink) = EventWriter::start(store.clone(), options(dir.path())).unwrap();
    assert!(sink.try_send(event(999)));
    tokio::time::sleep(Duration::from_millis(500)).await;
    writer.shutdown().await;
    assert_eq!(count(&store).await, 251);
    assert!(spool.files().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_skips_a_torn_last_frame() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(&dir.path().join("spool")).unwrap();
    spool.append(&[event(1), event(2)]).unwrap();
    spool.append(&[event(3)]).unwrap();
    let file = spool.files().unwrap().remove(0);
    // A crash while the last frame was being written: it is cut short.
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() - 5]).unwrap();
    drop(spool);
    let mut spool = Spool::open(&dir.path().join("spool")).unwrap();
    let store = open(dir.path()).await;
    let report = spool.replay(&store).await.unwrap();
    assert_eq!((report.events, report.bad_lines, report.files), (2, 1, 1));
    assert_eq!(count(&store).await, 2);
    assert!(spool.files().unwrap().is_empty());
    assert_eq!(spool.bytes(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_lines_spool_of_an_earlier_version_still_replays() {
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    std::fs::create_dir_all(&spool_dir).unwrap();
    let mut text = String::new();
    for i in 0..3 {
        text.push_str(&serde_json::to_string(&event(i)).unwrap());
        text.push('\n');
    }
    text.push_str("{\"at\":\"2026-");
    std::fs::write(spool_dir.join("events-000000000000001-000001.jsonl"), text).unwrap();
    let mut spool = Spool::open(&spool_dir).unwrap();
    // A newer binary file written after it replays after it.
    spool.append(&[event(10)]).unwrap();
    let store = open(dir.path()).await;
    let report = spool.replay(&store).await.unwrap();
    assert_eq!((report.events, report.bad_lines, report.files), (4, 1, 2));
    let targets: Vec<String> = store
        .events_after(0, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, e)| e.target)
        .collect();
    assert_eq!(
        targets,
        ["host0.test", "host1.test", "host2.test", "host10.test"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_resumes_after_the_last_frame_it_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    let store = open(dir.path()).await;
    {
        let mut spool = Spool::open(&spool_dir).unwrap();
        spool.append(&[event(1), event(2)]).unwrap();
        spool.append(&[event(3)]).unwrap();
        let first = spool.replay_next(&store).await.unwrap().unwrap();
        assert_eq!(first.events, 2);
        // The process stops here, the file half replayed.
    }
    let mut spool = Spool::open(&spool_dir).unwrap();
    let report = spool.replay(&store).await.unwrap();
    assert_eq!((report.events, report.files), (1, 1));
    assert_eq!(count(&store).await, 3);
    assert!(std::fs::read_dir(&spool_dir).unwrap().next().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_whose_write_failed_is_retried_once_the_database_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(&dir.path().join("spool")).unwrap();
    spool.append(&[event(1), event(2)]).unwrap();
    spool.append(&[event(3)]).unwrap();
    let away = open(dir.path()).await;
    away.close().await;
    assert!(spool.replay_next(&away).await.is_err());
    assert!(spool.replay_next(&away).await.is_err());
    let store = open(dir.path()).await;
    let report = spool.replay(&store).await.unwrap();
    assert_eq!((report.events, report.files), (3, 1));
    assert_eq!(count(&store).await, 3);
}

#[test]
fn a_full_spool_refuses_batches_until_replay_makes_room() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(&dir.path().join("spool")).unwrap();
    spool.append(&[event(0)]).unwrap();
    let one = spool.bytes();
    assert!(one > 0);
    let mut spool = Spool::open(&dir.path().join("spool"))
        .unwrap()
        .with_limit(one * 2);
    assert_eq!(spool.bytes(), one, "the size on disk is counted at open");
    spool.append(&[event(1)]).unwrap();
    let error = spool.append(&[event(2)]).unwrap_err();
    assert!(
        matches!(error, sheepdog_events::EventError::SpoolFull { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("spool_max_mb"), "{error}");
    assert_eq!(spool.bytes(), one * 2);
}

/// What is handed over to be synced off the writer's loop is each file
/// with writes not yet synced, once.
#[test]
fn unsynced_spool_files_are_handed_over_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(&dir.path().join("spool")).unwrap();
    assert!(spool.take_unsynced().unwrap().is_empty());
    spool.append(&[event(0), event(1)]).unwrap();
    let files = spool.take_unsynced().unwrap();
    assert_eq!(files.len(), 1);
    for file in &files {
        file.sync_data().unwrap();
    }
    assert!(
        spool.take_unsynced().unwrap().is_empty(),
        "already handed over"
    );
    spool.append(&[event(2)]).unwrap();
    assert_eq!(spool.take_unsynced().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_drops_and_counts_while_the_database_is_away() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    store.close().await;
    let options = WriterOptions {
        spool_max_bytes: 1,
        ..options(dir.path())
    };
    let (writer, sink) = EventWriter::start(store.clone(), options).unwrap();
    for i in 0..250 {
        assert!(sink.try_send(event(i)));
    }
    wait_for(|| {
        let stats = writer.stats();
        stats.dropped + stats.spooled == 250
    })
    .await;
    let stats = writer.stats();
    writer.shutdown().await;
    assert_eq!((stats.spooled, stats.dropped, stats.written), (0, 250, 0));
}

/// The servers send faster than the database takes them: instead of
/// filling the channel and dropping, the writer puts the backlog in the
/// spool and, once nothing more arrives, replays it all.
#[tokio::test(flavor = "current_thread")]
async fn a_backlog_goes_to_the_spool_and_is_replayed_when_load_falls() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let options = WriterOptions {
        capacity: 4000,
        batch_size: 50,
        ..options(dir.path())
    };
    let (writer, sink) = EventWriter::start(store.clone(), options).unwrap();
    // On this one-threaded runtime the writer runs only once the test
    // waits, so it first finds 3000 events queued: three quarters of the
    // channel, far more than a quarter.
    for i in 0..3000 {
        assert!(sink.try_send(event(i)));
    }
    wait_for(|| writer.stats().replayed == 3000).await;
    let stats = writer.stats();
    assert_eq!(count(&store).await, 3000);
    assert_eq!((stats.written, stats.spooled, stats.dropped), (0, 3000, 0));
    // The spool is empty, and new events go to the database directly.
    assert!(Spool::open(&dir.path().join("spool")).unwrap().is_empty());
    assert!(sink.try_send(event(3000)));
    wait_for(|| writer.stats().written == 1).await;
    writer.shutdown().await;
    assert_eq!(count(&store).await, 3001);
}

/// Waits for the writer to get somewhere; a writer that never does fails
/// the test rather than hang it.
async fn wait_for(mut done: impl FnMut() -> bool) {
    for _ in 0..6000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the writer never got there");
}
