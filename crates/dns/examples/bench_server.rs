//! The DNS server alone, for bench/dns/run.sh: a policy, a prebuilt
//! snapshot (built and written on first use), one upstream, and events
//! either written to a SQLite store (`--log DB`) or not recorded at all.
//!
//!   bench_server POLICY SNAPSHOT LISTEN UPSTREAM [--log DB]
//!
//! For DNS-over-TLS upstreams, `BENCH_UPSTREAM_ROOTS` names the PEM file of
//! the upstream's authority; `BENCH_CACHE_SIZE=0` turns the cache off so
//! every question goes upstream; `BENCH_LOG_SPOOL_ONLY=1` closes the
//! store's connections once it is open, so that every event takes the
//! spool path a writer takes when it falls behind (for callgrind.sh).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use sheepdog_config::{BlockAnswer, DnsConfig};
use sheepdog_dns::{DnsServer, Resolver, ResolverSettings};
use sheepdog_events::{EventWriter, IdentityMap, IdentityResolver, WriterOptions};
use sheepdog_lists::Snapshot;
use sheepdog_policy::{build_snapshot, CompiledPolicy, Engine, PolicyDocument};

/// mimalloc, as in `sheepdog` itself: glibc's allocator took the slow path
/// when events built on the servers' threads were freed on the writer's
/// (see ARCHITECTURE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let args: Vec<String> = std::env::args().collect();
    let [_, policy_path, snapshot_path, listen, upstream, rest @ ..] = args.as_slice() else {
        return Err("usage: bench_server POLICY SNAPSHOT LISTEN UPSTREAM [--log DB]".into());
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
    let mut config = DnsConfig {
        upstreams: vec![upstream.parse()?],
        block_answer: BlockAnswer::Nxdomain,
        ..DnsConfig::default()
    };
    if let Ok(roots) = std::env::var("BENCH_UPSTREAM_ROOTS") {
        config.upstream_roots = roots.into();
    }
    if let Ok(size) = std::env::var("BENCH_CACHE_SIZE") {
        config.cache_size = size.parse()?;
    }
    let mut writer = None;
    let sink = match rest {
        [flag, db] if flag == "--log" => {
            let store = sheepdog_store::Store::open(
                &format!("sqlite://{db}"),
                &sheepdog_store::StoreOptions::default(),
            )
            .await?;
            if std::env::var_os("BENCH_LOG_SPOOL_ONLY").is_some() {
                store.close().await;
            }
            let spool = Path::new(db).with_extension("spool");
            let (w, sink) = EventWriter::start(
                store,
                WriterOptions {
                    spool_dir: spool,
                    ..WriterOptions::default()
                },
            )?;
            writer = Some(w);
            Some(sink)
        }
        _ => None,
    };
    let resolver = Arc::new(Resolver::new(
        engine,
        Arc::new(IdentityResolver::new(IdentityMap::new("guest"))),
        sink,
        ResolverSettings::from_config(&config),
    ));
    let server = DnsServer::start(resolver, &[listen.parse()?]).await?;
    eprintln!("listening on {listen} after {:?}", started.elapsed());
    tokio::signal::ctrl_c().await?;
    server.stop().await;
    if let Some(writer) = writer {
        // Before the final flush: how the load went, for the benchmark's log.
        eprintln!("event writer: {:?}", writer.stats());
        writer.shutdown().await;
    }
    Ok(())
}
