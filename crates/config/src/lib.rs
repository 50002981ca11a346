//! The sheepdog configuration file.
//!
//! One TOML file configures a deployment. Every setting has a default, so an
//! empty file is a valid configuration; `dist/sheepdog.example.toml` lists
//! every key with its default and is kept in step with [`Config::default`] by
//! a test. Unknown keys and bad values are refused when the file is loaded,
//! with an error that names the file, the line, the key and a fix, because a
//! typo in a filter's configuration must never silently fall back to a
//! default.
//!
//! Relative paths in the file are taken relative to the directory that holds
//! the file, so a configuration and its policy can travel together.

#![forbid(unsafe_code)]

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

mod error;

pub use error::ConfigError;

/// A whole configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where sheepdog keeps its database, spool, snapshots and keys.
    pub data_dir: PathBuf,
    pub database: DatabaseConfig,
    pub log: LogConfig,
    pub console: ConsoleConfig,
    pub metrics: MetricsConfig,
    pub school: SchoolConfig,
    pub filtering: FilteringConfig,
}

/// Which database holds the records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Empty for the embedded SQLite file `sheepdog.sqlite` in `data_dir`;
    /// otherwise a `sqlite://PATH` or `postgres://USER@HOST:PORT/DB` URL.
    pub url: DatabaseUrl,
    /// The most connections the pool opens.
    pub max_connections: u32,
    /// How long a writer waits for a locked SQLite database, in milliseconds.
    pub busy_timeout_ms: u32,
}

/// How sheepdog writes its logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: LogLevel,
}

/// The web console's listening address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    pub listen: SocketAddr,
}

/// The Prometheus endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    pub enabled: bool,
    /// `/metrics` is served here, apart from the console so that it can be
    /// firewalled to the monitoring host alone.
    pub listen: SocketAddr,
}

/// Facts about the school (or the trust's default school) that the rest of
/// the configuration depends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchoolConfig {
    /// IANA time zone for schedules, term dates and reports.
    pub timezone: TimeZone,
}

/// Where the filtering policy lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilteringConfig {
    /// The policy document: categories, list sources and groups.
    pub policy: PathBuf,
}

/// Plain text for people, JSON lines for log collectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The least severe log level written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// A database URL whose scheme is checked when the file is read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatabaseUrl(String);

/// An IANA time zone name, checked when the file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeZone(pub chrono_tz::Tz);

impl Config {
    /// Reads and checks a configuration file; relative paths in it are
    /// resolved against the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Self::parse(&text, path)?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        config.resolve_relative_to(base);
        Ok(config)
    }

    /// Parses configuration text; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let config: Self =
            toml::from_str(text).map_err(|e| ConfigError::from_toml(origin, text, &e))?;
        config.check(origin, text)?;
        Ok(config)
    }

    /// The database URL in force: the configured one, or the embedded
    /// SQLite file in the data directory.
    pub fn database_url(&self) -> String {
        if self.database.url.0.is_empty() {
            format!(
                "sqlite://{}",
                self.data_dir.join("sheepdog.sqlite").display()
            )
        } else {
            self.database.url.0.clone()
        }
    }

    fn resolve_relative_to(&mut self, base: &Path) {
        for path in [&mut self.data_dir, &mut self.filtering.policy] {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }

    /// Checks that concern more than one key.
    fn check(&self, origin: &Path, text: &str) -> Result<(), ConfigError> {
        if self.metrics.enabled && self.metrics.listen == self.console.listen {
            return Err(ConfigError::at_key(
                origin,
                text,
                "metrics.listen",
                "the metrics endpoint and the console cannot share one address",
                "give [metrics] listen a different port from [console] listen",
            ));
        }
        if self.database.max_connections == 0 {
            return Err(ConfigError::at_key(
                origin,
                text,
                "database.max_connections",
                "the pool needs at least one connection",
                "set max_connections to 1 or more (the default is 8)",
            ));
        }
        Ok(())
    }
}

impl DatabaseUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("/var/lib/sheepdog"),
            database: DatabaseConfig::default(),
            log: LogConfig::default(),
            console: ConsoleConfig::default(),
            metrics: MetricsConfig::default(),
            school: SchoolConfig::default(),
            filtering: FilteringConfig::default(),
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: DatabaseUrl::default(),
            max_connections: 8,
            busy_timeout_ms: 5000,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: LogLevel::Info,
        }
    }
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9153)),
        }
    }
}

impl Default for SchoolConfig {
    fn default() -> Self {
        Self {
            timezone: TimeZone(chrono_tz::Europe::London),
        }
    }
}

impl Default for FilteringConfig {
    fn default() -> Self {
        Self {
            policy: PathBuf::from("policy.toml"),
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        })
    }
}

impl Serialize for DatabaseUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for DatabaseUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let url = String::deserialize(deserializer)?;
        let known = ["sqlite:", "postgres:", "postgresql:"];
        if url.is_empty() || known.iter().any(|scheme| url.starts_with(scheme)) {
            Ok(Self(url))
        } else {
            Err(serde::de::Error::custom(format!(
                "`{url}` is not a sqlite:// or postgres:// URL"
            )))
        }
    }
}

impl Serialize for TimeZone {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0.name())
    }
}

impl<'de> Deserialize<'de> for TimeZone {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse::<chrono_tz::Tz>()
            .map(TimeZone)
            .map_err(|_| serde::de::Error::custom(format!("`{name}` is not an IANA time zone")))
    }
}

#[cfg(test)]
mod tests;
