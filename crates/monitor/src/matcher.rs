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
//! A second set holds every pattern with its letter runs squeezed, for
//! the squeezed view of stretched text; a hit there counts only when it
//! covers a stretched run, so that `wed` is not read as `weed` but
//! `weeeed` is.
//!
//! Nearly every pattern is whole words, and those are not run through an
//! automaton at all: each word of the text is looked up in a hash table of
//! the patterns' first words, and the few candidates are checked against
//! the words that follow. Only the few dozen prefix and anywhere patterns
//! (` suicid`, `porn`) go through an Aho-Corasick automaton, small enough
//! to stay in cache and to skip ahead with a prefilter. Together they find
//! exactly the occurrences one automaton of all the patterns would, in the
//! same order (the tests keep that automaton as the oracle).

use std::collections::HashMap;
use std::ops::Range;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use foldhash::fast::FixedState;
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

/// One set of patterns (plain or squeezed), split by how they are found.
#[derive(Debug, Clone)]
struct Automaton {
    /// Whole-word patterns, by their first word.
    words: HashMap<Box<[u8]>, Vec<usize>, FixedState>,
    /// The length of the longest first word in `words`; longer words
    /// cannot start a pattern and are not looked up.
    longest_word: usize,
    /// Prefix and anywhere patterns, without their leading space.
    partial: AhoCorasick,
    /// Per pattern of `partial`: the patterns it stands for.
    partial_patterns: Vec<Vec<usize>>,
    patterns: Vec<Pattern>,
    /// The longest pattern, in bytes.
    longest: usize,
}

#[derive(Debug, Clone)]
struct Pattern {
    /// The entries the pattern stands for.
    entries: Vec<usize>,
    /// Whether the pattern has a leading and a trailing boundary space.
    lead: bool,
    trail: bool,
    /// The pattern without its boundary spaces.
    key: Box<[u8]>,
}

/// One occurrence of a pattern, where a single automaton of every pattern
/// (boundary spaces included) would report it: its end, its start and the
/// pattern. Sorted, these come in that automaton's order: by end, and at
/// one end the longer first.
type Occurrence = (usize, usize, usize);

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
        self.scan_normalised_by(base, Automaton::occurrences)
    }

    /// Scans a normalised text, finding patterns with `find`: the word
    /// table and small automaton, or in tests the single-automaton oracle.
    fn scan_normalised_by(
        &self,
        base: &Normalised,
        find: impl Fn(&Automaton, &[u8]) -> Vec<Occurrence>,
    ) -> Vec<Hit> {
        let find = &find;
        let mut hits = Vec::new();
        self.scan_view(base, &self.main, None, find, &mut hits);
        if base.is_spelled_out() {
            // Any exclusion or context word that bears on a hit in a run
            // lies within this margin of it. Hits outside the runs are the
            // base view's to report, with their full context.
            let margin = 2 * self.main.longest + CONTEXT_WINDOW;
            let (view, runs) = base.joined_near(margin);
            let mut joined = Vec::new();
            self.scan_view(&view, &self.main, None, find, &mut joined);
            hits.extend(joined.into_iter().filter(|hit| {
                runs.iter()
                    .any(|run| hit.span.start < run.end && run.start < hit.span.end)
            }));
        }
        if base.is_stretched() {
            let (view, long_runs) = base.squeezed();
            self.scan_view(&view, &self.squeezed, Some(&long_runs), find, &mut hits);
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

    fn scan_view(
        &self,
        view: &Normalised,
        automaton: &Automaton,
        long_runs: Option<&[bool]>,
        find: &impl Fn(&Automaton, &[u8]) -> Vec<Occurrence>,
        hits: &mut Vec<Hit>,
    ) {
        let bytes = view.bytes();
        let mut terms: Vec<Found> = Vec::new();
        let mut exclusions: Vec<Found> = Vec::new();
        let mut raises: Vec<Found> = Vec::new();
        let mut lowers: Vec<Found> = Vec::new();
        for (m_end, m_start, pattern) in find(automaton, bytes) {
            let Some(Pattern {
                entries,
                lead,
                trail,
                ..
            }) = automaton.patterns.get(pattern)
            else {
                continue;
            };
            let start = m_start + usize::from(*lead);
            let end = m_end - usize::from(*trail);
            if start >= end {
                continue;
            }
            if let Some(long_runs) = long_runs {
                if !long_runs.get(start..end).is_some_and(|r| r.contains(&true)) {
                    continue;
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
            if hits.len() + terms.len() >= MAX_HITS {
                break;
            }
        }
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
        let mut patterns: Vec<Pattern> = Vec::new();
        let mut longest = 0;
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
                longest = longest.max(pattern.len());
                let index = *by_pattern.entry(pattern).or_insert_with(|| {
                    patterns.push(Pattern {
                        entries: Vec::new(),
                        lead,
                        trail,
                        key: variant.into_bytes().into_boxed_slice(),
                    });
                    patterns.len() - 1
                });
                if !patterns[index].entries.contains(&entry) {
                    patterns[index].entries.push(entry);
                }
            }
        }
        let mut words: HashMap<Box<[u8]>, Vec<usize>, FixedState> = HashMap::default();
        let mut partial_index: HashMap<&[u8], usize> = HashMap::new();
        let mut partial_texts: Vec<&[u8]> = Vec::new();
        let mut partial_patterns: Vec<Vec<usize>> = Vec::new();
        for (index, pattern) in patterns.iter().enumerate() {
            if pattern.key.is_empty() {
                // `  ` or ` `: no word lies between its boundaries, so it
                // never yields a hit.
                continue;
            }
            if pattern.lead && pattern.trail {
                let first = pattern.key.split(|&b| b == b' ').next().unwrap_or_default();
                words.entry(first.into()).or_default().push(index);
            } else {
                let at = *partial_index.entry(&pattern.key).or_insert_with(|| {
                    partial_texts.push(&pattern.key);
                    partial_patterns.push(Vec::new());
                    partial_texts.len() - 1
                });
                partial_patterns[at].push(index);
            }
        }
        let longest_word = words.keys().map(|w| w.len()).max().unwrap_or(0);
        let partial = AhoCorasick::builder()
            .kind(Some(AhoCorasickKind::DFA))
            .match_kind(MatchKind::Standard)
            .build(&partial_texts)
            .map_err(|e| MonitorError::Build(e.to_string()))?;
        Ok(Self {
            words,
            longest_word,
            partial,
            partial_patterns,
            patterns,
            longest,
        })
    }

    /// Every occurrence of every pattern in `bytes`, in order.
    fn occurrences(&self, bytes: &[u8]) -> Vec<Occurrence> {
        let mut found = Vec::new();
        let mut previous: Option<usize> = None;
        for_each_space(bytes, |space| {
            if let Some(before) = previous {
                let start = before + 1;
                if space > start && space - start <= self.longest_word {
                    self.whole_words_at(bytes, start, space, &mut found);
                }
            }
            previous = Some(space);
        });
        for m in self.partial.find_overlapping_iter(bytes) {
            let Some(patterns) = self.partial_patterns.get(m.pattern().as_usize()) else {
                continue;
            };
            for &index in patterns {
                let Some(pattern) = self.patterns.get(index) else {
                    continue;
                };
                if !pattern.lead {
                    found.push((m.end(), m.start(), index));
                } else if m.start() > 0 && bytes[m.start() - 1] == b' ' {
                    found.push((m.end(), m.start() - 1, index));
                }
            }
        }
        found.sort_unstable();
        found
    }

    /// The whole-word patterns that start with the word `bytes[start..end]`
    /// and match the words from there.
    #[inline]
    fn whole_words_at(&self, bytes: &[u8], start: usize, end: usize, found: &mut Vec<Occurrence>) {
        let Some(candidates) = self.words.get(&bytes[start..end]) else {
            return;
        };
        for &index in candidates {
            let Some(pattern) = self.patterns.get(index) else {
                continue;
            };
            let after = start + pattern.key.len();
            if bytes.get(after) == Some(&b' ') && bytes.get(start..after) == Some(&pattern.key[..])
            {
                found.push((after + 1, start - 1, index));
            }
        }
    }

    /// The single automaton of every pattern, boundary spaces included,
    /// that the word table and small automaton stand in for.
    #[cfg(test)]
    fn oracle(&self) -> AhoCorasick {
        let texts: Vec<Vec<u8>> = self
            .patterns
            .iter()
            .map(|p| {
                let mut text = Vec::with_capacity(p.key.len() + 2);
                if p.lead {
                    text.push(b' ');
                }
                text.extend_from_slice(&p.key);
                if p.trail {
                    text.push(b' ');
                }
                text
            })
            .collect();
        AhoCorasick::builder()
            .kind(Some(AhoCorasickKind::DFA))
            .match_kind(MatchKind::Standard)
            .prefilter(false)
            .build(&texts)
            .unwrap()
    }

    /// The occurrences as the single automaton reports them.
    #[cfg(test)]
    fn oracle_occurrences(&self, oracle: &AhoCorasick, bytes: &[u8]) -> Vec<Occurrence> {
        oracle
            .find_overlapping_iter(bytes)
            .map(|m| (m.end(), m.start(), m.pattern().as_usize()))
            .collect()
    }
}

/// Calls `f` with the position of every space in `bytes`, in order,
/// testing eight bytes at a time.
#[inline]
fn for_each_space(bytes: &[u8], mut f: impl FnMut(usize)) {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut chunks = bytes.chunks_exact(8);
    let mut base = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        // Spaces become zero bytes; adding 0x7f to the low seven bits of a
        // byte sets its top bit unless they were all zero, and no sum
        // carries into the next byte.
        let x = u64::from_le_bytes(word) ^ (0x20 * LOW);
        let mut spaces = !(((x & !HIGH) + !HIGH) | x) & HIGH;
        while spaces != 0 {
            f(base + (spaces.trailing_zeros() / 8) as usize);
            spaces &= spaces - 1;
        }
        base += 8;
    }
    for (k, &b) in chunks.remainder().iter().enumerate() {
        if b == b' ' {
            f(base + k);
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

    /// The shipped matcher and the single automaton of each of its
    /// pattern sets, built once.
    fn shipped_with_oracles() -> &'static (Matcher, AhoCorasick, AhoCorasick) {
        static SHIPPED: std::sync::OnceLock<(Matcher, AhoCorasick, AhoCorasick)> =
            std::sync::OnceLock::new();
        SHIPPED.get_or_init(|| {
            let m = Matcher::shipped().unwrap();
            let main = m.main.oracle();
            let squeezed = m.squeezed.oracle();
            (m, main, squeezed)
        })
    }

    /// The hits the single automaton of every pattern gives.
    fn scan_with_oracle(text: &str) -> Vec<Hit> {
        let (m, main, squeezed) = shipped_with_oracles();
        let text = truncate_to_char_boundary(text, MAX_SCAN_BYTES);
        m.scan_normalised_by(&normalise(text), |automaton, bytes| {
            let oracle = if std::ptr::eq(automaton, &m.main) {
                main
            } else {
                squeezed
            };
            automaton.oracle_occurrences(oracle, bytes)
        })
    }

    /// The occurrences both ways, leaving out patterns with nothing
    /// between their boundaries, which the word table does not hold and
    /// which never make a hit.
    fn both_occurrences(
        automaton: &Automaton,
        oracle: &AhoCorasick,
        bytes: &[u8],
    ) -> (Vec<Occurrence>, Vec<Occurrence>) {
        let mut expected = automaton.oracle_occurrences(oracle, bytes);
        expected.retain(|&(_, _, p)| !automaton.patterns[p].key.is_empty());
        (automaton.occurrences(bytes), expected)
    }

    fn check_against_oracle(text: &str) {
        let (m, main, squeezed) = shipped_with_oracles();
        let base = normalise(text);
        let (got, expected) = both_occurrences(&m.main, main, base.bytes());
        assert_eq!(got, expected, "{text:?}");
        let (view, _) = base.squeezed();
        let (got, expected) = both_occurrences(&m.squeezed, squeezed, view.bytes());
        assert_eq!(got, expected, "{text:?}");
        let (view, _) = base.joined_near(usize::MAX);
        let (got, expected) = both_occurrences(&m.main, main, view.bytes());
        assert_eq!(got, expected, "{text:?}");
        assert_eq!(m.scan(text), scan_with_oracle(text), "{text:?}");
    }

    /// Every phrase of the shipped libraries: terms, context words and
    /// exclusions.
    fn shipped_phrases() -> &'static Vec<String> {
        static PHRASES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        PHRASES.get_or_init(|| {
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
        })
    }

    /// Text made of library phrases, disguised or cut, and noise.
    fn library_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let count = shipped_phrases().len();
        let phrase = (0..count).prop_map(|i| shipped_phrases()[i].clone());
        let piece = prop_oneof![
            4 => phrase.clone(),
            1 => phrase.clone().prop_map(|p| p.replace(' ', "")),
            1 => phrase.clone().prop_map(|p| p.to_uppercase().replace('o', "0").replace('e', "3")),
            1 => phrase.clone().prop_map(|p| p.chars().flat_map(|c| [c, ' ']).collect()),
            1 => phrase.clone().prop_map(|p| p.chars().flat_map(|c| [c, c, c]).collect()),
            1 => (phrase, 0usize..8).prop_map(|(p, cut)| p.chars().skip(cut).collect()),
            2 => "[a-z]{1,8}",
            1 => Just("the".to_string()),
            1 => Just("%20".to_string()),
            1 => "[ .,!?'@$0-9-]{1,3}",
            1 => any::<char>().prop_map(String::from),
        ];
        let gap = prop_oneof![
            6 => Just(" ".to_string()),
            1 => Just("".to_string()),
            1 => Just(", ".to_string()),
            1 => Just("-".to_string()),
        ];
        proptest::collection::vec((piece, gap), 0..24)
            .prop_map(|parts| parts.into_iter().flat_map(|(p, g)| [p, g]).collect())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1024))]

        #[test]
        fn word_table_finds_what_one_automaton_finds(text in library_text()) {
            check_against_oracle(&text);
        }

        #[test]
        fn word_table_finds_what_one_automaton_finds_in_anything(text in proptest::prelude::any::<String>()) {
            check_against_oracle(&text);
        }
    }

    #[test]
    fn word_table_agrees_with_one_automaton_at_the_hit_limit() {
        // Past MAX_HITS the order in which occurrences come decides which
        // hits are kept, so the order must be the automaton's too.
        let text = "kill myself suicide sexchat porn weed sussex how to kill ".repeat(1200);
        let (m, _, _) = shipped_with_oracles();
        let hits = m.scan(&text);
        assert!(hits.len() >= MAX_HITS / 2, "{}", hits.len());
        assert_eq!(hits, scan_with_oracle(&text));
        check_against_oracle("i want to kill myself, sexchat and suicidal");
    }

    #[test]
    fn spaces_are_found_eight_bytes_at_a_time() {
        for len in 0..20 {
            for byte in 0..=255u8 {
                for at in [0, 3, 7, 8, 12, 19] {
                    let mut bytes = vec![b'a'; len];
                    if at < len {
                        bytes[at] = byte;
                    }
                    let expected: Vec<usize> = bytes
                        .iter()
                        .enumerate()
                        .filter(|(_, &b)| b == b' ')
                        .map(|(i, _)| i)
                        .collect();
                    let mut got = Vec::new();
                    for_each_space(&bytes, |i| got.push(i));
                    assert_eq!(got, expected, "{byte:#x} at {at} of {len}");
                }
            }
        }
        let mut got = Vec::new();
        for_each_space(b"  a  bc d        e", |i| got.push(i));
        assert_eq!(got, vec![0, 1, 3, 4, 7, 9, 10, 11, 12, 13, 14, 15, 16]);
    }

    #[test]
    fn shipped_libraries_compile() {
        let m = Matcher::shipped().unwrap();
        assert!(m.pattern_count() > 500, "{}", m.pattern_count());
    }
}
