//! `Inbound`: a data-plane request after validation, ready for the read or
//! write path.
//!
//! Everything untrusted about a client request is checked here, once, before
//! any replica is contacted: the service exists and has room
//! (`concurrency_max`, else 503), the routing key is present and bounded
//! (else 400 naming where it was expected), the body fits `body_bytes_max`
//! (else 413; refused by `Content-Length` before reading when possible), and
//! hop-by-hop headers are gone. What remains is a buffered request that a
//! retry or a fan-out can send as many times as it needs.
//!
//! Allocations: one per request for the upstream path (shared by every
//! attempt), none for the routing key (kept as a place in the path or a
//! header value), none for the request id (shared), and two per attempt
//! for its header map ([`Inbound::upstream_request`]). Error texts are
//! built only when there is an error.

use std::ops::Range;
use std::sync::Arc;

use axum::body::Body;
use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::uri::{self, Authority, PathAndQuery, Scheme};
use hyper::{Method, Request, Uri};

use crate::cluster::service::{InFlight, Service};
use crate::config::KeyRule;
use crate::dataplane::error::AppError;
use crate::upstream;

/// Bytes of a routing key.
pub const ROUTING_KEY_BYTES_MAX: usize = 1024;
/// Bytes of a client-supplied `x-request-id` we pass on (longer: replaced).
pub const REQUEST_ID_BYTES_MAX: usize = 128;

/// The request-id header, passed through or generated.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Marks a non-idempotent request as safe to retry.
pub static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// A validated, buffered data-plane request.
#[derive(Debug)]
pub struct Inbound {
    /// Holds the service's in-flight slot for as long as the request lives.
    in_flight: InFlight,
    pub method: Method,
    /// The upstream path and query: the client's path minus `/{service}`.
    /// Built once; every attempt's URI shares its bytes.
    pub path_and_query: PathAndQuery,
    /// Client headers minus hop-by-hop, `Host`, `Expect`, `Content-Length`;
    /// `x-request-id` is set.
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Where the routing key is.
    routing_key: KeyPlace,
    pub request_id: HeaderValue,
    /// `clock::now_ms` when the request arrived (the deadline counts from here).
    pub started_ms: u64,
}

/// Where a request's routing key is, so that it is never copied.
#[derive(Debug)]
enum KeyPlace {
    /// A byte range of `path_and_query` (a path segment or a query value).
    Path(Range<usize>),
    /// A header's value, checked to be visible ASCII.
    Header(HeaderValue),
}

impl Inbound {
    /// Validates and buffers a request for `service`; `upstream_path` is the
    /// path after the `/{service}` prefix (always starting with `/`).
    #[cfg(test)]
    pub async fn read(
        service: &Arc<Service>,
        request: Request<Body>,
        upstream_path: &str,
        started_ms: u64,
    ) -> Result<Inbound, AppError> {
        Inbound::read_with_id(service, request, upstream_path, None, started_ms).await
    }

    /// [`Inbound::read`] with the request's id already chosen (the data
    /// plane chooses it first, for its tracing span); `None` keeps the
    /// client's `x-request-id` if it is not empty and at most
    /// [`REQUEST_ID_BYTES_MAX`] bytes, else makes a new one. The id is
    /// set in the headers after the hop-by-hop ones are gone, which leaves
    /// room for it: no header map grows.
    pub async fn read_with_id(
        service: &Arc<Service>,
        request: Request<Body>,
        upstream_path: &str,
        request_id: Option<HeaderValue>,
        started_ms: u64,
    ) -> Result<Inbound, AppError> {
        debug_assert!(upstream_path.starts_with('/'));
        let in_flight = service.try_enter().ok_or_else(|| {
            AppError::Overloaded(format!(
                "service {} has {} requests in flight, its concurrency_max",
                service.name(),
                service.spec.concurrency_max
            ))
        })?;
        let (parts, body) = request.into_parts();
        let path_and_query = upstream_path_and_query(upstream_path, parts.uri.query())?;
        let routing_key = match routing_key(
            service,
            &parts.headers,
            path_and_query.path(),
            path_and_query.query(),
        )? {
            Found::Header(value) => KeyPlace::Header(value.clone()),
            Found::Text(key) => KeyPlace::Path(
                place_in(path_and_query.as_str(), key)
                    .ok_or_else(|| AppError::internal("routing key outside the request path"))?,
            ),
        };
        let body = read_body(body, &parts.headers, service.spec.body_bytes_max).await?;
        let mut headers = parts.headers;
        upstream::strip_for_upstream(&mut headers);
        let request_id = match (request_id, headers.get(&X_REQUEST_ID)) {
            (Some(chosen), Some(sent)) if chosen == sent => chosen,
            (Some(chosen), _) => {
                headers.insert(X_REQUEST_ID.clone(), chosen.clone());
                chosen
            }
            (None, Some(id)) if !id.is_empty() && id.len() <= REQUEST_ID_BYTES_MAX => id.clone(),
            (None, _) => {
                let id = upstream::new_request_id();
                headers.insert(X_REQUEST_ID.clone(), id.clone());
                id
            }
        };
        Ok(Inbound {
            in_flight,
            method: parts.method,
            path_and_query,
            headers,
            body,
            routing_key,
            request_id,
            started_ms,
        })
    }

    pub fn service(&self) -> &Arc<Service> {
        self.in_flight.service()
    }

    pub fn routing_key(&self) -> &str {
        match &self.routing_key {
            KeyPlace::Path(range) => &self.path_and_query.as_str()[range.clone()],
            KeyPlace::Header(value) => value.to_str().unwrap_or_default(),
        }
    }

    /// The request for one attempt on the replica at `scheme://authority`,
    /// whose `Host` header is `host`. Everything is shared with this
    /// request (path, body, header names and values) except the header map
    /// itself, which the client consumes: two allocations.
    pub fn upstream_request(
        &self,
        scheme: &Scheme,
        authority: &Authority,
        host: &HeaderValue,
    ) -> Result<Request<crate::upstream::UpstreamBody>, uri::InvalidUriParts> {
        let mut uri = uri::Parts::default();
        uri.scheme = Some(scheme.clone());
        uri.authority = Some(authority.clone());
        uri.path_and_query = Some(self.path_and_query.clone());
        let uri = Uri::from_parts(uri)?;
        // Sized once, so that nothing grows it: `Host`, and the slot the
        // client reserves before it looks for a `Host`.
        let mut headers = HeaderMap::with_capacity(self.headers.len() + 2);
        headers.insert(header::HOST, host.clone());
        for (name, value) in &self.headers {
            headers.append(name.clone(), value.clone());
        }
        let mut request = Request::new(crate::upstream::UpstreamBody::new(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        Ok(request)
    }

    /// Whether sending this request twice is harmless: the method is
    /// idempotent (RFC 9110 §9.2.2) or the client gave a non-empty
    /// Idempotency-Key (the policies' `request-facts.idempotent`).
    pub fn is_idempotent(&self) -> bool {
        is_idempotent_method(&self.method)
            || self
                .headers
                .get(&IDEMPOTENCY_KEY)
                .is_some_and(|key| !key.is_empty())
    }

    /// GET or HEAD: safe to hedge.
    pub fn is_read(&self) -> bool {
        self.method == Method::GET || self.method == Method::HEAD
    }
}

/// RFC 9110 idempotent methods.
pub fn is_idempotent_method(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// `upstream_path` and `query` as one shared `PathAndQuery`, which every
/// attempt's URI then shares (the pooled client clones a URI up to three
/// times per attempt: each clone is a reference count).
fn upstream_path_and_query(
    upstream_path: &str,
    query: Option<&str>,
) -> Result<PathAndQuery, AppError> {
    let query_bytes = query.map_or(0, |query| 1 + query.len());
    let bytes = upstream_path.len() + query_bytes;
    let shared = if bytes <= INLINE_PATH_BYTES_MAX {
        // One allocation: the bytes live beside their reference count.
        let mut inline = InlinePath {
            len: 0,
            bytes: [0; INLINE_PATH_BYTES_MAX],
        };
        inline.push(upstream_path.as_bytes());
        if let Some(query) = query {
            inline.push(b"?");
            inline.push(query.as_bytes());
        }
        Bytes::from_owner(inline)
    } else {
        // Two: the buffer, and its reference count on the first clone.
        let mut buffer = BytesMut::with_capacity(bytes);
        buffer.put_slice(upstream_path.as_bytes());
        if let Some(query) = query {
            buffer.put_u8(b'?');
            buffer.put_slice(query.as_bytes());
        }
        buffer.freeze()
    };
    PathAndQuery::from_maybe_shared(shared)
        .map_err(|error| AppError::BadRequest(format!("invalid request path: {error}")))
}

/// Upstream paths (query included) up to this long take one allocation.
const INLINE_PATH_BYTES_MAX: usize = 192;

/// A short upstream path, stored inline so that `Bytes::from_owner` puts
/// it in the same allocation as the reference count.
struct InlinePath {
    len: usize,
    bytes: [u8; INLINE_PATH_BYTES_MAX],
}

impl InlinePath {
    fn push(&mut self, part: &[u8]) {
        self.bytes[self.len..self.len + part.len()].copy_from_slice(part);
        self.len += part.len();
    }
}

impl AsRef<[u8]> for InlinePath {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The byte range `part` occupies in `whole`, if it is a slice of it.
fn place_in(whole: &str, part: &str) -> Option<Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= whole.len()).then_some(start..end)
}

/// A routing key where [`routing_key`] found it.
enum Found<'a> {
    Header(&'a HeaderValue),
    /// A slice of the path or the query given to [`routing_key`].
    Text(&'a str),
}

impl Found<'_> {
    fn len(&self) -> usize {
        match self {
            Found::Header(value) => value.len(),
            Found::Text(text) => text.len(),
        }
    }
}

/// Extracts the routing key per the service's rule. Keys are the raw bytes
/// as they appear (not percent-decoded), so every form hashes identically
/// to what a tool computing placement sees in the URL.
fn routing_key<'a>(
    service: &Service,
    headers: &'a HeaderMap,
    upstream_path: &'a str,
    query: Option<&'a str>,
) -> Result<Found<'a>, AppError> {
    let found = match &service.spec.key {
        KeyRule::Header(name) => {
            let header = service.key_header.as_ref().expect("built with the service");
            match headers.get(header) {
                Some(value) if value.to_str().is_err() => {
                    return Err(AppError::BadRequest(format!(
                        "routing key header {name} is not visible ASCII"
                    )));
                }
                value => value.map(Found::Header),
            }
        }
        KeyRule::PathSegment(index) => upstream_path
            .split('/')
            .skip(1)
            .nth(*index as usize)
            .map(Found::Text),
        KeyRule::Query(name) => query
            .and_then(|q| {
                q.split('&').take(256).find_map(|pair| {
                    pair.split_once('=')
                        .filter(|(k, _)| k == name)
                        .map(|(_, v)| v)
                })
            })
            .map(Found::Text),
    };
    // Where the key was expected, for an error's reason only.
    let wanted = || match &service.spec.key {
        KeyRule::Header(name) => format!("header {name}"),
        KeyRule::PathSegment(index) => {
            format!("path segment {index} after /{}", service.name())
        }
        KeyRule::Query(name) => format!("query parameter {name}"),
    };
    match found {
        Some(key) if key.len() != 0 && key.len() <= ROUTING_KEY_BYTES_MAX => Ok(key),
        Some(key) if key.len() > ROUTING_KEY_BYTES_MAX => Err(AppError::BadRequest(format!(
            "routing key ({}) is {} bytes, more than {ROUTING_KEY_BYTES_MAX}",
            wanted(),
            key.len()
        ))),
        _ => Err(AppError::BadRequest(format!(
            "missing routing key: expected {}",
            wanted()
        ))),
    }
}

/// Buffers the body, refusing more than `limit_bytes`.
async fn read_body(body: Body, headers: &HeaderMap, limit_bytes: u64) -> Result<Bytes, AppError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit_bytes) {
        return Err(AppError::PayloadTooLarge { limit_bytes });
    }
    let limit = usize::try_from(limit_bytes).unwrap_or(usize::MAX);
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => {
            Err(AppError::PayloadTooLarge { limit_bytes })
        }
        Err(error) => {
            // A limit error may also arrive wrapped in axum's body error.
            if std::error::Error::source(&*error).is_some_and(|s| s.is::<LengthLimitError>()) {
                return Err(AppError::PayloadTooLarge { limit_bytes });
            }
            Err(AppError::BadRequest(format!(
                "could not read the request body: {error}"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::base::clock;
    use crate::config::ServiceSpec;

    fn service(key: serde_json::Value) -> Arc<Service> {
        let spec: ServiceSpec = serde_json::from_value(json!({
            "name": "kv",
            "nodes": [{"id": "a", "url": "http://127.0.0.1:9"}],
            "key": key,
        }))
        .unwrap();
        spec.validate().unwrap();
        let runtime = levee_plugin::Runtime::new(levee_plugin::RuntimeOptions::default()).unwrap();
        Arc::new(Service::build(spec, &runtime).unwrap())
    }

    async fn read(service: &Arc<Service>, uri: &str, headers: &[(&str, &str)]) -> Inbound {
        let mut request = Request::get(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Body::empty()).unwrap();
        let upstream = uri.strip_prefix("/kv").unwrap().to_owned();
        let upstream = upstream.split('?').next().unwrap().to_owned();
        Inbound::read(service, request, &upstream, clock::now_ms())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_routing_key_is_found_in_place() {
        let by_segment = service(json!({"path_segment": 1}));
        let inbound = read(&by_segment, "/kv/kv/alice?x=1", &[]).await;
        assert_eq!(inbound.routing_key(), "alice");
        assert_eq!(inbound.path_and_query.as_str(), "/kv/alice?x=1");

        let by_query = service(json!({"query": "k"}));
        let inbound = read(&by_query, "/kv/kv/x?a=1&k=bob", &[]).await;
        assert_eq!(inbound.routing_key(), "bob");
        assert_eq!(inbound.path_and_query.as_str(), "/kv/x?a=1&k=bob");

        let by_header = service(json!({"header": "x-key"}));
        let inbound = read(&by_header, "/kv/kv/x", &[("x-key", "carol")]).await;
        assert_eq!(inbound.routing_key(), "carol");
    }

    #[tokio::test]
    async fn long_paths_are_kept_whole() {
        let by_query = service(json!({"query": "k"}));
        let long = "p".repeat(INLINE_PATH_BYTES_MAX * 2);
        let inbound = read(&by_query, &format!("/kv/{long}?k=dave"), &[]).await;
        assert_eq!(inbound.routing_key(), "dave");
        assert_eq!(inbound.path_and_query.as_str(), format!("/{long}?k=dave"));
    }

    #[tokio::test]
    async fn an_upstream_request_carries_the_client_headers_and_room_to_spare() {
        let service = service(json!({"path_segment": 1}));
        let inbound = read(
            &service,
            "/kv/kv/alice",
            &[("host", "levee"), ("accept", "*/*"), ("x-custom", "1")],
        )
        .await;
        let node = &service.nodes[0];
        let request = inbound
            .upstream_request(&node.scheme, &node.authority, &node.host)
            .unwrap();
        assert_eq!(request.uri(), "http://127.0.0.1:9/kv/alice");
        let headers = request.headers();
        assert_eq!(headers[header::HOST], "127.0.0.1:9");
        assert_eq!(headers["x-custom"], "1");
        assert_eq!(headers[&X_REQUEST_ID], inbound.request_id);
        assert!(
            headers.capacity() > headers.len(),
            "the client's Host lookup must not grow the map"
        );
    }

    #[tokio::test]
    async fn a_chosen_request_id_replaces_the_clients() {
        let service = service(json!({"path_segment": 1}));
        let request = Request::get("/kv/kv/alice")
            .header("x-request-id", "theirs")
            .body(Body::empty())
            .unwrap();
        let chosen = HeaderValue::from_static("ours");
        let inbound = Inbound::read_with_id(
            &service,
            request,
            "/kv/alice",
            Some(chosen),
            clock::now_ms(),
        )
        .await
        .unwrap();
        assert_eq!(inbound.request_id, "ours");
        assert_eq!(inbound.headers[&X_REQUEST_ID], "ours");
    }
}
