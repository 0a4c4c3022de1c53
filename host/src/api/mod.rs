//! HTTP handlers, grouped by listener.
//!
//! - [`data`]: the data plane (`/{service}/...`), on the data listener.
//! - [`state`]: `AppState`, the parts of levee the adapters share.
//! - [`request_id`]: `x-request-id` on every data-plane request.
//!
//! The admin listener (control plane):
//! - [`admin`]: the admin router, probes and metrics; [`auth`]: bearer
//!   token; [`admin_error`]: `AdminError` (JSON, 422 with field errors).
//! - [`admin_plugins`], [`admin_services`], [`admin_log`]: the admin API;
//!   [`admin_oci`]: a plugin version pulled from an OCI registry.
//! - [`admin_state`]: `GET /admin/state`; [`status_page`]: `GET /admin/`.
//! - [`admin_cluster`]: `GET /admin/cluster` and service changes in
//!   cluster mode (written to etcd).

pub mod admin;
pub mod admin_cluster;
pub mod admin_error;
pub mod admin_log;
pub mod admin_oci;
pub mod admin_plugins;
pub mod admin_services;
pub mod admin_shadow;
pub mod admin_state;
pub mod auth;
pub mod body;
pub mod data;
pub mod request_id;
pub mod state;
pub mod status_page;
pub mod views;

use axum::Router;

/// The data plane (`/{service}/...` and `/_levee/healthz`) as a hyper
/// service. Every data-plane request gets an `x-request-id` and a tracing
/// span carrying it, before anything else looks at it (inline, not as a
/// layer: see [`data`]).
pub fn data_app(
    state: state::AppState,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future: Send,
> + Clone
+ Send
+ 'static {
    data::service(state)
}

/// The admin router: probes, `/metrics`, the status page and the admin API
/// behind the bearer token (see [`admin`]).
pub fn admin_app(state: state::AppState) -> Router {
    admin::router(state)
}
