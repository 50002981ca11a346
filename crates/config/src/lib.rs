//! The sheepdog configuration file.
//!
//! One TOML file configures a deployment. Every setting has a default, so an
//! empty file is a valid configuration; `dist/sheepdog.example.toml` lists
//! every key with its default and is kept in step with [`Config::default`] by
//! a test. Unknown keys and bad values are refused when the file is loaded,
//! with an error that names the file, the line, the key and a fix, because a
//! typo in a filter's configuration must never silently fall back to a
//! default.
//!
//! Relative paths in the file are taken relative to the directory that holds
//! the file, so a configuration and its policy can travel together.

#![forbid(unsafe_code)]

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

mod error;

pub use error::ConfigError;

/// A whole configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where sheepdog keeps its database, spool, snapshots and keys.
    pub data_dir: PathBuf,
    pub database: DatabaseConfig,
    pub log: LogConfig,
    pub console: ConsoleConfig,
    pub metrics: MetricsConfig,
    pub school: SchoolConfig,
    pub filtering: FilteringConfig,
    pub dns: DnsConfig,
    pub proxy: ProxyConfig,
    pub guest: GuestConfig,
    pub events: EventsConfig,
    pub notify: NotifyConfig,
    pub monitoring: MonitoringConfig,
}

/// The guest network's captive portal (M4): guests see the visitor
/// agreement and the notice that use is filtered and monitored, and accept
/// it, before they get access.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuestConfig {
    /// The guest networks (CIDR); empty: no captive portal.
    pub networks: Vec<String>,
    /// The policy group guests join once they accept.
    pub group: String,
    /// How long an acceptance lasts before the guest is asked again.
    pub acceptance_hours: u32,
    /// The school whose visitor agreement is shown; empty: the first
    /// school.
    pub school: String,
}

/// Which database holds the records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Empty for the embedded SQLite file `sheepdog.sqlite` in `data_dir`;
    /// otherwise a `sqlite://PATH` or `postgres://USER@HOST:PORT/DB` URL.
    pub url: DatabaseUrl,
    /// The most connections the pool opens.
    pub max_connections: u32,
    /// How long a writer waits for a locked SQLite database, in milliseconds.
    pub busy_timeout_ms: u32,
}

/// How sheepdog writes its logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: LogLevel,
}

/// The web console: its address and how sign-in sessions behave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    pub listen: SocketAddr,
    /// A session unused for this many minutes is signed out (the seed
    /// policy's 120).
    pub idle_timeout_minutes: u32,
    /// A session ends this many hours after sign-in however active it is.
    pub session_lifetime_hours: u32,
    /// Roles that must use two-factor authentication: every role that can
    /// see safeguarding data or change filtering, by default.
    pub require_two_factor_roles: Vec<String>,
    /// Serve the console over TLS (HTTPS). Off only behind a TLS-terminating
    /// proxy, or on loopback for a demonstration.
    pub tls: bool,
    /// PEM certificate chain; with `tls_key`. Empty: a self-signed
    /// certificate is made on first start and kept in `data_dir`, and every
    /// page warns about it.
    pub tls_certificate: String,
    /// PEM private key for `tls_certificate`.
    pub tls_key: String,
}

/// The role names `require_two_factor_roles` accepts (the store's roles).
pub const ROLE_NAMES: &[&str] = &[
    "headteacher",
    "dsl",
    "deputy_dsl",
    "technician",
    "teacher",
    "teaching_assistant",
    "office",
    "governor",
    "safeguarding_governor",
    "trust_administrator",
];

/// The Prometheus endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    pub enabled: bool,
    /// `/metrics` is served here, apart from the console so that it can be
    /// firewalled to the monitoring host alone.
    pub listen: SocketAddr,
}

/// Facts about the school (or the trust's default school) that the rest of
/// the configuration depends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchoolConfig {
    /// IANA time zone for schedules, term dates and reports.
    pub timezone: TimeZone,
}

/// Where the filtering policy lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilteringConfig {
    /// The policy document: categories, list sources and groups.
    pub policy: PathBuf,
    /// The longest time one unblock request may ask for, in hours (the
    /// seed policy asks for "a clear time frame"; a lesson or a day).
    pub request_max_hours: u32,
    /// How often `serve` looks for lists due a refresh and for a snapshot
    /// written by `sheepdog lists update`, in seconds.
    pub list_check_seconds: u32,
}

/// The filtering DNS resolver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    pub enabled: bool,
    /// Addresses to answer on, each over UDP and TCP.
    pub listen: Vec<SocketAddr>,
    /// Resolvers to forward allowed queries to, tried in order with
    /// failover: `IP:PORT` (UDP, falling back to TCP for long answers) or
    /// `tcp://IP:PORT`. Empty: every forwarded query gets SERVFAIL.
    pub upstreams: Vec<Upstream>,
    /// Extra certificate authorities (PEM) trusted for DNS-over-TLS
    /// upstreams, besides the public web's roots.
    pub upstream_roots: PathBuf,
    /// The longest a client waits for a forwarded answer before SERVFAIL.
    pub timeout_ms: u32,
    /// The longest one upstream gets before the next is tried.
    pub attempt_timeout_ms: u32,
    /// Answers the cache holds.
    pub cache_size: u32,
    /// Cached TTLs are raised to at least this many seconds.
    pub cache_min_ttl: u32,
    /// Cached TTLs are cut to at most this many seconds.
    pub cache_max_ttl: u32,
    /// The longest a "no such name" or "no data" answer is cached (RFC 2308).
    pub negative_ttl_max: u32,
    /// What a blocked name gets.
    pub block_answer: BlockAnswer,
    /// The block page's IPv4 address for `block_answer = "block_page"`;
    /// empty: 0.0.0.0.
    pub block_page_ipv4: String,
    /// The block page's IPv6 address; empty: ::.
    pub block_page_ipv6: String,
    /// TTL of block answers: short, so an unblock takes effect quickly.
    pub block_ttl: u32,
    /// The proxy's IPv4 address for names some list names only by URL (the
    /// IWF and CTIRU lists): their A questions are answered with it, so a
    /// device with no proxy settings still reaches them through the proxy,
    /// where the whole URL is matched. The proxy needs transparent
    /// listeners on ports 80 and 443 of it. Empty: such names are answered
    /// as their category decides.
    pub url_rules_proxy_ipv4: String,
    /// The same for AAAA questions; empty: they get no address (NODATA)
    /// while `url_rules_proxy_ipv4` is set, so IPv6 is no way around it.
    pub url_rules_proxy_ipv6: String,
    /// The policy group for clients the device registry does not know.
    pub default_group: String,
    /// How often the device registry is re-read into the identity map.
    pub identity_refresh_secs: u32,
    /// How often each upstream is asked the health-check question; 0: no
    /// active checks (a failed upstream still goes last for a few seconds).
    pub health_check_secs: u32,
    /// The name whose NS records the health check asks for (`.` by
    /// default, which every recursive resolver can answer).
    pub health_check_name: String,
    /// How long a sign-in at the proxy makes the client address that
    /// person's for DNS too (seconds); each request through the proxy
    /// renews it. 0: DNS never uses proxy sign-ins.
    pub sign_in_secs: u32,
}

/// The filtering web proxy (explicit HTTP/1.1 with CONNECT).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    pub enabled: bool,
    /// Addresses to accept proxy connections on.
    pub listen: Vec<SocketAddr>,
    /// Transparent mode: addresses that receive port 80 traffic redirected
    /// by the router (docs/proxy.md has the iptables rules).
    pub transparent_http: Vec<SocketAddr>,
    /// Transparent mode: addresses that receive redirected port 443 traffic.
    pub transparent_https: Vec<SocketAddr>,
    /// Client networks served (CIDR); every other client gets 403, so the
    /// proxy is never open to the world.
    pub client_networks: Vec<String>,
    /// Where block pages' forms and links point, such as
    /// `http://10.0.0.5:3128`; empty: the proxy address the client reached.
    pub block_page_url: String,
    /// The console's address for staff's "request access" links, such as
    /// `https://sheepdog.school.example`; empty: no link.
    pub console_url: String,
    /// The longest request line (method, target, version) accepted; longer
    /// gets 414.
    pub max_request_line: u32,
    /// The most bytes of request headers (with the request line); more
    /// gets 431.
    pub max_header_bytes: u32,
    /// The most request header fields; more gets 431.
    pub max_headers: u32,
    /// A client that has not sent a whole request head this long after it
    /// started is sent 408 and closed; an idle keep-alive connection is
    /// closed.
    pub header_timeout_ms: u32,
    /// The longest a connection to an origin server may take.
    pub connect_timeout_ms: u32,
    /// How long a tunnel waits for the client's TLS ClientHello before it
    /// decides on the CONNECT host alone.
    pub client_hello_timeout_ms: u32,
    /// How long, after someone chooses to continue past a warning, the
    /// warned site stays open to them on that device.
    pub warning_minutes: u32,
    /// Policy groups whose block page is worded for young pupils.
    pub young_groups: Vec<String>,
    /// Policy groups whose block page is worded for staff (and offers
    /// "request access").
    pub staff_groups: Vec<String>,
    /// Selective TLS inspection (docs/proxy.md): off until the school's
    /// authority is made with `sheepdog ca init` and installed on devices.
    pub inspection: bool,
    /// The inspection authority's certificate; empty:
    /// `inspection-ca.pem` in `data_dir`.
    pub inspection_certificate: PathBuf,
    /// Its private key; empty: `inspection-ca.key` in `data_dir`.
    pub inspection_key: PathBuf,
    /// Hosts inspected besides search engines, YouTube and hosts that lists
    /// name at URL level (each covers its subdomains).
    pub inspect_hosts: Vec<String>,
    /// Hosts never inspected, such as apps that pin their certificates;
    /// this wins over everything else.
    pub never_inspect: Vec<String>,
    /// Extra certificate authorities (PEM) trusted for origins behind
    /// inspected tunnels, besides the public web's roots.
    pub upstream_roots: PathBuf,
    /// Proxy authentication: "none" (identity from the address) or
    /// "basic" (sheepdog accounts, over Proxy-Authorization).
    pub authentication: ProxyAuthentication,
}

/// How the proxy learns who is browsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyAuthentication {
    /// From the client's address, through the identity map.
    #[default]
    None,
    /// HTTP Basic proxy authentication against sheepdog accounts.
    Basic,
}

/// An upstream resolver: `IP:PORT` (UDP), `tcp://IP:PORT`, or
/// `tls://IP:PORT#NAME` (DNS over TLS, RFC 7858, its certificate verified
/// for NAME).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub address: SocketAddr,
    pub transport: UpstreamTransport,
    /// The name a DNS-over-TLS upstream's certificate must carry.
    pub server_name: Option<String>,
}

/// How an upstream is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamTransport {
    /// UDP, retried over TCP when the answer is truncated.
    Udp,
    Tcp,
    /// DNS over TLS.
    Tls,
}

/// What a blocked name gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockAnswer {
    /// NXDOMAIN: the name does not exist.
    Nxdomain,
    /// NOERROR with no records.
    Nodata,
    /// 0.0.0.0 and :: for A and AAAA, no data for other types.
    Null,
    /// The block page's address for A and AAAA, so a browser shows why.
    BlockPage,
}

/// Decision events: retention and the way they reach the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// Events older than this many days are deleted; 0 keeps them for ever.
    pub retention_days: u32,
    /// Where events wait while the database is unavailable; empty:
    /// `spool` in `data_dir`.
    pub spool_dir: PathBuf,
    /// Events queued before new ones are dropped (and counted).
    pub channel_capacity: u32,
    /// Events per database transaction.
    pub batch_size: u32,
    /// The longest an event waits before its batch is written.
    pub flush_ms: u32,
    /// The most the spool may hold on disk, in MiB; past it new events
    /// are dropped (and counted) until replay makes room. 0: no limit.
    pub spool_max_mb: u32,
}

/// What live monitoring reads with, for every group and per group (M6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitoringConfig {
    /// The school's own keyword libraries, added to the shipped ones.
    pub libraries: Vec<PathBuf>,
    /// Concerns below this grade (1-5) are not recorded as alerts.
    pub min_grade: u8,
    /// Groups that read with more libraries or another threshold.
    pub groups: Vec<GroupMonitoringConfig>,
    /// Blocked attempts at the circumvention categories (DNS over HTTPS,
    /// VPN, proxy, iCloud Private Relay) by one person or device that
    /// raise an alert; 0: none.
    pub circumvention_attempts: u32,
    /// Within this many minutes.
    pub circumvention_minutes: u32,
    /// The alert's grade (1-5; 4 and above notify the DSL team at once).
    pub circumvention_grade: u8,
}

/// One group's monitoring: libraries on top of the school's, and its own
/// recording threshold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupMonitoringConfig {
    /// The group's name as the policy file spells it.
    pub name: String,
    #[serde(default)]
    pub libraries: Vec<PathBuf>,
    /// Empty: the `[monitoring]` threshold.
    #[serde(default)]
    pub min_grade: Option<u8>,
}

/// How the DSL team hears of alerts: an email and a webhook call at once
/// for grade 4-5, and a weekly digest email. Emails carry no offending
/// text, only links into the console.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    /// The console's address as the DSL's browser reaches it, for links,
    /// such as `https://sheepdog.school.example`.
    pub console_url: String,
    /// The mail server (submission port with STARTTLS); empty: no email.
    pub smtp_host: String,
    pub smtp_port: u16,
    /// A file holding extra CA certificates (PEM) to trust for the mail
    /// server, for a school's own CA; empty: the public roots only.
    pub smtp_ca_file: PathBuf,
    /// Empty: no authentication.
    pub smtp_username: String,
    /// A file holding the password, so that it stays out of this file.
    pub smtp_password_file: PathBuf,
    /// The sender, such as `sheepdog@school.example`.
    pub from: String,
    /// The DSL team's addresses: every alert email and the digest.
    pub dsl_emails: Vec<String>,
    /// A URL that receives a JSON POST per urgent alert; empty: none.
    pub webhook_url: String,
    /// A file holding a key to sign webhook bodies with (HMAC-SHA256, in
    /// `X-Sheepdog-Signature`); empty: unsigned.
    pub webhook_secret_file: PathBuf,
    /// The weekly digest's day (`monday` … `sunday`) and hour (0-23, in the
    /// school's time zone).
    pub digest_day: String,
    pub digest_hour: u8,
    /// The first retry after a failed delivery (seconds); each later one
    /// waits twice as long, up to `retry_max_secs`.
    pub retry_secs: u32,
    pub retry_max_secs: u32,
}

/// The day names `digest_day` accepts.
pub const DAY_NAMES: &[&str] = &[
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// Plain text for people, JSON lines for log collectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The least severe log level written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// A database URL whose scheme is checked when the file is read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatabaseUrl(String);

/// An IANA time zone name, checked when the file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeZone(pub chrono_tz::Tz);

impl Config {
    /// Reads and checks a configuration file; relative paths in it are
    /// resolved against the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Self::parse(&text, path)?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        config.resolve_relative_to(base);
        Ok(config)
    }

    /// Parses configuration text; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let config: Self =
            toml::from_str(text).map_err(|e| ConfigError::from_toml(origin, text, &e))?;
        config.check(origin, text)?;
        Ok(config)
    }

    /// The database URL in force: the configured one, or the embedded
    /// SQLite file in the data directory.
    pub fn database_url(&self) -> String {
        if self.database.url.0.is_empty() {
            format!(
                "sqlite://{}",
                self.data_dir.join("sheepdog.sqlite").display()
            )
        } else {
            self.database.url.0.clone()
        }
    }

    /// The event spool directory in force.
    pub fn spool_dir(&self) -> PathBuf {
        if self.events.spool_dir.as_os_str().is_empty() {
            self.data_dir.join("spool")
        } else {
            self.events.spool_dir.clone()
        }
    }

    /// The inspection authority's certificate and key files in force.
    pub fn inspection_files(&self) -> (PathBuf, PathBuf) {
        let or = |path: &PathBuf, name: &str| {
            if path.as_os_str().is_empty() {
                self.data_dir.join(name)
            } else {
                path.clone()
            }
        };
        (
            or(&self.proxy.inspection_certificate, "inspection-ca.pem"),
            or(&self.proxy.inspection_key, "inspection-ca.key"),
        )
    }

    fn resolve_relative_to(&mut self, base: &Path) {
        for path in [
            &mut self.proxy.inspection_certificate,
            &mut self.proxy.inspection_key,
            &mut self.proxy.upstream_roots,
            &mut self.dns.upstream_roots,
            &mut self.data_dir,
            &mut self.filtering.policy,
            &mut self.events.spool_dir,
            &mut self.notify.smtp_ca_file,
            &mut self.notify.smtp_password_file,
            &mut self.notify.webhook_secret_file,
        ] {
            if !path.as_os_str().is_empty() && path.is_relative() {
                *path = base.join(&*path);
            }
        }
        let libraries = self.monitoring.libraries.iter_mut().chain(
            self.monitoring
                .groups
                .iter_mut()
                .flat_map(|g| g.libraries.iter_mut()),
        );
        for path in libraries {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }

    /// Checks that concern more than one key.
    fn check(&self, origin: &Path, text: &str) -> Result<(), ConfigError> {
        if self.metrics.enabled && self.metrics.listen == self.console.listen {
            return Err(ConfigError::at_key(
                origin,
                text,
                "metrics.listen",
                "the metrics endpoint and the console cannot share one address",
                "give [metrics] listen a different port from [console] listen",
            ));
        }
        if self.database.max_connections == 0 {
            return Err(ConfigError::at_key(
                origin,
                text,
                "database.max_connections",
                "the pool needs at least one connection",
                "set max_connections to 1 or more (the default is 8)",
            ));
        }
        self.check_dns(origin, text)?;
        self.check_proxy(origin, text)?;
        self.check_guest(origin, text)?;
        self.check_console(origin, text)?;
        self.check_notify(origin, text)?;
        self.check_monitoring(origin, text)?;
        if self.events.channel_capacity == 0 || self.events.batch_size == 0 {
            let key = if self.events.channel_capacity == 0 {
                "events.channel_capacity"
            } else {
                "events.batch_size"
            };
            return Err(ConfigError::at_key(
                origin,
                text,
                key,
                "must be at least 1",
                "use a whole number of 1 or more (defaults: channel_capacity 65536, batch_size 1000)",
            ));
        }
        Ok(())
    }

    fn check_console(&self, origin: &Path, text: &str) -> Result<(), ConfigError> {
        let console = &self.console;
        if console.idle_timeout_minutes == 0 || console.session_lifetime_hours == 0 {
            let key = if console.idle_timeout_minutes == 0 {
                "console.idle_timeout_minutes"
            } else {
                "console.session_lifetime_hours"
            };
            return Err(ConfigError::at_key(
                origin,
                text,
                key,
                "a time-out of 0 would sign everyone out at once",
                "use at least 1 (defaults: idle_timeout_minutes 120, session_lifetime_hours 12)",
            ));
        }
        if let Some(unknown) = console
            .require_two_factor_roles
            .iter()
            .find(|role| !ROLE_NAMES.contains(&role.as_str()))
        {
            return Err(ConfigError::at_key(
                origin,
                text,
                "console.require_two_factor_roles",
                &format!("`{unknown}` is not a role"),
                &format!("use role names from: {}", ROLE_NAMES.join(", ")),
            ));
        }
        let certificate = console.tls_certificate.trim().is_empty();
        let key = console.tls_key.trim().is_empty();
        if certificate != key {
            return Err(ConfigError::at_key(
                origin,
                text,
                if certificate { "console.tls_certificate" } else { "console.tls_key" },
                "a TLS certificate needs its key, and a key its certificate",
                "set both tls_certificate and tls_key to PEM files, or neither for a self-signed certificate",
            ));
        }
        Ok(())
    }

    fn check_monitoring(&self, origin: &Path, text: &str) -> Result<(), ConfigError> {
        let monitoring = &self.monitoring;
        let grades = [
            ("monitoring.min_grade", Some(monitoring.min_grade)),
            (
                "monitoring.circumvention_grade",
                Some(monitoring.circumvention_grade),
            ),
        ]
        .into_iter()
        .chain(
            monitoring
                .groups
                .iter()
                .map(|g| ("monitoring.groups.min_grade", g.min_grade)),
        );
        for (key, grade) in grades {
            if grade.is_some_and(|g| !(1..=5).contains(&g)) {
                return Err(ConfigError::at_key(
                    origin,
                    text,
                    key,
                    "grades run from 1 to 5",
                    "use a whole number from 1 to 5 (the defaults are 2 for min_grade, 4 for circumvention_grade)",
                ));
            }
        }
        if monitoring.circumvention_attempts > 0 && monitoring.circumvention_minutes == 0 {
            return Err(ConfigError::at_key(
                origin,
                text,
                "monitoring.circumvention_minutes",
                "attempts cannot add up within 0 minutes",
                "use a number of minutes such as 10, or circumvention_attempts = 0 for no alerts",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for group in &monitoring.groups {
            if group.name.trim().is_empty() || !seen.insert(group.name.as_str()) {
                return Err(ConfigError::at_key(
                    origin,
                    text,
                    "monitoring.groups.name",
                    &format!("group `{}` is empty or listed twice", group.name),
                    "give each [[monitoring.groups]] the name of one policy group, once",
                ));
            }
        }
        Ok(())
    }

    fn check_notify(&self, origin: &Path, text: &str) -> Result<(), ConfigError> {
        let notify = &self.notify;
        let fail = |key: &str, message: &str, fix: &str| {
            Err(ConfigError::at_key(origin, text, key, message, fix))
        };
        if !notify.smtp_host.is_empty() {
            if notify.from.is_empty() || !notify.from.contains('@') {
                return fail(
                    "notify.from",
                    "email needs a sender address",
                    "set from = \"sheepdog@school.example\"",
                );
            }
            if notify.dsl_emails.is_empty() {
                return fail(
                    "notify.dsl_emails",
                    "email is configured but goes to no one",
                    "list the DSL team, for example dsl_emails = [\"dsl@school.example\"]",
                );
            }
        }
        if let Some(bad) = notify.dsl_emails.iter().find(|e| !e.contains('@')) {
            return fail(
                "notify.dsl_emails",
                &format!("`{bad}` is not an email address"),
                "use addresses such as \"dsl@school.example\"",
            );
        }
        let url = &notify.webhook_url;
        if !(url.is_empty() || url.starts_with("https://") || url.starts_with("http://")) {
            return fail(
                "notify.webhook_url",
                "not an http(s) URL",
                "use a URL such as \"https://alerts.school.example/sheepdog\"",
            );
        }
        if !DAY_NAMES.contains(&notify.digest_day.as_str()) {
            return fail(
                "notify.digest_day",
                &format!("`{}` is not a day", notify.digest_day),
                &format!("use one of: {}", DAY_NAMES.join(", ")),
            );
        }
        if notify.digest_hour > 23 {
            return fail(
                "notify.digest_hour",
                "an hour is 0-23",
                "use a whole number from 0 to 23, for example 7",
            );
        }
        if notify.retry_secs == 0 || notify.retry_max_secs < notify.retry_secs {
            return fail(
                "notify.retry_secs",
                "retries need a first wait of 1 s or more, and a longest wait no shorter",
                "use whole numbers of seconds, for example retry_secs = 60 and retry_max_secs = 3600",
            );
        }
        Ok(())
    }

    fn check_dns(&self, origin: &Path, text: &str) -> Result<(), ConfigError> {
        let dns = &self.dns;
        let fail = |key: &str, message: &str, fix: &str| {
            Err(ConfigError::at_key(origin, text, key, message, fix))
        };
        if dns.enabled && dns.listen.is_empty() {
            return fail(
                "dns.listen",
                "the DNS server is enabled but has no address to listen on",
                "add an address such as \"127.0.0.1:53\", or set enabled = false",
            );
        }
        if dns.timeout_ms == 0 || dns.attempt_timeout_ms == 0 {
            return fail(
                if dns.timeout_ms == 0 { "dns.timeout_ms" } else { "dns.attempt_timeout_ms" },
                "a timeout of 0 would fail every forwarded query",
                "use a number of milliseconds such as 2000 (timeout_ms) or 700 (attempt_timeout_ms)",
            );
        }
        if dns.cache_min_ttl > dns.cache_max_ttl {
            return fail(
                "dns.cache_min_ttl",
                "cache_min_ttl is larger than cache_max_ttl",
                "make cache_min_ttl at most cache_max_ttl (defaults 0 and 86400)",
            );
        }
        if dns.health_check_secs > 0 && !is_dns_name(&dns.health_check_name) {
            return fail(
                "dns.health_check_name",
                &format!("`{}` is not a DNS name", dns.health_check_name),
                "use \".\" (the root, the default) or a name such as \"example.com\"",
            );
        }
        if dns.default_group.trim().is_empty() {
            return fail(
                "dns.default_group",
                "unknown clients need a policy group",
                "name a group from the policy file, for example \"guest\"",
            );
        }
        for (key, value, v6, empty) in [
            (
                "dns.block_page_ipv4",
                &dns.block_page_ipv4,
                false,
                "0.0.0.0",
            ),
            ("dns.block_page_ipv6", &dns.block_page_ipv6, true, "::"),
            (
                "dns.url_rules_proxy_ipv4",
                &dns.url_rules_proxy_ipv4,
                false,
                "none",
            ),
            (
                "dns.url_rules_proxy_ipv6",
                &dns.url_rules_proxy_ipv6,
                true,
                "none",
            ),
        ] {
            let ok = value.is_empty()
                || match value.parse::<std::net::IpAddr>() {
                    Ok(ip) => ip.is_ipv6() == v6,
                    Err(_) => false,
                };
            if !ok {
                let example = if v6 { "fd00::53" } else { "10.0.0.5" };
                return fail(
                    key,
                    &format!("`{value}` is not an IPv{} address", if v6 { 6 } else { 4 }),
                    &format!(
                        "use an IPv{} address such as \"{example}\", or \"\" for {empty}",
                        if v6 { 6 } else { 4 }
                    ),
                );
            }
        }
        Ok(())
    }
}

/// A name a DNS question can carry: `.`, or labels of 1-63 letters,
/// digits, `-` and `_`, 253 characters at most.
fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    name.is_empty()
        || (name.len() <= 253
            && name.split('.').all(|label| {
                (1..=63).contains(&label.len())
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            }))
}

impl Config {
    fn check_guest(&self, origin: &Path, text: &str) -> Result<(), ConfigError> {
        let guest = &self.guest;
        let fail = |key: &str, message: &str, fix: &str| {
            Err(ConfigError::at_key(origin, text, key, message, fix))
        };
        if let Some(bad) = guest
            .networks
            .iter()
            .find(|n| n.parse::<ipnet::IpNet>().is_err() && n.parse::<std::net::IpAddr>().is_err())
        {
            return fail(
                "guest.networks",
                &format!("`{bad}` is not an IP address or network"),
                "use CIDR networks such as [\"10.9.0.0/16\"]",
            );
        }
        if guest.group.trim().is_empty() || guest.group.trim() == "captive" {
            return fail(
                "guest.group",
                &format!("`{}` cannot be the group guests join", guest.group),
                "name the policy group for guests who have accepted, such as \"guest\"",
            );
        }
        if !(1..=24 * 7).contains(&guest.acceptance_hours) {
            return fail(
                "guest.acceptance_hours",
                &format!(
                    "{} hours is not how long an acceptance can last",
                    guest.acceptance_hours
                ),
                "use between 1 and 168 hours (a week); 12 covers a visitor's day",
            );
        }
        Ok(())
    }

    fn check_proxy(&self, origin: &Path, text: &str) -> Result<(), ConfigError> {
        let proxy = &self.proxy;
        let fail = |key: &str, message: &str, fix: &str| {
            Err(ConfigError::at_key(origin, text, key, message, fix))
        };
        if proxy.enabled && proxy.listen.is_empty() {
            return fail(
                "proxy.listen",
                "the proxy is enabled but has no address to listen on",
                "add an address such as \"127.0.0.1:3128\", or set enabled = false",
            );
        }
        if let Some(bad) = proxy
            .client_networks
            .iter()
            .find(|n| n.parse::<ipnet::IpNet>().is_err() && n.parse::<std::net::IpAddr>().is_err())
        {
            return fail(
                "proxy.client_networks",
                &format!("`{bad}` is not an IP address or network"),
                "use CIDR networks such as [\"10.0.0.0/16\", \"127.0.0.0/8\", \"::1/128\"]",
            );
        }
        for (key, value) in [
            ("proxy.block_page_url", &proxy.block_page_url),
            ("proxy.console_url", &proxy.console_url),
        ] {
            let ok = value.is_empty()
                || ((value.starts_with("http://") || value.starts_with("https://"))
                    && !value.contains(char::is_whitespace));
            if !ok {
                return fail(
                    key,
                    &format!("`{value}` is not an http:// or https:// URL"),
                    "use a URL such as \"http://10.0.0.5:3128\", or \"\" for the default",
                );
            }
        }
        let hours = self.filtering.request_max_hours;
        if !(1..=24 * 14).contains(&hours) {
            return fail(
                "filtering.request_max_hours",
                &format!("{hours} hours is not a time frame a request can ask for"),
                "use between 1 and 336 hours (two weeks); 8 covers a school day",
            );
        }
        let seconds = self.filtering.list_check_seconds;
        if !(1..=86_400).contains(&seconds) {
            return fail(
                "filtering.list_check_seconds",
                &format!("{seconds} seconds is not a usable interval"),
                "use between 1 and 86400 seconds; 60 keeps a list update within a minute",
            );
        }
        for (key, value, least) in [
            ("proxy.max_request_line", proxy.max_request_line, 256),
            ("proxy.max_header_bytes", proxy.max_header_bytes, 1024),
            ("proxy.max_headers", proxy.max_headers, 8),
            ("proxy.header_timeout_ms", proxy.header_timeout_ms, 100),
            ("proxy.connect_timeout_ms", proxy.connect_timeout_ms, 100),
            (
                "proxy.client_hello_timeout_ms",
                proxy.client_hello_timeout_ms,
                100,
            ),
            ("proxy.warning_minutes", proxy.warning_minutes, 1),
        ] {
            if value < least {
                return fail(
                    key,
                    &format!("{value} is too small for real browsers"),
                    &format!(
                        "use at least {least}; see dist/sheepdog.example.toml for the default"
                    ),
                );
            }
        }
        Ok(())
    }
}

impl DatabaseUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("/var/lib/sheepdog"),
            database: DatabaseConfig::default(),
            log: LogConfig::default(),
            console: ConsoleConfig::default(),
            metrics: MetricsConfig::default(),
            school: SchoolConfig::default(),
            filtering: FilteringConfig::default(),
            dns: DnsConfig::default(),
            proxy: ProxyConfig::default(),
            guest: GuestConfig::default(),
            events: EventsConfig::default(),
            notify: NotifyConfig::default(),
            monitoring: MonitoringConfig::default(),
        }
    }
}

impl Default for MonitoringConfig {
    fn default() -> Self {
        Self {
            libraries: Vec::new(),
            min_grade: 2,
            groups: Vec::new(),
            circumvention_attempts: 5,
            circumvention_minutes: 10,
            circumvention_grade: 4,
        }
    }
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            console_url: String::new(),
            smtp_host: String::new(),
            smtp_port: 587,
            smtp_ca_file: PathBuf::new(),
            smtp_username: String::new(),
            smtp_password_file: PathBuf::new(),
            from: String::new(),
            dsl_emails: Vec::new(),
            webhook_url: String::new(),
            webhook_secret_file: PathBuf::new(),
            digest_day: "monday".to_string(),
            digest_hour: 7,
            retry_secs: 60,
            retry_max_secs: 3600,
        }
    }
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 53))],
            upstreams: Vec::new(),
            upstream_roots: PathBuf::new(),
            timeout_ms: 2000,
            attempt_timeout_ms: 700,
            cache_size: 100_000,
            cache_min_ttl: 0,
            cache_max_ttl: 86_400,
            negative_ttl_max: 900,
            block_answer: BlockAnswer::Null,
            block_page_ipv4: String::new(),
            block_page_ipv6: String::new(),
            url_rules_proxy_ipv4: String::new(),
            url_rules_proxy_ipv6: String::new(),
            block_ttl: 60,
            default_group: "guest".to_string(),
            identity_refresh_secs: 60,
            health_check_secs: 10,
            health_check_name: ".".to_string(),
            sign_in_secs: 900,
        }
    }
}

impl Default for GuestConfig {
    fn default() -> Self {
        Self {
            networks: Vec::new(),
            group: "guest".to_string(),
            acceptance_hours: 12,
            school: String::new(),
        }
    }
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 3128))],
            transparent_http: Vec::new(),
            transparent_https: Vec::new(),
            client_networks: vec!["127.0.0.0/8".to_string(), "::1/128".to_string()],
            block_page_url: String::new(),
            console_url: String::new(),
            max_request_line: 8192,
            max_header_bytes: 32_768,
            max_headers: 100,
            header_timeout_ms: 10_000,
            connect_timeout_ms: 5000,
            client_hello_timeout_ms: 5000,
            warning_minutes: 60,
            young_groups: vec![
                "early_years".to_string(),
                "ks1".to_string(),
                "ks2".to_string(),
            ],
            staff_groups: vec!["staff".to_string()],
            inspection: false,
            inspection_certificate: PathBuf::new(),
            inspection_key: PathBuf::new(),
            inspect_hosts: Vec::new(),
            never_inspect: Vec::new(),
            upstream_roots: PathBuf::new(),
            authentication: ProxyAuthentication::None,
        }
    }
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            retention_days: 365,
            spool_dir: PathBuf::new(),
            channel_capacity: 65_536,
            batch_size: 1000,
            flush_ms: 1000,
            spool_max_mb: 2048,
        }
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.transport {
            UpstreamTransport::Udp => write!(f, "{}", self.address),
            UpstreamTransport::Tcp => write!(f, "tcp://{}", self.address),
            UpstreamTransport::Tls => write!(
                f,
                "tls://{}#{}",
                self.address,
                self.server_name.as_deref().unwrap_or("")
            ),
        }
    }
}

impl std::str::FromStr for Upstream {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut server_name = None;
        let (transport, rest) = if let Some(rest) = text.strip_prefix("tcp://") {
            (UpstreamTransport::Tcp, rest)
        } else if let Some(rest) = text.strip_prefix("udp://") {
            (UpstreamTransport::Udp, rest)
        } else if let Some(rest) = text.strip_prefix("tls://") {
            let Some((address, name)) = rest.split_once('#').filter(|(_, n)| !n.is_empty()) else {
                return Err(format!(
                    "`{text}`: a DNS-over-TLS upstream needs the name its certificate carries, \
                     as in \"tls://1.1.1.1:853#cloudflare-dns.com\""
                ));
            };
            server_name = Some(name.to_ascii_lowercase());
            (UpstreamTransport::Tls, address)
        } else if text.starts_with("https://") {
            return Err(format!(
                "`{text}`: DNS-over-HTTPS upstreams are not supported; use DNS over TLS \
                 (\"tls://IP:853#NAME\")"
            ));
        } else {
            (UpstreamTransport::Udp, text)
        };
        let address = rest
            .parse::<SocketAddr>()
            .map_err(|_| format!("`{text}` is not an upstream resolver address"))?;
        Ok(Self {
            address,
            transport,
            server_name,
        })
    }
}

impl Serialize for Upstream {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Upstream {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: DatabaseUrl::default(),
            max_connections: 8,
            busy_timeout_ms: 5000,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: LogLevel::Info,
        }
    }
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            idle_timeout_minutes: 120,
            session_lifetime_hours: 12,
            require_two_factor_roles: [
                "headteacher",
                "dsl",
                "deputy_dsl",
                "technician",
                "trust_administrator",
            ]
            .iter()
            .map(|role| role.to_string())
            .collect(),
            tls: true,
            tls_certificate: String::new(),
            tls_key: String::new(),
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9153)),
        }
    }
}

impl Default for SchoolConfig {
    fn default() -> Self {
        Self {
            timezone: TimeZone(chrono_tz::Europe::London),
        }
    }
}

impl Default for FilteringConfig {
    fn default() -> Self {
        Self {
            policy: PathBuf::from("policy.toml"),
            request_max_hours: 8,
            list_check_seconds: 60,
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        })
    }
}

impl Serialize for DatabaseUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for DatabaseUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let url = String::deserialize(deserializer)?;
        let known = ["sqlite:", "postgres:", "postgresql:"];
        if url.is_empty() || known.iter().any(|scheme| url.starts_with(scheme)) {
            Ok(Self(url))
        } else {
            Err(serde::de::Error::custom(format!(
                "`{url}` is not a sqlite:// or postgres:// URL"
            )))
        }
    }
}

impl Serialize for TimeZone {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0.name())
    }
}

impl<'de> Deserialize<'de> for TimeZone {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse::<chrono_tz::Tz>()
            .map(TimeZone)
            .map_err(|_| serde::de::Error::custom(format!("`{name}` is not an IANA time zone")))
    }
}

#[cfg(test)]
mod tests;
