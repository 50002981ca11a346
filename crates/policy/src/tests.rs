//! Precedence, decision and engine tests.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use sheepdog_lists::{parse::parse_str, ListFormat, Snapshot, SnapshotBuilder};

use crate::*;

fn snapshot() -> Snapshot {
    let mut b = SnapshotBuilder::new();
    let lists: &[(&str, bool, Option<&str>, ListFormat, &str)] = &[
        (
            "iwf",
            true,
            Some("iwf"),
            ListFormat::Urls,
            "abuse-example.invalid/gallery/1\nwhole-abuse.invalid\n",
        ),
        (
            "ctiru",
            true,
            Some("ctiru"),
            ListFormat::Urls,
            "terror-example.invalid/video\n",
        ),
        (
            "gambling",
            false,
            Some("gambling"),
            ListFormat::Domains,
            "example-casino.test\nexample-bingo.test\n",
        ),
        (
            "games",
            false,
            Some("games"),
            ListFormat::Domains,
            "example-games.test\nexample-casino.test\n",
        ),
        (
            "social",
            false,
            Some("social-networking"),
            ListFormat::Adblock,
            "||example-social.test^\n@@||help.example-social.test^\n",
        ),
        (
            "mixed",
            false,
            None,
            ListFormat::Domains,
            "example-news.test\n",
        ),
    ];
    for (name, legal, cat, format, text) in lists {
        let id = b.add_list(name, *legal, *cat).unwrap();
        let r = parse_str(text, *format, name, &mut |o, e| b.add_entry(id, None, o, e));
        b.add_report(id, r);
    }
    b.build().unwrap()
}

const DOC: &str = r#"
fallback_group = "unsigned"

[school]
name = "Test Primary"
time_zone = "Europe/London"

[[terms]]
start = "2026-09-03"
end = "2026-10-23"

[[schedules]]
name = "lunchtime"
days = ["weekdays"]
start = "12:00"
end = "13:00"
term_time_only = true

[[schedules]]
name = "night"
days = ["all"]
start = "22:00"
end = "06:00"

[local]
deny = ["blocked-everywhere.test"]
allow = ["example-bingo.test"]

[[groups]]
name = "ks2"
default = "allow"
deny = ["example-news.test"]
allow = ["good.example-news.test", "whole-abuse.invalid", "abuse-example.invalid"]
[groups.categories]
gambling = "block"
games = "warn"
social-networking = "block"
[[groups.schedule]]
schedule = "lunchtime"
category = "games"
action = "allow"
[[groups.exceptions]]
target = "example-social.test"
action = "allow"
start = "2026-10-05T09:00:00Z"
end = "2026-10-05T10:00:00Z"
reason = "Year 5 lesson on online safety"
[[groups.exceptions]]
target = "example-games.test"
action = "allow"
start = "2026-10-05T09:00:00Z"
end = "2026-10-05T10:00:00Z"
reason = "lesson"

[[groups]]
name = "staff"
default = "allow"
[groups.categories]
gambling = "monitor"
[[groups.schedule]]
schedule = "night"
action = "block"

[[groups]]
name = "unsigned"
default = "block"
"#;

fn policy() -> CompiledPolicy {
    let doc = PolicyDocument::from_toml(DOC).unwrap();
    CompiledPolicy::compile(&doc, Arc::new(snapshot())).unwrap()
}

fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    chrono_tz::Europe::London
        .with_ymd_and_hms(y, m, d, h, min, 0)
        .single()
        .unwrap()
        .with_timezone(&Utc)
}

/// Monday 5 October 2026, 09:30 local (in term, lesson time).
fn lesson() -> DateTime<Utc> {
    at(2026, 10, 5, 10, 30)
}

fn decide(p: &CompiledPolicy, group: &str, target: Target<'_>, when: DateTime<Utc>) -> Decision {
    p.decide(&Query {
        group,
        target,
        at: when,
    })
}

fn name(p: &CompiledPolicy, group: &str, n: &str, when: DateTime<Utc>) -> Decision {
    decide(p, group, Target::Name(n), when)
}

#[test]
fn step1_illegal_beats_everything() {
    let p = policy();
    // ks2 has local allow entries for both hosts; they make no difference.
    let d = decide(
        &p,
        "ks2",
        Target::Url("http://abuse-example.invalid/gallery/1"),
        lesson(),
    );
    assert_eq!(d.action, Action::Block);
    assert!(d.illegal);
    assert_eq!(d.stage, Stage::Illegal);
    assert_eq!(d.list.as_deref(), Some("iwf"));
    assert_eq!(d.category.as_deref(), Some("iwf"));
    assert!(d.reason.contains("cannot be unblocked"), "{}", d.reason);
    let d = name(&p, "staff", "www.whole-abuse.invalid", lesson());
    assert!(!d.illegal, "exact host entries do not cover subdomains");
    let d = name(&p, "staff", "whole-abuse.invalid", lesson());
    assert!(d.illegal);
    // Unknown groups and the fallback: still illegal.
    let d = decide(
        &p,
        "nobody",
        Target::Url("terror-example.invalid/video/2"),
        lesson(),
    );
    assert!(d.illegal);
    // A URL entry matches the URL, not its whole host.
    let d = decide(
        &p,
        "staff",
        Target::Url("http://abuse-example.invalid/about"),
        lesson(),
    );
    assert!(!d.illegal);
    assert_eq!(d.action, Action::Allow);
}

#[test]
fn illegal_categories_cannot_be_allowed_by_a_document() {
    for bad in [
        "[groups.categories]\niwf = \"allow\"\n",
        "[groups.categories]\nctiru = \"monitor\"\n",
        "[[groups.schedule]]\nschedule = \"s\"\ncategory = \"iwf\"\naction = \"allow\"\n",
    ] {
        let text = format!(
            "[school]\nname = \"x\"\n[[schedules]]\nname = \"s\"\ndays = [\"all\"]\nstart = \"00:00\"\nend = \"24:00\"\n[[groups]]\nname = \"g\"\n{bad}"
        );
        let doc = PolicyDocument::from_toml(&text).unwrap();
        let err = CompiledPolicy::compile(&doc, Arc::new(snapshot())).unwrap_err();
        assert!(matches!(err, PolicyError::IllegalOverride { .. }), "{err}");
    }
}

#[test]
fn step2_local_lists_beat_exceptions_schedules_and_categories() {
    let p = policy();
    // School-wide deny beats the group default allow.
    let d = name(&p, "staff", "www.blocked-everywhere.test", lesson());
    assert_eq!((d.action, d.stage), (Action::Block, Stage::LocalList));
    // School-wide allow beats the gambling category block.
    let d = name(&p, "ks2", "example-bingo.test", lesson());
    assert_eq!((d.action, d.stage), (Action::Allow, Stage::LocalList));
    assert_eq!(d.rule.as_deref(), Some("example-bingo.test"));
    // Longest match: group deny example-news.test, group allow good.example-news.test.
    let d = name(&p, "ks2", "a.example-news.test", lesson());
    assert_eq!(d.action, Action::Block);
    let d = name(&p, "ks2", "good.example-news.test", lesson());
    assert_eq!(d.action, Action::Allow);
    assert!(d.reason.contains("local allow"), "{}", d.reason);
}

#[test]
fn step3_exceptions_beat_schedules_and_categories_and_expire() {
    let p = policy();
    let inside = Utc.with_ymd_and_hms(2026, 10, 5, 9, 30, 0).unwrap();
    let d = name(&p, "ks2", "www.example-social.test", inside);
    assert_eq!((d.action, d.stage), (Action::Allow, Stage::Exception));
    assert!(d.reason.contains("Year 5 lesson"), "{}", d.reason);
    // After the end it has dropped out: the category applies again.
    let after = Utc.with_ymd_and_hms(2026, 10, 5, 10, 0, 0).unwrap();
    let d = name(&p, "ks2", "www.example-social.test", after);
    assert_eq!((d.action, d.stage), (Action::Block, Stage::Category));
    assert_eq!(p.expired_exceptions(after).len(), 2);
    assert!(p.expired_exceptions(inside).is_empty());
}

#[test]
fn approved_requests_reach_a_running_engine_and_lapse() {
    let doc = PolicyDocument::from_toml(DOC).unwrap();
    let engine = Engine::new(CompiledPolicy::compile(&doc, Arc::new(snapshot())).unwrap());
    let start = Utc.with_ymd_and_hms(2026, 10, 6, 9, 0, 0).unwrap();
    let end = start + chrono::Duration::hours(1);
    let during = start + chrono::Duration::minutes(30);
    let ask = |group: &str| {
        (
            group.to_owned(),
            ExceptionDef {
                target: "example-casino.test".to_owned(),
                action: Action::Allow,
                start,
                end,
                reason: "REQ-2026-0001 maths lesson on probability".to_owned(),
                requested_by: Some("account:4:teacher".to_owned()),
                approved_by: Some("account:2:tech".to_owned()),
            },
        )
    };
    let query = |group: &'static str, when| Query {
        group,
        target: Target::Name("example-casino.test"),
        at: when,
    };
    assert_eq!(engine.verdict(&query("ks2", during)).action, Action::Block);
    let (with, unplaced) = doc.with_exceptions([ask("ks2"), ask("no-such-group")]);
    assert_eq!(unplaced.len(), 1);
    engine.recompile(&with).unwrap();
    assert_eq!(engine.verdict(&query("ks2", during)).action, Action::Allow);
    // For that group only, and only until its end.
    let staff = engine.verdict(&query("staff", during));
    assert_eq!(
        (staff.action, staff.stage),
        (Action::Monitor, Stage::Category)
    );
    assert_eq!(
        engine
            .verdict(&query("ks2", end + chrono::Duration::seconds(1)))
            .action,
        Action::Block
    );
}

#[test]
fn the_policy_document_says_what_is_blocked_for_whom_and_why() {
    let doc = PolicyDocument::from_toml(DOC).unwrap();
    let p = CompiledPolicy::compile(&doc, Arc::new(snapshot())).unwrap();
    let text = report::policy_markdown(
        &doc,
        &p,
        Utc.with_ymd_and_hms(2026, 10, 5, 8, 0, 0).unwrap(),
    );
    for expected in [
        "# Filtering policy: Test Primary",
        "- **iwf**: 2 entries",
        "- **ctiru**: 1 entries",
        "| Gambling | block |",
        "A device or person the school does not recognise is filtered as **unsigned**.",
        "- Always blocked: blocked-everywhere.test",
        "| example-social.test | allow | 5 October 2026 10:00 | 5 October 2026 11:00 | Year 5 lesson on online safety |",
        "- During **night**: everything block.",
        "| lunchtime | weekdays | 12:00 | 13:00 | term time only |",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    // Ended exceptions are counted, not listed.
    let later = report::policy_markdown(
        &doc,
        &p,
        Utc.with_ymd_and_hms(2026, 10, 6, 8, 0, 0).unwrap(),
    );
    assert!(!later.contains("Year 5 lesson"));
    assert!(later.contains("(2 earlier exceptions have ended.)"));
}

#[test]
fn step4_schedules_beat_categories() {
    let p = policy();
    // Lunchtime in term: games allowed.
    let d = name(&p, "ks2", "example-games.test", at(2026, 10, 6, 12, 15));
    assert_eq!((d.action, d.stage), (Action::Allow, Stage::Schedule));
    // Lesson time: games warn (category).
    let d = name(&p, "ks2", "example-games.test", at(2026, 10, 6, 11, 0));
    assert_eq!((d.action, d.stage), (Action::Warn, Stage::Category));
    // Lunchtime in the holidays: the schedule is term-time only.
    let d = name(&p, "ks2", "example-games.test", at(2026, 10, 27, 12, 15));
    assert_eq!(d.stage, Stage::Category);
    // A schedule rule without category covers everything (staff at night).
    let d = name(&p, "staff", "example.test", at(2026, 10, 6, 23, 30));
    assert_eq!((d.action, d.stage), (Action::Block, Stage::Schedule));
}

#[test]
fn step5_most_restrictive_category_and_list_exceptions() {
    let p = policy();
    // example-casino.test is gambling (block) and games (warn): block.
    let d = name(&p, "ks2", "www.example-casino.test", at(2026, 10, 6, 11, 0));
    assert_eq!((d.action, d.stage), (Action::Block, Stage::Category));
    assert_eq!(d.category.as_deref(), Some("gambling"));
    assert_eq!(d.list.as_deref(), Some("gambling"));
    assert_eq!(
        d.rule.as_deref(),
        Some("example-casino.test (and subdomains)")
    );
    // The social list's @@ exception cancels its own rule.
    let d = name(
        &p,
        "ks2",
        "help.example-social.test",
        at(2026, 10, 6, 11, 0),
    );
    assert_eq!((d.action, d.stage), (Action::Allow, Stage::GroupDefault));
    // Staff: gambling monitored.
    let d = name(&p, "staff", "example-casino.test", at(2026, 10, 6, 11, 0));
    assert_eq!(d.action, Action::Monitor);
}

#[test]
fn step6_group_default_and_fallback() {
    let p = policy();
    let d = name(&p, "ks2", "example.test", lesson());
    assert_eq!((d.action, d.stage), (Action::Allow, Stage::GroupDefault));
    let d = name(&p, "visitor-laptop", "example.test", lesson());
    assert_eq!((d.action, d.stage), (Action::Block, Stage::GroupDefault));
    assert_eq!(d.group.as_deref(), Some("unsigned"));
    let d = name(&p, "ks2", "bad name", lesson());
    assert_eq!((d.action, d.stage), (Action::Block, Stage::InvalidTarget));
    // Unicode and punycode spellings decide alike.
    let a = name(&p, "ks2", "EXAMPLE-Casino.test.", lesson());
    assert_eq!(a.action, Action::Block);
}

#[test]
fn engine_swaps_without_stopping_decisions() {
    let engine = Arc::new(Engine::new(policy()));
    let q = |n: &'static str| Query {
        group: "ks2",
        target: Target::Name(n),
        at: lesson(),
    };
    assert_eq!(
        engine.decide(&q("example-casino.test")).action,
        Action::Block
    );
    let reader = {
        let engine = engine.clone();
        std::thread::spawn(move || {
            for _ in 0..2000 {
                let d = engine.decide(&q("example-casino.test"));
                assert!(matches!(d.action, Action::Block | Action::Allow));
            }
        })
    };
    for _ in 0..20 {
        let doc = PolicyDocument::from_toml(DOC).unwrap();
        engine.swap(CompiledPolicy::compile(&doc, Arc::new(Snapshot::empty())).unwrap());
        engine.swap(policy());
    }
    reader.join().unwrap();
    // With an empty snapshot nothing is categorised.
    let doc = PolicyDocument::from_toml(DOC).unwrap();
    engine.swap(CompiledPolicy::compile(&doc, Arc::new(Snapshot::empty())).unwrap());
    assert_eq!(
        engine.decide(&q("example-casino.test")).action,
        Action::Allow
    );
}

#[test]
fn a_reader_never_frees_a_replaced_policy() {
    let engine = Engine::new(policy());
    // A reader holds the current policy across a swap ...
    let held = engine.current();
    let weak = Arc::downgrade(&held);
    drop(engine.swap(policy()));
    assert_eq!(engine.reclaim(), 1);
    // ... and lets go: its drop is a decrement; the retired list still
    // holds the policy, so the reader did not free it.
    drop(held);
    assert!(weak.upgrade().is_some());
    // The reload side frees it.
    assert_eq!(engine.reclaim(), 0);
    assert!(weak.upgrade().is_none());
    // Without readers, the next reclaim frees the old policy.
    let weak = Arc::downgrade(&engine.current());
    drop(engine.swap(policy()));
    assert!(weak.upgrade().is_some());
    assert_eq!(engine.reclaim(), 0);
    assert!(weak.upgrade().is_none());
}

#[test]
fn verdict_handles_many_hits_and_exceptions() {
    // More hits than the inline buffer holds, and an exception in one list.
    let mut b = SnapshotBuilder::new();
    let mut text = String::new();
    for i in 0..20 {
        let id = b.add_list(&format!("l{i}"), false, Some("games")).unwrap();
        text.clear();
        text.push_str("a.b.c.d.test\n||b.c.d.test^\n");
        if i == 7 {
            text.push_str("@@||c.d.test^\n");
        }
        let report = parse_str(&text, ListFormat::Adblock, "t", &mut |o, e| {
            b.add_entry(id, None, o, e)
        });
        b.add_report(id, report);
    }
    let doc = PolicyDocument::from_toml(DOC).unwrap();
    let p = CompiledPolicy::compile(&doc, Arc::new(b.build().unwrap())).unwrap();
    let q = Query {
        group: "ks2",
        target: Target::Name("x.a.b.c.d.test"),
        at: lesson(),
    };
    let v = p.verdict(&q);
    let d = p.decide(&q);
    assert_eq!(v.action, d.action);
    let hit = v.hit.unwrap();
    assert_ne!(hit.list, 7, "the excepted list must not decide");
}

#[test]
fn documents_refuse_unknown_fields_and_bad_values() {
    assert!(
        PolicyDocument::from_toml("[school]\nname=\"x\"\ncolour=\"red\"\ngroups=[]\n").is_err()
    );
    let doc = PolicyDocument::from_toml(
        "[school]\nname=\"x\"\ntime_zone=\"Mars/Olympus\"\n[[groups]]\nname=\"g\"\n",
    )
    .unwrap();
    assert!(CompiledPolicy::compile(&doc, Arc::new(Snapshot::empty())).is_err());
    let doc = PolicyDocument::from_toml("[school]\nname=\"x\"\n[[groups]]\nname=\"g\"\n[groups.categories]\nnot-a-category=\"block\"\n").unwrap();
    assert!(CompiledPolicy::compile(&doc, Arc::new(Snapshot::empty())).is_err());
}

#[test]
fn shipped_example_policy_compiles() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist/policy.example.toml");
    if let Ok(doc) = PolicyDocument::load(&path) {
        let base = path.parent().unwrap();
        let (snap, outcomes) = build_snapshot(&doc, base, None).unwrap();
        for o in &outcomes {
            assert!(o.warning.is_none(), "{:?}", o.warning);
        }
        let p = CompiledPolicy::compile(&doc, Arc::new(snap)).unwrap();
        let d = p.decide(&Query {
            group: "ks2",
            target: Target::Url("http://csam-example-1.invalid/gallery/0001.html"),
            at: Utc::now(),
        });
        assert!(d.illegal);
    }
}

proptest! {
    /// Whatever the group, time or local lists say, illegal content is blocked.
    #[test]
    fn illegal_is_always_blocked(
        group in prop_oneof![Just("ks2"), Just("staff"), Just("unsigned"), Just("other")],
        minutes in 0i64..(60 * 24 * 400),
        sub in "([a-z]{1,5}\\.){0,2}",
    ) {
        let p = policy();
        let when = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::minutes(minutes);
        let url = format!("http://abuse-example.invalid/gallery/1/{sub}");
        let d = decide(&p, group, Target::Url(&url), when);
        prop_assert!(d.illegal);
        prop_assert_eq!(d.action, Action::Block);
        let n = "whole-abuse.invalid";
        let d = decide(&p, group, Target::Name(n), when);
        prop_assert!(d.illegal);
    }

    /// Local lists: the longest listed suffix of the name decides, whatever
    /// its length (decisions skip suffixes no local name is as long as).
    #[test]
    fn local_lists_match_the_longest_listed_suffix(
        prefix in "([a-z]{1,7}\\.){0,3}",
        base in prop_oneof![
            Just("example-news.test"),
            Just("good.example-news.test"),
            Just("example-bingo.test"),
            Just("blocked-everywhere.test"),
            Just("news.test"),
            Just("xample-news.test"),
            Just("test"),
        ],
    ) {
        let p = policy();
        let listed = [
            ("example-news.test", Action::Block),
            ("good.example-news.test", Action::Allow),
            ("example-bingo.test", Action::Allow),
            ("blocked-everywhere.test", Action::Block),
        ];
        let query = format!("{prefix}{base}");
        let mut expected = None;
        let mut start = 0;
        loop {
            let suffix = &query[start..];
            if let Some((_, action)) = listed.iter().find(|(n, _)| *n == suffix) {
                expected = Some(*action);
                break;
            }
            match suffix.find('.') {
                Some(dot) => start += dot + 1,
                None => break,
            }
        }
        let d = name(&p, "ks2", &query, lesson());
        match expected {
            Some(action) => prop_assert_eq!((d.action, d.stage), (action, Stage::LocalList)),
            None => prop_assert_ne!(d.stage, Stage::LocalList),
        }
    }

    /// Decisions never panic, whatever the input.
    #[test]
    fn decide_never_panics(target in "\\PC{0,80}", url in any::<bool>()) {
        let p = policy();
        let t = if url { Target::Url(&target) } else { Target::Name(&target) };
        let _ = decide(&p, "ks2", t, lesson());
    }
}
