//! The errors a list operation can end in.
//!
//! A bad line is never an error here: parsers count and report bad lines in
//! [`crate::ParseReport`] and carry on. These errors are for whole operations
//! that cannot go on — a file that cannot be read, a snapshot that is not a
//! snapshot, a download that breaks a limit.

use std::path::PathBuf;

/// Everything that can go wrong while reading, compiling, storing or fetching lists.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A snapshot file is damaged, truncated or from another version.
    #[error("snapshot {path}: {reason}")]
    BadSnapshot {
        /// The snapshot file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Building the compact name set failed.
    #[error("building the name index: {0}")]
    Index(String),
    /// A download failed.
    #[error("fetching {url}: {reason}")]
    Fetch {
        /// The address fetched.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A download or file is larger than the source allows.
    #[error("{what} is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The file or address.
        what: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// A download does not match the checksum the operator gave.
    #[error("{what}: sha256 is {actual}, expected {expected}")]
    ChecksumMismatch {
        /// The file or address.
        what: String,
        /// The checksum configured.
        expected: String,
        /// The checksum of what arrived.
        actual: String,
    },
    /// Metadata could not be read or written as JSON.
    #[error("metadata: {0}")]
    Metadata(#[from] serde_json::Error),
    /// The snapshot would hold more lists or categories than its format allows.
    #[error("too many {what}: at most {max}")]
    TooMany {
        /// Lists or categories.
        what: &'static str,
        /// The limit.
        max: usize,
    },
}

impl ListError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ListError::Io {
            path: path.into(),
            source,
        }
    }
}
