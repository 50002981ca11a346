//! Log search over many stored decision events: seeds a database with
//! synthetic events, then measures representative console searches
//! (first page of 50, newest first, and a deep page by cursor).
//!
//! Run through `bench/console/run.sh`; built as the `search_bench` example
//! of sheepdog-store.
//!
//! ```text
//! search_bench seed-sql URL COUNT # add COUNT events over 30 days (SQLite)
//! search_bench seed URL COUNT    # the same through Store::insert_events
//! search_bench query URL [ROUNDS] # time each search ROUNDS times (default 40)
//! ```
//!
//! The events are synthetic: 1,500 pupils on 600 devices at 600 addresses
//! in 40 groups, 5,000 domains whose popularity falls off steeply (the
//! most visited takes about one event in seventeen), a fifth proxy URLs, one
//! in fifty with a search term, about a third blocked (five of the fifteen
//! categories, and one in forty of the rest).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sheepdog_store::{DecisionEvent, EventSearch, EventSource, Store, StoreOptions, TargetMatch};

const PEOPLE: u64 = 1_500;
const DEVICES: u64 = 600;
const GROUPS: u64 = 40;
const DOMAINS: u64 = 5_000;
const DAYS: i64 = 30;
const CATEGORIES: &[&str] = &[
    "education",
    "news",
    "search",
    "video",
    "social",
    "games",
    "shopping",
    "chat",
    "gambling",
    "adult",
    "proxy",
    "weapons",
    "drugs",
    "sport",
    "music",
];
const TERMS: &[&str] = &[
    "fractions worksheet",
    "volcano facts",
    "minecraft seeds",
    "how to draw a cat",
    "football results",
    "cheap trainers",
    "roblox codes",
    "photosynthesis",
    "tudors",
    "times tables game",
];

/// xorshift64*: the same events for the same seed, no dependency.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// 0 for the most popular, falling off like a cube.
    fn skewed(&mut self, n: u64) -> u64 {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((u * u * u) * n as f64) as u64
    }
}

fn domain(i: u64) -> String {
    format!("site{i}.example")
}

fn event(noise: &mut Noise, at: DateTime<Utc>) -> DecisionEvent {
    let person = noise.below(PEOPLE);
    let device = person % DEVICES;
    let d = noise.skewed(DOMAINS);
    let sub = ["www.", "", "cdn.", "api."][noise.below(4) as usize];
    let proxy = noise.below(5) == 0;
    let category = CATEGORIES[(d % CATEGORIES.len() as u64) as usize];
    let blocked = matches!(
        category,
        "gambling" | "adult" | "proxy" | "weapons" | "drugs"
    ) || noise.below(40) == 0;
    let term =
        (noise.below(50) == 0).then(|| TERMS[noise.below(TERMS.len() as u64) as usize].to_string());
    DecisionEvent {
        at,
        source: if proxy {
            EventSource::Proxy
        } else {
            EventSource::Dns
        },
        client: format!(
            "10.{}.{}.{}",
            1 + device / 250 / 250,
            (device / 250) % 250,
            1 + device % 250
        ),
        device_id: Some(device as i64 + 1),
        device_name: Some(format!("DEVICE-{:04}", device + 1)),
        person_id: Some(person as i64 + 1),
        group: Some(format!("Group {}", person % GROUPS)),
        target: if proxy {
            format!("https://{sub}{}/page/{}", domain(d), noise.below(100))
        } else {
            format!("{sub}{}", domain(d))
        },
        query_type: (!proxy).then(|| "A".to_string()),
        action: if blocked { "block" } else { "allow" }.to_string(),
        illegal: false,
        category: Some(category.to_string()),
        list: Some("ut1".to_string()),
        rule: blocked.then(|| domain(d)),
        upstream_ms: Some(noise.below(40) as u32),
        search_term: term,
        school_id: None,
    }
}

/// Events written through the store, as the event writer does; slow (a
/// few thousand a second here), so kept for checking `seed-sql` against.
async fn seed(store: &Store, count: u64) {
    let mut noise = Noise(0x005e_ed0f_5eed);
    let end = Utc::now();
    let start = end - chrono::Duration::days(DAYS);
    let span = (end - start).num_microseconds().unwrap();
    let mut done = 0u64;
    while done < count {
        let n = 10_000u64.min(count - done);
        let batch: Vec<DecisionEvent> = (done..done + n)
            .map(|i| {
                let offset = (i128::from(span) * i128::from(i) / i128::from(count)) as i64;
                event(&mut noise, start + chrono::Duration::microseconds(offset))
            })
            .collect();
        store.insert_events(&batch).await.unwrap();
        done += n;
    }
}

/// The same distribution generated inside SQLite by one INSERT … SELECT
/// per million rows, which seeds ten million events in minutes rather
/// than hours. The host key is built from the same parts as the target,
/// as `host_key` would build it.
async fn seed_sql(url: &str, count: u64) {
    use sqlx::Connection;
    use sqlx::Row;
    let mut connection = sqlx::AnyConnection::connect(url).await.unwrap();
    // Indexes are dropped while seeding and built again after, from the
    // migrations' own definitions: one sorted build instead of ten million
    // scattered updates.
    let indexes: Vec<(String, String)> = sqlx::query(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' \
         AND tbl_name = 'decision_events' AND sql IS NOT NULL",
    )
    .fetch_all(&mut connection)
    .await
    .unwrap()
    .iter()
    .map(|row| (row.get("name"), row.get("sql")))
    .collect();
    for pragma in [
        "PRAGMA cache_size = -1000000",
        "PRAGMA synchronous = OFF",
        "PRAGMA temp_store = MEMORY",
    ] {
        sqlx::query(pragma).execute(&mut connection).await.unwrap();
    }
    for (name, _) in &indexes {
        sqlx::query(&format!("DROP INDEX {name}"))
            .execute(&mut connection)
            .await
            .unwrap();
    }
    let end = Utc::now().timestamp();
    let start = end - DAYS * 86_400;
    let span_micros = (end - start) * 1_000_000;
    let categories = CATEGORIES.len();
    let category_case: String = CATEGORIES
        .iter()
        .enumerate()
        .map(|(i, c)| format!(" WHEN {i} THEN '{c}'"))
        .collect();
    let term_case: String = TERMS
        .iter()
        .enumerate()
        .map(|(i, t)| format!(" WHEN {i} THEN '{t}'"))
        .collect();
    let started = Instant::now();
    let chunk = 1_000_000u64;
    let mut done = 0u64;
    while done < count {
        let n = chunk.min(count - done);
        let sql = format!(
            "INSERT INTO decision_events (at, source, client, device_id, device_name, person_id, \
             group_name, target, query_type, action, illegal, category, list_name, rule, upstream_ms, \
             search_term, host_key) \
             WITH RECURSIVE seq(i) AS (SELECT {first} UNION ALL SELECT i + 1 FROM seq WHERE i < {last}), \
             raw AS MATERIALIZED (SELECT i, abs(random()) % {PEOPLE} AS person, \
                 abs(random()) % 1000000 AS u, abs(random()) % 4 AS sub, abs(random()) % 5 AS proxy, \
                 abs(random()) % 40 AS unlucky, abs(random()) % 50 AS termed, abs(random()) % {terms} AS term, \
                 abs(random()) % 100 AS page, abs(random()) % 40 AS ms FROM seq), \
             parts AS (SELECT *, person % {DEVICES} AS device, \
                 CAST((u / 1000000.0) * (u / 1000000.0) * (u / 1000000.0) * {DOMAINS} AS INTEGER) AS d FROM raw), \
             shaped AS (SELECT *, CASE d % {categories}{category_case} END AS category, \
                 CASE sub WHEN 0 THEN 'www.' WHEN 1 THEN '' WHEN 2 THEN 'cdn.' ELSE 'api.' END AS prefix \
                 FROM parts) \
             SELECT \
               strftime('%Y-%m-%dT%H:%M:%S', {start} + (i * {span_micros} / {count}) / 1000000, 'unixepoch') \
                 || '.' || printf('%06d', (i * {span_micros} / {count}) % 1000000) || 'Z', \
               CASE proxy WHEN 0 THEN 'proxy' ELSE 'dns' END, \
               '10.' || (1 + device / 62500) || '.' || ((device / 250) % 250) || '.' || (1 + device % 250), \
               device + 1, printf('DEVICE-%04d', device + 1), person + 1, 'Group ' || (person % {GROUPS}), \
               CASE proxy WHEN 0 THEN 'https://' || prefix || 'site' || d || '.example/page/' || page \
                 ELSE prefix || 'site' || d || '.example' END, \
               CASE proxy WHEN 0 THEN NULL ELSE 'A' END, \
               CASE WHEN category IN ('gambling', 'adult', 'proxy', 'weapons', 'drugs') OR unlucky = 0 \
                 THEN 'block' ELSE 'allow' END, \
               0, category, 'ut1', \
               CASE WHEN category IN ('gambling', 'adult', 'proxy', 'weapons', 'drugs') OR unlucky = 0 \
                 THEN 'site' || d || '.example' END, \
               ms, CASE termed WHEN 0 THEN CASE term{term_case} END END, \
               'example.site' || d || '.' || CASE sub WHEN 0 THEN 'www.' WHEN 1 THEN '' WHEN 2 THEN 'cdn.' ELSE 'api.' END \
             FROM shaped",
            first = done,
            last = done + n - 1,
            terms = TERMS.len(),
        );
        sqlx::query(&sql).execute(&mut connection).await.unwrap();
        done += n;
        eprintln!(
            "seeded {done} events in {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
    for (name, sql) in &indexes {
        sqlx::query(sql).execute(&mut connection).await.unwrap();
        eprintln!(
            "built {name} after {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
    sqlx::query("ANALYZE")
        .execute(&mut connection)
        .await
        .unwrap();
    eprintln!("analysed after {:.0} s", started.elapsed().as_secs_f64());
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn query(store: &Store, rounds: usize) {
    let now = Utc::now();
    let day = chrono::Duration::days(1);
    let mut noise = Noise(42);
    // Each search is a function of the round, so rounds vary the person,
    // device, domain and time asked about.
    type Make = Box<dyn Fn(&mut Noise) -> EventSearch>;
    let page = EventSearch {
        limit: 50,
        ..EventSearch::default()
    };
    let searches: Vec<(&str, Make)> = vec![
        (
            "newest, no filter",
            Box::new({
                let p = page.clone();
                move |_| p.clone()
            }),
        ),
        (
            "person, last 7 days",
            Box::new({
                let p = page.clone();
                move |n| EventSearch {
                    person_id: Some(1 + n.below(PEOPLE) as i64),
                    since: Some(now - day * 7),
                    ..p.clone()
                }
            }),
        ),
        (
            "device, all time",
            Box::new({
                let p = page.clone();
                move |n| EventSearch {
                    device_id: Some(1 + n.below(DEVICES) as i64),
                    ..p.clone()
                }
            }),
        ),
        (
            "address, one day a week ago",
            Box::new({
                let p = page.clone();
                move |n| {
                    let d = n.below(DEVICES);
                    EventSearch {
                        client: Some(format!(
                            "10.{}.{}.{}",
                            1 + d / 250 / 250,
                            (d / 250) % 250,
                            1 + d % 250
                        )),
                        since: Some(now - day * 8),
                        until: Some(now - day * 7),
                        ..p.clone()
                    }
                }
            }),
        ),
        (
            "group + blocked, last 24 h",
            Box::new({
                let p = page.clone();
                move |n| EventSearch {
                    group: Some(format!("Group {}", n.below(GROUPS))),
                    action: Some("block".into()),
                    since: Some(now - day),
                    ..p.clone()
                }
            }),
        ),
        (
            "popular domain (top 5)",
            Box::new({
                let p = page.clone();
                move |n| EventSearch {
                    target: Some(TargetMatch::Domain(domain(n.below(5)))),
                    ..p.clone()
                }
            }),
        ),
        (
            "rare domain",
            Box::new({
                let p = page.clone();
                move |n| EventSearch {
                    target: Some(TargetMatch::Domain(domain(3_000 + n.below(2_000)))),
                    ..p.clone()
                }
            }),
        ),
        (
            "URL prefix",
            Box::new({
                let p = page.clone();
                move |n| EventSearch {
                    target: Some(TargetMatch::Prefix(format!(
                        "https://www.{}/page/1",
                        domain(n.below(200))
                    ))),
                    ..p.clone()
                }
            }),
        ),
        (
            "search term, last 30 days",
            Box::new({
                let p = page.clone();
                move |n| EventSearch {
                    search_term: Some(
                        TERMS[n.below(TERMS.len() as u64) as usize]
                            .split(' ')
                            .next()
                            .unwrap()
                            .to_string(),
                    ),
                    since: Some(now - day * 30),
                    ..p.clone()
                }
            }),
        ),
        (
            "category + blocked",
            Box::new({
                let p = page.clone();
                move |_| EventSearch {
                    category: Some("gambling".into()),
                    action: Some("block".into()),
                    ..p.clone()
                }
            }),
        ),
        (
            "one hour, 2 weeks ago",
            Box::new({
                let p = page.clone();
                move |n| {
                    let start = now - day * 14 + chrono::Duration::minutes(n.below(600) as i64);
                    EventSearch {
                        since: Some(start),
                        until: Some(start + chrono::Duration::hours(1)),
                        ..p.clone()
                    }
                }
            }),
        ),
        (
            "person + domain",
            Box::new({
                let p = page.clone();
                move |n| EventSearch {
                    person_id: Some(1 + n.below(PEOPLE) as i64),
                    target: Some(TargetMatch::Domain(domain(n.below(50)))),
                    ..p.clone()
                }
            }),
        ),
    ];
    let mut all = Vec::new();
    println!("| search | p50 ms | p95 ms | max ms | rows (last) |");
    println!("|---|---|---|---|---|");
    for (name, make) in &searches {
        let mut times = Vec::with_capacity(rounds);
        let mut rows = 0;
        for _ in 0..rounds {
            let search = make(&mut noise);
            let started = Instant::now();
            let found = store.search_events(&search).await.unwrap();
            times.push(started.elapsed());
            rows = found.len();
        }
        times.sort();
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {rows} |",
            percentile(&times, 0.5).as_secs_f64() * 1e3,
            percentile(&times, 0.95).as_secs_f64() * 1e3,
            times.last().unwrap().as_secs_f64() * 1e3,
        );
        all.extend(times);
    }
    // Deep pages: follow the cursor ten pages into one person's history.
    let mut times = Vec::new();
    for _ in 0..rounds {
        let mut search = EventSearch {
            person_id: Some(1 + noise.below(PEOPLE) as i64),
            limit: 50,
            ..EventSearch::default()
        };
        for _ in 0..10 {
            let started = Instant::now();
            let found = store.search_events(&search).await.unwrap();
            times.push(started.elapsed());
            search.before = found.last().map(|f| f.cursor());
        }
    }
    times.sort();
    println!(
        "| person, pages 1–10 by cursor | {:.1} | {:.1} | {:.1} | 50 |",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.95).as_secs_f64() * 1e3,
        times.last().unwrap().as_secs_f64() * 1e3,
    );
    all.extend(times);
    all.sort();
    println!(
        "\nall searches: {} timed, p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        all.len(),
        percentile(&all, 0.5).as_secs_f64() * 1e3,
        percentile(&all, 0.95).as_secs_f64() * 1e3,
        all.last().unwrap().as_secs_f64() * 1e3,
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: search_bench seed-sql|seed URL COUNT | search_bench query URL [ROUNDS]";
    let (Some(command), Some(url)) = (args.get(1), args.get(2)) else {
        panic!("{usage}");
    };
    let store = Store::open(url, &StoreOptions::default()).await.unwrap();
    match command.as_str() {
        "seed-sql" => seed_sql(url, args.get(3).expect(usage).parse().unwrap()).await,
        "seed" => seed(&store, args.get(3).expect(usage).parse().unwrap()).await,
        "query" => query(&store, args.get(3).map_or(40, |r| r.parse().unwrap())).await,
        _ => panic!("{usage}"),
    }
}
