//! The guest network's captive portal end to end on loopback (M4): a
//! client on the guest network (127.0.9.0/24 here) is captive — whatever
//! it asks for, an operating system's captive-portal probe, a site by its
//! absolute URL, or a page on the address the DNS server sent it to, it
//! gets the portal with the visitor agreement and the monitoring notice;
//! it accepts; the acceptance is stored and audited, and the address is
//! filtered as a guest at once, while its neighbour stays captive. With
//! proxy sign-in on, visitors (who have no account) still meet the portal,
//! never a password prompt, while the school's own addresses are asked.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;

use sheepdog_config::ProxyConfig;
use sheepdog_events::identity::parse_net;
use sheepdog_events::{GuestNetworks, IdentityMap, IdentityResolver, CAPTIVE_GROUP};
use sheepdog_policy::{build_snapshot, CompiledPolicy, Engine, PolicyDocument};
use sheepdog_proxy::{
    Authenticator, GuestPortal, Proxy, ProxyServer, ProxySettings, ProxyUser, Verification,
};
use sheepdog_store::{Actor, Store, StoreOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};

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

[[groups]]
name = "guest"
default = "allow"
[groups.categories]
gambling = "block"
"#;

/// An origin that answers every request with `origin says hello`.
async fn origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                let _ = stream.read(&mut buffer).await;
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 17\r\nConnection: close\r\n\r\norigin says hello",
                    )
                    .await;
            });
        }
    });
    addr
}

/// Sends `request` from `source` and reads the whole answer.
async fn from(source: &str, proxy: SocketAddr, request: &str) -> String {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(proxy).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

fn get(target: &str, host: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}

fn post_form(form: &str) -> String {
    format!(
        "POST /sheepdog/portal HTTP/1.1\r\nHost: captive.test\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    )
}

fn status(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Accepts one account, `staff` with password `right`, who is nobody's.
#[derive(Debug)]
struct OneAccount;

impl Authenticator for OneAccount {
    fn verify(&self, user: &str, password: &str) -> Verification {
        let right = user == "staff" && password == "right";
        Box::pin(async move {
            Ok(right.then(|| ProxyUser {
                account: "staff".to_string(),
                person_id: None,
            }))
        })
    }
}

/// A school with the default agreements, a proxy with the portal for
/// 127.0.9.0/24 (asking everyone else to sign in when `sign_in` is set).
struct Portal {
    _dir: tempfile::TempDir,
    store: Store,
    school: i64,
    version: i64,
    identities: Arc<IdentityResolver>,
    server: ProxyServer,
}

async fn portal(sign_in: bool) -> Portal {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("casinos.txt"), "casino.test\n").unwrap();
    let doc = PolicyDocument::from_toml(POLICY).unwrap();
    let (snapshot, _) = build_snapshot(&doc, dir.path(), None).unwrap();
    let engine = Arc::new(Engine::new(
        CompiledPolicy::compile(&doc, Arc::new(snapshot)).unwrap(),
    ));
    let url = format!("sqlite://{}", dir.path().join("test.sqlite").display());
    let store = Store::open(&url, &StoreOptions::default()).await.unwrap();
    let actor = Actor::command_line("test");
    let school = store
        .create_school(&actor, "Loopback Primary", None, "Europe/London")
        .await
        .unwrap()
        .id;
    store
        .publish_default_agreements(&actor, school)
        .await
        .unwrap();
    let version = store.guest_agreement(school).await.unwrap().version;

    let guests = Arc::new(GuestNetworks::new(
        vec![parse_net("127.0.9.0/24").unwrap()],
        "guest",
    ));
    let identities =
        Arc::new(IdentityResolver::new(IdentityMap::new("guest")).with_guests(guests.clone()));
    let config = ProxyConfig {
        enabled: true,
        ..ProxyConfig::default()
    };
    let mut proxy = Proxy::new(
        engine,
        identities.clone(),
        None,
        Some(store.clone()),
        ProxySettings::from_config(&config),
    )
    .with_portal(GuestPortal {
        school_id: school,
        acceptance_hours: 12,
    });
    if sign_in {
        proxy = proxy.with_authentication(Arc::new(OneAccount));
    }
    let server = ProxyServer::start(Arc::new(proxy), &["127.0.0.1:0".parse().unwrap()])
        .await
        .unwrap();
    Portal {
        _dir: dir,
        store,
        school,
        version,
        identities,
        server,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_sees_the_portal_accepts_and_is_filtered_as_a_guest() {
    let Portal {
        _dir,
        store,
        school,
        version,
        identities,
        server,
    } = portal(false).await;
    let actor = Actor::command_line("test");
    let proxy = server.addrs()[0];
    let origin = origin().await;
    let guest = "127.0.9.5";
    assert_eq!(
        &*identities.lookup(guest.parse().unwrap()).group,
        CAPTIVE_GROUP
    );

    // Captive: an Android probe sent here by the DNS server's block page
    // answer, an Apple probe, and an allowed site by absolute URL all get
    // the portal, never the site.
    for request in [
        get("/generate_204", "connectivitycheck.gstatic.com"),
        get("/hotspot-detect.html", "captive.apple.com"),
        get(&format!("http://{origin}/"), &origin.to_string()),
    ] {
        let answer = from(guest, proxy, &request).await;
        assert_eq!(status(&answer), 200, "{answer}");
        assert!(answer.contains("Before you use the school"), "{answer}");
        assert!(answer.contains("filtered and monitored"), "{answer}");
        assert!(
            answer.contains("Visitor and community user agreement"),
            "{answer}"
        );
        assert!(answer.contains("no-store"), "{answer}");
        assert!(!answer.contains("origin says hello"), "{answer}");
    }
    // HTTPS cannot show a page: a tunnel is refused until they accept.
    let tunnel = from(
        guest,
        proxy,
        &format!("CONNECT {origin} HTTP/1.1\r\nHost: {origin}\r\n\r\n"),
    )
    .await;
    assert_eq!(status(&tunnel), 403, "{tunnel}");

    // Without ticking the box nothing is recorded.
    let unticked = from(
        guest,
        proxy,
        &post_form(&format!("version={version}&name=Ada")),
    )
    .await;
    assert_eq!(status(&unticked), 400, "{unticked}");
    assert!(unticked.contains("Tick the box"), "{unticked}");
    assert!(store
        .guest_acceptances(school, 10)
        .await
        .unwrap()
        .is_empty());

    let accepted = from(
        guest,
        proxy,
        &post_form(&format!(
            "version={version}&name=Visiting+plumber&agree=yes&next=http%3A%2F%2Fexample.test%2F"
        )),
    )
    .await;
    assert_eq!(status(&accepted), 200, "{accepted}");
    assert!(accepted.contains("You are connected"), "{accepted}");
    assert!(
        accepted.contains("href=\"http://example.test/\""),
        "{accepted}"
    );
    let stored = store.guest_acceptances(school, 10).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].address, guest);
    assert_eq!(stored[0].name.as_deref(), Some("Visiting plumber"));
    assert_eq!(stored[0].version, version);
    assert_eq!(
        store
            .audit_entries(Some("guest_acceptance"), 10)
            .await
            .unwrap()[0]
            .actor,
        "system:captive-portal"
    );

    // At once a guest: the origin is reached, gambling gets the guest
    // group's block page.
    assert_eq!(&*identities.lookup(guest.parse().unwrap()).group, "guest");
    let allowed = from(
        guest,
        proxy,
        &get(&format!("http://{origin}/"), &origin.to_string()),
    )
    .await;
    assert!(allowed.contains("origin says hello"), "{allowed}");
    let blocked = from(guest, proxy, &get("http://casino.test/", "casino.test")).await;
    assert_eq!(status(&blocked), 403, "{blocked}");
    assert!(blocked.contains("blocked"), "{blocked}");
    assert!(!blocked.contains("Before you use the school"), "{blocked}");

    // The neighbour has not accepted.
    let neighbour = from(
        "127.0.9.6",
        proxy,
        &get(&format!("http://{origin}/"), &origin.to_string()),
    )
    .await;
    assert!(
        neighbour.contains("Before you use the school"),
        "{neighbour}"
    );

    // A stale form (the agreement changed while it was read) is shown
    // again rather than accepted.
    store
        .publish_agreement(
            &actor,
            school,
            sheepdog_store::governance::agreements::Audience::Community,
            "# Visitors v2\n\nBe kind.",
        )
        .await
        .unwrap();
    let stale = from(
        "127.0.9.6",
        proxy,
        &post_form(&format!("version={version}&agree=yes")),
    )
    .await;
    assert_eq!(status(&stale), 409, "{stale}");
    assert!(stale.contains("Visitors v2"), "{stale}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_proxy_sign_in_visitors_still_meet_the_portal_not_a_password_prompt() {
    let Portal {
        _dir,
        store,
        school,
        version,
        identities,
        server,
    } = portal(true).await;
    let proxy = server.addrs()[0];
    let origin = origin().await;
    let site = get(&format!("http://{origin}/"), &origin.to_string());

    // The school's own address is asked to sign in.
    let staff = from("127.0.0.1", proxy, &site).await;
    assert_eq!(status(&staff), 407, "{staff}");

    // A captive visitor asking for a site by absolute URL gets the portal.
    let guest = "127.0.9.7";
    let captive = from(guest, proxy, &site).await;
    assert_eq!(status(&captive), 200, "{captive}");
    assert!(captive.contains("Before you use the school"), "{captive}");
    assert!(!captive.contains("origin says hello"), "{captive}");

    let accepted = from(
        guest,
        proxy,
        &post_form(&format!("version={version}&agree=yes")),
    )
    .await;
    assert_eq!(status(&accepted), 200, "{accepted}");
    assert_eq!(store.guest_acceptances(school, 10).await.unwrap().len(), 1);
    assert_eq!(&*identities.lookup(guest.parse().unwrap()).group, "guest");

    // Accepted, the visitor browses as a guest without a password.
    let allowed = from(guest, proxy, &site).await;
    assert!(allowed.contains("origin says hello"), "{allowed}");
    let blocked = from(guest, proxy, &get("http://casino.test/", "casino.test")).await;
    assert_eq!(status(&blocked), 403, "{blocked}");

    // Staff with the right password get through.
    let signed_in = from(
        "127.0.0.1",
        proxy,
        &format!(
            "GET http://{origin}/ HTTP/1.1\r\nHost: {origin}\r\nConnection: close\r\n\
             Proxy-Authorization: Basic c3RhZmY6cmlnaHQ=\r\n\r\n"
        ),
    )
    .await;
    assert!(signed_in.contains("origin says hello"), "{signed_in}");
}
