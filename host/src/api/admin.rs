//! The admin listener's router: probes, metrics, the status page and the
//! admin API.
//!
//! ```text
//! GET    /healthz                          200 while the process serves (liveness)
//! GET    /readyz                           200 once recovery finished, 503 before and while draining
//! GET    /metrics                          Prometheus text format
//! GET    /admin/                           the status page (HTML shell, no token needed)
//! GET    /admin/state                      everything the status page shows, as JSON
//! GET    /admin/plugins                    plugins: world, version, status, counters, services
//! GET    /admin/plugins/{name}             one plugin
//! PUT    /admin/plugins/{name}             upload a component (body: the bytes)
//! DELETE /admin/plugins/{name}             also deletes its drop-in file; 409 while a service uses it
//! POST   /admin/plugins/{name}/rollback    back to the previous version
//! PUT    /admin/plugins/{name}/oci         pull by digest from an OCI registry (body: {"reference"})
//! GET    /admin/cluster                    cluster mode: every instance and its revision
//! GET    /admin/services                   every service spec
//! GET    /admin/services/{name}            one service: spec and node health
//! PUT    /admin/services/{name}            add or replace (body: the service JSON)
//! DELETE /admin/services/{name}
//! GET    /admin/services/{name}/ring?key=K the key's preference list
//! GET    /admin/log                        segments, LSNs, checkpoint, hint backlog
//! POST   /admin/checkpoint                 write a checkpoint now (?compact=true)
//! ```
//!
//! Layers, outermost first: request id (every admin response carries
//! `x-request-id`), the `Host` / `Origin` guard (403 for a DNS-rebinding
//! name or a cross-site state change, [`crate::control::admin_origin`]),
//! bearer-token authentication ([`super::auth`]), then the handlers. Request bodies are not limited by a blanket layer: each handler
//! reads its body through [`crate::api::body::read_body`] with its own bound (32 MiB for a
//! component, 1 MiB for a service), refusing by `Content-Length` first.
//!
//! The data listener never serves any of this: it has its own router
//! ([`super::data`]), in which `/admin/...` is just an unknown service.

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};

use crate::api::admin_error::AdminError;
use crate::api::state::AppState;
use crate::api::{
    admin_cluster, admin_log, admin_oci, admin_plugins, admin_services, admin_shadow, admin_state,
    auth, status_page,
};

/// The admin router.
pub fn router(state: AppState) -> Router {
    let auth = state.control.auth.clone();
    let origin = state.control.origin.clone();
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/admin", get(status_page::redirect))
        .route("/admin/", get(status_page::page))
        .route("/admin/state", get(admin_state::get))
        .route("/admin/plugins", get(admin_plugins::list))
        .route(
            "/admin/plugins/{name}",
            get(admin_plugins::one)
                .put(admin_plugins::upload)
                .delete(admin_plugins::delete),
        )
        .route(
            "/admin/plugins/{name}/rollback",
            post(admin_plugins::rollback),
        )
        .route(
            "/admin/plugins/{name}/shadow",
            get(admin_shadow::get)
                .put(admin_shadow::put)
                .delete(admin_shadow::delete),
        )
        .route("/admin/plugins/{name}/promote", post(admin_shadow::promote))
        .route("/admin/plugins/{name}/oci", put(admin_oci::put))
        .route("/admin/plugins/{name}/trial", post(admin_shadow::trial))
        .route("/admin/cluster", get(admin_cluster::get))
        .route("/admin/services", get(admin_services::list))
        .route(
            "/admin/services/{name}",
            get(admin_services::one)
                .put(admin_services::put)
                .delete(admin_services::delete),
        )
        .route("/admin/services/{name}/ring", get(admin_services::ring))
        .route("/admin/log", get(admin_log::get))
        .route("/admin/checkpoint", post(admin_log::checkpoint))
        .fallback(not_found)
        .layer(DefaultBodyLimit::disable())
        .layer(from_fn_with_state(auth, auth::require_admin_token))
        .layer(from_fn_with_state(origin, auth::guard_origin))
        .layer(from_fn(crate::api::request_id::assign))
        .with_state(state)
}

/// Liveness: the process is up and serving this listener.
async fn healthz() -> Response {
    (
        StatusCode::OK,
        axum::Json(serde_json::json!({ "status": "ok" })),
    )
        .into_response()
}

/// Readiness: recovery (log, write path, plugins) finished and shutdown has
/// not begun.
async fn readyz(State(state): State<AppState>) -> Response {
    if state.is_ready() {
        return (
            StatusCode::OK,
            axum::Json(serde_json::json!({ "status": "ready" })),
        )
            .into_response();
    }
    let reason = if state.is_shutting_down() {
        "shutting down: draining in-flight requests"
    } else {
        "starting: recovery in progress"
    };
    AdminError::Unavailable(reason.into()).into_response()
}

/// Prometheus text exposition format 0.0.4.
async fn metrics(State(state): State<AppState>) -> Response {
    crate::api::views::state::mirror_gauges(&state);
    let text = crate::base::metrics::render();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn not_found() -> AdminError {
    AdminError::NotFound("no such admin endpoint; see GET /admin/ for the status page".into())
}
