//! `POST /api/v1/monitoring/ingest`: text from other sources (device
//! agents, chat exports) read by monitoring and turned into alerts.
//!
//! A call carries up to [`MAX_ITEMS`] items in a body of at most
//! [`MAX_BODY`] bytes, each saying where it came from, who (a person's id,
//! a device's name or a client address), when, and the text. The whole
//! call is checked first and refused with every problem named by item and
//! field, so a source never has to guess which of its items were taken.
//! Accepted items are scanned with the libraries the live monitor reads
//! decision events with (the shipped ones and the school's own, from
//! `[monitoring] libraries`; the shipped ones alone when the console runs
//! without them) and graded on
//! their own (repetition shows in the alert's occurrences, which merge per
//! person and category as live alerts do); concerns at grade 2 or more are
//! recorded as alerts, on behalf of the token's account.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sheepdog_monitor::event::MAX_PAGE_TEXT;
use sheepdog_monitor::live::age_group;
use sheepdog_monitor::{concerns_of, Event, Matcher};
use sheepdog_store::{AlertOutcome, AlertPolicy, NewAlert};

use crate::auth::Viewer;
use crate::pages;
use crate::roles::Permission;
use crate::{ConsoleError, ConsoleState};

/// Items in one call at most.
pub const MAX_ITEMS: usize = 500;

/// Bytes in one call's body at most.
pub const MAX_BODY: usize = 1 << 20;

/// Concerns below this grade are not recorded.
const MIN_GRADE: u8 = 2;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct IngestQuery {
    school: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    items: Vec<Item>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Item {
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    person: Option<i64>,
    #[serde(default)]
    device: Option<String>,
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    text: Option<String>,
}

/// An item that passed the checks.
struct Checked {
    source: String,
    person: Option<(i64, Option<sheepdog_monitor::AgeGroup>)>,
    device: Option<String>,
    address: Option<String>,
    time: DateTime<Utc>,
    text: String,
}

/// How long a call waits for the live monitor to compile the school's
/// libraries after a start (a fraction of a second, normally).
const LIBRARIES_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The libraries ingested text is read with (see the module's comment).
async fn matcher(state: &ConsoleState) -> Result<Arc<Matcher>, ConsoleError> {
    if let Some(libraries) = state.monitoring() {
        let mut libraries = libraries.clone();
        let ready = tokio::time::timeout(LIBRARIES_WAIT, libraries.wait_for(Option::is_some)).await;
        return ready
            .ok()
            .and_then(Result::ok)
            .and_then(|compiled| compiled.as_ref().map(Arc::clone))
            .ok_or(ConsoleError::Starting(
                "monitoring's keyword libraries are not loaded yet; try again shortly",
            ));
    }
    static MATCHER: OnceLock<Result<Arc<Matcher>, String>> = OnceLock::new();
    MATCHER
        .get_or_init(|| Matcher::shipped().map(Arc::new).map_err(|e| e.to_string()))
        .clone()
        .map_err(ConsoleError::Settings)
}

fn refuse(status: StatusCode, error: &str, items: Vec<Value>) -> Response {
    let mut body = json!({ "error": error });
    if !items.is_empty() {
        body["items"] = Value::Array(items);
    }
    (status, Json(body)).into_response()
}

pub(crate) async fn ingest(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<IngestQuery>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let school =
        pages::school_for(&state, &viewer, query.school, Permission::SubmitMonitoring).await?;
    if body.len() > MAX_BODY {
        return Ok(refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the body is over {MAX_BODY} bytes; send the items in smaller calls"),
            Vec::new(),
        ));
    }
    let batch: Batch = match serde_json::from_slice(&body) {
        Ok(batch) => batch,
        Err(e) => {
            return Ok(refuse(
                StatusCode::BAD_REQUEST,
                &format!("the body is not a batch of items ({{\"items\": [...]}}): {e}"),
                Vec::new(),
            ))
        }
    };
    if batch.items.is_empty() || batch.items.len() > MAX_ITEMS {
        return Ok(refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!(
                "a call carries 1 to {MAX_ITEMS} items; this one has {}",
                batch.items.len()
            ),
            Vec::new(),
        ));
    }
    let mut checked = Vec::with_capacity(batch.items.len());
    let mut problems = Vec::new();
    for (index, item) in batch.items.into_iter().enumerate() {
        match check(&state, school.id, item).await? {
            Ok(item) => checked.push(item),
            Err(fields) => problems.push(json!({ "index": index, "fields": fields })),
        }
    }
    if !problems.is_empty() {
        return Ok(refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "some items have problems; nothing was taken",
            problems,
        ));
    }
    let matcher = matcher(&state).await?;
    let actor = viewer.actor();
    let policy = AlertPolicy::default();
    let mut alerts = Vec::new();
    let mut concerns_total = 0;
    for item in &checked {
        let event = Event {
            time: item.time,
            source: Some(item.source.clone()),
            person: item.person.map(|(id, _)| format!("person:{id}")),
            device: item.device.clone(),
            address: item.address.clone(),
            age_group: item.person.and_then(|(_, age)| age),
            text: Some(item.text.clone()),
            ..Event::default()
        };
        let subject = event.subject().unwrap_or_default().to_string();
        for concern in concerns_of(&matcher, &event, false) {
            if concern.grade < MIN_GRADE {
                continue;
            }
            concerns_total += 1;
            let hits = concern.hits_record();
            let alert = NewAlert {
                person_id: item.person.map(|(id, _)| id),
                subject: subject.clone(),
                device_id: None,
                device_name: item.device.clone(),
                address: item.address.clone(),
                category: concern.category.as_str().to_string(),
                grade: concern.grade,
                matched_text: concern
                    .hits
                    .first()
                    .map(|h| h.matched.clone())
                    .unwrap_or_default(),
                source: item.source.clone(),
                at: item.time,
                event_ids: Vec::new(),
                context: json!({
                    "age_group": event.age_group,
                    "factors": concern.factors,
                    "hits": hits,
                    "ingested_by": viewer.account.username,
                }),
            };
            let outcome = state
                .store()
                .record_alert(&actor, school.id, &alert, &policy)
                .await?;
            let (kind, stored) = match &outcome {
                AlertOutcome::Created { alert, .. } => ("created", alert),
                AlertOutcome::Merged { alert, .. } => ("merged", alert),
                AlertOutcome::Duplicate { alert } => ("duplicate", alert),
            };
            alerts.push(json!({
                "id": stored.id,
                "category": stored.category,
                "grade": stored.grade,
                "outcome": kind,
                "notify": outcome.notify(),
            }));
        }
    }
    // The reply names categories and grades, never the text: it goes back
    // to a machine that already has it.
    Ok(Json(json!({
        "school_id": school.id,
        "accepted": checked.len(),
        "concerns": concerns_total,
        "alerts": alerts,
    }))
    .into_response())
}

/// Checks one item; the problems are by field name.
async fn check(
    state: &ConsoleState,
    school_id: i64,
    item: Item,
) -> Result<Result<Checked, Map<String, Value>>, ConsoleError> {
    let mut fields = Map::new();
    let source = item
        .source
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    if source.is_empty()
        || source.len() > 64
        || !source
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        fields.insert(
            "source".into(),
            json!("name the source in 1-64 letters, digits, - or _ (such as \"agent\" or \"chat-export\")"),
        );
    }
    let mut person = None;
    if let Some(id) = item.person {
        match state.store().person(id).await? {
            Some(found) if found.school_id == school_id => {
                person = Some((
                    id,
                    age_group(found.details.kind, found.details.year_group.as_deref()),
                ));
            }
            _ => {
                fields.insert(
                    "person".into(),
                    json!(format!("no person {id} in this school")),
                );
            }
        }
    }
    let device = item
        .device
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty());
    if device.as_ref().is_some_and(|d| d.len() > 128) {
        fields.insert(
            "device".into(),
            json!("a device name is at most 128 characters"),
        );
    }
    let address = item
        .address
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty());
    if let Some(address) = &address {
        if address.parse::<IpAddr>().is_err() {
            fields.insert(
                "address".into(),
                json!(format!(
                    "`{address}` is not an IP address such as 10.0.4.17"
                )),
            );
        }
    }
    if item.person.is_none() && device.is_none() && address.is_none() {
        fields.insert(
            "person".into(),
            json!("say who: a person id, a device name or an address"),
        );
    }
    let time = match item.time.as_deref().map(DateTime::parse_from_rfc3339) {
        Some(Ok(time)) => Some(time.with_timezone(&Utc)),
        Some(Err(_)) => {
            fields.insert(
                "time".into(),
                json!("use RFC 3339 with a zone, such as 2026-11-23T10:15:00Z"),
            );
            None
        }
        None => {
            fields.insert("time".into(), json!("required"));
            None
        }
    };
    let text = item.text.unwrap_or_default();
    if text.trim().is_empty() {
        fields.insert("text".into(), json!("required"));
    } else if text.len() > MAX_PAGE_TEXT {
        fields.insert(
            "text".into(),
            json!(format!(
                "at most {MAX_PAGE_TEXT} bytes per item; split longer text"
            )),
        );
    }
    match (fields.is_empty(), time) {
        (true, Some(time)) => Ok(Ok(Checked {
            source,
            person,
            device,
            address,
            time,
            text,
        })),
        _ => Ok(Err(fields)),
    }
}
