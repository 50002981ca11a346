//! Filter lists for sheepdog: parsing, name normalisation, sources and the
//! compiled snapshot that decisions are made against.
//!
//! The flow is: a [`SourceSpec`] is refreshed into a last good copy
//! ([`sources::refresh`]); the copy is parsed ([`parse`]) into entries that a
//! [`SnapshotBuilder`] collects; [`SnapshotBuilder::build`] compiles them into
//! an immutable [`Snapshot`], which can be written to disk and memory-mapped
//! back ([`Snapshot::write_to`], [`Snapshot::open`]). The policy crate turns a
//! snapshot plus a policy document into decisions.
//!
//! Formats: hosts files, plain domain lists (with `*.` wildcards), Adblock
//! domain rules (with `@@` exceptions), regular expressions, squidGuard/UT1
//! category directories, RPZ zone files, and IWF/CTIRU-style URL lists. See
//! `docs/filtering.md` for the details of each.

mod error;
mod mapped;
pub mod name;
pub mod parse;
pub mod regexes;
pub mod snapshot;
pub mod sources;
mod store;
mod table;
pub mod url;
pub mod ut1;

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

pub use error::ListError;
pub use name::{display_name, normalize_name, NameError};
pub use parse::{BadLine, Entry, ListFormat, MatchMode, ParseReport, RegexTarget, RpzAction};
pub use snapshot::{
    CategoryIndex, Hit, HitSource, ListId, ListInfo, Snapshot, SnapshotBuilder, SnapshotStats,
};
pub use sources::{FetchOutcome, FetchStatus, SourceSpec};
pub use store::Backing;
pub use url::{parse_url, UrlKey};

/// Parses a list file (or a UT1 directory) into `list` of `builder`,
/// recording the parse report on the list, and returns the report.
pub fn add_path(
    builder: &mut SnapshotBuilder,
    list: ListId,
    path: &Path,
    format: ListFormat,
) -> Result<ParseReport, ListError> {
    if format == ListFormat::Ut1 || path.is_dir() {
        let summary = ut1::read_ut1_dir(path, builder, list)?;
        builder.add_aliases(list, summary.aliases);
        builder.add_report(list, summary.report.clone());
        return Ok(summary.report);
    }
    let file = File::open(path).map_err(|e| ListError::io(path, e))?;
    let label = path.display().to_string();
    let report = parse::parse_reader(BufReader::new(file), format, &label, &mut |origin, e| {
        builder.add_entry(list, None, origin, e)
    })
    .map_err(|e| ListError::io(path, e))?;
    builder.add_report(list, report.clone());
    Ok(report)
}
