//! The one place sheepdog maps a file into memory.
//!
//! Memory-mapping is `unsafe` in Rust because the mapped bytes can change
//! underneath the program if another process writes the file. This module is
//! the only one in the crate allowed to use `unsafe`; the rest of the crate
//! sees a safe, read-only byte slice.
#![allow(unsafe_code)]

use std::fs::File;

/// A read-only memory map of a whole file.
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
