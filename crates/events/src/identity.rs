//! Who is behind a client address.
//!
//! The identity map is built from the store's device registry: each device
//! with an address (`10.0.4.17`) or a range (`10.0.4.0/24`) names a device,
//! perhaps its owner, and a policy group — the `filtering_profile` of the
//! device's group, or else of a group its owner belongs to. A lookup takes
//! the longest matching prefix, so a registered laptop inside a year-group
//! subnet is still that laptop. Addresses no device covers fall into the
//! configured default group (a guest or BYOD profile, F12).
//!
//! A device whose owner must sign an acceptable use agreement and has not
//! (G2: none signed, an older version, or more than a year ago) is placed
//! in the [`UNSIGNED_GROUP`] instead, whose policy reaches only the signing
//! page and essentials. A school that has published no agreement for a
//! person's audience holds nobody back.
//!
//! The map lives in memory behind an [`ArcSwap`]: a lookup is a few atomic
//! operations and a hash probe, never a database query, and a refresh builds
//! a whole new map off the hot path and swaps it in.
//!
//! Sign-ins at the proxy are remembered per client address for a while
//! (`[dns] sign_in_secs`, renewed by each request through the proxy), so
//! the DNS queries of a shared computer are that person's too, in their
//! group. They live in a second swapped table, not in the map, so that a
//! refresh of the device registry keeps them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use ipnet::IpNet;
use sheepdog_store::Store;

use crate::EventError;

/// The policy group of devices whose owner has not signed their
/// acceptable use agreement.
pub const UNSIGNED_GROUP: &str = "unsigned";

/// Who a client is, as far as sheepdog knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub device_id: Option<i64>,
    pub device_name: Option<Arc<str>>,
    pub person_id: Option<i64>,
    /// The policy group whose rules apply.
    pub group: Arc<str>,
    /// The school the device or person belongs to, so that a school's own
    /// staff in a trust see their school's log and no other's. `None` for
    /// clients nobody registered.
    pub school_id: Option<i64>,
}

/// Client addresses and ranges to identities.
#[derive(Debug, Clone)]
pub struct IdentityMap {
    /// Single addresses (/32 and /128), the common case, found by hash.
    exact: HashMap<IpAddr, Arc<Identity>>,
    /// Ranges, longest prefix first, so the first match is the best.
    ranges: Vec<(IpNet, Arc<Identity>)>,
    default: Arc<Identity>,
    /// Each person's filtering group and school, for identities that come
    /// from a sign-in (proxy authentication) rather than an address.
    people: HashMap<i64, (Arc<str>, i64)>,
}

impl IdentityMap {
    /// A map that knows nobody: every client is in `default_group`.
    pub fn new(default_group: &str) -> Self {
        Self {
            exact: HashMap::new(),
            ranges: Vec::new(),
            default: Arc::new(Identity {
                device_id: None,
                device_name: None,
                person_id: None,
                group: Arc::from(default_group),
                school_id: None,
            }),
            people: HashMap::new(),
        }
    }

    /// Records a person's filtering group (from their group membership)
    /// and school.
    pub fn insert_person(&mut self, person_id: i64, group: Arc<str>, school_id: i64) {
        self.people.insert(person_id, (group, school_id));
    }

    /// The identity of `person_id` signed in from `client`: the device the
    /// address belongs to, if any, with the person and their group (the
    /// default group when they are in none with a filtering profile).
    pub fn signed_in(&self, client: IpAddr, person_id: i64) -> Identity {
        let device = self.lookup(client);
        let person = self.people.get(&person_id);
        Identity {
            device_id: device.device_id,
            device_name: device.device_name.clone(),
            person_id: Some(person_id),
            group: person.map_or_else(|| self.default.group.clone(), |(group, _)| group.clone()),
            school_id: person.map(|&(_, school)| school).or(device.school_id),
        }
    }

    /// Adds an address or range. On two entries for exactly the same range
    /// the first one added stays.
    pub fn insert(&mut self, net: IpNet, identity: Identity) {
        let net = net.trunc();
        let identity = Arc::new(identity);
        if net.prefix_len() == net.max_prefix_len() {
            self.exact.entry(net.addr()).or_insert(identity);
        } else if !self.ranges.iter().any(|(n, _)| *n == net) {
            let at = self
                .ranges
                .partition_point(|(n, _)| n.prefix_len() >= net.prefix_len());
            self.ranges.insert(at, (net, identity));
        }
    }

    /// The identity of a client: the longest matching prefix, else the
    /// default group. IPv4 clients reaching an IPv6 socket as `::ffff:a.b.c.d`
    /// are looked up as IPv4.
    pub fn lookup(&self, client: IpAddr) -> &Arc<Identity> {
        let client = unmapped(client);
        if let Some(found) = self.exact.get(&client) {
            return found;
        }
        self.ranges
            .iter()
            .find(|(net, _)| net.contains(&client))
            .map_or(&self.default, |(_, identity)| identity)
    }

    /// Whether a device is registered with exactly this address.
    pub fn registered(&self, client: IpAddr) -> bool {
        let client = match client {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        self.exact.contains_key(&client)
    }

    /// How many addresses and ranges the map holds.
    pub fn len(&self) -> usize {
        self.exact.len() + self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Builds the map from every school's device registry.
    pub async fn load(store: &Store, default_group: &str) -> Result<Self, EventError> {
        let mut map = Self::new(default_group);
        let unsigned = store.unsigned_people(chrono::Utc::now()).await?;
        let unsigned_group: Arc<str> = Arc::from(UNSIGNED_GROUP);
        for school in store.schools().await? {
            let groups = store.groups(school.id).await?;
            let mut profile_of_group: HashMap<i64, Arc<str>> = HashMap::new();
            let mut profile_of_person: HashMap<i64, Arc<str>> = HashMap::new();
            for group in &groups {
                let Some(profile) = group.filtering_profile.as_deref() else {
                    continue;
                };
                let profile: Arc<str> = Arc::from(profile);
                profile_of_group.insert(group.id, profile.clone());
                for person in store.group_members(group.id).await? {
                    profile_of_person
                        .entry(person)
                        .or_insert_with(|| profile.clone());
                }
            }
            for (person, profile) in &profile_of_person {
                map.insert_person(*person, profile.clone(), school.id);
            }
            for device in store.devices(school.id).await? {
                let details = &device.details;
                let Some(address) = details.address.as_deref() else {
                    continue;
                };
                let net = parse_net(address).ok_or_else(|| EventError::BadAddress {
                    device: details.name.clone(),
                    value: address.to_string(),
                })?;
                let group = if details.owner_id.is_some_and(|p| unsigned.contains(&p)) {
                    unsigned_group.clone()
                } else {
                    details
                        .group_id
                        .and_then(|g| profile_of_group.get(&g))
                        .or_else(|| details.owner_id.and_then(|p| profile_of_person.get(&p)))
                        .cloned()
                        .unwrap_or_else(|| map.default.group.clone())
                };
                map.insert(
                    net,
                    Identity {
                        device_id: Some(device.id),
                        device_name: Some(Arc::from(details.name.as_str())),
                        person_id: details.owner_id,
                        group,
                        school_id: Some(school.id),
                    },
                );
            }
        }
        Ok(map)
    }
}

/// IPv4 clients reaching an IPv6 socket as `::ffff:a.b.c.d`, as IPv4.
fn unmapped(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// An address (`10.0.4.17`, `::1`) or a range (`10.0.4.0/24`).
pub fn parse_net(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

/// The identity map shared by the servers, replaced whole on refresh, and
/// the proxy's recent sign-ins.
#[derive(Debug)]
pub struct IdentityResolver {
    map: ArcSwap<IdentityMap>,
    /// Client address to the person signed in there and when that lapses.
    sign_ins: ArcSwap<HashMap<IpAddr, (i64, Instant)>>,
    /// How long a sign-in lasts; zero: sign-ins are not remembered.
    sign_in_for: Duration,
    /// The guest networks' captive state, when `[guest]` names networks.
    guests: Option<Arc<crate::GuestNetworks>>,
    /// Who continued past a warning page, shared by the proxy (which
    /// records it) and the DNS server (which then answers the site).
    warnings: Option<Arc<crate::Warnings>>,
}

/// Remembered sign-ins at most, to bound memory.
const MAX_SIGN_INS: usize = 100_000;

impl IdentityResolver {
    pub fn new(map: IdentityMap) -> Self {
        Self {
            map: ArcSwap::from_pointee(map),
            sign_ins: ArcSwap::from_pointee(HashMap::new()),
            sign_in_for: Duration::ZERO,
            guests: None,
            warnings: None,
        }
    }

    /// Shares acknowledged warnings between the servers that hold this
    /// resolver (see [`crate::warning`]).
    pub fn with_warnings(mut self, warnings: Arc<crate::Warnings>) -> Self {
        self.warnings = Some(warnings);
        self
    }

    /// The shared acknowledged warnings, when set.
    pub fn warnings(&self) -> Option<&Arc<crate::Warnings>> {
        self.warnings.as_ref()
    }

    /// Remembers proxy sign-ins for `lifetime`, so that lookups of the
    /// client address (DNS's included) give the person signed in there.
    pub fn with_sign_ins(mut self, lifetime: Duration) -> Self {
        self.sign_in_for = lifetime;
        self
    }

    /// Holds guest-network clients captive until they accept the visitor
    /// agreement (see [`crate::guest`]).
    pub fn with_guests(mut self, guests: Arc<crate::GuestNetworks>) -> Self {
        self.guests = Some(guests);
        self
    }

    /// The guest networks, when there are any.
    pub fn guests(&self) -> Option<&Arc<crate::GuestNetworks>> {
        self.guests.as_ref()
    }

    /// The identity of a person signed in from a client (see
    /// [`IdentityMap::signed_in`]), which is remembered for the address.
    pub fn signed_in(&self, client: IpAddr, person_id: i64) -> Identity {
        self.remember_sign_in(client, person_id);
        self.map.load().signed_in(client, person_id)
    }

    /// Records a sign-in. The table is copied on change, so a renewal is
    /// written only once a quarter of the lifetime has passed: a page's
    /// dozens of requests cost one copy, not dozens.
    fn remember_sign_in(&self, client: IpAddr, person_id: i64) {
        if self.sign_in_for.is_zero() {
            return;
        }
        let client = unmapped(client);
        let now = Instant::now();
        let until = now + self.sign_in_for;
        let fresh = |entry: Option<&(i64, Instant)>| {
            entry.is_some_and(|&(person, lapses)| {
                person == person_id && lapses > now + self.sign_in_for * 3 / 4
            })
        };
        if fresh(self.sign_ins.load().get(&client)) {
            return;
        }
        self.sign_ins.rcu(|table| {
            let mut table: HashMap<IpAddr, (i64, Instant)> = table
                .iter()
                .filter(|(_, (_, lapses))| *lapses > now)
                .map(|(address, entry)| (*address, *entry))
                .collect();
            if table.len() >= MAX_SIGN_INS {
                table.clear();
            }
            table.insert(client, (person_id, until));
            table
        });
    }

    /// The identity of a client, without a lock or a query: the person
    /// signed in there through the proxy, else the device registry's.
    pub fn lookup(&self, client: IpAddr) -> Arc<Identity> {
        let map = self.map.load();
        let sign_ins = self.sign_ins.load();
        if !sign_ins.is_empty() {
            if let Some(&(person_id, lapses)) = sign_ins.get(&unmapped(client)) {
                if lapses > Instant::now() {
                    return Arc::new(map.signed_in(client, person_id));
                }
            }
        }
        if let Some(guests) = &self.guests {
            if !map.registered(client) {
                if let Some(guest) = guests.identity(client, chrono::Utc::now()) {
                    return guest;
                }
            }
        }
        map.lookup(client).clone()
    }

    /// Puts a new map in force.
    pub fn replace(&self, map: IdentityMap) {
        self.map.store(Arc::new(map));
    }

    /// Rebuilds the map from the store and swaps it in; on error the old
    /// map stays in force.
    pub async fn refresh(&self, store: &Store, default_group: &str) -> Result<usize, EventError> {
        let map = IdentityMap::load(store, default_group).await?;
        let entries = map.len();
        self.replace(map);
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_signed_in_person_brings_their_group_to_the_device() {
        let mut map = IdentityMap::new("guest");
        map.insert(
            parse_net("10.0.4.17").unwrap_or_else(|| panic!()),
            who("SHARED-PC-3", "ks2"),
        );
        map.insert_person(43, Arc::from("staff"), 2);
        let at_shared_pc = map.signed_in("10.0.4.17".parse().unwrap_or_else(|_| panic!()), 43);
        assert_eq!(&*at_shared_pc.group, "staff");
        // The person's school, not the device's (a trust's shared room).
        assert_eq!(at_shared_pc.school_id, Some(2));
        assert_eq!(at_shared_pc.person_id, Some(43));
        assert_eq!(at_shared_pc.device_name.as_deref(), Some("SHARED-PC-3"));
        // Someone in no filtering group gets the default, not the device's.
        let nobody = map.signed_in("10.0.4.17".parse().unwrap_or_else(|_| panic!()), 99);
        assert_eq!(&*nobody.group, "guest");
        // Whose school is not known: the device's.
        assert_eq!(nobody.school_id, Some(1));
    }

    #[test]
    fn a_proxy_sign_in_is_the_addresses_identity_until_it_lapses() {
        let mut map = IdentityMap::new("guest");
        map.insert_person(43, Arc::from("staff"), 1);
        let pc: IpAddr = "10.0.4.17".parse().unwrap_or_else(|_| panic!());
        let mapped: IpAddr = "::ffff:10.0.4.17".parse().unwrap_or_else(|_| panic!());
        let lasting = IdentityResolver::new(map.clone()).with_sign_ins(Duration::from_secs(600));
        assert_eq!(&*lasting.lookup(pc).group, "guest");
        lasting.signed_in(pc, 43);
        assert_eq!(lasting.lookup(pc).person_id, Some(43));
        assert_eq!(&*lasting.lookup(mapped).group, "staff");
        // A refresh of the registry keeps it.
        lasting.replace(map.clone());
        assert_eq!(&*lasting.lookup(pc).group, "staff");
        // Another address is not signed in.
        let other: IpAddr = "10.0.4.18".parse().unwrap_or_else(|_| panic!());
        assert_eq!(lasting.lookup(other).person_id, None);

        // A lifetime of zero: sign-ins are not remembered at all.
        let forgetful = IdentityResolver::new(map.clone());
        forgetful.signed_in(pc, 43);
        assert_eq!(&*forgetful.lookup(pc).group, "guest");
        // A lapsed sign-in no longer counts.
        let brief = IdentityResolver::new(map).with_sign_ins(Duration::from_millis(1));
        brief.signed_in(pc, 43);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(&*brief.lookup(pc).group, "guest");
    }

    fn who(name: &str, group: &str) -> Identity {
        Identity {
            device_id: Some(1),
            device_name: Some(Arc::from(name)),
            person_id: None,
            group: Arc::from(group),
            school_id: Some(1),
        }
    }

    #[test]
    fn longest_prefix_wins_and_unknown_clients_get_the_default() {
        let mut map = IdentityMap::new("guest");
        map.insert(parse_net("10.0.0.0/8").unwrap(), who("site", "staff"));
        map.insert(parse_net("10.0.4.0/24").unwrap(), who("ks2 room", "ks2"));
        map.insert(parse_net("10.0.4.17").unwrap(), who("laptop", "ks1"));
        let at = |a: &str| map.lookup(a.parse().unwrap()).group.to_string();
        assert_eq!(at("10.0.4.17"), "ks1");
        assert_eq!(at("10.0.4.18"), "ks2");
        assert_eq!(at("10.9.9.9"), "staff");
        assert_eq!(at("192.168.1.1"), "guest");
        assert_eq!(at("::ffff:10.0.4.17"), "ks1");
        assert_eq!(at("2001:db8::1"), "guest");
    }

    proptest! {
        /// Whatever the insertion order, the answer is the longest covering
        /// range.
        #[test]
        fn lookup_is_the_longest_covering_prefix(
            prefixes in proptest::collection::vec(0u8..=32, 1..12),
            addr in any::<u32>(),
        ) {
            let addr = std::net::Ipv4Addr::from(addr);
            let mut map = IdentityMap::new("default");
            for p in &prefixes {
                let net = ipnet::Ipv4Net::new(addr, *p).unwrap().trunc();
                map.insert(IpNet::V4(net), who("d", &format!("g{p}")));
            }
            let longest = prefixes.iter().max().unwrap();
            prop_assert_eq!(
                map.lookup(IpAddr::V4(addr)).group.to_string(),
                format!("g{longest}")
            );
        }

        #[test]
        fn parse_net_never_panics(text in ".{0,40}") {
            let _ = parse_net(&text);
        }
    }
}
