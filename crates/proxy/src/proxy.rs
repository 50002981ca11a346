//! The request handler: one hyper service per connection, deciding every
//! request through the filtering engine.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use ipnet::IpNet;
use sheepdog_config::ProxyConfig;
use sheepdog_events::{
    DecisionEvent, EventSink, EventSource, Identity, IdentityResolver, CAPTIVE_GROUP,
};
use sheepdog_policy::{Action, CompiledPolicy, Decision, Engine, Target};
use sheepdog_store::{Actor, NewBlockReport, Store};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::auth::{Authentication, Authenticator, Refusal};
use crate::inspect::{Inspection, Replay};
use crate::page::{self, Audience, BlockPage, WarningPage};
use crate::reading::{narrow_accept_encoding, read_page, PageSender};
use crate::request::{parse_authority, Authority};
use crate::search::{self, search_term};
use crate::sni::{self, Hello};
use crate::upstream::Upstream;
use sheepdog_events::warning::{self, Warnings};

/// The body of every response the proxy sends.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// The path the block page's report form posts to.
pub const REPORT_PATH: &str = "/sheepdog/report";
/// The `Via` entry the proxy adds to requests it forwards.
const VIA: &str = "1.1 sheepdog";
/// The name in [`VIA`], looked for in requests that come back.
const VIA_NAME: &str = "sheepdog";
/// The guest network's captive portal; its form posts here too.
pub const PORTAL_PATH: &str = "/sheepdog/portal";
/// The client side of a tunnel: a plain socket is carried with splice(2),
/// anything else (a connection hyper keeps wrapped) by copying.
pub(crate) trait TunnelClient: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    fn socket(&self) -> Option<&TcpStream> {
        None
    }
}

impl TunnelClient for TcpStream {
    fn socket(&self) -> Option<&TcpStream> {
        Some(self)
    }
}

impl TunnelClient for TokioIo<hyper::upgrade::Upgraded> {}

/// Each direction's copy buffer in a CONNECT tunnel.
const TUNNEL_BUFFER: usize = 64 * 1024;
/// The largest report form accepted.
const MAX_REPORT_BYTES: usize = 16 * 1024;

/// Handling settings, from the `[proxy]` section.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    pub client_networks: Vec<IpNet>,
    pub block_page_url: Option<String>,
    pub console_url: Option<String>,
    pub max_request_line: usize,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub header_timeout: Duration,
    pub connect_timeout: Duration,
    pub client_hello_timeout: Duration,
    /// How long a site stays open after its warning was acknowledged.
    pub warning_lasts: Duration,
    pub young_groups: Vec<String>,
    pub staff_groups: Vec<String>,
}

impl ProxySettings {
    /// The settings of a checked configuration (entries that do not parse
    /// were refused when it was loaded, and are skipped here).
    pub fn from_config(proxy: &ProxyConfig) -> Self {
        let nonempty = |s: &str| (!s.is_empty()).then(|| s.trim_end_matches('/').to_string());
        Self {
            client_networks: proxy
                .client_networks
                .iter()
                .filter_map(|n| {
                    IpNet::from_str(n)
                        .ok()
                        .or_else(|| IpAddr::from_str(n).ok().map(IpNet::from))
                })
                .collect(),
            block_page_url: nonempty(&proxy.block_page_url),
            console_url: nonempty(&proxy.console_url),
            max_request_line: proxy.max_request_line as usize,
            max_header_bytes: proxy.max_header_bytes as usize,
            max_headers: proxy.max_headers as usize,
            header_timeout: Duration::from_millis(u64::from(proxy.header_timeout_ms)),
            connect_timeout: Duration::from_millis(u64::from(proxy.connect_timeout_ms)),
            client_hello_timeout: Duration::from_millis(u64::from(proxy.client_hello_timeout_ms)),
            warning_lasts: Duration::from_secs(60 * u64::from(proxy.warning_minutes)),
            young_groups: proxy.young_groups.clone(),
            staff_groups: proxy.staff_groups.clone(),
        }
    }

    /// Whether a client address may use the proxy. IPv4 clients reaching an
    /// IPv6 socket as `::ffff:a.b.c.d` are checked as IPv4.
    pub fn serves(&self, client: IpAddr) -> bool {
        let client = match client {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        self.client_networks.iter().any(|n| n.contains(&client))
    }
}

/// The filtering proxy shared by every connection.
#[derive(Debug)]
pub struct Proxy {
    engine: Arc<Engine>,
    identities: Arc<IdentityResolver>,
    sink: Option<EventSink>,
    store: Option<Store>,
    settings: ProxySettings,
    /// Dials origins for plain-HTTP requests; each client connection
    /// keeps what it dialled (see [`Upstream`]).
    connector: HttpConnector,
    inspection: Option<Arc<Inspection>>,
    authentication: Option<Authentication>,
    /// `None` only if no key could be made; warnings then stay blocks.
    warnings: Option<Arc<Warnings>>,
    /// `block_page_url`'s host and port, parsed once: every request asks
    /// whether it is for the proxy's own pages.
    block_page: Option<Authority>,
    portal: Option<GuestPortal>,
    /// Where the pages the proxy can read go, for monitoring (see
    /// [`crate::reading`]).
    pages: Option<PageSender>,
}

/// Where guests' acceptances of the visitor agreement are recorded (see
/// [`Proxy::with_portal`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestPortal {
    /// The school whose visitor agreement is shown.
    pub school_id: i64,
    /// How long an acceptance lasts.
    pub acceptance_hours: u32,
}

/// The event fields a decision fills in.
#[derive(Default)]
struct Outcome {
    action: &'static str,
    illegal: bool,
    category: Option<String>,
    list: Option<String>,
    rule: Option<String>,
    group: Option<String>,
    reason: String,
}

impl Outcome {
    fn from_decision(d: &Decision) -> Self {
        Self {
            action: d.action.as_str(),
            illegal: d.illegal,
            category: d.category.as_deref().map(str::to_string),
            list: d.list.as_deref().map(str::to_string),
            rule: d.rule.clone(),
            group: d.group.as_deref().map(str::to_string),
            reason: d.reason.clone(),
        }
    }

    fn blocked(&self) -> bool {
        matches!(self.action, "block" | "warn")
    }
}

/// Headers that belong to one connection, not to the message (RFC 9110
/// section 7.6.1), plus the proxy's own.
fn is_hop_by_hop(name: &str) -> bool {
    // A match, not a list search: it runs for every header of every
    // forwarded message, and most names are told apart by length alone.
    matches!(
        name,
        "connection"
            | "proxy-connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

impl Proxy {
    pub fn new(
        engine: Arc<Engine>,
        identities: Arc<IdentityResolver>,
        sink: Option<EventSink>,
        store: Option<Store>,
        settings: ProxySettings,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(settings.connect_timeout));
        connector.set_nodelay(true);
        // The identity resolver's, shared with the DNS server, when it has
        // them; a proxy on its own keeps its own.
        let warnings = match identities.warnings() {
            Some(shared) => Some(shared.clone()),
            None => Warnings::new(settings.warning_lasts)
                .inspect_err(|_| tracing::error!("no key for warning pages: warnings stay blocks"))
                .ok()
                .map(Arc::new),
        };
        let block_page = settings
            .block_page_url
            .as_deref()
            .and_then(|url| url.split_once("://"))
            .and_then(|(scheme, rest)| {
                let host = rest.split('/').next().unwrap_or(rest);
                parse_authority(host, Some(if scheme == "https" { 443 } else { 80 })).ok()
            });
        Self {
            engine,
            identities,
            sink,
            store,
            block_page,
            settings,
            connector,
            inspection: None,
            authentication: None,
            warnings,
            portal: None,
            pages: None,
        }
    }

    /// Serves the captive portal to guest-network clients that have not
    /// accepted the visitor agreement (the identity resolver's guest
    /// networks say who they are), recording acceptances for `portal`'s
    /// school in the store.
    pub fn with_portal(mut self, portal: GuestPortal) -> Self {
        self.portal = Some(portal);
        self
    }

    /// Asks every client to sign in (Basic proxy authentication) and
    /// applies the signed-in person's group instead of the address's.
    pub fn with_authentication(mut self, authenticator: Arc<dyn Authenticator>) -> Self {
        self.authentication = Some(Authentication::new(authenticator));
        self
    }

    /// Hands the title and text of the HTML pages it can read (plain
    /// HTTP, inspected HTTPS) to monitoring through `pages`.
    pub fn with_pages(mut self, pages: PageSender) -> Self {
        self.pages = Some(pages);
        self
    }

    /// Inspects the TLS of the hosts `inspection` wants (see
    /// [`crate::inspect`]).
    pub fn with_inspection(mut self, inspection: Arc<Inspection>) -> Self {
        self.inspection = Some(inspection);
        self
    }

    pub fn settings(&self) -> &ProxySettings {
        &self.settings
    }

    /// Answers one request from `peer`, which reached the proxy at `local`
    /// on the client connection that keeps `upstream`.
    pub async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        peer: SocketAddr,
        local: SocketAddr,
        upstream: &Upstream,
    ) -> Result<Response<Body>, hyper::Error> {
        let line = request.method().as_str().len() + uri_len(request.uri()) + " HTTP/1.1".len() + 1;
        if line > self.settings.max_request_line {
            metrics::counter!("sheepdog_proxy_refused_total", "reason" => "request_line")
                .increment(1);
            return Ok(closing(text(
                StatusCode::URI_TOO_LONG,
                &format!(
                    "The request line is {line} bytes; this proxy accepts at most {}.\n",
                    self.settings.max_request_line
                ),
            )));
        }
        let connect = request.method() == Method::CONNECT;
        if !connect && request.uri().path() == PORTAL_PATH && self.on_guest_network(peer) {
            return Ok(self.portal(request, peer).await);
        }
        // A captive guest's browser sent here by the DNS server's block
        // page answer: whatever it asked for, it gets the portal.
        if !connect
            && request.uri().authority().is_none()
            && !matches!(request.uri().path(), "/proxy.pac" | "/wpad.dat")
            && self.is_captive(peer)
        {
            let next = requested_url(&request);
            return Ok(self.portal_page(&next, None, StatusCode::OK).await);
        }
        if !connect {
            if let Some(url) = self.sent_by_dns(&request) {
                return self.landed(request, peer, local, url, upstream).await;
            }
        }
        // The proxy's own pages (the PAC file above all) are fetched before
        // a browser knows it must sign in.
        if !connect && self.is_local(&request, local) {
            metrics::counter!("sheepdog_proxy_requests_total", "kind" => "local").increment(1);
            return Ok(self.local(request, peer, local).await);
        }
        let identity = match self.identify(&request, peer).await {
            Ok(identity) => identity,
            Err(refusal) => return Ok(refusal),
        };
        if connect {
            metrics::counter!("sheepdog_proxy_requests_total", "kind" => "connect").increment(1);
            return Ok(self.connect(request, peer, local, identity).await);
        }
        metrics::counter!("sheepdog_proxy_requests_total", "kind" => "http").increment(1);
        self.forward(request, peer, local, identity, None, upstream)
            .await
    }

    /// The URL a browser meant when the DNS server's block answer (the
    /// block page's address) sent it here: an origin-form request on port
    /// 80 for a named host that is not this proxy. The proxy's own pages
    /// (the PAC file by any name, as WPAD fetches it; the report form) and
    /// visits by address stay the proxy's.
    fn sent_by_dns(&self, request: &Request<Incoming>) -> Option<String> {
        if request.uri().authority().is_some()
            || matches!(
                request.uri().path(),
                "/proxy.pac" | "/wpad.dat" | REPORT_PATH | PORTAL_PATH
            )
        {
            return None;
        }
        let host = request.headers().get(header::HOST)?.to_str().ok()?;
        let authority = parse_authority(host, Some(80)).ok()?;
        // A visit by address (this proxy's own included) is not a name
        // the DNS server answered.
        if authority.port != 80
            || authority.host.parse::<IpAddr>().is_ok()
            || self
                .block_page
                .as_ref()
                .is_some_and(|page| page.host == authority.host)
        {
            return None;
        }
        let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
        Some(authority.url("http", 80, path))
    }

    /// A browser sent here by a DNS block answer, asking for `url`. It is
    /// decided like any proxied request for that URL, by address (the
    /// browser does not know it reached a proxy, so it cannot sign in):
    /// a block gets the block page, a warning the warning page, whose
    /// "continue" opens the site in DNS as well; a request the policy
    /// now allows (the device's cache still holds an old answer, or the
    /// warning was just continued past) is fetched for it.
    async fn landed(
        self: Arc<Self>,
        request: Request<Incoming>,
        peer: SocketAddr,
        local: SocketAddr,
        url: String,
        upstream: &Upstream,
    ) -> Result<Response<Body>, hyper::Error> {
        metrics::counter!("sheepdog_proxy_requests_total", "kind" => "dns_block_page").increment(1);
        // Our own forwarded request, come back because the name leads here.
        if request
            .headers()
            .get_all(header::VIA)
            .iter()
            .any(|via| via.to_str().is_ok_and(|v| v.contains(VIA_NAME)))
        {
            return Ok(closing(text(
                StatusCode::LOOP_DETECTED,
                "This is the sheepdog web filter. Set it as your proxy; see /proxy.pac.\n",
            )));
        }
        self.forward_by_address(request, url, peer, local, None, upstream)
            .await
    }

    /// Forwards an origin-form request from a device that does not know
    /// it reached a proxy, as `url`: it cannot answer 407, so its address
    /// says who it is.
    async fn forward_by_address(
        self: Arc<Self>,
        mut request: Request<Incoming>,
        url: String,
        peer: SocketAddr,
        local: SocketAddr,
        original: Option<SocketAddr>,
        upstream: &Upstream,
    ) -> Result<Response<Body>, hyper::Error> {
        match url.parse() {
            Ok(uri) => *request.uri_mut() = uri,
            Err(_) => {
                return Ok(closing(text(
                    StatusCode::BAD_REQUEST,
                    "The request target is not a URL path.\n",
                )))
            }
        }
        let identity = self.identities.lookup(peer.ip());
        self.forward(request, peer, local, identity, original, upstream)
            .await
    }

    /// A plain-HTTP request redirected to a transparent listener: origin
    /// form, meant for `original` (see [`crate::transparent`]). Decided on
    /// the Host header's URL; sent to the original address.
    pub async fn handle_transparent(
        self: Arc<Self>,
        request: Request<Incoming>,
        peer: SocketAddr,
        local: SocketAddr,
        original: Option<SocketAddr>,
        upstream: &Upstream,
    ) -> Result<Response<Body>, hyper::Error> {
        metrics::counter!("sheepdog_proxy_requests_total", "kind" => "transparent_http")
            .increment(1);
        if request.uri().path() == PORTAL_PATH && self.on_guest_network(peer) {
            return Ok(self.portal(request, peer).await);
        }
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok());
        let authority = match (host, original) {
            (Some(host), _) => parse_authority(host, Some(original.map_or(80, |o| o.port()))),
            (None, Some(original)) => Ok(Authority {
                host: original.ip().to_string(),
                port: original.port(),
            }),
            (None, None) => {
                return Ok(closing(text(
                    StatusCode::BAD_REQUEST,
                    "The request has no Host header.\n",
                )))
            }
        };
        let authority = match authority {
            Ok(authority) => authority,
            Err(error) => {
                return Ok(closing(text(
                    StatusCode::BAD_REQUEST,
                    &format!("{error}\n"),
                )))
            }
        };
        let own = Authority {
            host: local.ip().to_string(),
            port: local.port(),
        };
        if original.is_none() && authority == own {
            return Ok(closing(text(
                StatusCode::LOOP_DETECTED,
                "This is the web filter's transparent port; requests reach it by redirection.\n",
            )));
        }
        let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
        let url = authority.url("http", 80, path);
        self.forward_by_address(request, url, peer, local, original, upstream)
            .await
    }

    /// A TLS connection redirected to a transparent listener: decided on
    /// the ClientHello's server name, then carried (or inspected) to the
    /// original address. A block closes the connection: a browser shows
    /// its own connection error, since no page can be shown without the
    /// device trusting the proxy.
    pub async fn handle_transparent_tls(
        self: Arc<Self>,
        mut client: TcpStream,
        peer: SocketAddr,
        local: SocketAddr,
        original: Option<SocketAddr>,
    ) {
        metrics::counter!("sheepdog_proxy_requests_total", "kind" => "transparent_tls")
            .increment(1);
        let identity = self.identities.lookup(peer.ip());
        let (first, hello) =
            match sni::read_hello(&mut client, self.settings.client_hello_timeout).await {
                Ok(read) => read,
                Err(error) => {
                    tracing::debug!(%error, %peer, "transparent TLS closed before its hello");
                    return;
                }
            };
        let server_name = match hello {
            Hello::ServerName(name) => Some(name),
            _ => None,
        };
        let Some(host) = server_name
            .clone()
            .or_else(|| original.map(|o| o.ip().to_string()))
        else {
            return;
        };
        let port = original.map_or(443, |o| o.port());
        let at = Utc::now();
        let policy = self.engine.current();
        let outcome = self.decide(&policy, &identity, Target::Name(&host), at);
        if outcome.blocked() && !self.warns_inside(&outcome, &host) {
            let event = self.event(peer, &identity, host, outcome, None, None, at);
            count_block(&event, "sni");
            self.send(event);
            return;
        }
        let authority = Authority { host, port };
        let started = Instant::now();
        // The address the device meant when redirected; the name otherwise.
        let target = original.map_or_else(|| authority.dial(), |o| o.to_string());
        let dialled =
            tokio::time::timeout(self.settings.connect_timeout, TcpStream::connect(target)).await;
        let upstream = match dialled {
            Ok(Ok(stream)) if stream.peer_addr().ok() != Some(local) => stream,
            _ => {
                metrics::counter!("sheepdog_proxy_upstream_errors_total").increment(1);
                let event = self.event(peer, &identity, authority.host, outcome, None, None, at);
                self.send(event);
                return;
            }
        };
        let _ = upstream.set_nodelay(true);
        let upstream_ms = u32::try_from(started.elapsed().as_millis()).ok();
        let decided = Decided {
            target: authority.host.clone(),
            outcome,
            upstream_ms,
            at,
        };
        let link = Link {
            peer,
            local,
            identity,
            authority,
        };
        self.carry(client, first, server_name, upstream, link, decided)
            .await;
    }

    /// Who is browsing: the signed-in person when the proxy asks for
    /// credentials, otherwise whoever the address belongs to. Visitors on
    /// the guest network have no account to sign in with: they are known
    /// by address (captive until they accept the visitor agreement), so
    /// the portal, not a password prompt, is what they meet.
    async fn identify(
        &self,
        request: &Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<Arc<Identity>, Response<Body>> {
        let Some(authentication) = &self.authentication else {
            return Ok(self.identities.lookup(peer.ip()));
        };
        if self.on_guest_network(peer) {
            return Ok(self.identities.lookup(peer.ip()));
        }
        let header = request
            .headers()
            .get(header::PROXY_AUTHORIZATION)
            .and_then(|h| h.to_str().ok());
        match authentication.user(header).await {
            Ok(user) => Ok(match user.person_id {
                Some(person) => Arc::new(self.identities.signed_in(peer.ip(), person)),
                // An account that is nobody's (a shared or service account)
                // browses as its device.
                None => self.identities.lookup(peer.ip()),
            }),
            Err(refusal) => {
                let reason = match refusal {
                    Refusal::Missing => "missing",
                    Refusal::Wrong => "wrong",
                    Refusal::Unavailable(_) => "unavailable",
                };
                metrics::counter!("sheepdog_proxy_auth_refused_total", "reason" => reason)
                    .increment(1);
                let mut response = match refusal {
                    Refusal::Unavailable(error) => {
                        tracing::warn!(%error, "cannot check proxy credentials");
                        text(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "The web filter cannot check passwords just now; try again in a minute.\n",
                        )
                    }
                    _ => text(
                        StatusCode::PROXY_AUTHENTICATION_REQUIRED,
                        "Sign in to the school's web filter with your school account.\n",
                    ),
                };
                response.headers_mut().insert(
                    header::PROXY_AUTHENTICATE,
                    HeaderValue::from_static(
                        "Basic realm=\"School web filter\", charset=\"UTF-8\"",
                    ),
                );
                Err(response)
            }
        }
    }

    /// Requests for the proxy itself: origin-form requests (a browser
    /// fetching the PAC file directly), and absolute ones naming the
    /// address the client reached or the block-page URL's host.
    fn is_local(&self, request: &Request<Incoming>, local: SocketAddr) -> bool {
        let Some(authority) = request.uri().authority() else {
            return true;
        };
        let Ok(target) = parse_authority(authority.as_str(), Some(80)) else {
            return false;
        };
        is_address(&target, local) || self.block_page.as_ref() == Some(&target)
    }

    /// Where block pages' forms post.
    fn base_url(&self, local: SocketAddr) -> String {
        self.settings
            .block_page_url
            .clone()
            .unwrap_or_else(|| format!("http://{local}"))
    }

    async fn local(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> Response<Body> {
        let path = request.uri().path().to_string();
        match (request.method().clone(), path.as_str()) {
            (Method::GET | Method::HEAD, "/proxy.pac" | "/wpad.dat") => {
                let proxy = self
                    .settings
                    .block_page_url
                    .as_deref()
                    .and_then(|u| u.split_once("://"))
                    .map(|(_, rest)| rest.split('/').next().unwrap_or(rest).to_string())
                    .unwrap_or_else(|| local.to_string());
                let mut response = Response::new(full(page::pac_file(&proxy)));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/x-ns-proxy-autoconfig"),
                );
                response
            }
            (Method::POST, REPORT_PATH) => self.report(request, peer).await,
            _ => text(
                StatusCode::NOT_FOUND,
                "This is the sheepdog web filter. Set it as your proxy; see /proxy.pac.\n",
            ),
        }
    }

    /// Stores a "report wrongly blocked" from the block page's form.
    async fn report(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let form = match Form::read(request, "report").await {
            Ok(form) => form,
            Err(refused) => return refused,
        };
        let field = |name: &str| form.field(name);
        let (reference, site) = (field("reference"), field("site"));
        if reference.is_empty() || site.is_empty() {
            return text(
                StatusCode::BAD_REQUEST,
                "A report needs the block's reference and site; send it from the block page.\n",
            );
        }
        let identity = self.identities.lookup(peer.ip());
        let category = Some(field("category")).filter(|c| !c.is_empty());
        let report = NewBlockReport {
            at: Utc::now(),
            reference: reference.clone(),
            client: peer.ip().to_string(),
            person_id: identity.person_id,
            group: Some(identity.group.to_string()),
            site,
            category,
            comment: field("comment"),
        };
        let stored = match &self.store {
            Some(store) => match store
                .record_block_report(&Actor::system("proxy"), &report)
                .await
            {
                Ok(_) => true,
                Err(error) => {
                    tracing::warn!(%error, "cannot store a block report");
                    false
                }
            },
            None => false,
        };
        metrics::counter!("sheepdog_proxy_reports_total").increment(1);
        html(
            if stored {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            },
            page::report_received(&reference, stored),
        )
    }

    /// Decides one target for one client.
    fn decide(
        &self,
        policy: &CompiledPolicy,
        identity: &Identity,
        target: Target<'_>,
        at: DateTime<Utc>,
    ) -> Outcome {
        // Without a `captive` group in the policy its fallback group would
        // apply, which may be open: a captive guest reaches nothing.
        if &*identity.group == CAPTIVE_GROUP && policy.group(CAPTIVE_GROUP).is_none() {
            return Outcome {
                action: "block",
                group: Some(CAPTIVE_GROUP.to_string()),
                reason: "Accept the visitor agreement on the guest network's page first."
                    .to_string(),
                ..Outcome::default()
            };
        }
        let q = sheepdog_policy::Query {
            group: &identity.group,
            target,
            at,
        };
        let verdict = policy.verdict(&q);
        if verdict.hit.is_some() || verdict.action != Action::Allow {
            Outcome::from_decision(&policy.explain(&q, &verdict))
        } else {
            Outcome {
                action: verdict.action.as_str(),
                group: verdict
                    .group
                    .and_then(|i| policy.groups().get(i))
                    .map(|g| g.name.to_string()),
                ..Outcome::default()
            }
        }
    }

    /// A plain-HTTP request in absolute form: decide on the full URL, then
    /// forward it or answer with the block page.
    async fn forward(
        &self,
        mut request: Request<Incoming>,
        peer: SocketAddr,
        local: SocketAddr,
        identity: Arc<Identity>,
        dial: Option<SocketAddr>,
        upstream: &Upstream,
    ) -> Result<Response<Body>, hyper::Error> {
        if request.uri().scheme_str() != Some("http") {
            return Ok(text(
                StatusCode::BAD_REQUEST,
                "This proxy forwards http:// URLs; for https:// use CONNECT (browsers do).\n",
            ));
        }
        let authority = match request
            .uri()
            .authority()
            .map(|a| parse_authority(a.as_str(), Some(80)))
        {
            Some(Ok(authority)) => authority,
            Some(Err(error)) => {
                return Ok(closing(text(
                    StatusCode::BAD_REQUEST,
                    &format!("{error}\n"),
                )))
            }
            None => {
                return Ok(text(
                    StatusCode::BAD_REQUEST,
                    "The request names no host.\n",
                ))
            }
        };
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let url = authority.url("http", 80, &path);
        if let Some(answer) = self.continue_link(&url, &authority.host, peer.ip()) {
            return Ok(answer);
        }
        let at = Utc::now();
        let policy = self.engine.current();
        let mut outcome = self.decide(&policy, &identity, Target::Url(&url), at);
        let search = search_term(&url).map(|s| s.term);
        // An acknowledged warning is carried on below like any allowed
        // request.
        if outcome.action == "warn" && !self.heeded(&mut outcome, peer.ip(), &authority.host) {
            let event = self.event(peer, &identity, url.clone(), outcome, None, search, at);
            let response = self.warning_page(&policy, &event, &authority.host, peer.ip(), local);
            self.send(event);
            return Ok(response);
        }
        if outcome.blocked() {
            let reason = outcome.reason.clone();
            let event = self.event(peer, &identity, url.clone(), outcome, None, search, at);
            count_block(&event, "url");
            if &*identity.group == CAPTIVE_GROUP {
                self.send(event);
                return Ok(self.portal_page(&url, None, StatusCode::OK).await);
            }
            let response = self.block_page(&policy, &event, &reason, local);
            self.send(event);
            return Ok(response);
        }

        strip_hop_by_hop(request.headers_mut());
        if self.pages.is_some() {
            narrow_accept_encoding(request.headers_mut());
        }
        // RFC 9110 asks a proxy to say it forwarded the request; it also
        // lets the proxy see its own request come back (see `landed`).
        request
            .headers_mut()
            .append(header::VIA, HeaderValue::from_static(VIA));
        if let Some(dial) = dial {
            // Connect where the device meant, whatever its Host header says;
            // the Host header itself goes along unchanged.
            if let Ok(uri) = format!("http://{dial}{path}").parse() {
                *request.uri_mut() = uri;
            }
        }
        let started = Instant::now();
        let result = upstream.send(&self.connector, request).await;
        let elapsed = started.elapsed();
        metrics::histogram!("sheepdog_proxy_upstream_seconds", "kind" => "http")
            .record(elapsed.as_secs_f64());
        let upstream_ms = u32::try_from(elapsed.as_millis()).ok();
        let event = (self.sink.is_some() || self.pages.is_some()).then(|| {
            self.event(
                peer,
                &identity,
                url.clone(),
                outcome,
                upstream_ms,
                search,
                at,
            )
        });
        let response = match result {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                let body = self.read_page(&parts.headers, body.boxed(), event.as_ref());
                Response::from_parts(parts, body)
            }
            Err(error) => {
                metrics::counter!("sheepdog_proxy_upstream_errors_total").increment(1);
                tracing::debug!(%error, %url, "origin request failed");
                text(
                    StatusCode::BAD_GATEWAY,
                    &format!("sheepdog could not reach {}: {error}\n", authority.dial()),
                )
            }
        };
        // With events off there is no one to build the event for.
        if let Some(event) = event {
            self.send(event);
        }
        Ok(response)
    }

    /// CONNECT: decide on the host; dial; then, once the client's first
    /// bytes show a TLS ClientHello, decide on its server name too.
    async fn connect(
        self: Arc<Self>,
        request: Request<Incoming>,
        peer: SocketAddr,
        local: SocketAddr,
        identity: Arc<Identity>,
    ) -> Response<Body> {
        let target = request
            .uri()
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_default();
        let authority = match parse_authority(&target, None) {
            Ok(authority) => authority,
            Err(error) => return closing(text(StatusCode::BAD_REQUEST, &format!("{error}\n"))),
        };
        let at = Utc::now();
        let policy = self.engine.current();
        let outcome = self.decide(&policy, &identity, Target::Name(&authority.host), at);
        if outcome.blocked() && !self.warns_inside(&outcome, &authority.host) {
            let message = blocked_text(&authority.host, &outcome);
            let event = self.event(
                peer,
                &identity,
                authority.host.clone(),
                outcome,
                None,
                None,
                at,
            );
            count_block(&event, "connect");
            let message = format!("{message}Reference: {}\n", page::reference(&event));
            self.send(event);
            return closing(text(StatusCode::FORBIDDEN, &message));
        }
        let started = Instant::now();
        let dialled = tokio::time::timeout(
            self.settings.connect_timeout,
            TcpStream::connect(authority.dial()),
        )
        .await;
        let elapsed = started.elapsed();
        metrics::histogram!("sheepdog_proxy_upstream_seconds", "kind" => "connect")
            .record(elapsed.as_secs_f64());
        let upstream = match dialled {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                metrics::counter!("sheepdog_proxy_upstream_errors_total").increment(1);
                let event = self.event(
                    peer,
                    &identity,
                    authority.host.clone(),
                    outcome,
                    None,
                    None,
                    at,
                );
                self.send(event);
                return closing(text(
                    StatusCode::BAD_GATEWAY,
                    &format!("sheepdog could not connect to {authority}: {error}\n"),
                ));
            }
            Err(_) => {
                metrics::counter!("sheepdog_proxy_upstream_errors_total").increment(1);
                let event = self.event(
                    peer,
                    &identity,
                    authority.host.clone(),
                    outcome,
                    None,
                    None,
                    at,
                );
                self.send(event);
                return closing(text(
                    StatusCode::GATEWAY_TIMEOUT,
                    &format!("sheepdog could not connect to {authority} in time\n"),
                ));
            }
        };
        let _ = upstream.set_nodelay(true);
        let upstream_ms = u32::try_from(elapsed.as_millis()).ok();
        let proxy = self.clone();
        tokio::spawn(async move {
            match hyper::upgrade::on(request).await {
                Ok(upgraded) => {
                    proxy
                        .tunnel(
                            TokioIo::new(upgraded),
                            upstream,
                            Link {
                                peer,
                                local,
                                identity,
                                authority,
                            },
                            outcome,
                            upstream_ms,
                            at,
                        )
                        .await;
                }
                Err(error) => tracing::debug!(%error, %peer, "CONNECT upgrade failed"),
            }
        });
        Response::new(empty())
    }

    #[allow(clippy::too_many_arguments)]
    async fn tunnel(
        self: Arc<Self>,
        mut client: TokioIo<hyper::upgrade::Upgraded>,
        upstream: TcpStream,
        link: Link,
        outcome: Outcome,
        upstream_ms: Option<u32>,
        at: DateTime<Utc>,
    ) {
        use tokio::io::AsyncWriteExt;
        let Link {
            peer,
            identity,
            authority,
            ..
        } = &link;
        let (peer, identity) = (*peer, identity.clone());
        let (first, hello) =
            match sni::read_hello(&mut client, self.settings.client_hello_timeout).await {
                Ok(read) => read,
                Err(error) => {
                    tracing::debug!(%error, %peer, "tunnel closed before its first bytes");
                    return;
                }
            };
        let kind = match &hello {
            Hello::ServerName(_) => "tls_sni",
            Hello::NoServerName => "tls_no_sni",
            // Not TLS, or a hello rustls refuses: decided on the host alone.
            Hello::NotTls => "other",
        };
        metrics::counter!("sheepdog_proxy_tunnels_total", "hello" => kind).increment(1);
        let mut target = authority.host.clone();
        let mut outcome = outcome;
        if let Hello::ServerName(name) = &hello {
            if *name != authority.host {
                let policy = self.engine.current();
                let by_name = self.decide(&policy, &identity, Target::Name(name), at);
                target = name.clone();
                if by_name.blocked() && !self.warns_inside(&by_name, name) {
                    let mut by_name = by_name;
                    by_name.rule = Some(format!(
                        "{} (TLS server name {name} in a CONNECT to {})",
                        by_name.rule.as_deref().unwrap_or(name),
                        authority.host
                    ));
                    let event = self.event(peer, &identity, target, by_name, upstream_ms, None, at);
                    count_block(&event, "sni");
                    self.send(event);
                    // The tunnel is already open, so the only clear answer
                    // left is to end it before a byte reaches the origin.
                    let _ = client.shutdown().await;
                    return;
                }
                if by_name.action != "allow" || outcome.action == "allow" {
                    outcome = by_name;
                }
            }
        }
        let server_name = match hello {
            Hello::ServerName(name) => Some(name),
            _ => None,
        };
        let decided = Decided {
            target,
            outcome,
            upstream_ms,
            at,
        };
        // The socket under the upgrade, when hyper gives it back, lets an
        // uninspected tunnel be carried with splice(2); bytes hyper had
        // read past the CONNECT head come first.
        match client
            .into_inner()
            .downcast::<TokioIo<crate::server::Watched>>()
        {
            Ok(parts) => {
                let mut first = first;
                first.extend_from_slice(&parts.read_buf);
                let socket = parts.io.into_inner().inner;
                self.carry(socket, first, server_name, upstream, link, decided)
                    .await;
            }
            Err(upgraded) => {
                let client = TokioIo::new(upgraded);
                self.carry(client, first, server_name, upstream, link, decided)
                    .await;
            }
        }
    }

    /// The rest of an allowed tunnel: inspected when the server name is
    /// one to inspect, otherwise carried byte for byte.
    async fn carry<C>(
        self: Arc<Self>,
        mut client: C,
        first: Vec<u8>,
        server_name: Option<String>,
        mut upstream: TcpStream,
        link: Link,
        decided: Decided,
    ) where
        C: TunnelClient,
    {
        use tokio::io::AsyncWriteExt;
        if let (Some(inspection), Some(name)) = (&self.inspection, &server_name) {
            let warned = decided.outcome.action == "warn" && inspection.may_inspect(name);
            if warned || inspection.wants(name, &self.engine.current()) {
                metrics::counter!("sheepdog_proxy_inspected_total").increment(1);
                let inspection = inspection.clone();
                let name = name.clone();
                // Each request inside gets its own event, on its full URL.
                self.inspect(inspection, client, first, upstream, name, link)
                    .await;
                return;
            }
        }
        let peer = link.peer;
        let Decided {
            target,
            outcome,
            upstream_ms,
            at,
        } = decided;
        let warned = outcome.action == "warn";
        let event = self.event(peer, &link.identity, target, outcome, upstream_ms, None, at);
        self.send(event);
        if warned {
            // A warning needs a page, and a page needs the tunnel
            // inspected; without a server name to inspect under, it stays
            // a block.
            let _ = client.shutdown().await;
            return;
        }
        if upstream.write_all(&first).await.is_err() {
            return;
        }
        let spliced = client.socket().zip(crate::splice::Pipes::new());
        let carried = if let Some((socket, pipes)) = spliced {
            crate::splice::splice_bidirectional(socket, &upstream, pipes).await
        } else {
            // Larger buffers than tokio's 8 KiB default: a bulk download
            // moves in fewer, larger reads and writes.
            tokio::io::copy_bidirectional_with_sizes(
                &mut client,
                &mut upstream,
                TUNNEL_BUFFER,
                TUNNEL_BUFFER,
            )
            .await
        };
        match carried {
            Ok((up, down)) => {
                metrics::counter!("sheepdog_proxy_tunnel_bytes_total", "direction" => "up")
                    .increment(up + first.len() as u64);
                metrics::counter!("sheepdog_proxy_tunnel_bytes_total", "direction" => "down")
                    .increment(down);
            }
            Err(error) => tracing::debug!(%error, %peer, "tunnel ended"),
        }
    }

    /// Serves an inspected tunnel: TLS with the client under a minted
    /// certificate, TLS with the origin under its verified one, and every
    /// request between decided on its full URL.
    async fn inspect<C>(
        self: Arc<Self>,
        inspection: Arc<Inspection>,
        client: C,
        first: Vec<u8>,
        upstream: TcpStream,
        host: String,
        link: Link,
    ) where
        C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let peer = link.peer;
        let accepted = tokio::time::timeout(
            self.settings.client_hello_timeout,
            inspection.acceptor.accept(Replay::new(first, client)),
        )
        .await;
        let tls = match accepted {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => {
                // Typically a device without the school's certificate.
                metrics::counter!("sheepdog_proxy_inspection_failures_total", "side" => "client")
                    .increment(1);
                tracing::debug!(%error, %peer, %host, "client refused the inspection certificate");
                return;
            }
            Err(_) => return,
        };
        let origin = Arc::new(tokio::sync::Mutex::new(
            Origin::open(&inspection, &host, &link.authority, Some(upstream)).await,
        ));
        let link = Arc::new(link);
        let settings = self.settings.clone();
        let service = hyper::service::service_fn(move |request| {
            let proxy = self.clone();
            let (inspection, origin, link, host) = (
                inspection.clone(),
                origin.clone(),
                link.clone(),
                host.clone(),
            );
            async move {
                Ok::<_, hyper::Error>(
                    proxy
                        .inspected(request, &inspection, &origin, &link, &host)
                        .await,
                )
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(settings.header_timeout)
            .max_headers(settings.max_headers)
            .max_header_size(settings.max_header_bytes)
            .keep_alive(true);
        if let Err(error) = builder.serve_connection(TokioIo::new(tls), service).await {
            tracing::debug!(%error, %peer, "inspected connection ended");
        }
    }

    /// One request inside an inspected tunnel to `host`.
    async fn inspected(
        &self,
        mut request: Request<Incoming>,
        inspection: &Inspection,
        origin: &tokio::sync::Mutex<Origin>,
        link: &Link,
        host: &str,
    ) -> Response<Body> {
        // The Host header names the site the browser means; the server
        // name only chose the certificate.
        let site = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| parse_authority(h, Some(443)).ok())
            .unwrap_or_else(|| Authority {
                host: host.to_string(),
                port: link.authority.port,
            });
        let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
        let url = site.url("https", 443, path);
        if let Some(answer) = self.continue_link(&url, &site.host, link.peer.ip()) {
            return answer;
        }
        let at = Utc::now();
        let identity = &link.identity;
        let policy = self.engine.current();
        let mut outcome = self.decide(&policy, identity, Target::Url(&url), at);
        let search = search_term(&url).map(|s| s.term);
        if outcome.action == "warn" && !self.heeded(&mut outcome, link.peer.ip(), &site.host) {
            let event = self.event(link.peer, identity, url, outcome, None, search, at);
            let response =
                self.warning_page(&policy, &event, &site.host, link.peer.ip(), link.local);
            self.send(event);
            return response;
        }
        if outcome.blocked() {
            let reason = outcome.reason.clone();
            let event = self.event(link.peer, identity, url, outcome, None, search, at);
            count_block(&event, "inspected");
            let response = self.block_page(&policy, &event, &reason, link.local);
            self.send(event);
            return response;
        }
        let group = outcome.group.as_deref().unwrap_or(&identity.group);
        if let (Some(engine), Some(group)) = (search::engine_of(&site.host), policy.group(group)) {
            enforce_safe_search(&mut request, engine, &group.safe_search);
        }
        strip_hop_by_hop(request.headers_mut());
        if self.pages.is_some() {
            narrow_accept_encoding(request.headers_mut());
        }
        let started = Instant::now();
        let result = origin
            .lock()
            .await
            .send(inspection, host, &link.authority, request)
            .await;
        let elapsed = started.elapsed();
        metrics::histogram!("sheepdog_proxy_upstream_seconds", "kind" => "inspected")
            .record(elapsed.as_secs_f64());
        let upstream_ms = u32::try_from(elapsed.as_millis()).ok();
        let event = self.event(link.peer, identity, url, outcome, upstream_ms, search, at);
        let response = match result {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                let body = self.read_page(&parts.headers, body.boxed(), Some(&event));
                Response::from_parts(parts, body)
            }
            Err(error) => {
                metrics::counter!("sheepdog_proxy_inspection_failures_total", "side" => "origin")
                    .increment(1);
                text(
                    StatusCode::BAD_GATEWAY,
                    &format!("sheepdog could not reach {host} safely: {error}\n"),
                )
            }
        };
        self.send(event);
        response
    }

    /// Whether a warned tunnel can go ahead to show its warning page
    /// inside (when TLS inspection is on and the host may be inspected).
    fn warns_inside(&self, outcome: &Outcome, host: &str) -> bool {
        outcome.action == "warn"
            && self.warnings.is_some()
            && self
                .inspection
                .as_ref()
                .is_some_and(|i| i.may_inspect(host))
    }

    /// A followed "continue" link: the acknowledgement is recorded and the
    /// browser sent on to the URL without the token. A wrong or stale
    /// token just loses the parameter, and the next request is decided as
    /// usual.
    fn continue_link(&self, url: &str, host: &str, client: IpAddr) -> Option<Response<Body>> {
        let (url, token) = warning::take_continue(url)?;
        let warnings = self.warnings.as_ref()?;
        if warnings.acknowledge(client, host, &token) {
            metrics::counter!("sheepdog_proxy_warnings_continued_total").increment(1);
        }
        let mut response = Response::new(empty());
        *response.status_mut() = StatusCode::SEE_OTHER;
        let location = HeaderValue::from_str(&url).ok()?;
        response.headers_mut().insert(header::LOCATION, location);
        Some(no_store(response))
    }

    /// Whether a warned request goes ahead because its client continued
    /// past the warning lately; if so the outcome says so.
    fn heeded(&self, outcome: &mut Outcome, client: IpAddr, host: &str) -> bool {
        let acknowledged = self
            .warnings
            .as_ref()
            .is_some_and(|w| w.acknowledged(client, host));
        if acknowledged {
            outcome.action = "allow";
            outcome.rule = Some(format!(
                "{} (warning acknowledged)",
                outcome.rule.as_deref().unwrap_or(host)
            ));
        }
        acknowledged
    }

    /// The warning page: why the site needs a second thought, and a link
    /// that goes on to it.
    fn warning_page(
        &self,
        policy: &CompiledPolicy,
        event: &DecisionEvent,
        host: &str,
        client: IpAddr,
        local: SocketAddr,
    ) -> Response<Body> {
        let Some(warnings) = &self.warnings else {
            return self.block_page(policy, event, "", local);
        };
        let (_, audience, local_time) = self.reader(policy, event);
        let continue_to = warning::with_continue(&event.target, &warnings.token(client, host));
        let body = WarningPage {
            audience,
            site: &event.target,
            category: event.category.as_deref(),
            local_time,
            reference: &page::reference(event),
            continue_to: &continue_to,
            minutes: warnings.lasts().as_secs() / 60,
        }
        .render();
        no_store(html(StatusCode::OK, body))
    }

    /// Whether a client is on a guest network.
    fn on_guest_network(&self, peer: SocketAddr) -> bool {
        self.identities
            .guests()
            .is_some_and(|guests| guests.covers(peer.ip()))
    }

    /// Whether a client is a guest who has not accepted yet.
    fn is_captive(&self, peer: SocketAddr) -> bool {
        self.on_guest_network(peer) && &*self.identities.lookup(peer.ip()).group == CAPTIVE_GROUP
    }

    /// The portal with the visitor agreement in force. Captive-portal
    /// probes (`/generate_204`, `/hotspot-detect.html`, `connecttest.txt`)
    /// get it too: anything but their expected answer makes the device
    /// open its portal window.
    async fn portal_page(
        &self,
        next: &str,
        problem: Option<&str>,
        status: StatusCode,
    ) -> Response<Body> {
        let agreement = match (&self.store, &self.portal) {
            (Some(store), Some(portal)) => store.guest_agreement(portal.school_id).await,
            _ => {
                return no_store(text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "This guest network needs you to accept the school's visitor agreement, \
                     but the page cannot be shown just now. Please ask at reception.\n",
                ))
            }
        };
        let agreement = match agreement {
            Ok(agreement) => agreement,
            Err(error) => {
                tracing::warn!(%error, "cannot read the visitor agreement for the guest portal");
                return no_store(text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The visitor agreement cannot be shown just now. Please ask at reception.\n",
                ));
            }
        };
        let body = page::PortalPage {
            agreement: &agreement.body,
            version: agreement.version,
            action: PORTAL_PATH,
            next,
            problem,
        }
        .render();
        no_store(html(status, body))
    }

    /// The portal itself: its page, and its form, which records the
    /// acceptance and lets the address through at once.
    async fn portal(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        metrics::counter!("sheepdog_proxy_requests_total", "kind" => "portal").increment(1);
        if request.method() != Method::POST {
            return self.portal_page("", None, StatusCode::OK).await;
        }
        let form = match Form::read(request, "form").await {
            Ok(form) => form,
            Err(refused) => return refused,
        };
        let field = |name: &str| form.field(name);
        let next = field("next");
        if field("agree") != "yes" {
            return self
                .portal_page(
                    &next,
                    Some("Tick the box to say you agree, then press \"I agree\"."),
                    StatusCode::BAD_REQUEST,
                )
                .await;
        }
        let (Some(store), Some(portal), Some(guests)) =
            (&self.store, &self.portal, self.identities.guests())
        else {
            return self
                .portal_page(&next, None, StatusCode::SERVICE_UNAVAILABLE)
                .await;
        };
        let shown: i64 = field("version").parse().unwrap_or(-1);
        match store.guest_agreement(portal.school_id).await {
            Ok(current) if current.version != shown => {
                return self
                    .portal_page(
                        &next,
                        Some("The agreement has just been updated; please read it again."),
                        StatusCode::CONFLICT,
                    )
                    .await
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "cannot read the visitor agreement for the guest portal");
                return self
                    .portal_page(&next, None, StatusCode::SERVICE_UNAVAILABLE)
                    .await;
            }
        }
        let client = match peer.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        let name = field("name");
        let accepted = store
            .accept_guest_agreement(
                &Actor::system("captive-portal"),
                portal.school_id,
                client,
                Some(name.as_str()),
                portal.acceptance_hours,
                Utc::now(),
            )
            .await;
        match accepted {
            Ok(acceptance) => {
                let until = DateTime::parse_from_rfc3339(&acceptance.expires_at)
                    .map(|t| t.with_timezone(&Utc))
                    .unwrap_or_else(|_| Utc::now());
                guests.admit(client, until);
                metrics::counter!("sheepdog_proxy_guest_acceptances_total").increment(1);
                let local = until
                    .with_timezone(&self.engine.current().time_zone())
                    .format("%H:%M on %-d %B")
                    .to_string();
                no_store(html(StatusCode::OK, page::portal_accepted(&next, &local)))
            }
            Err(error) => {
                tracing::warn!(%error, "cannot record a guest's acceptance");
                self.portal_page(
                    &next,
                    Some("Your acceptance could not be saved just now; please try again, or ask at reception."),
                    StatusCode::SERVICE_UNAVAILABLE,
                )
                .await
            }
        }
    }

    /// The block page for a blocked plain-HTTP request.
    fn block_page(
        &self,
        policy: &CompiledPolicy,
        event: &DecisionEvent,
        reason: &str,
        local: SocketAddr,
    ) -> Response<Body> {
        let (group, audience, local_time) = self.reader(policy, event);
        let reference = page::reference(event);
        let host = parse_authority(
            event
                .target
                .strip_prefix("http://")
                .or_else(|| event.target.strip_prefix("https://"))
                .and_then(|r| r.split('/').next())
                .unwrap_or(""),
            Some(80),
        )
        .map(|a| a.host)
        .unwrap_or_default();
        let request_access = self.settings.console_url.as_ref().map(|console| {
            let site: String = form_urlencoded::byte_serialize(host.as_bytes()).collect();
            format!("{console}/requests/new?site={site}")
        });
        let report_action = format!("{}{REPORT_PATH}", self.base_url(local));
        let reason = if reason.is_empty() {
            "The school's filtering policy does not allow this site."
        } else {
            reason
        };
        let body = BlockPage {
            audience,
            site: &event.target,
            category: event.category.as_deref(),
            reason,
            local_time,
            reference: &reference,
            group: &group,
            report_action: &report_action,
            request_access,
        }
        .render();
        no_store(html(StatusCode::FORBIDDEN, body))
    }

    /// Who a page about `event` is for (its group and that group's
    /// audience) and the event's time as the school reads it.
    fn reader(&self, policy: &CompiledPolicy, event: &DecisionEvent) -> (String, Audience, String) {
        let group = event.group.clone().unwrap_or_default();
        let audience = Audience::of_group(
            &group,
            &self.settings.young_groups,
            &self.settings.staff_groups,
        );
        let local_time = event
            .at
            .with_timezone(&policy.time_zone())
            .format("%-d %B %Y, %H:%M:%S")
            .to_string();
        (group, audience, local_time)
    }

    #[allow(clippy::too_many_arguments)]
    fn event(
        &self,
        client: SocketAddr,
        identity: &Identity,
        target: String,
        outcome: Outcome,
        upstream_ms: Option<u32>,
        search_term: Option<String>,
        at: DateTime<Utc>,
    ) -> DecisionEvent {
        DecisionEvent {
            at,
            source: EventSource::Proxy,
            client: client.ip().to_string(),
            device_id: identity.device_id,
            device_name: identity.device_name.as_deref().map(str::to_string),
            person_id: identity.person_id,
            group: outcome.group.or_else(|| Some(identity.group.to_string())),
            target,
            query_type: None,
            action: outcome.action.to_string(),
            illegal: outcome.illegal,
            category: outcome.category,
            list: outcome.list,
            rule: outcome.rule,
            upstream_ms,
            search_term,
            school_id: identity.school_id,
        }
    }

    /// An allowed response's body, copied for monitoring when pages are
    /// read (see [`crate::reading`]).
    fn read_page(&self, headers: &HeaderMap, body: Body, event: Option<&DecisionEvent>) -> Body {
        match (&self.pages, event) {
            (Some(pages), Some(event)) => read_page(headers, body, event, pages),
            _ => body,
        }
    }

    fn send(&self, event: DecisionEvent) {
        if let Some(sink) = &self.sink {
            sink.try_send(event);
        }
    }
}

/// A small URL-encoded form posted to one of the proxy's own pages.
struct Form(Bytes);

impl Form {
    /// Reads the body; one over [`MAX_REPORT_BYTES`] gets 413, naming
    /// `what` was too long, and the connection closed.
    async fn read(request: Request<Incoming>, what: &str) -> Result<Self, Response<Body>> {
        match Limited::new(request.into_body(), MAX_REPORT_BYTES)
            .collect()
            .await
        {
            Ok(collected) => Ok(Self(collected.to_bytes())),
            Err(_) => Err(closing(text(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("The {what} is too long.\n"),
            ))),
        }
    }

    /// The first value of field `name`, or "".
    fn field(&self, name: &str) -> String {
        form_urlencoded::parse(&self.0)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    }
}

/// A tunnel's decision so far, for its event.
struct Decided {
    target: String,
    outcome: Outcome,
    upstream_ms: Option<u32>,
    at: DateTime<Utc>,
}

/// Who a tunnel serves and where it goes.
struct Link {
    peer: SocketAddr,
    local: SocketAddr,
    identity: Arc<Identity>,
    authority: Authority,
}

/// The proxy's own connection to an inspected origin, opened again when
/// the origin closes it between requests.
struct Origin {
    sender: Result<SendRequest<Incoming>, String>,
}

impl Origin {
    /// Connects (over `stream` when already dialled) and verifies the
    /// origin's certificate for `host`.
    async fn open(
        inspection: &Inspection,
        host: &str,
        authority: &Authority,
        stream: Option<TcpStream>,
    ) -> Self {
        let sender = async {
            let stream = match stream {
                Some(stream) => stream,
                None => TcpStream::connect(authority.dial())
                    .await
                    .map_err(|e| format!("cannot connect to {authority}: {e}"))?,
            };
            let name = Inspection::server_name(host).map_err(|e| e.to_string())?;
            let tls = inspection
                .connector
                .connect(name, stream)
                .await
                .map_err(|e| format!("its certificate is not trusted ({e})"))?;
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            Ok(sender)
        }
        .await;
        Self { sender }
    }

    async fn send(
        &mut self,
        inspection: &Inspection,
        host: &str,
        authority: &Authority,
        request: Request<Incoming>,
    ) -> Result<Response<Incoming>, String> {
        let closed = match &mut self.sender {
            Ok(sender) => sender.ready().await.is_err(),
            Err(_) => false,
        };
        if closed {
            *self = Self::open(inspection, host, authority, None).await;
        }
        match &mut self.sender {
            Ok(sender) => sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string()),
            Err(error) => Err(error.clone()),
        }
    }
}

/// Makes a search on `engine` safe for the group: a rewritten query for
/// Google, Bing and DuckDuckGo, the `YouTube-Restrict` header for YouTube.
fn enforce_safe_search(
    request: &mut Request<Incoming>,
    engine: &str,
    safe: &sheepdog_policy::SafeSearch,
) {
    if engine == "youtube" {
        if let Some(mode) = search::youtube_restriction(safe) {
            request
                .headers_mut()
                .insert("youtube-restrict", HeaderValue::from_static(mode));
        }
        return;
    }
    let Some(query) = search::safe_query(engine, request.uri().query(), safe) else {
        return;
    };
    let target = format!("{}?{query}", request.uri().path());
    if let Ok(uri) = target.parse() {
        *request.uri_mut() = uri;
    }
}

/// The length of a request target as the client wrote it, without
/// formatting it again.
fn uri_len(uri: &hyper::Uri) -> usize {
    let scheme = uri.scheme_str().map_or(0, |s| s.len() + "://".len());
    let authority = uri.authority().map_or(0, |a| a.as_str().len());
    let rest = match (uri.authority(), uri.path_and_query()) {
        // CONNECT's authority form has no path.
        (Some(_), None) => 0,
        (_, p) => p.map_or(1, |p| p.as_str().len()),
    };
    scheme + authority + rest
}

fn count_block(event: &DecisionEvent, stage: &'static str) {
    let category = event
        .category
        .clone()
        .unwrap_or_else(|| "uncategorised".to_string());
    metrics::counter!("sheepdog_proxy_blocked_total", "category" => category, "stage" => stage)
        .increment(1);
}

fn blocked_text(host: &str, outcome: &Outcome) -> String {
    format!(
        "sheepdog blocked {host}{}.\n{}\n",
        outcome
            .category
            .as_deref()
            .map(|c| format!(" (category: {c})"))
            .unwrap_or_default(),
        if outcome.reason.is_empty() {
            "The school's filtering policy does not allow this site."
        } else {
            outcome.reason.as_str()
        }
    )
}

/// Whether `authority` is `local`'s address and port, compared as
/// addresses (no string is made: this runs for every request).
fn is_address(authority: &Authority, local: SocketAddr) -> bool {
    authority.port == local.port()
        && authority
            .host
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip == local.ip())
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none, or only `Connection`: one pass over the
    // names finds them, where a removal per listed name would parse and
    // hash each of them every time; nothing is allocated when none is
    // there.
    let mut found: Vec<HeaderName> = Vec::new();
    for name in headers.keys() {
        if is_hop_by_hop(name.as_str()) {
            found.push(name.clone());
        }
    }
    if found.is_empty() {
        return;
    }
    // Headers the Connection header names are hop-by-hop too.
    found.extend(
        headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_str(name.trim()).ok()),
    );
    for name in found {
        headers.remove(name);
    }
}

pub(crate) fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

fn empty() -> Body {
    full(Bytes::new())
}

pub(crate) fn text(status: StatusCode, message: &str) -> Response<Body> {
    let mut response = Response::new(full(message.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn html(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// Marks a response as never to be cached: a portal shown in place of a
/// site must not stand in for it later.
fn no_store(mut response: Response<Body>) -> Response<Body> {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The URL an origin-form request was for, from its Host header.
fn requested_url(request: &Request<Incoming>) -> String {
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|host| format!("http://{host}{path}"))
        .unwrap_or_default()
}

/// Marks a response as the last on its connection: hyper closes it after.
fn closing(mut response: Response<Body>) -> Response<Body> {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_lengths_match_the_written_target() {
        for target in [
            "http://example.test:8080/a/b?c=d",
            "http://example.test",
            "/proxy.pac",
            "example.test:443",
        ] {
            let uri: hyper::Uri = target.parse().unwrap();
            let written = if target == "http://example.test" {
                target.len() + 1
            } else {
                target.len()
            };
            assert_eq!(uri_len(&uri), written, "{target}");
        }
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
        headers.insert("accept", HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("accept"));
    }

    #[test]
    fn client_networks_include_mapped_ipv4() {
        let config = ProxyConfig {
            client_networks: vec!["127.0.0.1/32".into(), "::1".into()],
            ..ProxyConfig::default()
        };
        let settings = ProxySettings::from_config(&config);
        assert!(settings.serves("127.0.0.1".parse().unwrap()));
        assert!(settings.serves("::ffff:127.0.0.1".parse().unwrap()));
        assert!(settings.serves("::1".parse().unwrap()));
        assert!(!settings.serves("127.0.0.2".parse().unwrap()));
        assert!(!settings.serves("10.0.0.1".parse().unwrap()));
    }
}
