//! Alert triage for the safeguarding team (M3, issue 8): the queue of
//! monitoring alerts, each alert with what matched (every view audited),
//! and the moves new → acknowledged → dismissed (with a reason) or
//! escalated to an incident, one at a time or many at once. Dismissals are
//! counted per matched term, so a school sees which keywords cost it time
//! for nothing.
//!
//! The alert e-mails link to `/alerts/{id}`; the matched text is shown only
//! to those with [`Permission::TriageAlerts`].

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use sheepdog_store::incidents::{About, Involved, InvolvedRole, NewIncident, Receipt, Urgency};
use sheepdog_store::{Alert, AlertFilter, AlertStatus};

use crate::api::ApiResult;
use crate::auth::Viewer;
use crate::html::{self, escape, query_value};
use crate::pages::school_for;
use crate::roles::Permission;
use crate::{ConsoleError, ConsoleState};

/// How many alerts the queue shows at most.
const QUEUE_LIMIT: i64 = 500;

pub fn routes() -> Router<ConsoleState> {
    Router::new()
        .route("/alerts", get(queue))
        .route("/alerts/bulk", post(bulk))
        .route("/alerts/figures", get(figures))
        .route("/alerts/{id}", get(detail))
        .route("/alerts/{id}/triage", post(triage))
        .route("/alerts/{id}/escalate", post(escalate))
        .route("/api/v1/alerts", get(api_queue))
        .route("/api/v1/alerts/bulk", post(api_bulk))
        .route("/api/v1/alerts/figures", get(api_figures))
        .route("/api/v1/alerts/{id}", get(api_detail))
        .route("/api/v1/alerts/{id}/status", post(api_status))
        .route("/api/v1/alerts/{id}/escalate", post(api_escalate))
}

#[derive(Debug, Default, Deserialize)]
pub struct QueueQuery {
    pub school: Option<i64>,
    /// Lowest grade shown, 1 to 5.
    #[serde(default)]
    pub grade: String,
    /// `open` (new and acknowledged, the default), `all`, or one status.
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub category: String,
}

/// The alerts a queue query asks for, in a school the viewer triages.
pub async fn queue_alerts(
    state: &ConsoleState,
    viewer: &Viewer,
    query: &QueueQuery,
) -> Result<(i64, Vec<Alert>), ConsoleError> {
    let school = school_for(state, viewer, query.school, Permission::TriageAlerts).await?;
    let min_grade = match query.grade.trim() {
        "" => 1,
        text => text
            .parse::<u8>()
            .ok()
            .filter(|g| (1..=5).contains(g))
            .ok_or_else(|| {
                ConsoleError::BadRequest(format!("grade `{text}` is not a number from 1 to 5"))
            })?,
    };
    let status = query.status.trim();
    let single = match status {
        "" | "open" | "all" => None,
        other => Some(
            other
                .parse::<AlertStatus>()
                .map_err(|e| ConsoleError::BadRequest(e.to_string()))?,
        ),
    };
    let filter = AlertFilter {
        status: single,
        min_grade,
        person_id: None,
        limit: QUEUE_LIMIT,
    };
    let category = query.category.trim();
    let alerts = state
        .store()
        .alerts(school.id, &filter)
        .await?
        .into_iter()
        .filter(|a| {
            !matches!(status, "" | "open")
                || matches!(a.status, AlertStatus::New | AlertStatus::Acknowledged)
        })
        .filter(|a| category.is_empty() || a.category == category)
        .collect();
    Ok((school.id, alerts))
}

async fn queue(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<QueueQuery>,
) -> Result<Response, ConsoleError> {
    let (school, alerts) = queue_alerts(&state, &viewer, &query).await?;
    let statuses: Vec<(String, String)> = [
        ("open", "Open (new and acknowledged)"),
        ("all", "All"),
        ("new", "New"),
        ("acknowledged", "Acknowledged"),
        ("dismissed", "Dismissed"),
        ("escalated", "Escalated"),
    ]
    .iter()
    .map(|(v, t)| (v.to_string(), t.to_string()))
    .collect();
    let grades: Vec<(String, String)> = std::iter::once(("".to_string(), "Any".to_string()))
        .chain((2..=5).map(|g| (g.to_string(), format!("{g} and above"))))
        .collect();
    let rows: String = alerts
        .iter()
        .map(|a| {
            format!(
                "<tr><td><input type=\"checkbox\" name=\"id\" value=\"{id}\" id=\"pick-{id}\" \
                 aria-label=\"Select alert {id}\"></td><td><a href=\"/alerts/{id}\">Alert {id}</a></td>\
                 <td>{grade}</td><td>{category}</td><td>{status}</td><td>{subject}</td><td>{n}</td>\
                 <td>{last}</td></tr>",
                id = a.id,
                grade = a.grade,
                category = escape(&a.category),
                status = a.status,
                subject = escape(a.device_name.as_deref().unwrap_or(&a.subject)),
                n = a.occurrences,
                last = escape(&crate::incidents::when(&a.last_at)),
            )
        })
        .collect();
    let table = if alerts.is_empty() {
        "<p>No alerts match.</p>".to_string()
    } else {
        format!(
            "<form method=\"post\" action=\"/alerts/bulk\" class=\"bulk\">{csrf}\
             <table><caption>{n} alerts, worst first</caption><thead><tr><th scope=\"col\">Select</th>\
             <th scope=\"col\">Alert</th><th scope=\"col\">Grade</th><th scope=\"col\">Category</th>\
             <th scope=\"col\">Status</th><th scope=\"col\">Subject</th><th scope=\"col\">Occurrences</th>\
             <th scope=\"col\">Last (UTC)</th></tr></thead><tbody>{rows}</tbody></table>\
             <fieldset><legend>With the selected alerts</legend>\
             <label for=\"bulk-action\">Action</label><select id=\"bulk-action\" name=\"action\">\
             <option value=\"acknowledge\">Acknowledge</option><option value=\"dismiss\">Dismiss</option></select>\
             <label for=\"bulk-reason\">Reason<span class=\"hint\">Needed to dismiss; counted against each matched keyword</span></label>\
             <input type=\"text\" id=\"bulk-reason\" name=\"reason\">\
             <div><button>Apply to the selected alerts</button></div></fieldset></form>",
            csrf = html::csrf_field(viewer.csrf_token()),
            n = alerts.len(),
        )
    };
    let body = format!(
        "<h1>Alerts</h1><p><a href=\"/alerts/figures?school={school}\">False-positive figures per keyword</a></p>\
         <form method=\"get\" action=\"/alerts\" class=\"search\"><input type=\"hidden\" name=\"school\" value=\"{school}\">\
         {status}{grade}{category}<div><button>Show</button></div></form>{table}",
        status = html::select("status", "Status", &statuses, query.status.trim()),
        grade = html::select("grade", "Grade", &grades, query.grade.trim()),
        category = html::text_input(
            "category",
            "Category",
            Some("For example self-harm; empty for every category"),
            &query.category,
            None
        ),
    );
    Ok(html::page(&viewer, "Alerts", &body).into_response())
}

/// One alert for someone who triages its school, the view audited.
pub async fn open_alert(
    state: &ConsoleState,
    viewer: &Viewer,
    id: i64,
) -> Result<Alert, ConsoleError> {
    let alert = match state.store().alert(id).await {
        Ok(alert) => alert,
        Err(sheepdog_store::StoreError::NotFound { .. }) => {
            return Err(ConsoleError::NotFound("that alert"))
        }
        Err(e) => return Err(e.into()),
    };
    viewer.require(Permission::TriageAlerts, alert.school_id)?;
    state
        .store()
        .audit_view(&viewer.actor(), "alert", &id.to_string())
        .await?;
    Ok(alert)
}

fn alert_page(viewer: &Viewer, alert: &Alert, problem: Option<&str>) -> Response {
    let csrf = html::csrf_field(viewer.csrf_token());
    let problem = problem.map_or(String::new(), |p| {
        format!(
            "<div class=\"summary\" role=\"alert\"><h2>There is a problem</h2><p>{}</p></div>",
            escape(p)
        )
    });
    let status = match (&alert.status_reason, &alert.status_by) {
        (Some(reason), Some(by)) => format!(
            "{} by {} at {}: {}",
            alert.status,
            escape(by),
            escape(alert.status_at.as_deref().unwrap_or("")),
            escape(reason)
        ),
        (None, Some(by)) => format!("{} by {}", alert.status, escape(by)),
        _ => alert.status.to_string(),
    };
    let person = alert.person_id.map_or("not known".to_string(), |p| {
        format!(
            "<a href=\"/people/{p}\">person {p}</a> · <a href=\"/people/{p}/chronology\">chronology</a>"
        )
    });
    let mut actions = String::new();
    if alert.status == AlertStatus::New {
        actions.push_str(&format!(
            "<form method=\"post\" action=\"/alerts/{id}/triage\" class=\"acknowledge\">{csrf}\
             <input type=\"hidden\" name=\"action\" value=\"acknowledge\">\
             <button>Acknowledge: I am looking at it</button></form>",
            id = alert.id
        ));
    }
    if alert.status != AlertStatus::Dismissed {
        actions.push_str(&format!(
            "<form method=\"post\" action=\"/alerts/{id}/triage\" class=\"dismiss\">{csrf}\
             <input type=\"hidden\" name=\"action\" value=\"dismiss\">\
             <h2>Dismiss</h2><label for=\"reason\">Why is this not a concern?\
             <span class=\"hint\">Required; counted in the false-positive figures for “{term}”</span></label>\
             <input type=\"text\" id=\"reason\" name=\"reason\" required>\
             <div><button class=\"secondary\">Dismiss the alert</button></div></form>",
            id = alert.id,
            term = escape(&alert.matched_text),
        ));
    }
    if alert.status != AlertStatus::Escalated {
        actions.push_str(&format!(
            "<form method=\"post\" action=\"/alerts/{id}/escalate\" class=\"escalate\">{csrf}\
             <h2>Escalate to an incident</h2>\
             {summary}\
             <label for=\"description\">What is known so far</label>\
             <textarea id=\"description\" name=\"description\" rows=\"4\" cols=\"60\"></textarea>\
             {urgency}<div><button>Open an incident from this alert</button></div></form>",
            id = alert.id,
            summary = html::text_input(
                "summary",
                "Summary",
                None,
                &format!("Monitoring alert {}: {}", alert.id, alert.category),
                None
            ),
            urgency = urgency_select("today"),
        ));
    }
    let context = serde_json::to_string_pretty(&alert.context).unwrap_or_else(|_| "{}".to_string());
    let body = format!(
        "{hide}<h1>Alert {id}</h1>{problem}<dl>\
         <dt>Grade</dt><dd>{grade} of 5</dd><dt>Category</dt><dd>{category}</dd>\
         <dt>Status</dt><dd id=\"alert-status\">{status}</dd>\
         <dt>Matched</dt><dd class=\"secret\" id=\"matched\">{matched}</dd>\
         <dt>Person</dt><dd>{person}</dd><dt>Device</dt><dd>{device}</dd><dt>Address</dt><dd>{address}</dd>\
         <dt>Source</dt><dd>{source}</dd><dt>First and last seen (UTC)</dt><dd>{first} – {last}</dd>\
         <dt>Occurrences</dt><dd>{n}</dd></dl>{actions}\
         <details><summary>Context as recorded at the time</summary><pre class=\"secret\">{context}</pre></details>\
         <p><a href=\"/alerts?school={school}\">Back to the queue</a></p>",
        hide = crate::incidents::hide_screen(),
        id = alert.id,
        grade = alert.grade,
        category = escape(&alert.category),
        matched = escape(&alert.matched_text),
        device = escape(alert.device_name.as_deref().unwrap_or("")),
        address = escape(alert.address.as_deref().unwrap_or("")),
        source = escape(&alert.source),
        first = escape(&crate::incidents::when(&alert.first_at)),
        last = escape(&crate::incidents::when(&alert.last_at)),
        n = alert.occurrences,
        context = escape(&context),
        school = alert.school_id,
    );
    html::page(viewer, &format!("Alert {}", alert.id), &body).into_response()
}

pub fn urgency_select(chosen: &str) -> String {
    let options: Vec<(String, String)> = [
        ("routine", "Routine"),
        ("today", "Today, before the end of the school day"),
        ("immediate", "Immediate: a child may be at risk now"),
    ]
    .iter()
    .map(|(v, t)| (v.to_string(), t.to_string()))
    .collect();
    html::select("urgency", "Urgency", &options, chosen)
}

async fn detail(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
) -> Result<Response, ConsoleError> {
    let alert = open_alert(&state, &viewer, id).await?;
    Ok(alert_page(&viewer, &alert, None))
}

/// Form fields as pairs, keeping repeated names (the queue's checkboxes).
pub fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

pub fn field<'a>(pairs: &'a [(String, String)], name: &str) -> &'a str {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

fn triage_status(action: &str) -> Result<AlertStatus, ConsoleError> {
    match action {
        "acknowledge" | "acknowledged" => Ok(AlertStatus::Acknowledged),
        "dismiss" | "dismissed" => Ok(AlertStatus::Dismissed),
        "escalate" | "escalated" => Err(ConsoleError::BadRequest(
            "an alert is escalated by opening an incident from it (POST .../escalate)".to_string(),
        )),
        other => Err(ConsoleError::BadRequest(format!(
            "`{other}` is not a triage action; use acknowledge or dismiss"
        ))),
    }
}

/// Acknowledges or dismisses one alert in a school the viewer triages.
pub async fn triage_one(
    state: &ConsoleState,
    viewer: &Viewer,
    id: i64,
    status: AlertStatus,
    reason: Option<&str>,
) -> Result<Alert, ConsoleError> {
    let alert = match state.store().alert(id).await {
        Ok(alert) => alert,
        Err(sheepdog_store::StoreError::NotFound { .. }) => {
            return Err(ConsoleError::NotFound("that alert"))
        }
        Err(e) => return Err(e.into()),
    };
    viewer.require(Permission::TriageAlerts, alert.school_id)?;
    Ok(state
        .store()
        .set_alert_status(&viewer.actor(), id, status, reason)
        .await?)
}

async fn triage(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let pairs = form_pairs(&body);
    let status = triage_status(field(&pairs, "action"))?;
    match triage_one(&state, &viewer, id, status, Some(field(&pairs, "reason"))).await {
        Ok(_) => Ok(Redirect::to(&format!("/alerts/{id}")).into_response()),
        Err(ConsoleError::Store(e @ sheepdog_store::StoreError::Invalid { .. })) => {
            let alert = open_alert(&state, &viewer, id).await?;
            let mut page = alert_page(&viewer, &alert, Some(&e.to_string()));
            *page.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
            Ok(page)
        }
        Err(e) => Err(e),
    }
}

/// What a bulk action did to each alert.
#[derive(Debug, serde::Serialize)]
pub struct BulkOutcome {
    pub id: i64,
    pub done: bool,
    pub problem: Option<String>,
}

/// Applies one triage move to many alerts with one reason. A dismissal
/// without a reason is refused before anything changes.
pub async fn triage_many(
    state: &ConsoleState,
    viewer: &Viewer,
    ids: &[i64],
    status: AlertStatus,
    reason: &str,
) -> Result<Vec<BulkOutcome>, ConsoleError> {
    if ids.is_empty() {
        return Err(ConsoleError::BadRequest(
            "select at least one alert".to_string(),
        ));
    }
    if status == AlertStatus::Dismissed && reason.trim().is_empty() {
        return Err(ConsoleError::BadRequest(
            "give a reason for dismissing the selected alerts".to_string(),
        ));
    }
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let result = triage_one(state, viewer, *id, status, Some(reason)).await;
        out.push(BulkOutcome {
            id: *id,
            done: result.is_ok(),
            problem: result.err().map(|e| e.public_message()),
        });
    }
    Ok(out)
}

async fn bulk(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let pairs = form_pairs(&body);
    let status = triage_status(field(&pairs, "action"))?;
    let ids = pairs
        .iter()
        .filter(|(k, _)| k == "id")
        .map(|(_, v)| {
            v.parse::<i64>()
                .map_err(|_| ConsoleError::BadRequest(format!("`{v}` is not an alert id")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let outcomes = triage_many(&state, &viewer, &ids, status, field(&pairs, "reason")).await?;
    let done = outcomes.iter().filter(|o| o.done).count();
    let problems: String = outcomes
        .iter()
        .filter_map(|o| {
            o.problem.as_ref().map(|p| {
                format!(
                    "<li><a href=\"/alerts/{id}\">Alert {id}</a>: {}</li>",
                    escape(p),
                    id = o.id
                )
            })
        })
        .collect();
    let problems = if problems.is_empty() {
        String::new()
    } else {
        format!("<div class=\"warning\"><p>Not changed:</p><ul>{problems}</ul></div>")
    };
    let body = format!(
        "<h1>Alerts {status}</h1><p class=\"notice\" role=\"status\">{done} of {n} alerts {status}.</p>\
         {problems}<p><a href=\"/alerts\">Back to the queue</a></p>",
        n = outcomes.len(),
    );
    Ok(html::page(&viewer, "Alerts changed", &body).into_response())
}

/// What escalating asks for; the rest comes from the alert.
#[derive(Debug, Default, Deserialize)]
pub struct EscalateForm {
    #[serde(default)]
    pub summary: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub urgency: String,
}

/// Opens an incident from an alert, which becomes escalated with it.
pub async fn escalate_one(
    state: &ConsoleState,
    viewer: &Viewer,
    id: i64,
    form: &EscalateForm,
) -> Result<Receipt, ConsoleError> {
    let alert = open_alert(state, viewer, id).await?;
    if alert.status == AlertStatus::Escalated {
        return Err(ConsoleError::BadRequest(format!(
            "alert {id} is already escalated: {}",
            alert.status_reason.as_deref().unwrap_or("")
        )));
    }
    let urgency = match form.urgency.trim() {
        "" => Urgency::Today,
        text => text
            .parse::<Urgency>()
            .map_err(|e| ConsoleError::BadRequest(e.to_string()))?,
    };
    let summary = match form.summary.trim() {
        "" => format!("Monitoring alert {}: {}", alert.id, alert.category),
        text => text.to_string(),
    };
    let recorded = format!(
        "Escalated from monitoring alert {}: {}, grade {}, matched “{}” {} time(s) on {} ({}).",
        alert.id,
        alert.category,
        alert.grade,
        alert.matched_text,
        alert.occurrences,
        alert.device_name.as_deref().unwrap_or(&alert.subject),
        alert.source,
    );
    let description = match form.description.trim() {
        "" => recorded,
        text => format!("{text}\n\n{recorded}"),
    };
    let occurred_at = DateTime::parse_from_rfc3339(&alert.first_at)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|_| Utc::now());
    let new = NewIncident {
        category: alert.category.clone(),
        summary,
        description,
        occurred_at,
        device: alert.device_name.clone(),
        location: None,
        urgency,
        about: if alert.person_id.is_some() {
            About::Pupil
        } else {
            About::Other
        },
        people: alert
            .person_id
            .map(|p| Involved {
                person_id: Some(p),
                description: None,
                role: InvolvedRole::Involved,
            })
            .into_iter()
            .collect(),
        alert_id: Some(alert.id),
        event_id: None,
    };
    Ok(state
        .store()
        .log_concern(
            &viewer.account,
            alert.school_id,
            &new,
            &crate::incidents::retention(),
        )
        .await?)
}

async fn escalate(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
    axum::Form(form): axum::Form<EscalateForm>,
) -> Result<Response, ConsoleError> {
    let receipt = escalate_one(&state, &viewer, id, &form).await?;
    Ok(Redirect::to(&format!("/incidents/{}", receipt.id)).into_response())
}

async fn figures(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<QueueQuery>,
) -> Result<Response, ConsoleError> {
    let school = school_for(&state, &viewer, query.school, Permission::TriageAlerts).await?;
    let figures = state.store().keyword_figures(school.id).await?;
    let rows: String = figures
        .iter()
        .map(|f| {
            format!(
                "<tr><td>{}</td><td class=\"secret\"><a href=\"/alerts?school={}&amp;status=all&amp;category={}\">{}</a></td>\
                 <td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&f.category),
                school.id,
                query_value(&f.category),
                escape(&f.term),
                f.alerts,
                f.dismissed,
                f.escalated,
                f.dismissal_percent()
                    .map_or("—".to_string(), |p| format!("{p}%")),
            )
        })
        .collect();
    let body = format!(
        "<h1>False-positive figures per keyword</h1><p>Every alert counted under the term that \
         matched: how many the safeguarding team dismissed as not a concern, and how many became \
         incidents. A term dismissed again and again is a candidate to reword or to move to a lower grade.</p>\
         <table><caption>{n} matched terms, most dismissed first</caption><thead><tr>\
         <th scope=\"col\">Category</th><th scope=\"col\">Matched term</th><th scope=\"col\">Alerts</th>\
         <th scope=\"col\">Dismissed</th><th scope=\"col\">Escalated</th>\
         <th scope=\"col\">Dismissed of those decided</th></tr></thead><tbody>{rows}</tbody></table>",
        n = figures.len(),
    );
    Ok(html::page(&viewer, "False-positive figures", &body).into_response())
}

// The JSON API: the same functions as the pages.

fn api<T: serde::Serialize>(value: &T) -> Response {
    Json(value).into_response()
}

async fn api_queue(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<QueueQuery>,
) -> ApiResult {
    let (_, alerts) = queue_alerts(&state, &viewer, &query).await?;
    Ok(api(&json!({ "alerts": alerts })))
}

async fn api_detail(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
) -> ApiResult {
    Ok(api(&open_alert(&state, &viewer, id).await?))
}

#[derive(Debug, Deserialize)]
struct StatusBody {
    status: String,
    #[serde(default)]
    reason: String,
}

async fn api_status(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Json(body): Json<StatusBody>,
) -> ApiResult {
    let status = triage_status(&body.status)?;
    Ok(api(&triage_one(
        &state,
        &viewer,
        id,
        status,
        Some(&body.reason),
    )
    .await?))
}

#[derive(Debug, Deserialize)]
struct BulkBody {
    ids: Vec<i64>,
    status: String,
    #[serde(default)]
    reason: String,
}

async fn api_bulk(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Json(body): Json<BulkBody>,
) -> ApiResult {
    let status = triage_status(&body.status)?;
    let outcomes = triage_many(&state, &viewer, &body.ids, status, &body.reason).await?;
    Ok(api(&json!({ "outcomes": outcomes })))
}

async fn api_escalate(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Json(body): Json<EscalateForm>,
) -> ApiResult {
    let receipt = escalate_one(&state, &viewer, id, &body).await?;
    Ok((axum::http::StatusCode::CREATED, Json(receipt)).into_response())
}

async fn api_figures(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<QueueQuery>,
) -> ApiResult {
    let school = school_for(&state, &viewer, query.school, Permission::TriageAlerts).await?;
    Ok(api(
        &json!({ "figures": state.store().keyword_figures(school.id).await? }),
    ))
}
