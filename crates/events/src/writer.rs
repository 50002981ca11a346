//! The bounded sink and the batch writer task.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use sheepdog_store::{DecisionEvent, Store};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::{EventError, Spool};

/// How the writer batches, spools and prunes.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Events the channel holds before new ones are dropped.
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
            retention_days: 90,
            prune_interval: Duration::from_secs(3600),
        }
    }
}

/// The servers' end of the event channel. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct EventSink {
    tx: mpsc::Sender<DecisionEvent>,
}

impl EventSink {
    /// A sink and its receiving end, for a writer or a test to drain.
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<DecisionEvent>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Self { tx }, rx)
    }

    /// Queues an event without waiting. Returns false, and counts the event
    /// in `sheepdog_events_dropped_total`, when the channel is full or the
    /// writer has stopped: the hot path never waits for the database.
    pub fn try_send(&self, event: DecisionEvent) -> bool {
        match self.tx.try_send(event) {
            Ok(()) => true,
            Err(_) => {
                metrics::counter!("sheepdog_events_dropped_total").increment(1);
                false
            }
        }
    }
}

/// The running batch writer.
#[derive(Debug)]
pub struct EventWriter {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl EventWriter {
    /// Opens the spool and starts the writer task on the current runtime.
    /// Events already in the spool (from an earlier outage or run) are
    /// replayed on the first tick.
    pub fn start(store: Store, options: WriterOptions) -> Result<(Self, EventSink), EventError> {
        let spool = Spool::open(&options.spool_dir)?;
        let (sink, rx) = EventSink::channel(options.capacity);
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(store, options, spool, rx, stopped));
        Ok((Self { stop, task }, sink))
    }

    /// Writes every queued event (to the database, or the spool if it is
    /// away) and stops.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        if let Err(error) = self.task.await {
            tracing::error!(%error, "the event writer stopped abnormally");
        }
    }
}

struct State {
    store: Store,
    options: WriterOptions,
    spool: Spool,
    /// Set after a failed write: new batches go straight to the spool, in
    /// order behind the ones already there, until a replay succeeds.
    database_down: bool,
}

async fn run(
    store: Store,
    options: WriterOptions,
    spool: Spool,
    mut rx: mpsc::Receiver<DecisionEvent>,
    mut stopped: oneshot::Receiver<()>,
) {
    let batch_size = options.batch_size.max(1);
    let mut tick = tokio::time::interval(options.flush_interval.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune: Option<std::time::Instant> = None;
    let mut state = State {
        database_down: !spool.is_empty(),
        store,
        options,
        spool,
    };
    let mut batch = Vec::with_capacity(batch_size);
    loop {
        tokio::select! {
            biased;
            _ = &mut stopped => {
                while let Ok(event) = rx.try_recv() {
                    batch.push(event);
                }
                state.flush(&mut batch).await;
                if state.database_down {
                    state.replay().await;
                }
                break;
            }
            received = rx.recv_many(&mut batch, batch_size) => {
                if received == 0 {
                    state.flush(&mut batch).await;
                    break;
                }
                if batch.len() >= batch_size {
                    state.flush(&mut batch).await;
                }
            }
            _ = tick.tick() => {
                state.flush(&mut batch).await;
                if state.database_down {
                    state.replay().await;
                }
                let due = !matches!(last_prune, Some(at) if at.elapsed() < state.options.prune_interval);
                if due {
                    last_prune = Some(std::time::Instant::now());
                    state.prune().await;
                }
            }
        }
    }
}

impl State {
    async fn flush(&mut self, batch: &mut Vec<DecisionEvent>) {
        if batch.is_empty() {
            return;
        }
        if !self.database_down {
            let write = self.store.insert_events(batch);
            match tokio::time::timeout(self.options.write_timeout, write).await {
                Ok(Ok(written)) => {
                    metrics::counter!("sheepdog_events_written_total").increment(written);
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
            self.database_down = true;
        }
        match self.spool.append(batch) {
            Ok(()) => {
                metrics::counter!("sheepdog_events_spooled_total").increment(batch.len() as u64);
            }
            Err(error) => {
                tracing::error!(%error, events = batch.len(), "cannot spool events; they are lost");
                metrics::counter!("sheepdog_events_dropped_total").increment(batch.len() as u64);
            }
        }
        batch.clear();
    }

    async fn replay(&mut self) {
        let replay = self.spool.replay(&self.store);
        match tokio::time::timeout(self.options.write_timeout * 4, replay).await {
            Ok(Ok(report)) => {
                self.database_down = false;
                if report.events > 0 || report.files > 0 {
                    tracing::info!(
                        events = report.events,
                        files = report.files,
                        bad_lines = report.bad_lines,
                        "replayed spooled events"
                    );
                }
                metrics::counter!("sheepdog_events_replayed_total").increment(report.events);
            }
            Ok(Err(error)) => tracing::debug!(%error, "the database is still unavailable"),
            Err(_) => tracing::debug!("replaying the spool timed out"),
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
        if !self.database_down {
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
