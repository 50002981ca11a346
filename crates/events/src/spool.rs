//! The disk spool: where event batches wait while the database is away.
//!
//! Files are append-only JSON lines, one event a line, named
//! `events-<unix-millis>-<seq>.jsonl` so that name order is write order.
//! Appending a whole batch and then flushing means a crash can at worst
//! leave a torn last line, which replay skips and counts. A file is removed
//! only after every event in it is in the database, so replay after a crash
//! may write a batch twice but never loses one.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use sheepdog_store::{DecisionEvent, Store};

use crate::EventError;

/// Files larger than this are closed and a new one started, so replay reads
/// and deletes the spool in pieces.
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Events per transaction during replay.
const REPLAY_BATCH: usize = 1000;

/// The spool directory and the file being appended to.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    current: Option<(PathBuf, std::fs::File, u64)>,
    seq: u64,
}

/// What a replay did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReplayReport {
    pub events: u64,
    pub files: u64,
    /// Lines that were not events (a torn last line after a crash).
    pub bad_lines: u64,
}

impl Spool {
    /// A spool in `dir`, created (owner-only) if absent.
    pub fn open(dir: &Path) -> Result<Self, EventError> {
        std::fs::create_dir_all(dir).map_err(|e| EventError::spool(dir, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| EventError::spool(dir, e))?;
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            current: None,
            seq: 0,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends a batch and flushes it to the operating system.
    pub fn append(&mut self, events: &[DecisionEvent]) -> Result<(), EventError> {
        let mut text = Vec::with_capacity(events.len() * 256);
        for event in events {
            serde_json::to_writer(&mut text, event)?;
            text.push(b'\n');
        }
        let too_big = self
            .current
            .as_ref()
            .is_some_and(|(_, _, size)| *size >= MAX_FILE_BYTES);
        if too_big {
            self.current = None;
        }
        if self.current.is_none() {
            self.seq += 1;
            let name = format!(
                "events-{:015}-{:06}.jsonl",
                chrono::Utc::now().timestamp_millis(),
                self.seq
            );
            let path = self.dir.join(name);
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| EventError::spool(&path, e))?;
            self.current = Some((path, file, 0));
        }
        if let Some((path, file, size)) = &mut self.current {
            file.write_all(&text)
                .and_then(|()| file.flush())
                .map_err(|e| EventError::spool(path, e))?;
            *size += text.len() as u64;
        }
        Ok(())
    }

    /// The spooled files, oldest first.
    pub fn files(&self) -> Result<Vec<PathBuf>, EventError> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map_err(|e| EventError::spool(&self.dir, e))?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("events-") && n.ends_with(".jsonl"))
            })
            .collect();
        files.sort();
        Ok(files)
    }

    /// Whether anything waits to be replayed.
    pub fn is_empty(&self) -> bool {
        !matches!(self.files(), Ok(files) if !files.is_empty())
    }

    /// Writes every spooled event to the store, oldest file first, deleting
    /// each file once it is in. Stops at the first database error, leaving
    /// that file and the later ones for the next attempt.
    pub async fn replay(&mut self, store: &Store) -> Result<ReplayReport, EventError> {
        // Close the file being appended to, so that it is replayed too and
        // new batches start a fresh file.
        self.current = None;
        let mut report = ReplayReport::default();
        for path in self.files()? {
            let file = std::fs::File::open(&path).map_err(|e| EventError::spool(&path, e))?;
            let mut batch = Vec::with_capacity(REPLAY_BATCH);
            let mut batches = Vec::new();
            for line in std::io::BufReader::new(file).lines() {
                let line = line.map_err(|e| EventError::spool(&path, e))?;
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<DecisionEvent>(&line) {
                    Ok(event) => batch.push(event),
                    Err(_) => report.bad_lines += 1,
                }
                if batch.len() == REPLAY_BATCH {
                    batches.push(std::mem::take(&mut batch));
                }
            }
            batches.push(batch);
            for batch in &batches {
                report.events += store.insert_events(batch).await?;
            }
            std::fs::remove_file(&path).map_err(|e| EventError::spool(&path, e))?;
            report.files += 1;
        }
        Ok(report)
    }

    /// Deletes spool files last written before `before`: the retention
    /// period covers events that never reached the database too.
    pub fn prune(&mut self, before: std::time::SystemTime) -> Result<u64, EventError> {
        let mut removed = 0;
        for path in self.files()? {
            let old = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .is_ok_and(|modified| modified < before);
            if old {
                if self.current.as_ref().is_some_and(|(p, _, _)| p == &path) {
                    self.current = None;
                }
                std::fs::remove_file(&path).map_err(|e| EventError::spool(&path, e))?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}
