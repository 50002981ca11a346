//! Line parsers for the hosts, plain domain, Adblock, regex and URL formats,
//! and format detection.

use std::borrow::Cow;
use std::net::IpAddr;

use super::{Entry, LineOutcome, ListFormat, MatchMode, RegexTarget};
use crate::name::normalize_name;
use crate::url::parse_url;

/// Names that hosts files list for the machine itself, not as rules.
const HOSTS_SELF_NAMES: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "local",
    "broadcasthost",
    "ip6-localhost",
    "ip6-loopback",
    "ip6-localnet",
    "ip6-mcastprefix",
    "ip6-allnodes",
    "ip6-allrouters",
    "ip6-allhosts",
    "0.0.0.0",
];

/// Guesses a list's format from a sample of its first lines.
pub fn detect_format(sample: &str) -> ListFormat {
    let mut votes = [0usize; 5]; // hosts, adblock, rpz, urls, domains
    for line in sample.lines().take(200) {
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        if t.starts_with("[Adblock") || t.starts_with("||") || t.starts_with("@@") {
            votes[1] += 3;
            continue;
        }
        if t.starts_with('!') {
            votes[1] += 1;
            continue;
        }
        if t.starts_with("$TTL") || t.starts_with("$ORIGIN") {
            votes[2] += 5;
            continue;
        }
        if t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        let upper = t.to_ascii_uppercase();
        let fields: Vec<&str> = upper.split_whitespace().collect();
        if fields.iter().any(|f| *f == "CNAME" || *f == "SOA") {
            votes[2] += 2;
            continue;
        }
        if fields.len() >= 2 && fields[0].parse::<IpAddr>().is_ok() {
            votes[0] += 1;
            continue;
        }
        if t.contains('/') {
            votes[3] += 1;
            continue;
        }
        votes[4] += 1;
    }
    let order = [
        ListFormat::Hosts,
        ListFormat::Adblock,
        ListFormat::Rpz,
        ListFormat::Urls,
        ListFormat::Domains,
    ];
    let mut best = 4;
    for (i, v) in votes.iter().enumerate() {
        if *v > votes[best] {
            best = i;
        }
    }
    order[best]
}

fn strip_hash_comment(line: &str) -> &str {
    match line.find('#') {
        Some(pos) => &line[..pos],
        None => line,
    }
}

/// `0.0.0.0 a.example b.example  # comment`
pub(crate) fn hosts_line(line: &str) -> LineOutcome<'_> {
    let t = strip_hash_comment(line).trim();
    if t.is_empty() {
        return LineOutcome::Nothing;
    }
    let mut fields = t.split_whitespace();
    let Some(first) = fields.next() else {
        return LineOutcome::Nothing;
    };
    if first.parse::<IpAddr>().is_err() {
        // Some hosts-style lists mix in bare names; accept those too.
        if fields.next().is_none() {
            return domains_line(t);
        }
        return LineOutcome::Invalid(format!("{first:?} is not an IP address"));
    }
    let mut out = Vec::new();
    for field in fields {
        if HOSTS_SELF_NAMES.contains(&field) {
            continue;
        }
        match normalize_name(field) {
            Ok(name) => out.push(Entry::Name {
                name,
                mode: MatchMode::NameAndSubdomains,
                exception: false,
                rpz: None,
                local_data: None,
            }),
            Err(e) => return LineOutcome::Invalid(format!("{field:?}: {e}")),
        }
    }
    match out.len() {
        0 => LineOutcome::Nothing,
        1 => out.pop().map_or(LineOutcome::Nothing, LineOutcome::Entry),
        _ => LineOutcome::Entries(out),
    }
}

/// A name with an optional `*.` (subdomains only) or `.` (name and
/// subdomains, squid style) in front.
fn name_rule(token: &str, exception: bool) -> LineOutcome<'_> {
    let (rest, mode) = if let Some(rest) = token.strip_prefix("*.") {
        (rest, MatchMode::Subdomains)
    } else if let Some(rest) = token.strip_prefix('.') {
        (rest, MatchMode::NameAndSubdomains)
    } else {
        (token, MatchMode::NameAndSubdomains)
    };
    match normalize_name(rest) {
        Ok(name) => LineOutcome::Entry(Entry::Name {
            name,
            mode,
            exception,
            rpz: None,
            local_data: None,
        }),
        Err(e) => LineOutcome::Invalid(format!("{token:?}: {e}")),
    }
}

/// One name per line; `#` comments; a hosts-style line is accepted too.
pub(crate) fn domains_line(line: &str) -> LineOutcome<'_> {
    let t = strip_hash_comment(line).trim();
    if t.is_empty() {
        return LineOutcome::Nothing;
    }
    let mut fields = t.split_whitespace();
    let first = fields.next().unwrap_or("");
    if let Some(second) = fields.next() {
        if first.parse::<IpAddr>().is_ok() {
            return hosts_line(t);
        }
        return LineOutcome::Invalid(format!("unexpected text after the name: {second:?}"));
    }
    name_rule(first, false)
}

/// Adblock-style rules, as used by DNS-level blockers.
pub(crate) fn adblock_line(line: &str) -> LineOutcome<'_> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('!') || t.starts_with('[') {
        return LineOutcome::Nothing;
    }
    if t.starts_with('#') && !t.starts_with("##") {
        return LineOutcome::Nothing;
    }
    // Cosmetic rules (element hiding, scriptlets) have nothing to do with
    // names or URLs.
    if t.contains("##") || t.contains("#@#") || t.contains("#?#") || t.contains("#$#") {
        return LineOutcome::Unsupported;
    }
    let (exception, body) = match t.strip_prefix("@@") {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    // Regular expression rules: /pattern/ with optional options.
    if body.len() > 2 && body.starts_with('/') {
        if let Some(end) = body.rfind('/') {
            if end > 0 {
                let options = &body[end + 1..];
                if !options.is_empty() && !supported_options(options.trim_start_matches('$')) {
                    return LineOutcome::Unsupported;
                }
                return LineOutcome::Entry(Entry::Regex {
                    pattern: Cow::Borrowed(&body[1..end]),
                    target: RegexTarget::Name,
                    exception,
                });
            }
        }
    }
    let (rule, options) = match body.find('$') {
        Some(pos) => (&body[..pos], &body[pos + 1..]),
        None => (body, ""),
    };
    if !supported_options(options) {
        return LineOutcome::Unsupported;
    }
    if let Some(rest) = rule.strip_prefix("||") {
        let rest = rest.trim_end_matches('|');
        let end = rest.find(['^', '/']).unwrap_or(rest.len());
        let (host, tail) = rest.split_at(end);
        let tail = tail.strip_prefix('^').unwrap_or(tail);
        if host.contains('*') && !host.starts_with("*.") {
            return LineOutcome::Unsupported;
        }
        if tail.is_empty() || tail == "|" {
            return name_rule(host, exception);
        }
        if tail.starts_with('/') && !tail.contains(['*', '^']) {
            return match parse_url(&format!("{host}{tail}")) {
                Ok(key) => LineOutcome::Entry(Entry::Url {
                    host: key.host,
                    path: key.path,
                    exception,
                }),
                Err(e) => LineOutcome::Invalid(format!("{host:?}: {e}")),
            };
        }
        return LineOutcome::Unsupported;
    }
    // Plain names (many DNS filter lists in Adblock syntax mix them in).
    if !rule.contains(['/', '*', '^', '|', '=', '&', '?'])
        && rule.contains('.')
        && !rule.starts_with(['-', '.'])
        && !rule.ends_with(['-', '.'])
    {
        if let LineOutcome::Entry(e) = name_rule(rule, exception) {
            return LineOutcome::Entry(e);
        }
    }
    LineOutcome::Unsupported
}

/// Adblock options that do not narrow a rule below a whole name.
fn supported_options(options: &str) -> bool {
    options.is_empty()
        || options.split(',').all(|o| {
            matches!(
                o.trim(),
                "important" | "all" | "document" | "doc" | "popup" | "third-party" | "3p"
            )
        })
}

/// One regular expression per line, optionally between slashes.
pub(crate) fn regex_line(line: &str, target: RegexTarget) -> LineOutcome<'_> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') {
        return LineOutcome::Nothing;
    }
    let pattern = if t.len() > 2 && t.starts_with('/') && t.ends_with('/') {
        &t[1..t.len() - 1]
    } else {
        t
    };
    LineOutcome::Entry(Entry::Regex {
        pattern: Cow::Borrowed(pattern),
        target,
        exception: false,
    })
}

/// A URL as the IWF and CTIRU deliver them. A line with no path names a
/// whole host, and becomes a rule for exactly that host.
pub(crate) fn url_line(line: &str) -> LineOutcome<'_> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') {
        return LineOutcome::Nothing;
    }
    if t.contains(char::is_whitespace) {
        return LineOutcome::Invalid("a URL cannot contain spaces".to_owned());
    }
    match parse_url(t) {
        Ok(key) if key.path == "/" => LineOutcome::Entry(Entry::Name {
            name: Cow::Owned(key.host),
            mode: MatchMode::Exact,
            exception: false,
            rpz: None,
            local_data: None,
        }),
        Ok(key) => LineOutcome::Entry(Entry::Url {
            host: key.host,
            path: key.path,
            exception: false,
        }),
        Err(e) => LineOutcome::Invalid(format!("{t:?}: {e}")),
    }
}
