//! Carrying an uninspected tunnel between two sockets with splice(2).
//!
//! A tunnel's bytes are opaque to the proxy once it is allowed, so there
//! is no reason to copy them through user space. Each direction moves
//! data from the source socket into a pipe and from the pipe into the
//! destination socket, and the kernel hands pages along instead of
//! copying them twice (`bench/proxy`: the copy loop held a 1 GiB CONNECT
//! download to 70–77% of direct; see docs/benchmarks.md for the splice
//! figures). Both sockets stay non-blocking and registered with tokio:
//! every splice is tried under `try_io`, so readiness is cleared exactly
//! when the kernel says it would block.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::fcntl::{splice, OFlag, SpliceFFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// The size a pipe grows to once its direction carries a bulk transfer,
/// and the most one splice call moves: a bulk download then moves up to a
/// megabyte per pair of calls.
const CHUNK: usize = 1024 * 1024;

/// Below this, splicing costs more calls than copying through a buffer of
/// the proxy's own.
const SMALLEST_PIPE: usize = 64 * 1024;

/// The two pipes of a tunnel, one per direction.
#[derive(Debug)]
pub struct Pipes {
    forward: Pipe,
    backward: Pipe,
}

#[derive(Debug)]
struct Pipe {
    out: OwnedFd,
    into: OwnedFd,
    /// What the pipe holds at most, as the kernel reported it.
    capacity: usize,
    /// Whether growing was asked for already (a refusal now is a refusal
    /// later).
    grown: bool,
}

impl Pipes {
    /// Two pipes of the kernel's default size (64 KiB), or `None` when it
    /// grants less: an unprivileged process whose pipes add up to more
    /// than `fs.pipe-user-pages-soft` (16384 pages, 64 MiB, by default)
    /// gets 8 KiB pipes, and the tunnel is then copied instead. The kernel
    /// counts a pipe's size against that limit whether or not data is in
    /// it, so a pipe is grown only once its direction shows a bulk
    /// transfer (see [`Pipe::grow`]); idle and small tunnels keep 64 KiB.
    pub fn new() -> Option<Self> {
        Some(Self {
            forward: Pipe::new()?,
            backward: Pipe::new()?,
        })
    }
}

impl Pipe {
    fn new() -> Option<Self> {
        let (out, into) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).ok()?;
        let capacity = capacity(&into)?;
        (capacity >= SMALLEST_PIPE).then_some(Self {
            out,
            into,
            capacity,
            grown: false,
        })
    }

    /// After a splice filled the pipe: more was waiting, so a larger pipe
    /// moves it in fewer calls. The kernel may refuse (the per-user limit);
    /// the pipe then stays as it is.
    fn grow(&mut self) {
        if self.grown || self.capacity >= CHUNK {
            return;
        }
        self.grown = true;
        let _ = nix::fcntl::fcntl(&self.into, nix::fcntl::FcntlArg::F_SETPIPE_SZ(CHUNK as i32));
        if let Some(capacity) = capacity(&self.into) {
            self.capacity = capacity;
        }
    }
}

fn capacity(pipe: &OwnedFd) -> Option<usize> {
    let size = nix::fcntl::fcntl(pipe, nix::fcntl::FcntlArg::F_GETPIPE_SZ).ok()?;
    usize::try_from(size).ok()
}

/// Carries bytes both ways until each side has finished sending; returns
/// the bytes moved from `a` to `b` and from `b` to `a`. A side that ends
/// its sending half has the other socket's sending half shut after the
/// last byte, as a byte-for-byte copy would.
pub async fn splice_bidirectional(
    a: &TcpStream,
    b: &TcpStream,
    pipes: Pipes,
) -> io::Result<(u64, u64)> {
    let Pipes {
        mut forward,
        mut backward,
    } = pipes;
    let (forward, backward) =
        tokio::join!(one_way(a, b, &mut forward), one_way(b, a, &mut backward));
    Ok((forward?, backward?))
}

async fn one_way(from: &TcpStream, to: &TcpStream, pipe: &mut Pipe) -> io::Result<u64> {
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    let mut total = 0u64;
    loop {
        from.readable().await?;
        let moved = match from.try_io(Interest::READABLE, || {
            splice(from.as_fd(), None, &pipe.into, None, CHUNK, flags).map_err(io::Error::from)
        }) {
            Ok(moved) => moved,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
            Err(error) => return Err(error),
        };
        if moved == 0 {
            // The sender is done: pass the end on.
            let _ = nix::sys::socket::shutdown(to.as_raw_fd(), nix::sys::socket::Shutdown::Write);
            return Ok(total);
        }
        drain(&pipe.out, to, moved, flags).await?;
        total += moved as u64;
        if moved >= pipe.capacity {
            pipe.grow();
        }
    }
}

/// Writes the `pending` bytes waiting in the pipe to `to`.
async fn drain(
    pipe_out: &OwnedFd,
    to: &TcpStream,
    mut pending: usize,
    flags: SpliceFFlags,
) -> io::Result<()> {
    while pending > 0 {
        to.writable().await?;
        match to.try_io(Interest::WRITABLE, || {
            splice(pipe_out, None, to.as_fd(), None, pending, flags).map_err(io::Error::from)
        }) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => pending -= written.min(pending),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(())
}
