//! The disk spool: where event batches wait while the database is away or
//! behind.
//!
//! Files are append-only, named `events-<unix-millis>-<seq>.bin` so that
//! name order is write order; each batch is one checksummed frame (see
//! [`crate::frame`]). Appending a whole frame with one write means a crash
//! can at worst leave a torn last frame, which replay skips and counts.
//! Replay goes a frame at a time, so the writer can interleave it with new
//! events, and notes how far it got in a `.at` file beside the spool file;
//! a file is removed only after every event in it is in the database. A
//! crash during replay may therefore write one frame twice, but never
//! loses one.
//!
//! Spools written by earlier versions, JSON lines in `events-*.jsonl`,
//! are still replayed (a whole file at a time, as then).
//!
//! The spool keeps count of its size on disk and refuses a batch that
//! would take it past its limit ([`EventError::SpoolFull`]), so that a
//! database that never returns cannot fill the disk unnoticed.

use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sheepdog_store::{DecisionEvent, Store};

use crate::{frame, EventError};

/// Files larger than this are closed and a new one started, so replay
/// deletes the spool in pieces.
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// Events per transaction when replaying a JSON-lines file.
const REPLAY_BATCH: usize = 1000;

/// The spool directory and the file being appended to.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    current: Option<Current>,
    seq: u64,
    /// Bytes in the spool's files.
    bytes: u64,
    /// The most the spool's files may hold.
    limit: u64,
    /// The file being replayed and how far.
    cursor: Option<Cursor>,
    /// Scratch space for encoding a batch.
    buffer: Vec<u8>,
    /// Files closed when full whose last writes are not yet synced: synced
    /// with the current file, off the writer's loop ([`Spool::take_unsynced`]).
    unsynced: Vec<std::fs::File>,
}

#[derive(Debug)]
struct Current {
    path: PathBuf,
    file: std::fs::File,
    size: u64,
    /// Written since the last `sync`.
    dirty: bool,
}

#[derive(Debug)]
struct Cursor {
    path: PathBuf,
    reader: std::io::BufReader<std::fs::File>,
    offset: u64,
    /// A frame read but not yet in the database (its write failed), with
    /// its length: retried as it is, not read and decoded again.
    pending: Option<(Vec<DecisionEvent>, u64)>,
}

/// What a replay did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReplayReport {
    pub events: u64,
    /// Spool files replayed whole and removed.
    pub files: u64,
    /// Lines or frames that were not events (a torn end after a crash).
    pub bad_lines: u64,
}

impl ReplayReport {
    fn add(&mut self, other: ReplayReport) {
        self.events += other.events;
        self.files += other.files;
        self.bad_lines += other.bad_lines;
    }
}

impl Spool {
    /// A spool in `dir`, created (owner-only) if absent, with no limit on
    /// its size.
    pub fn open(dir: &Path) -> Result<Self, EventError> {
        std::fs::create_dir_all(dir).map_err(|e| EventError::spool(dir, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| EventError::spool(dir, e))?;
        }
        let mut spool = Self {
            dir: dir.to_path_buf(),
            current: None,
            seq: 0,
            bytes: 0,
            limit: u64::MAX,
            cursor: None,
            buffer: Vec::new(),
            unsynced: Vec::new(),
        };
        for path in spool.files()? {
            spool.bytes += std::fs::metadata(&path).map_or(0, |m| m.len());
        }
        spool.remove_orphaned_progress();
        metrics::gauge!("sheepdog_events_spool_bytes").set(spool.bytes as f64);
        Ok(spool)
    }

    /// The spool with a limit on the bytes its files may hold.
    pub fn with_limit(mut self, bytes: u64) -> Self {
        self.limit = bytes;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes in the spool's files now.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Appends a batch as one frame and hands it to the operating system;
    /// [`Spool::sync`] makes it durable. Refuses the batch, writing
    /// nothing, when it would take the spool past its limit.
    pub fn append(&mut self, events: &[DecisionEvent]) -> Result<(), EventError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut bytes = std::mem::take(&mut self.buffer);
        bytes.clear();
        frame::encode(events, &mut bytes);
        let result = self.write_frame(&bytes);
        self.buffer = bytes;
        result
    }

    fn write_frame(&mut self, bytes: &[u8]) -> Result<(), EventError> {
        let len = bytes.len() as u64;
        if self.bytes.saturating_add(len) > self.limit {
            return Err(EventError::SpoolFull {
                dir: self.dir.clone(),
                limit: self.limit,
            });
        }
        if self
            .current
            .as_ref()
            .is_some_and(|c| c.size >= MAX_FILE_BYTES)
        {
            // Not synced here: an append must not wait for the disk.
            if let Some(full) = self.current.take() {
                if full.dirty {
                    self.unsynced.push(full.file);
                }
            }
        }
        if self.current.is_none() {
            self.seq += 1;
            let name = format!(
                "events-{:015}-{:06}.bin",
                chrono::Utc::now().timestamp_millis(),
                self.seq
            );
            let path = self.dir.join(name);
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| EventError::spool(&path, e))?;
            self.current = Some(Current {
                path,
                file,
                size: 0,
                dirty: false,
            });
        }
        if let Some(current) = &mut self.current {
            current
                .file
                .write_all(bytes)
                .map_err(|e| EventError::spool(&current.path, e))?;
            current.size += len;
            current.dirty = true;
            self.bytes += len;
            metrics::gauge!("sheepdog_events_spool_bytes").set(self.bytes as f64);
        }
        Ok(())
    }

    /// Waits until everything appended is on the disk itself, not only in
    /// the operating system's cache: a power cut then loses nothing that
    /// was spooled before it.
    pub fn sync(&mut self) -> Result<(), EventError> {
        for file in self.unsynced.drain(..) {
            file.sync_data()
                .map_err(|e| EventError::spool(&self.dir, e))?;
        }
        if let Some(current) = &mut self.current {
            if current.dirty {
                current
                    .file
                    .sync_data()
                    .map_err(|e| EventError::spool(&current.path, e))?;
                current.dirty = false;
            }
        }
        Ok(())
    }

    /// Handles on every file with writes not yet synced (marked synced
    /// here), for [`std::fs::File::sync_data`] on another thread: the
    /// writer goes on taking events while the disk catches up. Syncing any
    /// handle of a file syncs the file.
    pub fn take_unsynced(&mut self) -> Result<Vec<std::fs::File>, EventError> {
        let mut files = std::mem::take(&mut self.unsynced);
        if let Some(current) = &mut self.current {
            if current.dirty {
                let handle = current
                    .file
                    .try_clone()
                    .map_err(|e| EventError::spool(&current.path, e))?;
                current.dirty = false;
                files.push(handle);
            }
        }
        Ok(files)
    }

    fn close_current(&mut self) -> Result<(), EventError> {
        self.sync()?;
        self.current = None;
        Ok(())
    }

    /// The spooled files, oldest first.
    pub fn files(&self) -> Result<Vec<PathBuf>, EventError> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map_err(|e| EventError::spool(&self.dir, e))?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    n.starts_with("events-") && (n.ends_with(".bin") || n.ends_with(".jsonl"))
                })
            })
            .collect();
        files.sort();
        Ok(files)
    }

    /// Whether anything waits to be replayed.
    pub fn is_empty(&self) -> bool {
        !matches!(self.files(), Ok(files) if !files.is_empty())
    }

    /// Writes every spooled event to the store, oldest first, deleting
    /// each file once it is in. Stops at the first database error, leaving
    /// the rest for the next attempt.
    pub async fn replay(&mut self, store: &Store) -> Result<ReplayReport, EventError> {
        let mut report = ReplayReport::default();
        while let Some(step) = self.replay_next(store).await? {
            report.add(step);
        }
        Ok(report)
    }

    /// Writes the oldest spooled frame (or, for a JSON-lines spool file of
    /// an earlier version, the oldest file) to the store in one
    /// transaction. None when the spool is empty.
    pub async fn replay_next(&mut self, store: &Store) -> Result<Option<ReplayReport>, EventError> {
        if self.cursor.is_none() {
            let Some(path) = self.files()?.into_iter().next() else {
                return Ok(None);
            };
            if self.current.as_ref().is_some_and(|c| c.path == path) {
                // New batches start a fresh file, so this one stops growing
                // while it is read.
                self.close_current()?;
            }
            if path.extension().is_some_and(|e| e == "jsonl") {
                return self.replay_json_lines(&path, store).await.map(Some);
            }
            let mut file = std::fs::File::open(&path).map_err(|e| EventError::spool(&path, e))?;
            let offset = self.progress(&path);
            file.seek(SeekFrom::Start(offset))
                .map_err(|e| EventError::spool(&path, e))?;
            self.cursor = Some(Cursor {
                path,
                reader: std::io::BufReader::with_capacity(1 << 20, file),
                offset,
                pending: None,
            });
        }
        let Some(cursor) = &mut self.cursor else {
            return Ok(None);
        };
        let mut report = ReplayReport::default();
        let next = match cursor.pending.take() {
            Some((events, len)) => Frame::Events(events, len),
            None => {
                read_frame(&mut cursor.reader).map_err(|e| EventError::spool(&cursor.path, e))?
            }
        };
        match next {
            Frame::Events(events, len) => {
                match store.insert_events(&events).await {
                    Ok(written) => report.events += written,
                    Err(error) => {
                        cursor.pending = Some((events, len));
                        return Err(error.into());
                    }
                }
                cursor.offset += len;
                let at = progress_path(&cursor.path);
                if let Err(error) = std::fs::write(&at, cursor.offset.to_string()) {
                    // Only costs a duplicate frame after a crash.
                    tracing::debug!(%error, path = %at.display(), "cannot note replay progress");
                }
            }
            Frame::End => self.finish_file(&mut report)?,
            Frame::Torn => {
                report.bad_lines += 1;
                self.finish_file(&mut report)?;
            }
        }
        Ok(Some(report))
    }

    /// Removes the file the cursor has read to its end.
    fn finish_file(&mut self, report: &mut ReplayReport) -> Result<(), EventError> {
        if let Some(cursor) = self.cursor.take() {
            self.remove(&cursor.path)?;
            report.files += 1;
        }
        Ok(())
    }

    fn remove(&mut self, path: &Path) -> Result<(), EventError> {
        let size = std::fs::metadata(path).map_or(0, |m| m.len());
        std::fs::remove_file(path).map_err(|e| EventError::spool(path, e))?;
        let _ = std::fs::remove_file(progress_path(path));
        self.bytes = self.bytes.saturating_sub(size);
        metrics::gauge!("sheepdog_events_spool_bytes").set(self.bytes as f64);
        Ok(())
    }

    /// Where replay of `path` had got to, from its `.at` file.
    fn progress(&self, path: &Path) -> u64 {
        std::fs::read_to_string(progress_path(path))
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0)
    }

    fn remove_orphaned_progress(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for path in entries.filter_map(Result::ok).map(|e| e.path()) {
            let orphan = path.extension().is_some_and(|e| e == "at")
                && path
                    .file_stem()
                    .is_some_and(|stem| !self.dir.join(stem).exists());
            if orphan {
                let _ = std::fs::remove_file(&path);
            }
        }
    }

    async fn replay_json_lines(
        &mut self,
        path: &Path,
        store: &Store,
    ) -> Result<ReplayReport, EventError> {
        let mut report = ReplayReport::default();
        let file = std::fs::File::open(path).map_err(|e| EventError::spool(path, e))?;
        let mut batch = Vec::with_capacity(REPLAY_BATCH);
        let mut batches = Vec::new();
        for line in std::io::BufReader::new(file).lines() {
            let line = line.map_err(|e| EventError::spool(path, e))?;
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
        self.remove(path)?;
        report.files += 1;
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
                if self.current.as_ref().is_some_and(|c| c.path == path) {
                    self.current = None;
                }
                if self.cursor.as_ref().is_some_and(|c| c.path == path) {
                    self.cursor = None;
                }
                self.remove(&path)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

fn progress_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".at");
    PathBuf::from(name)
}

enum Frame {
    /// The events and the frame's length in bytes.
    Events(Vec<DecisionEvent>, u64),
    /// The file ends cleanly here.
    End,
    /// What follows is not a whole frame.
    Torn,
}

fn read_frame(reader: &mut impl Read) -> std::io::Result<Frame> {
    let mut head = [0u8; frame::HEADER_BYTES];
    let got = read_up_to(reader, &mut head)?;
    if got == 0 {
        return Ok(Frame::End);
    }
    if got < head.len() {
        return Ok(Frame::Torn);
    }
    let Some(header) = frame::header(&head) else {
        return Ok(Frame::Torn);
    };
    let mut payload = vec![0u8; header.payload_len];
    if read_up_to(reader, &mut payload)? < payload.len() {
        return Ok(Frame::Torn);
    }
    Ok(match frame::decode(&header, &payload) {
        Some(events) => Frame::Events(events, (frame::HEADER_BYTES + payload.len()) as u64),
        None => Frame::Torn,
    })
}

/// Fills `buffer` as far as the reader allows, stopping only at its end.
fn read_up_to(reader: &mut impl Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
