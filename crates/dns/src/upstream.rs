//! Forwarding to the configured upstream resolvers.
//!
//! Each exchange has a per-attempt timeout; the upstreams are tried in
//! configured order, those known to be down last, until one answers or the
//! overall deadline passes. Health is known two ways. Passively: an
//! upstream that fails a client's question is put to the back for a few
//! seconds. Actively, when health checks are on: each upstream is asked a
//! probe question every interval, marked down after [`DOWN_AFTER`] failures
//! in a row and up again after one answer, so clients stop paying a dead
//! upstream's timeout and a recovered one is used again without waiting
//! for a client to try it. An answer with the TC bit over UDP is asked
//! again over TCP.
//!
//! DNS-over-TLS upstreams (RFC 7858) have their certificate verified for
//! the configured name against the public roots and any the school adds.
//! Their connections are kept open and shared (RFC 7858 section 3.4):
//! questions are pipelined on one connection and answers matched by
//! message ID, and a connection the server closes is replaced on the next
//! question, so a TLS handshake is paid once per connection rather than on
//! every cache miss.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use sheepdog_config::{Upstream, UpstreamTransport};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::oneshot;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::TlsConnector;

use crate::DnsError;

/// How long a failed upstream is put to the back of the queue.
const DOWN_FOR: Duration = Duration::from_secs(5);
/// Probe failures in a row that mark an upstream down: one lost UDP
/// packet should not.
pub const DOWN_AFTER: u32 = 2;
/// The EDNS payload size sheepdog asks upstreams for (the DNS flag day 2020
/// value, which avoids IP fragmentation).
pub const UPSTREAM_PAYLOAD: u16 = 1232;

/// Active health checks: the question each upstream is asked, and how often.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub every: Duration,
    pub name: Name,
    pub record_type: RecordType,
}

#[derive(Debug)]
struct UpstreamState {
    config: Upstream,
    /// The metric label.
    label: String,
    /// Milliseconds since `epoch` until which the upstream counts as down.
    down_until: AtomicU64,
    /// Marked down by the health checks.
    probed_down: AtomicBool,
    /// Probe failures in a row.
    probe_failures: AtomicU32,
    /// For a DNS-over-TLS upstream, its shared connection.
    tls: Option<DotConnections>,
}

impl UpstreamState {
    fn mark_up(&self) {
        self.down_until.store(0, Ordering::Relaxed);
        self.probe_failures.store(0, Ordering::Relaxed);
        if self.probed_down.swap(false, Ordering::Relaxed) {
            tracing::info!(upstream = %self.config, "upstream answers again");
            metrics::gauge!("sheepdog_dns_upstream_up", "upstream" => self.label.clone()).set(1.0);
        }
    }

    fn probe_failed(&self) {
        let failures = self.probe_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= DOWN_AFTER && !self.probed_down.swap(true, Ordering::Relaxed) {
            tracing::warn!(upstream = %self.config, failures, "upstream marked down by its health check");
            metrics::gauge!("sheepdog_dns_upstream_up", "upstream" => self.label.clone()).set(0.0);
        }
    }
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
    /// The upstream that answered.
    pub upstream: SocketAddr,
}

/// Every upstream failed, or there are none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllUpstreamsFailed;

/// One upstream's health as the checks see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamHealth {
    pub upstream: SocketAddr,
    /// False once the health checks have marked it down.
    pub up: bool,
}

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
                .map(|u| {
                    let label = u.to_string();
                    metrics::gauge!("sheepdog_dns_upstream_up", "upstream" => label.clone())
                        .set(1.0);
                    UpstreamState {
                        config: u.clone(),
                        label,
                        down_until: AtomicU64::new(0),
                        probed_down: AtomicBool::new(false),
                        probe_failures: AtomicU32::new(0),
                        tls: (u.transport == UpstreamTransport::Tls).then(DotConnections::default),
                    }
                })
                .collect(),
            timeout,
            attempt_timeout,
            epoch: Instant::now(),
            tls,
        }
    }

    /// Starts the health checks: one task per upstream, which ends when
    /// the upstreams are dropped. Needs a Tokio runtime.
    pub fn spawn_health_checks(self: &Arc<Self>, check: &HealthCheck) {
        for index in 0..self.list.len() {
            let upstreams = Arc::downgrade(self);
            tokio::spawn(probe_forever(upstreams, index, check.clone()));
        }
    }

    /// Each upstream's health, in configured order.
    pub fn health(&self) -> Vec<UpstreamHealth> {
        self.list
            .iter()
            .map(|u| UpstreamHealth {
                upstream: u.config.address,
                up: !u.probed_down.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// TLS connections opened to DNS-over-TLS upstreams so far (each one a
    /// handshake).
    pub fn tls_connections(&self) -> u64 {
        self.list
            .iter()
            .filter_map(|u| u.tls.as_ref())
            .map(|t| t.opened.load(Ordering::Relaxed))
            .sum()
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
        order.sort_by_key(|u| {
            (
                u.probed_down.load(Ordering::Relaxed),
                u.down_until.load(Ordering::Relaxed) > now,
            )
        });
        for upstream in order {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let attempt = exchange(upstream, self.tls.as_ref(), name, record_type);
            match tokio::time::timeout(self.attempt_timeout.min(left), attempt).await {
                Ok(Ok(message)) if answered(&message) => {
                    upstream.mark_up();
                    let elapsed = started.elapsed();
                    metrics::histogram!("sheepdog_dns_upstream_seconds")
                        .record(elapsed.as_secs_f64());
                    return Ok(Forwarded {
                        message,
                        elapsed,
                        upstream: upstream.config.address,
                    });
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

    /// Asks one upstream the probe question and records the outcome.
    async fn probe(&self, index: usize, check: &HealthCheck) {
        let Some(upstream) = self.list.get(index) else {
            return;
        };
        let attempt = exchange(upstream, self.tls.as_ref(), &check.name, check.record_type);
        match tokio::time::timeout(self.attempt_timeout, attempt).await {
            Ok(Ok(message)) if answered(&message) => upstream.mark_up(),
            _ => upstream.probe_failed(),
        }
    }
}

async fn probe_forever(upstreams: Weak<Upstreams>, index: usize, check: HealthCheck) {
    let mut ticks = tokio::time::interval(check.every.max(Duration::from_millis(10)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(upstreams) = upstreams.upgrade() else {
            return;
        };
        upstreams.probe(index, &check).await;
    }
}

/// An answer that counts as the upstream working: anything but SERVFAIL
/// and REFUSED (NXDOMAIN is a resolver doing its job).
fn answered(message: &Message) -> bool {
    !matches!(
        message.response_code(),
        ResponseCode::ServFail | ResponseCode::Refused
    )
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
    state: &UpstreamState,
    tls: Option<&TlsConnector>,
    name: &Name,
    record_type: RecordType,
) -> Result<Message, DnsError> {
    let upstream = &state.config;
    let request = question(name, record_type);
    match upstream.transport {
        UpstreamTransport::Udp => match exchange_udp(upstream.address, &request).await? {
            Some(response) if !response.truncated() => Ok(response),
            _ => exchange_tcp(upstream.address, &request).await,
        },
        UpstreamTransport::Tcp => exchange_tcp(upstream.address, &request).await,
        UpstreamTransport::Tls => {
            let address = upstream.address;
            let refused = |reason: &str| DnsError::Upstream {
                upstream: address.to_string(),
                source: std::io::Error::other(reason.to_string()),
            };
            let tls = tls.ok_or_else(|| refused("no TLS settings"))?;
            let connections = state
                .tls
                .as_ref()
                .ok_or_else(|| refused("no connection pool"))?;
            let name = upstream
                .server_name
                .clone()
                .and_then(|n| ServerName::try_from(n).ok())
                .ok_or_else(|| refused("no valid server name to verify"))?;
            connections.exchange(tls, address, name, request).await
        }
    }
}

/// The shared connection to one DNS-over-TLS upstream.
#[derive(Debug, Default)]
struct DotConnections {
    current: Mutex<Option<Arc<DotConnection>>>,
    /// Held while connecting, so that a burst of questions opens one
    /// connection rather than one each.
    connecting: tokio::sync::Mutex<()>,
    /// Connections opened (handshakes made).
    opened: AtomicU64,
}

impl DotConnections {
    fn live(&self) -> Option<Arc<DotConnection>> {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        current.as_ref().filter(|c| !c.shared.is_closed()).cloned()
    }

    /// The open connection, or a new one. `true` when it is new.
    async fn connection(
        &self,
        tls: &TlsConnector,
        address: SocketAddr,
        name: ServerName<'static>,
    ) -> Result<(Arc<DotConnection>, bool), DnsError> {
        if let Some(live) = self.live() {
            return Ok((live, false));
        }
        let _connecting = self.connecting.lock().await;
        if let Some(live) = self.live() {
            return Ok((live, false));
        }
        let stream = TcpStream::connect(address)
            .await
            .map_err(io_error(address))?;
        let _ = stream.set_nodelay(true);
        let stream = tls.connect(name, stream).await.map_err(io_error(address))?;
        self.opened.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("sheepdog_dns_upstream_tls_connections_total").increment(1);
        let connection = Arc::new(DotConnection::start(stream, address));
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(connection.clone());
        Ok((connection, true))
    }

    /// One question and its answer over the shared connection. A question
    /// that finds the connection closed under it (the server timed it out
    /// as idle, RFC 7766 section 6.2.3) is asked once more on a new one.
    async fn exchange(
        &self,
        tls: &TlsConnector,
        address: SocketAddr,
        name: ServerName<'static>,
        mut request: Message,
    ) -> Result<Message, DnsError> {
        let (connection, fresh) = self.connection(tls, address, name.clone()).await?;
        match connection.exchange(&mut request).await {
            Err(DotFailure::Closed(_)) if !fresh => {
                let (connection, _) = self.connection(tls, address, name).await?;
                connection.exchange(&mut request).await.map_err(Into::into)
            }
            outcome => outcome.map_err(Into::into),
        }
    }
}

/// A question waiting on a connection: its serial, and where its answer goes.
type Waiting = (u64, oneshot::Sender<Vec<u8>>);

/// What the reader and the askers of one connection share.
#[derive(Debug, Default)]
struct DotShared {
    /// Questions waiting for their answer, by message ID, with a serial so
    /// that a late clean-up cannot remove a newer question that reused
    /// the ID.
    pending: Mutex<HashMap<u16, Waiting>>,
    serial: AtomicU64,
    /// Answers read so far: a question that times out while others are
    /// being answered does not condemn the connection.
    answers: AtomicU64,
    closed: AtomicBool,
}

impl DotShared {
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        // Dropping the senders tells every waiting question.
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

/// One TLS connection: questions are written by whoever asks, answers read
/// by a task that hands each to its question.
#[derive(Debug)]
struct DotConnection {
    address: SocketAddr,
    writer: tokio::sync::Mutex<WriteHalf<TlsStream<TcpStream>>>,
    shared: Arc<DotShared>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for DotConnection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Why a question on a shared connection got no answer.
#[derive(Debug)]
enum DotFailure {
    /// The connection closed (or was closed) before the answer came.
    Closed(DnsError),
    Other(DnsError),
}

impl From<DotFailure> for DnsError {
    fn from(failure: DotFailure) -> Self {
        match failure {
            DotFailure::Closed(e) | DotFailure::Other(e) => e,
        }
    }
}

/// Removes a question from the pending table when its asker stops
/// waiting, answered or not; a question abandoned (timed out) while the
/// connection read nothing at all marks the connection dead.
struct PendingQuestion<'a> {
    shared: &'a DotShared,
    id: u16,
    serial: u64,
    answers_before: u64,
    answered: bool,
}

impl Drop for PendingQuestion<'_> {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        let mut pending = self
            .shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if pending
            .get(&self.id)
            .is_some_and(|(s, _)| *s == self.serial)
        {
            pending.remove(&self.id);
        }
        drop(pending);
        if self.shared.answers.load(Ordering::Relaxed) == self.answers_before {
            self.shared.close();
        }
    }
}

/// Closes the connection when dropped while still holding it.
struct HalfWritten<'a>(Option<&'a DotShared>);

impl Drop for HalfWritten<'_> {
    fn drop(&mut self) {
        if let Some(shared) = self.0 {
            shared.close();
        }
    }
}

impl DotConnection {
    fn start(stream: TlsStream<TcpStream>, address: SocketAddr) -> Self {
        let (reader, writer) = tokio::io::split(stream);
        let shared = Arc::new(DotShared::default());
        let reader = tokio::spawn(read_answers(reader, shared.clone()));
        Self {
            address,
            writer: tokio::sync::Mutex::new(writer),
            shared,
            reader,
        }
    }

    async fn exchange(&self, request: &mut Message) -> Result<Message, DotFailure> {
        let address = self.address;
        let closed = || {
            DotFailure::Closed(DnsError::Upstream {
                upstream: address.to_string(),
                source: std::io::Error::from(std::io::ErrorKind::ConnectionAborted),
            })
        };
        let (sender, receiver) = oneshot::channel();
        let serial = self.shared.serial.fetch_add(1, Ordering::Relaxed);
        let answers_before = self.shared.answers.load(Ordering::Relaxed);
        let id = {
            let mut pending = self
                .shared
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if self.shared.is_closed() {
                return Err(closed());
            }
            // 65,536 IDs: a free one is found at once unless the
            // connection is absurdly busy, when the question fails.
            let Some(id) = (0..64)
                .map(|_| fastrand::u16(..))
                .find(|id| !pending.contains_key(id))
            else {
                return Err(DotFailure::Other(DnsError::Upstream {
                    upstream: address.to_string(),
                    source: std::io::Error::other("too many questions in flight"),
                }));
            };
            pending.insert(id, (serial, sender));
            id
        };
        let mut question = PendingQuestion {
            shared: &self.shared,
            id,
            serial,
            answers_before,
            answered: false,
        };
        request.set_id(id);
        let framed = frame(request).map_err(DotFailure::Other)?;
        {
            let mut writer = self.writer.lock().await;
            // Given up on (timed out) half-way through its frame, a
            // question leaves the stream out of step: nobody may write on.
            let mut half_written = HalfWritten(Some(&self.shared));
            let written = async {
                writer.write_all(&framed).await?;
                writer.flush().await
            }
            .await;
            half_written.0 = None;
            if written.is_err() {
                self.shared.close();
                return Err(closed());
            }
        }
        let bytes = receiver.await.map_err(|_| closed())?;
        question.answered = true;
        let response = Message::from_vec(&bytes).map_err(|e| DotFailure::Other(e.into()))?;
        if answers(request, &response) {
            Ok(response)
        } else {
            Err(DotFailure::Other(DnsError::Mismatch {
                upstream: address.to_string(),
            }))
        }
    }
}

/// Reads framed answers until the connection ends, handing each to the
/// question with its ID; answers nobody waits for are dropped.
async fn read_answers(mut reader: ReadHalf<TlsStream<TcpStream>>, shared: Arc<DotShared>) {
    while let Ok(len) = reader.read_u16().await {
        let mut buffer = vec![0u8; usize::from(len)];
        if reader.read_exact(&mut buffer).await.is_err() {
            break;
        }
        let Some(id) = buffer.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]])) else {
            continue;
        };
        let waiting = shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        shared.answers.fetch_add(1, Ordering::Relaxed);
        if let Some((_, sender)) = waiting {
            let _ = sender.send(buffer);
        }
    }
    shared.close();
}

/// A message with its two-byte length (RFC 1035 section 4.2.2), as TCP and
/// TLS carry it.
fn frame(message: &Message) -> Result<Vec<u8>, DnsError> {
    let bytes = message.to_vec()?;
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(&bytes);
    Ok(framed)
}

fn io_error(address: SocketAddr) -> impl Fn(std::io::Error) -> DnsError {
    move |source| DnsError::Upstream {
        upstream: address.to_string(),
        source,
    }
}

/// The room for an upstream's UDP answer: more than the
/// [`UPSTREAM_PAYLOAD`] we advertise, so a compliant upstream always fits.
const UDP_ANSWER_ROOM: usize = 4096;

/// One question and answer over UDP; `None` when the answer did not fit in
/// [`UDP_ANSWER_ROOM`] (an upstream ignoring our payload size), to be
/// asked again over TCP as if truncated.
async fn exchange_udp(address: SocketAddr, request: &Message) -> Result<Option<Message>, DnsError> {
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
    // Not the largest datagram's 64 KiB, one per exchange in flight: an
    // upstream that honours the payload size we advertise fits in the
    // room, and one that does not is asked again over TCP. Not zeroed:
    // filling it for every exchange cost more than the rest of a cache
    // miss. One byte over the room tells a longer datagram.
    let mut buffer = Vec::with_capacity(UDP_ANSWER_ROOM + 1);
    loop {
        buffer.clear();
        socket
            .recv_buf(&mut buffer)
            .await
            .map_err(io_error(address))?;
        if buffer.len() > UDP_ANSWER_ROOM {
            return Ok(None);
        }
        // Anything that is not the answer to this question (a late answer
        // to an earlier one, or a spoofing attempt) is ignored.
        if let Ok(response) = Message::from_vec(&buffer) {
            if answers(request, &response) {
                return Ok(Some(response));
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

/// One question and answer over a TCP connection of its own.
async fn framed_exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    address: SocketAddr,
    request: &Message,
) -> Result<Message, DnsError> {
    let framed = frame(request)?;
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

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{RData, Record};
    use tokio::net::TcpListener;

    use super::*;

    /// The answer to `request`: one A record, 192.0.2.`last`.
    fn answer(request: &Message, last: u8) -> Vec<u8> {
        let mut reply = Message::new();
        reply
            .set_id(request.id())
            .set_message_type(MessageType::Response)
            .set_op_code(OpCode::Query)
            .add_queries(request.queries().to_vec());
        if let Some(q) = request.queries().first() {
            reply.add_answer(Record::from_rdata(
                q.name().clone(),
                60,
                RData::A(A::new(192, 0, 2, last)),
            ));
        }
        reply.to_vec().unwrap()
    }

    /// An upstream that ignores the payload size we advertise: its UDP
    /// answers (192.0.2.7) are padded to 6 000 bytes, its TCP answers
    /// (192.0.2.8) are not.
    async fn oversized_upstream() -> SocketAddr {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let address = udp.local_addr().unwrap();
        let tcp = TcpListener::bind(address).await.unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = udp.recv_from(&mut buf).await {
                let request = Message::from_vec(&buf[..n]).unwrap();
                let mut big = answer(&request, 7);
                big.resize(6_000, 0);
                let _ = udp.send_to(&big, from).await;
            }
        });
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = tcp.accept().await {
                let mut len = [0u8; 2];
                stream.read_exact(&mut len).await.unwrap();
                let mut request = vec![0u8; usize::from(u16::from_be_bytes(len))];
                stream.read_exact(&mut request).await.unwrap();
                let reply = answer(&Message::from_vec(&request).unwrap(), 8);
                let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&reply);
                stream.write_all(&framed).await.unwrap();
            }
        });
        address
    }

    #[tokio::test]
    async fn an_answer_too_long_for_udp_is_asked_again_over_tcp() {
        let address = oversized_upstream().await;
        let upstreams = Upstreams::new(
            &[Upstream {
                address,
                transport: UpstreamTransport::Udp,
                server_name: None,
            }],
            Duration::from_secs(5),
            Duration::from_secs(5),
            None,
        );
        let name = Name::from_str("big.example.").unwrap();
        let forwarded = upstreams.resolve(&name, RecordType::A).await.unwrap();
        let answers = forwarded.message.answers();
        assert_eq!(answers.len(), 1);
        assert_eq!(answers[0].data(), &RData::A(A::new(192, 0, 2, 8)));
    }
}
