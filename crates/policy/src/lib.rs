//! Group policies and the filtering decision for sheepdog.
//!
//! A [`PolicyDocument`] (TOML) describes the categories, list sources and
//! groups of a school. Compiled with a list snapshot from `sheepdog-lists`
//! it becomes a [`CompiledPolicy`], which answers [`Query`]s with a
//! [`Decision`]: the action, the category, list and rule behind it, a
//! reason for people, and whether the content is illegal. An [`Engine`]
//! holds the compiled policy for the DNS server and the proxy and swaps in
//! new ones atomically.
//!
//! # Precedence
//!
//! A decision walks these steps and stops at the first that applies:
//!
//! 1. **Illegal content.** A hit on a list marked `legal_requirement`, or
//!    in an illegal category (`iwf`, `ctiru`), is blocked with
//!    `illegal = true`. No rule below can change that, and a document that
//!    tries to give an illegal category any action but `block` is refused
//!    when it is compiled.
//! 2. **Local deny/allow.** The school's own lists (school-wide and the
//!    group's own). URL entries are checked first; then the longest matching
//!    name wins; on the same name a group's entry beats a school-wide one,
//!    and deny beats allow.
//! 3. **Time-bound exceptions.** The group's first exception in force
//!    (`start <= at < end`) whose name or URL covers the request. An
//!    exception past its end is ignored: it drops out by itself.
//! 4. **Schedules.** The group's first schedule rule whose schedule is
//!    active and whose category (if it names one) the request is in.
//! 5. **Categories.** Of the request's categories that the group sets an
//!    action for, the most restrictive action: block > warn > monitor >
//!    allow.
//! 6. **Group default.**
//!
//! Within a list, exception rules (`@@` in Adblock lists, RPZ
//! `rpz-passthru`) cancel that list's other rules for the request; they
//! never cancel another list.
//!
//! Decisions are pure: no I/O, no lock, no clock — the time is part of the
//! query.
#![forbid(unsafe_code)]

pub mod changes;
mod compile;
mod decide;
pub mod document;
mod engine;
mod error;
mod fast;
pub mod pdf;
pub mod report;
pub mod schedule;
pub mod taxonomy;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use compile::{
    build_snapshot, Category, CategoryId, CompiledPolicy, Exception, Group, ListOutcome,
};
pub use decide::{Decision, Query, Stage, Target, Verdict};
pub use document::{ExceptionDef, ListDef, PolicyDocument, SafeSearch, YoutubeMode};
pub use engine::Engine;
pub use error::PolicyError;

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Let it through.
    Allow,
    /// Let it through and raise a concern for monitoring.
    Monitor,
    /// Block until the user acknowledges a warning.
    Warn,
    /// Block.
    Block,
}

impl Action {
    /// How restrictive: allow 0, monitor 1, warn 2, block 3.
    pub fn severity(self) -> u8 {
        match self {
            Action::Allow => 0,
            Action::Monitor => 1,
            Action::Warn => 2,
            Action::Block => 3,
        }
    }

    /// The lower-case name used in documents and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Monitor => "monitor",
            Action::Warn => "warn",
            Action::Block => "block",
        }
    }

    pub(crate) fn verb(self) -> &'static str {
        match self {
            Action::Allow => "Allowed",
            Action::Monitor => "Allowed and monitored",
            Action::Warn => "Warned",
            Action::Block => "Blocked",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
