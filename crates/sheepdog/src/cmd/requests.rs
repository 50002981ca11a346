//! Approved unblock requests reaching the running policy.
//!
//! The store holds requests; the policy document on disk holds the school's
//! rules. Every [`REFRESH`] this task reads the approved requests whose end
//! is still ahead, adds them to the document as time-bound exceptions of
//! their group, and recompiles the policy against the snapshot in force
//! when the set has changed: no list is re-read, so a swap takes
//! milliseconds. The policy itself ignores an exception outside its start
//! and end, so access lapses at the end time even if this task is late.

use std::sync::Arc;
use std::time::Duration;

use sheepdog_policy::{Engine, PolicyDocument};
use sheepdog_store::requests::ApprovedException;
use sheepdog_store::Store;

/// How often approved requests are read.
pub const REFRESH: Duration = Duration::from_secs(15);

/// Keeps `engine` in step with approved requests until the task is
/// aborted.
pub fn spawn_exception_refresh(
    engine: Arc<Engine>,
    doc: PolicyDocument,
    store: Store,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut applied: Vec<ApprovedException> = Vec::new();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match store.approved_exceptions(chrono::Utc::now()).await {
                Ok(approved) if approved != applied => {
                    if apply(&engine, &doc, &approved) {
                        applied = approved;
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "cannot read approved unblock requests; the policy in force stays")
                }
            }
        }
    })
}

/// Approved requests as the policy's exceptions (the console's, so that
/// its immediate apply and this refresh build the same policy).
pub use sheepdog_console::requests::as_exceptions;

/// What the console needs of the running filter: the engine, the policy
/// file as loaded, and the longest time frame a request may ask for.
pub fn console_filtering(
    config: &sheepdog_config::Config,
    engine: Arc<Engine>,
) -> anyhow::Result<sheepdog_console::Filtering> {
    let doc = PolicyDocument::load(&config.filtering.policy)?;
    Ok(sheepdog_console::Filtering::new(
        engine,
        doc,
        chrono::Duration::hours(i64::from(config.filtering.request_max_hours)),
    ))
}

/// Recompiles the policy with `approved` as exceptions; false when it
/// could not (the policy in force stays, and the next tick tries again).
fn apply(engine: &Engine, doc: &PolicyDocument, approved: &[ApprovedException]) -> bool {
    let extra = as_exceptions(approved);
    let (with, unplaced) = doc.with_exceptions(extra);
    for (group, exception) in &unplaced {
        tracing::warn!(%group, target = %exception.target, "an approved request names a group the policy does not have; it is not applied");
    }
    match engine.recompile(&with) {
        Ok(()) => {
            tracing::info!(
                exceptions = approved.len() - unplaced.len(),
                "approved unblock requests applied to the policy"
            );
            true
        }
        Err(error) => {
            tracing::error!(%error, "cannot apply approved unblock requests; the policy in force stays");
            false
        }
    }
}
