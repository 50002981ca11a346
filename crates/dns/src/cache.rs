//! The shared answer cache.
//!
//! Keyed by (lower-case name, record type); class IN only, since that is all
//! the resolver forwards. An entry keeps the upstream's records and the time
//! it was stored, and is served with its TTL counted down. TTLs are clamped
//! to the configured minimum and maximum; negative answers (NXDOMAIN, and
//! NOERROR without records) are cached for the SOA's negative TTL (RFC 2308
//! §5: the lesser of the SOA record's TTL and its MINIMUM field), at most
//! `negative_ttl_max`. The map is sharded so that concurrent queries rarely
//! contend for one lock, and no lock is held across an await.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, Record, RecordType};

const SHARDS: usize = 32;
/// Negative answers without an SOA are cached this long, at most.
const NEGATIVE_WITHOUT_SOA: u32 = 60;

/// What the cache is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// Lower case, without the trailing dot.
    pub name: Box<str>,
    pub record_type: RecordType,
}

/// An upstream answer as the cache keeps it.
#[derive(Debug, Clone)]
pub struct CachedAnswer {
    pub response_code: ResponseCode,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    /// The TTL it was stored with, after clamping.
    pub ttl: u32,
    pub stored: Instant,
    /// How long the upstream took, for the event of the query that fetched
    /// it; cache hits report none.
    pub upstream_ms: Option<u32>,
}

impl CachedAnswer {
    /// Seconds left at `now`; zero once expired.
    pub fn remaining(&self, now: Instant) -> u32 {
        let age =
            u32::try_from(now.saturating_duration_since(self.stored).as_secs()).unwrap_or(u32::MAX);
        self.ttl.saturating_sub(age)
    }

    /// The records with their TTLs counted down to `remaining`.
    pub fn records_at(records: &[Record], remaining: u32) -> Vec<Record> {
        records
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.set_ttl(r.ttl().min(remaining));
                r
            })
            .collect()
    }

    /// Whether the answer says the name or the data does not exist.
    pub fn is_negative(&self) -> bool {
        self.response_code == ResponseCode::NXDomain
            || (self.response_code == ResponseCode::NoError && self.answers.is_empty())
    }
}

/// TTL clamps.
#[derive(Debug, Clone, Copy)]
pub struct TtlPolicy {
    pub min: u32,
    pub max: u32,
    pub negative_max: u32,
}

impl TtlPolicy {
    /// The TTL an answer is cached (and served) with: `None` when it should
    /// not be cached at all.
    pub fn ttl_for(
        &self,
        response_code: ResponseCode,
        answers: &[Record],
        authority: &[Record],
    ) -> Option<u32> {
        match response_code {
            ResponseCode::NoError if !answers.is_empty() => {
                let lowest = answers.iter().map(Record::ttl).min().unwrap_or(0);
                Some(lowest.clamp(self.min, self.max.max(self.min)))
            }
            ResponseCode::NoError | ResponseCode::NXDomain => {
                let negative = authority
                    .iter()
                    .find_map(|r| match r.data() {
                        RData::SOA(soa) => Some(r.ttl().min(soa.minimum())),
                        _ => None,
                    })
                    .unwrap_or(NEGATIVE_WITHOUT_SOA);
                Some(negative.min(self.negative_max))
            }
            _ => None,
        }
    }
}

/// The shared cache.
#[derive(Debug)]
pub struct Cache {
    shards: Vec<Mutex<HashMap<CacheKey, Arc<CachedAnswer>>>>,
    per_shard: usize,
    pub ttl: TtlPolicy,
}

impl Cache {
    pub fn new(capacity: usize, ttl: TtlPolicy) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            ttl,
        }
    }

    fn shard(&self, key: &CacheKey) -> Option<&Mutex<HashMap<CacheKey, Arc<CachedAnswer>>>> {
        use std::hash::{Hash, Hasher};
        // DefaultHasher::new() has fixed keys, so a key always lands in the
        // same shard; the shard's HashMap keeps its own random keys against
        // collision flooding.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        self.shards.get((hasher.finish() as usize) % SHARDS)
    }

    /// A live entry, if any.
    pub fn get(&self, key: &CacheKey, now: Instant) -> Option<Arc<CachedAnswer>> {
        let shard = self.shard(key)?;
        let mut map = shard.lock().ok()?;
        let entry = map.get(key)?;
        if entry.remaining(now) == 0 {
            map.remove(key);
            return None;
        }
        Some(entry.clone())
    }

    /// Stores an answer; when the shard is full, expired entries go first,
    /// then arbitrary ones.
    pub fn insert(&self, key: CacheKey, answer: Arc<CachedAnswer>) {
        let Some(shard) = self.shard(&key) else {
            return;
        };
        let Ok(mut map) = shard.lock() else {
            return;
        };
        if map.len() >= self.per_shard && !map.contains_key(&key) {
            let now = Instant::now();
            map.retain(|_, v| v.remaining(now) > 0);
            if map.len() >= self.per_shard {
                let victims: Vec<CacheKey> =
                    map.keys().take(self.per_shard / 8 + 1).cloned().collect();
                for victim in victims {
                    map.remove(&victim);
                }
            }
        }
        map.insert(key, answer);
    }

    /// Entries held (including expired ones not yet evicted).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .filter_map(|s| s.lock().ok().map(|m| m.len()))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, SOA};
    use hickory_proto::rr::Name;
    use std::time::Duration;

    /// An entry stored `age` ago.
    fn aged(answer: &CachedAnswer, age: Duration) -> CachedAnswer {
        let mut a = answer.clone();
        a.stored = Instant::now().checked_sub(age).unwrap_or(a.stored);
        a
    }

    fn a(ttl: u32) -> Record {
        Record::from_rdata(
            Name::from_ascii("x.test.").unwrap(),
            ttl,
            RData::A(A::new(192, 0, 2, 1)),
        )
    }

    fn soa(ttl: u32, minimum: u32) -> Record {
        let name = Name::from_ascii("test.").unwrap();
        Record::from_rdata(
            name.clone(),
            ttl,
            RData::SOA(SOA::new(name.clone(), name, 1, 2, 3, 4, minimum)),
        )
    }

    const CLAMPS: TtlPolicy = TtlPolicy {
        min: 30,
        max: 3600,
        negative_max: 300,
    };

    #[test]
    fn ttls_are_clamped_and_negative_ttls_follow_rfc2308() {
        assert_eq!(
            CLAMPS.ttl_for(ResponseCode::NoError, &[a(5), a(100)], &[]),
            Some(30)
        );
        assert_eq!(
            CLAMPS.ttl_for(ResponseCode::NoError, &[a(99_999)], &[]),
            Some(3600)
        );
        assert_eq!(
            CLAMPS.ttl_for(ResponseCode::NXDomain, &[], &[soa(120, 60)]),
            Some(60)
        );
        assert_eq!(
            CLAMPS.ttl_for(ResponseCode::NoError, &[], &[soa(9000, 9000)]),
            Some(300)
        );
        assert_eq!(CLAMPS.ttl_for(ResponseCode::ServFail, &[], &[]), None);
    }

    #[test]
    fn entries_expire_and_count_down() {
        let cache = Cache::new(100, CLAMPS);
        let key = CacheKey {
            name: "x.test".into(),
            record_type: RecordType::A,
        };
        let answer = CachedAnswer {
            response_code: ResponseCode::NoError,
            answers: vec![a(60)],
            authority: vec![],
            ttl: 60,
            stored: Instant::now(),
            upstream_ms: None,
        };
        cache.insert(
            key.clone(),
            Arc::new(aged(&answer, Duration::from_secs(50))),
        );
        let hit = cache.get(&key, Instant::now()).unwrap();
        assert!(hit.remaining(Instant::now()) <= 10);
        assert_eq!(CachedAnswer::records_at(&hit.answers, 10)[0].ttl(), 10);
        cache.insert(
            key.clone(),
            Arc::new(aged(&answer, Duration::from_secs(61))),
        );
        assert!(cache.get(&key, Instant::now()).is_none());
    }

    #[test]
    fn a_full_cache_evicts_rather_than_grows() {
        let cache = Cache::new(64, CLAMPS);
        for i in 0..1000 {
            let key = CacheKey {
                name: format!("n{i}.test").into(),
                record_type: RecordType::A,
            };
            cache.insert(
                key,
                Arc::new(CachedAnswer {
                    response_code: ResponseCode::NoError,
                    answers: vec![],
                    authority: vec![],
                    ttl: 60,
                    stored: Instant::now(),
                    upstream_ms: None,
                }),
            );
        }
        assert!(cache.len() <= 64 + SHARDS, "{}", cache.len());
    }
}
