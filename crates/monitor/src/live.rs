//! Live monitoring: decision events read as the event writer stores them,
//! and their concerns recorded as alerts.
//!
//! The DNS server and the proxy hand their events to the event writer's
//! bounded channel and never wait; the writer stores them in batches. This
//! module follows the stored rows by id, a poll a second, so monitoring can
//! be slow, restart or fall behind without the filter noticing. After a
//! restart it starts from the events of the last hour (the alert throttle
//! window): events it has already read merge into their alerts as
//! duplicates rather than raising new ones.
//!
//! Each event is read with who made it (the person's school and age
//! group, the device, the address, the filtering group). One look-up of a
//! name produces several DNS events (`A`, `AAAA`, `HTTPS`) within a
//! second, so the same target from the same subject is read once a
//! minute, or it would count as repetition. A concern at or above the
//! recording grade becomes an alert, with the events around it copied in.
//!
//! Pages the proxy could read (plain HTTP and inspected HTTPS) arrive
//! here too, straight from the proxy through a bounded channel rather
//! than through the store: their title and text are read as an event's
//! would be and then dropped; an alert keeps only the matched words, the
//! page's address and its title.
//!
//! Circumvention (F5) is read here too, not on the DNS hot path: blocked
//! attempts at the circumvention categories (DNS-over-HTTPS resolvers,
//! VPNs, proxies and anonymisers, iCloud Private Relay where the group
//! does not allow it) are counted per subject, and the attempt that makes
//! [`CircumventionRule::attempts`] within its window raises one alert in
//! the category [`CIRCUMVENTION`], naming who, the attempts and their
//! categories; the count then starts again, and further alerts within the
//! store's throttle merge into the open one. The Firefox DoH canary is
//! not an attempt: browsers ask for it by themselves.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use sheepdog_store::{
    Actor, AlertOutcome, AlertPolicy, DecisionEvent, EventFilter, NewAlert, PageSeen, PersonKind,
    Store,
};
use tokio::sync::mpsc;

use crate::event::{AgeGroup, Decision, Event};
use crate::grade::{Concern, GradingRules, Monitor};
use crate::matcher::Matcher;
use crate::MonitorError;

/// The alert category of repeated circumvention attempts.
pub const CIRCUMVENTION: &str = "circumvention";

/// The filter categories whose blocked look-ups are circumvention attempts.
pub const CIRCUMVENTION_CATEGORIES: [&str; 4] = ["doh", "vpn", "proxy", "private_relay"];

/// The name Firefox asks for to learn whether to use DNS over HTTPS; not
/// an attempt by anyone.
const DOH_CANARY: &str = "use-application-dns.net";

/// When repeated circumvention attempts raise an alert.
#[derive(Debug, Clone, Copy)]
pub struct CircumventionRule {
    /// Blocked attempts by one subject that raise an alert; 0: never.
    pub attempts: u32,
    /// Within this long.
    pub window: Duration,
    /// The alert's grade (the store notifies the DSL team at once from
    /// its notice grade, 4 by default).
    pub grade: u8,
}

impl Default for CircumventionRule {
    fn default() -> Self {
        Self {
            attempts: 5,
            window: Duration::minutes(10),
            grade: 4,
        }
    }
}

/// One blocked circumvention attempt, remembered until its window passes.
#[derive(Debug, Clone)]
struct Attempt {
    id: i64,
    at: DateTime<Utc>,
    target: String,
    category: String,
}

/// How live monitoring reads events and records alerts.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// How long to wait when there are no new events.
    pub poll: std::time::Duration,
    /// Events read per query.
    pub batch: u32,
    /// How far back to start after a restart.
    pub lookback: Duration,
    /// Concerns below this grade are not recorded as alerts.
    pub min_grade: u8,
    pub alerts: AlertPolicy,
    pub grading: GradingRules,
    /// Events of the same subject this long before a concern are copied
    /// into its alert.
    pub surrounding: Duration,
    /// At most this many of them.
    pub surrounding_limit: u32,
    /// The same target from the same subject is read once in this time.
    pub repeat_quiet: Duration,
    /// Groups that read with their own libraries or threshold (M6).
    pub groups: Vec<GroupMonitoring>,
    pub circumvention: CircumventionRule,
}

/// One group's monitoring: its own matcher (the shipped libraries, the
/// school's and the group's) and recording threshold.
#[derive(Debug, Clone)]
pub struct GroupMonitoring {
    pub group: String,
    pub matcher: Arc<Matcher>,
    pub min_grade: u8,
}

impl Default for LiveOptions {
    fn default() -> Self {
        Self {
            poll: std::time::Duration::from_secs(1),
            batch: 500,
            lookback: Duration::hours(1),
            min_grade: 2,
            alerts: AlertPolicy::default(),
            grading: GradingRules::default(),
            surrounding: Duration::minutes(10),
            surrounding_limit: 20,
            repeat_quiet: Duration::minutes(1),
            groups: Vec::new(),
            circumvention: CircumventionRule::default(),
        }
    }
}

/// What one or more scans did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanCounts {
    pub events: usize,
    /// Events skipped as repeats of one look-up.
    pub repeats: usize,
    /// Concerns at or above the recording grade.
    pub concerns: usize,
    pub created: usize,
    pub merged: usize,
    pub duplicates: usize,
    /// Alerts owed to the DSL team at once.
    pub notify: usize,
    /// Concerns that could not be given to a school (no person, no known
    /// device, and more than one school).
    pub unattributed: usize,
    /// Circumvention alerts raised (each also counted as created or merged).
    pub circumvention: usize,
}

impl ScanCounts {
    fn add(&mut self, other: Self) {
        self.events += other.events;
        self.repeats += other.repeats;
        self.concerns += other.concerns;
        self.created += other.created;
        self.merged += other.merged;
        self.duplicates += other.duplicates;
        self.notify += other.notify;
        self.unattributed += other.unattributed;
        self.circumvention += other.circumvention;
    }
}

#[derive(Debug, Clone, Copy)]
struct PersonFacts {
    school_id: i64,
    age_group: Option<AgeGroup>,
}

/// Follows the stored decision events and records their concerns.
pub struct LiveMonitor {
    store: Store,
    monitor: Monitor,
    /// Per group with its own rules: its monitor (and memory) and threshold.
    groups: HashMap<String, (Monitor, u8)>,
    options: LiveOptions,
    cursor: i64,
    actor: Actor,
    people: HashMap<i64, Option<PersonFacts>>,
    devices: HashMap<i64, i64>,
    only_school: Option<i64>,
    /// When each (subject, target) was last read.
    recent: HashMap<(String, String), DateTime<Utc>>,
    /// Each subject's circumvention attempts within the window.
    attempts: HashMap<String, VecDeque<Attempt>>,
    /// Pages from the proxy, when it reads them.
    pages: Option<mpsc::Receiver<PageSeen>>,
}

/// What ends a wait between scans.
enum Wake {
    Stop,
    Scan,
    Page(Box<PageSeen>),
}

impl std::fmt::Debug for LiveMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveMonitor")
            .field("cursor", &self.cursor)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Remembered look-ups at most, to bound memory.
const MAX_RECENT: usize = 100_000;

impl LiveMonitor {
    /// Starts following events from `options.lookback` ago.
    pub async fn start(
        store: Store,
        matcher: Arc<Matcher>,
        options: LiveOptions,
    ) -> Result<Self, MonitorError> {
        let cursor = store
            .last_event_id_before(Utc::now() - options.lookback)
            .await?;
        let groups = options
            .groups
            .iter()
            .map(|g| {
                (
                    g.group.clone(),
                    (
                        Monitor::new(g.matcher.clone(), options.grading.clone()),
                        g.min_grade,
                    ),
                )
            })
            .collect();
        Ok(Self {
            monitor: Monitor::new(matcher, options.grading.clone()),
            groups,
            store,
            options,
            cursor,
            actor: Actor::system("monitor"),
            people: HashMap::new(),
            devices: HashMap::new(),
            only_school: None,
            recent: HashMap::new(),
            attempts: HashMap::new(),
            pages: None,
        })
    }

    /// Also reads the pages the proxy sends through `pages`.
    pub fn with_pages(mut self, pages: mpsc::Receiver<PageSeen>) -> Self {
        self.pages = Some(pages);
        self
    }

    /// The id of the last event read.
    pub fn cursor(&self) -> i64 {
        self.cursor
    }

    /// Reads every event stored since the last scan. On a store error the
    /// events not yet recorded are read again by the next scan.
    pub async fn scan_new(&mut self) -> Result<ScanCounts, MonitorError> {
        let mut total = ScanCounts::default();
        loop {
            let batch = self
                .store
                .events_after(self.cursor, self.options.batch)
                .await?;
            let full = batch.len() == self.options.batch as usize;
            for (id, event) in batch {
                total.add(self.read(id, &event).await?);
                self.cursor = id;
            }
            if !full {
                return Ok(total);
            }
        }
    }

    /// Scans until `shutdown` completes; store errors are logged and the
    /// scan retried after a pause. Returns what it did in all.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> ScanCounts {
        let mut total = ScanCounts::default();
        tokio::pin!(shutdown);
        loop {
            let pause = match self.scan_new().await {
                Ok(counts) => {
                    if counts.created + counts.merged > 0 {
                        tracing::info!(
                            events = counts.events,
                            created = counts.created,
                            merged = counts.merged,
                            notify = counts.notify,
                            "monitoring recorded alerts"
                        );
                    }
                    total.add(counts);
                    self.options.poll
                }
                Err(error) => {
                    tracing::warn!(%error, "monitoring could not read or record events; retrying");
                    self.options.poll * 5
                }
            };
            let sleep = tokio::time::sleep(pause);
            tokio::pin!(sleep);
            loop {
                let wake = tokio::select! {
                    () = &mut shutdown => Wake::Stop,
                    () = &mut sleep => Wake::Scan,
                    Some(page) = next_page(&mut self.pages) => Wake::Page(Box::new(page)),
                };
                match wake {
                    Wake::Stop => return total,
                    Wake::Scan => break,
                    Wake::Page(page) => match self.read_page(*page).await {
                        Ok(counts) => total.add(counts),
                        // The page is gone (pages are not kept); the
                        // store's trouble shows on the next scan too.
                        Err(error) => {
                            tracing::warn!(%error, "monitoring could not record a page's alert")
                        }
                    },
                }
            }
        }
    }

    /// Reads one page from the proxy: as its decision event would be
    /// read, with the page's title and text, and the same address and
    /// title never twice within the repeat window (a reload). The page is
    /// taken, so that its text (up to 64 KiB) is read where it lies rather
    /// than copied.
    pub async fn read_page(&mut self, page: PageSeen) -> Result<ScanCounts, MonitorError> {
        let mut counts = ScanCounts {
            events: 1,
            ..ScanCounts::default()
        };
        let PageSeen {
            event: stored,
            title,
            text,
        } = page;
        // The title too: a page whose content changed under the same
        // address (a thread, a feed) is a new page.
        let page_key = format!(
            "{}\u{0}page\u{0}{}",
            stored.target,
            title.as_deref().unwrap_or("")
        );
        let person = match stored.person_id {
            Some(person_id) => self.person(person_id).await?,
            None => None,
        };
        let mut event = event_of(0, &stored, person.and_then(|p| p.age_group));
        event.id = None;
        event.title = title;
        event.text = Some(text);
        let subject = event.subject().unwrap_or_default().to_string();
        if self.read_lately((subject.clone(), page_key), stored.at) {
            counts.repeats = 1;
            return Ok(counts);
        }
        self.record_concerns(None, &stored, &event, &subject, person, &mut counts)
            .await?;
        Ok(counts)
    }

    async fn read(&mut self, id: i64, stored: &DecisionEvent) -> Result<ScanCounts, MonitorError> {
        let mut counts = ScanCounts {
            events: 1,
            ..ScanCounts::default()
        };
        let person = match stored.person_id {
            Some(person_id) => self.person(person_id).await?,
            None => None,
        };
        let event = event_of(id, stored, person.and_then(|p| p.age_group));
        let subject = event.subject().unwrap_or_default().to_string();
        let key = (
            subject.clone(),
            format!(
                "{}\u{0}{}",
                stored.target,
                stored.search_term.as_deref().unwrap_or("")
            ),
        );
        if self.read_lately(key, stored.at) {
            counts.repeats = 1;
            return Ok(counts);
        }
        if let Some(attempts) = self.circumvention_attempts(id, stored, &subject) {
            let outcome = self
                .record_circumvention(person, stored, &subject, attempts)
                .await?;
            match outcome {
                None => counts.unattributed += 1,
                Some(outcome) => {
                    counts.circumvention += 1;
                    if outcome.notify() {
                        counts.notify += 1;
                    }
                    match outcome {
                        AlertOutcome::Created { .. } => counts.created += 1,
                        AlertOutcome::Merged { .. } => counts.merged += 1,
                        AlertOutcome::Duplicate { .. } => counts.duplicates += 1,
                    }
                }
            }
        }
        self.record_concerns(Some(id), stored, &event, &subject, person, &mut counts)
            .await?;
        Ok(counts)
    }

    /// Grades `event` (read from the decision `stored`, event `id` when it
    /// was stored) with its group's monitor and records the concerns at or
    /// above the group's grade as alerts.
    async fn record_concerns(
        &mut self,
        id: Option<i64>,
        stored: &DecisionEvent,
        event: &Event,
        subject: &str,
        person: Option<PersonFacts>,
        counts: &mut ScanCounts,
    ) -> Result<(), MonitorError> {
        let (monitor, min_grade) = match stored.group.as_ref().and_then(|g| self.groups.get_mut(g))
        {
            Some((monitor, min_grade)) => (monitor, *min_grade),
            None => (&mut self.monitor, self.options.min_grade),
        };
        let concerns = monitor.inspect(event);
        for concern in concerns {
            if concern.grade < min_grade {
                continue;
            }
            counts.concerns += 1;
            let Some(school_id) = self.school_of(person, stored).await? else {
                counts.unattributed += 1;
                continue;
            };
            let alert = self.alert_of(id, stored, event, subject, &concern).await?;
            let outcome = self
                .store
                .record_alert(&self.actor, school_id, &alert, &self.options.alerts)
                .await?;
            if outcome.notify() {
                counts.notify += 1;
            }
            match outcome {
                AlertOutcome::Created { .. } => counts.created += 1,
                AlertOutcome::Merged { .. } => counts.merged += 1,
                AlertOutcome::Duplicate { .. } => counts.duplicates += 1,
            }
        }
        Ok(())
    }

    /// Counts a blocked circumvention attempt; the attempts in the window
    /// once they reach the rule's number (and the count starts again).
    fn circumvention_attempts(
        &mut self,
        id: i64,
        stored: &DecisionEvent,
        subject: &str,
    ) -> Option<Vec<Attempt>> {
        let rule = self.options.circumvention;
        let category = stored.category.as_deref()?;
        if rule.attempts == 0
            || stored.action != "block"
            || !CIRCUMVENTION_CATEGORIES.contains(&category)
            || stored.target.eq_ignore_ascii_case(DOH_CANARY)
            || subject.is_empty()
        {
            return None;
        }
        if self.attempts.len() >= MAX_RECENT && !self.attempts.contains_key(subject) {
            let at = stored.at;
            self.attempts
                .retain(|_, a| a.back().is_some_and(|last| at - last.at < rule.window));
            if self.attempts.len() >= MAX_RECENT {
                self.attempts.clear();
            }
        }
        let attempts = self.attempts.entry(subject.to_string()).or_default();
        attempts.push_back(Attempt {
            id,
            at: stored.at,
            target: stored.target.clone(),
            category: category.to_string(),
        });
        while attempts
            .front()
            .is_some_and(|first| stored.at - first.at >= rule.window)
        {
            attempts.pop_front();
        }
        if attempts.len() < rule.attempts as usize {
            return None;
        }
        let raised: Vec<Attempt> = attempts.drain(..).collect();
        self.attempts.remove(subject);
        Some(raised)
    }

    /// Records the alert for repeated attempts; `None` when the event
    /// cannot be given to a school.
    async fn record_circumvention(
        &mut self,
        person: Option<PersonFacts>,
        stored: &DecisionEvent,
        subject: &str,
        attempts: Vec<Attempt>,
    ) -> Result<Option<AlertOutcome>, MonitorError> {
        let Some(school_id) = self.school_of(person, stored).await? else {
            return Ok(None);
        };
        let mut categories: Vec<&str> = attempts.iter().map(|a| a.category.as_str()).collect();
        categories.sort_unstable();
        categories.dedup();
        let first = attempts.first().map_or(stored.at, |a| a.at);
        let alert = NewAlert {
            person_id: stored.person_id,
            subject: subject.to_string(),
            device_id: stored.device_id,
            device_name: stored.device_name.clone(),
            address: Some(stored.client.clone()),
            category: CIRCUMVENTION.to_string(),
            grade: self.options.circumvention.grade.clamp(1, 5),
            matched_text: format!(
                "{} blocked attempts to get round the filter ({}) since {}",
                attempts.len(),
                categories.join(", "),
                first.format("%H:%M")
            ),
            source: stored.source.as_str().to_string(),
            at: stored.at,
            event_ids: attempts.iter().map(|a| a.id).collect(),
            context: json!({
                "group": stored.group,
                "categories": categories,
                "attempts": attempts
                    .iter()
                    .map(|a| json!({"at": a.at, "target": a.target, "category": a.category}))
                    .collect::<Vec<_>>(),
            }),
        };
        let outcome = self
            .store
            .record_alert(&self.actor, school_id, &alert, &self.options.alerts)
            .await?;
        Ok(Some(outcome))
    }

    /// Whether `key` was read within the repeat window before `at`; if
    /// not, it is remembered as read at `at`.
    fn read_lately(&mut self, key: (String, String), at: DateTime<Utc>) -> bool {
        if self
            .recent
            .get(&key)
            .is_some_and(|&then| then <= at && at - then < self.options.repeat_quiet)
        {
            return true;
        }
        self.remember(key, at);
        false
    }

    fn remember(&mut self, key: (String, String), at: DateTime<Utc>) {
        if self.recent.len() >= MAX_RECENT {
            let quiet = self.options.repeat_quiet;
            self.recent.retain(|_, &mut seen| at - seen < quiet);
            if self.recent.len() >= MAX_RECENT {
                self.recent.clear();
            }
        }
        self.recent.insert(key, at);
    }

    async fn person(&mut self, person_id: i64) -> Result<Option<PersonFacts>, MonitorError> {
        if let Some(facts) = self.people.get(&person_id) {
            return Ok(*facts);
        }
        let facts = self.store.person(person_id).await?.map(|person| {
            let details = &person.details;
            PersonFacts {
                school_id: person.school_id,
                age_group: age_group(details.kind, details.year_group.as_deref()),
            }
        });
        self.people.insert(person_id, facts);
        Ok(facts)
    }

    /// The school an event belongs to: the person's, else the device's,
    /// else the only school there is.
    async fn school_of(
        &mut self,
        person: Option<PersonFacts>,
        event: &DecisionEvent,
    ) -> Result<Option<i64>, MonitorError> {
        if let Some(person) = person {
            return Ok(Some(person.school_id));
        }
        if let Some(device_id) = event.device_id {
            if !self.devices.contains_key(&device_id) {
                for school in self.store.schools().await? {
                    for device in self.store.devices(school.id).await? {
                        self.devices.insert(device.id, school.id);
                    }
                }
            }
            if let Some(school) = self.devices.get(&device_id) {
                return Ok(Some(*school));
            }
        }
        if self.only_school.is_none() {
            if let [only] = self.store.schools().await?.as_slice() {
                self.only_school = Some(only.id);
            }
        }
        Ok(self.only_school)
    }

    async fn alert_of(
        &self,
        id: Option<i64>,
        stored: &DecisionEvent,
        event: &Event,
        subject: &str,
        concern: &Concern,
    ) -> Result<NewAlert, MonitorError> {
        let filter = EventFilter {
            since: Some(stored.at - self.options.surrounding),
            client: stored.person_id.is_none().then(|| stored.client.clone()),
            person_id: stored.person_id,
            limit: Some(self.options.surrounding_limit),
        };
        let surrounding: Vec<_> = self
            .store
            .events(&filter)
            .await?
            .into_iter()
            .map(|e| {
                json!({
                    "at": e.at,
                    "source": e.source,
                    "target": e.target,
                    "search_term": e.search_term,
                    "action": e.action,
                    "category": e.category,
                })
            })
            .collect();
        let hits = concern.hits_record();
        Ok(NewAlert {
            person_id: stored.person_id,
            subject: subject.to_string(),
            device_id: stored.device_id,
            device_name: stored.device_name.clone(),
            address: Some(stored.client.clone()),
            category: concern.category.as_str().to_string(),
            grade: concern.grade,
            matched_text: concern
                .hits
                .first()
                .map(|h| h.matched.clone())
                .unwrap_or_else(|| stored.target.clone()),
            source: stored.source.as_str().to_string(),
            at: stored.at,
            event_ids: id.into_iter().collect(),
            context: json!({
                "group": stored.group,
                "age_group": event.age_group,
                "factors": concern.factors,
                "hits": hits,
                "event": {
                    "target": stored.target,
                    "search_term": stored.search_term,
                    "action": stored.action,
                    "category": stored.category,
                    "illegal": stored.illegal,
                },
                // A page's title says what was on screen; its text is not
                // kept (only the matched words, above).
                "page": id.is_none().then(|| json!({ "title": event.title })),
                "surrounding": surrounding,
            }),
        })
    }
}

/// The next page from the proxy; never, when there is no channel or it
/// has closed.
async fn next_page(pages: &mut Option<mpsc::Receiver<PageSeen>>) -> Option<PageSeen> {
    match pages {
        Some(receiver) => match receiver.recv().await {
            Some(page) => Some(page),
            None => {
                *pages = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

/// A stored decision event as monitoring reads it.
pub fn event_of(id: i64, stored: &DecisionEvent, age_group: Option<AgeGroup>) -> Event {
    Event {
        id: Some(id),
        time: stored.at,
        source: Some(stored.source.as_str().to_string()),
        person: stored.person_id.map(|p| format!("person:{p}")),
        device: stored
            .device_name
            .clone()
            .or_else(|| stored.device_id.map(|d| format!("device:{d}"))),
        address: Some(stored.client.clone()),
        group: stored.group.clone(),
        age_group,
        search: stored.search_term.clone(),
        url: Some(stored.target.clone()),
        title: None,
        text: None,
        decision: Some(if stored.action == "block" {
            Decision::Blocked
        } else {
            Decision::Allowed
        }),
        filter_category: if stored.illegal {
            Some("illegal".to_string())
        } else {
            stored.category.clone()
        },
    }
}

/// A person's stage of education from their record.
pub fn age_group(kind: PersonKind, year_group: Option<&str>) -> Option<AgeGroup> {
    match kind {
        PersonKind::Staff => Some(AgeGroup::Staff),
        PersonKind::Parent | PersonKind::Governor | PersonKind::Visitor => Some(AgeGroup::Adult),
        PersonKind::Pupil => {
            let year = year_group?.trim();
            Some(match year {
                "N" | "R" | "n" | "r" => AgeGroup::Eyfs,
                _ => match year.parse::<u8>().ok()? {
                    0 => AgeGroup::Eyfs,
                    1..=2 => AgeGroup::Ks1,
                    3..=6 => AgeGroup::Ks2,
                    7..=9 => AgeGroup::Ks3,
                    10..=11 => AgeGroup::Ks4,
                    _ => AgeGroup::Ks5,
                },
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn year_groups_give_key_stages() {
        assert_eq!(
            age_group(PersonKind::Pupil, Some("R")),
            Some(AgeGroup::Eyfs)
        );
        assert_eq!(age_group(PersonKind::Pupil, Some("2")), Some(AgeGroup::Ks1));
        assert_eq!(age_group(PersonKind::Pupil, Some("6")), Some(AgeGroup::Ks2));
        assert_eq!(
            age_group(PersonKind::Pupil, Some(" 9")),
            Some(AgeGroup::Ks3)
        );
        assert_eq!(
            age_group(PersonKind::Pupil, Some("11")),
            Some(AgeGroup::Ks4)
        );
        assert_eq!(
            age_group(PersonKind::Pupil, Some("13")),
            Some(AgeGroup::Ks5)
        );
        assert_eq!(age_group(PersonKind::Pupil, Some("Y7")), None);
        assert_eq!(age_group(PersonKind::Pupil, None), None);
        assert_eq!(age_group(PersonKind::Staff, None), Some(AgeGroup::Staff));
        assert_eq!(age_group(PersonKind::Parent, None), Some(AgeGroup::Adult));
    }
}
