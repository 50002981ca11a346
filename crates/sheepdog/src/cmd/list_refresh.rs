//! Lists kept current while serving (issue 3: sources refreshed on a
//! schedule, hot reload).
//!
//! A background thread wakes every `[filtering] list_check_seconds` (60 by
//! default) and does one *round*:
//! - every list whose refresh is due (`refresh_minutes` in the policy,
//!   [`DEFAULT_REFRESH_MINUTES`] when unset, `0` for never) is fetched into
//!   its cache folder, conditionally, keeping the last good copy when the
//!   fetch fails or the list shrinks by more than half;
//! - when any list changed, the snapshot is rebuilt from the last good
//!   copies, written beside the old one (an atomic rename, so `serve`'s
//!   mapping of the old file stays valid) and put in force under the rules
//!   in force, exceptions included ([`Engine::replace_snapshot`]);
//! - when nothing was due but the snapshot file was replaced by someone
//!   else (`sheepdog lists update` or `lists import` run by an operator),
//!   that file is put in force, so those commands need no restart.
//!
//! The thread runs at the lowest priority (nice 19): rebuilding a
//! million-name list takes a core for a second or two, and that second must
//! come from idle time, not from the DNS and proxy workers' decisions.
//! Decisions never wait for any of this: the swap is one atomic store.
//!
//! The rebuild itself runs in a child process (this program's hidden
//! `build-snapshot` command, also at nice 19), which writes the new
//! snapshot beside the live one; `serve` then reads that file, compiles its
//! rules against it, swaps, and only then renames it over the live file.
//! Why a process and not just a thread: building a million-name snapshot
//! peaks at some 70 MB, which the resolver would otherwise hold (and its
//! allocator keep) after every reload, and the build parses lists fetched
//! from elsewhere: whatever a bad list does to the builder happens to the
//! child, not to the resolver. (It does not remove the rare 4.6 ms stalls
//! a deciding thread shows on the benchmark VM while memory is filled and
//! freed: those come with such churn in any process; docs/benchmarks.md,
//! session 8.) When the child cannot be started at all, the rebuild runs
//! on this thread as before and says so.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use sheepdog_lists::sources::{self, FetchStatus};
use sheepdog_lists::Snapshot;
use sheepdog_policy::{Engine, PolicyDocument};

use super::lists;

/// How often a list is refreshed when the policy does not say.
pub const DEFAULT_REFRESH_MINUTES: u32 = 360;

/// The running refresh thread; dropping it stops the thread.
#[derive(Debug)]
pub struct ListRefresh {
    _stop: mpsc::Sender<()>,
}

/// Starts the refresh thread for `engine`, whose lists are those of the
/// policy at `policy_path` with caches and snapshot under `data_dir`;
/// rebuilds run in `build_in`.
pub fn spawn(
    engine: Arc<Engine>,
    policy_path: &Path,
    data_dir: &Path,
    check_every: Duration,
    build_in: BuildPlace,
) -> anyhow::Result<ListRefresh> {
    let mut refresher = Refresher::new(engine, policy_path, data_dir);
    refresher.build_in = build_in;
    let (stop, stopped) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("list-refresh".to_owned())
        .spawn(move || {
            lower_this_thread();
            // A message or a dropped sender both mean stop.
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(check_every) {
                refresher.round(SystemTime::now());
            }
        })
        .context("starting the list refresh thread")?;
    Ok(ListRefresh { _stop: stop })
}

/// Nice 19 for the calling thread only (Linux applies a thread id's nice
/// value to that thread). A failure is logged, not fatal: refreshing at
/// normal priority is slower for decisions, not wrong.
fn lower_this_thread() {
    let tid = rustix::thread::gettid();
    if let Err(error) = rustix::process::setpriority_process(Some(tid), 19) {
        tracing::warn!(%error, "cannot lower the list refresh thread's priority");
    }
}

/// What one round did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Round {
    /// Nothing was due and the snapshot file is the one in force.
    Unchanged,
    /// A new snapshot is in force, with this many names.
    Swapped { names: u64, why: SwapCause },
    /// Something failed; the policy in force stays (the reason is logged).
    Failed,
}

/// Why a round put a new snapshot in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwapCause {
    /// A due list had changed at its source.
    ListsChanged,
    /// The snapshot file was replaced by another command.
    SnapshotReplaced,
}

/// A file's identity and version, to notice a replaced snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    device: u64,
    inode: u64,
    modified: Option<SystemTime>,
    len: u64,
}

impl FileStamp {
    fn of(path: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok()?;
        Some(Self {
            device: meta.dev(),
            inode: meta.ino(),
            modified: meta.modified().ok(),
            len: meta.len(),
        })
    }
}

/// Where a rebuild's memory-heavy work (parsing the lists, building the
/// index) runs; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildPlace {
    /// On the refresh thread, in `serve`'s own address space.
    InProcess,
    /// In a child process running this program (the path) with
    /// `build-snapshot`.
    ChildProcess(PathBuf),
}

impl BuildPlace {
    /// A child process of this program, or, when this program's path
    /// cannot be found, this process (and a warning).
    pub fn child_of_this_program() -> Self {
        match std::env::current_exe() {
            Ok(program) => Self::ChildProcess(program),
            Err(error) => {
                tracing::warn!(
                    %error,
                    "cannot find this program to rebuild lists in a child process; rebuilding in this one"
                );
                Self::InProcess
            }
        }
    }
}

/// The refresh thread's state: what it last saw, and when each list was
/// last checked.
pub struct Refresher {
    engine: Arc<Engine>,
    base_dir: PathBuf,
    data_dir: PathBuf,
    snapshot_seen: Option<FileStamp>,
    checked: HashMap<String, SystemTime>,
    /// Where rebuilds run: in this process unless [`spawn`] found the
    /// program to start as a child.
    pub build_in: BuildPlace,
}

impl Refresher {
    /// State for `engine`, taking the snapshot file as it is now to be the
    /// one in force (the engine was just loaded from it).
    pub fn new(engine: Arc<Engine>, policy_path: &Path, data_dir: &Path) -> Self {
        Self {
            engine,
            base_dir: lists::base_dir(policy_path),
            data_dir: data_dir.to_path_buf(),
            snapshot_seen: FileStamp::of(&lists::snapshot_path(data_dir)),
            checked: HashMap::new(),
            build_in: BuildPlace::InProcess,
        }
    }

    /// One round at time `now`; see the module documentation.
    pub fn round(&mut self, now: SystemTime) -> Round {
        let started = Instant::now();
        let doc = self.engine.current().document().clone();
        let (due, changed) = self.refresh_due(&doc, now);
        let snapshot_path = lists::snapshot_path(&self.data_dir);
        let result = if changed {
            self.rebuild(&doc, &snapshot_path)
                .map(|names| (names, SwapCause::ListsChanged))
        } else if FileStamp::of(&snapshot_path) != self.snapshot_seen {
            self.adopt(&snapshot_path)
                .map(|names| (names, SwapCause::SnapshotReplaced))
        } else {
            return Round::Unchanged;
        };
        match result {
            Ok((names, why)) => {
                metrics::counter!("sheepdog_list_reloads_total").increment(1);
                metrics::gauge!("sheepdog_snapshot_names").set(names as f64);
                tracing::info!(
                    names,
                    ?why,
                    lists_checked = due,
                    took_ms = started.elapsed().as_millis() as u64,
                    "new list snapshot in force"
                );
                Round::Swapped { names, why }
            }
            Err(error) => {
                metrics::counter!("sheepdog_list_reload_failures_total").increment(1);
                tracing::error!(
                    error = format!("{error:#}"),
                    "cannot reload the lists; the snapshot in force stays"
                );
                Round::Failed
            }
        }
    }

    /// Refreshes every due list into the cache. Returns how many were due
    /// and whether any of them changed.
    fn refresh_due(&mut self, doc: &PolicyDocument, now: SystemTime) -> (usize, bool) {
        let cache = lists::cache_dir(&self.data_dir);
        let mut due = 0;
        let mut changed = false;
        for def in &doc.lists {
            let minutes = def.refresh_minutes.unwrap_or(DEFAULT_REFRESH_MINUTES);
            if minutes == 0 {
                continue;
            }
            let last = self
                .checked
                .get(&def.name)
                .copied()
                .or_else(|| sources::last_checked(&cache, &def.name));
            let every = Duration::from_secs(u64::from(minutes) * 60);
            if last.is_some_and(|at| at + every > now) {
                continue;
            }
            due += 1;
            self.checked.insert(def.name.clone(), now);
            let spec = def.source_spec();
            match sources::refresh(&spec, &self.base_dir, &cache) {
                Ok(outcome) => {
                    if let Some(warning) = &outcome.warning {
                        metrics::counter!("sheepdog_list_refresh_failures_total", "list" => def.name.clone()).increment(1);
                        tracing::warn!(list = %def.name, "{warning}");
                    }
                    changed |= outcome.status == FetchStatus::Updated;
                }
                Err(error) => {
                    metrics::counter!("sheepdog_list_refresh_failures_total", "list" => def.name.clone()).increment(1);
                    tracing::warn!(list = %def.name, %error, "cannot refresh a list, and it has no last good copy");
                }
            }
        }
        (due, changed)
    }

    /// Builds a snapshot from the last good copies, puts it in force and
    /// writes it for the next start. Returns its name count.
    fn rebuild(&mut self, doc: &PolicyDocument, path: &Path) -> anyhow::Result<u64> {
        if let BuildPlace::ChildProcess(program) = self.build_in.clone() {
            match self.rebuild_in_child(&program, doc, path) {
                Err(ChildBuild::NotStarted(error)) => tracing::warn!(
                    program = %program.display(),
                    %error,
                    "cannot start a process to rebuild the lists; rebuilding in this one"
                ),
                Err(ChildBuild::Failed(error)) => return Err(error),
                Ok(names) => return Ok(names),
            }
        }
        let (snapshot, warnings) =
            lists::snapshot_from_last_good(&doc.lists, &self.base_dir, &self.data_dir)?;
        for warning in &warnings {
            tracing::warn!("{warning}");
        }
        let snapshot = Arc::new(snapshot);
        let names = snapshot.stats().names;
        // In force first: a snapshot the rules cannot compile against is
        // refused here and never replaces the file a restart loads.
        self.engine
            .replace_snapshot(snapshot.clone())
            .context("compiling the policy against the rebuilt lists")?;
        snapshot.write_to(path).with_context(|| {
            format!(
                "writing {} (the new lists are in force until a restart)",
                path.display()
            )
        })?;
        self.snapshot_seen = FileStamp::of(path);
        Ok(names)
    }

    /// [`Refresher::rebuild`] with the build in a child process: the child
    /// writes `path` with the extension `next`; it is read and put in
    /// force here, and only then renamed over `path`, so a snapshot the
    /// rules cannot compile against never replaces the one a restart loads.
    fn rebuild_in_child(
        &mut self,
        program: &Path,
        doc: &PolicyDocument,
        path: &Path,
    ) -> Result<u64, ChildBuild> {
        let next = path.with_extension("next");
        let request = serde_json::to_vec(&doc.lists)
            .context("writing the list definitions for the build")
            .map_err(ChildBuild::Failed)?;
        let mut child = std::process::Command::new(program)
            .arg("build-snapshot")
            .arg("--base")
            .arg(&self.base_dir)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--out")
            .arg(&next)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(ChildBuild::NotStarted)?;
        // A child that dies before reading its request shows as a failed
        // exit below, with its own message; the write error adds nothing.
        if let Some(mut stdin) = child.stdin.take() {
            let _ = std::io::Write::write_all(&mut stdin, &request);
        }
        let output = child
            .wait_with_output()
            .context("waiting for the list build process")
            .map_err(ChildBuild::Failed)?;
        let said = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            let _ = std::fs::remove_file(&next);
            return Err(ChildBuild::Failed(anyhow::anyhow!(
                "the list build process failed ({}): {}",
                output.status,
                said.trim()
            )));
        }
        for warning in said.lines().filter_map(|l| l.strip_prefix("warning: ")) {
            tracing::warn!("{warning}");
        }
        let put_in_force = || -> anyhow::Result<u64> {
            let snapshot = Snapshot::open_resident(&next)
                .with_context(|| format!("opening the rebuilt {}", next.display()))?;
            let names = snapshot.stats().names;
            self.engine
                .replace_snapshot(Arc::new(snapshot))
                .context("compiling the policy against the rebuilt lists")?;
            std::fs::rename(&next, path).with_context(|| {
                format!(
                    "renaming {} to {} (the new lists are in force until a restart)",
                    next.display(),
                    path.display()
                )
            })?;
            Ok(names)
        };
        let names = put_in_force().map_err(|error| {
            let _ = std::fs::remove_file(&next);
            ChildBuild::Failed(error)
        })?;
        self.snapshot_seen = FileStamp::of(path);
        Ok(names)
    }

    /// Puts the snapshot file at `path` in force (read into memory, as at
    /// start: see [`lists::load_engine`]).
    fn adopt(&mut self, path: &Path) -> anyhow::Result<u64> {
        // Seen even if it is refused below, so a bad file is reported once,
        // not every round.
        self.snapshot_seen = FileStamp::of(path);
        let snapshot =
            Snapshot::open_resident(path).with_context(|| format!("opening {}", path.display()))?;
        let names = snapshot.stats().names;
        self.engine
            .replace_snapshot(Arc::new(snapshot))
            .context("compiling the policy against the new snapshot")?;
        Ok(names)
    }
}

/// Why a rebuild in a child process did not put a snapshot in force.
enum ChildBuild {
    /// The process could not be started: the rebuild may run here instead.
    NotStarted(std::io::Error),
    /// It ran, or its result was refused: the policy in force stays.
    Failed(anyhow::Error),
}

/// The hidden `build-snapshot` command: `serve`'s list rebuild, run as a
/// child process (see the module documentation).
#[derive(clap::Args, Debug)]
pub struct BuildSnapshotArgs {
    /// The folder list sources are relative to (the policy file's).
    #[arg(long)]
    base: PathBuf,
    /// The data directory holding the lists' last good copies.
    #[arg(long)]
    data_dir: PathBuf,
    /// Where to write the snapshot.
    #[arg(long)]
    out: PathBuf,
}

/// Runs `build-snapshot`: reads the list definitions (JSON) from stdin,
/// builds the snapshot from their last good copies at nice 19, and writes
/// it to `--out`; warnings go to stderr, one `warning: ` line each.
pub fn build_snapshot(args: &BuildSnapshotArgs) -> anyhow::Result<()> {
    if let Err(error) = rustix::process::setpriority_process(None, 19) {
        eprintln!("warning: cannot lower the list build's priority: {error}");
    }
    let mut request = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin(), &mut request)
        .context("reading the list definitions")?;
    let definitions: Vec<sheepdog_policy::ListDef> =
        serde_json::from_slice(&request).context("reading the list definitions")?;
    lists::snapshot_from_last_good_warning(&definitions, &args.base, &args.data_dir)?
        .write_to(&args.out)
        .with_context(|| format!("writing {}", args.out.display()))
}

#[cfg(test)]
mod tests;
