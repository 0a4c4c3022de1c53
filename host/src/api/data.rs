//! Data-plane handlers: `/{service}/{rest}` is proxied to the service's
//! replicas as `/{rest}` (query kept), e.g. `GET /users/kv/alice` →
//! `GET /kv/alice` on a replica of `users`.
//!
//! Service names never start with `_`, so `/_levee/...` is levee's own:
//! `GET /_levee/healthz` answers 200 once levee is ready (503 before and
//! during shutdown), for load balancers that only see the data port.
//!
//! Dispatch by method: replicated writes (see [`is_replicated_write`]) go
//! to the write path; GET and HEAD to a service with `read_quorum` > 1 go
//! to the read quorum path; everything else goes through the proxy (read)
//! path, which sends each attempt to one replica.
//!
//! The data plane owns the process's one [`BodyBudget`]
//! (`server.buffered_body_bytes_max`), which every service's request
//! bodies share (see `dataplane::body`).

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use tracing::Instrument;

use crate::api::request_id;
use crate::api::state::AppState;
use crate::base::clock;
use crate::cluster::service::Service;
use crate::config::validate_service_name;
use crate::dataplane::body::BodyBudget;
use crate::dataplane::error::AppError;
use crate::dataplane::inbound::Inbound;
use crate::dataplane::{proxy, read_quorum};

/// levee's own health path on the data listener.
pub const HEALTHZ_PATH: &str = "/_levee/healthz";

/// The data plane as a hyper service: every path and method, and no
/// router, layer or extractor. A `Router` would cost about eight
/// allocations and 8 KB on every proxied request (its extensions, its boxed
/// services and futures, and a box for this service's own future, which
/// here lives inline in the connection's task instead).
pub fn service(
    state: AppState,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response,
    Error = Infallible,
    Future: Send,
> + Clone
+ Send
+ 'static {
    let max_bytes = state.directory.config.load().server.buffered_body_bytes_max;
    let bodies = Arc::new(BodyBudget::new(max_bytes));
    hyper::service::service_fn(move |request: Request<Incoming>| {
        let state = state.clone();
        let bodies = Arc::clone(&bodies);
        async move { Ok::<_, Infallible>(serve(state, &bodies, request.map(Body::new)).await) }
    })
}

/// One data-plane request: its `x-request-id` (the client's if acceptable,
/// else a fresh one; on the request, on the response and in a tracing span
/// around the request, so every log line of the request carries it), then
/// `/_levee/healthz` or a service's request.
async fn serve(state: AppState, bodies: &Arc<BodyBudget>, request: Request<Body>) -> Response {
    // Set on the request by `Inbound`, once hop-by-hop headers made room.
    let id = request_id::header_value(request.headers());
    let span = tracing::info_span!(
        "request",
        request_id = id.to_str().unwrap_or_default(),
        method = %request.method(),
        path = request.uri().path(),
    );
    let mut response = async {
        if request.uri().path() == HEALTHZ_PATH {
            healthz(&state, request.method())
        } else {
            handle(state, bodies, request, id.clone()).await
        }
    }
    .instrument(span)
    .await;
    // Most responses carry it already (the proxy sets it); an insert would
    // reserve room even to replace it.
    if response.headers().get(&request_id::HEADER) != Some(&id) {
        response.headers_mut().insert(request_id::HEADER, id);
    }
    response
}

fn healthz(state: &AppState, method: &Method) -> Response {
    if *method != Method::GET && *method != Method::HEAD {
        let allow = [(header::ALLOW, HeaderValue::from_static("GET,HEAD"))];
        return (StatusCode::METHOD_NOT_ALLOWED, allow).into_response();
    }
    if state.is_ready() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        AppError::Unavailable("levee is not ready".into()).into_response()
    }
}

/// Every `/{service}/...` request.
async fn handle(
    state: AppState,
    bodies: &Arc<BodyBudget>,
    request: Request<Body>,
    request_id: HeaderValue,
) -> Response {
    let started = std::time::Instant::now();
    let started_ms = clock::now_ms();
    let method = request.method().clone();
    let found = find_service(&state, request.uri().path());
    // The label is the service's own name (client-chosen paths must not
    // create time series), borrowed: no string is built per request.
    let service = found.as_ref().ok().map(|(service, _)| Arc::clone(service));
    let response = match found {
        Ok((service, prefix_bytes)) => dispatch(
            &state,
            service,
            prefix_bytes,
            request,
            request_id,
            bodies,
            started_ms,
        )
        .await
        .unwrap_or_else(IntoResponse::into_response),
        Err(error) => error.into_response(),
    };
    crate::base::metrics::request_finished(
        crate::base::metrics::service_label(service.as_deref().map(Service::name)),
        method.as_str(),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// The service `path` names, and the length of its `/{service}` prefix.
fn find_service(state: &AppState, path: &str) -> Result<(Arc<Service>, usize), AppError> {
    let (service_name, _) = split_service(path)?;
    let service = state
        .service(service_name)
        .ok_or_else(|| AppError::NotFound(format!("no service named {service_name:?}")))?;
    Ok((service, 1 + service_name.len()))
}

async fn dispatch(
    state: &AppState,
    service: Arc<Service>,
    prefix_bytes: usize,
    request: Request<Body>,
    request_id: HeaderValue,
    bodies: &Arc<BodyBudget>,
    started_ms: u64,
) -> Result<Response, AppError> {
    // The URI's bytes are shared with the request: the clone is a reference
    // count, and lets the upstream path borrow from it while the request
    // moves into `Inbound`.
    let uri = request.uri().clone();
    let upstream_path = match &uri.path()[prefix_bytes..] {
        "" => "/",
        rest => rest,
    };
    let inbound = Inbound::read_with_id(
        &service,
        request,
        upstream_path,
        Some(request_id),
        bodies,
        started_ms,
    )
    .await?;
    if is_replicated_write(&inbound.method) {
        return crate::dataplane::fanout::write(
            state.writes.clone(),
            state.client.clone(),
            inbound,
        )
        .await;
    }
    if let Some(quorum) = read_quorum::quorum_for(&inbound, &state.writes) {
        return read_quorum::read(&state.client, &state.writes, inbound, quorum).await;
    }
    proxy::forward(&state.client, &state.writes, inbound).await
}

/// Methods that the write path replicates to all N replicas. The others are
/// forwarded to one replica at a time by the proxy path.
pub fn is_replicated_write(method: &Method) -> bool {
    matches!(
        *method,
        Method::PUT | Method::POST | Method::PATCH | Method::DELETE
    )
}

/// Splits `/{service}/{rest}` into the service name and `/{rest}`.
fn split_service(path: &str) -> Result<(&str, &str), AppError> {
    let Some(without_slash) = path.strip_prefix('/') else {
        return Err(AppError::BadRequest("path must start with /".into()));
    };
    let (name, rest) = match without_slash.find('/') {
        Some(at) => (&without_slash[..at], &without_slash[at..]),
        None => (without_slash, "/"),
    };
    if name.is_empty() {
        return Err(AppError::NotFound(
            "no service in the path: expected /{service}/...".into(),
        ));
    }
    if validate_service_name(name).is_err() {
        return Err(AppError::NotFound(
            "no such service: not a valid service name".into(),
        ));
    }
    Ok((name, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// State over a real (temporary) data directory; the node's port is
    /// never contacted by these tests, which all fail before the proxy.
    fn state(dir: &std::path::Path) -> AppState {
        let config = crate::config::Config::from_json(
            &serde_json::json!({
                "data_dir": dir,
                "services": [{
                    "name": "kv",
                    "nodes": [{"id": "a", "url": "http://127.0.0.1:9"}],
                    "key": {"header": "x-key"},
                    "body_bytes_max": 16,
                }],
            })
            .to_string(),
        )
        .unwrap();
        AppState::new(config).unwrap()
    }

    async fn call(app: &AppState, request: Request<Body>) -> (StatusCode, String) {
        let bodies = Arc::new(BodyBudget::new(1024));
        let response = serve(app.clone(), &bodies, request).await;
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    fn reason(body: &str) -> String {
        serde_json::from_str::<serde_json::Value>(body).unwrap()["reason"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[tokio::test]
    async fn bad_input_is_refused_before_any_replica_is_contacted() {
        let dir = tempfile::tempdir().unwrap();
        let app = state(dir.path());
        let get = |uri: &str| Request::get(uri).body(Body::empty()).unwrap();
        let (status, body) = call(&app, get("/nope/x")).await;
        assert_eq!(
            (status, reason(&body)),
            (StatusCode::NOT_FOUND, "no service named \"nope\"".into())
        );
        let (status, body) = call(&app, get("/kv/x")).await;
        assert_eq!(
            (status, reason(&body)),
            (
                StatusCode::BAD_REQUEST,
                "missing routing key: expected header x-key".into()
            )
        );
        let oversized = Request::post("/kv/x")
            .header("x-key", "k")
            .body(Body::from(vec![0u8; 17]))
            .unwrap();
        let (status, body) = call(&app, oversized).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
        let long_key = Request::get("/kv/x")
            .header("x-key", "k".repeat(1025))
            .body(Body::empty())
            .unwrap();
        let (status, body) = call(&app, long_key).await;
        assert_eq!(
            (status, reason(&body)),
            (
                StatusCode::BAD_REQUEST,
                "routing key (header x-key) is 1025 bytes, more than 1024".into()
            )
        );
    }

    #[tokio::test]
    async fn levee_health_follows_readiness() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(dir.path());
        let app = state.clone();
        let health = || Request::get("/_levee/healthz").body(Body::empty()).unwrap();
        assert_eq!(
            call(&app, health()).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        state.set_ready(true);
        assert_eq!(call(&app, health()).await.0, StatusCode::OK);
        state.begin_shutdown();
        assert_eq!(
            call(&app, health()).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn paths_split_into_service_and_upstream_path() {
        assert_eq!(
            split_service("/users/kv/alice").unwrap(),
            ("users", "/kv/alice")
        );
        assert_eq!(split_service("/users").unwrap(), ("users", "/"));
        assert_eq!(split_service("/users/").unwrap(), ("users", "/"));
        assert!(matches!(
            split_service("/").unwrap_err(),
            AppError::NotFound(_)
        ));
        assert!(matches!(
            split_service("/Users/x").unwrap_err(),
            AppError::NotFound(_)
        ));
        assert!(matches!(
            split_service("/_levee/x").unwrap_err(),
            AppError::NotFound(_)
        ));
    }
}
