//! Route-level tests: sign-in with TOTP, lock-out, CSRF, time-outs, and the
//! permission matrix route by route for every role.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use sheepdog_store::{
    AccountRole, Actor, DeviceDetails, ImportBatch, NewSession, Ownership, PersonDetails,
    PersonKind, SessionStage, StaffRole, Store, StoreOptions,
};
use tower::ServiceExt;

use super::*;

struct Fixture {
    state: ConsoleState,
    school: i64,
    other_school: i64,
    pupil: i64,
    _dir: tempfile::TempDir,
}

const PASSWORD: &str = "violet tractor sandwich pebble";

async fn fixture(settings: ConsoleSettings) -> Fixture {
    fixture_with(settings, true).await
}

/// With `trust` false, the second school is left out: a single-school
/// deployment, where a school's own roles hold for deployment-wide records.
async fn fixture_with(settings: ConsoleSettings, trust: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("console.sqlite").display());
    let store = Store::open(&url, &StoreOptions::default()).await.unwrap();
    let admin = Actor::command_line("test");
    let school = store
        .create_school(&admin, "Wrenmoor Primary", None, "Europe/London")
        .await
        .unwrap();
    let other = if trust {
        store
            .create_school(&admin, "Tallow Brook Academy", None, "Europe/London")
            .await
            .unwrap()
            .id
    } else {
        -1
    };
    let pupil = PersonDetails {
        kind: PersonKind::Pupil,
        external_id: None,
        upn: Some("A123456789012".to_string()),
        given_name: "Pella".to_string(),
        family_name: "Varrowby".to_string(),
        date_of_birth: Some("2016-05-06".to_string()),
        year_group: Some("4".to_string()),
        class_name: Some("4K".to_string()),
        email: None,
        roles: vec![],
        active: true,
    };
    store
        .import_people(
            &admin,
            school.id,
            &ImportBatch {
                people: vec![pupil],
                guardians: vec![],
            },
            false,
        )
        .await
        .unwrap();
    let pupil = store
        .people(school.id, Some(PersonKind::Pupil))
        .await
        .unwrap()[0]
        .id;
    store
        .save_device(
            &admin,
            school.id,
            DeviceDetails {
                name: "HALL-PC-01".to_string(),
                mac: None,
                address: Some("10.0.4.17".to_string()),
                owner_id: None,
                group_id: None,
                ownership: Ownership::School,
            },
            "hall computer",
        )
        .await
        .unwrap();
    Fixture {
        state: ConsoleState::new(store, settings)
            .with_evidence_key(sheepdog_store::incidents::EvidenceKey::generate().unwrap()),
        school: school.id,
        other_school: other,
        pupil,
        _dir: dir,
    }
}

async fn account(f: &Fixture, username: &str, role: StaffRole, school: Option<i64>) -> i64 {
    let hash = password::hash(PASSWORD).unwrap();
    f.state
        .store()
        .create_account(
            &Actor::command_line("test"),
            username,
            "Orlan Tesk",
            &hash,
            &[AccountRole {
                school_id: school,
                role,
            }],
        )
        .await
        .unwrap()
        .id
}

/// A signed-in session made directly in the store: (cookie, form token).
async fn session(f: &Fixture, account_id: i64) -> (String, String) {
    let token = secrets::random_hex(32).unwrap();
    let csrf = secrets::random_hex(32).unwrap();
    f.state
        .store()
        .start_session(
            &Actor::system("test"),
            &NewSession {
                token_hash: &secrets::token_hash(&token),
                account_id,
                stage: SessionStage::SignedIn,
                csrf_token: &csrf,
                address: "127.0.0.1",
                expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
            },
        )
        .await
        .unwrap();
    (format!("{}={token}", auth::SESSION_COOKIE), csrf)
}

struct Reply {
    status: StatusCode,
    cookies: Vec<String>,
    location: Option<String>,
    body: String,
}

async fn send(f: &Fixture, request: Request<Body>) -> Reply {
    let response = router(f.state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let cookies = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let location = response
        .headers()
        .get(header::LOCATION)
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        cookies,
        location,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

async fn get(f: &Fixture, path: &str, cookie: &str) -> Reply {
    send(
        f,
        Request::get(path)
            .header(header::COOKIE, cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

async fn post(f: &Fixture, path: &str, cookie: &str, form: &[(&str, &str)]) -> Reply {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    send(
        f,
        Request::post(path)
            .header(header::COOKIE, cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap(),
    )
    .await
}

/// `name=value` of a Set-Cookie that sets `name`.
fn cookie_from(reply: &Reply, name: &str) -> Option<String> {
    reply.cookies.iter().find_map(|c| {
        let pair = c.split(';').next()?;
        let (key, value) = pair.split_once('=')?;
        (key == name && !value.is_empty()).then(|| pair.to_string())
    })
}

fn hidden_csrf(body: &str) -> String {
    let start = body.find("name=\"csrf\" value=\"").unwrap() + 19;
    body[start..start + 64].to_string()
}

fn code_now(secret: &str, username: &str, offset_steps: i64) -> String {
    let totp = auth_totp(secret, username);
    let time = chrono::Utc::now().timestamp() + offset_steps * 30;
    totp.generate(u64::try_from(time).unwrap())
}

fn auth_totp(secret: &str, username: &str) -> totp_rs::TOTP {
    totp_rs::TOTP::new(
        totp_rs::Algorithm::SHA1,
        6,
        1,
        30,
        data_encoding::BASE32_NOPAD
            .decode(secret.as_bytes())
            .unwrap(),
        Some("sheepdog".to_string()),
        username.to_string(),
    )
    .unwrap()
}

/// Signs in through the form and returns the session cookie and the reply.
async fn password_step(f: &Fixture, username: &str, password: &str) -> Reply {
    let form_page = get(f, "/sign-in", "").await;
    assert_eq!(form_page.status, StatusCode::OK);
    let pre = cookie_from(&form_page, auth::SIGN_IN_COOKIE).unwrap();
    let csrf = hidden_csrf(&form_page.body);
    post(
        f,
        "/sign-in",
        &pre,
        &[
            ("csrf", &csrf),
            ("username", username),
            ("password", password),
        ],
    )
    .await
}

#[tokio::test]
async fn dsl_enrols_totp_then_signs_in_with_a_code_and_a_recovery_code() {
    let f = fixture(ConsoleSettings::default()).await;
    let id = account(&f, "dsl@wrenmoor.invalid", StaffRole::Dsl, Some(f.school)).await;

    // A DSL without two-factor authentication must enrol before anything.
    let reply = password_step(&f, "dsl@wrenmoor.invalid", PASSWORD).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.location.as_deref(), Some("/two-factor/enrol"));
    let cookie = cookie_from(&reply, auth::SESSION_COOKIE).unwrap();
    assert!(reply.cookies[0].contains("HttpOnly") && reply.cookies[0].contains("SameSite=Strict"));
    let people = get(&f, "/people", &cookie).await;
    assert_eq!(people.location.as_deref(), Some("/two-factor/enrol"));

    let page = get(&f, "/two-factor/enrol", &cookie).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("otpauth://totp/"), "{}", page.body);
    let secret = f
        .state
        .store()
        .two_factor(id)
        .await
        .unwrap()
        .unwrap()
        .secret(f.state.evidence_key().unwrap())
        .unwrap();
    let csrf = hidden_csrf(&page.body);
    let wrong = post(
        &f,
        "/two-factor/enrol",
        &cookie,
        &[("csrf", &csrf), ("code", "000000")],
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    let code = code_now(&secret, "dsl@wrenmoor.invalid", 0);
    let done = post(
        &f,
        "/two-factor/enrol",
        &cookie,
        &[("csrf", &csrf), ("code", &code)],
    )
    .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    let recovery: Vec<String> = done
        .body
        .split("<li><code>")
        .skip(1)
        .map(|s| s.split('<').next().unwrap().to_string())
        .collect();
    assert_eq!(recovery.len(), 10);
    let signed_in = cookie_from(&done, auth::SESSION_COOKIE).unwrap();
    assert_ne!(signed_in, cookie, "a fresh token after each step");
    assert_eq!(
        get(&f, "/people", &cookie).await.location.as_deref(),
        Some("/sign-in")
    );
    let people = get(&f, "/people", &signed_in).await;
    assert_eq!(people.status, StatusCode::OK);
    assert!(people.body.contains("Varrowby"));

    // Sign out, then in again with a TOTP code; the same code cannot be
    // used twice.
    let csrf = hidden_csrf(&people.body);
    let out = post(&f, "/sign-out", &signed_in, &[("csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::OK);
    assert_eq!(
        get(&f, "/people", &signed_in).await.location.as_deref(),
        Some("/sign-in")
    );

    let reply = password_step(&f, "dsl@wrenmoor.invalid", PASSWORD).await;
    assert_eq!(reply.location.as_deref(), Some("/two-factor"));
    let pending = cookie_from(&reply, auth::SESSION_COOKIE).unwrap();
    let page = get(&f, "/two-factor", &pending).await;
    let csrf = hidden_csrf(&page.body);
    let next_code = code_now(&secret, "dsl@wrenmoor.invalid", 1);
    let ok = post(
        &f,
        "/two-factor",
        &pending,
        &[("csrf", &csrf), ("code", &next_code)],
    )
    .await;
    assert_eq!(ok.location.as_deref(), Some("/"), "{}", ok.body);

    let reply = password_step(&f, "dsl@wrenmoor.invalid", PASSWORD).await;
    let pending = cookie_from(&reply, auth::SESSION_COOKIE).unwrap();
    let csrf = hidden_csrf(&get(&f, "/two-factor", &pending).await.body);
    let replay = post(
        &f,
        "/two-factor",
        &pending,
        &[("csrf", &csrf), ("code", &next_code)],
    )
    .await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED);
    let by_recovery = post(
        &f,
        "/two-factor",
        &pending,
        &[("csrf", &csrf), ("code", &recovery[0])],
    )
    .await;
    assert_eq!(by_recovery.location.as_deref(), Some("/"));
    assert_eq!(f.state.store().recovery_codes_left(id).await.unwrap(), 9);

    // Each step is in the audit log.
    let actions: Vec<String> = f
        .state
        .store()
        .audit_entries(Some("account"), 50)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    for expected in [
        "two_factor_enrolled",
        "sign_in",
        "sign_out",
        "recovery_code_used",
    ] {
        assert!(
            actions.iter().any(|a| a == expected),
            "{expected}: {actions:?}"
        );
    }
}

#[tokio::test]
async fn repeated_failures_lock_the_username_out() {
    let f = fixture(ConsoleSettings::default()).await;
    account(
        &f,
        "teacher@wrenmoor.invalid",
        StaffRole::Teacher,
        Some(f.school),
    )
    .await;
    for _ in 0..auth::USERNAME_THRESHOLD {
        let reply = password_step(&f, "teacher@wrenmoor.invalid", "wrong horse").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert!(reply.body.contains("not right"));
        assert!(reply.body.contains("value=\"teacher@wrenmoor.invalid\""));
    }
    let locked = password_step(&f, "teacher@wrenmoor.invalid", PASSWORD).await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(locked.body.contains("too many failed attempts"));
    // Unknown names answer exactly like wrong passwords.
    let unknown = password_step(&f, "nobody@wrenmoor.invalid", "wrong horse").await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn teacher_without_two_factor_signs_in_directly_and_forms_need_the_token() {
    let f = fixture(ConsoleSettings::default()).await;
    account(
        &f,
        "teacher@wrenmoor.invalid",
        StaffRole::Teacher,
        Some(f.school),
    )
    .await;
    let reply = password_step(&f, "teacher@wrenmoor.invalid", PASSWORD).await;
    assert_eq!(reply.location.as_deref(), Some("/"));
    let cookie = cookie_from(&reply, auth::SESSION_COOKIE).unwrap();
    let start = get(&f, "/", &cookie).await;
    assert_eq!(start.status, StatusCode::OK);
    // Without the form token, or with another, a change is refused.
    let forged = post(&f, "/sign-out-everywhere", &cookie, &[]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let forged = post(
        &f,
        "/sign-out-everywhere",
        &cookie,
        &[("csrf", &"0".repeat(64))],
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let sign_in_forged = post(&f, "/sign-in", "", &[("username", "x"), ("password", "y")]).await;
    assert_eq!(sign_in_forged.status, StatusCode::FORBIDDEN);
    let csrf = hidden_csrf(&start.body);
    let everywhere = post(&f, "/sign-out-everywhere", &cookie, &[("csrf", &csrf)]).await;
    assert_eq!(everywhere.status, StatusCode::OK);
    assert!(everywhere.body.contains("1 sessions ended"));
    assert_eq!(
        get(&f, "/people", &cookie).await.location.as_deref(),
        Some("/sign-in")
    );
}

#[tokio::test]
async fn idle_sessions_time_out() {
    let settings = ConsoleSettings {
        idle_timeout: chrono::Duration::seconds(1),
        ..ConsoleSettings::default()
    };
    let f = fixture(settings).await;
    let id = account(
        &f,
        "office@wrenmoor.invalid",
        StaffRole::Office,
        Some(f.school),
    )
    .await;
    let (cookie, _) = session(&f, id).await;
    assert_eq!(get(&f, "/people", &cookie).await.status, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let reply = get(&f, "/people", &cookie).await;
    assert_eq!(reply.location.as_deref(), Some("/sign-in"));
    assert!(reply.cookies.iter().any(|c| c.contains("Max-Age=0")));
}

/// The permission matrix of docs/console.md, written out rather than
/// derived, so that the code, the document and this table must agree:
/// people list, person record, roster import, groups, devices, device
/// form, audit log, audit export, dashboard, log search, log export, a
/// group's members, monitoring ingestion (by API token).
const MATRIX: &[(StaffRole, [bool; 13])] = &[
    (
        StaffRole::Headteacher,
        [
            true, true, true, true, true, false, true, true, true, true, true, true, false,
        ],
    ),
    (
        StaffRole::Dsl,
        [
            true, true, false, true, true, false, true, true, true, true, true, true, true,
        ],
    ),
    (
        StaffRole::DeputyDsl,
        [
            true, true, false, true, true, false, false, false, true, true, true, true, true,
        ],
    ),
    (
        StaffRole::Technician,
        [
            true, false, false, true, true, true, false, false, true, true, true, true, true,
        ],
    ),
    (
        StaffRole::Teacher,
        [
            true, false, false, false, false, false, false, false, false, false, false, false,
            false,
        ],
    ),
    (
        StaffRole::TeachingAssistant,
        [
            true, false, false, false, false, false, false, false, false, false, false, false,
            false,
        ],
    ),
    (
        StaffRole::Office,
        [
            true, true, true, false, false, false, false, false, false, false, false, false, false,
        ],
    ),
    (
        StaffRole::Governor,
        [
            false, false, false, true, false, false, false, false, true, false, false, false, false,
        ],
    ),
    (
        StaffRole::SafeguardingGovernor,
        [
            false, false, false, true, false, false, false, false, true, false, false, false, false,
        ],
    ),
    (
        StaffRole::ChairOfGovernors,
        [
            false, false, false, true, false, false, false, false, true, false, false, false, false,
        ],
    ),
    (
        StaffRole::TrustAdministrator,
        [
            true, true, true, true, true, true, true, true, true, true, true, true, true,
        ],
    ),
];

/// Routes for records that belong to no one school. (The filtering log is
/// not one: its events carry their school, and a school's roles search
/// their own; see `a_schools_own_roles_search_only_their_schools_log`.)
const DEPLOYMENT_WIDE: &[&str] = &["/audit", "/dashboard"];

#[tokio::test]
async fn in_one_school_its_roles_hold_for_deployment_wide_routes() {
    let f = fixture_with(ConsoleSettings::default(), false).await;
    let routes = ["/audit", "/audit.csv", "/dashboard", "/logs", "/logs.csv"];
    for (role, allowed) in MATRIX {
        let id = account(
            &f,
            &format!("{role}@wrenmoor.invalid"),
            *role,
            Some(f.school),
        )
        .await;
        let (cookie, _) = session(&f, id).await;
        for (route, allow) in routes.iter().zip(&allowed[6..]) {
            let reply = get(&f, route, &cookie).await;
            let expected = if *allow {
                StatusCode::OK
            } else {
                StatusCode::FORBIDDEN
            };
            assert_eq!(reply.status, expected, "{role} {route}: {}", reply.body);
        }
    }
}

#[tokio::test]
async fn every_role_gets_exactly_its_routes() {
    let f = fixture(ConsoleSettings::default()).await;
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
    let routes = [
        format!("/people?school={}", f.school),
        format!("/people/{}", f.pupil),
        format!("/people/import?school={}", f.school),
        format!("/groups?school={}", f.school),
        format!("/devices?school={}", f.school),
        format!("/devices/new?school={}", f.school),
        "/audit".to_string(),
        "/audit.csv".to_string(),
        "/dashboard".to_string(),
        "/logs".to_string(),
        "/logs.csv".to_string(),
        format!("/groups/{}?school={}", group.id, f.school),
    ];
    assert_eq!(MATRIX.len(), StaffRole::ALL.len());
    for (role, allowed) in MATRIX {
        let school = (*role != StaffRole::TrustAdministrator).then_some(f.school);
        let id = account(&f, &format!("{role}@wrenmoor.invalid"), *role, school).await;
        let (cookie, _) = session(&f, id).await;
        for (route, allow) in routes.iter().zip(allowed) {
            let reply = get(&f, route, &cookie).await;
            // The audit log and the dashboard are deployment-wide: in a
            // trust (this fixture has two schools) only trust-wide roles
            // read them.
            let allow = if DEPLOYMENT_WIDE.iter().any(|p| route.starts_with(p)) {
                *allow && school.is_none()
            } else {
                *allow
            };
            let expected = if allow {
                StatusCode::OK
            } else {
                StatusCode::FORBIDDEN
            };
            assert_eq!(reply.status, expected, "{role} {route}: {}", reply.body);
        }
        let ingested = ingest(&f, &api_token(&f, id).await, INNOCENT).await;
        let expected = if allowed[12] {
            StatusCode::OK
        } else {
            StatusCode::FORBIDDEN
        };
        assert_eq!(
            ingested.status, expected,
            "{role} ingest: {}",
            ingested.body
        );
        // The same role held in another school gives nothing here.
        let elsewhere = account(
            &f,
            &format!("{role}@tallow.invalid"),
            *role,
            Some(f.other_school),
        )
        .await;
        let (cookie, _) = session(&f, elsewhere).await;
        for route in &routes[..6] {
            let reply = get(&f, route, &cookie).await;
            assert!(
                matches!(reply.status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND),
                "{role} elsewhere {route}: {}",
                reply.status
            );
        }
    }
    // Anonymous requests go to the sign-in form.
    for route in &routes {
        assert_eq!(
            get(&f, route, "").await.location.as_deref(),
            Some("/sign-in")
        );
    }
}

#[tokio::test]
async fn viewing_a_pupil_is_audited() {
    let f = fixture(ConsoleSettings::default()).await;
    let id = account(&f, "dsl@wrenmoor.invalid", StaffRole::Dsl, Some(f.school)).await;
    let (cookie, _) = session(&f, id).await;
    let reply = get(&f, &format!("/people/{}", f.pupil), &cookie).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body.contains("A123456789012"));
    let views = f
        .state
        .store()
        .audit_entries(Some("person"), 10)
        .await
        .unwrap();
    assert!(views.iter().any(|e| e.action == "view"
        && e.entity_id.as_deref() == Some(f.pupil.to_string().as_str())
        && e.actor == format!("account:{id}:dsl@wrenmoor.invalid")));
    let head = account(
        &f,
        "head@trust.invalid",
        StaffRole::TrustAdministrator,
        None,
    )
    .await;
    let (cookie, _) = session(&f, head).await;
    let csv = get(&f, "/audit.csv?entity=person&action=view", &cookie).await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.body.starts_with("seq,at,actor"));
    assert_eq!(csv.body.lines().count(), 2, "{}", csv.body);
}

#[tokio::test]
async fn device_form_reports_each_field_and_keeps_what_was_typed() {
    let f = fixture(ConsoleSettings::default()).await;
    let id = account(
        &f,
        "tech@wrenmoor.invalid",
        StaffRole::Technician,
        Some(f.school),
    )
    .await;
    let (cookie, csrf) = session(&f, id).await;
    let school = f.school.to_string();
    let bad = post(
        &f,
        "/devices",
        &cookie,
        &[
            ("csrf", &csrf),
            ("school", &school),
            ("name", "LIB-IPAD-07"),
            ("mac", "zz:11"),
            ("address", "10.0.300.1"),
            ("ownership", "school"),
        ],
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("id=\"mac-error\""), "{}", bad.body);
    assert!(bad.body.contains("id=\"address-error\""));
    assert!(bad.body.contains("id=\"reason-error\""), "{}", bad.body);
    assert!(bad.body.contains("value=\"zz:11\""));
    assert!(bad.body.contains("value=\"10.0.300.1\""));
    assert!(bad.body.contains("value=\"LIB-IPAD-07\""));
    let good = post(
        &f,
        "/devices",
        &cookie,
        &[
            ("csrf", &csrf),
            ("school", &school),
            ("name", "LIB-IPAD-07"),
            ("mac", "AA-BB-CC-DD-EE-FF"),
            ("address", "10.0.4.0/24"),
            ("ownership", "byod"),
            ("reason", "Library iPads on their own range"),
        ],
    )
    .await;
    assert_eq!(good.status, StatusCode::SEE_OTHER, "{}", good.body);
    let list = get(&f, "/devices", &cookie).await;
    assert!(list.body.contains("aa:bb:cc:dd:ee:ff"));
}

#[tokio::test]
async fn api_tokens_act_with_the_accounts_roles() {
    let f = fixture(ConsoleSettings::default()).await;
    let id = account(
        &f,
        "office@wrenmoor.invalid",
        StaffRole::Office,
        Some(f.school),
    )
    .await;
    let (cookie, csrf) = session(&f, id).await;
    let made = post(
        &f,
        "/account/tokens",
        &cookie,
        &[("csrf", &csrf), ("label", "MIS sync")],
    )
    .await;
    assert_eq!(made.status, StatusCode::OK);
    let start = made.body.find("sdk_").unwrap();
    let token = made.body[start..start + 68].to_string();
    let api = |path: &str| {
        Request::get(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    let people = send(&f, api("/api/v1/people")).await;
    assert_eq!(people.status, StatusCode::OK);
    assert!(people.body.contains("Varrowby"));
    assert!(!people.body.contains("A123456789012"), "lists carry no UPN");
    let record = send(&f, api(&format!("/api/v1/people/{}", f.pupil))).await;
    assert_eq!(record.status, StatusCode::OK);
    assert!(record.body.contains("A123456789012"));
    assert_eq!(
        send(&f, api("/api/v1/devices")).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(&f, api("/api/v1/audit")).await.status,
        StatusCode::FORBIDDEN
    );
    let anonymous = send(
        &f,
        Request::get("/api/v1/people").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let spec = send(
        &f,
        Request::get("/api/v1/openapi.json")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let spec: serde_json::Value = serde_json::from_str(&spec.body).unwrap();
    assert_eq!(spec["openapi"], "3.0.3");
    let csv = "UPN,Legal Forename,Legal Surname,DOB,Year,Reg Group\nnot-a-upn,Tam,Ostrey,2016-01-01,4,4K\n";
    let roster = send(
        &f,
        Request::post("/api/v1/roster?kind=pupils&dry_run=true")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::from(csv))
            .unwrap(),
    )
    .await;
    assert_eq!(
        roster.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        roster.body
    );
    assert!(roster.body.contains("\"line\":2"), "{}", roster.body);
    // A revoked token stops working.
    let tokens = f.state.store().api_tokens(id).await.unwrap();
    let revoke = post(
        &f,
        &format!("/account/tokens/{}/revoke", tokens[0].id),
        &cookie,
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(revoke.status, StatusCode::SEE_OTHER);
    assert_eq!(
        send(&f, api("/api/v1/people")).await.status,
        StatusCode::UNAUTHORIZED
    );
}

/// Decision events for the last hour: `blocked` of them for a gambling
/// site, the rest allowed news, one with a search term.
async fn seed_events(f: &Fixture, blocked: usize, allowed: usize) {
    seed_school_events(f, blocked, allowed, None).await;
}

/// [`seed_events`] for the devices of one school (`None`: unregistered).
async fn seed_school_events(f: &Fixture, blocked: usize, allowed: usize, school: Option<i64>) {
    let now = chrono::Utc::now();
    let events: Vec<sheepdog_store::DecisionEvent> = (0..blocked + allowed)
        .map(|i| {
            let block = i < blocked;
            sheepdog_store::DecisionEvent {
                at: now - chrono::Duration::seconds(i64::try_from(i).unwrap() + 60),
                source: sheepdog_store::EventSource::Dns,
                client: "10.0.4.17".to_string(),
                device_id: Some(1),
                device_name: Some("HALL-PC-01".to_string()),
                person_id: Some(f.pupil),
                group: Some("Year 4".to_string()),
                target: if block {
                    format!("www{i}.bet.example")
                } else {
                    "https://news.example/search?q=frogs".to_string()
                },
                query_type: Some("A".to_string()),
                action: if block { "block" } else { "allow" }.to_string(),
                illegal: false,
                category: Some(if block { "gambling" } else { "news" }.to_string()),
                list: Some("ut1".to_string()),
                rule: None,
                upstream_ms: None,
                search_term: (i == blocked).then(|| "Frogs, \"quoted\"".to_string()),
                school_id: school,
            }
        })
        .collect();
    f.state.store().insert_events(&events).await.unwrap();
}

#[tokio::test]
async fn log_search_finds_pages_exports_and_is_audited() {
    let f = fixture_with(ConsoleSettings::default(), false).await;
    seed_events(&f, 60, 5).await;
    let id = account(&f, "dsl@wrenmoor.invalid", StaffRole::Dsl, Some(f.school)).await;
    let (cookie, _) = session(&f, id).await;

    let page = get(&f, "/logs?domain=bet.example&action=block", &cookie).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(
        page.body.matches("bet.example</td>").count(),
        50,
        "one page"
    );
    assert!(!page.body.contains("news.example</td>"));
    let start = page.body.find("before=").unwrap() + 7;
    let cursor: String = page.body[start..]
        .chars()
        .take_while(|c| *c != '"')
        .collect();
    let next = get(
        &f,
        &format!("/logs?domain=bet.example&action=block&before={cursor}"),
        &cookie,
    )
    .await;
    assert_eq!(next.body.matches("bet.example</td>").count(), 10);
    assert!(!next.body.contains("Older results"));

    let csv = get(&f, "/logs.csv?term=FROGS", &cookie).await;
    assert_eq!(csv.status, StatusCode::OK);
    let mut reader = csv::Reader::from_reader(csv.body.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 1, "{}", csv.body);
    let term = headers.iter().position(|h| h == "search_term").unwrap();
    assert_eq!(&rows[0][term], "Frogs, \"quoted\"");

    // Every search and export is a view in the audit log, with its filters.
    let views = f
        .state
        .store()
        .audit_entries(Some("decision_events"), 10)
        .await
        .unwrap();
    assert_eq!(views.len(), 3);
    assert!(views.iter().all(|e| e.action == "view"));
    assert!(views
        .iter()
        .any(|e| e.entity_id.as_deref() == Some("csv export: term=FROGS")));
}

/// In a trust, a school's DSL searches the filtering log of their own
/// school's devices and people and no other's; events from clients nobody
/// registered are for trust-wide roles; a link from another school's event
/// finds nothing.
#[tokio::test]
async fn a_schools_own_roles_search_only_their_schools_log() {
    let f = fixture(ConsoleSettings::default()).await;
    seed_school_events(&f, 3, 0, Some(f.school)).await;
    seed_school_events(&f, 4, 0, Some(f.other_school)).await;
    seed_school_events(&f, 5, 0, None).await;
    let count = |body: &str| body.matches("bet.example</td>").count();

    let own = account(&f, "dsl@wrenmoor.invalid", StaffRole::Dsl, Some(f.school)).await;
    let (cookie, _) = session(&f, own).await;
    let page = get(&f, "/logs?domain=bet.example", &cookie).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(count(&page.body), 3, "{}", page.body);
    assert!(page.body.contains("your own school"));
    let csv = get(&f, "/logs.csv?domain=bet.example", &cookie).await;
    assert_eq!(csv.body.lines().count(), 1 + 3, "{}", csv.body);

    let other = account(
        &f,
        "dsl@tallow.invalid",
        StaffRole::Dsl,
        Some(f.other_school),
    )
    .await;
    let (other_cookie, _) = session(&f, other).await;
    let page = get(&f, "/logs?domain=bet.example", &other_cookie).await;
    assert_eq!(count(&page.body), 4, "{}", page.body);

    let trust = account(
        &f,
        "trust@wrenmoor.invalid",
        StaffRole::TrustAdministrator,
        None,
    )
    .await;
    let (trust_cookie, _) = session(&f, trust).await;
    let page = get(&f, "/logs?domain=bet.example", &trust_cookie).await;
    assert_eq!(count(&page.body), 12, "{}", page.body);
    assert!(!page.body.contains("your own school"));

    // Starting a concern from an event: one's own school's is filled in,
    // another school's is not found.
    let found = f
        .state
        .store()
        .search_events(&sheepdog_store::EventSearch {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let of = |school: Option<i64>| {
        found
            .iter()
            .find(|e| e.event.school_id == school)
            .map(|e| e.id)
            .unwrap()
    };
    let mine = get(
        &f,
        &format!(
            "/incidents/new?school={}&event={}",
            f.school,
            of(Some(f.school))
        ),
        &cookie,
    )
    .await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.body);
    assert!(mine.body.contains("bet.example"), "{}", mine.body);
    for theirs in [of(Some(f.other_school)), of(None)] {
        let reply = get(
            &f,
            &format!("/incidents/new?school={}&event={theirs}", f.school),
            &cookie,
        )
        .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);
    }
}

#[tokio::test]
async fn log_search_reports_each_bad_field_and_keeps_what_was_typed() {
    let f = fixture_with(ConsoleSettings::default(), false).await;
    let id = account(
        &f,
        "tech@wrenmoor.invalid",
        StaffRole::Technician,
        Some(f.school),
    )
    .await;
    let (cookie, _) = session(&f, id).await;
    let reply = get(
        &f,
        "/logs?person=Pella&address=10.0.999.1&from=yesterday&domain=bet.example&url=https%3A%2F%2Fx%2F&category=%3Cb%3E",
        &cookie,
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    for field in ["person", "address", "from", "url"] {
        assert!(
            reply.body.contains(&format!("id=\"{field}-error\"")),
            "{field}: {}",
            reply.body
        );
    }
    assert!(reply.body.contains("value=\"Pella\""));
    assert!(reply.body.contains("value=\"10.0.999.1\""));
    assert!(reply.body.contains("value=\"yesterday\""));
    assert!(
        reply.body.contains("value=\"&lt;b&gt;\""),
        "typed text is escaped"
    );
    assert!(
        !reply.body.contains("<table>"),
        "no results for a refused search"
    );
    let views = f
        .state
        .store()
        .audit_entries(Some("decision_events"), 10)
        .await
        .unwrap();
    assert!(views.is_empty(), "a refused search reads nothing");
}

#[tokio::test]
async fn events_api_pages_with_next_and_names_bad_fields() {
    let f = fixture_with(ConsoleSettings::default(), false).await;
    seed_events(&f, 3, 2).await;
    let id = account(
        &f,
        "head@wrenmoor.invalid",
        StaffRole::Headteacher,
        Some(f.school),
    )
    .await;
    let token = secrets::random_hex(32).unwrap();
    let token = format!("sdk_{token}");
    f.state
        .store()
        .create_api_token(
            &Actor::system("test"),
            id,
            "test",
            &secrets::token_hash(&token),
        )
        .await
        .unwrap();
    let api = |path: String| {
        Request::get(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    let first = send(&f, api("/api/v1/events?limit=2".to_string())).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let first: serde_json::Value = serde_json::from_str(&first.body).unwrap();
    assert_eq!(first["events"].as_array().unwrap().len(), 2);
    let next = first["next"].as_str().unwrap();
    let mut seen = 2;
    let mut before = next.to_string();
    loop {
        let page = send(&f, api(format!("/api/v1/events?limit=2&before={before}"))).await;
        let page: serde_json::Value = serde_json::from_str(&page.body).unwrap();
        seen += page["events"].as_array().unwrap().len();
        match page["next"].as_str() {
            Some(n) => before = n.to_string(),
            None => break,
        }
    }
    assert_eq!(seen, 5);
    let bad = send(&f, api("/api/v1/events?device=HALL".to_string())).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("\"device\""), "{}", bad.body);
    let dashboard = send(&f, api("/api/v1/dashboard?range=7d".to_string())).await;
    assert_eq!(dashboard.status, StatusCode::OK, "{}", dashboard.body);
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard.body).unwrap();
    assert_eq!(dashboard["events"]["top_blocked_categories"][0][1], 3);
    let wrong = send(&f, api("/api/v1/dashboard?range=1y".to_string())).await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn dashboard_draws_accessible_charts_with_tables() {
    let f = fixture_with(ConsoleSettings::default(), false).await;
    seed_events(&f, 7, 4).await;
    // One unblock request waiting for a decision.
    let teacher = account(
        &f,
        "teacher@wrenmoor.invalid",
        StaffRole::Teacher,
        Some(f.school),
    )
    .await;
    let teacher = f.state.store().account(teacher).await.unwrap().unwrap();
    let start = chrono::Utc::now();
    f.state
        .store()
        .request_unblock(
            &teacher,
            f.school,
            &sheepdog_store::requests::NewRequest {
                target: "maps.example.org".to_string(),
                policy_group: "ks2".to_string(),
                class_name: None,
                reason: "Map work".to_string(),
                purpose: "Geography".to_string(),
                starts_at: start,
                ends_at: start + chrono::Duration::hours(1),
            },
            &sheepdog_store::requests::RequestCheck::default(),
            chrono::Duration::hours(8),
        )
        .await
        .unwrap();
    let id = account(
        &f,
        "gov@wrenmoor.invalid",
        StaffRole::Governor,
        Some(f.school),
    )
    .await;
    let (cookie, _) = session(&f, id).await;
    for range in ["", "?range=24h", "?range=7d", "?range=30d"] {
        let reply = get(&f, &format!("/dashboard{range}"), &cookie).await;
        assert_eq!(reply.status, StatusCode::OK, "{range}: {}", reply.body);
        assert_eq!(reply.body.matches("<svg role=\"img\"").count(), 4);
        assert_eq!(
            reply.body.matches("<title id=").count(),
            reply.body.matches("<desc id=").count()
        );
        assert!(reply.body.contains("7 blocked and 4 allowed decisions"));
        assert!(reply
            .body
            .contains("<th scope=\"row\">gambling</th><td>7</td>"));
        assert!(reply.body.contains("Pending requests"));
        assert!(
            reply
                .body
                .contains("1 unblock request is waiting for a decision."),
            "{}",
            reply.body
        );
        assert!(
            !reply.body.contains("Varrowby"),
            "the dashboard names nobody"
        );
    }
    let chosen = get(&f, "/dashboard?range=7d", &cookie).await;
    assert!(chosen.body.contains("<option value=\"7d\" selected>"));
    assert_eq!(
        get(&f, "/dashboard?range=forever", &cookie).await.status,
        StatusCode::BAD_REQUEST
    );
    // A governor sees counts but may not search who visited what.
    assert_eq!(
        get(&f, "/logs", &cookie).await.status,
        StatusCode::FORBIDDEN
    );
}

/// A token made straight in the store, as the account page would make it.
async fn api_token(f: &Fixture, account_id: i64) -> String {
    let token = format!("sdk_{}", crate::secrets::random_hex(32).unwrap());
    f.state
        .store()
        .create_api_token(
            &Actor::system("test"),
            account_id,
            "agent",
            &crate::secrets::token_hash(&token),
        )
        .await
        .unwrap();
    token
}

/// A token for a technician's account, as a device agent would hold.
async fn agent_token(f: &Fixture) -> String {
    let id = account(
        f,
        "agent@wrenmoor.invalid",
        StaffRole::Technician,
        Some(f.school),
    )
    .await;
    api_token(f, id).await
}

/// The stored alert an ingestion reply lists.
async fn stored_alert(f: &Fixture, listed: &serde_json::Value) -> sheepdog_store::Alert {
    f.state
        .store()
        .alert(listed["id"].as_i64().unwrap())
        .await
        .unwrap()
}

const INNOCENT: &str = r#"{"items": [{"source": "agent", "address": "10.0.4.17",
    "time": "2026-11-23T10:15:00Z", "text": "homework: causes of the Holocaust"}]}"#;

async fn ingest(f: &Fixture, token: &str, body: &str) -> Reply {
    send(
        f,
        Request::post(format!("/api/v1/monitoring/ingest?school={}", f.school))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn ingested_text_becomes_alerts_and_bad_items_are_named() {
    let f = fixture(ConsoleSettings::default()).await;
    let token = agent_token(&f).await;

    let body = format!(
        r#"{{"items": [
            {{"source": "chat-export", "person": {}, "device": "LIB-CHROMEBOOK-07",
              "time": "2026-11-23T10:15:00Z", "text": "i want to k1ll mys3lf tonight"}},
            {{"source": "agent", "address": "10.0.4.17", "time": "2026-11-23T10:16:00Z",
              "text": "revision notes on photosynthesis"}}
        ]}}"#,
        f.pupil
    );
    let reply = ingest(&f, &token, &body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(
        !reply.body.contains("k1ll"),
        "no text echoed: {}",
        reply.body
    );
    let reply: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(reply["accepted"], 2);
    let alerts = reply["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{reply}");
    assert_eq!(alerts[0]["category"], "suicide");
    assert_eq!(alerts[0]["outcome"], "created");
    let stored = stored_alert(&f, &alerts[0]).await;
    assert_eq!(stored.person_id, Some(f.pupil));
    assert_eq!(stored.device_name.as_deref(), Some("LIB-CHROMEBOOK-07"));
    assert_eq!(stored.source, "chat-export");
    assert_eq!(stored.matched_text, "k1ll mys3lf");
    // Year 4 is primary: the grade is raised for age and reaches the DSL.
    assert!(stored.grade >= 4, "{stored:?}");
    assert_eq!(alerts[0]["notify"], true);

    // The same again merges into the open alert.
    let again = ingest(&f, &token, &body).await;
    assert!(again.body.contains("\"merged\""), "{}", again.body);

    // Every bad item and field is named, and nothing is taken.
    let bad = r#"{"items": [
        {"source": "agent", "address": "10.0.4.17", "time": "2026-11-23T10:15:00Z", "text": "fine"},
        {"source": "no spaces", "person": 999999, "address": "not-an-ip",
         "time": "yesterday", "text": ""},
        {"source": "agent", "time": "2026-11-23T10:15:00Z", "text": "who?"}
    ]}"#;
    let reply = ingest(&f, &token, bad).await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    let reply: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    let items = reply["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{reply}");
    assert_eq!(items[0]["index"], 1);
    for field in ["source", "person", "address", "time", "text"] {
        assert!(items[0]["fields"][field].is_string(), "{field}: {reply}");
    }
    assert_eq!(items[1]["index"], 2);
    assert!(items[1]["fields"]["person"]
        .as_str()
        .unwrap()
        .contains("say who"));

    // Shape, count and size are bounded.
    assert_eq!(
        ingest(&f, &token, r#"{"things": []}"#).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        ingest(&f, &token, r#"{"items": []}"#).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let item = r#"{"source": "agent", "address": "10.0.4.17", "time": "2026-11-23T10:15:00Z", "text": "x"}"#;
    let many = format!(
        r#"{{"items": [{}]}}"#,
        vec![item; crate::ingest::MAX_ITEMS + 1].join(",")
    );
    assert_eq!(
        ingest(&f, &token, &many).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let huge = format!(
        r#"{{"items": [{{"source": "agent", "address": "10.0.4.17", "time": "2026-11-23T10:15:00Z", "text": "{}"}}]}}"#,
        "a".repeat(crate::ingest::MAX_BODY)
    );
    assert_eq!(
        ingest(&f, &token, &huge).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    // Without a token: refused.
    assert_eq!(
        ingest(&f, "sdk_nothing", INNOCENT).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn ingested_text_is_read_with_the_schools_own_libraries() {
    // A term only the school's library holds (a made-up nickname for a
    // bullying page): read with the shipped libraries alone it raises
    // nothing; with the school's, an alert.
    const SCHOOL_LIBRARY: &str = r#"
[library]
name = "wrenmoor-extra"
language = "en"

[[terms]]
category = "bullying"
severity = 4
phrases = ["grimble page"]
"#;
    let text = r#"{"items": [{"source": "chat-export", "address": "10.0.4.17",
        "time": "2026-11-23T10:15:00Z", "text": "everyone post on the grimble page about her"}]}"#;

    let f = fixture(ConsoleSettings::default()).await;
    let token = agent_token(&f).await;
    let reply = ingest(&f, &token, text).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let reply: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(reply["alerts"].as_array().unwrap().len(), 0, "{reply}");

    let mut libraries = sheepdog_monitor::Library::shipped().unwrap();
    libraries
        .push(sheepdog_monitor::Library::parse(SCHOOL_LIBRARY, "wrenmoor-extra.toml").unwrap());
    let matcher = Arc::new(sheepdog_monitor::Matcher::new(&libraries).unwrap());
    let f = Fixture {
        state: f
            .state
            .clone()
            .with_monitoring(tokio::sync::watch::channel(Some(matcher)).1),
        ..f
    };
    let reply = ingest(&f, &token, text).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let reply: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    let alerts = reply["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{reply}");
    assert_eq!(alerts[0]["category"], "bullying");
    let stored = stored_alert(&f, &alerts[0]).await;
    assert_eq!(stored.matched_text, "grimble page");
    assert!(
        stored.context.to_string().contains("wrenmoor-extra"),
        "the hit names the school's library: {}",
        stored.context
    );
}

#[tokio::test]
async fn tls_serves_a_kept_self_signed_certificate_with_a_warning_and_secure_cookies() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;
    let f = fixture_with(ConsoleSettings::default(), false).await;
    let data = tempfile::tempdir().unwrap();
    let names = vec!["localhost".to_string()];
    let made = tls::load_or_generate(None, data.path(), &names).unwrap();
    assert!(made.self_signed);
    let pem = std::fs::read(&made.certificate_path).unwrap();
    // A second start keeps the same certificate, so browsers do not warn anew.
    let again = tls::load_or_generate(None, data.path(), &names).unwrap();
    assert_eq!(std::fs::read(&again.certificate_path).unwrap(), pem);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.path().join(tls::SELF_SIGNED_KEY))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the key is private");
    }
    // A configured pair that does not exist is refused, naming the file.
    let missing = data.path().join("school.crt");
    let error = tls::load_or_generate(Some((&missing, &missing)), data.path(), &names).unwrap_err();
    assert!(error.to_string().contains("school.crt"), "{error}");

    let settings = ConsoleSettings {
        secure_cookies: true,
        self_signed_certificate: true,
        ..ConsoleSettings::default()
    };
    let state = ConsoleState::new(f.state.store().clone(), settings);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_tls(listener, made.config, state, async {
        let _ = stopped.await;
    }));

    let mut roots = rustls::RootCertStore::empty();
    for certificate in
        <rustls_pki_types::CertificateDer as rustls_pki_types::pem::PemObject>::pem_slice_iter(&pem)
    {
        roots.add(certificate.unwrap()).unwrap();
    }
    let client = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut stream = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    stream
        .write_all(b"GET /sign-in HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("id=\"tls-warning\""), "{reply}");
    let cookie = reply
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
    // Plain HTTP to the TLS port gets no page.
    let mut plain = tokio::net::TcpStream::connect(address).await.unwrap();
    plain
        .write_all(b"GET /sign-in HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer).await;
    assert!(!String::from_utf8_lossy(&answer).contains("Sign in"));
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn devices_page_shows_who_is_on_which_address_now_and_audits_it() {
    let f = fixture(ConsoleSettings::default()).await;
    seed_events(&f, 3, 2).await;
    let id = account(
        &f,
        "tech@wrenmoor.invalid",
        StaffRole::Technician,
        Some(f.school),
    )
    .await;
    let (cookie, _) = session(&f, id).await;
    let page = get(&f, &format!("/devices?school={}", f.school), &cookie).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let pupil = f.state.store().person(f.pupil).await.unwrap().unwrap();
    let now = &page.body[page.body.find("On the network now").unwrap()..];
    assert!(now.contains("<td>10.0.4.17</td>"), "{now}");
    assert!(
        now.contains(&crate::html::escape(&pupil.details.full_name())),
        "{now}"
    );
    assert!(now.contains("<td>Year 4</td>"), "{now}");
    assert!(now.contains("<td>5</td>"), "five requests: {now}");
    let views = f
        .state
        .store()
        .audit_entries(Some("network_now"), 5)
        .await
        .unwrap();
    assert_eq!(views.len(), 1);
    assert!(views[0].actor.contains("tech@wrenmoor.invalid"));
    // The same role in the other school sees nobody of this one.
    let other = account(
        &f,
        "tech@tallow.invalid",
        StaffRole::Technician,
        Some(f.other_school),
    )
    .await;
    let (cookie, _) = session(&f, other).await;
    let page = get(&f, &format!("/devices?school={}", f.other_school), &cookie).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(!page.body.contains("10.0.4.17"), "{}", page.body);
}

#[tokio::test]
async fn the_filtering_manager_adds_and_removes_group_members() {
    let f = fixture(ConsoleSettings::default()).await;
    let store = f.state.store();
    let group = store
        .ensure_group(
            &Actor::system("test"),
            f.school,
            "Lunch club",
            sheepdog_store::GroupKind::Custom,
            Some("ks2"),
        )
        .await
        .unwrap();
    let path = format!("/groups/{}", group.id);
    let school = f.school.to_string();
    let pupil = f.pupil.to_string();
    let tech = account(
        &f,
        "tech@wrenmoor.invalid",
        StaffRole::Technician,
        Some(f.school),
    )
    .await;
    let (cookie, csrf) = session(&f, tech).await;

    let added = post(
        &f,
        &path,
        &cookie,
        &[
            ("csrf", &csrf),
            ("school", &school),
            ("person", &pupil),
            ("change", "add"),
            ("reason", "Joined the lunch club"),
        ],
    )
    .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    assert_eq!(store.group_members(group.id).await.unwrap(), vec![f.pupil]);
    let page = get(&f, &format!("{path}?school={school}"), &cookie).await;
    let name = store
        .person(f.pupil)
        .await
        .unwrap()
        .unwrap()
        .details
        .full_name();
    assert!(
        page.body.contains(&crate::html::escape(&name)),
        "{}",
        page.body
    );

    // A person of another school, or none, is refused beside the field.
    let refused = post(
        &f,
        &path,
        &cookie,
        &[
            ("csrf", &csrf),
            ("school", &school),
            ("person", "999999"),
            ("change", "add"),
            ("reason", "x"),
        ],
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.body.contains("id=\"person-error\""),
        "{}",
        refused.body
    );

    // Without a reason nothing changes, and the page says so beside the
    // person's own Remove button.
    let unexplained = post(
        &f,
        &path,
        &cookie,
        &[
            ("csrf", &csrf),
            ("school", &school),
            ("person", &pupil),
            ("change", "remove"),
            ("reason", "  "),
        ],
    )
    .await;
    assert_eq!(unexplained.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        unexplained
            .body
            .contains(&format!("id=\"reason-{}-error\"", f.pupil)),
        "{}",
        unexplained.body
    );
    assert!(unexplained.body.contains("give a reason for the change"));
    assert_eq!(store.group_members(group.id).await.unwrap(), vec![f.pupil]);

    let removed = post(
        &f,
        &path,
        &cookie,
        &[
            ("csrf", &csrf),
            ("school", &school),
            ("person", &pupil),
            ("change", "remove"),
            ("reason", "Left the lunch club"),
        ],
    )
    .await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER, "{}", removed.body);
    assert!(store.group_members(group.id).await.unwrap().is_empty());
    let log: Vec<String> = store
        .audit_entries(Some("group"), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| format!("{} {}", e.action, e.reason.unwrap_or_default()))
        .collect();
    assert!(
        log.contains(&"add_member Joined the lunch club".to_string())
            && log.contains(&"remove_member Left the lunch club".to_string()),
        "{log:?}"
    );

    // A DSL sees the members but cannot change them (F8).
    let dsl = account(&f, "dsl@wrenmoor.invalid", StaffRole::Dsl, Some(f.school)).await;
    let (cookie, csrf) = session(&f, dsl).await;
    assert_eq!(
        get(&f, &format!("{path}?school={school}"), &cookie)
            .await
            .status,
        StatusCode::OK
    );
    let denied = post(
        &f,
        &path,
        &cookie,
        &[
            ("csrf", &csrf),
            ("school", &school),
            ("person", &pupil),
            ("change", "add"),
        ],
    )
    .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert!(store.group_members(group.id).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_inspection_certificate_downloads_without_sign_in_and_the_page_shows_its_fingerprint() {
    let not_set_up = fixture(ConsoleSettings::default()).await;
    let reply = get(&not_set_up, "/certificate/inspection-ca.pem", "").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(reply.body.contains("sheepdog ca init"), "{}", reply.body);

    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    let pem = params.self_signed(&key).unwrap().pem();
    let f = fixture(ConsoleSettings {
        inspection_certificate: Some(pem.clone()),
        ..ConsoleSettings::default()
    })
    .await;
    let reply = get(&f, "/certificate/inspection-ca.pem", "").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, pem);
    let der = router(f.state.clone())
        .oneshot(
            Request::get("/certificate/inspection-ca.der")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(der.status(), StatusCode::OK);
    let bytes = der.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(bytes[0], 0x30, "DER starts with a SEQUENCE");

    // The instructions are for signed-in staff.
    let reply = get(&f, "/certificate", "").await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    let tech = account(
        &f,
        "tech@wrenmoor.invalid",
        StaffRole::Technician,
        Some(f.school),
    )
    .await;
    let (cookie, _) = session(&f, tech).await;
    let reply = get(&f, "/certificate", &cookie).await;
    assert_eq!(reply.status, StatusCode::OK);
    use sha2::Digest;
    let fingerprint = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    assert!(reply.body.contains(&fingerprint), "{}", reply.body);
    assert!(reply.body.contains("Chromebook"));
}
mod governance;
mod incidents;
/// The governance pages' permissions (docs/governance.md), written out:
/// overview, agreements, image consent, training, policies and reviews,
/// assets. Kept apart from [`MATRIX`] so the two tables merge cleanly.
const GOVERNANCE_MATRIX: &[(StaffRole, [bool; 6])] = &[
    (StaffRole::Headteacher, [true, true, true, true, true, true]),
    (StaffRole::Dsl, [true, true, true, true, true, false]),
    (StaffRole::DeputyDsl, [true, true, true, true, true, false]),
    (
        StaffRole::Technician,
        [false, false, false, false, false, true],
    ),
    (
        StaffRole::Teacher,
        [false, false, true, false, false, false],
    ),
    (
        StaffRole::TeachingAssistant,
        [false, false, true, false, false, false],
    ),
    (StaffRole::Office, [true, true, true, true, true, true]),
    (StaffRole::Governor, [true, false, false, true, true, false]),
    (
        StaffRole::SafeguardingGovernor,
        [true, false, false, true, true, false],
    ),
    (
        StaffRole::ChairOfGovernors,
        [true, false, false, true, true, false],
    ),
    (
        StaffRole::TrustAdministrator,
        [true, true, true, true, true, true],
    ),
];

#[tokio::test]
async fn every_role_gets_exactly_its_governance_routes() {
    let f = fixture(ConsoleSettings::default()).await;
    let routes: Vec<String> = [
        "/governance",
        "/governance/agreements",
        "/governance/consent",
        "/governance/training",
        "/governance/policies",
        "/governance/assets",
    ]
    .iter()
    .map(|r| format!("{r}?school={}", f.school))
    .collect();
    assert_eq!(GOVERNANCE_MATRIX.len(), StaffRole::ALL.len());
    for (role, allowed) in GOVERNANCE_MATRIX {
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
        // The same role held in another school gives nothing here.
        let elsewhere = account(
            &f,
            &format!("{role}@tallow.invalid"),
            *role,
            Some(f.other_school),
        )
        .await;
        let (cookie, _) = session(&f, elsewhere).await;
        for route in &routes {
            assert_eq!(
                get(&f, route, &cookie).await.status,
                StatusCode::FORBIDDEN,
                "{role} elsewhere {route}"
            );
        }
    }
}

#[tokio::test]
async fn the_office_publishes_agreements_records_signatures_and_consent() {
    let f = fixture(ConsoleSettings::default()).await;
    let store = f.state.store();
    let school = f.school.to_string();
    let pupil = f.pupil.to_string();
    let office = account(
        &f,
        "office@wrenmoor.invalid",
        StaffRole::Office,
        Some(f.school),
    )
    .await;
    let (cookie, csrf) = session(&f, office).await;
    let now = chrono::Utc::now();

    let published = post(
        &f,
        "/governance/agreements",
        &cookie,
        &[("csrf", &csrf), ("school", &school), ("action", "defaults")],
    )
    .await;
    assert_eq!(
        published.status,
        StatusCode::SEE_OTHER,
        "{}",
        published.body
    );
    assert!(store.unsigned_people(now).await.unwrap().contains(&f.pupil));
    let page = get(
        &f,
        &format!("/governance/agreements?school={school}"),
        &cookie,
    )
    .await;
    assert!(
        page.body.contains("Pupil acceptable use agreement"),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("<td>Class 4K</td><td>1</td><td>0</td><td>1</td>"),
        "{}",
        page.body
    );

    let signed = post(
        &f,
        "/governance/agreements/sign",
        &cookie,
        &[
            ("csrf", &csrf),
            ("school", &school),
            ("person", &pupil),
            ("method", "paper"),
        ],
    )
    .await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER, "{}", signed.body);
    assert!(!store.unsigned_people(now).await.unwrap().contains(&f.pupil));

    // A bad date names the field and the fix.
    let bad = post(
        &f,
        "/governance/consent",
        &cookie,
        &[
            ("csrf", &csrf),
            ("school", &school),
            ("pupil", &pupil),
            ("purpose", "website"),
            ("answer", "yes"),
            ("given_on", "5/9/2026"),
        ],
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("date given"), "{}", bad.body);
    let given = post(
        &f,
        "/governance/consent",
        &cookie,
        &[
            ("csrf", &csrf),
            ("school", &school),
            ("pupil", &pupil),
            ("purpose", "website"),
            ("answer", "yes"),
            ("given_by_name", "Carer on the form"),
            ("given_on", "2026-09-05"),
        ],
    )
    .await;
    assert_eq!(given.status, StatusCode::SEE_OTHER, "{}", given.body);

    // A teacher sees who may appear, and cannot record.
    let teacher = account(
        &f,
        "teacher@wrenmoor.invalid",
        StaffRole::Teacher,
        Some(f.school),
    )
    .await;
    let (t_cookie, t_csrf) = session(&f, teacher).await;
    let list = get(
        &f,
        &format!("/governance/consent?school={school}&purpose=website&class=4K"),
        &t_cookie,
    )
    .await;
    assert!(
        list.body.contains("Who may appear: 1 of 1"),
        "{}",
        list.body
    );
    assert!(!list.body.contains("Record an answer"));
    let refused = post(
        &f,
        "/governance/consent",
        &t_cookie,
        &[
            ("csrf", &t_csrf),
            ("school", &school),
            ("pupil", &pupil),
            ("purpose", "website"),
            ("answer", "withdraw"),
        ],
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    // The yearly review is recorded and exported as Markdown.
    let review = post(
        &f,
        "/governance/reviews",
        &cookie,
        &[
            ("csrf", &csrf),
            ("school", &school),
            ("held_on", "2026-10-01"),
            ("participants", "SLT: Deputy head\nDSL: Safeguarding lead\nIT: Technician\nGovernor: Safeguarding governor"),
            ("risk_profile", "Primary school, shared tablets"),
            ("checks", "ks2 | adult content test | blocked"),
            ("decisions", "Keep the current categories"),
            ("next_review_on", "2027-10-01"),
        ],
    )
    .await;
    assert_eq!(review.status, StatusCode::SEE_OTHER, "{}", review.body);
    let id = store.filtering_reviews(f.school).await.unwrap()[0].id;
    let md = get(
        &f,
        &format!("/governance/reviews/{id}?school={school}"),
        &cookie,
    )
    .await;
    assert!(
        md.body
            .starts_with("# Filtering and monitoring review, Wrenmoor Primary"),
        "{}",
        md.body
    );
    assert!(
        md.body.contains("| ks2 | adult content test | blocked |"),
        "{}",
        md.body
    );
}
mod requests;
