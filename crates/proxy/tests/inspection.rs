//! Selective TLS inspection end to end on loopback: the school's authority
//! made by the same code as `sheepdog ca init`, a real HTTPS origin with a
//! certificate from its own authority, and curl as the browser, trusting
//! only what a managed device would.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use sheepdog_config::ProxyConfig;
use sheepdog_events::{DecisionEvent, EventSink, IdentityMap, IdentityResolver};
use sheepdog_policy::{build_snapshot, CompiledPolicy, Engine, PolicyDocument};
use sheepdog_proxy::{CertificateAuthority, Inspection, Proxy, ProxyServer, ProxySettings};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const POLICY: &str = r#"
fallback_group = "guest"

[school]
name = "Inspection Academy"
time_zone = "Europe/London"

[[lists]]
name = "url-level"
source = "urls.txt"
format = "urls"
category = "gambling"

[[groups]]
name = "guest"
default = "allow"
[groups.categories]
gambling = "block"
"#;

/// A policy that warns about the origin's whole host.
const WARNING_POLICY: &str = r#"
fallback_group = "guest"

[school]
name = "Inspection Academy"
time_zone = "Europe/London"

[[lists]]
name = "forums"
source = "forums.txt"
format = "domains"
category = "social"

[[groups]]
name = "guest"
default = "allow"
[groups.categories]
social = "warn"
"#;

/// A real HTTPS origin for `localhost`, its certificate issued by an
/// authority of its own (as a public CA would); returns its address and
/// that authority's PEM.
async fn https_origin() -> (SocketAddr, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::default();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Distinct names: OpenSSL takes a leaf named like its issuer for a
    // self-signed certificate.
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Loopback Origin Test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &issuer).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = service_fn(|request: Request<hyper::body::Incoming>| async move {
                    let body = format!("secure origin saw {}\n", request.uri());
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, ca_cert.pem())
}

struct Harness {
    _server: ProxyServer,
    proxy: SocketAddr,
    origin: SocketAddr,
    events: mpsc::Receiver<DecisionEvent>,
    school_ca: PathBuf,
    origin_ca: PathBuf,
    _dir: tempfile::TempDir,
}

/// The proxy with inspection; `trust_origin` decides whether the origin's
/// authority is among the proxy's upstream roots.
async fn harness(inspect: &[&str], never: &[&str], trust_origin: bool) -> Harness {
    harness_with(POLICY, inspect, never, trust_origin).await
}

/// The same, with another policy.
async fn harness_with(
    policy: &str,
    inspect: &[&str],
    never: &[&str],
    trust_origin: bool,
) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("urls.txt"), "localhost/forbidden\n").unwrap();
    std::fs::write(dir.path().join("forums.txt"), "localhost\n").unwrap();
    let doc = PolicyDocument::from_toml(policy).unwrap();
    let (snapshot, _) = build_snapshot(&doc, dir.path(), None).unwrap();
    let engine = Arc::new(Engine::new(
        CompiledPolicy::compile(&doc, Arc::new(snapshot)).unwrap(),
    ));
    let (origin, origin_pem) = https_origin().await;
    let origin_ca = dir.path().join("origin-ca.pem");
    std::fs::write(&origin_ca, origin_pem).unwrap();

    let (school_ca, school_key) =
        CertificateAuthority::write_new(dir.path(), "Inspection Academy", false).unwrap();
    let authority = CertificateAuthority::load(&school_ca, &school_key).unwrap();
    let roots = if trust_origin {
        Inspection::trusted_roots(Some(&origin_ca)).unwrap()
    } else {
        Inspection::trusted_roots(None).unwrap()
    };
    let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let inspection = Inspection::new(
        Arc::new(authority),
        roots,
        &strings(inspect),
        &strings(never),
    )
    .unwrap();
    let (sink, events) = EventSink::channel(1024);
    let config = ProxyConfig {
        enabled: true,
        ..ProxyConfig::default()
    };
    let proxy = Proxy::new(
        engine,
        Arc::new(IdentityResolver::new(IdentityMap::new("guest"))),
        Some(sink),
        None,
        ProxySettings::from_config(&config),
    )
    .with_inspection(Arc::new(inspection));
    let server = ProxyServer::start(Arc::new(proxy), &["127.0.0.1:0".parse().unwrap()])
        .await
        .unwrap();
    Harness {
        proxy: server.addrs()[0],
        _server: server,
        origin,
        events,
        school_ca,
        origin_ca,
        _dir: dir,
    }
}

/// curl through the proxy trusting only `ca`: (exit code, HTTP status, body).
async fn curl(proxy: SocketAddr, ca: &Path, url: String) -> (i32, u16, String) {
    let ca = ca.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["--silent", "--max-time", "10", "--proxy"])
            .arg(format!("http://{proxy}"))
            .arg("--cacert")
            .arg(&ca)
            .args(["--write-out", "\n%{http_code}"])
            .arg(url)
            .output()
            .expect("curl is installed by scripts/test (scripts/test-packages)")
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        out.status.code().unwrap_or(-1),
        code.trim().parse().unwrap_or(0),
        body.to_string(),
    )
}

async fn next_event(events: &mut mpsc::Receiver<DecisionEvent>) -> DecisionEvent {
    tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_level_entry_is_matched_inside_tls_and_the_rest_is_forwarded() {
    // No inspect_hosts: localhost is inspected because a list names one of
    // its pages, as the IWF list does.
    let mut h = harness(&[], &[], true).await;
    let port = h.origin.port();

    let (exit, status, body) = curl(
        h.proxy,
        &h.school_ca,
        format!("https://localhost:{port}/lesson?topic=volcanoes"),
    )
    .await;
    assert_eq!(
        (exit, status),
        (0, 200),
        "the device trusts the school's authority: {body}"
    );
    assert_eq!(body, "secure origin saw /lesson?topic=volcanoes\n");
    let event = next_event(&mut h.events).await;
    assert_eq!(
        event.target,
        format!("https://localhost:{port}/lesson?topic=volcanoes"),
        "the event carries the full URL, which a tunnel never shows"
    );
    assert_eq!(event.action, "allow");

    let (exit, status, body) = curl(
        h.proxy,
        &h.school_ca,
        format!("https://localhost:{port}/forbidden/page"),
    )
    .await;
    assert_eq!((exit, status), (0, 403), "{body}");
    assert!(
        body.contains("gambling"),
        "the block page names the category: {body}"
    );
    let event = next_event(&mut h.events).await;
    assert_eq!(event.action, "block");
    assert_eq!(
        event.target,
        format!("https://localhost:{port}/forbidden/page")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_inspect_wins_and_the_origin_certificate_reaches_the_device() {
    let mut h = harness(&["localhost"], &["localhost"], true).await;
    let port = h.origin.port();
    // Trusting only the origin's own authority works only if the proxy
    // passed the origin's certificate through untouched.
    let (exit, status, body) = curl(
        h.proxy,
        &h.origin_ca,
        format!("https://localhost:{port}/forbidden/page"),
    )
    .await;
    assert_eq!((exit, status), (0, 200), "{body}");
    let event = next_event(&mut h.events).await;
    assert_eq!(event.target, "localhost", "a tunnel is logged by host only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_the_proxy_cannot_verify_is_refused() {
    let h = harness(&["localhost"], &[], false).await;
    let port = h.origin.port();
    let (exit, status, body) =
        curl(h.proxy, &h.school_ca, format!("https://localhost:{port}/")).await;
    assert_eq!((exit, status), (0, 502), "{body}");
    assert!(body.contains("not trusted"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_without_the_school_certificate_cannot_be_read() {
    let h = harness(&["localhost"], &[], true).await;
    let port = h.origin.port();
    // Trusting only the origin's authority, curl sees the minted
    // certificate and refuses it (exit 60): nothing is read silently.
    let (exit, _, _) = curl(h.proxy, &h.origin_ca, format!("https://localhost:{port}/")).await;
    assert_eq!(exit, 60);
}

/// A warned HTTPS site: the tunnel is inspected so that the warning page
/// can be shown, and continuing opens the site.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warned_https_site_shows_its_warning_inside_the_tunnel() {
    let mut h = harness_with(WARNING_POLICY, &[], &[], true).await;
    let port = h.origin.port();
    let url = format!("https://localhost:{port}/forum/thread-12");

    let (exit, status, body) = curl(h.proxy, &h.school_ca, url.clone()).await;
    assert_eq!((exit, status), (0, 200), "{body}");
    assert!(body.contains("Continue to the site"), "{body}");
    assert_eq!(next_event(&mut h.events).await.action, "warn");
    let link = body
        .split("href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .replace("&amp;", "&");
    assert!(link.starts_with(&url), "{link}");

    let (exit, status, _) = curl(h.proxy, &h.school_ca, link).await;
    assert_eq!((exit, status), (0, 303));
    let (exit, status, body) = curl(h.proxy, &h.school_ca, url).await;
    assert_eq!((exit, status), (0, 200), "{body}");
    assert_eq!(body, "secure origin saw /forum/thread-12\n");
    let event = next_event(&mut h.events).await;
    assert_eq!(event.action, "allow");
    assert!(event
        .rule
        .unwrap_or_default()
        .contains("warning acknowledged"));
}

/// Without inspection a warned HTTPS site cannot show a page, so it stays
/// blocked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warned_https_site_that_may_not_be_inspected_stays_blocked() {
    let mut h = harness_with(WARNING_POLICY, &[], &["localhost"], true).await;
    let port = h.origin.port();
    let (exit, status, _) = curl(
        h.proxy,
        &h.school_ca,
        format!("https://localhost:{port}/forum"),
    )
    .await;
    assert_ne!((exit, status), (0, 200));
    assert_eq!(next_event(&mut h.events).await.action, "warn");
}
