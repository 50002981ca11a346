//! Writing snapshots to disk and opening them again.
//!
//! A snapshot file is a 64-byte header (magic and version, the lengths of
//! the two sections, the SHA-256 of the metadata), the metadata as JSON, and
//! the name index (an fst) aligned to 8 bytes. Opening maps the file and
//! uses the index in place, so a restart with millions of names answers at
//! once: pages are read from disk as lookups touch them.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::error::ListError;
use crate::mapped::MappedFile;
use crate::snapshot::{Meta, Snapshot};

const MAGIC: &[u8; 16] = b"SHEEPDOG-SNAP-01";
const HEADER: usize = 64;

/// The bytes behind a name index: owned, or a slice of a mapped file.
#[derive(Debug, Clone)]
pub enum Backing {
    /// Built in memory.
    Owned(Vec<u8>),
    /// Part of a memory-mapped snapshot file.
    Mapped {
        /// The mapped file.
        file: Arc<MappedFileHandle>,
        /// Where the index starts.
        start: usize,
        /// Where it ends.
        end: usize,
    },
}

/// A shared handle on a mapped snapshot file.
#[derive(Debug)]
pub struct MappedFileHandle(MappedFile);

impl Backing {
    /// Whether the bytes come from a mapped file.
    pub fn is_mapped(&self) -> bool {
        matches!(self, Backing::Mapped { .. })
    }
}

impl AsRef<[u8]> for Backing {
    fn as_ref(&self) -> &[u8] {
        match self {
            Backing::Owned(v) => v,
            Backing::Mapped { file, start, end } => file.0.bytes().get(*start..*end).unwrap_or(&[]),
        }
    }
}

fn bad(path: &Path, reason: impl Into<String>) -> ListError {
    ListError::BadSnapshot {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

pub(crate) fn write(snapshot: &Snapshot, path: &Path) -> Result<(), ListError> {
    let meta = serde_json::to_vec(&snapshot.meta)?;
    let index: &[u8] = snapshot
        .index
        .as_ref()
        .map_or(&[], |i| i.as_fst().as_bytes());
    let digest = Sha256::digest(&meta);
    let mut header = Vec::with_capacity(HEADER);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&(meta.len() as u64).to_le_bytes());
    header.extend_from_slice(&(index.len() as u64).to_le_bytes());
    header.extend_from_slice(&digest);
    let padding = (8 - (HEADER + meta.len()) % 8) % 8;

    let tmp = path.with_extension("tmp");
    let result = (|| -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = File::create(&tmp)?;
        f.write_all(&header)?;
        f.write_all(&meta)?;
        f.write_all(&[0u8; 8][..padding])?;
        f.write_all(index)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| ListError::io(path, e))
}

pub(crate) fn open(path: &Path) -> Result<Snapshot, ListError> {
    let file = File::open(path).map_err(|e| ListError::io(path, e))?;
    let mapped = MappedFile::map(&file).map_err(|e| ListError::io(path, e))?;
    let bytes = mapped.bytes();
    if bytes.len() < HEADER || &bytes[..16] != MAGIC {
        return Err(bad(path, "not a sheepdog snapshot of this version"));
    }
    let read_u64 = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(b) as usize
    };
    let meta_len = read_u64(16);
    let index_len = read_u64(24);
    let meta_end = HEADER
        .checked_add(meta_len)
        .ok_or_else(|| bad(path, "bad length"))?;
    let index_start = meta_end + (8 - meta_end % 8) % 8;
    let index_end = index_start
        .checked_add(index_len)
        .ok_or_else(|| bad(path, "bad length"))?;
    if index_end != bytes.len() {
        return Err(bad(path, "truncated or padded file"));
    }
    let meta_bytes = &bytes[HEADER..meta_end];
    if Sha256::digest(meta_bytes).as_slice() != &bytes[32..64] {
        return Err(bad(path, "metadata checksum does not match"));
    }
    let meta: Meta = serde_json::from_slice(meta_bytes)?;
    if meta
        .set_offsets
        .iter()
        .any(|o| *o as usize > meta.sets.len())
    {
        return Err(bad(path, "membership table out of range"));
    }
    let index = if index_len == 0 {
        None
    } else {
        let backing = Backing::Mapped {
            file: Arc::new(MappedFileHandle(mapped)),
            start: index_start,
            end: index_end,
        };
        Some(fst::Map::new(backing).map_err(|e| bad(path, e.to_string()))?)
    };
    Ok(Snapshot::assemble(index, meta))
}

impl Snapshot {
    /// Reads the whole name index and checks its internal checksum. Opening
    /// does not do this, so that a restart answers at once; run it from an
    /// operator command or a background task.
    pub fn verify(&self) -> Result<(), ListError> {
        match &self.index {
            Some(index) => index.as_fst().verify().map_err(ListError::Index),
            None => Ok(()),
        }
    }
}
