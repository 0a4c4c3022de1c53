//! `AppError`: every way a request can fail, mapped to a status and a JSON
//! body `{"error": "<code>", "reason": "<human text>"}`.
//!
//! Handlers return `Result<Response, AppError>`, so a failure path cannot
//! forget to answer. The `reason` is written for the client: it says what
//! was wrong with *their* request or which limit was hit, never a stack
//! trace, file path or internal error text. Internal failures are logged
//! with detail here and answered with a generic reason.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// A request failure, as the client will see it.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request is malformed (e.g. no routing key).
    #[error("{0}")]
    BadRequest(String),
    /// No such service, key or route.
    #[error("{0}")]
    NotFound(String),
    /// The request body is larger than the service allows.
    #[error("request body is larger than the {limit_bytes} bytes this service accepts")]
    PayloadTooLarge { limit_bytes: u64 },
    /// The request body arrived too slowly (`body_read_timeout_ms`,
    /// `body_rate_min_bytes_per_s`).
    #[error("{0}")]
    RequestTimeout(String),
    /// A limit was hit (concurrency, log full); the client may retry later.
    #[error("{0}")]
    Overloaded(String),
    /// levee is starting or shutting down.
    #[error("{0}")]
    Unavailable(String),
    /// A write refused before it reached levee's log (log full, closing):
    /// it was not written anywhere and can be retried as is.
    #[error("{0}")]
    NotWritten(String),
    /// A write refused because levee's log disk is full (ENOSPC): it was not
    /// written anywhere; appends resume once space is freed.
    #[error("{0}")]
    InsufficientStorage(String),
    /// A write whose fate levee cannot tell: it may be in levee's log (and
    /// reach the replicas later) or not, like a database's "commit outcome
    /// unknown". Retry only if the write is idempotent.
    #[error("{0}")]
    OutcomeUnknown(String),
    /// A write that lost to a newer one: the replicas hold `held`, newer
    /// than this write's version, so it will never be applied (last writer
    /// wins by version). levee's clock has observed `held`, so a retry gets
    /// a newer version.
    #[error("{reason}")]
    Superseded {
        reason: String,
        held: levee_version::Version,
    },
    /// Every attempt failed without an HTTP answer from a replica.
    #[error("{0}")]
    BadGateway(String),
    /// The request's deadline expired before a replica answered.
    #[error("{0}")]
    GatewayTimeout(String),
    /// A bug or an environment failure; `detail` is logged, not sent.
    #[error("internal error")]
    Internal { detail: String },
}

impl AppError {
    /// Wraps an internal failure: the detail goes to the log only.
    pub fn internal(detail: impl std::fmt::Display) -> AppError {
        AppError::Internal {
            detail: detail.to_string(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            AppError::Superseded { .. } => StatusCode::CONFLICT,
            AppError::Overloaded(_)
            | AppError::Unavailable(_)
            | AppError::NotWritten(_)
            | AppError::OutcomeUnknown(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            AppError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            AppError::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            AppError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether the connection must close after this answer: the request's
    /// body was left unread (too large, too slow), so the next bytes on the
    /// connection are not a request head. nginx closes here too.
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            AppError::PayloadTooLarge { .. } | AppError::RequestTimeout(_)
        )
    }

    /// The stable machine-readable code in the `error` field.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::BadRequest(_) => "bad_request",
            AppError::NotFound(_) => "not_found",
            AppError::PayloadTooLarge { .. } => "payload_too_large",
            AppError::RequestTimeout(_) => "request_timeout",
            AppError::Overloaded(_) => "overloaded",
            AppError::Unavailable(_) => "unavailable",
            AppError::NotWritten(_) => "not_written",
            AppError::InsufficientStorage(_) => "insufficient_storage",
            AppError::OutcomeUnknown(_) => "outcome_unknown",
            AppError::Superseded { .. } => "superseded",
            AppError::BadGateway(_) => "bad_gateway",
            AppError::GatewayTimeout(_) => "gateway_timeout",
            AppError::Internal { .. } => "internal",
        }
    }

    /// The `x-levee-outcome` a failed write answers with, if this error is
    /// about a write's fate.
    pub fn write_outcome(&self) -> Option<&'static str> {
        match self {
            AppError::NotWritten(_) | AppError::InsufficientStorage(_) => Some(OUTCOME_NOT_WRITTEN),
            AppError::OutcomeUnknown(_) => Some(OUTCOME_UNKNOWN),
            AppError::Superseded { .. } => Some(OUTCOME_SUPERSEDED),
            _ => None,
        }
    }
}

/// Says what became of a write that did not succeed: [`OUTCOME_NOT_WRITTEN`],
/// [`OUTCOME_UNKNOWN`], [`OUTCOME_SUPERSEDED`] or [`OUTCOME_REJECTED`].
pub static X_LEVEE_OUTCOME: header::HeaderName = header::HeaderName::from_static("x-levee-outcome");
/// Refused before levee's log: nothing was written anywhere.
pub const OUTCOME_NOT_WRITTEN: &str = "not-written";
/// In levee's log or maybe in it: the write may still appear on the replicas.
pub const OUTCOME_UNKNOWN: &str = "unknown";
/// Logged, but the replicas hold a newer version of the key: it will never
/// be applied (`x-levee-held-version` names what won).
pub const OUTCOME_SUPERSEDED: &str = "superseded";
/// Logged, and every replica refused it for good (a relayed 4xx): it is
/// on none of them and will not be redelivered.
pub const OUTCOME_REJECTED: &str = "rejected";

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if let AppError::Internal { detail } = &self {
            tracing::error!(%detail, "internal error answering a request");
        }
        let body = serde_json::json!({ "error": self.code(), "reason": self.to_string() });
        let mut response = (self.status(), body.to_string()).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(outcome) = self.write_outcome() {
            response
                .headers_mut()
                .insert(X_LEVEE_OUTCOME.clone(), HeaderValue::from_static(outcome));
        }
        if let AppError::Superseded { held, .. } = &self
            && let Ok(value) = HeaderValue::from_str(&held.to_string())
        {
            response
                .headers_mut()
                .insert(levee_version::HELD_VERSION_HEADER, value);
        }
        if self.closes_connection() {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn render(error: AppError) -> (StatusCode, serde_json::Value) {
        let response = error.into_response();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn failed_writes_say_what_became_of_them() {
        let response = AppError::NotWritten("log full".into()).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[&X_LEVEE_OUTCOME], OUTCOME_NOT_WRITTEN);
        let response = AppError::OutcomeUnknown("fsync failed".into()).into_response();
        assert_eq!(response.headers()[&X_LEVEE_OUTCOME], OUTCOME_UNKNOWN);
        let (_, body) = render(AppError::OutcomeUnknown("fsync failed".into())).await;
        assert_eq!(body["error"], "outcome_unknown");
        let response = AppError::Overloaded("busy".into()).into_response();
        assert!(response.headers().get(&X_LEVEE_OUTCOME).is_none());
    }

    #[tokio::test]
    async fn a_full_disk_is_507_and_not_written() {
        let response = AppError::InsufficientStorage("disk full".into()).into_response();
        assert_eq!(response.status(), StatusCode::INSUFFICIENT_STORAGE);
        assert_eq!(response.headers()[&X_LEVEE_OUTCOME], OUTCOME_NOT_WRITTEN);
        let (_, body) = render(AppError::InsufficientStorage("disk full".into())).await;
        assert_eq!(
            body,
            serde_json::json!({"error": "insufficient_storage", "reason": "disk full"})
        );
    }

    #[tokio::test]
    async fn a_superseded_write_is_409_naming_the_held_version() {
        let held = levee_version::Version::parse("1764590400123.4.9f3a0c1d2e4b5a6c").unwrap();
        let error = AppError::Superseded {
            reason: "newer".into(),
            held,
        };
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::CONFLICT);
        assert_eq!(response.headers()[&X_LEVEE_OUTCOME], OUTCOME_SUPERSEDED);
        assert_eq!(
            response.headers()[levee_version::HELD_VERSION_HEADER],
            "1764590400123.4.9f3a0c1d2e4b5a6c"
        );
        let (_, body) = render(AppError::Superseded {
            reason: "newer".into(),
            held,
        })
        .await;
        assert_eq!(
            body,
            serde_json::json!({"error": "superseded", "reason": "newer"})
        );
    }

    #[tokio::test]
    async fn errors_render_as_json_with_reason() {
        let (status, body) = render(AppError::BadRequest("missing routing key".into())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body,
            serde_json::json!({"error": "bad_request", "reason": "missing routing key"})
        );
        let (status, body) = render(AppError::PayloadTooLarge { limit_bytes: 10 }).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            body["reason"],
            "request body is larger than the 10 bytes this service accepts"
        );
        let response = AppError::RequestTimeout("too slow".into()).into_response();
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(response.headers()[header::CONNECTION], "close");
    }

    #[tokio::test]
    async fn internal_detail_is_not_leaked() {
        let (status, body) = render(AppError::internal("open /secret/path: EACCES")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["reason"], "internal error");
        assert!(!body.to_string().contains("secret"));
    }
}
