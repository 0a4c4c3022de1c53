//! The admin router's authentication middleware: the rules live in
//! [`crate::control::auth`]; this adapter applies them to each request and
//! turns a refusal into `401` with `WWW-Authenticate: Bearer
//! realm="levee-admin"` and a JSON body `{"error": "unauthorized", "reason":
//! ...}`.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::control::auth::{AdminAuth, Refusal};

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
            tracing::warn!(path = request.uri().path(), reason = %refusal, "admin request refused");
            refusal.into_response()
        }
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
}
