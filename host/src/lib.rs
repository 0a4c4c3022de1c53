//! levee: an HTTP fault-tolerance middleware host in front of a service's
//! replicas. Consistent-hash routing, retries under a budget, hedging,
//! outlier ejection, quorum writes with hinted handoff, all programmable by
//! sandboxed WebAssembly policy plugins.
//!
//! # Layout
//!
//! Start-up (`levee serve --config FILE`):
//! [`cli`] parses arguments → [`config`] loads and validates the JSON →
//! [`state::AppState::new`] builds every [`service::Service`] (each with
//! its [`ring`], node table with [`health`], retry [`budget`] and bound
//! policies) → [`listener::serve`] runs [`data_app`] and [`admin_app`] on
//! their listeners (header-read timeout, connection cap, graceful drain).
//!
//! A data-plane request (`/{service}/{rest}` on the data listener):
//! 1. [`api::data`] splits the path, finds the service (404 if unknown).
//! 2. [`inbound::Inbound::read`] validates and buffers it: in-flight slot
//!    (503 when `concurrency_max` is reached), routing key (400 when
//!    missing), body limit (413), hop-by-hop headers stripped, request id.
//! 3. Reads and other single-replica requests go to [`proxy::forward`]:
//!    ring preference list → routing policy → attempts through the pooled
//!    [`upstream`] client → retry policy, within the host's limits (total
//!    deadline, per-try timeout, max attempts, retry budget, idempotency);
//!    optional hedging. Health is updated by every attempt.
//!    Replicated writes (PUT/DELETE, [`api::data::is_replicated_write`])
//!    are dispatched to the write path (log append → fan-out → W acks).
//! 4. Errors anywhere become [`api::error::AppError`]: JSON
//!    `{"error", "reason"}` with the right status, never internals.
//!
//! Modules:
//! - [`cli`]: the `levee` command line; [`listener`]: the accept loop.
//! - [`config`]: configuration types, defaults, validation with field paths.
//! - [`state`]: [`state::AppState`], shared by handlers and tasks.
//! - [`service`]: one configured service; [`ring`]: SHA-1 consistent hash.
//! - [`inbound`]: request validation; [`proxy`]: the read path.
//! - [`upstream`]: pooled client, hop-by-hop hygiene, error classes.
//! - [`health`]: passive ejection and active checks; [`budget`]: retry budget.
//! - [`clock`]: the monotonic millisecond clock.
//! - [`replica`]: the `kv-replica` test/demo upstream.
//! - [`api`]: handlers and the error type.

pub mod api;
pub mod budget;
pub mod cli;
pub mod clock;
pub mod config;
pub mod health;
pub mod inbound;
pub mod listener;
pub mod proxy;
pub mod replica;
pub mod ring;
pub mod service;
pub mod state;
pub mod upstream;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

pub use state::AppState;

/// The data-plane router (`/{service}/...` and `/_levee/healthz`).
pub fn data_app(state: AppState) -> Router {
    api::data::router(state)
}

/// The admin router. Minimal until the control plane lands: `GET /healthz`
/// (200 when ready, 503 otherwise).
pub fn admin_app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(admin_healthz))
        .with_state(state)
}

async fn admin_healthz(State(state): State<AppState>) -> Response {
    if state.is_ready() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        api::error::AppError::Unavailable("levee is not ready".into()).into_response()
    }
}
