//! The bounded sink and the batch writer task.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sheepdog_store::{DecisionEvent, Store};
use tokio::runtime::RuntimeFlavor;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::{EventError, Spool};

/// How the writer batches, spools and prunes.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Events the channel holds before new ones are dropped. When a
    /// quarter of it is waiting, the writer has fallen behind the servers
    /// and sends batches to the spool instead of the database.
    pub capacity: usize,
    /// Events per database transaction.
    pub batch_size: usize,
    /// The longest an event waits before its batch is written.
    pub flush_interval: Duration,
    /// A write slower than this counts as a database outage and the batch
    /// goes to the spool.
    pub write_timeout: Duration,
    /// Where batches wait while the database is unavailable.
    pub spool_dir: PathBuf,
    /// The most the spool may hold on disk, in bytes; past it new events
    /// are dropped (and counted) until replay makes room.
    pub spool_max_bytes: u64,
    /// Events (and spool files) older than this many days are deleted; 0
    /// keeps them for ever.
    pub retention_days: u32,
    /// How often retention is applied.
    pub prune_interval: Duration,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            capacity: 65_536,
            batch_size: 1000,
            flush_interval: Duration::from_secs(1),
            write_timeout: Duration::from_secs(5),
            spool_dir: PathBuf::from("spool"),
            spool_max_bytes: 2 * 1024 * 1024 * 1024,
            retention_days: 90,
            prune_interval: Duration::from_secs(3600),
        }
    }
}

/// The servers' end of the event channel. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct EventSink {
    tx: mpsc::Sender<DecisionEvent>,
    /// Counts the events the channel turns away, in the writer's stats.
    stats: Arc<SharedStats>,
}

impl EventSink {
    /// A sink and its receiving end, for a writer or a test to drain.
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<DecisionEvent>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let stats = Arc::new(SharedStats::default());
        (Self { tx, stats }, rx)
    }

    /// Queues an event without waiting. Returns false, and counts the event
    /// in `sheepdog_events_dropped_total`, when the channel is full or the
    /// writer has stopped: the hot path never waits for the database.
    pub fn try_send(&self, event: DecisionEvent) -> bool {
        match self.tx.try_send(event) {
            Ok(()) => true,
            Err(_) => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("sheepdog_events_dropped_total").increment(1);
                false
            }
        }
    }
}

/// What the writer has done with the events it received, for tests and
/// diagnostics (the same figures go to the metrics).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriterStats {
    /// Events written to the database as they arrived.
    pub written: u64,
    /// Events appended to the spool.
    pub spooled: u64,
    /// Spooled events since written to the database.
    pub replayed: u64,
    /// Events the writer lost: the spool was full or could not be written.
    pub dropped: u64,
    /// Events the servers could not queue: the channel was full (the
    /// writer fell more than `capacity` events behind) or had closed.
    pub refused: u64,
}

#[derive(Debug, Default)]
struct SharedStats {
    written: AtomicU64,
    spooled: AtomicU64,
    replayed: AtomicU64,
    dropped: AtomicU64,
    refused: AtomicU64,
}

/// The running batch writer.
#[derive(Debug)]
pub struct EventWriter {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
    stats: Arc<SharedStats>,
}

impl EventWriter {
    /// Opens the spool and starts the writer task on the current runtime.
    /// Events already in the spool (from an earlier outage, backlog or
    /// run) are replayed once the load allows.
    pub fn start(store: Store, options: WriterOptions) -> Result<(Self, EventSink), EventError> {
        let limit = match options.spool_max_bytes {
            0 => u64::MAX,
            bytes => bytes,
        };
        let spool = Spool::open(&options.spool_dir)?.with_limit(limit);
        let (sink, rx) = EventSink::channel(options.capacity);
        let (stop, stopped) = oneshot::channel();
        let stats = sink.stats.clone();
        let task = tokio::spawn(run(store, options, spool, rx, stopped, stats.clone()));
        Ok((Self { stop, task, stats }, sink))
    }

    /// What the writer has done so far.
    pub fn stats(&self) -> WriterStats {
        WriterStats {
            written: self.stats.written.load(Ordering::Relaxed),
            spooled: self.stats.spooled.load(Ordering::Relaxed),
            replayed: self.stats.replayed.load(Ordering::Relaxed),
            dropped: self.stats.dropped.load(Ordering::Relaxed),
            refused: self.stats.refused.load(Ordering::Relaxed),
        }
    }

    /// Writes every queued event (to the database, or to the spool while
    /// there is a backlog or the database is away) and stops. A backlog
    /// is not replayed here, which could take minutes: it waits on disk
    /// for the next start.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        if let Err(error) = self.task.await {
            tracing::error!(%error, "the event writer stopped abnormally");
        }
    }
}

/// Replay runs only while events arrive at less than this share of the
/// rate the database absorbs them: the rest of its capacity (and of the
/// machine's) stays with the servers, and the backlog still shrinks.
const REPLAY_SHARE: f64 = 0.5;

struct State {
    store: Store,
    options: WriterOptions,
    spool: Spool,
    stats: Arc<SharedStats>,
    /// New batches go to the spool, in order behind the ones already
    /// there: the database is away or the writer fell behind. Cleared when
    /// replay has emptied the spool.
    backlog: bool,
    /// The last database write failed: replay is tried again on the next
    /// tick, not in between.
    database_failed: bool,
    /// Events and seconds of recent database writes, decayed, whose ratio
    /// is the rate the database absorbs events at.
    database_events: f64,
    database_seconds: f64,
    /// Events received since the last tick, and the rate measured at it.
    arrived: u64,
    arrival_rate: f64,
    last_tick: Instant,
    /// Whether the full spool has been reported since it last took a batch.
    full_reported: bool,
    /// The spool sync running on a blocking thread, if one is.
    syncing: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

async fn run(
    store: Store,
    options: WriterOptions,
    spool: Spool,
    mut rx: mpsc::Receiver<DecisionEvent>,
    mut stopped: oneshot::Receiver<()>,
    stats: Arc<SharedStats>,
) {
    let batch_size = options.batch_size.max(1);
    let mut tick = tokio::time::interval(options.flush_interval.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune: Option<Instant> = None;
    let mut state = State {
        backlog: !spool.is_empty(),
        database_failed: false,
        database_events: 0.0,
        database_seconds: 0.0,
        arrived: 0,
        arrival_rate: 0.0,
        last_tick: Instant::now(),
        full_reported: false,
        syncing: None,
        store,
        options,
        spool,
        stats,
    };
    let mut batch = Vec::with_capacity(batch_size);
    loop {
        tokio::select! {
            biased;
            _ = &mut stopped => {
                while let Ok(event) = rx.try_recv() {
                    batch.push(event);
                }
                state.flush(&mut batch, 0).await;
                state.sync_spool_now().await;
                break;
            }
            received = rx.recv_many(&mut batch, batch_size) => {
                if received == 0 {
                    state.flush(&mut batch, 0).await;
                    state.sync_spool_now().await;
                    break;
                }
                state.arrived += received as u64;
                if batch.len() >= batch_size {
                    state.flush(&mut batch, rx.len()).await;
                }
            }
            _ = tick.tick() => {
                state.measure_arrivals();
                state.flush(&mut batch, rx.len()).await;
                state.sync_spool().await;
                if state.backlog && state.database_failed {
                    // One attempt a tick while the database is away.
                    state.database_failed = false;
                    state.replay_step().await;
                }
                let due = !matches!(last_prune, Some(at) if at.elapsed() < state.options.prune_interval);
                if due {
                    last_prune = Some(Instant::now());
                    state.prune().await;
                }
            }
            // Last in the biased order: only when no events are waiting.
            () = std::future::ready(()), if state.may_replay() => {
                state.replay_step().await;
            }
        }
    }
}

impl State {
    /// Writes a batch to the database or, while there is a backlog, to the
    /// spool. `queued` is how many events wait behind it in the channel:
    /// more than a quarter of its capacity means the database is not
    /// keeping up, and from then on batches go to the spool rather than be
    /// dropped when the channel fills.
    async fn flush(&mut self, batch: &mut Vec<DecisionEvent>, queued: usize) {
        if batch.is_empty() {
            return;
        }
        if !self.backlog && queued > self.options.capacity / 4 {
            tracing::info!(
                queued,
                "the database is not keeping up with events; spooling them to disk until the load falls"
            );
            self.backlog = true;
        }
        if !self.backlog {
            let started = Instant::now();
            let write = self.store.insert_events(batch);
            match tokio::time::timeout(self.options.write_timeout, write).await {
                Ok(Ok(written)) => {
                    self.note_database_write(batch.len(), started);
                    metrics::counter!("sheepdog_events_written_total").increment(written);
                    self.stats.written.fetch_add(written, Ordering::Relaxed);
                    batch.clear();
                    return;
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, "cannot write events; spooling to disk until the database returns");
                }
                Err(_) => {
                    tracing::warn!(
                        "writing events timed out; spooling to disk until the database returns"
                    );
                }
            }
            self.backlog = true;
            self.database_failed = true;
        }
        let events = batch.len() as u64;
        match self.spool.append(batch) {
            Ok(()) => {
                self.full_reported = false;
                metrics::counter!("sheepdog_events_spooled_total").increment(events);
                self.stats.spooled.fetch_add(events, Ordering::Relaxed);
            }
            Err(error) => {
                let full = matches!(error, EventError::SpoolFull { .. });
                if !full || !self.full_reported {
                    tracing::error!(%error, events, "cannot spool events; they are lost");
                }
                self.full_reported |= full;
                metrics::counter!("sheepdog_events_dropped_total").increment(events);
                self.stats.dropped.fetch_add(events, Ordering::Relaxed);
            }
        }
        batch.clear();
    }

    /// Spooled events reach the disk itself once a tick: no later than a
    /// batch waiting in memory for the database would. The sync runs on a
    /// blocking thread while this loop goes on taking events: syncing a
    /// second's spooling can take longer than the channel holds events
    /// for, and waiting for it here dropped some at the channel. One sync
    /// at a time; while one runs, the next tick's writes wait for the one
    /// after.
    async fn sync_spool(&mut self) {
        if let Some(running) = &self.syncing {
            if !running.is_finished() {
                return;
            }
        }
        if let Some(finished) = self.syncing.take() {
            // Finished, so this does not wait: take its result.
            if let Ok(Err(error)) = finished.await {
                tracing::warn!(%error, "cannot sync the event spool to disk");
            }
        }
        match self.spool.take_unsynced() {
            Ok(files) if files.is_empty() => {}
            Ok(files) => {
                self.syncing = Some(tokio::task::spawn_blocking(move || {
                    files.iter().try_for_each(std::fs::File::sync_data)
                }));
            }
            Err(error) => tracing::warn!(%error, "cannot sync the event spool to disk"),
        }
    }

    /// Everything spooled on the disk itself before returning (at a stop).
    async fn sync_spool_now(&mut self) {
        if let Some(running) = self.syncing.take() {
            if let Ok(Err(error)) = running.await {
                tracing::warn!(%error, "cannot sync the event spool to disk");
            }
        }
        let spool = &mut self.spool;
        let synced = match tokio::runtime::Handle::try_current() {
            // The sync waits for the disk; on a multi-threaded runtime the
            // servers' tasks move to another thread meanwhile.
            Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| spool.sync())
            }
            _ => spool.sync(),
        };
        if let Err(error) = synced {
            tracing::warn!(%error, "cannot sync the event spool to disk");
        }
    }

    fn note_database_write(&mut self, events: usize, started: Instant) {
        // Older writes count for less, so the rate follows a database (or
        // machine) that has become busier or quieter.
        self.database_events = self.database_events * 0.8 + events as f64;
        self.database_seconds = self.database_seconds * 0.8 + started.elapsed().as_secs_f64();
    }

    fn measure_arrivals(&mut self) {
        let seconds = self.last_tick.elapsed().as_secs_f64();
        if seconds > 0.0 {
            self.arrival_rate = self.arrived as f64 / seconds;
        }
        self.arrived = 0;
        self.last_tick = Instant::now();
    }

    /// Whether to move spooled events into the database now: there is a
    /// backlog, the database answered last time, and events arrive slowly
    /// enough (as of the last tick) that replay takes no capacity the
    /// servers need. Before any write has been timed, replay is tried.
    fn may_replay(&self) -> bool {
        self.backlog
            && !self.database_failed
            && load_allows_replay(
                self.arrival_rate,
                self.database_events,
                self.database_seconds,
            )
    }

    /// Replays one spooled frame; an empty spool ends the backlog.
    async fn replay_step(&mut self) {
        let started = Instant::now();
        let replay = self.spool.replay_next(&self.store);
        match tokio::time::timeout(self.options.write_timeout * 4, replay).await {
            Ok(Ok(Some(report))) => {
                if report.events > 0 {
                    self.note_database_write(report.events as usize, started);
                }
                if report.bad_lines > 0 {
                    tracing::warn!(
                        bad = report.bad_lines,
                        "skipped a torn end of an event spool file"
                    );
                }
                metrics::counter!("sheepdog_events_replayed_total").increment(report.events);
                self.stats
                    .replayed
                    .fetch_add(report.events, Ordering::Relaxed);
            }
            Ok(Ok(None)) => {
                tracing::info!(
                    "the event backlog is in the database; writing events directly again"
                );
                self.backlog = false;
            }
            Ok(Err(error)) => {
                tracing::debug!(%error, "the database is still unavailable");
                self.database_failed = true;
            }
            Err(_) => {
                tracing::debug!("replaying the spool timed out");
                self.database_failed = true;
            }
        }
    }

    async fn prune(&mut self) {
        let days = self.options.retention_days;
        if days == 0 {
            return;
        }
        let keep = Duration::from_secs(u64::from(days) * 86_400);
        let Ok(keep_chrono) = chrono::Duration::from_std(keep) else {
            return;
        };
        let cutoff = chrono::Utc::now() - keep_chrono;
        if !self.database_failed {
            match self.store.prune_events(cutoff).await {
                Ok(removed) if removed > 0 => {
                    tracing::info!(removed, days, "pruned events past retention");
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "cannot prune old events"),
            }
        }
        if let Some(before) = SystemTime::now().checked_sub(keep) {
            if let Err(error) = self.spool.prune(before) {
                tracing::warn!(%error, "cannot prune the event spool");
            }
        }
    }
}

/// Whether events arriving at `arrival_rate` a second leave room for
/// replay, given that recent writes put `events` in the database in
/// `seconds`. With nothing timed yet, replay is tried.
fn load_allows_replay(arrival_rate: f64, events: f64, seconds: f64) -> bool {
    seconds <= 0.0 || arrival_rate < REPLAY_SHARE * events / seconds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_waits_while_events_arrive_faster_than_half_the_database_rate() {
        // The database took 10 000 events a second.
        assert!(load_allows_replay(0.0, 10_000.0, 1.0));
        assert!(load_allows_replay(4_999.0, 10_000.0, 1.0));
        assert!(!load_allows_replay(5_000.0, 10_000.0, 1.0));
        assert!(!load_allows_replay(140_000.0, 20_000.0, 2.0));
        // Before any write is timed, replay is tried.
        assert!(load_allows_replay(140_000.0, 0.0, 0.0));
    }
}
