//! The UDP and TCP listeners.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::batch::{send, Outgoing, Received, UdpFd};
use crate::resolver::Immediate;
use crate::{DnsError, Resolver, Transport};

/// UDP requests being answered at once; more are dropped (a client
/// retries) rather than queued without bound.
const UDP_IN_FLIGHT: usize = 8192;
/// TCP connections served at once.
const TCP_CONNECTIONS: usize = 512;
/// A TCP connection idle this long is closed (RFC 7766 suggests seconds).
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Running listeners.
#[derive(Debug)]
pub struct DnsServer {
    udp: Vec<SocketAddr>,
    tcp: Vec<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

/// The receive buffer asked for on each UDP socket. The kernel default
/// (about 200 KiB) holds only a few hundred queries, so a burst from a
/// school's NAT at the start of a lesson would be dropped before the
/// listener wakes; unbound's `so-rcvbuf` exists for the same reason. The
/// kernel caps it at `net.core.rmem_max`.
const UDP_RECEIVE_BUFFER: usize = 4 << 20;

/// How many free ports to try when port 0 asks for any: the port the
/// kernel picks for UDP can be taken for TCP (by another program's
/// outgoing connection), so a fresh pair is tried.
const PORT_TRIES: usize = 16;

/// UDP sockets per address: one per core (at most this many), all bound
/// to the same port with `SO_REUSEPORT`, so the kernel spreads clients
/// over them (by address and port) and each receive loop runs on its own
/// worker instead of one loop receiving for every core.
const MAX_UDP_SOCKETS: usize = 8;

/// A UDP socket on `addr` that other sockets of this process may share
/// (`SO_REUSEPORT`; the kernel lets only the same user join), with the
/// large receive buffer, registered for reading only (see [`UdpFd`]).
fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpFd> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    if let Err(error) = socket.set_recv_buffer_size(UDP_RECEIVE_BUFFER) {
        tracing::warn!(%addr, %error, "could not enlarge the UDP receive buffer");
    }
    // `with_interest` is deprecated because an arbitrary `AsRawFd` type
    // could close or swap its descriptor while registered; a
    // `std::net::UdpSocket` owns its descriptor and closes it only when
    // dropped, after `AsyncFd` has deregistered it, which is the contract
    // the unsafe `register_with_interest` asks callers to uphold.
    #[allow(deprecated)]
    UdpFd::with_interest(
        std::net::UdpSocket::from(socket),
        tokio::io::Interest::READABLE,
    )
}

/// UDP sockets and a TCP listener on the same address and port.
async fn bind_pair(addr: SocketAddr) -> Result<(Vec<UdpFd>, TcpListener, SocketAddr), DnsError> {
    let udp_error = |addr, source| DnsError::Bind {
        addr,
        transport: "UDP",
        source,
    };
    let mut tries = 0;
    loop {
        tries += 1;
        let udp = bind_udp(addr).map_err(|source| udp_error(addr, source))?;
        let bound = udp
            .get_ref()
            .local_addr()
            .map_err(|source| udp_error(addr, source))?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => {
                let mut sockets = vec![udp];
                let wanted = std::thread::available_parallelism()
                    .map_or(1, usize::from)
                    .min(MAX_UDP_SOCKETS);
                while sockets.len() < wanted {
                    sockets.push(bind_udp(bound).map_err(|source| udp_error(bound, source))?);
                }
                return Ok((sockets, tcp, bound));
            }
            Err(source)
                if addr.port() == 0
                    && source.kind() == std::io::ErrorKind::AddrInUse
                    && tries < PORT_TRIES => {}
            Err(source) => {
                return Err(DnsError::Bind {
                    addr: bound,
                    transport: "TCP",
                    source,
                })
            }
        }
    }
}

impl DnsServer {
    /// Listens on each address over UDP and TCP. Port 0 picks a free port,
    /// the same one for both transports.
    pub async fn start(resolver: Arc<Resolver>, listen: &[SocketAddr]) -> Result<Self, DnsError> {
        let mut server = Self {
            udp: Vec::new(),
            tcp: Vec::new(),
            tasks: Vec::new(),
        };
        for addr in listen {
            let (udp, tcp, bound) = bind_pair(*addr).await?;
            server.udp.push(bound);
            server.tcp.push(bound);
            // One in-flight limit per address, shared by its sockets.
            let limit = Arc::new(Semaphore::new(UDP_IN_FLIGHT));
            for socket in udp {
                server.tasks.push(tokio::spawn(serve_udp(
                    Arc::new(socket),
                    resolver.clone(),
                    limit.clone(),
                )));
            }
            server
                .tasks
                .push(tokio::spawn(serve_tcp(tcp, resolver.clone())));
            tracing::info!(%bound, "DNS listening on UDP and TCP");
        }
        Ok(server)
    }

    pub fn udp_addrs(&self) -> &[SocketAddr] {
        &self.udp
    }

    pub fn tcp_addrs(&self) -> &[SocketAddr] {
        &self.tcp
    }

    /// Stops listening. Requests already being answered finish on their own.
    pub async fn stop(self) {
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// One socket's receive loop. Queries are taken in batches (see
/// [`crate::batch`]); whatever can be answered without waiting (blocks,
/// cache hits, refusals) is answered here, in the loop, without a task or a
/// copy of the packet, and the batch's answers leave together. Only a
/// question for the upstream is spawned, within the in-flight limit.
async fn serve_udp(socket: Arc<UdpFd>, resolver: Arc<Resolver>, limit: Arc<Semaphore>) {
    let v6 = socket
        .get_ref()
        .local_addr()
        .is_ok_and(|addr| addr.is_ipv6());
    let mut received = Received::new(v6);
    let mut outgoing = Outgoing::new();
    loop {
        let count = match received.receive(&socket).await {
            Ok(count) => count,
            Err(error) => {
                // ICMP errors from earlier sends surface here on some
                // systems; they concern one peer, not the socket.
                tracing::debug!(%error, "UDP receive failed");
                continue;
            }
        };
        for i in 0..count {
            let Some((packet, peer)) = received.get(i) else {
                metrics::counter!("sheepdog_dns_oversized_dropped_total").increment(1);
                continue;
            };
            match resolver.answer_now(packet, peer.ip(), Transport::Udp) {
                Immediate::Reply(None) => {}
                Immediate::Reply(Some(reply)) => outgoing.push(reply, peer),
                Immediate::Upstream(question) => {
                    let Ok(permit) = limit.clone().try_acquire_owned() else {
                        metrics::counter!("sheepdog_dns_overload_dropped_total").increment(1);
                        continue;
                    };
                    let socket = socket.clone();
                    let resolver = resolver.clone();
                    tokio::spawn(async move {
                        let reply = resolver
                            .answer_upstream(*question, peer.ip(), Transport::Udp)
                            .await;
                        if let Some(reply) = reply {
                            send(&socket, &reply, peer).await;
                        }
                        drop(permit);
                    });
                }
            }
        }
        outgoing.flush(&socket).await;
        // Waiting for a readable socket costs no cooperative budget, so
        // under steady load this loop would never yield its worker: the
        // event writer and the upstream tasks queued behind it starved
        // for long enough that the event channel filled and refused
        // events. A batch spends one unit; with the budget spent
        // (128 batches) the loop yields once.
        tokio::task::coop::consume_budget().await;
    }
}

async fn serve_tcp(listener: TcpListener, resolver: Arc<Resolver>) {
    let limit = Arc::new(Semaphore::new(TCP_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::debug!(%error, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            metrics::counter!("sheepdog_dns_overload_dropped_total").increment(1);
            continue;
        };
        let resolver = resolver.clone();
        tokio::spawn(async move {
            if let Err(error) = serve_connection(stream, peer, &resolver).await {
                tracing::debug!(%error, %peer, "TCP connection ended");
            }
            drop(permit);
        });
    }
}

/// RFC 7766 framing: a two-byte length, then the message; several queries
/// may follow on one connection, answered in order.
async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    resolver: &Resolver,
) -> std::io::Result<()> {
    loop {
        let len = match tokio::time::timeout(TCP_IDLE, stream.read_u16()).await {
            Ok(Ok(len)) => usize::from(len),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()),
        };
        if len == 0 {
            return Ok(());
        }
        let mut packet = vec![0u8; len];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut packet)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()),
        }
        let Some(reply) = resolver.handle(&packet, peer.ip(), Transport::Tcp).await else {
            // Nothing sensible to say to a stream that sent nonsense: close.
            return Ok(());
        };
        let reply_len = u16::try_from(reply.len()).unwrap_or(u16::MAX);
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&reply_len.to_be_bytes());
        framed.extend_from_slice(reply.get(..usize::from(reply_len)).unwrap_or(&reply));
        stream.write_all(&framed).await?;
    }
}
