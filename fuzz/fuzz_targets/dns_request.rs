//! The DNS request handler: any bytes, over UDP or TCP, give an answer or
//! nothing — never a panic. No upstreams are configured, so nothing leaves
//! the process: forwarded questions get SERVFAIL at once. A request
//! answered from its bytes (the plain reader) gets the answer hickory's
//! parse gives.
#![no_main]
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use sheepdog_config::DnsConfig;
use sheepdog_dns::{Immediate, Resolver, ResolverSettings, Transport};
use sheepdog_events::{IdentityMap, IdentityResolver};
use sheepdog_lists::Snapshot;
use sheepdog_policy::{CompiledPolicy, Engine, PolicyDocument};

const POLICY: &str = "fallback_group = \"guest\"\n[school]\nname = \"Fuzz\"\ntime_zone = \"Europe/London\"\n[local]\ndeny = [\"blocked.test\"]\n[[groups]]\nname = \"guest\"\n";

fn resolver() -> Option<&'static (tokio::runtime::Runtime, Resolver)> {
    static CELL: OnceLock<Option<(tokio::runtime::Runtime, Resolver)>> = OnceLock::new();
    CELL.get_or_init(|| {
        let doc = PolicyDocument::from_toml(POLICY).ok()?;
        let policy = CompiledPolicy::compile(&doc, Arc::new(Snapshot::empty())).ok()?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
        let resolver = Resolver::new(
            Arc::new(Engine::new(policy)),
            Arc::new(IdentityResolver::new(IdentityMap::new("guest"))),
            None,
            ResolverSettings::from_config(&DnsConfig::default()),
        );
        Some((runtime, resolver))
    })
    .as_ref()
}

fuzz_target!(|data: &[u8]| {
    if let Some((runtime, resolver)) = resolver() {
        let client = std::net::IpAddr::from([127, 0, 0, 1]);
        for transport in [Transport::Udp, Transport::Tcp] {
            if let Some(reply) = runtime.block_on(resolver.handle(data, client, transport)) {
                assert!(reply.len() >= 12);
                if transport == Transport::Udp {
                    assert!(reply.len() <= 4096);
                }
            }
            match (
                resolver.answer_now(data, client, transport),
                resolver.answer_parsed(data, client, transport),
            ) {
                (Immediate::Reply(read), Immediate::Reply(parsed)) => assert_eq!(read, parsed),
                (Immediate::Upstream(_), Immediate::Upstream(_)) => {}
                (read, parsed) => panic!("answered {read:?}, parsed {parsed:?}"),
            }
        }
    }
});
