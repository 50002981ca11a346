//! Unblock requests end to end: a blocked site through the real proxy on
//! loopback shows the block page with the request link; the teacher asks
//! in the console; an approver approves; the site loads through the proxy
//! for that group only; when the end time passes it is blocked again. And
//! the refusals: an illegal target, and a teacher changing filtering.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use sha2::{Digest, Sha256};
use sheepdog_config::ProxyConfig;
use sheepdog_console::{auth, password, router, ConsoleSettings, ConsoleState, Filtering};
use sheepdog_events::identity::parse_net;
use sheepdog_events::{Identity, IdentityMap, IdentityResolver};
use sheepdog_policy::{build_snapshot, CompiledPolicy, Engine, PolicyDocument};
use sheepdog_proxy::{Proxy, ProxyServer, ProxySettings};
use sheepdog_store::{
    AccountRole, Actor, NewSession, SessionStage, StaffRole, Store, StoreOptions,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};
use tower::ServiceExt;

const POLICY: &str = r#"
fallback_group = "guest"

[school]
name = "Wrenmoor Primary"
time_zone = "Europe/London"

[[lists]]
name = "iwf"
source = "iwf.txt"
format = "domains"
category = "iwf"
legal_requirement = true

[[lists]]
name = "casinos"
source = "casinos.txt"
format = "domains"
category = "gambling"

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

[[groups]]
name = "ks3"
default = "allow"
[groups.categories]
gambling = "block"

[[groups]]
name = "staff"
default = "allow"
[groups.categories]
gambling = "block"
"#;

/// The blocked site: `localhost` reaches the test's origin server.
const SITE: &str = "localhost";

struct World {
    console: ConsoleState,
    proxy: SocketAddr,
    origin: SocketAddr,
    school: i64,
    _server: ProxyServer,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("casinos.txt"), format!("{SITE}\n")).unwrap();
    std::fs::write(dir.path().join("iwf.txt"), "abuse-example.invalid\n").unwrap();
    let doc = PolicyDocument::from_toml(POLICY).unwrap();
    let (snapshot, _) = build_snapshot(&doc, dir.path(), None).unwrap();
    let engine = Arc::new(Engine::new(
        CompiledPolicy::compile(&doc, Arc::new(snapshot)).unwrap(),
    ));
    let url = format!("sqlite://{}", dir.path().join("e2e.sqlite").display());
    let store = Store::open(&url, &StoreOptions::default()).await.unwrap();
    let school = store
        .create_school(
            &Actor::command_line("test"),
            "Wrenmoor Primary",
            None,
            "Europe/London",
        )
        .await
        .unwrap()
        .id;
    // 127.0.0.2: a KS2 laptop; 127.0.0.3: a KS3 laptop; 127.0.0.4: a
    // member of staff's.
    let mut map = IdentityMap::new("guest");
    for (address, group) in [
        ("127.0.0.2", "ks2"),
        ("127.0.0.3", "ks3"),
        ("127.0.0.4", "staff"),
    ] {
        map.insert(
            parse_net(address).unwrap(),
            Identity {
                device_id: None,
                device_name: None,
                person_id: None,
                group: Arc::from(group),
                school_id: None,
            },
        );
    }
    let config = ProxyConfig {
        enabled: true,
        console_url: "https://console.wrenmoor.invalid".to_string(),
        staff_groups: vec!["staff".to_string()],
        ..ProxyConfig::default()
    };
    let proxy = Arc::new(Proxy::new(
        engine.clone(),
        Arc::new(IdentityResolver::new(map)),
        None,
        Some(store.clone()),
        ProxySettings::from_config(&config),
    ));
    let server = ProxyServer::start(proxy, &["127.0.0.1:0".parse().unwrap()])
        .await
        .unwrap();
    let settings = ConsoleSettings {
        two_factor_roles: Vec::new(),
        ..ConsoleSettings::default()
    };
    let console = ConsoleState::new(store, settings).with_filtering(Filtering::new(
        engine,
        doc,
        chrono::Duration::hours(8),
    ));
    World {
        console,
        proxy: server.addrs()[0],
        origin: origin().await,
        school,
        _server: server,
        _dir: dir,
    }
}

/// An origin that answers every request with a page.
async fn origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_request| async move {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(bytes::Bytes::from_static(
                        b"the times-tables game\n",
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Fetches the site through the proxy from `client` (a loopback address
/// the identity map places in a group): status line and body.
async fn fetch(w: &World, client: &str) -> (u16, String) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{client}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(w.proxy).await.unwrap();
    let port = w.origin.port();
    stream
        .write_all(
            format!(
                "GET http://{SITE}:{port}/tables HTTP/1.1\r\nHost: {SITE}:{port}\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

struct Person {
    cookie: String,
    csrf: String,
    id: i64,
}

async fn person(w: &World, username: &str, role: StaffRole) -> Person {
    let store = w.console.store();
    let account = store
        .create_account(
            &Actor::command_line("test"),
            username,
            "Orlan Tesk",
            &password::hash("violet tractor sandwich pebble").unwrap(),
            &[AccountRole {
                school_id: Some(w.school),
                role,
            }],
        )
        .await
        .unwrap();
    let token = format!("{username}-session-token-0123456789abcdef");
    let csrf = format!("{username}-form-token-0123456789abcdef");
    store
        .start_session(
            &Actor::system("test"),
            &NewSession {
                token_hash: &hex::encode(Sha256::digest(token.as_bytes())),
                account_id: account.id,
                stage: SessionStage::SignedIn,
                csrf_token: &csrf,
                address: "127.0.0.1",
                expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
            },
        )
        .await
        .unwrap();
    Person {
        cookie: format!("{}={token}", auth::SESSION_COOKIE),
        csrf,
        id: account.id,
    }
}

async fn send(w: &World, request: Request<Body>) -> (StatusCode, Option<String>, String) {
    let response = router(w.console.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let location = response
        .headers()
        .get(header::LOCATION)
        .map(|v| v.to_str().unwrap().to_string());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        location,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

async fn get(w: &World, who: &Person, path: &str) -> (StatusCode, String) {
    let (status, _, body) = send(
        w,
        Request::get(path)
            .header(header::COOKIE, &who.cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    (status, body)
}

async fn post(
    w: &World,
    who: &Person,
    path: &str,
    form: &[(&str, &str)],
) -> (StatusCode, Option<String>, String) {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .extend_pairs([("csrf", who.csrf.as_str())])
        .finish();
    send(
        w,
        Request::post(path)
            .header(header::COOKIE, &who.cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap(),
    )
    .await
}

fn rfc3339(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_page_request_is_approved_applies_to_its_group_and_lapses() {
    let w = world().await;
    let teacher = person(&w, "teacher@wrenmoor.invalid", StaffRole::Teacher).await;
    let tech = person(&w, "tech@wrenmoor.invalid", StaffRole::Technician).await;

    // The teacher meets the block page, which links to the console's form.
    let (status, page) = fetch(&w, "127.0.0.4").await;
    assert_eq!(status, 403, "{page}");
    let link = format!("https://console.wrenmoor.invalid/requests/new?site={SITE}");
    assert!(page.contains(&link), "{page}");
    let (status, form) = get(&w, &teacher, &format!("/requests/new?site={SITE}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(form.contains(&format!("value=\"{SITE}\"")), "{form}");

    // A short window: from a minute ago to a few seconds ahead.
    let now = chrono::Utc::now();
    let end = now + chrono::Duration::seconds(12);
    let (status, location, body) = post(
        &w,
        &teacher,
        "/requests",
        &[
            ("school", &w.school.to_string()),
            ("site", SITE),
            ("group", "ks2"),
            ("class", "4K"),
            ("reason", "Times-tables game for the starter"),
            ("purpose", "Year 4 maths, period 1"),
            ("start", &rfc3339(now - chrono::Duration::minutes(1))),
            ("end", &rfc3339(end)),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert!(location.unwrap().contains("sent=REQ-"));
    // Still blocked until someone approves.
    assert_eq!(fetch(&w, "127.0.0.2").await.0, 403);

    // The technician sees it waiting and approves it.
    let (status, queue) = get(&w, &tech, "/requests").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        queue.contains("Waiting for a decision") && queue.contains(SITE),
        "{queue}"
    );
    let request = w
        .console
        .store()
        .unblock_requests(
            &w.console.store().account(tech.id).await.unwrap().unwrap(),
            w.school,
            &Default::default(),
        )
        .await
        .unwrap()
        .remove(0);
    let (status, _, body) = post(
        &w,
        &tech,
        &format!("/requests/{}/decision", request.id),
        &[("decision", "approve"), ("comment", "Fine for the lesson")],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");

    // The approval is applied at once: KS2 gets the site, KS3 does not.
    let (status, page) = fetch(&w, "127.0.0.2").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("the times-tables game"));
    assert_eq!(fetch(&w, "127.0.0.3").await.0, 403);
    // The teacher sees the decision.
    let (_, mine) = get(&w, &teacher, "/requests").await;
    assert!(
        mine.contains("approved") && mine.contains("Fine for the lesson"),
        "{mine}"
    );

    // When the end passes, the policy drops it with nobody acting.
    let wait = (end - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait + std::time::Duration::from_millis(500)).await;
    assert_eq!(fetch(&w, "127.0.0.2").await.0, 403);

    // Every step is on the change log.
    let (status, log) = get(&w, &tech, "/changes").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        log.contains("approve") && log.contains("Fine for the lesson"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_illegal_target_is_refused_with_the_reason_and_the_form_kept() {
    let w = world().await;
    let teacher = person(&w, "teacher@wrenmoor.invalid", StaffRole::Teacher).await;
    let now = chrono::Utc::now();
    let (status, _, page) = post(
        &w,
        &teacher,
        "/requests",
        &[
            ("school", &w.school.to_string()),
            ("site", "abuse-example.invalid"),
            ("group", "ks2"),
            ("reason", "A reason typed by the teacher"),
            ("purpose", "PSHE"),
            ("start", &rfc3339(now)),
            ("end", &rfc3339(now + chrono::Duration::hours(1))),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("Refused by the system"), "{page}");
    assert!(page.contains("no request can change that"), "{page}");
    assert!(page.contains("A reason typed by the teacher"));
    let approved = w
        .console
        .store()
        .approved_exceptions(chrono::Utc::now())
        .await
        .unwrap();
    assert!(approved.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_teacher_cannot_change_filtering_and_the_attempt_is_audited() {
    let w = world().await;
    let teacher = person(&w, "teacher@wrenmoor.invalid", StaffRole::Teacher).await;
    let other = person(&w, "other@wrenmoor.invalid", StaffRole::Teacher).await;
    let dsl = person(&w, "dsl@wrenmoor.invalid", StaffRole::Dsl).await;
    let now = chrono::Utc::now();
    let (status, _, _) = post(
        &w,
        &other,
        "/requests",
        &[
            ("school", &w.school.to_string()),
            ("site", SITE),
            ("group", "ks2"),
            ("reason", "Starter game"),
            ("purpose", "Maths"),
            ("start", &rfc3339(now)),
            ("end", &rfc3339(now + chrono::Duration::hours(1))),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let id = w.console.store().pending_request_count().await.unwrap();
    assert_eq!(id, 1);
    // The teacher tries to approve a colleague's request, and to allow a
    // site from an over-blocking report.
    let (status, _, _) = post(
        &w,
        &teacher,
        "/requests/1/decision",
        &[("decision", "approve"), ("comment", "")],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = post(
        &w,
        &teacher,
        "/reports/1",
        &[
            ("school", &w.school.to_string()),
            ("decision", "allow"),
            ("group", "ks2"),
            ("reason", "I want it"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(w.console.store().pending_request_count().await.unwrap(), 1);
    assert_eq!(fetch(&w, "127.0.0.2").await.0, 403);
    // Both attempts are on the change log, by the teacher.
    let (status, log) = get(&w, &dsl, "/changes?q=teacher%40wrenmoor").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(log.matches("<td>refused filtering").count(), 2, "{log}");
    assert!(log.contains("unblock_request:1") && log.contains("block_report:1"));
    // And the teacher cannot read the change log.
    assert_eq!(get(&w, &teacher, "/changes").await.0, StatusCode::FORBIDDEN);
    let _ = teacher.id;
}
