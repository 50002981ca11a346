//! Alert triage and incidents through the console's routes and the API:
//! the permission matrix of the new routes, the routing rules (R4), the
//! need-to-know rule, each branch of the flowchart, the refusal of images
//! on suspected child sexual abuse imagery incidents, evidence and its
//! custody, triage in bulk and the false-positive figures.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use sheepdog_store::incidents::EvidenceKey;
use sheepdog_store::{
    Actor, AlertPolicy, ImportBatch, NewAlert, PersonDetails, PersonKind, StaffRole,
};

use super::*;

/// The new routes, role by role (docs/console.md): the alert queue and its
/// figures, an alert, the incident list, the concern form, the retention
/// report, a pupil's chronology.
const INCIDENT_MATRIX: &[(StaffRole, [bool; 7])] = &[
    (
        StaffRole::Headteacher,
        [false, false, false, true, true, true, true],
    ),
    (StaffRole::Dsl, [true, true, true, true, true, true, true]),
    (
        StaffRole::DeputyDsl,
        [true, true, true, true, true, true, true],
    ),
    (
        StaffRole::Technician,
        [false, false, false, false, true, false, false],
    ),
    (
        StaffRole::Teacher,
        [false, false, false, false, true, false, false],
    ),
    (
        StaffRole::TeachingAssistant,
        [false, false, false, false, true, false, false],
    ),
    (
        StaffRole::Office,
        [false, false, false, false, true, false, false],
    ),
    (
        StaffRole::Governor,
        [false, false, false, false, true, false, false],
    ),
    (
        StaffRole::SafeguardingGovernor,
        [false, false, false, false, true, false, false],
    ),
    // The chair reads concerns about the headteacher, so the list opens;
    // a pupil's chronology is the safeguarding team's.
    (
        StaffRole::ChairOfGovernors,
        [false, false, false, true, true, true, false],
    ),
    (
        StaffRole::TrustAdministrator,
        [false, false, false, false, true, false, false],
    ),
];

fn alert(person: Option<i64>, category: &str, term: &str, minute: u32) -> NewAlert {
    NewAlert {
        person_id: person,
        subject: format!("subject-{category}-{minute}"),
        device_id: None,
        device_name: Some("HALL-PC-01".to_string()),
        address: Some("10.0.4.17".to_string()),
        category: category.to_string(),
        grade: 4,
        matched_text: term.to_string(),
        source: "proxy".to_string(),
        at: format!("2026-11-23T09:{minute:02}:00Z").parse().unwrap(),
        event_ids: vec![i64::from(minute) + 1000],
        context: serde_json::json!({"hits": [{"matched": term}]}),
    }
}

async fn raise(f: &Fixture, person: Option<i64>, category: &str, term: &str, minute: u32) -> i64 {
    f.state
        .store()
        .record_alert(
            &Actor::system("test"),
            f.school,
            &alert(person, category, term, minute),
            &AlertPolicy::default(),
        )
        .await
        .unwrap()
        .alert()
        .id
}

/// Staff records for the allegations: a teacher and the headteacher, each
/// with the account they sign in with.
struct Staff {
    teacher_person: i64,
    head_person: i64,
    teacher: i64,
    head: i64,
    dsl: i64,
    chair: i64,
}

async fn staff(f: &Fixture) -> Staff {
    let admin = Actor::command_line("test");
    let person = |id: &str, given: &str| PersonDetails {
        kind: PersonKind::Staff,
        external_id: Some(id.to_string()),
        upn: None,
        given_name: given.to_string(),
        family_name: "Quillon".to_string(),
        date_of_birth: None,
        year_group: None,
        class_name: None,
        email: None,
        roles: vec![],
        active: true,
    };
    f.state
        .store()
        .import_people(
            &admin,
            f.school,
            &ImportBatch {
                people: vec![person("ST01", "Maris"), person("ST02", "Tobin")],
                guardians: vec![],
            },
            false,
        )
        .await
        .unwrap();
    let people = f
        .state
        .store()
        .people(f.school, Some(PersonKind::Staff))
        .await
        .unwrap();
    let find = |given: &str| {
        people
            .iter()
            .find(|p| p.details.given_name == given)
            .unwrap()
            .id
    };
    let (teacher_person, head_person) = (find("Maris"), find("Tobin"));
    let teacher = account(
        f,
        "teacher@wrenmoor.invalid",
        StaffRole::Teacher,
        Some(f.school),
    )
    .await;
    let head = account(
        f,
        "head@wrenmoor.invalid",
        StaffRole::Headteacher,
        Some(f.school),
    )
    .await;
    for (account_id, person) in [(teacher, teacher_person), (head, head_person)] {
        f.state
            .store()
            .set_account_person(&admin, account_id, Some(person))
            .await
            .unwrap();
    }
    Staff {
        teacher_person,
        head_person,
        teacher,
        head,
        dsl: account(f, "dsl@wrenmoor.invalid", StaffRole::Dsl, Some(f.school)).await,
        chair: account(
            f,
            "chair@wrenmoor.invalid",
            StaffRole::ChairOfGovernors,
            Some(f.school),
        )
        .await,
    }
}

async fn keyed(settings: ConsoleSettings) -> Fixture {
    let mut f = fixture(settings).await;
    f.state = f
        .state
        .clone()
        .with_evidence_key(EvidenceKey::generate().unwrap());
    f
}

async fn api_json(
    f: &Fixture,
    method: &str,
    path: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> (StatusCode, serde_json::Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"));
    let request = match body {
        Some(body) => request
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string())),
        None => request.body(Body::empty()),
    }
    .unwrap();
    let reply = send(f, request).await;
    let value = serde_json::from_str(&reply.body).unwrap_or(serde_json::Value::Null);
    (reply.status, value)
}

async fn api_upload(
    f: &Fixture,
    token: &str,
    incident: i64,
    name: &str,
    media: &str,
    bytes: &[u8],
) -> (StatusCode, serde_json::Value) {
    let reply = send(
        f,
        Request::post(format!(
            "/api/v1/incidents/{incident}/evidence?file_name={name}"
        ))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, media)
        .body(Body::from(bytes.to_vec()))
        .unwrap(),
    )
    .await;
    (
        reply.status,
        serde_json::from_str(&reply.body).unwrap_or(serde_json::Value::Null),
    )
}

fn concern(about: &str, people: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "category": "conduct",
        "summary": "Unkind messages in a class chat",
        "description": "Seen on a shared screen in the hall.",
        "occurred_at": chrono::Utc::now().to_rfc3339(),
        "device": "HALL-PC-01",
        "location": "Hall",
        "urgency": "today",
        "about": about,
        "people": people,
        "alert_id": null,
        "event_id": null,
    })
}

#[tokio::test]
async fn incident_and_alert_routes_follow_the_matrix() {
    let f = keyed(ConsoleSettings::default()).await;
    let alert = raise(&f, Some(f.pupil), "self-harm", "hopeless", 1).await;
    let routes = [
        format!("/alerts?school={}", f.school),
        format!("/alerts/figures?school={}", f.school),
        format!("/alerts/{alert}"),
        format!("/incidents?school={}", f.school),
        format!("/incidents/new?school={}", f.school),
        format!("/incidents/due-for-review?school={}", f.school),
        format!("/people/{}/chronology", f.pupil),
    ];
    assert_eq!(INCIDENT_MATRIX.len(), StaffRole::ALL.len());
    for (role, allowed) in INCIDENT_MATRIX {
        let school = (*role != StaffRole::TrustAdministrator).then_some(f.school);
        let id = account(&f, &format!("{role}@wrenmoor.invalid"), *role, school).await;
        let (cookie, _) = session(&f, id).await;
        for (route, allow) in routes.iter().zip(allowed) {
            let reply = get(&f, route, &cookie).await;
            let expected = if *allow {
                StatusCode::OK
            } else {
                StatusCode::FORBIDDEN
            };
            assert_eq!(reply.status, expected, "{role} {route}: {}", reply.body);
        }
        // Held in the other school, a role gives nothing here.
        let elsewhere = account(
            &f,
            &format!("{role}@tallow.invalid"),
            *role,
            Some(f.other_school),
        )
        .await;
        let (cookie, _) = session(&f, elsewhere).await;
        for route in &routes {
            let reply = get(&f, route, &cookie).await;
            assert_eq!(
                reply.status,
                StatusCode::FORBIDDEN,
                "{role} elsewhere {route}"
            );
        }
    }
    // The hide-screen page is neutral and needs nobody signed in.
    let hidden = get(&f, "/hide", "").await;
    assert_eq!(hidden.status, StatusCode::OK);
    assert!(hidden.body.contains("Timetable"));
    assert!(!hidden.body.contains("sheepdog"));
}

#[tokio::test]
async fn concerns_are_routed_and_only_those_named_may_open_them() {
    let f = keyed(ConsoleSettings::default()).await;
    let s = staff(&f).await;
    let deputy = account(
        &f,
        "deputy@wrenmoor.invalid",
        StaffRole::DeputyDsl,
        Some(f.school),
    )
    .await;
    let (teacher_cookie, teacher_csrf) = session(&f, s.teacher).await;

    // A teacher logs a concern about a pupil through the form, with a
    // witness described in words and a time two days ago.
    let form = get(
        &f,
        &format!("/incidents/new?school={}", f.school),
        &teacher_cookie,
    )
    .await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.body.contains("id=\"hide-screen\""), "{}", form.body);
    assert!(form.body.contains("Pella Varrowby"));
    let two_days_ago = (chrono::Utc::now() - chrono::Duration::days(2))
        .format("%Y-%m-%d %H:%M")
        .to_string();
    let pupil = f.pupil.to_string();
    let logged = post(
        &f,
        &format!("/incidents/new?school={}", f.school),
        &teacher_cookie,
        &[
            ("csrf", &teacher_csrf),
            ("about", "pupil"),
            ("pupil", &pupil),
            (
                "others",
                "An older pupil from another school, name not known",
            ),
            ("witnesses", "A lunchtime supervisor who saw the screen"),
            ("category", "contact"),
            ("summary", "Messages from an unknown adult"),
            ("description", "Pupil showed me messages asking to meet."),
            ("occurred", &two_days_ago),
            ("device", "HALL-PC-01"),
            ("location", "Hall"),
            ("urgency", "immediate"),
        ],
    )
    .await;
    assert_eq!(logged.status, StatusCode::CREATED, "{}", logged.body);
    assert!(logged.body.contains("INC-"), "{}", logged.body);
    assert!(logged.body.contains("designated safeguarding lead"));
    let incidents = f
        .state
        .store()
        .incidents(
            &f.state.store().account(s.dsl).await.unwrap().unwrap(),
            f.school,
            None,
        )
        .await
        .unwrap();
    let pupil_case = incidents[0].id;
    assert!(incidents[0].recorded_late);
    let roles: Vec<String> = incidents[0]
        .people
        .iter()
        .map(|p| p.role.to_string())
        .collect();
    assert_eq!(roles, ["involved", "involved", "witness"]);

    // The teacher who logged it is not a reader: refused; the DSL and the
    // deputy read it, and the page shows the backdating.
    let refused = get(&f, &format!("/incidents/{pupil_case}"), &teacher_cookie).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    let (dsl_cookie, _) = session(&f, s.dsl).await;
    let page = get(&f, &format!("/incidents/{pupil_case}"), &dsl_cookie).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Recorded late"), "{}", page.body);
    assert!(page
        .body
        .contains("Is illegal material or activity suspected?"));
    let (deputy_cookie, _) = session(&f, deputy).await;
    assert_eq!(
        get(&f, &format!("/incidents/{pupil_case}"), &deputy_cookie)
            .await
            .status,
        StatusCode::OK
    );

    // About a member of staff: the headteacher alone; the subject, the DSL
    // and the teacher are refused. Through the API this time.
    let teacher_token = api_token(&f, s.teacher).await;
    let (status, receipt) = api_json(
        &f,
        "POST",
        &format!("/api/v1/incidents?school={}", f.school),
        &teacher_token,
        Some(concern(
            "staff",
            serde_json::json!([{"person_id": s.teacher_person, "description": null, "role": "subject"}]),
        )),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{receipt}");
    assert_eq!(receipt["route"], "headteacher");
    let staff_case = receipt["id"].as_i64().unwrap();
    let head_token = api_token(&f, s.head).await;
    let dsl_token = api_token(&f, s.dsl).await;
    let chair_token = api_token(&f, s.chair).await;
    let (status, case) = api_json(
        &f,
        "GET",
        &format!("/api/v1/incidents/{staff_case}"),
        &head_token,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{case}");
    assert_eq!(case["incident"]["lado_referral_needed"], true);
    for token in [&teacher_token, &dsl_token, &chair_token] {
        let (status, _) = api_json(
            &f,
            "GET",
            &format!("/api/v1/incidents/{staff_case}"),
            token,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }

    // About the headteacher: the chair of governors alone, with the LADO
    // referral flagged; the headteacher, its subject, can never open it.
    let (status, receipt) = api_json(
        &f,
        "POST",
        &format!("/api/v1/incidents?school={}", f.school),
        &dsl_token,
        Some(concern(
            "headteacher",
            serde_json::json!([{"person_id": s.head_person, "description": null, "role": "subject"}]),
        )),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{receipt}");
    assert_eq!(receipt["route"], "chair_of_governors");
    let head_case = receipt["id"].as_i64().unwrap();
    let (chair_cookie, _) = session(&f, s.chair).await;
    let page = get(&f, &format!("/incidents/{head_case}"), &chair_cookie).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("LADO"), "{}", page.body);
    let (head_cookie, _) = session(&f, s.head).await;
    let page = get(&f, &format!("/incidents/{head_case}"), &head_cookie).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.body.contains("about you"), "{}", page.body);
    for token in [&head_token, &dsl_token] {
        let (status, _) = api_json(
            &f,
            "GET",
            &format!("/api/v1/incidents/{head_case}"),
            token,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }

    // Each list holds only what its reader may open.
    let (_, list) = api_json(&f, "GET", "/api/v1/incidents", &head_token, None).await;
    let ids: Vec<i64> = list["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{list}");
    assert!(ids.contains(&pupil_case) && ids.contains(&staff_case));
    let chair_list = get(&f, "/incidents", &chair_cookie).await;
    assert!(chair_list.body.contains("1 incidents you may open"));
}

#[tokio::test]
async fn the_illegal_path_has_fixed_steps_and_refuses_images_for_csam() {
    let f = keyed(ConsoleSettings::default()).await;
    let s = staff(&f).await;
    let token = api_token(&f, s.dsl).await;
    let pupil =
        serde_json::json!([{"person_id": f.pupil, "description": null, "role": "involved"}]);
    let create = |token: String| {
        let body = concern("pupil", pupil.clone());
        let f = &f;
        async move {
            let (status, receipt) = api_json(
                f,
                "POST",
                &format!("/api/v1/incidents?school={}", f.school),
                &token,
                Some(body),
            )
            .await;
            assert_eq!(status, StatusCode::CREATED, "{receipt}");
            receipt["id"].as_i64().unwrap()
        }
    };

    // Suspected child sexual abuse images: police, IWF, references.
    let csam = create(token.clone()).await;
    let (status, incident) = api_json(
        &f,
        "POST",
        &format!("/api/v1/incidents/{csam}/path"),
        &token,
        Some(serde_json::json!({"illegal": "child_sexual_abuse_images"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{incident}");
    let (_, case) = api_json(
        &f,
        "GET",
        &format!("/api/v1/incidents/{csam}"),
        &token,
        None,
    )
    .await;
    let steps: Vec<&str> = case["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["data"]["type"] == "step")
        .map(|e| e["data"]["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "stop",
            "isolate_device",
            "report_police",
            "report_iwf",
            "record_references",
            "await_police"
        ]
    );
    // Reporting without the reference is refused; with it, done.
    let (status, error) = api_json(
        &f,
        "POST",
        &format!("/api/v1/incidents/{csam}/steps"),
        &token,
        Some(serde_json::json!({"step": "report_police", "note": null, "reference": " "})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert!(error["error"].as_str().unwrap().contains("reference"));
    let (status, _) = api_json(
        &f,
        "POST",
        &format!("/api/v1/incidents/{csam}/steps"),
        &token,
        Some(serde_json::json!({"step": "report_police", "note": "PC on duty", "reference": "CRIME-0001"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // An image is refused by content, whatever it is called, with the
    // reason; a written statement as text is accepted.
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    let (status, error) = api_upload(&f, &token, csam, "notes.txt", "text/plain", &png).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{error}");
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("no images may be uploaded"),
        "{error}"
    );
    let (status, info) = api_upload(
        &f,
        &token,
        csam,
        "statement.txt",
        "text/plain",
        b"Written description of what the pupil reported.",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{info}");
    // The page shows the warning, and its upload form refuses the image
    // with the reason on the page.
    let (cookie, csrf) = session(&f, s.dsl).await;
    let page = get(&f, &format!("/incidents/{csam}"), &cookie).await;
    assert!(
        page.body.contains("No images may be attached"),
        "{}",
        page.body
    );
    assert!(page.body.contains("CRIME-0001"));
    let refused = multipart_upload(&f, &cookie, &csrf, csam, "photo.png", "image/png", &png).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(
        refused.body.contains("no images may be uploaded"),
        "{}",
        refused.body
    );
    let refusals = f
        .state
        .store()
        .audit_entries(Some("incident"), 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "refuse_upload")
        .count();
    assert_eq!(refusals, 2);

    // Grooming: CEOP instead of the IWF, chosen through the page's form.
    let grooming = create(token.clone()).await;
    let answered = post(
        &f,
        &format!("/incidents/{grooming}/path"),
        &cookie,
        &[("csrf", &csrf), ("answer", "grooming")],
    )
    .await;
    assert_eq!(answered.status, StatusCode::SEE_OTHER, "{}", answered.body);
    let page = get(&f, &format!("/incidents/{grooming}"), &cookie).await;
    assert!(
        page.body.contains("id=\"step-report_ceop\""),
        "{}",
        page.body
    );
    assert!(!page.body.contains("id=\"step-report_iwf\""));
    // Closing needs the police report first.
    let closing = post(
        &f,
        &format!("/incidents/{grooming}/close"),
        &cookie,
        &[
            ("csrf", &csrf),
            ("outcome", "Police took the device"),
            ("debrief", "Done"),
        ],
    )
    .await;
    assert_eq!(closing.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(closing.body.contains("police report"), "{}", closing.body);
}

async fn multipart_upload(
    f: &Fixture,
    cookie: &str,
    csrf: &str,
    incident: i64,
    name: &str,
    media: &str,
    bytes: &[u8],
) -> Reply {
    let boundary = "XsheepdogBoundary7";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
             Content-Type: {media}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(
        format!(
            "\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"description\"\r\n\r\n\
             Screenshot\r\n--{boundary}--\r\n"
        )
        .as_bytes(),
    );
    send(
        f,
        Request::post(format!("/incidents/{incident}/evidence?csrf={csrf}"))
            .header(header::COOKIE, cookie)
            .header(
                header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(Body::from(body))
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn the_internal_path_needs_two_senior_reviewers_then_closes_and_reopens() {
    let f = keyed(ConsoleSettings::default()).await;
    let s = staff(&f).await;
    let (cookie, csrf) = session(&f, s.dsl).await;
    let token = api_token(&f, s.dsl).await;
    let (_, receipt) = api_json(
        &f,
        "POST",
        &format!("/api/v1/incidents?school={}", f.school),
        &token,
        Some(concern(
            "pupil",
            serde_json::json!([{"person_id": f.pupil, "description": null, "role": "involved"}]),
        )),
    )
    .await;
    let id = receipt["id"].as_i64().unwrap();
    let answered = post(
        &f,
        &format!("/incidents/{id}/path"),
        &cookie,
        &[("csrf", &csrf), ("answer", "no")],
    )
    .await;
    assert_eq!(answered.status, StatusCode::SEE_OTHER);
    let page = get(&f, &format!("/incidents/{id}"), &cookie).await;
    assert!(page.body.contains("Record of review"), "{}", page.body);
    // Both senior accounts are offered as reviewers.
    assert!(page.body.contains(&format!("value=\"{}\"", s.head)));

    // A screenshot for the review.
    let shot = multipart_upload(
        &f,
        &cookie,
        &csrf,
        id,
        "chat.png",
        "image/png",
        b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR",
    )
    .await;
    assert_eq!(shot.status, StatusCode::SEE_OTHER, "{}", shot.body);
    let evidence = f
        .state
        .store()
        .evidence_list(&f.state.store().account(s.dsl).await.unwrap().unwrap(), id)
        .await
        .unwrap();
    let shot_id = evidence[0].id.to_string();

    let dsl = s.dsl.to_string();
    let head = s.head.to_string();
    let review = |second: &'static str| {
        let mut form = vec![
            ("csrf", csrf.clone()),
            ("reviewer_1", dsl.clone()),
            ("computer", "OFFICE-PC-02".to_string()),
            (
                "items",
                "https://chat.example/room/4 Unkind messages about a classmate".to_string(),
            ),
            ("screenshot", shot_id.clone()),
            ("conclusion", "Bullying, no illegal content".to_string()),
            ("action", "internal_response".to_string()),
        ];
        form.push(("reviewer_2", second.to_string()));
        form
    };
    // The same person twice is refused, and the page says why.
    let same: Vec<(&str, String)> = review("")
        .into_iter()
        .map(|(k, v)| {
            if k == "reviewer_2" {
                (k, dsl.clone())
            } else {
                (k, v)
            }
        })
        .collect();
    let pairs: Vec<(&str, &str)> = same.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let refused = post(&f, &format!("/incidents/{id}/review"), &cookie, &pairs).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.body.contains("two different senior"),
        "{}",
        refused.body
    );
    // Closing before the review is refused.
    let early = post(
        &f,
        &format!("/incidents/{id}/close"),
        &cookie,
        &[
            ("csrf", &csrf),
            ("outcome", "Resolved"),
            ("debrief", "Talked to both"),
        ],
    )
    .await;
    assert_eq!(early.status, StatusCode::UNPROCESSABLE_ENTITY);
    let two: Vec<(&str, String)> = review("")
        .into_iter()
        .map(|(k, v)| {
            if k == "reviewer_2" {
                (k, head.clone())
            } else {
                (k, v)
            }
        })
        .collect();
    let pairs: Vec<(&str, &str)> = two.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let recorded = post(&f, &format!("/incidents/{id}/review"), &cookie, &pairs).await;
    assert_eq!(recorded.status, StatusCode::SEE_OTHER, "{}", recorded.body);
    let page = get(&f, &format!("/incidents/{id}"), &cookie).await;
    assert!(page.body.contains("OFFICE-PC-02"));
    assert!(page.body.contains("https://chat.example/room/4"));
    assert!(page.body.contains("(headteacher)"), "{}", page.body);

    // An overdue action is highlighted; parents informed is recorded.
    let added = post(
        &f,
        &format!("/incidents/{id}/entries"),
        &cookie,
        &[
            ("csrf", &csrf),
            ("type", "action"),
            ("description", "Meet both families"),
            ("owner", "Class teacher"),
            ("due", "2020-01-06"),
        ],
    )
    .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    post(
        &f,
        &format!("/incidents/{id}/entries"),
        &cookie,
        &[
            ("csrf", &csrf),
            ("type", "parent_contact"),
            ("who", "Mother"),
            ("method", "phone"),
            ("note", "Told what happened and what the school is doing"),
        ],
    )
    .await;
    let page = get(&f, &format!("/incidents/{id}"), &cookie).await;
    assert!(page.body.contains("OVERDUE"), "{}", page.body);
    assert!(page.body.contains("Mother informed (phone)"));
    let list = get(&f, "/incidents", &cookie).await;
    assert!(list.body.contains("id=\"overdue\""));

    // Close with the debrief, then reopen with a reason.
    let closed = post(
        &f,
        &format!("/incidents/{id}/close"),
        &cookie,
        &[
            ("csrf", &csrf),
            ("outcome", "Resolved with both families"),
            ("debrief", "Talked to both pupils"),
            ("lessons", "Chat rooms need a closer eye"),
            ("policy_changes", "None"),
        ],
    )
    .await;
    assert_eq!(closed.status, StatusCode::SEE_OTHER, "{}", closed.body);
    let page = get(&f, &format!("/incidents/{id}"), &cookie).await;
    assert!(page.body.contains("Resolved with both families"));
    let reopened = post(
        &f,
        &format!("/incidents/{id}/reopen"),
        &cookie,
        &[("csrf", &csrf), ("reason", "New messages found")],
    )
    .await;
    assert_eq!(reopened.status, StatusCode::SEE_OTHER);
    let (_, case) = api_json(&f, "GET", &format!("/api/v1/incidents/{id}"), &token, None).await;
    assert_eq!(case["incident"]["status"], "open");

    // The evidence: its SHA-256 on the page and the print, its download
    // audited and shown in the chain of custody.
    let sha = evidence[0].sha256.clone();
    let download = get(&f, &format!("/evidence/{}", evidence[0].id), &cookie).await;
    assert_eq!(download.status, StatusCode::OK);
    let page = get(&f, &format!("/incidents/{id}"), &cookie).await;
    assert!(page.body.contains(&sha));
    assert!(
        page.body.contains("download by dsl@wrenmoor.invalid"),
        "{}",
        page.body
    );
    let print = get(&f, &format!("/incidents/{id}/print"), &cookie).await;
    assert!(print.body.contains(&sha));
    assert!(print.body.contains("Orlan Tesk (dsl)"), "{}", print.body);
    let redacted = get(&f, &format!("/incidents/{id}/print?redacted=1"), &cookie).await;
    assert!(redacted.body.contains(&sha));
    assert!(!redacted.body.contains("Orlan Tesk"), "{}", redacted.body);
    assert!(!redacted.body.contains("dsl@wrenmoor.invalid"));
    assert!(redacted.body.contains("[member of staff] (dsl)"));

    // The pupil's chronology holds the incident and its entries.
    let chronology = get(&f, &format!("/people/{}/chronology", f.pupil), &cookie).await;
    assert_eq!(chronology.status, StatusCode::OK);
    assert!(chronology.body.contains("INC-"));
    assert!(chronology.body.contains("record of review"));
}

#[tokio::test]
async fn alerts_are_triaged_one_by_one_and_in_bulk_and_counted_per_keyword() {
    let f = keyed(ConsoleSettings::default()).await;
    let s = staff(&f).await;
    let (cookie, csrf) = session(&f, s.dsl).await;
    let first = raise(&f, Some(f.pupil), "self-harm", "Hopeless", 1).await;
    let second = raise(&f, None, "self-harm", "hopeless", 2).await;
    let third = raise(&f, None, "drugs", "weed", 3).await;
    let fourth = raise(&f, Some(f.pupil), "bullying", "loser", 4).await;

    let queue = get(&f, "/alerts", &cookie).await;
    assert_eq!(queue.status, StatusCode::OK);
    assert!(queue.body.contains("4 alerts"), "{}", queue.body);
    let drugs = get(&f, "/alerts?category=drugs", &cookie).await;
    assert!(drugs.body.contains("1 alerts"), "{}", drugs.body);

    // The detail shows the matched text, and the view is audited; a
    // teacher is refused.
    let detail = get(&f, &format!("/alerts/{first}"), &cookie).await;
    assert!(detail.body.contains("Hopeless"));
    let views = f
        .state
        .store()
        .audit_entries(Some("alert"), 10)
        .await
        .unwrap();
    assert!(views
        .iter()
        .any(|e| e.action == "view" && e.entity_id.as_deref() == Some(&first.to_string())));
    let (teacher_cookie, _) = session(&f, s.teacher).await;
    assert_eq!(
        get(&f, &format!("/alerts/{first}"), &teacher_cookie)
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    // Acknowledge; dismissing needs a reason.
    let acknowledged = post(
        &f,
        &format!("/alerts/{first}/triage"),
        &cookie,
        &[("csrf", &csrf), ("action", "acknowledge")],
    )
    .await;
    assert_eq!(acknowledged.status, StatusCode::SEE_OTHER);
    let refused = post(
        &f,
        &format!("/alerts/{first}/triage"),
        &cookie,
        &[("csrf", &csrf), ("action", "dismiss"), ("reason", "")],
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.body.contains("reason"));

    // Bulk: the two "hopeless" alerts and the drugs one dismissed with one
    // reason.
    let bulk = post(
        &f,
        "/alerts/bulk",
        &cookie,
        &[
            ("csrf", &csrf),
            ("id", &first.to_string()),
            ("id", &second.to_string()),
            ("id", &third.to_string()),
            ("action", "dismiss"),
            ("reason", "Song lyrics in a music lesson"),
        ],
    )
    .await;
    assert_eq!(bulk.status, StatusCode::OK, "{}", bulk.body);
    assert!(
        bulk.body.contains("3 of 3 alerts dismissed"),
        "{}",
        bulk.body
    );
    let without_reason = post(
        &f,
        "/alerts/bulk",
        &cookie,
        &[
            ("csrf", &csrf),
            ("id", &fourth.to_string()),
            ("action", "dismiss"),
        ],
    )
    .await;
    assert_eq!(without_reason.status, StatusCode::BAD_REQUEST);

    // Escalating opens an incident linked to the alert.
    let escalated = post(
        &f,
        &format!("/alerts/{fourth}/escalate"),
        &cookie,
        &[
            ("csrf", &csrf),
            ("summary", "Repeated name-calling in chat"),
            ("description", ""),
            ("urgency", "today"),
        ],
    )
    .await;
    assert_eq!(
        escalated.status,
        StatusCode::SEE_OTHER,
        "{}",
        escalated.body
    );
    let incident_path = escalated.location.unwrap();
    let page = get(&f, &incident_path, &cookie).await;
    assert!(
        page.body.contains(&format!("href=\"/alerts/{fourth}\"")),
        "{}",
        page.body
    );
    assert!(page.body.contains("Pella Varrowby"));
    let alert = f.state.store().alert(fourth).await.unwrap();
    assert_eq!(alert.status, sheepdog_store::AlertStatus::Escalated);

    // The figures: "hopeless" twice dismissed, counted together whatever
    // the case; "loser" escalated.
    let figures = f.state.store().keyword_figures(f.school).await.unwrap();
    let hopeless = figures.iter().find(|k| k.term == "hopeless").unwrap();
    assert_eq!((hopeless.alerts, hopeless.dismissed), (2, 2));
    assert_eq!(hopeless.dismissal_percent(), Some(100));
    let loser = figures.iter().find(|k| k.term == "loser").unwrap();
    assert_eq!((loser.dismissed, loser.escalated), (0, 1));
    let page = get(&f, "/alerts/figures", &cookie).await;
    assert!(page.body.contains("hopeless"), "{}", page.body);

    // The API: the same moves.
    let token = api_token(&f, s.dsl).await;
    let fifth = raise(&f, None, "drugs", "weed", 5).await;
    let (status, body) = api_json(
        &f,
        "POST",
        "/api/v1/alerts/bulk",
        &token,
        Some(
            serde_json::json!({"ids": [fifth], "status": "dismissed", "reason": "Gardening club"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["outcomes"][0]["done"], true);
    let (status, body) = api_json(&f, "GET", "/api/v1/alerts/figures", &token, None).await;
    assert_eq!(status, StatusCode::OK);
    let weed = body["figures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["term"] == "weed")
        .unwrap();
    assert_eq!(weed["dismissed"], 2);
    let teacher_token = api_token(&f, s.teacher).await;
    let (status, _) = api_json(&f, "GET", "/api/v1/alerts", &teacher_token, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_concern_can_start_from_a_blocked_event_in_the_log() {
    // The filtering log is deployment-wide: one school, so its DSL reads it.
    let f = fixture_with(ConsoleSettings::default(), false).await;
    let s = staff(&f).await;
    seed_events(&f, 2, 0).await;
    let (cookie, _) = session(&f, s.dsl).await;
    let log = get(&f, "/logs", &cookie).await;
    let start = log.body.find("/incidents/new?event=").unwrap();
    let link: String = log.body[start..]
        .chars()
        .take_while(|c| *c != '"')
        .collect();
    let form = get(&f, &link, &cookie).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.body.contains("Filtering log event"), "{}", form.body);
    assert!(form.body.contains("name=\"event\""));
}

#[tokio::test]
async fn an_alert_link_followed_while_signed_out_leads_there_after_signing_in() {
    let f = keyed(ConsoleSettings::default()).await;
    let s = staff(&f).await;
    let id = raise(&f, Some(f.pupil), "self-harm", "hopeless", 1).await;
    let signed_out = get(&f, &format!("/alerts/{id}"), "").await;
    assert_eq!(signed_out.status, StatusCode::SEE_OTHER);
    assert_eq!(signed_out.location.as_deref(), Some("/sign-in"));
    let next = cookie_from(&signed_out, auth::NEXT_COOKIE).unwrap();
    assert_eq!(next, format!("{}=/alerts/{id}", auth::NEXT_COOKIE));
    // Signed in (however many steps it took), the start page sends the
    // DSL to the alert and forgets it.
    let (session, _) = session(&f, s.dsl).await;
    let start = get(&f, "/", &format!("{session}; {next}")).await;
    assert_eq!(start.status, StatusCode::SEE_OTHER);
    assert_eq!(start.location, Some(format!("/alerts/{id}")));
    assert!(start
        .cookies
        .iter()
        .any(|c| c.starts_with("sheepdog_next=;")));
    // Somewhere off the console is never a destination.
    assert_eq!(auth::safe_next("//evil.example/x"), None);
    assert_eq!(auth::safe_next("https://evil.example/"), None);
    assert_eq!(auth::safe_next("/alerts/7"), Some("/alerts/7"));
}

#[tokio::test]
async fn the_alert_and_incident_api_is_described_in_openapi() {
    let f = fixture(ConsoleSettings::default()).await;
    let spec = get(&f, "/api/v1/openapi.json", "").await;
    let spec: serde_json::Value = serde_json::from_str(&spec.body).unwrap();
    for (path, method) in [
        ("/api/v1/alerts", "get"),
        ("/api/v1/alerts/{id}", "get"),
        ("/api/v1/alerts/{id}/status", "post"),
        ("/api/v1/alerts/bulk", "post"),
        ("/api/v1/alerts/{id}/escalate", "post"),
        ("/api/v1/alerts/figures", "get"),
        ("/api/v1/incidents", "get"),
        ("/api/v1/incidents", "post"),
        ("/api/v1/incidents/due-for-review", "get"),
        ("/api/v1/incidents/{id}", "get"),
        ("/api/v1/incidents/{id}/path", "post"),
        ("/api/v1/incidents/{id}/steps", "post"),
        ("/api/v1/incidents/{id}/review", "post"),
        ("/api/v1/incidents/{id}/entries", "post"),
        ("/api/v1/incidents/{id}/entries/{entry}/done", "post"),
        ("/api/v1/incidents/{id}/close", "post"),
        ("/api/v1/incidents/{id}/reopen", "post"),
        ("/api/v1/incidents/{id}/evidence", "post"),
        ("/api/v1/evidence/{id}", "get"),
        ("/api/v1/people/{id}/chronology", "get"),
    ] {
        assert!(
            spec["paths"][path][method].is_object(),
            "{method} {path} is not in openapi.json"
        );
        // And the route exists: without a token it asks for one rather
        // than being unknown.
        let uri = path.replace("{id}", "1").replace("{entry}", "1");
        let reply = send(
            &f,
            Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&uri)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{method} {uri}");
    }
}
