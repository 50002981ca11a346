//! The guest network's captive state through the DNS server on loopback
//! (M4): a guest-network client that has not accepted the visitor
//! agreement gets the block page's address for every name, whatever
//! `block_answer` says, so its browser lands on the portal; once it has
//! accepted, its names are filtered as a guest's (here: blocked with the
//! configured null answer, without asking an upstream for the test).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use sheepdog_config::DnsConfig;
use sheepdog_dns::{DnsServer, Resolver, ResolverSettings};
use sheepdog_events::identity::parse_net;
use sheepdog_events::{EventSink, GuestNetworks, IdentityMap, IdentityResolver};
use sheepdog_policy::{build_snapshot, CompiledPolicy, Engine, PolicyDocument};
use tokio::net::UdpSocket;

const POLICY: &str = r#"
fallback_group = "guest"

[school]
name = "Loopback Primary"
time_zone = "Europe/London"

[[lists]]
name = "malware"
source = "blocked.txt"
format = "domains"
category = "malware"

[[groups]]
name = "guest"
default = "allow"
[groups.categories]
malware = "block"
"#;

/// Asks for `name`'s A record from `source`; the answer's addresses.
async fn ask(server: SocketAddr, source: &str, name: &str) -> Vec<(Ipv4Addr, u32)> {
    let socket = UdpSocket::bind(format!("{source}:0")).await.unwrap();
    let mut message = Message::new();
    message
        .set_id(4242)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    socket
        .send_to(&message.to_vec().unwrap(), server)
        .await
        .unwrap();
    let mut buffer = vec![0u8; 4096];
    let (len, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buffer))
        .await
        .unwrap()
        .unwrap();
    Message::from_vec(&buffer[..len])
        .unwrap()
        .answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::A(a) => Some((a.0, r.ttl())),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captive_guests_are_sent_to_the_block_page_until_they_accept() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("blocked.txt"), "blocked.test\n").unwrap();
    let doc = PolicyDocument::from_toml(POLICY).unwrap();
    let (snapshot, _) = build_snapshot(&doc, dir.path(), None).unwrap();
    let engine = Arc::new(Engine::new(
        CompiledPolicy::compile(&doc, Arc::new(snapshot)).unwrap(),
    ));
    let guests = Arc::new(GuestNetworks::new(
        vec![parse_net("127.0.9.0/24").unwrap()],
        "guest",
    ));
    let identities =
        Arc::new(IdentityResolver::new(IdentityMap::new("guest")).with_guests(guests.clone()));
    // Blocks normally answer 0.0.0.0; the block page is 127.0.0.80.
    let config = DnsConfig {
        block_page_ipv4: "127.0.0.80".to_string(),
        ..DnsConfig::default()
    };
    let (sink, mut events) = EventSink::channel(64);
    let resolver = Arc::new(Resolver::new(
        engine,
        identities,
        Some(sink),
        ResolverSettings::from_config(&config),
    ));
    let server = DnsServer::start(resolver, &["127.0.0.1:0".parse().unwrap()])
        .await
        .unwrap();
    let addr = server.udp_addrs()[0];
    let page = Ipv4Addr::new(127, 0, 0, 80);

    for name in ["connectivitycheck.gstatic.com", "www.example.test"] {
        assert_eq!(ask(addr, "127.0.9.5", name).await, [(page, 1)], "{name}");
        let event = events.recv().await.unwrap();
        assert_eq!(
            (event.action.as_str(), event.group.as_deref()),
            ("block", Some("captive"))
        );
    }
    guests.admit(
        IpAddr::from([127, 0, 9, 5]),
        chrono::Utc::now() + chrono::Duration::hours(1),
    );
    // Accepted: the guest group's filtering, and its usual block answer.
    assert_eq!(
        ask(addr, "127.0.9.5", "blocked.test").await,
        [(Ipv4Addr::UNSPECIFIED, 60)]
    );
    let event = events.recv().await.unwrap();
    assert_eq!(event.group.as_deref(), Some("guest"));
    // The neighbour is still captive.
    assert_eq!(ask(addr, "127.0.9.6", "blocked.test").await, [(page, 1)]);
    server.stop().await;
}
