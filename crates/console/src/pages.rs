//! The console's pages. Each handler checks the viewer's permission for the
//! school it shows before it reads anything, and records every view of a
//! person's record in the audit log before showing it.

use std::path::Path as FilePath;

use axum::extract::{Multipart, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use serde::Deserialize;
use sheepdog_store::{
    AuditEntry, AuditFilter, Device, DeviceDetails, Ownership, Person, PersonKind, School,
    StoreError,
};

use crate::auth::{self, Viewer};
use crate::html::{self, escape, query_value};
use crate::roles::Permission;
use crate::{ConsoleError, ConsoleState};

pub fn routes() -> Router<ConsoleState> {
    Router::new()
        .route("/", get(start))
        .route("/healthz", get(healthz))
        .route("/people", get(people))
        .route("/people/{id}", get(person))
        .route("/people/import", get(import_form).post(import))
        .route("/groups", get(groups))
        .route("/groups/{id}", get(group_members).post(change_group_member))
        .route("/devices", get(devices).post(save_device))
        .route("/devices/new", get(new_device))
        .route("/devices/{id}/edit", get(edit_device))
        .route("/audit", get(audit))
        .route("/audit.csv", get(audit_csv))
        .route("/logs", get(crate::logs::page))
        .route("/logs.csv", get(crate::logs::csv_export))
        .route("/dashboard", get(crate::dashboard::page))
        .merge(auth::routes())
}

/// "Name" for one school, "N schools" for a trust.
pub async fn school_label(state: &ConsoleState) -> String {
    match state.store().schools().await {
        Ok(schools) => match schools.as_slice() {
            [] => "No school is set up yet: run `sheepdog init`.".to_string(),
            [one] => one.name.clone(),
            many => format!("{} schools", many.len()),
        },
        Err(error) => {
            tracing::error!(%error, "cannot read the schools");
            String::new()
        }
    }
}

/// The school a page shows: the one asked for, if the viewer may do
/// `permission` there, or else the first where they may.
pub async fn school_for(
    state: &ConsoleState,
    viewer: &Viewer,
    requested: Option<i64>,
    permission: Permission,
) -> Result<School, ConsoleError> {
    let schools = state.store().schools().await?;
    let chosen = match requested {
        Some(id) => schools.into_iter().find(|s| s.id == id),
        None => schools
            .into_iter()
            .find(|school| viewer.can(permission, school.id)),
    };
    match chosen {
        Some(school) => {
            viewer.require(permission, school.id)?;
            Ok(school)
        }
        None if requested.is_some() => Err(ConsoleError::NotFound("that school")),
        None => {
            viewer.require(permission, -1)?;
            Err(ConsoleError::NotFound("a school"))
        }
    }
}

async fn healthz(State(state): State<ConsoleState>) -> Response {
    match state.store().census().await {
        Ok(_) => (StatusCode::OK, "ok\n").into_response(),
        Err(error) => {
            tracing::error!(%error, "health check: database unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response()
        }
    }
}

async fn start(State(state): State<ConsoleState>, parts: axum::http::request::Parts) -> Response {
    let Some(viewer) = parts.extensions.get::<Viewer>() else {
        match parts
            .extensions
            .get::<auth::CurrentSession>()
            .map(|c| c.session.stage)
        {
            Some(sheepdog_store::SessionStage::SecondFactor) => {
                return Redirect::to("/two-factor").into_response()
            }
            Some(sheepdog_store::SessionStage::Enrolment) => {
                return Redirect::to("/two-factor/enrol").into_response()
            }
            _ => {}
        }
        return auth::sign_in_page(&state, &parts.headers, "", None, StatusCode::OK).await;
    };
    // Signed in on the way to somewhere else: go there, once.
    if let Some(next) = auth::cookie(&parts.headers, auth::NEXT_COOKIE) {
        if let Some(next) = auth::safe_next(&next) {
            let clear = axum::http::HeaderValue::from_static("sheepdog_next=; Path=/; Max-Age=0");
            return ([(header::SET_COOKIE, clear)], Redirect::to(next)).into_response();
        }
    }
    let label = school_label(&state).await;
    let mut items = String::new();
    for permission in Permission::ALL {
        if viewer.can_somewhere(*permission) {
            items.push_str(&format!("<li>{}</li>", escape(permission.describe())));
        }
    }
    if items.is_empty() {
        items.push_str("<li>Nothing yet: your roles give no pages in this build.</li>");
    }
    let body = format!(
        "<h1>{}</h1><p>Your roles let you:</p><ul>{items}</ul>",
        escape(&label)
    );
    html::page(viewer, "Start", &body).into_response()
}

#[derive(Debug, Default, Deserialize)]
struct PeopleQuery {
    school: Option<i64>,
    kind: Option<String>,
    year: Option<String>,
    class: Option<String>,
}

/// The people a list shows, filtered by kind, year group and class.
pub async fn list_people(
    state: &ConsoleState,
    school_id: i64,
    kind: Option<&str>,
    year: Option<&str>,
    class: Option<&str>,
) -> Result<Vec<Person>, ConsoleError> {
    let kind = match kind.filter(|k| !k.is_empty()) {
        Some(kind) => Some(
            kind.parse::<PersonKind>()
                .map_err(|e| ConsoleError::BadRequest(e.to_string()))?,
        ),
        None => None,
    };
    let people = state.store().people(school_id, kind).await?;
    let year = year.filter(|y| !y.is_empty());
    let class = class.filter(|c| !c.is_empty());
    Ok(people
        .into_iter()
        .filter(|p| year.is_none_or(|y| p.details.year_group.as_deref() == Some(y)))
        .filter(|p| class.is_none_or(|c| p.details.class_name.as_deref() == Some(c)))
        .collect())
}

async fn people(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<PeopleQuery>,
) -> Result<Response, ConsoleError> {
    let school = school_for(&state, &viewer, query.school, Permission::SeePeople).await?;
    let kind = query.kind.clone().unwrap_or_else(|| "pupil".to_string());
    let everyone = state.store().people(school.id, None).await?;
    let mut years: Vec<String> = everyone
        .iter()
        .filter_map(|p| p.details.year_group.clone())
        .collect();
    years.sort();
    years.dedup();
    let mut classes: Vec<String> = everyone
        .iter()
        .filter_map(|p| p.details.class_name.clone())
        .collect();
    classes.sort();
    classes.dedup();
    let shown = list_people(
        &state,
        school.id,
        Some(&kind),
        query.year.as_deref(),
        query.class.as_deref(),
    )
    .await?;
    let with_records = viewer.can(Permission::SeePersonRecord, school.id);
    let rows: String = shown
        .iter()
        .map(|p| {
            let name = escape(&p.details.full_name());
            let name = if with_records {
                format!("<a href=\"/people/{}\">{name}</a>", p.id)
            } else {
                name
            };
            format!(
                "<tr><td>{name}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(p.details.kind.as_str()),
                escape(p.details.year_group.as_deref().unwrap_or("")),
                escape(p.details.class_name.as_deref().unwrap_or("")),
            )
        })
        .collect();
    let option = |value: &str, text: &str| (value.to_string(), text.to_string());
    let kinds = vec![
        option("pupil", "Pupils"),
        option("staff", "Staff"),
        option("parent", "Parents and carers"),
        option("governor", "Governors"),
        option("visitor", "Visitors"),
    ];
    let mut year_options = vec![option("", "All years")];
    year_options.extend(years.iter().map(|y| option(y, y)));
    let mut class_options = vec![option("", "All classes")];
    class_options.extend(classes.iter().map(|c| option(c, c)));
    let body = format!(
        "<h1>People</h1><p>{school}</p>\
         <form method=\"get\" action=\"/people\"><input type=\"hidden\" name=\"school\" value=\"{id}\">\
         {kind}{year}{class}<div><button>Show</button></div></form>\
         <table><caption>{count} people</caption><thead><tr><th scope=\"col\">Name</th><th scope=\"col\">Kind</th>\
         <th scope=\"col\">Year</th><th scope=\"col\">Class</th></tr></thead><tbody>{rows}</tbody></table>",
        school = escape(&school.name),
        id = school.id,
        kind = html::select("kind", "Who", &kinds, &kind),
        year = html::select("year", "Year group", &year_options, query.year.as_deref().unwrap_or("")),
        class = html::select("class", "Class", &class_options, query.class.as_deref().unwrap_or("")),
        count = shown.len(),
    );
    Ok(html::page(&viewer, "People", &body).into_response())
}

/// One person's record, after the view is audited.
pub async fn person_record(
    state: &ConsoleState,
    viewer: &Viewer,
    id: i64,
) -> Result<Person, ConsoleError> {
    let Some(person) = state.store().person(id).await? else {
        // The same answer whether the person is missing or elsewhere, so the
        // response tells nothing about other schools.
        return Err(ConsoleError::NotFound("that person"));
    };
    if !viewer.can(Permission::SeePersonRecord, person.school_id) {
        if viewer.can_somewhere(Permission::SeePersonRecord) {
            return Err(ConsoleError::NotFound("that person"));
        }
        return Err(ConsoleError::Forbidden);
    }
    state
        .store()
        .audit_view(&viewer.actor(), "person", &id.to_string())
        .await?;
    Ok(person)
}

async fn person(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
) -> Result<Response, ConsoleError> {
    let person = person_record(&state, &viewer, id).await?;
    let d = &person.details;
    let mut rows = vec![
        ("Kind", d.kind.as_str().to_string()),
        ("Year group", d.year_group.clone().unwrap_or_default()),
        ("Class", d.class_name.clone().unwrap_or_default()),
        ("Date of birth", d.date_of_birth.clone().unwrap_or_default()),
        ("UPN", d.upn.clone().unwrap_or_default()),
        ("MIS ID", d.external_id.clone().unwrap_or_default()),
        ("Email", d.email.clone().unwrap_or_default()),
        ("Active", if d.active { "yes" } else { "no" }.to_string()),
    ];
    if !d.roles.is_empty() {
        let roles: Vec<&str> = d.roles.iter().map(|r| r.as_str()).collect();
        rows.push(("Roles", roles.join(", ")));
    }
    let table: String = rows
        .iter()
        .map(|(k, v)| format!("<tr><th scope=\"row\">{k}</th><td>{}</td></tr>", escape(v)))
        .collect();
    let mut guardians = String::new();
    if d.kind == PersonKind::Pupil {
        let links = state.store().guardianships(person.id).await?;
        let mut items = String::new();
        for link in &links {
            let name = match state.store().person(link.parent_id).await? {
                Some(parent) => parent.details.full_name(),
                None => format!("person {}", link.parent_id),
            };
            items.push_str(&format!(
                "<li>{} ({}{})</li>",
                escape(&name),
                escape(&link.relationship),
                if link.parental_responsibility {
                    ", parental responsibility"
                } else {
                    ""
                }
            ));
        }
        guardians = format!(
            "<h2>Parents and carers</h2><ul>{}</ul>",
            if items.is_empty() {
                "<li>None recorded</li>".to_string()
            } else {
                items
            }
        );
    }
    let body = format!(
        "<h1>{}</h1><p class=\"notice\">Your view of this record is in the audit log.</p>\
         <table>{table}</table>{guardians}",
        escape(&d.full_name())
    );
    Ok(html::page(&viewer, &d.full_name(), &body).into_response())
}

/// A group's members, and (for the filtering manager) forms to add and
/// remove them. Names of members are people data: the page needs both
/// `see_groups` and `see_people`.
async fn group_members(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Query(query): Query<SchoolQuery>,
) -> Result<Response, ConsoleError> {
    let school = school_for(&state, &viewer, query.school, Permission::SeeGroups).await?;
    if !viewer.can(Permission::SeePeople, school.id) {
        return Err(ConsoleError::Forbidden);
    }
    Ok(
        group_page(&state, &viewer, &school, id, &MemberProblem::default())
            .await?
            .into_response(),
    )
}

/// What was wrong with a membership change, to show beside its form.
#[derive(Debug, Default)]
struct MemberProblem<'a> {
    /// The person to add was not chosen, or is not of this school.
    person: Option<&'a str>,
    /// No reason was given: for adding (`None`) or for removing a person.
    reason: Option<(Option<i64>, &'a str)>,
}

impl MemberProblem<'_> {
    fn any(&self) -> bool {
        self.person.is_some() || self.reason.is_some()
    }
}

/// The reason field of a membership form; each row's has its own id.
fn reason_field(id: &str, label: &str, error: Option<&str>) -> String {
    let error_html = error.map_or(String::new(), |e| {
        format!(
            "<span class=\"error\" id=\"{id}-error\">Error: {}</span>",
            escape(e)
        )
    });
    let aria = if error.is_some() {
        format!(" aria-describedby=\"{id}-error\" aria-invalid=\"true\"")
    } else {
        String::new()
    };
    format!(
        "<div class=\"{}\"><label for=\"{id}\">{label}</label>{error_html}\
         <input type=\"text\" id=\"{id}\" name=\"reason\" required{aria}></div>",
        if error.is_some() {
            "field-error"
        } else {
            "field"
        },
    )
}

async fn group_page(
    state: &ConsoleState,
    viewer: &Viewer,
    school: &School,
    id: i64,
    problem: &MemberProblem<'_>,
) -> Result<(StatusCode, axum::response::Html<String>), ConsoleError> {
    let group = state
        .store()
        .groups(school.id)
        .await?
        .into_iter()
        .find(|g| g.id == id)
        .ok_or(ConsoleError::NotFound("that group"))?;
    let members = state.store().group_members(group.id).await?;
    let people = state.store().people(school.id, None).await?;
    let manage = viewer.can(Permission::ManageGroups, school.id);
    let csrf = html::csrf_field(viewer.csrf_token());
    let mut rows = String::new();
    for person in people.iter().filter(|p| members.contains(&p.id)) {
        let remove = if manage {
            let error = match problem.reason {
                Some((Some(p), e)) if p == person.id => Some(e),
                _ => None,
            };
            format!(
                "<td><form method=\"post\" action=\"/groups/{}\" novalidate>{csrf}\
                 <input type=\"hidden\" name=\"school\" value=\"{}\">\
                 <input type=\"hidden\" name=\"person\" value=\"{}\">\
                 <input type=\"hidden\" name=\"change\" value=\"remove\">{}\
                 <button>Remove<span class=\"skip\"> {}</span></button></form></td>",
                group.id,
                school.id,
                person.id,
                reason_field(
                    &format!("reason-{}", person.id),
                    &format!(
                        "Reason<span class=\"skip\"> for removing {}</span>",
                        escape(&person.details.full_name())
                    ),
                    error
                ),
                escape(&person.details.full_name())
            )
        } else {
            String::new()
        };
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td>{remove}</tr>",
            escape(&person.details.full_name()),
            escape(person.details.kind.as_str()),
            escape(person.details.class_name.as_deref().unwrap_or("")),
        ));
    }
    let add =
        if manage {
            let options: Vec<(String, String)> =
                std::iter::once((String::new(), "Choose a person".to_owned()))
                    .chain(people.iter().filter(|p| !members.contains(&p.id)).map(|p| {
                        (
                            p.id.to_string(),
                            format!("{} ({})", p.details.full_name(), p.details.kind.as_str()),
                        )
                    }))
                    .collect();
            let error_text = problem.person.map_or(String::new(), |e| {
                format!(
                    "<span class=\"error\" id=\"person-error\">Error: {}</span>",
                    escape(e)
                )
            });
            let reason_error = match problem.reason {
                Some((None, e)) => Some(e),
                _ => None,
            };
            format!(
            "<h2>Add a member</h2><form method=\"post\" action=\"/groups/{}\" novalidate>{csrf}\
             <input type=\"hidden\" name=\"school\" value=\"{}\">\
             <input type=\"hidden\" name=\"change\" value=\"add\">\
             <div class=\"{}\">{}{error_text}</div>{}<div><button>Add</button></div></form>",
            group.id,
            school.id,
            if problem.person.is_some() { "field-error" } else { "field" },
            html::select("person", "Person", &options, ""),
            reason_field("reason", "Reason (for the change log)", reason_error),
        )
        } else {
            String::new()
        };
    let summary = {
        let mut errors = FieldErrors::default();
        if let Some(e) = problem.person {
            errors.0.push(("person", e.to_owned()));
        }
        if let Some((_, e)) = problem.reason {
            errors.0.push(("reason", e.to_owned()));
        }
        html::error_summary(&errors)
    };
    let body = format!(
        "{summary}<h1>{}</h1><p>{} group; filtering profile: {}. Membership decides which filtering \
         profile applies to a person's devices and sign-ins, so each change needs a reason, \
         kept on the change log.</p>\
         <table><thead><tr><th scope=\"col\">Member</th><th scope=\"col\">Kind</th>\
         <th scope=\"col\">Class</th>{}</tr></thead><tbody>{rows}</tbody></table>{add}",
        escape(&group.name),
        escape(group.kind.as_str()),
        escape(group.filtering_profile.as_deref().unwrap_or("none")),
        if manage {
            "<th scope=\"col\">Change</th>"
        } else {
            ""
        },
    );
    let status = if problem.any() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok((status, html::page(viewer, &group.name, &body)))
}

#[derive(Debug, Default, Deserialize)]
struct MemberForm {
    #[serde(default)]
    school: String,
    #[serde(default)]
    person: String,
    #[serde(default)]
    change: String,
    #[serde(default)]
    reason: String,
}

/// Adds a person to a group or takes them out (the filtering manager),
/// with a reason for the change log.
async fn change_group_member(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Form(form): Form<MemberForm>,
) -> Result<Response, ConsoleError> {
    let requested = form.school.trim().parse::<i64>().ok();
    // Membership decides filtering: a refused attempt is on the change log.
    let school = match school_for(&state, &viewer, requested, Permission::ManageGroups).await {
        Err(ConsoleError::Forbidden) => {
            state
                .store()
                .audit_refused_change(
                    &viewer.actor(),
                    &format!("group:{id}"),
                    "refused: the account's roles do not allow changing filtering",
                )
                .await?;
            return Err(ConsoleError::Forbidden);
        }
        other => other?,
    };
    if !state
        .store()
        .groups(school.id)
        .await?
        .iter()
        .any(|g| g.id == id)
    {
        return Err(ConsoleError::NotFound("that group"));
    }
    let person = form.person.trim().parse::<i64>().ok().filter(|p| *p > 0);
    let in_school = match person {
        Some(p) => state
            .store()
            .person(p)
            .await?
            .filter(|found| found.school_id == school.id),
        None => None,
    };
    let removing = match form.change.as_str() {
        "add" => false,
        "remove" => true,
        _ => {
            return Err(ConsoleError::BadRequest(
                "change must be add or remove".to_owned(),
            ))
        }
    };
    let no_reason = form.reason.trim().is_empty();
    let chosen = in_school.is_some();
    let Some(person) = in_school.filter(|_| !no_reason) else {
        let problem = MemberProblem {
            person: (!chosen).then_some("choose a person of this school from the list"),
            reason: no_reason.then_some((
                if removing { person } else { None },
                "give a reason for the change, such as \"joined the lunch club\"; it goes on the change log",
            )),
        };
        let page = group_page(&state, &viewer, &school, id, &problem).await?;
        return Ok(page.into_response());
    };
    if removing {
        state
            .store()
            .remove_group_member(&viewer.actor(), id, person.id, &form.reason)
            .await?
    } else {
        state
            .store()
            .add_group_member(&viewer.actor(), id, person.id, &form.reason)
            .await?
    }
    Ok(Redirect::to(&format!("/groups/{id}?school={}", school.id)).into_response())
}

#[derive(Debug, Default, Deserialize)]
struct SchoolQuery {
    school: Option<i64>,
}

async fn groups(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<SchoolQuery>,
) -> Result<Response, ConsoleError> {
    let school = school_for(&state, &viewer, query.school, Permission::SeeGroups).await?;
    let mut rows = String::new();
    for group in state.store().groups(school.id).await? {
        let members = state.store().group_members(group.id).await?.len();
        let name = if viewer.can(Permission::SeePeople, school.id) {
            format!(
                "<a href=\"/groups/{}?school={}\">{}</a>",
                group.id,
                school.id,
                escape(&group.name)
            )
        } else {
            escape(&group.name)
        };
        rows.push_str(&format!(
            "<tr><td>{name}</td><td>{}</td><td>{}</td><td>{members}</td></tr>",
            escape(group.kind.as_str()),
            escape(group.filtering_profile.as_deref().unwrap_or("")),
        ));
    }
    let body = format!(
        "<h1>Groups</h1><p>{}</p><p>A person's groups decide which filtering profile applies to them.</p>\
         <table><thead><tr><th scope=\"col\">Group</th><th scope=\"col\">Kind</th>\
         <th scope=\"col\">Filtering profile</th><th scope=\"col\">Members</th></tr></thead><tbody>{rows}</tbody></table>",
        escape(&school.name)
    );
    Ok(html::page(&viewer, "Groups", &body).into_response())
}

async fn devices(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<SchoolQuery>,
) -> Result<Response, ConsoleError> {
    let school = school_for(&state, &viewer, query.school, Permission::SeeDevices).await?;
    let can_edit = viewer.can(Permission::ManageDevices, school.id);
    let registered = state.store().devices(school.id).await?;
    let now = network_now(&state, &viewer, school.id, &registered).await?;
    let rows: String = registered
        .iter()
        .map(|d| {
            let edit = if can_edit {
                format!(
                    "<td><a href=\"/devices/{}/edit?school={}\">Edit<span class=\"skip\"> {}</span></a></td>",
                    d.id,
                    school.id,
                    escape(&d.details.name)
                )
            } else {
                String::new()
            };
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>{edit}</tr>",
                escape(&d.details.name),
                escape(d.details.mac.as_deref().unwrap_or("")),
                escape(d.details.address.as_deref().unwrap_or("")),
                d.details.owner_id.map_or(String::new(), |id| id.to_string()),
                d.details.group_id.map_or(String::new(), |id| id.to_string()),
                escape(d.details.ownership.as_str()),
            )
        })
        .collect();
    let add = if can_edit {
        format!(
            "<p><a href=\"/devices/new?school={}\">Register a device</a></p>",
            school.id
        )
    } else {
        String::new()
    };
    let body = format!(
        "<h1>Devices</h1><p>{}</p>{add}<table><thead><tr><th scope=\"col\">Name</th><th scope=\"col\">MAC</th>\
         <th scope=\"col\">Address</th><th scope=\"col\">Owner</th><th scope=\"col\">Group</th>\
         <th scope=\"col\">Ownership</th>{}</tr></thead><tbody>{rows}</tbody></table>",
        escape(&school.name),
        if can_edit {
            "<th scope=\"col\">Change</th>"
        } else {
            ""
        }
    ) + &now;
    Ok(html::page(&viewer, "Devices", &body).into_response())
}

/// How far back "on the network now" looks.
const NOW_WINDOW_MINUTES: i64 = 15;

/// "Who is on which address now": the addresses that made requests in the
/// last few minutes, with the device, person and group the identity map put
/// behind them, for this school's devices and people. Who was online is
/// personal data, so the section is audited as a view.
async fn network_now(
    state: &ConsoleState,
    viewer: &Viewer,
    school_id: i64,
    registered: &[Device],
) -> Result<String, ConsoleError> {
    let since = chrono::Utc::now() - chrono::Duration::minutes(NOW_WINDOW_MINUTES);
    let seen = state.store().addresses_seen(since, 500).await?;
    let mut rows = String::new();
    let mut unmatched = 0;
    for a in &seen {
        let device = a
            .device_id
            .and_then(|id| registered.iter().find(|d| d.id == id));
        let person = match a.person_id {
            Some(id) => state
                .store()
                .person(id)
                .await?
                .filter(|p| p.school_id == school_id),
            None => None,
        };
        if device.is_none() && person.is_none() {
            if a.device_id.is_none() && a.person_id.is_none() {
                unmatched += 1;
            }
            continue;
        }
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&a.client),
            escape(device.map_or(a.device_name.as_deref().unwrap_or(""), |d| {
                d.details.name.as_str()
            })),
            escape(&person.map(|p| p.details.full_name()).unwrap_or_default()),
            escape(a.group.as_deref().unwrap_or("")),
            escape(&a.last_at),
            a.requests,
        ));
    }
    state
        .store()
        .audit_view(&viewer.actor(), "network_now", &school_id.to_string())
        .await?;
    let table = if rows.is_empty() {
        "<p>No device or person of this school has used the network in that time.</p>".to_owned()
    } else {
        format!(
            "<table><thead><tr><th scope=\"col\">Address</th><th scope=\"col\">Device</th>\
             <th scope=\"col\">Person</th><th scope=\"col\">Filtering group</th>\
             <th scope=\"col\">Last request (UTC)</th><th scope=\"col\">Requests</th></tr></thead>\
             <tbody>{rows}</tbody></table>"
        )
    };
    Ok(format!(
        "<h2 id=\"now\">On the network now</h2><p>Addresses that made requests in the last \
         {NOW_WINDOW_MINUTES} minutes, and who the filter put behind them. {unmatched} other \
         addresses matched no device or person and were filtered as the default group.</p>{table}"
    ))
}

/// The device form as typed: every field is text so that what the person
/// typed comes back unchanged when something is wrong.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct DeviceForm {
    #[serde(default)]
    pub school: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub mac: String,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub owner_id: String,
    #[serde(default)]
    pub group_id: String,
    #[serde(default)]
    pub ownership: String,
    /// Why the device is registered or changed, for the change log.
    #[serde(default)]
    pub reason: String,
}

/// Problems with a device form, by field.
#[derive(Debug, Default)]
pub struct FieldErrors(pub Vec<(&'static str, String)>);

impl FieldErrors {
    pub(crate) fn get(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(name, _)| *name == field)
            .map(|(_, message)| message.as_str())
    }
}

fn optional(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// Checks a device form field by field, as `DeviceDetails::normalised`
/// would, so every problem is reported at once.
pub fn check_device(form: &DeviceForm) -> Result<DeviceDetails, FieldErrors> {
    let mut errors = FieldErrors::default();
    let number = |field: &'static str, text: &str, errors: &mut FieldErrors| match optional(text) {
        None => None,
        Some(value) => match value.parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => {
                errors.0.push((
                    field,
                    format!("`{value}` is not a number; give the record's ID"),
                ));
                None
            }
        },
    };
    if form.reason.trim().is_empty() {
        // A device's address, owner and group decide whose filtering it gets.
        errors.0.push((
            "reason",
            "give a reason, such as \"new library laptop\"; it goes on the change log".to_string(),
        ));
    }
    let owner_id = number("owner_id", &form.owner_id, &mut errors);
    let group_id = number("group_id", &form.group_id, &mut errors);
    let ownership = match form.ownership.parse::<Ownership>() {
        Ok(o) => o,
        Err(_) => {
            errors.0.push((
                "ownership",
                "choose school-owned, BYOD or guest".to_string(),
            ));
            Ownership::School
        }
    };
    let base = DeviceDetails {
        name: form.name.trim().to_string(),
        mac: None,
        address: None,
        owner_id,
        group_id,
        ownership,
    };
    // Each field is checked on its own so that one mistake does not hide
    // another.
    let field_check =
        |field: &'static str, details: DeviceDetails, errors: &mut FieldErrors| match details
            .normalised()
        {
            Ok(d) => Some(d),
            Err(StoreError::Invalid { problem, .. }) => {
                errors.0.push((field, problem));
                None
            }
            Err(other) => {
                errors.0.push((field, other.to_string()));
                None
            }
        };
    let named = DeviceDetails {
        name: if base.name.is_empty() {
            String::new()
        } else {
            base.name.clone()
        },
        ..base.clone()
    };
    let name_ok = field_check("name", named, &mut errors).is_some();
    let probe = DeviceDetails {
        name: "probe".to_string(),
        ..base.clone()
    };
    let mac = field_check(
        "mac",
        DeviceDetails {
            mac: optional(&form.mac),
            ..probe.clone()
        },
        &mut errors,
    )
    .and_then(|d| d.mac);
    let address = field_check(
        "address",
        DeviceDetails {
            address: optional(&form.address),
            ..probe
        },
        &mut errors,
    )
    .and_then(|d| d.address);
    if errors.0.is_empty() && name_ok {
        Ok(DeviceDetails {
            mac,
            address,
            ..base
        })
    } else {
        Err(errors)
    }
}

fn device_page(
    viewer: &Viewer,
    form: &DeviceForm,
    errors: &FieldErrors,
    editing: bool,
) -> Response {
    let summary = html::error_summary(errors);
    let ownerships = vec![
        ("school".to_string(), "School-owned".to_string()),
        (
            "byod".to_string(),
            "Bring your own device (BYOD)".to_string(),
        ),
        ("guest".to_string(), "Guest".to_string()),
    ];
    let title = if editing {
        "Edit a device"
    } else {
        "Register a device"
    };
    let name_field = if editing {
        format!(
            "<input type=\"hidden\" name=\"name\" value=\"{0}\"><p><strong>Name:</strong> {0}</p>",
            escape(&form.name)
        )
    } else {
        html::text_input(
            "name",
            "Name or asset tag",
            None,
            &form.name,
            errors.get("name"),
        )
    };
    let body = format!(
        "<h1>{title}</h1>{summary}<form method=\"post\" action=\"/devices\" novalidate>{csrf}\
         <input type=\"hidden\" name=\"school\" value=\"{school}\">{name_field}{mac}{address}{owner}{group}\
         <div class=\"{own_class}\">{ownership}{own_error}</div>{reason}<div><button>Save</button></div></form>",
        csrf = html::csrf_field(viewer.csrf_token()),
        school = escape(&form.school),
        mac = html::text_input("mac", "MAC address", Some("For example aa:bb:cc:dd:ee:ff; leave empty if not known"), &form.mac, errors.get("mac")),
        address = html::text_input("address", "IP address or range", Some("For example 10.0.4.17 or 10.0.4.0/24"), &form.address, errors.get("address")),
        owner = html::text_input("owner_id", "Owner's person ID", Some("Optional"), &form.owner_id, errors.get("owner_id")),
        group = html::text_input("group_id", "Group ID", Some("Optional: the group whose filtering applies"), &form.group_id, errors.get("group_id")),
        reason = html::text_input("reason", "Reason", Some("Why it is registered or changed, for the change log"), &form.reason, errors.get("reason")),
        own_class = if errors.get("ownership").is_some() { "field-error" } else { "field" },
        ownership = html::select("ownership", "Ownership", &ownerships, &form.ownership),
        own_error = errors.get("ownership").map_or(String::new(), |e| format!("<span class=\"error\">Error: {}</span>", escape(e))),
    );
    let status = if errors.0.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    (status, html::page(viewer, title, &body)).into_response()
}

async fn new_device(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<SchoolQuery>,
) -> Result<Response, ConsoleError> {
    let school = school_for(&state, &viewer, query.school, Permission::ManageDevices).await?;
    let form = DeviceForm {
        school: school.id.to_string(),
        ownership: "school".to_string(),
        ..DeviceForm::default()
    };
    Ok(device_page(&viewer, &form, &FieldErrors::default(), false))
}

async fn edit_device(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Query(query): Query<SchoolQuery>,
) -> Result<Response, ConsoleError> {
    let school = school_for(&state, &viewer, query.school, Permission::ManageDevices).await?;
    let devices: Vec<Device> = state.store().devices(school.id).await?;
    let device = devices
        .into_iter()
        .find(|d| d.id == id)
        .ok_or(ConsoleError::NotFound("that device"))?;
    let d = device.details;
    let form = DeviceForm {
        school: school.id.to_string(),
        name: d.name,
        mac: d.mac.unwrap_or_default(),
        address: d.address.unwrap_or_default(),
        owner_id: d.owner_id.map_or(String::new(), |n| n.to_string()),
        group_id: d.group_id.map_or(String::new(), |n| n.to_string()),
        ownership: d.ownership.as_str().to_string(),
        reason: String::new(),
    };
    Ok(device_page(&viewer, &form, &FieldErrors::default(), true))
}

async fn save_device(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Form(form): Form<DeviceForm>,
) -> Result<Response, ConsoleError> {
    let requested = form.school.trim().parse::<i64>().ok();
    let school = school_for(&state, &viewer, requested, Permission::ManageDevices).await?;
    let details = match check_device(&form) {
        Ok(details) => details,
        Err(errors) => return Ok(device_page(&viewer, &form, &errors, false)),
    };
    match state
        .store()
        .save_device(&viewer.actor(), school.id, details, &form.reason)
        .await
    {
        Ok(_) => Ok(Redirect::to(&format!("/devices?school={}", school.id)).into_response()),
        Err(StoreError::Database(error)) if error.as_database_error().is_some() => {
            // A foreign key: the owner or group does not exist.
            let errors = FieldErrors(vec![(
                "owner_id",
                "no such person or group in this school; check the owner and group IDs".to_string(),
            )]);
            tracing::info!(%error, "device refused by the database");
            Ok(device_page(&viewer, &form, &errors, false))
        }
        Err(error) => Err(error.into()),
    }
}

/// The audit page's filters, as typed.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    pub actor: String,
    #[serde(default)]
    pub action: String,
    #[serde(default)]
    pub entity: String,
    #[serde(default)]
    pub entity_id: String,
    /// A date `YYYY-MM-DD` or a time.
    #[serde(default)]
    pub from: String,
    /// A date (inclusive) or a time.
    #[serde(default)]
    pub to: String,
}

impl AuditQuery {
    pub fn filter(&self, limit: i64) -> AuditFilter {
        let until =
            optional(&self.to).map(
                |to| match chrono::NaiveDate::parse_from_str(&to, "%Y-%m-%d") {
                    Ok(day) => day
                        .succ_opt()
                        .map_or(to.clone(), |next| next.format("%Y-%m-%d").to_string()),
                    Err(_) => to,
                },
            );
        AuditFilter {
            actor: optional(&self.actor),
            action: optional(&self.action),
            entity: optional(&self.entity),
            entity_id: optional(&self.entity_id),
            since: optional(&self.from),
            until,
            limit,
        }
    }

    fn as_query(&self) -> String {
        [
            ("actor", &self.actor),
            ("action", &self.action),
            ("entity", &self.entity),
            ("entity_id", &self.entity_id),
            ("from", &self.from),
            ("to", &self.to),
        ]
        .iter()
        .map(|(k, v)| format!("{k}={}", query_value(v)))
        .collect::<Vec<_>>()
        .join("&")
    }
}

/// The audit log is deployment-wide, so reading it needs the permission in
/// every school the account holds roles in: a trust-wide role, or a role in
/// a single-school deployment.
pub async fn require_audit(state: &ConsoleState, viewer: &Viewer) -> Result<(), ConsoleError> {
    require_everywhere(state, viewer, Permission::SeeAudit).await
}

/// For records that belong to the whole deployment rather than one school
/// (the audit log, decision events): the permission must hold in every
/// school.
pub async fn require_everywhere(
    state: &ConsoleState,
    viewer: &Viewer,
    permission: Permission,
) -> Result<(), ConsoleError> {
    let schools = state.store().schools().await?;
    if !schools.is_empty() && schools.iter().all(|s| viewer.can(permission, s.id)) {
        Ok(())
    } else {
        viewer.require(permission, -1)
    }
}

async fn audit(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<AuditQuery>,
) -> Result<Response, ConsoleError> {
    require_audit(&state, &viewer).await?;
    let entries = state.store().audit_search(&query.filter(500)).await?;
    let rows: String = entries
        .iter()
        .map(|e| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                e.seq,
                escape(&e.at),
                escape(&e.actor),
                escape(&e.action),
                escape(&e.entity),
                escape(e.entity_id.as_deref().unwrap_or("")),
            )
        })
        .collect();
    let body = format!(
        "<h1>Audit log</h1><form method=\"get\" action=\"/audit\">{}{}{}{}{}{}\
         <div><button>Filter</button></div></form>\
         <p><a href=\"/audit.csv?{q}\">Export these entries as CSV</a></p>\
         <table><caption>{n} entries, newest first (at most 500 shown)</caption><thead><tr><th scope=\"col\">No.</th>\
         <th scope=\"col\">When (UTC)</th><th scope=\"col\">Who</th><th scope=\"col\">Action</th>\
         <th scope=\"col\">Record</th><th scope=\"col\">ID</th></tr></thead><tbody>{rows}</tbody></table>",
        html::text_input("actor", "Who", Some("Part of the account, such as a username"), &query.actor, None),
        html::text_input("action", "Action", Some("For example view, create, update, sign_in"), &query.action, None),
        html::text_input("entity", "Record kind", Some("For example person, device, account"), &query.entity, None),
        html::text_input("entity_id", "Record ID", None, &query.entity_id, None),
        html::text_input("from", "From", Some("A date, YYYY-MM-DD"), &query.from, None),
        html::text_input("to", "To", Some("A date, YYYY-MM-DD (included)"), &query.to, None),
        q = escape(&query.as_query()),
        n = entries.len(),
    );
    Ok(html::page(&viewer, "Audit log", &body).into_response())
}

/// Audit entries as CSV, with a header row.
pub fn audit_to_csv(entries: &[AuditEntry]) -> Result<Vec<u8>, ConsoleError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let fail = |e: csv::Error| ConsoleError::BadRequest(format!("cannot write CSV: {e}"));
    writer
        .write_record([
            "seq",
            "at",
            "actor",
            "action",
            "entity",
            "entity_id",
            "before",
            "after",
            "reason",
            "hash",
        ])
        .map_err(fail)?;
    for e in entries {
        writer
            .write_record([
                e.seq.to_string().as_str(),
                &e.at,
                &e.actor,
                &e.action,
                &e.entity,
                e.entity_id.as_deref().unwrap_or(""),
                e.before.as_deref().unwrap_or(""),
                e.after.as_deref().unwrap_or(""),
                e.reason.as_deref().unwrap_or(""),
                &e.hash,
            ])
            .map_err(fail)?;
    }
    writer
        .into_inner()
        .map_err(|e| ConsoleError::BadRequest(format!("cannot write CSV: {e}")))
}

async fn audit_csv(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<AuditQuery>,
) -> Result<Response, ConsoleError> {
    require_audit(&state, &viewer).await?;
    let entries = state.store().audit_search(&query.filter(100_000)).await?;
    // Exporting the log takes records out of the system: that is recorded.
    state
        .store()
        .audit_view(
            &viewer.actor(),
            "audit_log",
            &format!("csv export: {}", query.as_query()),
        )
        .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"sheepdog-audit.csv\"",
            ),
        ],
        audit_to_csv(&entries)?,
    )
        .into_response())
}

async fn import_form(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<SchoolQuery>,
) -> Result<Response, ConsoleError> {
    let school = school_for(&state, &viewer, query.school, Permission::ImportRoster).await?;
    Ok(import_page(&viewer, &school, "").into_response())
}

fn import_page(viewer: &Viewer, school: &School, report: &str) -> axum::response::Html<String> {
    let body = format!(
        "<h1>Import a roster</h1><p>{name}</p>{report}\
         <form method=\"post\" action=\"/people/import?csrf={csrf}&amp;school={id}\" enctype=\"multipart/form-data\">\
         <label for=\"file\">CSV export from the MIS<span class=\"hint\">Pupils, staff or contacts; \
         SIMS, Arbor and Bromcom headings are recognised</span></label>\
         <input id=\"file\" name=\"file\" type=\"file\" accept=\".csv,text/csv\" required>\
         <label for=\"kind\">What the file holds</label><select id=\"kind\" name=\"kind\">\
         <option value=\"\">Tell from its headings</option><option value=\"pupils\">Pupils</option>\
         <option value=\"staff\">Staff</option><option value=\"contacts\">Parents and carers</option></select>\
         <p><input type=\"checkbox\" id=\"dry_run\" name=\"dry_run\" value=\"yes\" checked> \
         <label for=\"dry_run\" style=\"display:inline\">Check only: show what would change without changing anything</label></p>\
         <p><input type=\"checkbox\" id=\"skip_invalid\" name=\"skip_invalid\" value=\"yes\"> \
         <label for=\"skip_invalid\" style=\"display:inline\">Import the good rows even if some rows have problems</label></p>\
         <div><button>Upload</button></div></form>",
        name = escape(&school.name),
        csrf = query_value(viewer.csrf_token()),
        id = school.id,
    );
    html::page(viewer, "Import a roster", &body)
}

/// What an import found and did, for the page and the API.
#[derive(Debug, serde::Serialize)]
pub struct ImportReport {
    pub kind: String,
    pub rows: usize,
    pub problems: Vec<ImportProblem>,
    pub imported: bool,
    pub outcome: Option<sheepdog_store::ImportOutcome>,
}

/// One row's problem, as the roster reports it.
#[derive(Debug, serde::Serialize)]
pub struct ImportProblem {
    pub line: usize,
    pub column: Option<String>,
    pub value: Option<String>,
    pub problem: String,
    pub fix: String,
}

/// Parses and (unless it has problems and `skip_invalid` is off) imports a
/// roster.
pub async fn run_import(
    state: &ConsoleState,
    viewer: &Viewer,
    school_id: i64,
    bytes: &[u8],
    kind: Option<&str>,
    dry_run: bool,
    skip_invalid: bool,
) -> Result<ImportReport, ConsoleError> {
    let kind = match kind.filter(|k| !k.is_empty()) {
        Some(k) => Some(
            k.parse::<sheepdog_roster::RosterKind>()
                .map_err(ConsoleError::BadRequest)?,
        ),
        None => None,
    };
    let roster = sheepdog_roster::parse_bytes(
        bytes,
        FilePath::new("upload.csv"),
        kind,
        chrono::Local::now().date_naive(),
    )
    .map_err(|e| ConsoleError::BadRequest(e.to_string()))?;
    let problems: Vec<ImportProblem> = roster
        .problems
        .iter()
        .map(|p| ImportProblem {
            line: p.line,
            column: p.column.clone(),
            value: p.value.clone(),
            problem: p.problem.clone(),
            fix: p.fix.clone(),
        })
        .collect();
    let go = roster.is_clean() || skip_invalid;
    let outcome = if go {
        Some(
            state
                .store()
                .import_people(&viewer.actor(), school_id, &roster.batch, dry_run)
                .await?,
        )
    } else {
        None
    };
    Ok(ImportReport {
        kind: roster.kind.to_string(),
        rows: roster.rows,
        problems,
        imported: go && !dry_run,
        outcome,
    })
}

async fn import(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<SchoolQuery>,
    _headers: HeaderMap,
    mut multipart: Multipart,
) -> Result<Response, ConsoleError> {
    let school = school_for(&state, &viewer, query.school, Permission::ImportRoster).await?;
    let mut bytes = Vec::new();
    let mut kind = String::new();
    let mut dry_run = false;
    let mut skip_invalid = false;
    let bad = |e: axum::extract::multipart::MultipartError| ConsoleError::BadRequest(e.to_string());
    while let Some(field) = multipart.next_field().await.map_err(bad)? {
        match field.name().unwrap_or_default() {
            "file" => bytes = field.bytes().await.map_err(bad)?.to_vec(),
            "kind" => kind = field.text().await.map_err(bad)?,
            "dry_run" => dry_run = true,
            "skip_invalid" => skip_invalid = true,
            _ => {}
        }
    }
    if bytes.is_empty() {
        let report = "<div class=\"summary\" role=\"alert\"><p class=\"error\">Choose a CSV file to upload.</p></div>";
        return Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            import_page(&viewer, &school, report),
        )
            .into_response());
    }
    let report = match run_import(
        &state,
        &viewer,
        school.id,
        &bytes,
        Some(&kind),
        dry_run,
        skip_invalid,
    )
    .await
    {
        Ok(report) => report,
        Err(ConsoleError::BadRequest(message)) => {
            let html = format!(
                "<div class=\"summary\" role=\"alert\"><p class=\"error\">{}</p></div>",
                escape(&message)
            );
            return Ok((
                StatusCode::UNPROCESSABLE_ENTITY,
                import_page(&viewer, &school, &html),
            )
                .into_response());
        }
        Err(other) => return Err(other),
    };
    let problems: String = report
        .problems
        .iter()
        .map(|p| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                p.line,
                escape(p.column.as_deref().unwrap_or("")),
                escape(p.value.as_deref().unwrap_or("")),
                escape(&p.problem),
                escape(&p.fix)
            )
        })
        .collect();
    let outcome = match &report.outcome {
        Some(o) => format!(
            "<p>{} {}: {} new, {} updated, {} unchanged, {} parent links.</p>",
            if o.dry_run {
                "Checked only; nothing was changed."
            } else {
                "Imported."
            },
            report.kind,
            o.created,
            o.updated,
            o.unchanged,
            o.links_created
        ),
        None => "<p class=\"error\">Nothing was imported because some rows have problems. \
                 Correct them in the MIS and export again, or choose to import the good rows.</p>"
            .to_string(),
    };
    let problem_table = if report.problems.is_empty() {
        "<p>No problems found.</p>".to_string()
    } else {
        format!(
            "<table><caption>Problems by row</caption><thead><tr><th scope=\"col\">Line</th><th scope=\"col\">Column</th>\
             <th scope=\"col\">Value</th><th scope=\"col\">Problem</th><th scope=\"col\">How to fix it</th></tr></thead>\
             <tbody>{problems}</tbody></table>"
        )
    };
    let html = format!(
        "<div class=\"notice\" role=\"status\"><h2>Report</h2><p>{} rows read.</p>{outcome}</div>{problem_table}",
        report.rows
    );
    Ok(import_page(&viewer, &school, &html).into_response())
}
