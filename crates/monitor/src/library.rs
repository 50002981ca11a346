//! Keyword libraries: what to look for, how serious it is, and what not to
//! mistake for it.
//!
//! A library is a TOML file (the format is documented in
//! `docs/monitoring.md`). It names its language, then lists terms grouped
//! by category and severity, context words per category that make a hit
//! more or less worrying, and exclusions: phrases that contain a term but
//! are known to be innocent ("kill the process", "Sussex").

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::MonitorError;

/// The monitored categories: the UK Safer Internet Centre's list (M1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    Illegal,
    Bullying,
    CseGrooming,
    Discrimination,
    Drugs,
    Extremism,
    Gambling,
    Pornography,
    SelfHarm,
    Suicide,
    Violence,
}

impl Category {
    pub const ALL: [Category; 11] = [
        Category::Illegal,
        Category::Bullying,
        Category::CseGrooming,
        Category::Discrimination,
        Category::Drugs,
        Category::Extremism,
        Category::Gambling,
        Category::Pornography,
        Category::SelfHarm,
        Category::Suicide,
        Category::Violence,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Illegal => "illegal",
            Self::Bullying => "bullying",
            Self::CseGrooming => "cse-grooming",
            Self::Discrimination => "discrimination",
            Self::Drugs => "drugs",
            Self::Extremism => "extremism",
            Self::Gambling => "gambling",
            Self::Pornography => "pornography",
            Self::SelfHarm => "self-harm",
            Self::Suicide => "suicide",
            Self::Violence => "violence",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Category {
    type Err = MonitorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s.trim())
            .ok_or_else(|| MonitorError::UnknownCategory(s.to_string()))
    }
}

/// Where in a word a term may match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Position {
    /// Whole words only (the default): `kill` is not found in `skills`.
    #[default]
    Word,
    /// At the start of a word: `suicid` finds `suicidal`.
    Prefix,
    /// Anywhere, even inside a word: for terms run together in host
    /// names. Innocent words that contain such a term need exclusions.
    Anywhere,
}

/// A parsed, checked keyword library.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Library {
    pub library: LibraryInfo,
    #[serde(default, rename = "context")]
    pub contexts: Vec<ContextWords>,
    #[serde(default, rename = "terms")]
    pub terms: Vec<TermGroup>,
    #[serde(default, rename = "exclude")]
    pub exclusions: Vec<Exclusion>,
}

/// Who wrote a library and in which language.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LibraryInfo {
    pub name: String,
    /// A BCP 47 tag: `en`, `pl`, `ur-Latn` (Urdu in Latin letters).
    pub language: String,
    #[serde(default)]
    pub description: String,
}

/// Words near a hit that make it more (`raise`) or less (`lower`)
/// worrying, for one category.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextWords {
    pub category: Category,
    #[serde(default)]
    pub raise: Vec<String>,
    #[serde(default)]
    pub lower: Vec<String>,
}

/// Terms that share a category, a severity and a position rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TermGroup {
    pub category: Category,
    /// 1 (worth a weekly look) to 5 (the DSL must know now).
    pub severity: u8,
    #[serde(default)]
    pub position: Position,
    /// Overrides the library's language for these terms.
    #[serde(default)]
    pub language: Option<String>,
    pub phrases: Vec<String>,
}

/// Phrases that contain a term but are innocent. A hit lying wholly
/// inside an exclusion is dropped, for the listed categories or, when
/// none are listed, for all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exclusion {
    #[serde(default)]
    pub categories: Vec<Category>,
    #[serde(default)]
    pub position: Position,
    pub phrases: Vec<String>,
}

/// The libraries that ship with sheepdog, as (file name, text).
pub const SHIPPED: [(&str, &str); 3] = [
    ("en.toml", include_str!("../libraries/en.toml")),
    ("pl.toml", include_str!("../libraries/pl.toml")),
    ("ur-Latn.toml", include_str!("../libraries/ur-Latn.toml")),
];

impl Library {
    /// Parses and checks a library; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, MonitorError> {
        let library: Self = toml::from_str(text).map_err(|e| MonitorError::Library {
            origin: origin.to_string(),
            problem: e.to_string(),
        })?;
        library.check(origin)?;
        Ok(library)
    }

    /// The libraries that ship with sheepdog.
    pub fn shipped() -> Result<Vec<Self>, MonitorError> {
        SHIPPED
            .iter()
            .map(|(name, text)| Self::parse(text, name))
            .collect()
    }

    fn check(&self, origin: &str) -> Result<(), MonitorError> {
        let problem = |problem: String| MonitorError::Library {
            origin: origin.to_string(),
            problem,
        };
        if self.library.language.trim().is_empty() {
            return Err(problem("[library] language is empty".to_string()));
        }
        for group in &self.terms {
            if !(1..=5).contains(&group.severity) {
                return Err(problem(format!(
                    "severity {} for {} terms is outside 1-5",
                    group.severity, group.category
                )));
            }
        }
        let phrases = self
            .terms
            .iter()
            .flat_map(|g| &g.phrases)
            .chain(self.exclusions.iter().flat_map(|e| &e.phrases))
            .chain(
                self.contexts
                    .iter()
                    .flat_map(|c| c.raise.iter().chain(&c.lower)),
            );
        for phrase in phrases {
            if crate::normalise::key_of(phrase).is_empty() {
                return Err(problem(format!(
                    "the phrase {phrase:?} has no letters or digits to match"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_libraries_parse_and_cover_every_category_in_every_language() {
        let libraries = Library::shipped().unwrap();
        assert_eq!(libraries.len(), 3);
        for library in &libraries {
            for category in Category::ALL {
                let terms: usize = library
                    .terms
                    .iter()
                    .filter(|g| g.category == category)
                    .map(|g| g.phrases.len())
                    .sum();
                assert!(
                    terms >= 5,
                    "{} has only {terms} terms for {category}",
                    library.library.name
                );
            }
        }
    }

    #[test]
    fn bad_libraries_are_refused_with_their_name() {
        let error = Library::parse(
            "[library]\nname='x'\nlanguage='en'\n[[terms]]\ncategory='drugs'\nseverity=9\nphrases=['a']",
            "school.toml",
        )
        .unwrap_err();
        assert!(error.to_string().contains("school.toml"), "{error}");
        assert!(error.to_string().contains("outside 1-5"), "{error}");
        let error = Library::parse(
            "[library]\nname='x'\nlanguage='en'\n[[terms]]\ncategory='sport'\nseverity=2\nphrases=['a']",
            "school.toml",
        )
        .unwrap_err();
        assert!(error.to_string().contains("sport"), "{error}");
        let error = Library::parse(
            "[library]\nname='x'\nlanguage='en'\n[[terms]]\ncategory='drugs'\nseverity=2\nphrases=['...']",
            "school.toml",
        )
        .unwrap_err();
        assert!(error.to_string().contains("no letters"), "{error}");
    }

    #[test]
    fn categories_read_and_write_their_names() {
        for category in Category::ALL {
            assert_eq!(category.as_str().parse::<Category>().unwrap(), category);
        }
        assert!("sport".parse::<Category>().is_err());
    }
}
