//! A real headless Chromium driven over WebDriver by chromedriver, shared
//! by the browser tests. Chromium and chromedriver come from Debian's
//! `chromium` and `chromium-driver` (scripts/test installs them);
//! `SHEEPDOG_TEST_BROWSER=skip` skips the browser tests, saying so.

#![allow(dead_code)]

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};

/// chromedriver, stopped when the test ends however it ends.
pub struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A WebDriver session, the chromedriver behind it, and where screenshots
/// go. Keep `driver` alive as long as `client`.
pub struct Browser {
    pub client: Client,
    pub driver: Driver,
    pub artefacts: PathBuf,
}

fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn artefacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    );
    let dir = target.join("browser-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Starts chromedriver and a headless Chromium session; `None` (said on
/// standard error) when `SHEEPDOG_TEST_BROWSER=skip`.
pub async fn start() -> Option<Browser> {
    start_with(&[]).await
}

/// As [`start`], with more Chromium command-line arguments (a proxy, say).
pub async fn start_with(extra: &[&str]) -> Option<Browser> {
    if std::env::var("SHEEPDOG_TEST_BROWSER").as_deref() == Ok("skip") {
        eprintln!("SHEEPDOG_TEST_BROWSER=skip: the browser test is not run");
        return None;
    }
    let chromium = on_path(&["chromium", "chromium-browser", "google-chrome"]).unwrap_or_else(|| {
        panic!("Chromium is not installed: install Debian's `chromium` (scripts/test does), or set SHEEPDOG_TEST_BROWSER=skip")
    });
    let chromedriver = on_path(&["chromedriver"]).unwrap_or_else(|| {
        panic!("chromedriver is not installed: install Debian's `chromium-driver` (scripts/test does), or set SHEEPDOG_TEST_BROWSER=skip")
    });
    let artefacts = artefacts_dir();
    eprintln!("browser test screenshots: {}", artefacts.display());
    let port = free_port();
    let driver = Driver(
        Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let webdriver = format!("http://127.0.0.1:{port}");
    let mut args = vec![
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1400",
        "--lang=en-GB",
    ];
    args.extend_from_slice(extra);
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".to_string(),
        serde_json::json!({ "binary": chromium, "args": args }),
    );
    let mut builder = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
    builder.capabilities(capabilities);
    for _ in 0..100 {
        match builder.connect(&webdriver).await {
            Ok(client) => {
                return Some(Browser {
                    client,
                    driver,
                    artefacts,
                })
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("chromedriver did not start within ten seconds");
}

/// Saves a screenshot as `NAME.png` in the artefacts folder.
pub async fn screenshot(client: &Client, dir: &Path, name: &str) {
    let png = client.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// Types `text` into the field `css`, replacing what it held.
pub async fn fill(client: &Client, css: &str, text: &str) {
    let field = client.find(Locator::Css(css)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

/// Presses the form's button and waits for the next page.
pub async fn submit(client: &Client, form: &str) {
    press(client, Locator::Css(&format!("{form} button"))).await;
}

/// Clicks a button or link and waits for the page it loads: a click may
/// return before the navigation it starts, so the old page's root element
/// is watched until it goes stale.
pub async fn press(client: &Client, what: Locator<'_>) {
    let old = client.find(Locator::Css("html")).await.unwrap();
    client.find(what).await.unwrap().click().await.unwrap();
    for _ in 0..200 {
        if old.tag_name().await.is_err() {
            client
                .wait()
                .at_most(Duration::from_secs(10))
                .for_element(Locator::Css("main"))
                .await
                .unwrap();
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no page loaded within ten seconds");
}
