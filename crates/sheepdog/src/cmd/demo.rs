//! `sheepdog demo`: everything on loopback, with an invented school in a
//! throw-away data directory that is removed on Ctrl-C.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use sheepdog_config::Config;
use sheepdog_roster::synthetic::SchoolSpec;
use sheepdog_store::{
    AccountRole, Actor, DeviceDetails, GroupKind, Ownership, PersonKind, StaffRole, Store,
};

use super::{import, serve};
use crate::{password, sample, telemetry, web};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// The console's address; if the port is taken a free one is used.
    #[arg(long, default_value = "127.0.0.1:8080")]
    console: SocketAddr,
    /// The metrics address; if the port is taken a free one is used.
    #[arg(long, default_value = "127.0.0.1:9153")]
    metrics: SocketAddr,
    /// The DNS resolver's address (UDP and TCP); if the port is taken a
    /// free one is used.
    #[arg(long, default_value = "127.0.0.1:5353")]
    dns: SocketAddr,
    /// The web proxy's address; if the port is taken a free one is used.
    #[arg(long, default_value = "127.0.0.1:13128")]
    proxy: SocketAddr,
    /// An upstream resolver for names the policy allows (IP:PORT). Without
    /// one the demo sends nothing off the machine and answers SERVFAIL for
    /// allowed names it cannot resolve.
    #[arg(long)]
    upstream: Vec<String>,
    /// Pupils in each class of the invented school.
    #[arg(long, default_value_t = 20)]
    pupils_per_class: usize,
    /// Keep the data directory when the demo stops.
    #[arg(long)]
    keep: bool,
}

/// A demo sign-in: username, role label, role.
const DEMO_ACCOUNTS: &[(&str, &str, StaffRole)] = &[
    (
        "admin@demo.invalid",
        "trust administrator",
        StaffRole::TrustAdministrator,
    ),
    (
        "dsl@demo.invalid",
        "designated safeguarding lead",
        StaffRole::Dsl,
    ),
    ("head@demo.invalid", "headteacher", StaffRole::Headteacher),
    (
        "tech@demo.invalid",
        "technician (filtering manager)",
        StaffRole::Technician,
    ),
    ("teacher@demo.invalid", "teacher", StaffRole::Teacher),
];

pub async fn run(args: DemoArgs, format: Option<telemetry::Format>) -> anyhow::Result<ExitCode> {
    for address in [args.console, args.metrics, args.dns, args.proxy] {
        if !address.ip().is_loopback() {
            bail!("the demo listens on loopback only; {address} is not a loopback address");
        }
    }
    let data = tempfile::Builder::new()
        .prefix("sheepdog-demo-")
        .tempdir()
        .context("cannot create the demo's data directory")?;
    let mut config = Config {
        data_dir: data.path().to_path_buf(),
        ..Config::default()
    };
    telemetry::init_logs(&config, format);

    config.filtering.policy = sample::write(data.path())?;
    let engine = super::lists::load_engine(&config.filtering.policy, &config.data_dir)?;
    let store = super::open_store(&config).await?;
    super::policy::record_unapplied_edits(
        &store,
        &sheepdog_policy::PolicyDocument::load(&config.filtering.policy)?,
    )
    .await?;
    let sign_ins = furnish(&store, &config, args.pupils_per_class).await?;
    config.dns.listen = vec![free_dns_address(args.dns)?];
    if !args.upstream.is_empty() {
        let text = format!(
            "[dns]\nupstreams = [{}]\n",
            args.upstream
                .iter()
                .map(|u| format!("\"{u}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        config.dns.upstreams = Config::parse(&text, std::path::Path::new("--upstream"))?
            .dns
            .upstreams;
    }
    let engine = Arc::new(engine);
    let dns = serve::start_dns(&config, &store, Some(&engine)).await?;
    let _requests = super::requests::spawn_exception_refresh(
        engine.clone(),
        sheepdog_policy::PolicyDocument::load(&config.filtering.policy)?,
        store.clone(),
        super::requests::REFRESH,
    );
    let _lists = super::list_refresh::spawn(
        engine.clone(),
        &config.filtering.policy,
        &config.data_dir,
        std::time::Duration::from_secs(u64::from(config.filtering.list_check_seconds)),
        super::list_refresh::BuildPlace::child_of_this_program(),
    )?;
    config.proxy.enabled = true;
    config.proxy.listen = vec![web::bind(args.proxy, true).await?.local_addr()?];
    let proxy = serve::start_proxy(&config, &store, Some(&engine), dns.as_ref()).await?;
    let console = web::bind(args.console, true).await?;
    let metrics = web::bind(args.metrics, true).await?;
    config.console.listen = console.local_addr()?;
    // The demo listens on loopback only, over plain HTTP, so that the
    // address it prints opens without a certificate warning.
    config.console.tls = false;
    config.metrics.listen = metrics.local_addr()?;
    let config_path = data.path().join("sheepdog.toml");
    std::fs::write(
        &config_path,
        format!(
            "data_dir = \"{}\"\n[console]\nlisten = \"{}\"\n[metrics]\nlisten = \"{}\"\n\
             [filtering]\npolicy = \"{}\"\n",
            data.path().display(),
            config.console.listen,
            config.metrics.listen,
            config.filtering.policy.display()
        ),
    )?;

    let census = store.census().await?;
    println!("sheepdog demo is running: an invented school; no real person is named here");
    println!("  console   http://{}/", config.console.listen);
    println!("  health    http://{}/healthz", config.console.listen);
    println!("  metrics   http://{}/metrics", config.metrics.listen);
    if let Some(dns) = &dns {
        println!(
            "  dns       {} (UDP and TCP; upstreams: {})",
            dns.udp_addr(),
            if config.dns.upstreams.is_empty() {
                "none, allowed names get SERVFAIL".to_string()
            } else {
                format!("{}", config.dns.upstreams.len())
            }
        );
    }
    if let Some(proxy) = &proxy {
        println!(
            "  proxy     http://{0} (PAC file http://{0}/proxy.pac)",
            proxy.addr()
        );
    }
    println!(
        "  data      {} (removed when the demo stops)",
        data.path().display()
    );
    println!("  config    {}", config_path.display());
    println!(
        "  school    {}: {} pupils, {} staff, {} parents and carers, {} devices",
        serve::school_label(&store).await?,
        census.pupils,
        census.staff,
        census.parents,
        census.devices
    );
    let stats = engine.current().snapshot().stats();
    println!(
        "  filtering {} ({} names, {} URL rules from {} sample lists)",
        config.filtering.policy.display(),
        stats.names,
        stats.url_rules,
        engine.current().snapshot().lists().len()
    );
    println!("  sign-ins  (for the console)");
    for (username, secret, label) in &sign_ins {
        println!("    {username:<24} {secret:<32} {label}");
    }
    println!(
        "  try       sheepdog audit verify --config {}",
        config_path.display()
    );
    println!(
        "            sheepdog check --config {} --group ks2 www.example-casino.test",
        config_path.display()
    );
    if let Some(dns) = &dns {
        println!(
            "            dig @{} -p {} www.example-casino.test",
            dns.udp_addr().ip(),
            dns.udp_addr().port()
        );
    }
    if let Some(proxy) = &proxy {
        println!(
            "            curl -x http://{} http://www.example-casino.test/",
            proxy.addr()
        );
    }
    println!("Press Ctrl-C to stop.");

    let label = serve::school_label(&store).await?;
    let filtering = super::requests::console_filtering(&config, engine.clone())?;
    serve::run_servers(
        &config,
        store,
        dns,
        proxy,
        console,
        Some(metrics),
        Some(filtering),
        label,
        super::shutdown_signal(),
    )
    .await?;
    if args.keep {
        let kept = data.keep();
        println!("demo stopped; data kept in {}", kept.display());
    } else {
        let path = data.path().to_path_buf();
        data.close()
            .context("cannot remove the demo's data directory")?;
        println!("demo stopped; removed {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `wanted` when its port is free for both UDP and TCP, else a port that is.
fn free_dns_address(wanted: SocketAddr) -> anyhow::Result<SocketAddr> {
    let both_free = |address: SocketAddr| -> std::io::Result<SocketAddr> {
        let udp = std::net::UdpSocket::bind(address)?;
        let address = udp.local_addr()?;
        std::net::TcpListener::bind(address)?;
        Ok(address)
    };
    if let Ok(address) = both_free(wanted) {
        return Ok(address);
    }
    for _ in 0..20 {
        if let Ok(address) = both_free(SocketAddr::new(wanted.ip(), 0)) {
            return Ok(address);
        }
    }
    bail!("no port on {} is free for both UDP and TCP", wanted.ip())
}

/// Fills the store with the invented school, through the same import a real
/// school's roster takes. Returns the demo sign-ins.
async fn furnish(
    store: &Store,
    config: &Config,
    pupils_per_class: usize,
) -> anyhow::Result<Vec<(String, String, String)>> {
    let actor = Actor::system("demo");
    let school = store
        .create_school(
            &actor,
            "Larkmoor Primary School (demo)",
            None,
            config.school.timezone.0.name(),
        )
        .await?;
    let spec = SchoolSpec {
        pupils_per_class,
        ..SchoolSpec::default()
    };
    let roster_dir = config.data_dir.join("roster");
    // Staff before contacts' pupils, pupils before the contacts that name them.
    for path in import::write_roster(&spec, &roster_dir)?
        .iter()
        .rev()
        .skip(1)
        .chain(import::write_roster(&spec, &roster_dir)?.iter().skip(2))
    {
        let roster = sheepdog_roster::parse(path, None)?;
        if !roster.is_clean() {
            bail!(
                "the synthetic roster {} has problems: {:?}",
                path.display(),
                roster.problems
            );
        }
        import::import(store, &actor, school.id, &roster, false).await?;
    }
    for (name, profile) in [("Guests", "guest"), ("Unsigned", "unsigned")] {
        store
            .ensure_group(&actor, school.id, name, GroupKind::Filtering, Some(profile))
            .await?;
    }
    let groups = store.groups(school.id).await?;
    let group_id = |name: &str| groups.iter().find(|g| g.name == name).map(|g| g.id);
    let staff = store.people(school.id, Some(PersonKind::Staff)).await?;
    let mut devices = vec![
        DeviceDetails {
            name: "GUEST-WIFI".to_string(),
            mac: None,
            address: Some("10.0.9.0/24".to_string()),
            owner_id: None,
            group_id: group_id("Guests"),
            ownership: Ownership::Guest,
        },
        DeviceDetails {
            name: "STAFF-WIFI".to_string(),
            mac: None,
            address: Some("10.0.8.0/24".to_string()),
            owner_id: None,
            group_id: group_id("Staff"),
            ownership: Ownership::Byod,
        },
    ];
    for n in 1..=8u8 {
        devices.push(DeviceDetails {
            name: format!("Y5-CHROMEBOOK-{n:02}"),
            mac: Some(format!("02:00:5e:00:05:{n:02x}")),
            address: Some(format!("10.0.5.{}", 10 + n)),
            owner_id: None,
            group_id: group_id("Year 5"),
            ownership: Ownership::School,
        });
    }
    for (n, person) in staff.iter().take(6).enumerate() {
        devices.push(DeviceDetails {
            name: format!("STAFF-LAPTOP-{:02}", n + 1),
            mac: Some(format!("02:00:5e:00:08:{:02x}", n + 1)),
            address: Some(format!("10.0.8.{}", 20 + n)),
            owner_id: Some(person.id),
            group_id: group_id("Staff"),
            ownership: Ownership::School,
        });
    }
    for device in devices {
        store
            .save_device(&actor, school.id, device, "demo school's devices")
            .await?;
    }
    let mut sign_ins = Vec::new();
    for (username, label, role) in DEMO_ACCOUNTS {
        let secret = password::generate();
        let school_id = (*role != StaffRole::TrustAdministrator).then_some(school.id);
        let roles = [AccountRole {
            school_id,
            role: *role,
        }];
        store
            .create_account(&actor, username, label, &password::hash(&secret)?, &roles)
            .await?;
        sign_ins.push((username.to_string(), secret, label.to_string()));
    }
    Ok(sign_ins)
}
