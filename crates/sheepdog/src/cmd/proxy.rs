//! Starts the filtering web proxy for `serve` and `demo`, sharing the DNS
//! server's event writer and identity map when it runs.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use sheepdog_config::{Config, ProxyAuthentication};
use sheepdog_console::password;
use sheepdog_events::{EventSink, EventWriter};
use sheepdog_policy::Engine;
use sheepdog_proxy::server::Mode;
use sheepdog_proxy::{
    Authenticator, CertificateAuthority, GuestPortal, Inspection, Proxy, ProxyServer,
    ProxySettings, ProxyUser, Verification,
};
use sheepdog_store::Store;
use tokio::task::JoinHandle;

use super::dns::DnsRuntime;

/// The running proxy, and the event writer and identity refresher it
/// started when there was no DNS server to share them with.
#[derive(Debug)]
pub struct ProxyRuntime {
    server: ProxyServer,
    sink: EventSink,
    own: Option<(EventWriter, JoinHandle<()>)>,
    addr: SocketAddr,
    /// The pages the proxy reads, until the live monitor takes them.
    pages: Option<tokio::sync::mpsc::Receiver<sheepdog_store::PageSeen>>,
}

/// Pages waiting for the live monitor at most; past this the proxy drops
/// them and counts them (`sheepdog_proxy_pages_dropped_total`).
const PAGES_WAITING: usize = 1024;

impl ProxyRuntime {
    /// The pages the proxy reads (title and text of HTML it can see), for
    /// the live monitor; `None` once taken.
    pub fn take_pages(&mut self) -> Option<tokio::sync::mpsc::Receiver<sheepdog_store::PageSeen>> {
        self.pages.take()
    }

    /// The first address listened on (the real port when 0 was asked).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, then (when it has its own) writes every queued event.
    pub async fn shutdown(self) {
        self.server.stop().await;
        drop(self.sink);
        if let Some((writer, refresher)) = self.own {
            refresher.abort();
            let _ = refresher.await;
            writer.shutdown().await;
        }
    }
}

/// Proxy credentials checked against sheepdog's accounts: the console's
/// user names and passwords, so staff have one account. Disabled accounts
/// are refused; an unknown name costs as much time as a known one.
#[derive(Debug)]
struct AccountAuthenticator {
    store: Store,
}

impl Authenticator for AccountAuthenticator {
    fn verify(&self, user: &str, password: &str) -> Verification {
        let (store, user, password) = (self.store.clone(), user.to_string(), password.to_string());
        Box::pin(async move {
            let found = store
                .account_for_sign_in(&user)
                .await
                .map_err(|e| e.to_string())?;
            tokio::task::spawn_blocking(move || match found {
                Some((account, hash)) => (password::verify(&password, &hash) && !account.disabled)
                    .then_some(ProxyUser {
                        account: account.username,
                        person_id: account.person_id,
                    }),
                None => {
                    password::verify_decoy(&password);
                    None
                }
            })
            .await
            .map_err(|e| e.to_string())
        })
    }
}

/// Selective TLS inspection as `[proxy]` configures it.
fn inspection(config: &Config) -> anyhow::Result<Inspection> {
    let (certificate, key) = config.inspection_files();
    let authority = CertificateAuthority::load(&certificate, &key).with_context(|| {
        format!(
            "[proxy] inspection is on but the authority cannot be loaded from {}; \
             make it with `sheepdog ca init`",
            certificate.display()
        )
    })?;
    let roots = &config.proxy.upstream_roots;
    let roots = Inspection::trusted_roots((!roots.as_os_str().is_empty()).then_some(roots))
        .context("[proxy] upstream_roots")?;
    Ok(Inspection::new(
        Arc::new(authority),
        roots,
        &config.proxy.inspect_hosts,
        &config.proxy.never_inspect,
    )?)
}

/// Where guests' acceptances go: `[guest] school`, or the first school.
/// `None` without guest networks.
async fn guest_portal(config: &Config, store: &Store) -> anyhow::Result<Option<GuestPortal>> {
    if config.guest.networks.is_empty() {
        return Ok(None);
    }
    let schools = store.schools().await?;
    if schools.is_empty() {
        tracing::warn!("[guest] networks are set but no school exists yet: guests are told to ask at reception until one does (sheepdog init)");
        return Ok(None);
    }
    let wanted = config.guest.school.trim();
    let school = if wanted.is_empty() {
        schools.first()
    } else {
        schools.iter().find(|s| s.name.eq_ignore_ascii_case(wanted))
    };
    let Some(school) = school else {
        anyhow::bail!(
            "[guest] school: no school is called `{wanted}`; use one of: {}",
            schools
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    Ok(Some(GuestPortal {
        school_id: school.id,
        acceptance_hours: config.guest.acceptance_hours,
    }))
}

/// Starts the proxy on `[proxy] listen`. Call it only when
/// `config.proxy.enabled`.
pub async fn start(
    config: &Config,
    store: Store,
    engine: Arc<Engine>,
    dns: Option<&DnsRuntime>,
) -> anyhow::Result<ProxyRuntime> {
    let (sink, identities, own) = match dns {
        Some(dns) => (dns.events(), dns.identities(), None),
        None => {
            let (writer, sink) = super::dns::start_events(config, &store)?;
            let (identities, refresher) = super::dns::start_identities(config, store.clone()).await;
            (sink, identities, Some((writer, refresher)))
        }
    };
    let mut settings = ProxySettings::from_config(&config.proxy);
    // Guests reach the proxy only to be shown the portal and then filtered
    // as guests; their networks are served whatever `client_networks` says.
    let guest_networks = config
        .guest
        .networks
        .iter()
        .filter_map(|n| sheepdog_events::identity::parse_net(n));
    settings.client_networks.extend(guest_networks);
    let portal = guest_portal(config, &store).await?;
    let mut proxy = Proxy::new(
        engine,
        identities,
        Some(sink.clone()),
        Some(store.clone()),
        settings,
    );
    if let Some(portal) = portal {
        proxy = proxy.with_portal(portal);
    }
    let (pages, pages_seen) = tokio::sync::mpsc::channel(PAGES_WAITING);
    proxy = proxy.with_pages(pages);
    if config.proxy.inspection {
        proxy = proxy.with_inspection(Arc::new(inspection(config)?));
    }
    if config.proxy.authentication == ProxyAuthentication::Basic {
        proxy = proxy.with_authentication(Arc::new(AccountAuthenticator {
            store: store.clone(),
        }));
    }
    let proxy = Arc::new(proxy);
    let listeners: Vec<(SocketAddr, Mode)> = config
        .proxy
        .listen
        .iter()
        .map(|a| (*a, Mode::Explicit))
        .chain(
            config
                .proxy
                .transparent_http
                .iter()
                .map(|a| (*a, Mode::TransparentHttp)),
        )
        .chain(
            config
                .proxy
                .transparent_https
                .iter()
                .map(|a| (*a, Mode::TransparentTls)),
        )
        .collect();
    let server = match ProxyServer::start_listeners(proxy, &listeners).await {
        Ok(server) => server,
        Err(error) => {
            if let Some((writer, refresher)) = own {
                refresher.abort();
                writer.shutdown().await;
            }
            return Err(error).context("cannot start the web proxy ([proxy] listen)");
        }
    };
    let Some(addr) = server.addrs().first().copied() else {
        anyhow::bail!("[proxy] listen has no address; add one such as \"127.0.0.1:3128\"");
    };
    Ok(ProxyRuntime {
        server,
        sink,
        own,
        addr,
        pages: Some(pages_seen),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::net::{IpAddr, SocketAddr};

    use sheepdog_policy::{build_snapshot, CompiledPolicy, PolicyDocument};
    use sheepdog_store::{Actor, EventFilter};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const POLICY: &str = r#"
fallback_group = "guest"
[school]
name = "Larkmoor Primary"
time_zone = "Europe/London"
[[lists]]
name = "betting"
source = "betting.txt"
format = "domains"
category = "gambling"
[[groups]]
name = "guest"
default = "allow"
[[groups]]
name = "ks2"
default = "allow"
[groups.categories]
gambling = "block"
"#;

    /// An A question for `name`, by hand: the binary has no DNS library.
    fn question(id: u16, name: &str) -> Vec<u8> {
        let mut packet = id.to_be_bytes().to_vec();
        packet.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        for label in name.split('.') {
            packet.push(u8::try_from(label.len()).unwrap());
            packet.extend_from_slice(label.as_bytes());
        }
        packet.extend_from_slice(&[0, 0, 1, 0, 1]);
        packet
    }

    /// The DNS server and the proxy on loopback ports, wired to each other
    /// as `serve` wires them, filtering by `policy` (its lists in `dir`),
    /// with `adjust` applied to the configuration first.
    async fn dns_and_proxy(
        dir: &std::path::Path,
        store: &Store,
        policy: &str,
        adjust: impl FnOnce(&mut Config),
    ) -> (DnsRuntime, ProxyRuntime) {
        let doc = PolicyDocument::from_toml(policy).unwrap();
        let (snapshot, _) = build_snapshot(&doc, dir, None).unwrap();
        let engine = Arc::new(Engine::new(
            CompiledPolicy::compile(&doc, Arc::new(snapshot)).unwrap(),
        ));
        let mut config = Config {
            data_dir: dir.join("data"),
            ..Config::default()
        };
        config.dns.listen = vec!["127.0.0.1:0".parse().unwrap()];
        config.dns.timeout_ms = 300;
        config.dns.health_check_secs = 0;
        config.proxy.enabled = true;
        config.proxy.listen = vec!["127.0.0.1:0".parse().unwrap()];
        config.events.flush_ms = 10;
        adjust(&mut config);
        let dns = super::super::dns::start(&config, store.clone(), engine.clone())
            .await
            .unwrap();
        let proxy = start(&config, store.clone(), engine, Some(&dns))
            .await
            .unwrap();
        (dns, proxy)
    }

    /// Asks the DNS server from `from` and waits for its answer.
    async fn ask(dns: SocketAddr, from: IpAddr, id: u16, name: &str) {
        let socket = tokio::net::UdpSocket::bind((from, 0)).await.unwrap();
        socket.send_to(&question(id, name), dns).await.unwrap();
        let mut buffer = [0u8; 1500];
        let (len, _) = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            socket.recv_from(&mut buffer),
        )
        .await
        .expect("a DNS answer")
        .unwrap();
        assert!(len >= 12 && buffer[..2] == id.to_be_bytes());
    }

    /// A pupil signs in at the proxy from a shared computer whose address
    /// the device registry does not know; from then on, that computer's DNS
    /// queries are the pupil's, decided by the pupil's group, as `serve`
    /// and `demo` wire the two servers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_proxy_sign_in_carries_over_to_dns() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _school, pupil_id) =
            crate::cmd::fixtures::school_with_ks2_pupil(dir.path(), ("Tamsin", "Orrowby"), "5W")
                .await;
        let actor = Actor::command_line("test");
        let hash = password::hash("plough-lantern-47").unwrap();
        let account = store
            .create_account(&actor, "t.orrowby", "T Orrowby", &hash, &[])
            .await
            .unwrap();
        store
            .set_account_person(&actor, account.id, Some(pupil_id))
            .await
            .unwrap();

        std::fs::write(dir.path().join("betting.txt"), "bets.invalid\n").unwrap();
        let (dns, proxy) = dns_and_proxy(dir.path(), &store, POLICY, |config| {
            config.proxy.authentication = ProxyAuthentication::Basic;
        })
        .await;
        let shared_pc: IpAddr = "127.0.0.5".parse().unwrap();

        // Before anyone signs in: the default group, which allows betting.
        ask(dns.udp_addr(), shared_pc, 1, "bets.invalid").await;

        let origin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin_addr = origin.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = origin.accept().await {
                let mut buffer = [0u8; 2048];
                let _ = stream.read(&mut buffer).await;
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
            }
        });
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(shared_pc, 0)).unwrap();
        let mut browser = socket.connect(proxy.addr()).await.unwrap();
        // "t.orrowby:plough-lantern-47" in base64.
        let credentials = "dC5vcnJvd2J5OnBsb3VnaC1sYW50ZXJuLTQ3";
        browser
            .write_all(
                format!(
                    "GET http://{origin_addr}/lesson HTTP/1.1\r\nHost: {origin_addr}\r\n\
                     Proxy-Authorization: Basic {credentials}\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        let mut reply = String::new();
        browser.read_to_string(&mut reply).await.unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");

        // Now the shared computer's DNS is the pupil's: ks2 blocks betting.
        ask(dns.udp_addr(), shared_pc, 2, "bets.invalid").await;
        // Another computer is still nobody's.
        ask(
            dns.udp_addr(),
            "127.0.0.6".parse().unwrap(),
            3,
            "bets.invalid",
        )
        .await;

        proxy.shutdown().await;
        dns.shutdown().await.unwrap();
        let events = store
            .events(&EventFilter {
                client: Some(shared_pc.to_string()),
                ..EventFilter::default()
            })
            .await
            .unwrap();
        let dns_events: Vec<_> = events
            .iter()
            .filter(|e| e.source.as_str() == "dns")
            .map(|e| (e.action.as_str(), e.group.as_deref(), e.person_id))
            .collect();
        // Newest first.
        assert_eq!(
            dns_events,
            [
                ("block", Some("ks2"), Some(pupil_id)),
                ("allow", Some("guest"), None)
            ],
            "{events:?}"
        );
        let elsewhere = store
            .events(&EventFilter {
                client: Some("127.0.0.6".to_owned()),
                ..EventFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(elsewhere.len(), 1);
        assert_eq!(elsewhere[0].person_id, None);
        assert_eq!(elsewhere[0].action, "allow");
        store.close().await;
    }

    /// A browser the DNS server sent to the block page's address with a
    /// request for `host` (origin form, as a browser that does not know
    /// about the proxy sends it), from `from`; the whole answer.
    async fn browse(proxy: SocketAddr, from: IpAddr, host: &str, target: &str) -> String {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(from, 0)).unwrap();
        let mut browser = socket.connect(proxy).await.unwrap();
        browser
            .write_all(
                format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
        let mut reply = String::new();
        browser.read_to_string(&mut reply).await.unwrap();
        reply
    }

    /// A pupil whose DNS answer for a "warn" site sent the browser to the
    /// block page's address sees the warning page there, continues, and
    /// from then on the DNS server answers the site for that computer
    /// only, as `serve` and `demo` wire the two servers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_warning_continued_past_at_the_block_page_opens_the_site_in_dns() {
        const WARN: &str = r#"
fallback_group = "guest"
[school]
name = "Test"
time_zone = "Europe/London"
[[lists]]
name = "games"
source = "games.txt"
format = "domains"
category = "games"
[[groups]]
name = "guest"
default = "allow"
[groups.categories]
games = "warn"
"#;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("test.sqlite").display());
        let store = Store::open(&url, &sheepdog_store::StoreOptions::default())
            .await
            .unwrap();
        std::fs::write(dir.path().join("games.txt"), "games.invalid\n").unwrap();
        let (dns, proxy) = dns_and_proxy(dir.path(), &store, WARN, |_| {}).await;
        let pupil: IpAddr = "127.0.0.7".parse().unwrap();
        let neighbour: IpAddr = "127.0.0.8".parse().unwrap();

        ask(dns.udp_addr(), pupil, 1, "games.invalid").await;
        let warning = browse(proxy.addr(), pupil, "games.invalid", "/play?level=2").await;
        assert!(warning.starts_with("HTTP/1.1 "), "{warning}");
        let marker = "http://games.invalid/play?level=2&amp;sheepdog-continue=";
        let start = warning.find(marker).expect("a continue link") + marker.len();
        let token: String = warning[start..]
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect();
        assert!(!token.is_empty(), "{warning}");

        // A made-up token, or the pupil's token from another computer,
        // opens nothing.
        let forged = browse(
            proxy.addr(),
            neighbour,
            "games.invalid",
            &format!("/play?level=2&sheepdog-continue={token}"),
        )
        .await;
        assert!(forged.starts_with("HTTP/1.1 303"), "{forged}");
        let continued = browse(
            proxy.addr(),
            pupil,
            "games.invalid",
            &format!("/play?level=2&sheepdog-continue={token}"),
        )
        .await;
        assert!(continued.starts_with("HTTP/1.1 303"), "{continued}");
        assert!(
            continued.contains("location: http://games.invalid/play?level=2\r\n"),
            "{continued}"
        );

        ask(dns.udp_addr(), pupil, 2, "games.invalid").await;
        // The site's other hosts come with it.
        ask(dns.udp_addr(), pupil, 4, "cdn.games.invalid").await;
        ask(dns.udp_addr(), neighbour, 3, "games.invalid").await;
        proxy.shutdown().await;
        dns.shutdown().await.unwrap();

        let dns_actions = |client: IpAddr| {
            let store = store.clone();
            async move {
                store
                    .events(&EventFilter {
                        client: Some(client.to_string()),
                        ..EventFilter::default()
                    })
                    .await
                    .unwrap()
                    .into_iter()
                    .filter(|e| e.source.as_str() == "dns")
                    .map(|e| (e.action, e.rule.unwrap_or_default()))
                    .collect::<Vec<_>>()
            }
        };
        // Newest first.
        let pupil_events = dns_actions(pupil).await;
        assert_eq!(pupil_events.len(), 3, "{pupil_events:?}");
        for continued in &pupil_events[..2] {
            assert_eq!(continued.0, "allow", "{pupil_events:?}");
            assert!(
                continued.1.ends_with("(warning acknowledged)"),
                "{pupil_events:?}"
            );
        }
        assert_eq!(pupil_events[2].0, "warn", "{pupil_events:?}");
        let neighbour_events = dns_actions(neighbour).await;
        assert_eq!(neighbour_events.len(), 1, "{neighbour_events:?}");
        assert_eq!(neighbour_events[0].0, "warn", "{neighbour_events:?}");
        store.close().await;
    }
}
