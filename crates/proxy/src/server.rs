//! The listeners: accept, refuse clients outside the configured networks,
//! and serve HTTP/1.1 with hyper under the configured limits.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::upstream::Upstream;
use crate::{Proxy, ProxyError};

/// Client connections served at once; more wait in the listen backlog.
const CONNECTIONS: usize = 8192;

/// Running listeners.
#[derive(Debug)]
pub struct ProxyServer {
    addrs: Vec<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

/// What a listener receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Browsers configured to use the proxy (absolute URLs and CONNECT).
    Explicit,
    /// Port 80 traffic redirected by the router (origin-form requests).
    TransparentHttp,
    /// Port 443 traffic redirected by the router (TLS from its first byte).
    TransparentTls,
}

impl ProxyServer {
    /// Listens on each address for explicit proxy clients. Port 0 picks a
    /// free port.
    pub async fn start(proxy: Arc<Proxy>, listen: &[SocketAddr]) -> Result<Self, ProxyError> {
        let listeners: Vec<_> = listen.iter().map(|a| (*a, Mode::Explicit)).collect();
        Self::start_listeners(proxy, &listeners).await
    }

    /// Listens on each address in its mode.
    pub async fn start_listeners(
        proxy: Arc<Proxy>,
        listen: &[(SocketAddr, Mode)],
    ) -> Result<Self, ProxyError> {
        let mut server = Self {
            addrs: Vec::new(),
            tasks: Vec::new(),
        };
        let limit = Arc::new(Semaphore::new(CONNECTIONS));
        for (addr, mode) in listen {
            let bind = |source| ProxyError::Bind {
                addr: *addr,
                source,
            };
            let listener = TcpListener::bind(addr).await.map_err(bind)?;
            let bound = listener.local_addr().map_err(bind)?;
            server.addrs.push(bound);
            server.tasks.push(tokio::spawn(serve(
                listener,
                proxy.clone(),
                limit.clone(),
                *mode,
            )));
            tracing::info!(%bound, ?mode, "web proxy listening");
        }
        Ok(server)
    }

    /// The addresses listened on (the real ports when 0 was asked).
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Stops listening. Connections already open finish on their own.
    pub async fn stop(self) {
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

async fn serve(listener: TcpListener, proxy: Arc<Proxy>, limit: Arc<Semaphore>, mode: Mode) {
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::debug!(%error, "proxy accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let proxy = proxy.clone();
        tokio::spawn(async move {
            if !proxy.settings().serves(peer.ip()) {
                refuse(stream, peer).await;
            } else if mode == Mode::TransparentTls {
                let original = crate::transparent::original_destination(&stream);
                if let Ok(local) = stream.local_addr() {
                    let _ = stream.set_nodelay(true);
                    proxy
                        .handle_transparent_tls(stream, peer, local, original)
                        .await;
                }
            } else {
                serve_connection(stream, peer, proxy, mode).await;
            }
            drop(permit);
        });
    }
}

/// A client outside the configured networks gets 403 and nothing else:
/// the proxy is never open to the world.
async fn refuse(mut stream: TcpStream, peer: SocketAddr) {
    metrics::counter!("sheepdog_proxy_refused_total", "reason" => "client_network").increment(1);
    tracing::debug!(%peer, "refused a client outside [proxy] client_networks");
    // Read what the client sent first, so closing does not reset the
    // connection before it sees the answer.
    let mut scratch = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut scratch)).await;
    let body = "This proxy does not serve your network.\n";
    let response = format!(
        "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

async fn serve_connection(stream: TcpStream, peer: SocketAddr, proxy: Arc<Proxy>, mode: Mode) {
    let _ = stream.set_nodelay(true);
    let Ok(local) = stream.local_addr() else {
        return;
    };
    // A second handle on the socket, to send 408 after hyper gives up on a
    // slow request head (hyper closes without a response).
    let original = match mode {
        Mode::TransparentHttp => crate::transparent::original_destination(&stream),
        _ => None,
    };
    let (stream, spare) = match split_handle(stream) {
        Ok(pair) => pair,
        Err(error) => {
            tracing::debug!(%error, %peer, "cannot prepare the connection");
            return;
        }
    };
    let partial = Arc::new(AtomicBool::new(false));
    let io = Watched {
        inner: stream,
        partial: partial.clone(),
    };
    let settings = proxy.settings().clone();
    // The connection's own origin connection, kept between its requests.
    let upstream = Upstream::default();
    let service = service_fn(move |request| {
        let proxy = proxy.clone();
        let upstream = upstream.clone();
        async move {
            match mode {
                Mode::TransparentHttp => {
                    proxy
                        .handle_transparent(request, peer, local, original, &upstream)
                        .await
                }
                _ => proxy.handle(request, peer, local, &upstream).await,
            }
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout)
        .max_headers(settings.max_headers)
        .max_header_size(settings.max_header_bytes)
        .keep_alive(true);
    let result = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades()
        .await;
    if let Err(error) = result {
        if error.is_timeout() && partial.load(Ordering::Relaxed) {
            metrics::counter!("sheepdog_proxy_refused_total", "reason" => "header_timeout")
                .increment(1);
            let Ok(mut spare) = TcpStream::from_std(spare) else {
                return;
            };
            let _ = spare
                .write_all(
                    b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain\r\n\
                      Content-Length: 39\r\nConnection: close\r\n\r\n\
                      The request head took too long to send\n",
                )
                .await;
            let _ = spare.shutdown().await;
        } else {
            tracing::debug!(%error, %peer, "proxy connection ended");
        }
    }
}

/// The stream for hyper, and a duplicate handle kept unregistered until it
/// is needed.
fn split_handle(stream: TcpStream) -> std::io::Result<(TcpStream, std::net::TcpStream)> {
    let std_stream = stream.into_std()?;
    let spare = std_stream.try_clone()?;
    Ok((TcpStream::from_std(std_stream)?, spare))
}

/// The client connection, noting whether part of a request head has
/// arrived since the last response was written (so an idle keep-alive
/// connection is closed quietly, and a slow request gets 408).
pub(crate) struct Watched {
    pub(crate) inner: TcpStream,
    partial: Arc<AtomicBool>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.partial.store(true, Ordering::Relaxed);
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.partial.store(false, Ordering::Relaxed);
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.partial.store(false, Ordering::Relaxed);
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
