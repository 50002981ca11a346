//! The warn action: a page that says why a site needs a second thought,
//! and lets the reader go on.
//!
//! A group's "warn" category is blocked until the user acknowledges it
//! (issue 3). The warning page links to the same URL with a
//! `sheepdog-continue` parameter carrying a token; following it opens the
//! site's host to that client address for `[proxy] warning_minutes`, at
//! the proxy and at the DNS server alike (they share one [`Warnings`]
//! through the identity resolver, so a warning shown for a DNS block
//! answer can be continued past too). The token is a keyed hash of the
//! address and host under a key made at start-up, so a link cannot be
//! made up, copied to another device, or reused for another site, and
//! nothing has to be stored until someone continues.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ring::hmac;

/// The query parameter of a "continue" link.
pub const CONTINUE_PARAMETER: &str = "sheepdog-continue";

/// At most this many acknowledgements are kept; past it, expired ones are
/// dropped, and if none has expired the oldest go.
const MOST_KEPT: usize = 100_000;

/// Acknowledged warnings, by client address and host.
#[derive(Debug)]
pub struct Warnings {
    key: hmac::Key,
    lasts: Duration,
    acknowledged: Mutex<HashMap<(IpAddr, String), Instant>>,
}

impl Warnings {
    /// How long an acknowledgement lasts.
    pub fn lasts(&self) -> Duration {
        self.lasts
    }

    /// Acknowledgements last `lasts`; the key is fresh and random.
    pub fn new(lasts: Duration) -> Result<Self, ring::error::Unspecified> {
        let rng = ring::rand::SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng)?;
        Ok(Self {
            key,
            lasts,
            acknowledged: Mutex::new(HashMap::new()),
        })
    }

    /// The token of a "continue" link for `client` and `host`.
    pub fn token(&self, client: IpAddr, host: &str) -> String {
        let tag = hmac::sign(&self.key, &Self::message(client, host));
        data_encoding::BASE32_NOPAD
            .encode(tag.as_ref())
            .to_ascii_lowercase()
    }

    /// Records that `client` chose to continue to `host`, when `token` is
    /// the one this proxy gave them for it.
    pub fn acknowledge(&self, client: IpAddr, host: &str, token: &str) -> bool {
        let Ok(tag) = data_encoding::BASE32_NOPAD.decode(token.to_ascii_uppercase().as_bytes())
        else {
            return false;
        };
        // ring compares the whole tag in constant time.
        if hmac::verify(&self.key, &Self::message(client, host), &tag).is_err() {
            return false;
        }
        let now = Instant::now();
        let Ok(mut acknowledged) = self.acknowledged.lock() else {
            return false;
        };
        if acknowledged.len() >= MOST_KEPT {
            acknowledged.retain(|_, until| *until > now);
            if acknowledged.len() >= MOST_KEPT {
                acknowledged.clear();
            }
        }
        acknowledged.insert((client, host.to_ascii_lowercase()), now + self.lasts);
        true
    }

    /// Whether `client` has continued past a warning for `host`, or for a
    /// domain above it, lately. A site's pages pull from its other hosts
    /// (`static.games.example` for `games.example`); each would otherwise
    /// need its own warning, which a picture or a script cannot show.
    /// Only a warning is passed this way: a block stays a block.
    pub fn acknowledged(&self, client: IpAddr, host: &str) -> bool {
        let Ok(acknowledged) = self.acknowledged.lock() else {
            return false;
        };
        if acknowledged.is_empty() {
            return false;
        }
        let now = Instant::now();
        let mut key = (client, host.to_ascii_lowercase());
        loop {
            if acknowledged.get(&key).is_some_and(|until| *until > now) {
                return true;
            }
            // Parent domains, never a bare top-level name.
            let Some((_, parent)) = key.1.split_once('.') else {
                return false;
            };
            if !parent.contains('.') {
                return false;
            }
            key.1 = parent.to_string();
        }
    }

    fn message(client: IpAddr, host: &str) -> Vec<u8> {
        let mut message = client.to_string().into_bytes();
        message.push(0);
        message.extend(host.to_ascii_lowercase().bytes());
        message
    }
}

/// `url` with a `sheepdog-continue` parameter taken out, and its value.
pub fn take_continue(url: &str) -> Option<(String, String)> {
    let (base, query) = url.split_once('?')?;
    let mut token = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.strip_prefix(CONTINUE_PARAMETER) {
            Some(value) if value.starts_with('=') && token.is_none() => {
                token = Some(value[1..].to_string());
                false
            }
            _ => true,
        })
        .collect();
    let token = token?;
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Some((url, token))
}

/// `url` with a "continue" token added.
pub fn with_continue(url: &str, token: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{CONTINUE_PARAMETER}={token}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_opens_only_its_own_host_for_its_own_client() {
        let warnings = Warnings::new(Duration::from_secs(60)).unwrap();
        let pupil: IpAddr = "10.0.0.7".parse().unwrap();
        let other: IpAddr = "10.0.0.8".parse().unwrap();
        let token = warnings.token(pupil, "games.example");
        assert!(!warnings.acknowledge(other, "games.example", &token));
        assert!(!warnings.acknowledge(pupil, "chat.example", &token));
        assert!(!warnings.acknowledge(pupil, "games.example", "not-a-token"));
        assert!(!warnings.acknowledged(pupil, "games.example"));
        assert!(warnings.acknowledge(pupil, "Games.Example", &token));
        assert!(warnings.acknowledged(pupil, "games.example"));
        assert!(!warnings.acknowledged(other, "games.example"));
    }

    #[test]
    fn a_continued_site_covers_its_own_hosts_but_not_its_parents() {
        let warnings = Warnings::new(Duration::from_secs(60)).unwrap();
        let pupil: IpAddr = "10.0.0.7".parse().unwrap();
        let token = warnings.token(pupil, "games.example");
        assert!(warnings.acknowledge(pupil, "games.example", &token));
        assert!(warnings.acknowledged(pupil, "static.games.example"));
        assert!(warnings.acknowledged(pupil, "a.b.Games.Example"));
        assert!(!warnings.acknowledged(pupil, "example"));
        assert!(!warnings.acknowledged(pupil, "othergames.example"));
        let token = warnings.token(pupil, "www.chat.example");
        assert!(warnings.acknowledge(pupil, "www.chat.example", &token));
        assert!(!warnings.acknowledged(pupil, "chat.example"));
        assert!(!warnings.acknowledged(pupil, "cdn.chat.example"));
    }

    #[test]
    fn acknowledgements_expire() {
        let warnings = Warnings::new(Duration::ZERO).unwrap();
        let pupil: IpAddr = "10.0.0.7".parse().unwrap();
        let token = warnings.token(pupil, "games.example");
        assert!(warnings.acknowledge(pupil, "games.example", &token));
        assert!(!warnings.acknowledged(pupil, "games.example"));
    }

    #[test]
    fn continue_links_round_trip() {
        let link = with_continue("http://a.example/p?q=1", "abc");
        assert_eq!(link, "http://a.example/p?q=1&sheepdog-continue=abc");
        assert_eq!(
            take_continue(&link),
            Some(("http://a.example/p?q=1".to_string(), "abc".to_string()))
        );
        let link = with_continue("http://a.example/", "abc");
        assert_eq!(
            take_continue(&link),
            Some(("http://a.example/".to_string(), "abc".to_string()))
        );
        assert_eq!(take_continue("http://a.example/?q=1"), None);
        assert_eq!(
            take_continue("http://a.example/?sheepdog-continuex=1"),
            None
        );
    }
}
