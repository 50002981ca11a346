//! Regular expression rules, compiled to size-bounded DFAs.
//!
//! Patterns are compiled with `regex-automata` into dense DFAs: matching is
//! linear in the input, needs no mutable cache (so no lock on the hot path)
//! and every automaton is bounded in size. A pattern that is invalid or too
//! big is refused on its own; it never takes the rest of the list with it.

use regex_automata::dfa::{dense, Automaton, OverlappingState, StartKind};
use regex_automata::nfa::thompson;
use regex_automata::util::syntax;
use regex_automata::{Input, MatchKind};

/// The most memory one compiled pattern may take.
pub const PATTERN_SIZE_LIMIT: usize = 1 << 20;
/// The most memory one group of patterns may take.
pub const GROUP_SIZE_LIMIT: usize = 8 << 20;
/// How many patterns share one automaton.
const GROUP_SIZE: usize = 32;

fn builder(limit: usize) -> dense::Builder {
    let mut b = dense::Builder::new();
    b.configure(
        dense::Config::new()
            .match_kind(MatchKind::All)
            .start_kind(StartKind::Unanchored)
            .dfa_size_limit(Some(limit))
            .determinize_size_limit(Some(limit)),
    )
    .syntax(syntax::Config::new().unicode(false).utf8(false))
    .thompson(
        thompson::Config::new()
            .utf8(false)
            .nfa_size_limit(Some(limit)),
    );
    b
}

/// Checks that one pattern compiles within the size limit.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern.len() > 1024 {
        return Err("pattern longer than 1024 bytes".to_owned());
    }
    builder(PATTERN_SIZE_LIMIT)
        .build(pattern)
        .map(|_| ())
        .map_err(|e| format!("regular expression refused: {e}"))
}

/// A set of patterns that reports every pattern matching a text.
#[derive(Debug, Default)]
pub struct RegexSet {
    groups: Vec<(dense::DFA<Vec<u32>>, Vec<u32>)>,
}

impl RegexSet {
    /// Compiles patterns; `ids[i]` is what a match of `patterns[i]` reports.
    /// Patterns that fail are left out and returned with the reason.
    pub fn build(patterns: &[(u32, String)]) -> (Self, Vec<(u32, String)>) {
        let mut groups = Vec::new();
        let mut refused = Vec::new();
        for chunk in patterns.chunks(GROUP_SIZE) {
            let texts: Vec<&str> = chunk.iter().map(|(_, p)| p.as_str()).collect();
            match builder(GROUP_SIZE_LIMIT).build_many(&texts) {
                Ok(dfa) => groups.push((dfa, chunk.iter().map(|(id, _)| *id).collect())),
                Err(_) => {
                    // Too big together: one automaton per pattern.
                    for (id, p) in chunk {
                        match builder(PATTERN_SIZE_LIMIT).build(p) {
                            Ok(dfa) => groups.push((dfa, vec![*id])),
                            Err(e) => refused.push((*id, e.to_string())),
                        }
                    }
                }
            }
        }
        (RegexSet { groups }, refused)
    }

    /// Whether there are no patterns at all.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Calls `f` once for each pattern matching `text`.
    pub fn for_each_match(&self, text: &str, mut f: impl FnMut(u32)) {
        for (dfa, ids) in &self.groups {
            let input = Input::new(text);
            let mut state = OverlappingState::start();
            let mut seen: u64 = 0;
            while let Ok(()) = dfa.try_search_overlapping_fwd(&input, &mut state) {
                let Some(m) = state.get_match() else { break };
                let index = m.pattern().as_usize();
                let bit = 1u64 << (index % 64);
                if seen & bit == 0 {
                    seen |= bit;
                    if let Some(id) = ids.get(index) {
                        f(*id);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_every_matching_pattern() {
        let (set, refused) = RegexSet::build(&[
            (10, "^ads?[0-9]*\\.".to_owned()),
            (11, "casino".to_owned()),
            (12, "nomatch$".to_owned()),
        ]);
        assert!(refused.is_empty());
        let mut hits = Vec::new();
        set.for_each_match("ad12.casino.test", |id| hits.push(id));
        hits.sort();
        assert_eq!(hits, vec![10, 11]);
    }

    #[test]
    fn refuses_bad_and_huge_patterns_alone() {
        assert!(check_pattern("(unclosed").is_err());
        assert!(check_pattern("[a-z]{1000}[0-9]{1000}x{1000}").is_err());
        let (set, refused) = RegexSet::build(&[(1, "(bad".to_owned()), (2, "good".to_owned())]);
        assert_eq!(refused.len(), 1);
        let mut hits = Vec::new();
        set.for_each_match("a.good.test", |id| hits.push(id));
        assert_eq!(hits, vec![2]);
    }
}
