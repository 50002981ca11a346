//! Safe-search enforcement by DNS (F4): the search engines' own mechanism is
//! to answer their public host names with a CNAME to a host that always
//! applies safe search.

use sheepdog_policy::{SafeSearch, YoutubeMode};

/// Google's enforced host.
pub const GOOGLE: &str = "forcesafesearch.google.com";
/// YouTube's strict restricted mode.
pub const YOUTUBE_STRICT: &str = "restrict.youtube.com";
/// YouTube's moderate restricted mode.
pub const YOUTUBE_MODERATE: &str = "restrictmoderate.youtube.com";
/// Bing's strict mode.
pub const BING: &str = "strict.bing.com";
/// DuckDuckGo's safe search.
pub const DUCKDUCKGO: &str = "safe.duckduckgo.com";

/// The hosts YouTube restricts (Google's published list).
const YOUTUBE_HOSTS: &[&str] = &[
    "www.youtube.com",
    "m.youtube.com",
    "youtubei.googleapis.com",
    "youtube.googleapis.com",
    "www.youtube-nocookie.com",
];

/// The enforced host for `name` (normalised: lower case, no trailing dot)
/// under `settings`, if the name is a search engine's.
pub fn rewrite(name: &str, settings: &SafeSearch) -> Option<&'static str> {
    if settings.google && is_google_search(name) {
        return Some(GOOGLE);
    }
    if YOUTUBE_HOSTS.contains(&name) {
        return match settings.youtube {
            YoutubeMode::Off => None,
            YoutubeMode::Moderate => Some(YOUTUBE_MODERATE),
            YoutubeMode::Strict => Some(YOUTUBE_STRICT),
        };
    }
    if settings.bing && matches!(name, "bing.com" | "www.bing.com") {
        return Some(BING);
    }
    if settings.duckduckgo
        && matches!(
            name,
            "duckduckgo.com" | "www.duckduckgo.com" | "start.duckduckgo.com"
        )
    {
        return Some(DUCKDUCKGO);
    }
    None
}

/// `google.TLD` or `www.google.TLD` for every Google country domain:
/// `google.com`, `google.xx`, `google.co.xx` and `google.com.xx`. Every
/// such domain is Google's, so the pattern covers new ones without a list
/// to keep up to date.
fn is_google_search(name: &str) -> bool {
    let rest = name.strip_prefix("www.").unwrap_or(name);
    let Some(tld) = rest.strip_prefix("google.") else {
        return false;
    };
    let two_letters = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_lowercase());
    match tld.split_once('.') {
        None => tld == "com" || two_letters(tld),
        Some(("co" | "com", cc)) => two_letters(cc),
        Some(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn search_engines_map_to_their_enforced_hosts() {
        let on = SafeSearch::default();
        for name in [
            "google.com",
            "www.google.com",
            "www.google.co.uk",
            "google.de",
            "www.google.com.au",
        ] {
            assert_eq!(rewrite(name, &on), Some(GOOGLE), "{name}");
        }
        for name in [
            "mail.google.com",
            "google.co.uk.evil.example",
            "googlex.com",
            "forcesafesearch.google.com",
        ] {
            assert_eq!(rewrite(name, &on), None, "{name}");
        }
        assert_eq!(rewrite("www.youtube.com", &on), Some(YOUTUBE_STRICT));
        assert_eq!(
            rewrite("youtubei.googleapis.com", &on),
            Some(YOUTUBE_STRICT)
        );
        let moderate = SafeSearch {
            youtube: YoutubeMode::Moderate,
            ..SafeSearch::default()
        };
        assert_eq!(rewrite("m.youtube.com", &moderate), Some(YOUTUBE_MODERATE));
        assert_eq!(rewrite("www.bing.com", &on), Some(BING));
        assert_eq!(rewrite("duckduckgo.com", &on), Some(DUCKDUCKGO));
        let off = SafeSearch {
            google: false,
            youtube: YoutubeMode::Off,
            bing: false,
            duckduckgo: false,
        };
        assert_eq!(rewrite("www.google.co.uk", &off), None);
        assert_eq!(rewrite("www.youtube.com", &off), None);
    }

    proptest! {
        #[test]
        fn rewrite_never_panics_and_only_targets_known_hosts(name in "[a-z.]{0,30}") {
            if let Some(target) = rewrite(&name, &SafeSearch::default()) {
                prop_assert!([GOOGLE, YOUTUBE_STRICT, BING, DUCKDUCKGO].contains(&target));
            }
        }
    }
}
