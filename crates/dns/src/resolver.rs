//! The request handler: bytes in, bytes out.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use sheepdog_config::{BlockAnswer, DnsConfig};
use sheepdog_events::{
    DecisionEvent, EventSink, EventSource, Identity, IdentityResolver, CAPTIVE_GROUP,
};
use sheepdog_lists::RpzAction;
use sheepdog_policy::{Action, CompiledPolicy, Decision, Engine, Stage, Target, Verdict};
use tokio::sync::OnceCell;

use crate::cache::{Cache, CacheKey, CachedAnswer, TtlPolicy};
use crate::plain::PlainRequest;
use crate::safesearch;
use crate::upstream::{AllUpstreamsFailed, HealthCheck, Upstreams, UPSTREAM_PAYLOAD};

/// The Firefox canary: NXDOMAIN for it tells Firefox not to switch on DNS
/// over HTTPS by itself, which would bypass the filter (F5).
pub const DOH_CANARY: &str = "use-application-dns.net";
/// The names Apple devices look up before using iCloud Private Relay; a
/// negative answer tells them the network does not allow it, and they say
/// so to the user rather than bypassing the filter silently.
pub const PRIVATE_RELAY: [&str; 2] = ["mask.icloud.com", "mask-h2.icloud.com"];
/// The largest UDP answer sheepdog sends, whatever a client advertises.
const MAX_UDP_PAYLOAD: u16 = 4096;
/// CNAME chains longer than this are not followed further for checking.
const MAX_CHAIN: usize = 16;

/// How a request arrived, which decides the answer size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
        }
    }
}

/// What a name answered with the proxy's address says in its event.
const TO_PROXY: &str = "list entries are URLs: answered with the proxy's address";

/// Answering settings, from the `[dns]` section.
#[derive(Debug, Clone)]
pub struct ResolverSettings {
    pub block_answer: BlockAnswer,
    pub block_page_v4: Ipv4Addr,
    pub block_page_v6: Ipv6Addr,
    pub block_ttl: u32,
    /// The proxy's addresses, answered for names some list names only by
    /// URL (`[dns] url_rules_proxy_ipv4` / `_ipv6`); both `None`: off.
    pub url_rules_proxy: (Option<Ipv4Addr>, Option<Ipv6Addr>),
    pub cache_size: usize,
    pub ttl: TtlPolicy,
    pub upstreams: Vec<sheepdog_config::Upstream>,
    /// Extra roots (PEM) for DNS-over-TLS upstreams.
    pub upstream_roots: Option<std::path::PathBuf>,
    pub timeout: Duration,
    pub attempt_timeout: Duration,
    /// Active health checks of the upstreams; `None`: passive only.
    pub health_check: Option<HealthCheck>,
}

impl ResolverSettings {
    pub fn from_config(dns: &DnsConfig) -> Self {
        Self {
            block_answer: dns.block_answer,
            block_page_v4: Ipv4Addr::from_str(&dns.block_page_ipv4)
                .unwrap_or(Ipv4Addr::UNSPECIFIED),
            block_page_v6: Ipv6Addr::from_str(&dns.block_page_ipv6)
                .unwrap_or(Ipv6Addr::UNSPECIFIED),
            block_ttl: dns.block_ttl,
            // The configuration check refuses an address that does not parse.
            url_rules_proxy: (
                dns.url_rules_proxy_ipv4.parse().ok(),
                dns.url_rules_proxy_ipv6.parse().ok(),
            ),
            cache_size: dns.cache_size as usize,
            ttl: TtlPolicy {
                min: dns.cache_min_ttl,
                max: dns.cache_max_ttl,
                negative_max: dns.negative_ttl_max,
            },
            upstreams: dns.upstreams.clone(),
            upstream_roots: (!dns.upstream_roots.as_os_str().is_empty())
                .then(|| dns.upstream_roots.clone()),
            timeout: Duration::from_millis(u64::from(dns.timeout_ms)),
            attempt_timeout: Duration::from_millis(u64::from(dns.attempt_timeout_ms)),
            // The configuration check refuses a name that does not parse.
            health_check: (dns.health_check_secs > 0)
                .then(|| Name::from_ascii(&dns.health_check_name).ok())
                .flatten()
                .map(|name| HealthCheck {
                    every: Duration::from_secs(u64::from(dns.health_check_secs)),
                    name,
                    record_type: RecordType::NS,
                }),
        }
    }
}

type Fetch = Result<Arc<CachedAnswer>, AllUpstreamsFailed>;
/// An answer, and whether this query fetched it from upstream (only then
/// does its event carry the upstream's latency).
type Fetched = Result<(Arc<CachedAnswer>, bool), AllUpstreamsFailed>;

/// The filtering resolver shared by every listener.
#[derive(Debug)]
pub struct Resolver {
    engine: Arc<Engine>,
    identities: Arc<IdentityResolver>,
    sink: Option<EventSink>,
    settings: ResolverSettings,
    cache: Cache,
    upstreams: Arc<Upstreams>,
    in_flight: Mutex<HashMap<CacheKey, Arc<OnceCell<Fetch>>>>,
}

/// What [`Resolver::answer_now`] could do without waiting.
#[derive(Debug)]
pub enum Immediate {
    /// The reply to send; `None`: send nothing.
    Reply(Option<Vec<u8>>),
    /// The question needs the upstream: finish it with
    /// [`Resolver::answer_upstream`].
    Upstream(Box<Unanswered>),
}

/// A question decided by [`Resolver::answer_now`] that waits for the
/// upstream: the request, who asked, and the decision, so that finishing
/// it does not decide it again.
#[derive(Debug)]
pub struct Unanswered {
    request: Message,
    identity: Arc<Identity>,
    pending: Box<Pending>,
}

/// A decided question: answered, or waiting for an upstream answer.
// `Done` is most queries' step and lives for one return on the stack;
// boxing it, as the lint suggests, would allocate for every query.
#[allow(clippy::large_enum_variant)]
enum Step {
    Done(Answer, Outcome, String),
    Fetch(Box<Pending>),
}

/// What finishing a question with an upstream answer needs.
#[derive(Debug)]
struct Pending {
    key: CacheKey,
    /// Safe search: the enforced host to fetch, answered with a CNAME to
    /// it and its records. `None`: the question's own name is fetched
    /// (built only when it is, not for a cache hit).
    rewrite: Option<Name>,
    policy: Arc<CompiledPolicy>,
    outcome: Outcome,
    name: String,
    at: chrono::DateTime<Utc>,
}

/// What the resolver decided to send, before it is encoded.
struct Answer {
    response_code: ResponseCode,
    /// An A or AAAA record for the question's own name (a block or
    /// captive answer), before `answers`: kept as its address so that
    /// answering a plain request builds no owner name for it.
    address: Option<(IpAddr, u32)>,
    answers: Vec<Record>,
    authority: Vec<Record>,
    /// A cached answer's answer and authority sections, after the ones
    /// above, with their TTLs counted down to the seconds it has left:
    /// kept as the shared entry, so a cache hit written directly copies
    /// no records.
    cached: Option<(Arc<CachedAnswer>, u32)>,
    /// Send nothing at all (RPZ `rpz-drop`).
    drop: bool,
}

impl Answer {
    fn code(response_code: ResponseCode) -> Self {
        Self {
            response_code,
            address: None,
            answers: Vec::new(),
            authority: Vec::new(),
            cached: None,
            drop: false,
        }
    }

    /// The answer and authority sections as records, the address's owned
    /// by `owner`, the cached ones counted down.
    fn sections(self, owner: &Name) -> (Vec<Record>, Vec<Record>) {
        let mut answers = Self::records(self.address, self.answers, owner);
        let mut authority = self.authority;
        if let Some((cached, remaining)) = &self.cached {
            answers.extend(CachedAnswer::records_at(&cached.answers, *remaining));
            authority.extend(CachedAnswer::records_at(&cached.authority, *remaining));
        }
        (answers, authority)
    }

    /// The answer section's records, the address's owned by `owner`.
    fn records(address: Option<(IpAddr, u32)>, answers: Vec<Record>, owner: &Name) -> Vec<Record> {
        let Some((address, ttl)) = address else {
            return answers;
        };
        let data = match address {
            IpAddr::V4(v4) => RData::A(A(v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
        };
        let mut records = Vec::with_capacity(answers.len() + 1);
        records.push(Record::from_rdata(owner.clone(), ttl, data));
        records.extend(answers);
        records
    }
}

/// A request as its answer is built from it: read straight from the
/// packet (a plain query, nearly every one; see [`crate::plain`]) or
/// parsed by hickory.
enum Asked<'a> {
    Plain(&'a [u8], &'a PlainRequest<'a>),
    Parsed(&'a Message, &'a Query),
}

impl Asked<'_> {
    fn record_type(&self) -> RecordType {
        match self {
            Self::Plain(_, plain) => plain.record_type,
            Self::Parsed(_, query) => query.query_type(),
        }
    }

    /// The question's name as asked, for records that carry it as their
    /// owner. A plain request's is built only here, for the few answers
    /// that need one (RPZ local data, safe search, the general encoder).
    /// The reader accepted only what hickory reads (a property test holds
    /// them together), so the root in its place is never reached.
    fn owner(&self) -> Name {
        match self {
            Self::Plain(_, plain) => {
                Name::read(&mut BinDecoder::new(plain.wire_name)).unwrap_or_else(|_| Name::root())
            }
            Self::Parsed(_, query) => query.name().clone(),
        }
    }

    /// The largest answer the client takes over UDP.
    fn udp_limit(&self) -> u16 {
        let payload = match self {
            Self::Plain(_, plain) => plain.payload,
            Self::Parsed(request, _) => request.extensions().as_ref().map(Edns::max_payload),
        };
        payload.map_or(512, |p| p.clamp(512, MAX_UDP_PAYLOAD))
    }

    /// Whether `name` is the question's name (hickory's comparison: ASCII
    /// case ignored, both fully qualified).
    fn is_question(&self, name: &Name) -> bool {
        match self {
            Self::Parsed(_, query) => name == query.name(),
            Self::Plain(_, plain) => {
                if !name.is_fqdn() {
                    return false;
                }
                let mut rest = plain.wire_name;
                for label in name.iter() {
                    let Some((&length, tail)) = rest.split_first() else {
                        return false;
                    };
                    let Some((asked, tail)) = tail.split_at_checked(usize::from(length)) else {
                        return false;
                    };
                    if !asked.eq_ignore_ascii_case(label) {
                        return false;
                    }
                    rest = tail;
                }
                rest == [0]
            }
        }
    }
}

/// The event fields a decision fills in.
#[derive(Debug, Default, PartialEq, Eq)]
struct Outcome {
    action: &'static str,
    illegal: bool,
    /// The category and the group as the policy shares them: a copy is
    /// made only for an event, not for an answer given with events off.
    category: Option<Arc<str>>,
    list: Option<String>,
    rule: Option<String>,
    group: Option<Arc<str>>,
    upstream_ms: Option<u32>,
    /// When the policy decided, for an event recorded in the same breath
    /// (an answer given at once): reading the clock again cost 180
    /// instructions a query. `None`: the event takes the time it is
    /// recorded, as one waiting for the upstream does.
    decided: Option<chrono::DateTime<Utc>>,
}

impl Outcome {
    /// The event fields of a verdict, with the same values as
    /// [`Outcome::from_decision`] of [`CompiledPolicy::explain`] but
    /// without building the reason sentence, which the DNS answer and the
    /// event do not carry. The stages whose rule `explain` words itself
    /// (local lists, exceptions, schedules) still go through it.
    fn of_verdict(policy: &CompiledPolicy, q: &sheepdog_policy::Query<'_>, v: &Verdict) -> Self {
        let group = v
            .group
            .and_then(|i| policy.groups().get(i))
            .map(|g| g.name.clone());
        if v.hit.is_none() && v.action == Action::Allow {
            return Self {
                action: v.action.as_str(),
                group,
                ..Self::default()
            };
        }
        if matches!(
            v.stage,
            Stage::LocalList | Stage::Exception | Stage::Schedule
        ) {
            return Self::from_decision(&policy.explain(q, v));
        }
        let rule = v.hit.map(|hit| {
            let subject = q.target.normal_name();
            policy
                .snapshot()
                .describe_rule(&hit, subject.as_deref().unwrap_or(""))
        });
        Self {
            action: v.action.as_str(),
            illegal: v.illegal,
            category: v
                .category
                .and_then(|c| policy.categories().get(usize::from(c)))
                .map(|c| c.id.clone()),
            list: v
                .hit
                .and_then(|h| policy.snapshot().lists().get(usize::from(h.list)))
                .map(|l| l.name.clone()),
            rule,
            group,
            upstream_ms: None,
            decided: None,
        }
    }

    fn from_decision(d: &Decision) -> Self {
        Self {
            action: d.action.as_str(),
            illegal: d.illegal,
            category: d.category.clone(),
            list: d.list.as_deref().map(str::to_string),
            rule: d.rule.clone(),
            group: d.group.clone(),
            upstream_ms: None,
            decided: None,
        }
    }
}

impl Resolver {
    pub fn new(
        engine: Arc<Engine>,
        identities: Arc<IdentityResolver>,
        sink: Option<EventSink>,
        settings: ResolverSettings,
    ) -> Self {
        let upstreams = Arc::new(Upstreams::new(
            &settings.upstreams,
            settings.timeout,
            settings.attempt_timeout,
            settings.upstream_roots.as_deref(),
        ));
        // Outside a runtime (the fuzz target) there is nothing to probe for.
        if let (Some(check), Ok(_)) = (
            &settings.health_check,
            tokio::runtime::Handle::try_current(),
        ) {
            upstreams.spawn_health_checks(check);
        }
        Self {
            cache: Cache::new(settings.cache_size, settings.ttl),
            upstreams,
            engine,
            identities,
            sink,
            settings,
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    /// The cache, for metrics and tests.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The upstreams, for their health and connection counts.
    pub fn upstreams(&self) -> &Upstreams {
        &self.upstreams
    }

    /// Answers one request packet from `client`. `None` means send nothing:
    /// the packet was too short to hold a header, was itself a response, or
    /// the policy says to drop it. Never panics on any input.
    pub async fn handle(
        &self,
        packet: &[u8],
        client: IpAddr,
        transport: Transport,
    ) -> Option<Vec<u8>> {
        match self.answer_now(packet, client, transport) {
            Immediate::Reply(reply) => reply,
            Immediate::Upstream(question) => {
                self.answer_upstream(*question, client, transport).await
            }
        }
    }

    /// Answers without waiting whatever can be answered so: malformed
    /// packets, refusals, block answers, the canary, captive guests and
    /// cache hits. A question that needs the upstream comes back parsed,
    /// for [`Resolver::answer_upstream`]; the UDP listener answers the rest
    /// in its receive loop without spawning a task. The same decisions,
    /// answers, events and metrics as [`Resolver::handle`], which is this
    /// followed by `answer_upstream` when needed. A plain query is answered
    /// from its bytes (see [`crate::plain`]), anything else from hickory's
    /// parse, with the same answers and events (a property test and the
    /// fuzz target compare the two).
    pub fn answer_now(&self, packet: &[u8], client: IpAddr, transport: Transport) -> Immediate {
        metrics::counter!("sheepdog_dns_queries_total", "transport" => transport.as_str())
            .increment(1);
        if let Some(plain) = PlainRequest::read(packet) {
            if let Some(reply) = self.answer_plain(packet, plain, client, transport) {
                return Immediate::Reply(reply);
            }
        }
        self.answer_parsed(packet, client, transport)
    }

    /// A plain request answered from the packet's bytes, without
    /// hickory's parse. `None` when the question needs the upstream:
    /// nothing has been counted or recorded by then (a cache miss is
    /// counted by the fetch), so hickory's path takes it from the start,
    /// deciding it again, and parses the request the upstream exchange
    /// keeps.
    fn answer_plain(
        &self,
        packet: &[u8],
        mut plain: PlainRequest<'_>,
        client: IpAddr,
        transport: Transport,
    ) -> Option<Option<Vec<u8>>> {
        let name = std::mem::take(&mut plain.name);
        let asked = Asked::Plain(packet, &plain);
        let identity = self.identities.lookup(client);
        let (answer, outcome, name) =
            match self.prepare(&asked, name, plain.normal, &identity, client) {
                Step::Done(answer, outcome, name) => (answer, outcome, name),
                Step::Fetch(pending) => {
                    let hit = self.cached(&pending.key)?;
                    self.complete(*pending, Ok((hit, false)), &asked, &identity)
                }
            };
        Some(self.reply(&asked, client, &identity, answer, outcome, name, transport))
    }

    /// [`Resolver::answer_now`] for a request parsed by hickory: anything
    /// the plain reader declines, and questions for the upstream. Public
    /// for the fuzz target, which holds `answer_now` to its answers.
    #[doc(hidden)]
    pub fn answer_parsed(&self, packet: &[u8], client: IpAddr, transport: Transport) -> Immediate {
        let request = match Message::from_vec(packet) {
            Ok(request) => request,
            Err(_) => {
                metrics::counter!("sheepdog_dns_malformed_total").increment(1);
                return Immediate::Reply(form_error(packet));
            }
        };
        if request.message_type() != MessageType::Query {
            return Immediate::Reply(None);
        }
        let refuse = |code| Immediate::Reply(encode(&reply_to(&request, code), None));
        if request.op_code() != OpCode::Query {
            return refuse(ResponseCode::NotImp);
        }
        let [query] = request.queries() else {
            metrics::counter!("sheepdog_dns_malformed_total").increment(1);
            return refuse(ResponseCode::FormErr);
        };
        if query.query_class() != DNSClass::IN
            || matches!(query.query_type(), RecordType::AXFR | RecordType::IXFR)
        {
            return refuse(ResponseCode::Refused);
        }
        let identity = self.identities.lookup(client);
        let asked = Asked::Parsed(&request, query);
        let (name, normal) = question_name(query.name());
        let (answer, outcome, name) = match self.prepare(&asked, name, normal, &identity, client) {
            Step::Done(answer, outcome, name) => (answer, outcome, name),
            Step::Fetch(pending) => match self.cached(&pending.key) {
                Some(hit) => self.complete(*pending, Ok((hit, false)), &asked, &identity),
                None => {
                    return Immediate::Upstream(Box::new(Unanswered {
                        request,
                        identity,
                        pending,
                    }))
                }
            },
        };
        Immediate::Reply(self.reply(&asked, client, &identity, answer, outcome, name, transport))
    }

    /// Finishes a request [`Resolver::answer_now`] handed back: asks the
    /// upstream (or joins the same question in flight) and answers.
    pub async fn answer_upstream(
        &self,
        question: Unanswered,
        client: IpAddr,
        transport: Transport,
    ) -> Option<Vec<u8>> {
        let Unanswered {
            request,
            identity,
            pending,
        } = question;
        let [query] = request.queries() else {
            return None;
        };
        let fetch_name = match &pending.rewrite {
            Some(target) => target.clone(),
            None => query.name().to_lowercase(),
        };
        let fetched = self
            .fetch(&pending.key, &fetch_name, query.query_type())
            .await;
        let asked = Asked::Parsed(&request, query);
        let (answer, mut outcome, name) = self.complete(*pending, fetched, &asked, &identity);
        // Answered after the upstream's wait: the event's time is now.
        outcome.decided = None;
        self.reply(&asked, client, &identity, answer, outcome, name, transport)
    }

    /// Records the event and encodes the answer within the transport's size.
    #[allow(clippy::too_many_arguments)]
    fn reply(
        &self,
        asked: &Asked<'_>,
        client: IpAddr,
        identity: &Identity,
        answer: Answer,
        outcome: Outcome,
        name: String,
        transport: Transport,
    ) -> Option<Vec<u8>> {
        self.record(client, identity, name, asked.record_type(), outcome);
        if answer.drop {
            return None;
        }
        let limit = match transport {
            Transport::Tcp => None,
            Transport::Udp => Some(asked.udp_limit()),
        };
        if let Some(bytes) = write_simple(asked, &answer, limit) {
            return Some(bytes);
        }
        // The general encoder takes hickory's parse; a plain request's is
        // made here, for the rare answer `write_simple` declines.
        let parsed;
        let (request, query) = match asked {
            Asked::Parsed(request, query) => (*request, *query),
            Asked::Plain(packet, _) => {
                parsed = Message::from_vec(packet).ok()?;
                let [query] = parsed.queries() else {
                    return None;
                };
                (&parsed, query)
            }
        };
        let mut response = reply_to(request, answer.response_code);
        let (answers, authority) = answer.sections(query.name());
        response.insert_answers(answers);
        response.insert_name_servers(authority);
        encode(&response, limit)
    }

    /// Decides one question for `client`: the answer when no upstream is
    /// needed, or what to fetch and how to finish. `name` is the question's
    /// name as the policy reads it, `normal` whether it is in normal form.
    fn prepare(
        &self,
        asked: &Asked<'_>,
        name: String,
        normal: bool,
        identity: &Identity,
        client: IpAddr,
    ) -> Step {
        if name == DOH_CANARY {
            metrics::counter!("sheepdog_dns_doh_canary_total").increment(1);
            let outcome = Outcome {
                action: "block",
                category: Some("doh".into()),
                rule: Some("Firefox DNS-over-HTTPS canary".to_string()),
                group: Some(identity.group.clone()),
                ..Outcome::default()
            };
            return Step::Done(Answer::code(ResponseCode::NXDomain), outcome, name);
        }

        let policy = self.engine.current();
        if PRIVATE_RELAY.contains(&name.as_str())
            && !policy
                .group(&identity.group)
                .is_some_and(|g| g.allow_private_relay)
        {
            metrics::counter!("sheepdog_dns_private_relay_total").increment(1);
            let outcome = Outcome {
                action: "block",
                category: Some("private_relay".into()),
                rule: Some("iCloud Private Relay is not allowed for this group".to_string()),
                group: Some(identity.group.clone()),
                ..Outcome::default()
            };
            return Step::Done(Answer::code(ResponseCode::NXDomain), outcome, name);
        }
        // A guest who has not accepted the visitor agreement is sent to
        // the block page's address, where the proxy shows the portal; with
        // no `captive` group in the policy, for every name.
        let captive = &*identity.group == CAPTIVE_GROUP;
        if captive && policy.group(CAPTIVE_GROUP).is_none() {
            let outcome = Outcome {
                action: "block",
                category: Some("captive".into()),
                rule: Some("guest has not accepted the visitor agreement".to_string()),
                group: Some(CAPTIVE_GROUP.into()),
                ..Outcome::default()
            };
            return Step::Done(self.captive_answer(asked.record_type()), outcome, name);
        }
        let at = Utc::now();
        let q = sheepdog_policy::Query {
            group: &identity.group,
            target: if normal {
                Target::Normal(&name)
            } else {
                Target::Name(&name)
            },
            at,
        };
        let verdict = policy.verdict(&q);
        // A warning the client continued past on the warning page (the
        // proxy recorded it) no longer blocks the name for that client.
        let heeded = verdict.action == Action::Warn
            && self
                .identities
                .warnings()
                .is_some_and(|w| w.acknowledged(client, &name));
        let mut outcome = self.outcome(&policy, &q, &verdict);
        outcome.decided = Some(at);
        if blocks(verdict.action) && !heeded {
            let answer = if captive {
                self.captive_answer(asked.record_type())
            } else {
                self.block(&policy, &verdict, &name, asked)
            };
            return Step::Done(answer, outcome, name);
        }
        if heeded {
            outcome.action = "allow";
            outcome.rule = Some(format!(
                "{} (warning acknowledged)",
                outcome.rule.as_deref().unwrap_or(&name)
            ));
        }
        if let Some(answer) = self.to_proxy(&policy, &name, asked.record_type()) {
            outcome.rule = Some(match outcome.rule.take() {
                Some(rule) => format!("{rule}; {TO_PROXY}"),
                None => TO_PROXY.to_string(),
            });
            return Step::Done(answer, outcome, name);
        }

        // Safe search: answer the engine's host with a CNAME to its
        // enforced host, followed by that host's own records.
        let safe = outcome
            .group
            .as_deref()
            .and_then(|g| policy.group(g))
            .and_then(|g| safesearch::rewrite(&name, &g.safe_search));
        if let Some(target) = safe {
            let Ok(target_name) = Name::from_ascii(format!("{target}.")) else {
                return Step::Done(Answer::code(ResponseCode::ServFail), outcome, name);
            };
            let mut outcome = outcome;
            outcome.action = "rewrite";
            outcome.rule = Some(format!("safe search: {target}"));
            return Step::Fetch(Box::new(Pending {
                key: CacheKey {
                    name: target.into(),
                    record_type: asked.record_type(),
                },
                rewrite: Some(target_name),
                policy,
                outcome,
                name,
                at,
            }));
        }
        Step::Fetch(Box::new(Pending {
            key: CacheKey {
                name: name.as_str().into(),
                record_type: asked.record_type(),
            },
            rewrite: None,
            policy,
            outcome,
            name,
            at,
        }))
    }

    /// Finishes a question with the upstream's (or the cache's) answer:
    /// the safe-search CNAME, or the answer once every name its CNAME
    /// chain reaches has been checked.
    fn complete(
        &self,
        pending: Pending,
        fetched: Fetched,
        asked: &Asked<'_>,
        identity: &Identity,
    ) -> (Answer, Outcome, String) {
        let Pending {
            policy,
            mut outcome,
            name,
            at,
            rewrite,
            ..
        } = pending;
        if let Some(target) = rewrite {
            let Ok((cached, fresh)) = fetched else {
                return (Answer::code(ResponseCode::ServFail), outcome, name);
            };
            outcome.upstream_ms = cached.upstream_ms.filter(|_| fresh);
            let remaining = cached.remaining(Instant::now());
            let mut answers = vec![Record::from_rdata(
                asked.owner(),
                remaining.min(300),
                RData::CNAME(CNAME(target)),
            )];
            answers.extend(CachedAnswer::records_at(&cached.answers, remaining));
            let answer = Answer {
                response_code: cached.response_code,
                address: None,
                answers,
                authority: CachedAnswer::records_at(&cached.authority, remaining),
                cached: None,
                drop: false,
            };
            return (answer, outcome, name);
        }

        let Ok((cached, fresh)) = fetched else {
            metrics::counter!("sheepdog_dns_servfail_total").increment(1);
            return (Answer::code(ResponseCode::ServFail), outcome, name);
        };
        outcome.upstream_ms = cached.upstream_ms.filter(|_| fresh);

        // CNAME cloaking: a tracker or blocked site hidden behind an
        // innocent name is still blocked.
        for target in cname_targets(&cached.answers).take(MAX_CHAIN) {
            let cq = sheepdog_policy::Query {
                group: &identity.group,
                target: Target::Name(&target),
                at,
            };
            let v = policy.verdict(&cq);
            if blocks(v.action) {
                let mut blocked = self.outcome(&policy, &cq, &v);
                let answer = self.block(&policy, &v, &name, asked);
                blocked.rule = Some(format!(
                    "{} (reached through CNAME {target})",
                    blocked.rule.as_deref().unwrap_or(&target)
                ));
                blocked.upstream_ms = outcome.upstream_ms;
                blocked.decided = outcome.decided;
                return (answer, blocked, name);
            }
        }

        let remaining = cached.remaining(Instant::now());
        let mut answer = Answer::code(cached.response_code);
        answer.cached = Some((cached, remaining));
        (answer, outcome, name)
    }

    /// A verdict's event fields. Without an event sink only those the
    /// answer itself needs (the group, for safe search; the category, for
    /// the blocked metric): the list and the rule text are for the event.
    fn outcome(
        &self,
        policy: &CompiledPolicy,
        q: &sheepdog_policy::Query<'_>,
        v: &Verdict,
    ) -> Outcome {
        if self.sink.is_some() {
            return Outcome::of_verdict(policy, q, v);
        }
        Outcome {
            action: v.action.as_str(),
            category: v
                .category
                .filter(|_| v.hit.is_some() || v.action != Action::Allow)
                .and_then(|c| policy.categories().get(usize::from(c)))
                .map(|c| c.id.clone()),
            group: v
                .group
                .and_then(|i| policy.groups().get(i))
                .map(|g| g.name.clone()),
            ..Outcome::default()
        }
    }

    /// A live cache entry, counted as a hit; a miss is counted by
    /// [`Resolver::fetch`], which looks again before asking upstream.
    fn cached(&self, key: &CacheKey) -> Option<Arc<CachedAnswer>> {
        let hit = self.cache.get(key, Instant::now())?;
        metrics::counter!("sheepdog_dns_cache_hits_total").increment(1);
        Some(hit)
    }

    /// The cached answer, or the upstream's; identical questions in flight
    /// share one exchange.
    async fn fetch(&self, key: &CacheKey, name: &Name, record_type: RecordType) -> Fetched {
        if let Some(hit) = self.cached(key) {
            return Ok((hit, false));
        }
        metrics::counter!("sheepdog_dns_cache_misses_total").increment(1);
        let cell = match self.in_flight.lock() {
            Ok(mut map) => map.entry(key.clone()).or_default().clone(),
            Err(_) => Arc::new(OnceCell::new()),
        };
        let mut leader = false;
        let result = cell
            .get_or_init(|| async {
                leader = true;
                let forwarded = self.upstreams.resolve(name, record_type).await?;
                let message = forwarded.message;
                let response_code = message.response_code();
                let answers = message.answers().to_vec();
                let authority = message.name_servers().to_vec();
                let ttl = self.cache.ttl.ttl_for(response_code, &answers, &authority);
                let answer = Arc::new(CachedAnswer {
                    response_code,
                    answers,
                    authority,
                    ttl: ttl.unwrap_or(0),
                    stored: Instant::now(),
                    upstream_ms: u32::try_from(forwarded.elapsed.as_millis()).ok(),
                });
                if ttl.is_some_and(|t| t > 0) {
                    self.cache.insert(key.clone(), answer.clone());
                }
                Ok(answer)
            })
            .await
            .clone();
        if let Ok(mut map) = self.in_flight.lock() {
            if map.get(key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                map.remove(key);
            }
        }
        result.map(|answer| (answer, leader))
    }

    /// The block answer for a decision.
    fn block(
        &self,
        policy: &CompiledPolicy,
        verdict: &Verdict,
        name: &str,
        asked: &Asked<'_>,
    ) -> Answer {
        // The event's category, as the policy shares it: a label from a
        // copied string cost an allocation per blocked query.
        let category = verdict
            .category
            .and_then(|c| policy.categories().get(usize::from(c)))
            .map_or(metrics::SharedString::const_str("uncategorised"), |c| {
                metrics::SharedString::from(c.id.clone())
            });
        metrics::counter!("sheepdog_dns_blocked_total", "category" => category).increment(1);
        let mode = match verdict.hit.and_then(|h| h.rpz) {
            Some(RpzAction::NxDomain) => BlockAnswer::Nxdomain,
            Some(RpzAction::NoData) => BlockAnswer::Nodata,
            Some(RpzAction::Drop) => {
                let mut answer = Answer::code(ResponseCode::NoError);
                answer.drop = true;
                return answer;
            }
            Some(RpzAction::LocalData) => {
                if let Some(data) = policy.snapshot().local_data(name) {
                    let answers = local_data(
                        data,
                        &asked.owner(),
                        asked.record_type(),
                        self.settings.block_ttl,
                    );
                    let mut answer = Answer::code(ResponseCode::NoError);
                    answer.answers = answers;
                    return answer;
                }
                self.settings.block_answer
            }
            _ => self.settings.block_answer,
        };
        let (v4, v6) = match mode {
            BlockAnswer::Nxdomain => return Answer::code(ResponseCode::NXDomain),
            BlockAnswer::Nodata => return Answer::code(ResponseCode::NoError),
            BlockAnswer::Null => (Ipv4Addr::UNSPECIFIED, Ipv6Addr::UNSPECIFIED),
            BlockAnswer::BlockPage => (self.settings.block_page_v4, self.settings.block_page_v6),
        };
        Self::addresses(asked.record_type(), v4, v6, self.settings.block_ttl)
    }

    /// The proxy's address for a name some list names only by URL (the IWF
    /// and CTIRU lists), when `url_rules_proxy` is set: DNS cannot see the
    /// path, so the device is sent where the whole URL is matched. A and
    /// AAAA get the proxy's address (no address for a family it lacks, so
    /// that family is no way around it); HTTPS and SVCB get no records, so
    /// their address hints cannot lead elsewhere; other types go on.
    fn to_proxy(
        &self,
        policy: &CompiledPolicy,
        name: &str,
        record_type: RecordType,
    ) -> Option<Answer> {
        let (v4, v6) = self.settings.url_rules_proxy;
        if v4.is_none() && v6.is_none()
            || !matches!(
                record_type,
                RecordType::A | RecordType::AAAA | RecordType::HTTPS | RecordType::SVCB
            )
            || !policy.snapshot().host_has_url_rules(name)
        {
            return None;
        }
        metrics::counter!("sheepdog_dns_url_rules_to_proxy_total").increment(1);
        Some(Self::addresses(
            record_type,
            v4,
            v6,
            self.settings.block_ttl,
        ))
    }

    /// A captive guest's answer: the block page's addresses whatever
    /// `block_answer` says, so the browser lands on the portal; a TTL of
    /// one second, so the real address follows soon after accepting.
    fn captive_answer(&self, record_type: RecordType) -> Answer {
        metrics::counter!("sheepdog_dns_captive_total").increment(1);
        Self::addresses(
            record_type,
            self.settings.block_page_v4,
            self.settings.block_page_v6,
            1,
        )
    }

    /// An answer of `v4` for A and `v6` for AAAA (nothing for other types,
    /// or for a family without an address).
    fn addresses(
        record_type: RecordType,
        v4: impl Into<Option<Ipv4Addr>>,
        v6: impl Into<Option<Ipv6Addr>>,
        ttl: u32,
    ) -> Answer {
        let mut answer = Answer::code(ResponseCode::NoError);
        answer.address = match (record_type, v4.into(), v6.into()) {
            (RecordType::A, Some(v4), _) => Some((IpAddr::V4(v4), ttl)),
            (RecordType::AAAA, _, Some(v6)) => Some((IpAddr::V6(v6), ttl)),
            _ => None,
        };
        answer
    }

    fn record(
        &self,
        client: IpAddr,
        identity: &Identity,
        name: String,
        record_type: RecordType,
        outcome: Outcome,
    ) {
        let Some(sink) = &self.sink else {
            return;
        };
        sink.try_send(DecisionEvent {
            at: outcome.decided.unwrap_or_else(Utc::now),
            source: EventSource::Dns,
            client: client_text(client),
            device_id: identity.device_id,
            device_name: identity.device_name.as_deref().map(str::to_string),
            person_id: identity.person_id,
            group: Some(String::from(
                outcome.group.as_deref().unwrap_or(&identity.group),
            )),
            target: name,
            query_type: Some(<&'static str>::from(record_type).to_owned()),
            action: outcome.action.to_string(),
            illegal: outcome.illegal,
            category: outcome.category.as_deref().map(String::from),
            list: outcome.list,
            rule: outcome.rule,
            upstream_ms: outcome.upstream_ms,
            search_term: None,
            school_id: identity.school_id,
        });
    }
}

/// The question name as the policy and the cache read it: lower case, no
/// trailing dot. A name of plain host-name labels (letters, digits, `-`
/// but not first, `_`), nearly every one, is written straight from its
/// labels; anything else takes hickory's escaping, so the spelling is the
/// same either way (a property test holds the two together). Hickory's
/// conversion was a tenth of the cost of answering a blocked name.
///
/// Also says whether the name is already in the form `normalize_name` gives (it would return it unchanged): plain labels,
/// none of them punycode (`xn--`, which IDNA must check), and not the
/// root. The labels are read byte by byte here anyway, so knowing this
/// costs a few instructions where normalising again cost hundreds (a
/// property test holds it to `normalize_name`).
fn question_name(name: &Name) -> (String, bool) {
    let mut out = Vec::with_capacity(name.len());
    for label in name.iter() {
        // Hickory escapes a leading `-`.
        if label.first() == Some(&b'-')
            || !label
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        {
            let mut escaped = name.to_lowercase().to_ascii();
            if escaped.ends_with('.') {
                escaped.pop();
            }
            return (escaped, false);
        }
        if !out.is_empty() {
            out.push(b'.');
        }
        let start = out.len();
        out.extend_from_slice(label);
        out[start..].make_ascii_lowercase();
    }
    let normal = !out.is_empty()
        && out.len() <= sheepdog_lists::name::MAX_NAME_LEN
        && !out.split(|&b| b == b'.').any(|l| l.starts_with(b"xn--"));
    // Only ASCII letters, digits, `-`, `_` and `.` were written, so this
    // never fails; an empty name would be refused as no name at all.
    match String::from_utf8(out) {
        Ok(text) => (text, normal),
        Err(_) => (String::new(), false),
    }
}

/// DNS cannot show a warning page, so a warning blocks (to the block page
/// when one is configured, where the proxy shows the warning and records a
/// "continue" that the resolver then honours).
fn blocks(action: Action) -> bool {
    matches!(action, Action::Block | Action::Warn)
}

/// Names that answer records point to through CNAMEs.
fn cname_targets(records: &[Record]) -> impl Iterator<Item = String> + '_ {
    records.iter().filter_map(|r| match r.data() {
        RData::CNAME(CNAME(target)) => {
            let mut t = target.to_lowercase().to_ascii();
            if t.ends_with('.') {
                t.pop();
            }
            Some(t)
        }
        _ => None,
    })
}

/// RPZ local data (`A 192.0.2.1`, `AAAA ::1`, `CNAME host.`) for the
/// question's type.
fn local_data(data: &[String], owner: &Name, record_type: RecordType, ttl: u32) -> Vec<Record> {
    data.iter()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let kind = parts.next()?.to_ascii_uppercase();
            let value = parts.next()?;
            let rdata = match (kind.as_str(), record_type) {
                ("A", RecordType::A) => RData::A(A(value.parse().ok()?)),
                ("AAAA", RecordType::AAAA) => RData::AAAA(AAAA(value.parse().ok()?)),
                ("CNAME", _) => RData::CNAME(CNAME(Name::from_ascii(value).ok()?)),
                _ => return None,
            };
            Some(Record::from_rdata(owner.clone(), ttl, rdata))
        })
        .collect()
}

/// The response skeleton: the request's ID, opcode, RD and CD flags and its
/// question exactly as asked (case included), and an OPT record when the
/// request had one.
fn reply_to(request: &Message, response_code: ResponseCode) -> Message {
    let mut response = Message::new();
    response
        .set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_op_code(request.op_code())
        .set_recursion_desired(request.recursion_desired())
        .set_recursion_available(true)
        .set_checking_disabled(request.checking_disabled())
        .set_response_code(response_code);
    response.add_queries(request.queries().iter().cloned());
    if request.extensions().is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(UPSTREAM_PAYLOAD);
        response.set_edns(edns);
    }
    response
}

/// The bytes of a simple answer, written directly rather than built as a
/// `Message` and encoded: no records, or only A/AAAA records for the
/// question's own name (block answers, the canary, captive guests). The
/// same bytes as [`reply_to`] and [`encode`] give (a property test
/// compares them); `None` for anything else, which takes that path.
fn write_simple(asked: &Asked<'_>, answer: &Answer, limit: Option<u16>) -> Option<Vec<u8>> {
    let (cached_answers, cached_authority, remaining): (&[Record], &[Record], u32) =
        match &answer.cached {
            Some((cached, remaining)) => (&cached.answers, &cached.authority, *remaining),
            None => (&[], &[], 0),
        };
    let count = answer.answers.len() + cached_answers.len() + usize::from(answer.address.is_some());
    if !answer.authority.is_empty() || !cached_authority.is_empty() || count > 2 {
        return None;
    }
    // A plain request is a QUERY (opcode 0) of class IN.
    let (id, op_code, recursion_desired, checking_disabled, edns, class) = match asked {
        Asked::Plain(_, plain) => (
            plain.id,
            0,
            plain.recursion_desired,
            plain.checking_disabled,
            plain.payload.is_some(),
            u16::from(DNSClass::IN),
        ),
        Asked::Parsed(request, query) => (
            request.id(),
            u8::from(request.op_code()),
            request.recursion_desired(),
            request.checking_disabled(),
            request.extensions().is_some(),
            u16::from(query.query_class()),
        ),
    };
    let mut bytes = Vec::with_capacity(128);
    bytes.extend_from_slice(&id.to_be_bytes());
    bytes.push(0x80 | (op_code & 0x0f) << 3 | u8::from(recursion_desired));
    bytes.push(
        0x80 | if checking_disabled { 0x10 } else { 0 } | (answer.response_code.low() & 0x0f),
    );
    let count = u16::try_from(count).ok()?;
    for field in [1, count, 0, u16::from(edns)] {
        bytes.extend_from_slice(&field.to_be_bytes());
    }
    match asked {
        Asked::Plain(_, plain) => bytes.extend_from_slice(plain.wire_name),
        Asked::Parsed(_, query) => {
            let name = query.name();
            if !name.is_fqdn() {
                return None;
            }
            for label in name.iter() {
                bytes.push(u8::try_from(label.len()).ok()?);
                bytes.extend_from_slice(label);
            }
            bytes.push(0);
        }
    }
    bytes.extend_from_slice(&u16::from(asked.record_type()).to_be_bytes());
    bytes.extend_from_slice(&class.to_be_bytes());
    let own = answer.answers.iter().map(|record| (record, record.ttl()));
    let cached = cached_answers
        .iter()
        .map(|record| (record, record.ttl().min(remaining)));
    let records = own.chain(cached).map(|(record, ttl)| {
        if !asked.is_question(record.name()) || record.dns_class() != DNSClass::IN {
            return None;
        }
        match record.data() {
            RData::A(A(v4)) => Some((IpAddr::V4(*v4), ttl)),
            RData::AAAA(AAAA(v6)) => Some((IpAddr::V6(*v6), ttl)),
            _ => None,
        }
    });
    for record in answer.address.into_iter().map(Some).chain(records) {
        let (address, ttl) = record?;
        let (record_type, data): (u16, &[u8]) = match &address {
            IpAddr::V4(v4) => (1, &v4.octets()),
            IpAddr::V6(v6) => (28, &v6.octets()),
        };
        // The owner is the question's name: a pointer to offset 12.
        bytes.extend_from_slice(&[0xc0, 0x0c]);
        bytes.extend_from_slice(&record_type.to_be_bytes());
        bytes.extend_from_slice(&1u16.to_be_bytes());
        bytes.extend_from_slice(&ttl.to_be_bytes());
        bytes.extend_from_slice(&u16::try_from(data.len()).ok()?.to_be_bytes());
        bytes.extend_from_slice(data);
    }
    if edns {
        // OPT: root owner, our payload size as the class, then extended
        // code, version 0 and no flags, and no options.
        bytes.push(0);
        bytes.extend_from_slice(&u16::from(RecordType::OPT).to_be_bytes());
        bytes.extend_from_slice(&UPSTREAM_PAYLOAD.to_be_bytes());
        bytes.push(answer.response_code.high());
        bytes.extend_from_slice(&[0, 0, 0, 0, 0]);
    }
    match limit {
        Some(limit) if bytes.len() > usize::from(limit) => None,
        _ => Some(bytes),
    }
}

/// Encodes a response; over UDP, one larger than the client's limit is sent
/// truncated (TC set, records dropped) so the client retries over TCP.
fn encode(response: &Message, limit: Option<u16>) -> Option<Vec<u8>> {
    let bytes = response.to_vec().ok()?;
    match limit {
        Some(limit) if bytes.len() > usize::from(limit) => {
            metrics::counter!("sheepdog_dns_truncated_total").increment(1);
            response.truncate().to_vec().ok()
        }
        _ => Some(bytes),
    }
}

/// FORMERR for a packet that does not parse, built from its raw header;
/// nothing for one too short to have a header or that claims to be a
/// response (answering responses invites loops).
fn form_error(packet: &[u8]) -> Option<Vec<u8>> {
    let header = packet.get(..12)?;
    let id = u16::from_be_bytes([header[0], header[1]]);
    let flags = header[2];
    if flags & 0x80 != 0 {
        return None;
    }
    let op_code = OpCode::from_u8((flags >> 3) & 0x0f);
    let mut message = Message::error_msg(id, op_code, ResponseCode::FormErr);
    message.set_recursion_desired(flags & 0x01 != 0);
    message.set_recursion_available(true);
    message.to_vec().ok()
}

/// A client address as events record it, as `IpAddr`'s `Display` writes
/// it. IPv4 addresses, nearly every client, are written digit by digit:
/// the general formatter cost more than a thousand instructions an event.
fn client_text(client: IpAddr) -> String {
    let IpAddr::V4(v4) = client else {
        return client.to_string();
    };
    let mut text = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        if octet >= 100 {
            text.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            text.push(char::from(b'0' + octet / 10 % 10));
        }
        text.push(char::from(b'0' + octet % 10));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn form_error_keeps_the_id_and_ignores_responses_and_stubs() {
        let reply = form_error(&[0xab, 0xcd, 0x01, 0, 0, 1, 0xff, 0xff, 0, 0, 0, 0, 3]).unwrap();
        let message = Message::from_vec(&reply).unwrap();
        assert_eq!(message.id(), 0xabcd);
        assert_eq!(message.response_code(), ResponseCode::FormErr);
        assert!(message.recursion_desired());
        assert!(form_error(&[0u8; 11]).is_none());
        assert!(form_error(&[0, 1, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_none());
    }

    /// A policy with each kind of deciding stage: illegal, category (block,
    /// warn, monitor), local deny and allow, an exception, a schedule, an
    /// RPZ list, subdomain rules and group defaults.
    fn policy() -> CompiledPolicy {
        use sheepdog_lists::{parse::parse_str, ListFormat, SnapshotBuilder};
        let mut b = SnapshotBuilder::new();
        let lists: &[(&str, bool, Option<&str>, ListFormat, &str)] = &[
            (
                "iwf",
                true,
                Some("iwf"),
                ListFormat::Domains,
                "abuse.invalid\n",
            ),
            (
                "iwf-urls",
                true,
                Some("iwf"),
                ListFormat::Urls,
                "pages.test/abuse/1\n",
            ),
            (
                "gambling",
                false,
                Some("gambling"),
                ListFormat::Domains,
                "casino.test\nbingo.test\ndice.test\n",
            ),
            (
                "games",
                false,
                Some("games"),
                ListFormat::Domains,
                "games.test\ncasino.test\n",
            ),
            (
                "social",
                false,
                Some("social-networking"),
                ListFormat::Adblock,
                "||social.test^\n@@||help.social.test^\n",
            ),
            (
                "rpz",
                false,
                Some("malware"),
                ListFormat::Rpz,
                "bad.test CNAME .\nlocal.test A 192.0.2.9\n",
            ),
        ];
        for (name, legal, category, format, text) in lists {
            let id = b.add_list(name, *legal, *category).unwrap();
            let report = parse_str(text, *format, name, &mut |o, e| b.add_entry(id, None, o, e));
            b.add_report(id, report);
        }
        let doc = sheepdog_policy::PolicyDocument::from_toml(
            r#"
fallback_group = "unsigned"
[school]
name = "Test Primary"
time_zone = "Europe/London"
[[schedules]]
name = "always"
days = ["all"]
start = "00:00"
end = "23:59"
[local]
deny = ["denied.test"]
allow = ["bingo.test"]
[[groups]]
name = "ks2"
default = "allow"
[groups.categories]
gambling = "block"
games = "warn"
social-networking = "block"
malware = "block"
[[groups.schedule]]
schedule = "always"
category = "games"
action = "monitor"
[[groups.exceptions]]
target = "social.test"
action = "allow"
start = "2020-01-01T00:00:00Z"
end = "2100-01-01T00:00:00Z"
reason = "a lesson"
[[groups]]
name = "staff"
default = "allow"
[groups.categories]
gambling = "monitor"
[[groups]]
name = "unsigned"
default = "block"
"#,
        )
        .unwrap();
        CompiledPolicy::compile(&doc, Arc::new(b.build().unwrap())).unwrap()
    }

    #[test]
    fn the_policy_covers_every_stage() {
        let policy = policy();
        let stage = |group, name| {
            let q = sheepdog_policy::Query {
                group,
                target: Target::Name(name),
                at: Utc::now(),
            };
            policy.verdict(&q).stage
        };
        assert_eq!(stage("ks2", "abuse.invalid"), Stage::Illegal);
        assert_eq!(stage("ks2", "denied.test"), Stage::LocalList);
        assert_eq!(stage("ks2", "social.test"), Stage::Exception);
        assert_eq!(stage("ks2", "games.test"), Stage::Schedule);
        assert_eq!(stage("ks2", "dice.test"), Stage::Category);
        assert_eq!(stage("ks2", "example.test"), Stage::GroupDefault);
    }

    /// A resolver over [`policy`] whose events go to the returned
    /// channel, with cached answers: an address (and its AAAA), a CNAME to
    /// a blocked name, a negative answer with its SOA, and an answer of
    /// three addresses (more than `write_simple` writes).
    fn logging_resolver() -> (Resolver, tokio::sync::mpsc::Receiver<DecisionEvent>) {
        let (sink, events) = EventSink::channel(16);
        let resolver = Resolver::new(
            Arc::new(Engine::new(policy())),
            Arc::new(IdentityResolver::new(sheepdog_events::IdentityMap::new(
                "ks2",
            ))),
            Some(sink),
            ResolverSettings::from_config(&DnsConfig {
                // Both paths send a host with URL rules to the proxy alike.
                url_rules_proxy_ipv4: "192.0.2.80".to_string(),
                ..DnsConfig::default()
            }),
        );
        let record = |name: &str, data: RData| {
            Record::from_rdata(Name::from_ascii(name).unwrap(), 300, data)
        };
        let v4 = |last| RData::A(A(Ipv4Addr::new(192, 0, 2, last)));
        let soa = RData::SOA(hickory_proto::rr::rdata::SOA::new(
            Name::from_ascii("test.").unwrap(),
            Name::from_ascii("admin.test.").unwrap(),
            1,
            60,
            60,
            60,
            60,
        ));
        // Name, type, code, answers, authority.
        type Entry = (
            &'static str,
            RecordType,
            ResponseCode,
            Vec<Record>,
            Vec<Record>,
        );
        let cached: [Entry; 5] = [
            (
                "cached.test",
                RecordType::A,
                ResponseCode::NoError,
                vec![record("CACHED.test.", v4(1))],
                vec![],
            ),
            (
                "cached.test",
                RecordType::AAAA,
                ResponseCode::NoError,
                vec![record(
                    "cached.test.",
                    RData::AAAA(AAAA(Ipv6Addr::LOCALHOST)),
                )],
                vec![],
            ),
            (
                "cname.test",
                RecordType::A,
                ResponseCode::NoError,
                vec![
                    record(
                        "cname.test.",
                        RData::CNAME(CNAME(Name::from_ascii("casino.test.").unwrap())),
                    ),
                    record("casino.test.", v4(2)),
                ],
                vec![],
            ),
            (
                "negative.test",
                RecordType::A,
                ResponseCode::NXDomain,
                vec![],
                vec![record("test.", soa)],
            ),
            (
                "both.test",
                RecordType::A,
                ResponseCode::NoError,
                vec![
                    record("both.test.", v4(3)),
                    record("both.test.", v4(4)),
                    record("both.test.", v4(5)),
                ],
                vec![],
            ),
        ];
        for (name, record_type, response_code, answers, authority) in cached {
            resolver.cache().insert(
                CacheKey {
                    name: name.into(),
                    record_type,
                },
                Arc::new(CachedAnswer {
                    response_code,
                    answers,
                    authority,
                    ttl: 300,
                    stored: Instant::now(),
                    upstream_ms: None,
                }),
            );
        }
        (resolver, events)
    }

    proptest! {
        #[test]
        fn question_names_read_as_hickory_spells_them(
            labels in proptest::collection::vec(
                proptest::collection::vec(
                    proptest::prop_oneof![
                        proptest::sample::select(b"aZ09-_".to_vec()),
                        any::<u8>(),
                    ],
                    1..12,
                ),
                0..5,
            ),
            fqdn in any::<bool>(),
        ) {
            let Ok(mut name) = Name::from_labels(labels) else {
                return Ok(());
            };
            name.set_fqdn(fqdn);
            let mut expected = name.to_lowercase().to_ascii();
            if expected.ends_with('.') {
                expected.pop();
            }
            prop_assert_eq!(question_name(&name).0, expected);
        }

        /// A name read as normal is one `normalize_name` returns
        /// unchanged, so the policy may skip normalising it; and one it
        /// would change (or refuse) is never read as normal.
        #[test]
        fn question_names_read_as_normal_are_normal(
            labels in proptest::collection::vec(
                proptest::prop_oneof![
                    "[a-zA-Z0-9_-]{1,12}",
                    "(xn|XN|Xn)--[a-z0-9-]{0,8}",
                    "[a-z]{1,3}[^.]{0,3}",
                    "[a-z0-9]{60,66}",
                ],
                0..6,
            ),
            fqdn in any::<bool>(),
        ) {
            let Ok(mut name) = Name::from_labels(labels.iter().map(|l| l.as_bytes())) else {
                return Ok(());
            };
            name.set_fqdn(fqdn);
            let (text, normal) = question_name(&name);
            let normalized = sheepdog_lists::normalize_name(&text);
            let unchanged = matches!(&normalized, Ok(std::borrow::Cow::Borrowed(n)) if *n == text);
            if normal {
                prop_assert!(unchanged, "{text:?} read as normal, normalised to {normalized:?}");
            }
        }
    }

    proptest! {
        /// Events record a client address exactly as `Display` writes it.
        #[test]
        fn client_text_is_the_address_as_displayed(v4 in any::<u32>(), v6 in any::<u128>()) {
            let v4 = IpAddr::from(std::net::Ipv4Addr::from(v4));
            let v6 = IpAddr::from(std::net::Ipv6Addr::from(v6));
            prop_assert_eq!(client_text(v4), v4.to_string());
            prop_assert_eq!(client_text(v6), v6.to_string());
        }
    }

    proptest! {
        /// The event fields the resolver builds from a verdict are those
        /// `explain` gives, for every stage and group.
        #[test]
        fn outcome_of_a_verdict_matches_the_explained_decision(
            label in "(|www\\.|a\\.b\\.|HELP\\.|[a-z0-9-]{1,8}\\.)",
            base in proptest::sample::select(vec![
                "abuse.invalid", "casino.test", "dice.test", "bingo.test", "games.test", "social.test",
                "bad.test", "local.test", "denied.test", "example.test", "xn--bcher-kva.test",
                "-bad-.test", "test",
            ]),
            group in proptest::sample::select(vec!["ks2", "staff", "unsigned", "nobody"]),
        ) {
            let policy = policy();
            let name = format!("{label}{base}");
            let q = sheepdog_policy::Query { group, target: Target::Name(&name), at: Utc::now() };
            let verdict = policy.verdict(&q);
            let explained = if verdict.hit.is_none() && verdict.action == Action::Allow {
                // What the resolver recorded for a plain allow before.
                Outcome {
                    action: verdict.action.as_str(),
                    group: verdict.group.and_then(|i| policy.groups().get(i)).map(|g| g.name.clone()),
                    ..Outcome::default()
                }
            } else {
                Outcome::from_decision(&policy.explain(&q, &verdict))
            };
            let full = Outcome::of_verdict(&policy, &q, &verdict);
            prop_assert_eq!(&full, &explained);
            // Without an event sink: the fields the answer needs, the same.
            let resolver = Resolver::new(
                Arc::new(Engine::new(self::policy())),
                Arc::new(IdentityResolver::new(sheepdog_events::IdentityMap::new("ks2"))),
                None,
                ResolverSettings::from_config(&DnsConfig::default()),
            );
            let light = resolver.outcome(&policy, &q, &verdict);
            prop_assert_eq!(
                (light.action, light.category, light.group),
                (full.action, full.category, full.group)
            );
        }

        /// A simple answer written directly is, byte for byte, the one
        /// built as a `Message` and encoded.
        #[test]
        fn written_answers_are_the_encoded_ones(
            id in any::<u16>(),
            recursion_desired in any::<bool>(),
            checking_disabled in any::<bool>(),
            edns in proptest::option::of(512u16..=4096),
            labels in proptest::collection::vec("[a-zA-Z0-9_-]{1,20}", 1..6),
            record_type in proptest::sample::select(vec![
                RecordType::A, RecordType::AAAA, RecordType::HTTPS, RecordType::MX, RecordType::TXT,
            ]),
            response_code in proptest::sample::select(vec![
                ResponseCode::NoError, ResponseCode::NXDomain, ResponseCode::ServFail,
                ResponseCode::Refused, ResponseCode::NotImp, ResponseCode::FormErr,
            ]),
            addresses in any::<bool>(),
            v4 in any::<[u8; 4]>(),
            v6 in any::<[u8; 16]>(),
            ttl in any::<u32>(),
            transport in proptest::sample::select(vec![Transport::Udp, Transport::Tcp]),
            // A cache hit: the record's TTL and the seconds the entry has left.
            cached in proptest::option::of((any::<u32>(), any::<u32>())),
        ) {
            let mut name = Name::from_labels(labels.iter().map(|l| l.as_bytes())).unwrap();
            name.set_fqdn(true);
            let mut request = Message::new();
            request
                .set_id(id)
                .set_recursion_desired(recursion_desired)
                .set_checking_disabled(checking_disabled)
                .add_query(Query::query(name, record_type));
            if let Some(payload) = edns {
                let mut e = Edns::new();
                e.set_max_payload(payload);
                request.set_edns(e);
            }
            let packet = request.to_vec().unwrap();
            let request = Message::from_vec(&packet).unwrap();
            let query = request.queries()[0].clone();
            let answer = if addresses {
                Resolver::addresses(query.query_type(), Ipv4Addr::from(v4), Ipv6Addr::from(v6), ttl)
            } else {
                let mut answer = Answer::code(response_code);
                answer.cached = cached.map(|(record_ttl, remaining)| {
                    // The question's own spelling: hickory's encoder
                    // points to the question only for an owner spelled
                    // the same, where `write_simple` points for any case.
                    let record = Record::from_rdata(
                        query.name().clone(),
                        record_ttl,
                        RData::A(A(Ipv4Addr::from(v4))),
                    );
                    let entry = CachedAnswer {
                        response_code,
                        answers: vec![record],
                        authority: vec![],
                        ttl: record_ttl,
                        stored: Instant::now(),
                        upstream_ms: None,
                    };
                    (Arc::new(entry), remaining)
                });
                answer
            };
            let limit = (transport == Transport::Udp)
                .then(|| edns.map_or(512, |p| p.clamp(512, MAX_UDP_PAYLOAD)));
            let written = write_simple(&Asked::Parsed(&request, &query), &answer, limit).unwrap();
            // The same answer to the request read without hickory (a name
            // with a label that starts with `-` is not read so).
            if let Some(plain) = PlainRequest::read(&packet) {
                let plain = write_simple(&Asked::Plain(&packet, &plain), &answer, limit).unwrap();
                prop_assert_eq!(&plain, &written);
            } else {
                prop_assert!(labels.iter().any(|l| l.starts_with('-')));
            }
            let mut response = reply_to(&request, answer.response_code);
            let (answers, _) = answer.sections(query.name());
            response.insert_answers(answers);
            let encoded = encode(&response, limit).unwrap();
            prop_assert_eq!(written, encoded);
        }

        /// Whatever the plain reader accepts, hickory parses to the same
        /// request, and the answer from the packet's bytes is the one
        /// hickory's path gives, with the same event; a question for the
        /// upstream is left to hickory's path. Queries built from parts,
        /// then some of them mutated, truncated or extended.
        #[test]
        fn plain_requests_are_answered_as_parsed_ones(
            id in any::<u16>(),
            flags in prop_oneof![
                3 => proptest::sample::select(vec![[0x01u8, 0x00], [0x01, 0x20], [0x00, 0x10]]),
                1 => any::<[u8; 2]>(),
            ],
            labels in proptest::sample::select(vec![
                "casino.test", "CASINO.Test", "abuse.invalid", "games.test", "social.test",
                "bad.test", "local.test", "denied.test", "cached.test", "Cached.TEST",
                "cname.test", "negative.test", "both.test", "miss.test", "xn--bcher-kva.test",
                "use-application-dns.net", "mask.icloud.com", "www.google.com",
                "a_b.test", "test", "", "pages.test", "PAGES.test",
            ]),
            // Three or four long labels: near the 255-byte limit, on
            // either side of it.
            long in prop_oneof![
                4 => Just(vec![]),
                1 => proptest::collection::vec("[a-z0-9]{55,63}", 3..=4),
            ],
            record_type in proptest::sample::select(vec![1u16, 28, 5, 16, 65, 255, 252, 41, 0]),
            class in prop_oneof![4 => Just(1u16), 1 => any::<u16>()],
            opt in proptest::option::of((
                any::<u16>(),
                prop_oneof![2 => Just(0u32), 2 => Just(0x8000), 1 => any::<u32>()],
                proptest::collection::vec(
                    (prop_oneof![Just(10u16), Just(8), Just(12), any::<u16>()],
                     proptest::collection::vec(any::<u8>(), 0..6)),
                    0..3,
                ),
            )),
            mutations in prop_oneof![
                3 => Just(vec![]),
                1 => proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..3),
            ],
            cut in prop_oneof![4 => Just(None), 1 => any::<prop::sample::Index>().prop_map(Some)],
            extra in prop_oneof![4 => Just(vec![]), 1 => proptest::collection::vec(any::<u8>(), 1..2)],
            transport in proptest::sample::select(vec![Transport::Udp, Transport::Tcp]),
        ) {
            let mut packet = id.to_be_bytes().to_vec();
            packet.extend_from_slice(&flags);
            packet.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(opt.is_some())]);
            for label in long.iter().map(String::as_str).chain(labels.split('.')).filter(|l| !l.is_empty()) {
                packet.push(u8::try_from(label.len()).unwrap());
                packet.extend_from_slice(label.as_bytes());
            }
            packet.push(0);
            packet.extend_from_slice(&record_type.to_be_bytes());
            packet.extend_from_slice(&class.to_be_bytes());
            if let Some((payload, ttl, options)) = opt {
                packet.extend_from_slice(&[0, 0, 41]);
                packet.extend_from_slice(&payload.to_be_bytes());
                packet.extend_from_slice(&ttl.to_be_bytes());
                let data: Vec<u8> = options
                    .iter()
                    .flat_map(|(code, data)| {
                        let mut option = code.to_be_bytes().to_vec();
                        option.extend_from_slice(&u16::try_from(data.len()).unwrap().to_be_bytes());
                        option.extend_from_slice(data);
                        option
                    })
                    .collect();
                packet.extend_from_slice(&u16::try_from(data.len()).unwrap().to_be_bytes());
                packet.extend_from_slice(&data);
            }
            for (at, byte) in mutations {
                let at = at.index(packet.len());
                packet[at] = byte;
            }
            if let Some(cut) = cut {
                packet.truncate(cut.index(packet.len() + 1));
            }
            packet.extend_from_slice(&extra);

            let Some(plain) = PlainRequest::read(&packet) else {
                return Ok(());
            };
            let request = Message::from_vec(&packet);
            prop_assert!(request.is_ok(), "read {:?}, hickory: {:?}", plain, request);
            let request = request.unwrap();
            prop_assert_eq!(request.message_type(), MessageType::Query);
            prop_assert_eq!(request.op_code(), OpCode::Query);
            let [query] = request.queries() else {
                return Err(TestCaseError::fail("not one question"));
            };
            prop_assert_eq!(query.query_class(), DNSClass::IN);
            prop_assert_eq!(query.query_type(), plain.record_type);
            prop_assert_eq!(question_name(query.name()), (plain.name.clone(), plain.normal));
            prop_assert_eq!(request.id(), plain.id);
            prop_assert_eq!(request.recursion_desired(), plain.recursion_desired);
            prop_assert_eq!(request.checking_disabled(), plain.checking_disabled);
            prop_assert_eq!(request.extensions().as_ref().map(Edns::max_payload), plain.payload.map(|p| p.max(512)));
            let asked = Asked::Plain(&packet, &plain);
            prop_assert_eq!(asked.owner(), query.name().clone());
            prop_assert_eq!(asked.udp_limit(), Asked::Parsed(&request, query).udp_limit());

            let (resolver, mut events) = logging_resolver();
            let client = IpAddr::from([192, 0, 2, 7]);
            let parsed = resolver.answer_parsed(&packet, client, transport);
            let parsed_event = events.try_recv().ok();
            let answered = resolver.answer_plain(&packet, plain, client, transport);
            let plain_event = events.try_recv().ok();
            match (answered, parsed) {
                (Some(reply), Immediate::Reply(expected)) => {
                    prop_assert_eq!(reply, expected);
                    let at = |e: Option<DecisionEvent>| e.map(|e| DecisionEvent { at: chrono::DateTime::UNIX_EPOCH, ..e });
                    prop_assert_eq!(at(plain_event), at(parsed_event));
                }
                (None, Immediate::Upstream(_)) => prop_assert!(plain_event.is_none()),
                (answered, parsed) => {
                    return Err(TestCaseError::fail(format!("plain {answered:?}, parsed {parsed:?}")));
                }
            }
        }

        #[test]
        fn form_error_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = form_error(&bytes);
        }

        #[test]
        fn local_data_never_panics(line in ".{0,40}") {
            let _ = local_data(&[line], &Name::from_ascii("x.test.").unwrap(), RecordType::A, 60);
        }
    }
}
