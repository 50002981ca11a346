//! `sheepdog check NAME_OR_URL --group G [--at TIME]`: what the filter would
//! do, and the rule behind it.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use sheepdog_lists::Snapshot;
use sheepdog_policy::{build_snapshot, CompiledPolicy, PolicyDocument, Query, Target};

/// Arguments of `sheepdog check`.
#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// A host name (`www.example.com`) or a URL (`https://example.com/page`).
    pub name_or_url: String,
    /// The group to decide for (`ks2`, `staff`, …).
    #[arg(long)]
    pub group: String,
    /// When: RFC 3339 (`2026-10-05T09:30:00Z`) or the school's local time
    /// (`2026-10-05 09:30`). Now when absent.
    #[arg(long)]
    pub at: Option<String>,
    /// Read the lists from their sources instead of the compiled snapshot.
    #[arg(long)]
    pub from_sources: bool,
}

/// Runs `sheepdog check`.
pub fn run(args: CheckArgs, policy_path: &Path, data_dir: &Path) -> anyhow::Result<()> {
    let doc = PolicyDocument::load(policy_path)
        .with_context(|| format!("reading the policy {}", policy_path.display()))?;
    let snapshot = snapshot_for(&doc, policy_path, data_dir, args.from_sources)?;
    let policy =
        CompiledPolicy::compile(&doc, Arc::new(snapshot)).context("compiling the policy")?;
    let at = match &args.at {
        None => Utc::now(),
        Some(text) => parse_time(text, &policy)?,
    };
    let target = if args.name_or_url.contains('/') {
        Target::Url(&args.name_or_url)
    } else {
        Target::Name(&args.name_or_url)
    };
    let d = policy.decide(&Query {
        group: &args.group,
        target,
        at,
    });
    println!("decision: {}", d.action);
    println!("reason:   {}", d.reason);
    println!("stage:    {:?}", d.stage);
    println!("illegal:  {}", if d.illegal { "yes" } else { "no" });
    println!("group:    {}", d.group.as_deref().unwrap_or("(none)"));
    println!("category: {}", d.category.as_deref().unwrap_or("-"));
    println!("list:     {}", d.list.as_deref().unwrap_or("-"));
    println!("rule:     {}", d.rule.as_deref().unwrap_or("-"));
    if let Some(rpz) = d.rpz {
        println!("rpz:      {rpz:?}");
    }
    println!(
        "at:       {} ({})",
        at.with_timezone(&policy.time_zone())
            .format("%Y-%m-%d %H:%M %Z"),
        at.format("%Y-%m-%dT%H:%M:%SZ")
    );
    Ok(())
}

/// The compiled snapshot in the data directory, or one built from the
/// lists' sources when asked (or when none has been compiled yet).
pub fn snapshot_for(
    doc: &PolicyDocument,
    policy_path: &Path,
    data_dir: &Path,
    from_sources: bool,
) -> anyhow::Result<Snapshot> {
    let snapshot_file = data_dir.join("lists").join("snapshot.sdsnap");
    if !from_sources && snapshot_file.is_file() {
        return Snapshot::open(&snapshot_file)
            .with_context(|| format!("opening {}", snapshot_file.display()));
    }
    let base = policy_path.parent().unwrap_or(Path::new("."));
    let (snapshot, outcomes) = build_snapshot(doc, base, None)?;
    for w in outcomes.iter().filter_map(|o| o.warning.as_ref()) {
        eprintln!("warning: {w}");
    }
    Ok(snapshot)
}

pub fn parse_time(text: &str, policy: &CompiledPolicy) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return match policy.time_zone().from_local_datetime(&naive).earliest() {
                Some(t) => Ok(t.with_timezone(&Utc)),
                None => bail!("{text} does not exist in {}", policy.time_zone()),
            };
        }
    }
    bail!("cannot read the time {text:?}: use 2026-10-05T09:30:00Z or \"2026-10-05 09:30\"")
}
