//! Writing snapshots to disk and opening them again.
//!
//! A snapshot file is a 64-byte header (magic and version, the lengths of
//! the two sections, the SHA-256 of the metadata), the metadata as JSON, and
//! the name index (the hashed name table of `table.rs`) aligned to 8 bytes. Opening maps the file and
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
use crate::table::NameTable;

/// Version 04: the name index is a hashed table of keyed name
/// fingerprints. Version 02 kept whole names in the same table, 03 was a
/// line table never released, 01 an fst over label-reversed names.
const MAGIC: &[u8; 16] = b"SHEEPDOG-SNAP-04";
/// The start of every version's magic, to name an older version.
const MAGIC_FAMILY: &[u8; 14] = b"SHEEPDOG-SNAP-";
const HEADER: usize = 64;

/// The bytes behind a name index: owned, or a slice of a mapped file.
#[derive(Debug, Clone)]
pub enum Backing {
    /// Built in memory.
    Owned(Vec<u8>),
    /// A private copy in anonymous memory, on transparent huge pages where
    /// the kernel allows: fewer TLB misses on random lookups.
    Resident(Arc<MappedFileHandle>),
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
    /// Copies `bytes` into anonymous memory, asking for transparent huge
    /// pages (a name index is read at random; with 4 KiB pages nearly every
    /// lookup also misses the TLB, which is expensive in virtual machines).
    /// Falls back to an ordinary heap copy.
    pub(crate) fn resident(bytes: &[u8]) -> Backing {
        match MappedFile::anonymous_copy(bytes) {
            Ok(map) => Backing::Resident(Arc::new(MappedFileHandle(map))),
            Err(_) => Backing::Owned(bytes.to_vec()),
        }
    }

    /// `len` bytes written by `fill`, in anonymous (huge-page) memory like
    /// [`Backing::resident`], without a second copy.
    pub(crate) fn resident_with(len: usize, fill: impl FnOnce(&mut [u8])) -> Backing {
        let mut fill = Some(fill);
        let mapped = MappedFile::anonymous(len, |out| {
            if let Some(f) = fill.take() {
                f(out);
            }
        });
        match (mapped, fill) {
            (Ok(map), _) => Backing::Resident(Arc::new(MappedFileHandle(map))),
            (Err(_), Some(f)) => {
                let mut v = vec![0u8; len];
                f(&mut v);
                Backing::Owned(v)
            }
            // Making the filled map read-only failed: the bytes are gone.
            // An empty backing is refused by `NameTable::new`, so the build
            // fails cleanly rather than producing a wrong index.
            (Err(_), None) => Backing::Owned(Vec::new()),
        }
    }

    /// Whether the bytes come from a mapped file.
    pub fn is_mapped(&self) -> bool {
        matches!(self, Backing::Mapped { .. })
    }
}

impl AsRef<[u8]> for Backing {
    fn as_ref(&self) -> &[u8] {
        match self {
            Backing::Owned(v) => v,
            Backing::Resident(m) => m.0.bytes(),
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
    let index: &[u8] = snapshot.index.as_ref().map_or(&[], NameTable::as_bytes);
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

pub(crate) fn open(path: &Path, resident: bool) -> Result<Snapshot, ListError> {
    let file = File::open(path).map_err(|e| ListError::io(path, e))?;
    let mapped = MappedFile::map(&file).map_err(|e| ListError::io(path, e))?;
    let bytes = mapped.bytes();
    if bytes.len() >= HEADER && bytes.starts_with(MAGIC_FAMILY) && &bytes[..16] != MAGIC {
        let version = String::from_utf8_lossy(&bytes[14..16]).into_owned();
        return Err(bad(
            path,
            format!(
                "snapshot format {version} is not the format this sheepdog reads (04); rebuild it with `sheepdog lists update`"
            ),
        ));
    }
    if bytes.len() < HEADER || &bytes[..16] != MAGIC {
        return Err(bad(path, "not a sheepdog snapshot"));
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
        let backing = if resident {
            Backing::resident(&bytes[index_start..index_end])
        } else {
            Backing::Mapped {
                file: Arc::new(MappedFileHandle(mapped)),
                start: index_start,
                end: index_end,
            }
        };
        let table = NameTable::new(backing).map_err(|e| bad(path, e))?;
        // A resident copy has just been read in full anyway, so checking
        // it costs little more; a damaged table is refused here instead of
        // putting wrong lists in force. (A mapped one is checked by
        // `Snapshot::verify`, so that a restart answers at once.)
        if resident {
            table
                .verify(meta.set_offsets.len())
                .map_err(|e| bad(path, e))?;
        }
        Some(table)
    };
    Ok(Snapshot::assemble(index, meta))
}

impl Snapshot {
    /// Reads the whole name index and checks its checksum and structure.
    /// Opening does not do this, so that a restart answers at once; run it
    /// from an operator command or a background task. (A damaged index can
    /// never crash a lookup: every read is bounds-checked.)
    pub fn verify(&self) -> Result<(), ListError> {
        match &self.index {
            Some(index) => index
                .verify(self.meta.set_offsets.len())
                .map_err(ListError::Index),
            None => Ok(()),
        }
    }
}
