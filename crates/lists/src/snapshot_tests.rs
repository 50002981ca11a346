use super::*;
use crate::parse::{parse_str, ListFormat};
use proptest::prelude::*;

fn build(lists: &[(&str, bool, &str, ListFormat, &str)]) -> Snapshot {
    let mut b = SnapshotBuilder::new();
    for (name, legal, category, format, text) in lists {
        let id = b.add_list(name, *legal, Some(category)).unwrap();
        let mut entries = Vec::new();
        let report = parse_str(text, *format, name, &mut |o, e| {
            entries.push((o.line, format!("{e:?}")));
            b.add_entry(id, None, o, e)
        });
        b.add_report(id, report);
    }
    b.build().unwrap()
}

fn hits(s: &Snapshot, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    s.for_each_name_hit(name, |h| {
        out.push(format!(
            "{}:{}:{}",
            s.lists()[usize::from(h.list)].name,
            s.categories()[usize::from(h.category)],
            s.describe_rule(&h, name)
        ))
    });
    out.sort();
    out
}

#[test]
fn suffix_matching_at_label_boundaries() {
    let s = build(&[(
        "gambling",
        false,
        "gambling",
        ListFormat::Domains,
        "example-casino.test\n*.wild.test\n",
    )]);
    assert_eq!(hits(&s, "example-casino.test").len(), 1);
    assert_eq!(
        hits(&s, "www.example-casino.test"),
        vec!["gambling:gambling:example-casino.test (and subdomains)"]
    );
    assert!(hits(&s, "notexample-casino.test").is_empty());
    assert!(hits(&s, "casino.test").is_empty());
    assert!(hits(&s, "wild.test").is_empty());
    assert_eq!(
        hits(&s, "a.wild.test"),
        vec!["gambling:gambling:*.wild.test"]
    );
}

#[test]
fn one_name_in_several_lists_and_categories() {
    let s = build(&[
        ("a", false, "games", ListFormat::Domains, "play.test\n"),
        (
            "b",
            false,
            "social",
            ListFormat::Domains,
            "play.test\nchat.play.test\n",
        ),
        (
            "c",
            false,
            "social",
            ListFormat::Adblock,
            "@@||chat.play.test^\n",
        ),
    ]);
    let h = hits(&s, "chat.play.test");
    assert_eq!(h.len(), 4, "{h:?}");
    assert!(h.contains(&"c:social:exception chat.play.test (and subdomains)".to_owned()));
}

#[test]
fn rpz_exact_and_local_data() {
    let s = build(&[(
        "rpz",
        false,
        "malware",
        ListFormat::Rpz,
        "$ORIGIN rpz.test.\nbad.test CNAME .\nlocal.test A 192.0.2.1\n",
    )]);
    assert_eq!(hits(&s, "bad.test").len(), 1);
    assert!(hits(&s, "www.bad.test").is_empty());
    assert_eq!(s.local_data("local.test").unwrap(), ["A 192.0.2.1"]);
}

#[test]
fn urls_match_the_url_not_the_host() {
    let s = build(&[(
        "iwf",
        true,
        "iwf",
        ListFormat::Urls,
        "abuse-example.invalid/gallery/1\n",
    )]);
    assert!(hits(&s, "abuse-example.invalid").is_empty());
    assert!(s.host_has_url_rules("abuse-example.invalid"));
    let count = |u: &str| {
        let mut n = 0;
        s.for_each_url_hit(&crate::url::parse_url(u).unwrap(), |_| n += 1);
        n
    };
    assert_eq!(count("http://abuse-example.invalid/gallery/1"), 1);
    assert_eq!(count("https://ABUSE-example.invalid/gallery/1?x=2"), 1);
    assert_eq!(count("http://abuse-example.invalid/gallery/2"), 0);
    assert_eq!(count("http://abuse-example.invalid/"), 0);
}

#[test]
fn bad_regexes_are_counted_not_fatal() {
    let s = build(&[(
        "re",
        false,
        "malware",
        ListFormat::Regex,
        "^evil[0-9]+\\.\n(unclosed\n",
    )]);
    assert_eq!(s.lists()[0].report.invalid, 1);
    assert_eq!(s.lists()[0].report.bad_lines[0].line, 2);
    assert_eq!(hits(&s, "evil42.test").len(), 1);
}

#[test]
fn write_and_open_round_trip() {
    let s = build(&[
        (
            "g",
            false,
            "gambling",
            ListFormat::Domains,
            "example-casino.test\nbücher.test\n",
        ),
        ("iwf", true, "iwf", ListFormat::Urls, "x.invalid/p\n"),
        ("re", false, "malware", ListFormat::Regex, "evil\n"),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap.bin");
    s.write_to(&path).unwrap();
    let t = Snapshot::open(&path).unwrap();
    t.verify().unwrap();
    assert!(t.stats().mapped);
    assert_eq!(t.stats().names, 2);
    assert_eq!(
        hits(&t, "www.example-casino.test"),
        hits(&s, "www.example-casino.test")
    );
    assert_eq!(hits(&t, "xn--bcher-kva.test").len(), 1);
    assert_eq!(hits(&t, "evil.test").len(), 1);
    assert_eq!(t.lists(), s.lists());

    // A damaged file is refused, never half-loaded.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[70] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    assert!(Snapshot::open(&path).is_err());
    std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    assert!(Snapshot::open(&path).is_err());
    std::fs::write(&path, b"garbage").unwrap();
    assert!(Snapshot::open(&path).is_err());
}

#[test]
fn one_name_in_several_lists_keeps_every_membership() {
    let s = build(&[
        (
            "a",
            false,
            "gambling",
            ListFormat::Domains,
            "shared.test\nonly-a.test\n",
        ),
        ("b", false, "games", ListFormat::Domains, "*.shared.test\n"),
        ("c", true, "iwf", ListFormat::Urls, "shared.test\n"),
    ]);
    assert_eq!(
        hits(&s, "shared.test"),
        vec![
            "a:gambling:shared.test (and subdomains)",
            "c:iwf:shared.test"
        ]
    );
    assert_eq!(
        hits(&s, "www.shared.test"),
        vec![
            "a:gambling:shared.test (and subdomains)",
            "b:games:*.shared.test"
        ]
    );
    assert!(hits(&s, "notshared.test").is_empty());
    assert!(hits(&s, "test").is_empty());
}

#[test]
fn names_with_many_labels_are_probed_in_rounds() {
    let s = build(&[(
        "l",
        false,
        "c",
        ListFormat::Domains,
        "test\nc.d.test\n3.4.5.6.7.8.9.a.b.c.d.test\n1.2.3.4.5.6.7.8.9.a.b.c.d.test\n",
    )]);
    let q = "0.1.2.3.4.5.6.7.8.9.a.b.c.d.test";
    let mut lens = Vec::new();
    s.for_each_name_hit(q, |h| {
        if let HitSource::Name { suffix_len, .. } = h.source {
            lens.push(suffix_len);
        }
    });
    assert_eq!(lens, vec![4, 8, 26, 30]);
}

#[test]
fn a_damaged_name_index_never_crashes_a_lookup() {
    let text: String = (0..300).map(|i| format!("n{i}.example.test\n")).collect();
    let s = build(&[("l", false, "c", ListFormat::Domains, &text)]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap.bin");
    s.write_to(&path).unwrap();
    let good = std::fs::read(&path).unwrap();
    let index_len = s.stats().index_bytes as usize;
    let index_start = good.len() - index_len;
    for (k, at) in (index_start..good.len()).step_by(7).enumerate() {
        let mut bytes = good.clone();
        bytes[at] ^= 1 << (k % 8);
        std::fs::write(&path, &bytes).unwrap();
        // Opening reads only the header; a damaged body is found by
        // `verify` and can never make a lookup panic or read out of range.
        if let Ok(t) = Snapshot::open(&path) {
            assert!(t.verify().is_err());
            for i in (0..300).step_by(13) {
                let _ = hits(&t, &format!("www.n{i}.example.test"));
            }
        }
        // A resident copy is read in full, and checked: refused, with the
        // file named.
        match Snapshot::open_resident(&path) {
            Ok(_) => panic!("a damaged index at byte {at} was taken into memory"),
            Err(e) => assert!(e.to_string().contains("snap.bin"), "{e}"),
        }
    }
    std::fs::write(&path, &good).unwrap();
    Snapshot::open_resident(&path).unwrap().verify().unwrap();
}

#[test]
fn empty_snapshot_matches_nothing() {
    let s = Snapshot::empty();
    assert!(hits(&s, "example.test").is_empty());
}

fn label() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,8}"
}

proptest! {
    /// A rule for a name covers exactly that name and the names below it.
    #[test]
    fn suffix_matching_agrees_with_a_naive_model(
        rules in proptest::collection::vec(proptest::collection::vec(label(), 1..4), 1..20),
        query in proptest::collection::vec(label(), 1..5),
    ) {
        let rules: Vec<String> = rules.iter().map(|r| r.join(".")).collect();
        let text = rules.join("\n");
        let s = build(&[("l", false, "c", ListFormat::Domains, &text)]);
        let q = query.join(".");
        let mut expected: Vec<&String> = rules
            .iter()
            .filter(|r| q == **r || q.ends_with(&format!(".{r}")))
            .collect();
        expected.sort();
        expected.dedup();
        let mut got = Vec::new();
        s.for_each_name_hit(&q, |h| got.push(h));
        prop_assert_eq!(got.len(), expected.len());
    }

    /// Queries under a rule find exactly the rules a naive model finds, with
    /// the matched name's length, in memory and from a mapped file alike.
    #[test]
    fn suffix_hits_agree_with_a_naive_model_in_memory_and_mapped(
        rules in proptest::collection::vec(proptest::collection::vec(label(), 1..4), 1..40),
        pick in 0usize..40,
        prefix in proptest::collection::vec(label(), 0..3),
    ) {
        let rules: Vec<String> = rules.iter().map(|r| r.join(".")).collect();
        let text = rules.join("\n");
        let s = build(&[("l", false, "c", ListFormat::Domains, &text)]);
        let base = &rules[pick % rules.len()];
        let q = if prefix.is_empty() { base.clone() } else { format!("{}.{base}", prefix.join(".")) };
        let mut expected: Vec<u8> = rules
            .iter()
            .filter(|r| q == **r || q.ends_with(&format!(".{r}")))
            .map(|r| r.len() as u8)
            .collect();
        expected.sort();
        expected.dedup();
        let lens = |s: &Snapshot| {
            let mut got = Vec::new();
            s.for_each_name_hit(&q, |h| match h.source {
                HitSource::Name { suffix_len, .. } => got.push(suffix_len),
                _ => got.push(0),
            });
            got
        };
        // Shortest matching name first.
        prop_assert_eq!(lens(&s), expected.clone());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.snap");
        s.write_to(&path).unwrap();
        let t = Snapshot::open(&path).unwrap();
        t.verify().unwrap();
        prop_assert_eq!(lens(&t), expected);
    }

    /// The Unicode and punycode spellings of a rule are one entry.
    #[test]
    fn idna_spellings_are_one_entry(label in "[a-z\u{e0}-\u{fc}]{1,10}") {
        let unicode = format!("{label}.test");
        if let Ok(ascii) = crate::name::normalize_name(&unicode) {
            let text = format!("{unicode}\n{ascii}\n");
            let s = build(&[("l", false, "c", ListFormat::Domains, &text)]);
            prop_assert_eq!(s.stats().names, 1);
            let mut n = 0;
            s.for_each_name_hit(&format!("www.{ascii}"), |_| n += 1);
            prop_assert_eq!(n, 1);
        }
    }
}

#[test]
fn another_snapshot_format_is_refused_with_the_fix() {
    let s = build(&[(
        "gambling",
        false,
        "gambling",
        ListFormat::Domains,
        "example-casino.test\n",
    )]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap.bin");
    s.write_to(&path).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[14..16].copy_from_slice(b"01");
    std::fs::write(&path, &bytes).unwrap();
    let error = Snapshot::open(&path).unwrap_err().to_string();
    assert!(error.contains("format 01"), "{error}");
    assert!(error.contains("sheepdog lists update"), "{error}");
}

proptest! {
    /// A name rule reads as it did when written with `format!`: the
    /// matched suffix, `*.` or ` (and subdomains)` by its mode, and
    /// `exception ` before an exception.
    #[test]
    fn name_rules_are_described_as_before(
        name in "[a-z0-9.-]{0,40}",
        suffix_len in any::<u8>(),
        mode in proptest::sample::select(vec![
            MatchMode::Exact, MatchMode::Subdomains, MatchMode::NameAndSubdomains,
        ]),
        exception in any::<bool>(),
    ) {
        let s = build(&[]);
        let hit = Hit {
            list: 0,
            category: 0,
            exception,
            rpz: None,
            source: HitSource::Name { suffix_len, mode },
        };
        let len = usize::from(suffix_len).min(name.len());
        let matched = &name[name.len() - len..];
        let text = match mode {
            MatchMode::Exact => matched.to_owned(),
            MatchMode::Subdomains => format!("*.{matched}"),
            MatchMode::NameAndSubdomains => format!("{matched} (and subdomains)"),
        };
        let expected = if exception { format!("exception {text}") } else { text };
        prop_assert_eq!(s.describe_rule(&hit, &name), expected);
    }
}
