//! Where lists come from: local files and HTTP(S) downloads.
//!
//! Every source has a cache folder holding its *last good copy*. A refresh
//! fetches the source (conditionally, with `If-None-Match` and
//! `If-Modified-Since`, for HTTP), checks the size limit and the optional
//! SHA-256 checksum, parses it to count its entries, and only then replaces
//! the last good copy. When the fetch fails, or the new copy has less than
//! half the entries of the last good one, the last good copy stays in force
//! and the outcome carries a warning for the operator.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ListError;
use crate::parse::{parse_reader, ListFormat};

/// The default size limit for one downloaded list: 512 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 512 << 20;

/// One list source as the policy describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSpec {
    /// The list's name; also its cache folder's name.
    pub name: String,
    /// A path (relative to `base_dir`) or an `http://` / `https://` address.
    pub location: String,
    /// The list's format.
    pub format: ListFormat,
    /// The expected SHA-256 of the content, in hex, if the operator pins it.
    pub sha256: Option<String>,
    /// The largest content accepted, in bytes.
    pub max_bytes: u64,
}

/// What a refresh did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FetchStatus {
    /// A new copy was accepted.
    Updated,
    /// The server said the list has not changed.
    NotModified,
    /// The new copy was refused or could not be fetched; the last good copy
    /// stays in force.
    KeptLastGood,
    /// A local folder (UT1), used where it is.
    InPlace,
}

/// The result of refreshing one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOutcome {
    /// The file or folder to compile from.
    pub path: PathBuf,
    /// What happened.
    pub status: FetchStatus,
    /// Something the operator must be told, if anything.
    pub warning: Option<String>,
    /// Entries in the copy in force.
    pub entries: u64,
}

/// What the cache remembers about a source's last good copy.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct CacheMeta {
    etag: Option<String>,
    last_modified: Option<String>,
    entries: u64,
    sha256: String,
    fetched_at_unix: u64,
}

fn is_http(location: &str) -> bool {
    location.starts_with("http://") || location.starts_with("https://")
}

/// The folder holding a source's last good copy.
pub fn cache_dir_for(cache_root: &Path, name: &str) -> PathBuf {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    cache_root.join(safe)
}

/// When `name`'s source was last fetched or found unchanged, if ever: what
/// a refresh schedule counts from, across restarts.
pub fn last_checked(cache_root: &Path, name: &str) -> Option<std::time::SystemTime> {
    let meta_path = cache_dir_for(cache_root, name).join("meta.json");
    let meta: CacheMeta = serde_json::from_slice(&std::fs::read(meta_path).ok()?).ok()?;
    (meta.fetched_at_unix > 0)
        .then(|| std::time::UNIX_EPOCH + Duration::from_secs(meta.fetched_at_unix))
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The outcome for a source whose last good copy is still current, with
/// the check recorded.
fn unchanged(
    current: PathBuf,
    meta_path: &Path,
    checked: &CacheMeta,
) -> Result<FetchOutcome, ListError> {
    std::fs::write(meta_path, serde_json::to_vec_pretty(checked)?)
        .map_err(|e| ListError::io(meta_path, e))?;
    Ok(FetchOutcome {
        path: current,
        status: FetchStatus::NotModified,
        warning: None,
        entries: checked.entries,
    })
}

/// Refreshes one source into `cache_root`, keeping the last good copy when
/// the new one fails. Errors only when there is no usable copy at all.
pub fn refresh(
    spec: &SourceSpec,
    base_dir: &Path,
    cache_root: &Path,
) -> Result<FetchOutcome, ListError> {
    let dir = cache_dir_for(cache_root, &spec.name);
    let current = dir.join("current");
    let meta_path = dir.join("meta.json");
    let meta: CacheMeta = std::fs::read(&meta_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let have_last_good = current.is_file();

    if !is_http(&spec.location) {
        let path = base_dir.join(&spec.location);
        if path.is_dir() {
            return Ok(FetchOutcome {
                path,
                status: FetchStatus::InPlace,
                warning: None,
                entries: 0,
            });
        }
    }
    std::fs::create_dir_all(&dir).map_err(|e| ListError::io(&dir, e))?;
    let incoming = dir.join("incoming");
    let attempt = fetch_into(spec, base_dir, &meta, &incoming);
    let keep = |reason: String| -> Result<FetchOutcome, ListError> {
        let _ = std::fs::remove_file(&incoming);
        if have_last_good {
            Ok(FetchOutcome {
                path: current.clone(),
                status: FetchStatus::KeptLastGood,
                warning: Some(format!(
                    "list {}: {reason}; the last good copy ({} entries) stays in force",
                    spec.name, meta.entries
                )),
                entries: meta.entries,
            })
        } else {
            Err(ListError::Fetch {
                url: spec.location.clone(),
                reason,
            })
        }
    };
    let fetched = match attempt {
        Ok(Some(f)) => f,
        Ok(None) if have_last_good => {
            let checked = CacheMeta {
                fetched_at_unix: now_unix(),
                ..meta
            };
            return unchanged(current, &meta_path, &checked);
        }
        Ok(None) => return keep("server said not modified but there is no copy".to_owned()),
        Err(e) => return keep(e.to_string()),
    };
    if let Some(expected) = &spec.sha256 {
        if !expected.eq_ignore_ascii_case(&fetched.sha256) {
            return keep(
                ListError::ChecksumMismatch {
                    what: spec.location.clone(),
                    expected: expected.clone(),
                    actual: fetched.sha256,
                }
                .to_string(),
            );
        }
    }
    // The same bytes again (a local file, or a server without ETag or
    // Last-Modified): nothing to rebuild.
    if have_last_good && fetched.sha256 == meta.sha256 {
        let _ = std::fs::remove_file(&incoming);
        let checked = CacheMeta {
            etag: fetched.etag,
            last_modified: fetched.last_modified,
            fetched_at_unix: now_unix(),
            ..meta
        };
        return unchanged(current, &meta_path, &checked);
    }
    let entries = match count_entries(&incoming, spec.format) {
        Ok(n) => n,
        Err(e) => return keep(e.to_string()),
    };
    if have_last_good && meta.entries > 0 && entries * 2 < meta.entries {
        return keep(format!(
            "the new copy has {entries} entries, less than half of {}",
            meta.entries
        ));
    }
    std::fs::rename(&incoming, &current).map_err(|e| ListError::io(&current, e))?;
    let new_meta = CacheMeta {
        etag: fetched.etag,
        last_modified: fetched.last_modified,
        entries,
        sha256: fetched.sha256,
        fetched_at_unix: now_unix(),
    };
    std::fs::write(&meta_path, serde_json::to_vec_pretty(&new_meta)?)
        .map_err(|e| ListError::io(&meta_path, e))?;
    Ok(FetchOutcome {
        path: current,
        status: FetchStatus::Updated,
        warning: None,
        entries,
    })
}

/// Replaces a source's last good copy by hand (`sheepdog lists import`),
/// with the same checks as a refresh except the shrink check.
pub fn import_file(
    spec: &SourceSpec,
    file: &Path,
    cache_root: &Path,
) -> Result<FetchOutcome, ListError> {
    let mut forced = spec.clone();
    forced.location = file.to_string_lossy().into_owned();
    let dir = cache_dir_for(cache_root, &spec.name);
    let _ = std::fs::remove_file(dir.join("meta.json"));
    let _ = std::fs::remove_file(dir.join("current"));
    refresh(&forced, Path::new(""), cache_root)
}

struct Fetched {
    etag: Option<String>,
    last_modified: Option<String>,
    sha256: String,
}

/// Copies at most `max_bytes` from `reader` to `to`, hashing as it goes.
fn copy_limited(mut reader: impl Read, to: &Path, spec: &SourceSpec) -> Result<String, ListError> {
    let mut out = File::create(to).map_err(|e| ListError::io(to, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(|e| ListError::io(to, e))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > spec.max_bytes {
            return Err(ListError::TooLarge {
                what: spec.location.clone(),
                limit: spec.max_bytes,
            });
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(|e| ListError::io(to, e))?;
    }
    out.sync_all().map_err(|e| ListError::io(to, e))?;
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Fetches into `to`. `Ok(None)` means "not modified".
fn fetch_into(
    spec: &SourceSpec,
    base_dir: &Path,
    meta: &CacheMeta,
    to: &Path,
) -> Result<Option<Fetched>, ListError> {
    if !is_http(&spec.location) {
        let path = base_dir.join(&spec.location);
        let file = File::open(&path).map_err(|e| ListError::io(&path, e))?;
        let sha256 = copy_limited(file, to, spec)?;
        return Ok(Some(Fetched {
            etag: None,
            last_modified: None,
            sha256,
        }));
    }
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(15))
        .timeout(Duration::from_secs(300))
        .user_agent(concat!("sheepdog/", env!("CARGO_PKG_VERSION")))
        .build();
    let mut request = agent.get(&spec.location);
    if let Some(etag) = &meta.etag {
        request = request.set("If-None-Match", etag);
    }
    if let Some(lm) = &meta.last_modified {
        request = request.set("If-Modified-Since", lm);
    }
    let fail = |reason: String| ListError::Fetch {
        url: spec.location.clone(),
        reason,
    };
    let response = match request.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(code, _)) => return Err(fail(format!("HTTP status {code}"))),
        Err(e) => return Err(fail(e.to_string())),
    };
    if response.status() == 304 {
        return Ok(None);
    }
    if let Some(len) = response
        .header("Content-Length")
        .and_then(|l| l.parse::<u64>().ok())
    {
        if len > spec.max_bytes {
            return Err(ListError::TooLarge {
                what: spec.location.clone(),
                limit: spec.max_bytes,
            });
        }
    }
    let etag = response.header("ETag").map(str::to_owned);
    let last_modified = response
        .header("Last-Modified")
        .and_then(|v| httpdate::parse_http_date(v).ok().map(|_| v.to_owned()));
    let sha256 = copy_limited(response.into_reader(), to, spec)?;
    Ok(Some(Fetched {
        etag,
        last_modified,
        sha256,
    }))
}

fn count_entries(path: &Path, format: ListFormat) -> Result<u64, ListError> {
    let file = File::open(path).map_err(|e| ListError::io(path, e))?;
    let report = parse_reader(BufReader::new(file), format, "count", &mut |_, _| {})
        .map_err(|e| ListError::io(path, e))?;
    Ok(report.entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(location: &str) -> SourceSpec {
        SourceSpec {
            name: "test list".to_owned(),
            location: location.to_owned(),
            format: ListFormat::Domains,
            sha256: None,
            max_bytes: 1 << 20,
        }
    }

    #[test]
    fn keeps_last_good_copy_when_list_shrinks_or_breaks() {
        let base = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let big: String = (0..100).map(|i| format!("site{i}.test\n")).collect();
        std::fs::write(base.path().join("l.txt"), &big).unwrap();
        let first = refresh(&spec("l.txt"), base.path(), cache.path()).unwrap();
        assert_eq!(first.status, FetchStatus::Updated);
        assert_eq!(first.entries, 100);
        let checked = last_checked(cache.path(), "test list").unwrap();

        // The same bytes again: nothing to rebuild, but the check counts.
        let again = refresh(&spec("l.txt"), base.path(), cache.path()).unwrap();
        assert_eq!(again.status, FetchStatus::NotModified);
        assert_eq!(again.entries, 100);
        assert!(last_checked(cache.path(), "test list").unwrap() >= checked);

        // Shrinks by more than half: refused, warned.
        std::fs::write(base.path().join("l.txt"), "site1.test\n").unwrap();
        let second = refresh(&spec("l.txt"), base.path(), cache.path()).unwrap();
        assert_eq!(second.status, FetchStatus::KeptLastGood);
        assert!(second.warning.unwrap().contains("less than half"));
        assert_eq!(std::fs::read_to_string(&second.path).unwrap(), big);

        // Missing file: last good copy again.
        std::fs::remove_file(base.path().join("l.txt")).unwrap();
        let third = refresh(&spec("l.txt"), base.path(), cache.path()).unwrap();
        assert_eq!(third.status, FetchStatus::KeptLastGood);

        // Bad checksum, size limit.
        std::fs::write(base.path().join("l.txt"), &big).unwrap();
        let mut s = spec("l.txt");
        s.sha256 = Some("00".repeat(32));
        assert_eq!(
            refresh(&s, base.path(), cache.path()).unwrap().status,
            FetchStatus::KeptLastGood
        );
        let mut s = spec("l.txt");
        s.max_bytes = 10;
        assert_eq!(
            refresh(&s, base.path(), cache.path()).unwrap().status,
            FetchStatus::KeptLastGood
        );
    }

    #[test]
    fn no_copy_at_all_is_an_error() {
        let base = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        assert!(refresh(&spec("missing.txt"), base.path(), cache.path()).is_err());
        // An unreachable address (nothing listens on port 9 of loopback).
        assert!(refresh(
            &spec("http://127.0.0.1:9/list.txt"),
            base.path(),
            cache.path()
        )
        .is_err());
    }

    /// A status line, headers and body the test server sends.
    type Answer = (&'static str, Vec<(&'static str, String)>, String);

    /// One scripted answer per request from a real HTTP server on loopback;
    /// returns the server's address and the request heads it received.
    fn serve(answers: Vec<Answer>) -> (String, std::sync::mpsc::Receiver<String>) {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let (heads, received) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for (status, headers, body) in answers {
                let (mut stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                heads.send(head).unwrap();
                let mut response = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
                    body.len()
                );
                for (name, value) in headers {
                    response.push_str(&format!("{name}: {value}\r\n"));
                }
                response.push_str("\r\n");
                response.push_str(&body);
                stream.write_all(response.as_bytes()).unwrap();
            }
        });
        (format!("http://{address}/list.txt"), received)
    }

    #[test]
    fn http_sources_use_etags_and_keep_the_last_good_copy() {
        let base = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let full: String = (0..10).map(|n| format!("site{n}.example.test\n")).collect();
        let etag = || vec![("ETag", "\"v1\"".to_owned())];
        let (url, heads) = serve(vec![
            ("200 OK", etag(), full.clone()),
            ("304 Not Modified", etag(), String::new()),
            ("200 OK", vec![], "only.example.test\n".to_owned()),
            ("503 Service Unavailable", vec![], String::new()),
        ]);
        let spec = spec(&url);

        let first = refresh(&spec, base.path(), cache.path()).unwrap();
        assert_eq!((first.status, first.entries), (FetchStatus::Updated, 10));
        assert!(!heads
            .recv()
            .unwrap()
            .to_ascii_lowercase()
            .contains("if-none-match"));

        let second = refresh(&spec, base.path(), cache.path()).unwrap();
        assert_eq!(second.status, FetchStatus::NotModified);
        assert!(heads
            .recv()
            .unwrap()
            .to_ascii_lowercase()
            .contains("if-none-match: \"v1\""));

        let shrunk = refresh(&spec, base.path(), cache.path()).unwrap();
        assert_eq!(
            (shrunk.status, shrunk.entries),
            (FetchStatus::KeptLastGood, 10)
        );
        assert!(shrunk.warning.unwrap().contains("less than half"));

        let down = refresh(&spec, base.path(), cache.path()).unwrap();
        assert_eq!(down.status, FetchStatus::KeptLastGood);
        assert!(down.warning.is_some());
        assert_eq!(std::fs::read_to_string(&down.path).unwrap(), full);
    }
}
