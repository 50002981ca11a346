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

/// The most one splice call moves; also the size asked of each pipe.
const CHUNK: usize = 256 * 1024;

/// Carries bytes both ways until each side has finished sending; returns
/// the bytes moved from `a` to `b` and from `b` to `a`. A side that ends
/// its sending half has the other socket's sending half shut after the
/// last byte, as a byte-for-byte copy would.
pub async fn splice_bidirectional(a: &TcpStream, b: &TcpStream) -> io::Result<(u64, u64)> {
    let (forward, backward) = tokio::join!(one_way(a, b), one_way(b, a));
    Ok((forward?, backward?))
}

async fn one_way(from: &TcpStream, to: &TcpStream) -> io::Result<u64> {
    let (pipe_out, pipe_in) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
    // A larger pipe than the 64 KiB default lets one splice move more; the
    // kernel may refuse (a per-user limit), and the default still works.
    let _ = nix::fcntl::fcntl(&pipe_in, nix::fcntl::FcntlArg::F_SETPIPE_SZ(CHUNK as i32));
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    let mut total = 0u64;
    loop {
        from.readable().await?;
        let moved = match from.try_io(Interest::READABLE, || {
            splice(from.as_fd(), None, &pipe_in, None, CHUNK, flags).map_err(io::Error::from)
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
        drain(&pipe_out, to, moved, flags).await?;
        total += moved as u64;
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
