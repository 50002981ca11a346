//! Datagrams in batches: `recvmmsg(2)` and `sendmmsg(2)`.
//!
//! Under load most of a UDP server's time is the kernel's, not ours (on
//! loopback about three quarters, measured with `perf` in
//! docs/benchmarks.md): a system call per query in, another per answer out,
//! and for each answer a wake-up of the client. Taking every query the
//! socket holds (up to [`BATCH`]) in one call and sending their answers in
//! one call spends those costs once per batch. With one query waiting a
//! batch is one query, so a quiet server answers as promptly as before.
//!
//! The sockets are registered with the runtime for reading only
//! ([`UdpFd`]). A socket registered for writing too (as tokio's
//! `UdpSocket` is) has every answer it sends on loopback report the socket
//! writable again as the kernel frees the datagram, and that report wakes
//! whichever worker is parked in `epoll_wait`: a context switch per batch
//! of answers, for readiness nothing waits on. A send that finds the
//! socket's buffer full retries after a pause instead (see [`send`]).

use std::cell::RefCell;
use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::sys::socket::{recvmmsg, sendmmsg, MsgFlags, MultiHeaders, SockaddrStorage};
use tokio::io::unix::AsyncFd;

/// A UDP socket the runtime watches for reading only.
pub(crate) type UdpFd = AsyncFd<std::net::UdpSocket>;

/// A send that finds the socket's buffer full is tried again after each
/// of these pauses, then given up (and counted): UDP answers may be lost,
/// and the client asks again.
const SEND_PAUSES: [Duration; 4] = [
    Duration::from_micros(200),
    Duration::from_millis(1),
    Duration::from_millis(5),
    Duration::from_millis(20),
];

/// Datagrams taken or sent per system call.
pub(crate) const BATCH: usize = 32;

/// The largest request kept whole. DNS questions are a few hundred bytes
/// at most; a longer datagram is cut short by the kernel, flagged, and
/// dropped by [`Received::get`]'s caller rather than judged from its first
/// bytes.
pub(crate) const SLOT: usize = 4096;

thread_local! {
    /// `recvmmsg`'s headers, kept from batch to batch on each worker
    /// thread: they hold raw pointers, so a task (which must be `Send`)
    /// cannot keep them, and making them for every call (two allocations,
    /// 5 KiB zeroed and copied) cost 650 instructions, half of a batch's
    /// receiving when batches are small. One set per address family: the
    /// kernel shortens each header's address length to the sender's, so a
    /// set used for IPv4 senders would cut IPv6 addresses short.
    static HEADERS: RefCell<[Option<MultiHeaders<SockaddrStorage>>; 2]> =
        const { RefCell::new([None, None]) };
    /// `sendmmsg`'s headers, kept likewise; `sendmmsg` sets every address
    /// length it sends to, so one set serves both families.
    static SEND_HEADERS: RefCell<Option<MultiHeaders<SockaddrStorage>>> =
        const { RefCell::new(None) };
}

/// Received datagrams and the buffers they live in; reused batch after
/// batch.
pub(crate) struct Received {
    buffers: Box<[[u8; SLOT]; BATCH]>,
    /// Which of [`HEADERS`] the socket's senders fit: 1 for IPv6.
    family: usize,
    /// Per datagram of the last batch: its length, sender, and whether it
    /// was longer than [`SLOT`].
    got: Vec<(usize, Option<SocketAddr>, bool)>,
}

impl Received {
    /// Buffers for a socket bound to an IPv6 (`v6`) or IPv4 address.
    pub(crate) fn new(v6: bool) -> Self {
        Self {
            buffers: Box::new([[0u8; SLOT]; BATCH]),
            family: usize::from(v6),
            got: Vec::with_capacity(BATCH),
        }
    }

    /// Waits until the socket has datagrams and takes up to [`BATCH`] of
    /// them; returns how many.
    ///
    /// A batch shorter than [`BATCH`] emptied the socket's queue, so it is
    /// reported to tokio as `WouldBlock`, which clears the socket's
    /// readiness as an empty `recvmmsg` would, without making that call:
    /// it was one receive call in three under load, and one in two at a
    /// low rate. Nothing is missed: a datagram arriving after the batch
    /// was taken raises a new readiness event, as one arriving after an
    /// empty call would.
    pub(crate) async fn receive(&mut self, socket: &UdpFd) -> std::io::Result<usize> {
        loop {
            let mut ready = socket.readable().await?;
            let taken = ready.try_io(|fd| match self.take(fd.get_ref())? {
                BATCH => Ok(BATCH),
                _ => Err(std::io::ErrorKind::WouldBlock.into()),
            });
            match taken {
                Ok(result) => return result,
                Err(_would_block) => {
                    if !self.got.is_empty() {
                        return Ok(self.got.len());
                    }
                }
            }
        }
    }

    fn take(&mut self, socket: &std::net::UdpSocket) -> std::io::Result<usize> {
        self.got.clear();
        let (buffers, got, family) = (&mut self.buffers, &mut self.got, self.family);
        HEADERS.with_borrow_mut(|sets| {
            let mut slices = buffers.each_mut().map(|b| [IoSliceMut::new(b)]);
            let headers = sets
                .get_mut(family)
                .ok_or_else(|| std::io::Error::other("no headers for the address family"))?
                .get_or_insert_with(|| MultiHeaders::preallocate(BATCH, None));
            let results = recvmmsg(
                socket.as_raw_fd(),
                headers,
                slices.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            )
            .map_err(std::io::Error::from)?;
            for message in results {
                let truncated = message.flags.contains(MsgFlags::MSG_TRUNC);
                let peer = message.address.as_ref().and_then(socket_addr);
                got.push((message.bytes, peer, truncated));
            }
            Ok(got.len())
        })
    }

    /// The `i`th datagram of the last batch: its bytes and sender, or `None`
    /// when it was cut short or its sender is not an IP address.
    pub(crate) fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        let &(len, peer, truncated) = self.got.get(i)?;
        if truncated {
            return None;
        }
        Some((self.buffers.get(i)?.get(..len)?, peer?))
    }
}

fn socket_addr(address: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    address
        .as_sockaddr_in6()
        .map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
}

/// Answers waiting to go out together.
pub(crate) struct Outgoing {
    replies: Vec<(Vec<u8>, SocketAddr)>,
    /// The replies' addresses as `sendmmsg` takes them, kept for its
    /// capacity.
    addresses: Vec<Option<SockaddrStorage>>,
}

impl Outgoing {
    pub(crate) fn new() -> Self {
        Self {
            replies: Vec::with_capacity(BATCH),
            addresses: Vec::with_capacity(BATCH),
        }
    }

    pub(crate) fn push(&mut self, reply: Vec<u8>, peer: SocketAddr) {
        self.replies.push((reply, peer));
    }

    /// Sends every queued answer: in one call when the socket takes them
    /// all, the rest one by one, pausing for room (backpressure on the
    /// receive loop, not a queue).
    pub(crate) async fn flush(&mut self, socket: &UdpFd) {
        if self.replies.is_empty() {
            return;
        }
        let sent = if self.replies.len() == 1 {
            0
        } else {
            let slices: Vec<[IoSlice<'_>; 1]> = self
                .replies
                .iter()
                .map(|(r, _)| [IoSlice::new(r)])
                .collect();
            self.addresses.clear();
            self.addresses.extend(
                self.replies
                    .iter()
                    .map(|(_, peer)| Some(SockaddrStorage::from(*peer))),
            );
            let addresses = &self.addresses;
            // More replies than headers: the rest go one by one below.
            SEND_HEADERS.with_borrow_mut(|headers| {
                let headers = headers.get_or_insert_with(|| MultiHeaders::preallocate(BATCH, None));
                sendmmsg(
                    socket.as_raw_fd(),
                    headers,
                    slices.iter(),
                    addresses,
                    [],
                    MsgFlags::MSG_DONTWAIT,
                )
                .map_or(0, |results| results.count())
            })
        };
        for (reply, peer) in self.replies.drain(..).skip(sent) {
            send(socket, &reply, peer).await;
        }
    }
}

/// Sends one datagram: at once when the socket can take it, else after
/// the [`SEND_PAUSES`]; a datagram the socket never takes is counted in
/// `sheepdog_dns_send_dropped_total`.
pub(crate) async fn send(socket: &UdpFd, reply: &[u8], peer: SocketAddr) {
    let mut pauses = SEND_PAUSES.iter();
    loop {
        match socket.get_ref().send_to(reply, peer) {
            Ok(_) => return,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => match pauses.next() {
                Some(pause) => tokio::time::sleep(*pause).await,
                None => {
                    metrics::counter!("sheepdog_dns_send_dropped_total").increment(1);
                    tracing::debug!(%peer, "UDP send buffer stayed full; answer dropped");
                    return;
                }
            },
            Err(error) => {
                tracing::debug!(%error, %peer, "UDP send failed");
                return;
            }
        }
    }
}
