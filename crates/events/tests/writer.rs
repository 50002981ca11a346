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
async fn replay_skips_a_torn_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(&dir.path().join("spool")).unwrap();
    spool.append(&[event(1), event(2)]).unwrap();
    let file = spool.files().unwrap().remove(0);
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("{\"at\":\"2026-");
    std::fs::write(&file, text).unwrap();
    let store = open(dir.path()).await;
    let report = spool.replay(&store).await.unwrap();
    assert_eq!((report.events, report.bad_lines, report.files), (2, 1, 1));
    assert_eq!(count(&store).await, 2);
}
