//! The filtering log: search decision events by person, device, address,
//! group, domain or URL, search term, category, action and time (F6, F13),
//! a page at a time, and export the matches as CSV.
//!
//! The log says who visited what, so every search and every export is
//! written to the audit log as a view, with the filters used. Each event
//! carries the school of its device or signed-in person: someone who may
//! search the log in some schools of a trust sees those schools' events
//! only ([`log_scope`]); events from clients nobody registered belong to no
//! school, and only a viewer allowed in every school (a trust-wide role, or
//! any role in a single-school deployment) sees them.

use std::net::IpAddr;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use sheepdog_store::{EventCursor, EventSearch, FoundEvent, TargetMatch};

use crate::auth::Viewer;
use crate::html::{self, escape, query_value};
use crate::pages::FieldErrors;
use crate::roles::Permission;
use crate::{ConsoleError, ConsoleState};

/// Rows on one page of results.
pub const PAGE_ROWS: u32 = 50;

/// The actions a decision can have, for the form's choice.
const ACTIONS: &[(&str, &str)] = &[
    ("", "Any"),
    ("block", "Blocked"),
    ("allow", "Allowed"),
    ("warn", "Warned"),
    ("monitor", "Monitored"),
    ("rewrite", "Safe search enforced"),
];

/// A log search as typed: every field is text, so that what the person
/// typed comes back unchanged beside any error.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub struct LogQuery {
    #[serde(default)]
    pub person: String,
    #[serde(default)]
    pub device: String,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub group: String,
    /// A domain: it and every name under it.
    #[serde(default)]
    pub domain: String,
    /// The start of a URL or name.
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub term: String,
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub action: String,
    /// A date `YYYY-MM-DD` or a time `YYYY-MM-DD HH:MM` (UTC).
    #[serde(default)]
    pub from: String,
    /// A date (included) or a time (UTC).
    #[serde(default)]
    pub to: String,
    /// Where the previous page ended.
    #[serde(default)]
    pub before: String,
}

fn optional(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// A time as typed in the form: a date (the day's start, or with
/// `whole_day` the next day's start so that the day is included), a
/// `YYYY-MM-DD HH:MM` or `YYYY-MM-DDTHH:MM` time, or RFC 3339; all UTC.
fn parse_when(text: &str, whole_day: bool) -> Option<DateTime<Utc>> {
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let day = if whole_day { day.succ_opt()? } else { day };
        return Some(day.and_hms_opt(0, 0, 0)?.and_utc());
    }
    for format in [
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
    ] {
        if let Ok(time) = NaiveDateTime::parse_from_str(text, format) {
            return Some(time.and_utc());
        }
    }
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

impl LogQuery {
    /// The search these fields ask for, or every field's problem at once.
    pub fn search(&self, limit: u32) -> Result<EventSearch, FieldErrors> {
        let mut errors = FieldErrors::default();
        let mut number = |field: &'static str, text: &str, what: &str| match optional(text) {
            None => None,
            Some(value) => match value.parse::<i64>() {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    errors.0.push((
                        field,
                        format!("`{value}` is not a {what} ID; give the number shown on the {what}'s page"),
                    ));
                    None
                }
            },
        };
        let person_id = number("person", &self.person, "person");
        let device_id = number("device", &self.device, "device");
        let client = match optional(&self.address) {
            None => None,
            Some(text) => match text.parse::<IpAddr>() {
                Ok(address) => Some(address.to_string()),
                Err(_) => {
                    errors.0.push((
                        "address",
                        format!("`{text}` is not an IP address; give one such as 10.0.4.17"),
                    ));
                    None
                }
            },
        };
        let target = match (optional(&self.domain), optional(&self.url)) {
            (Some(_), Some(_)) => {
                errors.0.push((
                    "url",
                    "search by a domain or by the start of a URL, not both; empty one of them"
                        .to_string(),
                ));
                None
            }
            (Some(domain), None) => {
                if domain.contains(['/', ' ']) || sheepdog_store::host_key(&domain).is_none() {
                    errors.0.push((
                        "domain",
                        format!("`{domain}` is not a domain; give a name such as example.com, or put a URL in the URL field"),
                    ));
                    None
                } else {
                    Some(TargetMatch::Domain(domain))
                }
            }
            (None, Some(url)) => Some(TargetMatch::Prefix(url)),
            (None, None) => None,
        };
        let mut time = |field: &'static str, text: &str, whole_day: bool| match optional(text) {
            None => None,
            Some(value) => {
                match parse_when(&value, whole_day) {
                    Some(time) => Some(time),
                    None => {
                        errors.0.push((
                        field,
                        format!("`{value}` is not a date or time; use YYYY-MM-DD or YYYY-MM-DD HH:MM"),
                    ));
                        None
                    }
                }
            }
        };
        let since = time("from", &self.from, false);
        let until = time("to", &self.to, true);
        if let (Some(since), Some(until)) = (since, until) {
            if until <= since {
                errors
                    .0
                    .push(("to", "the end must be after the start".to_string()));
            }
        }
        let action = optional(&self.action);
        if let Some(action) = &action {
            if !ACTIONS.iter().any(|(value, _)| value == action) {
                errors.0.push((
                    "action",
                    format!("`{action}` is not an action; choose one from the list"),
                ));
            }
        }
        let before = match optional(&self.before) {
            None => None,
            Some(token) => match EventCursor::decode(&token) {
                Some(cursor) => Some(cursor),
                None => {
                    errors.0.push((
                        "before",
                        "the page link is damaged; start the search again".to_string(),
                    ));
                    None
                }
            },
        };
        if !errors.0.is_empty() {
            return Err(errors);
        }
        Ok(EventSearch {
            since,
            until,
            person_id,
            device_id,
            client,
            group: optional(&self.group),
            target,
            search_term: optional(&self.term),
            category: optional(&self.category),
            action,
            before,
            limit,
            schools: None,
        })
    }

    /// The filters as a query string, without the page position.
    pub fn as_query(&self) -> String {
        [
            ("person", &self.person),
            ("device", &self.device),
            ("address", &self.address),
            ("group", &self.group),
            ("domain", &self.domain),
            ("url", &self.url),
            ("term", &self.term),
            ("category", &self.category),
            ("action", &self.action),
            ("from", &self.from),
            ("to", &self.to),
        ]
        .iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| format!("{k}={}", query_value(v.trim())))
        .collect::<Vec<_>>()
        .join("&")
    }
}

/// Which schools' events `viewer` may search: `None` for every event,
/// when they may search in every school; otherwise the schools where they
/// may. Refused (403) when they may nowhere.
pub async fn log_scope(
    state: &ConsoleState,
    viewer: &Viewer,
) -> Result<Option<Vec<i64>>, ConsoleError> {
    let schools = state.store().schools().await?;
    let allowed: Vec<i64> = schools
        .iter()
        .filter(|school| viewer.can(Permission::SearchLogs, school.id))
        .map(|school| school.id)
        .collect();
    if allowed.is_empty() {
        viewer.require(Permission::SearchLogs, -1)?;
        return Ok(Some(allowed));
    }
    Ok((allowed.len() < schools.len()).then_some(allowed))
}

/// Runs a search within `scope` (the viewer's [`log_scope`], which the
/// caller has checked) after writing the view to the audit log.
pub async fn run_search(
    state: &ConsoleState,
    viewer: &Viewer,
    scope: Option<Vec<i64>>,
    query: &LogQuery,
    search: &EventSearch,
    what: &str,
) -> Result<Vec<FoundEvent>, ConsoleError> {
    let search = &EventSearch {
        schools: scope,
        ..search.clone()
    };
    state
        .store()
        .audit_view(
            &viewer.actor(),
            "decision_events",
            &format!("{what}: {}", query.as_query()),
        )
        .await?;
    Ok(state.store().search_events(search).await?)
}

/// The search form, the results and the link to the next page.
pub async fn page(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<LogQuery>,
) -> Result<Response, ConsoleError> {
    let scope = log_scope(&state, &viewer).await?;
    let (found, errors) = match query.search(PAGE_ROWS) {
        Ok(search) => (
            Some(run_search(&state, &viewer, scope.clone(), &query, &search, "search").await?),
            FieldErrors::default(),
        ),
        Err(errors) => (None, errors),
    };
    let body = format!(
        "<h1>Filtering log</h1>\
         <p class=\"notice\">Each search is recorded in the audit log with the filters used.</p>\
         {scope}{summary}{form}{results}",
        scope = if scope.is_some() {
            "<p class=\"notice\">You see the events of your own school's devices and \
             people. Events from devices nobody registered are shown to trust-wide roles only.</p>"
        } else {
            ""
        },
        summary = html::error_summary(&errors),
        form = search_form(&query, &errors),
        results = found.map_or(String::new(), |found| results(&query, &found)),
    );
    let status = if errors.0.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok((status, html::page(&viewer, "Filtering log", &body)).into_response())
}

fn search_form(query: &LogQuery, errors: &FieldErrors) -> String {
    let field = |name: &'static str, label: &str, hint: Option<&str>, value: &str| {
        html::text_input(name, label, hint, value, errors.get(name))
    };
    let actions: Vec<(String, String)> = ACTIONS
        .iter()
        .map(|(v, t)| (v.to_string(), t.to_string()))
        .collect();
    let action_error = errors.get("action").map_or(String::new(), |e| {
        format!(
            "<span class=\"error\" id=\"action-error\">Error: {}</span>",
            escape(e)
        )
    });
    format!(
        "<form method=\"get\" action=\"/logs\" novalidate class=\"search\">\
         <fieldset><legend>Who</legend>{person}{device}{address}{group}</fieldset>\
         <fieldset><legend>What</legend>{domain}{url}{term}{category}\
         <div class=\"{action_class}\">{action}{action_error}</div></fieldset>\
         <fieldset><legend>When (UTC)</legend>{from}{to}</fieldset>\
         <div><button>Search</button></div></form>",
        person = field(
            "person",
            "Person ID",
            Some("The number in the address of the person's page"),
            &query.person
        ),
        device = field("device", "Device ID", None, &query.device),
        address = field(
            "address",
            "IP address",
            Some("For example 10.0.4.17"),
            &query.address
        ),
        group = field(
            "group",
            "Group",
            Some("The filtering group's name"),
            &query.group
        ),
        domain = field(
            "domain",
            "Domain",
            Some("Finds the domain and every name under it: example.com finds www.example.com"),
            &query.domain
        ),
        url = field(
            "url",
            "URL or name starting with",
            Some("For example https://www.example.com/videos/"),
            &query.url
        ),
        term = field("term", "Search term containing", None, &query.term),
        category = field(
            "category",
            "Category",
            Some("For example gambling"),
            &query.category
        ),
        action_class = if errors.get("action").is_some() {
            "field-error"
        } else {
            "field"
        },
        action = html::select("action", "Action", &actions, query.action.trim()),
        from = field(
            "from",
            "From",
            Some("YYYY-MM-DD or YYYY-MM-DD HH:MM"),
            &query.from
        ),
        to = field(
            "to",
            "To",
            Some("YYYY-MM-DD (included) or YYYY-MM-DD HH:MM"),
            &query.to
        ),
    )
}

fn results(query: &LogQuery, found: &[FoundEvent]) -> String {
    let rows: String = found
        .iter()
        .map(|f| {
            let e = &f.event;
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"secret\">{}</td>\
                 <td>{}</td><td>{}{}</td><td>{}</td><td>{}</td>\
                 <td><a href=\"/incidents/new?event={}\">Log a concern</a></td></tr>",
                escape(&e.at.format("%Y-%m-%d %H:%M:%S").to_string()),
                escape(&e.client),
                escape(e.device_name.as_deref().unwrap_or("")),
                e.person_id.map_or(String::new(), |id| format!("<a href=\"/people/{id}\">{id}</a>")),
                escape(e.group.as_deref().unwrap_or("")),
                escape(&e.target),
                escape(e.search_term.as_deref().unwrap_or("")),
                escape(&e.action),
                if e.illegal { " (illegal content)" } else { "" },
                escape(e.category.as_deref().unwrap_or("")),
                escape(&[e.list.as_deref(), e.rule.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(": ")),
                f.id,
            )
        })
        .collect();
    let filters = query.as_query();
    let next = match found.last() {
        Some(last) if found.len() >= PAGE_ROWS as usize => format!(
            "<p><a href=\"/logs?{}before={}\">Older results</a></p>",
            escape(&if filters.is_empty() {
                String::new()
            } else {
                format!("{filters}&")
            }),
            query_value(&last.cursor().encode()),
        ),
        _ => String::new(),
    };
    let first = if query.before.trim().is_empty() {
        String::new()
    } else {
        format!(
            "<p><a href=\"/logs?{}\">Back to the newest results</a></p>",
            escape(&filters)
        )
    };
    format!(
        "<p><a href=\"/logs.csv?{q}\">Export every match as CSV</a> (up to {max} rows)</p>{first}\
         <table><caption>{n} decisions, newest first{more}</caption><thead><tr>\
         <th scope=\"col\">When (UTC)</th><th scope=\"col\">Address</th><th scope=\"col\">Device</th>\
         <th scope=\"col\">Person</th><th scope=\"col\">Group</th><th scope=\"col\">Name or URL</th>\
         <th scope=\"col\">Search term</th><th scope=\"col\">Action</th><th scope=\"col\">Category</th>\
         <th scope=\"col\">List and rule</th><th scope=\"col\">Incident</th></tr></thead><tbody>{rows}</tbody></table>{next}",
        q = escape(&filters),
        max = EventSearch::MAX_PAGE,
        n = found.len(),
        more = if next.is_empty() { "" } else { " (more on the next page)" },
    )
}

/// Decision events as CSV, with a header row.
pub fn events_to_csv(found: &[FoundEvent]) -> Result<Vec<u8>, ConsoleError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let fail = |e: csv::Error| ConsoleError::BadRequest(format!("cannot write CSV: {e}"));
    writer
        .write_record([
            "id",
            "at",
            "source",
            "client",
            "device_id",
            "device_name",
            "person_id",
            "group",
            "target",
            "query_type",
            "search_term",
            "action",
            "illegal",
            "category",
            "list",
            "rule",
        ])
        .map_err(fail)?;
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let number = |v: Option<i64>| v.map_or(String::new(), |n| n.to_string());
    for f in found {
        let e = &f.event;
        writer
            .write_record([
                f.id.to_string(),
                e.at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
                e.source.as_str().to_string(),
                e.client.clone(),
                number(e.device_id),
                text(&e.device_name),
                number(e.person_id),
                text(&e.group),
                e.target.clone(),
                text(&e.query_type),
                text(&e.search_term),
                e.action.clone(),
                e.illegal.to_string(),
                text(&e.category),
                text(&e.list),
                text(&e.rule),
            ])
            .map_err(fail)?;
    }
    writer
        .into_inner()
        .map_err(|e| ConsoleError::BadRequest(format!("cannot write CSV: {e}")))
}

/// Every match (up to the export limit) as a CSV download.
pub async fn csv_export(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<LogQuery>,
) -> Result<Response, ConsoleError> {
    let scope = log_scope(&state, &viewer).await?;
    let search = query.search(EventSearch::MAX_PAGE).map_err(|errors| {
        ConsoleError::BadRequest(
            errors
                .0
                .iter()
                .map(|(field, message)| format!("{field}: {message}"))
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    let found = run_search(&state, &viewer, scope, &query, &search, "csv export").await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"sheepdog-filtering-log.csv\"",
            ),
        ],
        events_to_csv(&found)?,
    )
        .into_response())
}
