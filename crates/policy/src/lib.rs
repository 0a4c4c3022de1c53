//! levee's policy semantics as plain, dependency-light Rust.
//!
//! The same code runs in two places: inside the host as the **native**
//! built-in policies (what serves when no plugin is configured, or when a
//! plugin fails), and inside the example Wasm plugins in `plugins/`, which
//! are thin WIT glue around these functions. One implementation means a
//! plugin built from this crate and the native fallback decide identically
//! on identical inputs, which the host's tests check.
//!
//! Every policy is deterministic: randomness (jitter) is an explicit
//! argument, so the host can seed it and tests can replay it.
//!
//! The request-path entry points take only what they decide on, as the
//! `levee:policy@0.2.0` contract passes it, so a call costs no allocation
//! beyond its answer:
//! - [`RetryBackoff::decide`]`(facts, &outcome, &context, random)`: the
//!   request's scalar [`RequestFacts`] (its idempotency already folded in by
//!   the host), the failed attempt and the host's limits;
//! - [`RouteAffinity::route`]`(facts, &nodes, &candidates)`: the service's
//!   node table ([`NodeInfo`], changed only with the configuration) and the
//!   key's [`Candidate`]s by [`NodeIndex`] with their health;
//! - [`CheckpointInterval::decide`]`(&stats)`;
//! - [`WriteQuorum::decide`]`(&results, &context)`: every replica result
//!   of a write so far, and its W.
//!
//! None of them reads the request's strings; those stay with the host
//! behind [`RequestView`], for plugins that want them.
//!
//! # Layout
//! - [`types`]: mirrors of the WIT (`levee:policy@0.2.0`) records and
//!   variants, and [`RequestView`], what the `request` functions read.
//! - [`limits`]: sizes both sides agree on, and [`limits::PluginLimits`],
//!   the fence around one bound plugin (configured by the host).
//! - [`config`]: JSON config parsing with errors that name the field.
//! - [`retry`]: `retry-backoff`, exponential backoff with full jitter.
//! - [`routing`]: `route-affinity`, ring order, healthy first, zone preference.
//! - [`checkpoint`]: `checkpoint-interval`, every N records / M bytes / T ms.
//! - [`write`]: `write-quorum` (native W-of-N) and `zone-quorum` (W acks
//!   from at least two zones), when a replicated write may be acknowledged.

pub mod checkpoint;
pub mod config;
pub mod limits;
pub mod retry;
pub mod routing;
pub mod types;
pub mod write;

pub use checkpoint::{CheckpointConfig, CheckpointInterval};
pub use config::ConfigError;
pub use retry::{GiveUpReason, RetryBackoff, RetryConfig, RetryPlan, RetryTarget};
pub use routing::{RouteAffinity, RoutingConfig};
pub use types::*;
pub use write::{
    ReplicaResult, WriteContext, WriteDecision, WriteQuorum, WriteResult, ZoneQuorum,
    ZoneQuorumConfig,
};

/// Parses a policy's JSON config, naming the problem on failure. An empty
/// string means "all defaults". See [`config::parse`] for the typed error.
pub fn parse_config<T: serde::de::DeserializeOwned + Default>(json: &str) -> Result<T, String> {
    Ok(config::parse(json)?)
}
