//! Risk grading: from hits in one event, and what the same person did
//! before, to concerns graded 1 (routine) to 5 (the DSL must know now).
//!
//! The formula, per category with hits in an event (see
//! `docs/monitoring.md`):
//!
//! ```text
//! grade = clamp(1, 5,
//!     base                      the highest severity among the category's hits, after context words
//!   + 1  if repeated            this is the 3rd or later event of the person in this category within 24 h
//!   + 1  if primary age         EYFS, KS1 or KS2
//!   - 1  if adult               staff or another adult (not for illegal)
//!   + 1  if after a block       the event was blocked, or the person was blocked within 10 min before
//! )
//! grade = 5 for a blocked attempt at the illegal lists, with or without hits
//! ```
//!
//! Hits whose severity context words brought to 0 make no concern.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::event::{AgeGroup, Event, Field};
use crate::library::Category;
use crate::matcher::{Hit, Matcher};

/// The thresholds of the grading formula.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GradingRules {
    /// Events of one person in one category within this window count
    /// towards repetition.
    pub repetition_window: Duration,
    /// This many events in the window (the current one included) make a
    /// repetition.
    pub repetition_count: usize,
    /// A search this soon after a block counts as following it.
    pub after_block_window: Duration,
    /// People remembered at most, to bound memory; the least recently
    /// seen are forgotten first.
    pub max_people: usize,
}

impl Default for GradingRules {
    fn default() -> Self {
        Self {
            repetition_window: Duration::hours(24),
            repetition_count: 3,
            after_block_window: Duration::minutes(10),
            max_people: 100_000,
        }
    }
}

/// What went into a grade, so the DSL can see why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct GradeFactors {
    /// The highest hit severity after context words (0 without hits).
    pub base: u8,
    pub repeated: bool,
    pub age_group: Option<AgeGroup>,
    pub after_block: bool,
    pub blocked_illegal: bool,
}

impl GradeFactors {
    /// The grade these factors give, 1 to 5, for `category`.
    pub fn grade(&self, category: Category) -> u8 {
        if self.blocked_illegal {
            return 5;
        }
        let mut grade = i16::from(self.base);
        if self.repeated {
            grade += 1;
        }
        match self.age_group {
            Some(age) if age.is_primary() => grade += 1,
            Some(age) if age.is_adult() && category != Category::Illegal => grade -= 1,
            _ => {}
        }
        if self.after_block {
            grade += 1;
        }
        u8::try_from(grade.clamp(1, 5)).unwrap_or(1)
    }
}

/// A hit and the part of the event it was found in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldHit {
    pub field: Field,
    #[serde(flatten)]
    pub hit: Hit,
    /// The original text of the hit.
    pub matched: String,
}

/// One category of concern raised by one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Concern {
    pub category: Category,
    pub grade: u8,
    pub factors: GradeFactors,
    pub hits: Vec<FieldHit>,
}

impl Concern {
    /// The hits as an alert keeps them: where, which term of which
    /// library, language and severity, and the text that matched (the
    /// library tells a DSL whether a school's own list raised it).
    pub fn hits_record(&self) -> Vec<serde_json::Value> {
        self.hits
            .iter()
            .map(|h| {
                serde_json::json!({
                    "field": h.field,
                    "term": h.hit.term,
                    "library": h.hit.library,
                    "language": h.hit.language,
                    "severity": h.hit.severity,
                    "matched": h.matched,
                })
            })
            .collect()
    }
}

/// Monitoring as the pipeline runs it: a shared matcher and the memory of
/// who did what recently.
#[derive(Debug, Clone)]
pub struct Monitor {
    matcher: std::sync::Arc<Matcher>,
    rules: GradingRules,
    /// Recent concern times per (subject, category), oldest first.
    recent: HashMap<(String, Category), VecDeque<DateTime<Utc>>>,
    /// The last block per subject.
    last_block: HashMap<String, DateTime<Utc>>,
}

impl Monitor {
    pub fn new(matcher: std::sync::Arc<Matcher>, rules: GradingRules) -> Self {
        Self {
            matcher,
            rules,
            recent: HashMap::new(),
            last_block: HashMap::new(),
        }
    }

    pub fn matcher(&self) -> &Matcher {
        &self.matcher
    }

    /// Reads one event and returns its concerns, worst first. Events are
    /// expected roughly in time order; an event older than what is
    /// remembered still counts, it only cannot un-count later ones.
    pub fn inspect(&mut self, event: &Event) -> Vec<Concern> {
        let subject = event.subject().map(str::to_string);
        let after_block = subject
            .as_ref()
            .and_then(|s| self.last_block.get(s))
            .is_some_and(|&at| {
                at <= event.time && event.time - at <= self.rules.after_block_window
            });
        let mut concerns = concerns_of(&self.matcher, event, after_block);
        if let Some(subject) = &subject {
            for concern in &mut concerns {
                let window = self.rules.repetition_window;
                let times = self
                    .recent
                    .entry((subject.clone(), concern.category))
                    .or_default();
                while times.front().is_some_and(|&t| event.time - t > window) {
                    times.pop_front();
                }
                times.push_back(event.time);
                if times.len() > self.rules.repetition_count * 4 {
                    times.pop_front();
                }
                if times.len() >= self.rules.repetition_count {
                    concern.factors.repeated = true;
                    concern.grade = concern.factors.grade(concern.category);
                }
            }
            if event.was_blocked() {
                self.last_block.insert(subject.clone(), event.time);
            }
            self.forget_if_full(event.time);
        }
        concerns.sort_by(|a, b| b.grade.cmp(&a.grade).then(a.category.cmp(&b.category)));
        concerns
    }

    fn forget_if_full(&mut self, now: DateTime<Utc>) {
        if self.recent.len() <= self.rules.max_people
            && self.last_block.len() <= self.rules.max_people
        {
            return;
        }
        let window = self.rules.repetition_window;
        self.recent
            .retain(|_, times| times.back().is_some_and(|&t| now - t <= window));
        let block_window = self.rules.after_block_window;
        self.last_block.retain(|_, &mut t| now - t <= block_window);
        if self.recent.len() > self.rules.max_people {
            // Still too many within the window: memory beats repetition.
            self.recent.clear();
        }
    }
}

/// The concerns one event raises on its own, without history: what the
/// evaluation measures and what a one-off check shows.
pub fn concerns_of(matcher: &Matcher, event: &Event, after_block: bool) -> Vec<Concern> {
    let mut by_category: Vec<Concern> = Vec::new();
    for (field, text) in event.fields() {
        for hit in matcher.scan(text) {
            if hit.severity == 0 {
                continue;
            }
            let matched = text.get(hit.span.clone()).unwrap_or_default().to_string();
            let concern = match by_category.iter_mut().find(|c| c.category == hit.category) {
                Some(concern) => concern,
                None => {
                    by_category.push(Concern {
                        category: hit.category,
                        grade: 0,
                        factors: GradeFactors {
                            age_group: event.age_group,
                            after_block: after_block || event.was_blocked(),
                            ..GradeFactors::default()
                        },
                        hits: Vec::new(),
                    });
                    let last = by_category.len() - 1;
                    &mut by_category[last]
                }
            };
            concern.factors.base = concern.factors.base.max(hit.severity);
            concern.hits.push(FieldHit {
                field,
                hit,
                matched,
            });
        }
    }
    if event.is_blocked_illegal() {
        match by_category
            .iter_mut()
            .find(|c| c.category == Category::Illegal)
        {
            Some(concern) => concern.factors.blocked_illegal = true,
            None => by_category.push(Concern {
                category: Category::Illegal,
                grade: 0,
                factors: GradeFactors {
                    age_group: event.age_group,
                    after_block: true,
                    blocked_illegal: true,
                    ..GradeFactors::default()
                },
                hits: Vec::new(),
            }),
        }
    }
    for concern in &mut by_category {
        concern.grade = concern.factors.grade(concern.category);
    }
    by_category.sort_by(|a, b| b.grade.cmp(&a.grade).then(a.category.cmp(&b.category)));
    by_category
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::event::Decision;

    fn factors(base: u8) -> GradeFactors {
        GradeFactors {
            base,
            ..GradeFactors::default()
        }
    }

    #[test]
    fn the_formula() {
        let c = Category::Drugs;
        assert_eq!(factors(3).grade(c), 3);
        assert_eq!(factors(0).grade(c), 1);
        assert_eq!(
            GradeFactors {
                repeated: true,
                ..factors(3)
            }
            .grade(c),
            4
        );
        assert_eq!(
            GradeFactors {
                age_group: Some(AgeGroup::Ks1),
                ..factors(3)
            }
            .grade(c),
            4
        );
        assert_eq!(
            GradeFactors {
                age_group: Some(AgeGroup::Ks4),
                ..factors(3)
            }
            .grade(c),
            3
        );
        assert_eq!(
            GradeFactors {
                age_group: Some(AgeGroup::Staff),
                ..factors(3)
            }
            .grade(c),
            2
        );
        assert_eq!(
            GradeFactors {
                age_group: Some(AgeGroup::Staff),
                ..factors(5)
            }
            .grade(Category::Illegal),
            5
        );
        assert_eq!(
            GradeFactors {
                repeated: true,
                after_block: true,
                age_group: Some(AgeGroup::Eyfs),
                ..factors(4)
            }
            .grade(c),
            5
        );
        assert_eq!(
            GradeFactors {
                blocked_illegal: true,
                ..factors(0)
            }
            .grade(Category::Illegal),
            5
        );
    }

    fn event(minute: u32, search: &str) -> Event {
        Event {
            time: format!("2026-11-23T10:{minute:02}:00Z").parse().unwrap(),
            person: Some("A123".to_string()),
            age_group: Some(AgeGroup::Ks4),
            search: Some(search.to_string()),
            ..Event::default()
        }
    }

    #[test]
    fn repetition_raises_the_grade_for_the_same_person_and_category() {
        let mut monitor = Monitor::new(
            Arc::new(Matcher::shipped().unwrap()),
            GradingRules::default(),
        );
        let grades: Vec<u8> = (0..3)
            .map(|m| monitor.inspect(&event(m, "buy weed near me"))[0].grade)
            .collect();
        assert_eq!(grades[0], grades[1]);
        assert_eq!(grades[2], grades[0] + 1);
        // Someone else is not repeating.
        let mut other = event(4, "buy weed near me");
        other.person = Some("B456".to_string());
        assert_eq!(monitor.inspect(&other)[0].grade, grades[0]);
    }

    #[test]
    fn a_blocked_illegal_attempt_is_grade_5_and_a_block_raises_the_next_search() {
        let mut monitor = Monitor::new(
            Arc::new(Matcher::shipped().unwrap()),
            GradingRules::default(),
        );
        let mut blocked = event(0, "");
        blocked.search = None;
        blocked.url = Some("http://listed.invalid/".to_string());
        blocked.decision = Some(Decision::Blocked);
        blocked.filter_category = Some("iwf".to_string());
        let concerns = monitor.inspect(&blocked);
        assert_eq!(concerns.len(), 1);
        assert_eq!(
            (concerns[0].category, concerns[0].grade),
            (Category::Illegal, 5)
        );

        let plain = concerns_of(monitor.matcher(), &event(0, "buy weed near me"), false)[0].grade;
        let after = monitor.inspect(&event(5, "buy weed near me"))[0].grade;
        assert_eq!(after, plain + 1);
        let later = monitor.inspect(&event(30, "buy weed near me")).remove(0);
        assert!(!later.factors.after_block);
    }
}

#[cfg(test)]
mod sample {
    use std::sync::Arc;

    use super::*;
    use crate::event::read_events;

    #[test]
    fn the_sample_event_file_scans_as_documented() {
        let text = include_str!("../corpus/events.sample.jsonl");
        let mut monitor = Monitor::new(
            Arc::new(Matcher::shipped().unwrap()),
            GradingRules::default(),
        );
        let found: Vec<(i64, Category, u8)> = read_events(text.as_bytes())
            .map(|e| e.unwrap())
            .flat_map(|e| {
                let id = e.id.unwrap_or(0);
                monitor
                    .inspect(&e)
                    .into_iter()
                    .map(move |c| (id, c.category, c.grade))
            })
            .collect();
        assert_eq!(
            found,
            vec![
                (2, Category::SelfHarm, 5),
                (3, Category::Illegal, 5),
                (4, Category::Drugs, 5),
                (5, Category::CseGrooming, 4),
            ]
        );
    }
}
