//! The decision: pure, lock-free; [`CompiledPolicy::verdict`] does not
//! allocate for a normalised name (the DNS and proxy hot path),
//! [`CompiledPolicy::decide`] adds the strings for people.

use std::borrow::Cow;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sheepdog_lists::{normalize_name, parse_url, Hit, HitSource, RpzAction, UrlKey};

use crate::compile::{CategoryId, CompiledPolicy, Group};
use crate::Action;

/// What a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// A host name (from DNS, or a CONNECT without inspection).
    Name(&'a str),
    /// A host name already in the form [`normalize_name`] gives, which it
    /// would return unchanged. The DNS server learns that while reading
    /// the question's labels, so the decision need not scan the name
    /// again (a fifth of a blocked query's decision, and the same again
    /// for its event's rule). A name passed here that is not normal would
    /// miss the list entries it should match: a caller that cannot vouch
    /// for a name passes it as [`Target::Name`].
    Normal(&'a str),
    /// A full URL (from the proxy).
    Url(&'a str),
}

impl<'a> Target<'a> {
    /// The host name as lists store it, for a name target; `None` for a
    /// URL or a name that does not normalise.
    pub fn normal_name(self) -> Option<Cow<'a, str>> {
        match self {
            Self::Name(n) => normalize_name(n).ok(),
            Self::Normal(n) => {
                debug_assert!(
                    matches!(normalize_name(n), Ok(Cow::Borrowed(m)) if m == n),
                    "`{n}` is not a normal name"
                );
                Some(Cow::Borrowed(n))
            }
            Self::Url(_) => None,
        }
    }
}

/// One question to the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query<'a> {
    /// The requester's group.
    pub group: &'a str,
    /// The name or URL.
    pub target: Target<'a>,
    /// When.
    pub at: DateTime<Utc>,
}

/// Which step of the precedence decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Illegal content (IWF, CTIRU, lists marked as a legal requirement).
    Illegal,
    /// The school's local allow or deny list.
    LocalList,
    /// A time-bound exception.
    Exception,
    /// A schedule rule.
    Schedule,
    /// The group's action for a category.
    Category,
    /// The group's default.
    GroupDefault,
    /// The group is unknown and there is no fallback group.
    UnknownGroup,
    /// The name or URL is not valid.
    InvalidTarget,
}

/// The compact result of a decision: no strings, no allocation. Expand it
/// with [`CompiledPolicy::explain`] (which [`CompiledPolicy::decide`] does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// What to do.
    pub action: Action,
    /// Which precedence step decided.
    pub stage: Stage,
    /// Illegal content: always blocked, and the event must say so.
    pub illegal: bool,
    /// The deciding list hit, if a list decided.
    pub hit: Option<Hit>,
    /// The deciding category, if one did.
    pub category: Option<CategoryId>,
    /// The group used (after fallback).
    pub group: Option<usize>,
    /// The deciding exception, local rule or schedule rule, by index.
    pub rule_index: Option<usize>,
}

/// A decision with everything the block page and the event log need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// What to do.
    pub action: Action,
    /// The category behind it, if any.
    pub category: Option<Arc<str>>,
    /// The list behind it, if any.
    pub list: Option<Arc<str>>,
    /// The rule behind it, as written.
    pub rule: Option<String>,
    /// A sentence for people: the block page and the log.
    pub reason: String,
    /// Illegal content.
    pub illegal: bool,
    /// Which precedence step decided.
    pub stage: Stage,
    /// The group the decision was made for (after fallback).
    pub group: Option<Arc<str>>,
    /// The RPZ action of the deciding rule, for the DNS server.
    pub rpz: Option<RpzAction>,
}

/// Hits kept on the stack; a request with more spills to the heap.
const INLINE_HITS: usize = 16;

const NO_HIT: Hit = Hit {
    list: 0,
    category: 0,
    exception: false,
    rpz: None,
    source: HitSource::Regex(0),
};

/// The hits of one request: on the stack unless there are more than
/// [`INLINE_HITS`], so a decision does not allocate.
struct Hits {
    len: usize,
    inline: [Hit; INLINE_HITS],
    spill: Vec<Hit>,
}

impl Hits {
    fn new() -> Self {
        Hits {
            len: 0,
            inline: [NO_HIT; INLINE_HITS],
            spill: Vec::new(),
        }
    }

    fn push(&mut self, h: Hit) {
        if self.len < INLINE_HITS {
            self.inline[self.len] = h;
            self.len += 1;
        } else {
            if self.spill.is_empty() {
                self.spill.extend_from_slice(&self.inline);
            }
            self.spill.push(h);
        }
    }

    fn as_slice(&self) -> &[Hit] {
        if self.spill.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.spill
        }
    }

    /// Drops every hit of a list that has an exception hit (the exception
    /// included), keeping the order of the rest.
    fn apply_exceptions(&mut self) {
        if !self.as_slice().iter().any(|h| h.exception) {
            return;
        }
        if !self.spill.is_empty() {
            let excepted: Vec<u16> = self
                .spill
                .iter()
                .filter(|h| h.exception)
                .map(|h| h.list)
                .collect();
            self.spill.retain(|h| !excepted.contains(&h.list));
            return;
        }
        let all = self.inline;
        let all = &all[..self.len];
        let mut kept = 0;
        for h in all {
            if !all.iter().any(|e| e.exception && e.list == h.list) {
                self.inline[kept] = *h;
                kept += 1;
            }
        }
        self.len = kept;
    }
}

struct Subject<'q> {
    name: Cow<'q, str>,
    url: Option<UrlKey>,
}

fn subject(target: Target<'_>) -> Option<Subject<'_>> {
    match target {
        Target::Url(u) => parse_url(u).ok().map(|key| Subject {
            name: Cow::Owned(key.host.clone()),
            url: Some(key),
        }),
        name => name.normal_name().map(|name| Subject { name, url: None }),
    }
}

impl CompiledPolicy {
    fn category_of(&self, hit: &Hit) -> CategoryId {
        self.snapshot_categories
            .get(usize::from(hit.category))
            .copied()
            .unwrap_or(0)
    }

    fn hit_is_illegal(&self, hit: &Hit) -> bool {
        self.list_illegal
            .get(usize::from(hit.list))
            .copied()
            .unwrap_or(false)
            || self
                .categories
                .get(usize::from(self.category_of(hit)))
                .is_some_and(|c| c.kind == crate::taxonomy::CategoryKind::Illegal)
    }

    /// Collects the hits that count: a list's exception rules cancel that
    /// list's other hits.
    /// Fills the caller's `hits` rather than returning them: moving the
    /// inline array out cost a `memcpy` call per decision.
    fn effective_hits(&self, s: &Subject<'_>, hits: &mut Hits) {
        self.snapshot.for_each_name_hit(&s.name, |h| hits.push(h));
        if let Some(url) = &s.url {
            self.snapshot.for_each_url_hit(url, |h| hits.push(h));
        }
        hits.apply_exceptions();
    }

    fn resolve_group(&self, name: &str) -> Option<usize> {
        self.group_index.get(name).copied().or(self.fallback_group)
    }

    /// Decides, returning the compact verdict. Pure and lock-free, and for
    /// a name that is already normalised (lower case ASCII, as DNS servers
    /// and proxies see almost all names) it does not allocate: this is the
    /// call for the DNS and proxy hot path. Expand the verdict with
    /// [`CompiledPolicy::explain`] only when a person or the log needs the
    /// reason (for example when it blocks).
    ///
    /// Precedence: illegal > local deny/allow > time-bound exception >
    /// schedule > category > group default.
    pub fn verdict(&self, q: &Query<'_>) -> Verdict {
        let group_index = self.resolve_group(q.group);
        let mut v = Verdict {
            action: Action::Block,
            stage: Stage::InvalidTarget,
            illegal: false,
            hit: None,
            category: None,
            group: group_index,
            rule_index: None,
        };
        let Some(s) = subject(q.target) else {
            return v;
        };
        let mut hits = Hits::new();
        self.effective_hits(&s, &mut hits);
        let hits = hits.as_slice();

        // 1. Illegal content: nothing can allow it.
        if let Some(h) = hits.iter().find(|h| self.hit_is_illegal(h)) {
            v.stage = Stage::Illegal;
            v.illegal = true;
            v.hit = Some(*h);
            v.category = Some(self.category_of(h));
            return v;
        }
        let Some(group) = group_index.and_then(|i| self.groups.get(i)) else {
            v.stage = Stage::UnknownGroup;
            return v;
        };

        // 2. Local deny/allow: the longest matching entry wins.
        if let Some((action, index)) = local_decision(group, &s) {
            v.action = action;
            v.stage = Stage::LocalList;
            v.rule_index = Some(index);
            return v;
        }

        // 3. Time-bound exceptions, first active match in document order.
        for (i, e) in group.exceptions.iter().enumerate() {
            if !e.is_active(q.at) {
                continue;
            }
            let matches = match (&e.name, &e.url, &s.url) {
                (Some(n), _, _) => covers(n, &s.name),
                (None, Some(rule), Some(url)) => {
                    rule.host == url.host
                        && sheepdog_lists::url::path_matches(&rule.path, &url.path)
                }
                _ => false,
            };
            if matches {
                v.action = e.action;
                v.stage = Stage::Exception;
                v.rule_index = Some(i);
                return v;
            }
        }

        // 4. Schedules, first active rule in document order.
        if !group.schedule_rules.is_empty() {
            for (i, rule) in group.schedule_rules.iter().enumerate() {
                let hit = match rule.category {
                    None => None,
                    Some(c) => match hits.iter().find(|h| self.category_of(h) == c) {
                        Some(h) => Some(*h),
                        None => continue,
                    },
                };
                let active = self
                    .schedules
                    .get(rule.schedule)
                    .is_some_and(|s| s.is_active(q.at, self.time_zone, &self.terms));
                if active {
                    v.action = rule.action;
                    v.stage = Stage::Schedule;
                    v.rule_index = Some(i);
                    v.hit = hit;
                    v.category = rule.category;
                    return v;
                }
            }
        }

        // 5. Categories: the most restrictive action the group sets.
        let mut best: Option<(Action, Hit, CategoryId)> = None;
        for h in hits {
            let c = self.category_of(h);
            if let Some(a) = group.category_action(c) {
                if best.map_or(true, |(b, _, _)| a.severity() > b.severity()) {
                    best = Some((a, *h, c));
                }
            }
        }
        if let Some((action, hit, c)) = best {
            v.action = action;
            v.stage = Stage::Category;
            v.hit = Some(hit);
            v.category = Some(c);
            return v;
        }

        // 6. The group default.
        v.action = group.default;
        v.stage = Stage::GroupDefault;
        if let Some(h) = hits.first() {
            v.hit = Some(*h);
            v.category = Some(self.category_of(h));
        }
        v
    }

    /// Decides and explains. Pure: no I/O, no lock, but it builds the
    /// reason and rule strings; hot paths call [`CompiledPolicy::verdict`]
    /// and explain only what they log or show.
    pub fn decide(&self, q: &Query<'_>) -> Decision {
        let v = self.verdict(q);
        self.explain(q, &v)
    }

    /// Turns a verdict into a full decision with names and a reason.
    pub fn explain(&self, q: &Query<'_>, v: &Verdict) -> Decision {
        let group = v.group.and_then(|i| self.groups.get(i));
        let category = v.category.and_then(|c| self.categories.get(usize::from(c)));
        let list = v
            .hit
            .and_then(|h| self.list_names.get(usize::from(h.list)).cloned());
        let subject_name = subject(q.target).map(|s| s.name.into_owned());
        let mut rule = v.hit.map(|h| {
            self.snapshot
                .describe_rule(&h, subject_name.as_deref().unwrap_or(""))
        });
        let group_name = group.map(|g| g.name.clone());
        let gname = group_name.as_deref().unwrap_or(q.group);
        let verb = v.action.verb();
        let cat_title = category
            .map(|c| c.title.as_str())
            .unwrap_or("uncategorised");
        let reason = match v.stage {
            Stage::Illegal => format!(
                "Blocked: this is on the {} list of illegal content ({cat_title}). It is blocked for everyone and cannot be unblocked.",
                list.as_deref().unwrap_or("legal requirement")
            ),
            Stage::InvalidTarget => "Blocked: not a valid name or address.".to_owned(),
            Stage::UnknownGroup => format!("Blocked: the group {:?} is not in the policy.", q.group),
            Stage::LocalList => {
                let entry = group.and_then(|g| {
                    local_entry(g, v.rule_index, subject_name.as_deref().unwrap_or(""))
                });
                rule = entry.map(|e| e.0.clone());
                format!(
                    "{verb} by the school's local {} list ({}).",
                    if v.action == Action::Allow { "allow" } else { "deny" },
                    if entry.is_some_and(|e| e.1) { format!("group {gname}") } else { "all groups".to_owned() }
                )
            }
            Stage::Exception => {
                let e = group.and_then(|g| v.rule_index.and_then(|i| g.exceptions.get(i)));
                rule = e.map(|e| format!("exception {}", e.target));
                match e {
                    Some(e) => format!(
                        "{verb} for {gname} by a temporary exception until {}: {}",
                        e.end.with_timezone(&self.time_zone).format("%Y-%m-%d %H:%M %Z"),
                        e.reason
                    ),
                    None => format!("{verb} by a temporary exception."),
                }
            }
            Stage::Schedule => {
                let r = group.and_then(|g| v.rule_index.and_then(|i| g.schedule_rules.get(i)));
                let sched = r
                    .and_then(|r| self.schedules.get(r.schedule))
                    .map(|s| s.name.as_str())
                    .unwrap_or("?");
                rule = Some(format!("schedule {sched}"));
                match category {
                    Some(c) => format!("{verb} for {gname} during {sched}: {}.", c.title),
                    None => format!("{verb} for {gname} during {sched}."),
                }
            }
            Stage::Category => format!("{verb} for {gname}: {cat_title}."),
            Stage::GroupDefault => match category {
                Some(c) => format!(
                    "{verb} for {gname} by the group's default ({} has no rule for this group).",
                    c.title
                ),
                None => format!("{verb} for {gname} by the group's default."),
            },
        };
        Decision {
            action: v.action,
            category: category.map(|c| c.id.clone()),
            list,
            rule,
            reason,
            illegal: v.illegal,
            stage: v.stage,
            group: group_name,
            rpz: v.hit.and_then(|h| h.rpz),
        }
    }
}

/// Whether a rule name covers a name (itself or a subdomain).
fn covers(rule: &str, name: &str) -> bool {
    name == rule
        || (name.len() > rule.len()
            && name.ends_with(rule)
            && name.as_bytes()[name.len() - rule.len() - 1] == b'.')
}

/// Local lists: URL entries first (they are more specific), then the
/// longest matching name. Returns the action and an index: URL entries
/// are numbered after name lookups as `usize::MAX - i`; names by suffix
/// start offset.
fn local_decision(group: &Group, s: &Subject<'_>) -> Option<(Action, usize)> {
    if let Some(url) = &s.url {
        let mut best: Option<(usize, usize)> = None;
        for (i, (rule, _)) in group.local_urls.iter().enumerate() {
            if rule.host == url.host
                && sheepdog_lists::url::path_matches(&rule.path, &url.path)
                && best.map_or(true, |(len, _)| rule.path.len() > len)
            {
                best = Some((rule.path.len(), i));
            }
        }
        if let Some((_, i)) = best {
            return group
                .local_urls
                .get(i)
                .map(|(_, e)| (e.action, usize::MAX - i));
        }
    }
    if group.local_names.is_empty() {
        return None;
    }
    let name: &str = &s.name;
    let bytes = name.as_bytes();
    let mut start = 0;
    loop {
        // Suffixes only get shorter: none can match once shorter than the
        // shortest local name.
        let len = bytes.len() - start;
        if len < group.local_name_shortest {
            return None;
        }
        let maybe = len < 256 && group.local_name_lengths[len / 64] & (1 << (len % 64)) != 0;
        if maybe {
            if let Some(e) = group.local_names.get(&name[start..]) {
                return Some((e.action, start));
            }
        }
        // A byte loop: `str::find` calls `memchr`, slower on short names.
        match bytes[start..].iter().position(|&b| b == b'.') {
            Some(dot) => start += dot + 1,
            None => return None,
        }
    }
}

/// The rule text and whether it is group-level, for a local index.
fn local_entry<'g>(
    group: &'g Group,
    index: Option<usize>,
    name: &str,
) -> Option<(&'g String, bool)> {
    let index = index?;
    let from_end = usize::MAX - index;
    if from_end < group.local_urls.len() {
        return group
            .local_urls
            .get(from_end)
            .map(|(_, e)| (&e.rule, e.group_level));
    }
    let suffix = name.get(index..)?;
    group
        .local_names
        .get(suffix)
        .map(|e| (&e.rule, e.group_level))
}
