//! levee's sandboxed policy plugin runtime.
//!
//! Policies (retry, routing, checkpoint) can be replaced at run time by
//! WebAssembly components implementing a world of `wit/levee-policy.wit`.
//! This crate loads them safely and calls them on the request path:
//! compiled once per version (SHA-256 of the bytes) and cached on disk,
//! validated against the world on load, instantiated from a bounded pool,
//! fenced by CPU, memory and output-size limits, and always backed by the
//! native policy of the same kind, which answers whenever a plugin is
//! absent, fails, or has been quarantined after repeated failures.
//!
//! # Using it
//! ```no_run
//! use std::sync::Arc;
//! use levee_plugin::{Limits, NodeTable, RetryPolicy, Runtime, RuntimeOptions};
//! use levee_policy::{AttemptOutcome, AttemptResult, Method, NodeInfo, RequestFacts, RetryContext};
//! # struct Request;
//! # impl levee_policy::RequestView for Request {
//! #     fn service(&self) -> &str { "kv" }
//! #     fn method(&self) -> &str { "GET" }
//! #     fn path(&self) -> &str { "/users/42" }
//! #     fn routing_key(&self) -> &str { "users" }
//! #     fn header(&self, _: &str) -> Option<&str> { None }
//! # }
//! # fn demo(bytes: &[u8], data_dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
//! // Once per process.
//! let runtime = Runtime::new(RuntimeOptions::for_data_dir(data_dir))?;
//! // Per service: the guarded policy, native until a plugin is bound, and
//! // the node table (once per configuration; calls name nodes by index).
//! let retry = RetryPolicy::new(&runtime, levee_policy::RetryBackoff::default());
//! let nodes = Arc::new(NodeTable::new(vec![
//!     NodeInfo { id: "a".into(), address: "http://127.0.0.1:7001".into(), zone: None, weight: 1 },
//!     NodeInfo { id: "b".into(), address: "http://127.0.0.1:7002".into(), zone: None, weight: 1 },
//! ])?);
//! // Loading is blocking: do it in `spawn_blocking`.
//! let component = runtime.compile_as("retry-backoff", bytes, levee_plugin::PolicyKind::Retry)?;
//! let bound = component.bind(&runtime, r#"{"max_attempts": 4}"#, Limits::default())?;
//! retry.bind(Some(bound))?; // atomic hot swap
//! // On the request path (synchronous, microseconds, never fails). The
//! // request's strings stay with the caller: the plugin reads what it
//! // needs through the `request` functions, lent for this call only.
//! let facts = RequestFacts { method: Method::Get, idempotent: true };
//! let outcome = AttemptOutcome {
//!     node: 0, attempt: 1, result: AttemptResult::Status(503), elapsed_ms: 3, retry_after_ms: None,
//! };
//! let context = RetryContext {
//!     budget_remaining: 10, deadline_remaining_ms: 900, max_attempts: 3, candidates: &[0, 1],
//! };
//! let decided = retry.decide(&Request, facts, &nodes, &outcome, &context);
//! println!("{:?} from {}", decided.value, decided.source.label());
//! # Ok(()) }
//! ```
//!
//! # Layout
//! Modules depend one way only: each uses only modules listed before it,
//! never a later one, so the compile side (`instance`, `component`,
//! `runtime`) knows nothing of pooling, binding or policies.
//! 1. Foundations: [`kind`] ([`PolicyKind`]),
//!    [`error`] ([`LoadError`], [`Failure`], [`RuntimeError`],
//!    [`RegistryError`]), [`engine`] (the wasmtime configuration,
//!    [`EngineCaps`], the epoch ticker), [`limits`] ([`Limits`], the fence
//!    around one plugin, re-exported from `levee_policy`, and
//!    [`ValidateLimits`], its check against the engine), [`env`](mod@env)
//!    ([`HostEnv`], the seedable clock and random source), [`headers`]
//!    ([`HeaderAllowlist`], the request headers a binding's plugin may
//!    read), [`plan_cache`]
//!    (the route-plan cache of routing plugins that declare
//!    `cacheable-by-health-flags`, and [`RouteTraits`]), [`stats`]
//!    ([`Stats`] snapshots and the live counters), [`tag`] ([`Tag`], the
//!    interned name and version every answer carries), `hmac`, `validate`
//!    (header, world and import checks on load), `bindings` (the
//!    `bindgen!` output, private).
//! 2. `host`: the store data, the WIT `host` import (log, clock, rng) and
//!    the `request` functions (the caller's request, lent for one call);
//!    `convert`, `sanitize`: the boundary between WIT types and
//!    `levee_policy` types, and the host invariants on every answer;
//!    [`nodes`] ([`NodeTable`]): a service's node table, given to each
//!    instance once per table through `set-nodes`;
//!    `cache` (on `hmac`): the authenticated on-disk compiled-code cache;
//!    [`wasi`](mod@wasi): WASI 0.2 for language runtimes, linked over a
//!    context that grants nothing.
//! 3. `instance`: the typed world templates and instances, and what a
//!    failed guest call means (trap, timeout, memory).
//! 4. [`component`]: [`Component`], one compiled version; quarantine
//!    state.
//! 5. [`runtime`]: [`Runtime`] and [`RuntimeOptions`]: engine, ticker,
//!    linker, compile + caches.
//! 6. `pool`: the per-binding instance pool (it holds the [`Runtime`] so
//!    the epoch ticker outlives every binding).
//! 7. `bound`: [`BoundPlugin`], a version bound to a config and limits,
//!    made by [`Component::bind`] (defined here, so `component` stays
//!    below the pool).
//! 8. [`policy`]: one generic guarded policy, [`policy::Guarded`], as
//!    [`RetryPolicy`], [`RoutingPolicy`], [`CheckpointPolicy`],
//!    [`WritePolicy`]; [`Decided`], [`Source`]; each binding's recorder of
//!    recent calls (trials of a candidate version, [`policy::Guarded::trial`])
//!    and its optional shadow version ([`policy::Guarded::set_shadow`],
//!    [`policy::ShadowReport`]), compared by [`policy::Comparison`].
//! 9. [`registry`]: [`Registry`], named plugins, history, rollback;
//!    [`check`](mod@check): what `levee plugin check` reports.

mod bindings;
mod bound;
mod cache;
pub mod check;
pub mod component;
mod convert;
pub mod engine;
pub mod env;
pub mod error;
pub mod headers;
mod hmac;
mod host;
mod instance;
pub mod kind;
pub mod limits;
pub mod nodes;
pub mod plan_cache;
pub mod policy;
mod pool;
pub mod registry;
pub mod runtime;
mod sanitize;
pub mod stats;
pub mod tag;
mod validate;
pub mod wasi;

pub use bound::BoundPlugin;
pub use check::{CheckReport, check};
pub use component::{CacheOutcome, Component, ComponentInfo};
pub use engine::EngineCaps;
pub use env::{Clock, HostEnv, HostRng, ManualClock, SystemClock};
pub use error::{Failure, LoadError, RegistryError, RuntimeError};
pub use headers::HeaderAllowlist;
pub use kind::PolicyKind;
pub use limits::{LOG_MESSAGE_BYTES_MAX, Limits, ValidateLimits, hostcall_fuel_bytes};
pub use nodes::{NodeTable, NodeTableTooLarge};
pub use plan_cache::{PLAN_CACHE_ENTRIES_MAX, PlanCacheStats, RouteTraits};
pub use policy::{CheckpointPolicy, Decided, RetryPolicy, RoutingPolicy, Source, WritePolicy};
pub use registry::{PluginInfo, PluginStatus, Registry};
pub use runtime::{Runtime, RuntimeOptions};
pub use stats::{CounterSnapshot, Stats};
pub use tag::Tag;
