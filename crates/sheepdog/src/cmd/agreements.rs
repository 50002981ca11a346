//! Acceptable use agreements reaching the network (G2).
//!
//! The identity map places the devices of people who have not signed
//! their current agreement in the `unsigned` filtering group (see
//! `sheepdog_events::identity`). The device registry changes rarely and is
//! re-read every `[dns] identity_refresh_secs`; signatures change all day,
//! so every [`UNSIGNED_REFRESH`] this task reads who is unsigned and, when
//! the set has changed, rebuilds the map at once: a pupil who signs reaches
//! their group's filtering within seconds, as an approved unblock request
//! does (`cmd/requests.rs`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use sheepdog_events::IdentityResolver;
use sheepdog_store::Store;
use tokio::task::JoinHandle;

/// How often the set of unsigned people is read.
pub const UNSIGNED_REFRESH: Duration = Duration::from_secs(15);

/// Keeps `identities` fresh until the task is aborted: a full reload every
/// `every`, and a reload whenever the unsigned set changes, checked every
/// `unsigned_every`.
pub fn spawn_identity_refresh(
    identities: Arc<IdentityResolver>,
    store: Store,
    default_group: String,
    every: Duration,
    unsigned_every: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        // Unknown at first: the map in force may have been built before
        // the latest signature, so the first check rebuilds it.
        let mut last_unsigned: Option<HashSet<i64>> = None;
        let mut full = tokio::time::interval(every);
        full.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        full.tick().await;
        let mut check = tokio::time::interval(unsigned_every);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        check.tick().await;
        loop {
            let reload = tokio::select! {
                _ = full.tick() => true,
                _ = check.tick() => match store.unsigned_people(chrono::Utc::now()).await {
                    Ok(now) if last_unsigned.as_ref() != Some(&now) => {
                        last_unsigned = Some(now);
                        true
                    }
                    Ok(_) => false,
                    Err(error) => {
                        tracing::warn!(%error, "cannot read who has signed their agreement; the identity map in force stays");
                        false
                    }
                },
            };
            if reload {
                if let Err(error) = identities.refresh(&store, &default_group).await {
                    tracing::warn!(%error, "cannot refresh the identity map; keeping the last one");
                }
            }
            // Guests accept all day too; one accepted here is let through
            // at once by the portal, so this catches other processes'.
            if let Some(guests) = identities.guests() {
                if let Err(error) = guests.refresh(&store).await {
                    tracing::warn!(%error, "cannot read guests' acceptances; keeping the last ones");
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::net::IpAddr;

    use sheepdog_events::{IdentityMap, UNSIGNED_GROUP};
    use sheepdog_lists::SnapshotBuilder;
    use sheepdog_policy::{Action, CompiledPolicy, Engine, PolicyDocument, Query, Target};
    use sheepdog_store::governance::agreements::{NewSignature, SignMethod};
    use sheepdog_store::{Actor, DeviceDetails, Ownership};

    use super::*;

    const POLICY: &str = r#"
fallback_group = "unsigned"

[school]
name = "Larkmoor Primary"

[[groups]]
name = "ks2"
default = "allow"

[[groups]]
name = "unsigned"
description = "People who have not signed their agreement: the signing page and essentials only"
default = "block"
allow = ["console.larkmoor.invalid", "ocsp.pki.invalid"]
"#;

    fn allowed(engine: &Engine, group: &str, name: &str) -> bool {
        engine
            .decide(&Query {
                group,
                target: Target::Name(name),
                at: chrono::Utc::now(),
            })
            .action
            == Action::Allow
    }

    /// An unsigned pupil's device is held in the `unsigned` group, which
    /// blocks an ordinary site and reaches the signing page; once the
    /// agreement is signed, the refresher puts the device back in its
    /// group with full access.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unsigned_pupil_is_restricted_until_the_agreement_is_signed() {
        let dir = tempfile::tempdir().unwrap();
        let (store, school, pupil_id) =
            crate::cmd::fixtures::school_with_ks2_pupil(dir.path(), ("Brisa", "Quorbin"), "4K")
                .await;
        let actor = Actor::command_line("test");
        store
            .save_device(
                &actor,
                school,
                DeviceDetails {
                    name: "IPAD-4K-07".to_owned(),
                    mac: None,
                    address: Some("127.0.4.17".to_owned()),
                    owner_id: Some(pupil_id),
                    group_id: None,
                    ownership: Ownership::School,
                },
                "pupil's iPad",
            )
            .await
            .unwrap();
        let doc = PolicyDocument::from_toml(POLICY).unwrap();
        let snapshot = Arc::new(SnapshotBuilder::new().build().unwrap());
        let engine = Engine::new(CompiledPolicy::compile(&doc, snapshot).unwrap());
        let client: IpAddr = "127.0.4.17".parse().unwrap();

        // Before the school publishes agreements nobody is held back.
        let identities = Arc::new(IdentityResolver::new(
            IdentityMap::load(&store, "guest").await.unwrap(),
        ));
        assert_eq!(&*identities.lookup(client).group, "ks2");
        // The registry's device brings its school to every event it causes.
        assert_eq!(identities.lookup(client).school_id, Some(school));
        // A pupil who signs in somewhere brings their own school.
        let signed_in = identities.signed_in("127.0.9.9".parse().unwrap(), pupil_id);
        assert_eq!(signed_in.school_id, Some(school));

        store
            .publish_default_agreements(&actor, school)
            .await
            .unwrap();
        let refresher = spawn_identity_refresh(
            identities.clone(),
            store.clone(),
            "guest".to_owned(),
            Duration::from_secs(3600),
            Duration::from_millis(50),
        );
        let group = wait_for(&identities, client, UNSIGNED_GROUP).await;
        assert!(!allowed(&engine, &group, "www.encyclopedia.invalid"));
        assert!(allowed(&engine, &group, "console.larkmoor.invalid"));

        store
            .sign_agreement(
                &actor,
                school,
                &NewSignature {
                    person_id: pupil_id,
                    signer_person_id: None,
                    signer_name: String::new(),
                    method: SignMethod::Online,
                    scan: None,
                    address: Some(client.to_string()),
                },
            )
            .await
            .unwrap();
        let group = wait_for(&identities, client, "ks2").await;
        assert!(allowed(&engine, &group, "www.encyclopedia.invalid"));
        refresher.abort();
    }

    /// Waits (a bounded number of refresh periods) for the client's group.
    async fn wait_for(identities: &IdentityResolver, client: IpAddr, group: &str) -> String {
        for _ in 0..200 {
            let now = identities.lookup(client).group.to_string();
            if now == group {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "the client stayed in {} rather than {group}",
            identities.lookup(client).group
        );
    }
}
