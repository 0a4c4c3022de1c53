//! `AdminError`: how admin requests fail, as JSON
//! `{"error": "<code>", "reason": "<text>", "fields": [{"path", "message"}]?}`.
//!
//! Separate from the data plane's `AppError` because the admin API has one
//! more kind of answer: **422 with field-level errors**, so an operator
//! fixing a service definition sees every problem with its path at once
//! (`services[users].write_quorum: must be <= replicas (3)`), the same
//! messages the configuration file gets at start-up. Like `AppError`, the
//! reason never carries internals: storage and task failures are logged with
//! their detail and answered with a generic reason.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::config::FieldError;
use crate::control::plugin_host::PluginError;
use crate::dataplane::error::AppError;

/// One invalid field, as sent to the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldProblem {
    pub path: String,
    pub message: String,
}

impl From<FieldError> for FieldProblem {
    fn from(error: FieldError) -> Self {
        FieldProblem {
            path: error.path,
            message: error.message,
        }
    }
}

/// An admin request failure.
#[derive(Debug)]
pub enum AdminError {
    /// 400: the request itself is malformed (bad name, not JSON).
    BadRequest(String),
    /// 403: refused for where the request came from (a foreign `Host`, a
    /// cross-site `Origin`), whatever its token.
    Forbidden(String),
    /// 404.
    NotFound(String),
    /// 409: the request conflicts with current state.
    Conflict(String),
    /// 408: the body did not arrive in time.
    RequestTimeout(String),
    /// 413: the body exceeds `limit_bytes`.
    TooLarge { limit_bytes: u64 },
    /// 422: well-formed but refused, with the fields at fault if known.
    Unprocessable {
        reason: String,
        fields: Vec<FieldProblem>,
    },
    /// 503: the log refuses writes, or levee is shutting down.
    Unavailable(String),
    /// 500: logged with `detail`, answered generically.
    Internal { detail: String },
}

impl AdminError {
    pub fn internal(detail: impl std::fmt::Display) -> AdminError {
        AdminError::Internal {
            detail: detail.to_string(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AdminError::Forbidden(_) => StatusCode::FORBIDDEN,
            AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::Conflict(_) => StatusCode::CONFLICT,
            AdminError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            AdminError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            AdminError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            AdminError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AdminError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            AdminError::BadRequest(_) => "bad_request",
            AdminError::Forbidden(_) => "forbidden",
            AdminError::NotFound(_) => "not_found",
            AdminError::Conflict(_) => "conflict",
            AdminError::RequestTimeout(_) => "request_timeout",
            AdminError::TooLarge { .. } => "payload_too_large",
            AdminError::Unprocessable { .. } => "invalid",
            AdminError::Unavailable(_) => "unavailable",
            AdminError::Internal { .. } => "internal",
        }
    }

    fn reason(&self) -> String {
        match self {
            AdminError::BadRequest(reason)
            | AdminError::Forbidden(reason)
            | AdminError::NotFound(reason)
            | AdminError::Conflict(reason)
            | AdminError::RequestTimeout(reason)
            | AdminError::Unavailable(reason) => reason.clone(),
            AdminError::TooLarge { limit_bytes } => {
                format!("request body is larger than the {limit_bytes} bytes this endpoint accepts")
            }
            AdminError::Unprocessable { reason, .. } => reason.clone(),
            AdminError::Internal { .. } => "internal error".to_string(),
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        if let AdminError::Internal { detail } = &self {
            tracing::error!(%detail, "internal error answering an admin request");
        }
        let mut body = serde_json::json!({ "error": self.code(), "reason": self.reason() });
        if let AdminError::Unprocessable { fields, .. } = &self
            && !fields.is_empty()
        {
            body["fields"] = serde_json::to_value(fields).expect("field problems serialize");
        }
        (self.status(), axum::Json(body)).into_response()
    }
}

impl From<PluginError> for AdminError {
    fn from(error: PluginError) -> Self {
        match &error {
            PluginError::BadName { .. } => AdminError::BadRequest(error.to_string()),
            PluginError::TooLarge { limit_bytes, .. } => AdminError::TooLarge {
                limit_bytes: *limit_bytes,
            },
            PluginError::NotFound(_) => AdminError::NotFound(error.to_string()),
            PluginError::InUse { .. }
            | PluginError::NoPrevious(_)
            | PluginError::NoShadow(_)
            | PluginError::Unbound(_) => AdminError::Conflict(error.to_string()),
            PluginError::Full { .. } | PluginError::DropInFile(_) => {
                AdminError::Conflict(error.to_string())
            }
            PluginError::Load(_) | PluginError::Binding { .. } => AdminError::Unprocessable {
                reason: error.to_string(),
                fields: Vec::new(),
            },
            PluginError::Internal(detail) => AdminError::internal(detail),
        }
    }
}

impl From<AppError> for AdminError {
    fn from(error: AppError) -> Self {
        match error {
            AppError::BadRequest(reason) => AdminError::BadRequest(reason),
            AppError::NotFound(reason) => AdminError::NotFound(reason),
            AppError::PayloadTooLarge { limit_bytes } => AdminError::TooLarge { limit_bytes },
            AppError::Overloaded(reason) | AppError::Unavailable(reason) => {
                AdminError::Unavailable(reason)
            }
            other => AdminError::internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn render(error: AdminError) -> (StatusCode, serde_json::Value) {
        let response = error.into_response();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn unprocessable_lists_fields() {
        let fields = vec![FieldProblem {
            path: "services[x].replicas".into(),
            message: "must be >= 1".into(),
        }];
        let (status, body) = render(AdminError::Unprocessable {
            reason: "invalid service".into(),
            fields,
        })
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["fields"][0]["path"], "services[x].replicas");
    }

    #[tokio::test]
    async fn internal_detail_stays_in_the_log() {
        let (status, body) = render(AdminError::internal("/var/lib/levee: EIO")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!body.to_string().contains("EIO"));
    }
}
