//! Signing in and staying signed in.
//!
//! A browser signs in with a username and password (argon2id), then, for
//! an account with two-factor authentication or a role that requires it, a
//! TOTP code or a one-time recovery code; an account whose role requires
//! two-factor authentication and has none enrols before it can go further.
//! The session lives in the store under the SHA-256 hash of the random
//! token in the cookie (`HttpOnly`, `SameSite=Strict`, `Secure` over TLS),
//! and a fresh token is issued at each step, so a token seen before sign-in
//! is useless after it. Sessions end when idle for the configured time,
//! at their absolute lifetime, on sign-out, or on "sign out everywhere".
//!
//! Failed attempts are counted per username and per address; past a
//! threshold each further failure doubles the wait before the next attempt
//! (from one minute up to an hour), and a good sign-in clears the
//! username's count. Unknown usernames cost the same time and count the
//! same as wrong passwords, so the form does not tell which names exist.
//!
//! Every request that changes anything (any method but GET and HEAD) must
//! carry the session's form token, in a `csrf` form field, a `csrf` query
//! parameter (file uploads) or an `X-CSRF-Token` header; the sign-in form,
//! which has no session yet, carries a token from its own cookie. API calls
//! authenticate with `Authorization: Bearer TOKEN` instead of a cookie and
//! so need no form token.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sheepdog_store::incidents::EvidenceKey;
use sheepdog_store::{Account, Actor, ConsoleSession, NewSession, SessionStage};
use totp_rs::{Algorithm, TOTP};

use crate::html::{self, escape};
use crate::roles::{self, Permission};
use crate::secrets::{random_bytes, random_hex, same, token_hash};
use crate::{ConsoleError, ConsoleState};

/// The session cookie.
pub const SESSION_COOKIE: &str = "sheepdog_session";
/// The cookie that carries the sign-in form's token before any session.
pub const SIGN_IN_COOKIE: &str = "sheepdog_sign_in";
/// Where a signed-out visitor was going (the link in an alert e-mail, say),
/// kept for ten minutes across signing in; the start page sends them on.
pub const NEXT_COOKIE: &str = "sheepdog_next";

/// `path` if it is a path on this console, safe to send someone back to
/// and to keep in a cookie as it is.
pub fn safe_next(path: &str) -> Option<&str> {
    let plain = path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/?=&_.-%".contains(&b));
    (plain && path.starts_with('/') && !path.starts_with("//") && path != "/" && path.len() <= 512)
        .then_some(path)
}

/// Failures against one username before the waits begin.
pub const USERNAME_THRESHOLD: i64 = 5;
/// Failures from one address before the waits begin: higher, because a
/// school's staff often share one address behind its router.
pub const ADDRESS_THRESHOLD: i64 = 20;
/// The longest wait after repeated failures, in minutes.
const LONGEST_WAIT_MINUTES: i64 = 60;
/// How long the second step of signing in may take.
const PENDING_MINUTES: i64 = 10;
/// Recovery codes issued at enrolment.
const RECOVERY_CODES: usize = 10;
/// Form bodies read to find their token; larger forms are refused.
const FORM_LIMIT: usize = 1024 * 1024;

/// The session a request came with, at whatever stage it has reached.
#[derive(Debug, Clone)]
pub struct CurrentSession {
    pub token_hash: String,
    pub session: ConsoleSession,
    pub account: Account,
}

/// Someone fully signed in, by browser session or API token. Handlers take
/// it as an extractor; without one a page redirects to the sign-in form and
/// an API call gets 401.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub account: Account,
    csrf_token: String,
    pub via_api: bool,
}

impl Viewer {
    pub fn can(&self, permission: Permission, school_id: i64) -> bool {
        roles::account_can(&self.account, permission, school_id)
    }

    pub fn can_somewhere(&self, permission: Permission) -> bool {
        roles::account_can_somewhere(&self.account, permission)
    }

    pub fn require(&self, permission: Permission, school_id: i64) -> Result<(), ConsoleError> {
        if self.can(permission, school_id) {
            Ok(())
        } else {
            tracing::warn!(
                account = self.account.id,
                ?permission,
                school_id,
                "refused: the account's roles do not allow this"
            );
            Err(ConsoleError::Forbidden)
        }
    }

    pub fn actor(&self) -> Actor {
        Actor::account(self.account.id, &self.account.username)
    }

    pub fn csrf_token(&self) -> &str {
        &self.csrf_token
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if let Some(viewer) = parts.extensions.get::<Viewer>() {
            return Ok(viewer.clone());
        }
        if parts.uri.path().starts_with("/api/") {
            return Err((
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                axum::Json(serde_json::json!({
                    "error": "sign in with an API token: Authorization: Bearer TOKEN"
                })),
            )
                .into_response());
        }
        Err(match parts.extensions.get::<CurrentSession>() {
            Some(current) if current.session.stage == SessionStage::SecondFactor => {
                Redirect::to("/two-factor").into_response()
            }
            Some(current) if current.session.stage == SessionStage::Enrolment => {
                Redirect::to("/two-factor/enrol").into_response()
            }
            _ => {
                let mut response = Redirect::to("/sign-in").into_response();
                let wanted = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                if parts.method == Method::GET {
                    if let Some(next) = safe_next(wanted) {
                        if let Ok(value) = HeaderValue::from_str(&format!(
                            "{NEXT_COOKIE}={next}; Path=/; HttpOnly; SameSite=Strict; Max-Age=600"
                        )) {
                            response.headers_mut().append(header::SET_COOKIE, value);
                        }
                    }
                }
                response
            }
        })
    }
}

/// The request's client address, when the server recorded one.
fn client_address(extensions: &axum::http::Extensions) -> String {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_string(), |info| info.0.ip().to_string())
}

/// A cookie's value from the request headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
}

fn set_cookie(state: &ConsoleState, name: &str, value: &str) -> HeaderValue {
    let secure = if state.settings().secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let clear = if value.is_empty() { "; Max-Age=0" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict{secure}{clear}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("sheepdog_invalid=; Max-Age=0"))
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Why a session can no longer be used, if it cannot.
fn session_expiry(state: &ConsoleState, session: &ConsoleSession) -> Option<&'static str> {
    let now = Utc::now();
    let (Some(expires), Some(seen), Some(created)) = (
        parse_time(&session.expires_at),
        parse_time(&session.last_seen_at),
        parse_time(&session.created_at),
    ) else {
        return Some("unreadable session times");
    };
    if now >= expires {
        Some("session lifetime reached")
    } else if now >= seen + state.settings().idle_timeout {
        Some("idle time-out")
    } else if session.stage != SessionStage::SignedIn
        && now >= created + chrono::Duration::minutes(PENDING_MINUTES)
    {
        Some("second step of signing in not completed in time")
    } else {
        None
    }
}

/// Finds who is asking, ends sessions that have expired, and refuses any
/// change that does not carry the right form token. Runs before every
/// route.
pub async fn authenticate(
    State(state): State<ConsoleState>,
    request: Request<Body>,
    next: Next,
) -> Response {
    let (mut parts, body) = request.into_parts();
    if parts.uri.path().starts_with("/api/") {
        if let Some(bearer) = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        {
            match api_viewer(&state, bearer.trim()).await {
                Ok(Some(viewer)) => {
                    parts.extensions.insert(viewer);
                }
                Ok(None) => {
                    return (
                        StatusCode::UNAUTHORIZED,
                        axum::Json(serde_json::json!({"error": "this API token is not valid"})),
                    )
                        .into_response()
                }
                Err(error) => return error.into_response(),
            }
        }
        return next.run(Request::from_parts(parts, body)).await;
    }

    let mut clear_session_cookie = false;
    let mut current = None;
    if let Some(token) = cookie(&parts.headers, SESSION_COOKIE) {
        match load_session(&state, &token).await {
            Ok(Some(found)) => current = Some(found),
            Ok(None) => clear_session_cookie = true,
            Err(error) => return error.into_response(),
        }
    }

    let body = if parts.method == Method::GET || parts.method == Method::HEAD {
        body
    } else {
        // The sign-in form always carries its own cookie's token, even when
        // an unfinished session is still around.
        let expected = match &current {
            Some(found) if parts.uri.path() != "/sign-in" => found.session.csrf_token.clone(),
            _ => cookie(&parts.headers, SIGN_IN_COOKIE).unwrap_or_default(),
        };
        let (presented, body) = match presented_csrf(&parts, body).await {
            Ok(found) => found,
            Err(response) => return response,
        };
        if expected.is_empty() || !same(&presented, &expected) {
            tracing::warn!(path = %parts.uri.path(), "refused a form without the right token");
            return ConsoleError::CsrfMismatch.into_response();
        }
        body
    };

    if let Some(found) = current {
        if found.session.stage == SessionStage::SignedIn {
            parts.extensions.insert(Viewer {
                account: found.account.clone(),
                csrf_token: found.session.csrf_token.clone(),
                via_api: false,
            });
        }
        parts.extensions.insert(found);
    }
    let mut response = next.run(Request::from_parts(parts, body)).await;
    let sets_session = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.starts_with(SESSION_COOKIE)));
    if clear_session_cookie && !sets_session {
        response
            .headers_mut()
            .append(header::SET_COOKIE, set_cookie(&state, SESSION_COOKIE, ""));
    }
    response
}

async fn api_viewer(state: &ConsoleState, token: &str) -> Result<Option<Viewer>, ConsoleError> {
    let Some(account_id) = state.store().api_token_account(&token_hash(token)).await? else {
        return Ok(None);
    };
    Ok(state
        .store()
        .account(account_id)
        .await?
        .filter(|account| !account.disabled)
        .map(|account| Viewer {
            account,
            csrf_token: String::new(),
            via_api: true,
        }))
}

/// The session for a cookie's token, ending it if it has expired.
async fn load_session(
    state: &ConsoleState,
    token: &str,
) -> Result<Option<CurrentSession>, ConsoleError> {
    let hash = token_hash(token);
    let Some(session) = state.store().session(&hash).await? else {
        return Ok(None);
    };
    let account = state
        .store()
        .account(session.account_id)
        .await?
        .filter(|account| !account.disabled);
    let ended = match (&account, session_expiry(state, &session)) {
        (None, _) => Some("account disabled"),
        (Some(_), why) => why,
    };
    if let Some(reason) = ended {
        let actor = Actor::system("console");
        state.store().end_session(&actor, &hash, reason).await?;
        return Ok(None);
    }
    state.store().touch_session(&hash).await?;
    Ok(account.map(|account| CurrentSession {
        token_hash: hash,
        session,
        account,
    }))
}

/// The form token a changing request carries, and its body to pass on.
async fn presented_csrf(parts: &Parts, body: Body) -> Result<(String, Body), Response> {
    if let Some(value) = parts
        .headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
    {
        return Ok((value.to_string(), body));
    }
    if let Some(query) = parts.uri.query() {
        if let Some((_, value)) =
            form_urlencoded::parse(query.as_bytes()).find(|(key, _)| key == "csrf")
        {
            return Ok((value.into_owned(), body));
        }
    }
    let is_form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Ok((String::new(), body));
    }
    let bytes = axum::body::to_bytes(body, FORM_LIMIT).await.map_err(|_| {
        ConsoleError::BadRequest("the form is too large".to_string()).into_response()
    })?;
    let token = form_urlencoded::parse(&bytes)
        .find(|(key, _)| key == "csrf")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    Ok((token, Body::from(bytes)))
}

/// Routes for signing in and out and for one's own account.
pub fn routes() -> axum::Router<ConsoleState> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/sign-in", get(sign_in_form).post(sign_in))
        .route("/two-factor", get(second_factor_form).post(second_factor))
        .route("/two-factor/enrol", get(enrol_form).post(enrol))
        .route("/sign-out", post(sign_out))
        .route("/sign-out-everywhere", post(sign_out_everywhere))
        .route("/account", get(account_page))
        .route("/account/tokens", post(create_token))
        .route("/account/tokens/{id}/revoke", post(revoke_token))
}

/// The sign-in form; `label` names the school above it.
pub async fn sign_in_page(
    state: &ConsoleState,
    headers: &HeaderMap,
    username: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let token = match cookie(headers, SIGN_IN_COOKIE).filter(|t| t.len() == 64) {
        Some(token) => token,
        None => match random_hex(32) {
            Ok(token) => token,
            Err(error) => return error.into_response(),
        },
    };
    let label = crate::pages::school_label(state).await;
    let summary = error.map_or(String::new(), |e| {
        format!(
            "<div class=\"summary\" role=\"alert\"><p class=\"error\">{}</p></div>",
            escape(e)
        )
    });
    let body = format!(
        "<h1>Sign in</h1><p>{label}</p>{summary}\
         <form method=\"post\" action=\"/sign-in\">{csrf}\
         <label for=\"username\">Username</label>\
         <input id=\"username\" name=\"username\" type=\"text\" autocomplete=\"username\" value=\"{username}\" required>\
         <label for=\"password\">Password</label>\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
         <div><button>Sign in</button></div></form>",
        label = escape(&label),
        csrf = html::csrf_field(&token),
        username = escape(username),
    );
    (
        status,
        [(
            header::SET_COOKIE,
            set_cookie(state, SIGN_IN_COOKIE, &token),
        )],
        html::bare_page("Sign in", &body),
    )
        .into_response()
}

async fn sign_in_form(State(state): State<ConsoleState>, parts: Parts) -> Response {
    if parts.extensions.get::<Viewer>().is_some() {
        return Redirect::to("/").into_response();
    }
    sign_in_page(&state, &parts.headers, "", None, StatusCode::OK).await
}

#[derive(Debug, Deserialize)]
struct SignInForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

/// When the attempts counted against `key` allow the next one, if later
/// than now.
async fn locked_until(
    state: &ConsoleState,
    key: &str,
    threshold: i64,
) -> Result<Option<DateTime<Utc>>, ConsoleError> {
    let Some(failures) = state.store().sign_in_failures(key).await? else {
        return Ok(None);
    };
    if failures.failures < threshold {
        return Ok(None);
    }
    let doublings = u32::try_from((failures.failures - threshold).clamp(0, 6)).unwrap_or(6);
    let wait = (1i64 << doublings).min(LONGEST_WAIT_MINUTES);
    let until =
        parse_time(&failures.last_failure_at).map(|last| last + chrono::Duration::minutes(wait));
    Ok(until.filter(|until| *until > Utc::now()))
}

fn throttle_keys(username: &str, address: &str) -> (String, String) {
    (
        format!("user:{}", username.trim().to_lowercase()),
        format!("address:{address}"),
    )
}

/// The time of the latest lock of `keys`, if any is locked.
async fn locked(
    state: &ConsoleState,
    user_key: &str,
    address_key: &str,
) -> Result<Option<DateTime<Utc>>, ConsoleError> {
    let user = locked_until(state, user_key, USERNAME_THRESHOLD).await?;
    let address = locked_until(state, address_key, ADDRESS_THRESHOLD).await?;
    Ok(user.max(address))
}

async fn record_failure(
    state: &ConsoleState,
    user_key: &str,
    address_key: &str,
) -> Result<(), ConsoleError> {
    tracing::warn!(user = user_key, address = address_key, "failed sign-in");
    state
        .store()
        .record_sign_in_failure(
            &[user_key, address_key],
            Utc::now() - chrono::Duration::hours(24),
        )
        .await?;
    Ok(())
}

fn locked_message(until: DateTime<Utc>) -> String {
    format!(
        "There have been too many failed attempts to sign in. Try again after {} (UTC).",
        until.format("%H:%M")
    )
}

async fn sign_in(
    State(state): State<ConsoleState>,
    parts: Parts,
    Form(form): Form<SignInForm>,
) -> Result<Response, ConsoleError> {
    let address = client_address(&parts.extensions);
    let (user_key, address_key) = throttle_keys(&form.username, &address);
    if let Some(until) = locked(&state, &user_key, &address_key).await? {
        tracing::warn!(user = user_key, address, "sign-in refused: locked out");
        return Ok(sign_in_page(
            &state,
            &parts.headers,
            &form.username,
            Some(&locked_message(until)),
            StatusCode::TOO_MANY_REQUESTS,
        )
        .await);
    }
    let found = state.store().account_for_sign_in(&form.username).await?;
    let account = match found {
        Some((account, hash)) => {
            let password = form.password.clone();
            let good =
                tokio::task::spawn_blocking(move || crate::password::verify(&password, &hash))
                    .await
                    .unwrap_or(false);
            (good && !account.disabled).then_some(account)
        }
        None => {
            let password = form.password.clone();
            let _ =
                tokio::task::spawn_blocking(move || crate::password::verify_decoy(&password)).await;
            None
        }
    };
    let Some(account) = account else {
        record_failure(&state, &user_key, &address_key).await?;
        return Ok(sign_in_page(
            &state,
            &parts.headers,
            &form.username,
            Some("The username or password is not right. Check them and try again."),
            StatusCode::UNAUTHORIZED,
        )
        .await);
    };
    state.store().clear_sign_in_failures(&user_key).await?;
    let two_factor = state.store().two_factor(account.id).await?;
    let required = account
        .roles
        .iter()
        .any(|held| state.settings().two_factor_roles.contains(&held.role));
    let stage = match two_factor {
        Some(found) if found.confirmed => SessionStage::SecondFactor,
        _ if required => SessionStage::Enrolment,
        _ => SessionStage::SignedIn,
    };
    let token = random_hex(32)?;
    let csrf = random_hex(32)?;
    let hash = token_hash(&token);
    state
        .store()
        .start_session(
            &Actor::account(account.id, &account.username),
            &NewSession {
                token_hash: &hash,
                account_id: account.id,
                stage,
                csrf_token: &csrf,
                address: &address,
                expires_at: Utc::now() + state.settings().session_lifetime,
            },
        )
        .await?;
    let next = match stage {
        SessionStage::SignedIn => "/",
        SessionStage::SecondFactor => "/two-factor",
        SessionStage::Enrolment => "/two-factor/enrol",
    };
    Ok((
        axum::response::AppendHeaders([
            (
                header::SET_COOKIE,
                set_cookie(&state, SESSION_COOKIE, &token),
            ),
            (header::SET_COOKIE, set_cookie(&state, SIGN_IN_COOKIE, "")),
        ]),
        Redirect::to(next),
    )
        .into_response())
}

/// The session at the stage a step of signing in needs, or a redirect.
fn pending(parts: &Parts, stage: SessionStage) -> Result<CurrentSession, Redirect> {
    match parts.extensions.get::<CurrentSession>() {
        Some(current) if current.session.stage == stage => Ok(current.clone()),
        Some(current) if current.session.stage == SessionStage::SignedIn => Err(Redirect::to("/")),
        _ => Err(Redirect::to("/sign-in")),
    }
}

fn totp(secret: &str, username: &str) -> Result<TOTP, ConsoleError> {
    let bytes = data_encoding::BASE32_NOPAD
        .decode(secret.as_bytes())
        .map_err(|e| ConsoleError::Settings(format!("stored TOTP secret unreadable: {e}")))?;
    TOTP::new(
        Algorithm::SHA1,
        6,
        1,
        30,
        bytes,
        Some("sheepdog".to_string()),
        username.to_string(),
    )
    .map_err(|e| ConsoleError::Settings(format!("TOTP: {e}")))
}

/// The 30-second step a code matches, allowing one step of clock drift
/// either way.
fn matching_step(totp: &TOTP, code: &str) -> Option<i64> {
    let now = Utc::now().timestamp();
    let current = now.div_euclid(30);
    [current - 1, current, current + 1]
        .into_iter()
        .find(|step| {
            u64::try_from(step * 30)
                .map(|time| same(&totp.generate(time), code))
                .unwrap_or(false)
        })
}

/// A code as typed, without spaces and dashes, lower case.
fn tidy_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase()
}

fn second_factor_page(csrf: &str, error: Option<&str>, status: StatusCode) -> Response {
    let error_html = error.map_or(String::new(), |e| {
        format!(
            "<span class=\"error\" id=\"code-error\">Error: {}</span>",
            escape(e)
        )
    });
    let body = format!(
        "<h1>Two-factor authentication</h1>\
         <form method=\"post\" action=\"/two-factor\">{csrf}\
         <label for=\"code\">Code<span class=\"hint\" id=\"code-hint\">The 6-digit code from your \
         authenticator app, or one of your recovery codes</span></label>{error_html}\
         <input id=\"code\" name=\"code\" type=\"text\" inputmode=\"text\" autocomplete=\"one-time-code\" \
         aria-describedby=\"code-hint\" required>\
         <div><button>Continue</button></div></form>\
         <form method=\"post\" action=\"/sign-out\">{csrf}<button class=\"secondary\">Cancel and sign out</button></form>",
        csrf = html::csrf_field(csrf),
    );
    (status, html::bare_page("Two-factor authentication", &body)).into_response()
}

async fn second_factor_form(parts: Parts) -> Response {
    match pending(&parts, SessionStage::SecondFactor) {
        Ok(current) => second_factor_page(&current.session.csrf_token, None, StatusCode::OK),
        Err(redirect) => redirect.into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct CodeForm {
    #[serde(default)]
    code: String,
}

/// Promotes a session to `stage` under a fresh token; returns the cookie.
async fn promote(
    state: &ConsoleState,
    current: &CurrentSession,
    stage: SessionStage,
) -> Result<HeaderValue, ConsoleError> {
    let token = random_hex(32)?;
    let actor = Actor::account(current.account.id, &current.account.username);
    state
        .store()
        .promote_session(&actor, &current.token_hash, &token_hash(&token), stage)
        .await?;
    Ok(set_cookie(state, SESSION_COOKIE, &token))
}

async fn second_factor(
    State(state): State<ConsoleState>,
    parts: Parts,
    Form(form): Form<CodeForm>,
) -> Result<Response, ConsoleError> {
    let current = match pending(&parts, SessionStage::SecondFactor) {
        Ok(current) => current,
        Err(redirect) => return Ok(redirect.into_response()),
    };
    let account = &current.account;
    let address = client_address(&parts.extensions);
    let (user_key, address_key) = throttle_keys(&account.username, &address);
    let csrf = &current.session.csrf_token;
    if let Some(until) = locked(&state, &user_key, &address_key).await? {
        return Ok(second_factor_page(
            csrf,
            Some(&locked_message(until)),
            StatusCode::TOO_MANY_REQUESTS,
        ));
    }
    let code = tidy_code(&form.code);
    let accepted = match state.store().two_factor(account.id).await? {
        Some(found) if found.confirmed => {
            if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
                let totp = totp(&found.secret(sealing_key(&state)?)?, &account.username)?;
                match matching_step(&totp, &code) {
                    Some(step) => state.store().use_totp_step(account.id, step).await?,
                    None => false,
                }
            } else {
                let actor = Actor::account(account.id, &account.username);
                state
                    .store()
                    .use_recovery_code(&actor, account.id, &token_hash(&code))
                    .await?
            }
        }
        _ => false,
    };
    if !accepted {
        record_failure(&state, &user_key, &address_key).await?;
        return Ok(second_factor_page(
            csrf,
            Some("That code is not right, or has been used. Enter the newest code from your app."),
            StatusCode::UNAUTHORIZED,
        ));
    }
    state.store().clear_sign_in_failures(&user_key).await?;
    let cookie = promote(&state, &current, SessionStage::SignedIn).await?;
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response())
}

/// Groups a base32 secret in fours, as people copy it.
fn grouped(secret: &str) -> String {
    secret
        .as_bytes()
        .chunks(4)
        .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

async fn enrol_form(
    State(state): State<ConsoleState>,
    parts: Parts,
) -> Result<Response, ConsoleError> {
    let current = match pending(&parts, SessionStage::Enrolment) {
        Ok(current) => current,
        Err(redirect) => return Ok(redirect.into_response()),
    };
    let secret = pending_secret(&state, &current).await?;
    enrol_page(&current, &secret, None, StatusCode::OK)
}

/// The account's unconfirmed secret, made now if it has none.
async fn pending_secret(
    state: &ConsoleState,
    current: &CurrentSession,
) -> Result<String, ConsoleError> {
    let account = &current.account;
    let key = sealing_key(state)?;
    if let Some(found) = state.store().two_factor(account.id).await? {
        if !found.confirmed {
            return Ok(found.secret(key)?);
        }
    }
    let secret = data_encoding::BASE32_NOPAD.encode(&random_bytes(20)?);
    let actor = Actor::account(account.id, &account.username);
    state
        .store()
        .begin_two_factor_enrolment(&actor, key, account.id, &secret)
        .await?;
    Ok(secret)
}

/// The deployment's key, which seals TOTP secrets as it seals evidence.
fn sealing_key(state: &ConsoleState) -> Result<&EvidenceKey, ConsoleError> {
    state.evidence_key().ok_or_else(|| {
        ConsoleError::Settings(
            "the console has no key file to seal two-factor secrets with; start it with \
             `sheepdog serve` or `sheepdog demo`"
                .to_string(),
        )
    })
}

fn enrol_page(
    current: &CurrentSession,
    secret: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Result<Response, ConsoleError> {
    let url = totp(secret, &current.account.username)?.get_url();
    let error_html = error.map_or(String::new(), |e| {
        format!(
            "<span class=\"error\" id=\"code-error\">Error: {}</span>",
            escape(e)
        )
    });
    let body = format!(
        "<h1>Set up two-factor authentication</h1>\
         <p>Your role can see safeguarding information or change filtering, so signing in needs \
         a code from an authenticator app as well as your password.</p>\
         <ol><li>In your authenticator app, add an account by entering this key \
         (time-based, 6 digits, every 30 seconds):\
         <p class=\"secret\"><strong>{secret}</strong></p>\
         <p>Or, if your app takes a link, use: <code>{url}</code></p></li>\
         <li>Enter the code the app shows.</li></ol>\
         <form method=\"post\" action=\"/two-factor/enrol\">{csrf}\
         <label for=\"code\">Code from your app</label>{error_html}\
         <input id=\"code\" name=\"code\" type=\"text\" inputmode=\"numeric\" autocomplete=\"one-time-code\" required>\
         <div><button>Confirm</button></div></form>\
         <form method=\"post\" action=\"/sign-out\">{csrf}<button class=\"secondary\">Cancel and sign out</button></form>",
        secret = escape(&grouped(secret)),
        url = escape(&url),
        csrf = html::csrf_field(&current.session.csrf_token),
    );
    Ok((
        status,
        html::bare_page("Set up two-factor authentication", &body),
    )
        .into_response())
}

async fn enrol(
    State(state): State<ConsoleState>,
    parts: Parts,
    Form(form): Form<CodeForm>,
) -> Result<Response, ConsoleError> {
    let current = match pending(&parts, SessionStage::Enrolment) {
        Ok(current) => current,
        Err(redirect) => return Ok(redirect.into_response()),
    };
    let account = &current.account;
    let secret = pending_secret(&state, &current).await?;
    let code = tidy_code(&form.code);
    let step = matching_step(&totp(&secret, &account.username)?, &code);
    let Some(step) = step else {
        let address = client_address(&parts.extensions);
        let (user_key, address_key) = throttle_keys(&account.username, &address);
        record_failure(&state, &user_key, &address_key).await?;
        return enrol_page(
            &current,
            &secret,
            Some("That code is not right. Check the app's clock, then enter the newest code."),
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    };
    let mut codes = Vec::with_capacity(RECOVERY_CODES);
    for _ in 0..RECOVERY_CODES {
        let raw = data_encoding::BASE32_NOPAD
            .encode(&random_bytes(5)?)
            .to_ascii_lowercase();
        codes.push(format!("{}-{}", &raw[..4], &raw[4..]));
    }
    let hashes: Vec<String> = codes.iter().map(|c| token_hash(&tidy_code(c))).collect();
    let actor = Actor::account(account.id, &account.username);
    state
        .store()
        .confirm_two_factor(&actor, account.id, step, &hashes)
        .await?;
    let cookie = promote(&state, &current, SessionStage::SignedIn).await?;
    let list: String = codes
        .iter()
        .map(|c| format!("<li><code>{}</code></li>", escape(c)))
        .collect();
    let body = format!(
        "<h1>Two-factor authentication is set up</h1>\
         <div class=\"notice\"><p>These are your recovery codes. Each works once, in place of a \
         code from your app, if you lose your phone. Keep them somewhere safe and private: they \
         are shown only now.</p></div><ul>{list}</ul>\
         <p><a href=\"/\">Continue to the console</a></p>"
    );
    Ok((
        [(header::SET_COOKIE, cookie)],
        html::bare_page("Recovery codes", &body),
    )
        .into_response())
}

async fn sign_out(
    State(state): State<ConsoleState>,
    parts: Parts,
) -> Result<Response, ConsoleError> {
    if let Some(current) = parts.extensions.get::<CurrentSession>() {
        let actor = Actor::account(current.account.id, &current.account.username);
        state
            .store()
            .end_session(&actor, &current.token_hash, "signed out")
            .await?;
    }
    Ok(signed_out(&state, "You have signed out."))
}

async fn sign_out_everywhere(
    State(state): State<ConsoleState>,
    viewer: Viewer,
) -> Result<Response, ConsoleError> {
    let ended = state
        .store()
        .end_all_sessions(&viewer.actor(), viewer.account.id)
        .await?;
    Ok(signed_out(
        &state,
        &format!("You have signed out everywhere ({ended} sessions ended)."),
    ))
}

fn signed_out(state: &ConsoleState, message: &str) -> Response {
    let body = format!(
        "<h1>Signed out</h1><p>{}</p><p><a href=\"/sign-in\">Sign in again</a></p>",
        escape(message)
    );
    (
        [(header::SET_COOKIE, set_cookie(state, SESSION_COOKIE, ""))],
        html::bare_page("Signed out", &body),
    )
        .into_response()
}

async fn account_page(
    State(state): State<ConsoleState>,
    viewer: Viewer,
) -> Result<Response, ConsoleError> {
    account_view(&state, &viewer, None).await
}

async fn account_view(
    state: &ConsoleState,
    viewer: &Viewer,
    new_token: Option<&str>,
) -> Result<Response, ConsoleError> {
    let account = &viewer.account;
    let roles: String = account
        .roles
        .iter()
        .map(|held| {
            let place = held
                .school_id
                .map_or("every school".to_string(), |id| format!("school {id}"));
            format!(
                "<li>{} ({})</li>",
                escape(held.role.as_str()),
                escape(&place)
            )
        })
        .collect();
    let two_factor = match state.store().two_factor(account.id).await? {
        Some(found) if found.confirmed => format!(
            "On. {} unused recovery codes left.",
            state.store().recovery_codes_left(account.id).await?
        ),
        _ => "Off.".to_string(),
    };
    let tokens: String = state
        .store()
        .api_tokens(account.id)
        .await?
        .iter()
        .map(|token| {
            let status = match &token.revoked_at {
                Some(at) => format!("revoked {}", escape(at)),
                None => format!(
                    "<form class=\"inline\" method=\"post\" action=\"/account/tokens/{}/revoke\">{}\
                     <button class=\"secondary\" style=\"margin:0\">Revoke</button></form>",
                    token.id,
                    html::csrf_field(viewer.csrf_token())
                ),
            };
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{status}</td></tr>",
                escape(&token.label),
                escape(&token.created_at),
                escape(token.last_used_at.as_deref().unwrap_or("never")),
            )
        })
        .collect();
    let shown = new_token.map_or(String::new(), |token| {
        format!(
            "<div class=\"notice\" role=\"status\"><p>Your new API token (shown only now; send it as \
             <code>Authorization: Bearer TOKEN</code>):</p><p class=\"secret\"><code>{}</code></p></div>",
            escape(token)
        )
    });
    let body = format!(
        "<h1>Your account</h1><p>{name} ({username})</p><h2>Roles</h2><ul>{roles}</ul>\
         <h2>Two-factor authentication</h2><p>{two_factor}</p>\
         <h2>API tokens</h2>{shown}\
         <table><caption>Tokens act with your roles</caption><thead><tr><th scope=\"col\">Label</th>\
         <th scope=\"col\">Made</th><th scope=\"col\">Last used</th><th scope=\"col\">Status</th></tr></thead>\
         <tbody>{tokens}</tbody></table>\
         <form method=\"post\" action=\"/account/tokens\">{csrf}\
         <label for=\"label\">What the new token is for</label><input id=\"label\" name=\"label\" type=\"text\" required>\
         <div><button>Make a token</button></div></form>\
         <h2>Sessions</h2><form method=\"post\" action=\"/sign-out-everywhere\">{csrf}\
         <p>Signs out every browser where you are signed in, this one included.</p>\
         <button class=\"secondary\">Sign out everywhere</button></form>",
        name = escape(&account.display_name),
        username = escape(&account.username),
        csrf = html::csrf_field(viewer.csrf_token()),
    );
    Ok(html::page(viewer, "Your account", &body).into_response())
}

#[derive(Debug, Deserialize)]
struct TokenForm {
    #[serde(default)]
    label: String,
}

async fn create_token(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Form(form): Form<TokenForm>,
) -> Result<Response, ConsoleError> {
    let token = format!("sdk_{}", random_hex(32)?);
    state
        .store()
        .create_api_token(
            &viewer.actor(),
            viewer.account.id,
            &form.label,
            &token_hash(&token),
        )
        .await?;
    account_view(&state, &viewer, Some(&token)).await
}

async fn revoke_token(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
) -> Result<Response, ConsoleError> {
    if !state
        .store()
        .revoke_api_token(&viewer.actor(), viewer.account.id, id)
        .await?
    {
        return Err(ConsoleError::NotFound("that token"));
    }
    Ok(Redirect::to("/account").into_response())
}
