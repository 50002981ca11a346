use std::io::Write;

use http_body_util::{BodyExt, Full};
use proptest::prelude::*;

use super::*;

const PAGE: &str = "<!doctype html><html><head><title>How to &amp; why: a\n  page</title>\
    <style>body { color: red }</style><script>var kill = 'myself';</script></head>\
    <body><!-- a comment with words --><h1>Revision</h1><p>Photosynthesis&nbsp;in \
    <b>plants</b>&#44; caf&eacute; &#x41;</p></body></html>";

fn event() -> DecisionEvent {
    DecisionEvent {
        at: chrono::Utc::now(),
        source: sheepdog_store::EventSource::Proxy,
        client: "10.0.4.17".into(),
        device_id: None,
        device_name: None,
        person_id: Some(7),
        group: Some("pupils".into()),
        target: "http://example.test/page".into(),
        query_type: None,
        action: "allow".into(),
        illegal: false,
        category: None,
        list: None,
        rule: None,
        upstream_ms: None,
        search_term: None,
        school_id: Some(1),
    }
}

#[test]
fn the_title_and_the_words_are_read_and_code_is_not() {
    let (title, text) = title_and_text(PAGE);
    assert_eq!(title.as_deref(), Some("How to & why: a page"));
    assert_eq!(text, "Revision Photosynthesis in plants , caf&eacute; A");
    assert!(!text.contains("kill") && !text.contains("color") && !text.contains("comment"));
}

#[test]
fn unclosed_and_odd_markup_ends_without_panicking() {
    for html in [
        "<title>only a title",
        "<script>never closed",
        "<!-- never closed",
        "text < not a tag",
        "&#xFFFFFFFF; &#99999999; &; &amp",
        "<TITLE>Upper</TITLE><SCRIPT>x</SCRIPT>after",
    ] {
        let _ = title_and_text(html);
    }
    assert_eq!(
        title_and_text("<TITLE>Upper</TITLE><SCRIPT>x</SCRIPT>after"),
        (Some("Upper".to_string()), "after".to_string())
    );
}

proptest! {
    #[test]
    fn any_text_is_read_within_bounds(html in "(<[a-zA-Z/!-]{0,8}>?|&#?[a-z0-9]{0,6};?|[^<&]{0,40}){0,60}") {
        let (title, text) = title_and_text(&html);
        prop_assert!(text.len() <= MAX_TEXT);
        prop_assert!(title.map_or(0, |t| t.len()) <= MAX_TITLE);
    }
}

#[test]
fn only_gzip_is_asked_for_when_the_browser_takes_it() {
    let mut headers = HeaderMap::new();
    headers.insert(
        ACCEPT_ENCODING,
        HeaderValue::from_static("gzip, deflate, br, zstd"),
    );
    narrow_accept_encoding(&mut headers);
    assert_eq!(headers[ACCEPT_ENCODING], "gzip");
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("br"));
    narrow_accept_encoding(&mut headers);
    assert_eq!(headers[ACCEPT_ENCODING], "br");
}

fn body_of(bytes: Vec<u8>) -> Body {
    Full::new(Bytes::from(bytes))
        .map_err(|never| match never {})
        .boxed()
}

async fn through(
    content_type: &str,
    encoding: Option<&str>,
    sent: Vec<u8>,
) -> (Vec<u8>, Option<PageSeen>) {
    let (pages, mut seen) = mpsc::channel(4);
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap());
    if let Some(encoding) = encoding {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_str(encoding).unwrap());
    }
    let body = read_page(&headers, body_of(sent), &event(), &pages);
    let received = body.collect().await.unwrap().to_bytes().to_vec();
    (received, seen.try_recv().ok())
}

#[tokio::test]
async fn a_page_goes_to_the_browser_unchanged_and_to_monitoring_read() {
    let (received, page) =
        through("text/html; charset=utf-8", None, PAGE.as_bytes().to_vec()).await;
    assert_eq!(received, PAGE.as_bytes());
    let page = page.expect("the page was handed on");
    assert_eq!(page.title.as_deref(), Some("How to & why: a page"));
    assert!(page.text.contains("Photosynthesis in plants"));
    assert_eq!(page.event.person_id, Some(7));

    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(PAGE.as_bytes()).unwrap();
    let compressed = gzip.finish().unwrap();
    let (received, page) = through("text/html", Some("gzip"), compressed.clone()).await;
    assert_eq!(
        received, compressed,
        "the browser gets the bytes the origin sent"
    );
    assert_eq!(page.unwrap().title.as_deref(), Some("How to & why: a page"));
}

#[tokio::test]
async fn other_bodies_are_not_read() {
    let (received, page) = through("image/png", None, b"<title>not a page</title>".to_vec()).await;
    assert_eq!(received, b"<title>not a page</title>");
    assert!(page.is_none());
    let (_, page) = through("text/html", Some("br"), b"\x1b\x00".to_vec()).await;
    assert!(page.is_none(), "an encoding the proxy cannot read");
}

#[tokio::test]
async fn a_long_page_is_read_from_its_start_and_a_cut_gzip_stream_as_far_as_it_goes() {
    let long = format!("<title>Long</title>{}", "word ".repeat(40_000));
    let (received, page) = through("text/html", None, long.as_bytes().to_vec()).await;
    assert_eq!(received.len(), long.len());
    let page = page.unwrap();
    assert_eq!(page.title.as_deref(), Some("Long"));
    assert!(page.text.len() <= MAX_TEXT && page.text.starts_with("word word"));

    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
    gzip.write_all(long.as_bytes()).unwrap();
    let compressed = gzip.finish().unwrap();
    assert!(compressed.len() > MAX_KEPT);
    let (_, page) = through("text/html", Some("gzip"), compressed).await;
    assert_eq!(page.unwrap().title.as_deref(), Some("Long"));
}
