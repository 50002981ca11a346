//! Safeguarding monitoring: from what children search for and read to
//! concerns a designated safeguarding lead can act on.
//!
//! The pipeline, each step its own module:
//!
//! 1. [`library`]: keyword libraries in TOML, shipped in English, Polish
//!    and Urdu in Latin letters, and added to by schools;
//! 2. [`normalise`]: text reduced to one canonical form that sees through
//!    the usual disguises (leetspeak, look-alike letters, stretched and
//!    spelled-out words, percent-encoding), keeping a map back to the
//!    original;
//! 3. [`matcher`]: every term found in one pass of a multi-pattern
//!    automaton, with word boundaries, exclusions and context words;
//! 4. [`grade`]: hits graded 1 to 5 by severity, repetition, age group and
//!    what the filter did, into concerns;
//! 5. [`eval`]: precision and recall on a labelled corpus.
//!
//! Events come in as JSON lines ([`event`]) or are followed in the store as
//! the DNS resolver and proxy write them ([`live`]), which records their
//! concerns as alerts.

#![forbid(unsafe_code)]

pub mod delivery;
pub mod eval;
pub mod event;
pub mod grade;
pub mod library;
pub mod live;
pub mod matcher;
pub mod normalise;

pub use delivery::{Delivery, DeliveryCounts};
pub use eval::{eval, shipped_corpus, Case, EvalReport, Score};
pub use event::{read_events, AgeGroup, Decision, Event, Field};
pub use grade::{concerns_of, Concern, FieldHit, GradeFactors, GradingRules, Monitor};
pub use library::{Category, Library, Position};
pub use live::{
    CircumventionRule, GroupMonitoring, LiveMonitor, LiveOptions, ScanCounts, CIRCUMVENTION,
    CIRCUMVENTION_CATEGORIES,
};
pub use matcher::{Hit, Matcher};
pub use normalise::{normalise, normalise_into, Normalised};

/// Why monitoring refused input or could not start.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("keyword library {origin}: {problem}")]
    Library { origin: String, problem: String },
    #[error("unknown monitoring category `{0}`; the categories are illegal, bullying, cse-grooming, discrimination, drugs, extremism, gambling, pornography, self-harm, suicide, violence")]
    UnknownCategory(String),
    #[error("monitoring cannot read events or record alerts: {0}")]
    Store(#[from] sheepdog_store::StoreError),
    #[error("notifying the DSL team: {0}")]
    Delivery(String),
    #[error("cannot build the keyword automaton: {0}")]
    Build(String),
    #[error("event on line {line}: {problem}")]
    Event { line: usize, problem: String },
    #[error("corpus ({language}) line {line}: {problem}")]
    Corpus {
        language: String,
        line: usize,
        problem: String,
    },
}

#[cfg(test)]
mod proptests;
