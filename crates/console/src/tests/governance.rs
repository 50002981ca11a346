//! Governance files through the console: a paper agreement's scan, a
//! training certificate and a certificate of secure deletion uploaded with
//! their forms, sealed, and downloaded (audited) only by the roles that
//! may see what they belong to; the size limit; and the consent purposes
//! form.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use sheepdog_store::governance::assets::{AssetEntry, AssetKind, Encryption};
use sheepdog_store::governance::MAX_FILE_BYTES;
use sheepdog_store::incidents::EvidenceKey;
use sheepdog_store::{Actor, ImportBatch, PersonDetails, PersonKind, StaffRole};

use super::*;

/// Who may download each kind of file: a signed paper agreement, a
/// training certificate, a certificate of secure deletion.
const FILE_MATRIX: &[(StaffRole, [bool; 3])] = &[
    (StaffRole::Headteacher, [true, true, true]),
    (StaffRole::Dsl, [true, true, false]),
    (StaffRole::DeputyDsl, [true, true, false]),
    (StaffRole::Technician, [false, false, true]),
    (StaffRole::Teacher, [false, false, false]),
    (StaffRole::TeachingAssistant, [false, false, false]),
    (StaffRole::Office, [true, true, true]),
    (StaffRole::Governor, [false, true, false]),
    (StaffRole::SafeguardingGovernor, [false, true, false]),
    (StaffRole::ChairOfGovernors, [false, true, false]),
    (StaffRole::TrustAdministrator, [true, true, true]),
];

async fn keyed() -> Fixture {
    let mut f = fixture(ConsoleSettings::default()).await;
    f.state = f
        .state
        .clone()
        .with_evidence_key(EvidenceKey::generate().unwrap());
    f
}

/// Posts a multipart form with `fields` and one file.
async fn upload(
    f: &Fixture,
    path: &str,
    cookie: &str,
    csrf: &str,
    fields: &[(&str, &str)],
    file: (&str, &str, &[u8]),
) -> Reply {
    let boundary = "XsheepdogGovernance3";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    let (field, name, bytes) = file;
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\n\
             Content-Type: application/pdf\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    send(
        f,
        Request::post(format!("{path}?csrf={csrf}"))
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

async fn staff_member(f: &Fixture) -> i64 {
    let store = f.state.store();
    let teacher = PersonDetails {
        kind: PersonKind::Staff,
        external_id: Some("S-77".to_string()),
        upn: None,
        given_name: "Morwen".to_string(),
        family_name: "Ashgrove".to_string(),
        date_of_birth: None,
        year_group: None,
        class_name: None,
        email: Some("m.ashgrove@wrenmoor.invalid".to_string()),
        roles: vec![StaffRole::Teacher],
        active: true,
    };
    store
        .import_people(
            &Actor::command_line("test"),
            f.school,
            &ImportBatch {
                people: vec![teacher],
                guardians: vec![],
            },
            false,
        )
        .await
        .unwrap();
    store
        .people(f.school, Some(PersonKind::Staff))
        .await
        .unwrap()[0]
        .id
}

#[tokio::test]
async fn scans_and_certificates_are_kept_sealed_and_downloaded_by_who_may() {
    let f = keyed().await;
    let store = f.state.store();
    let school = f.school.to_string();
    let staff = staff_member(&f).await;
    let office = account(
        &f,
        "office@wrenmoor.invalid",
        StaffRole::Office,
        Some(f.school),
    )
    .await;
    let (cookie, csrf) = session(&f, office).await;
    store
        .publish_default_agreements(&Actor::command_line("test"), f.school)
        .await
        .unwrap();

    // The agreements page offers the scan field, labelled.
    let page = get(
        &f,
        &format!("/governance/agreements?school={school}"),
        &cookie,
    )
    .await;
    assert!(
        page.body.contains("enctype=\"multipart/form-data\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("<label for=\"scan\">"), "{}", page.body);

    let scan = b"%PDF-1.4 paper agreement signed by a carer";
    let signed = upload(
        &f,
        "/governance/agreements/sign",
        &cookie,
        &csrf,
        &[
            ("school", &school),
            ("person", &f.pupil.to_string()),
            ("method", "paper"),
            ("signer_name", "Carer on the form"),
        ],
        ("scan", "aup-4k.pdf", scan),
    )
    .await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER, "{}", signed.body);
    let scan_id = store.signatures(f.pupil).await.unwrap()[0]
        .scan
        .as_ref()
        .unwrap()
        .id;
    let page = get(
        &f,
        &format!("/governance/agreements?school={school}"),
        &cookie,
    )
    .await;
    assert!(
        page.body
            .contains(&format!("/governance/files/{scan_id}?school={school}")),
        "{}",
        page.body
    );
    assert!(page.body.contains("aup-4k.pdf"), "{}", page.body);
    // The guest network's acceptances are listed for the same people.
    store
        .accept_guest_agreement(
            &Actor::system("captive-portal"),
            f.school,
            "10.9.0.23".parse().unwrap(),
            Some("Visiting plumber"),
            12,
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let page = get(
        &f,
        &format!("/governance/agreements?school={school}"),
        &cookie,
    )
    .await;
    assert!(
        page.body
            .contains("<td>10.9.0.23</td><td>Visiting plumber</td><td>1</td>"),
        "{}",
        page.body
    );

    let certificate = b"%PDF-1.4 online safety update certificate";
    let trained = upload(
        &f,
        "/governance/training",
        &cookie,
        &csrf,
        &[
            ("school", &school),
            ("person", &staff.to_string()),
            ("kind", "online_safety_update"),
            ("completed_on", "2026-09-03"),
            ("provider", "Local authority"),
        ],
        ("evidence", "certificate.pdf", certificate),
    )
    .await;
    assert_eq!(trained.status, StatusCode::SEE_OTHER, "{}", trained.body);
    let training = store.training_records(f.school, None).await.unwrap();
    let certificate_id = training[0].evidence_file_id.unwrap();
    let listing = get(
        &f,
        &format!("/governance/training?school={school}"),
        &cookie,
    )
    .await;
    assert!(
        listing.body.contains(&format!(
            "/governance/files/{certificate_id}?school={school}"
        )),
        "{}",
        listing.body
    );

    store
        .save_asset(
            &Actor::command_line("test"),
            f.school,
            &AssetEntry {
                kind: AssetKind::Hardware,
                tag: "LT-0099".to_string(),
                description: "Office laptop".to_string(),
                assigned_person_id: None,
                location: Some("Office".to_string()),
                encryption: Encryption::Encrypted,
                licence: None,
            },
        )
        .await
        .unwrap();
    let deletion = b"%PDF-1.4 certificate of secure deletion";
    let disposed = upload(
        &f,
        "/governance/assets/dispose",
        &cookie,
        &csrf,
        &[
            ("school", &school),
            ("tag", "LT-0099"),
            ("disposed_on", "2026-10-01"),
            ("method", "WEEE recycler"),
        ],
        ("certificate", "deletion.pdf", deletion),
    )
    .await;
    assert_eq!(disposed.status, StatusCode::SEE_OTHER, "{}", disposed.body);
    let disposal_id = store
        .assets(f.school, None)
        .await
        .unwrap()
        .iter()
        .find(|a| a.tag == "LT-0099")
        .unwrap()
        .certificate_file_id
        .unwrap();

    let files: [(i64, &[u8]); 3] = [
        (scan_id, scan),
        (certificate_id, certificate),
        (disposal_id, deletion),
    ];
    assert_eq!(FILE_MATRIX.len(), StaffRole::ALL.len());
    for (role, allowed) in FILE_MATRIX {
        let home = (*role != StaffRole::TrustAdministrator).then_some(f.school);
        let id = account(&f, &format!("{role}.files@wrenmoor.invalid"), *role, home).await;
        let (cookie, _) = session(&f, id).await;
        for ((file, bytes), allow) in files.iter().zip(allowed) {
            let reply = get(
                &f,
                &format!("/governance/files/{file}?school={school}"),
                &cookie,
            )
            .await;
            if *allow {
                assert_eq!(reply.status, StatusCode::OK, "{role} file {file}");
                assert_eq!(reply.body.as_bytes(), *bytes, "{role} file {file}");
            } else {
                assert_eq!(reply.status, StatusCode::FORBIDDEN, "{role} file {file}");
            }
        }
        // The same role in another school gets nothing here.
        let elsewhere = account(
            &f,
            &format!("{role}.away@tallow.invalid"),
            *role,
            Some(f.other_school),
        )
        .await;
        let (cookie, _) = session(&f, elsewhere).await;
        let reply = get(
            &f,
            &format!("/governance/files/{certificate_id}?school={school}"),
            &cookie,
        )
        .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{role} elsewhere");
    }
    // Every download is audited: one per allowed role and file.
    let allowed: usize = FILE_MATRIX
        .iter()
        .map(|(_, a)| a.iter().filter(|x| **x).count())
        .sum();
    let audited = store
        .audit_entries(Some("governance_file"), 1000)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.action == "download")
        .count();
    assert_eq!(audited, allowed);
}

#[tokio::test]
async fn a_file_over_the_limit_is_refused_with_the_limit_and_the_fix() {
    let f = keyed().await;
    let staff = staff_member(&f).await;
    let office = account(
        &f,
        "office@wrenmoor.invalid",
        StaffRole::Office,
        Some(f.school),
    )
    .await;
    let (cookie, csrf) = session(&f, office).await;
    let big = vec![b'x'; MAX_FILE_BYTES + 1];
    let refused = upload(
        &f,
        "/governance/training",
        &cookie,
        &csrf,
        &[
            ("school", &f.school.to_string()),
            ("person", &staff.to_string()),
            ("kind", "prevent"),
            ("completed_on", "2026-09-03"),
            ("provider", "Home Office e-learning"),
        ],
        ("evidence", "huge.pdf", &big),
    )
    .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert!(
        refused.body.contains("larger than 10 MiB"),
        "{}",
        refused.body
    );
    assert!(
        refused.body.contains("lower resolution"),
        "{}",
        refused.body
    );
    assert!(f
        .state
        .store()
        .training_records(f.school, None)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_governance_manager_adds_renames_and_retires_consent_purposes() {
    let f = fixture(ConsoleSettings::default()).await;
    let school = f.school.to_string();
    let dsl = account(&f, "dsl@wrenmoor.invalid", StaffRole::Dsl, Some(f.school)).await;
    let (cookie, csrf) = session(&f, dsl).await;
    let change = |fields: Vec<(&'static str, String)>| {
        let cookie = cookie.clone();
        let csrf = csrf.clone();
        let school = school.clone();
        let f = &f;
        async move {
            let mut form: Vec<(&str, &str)> = vec![("csrf", &csrf), ("school", &school)];
            form.extend(fields.iter().map(|(k, v)| (*k, v.as_str())));
            post(f, "/governance/consent/purposes", &cookie, &form).await
        }
    };
    let added = change(vec![
        ("action", "add".into()),
        ("key", "sports_day".into()),
        ("title", "Sports day programme".into()),
    ])
    .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    let renamed = change(vec![
        ("action", "rename".into()),
        ("key", "local_press".into()),
        ("title", "Newspapers".into()),
    ])
    .await;
    assert_eq!(renamed.status, StatusCode::SEE_OTHER, "{}", renamed.body);
    let retired = change(vec![("action", "retire".into()), ("key", "archive".into())]).await;
    assert_eq!(retired.status, StatusCode::SEE_OTHER, "{}", retired.body);
    let bad = change(vec![
        ("action", "add".into()),
        ("key", "sports day!".into()),
        ("title", "Bad".into()),
    ])
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    assert!(bad.body.contains("underscores"), "{}", bad.body);

    // The consent form lists the purposes in use, renamed, without the
    // retired one; the purposes table still shows it.
    let page = get(&f, &format!("/governance/consent?school={school}"), &cookie).await;
    let form_options = page.body.split("<h2 id=\"purposes\">").next().unwrap();
    assert!(
        form_options.contains("Sports day programme"),
        "{}",
        page.body
    );
    assert!(form_options.contains("Newspapers"), "{}", page.body);
    assert!(
        !form_options.contains("Historical archive"),
        "{}",
        page.body
    );
    assert!(page.body.contains("retired "), "{}", page.body);
    assert!(
        page.body.contains("<label for=\"title-archive\">"),
        "{}",
        page.body
    );

    // A teacher reads who may appear but cannot change the list.
    let teacher = account(
        &f,
        "teacher@wrenmoor.invalid",
        StaffRole::Teacher,
        Some(f.school),
    )
    .await;
    let (t_cookie, t_csrf) = session(&f, teacher).await;
    let refused = post(
        &f,
        "/governance/consent/purposes",
        &t_cookie,
        &[
            ("csrf", &t_csrf),
            ("school", &school),
            ("action", "retire"),
            ("key", "website"),
        ],
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let audited = f
        .state
        .store()
        .audit_entries(Some("consent_purposes"), 100)
        .await
        .unwrap()
        .len();
    assert_eq!(audited, 3);
}
