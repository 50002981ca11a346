//! The proxy alone, for bench/proxy/run.sh: a policy, a prebuilt snapshot
//! (built and written on first use), and events either written to a SQLite
//! store (`--log DB`) or not recorded at all. With `--log`, the proxy also
//! reads the HTML pages it carries for monitoring, as `serve` does, and a
//! task reads each with the shipped keyword libraries, as the live monitor
//! would (without recording alerts).
//!
//!   bench_proxy POLICY SNAPSHOT LISTEN [--log DB]

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use sheepdog_config::ProxyConfig;
use sheepdog_events::{EventWriter, IdentityMap, IdentityResolver, WriterOptions};
use sheepdog_lists::Snapshot;
use sheepdog_policy::{build_snapshot, CompiledPolicy, Engine, PolicyDocument};
use sheepdog_proxy::{Proxy, ProxyServer, ProxySettings};

/// mimalloc, as in `sheepdog` itself: glibc's allocator took the slow path
/// when events built on the servers' threads were freed on the writer's
/// (see ARCHITECTURE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let args: Vec<String> = std::env::args().collect();
    let [_, policy_path, snapshot_path, listen, rest @ ..] = args.as_slice() else {
        return Err("usage: bench_proxy POLICY SNAPSHOT LISTEN [--log DB]".into());
    };
    let policy_path = Path::new(policy_path);
    let doc = PolicyDocument::load(policy_path)?;
    let snapshot_path = Path::new(snapshot_path);
    if !snapshot_path.exists() {
        let base = policy_path.parent().unwrap_or(Path::new("."));
        let (snapshot, _) = build_snapshot(&doc, base, None)?;
        snapshot.write_to(snapshot_path)?;
        eprintln!(
            "built {} in {:?}",
            snapshot_path.display(),
            started.elapsed()
        );
        return Ok(());
    }
    // Read into memory, as `serve` does (`lists::load_engine`).
    let snapshot = Snapshot::open_resident(snapshot_path)?;
    let engine = Arc::new(Engine::new(CompiledPolicy::compile(
        &doc,
        Arc::new(snapshot),
    )?));
    let mut writer = None;
    let mut store = None;
    let sink = match rest {
        [flag, db] if flag == "--log" => {
            let opened = sheepdog_store::Store::open(
                &format!("sqlite://{db}"),
                &sheepdog_store::StoreOptions::default(),
            )
            .await?;
            let spool = Path::new(db).with_extension("spool");
            let (w, sink) = EventWriter::start(
                opened.clone(),
                WriterOptions {
                    spool_dir: spool,
                    ..WriterOptions::default()
                },
            )?;
            writer = Some(w);
            store = Some(opened);
            Some(sink)
        }
        _ => None,
    };
    let logged = sink.is_some();
    let mut proxy = Proxy::new(
        engine,
        Arc::new(IdentityResolver::new(IdentityMap::new("guest"))),
        sink,
        store,
        ProxySettings::from_config(&ProxyConfig::default()),
    );
    if logged {
        let (pages, mut seen) = tokio::sync::mpsc::channel(1024);
        proxy = proxy.with_pages(pages);
        let matcher = sheepdog_monitor::Matcher::shipped()?;
        tokio::spawn(async move {
            let mut hits = 0usize;
            while let Some(page) = seen.recv().await {
                let page: sheepdog_store::PageSeen = page;
                hits += matcher.scan(&page.text).len();
                hits += page.title.map_or(0, |t| matcher.scan(&t).len());
            }
            eprintln!("pages read, {hits} hits");
        });
    }
    let proxy = Arc::new(proxy);
    let server = ProxyServer::start(proxy, &[listen.parse()?]).await?;
    eprintln!("listening on {listen} after {:?}", started.elapsed());
    tokio::signal::ctrl_c().await?;
    server.stop().await;
    if let Some(writer) = writer {
        writer.shutdown().await;
    }
    Ok(())
}
