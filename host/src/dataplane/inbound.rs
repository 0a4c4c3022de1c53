//! `Inbound`: a data-plane request after validation, ready for the read or
//! write path.
//!
//! Everything untrusted about a client request is checked here, once, before
//! any replica is contacted, cheapest first:
//!
//! 1. The path and query are rewritten into their one canonical form and
//!    the routing key is found in it ([`crate::dataplane::key`]: 400 for an
//!    ambiguous or malformed path, a duplicated key parameter, a missing or
//!    oversized key). The canonical path is what every attempt sends
//!    upstream, so the key always names what the replica stores.
//! 2. The body is read whole within the service's size, pause and rate
//!    limits and the process-wide buffered-bytes budget
//!    ([`crate::dataplane::body`]: 413, 408, 503).
//! 3. Only then is the service's in-flight slot taken (`concurrency_max`,
//!    else 503). A client that stalls its body therefore holds its
//!    connection and its reserved bytes, never a slot: slots are held only
//!    by complete requests, for as long as the replicas take.
//!
//! Hop-by-hop headers go. What remains is a buffered request that a retry
//! or a fan-out can send as many times as it needs. The deadline
//! (`timeouts.total_ms`) counts from when the body was complete: the
//! client's upload time is not the replicas' time.
//!
//! Allocations: one per request for the upstream path (shared by every
//! attempt; one more when the path had to be rewritten), none for the
//! routing key (kept as a place in the path or a header value), none for
//! the request id (shared), and two per attempt for its header map
//! ([`Inbound::upstream_request`]). Error texts are built only when there
//! is an error.

use std::ops::Range;
use std::sync::Arc;

use axum::body::Body;
use bytes::{BufMut, Bytes, BytesMut};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::uri::{self, Authority, PathAndQuery, Scheme};
use hyper::{Method, Request, Uri};

use crate::base::clock;
use crate::cluster::service::{InFlight, Service};
use crate::dataplane::body::{BodyBudget, BodyLimits, Reservation, read as read_body};
use crate::dataplane::error::AppError;
use crate::dataplane::key::{self, Found};
use crate::upstream;

pub use crate::dataplane::key::ROUTING_KEY_BYTES_MAX;
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
    /// The body's share of the process's buffered-body budget.
    _body_bytes: Reservation,
    pub method: Method,
    /// The upstream path and query: the client's path minus `/{service}`,
    /// in canonical form ([`crate::dataplane::key`]). Built once; every
    /// attempt's URI shares its bytes.
    pub path_and_query: PathAndQuery,
    /// Client headers minus hop-by-hop, `Host`, `Expect`, `Content-Length`;
    /// `x-request-id` is set.
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Where the routing key is.
    routing_key: KeyPlace,
    pub request_id: HeaderValue,
    /// `clock::now_ms` when the request was complete: when it arrived, or
    /// when its body was read (the deadline counts from here).
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
        let budget = Arc::new(BodyBudget::new(u64::MAX));
        Inbound::read_with_id(service, request, upstream_path, None, &budget, started_ms).await
    }

    /// [`Inbound::read`] with the request's id already chosen (the data
    /// plane chooses it first, for its tracing span) and the process's
    /// body budget; `None` keeps the client's `x-request-id` if it is not
    /// empty and at most [`REQUEST_ID_BYTES_MAX`] bytes, else makes a new
    /// one. The id is set in the headers after the hop-by-hop ones are
    /// gone, which leaves room for it: no header map grows.
    pub async fn read_with_id(
        service: &Arc<Service>,
        request: Request<Body>,
        upstream_path: &str,
        request_id: Option<HeaderValue>,
        bodies: &Arc<BodyBudget>,
        started_ms: u64,
    ) -> Result<Inbound, AppError> {
        debug_assert!(upstream_path.starts_with('/'));
        let (parts, body) = request.into_parts();
        let normalized = key::normalize(upstream_path, parts.uri.query())?;
        let path_and_query =
            upstream_path_and_query(&normalized.path, normalized.query.as_deref())?;
        let routing_key = match key::routing_key(
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
        let limits = BodyLimits::of(&service.spec);
        let (body, body_bytes) = read_body(body, &parts.headers, &limits, bodies).await?;
        let started_ms = if body.is_empty() {
            started_ms
        } else {
            clock::now_ms()
        };
        let in_flight = service.try_enter().ok_or_else(|| {
            AppError::Overloaded(format!(
                "service {} has {} requests in flight, its concurrency_max",
                service.name(),
                service.spec.concurrency_max
            ))
        })?;
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
            _body_bytes: body_bytes,
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
    async fn the_key_comes_from_the_path_sent_upstream() {
        let by_segment = service(json!({"path_segment": 1}));
        let inbound = read(&by_segment, "/kv/kv/%61lic%65?x=%7e", &[]).await;
        assert_eq!(inbound.routing_key(), "alice");
        assert_eq!(inbound.path_and_query.as_str(), "/kv/alice?x=~");

        let by_query = service(json!({"query": "k"}));
        let inbound = read(&by_query, "/kv/x?k=a%2bb+c", &[]).await;
        assert_eq!(inbound.routing_key(), "a%2Bb+c");
        assert_eq!(inbound.path_and_query.as_str(), "/x?k=a%2Bb+c");
        let request = Request::get("/kv/x?k=a&k=b").body(Body::empty()).unwrap();
        let error = Inbound::read(&by_query, request, "/x", clock::now_ms())
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "ambiguous query: parameter k appears more than once"
        );
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
            &Arc::new(BodyBudget::new(0)),
            clock::now_ms(),
        )
        .await
        .unwrap();
        assert_eq!(inbound.request_id, "ours");
        assert_eq!(inbound.headers[&X_REQUEST_ID], "ours");
    }
}
