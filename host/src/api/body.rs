//! Reading a bounded request body, shared by the admin handlers that take
//! one (plugin uploads, service definitions): at most the endpoint's bytes,
//! within [`ADMIN_BODY_READ_TIMEOUT_MS`] (a client that stalls mid-body
//! gets 408 instead of holding its handler, and the plugin host's change
//! lock, forever).

use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::api::admin_error::AdminError;

/// The longest an admin request body may take to arrive whole: a 32 MiB
/// plugin at a slow 1 MiB/s fits; a stalled client does not.
pub const ADMIN_BODY_READ_TIMEOUT_MS: u64 = 60_000;

/// Reads a request body of at most `limit_bytes`, refusing a larger
/// `Content-Length` before reading anything.
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit_bytes: u64,
) -> Result<Bytes, AdminError> {
    let within = std::time::Duration::from_millis(ADMIN_BODY_READ_TIMEOUT_MS);
    read_body_within(headers, body, limit_bytes, within).await
}

async fn read_body_within(
    headers: &HeaderMap,
    body: Body,
    limit_bytes: u64,
    within: std::time::Duration,
) -> Result<Bytes, AdminError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit_bytes) {
        return Err(AdminError::TooLarge { limit_bytes });
    }
    let limit = usize::try_from(limit_bytes).unwrap_or(usize::MAX);
    let read = tokio::time::timeout(within, Limited::new(body, limit).collect());
    let Ok(collected) = read.await else {
        return Err(AdminError::RequestTimeout(format!(
            "the request body did not arrive within {} ms",
            within.as_millis()
        )));
    };
    match collected {
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

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use axum::http::StatusCode;
    use hyper::body::Frame;

    use super::*;

    /// A body whose client sent headers and then nothing.
    struct Stalled;

    impl hyper::body::Body for Stalled {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Pending
        }
    }

    #[tokio::test]
    async fn a_stalled_body_is_refused_in_time() {
        let within = std::time::Duration::from_millis(20);
        let refused = read_body_within(&HeaderMap::new(), Body::new(Stalled), 1024, within)
            .await
            .unwrap_err();
        assert_eq!(refused.status(), StatusCode::REQUEST_TIMEOUT);
        let whole = read_body_within(&HeaderMap::new(), Body::from("{}"), 1024, within)
            .await
            .unwrap();
        assert_eq!(&whole[..], b"{}");
    }
}
