//! Page layout and escaping. Pages are plain HTML with one small style
//! sheet: readable at 200% zoom and on a tablet, high-contrast colours,
//! visible focus for keyboard users, and no JavaScript.

use axum::response::Html;

use crate::auth::Viewer;
use crate::pages::FieldErrors;
use crate::roles::Permission;

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// Escapes text for a URL query value.
pub fn query_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

const STYLE: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;font-size:1.05rem;line-height:1.5;\
color:#0b0c0c;background:#fff;margin:0}\
header{background:#0b3d2e;color:#fff;padding:.6rem 1rem}\
header a{color:#fff}header nav ul{list-style:none;margin:0;padding:0;display:flex;flex-wrap:wrap;gap:1rem}\
.skip{position:absolute;left:-999px}.skip:focus{left:1rem;top:1rem;background:#ffdd00;color:#0b0c0c;padding:.4rem}\
main{max-width:60rem;margin:1rem auto;padding:0 1rem}\
a{color:#1d4f91}a:focus,button:focus,input:focus,select:focus,textarea:focus{outline:3px solid #ffdd00;outline-offset:0;box-shadow:0 0 0 5px #0b0c0c}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid #b1b4b6;vertical-align:top}\
label{display:block;font-weight:600;margin-top:.8rem}.hint{color:#484949;font-weight:400;display:block}\
input,select,textarea{font-size:1rem;padding:.35rem;border:2px solid #0b0c0c;max-width:100%}\
button{font-size:1rem;padding:.45rem 1rem;background:#00703c;color:#fff;border:0;margin-top:1rem;cursor:pointer}\
button.secondary{background:#505a5f}\
.error{color:#b10e1e;font-weight:600}.field-error input,.field-error select{border-color:#b10e1e}\
.summary{border:4px solid #b10e1e;padding:.5rem 1rem;margin:1rem 0}\
.notice{border-left:6px solid #1d70b8;padding:.4rem 1rem;background:#eef4fa}\
.warning{border-left:6px solid #b10e1e;padding:.4rem 1rem;background:#fcefef}\
code,.secret{font-family:ui-monospace,monospace;word-break:break-all}\
form.inline{display:inline}";

/// A whole page for someone signed in, with the navigation their roles
/// allow.
pub fn page(viewer: &Viewer, title: &str, body: &str) -> Html<String> {
    let mut links = vec![("/", "Start")];
    for (permission, href, label) in [
        (Permission::SeeDashboard, "/dashboard", "Dashboard"),
        (Permission::SearchLogs, "/logs", "Filtering log"),
        (Permission::SeePeople, "/people", "People"),
        (Permission::SeeGroups, "/groups", "Groups"),
        (Permission::SeeDevices, "/devices", "Devices"),
        (
            Permission::ImportRoster,
            "/people/import",
            "Import a roster",
        ),
        (Permission::SeeAudit, "/audit", "Audit log"),
        (
            Permission::ManageDevices,
            "/certificate",
            "Inspection certificate",
        ),
        (Permission::TriageAlerts, "/alerts", "Alerts"),
        (Permission::SeeIncidents, "/incidents", "Incidents"),
        (Permission::LogConcern, "/incidents/new", "Log a concern"),
        (Permission::SeeGovernance, "/governance", "Governance"),
        (
            Permission::SeeImageConsent,
            "/governance/consent",
            "Image consent",
        ),
        (Permission::ManageAssets, "/governance/assets", "Assets"),
        (Permission::RequestUnblock, "/requests", "Unblock requests"),
        (
            Permission::ChangeFiltering,
            "/reports",
            "Over-blocking reports",
        ),
        (
            Permission::SeeFilteringChanges,
            "/changes",
            "Filtering changes",
        ),
        (
            Permission::SeeFilteringPolicy,
            "/policy",
            "Filtering policy",
        ),
    ] {
        if viewer.can_somewhere(permission) {
            links.push((href, label));
        }
    }
    links.push(("/account", "Your account"));
    let nav: String = links
        .iter()
        .map(|(href, label)| format!("<li><a href=\"{href}\">{label}</a></li>"))
        .collect();
    let csrf = escape(viewer.csrf_token());
    let header = format!(
        "<header><a class=\"skip\" href=\"#content\">Skip to content</a>\
         <p><strong>sheepdog</strong> · signed in as {name}</p>\
         <nav aria-label=\"Main\"><ul>{nav}<li><form class=\"inline\" method=\"post\" action=\"/sign-out\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button class=\"secondary\" style=\"margin:0;padding:.1rem .6rem\">Sign out</button></form></li></ul></nav></header>",
        name = escape(&viewer.account.display_name),
    );
    Html(document(title, &header, body))
}

/// A page for someone not (yet) signed in.
pub fn bare_page(title: &str, body: &str) -> Html<String> {
    let header = "<header><a class=\"skip\" href=\"#content\">Skip to content</a>\
                  <p><strong>sheepdog</strong></p></header>";
    Html(document(title, header, body))
}

fn document(title: &str, header: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en-GB\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} — sheepdog</title><style>{STYLE}</style></head>\
         <body>{header}<main id=\"content\">{body}</main></body></html>\n",
        title = escape(title),
    )
}

/// The hidden field that carries the session's form token.
pub fn csrf_field(token: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(token)
    )
}

/// A labelled text input that keeps what was typed and shows its error.
pub fn text_input(
    name: &str,
    label: &str,
    hint: Option<&str>,
    value: &str,
    error: Option<&str>,
) -> String {
    let hint_html = hint.map_or(String::new(), |h| {
        format!(
            "<span class=\"hint\" id=\"{name}-hint\">{}</span>",
            escape(h)
        )
    });
    let error_html = error.map_or(String::new(), |e| {
        format!(
            "<span class=\"error\" id=\"{name}-error\">Error: {}</span>",
            escape(e)
        )
    });
    let described: Vec<String> = [
        hint.map(|_| format!("{name}-hint")),
        error.map(|_| format!("{name}-error")),
    ]
    .into_iter()
    .flatten()
    .collect();
    let aria = if described.is_empty() {
        String::new()
    } else {
        format!(" aria-describedby=\"{}\"", described.join(" "))
    };
    let invalid = if error.is_some() {
        " aria-invalid=\"true\""
    } else {
        ""
    };
    format!(
        "<div class=\"{class}\"><label for=\"{name}\">{label}{hint_html}</label>{error_html}\
         <input type=\"text\" id=\"{name}\" name=\"{name}\" value=\"{value}\"{aria}{invalid}></div>",
        class = if error.is_some() { "field-error" } else { "field" },
        label = escape(label),
        value = escape(value),
    )
}

/// A labelled select that keeps the chosen option.
pub fn select(name: &str, label: &str, options: &[(String, String)], chosen: &str) -> String {
    let options: String = options
        .iter()
        .map(|(value, text)| {
            format!(
                "<option value=\"{}\"{}>{}</option>",
                escape(value),
                if value == chosen { " selected" } else { "" },
                escape(text)
            )
        })
        .collect();
    format!(
        "<label for=\"{name}\">{}</label><select id=\"{name}\" name=\"{name}\">{options}</select>",
        escape(label)
    )
}

/// The box at the top of a refused form: one link per problem, to its field.
pub fn error_summary(errors: &FieldErrors) -> String {
    if errors.0.is_empty() {
        return String::new();
    }
    let items: String = errors
        .0
        .iter()
        .map(|(field, message)| format!("<li><a href=\"#{field}\">{}</a></li>", escape(message)))
        .collect();
    format!(
        "<div class=\"summary\" role=\"alert\" tabindex=\"-1\"><h2>There is a problem</h2><ul>{items}</ul></div>"
    )
}
