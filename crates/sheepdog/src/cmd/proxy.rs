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
}

impl ProxyRuntime {
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
    })
}
