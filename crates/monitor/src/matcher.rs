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
use std::sync::Arc;

use aho_corasick::automaton::{Automaton as _, StateID};
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

/// Texts at least this long are walked in two parts at once, and from
/// the second length in four (see [`Automaton::walk`]).
const SPLIT_IN_TWO_FROM: usize = 64;
const SPLIT_IN_FOUR_FROM: usize = 128;

/// The match states of the parts of a walk after the first, in waiting
/// (see [`Automaton::walk`]).
type Pending = [Vec<(usize, u32)>; 3];

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
    pub language: Arc<str>,
    /// The term as the library writes it.
    pub term: Arc<str>,
    /// The library the term came from.
    pub library: Arc<str>,
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
    /// Shared with every hit on the entry: a hit's three strings are
    /// counted references, where copies cost some 500 instructions a
    /// hit, a tenth of a search's when a search holds one.
    phrase: Arc<str>,
    library: usize,
}

/// The compiled libraries. Immutable and shareable between threads.
#[derive(Debug, Clone)]
pub struct Matcher {
    entries: Vec<Entry>,
    libraries: Vec<Arc<str>>,
    languages: Vec<Arc<str>>,
    main: Automaton,
    squeezed: Automaton,
}

/// The list of a scan an entry's occurrences are collected in; its value
/// is the list's place in [`Lists::found`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum List {
    Term = 0,
    Exclusion = 1,
    Raise = 2,
    Lower = 3,
}

impl List {
    fn of(kind: &EntryKind) -> Self {
        match kind {
            EntryKind::Term { .. } => List::Term,
            EntryKind::Exclude { .. } => List::Exclusion,
            EntryKind::Raise => List::Raise,
            EntryKind::Lower => List::Lower,
        }
    }
}

/// aho-corasick's DFA for the patterns, copied into a table of our own:
/// its states renumbered so that every match state (and the dead state,
/// if there is one) has a smaller id than any other, which makes the
/// walk's test for "anything to report here" one comparison, and each
/// match state's occurrences laid out flat, ready to collect.
#[derive(Debug, Clone)]
struct Automaton {
    /// `trans[state + class]` is the next state; state ids are
    /// premultiplied by the number of byte classes.
    trans: Vec<u32>,
    /// The class of each byte: every byte some pattern holds is a class
    /// of its own, and the bytes no pattern holds share one (from any
    /// state they lead back to the start).
    classes: [u8; 256],
    /// Bytes per state in `trans` (for the tests: the walk divides by
    /// multiplying with `reciprocal`).
    #[cfg(test)]
    stride: u32,
    /// 2^32 / `stride`, rounded up (see [`Automaton::index`]).
    reciprocal: u64,
    start: u32,
    /// States below this id are match states or the dead state.
    special: u32,
    /// The dead state, or `u32::MAX` when there is none (an unanchored
    /// search never ends early).
    dead: u32,
    /// Texts shorter than this are walked in one part: those under
    /// [`SPLIT_IN_TWO_FROM`] bytes, or all of them with a dead state, where
    /// the walk may end early. Kept so that the walk of every text asks
    /// one question instead of two.
    whole_below: usize,
    /// Per special state (its id divided by `stride`), where its patterns
    /// start in `matched`; one more entry than there are special states.
    matched_from: Vec<u32>,
    /// The patterns each match state matches, in aho-corasick's order.
    matched: Vec<u32>,
    /// Per special state, where its occurrences start in `occurrences`;
    /// filled in by [`Automaton::collect_into`] once the entries' lists
    /// are known.
    occurrences_from: Vec<u32>,
    occurrences: Vec<Occurrence>,
    /// Per special state, whether any of its occurrences is a term's;
    /// filled in with `occurrences_from` (see [`Matcher::collect`]).
    has_term: Vec<bool>,
    /// Per pattern, its length in bytes.
    pattern_lens: Vec<u32>,
    /// The pattern texts, for checking the scan against aho-corasick's own.
    #[cfg(test)]
    texts: Vec<String>,
    /// Per pattern: the entries it stands for, and whether the pattern
    /// has a leading and a trailing boundary space.
    patterns: Vec<(Vec<usize>, bool, bool)>,
    /// The longest pattern, in bytes.
    longest: usize,
    /// Per state (its id divided by `stride`), the length of the end of
    /// the text read that it stands for: the fewest bytes that lead to it
    /// from the start.
    depths: Vec<u32>,
}

/// One entry a match state reports: the pattern's words end `trail`
/// bytes before the state's position and start `lead_back` bytes before
/// it.
#[derive(Debug, Clone, Copy)]
struct Occurrence {
    entry: u32,
    lead_back: u32,
    trail: u32,
    list: List,
    /// The last entry of its pattern, after which the hit limit is
    /// checked.
    last: bool,
}

/// The occurrences one scan of one view collects, kept between scans so
/// that a scan allocates nothing for them.
#[derive(Debug, Default)]
struct Lists {
    /// Terms, exclusions, raising and lowering context words, in the
    /// order of [`List`], so that an occurrence goes to its list by
    /// index rather than through a branch per list.
    found: [Vec<Found>; 4],
    /// The match states of the second half of a walk, in waiting.
    pending: Pending,
    /// The joined screen's bytes and its runs (see
    /// [`Matcher::joined_terms_possible`]), kept so that a text with
    /// one-letter words does not grow new vectors, byte by byte, each
    /// time.
    joined: Vec<u8>,
    joined_runs: Vec<Range<usize>>,
    /// The match states (end, state index) reached before the first one
    /// with a term (see [`Matcher::collect`]).
    waiting: Vec<(usize, usize)>,
}

impl Lists {
    fn clear(&mut self) {
        for list in &mut self.found {
            list.clear();
        }
    }
}

/// What a thread keeps between scans.
#[derive(Debug, Default)]
struct Scratch {
    base: Normalised,
    lists: Lists,
}

impl Scratch {
    /// Empty, made at compile time, so that the thread-local copy needs
    /// no lazy set-up checked on every scan.
    const fn new() -> Self {
        Self {
            base: Normalised::new(),
            lists: Lists {
                found: [Vec::new(), Vec::new(), Vec::new(), Vec::new()],
                pending: [Vec::new(), Vec::new(), Vec::new()],
                joined: Vec::new(),
                joined_runs: Vec::new(),
                waiting: Vec::new(),
            },
        }
    }
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
        let mut languages: Vec<Arc<str>> = Vec::new();
        let mut language_index = |language: &str| {
            if let Some(i) = languages.iter().position(|l| &**l == language) {
                i
            } else {
                languages.push(Arc::from(language));
                languages.len() - 1
            }
        };
        let mut phrases: Vec<(String, Position)> = Vec::new();
        for (index, library) in libraries.iter().enumerate() {
            names.push(Arc::from(library.library.name.as_str()));
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
                        phrase: Arc::from(phrase.as_str()),
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
                            phrase: Arc::from(phrase.as_str()),
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
                        phrase: Arc::from(phrase.as_str()),
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
        let lists: Vec<List> = entries.iter().map(|e| List::of(&e.kind)).collect();
        let mut main = Automaton::build(&keys, |k| k.to_string())?;
        let mut squeezed = Automaton::build(&keys, squeeze_key)?;
        main.collect_into(&lists)?;
        squeezed.collect_into(&lists)?;
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
        // So are the lists of occurrences.
        thread_local! {
            static SCRATCH: std::cell::RefCell<Scratch> =
                const { std::cell::RefCell::new(Scratch::new()) };
        }
        // The hits are filled in place rather than handed back through
        // the closure and the thread-local access, which moved the vector
        // three times a scan.
        let mut hits = Vec::new();
        SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut scratch) => {
                let Scratch { base, lists } = &mut *scratch;
                normalise_into(text, base);
                self.scan_normalised_into(base, lists, true, &mut hits);
            }
            Err(_) => self.scan_without_scratch(text, &mut hits),
        });
        hits
    }

    /// [`Matcher::scan`] with buffers of its own, only reachable if
    /// scanning re-entered itself; apart, so that the usual path does not
    /// make room on the stack for its lists and save registers for them.
    #[cold]
    #[inline(never)]
    fn scan_without_scratch(&self, text: &str, hits: &mut Vec<Hit>) {
        let base = normalise(text);
        self.scan_normalised_into(&base, &mut Lists::default(), true, hits);
    }

    /// `screen`: whether to look for terms in a narrow joined view first
    /// and skip the wide one when there are none (off only in tests, to
    /// show that the screen changes nothing).
    #[cfg(test)]
    fn scan_normalised_with(&self, base: &Normalised, screen: bool) -> Vec<Hit> {
        let mut hits = Vec::new();
        self.scan_normalised_into(base, &mut Lists::default(), screen, &mut hits);
        hits
    }

    /// The hits in `base` into `hits`, which is empty.
    #[inline(always)]
    fn scan_normalised_into(
        &self,
        base: &Normalised,
        lists: &mut Lists,
        screen: bool,
        hits: &mut Vec<Hit>,
    ) {
        self.scan_view(base, &self.main, None, lists, hits);
        // Most texts have no derived view and no hit or one: nothing to
        // scan again, order, merge or drop. The rest is apart, so that
        // this short path does not pay for its set-up.
        if !base.is_spelled_out() && !base.is_stretched() && hits.len() < 2 {
            return;
        }
        let found = std::mem::take(hits);
        *hits = self.scan_derived(base, lists, screen, found);
    }

    /// The rest of [`Matcher::scan_normalised_into`]: the joined and
    /// squeezed views, and ordering, merging and subsuming the hits.
    #[inline(never)]
    fn scan_derived(
        &self,
        base: &Normalised,
        lists: &mut Lists,
        screen: bool,
        mut hits: Vec<Hit>,
    ) -> Vec<Hit> {
        if base.is_spelled_out() && (!screen || self.joined_terms_possible(base, lists)) {
            // Any exclusion or context word that bears on a hit in a run
            // lies within this margin of it. Hits outside the runs are the
            // base view's to report, with their full context.
            let margin = 2 * self.main.longest + CONTEXT_WINDOW;
            let (view, runs) = base.joined_near(margin);
            let mut joined = Vec::new();
            self.scan_view(&view, &self.main, None, lists, &mut joined);
            hits.extend(joined.into_iter().filter(|hit| {
                runs.iter()
                    .any(|run| hit.span.start < run.end && run.start < hit.span.end)
            }));
        }
        if base.is_stretched() {
            let (view, long_runs) = base.squeezed();
            self.scan_view(&view, &self.squeezed, Some(&long_runs), lists, &mut hits);
        }
        // Most texts have no hit or one: nothing to order, merge or drop.
        if hits.len() < 2 {
            return hits;
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
    fn joined_terms_possible(&self, base: &Normalised, lists: &mut Lists) -> bool {
        // Without spans: a term overlaps a run in the original text when
        // it overlaps the run's bytes in the view, as every byte of the
        // view stands for its own stretch of the original, in order.
        let Lists {
            pending,
            joined: bytes,
            joined_runs: runs,
            ..
        } = lists;
        base.joined_bytes_near(self.main.longest + 1, bytes, runs);
        let mut possible = false;
        self.main
            .each_overlapping(bytes, pending, |m_start, m_end, pattern| {
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
                possible = runs.iter().any(|run| start < run.end && run.start < end);
                !possible
            });
        possible
    }

    /// Collects into `lists` every occurrence of an entry in `bytes`, in
    /// the walk's order, until `already` hits and the terms found reach
    /// [`MAX_HITS`]; in the squeezed view (`long_runs` given) only those
    /// that cover a stretched run.
    fn collect(
        &self,
        bytes: &[u8],
        automaton: &Automaton,
        long_runs: Option<&[bool]>,
        lists: &mut Lists,
        already: usize,
    ) {
        lists.clear();
        let Lists {
            found,
            pending,
            waiting,
            ..
        } = lists;
        waiting.clear();
        let mut collector = Collector {
            automaton,
            long_runs,
            found,
            waiting,
            already,
            deferring: true,
        };
        automaton.walk(bytes, pending, |end, sid| collector.reached(end, sid));
    }

    fn scan_view(
        &self,
        view: &Normalised,
        automaton: &Automaton,
        long_runs: Option<&[bool]>,
        lists: &mut Lists,
        hits: &mut Vec<Hit>,
    ) {
        self.collect(view.bytes(), automaton, long_runs, lists, hits.len());
        // Most texts hold no term; the rest is apart, so that they do not
        // pay for its set-up.
        if !lists.found[List::Term as usize].is_empty() {
            self.hits_of(view, automaton, lists, hits);
        }
    }

    /// The hits of the terms [`Matcher::collect`] found in `view`, after
    /// exclusions and context words.
    #[inline(never)]
    fn hits_of(
        &self,
        view: &Normalised,
        automaton: &Automaton,
        lists: &mut Lists,
        hits: &mut Vec<Hit>,
    ) {
        let [terms, exclusions, raises, lowers] = &mut lists.found;
        // Entries with the same range may come in any order: these lists
        // are only ever asked whether any entry in a stretch qualifies.
        for list in [&mut *exclusions, &mut *raises, &mut *lowers] {
            list.sort_unstable_by_key(|f| f.range);
        }
        // Only entries starting in [low, high], found by binary search, so
        // that text full of hits costs linear time, not quadratic.
        let starting_in = |list: &'_ [Found], low: usize, high: usize| -> std::ops::Range<usize> {
            let from = list.partition_point(|f| f.range.0 < low);
            let to = list.partition_point(|f| f.range.0 <= high);
            from..to.max(from)
        };
        let longest = automaton.longest;
        for term in terms.iter() {
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
                [starting_in(exclusions, start.saturating_sub(longest), start)]
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
            if near(raises) {
                context += RAISE_BY;
            }
            if near(lowers) {
                context += LOWER_BY;
            }
            let adjusted = (i16::from(*severity) + i16::from(context)).clamp(0, 5);
            hits.push(Hit {
                category: *category,
                severity: u8::try_from(adjusted).unwrap_or(0),
                term_severity: *severity,
                language: self
                    .languages
                    .get(*language)
                    .cloned()
                    .unwrap_or_else(|| Arc::from("")),
                term: Arc::clone(phrase),
                library: self
                    .libraries
                    .get(*library)
                    .cloned()
                    .unwrap_or_else(|| Arc::from("")),
                span: view.original_span(start..end),
                context,
            });
        }
    }
}

/// What [`Matcher::collect`] keeps while the walk goes on.
struct Collector<'a> {
    automaton: &'a Automaton,
    /// The squeezed view's flags (see [`Matcher::collect`]).
    long_runs: Option<&'a [bool]>,
    found: &'a mut [Vec<Found>; 4],
    waiting: &'a mut Vec<(usize, usize)>,
    /// Hits found before this view.
    already: usize,
    /// No match state with a term has been reached yet.
    deferring: bool,
}

impl Collector<'_> {
    /// A match state `sid` reached at `end`; false to stop the walk.
    ///
    /// Exclusions and context words only ever bear on a term, and most
    /// short texts hold none, while their match states are mostly
    /// common words that are context words or exclusions (`shoot`,
    /// `whale`). So the match states before the first one with a term
    /// are only noted, and collected in their order when one with a
    /// term comes; a text without one collects nothing, as it would have
    /// returned no hit anyway. What is collected, and where the hit
    /// limit falls, is the same as collecting every state as it comes.
    /// Noting a state is inline, now that the walk's byte loop has no
    /// call in it ([`Automaton::to_special`]); collecting is apart, so
    /// that the walk keeps its values in registers.
    #[inline(always)]
    fn reached(&mut self, end: usize, sid: u32) -> bool {
        let state = self.automaton.index(sid);
        if self.deferring && !self.automaton.has_term.get(state).copied().unwrap_or(true) {
            self.waiting.push((end, state));
            return true;
        }
        self.collect_from(end, state)
    }

    /// [`Collector::reached`] for a state that is collected: the states
    /// noted before it first, if it is the first with a term.
    #[inline(never)]
    fn collect_from(&mut self, end: usize, state: usize) -> bool {
        if self.deferring {
            self.deferring = false;
            for k in 0..self.waiting.len() {
                let (end, state) = self.waiting[k];
                if !self.record(end, state) {
                    return false;
                }
            }
        }
        self.record(end, state)
    }

    /// Collects the occurrences of match state `state` reached at `end`
    /// into their lists; false once the terms reach [`MAX_HITS`].
    #[inline(always)]
    fn record(&mut self, end: usize, state: usize) -> bool {
        for occurrence in self.automaton.occurrences_of(state) {
            let start = end - occurrence.lead_back as usize;
            let stop = end - occurrence.trail as usize;
            // All of a pattern's entries share its range, so a pattern
            // skipped here is skipped whole, limit check included.
            if start >= stop {
                continue;
            }
            if let Some(long_runs) = self.long_runs {
                if !long_runs
                    .get(start..stop)
                    .is_some_and(|r| r.contains(&true))
                {
                    continue;
                }
            }
            self.found[occurrence.list as usize].push(Found {
                entry: occurrence.entry as usize,
                range: (start, stop),
            });
            if occurrence.last && self.already + self.found[List::Term as usize].len() >= MAX_HITS {
                return false;
            }
        }
        true
    }
}

/// Drops hits that lie inside a longer hit at least as severe: the longer
/// phrase is the more specific reading (`send nudes` is grooming, not
/// pornography; `nagie zdjecia nieletnich` is illegal). `hits` is sorted by
/// start.
///
/// A hit is looked for among the [`SUBSUME_REACH`] hits before it and the
/// hits after it with the same start. Most hits end after every hit before
/// them, and then none of those can hold them, so the hits before are
/// looked through only when one of them ends as late.
fn subsume(hits: Vec<Hit>) -> Vec<Hit> {
    let mut keep = Vec::with_capacity(hits.len());
    // The latest end of the hits before the one at hand.
    let mut latest = 0;
    for (i, hit) in hits.iter().enumerate() {
        let before = latest >= hit.span.end
            && hits[i.saturating_sub(SUBSUME_REACH)..i]
                .iter()
                .any(|other| holds(other, hit));
        let covered = before
            || hits[i + 1..]
                .iter()
                .take_while(|other| other.span.start <= hit.span.start)
                .any(|other| holds(other, hit));
        keep.push(!covered);
        latest = latest.max(hit.span.end);
    }
    hits.into_iter()
        .zip(keep)
        .filter_map(|(hit, keep)| keep.then_some(hit))
        .collect()
}

/// How many hits before a hit [`subsume`] looks through.
const SUBSUME_REACH: usize = 64;

/// Whether `other`, starting no later than `hit`, holds it: it ends no
/// earlier, is longer and is at least as severe.
fn holds(other: &Hit, hit: &Hit) -> bool {
    other.span.end >= hit.span.end
        && other.span.end - other.span.start > hit.span.end - hit.span.start
        && other.severity >= hit.severity
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
        let mut table = Self::tabulate(&automaton, &texts)?;
        table.pattern_lens = (0..automaton.patterns_len())
            .map(|p| {
                aho_corasick::PatternID::new(p)
                    .map(|p| automaton.pattern_len(p) as u32)
                    .map_err(|e| MonitorError::Build(e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        table.patterns = patterns;
        table.longest = longest;
        #[cfg(test)]
        {
            table.texts = texts;
        }
        Ok(table)
    }

    /// Copies `dfa` into a table of our own (see [`Automaton`]), reached
    /// state by state from the start.
    fn tabulate(dfa: &DFA, texts: &[String]) -> Result<Self, MonitorError> {
        let too_big = || MonitorError::Build("the patterns make too many states".to_string());
        let mut used = [false; 256];
        for text in texts {
            for b in text.bytes() {
                used[usize::from(b)] = true;
            }
        }
        let mut classes = [0u8; 256];
        // One byte standing for each class.
        let mut members: Vec<u8> = Vec::new();
        if let Some(unused) = (0..=255u8).find(|&b| !used[usize::from(b)]) {
            members.push(unused);
        }
        for b in 0..=255u8 {
            if used[usize::from(b)] {
                classes[usize::from(b)] = u8::try_from(members.len()).map_err(|_| too_big())?;
                members.push(b);
            }
        }
        let stride = members.len();
        let start = dfa
            .start_state(Anchored::No)
            .map_err(|e| MonitorError::Build(e.to_string()))?;
        // Every state reachable from the start, and its successors.
        // aho-corasick's state ids are offsets into its own table, so a
        // vector indexed by them is no larger than that table and much
        // faster to fill than a hash map.
        const UNSEEN: usize = usize::MAX;
        let mut index: Vec<usize> = Vec::new();
        let mut states: Vec<StateID> = Vec::new();
        let mut number = |sid: StateID, states: &mut Vec<StateID>| {
            let at = sid.as_usize();
            if index.len() <= at {
                index.resize(at + 1, UNSEEN);
            }
            if index[at] == UNSEEN {
                index[at] = states.len();
                states.push(sid);
            }
            index[at]
        };
        number(start, &mut states);
        let mut next: Vec<usize> = Vec::new();
        let mut at = 0;
        while let Some(&sid) = states.get(at) {
            for &b in &members {
                let to = dfa.next_state(Anchored::No, sid, b);
                next.push(number(to, &mut states));
            }
            at += 1;
        }
        // How far each state is from the start: the length of the end of
        // the text it stands for (states were numbered breadth first).
        let mut depth_of = vec![u32::MAX; states.len()];
        depth_of[0] = 0;
        for (old, successors) in next.chunks(stride).enumerate() {
            for &to in successors {
                if depth_of[to] == u32::MAX {
                    depth_of[to] = depth_of[old] + 1;
                }
            }
        }
        // Match and dead states first, in the order they were reached.
        let special = |sid: StateID| dfa.is_match(sid) || dfa.is_dead(sid);
        let mut order: Vec<usize> = (0..states.len()).filter(|&i| special(states[i])).collect();
        let specials = order.len();
        order.extend((0..states.len()).filter(|&i| !special(states[i])));
        let mut renumbered = vec![0u32; states.len()];
        for (new, &old) in order.iter().enumerate() {
            renumbered[old] = new
                .checked_mul(stride)
                .and_then(|id| u32::try_from(id).ok())
                .ok_or_else(too_big)?;
        }
        u32::try_from(states.len() * stride).map_err(|_| too_big())?;
        let mut depths = vec![0u32; states.len()];
        for (old, &depth) in depth_of.iter().enumerate() {
            depths[renumbered[old] as usize / stride] = depth;
        }
        let mut trans = vec![0u32; states.len() * stride];
        for (old, successors) in next.chunks(stride).enumerate() {
            let from = renumbered[old] as usize;
            for (class, &to) in successors.iter().enumerate() {
                trans[from + class] = renumbered[to];
            }
        }
        let mut matched_from = Vec::with_capacity(specials + 1);
        let mut matched = Vec::new();
        let mut dead = u32::MAX;
        for &old in &order[..specials] {
            let sid = states[old];
            matched_from.push(u32::try_from(matched.len()).map_err(|_| too_big())?);
            if dfa.is_dead(sid) {
                dead = renumbered[old];
            }
            for i in 0..dfa.match_len(sid) {
                matched.push(dfa.match_pattern(sid, i).as_u32());
            }
        }
        matched_from.push(u32::try_from(matched.len()).map_err(|_| too_big())?);
        Ok(Self {
            trans,
            classes,
            #[cfg(test)]
            stride: stride as u32,
            reciprocal: (1u64 << 32).div_ceil(stride as u64),
            start: renumbered[0],
            special: u32::try_from(specials * stride).map_err(|_| too_big())?,
            dead,
            whole_below: if dead == u32::MAX {
                SPLIT_IN_TWO_FROM
            } else {
                usize::MAX
            },
            matched_from,
            matched,
            occurrences_from: Vec::new(),
            occurrences: Vec::new(),
            has_term: Vec::new(),
            pattern_lens: Vec::new(),
            #[cfg(test)]
            texts: Vec::new(),
            patterns: Vec::new(),
            longest: 0,
            depths,
        })
    }

    /// Lays out, per match state, the entries of its patterns as the scan
    /// collects them, `lists` giving each entry's list.
    fn collect_into(&mut self, lists: &[List]) -> Result<(), MonitorError> {
        let too_big = || MonitorError::Build("the patterns make too many states".to_string());
        self.occurrences_from.clear();
        self.occurrences.clear();
        self.has_term.clear();
        for state in self.matched_from.windows(2) {
            let from = self.occurrences.len();
            self.occurrences_from
                .push(u32::try_from(from).map_err(|_| too_big())?);
            for &pattern in &self.matched[state[0] as usize..state[1] as usize] {
                let (entries, lead, trail) = &self.patterns[pattern as usize];
                let len = self.pattern_lens[pattern as usize];
                for (k, &entry) in entries.iter().enumerate() {
                    self.occurrences.push(Occurrence {
                        entry: u32::try_from(entry).map_err(|_| too_big())?,
                        lead_back: len - u32::from(*lead),
                        trail: u32::from(*trail),
                        list: lists.get(entry).copied().unwrap_or(List::Term),
                        last: k + 1 == entries.len(),
                    });
                }
            }
            let has_term = self.occurrences[from..]
                .iter()
                .any(|o| o.list == List::Term);
            self.has_term.push(has_term);
        }
        self.occurrences_from
            .push(u32::try_from(self.occurrences.len()).map_err(|_| too_big())?);
        Ok(())
    }

    /// `sid` divided by the stride, by a multiplication rather than a
    /// division (which waits some twenty cycles, and a match state pays
    /// it once more for its occurrences): exact for a state id, a
    /// multiple `k * stride` below 2^32, as the rounding adds less than
    /// `k * stride / 2^32 < 1` to `k`.
    #[inline(always)]
    fn index(&self, sid: u32) -> usize {
        ((u64::from(sid) * self.reciprocal) >> 32) as usize
    }

    /// The next state from `sid` on `byte`.
    #[inline(always)]
    fn step(&self, sid: u32, byte: u8) -> u32 {
        self.trans[(sid + u32::from(self.classes[usize::from(byte)])) as usize]
    }

    /// Walks `bytes` and calls `f` with the end position and the state of
    /// every match state reached (and the start state, at 0, when it
    /// matches the empty pattern), in order of position, until `f`
    /// returns false or the dead state is reached.
    ///
    /// Each byte's state hangs on the state before it, so one walk waits
    /// on one table load per byte. Longer texts are therefore cut into
    /// parts walked at once, whose loads overlap, each from the start
    /// state; then the walk of each part goes on into the next part until
    /// it is in step with that part's walk. A state stands for the longest
    /// end of the text read so far that begins some pattern (its depth),
    /// so once a walk's depth is no more than the bytes read of the next
    /// part, the next part's walk, which has read those bytes, is in the
    /// same state, and stays so. The next part's match states from there
    /// on, kept in `pending`, are reported in their turn, so `f` sees what
    /// the single walk gives it, in the same order.
    #[inline(always)]
    fn walk(&self, bytes: &[u8], pending: &mut Pending, mut f: impl FnMut(usize, u32) -> bool) {
        let sid = self.start;
        if sid < self.special && (sid == self.dead || !f(0, sid)) {
            return;
        }
        // Without a dead state (an unanchored search never ends early)
        // only; the shipped automata have none.
        if bytes.len() < self.whole_below {
            self.walk_whole(bytes, &mut f);
        } else if bytes.len() < SPLIT_IN_FOUR_FROM {
            self.walk_parts::<2>(bytes, pending, &mut f);
        } else {
            self.walk_parts::<4>(bytes, pending, &mut f);
        }
    }

    /// [`Automaton::walk`] in `N` parts at once; `bytes` at least `N`
    /// long, no dead state.
    #[inline(always)]
    fn walk_parts<const N: usize>(
        &self,
        bytes: &[u8],
        pending: &mut Pending,
        f: &mut impl FnMut(usize, u32) -> bool,
    ) {
        let part = bytes.len() / N;
        // The last part takes what is left over.
        let parts: [&[u8]; N] = std::array::from_fn(|i| &bytes[i * part..(i + 1) * part]);
        let mut states = [self.start; N];
        for list in pending.iter_mut() {
            list.clear();
        }
        for k in 0..part {
            for (state, part) in states.iter_mut().zip(&parts) {
                *state = self.step(*state, part[k]);
            }
            if states[0] < self.special && !f(k + 1, states[0]) {
                return;
            }
            for i in 1..N {
                if states[i] < self.special {
                    pending[i - 1].push((i * part + k + 1, states[i]));
                }
            }
        }
        for (k, &byte) in bytes[N * part..].iter().enumerate() {
            states[N - 1] = self.step(states[N - 1], byte);
            if states[N - 1] < self.special {
                pending[N - 2].push((N * part + k + 1, states[N - 1]));
            }
        }
        // The walk so far, at `at`, in the state of the single walk.
        let mut sid = states[0];
        let mut at = part;
        for i in 1..N {
            let from = i * part;
            let to = if i + 1 == N { bytes.len() } else { from + part };
            while at < to && self.depths[self.index(sid)] as usize > at - from {
                sid = self.step(sid, bytes[at]);
                at += 1;
                if sid < self.special && !f(at, sid) {
                    return;
                }
            }
            for &(end, state) in &pending[i - 1] {
                if end > at && !f(end, state) {
                    return;
                }
            }
            if at < to {
                // In step: the part's own walk ended where the single
                // walk would.
                sid = states[i];
                at = to;
            }
        }
    }

    /// Walks all of `bytes` in one part from the start state, as
    /// [`Automaton::walk`] does for short texts (and for an automaton with
    /// a dead state, where the walk may end early).
    ///
    /// The walk from one match state to the next ([`Automaton::to_special`])
    /// has no call in it, and `f` is called outside it: with the call in
    /// the loop, whether the compiler kept the automaton's pointer in a
    /// register through the loop or reloaded it for every byte depended on
    /// unrelated code elsewhere in the crate (34 instructions a search).
    #[inline(always)]
    fn walk_whole(&self, bytes: &[u8], f: &mut impl FnMut(usize, u32) -> bool) {
        let mut sid = self.start;
        let mut at = 0;
        while let Some((end, state)) = self.to_special(bytes, at, sid) {
            if state == self.dead || !f(end, state) {
                return;
            }
            at = end;
            sid = state;
        }
    }

    /// Walks `bytes` from `at` on, in state `sid`, to the first match
    /// state (or the dead state): where it is reached and the state, or
    /// `None` at the end of `bytes`.
    #[inline(always)]
    fn to_special(&self, bytes: &[u8], at: usize, mut sid: u32) -> Option<(usize, u32)> {
        // Eight bytes a step: one test for the end of the text per eight
        // bytes instead of one per byte.
        let mut chunks = bytes.get(at..)?.chunks_exact(8);
        let mut end = at;
        for chunk in &mut chunks {
            for (k, &byte) in chunk.iter().enumerate() {
                sid = self.step(sid, byte);
                if sid < self.special {
                    return Some((end + k + 1, sid));
                }
            }
            end += 8;
        }
        for (k, &byte) in chunks.remainder().iter().enumerate() {
            sid = self.step(sid, byte);
            if sid < self.special {
                return Some((end + k + 1, sid));
            }
        }
        None
    }

    /// The occurrences of special state `state` (its id divided by the
    /// stride), as laid out by [`Automaton::collect_into`].
    #[inline(always)]
    fn occurrences_of(&self, state: usize) -> &[Occurrence] {
        let from = self.occurrences_from[state] as usize;
        let to = self.occurrences_from[state + 1] as usize;
        &self.occurrences[from..to]
    }

    /// Calls `f` with the start, end and pattern of every occurrence of
    /// every pattern in `bytes`, overlapping ones included, in the order
    /// aho-corasick's overlapping search gives them (by end, and at one
    /// end in the automaton's order), until `f` returns false.
    #[inline]
    fn each_overlapping(
        &self,
        bytes: &[u8],
        pending: &mut Pending,
        mut f: impl FnMut(usize, usize, usize) -> bool,
    ) {
        self.walk(bytes, pending, |end, sid| {
            let state = self.index(sid);
            let from = self.matched_from[state] as usize;
            let to = self.matched_from[state + 1] as usize;
            self.matched[from..to].iter().all(|&pattern| {
                let len = self.pattern_lens[pattern as usize] as usize;
                f(end.saturating_sub(len), end, pattern as usize)
            })
        });
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
            .map(|h| (h.term.to_string(), h.severity, text[h.span].to_string()))
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
        automaton.each_overlapping(bytes, &mut Pending::default(), |start, end, pattern| {
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
        // The screen's view without spans is the spanned view's bytes,
        // and its runs are where the spanned view's runs are.
        for margin in [0, 5, m.main.longest + 1] {
            let (view, runs) = base.joined_near(margin);
            let mut bytes = Vec::new();
            let mut view_runs = Vec::new();
            base.joined_bytes_near(margin, &mut bytes, &mut view_runs);
            assert_eq!(bytes, view.bytes(), "{text:?}");
            let mapped: Vec<_> = view_runs
                .iter()
                .map(|r| view.original_span(r.clone()))
                .collect();
            assert_eq!(mapped, runs, "{text:?} at {margin}");
        }
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

    /// The occurrences as the scan collected them before the table laid
    /// them out per state: pattern by pattern from the overlapping walk,
    /// each pattern's entries looked up and sorted into lists one by one.
    fn collected_by_pattern(
        m: &Matcher,
        automaton: &Automaton,
        bytes: &[u8],
        long_runs: Option<&[bool]>,
        already: usize,
    ) -> [Vec<(usize, (usize, usize))>; 4] {
        let mut lists: [Vec<(usize, (usize, usize))>; 4] = Default::default();
        automaton.each_overlapping(bytes, &mut Pending::default(), |m_start, m_end, pattern| {
            let (entries, lead, trail) = &automaton.patterns[pattern];
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
                let list = match m.entries[entry].kind {
                    EntryKind::Term { .. } => 0,
                    EntryKind::Exclude { .. } => 1,
                    EntryKind::Raise => 2,
                    EntryKind::Lower => 3,
                };
                lists[list].push((entry, (start, end)));
            }
            already + lists[0].len() < MAX_HITS
        });
        lists
    }

    fn collected(
        m: &Matcher,
        automaton: &Automaton,
        bytes: &[u8],
        long_runs: Option<&[bool]>,
        already: usize,
    ) -> [Vec<(usize, (usize, usize))>; 4] {
        let mut lists = Lists::default();
        m.collect(bytes, automaton, long_runs, &mut lists, already);
        let plain = |list: &[Found]| list.iter().map(|f| (f.entry, f.range)).collect();
        let [terms, exclusions, raises, lowers] = &lists.found;
        [
            plain(terms),
            plain(exclusions),
            plain(raises),
            plain(lowers),
        ]
    }

    /// The scan collects, per match state of the table, what it collected
    /// pattern by pattern, in the same order, up to the hit limit too,
    /// whenever it collects a term.
    fn check_collect(text: &str) {
        let m = shipped();
        let base = normalise(text);
        let (squeezed, long_runs) = base.squeezed();
        let joined = base.joined();
        let views = [
            (&m.main, base.bytes(), None),
            (&m.squeezed, squeezed.bytes(), Some(&long_runs[..])),
            (&m.main, joined.bytes(), None),
        ];
        for (automaton, bytes, long_runs) in views {
            let all = collected_by_pattern(m, automaton, bytes, long_runs, 0);
            // Limits that cut the walk after the first, second and last
            // term, and one reached before the walk starts.
            let terms = all[0].len();
            for already in [
                0,
                MAX_HITS - 1,
                MAX_HITS - 2,
                MAX_HITS - terms.max(1),
                MAX_HITS,
            ] {
                let got = collected(m, automaton, bytes, long_runs, already);
                let want = collected_by_pattern(m, automaton, bytes, long_runs, already);
                // Without a term the other lists are not collected (they
                // bear on nothing); with one, every list is as collected
                // pattern by pattern.
                if got[0].is_empty() {
                    assert!(want[0].is_empty(), "{text:?} with {already} hits before");
                } else {
                    assert_eq!(got, want, "{text:?} with {already} hits before");
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1024))]

        #[test]
        fn the_table_collects_what_the_patterns_collect(text in library_text()) {
            check_collect(&text);
        }

        #[test]
        fn the_walk_finds_what_overlapping_search_finds(text in library_text()) {
            check_walk(&text);
        }

        /// Texts long enough to be walked in two halves.
        #[test]
        fn the_split_walk_finds_and_collects_what_one_walk_does(
            texts in proptest::collection::vec(library_text(), 2..8)
        ) {
            let text = texts.join(" ");
            check_walk(&text);
            check_collect(&text);
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
    fn the_table_collects_what_the_patterns_collect_at_the_edges() {
        check_collect("");
        check_collect("how to kill myself suicide prevention sussex weeeed kill the process");
        // Context words and exclusions before the first term, which are
        // noted and collected only when the term comes, and none after.
        check_collect("prevention charity sussex killer whale shoot basketball kill myself");
        check_collect("prevention charity sussex killer whale shoot basketball");
        // Many terms, so that the limit falls among them.
        check_collect(&"kill myself suicide weed porn ".repeat(40));
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

    /// Around the length from which a walk is split, where the halves
    /// meet at every offset of the patterns found there.
    #[test]
    fn the_split_walk_agrees_with_overlapping_search_around_the_split() {
        let m = shipped();
        let mut patterns: Vec<&String> = m.main.texts.iter().collect();
        patterns.sort_by_key(|t| std::cmp::Reverse(t.len()));
        let text = "kill myself suicide sexchat porn weed sussex how to kill ".repeat(12);
        // Where two parts start and where four do.
        for from in [SPLIT_IN_TWO_FROM, SPLIT_IN_FOUR_FROM] {
            for len in from.saturating_sub(8)..from + 120 {
                check_walk(&text[..len]);
            }
            // The longest patterns, at every place across where the parts
            // meet, also where one part is shorter than the pattern.
            for phrase in &patterns[..4] {
                let shortest = from.max(phrase.len());
                for len in [0, 1, 2, 3, 57, 150].map(|d| shortest + d) {
                    for at in 0..=len - phrase.len() {
                        let text = format!(
                            "{}{phrase}{}",
                            "x".repeat(at),
                            "x".repeat(len - at - phrase.len())
                        );
                        check_walk(&text);
                    }
                }
            }
        }
        check_collect(&text);
        check_collect(&"kill myself suicide weed porn ".repeat(400));
    }

    /// [`subsume`] as it was before it skipped hits that no earlier hit
    /// can hold: every hit within reach is looked through.
    fn subsume_by_window(hits: Vec<Hit>) -> Vec<Hit> {
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

    /// Sorted hits, many of them overlapping, some of them alike.
    fn hit_list() -> impl proptest::strategy::Strategy<Value = Vec<Hit>> {
        use proptest::prelude::*;
        proptest::collection::vec((0usize..60, 0usize..40, 0u8..6), 0..200).prop_map(|raw| {
            let mut hits: Vec<Hit> = raw
                .into_iter()
                .map(|(start, len, severity)| Hit {
                    category: Category::Drugs,
                    severity,
                    term_severity: severity,
                    language: Arc::from(""),
                    term: Arc::from(format!("t{len}")),
                    library: Arc::from(""),
                    span: start..start + len,
                    context: 0,
                })
                .collect();
            hits.sort_by_key(|h| (h.span.start, h.span.end));
            hits
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1024))]

        #[test]
        fn subsuming_drops_what_looking_through_every_hit_drops(hits in hit_list()) {
            proptest::prop_assert_eq!(subsume(hits.clone()), subsume_by_window(hits));
        }
    }

    #[test]
    fn state_indexes_by_multiplication_are_those_by_division() {
        let matcher = shipped();
        for automaton in [&matcher.main, &matcher.squeezed] {
            let states = automaton.depths.len() as u32;
            for state in 0..states {
                let sid = state * automaton.stride;
                assert_eq!(automaton.index(sid), state as usize, "{sid}");
            }
        }
        // Every stride a table could have, at the largest ids it allows.
        for stride in 1..=256u32 {
            let automaton = Automaton {
                stride,
                reciprocal: (1u64 << 32).div_ceil(u64::from(stride)),
                ..shipped().main.clone()
            };
            let top = u32::MAX / stride;
            for state in (0..2000).chain(top.saturating_sub(2000)..=top) {
                assert_eq!(
                    automaton.index(state * stride),
                    state as usize,
                    "{stride} {state}"
                );
            }
        }
    }

    #[test]
    fn shipped_libraries_compile() {
        let m = Matcher::shipped().unwrap();
        assert!(m.pattern_count() > 500, "{}", m.pattern_count());
    }
}
