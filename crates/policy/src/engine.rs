//! Hot reload: the engine the DNS server and the proxy share.
//!
//! An [`Engine`] holds the current [`CompiledPolicy`] in an
//! [`arc_swap::ArcSwap`]. Decisions load the current policy without a lock
//! (a few atomic operations) and keep it alive for the length of the
//! decision; a rebuild happens on another thread, from the policy document
//! and lists, and is swapped in with one atomic store. A rebuild that fails
//! leaves the live policy untouched.
//!
//! Freeing a policy (its snapshot can be a hundred megabytes) is work a
//! decision must never do. With a plain `ArcSwap`, whichever thread drops
//! the last reference frees it, and after a swap that can be a deciding
//! thread finishing a decision. So the engine keeps every replaced policy
//! in a *retired* list, which holds a reference of its own: a reader's drop
//! is then only a counter decrement. [`Engine::reclaim`] (called by
//! [`Engine::swap`], [`Engine::rebuild`] and whatever background task does
//! reloads) frees retired policies that no reader holds any more, on the
//! calling thread. Readers never touch the retired list or its lock.
//!
//! The hot path is [`Engine::verdict`] (or [`Engine::current`] then
//! [`CompiledPolicy::verdict`]): no lock, no allocation for a normalised
//! name. [`Engine::decide`] adds the strings for people and allocates.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use sheepdog_lists::Snapshot;

use crate::compile::{build_snapshot, CompiledPolicy, ListOutcome};
use crate::decide::{Decision, Query, Verdict};
use crate::document::PolicyDocument;
use crate::error::PolicyError;

/// The shared, swappable decision engine.
#[derive(Debug)]
pub struct Engine {
    current: ArcSwap<CompiledPolicy>,
    /// Replaced policies, kept until no reader holds them; touched only by
    /// writers.
    retired: Mutex<Vec<Arc<CompiledPolicy>>>,
    /// Held by every change that reads the policy in force and puts a new
    /// one built from it: without it a list reload and an exception
    /// recompile running together could each swap in a policy missing the
    /// other's change. Decisions never take it.
    writer: Mutex<()>,
}

impl Engine {
    /// An engine deciding with `policy`.
    pub fn new(policy: CompiledPolicy) -> Self {
        Engine {
            current: ArcSwap::from_pointee(policy),
            retired: Mutex::new(Vec::new()),
            writer: Mutex::new(()),
        }
    }

    /// Decides against the current policy and explains the decision (with
    /// strings, so it allocates). Never waits for a rebuild.
    pub fn decide(&self, q: &Query<'_>) -> Decision {
        self.current.load().decide(q)
    }

    /// The compact verdict against the current policy: the hot path for the
    /// DNS server and the proxy. No lock, no allocation for a normalised
    /// name, never waits for a rebuild, never frees a policy.
    pub fn verdict(&self, q: &Query<'_>) -> Verdict {
        self.current.load().verdict(q)
    }

    /// The current policy, for callers that make several decisions or need
    /// [`CompiledPolicy::explain`] later.
    pub fn current(&self) -> Arc<CompiledPolicy> {
        self.current.load_full()
    }

    /// Puts a new policy in force; returns the old one. The old one is also
    /// retired (see the module documentation), so whichever thread drops
    /// the last *reader* reference, the memory is freed by a later
    /// [`Engine::reclaim`] on a background thread, never by a decision.
    pub fn swap(&self, policy: CompiledPolicy) -> Arc<CompiledPolicy> {
        let new = Arc::new(policy);
        let old = self.current.swap(new);
        self.retired_list().push(old.clone());
        self.reclaim();
        old
    }

    fn retired_list(&self) -> std::sync::MutexGuard<'_, Vec<Arc<CompiledPolicy>>> {
        self.retired.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Frees retired policies that nobody else holds, on the calling
    /// thread (call it from the reload task, never from a decision).
    /// Returns how many retired policies are still in use by readers.
    pub fn reclaim(&self) -> usize {
        let free: Vec<Arc<CompiledPolicy>> = {
            let mut retired = self.retired_list();
            let (free, keep): (Vec<_>, Vec<_>) =
                retired.drain(..).partition(|p| Arc::strong_count(p) == 1);
            *retired = keep;
            free
        };
        // Only the retired list held these, and nothing can reach them any
        // more: dropping them here, outside the lock, frees them.
        drop(free);
        self.retired_list().len()
    }

    /// Calls [`Engine::reclaim`] until nothing retired is in use or
    /// `patience` has passed. Decisions hold a policy for microseconds, so a
    /// few milliseconds is normally enough; what is still held (a request
    /// waiting on upstream DNS, say) is freed by a later call.
    pub fn reclaim_within(&self, patience: Duration) -> usize {
        let start = std::time::Instant::now();
        loop {
            let left = self.reclaim();
            if left == 0 || start.elapsed() >= patience {
                return left;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Compiles `doc` against the snapshot in force and swaps it in: for
    /// changes that need no list rebuilt, such as time-bound exceptions.
    /// Lists the document adds are not read; use [`Engine::rebuild`].
    pub fn recompile(&self, doc: &PolicyDocument) -> Result<(), PolicyError> {
        {
            let _writer = self.writer_lock();
            let snapshot = self.current.load().snapshot().clone();
            let policy = CompiledPolicy::compile(doc, snapshot)?;
            drop(self.swap(policy));
        }
        self.reclaim_within(Duration::from_millis(50));
        Ok(())
    }

    /// Puts `snapshot` (freshly built lists) under the rules in force: the
    /// current policy's document, with whatever exceptions were applied to
    /// it, is compiled against the new snapshot and swapped in. Build the
    /// snapshot first, off the hot path; this only compiles the rules
    /// (milliseconds). On error the live policy stays.
    pub fn replace_snapshot(&self, snapshot: Arc<Snapshot>) -> Result<(), PolicyError> {
        {
            let _writer = self.writer_lock();
            let current = self.current.load_full();
            let policy = CompiledPolicy::compile(current.document(), snapshot)?;
            drop(self.swap(policy));
        }
        self.reclaim_within(Duration::from_millis(50));
        Ok(())
    }

    fn writer_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
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
        {
            let _writer = self.writer_lock();
            let policy = CompiledPolicy::compile(doc, Arc::new(snapshot))?;
            drop(self.swap(policy));
        }
        self.reclaim_within(Duration::from_millis(50));
        Ok(outcomes)
    }
}
