//! Transparent mode: traffic for ports 80 and 443 redirected to the proxy
//! by the school's Linux router (`iptables … -j REDIRECT`), from devices
//! that have no proxy settings.
//!
//! The redirect rewrites the destination, so the proxy asks the kernel for
//! the one the device meant (`SO_ORIGINAL_DST`, through `nix`, which keeps
//! the `unsafe` of `getsockopt` out of this crate). Plain HTTP is then
//! decided on the Host header's URL, and TLS on the ClientHello's server
//! name, and the proxy connects to the original address, never to one the
//! client named, so a forged Host or SNI cannot steer it elsewhere.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use tokio::net::TcpStream;

/// The address a redirected connection was sent to, or `None` when it was
/// not redirected (the kernel then reports the proxy's own address, or
/// nothing).
pub fn original_destination(stream: &TcpStream) -> Option<SocketAddr> {
    let local = stream.local_addr().ok()?;
    let original = match local {
        SocketAddr::V4(_) => {
            let raw = nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::OriginalDst)
                .ok()?;
            SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(raw.sin_addr.s_addr)),
                u16::from_be(raw.sin_port),
            ))
        }
        SocketAddr::V6(_) => {
            let raw =
                nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::Ip6tOriginalDst)
                    .ok()?;
            SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(raw.sin6_addr.s6_addr),
                u16::from_be(raw.sin6_port),
                0,
                0,
            ))
        }
    };
    (original != local).then_some(original)
}
