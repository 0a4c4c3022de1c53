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

use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request};

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
    pub path_and_query: String,
    /// Client headers minus hop-by-hop, `Host`, `Expect`, `Content-Length`;
    /// `x-request-id` is set.
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Byte range of the routing key within `routing_key_source`.
    routing_key: String,
    pub request_id: HeaderValue,
    /// `clock::now_ms` when the request arrived (the deadline counts from here).
    pub started_ms: u64,
}

impl Inbound {
    /// Validates and buffers a request for `service`; `upstream_path` is the
    /// path after the `/{service}` prefix (always starting with `/`).
    pub async fn read(
        service: &Arc<Service>,
        request: Request<Body>,
        upstream_path: &str,
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
        let query = parts.uri.query();
        let routing_key = routing_key(service, &parts.headers, upstream_path, query)?.to_owned();
        let body = read_body(body, &parts.headers, service.spec.body_bytes_max).await?;
        let mut headers = parts.headers;
        upstream::strip_for_upstream(&mut headers);
        let request_id = match headers.get(&X_REQUEST_ID) {
            Some(id) if !id.is_empty() && id.len() <= REQUEST_ID_BYTES_MAX => id.clone(),
            _ => {
                let id = upstream::new_request_id();
                headers.insert(X_REQUEST_ID.clone(), id.clone());
                id
            }
        };
        let path_and_query = match query {
            Some(query) => format!("{upstream_path}?{query}"),
            None => upstream_path.to_owned(),
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
        &self.routing_key
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

/// Extracts the routing key per the service's rule. Keys are the raw bytes
/// as they appear (not percent-decoded), so every form hashes identically
/// to what a tool computing placement sees in the URL.
fn routing_key<'a>(
    service: &Service,
    headers: &'a HeaderMap,
    upstream_path: &'a str,
    query: Option<&'a str>,
) -> Result<&'a str, AppError> {
    let (found, wanted) = match &service.spec.key {
        KeyRule::Header(name) => {
            let header = service.key_header.as_ref().expect("built with the service");
            let value = headers.get(header).map(|v| v.to_str().map_err(|_| name));
            let value = match value {
                Some(Err(_)) => {
                    return Err(AppError::BadRequest(format!(
                        "routing key header {name} is not visible ASCII"
                    )));
                }
                Some(Ok(v)) => Some(v),
                None => None,
            };
            (value, format!("header {name}"))
        }
        KeyRule::PathSegment(index) => {
            let segment = upstream_path.split('/').skip(1).nth(*index as usize);
            (
                segment,
                format!("path segment {index} after /{}", service.name()),
            )
        }
        KeyRule::Query(name) => {
            let value = query.and_then(|q| {
                q.split('&').take(256).find_map(|pair| {
                    pair.split_once('=')
                        .filter(|(k, _)| k == name)
                        .map(|(_, v)| v)
                })
            });
            (value, format!("query parameter {name}"))
        }
    };
    match found {
        Some(key) if !key.is_empty() && key.len() <= ROUTING_KEY_BYTES_MAX => Ok(key),
        Some(key) if key.len() > ROUTING_KEY_BYTES_MAX => Err(AppError::BadRequest(format!(
            "routing key ({wanted}) is {} bytes, more than {ROUTING_KEY_BYTES_MAX}",
            key.len()
        ))),
        _ => Err(AppError::BadRequest(format!(
            "missing routing key: expected {wanted}"
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
