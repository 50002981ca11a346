//! Matching: every library's terms, context words and exclusions compiled
//! into one multi-pattern automaton, run once over the normalised text.
//!
//! Word boundaries are part of the patterns: normalised text has single
//! spaces between words and a space at each end, so the whole-word term
//! `kill` is the pattern ` kill `, a prefix term is ` suicid`, and an
//! anywhere term has no spaces. A multi-word phrase also gets a variant
//! with its spaces removed (` killmyself `), for hashtags and URL paths
//! that run words together, when that variant is long enough not to
//! collide with ordinary words.
//!
//! A second automaton holds every pattern with its letter runs squeezed,
//! for the squeezed view of stretched text; a hit there counts only when
//! it covers a stretched run, so that `wed` is not read as `weed` but
//! `weeeed` is.

use std::collections::HashMap;
use std::ops::Range;

use aho_corasick::automaton::Automaton as _;
use aho_corasick::dfa::DFA;
use aho_corasick::{Anchored, MatchKind, StartKind};
use serde::Serialize;

use crate::library::{Category, Library, Position};
use crate::normalise::{
    key_of, normalise, normalise_into, squeeze_key, truncate_to_char_boundary, Normalised,
};
use crate::MonitorError;

/// Text beyond this many bytes of one input is not examined, which bounds
/// the work any one input can cause.
pub const MAX_SCAN_BYTES: usize = 1 << 20;

/// How near (in normalised bytes) a context word must be to a hit.
pub const CONTEXT_WINDOW: usize = 48;

/// At most this many hits are reported for one input.
pub const MAX_HITS: usize = 4096;

/// Context words move a hit's severity by these amounts.
pub const RAISE_BY: i8 = 1;
pub const LOWER_BY: i8 = -2;

/// A term found in a text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hit {
    pub category: Category,
    /// The term's severity after context words, 0 to 5; 0 means context
    /// made it innocent (`suicide prevention charity`).
    pub severity: u8,
    /// The severity the library gives the term.
    pub term_severity: u8,
    /// The language of the library term.
    pub language: String,
    /// The term as the library writes it.
    pub term: String,
    /// The library the term came from.
    pub library: String,
    /// Where the hit is in the original text (byte offsets).
    pub span: Range<usize>,
    /// Context words that raised (+) or lowered (-) the severity.
    pub context: i8,
}

#[derive(Debug, Clone)]
enum EntryKind {
    Term { severity: u8, language: usize },
    Raise,
    Lower,
    Exclude { categories: Vec<Category> },
}

#[derive(Debug, Clone)]
struct Entry {
    kind: EntryKind,
    /// For terms, context and category-scoped exclusions.
    category: Option<Category>,
    phrase: String,
    library: usize,
}

/// The compiled libraries. Immutable and shareable between threads.
#[derive(Debug, Clone)]
pub struct Matcher {
    entries: Vec<Entry>,
    libraries: Vec<String>,
    languages: Vec<String>,
    main: Automaton,
    squeezed: Automaton,
}

#[derive(Debug, Clone)]
struct Automaton {
    automaton: DFA,
    /// The pattern texts, for checking the scan against aho-corasick's own.
    #[cfg(test)]
    texts: Vec<String>,
    /// Per pattern: the entries it stands for, and whether the pattern
    /// has a leading and a trailing boundary space.
    patterns: Vec<(Vec<usize>, bool, bool)>,
    /// The longest pattern, in bytes.
    longest: usize,
}

/// A pattern found in one view, in that view's coordinates.
#[derive(Debug, Clone, Copy)]
struct Found {
    entry: usize,
    /// The matched words, without the boundary spaces.
    range: (usize, usize),
}

impl Matcher {
    /// Compiles libraries into a matcher.
    pub fn new(libraries: &[Library]) -> Result<Self, MonitorError> {
        let mut entries = Vec::new();
        let mut names = Vec::new();
        let mut languages: Vec<String> = Vec::new();
        let mut language_index = |language: &str| {
            if let Some(i) = languages.iter().position(|l| l == language) {
                i
            } else {
                languages.push(language.to_string());
                languages.len() - 1
            }
        };
        let mut phrases: Vec<(String, Position)> = Vec::new();
        for (index, library) in libraries.iter().enumerate() {
            names.push(library.library.name.clone());
            for group in &library.terms {
                let language = language_index(
                    group
                        .language
                        .as_deref()
                        .unwrap_or(&library.library.language),
                );
                for phrase in &group.phrases {
                    entries.push(Entry {
                        kind: EntryKind::Term {
                            severity: group.severity,
                            language,
                        },
                        category: Some(group.category),
                        phrase: phrase.clone(),
                        library: index,
                    });
                    phrases.push((phrase.clone(), group.position));
                }
            }
            for context in &library.contexts {
                for (kind, words) in [
                    (EntryKind::Raise, &context.raise),
                    (EntryKind::Lower, &context.lower),
                ] {
                    for phrase in words {
                        entries.push(Entry {
                            kind: kind.clone(),
                            category: Some(context.category),
                            phrase: phrase.clone(),
                            library: index,
                        });
                        phrases.push((phrase.clone(), Position::Word));
                    }
                }
            }
            for exclusion in &library.exclusions {
                for phrase in &exclusion.phrases {
                    entries.push(Entry {
                        kind: EntryKind::Exclude {
                            categories: exclusion.categories.clone(),
                        },
                        category: None,
                        phrase: phrase.clone(),
                        library: index,
                    });
                    phrases.push((phrase.clone(), exclusion.position));
                }
            }
        }
        let keys: Vec<(String, Position)> = phrases
            .iter()
            .map(|(phrase, position)| (key_of(phrase), *position))
            .collect();
        let main = Automaton::build(&keys, |k| k.to_string())?;
        let squeezed = Automaton::build(&keys, squeeze_key)?;
        Ok(Self {
            entries,
            libraries: names,
            languages,
            main,
            squeezed,
        })
    }

    /// The libraries that ship with sheepdog, compiled.
    pub fn shipped() -> Result<Self, MonitorError> {
        Self::new(&Library::shipped()?)
    }

    /// How many patterns the main automaton holds.
    pub fn pattern_count(&self) -> usize {
        self.main.patterns.len()
    }

    /// Finds every term in `text` (its first [`MAX_SCAN_BYTES`]), in order
    /// of position. Hits that context made innocent are kept, with
    /// severity 0, so that the reason for silence can be shown.
    pub fn scan(&self, text: &str) -> Vec<Hit> {
        let text = truncate_to_char_boundary(text, MAX_SCAN_BYTES);
        // One normalisation buffer per thread, reused: most inputs are
        // short, and allocating it per input cost more than matching.
        thread_local! {
            static BASE: std::cell::RefCell<Normalised> = std::cell::RefCell::default();
        }
        BASE.with(|base| match base.try_borrow_mut() {
            Ok(mut base) => {
                normalise_into(text, &mut base);
                self.scan_normalised(&base)
            }
            // Only reachable if scanning re-entered itself; still correct.
            Err(_) => self.scan_normalised(&normalise(text)),
        })
    }

    fn scan_normalised(&self, base: &Normalised) -> Vec<Hit> {
        self.scan_normalised_with(base, true)
    }

    /// `screen`: whether to look for terms in a narrow joined view first
    /// and skip the wide one when there are none (off only in tests, to
    /// show that the screen changes nothing).
    fn scan_normalised_with(&self, base: &Normalised, screen: bool) -> Vec<Hit> {
        let mut hits = Vec::new();
        self.scan_view(base, &self.main, None, &mut hits);
        if base.is_spelled_out() && (!screen || self.joined_terms_possible(base)) {
            // Any exclusion or context word that bears on a hit in a run
            // lies within this margin of it. Hits outside the runs are the
            // base view's to report, with their full context.
            let margin = 2 * self.main.longest + CONTEXT_WINDOW;
            let (view, runs) = base.joined_near(margin);
            let mut joined = Vec::new();
            self.scan_view(&view, &self.main, None, &mut joined);
            hits.extend(joined.into_iter().filter(|hit| {
                runs.iter()
                    .any(|run| hit.span.start < run.end && run.start < hit.span.end)
            }));
        }
        if base.is_stretched() {
            let (view, long_runs) = base.squeezed();
            self.scan_view(&view, &self.squeezed, Some(&long_runs), &mut hits);
        }
        hits.sort_by(|a, b| {
            (a.span.start, a.span.end, &a.term, a.category).cmp(&(
                b.span.start,
                b.span.end,
                &b.term,
                b.category,
            ))
        });
        hits.dedup_by(|a, b| a.span == b.span && a.term == b.term && a.category == b.category);
        subsume(hits)
    }

    /// Whether the joined view may hold a term overlapping a run of
    /// one-letter words. Such a term lies within the longest pattern of
    /// the run, and between two runs joining changes nothing, so a window
    /// of that width joins to the same bytes around the run as the wide
    /// window does; most runs (`U.K. a`) join into nothing the libraries
    /// hold, and then the wide window, which exists for exclusions and
    /// context words, need not be joined and scanned at all.
    fn joined_terms_possible(&self, base: &Normalised) -> bool {
        let (view, runs) = base.joined_near(self.main.longest + 1);
        let mut possible = false;
        self.main
            .each_overlapping(view.bytes(), |m_start, m_end, pattern| {
                let Some((entries, lead, trail)) = self.main.patterns.get(pattern) else {
                    return true;
                };
                let start = m_start + usize::from(*lead);
                let end = m_end - usize::from(*trail);
                if start >= end
                    || !entries
                        .iter()
                        .any(|&e| matches!(self.entries[e].kind, EntryKind::Term { .. }))
                {
                    return true;
                }
                let span = view.original_span(start..end);
                possible = runs
                    .iter()
                    .any(|run| span.start < run.end && run.start < span.end);
                !possible
            });
        possible
    }

    fn scan_view(
        &self,
        view: &Normalised,
        automaton: &Automaton,
        long_runs: Option<&[bool]>,
        hits: &mut Vec<Hit>,
    ) {
        let bytes = view.bytes();
        let mut terms: Vec<Found> = Vec::new();
        let mut exclusions: Vec<Found> = Vec::new();
        let mut raises: Vec<Found> = Vec::new();
        let mut lowers: Vec<Found> = Vec::new();
        automaton.each_overlapping(bytes, |m_start, m_end, pattern| {
            let Some((entries, lead, trail)) = automaton.patterns.get(pattern) else {
                return true;
            };
            let start = m_start + usize::from(*lead);
            let end = m_end - usize::from(*trail);
            if start >= end {
                return true;
            }
            if let Some(long_runs) = long_runs {
                if !long_runs.get(start..end).is_some_and(|r| r.contains(&true)) {
                    return true;
                }
            }
            for &entry in entries {
                let found = Found {
                    entry,
                    range: (start, end),
                };
                match self.entries[entry].kind {
                    EntryKind::Term { .. } => terms.push(found),
                    EntryKind::Exclude { .. } => exclusions.push(found),
                    EntryKind::Raise => raises.push(found),
                    EntryKind::Lower => lowers.push(found),
                }
            }
            hits.len() + terms.len() < MAX_HITS
        });
        if terms.is_empty() {
            return;
        }
        for list in [&mut exclusions, &mut raises, &mut lowers] {
            list.sort_by_key(|f| f.range);
        }
        // Only entries starting in [low, high], found by binary search, so
        // that text full of hits costs linear time, not quadratic.
        let starting_in = |list: &'_ [Found], low: usize, high: usize| -> std::ops::Range<usize> {
            let from = list.partition_point(|f| f.range.0 < low);
            let to = list.partition_point(|f| f.range.0 <= high);
            from..to.max(from)
        };
        let longest = automaton.longest;
        for term in &terms {
            let Entry {
                kind: EntryKind::Term { severity, language },
                category: Some(category),
                phrase,
                library,
            } = &self.entries[term.entry]
            else {
                continue;
            };
            let (start, end) = term.range;
            let excluded = exclusions
                [starting_in(&exclusions, start.saturating_sub(longest), start)]
            .iter()
            .any(|other| match &self.entries[other.entry].kind {
                EntryKind::Exclude { categories } => {
                    end <= other.range.1 && (categories.is_empty() || categories.contains(category))
                }
                _ => false,
            });
            if excluded {
                continue;
            }
            let near = |list: &[Found]| {
                let low = start.saturating_sub(CONTEXT_WINDOW + longest);
                list[starting_in(list, low, end + CONTEXT_WINDOW)]
                    .iter()
                    .any(|other| {
                        self.entries[other.entry].category == Some(*category)
                            && other.range.1 + CONTEXT_WINDOW >= start
                            && (other.range.1 <= start || other.range.0 >= end)
                    })
            };
            let mut context = 0i8;
            if near(&raises) {
                context += RAISE_BY;
            }
            if near(&lowers) {
                context += LOWER_BY;
            }
            let adjusted = (i16::from(*severity) + i16::from(context)).clamp(0, 5);
            hits.push(Hit {
                category: *category,
                severity: u8::try_from(adjusted).unwrap_or(0),
                term_severity: *severity,
                language: self.languages.get(*language).cloned().unwrap_or_default(),
                term: phrase.clone(),
                library: self.libraries.get(*library).cloned().unwrap_or_default(),
                span: view.original_span(start..end),
                context,
            });
        }
    }
}

/// Drops hits that lie inside a longer hit at least as severe: the longer
/// phrase is the more specific reading (`send nudes` is grooming, not
/// pornography; `nagie zdjecia nieletnich` is illegal). `hits` is sorted by
/// start.
fn subsume(hits: Vec<Hit>) -> Vec<Hit> {
    const REACH: usize = 64;
    let covered = |i: usize| {
        let h = &hits[i];
        let len = h.span.end - h.span.start;
        hits.iter()
            .enumerate()
            .skip(i.saturating_sub(REACH))
            .take_while(|(_, o)| o.span.start <= h.span.start)
            .any(|(j, o)| {
                j != i
                    && o.span.end >= h.span.end
                    && o.span.end - o.span.start > len
                    && o.severity >= h.severity
            })
    };
    let keep: Vec<bool> = (0..hits.len()).map(|i| !covered(i)).collect();
    hits.into_iter()
        .zip(keep)
        .filter_map(|(hit, keep)| keep.then_some(hit))
        .collect()
}

impl Automaton {
    fn build(
        keys: &[(String, Position)],
        transform: impl Fn(&str) -> String,
    ) -> Result<Self, MonitorError> {
        let mut by_pattern: HashMap<String, usize> = HashMap::new();
        let mut patterns: Vec<(Vec<usize>, bool, bool)> = Vec::new();
        let mut texts: Vec<String> = Vec::new();
        for (entry, (key, position)) in keys.iter().enumerate() {
            let key = transform(key);
            let mut variants = vec![key.clone()];
            let joined: String = key.chars().filter(|c| *c != ' ').collect();
            if joined != key && joined.len() >= 7 {
                variants.push(joined);
            }
            for variant in variants {
                let (lead, trail) = match position {
                    Position::Word => (true, true),
                    Position::Prefix => (true, false),
                    Position::Anywhere => (false, false),
                };
                let pattern = format!(
                    "{}{variant}{}",
                    if lead { " " } else { "" },
                    if trail { " " } else { "" }
                );
                let index = *by_pattern.entry(pattern.clone()).or_insert_with(|| {
                    texts.push(pattern);
                    patterns.push((Vec::new(), lead, trail));
                    patterns.len() - 1
                });
                if !patterns[index].0.contains(&entry) {
                    patterns[index].0.push(entry);
                }
            }
        }
        let automaton = DFA::builder()
            .match_kind(MatchKind::Standard)
            .start_kind(StartKind::Unanchored)
            // Nearly every pattern starts with a space, so no prefilter
            // could skip ahead usefully.
            .prefilter(false)
            .build(&texts)
            .map_err(|e| MonitorError::Build(e.to_string()))?;
        let longest = texts.iter().map(String::len).max().unwrap_or(0);
        Ok(Self {
            automaton,
            #[cfg(test)]
            texts,
            patterns,
            longest,
        })
    }

    /// Calls `f` with the start, end and pattern of every occurrence of
    /// every pattern in `bytes`, overlapping ones included, in the order
    /// aho-corasick's overlapping search gives them (by end, and at one
    /// end in the automaton's order), until `f` returns false. The same
    /// walk as that search, with its position and state kept in locals
    /// instead of a resumable state: that search cost about 22
    /// instructions per byte.
    #[inline]
    fn each_overlapping(&self, bytes: &[u8], mut f: impl FnMut(usize, usize, usize) -> bool) {
        let dfa = &self.automaton;
        let Ok(mut sid) = dfa.start_state(Anchored::No) else {
            return;
        };
        let mut report = |sid, end: usize| {
            for i in 0..dfa.match_len(sid) {
                let pattern = dfa.match_pattern(sid, i);
                let start = end.saturating_sub(dfa.pattern_len(pattern));
                if !f(start, end, pattern.as_usize()) {
                    return false;
                }
            }
            true
        };
        if dfa.is_match(sid) && !report(sid, 0) {
            return;
        }
        for (at, &byte) in bytes.iter().enumerate() {
            sid = dfa.next_state(Anchored::No, sid, byte);
            // Only dead and match states are special without a prefilter.
            if dfa.is_special(sid)
                && (dfa.is_dead(sid) || (dfa.is_match(sid) && !report(sid, at + 1)))
            {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn library(text: &str) -> Matcher {
        Matcher::new(&[Library::parse(text, "test").unwrap()]).unwrap()
    }

    const SMALL: &str = r#"
        [library]
        name = "test"
        language = "en"

        [[context]]
        category = "suicide"
        raise = ["how to"]
        lower = ["prevention", "charity"]

        [[terms]]
        category = "suicide"
        severity = 3
        phrases = ["suicide", "kill myself", "want to die"]

        [[terms]]
        category = "violence"
        severity = 3
        phrases = ["kill", "shoot"]

        [[terms]]
        category = "drugs"
        severity = 3
        phrases = ["weed"]

        [[terms]]
        category = "pornography"
        severity = 3
        position = "anywhere"
        phrases = ["sex"]

        [[exclude]]
        phrases = ["kill the process", "shoot a basketball"]

        [[exclude]]
        position = "anywhere"
        categories = ["pornography"]
        phrases = ["sussex", "essex"]
    "#;

    fn terms(matcher: &Matcher, text: &str) -> Vec<(String, u8, String)> {
        matcher
            .scan(text)
            .into_iter()
            .map(|h| (h.term, h.severity, text[h.span].to_string()))
            .collect()
    }

    #[test]
    fn whole_words_phrases_and_spans() {
        let m = library(SMALL);
        assert_eq!(
            terms(&m, "I want to K1LL myself"),
            vec![("kill myself".to_string(), 3, "K1LL myself".to_string())]
        );
        assert!(terms(&m, "skills and killer whales").is_empty());
    }

    #[test]
    fn evasions_are_seen_through() {
        let m = library(SMALL);
        for text in [
            "5u1c1d3",
            "s.u.i.c.i.d.e",
            "s u i c i d e",
            "suiciiiide",
            "%73uicide",
            "ѕuicide",
            "SUİCİDE",
            "#killmyself",
        ] {
            assert!(!m.scan(text).is_empty(), "missed {text:?}");
        }
        assert_eq!(terms(&m, "weeeeed")[0].2, "weeeeed");
        assert!(terms(&m, "we wed in may").is_empty());
    }

    #[test]
    fn exclusions_suppress_known_false_positives() {
        let m = library(SMALL);
        assert!(terms(&m, "how to kill the process in linux").is_empty());
        assert!(terms(&m, "how to shoot a basketball").is_empty());
        assert!(terms(&m, "Sussex and Essex").is_empty());
        assert_eq!(terms(&m, "sexting").len(), 1);
        // An exclusion covers only what lies inside it.
        assert_eq!(terms(&m, "kill the process then kill him").len(), 1);
    }

    #[test]
    fn context_words_move_severity() {
        let m = library(SMALL);
        assert_eq!(terms(&m, "how to suicide")[0].1, 4);
        assert_eq!(terms(&m, "suicide prevention charity")[0].1, 1);
        assert_eq!(terms(&m, "suicide")[0].1, 3);
    }

    /// aho-corasick's own overlapping search over the same patterns.
    fn reference_search(automaton: &Automaton) -> aho_corasick::AhoCorasick {
        aho_corasick::AhoCorasick::builder()
            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
            .match_kind(MatchKind::Standard)
            .prefilter(false)
            .build(&automaton.texts)
            .unwrap()
    }

    /// Every occurrence as that search reports it.
    fn reference_with(
        search: &aho_corasick::AhoCorasick,
        bytes: &[u8],
    ) -> Vec<(usize, usize, usize)> {
        search
            .find_overlapping_iter(bytes)
            .map(|m| (m.start(), m.end(), m.pattern().as_usize()))
            .collect()
    }

    fn reference(automaton: &Automaton, bytes: &[u8]) -> Vec<(usize, usize, usize)> {
        static SHIPPED: std::sync::OnceLock<(
            aho_corasick::AhoCorasick,
            aho_corasick::AhoCorasick,
        )> = std::sync::OnceLock::new();
        let m = shipped();
        if std::ptr::eq(automaton, &m.main) || std::ptr::eq(automaton, &m.squeezed) {
            let (main, squeezed) =
                SHIPPED.get_or_init(|| (reference_search(&m.main), reference_search(&m.squeezed)));
            let search = if std::ptr::eq(automaton, &m.main) {
                main
            } else {
                squeezed
            };
            return reference_with(search, bytes);
        }
        reference_with(&reference_search(automaton), bytes)
    }

    fn walked(automaton: &Automaton, bytes: &[u8]) -> Vec<(usize, usize, usize)> {
        let mut found = Vec::new();
        automaton.each_overlapping(bytes, |start, end, pattern| {
            found.push((start, end, pattern));
            true
        });
        found
    }

    fn shipped() -> &'static Matcher {
        static SHIPPED: std::sync::OnceLock<Matcher> = std::sync::OnceLock::new();
        SHIPPED.get_or_init(|| Matcher::shipped().unwrap())
    }

    /// Text made of shipped library phrases, disguised or cut, and noise.
    fn library_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        static PHRASES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        let phrases = PHRASES.get_or_init(|| {
            let mut phrases = Vec::new();
            for library in Library::shipped().unwrap() {
                for group in library.terms {
                    phrases.extend(group.phrases);
                }
                for context in library.contexts {
                    phrases.extend(context.raise);
                    phrases.extend(context.lower);
                }
                for exclusion in library.exclusions {
                    phrases.extend(exclusion.phrases);
                }
            }
            phrases
        });
        let phrase = (0..phrases.len()).prop_map(move |i| phrases[i].clone());
        let piece = prop_oneof![
            4 => phrase.clone(),
            1 => phrase.clone().prop_map(|p| p.replace(' ', "")),
            1 => phrase.clone().prop_map(|p| p.chars().flat_map(|c| [c, ' ']).collect()),
            1 => phrase.clone().prop_map(|p| p.chars().flat_map(|c| [c, c, c]).collect()),
            1 => (phrase, 0usize..8).prop_map(|(p, cut)| p.chars().skip(cut).collect()),
            2 => "[a-z]{1,8}",
            1 => "[ .,!?'@$0-9-]{1,3}",
            1 => any::<char>().prop_map(String::from),
        ];
        proptest::collection::vec((piece, prop_oneof![Just(" "), Just(""), Just(", ")]), 0..24)
            .prop_map(|parts| parts.into_iter().map(|(p, g)| p + g).collect())
    }

    fn check_walk(text: &str) {
        let m = shipped();
        let base = normalise(text);
        let views = [
            (&m.main, base.bytes().to_vec()),
            (&m.squeezed, base.squeezed().0.bytes().to_vec()),
            (&m.main, base.joined().bytes().to_vec()),
            (&m.main, text.as_bytes().to_vec()),
        ];
        for (automaton, bytes) in &views {
            assert_eq!(
                walked(automaton, bytes),
                reference(automaton, bytes),
                "{text:?}"
            );
        }
    }

    /// Scanning with the narrow screen before the joined view finds what
    /// scanning the joined view every time finds.
    fn check_screen(text: &str) {
        let m = shipped();
        let base = normalise(text);
        assert_eq!(
            m.scan_normalised_with(&base, true),
            m.scan_normalised_with(&base, false),
            "{text:?}"
        );
    }

    /// Library phrases spelled out next to one-letter words, context
    /// words, exclusions and other phrases.
    fn spelled_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let spelled = library_text().prop_map(|t| {
            t.chars()
                .flat_map(|c| [c, if c == ' ' { '.' } else { ' ' }])
                .collect::<String>()
        });
        let piece = prop_oneof![
            2 => library_text(),
            2 => spelled,
            1 => Just("U.K. a i 7 x".to_string()),
            1 => Just("k y s".to_string()),
            1 => Just("s.u.i.c.i.d.e".to_string()),
            1 => "([a-z] ){1,5}",
        ];
        proptest::collection::vec(piece, 0..6).prop_map(|p| p.join(" "))
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1024))]

        #[test]
        fn the_walk_finds_what_overlapping_search_finds(text in library_text()) {
            check_walk(&text);
        }

        #[test]
        fn the_joined_screen_changes_no_hit(text in spelled_text()) {
            check_screen(&text);
        }
    }

    #[test]
    fn the_joined_screen_keeps_spelled_out_terms() {
        for text in [
            "k y s",
            "i said k.y.s to him",
            "s u i c i d e prevention charity",
            "U.K. a i 7 x",
            "how to s h o o t a basketball",
        ] {
            check_screen(text);
        }
        assert!(!shipped().scan("just k y s already").is_empty());
    }

    #[test]
    fn the_walk_agrees_with_overlapping_search_at_the_edges() {
        check_walk("");
        check_walk("kill myself suicide sexchat porn weed sussex how to kill");
        // Libraries refuse phrases with nothing to match, but a pattern
        // with nothing in it would match at every position, the start
        // included, and the walk reports it as the search does.
        let keys = [
            (String::new(), Position::Anywhere),
            ("weed".to_string(), Position::Anywhere),
            ("we".to_string(), Position::Word),
        ];
        let automaton = Automaton::build(&keys, |k| k.to_string()).unwrap();
        for text in ["", "weed", " we weed "] {
            let found = walked(&automaton, text.as_bytes());
            assert_eq!(found, reference(&automaton, text.as_bytes()), "{text:?}");
            assert!(found.len() > text.len(), "{found:?}");
        }
        let m = shipped();
        assert_eq!(m.scan("weed").len(), 1);
    }

    #[test]
    fn shipped_libraries_compile() {
        let m = Matcher::shipped().unwrap();
        assert!(m.pattern_count() > 500, "{}", m.pattern_count());
    }
}
