//! Incidents: the flowchart's branches, routing, need-to-know, evidence and
//! retention, on both databases.

use chrono::{Duration, NaiveDate, Utc};
use sqlx::Row;

use super::{admin, postgres, pupil, school, sqlite, staff};
use crate::incidents::*;
use crate::*;

on_both!(
    routing_and_need_to_know,
    illegal_path_steps_and_image_refusal,
    internal_path_needs_two_senior_reviewers,
    evidence_is_sealed_hashed_and_its_custody_kept,
    escalation_chronology_overdue_and_retention,
    lists_need_to_know_reviewers_and_keyword_figures,
);

struct Cast {
    school: i64,
    pupil: i64,
    teacher_person: i64,
    head_person: i64,
    dsl: Account,
    deputy: Account,
    head: Account,
    teacher: Account,
    chair: Account,
}

const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";

pub(super) async fn account(
    store: &Store,
    school: i64,
    name: &str,
    role: StaffRole,
    person: Option<i64>,
) -> Account {
    let account = store
        .create_account(
            &admin(),
            &format!("{name}@school.invalid"),
            name,
            HASH,
            &[AccountRole {
                school_id: Some(school),
                role,
            }],
        )
        .await
        .unwrap();
    match person {
        Some(p) => store
            .set_account_person(&admin(), account.id, Some(p))
            .await
            .unwrap(),
        None => account,
    }
}

async fn cast(store: &Store) -> Cast {
    let school = school(store).await.id;
    let batch = ImportBatch {
        people: vec![
            pupil("A123456789012", "Brisa", "4", "4K"),
            staff("ST02", vec![StaffRole::Teacher]),
            staff("ST03", vec![StaffRole::Headteacher]),
        ],
        guardians: vec![],
    };
    store
        .import_people(&admin(), school, &batch, false)
        .await
        .unwrap();
    let people = store.people(school, None).await.unwrap();
    let find = |key: &str| {
        people
            .iter()
            .find(|p| {
                p.details.upn.as_deref() == Some(key)
                    || p.details.external_id.as_deref() == Some(key)
            })
            .unwrap()
            .id
    };
    let (pupil, teacher_person, head_person) = (find("A123456789012"), find("ST02"), find("ST03"));
    Cast {
        school,
        pupil,
        teacher_person,
        head_person,
        dsl: account(store, school, "dsl", StaffRole::Dsl, None).await,
        deputy: account(store, school, "deputy", StaffRole::DeputyDsl, None).await,
        head: account(
            store,
            school,
            "head",
            StaffRole::Headteacher,
            Some(head_person),
        )
        .await,
        teacher: account(
            store,
            school,
            "teacher",
            StaffRole::Teacher,
            Some(teacher_person),
        )
        .await,
        chair: account(store, school, "chair", StaffRole::ChairOfGovernors, None).await,
    }
}

fn concern(about: About, people: Vec<Involved>) -> NewIncident {
    NewIncident {
        category: "contact".to_owned(),
        summary: "Messages from an unknown adult".to_owned(),
        description: "A pupil showed a chat asking to meet.".to_owned(),
        occurred_at: Utc::now() - Duration::minutes(30),
        device: Some("LIB-CHROMEBOOK-07".to_owned()),
        location: Some("Library".to_owned()),
        urgency: Urgency::Today,
        about,
        people,
        alert_id: None,
        event_id: None,
    }
}

fn involved(person: i64, role: InvolvedRole) -> Involved {
    Involved {
        person_id: Some(person),
        description: None,
        role,
    }
}

fn forbidden<T: std::fmt::Debug>(result: Result<T, StoreError>) -> String {
    match result {
        Err(StoreError::Forbidden { reason }) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn invalid<T: std::fmt::Debug>(result: Result<T, StoreError>, field: &str) -> String {
    match result {
        Err(StoreError::Invalid { field: f, problem }) if f == field => problem,
        other => panic!("expected invalid {field}, got {other:?}"),
    }
}

async fn routing_and_need_to_know(store: Store) {
    let c = cast(&store).await;
    let retention = RetentionPolicy::default();

    // A teacher logs a concern about a pupil: it goes to the DSL team, and
    // the teacher gets a reference, not the record.
    let about_pupil = concern(
        About::Pupil,
        vec![involved(c.pupil, InvolvedRole::Involved)],
    );
    let receipt = store
        .log_concern(&c.teacher, c.school, &about_pupil, &retention)
        .await
        .unwrap();
    assert_eq!(receipt.route, Route::Dsl);
    assert!(
        receipt.reference.starts_with("INC-"),
        "{}",
        receipt.reference
    );
    forbidden(store.incident(&c.teacher, receipt.id).await);
    for reader in [&c.dsl, &c.deputy, &c.head] {
        let incident = store.incident(reader, receipt.id).await.unwrap();
        assert_eq!(incident.people[0].name.as_deref(), Some("Brisa Quorbin"));
    }
    forbidden(store.incident(&c.chair, receipt.id).await);

    // About a member of staff: the headteacher alone; the LADO flagged.
    let about_teacher = concern(
        About::Staff,
        vec![involved(c.teacher_person, InvolvedRole::Subject)],
    );
    let staff_case = store
        .log_concern(&c.dsl, c.school, &about_teacher, &retention)
        .await
        .unwrap();
    assert_eq!(staff_case.route, Route::Headteacher);
    let opened = store.incident(&c.head, staff_case.id).await.unwrap();
    assert!(opened.lado_referral_needed);
    forbidden(store.incident(&c.dsl, staff_case.id).await);
    // The subject cannot open it even when acting as headteacher.
    let acting_head = account(
        &store,
        c.school,
        "acting-head",
        StaffRole::Headteacher,
        Some(c.teacher_person),
    )
    .await;
    let why = forbidden(store.incident(&acting_head, staff_case.id).await);
    assert!(why.contains("about you"), "{why}");
    // ...nor does it appear in their list, nor in an evidence request.
    let listed = store.incidents(&acting_head, c.school, None).await.unwrap();
    assert!(listed.iter().all(|i| i.id != staff_case.id));

    // About the headteacher: the chair of governors alone.
    let about_head = concern(
        About::Headteacher,
        vec![involved(c.head_person, InvolvedRole::Subject)],
    );
    let head_case = store
        .log_concern(&c.deputy, c.school, &about_head, &retention)
        .await
        .unwrap();
    assert_eq!(head_case.route, Route::ChairOfGovernors);
    store.incident(&c.chair, head_case.id).await.unwrap();
    forbidden(store.incident(&c.head, head_case.id).await);
    forbidden(store.incident(&c.dsl, head_case.id).await);

    // A concern about an adult must say who it is about.
    invalid(
        store
            .log_concern(&c.dsl, c.school, &concern(About::Staff, vec![]), &retention)
            .await,
        "people",
    );

    // Views and refusals are in the audit log.
    let log = store.audit_entries(Some("incident"), 100).await.unwrap();
    assert!(
        log.iter()
            .any(|e| e.action == "refuse"
                && e.entity_id.as_deref() == Some(&head_case.id.to_string()))
    );
    assert!(log
        .iter()
        .any(|e| e.action == "view" && e.actor.contains("chair")));
    assert!(store.verify_audit().await.unwrap().is_intact());
}

async fn illegal_path_steps_and_image_refusal(store: Store) {
    let c = cast(&store).await;
    let key = EvidenceKey::generate().unwrap();
    let limits = EvidenceLimits::default();
    let receipt = store
        .log_concern(
            &c.teacher,
            c.school,
            &concern(
                About::Pupil,
                vec![involved(c.pupil, InvolvedRole::Involved)],
            ),
            &RetentionPolicy::default(),
        )
        .await
        .unwrap();
    let id = receipt.id;
    // Nothing can be closed before the first question is answered.
    let review = ClosingReview {
        debrief: "Debrief held with the DSL team.".to_owned(),
        ..ClosingReview::default()
    };
    invalid(
        store.close_incident(&c.dsl, id, "Referred", &review).await,
        "path",
    );

    let incident = store
        .decide_path(&c.dsl, id, Some(IllegalKind::ChildSexualAbuseImages), None)
        .await
        .unwrap();
    assert_eq!(
        incident.path,
        Path::Illegal(IllegalKind::ChildSexualAbuseImages)
    );
    let steps: Vec<IllegalStep> = store
        .incident_entries(&c.dsl, id)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.data {
            EntryData::Step { step, .. } => Some(step),
            _ => None,
        })
        .collect();
    assert_eq!(steps, IllegalKind::ChildSexualAbuseImages.steps());
    assert!(steps.contains(&IllegalStep::ReportIwf));
    assert!(!steps.contains(&IllegalStep::ReportCeop));

    // No image gets in: not by type, not disguised as a PDF.
    let png = b"\x89PNG\r\n\x1a\nrest-of-file".to_vec();
    for media_type in ["image/png", "application/pdf"] {
        let upload = EvidenceUpload {
            file_name: "capture.pdf".to_owned(),
            media_type: media_type.to_owned(),
            bytes: png.clone(),
            description: None,
        };
        let why = forbidden(store.add_evidence(&c.dsl, id, &upload, &key, &limits).await);
        assert!(why.contains("no images"), "{why}");
    }
    let written = EvidenceUpload {
        file_name: "police-contact.txt".to_owned(),
        media_type: "text/plain".to_owned(),
        bytes: b"Officer spoke to the DSL at 10:40.".to_vec(),
        description: Some("Note of the call".to_owned()),
    };
    store
        .add_evidence(&c.dsl, id, &written, &key, &limits)
        .await
        .unwrap();
    let log = store.audit_entries(Some("incident"), 50).await.unwrap();
    assert_eq!(
        log.iter().filter(|e| e.action == "refuse_upload").count(),
        2
    );

    // Reporting needs the reference; then the incident can close.
    invalid(
        store
            .complete_step(&c.dsl, id, IllegalStep::ReportPolice, None, None)
            .await,
        "reference",
    );
    invalid(
        store.close_incident(&c.dsl, id, "Referred", &review).await,
        "steps",
    );
    let done = store
        .complete_step(
            &c.dsl,
            id,
            IllegalStep::ReportPolice,
            Some("Reported by phone"),
            Some("CRN 44/12345/26"),
        )
        .await
        .unwrap();
    assert!(done.done_at.is_some());
    invalid(
        store
            .complete_step(&c.dsl, id, IllegalStep::ReportPolice, None, Some("again"))
            .await,
        "step",
    );
    invalid(
        store
            .complete_step(&c.dsl, id, IllegalStep::ReportCeop, None, Some("X"))
            .await,
        "step",
    );
    let closed = store
        .close_incident(
            &c.dsl,
            id,
            "Police investigating; no further school action",
            &review,
        )
        .await
        .unwrap();
    assert_eq!(closed.status, IncidentStatus::Closed);
    // A teacher cannot work on it either.
    forbidden(
        store
            .add_entry(
                &c.teacher,
                id,
                &EntryData::Note {
                    text: "x".to_owned(),
                },
                None,
            )
            .await,
    );
}

async fn internal_path_needs_two_senior_reviewers(store: Store) {
    let c = cast(&store).await;
    let receipt = store
        .log_concern(
            &c.dsl,
            c.school,
            &concern(
                About::Pupil,
                vec![involved(c.pupil, InvolvedRole::Involved)],
            ),
            &RetentionPolicy::default(),
        )
        .await
        .unwrap();
    let id = receipt.id;
    let review = |reviewers: &[&Account]| InternalReview {
        reviewers: reviewers
            .iter()
            .map(|a| Reviewer {
                account_id: a.id,
                name: String::new(),
                role: String::new(),
            })
            .collect(),
        computer: "SLT-LAPTOP-02".to_owned(),
        items: vec![ReviewedItem {
            url: "http://game.example.invalid/chat".to_owned(),
            description: "In-game chat with name-calling between pupils".to_owned(),
        }],
        screenshots: vec![],
        conclusion: "Unkind messages; no risk of harm from adults".to_owned(),
        action: ReviewAction::InternalResponse,
    };
    // The review belongs to the internal path.
    invalid(
        store
            .record_review(&c.dsl, id, &review(&[&c.dsl, &c.head]))
            .await,
        "review",
    );
    store.decide_path(&c.dsl, id, None, None).await.unwrap();
    invalid(
        store.record_review(&c.dsl, id, &review(&[&c.dsl])).await,
        "reviewers",
    );
    invalid(
        store
            .record_review(&c.dsl, id, &review(&[&c.dsl, &c.dsl]))
            .await,
        "reviewers",
    );
    let why = invalid(
        store
            .record_review(&c.dsl, id, &review(&[&c.dsl, &c.teacher]))
            .await,
        "reviewers",
    );
    assert!(why.contains("not senior"), "{why}");
    let closing = ClosingReview {
        debrief: "Discussed with class teacher".to_owned(),
        lessons: "Remind pupils of the agreement".to_owned(),
        policy_changes: String::new(),
    };
    invalid(
        store
            .close_incident(&c.dsl, id, "Sanction given", &closing)
            .await,
        "review",
    );
    let entry = store
        .record_review(&c.dsl, id, &review(&[&c.dsl, &c.head]))
        .await
        .unwrap();
    let EntryData::Review(recorded) = &entry.data else {
        panic!("not a review: {entry:?}");
    };
    assert_eq!(recorded.reviewers[1].role, "headteacher");
    assert_eq!(recorded.reviewers[1].name, "head");

    // Changing the answer needs a reason.
    invalid(
        store
            .decide_path(&c.dsl, id, Some(IllegalKind::Grooming), None)
            .await,
        "reason",
    );

    store
        .close_incident(&c.dsl, id, "Sanction given", &closing)
        .await
        .unwrap();
    invalid(store.reopen_incident(&c.dsl, id, "  ").await, "reason");
    let reopened = store
        .reopen_incident(&c.dsl, id, "Parent reported more messages")
        .await
        .unwrap();
    assert_eq!(reopened.status, IncidentStatus::Open);
    let kinds: Vec<&str> = store
        .incident_entries(&c.dsl, id)
        .await
        .unwrap()
        .iter()
        .map(|e| e.data.kind())
        .collect();
    assert_eq!(kinds, ["path", "review", "close", "reopen"]);
    let log = store.audit_entries(Some("incident"), 50).await.unwrap();
    assert!(log
        .iter()
        .any(|e| e.action == "reopen"
            && e.reason.as_deref() == Some("Parent reported more messages")));
}

async fn evidence_is_sealed_hashed_and_its_custody_kept(store: Store) {
    let c = cast(&store).await;
    let key = EvidenceKey::generate().unwrap();
    let limits = EvidenceLimits::default();
    let id = store
        .log_concern(
            &c.dsl,
            c.school,
            &concern(
                About::Pupil,
                vec![involved(c.pupil, InvolvedRole::Involved)],
            ),
            &RetentionPolicy::default(),
        )
        .await
        .unwrap()
        .id;
    let content = b"%PDF-1.7 signed screenshot record".to_vec();
    let upload = EvidenceUpload {
        file_name: "record.pdf".to_owned(),
        media_type: "application/pdf".to_owned(),
        bytes: content.clone(),
        description: None,
    };
    let info = store
        .add_evidence(&c.dsl, id, &upload, &key, &limits)
        .await
        .unwrap();
    assert_eq!(info.sha256.len(), 64);
    let raw: Vec<u8> = sqlx::query("SELECT sealed FROM incident_evidence WHERE id = $1")
        .bind(info.id)
        .fetch_one(store.pool())
        .await
        .unwrap()
        .try_get("sealed")
        .unwrap();
    assert!(!raw.windows(8).any(|w| w == b"%PDF-1.7"), "stored in clear");

    let (_, opened) = store
        .open_evidence(&c.head, info.id, &key, EvidencePurpose::View)
        .await
        .unwrap();
    assert_eq!(opened, content);
    store
        .open_evidence(&c.dsl, info.id, &key, EvidencePurpose::Download)
        .await
        .unwrap();
    forbidden(
        store
            .open_evidence(&c.teacher, info.id, &key, EvidencePurpose::View)
            .await,
    );
    let custody: Vec<String> = store
        .evidence_custody(&c.dsl, info.id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| format!("{} {}", e.action, e.actor))
        .collect();
    assert_eq!(custody.len(), 4, "{custody:?}");
    assert!(
        custody[0].starts_with("upload account:") && custody[0].ends_with("dsl@school.invalid")
    );
    assert!(custody[1].starts_with("view") && custody[1].contains("head"));
    assert!(custody[2].starts_with("download"));
    assert!(custody[3].starts_with("refuse") && custody[3].contains("teacher"));

    // Limits: size and type, with the fix in the message.
    let too_big = EvidenceLimits {
        max_bytes: 10,
        ..EvidenceLimits::default()
    };
    invalid(
        store
            .add_evidence(&c.dsl, id, &upload, &key, &too_big)
            .await,
        "file",
    );
    let exe = EvidenceUpload {
        media_type: "application/x-msdownload".to_owned(),
        ..upload.clone()
    };
    let why = invalid(
        store.add_evidence(&c.dsl, id, &exe, &key, &limits).await,
        "file type",
    );
    assert!(why.contains("application/pdf"), "{why}");

    // Tampering in the database is caught on opening.
    sqlx::query("UPDATE incident_evidence SET sha256 = $1 WHERE id = $2")
        .bind("0".repeat(64))
        .bind(info.id)
        .execute(store.pool())
        .await
        .unwrap();
    assert!(matches!(
        store
            .open_evidence(&c.dsl, info.id, &key, EvidencePurpose::View)
            .await,
        Err(StoreError::Corrupt { .. })
    ));
}

async fn escalation_chronology_overdue_and_retention(store: Store) {
    let c = cast(&store).await;
    let alert = store
        .record_alert(
            &Actor::system("monitor"),
            c.school,
            &NewAlert {
                person_id: Some(c.pupil),
                subject: format!("person:{}", c.pupil),
                device_id: None,
                device_name: None,
                address: Some("10.0.4.17".to_owned()),
                category: "self-harm".to_owned(),
                grade: 4,
                matched_text: "search".to_owned(),
                source: "dns".to_owned(),
                at: Utc::now() - Duration::days(3),
                event_ids: vec![1],
                context: serde_json::json!([]),
            },
            &AlertPolicy::default(),
        )
        .await
        .unwrap();
    let alert_id = alert.alert().id;
    let mut escalation = concern(
        About::Pupil,
        vec![involved(c.pupil, InvolvedRole::Involved)],
    );
    escalation.alert_id = Some(alert_id);
    escalation.category = "self-harm".to_owned();
    escalation.occurred_at = Utc::now() - Duration::days(3);
    // Only the safeguarding team escalates alerts.
    forbidden(
        store
            .log_concern(
                &c.teacher,
                c.school,
                &escalation,
                &RetentionPolicy::default(),
            )
            .await,
    );
    let receipt = store
        .log_concern(&c.dsl, c.school, &escalation, &RetentionPolicy::default())
        .await
        .unwrap();
    assert_eq!(
        store.alert(alert_id).await.unwrap().status,
        AlertStatus::Escalated
    );
    let incident = store.incident(&c.dsl, receipt.id).await.unwrap();
    assert_eq!(incident.origin, Origin::Alert);
    assert!(incident.recorded_late, "three days late must show");
    // The pupil was born 2016-03-04: kept until their 25th birthday.
    assert_eq!(incident.retain_until, "2041-03-04");
    assert!(incident.retention_rule.contains("25th birthday"));

    let overdue_action = EntryData::Action {
        description: "Speak to parents".to_owned(),
        owner: "dsl".to_owned(),
    };
    let action = store
        .add_entry(
            &c.dsl,
            receipt.id,
            &overdue_action,
            Some(Utc::now() - Duration::hours(2)),
        )
        .await
        .unwrap();
    assert!(action.overdue);
    store
        .add_entry(
            &c.dsl,
            receipt.id,
            &EntryData::Referral {
                agency: Agency::ChildrensSocialCare,
                reference: None,
                detail: "Early help referral".to_owned(),
            },
            Some(Utc::now() + Duration::days(1)),
        )
        .await
        .unwrap();
    store
        .add_entry(
            &c.dsl,
            receipt.id,
            &EntryData::ParentContact {
                who: "Mother".to_owned(),
                person_id: None,
                method: ContactMethod::Phone,
                note: "Told of the concern and the plan".to_owned(),
            },
            None,
        )
        .await
        .unwrap();
    let overdue = store.overdue_entries(&c.dsl, c.school).await.unwrap();
    assert_eq!(overdue.len(), 1);
    assert_eq!(overdue[0].0, incident.reference);
    assert!(store
        .overdue_entries(&c.teacher, c.school)
        .await
        .unwrap()
        .is_empty());
    store
        .complete_entry(&c.dsl, receipt.id, action.id)
        .await
        .unwrap();
    assert!(store
        .overdue_entries(&c.dsl, c.school)
        .await
        .unwrap()
        .is_empty());

    let chronology = store.chronology(&c.dsl, c.school, c.pupil).await.unwrap();
    let kinds: Vec<&str> = chronology.iter().map(|i| i.kind.as_str()).collect();
    assert!(
        kinds.contains(&"alert") && kinds.contains(&"incident"),
        "{kinds:?}"
    );
    assert!(kinds.contains(&"parent_contact") && kinds.contains(&"referral"));
    assert!(chronology.windows(2).all(|w| w[0].at <= w[1].at));
    forbidden(store.chronology(&c.teacher, c.school, c.pupil).await);

    let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    assert!(store
        .incidents_due_for_review(&c.dsl, c.school, day("2041-03-03"))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .incidents_due_for_review(&c.dsl, c.school, day("2041-03-04"))
            .await
            .unwrap()
            .len(),
        1
    );
}

/// The batched need-to-know listing gives each reader exactly what
/// `may_open` allows; the senior reviewers are the headteacher, DSL and
/// deputies; dismissals are counted per matched term, case folded.
async fn lists_need_to_know_reviewers_and_keyword_figures(store: Store) {
    let c = cast(&store).await;
    let retention = RetentionPolicy::default();
    let pupil_case = store
        .log_concern(
            &c.teacher,
            c.school,
            &concern(
                About::Pupil,
                vec![involved(c.pupil, InvolvedRole::Involved)],
            ),
            &retention,
        )
        .await
        .unwrap()
        .id;
    let head_case = store
        .log_concern(
            &c.dsl,
            c.school,
            &concern(
                About::Headteacher,
                vec![involved(c.head_person, InvolvedRole::Subject)],
            ),
            &retention,
        )
        .await
        .unwrap()
        .id;
    let ids = |list: Vec<Incident>| list.iter().map(|i| i.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.incidents(&c.dsl, c.school, None).await.unwrap()),
        [pupil_case]
    );
    assert_eq!(
        ids(store.incidents(&c.head, c.school, None).await.unwrap()),
        [pupil_case]
    );
    assert_eq!(
        ids(store.incidents(&c.chair, c.school, None).await.unwrap()),
        [head_case]
    );
    assert!(store
        .incidents(&c.teacher, c.school, None)
        .await
        .unwrap()
        .is_empty());

    let reviewers = store.senior_reviewers(c.school).await.unwrap();
    let mut roles: Vec<StaffRole> = reviewers.iter().map(|r| r.2).collect();
    roles.sort_by_key(|r| r.as_str());
    assert_eq!(
        roles,
        [StaffRole::DeputyDsl, StaffRole::Dsl, StaffRole::Headteacher]
    );

    let policy = AlertPolicy::default();
    let mut alert_ids = Vec::new();
    for (i, term) in ["Hopeless", "hopeless", "weed"].iter().enumerate() {
        let new = NewAlert {
            person_id: None,
            subject: format!("device-{i}"),
            device_id: None,
            device_name: None,
            address: Some("10.0.4.17".to_owned()),
            category: if *term == "weed" {
                "drugs"
            } else {
                "self-harm"
            }
            .to_owned(),
            grade: 3,
            matched_text: (*term).to_owned(),
            source: "proxy".to_owned(),
            at: Utc::now(),
            event_ids: vec![i64::try_from(i).unwrap() + 1],
            context: serde_json::json!({}),
        };
        let outcome = store
            .record_alert(&admin(), c.school, &new, &policy)
            .await
            .unwrap();
        alert_ids.push(outcome.alert().id);
    }
    for id in &alert_ids[..2] {
        store
            .set_alert_status(&admin(), *id, AlertStatus::Dismissed, Some("song lyrics"))
            .await
            .unwrap();
    }
    let figures = store.keyword_figures(c.school).await.unwrap();
    assert_eq!(figures.len(), 2);
    assert_eq!(figures[0].term, "hopeless");
    assert_eq!((figures[0].alerts, figures[0].dismissed), (2, 2));
    assert_eq!(figures[0].dismissal_percent(), Some(100));
    assert_eq!(
        (figures[1].term.as_str(), figures[1].dismissed),
        ("weed", 0)
    );
    assert_eq!(figures[1].dismissal_percent(), None);
}
