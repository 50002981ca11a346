//! Hot reload: the engine the DNS server and the proxy share.
//!
//! An [`Engine`] holds the current [`CompiledPolicy`] in an
//! [`arc_swap::ArcSwap`]. Decisions load the current policy without a lock
//! (a few atomic operations) and keep it alive for the length of the
//! decision; a rebuild happens on another thread, from the policy document
//! and lists, and is swapped in with one atomic store. A rebuild that fails
//! leaves the live policy untouched.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::compile::{build_snapshot, CompiledPolicy, ListOutcome};
use crate::decide::{Decision, Query, Verdict};
use crate::document::PolicyDocument;
use crate::error::PolicyError;

/// The shared, swappable decision engine.
#[derive(Debug)]
pub struct Engine {
    current: ArcSwap<CompiledPolicy>,
}

impl Engine {
    /// An engine deciding with `policy`.
    pub fn new(policy: CompiledPolicy) -> Self {
        Engine {
            current: ArcSwap::from_pointee(policy),
        }
    }

    /// Decides against the current policy. Never waits for a rebuild.
    pub fn decide(&self, q: &Query<'_>) -> Decision {
        self.current.load().decide(q)
    }

    /// The compact verdict against the current policy.
    pub fn verdict(&self, q: &Query<'_>) -> Verdict {
        self.current.load().verdict(q)
    }

    /// The current policy, for callers that make several decisions or need
    /// [`CompiledPolicy::explain`] later.
    pub fn current(&self) -> Arc<CompiledPolicy> {
        self.current.load_full()
    }

    /// Puts a new policy in force; returns the old one.
    pub fn swap(&self, policy: CompiledPolicy) -> Arc<CompiledPolicy> {
        self.current.swap(Arc::new(policy))
    }

    /// Rebuilds from a document and its lists (refreshing sources into
    /// `cache_dir` when given) and swaps the result in. Call it from a
    /// background thread. On error the live policy stays.
    pub fn rebuild(
        &self,
        doc: &PolicyDocument,
        base_dir: &Path,
        cache_dir: Option<&Path>,
    ) -> Result<Vec<ListOutcome>, PolicyError> {
        let (snapshot, outcomes) = build_snapshot(doc, base_dir, cache_dir)?;
        let policy = CompiledPolicy::compile(doc, Arc::new(snapshot))?;
        self.swap(policy);
        Ok(outcomes)
    }
}
