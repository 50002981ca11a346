//! Safeguarding incidents in the console (issue 8, R1–R7): the "log a
//! concern" form every member of staff can use, with a hide-screen button;
//! the incident as a guided workflow following the policy's flowchart;
//! actions, referrals and parents informed; evidence sealed at rest; a
//! pupil's chronology; print views of a case, with staff names taken out
//! for sharing; and the retention report.
//!
//! Who may open what is decided in the store ([`sheepdog_store::incidents`])
//! for every call, so the pages and the API cannot disagree: the pages only
//! check that a role could ever read incidents before asking.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use sheepdog_store::incidents::{
    About, Agency, ClosingReview, ContactMethod, EntryData, EvidenceLimits, EvidencePurpose,
    EvidenceUpload, IllegalKind, IllegalStep, Incident, IncidentEntry, IncidentStatus,
    InternalReview, Involved, InvolvedRole, NewIncident, Path as FlowPath, Receipt,
    RetentionPolicy, ReviewAction, ReviewedItem, Reviewer, Route, CATEGORIES,
};
use sheepdog_store::{PersonKind, StoreError};

use crate::alerts::{field, form_pairs, urgency_select};
use crate::api::ApiResult;
use crate::auth::Viewer;
use crate::html::{self, escape, query_value};
use crate::pages::school_for;
use crate::roles::Permission;
use crate::{ConsoleError, ConsoleState};

/// Evidence uploads up to this size reach the store, which applies its own
/// (smaller or equal) limit with a clear message.
const UPLOAD_BODY_LIMIT: usize = 26 * 1024 * 1024;

/// The retention rule new records get (R7): date of birth + 25 years.
pub fn retention() -> RetentionPolicy {
    RetentionPolicy::default()
}

const KINDS: &[IllegalKind] = &[
    IllegalKind::ChildSexualAbuseImages,
    IllegalKind::Grooming,
    IllegalKind::ObsceneMaterialSentToChild,
    IllegalKind::ObscenePublications,
    IllegalKind::CriminallyRacistMaterial,
    IllegalKind::TerrorismOrExtremism,
    IllegalKind::ComputerMisuse,
    IllegalKind::OtherCriminalConduct,
];

/// Monitoring categories offered besides the "4 Cs".
const MONITORING_CATEGORIES: &[&str] = &[
    "self-harm",
    "bullying",
    "sexual-content",
    "grooming",
    "radicalisation",
    "violence",
    "drugs",
    "gambling",
];

pub fn routes() -> Router<ConsoleState> {
    Router::new()
        .route("/hide", get(hidden))
        .route("/incidents", get(list))
        .route("/incidents/new", get(new_form).post(create))
        .route("/incidents/due-for-review", get(due_for_review))
        .route("/incidents/{id}", get(detail))
        .route("/incidents/{id}/path", post(decide_path))
        .route("/incidents/{id}/steps", post(complete_step))
        .route("/incidents/{id}/review", post(record_review))
        .route("/incidents/{id}/entries", post(add_entry))
        .route("/incidents/{id}/entries/{entry}/done", post(complete_entry))
        .route("/incidents/{id}/close", post(close))
        .route("/incidents/{id}/reopen", post(reopen))
        .route(
            "/incidents/{id}/evidence",
            post(upload).layer(DefaultBodyLimit::max(UPLOAD_BODY_LIMIT)),
        )
        .route("/incidents/{id}/print", get(print))
        .route("/evidence/{id}", get(download))
        .route("/people/{id}/chronology", get(chronology))
        .route("/api/v1/incidents", get(api_list).post(api_create))
        .route("/api/v1/incidents/due-for-review", get(api_due))
        .route("/api/v1/incidents/{id}", get(api_detail))
        .route("/api/v1/incidents/{id}/path", post(api_path))
        .route("/api/v1/incidents/{id}/steps", post(api_step))
        .route("/api/v1/incidents/{id}/review", post(api_review))
        .route("/api/v1/incidents/{id}/entries", post(api_entry))
        .route(
            "/api/v1/incidents/{id}/entries/{entry}/done",
            post(api_entry_done),
        )
        .route("/api/v1/incidents/{id}/close", post(api_close))
        .route("/api/v1/incidents/{id}/reopen", post(api_reopen))
        .route(
            "/api/v1/incidents/{id}/evidence",
            post(api_upload).layer(DefaultBodyLimit::max(UPLOAD_BODY_LIMIT)),
        )
        .route("/api/v1/evidence/{id}", get(api_download))
        .route("/api/v1/people/{id}/chronology", get(api_chronology))
}

// ---------------------------------------------------------------------
// The hide-screen button.

/// What the page turns into when the hide-screen button is pressed: a
/// plain timetable, nothing about safeguarding. With JavaScript the page
/// hides its content in place (what was typed is kept, the faint "Back" link
/// brings it back); without, the button is a link to `/hide`, and the
/// browser's Back button returns to the form.
const NEUTRAL: &str = "<h1>Timetable: week A</h1><table><thead><tr><th scope=\"col\">Period</th>\
    <th scope=\"col\">Monday</th><th scope=\"col\">Tuesday</th><th scope=\"col\">Wednesday</th></tr></thead>\
    <tbody><tr><td>1</td><td>Maths</td><td>English</td><td>Science</td></tr>\
    <tr><td>2</td><td>English</td><td>Maths</td><td>PE</td></tr>\
    <tr><td>3</td><td>Topic</td><td>Music</td><td>Maths</td></tr></tbody></table>";

/// The button, the neutral content it reveals, and the script that swaps
/// them. Put at the top of every page a concern is written or read on.
pub fn hide_screen() -> String {
    format!(
        "<style>#neutral{{display:none}}body.screen-hidden header,body.screen-hidden main>*:not(#neutral)\
         {{display:none!important}}body.screen-hidden #neutral{{display:block}}\
         a.hide-screen{{float:right;background:#0b0c0c;color:#fff;padding:.4rem .9rem;font-weight:700;\
         text-decoration:none}}@media print{{a.hide-screen{{display:none}}}}</style>\
         <a href=\"/hide\" id=\"hide-screen\" class=\"hide-screen\" accesskey=\"h\">Hide screen</a>\
         <div id=\"neutral\">{NEUTRAL}<p><a href=\"#\" id=\"unhide\" style=\"color:#b1b4b6\">Back</a></p></div>\
         <script>(function(){{var b=document.body,h=document.getElementById('hide-screen'),\
         u=document.getElementById('unhide'),t=document.title;\
         h.addEventListener('click',function(e){{e.preventDefault();b.classList.add('screen-hidden');\
         document.title='Timetable';window.scrollTo(0,0);}});\
         u.addEventListener('click',function(e){{e.preventDefault();b.classList.remove('screen-hidden');\
         document.title=t;}});}})();</script>"
    )
}

async fn hidden() -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::response::Html(format!(
            "<!doctype html>\n<html lang=\"en-GB\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>Timetable</title></head><body><main id=\"content\">{NEUTRAL}</main></body></html>\n"
        )),
    )
        .into_response()
}

// ---------------------------------------------------------------------
// Shared wording.

/// A stored time (`2026-11-23T10:15:00.000000Z`) as people read it, to the
/// minute, in UTC.
pub fn when(at: &str) -> String {
    at.get(..16).unwrap_or(at).replace('T', " ")
}

fn who(actor: &str) -> &str {
    // `account:ID:username`: the username is what people recognise.
    actor.splitn(3, ':').nth(2).unwrap_or(actor)
}

fn route_words(route: Route) -> &'static str {
    match route {
        Route::Dsl => "the designated safeguarding lead and deputies (and the headteacher)",
        Route::Headteacher => "the headteacher alone (a concern about a member of staff)",
        Route::ChairOfGovernors => "the chair of governors alone (a concern about the headteacher)",
    }
}

fn path_words(path: FlowPath) -> String {
    match path {
        FlowPath::Undecided => "not yet decided".to_string(),
        FlowPath::Illegal(kind) => format!("illegal: {}", kind.describe()),
        FlowPath::Internal => "internal procedure".to_string(),
    }
}

fn options(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(v, t)| (v.to_string(), t.to_string()))
        .collect()
}

fn textarea(name: &str, label: &str, hint: Option<&str>, value: &str) -> String {
    format!(
        "<label for=\"{name}\">{}{}</label><textarea id=\"{name}\" name=\"{name}\" rows=\"4\" cols=\"60\">{}</textarea>",
        escape(label),
        hint.map_or(String::new(), |h| format!(
            "<span class=\"hint\">{}</span>",
            escape(h)
        )),
        escape(value)
    )
}

fn problem_box(problem: Option<&str>) -> String {
    problem.map_or(String::new(), |p| {
        format!(
            "<div class=\"summary\" role=\"alert\" tabindex=\"-1\" id=\"problem\"><h2>There is a problem</h2><p>{}</p></div>",
            escape(p)
        )
    })
}

/// A due time typed as `YYYY-MM-DD` (the end of that day) or
/// `YYYY-MM-DD HH:MM`, in UTC.
fn parse_due(text: &str) -> Result<Option<DateTime<Utc>>, ConsoleError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if let Ok(at) = NaiveDateTime::parse_from_str(&text.replace('T', " "), "%Y-%m-%d %H:%M") {
        return Ok(Some(at.and_utc()));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(23, 59, 0))
        .map(|at| Some(at.and_utc()))
        .ok_or_else(|| {
            ConsoleError::BadRequest(format!(
                "due `{text}` is not a date: write YYYY-MM-DD or YYYY-MM-DD HH:MM"
            ))
        })
}

// ---------------------------------------------------------------------
// Logging a concern.

/// The "log a concern" form as typed.
#[derive(Debug, Default, Clone)]
pub struct ConcernForm {
    pub about: String,
    pub pupils: Vec<i64>,
    pub subject: String,
    pub subject_description: String,
    pub others: String,
    pub witnesses: String,
    pub category: String,
    pub summary: String,
    pub description: String,
    pub occurred: String,
    pub device: String,
    pub location: String,
    pub urgency: String,
    pub event: String,
}

impl ConcernForm {
    fn from_pairs(pairs: &[(String, String)]) -> Self {
        Self {
            about: field(pairs, "about").to_string(),
            pupils: pairs
                .iter()
                .filter(|(k, _)| k == "pupil")
                .filter_map(|(_, v)| v.parse().ok())
                .collect(),
            subject: field(pairs, "subject").to_string(),
            subject_description: field(pairs, "subject_description").to_string(),
            others: field(pairs, "others").to_string(),
            witnesses: field(pairs, "witnesses").to_string(),
            category: field(pairs, "category").to_string(),
            summary: field(pairs, "summary").to_string(),
            description: field(pairs, "description").to_string(),
            occurred: field(pairs, "occurred").to_string(),
            device: field(pairs, "device").to_string(),
            location: field(pairs, "location").to_string(),
            urgency: field(pairs, "urgency").to_string(),
            event: field(pairs, "event").to_string(),
        }
    }

    /// The concern to record, or what is wrong with the form.
    fn to_new(&self) -> Result<NewIncident, String> {
        let about = match self.about.trim() {
            "" => About::Pupil,
            text => text.parse::<About>().map_err(|e| e.to_string())?,
        };
        let occurred_at = match self.occurred.trim() {
            "" => Utc::now(),
            text => NaiveDateTime::parse_from_str(&text.replace('T', " "), "%Y-%m-%d %H:%M")
                .map(|t| t.and_utc())
                .map_err(|_| {
                    format!(
                        "when it happened: `{text}` is not a date and time; write YYYY-MM-DD HH:MM"
                    )
                })?,
        };
        let urgency = match self.urgency.trim() {
            "" => sheepdog_store::incidents::Urgency::Routine,
            text => text.parse().map_err(|e: StoreError| e.to_string())?,
        };
        let mut people: Vec<Involved> = self
            .pupils
            .iter()
            .map(|p| Involved {
                person_id: Some(*p),
                description: None,
                role: InvolvedRole::Involved,
            })
            .collect();
        let subject_id = match self.subject.trim() {
            "" => None,
            text => Some(
                text.parse::<i64>()
                    .map_err(|_| format!("`{text}` is not a person"))?,
            ),
        };
        let subject_description = self.subject_description.trim();
        if subject_id.is_some() || !subject_description.is_empty() {
            people.push(Involved {
                person_id: subject_id,
                description: (!subject_description.is_empty())
                    .then(|| subject_description.to_string()),
                role: InvolvedRole::Subject,
            });
        }
        for (text, role) in [
            (&self.others, InvolvedRole::Involved),
            (&self.witnesses, InvolvedRole::Witness),
        ] {
            for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                people.push(Involved {
                    person_id: None,
                    description: Some(line.to_string()),
                    role,
                });
            }
        }
        Ok(NewIncident {
            category: match self.category.trim() {
                "" => "conduct".to_string(),
                c => c.to_string(),
            },
            summary: self.summary.clone(),
            description: self.description.clone(),
            occurred_at,
            device: Some(self.device.clone()),
            location: Some(self.location.clone()),
            urgency,
            about,
            people,
            alert_id: None,
            event_id: self.event.trim().parse().ok(),
        })
    }
}

#[derive(Debug, Default, Deserialize)]
struct NewQuery {
    school: Option<i64>,
    event: Option<i64>,
}

async fn concern_page(
    state: &ConsoleState,
    viewer: &Viewer,
    school: i64,
    form: &ConcernForm,
    problem: Option<&str>,
) -> Result<Response, ConsoleError> {
    // Names are offered only to roles that see lists of people; governors
    // describe the people in words instead.
    let (pupils, staff) = if viewer.can(Permission::SeePeople, school) {
        (
            state
                .store()
                .people(school, Some(PersonKind::Pupil))
                .await?,
            state
                .store()
                .people(school, Some(PersonKind::Staff))
                .await?,
        )
    } else {
        (Vec::new(), Vec::new())
    };
    let pupil_options: String = pupils
        .iter()
        .map(|p| {
            format!(
                "<option value=\"{}\"{}>{} ({})</option>",
                p.id,
                if form.pupils.contains(&p.id) {
                    " selected"
                } else {
                    ""
                },
                escape(&p.details.full_name()),
                escape(p.details.class_name.as_deref().unwrap_or("")),
            )
        })
        .collect();
    let pupil_field = if pupils.is_empty() {
        String::new()
    } else {
        format!(
            "<label for=\"pupil\">Pupils involved<span class=\"hint\">Choose one or more \
             (hold Ctrl or ⌘ to choose several)</span></label>\
             <select id=\"pupil\" name=\"pupil\" multiple size=\"6\">{pupil_options}</select>"
        )
    };
    let staff_options: Vec<(String, String)> = std::iter::once((String::new(), "—".to_string()))
        .chain(
            staff
                .iter()
                .map(|p| (p.id.to_string(), p.details.full_name())),
        )
        .collect();
    let subject_field = if staff.is_empty() {
        String::new()
    } else {
        html::select(
            "subject",
            "If the concern is about a member of staff: who",
            &staff_options,
            &form.subject,
        )
    };
    let abouts = options(&[
        ("pupil", "A pupil or pupils"),
        ("staff", "A member of staff, volunteer or contractor"),
        ("headteacher", "The headteacher"),
        ("other", "Someone else"),
    ]);
    let mut categories: Vec<(String, String)> = CATEGORIES
        .iter()
        .map(|c| (c.to_string(), c.to_string()))
        .collect();
    categories.extend(
        MONITORING_CATEGORIES
            .iter()
            .map(|c| (c.to_string(), c.to_string())),
    );
    let event = if form.event.is_empty() {
        String::new()
    } else {
        format!(
            "<input type=\"hidden\" name=\"event\" value=\"{}\"><p class=\"notice\">About filtering log event {}.</p>",
            escape(&form.event),
            escape(&form.event)
        )
    };
    let body = format!(
        "{hide}<h1>Log a concern</h1>{problem}\
         <p>Write what you saw or heard, as soon as you can. The concern goes to the person the \
         policy names; you get a reference back. A concern about a member of staff goes to the \
         headteacher, one about the headteacher to the chair of governors.</p>\
         <form method=\"post\" action=\"/incidents/new?school={school}\" class=\"concern\">{csrf}{event}\
         {about}{pupil_field}{subject_field}\
         {subject_description}\
         {others}{witnesses}{category}{summary}{description}{occurred}{device}{location}{urgency}\
         <div><button>Log the concern</button></div></form>",
        hide = hide_screen(),
        problem = problem_box(problem),
        csrf = html::csrf_field(viewer.csrf_token()),
        about = html::select("about", "Who is the concern about?", &abouts, &form.about),
        subject_description = html::text_input(
            "subject_description",
            "The person it is about, if not listed",
            Some("Name and role, or a description"),
            &form.subject_description,
            None
        ),
        others = textarea(
            "others",
            "Anyone else involved",
            Some("One per line: name or description, and how they are involved"),
            &form.others
        ),
        witnesses = textarea(
            "witnesses",
            "Witnesses",
            Some("One per line: who saw or heard it"),
            &form.witnesses
        ),
        category = html::select("category", "Category", &categories, &form.category),
        summary = html::text_input(
            "summary",
            "Summary",
            Some("One line"),
            &form.summary,
            None
        ),
        description = textarea(
            "description",
            "What happened",
            Some("Facts: what you saw and heard, and what was said, in the words used"),
            &form.description
        ),
        occurred = html::text_input(
            "occurred",
            "When it happened (UTC)",
            Some("YYYY-MM-DD HH:MM; leave empty for now. An earlier day is fine and is shown as recorded late"),
            &form.occurred,
            None
        ),
        device = html::text_input("device", "Device", None, &form.device, None),
        location = html::text_input("location", "Where", None, &form.location, None),
        urgency = urgency_select(&form.urgency),
    );
    Ok(html::page(viewer, "Log a concern", &body).into_response())
}

async fn new_form(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<NewQuery>,
) -> Result<Response, ConsoleError> {
    let school = school_for(&state, &viewer, query.school, Permission::LogConcern).await?;
    let mut form = ConcernForm::default();
    // From a blocked-access event in the log: filled in from the event,
    // for those who may read the log.
    if let Some(id) = query.event {
        if viewer.can(Permission::SearchLogs, school.id) {
            // Only an event the viewer could find in the log: another
            // school's is as unknown here as there.
            let scope = crate::logs::log_scope(&state, &viewer).await?;
            let event = state
                .store()
                .event_by_id(id)
                .await?
                .filter(|found| {
                    scope.as_ref().is_none_or(|schools| {
                        found.event.school_id.is_some_and(|s| schools.contains(&s))
                    })
                })
                .ok_or(ConsoleError::NotFound("that event"))?;
            let e = &event.event;
            form.event = id.to_string();
            form.category = "content".to_string();
            form.summary = format!("{} access to {}", e.action, e.target);
            form.description = format!(
                "Filtering log event {id}: {} {} ({}) from {} on {}.",
                e.action,
                e.target,
                e.category.as_deref().unwrap_or("no category"),
                e.client,
                e.device_name.as_deref().unwrap_or("an unknown device"),
            );
            form.occurred = e.at.format("%Y-%m-%d %H:%M").to_string();
            form.device = e.device_name.clone().unwrap_or_default();
            form.pupils = e.person_id.into_iter().collect();
        }
    }
    concern_page(&state, &viewer, school.id, &form, None).await
}

async fn create(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<NewQuery>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let school = school_for(&state, &viewer, query.school, Permission::LogConcern).await?;
    let form = ConcernForm::from_pairs(&form_pairs(&body));
    let mut new = match form.to_new() {
        Ok(new) => new,
        Err(problem) => {
            let mut page = concern_page(&state, &viewer, school.id, &form, Some(&problem)).await?;
            *page.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            return Ok(page);
        }
    };
    if !viewer.can(Permission::SearchLogs, school.id) {
        new.event_id = None;
    }
    match state
        .store()
        .log_concern(&viewer.account, school.id, &new, &retention())
        .await
    {
        Ok(receipt) => Ok(receipt_page(&viewer, &receipt)),
        Err(e @ StoreError::Invalid { .. }) => {
            let mut page =
                concern_page(&state, &viewer, school.id, &form, Some(&e.to_string())).await?;
            *page.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            Ok(page)
        }
        Err(e) => Err(e.into()),
    }
}

fn receipt_page(viewer: &Viewer, receipt: &Receipt) -> Response {
    let open = if viewer.can_somewhere(Permission::SeeIncidents) {
        format!(
            "<p><a href=\"/incidents/{}\">Open the incident</a> (if your role reads it)</p>",
            receipt.id
        )
    } else {
        String::new()
    };
    let body = format!(
        "{hide}<h1>Concern logged</h1><div class=\"notice\" role=\"status\"><p>Your concern is recorded as \
         <strong id=\"reference\">{reference}</strong>. It has gone to {route}.</p></div>\
         <p>Keep the reference if you need to add to what you said. If a child is in immediate danger, \
         call 999 now.</p>{open}<p><a href=\"/incidents/new\">Log another concern</a></p>",
        hide = hide_screen(),
        reference = escape(&receipt.reference),
        route = route_words(receipt.route),
    );
    (
        StatusCode::CREATED,
        html::page(viewer, "Concern logged", &body),
    )
        .into_response()
}

// ---------------------------------------------------------------------
// Lists.

#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    school: Option<i64>,
    #[serde(default)]
    status: String,
}

fn status_filter(text: &str) -> Result<Option<IncidentStatus>, ConsoleError> {
    match text.trim() {
        "" | "all" => Ok(None),
        other => other
            .parse()
            .map(Some)
            .map_err(|e: StoreError| ConsoleError::BadRequest(e.to_string())),
    }
}

fn incident_rows(incidents: &[Incident]) -> String {
    incidents
        .iter()
        .map(|i| {
            format!(
                "<tr><td><a href=\"/incidents/{id}\">{reference}</a></td><td>{occurred}{late}</td>\
                 <td>{category}</td><td>{summary}</td><td>{urgency}</td><td>{path}</td><td>{status}</td>\
                 <td>{retain}</td></tr>",
                id = i.id,
                reference = escape(&i.reference),
                occurred = escape(&when(&i.occurred_at)),
                late = if i.recorded_late {
                    " <strong>(recorded late)</strong>"
                } else {
                    ""
                },
                category = escape(&i.category),
                summary = escape(&i.summary),
                urgency = i.urgency,
                path = escape(&path_words(i.path)),
                status = i.status,
                retain = escape(&i.retain_until),
            )
        })
        .collect()
}

const LIST_HEAD: &str = "<thead><tr><th scope=\"col\">Reference</th><th scope=\"col\">When (UTC)</th>\
    <th scope=\"col\">Category</th><th scope=\"col\">Summary</th><th scope=\"col\">Urgency</th>\
    <th scope=\"col\">Path</th><th scope=\"col\">Status</th><th scope=\"col\">Review on</th></tr></thead>";

async fn list(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<ListQuery>,
) -> Result<Response, ConsoleError> {
    let school = school_for(&state, &viewer, query.school, Permission::SeeIncidents).await?;
    let status = status_filter(&query.status)?;
    let incidents = state
        .store()
        .incidents(&viewer.account, school.id, status)
        .await?;
    let overdue = state
        .store()
        .overdue_entries(&viewer.account, school.id)
        .await?;
    let overdue = if overdue.is_empty() {
        String::new()
    } else {
        let items: String = overdue
            .iter()
            .map(|(reference, e)| {
                format!(
                    "<li><a href=\"/incidents/{}\">{}</a>: {} (due {})</li>",
                    e.incident_id,
                    escape(reference),
                    escape(&e.data.summary()),
                    escape(&when(e.due_at.as_deref().unwrap_or("")))
                )
            })
            .collect();
        format!("<div class=\"warning\" id=\"overdue\"><h2>Overdue</h2><ul>{items}</ul></div>")
    };
    let statuses = options(&[
        ("", "Open and closed"),
        ("open", "Open"),
        ("closed", "Closed"),
    ]);
    let body = format!(
        "{hide}<h1>Incidents</h1><p><a href=\"/incidents/new?school={id}\">Log a concern</a> · \
         <a href=\"/incidents/due-for-review?school={id}\">Records due for retention review</a></p>{overdue}\
         <form method=\"get\" action=\"/incidents\"><input type=\"hidden\" name=\"school\" value=\"{id}\">\
         {status}<div><button>Show</button></div></form>\
         <table><caption>{n} incidents you may open, newest first</caption>{LIST_HEAD}<tbody>{rows}</tbody></table>",
        hide = hide_screen(),
        id = school.id,
        status = html::select("status", "Status", &statuses, query.status.trim()),
        n = incidents.len(),
        rows = incident_rows(&incidents),
    );
    Ok(html::page(&viewer, "Incidents", &body).into_response())
}

async fn due_for_review(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<ListQuery>,
) -> Result<Response, ConsoleError> {
    let school = school_for(&state, &viewer, query.school, Permission::SeeIncidents).await?;
    let due = state
        .store()
        .incidents_due_for_review(&viewer.account, school.id, Utc::now().date_naive())
        .await?;
    let rules: String = due
        .iter()
        .map(|i| {
            format!(
                "<li>{}: {}</li>",
                escape(&i.reference),
                escape(&i.retention_rule)
            )
        })
        .collect();
    let body = format!(
        "<h1>Records due for retention review</h1><p>Each record carries its retention rule (R7): \
         child protection records until the youngest pupil's 25th birthday. sheepdog deletes \
         nothing by itself: review each record below, and decide with the DSL whether it is kept \
         (for example while a case or an enquiry is open) or disposed of under the school's policy.</p>\
         <table><caption>{n} records whose review date has come</caption>{LIST_HEAD}<tbody>{rows}</tbody></table>\
         <h2>Rules</h2><ul>{rules}</ul>",
        n = due.len(),
        rows = incident_rows(&due),
    );
    Ok(html::page(&viewer, "Retention review", &body).into_response())
}

// ---------------------------------------------------------------------
// One incident: the guided workflow.

/// Everything the incident page shows; each reading audited by the store.
#[derive(Debug, serde::Serialize)]
pub struct Case {
    pub incident: Incident,
    pub entries: Vec<IncidentEntry>,
    pub evidence: Vec<sheepdog_store::incidents::EvidenceInfo>,
}

pub async fn open_case(
    state: &ConsoleState,
    viewer: &Viewer,
    id: i64,
) -> Result<Case, ConsoleError> {
    let incident = state.store().incident(&viewer.account, id).await?;
    let entries = state.store().incident_entries(&viewer.account, id).await?;
    let evidence = state.store().evidence_list(&viewer.account, id).await?;
    Ok(Case {
        incident,
        entries,
        evidence,
    })
}

fn flowchart(viewer: &Viewer, case: &Case, reviewers: &[(i64, String, String)]) -> String {
    let i = &case.incident;
    let csrf = html::csrf_field(viewer.csrf_token());
    let id = i.id;
    let closed = i.status == IncidentStatus::Closed;
    let kinds: String = KINDS
        .iter()
        .map(|k| {
            format!(
                "<div><input type=\"radio\" name=\"answer\" id=\"answer-{v}\" value=\"{v}\"> \
                 <label for=\"answer-{v}\" style=\"display:inline\">Yes: {}</label></div>",
                escape(k.describe()),
                v = k.as_str(),
            )
        })
        .collect();
    let question = |with_reason: bool| {
        format!(
            "<form method=\"post\" action=\"/incidents/{id}/path\" class=\"first-question\">{csrf}\
             <fieldset><legend><strong>Is illegal material or activity suspected?</strong></legend>\
             <div><input type=\"radio\" name=\"answer\" id=\"answer-no\" value=\"no\"> \
             <label for=\"answer-no\" style=\"display:inline\">No: follow the school's internal procedure</label></div>\
             {kinds}</fieldset>{reason}<div><button>Answer</button></div></form>",
            reason = if with_reason {
                html::text_input(
                    "reason",
                    "Why the answer changes",
                    Some("Required: for example, the review found illegal content"),
                    "",
                    None,
                )
            } else {
                String::new()
            },
        )
    };
    match i.path {
        FlowPath::Undecided if !closed => format!(
            "<section id=\"flowchart\"><h2>The first question</h2>\
             <p>Do not open, search or copy anything to answer it: decide from what was reported.</p>{}</section>",
            question(false)
        ),
        FlowPath::Undecided => String::new(),
        FlowPath::Illegal(kind) => {
            let steps: String = kind
                .steps()
                .iter()
                .map(|step| {
                    let entry = case.entries.iter().find(|e| {
                        matches!(e.data, EntryData::Step { step: s, .. } if s == *step)
                    });
                    let done = entry.and_then(|e| e.done_at.as_ref());
                    let status = match (done, entry.map(|e| &e.data)) {
                        (Some(at), Some(EntryData::Step { reference, note, .. })) => format!(
                            "<p class=\"notice\">Done {}{}{}</p>",
                            escape(&when(at)),
                            reference.as_ref().map_or(String::new(), |r| format!(
                                ", reference <strong>{}</strong>",
                                escape(r)
                            )),
                            note.as_ref()
                                .map_or(String::new(), |n| format!(": {}", escape(n))),
                        ),
                        _ if closed => "<p>Not done.</p>".to_string(),
                        _ => format!(
                            "<form method=\"post\" action=\"/incidents/{id}/steps\" class=\"step-{s}\">{csrf}\
                             <input type=\"hidden\" name=\"step\" value=\"{s}\">{reference}\
                             <label for=\"note-{s}\">Note</label><input type=\"text\" id=\"note-{s}\" name=\"note\">\
                             <div><button>Done</button></div></form>",
                            s = step.as_str(),
                            reference = if step.needs_reference() {
                                format!(
                                    "<label for=\"reference-{s}\">Reference given (required)</label>\
                                     <input type=\"text\" id=\"reference-{s}\" name=\"reference\">",
                                    s = step.as_str()
                                )
                            } else {
                                String::new()
                            },
                        ),
                    };
                    format!(
                        "<li id=\"step-{}\"><p><strong>{}</strong></p>{status}</li>",
                        step.as_str(),
                        escape(step.instruction())
                    )
                })
                .collect();
            format!(
                "<section id=\"flowchart\"><h2>Illegal material or activity suspected</h2>\
                 <div class=\"warning\"><p><strong>{}</strong>. Follow these steps in order. Nothing \
                 may be viewed, copied, printed or shared.</p></div><ol class=\"steps\">{steps}</ol>\
                 {change}</section>",
                escape(kind.describe()),
                change = if closed {
                    String::new()
                } else {
                    format!(
                        "<details><summary>Change the answer to the first question</summary>{}</details>",
                        question(true)
                    )
                },
            )
        }
        FlowPath::Internal => {
            let reviews: String = case
                .entries
                .iter()
                .filter_map(|e| match &e.data {
                    EntryData::Review(r) => Some(review_html(r, false)),
                    _ => None,
                })
                .collect();
            let reviewer_options: Vec<(String, String)> =
                std::iter::once((String::new(), "—".to_string()))
                    .chain(
                        reviewers
                            .iter()
                            .map(|(id, name, role)| (id.to_string(), format!("{name} ({role})"))),
                    )
                    .collect();
            let shots: String = case
                .evidence
                .iter()
                .map(|ev| {
                    format!(
                        "<div><input type=\"checkbox\" name=\"screenshot\" id=\"shot-{e}\" value=\"{e}\"> \
                         <label for=\"shot-{e}\" style=\"display:inline\">{}</label></div>",
                        escape(&ev.file_name),
                        e = ev.id
                    )
                })
                .collect();
            let actions = options(&[
                ("no_further_action", "No further action: the concern has no substance"),
                ("internal_response", "Internal response"),
                ("discipline", "Discipline"),
                ("local_authority", "Involve the local authority"),
                ("police", "Involve the police"),
            ]);
            let form = if closed {
                String::new()
            } else {
                format!(
                    "<form method=\"post\" action=\"/incidents/{id}/review\" class=\"review\">{csrf}\
                     <h3>Record of review</h3><p>Two different senior members of staff review the \
                     content together, on a computer that young people do not use.</p>\
                     {r1}{r2}{computer}{items}\
                     <fieldset><legend>Screenshots (attach them under Evidence first)</legend>{shots}</fieldset>\
                     {conclusion}{action}<div><button>Record the review</button></div></form>\
                     <details><summary>Change the answer to the first question</summary>{question}</details>",
                    r1 = html::select("reviewer_1", "First reviewer", &reviewer_options, ""),
                    r2 = html::select("reviewer_2", "Second reviewer", &reviewer_options, ""),
                    computer = html::text_input(
                        "computer",
                        "Designated computer used",
                        Some("Its name or asset number; keep using it for the whole procedure"),
                        "",
                        None
                    ),
                    items = textarea(
                        "items",
                        "Sites and content reviewed",
                        Some("One per line: the URL, a space, then what the content is"),
                        ""
                    ),
                    conclusion = textarea("conclusion", "Conclusion", None, ""),
                    action = html::select("action", "Action", &actions, "internal_response"),
                    question = question(true),
                )
            };
            // Once a review is recorded, a further one is still possible
            // (new content found) but no longer the page's main question.
            let form = if reviews.is_empty() || form.is_empty() {
                form
            } else {
                format!("<details><summary>Record a further review</summary>{form}</details>")
            };
            format!(
                "<section id=\"flowchart\"><h2>Internal procedure</h2>{reviews}{form}</section>"
            )
        }
    }
}

fn review_html(r: &InternalReview, redacted: bool) -> String {
    let reviewers: Vec<String> = r
        .reviewers
        .iter()
        .map(|rv| {
            if redacted {
                format!("[member of staff] ({})", rv.role)
            } else {
                format!("{} ({})", escape(&rv.name), escape(&rv.role))
            }
        })
        .collect();
    let items: String = r
        .items
        .iter()
        .map(|item| {
            format!(
                "<li><code>{}</code>: {}</li>",
                escape(&item.url),
                escape(&item.description)
            )
        })
        .collect();
    format!(
        "<div class=\"review-record\"><h3>Record of review</h3><dl><dt>Reviewers</dt><dd>{}</dd>\
         <dt>Designated computer</dt><dd>{}</dd><dt>Reviewed</dt><dd><ul>{items}</ul></dd>\
         <dt>Screenshots (evidence)</dt><dd>{}</dd><dt>Conclusion</dt><dd>{}</dd><dt>Action</dt><dd>{}</dd></dl></div>",
        reviewers.join(" and "),
        escape(&r.computer),
        if r.screenshots.is_empty() {
            "none".to_string()
        } else {
            r.screenshots
                .iter()
                .map(|s| format!("evidence #{s}"))
                .collect::<Vec<_>>()
                .join(", ")
        },
        escape(&r.conclusion),
        match r.action {
            ReviewAction::NoFurtherAction => "no further action",
            ReviewAction::InternalResponse => "internal response",
            ReviewAction::Discipline => "discipline",
            ReviewAction::LocalAuthority => "involve the local authority",
            ReviewAction::Police => "involve the police",
        },
    )
}

fn people_html(i: &Incident, staff: &[i64], redacted: bool) -> String {
    let people: String = i
        .people
        .iter()
        .map(|p| {
            let hidden = redacted && p.person_id.is_some_and(|id| staff.contains(&id));
            let name = if hidden {
                "[member of staff]".to_string()
            } else {
                match (&p.name, &p.description) {
                    (Some(n), Some(d)) => format!("{}, {}", escape(n), escape(d)),
                    (Some(n), None) => escape(n),
                    (None, Some(d)) => escape(d),
                    (None, None) => "unnamed".to_string(),
                }
            };
            let chronology = match p.person_id {
                Some(pid) if !redacted && !staff.contains(&pid) => {
                    format!(" · <a href=\"/people/{pid}/chronology\">chronology</a>")
                }
                _ => String::new(),
            };
            format!("<li>{name} — {}{chronology}</li>", p.role)
        })
        .collect();
    format!("<ul class=\"people\">{people}</ul>")
}

fn facts_html(i: &Incident, staff: &[i64], redacted: bool) -> String {
    let late = if i.recorded_late {
        format!(
            " <strong class=\"late\">Recorded late: on {}, after the day it happened.</strong>",
            escape(i.recorded_at.get(..10).unwrap_or(&i.recorded_at))
        )
    } else {
        String::new()
    };
    let origin = match (i.alert_id, i.event_id) {
        (Some(a), _) if !redacted => format!("monitoring <a href=\"/alerts/{a}\">alert {a}</a>"),
        (Some(a), _) => format!("monitoring alert {a}"),
        (None, Some(e)) => format!("filtering log event {e}"),
        _ => "a concern logged by staff".to_string(),
    };
    let lado = if i.lado_referral_needed {
        "<p class=\"warning\">A concern about an adult who works with children: refer it to the \
         LADO within one working day, and record the referral below.</p>"
    } else {
        ""
    };
    format!(
        "{lado}<dl class=\"facts\"><dt>Status</dt><dd id=\"status\">{status}{outcome}</dd>\
         <dt>Handled by</dt><dd>{route}</dd><dt>Category</dt><dd>{category}</dd>\
         <dt>Urgency</dt><dd>{urgency}</dd><dt>When it happened (UTC)</dt><dd>{occurred}{late}</dd>\
         <dt>Recorded</dt><dd>{recorded}{by}</dd><dt>Device</dt><dd>{device}</dd><dt>Where</dt><dd>{location}</dd>\
         <dt>From</dt><dd>{origin}</dd><dt>People</dt><dd>{people}</dd>\
         <dt>What happened</dt><dd style=\"white-space:pre-wrap\">{description}</dd>\
         <dt>Flowchart</dt><dd id=\"path\">{path}</dd>\
         <dt>Retention</dt><dd>{rule}; review on {until}</dd></dl>",
        status = i.status,
        outcome = i
            .outcome
            .as_ref()
            .map_or(String::new(), |o| format!(": {}", escape(o))),
        route = route_words(i.route),
        category = escape(&i.category),
        urgency = i.urgency,
        occurred = escape(&when(&i.occurred_at)),
        recorded = escape(&when(&i.recorded_at)),
        by = if redacted {
            String::new()
        } else {
            format!(" by {}", escape(who(&i.created_by)))
        },
        device = escape(i.device.as_deref().unwrap_or("")),
        location = escape(i.location.as_deref().unwrap_or("")),
        people = people_html(i, staff, redacted),
        description = escape(&i.description),
        path = escape(&path_words(i.path)),
        rule = escape(&i.retention_rule),
        until = escape(&i.retain_until),
    )
}

fn entry_line(e: &IncidentEntry, redacted: bool) -> String {
    let summary = match (&e.data, redacted) {
        (EntryData::Action { description, .. }, true) => {
            format!("action for [member of staff]: {description}")
        }
        (EntryData::Review(_), true) => "record of review".to_string(),
        _ => e.data.summary(),
    };
    let by = if redacted {
        String::new()
    } else {
        format!(" ({})", escape(who(&e.created_by)))
    };
    let state = match (&e.due_at, &e.done_at) {
        (_, Some(done))
            if matches!(
                e.data,
                EntryData::Action { .. } | EntryData::Referral { .. }
            ) =>
        {
            format!("done {}", escape(&when(done)))
        }
        (Some(due), None) if e.overdue => {
            format!(
                "<strong class=\"overdue\">OVERDUE: was due {}</strong>",
                escape(&when(due))
            )
        }
        (Some(due), None) => format!("due {}", escape(&when(due))),
        _ => String::new(),
    };
    format!(
        "<td>{}</td><td>{}</td><td>{}{by}</td><td>{state}</td>",
        escape(&when(&e.at)),
        escape(e.data.kind_label()),
        escape(&summary),
    )
}

trait KindLabel {
    fn kind_label(&self) -> &'static str;
}

impl KindLabel for EntryData {
    fn kind_label(&self) -> &'static str {
        match self {
            EntryData::Step { .. } => "step",
            EntryData::Review(_) => "review",
            EntryData::Action { .. } => "action",
            EntryData::Referral { .. } => "referral",
            EntryData::ParentContact { .. } => "parents informed",
            EntryData::Note { .. } => "note",
            EntryData::Path { .. } => "flowchart",
            EntryData::Close { .. } => "closed",
            EntryData::Reopen { .. } => "reopened",
        }
    }
}

async fn detail_page(
    state: &ConsoleState,
    viewer: &Viewer,
    id: i64,
    problem: Option<&str>,
) -> Result<Response, ConsoleError> {
    let case = open_case(state, viewer, id).await?;
    let i = &case.incident;
    let csrf = html::csrf_field(viewer.csrf_token());
    let closed = i.status == IncidentStatus::Closed;
    let reviewers: Vec<(i64, String, String)> = if i.path == FlowPath::Internal {
        state
            .store()
            .senior_reviewers(i.school_id)
            .await?
            .into_iter()
            .map(|(id, name, role)| (id, name, role.to_string()))
            .collect()
    } else {
        Vec::new()
    };
    let rows: String = case
        .entries
        .iter()
        .map(|e| {
            let done_button = if !closed
                && e.done_at.is_none()
                && matches!(e.data, EntryData::Action { .. } | EntryData::Referral { .. })
            {
                format!(
                    "<form method=\"post\" action=\"/incidents/{id}/entries/{e}/done\" class=\"inline\">{csrf}\
                     <button class=\"secondary\" style=\"margin:0\">Mark done</button></form>",
                    e = e.id
                )
            } else {
                String::new()
            };
            format!(
                "<tr{}>{}<td>{done_button}</td></tr>",
                if e.overdue { " class=\"overdue-row\"" } else { "" },
                entry_line(e, false)
            )
        })
        .collect();
    let agencies = options(&[
        ("police", "Police"),
        ("childrens_social_care", "Children's social care"),
        ("lado", "LADO"),
        ("iwf", "Internet Watch Foundation"),
        ("ceop", "CEOP"),
        ("prevent", "Prevent"),
    ]);
    let methods = options(&[
        ("in_person", "In person"),
        ("phone", "Phone"),
        ("email", "E-mail"),
        ("letter", "Letter"),
    ]);
    let entry_forms = if closed {
        String::new()
    } else {
        format!(
            "<details><summary>Add an action</summary><form method=\"post\" action=\"/incidents/{id}/entries\" class=\"add-action\">{csrf}\
             <input type=\"hidden\" name=\"type\" value=\"action\">{d}{o}{due}<div><button>Add the action</button></div></form></details>\
             <details><summary>Record a referral</summary><form method=\"post\" action=\"/incidents/{id}/entries\" class=\"add-referral\">{csrf}\
             <input type=\"hidden\" name=\"type\" value=\"referral\">{agency}{reference}{detail}{due}<div><button>Record the referral</button></div></form></details>\
             <details><summary>Record that parents or carers were informed</summary><form method=\"post\" action=\"/incidents/{id}/entries\" class=\"add-parent\">{csrf}\
             <input type=\"hidden\" name=\"type\" value=\"parent_contact\">{parent}{method}{pnote}<div><button>Record it</button></div></form></details>\
             <details><summary>Add a note</summary><form method=\"post\" action=\"/incidents/{id}/entries\" class=\"add-note\">{csrf}\
             <input type=\"hidden\" name=\"type\" value=\"note\">{note}<div><button>Add the note</button></div></form></details>",
            d = html::text_input("description", "What is to be done", None, "", None),
            o = html::text_input("owner", "Who does it", None, "", None),
            due = html::text_input("due", "Due", Some("YYYY-MM-DD or YYYY-MM-DD HH:MM (UTC)"), "", None),
            agency = html::select("agency", "To", &agencies, "childrens_social_care"),
            reference = html::text_input("reference", "Their reference", None, "", None),
            detail = textarea("detail", "What was referred, and the timescale given", None, ""),
            parent = html::text_input("who", "Who was informed", Some("For example: mother, by name"), "", None),
            method = html::select("method", "How", &methods, "phone"),
            pnote = textarea("note", "What was said", None, ""),
            note = textarea("text", "Note", None, ""),
        )
    };
    let key_missing = state.evidence_key().is_none();
    let evidence_rows: String = {
        let mut out = String::new();
        for ev in &case.evidence {
            let custody = state
                .store()
                .evidence_custody(&viewer.account, ev.id)
                .await?
                .iter()
                .map(|a| {
                    format!(
                        "{} by {} at {}",
                        escape(&a.action),
                        escape(who(&a.actor)),
                        escape(&when(&a.at))
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            out.push_str(&format!(
                "<tr><td><a href=\"/evidence/{e}\">{name}</a></td><td>{media}</td><td>{size}</td>\
                 <td><code class=\"sha256\">{sha}</code></td><td>{desc}</td><td>{custody}</td></tr>",
                e = ev.id,
                name = escape(&ev.file_name),
                media = escape(&ev.media_type),
                size = ev.size,
                sha = escape(&ev.sha256),
                desc = escape(ev.description.as_deref().unwrap_or("")),
            ));
        }
        out
    };
    let limits = EvidenceLimits::default();
    let csam = i.path.forbids_images();
    let upload = if closed {
        String::new()
    } else if key_missing {
        "<p class=\"warning\">Evidence cannot be attached: the console has no evidence key. \
         Ask your technician to check the data directory.</p>"
            .to_string()
    } else {
        format!(
            "{warning}<form method=\"post\" action=\"/incidents/{id}/evidence?csrf={token}\" \
             enctype=\"multipart/form-data\" class=\"evidence\">\
             <label for=\"file\">File<span class=\"hint\">Up to {mb} MB: {types}. Sealed at rest; its SHA-256 is recorded.</span></label>\
             <input id=\"file\" name=\"file\" type=\"file\" required>\
             <label for=\"evidence-description\">What it is</label><input type=\"text\" id=\"evidence-description\" name=\"description\">\
             <div><button>Attach</button></div></form>",
            warning = if csam {
                "<div class=\"warning\" id=\"no-images\"><p><strong>No images may be attached to this incident.</strong> \
                 It is marked as suspected child sexual abuse imagery: holding or copying such images is an offence. \
                 Record only references and written descriptions.</p></div>"
            } else {
                ""
            },
            token = query_value(viewer.csrf_token()),
            mb = limits.max_bytes / (1024 * 1024),
            types = escape(&limits.media_types.join(", ")),
        )
    };
    let closing = if closed {
        let review = i.closing_review.clone().unwrap_or_default();
        format!(
            "<section id=\"closing\"><h2>Closed</h2><dl><dt>Outcome</dt><dd>{}</dd><dt>Debrief</dt><dd>{}</dd>\
             <dt>Lessons</dt><dd>{}</dd><dt>Policy changes</dt><dd>{}</dd></dl>\
             <form method=\"post\" action=\"/incidents/{id}/reopen\" class=\"reopen\">{csrf}{reason}\
             <div><button class=\"secondary\">Reopen</button></div></form></section>",
            escape(i.outcome.as_deref().unwrap_or("")),
            escape(&review.debrief),
            escape(&review.lessons),
            escape(&review.policy_changes),
            reason = html::text_input("reason", "Why reopen", None, "", None),
        )
    } else {
        format!(
            "<section id=\"closing\"><h2>Close the incident</h2>\
             <form method=\"post\" action=\"/incidents/{id}/close\" class=\"close\">{csrf}\
             {outcome}{debrief}{lessons}{policy}<div><button>Close the incident</button></div></form></section>",
            outcome = html::text_input("outcome", "Outcome", None, "", None),
            debrief = textarea("debrief", "Debrief", Some("What happened, what was done"), ""),
            lessons = textarea("lessons", "Lessons learned", None, ""),
            policy = textarea("policy_changes", "Changes to policy or practice", None, ""),
        )
    };
    let staff = staff_ids(state, i).await?;
    let body = format!(
        "{hide}<h1>Incident {reference}</h1>{problem}<p><strong>{summary}</strong></p>\
         <p><a href=\"/incidents/{id}/print\">Print view</a> · <a href=\"/incidents/{id}/print?redacted=1\">\
         Print view without staff names</a></p>{facts}{flow}\
         <section id=\"entries\"><h2>Actions, referrals, parents informed and notes</h2>\
         <table><thead><tr><th scope=\"col\">When</th><th scope=\"col\">Kind</th><th scope=\"col\">What</th>\
         <th scope=\"col\">Due or done</th><th scope=\"col\"></th></tr></thead><tbody>{rows}</tbody></table>{entry_forms}</section>\
         <section id=\"evidence\"><h2>Evidence</h2><table><thead><tr><th scope=\"col\">File</th><th scope=\"col\">Type</th>\
         <th scope=\"col\">Bytes</th><th scope=\"col\">SHA-256</th><th scope=\"col\">Description</th>\
         <th scope=\"col\">Chain of custody</th></tr></thead><tbody>{evidence_rows}</tbody></table>{upload}</section>{closing}",
        hide = hide_screen(),
        reference = escape(&i.reference),
        problem = problem_box(problem),
        summary = escape(&i.summary),
        facts = facts_html(i, &staff, false),
        flow = flowchart(viewer, &case, &reviewers),
    );
    Ok(html::page(viewer, &format!("Incident {}", i.reference), &body).into_response())
}

/// The ids of the people on an incident who are staff (or governors): the
/// names a redacted print leaves out.
async fn staff_ids(state: &ConsoleState, i: &Incident) -> Result<Vec<i64>, ConsoleError> {
    let mut out = Vec::new();
    for p in &i.people {
        if let Some(pid) = p.person_id {
            if let Some(person) = state.store().person(pid).await? {
                if matches!(
                    person.details.kind,
                    PersonKind::Staff | PersonKind::Governor
                ) {
                    out.push(pid);
                }
            }
        }
    }
    Ok(out)
}

async fn detail(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
) -> Result<Response, ConsoleError> {
    detail_page(&state, &viewer, id, None).await
}

/// After a change from a form: back to the incident, or the incident with
/// the problem shown when the store refused the change.
async fn after<T>(
    state: &ConsoleState,
    viewer: &Viewer,
    id: i64,
    anchor: &str,
    result: Result<T, ConsoleError>,
) -> Result<Response, ConsoleError> {
    match result {
        Ok(_) => Ok(Redirect::to(&format!("/incidents/{id}#{anchor}")).into_response()),
        Err(error) => {
            let status = error.status();
            if !matches!(
                status,
                StatusCode::UNPROCESSABLE_ENTITY | StatusCode::FORBIDDEN | StatusCode::BAD_REQUEST
            ) {
                return Err(error);
            }
            let mut page = detail_page(state, viewer, id, Some(&error.public_message())).await?;
            *page.status_mut() = status;
            Ok(page)
        }
    }
}

fn illegal_answer(answer: &str) -> Result<Option<IllegalKind>, ConsoleError> {
    match answer.trim() {
        "no" | "internal" => Ok(None),
        "" => Err(ConsoleError::BadRequest(
            "answer the question: is illegal material or activity suspected?".to_string(),
        )),
        kind => kind
            .parse()
            .map(Some)
            .map_err(|e: StoreError| ConsoleError::BadRequest(e.to_string())),
    }
}

async fn decide_path(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let pairs = form_pairs(&body);
    let result = async {
        let answer = illegal_answer(field(&pairs, "answer"))?;
        let reason = Some(field(&pairs, "reason")).filter(|r| !r.trim().is_empty());
        Ok::<_, ConsoleError>(
            state
                .store()
                .decide_path(&viewer.account, id, answer, reason)
                .await?,
        )
    }
    .await;
    after(&state, &viewer, id, "flowchart", result).await
}

async fn complete_step(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let pairs = form_pairs(&body);
    let result = async {
        let step: IllegalStep = field(&pairs, "step")
            .parse()
            .map_err(|e: StoreError| ConsoleError::BadRequest(e.to_string()))?;
        Ok::<_, ConsoleError>(
            state
                .store()
                .complete_step(
                    &viewer.account,
                    id,
                    step,
                    Some(field(&pairs, "note")),
                    Some(field(&pairs, "reference")),
                )
                .await?,
        )
    }
    .await;
    after(&state, &viewer, id, "flowchart", result).await
}

/// The record of review from its form.
fn review_from_form(pairs: &[(String, String)]) -> Result<InternalReview, ConsoleError> {
    let mut reviewers = Vec::new();
    for name in ["reviewer_1", "reviewer_2"] {
        match field(pairs, name).trim() {
            "" => {}
            text => reviewers.push(Reviewer {
                account_id: text
                    .parse()
                    .map_err(|_| ConsoleError::BadRequest(format!("`{text}` is not an account")))?,
                name: String::new(),
                role: String::new(),
            }),
        }
    }
    let items = field(pairs, "items")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|line| {
            let (url, description) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            ReviewedItem {
                url: url.to_string(),
                description: description
                    .trim()
                    .trim_start_matches(['-', '–', ':'])
                    .trim()
                    .to_string(),
            }
        })
        .collect();
    let screenshots = pairs
        .iter()
        .filter(|(k, _)| k == "screenshot")
        .filter_map(|(_, v)| v.parse().ok())
        .collect();
    Ok(InternalReview {
        reviewers,
        computer: field(pairs, "computer").to_string(),
        items,
        screenshots,
        conclusion: field(pairs, "conclusion").to_string(),
        action: match field(pairs, "action") {
            "" => ReviewAction::InternalResponse,
            text => text
                .parse()
                .map_err(|e: StoreError| ConsoleError::BadRequest(e.to_string()))?,
        },
    })
}

async fn record_review(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let pairs = form_pairs(&body);
    let result = async {
        let review = review_from_form(&pairs)?;
        Ok::<_, ConsoleError>(
            state
                .store()
                .record_review(&viewer.account, id, &review)
                .await?,
        )
    }
    .await;
    after(&state, &viewer, id, "flowchart", result).await
}

/// An action, referral, parents-informed record or note from its form.
fn entry_from_form(pairs: &[(String, String)]) -> Result<EntryData, ConsoleError> {
    let text = |name: &str| field(pairs, name).to_string();
    let bad = |e: StoreError| ConsoleError::BadRequest(e.to_string());
    Ok(match field(pairs, "type") {
        "action" => EntryData::Action {
            description: text("description"),
            owner: text("owner"),
        },
        "referral" => EntryData::Referral {
            agency: field(pairs, "agency").parse::<Agency>().map_err(bad)?,
            reference: Some(text("reference")).filter(|r| !r.trim().is_empty()),
            detail: text("detail"),
        },
        "parent_contact" => EntryData::ParentContact {
            who: text("who"),
            person_id: field(pairs, "person").parse().ok(),
            method: field(pairs, "method")
                .parse::<ContactMethod>()
                .map_err(bad)?,
            note: text("note"),
        },
        "note" => EntryData::Note { text: text("text") },
        other => {
            return Err(ConsoleError::BadRequest(format!(
                "`{other}` is not something to add; use action, referral, parent_contact or note"
            )))
        }
    })
}

async fn add_entry(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let pairs = form_pairs(&body);
    let result = async {
        let data = entry_from_form(&pairs)?;
        let due = parse_due(field(&pairs, "due"))?;
        Ok::<_, ConsoleError>(
            state
                .store()
                .add_entry(&viewer.account, id, &data, due)
                .await?,
        )
    }
    .await;
    after(&state, &viewer, id, "entries", result).await
}

async fn complete_entry(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path((id, entry)): Path<(i64, i64)>,
) -> Result<Response, ConsoleError> {
    let result = state
        .store()
        .complete_entry(&viewer.account, id, entry)
        .await
        .map_err(ConsoleError::from);
    after(&state, &viewer, id, "entries", result).await
}

async fn close(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let pairs = form_pairs(&body);
    let review = ClosingReview {
        debrief: field(&pairs, "debrief").to_string(),
        lessons: field(&pairs, "lessons").to_string(),
        policy_changes: field(&pairs, "policy_changes").to_string(),
    };
    let result = state
        .store()
        .close_incident(&viewer.account, id, field(&pairs, "outcome"), &review)
        .await
        .map_err(ConsoleError::from);
    after(&state, &viewer, id, "closing", result).await
}

async fn reopen(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let pairs = form_pairs(&body);
    let result = state
        .store()
        .reopen_incident(&viewer.account, id, field(&pairs, "reason"))
        .await
        .map_err(ConsoleError::from);
    after(&state, &viewer, id, "closing", result).await
}

// ---------------------------------------------------------------------
// Evidence.

/// The media type of an upload: as the browser declared it, or from the
/// file's extension when it declared none.
fn media_type(declared: Option<&str>, file_name: &str) -> String {
    match declared.map(str::trim).filter(|d| !d.is_empty()) {
        Some(d) if d != "application/octet-stream" => d.to_string(),
        _ => {
            let ext = file_name.rsplit('.').next().unwrap_or("").to_lowercase();
            match ext.as_str() {
                "pdf" => "application/pdf",
                "png" => "image/png",
                "jpg" | "jpeg" => "image/jpeg",
                "gif" => "image/gif",
                "webp" => "image/webp",
                "txt" => "text/plain",
                "eml" => "message/rfc822",
                _ => "application/octet-stream",
            }
            .to_string()
        }
    }
}

pub async fn attach(
    state: &ConsoleState,
    viewer: &Viewer,
    id: i64,
    upload: &EvidenceUpload,
) -> Result<sheepdog_store::incidents::EvidenceInfo, ConsoleError> {
    let key = state.evidence_key().ok_or_else(|| {
        ConsoleError::Settings("the console has no evidence key to seal evidence with".to_string())
    })?;
    Ok(state
        .store()
        .add_evidence(&viewer.account, id, upload, key, &EvidenceLimits::default())
        .await?)
}

async fn upload(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
    mut multipart: Multipart,
) -> Result<Response, ConsoleError> {
    let bad = |e: axum::extract::multipart::MultipartError| ConsoleError::BadRequest(e.to_string());
    let mut file = None;
    let mut description = String::new();
    while let Some(part) = multipart.next_field().await.map_err(bad)? {
        match part.name().unwrap_or_default() {
            "file" => {
                let name = part.file_name().unwrap_or("evidence").to_string();
                let declared = part.content_type().map(str::to_string);
                let bytes = part.bytes().await.map_err(bad)?.to_vec();
                file = Some((name, declared, bytes));
            }
            "description" => description = part.text().await.map_err(bad)?,
            _ => {}
        }
    }
    let result = async {
        let (file_name, declared, bytes) =
            file.ok_or_else(|| ConsoleError::BadRequest("choose a file to attach".to_string()))?;
        let upload = EvidenceUpload {
            media_type: media_type(declared.as_deref(), &file_name),
            file_name,
            bytes,
            description: Some(description),
        };
        attach(&state, &viewer, id, &upload).await
    }
    .await;
    after(&state, &viewer, id, "evidence", result).await
}

async fn fetch_evidence(
    state: &ConsoleState,
    viewer: &Viewer,
    id: i64,
) -> Result<Response, ConsoleError> {
    let key = state.evidence_key().ok_or_else(|| {
        ConsoleError::Settings("the console has no evidence key to open evidence with".to_string())
    })?;
    let (info, bytes) = state
        .store()
        .open_evidence(&viewer.account, id, key, EvidencePurpose::Download)
        .await?;
    let disposition = format!(
        "attachment; filename=\"{}\"",
        info.file_name
            .chars()
            .filter(|c| (c.is_ascii_graphic() && *c != '"' && *c != '\\') || *c == ' ')
            .collect::<String>()
    );
    Ok((
        [
            (header::CONTENT_TYPE, info.media_type.clone()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, "no-store".to_string()),
            (
                header::HeaderName::from_static("x-content-type-options"),
                "nosniff".to_string(),
            ),
            (
                header::HeaderName::from_static("x-evidence-sha256"),
                info.sha256.clone(),
            ),
        ],
        bytes,
    )
        .into_response())
}

async fn download(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
) -> Result<Response, ConsoleError> {
    fetch_evidence(&state, &viewer, id).await
}

// ---------------------------------------------------------------------
// Print views and the chronology.

const PRINT_STYLE: &str = "<style>@media print{header,.no-print,a.hide-screen{display:none}\
    main{max-width:none}a{color:#000;text-decoration:none}}</style>";

#[derive(Debug, Default, Deserialize)]
struct PrintQuery {
    #[serde(default)]
    redacted: String,
}

async fn print(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Query(query): Query<PrintQuery>,
) -> Result<Response, ConsoleError> {
    let redacted = matches!(query.redacted.as_str(), "1" | "yes" | "true");
    let case = open_case(&state, &viewer, id).await?;
    state
        .store()
        .audit_view(
            &viewer.actor(),
            if redacted {
                "incident_export_redacted"
            } else {
                "incident_export"
            },
            &id.to_string(),
        )
        .await?;
    let i = &case.incident;
    let staff = staff_ids(&state, i).await?;
    let rows: String = case
        .entries
        .iter()
        .map(|e| format!("<tr>{}</tr>", entry_line(e, redacted)))
        .collect();
    let reviews: String = case
        .entries
        .iter()
        .filter_map(|e| match &e.data {
            EntryData::Review(r) => Some(review_html(r, redacted)),
            _ => None,
        })
        .collect();
    let evidence: String = case
        .evidence
        .iter()
        .map(|ev| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                escape(&ev.file_name),
                escape(&ev.media_type),
                ev.size,
                escape(&ev.sha256),
                escape(&when(&ev.uploaded_at)),
            )
        })
        .collect();
    let body = format!(
        "{PRINT_STYLE}<h1>Incident {reference}{variant}</h1>\
         <p class=\"no-print\"><button onclick=\"window.print()\">Print</button> \
         <a href=\"/incidents/{id}\">Back to the incident</a></p>\
         <p>Printed {now} UTC from sheepdog. {note}</p><p><strong>{summary}</strong></p>{facts}{reviews}\
         <h2>Chronology of the case</h2><table><thead><tr><th scope=\"col\">When</th><th scope=\"col\">Kind</th>\
         <th scope=\"col\">What</th><th scope=\"col\">Due or done</th></tr></thead><tbody>{rows}</tbody></table>\
         <h2>Evidence</h2><p>Each file's SHA-256 as recorded when it was attached.</p>\
         <table><thead><tr><th scope=\"col\">File</th><th scope=\"col\">Type</th><th scope=\"col\">Bytes</th>\
         <th scope=\"col\">SHA-256</th><th scope=\"col\">Attached (UTC)</th></tr></thead><tbody>{evidence}</tbody></table>",
        reference = escape(&i.reference),
        variant = if redacted { " (staff names removed)" } else { "" },
        now = Utc::now().format("%Y-%m-%d %H:%M"),
        note = if redacted {
            "Staff names are removed from the fields sheepdog knows hold them; read the free text \
             (what happened, notes) before sending, as it is printed as written."
        } else {
            "Confidential: for the agencies the case is referred to."
        },
        summary = escape(&i.summary),
        facts = facts_html(i, &staff, redacted),
    );
    // Without the navigation: it names the person signed in.
    Ok(html::bare_page(&format!("Incident {}", i.reference), &body).into_response())
}

/// A pupil's chronology for someone who reads incidents in their school.
pub async fn pupil_chronology(
    state: &ConsoleState,
    viewer: &Viewer,
    person_id: i64,
) -> Result<
    (
        sheepdog_store::Person,
        Vec<sheepdog_store::incidents::ChronologyItem>,
    ),
    ConsoleError,
> {
    let person = state
        .store()
        .person(person_id)
        .await?
        .ok_or(ConsoleError::NotFound("that person"))?;
    viewer.require(Permission::SeeIncidents, person.school_id)?;
    let items = state
        .store()
        .chronology(&viewer.account, person.school_id, person_id)
        .await?;
    Ok((person, items))
}

async fn chronology(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
) -> Result<Response, ConsoleError> {
    let (person, items) = pupil_chronology(&state, &viewer, id).await?;
    let rows: String = items
        .iter()
        .map(|c| {
            let link = match (&c.incident_reference, c.alert_id) {
                (Some(r), _) => escape(r),
                (None, Some(a)) => format!("<a href=\"/alerts/{a}\">alert {a}</a>"),
                _ => String::new(),
            };
            format!(
                "<tr><td>{}</td><td>{}</td><td>{link}</td><td>{}</td></tr>",
                escape(&when(&c.at)),
                escape(&c.kind),
                escape(&c.summary)
            )
        })
        .collect();
    let body = format!(
        "{PRINT_STYLE}<h1>Chronology: {name}</h1><p class=\"no-print\"><button onclick=\"window.print()\">Print</button></p>\
         <p>Every incident, alert and action about this pupil that you may read, oldest first. \
         Printed {now} UTC.</p>\
         <table><caption>{n} entries</caption><thead><tr><th scope=\"col\">When (UTC)</th><th scope=\"col\">Kind</th>\
         <th scope=\"col\">Record</th><th scope=\"col\">What</th></tr></thead><tbody>{rows}</tbody></table>",
        name = escape(&person.details.full_name()),
        now = Utc::now().format("%Y-%m-%d %H:%M"),
        n = items.len(),
    );
    Ok(html::page(&viewer, "Chronology", &body).into_response())
}

// ---------------------------------------------------------------------
// The JSON API.

#[derive(Debug, Default, Deserialize)]
struct ApiSchool {
    school: Option<i64>,
    #[serde(default)]
    status: String,
}

async fn api_list(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<ApiSchool>,
) -> ApiResult {
    let school = school_for(&state, &viewer, query.school, Permission::SeeIncidents).await?;
    let incidents = state
        .store()
        .incidents(&viewer.account, school.id, status_filter(&query.status)?)
        .await?;
    Ok(Json(json!({ "incidents": incidents })).into_response())
}

async fn api_due(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<ApiSchool>,
) -> ApiResult {
    let school = school_for(&state, &viewer, query.school, Permission::SeeIncidents).await?;
    let due = state
        .store()
        .incidents_due_for_review(&viewer.account, school.id, Utc::now().date_naive())
        .await?;
    Ok(Json(json!({ "incidents": due })).into_response())
}

async fn api_create(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<ApiSchool>,
    Json(mut new): Json<NewIncident>,
) -> ApiResult {
    let school = school_for(&state, &viewer, query.school, Permission::LogConcern).await?;
    if new.alert_id.is_some() {
        return Err(ConsoleError::BadRequest(
            "escalate an alert with POST /api/v1/alerts/{id}/escalate".to_string(),
        )
        .into());
    }
    if !viewer.can(Permission::SearchLogs, school.id) {
        new.event_id = None;
    }
    let receipt = state
        .store()
        .log_concern(&viewer.account, school.id, &new, &retention())
        .await?;
    Ok((StatusCode::CREATED, Json(receipt)).into_response())
}

async fn api_detail(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
) -> ApiResult {
    Ok(Json(open_case(&state, &viewer, id).await?).into_response())
}

#[derive(Debug, Deserialize)]
struct PathBody {
    /// An illegal kind, or null for the internal procedure.
    illegal: Option<IllegalKind>,
    reason: Option<String>,
}

async fn api_path(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Json(body): Json<PathBody>,
) -> ApiResult {
    let incident = state
        .store()
        .decide_path(&viewer.account, id, body.illegal, body.reason.as_deref())
        .await?;
    Ok(Json(incident).into_response())
}

#[derive(Debug, Deserialize)]
struct StepBody {
    step: IllegalStep,
    note: Option<String>,
    reference: Option<String>,
}

async fn api_step(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Json(body): Json<StepBody>,
) -> ApiResult {
    let entry = state
        .store()
        .complete_step(
            &viewer.account,
            id,
            body.step,
            body.note.as_deref(),
            body.reference.as_deref(),
        )
        .await?;
    Ok(Json(entry).into_response())
}

async fn api_review(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Json(review): Json<InternalReview>,
) -> ApiResult {
    let entry = state
        .store()
        .record_review(&viewer.account, id, &review)
        .await?;
    Ok((StatusCode::CREATED, Json(entry)).into_response())
}

#[derive(Debug, Deserialize)]
struct EntryBody {
    data: EntryData,
    /// RFC 3339.
    due: Option<DateTime<Utc>>,
}

async fn api_entry(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Json(body): Json<EntryBody>,
) -> ApiResult {
    let entry = state
        .store()
        .add_entry(&viewer.account, id, &body.data, body.due)
        .await?;
    Ok((StatusCode::CREATED, Json(entry)).into_response())
}

async fn api_entry_done(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path((id, entry)): Path<(i64, i64)>,
) -> ApiResult {
    let entry = state
        .store()
        .complete_entry(&viewer.account, id, entry)
        .await?;
    Ok(Json(entry).into_response())
}

#[derive(Debug, Deserialize)]
struct CloseBody {
    outcome: String,
    review: ClosingReview,
}

async fn api_close(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Json(body): Json<CloseBody>,
) -> ApiResult {
    let incident = state
        .store()
        .close_incident(&viewer.account, id, &body.outcome, &body.review)
        .await?;
    Ok(Json(incident).into_response())
}

#[derive(Debug, Deserialize)]
struct ReopenBody {
    reason: String,
}

async fn api_reopen(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Json(body): Json<ReopenBody>,
) -> ApiResult {
    let incident = state
        .store()
        .reopen_incident(&viewer.account, id, &body.reason)
        .await?;
    Ok(Json(incident).into_response())
}

#[derive(Debug, Default, Deserialize)]
struct UploadQuery {
    #[serde(default)]
    file_name: String,
    description: Option<String>,
}

/// The file is the request body, its type the `Content-Type` header.
async fn api_upload(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Query(query): Query<UploadQuery>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> ApiResult {
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let upload = EvidenceUpload {
        media_type: media_type(declared, &query.file_name),
        file_name: query.file_name,
        bytes: body.to_vec(),
        description: query.description,
    };
    let info = attach(&state, &viewer, id, &upload).await?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

async fn api_download(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
) -> ApiResult {
    Ok(fetch_evidence(&state, &viewer, id).await?)
}

async fn api_chronology(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
) -> ApiResult {
    let (person, items) = pupil_chronology(&state, &viewer, id).await?;
    Ok(Json(json!({ "person_id": person.id, "items": items })).into_response())
}
