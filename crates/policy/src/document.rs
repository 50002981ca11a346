//! The policy document: what a school writes (or the console saves) to say
//! which categories, lists and groups it has. TOML; unknown fields are
//! refused so that a typing mistake is an error, not a silent gap.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sheepdog_lists::sources::{SourceSpec, DEFAULT_MAX_BYTES};
use sheepdog_lists::ListFormat;

use crate::error::PolicyError;
use crate::Action;

/// A whole policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    /// The school's name and time zone.
    pub school: School,
    /// The school's own categories, added to the shipped taxonomy.
    #[serde(default)]
    pub categories: Vec<CategoryDef>,
    /// Extra or changed UT1 folder → category mappings.
    #[serde(default)]
    pub ut1_map: BTreeMap<String, String>,
    /// The lists to load.
    #[serde(default)]
    pub lists: Vec<ListDef>,
    /// Term dates, for schedules that apply in term time only.
    #[serde(default)]
    pub terms: Vec<Term>,
    /// Named time windows.
    #[serde(default)]
    pub schedules: Vec<ScheduleDef>,
    /// Local allow and deny lists that apply to every group.
    #[serde(default)]
    pub local: LocalLists,
    /// The filtering groups.
    pub groups: Vec<GroupDef>,
    /// The group used when a query names a group the policy does not have.
    #[serde(default)]
    pub fallback_group: Option<String>,
}

/// The school.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct School {
    /// Its name, shown on the block page.
    pub name: String,
    /// Its IANA time zone, for schedules.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
}

fn default_time_zone() -> String {
    "Europe/London".to_owned()
}

/// A category the school adds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryDef {
    /// Its identifier.
    pub id: String,
    /// Its title.
    pub title: String,
    /// A longer description.
    #[serde(default)]
    pub description: Option<String>,
}

/// A list source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListDef {
    /// Its name (`iwf`, `ut1`, `local-games`).
    pub name: String,
    /// A file or folder (relative to the policy file) or an HTTP(S) address.
    pub source: String,
    /// Its format; detected when absent.
    #[serde(default)]
    pub format: ListFormat,
    /// The category of its entries (UT1 folders bring their own).
    #[serde(default)]
    pub category: Option<String>,
    /// The law requires it (IWF, CTIRU): every entry is illegal content.
    #[serde(default)]
    pub legal_requirement: bool,
    /// Pinned SHA-256 of the content, in hex.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Largest accepted download, in bytes.
    #[serde(default)]
    pub max_bytes: Option<u64>,
    /// How often `serve` refreshes the list, in minutes: 360 when unset,
    /// 0 for never (see `cmd/list_refresh.rs` in the binary).
    #[serde(default)]
    pub refresh_minutes: Option<u32>,
}

impl ListDef {
    /// Where and how to fetch the list, for [`sheepdog_lists::sources`].
    pub fn source_spec(&self) -> SourceSpec {
        SourceSpec {
            name: self.name.clone(),
            location: self.source.clone(),
            format: self.format,
            sha256: self.sha256.clone(),
            max_bytes: self.max_bytes.unwrap_or(DEFAULT_MAX_BYTES),
        }
    }
}

/// A school term.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Term {
    /// Its name (`Autumn 1`).
    #[serde(default)]
    pub name: Option<String>,
    /// First day.
    pub start: NaiveDate,
    /// Last day (inclusive).
    pub end: NaiveDate,
}

/// A named, repeating time window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleDef {
    /// Its name, which group rules refer to.
    pub name: String,
    /// Days it starts on: `mon` … `sun`, or `weekdays`, `weekend`, `all`.
    pub days: Vec<String>,
    /// Local start time, `HH:MM`.
    pub start: String,
    /// Local end time, `HH:MM`; earlier than start for an overnight window.
    pub end: String,
    /// Only in term time.
    #[serde(default)]
    pub term_time_only: bool,
    /// Only outside term time (holidays).
    #[serde(default)]
    pub holidays_only: bool,
}

/// Local allow and deny entries: names (which cover their subdomains) or
/// URLs (anything with a `/`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalLists {
    /// Always allowed (except illegal content).
    #[serde(default)]
    pub allow: Vec<String>,
    /// Always blocked.
    #[serde(default)]
    pub deny: Vec<String>,
}

/// A filtering group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupDef {
    /// Its name (`ks2`, `staff`).
    pub name: String,
    /// A description for people.
    #[serde(default)]
    pub description: Option<String>,
    /// The action when no other rule applies.
    #[serde(default = "default_action")]
    pub default: Action,
    /// Actions per category.
    #[serde(default)]
    pub categories: BTreeMap<String, Action>,
    /// The group's own local allow entries.
    #[serde(default)]
    pub allow: Vec<String>,
    /// The group's own local deny entries.
    #[serde(default)]
    pub deny: Vec<String>,
    /// Safe search settings (enforced by the DNS server and proxy).
    #[serde(default)]
    pub safe_search: SafeSearch,
    /// Whether Apple's iCloud Private Relay may be used. Off by default:
    /// relayed traffic passes the filter unseen, so the DNS server tells
    /// Apple devices the network does not allow it (F5).
    #[serde(default)]
    pub allow_private_relay: bool,
    /// Rules that switch actions while a schedule is active.
    #[serde(default)]
    pub schedule: Vec<ScheduleRuleDef>,
    /// Time-bound exceptions.
    #[serde(default)]
    pub exceptions: Vec<ExceptionDef>,
}

fn default_action() -> Action {
    Action::Allow
}

/// While `schedule` is active, `category` (or everything) gets `action`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRuleDef {
    /// The schedule's name.
    pub schedule: String,
    /// The category; absent means every request.
    #[serde(default)]
    pub category: Option<String>,
    /// The action while active.
    pub action: Action,
}

/// A temporary rule, for example access to a site for one lesson.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExceptionDef {
    /// A name (covering subdomains) or a URL.
    pub target: String,
    /// Allow (the usual case) or block.
    #[serde(default = "default_action")]
    pub action: Action,
    /// When it starts.
    pub start: DateTime<Utc>,
    /// When it ends; past this it is ignored.
    pub end: DateTime<Utc>,
    /// Why (shown in logs and reports).
    pub reason: String,
    /// Who asked for it.
    #[serde(default)]
    pub requested_by: Option<String>,
    /// Who approved it.
    #[serde(default)]
    pub approved_by: Option<String>,
}

/// Safe search settings for a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SafeSearch {
    /// Google SafeSearch forced on.
    #[serde(default = "yes")]
    pub google: bool,
    /// YouTube restricted mode.
    #[serde(default)]
    pub youtube: YoutubeMode,
    /// Bing strict.
    #[serde(default = "yes")]
    pub bing: bool,
    /// DuckDuckGo safe search.
    #[serde(default = "yes")]
    pub duckduckgo: bool,
}

fn yes() -> bool {
    true
}

impl Default for SafeSearch {
    fn default() -> Self {
        SafeSearch {
            google: true,
            youtube: YoutubeMode::Strict,
            bing: true,
            duckduckgo: true,
        }
    }
}

/// YouTube restricted mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum YoutubeMode {
    /// No restriction.
    Off,
    /// restrictmoderate.youtube.com.
    Moderate,
    /// restrict.youtube.com.
    #[default]
    Strict,
}

impl PolicyDocument {
    /// Parses a policy from TOML text.
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        Ok(toml::from_str(text)?)
    }

    /// Reads a policy file.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// This document with `extra` time-bound exceptions added to the
    /// groups they name: how approved unblock requests reach the running
    /// policy. Exceptions for a group the document does not have are
    /// returned, not added, so the caller can say so.
    pub fn with_exceptions(
        &self,
        extra: impl IntoIterator<Item = (String, ExceptionDef)>,
    ) -> (Self, Vec<(String, ExceptionDef)>) {
        let mut doc = self.clone();
        let mut unplaced = Vec::new();
        for (group, exception) in extra {
            match doc.groups.iter_mut().find(|g| g.name == group) {
                Some(g) => g.exceptions.push(exception),
                None => unplaced.push((group, exception)),
            }
        }
        (doc, unplaced)
    }
}
