//! URL normalisation for URL rules and URL queries.
//!
//! The IWF and CTIRU lists arrive as URLs without a scheme: a host, a path
//! and sometimes a query string (`example.invalid/a/b.html?id=3`). Both rules
//! and requested URLs are reduced to the same [`UrlKey`]: the normalised host,
//! and the path with its query, without scheme, port, user information or
//! fragment. The host is normalised like any name; the path keeps its case
//! (paths are case sensitive on most servers).
//!
//! A URL rule matches a requested URL on the same host when the requested
//! path-and-query equals the rule's, or starts with it at a boundary: the rule
//! ends in `/`, or the next character of the request is `/`, `?`, `&` or `#`.
//! So `example.invalid/a` covers `/a`, `/a/b` and `/a?x=1` but not `/ab`.

use crate::name::{normalize_name, NameError};

/// A URL reduced to what rules compare: host, and path plus query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlKey {
    /// The normalised host name.
    pub host: String,
    /// The path and query, always starting with `/`.
    pub path: String,
}

/// Splits and normalises a URL, with or without a scheme.
pub fn parse_url(input: &str) -> Result<UrlKey, NameError> {
    let mut rest = input.trim();
    if let Some(pos) = rest.find("://") {
        let scheme = &rest[..pos];
        if !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.')
        {
            rest = &rest[pos + 3..];
        }
    }
    let end_of_host = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end_of_host);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let host = strip_port(authority);
    let host = normalize_name(host)?.into_owned();
    let tail = tail.split('#').next().unwrap_or("");
    let path = if tail.is_empty() {
        "/".to_owned()
    } else if tail.starts_with('?') {
        format!("/{tail}")
    } else {
        tail.to_owned()
    };
    Ok(UrlKey { host, path })
}

fn strip_port(authority: &str) -> &str {
    match authority.rfind(':') {
        Some(pos) if authority[pos + 1..].bytes().all(|b| b.is_ascii_digit()) => &authority[..pos],
        _ => authority,
    }
}

/// Whether a rule's path-and-query covers a requested path-and-query.
pub fn path_matches(rule: &str, request: &str) -> bool {
    if rule == "/" {
        return true;
    }
    match request.strip_prefix(rule) {
        None => false,
        Some("") => true,
        Some(rest) => {
            rule.ends_with('/')
                || rule.ends_with('?')
                || rule.ends_with('&')
                || rest.starts_with(['/', '?', '&', '#'])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_list_style_and_full_urls() {
        let k = parse_url("Example.Invalid/a/B.html?id=3").unwrap();
        assert_eq!(k.host, "example.invalid");
        assert_eq!(k.path, "/a/B.html?id=3");
        let k = parse_url("https://user@WWW.example.invalid:8443/x#frag").unwrap();
        assert_eq!(k.host, "www.example.invalid");
        assert_eq!(k.path, "/x");
        let k = parse_url("http://example.invalid").unwrap();
        assert_eq!(k.path, "/");
        let k = parse_url("example.invalid?q=1").unwrap();
        assert_eq!(k.path, "/?q=1");
    }

    #[test]
    fn path_matching_respects_boundaries() {
        assert!(path_matches("/a", "/a"));
        assert!(path_matches("/a", "/a/b"));
        assert!(path_matches("/a", "/a?x=1"));
        assert!(!path_matches("/a", "/ab"));
        assert!(path_matches("/a/", "/a/bc"));
        assert!(path_matches("/", "/anything"));
        assert!(path_matches("/p?id=3", "/p?id=3&x=1"));
        assert!(!path_matches("/p?id=3", "/p?id=34"));
        assert!(!path_matches("/a/b", "/a"));
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,100}") {
            let _ = parse_url(&s);
        }

        #[test]
        fn a_rule_covers_itself_and_deeper_paths(p in "(/[a-z0-9]{1,6}){1,4}", q in "[a-z0-9]{1,6}") {
            prop_assert!(path_matches(&p, &p));
            let deeper = format!("{p}/{q}");
            prop_assert!(path_matches(&p, &deeper));
            let longer = format!("{p}{q}");
            prop_assert!(!path_matches(&p, &longer));
        }
    }
}
