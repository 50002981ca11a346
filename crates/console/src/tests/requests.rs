//! The request, report, change-log and policy routes for every role, and
//! the request pages' forms.

use sheepdog_policy::{build_snapshot, CompiledPolicy, Engine, PolicyDocument};

use super::*;

const POLICY: &str = r#"
fallback_group = "guest"

[school]
name = "Wrenmoor Primary"
time_zone = "Europe/London"

[[groups]]
name = "guest"
default = "block"

[[groups]]
name = "ks2"
default = "allow"
"#;

fn with_filtering(f: &mut Fixture) {
    let doc = PolicyDocument::from_toml(POLICY).unwrap();
    let (snapshot, _) = build_snapshot(&doc, f._dir.path(), None).unwrap();
    let engine = std::sync::Arc::new(Engine::new(
        CompiledPolicy::compile(&doc, std::sync::Arc::new(snapshot)).unwrap(),
    ));
    f.state =
        f.state
            .clone()
            .with_filtering(Filtering::new(engine, doc, chrono::Duration::hours(8)));
}

/// Who gets each route, written out rather than derived from
/// `roles::grants`: in order Headteacher, DSL, deputy DSL, technician,
/// teacher, teaching assistant, office, governor, safeguarding governor,
/// chair of governors, trust administrator.
const ROUTES: &[(&str, [bool; 11])] = &[
    (
        "/requests",
        [
            true, true, true, true, true, true, false, false, false, false, true,
        ],
    ),
    (
        "/requests/new",
        [
            true, true, true, true, true, true, false, false, false, false, true,
        ],
    ),
    (
        "/requests.csv",
        [
            true, true, true, true, true, true, false, false, false, false, true,
        ],
    ),
    (
        "/reports",
        [
            false, false, false, true, false, false, false, false, false, false, true,
        ],
    ),
    (
        "/changes",
        [
            true, true, false, true, false, false, false, false, false, false, true,
        ],
    ),
    (
        "/changes.csv",
        [
            true, true, false, true, false, false, false, false, false, false, true,
        ],
    ),
    ("/policy", [true; 11]),
    ("/policy.md", [true; 11]),
    ("/policy.pdf", [true; 11]),
    (
        "/api/v1/requests",
        [
            true, true, true, true, true, true, false, false, false, false, true,
        ],
    ),
];

const ROLES: [StaffRole; 11] = [
    StaffRole::Headteacher,
    StaffRole::Dsl,
    StaffRole::DeputyDsl,
    StaffRole::Technician,
    StaffRole::Teacher,
    StaffRole::TeachingAssistant,
    StaffRole::Office,
    StaffRole::Governor,
    StaffRole::SafeguardingGovernor,
    StaffRole::ChairOfGovernors,
    StaffRole::TrustAdministrator,
];

#[tokio::test]
async fn every_role_gets_exactly_its_request_routes() {
    assert_eq!(ROLES.len(), StaffRole::ALL.len());
    // A single school, so that the change log (deployment-wide, like the
    // audit log) is readable with a school's own roles.
    let mut f = fixture_with(ConsoleSettings::default(), false).await;
    with_filtering(&mut f);
    for (index, role) in ROLES.iter().enumerate() {
        let school = (*role != StaffRole::TrustAdministrator).then_some(f.school);
        let id = account(&f, &format!("{role}@wrenmoor.invalid"), *role, school).await;
        let (cookie, _) = session(&f, id).await;
        let token = api_token(&f, id).await;
        for (route, allowed) in ROUTES {
            let reply = if route.starts_with("/api/") {
                send(
                    &f,
                    Request::get(*route)
                        .header(header::AUTHORIZATION, format!("Bearer {token}"))
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
            } else {
                get(&f, route, &cookie).await
            };
            let expected = if allowed[index] {
                StatusCode::OK
            } else {
                StatusCode::FORBIDDEN
            };
            assert_eq!(reply.status, expected, "{role} {route}: {}", reply.body);
        }
    }
    for (route, _) in ROUTES.iter().filter(|(r, _)| !r.starts_with("/api/")) {
        assert_eq!(
            get(&f, route, "").await.location.as_deref(),
            Some("/sign-in"),
            "{route}"
        );
    }
}

#[tokio::test]
async fn the_request_form_names_each_problem_and_keeps_what_was_typed() {
    let mut f = fixture_with(ConsoleSettings::default(), false).await;
    with_filtering(&mut f);
    let id = account(
        &f,
        "teacher@wrenmoor.invalid",
        StaffRole::Teacher,
        Some(f.school),
    )
    .await;
    let (cookie, csrf) = session(&f, id).await;
    let form = get(&f, "/requests/new?site=maps.example.org", &cookie).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.body.contains("value=\"maps.example.org\""));
    let school = f.school.to_string();
    let reply = post(
        &f,
        "/requests",
        &cookie,
        &[
            ("csrf", &csrf),
            ("school", &school),
            ("site", "not a site"),
            ("group", "no-such-group"),
            ("reason", ""),
            ("purpose", "Year 4 geography"),
            ("start", "2026-10-05T09:00"),
            ("end", "later"),
        ],
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    for expected in [
        "is not a site name or web address",
        "`no-such-group` is not a group of the filtering policy",
        "say why the site is needed",
        "give the end as a date and time",
        "value=\"Year 4 geography\"",
        "value=\"not a site\"",
    ] {
        assert!(reply.body.contains(expected), "{expected}: {}", reply.body);
    }
    // Longer than the school allows: the store's limit, on the end field.
    let now = chrono::Utc::now();
    let reply = post(
        &f,
        "/requests",
        &cookie,
        &[
            ("csrf", &csrf),
            ("school", &school),
            ("site", "maps.example.org"),
            ("group", "ks2"),
            ("reason", "Maps of the local area"),
            ("purpose", "Year 4 geography"),
            ("start", &now.to_rfc3339()),
            ("end", &(now + chrono::Duration::hours(9)).to_rfc3339()),
        ],
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reply.body.contains("at most 8 hours"), "{}", reply.body);
    assert!(reply.body.contains("Maps of the local area"));
}

#[tokio::test]
async fn request_history_is_searchable_and_exports_csv() {
    let mut f = fixture_with(ConsoleSettings::default(), false).await;
    with_filtering(&mut f);
    let teacher = account(
        &f,
        "teacher@wrenmoor.invalid",
        StaffRole::Teacher,
        Some(f.school),
    )
    .await;
    let tech = account(
        &f,
        "tech@wrenmoor.invalid",
        StaffRole::Technician,
        Some(f.school),
    )
    .await;
    let (cookie, _) = session(&f, teacher).await;
    let token = api_token(&f, teacher).await;
    let now = chrono::Utc::now();
    for (site, reason) in [
        ("maps.example.org", "Maps"),
        ("volcano.example.org", "Volcanoes"),
    ] {
        let body = serde_json::json!({
            "site": site, "group": "ks2", "reason": reason, "purpose": "Geography",
            "starts_at": now.to_rfc3339(),
            "ends_at": (now + chrono::Duration::hours(1)).to_rfc3339(),
        });
        let reply = send(
            &f,
            Request::post("/api/v1/requests")
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    }
    let found = get(&f, "/requests?q=volcano", &cookie).await;
    assert!(found.body.contains("volcano.example.org"));
    assert!(!found.body.contains("maps.example.org"));
    let csv = get(&f, "/requests.csv?status=pending", &cookie).await;
    assert_eq!(csv.status, StatusCode::OK);
    assert_eq!(csv.body.lines().count(), 3, "{}", csv.body);
    assert!(csv.body.starts_with("reference,status,site"));
    // The technician approves one through the API; the teacher sees it.
    let tech_token = api_token(&f, tech).await;
    let reply = send(
        &f,
        Request::post("/api/v1/requests/1/decision")
            .header(header::AUTHORIZATION, format!("Bearer {tech_token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(r#"{"approve": true, "comment": "ok"}"#))
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(reply.body.contains("\"status\":\"approved\""));
    let csv = get(&f, "/requests.csv?status=approved", &cookie).await;
    assert_eq!(csv.body.lines().count(), 2, "{}", csv.body);
    // The policy page shows the approved exception.
    let policy = get(&f, "/policy", &cookie).await;
    assert_eq!(policy.status, StatusCode::OK);
    assert!(
        policy
            .body
            .contains("<h1>Filtering policy: Wrenmoor Primary</h1>"),
        "{}",
        policy.body
    );
    let markdown = get(&f, "/policy.md", &cookie).await;
    assert!(markdown
        .body
        .starts_with("# Filtering policy: Wrenmoor Primary"));
    assert!(
        markdown.body.contains("maps.example.org") || markdown.body.contains("volcano.example.org")
    );
    // The same document as a PDF, its text searchable in the file.
    let pdf = get(&f, "/policy.pdf", &cookie).await;
    assert_eq!(pdf.status, StatusCode::OK);
    assert!(pdf.body.starts_with("%PDF-"), "{}", pdf.body);
    for text in [
        "Filtering policy: Wrenmoor Primary",
        "ks2",
        "Illegal content, blocked for everyone",
        "Page 1 of",
    ] {
        assert!(pdf.body.contains(text), "{text:?} is not in the PDF");
    }
    assert!(pdf.body.contains("maps.example.org") || pdf.body.contains("volcano.example.org"));
}

#[tokio::test]
async fn a_teacher_changing_a_group_is_refused_and_on_the_change_log() {
    let f = fixture_with(ConsoleSettings::default(), false).await;
    let group = f
        .state
        .store()
        .ensure_group(
            &Actor::system("test"),
            f.school,
            "4K",
            sheepdog_store::GroupKind::Class,
            Some("ks2"),
        )
        .await
        .unwrap();
    let teacher = account(
        &f,
        "teacher@wrenmoor.invalid",
        StaffRole::Teacher,
        Some(f.school),
    )
    .await;
    let (cookie, csrf) = session(&f, teacher).await;
    let school = f.school.to_string();
    let pupil = f.pupil.to_string();
    let members = f.state.store().group_members(group.id).await.unwrap();
    let reply = post(
        &f,
        &format!("/groups/{}", group.id),
        &cookie,
        &[
            ("csrf", &csrf),
            ("school", &school),
            ("person", &pupil),
            ("change", "remove"),
        ],
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(
        f.state.store().group_members(group.id).await.unwrap(),
        members
    );
    let changes = f
        .state
        .store()
        .filtering_changes(&Default::default())
        .await
        .unwrap();
    let refused = changes
        .iter()
        .find(|c| c.action == "refused")
        .expect("the refusal is on the change log");
    assert_eq!(
        refused.entity_id.as_deref(),
        Some(format!("group:{}", group.id).as_str())
    );
    assert!(refused.actor.contains("teacher@wrenmoor.invalid"));
}

#[tokio::test]
async fn policy_file_edits_show_on_the_change_log_with_before_after_and_reason() {
    use sheepdog_policy::changes::policy_changes;
    use sheepdog_store::PolicyItemChange;

    let f = fixture_with(ConsoleSettings::default(), false).await;
    let store = f.state.store();
    let tech = account(
        &f,
        "tech@wrenmoor.invalid",
        StaffRole::Technician,
        Some(f.school),
    )
    .await;
    let before = PolicyDocument::from_toml(POLICY).unwrap();
    let initial = store
        .record_unapplied_policy(
            None,
            &before.canonical_json(),
            &[PolicyItemChange {
                item: "policy".to_owned(),
                before: None,
                after: Some(before.canonical_json()),
            }],
        )
        .await
        .unwrap();
    let edited = POLICY.replace(
        "name = \"ks2\"\ndefault = \"allow\"",
        "name = \"ks2\"\ndefault = \"allow\"\ncategories = { games = \"block\" }",
    );
    let after = PolicyDocument::from_toml(&edited).unwrap();
    let changes: Vec<PolicyItemChange> = policy_changes(&before.canonical_json(), &after)
        .into_iter()
        .map(|c| PolicyItemChange {
            item: c.item,
            before: c.before.map(|v| v.to_string()),
            after: c.after.map(|v| v.to_string()),
        })
        .collect();
    assert_eq!(changes.len(), 1, "{changes:?}");
    let (manager, _) = store
        .account_for_sign_in("tech@wrenmoor.invalid")
        .await
        .unwrap()
        .unwrap();
    store
        .apply_policy(
            &manager,
            Some(initial.id),
            &after.canonical_json(),
            &changes,
            "Games blocked in lessons for KS2",
        )
        .await
        .unwrap();

    let (cookie, _) = session(&f, tech).await;
    let page = get(&f, "/changes", &cookie).await;
    assert_eq!(page.status, StatusCode::OK);
    for text in [
        "add filtering_policy group ks2: category games",
        "Games blocked in lessons for KS2",
        "<code>&quot;block&quot;</code>",
        "tech@wrenmoor.invalid",
        "config file",
        "initial policy",
    ] {
        assert!(page.body.contains(text), "{text:?} in {}", page.body);
    }
    let csv = get(&f, "/changes.csv?q=games", &cookie).await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(
        csv.body.contains("Games blocked in lessons for KS2"),
        "{}",
        csv.body
    );
    assert!(
        csv.body.contains("group ks2: category games"),
        "{}",
        csv.body
    );
}
