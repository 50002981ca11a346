use std::collections::BTreeSet;
use std::path::Path;

use super::*;

const EXAMPLE: &str = include_str!("../../../dist/sheepdog.example.toml");

fn leaf_keys(prefix: &str, table: &toml::Table, out: &mut BTreeSet<String>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(inner) => leaf_keys(&path, inner, out),
            _ => {
                out.insert(path);
            }
        }
    }
}

fn invalid(text: &str) -> (usize, String, String, String) {
    match Config::parse(text, Path::new("site.toml")) {
        Err(ConfigError::Invalid {
            line,
            key,
            message,
            fix,
            ..
        }) => (line, key, message, fix),
        other => panic!("expected an invalid-config error, got {other:?}"),
    }
}

#[test]
fn example_file_lists_every_key_with_its_default() {
    let parsed = Config::parse(EXAMPLE, Path::new("sheepdog.example.toml")).unwrap();
    assert_eq!(parsed, Config::default());

    let mut documented = BTreeSet::new();
    leaf_keys("", &toml::from_str(EXAMPLE).unwrap(), &mut documented);
    let mut defaults = BTreeSet::new();
    let serialised = toml::to_string(&Config::default()).unwrap();
    leaf_keys("", &toml::from_str(&serialised).unwrap(), &mut defaults);
    assert_eq!(
        documented, defaults,
        "dist/sheepdog.example.toml is out of step"
    );
}

#[test]
fn empty_file_is_the_default() {
    assert_eq!(
        Config::parse("", Path::new("x.toml")).unwrap(),
        Config::default()
    );
}

#[test]
fn unknown_key_names_line_key_and_nearest_spelling() {
    let (line, key, message, fix) =
        invalid("data_dir = \"/tmp\"\n\n[console]\nlistn = \"127.0.0.1:1\"\n");
    assert_eq!(line, 4);
    assert_eq!(key, "console.listn");
    assert!(message.contains("unknown field"), "{message}");
    assert!(fix.contains("did you mean `listen`"), "{fix}");
}

#[test]
fn unknown_section_is_refused() {
    let (line, key, _, fix) = invalid("[consol]\nlisten = \"127.0.0.1:1\"\n");
    assert_eq!(line, 1);
    assert_eq!(key, "consol");
    assert!(fix.contains("`console`"), "{fix}");
}

#[test]
fn bad_address_names_key_and_example() {
    let (line, key, _, fix) = invalid("[metrics]\nenabled = true\nlisten = \"localhost\"\n");
    assert_eq!(line, 3);
    assert_eq!(key, "metrics.listen");
    assert!(fix.contains("IP:PORT"), "{fix}");
}

#[test]
fn bad_time_zone_and_database_url_are_refused() {
    let (_, key, message, _) = invalid("[school]\ntimezone = \"Europe/Londn\"\n");
    assert_eq!(key, "school.timezone");
    assert!(message.contains("Europe/Londn"), "{message}");

    let (_, key, _, fix) = invalid("[database]\nurl = \"mysql://x\"\n");
    assert_eq!(key, "database.url");
    assert!(fix.contains("postgres://"), "{fix}");
}

#[test]
fn wrong_type_is_refused() {
    let (line, key, _, fix) = invalid("[database]\nmax_connections = \"eight\"\n");
    assert_eq!((line, key.as_str()), (2, "database.max_connections"));
    assert!(fix.contains("whole number"), "{fix}");
}

#[test]
fn shared_console_and_metrics_address_is_refused() {
    let text = "[console]\nlisten = \"127.0.0.1:9000\"\n[metrics]\nlisten = \"127.0.0.1:9000\"\n";
    let (line, key, _, _) = invalid(text);
    assert_eq!((line, key.as_str()), (4, "metrics.listen"));
}

#[test]
fn relative_paths_follow_the_file() {
    let dir = std::env::temp_dir().join(format!("sheepdog-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sheepdog.toml");
    std::fs::write(&file, "data_dir = \"data\"\n").unwrap();
    let config = Config::load(&file).unwrap();
    assert_eq!(config.data_dir, dir.join("data"));
    assert_eq!(config.filtering.policy, dir.join("policy.toml"));
    assert!(config.database_url().ends_with("data/sheepdog.sqlite"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn dns_upstreams_parse_and_bad_ones_name_the_key() {
    let config = Config::parse(
        "[dns]\nupstreams = [\"127.0.0.1:5353\", \"tcp://[::1]:53\"]\n",
        Path::new("x.toml"),
    )
    .unwrap();
    assert_eq!(config.dns.upstreams.len(), 2);
    assert_eq!(config.dns.upstreams[1].transport, UpstreamTransport::Tcp);
    assert_eq!(config.dns.upstreams[1].to_string(), "tcp://[::1]:53");

    let (line, key, message, fix) = invalid("[dns]\nupstreams = [\"resolver.example\"]\n");
    assert_eq!((line, key.as_str()), (2, "dns.upstreams"));
    assert!(message.contains("resolver.example"), "{message}");
    assert!(fix.contains("tcp://"), "{fix}");

    let config = Config::parse(
        "[dns]\nupstreams = [\"tls://1.1.1.1:853#Cloudflare-DNS.com\"]\n",
        Path::new("x.toml"),
    )
    .unwrap();
    assert_eq!(config.dns.upstreams[0].transport, UpstreamTransport::Tls);
    assert_eq!(
        config.dns.upstreams[0].server_name.as_deref(),
        Some("cloudflare-dns.com")
    );
    assert_eq!(
        config.dns.upstreams[0].to_string(),
        "tls://1.1.1.1:853#cloudflare-dns.com"
    );
    let (_, key, message, _) = invalid("[dns]\nupstreams = [\"tls://1.1.1.1:853\"]\n");
    assert_eq!(key, "dns.upstreams");
    assert!(
        message.contains("name its certificate carries"),
        "{message}"
    );
}

#[test]
fn dns_values_are_checked_with_fixes() {
    let (_, key, _, fix) = invalid("[dns]\nblock_answer = \"refuse\"\n");
    assert_eq!(key, "dns.block_answer");
    assert!(fix.contains("nxdomain"), "{fix}");

    let (line, key, _, fix) = invalid("[dns]\nblock_page_ipv4 = \"::1\"\n");
    assert_eq!((line, key.as_str()), (2, "dns.block_page_ipv4"));
    assert!(fix.contains("IPv4"), "{fix}");

    let (line, key, _, fix) = invalid("[dns]\nurl_rules_proxy_ipv6 = \"10.0.0.5\"\n");
    assert_eq!((line, key.as_str()), (2, "dns.url_rules_proxy_ipv6"));
    assert!(fix.contains("IPv6") && fix.contains("for none"), "{fix}");

    let (_, key, _, _) = invalid("[dns]\ncache_min_ttl = 600\ncache_max_ttl = 60\n");
    assert_eq!(key, "dns.cache_min_ttl");

    let (_, key, _, fix) = invalid("[dns]\ntimeout_ms = 0\n");
    assert_eq!(key, "dns.timeout_ms");
    assert!(fix.contains("milliseconds"), "{fix}");

    let (_, key, _, _) = invalid("[events]\nchannel_capacity = 0\n");
    assert_eq!(key, "events.channel_capacity");
}

#[test]
fn spool_defaults_to_the_data_directory() {
    let config = Config::parse("data_dir = \"/srv/sd\"\n", Path::new("x.toml")).unwrap();
    assert_eq!(config.spool_dir(), Path::new("/srv/sd/spool"));
}

#[test]
fn proxy_values_are_checked_with_fixes() {
    let (line, key, message, fix) = invalid("[proxy]\nclient_networks = [\"10.0.0.0/33\"]\n");
    assert_eq!((line, key.as_str()), (2, "proxy.client_networks"));
    assert!(message.contains("10.0.0.0/33"), "{message}");
    assert!(fix.contains("CIDR"), "{fix}");

    let (_, key, _, fix) = invalid("[proxy]\nblock_page_url = \"10.0.0.5:3128\"\n");
    assert_eq!(key, "proxy.block_page_url");
    assert!(fix.contains("http://"), "{fix}");

    let (line, key, _, fix) = invalid("[guest]\nnetworks = [\"10.9.0.0/33\"]\n");
    assert_eq!((line, key.as_str()), (2, "guest.networks"));
    assert!(fix.contains("10.9.0.0/16"), "{fix}");
    let (_, key, _, _) = invalid("[guest]\ngroup = \"captive\"\n");
    assert_eq!(key, "guest.group");
    let (_, key, _, fix) = invalid("[guest]\nacceptance_hours = 0\n");
    assert_eq!(key, "guest.acceptance_hours");
    assert!(fix.contains("168"), "{fix}");
    let (_, key, _, fix) = invalid("[proxy]\nmax_headers = 2\n");
    assert_eq!(key, "proxy.max_headers");
    assert!(fix.contains("at least 8"), "{fix}");

    let (_, key, _, fix) = invalid("[proxy]\nheader_timeout_ms = \"ten\"\n");
    assert_eq!(key, "proxy.header_timeout_ms");
    assert!(fix.contains("milliseconds"), "{fix}");

    let (_, key, _, _) = invalid("[proxy]\nenabled = true\nlisten = []\n");
    assert_eq!(key, "proxy.listen");

    let parsed = Config::parse(
        "[proxy]\nenabled = true\nclient_networks = [\"10.0.0.0/16\", \"192.0.2.7\"]\n",
        Path::new("x.toml"),
    )
    .unwrap();
    assert!(parsed.proxy.enabled);
}

#[test]
fn notify_settings_are_checked_with_fixes() {
    let (_, key, _, fix) = invalid("[notify]\nsmtp_host = \"smtp.school.example\"\n");
    assert_eq!(key, "notify.from");
    assert!(fix.contains("sheepdog@"), "{fix}");
    let (_, key, message, _) = invalid(
        "[notify]\nsmtp_host = \"smtp.school.example\"\nfrom = \"sheepdog@school.example\"\n",
    );
    assert_eq!(key, "notify.dsl_emails");
    assert!(message.contains("no one"), "{message}");
    let (line, key, _, fix) = invalid("[notify]\ndigest_day = \"funday\"\n");
    assert_eq!((line, key.as_str()), (2, "notify.digest_day"));
    assert!(fix.contains("monday"), "{fix}");
    let (_, key, _, _) = invalid("[notify]\nwebhook_url = \"ftp://x\"\n");
    assert_eq!(key, "notify.webhook_url");
    let (_, key, _, fix) = invalid("[notify]\nsmtp_port = \"587\"\n");
    assert_eq!(key, "notify.smtp_port");
    assert!(fix.contains("587"), "{fix}");
}

#[test]
fn monitoring_groups_are_checked_and_paths_resolved() {
    let text = "[monitoring]\nlibraries = [\"school.toml\"]\n\n[[monitoring.groups]]\nname = \"staff\"\nlibraries = [\"staff.toml\"]\nmin_grade = 3\n";
    let mut config = Config::parse(text, Path::new("site.toml")).unwrap();
    config.resolve_relative_to(Path::new("/etc/sheepdog"));
    assert_eq!(
        config.monitoring.libraries,
        vec![PathBuf::from("/etc/sheepdog/school.toml")]
    );
    assert_eq!(config.monitoring.groups[0].min_grade, Some(3));
    assert_eq!(
        config.monitoring.groups[0].libraries,
        vec![PathBuf::from("/etc/sheepdog/staff.toml")]
    );
    let (_, key, _, fix) = invalid("[monitoring]\nmin_grade = 9\n");
    assert_eq!(key, "monitoring.min_grade");
    assert!(fix.contains("1 to 5"), "{fix}");
    let (_, key, message, _) = invalid(
        "[[monitoring.groups]]\nname = \"staff\"\n\n[[monitoring.groups]]\nname = \"staff\"\n",
    );
    assert_eq!(key, "monitoring.groups.name");
    assert!(message.contains("twice"), "{message}");
    let (_, key, _, _) = invalid("[monitoring]\ncircumvention_grade = 0\n");
    assert_eq!(key, "monitoring.circumvention_grade");
    let (_, key, _, fix) = invalid("[monitoring]\ncircumvention_minutes = 0\n");
    assert_eq!(key, "monitoring.circumvention_minutes");
    assert!(fix.contains("circumvention_attempts = 0"), "{fix}");
}

#[test]
fn a_health_check_name_must_be_a_dns_name() {
    let (_, key, message, _) = invalid("[dns]\nhealth_check_name = \"not a name\"\n");
    assert_eq!(key, "dns.health_check_name");
    assert!(message.contains("not a DNS name"), "{message}");
    for good in [".", "example.com", "example.com.", "_probe.school.invalid"] {
        let text = format!("[dns]\nhealth_check_name = \"{good}\"\n");
        assert!(
            Config::parse(&text, Path::new("site.toml")).is_ok(),
            "{good}"
        );
    }
    // Off, the name is not used and not checked.
    let text = "[dns]\nhealth_check_secs = 0\nhealth_check_name = \"..\"\n";
    assert!(Config::parse(text, Path::new("site.toml")).is_ok());
}

#[test]
fn a_tls_certificate_needs_its_key() {
    let (line, key, message, fix) =
        invalid("[console]\ntls_certificate = \"/etc/sheepdog/console.crt\"\n");
    // The missing key is placed at its section's heading.
    assert_eq!((line, key.as_str()), (1, "console.tls_key"));
    assert!(message.contains("needs its key"), "{message}");
    assert!(fix.contains("tls_certificate and tls_key"), "{fix}");
    let (_, _, _, fix) = invalid("[console]\ntls = \"yes\"\n");
    assert!(fix.contains("true"), "{fix}");
}
