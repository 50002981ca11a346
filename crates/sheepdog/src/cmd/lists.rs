//! `sheepdog lists import|update|stats`: list sources, last good copies and
//! the compiled snapshot.
//!
//! Files under the data directory: `lists/cache/<list>/current` (each list's
//! last good copy, with `meta.json`) and `lists/snapshot.sdsnap` (the
//! compiled snapshot the servers memory-map on start).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use sheepdog_lists::sources;
use sheepdog_lists::{Snapshot, SnapshotBuilder};
use sheepdog_policy::{build_snapshot, CompiledPolicy, Engine, ListDef, PolicyDocument};

/// What to do with lists.
#[derive(clap::Subcommand, Debug)]
pub enum ListsCommand {
    /// Install a local file as a list's last good copy (for lists delivered
    /// by hand, such as a member's copy of the IWF list) and rebuild the
    /// snapshot from the last good copies.
    Import {
        /// The list's name in the policy.
        #[arg(long)]
        list: String,
        /// The file to import.
        file: PathBuf,
    },
    /// Refresh every list from its source (keeping last good copies when a
    /// fetch fails or a list shrinks by more than half) and rebuild the
    /// snapshot.
    Update,
    /// Show the snapshot: entries per list, bad lines and categories.
    Stats {
        /// Also list the first bad lines of each list, with file and line.
        #[arg(long)]
        bad_lines: bool,
    },
}

/// The snapshot file under a data directory.
pub fn snapshot_path(data_dir: &Path) -> PathBuf {
    data_dir.join("lists").join("snapshot.sdsnap")
}

pub(crate) fn cache_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("lists").join("cache")
}

pub(crate) fn base_dir(policy_path: &Path) -> PathBuf {
    policy_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Runs a lists command.
pub fn run(cmd: ListsCommand, policy_path: &Path, data_dir: &Path) -> anyhow::Result<()> {
    let doc = PolicyDocument::load(policy_path)
        .with_context(|| format!("reading the policy {}", policy_path.display()))?;
    let base = base_dir(policy_path);
    match cmd {
        ListsCommand::Import { list, file } => {
            let Some(def) = doc.lists.iter().find(|l| l.name == list) else {
                bail!("the policy has no list called {list:?}");
            };
            let spec = def.source_spec();
            let outcome = sources::import_file(&spec, &file, &cache_dir(data_dir))
                .with_context(|| format!("importing {}", file.display()))?;
            println!("imported {} entries into list {list}", outcome.entries);
            let snapshot = snapshot_from_last_good_warning(&doc.lists, &base, data_dir)?;
            finish(&doc, snapshot, data_dir)
        }
        ListsCommand::Update => {
            let (snapshot, outcomes) = build_snapshot(&doc, &base, Some(&cache_dir(data_dir)))?;
            for o in &outcomes {
                let status = o
                    .status
                    .map_or("not loaded".to_owned(), |s| format!("{s:?}"));
                println!("{:<20} {status}", o.name);
                if let Some(w) = &o.warning {
                    eprintln!("warning: {w}");
                }
            }
            finish(&doc, snapshot, data_dir)
        }
        ListsCommand::Stats { bad_lines } => {
            let path = snapshot_path(data_dir);
            let snapshot = Snapshot::open(&path).with_context(|| {
                format!(
                    "opening {} (run `sheepdog lists update` first)",
                    path.display()
                )
            })?;
            print_stats(&snapshot, bad_lines);
            Ok(())
        }
    }
}

/// The filtering engine the servers use: the compiled snapshot in the data
/// directory when there is one, else one built from each list's last good
/// copy and saved. The snapshot is read into memory (`open_resident`:
/// milliseconds for a million names) rather than mapped, so that a server
/// that runs for months never reads a file that someone has since
/// truncated or rewritten in place: a truncated mapping kills the process
/// with SIGBUS on the next look-up.
pub fn load_engine(policy_path: &Path, data_dir: &Path) -> anyhow::Result<Engine> {
    let doc = PolicyDocument::load(policy_path)
        .with_context(|| format!("reading the policy {}", policy_path.display()))?;
    let path = snapshot_path(data_dir);
    let saved = if path.is_file() {
        match Snapshot::open_resident(&path) {
            Ok(snapshot) => Some(snapshot),
            // An older format or a damaged file: rebuild from the copies.
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "rebuilding the snapshot");
                None
            }
        }
    } else {
        None
    };
    let snapshot = if let Some(snapshot) = saved {
        snapshot
    } else {
        let snapshot =
            snapshot_from_last_good_warning(&doc.lists, &base_dir(policy_path), data_dir)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        snapshot
            .write_to(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        snapshot
    };
    let policy = CompiledPolicy::compile(&doc, std::sync::Arc::new(snapshot))
        .context("compiling the policy")?;
    Ok(Engine::new(policy))
}

/// Builds a snapshot from each list's last good copy, or from its source
/// when it is a local file or folder and has no copy yet. Also returns what
/// the operator must be told: lists left out, and why.
pub(crate) fn snapshot_from_last_good(
    lists: &[ListDef],
    base: &Path,
    data_dir: &Path,
) -> anyhow::Result<(Snapshot, Vec<String>)> {
    let mut builder = SnapshotBuilder::new();
    let mut warnings = Vec::new();
    for def in lists {
        let cached = sources::cache_dir_for(&cache_dir(data_dir), &def.name).join("current");
        let path = if cached.is_file() {
            cached
        } else if def.source.starts_with("http://") || def.source.starts_with("https://") {
            warnings.push(format!(
                "list {} has no local copy yet; run `sheepdog lists update`",
                def.name
            ));
            continue;
        } else {
            base.join(&def.source)
        };
        let id = builder.add_list(&def.name, def.legal_requirement, def.category.as_deref())?;
        if let Err(e) = sheepdog_lists::add_path(&mut builder, id, &path, def.format) {
            warnings.push(format!("list {}: {e}; it is not in force", def.name));
        }
    }
    Ok((builder.build()?, warnings))
}

/// [`snapshot_from_last_good`] for a command: warnings go to stderr.
pub(crate) fn snapshot_from_last_good_warning(
    lists: &[ListDef],
    base: &Path,
    data_dir: &Path,
) -> anyhow::Result<Snapshot> {
    let (snapshot, warnings) = snapshot_from_last_good(lists, base, data_dir)?;
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
    Ok(snapshot)
}

/// Checks the snapshot against the policy, writes it, prints stats.
fn finish(doc: &PolicyDocument, snapshot: Snapshot, data_dir: &Path) -> anyhow::Result<()> {
    let snapshot = std::sync::Arc::new(snapshot);
    // Refuse to install a snapshot the policy cannot compile against.
    CompiledPolicy::compile(doc, snapshot.clone()).context("compiling the policy")?;
    let path = snapshot_path(data_dir);
    snapshot
        .write_to(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    println!("snapshot written to {}", path.display());
    print_stats(&snapshot, false);
    Ok(())
}

fn print_stats(snapshot: &Snapshot, bad_lines: bool) {
    let s = snapshot.stats();
    println!(
        "names {}  url rules {}  regex rules {}  index {} bytes{}",
        s.names,
        s.url_rules,
        s.regex_rules,
        s.index_bytes,
        if s.mapped { " (mapped)" } else { "" }
    );
    println!(
        "{:<20} {:>9} {:>9} {:>11} {:>7}  {:<8} legal",
        "list", "lines", "entries", "unsupported", "invalid", "format"
    );
    for l in snapshot.lists() {
        let r = &l.report;
        println!(
            "{:<20} {:>9} {:>9} {:>11} {:>7}  {:<8} {}",
            l.name,
            r.lines,
            r.entries,
            r.unsupported,
            r.invalid,
            r.format.map_or("-", |f| f.as_str()),
            if l.legal_requirement { "yes" } else { "" }
        );
        for (alias, target) in &l.aliases {
            println!("    alias {alias} -> {target}");
        }
        if bad_lines {
            for b in &r.bad_lines {
                println!("    {}:{}: {}", b.file, b.line, b.reason);
            }
        }
    }
    println!("categories: {}", snapshot.categories().join(", "));
}
