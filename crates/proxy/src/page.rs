//! What people see: the block page, its reference number, the report
//! thank-you page, and the PAC file.
//!
//! The block page is plain, accessible HTML (a language, one heading, a
//! definition list for the facts, labelled form fields, no script, colours
//! with enough contrast), worded for who is reading it: young pupils get
//! short sentences and are pointed to their teacher; older pupils get the
//! facts and a way to report a mistake; staff also get a "request access"
//! link into the console.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use sheepdog_events::DecisionEvent;

/// Who a block page is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    YoungPupil,
    OlderPupil,
    Staff,
}

impl Audience {
    /// The audience of a policy group, from `[proxy] young_groups` and
    /// `staff_groups`; any other group is older pupils.
    pub fn of_group(group: &str, young: &[String], staff: &[String]) -> Self {
        if staff.iter().any(|g| g == group) {
            Self::Staff
        } else if young.iter().any(|g| g == group) {
            Self::YoungPupil
        } else {
            Self::OlderPupil
        }
    }
}

/// A block's reference number: the event's time to the second (UTC) and
/// four letters checking its client and target, as `SD-20261123-153212-K7QX`.
/// The log search for that second and client finds the event; the letters
/// tell two blocks in the same second apart.
pub fn reference(event: &DecisionEvent) -> String {
    reference_for(event.at, &event.client, &event.target)
}

/// The reference of a block at `at` for `client` and `target`.
pub fn reference_for(at: DateTime<Utc>, client: &str, target: &str) -> String {
    // FNV-1a: stable across builds and platforms, unlike the std hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in client.bytes().chain([0]).chain(target.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // Letters and digits that cannot be misread for each other.
    const ALPHABET: &[u8; 32] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789Z";
    let check: String = (0..4)
        .map(|i| {
            let index = ((hash >> (i * 5)) & 31) as usize;
            char::from(ALPHABET.get(index).copied().unwrap_or(b'Z'))
        })
        .collect();
    format!("SD-{}-{check}", at.format("%Y%m%d-%H%M%S"))
}

/// Everything a block page shows.
#[derive(Debug, Clone)]
pub struct BlockPage<'a> {
    pub audience: Audience,
    /// The host or URL that was blocked.
    pub site: &'a str,
    pub category: Option<&'a str>,
    pub reason: &'a str,
    /// The time as the school reads it (its own time zone).
    pub local_time: String,
    pub reference: &'a str,
    pub group: &'a str,
    /// Where the report form posts (`http://proxy/sheepdog/report`).
    pub report_action: &'a str,
    /// The console's "request access" page for this site (staff only).
    pub request_access: Option<String>,
}

/// HTML-escapes text for element content and quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;\
padding:0 1rem;line-height:1.5;color:#1a1a1a;background:#fff}h1{font-size:1.6rem}\
dt{font-weight:bold}dd{margin:0 0 .5rem 0}label{display:block;font-weight:bold;margin-top:1rem}\
textarea{width:100%;font:inherit}button,.button{font:inherit;padding:.5rem 1rem;margin-top:.5rem;\
background:#1d4ed8;color:#fff;border:0;border-radius:4px;text-decoration:none;display:inline-block}\
:focus{outline:3px solid #f59e0b;outline-offset:2px}";

fn document(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head>\n<body><main>\n{body}</main></body></html>\n",
        escape(title)
    )
}

/// A page's heading, its opening sentences and the facts of the decision
/// (those known), as the start of its body.
fn heading_and_facts(title: &str, intro: &str, facts: &[(&str, Option<&str>)]) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>{}</h1>\n<p>{}</p>\n<dl>\n",
        escape(title),
        escape(intro)
    );
    for (label, value) in facts {
        if let Some(value) = value {
            let _ = writeln!(body, "<dt>{label}</dt><dd>{}</dd>", escape(value));
        }
    }
    body.push_str("</dl>\n");
    body
}

impl BlockPage<'_> {
    pub fn render(&self) -> String {
        let (title, intro, report_label, report_button) = match self.audience {
            Audience::YoungPupil => (
                "This page is blocked",
                "The school's internet filter stopped this page because it might not be right \
                 for you. You have not done anything wrong. If you need it for your work, tell \
                 your teacher.",
                "If you think this page is fine, you can tell us why (you do not have to):",
                "Tell the school",
            ),
            Audience::OlderPupil => (
                "This site is blocked by the school's filter",
                "The school's web filter blocked this site. If you think that is a mistake, \
                 report it below and a technician will look at it. Quote the reference number \
                 if you ask a member of staff.",
                "Why should this site be allowed? (optional)",
                "Report wrongly blocked",
            ),
            Audience::Staff => (
                "Blocked by the school's web filter",
                "The web filter blocked this site for your group. If it is wrongly categorised, \
                 report it; if you need it for teaching, request access and the filtering \
                 manager will decide.",
                "What is wrong with this block? (optional)",
                "Report wrongly blocked",
            ),
        };
        let mut body = heading_and_facts(
            title,
            intro,
            &[
                ("Site", Some(self.site)),
                ("Category", self.category),
                ("Reason", Some(self.reason)),
                ("Time", Some(self.local_time.as_str())),
                ("Reference", Some(self.reference)),
            ],
        );
        let _ = write!(
            body,
            "<form method=\"post\" action=\"{}\">\n\
             <input type=\"hidden\" name=\"reference\" value=\"{}\">\n\
             <input type=\"hidden\" name=\"site\" value=\"{}\">\n\
             <input type=\"hidden\" name=\"category\" value=\"{}\">\n\
             <input type=\"hidden\" name=\"group\" value=\"{}\">\n\
             <label for=\"comment\">{}</label>\n\
             <textarea id=\"comment\" name=\"comment\" rows=\"3\" maxlength=\"500\"></textarea>\n\
             <button type=\"submit\">{}</button>\n</form>\n",
            escape(self.report_action),
            escape(self.reference),
            escape(self.site),
            escape(self.category.unwrap_or("")),
            escape(self.group),
            escape(report_label),
            escape(report_button),
        );
        if let (Audience::Staff, Some(link)) = (self.audience, &self.request_access) {
            let _ = writeln!(
                body,
                "<p><a class=\"button\" href=\"{}\">Request access to this site</a></p>",
                escape(link)
            );
        }
        document(title, &body)
    }
}

/// The page for a site in a "warn" category: the facts, and a link that
/// goes on to the site.
#[derive(Debug)]
pub struct WarningPage<'a> {
    pub audience: Audience,
    pub site: &'a str,
    pub category: Option<&'a str>,
    pub local_time: String,
    pub reference: &'a str,
    /// The site's URL with its "continue" token.
    pub continue_to: &'a str,
    /// How long the site then stays open.
    pub minutes: u64,
}

impl WarningPage<'_> {
    pub fn render(&self) -> String {
        let (title, intro) = match self.audience {
            Audience::YoungPupil => (
                "Stop and think",
                "This site might not be right for you. If you are not sure, ask your teacher \
                 before you go on.",
            ),
            Audience::OlderPupil => (
                "Think before you continue",
                "The school's filter warns about this kind of site. You can continue, and the \
                 school's filtering and monitoring can see that you did.",
            ),
            Audience::Staff => (
                "The web filter warns about this site",
                "Your group is warned, not blocked, for this kind of site. Continuing is \
                 recorded in the filtering log.",
            ),
        };
        let mut body = heading_and_facts(
            title,
            intro,
            &[
                ("Site", Some(self.site)),
                ("Category", self.category),
                ("Time", Some(self.local_time.as_str())),
                ("Reference", Some(self.reference)),
            ],
        );
        let _ = writeln!(
            body,
            "<p><a class=\"button\" href=\"{}\">Continue to the site</a></p>\n\
             <p>After you continue, this site stays open on this device for {} minutes.</p>",
            escape(self.continue_to),
            self.minutes
        );
        document(title, &body)
    }
}

/// The page after a report is sent./// The page after a report is sent.
pub fn report_received(reference: &str, stored: bool) -> String {
    let text = if stored {
        format!(
            "Thank you. Your report ({}) has been passed to the school's technicians.",
            escape(reference)
        )
    } else {
        "Sorry, the report could not be saved just now. Please tell a member of staff \
         and quote the reference number."
            .to_string()
    };
    document(
        "Report received",
        &format!("<h1>Report received</h1>\n<p>{text}</p>\n"),
    )
}

/// The notice every guest reads before access (M4).
pub const MONITORING_NOTICE: &str = "This network is filtered and monitored. The school's \
web filter blocks harmful and inappropriate sites, and records which sites each device on \
this network visits, when, and what was blocked. The school's staff may see these records \
to keep pupils safe.";

/// The captive portal a guest sees before access: the visitor agreement,
/// the monitoring notice, an optional name and "I agree".
#[derive(Debug, Clone)]
pub struct PortalPage<'a> {
    /// The visitor agreement, as the school wrote it (Markdown).
    pub agreement: &'a str,
    /// Its version; 0 for sheepdog's own text.
    pub version: i64,
    /// Where the form posts (always the portal path: a captive client's
    /// every request reaches the portal).
    pub action: &'a str,
    /// Where the guest was going, offered after they accept.
    pub next: &'a str,
    /// Why the last attempt failed, if it did.
    pub problem: Option<&'a str>,
}

impl PortalPage<'_> {
    pub fn render(&self) -> String {
        let mut body = String::from("<h1>Before you use the school's network</h1>\n");
        if let Some(problem) = self.problem {
            let _ = writeln!(
                body,
                "<p role=\"alert\"><strong>{}</strong></p>",
                escape(problem)
            );
        }
        let _ = write!(
            body,
            "<section aria-labelledby=\"notice\"><h2 id=\"notice\">Filtering and monitoring</h2>\n\
             <p>{}</p></section>\n<section aria-labelledby=\"agreement\">\
             <h2 id=\"agreement\">Visitor agreement</h2>\n{}</section>\n",
            escape(MONITORING_NOTICE),
            markdown(self.agreement)
        );
        let _ = write!(
            body,
            "<form method=\"post\" action=\"{}\">\n\
             <input type=\"hidden\" name=\"version\" value=\"{}\">\n\
             <input type=\"hidden\" name=\"next\" value=\"{}\">\n\
             <label for=\"name\">Your name (optional)</label>\n\
             <input id=\"name\" name=\"name\" autocomplete=\"name\" maxlength=\"100\">\n\
             <p><input type=\"checkbox\" id=\"agree\" name=\"agree\" value=\"yes\" required>\n\
             <label for=\"agree\" style=\"display:inline\">I have read the visitor agreement and \
             understand that use of this network is filtered and monitored</label></p>\n\
             <button type=\"submit\">I agree</button>\n</form>\n",
            escape(self.action),
            self.version,
            escape(self.next),
        );
        document("Before you use the school's network", &body)
    }
}

/// The page after a guest accepts.
pub fn portal_accepted(next: &str, until: &str) -> String {
    let mut body = format!(
        "<h1>You are connected</h1>\n<p>Thank you. You can use the school's network until {}; \
         you will be asked again after that.</p>\n",
        escape(until)
    );
    if next.starts_with("http://") || next.starts_with("https://") {
        let _ = writeln!(
            body,
            "<p><a class=\"button\" href=\"{}\">Continue to {}</a></p>",
            escape(next),
            escape(next)
        );
    }
    document("You are connected", &body)
}

/// A little Markdown for agreement texts: `#` headings (one level below
/// the page's), `-`/`*` lists and paragraphs; everything escaped.
pub fn markdown(text: &str) -> String {
    let mut out = String::new();
    let mut paragraph: Vec<&str> = Vec::new();
    let mut in_list = false;
    let flush = |out: &mut String, paragraph: &mut Vec<&str>| {
        if !paragraph.is_empty() {
            let _ = writeln!(out, "<p>{}</p>", escape(&paragraph.join(" ")));
            paragraph.clear();
        }
    };
    for line in text.lines().map(str::trim) {
        let item = line.strip_prefix("- ").or_else(|| line.strip_prefix("* "));
        if item.is_none() && in_list {
            out.push_str("</ul>\n");
            in_list = false;
        }
        if let Some(item) = item {
            flush(&mut out, &mut paragraph);
            if !in_list {
                out.push_str("<ul>\n");
                in_list = true;
            }
            let _ = writeln!(out, "<li>{}</li>", escape(item.trim()));
        } else if line.starts_with('#') {
            flush(&mut out, &mut paragraph);
            let _ = writeln!(
                out,
                "<h3>{}</h3>",
                escape(line.trim_start_matches('#').trim())
            );
        } else if line.is_empty() {
            flush(&mut out, &mut paragraph);
        } else {
            paragraph.push(line);
        }
    }
    flush(&mut out, &mut paragraph);
    if in_list {
        out.push_str("</ul>\n");
    }
    out
}

/// A proxy auto-configuration file sending every web request through
/// `proxy` (`host:port`), except plain host names and loopback. There is no
/// `DIRECT` fallback: if the proxy is down, browsing stops rather than
/// going unfiltered.
pub fn pac_file(proxy: &str) -> String {
    format!(
        "// sheepdog proxy auto-configuration\n\
         function FindProxyForURL(url, host) {{\n\
         \x20 if (isPlainHostName(host) || host === \"localhost\" ||\n\
         \x20     shExpMatch(host, \"127.*\") || host === \"[::1]\") {{\n\
         \x20   return \"DIRECT\";\n\
         \x20 }}\n\
         \x20 return \"PROXY {proxy}\";\n\
         }}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn page(audience: Audience) -> String {
        BlockPage {
            audience,
            site: "http://blocked.test/<script>",
            category: Some("gambling"),
            reason: "Blocked: gambling",
            local_time: "23 Nov 2026 15:32".into(),
            reference: "SD-20261123-153212-ABCD",
            group: "ks2",
            report_action: "http://127.0.0.1:3128/sheepdog/report",
            request_access: Some("https://console.test/requests/new?site=blocked.test".into()),
        }
        .render()
    }

    #[test]
    fn wording_follows_the_audience() {
        let young = page(Audience::YoungPupil);
        assert!(young.contains("tell your teacher"), "{young}");
        assert!(!young.contains("Request access"));
        let older = page(Audience::OlderPupil);
        assert!(older.contains("technician"), "{older}");
        assert!(!older.contains("Request access"));
        let staff = page(Audience::Staff);
        assert!(staff.contains("Request access to this site"), "{staff}");
        assert!(staff.contains("/requests/new?site=blocked.test"));
        for html in [young, older, staff] {
            assert!(html.contains("lang=\"en\""));
            assert!(html.contains("SD-20261123-153212-ABCD"));
            assert!(html.contains("gambling"));
            assert!(html.contains("<label for=\"comment\">"));
            assert!(!html.contains("<script>"), "site text must be escaped");
            assert!(html.contains("&lt;script&gt;"));
        }
    }

    #[test]
    fn audience_of_groups() {
        let young = vec!["ks1".to_string()];
        let staff = vec!["staff".to_string()];
        assert_eq!(
            Audience::of_group("ks1", &young, &staff),
            Audience::YoungPupil
        );
        assert_eq!(Audience::of_group("staff", &young, &staff), Audience::Staff);
        assert_eq!(
            Audience::of_group("ks4", &young, &staff),
            Audience::OlderPupil
        );
    }

    #[test]
    fn references_are_stable_and_tell_blocks_apart() {
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 15, 32, 12).unwrap();
        let a = reference_for(at, "10.0.5.11", "http://blocked.test/");
        assert_eq!(a, reference_for(at, "10.0.5.11", "http://blocked.test/"));
        assert!(a.starts_with("SD-20261123-153212-"), "{a}");
        assert_eq!(a.len(), "SD-20261123-153212-ABCD".len());
        assert_ne!(a, reference_for(at, "10.0.5.12", "http://blocked.test/"));
    }

    #[test]
    fn the_portal_shows_the_agreement_and_the_notice_accessibly() {
        let html = PortalPage {
            agreement:
                "# Visitor agreement\n\nYou are <welcome>.\n\n- Be kind.\n- No photos.\n\nThanks.",
            version: 3,
            action: "/sheepdog/portal",
            next: "http://example.test/\"x",
            problem: None,
        }
        .render();
        assert!(html.contains("lang=\"en\""));
        assert!(html.contains("filtered and monitored"));
        assert!(html.contains("<li>Be kind.</li>"));
        assert!(html.contains("<h3>Visitor agreement</h3>"));
        assert!(html.contains("&lt;welcome&gt;"));
        assert!(html.contains("<label for=\"name\">"));
        assert!(html.contains("<label for=\"agree\""));
        assert!(html.contains("name=\"version\" value=\"3\""));
        assert!(html.contains("http://example.test/&quot;x"));
        assert!(!html.contains("<script"));
        let done = portal_accepted("javascript:alert(1)", "18:00");
        assert!(!done.contains("javascript:"), "{done}");
    }

    #[test]
    fn pac_names_the_proxy_without_a_direct_fallback() {
        let pac = pac_file("10.0.0.5:3128");
        assert!(pac.contains("function FindProxyForURL(url, host)"));
        assert!(pac.contains("return \"PROXY 10.0.0.5:3128\";"));
        assert!(!pac.contains("PROXY 10.0.0.5:3128; DIRECT"));
    }
}
