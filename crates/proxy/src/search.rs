//! Search terms from search-engine URLs (F11, M8).
//!
//! A pure table from URL to `(engine, term)`, applied to every URL the
//! proxy sees in full (plain HTTP now, inspected HTTPS later). The term goes
//! into the decision event's `search_term`, where monitoring reads it.
//!
//! | engine | hosts | path | parameter |
//! |---|---|---|---|
//! | google | any `google.*` (`www.google.co.uk`) | `/search` | `q` |
//! | bing | `bing.com` | `/search` | `q` |
//! | duckduckgo | `duckduckgo.com`, `html.duckduckgo.com` | `/`, `/html`, `/lite` | `q` |
//! | youtube | `youtube.com`, `m.youtube.com` | `/results` | `search_query` |
//! | yahoo | `search.yahoo.com` (and country variants) | `/search` | `p` |
//! | ecosia | `ecosia.org` | `/search` | `q` |
//! | wikipedia | `*.wikipedia.org` | `/w/index.php`, `/wiki/Special:Search` | `search` |
//! | startpage | `startpage.com` | `/sp/search`, `/do/search`, `/search` | `query`, then `q` |
//! | brave | `search.brave.com` | `/search` | `q` |
//! | qwant | `qwant.com` | `/` | `q` |
//! | yandex | any `yandex.*` | `/search` | `text` |
//! | baidu | `baidu.com` | `/s` | `wd` |
//! | ask | `ask.com` | `/web` | `q` |
//! | aol | `search.aol.com` | `/aol/search` | `q` |
//! | kiddle | `kiddle.co` | `/s.php` | `q` |
//!
//! A term is the parameter's value, form-decoded (`+` is a space), with
//! runs of white space collapsed, and cut to [`MAX_TERM_CHARS`] characters.
//! An empty term is no term.

/// The longest term kept, in characters.
pub const MAX_TERM_CHARS: usize = 256;

/// How an engine's host is recognised.
#[derive(Debug, Clone, Copy)]
enum HostRule {
    /// This domain or any name under it.
    Domain(&'static str),
    /// Any host with this label directly before its public suffix, written
    /// as the brand (`google` matches `www.google.com`, `google.co.uk`).
    Brand(&'static str),
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
struct Engine {
    name: &'static str,
    host: HostRule,
    paths: &'static [&'static str],
    params: &'static [&'static str],
}

const ENGINES: &[Engine] = &[
    Engine {
        name: "google",
        host: HostRule::Brand("google"),
        paths: &["/search"],
        params: &["q"],
    },
    Engine {
        name: "bing",
        host: HostRule::Domain("bing.com"),
        paths: &["/search"],
        params: &["q"],
    },
    Engine {
        name: "duckduckgo",
        host: HostRule::Domain("duckduckgo.com"),
        paths: &["/", "/html", "/html/", "/lite", "/lite/"],
        params: &["q"],
    },
    Engine {
        name: "youtube",
        host: HostRule::Domain("youtube.com"),
        paths: &["/results"],
        params: &["search_query"],
    },
    Engine {
        name: "yahoo",
        host: HostRule::Brand("yahoo"),
        paths: &["/search"],
        params: &["p"],
    },
    Engine {
        name: "ecosia",
        host: HostRule::Domain("ecosia.org"),
        paths: &["/search"],
        params: &["q"],
    },
    Engine {
        name: "wikipedia",
        host: HostRule::Domain("wikipedia.org"),
        paths: &["/w/index.php", "/wiki/Special:Search"],
        params: &["search"],
    },
    Engine {
        name: "startpage",
        host: HostRule::Domain("startpage.com"),
        paths: &["/sp/search", "/do/search", "/search"],
        params: &["query", "q"],
    },
    Engine {
        name: "brave",
        host: HostRule::Domain("search.brave.com"),
        paths: &["/search"],
        params: &["q"],
    },
    Engine {
        name: "qwant",
        host: HostRule::Domain("qwant.com"),
        paths: &["/"],
        params: &["q"],
    },
    Engine {
        name: "yandex",
        host: HostRule::Brand("yandex"),
        paths: &["/search", "/search/"],
        params: &["text"],
    },
    Engine {
        name: "baidu",
        host: HostRule::Domain("baidu.com"),
        paths: &["/s"],
        params: &["wd"],
    },
    Engine {
        name: "ask",
        host: HostRule::Domain("ask.com"),
        paths: &["/web"],
        params: &["q"],
    },
    Engine {
        name: "aol",
        host: HostRule::Domain("search.aol.com"),
        paths: &["/aol/search"],
        params: &["q"],
    },
    Engine {
        name: "kiddle",
        host: HostRule::Domain("kiddle.co"),
        paths: &["/s.php"],
        params: &["q"],
    },
];

/// A search found in a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    pub engine: &'static str,
    pub term: String,
}

/// The engine and term of a search URL (`http://host/path?query`), if the
/// URL is a search on an engine in the table.
pub fn search_term(url: &str) -> Option<Search> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let (authority, path_and_query) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, "/"),
    };
    let host = authority.rsplit('@').next().unwrap_or(authority);
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let path_and_query = path_and_query.split('#').next().unwrap_or("");
    let (path, query) = path_and_query.split_once('?')?;
    let engine = ENGINES
        .iter()
        .find(|e| host_matches(e.host, &host) && e.paths.contains(&path))?;
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let value = engine
        .params
        .iter()
        .find_map(|p| pairs.iter().find(|(k, _)| k == p).map(|(_, v)| v))?;
    let term: String = value
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(MAX_TERM_CHARS)
        .collect();
    (!term.is_empty()).then_some(Search {
        engine: engine.name,
        term,
    })
}

/// The engine in the table that `host` belongs to, if any: these hosts are
/// inspected, so their search terms can be read.
pub fn engine_of(host: &str) -> Option<&'static str> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    ENGINES
        .iter()
        .find(|e| host_matches(e.host, &host))
        .map(|e| e.name)
}

/// The query string a search must carry for the group's safe search
/// (F6): Google's `safe=active`, Bing's `adlt=strict`, DuckDuckGo's
/// `kp=1`, each replacing whatever the client sent. `None` when nothing
/// needs changing. YouTube is restricted by header instead
/// ([`youtube_restriction`]).
pub fn safe_query(
    engine: &str,
    query: Option<&str>,
    safe: &sheepdog_policy::SafeSearch,
) -> Option<String> {
    let (key, value) = match engine {
        "google" if safe.google => ("safe", "active"),
        "bing" if safe.bing => ("adlt", "strict"),
        "duckduckgo" if safe.duckduckgo => ("kp", "1"),
        _ => return None,
    };
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if pairs.iter().filter(|(k, _)| k == key).count() == 1
        && pairs.iter().any(|(k, v)| k == key && v == value)
    {
        return None;
    }
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs.iter().filter(|(k, _)| k != key) {
        out.append_pair(k, v);
    }
    out.append_pair(key, value);
    Some(out.finish())
}

/// The `YouTube-Restrict` header value for the group, if restricted.
pub fn youtube_restriction(safe: &sheepdog_policy::SafeSearch) -> Option<&'static str> {
    match safe.youtube {
        sheepdog_policy::YoutubeMode::Off => None,
        sheepdog_policy::YoutubeMode::Moderate => Some("Moderate"),
        sheepdog_policy::YoutubeMode::Strict => Some("Strict"),
    }
}

fn host_matches(rule: HostRule, host: &str) -> bool {
    match rule {
        HostRule::Domain(domain) => {
            host == domain
                || host
                    .strip_suffix(domain)
                    .is_some_and(|before| before.ends_with('.'))
        }
        HostRule::Brand(brand) => {
            // The brand label followed by one or two short labels (com,
            // co.uk, com.au, de): a public suffix, roughly, without a table.
            let labels: Vec<&str> = host.split('.').collect();
            labels.iter().enumerate().any(|(i, label)| {
                let suffix = labels.get(i + 1..).unwrap_or(&[]);
                *label == brand
                    && (1..=2).contains(&suffix.len())
                    && suffix.iter().all(|l| l.len() <= 3 && !l.is_empty())
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn found(url: &str) -> Option<(&'static str, String)> {
        search_term(url).map(|s| (s.engine, s.term))
    }

    fn is(url: &str, engine: &'static str, term: &str) {
        assert_eq!(found(url), Some((engine, term.to_string())), "{url}");
    }

    #[test]
    fn safe_search_replaces_what_the_client_sent() {
        let on = sheepdog_policy::SafeSearch::default();
        assert_eq!(
            safe_query("google", Some("q=cats&safe=off&safe=images"), &on).as_deref(),
            Some("q=cats&safe=active")
        );
        assert_eq!(safe_query("google", Some("q=cats&safe=active"), &on), None);
        assert_eq!(
            safe_query("bing", Some("q=cats"), &on).as_deref(),
            Some("q=cats&adlt=strict")
        );
        assert_eq!(safe_query("duckduckgo", None, &on).as_deref(), Some("kp=1"));
        assert_eq!(safe_query("wikipedia", Some("search=x"), &on), None);
        let off = sheepdog_policy::SafeSearch {
            google: false,
            ..on
        };
        assert_eq!(safe_query("google", Some("q=cats&safe=off"), &off), None);
        assert_eq!(youtube_restriction(&on), Some("Strict"));
    }

    #[test]
    fn engines_are_known_by_host() {
        assert_eq!(engine_of("www.google.co.uk"), Some("google"));
        assert_eq!(engine_of("m.youtube.com."), Some("youtube"));
        assert_eq!(engine_of("en.wikipedia.org"), Some("wikipedia"));
        assert_eq!(engine_of("googleusercontent.example"), None);
    }

    #[test]
    fn google() {
        is(
            "http://www.google.com/search?q=how+to+draw+a+cat&hl=en",
            "google",
            "how to draw a cat",
        );
        is(
            "https://www.google.co.uk/search?client=x&q=volcano%20facts",
            "google",
            "volcano facts",
        );
        assert_eq!(found("http://www.google.com/maps?q=school"), None);
        assert_eq!(found("http://google.evil.example/search?q=x"), None);
    }

    #[test]
    fn bing() {
        is(
            "http://www.bing.com/search?q=rainforest+animals&form=QBLH",
            "bing",
            "rainforest animals",
        );
    }

    #[test]
    fn duckduckgo() {
        is(
            "https://duckduckgo.com/?q=fractions&t=h_",
            "duckduckgo",
            "fractions",
        );
        is(
            "https://html.duckduckgo.com/html/?q=tudors",
            "duckduckgo",
            "tudors",
        );
    }

    #[test]
    fn youtube() {
        is(
            "https://www.youtube.com/results?search_query=minecraft+build",
            "youtube",
            "minecraft build",
        );
        is(
            "https://m.youtube.com/results?search_query=lego",
            "youtube",
            "lego",
        );
        assert_eq!(found("https://www.youtube.com/watch?v=abc&q=x"), None);
    }

    #[test]
    fn yahoo() {
        is(
            "https://search.yahoo.com/search?p=planets&fr=yfp",
            "yahoo",
            "planets",
        );
        is(
            "https://uk.search.yahoo.com/search?p=rivers",
            "yahoo",
            "rivers",
        );
    }

    #[test]
    fn ecosia() {
        is(
            "https://www.ecosia.org/search?method=index&q=tree+facts",
            "ecosia",
            "tree facts",
        );
    }

    #[test]
    fn wikipedia() {
        is(
            "https://en.wikipedia.org/w/index.php?search=Roman+Britain&title=Special%3ASearch",
            "wikipedia",
            "Roman Britain",
        );
        is(
            "https://de.wikipedia.org/wiki/Special:Search?search=Vulkan",
            "wikipedia",
            "Vulkan",
        );
    }

    #[test]
    fn startpage() {
        is(
            "https://www.startpage.com/sp/search?query=weather+cycle",
            "startpage",
            "weather cycle",
        );
        is(
            "https://www.startpage.com/do/search?q=coding",
            "startpage",
            "coding",
        );
    }

    #[test]
    fn brave() {
        is(
            "https://search.brave.com/search?q=space+rockets&source=web",
            "brave",
            "space rockets",
        );
        assert_eq!(found("https://brave.com/search?q=x"), None);
    }

    #[test]
    fn qwant() {
        is(
            "https://www.qwant.com/?q=dinosaurs&t=web",
            "qwant",
            "dinosaurs",
        );
    }

    #[test]
    fn yandex_baidu_ask_aol_kiddle() {
        is("https://yandex.ru/search/?text=chess", "yandex", "chess");
        is(
            "https://www.baidu.com/s?wd=%E7%86%8A%E7%8C%AB",
            "baidu",
            "熊猫",
        );
        is(
            "https://www.ask.com/web?q=times+tables",
            "ask",
            "times tables",
        );
        is("https://search.aol.com/aol/search?q=poems", "aol", "poems");
        is("https://www.kiddle.co/s.php?q=owls", "kiddle", "owls");
    }

    #[test]
    fn terms_are_tidied_and_bounded() {
        is(
            "http://www.bing.com/search?q=%20%20a%0A%09b++",
            "bing",
            "a b",
        );
        assert_eq!(found("http://www.bing.com/search?q="), None);
        assert_eq!(found("http://www.bing.com/search"), None);
        let long = format!("http://www.bing.com/search?q={}", "x".repeat(1000));
        assert_eq!(found(&long).unwrap().1.chars().count(), MAX_TERM_CHARS);
        is(
            "http://www.bing.com:8080/search?q=port#frag",
            "bing",
            "port",
        );
    }

    proptest! {
        #[test]
        fn never_panics(url in "\\PC{0,120}") {
            let _ = search_term(&url);
        }

        #[test]
        fn any_term_comes_back(term in "[a-zA-Z0-9]{1,10}( [a-zA-Z0-9]{1,10}){0,3}") {
            let encoded: String = form_urlencoded::byte_serialize(term.as_bytes()).collect();
            let s = search_term(&format!("http://www.google.com/search?q={encoded}")).unwrap();
            prop_assert_eq!(s.term, term);
        }
    }
}
