//! List parsers.
//!
//! Each format is read line by line and every usable line becomes an
//! [`Entry`] handed to a sink, so a five-million-line list is never held as
//! five million strings. A line that cannot be understood is counted in the
//! [`ParseReport`] with its file and line number and parsing carries on: one
//! bad line never rejects a list. Rules a format allows but sheepdog does not
//! enforce (cosmetic Adblock rules, RPZ IP triggers, …) are counted as
//! unsupported.

mod formats;
mod rpz;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::io::BufRead;

use serde::{Deserialize, Serialize};

pub use formats::detect_format;

/// The formats sheepdog reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ListFormat {
    /// Detect the format from the first lines of the file.
    #[default]
    Auto,
    /// Hosts files: `0.0.0.0 name`, `127.0.0.1 name`, `:: name`.
    Hosts,
    /// One name per line; `*.name` for subdomains only.
    Domains,
    /// Adblock-style rules: `||name^`, `@@||name^` exceptions, `/regex/`.
    Adblock,
    /// One regular expression per line, matched against names.
    Regex,
    /// An RPZ zone file.
    Rpz,
    /// URLs as the IWF and CTIRU deliver them: host, path, perhaps a query.
    Urls,
    /// A squidGuard/UT1 category directory (a folder per category).
    Ut1,
}

impl ListFormat {
    /// The name used in policy files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            ListFormat::Auto => "auto",
            ListFormat::Hosts => "hosts",
            ListFormat::Domains => "domains",
            ListFormat::Adblock => "adblock",
            ListFormat::Regex => "regex",
            ListFormat::Rpz => "rpz",
            ListFormat::Urls => "urls",
            ListFormat::Ut1 => "ut1",
        }
    }
}

impl std::str::FromStr for ListFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "auto" => ListFormat::Auto,
            "hosts" => ListFormat::Hosts,
            "domains" | "plain" => ListFormat::Domains,
            "adblock" | "abp" => ListFormat::Adblock,
            "regex" | "expressions" => ListFormat::Regex,
            "rpz" => ListFormat::Rpz,
            "urls" | "iwf" | "ctiru" => ListFormat::Urls,
            "ut1" | "squidguard" => ListFormat::Ut1,
            other => return Err(format!("unknown list format {other:?}")),
        })
    }
}

/// Which names a name rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MatchMode {
    /// The name itself only (RPZ triggers, host-only URL entries).
    Exact,
    /// Subdomains only (`*.example.com`).
    Subdomains,
    /// The name and every subdomain (the usual list entry).
    NameAndSubdomains,
}

/// What an RPZ rule asks the resolver to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RpzAction {
    /// `CNAME .`: the name does not exist.
    NxDomain,
    /// `CNAME *.`: the name exists but has no data.
    NoData,
    /// `CNAME rpz-passthru.`: leave the name alone (an exception).
    Passthru,
    /// `CNAME rpz-drop.`: give no answer.
    Drop,
    /// Any other record: answer with the zone's own data.
    LocalData,
}

/// What a regular expression is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RegexTarget {
    /// The normalised host name.
    Name,
    /// `host/path?query` of a URL, without the scheme.
    Url,
}

/// One rule read from a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry<'a> {
    /// A host name rule.
    Name {
        /// The normalised name.
        name: Cow<'a, str>,
        /// Which names it covers.
        mode: MatchMode,
        /// An exception (`@@` in Adblock lists, RPZ passthru): the list does
        /// not act on names it covers.
        exception: bool,
        /// The RPZ action, for RPZ lists.
        rpz: Option<RpzAction>,
        /// RPZ local data (`A 192.0.2.1`), for [`RpzAction::LocalData`].
        local_data: Option<String>,
    },
    /// A URL rule: host plus path (and perhaps query).
    Url {
        /// The normalised host.
        host: String,
        /// The path and query, starting with `/`.
        path: String,
        /// An exception rule.
        exception: bool,
    },
    /// A regular expression rule.
    Regex {
        /// The pattern text.
        pattern: Cow<'a, str>,
        /// What it is matched against.
        target: RegexTarget,
        /// An exception rule.
        exception: bool,
    },
}

/// A line that could not be used, with where it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadLine {
    /// The file it came from.
    pub file: String,
    /// Its line number, from 1.
    pub line: u64,
    /// Why it was refused.
    pub reason: String,
}

/// How many bad lines a report keeps in detail; the rest are only counted.
pub const MAX_BAD_LINES_KEPT: usize = 100;

/// What parsing a list found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParseReport {
    /// Lines read, including blank and comment lines.
    pub lines: u64,
    /// Rules accepted.
    pub entries: u64,
    /// Rules of a kind sheepdog does not enforce, skipped.
    pub unsupported: u64,
    /// Lines that could not be understood.
    pub invalid: u64,
    /// The first [`MAX_BAD_LINES_KEPT`] invalid lines, with file and line.
    pub bad_lines: Vec<BadLine>,
    /// The format the list was read as (after detection).
    pub format: Option<ListFormat>,
}

impl ParseReport {
    /// Counts a bad line and keeps its details while there is room.
    pub fn bad(&mut self, file: &str, line: u64, reason: impl Into<String>) {
        self.invalid += 1;
        if self.bad_lines.len() < MAX_BAD_LINES_KEPT {
            self.bad_lines.push(BadLine {
                file: file.to_owned(),
                line,
                reason: reason.into(),
            });
        }
    }

    /// Adds another report's counts to this one.
    pub fn merge(&mut self, other: ParseReport) {
        self.lines += other.lines;
        self.entries += other.entries;
        self.unsupported += other.unsupported;
        self.invalid += other.invalid;
        let room = MAX_BAD_LINES_KEPT.saturating_sub(self.bad_lines.len());
        self.bad_lines
            .extend(other.bad_lines.into_iter().take(room));
    }
}

/// Where a sink is told each entry comes from.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// The file.
    pub file: &'a str,
    /// The line number, from 1.
    pub line: u64,
}

/// The result of reading one line.
pub(crate) enum LineOutcome<'a> {
    /// Blank, comment or zone bookkeeping.
    Nothing,
    /// One or more rules (hosts lines may name several hosts).
    Entries(Vec<Entry<'a>>),
    /// One rule.
    Entry(Entry<'a>),
    /// A rule sheepdog does not enforce.
    Unsupported,
    /// A line that makes no sense, and why.
    Invalid(String),
}

/// A line parser for one format; RPZ keeps state between lines.
pub(crate) enum LineParser {
    Hosts,
    Domains,
    Adblock,
    Regex(RegexTarget),
    Rpz(rpz::RpzState),
    Urls,
}

impl LineParser {
    pub(crate) fn new(format: ListFormat) -> Self {
        match format {
            ListFormat::Hosts => LineParser::Hosts,
            ListFormat::Adblock => LineParser::Adblock,
            ListFormat::Regex => LineParser::Regex(RegexTarget::Name),
            ListFormat::Rpz => LineParser::Rpz(rpz::RpzState::default()),
            ListFormat::Urls => LineParser::Urls,
            ListFormat::Domains | ListFormat::Auto | ListFormat::Ut1 => LineParser::Domains,
        }
    }

    pub(crate) fn url_expressions() -> Self {
        LineParser::Regex(RegexTarget::Url)
    }

    pub(crate) fn line<'a>(&mut self, line: &'a str) -> LineOutcome<'a> {
        match self {
            LineParser::Hosts => formats::hosts_line(line),
            LineParser::Domains => formats::domains_line(line),
            LineParser::Adblock => formats::adblock_line(line),
            LineParser::Regex(target) => formats::regex_line(line, *target),
            LineParser::Rpz(state) => state.line(line),
            LineParser::Urls => formats::url_line(line),
        }
    }
}

/// Parses list text of a known or detected format, handing every entry to
/// `sink` with where it came from.
pub fn parse_str(
    text: &str,
    format: ListFormat,
    file: &str,
    sink: &mut dyn FnMut(Origin<'_>, Entry<'_>),
) -> ParseReport {
    let format = match format {
        ListFormat::Auto | ListFormat::Ut1 => detect_format(text),
        f => f,
    };
    let mut parser = LineParser::new(format);
    let mut report = ParseReport {
        format: Some(format),
        ..ParseReport::default()
    };
    for (index, line) in text.lines().enumerate() {
        feed(&mut parser, line, file, index as u64 + 1, &mut report, sink);
    }
    report
}

/// Parses a list from a reader, line by line, so that large files are never
/// held whole. Auto-detection looks at the first 64 KiB.
pub fn parse_reader(
    mut reader: impl BufRead,
    format: ListFormat,
    file: &str,
    sink: &mut dyn FnMut(Origin<'_>, Entry<'_>),
) -> std::io::Result<ParseReport> {
    let format = match format {
        ListFormat::Auto | ListFormat::Ut1 => {
            let sample = reader.fill_buf()?;
            detect_format(&String::from_utf8_lossy(sample))
        }
        f => f,
    };
    parse_reader_with(reader, LineParser::new(format), format, file, sink)
}

pub(crate) fn parse_reader_with(
    mut reader: impl BufRead,
    mut parser: LineParser,
    format: ListFormat,
    file: &str,
    sink: &mut dyn FnMut(Origin<'_>, Entry<'_>),
) -> std::io::Result<ParseReport> {
    let mut report = ParseReport {
        format: Some(format),
        ..ParseReport::default()
    };
    let mut buf = Vec::with_capacity(256);
    let mut number = 0u64;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        number += 1;
        let text = String::from_utf8_lossy(&buf);
        let text = text.trim_end_matches(['\n', '\r']);
        feed(&mut parser, text, file, number, &mut report, sink);
    }
    Ok(report)
}

fn feed(
    parser: &mut LineParser,
    line: &str,
    file: &str,
    number: u64,
    report: &mut ParseReport,
    sink: &mut dyn FnMut(Origin<'_>, Entry<'_>),
) {
    report.lines += 1;
    let origin = Origin { file, line: number };
    // A line longer than any sane rule is refused before any work is done.
    if line.len() > 8192 {
        report.bad(file, number, "line longer than 8192 bytes");
        return;
    }
    match parser.line(line) {
        LineOutcome::Nothing => {}
        LineOutcome::Entry(e) => {
            report.entries += 1;
            sink(origin, e);
        }
        LineOutcome::Entries(es) => {
            for e in es {
                report.entries += 1;
                sink(origin, e);
            }
        }
        LineOutcome::Unsupported => report.unsupported += 1,
        LineOutcome::Invalid(reason) => report.bad(file, number, reason),
    }
}
