//! Reading the pages the proxy can see, for monitoring: the title and
//! text of an HTML page fetched over plain HTTP or through TLS inspection.
//!
//! The response goes to the browser as it comes, untouched; a copy of its
//! first [`MAX_KEPT`] bytes is kept on the side. When the body ends (or
//! the copy is full, or the browser goes away) the copy is decoded
//! (identity or gzip: the proxy asks origins for gzip when a browser
//! offers it, see [`narrow_accept_encoding`]), its title and text are
//! taken out, and the page is handed to monitoring through a bounded
//! channel that never waits: a full channel drops the page and counts it
//! in `sheepdog_proxy_pages_dropped_total`. Pages are never stored.

use std::io::Read;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use hyper::header::{HeaderMap, HeaderValue, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE};
use sheepdog_store::{DecisionEvent, PageSeen};
use tokio::sync::mpsc;

use crate::proxy::Body;

/// Bytes of a response body copied for reading at most.
pub const MAX_KEPT: usize = 64 * 1024;

/// Bytes of HTML a gzip copy is decoded to at most.
const MAX_DECODED: u64 = 256 * 1024;

/// Bytes of page text handed to monitoring at most (what it examines).
pub const MAX_TEXT: usize = 64 * 1024;

/// Characters of a title kept at most.
const MAX_TITLE: usize = 512;

/// Where pages go: the live monitor's channel.
pub type PageSender = mpsc::Sender<PageSeen>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Identity,
    Gzip,
}

/// The response body wrapped to keep a copy for monitoring, when it is an
/// HTML page in an encoding the proxy reads; otherwise the body as it is.
pub fn read_page(
    headers: &HeaderMap,
    body: Body,
    event: &DecisionEvent,
    pages: &PageSender,
) -> Body {
    let html = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim_start().to_ascii_lowercase())
        .is_some_and(|v| v.starts_with("text/html") || v.starts_with("application/xhtml+xml"));
    if !html {
        return body;
    }
    let encoding = match headers
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("" | "identity") => Encoding::Identity,
        Some("gzip" | "x-gzip") => Encoding::Gzip,
        Some(_) => {
            metrics::counter!("sheepdog_proxy_pages_unread_total", "reason" => "encoding")
                .increment(1);
            return body;
        }
    };
    Body::new(PageCopy {
        body,
        kept: Vec::new(),
        encoding,
        pending: Some((event.clone(), pages.clone())),
    })
}

/// Asks the origin for gzip rather than encodings the proxy cannot read
/// (brotli, zstd), when the browser accepts gzip; a browser that accepts
/// none is left as it is and gets the page unencoded.
pub fn narrow_accept_encoding(headers: &mut HeaderMap) {
    let accepts_gzip = headers
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let coding = coding.split(';').next().unwrap_or("").trim();
            coding.eq_ignore_ascii_case("gzip") || coding == "*"
        });
    if accepts_gzip {
        headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
    }
}

/// A response body passed through unchanged, with a copy of its start.
struct PageCopy {
    body: Body,
    kept: Vec<u8>,
    encoding: Encoding,
    /// The page's decision and where to send the page, until it is sent.
    pending: Option<(DecisionEvent, PageSender)>,
}

impl PageCopy {
    fn keep(&mut self, data: &[u8]) {
        if self.pending.is_none() {
            return;
        }
        let room = MAX_KEPT - self.kept.len();
        self.kept.extend_from_slice(&data[..data.len().min(room)]);
        if self.kept.len() >= MAX_KEPT {
            self.finish();
        }
    }

    /// Reads the copy and hands the page on, once.
    fn finish(&mut self) {
        let Some((event, pages)) = self.pending.take() else {
            return;
        };
        let html = match self.encoding {
            Encoding::Identity => std::mem::take(&mut self.kept),
            Encoding::Gzip => {
                let mut html = Vec::new();
                // A copy cut short ends in the middle of the stream: what
                // was decoded before the end is kept.
                let _ = flate2::read::GzDecoder::new(&self.kept[..])
                    .take(MAX_DECODED)
                    .read_to_end(&mut html);
                html
            }
        };
        let (title, text) = title_and_text(&String::from_utf8_lossy(&html));
        if title.is_none() && text.is_empty() {
            return;
        }
        let page = PageSeen { event, title, text };
        if pages.try_send(page).is_err() {
            metrics::counter!("sheepdog_proxy_pages_dropped_total").increment(1);
        }
    }
}

impl hyper::body::Body for PageCopy {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.keep(data);
                }
            }
            Poll::Ready(None | Some(Err(_))) => this.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for PageCopy {
    /// A browser that leaves early still had the page's start in front
    /// of it.
    fn drop(&mut self) {
        self.finish();
    }
}

/// The title and the visible text of an HTML document: tags, comments,
/// scripts and styles removed, the common character references decoded,
/// white space collapsed, each bounded.
pub fn title_and_text(html: &str) -> (Option<String>, String) {
    let mut title: Option<String> = None;
    let mut in_title = false;
    let mut text = String::new();
    let mut rest = html;
    while !rest.is_empty() && text.len() < MAX_TEXT {
        let Some(open) = rest.find('<') else {
            push_text(&mut text, &mut title, in_title, rest);
            break;
        };
        push_text(&mut text, &mut title, in_title, &rest[..open]);
        rest = &rest[open..];
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = after.find("-->").map_or("", |end| &after[end + 3..]);
            continue;
        }
        let Some(close) = rest.find('>') else {
            break;
        };
        let tag = &rest[1..close];
        rest = &rest[close + 1..];
        let closing = tag.starts_with('/');
        let name = tag.trim_start_matches('/');
        let name = &name[..name
            .bytes()
            .position(|b| !b.is_ascii_alphanumeric())
            .unwrap_or(name.len())];
        let is = |wanted: &str| name.eq_ignore_ascii_case(wanted);
        if is("title") && !closing && title.is_none() {
            in_title = true;
            title = Some(String::new());
        } else if is("title") && closing {
            in_title = false;
        } else if !closing
            && ["script", "style", "noscript", "template"]
                .into_iter()
                .any(is)
        {
            // Their content is code, not words on the page: skipped to
            // the closing tag.
            rest = find_closing(rest, name).map_or("", |at| &rest[at..]);
        } else {
            // Words in separate blocks stay separate words.
            push_text(&mut text, &mut title, false, " ");
        }
    }
    let title = title
        .map(|t| collapse(&t, MAX_TITLE))
        .filter(|t| !t.is_empty());
    (title, collapse(&text, MAX_TEXT))
}

fn push_text(text: &mut String, title: &mut Option<String>, in_title: bool, raw: &str) {
    let decoded = decode_references(raw);
    match title {
        Some(title) if in_title => {
            if title.len() < MAX_TITLE * 4 {
                title.push_str(&decoded);
            }
        }
        _ => text.push_str(&decoded),
    }
}

/// White space runs as one space, trimmed, at most `max` bytes.
fn collapse(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    for word in text.split_whitespace() {
        if out.len() + word.len() + 1 > max {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Where `</name` starts in `haystack`, in any case.
fn find_closing(haystack: &str, name: &str) -> Option<usize> {
    let bytes = haystack.as_bytes();
    let name = name.as_bytes();
    (0..bytes.len()).find(|&at| {
        bytes[at..].starts_with(b"</")
            && bytes
                .get(at + 2..at + 2 + name.len())
                .is_some_and(|candidate| candidate.eq_ignore_ascii_case(name))
    })
}

/// The character references pages use for words: the five XML ones, the
/// no-break space and numeric references; others stay as written.
fn decode_references(raw: &str) -> std::borrow::Cow<'_, str> {
    if !raw.contains('&') {
        return std::borrow::Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let end = rest.find(';').filter(|&end| end <= 10);
        let decoded = end.and_then(|end| {
            let name = &rest[1..end];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some(' '),
                _ => name.strip_prefix('#').and_then(|number| {
                    match number.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok(),
                        None => number.parse().ok(),
                    }
                    .and_then(char::from_u32)
                }),
            };
            c.map(|c| (c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests;
