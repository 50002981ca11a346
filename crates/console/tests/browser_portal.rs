//! The guest network's captive portal in a real headless Chromium (M4):
//! the browser, set to use the proxy from an address on the guest network,
//! asks for a site and gets the visitor agreement and the monitoring
//! notice instead; its own form validation will not send the form until
//! "I agree" is ticked; ticking it and pressing the button records the
//! acceptance, and the same browser then reaches the site.
//!
//! Screenshots go to `$CARGO_TARGET_DIR/browser-artifacts/portal-*.png`.
//! Needs Debian's `chromium` and `chromium-driver`, unless
//! `SHEEPDOG_TEST_BROWSER=skip` is set.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use fantoccini::{Client, Locator};
use sheepdog_config::ProxyConfig;
use sheepdog_events::identity::parse_net;
use sheepdog_events::{GuestNetworks, IdentityMap, IdentityResolver, CAPTIVE_GROUP};
use sheepdog_policy::{build_snapshot, CompiledPolicy, Engine, PolicyDocument};
use sheepdog_proxy::{GuestPortal, Proxy, ProxyServer, ProxySettings};
use sheepdog_store::{Actor, Store, StoreOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const POLICY: &str = r#"
fallback_group = "guest"

[school]
name = "Portal Primary"
time_zone = "Europe/London"

[[groups]]
name = "guest"
default = "allow"
"#;

/// The page's text, or an empty string while the page is being replaced:
/// a body found just before a navigation goes stale before it is read.
async fn body_text(client: &Client) -> String {
    match client.find(Locator::Css("body")).await {
        Ok(body) => body.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Waits until the page's text holds `wanted`.
async fn wait_for_text(client: &Client, wanted: &str) -> String {
    for _ in 0..200 {
        let text = body_text(client).await;
        if text.contains(wanted) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "no page with {wanted:?} within ten seconds: {}",
        body_text(client).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_accepts_the_agreement_in_a_real_browser_and_is_let_through() {
    let dir = tempfile::tempdir().unwrap();
    let doc = PolicyDocument::from_toml(POLICY).unwrap();
    let (snapshot, _) = build_snapshot(&doc, dir.path(), None).unwrap();
    let engine = Arc::new(Engine::new(
        CompiledPolicy::compile(&doc, Arc::new(snapshot)).unwrap(),
    ));
    let url = format!("sqlite://{}", dir.path().join("test.sqlite").display());
    let store = Store::open(&url, &StoreOptions::default()).await.unwrap();
    let actor = Actor::command_line("test");
    let school = store
        .create_school(&actor, "Portal Primary", None, "Europe/London")
        .await
        .unwrap();
    store
        .publish_default_agreements(&actor, school.id)
        .await
        .unwrap();

    // Chromium connects from 127.0.0.1: that is the guest network here.
    let guests = Arc::new(GuestNetworks::new(
        vec![parse_net("127.0.0.1/32").unwrap()],
        "guest",
    ));
    let identities = Arc::new(IdentityResolver::new(IdentityMap::new("guest")).with_guests(guests));
    let config = ProxyConfig {
        enabled: true,
        ..ProxyConfig::default()
    };
    let proxy = Proxy::new(
        engine,
        identities.clone(),
        None,
        Some(store.clone()),
        ProxySettings::from_config(&config),
    )
    .with_portal(GuestPortal {
        school_id: school.id,
        acceptance_hours: 12,
    });
    let server = ProxyServer::start(Arc::new(proxy), &["127.0.0.1:0".parse().unwrap()])
        .await
        .unwrap();
    let proxy = server.addrs()[0];

    let origin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin_addr = origin.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = origin.accept().await {
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                let _ = stream.read(&mut buffer).await;
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 43\r\n\
                          Connection: close\r\n\r\n<html><body>origin says hello</body></html>",
                    )
                    .await;
            });
        }
    });

    let proxy_arg = format!("--proxy-server=http://{proxy}");
    // Chromium never sends loopback through a proxy unless told to.
    let Some(common::Browser {
        client,
        driver: _driver,
        artefacts,
    }) = common::start_with(&[&proxy_arg, "--proxy-bypass-list=<-loopback>"]).await
    else {
        return;
    };
    let site = format!("http://{origin_addr}/lesson");

    client.goto(&site).await.unwrap();
    let portal = wait_for_text(&client, "Before you use the school").await;
    assert!(portal.contains("filtered and monitored"), "{portal}");
    assert!(
        portal.contains("Visitor and community user agreement"),
        "{portal}"
    );
    assert!(!portal.contains("origin says hello"), "{portal}");
    common::screenshot(&client, &artefacts, "portal-agreement").await;

    // The fields are labelled: a screen reader names them.
    let name = client.find(Locator::Id("name")).await.unwrap();
    let label = client
        .find(Locator::Css("label[for=name]"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(label, "Your name (optional)");
    name.send_keys("Visiting governor").await.unwrap();

    // Unticked, the browser's own validation keeps the form back.
    let button = client
        .find(Locator::Css("form button[type=submit]"))
        .await
        .unwrap();
    button.click().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(body_text(&client)
        .await
        .contains("Before you use the school"));
    assert!(store
        .guest_acceptances(school.id, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        &*identities.lookup("127.0.0.1".parse().unwrap()).group,
        CAPTIVE_GROUP
    );

    client
        .find(Locator::Id("agree"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .find(Locator::Css("form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let connected = wait_for_text(&client, "You are connected").await;
    common::screenshot(&client, &artefacts, "portal-connected").await;
    let stored = store.guest_acceptances(school.id, 10).await.unwrap();
    assert_eq!(stored.len(), 1, "{connected}");
    assert_eq!(stored[0].name.as_deref(), Some("Visiting governor"));
    assert_eq!(stored[0].address, "127.0.0.1");
    assert_eq!(
        &*identities.lookup("127.0.0.1".parse().unwrap()).group,
        "guest"
    );

    // The link back goes to the site asked for, which now opens.
    client
        .find(Locator::Css(&format!("a[href=\"{site}\"]")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_text(&client, "origin says hello").await;

    client.close().await.unwrap();
    server.stop().await;
    store.close().await;
}
