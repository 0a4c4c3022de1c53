//! The admin router's guards, as middleware. The rules live in
//! [`crate::control::admin_origin`] (which browsers may call at all) and
//! [`crate::control::auth`] (the bearer token); these adapters apply them
//! to each request:
//! - [`guard_origin`] turns a foreign `Host` or a cross-site state change
//!   into `403 {"error": "forbidden", "reason": ...}`, before the token is
//!   looked at (a refused browser request is not a failed login);
//! - [`require_admin_token`] turns a token refusal into `401` with
//!   `WWW-Authenticate: Bearer realm="levee-admin"` and a JSON body
//!   `{"error": "unauthorized", "reason": ...}`.
//!
//! Refusals are logged, but at most once per [`REFUSAL_LOG_INTERVAL_MS`]
//! per kind, with the count of those not logged since: a client guessing
//! tokens in a loop must not be able to flood the log (the
//! `levee_admin_auth_failures_total` counter still counts every one).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api::admin_error::AdminError;
use crate::control::admin_origin::AdminOrigin;
use crate::control::auth::{AdminAuth, Refusal};

/// Shortest spacing of two log lines about refused admin requests of one
/// kind.
pub const REFUSAL_LOG_INTERVAL_MS: u64 = 10_000;

/// Token refusals, logged at most once per interval.
static TOKEN_REFUSALS: LogThrottle = LogThrottle::new(REFUSAL_LOG_INTERVAL_MS);
/// `Host` / `Origin` refusals, logged at most once per interval.
static ORIGIN_REFUSALS: LogThrottle = LogThrottle::new(REFUSAL_LOG_INTERVAL_MS);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": "unauthorized", "reason": self.to_string() });
        let mut response = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"levee-admin\""),
        );
        response
    }
}

/// Axum middleware for the admin router, outside [`require_admin_token`]:
/// `.layer(axum::middleware::from_fn_with_state(origin, guard_origin))`.
pub async fn guard_origin(
    State(origin): State<AdminOrigin>,
    request: Request,
    next: Next,
) -> Response {
    match origin.check(request.method(), request.uri(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            if let Some(suppressed) = ORIGIN_REFUSALS.admit(Instant::now()) {
                tracing::warn!(
                    method = %request.method(),
                    path = request.uri().path(),
                    reason = %refusal,
                    suppressed,
                    "admin request refused for its Host or Origin (suppressed: refusals not logged since the last line)"
                );
            }
            AdminError::Forbidden(refusal.to_string()).into_response()
        }
    }
}

/// Axum middleware for the admin router:
/// `.layer(axum::middleware::from_fn_with_state(auth, require_admin_token))`.
pub async fn require_admin_token(
    State(auth): State<AdminAuth>,
    request: Request,
    next: Next,
) -> Response {
    match auth.check(request.uri().path(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            crate::base::metrics::admin_auth_failed();
            if let Some(suppressed) = TOKEN_REFUSALS.admit(Instant::now()) {
                tracing::warn!(
                    path = request.uri().path(),
                    reason = %refusal,
                    suppressed,
                    "admin request refused (suppressed: refusals not logged since the last line)"
                );
            }
            refusal.into_response()
        }
    }
}

/// Lets one event through per interval and counts the rest.
struct LogThrottle {
    interval: Duration,
    /// When an event was last let through, and how many were held back
    /// since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogThrottle {
    const fn new(interval_ms: u64) -> LogThrottle {
        LogThrottle {
            interval: Duration::from_millis(interval_ms),
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(held back since the last one)` when this event may be logged.
    fn admit(&self, now: Instant) -> Option<u64> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (last, held_back) = &mut *state;
        if last.is_some_and(|last| now.saturating_duration_since(last) < self.interval) {
            *held_back += 1;
            return None;
        }
        *last = Some(now);
        Some(std::mem::take(held_back))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_response_has_challenge_and_reason() {
        let response = Refusal::WrongToken.into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"levee-admin\""
        );
    }

    #[test]
    fn the_log_throttle_admits_one_per_interval_and_counts_the_rest() {
        let throttle = LogThrottle::new(10_000);
        let start = Instant::now();
        assert_eq!(throttle.admit(start), Some(0));
        for i in 1..=500u64 {
            assert_eq!(throttle.admit(start + Duration::from_millis(i)), None);
        }
        let later = start + Duration::from_millis(10_000);
        assert_eq!(throttle.admit(later), Some(500));
        assert_eq!(throttle.admit(later), None);
    }
}
