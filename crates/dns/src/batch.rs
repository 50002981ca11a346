//! Datagrams in batches: `recvmmsg(2)` and `sendmmsg(2)`.
//!
//! Under load most of a UDP server's time is the kernel's, not ours (on
//! loopback about three quarters, measured with `perf` in
//! docs/benchmarks.md): a system call per query in, another per answer out,
//! and for each answer a wake-up of the client. Taking every query the
//! socket holds (up to [`BATCH`]) in one call and sending their answers in
//! one call spends those costs once per batch. With one query waiting a
//! batch is one query, so a quiet server answers as promptly as before.

use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use nix::sys::socket::{recvmmsg, sendmmsg, MsgFlags, MultiHeaders, SockaddrStorage};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams taken or sent per system call.
pub(crate) const BATCH: usize = 32;

/// The largest request kept whole. DNS questions are a few hundred bytes
/// at most; a longer datagram is cut short by the kernel, flagged, and
/// dropped by [`Received::get`]'s caller rather than judged from its first
/// bytes.
pub(crate) const SLOT: usize = 4096;

/// Received datagrams and the buffers they live in; reused batch after
/// batch.
pub(crate) struct Received {
    buffers: Vec<[u8; SLOT]>,
    /// Per datagram of the last batch: its length, sender, and whether it
    /// was longer than [`SLOT`].
    got: Vec<(usize, Option<SocketAddr>, bool)>,
}

impl Received {
    pub(crate) fn new() -> Self {
        Self {
            buffers: vec![[0u8; SLOT]; BATCH],
            got: Vec::with_capacity(BATCH),
        }
    }

    /// Waits until the socket has datagrams and takes up to [`BATCH`] of
    /// them; returns how many.
    pub(crate) async fn receive(&mut self, socket: &UdpSocket) -> std::io::Result<usize> {
        loop {
            socket.readable().await?;
            match socket.try_io(Interest::READABLE, || self.take(socket)) {
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
    }

    fn take(&mut self, socket: &UdpSocket) -> std::io::Result<usize> {
        self.got.clear();
        let mut slices: Vec<[IoSliceMut<'_>; 1]> = self
            .buffers
            .iter_mut()
            .map(|b| [IoSliceMut::new(b)])
            .collect();
        // Made per call: the headers hold raw pointers, so they cannot be
        // kept in a task's state (not `Send`). Two small allocations per
        // batch, not per query.
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
        let results = recvmmsg(
            socket.as_raw_fd(),
            &mut headers,
            slices.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )
        .map_err(std::io::Error::from)?;
        for message in results {
            let truncated = message.flags.contains(MsgFlags::MSG_TRUNC);
            let peer = message.address.as_ref().and_then(socket_addr);
            self.got.push((message.bytes, peer, truncated));
        }
        Ok(self.got.len())
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
}

impl Outgoing {
    pub(crate) fn new() -> Self {
        Self {
            replies: Vec::with_capacity(BATCH),
        }
    }

    pub(crate) fn push(&mut self, reply: Vec<u8>, peer: SocketAddr) {
        self.replies.push((reply, peer));
    }

    /// Sends every queued answer: in one call when the socket takes them
    /// all, the rest one by one, waiting for room (backpressure on the
    /// receive loop, not a queue).
    pub(crate) async fn flush(&mut self, socket: &UdpSocket) {
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
            let addresses: Vec<Option<SockaddrStorage>> = self
                .replies
                .iter()
                .map(|(_, peer)| Some(SockaddrStorage::from(*peer)))
                .collect();
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(slices.len(), None);
            let result = socket.try_io(Interest::WRITABLE, || {
                sendmmsg(
                    socket.as_raw_fd(),
                    &mut headers,
                    slices.iter(),
                    &addresses,
                    [],
                    MsgFlags::MSG_DONTWAIT,
                )
                .map(|results| results.count())
                .map_err(std::io::Error::from)
            });
            result.unwrap_or(0)
        };
        for (reply, peer) in self.replies.drain(..).skip(sent) {
            send(socket, &reply, peer).await;
        }
    }
}

/// Sends one datagram: at once when the socket can take it, else waiting
/// for room.
pub(crate) async fn send(socket: &UdpSocket, reply: &[u8], peer: SocketAddr) {
    let sent = match socket.try_send_to(reply, peer) {
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
            socket.send_to(reply, peer).await
        }
        other => other,
    };
    if let Err(error) = sent {
        tracing::debug!(%error, %peer, "UDP send failed");
    }
}
