//! TLS for the console: a configured certificate and key (PEM), or, when
//! none is configured, a self-signed certificate made on first start and
//! kept in the data directory so that browsers see the same one each time.
//! A self-signed certificate puts a warning on every page: staff should not
//! learn to click through certificate warnings.
//!
//! Handshakes run in their own tasks, so a client that connects and says
//! nothing cannot hold up others; [`TlsListener`] hands finished
//! connections to the server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::ConsoleError;

/// File names of the generated certificate and key in the data directory.
pub const SELF_SIGNED_CERTIFICATE: &str = "console-self-signed.crt";
pub const SELF_SIGNED_KEY: &str = "console-self-signed.key";

/// How long a client may take over its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The certificate the console serves and where it came from.
#[derive(Debug)]
pub struct ConsoleCertificate {
    pub config: Arc<tokio_rustls::rustls::ServerConfig>,
    /// True when sheepdog made the certificate itself.
    pub self_signed: bool,
    /// The certificate's PEM file, for people to check or trust it.
    pub certificate_path: PathBuf,
}

fn settings_error(path: &Path, problem: impl std::fmt::Display) -> ConsoleError {
    ConsoleError::Settings(format!("TLS: {}: {problem}", path.display()))
}

/// A server configuration from PEM files.
fn server_config(
    certificate: &Path,
    key: &Path,
) -> Result<Arc<tokio_rustls::rustls::ServerConfig>, ConsoleError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(certificate)
        .map_err(|e| settings_error(certificate, format!("cannot read the certificate: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| settings_error(certificate, format!("not a PEM certificate: {e}")))?;
    if chain.is_empty() {
        return Err(settings_error(
            certificate,
            "holds no certificate; give a PEM file beginning -----BEGIN CERTIFICATE-----",
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| settings_error(key, format!("not a PEM private key: {e}")))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConsoleError::Settings(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            ConsoleError::Settings(format!(
                "TLS: the certificate {} and key do not go together: {e}",
                certificate.display()
            ))
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The configured certificate and key, or the self-signed pair in
/// `data_dir`, made now for `names` if it is not there yet.
pub fn load_or_generate(
    configured: Option<(&Path, &Path)>,
    data_dir: &Path,
    names: &[String],
) -> Result<ConsoleCertificate, ConsoleError> {
    if let Some((certificate, key)) = configured {
        return Ok(ConsoleCertificate {
            config: server_config(certificate, key)?,
            self_signed: false,
            certificate_path: certificate.to_path_buf(),
        });
    }
    let certificate = data_dir.join(SELF_SIGNED_CERTIFICATE);
    let key = data_dir.join(SELF_SIGNED_KEY);
    if !certificate.exists() || !key.exists() {
        let made = rcgen::generate_simple_self_signed(names.to_vec())
            .map_err(|e| ConsoleError::Settings(format!("TLS: cannot make a certificate: {e}")))?;
        std::fs::create_dir_all(data_dir).map_err(|e| settings_error(data_dir, e))?;
        write_private(&key, made.key_pair.serialize_pem().as_bytes())?;
        std::fs::write(&certificate, made.cert.pem())
            .map_err(|e| settings_error(&certificate, e))?;
        tracing::warn!(
            certificate = %certificate.display(),
            "made a self-signed certificate for the console; configure a real one in [console]"
        );
    }
    Ok(ConsoleCertificate {
        config: server_config(&certificate, &key)?,
        self_signed: true,
        certificate_path: certificate,
    })
}

/// Writes a private key readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ConsoleError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| settings_error(path, e))?;
    file.write_all(bytes).map_err(|e| settings_error(path, e))
}

/// Connections that have finished their TLS handshake.
#[derive(Debug)]
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    acceptor_task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(
        listener: TcpListener,
        config: Arc<tokio_rustls::rustls::ServerConfig>,
    ) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(config);
        let (send, ready) = mpsc::channel(64);
        let acceptor_task = tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: wait, retry.
                        tracing::warn!(%error, "console: cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if send.is_closed() {
                    break;
                }
                let acceptor = acceptor.clone();
                let send = send.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = send.send((tls, peer)).await;
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(%error, %peer, "console: TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "console: TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self {
            local,
            ready,
            acceptor_task,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor_task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(ready) => ready,
            // The acceptor only stops when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
