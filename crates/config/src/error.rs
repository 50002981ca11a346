use std::path::{Path, PathBuf};

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: `{key}`: {message}\n  fix: {fix}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        /// The dotted key, such as `console.listen`.
        key: String,
        message: String,
        fix: String,
    },
}

impl ConfigError {
    pub(crate) fn from_toml(path: &Path, text: &str, error: &toml::de::Error) -> Self {
        let offset = error.span().map_or(0, |span| span.start);
        let (line, column) = line_and_column(text, offset);
        let message = error.message().trim().to_string();
        let key = match unknown_field(&message) {
            Some(field) => qualify(text, offset, field),
            None => key_at(text, offset),
        };
        let fix = fix_for(&key, &message);
        Self::Invalid {
            path: path.to_path_buf(),
            line,
            column,
            key,
            message,
            fix,
        }
    }

    /// An error about a key that parsed but is wrong with respect to others.
    pub(crate) fn at_key(path: &Path, text: &str, key: &str, message: &str, fix: &str) -> Self {
        let (line, column) = find_key(text, key).unwrap_or((1, 1));
        Self::Invalid {
            path: path.to_path_buf(),
            line,
            column,
            key: key.to_string(),
            message: message.to_string(),
            fix: fix.to_string(),
        }
    }
}

fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

/// The `[section]` in force at `offset`, as a dotted prefix.
fn section_at(text: &str, offset: usize) -> Option<String> {
    let before = &text[..offset.min(text.len())];
    before.lines().rev().find_map(|line| {
        let line = line.trim();
        line.strip_prefix('[')
            .and_then(|rest| rest.split(']').next())
            .map(|name| name.trim_matches(['[', ' ']).to_string())
    })
}

fn qualify(text: &str, offset: usize, field: &str) -> String {
    // A misspelt section header is itself reported at the header, so only
    // keys below a header take its name.
    let line_start = text[..offset.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let on_header = text[line_start..].trim_start().starts_with('[');
    match section_at(text, line_start) {
        Some(section) if !on_header => format!("{section}.{field}"),
        _ => field.to_string(),
    }
}

/// The dotted key whose value or name sits at `offset`.
fn key_at(text: &str, offset: usize) -> String {
    let line_start = text[..offset.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    match line.split_once('=') {
        Some((key, _)) => qualify(text, line_start, key.trim()),
        None => section_at(text, offset + 1).unwrap_or_else(|| line.trim().to_string()),
    }
}

fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

fn expected_fields(message: &str) -> Vec<&str> {
    message
        .split_once("expected")
        .map(|(_, list)| list.split('`').skip(1).step_by(2).collect())
        .unwrap_or_default()
}

fn fix_for(key: &str, message: &str) -> String {
    if let Some(field) = unknown_field(message) {
        let known = expected_fields(message);
        let nearest = known
            .iter()
            .min_by_key(|candidate| strsim::levenshtein(field, candidate))
            .filter(|candidate| strsim::levenshtein(field, candidate) <= 2);
        return match nearest {
            Some(name) => format!(
                "did you mean `{name}`? Known keys here: {}",
                known.join(", ")
            ),
            None => format!(
                "remove `{field}`; the keys accepted here are: {}",
                known.join(", ")
            ),
        };
    }
    let leaf = key.rsplit('.').next().unwrap_or(key);
    let hint = match leaf {
        "listen" => "use IP:PORT, for example 127.0.0.1:8080",
        "timezone" => "use an IANA time zone name, for example Europe/London",
        "url" => "leave it empty for embedded SQLite, or use sqlite:///var/lib/sheepdog/sheepdog.sqlite or postgres://sheepdog@127.0.0.1:5432/sheepdog",
        "format" => "use \"text\" or \"json\"",
        "level" => "use one of \"error\", \"warn\", \"info\", \"debug\", \"trace\"",
        "enabled" => "use true or false, without quotes",
        "max_connections" | "busy_timeout_ms" => "use a whole number without quotes",
        "upstreams" => "use a list such as [\"127.0.0.1:5353\", \"tcp://192.0.2.53:53\"] (IP:PORT for UDP, tcp://IP:PORT for TCP)",
        "timeout_ms" | "attempt_timeout_ms" | "flush_ms" => "use a whole number of milliseconds without quotes, for example 2000",
        "cache_size" | "cache_min_ttl" | "cache_max_ttl" | "negative_ttl_max" | "block_ttl"
        | "identity_refresh_secs" | "retention_days" | "channel_capacity" | "batch_size" | "spool_max_mb" => {
            "use a whole number without quotes"
        }
        "block_answer" => "use one of \"null\" (0.0.0.0 and ::), \"nxdomain\", \"nodata\" or \"block_page\"",
        "block_page_ipv4" => "use an IPv4 address such as \"10.0.0.5\", or \"\" for 0.0.0.0",
        "block_page_ipv6" => "use an IPv6 address such as \"fd00::53\", or \"\" for ::",
        "url_rules_proxy_ipv4" => "use the proxy's IPv4 address such as \"10.0.0.5\", or \"\" for none",
        "url_rules_proxy_ipv6" => "use the proxy's IPv6 address such as \"fd00::5\", or \"\" for none",
        "default_group" => "name a group from the policy file, for example \"guest\"",
        "spool_dir" => "use a directory path, or \"\" for DATA_DIR/spool",
        "client_networks" => "use a list of CIDR networks such as [\"10.0.0.0/16\", \"127.0.0.0/8\", \"::1/128\"]",
        "block_page_url" => "use an http:// or https:// URL such as \"http://10.0.0.5:3128\", or \"\" for the default",
        "max_request_line" | "max_header_bytes" | "max_headers" => "use a whole number without quotes, for example 8192",
        "header_timeout_ms" | "connect_timeout_ms" | "client_hello_timeout_ms" => "use a whole number of milliseconds without quotes, for example 10000",
        "warning_minutes" => "use a whole number of minutes without quotes, for example 60",
        "young_groups" | "staff_groups" => "use a list of policy group names such as [\"ks1\", \"ks2\"]",
        "console_url" => "use the console's address as staff reach it, an http:// or https:// URL such as \"https://sheepdog.school.example\", or \"\" for the default",
        "smtp_host" => "use the mail server's name, for example \"smtp.school.example\", or \"\" for no email",
        "smtp_port" => "use a port number without quotes, for example 587",
        "smtp_username" => "use the mail account's name, or \"\" for no authentication",
        "smtp_ca_file" | "smtp_password_file" | "webhook_secret_file" => "use a file path, or \"\" for none",
        "from" => "use an email address, for example \"sheepdog@school.example\"",
        "dsl_emails" => "use a list of addresses, for example [\"dsl@school.example\"]",
        "webhook_url" => "use an http(s) URL, or \"\" for no webhook",
        "digest_day" => "use a day name such as \"monday\"",
        "digest_hour" => "use a whole number from 0 to 23",
        "retry_secs" | "retry_max_secs" => "use a whole number of seconds without quotes",
        "libraries" => "use a list of keyword library files, for example [\"libraries/school.toml\"]",
        "min_grade" => "use a whole number from 1 to 5 without quotes",
        "groups" => "use [[monitoring.groups]] tables with name, libraries and min_grade",
        "name" => "use the group's name from the policy file, for example \"staff\"",
        "tls" => "use true (HTTPS) or false (plain HTTP behind a TLS-terminating proxy), without quotes",
        "tls_certificate" | "tls_key" => "use the path of a PEM file, or \"\" for both to have a self-signed certificate made in DATA_DIR",
        _ => "see dist/sheepdog.example.toml for this key's default and accepted values",
    };
    hint.to_string()
}

fn find_key(text: &str, dotted: &str) -> Option<(usize, usize)> {
    let (section, leaf) = dotted.rsplit_once('.').unwrap_or(("", dotted));
    let mut current = String::new();
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_prefix('[') {
            current = name.trim_end_matches(']').trim().to_string();
        } else if current == section {
            if let Some((key, _)) = trimmed.split_once('=') {
                if key.trim() == leaf {
                    return Some((index + 1, line.len() - line.trim_start().len() + 1));
                }
            }
        }
    }
    None
}
