//! Starts the filtering DNS resolver with its event writer and identity map,
//! for `serve` and `demo`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sheepdog_config::Config;
use sheepdog_dns::{DnsServer, Resolver, ResolverSettings};
use sheepdog_events::{
    EventSink, EventWriter, GuestNetworks, IdentityMap, IdentityResolver, Warnings, WriterOptions,
};
use sheepdog_policy::Engine;
use sheepdog_store::Store;
use tokio::task::JoinHandle;

/// The running DNS server, event writer and identity refresher.
#[derive(Debug)]
pub struct DnsRuntime {
    server: DnsServer,
    writer: EventWriter,
    sink: EventSink,
    identities: Arc<IdentityResolver>,
    refresher: JoinHandle<()>,
    udp: SocketAddr,
    tcp: SocketAddr,
}

impl DnsRuntime {
    /// The first UDP address answered on (the real port when 0 was asked).
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp
    }

    /// The first TCP address answered on.
    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp
    }

    /// The event queue, for the proxy to share.
    pub fn events(&self) -> EventSink {
        self.sink.clone()
    }

    /// The identity map, for the proxy to share.
    pub fn identities(&self) -> Arc<IdentityResolver> {
        self.identities.clone()
    }

    /// Stops answering, then writes every queued event (to the database, or
    /// to the spool if it is unavailable).
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.refresher.abort();
        let _ = self.refresher.await;
        self.server.stop().await;
        drop(self.sink);
        self.writer.shutdown().await;
        Ok(())
    }
}

/// Starts the event writer from `[events]`, which the DNS server and the
/// proxy share.
pub fn start_events(config: &Config, store: &Store) -> anyhow::Result<(EventWriter, EventSink)> {
    let events = &config.events;
    let options = WriterOptions {
        capacity: events.channel_capacity as usize,
        batch_size: events.batch_size as usize,
        flush_interval: Duration::from_millis(u64::from(events.flush_ms)),
        spool_dir: config.spool_dir(),
        retention_days: events.retention_days,
        spool_max_bytes: u64::from(events.spool_max_mb) * 1024 * 1024,
        ..WriterOptions::default()
    };
    EventWriter::start(store.clone(), options).with_context(|| {
        format!(
            "cannot start the event writer (spool {})",
            config.spool_dir().display()
        )
    })
}

/// Loads the identity map from the device registry and keeps it fresh;
/// the DNS server and the proxy share it.
pub async fn start_identities(
    config: &Config,
    store: Store,
) -> (Arc<IdentityResolver>, JoinHandle<()>) {
    let default_group = config.dns.default_group.clone();
    let map = match IdentityMap::load(&store, &default_group).await {
        Ok(map) => map,
        Err(error) => {
            tracing::warn!(%error, "cannot read the device registry; every client is in the default group until it can");
            IdentityMap::new(&default_group)
        }
    };
    let mut identities = IdentityResolver::new(map)
        .with_sign_ins(Duration::from_secs(u64::from(config.dns.sign_in_secs)));
    // One record of who continued past a warning, for the proxy (which
    // shows the warning page) and the DNS server (which then answers).
    let lasts = Duration::from_secs(60 * u64::from(config.proxy.warning_minutes));
    match Warnings::new(lasts) {
        Ok(warnings) => identities = identities.with_warnings(Arc::new(warnings)),
        Err(_) => tracing::error!("no key for warning pages: warnings stay blocks"),
    }
    if let Some(guests) = guest_networks(config) {
        if let Err(error) = guests.refresh(&store).await {
            tracing::warn!(%error, "cannot read guests' acceptances; guests are asked again until it can");
        }
        identities = identities.with_guests(Arc::new(guests));
    }
    let identities = Arc::new(identities);
    let every = Duration::from_secs(u64::from(config.dns.identity_refresh_secs.max(1)));
    let refresher = super::agreements::spawn_identity_refresh(
        identities.clone(),
        store,
        default_group,
        every,
        super::agreements::UNSIGNED_REFRESH,
    );
    (identities, refresher)
}

/// The guest networks of `[guest]`, when it names any (the configuration
/// check refused entries that do not parse).
pub fn guest_networks(config: &Config) -> Option<GuestNetworks> {
    let networks: Vec<_> = config
        .guest
        .networks
        .iter()
        .filter_map(|n| sheepdog_events::identity::parse_net(n))
        .collect();
    (!networks.is_empty()).then(|| GuestNetworks::new(networks, config.guest.group.trim()))
}

/// Warns when the lists hold URL-level entries that devices using only
/// this DNS server would not meet, because `[dns] url_rules_proxy_ipv4`
/// and `_ipv6` are unset. `serve` calls it; the demo, on loopback without
/// transparent listeners, does not.
pub fn warn_of_unsteered_url_rules(config: &Config, engine: &Engine) {
    let url_rules = engine.current().snapshot().stats().url_rules;
    if config.dns.enabled
        && url_rules > 0
        && config.dns.url_rules_proxy_ipv4.is_empty()
        && config.dns.url_rules_proxy_ipv6.is_empty()
    {
        tracing::warn!(
            "the lists hold {url_rules} URL-level entries (such as the IWF's and CTIRU's), which \
             only traffic through the proxy is matched against; a device that only uses this DNS \
             server reaches those hosts directly. Set [dns] url_rules_proxy_ipv4 (and _ipv6) to \
             an address where the proxy has transparent listeners on ports 80 and 443"
        );
    }
}

/// Starts the DNS server on `[dns] listen` with the events writer from
/// `[events]`. Call it only when `config.dns.enabled`.
pub async fn start(
    config: &Config,
    store: Store,
    engine: Arc<Engine>,
) -> anyhow::Result<DnsRuntime> {
    let (writer, sink) = start_events(config, &store)?;
    let (identities, refresher) = start_identities(config, store).await;

    let resolver = Arc::new(Resolver::new(
        engine,
        identities.clone(),
        Some(sink.clone()),
        ResolverSettings::from_config(&config.dns),
    ));
    let server = match DnsServer::start(resolver, &config.dns.listen).await {
        Ok(server) => server,
        Err(error) => {
            refresher.abort();
            writer.shutdown().await;
            return Err(error).context("cannot start the DNS server");
        }
    };
    let (Some(udp), Some(tcp)) = (
        server.udp_addrs().first().copied(),
        server.tcp_addrs().first().copied(),
    ) else {
        server.stop().await;
        refresher.abort();
        writer.shutdown().await;
        anyhow::bail!("[dns] listen has no address; add one such as \"127.0.0.1:53\"");
    };
    Ok(DnsRuntime {
        server,
        writer,
        sink,
        identities,
        refresher,
        udp,
        tcp,
    })
}
