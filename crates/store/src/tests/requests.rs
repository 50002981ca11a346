//! Unblock requests: asking, refusing illegal targets, deciding, and what
//! the running policy receives.

use chrono::{Duration, Utc};

use super::incidents::account;
use super::{postgres, school, sqlite};
use crate::requests::*;
use crate::*;

on_both!(
    requests_are_decided_once_by_an_approver,
    illegal_targets_are_refused_by_the_system,
    block_reports_are_allowed_or_kept_blocked_with_a_reason,
    policy_file_edits_are_on_the_change_log,
    membership_and_device_changes_need_a_reason
);

fn lesson(target: &str, hours: i64) -> NewRequest {
    let start = Utc::now() - Duration::minutes(5);
    NewRequest {
        target: target.to_owned(),
        policy_group: "ks2".to_owned(),
        class_name: Some("4K".to_owned()),
        reason: "Video on volcanoes for the geography lesson".to_owned(),
        purpose: "Year 4 geography, period 3".to_owned(),
        starts_at: start,
        ends_at: start + Duration::hours(hours),
    }
}

async fn requests_are_decided_once_by_an_approver(store: Store) {
    let school = school(&store).await.id;
    let teacher = account(&store, school, "teacher", StaffRole::Teacher, None).await;
    let other = account(&store, school, "other", StaffRole::Teacher, None).await;
    let tech = account(&store, school, "tech", StaffRole::Technician, None).await;
    let max = Duration::hours(8);
    let clean = RequestCheck {
        category: Some("video".to_owned()),
        ..RequestCheck::default()
    };

    // Form checks, each naming its field.
    for (mut bad, field) in [
        (lesson("", 1), "site"),
        (lesson("video.example.org", 1), "reason"),
        (lesson("video.example.org", 9), "end"),
    ] {
        if field == "reason" {
            bad.reason = "  ".to_owned();
        }
        match store
            .request_unblock(&teacher, school, &bad, &clean, max)
            .await
        {
            Err(StoreError::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("expected invalid {field}: {other:?}"),
        }
    }

    let asked = store
        .request_unblock(
            &teacher,
            school,
            &lesson("Video.Example.org", 2),
            &clean,
            max,
        )
        .await
        .unwrap();
    assert_eq!(asked.status, RequestStatus::Pending);
    assert_eq!(asked.target, "video.example.org");
    assert!(store
        .approved_exceptions(Utc::now())
        .await
        .unwrap()
        .is_empty());

    // A teacher cannot decide, nor can anyone decide their own.
    assert!(matches!(
        store.decide_request(&other, asked.id, true, None).await,
        Err(StoreError::Forbidden { .. })
    ));
    let own = store
        .request_unblock(&tech, school, &lesson("maps.example.org", 1), &clean, max)
        .await
        .unwrap();
    assert!(matches!(
        store.decide_request(&tech, own.id, true, None).await,
        Err(StoreError::Forbidden { .. })
    ));
    // Rejecting needs a comment.
    assert!(matches!(
        store.decide_request(&tech, asked.id, false, None).await,
        Err(StoreError::Invalid {
            field: "comment",
            ..
        })
    ));
    let approved = store
        .decide_request(&tech, asked.id, true, Some("Fine for the lesson"))
        .await
        .unwrap();
    assert_eq!(approved.status, RequestStatus::Approved);
    assert!(store
        .decide_request(&tech, asked.id, false, Some("changed my mind"))
        .await
        .is_err());

    let live = store.approved_exceptions(Utc::now()).await.unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].target, "video.example.org");
    assert_eq!(live[0].policy_group, "ks2");
    assert!(live[0].approved_by.contains("tech"));
    // After its end it is no longer handed to the policy.
    assert!(store
        .approved_exceptions(Utc::now() + Duration::hours(3))
        .await
        .unwrap()
        .is_empty());

    // The teacher sees their own; the technician sees all, and can search.
    let mine = store
        .unblock_requests(&teacher, school, &RequestFilter::default())
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);
    let all = store
        .unblock_requests(&tech, school, &RequestFilter::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    let found = store
        .unblock_requests(
            &tech,
            school,
            &RequestFilter {
                text: Some("VOLCANOES".to_owned()),
                status: Some(RequestStatus::Approved),
                ..RequestFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(found.len(), 1);

    // Withdrawing an approved request takes it out of the policy.
    store.withdraw_request(&teacher, asked.id).await.unwrap();
    assert!(store
        .approved_exceptions(Utc::now())
        .await
        .unwrap()
        .is_empty());
    let log = store
        .audit_entries(Some("unblock_request"), 20)
        .await
        .unwrap();
    let actions: Vec<&str> = log.iter().rev().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["create", "create", "approve", "withdraw"]);
}

async fn illegal_targets_are_refused_by_the_system(store: Store) {
    let school = school(&store).await.id;
    let teacher = account(&store, school, "teacher", StaffRole::Teacher, None).await;
    let dsl = account(&store, school, "dsl", StaffRole::Dsl, None).await;
    let check = RequestCheck {
        illegal: true,
        category: Some("child-abuse".to_owned()),
        reason: "This is on the IWF list.".to_owned(),
    };
    let refused = store
        .request_unblock(
            &teacher,
            school,
            &lesson("bad.example.invalid", 1),
            &check,
            Duration::hours(8),
        )
        .await
        .unwrap();
    assert_eq!(refused.status, RequestStatus::Refused);
    let comment = refused.comment.clone().unwrap();
    assert!(comment.contains("IWF list") && comment.contains("no request can change"));
    assert!(matches!(
        store.decide_request(&dsl, refused.id, true, None).await,
        Err(StoreError::Invalid {
            field: "status",
            ..
        })
    ));
    assert!(store
        .approved_exceptions(Utc::now())
        .await
        .unwrap()
        .is_empty());
}

async fn block_reports_are_allowed_or_kept_blocked_with_a_reason(store: Store) {
    let school = school(&store).await.id;
    let teacher = account(&store, school, "teacher", StaffRole::Teacher, None).await;
    let tech = account(&store, school, "tech", StaffRole::Technician, None).await;
    let report = |site: &str| NewBlockReport {
        at: Utc::now(),
        reference: format!("B-{site}"),
        client: "127.0.0.1".to_owned(),
        person_id: None,
        group: Some("ks2".to_owned()),
        site: site.to_owned(),
        category: Some("games".to_owned()),
        comment: "This is the times-tables site".to_owned(),
    };
    let proxy = Actor::system("proxy");
    let maths = store
        .record_block_report(&proxy, &report("Maths.Example.org"))
        .await
        .unwrap();
    let games = store
        .record_block_report(&proxy, &report("games.example.org"))
        .await
        .unwrap();
    let clean = RequestCheck::default();
    let allow = ReportDecision::Allow {
        policy_group: "ks2".to_owned(),
        until: Utc::now() + Duration::days(30),
    };
    // Only the filtering manager decides, and always with a reason.
    assert!(matches!(
        store
            .decide_block_report(&teacher, school, maths.id, &allow, &clean, "useful")
            .await,
        Err(StoreError::Forbidden { .. })
    ));
    assert!(matches!(
        store
            .decide_block_report(&tech, school, maths.id, &allow, &clean, " ")
            .await,
        Err(StoreError::Invalid {
            field: "reason",
            ..
        })
    ));
    // Illegal targets cannot be allowed; longer than a school year neither.
    let illegal = RequestCheck {
        illegal: true,
        category: Some("child-abuse".to_owned()),
        reason: "On the IWF list.".to_owned(),
    };
    assert!(matches!(
        store
            .decide_block_report(&tech, school, maths.id, &allow, &illegal, "useful")
            .await,
        Err(StoreError::Forbidden { .. })
    ));
    let too_long = ReportDecision::Allow {
        policy_group: "ks2".to_owned(),
        until: Utc::now() + Duration::days(LONGEST_ALLOWANCE_DAYS + 2),
    };
    assert!(store
        .decide_block_report(&tech, school, maths.id, &too_long, &clean, "useful")
        .await
        .is_err());

    let allowed = store
        .decide_block_report(
            &tech,
            school,
            maths.id,
            &allow,
            &clean,
            "Times tables practice for year 4",
        )
        .await
        .unwrap();
    assert_eq!(allowed.resolution.as_deref(), Some("allowed"));
    assert_eq!(allowed.status, "closed");
    let live = store.approved_exceptions(Utc::now()).await.unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].target, "maths.example.org");
    assert_eq!(live[0].policy_group, "ks2");
    assert!(live[0].approved_by.contains("tech"));
    // Decided once.
    assert!(store
        .decide_block_report(
            &tech,
            school,
            maths.id,
            &ReportDecision::KeepBlocked,
            &clean,
            "no"
        )
        .await
        .is_err());
    let kept = store
        .decide_block_report(
            &tech,
            school,
            games.id,
            &ReportDecision::KeepBlocked,
            &clean,
            "A games site; not for lessons",
        )
        .await
        .unwrap();
    assert_eq!(kept.resolution.as_deref(), Some("kept_blocked"));
    assert_eq!(
        store.approved_exceptions(Utc::now()).await.unwrap().len(),
        1
    );

    // A refused attempt is kept, and the change log shows every change
    // with who, before, after and why.
    store
        .audit_refused_change(
            &Actor::account(teacher.id, &teacher.username),
            "unblock_request",
            "a teacher may not decide requests",
        )
        .await
        .unwrap();
    let changes = store
        .filtering_changes(&ChangeFilter::default())
        .await
        .unwrap();
    let seen: Vec<(&str, &str)> = changes
        .iter()
        .map(|c| (c.entity.as_str(), c.action.as_str()))
        .collect();
    for expected in [
        ("filtering", "refused"),
        ("block_report", "keep_blocked"),
        ("block_report", "allow"),
        ("unblock_request", "allow_from_report"),
    ] {
        assert!(seen.contains(&expected), "{expected:?} in {seen:?}");
    }
    let allow_entry = changes
        .iter()
        .find(|c| c.action == "allow" && c.entity == "block_report")
        .unwrap();
    assert_eq!(
        allow_entry.reason.as_deref(),
        Some("Times tables practice for year 4")
    );
    assert!(allow_entry
        .before
        .as_deref()
        .unwrap()
        .contains("\"resolution\":null"));
    assert!(allow_entry.after.as_deref().unwrap().contains("allowed"));
    let searched = store
        .filtering_changes(&ChangeFilter {
            text: Some("TIMES TABLES".to_owned()),
            ..ChangeFilter::default()
        })
        .await
        .unwrap();
    assert!(!searched.is_empty());
    assert!(searched.iter().all(
        |c| c.reason.as_deref().unwrap_or("").contains("Times tables")
            || c.after.as_deref().unwrap_or("").contains("Times tables")
            || c.before.as_deref().unwrap_or("").contains("times-tables")
    ));
}

async fn policy_file_edits_are_on_the_change_log(store: Store) {
    let school = school(&store).await.id;
    let tech = account(&store, school, "tech", StaffRole::Technician, None).await;
    let teacher = account(&store, school, "teacher", StaffRole::Teacher, None).await;
    assert!(store.applied_policy().await.unwrap().is_none());

    // The first start records the policy as the initial one, as the file's.
    let first = r#"{"groups":[{"categories":{"games":"block"},"name":"ks2"}]}"#;
    let initial = store
        .record_unapplied_policy(
            None,
            first,
            &[PolicyItemChange {
                item: "policy".to_owned(),
                before: None,
                after: Some(first.to_owned()),
            }],
        )
        .await
        .unwrap();
    assert_eq!(initial.applied_by, "config file");
    assert_eq!(initial.reason, "initial policy");

    // A technician applies an edit: one entry per item, with the reason.
    let second = r#"{"groups":[{"categories":{"games":"allow"},"name":"ks2"}]}"#;
    let games = PolicyItemChange {
        item: "group ks2: category games".to_owned(),
        before: Some("\"block\"".to_owned()),
        after: Some("\"allow\"".to_owned()),
    };
    let social = PolicyItemChange {
        item: "group ks2: category social".to_owned(),
        before: None,
        after: Some("\"block\"".to_owned()),
    };
    // Without a reason, nothing is recorded.
    let blank = store
        .apply_policy(
            &tech,
            Some(initial.id),
            second,
            std::slice::from_ref(&games),
            "  ",
        )
        .await;
    assert!(
        matches!(
            blank,
            Err(StoreError::Invalid {
                field: "reason",
                ..
            })
        ),
        "{blank:?}"
    );
    // Against a copy that is no longer the newest, nothing is recorded.
    let stale = store
        .apply_policy(
            &tech,
            None,
            second,
            std::slice::from_ref(&games),
            "Games for wet play",
        )
        .await;
    assert!(
        matches!(stale, Err(StoreError::Invalid { .. })),
        "{stale:?}"
    );
    let applied = store
        .apply_policy(
            &tech,
            Some(initial.id),
            second,
            &[games.clone(), social.clone()],
            "Games for wet play",
        )
        .await
        .unwrap();
    assert_eq!(store.applied_policy().await.unwrap(), Some(applied.clone()));
    assert_eq!(applied.policy, second);
    assert!(applied.applied_by.contains("tech@school.invalid"));

    // A teacher may not apply: refused, audited, nothing stored.
    let refused = store
        .apply_policy(
            &teacher,
            Some(applied.id),
            first,
            std::slice::from_ref(&games),
            "mine",
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::Forbidden { .. })),
        "{refused:?}"
    );
    assert_eq!(store.applied_policy().await.unwrap(), Some(applied.clone()));

    // An edit found at start-up is the file's, with the reason saying so.
    let third = r#"{"groups":[{"categories":{},"name":"ks2"}]}"#;
    store
        .record_unapplied_policy(
            Some(applied.id),
            third,
            &[PolicyItemChange {
                item: "group ks2: category games".to_owned(),
                before: Some("\"allow\"".to_owned()),
                after: None,
            }],
        )
        .await
        .unwrap();

    let changes = store
        .filtering_changes(&ChangeFilter::default())
        .await
        .unwrap();
    let policy: Vec<(&str, &str, &str, &str)> = changes
        .iter()
        .filter(|c| c.entity == "filtering_policy" || c.action == "refused")
        .map(|c| {
            (
                c.action.as_str(),
                c.entity_id.as_deref().unwrap_or(""),
                c.reason.as_deref().unwrap_or(""),
                c.actor.as_str(),
            )
        })
        .collect();
    assert_eq!(
        policy,
        [
            (
                "remove",
                "group ks2: category games",
                "edited without `sheepdog policy apply`",
                "config file"
            ),
            (
                "refused",
                "policy file",
                "refused: teacher@school.invalid does not hold the filtering manager's role (technician) in every school",
                format!("account:{}:teacher@school.invalid", teacher.id).as_str()
            ),
            (
                "add",
                "group ks2: category social",
                "Games for wet play",
                format!("account:{}:tech@school.invalid", tech.id).as_str()
            ),
            (
                "change",
                "group ks2: category games",
                "Games for wet play",
                format!("account:{}:tech@school.invalid", tech.id).as_str()
            ),
            ("add", "policy", "initial policy", "config file"),
        ]
    );
    let change = changes
        .iter()
        .find(|c| c.action == "change" && c.entity == "filtering_policy")
        .unwrap();
    assert_eq!(change.before.as_deref(), Some("\"block\""));
    assert_eq!(change.after.as_deref(), Some("\"allow\""));
    assert!(store.verify_audit().await.unwrap().is_intact());
}

async fn membership_and_device_changes_need_a_reason(store: Store) {
    let school = school(&store).await.id;
    let actor = Actor::command_line("test");
    let group = store
        .ensure_group(&actor, school, "Lunch club", GroupKind::Custom, Some("ks2"))
        .await
        .unwrap();
    store
        .import_people(&actor, school, &super::roster(), false)
        .await
        .unwrap();
    let pupil = store.people(school, None).await.unwrap()[0].id;
    for blank in ["", "   "] {
        let refused = store.add_group_member(&actor, group.id, pupil, blank).await;
        assert!(
            matches!(
                refused,
                Err(StoreError::Invalid {
                    field: "reason",
                    ..
                })
            ),
            "{refused:?}"
        );
    }
    assert!(store.group_members(group.id).await.unwrap().is_empty());
    store
        .add_group_member(&actor, group.id, pupil, "Joined the lunch club")
        .await
        .unwrap();
    assert!(matches!(
        store.remove_group_member(&actor, group.id, pupil, "").await,
        Err(StoreError::Invalid {
            field: "reason",
            ..
        })
    ));
    assert_eq!(store.group_members(group.id).await.unwrap(), vec![pupil]);
    store
        .remove_group_member(&actor, group.id, pupil, "Left the lunch club")
        .await
        .unwrap();
    let device = DeviceDetails {
        name: "LIB-01".to_owned(),
        mac: None,
        address: Some("10.0.4.9".to_owned()),
        owner_id: Some(pupil),
        group_id: None,
        ownership: Ownership::School,
    };
    assert!(matches!(
        store.save_device(&actor, school, device.clone(), " ").await,
        Err(StoreError::Invalid {
            field: "reason",
            ..
        })
    ));
    store
        .save_device(&actor, school, device, "Library laptop lent for the term")
        .await
        .unwrap();

    let changes = store
        .filtering_changes(&ChangeFilter::default())
        .await
        .unwrap();
    let reasons: Vec<(&str, &str)> = changes
        .iter()
        .filter(|c| c.action != "create" || c.entity == "device")
        .map(|c| (c.action.as_str(), c.reason.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(
        reasons[..3],
        [
            ("create", "Library laptop lent for the term"),
            ("remove_member", "Left the lunch club"),
            ("add_member", "Joined the lunch club"),
        ]
    );
}
