/// Why the store refused or failed an operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("`{url}` is not a database sheepdog can use; use sqlite://PATH or postgres://USER@HOST:PORT/DB")]
    UnsupportedUrl { url: String },
    #[error("migration {version} ({name}) failed: {source}")]
    Migration {
        version: i64,
        name: &'static str,
        source: sqlx::Error,
    },
    #[error("the database schema is at version {found}, newer than this sheepdog ({known}); upgrade sheepdog")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("{entity} {key} was not found")]
    NotFound { entity: &'static str, key: String },
    #[error("{entity} {key} already exists")]
    Duplicate { entity: &'static str, key: String },
    #[error("invalid {field}: {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
    #[error("the database holds a value sheepdog cannot read in {entity}: {problem}")]
    Corrupt {
        entity: &'static str,
        problem: String,
    },
    /// Need-to-know said no; the refusal is audited.
    #[error("not allowed: {reason}")]
    Forbidden { reason: String },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl StoreError {
    pub(crate) fn invalid(field: &'static str, problem: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            problem: problem.into(),
        }
    }

    /// Maps a unique-constraint violation to [`StoreError::Duplicate`].
    pub(crate) fn on_duplicate(source: sqlx::Error, entity: &'static str, key: &str) -> Self {
        match &source {
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Duplicate {
                entity,
                key: key.to_string(),
            },
            _ => Self::Database(source),
        }
    }
}
