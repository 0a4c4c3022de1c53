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

use crate::api::error::AppError;
use crate::clock;
use crate::config::validate_service_name;
use crate::inbound::Inbound;
use crate::proxy;
use crate::state::AppState;

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
    match dispatch(state, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
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
        // The write path (fan-out to N replicas, W acks) plugs in here.
        return proxy::forward(&state.client, inbound).await;
    }
    proxy::forward(&state.client, inbound).await
}

/// Methods that the write path replicates to all N replicas. The others are
/// forwarded to one replica at a time by the proxy path.
pub fn is_replicated_write(method: &Method) -> bool {
    *method == Method::PUT || *method == Method::DELETE
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
