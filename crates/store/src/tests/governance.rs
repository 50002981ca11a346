//! Governance records: agreements, image consent, training, the policy
//! register and review, and the asset register.

use chrono::{Duration, NaiveDate, Utc};

use super::{admin, postgres, roster, school, sqlite};
use crate::governance::agreements::*;
use crate::governance::assets::*;
use crate::governance::consent::*;
use crate::governance::policies::*;
use crate::governance::training::*;
use crate::governance::{FileOwner, NewFile};
use crate::*;
use sqlx::Row;

on_both!(
    agreements_are_versioned_renewed_and_covered,
    image_consent_is_per_purpose_and_withdrawable,
    training_is_overdue_by_role_and_expiry,
    policies_fall_due_and_reviews_export,
    assets_are_returned_and_disposed_with_certificates,
    guests_accept_the_visitor_agreement_for_a_while,
    consent_purposes_are_added_renamed_and_retired
);

/// One evidence key for every file a test keeps.
fn file_key() -> crate::incidents::EvidenceKey {
    crate::incidents::EvidenceKey::from_bytes(&[7u8; 32]).unwrap()
}

fn day(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
}

struct Cast {
    school: i64,
    brisa: i64,
    coren: i64,
    staff: i64,
    parent: i64,
}

async fn cast(store: &Store) -> Cast {
    let school = school(store).await.id;
    store
        .import_people(&admin(), school, &roster(), false)
        .await
        .unwrap();
    let people = store.people(school, None).await.unwrap();
    let find = |given: &str, kind: PersonKind| {
        people
            .iter()
            .find(|p| p.details.given_name == given && p.details.kind == kind)
            .unwrap()
            .id
    };
    Cast {
        school,
        brisa: find("Brisa", PersonKind::Pupil),
        coren: find("Coren", PersonKind::Pupil),
        staff: find("Talmer", PersonKind::Staff),
        parent: find("Talmer", PersonKind::Parent),
    }
}

fn online(person_id: i64) -> NewSignature {
    NewSignature {
        person_id,
        signer_person_id: None,
        signer_name: String::new(),
        method: SignMethod::Online,
        scan: None,
        address: Some("10.0.4.17".to_owned()),
    }
}

async fn agreements_are_versioned_renewed_and_covered(store: Store) {
    let c = cast(&store).await;
    let now = Utc::now();
    // Nothing published: nobody is held back.
    assert!(store.unsigned_people(now).await.unwrap().is_empty());
    assert!(matches!(
        store
            .sign_agreement(&admin(), c.school, &online(c.brisa))
            .await,
        Err(StoreError::Invalid {
            field: "agreement",
            ..
        })
    ));

    let published = store
        .publish_default_agreements(&admin(), c.school)
        .await
        .unwrap();
    assert_eq!(published.len(), Audience::ALL.len());
    assert_eq!(
        published
            .iter()
            .find(|t| t.audience == Audience::YoungPupils)
            .unwrap()
            .title,
        "Our rules for using computers and tablets"
    );
    // Publishing the defaults again adds nothing.
    assert!(store
        .publish_default_agreements(&admin(), c.school)
        .await
        .unwrap()
        .is_empty());
    let unsigned = store.unsigned_people(now).await.unwrap();
    for id in [c.brisa, c.coren, c.staff, c.parent] {
        assert!(unsigned.contains(&id), "{id} should need to sign");
    }

    // A parent signs for their own child; not for another's.
    let by_parent = NewSignature {
        signer_person_id: Some(c.parent),
        ..online(c.brisa)
    };
    let signed = store
        .sign_agreement(&admin(), c.school, &by_parent)
        .await
        .unwrap();
    assert_eq!(signed.audience, Audience::OlderPupils);
    assert_eq!(signed.signer_name, "Talmer Vesk");
    assert!(matches!(
        store
            .sign_agreement(
                &admin(),
                c.school,
                &NewSignature {
                    signer_person_id: Some(c.parent),
                    ..online(c.coren)
                }
            )
            .await,
        Err(StoreError::Invalid {
            field: "signer",
            ..
        })
    ));
    // The office records a paper form with its scan.
    let paper = NewSignature {
        method: SignMethod::Paper,
        scan: Some(NewFile {
            name: "aup-staff.pdf".to_owned(),
            media_type: "application/pdf".to_owned(),
            content: b"%PDF-1.4 signed form".to_vec(),
            key: file_key(),
        }),
        address: None,
        ..online(c.staff)
    };
    let staff_signed = store
        .sign_agreement(&admin(), c.school, &paper)
        .await
        .unwrap();
    let scan = staff_signed.scan.unwrap();
    let (_, bytes) = store
        .open_governance_file(&admin(), c.school, scan.id, &file_key())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bytes, b"%PDF-1.4 signed form");
    assert_eq!(
        store
            .governance_file_owner(c.school, scan.id)
            .await
            .unwrap(),
        Some(FileOwner::AgreementScan)
    );
    // Sealed at rest: the database holds no plain copy, another key cannot
    // open it, and another school does not see it.
    let stored: Vec<u8> = sqlx::query("SELECT content FROM governance_files WHERE id = $1")
        .bind(scan.id)
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get("content");
    assert!(!stored
        .windows(b"signed form".len())
        .any(|w| w == b"signed form"));
    let other = crate::incidents::EvidenceKey::generate().unwrap();
    assert!(matches!(
        store
            .open_governance_file(&admin(), c.school, scan.id, &other)
            .await,
        Err(StoreError::Corrupt { .. })
    ));
    assert!(store
        .open_governance_file(&admin(), c.school + 1, scan.id, &file_key())
        .await
        .unwrap()
        .is_none());
    let downloads = sqlx::query(
        "SELECT COUNT(*) AS n FROM audit_log WHERE entity = 'governance_file' \
         AND action = 'download' AND entity_id = $1",
    )
    .bind(scan.id.to_string())
    .fetch_one(store.pool())
    .await
    .unwrap()
    .get::<i64, _>("n");
    assert_eq!(downloads, 1);

    let unsigned = store.unsigned_people(now).await.unwrap();
    assert!(!unsigned.contains(&c.brisa));
    assert!(!unsigned.contains(&c.staff));
    assert!(unsigned.contains(&c.coren));

    let coverage = store.agreement_coverage(c.school, now).await.unwrap();
    let row = |label: &str| coverage.iter().find(|r| r.label == label).unwrap().clone();
    assert_eq!((row("Class 4K").current, row("Class 4K").needing), (1, 0));
    assert_eq!(
        (row("Class Acorns").current, row("Class Acorns").needing),
        (0, 1)
    );
    assert_eq!(row("Role dsl").current, 1);
    assert_eq!(row("Parents").needing, 1);

    // A year on, signatures lapse.
    let later = store
        .unsigned_people(now + Duration::days(RENEWAL_DAYS + 1))
        .await
        .unwrap();
    assert!(later.contains(&c.brisa) && later.contains(&c.staff));

    // A new version for older pupils asks Brisa again, and only her.
    let v2 = store
        .publish_agreement(
            &admin(),
            c.school,
            Audience::OlderPupils,
            "# Version two\n\nRules.",
        )
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    let statuses = store.agreement_statuses(Some(c.school), now).await.unwrap();
    let state = |id: i64| {
        statuses
            .iter()
            .find(|s| s.person_id == id)
            .unwrap()
            .state
            .clone()
    };
    assert_eq!(
        state(c.brisa),
        AgreementState::Outdated { signed_version: 1 }
    );
    assert!(matches!(
        state(c.staff),
        AgreementState::Current { version: 1, .. }
    ));
    store
        .sign_agreement(&admin(), c.school, &online(c.brisa))
        .await
        .unwrap();
    assert!(!store.unsigned_people(now).await.unwrap().contains(&c.brisa));
    assert_eq!(store.signatures(c.brisa).await.unwrap().len(), 2);

    let audit = store
        .audit_search(&AuditFilter {
            entity: Some("agreement_signature".to_owned()),
            limit: 10,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(audit.len(), 3);
    assert!(store.verify_audit().await.unwrap().is_intact());
}

async fn image_consent_is_per_purpose_and_withdrawable(store: Store) {
    let c = cast(&store).await;
    let today = day("2026-11-23");
    let purposes = store.consent_purposes(c.school).await.unwrap();
    assert_eq!(purposes.len(), DEFAULT_PURPOSES.len());
    let answer = |pupil_id, purpose: &str, granted| NewConsent {
        pupil_id,
        purpose: purpose.to_owned(),
        granted,
        given_by_person_id: None,
        given_by_name: "Form returned by carer".to_owned(),
        given_on: day("2026-09-05"),
        expires_on: Some(day("2027-09-05")),
    };
    let by_parent = NewConsent {
        given_by_person_id: Some(c.parent),
        given_by_name: String::new(),
        ..answer(c.brisa, "website", true)
    };
    let given = store
        .record_consent(&admin(), c.school, &by_parent)
        .await
        .unwrap();
    assert_eq!(given.given_by_name, "Talmer Vesk");
    assert!(matches!(
        store
            .record_consent(&admin(), c.school, &answer(c.brisa, "billboards", true))
            .await,
        Err(StoreError::Invalid {
            field: "purpose",
            ..
        })
    ));
    assert!(matches!(
        store
            .record_consent(&admin(), c.school, &answer(c.staff, "website", true))
            .await,
        Err(StoreError::Invalid { field: "pupil", .. })
    ));
    store
        .record_consent(&admin(), c.school, &answer(c.coren, "website", false))
        .await
        .unwrap();

    let appear = store
        .who_may_appear(c.school, None, "website", today)
        .await
        .unwrap();
    let state =
        |list: &[Appearance], id: i64| list.iter().find(|a| a.pupil_id == id).unwrap().state;
    assert_eq!(state(&appear, c.brisa), ConsentState::Granted);
    assert_eq!(state(&appear, c.coren), ConsentState::Refused);
    let press = store
        .who_may_appear(c.school, Some("4K"), "local_press", today)
        .await
        .unwrap();
    assert_eq!(press.len(), 1);
    assert_eq!(state(&press, c.brisa), ConsentState::NoAnswer);
    // Past its review date, consent no longer counts.
    let late = store
        .who_may_appear(c.school, None, "website", day("2027-09-06"))
        .await
        .unwrap();
    assert_eq!(state(&late, c.brisa), ConsentState::Expired);

    let withdrawn = store
        .withdraw_consent(
            &admin(),
            c.school,
            c.brisa,
            "website",
            Some("Phone call from carer"),
        )
        .await
        .unwrap();
    assert!(withdrawn.withdrawn_at.is_some());
    let appear = store
        .who_may_appear(c.school, None, "website", today)
        .await
        .unwrap();
    assert_eq!(state(&appear, c.brisa), ConsentState::Withdrawn);
    assert!(matches!(
        store
            .withdraw_consent(&admin(), c.school, c.brisa, "website", None)
            .await,
        Err(StoreError::Invalid { .. })
    ));

    // The school's own list replaces the shipped one; what leaves it is
    // retired, not deleted.
    store
        .set_consent_purposes(
            &admin(),
            c.school,
            &[ConsentPurpose {
                key: "website".to_owned(),
                title: "Our website".to_owned(),
            }],
        )
        .await
        .unwrap();
    assert_eq!(store.consent_purposes(c.school).await.unwrap().len(), 1);
    assert_eq!(
        store.kept_consent_purposes(c.school).await.unwrap().len(),
        DEFAULT_PURPOSES.len()
    );
    assert!(store
        .record_consent(&admin(), c.school, &answer(c.brisa, "social_media", true))
        .await
        .is_err());
    assert!(store.verify_audit().await.unwrap().is_intact());
}

async fn training_is_overdue_by_role_and_expiry(store: Store) {
    let c = cast(&store).await;
    let today = day("2026-11-23");
    // The DSL (also a teacher) has nothing on record: three things owed.
    let owed = store.overdue_training(Some(c.school), today).await.unwrap();
    let kinds: Vec<TrainingKind> = owed.iter().map(|o| o.kind).collect();
    assert_eq!(
        kinds,
        vec![
            TrainingKind::Induction,
            TrainingKind::OnlineSafetyUpdate,
            TrainingKind::DslRefresher
        ]
    );
    assert!(owed.iter().all(|o| o.person_id == c.staff));

    let course = |kind, completed: &str| NewTraining {
        person_id: c.staff,
        kind,
        completed_on: day(completed),
        provider: "Local authority".to_owned(),
        evidence: None,
        expires_on: None,
    };
    store
        .record_training(
            &admin(),
            c.school,
            &course(TrainingKind::Induction, "2024-09-02"),
        )
        .await
        .unwrap();
    let update = store
        .record_training(
            &admin(),
            c.school,
            &NewTraining {
                evidence: Some(NewFile {
                    name: "certificate.pdf".to_owned(),
                    media_type: "application/pdf".to_owned(),
                    content: b"%PDF certificate".to_vec(),
                    key: file_key(),
                }),
                ..course(TrainingKind::OnlineSafetyUpdate, "2025-09-01")
            },
        )
        .await
        .unwrap();
    // The yearly update lasts a year unless told otherwise.
    assert_eq!(update.expires_on, Some(day("2026-09-01")));
    assert!(update.evidence_file_id.is_some());
    store
        .record_training(
            &admin(),
            c.school,
            &course(TrainingKind::DslRefresher, "2025-06-01"),
        )
        .await
        .unwrap();
    let owed = store.overdue_training(Some(c.school), today).await.unwrap();
    assert_eq!(owed.len(), 1);
    assert_eq!(owed[0].kind, TrainingKind::OnlineSafetyUpdate);
    assert_eq!(owed[0].expired_on, Some(day("2026-09-01")));
    assert!(owed[0].describe().contains("expired 2026-09-01"));

    // A newer update clears it.
    store
        .record_training(
            &admin(),
            c.school,
            &course(TrainingKind::OnlineSafetyUpdate, "2026-09-03"),
        )
        .await
        .unwrap();
    assert!(store
        .overdue_training(Some(c.school), today)
        .await
        .unwrap()
        .is_empty());
    assert!(matches!(
        store
            .record_training(
                &admin(),
                c.school,
                &NewTraining {
                    expires_on: Some(day("2020-01-01")),
                    ..course(TrainingKind::Prevent, "2026-01-01")
                }
            )
            .await,
        Err(StoreError::Invalid {
            field: "expiry",
            ..
        })
    ));
    assert_eq!(
        store
            .training_records(c.school, Some(c.staff))
            .await
            .unwrap()
            .len(),
        4
    );
}

async fn policies_fall_due_and_reviews_export(store: Store) {
    let c = cast(&store).await;
    let entry = |title: &str, next: &str| PolicyEntry {
        title: title.to_owned(),
        owner: "DSL".to_owned(),
        approver: "Full governing body".to_owned(),
        written_on: day("2024-09-01"),
        last_reviewed_on: Some(day("2025-09-01")),
        next_review_on: day(next),
        notes: None,
    };
    store
        .save_policy(&admin(), c.school, &entry("Online safety", "2026-09-01"))
        .await
        .unwrap();
    store
        .save_policy(&admin(), c.school, &entry("Data protection", "2027-03-01"))
        .await
        .unwrap();
    let due = store
        .policies_due(Some(c.school), day("2026-11-23"))
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].title, "Online safety");
    // Saving by the same title updates it.
    store
        .save_policy(&admin(), c.school, &entry("Online safety", "2027-09-01"))
        .await
        .unwrap();
    assert!(store
        .policies_due(Some(c.school), day("2026-11-23"))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.policies(c.school).await.unwrap().len(), 2);

    let mut review = NewReview {
        held_on: day("2026-10-01"),
        participants: vec![
            Participant {
                role: "SLT".to_owned(),
                name: "Deputy head".to_owned(),
            },
            Participant {
                role: "DSL".to_owned(),
                name: "Talmer Vesk".to_owned(),
            },
            Participant {
                role: "IT".to_owned(),
                name: "Network manager".to_owned(),
            },
        ],
        inputs: ReviewInputs {
            risk_profile: "Primary, 210 pupils, shared iPads in KS1".to_owned(),
            incidents: "Two block reports, one concern".to_owned(),
            checks: vec![FilterCheck {
                subject: "ks2".to_owned(),
                test: "IWF test URL".to_owned(),
                result: "blocked | logged".to_owned(),
            }],
            changes: String::new(),
        },
        decisions: vec![
            "Block new AI chat sites for KS2".to_owned(),
            "  ".to_owned(),
        ],
        next_review_on: day("2027-10-01"),
    };
    // G5: the governor takes part.
    assert!(matches!(
        store
            .record_filtering_review(&admin(), c.school, &review)
            .await,
        Err(StoreError::Invalid {
            field: "participants",
            ..
        })
    ));
    review.participants.push(Participant {
        role: "Governor".to_owned(),
        name: "Safeguarding governor".to_owned(),
    });
    let stored = store
        .record_filtering_review(&admin(), c.school, &review)
        .await
        .unwrap();
    assert_eq!(stored.decisions.len(), 1);
    let md = stored.markdown("Larkmoor Primary");
    assert!(md.starts_with("# Filtering and monitoring review, Larkmoor Primary"));
    assert!(md.contains("| ks2 | IWF test URL | blocked \\| logged |"));
    assert!(md.contains("1. Block new AI chat sites for KS2"));
    assert!(md.contains("- Governor: Safeguarding governor"));
    assert_eq!(
        store.filtering_reviews(c.school).await.unwrap(),
        vec![stored]
    );
}

async fn assets_are_returned_and_disposed_with_certificates(store: Store) {
    let c = cast(&store).await;
    let laptop = AssetEntry {
        kind: AssetKind::Hardware,
        tag: "LT-0042".to_owned(),
        description: "Staff laptop".to_owned(),
        assigned_person_id: Some(c.staff),
        location: Some("Staff room".to_owned()),
        encryption: Encryption::Unknown,
        licence: None,
    };
    let saved = store.save_asset(&admin(), c.school, &laptop).await.unwrap();
    assert!(saved.encryption_gap());
    let saved = store
        .save_asset(
            &admin(),
            c.school,
            &AssetEntry {
                encryption: Encryption::Encrypted,
                ..laptop.clone()
            },
        )
        .await
        .unwrap();
    assert!(!saved.encryption_gap());
    store
        .save_asset(
            &admin(),
            c.school,
            &AssetEntry {
                kind: AssetKind::Software,
                tag: "Office suite".to_owned(),
                description: "Word processing, 30 seats".to_owned(),
                assigned_person_id: None,
                location: None,
                encryption: Encryption::NotApplicable,
                licence: Some("EDU-30 renews 2027-08".to_owned()),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .assets(c.school, Some(AssetKind::Software))
            .await
            .unwrap()
            .len(),
        1
    );

    // Leaving: the laptop is on the checklist until it comes back.
    let checklist = store.leaver_checklist(c.school, c.staff).await.unwrap();
    assert_eq!(checklist.len(), 1);
    let back = store
        .return_asset(
            &admin(),
            c.school,
            "LT-0042",
            day("2026-07-20"),
            Some("IT store"),
        )
        .await
        .unwrap();
    assert_eq!(back.status, AssetStatus::InStore);
    assert_eq!(back.location.as_deref(), Some("IT store"));
    assert!(store
        .leaver_checklist(c.school, c.staff)
        .await
        .unwrap()
        .is_empty());

    // Hardware leaves only with its certificate of secure deletion.
    assert!(matches!(
        store
            .dispose_asset(
                &admin(),
                c.school,
                "LT-0042",
                day("2026-08-01"),
                "WEEE recycler",
                None
            )
            .await,
        Err(StoreError::Invalid {
            field: "certificate",
            ..
        })
    ));
    let certificate = NewFile {
        name: "deletion-LT-0042.pdf".to_owned(),
        media_type: "application/pdf".to_owned(),
        content: b"%PDF certificate of secure deletion".to_vec(),
        key: file_key(),
    };
    let gone = store
        .dispose_asset(
            &admin(),
            c.school,
            "LT-0042",
            day("2026-08-01"),
            "WEEE recycler",
            Some(&certificate),
        )
        .await
        .unwrap();
    assert_eq!(gone.status, AssetStatus::Disposed);
    assert!(gone.certificate_file_id.is_some());
    assert!(store.save_asset(&admin(), c.school, &laptop).await.is_err());
    assert!(store.verify_audit().await.unwrap().is_intact());
}

async fn guests_accept_the_visitor_agreement_for_a_while(store: Store) {
    let c = cast(&store).await;
    let guest: std::net::IpAddr = "10.9.0.23".parse().unwrap();
    // Whole seconds: the store keeps times to the microsecond.
    let now = chrono::DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
    // Before the school publishes a community agreement, sheepdog's own
    // text is shown and accepted as version 0.
    let shipped = store.guest_agreement(c.school).await.unwrap();
    assert_eq!((shipped.template_id, shipped.version), (None, 0));
    let first = store
        .accept_guest_agreement(
            &Actor::system("captive-portal"),
            c.school,
            guest,
            None,
            12,
            now,
        )
        .await
        .unwrap();
    assert_eq!((first.version, first.method), (0, "captive portal"));

    store
        .publish_default_agreements(&admin(), c.school)
        .await
        .unwrap();
    let published = store.guest_agreement(c.school).await.unwrap();
    assert_eq!(published.version, 1);
    let other: std::net::IpAddr = "10.9.0.24".parse().unwrap();
    let second = store
        .accept_guest_agreement(
            &Actor::system("captive-portal"),
            c.school,
            other,
            Some("  Visiting plumber  "),
            1,
            now,
        )
        .await
        .unwrap();
    assert_eq!(second.template_id, published.template_id);
    assert_eq!(second.name.as_deref(), Some("Visiting plumber"));

    let current = store.current_guest_acceptances(now).await.unwrap();
    assert_eq!(current.len(), 2);
    assert!(current.contains(&(guest, now + Duration::hours(12))));
    // Two hours on, the one-hour acceptance has lapsed.
    let later = store
        .current_guest_acceptances(now + Duration::hours(2))
        .await
        .unwrap();
    assert_eq!(
        later.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
        vec![guest]
    );
    assert!(matches!(
        store
            .accept_guest_agreement(&admin(), c.school, guest, None, 0, now)
            .await,
        Err(StoreError::Invalid { .. })
    ));
    let listed = store.guest_acceptances(c.school, 10).await.unwrap();
    assert_eq!(listed.len(), 2);
    let audited = sqlx::query(
        "SELECT COUNT(*) AS n FROM audit_log WHERE entity = 'guest_acceptance' AND action = 'accept'",
    )
    .fetch_one(store.pool())
    .await
    .unwrap()
    .get::<i64, _>("n");
    assert_eq!(audited, 2);
    assert!(store.verify_audit().await.unwrap().is_intact());
}

async fn consent_purposes_are_added_renamed_and_retired(store: Store) {
    let c = cast(&store).await;
    let today = Utc::now().date_naive();
    let answer = NewConsent {
        pupil_id: c.brisa,
        purpose: "local_press".to_owned(),
        granted: true,
        given_by_person_id: None,
        given_by_name: "Signed form".to_owned(),
        given_on: today,
        expires_on: None,
    };
    store
        .record_consent(&admin(), c.school, &answer)
        .await
        .unwrap();

    let added = store
        .add_consent_purpose(&admin(), c.school, "Sports_Day", "Sports day programme")
        .await
        .unwrap();
    assert_eq!(added.key, "sports_day");
    assert!(store
        .add_consent_purpose(&admin(), c.school, "sports_day", "Again")
        .await
        .is_err());
    assert!(store
        .add_consent_purpose(&admin(), c.school, "sports day!", "Bad key")
        .await
        .is_err());
    store
        .rename_consent_purpose(&admin(), c.school, "local_press", "Newspapers")
        .await
        .unwrap();
    let purposes = store.consent_purposes(c.school).await.unwrap();
    assert_eq!(purposes.len(), DEFAULT_PURPOSES.len() + 1);
    assert!(purposes
        .iter()
        .any(|p| p.key == "local_press" && p.title == "Newspapers"));

    // Retired: gone from the list in use, and no new answers for it; the
    // answer already given is kept.
    store
        .retire_consent_purpose(&admin(), c.school, "local_press", true)
        .await
        .unwrap();
    assert!(!store
        .consent_purposes(c.school)
        .await
        .unwrap()
        .iter()
        .any(|p| p.key == "local_press"));
    let kept = store.kept_consent_purposes(c.school).await.unwrap();
    assert!(kept
        .iter()
        .any(|p| p.key == "local_press" && p.retired_at.is_some()));
    assert!(store
        .record_consent(&admin(), c.school, &answer)
        .await
        .is_err());
    assert_eq!(store.image_consents(c.brisa).await.unwrap().len(), 1);
    // Brought back, it takes answers again.
    store
        .retire_consent_purpose(&admin(), c.school, "local_press", false)
        .await
        .unwrap();
    store
        .record_consent(&admin(), c.school, &answer)
        .await
        .unwrap();
    assert!(matches!(
        store
            .rename_consent_purpose(&admin(), c.school, "nothing", "x")
            .await,
        Err(StoreError::NotFound { .. })
    ));
    // The last purpose in use cannot be retired.
    store
        .set_consent_purposes(
            &admin(),
            c.school,
            &[ConsentPurpose {
                key: "website".to_owned(),
                title: "Website".to_owned(),
            }],
        )
        .await
        .unwrap();
    assert!(store
        .retire_consent_purpose(&admin(), c.school, "website", true)
        .await
        .is_err());
    let changes =
        sqlx::query("SELECT COUNT(*) AS n FROM audit_log WHERE entity = 'consent_purposes'")
            .fetch_one(store.pool())
            .await
            .unwrap()
            .get::<i64, _>("n");
    assert_eq!(changes, 5);
    assert!(store.verify_audit().await.unwrap().is_intact());
}
