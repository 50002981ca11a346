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
    block_reports_are_allowed_or_kept_blocked_with_a_reason
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
