//! Properties that must hold for any input at all: no panics, spans in
//! bounds and on character boundaries, bounded work.

use std::sync::OnceLock;

use proptest::prelude::*;

use crate::matcher::MAX_SCAN_BYTES;
use crate::{normalise, Matcher};

fn matcher() -> &'static Matcher {
    static MATCHER: OnceLock<Matcher> = OnceLock::new();
    MATCHER.get_or_init(|| Matcher::shipped().unwrap())
}

fn check_spans(text: &str) {
    let n = normalise(text);
    let len = n.as_str().len();
    assert!(n.as_str().starts_with(' ') && n.as_str().ends_with(' '));
    for start in 0..len {
        let span = n.original_span(start..(start + 1).min(len));
        assert!(span.end <= text.len());
        assert!(text.is_char_boundary(span.start) && text.is_char_boundary(span.end));
    }
    for view in [n.joined(), n.squeezed().0] {
        let l = view.as_str().len();
        let span = view.original_span(0..l);
        assert!(span.end <= text.len());
    }
    for hit in matcher().scan(text) {
        assert!(hit.span.start < hit.span.end && hit.span.end <= text.len());
        assert!(text.get(hit.span.clone()).is_some(), "{hit:?}");
        assert!((1..=5).contains(&hit.term_severity) && hit.severity <= 5);
    }
}

/// Text built from pieces that exercise every path of the normaliser.
fn tricky() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("kill".to_string()),
        Just("myself".to_string()),
        Just("s u i c i d e".to_string()),
        Just("5u1c1d3".to_string()),
        Just("%".to_string()),
        Just("%C3".to_string()),
        Just("%41".to_string()),
        Just("ł".to_string()),
        Just("İ".to_string()),
        Just("\u{200B}".to_string()),
        Just("e\u{301}".to_string()),
        Just("ﬁ".to_string()),
        Just("!".to_string()),
        Just("$".to_string()),
        Just("lll".to_string()),
        Just(" ".to_string()),
        Just("'".to_string()),
        Just("ᄀ".to_string()),
        Just("㍿".to_string()),
        any::<char>().prop_map(String::from),
        "[a-z0-9 .%@$!|]{0,6}",
    ];
    prop::collection::vec(piece, 0..24).prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_strings_never_panic_and_spans_hold(text in any::<String>()) {
        check_spans(&text);
    }

    #[test]
    fn tricky_strings_never_panic_and_spans_hold(text in tricky()) {
        check_spans(&text);
    }

    #[test]
    fn arbitrary_bytes_read_lossily_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check_spans(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn normalising_is_idempotent_on_its_output(text in "[a-zA-Z0-9 ]{0,40}") {
        let once = normalise(&text).as_str().to_string();
        let twice = normalise(&once).as_str().to_string();
        prop_assert_eq!(once, twice);
    }
}

#[test]
fn huge_inputs_are_bounded() {
    // Only the first MAX_SCAN_BYTES are read, however long the input:
    // no hit lies beyond them. (Time is not asserted: the machines that
    // run the tests are too noisy; a quadratic path would show as a test
    // that never ends.)
    let huge = "suicide ".repeat(MAX_SCAN_BYTES / 4);
    let hits = matcher().scan(&huge);
    assert!(!hits.is_empty());
    assert!(hits.iter().all(|h| h.span.end <= MAX_SCAN_BYTES));
    let stretched = "k".repeat(4 * MAX_SCAN_BYTES);
    assert!(matcher().scan(&stretched).is_empty());
    let spelled = "a ".repeat(2 * MAX_SCAN_BYTES);
    assert!(matcher()
        .scan(&spelled)
        .iter()
        .all(|h| h.span.end <= MAX_SCAN_BYTES));
}

/// The fast path for runs of letters gives exactly what the byte-at-a-time
/// normaliser gives.
fn check_fast_path(text: &str) {
    let fast = normalise(text);
    let reference = crate::normalise::normalise_bytewise(text);
    assert_eq!(fast.parts(), reference.parts(), "{text:?}");
}

/// Windowed joining finds, inside the runs, what joining all of it finds.
fn check_joined_windows(text: &str) {
    let n = normalise(text);
    let whole = n.joined();
    let (near, runs) = n.joined_near(8);
    for run in &runs {
        let inside = |view: &crate::Normalised| -> Vec<String> {
            let s = view.as_str();
            s.split(' ')
                .scan(0usize, |at, word| {
                    let start = *at;
                    *at += word.len() + 1;
                    Some((start, word))
                })
                .filter(|(start, word)| {
                    !word.is_empty() && {
                        let span = view.original_span(*start..start + word.len());
                        span.start < run.end && run.start < span.end
                    }
                })
                .map(|(_, word)| word.to_string())
                .collect()
        };
        assert_eq!(inside(&near), inside(&whole), "{text:?}");
    }
}

/// The joined screen's bytes (built from the runs the normaliser
/// recorded) are the spanned joined view's (built by cutting the text
/// into words), and its runs lie where that view's runs lie.
fn check_joined_bytes(text: &str) {
    let n = normalise(text);
    for margin in [0, 3, 8, 38] {
        let (view, runs) = n.joined_near(margin);
        let mut bytes = Vec::new();
        let mut view_runs = Vec::new();
        n.joined_bytes_near(margin, &mut bytes, &mut view_runs);
        assert_eq!(bytes, view.bytes(), "{text:?} at {margin}");
        let mapped: Vec<_> = view_runs
            .iter()
            .map(|r| view.original_span(r.clone()))
            .collect();
        assert_eq!(mapped, runs, "{text:?} at {margin}");
    }
}

/// Prose with the disguises mixed in: runs of plain words, single and
/// doubled spaces and line breaks, capitals, one-letter words, leetspeak,
/// separators inside words, percent and plus encoding, stretched letters
/// and Unicode, so that plain runs start and stop at every kind of byte.
fn prose() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => "[a-zA-Z]{1,9}",
        3 => Just(" ".to_string()),
        1 => Just("\n".to_string()),
        1 => Just("  ".to_string()),
        1 => Just(" \n\t\r".to_string()),
        1 => "[a-z]",
        1 => Just("a b c".to_string()),
        1 => Just("U.K.".to_string()),
        1 => Just("s.u.i.c.i.d.e".to_string()),
        1 => Just("k1ll".to_string()),
        1 => Just("5u1c1d3".to_string()),
        1 => Just("2026".to_string()),
        1 => Just("self-harm".to_string()),
        1 => Just("don't".to_string()),
        1 => Just("%6B%69ll+me".to_string()),
        1 => Just("killllll".to_string()),
        1 => Just("żółw".to_string()),
        1 => Just("рorn".to_string()),
        1 => Just("ｋｉｌｌ".to_string()),
        1 => Just("\u{200B}".to_string()),
        1 => Just("ß".to_string()),
        1 => Just("ü".to_string()),
        1 => Just("'".to_string()),
        1 => "[uU]{1,3}",
        1 => "[.,!?@$|()\\-]",
        1 => any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn fast_path_agrees_with_bytewise_on_prose(text in prose()) {
        check_fast_path(&text);
    }

    #[test]
    fn fast_path_agrees_with_bytewise(text in tricky()) {
        check_fast_path(&text);
    }

    #[test]
    fn fast_path_agrees_with_bytewise_on_anything(text in any::<String>()) {
        check_fast_path(&text);
    }

    #[test]
    fn joined_windows_agree_with_joining_everything(text in tricky()) {
        check_joined_windows(&text);
    }

    #[test]
    fn joined_bytes_are_the_joined_view_on_prose(text in prose()) {
        check_joined_bytes(&text);
    }

    #[test]
    fn joined_bytes_are_the_joined_view(text in tricky()) {
        check_joined_bytes(&text);
    }

    #[test]
    fn joined_bytes_are_the_joined_view_on_anything(text in any::<String>()) {
        check_joined_bytes(&text);
    }
}
