//! The `x-request-id` header: one id per client request, carried from the
//! client through levee's logs to every upstream attempt and back.
//!
//! Why: when a request was retried three times across two replicas, the only
//! way to put its log lines (ours and the upstreams') together is an id they
//! all share. A well-formed id from the client is kept (the caller may be
//! tracing across several hops); a missing or suspicious one is replaced by a
//! fresh random id, because the value ends up in log files and must not carry
//! control characters or megabytes.
//!
//! The admin middleware ([`assign`]) writes the id back into the request's
//! headers, into the request's extensions as [`RequestId`] (for handlers),
//! into a tracing span around the whole request (so every log line of the
//! request carries `request_id`), and into the response. The data plane
//! does the same inline ([`crate::api::data`]) with [`header_value`], minus
//! the extension no data-plane handler reads: a layer and an extension cost
//! allocations on every proxied request.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;
use tracing::Instrument;

/// The header name, lower-case as HTTP/2 requires.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// Longest client-supplied id kept as is.
pub const ID_BYTES_MAX: usize = 128;

/// The request's id, available to handlers via `Extension<RequestId>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub Arc<str>);

impl RequestId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The client's id if it is acceptable, else a new one.
pub fn from_headers(headers: &HeaderMap) -> RequestId {
    let value = header_value(headers);
    RequestId(Arc::from(value.to_str().expect("ids are visible ASCII")))
}

/// The request's id as a header value: the client's `x-request-id` itself
/// (shared, not copied) if it is acceptable, else a fresh one. The data
/// plane uses this form: the value goes to every attempt and back to the
/// client, and cloning it costs no allocation.
pub fn header_value(headers: &HeaderMap) -> HeaderValue {
    match headers.get(&HEADER) {
        Some(value) if value.to_str().is_ok_and(is_acceptable) => value.clone(),
        _ => crate::upstream::new_request_id(),
    }
}

/// 1..=128 characters from a conservative alphabet that covers UUIDs, hex,
/// base64 and the usual `prefix:id` forms.
fn is_acceptable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= ID_BYTES_MAX
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:+/=".contains(&b))
}

/// Axum middleware: `.layer(axum::middleware::from_fn(request_id::assign))`.
pub async fn assign(mut request: Request, next: Next) -> Response {
    let id = from_headers(request.headers());
    let value = HeaderValue::from_str(id.as_str()).expect("ids are visible ASCII by construction");
    request.headers_mut().insert(HEADER, value.clone());
    request.extensions_mut().insert(id.clone());
    let span = tracing::info_span!(
        "request",
        request_id = id.as_str(),
        method = %request.method(),
        path = request.uri().path(),
    );
    let mut response = next.run(request).instrument(span).await;
    response.headers_mut().insert(HEADER, value);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    fn headers_with(id: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER, HeaderValue::from_bytes(id).unwrap());
        headers
    }

    #[test]
    fn keeps_a_well_formed_client_id() {
        let id = from_headers(&headers_with(b"req-7f3a:01HZX+/="));
        assert_eq!(id.as_str(), "req-7f3a:01HZX+/=");
    }

    #[test]
    fn replaces_missing_odd_or_huge_ids() {
        let huge = vec![b'a'; ID_BYTES_MAX + 1];
        for headers in [
            HeaderMap::new(),
            headers_with(b"has space"),
            headers_with(b"\"quoted\""),
            headers_with(&huge),
        ] {
            let id = from_headers(&headers);
            assert_eq!(id.as_str().len(), 24, "{id:?}");
            assert!(id.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
        }
    }

    #[test]
    fn generated_ids_differ() {
        let none = HeaderMap::new();
        assert_ne!(from_headers(&none), from_headers(&none));
    }

    #[test]
    fn an_acceptable_client_id_is_shared_not_copied() {
        let headers = headers_with(b"client-id-7");
        let value = header_value(&headers);
        assert_eq!(value, "client-id-7");
        assert_eq!(
            value.as_bytes().as_ptr(),
            headers[&HEADER].as_bytes().as_ptr(),
            "the same bytes"
        );
        let fresh = header_value(&headers_with(b"has space"));
        assert_eq!(fresh.len(), 24);
    }

    async fn echo_seen_id(request: Request) -> String {
        let extension = request.extensions().get::<RequestId>().cloned().unwrap();
        let header = request.headers()[&HEADER].to_str().unwrap().to_string();
        assert_eq!(
            extension.as_str(),
            header,
            "handler sees the same id in both places"
        );
        header
    }

    #[tokio::test]
    async fn middleware_sets_request_and_response_headers() {
        let app = Router::new()
            .route("/", get(echo_seen_id))
            .layer(axum::middleware::from_fn(assign));
        let response = app
            .clone()
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let echoed = response.headers()[&HEADER].to_str().unwrap().to_string();
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        assert_eq!(
            body,
            echoed.as_bytes(),
            "the handler saw the id the client gets back"
        );

        let request = Request::get("/")
            .header(&HEADER, "client-id-1")
            .body(Body::empty())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.headers()[&HEADER], "client-id-1");
    }
}
