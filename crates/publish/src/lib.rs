//! The publish check (G3): before images of pupils go on the website, in
//! the prospectus or to the press, find the pupils in them who have no
//! consent for that purpose, and every place a pupil's full name appears
//! with them — the file name, or a title, description, keyword or person
//! tag inside the file.
//!
//! Pupils are identified by a file-to-pupil mapping (CSV: `file,pupil`,
//! the pupil by UPN or full name, several separated by `;`) or by the
//! person tags in the images' XMP. Which pupils exist and whether each may
//! appear is the caller's to say ([`Pupil`]); this crate reads files and
//! matches names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub mod metadata;

pub use metadata::{read_metadata, Field, ImageMetadata, MetadataError};

/// The largest image read.
pub const MAX_IMAGE_BYTES: u64 = 64 * 1024 * 1024;

/// File name endings checked as images.
pub const IMAGE_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "png", "tif", "tiff", "webp", "heic", "heif", "avif",
];

/// Why the check could not run.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot read the folder {path}: {source}")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the mapping {path}, line {line}: {problem}")]
    Mapping {
        path: PathBuf,
        line: u64,
        problem: String,
    },
}

/// A pupil as the check needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pupil {
    pub id: i64,
    pub given_name: String,
    pub family_name: String,
    pub upn: Option<String>,
    pub class_name: Option<String>,
    /// Whether they may appear for the purpose checked.
    pub may_appear: bool,
    /// Why not, when not (`consent withdrawn`).
    pub consent: String,
}

impl Pupil {
    pub fn full_name(&self) -> String {
        format!("{} {}", self.given_name, self.family_name)
    }
}

/// Which pupils each file shows, by file name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mapping {
    pub files: BTreeMap<String, Vec<String>>,
}

/// One thing to fix before publishing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A pupil in the image has no consent for the purpose.
    NoConsent {
        file: String,
        pupil: String,
        reason: String,
    },
    /// A pupil's full name is in the file name.
    NameInFileName { file: String, pupil: String },
    /// A pupil's full name is in a metadata field.
    NameInField {
        file: String,
        field: String,
        pupil: String,
    },
    /// The mapping or a tag names someone who is not a pupil on record.
    UnknownPupil { file: String, named: String },
    /// The file could not be read.
    Unreadable { file: String, problem: String },
}

/// The check's result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Images looked at.
    pub images: usize,
    pub problems: Vec<Problem>,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoConsent {
                file,
                pupil,
                reason,
            } => {
                write!(f, "{file}: {pupil} is in the image: {reason}")
            }
            Self::NameInFileName { file, pupil } => write!(
                f,
                "{file}: the file name contains {pupil}'s full name; rename it"
            ),
            Self::NameInField { file, field, pupil } => write!(
                f,
                "{file}: {field} contains {pupil}'s full name; remove it from the metadata"
            ),
            Self::UnknownPupil { file, named } => write!(
                f,
                "{file}: `{named}` is not a pupil on record; check the mapping or tags"
            ),
            Self::Unreadable { file, problem } => write!(f, "{file}: {problem}"),
        }
    }
}

/// Reads a `file,pupil` mapping. A header row naming `file` is skipped.
pub fn read_mapping(path: &Path) -> Result<Mapping, PublishError> {
    let mapping_error = |line: u64, problem: String| PublishError::Mapping {
        path: path.to_path_buf(),
        line,
        problem,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| mapping_error(0, e.to_string()))?;
    let mut mapping = Mapping::default();
    for (index, record) in reader.records().enumerate() {
        let line = u64::try_from(index).unwrap_or(u64::MAX).saturating_add(1);
        let record = record.map_err(|e| mapping_error(line, e.to_string()))?;
        let file = record.get(0).unwrap_or("").trim_start_matches('\u{feff}');
        let pupils = record.get(1).unwrap_or("");
        if index == 0 && file.eq_ignore_ascii_case("file") {
            continue;
        }
        if file.is_empty() && pupils.is_empty() {
            continue;
        }
        if file.is_empty() || pupils.is_empty() {
            return Err(mapping_error(
                line,
                "write each row as `file,pupil` (UPN or full name; several separated by `;`)"
                    .to_owned(),
            ));
        }
        mapping.files.entry(file.to_owned()).or_default().extend(
            pupils
                .split(';')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned),
        );
    }
    Ok(mapping)
}

/// Text as words: lower case, letters and digits only, single spaces, with
/// a space at each end so a match is whole words.
fn words(text: &str) -> String {
    let mut out = String::from(" ");
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            out.push(c);
        } else if !out.ends_with(' ') {
            out.push(' ');
        }
    }
    if !out.ends_with(' ') {
        out.push(' ');
    }
    out
}

/// Whether `text` contains the pupil's full name, however it is separated
/// (`Brisa Quorbin`, `brisa_quorbin`, `BrisaQuorbin`, `Quorbin, Brisa`).
fn names(text: &str, pupil: &Pupil) -> bool {
    let given = words(&pupil.given_name);
    let family = words(&pupil.family_name);
    let (given, family) = (given.trim(), family.trim());
    if given.is_empty() || family.is_empty() {
        return false;
    }
    let text_words = words(text);
    let compact: String = text_words.chars().filter(|c| *c != ' ').collect();
    text_words.contains(&format!(" {given} {family} "))
        || text_words.contains(&format!(" {family} {given} "))
        || compact.contains(&format!("{given}{family}").replace(' ', ""))
}

/// Finds the pupil a mapping entry or tag names: by UPN, else by full name.
fn identify<'a>(named: &str, pupils: &'a [Pupil]) -> Option<&'a Pupil> {
    let key = named.trim();
    pupils
        .iter()
        .find(|p| {
            p.upn
                .as_deref()
                .is_some_and(|u| u.eq_ignore_ascii_case(key))
        })
        .or_else(|| {
            let wanted = words(key);
            pupils.iter().find(|p| words(&p.full_name()) == wanted)
        })
}

/// Checks every image directly inside `dir`.
pub fn check_dir(
    dir: &Path,
    pupils: &[Pupil],
    mapping: Option<&Mapping>,
) -> Result<Report, PublishError> {
    let folder_error = |source| PublishError::Folder {
        path: dir.to_path_buf(),
        source,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(folder_error)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    files.sort();
    let mut report = Report::default();
    for path in files {
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        report.images += 1;
        report
            .problems
            .extend(check_image(&file, &path, pupils, mapping));
    }
    Ok(report)
}

/// The problems with one image.
pub fn check_image(
    file: &str,
    path: &Path,
    pupils: &[Pupil],
    mapping: Option<&Mapping>,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    for pupil in pupils {
        if names(file, pupil) {
            problems.push(Problem::NameInFileName {
                file: file.to_owned(),
                pupil: pupil.full_name(),
            });
        }
    }
    let metadata = match read_image(path) {
        Ok(metadata) => metadata,
        Err(problem) => {
            problems.push(Problem::Unreadable {
                file: file.to_owned(),
                problem,
            });
            ImageMetadata::default()
        }
    };
    for damage in &metadata.damaged {
        problems.push(Problem::Unreadable {
            file: file.to_owned(),
            problem: damage.to_string(),
        });
    }
    for field in &metadata.fields {
        for pupil in pupils {
            if names(&field.value, pupil) {
                problems.push(Problem::NameInField {
                    file: file.to_owned(),
                    field: field.name.clone(),
                    pupil: pupil.full_name(),
                });
            }
        }
    }
    // Who is in the image: the mapping, else the person tags.
    let named: Vec<String> = match mapping.and_then(|m| m.files.get(file)) {
        Some(listed) => listed.clone(),
        None => metadata.person_tags.clone(),
    };
    let mut seen = Vec::new();
    for name in named {
        match identify(&name, pupils) {
            Some(pupil) if seen.contains(&pupil.id) => {}
            Some(pupil) => {
                seen.push(pupil.id);
                if !pupil.may_appear {
                    problems.push(Problem::NoConsent {
                        file: file.to_owned(),
                        pupil: pupil.full_name(),
                        reason: pupil.consent.clone(),
                    });
                }
            }
            // A tag may name an adult; only a mapped name must be a pupil.
            None if mapping.is_some_and(|m| m.files.contains_key(file)) => {
                problems.push(Problem::UnknownPupil {
                    file: file.to_owned(),
                    named: name,
                });
            }
            None => {}
        }
    }
    problems
}

fn read_image(path: &Path) -> Result<ImageMetadata, String> {
    let size = std::fs::metadata(path)
        .map_err(|e| format!("cannot read the file: {e}"))?
        .len();
    if size > MAX_IMAGE_BYTES {
        return Err(format!(
            "the file is {size} bytes, more than the {MAX_IMAGE_BYTES} checked; resize it first"
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read the file: {e}"))?;
    read_metadata(&bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
