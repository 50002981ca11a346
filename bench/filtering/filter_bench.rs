//! Filtering benchmarks: synthetic list generation, compile time and memory,
//! decision latency, and decision latency while a reload happens.
//!
//! Run through `bench/filtering/run.sh`; built as the `filter_bench`
//! example of sheepdog-policy. Synthetic names only (`*.test`-style labels).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use sheepdog_lists::{add_path, ListFormat, Snapshot, SnapshotBuilder};
use sheepdog_policy::{CompiledPolicy, Engine, PolicyDocument, Query, Target};

/// A small deterministic generator (xorshift), so runs are repeatable.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn label(&mut self, min: usize, max: usize) -> String {
        let len = min + (self.next() as usize % (max - min + 1));
        (0..len)
            .map(|_| (b'a' + (self.next() % 26) as u8) as char)
            .collect()
    }
}

const TLDS: &[&str] = &[
    "com", "net", "org", "uk", "co.uk", "de", "fr", "io", "info", "ru", "xyz", "online", "site",
    "top", "biz", "eu", "nl", "it", "es", "pl",
];

fn name(rng: &mut Rng) -> String {
    let tld = TLDS[rng.next() as usize % TLDS.len()];
    let base = rng.label(5, 14);
    match rng.next() % 4 {
        0 => format!("{}.{base}.{tld}", rng.label(2, 6)),
        _ => format!("{base}.{tld}"),
    }
}

fn rss_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn gen(n: usize, out: &Path) {
    let mut rng = Rng(0x5eed_0000 + n as u64);
    let mut w = BufWriter::new(std::fs::File::create(out).unwrap());
    writeln!(w, "# synthetic list of {n} names for benchmarks").unwrap();
    for _ in 0..n {
        writeln!(w, "{}", name(&mut rng)).unwrap();
    }
    w.flush().unwrap();
}

fn compile(list: &Path, snap: &Path) {
    let before = rss_kb("VmRSS:");
    let t = Instant::now();
    let mut b = SnapshotBuilder::new();
    let id = b.add_list("bench", false, Some("gambling")).unwrap();
    let report = add_path(&mut b, id, list, ListFormat::Domains).unwrap();
    let parsed = t.elapsed();
    let s = b.build().unwrap();
    let total = t.elapsed();
    let after = rss_kb("VmRSS:");
    s.write_to(snap).unwrap();
    println!(
        "compile: entries {} names {} parse {:.2}s total parse+compile {:.2}s index {:.1} MB; RSS after build {:.1} MB (process before {:.1} MB), peak {:.1} MB",
        report.entries,
        s.stats().names,
        parsed.as_secs_f64(),
        total.as_secs_f64(),
        s.stats().index_bytes as f64 / 1e6,
        after as f64 / 1024.0,
        before as f64 / 1024.0,
        rss_kb("VmHWM:") as f64 / 1024.0
    );
}

fn policy_doc() -> PolicyDocument {
    let mut text = String::from("[school]\nname = \"Bench\"\n[[schedules]]\nname = \"lunch\"\ndays = [\"weekdays\"]\nstart = \"12:00\"\nend = \"13:00\"\n");
    for g in 0..20 {
        text.push_str(&format!(
            "[[groups]]\nname = \"g{g}\"\ndefault = \"allow\"\nallow = [\"allowed{g}.example\"]\n[groups.categories]\ngambling = \"block\"\ngames = \"warn\"\n[[groups.schedule]]\nschedule = \"lunch\"\ncategory = \"games\"\naction = \"allow\"\n"
        ));
    }
    PolicyDocument::from_toml(&text).unwrap()
}

/// Opens a snapshot mapped (`Snapshot::open`) or, with `resident`, copied
/// into (huge-page) memory (`Snapshot::open_resident`).
fn open(snap: &Path, resident: bool) -> Snapshot {
    if resident {
        Snapshot::open_resident(snap).unwrap()
    } else {
        Snapshot::open(snap).unwrap()
    }
}

fn load(snap: &Path, resident: bool) {
    let base = rss_kb("VmRSS:");
    let t = Instant::now();
    let s = open(snap, resident);
    let opened = t.elapsed();
    let after_open = rss_kb("VmRSS:");
    // Touch the index with many lookups, as a busy resolver would.
    let mut rng = Rng(7);
    let mut hits = 0u64;
    for _ in 0..300_000 {
        s.for_each_name_hit(&name(&mut rng), |_| hits += 1);
    }
    let touched = rss_kb("VmRSS:");
    println!(
        "load{}: open {:.1} ms; RSS process before {:.1} MB, after open {:.1} MB, after 300k lookups {:.1} MB (snapshot share {:.1} MB); index file {:.1} MB; hits {hits}",
        if resident { " resident" } else { " mapped" },
        opened.as_secs_f64() * 1e3,
        base as f64 / 1024.0,
        after_open as f64 / 1024.0,
        touched as f64 / 1024.0,
        (touched - base) as f64 / 1024.0,
        s.stats().index_bytes as f64 / 1e6
    );
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn decide(snap: &Path, list: &Path, resident: bool) {
    let s = Arc::new(open(snap, resident));
    let p = CompiledPolicy::compile(&policy_doc(), s).unwrap();
    // Queries: 3-label names, half of them in the list (with a www label
    // added), half not.
    let text = std::fs::read_to_string(list).unwrap();
    let listed: Vec<String> = text
        .lines()
        .skip(1)
        .step_by(997)
        .take(5000)
        .map(|n| {
            if n.matches('.').count() >= 2 {
                n.to_owned()
            } else {
                format!("www.{n}")
            }
        })
        .collect();
    let mut rng = Rng(99);
    let mut queries = Vec::new();
    for (i, l) in listed.iter().enumerate() {
        queries.push(l.clone());
        queries.push(format!("{}.{}.com", rng.label(3, 6), rng.label(5, 12)));
        let _ = i;
    }
    // FILTER_BENCH_QUERIES=N keeps the first N queries: a small set shows
    // the decision's cost with the table in cache, the default 10k mostly
    // out of it.
    if let Some(n) = std::env::var("FILTER_BENCH_QUERIES")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        queries.truncate(n);
    }
    let at = Utc::now();
    {
        // The name index alone over the same queries, to separate the
        // index's share of a decision from the policy's.
        let mut means = Vec::new();
        let mut hits = 0u64;
        for _ in 0..40 {
            let t = Instant::now();
            for q in &queries {
                p.snapshot().for_each_name_hit(q, |_| hits += 1);
            }
            means.push(t.elapsed().as_nanos() as f64 / queries.len() as f64);
        }
        println!(
            "index alone: mean over batches median {:.0} ns/name; hits {hits}",
            median(&mut means)
        );
    }
    for (label, full) in [("verdict", false), ("decide", true)] {
        let mut batch_means = Vec::new();
        let mut blocked = 0;
        let rounds: usize = std::env::var("FILTER_BENCH_ROUNDS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(40);
        for round in 0..rounds {
            let t = Instant::now();
            for (i, q) in queries.iter().enumerate() {
                let query = Query {
                    group: if i % 2 == 0 { "g3" } else { "g17" },
                    target: Target::Name(q),
                    at,
                };
                if full {
                    if p.decide(&query).action == sheepdog_policy::Action::Block {
                        blocked += 1;
                    }
                } else if p.verdict(&query).action == sheepdog_policy::Action::Block {
                    blocked += 1;
                }
            }
            if round > 0 {
                batch_means.push(t.elapsed().as_nanos() as f64 / queries.len() as f64);
            }
        }
        // Per-call timings (include ~20-30 ns of clock overhead).
        let mut single = Vec::with_capacity(queries.len());
        for q in &queries {
            let query = Query {
                group: "g3",
                target: Target::Name(q),
                at,
            };
            let t = Instant::now();
            if full {
                std::hint::black_box(p.decide(&query));
            } else {
                std::hint::black_box(p.verdict(&query));
            }
            single.push(t.elapsed().as_nanos() as f64);
        }
        let mut hits_only: Vec<f64> = single.iter().step_by(2).copied().collect();
        let mut misses: Vec<f64> = single.iter().skip(1).step_by(2).copied().collect();
        println!(
            "{label}: mean over batches median {:.0} ns/decision; per-call median {:.0} ns (listed names {:.0} ns, unlisted {:.0} ns); blocked {blocked}",
            median(&mut batch_means),
            median(&mut single),
            median(&mut hits_only),
            median(&mut misses)
        );
    }
}

/// Raw name lookups against the snapshot only (no policy), to separate the
/// index from the rest of a decision.
fn lookup(snap: &Path, list: &Path, resident: bool) {
    let s = open(snap, resident);
    let text = std::fs::read_to_string(list).unwrap();
    let mut rng = Rng(99);
    let mut listed = Vec::new();
    let mut unlisted = Vec::new();
    for n in text.lines().skip(1).step_by(997).take(5000) {
        listed.push(if n.matches('.').count() >= 2 {
            n.to_owned()
        } else {
            format!("www.{n}")
        });
        unlisted.push(format!("{}.{}.com", rng.label(3, 6), rng.label(5, 12)));
    }
    for (label, qs) in [("listed", &listed), ("unlisted", &unlisted)] {
        let mut means = Vec::new();
        let mut hits = 0u64;
        for _ in 0..20 {
            let t = Instant::now();
            for q in qs.iter() {
                s.for_each_name_hit(q, |_| hits += 1);
            }
            means.push(t.elapsed().as_nanos() as f64 / qs.len() as f64);
        }
        println!(
            "lookup {label}: median of batch means {:.0} ns; hits {hits}",
            median(&mut means)
        );
    }
}

/// How the rebuild thread is scheduled against the decider.
#[derive(Clone, Copy, PartialEq)]
enum Rebuild {
    /// Same priority as the decider.
    Normal,
    /// `nice 19`, as `serve`'s list refresh thread runs.
    Nice,
    /// `SCHED_IDLE`: runs only on a CPU nothing else wants, as a
    /// deployment runs list reloads.
    Idle,
    /// No rebuild: the decider alone for `FILTER_BENCH_SECONDS` (default
    /// 4), to count the slow decisions the machine causes without us.
    Without,
    /// No rebuild, but a thread at nice 0 with a rebuild's memory traffic
    /// and nothing else: for `FILTER_BENCH_SECONDS` (default 4) it fills
    /// and frees 70 MB (a 1M-name build's peak) again and again. Stalls
    /// here that match a rebuild's are the machine's memory handling
    /// (page zeroing, unmapping), not the engine.
    Churn,
    /// As `Churn`, but the filling and freeing runs in a child process:
    /// stalls that stay are the machine's (the host, or the guest kernel
    /// as a whole); stalls that go were caused within our address space
    /// (TLB shootdowns, page-table locks), which a reload could avoid.
    ChurnProcess,
    /// The rebuild in a child process (`filter_bench compile`, at nice 19),
    /// which writes the snapshot file; this process's rebuild thread (also
    /// at nice 19) only maps the file, compiles the rules against it and
    /// swaps, as `serve` does.
    Process,
}

/// Lowers the calling thread's priority (`renice` or `chrt`, which on Linux
/// apply to one thread when given a thread id).
/// `FILTER_BENCH_CHILD=idle`: in `process` mode, the child and the thread
/// that reads and swaps run under SCHED_IDLE instead of nice 19, to compare.
fn idle_child() -> bool {
    std::env::var("FILTER_BENCH_CHILD").is_ok_and(|v| v == "idle")
}

fn lower_this_thread(how: Rebuild) -> bool {
    let Ok(link) = std::fs::read_link("/proc/thread-self") else {
        return false;
    };
    let Some(tid) = link.file_name().and_then(|t| t.to_str()).map(str::to_owned) else {
        return false;
    };
    let (cmd, args): (&str, Vec<&str>) = match how {
        Rebuild::Normal | Rebuild::Without | Rebuild::Churn | Rebuild::ChurnProcess => return true,
        // The thread that reads and swaps under SCHED_IDLE too, like the
        // child, to see whether the guest scheduler's waits go with it.
        Rebuild::Process if idle_child() => ("chrt", vec!["--idle", "-p", "0", &tid]),
        // The refresh thread that maps and swaps runs at nice 19 in serve.
        Rebuild::Nice | Rebuild::Process => ("renice", vec!["-n", "19", "-p", &tid]),
        Rebuild::Idle => ("chrt", vec!["--idle", "-p", "0", &tid]),
    };
    std::process::Command::new(cmd)
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// This thread's scheduler and fault counters (Linux): time spent
/// runnable but waiting for a CPU (`schedstat`), times it was put on a CPU
/// (`schedstat`), and minor and major page faults (`stat`). Waiting for a
/// lock or for I/O is not counted as run delay, so a decision's wall time
/// minus the run delay is the time it took or blocked itself.
struct ThreadCounters {
    schedstat: Option<std::fs::File>,
    stat: Option<std::fs::File>,
}

#[derive(Clone, Copy, Default, Debug)]
struct Counters {
    /// The thread's CPU clock. A guest kernel built with
    /// `CONFIG_PARAVIRT_TIME_ACCOUNTING` takes the host's steal out of it,
    /// so a decision slow on the wall clock but neither on the CPU nor
    /// waiting for one was stalled by the hypervisor. (schedstat's own
    /// figure only moves at ticks and context switches.)
    on_cpu_ns: u64,
    run_delay_ns: u64,
    slices: u64,
    minor_faults: u64,
    major_faults: u64,
}

impl ThreadCounters {
    fn new() -> Self {
        ThreadCounters {
            schedstat: std::fs::File::open("/proc/thread-self/schedstat").ok(),
            stat: std::fs::File::open("/proc/thread-self/stat").ok(),
        }
    }
    fn read(&self) -> Counters {
        use std::os::unix::fs::FileExt;
        let mut c = Counters::default();
        let cpu = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        c.on_cpu_ns = cpu.tv_sec as u64 * 1_000_000_000 + cpu.tv_nsec as u64;
        let mut buf = [0u8; 512];
        if let Some(f) = &self.schedstat {
            let n = f.read_at(&mut buf, 0).unwrap_or(0);
            let text = std::str::from_utf8(&buf[..n]).unwrap_or("");
            let mut fields = text.split_whitespace().skip(1);
            c.run_delay_ns = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            c.slices = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        }
        if let Some(f) = &self.stat {
            let n = f.read_at(&mut buf, 0).unwrap_or(0);
            let text = std::str::from_utf8(&buf[..n]).unwrap_or("");
            // Fields after the command name: state is field 3; minflt 10, majflt 12.
            if let Some(rest) = text.rfind(')').map(|i| &text[i + 1..]) {
                let f: Vec<&str> = rest.split_whitespace().collect();
                c.minor_faults = f.get(7).and_then(|v| v.parse().ok()).unwrap_or(0);
                c.major_faults = f.get(9).and_then(|v| v.parse().ok()).unwrap_or(0);
            }
        }
        c
    }
}

/// A decision over 1 ms and what the thread's counters say about the
/// interval holding it (the decision and at most 63 before it).
#[derive(Debug, Clone, Copy)]
struct SlowDecision {
    wall_ns: u64,
    /// Time on a CPU in the interval, host steal excluded.
    on_cpu_ns: u64,
    /// Run delay in the interval: time runnable but not on a CPU.
    waited_ns: u64,
    /// Times put back on a CPU in the interval (1 = never descheduled).
    slices: u64,
    minor_faults: u64,
    major_faults: u64,
}

/// Rebuilds a list three times while another thread decides. `nice`: the
/// rebuild thread at nice 19. `decide`: time `Engine::decide` (strings)
/// instead of the hot path `Engine::verdict`.
fn reload(list: &Path, how: Rebuild, full: bool) {
    let list = list.to_owned();
    let list_path = list.clone();
    let build = move || {
        let mut b = SnapshotBuilder::new();
        let id = b.add_list("bench", false, Some("gambling")).unwrap();
        add_path(&mut b, id, &list, ListFormat::Domains).unwrap();
        CompiledPolicy::compile(&policy_doc(), Arc::new(b.build().unwrap())).unwrap()
    };
    let engine = Arc::new(Engine::new(build()));
    let steal_before = steal_ticks();
    let stop = Arc::new(AtomicBool::new(false));
    let decider = {
        let engine = engine.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut rng = Rng(3);
            let names: Vec<String> = (0..10_000).map(|_| name(&mut rng)).collect();
            let at = Utc::now();
            let mut worst = Duration::ZERO;
            let mut over_1ms = 0u64;
            let mut over_100us = 0u64;
            let mut n = 0u64;
            // Touched up front, so recording never page-faults.
            let mut lat = vec![1u64; 8_000_000];
            let mut slow: Vec<SlowDecision> = Vec::with_capacity(4096);
            let counters = ThreadCounters::new();
            // Counters are read every 64 decisions and after every slow
            // one, so each slow decision is explained by an interval of at
            // most 64 decisions (about 20 us of other work) around it.
            let mut last = counters.read();
            // The worst decision once time spent preempted (runnable, waiting
            // for a CPU) is taken out, for every decision over 1 ms.
            let mut worst_own = Duration::ZERO;
            let mut over_1ms_own = 0u64;
            // The most time on a CPU an interval holding a slow decision
            // took: what our code (and the kernel on its behalf) spent.
            let mut worst_cpu = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                let q = Query {
                    group: "g1",
                    target: Target::Name(&names[n as usize % names.len()]),
                    at,
                };
                if n % 64 == 0 {
                    last = counters.read();
                }
                let t = Instant::now();
                if full {
                    std::hint::black_box(engine.decide(&q));
                } else {
                    std::hint::black_box(engine.verdict(&q));
                }
                let e = t.elapsed();
                if e > Duration::from_millis(1) {
                    over_1ms += 1;
                    let now = counters.read();
                    let waited = now.run_delay_ns.saturating_sub(last.run_delay_ns);
                    let own = e.saturating_sub(Duration::from_nanos(waited));
                    worst_own = worst_own.max(own);
                    if own > Duration::from_millis(1) {
                        over_1ms_own += 1;
                    }
                    worst_cpu = worst_cpu.max(Duration::from_nanos(
                        now.on_cpu_ns.saturating_sub(last.on_cpu_ns),
                    ));
                    if slow.len() < slow.capacity() {
                        slow.push(SlowDecision {
                            wall_ns: e.as_nanos() as u64,
                            on_cpu_ns: now.on_cpu_ns.saturating_sub(last.on_cpu_ns),
                            waited_ns: waited,
                            slices: now.slices.saturating_sub(last.slices),
                            minor_faults: now.minor_faults.saturating_sub(last.minor_faults),
                            major_faults: now.major_faults.saturating_sub(last.major_faults),
                        });
                    }
                    last = now;
                }
                worst = worst.max(e);
                if e > Duration::from_micros(100) {
                    over_100us += 1;
                }
                if let Some(slot) = lat.get_mut(n as usize) {
                    *slot = e.as_nanos() as u64;
                }
                n += 1;
            }
            lat.truncate(n as usize);
            lat.sort_unstable();
            let pct = |p: f64| {
                lat.get(((lat.len() as f64) * p) as usize)
                    .copied()
                    .unwrap_or(0)
            };
            (
                n,
                worst,
                over_1ms,
                over_100us,
                pct(0.5),
                pct(0.9999),
                worst_own,
                over_1ms_own,
                worst_cpu,
                slow,
            )
        })
    };
    let reloader = {
        let engine = engine.clone();
        std::thread::spawn(move || {
            let lowered = lower_this_thread(how);
            let t = Instant::now();
            let seconds = std::env::var("FILTER_BENCH_SECONDS")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(4);
            if how == Rebuild::Without {
                std::thread::sleep(Duration::from_secs(seconds));
                return (t.elapsed(), lowered);
            }
            if how == Rebuild::Churn {
                churn(Duration::from_secs(seconds));
                return (t.elapsed(), lowered);
            }
            if how == Rebuild::ChurnProcess {
                let status = std::env::current_exe().and_then(|exe| {
                    std::process::Command::new(exe)
                        .args(["churn", &seconds.to_string()])
                        .status()
                });
                if !status.as_ref().is_ok_and(|s| s.success()) {
                    eprintln!("the churn process failed: {status:?}");
                }
                return (t.elapsed(), lowered);
            }
            if how == Rebuild::Process {
                let snap =
                    std::env::temp_dir().join(format!("filter_bench-{}.snap", std::process::id()));
                let fresh = snap.with_extension("new");
                for _ in 0..3 {
                    let lower: &[&str] = if idle_child() {
                        &["chrt", "--idle", "0"]
                    } else {
                        &["nice", "-n19"]
                    };
                    let status = std::env::current_exe().and_then(|exe| {
                        std::process::Command::new(lower[0])
                            .args(&lower[1..])
                            .arg(exe)
                            .arg("compile")
                            .arg(&list_path)
                            .arg(&fresh)
                            .stdout(std::process::Stdio::null())
                            .status()
                    });
                    if !status.as_ref().is_ok_and(|s| s.success()) {
                        eprintln!("the compile process failed: {status:?}");
                        break;
                    }
                    std::fs::rename(&fresh, &snap).unwrap();
                    let mapped = Arc::new(Snapshot::open(&snap).unwrap());
                    let policy = CompiledPolicy::compile(&policy_doc(), mapped).unwrap();
                    drop(engine.swap(policy));
                    engine.reclaim_within(Duration::from_millis(50));
                }
                let _ = std::fs::remove_file(&snap);
                return (t.elapsed(), lowered);
            }
            for _ in 0..3 {
                let p = build();
                drop(engine.swap(p));
                // Frees the old policy here, never in the decider.
                engine.reclaim_within(Duration::from_millis(50));
            }
            (t.elapsed(), lowered)
        })
    };
    let (reloads, lowered) = reloader.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    let (n, worst, over, over100, p50, p9999, worst_own, over_own, worst_cpu, slow) =
        decider.join().unwrap();
    let steal = steal_before
        .zip(steal_ticks())
        .map(|(a, b)| b.saturating_sub(a));
    println!(
        "reload ({}, rebuild thread {}): 3 rebuilds+swaps of the list (none when absent) over {:.2}s while deciding: {n} decisions, median {p50} ns, p99.99 {:.1} us, worst {:.3} ms, over 100 us: {over100}, over 1 ms: {over}; net of time preempted (every decision over 1 ms): worst {:.3} ms, over 1 ms: {over_own}; most time on a CPU in a slow decision's interval: {:.3} ms; host steal over the run: {} ticks",
        if full { "decide" } else { "verdict" },
        match (how, lowered) {
            (Rebuild::Nice, true) => "nice 19",
            (Rebuild::Idle, true) => "SCHED_IDLE",
            (Rebuild::Without, _) => "absent: no rebuild",
            (Rebuild::Churn, _) => "absent; a thread filling and freeing 70 MB instead",
            (Rebuild::Process, true) => "nice 19, building in a child process at nice 19, then mapping and swapping",
            (Rebuild::ChurnProcess, _) => "absent; another process filling and freeing 70 MB instead",
            _ => "nice 0",
        },
        reloads.as_secs_f64(),
        p9999 as f64 / 1e3,
        worst.as_secs_f64() * 1e3,
        worst_own.as_secs_f64() * 1e3,
        worst_cpu.as_secs_f64() * 1e3,
        steal.map_or("unknown".to_owned(), |t| t.to_string()),
    );
    // What the deciding process holds after the reloads, and its peak: a
    // rebuild in this process leaves its build's memory here.
    println!(
        "  deciding process: RSS {:.1} MB after the reloads, peak {:.1} MB",
        rss_kb("VmRSS:") as f64 / 1024.0,
        rss_kb("VmHWM:") as f64 / 1024.0
    );
    if how == Rebuild::Process && idle_child() {
        println!(
            "  (the child process and the swapping thread under SCHED_IDLE instead of nice 19)"
        );
    }
    // The first ten slow decisions, then any whose time net of waiting for
    // a CPU is over 0.2 ms (those are the ones our code could be causing).
    let own = |d: &&SlowDecision| d.wall_ns.saturating_sub(d.waited_ns) > 200_000;
    let shown = slow
        .iter()
        .take(10)
        .chain(slow.iter().skip(10).filter(own).take(20));
    for d in shown {
        println!(
            "  slow decision: {:.3} ms wall, {:.3} ms on a CPU, {:.3} ms runnable but waiting for a CPU, {:.3} ms neither (the host's), {} CPU slices, {} minor / {} major faults",
            d.wall_ns as f64 / 1e6,
            d.on_cpu_ns as f64 / 1e6,
            d.waited_ns as f64 / 1e6,
            d.wall_ns.saturating_sub(d.on_cpu_ns + d.waited_ns) as f64 / 1e6,
            d.slices,
            d.minor_faults,
            d.major_faults
        );
    }
}

/// Fills and frees 70 MB (a 1M-name build's peak) again and again.
fn churn(time: Duration) {
    let t = Instant::now();
    while t.elapsed() < time {
        std::hint::black_box(vec![1u8; 70 << 20]);
    }
}

/// The host's steal time so far, in clock ticks (`/proc/stat`): time this
/// VM's CPUs were ready but the hypervisor ran something else.
fn steal_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?;
    cpu.split_whitespace().nth(8)?.parse().ok()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    match arg(1) {
        "gen" => gen(arg(2).parse().unwrap(), Path::new(arg(3))),
        "compile" => compile(Path::new(arg(2)), Path::new(arg(3))),
        "load" => load(Path::new(arg(2)), arg(3) == "resident"),
        "decide" => decide(Path::new(arg(2)), Path::new(arg(3)), arg(4) == "resident"),
        "lookup" => lookup(Path::new(arg(2)), Path::new(arg(3)), arg(4) == "resident"),
        "churn" => churn(Duration::from_secs(arg(2).parse().unwrap_or(4))),
        "reload" => reload(
            Path::new(arg(2)),
            if args.iter().any(|a| a == "nice") {
                Rebuild::Nice
            } else if args.iter().any(|a| a == "idle") {
                Rebuild::Idle
            } else if args.iter().any(|a| a == "without") {
                Rebuild::Without
            } else if args.iter().any(|a| a == "process") {
                Rebuild::Process
            } else if args.iter().any(|a| a == "churnproc") {
                Rebuild::ChurnProcess
            } else if args.iter().any(|a| a == "churn") {
                Rebuild::Churn
            } else {
                Rebuild::Normal
            },
            args.iter().any(|a| a == "decide"),
        ),
        _ => eprintln!("usage: filter_bench gen N FILE | compile LIST SNAP | load SNAP [resident] | decide SNAP LIST [resident] | lookup SNAP LIST [resident] | reload LIST [nice|idle|process|without|churn|churnproc] [decide] | churn SECONDS"),
    }
}
