//! The proxy's own parsers: CONNECT targets and URL authorities, the TLS
//! ClientHello reader, and the search-term table. Any bytes give a result
//! or an error, never a panic; an accepted authority dials as it parsed.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sheepdog_proxy::request::parse_authority;
use sheepdog_proxy::{search, sni};

fuzz_target!(|data: &[u8]| {
    let _ = sni::examine(data);
    if let Ok(text) = std::str::from_utf8(data) {
        for default in [None, Some(80)] {
            if let Ok(authority) = parse_authority(text, default) {
                assert_eq!(parse_authority(&authority.dial(), None), Ok(authority));
            }
        }
        let _ = search::search_term(text);
    }
});
