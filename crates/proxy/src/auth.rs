//! Proxy authentication (F4): who is browsing, from a sign-in rather than
//! from the device's address.
//!
//! Browsers answer a `407` with the user's name and password in
//! `Proxy-Authorization: Basic …`. The proxy asks an [`Authenticator`]
//! whether they are right; sheepdog's own accounts are one authenticator
//! (in the binary), and a directory such as LDAP can be another without
//! touching the proxy. Right answers are remembered for a few minutes by
//! the exact header, because password hashes are slow on purpose and a
//! page makes dozens of requests.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The account behind proxy credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyUser {
    pub account: String,
    /// The person the account belongs to, whose filtering group applies.
    pub person_id: Option<i64>,
}

/// What an [`Authenticator`] answers: the user, no one (wrong name or
/// password, or a disabled account), or an error (the directory is down).
pub type Verification = Pin<Box<dyn Future<Output = Result<Option<ProxyUser>, String>> + Send>>;

/// Checks a user name and password.
pub trait Authenticator: Send + Sync + std::fmt::Debug {
    fn verify(&self, user: &str, password: &str) -> Verification;
}

/// How long right credentials are remembered.
const REMEMBER: Duration = Duration::from_secs(300);
/// The most credentials remembered at once.
const REMEMBERED: usize = 10_000;

/// An authenticator and the credentials it recently accepted.
#[derive(Debug)]
pub(crate) struct Authentication {
    authenticator: std::sync::Arc<dyn Authenticator>,
    remembered: Mutex<HashMap<String, (ProxyUser, Instant)>>,
}

/// Why a request is not authenticated.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No credentials, or ones that do not decode.
    Missing,
    /// The authenticator said no.
    Wrong,
    /// The authenticator could not answer.
    Unavailable(String),
}

impl Authentication {
    pub(crate) fn new(authenticator: std::sync::Arc<dyn Authenticator>) -> Self {
        Self {
            authenticator,
            remembered: Mutex::new(HashMap::new()),
        }
    }

    /// The user behind a `Proxy-Authorization` header value.
    pub(crate) async fn user(&self, header: Option<&str>) -> Result<ProxyUser, Refusal> {
        let header = header.ok_or(Refusal::Missing)?;
        if let Some((user, at)) = self.lock().get(header) {
            if at.elapsed() < REMEMBER {
                return Ok(user.clone());
            }
        }
        let (name, password) = basic_credentials(header).ok_or(Refusal::Missing)?;
        let user = self
            .authenticator
            .verify(&name, &password)
            .await
            .map_err(Refusal::Unavailable)?
            .ok_or(Refusal::Wrong)?;
        let mut remembered = self.lock();
        if remembered.len() >= REMEMBERED {
            remembered.retain(|_, (_, at)| at.elapsed() < REMEMBER);
            if remembered.len() >= REMEMBERED {
                remembered.clear();
            }
        }
        remembered.insert(header.to_string(), (user.clone(), Instant::now()));
        Ok(user)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (ProxyUser, Instant)>> {
        self.remembered.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The name and password in a Basic credentials header value (RFC 7617).
pub fn basic_credentials(header: &str) -> Option<(String, String)> {
    let (scheme, token) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = data_encoding::BASE64.decode(token.trim().as_bytes()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (name, password) = text.split_once(':')?;
    (!name.is_empty()).then(|| (name.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[derive(Debug, Default)]
    struct Counting(AtomicUsize);

    impl Authenticator for Counting {
        fn verify(&self, user: &str, password: &str) -> Verification {
            self.0.fetch_add(1, Ordering::Relaxed);
            let ok = user == "teacher" && password == "correct horse";
            let user = user.to_string();
            Box::pin(async move {
                Ok(ok.then_some(ProxyUser {
                    account: user,
                    person_id: Some(9),
                }))
            })
        }
    }

    fn basic(text: &str) -> String {
        format!("Basic {}", data_encoding::BASE64.encode(text.as_bytes()))
    }

    #[test]
    fn credentials_decode() {
        assert_eq!(
            basic_credentials(&basic("teacher:pa:ss")),
            Some(("teacher".to_string(), "pa:ss".to_string()))
        );
        assert_eq!(
            basic_credentials(&format!("bAsIc  {}", data_encoding::BASE64.encode(b"a:b"))),
            Some(("a".to_string(), "b".to_string()))
        );
        assert_eq!(basic_credentials("Bearer abc"), None);
        assert_eq!(basic_credentials("Basic !!!"), None);
        assert_eq!(basic_credentials(&basic("no-colon")), None);
        assert_eq!(basic_credentials(&basic(":password")), None);
    }

    #[tokio::test]
    async fn right_credentials_are_remembered_and_wrong_ones_are_not() {
        let counting = Arc::new(Counting::default());
        let auth = Authentication::new(counting.clone());
        let right = basic("teacher:correct horse");
        for _ in 0..3 {
            let user = auth.user(Some(&right)).await;
            assert_eq!(user.map(|u| u.person_id), Ok(Some(9)));
        }
        assert_eq!(counting.0.load(Ordering::Relaxed), 1);
        let wrong = basic("teacher:wrong");
        assert_eq!(auth.user(Some(&wrong)).await, Err(Refusal::Wrong));
        assert_eq!(auth.user(Some(&wrong)).await, Err(Refusal::Wrong));
        assert_eq!(counting.0.load(Ordering::Relaxed), 3);
        assert_eq!(auth.user(None).await, Err(Refusal::Missing));
    }

    proptest! {
        #[test]
        fn any_header_decodes_or_is_refused_without_panic(header in ".{0,200}") {
            let _ = basic_credentials(&header);
        }
    }
}
