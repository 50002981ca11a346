//! Unblock requests, over-blocking reports, the filtering change log and
//! the filtering policy document (issue 9; F8, F11, F14).
//!
//! Staff ask for a blocked site for a lesson (`/requests/new`, linked from
//! the proxy's block page); the target is checked against the running
//! filter first, so a request that touches illegal content is refused by
//! the system with the reason, and no person can approve it. Approvers
//! (technicians and the DSL team) decide with a comment; an approval is
//! applied to the running policy at once through [`Filtering::apply`] (and
//! again by the binary's refresh every 15 seconds), and the policy drops it
//! at its end time whoever acts. Technicians settle over-blocking reports
//! from the block page. Every change is in the audit log, which the change
//! log (`/changes`) reads; an attempt to change filtering without the
//! filtering manager's permission is refused and recorded there too.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde::Deserialize;
use serde_json::json;
use sheepdog_policy::{
    report, Action, CompiledPolicy, Engine, ExceptionDef, PolicyDocument, Target,
};
use sheepdog_store::requests::{
    ApprovedException, ChangeFilter, NewRequest, ReportDecision, RequestCheck, RequestFilter,
    RequestStatus, UnblockRequest,
};
use sheepdog_store::{BlockReport, School, Store, StoreError};

use crate::auth::Viewer;
use crate::html::{self, escape, query_value};
use crate::pages::{self, FieldErrors};
use crate::roles::Permission;
use crate::{ConsoleError, ConsoleState};

/// The running filter as the console needs it: to check what a request
/// asks for, to apply decisions at once, and to write the policy document.
#[derive(Debug, Clone)]
pub struct Filtering {
    engine: Arc<Engine>,
    /// The policy file as loaded, before approved requests are added.
    document: Arc<PolicyDocument>,
    /// The longest time frame one request may ask for.
    max_length: chrono::Duration,
}

/// Approved requests as the policy's exceptions, with the group each is
/// for: shared by the console and the binary's periodic refresh.
pub fn as_exceptions(approved: &[ApprovedException]) -> Vec<(String, ExceptionDef)> {
    approved
        .iter()
        .map(|a| {
            (
                a.policy_group.clone(),
                ExceptionDef {
                    target: a.target.clone(),
                    action: Action::Allow,
                    start: a.starts_at,
                    end: a.ends_at,
                    reason: format!("{}: {}", a.reference, a.reason),
                    requested_by: Some(a.requested_by.clone()),
                    approved_by: Some(a.approved_by.clone()),
                },
            )
        })
        .collect()
}

impl Filtering {
    pub fn new(
        engine: Arc<Engine>,
        document: PolicyDocument,
        max_length: chrono::Duration,
    ) -> Self {
        Self {
            engine,
            document: Arc::new(document),
            max_length,
        }
    }

    /// The policy's group names, for the request form.
    pub fn groups(&self) -> Vec<String> {
        self.document
            .groups
            .iter()
            .map(|g| g.name.clone())
            .collect()
    }

    /// What the running filter says of `target` for `group` now.
    pub fn check(&self, target: &str, group: &str) -> RequestCheck {
        let url;
        let target = if target.contains('/') {
            url = format!(
                "http://{}",
                target
                    .trim_start_matches("http://")
                    .trim_start_matches("https://")
            );
            Target::Url(&url)
        } else {
            Target::Name(target)
        };
        let decision = self.engine.decide(&sheepdog_policy::Query {
            group,
            target,
            at: Utc::now(),
        });
        RequestCheck {
            illegal: decision.illegal,
            category: decision.category.as_deref().map(str::to_owned),
            reason: decision.reason,
        }
    }

    /// The document with the approved requests of `at` added.
    async fn document_at(
        &self,
        store: &Store,
        at: DateTime<Utc>,
    ) -> Result<PolicyDocument, ConsoleError> {
        let approved = store.approved_exceptions(at).await?;
        let (with, unplaced) = self.document.with_exceptions(as_exceptions(&approved));
        for (group, exception) in &unplaced {
            tracing::warn!(%group, target = %exception.target, "an approved request names a group the policy does not have; it is not applied");
        }
        Ok(with)
    }

    /// Recompiles the running policy with the approved requests now in
    /// the store: a decision takes effect at once rather than at the next
    /// periodic refresh.
    pub async fn apply(&self, store: &Store) -> Result<(), ConsoleError> {
        let with = self.document_at(store, Utc::now()).await?;
        self.engine
            .recompile(&with)
            .map_err(|e| ConsoleError::Settings(format!("cannot apply approved requests: {e}")))
    }

    /// The filtering policy document (F14) as `sheepdog policy export`
    /// writes it: the policy in force with approved requests.
    pub async fn markdown(&self, store: &Store, at: DateTime<Utc>) -> Result<String, ConsoleError> {
        let with = self.document_at(store, at).await?;
        let snapshot = self.engine.current().snapshot().clone();
        let policy = CompiledPolicy::compile(&with, snapshot)
            .map_err(|e| ConsoleError::Settings(format!("cannot compile the policy: {e}")))?;
        Ok(report::policy_markdown(&with, &policy, at))
    }

    /// The same document as a PDF.
    pub async fn pdf(&self, store: &Store, at: DateTime<Utc>) -> Result<Vec<u8>, ConsoleError> {
        let with = self.document_at(store, at).await?;
        let snapshot = self.engine.current().snapshot().clone();
        let policy = CompiledPolicy::compile(&with, snapshot)
            .map_err(|e| ConsoleError::Settings(format!("cannot compile the policy: {e}")))?;
        Ok(report::policy_pdf(&with, &policy, at))
    }
}

pub fn routes() -> Router<ConsoleState> {
    Router::new()
        .route("/requests", get(list_page).post(create))
        .route("/requests.csv", get(csv_export))
        .route("/requests/new", get(new_form))
        .route("/requests/{id}/decision", post(decide))
        .route("/requests/{id}/withdraw", post(withdraw))
        .route("/reports", get(reports_page))
        .route("/reports/{id}", post(decide_report))
        .route("/changes", get(changes_page))
        .route("/changes.csv", get(changes_csv))
        .route("/policy", get(policy_page))
        .route("/policy.md", get(policy_markdown))
        .route("/policy.pdf", get(policy_pdf))
        .route("/api/v1/requests", get(api_list).post(api_create))
        .route("/api/v1/requests/{id}/decision", post(api_decide))
        .route("/api/v1/requests/{id}/withdraw", post(api_withdraw))
}

fn filtering(state: &ConsoleState) -> Result<&Filtering, ConsoleError> {
    state.filtering().ok_or(ConsoleError::NotFound(
        "filtering (no policy is configured: set [filtering] policy)",
    ))
}

/// Applies a decision to the running policy, if there is one; a failure is
/// logged and left to the periodic refresh, as the decision is stored.
async fn apply(state: &ConsoleState) {
    if let Some(filtering) = state.filtering() {
        if let Err(error) = filtering.apply(state.store()).await {
            tracing::error!(%error, "the decision is stored; the periodic refresh will apply it");
        }
    }
}

/// Refuses an attempt to change filtering without the permission, and
/// records the attempt in the audit log.
async fn refuse_change(
    state: &ConsoleState,
    viewer: &Viewer,
    what: &str,
) -> Result<Response, ConsoleError> {
    state
        .store()
        .audit_refused_change(
            &viewer.actor(),
            what,
            "refused: the account's roles do not allow changing filtering",
        )
        .await?;
    Err(ConsoleError::Forbidden)
}

fn zone(school: &School) -> chrono_tz::Tz {
    school.timezone.parse().unwrap_or(chrono_tz::Europe::London)
}

fn local_input(at: DateTime<Utc>, tz: chrono_tz::Tz) -> String {
    at.with_timezone(&tz).format("%Y-%m-%dT%H:%M").to_string()
}

fn show_time(text: &str, tz: chrono_tz::Tz) -> String {
    DateTime::parse_from_rfc3339(text).map_or_else(
        |_| text.to_owned(),
        |t| t.with_timezone(&tz).format("%-d %b %Y %H:%M").to_string(),
    )
}

/// A time as the form or the API gives it: RFC 3339, or the school's local
/// `YYYY-MM-DDTHH:MM` (what a browser's date-time field sends).
fn parse_time(text: &str, tz: chrono_tz::Tz) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
        .and_then(|naive| tz.from_local_datetime(&naive).earliest())
        .map(|t| t.with_timezone(&Utc))
}

/// A site name (`www.example.org`) or a URL without its scheme
/// (`www.example.org/maths/`): what an exception can name.
fn check_target(text: &str) -> Result<String, String> {
    let text = text
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = text.split('/').next().unwrap_or("");
    // Single-label names are allowed: a school's intranet has them.
    let host_ok = !host.is_empty()
        && !host.starts_with('.')
        && !host.ends_with('.')
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    if text.is_empty() {
        Err("give the site, such as www.example.org".to_owned())
    } else if !host_ok || text.contains(char::is_whitespace) {
        Err(format!(
            "`{text}` is not a site name or web address; write it like www.example.org or www.example.org/page"
        ))
    } else {
        Ok(text.trim_end_matches('/').to_lowercase())
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct RequestForm {
    #[serde(default)]
    school: String,
    #[serde(default)]
    site: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    group: String,
    #[serde(default)]
    class: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    purpose: String,
    #[serde(default)]
    start: String,
    #[serde(default)]
    end: String,
}

/// Checks the form field by field, so every problem shows at once.
fn check_form(
    form: &RequestForm,
    tz: chrono_tz::Tz,
    groups: &[String],
) -> Result<NewRequest, FieldErrors> {
    let mut errors = FieldErrors::default();
    let typed = if form.url.trim().is_empty() {
        &form.site
    } else {
        &form.url
    };
    let target = check_target(typed).unwrap_or_else(|e| {
        errors.0.push(("site", e));
        String::new()
    });
    let group = form.group.trim().to_owned();
    if group.is_empty() {
        errors
            .0
            .push(("group", "choose the group the site is for".to_owned()));
    } else if !groups.is_empty() && !groups.contains(&group) {
        errors.0.push((
            "group",
            format!("`{group}` is not a group of the filtering policy"),
        ));
    }
    if form.reason.trim().is_empty() {
        errors.0.push((
            "reason",
            "say why the site is needed; the approver reads it".to_owned(),
        ));
    }
    if form.purpose.trim().is_empty() {
        errors.0.push((
            "purpose",
            "name the lesson or purpose, such as Year 4 geography".to_owned(),
        ));
    }
    let start = parse_time(&form.start, tz);
    if start.is_none() {
        errors.0.push((
            "start",
            "give the start as a date and time, such as 2026-10-05T09:00".to_owned(),
        ));
    }
    let end = parse_time(&form.end, tz);
    if end.is_none() {
        errors.0.push((
            "end",
            "give the end as a date and time, such as 2026-10-05T10:00".to_owned(),
        ));
    }
    match (start, end) {
        (Some(starts_at), Some(ends_at)) if errors.0.is_empty() => Ok(NewRequest {
            target,
            policy_group: group,
            class_name: Some(form.class.trim().to_owned()).filter(|c| !c.is_empty()),
            reason: form.reason.trim().to_owned(),
            purpose: form.purpose.trim().to_owned(),
            starts_at,
            ends_at,
        }),
        _ => Err(errors),
    }
}

/// The store's refusal of a field, as a form error.
fn store_field_error(error: StoreError) -> Result<FieldErrors, ConsoleError> {
    match error {
        StoreError::Invalid { field, problem } => {
            let field = match field {
                "site" | "group" | "reason" | "purpose" | "start" | "end" => field,
                _ => "site",
            };
            Ok(FieldErrors(vec![(field, problem)]))
        }
        other => Err(other.into()),
    }
}

fn form_page(
    viewer: &Viewer,
    school: &School,
    groups: &[String],
    form: &RequestForm,
    errors: &FieldErrors,
    refused: Option<&UnblockRequest>,
    max_hours: i64,
) -> Html<String> {
    let field = |name: &'static str, label: &str, hint: Option<&str>, value: &str| {
        html::text_input(name, label, hint, value, errors.get(name))
    };
    let site = if form.url.trim().is_empty() {
        &form.site
    } else {
        &form.url
    };
    let group = if groups.is_empty() {
        field(
            "group",
            "Group",
            Some("the policy group, such as ks2"),
            &form.group,
        )
    } else {
        let options: Vec<(String, String)> =
            std::iter::once((String::new(), "Choose a group".to_owned()))
                .chain(groups.iter().map(|g| (g.clone(), g.clone())))
                .collect();
        let error = errors.get("group").map_or(String::new(), |e| {
            format!(
                "<span class=\"error\" id=\"group-error\">Error: {}</span>",
                escape(e)
            )
        });
        format!(
            "<div class=\"{}\">{}{error}</div>",
            if errors.get("group").is_some() {
                "field-error"
            } else {
                "field"
            },
            html::select("group", "Group", &options, form.group.trim())
        )
    };
    let time = |name: &'static str, label: &str, value: &str| {
        let error = errors.get(name).map_or(String::new(), |e| {
            format!(
                "<span class=\"error\" id=\"{name}-error\">Error: {}</span>",
                escape(e)
            )
        });
        format!(
            "<div class=\"{}\"><label for=\"{name}\">{label}<span class=\"hint\">school time ({tz})</span></label>{error}\
             <input type=\"datetime-local\" id=\"{name}\" name=\"{name}\" value=\"{}\"></div>",
            if errors.get(name).is_some() { "field-error" } else { "field" },
            escape(value),
            tz = escape(&school.timezone),
        )
    };
    let refusal = refused.map_or(String::new(), |r| {
        format!(
            "<div class=\"warning\" role=\"alert\" id=\"refused\"><h2>Refused by the system</h2><p>{}</p>\
             <p>Your request is kept as {} so that the refusal is on the record.</p></div>",
            escape(r.comment.as_deref().unwrap_or("")),
            escape(&r.reference)
        )
    });
    let body = format!(
        "<h1>Ask for a blocked site</h1>{refusal}{summary}\
         <p>The filtering manager or the DSL team decides. Access lasts at most {max_hours} hours and ends \
         on its own at the end time.</p>\
         <form method=\"post\" action=\"/requests\" novalidate>{csrf}\
         <input type=\"hidden\" name=\"school\" value=\"{school_id}\">\
         {site}{group}{class}{reason}{purpose}{start}{end}<div><button>Send the request</button></div></form>",
        summary = html::error_summary(errors),
        csrf = html::csrf_field(viewer.csrf_token()),
        school_id = school.id,
        site = field("site", "Site or web address", Some("such as www.example.org or www.example.org/page"), site),
        class = field("class", "Class (optional)", Some("such as 4K"), &form.class),
        reason = field("reason", "Why it is needed", None, &form.reason),
        purpose = field("purpose", "Lesson or purpose", Some("such as Year 4 geography, period 3"), &form.purpose),
        start = time("start", "Start", &form.start),
        end = time("end", "End", &form.end),
    );
    html::page(viewer, "Ask for a blocked site", &body)
}

#[derive(Debug, Default, Deserialize)]
struct NewQuery {
    school: Option<i64>,
    site: Option<String>,
    url: Option<String>,
    group: Option<String>,
}

fn max_hours(state: &ConsoleState) -> i64 {
    state
        .filtering()
        .map_or(8, |f| f.max_length.num_hours().max(1))
}

async fn new_form(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<NewQuery>,
) -> Result<Response, ConsoleError> {
    let school =
        pages::school_for(&state, &viewer, query.school, Permission::RequestUnblock).await?;
    let tz = zone(&school);
    let start = Utc::now();
    let form = RequestForm {
        site: query.site.unwrap_or_default(),
        url: query.url.unwrap_or_default(),
        group: query.group.unwrap_or_default(),
        start: local_input(start, tz),
        end: local_input(start + chrono::Duration::hours(1), tz),
        ..RequestForm::default()
    };
    let groups = state.filtering().map(Filtering::groups).unwrap_or_default();
    Ok(form_page(
        &viewer,
        &school,
        &groups,
        &form,
        &FieldErrors::default(),
        None,
        max_hours(&state),
    )
    .into_response())
}

/// What asking did: stored (pending or refused) or the fields to fix.
enum Asked {
    Stored(Box<UnblockRequest>),
    Problems(FieldErrors),
}

async fn ask(
    state: &ConsoleState,
    viewer: &Viewer,
    school: &School,
    form: &RequestForm,
) -> Result<Asked, ConsoleError> {
    let groups = state.filtering().map(Filtering::groups).unwrap_or_default();
    let new = match check_form(form, zone(school), &groups) {
        Ok(new) => new,
        Err(errors) => return Ok(Asked::Problems(errors)),
    };
    let check = state
        .filtering()
        .map(|f| f.check(&new.target, &new.policy_group))
        .unwrap_or_default();
    let max = chrono::Duration::hours(max_hours(state));
    match state
        .store()
        .request_unblock(&viewer.account, school.id, &new, &check, max)
        .await
    {
        Ok(request) => Ok(Asked::Stored(Box::new(request))),
        Err(error) => Ok(Asked::Problems(store_field_error(error)?)),
    }
}

async fn create(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Form(form): Form<RequestForm>,
) -> Result<Response, ConsoleError> {
    let requested = form.school.trim().parse::<i64>().ok();
    let school = pages::school_for(&state, &viewer, requested, Permission::RequestUnblock).await?;
    let groups = state.filtering().map(Filtering::groups).unwrap_or_default();
    match ask(&state, &viewer, &school, &form).await? {
        Asked::Stored(request) if request.status == RequestStatus::Refused => Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            form_page(
                &viewer,
                &school,
                &groups,
                &form,
                &FieldErrors::default(),
                Some(&request),
                max_hours(&state),
            ),
        )
            .into_response()),
        Asked::Stored(request) => Ok(Redirect::to(&format!(
            "/requests?school={}&sent={}",
            school.id,
            query_value(&request.reference)
        ))
        .into_response()),
        Asked::Problems(errors) => Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            form_page(
                &viewer,
                &school,
                &groups,
                &form,
                &errors,
                None,
                max_hours(&state),
            ),
        )
            .into_response()),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    school: Option<i64>,
    status: Option<String>,
    q: Option<String>,
    sent: Option<String>,
}

impl ListQuery {
    fn filter(&self, limit: i64) -> Result<RequestFilter, ConsoleError> {
        let status = match self
            .status
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            Some(text) => Some(text.parse::<RequestStatus>().map_err(|_| {
                ConsoleError::BadRequest(format!(
                    "status `{text}` is not one of pending, approved, rejected, withdrawn, refused"
                ))
            })?),
            None => None,
        };
        Ok(RequestFilter {
            status,
            requester_account: None,
            text: self.q.clone(),
            limit,
        })
    }
}

fn status_badge(request: &UnblockRequest) -> String {
    escape(request.status.as_str())
}

async fn list_page(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<ListQuery>,
) -> Result<Response, ConsoleError> {
    let school =
        pages::school_for(&state, &viewer, query.school, Permission::RequestUnblock).await?;
    let tz = zone(&school);
    let approver = viewer.can(Permission::DecideRequests, school.id);
    let csrf = html::csrf_field(viewer.csrf_token());
    let mut body = String::from("<h1>Unblock requests</h1>");
    if let Some(sent) = query.sent.as_deref() {
        body.push_str(&format!(
            "<p class=\"notice\" role=\"status\">Request {} was sent; approvers have been told.</p>",
            escape(sent)
        ));
    }
    body.push_str(&format!(
        "<p><a href=\"/requests/new?school={}\">Ask for a blocked site</a></p>",
        school.id
    ));
    if approver {
        let pending = state
            .store()
            .unblock_requests(
                &viewer.account,
                school.id,
                &RequestFilter {
                    status: Some(RequestStatus::Pending),
                    ..RequestFilter::default()
                },
            )
            .await?;
        body.push_str("<h2>Waiting for a decision</h2>");
        if pending.is_empty() {
            body.push_str("<p>None.</p>");
        }
        for r in &pending {
            let decide = if r.requester_account == Some(viewer.account.id) {
                "<p>Your own request: another approver decides it.</p>".to_owned()
            } else {
                format!(
                    "<form method=\"post\" action=\"/requests/{id}/decision\">{csrf}\
                     <label for=\"comment-{id}\">Comment<span class=\"hint\">required to reject; the requester sees it</span></label>\
                     <input type=\"text\" id=\"comment-{id}\" name=\"comment\">\
                     <button name=\"decision\" value=\"approve\">Approve</button> \
                     <button class=\"secondary\" name=\"decision\" value=\"reject\">Reject</button></form>",
                    id = r.id
                )
            };
            body.push_str(&format!(
                "<section aria-labelledby=\"req-{id}\"><h3 id=\"req-{id}\">{reference}: {target} for {group}</h3>\
                 <p>Asked by {who}; {start} to {end}. Lesson: {purpose}. Why: {reason}.{category}</p>{decide}</section>",
                id = r.id,
                reference = escape(&r.reference),
                target = escape(&r.target),
                group = escape(&r.policy_group),
                who = escape(&r.requested_by),
                start = escape(&show_time(&r.starts_at, tz)),
                end = escape(&show_time(&r.ends_at, tz)),
                purpose = escape(&r.purpose),
                reason = escape(&r.reason),
                category = r.category.as_deref().map_or(String::new(), |c| format!(" Blocked as: {}.", escape(c))),
            ));
        }
    }
    let filter = query.filter(500)?;
    let history = state
        .store()
        .unblock_requests(&viewer.account, school.id, &filter)
        .await?;
    let statuses: Vec<(String, String)> = std::iter::once((String::new(), "Any".to_owned()))
        .chain(
            ["pending", "approved", "rejected", "withdrawn", "refused"]
                .iter()
                .map(|s| ((*s).to_owned(), (*s).to_owned())),
        )
        .collect();
    let q = query.q.clone().unwrap_or_default();
    let status = query.status.clone().unwrap_or_default();
    body.push_str(&format!(
        "<h2>{}</h2><form method=\"get\" action=\"/requests\">\
         <input type=\"hidden\" name=\"school\" value=\"{}\">{}{}<button>Search</button></form>\
         <p><a href=\"/requests.csv?school={}&amp;status={}&amp;q={}\">Download as CSV</a></p>",
        if approver { "History" } else { "Your requests" },
        school.id,
        html::select("status", "Status", &statuses, &status),
        html::text_input("q", "Text", Some("in the site, reason or lesson"), &q, None),
        school.id,
        query_value(&status),
        query_value(&q),
    ));
    let mut rows = String::new();
    for r in &history {
        let withdraw = if r.requester_account == Some(viewer.account.id)
            && matches!(r.status, RequestStatus::Pending | RequestStatus::Approved)
        {
            format!(
                "<form class=\"inline\" method=\"post\" action=\"/requests/{}/withdraw\">{csrf}\
                 <button class=\"secondary\">Withdraw<span class=\"skip\"> {}</span></button></form>",
                r.id,
                escape(&r.reference)
            )
        } else {
            String::new()
        };
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} to {}</td><td>{}</td><td>{}</td><td>{}</td><td>{withdraw}</td></tr>",
            escape(&r.reference),
            escape(&r.target),
            escape(&r.policy_group),
            escape(&show_time(&r.starts_at, tz)),
            escape(&show_time(&r.ends_at, tz)),
            status_badge(r),
            escape(r.decided_by.as_deref().unwrap_or("")),
            escape(r.comment.as_deref().unwrap_or("")),
        ));
    }
    body.push_str(&format!(
        "<table><thead><tr><th scope=\"col\">Reference</th><th scope=\"col\">Site</th><th scope=\"col\">Group</th>\
         <th scope=\"col\">When</th><th scope=\"col\">Status</th><th scope=\"col\">Decided by</th>\
         <th scope=\"col\">Comment</th><th scope=\"col\">Change</th></tr></thead><tbody>{rows}</tbody></table>"
    ));
    Ok(html::page(&viewer, "Unblock requests", &body).into_response())
}

fn requests_to_csv(requests: &[UnblockRequest]) -> Result<Vec<u8>, ConsoleError> {
    let mut out = csv::Writer::from_writer(Vec::new());
    let csv_error = |e: csv::Error| ConsoleError::BadRequest(format!("cannot write the CSV: {e}"));
    out.write_record([
        "reference",
        "status",
        "site",
        "group",
        "class",
        "requested_by",
        "reason",
        "purpose",
        "starts_at",
        "ends_at",
        "decided_by",
        "decided_at",
        "comment",
        "category",
        "created_at",
    ])
    .map_err(csv_error)?;
    for r in requests {
        out.write_record([
            r.reference.as_str(),
            r.status.as_str(),
            &r.target,
            &r.policy_group,
            r.class_name.as_deref().unwrap_or(""),
            &r.requested_by,
            &r.reason,
            &r.purpose,
            &r.starts_at,
            &r.ends_at,
            r.decided_by.as_deref().unwrap_or(""),
            r.decided_at.as_deref().unwrap_or(""),
            r.comment.as_deref().unwrap_or(""),
            r.category.as_deref().unwrap_or(""),
            &r.created_at,
        ])
        .map_err(csv_error)?;
    }
    out.into_inner()
        .map_err(|e| ConsoleError::BadRequest(format!("cannot write the CSV: {e}")))
}

fn csv_response(name: &str, bytes: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        bytes,
    )
        .into_response()
}

async fn csv_export(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<ListQuery>,
) -> Result<Response, ConsoleError> {
    let school =
        pages::school_for(&state, &viewer, query.school, Permission::RequestUnblock).await?;
    let requests = state
        .store()
        .unblock_requests(&viewer.account, school.id, &query.filter(100_000)?)
        .await?;
    Ok(csv_response(
        "sheepdog-requests.csv",
        requests_to_csv(&requests)?,
    ))
}

#[derive(Debug, Default, Deserialize)]
struct DecisionForm {
    #[serde(default)]
    decision: String,
    #[serde(default)]
    comment: String,
}

/// The school of a request the viewer may see (approvers and requesters).
async fn request_for(
    state: &ConsoleState,
    viewer: &Viewer,
    id: i64,
) -> Result<UnblockRequest, ConsoleError> {
    Ok(state.store().unblock_request(&viewer.account, id).await?)
}

async fn decide(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Form(form): Form<DecisionForm>,
) -> Result<Response, ConsoleError> {
    let approve = match form.decision.as_str() {
        "approve" => true,
        "reject" => false,
        _ => {
            return Err(ConsoleError::BadRequest(
                "decision must be approve or reject".to_owned(),
            ))
        }
    };
    decide_request(&state, &viewer, id, approve, &form.comment).await?;
    let school = state
        .store()
        .unblock_request(&viewer.account, id)
        .await?
        .school_id;
    Ok(Redirect::to(&format!("/requests?school={school}")).into_response())
}

async fn decide_request(
    state: &ConsoleState,
    viewer: &Viewer,
    id: i64,
    approve: bool,
    comment: &str,
) -> Result<UnblockRequest, ConsoleError> {
    // Someone who may not decide learns nothing of the request, and the
    // attempt is on the record.
    let school = state
        .store()
        .unblock_request(&viewer.account, id)
        .await
        .ok()
        .map(|r| r.school_id);
    if !school.is_some_and(|s| viewer.can(Permission::DecideRequests, s)) {
        refuse_change(state, viewer, &format!("unblock_request:{id}")).await?;
    }
    let decided = state
        .store()
        .decide_request(&viewer.account, id, approve, Some(comment))
        .await?;
    apply(state).await;
    Ok(decided)
}

async fn withdraw(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
) -> Result<Response, ConsoleError> {
    let request = request_for(&state, &viewer, id).await?;
    state.store().withdraw_request(&viewer.account, id).await?;
    apply(&state).await;
    Ok(Redirect::to(&format!("/requests?school={}", request.school_id)).into_response())
}

// ---- over-blocking reports ----

#[derive(Debug, Default, Deserialize)]
struct SchoolQuery {
    school: Option<i64>,
}

async fn reports_page(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<SchoolQuery>,
) -> Result<Response, ConsoleError> {
    let school =
        pages::school_for(&state, &viewer, query.school, Permission::ChangeFiltering).await?;
    let tz = zone(&school);
    let groups = state.filtering().map(Filtering::groups).unwrap_or_default();
    let csrf = html::csrf_field(viewer.csrf_token());
    let reports = state.store().block_reports(500).await?;
    let (open, done): (Vec<&BlockReport>, Vec<&BlockReport>) =
        reports.iter().partition(|r| r.resolution.is_none());
    let until = local_input(Utc::now() + chrono::Duration::days(30), tz);
    let mut body = String::from(
        "<h1>Over-blocking reports</h1><p>Reports sent from the block page. Allowing a site \
         makes a time-bound exception for the group (it ends on its own); keeping it blocked \
         closes the report. Both need a reason and are on the change log.</p><h2>Open</h2>",
    );
    if open.is_empty() {
        body.push_str("<p>None.</p>");
    }
    for r in open {
        let options: Vec<(String, String)> =
            groups.iter().map(|g| (g.clone(), g.clone())).collect();
        let group_field = if options.is_empty() {
            html::text_input(
                &format!("group-{}", r.id),
                "Group",
                None,
                r.group.as_deref().unwrap_or(""),
                None,
            )
            .replace(&format!("name=\"group-{}\"", r.id), "name=\"group\"")
        } else {
            html::select(
                "group",
                "Allow for the group",
                &options,
                r.group.as_deref().unwrap_or(""),
            )
            .replace("id=\"group\"", &format!("id=\"group-{}\"", r.id))
            .replace("for=\"group\"", &format!("for=\"group-{}\"", r.id))
        };
        body.push_str(&format!(
            "<section aria-labelledby=\"rep-{id}\"><h3 id=\"rep-{id}\">{site}</h3>\
             <p>Reported {at} from {client} ({group}); blocked as {category}; reference {reference}.</p>\
             <blockquote>{comment}</blockquote>\
             <form method=\"post\" action=\"/reports/{id}\">{csrf}\
             <input type=\"hidden\" name=\"school\" value=\"{school}\">{group_field}\
             <label for=\"until-{id}\">Allowed until</label><input type=\"datetime-local\" id=\"until-{id}\" name=\"until\" value=\"{until}\">\
             <label for=\"reason-{id}\">Reason</label><input type=\"text\" id=\"reason-{id}\" name=\"reason\">\
             <button name=\"decision\" value=\"allow\">Allow for this group</button> \
             <button class=\"secondary\" name=\"decision\" value=\"keep\">Keep blocked</button></form></section>",
            id = r.id,
            site = escape(&r.site),
            at = escape(&show_time(&r.at, tz)),
            client = escape(&r.client),
            group = escape(r.group.as_deref().unwrap_or("unknown group")),
            category = escape(r.category.as_deref().unwrap_or("no category")),
            reference = escape(&r.reference),
            comment = escape(&r.comment),
            school = school.id,
        ));
    }
    let rows: String = done
        .iter()
        .map(|r| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&r.site),
                escape(r.group.as_deref().unwrap_or("")),
                escape(r.resolution.as_deref().unwrap_or("")),
                escape(r.resolved_by.as_deref().unwrap_or("")),
                escape(r.resolution_reason.as_deref().unwrap_or("")),
            )
        })
        .collect();
    body.push_str(&format!(
        "<h2>Decided</h2><table><thead><tr><th scope=\"col\">Site</th><th scope=\"col\">Group</th>\
         <th scope=\"col\">Decision</th><th scope=\"col\">By</th><th scope=\"col\">Reason</th></tr></thead>\
         <tbody>{rows}</tbody></table>"
    ));
    Ok(html::page(&viewer, "Over-blocking reports", &body).into_response())
}

#[derive(Debug, Default, Deserialize)]
struct ReportForm {
    #[serde(default)]
    school: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    group: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    reason: String,
}

async fn decide_report(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Form(form): Form<ReportForm>,
) -> Result<Response, ConsoleError> {
    let requested = form.school.trim().parse::<i64>().ok();
    let school =
        pages::school_for(&state, &viewer, requested, Permission::SeeFilteringPolicy).await?;
    if !viewer.can(Permission::ChangeFiltering, school.id) {
        return refuse_change(&state, &viewer, &format!("block_report:{id}")).await;
    }
    let report = state
        .store()
        .block_reports(100_000)
        .await?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or(ConsoleError::NotFound("that report"))?;
    let (decision, check) = match form.decision.as_str() {
        "allow" => {
            let until = parse_time(&form.until, zone(&school)).ok_or_else(|| {
                ConsoleError::BadRequest(
                    "give the end of the allowance as a date and time, such as 2026-12-19T16:00"
                        .to_owned(),
                )
            })?;
            let group = form.group.trim().to_owned();
            let check = state
                .filtering()
                .map(|f| f.check(&report.site, &group))
                .unwrap_or_default();
            (
                ReportDecision::Allow {
                    policy_group: group,
                    until,
                },
                check,
            )
        }
        "keep" => (ReportDecision::KeepBlocked, RequestCheck::default()),
        _ => {
            return Err(ConsoleError::BadRequest(
                "decision must be allow or keep".to_owned(),
            ))
        }
    };
    state
        .store()
        .decide_block_report(
            &viewer.account,
            school.id,
            id,
            &decision,
            &check,
            &form.reason,
        )
        .await?;
    apply(&state).await;
    Ok(Redirect::to(&format!("/reports?school={}", school.id)).into_response())
}

// ---- change log ----

#[derive(Debug, Default, Deserialize)]
struct ChangeQuery {
    q: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

impl ChangeQuery {
    fn filter(&self, limit: i64) -> ChangeFilter {
        ChangeFilter {
            text: self.q.clone(),
            since: self.since.clone().filter(|s| !s.trim().is_empty()),
            until: self.until.clone().filter(|s| !s.trim().is_empty()),
            limit,
        }
    }
}

async fn changes_page(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<ChangeQuery>,
) -> Result<Response, ConsoleError> {
    pages::require_everywhere(&state, &viewer, Permission::SeeFilteringChanges).await?;
    let changes = state.store().filtering_changes(&query.filter(500)).await?;
    let rows: String = changes
        .iter()
        .map(|c| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{} {}</td><td>{}</td><td><code>{}</code></td><td><code>{}</code></td></tr>",
                escape(&c.at),
                escape(&c.actor),
                escape(&c.action),
                escape(&format!("{} {}", c.entity, c.entity_id.as_deref().unwrap_or(""))),
                escape(c.reason.as_deref().unwrap_or("")),
                escape(c.before.as_deref().unwrap_or("")),
                escape(c.after.as_deref().unwrap_or("")),
            )
        })
        .collect();
    let q = query.q.clone().unwrap_or_default();
    let since = query.since.clone().unwrap_or_default();
    let until = query.until.clone().unwrap_or_default();
    let body = format!(
        "<h1>Filtering changes</h1><p>Every change to filtering: request decisions and exceptions, \
         over-blocking report decisions, group membership and devices, edits of the policy file \
         (categories, lists, groups, schedules, safe search; applied with \
         <code>sheepdog policy apply</code>, or found at start-up as the config file's), and \
         refused attempts; with who, when, the record before and after, and the reason.</p>\
         <form method=\"get\" action=\"/changes\">{}{}{}<button>Search</button></form>\
         <p><a href=\"/changes.csv?q={}&amp;since={}&amp;until={}\">Download as CSV</a></p>\
         <table><thead><tr><th scope=\"col\">When</th><th scope=\"col\">Who</th><th scope=\"col\">What</th>\
         <th scope=\"col\">Reason</th><th scope=\"col\">Before</th><th scope=\"col\">After</th></tr></thead>\
         <tbody>{rows}</tbody></table>",
        html::text_input("q", "Text", Some("in who, the reason or the record"), &q, None),
        html::text_input("since", "From", Some("such as 2026-10-01"), &since, None),
        html::text_input("until", "Before", Some("such as 2026-11-01"), &until, None),
        query_value(&q),
        query_value(&since),
        query_value(&until),
    );
    Ok(html::page(&viewer, "Filtering changes", &body).into_response())
}

async fn changes_csv(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<ChangeQuery>,
) -> Result<Response, ConsoleError> {
    pages::require_everywhere(&state, &viewer, Permission::SeeFilteringChanges).await?;
    let changes = state
        .store()
        .filtering_changes(&query.filter(100_000))
        .await?;
    Ok(csv_response(
        "sheepdog-filtering-changes.csv",
        pages::audit_to_csv(&changes)?,
    ))
}

// ---- the policy document ----

/// Markdown as HTML. Raw HTML in the text (a request's reason is typed by
/// staff) is shown as text, never passed through.
fn markdown_html(text: &str) -> String {
    use pulldown_cmark::{Event, Options, Parser};
    let parser = Parser::new_ext(text, Options::ENABLE_TABLES).map(|event| match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
        other => other,
    });
    let mut out = String::new();
    pulldown_cmark::html::push_html(&mut out, parser);
    out
}

async fn policy_page(
    State(state): State<ConsoleState>,
    viewer: Viewer,
) -> Result<Response, ConsoleError> {
    viewer
        .require(Permission::SeeFilteringPolicy, -1)
        .or_else(|_| {
            if viewer.can_somewhere(Permission::SeeFilteringPolicy) {
                Ok(())
            } else {
                Err(ConsoleError::Forbidden)
            }
        })?;
    let text = filtering(&state)?
        .markdown(state.store(), Utc::now())
        .await?;
    let body = format!(
        "<p><a href=\"/policy.pdf\" download>Download as PDF</a> or \
         <a href=\"/policy.md\" download>as Markdown</a> (the same document as \
         <code>sheepdog policy export</code>)</p><div id=\"policy\">{}</div>",
        markdown_html(&text)
    );
    Ok(html::page(&viewer, "Filtering policy", &body).into_response())
}

async fn policy_markdown(
    State(state): State<ConsoleState>,
    viewer: Viewer,
) -> Result<Response, ConsoleError> {
    if !viewer.can_somewhere(Permission::SeeFilteringPolicy) {
        return Err(ConsoleError::Forbidden);
    }
    let text = filtering(&state)?
        .markdown(state.store(), Utc::now())
        .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/markdown; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"filtering-policy.md\"",
            ),
        ],
        text,
    )
        .into_response())
}

async fn policy_pdf(
    State(state): State<ConsoleState>,
    viewer: Viewer,
) -> Result<Response, ConsoleError> {
    if !viewer.can_somewhere(Permission::SeeFilteringPolicy) {
        return Err(ConsoleError::Forbidden);
    }
    let bytes = filtering(&state)?.pdf(state.store(), Utc::now()).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/pdf"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"filtering-policy.pdf\"",
            ),
        ],
        bytes,
    )
        .into_response())
}

// ---- the JSON API ----

fn api_error(error: ConsoleError) -> Response {
    crate::api::ApiError(error).into_response()
}

fn api_result(result: Result<Response, ConsoleError>) -> Response {
    result.unwrap_or_else(api_error)
}

async fn api_list(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<ListQuery>,
) -> Response {
    api_result(
        async {
            let school =
                pages::school_for(&state, &viewer, query.school, Permission::RequestUnblock)
                    .await?;
            let requests = state
                .store()
                .unblock_requests(&viewer.account, school.id, &query.filter(500)?)
                .await?;
            Ok(Json(json!({ "requests": requests })).into_response())
        }
        .await,
    )
}

#[derive(Debug, Default, Deserialize)]
struct RequestInput {
    school: Option<i64>,
    #[serde(default)]
    site: String,
    #[serde(default)]
    group: String,
    #[serde(default)]
    class: Option<String>,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    purpose: String,
    #[serde(default)]
    starts_at: String,
    #[serde(default)]
    ends_at: String,
}

async fn api_create(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Json(input): Json<RequestInput>,
) -> Response {
    api_result(
        async {
            let school =
                pages::school_for(&state, &viewer, input.school, Permission::RequestUnblock)
                    .await?;
            let form = RequestForm {
                school: school.id.to_string(),
                site: input.site,
                group: input.group,
                class: input.class.unwrap_or_default(),
                reason: input.reason,
                purpose: input.purpose,
                start: input.starts_at,
                end: input.ends_at,
                ..RequestForm::default()
            };
            Ok(match ask(&state, &viewer, &school, &form).await? {
                Asked::Stored(request) if request.status == RequestStatus::Refused => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Json(json!({ "error": request.comment.clone(), "request": request })),
                )
                    .into_response(),
                Asked::Stored(request) => (StatusCode::CREATED, Json(request)).into_response(),
                Asked::Problems(errors) => {
                    let fields: serde_json::Map<String, serde_json::Value> = errors
                        .0
                        .into_iter()
                        .map(|(field, message)| (field.to_owned(), json!(message)))
                        .collect();
                    (
                        StatusCode::UNPROCESSABLE_ENTITY,
                        Json(json!({ "error": "the request has problems", "fields": fields })),
                    )
                        .into_response()
                }
            })
        }
        .await,
    )
}

#[derive(Debug, Default, Deserialize)]
struct DecisionInput {
    approve: bool,
    #[serde(default)]
    comment: String,
}

async fn api_decide(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Json(input): Json<DecisionInput>,
) -> Response {
    api_result(
        decide_request(&state, &viewer, id, input.approve, &input.comment)
            .await
            .map(|r| Json(r).into_response()),
    )
}

async fn api_withdraw(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
) -> Response {
    api_result(
        async {
            let request = state.store().withdraw_request(&viewer.account, id).await?;
            apply(&state).await;
            Ok(Json(request).into_response())
        }
        .await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_names_or_addresses_and_say_what_is_wrong() {
        assert_eq!(
            check_target(" https://WWW.Example.org/ ").unwrap(),
            "www.example.org"
        );
        assert_eq!(
            check_target("www.example.org/maths/").unwrap(),
            "www.example.org/maths"
        );
        for bad in ["", "exa mple.org", "<script>.org", ".example.org"] {
            assert!(check_target(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn form_times_are_school_local_or_rfc3339() {
        let tz = chrono_tz::Europe::London;
        let summer = parse_time("2026-07-01T09:00", tz).unwrap();
        assert_eq!(summer.to_rfc3339(), "2026-07-01T08:00:00+00:00");
        let winter = parse_time("2026-12-01T09:00", tz).unwrap();
        assert_eq!(winter.to_rfc3339(), "2026-12-01T09:00:00+00:00");
        assert_eq!(parse_time("2026-12-01T09:00:00Z", tz).unwrap(), winter);
        assert!(parse_time("tomorrow", tz).is_none());
    }

    #[test]
    fn markdown_keeps_raw_html_as_text() {
        let out = markdown_html("# Policy\n\n| a | b |\n|---|---|\n| <script>x</script> | 1 |\n");
        assert!(out.contains("<h1>Policy</h1>"));
        assert!(out.contains("<table>"));
        assert!(!out.contains("<script>"));
        assert!(out.contains("&lt;script&gt;"));
    }
}
