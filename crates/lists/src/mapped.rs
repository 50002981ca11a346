//! The one place sheepdog maps a file into memory.
//!
//! Memory-mapping is `unsafe` in Rust because the mapped bytes can change
//! underneath the program if another process writes the file. This module is
//! the only one in the crate allowed to use `unsafe`; the rest of the crate
//! sees a safe, read-only byte slice.
#![allow(unsafe_code)]

use std::fs::File;

/// A read-only memory map of a whole file, or of a private anonymous copy.
#[derive(Debug)]
pub(crate) struct MappedFile {
    map: memmap2::Mmap,
}

impl MappedFile {
    /// Maps `file` read-only.
    pub(crate) fn map(file: &File) -> std::io::Result<Self> {
        // SAFETY: the map is read-only, and sheepdog never modifies a
        // snapshot file in place: `store::write` writes a new temporary file
        // and renames it over the old name, so a mapped inode keeps its
        // bytes for as long as the map lives. Operators are told in
        // docs/filtering.md not to edit snapshot files by hand.
        let map = unsafe { memmap2::Mmap::map(file)? };
        Ok(MappedFile { map })
    }

    /// The mapped bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.map
    }
}

impl MappedFile {
    /// A private, anonymous copy of `bytes`, asking the kernel for
    /// transparent huge pages.
    pub(crate) fn anonymous_copy(bytes: &[u8]) -> std::io::Result<Self> {
        Self::anonymous(bytes.len(), |out| out.copy_from_slice(bytes))
    }

    /// `len` bytes of private anonymous memory (on transparent huge pages
    /// where the kernel allows), filled by `fill`, then made read-only.
    pub(crate) fn anonymous(len: usize, fill: impl FnOnce(&mut [u8])) -> std::io::Result<Self> {
        let mut map = memmap2::MmapMut::map_anon(len.max(1))?;
        // Before the first write, so the pages are huge from the start.
        // Refused (old kernel, THP off): ordinary pages, still correct.
        #[cfg(target_os = "linux")]
        let _ = map.advise(memmap2::Advice::HugePage);
        fill(&mut map[..len]);
        Ok(MappedFile {
            map: map.make_read_only()?,
        })
    }
}
