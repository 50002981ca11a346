//! Evaluation against a labelled corpus: how much of what should be
//! flagged is flagged (recall), and how much of what is flagged should be
//! (precision), per category and language.
//!
//! A corpus file holds one case per line: the labels, then whitespace,
//! then the text. Labels are categories separated by commas, or `none` for
//! a hard negative (an innocent text that looks like a concern). Blank
//! lines and lines starting with `#` are skipped. The shipped corpus,
//! synthetic and written for sheepdog, is in `crates/monitor/corpus/`.
//!
//! Each case is read as a search with no history and no age group; a
//! category counts as flagged when its concern reaches the threshold
//! grade. A flagged category the case is not labelled with is a false
//! positive for that category.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::event::Event;
use crate::grade::concerns_of;
use crate::library::Category;
use crate::matcher::Matcher;
use crate::MonitorError;

/// The corpora that ship with sheepdog, as (language, text).
pub const SHIPPED_CORPUS: [(&str, &str); 3] = [
    ("en", include_str!("../corpus/en.txt")),
    ("pl", include_str!("../corpus/pl.txt")),
    ("ur-Latn", include_str!("../corpus/ur-Latn.txt")),
];

/// One labelled text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Case {
    pub language: String,
    /// Empty for a hard negative.
    pub labels: Vec<Category>,
    pub text: String,
    pub line: usize,
}

/// Counts and rates for one category in one language.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Score {
    pub category: Category,
    pub language: String,
    pub true_positives: usize,
    pub false_positives: usize,
    pub false_negatives: usize,
    /// Cases labelled with the category.
    pub positives: usize,
}

/// A case the matcher got wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mistake {
    pub case: Case,
    /// Categories flagged at or above the threshold.
    pub flagged: Vec<Category>,
}

/// The whole evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    pub min_grade: u8,
    pub cases: usize,
    pub negatives: usize,
    pub scores: Vec<Score>,
    pub mistakes: Vec<Mistake>,
}

impl Score {
    /// 1 when nothing was flagged: no flag was wrong.
    pub fn precision(&self) -> f64 {
        ratio(
            self.true_positives,
            self.true_positives + self.false_positives,
        )
    }

    /// 1 when there was nothing to find.
    pub fn recall(&self) -> f64 {
        ratio(
            self.true_positives,
            self.true_positives + self.false_negatives,
        )
    }
}

fn ratio(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        1.0
    } else {
        part as f64 / whole as f64
    }
}

/// Parses a corpus file in `language`.
pub fn parse_corpus(text: &str, language: &str) -> Result<Vec<Case>, MonitorError> {
    let mut cases = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (labels, text) = line
            .split_once(char::is_whitespace)
            .ok_or(MonitorError::Corpus {
                language: language.to_string(),
                line: line_number,
                problem: "expected labels, then the text".to_string(),
            })?;
        let labels = if labels == "none" {
            Vec::new()
        } else {
            labels
                .split(',')
                .map(str::parse)
                .collect::<Result<Vec<Category>, _>>()
                .map_err(|e| MonitorError::Corpus {
                    language: language.to_string(),
                    line: line_number,
                    problem: e.to_string(),
                })?
        };
        cases.push(Case {
            language: language.to_string(),
            labels,
            text: text.trim().to_string(),
            line: line_number,
        });
    }
    Ok(cases)
}

/// The shipped corpus, every language.
pub fn shipped_corpus() -> Result<Vec<Case>, MonitorError> {
    let mut all = Vec::new();
    for (language, text) in SHIPPED_CORPUS {
        all.extend(parse_corpus(text, language)?);
    }
    Ok(all)
}

/// Scores `matcher` on `cases` at `min_grade`.
pub fn eval(matcher: &Matcher, cases: &[Case], min_grade: u8) -> EvalReport {
    let mut scores: BTreeMap<(String, Category), Score> = BTreeMap::new();
    let mut mistakes = Vec::new();
    for case in cases {
        let event = Event {
            search: Some(case.text.clone()),
            ..Event::default()
        };
        let flagged: Vec<Category> = concerns_of(matcher, &event, false)
            .into_iter()
            .filter(|c| c.grade >= min_grade)
            .map(|c| c.category)
            .collect();
        let mut wrong = false;
        for category in Category::ALL {
            let score = scores
                .entry((case.language.clone(), category))
                .or_insert_with(|| Score {
                    category,
                    language: case.language.clone(),
                    true_positives: 0,
                    false_positives: 0,
                    false_negatives: 0,
                    positives: 0,
                });
            let labelled = case.labels.contains(&category);
            let found = flagged.contains(&category);
            if labelled {
                score.positives += 1;
            }
            match (labelled, found) {
                (true, true) => score.true_positives += 1,
                (true, false) => {
                    score.false_negatives += 1;
                    wrong = true;
                }
                (false, true) => {
                    score.false_positives += 1;
                    wrong = true;
                }
                (false, false) => {}
            }
        }
        if wrong {
            mistakes.push(Mistake {
                case: case.clone(),
                flagged,
            });
        }
    }
    EvalReport {
        min_grade,
        cases: cases.len(),
        negatives: cases.iter().filter(|c| c.labels.is_empty()).count(),
        scores: scores.into_values().collect(),
        mistakes,
    }
}

impl EvalReport {
    /// Totals over every category, per language (`None`: all languages).
    pub fn total(&self, language: Option<&str>) -> Score {
        let mut total = Score {
            category: Category::Illegal,
            language: language.unwrap_or("all").to_string(),
            true_positives: 0,
            false_positives: 0,
            false_negatives: 0,
            positives: 0,
        };
        for score in &self.scores {
            if language.map_or(true, |l| l == score.language) {
                total.true_positives += score.true_positives;
                total.false_positives += score.false_positives;
                total.false_negatives += score.false_negatives;
                total.positives += score.positives;
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_lines_parse() {
        let cases = parse_corpus(
            "# comment\nsuicide,self-harm i want to die\nnone   Sussex\n",
            "en",
        )
        .unwrap();
        assert_eq!(cases.len(), 2);
        assert_eq!(cases[0].labels, vec![Category::Suicide, Category::SelfHarm]);
        assert_eq!(cases[1].text, "Sussex");
        assert!(parse_corpus("sport football", "en").is_err());
    }

    #[test]
    fn shipped_corpus_meets_the_targets() {
        let matcher = Matcher::shipped().unwrap();
        let cases = shipped_corpus().unwrap();
        let report = eval(&matcher, &cases, 3);
        let mistakes: Vec<String> = report
            .mistakes
            .iter()
            .map(|m| {
                format!(
                    "{}:{} {:?} flagged {:?}: {}",
                    m.case.language, m.case.line, m.case.labels, m.flagged, m.case.text
                )
            })
            .collect();
        for language in ["en", "pl", "ur-Latn"] {
            let total = report.total(Some(language));
            assert!(total.positives >= 11 * 5, "{language}: {}", total.positives);
        }
        for score in &report.scores {
            assert!(
                score.positives >= 5,
                "{} {}",
                score.language,
                score.category
            );
            assert!(
                score.recall() >= 0.95 && score.precision() >= 0.90,
                "{} {}: precision {:.2} recall {:.2}; mistakes:\n{}",
                score.language,
                score.category,
                score.precision(),
                score.recall(),
                mistakes.join("\n")
            );
        }
    }
}
