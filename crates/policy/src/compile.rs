//! Compiling a policy document and a list snapshot into a [`CompiledPolicy`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sheepdog_lists::sources;
use sheepdog_lists::{normalize_name, parse_url, ListInfo, Snapshot, SnapshotBuilder, UrlKey};

use crate::document::{GroupDef, PolicyDocument, SafeSearch, Term};
use crate::error::PolicyError;
use crate::fast::FastMap;
use crate::schedule::Schedule;
use crate::taxonomy::{shipped, ut1_category, CategoryKind, SHIPPED_CATEGORIES};
use crate::Action;

/// Identifies a category within one compiled policy.
pub type CategoryId = u16;

/// A category as the compiled policy knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Category {
    /// Its identifier.
    pub id: Arc<str>,
    /// Its title.
    pub title: String,
    /// Its kind.
    pub kind: CategoryKind,
}

/// A local allow or deny entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LocalEntry {
    pub(crate) action: Action,
    pub(crate) rule: String,
    pub(crate) group_level: bool,
}

/// A time-bound exception.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exception {
    /// The name it covers (with subdomains), for name exceptions.
    pub name: Option<String>,
    /// The URL it covers, for URL exceptions.
    pub url: Option<UrlKey>,
    /// Its action.
    pub action: Action,
    /// When it starts.
    pub start: DateTime<Utc>,
    /// When it ends.
    pub end: DateTime<Utc>,
    /// Why.
    pub reason: String,
    /// The target as written.
    pub target: String,
}

impl Exception {
    /// Whether it is in force at `at`.
    pub fn is_active(&self, at: DateTime<Utc>) -> bool {
        self.start <= at && at < self.end
    }
}

/// A schedule rule of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScheduleRule {
    pub(crate) schedule: usize,
    pub(crate) category: Option<CategoryId>,
    pub(crate) action: Action,
}

/// A compiled group.
#[derive(Debug, Clone)]
pub struct Group {
    /// Its name.
    pub name: Arc<str>,
    /// The action when nothing else applies.
    pub default: Action,
    /// Safe search settings.
    pub safe_search: SafeSearch,
    /// Whether Apple's iCloud Private Relay may be used.
    pub allow_private_relay: bool,
    pub(crate) category_actions: Vec<Option<Action>>,
    pub(crate) local_names: FastMap<LocalEntry>,
    /// Bit `n` set when some local name is `n` bytes long: a suffix of a
    /// query of another length is not looked up (most decisions then skip
    /// the map entirely).
    pub(crate) local_name_lengths: [u64; 4],
    /// The length of the shortest local name.
    pub(crate) local_name_shortest: usize,
    pub(crate) local_urls: Vec<(UrlKey, LocalEntry)>,
    pub(crate) schedule_rules: Vec<ScheduleRule>,
    /// Time-bound exceptions, in document order.
    pub exceptions: Vec<Exception>,
}

impl Group {
    /// The group's action for a category, if it sets one.
    pub fn category_action(&self, category: CategoryId) -> Option<Action> {
        self.category_actions
            .get(usize::from(category))
            .copied()
            .flatten()
    }
}

/// A policy ready for decisions: the document's groups and rules, resolved
/// against a list snapshot. Immutable; share it behind an `Arc`.
#[derive(Debug)]
pub struct CompiledPolicy {
    pub(crate) snapshot: Arc<Snapshot>,
    pub(crate) categories: Vec<Category>,
    pub(crate) category_index: HashMap<String, CategoryId>,
    /// Snapshot category index → policy category.
    pub(crate) snapshot_categories: Vec<CategoryId>,
    /// Snapshot list → illegal (by law or by its category).
    pub(crate) list_illegal: Vec<bool>,
    pub(crate) list_names: Vec<Arc<str>>,
    pub(crate) groups: Vec<Group>,
    pub(crate) group_index: FastMap<usize>,
    pub(crate) fallback_group: Option<usize>,
    pub(crate) schedules: Vec<Schedule>,
    pub(crate) terms: Vec<Term>,
    pub(crate) time_zone: Tz,
    pub(crate) school: String,
    /// The document this was compiled from, so a new snapshot can be put
    /// under the rules in force (exceptions included) without asking the
    /// caller for them again.
    pub(crate) document: Arc<PolicyDocument>,
}

fn check_action(place: &str, category: &Category, action: Action) -> Result<(), PolicyError> {
    if category.kind == CategoryKind::Illegal && action != Action::Block {
        return Err(PolicyError::IllegalOverride {
            place: place.to_owned(),
            category: category.id.to_string(),
        });
    }
    Ok(())
}

fn add_local(
    names: &mut FastMap<LocalEntry>,
    urls: &mut Vec<(UrlKey, LocalEntry)>,
    place: &str,
    entry: &str,
    action: Action,
    group_level: bool,
) -> Result<(), PolicyError> {
    let local = LocalEntry {
        action,
        rule: entry.to_owned(),
        group_level,
    };
    if entry.contains('/') {
        let key =
            parse_url(entry).map_err(|e| PolicyError::invalid(place, format!("{entry:?}: {e}")))?;
        urls.push((key, local));
        return Ok(());
    }
    let name = normalize_name(entry.trim_start_matches("*.").trim_start_matches('.'))
        .map_err(|e| PolicyError::invalid(place, format!("{entry:?}: {e}")))?
        .into_owned();
    // On the same name, a group's own entry beats a school-wide one, and
    // deny beats allow.
    let replace = match names.get(&name) {
        None => true,
        Some(old) => {
            (group_level && !old.group_level)
                || (group_level == old.group_level && action == Action::Block)
        }
    };
    if replace {
        names.insert(name, local);
    }
    Ok(())
}

impl CompiledPolicy {
    /// Compiles a document against a snapshot.
    pub fn compile(doc: &PolicyDocument, snapshot: Arc<Snapshot>) -> Result<Self, PolicyError> {
        let time_zone: Tz = doc.school.time_zone.parse().map_err(|_| {
            PolicyError::invalid(
                "school.time_zone",
                format!("{:?} is not an IANA time zone", doc.school.time_zone),
            )
        })?;
        let mut categories: Vec<Category> = SHIPPED_CATEGORIES
            .iter()
            .map(|c| Category {
                id: Arc::from(c.id),
                title: c.title.to_owned(),
                kind: c.kind,
            })
            .collect();
        for def in &doc.categories {
            if shipped(&def.id).is_some() || categories.iter().any(|c| *c.id == *def.id) {
                return Err(PolicyError::invalid(
                    format!("categories.{}", def.id),
                    "a category with this id already exists",
                ));
            }
            categories.push(Category {
                id: Arc::from(def.id.as_str()),
                title: def.title.clone(),
                kind: CategoryKind::Local,
            });
        }
        let mut category_index: HashMap<String, CategoryId> = categories
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.to_string(), i as CategoryId))
            .collect();

        // Lists: illegal by law, or because every entry is in an illegal
        // category; and snapshot categories mapped to policy categories.
        let list_defs: HashMap<&str, &crate::document::ListDef> =
            doc.lists.iter().map(|l| (l.name.as_str(), l)).collect();
        let mut snapshot_categories = Vec::new();
        for name in snapshot.categories() {
            let target = doc
                .ut1_map
                .get(name)
                .map(String::as_str)
                .or_else(|| category_index.contains_key(name).then_some(name.as_str()))
                .or_else(|| ut1_category(name))
                .unwrap_or(name.as_str())
                .to_owned();
            let id = match category_index.get(&target) {
                Some(id) => *id,
                None => {
                    let id = categories.len() as CategoryId;
                    categories.push(Category {
                        id: Arc::from(target.as_str()),
                        title: format!("{target} (from a list, not mapped)"),
                        kind: CategoryKind::Local,
                    });
                    category_index.insert(target, id);
                    id
                }
            };
            snapshot_categories.push(id);
        }
        let list_illegal: Vec<bool> = snapshot
            .lists()
            .iter()
            .map(|l: &ListInfo| {
                l.legal_requirement
                    || list_defs
                        .get(l.name.as_str())
                        .is_some_and(|d| d.legal_requirement)
                    || l.default_category.as_deref().is_some_and(|c| {
                        category_index
                            .get(c)
                            .and_then(|i| categories.get(usize::from(*i)))
                            .is_some_and(|c| c.kind == CategoryKind::Illegal)
                    })
            })
            .collect();
        let list_names = snapshot
            .lists()
            .iter()
            .map(|l| Arc::from(l.name.as_str()))
            .collect();

        let schedules: Vec<Schedule> = doc
            .schedules
            .iter()
            .map(Schedule::compile)
            .collect::<Result<_, _>>()?;

        let mut groups = Vec::new();
        let mut group_index = FastMap::default();
        for def in &doc.groups {
            if group_index.contains_key(&def.name) {
                return Err(PolicyError::invalid(
                    format!("group {}", def.name),
                    "two groups have this name",
                ));
            }
            let group = compile_group(doc, def, &categories, &category_index, &schedules)?;
            group_index.insert(def.name.clone(), groups.len());
            groups.push(group);
        }
        let fallback_group = match &doc.fallback_group {
            None => None,
            Some(name) => Some(*group_index.get(name).ok_or_else(|| {
                PolicyError::invalid("fallback_group", format!("no group is called {name:?}"))
            })?),
        };
        Ok(CompiledPolicy {
            snapshot,
            categories,
            category_index,
            snapshot_categories,
            list_illegal,
            list_names,
            groups,
            group_index,
            fallback_group,
            schedules,
            terms: doc.terms.clone(),
            time_zone,
            school: doc.school.name.clone(),
            document: Arc::new(doc.clone()),
        })
    }

    /// The list snapshot this policy decides against.
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    /// The document this policy was compiled from.
    pub fn document(&self) -> &PolicyDocument {
        &self.document
    }

    /// Every category, shipped, school-defined and found in lists.
    pub fn categories(&self) -> &[Category] {
        &self.categories
    }

    /// A category by identifier.
    pub fn category_id(&self, id: &str) -> Option<CategoryId> {
        self.category_index.get(id).copied()
    }

    /// A group by name.
    pub fn group(&self, name: &str) -> Option<&Group> {
        self.group_index.get(name).and_then(|i| self.groups.get(*i))
    }

    /// Every group.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// The school's name.
    pub fn school_name(&self) -> &str {
        &self.school
    }

    /// The school's time zone.
    pub fn time_zone(&self) -> Tz {
        self.time_zone
    }

    /// Exceptions that have ended by `at`: (group, target, reason). They no
    /// longer affect decisions; the console can remove them from the
    /// document.
    pub fn expired_exceptions(&self, at: DateTime<Utc>) -> Vec<(String, String, String)> {
        self.groups
            .iter()
            .flat_map(|g| {
                g.exceptions
                    .iter()
                    .filter(move |e| e.end <= at)
                    .map(move |e| (g.name.to_string(), e.target.clone(), e.reason.clone()))
            })
            .collect()
    }
}

fn compile_group(
    doc: &PolicyDocument,
    def: &GroupDef,
    categories: &[Category],
    category_index: &HashMap<String, CategoryId>,
    schedules: &[Schedule],
) -> Result<Group, PolicyError> {
    let place = format!("group {}", def.name);
    let lookup = |id: &str| -> Result<CategoryId, PolicyError> {
        category_index
            .get(id)
            .copied()
            .ok_or_else(|| PolicyError::invalid(&place, format!("unknown category {id:?}")))
    };
    let mut category_actions = vec![None; categories.len()];
    for (id, action) in &def.categories {
        let c = lookup(id)?;
        if let Some(cat) = categories.get(usize::from(c)) {
            check_action(&place, cat, *action)?;
        }
        if let Some(slot) = category_actions.get_mut(usize::from(c)) {
            *slot = Some(*action);
        }
    }
    let mut local_names = FastMap::default();
    let mut local_urls = Vec::new();
    for (entries, action, group_level) in [
        (&doc.local.allow, Action::Allow, false),
        (&doc.local.deny, Action::Block, false),
        (&def.allow, Action::Allow, true),
        (&def.deny, Action::Block, true),
    ] {
        for e in entries {
            add_local(
                &mut local_names,
                &mut local_urls,
                &place,
                e,
                action,
                group_level,
            )?;
        }
    }
    let mut local_name_lengths = [0u64; 4];
    let local_name_shortest = local_names.keys().map(String::len).min().unwrap_or(0);
    for name in local_names.keys() {
        let len = name.len().min(255);
        local_name_lengths[len / 64] |= 1 << (len % 64);
    }
    let mut schedule_rules = Vec::new();
    for rule in &def.schedule {
        let schedule = schedules
            .iter()
            .position(|s| s.name == rule.schedule)
            .ok_or_else(|| {
                PolicyError::invalid(&place, format!("unknown schedule {:?}", rule.schedule))
            })?;
        let category = match &rule.category {
            Some(id) => {
                let c = lookup(id)?;
                if let Some(cat) = categories.get(usize::from(c)) {
                    check_action(&place, cat, rule.action)?;
                }
                Some(c)
            }
            None => None,
        };
        schedule_rules.push(ScheduleRule {
            schedule,
            category,
            action: rule.action,
        });
    }
    let mut exceptions = Vec::new();
    for e in &def.exceptions {
        if e.end <= e.start {
            return Err(PolicyError::invalid(
                &place,
                format!("exception for {:?} ends before it starts", e.target),
            ));
        }
        let (name, url) = if e.target.contains('/') {
            let key = parse_url(&e.target)
                .map_err(|err| PolicyError::invalid(&place, format!("{:?}: {err}", e.target)))?;
            (None, Some(key))
        } else {
            let n = normalize_name(&e.target)
                .map_err(|err| PolicyError::invalid(&place, format!("{:?}: {err}", e.target)))?;
            (Some(n.into_owned()), None)
        };
        exceptions.push(Exception {
            name,
            url,
            action: e.action,
            start: e.start,
            end: e.end,
            reason: e.reason.clone(),
            target: e.target.clone(),
        });
    }
    Ok(Group {
        name: Arc::from(def.name.as_str()),
        default: def.default,
        safe_search: def.safe_search,
        allow_private_relay: def.allow_private_relay,
        category_actions,
        local_names,
        local_name_lengths,
        local_name_shortest,
        local_urls,
        schedule_rules,
        exceptions,
    })
}

/// How one list fared while building a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOutcome {
    /// The list.
    pub name: String,
    /// The file or folder compiled.
    pub path: std::path::PathBuf,
    /// What the refresh did, when a cache was used.
    pub status: Option<sources::FetchStatus>,
    /// A warning for the operator.
    pub warning: Option<String>,
}

/// Builds the list snapshot for a document: each list is refreshed into
/// `cache_dir` (keeping last good copies) when one is given, or read where
/// it is otherwise; sources that cannot be read at all are reported, and
/// the snapshot is built from the rest. `base_dir` is where relative
/// sources are found (the policy file's folder).
pub fn build_snapshot(
    doc: &PolicyDocument,
    base_dir: &Path,
    cache_dir: Option<&Path>,
) -> Result<(Snapshot, Vec<ListOutcome>), PolicyError> {
    let mut builder = SnapshotBuilder::new();
    let mut outcomes = Vec::new();
    for list in &doc.lists {
        let category = list.category.as_deref();
        let spec = list.source_spec();
        let (path, status, mut warning) = match cache_dir {
            Some(cache) => match sources::refresh(&spec, base_dir, cache) {
                Ok(o) => (o.path, Some(o.status), o.warning),
                Err(e) => {
                    outcomes.push(ListOutcome {
                        name: list.name.clone(),
                        path: base_dir.join(&list.source),
                        status: None,
                        warning: Some(format!("list {}: {e}; it is not in force", list.name)),
                    });
                    continue;
                }
            },
            None => (base_dir.join(&list.source), None, None),
        };
        let id = builder.add_list(&list.name, list.legal_requirement, category)?;
        if let Err(e) = sheepdog_lists::add_path(&mut builder, id, &path, list.format) {
            warning = Some(format!("list {}: {e}; it is not in force", list.name));
        }
        outcomes.push(ListOutcome {
            name: list.name.clone(),
            path,
            status,
            warning,
        });
    }
    Ok((builder.build()?, outcomes))
}
