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

#[cfg(test)]
use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
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
    words: WordTable,
    /// Prefix and anywhere patterns, by their first two bytes.
    partial: PartialTable,
    patterns: Vec<Pattern>,
    /// The longest pattern, in bytes.
    longest: usize,
}

/// Whole-word patterns by the hash of their first word: an open hash
/// table would cost a probe and a key comparison per word of text, where
/// this costs one multiply and one load for the nine words in ten that
/// start no pattern.
///
/// The hash is a fixed multiply-rotate, not a keyed one: the table is
/// built from the libraries, and text only looks words up, so a child
/// choosing words cannot make it degrade.
#[derive(Debug, Clone)]
struct WordTable {
    /// Bucket `b` holds `candidates[starts[b]..starts[b + 1]]`.
    starts: Vec<u32>,
    candidates: Vec<Candidate>,
    /// The bucket of a hash is its top bits: `hash >> shift`.
    shift: u32,
    /// Longer words start no pattern and are not hashed.
    longest_word: usize,
}

/// A whole-word pattern in its first word's bucket.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    /// The hash of the pattern's first word.
    first: u64,
    /// The pattern's next eight bytes after its first word, counting the
    /// boundary space after it, and which of those bytes there are: most
    /// candidates (`how old are you`, `how to hide weed` for the word
    /// `how`) differ from the text there, and are rejected without a
    /// comparison of the whole pattern.
    next: u64,
    next_mask: u64,
    /// The pattern.
    index: usize,
}

/// Prefix and anywhere patterns (a few dozen): the first three bytes at
/// each position of the text are hashed into a bitmap of the patterns'
/// first three bytes, and only where that bit is set are the patterns
/// compared. Common letter pairs (`se`, `he`) start patterns, so two bytes
/// would pass a tenth of the text; three pass almost none.
#[derive(Debug, Clone)]
struct PartialTable {
    /// One bit per hash of three bytes.
    trigrams: Vec<u64>,
    /// (hash of the first three bytes, pattern), sorted.
    by_trigram: Vec<(u32, usize)>,
    /// Patterns of one or two bytes, which the bitmap cannot hold,
    /// compared wherever the searcher stops.
    short: Vec<usize>,
    /// Finds, with SIMD, the next position where any of the patterns
    /// starts; `None` where the CPU or the patterns do not allow it, and
    /// then every position is tested against the bitmap instead.
    searcher: Option<aho_corasick::packed::Searcher>,
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
        let mut whole = Vec::new();
        let mut partial = Vec::new();
        for (index, pattern) in patterns.iter().enumerate() {
            if pattern.key.is_empty() {
                // `  ` or ` `: no word lies between its boundaries, so it
                // never yields a hit.
                continue;
            }
            if pattern.lead && pattern.trail {
                whole.push(index);
            } else {
                partial.push(index);
            }
        }
        let words = WordTable::build(&patterns, &whole);
        let partial = PartialTable::build(&patterns, &partial);
        Ok(Self {
            words,
            partial,
            patterns,
            longest,
        })
    }

    /// Every occurrence of every pattern in `bytes`, in order.
    fn occurrences(&self, bytes: &[u8]) -> Vec<Occurrence> {
        let mut found = Vec::new();
        let longest = self.words.longest_word;
        // Where the current word starts; 0 until a space has been seen,
        // since a word needs the space before it.
        let mut start = 0;
        let mut word_ends = |space: usize, found: &mut Vec<Occurrence>| {
            if start != 0 && space > start && space - start <= longest {
                self.whole_words_at(bytes, start, space, found);
            }
            start = space + 1;
        };
        let mut chunks = bytes.chunks_exact(8);
        let mut base = 0;
        for chunk in &mut chunks {
            let mut spaces = space_mask(chunk);
            while spaces != 0 {
                word_ends(base + (spaces.trailing_zeros() / 8) as usize, &mut found);
                spaces &= spaces - 1;
            }
            base += 8;
        }
        for (k, &b) in chunks.remainder().iter().enumerate() {
            if b == b' ' {
                word_ends(base + k, &mut found);
            }
        }
        let mut partial = Vec::new();
        self.partial_at_every_byte(bytes, &mut partial);
        if partial.is_empty() {
            return found;
        }
        if !partial.is_sorted() {
            partial.sort_unstable();
        }
        merge(found, partial)
    }

    /// The whole-word patterns that start with the word `bytes[start..end]`
    /// and match the words from there.
    #[inline(always)]
    fn whole_words_at(&self, bytes: &[u8], start: usize, end: usize, found: &mut Vec<Occurrence>) {
        let hash = word_hash(bytes, start, end);
        let bucket = (hash >> self.words.shift) as usize;
        let (Some(&from), Some(&to)) = (
            self.words.starts.get(bucket),
            self.words.starts.get(bucket + 1),
        ) else {
            return;
        };
        if from == to {
            return;
        }
        let Some(candidates) = self.words.candidates.get(from as usize..to as usize) else {
            return;
        };
        let next = eight_at(bytes, end);
        for candidate in candidates {
            if candidate.first != hash || next & candidate.next_mask != candidate.next {
                continue;
            }
            let Some(pattern) = self.patterns.get(candidate.index) else {
                continue;
            };
            // The pattern followed by a space at `start` is the pattern's
            // words there, whichever first word had this hash.
            let after = start + pattern.key.len();
            if bytes.get(after) == Some(&b' ') && bytes.get(start..after) == Some(&pattern.key[..])
            {
                insert_in_order(found, (after + 1, start - 1, candidate.index));
            }
        }
    }

    /// The prefix and anywhere patterns starting at any byte of `bytes`.
    fn partial_at_every_byte(&self, bytes: &[u8], found: &mut Vec<Occurrence>) {
        let table = &self.partial;
        let mut check = |at: usize, index: usize| {
            let Some(pattern) = self.patterns.get(index) else {
                return;
            };
            let end = at + pattern.key.len();
            if bytes.get(at..end) != Some(&pattern.key[..]) {
                return;
            }
            if !pattern.lead {
                found.push((end, at, index));
            } else if at > 0 && bytes.get(at - 1) == Some(&b' ') {
                found.push((end, at - 1, index));
            }
        };
        let at_position = |at: usize, check: &mut dyn FnMut(usize, usize)| {
            if let Some(three) = bytes.get(at..at + 3) {
                let hash = trigram_hash(three[0], three[1], three[2]);
                let set = table
                    .trigrams
                    .get((hash >> 6) as usize)
                    .is_some_and(|bits| bits >> (hash & 63) & 1 != 0);
                if set {
                    let from = table.by_trigram.partition_point(|&(h, _)| h < hash);
                    for &(h, index) in &table.by_trigram[from..] {
                        if h != hash {
                            break;
                        }
                        check(at, index);
                    }
                }
            }
            for &index in &table.short {
                check(at, index);
            }
        };
        match &table.searcher {
            // Too short for the SIMD searcher, which would fall back to
            // a slower search of its own.
            Some(searcher) if bytes.len() >= searcher.minimum_len() => {
                // The leftmost start of any pattern from `at` on; every
                // pattern starting there is then compared, and the search
                // goes on from the next byte.
                let mut at = 0;
                while at < bytes.len() {
                    let Some(m) =
                        searcher.find_in(bytes, aho_corasick::Span::from(at..bytes.len()))
                    else {
                        break;
                    };
                    at_position(m.start(), &mut check);
                    at = m.start() + 1;
                }
            }
            _ => {
                if table.by_trigram.is_empty() && table.short.is_empty() {
                    return;
                }
                for at in 0..bytes.len() {
                    at_position(at, &mut check);
                }
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

/// Adds `occurrence` to the sorted `found`. Words are found by where
/// they start, and wanted by where they end: only a phrase of several
/// words is followed by occurrences that end before it, a few at most.
#[inline]
fn insert_in_order(found: &mut Vec<Occurrence>, occurrence: Occurrence) {
    let mut at = found.len();
    while at > 0 && found[at - 1] > occurrence {
        at -= 1;
    }
    found.insert(at, occurrence);
}

/// The two sorted lists as one.
fn merge(a: Vec<Occurrence>, b: Vec<Occurrence>) -> Vec<Occurrence> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let mut b = b.into_iter().peekable();
    for x in a {
        while let Some(y) = b.next_if(|y| *y < x) {
            out.push(y);
        }
        out.push(x);
    }
    out.extend(b);
    out
}

impl WordTable {
    fn build(patterns: &[Pattern], whole: &[usize]) -> Self {
        let mut longest_word = 0;
        let mut keyed: Vec<Candidate> = whole
            .iter()
            .filter_map(|&index| {
                let key = &patterns.get(index)?.key;
                let first = key.iter().position(|&b| b == b' ').unwrap_or(key.len());
                longest_word = longest_word.max(first);
                let mut next: Vec<u8> = key[first..].iter().copied().take(8).collect();
                if next.len() < 8 {
                    next.push(b' ');
                }
                let next_mask = if next.len() == 8 {
                    u64::MAX
                } else {
                    (1u64 << (8 * next.len())) - 1
                };
                Some(Candidate {
                    first: word_hash(key, 0, first),
                    next: eight_at(&next, 0),
                    next_mask,
                    index,
                })
            })
            .collect();
        // About four buckets per first word, so that most words of text
        // land in an empty one.
        let bits = (keyed.len().max(1) * 4)
            .next_power_of_two()
            .trailing_zeros()
            .max(4);
        let shift = 64 - bits;
        keyed.sort_by_key(|c| (c.first >> shift, c.index));
        let mut starts = vec![0u32; (1usize << bits) + 1];
        for c in &keyed {
            starts[(c.first >> shift) as usize + 1] += 1;
        }
        for b in 1..starts.len() {
            starts[b] += starts[b - 1];
        }
        Self {
            starts,
            candidates: keyed,
            shift,
            longest_word,
        }
    }
}

impl PartialTable {
    fn build(patterns: &[Pattern], partial: &[usize]) -> Self {
        let mut trigrams = vec![0u64; (TRIGRAM_MASK as usize + 1) / 64];
        let mut by_trigram = Vec::new();
        let mut short = Vec::new();
        for &index in partial {
            let Some(pattern) = patterns.get(index) else {
                continue;
            };
            match *pattern.key {
                [a, b, c, ..] => {
                    let hash = trigram_hash(a, b, c);
                    trigrams[(hash >> 6) as usize] |= 1 << (hash & 63);
                    by_trigram.push((hash, index));
                }
                [] => {}
                _ => short.push(index),
            }
        }
        by_trigram.sort_unstable();
        let keys: Vec<&[u8]> = partial
            .iter()
            .filter_map(|&index| Some(&patterns.get(index)?.key[..]))
            .filter(|key| !key.is_empty())
            .collect();
        let searcher = if keys.is_empty() {
            None
        } else {
            aho_corasick::packed::Config::new()
                .match_kind(aho_corasick::packed::MatchKind::LeftmostFirst)
                .builder()
                .extend(keys)
                .build()
        };
        Self {
            trigrams,
            by_trigram,
            short,
            searcher,
        }
    }
}

/// Three bytes hashed to 16 bits (a bitmap of 8 KiB).
const TRIGRAM_MASK: u32 = (1 << 16) - 1;

#[inline]
fn trigram_hash(a: u8, b: u8, c: u8) -> u32 {
    let x = u32::from(a) | u32::from(b) << 8 | u32::from(c) << 16;
    (x.wrapping_mul(0x9e37_79b1) >> 16) & TRIGRAM_MASK
}

/// The eight bytes of `bytes` from `at`, as a little-endian `u64`, zero
/// past the end.
#[inline]
fn eight_at(bytes: &[u8], at: usize) -> u64 {
    let mut eight = [0u8; 8];
    match bytes.get(at..at + 8) {
        Some(chunk) => eight.copy_from_slice(chunk),
        None => {
            for (to, from) in eight.iter_mut().zip(bytes.get(at..).unwrap_or_default()) {
                *to = *from;
            }
        }
    }
    u64::from_le_bytes(eight)
}

/// The hash of the word `bytes[start..end]`: eight bytes at a time, the
/// last eight zero-padded, each mixed in by a rotate, an exclusive or and
/// a multiply; the top bits pick the bucket. Normalised words hold no zero
/// bytes, so the padding cannot make two words of up to eight bytes one.
#[inline(always)]
fn word_hash(bytes: &[u8], start: usize, end: usize) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let len = end - start;
    if (1..=8).contains(&len) {
        // The common case: one load, masked.
        if let Some(chunk) = bytes.get(start..start + 8) {
            let mut eight = [0u8; 8];
            eight.copy_from_slice(chunk);
            let word = u64::from_le_bytes(eight) & (u64::MAX >> (64 - 8 * len));
            return word.wrapping_mul(K);
        }
    }
    let mut hash = 0u64;
    let mut at = start;
    while at < end {
        let take = (end - at).min(8);
        let mut eight = [0u8; 8];
        for (to, from) in eight.iter_mut().zip(&bytes[at..at + take]) {
            *to = *from;
        }
        hash = (hash.rotate_left(5) ^ u64::from_le_bytes(eight)).wrapping_mul(K);
        at += take;
    }
    hash
}

/// The top bit of each byte of `chunk` (eight bytes) that is a space, as
/// a little-endian `u64`.
#[inline(always)]
fn space_mask(chunk: &[u8]) -> u64 {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut eight = [0u8; 8];
    eight.copy_from_slice(chunk);
    // Spaces become zero bytes; adding 0x7f to the low seven bits of a
    // byte sets its top bit unless they were all zero, and no sum carries
    // into the next byte.
    let x = u64::from_le_bytes(eight) ^ (0x20 * LOW);
    !(((x & !HIGH) + !HIGH) | x) & HIGH
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

    /// Every space of `bytes`, found as `occurrences` finds them.
    fn for_each_space(bytes: &[u8], mut f: impl FnMut(usize)) {
        let mut chunks = bytes.chunks_exact(8);
        let mut base = 0;
        for chunk in &mut chunks {
            let mut spaces = space_mask(chunk);
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
