//! Response policy zone (RPZ) files.
//!
//! Only QNAME triggers are enforced; IP, NSIP, NSDNAME and client-IP
//! triggers are counted as unsupported. Actions: `CNAME .` (NXDOMAIN),
//! `CNAME *.` (NODATA), `CNAME rpz-passthru.` (an exception), `CNAME
//! rpz-drop.` and any other record (local data).

use std::borrow::Cow;

use super::{Entry, LineOutcome, MatchMode, RpzAction};
use crate::name::normalize_name;

/// State carried between lines: the origin, the last owner, open brackets.
#[derive(Debug, Default)]
pub(crate) struct RpzState {
    origin: Option<String>,
    last_owner: Option<String>,
    depth: usize,
}

const CLASSES: &[&str] = &["IN", "CH", "HS", "CS"];

fn strip_comment(line: &str) -> &str {
    let mut in_quotes = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            ';' if !in_quotes => return &line[..i],
            _ => {}
        }
    }
    line
}

impl RpzState {
    pub(crate) fn line<'a>(&mut self, raw: &'a str) -> LineOutcome<'a> {
        let line = strip_comment(raw);
        // Multi-line records (the SOA) are bookkeeping: skip until closed.
        let opens = line.matches('(').count();
        let closes = line.matches(')').count();
        let was_open = self.depth > 0;
        self.depth = (self.depth + opens).saturating_sub(closes);
        if was_open {
            return LineOutcome::Nothing;
        }
        let t = line.trim();
        if t.is_empty() {
            return LineOutcome::Nothing;
        }
        if let Some(rest) = t.strip_prefix("$ORIGIN") {
            let origin = rest.trim().trim_end_matches('.').to_ascii_lowercase();
            self.origin = if origin.is_empty() {
                None
            } else {
                Some(origin)
            };
            return LineOutcome::Nothing;
        }
        if t.starts_with("$TTL") {
            return LineOutcome::Nothing;
        }
        if t.starts_with('$') {
            return LineOutcome::Unsupported;
        }
        let continues_owner = line.starts_with([' ', '\t']);
        let mut fields = t.split_whitespace();
        let owner = if continues_owner {
            match &self.last_owner {
                Some(o) => o.clone(),
                None => return LineOutcome::Invalid("record without an owner".to_owned()),
            }
        } else {
            let o = fields.next().unwrap_or("").to_owned();
            self.last_owner = Some(o.clone());
            o
        };
        // Skip TTL and class, in either order.
        let mut rtype = None;
        for f in fields.by_ref() {
            let upper = f.to_ascii_uppercase();
            if f.bytes().all(|b| b.is_ascii_digit()) || CLASSES.contains(&upper.as_str()) {
                continue;
            }
            rtype = Some(upper);
            break;
        }
        let Some(rtype) = rtype else {
            return LineOutcome::Invalid("record without a type".to_owned());
        };
        let rdata: Vec<&str> = fields.collect();
        if matches!(rtype.as_str(), "SOA" | "NS") {
            return LineOutcome::Nothing;
        }
        let Some(trigger) = self.relative_owner(&owner) else {
            return LineOutcome::Nothing; // the zone apex
        };
        if [".rpz-ip", ".rpz-nsip", ".rpz-nsdname", ".rpz-client-ip"]
            .iter()
            .any(|s| trigger.ends_with(s) || trigger.starts_with(&s[1..]))
        {
            return LineOutcome::Unsupported;
        }
        let (action, local_data) = if rtype == "CNAME" {
            match rdata.first().map(|s| s.to_ascii_lowercase()).as_deref() {
                Some(".") => (RpzAction::NxDomain, None),
                Some("*.") => (RpzAction::NoData, None),
                Some("rpz-passthru.") => (RpzAction::Passthru, None),
                Some("rpz-drop.") => (RpzAction::Drop, None),
                Some("rpz-tcp-only.") => return LineOutcome::Unsupported,
                Some(target) => (RpzAction::LocalData, Some(format!("CNAME {target}"))),
                None => return LineOutcome::Invalid("CNAME without a target".to_owned()),
            }
        } else {
            (
                RpzAction::LocalData,
                Some(format!("{rtype} {}", rdata.join(" "))),
            )
        };
        let (name, mode) = match trigger.strip_prefix("*.") {
            Some(rest) => (rest.to_owned(), MatchMode::Subdomains),
            None => (trigger, MatchMode::Exact),
        };
        match normalize_name(&name) {
            Ok(n) => LineOutcome::Entry(Entry::Name {
                name: Cow::Owned(n.into_owned()),
                mode,
                exception: action == RpzAction::Passthru,
                rpz: Some(action),
                local_data,
            }),
            Err(e) => LineOutcome::Invalid(format!("{name:?}: {e}")),
        }
    }

    /// The trigger name: the owner without the zone's origin.
    fn relative_owner(&self, owner: &str) -> Option<String> {
        let owner = owner.to_ascii_lowercase();
        if owner == "@" {
            return None;
        }
        match owner.strip_suffix('.') {
            Some(absolute) => match &self.origin {
                Some(origin) if absolute == origin => None,
                Some(origin) => Some(
                    absolute
                        .strip_suffix(origin.as_str())
                        .and_then(|s| s.strip_suffix('.'))
                        .unwrap_or(absolute)
                        .to_owned(),
                ),
                None => Some(absolute.to_owned()),
            },
            None => Some(owner),
        }
    }
}
