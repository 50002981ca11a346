//! The compiled, immutable snapshot of every list, and its builder.
//!
//! Names are stored once in a hashed name table (see `table.rs`): exact,
//! memory-mappable, two dependent memory reads per probe. A lookup probes
//! each label suffix of the query, shortest first, so a rule for
//! `example.com` is found for `www.example.com`, never for `badexample.com`.
//! Each stored name maps to a *membership set*: the (list, category, match
//! mode, exception, RPZ action) tuples it belongs to; sets are shared, so five
//! million names in one list cost one set. URL rules are kept per host, and
//! regular expressions in size-bounded DFAs.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::ListError;
use crate::parse::{Entry, MatchMode, Origin, ParseReport, RegexTarget, RpzAction};
use crate::regexes::{check_pattern, RegexSet};
use crate::table::{name_hash, NameTable, PrintKey, PushError, TableBuilder};
use crate::url::{path_matches, UrlKey};

/// Suffixes of a name probed together (more labels are probed in rounds).
const MAX_PROBES: usize = 8;

/// The most lists one snapshot can hold.
pub const MAX_LISTS: usize = u16::MAX as usize;

/// A list as the snapshot knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListInfo {
    /// The list's name in the policy (`iwf`, `ut1`, `local-gambling`).
    pub name: String,
    /// Whether the law requires this list to be enforced (IWF, CTIRU, …).
    pub legal_requirement: bool,
    /// The category of entries that do not name their own.
    pub default_category: Option<String>,
    /// What parsing found: counts and the first bad lines.
    #[serde(default)]
    pub report: ParseReport,
    /// UT1 alias folders: (alias, the category it names).
    #[serde(default)]
    pub aliases: Vec<(String, String)>,
}

/// Identifies a list within one snapshot.
pub type ListId = u16;
/// Identifies a category name within one snapshot.
pub type CategoryIndex = u16;

const MODE_EXACT: u64 = 0;
const MODE_SUB: u64 = 1;
const MODE_BOTH: u64 = 2;

/// One rule's membership, packed into 64 bits: list, category, match mode,
/// exception flag and RPZ action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
struct Membership(u64);

impl Membership {
    fn new(
        list: ListId,
        category: CategoryIndex,
        mode: MatchMode,
        exception: bool,
        rpz: Option<RpzAction>,
    ) -> Self {
        let mode = match mode {
            MatchMode::Exact => MODE_EXACT,
            MatchMode::Subdomains => MODE_SUB,
            MatchMode::NameAndSubdomains => MODE_BOTH,
        };
        let rpz = match rpz {
            None => 0u64,
            Some(RpzAction::NxDomain) => 1,
            Some(RpzAction::NoData) => 2,
            Some(RpzAction::Passthru) => 3,
            Some(RpzAction::Drop) => 4,
            Some(RpzAction::LocalData) => 5,
        };
        Membership(
            u64::from(list)
                | u64::from(category) << 16
                | mode << 32
                | u64::from(exception) << 40
                | rpz << 48,
        )
    }
    fn list(self) -> ListId {
        (self.0 & 0xffff) as u16
    }
    fn category(self) -> CategoryIndex {
        ((self.0 >> 16) & 0xffff) as u16
    }
    fn mode(self) -> MatchMode {
        match (self.0 >> 32) & 0xff {
            MODE_EXACT => MatchMode::Exact,
            MODE_SUB => MatchMode::Subdomains,
            _ => MatchMode::NameAndSubdomains,
        }
    }
    fn exception(self) -> bool {
        (self.0 >> 40) & 1 == 1
    }
    fn rpz(self) -> Option<RpzAction> {
        match (self.0 >> 48) & 0xff {
            1 => Some(RpzAction::NxDomain),
            2 => Some(RpzAction::NoData),
            3 => Some(RpzAction::Passthru),
            4 => Some(RpzAction::Drop),
            5 => Some(RpzAction::LocalData),
            _ => None,
        }
    }
}

/// How a hit was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HitSource {
    /// A name rule: the rule's name is the last `suffix_len` bytes of the
    /// normalised query name.
    Name {
        /// Length of the matched rule name.
        suffix_len: u8,
        /// What the rule covers.
        mode: MatchMode,
    },
    /// A URL rule, by index.
    Url(u32),
    /// A regular expression rule, by index.
    Regex(u32),
}

/// One rule of one list that covers a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// The list.
    pub list: ListId,
    /// The category, an index into [`Snapshot::categories`].
    pub category: CategoryIndex,
    /// An exception rule: the list does not act on this query.
    pub exception: bool,
    /// The RPZ action, for RPZ lists.
    pub rpz: Option<RpzAction>,
    /// Which rule.
    pub source: HitSource,
}

impl Hit {
    fn new(m: Membership, source: HitSource) -> Self {
        Hit {
            list: m.list(),
            category: m.category(),
            exception: m.exception(),
            rpz: m.rpz(),
            source,
        }
    }
}

/// A URL rule as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct UrlRule {
    pub(crate) host: String,
    pub(crate) path: String,
    pub(crate) membership: u64,
}

/// A regular expression rule as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RegexRule {
    pub(crate) pattern: String,
    pub(crate) target: RegexTarget,
    pub(crate) membership: u64,
}

/// Everything in a snapshot except the name index: small, kept as JSON.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Meta {
    pub(crate) lists: Vec<ListInfo>,
    pub(crate) categories: Vec<String>,
    pub(crate) set_offsets: Vec<u32>,
    pub(crate) sets: Vec<u64>,
    pub(crate) urls: Vec<UrlRule>,
    pub(crate) regexes: Vec<RegexRule>,
    pub(crate) local_data: Vec<(String, Vec<String>)>,
    pub(crate) names: u64,
    pub(crate) built_at_unix: u64,
}

/// Counts describing a snapshot, for `sheepdog lists stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotStats {
    /// Distinct names in the name index.
    pub names: u64,
    /// URL rules.
    pub url_rules: u64,
    /// Regular expression rules.
    pub regex_rules: u64,
    /// Size of the name index in bytes.
    pub index_bytes: u64,
    /// Whether the index is memory-mapped from a file.
    pub mapped: bool,
    /// When the snapshot was built, in seconds since 1970.
    pub built_at_unix: u64,
}

/// The compiled, immutable form of every list. Cheap to share between
/// threads; lookups take `&self` and never allocate or lock.
#[derive(Debug)]
pub struct Snapshot {
    /// The name index; `None` for a snapshot without names.
    pub(crate) index: Option<NameTable>,
    pub(crate) meta: Meta,
    url_index: HashMap<String, Vec<u32>>,
    name_regexes: RegexSet,
    url_regexes: RegexSet,
    local_data: HashMap<String, Vec<String>>,
}

impl Snapshot {
    pub(crate) fn assemble(index: Option<NameTable>, meta: Meta) -> Self {
        let mut url_index: HashMap<String, Vec<u32>> = HashMap::new();
        for (i, rule) in meta.urls.iter().enumerate() {
            url_index
                .entry(rule.host.clone())
                .or_default()
                .push(i as u32);
        }
        let mut name_patterns = Vec::new();
        let mut url_patterns = Vec::new();
        for (i, rule) in meta.regexes.iter().enumerate() {
            let item = (i as u32, rule.pattern.clone());
            match rule.target {
                RegexTarget::Name => name_patterns.push(item),
                RegexTarget::Url => url_patterns.push(item),
            }
        }
        // Patterns were checked one by one when the snapshot was built.
        let (name_regexes, _) = RegexSet::build(&name_patterns);
        let (url_regexes, _) = RegexSet::build(&url_patterns);
        let local_data = meta.local_data.iter().cloned().collect();
        Snapshot {
            index,
            meta,
            url_index,
            name_regexes,
            url_regexes,
            local_data,
        }
    }

    /// An empty snapshot: no list matches anything.
    pub fn empty() -> Self {
        Snapshot::assemble(None, Meta::default())
    }

    /// The lists, indexed by [`ListId`].
    pub fn lists(&self) -> &[ListInfo] {
        &self.meta.lists
    }

    /// The category names, indexed by [`CategoryIndex`].
    pub fn categories(&self) -> &[String] {
        &self.meta.categories
    }

    /// Counts for reports.
    pub fn stats(&self) -> SnapshotStats {
        SnapshotStats {
            names: self.meta.names,
            url_rules: self.meta.urls.len() as u64,
            regex_rules: self.meta.regexes.len() as u64,
            index_bytes: self.index.as_ref().map_or(0, |i| i.as_bytes().len() as u64),
            mapped: self.index.as_ref().is_some_and(NameTable::is_mapped),
            built_at_unix: self.meta.built_at_unix,
        }
    }

    /// Whether any URL rule exists for exactly this (normalised) host. A DNS
    /// server can use it to send such hosts through the proxy, where the
    /// full URL is known.
    pub fn host_has_url_rules(&self, host: &str) -> bool {
        self.url_index.contains_key(host)
    }

    /// RPZ local data for a name (`A 192.0.2.1`), if an RPZ list has any.
    pub fn local_data(&self, name: &str) -> Option<&[String]> {
        self.local_data.get(name).map(Vec::as_slice)
    }

    fn set(&self, id: u64) -> &[u64] {
        let id = id as usize;
        let start = self.meta.set_offsets.get(id).copied().unwrap_or(0) as usize;
        let end = self
            .meta
            .set_offsets
            .get(id + 1)
            .copied()
            .map_or(self.meta.sets.len(), |e| e as usize);
        self.meta.sets.get(start..end).unwrap_or(&[])
    }

    /// Calls `f` for every name rule and name regular expression covering a
    /// normalised name, shortest matching name first. No allocation, no
    /// lock: one table probe per label suffix of the name.
    pub fn for_each_name_hit(&self, name: &str, mut f: impl FnMut(Hit)) {
        let bytes = name.as_bytes();
        if bytes.len() > 255 {
            return;
        }
        if let Some(index) = &self.index {
            let table = index.bytes();
            // Label suffixes, shortest first (`com`, `example.com`, ...):
            // their starts, then every bucket, then every comparison, so
            // the memory reads of different suffixes overlap.
            let mut starts = [0u8; MAX_PROBES];
            let mut ranges = [(0u32, 0u32); MAX_PROBES];
            let mut end = bytes.len();
            let mut done = false;
            while !done {
                let mut n = 0;
                while n < MAX_PROBES && !done {
                    let start = bytes[..end]
                        .iter()
                        .rposition(|&b| b == b'.')
                        .map_or(0, |dot| dot + 1);
                    starts[n] = start as u8;
                    n += 1;
                    done = start == 0;
                    end = start.saturating_sub(1);
                }
                for i in 0..n {
                    ranges[i] = index.locate_in(table, &bytes[usize::from(starts[i])..]);
                }
                for i in 0..n {
                    let start = usize::from(starts[i]);
                    let suffix = &bytes[start..];
                    if let Some(set) = index.scan_in(table, ranges[i], suffix) {
                        self.set_hits(set, start == 0, suffix.len(), &mut f);
                    }
                }
            }
        }
        self.name_regex_hits(name, &mut f);
    }

    fn set_hits(&self, set: u64, full: bool, suffix_len: usize, f: &mut impl FnMut(Hit)) {
        for &m in self.set(set) {
            let m = Membership(m);
            let covers = match m.mode() {
                MatchMode::Exact => full,
                MatchMode::Subdomains => !full,
                MatchMode::NameAndSubdomains => true,
            };
            if covers {
                f(Hit::new(
                    m,
                    HitSource::Name {
                        suffix_len: suffix_len as u8,
                        mode: m.mode(),
                    },
                ));
            }
        }
    }

    fn name_regex_hits(&self, name: &str, f: &mut impl FnMut(Hit)) {
        if !self.name_regexes.is_empty() {
            self.name_regexes.for_each_match(name, |id| {
                if let Some(rule) = self.meta.regexes.get(id as usize) {
                    f(Hit::new(Membership(rule.membership), HitSource::Regex(id)));
                }
            });
        }
    }

    /// Calls `f` for every URL rule and URL regular expression covering a
    /// URL. Name rules for the URL's host are not included: call
    /// [`Snapshot::for_each_name_hit`] with `url.host` for those.
    pub fn for_each_url_hit(&self, url: &UrlKey, mut f: impl FnMut(Hit)) {
        if let Some(rules) = self.url_index.get(&url.host) {
            for &i in rules {
                if let Some(rule) = self.meta.urls.get(i as usize) {
                    if path_matches(&rule.path, &url.path) {
                        f(Hit::new(Membership(rule.membership), HitSource::Url(i)));
                    }
                }
            }
        }
        if !self.url_regexes.is_empty() {
            let text = format!("{}{}", url.host, url.path);
            self.url_regexes.for_each_match(&text, |id| {
                if let Some(rule) = self.meta.regexes.get(id as usize) {
                    f(Hit::new(Membership(rule.membership), HitSource::Regex(id)));
                }
            });
        }
    }

    /// The rule behind a hit, as a person would write it.
    pub fn describe_rule(&self, hit: &Hit, query_name: &str) -> String {
        match hit.source {
            HitSource::Name { suffix_len, mode } => {
                let len = usize::from(suffix_len).min(query_name.len());
                let name = &query_name[query_name.len() - len..];
                // Built by pushing the pieces: `format!` cost 550
                // instructions, and the DNS server describes the rule of
                // every blocked query it logs.
                let (before, after) = match mode {
                    MatchMode::Exact => ("", ""),
                    MatchMode::Subdomains => ("*.", ""),
                    MatchMode::NameAndSubdomains => ("", " (and subdomains)"),
                };
                let exception = if hit.exception { "exception " } else { "" };
                let mut text = String::with_capacity(
                    exception.len() + before.len() + name.len() + after.len(),
                );
                for piece in [exception, before, name, after] {
                    text.push_str(piece);
                }
                text
            }
            HitSource::Url(i) => self
                .meta
                .urls
                .get(i as usize)
                .map(|r| format!("{}{}", r.host, r.path))
                .unwrap_or_default(),
            HitSource::Regex(i) => self
                .meta
                .regexes
                .get(i as usize)
                .map(|r| format!("/{}/", r.pattern))
                .unwrap_or_default(),
        }
    }

    /// Writes the snapshot to a file, atomically (write, then rename).
    pub fn write_to(&self, path: &Path) -> Result<(), ListError> {
        crate::store::write(self, path)
    }

    /// Opens a snapshot file, memory-mapping its name index: answers at
    /// once, pages are read as lookups touch them.
    pub fn open(path: &Path) -> Result<Self, ListError> {
        crate::store::open(path, false)
    }

    /// Opens a snapshot file and copies its name index into memory, on
    /// transparent huge pages where the kernel allows. Takes a moment (a
    /// read of the index) but makes lookups faster than the mapped file,
    /// whose 4 KiB pages cost a TLB miss on nearly every random lookup. A
    /// server can [`Snapshot::open`] to answer at once and swap in a
    /// resident copy from the background.
    pub fn open_resident(path: &Path) -> Result<Self, ListError> {
        crate::store::open(path, true)
    }
}

struct PendingName {
    /// The name's [`name_hash`]: names are sorted by it (the table's order),
    /// and most comparisons while sorting never touch the arena.
    hash: u64,
    offset: u32,
    len: u8,
    membership: u64,
}

/// Collects lists and compiles them into a [`Snapshot`].
#[derive(Default)]
pub struct SnapshotBuilder {
    lists: Vec<ListInfo>,
    categories: Vec<String>,
    category_index: HashMap<String, CategoryIndex>,
    arena: Vec<u8>,
    names: Vec<PendingName>,
    urls: Vec<UrlRule>,
    regexes: Vec<(RegexRule, String, u64)>,
    local_data: HashMap<String, Vec<String>>,
}

impl std::fmt::Debug for SnapshotBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotBuilder")
            .field("lists", &self.lists.len())
            .field("names", &self.names.len())
            .finish()
    }
}

impl SnapshotBuilder {
    /// A builder with no lists.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a list; entries are then added with its id.
    pub fn add_list(
        &mut self,
        name: &str,
        legal_requirement: bool,
        default_category: Option<&str>,
    ) -> Result<ListId, ListError> {
        if self.lists.len() >= MAX_LISTS {
            return Err(ListError::TooMany {
                what: "lists",
                max: MAX_LISTS,
            });
        }
        self.lists.push(ListInfo {
            name: name.to_owned(),
            legal_requirement,
            default_category: default_category.map(str::to_owned),
            report: ParseReport::default(),
            aliases: Vec::new(),
        });
        Ok((self.lists.len() - 1) as ListId)
    }

    /// Records UT1 category aliases on a list.
    pub fn add_aliases(&mut self, list: ListId, aliases: Vec<(String, String)>) {
        if let Some(info) = self.lists.get_mut(usize::from(list)) {
            info.aliases.extend(aliases);
        }
    }

    /// Adds what parsing found to a list's report.
    pub fn add_report(&mut self, list: ListId, report: ParseReport) {
        if let Some(info) = self.lists.get_mut(usize::from(list)) {
            if info.report.format.is_none() {
                info.report.format = report.format;
            }
            info.report.merge(report);
        }
    }

    fn category(&mut self, name: &str) -> CategoryIndex {
        if let Some(i) = self.category_index.get(name) {
            return *i;
        }
        let i = self.categories.len().min(usize::from(u16::MAX)) as u16;
        self.categories.push(name.to_owned());
        self.category_index.insert(name.to_owned(), i);
        i
    }

    /// Adds one entry to a list. `category` names the entry's own category
    /// (UT1 directories); otherwise the list's default category is used, and
    /// `uncategorised` when it has none.
    pub fn add_entry(
        &mut self,
        list: ListId,
        category: Option<&str>,
        origin: Origin<'_>,
        entry: Entry<'_>,
    ) {
        let category = match category {
            Some(c) => c.to_owned(),
            None => self
                .lists
                .get(usize::from(list))
                .and_then(|l| l.default_category.clone())
                .unwrap_or_else(|| "uncategorised".to_owned()),
        };
        let category = self.category(&category);
        match entry {
            Entry::Name {
                name,
                mode,
                exception,
                rpz,
                local_data,
            } => {
                if name.len() > 253 || self.arena.len() > (u32::MAX as usize - 256) {
                    return;
                }
                let offset = self.arena.len() as u32;
                self.arena.extend_from_slice(name.as_bytes());
                self.names.push(PendingName {
                    hash: name_hash(name.as_bytes()),
                    offset,
                    len: name.len() as u8,
                    membership: Membership::new(list, category, mode, exception, rpz).0,
                });
                if let Some(data) = local_data {
                    self.local_data
                        .entry(name.into_owned())
                        .or_default()
                        .push(data);
                }
            }
            Entry::Url {
                host,
                path,
                exception,
            } => self.urls.push(UrlRule {
                host,
                path,
                membership: Membership::new(
                    list,
                    category,
                    MatchMode::NameAndSubdomains,
                    exception,
                    None,
                )
                .0,
            }),
            Entry::Regex {
                pattern,
                target,
                exception,
            } => self.regexes.push((
                RegexRule {
                    pattern: pattern.into_owned(),
                    target,
                    membership: Membership::new(
                        list,
                        category,
                        MatchMode::NameAndSubdomains,
                        exception,
                        None,
                    )
                    .0,
                },
                origin.file.to_owned(),
                origin.line,
            )),
        }
    }

    /// Compiles everything added into a snapshot. Regular expressions that
    /// do not compile within their size limit are dropped here and counted
    /// as bad lines of their list.
    pub fn build(mut self) -> Result<Snapshot, ListError> {
        let arena = std::mem::take(&mut self.arena);
        let key = |p: &PendingName| {
            let start = p.offset as usize;
            &arena[start..start + usize::from(p.len)]
        };
        self.names.sort_unstable_by(|a, b| {
            a.hash
                .cmp(&b.hash)
                .then_with(|| key(a).cmp(key(b)))
                .then(a.membership.cmp(&b.membership))
        });

        let mut set_ids: HashMap<Vec<u64>, u64> = HashMap::new();
        let mut set_offsets: Vec<u32> = Vec::new();
        let mut sets: Vec<u64> = Vec::new();
        // Each distinct name once, with its membership set.
        let mut entries: Vec<(usize, u64)> = Vec::new();
        let mut members: Vec<u64> = Vec::new();
        let mut i = 0;
        while i < self.names.len() {
            let k = key(&self.names[i]);
            members.clear();
            let mut j = i;
            while j < self.names.len() && key(&self.names[j]) == k {
                let m = self.names[j].membership;
                if members.last() != Some(&m) {
                    members.push(m);
                }
                j += 1;
            }
            let id = match set_ids.get(&members) {
                Some(id) => *id,
                None => {
                    let id = set_offsets.len() as u64;
                    set_offsets.push(sets.len() as u32);
                    sets.extend_from_slice(&members);
                    set_ids.insert(members.clone(), id);
                    id
                }
            };
            entries.push((i, id));
            i = j;
        }
        let distinct = entries.len() as u64;
        // Two names of one bucket with one fingerprint (about one build in
        // 10^13) only need another key.
        let mut built = None;
        for _ in 0..4 {
            let mut builder =
                TableBuilder::new(entries.len(), PrintKey::random().map_err(ListError::Index)?);
            let pushed = entries
                .iter()
                .try_for_each(|&(i, id)| builder.push(key(&self.names[i]), self.names[i].hash, id));
            match pushed {
                Ok(()) => {
                    built = Some(builder);
                    break;
                }
                Err(PushError::SamePrint) => continue,
                Err(PushError::Invalid(reason)) => return Err(ListError::Index(reason)),
            }
        }
        let builder = built.ok_or_else(|| {
            ListError::Index("four keys in a row gave two names one fingerprint".to_owned())
        })?;
        drop(arena);
        self.names = Vec::new();
        // In huge pages where possible (see `Backing::resident`).
        let backing = builder.finish().map_err(ListError::Index)?;
        let index = Some(NameTable::new(backing).map_err(ListError::Index)?);

        let mut regexes = Vec::new();
        for (rule, file, line) in self.regexes {
            match check_pattern(&rule.pattern) {
                Ok(()) => regexes.push(rule),
                Err(reason) => {
                    let list = Membership(rule.membership).list();
                    if let Some(info) = self.lists.get_mut(usize::from(list)) {
                        info.report.bad(&file, line, reason);
                        info.report.entries = info.report.entries.saturating_sub(1);
                    }
                }
            }
        }
        let mut urls = self.urls;
        urls.sort_by(|a, b| {
            (&a.host, &a.path, a.membership).cmp(&(&b.host, &b.path, b.membership))
        });
        urls.dedup();
        let mut local_data: Vec<(String, Vec<String>)> = self.local_data.into_iter().collect();
        local_data.sort();
        let meta = Meta {
            lists: self.lists,
            categories: self.categories,
            set_offsets,
            sets,
            urls,
            regexes,
            local_data,
            names: distinct,
            built_at_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        };
        Ok(Snapshot::assemble(index, meta))
    }
}

#[cfg(test)]
#[path = "snapshot_tests.rs"]
mod tests;
