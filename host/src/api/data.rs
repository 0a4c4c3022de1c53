//! Data-plane handlers: `/{service}/{rest}` is proxied to the service's
//! replicas as `/{rest}` (query kept), e.g. `GET /users/kv/alice` →
//! `GET /kv/alice` on a replica of `users`.
//!
//! Service names never start with `_`, so `/_levee/...` is levee's own:
//! `GET /_levee/healthz` answers 200 once levee is ready (503 before and
//! during shutdown), for load balancers that only see the data port.
//!
//! Dispatch by method: replicated writes (see [`is_replicated_write`]) go
//! to the write path; everything else goes through the proxy (read) path,
//! which sends each attempt to one replica.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::api::state::AppState;
use crate::base::clock;
use crate::config::validate_service_name;
use crate::dataplane::error::AppError;
use crate::dataplane::inbound::Inbound;
use crate::dataplane::proxy;

/// The data-plane router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/_levee/healthz", get(healthz))
        .fallback(handle)
        .with_state(state)
}

async fn healthz(State(state): State<AppState>) -> Response {
    if state.is_ready() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        AppError::Unavailable("levee is not ready".into()).into_response()
    }
}

/// Every `/{service}/...` request.
async fn handle(State(state): State<AppState>, request: Request<Body>) -> Response {
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let service = crate::base::metrics::service_label(request.uri().path(), |name| {
        state.service(name).is_some()
    });
    let response = match dispatch(state, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    crate::base::metrics::request_finished(
        &service,
        method.as_str(),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

async fn dispatch(state: AppState, request: Request<Body>) -> Result<Response, AppError> {
    let started_ms = clock::now_ms();
    let (service_name, upstream_path) = split_service(request.uri().path())?;
    let service = state
        .service(service_name)
        .ok_or_else(|| AppError::NotFound(format!("no service named {service_name:?}")))?;
    let upstream_path = upstream_path.to_owned();
    let inbound = Inbound::read(&service, request, &upstream_path, started_ms).await?;
    if is_replicated_write(&inbound.method) {
        return crate::dataplane::fanout::write(
            state.writes.clone(),
            state.client.clone(),
            inbound,
        )
        .await;
    }
    proxy::forward(&state.client, inbound).await
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
    use tower::ServiceExt;

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

    async fn call(app: &Router, request: Request<Body>) -> (StatusCode, String) {
        let response = app.clone().oneshot(request).await.unwrap();
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
        let app = router(state(dir.path()));
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
        let app = router(state.clone());
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
