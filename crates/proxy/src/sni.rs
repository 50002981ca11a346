//! The server name a TLS client asks for, read from its ClientHello
//! without terminating TLS.
//!
//! A CONNECT names a host, but the client may then ask the far end for a
//! different one (domain fronting, or a blocked site behind an allowed
//! CDN name). The tunnel therefore reads the first bytes the client sends
//! and, when they are a TLS ClientHello, decides on its SNI too before any
//! byte reaches the origin. Parsing is rustls's own (`Acceptor`), which
//! reassembles a hello split over records; we only bound how much is read
//! and for how long.

use std::time::Duration;

use rustls::server::Acceptor;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The most bytes read while waiting for a whole ClientHello. Real hellos
/// are under 2 KiB (a few KiB with post-quantum key shares); a client that
/// sends more without finishing one is not given more memory.
pub const MAX_HELLO_BYTES: usize = 32 * 1024;

/// What the first bytes of a tunnel turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// A ClientHello with this server name (lower case).
    ServerName(String),
    /// A ClientHello without a server name (an IP address was dialled).
    NoServerName,
    /// Not TLS, a malformed hello, or none within the limits.
    NotTls,
}

/// The result of looking at the bytes so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    NeedMore,
    Done(Hello),
}

/// Examines the bytes a client has sent so far. Never panics.
pub fn examine(bytes: &[u8]) -> Progress {
    match bytes.first() {
        None => return Progress::NeedMore,
        // A TLS handshake record starts with content type 22.
        Some(&first) if first != 0x16 => return Progress::Done(Hello::NotTls),
        Some(_) => {}
    }
    let mut acceptor = Acceptor::default();
    let mut rest = bytes;
    while !rest.is_empty() {
        match acceptor.read_tls(&mut rest) {
            Ok(0) => break,
            Ok(_) => {}
            Err(_) => return Progress::Done(Hello::NotTls),
        }
        match acceptor.accept() {
            Ok(None) => {}
            Ok(Some(accepted)) => {
                return Progress::Done(match accepted.client_hello().server_name() {
                    Some(name) => Hello::ServerName(name.to_ascii_lowercase()),
                    None => Hello::NoServerName,
                });
            }
            Err(_) => return Progress::Done(Hello::NotTls),
        }
    }
    if bytes.len() >= MAX_HELLO_BYTES {
        Progress::Done(Hello::NotTls)
    } else {
        Progress::NeedMore
    }
}

/// Reads from `client` until the first bytes are known to be a ClientHello
/// (or not), the limit is reached, the client stops sending, or `patience`
/// runs out. Returns every byte read, to be sent on to the origin.
pub async fn read_hello<R: AsyncRead + Unpin>(
    client: &mut R,
    patience: Duration,
) -> std::io::Result<(Vec<u8>, Hello)> {
    let mut buffer = Vec::with_capacity(2048);
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let mut chunk = [0u8; 4096];
        let room = MAX_HELLO_BYTES
            .saturating_sub(buffer.len())
            .min(chunk.len());
        let read = tokio::time::timeout_at(
            deadline,
            client.read(chunk.get_mut(..room).unwrap_or(&mut [])),
        )
        .await;
        let n = match read {
            Ok(result) => result?,
            Err(_) => return Ok((buffer, Hello::NotTls)),
        };
        if n == 0 {
            return Ok((buffer, Hello::NotTls));
        }
        buffer.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
        if let Progress::Done(hello) = examine(&buffer) {
            return Ok((buffer, hello));
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A minimal TLS 1.2/1.3 ClientHello record naming `host` (or no SNI).
    pub(crate) fn client_hello(host: Option<&str>) -> Vec<u8> {
        let mut extensions = Vec::new();
        if let Some(host) = host {
            let name = host.as_bytes();
            let mut list = vec![0u8];
            list.extend_from_slice(&(name.len() as u16).to_be_bytes());
            list.extend_from_slice(name);
            let mut sni = (list.len() as u16).to_be_bytes().to_vec();
            sni.extend_from_slice(&list);
            extensions.extend_from_slice(&[0, 0]);
            extensions.extend_from_slice(&(sni.len() as u16).to_be_bytes());
            extensions.extend_from_slice(&sni);
        }
        // signature_algorithms: rsa_pss_rsae_sha256, ecdsa_secp256r1_sha256.
        extensions.extend_from_slice(&[0, 13, 0, 6, 0, 4, 0x08, 0x04, 0x04, 0x03]);
        // supported_groups: x25519.
        extensions.extend_from_slice(&[0, 10, 0, 4, 0, 2, 0, 29]);
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7u8; 32]);
        body.push(0); // no session id
        body.extend_from_slice(&[0, 4, 0x13, 0x01, 0xc0, 0x2f]);
        body.extend_from_slice(&[1, 0]); // null compression
        body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
        body.extend_from_slice(&extensions);
        let mut handshake = vec![1];
        handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        handshake.extend_from_slice(&body);
        let mut record = vec![0x16, 3, 1];
        record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
        record.extend_from_slice(&handshake);
        record
    }

    #[test]
    fn finds_the_server_name() {
        let hello = client_hello(Some("Blocked.Test"));
        assert_eq!(
            examine(&hello),
            Progress::Done(Hello::ServerName("blocked.test".into()))
        );
        assert_eq!(
            examine(&client_hello(None)),
            Progress::Done(Hello::NoServerName)
        );
    }

    #[test]
    fn waits_for_a_split_hello_and_refuses_non_tls() {
        let hello = client_hello(Some("example.test"));
        for cut in [1, 5, 20, hello.len() - 1] {
            assert_eq!(examine(&hello[..cut]), Progress::NeedMore, "cut at {cut}");
        }
        assert_eq!(
            examine(b"GET / HTTP/1.1\r\n"),
            Progress::Done(Hello::NotTls)
        );
        assert_eq!(examine(&[]), Progress::NeedMore);
    }

    #[test]
    fn a_hello_that_never_ends_is_cut_off() {
        // A record header promising more than the limit, then filler.
        let mut bytes = vec![0x16, 3, 1, 0x40, 0x00, 1, 0, 0x3f, 0xfc];
        bytes.resize(MAX_HELLO_BYTES, 0);
        assert_eq!(examine(&bytes), Progress::Done(Hello::NotTls));
    }

    #[tokio::test]
    async fn read_hello_returns_every_byte() {
        let hello = client_hello(Some("example.test"));
        let mut reader = &hello[..];
        let (bytes, found) = read_hello(&mut reader, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(bytes, hello);
        assert_eq!(found, Hello::ServerName("example.test".into()));
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = examine(&bytes);
        }

        #[test]
        fn never_panics_on_damaged_hellos(
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            cut in any::<usize>(),
        ) {
            let mut hello = client_hello(Some("example.test"));
            for (at, value) in flips {
                let at = at % hello.len();
                hello[at] = value;
            }
            hello.truncate(cut % (hello.len() + 1));
            let _ = examine(&hello);
        }

        #[test]
        // rustls refuses names that are not DNS names (an all-numeric last
        // label); the tunnel then decides on the CONNECT host alone.
        fn any_name_is_found(name in "[a-z0-9]{1,20}(\\.[a-z0-9]{1,20}){0,2}\\.[a-z]{2,6}") {
            prop_assert_eq!(
                examine(&client_hello(Some(&name))),
                Progress::Done(Hello::ServerName(name.clone()))
            );
        }
    }
}
