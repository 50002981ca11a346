//! Monitoring throughput: normalise-and-match MB/s on one core, with every
//! shipped library loaded.
//!
//! Run through `bench/monitor/run.sh`; built as the `monitor_bench`
//! example of sheepdog-monitor. The text is synthetic: ordinary English,
//! Polish and Roman Urdu words from a fixed vocabulary with some
//! punctuation, digits and accented letters, and a hit roughly every
//! 4 KiB, cut into inputs the size of search terms, titles and pages.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use sheepdog_monitor::{eval, normalise, shipped_corpus, Matcher};

/// mimalloc, as in `sheepdog` itself, which is where monitoring runs: a hit
/// allocates its strings, and glibc's allocator spends some 250
/// instructions a title freeing them, which the product does not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const WORDS: &[&str] = &[
    "the",
    "school",
    "homework",
    "maths",
    "revision",
    "science",
    "history",
    "of",
    "and",
    "a",
    "to",
    "football",
    "results",
    "minecraft",
    "weather",
    "london",
    "bus",
    "times",
    "how",
    "do",
    "i",
    "make",
    "pancakes",
    "recipe",
    "year",
    "7",
    "2026",
    "photosynthesis",
    "volcano",
    "project",
    "ideas",
    "lekcja",
    "zadanie",
    "domowe",
    "pogoda",
    "mecz",
    "szkoła",
    "żółw",
    "kraków",
    "wypracowanie",
    "ghar",
    "kaam",
    "kitab",
    "mazmoon",
    "cricket",
    "score",
    "aaj",
    "kal",
    "dost",
    "khana",
    "café",
    "naïve",
    "résumé",
    "e-mail",
    "co-op",
    "don't",
    "it's",
    "U.K.",
    "3.14",
    "100%",
    "(draft)",
    "\"quote\"",
    "—",
    "...",
    "killer",
    "whale",
    "skills",
    "Sussex",
    "shoot",
    "basketball",
];

const HITS: &[&str] = &[
    "buy weed near me",
    "kill myself",
    "online casino",
    "chce sie zabic",
    "nangi video",
];

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn text(bytes: usize, seed: u64) -> String {
    let mut rng = Rng(seed);
    let mut out = String::with_capacity(bytes + 64);
    let mut since_hit = 0;
    while out.len() < bytes {
        let before = out.len();
        if since_hit > 4096 {
            out.push_str(HITS[rng.next() as usize % HITS.len()]);
            since_hit = 0;
        } else {
            out.push_str(WORDS[rng.next() as usize % WORDS.len()]);
        }
        out.push(if rng.next() % 11 == 0 { '\n' } else { ' ' });
        since_hit += out.len() - before;
    }
    out
}

fn measure(name: &str, inputs: &[String], work: impl Fn(&str) -> usize) {
    // `monitor_bench WORD` runs only the measures whose name holds WORD
    // (for profiling one of them).
    if std::env::args()
        .nth(1)
        .is_some_and(|only| !name.contains(&only))
    {
        return;
    }
    let total: usize = inputs.iter().map(String::len).sum();
    let mut best = Duration::MAX;
    let mut found = 0;
    for _ in 0..5 {
        let started = Instant::now();
        found = 0;
        for input in inputs {
            found += work(black_box(input));
        }
        best = best.min(started.elapsed());
    }
    let mbps = total as f64 / best.as_secs_f64() / 1e6;
    println!(
        "{name:<34} {:>8.1} MB/s  ({} inputs, {:.1} MB, {found} hits, best of 5: {:.3} s)",
        mbps,
        inputs.len(),
        total as f64 / 1e6,
        best.as_secs_f64()
    );
}

fn main() {
    let started = Instant::now();
    let matcher = Matcher::shipped().unwrap();
    println!(
        "compiled the shipped libraries in {:.1} ms: {} patterns",
        started.elapsed().as_secs_f64() * 1e3,
        matcher.pattern_count()
    );
    let report = eval(&matcher, &shipped_corpus().unwrap(), 3);
    println!(
        "evaluation on the shipped corpus at grade >= 3 ({} cases, {} hard negatives):",
        report.cases, report.negatives
    );
    for s in &report.scores {
        println!(
            "  {:<8} {:<15} pos {:>2} tp {:>2} fp {:>2} fn {:>2}  precision {:.3} recall {:.3}",
            s.language,
            s.category.as_str(),
            s.positives,
            s.true_positives,
            s.false_positives,
            s.false_negatives,
            s.precision(),
            s.recall()
        );
    }
    for language in [Some("en"), Some("pl"), Some("ur-Latn"), None] {
        let t = report.total(language);
        println!(
            "  {:<8} all             pos {:>3} precision {:.3} recall {:.3}",
            t.language,
            t.positives,
            t.precision(),
            t.recall()
        );
    }
    let pages: Vec<String> = (0..64).map(|i| text(64 * 1024, 7 + i)).collect();
    let titles: Vec<String> = (0..40_000).map(|i| text(200, 1000 + i)).collect();
    let searches: Vec<String> = (0..200_000).map(|i| text(30, 90_000 + i)).collect();
    measure("normalise only, 64 KiB pages", &pages, |t| {
        normalise(t).as_str().len() & 1
    });
    let reused = std::cell::RefCell::new(sheepdog_monitor::Normalised::default());
    measure(
        "normalise only (buffer reused), 64 KiB pages",
        &pages,
        |t| {
            let mut out = reused.borrow_mut();
            sheepdog_monitor::normalise_into(t, &mut out);
            out.as_str().len() & 1
        },
    );
    measure("normalise+match, 64 KiB pages", &pages, |t| {
        matcher.scan(t).len()
    });
    measure("normalise+match, 200 B titles", &titles, |t| {
        matcher.scan(t).len()
    });
    measure("normalise+match, 30 B searches", &searches, |t| {
        matcher.scan(t).len()
    });
    let evasive: Vec<String> = (0..64)
        .map(|i| {
            text(64 * 1024, 500 + i)
                .replace("o", "0")
                .replace(' ', " . ")
        })
        .collect();
    measure("normalise+match, leet/spaced pages", &evasive, |t| {
        matcher.scan(t).len()
    });
}
