//! What a proxy request asks for: the CONNECT target or the absolute URL's
//! authority, checked strictly before anything is decided or dialled.
//!
//! hyper has already split the request line; these functions decide whether
//! the host and port in it are ones sheepdog will act on. A host is a DNS
//! name (letters, digits, `-`, `_`, dots; labels of at most 63 bytes, 253 in
//! all), an IPv4 address, or a bracketed IPv6 address. User information
//! (`user@host`) is refused: it has no place in a proxy target and is a
//! favourite way to confuse filters about which host is meant.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// A host and port to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    /// Lower case, without a trailing dot; an IPv6 address without brackets.
    pub host: String,
    pub port: u16,
}

impl Authority {
    /// `host:port`, bracketing an IPv6 address, for dialling.
    pub fn dial(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The host as a URL writes it (IPv6 bracketed), with the port only
    /// when it is not the scheme's default.
    pub fn url_host(&self, default_port: u16) -> String {
        let mut host = String::with_capacity(self.host.len() + 8);
        self.push_url_host(&mut host, default_port);
        host
    }

    /// `scheme://host[:port]path`, as [`Self::url_host`] writes the host.
    /// Built by hand, once per request, where `format!` cost more than
    /// the rest of the URL handling together.
    pub fn url(&self, scheme: &str, default_port: u16, path: &str) -> String {
        let mut url = String::with_capacity(scheme.len() + self.host.len() + path.len() + 11);
        url.push_str(scheme);
        url.push_str("://");
        self.push_url_host(&mut url, default_port);
        url.push_str(path);
        url
    }

    fn push_url_host(&self, out: &mut String, default_port: u16) {
        if self.host.contains(':') {
            out.push('[');
            out.push_str(&self.host);
            out.push(']');
        } else {
            out.push_str(&self.host);
        }
        if self.port != default_port {
            out.push(':');
            out.push_str(&self.port.to_string());
        }
    }
}

impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.dial())
    }
}

/// Why a target was refused; the text goes into the 400 response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("the request names no host")]
    Empty,
    #[error("user information (user@host) is not accepted in a proxy target")]
    UserInfo,
    #[error("`{0}` is not a valid host name or address")]
    BadHost(String),
    #[error("`{0}` is not a port number from 1 to 65535")]
    BadPort(String),
    #[error("CONNECT needs host:port, for example example.org:443")]
    MissingPort,
}

/// Parses `host[:port]`. Without a port, `default_port` is used; `None`
/// makes the port required (CONNECT).
pub fn parse_authority(text: &str, default_port: Option<u16>) -> Result<Authority, TargetError> {
    if text.is_empty() {
        return Err(TargetError::Empty);
    }
    if text.contains('@') {
        return Err(TargetError::UserInfo);
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest
            .split_once(']')
            .ok_or_else(|| TargetError::BadHost(text.to_string()))?;
        let v6: Ipv6Addr = inside
            .parse()
            .map_err(|_| TargetError::BadHost(inside.to_string()))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| TargetError::BadHost(text.to_string()))?,
            ),
        };
        (v6.to_string(), port)
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (check_host(host)?, Some(port)),
            None => (check_host(text)?, None),
        }
    };
    let port = match (port, default_port) {
        (Some(p), _) => parse_port(p)?,
        (None, Some(default)) => default,
        (None, None) => return Err(TargetError::MissingPort),
    };
    Ok(Authority { host, port })
}

fn parse_port(text: &str) -> Result<u16, TargetError> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TargetError::BadPort(text.to_string()));
    }
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err(TargetError::BadPort(text.to_string())),
        Ok(port) => Ok(port),
    }
}

/// A DNS name or IPv4 address, lower-cased and without a trailing dot.
pub fn check_host(text: &str) -> Result<String, TargetError> {
    let bad = || TargetError::BadHost(text.to_string());
    let host = text.strip_suffix('.').unwrap_or(text);
    if host.is_empty() || host.len() > 253 {
        return Err(if text.is_empty() {
            TargetError::Empty
        } else {
            bad()
        });
    }
    // The standard library reads only the canonical dotted form (no
    // leading zeros, four parts), so a parsed address is already spelled
    // as it would print.
    if let Ok(IpAddr::V4(_)) = host.parse::<IpAddr>() {
        return Ok(host.to_string());
    }
    for label in host.split('.') {
        let valid = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(bad());
        }
    }
    Ok(host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn an_ipv4_host_reads_back_as_it_prints(octets in any::<[u8; 4]>()) {
            let address = std::net::Ipv4Addr::from(octets).to_string();
            prop_assert_eq!(check_host(&address), Ok(address.clone()));
            // A spelling with a leading zero is not an address, so it is
            // never mistaken for one.
            let padded = format!("0{address}");
            prop_assert!(padded.parse::<std::net::Ipv4Addr>().is_err());
        }
    }

    #[test]
    fn connect_targets() {
        assert_eq!(
            parse_authority("Example.ORG.:443", None).unwrap(),
            Authority {
                host: "example.org".into(),
                port: 443
            }
        );
        let v6 = parse_authority("[::1]:8443", None).unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 8443));
        assert_eq!(v6.dial(), "[::1]:8443");
        assert_eq!(
            parse_authority("example.org", None),
            Err(TargetError::MissingPort)
        );
        assert_eq!(
            parse_authority("user@example.org:443", None),
            Err(TargetError::UserInfo)
        );
        assert!(matches!(
            parse_authority("example.org:0", None),
            Err(TargetError::BadPort(_))
        ));
        assert!(matches!(
            parse_authority("example.org:65536", None),
            Err(TargetError::BadPort(_))
        ));
        assert!(matches!(
            parse_authority("exa mple.org:443", None),
            Err(TargetError::BadHost(_))
        ));
        assert!(matches!(
            parse_authority("[::1:443", None),
            Err(TargetError::BadHost(_))
        ));
        assert!(matches!(
            parse_authority("a..b:443", None),
            Err(TargetError::BadHost(_))
        ));
    }

    #[test]
    fn hosts_with_default_ports() {
        let a = parse_authority("www.Example.org", Some(80)).unwrap();
        assert_eq!(a.dial(), "www.example.org:80");
        assert_eq!(a.url_host(80), "www.example.org");
        let b = parse_authority("10.0.0.5:8080", Some(80)).unwrap();
        assert_eq!(b.url_host(80), "10.0.0.5:8080");
        assert_eq!(b.url("http", 80, "/a?b"), "http://10.0.0.5:8080/a?b");
        assert_eq!(a.url("http", 80, "/"), "http://www.example.org/");
        let v6 = parse_authority("[::1]:443", None).unwrap();
        assert_eq!(v6.url("https", 443, "/x"), "https://[::1]/x");
        assert_eq!(v6.url("http", 80, "/x"), "http://[::1]:443/x");
        let long = format!("{}.org", "a".repeat(64));
        assert!(parse_authority(&long, Some(80)).is_err());
    }

    proptest! {
        #[test]
        fn never_panics(text in "\\PC{0,80}", port in proptest::option::of(any::<u16>())) {
            let _ = parse_authority(&text, port);
        }

        #[test]
        fn accepted_hosts_are_clean(text in "[a-zA-Z0-9.:\\[\\]@_-]{0,40}") {
            if let Ok(a) = parse_authority(&text, Some(80)) {
                prop_assert!(a.port > 0);
                prop_assert!(!a.host.is_empty());
                prop_assert!(!a.host.contains('@') && !a.host.contains('['));
                prop_assert_eq!(a.host.to_ascii_lowercase(), a.host.clone());
                // What we dial parses back to the same authority.
                prop_assert_eq!(parse_authority(&a.dial(), None), Ok(a));
            }
        }

        #[test]
        fn names_and_ports_round_trip(
            labels in proptest::collection::vec("[a-z0-9][a-z0-9-]{0,20}", 1..5),
            port in 1u16..,
        ) {
            let host = labels.join(".");
            let a = parse_authority(&format!("{host}:{port}"), None).unwrap();
            prop_assert_eq!(a.host, host);
            prop_assert_eq!(a.port, port);
        }
    }
}
