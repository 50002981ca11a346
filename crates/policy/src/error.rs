//! The errors a policy operation can end in.

/// Everything that can go wrong while reading or compiling a policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The policy file is not valid TOML for a policy document.
    #[error("policy document: {0}")]
    Syntax(#[from] toml::de::Error),
    /// A value in the document makes no sense (an unknown time zone, a
    /// schedule that names no days, a group that names an unknown category …).
    #[error("{place}: {problem}")]
    Invalid {
        /// Where in the document.
        place: String,
        /// What is wrong.
        problem: String,
    },
    /// A rule tries to allow an illegal category. Nothing may.
    #[error("{place}: category {category} is illegal content and cannot be allowed, monitored or warned; it is always blocked")]
    IllegalOverride {
        /// Where in the document.
        place: String,
        /// The category.
        category: String,
    },
    /// Lists could not be read or compiled.
    #[error(transparent)]
    Lists(#[from] sheepdog_lists::ListError),
}

impl PolicyError {
    pub(crate) fn invalid(place: impl Into<String>, problem: impl Into<String>) -> Self {
        PolicyError::Invalid {
            place: place.into(),
            problem: problem.into(),
        }
    }
}
