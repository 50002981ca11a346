//! Rosters: the pupils, staff and parent contacts a school's MIS exports.
//!
//! [`parse`] reads an MIS-style CSV export (SIMS, Arbor and Bromcom name
//! their columns differently; the common spellings are accepted) into an
//! [`ImportBatch`] for the store, and reports every problem by row, column
//! and value with a fix, so an office manager can correct the export rather
//! than guess. A file with problems imports nothing unless the caller chooses
//! to skip the bad rows.
//!
//! [`synthetic`] makes rosters of invented people for the demo and the tests:
//! no real person's name is ever in the repository.

#![forbid(unsafe_code)]

use std::fmt;
use std::path::{Path, PathBuf};

mod columns;
mod rows;
pub mod synthetic;
pub mod upn;

pub use columns::RosterKind;
use sheepdog_store::ImportBatch;

/// Why a roster file could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum RosterError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a CSV file sheepdog can read: {message}", path.display())]
    NotCsv { path: PathBuf, message: String },
    #[error("{}: cannot tell whether this is a pupil, staff or contact export from its header row; give --kind pupils|staff|contacts", path.display())]
    UnknownKind { path: PathBuf },
    #[error("{}: {kind} export is missing {}; add the column (accepted headings: {})", path.display(), missing.iter().map(|m| format!("`{}`", m.0)).collect::<Vec<_>>().join(", "), missing.iter().map(|m| m.1.join(" / ")).collect::<Vec<_>>().join("; "))]
    MissingColumns {
        path: PathBuf,
        kind: RosterKind,
        /// Each missing column with the headings accepted for it.
        missing: Vec<(&'static str, Vec<&'static str>)>,
    },
}

/// One problem in one row of a roster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowProblem {
    /// The line in the file, counting the header as line 1, as a
    /// spreadsheet shows it.
    pub line: usize,
    pub column: Option<String>,
    pub value: Option<String>,
    pub problem: String,
    pub fix: String,
}

/// A parsed roster: what is valid, and what is wrong.
#[derive(Debug, Clone)]
pub struct Roster {
    pub kind: RosterKind,
    pub rows: usize,
    /// The valid rows, ready for the store.
    pub batch: ImportBatch,
    pub problems: Vec<RowProblem>,
    /// Lines with at least one problem.
    pub invalid_lines: Vec<usize>,
}

/// Reads a roster export. `kind` overrides detection from the header row.
pub fn parse(path: &Path, kind: Option<RosterKind>) -> Result<Roster, RosterError> {
    let bytes = std::fs::read(path).map_err(|source| RosterError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_bytes(&bytes, path, kind, chrono::Local::now().date_naive())
}

/// Reads roster bytes; `origin` names the file in errors and `today` anchors
/// date-of-birth checks.
pub fn parse_bytes(
    bytes: &[u8],
    origin: &Path,
    kind: Option<RosterKind>,
    today: chrono::NaiveDate,
) -> Result<Roster, RosterError> {
    // Spreadsheet programs often save UTF-8 with a byte-order mark.
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let not_csv = |e: csv::Error| RosterError::NotCsv {
        path: origin.to_path_buf(),
        message: e.to_string(),
    };
    let headers = reader.headers().map_err(not_csv)?.clone();
    let kind = match kind {
        Some(kind) => kind,
        None => RosterKind::detect(&headers).ok_or_else(|| RosterError::UnknownKind {
            path: origin.to_path_buf(),
        })?,
    };
    let layout =
        columns::Layout::find(kind, &headers).map_err(|missing| RosterError::MissingColumns {
            path: origin.to_path_buf(),
            kind,
            missing,
        })?;
    let mut rows = rows::RowReader::new(kind, layout, today);
    for (index, record) in reader.records().enumerate() {
        let line = index + 2;
        match record {
            Ok(record) => rows.read(line, &record),
            Err(e) => rows.unreadable(line, &e.to_string()),
        }
    }
    Ok(rows.finish())
}

impl Roster {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for RowProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}", self.line)?;
        if let Some(column) = &self.column {
            write!(f, ", column `{column}`")?;
        }
        if let Some(value) = &self.value {
            write!(f, ", value `{value}`")?;
        }
        write!(f, ": {}; fix: {}", self.problem, self.fix)
    }
}

#[cfg(test)]
mod tests;
