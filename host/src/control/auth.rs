//! Bearer-token authentication of the admin listener.
//!
//! The admin API can replace the code that decides where traffic goes, so it
//! is guarded by one shared secret, the admin token, taken from the
//! `LEVEE_ADMIN_TOKEN` environment variable (preferred: it stays out of
//! config files and `ps`) or else the config's `admin_token`.
//!
//! The rules, in one place:
//! - **No token is only allowed on loopback.** [`AdminAuth::new`] refuses an
//!   admin listener on any other address without a token, so levee will not
//!   start exposed.
//! - **With a token, every admin route needs `Authorization: Bearer <token>`**,
//!   except the status page's HTML shell (`GET /admin/`), which holds no data:
//!   its JavaScript asks for the token once, keeps it in `sessionStorage` and
//!   sends it on every data fetch. A token may also be handed to the page in
//!   the URL fragment (`/admin/#token=...`), which browsers never send to the
//!   server, so it does not end up in access logs.
//! - **Probes and scrapes** (`/healthz`, `/readyz`, `/metrics`) need no token
//!   when the admin listener is on loopback (a local agent scrapes them); on
//!   any other address they need the token like everything else.
//! - **A token is 16 to 1024 bytes, wherever it comes from**: the
//!   environment gets the same rule as the config file, and a token
//!   outside it stops the start with a message naming its source.
//! - **No token is generated at first start.** The tokenless default is
//!   for a loopback listener only, and what made it dangerous was the
//!   browser: a web page posting to `127.0.0.1` or a DNS-rebinding page
//!   speaking as its own origin. [`super::admin_origin`] closes both (a
//!   foreign `Host` or a cross-site `Origin` is refused). What remains is
//!   a local process, and one running as levee's user could read a
//!   generated token from `data_dir` anyway; on a machine shared with
//!   other users, set a token.
//! - Tokens are compared in constant time: both sides are hashed with
//!   SHA-256 and the digests compared with a branch-free fold, so neither the
//!   position of the first wrong byte nor the token's length leaks through
//!   timing.
//!
//! A [`Refusal`] says what was wrong (missing, malformed, wrong) but never
//! echoes the token; `api::auth` turns it into the `401` and enforces these
//! rules as the admin router's middleware.

use crate::config::{ADMIN_TOKEN_BYTES_MAX, ADMIN_TOKEN_BYTES_MIN};
use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use thiserror::Error;

/// Environment variable holding the admin token.
pub const TOKEN_ENV: &str = "LEVEE_ADMIN_TOKEN";
/// Longest accepted token (the config file's rule).
pub const TOKEN_BYTES_MAX: usize = ADMIN_TOKEN_BYTES_MAX;
/// Shortest accepted token (the config file's rule).
pub const TOKEN_BYTES_MIN: usize = ADMIN_TOKEN_BYTES_MIN;

/// Paths that skip the token on a loopback admin listener.
const LOOPBACK_OPEN_PATHS: &[&str] = &["/metrics"];
/// Paths that never need the token: the probes (alive, ready: what an
/// orchestrator's kubelet asks, which cannot send a token; Kubernetes' own
/// API server leaves its `/healthz` and `/readyz` open the same way) and
/// the status page shell, which holds no data.
const ALWAYS_OPEN_PATHS: &[&str] = &["/healthz", "/readyz", "/admin", "/admin/"];

/// Why the admin listener may not start as configured.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthConfigError {
    #[error(
        "refusing to start: the admin listener {addr} is not a loopback address and no admin token is set \
         (set {TOKEN_ENV} or the config's admin_token, or listen on 127.0.0.1)"
    )]
    ExposedWithoutToken { addr: SocketAddr },
    #[error(
        "refusing to start: the admin token from {source_name} is {token_bytes} bytes; \
         it must be {TOKEN_BYTES_MIN} to {TOKEN_BYTES_MAX} bytes (e.g. `openssl rand -hex 16`)"
    )]
    TokenLength {
        source_name: &'static str,
        token_bytes: usize,
    },
    #[error(
        "refusing to start: the admin listener {addr} is not a loopback address and speaks plain HTTP, \
         so the admin token would cross the network in clear text; set listeners.tls.admin \
         (or, on a network you trust, listeners.insecure_admin_token_over_plain_http: true)"
    )]
    TokenInClearText { addr: SocketAddr },
}

/// Refuses a token-guarded admin listener other machines can reach over
/// plain HTTP, unless the operator said `insecure` out loud. (Any admin
/// listener off loopback needs a token: see [`AdminAuth::new`].)
pub fn check_admin_transport(
    addr: SocketAddr,
    tls: bool,
    insecure_override: bool,
) -> Result<(), AuthConfigError> {
    if addr.ip().is_loopback() || tls {
        return Ok(());
    }
    if insecure_override {
        tracing::warn!(
            %addr,
            "listeners.insecure_admin_token_over_plain_http is set: the admin token crosses the network in clear text"
        );
        return Ok(());
    }
    Err(AuthConfigError::TokenInClearText { addr })
}

/// The admin listener's authentication settings. Cheap to clone.
#[derive(Clone)]
pub struct AdminAuth {
    /// SHA-256 of the token; `None` means open (loopback only).
    token_digest: Option<[u8; 32]>,
    /// Whether the admin listener is bound to a loopback address.
    loopback: bool,
}

impl std::fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the digest: it is as good as the token for offline guessing.
        f.debug_struct("AdminAuth")
            .field("token", &self.token_digest.map(|_| "<set>"))
            .field("loopback", &self.loopback)
            .finish()
    }
}

impl AdminAuth {
    /// Settings for an admin listener on `addr`, taking the token from
    /// [`TOKEN_ENV`] if set, else from `config_token`.
    pub fn from_env_or_config(
        config_token: Option<&str>,
        addr: SocketAddr,
    ) -> Result<Self, AuthConfigError> {
        match std::env::var(TOKEN_ENV) {
            Ok(token) => Self::new(Some((&token, TOKEN_ENV)), addr),
            Err(_) => Self::new(
                config_token.map(|token| (token, "config admin_token")),
                addr,
            ),
        }
    }

    /// Settings for an admin listener on `addr` with an optional `(token,
    /// where it came from)`. Refuses a non-loopback listener without token.
    pub fn new(
        token: Option<(&str, &'static str)>,
        addr: SocketAddr,
    ) -> Result<Self, AuthConfigError> {
        let loopback = addr.ip().is_loopback();
        let token_digest = match token {
            Some((token, source_name)) => Some(digest_of_valid_token(token, source_name)?),
            None if loopback => None,
            None => return Err(AuthConfigError::ExposedWithoutToken { addr }),
        };
        Ok(AdminAuth {
            token_digest,
            loopback,
        })
    }

    /// Whether a token is required at all.
    #[cfg(test)] // only tests ask
    pub fn token_required(&self) -> bool {
        self.token_digest.is_some()
    }

    /// Decides whether a request for `path` with `headers` may pass.
    pub fn check(&self, path: &str, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(expected) = &self.token_digest else {
            debug_assert!(self.loopback, "open admin only on loopback");
            return Ok(());
        };
        if ALWAYS_OPEN_PATHS.contains(&path)
            || (self.loopback && LOOPBACK_OPEN_PATHS.contains(&path))
        {
            return Ok(());
        }
        let presented = bearer_token(headers)?;
        if digests_equal(&sha256(presented), expected) {
            Ok(())
        } else {
            Err(Refusal::WrongToken)
        }
    }
}

fn digest_of_valid_token(
    token: &str,
    source_name: &'static str,
) -> Result<[u8; 32], AuthConfigError> {
    if !(TOKEN_BYTES_MIN..=TOKEN_BYTES_MAX).contains(&token.len()) {
        return Err(AuthConfigError::TokenLength {
            source_name,
            token_bytes: token.len(),
        });
    }
    Ok(sha256(token.as_bytes()))
}

/// Why a request was refused. The text is safe to show the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Refusal {
    #[error("missing Authorization header; send `Authorization: Bearer <admin token>`")]
    Missing,
    #[error("malformed Authorization header; expected `Bearer <admin token>`")]
    Malformed,
    #[error("wrong admin token")]
    WrongToken,
}

/// The token bytes of `Authorization: Bearer <token>` (scheme case-insensitive,
/// RFC 6750 §2.1).
fn bearer_token(headers: &HeaderMap) -> Result<&[u8], Refusal> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next().ok_or(Refusal::Missing)?;
    if values.next().is_some() {
        return Err(Refusal::Malformed);
    }
    let bytes = value.as_bytes();
    const SCHEME: &[u8] = b"bearer ";
    if bytes.len() <= SCHEME.len() || !bytes[..SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
        return Err(Refusal::Malformed);
    }
    let token = bytes[SCHEME.len()..].trim_ascii();
    if token.is_empty() || token.len() > TOKEN_BYTES_MAX {
        return Err(Refusal::Malformed);
    }
    Ok(token)
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Compares two digests without branching on their contents.
fn digests_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let difference = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box keeps the optimizer from turning the fold into an early exit.
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod transport_tests {
    use super::*;

    #[test]
    fn a_token_crosses_a_network_only_over_tls_or_when_told_to() {
        let public: SocketAddr = "0.0.0.0:9901".parse().unwrap();
        let loopback: SocketAddr = "127.0.0.1:9901".parse().unwrap();
        assert!(check_admin_transport(loopback, false, false).is_ok());
        assert!(check_admin_transport(public, true, false).is_ok());
        assert!(check_admin_transport(public, false, true).is_ok());
        let refused = check_admin_transport(public, false, false)
            .unwrap_err()
            .to_string();
        assert!(refused.contains("listeners.tls.admin"), "{refused}");
        assert!(
            refused.contains("insecure_admin_token_over_plain_http"),
            "{refused}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const TOKEN: &str = "correct horse battery staple";

    fn loopback() -> SocketAddr {
        "127.0.0.1:9000".parse().unwrap()
    }

    fn exposed() -> SocketAddr {
        "0.0.0.0:9000".parse().unwrap()
    }

    fn headers_with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    fn with_token(addr: SocketAddr) -> AdminAuth {
        AdminAuth::new(Some((TOKEN, "test")), addr).unwrap()
    }

    #[test]
    fn exposed_listener_without_token_is_refused() {
        let error = AdminAuth::new(None, exposed()).unwrap_err();
        assert_eq!(
            error,
            AuthConfigError::ExposedWithoutToken { addr: exposed() }
        );
        assert!(error.to_string().contains("refusing to start"), "{error}");
        assert!(AdminAuth::new(None, "[::]:1".parse().unwrap()).is_err());
        assert!(AdminAuth::new(None, "[::1]:1".parse().unwrap()).is_ok());
    }

    #[test]
    fn empty_short_or_huge_token_is_refused() {
        let huge = "t".repeat(TOKEN_BYTES_MAX + 1);
        let short = "t".repeat(TOKEN_BYTES_MIN - 1);
        for token in ["", short.as_str(), huge.as_str()] {
            let error = AdminAuth::new(Some((token, TOKEN_ENV)), loopback()).unwrap_err();
            assert_eq!(
                error,
                AuthConfigError::TokenLength {
                    source_name: TOKEN_ENV,
                    token_bytes: token.len()
                }
            );
            assert!(error.to_string().contains("16 to 1024 bytes"), "{error}");
        }
        let shortest = "t".repeat(TOKEN_BYTES_MIN);
        assert!(AdminAuth::new(Some((&shortest, TOKEN_ENV)), loopback()).is_ok());
    }

    #[test]
    fn open_loopback_lets_everything_through() {
        let auth = AdminAuth::new(None, loopback()).unwrap();
        assert!(!auth.token_required());
        assert_eq!(auth.check("/admin/plugins", &HeaderMap::new()), Ok(()));
    }

    #[test]
    fn right_token_passes_in_any_scheme_case() {
        let auth = with_token(exposed());
        assert_eq!(
            auth.check("/admin/plugins", &headers_with(&format!("Bearer {TOKEN}"))),
            Ok(())
        );
        assert_eq!(
            auth.check(
                "/admin/plugins",
                &headers_with(&format!("bearer  {TOKEN} "))
            ),
            Ok(())
        );
    }

    #[test]
    fn missing_malformed_and_wrong_tokens_are_refused() {
        let auth = with_token(loopback());
        assert_eq!(
            auth.check("/admin/plugins", &HeaderMap::new()),
            Err(Refusal::Missing)
        );
        assert_eq!(
            auth.check("/admin/plugins", &headers_with(TOKEN)),
            Err(Refusal::Malformed)
        );
        assert_eq!(
            auth.check("/admin/plugins", &headers_with("Basic abc")),
            Err(Refusal::Malformed)
        );
        assert_eq!(
            auth.check("/admin/plugins", &headers_with("Bearer ")),
            Err(Refusal::Malformed)
        );
        assert_eq!(
            auth.check("/admin/plugins", &headers_with("Bearer nope")),
            Err(Refusal::WrongToken)
        );
        let prefix = &TOKEN[..TOKEN.len() - 1];
        assert_eq!(
            auth.check("/admin/plugins", &headers_with(&format!("Bearer {prefix}"))),
            Err(Refusal::WrongToken)
        );
    }

    #[test]
    fn probes_are_open_and_metrics_only_on_loopback() {
        let local = with_token(loopback());
        let remote = with_token(exposed());
        for path in ["/healthz", "/readyz"] {
            assert_eq!(remote.check(path, &HeaderMap::new()), Ok(()), "{path}");
        }
        for path in LOOPBACK_OPEN_PATHS {
            assert_eq!(local.check(path, &HeaderMap::new()), Ok(()), "{path}");
            assert_eq!(
                remote.check(path, &HeaderMap::new()),
                Err(Refusal::Missing),
                "{path}"
            );
        }
    }

    #[test]
    fn status_page_shell_is_open_but_its_data_is_not() {
        let auth = with_token(exposed());
        assert_eq!(auth.check("/admin/", &HeaderMap::new()), Ok(()));
        assert_eq!(
            auth.check("/admin/state", &HeaderMap::new()),
            Err(Refusal::Missing)
        );
    }

    #[test]
    fn debug_output_hides_the_token() {
        let auth = with_token(loopback());
        assert!(!format!("{auth:?}").contains(TOKEN));
    }
}
