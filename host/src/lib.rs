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
//!    Replicated writes (PUT/POST/PATCH/DELETE,
//!    [`api::data::is_replicated_write`]) go to [`write::fanout::write`]:
//!    log append → fan-out to the key's N replicas → answer at W acks;
//!    replicas that missed it get it later by hinted handoff.
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
//! - [`write`]: the write path (log append → fan-out → W acks), the hint
//!   ledger and hinted handoff, checkpoints and start-up recovery of both.
//! - [`demo`]: `levee demo`, the narrated failure scenario.
//!
//! The control plane (admin listener, [`admin_app`]): [`api::admin`] routes
//! through [`request_id`] and [`api::auth`] (bearer token) to the admin API
//! ([`api::admin_plugins`], [`api::admin_services`], [`api::admin_log`],
//! [`api::admin_state`], [`api::status_page`]). [`control`] holds its state
//! and starts it; [`plugins`] loads, checks, persists ([`plugins_store`]) and
//! hot-swaps plugins, also from the drop-in directory ([`watch`]);
//! [`service_changes`] makes admin service changes durable in the log;
//! [`metrics`] defines every Prometheus metric; [`policy_header`] reports who
//! decided a request's retries; [`boot`] answers probes while recovery runs;
//! [`shutdown`] drains, checkpoints and flushes on SIGTERM.

pub mod api;
pub mod boot;
pub mod budget;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod demo;
pub mod health;
pub mod inbound;
pub mod listener;
pub mod metrics;
pub mod plugins;
pub mod plugins_store;
pub mod policy_header;
pub mod proxy;
pub mod replica;
pub mod request_id;
pub mod ring;
pub mod service;
pub mod service_changes;
pub mod shutdown;
pub mod state;
pub mod upstream;
pub mod watch;
pub mod write;

use axum::Router;

pub use state::AppState;

/// The data-plane router (`/{service}/...` and `/_levee/healthz`).
pub fn data_app(state: AppState) -> Router {
    // Every data-plane request gets an `x-request-id` and a tracing span
    // carrying it, before anything else looks at it.
    api::data::router(state).layer(axum::middleware::from_fn(request_id::assign))
}

/// The admin router: probes, `/metrics`, the status page and the admin API
/// behind the bearer token (see [`api::admin`]).
pub fn admin_app(state: AppState) -> Router {
    api::admin::router(state)
}
