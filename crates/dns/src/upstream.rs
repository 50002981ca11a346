//! Forwarding to the configured upstream resolvers.
//!
//! Each exchange has a per-attempt timeout; the upstreams are tried in
//! configured order, those that failed recently last, until one answers or
//! the overall deadline passes. An upstream that fails is marked down for a
//! few seconds, which is the passive health check: the next queries go to
//! the others first, and it is tried again once the mark lapses. An answer
//! with the TC bit over UDP is asked again over TCP. DNS-over-TLS upstreams
//! (RFC 7858) have their certificate verified for the configured name
//! against the public roots and any the school adds; each exchange opens
//! its own connection.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use sheepdog_config::{Upstream, UpstreamTransport};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::TlsConnector;

use crate::DnsError;

/// How long a failed upstream is put to the back of the queue.
const DOWN_FOR: Duration = Duration::from_secs(5);
/// The EDNS payload size sheepdog asks upstreams for (the DNS flag day 2020
/// value, which avoids IP fragmentation).
pub const UPSTREAM_PAYLOAD: u16 = 1232;

#[derive(Debug)]
struct UpstreamState {
    config: Upstream,
    /// Milliseconds since `epoch` until which the upstream counts as down.
    down_until: AtomicU64,
}

/// The upstream resolvers and their health.
pub struct Upstreams {
    list: Vec<UpstreamState>,
    timeout: Duration,
    attempt_timeout: Duration,
    epoch: Instant,
    /// For DNS-over-TLS upstreams, when there are any.
    tls: Option<TlsConnector>,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstreams")
            .field("list", &self.list)
            .field("timeout", &self.timeout)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// An upstream's answer.
#[derive(Debug, Clone)]
pub struct Forwarded {
    pub message: Message,
    pub elapsed: Duration,
}

/// Every upstream failed, or there are none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllUpstreamsFailed;

impl Upstreams {
    /// The upstreams in `list`; `roots` is a PEM file of extra authorities
    /// for DNS-over-TLS upstreams.
    pub fn new(
        list: &[Upstream],
        timeout: Duration,
        attempt_timeout: Duration,
        roots: Option<&std::path::Path>,
    ) -> Self {
        let tls = list
            .iter()
            .any(|u| u.transport == UpstreamTransport::Tls)
            .then(|| tls_connector(roots))
            .flatten();
        Self {
            list: list
                .iter()
                .map(|u| UpstreamState {
                    config: u.clone(),
                    down_until: AtomicU64::new(0),
                })
                .collect(),
            timeout,
            attempt_timeout,
            epoch: Instant::now(),
            tls,
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Asks the upstreams, in order of health, for `name`/`record_type`,
    /// within the overall timeout.
    pub async fn resolve(
        &self,
        name: &Name,
        record_type: RecordType,
    ) -> Result<Forwarded, AllUpstreamsFailed> {
        let started = Instant::now();
        let deadline = started + self.timeout;
        let now = self.now_ms();
        let mut order: Vec<&UpstreamState> = self.list.iter().collect();
        // Stable: configured order within the healthy and the down.
        order.sort_by_key(|u| u.down_until.load(Ordering::Relaxed) > now);
        for upstream in order {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let attempt = exchange(&upstream.config, self.tls.as_ref(), name, record_type);
            match tokio::time::timeout(self.attempt_timeout.min(left), attempt).await {
                Ok(Ok(message))
                    if !matches!(
                        message.response_code(),
                        ResponseCode::ServFail | ResponseCode::Refused
                    ) =>
                {
                    upstream.down_until.store(0, Ordering::Relaxed);
                    let elapsed = started.elapsed();
                    metrics::histogram!("sheepdog_dns_upstream_seconds")
                        .record(elapsed.as_secs_f64());
                    return Ok(Forwarded { message, elapsed });
                }
                outcome => {
                    let why = match outcome {
                        Ok(Ok(m)) => m.response_code().to_string(),
                        Ok(Err(e)) => e.to_string(),
                        Err(_) => "timed out".to_string(),
                    };
                    tracing::debug!(upstream = %upstream.config, %why, "upstream failed");
                    metrics::counter!("sheepdog_dns_upstream_errors_total").increment(1);
                    upstream.down_until.store(
                        self.now_ms() + DOWN_FOR.as_millis() as u64,
                        Ordering::Relaxed,
                    );
                }
            }
        }
        metrics::counter!("sheepdog_dns_upstream_failures_total").increment(1);
        Err(AllUpstreamsFailed)
    }
}

fn question(name: &Name, record_type: RecordType) -> Message {
    let mut message = Message::new();
    let mut query = Query::query(name.clone(), record_type);
    query.set_query_class(DNSClass::IN);
    let mut edns = Edns::new();
    edns.set_max_payload(UPSTREAM_PAYLOAD);
    message
        .set_id(fastrand::u16(..))
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(query);
    message.set_edns(edns);
    message
}

fn answers(request: &Message, response: &Message) -> bool {
    response.id() == request.id()
        && response.message_type() == MessageType::Response
        && response.queries() == request.queries()
}

/// TLS settings for DNS-over-TLS upstreams: Mozilla's roots and those in
/// `extra`. A file that cannot be read is reported and left out, so its
/// upstreams fail verification (and SERVFAIL) rather than being trusted.
fn tls_connector(extra: Option<&std::path::Path>) -> Option<TlsConnector> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = extra {
        match CertificateDer::pem_file_iter(path).map(|i| i.collect::<Result<Vec<_>, _>>()) {
            Ok(Ok(certificates)) => {
                for certificate in certificates {
                    if let Err(error) = roots.add(certificate) {
                        tracing::error!(%error, path = %path.display(), "[dns] upstream_roots: a certificate is unusable");
                    }
                }
            }
            Ok(Err(error)) => {
                tracing::error!(%error, path = %path.display(), "[dns] upstream_roots is not PEM")
            }
            Err(error) => {
                tracing::error!(%error, path = %path.display(), "cannot read [dns] upstream_roots")
            }
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(builder) => Some(TlsConnector::from(std::sync::Arc::new(
            builder.with_root_certificates(roots).with_no_client_auth(),
        ))),
        Err(error) => {
            tracing::error!(%error, "no TLS for DNS-over-TLS upstreams");
            None
        }
    }
}

async fn exchange(
    upstream: &Upstream,
    tls: Option<&TlsConnector>,
    name: &Name,
    record_type: RecordType,
) -> Result<Message, DnsError> {
    let request = question(name, record_type);
    match upstream.transport {
        UpstreamTransport::Udp => {
            let response = exchange_udp(upstream.address, &request).await?;
            if response.truncated() {
                exchange_tcp(upstream.address, &request).await
            } else {
                Ok(response)
            }
        }
        UpstreamTransport::Tcp => exchange_tcp(upstream.address, &request).await,
        UpstreamTransport::Tls => {
            let address = upstream.address;
            let refused = |reason: String| DnsError::Upstream {
                upstream: address.to_string(),
                source: std::io::Error::other(reason),
            };
            let tls = tls.ok_or_else(|| refused("no TLS settings".to_string()))?;
            let name = upstream
                .server_name
                .clone()
                .and_then(|n| ServerName::try_from(n).ok())
                .ok_or_else(|| refused("no valid server name to verify".to_string()))?;
            let stream = TcpStream::connect(address)
                .await
                .map_err(io_error(address))?;
            let _ = stream.set_nodelay(true);
            let stream = tls.connect(name, stream).await.map_err(io_error(address))?;
            framed_exchange(stream, address, &request).await
        }
    }
}

fn io_error(address: SocketAddr) -> impl Fn(std::io::Error) -> DnsError {
    move |source| DnsError::Upstream {
        upstream: address.to_string(),
        source,
    }
}

async fn exchange_udp(address: SocketAddr, request: &Message) -> Result<Message, DnsError> {
    // A loopback upstream is reached from a loopback socket; others from
    // any local address.
    let local: IpAddr = match (address.ip().is_loopback(), address.is_ipv4()) {
        (true, true) => Ipv4Addr::LOCALHOST.into(),
        (true, false) => Ipv6Addr::LOCALHOST.into(),
        (false, true) => Ipv4Addr::UNSPECIFIED.into(),
        (false, false) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = UdpSocket::bind(SocketAddr::new(local, 0))
        .await
        .map_err(io_error(address))?;
    socket.connect(address).await.map_err(io_error(address))?;
    socket
        .send(&request.to_vec()?)
        .await
        .map_err(io_error(address))?;
    let mut buffer = vec![0u8; 65_535];
    loop {
        let len = socket.recv(&mut buffer).await.map_err(io_error(address))?;
        // Anything that is not the answer to this question (a late answer
        // to an earlier one, or a spoofing attempt) is ignored.
        if let Ok(response) = Message::from_vec(buffer.get(..len).unwrap_or(&[])) {
            if answers(request, &response) {
                return Ok(response);
            }
        }
    }
}

async fn exchange_tcp(address: SocketAddr, request: &Message) -> Result<Message, DnsError> {
    let stream = TcpStream::connect(address)
        .await
        .map_err(io_error(address))?;
    framed_exchange(stream, address, request).await
}

/// One question and answer over a stream, each with its two-byte length
/// (RFC 1035 section 4.2.2), as TCP and TLS carry them.
async fn framed_exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    address: SocketAddr,
    request: &Message,
) -> Result<Message, DnsError> {
    let bytes = request.to_vec()?;
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(&bytes);
    stream.write_all(&framed).await.map_err(io_error(address))?;
    let len = stream.read_u16().await.map_err(io_error(address))?;
    let mut buffer = vec![0u8; usize::from(len)];
    stream
        .read_exact(&mut buffer)
        .await
        .map_err(io_error(address))?;
    let response = Message::from_vec(&buffer)?;
    if answers(request, &response) {
        Ok(response)
    } else {
        Err(DnsError::Mismatch {
            upstream: address.to_string(),
        })
    }
}
