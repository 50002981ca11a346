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
use sheepdog_config::{BlockAnswer, DnsConfig};
use sheepdog_events::{
    DecisionEvent, EventSink, EventSource, Identity, IdentityResolver, CAPTIVE_GROUP,
};
use sheepdog_lists::RpzAction;
use sheepdog_policy::{Action, CompiledPolicy, Decision, Engine, Target};
use tokio::sync::OnceCell;

use crate::cache::{Cache, CacheKey, CachedAnswer, TtlPolicy};
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

/// Answering settings, from the `[dns]` section.
#[derive(Debug, Clone)]
pub struct ResolverSettings {
    pub block_answer: BlockAnswer,
    pub block_page_v4: Ipv4Addr,
    pub block_page_v6: Ipv6Addr,
    pub block_ttl: u32,
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

/// What the resolver decided to send, before it is encoded.
struct Answer {
    response_code: ResponseCode,
    answers: Vec<Record>,
    authority: Vec<Record>,
    /// Send nothing at all (RPZ `rpz-drop`).
    drop: bool,
}

impl Answer {
    fn code(response_code: ResponseCode) -> Self {
        Self {
            response_code,
            answers: Vec::new(),
            authority: Vec::new(),
            drop: false,
        }
    }
}

/// The event fields a decision fills in.
#[derive(Default)]
struct Outcome {
    action: &'static str,
    illegal: bool,
    category: Option<String>,
    list: Option<String>,
    rule: Option<String>,
    group: Option<String>,
    upstream_ms: Option<u32>,
}

impl Outcome {
    fn from_decision(d: &Decision) -> Self {
        Self {
            action: d.action.as_str(),
            illegal: d.illegal,
            category: d.category.as_deref().map(str::to_string),
            list: d.list.as_deref().map(str::to_string),
            rule: d.rule.clone(),
            group: d.group.as_deref().map(str::to_string),
            upstream_ms: None,
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
        metrics::counter!("sheepdog_dns_queries_total", "transport" => transport.as_str())
            .increment(1);
        let request = match Message::from_vec(packet) {
            Ok(request) => request,
            Err(_) => {
                metrics::counter!("sheepdog_dns_malformed_total").increment(1);
                return form_error(packet);
            }
        };
        if request.message_type() != MessageType::Query {
            return None;
        }
        let refuse = |code| encode(&reply_to(&request, code), None);
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
        let limit = match transport {
            Transport::Tcp => None,
            Transport::Udp => Some(
                request
                    .extensions()
                    .as_ref()
                    .map_or(512, |e| e.max_payload().clamp(512, MAX_UDP_PAYLOAD)),
            ),
        };
        let identity = self.identities.lookup(client);
        let (answer, outcome, name) = self.answer(query, &identity, client).await;
        self.record(client, &identity, name, query.query_type(), outcome);
        if answer.drop {
            return None;
        }
        let mut response = reply_to(&request, answer.response_code);
        response.insert_answers(answer.answers);
        response.insert_name_servers(answer.authority);
        encode(&response, limit)
    }

    /// Decides and answers one question.
    async fn answer(
        &self,
        query: &Query,
        identity: &Identity,
        client: IpAddr,
    ) -> (Answer, Outcome, String) {
        let qname = query.name().to_lowercase();
        let mut name = qname.to_ascii();
        if name.ends_with('.') {
            name.pop();
        }
        let record_type = query.query_type();

        if name == DOH_CANARY {
            metrics::counter!("sheepdog_dns_doh_canary_total").increment(1);
            let outcome = Outcome {
                action: "block",
                category: Some("doh".to_string()),
                rule: Some("Firefox DNS-over-HTTPS canary".to_string()),
                group: Some(identity.group.to_string()),
                ..Outcome::default()
            };
            return (Answer::code(ResponseCode::NXDomain), outcome, name);
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
                category: Some("private_relay".to_string()),
                rule: Some("iCloud Private Relay is not allowed for this group".to_string()),
                group: Some(identity.group.to_string()),
                ..Outcome::default()
            };
            return (Answer::code(ResponseCode::NXDomain), outcome, name);
        }
        // A guest who has not accepted the visitor agreement is sent to
        // the block page's address, where the proxy shows the portal; with
        // no `captive` group in the policy, for every name.
        let captive = &*identity.group == CAPTIVE_GROUP;
        if captive && policy.group(CAPTIVE_GROUP).is_none() {
            let outcome = Outcome {
                action: "block",
                category: Some("captive".to_string()),
                rule: Some("guest has not accepted the visitor agreement".to_string()),
                group: Some(CAPTIVE_GROUP.to_string()),
                ..Outcome::default()
            };
            return (self.captive_answer(query), outcome, name);
        }
        let q = sheepdog_policy::Query {
            group: &identity.group,
            target: Target::Name(&name),
            at: Utc::now(),
        };
        let verdict = policy.verdict(&q);
        // A warning the client continued past on the warning page (the
        // proxy recorded it) no longer blocks the name for that client.
        let heeded = verdict.action == Action::Warn
            && self
                .identities
                .warnings()
                .is_some_and(|w| w.acknowledged(client, &name));
        if blocks(verdict.action) && !heeded {
            let decision = policy.explain(&q, &verdict);
            let answer = if captive {
                self.captive_answer(query)
            } else {
                self.block(&policy, &decision, &name, query)
            };
            return (answer, Outcome::from_decision(&decision), name);
        }
        let mut outcome = if verdict.hit.is_some() || verdict.action != Action::Allow {
            Outcome::from_decision(&policy.explain(&q, &verdict))
        } else {
            Outcome {
                action: verdict.action.as_str(),
                group: verdict
                    .group
                    .and_then(|i| policy.groups().get(i))
                    .map(|g| g.name.to_string()),
                ..Outcome::default()
            }
        };
        if heeded {
            outcome.action = "allow";
            outcome.rule = Some(format!(
                "{} (warning acknowledged)",
                outcome.rule.as_deref().unwrap_or(&name)
            ));
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
                return (Answer::code(ResponseCode::ServFail), outcome, name);
            };
            outcome.action = "rewrite";
            outcome.rule = Some(format!("safe search: {target}"));
            let fetched = self.fetch(target, &target_name, record_type).await;
            let Ok((cached, fresh)) = fetched else {
                return (Answer::code(ResponseCode::ServFail), outcome, name);
            };
            outcome.upstream_ms = cached.upstream_ms.filter(|_| fresh);
            let remaining = cached.remaining(Instant::now());
            let mut answers = vec![Record::from_rdata(
                query.name().clone(),
                remaining.min(300),
                RData::CNAME(CNAME(target_name)),
            )];
            answers.extend(CachedAnswer::records_at(&cached.answers, remaining));
            let answer = Answer {
                response_code: cached.response_code,
                answers,
                authority: CachedAnswer::records_at(&cached.authority, remaining),
                drop: false,
            };
            return (answer, outcome, name);
        }

        let fetched = self.fetch(&name, &qname, record_type).await;
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
                at: q.at,
            };
            let v = policy.verdict(&cq);
            if blocks(v.action) {
                let decision = policy.explain(&cq, &v);
                let answer = self.block(&policy, &decision, &name, query);
                let mut blocked = Outcome::from_decision(&decision);
                blocked.rule = Some(format!(
                    "{} (reached through CNAME {target})",
                    decision.rule.as_deref().unwrap_or(&target)
                ));
                blocked.upstream_ms = outcome.upstream_ms;
                return (answer, blocked, name);
            }
        }

        let remaining = cached.remaining(Instant::now());
        let answer = Answer {
            response_code: cached.response_code,
            answers: CachedAnswer::records_at(&cached.answers, remaining),
            authority: CachedAnswer::records_at(&cached.authority, remaining),
            drop: false,
        };
        (answer, outcome, name)
    }

    /// The cached answer, or the upstream's; identical questions in flight
    /// share one exchange.
    async fn fetch(&self, key_name: &str, name: &Name, record_type: RecordType) -> Fetched {
        let key = CacheKey {
            name: key_name.into(),
            record_type,
        };
        if let Some(hit) = self.cache.get(&key, Instant::now()) {
            metrics::counter!("sheepdog_dns_cache_hits_total").increment(1);
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
            if map.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                map.remove(&key);
            }
        }
        result.map(|answer| (answer, leader))
    }

    /// The block answer for a decision.
    fn block(
        &self,
        policy: &CompiledPolicy,
        decision: &Decision,
        name: &str,
        query: &Query,
    ) -> Answer {
        let category = decision
            .category
            .as_deref()
            .unwrap_or("uncategorised")
            .to_string();
        metrics::counter!("sheepdog_dns_blocked_total", "category" => category).increment(1);
        let mode = match decision.rpz {
            Some(RpzAction::NxDomain) => BlockAnswer::Nxdomain,
            Some(RpzAction::NoData) => BlockAnswer::Nodata,
            Some(RpzAction::Drop) => {
                let mut answer = Answer::code(ResponseCode::NoError);
                answer.drop = true;
                return answer;
            }
            Some(RpzAction::LocalData) => {
                if let Some(data) = policy.snapshot().local_data(name) {
                    let answers = local_data(data, query, self.settings.block_ttl);
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
        Self::addresses(query, v4, v6, self.settings.block_ttl)
    }

    /// A captive guest's answer: the block page's addresses whatever
    /// `block_answer` says, so the browser lands on the portal; a TTL of
    /// one second, so the real address follows soon after accepting.
    fn captive_answer(&self, query: &Query) -> Answer {
        metrics::counter!("sheepdog_dns_captive_total").increment(1);
        Self::addresses(
            query,
            self.settings.block_page_v4,
            self.settings.block_page_v6,
            1,
        )
    }

    /// An answer of `v4` for A and `v6` for AAAA (nothing for other types).
    fn addresses(query: &Query, v4: Ipv4Addr, v6: Ipv6Addr, ttl: u32) -> Answer {
        let owner = query.name().clone();
        let mut answer = Answer::code(ResponseCode::NoError);
        match query.query_type() {
            RecordType::A => answer
                .answers
                .push(Record::from_rdata(owner, ttl, RData::A(A(v4)))),
            RecordType::AAAA => {
                answer
                    .answers
                    .push(Record::from_rdata(owner, ttl, RData::AAAA(AAAA(v6))))
            }
            _ => {}
        }
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
            at: Utc::now(),
            source: EventSource::Dns,
            client: client.to_string(),
            device_id: identity.device_id,
            device_name: identity.device_name.as_deref().map(str::to_string),
            person_id: identity.person_id,
            group: outcome.group.or_else(|| Some(identity.group.to_string())),
            target: name,
            query_type: Some(record_type.to_string()),
            action: outcome.action.to_string(),
            illegal: outcome.illegal,
            category: outcome.category,
            list: outcome.list,
            rule: outcome.rule,
            upstream_ms: outcome.upstream_ms,
            search_term: None,
        });
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
fn local_data(data: &[String], query: &Query, ttl: u32) -> Vec<Record> {
    let owner = query.name().clone();
    data.iter()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let kind = parts.next()?.to_ascii_uppercase();
            let value = parts.next()?;
            let rdata = match (kind.as_str(), query.query_type()) {
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

    proptest! {
        #[test]
        fn form_error_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = form_error(&bytes);
        }

        #[test]
        fn local_data_never_panics(line in ".{0,40}") {
            let query = Query::query(Name::from_ascii("x.test.").unwrap(), RecordType::A);
            let _ = local_data(&[line], &query, 60);
        }
    }
}
