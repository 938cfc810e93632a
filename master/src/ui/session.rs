//! UI sessions: a cookie signed with HMAC-SHA256 over {token name, role, expiry}, and the
//! CSRF token every action form carries (an HMAC of the cookie's value).
//!
//! The cookie holds no token: signing in checks the API token once and the cookie then
//! stands for its name and role until it expires. Without `[auth]` (an open API) there is
//! no cookie and every visitor is an anonymous admin, as on the API.

use crate::error::MasterError;
use crate::http::access::Caller;
use crate::state::{AppState, SharedState};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Redirect, Response};
use hmac::{Hmac, Mac};
use jobfleet_common::auth::{Principal, Role};
use jobfleet_common::config::Config;
use sha2::Sha256;
use std::time::Duration;

/// The session cookie's name.
pub const COOKIE: &str = "jf_session";
/// How long a session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);

type HmacSha256 = Hmac<Sha256>;

/// The key that signs this master's session cookies.
pub struct SessionKey(Vec<u8>);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

impl SessionKey {
    /// `[ui] session_secret` when set, else 32 random bytes for this process.
    pub fn of(config: &Config) -> Result<SessionKey, MasterError> {
        if let Some(secret) = config.ui.session_secret.as_ref().filter(|s| !s.is_empty()) {
            return Ok(SessionKey(secret.as_bytes().to_vec()));
        }
        let mut key = vec![0u8; 32];
        getrandom::fill(&mut key).map_err(|e| MasterError::Random(e.to_string()))?;
        Ok(SessionKey(key))
    }

    /// The hex HMAC-SHA256 of `parts`, joined by `|`.
    fn sign(&self, parts: &[&str]) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(parts.join("|").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether `signature` is the HMAC of `parts` (compared in constant time).
    fn verify(&self, parts: &[&str], signature: &str) -> bool {
        let Ok(bytes) = hex::decode(signature) else {
            return false;
        };
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(parts.join("|").as_bytes());
        mac.verify_slice(&bytes).is_ok()
    }
}

/// Who is looking at the UI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The token's name (`anonymous` without `[auth]`).
    pub name: String,
    /// What the session may do.
    pub role: Role,
    /// The cookie's value (empty without `[auth]`): the CSRF token is derived from it.
    cookie: String,
    /// Whether the fleet runs without `[auth]`.
    pub open: bool,
}

impl Session {
    /// The anonymous admin of a fleet without `[auth]`.
    fn open() -> Session {
        Session {
            name: "anonymous".into(),
            role: Role::Admin,
            cookie: String::new(),
            open: true,
        }
    }

    /// A new session for `principal`, expiring [`SESSION_TTL`] from `now_ms`.
    pub fn start(key: &SessionKey, principal: &Principal, now_ms: i64) -> Session {
        let expires = now_ms + SESSION_TTL.as_millis() as i64;
        let name = hex::encode(principal.name.as_bytes());
        let role = principal.role.as_str();
        let expires = expires.to_string();
        let signature = key.sign(&["session", &name, role, &expires]);
        Session {
            name: principal.name.clone(),
            role: principal.role,
            cookie: format!("{name}.{role}.{expires}.{signature}"),
            open: false,
        }
    }

    /// The session a cookie value stands for, if it is signed by `key` and not expired.
    pub fn from_cookie(key: &SessionKey, value: &str, now_ms: i64) -> Option<Session> {
        let mut parts = value.split('.');
        let (name, role, expires, signature) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || !key.verify(&["session", name, role, expires], signature) {
            return None;
        }
        if expires.parse::<i64>().ok()? <= now_ms {
            return None;
        }
        Some(Session {
            name: String::from_utf8(hex::decode(name).ok()?).ok()?,
            role: role.parse().ok()?,
            cookie: value.to_string(),
            open: false,
        })
    }

    /// The CSRF token of this session's forms.
    pub fn csrf(&self, key: &SessionKey) -> String {
        key.sign(&["csrf", &self.cookie])
    }

    /// Whether `token` is this session's CSRF token.
    pub fn csrf_ok(&self, key: &SessionKey, token: Option<&str>) -> bool {
        token.is_some_and(|token| key.verify(&["csrf", &self.cookie], token))
    }

    /// Whether the session's role includes `needed`.
    pub fn allows(&self, needed: Role) -> bool {
        self.role.allows(needed)
    }

    /// The caller the audit trail names.
    pub fn caller(&self) -> Caller {
        if self.open {
            return Caller::Anonymous;
        }
        Caller::Token(Principal {
            name: self.name.clone(),
            role: self.role,
        })
    }

    /// The `Set-Cookie` value that stores this session.
    pub fn set_cookie(&self, secure: bool) -> String {
        let secure = if secure { "; Secure" } else { "" };
        format!(
            "{COOKIE}={}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            self.cookie,
            SESSION_TTL.as_secs()
        )
    }
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie(secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
}

/// The value of the session cookie among a request's `Cookie` headers.
fn cookie_value(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// The session of a request: the open session without `[auth]`, else its valid cookie's.
/// A session whose token has left the configuration (a master restarted with a shared
/// `session_secret`) is none.
pub fn session_of(state: &AppState, headers: &HeaderMap) -> Option<Session> {
    let Some(auth) = state.auth.as_ref() else {
        return Some(Session::open());
    };
    let value = cookie_value(headers)?;
    let session = Session::from_cookie(&state.ui_key, value, jobfleet_common::now_ms())?;
    let principal = Principal {
        name: session.name.clone(),
        role: session.role,
    };
    auth.tokens.holds(&principal).then_some(session)
}

/// A signed-in visitor; a request without a session is sent to the sign-in page.
impl FromRequestParts<SharedState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, Response> {
        session_of(state, &parts.headers).ok_or_else(|| Redirect::to("/ui/login").into_response())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SessionKey {
        SessionKey(b"k".to_vec())
    }

    fn ops() -> Principal {
        Principal {
            name: "o.p|s".into(),
            role: Role::Submit,
        }
    }

    #[test]
    fn a_signed_cookie_comes_back_until_it_expires() {
        let session = Session::start(&key(), &ops(), 1000);
        let back = Session::from_cookie(&key(), &session.cookie, 2000).expect("valid");
        assert_eq!(back, session);
        assert_eq!(back.name, "o.p|s");
        let expiry = 1000 + SESSION_TTL.as_millis() as i64;
        assert!(Session::from_cookie(&key(), &session.cookie, expiry).is_none());
        assert!(Session::from_cookie(&SessionKey(b"other".to_vec()), &session.cookie, 2000).is_none());
    }

    #[test]
    fn a_changed_role_or_expiry_breaks_the_signature() {
        let session = Session::start(&key(), &ops(), 1000);
        let forged = session.cookie.replace(".submit.", ".admin.");
        assert!(Session::from_cookie(&key(), &forged, 2000).is_none());
        let parts: Vec<&str> = session.cookie.split('.').collect();
        let later = format!("{}.{}.{}.{}", parts[0], parts[1], i64::MAX, parts[3]);
        assert!(Session::from_cookie(&key(), &later, 2000).is_none());
    }

    #[test]
    fn the_csrf_token_belongs_to_its_session() {
        let one = Session::start(&key(), &ops(), 1000);
        let two = Session::start(&key(), &ops(), 1001);
        assert!(one.csrf_ok(&key(), Some(&one.csrf(&key()))));
        assert!(!one.csrf_ok(&key(), Some(&two.csrf(&key()))));
        assert!(!one.csrf_ok(&key(), None));
        assert!(!one.csrf_ok(&key(), Some("")));
    }
}
