//! The proxy end to end on loopback: real sockets, a real origin (a small
//! hyper server and a TCP echo server in the test), and a real client
//! (curl, installed from Debian's packages if absent), plus raw sockets
//! where the test needs exact bytes or a slow client.

// Helpers outside #[test] functions fail loudly too: this is a test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use sheepdog_config::ProxyConfig;
use sheepdog_events::identity::parse_net;
use sheepdog_events::{DecisionEvent, EventSink, Identity, IdentityMap, IdentityResolver};
use sheepdog_policy::{build_snapshot, CompiledPolicy, Engine, PolicyDocument};
use sheepdog_proxy::{page, Proxy, ProxyServer, ProxySettings};
use sheepdog_store::{PageSeen, Store, StoreOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const POLICY: &str = r#"
fallback_group = "guest"

[school]
name = "Loopback Primary"
time_zone = "Europe/London"

[[lists]]
name = "casinos"
source = "casinos.txt"
format = "domains"
category = "gambling"

[[lists]]
name = "video"
source = "video.txt"
format = "domains"
category = "streaming"

[[groups]]
name = "guest"
default = "allow"
[groups.categories]
gambling = "block"

[[groups]]
name = "ks2"
default = "allow"
[groups.categories]
gambling = "block"
streaming = "block"

[[groups]]
name = "staff"
default = "allow"
[groups.categories]
gambling = "block"

[[groups]]
name = "sixth_form"
default = "warn"
[groups.categories]
gambling = "block"
"#;

/// A program from PATH, installed from Debian's packages if absent.
fn tool(program: &str, package: &str) -> PathBuf {
    let find = || {
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .chain([PathBuf::from("/usr/bin")])
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

struct Harness {
    server: Option<ProxyServer>,
    addr: SocketAddr,
    events: mpsc::Receiver<DecisionEvent>,
    /// The pages the proxy read, as the live monitor gets them.
    pages: mpsc::Receiver<PageSeen>,
    store: Store,
    origin: SocketAddr,
    echo: SocketAddr,
    _dir: tempfile::TempDir,
}

/// The proxy on 127.0.0.1 with the test policy; 127.0.0.1 is a KS2 laptop
/// 127.0.0.3 a member of staff's and 127.0.0.4 a sixth former's (whose
/// group is warned, not blocked, about anything not listed).
async fn harness(tweak: impl FnOnce(&mut ProxyConfig)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("casinos.txt"), "casino.test\n").unwrap();
    std::fs::write(dir.path().join("video.txt"), "youtube.com\n").unwrap();
    let doc = PolicyDocument::from_toml(POLICY).unwrap();
    let (snapshot, _) = build_snapshot(&doc, dir.path(), None).unwrap();
    let engine = Arc::new(Engine::new(
        CompiledPolicy::compile(&doc, Arc::new(snapshot)).unwrap(),
    ));
    let mut map = IdentityMap::new("guest");
    map.insert(
        parse_net("127.0.0.1").unwrap(),
        Identity {
            device_id: Some(7),
            device_name: Some(Arc::from("KS2-LAPTOP-07")),
            person_id: Some(42),
            group: Arc::from("ks2"),
            school_id: None,
        },
    );
    map.insert(
        parse_net("127.0.0.3").unwrap(),
        Identity {
            device_id: Some(8),
            device_name: Some(Arc::from("STAFF-LAPTOP-01")),
            person_id: Some(43),
            group: Arc::from("staff"),
            school_id: None,
        },
    );
    map.insert(
        parse_net("127.0.0.4").unwrap(),
        Identity {
            device_id: Some(9),
            device_name: Some(Arc::from("SIXTH-LAPTOP-02")),
            person_id: Some(44),
            group: Arc::from("sixth_form"),
            school_id: None,
        },
    );
    let url = format!("sqlite://{}", dir.path().join("test.sqlite").display());
    let store = Store::open(&url, &StoreOptions::default()).await.unwrap();
    let mut config = ProxyConfig {
        enabled: true,
        console_url: "https://console.test".to_string(),
        ..ProxyConfig::default()
    };
    tweak(&mut config);
    let (sink, events) = EventSink::channel(1024);
    let (page_sender, pages) = mpsc::channel(16);
    let proxy = Arc::new(
        Proxy::new(
            engine,
            Arc::new(IdentityResolver::new(map)),
            Some(sink),
            Some(store.clone()),
            ProxySettings::from_config(&config),
        )
        .with_pages(page_sender),
    );
    let server = ProxyServer::start(proxy, &["127.0.0.1:0".parse().unwrap()])
        .await
        .unwrap();
    let addr = server.addrs()[0];
    Harness {
        server: Some(server),
        addr,
        events,
        pages,
        store,
        origin: origin().await,
        echo: echo().await,
        _dir: dir,
    }
}

/// An HTTP/1.1 origin on a free loopback port, keep-alive, answering
/// every request with `answer`.
async fn http_origin<F>(answer: F) -> SocketAddr
where
    F: Fn(Request<hyper::body::Incoming>) -> Response<Full<Bytes>> + Clone + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let answer = answer.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let response = answer(request);
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// An HTTP origin answering `origin saw PATH` (and Host).
async fn origin() -> SocketAddr {
    http_origin(|request| {
        let host = request
            .headers()
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_string();
        let proxy_auth = request.headers().contains_key("proxy-authorization");
        let body = format!(
            "origin saw {} host={host} proxy-authorization={proxy_auth}\n",
            request.uri()
        );
        Response::new(Full::new(Bytes::from(body)))
    })
    .await
}

/// An HTTP origin serving one HTML page that names the encodings it was
/// asked for, gzip-encoded when gzip is among them.
async fn html_origin() -> SocketAddr {
    use std::io::Write;
    http_origin(|request| {
        let asked = request
            .headers()
            .get("accept-encoding")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("none")
            .to_string();
        let html = format!(
            "<html><head><title>Anyone else &amp; me</title>\
             <script>var ignored = 1;</script></head><body>\
             <p>i want to kill myself</p><p>asked for: {asked}</p></body></html>"
        );
        let mut response = Response::builder().header("content-type", "text/html");
        let body = if asked.contains("gzip") {
            response = response.header("content-encoding", "gzip");
            let mut gzip =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gzip.write_all(html.as_bytes()).unwrap();
            gzip.finish().unwrap()
        } else {
            html.into_bytes()
        };
        response.body(Full::new(Bytes::from(body))).unwrap()
    })
    .await
}

/// A TCP server that sends back whatever it receives.
async fn echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let (mut reader, mut writer) = stream.split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
            });
        }
    });
    addr
}

async fn curl(args: Vec<String>) -> Output {
    let curl = tool("curl", "curl");
    tokio::task::spawn_blocking(move || {
        Command::new(curl)
            .args(["--silent", "--show-error", "--max-time", "10"])
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// Status code and body of `curl -x proxy ARGS URL`.
async fn through(proxy: SocketAddr, url: &str, extra: &[&str]) -> (u16, String) {
    let mut args = vec![
        "--proxy".to_string(),
        format!("http://{proxy}"),
        "--write-out".to_string(),
        "\n%{http_code}".to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(url.to_string());
    let out = curl(args).await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

async fn next_event(events: &mut mpsc::Receiver<DecisionEvent>) -> DecisionEvent {
    tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap()
        .unwrap()
}

/// Sends raw bytes and reads until the proxy closes (or 5 s pass).
async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Opens a CONNECT tunnel and returns the stream after the proxy's answer
/// head, with that head.
async fn connect(addr: SocketAddr, target: &str) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte)).await {
            Ok(Ok(1)) => head.push(byte[0]),
            _ => break,
        }
    }
    (stream, String::from_utf8_lossy(&head).into_owned())
}

/// A minimal TLS ClientHello naming `host`.
fn client_hello(host: &str) -> Vec<u8> {
    let name = host.as_bytes();
    let mut list = vec![0u8];
    list.extend_from_slice(&(name.len() as u16).to_be_bytes());
    list.extend_from_slice(name);
    let mut sni = (list.len() as u16).to_be_bytes().to_vec();
    sni.extend_from_slice(&list);
    let mut extensions = vec![0, 0];
    extensions.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    extensions.extend_from_slice(&sni);
    extensions.extend_from_slice(&[0, 13, 0, 6, 0, 4, 0x08, 0x04, 0x04, 0x03]);
    extensions.extend_from_slice(&[0, 10, 0, 4, 0, 2, 0, 29]);
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7u8; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 4, 0x13, 0x01, 0xc0, 0x2f]);
    body.extend_from_slice(&[1, 0]);
    body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    body.extend_from_slice(&extensions);
    let mut handshake = vec![1];
    handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 3, 1];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_requests_reach_the_origin_with_keep_alive_and_identity() {
    let mut h = harness(|_| {}).await;
    let url = format!("http://{}/lessons/fractions?page=2", h.origin);
    let (status, body) = through(h.addr, &url, &["-H", "Proxy-Authorization: Basic eDp5"]).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("origin saw /lessons/fractions?page=2"),
        "{body}"
    );
    assert!(body.contains(&format!("host={}", h.origin)), "{body}");
    assert!(body.contains("proxy-authorization=false"), "{body}");

    let event = next_event(&mut h.events).await;
    assert_eq!(event.source, sheepdog_events::EventSource::Proxy);
    assert_eq!(event.target, url);
    assert_eq!(event.action, "allow");
    assert_eq!(event.client, "127.0.0.1");
    assert_eq!(event.device_id, Some(7));
    assert_eq!(event.device_name.as_deref(), Some("KS2-LAPTOP-07"));
    assert_eq!(event.person_id, Some(42));
    assert_eq!(event.group.as_deref(), Some("ks2"));
    assert!(event.upstream_ms.is_some());
    assert_eq!(event.search_term, None);

    // Two URLs in one curl run share one client connection.
    let out = curl(vec![
        "--verbose".into(),
        "--proxy".into(),
        format!("http://{}", h.addr),
        format!("http://{}/a", h.origin),
        format!("http://{}/b", h.origin),
    ])
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("origin saw /a") && stdout.contains("origin saw /b"),
        "{stdout}"
    );
    assert!(stderr.contains("Re-using existing connection"), "{stderr}");
    h.server.take().unwrap().stop().await;
}

/// An origin that counts the connections it accepted and answers with the
/// connection's number, the path and the request body's length; with
/// `closing` it ends every connection after one response.
async fn counting_origin(closing: bool) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use http_body_util::BodyExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let number = counter.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::spawn(async move {
                let service =
                    service_fn(move |request: Request<hyper::body::Incoming>| async move {
                        let path = request.uri().to_string();
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        let text =
                            format!("connection {number} saw {path} with {} bytes\n", body.len());
                        let mut response = Response::new(Full::new(Bytes::from(text)));
                        if closing {
                            response
                                .headers_mut()
                                .insert("connection", "close".parse().unwrap());
                        }
                        Ok::<_, Infallible>(response)
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, accepted)
}

/// Reads one HTTP/1.1 response with a Content-Length body from `stream`.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut data = Vec::new();
    let mut byte = [0u8; 1];
    while !data.ends_with(b"\r\n\r\n") {
        assert_eq!(
            stream.read(&mut byte).await.unwrap(),
            1,
            "the response ended early"
        );
        data.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&data).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap();
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.unwrap();
    data.extend_from_slice(&body);
    String::from_utf8_lossy(&data).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_pages_reach_the_browser_whole_and_monitoring_read() {
    let mut h = harness(|_| {}).await;
    let origin = html_origin().await;
    let url = format!("http://{origin}/thread/42");
    // curl offers gzip, deflate, brotli and zstd and decodes what comes.
    let (status, body) = through(h.addr, &url, &["--compressed"]).await;
    assert_eq!(status, 200);
    assert!(body.contains("<p>i want to kill myself</p>"), "{body}");
    assert!(
        body.contains("asked for: gzip<"),
        "the origin was asked for gzip alone: {body}"
    );
    let page = tokio::time::timeout(Duration::from_secs(5), h.pages.recv())
        .await
        .expect("a page within 5 s")
        .expect("the channel is open");
    assert_eq!(page.title.as_deref(), Some("Anyone else & me"));
    assert!(page.text.contains("i want to kill myself"), "{}", page.text);
    assert!(!page.text.contains("ignored"), "{}", page.text);
    assert_eq!(page.event.target, url);
    assert_eq!(page.event.person_id, Some(42));
    assert_eq!(page.event.group.as_deref(), Some("ks2"));

    // Not HTML: passed on, not read.
    let (status, _) = through(h.addr, &format!("http://{}/plain", h.origin), &[]).await;
    assert_eq!(status, 200);
    assert!(h.pages.try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_connection_closed_while_idle_is_opened_again() {
    let mut h = harness(|_| {}).await;
    // An origin that answers one request per connection without saying it
    // will close, and closes when told to, reporting each close.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = listener.local_addr().unwrap();
    let (closed_tx, mut closed) = mpsc::channel::<usize>(4);
    let (close_tx, mut close) = mpsc::channel::<()>(4);
    tokio::spawn(async move {
        for number in 1.. {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                    break;
                }
                head.push(byte[0]);
            }
            let body = format!("answer on connection {number}");
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(response.as_bytes()).await.unwrap();
            if close.recv().await.is_none() {
                return;
            }
            drop(stream);
            closed_tx.send(number).await.unwrap();
        }
    });
    let mut client = TcpStream::connect(h.addr).await.unwrap();
    for number in 1..=2 {
        let request = format!("GET http://{origin}/page HTTP/1.1\r\nHost: {origin}\r\n\r\n");
        client.write_all(request.as_bytes()).await.unwrap();
        let response = read_response(&mut client).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(
            response.ends_with(&format!("answer on connection {number}")),
            "{response}"
        );
        // The proxy has the whole answer and its origin connection is idle
        // when the origin closes it; the next request finds it closed.
        close_tx.send(()).await.unwrap();
        assert_eq!(closed.recv().await, Some(number));
    }
    for _ in 0..2 {
        assert_eq!(next_event(&mut h.events).await.action, "allow");
    }
    h.server.take().unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_connection_keeps_its_origin_connection_between_requests() {
    use std::sync::atomic::Ordering;
    let mut h = harness(|_| {}).await;
    let (kept, kept_count) = counting_origin(false).await;
    let (closing, closing_count) = counting_origin(true).await;
    // One curl run: one client connection, requests in turn, to the
    // keeping origin, the closing one, and back; a body goes up too.
    let out = curl(vec![
        "--verbose".into(),
        "--proxy".into(),
        format!("http://{}", h.addr),
        format!("http://{kept}/one"),
        format!("http://{kept}/two"),
        format!("http://{closing}/three"),
        format!("http://{closing}/four"),
        format!("http://{kept}/five"),
        "--next".into(),
        "--proxy".into(),
        format!("http://{}", h.addr),
        "--data-binary".into(),
        "x".repeat(100_000),
        format!("http://{kept}/six"),
    ])
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "connection 1 saw /one with 0 bytes",
        "connection 1 saw /two with 0 bytes",
        "connection 1 saw /three with 0 bytes",
        "connection 2 saw /four with 0 bytes",
        "connection 2 saw /five with 0 bytes",
        "connection 2 saw /six with 100000 bytes",
    ] {
        assert!(stdout.contains(expected), "{expected} in {stdout}");
    }
    assert_eq!(
        stderr.matches("Re-using existing connection").count(),
        5,
        "{stderr}"
    );
    // The keeping origin saw a second connection only because the client
    // went elsewhere in between; the closing one, one per request.
    assert_eq!(kept_count.load(Ordering::SeqCst), 2);
    assert_eq!(closing_count.load(Ordering::SeqCst), 2);
    for _ in 0..6 {
        assert_eq!(next_event(&mut h.events).await.action, "allow");
    }
    h.server.take().unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_request_gets_the_block_page_and_a_report_is_stored() {
    let mut h = harness(|_| {}).await;
    let (status, page_html) = through(h.addr, "http://www.casino.test/poker", &[]).await;
    assert_eq!(status, 403);
    let event = next_event(&mut h.events).await;
    assert_eq!(event.action, "block");
    assert_eq!(event.category.as_deref(), Some("gambling"));
    assert_eq!(event.person_id, Some(42));
    let reference = page::reference(&event);
    assert!(page_html.contains(&reference), "{page_html}");
    assert!(
        page_html.contains("http://www.casino.test/poker"),
        "{page_html}"
    );
    assert!(page_html.contains("gambling"));
    // A KS2 pupil: young wording, no "request access".
    assert!(page_html.contains("tell your teacher"), "{page_html}");
    assert!(!page_html.contains("Request access"));
    let action = format!("http://{}/sheepdog/report", h.addr);
    assert!(page_html.contains(&action), "{page_html}");

    // The form posts back to the proxy, which stores the report.
    let form = format!(
        "reference={reference}&site=http%3A%2F%2Fwww.casino.test%2Fposter&category=gambling\
         &group=ks2&comment=It+is+a+maths+game"
    );
    let (status, thanks) = through(h.addr, &action, &["--data", &form]).await;
    assert_eq!(status, 200, "{thanks}");
    assert!(thanks.contains(&reference), "{thanks}");
    let reports = h.store.block_reports(10).await.unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].reference, reference);
    assert_eq!(reports[0].comment, "It is a maths game");
    assert_eq!(reports[0].person_id, Some(42));
    assert_eq!(reports[0].client, "127.0.0.1");

    let (status, _) = through(h.addr, &action, &["--data", "comment=no+reference"]).await;
    assert_eq!(status, 400);
    h.server.take().unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_get_request_access_and_search_terms_are_captured() {
    let mut h = harness(|_| {}).await;
    let (status, page_html) =
        through(h.addr, "http://casino.test/", &["--interface", "127.0.0.3"]).await;
    assert_eq!(status, 403);
    assert!(
        page_html.contains("Request access to this site"),
        "{page_html}"
    );
    assert!(
        page_html.contains("https://console.test/requests/new?site=casino.test"),
        "{page_html}"
    );
    let event = next_event(&mut h.events).await;
    assert_eq!(event.group.as_deref(), Some("staff"));

    let (status, _) = through(
        h.addr,
        "http://www.youtube.com/results?search_query=minecraft+build",
        &[],
    )
    .await;
    assert_eq!(status, 403);
    let event = next_event(&mut h.events).await;
    assert_eq!(event.category.as_deref(), Some("streaming"));
    assert_eq!(event.search_term.as_deref(), Some("minecraft build"));
    h.server.take().unwrap().stop().await;
}

/// A "warn" decision shows a page whose link goes on: the link works only
/// for the device it was given to, then the site opens for that device
/// and the event says the warning was acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warnings_open_the_site_once_the_user_continues() {
    let mut h = harness(|_| {}).await;
    let sixth = ["--interface", "127.0.0.4"];
    let url = format!("http://{}/essay-sources", h.origin);

    let (status, body) = through(h.addr, &url, &sixth).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Continue to the site"), "{body}");
    assert!(!body.contains("origin saw"), "{body}");
    let event = next_event(&mut h.events).await;
    assert_eq!(event.action, "warn");
    let link = body
        .split("href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .replace("&amp;", "&");
    assert!(
        link.starts_with(&url) && link.contains("sheepdog-continue="),
        "{link}"
    );

    // The same link from another device, or a made-up token, opens nothing.
    let (status, _) = through(h.addr, &link, &["--interface", "127.0.0.2"]).await;
    assert_eq!(status, 303);
    let forged = format!("{url}?sheepdog-continue=aaaaaaaaaaaaaaaaaaaaaaaa");
    let (status, _) = through(h.addr, &forged, &sixth).await;
    assert_eq!(status, 303);
    let (status, body) = through(h.addr, &url, &sixth).await;
    assert!(
        status == 200 && body.contains("Continue to the site"),
        "{body}"
    );
    let event = next_event(&mut h.events).await;
    assert_eq!(event.action, "warn");

    // Following it from the right device: sent on to the page, which loads.
    let mut args = sixth.to_vec();
    args.extend(["--location"]);
    let (status, body) = through(h.addr, &link, &args).await;
    assert_eq!(status, 200);
    assert!(body.contains("origin saw /essay-sources"), "{body}");
    let event = next_event(&mut h.events).await;
    assert_eq!(event.action, "allow");
    assert!(
        event
            .rule
            .as_deref()
            .unwrap_or("")
            .contains("warning acknowledged"),
        "{:?}",
        event.rule
    );
    // Still a block for a blocked category, acknowledged or not.
    let (status, _) = through(h.addr, "http://casino.test/", &sixth).await;
    assert_eq!(status, 403);
    h.server.take().unwrap().stop().await;
}

/// Megabytes both ways through an uninspected tunnel (carried with
/// splice(2)), with bytes sent straight after the CONNECT head in the same
/// write, and the client's end of sending passed on to the origin and the
/// origin's back to the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_carry_megabytes_and_pass_the_end_on() {
    let mut h = harness(|_| {}).await;
    let payload: Vec<u8> = (0..4 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let target = h.echo.to_string();
    let mut stream = TcpStream::connect(h.addr).await.unwrap();
    let mut first = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").into_bytes();
    first.extend_from_slice(&payload[..1000]);
    stream.write_all(&first).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let rest = payload[1000..].to_vec();
    let sender = tokio::spawn(async move {
        writer.write_all(&rest).await.unwrap();
        writer.shutdown().await.unwrap();
        writer
    });
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), reader.read_to_end(&mut received))
        .await
        .expect("the tunnel passed the end on")
        .unwrap();
    let _writer = sender.await.unwrap();
    let head_end = received
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an answer head")
        + 4;
    assert!(received.starts_with(b"HTTP/1.1 200"));
    assert_eq!(received.len() - head_end, payload.len());
    assert!(
        received[head_end..] == payload[..],
        "bytes changed in the tunnel"
    );
    let event = next_event(&mut h.events).await;
    assert_eq!(event.action, "allow");
    h.server.take().unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_tunnels_carry_bytes_and_blocks_end_them() {
    let mut h = harness(|_| {}).await;

    // Allowed: the tunnel carries bytes both ways.
    let (mut stream, head) = connect(h.addr, &h.echo.to_string()).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    stream.write_all(b"ping over the tunnel\n").await.unwrap();
    let mut back = [0u8; 21];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&back, b"ping over the tunnel\n");
    let event = next_event(&mut h.events).await;
    assert_eq!(
        (event.target.as_str(), event.action.as_str()),
        ("127.0.0.1", "allow")
    );
    drop(stream);

    // Allowed, with a TLS ClientHello naming an allowed host: the hello
    // reaches the origin unchanged.
    let (mut stream, head) = connect(h.addr, &h.echo.to_string()).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let hello = client_hello("lessons.example.test");
    stream.write_all(&hello).await.unwrap();
    let mut back = vec![0u8; hello.len()];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back, hello);
    let event = next_event(&mut h.events).await;
    assert_eq!(event.target, "lessons.example.test");
    drop(stream);

    // Blocked on the CONNECT host: 403 with a short explanation.
    let response = raw(
        h.addr,
        b"CONNECT www.casino.test:443 HTTP/1.1\r\nHost: www.casino.test:443\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
    assert!(
        response.contains("sheepdog blocked www.casino.test"),
        "{response}"
    );
    let event = next_event(&mut h.events).await;
    assert_eq!(event.action, "block");
    assert!(response.contains(&page::reference(&event)), "{response}");

    // Blocked on the TLS server name behind an allowed CONNECT host: the
    // tunnel ends and not a byte reaches the origin.
    let (mut stream, head) = connect(h.addr, &h.echo.to_string()).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    stream
        .write_all(&client_hello("casino.test"))
        .await
        .unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
        .await
        .expect("the proxy must end the tunnel");
    assert!(
        read.is_err() || rest.is_empty(),
        "the origin echoed {rest:?}"
    );
    let event = next_event(&mut h.events).await;
    assert_eq!(event.target, "casino.test");
    assert_eq!(event.action, "block");
    assert!(event.rule.unwrap().contains("TLS server name"));

    // Malformed CONNECT targets are refused.
    for target in [
        "user@www.example.test:443",
        "www.example.test",
        "bad host:443",
    ] {
        let response = raw(
            h.addr,
            format!("CONNECT {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        )
        .await;
        assert!(response.starts_with("HTTP/1.1 400"), "{target}: {response}");
    }
    h.server.take().unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_outside_the_networks_are_refused() {
    let h = harness(|c| c.client_networks = vec!["127.0.0.1/32".to_string()]).await;
    let url = format!("http://{}/", h.origin);
    let (status, body) = through(h.addr, &url, &["--interface", "127.0.0.2"]).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("does not serve your network"), "{body}");
    let (status, _) = through(h.addr, &url, &["--interface", "127.0.0.1"]).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_give_4xx_and_close() {
    let h = harness(|c| {
        c.max_request_line = 1024;
        c.max_header_bytes = 4096;
        c.max_headers = 20;
        c.header_timeout_ms = 300;
    })
    .await;
    let url = format!("http://{}/", h.origin);

    let big = format!("X-Big: {}", "a".repeat(8000));
    let (status, _) = through(h.addr, &url, &["-H", &big]).await;
    assert_eq!(status, 431);

    let many: Vec<String> = (0..40)
        .flat_map(|i| ["-H".to_string(), format!("X-H{i}: v")])
        .collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let (status, _) = through(h.addr, &url, &many).await;
    assert_eq!(status, 431);

    let long = format!("http://{}/{}", h.origin, "p".repeat(2000));
    let (status, _) = through(h.addr, &long, &[]).await;
    assert_eq!(status, 414);

    // Each of these ends the connection: a second request on it is not read.
    let response = raw(
        h.addr,
        format!(
            "GET http://{}/{} HTTP/1.1\r\nHost: x\r\n\r\nGET {url} HTTP/1.1\r\nHost: x\r\n\r\n",
            h.origin,
            "p".repeat(2000)
        )
        .as_bytes(),
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 414"), "{response}");
    assert_eq!(response.matches("HTTP/1.1").count(), 1, "{response}");

    // A slow client: half a request head, then nothing.
    let mut stream = TcpStream::connect(h.addr).await.unwrap();
    stream
        .write_all(format!("GET {url} HTTP/1.1\r\nHost: x\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");

    // Garbage gets 400.
    let response = raw(h.addr, b"\x16\x03\x01 nonsense\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");

    // https:// in absolute form is not forwarded in the clear.
    let response = raw(
        h.addr,
        b"GET https://www.example.test/ HTTP/1.1\r\nHost: www.example.test\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pac_and_wpad_name_the_proxy() {
    let h = harness(|_| {}).await;
    for path in ["proxy.pac", "wpad.dat"] {
        let out = curl(vec![
            "--write-out".into(),
            "\n%{http_code} %{content_type}".into(),
            format!("http://{}/{path}", h.addr),
        ])
        .await;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("return \"PROXY {}\";", h.addr)),
            "{text}"
        );
        assert!(
            text.ends_with("200 application/x-ns-proxy-autoconfig"),
            "{text}"
        );
    }
    let h = harness(|c| c.block_page_url = "http://proxy.school.test:3128".to_string()).await;
    let out = curl(vec![format!("http://{}/proxy.pac", h.addr)]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("return \"PROXY proxy.school.test:3128\";"),
        "{text}"
    );
}
