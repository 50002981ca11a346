//! The guest network's captive state (M4).
//!
//! An address on a guest network (`[guest] networks`) that has not
//! accepted the visitor agreement on the captive portal is placed in the
//! built-in [`CAPTIVE_GROUP`]: the DNS server answers its other names with
//! the block page's address and the proxy answers its web requests with the
//! portal, so the guest sees the agreement and the notice that use is
//! filtered and monitored before anything else. Once it accepts, the
//! address is in the configured guest group until the acceptance lapses;
//! the lapse is checked at every lookup, so it needs no refresh.
//!
//! A device registered with its own single address keeps its identity even
//! inside a guest network (a school laptop on the guest wireless); ranges
//! registered over the guest network do not, since guests are the point of
//! that network.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use ipnet::IpNet;
use sheepdog_store::Store;

use crate::{EventError, Identity};

/// The policy group of guest-network addresses that have not accepted the
/// visitor agreement: the policy's group of that name should allow only
/// essentials (the portal itself is served by sheepdog whatever it says).
pub const CAPTIVE_GROUP: &str = "captive";

/// The guest networks and who on them has accepted.
#[derive(Debug)]
pub struct GuestNetworks {
    networks: Vec<IpNet>,
    captive: Arc<Identity>,
    guest: Arc<Identity>,
    accepted: ArcSwap<HashMap<IpAddr, DateTime<Utc>>>,
}

fn unmapped(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn nobody_in(group: &str) -> Arc<Identity> {
    Arc::new(Identity {
        device_id: None,
        device_name: None,
        person_id: None,
        group: Arc::from(group),
        school_id: None,
    })
}

impl GuestNetworks {
    /// Guest networks whose addresses join `group` once they accept.
    pub fn new(networks: Vec<IpNet>, group: &str) -> Self {
        Self {
            networks: networks.into_iter().map(|n| n.trunc()).collect(),
            captive: nobody_in(CAPTIVE_GROUP),
            guest: nobody_in(group),
            accepted: ArcSwap::from_pointee(HashMap::new()),
        }
    }

    /// Whether `client` is on a guest network.
    pub fn covers(&self, client: IpAddr) -> bool {
        let client = unmapped(client);
        self.networks.iter().any(|n| n.contains(&client))
    }

    /// The group guests join on accepting.
    pub fn group(&self) -> &str {
        &self.guest.group
    }

    /// The identity of a guest-network client at `now`: captive until it
    /// has accepted, then a guest. `None` for a client on no guest network.
    pub fn identity(&self, client: IpAddr, now: DateTime<Utc>) -> Option<Arc<Identity>> {
        let client = unmapped(client);
        if !self.networks.iter().any(|n| n.contains(&client)) {
            return None;
        }
        let accepted = self
            .accepted
            .load()
            .get(&client)
            .is_some_and(|until| *until > now);
        Some(if accepted {
            self.guest.clone()
        } else {
            self.captive.clone()
        })
    }

    /// Lets `client` through until `until`, at once (the portal calls this
    /// after the acceptance is stored).
    pub fn admit(&self, client: IpAddr, until: DateTime<Utc>) {
        let client = unmapped(client);
        self.accepted.rcu(|current| {
            let mut next = HashMap::clone(current);
            let entry = next.entry(client).or_insert(until);
            *entry = (*entry).max(until);
            next
        });
    }

    /// Replaces who has accepted with the store's current acceptances, so
    /// one accepted through another sheepdog process counts here too.
    pub async fn refresh(&self, store: &Store) -> Result<usize, EventError> {
        let now = Utc::now();
        let current: HashMap<IpAddr, DateTime<Utc>> = store
            .current_guest_acceptances(now)
            .await?
            .into_iter()
            .map(|(address, until)| (unmapped(address), until))
            .collect();
        let count = current.len();
        self.accepted.store(Arc::new(current));
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn guests_are_captive_until_they_accept_and_again_after_it_lapses() {
        let guests = GuestNetworks::new(vec!["10.9.0.0/16".parse().unwrap()], "guest");
        let now = Utc::now();
        let guest: IpAddr = "10.9.3.4".parse().unwrap();
        assert_eq!(&*guests.identity(guest, now).unwrap().group, CAPTIVE_GROUP);
        assert!(guests.identity("10.8.0.1".parse().unwrap(), now).is_none());
        guests.admit(guest, now + chrono::Duration::hours(12));
        assert_eq!(&*guests.identity(guest, now).unwrap().group, "guest");
        let mapped: IpAddr = "::ffff:10.9.3.4".parse().unwrap();
        assert_eq!(&*guests.identity(mapped, now).unwrap().group, "guest");
        let later = now + chrono::Duration::hours(13);
        assert_eq!(
            &*guests.identity(guest, later).unwrap().group,
            CAPTIVE_GROUP
        );
    }
}
