//! The sample policy and lists that ship in `dist/`, built into the binary so
//! that `sheepdog demo` works from any directory. Every name in them is under
//! the reserved `.test` and `.invalid` domains.

use std::path::Path;

use anyhow::Context;

const FILES: &[(&str, &str)] = &[
    (
        "policy.toml",
        include_str!("../../../dist/policy.example.toml"),
    ),
    (
        "lists/iwf-sample.txt",
        include_str!("../../../dist/lists/iwf-sample.txt"),
    ),
    (
        "lists/ctiru-sample.txt",
        include_str!("../../../dist/lists/ctiru-sample.txt"),
    ),
    (
        "lists/gambling-hosts.txt",
        include_str!("../../../dist/lists/gambling-hosts.txt"),
    ),
    (
        "lists/circumvention-adblock.txt",
        include_str!("../../../dist/lists/circumvention-adblock.txt"),
    ),
    (
        "lists/games-domains.txt",
        include_str!("../../../dist/lists/games-domains.txt"),
    ),
    (
        "lists/malware.rpz",
        include_str!("../../../dist/lists/malware.rpz"),
    ),
    (
        "lists/ut1/README.md",
        include_str!("../../../dist/lists/ut1/README.md"),
    ),
    (
        "lists/ut1/adult/domains",
        include_str!("../../../dist/lists/ut1/adult/domains"),
    ),
    (
        "lists/ut1/adult/expressions",
        include_str!("../../../dist/lists/ut1/adult/expressions"),
    ),
    (
        "lists/ut1/gambling/domains",
        include_str!("../../../dist/lists/ut1/gambling/domains"),
    ),
    (
        "lists/ut1/gambling/urls",
        include_str!("../../../dist/lists/ut1/gambling/urls"),
    ),
    (
        "lists/ut1/games/domains",
        include_str!("../../../dist/lists/ut1/games/domains"),
    ),
    (
        "lists/ut1/social_networks/domains",
        include_str!("../../../dist/lists/ut1/social_networks/domains"),
    ),
    (
        "lists/ut1/vpn/domains",
        include_str!("../../../dist/lists/ut1/vpn/domains"),
    ),
];

/// Writes the sample policy and lists under `dir`; returns the policy's path.
pub fn write(dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    for (name, text) in FILES {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    // UT1 keeps category aliases as symbolic links.
    #[cfg(unix)]
    std::os::unix::fs::symlink("adult", dir.join("lists/ut1/porn"))
        .context("cannot link the UT1 alias porn -> adult")?;
    Ok(dir.join("policy.toml"))
}

#[cfg(test)]
mod tests {
    /// Every file in dist/lists is embedded, so the demo's lists are the
    /// documented sample.
    #[test]
    fn every_sample_list_is_embedded() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist");
        let mut on_disk = Vec::new();
        let mut stack = vec![root.join("lists")];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let entry = entry.unwrap();
                let kind = std::fs::symlink_metadata(entry.path()).unwrap().file_type();
                if kind.is_dir() {
                    stack.push(entry.path());
                } else if kind.is_file() {
                    let relative = entry
                        .path()
                        .strip_prefix(&root)
                        .unwrap()
                        .display()
                        .to_string();
                    on_disk.push(relative);
                }
            }
        }
        on_disk.sort();
        let mut embedded: Vec<String> = super::FILES[1..]
            .iter()
            .map(|(n, _)| n.to_string())
            .collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
    }
}
