//! The normaliser and matcher, on any bytes: never panic; every span is in
//! bounds and on character boundaries; the event reader refuses bad lines
//! without panicking.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sheepdog_monitor::{normalise, read_events, Matcher};

fn matcher() -> Option<&'static Matcher> {
    static MATCHER: OnceLock<Option<Matcher>> = OnceLock::new();
    MATCHER.get_or_init(|| Matcher::shipped().ok()).as_ref()
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let normalised = normalise(&text);
    let len = normalised.as_str().len();
    let span = normalised.original_span(0..len);
    assert!(span.end <= text.len() && text.is_char_boundary(span.start));
    if let Some(matcher) = matcher() {
        for hit in matcher.scan(&text) {
            assert!(text.get(hit.span.clone()).is_some(), "{hit:?}");
        }
    }
    for event in read_events(data).take(8) {
        let _ = event;
    }
});
