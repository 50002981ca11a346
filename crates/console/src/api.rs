//! The JSON API under `/api/v1`: what the pages do, for scripts and other
//! systems. Calls authenticate with `Authorization: Bearer TOKEN` (a token
//! made on the account page) and are held to the same permissions as the
//! pages; `/api/v1/status` and `/api/v1/openapi.json` are public.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::auth::Viewer;
use crate::logs::{self, LogQuery};
use crate::pages::{self, AuditQuery, DeviceForm};
use crate::roles::Permission;
use crate::{ConsoleError, ConsoleState};

/// The OpenAPI description, written by hand beside the routes it describes.
const OPENAPI: &str = include_str!("openapi.json");

pub fn routes() -> Router<ConsoleState> {
    Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/me", get(me))
        .route("/api/v1/people", get(people))
        .route("/api/v1/people/{id}", get(person))
        .route("/api/v1/groups", get(groups))
        .route("/api/v1/devices", get(devices).post(save_device))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/events", get(events))
        .route("/api/v1/dashboard", get(dashboard))
        .route("/api/v1/roster", axum::routing::post(roster))
        .route(
            "/api/v1/monitoring/ingest",
            axum::routing::post(crate::ingest::ingest),
        )
}

/// An API failure as JSON.
#[derive(Debug)]
pub(crate) struct ApiError(pub(crate) ConsoleError);

impl From<ConsoleError> for ApiError {
    fn from(error: ConsoleError) -> Self {
        Self(error)
    }
}

impl From<sheepdog_store::StoreError> for ApiError {
    fn from(error: sheepdog_store::StoreError) -> Self {
        Self(error.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.0.status(),
            Json(json!({ "error": self.0.public_message() })),
        )
            .into_response()
    }
}

pub(crate) type ApiResult = Result<Response, ApiError>;

async fn status(State(state): State<ConsoleState>) -> Response {
    match state.store().census().await {
        Ok(census) => Json(json!({
            "school": pages::school_label(&state).await,
            "version": env!("CARGO_PKG_VERSION"),
            "records": census,
        }))
        .into_response(),
        Err(error) => {
            tracing::error!(%error, "status: database unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response()
        }
    }
}

async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
        .into_response()
}

async fn me(viewer: Viewer) -> Response {
    let permissions: Vec<Permission> = Permission::ALL
        .iter()
        .copied()
        .filter(|p| viewer.can_somewhere(*p))
        .collect();
    Json(json!({
        "id": viewer.account.id,
        "username": viewer.account.username,
        "display_name": viewer.account.display_name,
        "roles": viewer.account.roles,
        "permissions": permissions,
    }))
    .into_response()
}

#[derive(Debug, Default, Deserialize)]
struct PeopleQuery {
    school: Option<i64>,
    kind: Option<String>,
    year: Option<String>,
    class: Option<String>,
}

async fn people(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<PeopleQuery>,
) -> ApiResult {
    let school = pages::school_for(&state, &viewer, query.school, Permission::SeePeople).await?;
    let people = pages::list_people(
        &state,
        school.id,
        query.kind.as_deref(),
        query.year.as_deref(),
        query.class.as_deref(),
    )
    .await?;
    // Lists carry names, kind, year and class only, as the page does; the
    // rest of a record is for /people/{id}, which is audited.
    let rows: Vec<_> = people
        .iter()
        .map(|p| {
            json!({
                "id": p.id,
                "kind": p.details.kind,
                "given_name": p.details.given_name,
                "family_name": p.details.family_name,
                "year_group": p.details.year_group,
                "class_name": p.details.class_name,
            })
        })
        .collect();
    Ok(Json(json!({ "school_id": school.id, "people": rows })).into_response())
}

async fn person(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
) -> ApiResult {
    let person = pages::person_record(&state, &viewer, id).await?;
    let guardians = if person.details.kind == sheepdog_store::PersonKind::Pupil {
        state.store().guardianships(person.id).await?
    } else {
        Vec::new()
    };
    Ok(Json(json!({ "person": person, "guardians": guardians })).into_response())
}

#[derive(Debug, Default, Deserialize)]
struct SchoolQuery {
    school: Option<i64>,
}

async fn groups(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<SchoolQuery>,
) -> ApiResult {
    let school = pages::school_for(&state, &viewer, query.school, Permission::SeeGroups).await?;
    Ok(
        Json(json!({ "school_id": school.id, "groups": state.store().groups(school.id).await? }))
            .into_response(),
    )
}

async fn devices(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<SchoolQuery>,
) -> ApiResult {
    let school = pages::school_for(&state, &viewer, query.school, Permission::SeeDevices).await?;
    Ok(
        Json(json!({ "school_id": school.id, "devices": state.store().devices(school.id).await? }))
            .into_response(),
    )
}

/// A device as the API takes it: the same fields as the form.
#[derive(Debug, Deserialize)]
struct DeviceInput {
    name: String,
    #[serde(default)]
    mac: Option<String>,
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    owner_id: Option<i64>,
    #[serde(default)]
    group_id: Option<i64>,
    #[serde(default = "school_owned")]
    ownership: String,
    /// Why, for the change log; required.
    #[serde(default)]
    reason: String,
}

fn school_owned() -> String {
    "school".to_string()
}

async fn save_device(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<SchoolQuery>,
    Json(input): Json<DeviceInput>,
) -> ApiResult {
    let school =
        pages::school_for(&state, &viewer, query.school, Permission::ManageDevices).await?;
    let form = DeviceForm {
        school: school.id.to_string(),
        name: input.name,
        mac: input.mac.unwrap_or_default(),
        address: input.address.unwrap_or_default(),
        owner_id: input.owner_id.map_or(String::new(), |n| n.to_string()),
        group_id: input.group_id.map_or(String::new(), |n| n.to_string()),
        ownership: input.ownership,
        reason: input.reason,
    };
    let details = match pages::check_device(&form) {
        Ok(details) => details,
        Err(errors) => {
            let fields: serde_json::Map<String, serde_json::Value> = errors
                .0
                .into_iter()
                .map(|(field, message)| (field.to_string(), json!(message)))
                .collect();
            return Ok((
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({ "error": "the device has problems", "fields": fields })),
            )
                .into_response());
        }
    };
    let device = state
        .store()
        .save_device(&viewer.actor(), school.id, details, &form.reason)
        .await?;
    Ok((StatusCode::OK, Json(json!({ "device": device }))).into_response())
}

#[derive(Debug, Default, Deserialize)]
struct AuditApiQuery {
    #[serde(flatten)]
    filter: AuditQuery,
    limit: Option<i64>,
}

async fn audit(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<AuditApiQuery>,
) -> ApiResult {
    pages::require_audit(&state, &viewer).await?;
    let limit = query.limit.unwrap_or(500).clamp(1, 10_000);
    let entries = state
        .store()
        .audit_search(&query.filter.filter(limit))
        .await?;
    Ok(Json(json!({ "entries": entries })).into_response())
}

#[derive(Debug, Default, Deserialize)]
struct RosterQuery {
    school: Option<i64>,
    kind: Option<String>,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    skip_invalid: bool,
}

async fn roster(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<RosterQuery>,
    body: Bytes,
) -> ApiResult {
    let school = pages::school_for(&state, &viewer, query.school, Permission::ImportRoster).await?;
    let report = pages::run_import(
        &state,
        &viewer,
        school.id,
        &body,
        query.kind.as_deref(),
        query.dry_run,
        query.skip_invalid,
    )
    .await?;
    let status = if report.outcome.is_some() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok((status, Json(report)).into_response())
}

#[derive(Debug, Default, Deserialize)]
struct EventsApiQuery {
    #[serde(flatten)]
    filter: LogQuery,
    limit: Option<u32>,
}

/// One page of the filtering log; `next` continues it as `before`.
async fn events(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<EventsApiQuery>,
) -> ApiResult {
    let scope = logs::log_scope(&state, &viewer).await?;
    let limit = query.limit.unwrap_or(logs::PAGE_ROWS).clamp(1, 10_000);
    let search = match query.filter.search(limit) {
        Ok(search) => search,
        Err(errors) => {
            let fields: serde_json::Map<String, serde_json::Value> = errors
                .0
                .into_iter()
                .map(|(field, message)| (field.to_string(), json!(message)))
                .collect();
            return Ok((
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({ "error": "the search has problems", "fields": fields })),
            )
                .into_response());
        }
    };
    let found =
        logs::run_search(&state, &viewer, scope, &query.filter, &search, "api search").await?;
    let next = (found.len() >= limit as usize)
        .then(|| found.last().map(|last| last.cursor().encode()))
        .flatten();
    Ok(Json(json!({ "events": found, "next": next })).into_response())
}

#[derive(Debug, Default, Deserialize)]
struct DashboardApiQuery {
    range: Option<String>,
}

async fn dashboard(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<DashboardApiQuery>,
) -> ApiResult {
    let range = query.range.as_deref().unwrap_or("24h");
    let dashboard = crate::dashboard::gather(&state, &viewer, range, chrono::Utc::now()).await?;
    Ok(Json(dashboard).into_response())
}
