//! squidGuard / UT1 category directories.
//!
//! A UT1 collection is a folder holding a folder per category (`adult`,
//! `gambling`, `vpn`, …), each with up to three files: `domains` (one name
//! per line), `urls` (host and path) and `expressions` (regular expressions
//! matched against URLs). Some category folders are symbolic links to
//! another category (UT1 keeps old names that way); those are recorded as
//! aliases and read once. Entries keep the UT1 category name; the policy
//! maps UT1 names to sheepdog categories.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use crate::error::ListError;
use crate::parse::{parse_reader_with, LineParser, ListFormat, ParseReport};
use crate::snapshot::{ListId, SnapshotBuilder};

/// What reading a UT1 directory found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ut1Summary {
    /// The category folders read.
    pub categories: Vec<String>,
    /// Alias folders (symbolic links): (alias, the category it names).
    pub aliases: Vec<(String, String)>,
    /// Counts and bad lines over all files.
    pub report: ParseReport,
}

/// Reads every category folder under `dir` into `list`.
pub fn read_ut1_dir(
    dir: &Path,
    builder: &mut SnapshotBuilder,
    list: ListId,
) -> Result<Ut1Summary, ListError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| ListError::io(dir, e))?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.file_name());
    let mut summary = Ut1Summary::default();
    summary.report.format = Some(ListFormat::Ut1);
    for entry in entries {
        let path = entry.path();
        let Some(category) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        if !path.is_dir() {
            continue;
        }
        let is_link = std::fs::symlink_metadata(&path)
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false);
        if is_link {
            if let Ok(target) = std::fs::read_link(&path) {
                let target_name = target
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_owned();
                let sibling = target
                    .parent()
                    .map_or(true, |p| p.as_os_str().is_empty() || p == dir);
                if sibling && dir.join(&target_name).is_dir() {
                    summary.aliases.push((category, target_name));
                    continue;
                }
            }
        }
        let mut any = false;
        for (file_name, parser, format) in [
            (
                "domains",
                LineParser::new(ListFormat::Domains),
                ListFormat::Domains,
            ),
            ("urls", LineParser::new(ListFormat::Urls), ListFormat::Urls),
            (
                "expressions",
                LineParser::url_expressions(),
                ListFormat::Regex,
            ),
        ] {
            let file_path = path.join(file_name);
            if !file_path.is_file() {
                continue;
            }
            any = true;
            let label = format!("{category}/{file_name}");
            let file = File::open(&file_path).map_err(|e| ListError::io(&file_path, e))?;
            let report = parse_reader_with(
                BufReader::new(file),
                parser,
                format,
                &label,
                &mut |origin, e| builder.add_entry(list, Some(&category), origin, e),
            )
            .map_err(|e| ListError::io(&file_path, e))?;
            summary.report.merge(report);
        }
        if any {
            summary.categories.push(category);
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::Origin;

    #[test]
    fn reads_categories_files_and_aliases() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("gambling")).unwrap();
        std::fs::write(
            root.join("gambling/domains"),
            "example-casino.test\nbad..line\n",
        )
        .unwrap();
        std::fs::write(root.join("gambling/urls"), "example-news.test/betting\n").unwrap();
        std::fs::write(root.join("gambling/expressions"), "poker[0-9]+\n").unwrap();
        std::fs::create_dir(root.join("adult")).unwrap();
        std::fs::write(root.join("adult/domains"), "example-adult.test\n").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("adult", root.join("porn")).unwrap();

        let mut b = SnapshotBuilder::new();
        let list = b.add_list("ut1", false, None).unwrap();
        let summary = read_ut1_dir(root, &mut b, list).unwrap();
        assert_eq!(summary.categories, vec!["adult", "gambling"]);
        #[cfg(unix)]
        assert_eq!(
            summary.aliases,
            vec![("porn".to_owned(), "adult".to_owned())]
        );
        assert_eq!(summary.report.invalid, 1);
        assert_eq!(summary.report.bad_lines[0].file, "gambling/domains");
        assert_eq!(summary.report.bad_lines[0].line, 2);
        let _ = Origin { file: "", line: 0 };
        let snap = b.build().unwrap();
        let mut cats = Vec::new();
        snap.for_each_name_hit("www.example-casino.test", |h| {
            cats.push(snap.categories()[usize::from(h.category)].clone())
        });
        assert_eq!(cats, vec!["gambling"]);
        let url = crate::url::parse_url("http://example-news.test/betting/today").unwrap();
        let mut n = 0;
        snap.for_each_url_hit(&url, |_| n += 1);
        assert_eq!(n, 1);
        let url = crate::url::parse_url("http://x.test/poker99").unwrap();
        let mut n = 0;
        snap.for_each_url_hit(&url, |_| n += 1);
        assert_eq!(n, 1);
    }
}
