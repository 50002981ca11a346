//! The governance pages (issue 10): acceptable use agreements and their
//! coverage, image consent and who may appear, training, the policy
//! register and the yearly filtering and monitoring review, and the asset
//! register. The records and their rules live in
//! `sheepdog_store::governance`; these handlers check the viewer's
//! permission for the school first, then read or write through the store,
//! which audits every change.

use std::fmt::Write as _;

use std::collections::HashMap;

use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Query, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use chrono::NaiveDate;
use serde::Deserialize;
use sheepdog_store::governance::agreements::{Audience, NewSignature, SignMethod};
use sheepdog_store::governance::assets::{AssetEntry, AssetKind, Encryption};
use sheepdog_store::governance::consent::NewConsent;
use sheepdog_store::governance::policies::{
    FilterCheck, NewReview, Participant, PolicyEntry, ReviewInputs,
};
use sheepdog_store::governance::training::{NewTraining, TrainingKind};
use sheepdog_store::governance::{today, FileOwner, NewFile, MAX_FILE_BYTES};
use sheepdog_store::{PersonKind, School};

use crate::auth::Viewer;
use crate::html::{self, escape, query_value};
use crate::pages::school_for;
use crate::roles::Permission;
use crate::{ConsoleError, ConsoleState};

pub fn routes() -> Router<ConsoleState> {
    Router::new()
        .route("/governance", get(overview))
        .route("/governance/agreements", get(agreements).post(publish))
        .route(
            "/governance/agreements/sign",
            post(sign).layer(DefaultBodyLimit::max(UPLOAD_BODY_LIMIT)),
        )
        .route("/governance/consent", get(consent).post(record_consent))
        .route("/governance/consent/purposes", post(change_purpose))
        .route(
            "/governance/training",
            get(training)
                .post(record_training)
                .layer(DefaultBodyLimit::max(UPLOAD_BODY_LIMIT)),
        )
        .route("/governance/files/{id}", get(download))
        .route("/governance/policies", get(policies).post(save_policy))
        .route("/governance/reviews", post(record_review))
        .route("/governance/reviews/{id}", get(review_markdown))
        .route("/governance/assets", get(assets).post(save_asset))
        .route("/governance/assets/return", post(return_asset))
        .route(
            "/governance/assets/dispose",
            post(dispose_asset).layer(DefaultBodyLimit::max(UPLOAD_BODY_LIMIT)),
        )
}

/// The largest form with a file: the file's limit and room for the fields.
const UPLOAD_BODY_LIMIT: usize = MAX_FILE_BYTES + 64 * 1024;

/// A form's text fields and its file, if one was chosen.
struct UploadForm {
    fields: HashMap<String, String>,
    file: Option<(String, String, Vec<u8>)>,
}

impl UploadForm {
    fn get(&self, key: &str) -> &str {
        self.fields.get(key).map_or("", String::as_str)
    }

    /// The file, ready to keep sealed with the console's evidence key.
    fn new_file(&self, state: &ConsoleState) -> Result<Option<NewFile>, ConsoleError> {
        let Some((name, media_type, content)) = &self.file else {
            return Ok(None);
        };
        let key = state.evidence_key().ok_or_else(|| {
            ConsoleError::Settings(
                "the console has no evidence key to seal files with; start it with `sheepdog serve`"
                    .to_string(),
            )
        })?;
        Ok(Some(NewFile {
            name: name.clone(),
            media_type: media_type.clone(),
            content: content.clone(),
            key: key.clone(),
        }))
    }
}

fn too_large(field: &str) -> ConsoleError {
    ConsoleError::BadRequest(format!(
        "{field}: the file is larger than {} MiB, the largest kept; scan it at a lower \
         resolution or save it as a PDF, and try again",
        MAX_FILE_BYTES / (1024 * 1024)
    ))
}

/// Reads a form posted either plainly or as `multipart/form-data` with a
/// file in `file_field` (an empty file input is no file). A file over
/// [`MAX_FILE_BYTES`] is refused with the limit and the fix.
async fn read_upload(
    state: &ConsoleState,
    request: Request,
    file_field: &str,
    label: &str,
) -> Result<UploadForm, ConsoleError> {
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if !multipart {
        let Form(fields) = Form::<HashMap<String, String>>::from_request(request, state)
            .await
            .map_err(|e| ConsoleError::BadRequest(format!("the form could not be read: {e}")))?;
        return Ok(UploadForm { fields, file: None });
    }
    let mut multipart = Multipart::from_request(request, state)
        .await
        .map_err(|e| ConsoleError::BadRequest(format!("the form could not be read: {e}")))?;
    let mut form = UploadForm {
        fields: HashMap::new(),
        file: None,
    };
    while let Some(mut field) = multipart.next_field().await.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            too_large(label)
        } else {
            ConsoleError::BadRequest(format!("the form could not be read: {e}"))
        }
    })? {
        let name = field.name().unwrap_or("").to_owned();
        if name == file_field {
            let file_name = field.file_name().unwrap_or("").trim().to_owned();
            let media_type = field
                .content_type()
                .unwrap_or("application/octet-stream")
                .to_owned();
            let mut content = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(|_| too_large(label))? {
                if content.len() + chunk.len() > MAX_FILE_BYTES {
                    return Err(too_large(label));
                }
                content.extend_from_slice(&chunk);
            }
            if !content.is_empty() {
                let file_name = if file_name.is_empty() {
                    file_field.to_owned()
                } else {
                    file_name
                };
                form.file = Some((file_name, media_type, content));
            }
        } else {
            let text = field.text().await.map_err(|e| {
                ConsoleError::BadRequest(format!("the form could not be read: {e}"))
            })?;
            form.fields.insert(name, text);
        }
    }
    Ok(form)
}

/// A form with a file input: multipart, so its token rides in the URL.
fn upload_form(
    viewer: &Viewer,
    action: &str,
    school: &School,
    fields: &str,
    button: &str,
) -> String {
    format!(
        "<form method=\"post\" action=\"{action}?csrf={csrf}\" enctype=\"multipart/form-data\">\
         <input type=\"hidden\" name=\"school\" value=\"{id}\">{fields}<button>{button}</button></form>",
        csrf = escape(viewer.csrf_token()),
        id = school.id,
        button = escape(button),
    )
}

fn file_input(name: &str, label: &str, hint: &str) -> String {
    format!(
        "<div class=\"field\"><label for=\"{name}\">{}<span class=\"hint\">{}</span></label>\
         <input type=\"file\" id=\"{name}\" name=\"{name}\" accept=\"application/pdf,image/*\"></div>",
        escape(label),
        escape(hint)
    )
}

fn file_link(school: &School, id: i64, text: &str) -> String {
    format!(
        "<a href=\"/governance/files/{id}?school={}\">{}</a>",
        school.id,
        escape(text)
    )
}

/// A kept file, for whoever may see what it belongs to: a signed paper
/// agreement for those who keep agreements, a training certificate for
/// those who see training, a certificate of secure deletion for those who
/// keep the asset register. Every download is in the audit log.
async fn download(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Query(query): Query<SchoolQuery>,
) -> Result<Response, ConsoleError> {
    // The asset register's keepers (a technician) need not see the rest.
    let school = match school_for(&state, &viewer, query.school, Permission::SeeGovernance).await {
        Ok(school) => school,
        Err(_) => school_for(&state, &viewer, query.school, Permission::ManageAssets).await?,
    };
    let store = state.store();
    let owner = store
        .governance_file_owner(school.id, id)
        .await?
        .ok_or(ConsoleError::NotFound("file"))?;
    let needed = match owner {
        FileOwner::AgreementScan | FileOwner::Unattached => Permission::ManageGovernance,
        FileOwner::TrainingEvidence => Permission::SeeGovernance,
        FileOwner::DisposalCertificate => Permission::ManageAssets,
    };
    if !viewer.can(needed, school.id) {
        return Err(ConsoleError::Forbidden);
    }
    let key = state.evidence_key().ok_or_else(|| {
        ConsoleError::Settings("the console has no evidence key to open files with".to_string())
    })?;
    let (info, content) = store
        .open_governance_file(&viewer.actor(), school.id, id, key)
        .await?
        .ok_or(ConsoleError::NotFound("file"))?;
    let safe_name: String = info
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{safe_name}\""),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        content,
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
struct SchoolQuery {
    school: Option<i64>,
}

fn school_of(form: &str) -> Option<i64> {
    form.trim().parse().ok()
}

fn date(field: &str, text: &str) -> Result<NaiveDate, ConsoleError> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").map_err(|_| {
        ConsoleError::BadRequest(format!(
            "{field}: `{}` is not a date; write it as YYYY-MM-DD",
            text.trim()
        ))
    })
}

fn optional_date(field: &str, text: &str) -> Result<Option<NaiveDate>, ConsoleError> {
    if text.trim().is_empty() {
        Ok(None)
    } else {
        date(field, text).map(Some)
    }
}

fn id_field(field: &str, text: &str) -> Result<i64, ConsoleError> {
    text.trim()
        .parse()
        .map_err(|_| ConsoleError::BadRequest(format!("{field}: choose one from the list")))
}

fn back(path: &str, school: &School) -> Response {
    Redirect::to(&format!("{path}?school={}", school.id)).into_response()
}

fn form(viewer: &Viewer, action: &str, school: &School, fields: &str, button: &str) -> String {
    format!(
        "<form method=\"post\" action=\"{action}\">{csrf}<input type=\"hidden\" name=\"school\" value=\"{id}\">{fields}<button>{button}</button></form>",
        csrf = html::csrf_field(viewer.csrf_token()),
        id = school.id,
        button = escape(button),
    )
}

fn input(name: &str, label: &str, hint: &str) -> String {
    html::text_input(name, label, (!hint.is_empty()).then_some(hint), "", None)
}

fn textarea(name: &str, label: &str, hint: &str) -> String {
    format!(
        "<div class=\"field\"><label for=\"{name}\">{}<span class=\"hint\">{}</span></label>\
         <textarea id=\"{name}\" name=\"{name}\" rows=\"6\" cols=\"70\"></textarea></div>",
        escape(label),
        escape(hint)
    )
}

fn options<T: Copy>(
    all: &[T],
    value: impl Fn(T) -> String,
    text: impl Fn(T) -> String,
) -> Vec<(String, String)> {
    all.iter().map(|t| (value(*t), text(*t))).collect()
}

async fn overview(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<SchoolQuery>,
) -> Result<Response, ConsoleError> {
    let school = school_for(&state, &viewer, query.school, Permission::SeeGovernance).await?;
    let due = state
        .store()
        .governance_due(school.id, chrono::Utc::now())
        .await?;
    let mut body = format!(
        "<h1>Governance</h1><p>{}</p><ul>\
         <li><a href=\"/governance/training?school={id}\">Training</a>: {} overdue</li>\
         <li><a href=\"/governance/policies?school={id}\">Policies and reviews</a>: {} due within {} days</li>",
        escape(&school.name),
        due.overdue_training.len(),
        due.policies_due.len(),
        sheepdog_store::governance::POLICY_NOTICE_DAYS,
        id = school.id,
    );
    let needing: i64 = due.agreements.iter().map(|(_, n)| n).sum();
    if viewer.can(Permission::ManageGovernance, school.id) {
        let _ = write!(
            body,
            "<li><a href=\"/governance/agreements?school={id}\">Acceptable use agreements</a>: {needing} to sign or renew</li>",
            id = school.id
        );
    }
    if viewer.can(Permission::SeeImageConsent, school.id) {
        let _ = write!(
            body,
            "<li><a href=\"/governance/consent?school={}\">Image consent</a></li>",
            school.id
        );
    }
    if viewer.can(Permission::ManageAssets, school.id) {
        let _ = write!(
            body,
            "<li><a href=\"/governance/assets?school={}\">Asset register</a></li>",
            school.id
        );
    }
    body.push_str("</ul>");
    Ok(html::page(&viewer, "Governance", &body).into_response())
}

async fn agreements(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<SchoolQuery>,
) -> Result<Response, ConsoleError> {
    let school = school_for(&state, &viewer, query.school, Permission::ManageGovernance).await?;
    let store = state.store();
    let now = chrono::Utc::now();
    let current = store.current_agreements(school.id).await?;
    let mut body = format!(
        "<h1>Acceptable use agreements</h1><p>{}</p>\
         <p>People whose audience has an agreement and who have not signed its current version \
         in the last year are placed in the <code>unsigned</code> filtering group, which reaches \
         only the signing page and essentials.</p>\
         <h2>Agreements in force</h2><table><thead><tr><th scope=\"col\">Audience</th>\
         <th scope=\"col\">Title</th><th scope=\"col\">Version</th><th scope=\"col\">Published</th></tr></thead><tbody>",
        escape(&school.name)
    );
    for audience in Audience::ALL {
        match current.get(audience) {
            Some(t) => {
                let _ = write!(
                    body,
                    "<tr><td>{}</td><td><details><summary>{}</summary><pre>{}</pre></details></td><td>{}</td><td>{}</td></tr>",
                    escape(audience.title()),
                    escape(&t.title),
                    escape(&t.body),
                    t.version,
                    escape(t.published_at.get(..10).unwrap_or(&t.published_at))
                );
            }
            None => {
                let _ = write!(
                    body,
                    "<tr><td>{}</td><td colspan=\"3\">None published: nobody of this audience is asked to sign.</td></tr>",
                    escape(audience.title())
                );
            }
        }
    }
    body.push_str("</tbody></table>");
    body.push_str(&form(
        &viewer,
        "/governance/agreements",
        &school,
        "<input type=\"hidden\" name=\"action\" value=\"defaults\">",
        "Publish sheepdog's texts for audiences without one",
    ));
    let audiences = options(
        Audience::ALL,
        |a| a.as_str().to_owned(),
        |a| a.title().to_owned(),
    );
    body.push_str("<h2>Publish a new version</h2><p>Everyone of that audience will be asked to sign again.</p>");
    body.push_str(&form(
        &viewer,
        "/governance/agreements",
        &school,
        &format!(
            "<input type=\"hidden\" name=\"action\" value=\"publish\">{}{}",
            html::select("audience", "Audience", &audiences, "staff"),
            textarea(
                "body",
                "Text (Markdown; the first heading is the title)",
                ""
            )
        ),
        "Publish",
    ));

    body.push_str("<h2>Coverage</h2><table><thead><tr><th scope=\"col\">Class or role</th><th scope=\"col\">People</th><th scope=\"col\">Signed</th><th scope=\"col\">To sign or renew</th></tr></thead><tbody>");
    for row in store.agreement_coverage(school.id, now).await? {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&row.label),
            row.people,
            row.current,
            row.needing
        );
    }
    body.push_str("</tbody></table>");

    let statuses = store.agreement_statuses(Some(school.id), now).await?;
    let waiting: Vec<(String, String)> = statuses
        .iter()
        .filter(|s| s.state.needs_signing())
        .map(|s| {
            (
                s.person_id.to_string(),
                format!(
                    "{} ({}{}) — {}",
                    s.name,
                    s.kind,
                    s.class_name
                        .as_deref()
                        .map(|c| format!(", {c}"))
                        .unwrap_or_default(),
                    s.state
                ),
            )
        })
        .collect();
    body.push_str("<h2>Record a signature</h2>");
    if waiting.is_empty() {
        body.push_str("<p>Nobody is waiting to sign.</p>");
    } else {
        let methods = options(
            SignMethod::ALL,
            |m| m.as_str().to_owned(),
            |m| m.as_str().to_owned(),
        );
        body.push_str(&upload_form(
            &viewer,
            "/governance/agreements/sign",
            &school,
            &format!(
                "{}{}{}{}{}",
                html::select("person", "Whose agreement", &waiting, ""),
                html::select("method", "How it was signed", &methods, "paper"),
                input(
                    "signer",
                    "Signed by, if not the person (a parent's or carer's person number)",
                    "Leave empty when they signed themselves"
                ),
                input("signer_name", "Name as signed", "Optional"),
                file_input(
                    "scan",
                    "Scan of the paper form",
                    &format!(
                        "Optional, paper only; PDF or image, up to {} MiB",
                        MAX_FILE_BYTES / (1024 * 1024)
                    ),
                ),
            ),
            "Record the signature",
        ));
    }
    if viewer.can(Permission::ManageGovernance, school.id) {
        let guests = state.store().guest_acceptances(school.id, 20).await?;
        if !guests.is_empty() {
            body.push_str(
                "<h2>Guest network acceptances</h2><p>Visitors who accepted the visitor \
                 agreement on the guest network's portal (the newest 20).</p><table><thead><tr>\
                 <th scope=\"col\">Address</th><th scope=\"col\">Name given</th>\
                 <th scope=\"col\">Version</th><th scope=\"col\">Accepted</th>\
                 <th scope=\"col\">Until</th></tr></thead><tbody>",
            );
            for g in &guests {
                let _ = write!(
                    body,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(&g.address),
                    escape(g.name.as_deref().unwrap_or("")),
                    if g.version == 0 {
                        "sheepdog's text".to_owned()
                    } else {
                        g.version.to_string()
                    },
                    escape(g.accepted_at.get(..16).unwrap_or(&g.accepted_at)),
                    escape(g.expires_at.get(..16).unwrap_or(&g.expires_at)),
                );
            }
            body.push_str("</tbody></table>");
        }
        let scans = state.store().agreement_scans(school.id, 50).await?;
        if !scans.is_empty() {
            body.push_str(
                "<h2>Scanned paper forms</h2><table><thead><tr><th scope=\"col\">Whose</th>\
                 <th scope=\"col\">Signed by</th><th scope=\"col\">Recorded</th>\
                 <th scope=\"col\">Scan</th></tr></thead><tbody>",
            );
            for (whose, signer, at, file) in &scans {
                let _ = write!(
                    body,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(whose),
                    escape(signer),
                    escape(at.get(..10).unwrap_or(at)),
                    file_link(&school, file.id, &file.name)
                );
            }
            body.push_str("</tbody></table>");
        }
    }
    Ok(html::page(&viewer, "Acceptable use agreements", &body).into_response())
}

#[derive(Debug, Deserialize)]
struct PublishForm {
    #[serde(default)]
    school: String,
    action: String,
    #[serde(default)]
    audience: String,
    #[serde(default)]
    body: String,
}

async fn publish(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Form(form): Form<PublishForm>,
) -> Result<Response, ConsoleError> {
    let school = school_for(
        &state,
        &viewer,
        school_of(&form.school),
        Permission::ManageGovernance,
    )
    .await?;
    if form.action == "defaults" {
        state
            .store()
            .publish_default_agreements(&viewer.actor(), school.id)
            .await?;
    } else {
        let audience: Audience = form.audience.parse()?;
        state
            .store()
            .publish_agreement(&viewer.actor(), school.id, audience, &form.body)
            .await?;
    }
    Ok(back("/governance/agreements", &school))
}

async fn sign(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    connect: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    request: Request,
) -> Result<Response, ConsoleError> {
    let form = read_upload(&state, request, "scan", "scan of the paper form").await?;
    let school = school_for(
        &state,
        &viewer,
        school_of(form.get("school")),
        Permission::ManageGovernance,
    )
    .await?;
    let method: SignMethod = form.get("method").parse()?;
    let signer = if form.get("signer").trim().is_empty() {
        None
    } else {
        Some(id_field("signed by", form.get("signer"))?)
    };
    state
        .store()
        .sign_agreement(
            &viewer.actor(),
            school.id,
            &NewSignature {
                person_id: id_field("whose agreement", form.get("person"))?,
                signer_person_id: signer,
                signer_name: form.get("signer_name").to_owned(),
                method,
                scan: form.new_file(&state)?,
                address: (method == SignMethod::Online)
                    .then(|| connect.map(|c| c.0 .0.ip().to_string()))
                    .flatten(),
            },
        )
        .await?;
    Ok(back("/governance/agreements", &school))
}

#[derive(Debug, Deserialize)]
struct ConsentQuery {
    school: Option<i64>,
    #[serde(default)]
    class: String,
    #[serde(default)]
    purpose: String,
}

async fn consent(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<ConsentQuery>,
) -> Result<Response, ConsoleError> {
    let school = school_for(&state, &viewer, query.school, Permission::SeeImageConsent).await?;
    let purposes = state.store().consent_purposes(school.id).await?;
    let purpose = if query.purpose.is_empty() {
        purposes.first().map(|p| p.key.clone()).unwrap_or_default()
    } else {
        query.purpose.clone()
    };
    let purpose_options: Vec<(String, String)> = purposes
        .iter()
        .map(|p| (p.key.clone(), p.title.clone()))
        .collect();
    let mut body = format!(
        "<h1>Image consent</h1><p>{}</p><p>Who may appear in images for a purpose. Full names never go with photographs, \
         nor in file names or tags; run <code>sheepdog publish-check</code> on a folder before publishing.</p>\
         <form method=\"get\" action=\"/governance/consent\"><input type=\"hidden\" name=\"school\" value=\"{}\">{}{}<button>Show</button></form>",
        escape(&school.name),
        school.id,
        html::select("purpose", "Purpose", &purpose_options, &purpose),
        html::text_input("class", "Class", Some("Empty for the whole school"), &query.class, None),
    );
    let list = state
        .store()
        .who_may_appear(school.id, Some(&query.class), &purpose, today())
        .await?;
    let may = list.iter().filter(|a| a.state.may_appear()).count();
    let _ = write!(
        body,
        "<h2>Who may appear: {} of {}</h2><table><thead><tr><th scope=\"col\">Person number</th><th scope=\"col\">Pupil</th>\
         <th scope=\"col\">Class</th><th scope=\"col\">Consent</th></tr></thead><tbody>",
        may,
        list.len()
    );
    for a in &list {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td></tr>",
            a.pupil_id,
            escape(&a.name),
            escape(a.class_name.as_deref().unwrap_or("")),
            if a.state.may_appear() { "✔ " } else { "✘ " },
            escape(a.state.describe())
        );
    }
    body.push_str("</tbody></table>");
    if viewer.can(Permission::ManageGovernance, school.id) {
        let answers = vec![
            ("yes".to_owned(), "Consent given".to_owned()),
            ("no".to_owned(), "Consent refused".to_owned()),
            ("withdraw".to_owned(), "Consent withdrawn".to_owned()),
        ];
        body.push_str("<h2>Record an answer</h2>");
        body.push_str(&form(
            &viewer,
            "/governance/consent",
            &school,
            &format!(
                "{}{}{}{}{}{}{}",
                input("pupil", "Pupil's person number", "From the list above"),
                html::select("purpose", "Purpose", &purpose_options, &purpose),
                html::select("answer", "Answer", &answers, "yes"),
                input(
                    "given_by",
                    "Given by (a parent's or carer's person number)",
                    "Empty when the pupil answered"
                ),
                input("given_by_name", "Name as written on the form", "Optional"),
                input("given_on", "Date given", "YYYY-MM-DD"),
                input(
                    "expires_on",
                    "Review or expiry date",
                    "YYYY-MM-DD, optional"
                ),
            ),
            "Record",
        ));
        body.push_str(&purposes_section(&viewer, &school, &state).await?);
    }
    Ok(html::page(&viewer, "Image consent", &body).into_response())
}

/// The school's purposes, each renamable and retirable (or brought back),
/// and a form to add one.
async fn purposes_section(
    viewer: &Viewer,
    school: &School,
    state: &ConsoleState,
) -> Result<String, ConsoleError> {
    let mut out = String::from(
        "<h2 id=\"purposes\">Purposes</h2><p>What images may be used for. Renaming keeps the \
         answers; a retired purpose leaves the forms and the publish check, and its answers \
         are kept.</p><table><thead><tr><th scope=\"col\">Key</th><th scope=\"col\">Title</th>\
         <th scope=\"col\">In use</th><th scope=\"col\">Change</th></tr></thead><tbody>",
    );
    for p in state.store().kept_consent_purposes(school.id).await? {
        let key = escape(&p.key);
        let rename_id = format!("title-{}", p.key);
        let (state_text, toggle, toggle_label) = match &p.retired_at {
            None => ("yes".to_owned(), "retire", "Retire"),
            Some(at) => (
                format!("retired {}", escape(at.get(..10).unwrap_or(at))),
                "restore",
                "Bring back",
            ),
        };
        let _ = write!(
            out,
            "<tr><td>{key}</td><td>{title}</td><td>{state_text}</td><td>\
             <form method=\"post\" action=\"/governance/consent/purposes\">{csrf}\
             <input type=\"hidden\" name=\"school\" value=\"{school}\">\
             <input type=\"hidden\" name=\"key\" value=\"{key}\">\
             <label for=\"{rename_id}\">New title for {key}</label>\
             <input id=\"{rename_id}\" name=\"title\" value=\"{title}\">\
             <button name=\"action\" value=\"rename\">Rename</button> \
             <button name=\"action\" value=\"{toggle}\" class=\"secondary\">{toggle_label}</button>\
             </form></td></tr>",
            title = escape(&p.title),
            csrf = html::csrf_field(viewer.csrf_token()),
            school = school.id,
        );
    }
    out.push_str("</tbody></table><h3>Add a purpose</h3>");
    out.push_str(&form(
        viewer,
        "/governance/consent/purposes",
        school,
        &format!(
            "<input type=\"hidden\" name=\"action\" value=\"add\">{}{}",
            input(
                "key",
                "Key",
                "Letters, digits and underscores, such as sports_day"
            ),
            input("title", "Title", "As parents read it on the consent form"),
        ),
        "Add the purpose",
    ));
    Ok(out)
}

#[derive(Debug, Deserialize)]
struct PurposeForm {
    #[serde(default)]
    school: String,
    action: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    title: String,
}

async fn change_purpose(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Form(form): Form<PurposeForm>,
) -> Result<Response, ConsoleError> {
    let school = school_for(
        &state,
        &viewer,
        school_of(&form.school),
        Permission::ManageGovernance,
    )
    .await?;
    let store = state.store();
    let actor = viewer.actor();
    match form.action.as_str() {
        "add" => {
            store
                .add_consent_purpose(&actor, school.id, &form.key, &form.title)
                .await?;
        }
        "rename" => {
            store
                .rename_consent_purpose(&actor, school.id, &form.key, &form.title)
                .await?;
        }
        "retire" | "restore" => {
            store
                .retire_consent_purpose(&actor, school.id, &form.key, form.action == "retire")
                .await?;
        }
        other => {
            return Err(ConsoleError::BadRequest(format!(
                "`{other}` is not a change to a purpose; use the page's buttons"
            )))
        }
    }
    Ok(Redirect::to(&format!(
        "/governance/consent?school={}#purposes",
        school.id
    ))
    .into_response())
}

#[derive(Debug, Deserialize)]
struct ConsentForm {
    #[serde(default)]
    school: String,
    pupil: String,
    purpose: String,
    answer: String,
    #[serde(default)]
    given_by: String,
    #[serde(default)]
    given_by_name: String,
    #[serde(default)]
    given_on: String,
    #[serde(default)]
    expires_on: String,
}

async fn record_consent(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Form(form): Form<ConsentForm>,
) -> Result<Response, ConsoleError> {
    let school = school_for(
        &state,
        &viewer,
        school_of(&form.school),
        Permission::ManageGovernance,
    )
    .await?;
    let pupil_id = id_field("pupil", &form.pupil)?;
    if form.answer == "withdraw" {
        state
            .store()
            .withdraw_consent(
                &viewer.actor(),
                school.id,
                pupil_id,
                &form.purpose,
                Some(&form.given_by_name),
            )
            .await?;
    } else {
        let given_by = if form.given_by.trim().is_empty() {
            None
        } else {
            Some(id_field("given by", &form.given_by)?)
        };
        state
            .store()
            .record_consent(
                &viewer.actor(),
                school.id,
                &NewConsent {
                    pupil_id,
                    purpose: form.purpose.clone(),
                    granted: form.answer == "yes",
                    given_by_person_id: given_by,
                    given_by_name: form.given_by_name,
                    given_on: date("date given", &form.given_on)?,
                    expires_on: optional_date("review or expiry date", &form.expires_on)?,
                },
            )
            .await?;
    }
    Ok(Redirect::to(&format!(
        "/governance/consent?school={}&purpose={}",
        school.id,
        query_value(&form.purpose)
    ))
    .into_response())
}

async fn training(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<SchoolQuery>,
) -> Result<Response, ConsoleError> {
    let school = school_for(&state, &viewer, query.school, Permission::SeeGovernance).await?;
    let store = state.store();
    let mut body = format!(
        "<h1>Training</h1><p>{}</p><h2>Overdue</h2><ul>",
        escape(&school.name)
    );
    let overdue = store.overdue_training(Some(school.id), today()).await?;
    if overdue.is_empty() {
        body.push_str("<li>Nothing is overdue.</li>");
    }
    for item in &overdue {
        let _ = write!(body, "<li>{}</li>", escape(&item.describe()));
    }
    body.push_str("</ul><h2>Records</h2><table><thead><tr><th scope=\"col\">Person</th><th scope=\"col\">Training</th>\
                   <th scope=\"col\">Completed</th><th scope=\"col\">Provider</th><th scope=\"col\">Expires</th><th scope=\"col\">Evidence</th></tr></thead><tbody>");
    for r in store.training_records(school.id, None).await? {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&r.person_name),
            escape(r.kind.title()),
            r.completed_on,
            escape(&r.provider),
            r.expires_on.map(|d| d.to_string()).unwrap_or_default(),
            r.evidence_file_id
                .map(|id| file_link(&school, id, "certificate"))
                .unwrap_or_default()
        );
    }
    body.push_str("</tbody></table>");
    if viewer.can(Permission::ManageGovernance, school.id) {
        let people: Vec<(String, String)> = store
            .people(school.id, None)
            .await?
            .into_iter()
            .filter(|p| matches!(p.details.kind, PersonKind::Staff | PersonKind::Governor))
            .map(|p| (p.id.to_string(), p.details.full_name()))
            .collect();
        let kinds = options(
            TrainingKind::ALL,
            |k| k.as_str().to_owned(),
            |k| k.title().to_owned(),
        );
        body.push_str("<h2>Record training</h2>");
        body.push_str(&upload_form(
            &viewer,
            "/governance/training",
            &school,
            &format!(
                "{}{}{}{}{}{}",
                html::select("person", "Person", &people, ""),
                html::select("kind", "Training", &kinds, "online_safety_update"),
                input("completed_on", "Completed on", "YYYY-MM-DD"),
                input("provider", "Provider", ""),
                input("expires_on", "Expires on", "YYYY-MM-DD; empty for the usual (a year for the yearly update, two for the DSL refresher)"),
                file_input(
                    "evidence",
                    "Certificate",
                    &format!("Optional; PDF or image, up to {} MiB", MAX_FILE_BYTES / (1024 * 1024)),
                ),
            ),
            "Record",
        ));
    }
    Ok(html::page(&viewer, "Training", &body).into_response())
}

async fn record_training(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    request: Request,
) -> Result<Response, ConsoleError> {
    let form = read_upload(&state, request, "evidence", "certificate").await?;
    let school = school_for(
        &state,
        &viewer,
        school_of(form.get("school")),
        Permission::ManageGovernance,
    )
    .await?;
    state
        .store()
        .record_training(
            &viewer.actor(),
            school.id,
            &NewTraining {
                person_id: id_field("person", form.get("person"))?,
                kind: form.get("kind").parse()?,
                completed_on: date("completed on", form.get("completed_on"))?,
                provider: form.get("provider").to_owned(),
                evidence: form.new_file(&state)?,
                expires_on: optional_date("expires on", form.get("expires_on"))?,
            },
        )
        .await?;
    Ok(back("/governance/training", &school))
}

async fn policies(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<SchoolQuery>,
) -> Result<Response, ConsoleError> {
    let school = school_for(&state, &viewer, query.school, Permission::SeeGovernance).await?;
    let store = state.store();
    let mut body = format!(
        "<h1>Policies and reviews</h1><p>{}</p><h2>Policy register</h2><table><thead><tr><th scope=\"col\">Policy</th>\
         <th scope=\"col\">Owner</th><th scope=\"col\">Approver</th><th scope=\"col\">Written</th><th scope=\"col\">Last reviewed</th>\
         <th scope=\"col\">Next review</th></tr></thead><tbody>",
        escape(&school.name)
    );
    let today = today();
    for p in store.policies(school.id).await? {
        let due = if p.next_review_on <= today {
            " <strong>(due)</strong>"
        } else {
            ""
        };
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{due}</td></tr>",
            escape(&p.title),
            escape(&p.owner),
            escape(&p.approver),
            p.written_on,
            p.last_reviewed_on
                .map(|d| d.to_string())
                .unwrap_or_default(),
            p.next_review_on
        );
    }
    body.push_str("</tbody></table><h2>Filtering and monitoring reviews</h2><ul>");
    for r in store.filtering_reviews(school.id).await? {
        let _ = write!(
            body,
            "<li>Held {} (next due {}): <a href=\"/governance/reviews/{}?school={}\">Markdown</a></li>",
            r.held_on, r.next_review_on, r.id, school.id
        );
    }
    body.push_str("</ul>");
    if viewer.can(Permission::ManageGovernance, school.id) {
        body.push_str("<h2>Add or update a policy</h2>");
        body.push_str(&form(
            &viewer,
            "/governance/policies",
            &school,
            &format!(
                "{}{}{}{}{}{}",
                input("title", "Title", "The same title updates that policy"),
                input("owner", "Owner", ""),
                input("approver", "Approver", ""),
                input("written_on", "Written on", "YYYY-MM-DD"),
                input(
                    "last_reviewed_on",
                    "Last reviewed on",
                    "YYYY-MM-DD, optional"
                ),
                input("next_review_on", "Next review by", "YYYY-MM-DD"),
            ),
            "Save",
        ));
        body.push_str(
            "<h2>Record the yearly filtering and monitoring review</h2>\
            <p>SLT, the DSL, IT and the responsible governor take part together.</p>",
        );
        body.push_str(&form(
            &viewer,
            "/governance/reviews",
            &school,
            &format!(
                "{}{}{}{}{}{}{}{}",
                input("held_on", "Held on", "YYYY-MM-DD"),
                textarea(
                    "participants",
                    "Participants",
                    "One a line: role: name (SLT, DSL, IT, Governor)"
                ),
                textarea(
                    "risk_profile",
                    "Risk profile",
                    "The school's pupils, devices and risks"
                ),
                textarea("incidents", "Incidents since the last review", ""),
                textarea("changes", "Changes in risk or technology", ""),
                textarea(
                    "checks",
                    "Checks across groups and devices",
                    "One a line: group or device | check | result"
                ),
                textarea("decisions", "Decisions", "One a line"),
                input("next_review_on", "Next review by", "YYYY-MM-DD"),
            ),
            "Record the review",
        ));
    }
    Ok(html::page(&viewer, "Policies and reviews", &body).into_response())
}

#[derive(Debug, Deserialize)]
struct PolicyForm {
    #[serde(default)]
    school: String,
    title: String,
    owner: String,
    approver: String,
    written_on: String,
    #[serde(default)]
    last_reviewed_on: String,
    next_review_on: String,
}

async fn save_policy(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Form(form): Form<PolicyForm>,
) -> Result<Response, ConsoleError> {
    let school = school_for(
        &state,
        &viewer,
        school_of(&form.school),
        Permission::ManageGovernance,
    )
    .await?;
    state
        .store()
        .save_policy(
            &viewer.actor(),
            school.id,
            &PolicyEntry {
                title: form.title,
                owner: form.owner,
                approver: form.approver,
                written_on: date("written on", &form.written_on)?,
                last_reviewed_on: optional_date("last reviewed on", &form.last_reviewed_on)?,
                next_review_on: date("next review by", &form.next_review_on)?,
                notes: None,
            },
        )
        .await?;
    Ok(back("/governance/policies", &school))
}

#[derive(Debug, Deserialize)]
struct ReviewForm {
    #[serde(default)]
    school: String,
    held_on: String,
    participants: String,
    risk_profile: String,
    #[serde(default)]
    incidents: String,
    #[serde(default)]
    changes: String,
    checks: String,
    decisions: String,
    next_review_on: String,
}

fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().map(str::trim).filter(|l| !l.is_empty())
}

async fn record_review(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Form(form): Form<ReviewForm>,
) -> Result<Response, ConsoleError> {
    let school = school_for(
        &state,
        &viewer,
        school_of(&form.school),
        Permission::ManageGovernance,
    )
    .await?;
    let participants = lines(&form.participants)
        .map(|l| {
            let (role, name) = l.split_once(':').ok_or_else(|| {
                ConsoleError::BadRequest(format!("participants: write `{l}` as role: name"))
            })?;
            Ok(Participant {
                role: role.trim().to_owned(),
                name: name.trim().to_owned(),
            })
        })
        .collect::<Result<Vec<_>, ConsoleError>>()?;
    let checks = lines(&form.checks)
        .map(|l| {
            let parts: Vec<&str> = l.split('|').map(str::trim).collect();
            match parts.as_slice() {
                [subject, test, result] => Ok(FilterCheck {
                    subject: (*subject).to_owned(),
                    test: (*test).to_owned(),
                    result: (*result).to_owned(),
                }),
                _ => Err(ConsoleError::BadRequest(format!(
                    "checks: write `{l}` as group or device | check | result"
                ))),
            }
        })
        .collect::<Result<Vec<_>, ConsoleError>>()?;
    state
        .store()
        .record_filtering_review(
            &viewer.actor(),
            school.id,
            &NewReview {
                held_on: date("held on", &form.held_on)?,
                participants,
                inputs: ReviewInputs {
                    risk_profile: form.risk_profile,
                    incidents: form.incidents,
                    checks,
                    changes: form.changes,
                },
                decisions: lines(&form.decisions).map(str::to_owned).collect(),
                next_review_on: date("next review by", &form.next_review_on)?,
            },
        )
        .await?;
    Ok(back("/governance/policies", &school))
}

async fn review_markdown(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Query(query): Query<SchoolQuery>,
) -> Result<Response, ConsoleError> {
    let school = school_for(&state, &viewer, query.school, Permission::SeeGovernance).await?;
    let review = state
        .store()
        .filtering_reviews(school.id)
        .await?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or(ConsoleError::NotFound("that review"))?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "text/markdown; charset=utf-8".to_owned(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"filtering-review-{}.md\"",
                    review.held_on
                ),
            ),
        ],
        review.markdown(&school.name),
    )
        .into_response())
}

async fn assets(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<SchoolQuery>,
) -> Result<Response, ConsoleError> {
    let school = school_for(&state, &viewer, query.school, Permission::ManageAssets).await?;
    let store = state.store();
    let names: std::collections::HashMap<i64, String> = store
        .people(school.id, None)
        .await?
        .into_iter()
        .map(|p| (p.id, p.details.full_name()))
        .collect();
    let mut body = format!(
        "<h1>Asset register</h1><p>{}</p><table><thead><tr><th scope=\"col\">Tag</th><th scope=\"col\">Kind</th>\
         <th scope=\"col\">Description</th><th scope=\"col\">Assigned to</th><th scope=\"col\">Location</th>\
         <th scope=\"col\">Encryption</th><th scope=\"col\">Status</th></tr></thead><tbody>",
        escape(&school.name)
    );
    for a in store.assets(school.id, None).await? {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td><td>{}{}</td></tr>",
            escape(&a.tag),
            a.kind,
            escape(&a.description),
            escape(a.assigned_person_id.and_then(|p| names.get(&p)).map_or("", String::as_str)),
            escape(a.location.as_deref().unwrap_or("")),
            a.encryption,
            if a.encryption_gap() { " <strong>(check)</strong>" } else { "" },
            a.status,
            a.certificate_file_id
                .map(|id| format!(" ({})", file_link(&school, id, "certificate of secure deletion")))
                .unwrap_or_default(),
        );
    }
    body.push_str("</tbody></table>");
    let people: Vec<(String, String)> = std::iter::once((String::new(), "Nobody".to_owned()))
        .chain(
            names
                .iter()
                .map(|(id, name)| (id.to_string(), name.clone())),
        )
        .collect();
    let kinds = options(
        AssetKind::ALL,
        |k| k.as_str().to_owned(),
        |k| k.as_str().to_owned(),
    );
    let encryptions = options(
        Encryption::ALL,
        |e| e.as_str().to_owned(),
        |e| e.as_str().replace('_', " "),
    );
    body.push_str("<h2>Add or update an asset</h2>");
    body.push_str(&form(
        &viewer,
        "/governance/assets",
        &school,
        &format!(
            "{}{}{}{}{}{}{}",
            html::select("kind", "Kind", &kinds, "hardware"),
            input(
                "tag",
                "Asset tag or software name",
                "The same tag updates that asset"
            ),
            input("description", "Description", ""),
            html::select("person", "Assigned to", &people, ""),
            input("location", "Location", ""),
            html::select("encryption", "Encryption", &encryptions, "unknown"),
            input(
                "licence",
                "Licence",
                "Software: key reference, seats, renewal"
            ),
        ),
        "Save",
    ));
    body.push_str("<h2>Equipment handed back (leaver's checklist)</h2>");
    body.push_str(&form(
        &viewer,
        "/governance/assets/return",
        &school,
        &format!(
            "{}{}{}",
            input("tag", "Asset tag", ""),
            input("returned_on", "Returned on", "YYYY-MM-DD"),
            input("location", "Now kept at", "Optional"),
        ),
        "Record the return",
    ));
    let _ = write!(
        body,
        "<h2>Disposal</h2><p>Hardware needs its certificate of secure deletion.</p>\
         <form method=\"post\" action=\"/governance/assets/dispose?csrf={csrf}\" enctype=\"multipart/form-data\">\
         <input type=\"hidden\" name=\"school\" value=\"{id}\">{}{}{}\
         <div class=\"field\"><label for=\"certificate\">Certificate of secure deletion</label>\
         <input type=\"file\" id=\"certificate\" name=\"certificate\"></div><button>Record the disposal</button></form>",
        input("tag", "Asset tag", ""),
        input("disposed_on", "Disposed of on", "YYYY-MM-DD"),
        input("method", "How", "Recycler, shredding, returned to lessor"),
        csrf = query_value(viewer.csrf_token()),
        id = school.id,
    );
    Ok(html::page(&viewer, "Asset register", &body).into_response())
}

#[derive(Debug, Deserialize)]
struct AssetForm {
    #[serde(default)]
    school: String,
    kind: String,
    tag: String,
    description: String,
    #[serde(default)]
    person: String,
    #[serde(default)]
    location: String,
    encryption: String,
    #[serde(default)]
    licence: String,
}

async fn save_asset(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Form(form): Form<AssetForm>,
) -> Result<Response, ConsoleError> {
    let school = school_for(
        &state,
        &viewer,
        school_of(&form.school),
        Permission::ManageAssets,
    )
    .await?;
    let person = if form.person.trim().is_empty() {
        None
    } else {
        Some(id_field("assigned to", &form.person)?)
    };
    state
        .store()
        .save_asset(
            &viewer.actor(),
            school.id,
            &AssetEntry {
                kind: form.kind.parse()?,
                tag: form.tag,
                description: form.description,
                assigned_person_id: person,
                location: Some(form.location),
                encryption: form.encryption.parse()?,
                licence: Some(form.licence),
            },
        )
        .await?;
    Ok(back("/governance/assets", &school))
}

#[derive(Debug, Deserialize)]
struct ReturnForm {
    #[serde(default)]
    school: String,
    tag: String,
    returned_on: String,
    #[serde(default)]
    location: String,
}

async fn return_asset(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Form(form): Form<ReturnForm>,
) -> Result<Response, ConsoleError> {
    let school = school_for(
        &state,
        &viewer,
        school_of(&form.school),
        Permission::ManageAssets,
    )
    .await?;
    state
        .store()
        .return_asset(
            &viewer.actor(),
            school.id,
            &form.tag,
            date("returned on", &form.returned_on)?,
            Some(&form.location),
        )
        .await?;
    Ok(back("/governance/assets", &school))
}

async fn dispose_asset(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    request: Request,
) -> Result<Response, ConsoleError> {
    let form = read_upload(
        &state,
        request,
        "certificate",
        "certificate of secure deletion",
    )
    .await?;
    let school = school_for(
        &state,
        &viewer,
        school_of(form.get("school")),
        Permission::ManageAssets,
    )
    .await?;
    let certificate = form.new_file(&state)?;
    state
        .store()
        .dispose_asset(
            &viewer.actor(),
            school.id,
            form.get("tag"),
            date("disposed of on", form.get("disposed_on"))?,
            form.get("method"),
            certificate.as_ref(),
        )
        .await?;
    Ok(back("/governance/assets", &school))
}
