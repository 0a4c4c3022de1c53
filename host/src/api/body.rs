//! Reading a bounded request body, shared by the admin handlers that take
//! one (plugin uploads, service definitions).

use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::api::admin_error::AdminError;

/// Reads a request body of at most `limit_bytes`, refusing a larger
/// `Content-Length` before reading anything.
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit_bytes: u64,
) -> Result<Bytes, AdminError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit_bytes) {
        return Err(AdminError::TooLarge { limit_bytes });
    }
    let limit = usize::try_from(limit_bytes).unwrap_or(usize::MAX);
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) => {
            let too_large = error.is::<LengthLimitError>()
                || std::error::Error::source(&*error)
                    .is_some_and(|source| source.is::<LengthLimitError>());
            if too_large {
                Err(AdminError::TooLarge { limit_bytes })
            } else {
                Err(AdminError::BadRequest(format!(
                    "could not read the request body: {error}"
                )))
            }
        }
    }
}
