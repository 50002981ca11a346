//! The events monitoring reads: one JSON object per line.
//!
//! The DNS resolver and the proxy produce an event for every decision;
//! device agents and chat exports send theirs through the ingestion
//! endpoint. Whatever the source, an event says when, who (as far as is
//! known), what was asked for (a search, a URL, a page's title and text)
//! and what the filter decided. The format is documented in
//! `docs/monitoring.md`.

use std::io::BufRead;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::normalise::truncate_to_char_boundary;
use crate::MonitorError;

/// Page text beyond this many bytes is not examined.
pub const MAX_PAGE_TEXT: usize = 64 * 1024;

/// A line longer than this is refused rather than read.
pub const MAX_LINE: usize = 1 << 20;

/// One thing a person did online.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// The event's number in the store, when it has one, so that an
    /// alert can point at it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    pub time: DateTime<Utc>,
    /// `dns`, `proxy`, `agent`, `chat`, or another source's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The person, as the identity layer knows them (a UPN, a username).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The client's IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The filtering group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_group: Option<AgeGroup>,
    /// A search term, decoded or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Text of an inspected page or message; only its first
    /// [`MAX_PAGE_TEXT`] bytes are examined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// The filtering category behind the decision (`illegal`, `drugs`…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_category: Option<String>,
}

/// What the filter did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allowed,
    Blocked,
}

/// The person's stage of education, which changes how worrying a concern
/// is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgeGroup {
    Eyfs,
    Ks1,
    Ks2,
    Ks3,
    Ks4,
    Ks5,
    Staff,
    Adult,
}

/// Which part of an event a hit was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Field {
    Search,
    Url,
    Title,
    Text,
}

impl AgeGroup {
    /// Early years and primary: the youngest children.
    pub fn is_primary(self) -> bool {
        matches!(self, Self::Eyfs | Self::Ks1 | Self::Ks2)
    }

    pub fn is_adult(self) -> bool {
        matches!(self, Self::Staff | Self::Adult)
    }
}

impl Event {
    /// The parts of the event worth reading, each bounded.
    pub fn fields(&self) -> impl Iterator<Item = (Field, &str)> {
        [
            (Field::Search, self.search.as_deref()),
            (Field::Url, self.url.as_deref()),
            (Field::Title, self.title.as_deref()),
            (
                Field::Text,
                self.text
                    .as_deref()
                    .map(|t| truncate_to_char_boundary(t, MAX_PAGE_TEXT)),
            ),
        ]
        .into_iter()
        .filter_map(|(field, text)| text.map(|t| (field, t)))
    }

    /// Whether the filter blocked this event.
    pub fn was_blocked(&self) -> bool {
        self.decision == Some(Decision::Blocked)
    }

    /// Whether this was a blocked attempt at the illegal lists (IWF,
    /// CTIRU), which always reaches the DSL.
    pub fn is_blocked_illegal(&self) -> bool {
        self.was_blocked()
            && self.filter_category.as_deref().is_some_and(|c| {
                matches!(
                    c.to_ascii_lowercase().as_str(),
                    "illegal" | "iwf" | "ctiru" | "csam" | "terrorism"
                )
            })
    }

    /// Who the event belongs to, for repetition: the person, or failing
    /// that the device, or the address.
    pub fn subject(&self) -> Option<&str> {
        self.person
            .as_deref()
            .or(self.device.as_deref())
            .or(self.address.as_deref())
    }
}

/// Reads JSON-lines events. Blank lines and lines starting with `#` are
/// skipped; a bad line is an error naming its number, and reading stops.
pub fn read_events(reader: impl BufRead) -> impl Iterator<Item = Result<Event, MonitorError>> {
    let mut lines = BoundedLines {
        reader,
        number: 0,
        failed: false,
    };
    std::iter::from_fn(move || lines.next_event())
}

struct BoundedLines<R> {
    reader: R,
    number: usize,
    failed: bool,
}

impl<R: BufRead> BoundedLines<R> {
    fn next_event(&mut self) -> Option<Result<Event, MonitorError>> {
        if self.failed {
            return None;
        }
        loop {
            self.number += 1;
            let mut line = Vec::new();
            let mut bounded =
                <&mut R as std::io::Read>::take(&mut self.reader, MAX_LINE as u64 + 1);
            let read = bounded.read_until(b'\n', &mut line);
            let line = match read {
                Ok(0) => return None,
                Ok(_) if line.len() > MAX_LINE => {
                    self.failed = true;
                    return Some(Err(self.error("the line is longer than 1 MiB")));
                }
                Ok(_) => line,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(self.error(&e.to_string())));
                }
            };
            let text = String::from_utf8_lossy(&line);
            let text = text.trim();
            if text.is_empty() || text.starts_with('#') {
                continue;
            }
            return Some(serde_json::from_str(text).map_err(|e| {
                self.failed = true;
                self.error(&e.to_string())
            }));
        }
    }

    fn error(&self, problem: &str) -> MonitorError {
        MonitorError::Event {
            line: self.number,
            problem: problem.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_events_and_names_bad_lines() {
        let input = "# a comment\n\
            {\"time\":\"2026-11-23T10:00:00Z\",\"person\":\"A1\",\"search\":\"x\",\"age_group\":\"ks2\"}\n\
            \n\
            {\"time\":\"2026-11-23T10:00:00Z\",\"colour\":\"red\"}\n";
        let events: Vec<_> = read_events(input.as_bytes()).collect();
        assert_eq!(events.len(), 2);
        let first = events[0].as_ref().unwrap();
        assert_eq!(first.age_group, Some(AgeGroup::Ks2));
        assert_eq!(first.subject(), Some("A1"));
        let error = events[1].as_ref().unwrap_err().to_string();
        assert!(error.contains("line 4"), "{error}");
    }

    #[test]
    fn page_text_is_bounded() {
        let event = Event {
            text: Some("é".repeat(MAX_PAGE_TEXT)),
            ..Event::default()
        };
        let (_, text) = event.fields().next().unwrap();
        assert!(text.len() <= MAX_PAGE_TEXT);
    }
}
