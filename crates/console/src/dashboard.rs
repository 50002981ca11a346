//! The dashboard: blocked and allowed decisions over time, the categories
//! and sites blocked most, alerts by grade and pending requests, for a
//! chosen time range. Counts only: nobody is named, so governors may see it.
//!
//! Charts are SVG drawn on the server, so they need no JavaScript. Each has
//! a title and a description for screen readers and a table with the same
//! numbers beside it; the time-range picker is a plain GET form.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use sheepdog_store::{Bucket, EventSummary};

use crate::auth::Viewer;
use crate::html::{self, escape};
use crate::pages::require_everywhere;
use crate::roles::Permission;
use crate::{ConsoleError, ConsoleState};

/// The ranges the picker offers: (value, label, length, bucket).
const RANGES: &[(&str, &str, i64, Bucket)] = &[
    ("24h", "Last 24 hours", 24, Bucket::Hour),
    ("7d", "Last 7 days", 24 * 7, Bucket::Day),
    ("30d", "Last 30 days", 24 * 30, Bucket::Day),
];

/// Rows in each top-ten list.
const TOP: i64 = 10;

#[derive(Debug, Default, Deserialize)]
pub struct DashboardQuery {
    #[serde(default)]
    range: String,
}

/// The dashboard's numbers for one range.
#[derive(Debug, serde::Serialize)]
pub struct Dashboard {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub events: EventSummary,
    /// (grade, alerts), worst first, over the schools the viewer may see.
    pub alerts_by_grade: Vec<(u8, i64)>,
    /// Unblock requests waiting for a decision.
    pub pending_requests: i64,
}

/// Gathers the dashboard for `range` (one of [`RANGES`]), or refuses.
pub async fn gather(
    state: &ConsoleState,
    viewer: &Viewer,
    range: &str,
    now: DateTime<Utc>,
) -> Result<Dashboard, ConsoleError> {
    require_everywhere(state, viewer, Permission::SeeDashboard).await?;
    let (_, _, hours, bucket) = RANGES
        .iter()
        .find(|(value, ..)| *value == range)
        .ok_or_else(|| {
            ConsoleError::BadRequest(format!(
                "`{range}` is not a time range; choose 24h, 7d or 30d"
            ))
        })?;
    let until = now;
    let since = now - Duration::hours(*hours);
    let events = state
        .store()
        .event_summary(since, until, *bucket, TOP)
        .await?;
    let mut by_grade = [0i64; 6];
    for school in state.store().schools().await? {
        for (grade, count) in state
            .store()
            .alert_counts_by_grade(school.id, since, until)
            .await?
        {
            if let Some(slot) = by_grade.get_mut(usize::from(grade)) {
                *slot += count;
            }
        }
    }
    let alerts_by_grade = (1..=5u8)
        .rev()
        .map(|grade| (grade, by_grade[usize::from(grade)]))
        .collect();
    let pending_requests = state.store().pending_request_count().await?;
    Ok(Dashboard {
        since,
        until,
        events,
        alerts_by_grade,
        pending_requests,
    })
}

pub async fn page(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<DashboardQuery>,
) -> Result<Response, ConsoleError> {
    let range = if query.range.is_empty() {
        "24h"
    } else {
        query.range.as_str()
    };
    let dashboard = gather(&state, &viewer, range, Utc::now()).await?;
    let bucket = RANGES
        .iter()
        .find(|(value, ..)| *value == range)
        .map_or(Bucket::Hour, |r| r.3);
    let options: Vec<(String, String)> = RANGES
        .iter()
        .map(|(value, label, ..)| (value.to_string(), label.to_string()))
        .collect();
    let label = RANGES
        .iter()
        .find(|(value, ..)| *value == range)
        .map_or("", |r| r.1);
    let series = over_time(&dashboard, bucket);
    let blocked_total: i64 = series.iter().map(|(_, b, _)| b).sum();
    let allowed_total: i64 = series.iter().map(|(_, _, a)| a).sum();
    let alerts_total: i64 = dashboard.alerts_by_grade.iter().map(|(_, n)| n).sum();
    let categories: Vec<(String, i64)> = dashboard.events.top_blocked_categories.clone();
    let sites: Vec<(String, i64)> = dashboard.events.top_blocked_sites.clone();
    let grades: Vec<(String, i64)> = dashboard
        .alerts_by_grade
        .iter()
        .map(|(g, n)| (format!("Grade {g}"), *n))
        .collect();
    let body = format!(
        "<h1>Dashboard</h1>\
         <form method=\"get\" action=\"/dashboard\" class=\"inline-form\">{picker}<button>Show</button></form>\
         <p>{label}: from {since} to {until} (UTC).</p>\
         <section aria-labelledby=\"over-time\"><h2 id=\"over-time\">Blocked and allowed over time</h2>\
         {time_chart}{time_table}</section>\
         <section aria-labelledby=\"top-categories\"><h2 id=\"top-categories\">Categories blocked most</h2>\
         {category_chart}{category_table}</section>\
         <section aria-labelledby=\"top-sites\"><h2 id=\"top-sites\">Sites blocked most</h2>\
         {site_chart}{site_table}</section>\
         <section aria-labelledby=\"alerts\"><h2 id=\"alerts\">Alerts by grade</h2>\
         {grade_chart}{grade_table}</section>\
         <section aria-labelledby=\"requests\"><h2 id=\"requests\">Pending requests</h2>\
         <p>{pending}</p></section>",
        pending = match dashboard.pending_requests {
            0 => "No unblock request is waiting for a decision.".to_owned(),
            1 => "1 unblock request is waiting for a decision.".to_owned(),
            n => format!("{n} unblock requests are waiting for a decision."),
        },
        picker = html::select("range", "Time range", &options, range),
        since = dashboard.since.format("%Y-%m-%d %H:%M"),
        until = dashboard.until.format("%Y-%m-%d %H:%M"),
        time_chart = time_chart(
            "Blocked and allowed decisions over time",
            &format!("{blocked_total} blocked and {allowed_total} allowed decisions in the range; the table below gives each period."),
            &series,
        ),
        time_table = table(
            "Decisions by period",
            &["Period (UTC)", "Blocked", "Allowed"],
            &series
                .iter()
                .map(|(p, b, a)| vec![p.clone(), b.to_string(), a.to_string()])
                .collect::<Vec<_>>(),
        ),
        category_chart = bar_chart(
            "Categories blocked most",
            &describe_top(&categories, "category"),
            &categories,
        ),
        category_table = table(
            "Blocked decisions by category",
            &["Category", "Blocked"],
            &pairs(&categories),
        ),
        site_chart = bar_chart("Sites blocked most", &describe_top(&sites, "site"), &sites),
        site_table = table("Blocked decisions by site", &["Name or URL", "Blocked"], &pairs(&sites)),
        grade_chart = bar_chart(
            "Alerts by grade",
            &format!("{alerts_total} alerts in the range, grade 5 the most serious; the table below gives each grade."),
            &grades,
        ),
        grade_table = table("Alerts by grade", &["Grade", "Alerts"], &pairs(&grades)),
    );
    Ok(html::page(&viewer, "Dashboard", &body).into_response())
}

/// (period, blocked, allowed) for each period with any decision. Actions
/// other than block and allow (warn, monitor, rewrite) count as allowed:
/// the page was reached.
fn over_time(dashboard: &Dashboard, bucket: Bucket) -> Vec<(String, i64, i64)> {
    let mut series: Vec<(String, i64, i64)> = Vec::new();
    for (period, action, count) in &dashboard.events.over_time {
        let label = match bucket {
            Bucket::Hour => period.replace('T', " ") + ":00",
            Bucket::Day => period.clone(),
        };
        if series.last().is_none_or(|(last, ..)| *last != label) {
            series.push((label, 0, 0));
        }
        if let Some((_, blocked, allowed)) = series.last_mut() {
            if action == "block" {
                *blocked += count;
            } else {
                *allowed += count;
            }
        }
    }
    series
}

fn pairs(rows: &[(String, i64)]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|(name, n)| vec![name.clone(), n.to_string()])
        .collect()
}

fn describe_top(rows: &[(String, i64)], what: &str) -> String {
    match rows.first() {
        None => format!("No {what} was blocked in the range."),
        Some((name, n)) => format!(
            "The most blocked {what} was {name} with {n}; the table below lists the top {}.",
            rows.len()
        ),
    }
}

/// A table with a caption and column headings.
fn table(caption: &str, headings: &[&str], rows: &[Vec<String>]) -> String {
    let head: String = headings
        .iter()
        .map(|h| format!("<th scope=\"col\">{}</th>", escape(h)))
        .collect();
    let body: String = if rows.is_empty() {
        format!(
            "<tr><td colspan=\"{}\">None in this range.</td></tr>",
            headings.len()
        )
    } else {
        rows.iter()
            .map(|row| {
                let cells: String = row
                    .iter()
                    .enumerate()
                    .map(|(i, cell)| {
                        if i == 0 {
                            format!("<th scope=\"row\">{}</th>", escape(cell))
                        } else {
                            format!("<td>{}</td>", escape(cell))
                        }
                    })
                    .collect();
                format!("<tr>{cells}</tr>")
            })
            .collect()
    };
    format!(
        "<table><caption>{}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>",
        escape(caption)
    )
}

/// A unique id for an SVG's title and description, from its title.
fn svg_id(title: &str) -> String {
    title
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

const BAR_HEIGHT: i64 = 22;
const CHART_WIDTH: i64 = 640;
const LABEL_WIDTH: i64 = 240;

/// A horizontal bar chart: one bar per row, labelled with its name and
/// value.
pub fn bar_chart(title: &str, description: &str, rows: &[(String, i64)]) -> String {
    let id = svg_id(title);
    let most = rows.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let height = BAR_HEIGHT * i64::try_from(rows.len().max(1)).unwrap_or(1) + 8;
    let span = CHART_WIDTH - LABEL_WIDTH - 60;
    let bars: String = rows
        .iter()
        .enumerate()
        .map(|(i, (name, n))| {
            let y = i64::try_from(i).unwrap_or(0) * BAR_HEIGHT + 4;
            let width = (n * span / most).max(1);
            let shown: String = name.chars().take(34).collect();
            format!(
                "<text x=\"{lx}\" y=\"{ty}\" text-anchor=\"end\">{label}</text>\
                 <rect x=\"{LABEL_WIDTH}\" y=\"{y}\" width=\"{width}\" height=\"{bh}\" fill=\"#b10e1e\"></rect>\
                 <text x=\"{vx}\" y=\"{ty}\">{n}</text>",
                lx = LABEL_WIDTH - 6,
                ty = y + 15,
                bh = BAR_HEIGHT - 6,
                vx = LABEL_WIDTH + width + 6,
                label = escape(&shown),
            )
        })
        .collect();
    let empty = if rows.is_empty() {
        "<text x=\"8\" y=\"18\">None in this range</text>"
    } else {
        ""
    };
    format!(
        "<svg role=\"img\" aria-labelledby=\"{id}-title {id}-desc\" viewBox=\"0 0 {CHART_WIDTH} {height}\" \
         width=\"100%\" style=\"max-width:{CHART_WIDTH}px;font-size:13px\" xmlns=\"http://www.w3.org/2000/svg\">\
         <title id=\"{id}-title\">{title}</title><desc id=\"{id}-desc\">{desc}</desc>{bars}{empty}</svg>",
        title = escape(title),
        desc = escape(description),
    )
}

/// Paired columns per period: blocked (red, hatched for those who cannot
/// tell the colours apart) and allowed (green).
pub fn time_chart(title: &str, description: &str, series: &[(String, i64, i64)]) -> String {
    let id = svg_id(title);
    let height = 220i64;
    let base = height - 40;
    let most = series
        .iter()
        .map(|(_, b, a)| (*b).max(*a))
        .max()
        .unwrap_or(0)
        .max(1);
    let count = i64::try_from(series.len().max(1)).unwrap_or(1);
    let slot = ((CHART_WIDTH - 50) / count).max(4);
    let bar = (slot / 2 - 1).max(1);
    let columns: String = series
        .iter()
        .enumerate()
        .map(|(i, (period, blocked, allowed))| {
            let x = 40 + i64::try_from(i).unwrap_or(0) * slot;
            let bh = blocked * (base - 10) / most;
            let ah = allowed * (base - 10) / most;
            let label = if series.len() <= 12 || i % (series.len() / 8).max(1) == 0 {
                format!(
                    "<text x=\"{x}\" y=\"{}\" font-size=\"10\">{}</text>",
                    base + 14,
                    escape(period.get(5..).unwrap_or(period))
                )
            } else {
                String::new()
            };
            format!(
                "<rect x=\"{x}\" y=\"{by}\" width=\"{bar}\" height=\"{bh}\" fill=\"url(#{id}-hatch)\" stroke=\"#b10e1e\">\
                 <title>{p}: {blocked} blocked</title></rect>\
                 <rect x=\"{ax}\" y=\"{ay}\" width=\"{bar}\" height=\"{ah}\" fill=\"#00703c\">\
                 <title>{p}: {allowed} allowed</title></rect>{label}",
                by = base - bh,
                ax = x + bar + 1,
                ay = base - ah,
                p = escape(period),
            )
        })
        .collect();
    format!(
        "<svg role=\"img\" aria-labelledby=\"{id}-title {id}-desc\" viewBox=\"0 0 {CHART_WIDTH} {height}\" \
         width=\"100%\" style=\"max-width:{CHART_WIDTH}px;font-size:12px\" xmlns=\"http://www.w3.org/2000/svg\">\
         <title id=\"{id}-title\">{title}</title><desc id=\"{id}-desc\">{desc}</desc>\
         <defs><pattern id=\"{id}-hatch\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\">\
         <rect width=\"6\" height=\"6\" fill=\"#b10e1e\"></rect><path d=\"M0 6L6 0\" stroke=\"#fff\" stroke-width=\"1.5\"></path></pattern></defs>\
         <line x1=\"36\" y1=\"{base}\" x2=\"{CHART_WIDTH}\" y2=\"{base}\" stroke=\"#0b0c0c\"></line>\
         <text x=\"0\" y=\"14\">{most}</text><text x=\"0\" y=\"{base}\">0</text>{columns}\
         <rect x=\"40\" y=\"{ky}\" width=\"12\" height=\"12\" fill=\"url(#{id}-hatch)\"></rect><text x=\"58\" y=\"{kt}\">Blocked</text>\
         <rect x=\"140\" y=\"{ky}\" width=\"12\" height=\"12\" fill=\"#00703c\"></rect><text x=\"158\" y=\"{kt}\">Allowed</text></svg>",
        title = escape(title),
        desc = escape(description),
        ky = height - 18,
        kt = height - 8,
    )
}
