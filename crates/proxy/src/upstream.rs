//! Each client connection's own HTTP/1.1 connection to the origin it last
//! asked for, driven by the client connection's task.
//!
//! A shared, pooled client (hyper-util's) runs every origin connection as a
//! task of its own: each forwarded request then crosses tasks, and perhaps
//! cores, several times (into the pool, to the connection task and back,
//! once per body chunk), and takes the pool's lock twice. A browser sends
//! one request at a time on a keep-alive connection, mostly to one site, so
//! here the client connection keeps the origin connection it opened and
//! polls it itself: while it waits for the response head, and while hyper
//! polls the response body to write it to the client. No other task is
//! involved (`bench/proxy/callgrind.sh`; docs/benchmarks.md, session 6).
//!
//! The kept connection is dropped when the client connection ends, when the
//! client asks for another origin, or when the origin closes it; a request
//! that a kept connection turns away before any of it was sent is tried
//! once more on a fresh one, as the pooled client did.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper::header::{HeaderValue, HOST};
use hyper::http::uri::{Authority, Scheme};
use hyper::{Request, Response, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tower_service::Service;

type OriginConnection = Connection<TokioIo<tokio::net::TcpStream>, Incoming>;

/// The origin connection one client connection keeps between requests
/// (a new one for each client connection; clones share it).
#[derive(Debug, Default, Clone)]
pub struct Upstream {
    kept: Arc<Mutex<Option<Kept>>>,
}

struct Kept {
    authority: Authority,
    sender: SendRequest<Incoming>,
    /// `None` once it has ended: dropping it at once answers a request
    /// still queued on it (handed back unsent), which a finished but
    /// undropped connection would leave waiting.
    connection: Option<OriginConnection>,
}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kept")
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

/// Why a request could not be sent to the origin.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("the request names no host")]
    NoHost,
    #[error("cannot connect ({0:#})")]
    Connect(Box<dyn std::error::Error + Send + Sync>),
    #[error("{0}")]
    Http(#[from] hyper::Error),
}

impl Upstream {
    /// Sends `request` (absolute form) to its origin over the kept
    /// connection, or a new one made with `connector`, and returns the
    /// response, whose body keeps driving the connection as it is read.
    pub(crate) async fn send(
        &self,
        connector: &HttpConnector,
        mut request: Request<Incoming>,
    ) -> Result<Response<OriginBody>, UpstreamError> {
        let authority = request
            .uri()
            .authority()
            .cloned()
            .ok_or(UpstreamError::NoHost)?;
        let dial = request.uri().clone();
        prepare(&mut request, &dial);
        let kept = self.take(&authority);
        let (mut kept, reused) = match kept {
            Some(kept) => (kept, true),
            None => (
                open(connector, authority.clone(), dial.clone()).await?,
                false,
            ),
        };
        let response = match exchange(&mut kept, request).await {
            Ok(response) => response,
            Err(mut refused) => match refused.take_message() {
                // Turned away before a byte of it went out: the kept
                // connection had been closed by the origin.
                Some(request) if reused => {
                    kept = open(connector, authority, dial).await?;
                    exchange(&mut kept, request)
                        .await
                        .map_err(|e| UpstreamError::Http(e.into_error()))?
                }
                _ => return Err(UpstreamError::Http(refused.into_error())),
            },
        };
        let (parts, body) = response.into_parts();
        Ok(Response::from_parts(
            parts,
            OriginBody {
                body,
                kept: Some(kept),
                upstream: self.clone(),
            },
        ))
    }

    /// The kept connection, if it goes to `authority` and has not ended;
    /// any other is closed.
    fn take(&self, authority: &Authority) -> Option<Kept> {
        let mut kept = self.kept.lock().ok()?.take()?;
        if kept.authority != *authority || kept.sender.is_closed() {
            return None;
        }
        // One poll finishes the last exchange (the connection turns idle
        // and asks for the next request, which then goes straight out,
        // about 1k instructions fewer than queueing it), and notices an origin
        // that closed the connection while idle. A closing it misses is
        // found by the first poll in `exchange`, which hands the request
        // back unsent for `send` to try on a new connection. No waker is
        // needed: `exchange` polls it again at once.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match Pin::new(kept.connection.as_mut()?).poll(&mut cx) {
            Poll::Pending => Some(kept),
            Poll::Ready(_) => None,
        }
    }

    fn keep(&self, kept: Kept) {
        if let Ok(mut slot) = self.kept.lock() {
            *slot = Some(kept);
        }
    }
}

/// What the pooled client did to a proxied request before sending it: a
/// Host header when the client sent none, and the target in origin form.
fn prepare<B>(request: &mut Request<B>, uri: &Uri) {
    if !request.headers().contains_key(HOST) {
        let host = match (uri.host(), uri.port_u16()) {
            (Some(host), Some(port)) if port != 80 => {
                HeaderValue::from_str(&format!("{host}:{port}"))
            }
            (Some(host), _) => HeaderValue::from_str(host),
            (None, _) => HeaderValue::from_str(""),
        };
        if let Ok(host) = host {
            request.headers_mut().insert(HOST, host);
        }
    }
    *request.uri_mut() = match uri.path_and_query() {
        Some(path) if path.as_str() != "/" => {
            let mut parts = hyper::http::uri::Parts::default();
            parts.path_and_query = Some(path.clone());
            Uri::from_parts(parts).unwrap_or_default()
        }
        _ => Uri::default(),
    };
}

/// A new connection to `authority`, dialled as `dial` says.
async fn open(
    connector: &HttpConnector,
    authority: Authority,
    dial: Uri,
) -> Result<Kept, UpstreamError> {
    let mut connector = connector.clone();
    // The connector dials what the URI names; the scheme is always http
    // here (https goes through CONNECT).
    let mut parts = dial.into_parts();
    parts.scheme = Some(Scheme::HTTP);
    let dial = Uri::from_parts(parts).map_err(|e| UpstreamError::Connect(e.into()))?;
    let io = connector
        .call(dial)
        .await
        .map_err(|e| UpstreamError::Connect(e.into()))?;
    let (sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    Ok(Kept {
        authority,
        sender,
        connection: Some(connection),
    })
}

/// Sends one request and waits for its response head, polling the
/// connection meanwhile. A request the connection did not take comes back
/// in the error.
async fn exchange(
    kept: &mut Kept,
    request: Request<Incoming>,
) -> Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<Incoming>>> {
    let mut response = std::pin::pin!(kept.sender.try_send_request(request));
    let connection = &mut kept.connection;
    poll_fn(|cx| {
        if let Some(running) = connection {
            // Its end (an error, or the origin closing) reaches the
            // response future once it is dropped.
            if Pin::new(running).poll(cx).is_ready() {
                *connection = None;
            }
        }
        response.as_mut().poll(cx)
    })
    .await
}

/// A response body from the origin that drives its connection while the
/// client connection reads it, and gives the connection back for the next
/// request once the body has ended.
#[derive(Debug)]
pub struct OriginBody {
    body: Incoming,
    /// `None` once the connection has ended or been given back.
    kept: Option<Kept>,
    upstream: Upstream,
}

impl OriginBody {
    fn drive(&mut self, cx: &mut Context<'_>) {
        let ended = match self.kept.as_mut().and_then(|k| k.connection.as_mut()) {
            Some(connection) => Pin::new(connection).poll(cx).is_ready(),
            None => true,
        };
        if ended {
            // Closed: the body has whatever it will get.
            self.kept = None;
        }
    }

    fn give_back(&mut self) {
        if let Some(kept) = self.kept.take() {
            self.upstream.keep(kept);
        }
    }
}

impl Body for OriginBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        this.drive(cx);
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            // The connection finishes the message, and turns idle, on its
            // next poll.
            this.drive(cx);
            this.give_back();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for OriginBody {
    fn drop(&mut self) {
        // hyper drops a body it knows is empty without reading it; the
        // connection is then as reusable as after a read body. A body
        // dropped half-read leaves the connection mid-message: it closes.
        if self.body.is_end_stream() {
            self.give_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared(target: &str, host: Option<&str>) -> (String, Option<String>) {
        let uri: Uri = target.parse().unwrap();
        let mut request = Request::builder().uri(uri.clone());
        if let Some(host) = host {
            request = request.header(HOST, host);
        }
        let mut request = request.body(()).unwrap();
        prepare(&mut request, &uri);
        let host = request
            .headers()
            .get(HOST)
            .map(|h| h.to_str().unwrap().to_string());
        (request.uri().to_string(), host)
    }

    #[test]
    fn requests_go_in_origin_form_keeping_the_clients_host() {
        assert_eq!(
            prepared("http://192.0.2.1:8080/a?b=c", Some("example.test")),
            ("/a?b=c".to_string(), Some("example.test".to_string()))
        );
        assert_eq!(
            prepared("http://example.test", Some("example.test")),
            ("/".to_string(), Some("example.test".to_string()))
        );
    }

    #[test]
    fn a_request_without_a_host_gets_the_targets() {
        assert_eq!(
            prepared("http://example.test:8080/x", None),
            ("/x".to_string(), Some("example.test:8080".to_string()))
        );
        assert_eq!(
            prepared("http://example.test:80/", None),
            ("/".to_string(), Some("example.test".to_string()))
        );
    }
}
