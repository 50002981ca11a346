//! The resolver end to end on loopback: real sockets, a real upstream
//! (unbound, started by scripts/dns-upstream, which installs it if absent)
//! and a real client (dig from dnsutils, installed if absent), plus raw
//! packets built with hickory-proto where the test needs exact bytes.

// Helpers outside #[test] functions fail loudly too: this is a test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use sheepdog_config::{BlockAnswer, DnsConfig, Upstream};
use sheepdog_dns::{DnsServer, Resolver, ResolverSettings};
use sheepdog_events::identity::parse_net;
use sheepdog_events::{DecisionEvent, EventSink, Identity, IdentityMap, IdentityResolver};
use sheepdog_policy::{build_snapshot, CompiledPolicy, Engine, PolicyDocument};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;

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

[[lists]]
name = "iwf"
source = "iwf.txt"
format = "urls"
category = "iwf"
legal_requirement = true

[[groups]]
name = "guest"
default = "allow"
[groups.categories]
malware = "block"

[[groups]]
name = "ks2"
default = "allow"
allow_private_relay = true
[groups.categories]
malware = "block"
[groups.safe_search]
youtube = "moderate"
"#;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A program from PATH or /usr/sbin, installed from Debian's packages if
/// absent (as scripts/pg-throwaway does for PostgreSQL).
fn tool(program: &str, package: &str) -> PathBuf {
    let find = || {
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    };
    if let Some(found) = find() {
        return found;
    }
    let _ = Command::new("apt-get").arg("update").arg("-qq").status();
    let status = Command::new("apt-get")
        .args(["install", "-y", "-qq", package])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
    find().unwrap_or_else(|| {
        panic!("{program} is not installed and installing {package} failed: {status:?}")
    })
}

/// A real unbound serving the .test records of scripts/dns-upstream.
struct UnboundUpstream {
    dir: tempfile::TempDir,
    port: u16,
}

impl UnboundUpstream {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(repo_root().join("scripts/dns-upstream"))
            .args(["start", "unbound"])
            .arg(dir.path().join("unbound"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        Self { dir, port }
    }
}

impl UnboundUpstream {
    /// unbound serving DNS over TLS too, as `dns.test`: the TLS port and
    /// the file of the authority that issued its certificate.
    fn start_tls() -> (Self, u16, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(repo_root().join("scripts/dns-upstream"))
            .args(["start", "unbound"])
            .arg(dir.path().join("unbound"))
            .env("DNS_UPSTREAM_TLS", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        let tls_port = std::fs::read_to_string(dir.path().join("unbound/tls.port"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let ca = dir.path().join("unbound/tls-ca.pem");
        (Self { dir, port }, tls_port, ca)
    }
}

impl Drop for UnboundUpstream {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("scripts/dns-upstream"))
            .arg("stop")
            .arg(self.dir.path().join("unbound"))
            .status();
    }
}

struct Harness {
    server: Option<DnsServer>,
    resolver: Arc<Resolver>,
    events: mpsc::Receiver<DecisionEvent>,
    addr: SocketAddr,
    _policy_dir: tempfile::TempDir,
}

fn engine() -> (Arc<Engine>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("blocked.txt"), "blocked.test\n").unwrap();
    // A URL-level entry, as the IWF delivers them: the host itself is not
    // blocked, one page on it is.
    std::fs::write(
        dir.path().join("iwf.txt"),
        "other.example.test/abuse/page.html\n",
    )
    .unwrap();
    let doc = PolicyDocument::from_toml(POLICY).unwrap();
    let (snapshot, _) = build_snapshot(&doc, dir.path(), None).unwrap();
    let policy = CompiledPolicy::compile(&doc, Arc::new(snapshot)).unwrap();
    (Arc::new(Engine::new(policy)), dir)
}

async fn harness(upstreams: Vec<Upstream>, tweak: impl FnOnce(&mut DnsConfig)) -> Harness {
    let (engine, policy_dir) = engine();
    let mut map = IdentityMap::new("guest");
    map.insert(
        parse_net("127.0.0.2").unwrap(),
        Identity {
            device_id: Some(7),
            device_name: Some(Arc::from("KS2-LAPTOP-07")),
            person_id: Some(42),
            group: Arc::from("ks2"),
            school_id: Some(3),
        },
    );
    let mut config = DnsConfig {
        upstreams,
        timeout_ms: 800,
        attempt_timeout_ms: 400,
        ..DnsConfig::default()
    };
    tweak(&mut config);
    let (sink, events) = EventSink::channel(1024);
    let resolver = Arc::new(Resolver::new(
        engine,
        Arc::new(IdentityResolver::new(map)),
        Some(sink),
        ResolverSettings::from_config(&config),
    ));
    let server = DnsServer::start(resolver.clone(), &["127.0.0.1:0".parse().unwrap()])
        .await
        .unwrap();
    let addr = server.udp_addrs()[0];
    Harness {
        server: Some(server),
        resolver,
        events,
        addr,
        _policy_dir: policy_dir,
    }
}

fn local(port: u16) -> Upstream {
    format!("127.0.0.1:{port}").parse().unwrap()
}

/// Runs dig against the server and returns its output.
fn dig(addr: SocketAddr, args: &[&str]) -> String {
    let dig = tool("dig", "dnsutils");
    let out = Command::new(dig)
        .arg(format!("@{}", addr.ip()))
        .args(["-p", &addr.port().to_string(), "+time=3", "+tries=1"])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn dig_async(addr: SocketAddr, args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        dig(addr, &refs)
    })
    .await
    .unwrap()
}

fn short(output: &str) -> Vec<String> {
    output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

async fn next_event(events: &mut mpsc::Receiver<DecisionEvent>) -> DecisionEvent {
    tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap()
        .unwrap()
}

/// One question over UDP, asked once: the answer must come within 3 s.
async fn udp_exchange(addr: SocketAddr, bytes: &[u8]) -> Option<Message> {
    udp_ask(addr, bytes, 1, Duration::from_secs(3)).await
}

/// One question over UDP, asked up to `tries` times `wait` apart, as a stub
/// resolver would: UDP may drop a datagram when the server's buffer is full
/// (as after the garbage burst below), and that alone is not a failure.
async fn udp_ask(addr: SocketAddr, bytes: &[u8], tries: usize, wait: Duration) -> Option<Message> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buffer = vec![0u8; 65_535];
    for _ in 0..tries {
        socket.send_to(bytes, addr).await.unwrap();
        if let Ok(Ok((len, _))) = tokio::time::timeout(wait, socket.recv_from(&mut buffer)).await {
            return Some(Message::from_vec(&buffer[..len]).unwrap());
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_caches_blocks_and_records_events() {
    let upstream = UnboundUpstream::start();
    let mut h = harness(vec![local(upstream.port)], |_| {}).await;

    let out = dig_async(h.addr, &["+short", "www.example.test", "A"]).await;
    assert_eq!(short(&out), ["192.0.2.10"], "{out}");
    let event = next_event(&mut h.events).await;
    assert_eq!(
        (event.target.as_str(), event.action.as_str()),
        ("www.example.test", "allow")
    );
    assert_eq!(event.query_type.as_deref(), Some("A"));
    assert_eq!(event.group.as_deref(), Some("guest"));
    assert!(event.upstream_ms.is_some());

    // A second ask is answered from the cache.
    let out = dig_async(h.addr, &["+short", "www.example.test", "A"]).await;
    assert_eq!(short(&out), ["192.0.2.10"]);
    assert_eq!(next_event(&mut h.events).await.upstream_ms, None);
    assert!(!h.resolver.cache().is_empty());

    let out = dig_async(h.addr, &["+short", "www.example.test", "AAAA"]).await;
    assert_eq!(short(&out), ["2001:db8::10"]);
    next_event(&mut h.events).await;

    // NXDOMAIN from upstream passes through (and is cached negatively).
    let out = dig_async(h.addr, &["nothere.example.test", "A"]).await;
    assert!(out.contains("status: NXDOMAIN"), "{out}");
    next_event(&mut h.events).await;

    // A listed name: 0.0.0.0 with a short TTL, attributed to the device.
    let out = dig_async(
        h.addr,
        &[
            "-b",
            "127.0.0.2",
            "+noall",
            "+answer",
            "ads.blocked.test",
            "A",
        ],
    )
    .await;
    assert!(out.contains("60\tIN\tA\t0.0.0.0"), "{out}");
    let event = next_event(&mut h.events).await;
    assert_eq!(event.action, "block");
    assert_eq!(event.category.as_deref(), Some("malware"));
    assert_eq!(event.list.as_deref(), Some("malware"));
    assert_eq!(event.device_name.as_deref(), Some("KS2-LAPTOP-07"));
    assert_eq!(event.person_id, Some(42));
    // The device's school, for a school's own staff to find it in the log.
    assert_eq!(event.school_id, Some(3));
    assert_eq!(event.client, "127.0.0.2");

    // CNAME cloaking: an allowed name whose chain reaches a listed one.
    let out = dig_async(h.addr, &["+short", "cloaked.example.test", "A"]).await;
    assert_eq!(short(&out), ["0.0.0.0"], "{out}");
    let event = next_event(&mut h.events).await;
    assert_eq!(event.action, "block");
    assert!(
        event
            .rule
            .as_deref()
            .unwrap_or("")
            .contains("CNAME tracker.blocked.test"),
        "{event:?}"
    );

    // The Firefox canary.
    let out = dig_async(h.addr, &["use-application-dns.net", "A"]).await;
    assert!(out.contains("status: NXDOMAIN"), "{out}");
    assert_eq!(
        next_event(&mut h.events).await.category.as_deref(),
        Some("doh")
    );

    h.server.take().unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_with_url_rules_are_sent_to_the_proxy_when_it_is_set() {
    let upstream = UnboundUpstream::start();
    // Off by default: the host of a URL-level entry is answered as usual.
    let mut off = harness(vec![local(upstream.port)], |_| {}).await;
    let out = dig_async(off.addr, &["+short", "other.example.test", "A"]).await;
    assert_eq!(short(&out), ["192.0.2.11"], "{out}");
    assert_eq!(next_event(&mut off.events).await.action, "allow");
    off.server.take().unwrap().stop().await;

    let mut h = harness(vec![local(upstream.port)], |dns| {
        dns.url_rules_proxy_ipv4 = "192.0.2.80".to_string();
    })
    .await;
    let out = dig_async(h.addr, &["+noall", "+answer", "other.example.test", "A"]).await;
    assert!(out.contains("60\tIN\tA\t192.0.2.80"), "{out}");
    let event = next_event(&mut h.events).await;
    assert_eq!(event.action, "allow", "{event:?}");
    assert!(
        event
            .rule
            .as_deref()
            .unwrap_or("")
            .contains("proxy's address"),
        "{event:?}"
    );
    assert_eq!(event.upstream_ms, None, "not asked upstream: {event:?}");
    // No IPv6 address for the proxy: AAAA gets no address rather than the
    // origin's, and HTTPS records no address hints.
    for kind in ["AAAA", "HTTPS"] {
        let out = dig_async(h.addr, &["other.example.test", kind]).await;
        assert!(out.contains("status: NOERROR"), "{kind}: {out}");
        assert!(out.contains("ANSWER: 0,"), "{kind}: {out}");
        next_event(&mut h.events).await;
    }
    // Other names, and other record types, go on as before.
    let out = dig_async(h.addr, &["+short", "www.example.test", "A"]).await;
    assert_eq!(short(&out), ["192.0.2.10"], "{out}");
    next_event(&mut h.events).await;
    let out = dig_async(h.addr, &["other.example.test", "TXT"]).await;
    assert!(!out.contains("192.0.2.80"), "{out}");
    assert!(next_event(&mut h.events).await.upstream_ms.is_some());
    h.server.take().unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safe_search_rewrites_per_group() {
    let upstream = UnboundUpstream::start();
    let mut h = harness(vec![local(upstream.port)], |_| {}).await;

    let out = dig_async(h.addr, &["+noall", "+answer", "www.google.co.uk", "A"]).await;
    assert!(out.contains("CNAME\tforcesafesearch.google.com."), "{out}");
    assert!(out.contains("216.239.38.120"), "{out}");
    let event = next_event(&mut h.events).await;
    assert_eq!(event.action, "rewrite");

    // Guests get strict YouTube; the ks2 device moderate.
    let out = dig_async(h.addr, &["+short", "www.youtube.com", "A"]).await;
    assert_eq!(
        short(&out),
        ["restrict.youtube.com.", "216.239.38.120"],
        "{out}"
    );
    let out = dig_async(h.addr, &["-b", "127.0.0.2", "+short", "m.youtube.com", "A"]).await;
    assert_eq!(
        short(&out),
        ["restrictmoderate.youtube.com.", "216.239.38.119"],
        "{out}"
    );
    for (name, target) in [
        ("www.bing.com", "strict.bing.com."),
        ("duckduckgo.com", "safe.duckduckgo.com."),
    ] {
        let out = dig_async(h.addr, &["+short", name, "A"]).await;
        assert_eq!(short(&out)[0], target, "{out}");
    }
    h.server.take().unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_flags_case_edns_and_truncation() {
    let upstream = UnboundUpstream::start();
    let h = harness(vec![local(upstream.port)], |c| {
        c.block_answer = BlockAnswer::Nxdomain
    })
    .await;

    let mut request = Message::new();
    request
        .set_id(0xbeef)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(
            Name::from_ascii("WwW.ExAmPlE.TeSt.").unwrap(),
            RecordType::A,
        ));
    let response = udp_exchange(h.addr, &request.to_vec().unwrap())
        .await
        .unwrap();
    assert_eq!(response.id(), 0xbeef);
    assert_eq!(response.message_type(), MessageType::Response);
    assert!(response.recursion_desired() && response.recursion_available());
    assert_eq!(response.queries()[0].name().to_ascii(), "WwW.ExAmPlE.TeSt.");
    assert_eq!(response.answers().len(), 1);
    assert!(response.extensions().is_none(), "no OPT in, no OPT out");

    // block_answer = nxdomain
    let out = dig_async(h.addr, &["ads.blocked.test", "A"]).await;
    assert!(out.contains("status: NXDOMAIN"), "{out}");

    // 40 TXT records do not fit in 512 bytes: TC over UDP without EDNS...
    let out = dig_async(h.addr, &["+noedns", "+ignore", "big.example.test", "TXT"]).await;
    assert!(out.contains(" tc"), "{out}");
    // ...dig then retries over TCP and gets them all...
    let out = dig_async(h.addr, &["+noedns", "+short", "big.example.test", "TXT"]).await;
    assert_eq!(short(&out).len(), 40, "{out}");
    // ...and with a 4096-byte EDNS buffer they fit over UDP.
    let out = dig_async(
        h.addr,
        &["+bufsize=4096", "+ignore", "big.example.test", "TXT"],
    )
    .await;
    assert!(!out.contains(" tc"), "{out}");
    assert!(out.contains("ANSWER: 40"), "{out}");
    assert!(out.contains("OPT PSEUDOSECTION"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_over_udp_and_tcp_never_stops_the_server() {
    let upstream = UnboundUpstream::start();
    let h = harness(vec![local(upstream.port)], |_| {}).await;

    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![0xff],
        vec![0; 11],
        // A header claiming one question, then a label longer than 63.
        vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x50, b'a'],
        // A compression pointer that points at itself.
        vec![
            0x12, 0x35, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1,
        ],
        // A response: never answered.
        vec![0x12, 0x36, 0x81, 0x80, 0, 0, 0, 0, 0, 0, 0, 0],
        vec![0xaa; 65_000],
    ];
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..300 {
        let len = (rng % 600) as usize;
        let mut packet = Vec::with_capacity(len);
        for _ in 0..len {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            packet.push(rng as u8);
        }
        garbage.push(packet);
    }
    for packet in &garbage {
        let _ = socket.send_to(packet, h.addr).await;
    }
    // A header with a bad question gets FORMERR with its ID.
    let retrying = |packet| udp_ask(h.addr, packet, 3, Duration::from_secs(1));
    let reply = retrying(&garbage[3]).await.unwrap();
    assert_eq!(reply.id(), 0x1234);
    assert_eq!(reply.response_code(), ResponseCode::FormErr);
    let reply = retrying(&garbage[4]).await.unwrap();
    assert_eq!(reply.response_code(), ResponseCode::FormErr);

    for packet in garbage.iter().take(60) {
        let mut stream = TcpStream::connect(h.addr).await.unwrap();
        let len = u16::try_from(packet.len().min(65_535)).unwrap();
        let _ = stream.write_all(&len.to_be_bytes()).await;
        let _ = stream.write_all(&packet[..usize::from(len)]).await;
        let mut sink = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_millis(200), stream.read_to_end(&mut sink)).await;
    }
    // A length prefix promising more than is sent, then a hang-up.
    let mut stream = TcpStream::connect(h.addr).await.unwrap();
    stream.write_all(&[0xff, 0xff, 1, 2, 3]).await.unwrap();
    drop(stream);

    let out = dig_async(h.addr, &["+short", "www.example.test", "A"]).await;
    assert_eq!(short(&out), ["192.0.2.10"], "{out}");
    let out = dig_async(h.addr, &["+tcp", "+short", "www.example.test", "A"]).await;
    assert_eq!(short(&out), ["192.0.2.10"], "{out}");
}

/// A blocked question with this ID, as bytes.
fn blocked_question(id: u16, name: &str) -> Vec<u8> {
    let mut request = Message::new();
    request
        .set_id(id)
        .set_message_type(MessageType::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    request.to_vec().unwrap()
}

/// Queries arriving faster than they are answered are taken and answered
/// in batches (recvmmsg, sendmmsg): every one is answered, once, to the
/// socket that asked, with its own ID and question.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_from_several_clients_is_answered_in_full_each_to_its_sender() {
    let h = harness(vec![], |_| {}).await;
    const CLIENTS: u16 = 4;
    const EACH: u16 = 24;
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        clients.push(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let socket = clients.last().unwrap();
        for n in 0..EACH {
            let id = c << 8 | n;
            let name = format!("q{n}.c{c}.blocked.test.");
            socket
                .send_to(&blocked_question(id, &name), h.addr)
                .await
                .unwrap();
        }
    }
    let mut buffer = vec![0u8; 4096];
    for (c, socket) in (0..CLIENTS).zip(&clients) {
        let mut seen = std::collections::BTreeSet::new();
        while seen.len() < usize::from(EACH) {
            let (len, _) =
                tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buffer))
                    .await
                    .expect("every query answered")
                    .unwrap();
            let reply = Message::from_vec(&buffer[..len]).unwrap();
            assert_eq!(reply.id() >> 8, c, "an answer reached another client");
            let n = reply.id() & 0xff;
            assert_eq!(
                reply.queries()[0].name().to_ascii(),
                format!("q{n}.c{c}.blocked.test.")
            );
            assert_eq!(reply.message_type(), MessageType::Response);
            assert!(seen.insert(n), "query {n} of client {c} answered twice");
        }
    }
}

/// IPv4 and IPv6 listeners served by one worker thread, asked in turn:
/// each answer reaches its sender. The receive headers are kept per
/// thread between batches, one set per address family, because the kernel
/// shortens a header's address length to the last sender's; a set shared
/// by both families would cut the IPv6 senders' addresses short.
#[tokio::test(flavor = "current_thread")]
async fn ipv4_and_ipv6_clients_on_one_thread_are_each_answered() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here: nothing to test");
        return;
    }
    let (engine, _policy_dir) = engine();
    let resolver = Arc::new(Resolver::new(
        engine,
        Arc::new(IdentityResolver::new(IdentityMap::new("guest"))),
        None,
        ResolverSettings::from_config(&DnsConfig::default()),
    ));
    let listen: [SocketAddr; 2] = ["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()];
    let server = DnsServer::start(resolver, &listen).await.unwrap();
    let v4 = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let v6 = UdpSocket::bind("[::1]:0").await.unwrap();
    let mut buffer = vec![0u8; 4096];
    for n in 0..20u16 {
        for (socket, addr) in [(&v4, server.udp_addrs()[0]), (&v6, server.udp_addrs()[1])] {
            let name = format!("q{n}.blocked.test.");
            socket
                .send_to(&blocked_question(n, &name), addr)
                .await
                .unwrap();
            let (len, from) =
                tokio::time::timeout(Duration::from_secs(3), socket.recv_from(&mut buffer))
                    .await
                    .expect("answered")
                    .unwrap();
            assert_eq!(from, addr);
            let reply = Message::from_vec(&buffer[..len]).unwrap();
            assert_eq!(reply.id(), n);
            assert_eq!(reply.queries()[0].name().to_ascii(), name);
        }
    }
    server.stop().await;
}

/// A datagram longer than any DNS question is dropped whole, not judged by
/// its first bytes; the question after it is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_datagram_is_dropped_and_the_next_question_answered() {
    let h = harness(vec![], |_| {}).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // A valid question padded far past any real one.
    let mut oversized = blocked_question(0x7777, "big.blocked.test.");
    oversized.resize(20_000, 0);
    socket.send_to(&oversized, h.addr).await.unwrap();
    socket
        .send_to(&blocked_question(0x7778, "next.blocked.test."), h.addr)
        .await
        .unwrap();
    let mut buffer = vec![0u8; 4096];
    let (len, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buffer))
        .await
        .expect("the next question answered")
        .unwrap();
    // Answers go in order of arrival: an answer to the oversized one would
    // come first.
    assert_eq!(Message::from_vec(&buffer[..len]).unwrap().id(), 0x7778);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_gives_servfail_within_the_timeout() {
    // One upstream refuses (a closed port), one swallows queries (a bound
    // socket that never answers): both fail, and the client hears SERVFAIL
    // within timeout_ms.
    let closed = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let black_hole = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let hole = black_hole.local_addr().unwrap().port();
    let mut h = harness(vec![local(closed), local(hole)], |c| {
        c.timeout_ms = 600;
        c.attempt_timeout_ms = 300;
    })
    .await;
    let started = Instant::now();
    let out = dig_async(h.addr, &["www.example.test", "A"]).await;
    let took = started.elapsed();
    assert!(out.contains("status: SERVFAIL"), "{out}");
    // The behaviour under test is "an answer, not a hang": the bound is
    // well above timeout_ms (0.6 s) so that a loaded machine does not fail
    // it, and below dig's own 5 s retry, which a hang would run into.
    assert!(took < Duration::from_millis(4000), "{took:?}");
    assert_eq!(next_event(&mut h.events).await.action, "allow");

    // No upstreams at all: SERVFAIL at once.
    let h = harness(vec![], |_| {}).await;
    let out = dig_async(h.addr, &["www.example.test", "A"]).await;
    assert!(out.contains("status: SERVFAIL"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_questions_are_all_answered() {
    let upstream = UnboundUpstream::start();
    let h = harness(vec![local(upstream.port)], |_| {}).await;
    let mut tasks = Vec::new();
    for i in 0..64u16 {
        let addr = h.addr;
        tasks.push(tokio::spawn(async move {
            let mut request = Message::new();
            request
                .set_id(i)
                .set_message_type(MessageType::Query)
                .set_recursion_desired(true)
                .add_query(Query::query(
                    Name::from_ascii("other.example.test.").unwrap(),
                    RecordType::A,
                ));
            udp_exchange(addr, &request.to_vec().unwrap()).await
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let reply = task.await.unwrap().expect("an answer");
        assert_eq!(usize::from(reply.id()), i);
        assert_eq!(reply.answers().len(), 1);
    }
    let _: IpAddr = h.addr.ip();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_over_tls_upstreams_are_verified_before_they_are_used() {
    let (upstream, tls_port, ca) = UnboundUpstream::start_tls();
    let over_tls: Upstream = format!("tls://127.0.0.1:{tls_port}#dns.test")
        .parse()
        .unwrap();
    let mut h = harness(vec![over_tls.clone()], |dns| {
        dns.upstream_roots = ca.clone()
    })
    .await;
    let out = dig_async(h.addr, &["+short", "www.example.test", "A"]).await;
    assert_eq!(short(&out), ["192.0.2.10"], "{out}");
    let event = next_event(&mut h.events).await;
    assert_eq!(event.action, "allow");
    assert!(event.upstream_ms.is_some());

    // Without the resolver's authority among the roots, its certificate is
    // not trusted: SERVFAIL, not an unverified answer.
    let h = harness(vec![over_tls.clone()], |_| {}).await;
    let out = dig_async(h.addr, &["www.example.test", "A"]).await;
    assert!(out.contains("status: SERVFAIL"), "{out}");

    // Nor when the certificate is for another name.
    let wrong: Upstream = format!("tls://127.0.0.1:{tls_port}#other.test")
        .parse()
        .unwrap();
    let h = harness(vec![wrong], |dns| dns.upstream_roots = ca.clone()).await;
    let out = dig_async(h.addr, &["www.example.test", "A"]).await;
    assert!(out.contains("status: SERVFAIL"), "{out}");
    drop(upstream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_relay_is_refused_unless_the_group_allows_it() {
    let upstream = UnboundUpstream::start();
    let mut h = harness(vec![local(upstream.port)], |_| {}).await;
    for name in ["mask.icloud.com", "mask-h2.icloud.com"] {
        let out = dig_async(h.addr, &[name, "A"]).await;
        assert!(out.contains("status: NXDOMAIN"), "{out}");
        let event = next_event(&mut h.events).await;
        assert_eq!(
            (event.action.as_str(), event.category.as_deref()),
            ("block", Some("private_relay")),
            "{event:?}"
        );
    }
    // The ks2 group allows it: the question goes upstream like any other.
    let _ = dig_async(h.addr, &["-b", "127.0.0.2", "mask.icloud.com", "A"]).await;
    let event = next_event(&mut h.events).await;
    assert_eq!(event.action, "allow", "{event:?}");
    assert_eq!(event.category, None);
    drop(upstream);
}

/// A UDP upstream under the test's control: it swallows every question
/// (a dead resolver) until told to answer, then answers each with
/// 192.0.2.99. It records the names it was asked.
struct Switchable {
    port: u16,
    answering: Arc<std::sync::atomic::AtomicBool>,
    asked: Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Switchable {
    async fn start() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = socket.local_addr().unwrap().port();
        let answering = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (on, log) = (answering.clone(), asked.clone());
        let task = tokio::spawn(async move {
            let mut buffer = vec![0u8; 4096];
            loop {
                let (len, from) = socket.recv_from(&mut buffer).await.unwrap();
                let request = Message::from_vec(&buffer[..len]).unwrap();
                let query = request.queries()[0].clone();
                log.lock().unwrap().push(query.name().to_ascii());
                if !on.load(std::sync::atomic::Ordering::SeqCst) {
                    continue;
                }
                let mut reply = Message::new();
                reply
                    .set_id(request.id())
                    .set_message_type(MessageType::Response)
                    .set_op_code(OpCode::Query)
                    .set_recursion_available(true)
                    .add_query(query.clone());
                if query.query_type() == RecordType::A {
                    reply.add_answer(hickory_proto::rr::Record::from_rdata(
                        query.name().clone(),
                        60,
                        hickory_proto::rr::RData::A(hickory_proto::rr::rdata::A(
                            "192.0.2.99".parse().unwrap(),
                        )),
                    ));
                }
                socket
                    .send_to(&reply.to_vec().unwrap(), from)
                    .await
                    .unwrap();
            }
        });
        Self {
            port,
            answering,
            asked,
            task,
        }
    }

    fn asked_for(&self, name: &str) -> bool {
        self.asked.lock().unwrap().iter().any(|n| n == name)
    }
}

/// Polls `condition` until it holds; fails the test after 20 s (a guard
/// against hanging, not a timing assertion).
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_mark_a_dead_upstream_down_and_a_recovered_one_up() {
    let second = UnboundUpstream::start();
    let first = Switchable::start().await;
    let settings = ResolverSettings {
        health_check: Some(sheepdog_dns::upstream::HealthCheck {
            every: Duration::from_millis(50),
            name: Name::root(),
            record_type: RecordType::NS,
        }),
        ..ResolverSettings::from_config(&DnsConfig {
            upstreams: vec![local(first.port), local(second.port)],
            timeout_ms: 2000,
            attempt_timeout_ms: 200,
            ..DnsConfig::default()
        })
    };
    let upstreams = {
        let (engine, _dir) = engine();
        Arc::new(Resolver::new(
            engine,
            Arc::new(IdentityResolver::new(IdentityMap::new("guest"))),
            None,
            settings,
        ))
    };
    let health = || upstreams.upstreams().health();
    let first_addr: SocketAddr = format!("127.0.0.1:{}", first.port).parse().unwrap();
    let second_addr: SocketAddr = format!("127.0.0.1:{}", second.port).parse().unwrap();
    assert!(health().iter().all(|h| h.up), "{:?}", health());

    // The probes find the first upstream dead and mark it down, before any
    // client has asked anything.
    eventually("the dead upstream is marked down", || !health()[0].up).await;
    assert!(health()[1].up, "{:?}", health());

    // Clients' questions now go straight to the second: the dead one is
    // not asked (and its timeout not paid).
    let name = Name::from_ascii("www.example.test.").unwrap();
    let answer = upstreams
        .upstreams()
        .resolve(&name, RecordType::A)
        .await
        .unwrap();
    assert_eq!(answer.upstream, second_addr);
    assert!(
        !first.asked_for("www.example.test."),
        "{:?}",
        first.asked.lock().unwrap()
    );

    // It comes back: the probes see it answer and it is first again.
    first
        .answering
        .store(true, std::sync::atomic::Ordering::SeqCst);
    eventually("the recovered upstream is marked up", || health()[0].up).await;
    let name = Name::from_ascii("other.example.test.").unwrap();
    let answer = upstreams
        .upstreams()
        .resolve(&name, RecordType::A)
        .await
        .unwrap();
    assert_eq!(answer.upstream, first_addr);
    first.task.abort();
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_over_tls_connections_are_reused_for_many_questions() {
    let (upstream, tls_port, ca) = UnboundUpstream::start_tls();
    let over_tls: Upstream = format!("tls://127.0.0.1:{tls_port}#dns.test")
        .parse()
        .unwrap();
    let mut config = DnsConfig {
        upstreams: vec![over_tls],
        upstream_roots: ca,
        timeout_ms: 5000,
        attempt_timeout_ms: 5000,
        health_check_secs: 0,
        ..DnsConfig::default()
    };
    config.cache_size = 0;
    let upstreams = Arc::new(sheepdog_dns::upstream::Upstreams::new(
        &config.upstreams,
        Duration::from_millis(5000),
        Duration::from_millis(5000),
        Some(&config.upstream_roots),
    ));
    // One at a time: each question after the first rides the connection
    // the first one opened.
    for name in [
        "www.example.test.",
        "other.example.test.",
        "nothere.example.test.",
    ] {
        let answer = upstreams
            .resolve(&Name::from_ascii(name).unwrap(), RecordType::A)
            .await
            .unwrap();
        let expected = match name {
            "www.example.test." => Some("192.0.2.10"),
            "other.example.test." => Some("192.0.2.11"),
            _ => None,
        };
        let got = answer
            .message
            .answers()
            .first()
            .map(|r| r.data().to_string());
        assert_eq!(got.as_deref(), expected, "{name}");
    }
    assert_eq!(upstreams.tls_connections(), 1);

    // Many at once, pipelined on the same connection, each answer matched
    // to its question by ID.
    let mut tasks = Vec::new();
    for i in 0..200 {
        let upstreams = upstreams.clone();
        tasks.push(tokio::spawn(async move {
            let (name, expected) = if i % 2 == 0 {
                ("www.example.test.", "192.0.2.10")
            } else {
                ("other.example.test.", "192.0.2.11")
            };
            let answer = upstreams
                .resolve(&Name::from_ascii(name).unwrap(), RecordType::A)
                .await
                .unwrap();
            let got = answer.message.answers()[0].data().to_string();
            assert_eq!(got, expected, "{name}");
            assert_eq!(answer.message.queries()[0].name().to_ascii(), name);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(upstreams.tls_connections(), 1);
    drop(upstream);
}

/// A DNS-over-TLS server that answers two questions on each connection
/// (A 192.0.2.99) and then closes it, as a server's idle or per-connection
/// limits do; it counts the connections it accepted.
async fn closing_dot_server(cert: &Path, key: &Path) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                for _ in 0..2 {
                    let Ok(len) = tls.read_u16().await else {
                        return;
                    };
                    let mut buffer = vec![0u8; usize::from(len)];
                    tls.read_exact(&mut buffer).await.unwrap();
                    let request = Message::from_vec(&buffer).unwrap();
                    let query = request.queries()[0].clone();
                    let mut reply = Message::new();
                    reply
                        .set_id(request.id())
                        .set_message_type(MessageType::Response)
                        .set_op_code(OpCode::Query)
                        .add_query(query.clone());
                    reply.add_answer(hickory_proto::rr::Record::from_rdata(
                        query.name().clone(),
                        60,
                        hickory_proto::rr::RData::A(hickory_proto::rr::rdata::A(
                            "192.0.2.99".parse().unwrap(),
                        )),
                    ));
                    let bytes = reply.to_vec().unwrap();
                    let mut framed = u16::try_from(bytes.len()).unwrap().to_be_bytes().to_vec();
                    framed.extend_from_slice(&bytes);
                    tls.write_all(&framed).await.unwrap();
                    tls.flush().await.unwrap();
                }
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dot_connection_the_server_closes_is_replaced() {
    // The certificate for dns.test that scripts/dns-upstream makes.
    let (upstream, _, ca) = UnboundUpstream::start_tls();
    let files = upstream.dir.path().join("unbound");
    let (port, accepted) = closing_dot_server(&files.join("tls.pem"), &files.join("tls.key")).await;
    let over_tls: Upstream = format!("tls://127.0.0.1:{port}#dns.test").parse().unwrap();
    let upstreams = sheepdog_dns::upstream::Upstreams::new(
        &[over_tls],
        Duration::from_secs(5),
        Duration::from_secs(5),
        Some(&ca),
    );
    for i in 0..6 {
        let name = Name::from_ascii(format!("q{i}.example.test.")).unwrap();
        let answer = upstreams.resolve(&name, RecordType::A).await.unwrap();
        assert_eq!(answer.message.answers()[0].data().to_string(), "192.0.2.99");
        assert_eq!(answer.message.queries()[0].name(), &name);
    }
    // Two questions a connection: three connections, each reused once.
    assert_eq!(upstreams.tls_connections(), 3);
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
    drop(upstream);
}

/// Under a flood of queries the UDP receive loops share their worker: a
/// task woken meanwhile (as the event writer is, by every event sent) is
/// run while the flood goes on, not only when it stops. One worker thread,
/// so a loop that never yields would leave it nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_flood_of_queries_does_not_starve_other_tasks() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let h = harness(vec![], |_| {}).await;
    let flooding = Arc::new(AtomicBool::new(true));
    let mut flooders = Vec::new();
    for c in 0..2u16 {
        let flooding = flooding.clone();
        let addr = h.addr;
        flooders.push(std::thread::spawn(move || {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let mut sent = 0u64;
            while flooding.load(Ordering::Relaxed) {
                let id = (c << 15) | (sent as u16 & 0x7fff);
                // Answers are not read: the client's buffer fills and the
                // kernel drops them, which is the client's loss, not ours.
                let _ = socket.send_to(&blocked_question(id, "flood.blocked.test."), addr);
                sent += 1;
            }
            sent
        }));
    }
    // A task woken by a channel every millisecond while the flood runs.
    let received = Arc::new(AtomicU64::new(0));
    let (tx, mut rx) = mpsc::channel::<()>(4096);
    let counter = tokio::spawn({
        let received = received.clone();
        async move {
            while rx.recv().await.is_some() {
                received.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    let sends = 1000u64;
    let during = std::thread::spawn({
        let received = received.clone();
        move || {
            for _ in 0..sends {
                let _ = tx.try_send(());
                std::thread::sleep(Duration::from_millis(1));
            }
            received.load(Ordering::Relaxed)
        }
    })
    .join()
    .unwrap();
    flooding.store(false, Ordering::Relaxed);
    let sent: u64 = flooders.into_iter().map(|f| f.join().unwrap()).sum();
    counter.await.unwrap();
    assert!(sent > 10_000, "the flood was only {sent} queries");
    // Without the yield the count was 0; with it, on a busy machine where
    // the threads here wait for the two cores too, as low as 377-385. A
    // tenth tells the two apart without timing the machine.
    assert!(
        during > sends / 10,
        "the woken task ran {during} times of {sends} while {sent} queries arrived"
    );
}
