//! levee: an HTTP fault-tolerance middleware host in front of a service's
//! replicas. Consistent-hash routing, retries under a budget, hedging,
//! outlier ejection, quorum writes with hinted handoff, all programmable by
//! sandboxed WebAssembly policy plugins.
//!
//! # Layout
//!
//! Layers, lowest first; a module imports only from layers below its own
//! (`tests/layers.rs` fails the suite otherwise):
//!
//! | layer | what lives there |
//! |---|---|
//! | [`base`] | the clock, metric families, the shutdown signal |
//! | [`config`] | the configuration file: serde data and validation with field paths |
//! | [`upstream`] | the pooled HTTP client (plain and TLS), hop-by-hop hygiene, attempt error classes |
//! | [`cluster`] | the SHA-1 [`cluster::ring`] or rendezvous [`cluster::placement`] and the node set's epoch, node [`cluster::health`], the one probe rule ([`cluster::probe`]), retry [`cluster::budget`], a built [`cluster::service::Service`], the [`cluster::directory`] of services |
//! | [`policy`] | binding plugins or native policies to services, the policy-version header |
//! | [`replication`] | the write plane over `levee_log`: records, hints, handoff, checkpoints, snapshots, service-change records |
//! | [`dataplane`] | inbound validation, the one attempt path and retry gate, the read proxy, the write fan-out, `AppError` |
//! | [`control`] | admin auth rules, the plugin host and store, the drop-in watch, the service-change transaction, plugins from an OCI registry ([`control::oci`]: push, pull by digest, the cache) |
//! | [`api`] | HTTP adapters only: data plane, admin API, status page |
//! | [`app`] | `AppState`, start-up, listeners (TLS termination and reload, HTTP/1.1, HTTP/2, h2c), the tasks it owns, shutdown |
//!
//! The crates below the host: `levee_policy` (policy semantics in plain
//! Rust, the native fallbacks), `levee_plugin` (the wasmtime runtime that
//! runs policy plugins), `levee_log` (the durable log), and
//! `levee_kv_replica` (the test and demo upstream). The `levee` binary's
//! own modules (argument parsing, the demo) are not part of this library.
//!
//! # Where things happen (at most two hops from here)
//! - **The retry decision**: [`dataplane::attempt::RetryGate::decide`]
//!   (host limits, budget, then the policy); the policy itself is
//!   `levee_plugin::RetryPolicy::decide` (plugin, else native
//!   `levee_policy::RetryBackoff`).
//! - **The plugin call**: `levee_plugin::policy` (a guarded policy calls the
//!   bound component through its instance pool, fenced by CPU, memory and
//!   output limits; native on any failure).
//! - **The ring lookup**: [`cluster::service::Service::preference`] →
//!   [`cluster::placement::Placement::preference`] (the ring's
//!   [`cluster::ring::Ring::preference`] or rendezvous'); the read balance
//!   factor reorders a read's plan in [`dataplane::plan::bound_loads`].
//! - **The append + fsync of an acknowledged write**:
//!   [`dataplane::fanout::write`] → `levee_log::Log::append` (group commit;
//!   returns once the record is fdatasynced).
//! - **The hint replay**: [`replication::handoff`] (per-node walks that read
//!   records back from the log and deliver them through
//!   [`replication::deliver`]).
//!
//! # A request's way
//! 0. [`app::listener`] accepts; a TLS listener's [`app::secure`] does the
//!    handshake and picks HTTP/2 or HTTP/1.1 by ALPN; every protocol hands
//!    each request (or stream) to the same data-plane service.
//! 1. [`api::data`] splits `/{service}/{rest}` and finds the service.
//! 2. [`dataplane::inbound::Inbound::read`]: canonical path and routing
//!    key (400), body read within its size, time and buffered-bytes limits
//!    (413, 408, 503), then the in-flight slot (503 when `concurrency_max`
//!    is reached), hop-by-hop headers stripped, request id.
//! 3. Reads go to [`dataplane::proxy::forward`]: ring preference list →
//!    routing policy → attempts → retry gate; optional hedging. Replicated
//!    writes (PUT/POST/PATCH/DELETE) go to [`dataplane::fanout::write`]:
//!    log append → N replicas in parallel, each through the same attempt
//!    path and retry gate → answer at W acks; misses become hints.
//! 4. Errors become [`dataplane::error::AppError`]: JSON `{"error",
//!    "reason"}` with the right status, never internals.
//!
//! The admin listener ([`api::admin_app`]) routes through the request id and
//! [`api::auth`] to the admin API; [`app::serve::serve`] runs both
//! listeners and owns every background task.

// Most layers are crate-private (the binary, the tests and the benches use
// only `app::serve`, `cluster::ring`, `upstream` and, for `levee plugin
// push`, `oci` (`control::oci`)); the layout above names
// them anyway, for `cargo doc --document-private-items`.
#![allow(rustdoc::private_intra_doc_links)]

pub(crate) mod api;
pub mod app;
pub(crate) mod base;
pub mod cluster;
pub(crate) mod control;
pub(crate) mod dataplane;
pub(crate) mod policy;
pub(crate) mod replication;
pub mod upstream;

/// Plugins in an OCI registry (`levee plugin push`).
pub use control::oci;
pub(crate) use levee_config as config;
