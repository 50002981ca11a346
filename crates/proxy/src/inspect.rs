//! Selective TLS inspection (F5, F6, F11).
//!
//! Most tunnels are decided on their host and server name and then carried
//! untouched. A few hosts are worth reading in full: search engines and
//! YouTube (for search terms and safe search), the hosts the school names,
//! and every host that a list names at URL level (the IWF and CTIRU lists),
//! because a rule for one page of a host can only be matched on the full
//! URL. For those, the proxy finishes the client's TLS handshake itself with
//! a certificate minted by the school's authority ([`crate::ca`]), opens its
//! own TLS connection to the origin (whose certificate it verifies against
//! the public roots and any the school adds), and serves the requests in
//! between as HTTP/1.1, deciding each on its full `https://` URL.
//!
//! Hosts marked never-inspect (pinned apps, banking, health) are always
//! carried untouched, whatever else says.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use sheepdog_policy::CompiledPolicy;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::ca::{CertificateAuthority, MintingResolver};
use crate::search;
use crate::InspectError;

/// What the proxy needs to inspect: the authority, and TLS settings for
/// both sides.
pub struct Inspection {
    authority: Arc<CertificateAuthority>,
    pub(crate) acceptor: TlsAcceptor,
    pub(crate) connector: TlsConnector,
    hosts: Vec<String>,
    never: Vec<String>,
}

impl Inspection {
    /// Inspection with `authority`, trusting `roots` upstream; `hosts` are
    /// inspected besides search engines and URL-list hosts, and `never`
    /// wins over both (each entry covers its subdomains).
    pub fn new(
        authority: Arc<CertificateAuthority>,
        roots: RootCertStore,
        hosts: &[String],
        never: &[String],
    ) -> Result<Self, InspectError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = |e: rustls::Error| InspectError::Tls(e.to_string());
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(tls)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(MintingResolver(authority.clone())));
        // Both sides speak HTTP/1.1 only, so one request on the client side
        // is one request on the origin side.
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        let clean = |list: &[String]| -> Vec<String> {
            list.iter()
                .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect()
        };
        Ok(Self {
            authority,
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
            hosts: clean(hosts),
            never: clean(never),
        })
    }

    /// The public web's roots (Mozilla's, as shipped by `webpki-roots`),
    /// plus the certificates in `extra` (PEM), such as a school's internal
    /// authority.
    pub fn trusted_roots(extra: Option<&Path>) -> Result<RootCertStore, InspectError> {
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(path) = extra {
            let failed = |reason: String| InspectError::Parse {
                path: path.to_owned(),
                reason,
            };
            let certificates = CertificateDer::pem_file_iter(path)
                .map_err(|e| failed(e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| failed(e.to_string()))?;
            if certificates.is_empty() {
                return Err(failed(
                    "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_string(),
                ));
            }
            for certificate in certificates {
                roots.add(certificate).map_err(|e| failed(e.to_string()))?;
            }
        }
        Ok(roots)
    }

    pub fn authority(&self) -> &CertificateAuthority {
        &self.authority
    }

    /// Whether a tunnel to `host` is inspected under `policy`.
    pub fn wants(&self, host: &str, policy: &CompiledPolicy) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if self.never.iter().any(|d| covers(d, &host)) {
            return false;
        }
        self.hosts.iter().any(|d| covers(d, &host))
            || search::engine_of(&host).is_some()
            || policy.snapshot().host_has_url_rules(&host)
    }

    /// Whether `host` may be inspected at all (`never_inspect` wins), so
    /// that a warned site can show its warning page inside the tunnel.
    pub fn may_inspect(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        !self.never.iter().any(|d| covers(d, &host))
    }

    /// The origin's name for certificate verification.
    pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, InspectError> {
        ServerName::try_from(host.to_string())
            .map_err(|e| InspectError::Tls(format!("{host} is not a server name: {e}")))
    }
}

impl std::fmt::Debug for Inspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inspection")
            .field("hosts", &self.hosts)
            .field("never", &self.never)
            .finish_non_exhaustive()
    }
}

/// Whether the rule `domain` covers `host` (itself or a subdomain).
fn covers(domain: &str, host: &str) -> bool {
    host == domain
        || host
            .strip_suffix(domain)
            .is_some_and(|before| before.ends_with('.'))
}

/// The client's side of a tunnel with the bytes already read from it (the
/// ClientHello, read to decide on the server name) put back in front.
pub(crate) struct Replay<S> {
    first: Vec<u8>,
    offset: usize,
    inner: S,
}

impl<S> Replay<S> {
    pub(crate) fn new(first: Vec<u8>, inner: S) -> Self {
        Self {
            first,
            offset: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Replay<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.offset < self.first.len() {
            let rest = &self.first[self.offset..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            self.offset += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replay<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[test]
    fn rules_cover_subdomains_only_at_a_label() {
        assert!(covers("example.com", "example.com"));
        assert!(covers("example.com", "www.example.com"));
        assert!(!covers("example.com", "badexample.com"));
        assert!(!covers("www.example.com", "example.com"));
    }

    #[tokio::test]
    async fn replay_gives_back_the_first_bytes_then_the_stream() {
        let (mut near, far) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut near, b" world")
            .await
            .unwrap_or_default();
        drop(near);
        let mut replay = Replay::new(b"hello".to_vec(), far);
        let mut out = String::new();
        replay.read_to_string(&mut out).await.unwrap_or_default();
        assert_eq!(out, "hello world");
    }
}
