//! The guarded policies the request path calls: [`RetryPolicy`],
//! [`RoutingPolicy`], [`CheckpointPolicy`], [`WritePolicy`].
//!
//! All four are one type, [`Guarded`], instantiated per kind: each holds
//! an optional [`BoundPlugin`](crate::BoundPlugin) in an `ArcSwapOption` plus the native policy
//! of the same kind, and always returns an answer:
//! - no plugin bound → native ([`Source::Native`]);
//! - plugin quarantined → native, without calling it
//!   ([`Source::Quarantined`]);
//! - plugin fails (trap, deadline, memory, invalid answer, pool exhausted)
//!   → native for this call, failure counted ([`Source::Fallback`]);
//! - otherwise the plugin's answer ([`Source::Plugin`]); for a routing
//!   plugin that declared `cacheable-by-health-flags`, possibly a plan it
//!   gave before for the same facts, table and candidates (its binding's
//!   [`crate::plan_cache`]), without a call.
//!
//! Either way the answer passes through the `sanitize` module before it is
//! returned.
//!
//! # Hot swap
//! `bind` stores a new `Arc<BoundPlugin>` atomically. A call loads the
//! current one once at its start and uses only that one, so every call is
//! answered by exactly one version; the previous version is dropped (with
//! its instances) when the last call holding it finishes.
//!
//! # Calling from async code
//! A call is synchronous and bounded: microseconds normally, at most the
//! plugin's `call_timeout_ms` plus one epoch tick (2-3 ms by default)
//! before the deadline stops it, or one instantiation when the pool must
//! grow. That is short enough to run inline on an async worker, like any
//! other small CPU work; `spawn_blocking` would cost more than the call.
//!
//! # Recorder, shadow, trial
//! While a plugin is bound, each call is recorded for trials of a
//! candidate version (`recorder`, [`Guarded::trial`]) and offered to a
//! shadow version, if one is set (`shadow`, [`Guarded::set_shadow`]);
//! `compare` counts how the other version's answers agree.
//!
//! # Adding a kind
//! A kind is a marker type implementing the (sealed) `PolicyKindSpec` in
//! its own file, a type alias `Guarded<ThatKind>`, and an inherent impl on
//! the alias with its constructor and its call method (whose signature is
//! the kind's own). See `retry.rs`.

mod checkpoint;
mod compare;
mod guarded;
mod recorded_request;
mod recorder;
mod retry;
mod routing;
mod shadow;
mod spec;
mod tables;
mod write;

pub use checkpoint::{CheckpointKind, CheckpointPolicy};
pub use compare::{Comparison, DISAGREEMENTS_KEPT_MAX, DecisionCounts, Disagreement};
pub use guarded::Guarded;
pub use recorded_request::{RECORDED_STRING_BYTES_MAX, RecordedRequest};
pub use recorder::RECORDED_CALLS_MAX;
pub use retry::{RetryKind, RetryPolicy};
pub use routing::{RoutingKind, RoutingPolicy};
pub use shadow::{SHADOW_CALLS_PER_SECOND_MAX, SHADOW_QUEUE_DEPTH_MAX, ShadowReport};
pub use write::{WriteKind, WritePolicy};

use std::time::Duration;

use serde::Serialize;

use crate::error::Failure;
use crate::tag::Tag;

/// A policy answer, where it came from, and what the plugin call took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided<T> {
    pub value: T,
    pub source: Source,
    /// How long the plugin call took (lease, call, validation), when one
    /// was made (sources `Plugin` and `Fallback`); the native fallback's
    /// own time is not included. `None` when no plugin code ran: native,
    /// quarantined, or a route plan from the plan cache (source `Plugin`,
    /// see [`crate::plan_cache`]). It is the same measurement the plugin's
    /// [`Stats`](crate::Stats) latency counts, so a caller's metrics need
    /// no clock reads of their own.
    pub elapsed: Option<Duration>,
}

/// Who answered a policy call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "source", rename_all = "kebab-case")]
pub enum Source {
    /// The bound plugin answered.
    Plugin { name: Tag, version: Tag },
    /// No plugin is bound: the native policy answered.
    Native,
    /// The plugin failed this call; the native policy answered.
    Fallback {
        name: Tag,
        version: Tag,
        failure: Failure,
    },
    /// The plugin version is quarantined; the native policy answered.
    Quarantined { name: Tag, version: Tag },
}

impl Source {
    /// The plugin version involved, if any.
    pub fn plugin_version(&self) -> Option<&str> {
        match self {
            Source::Plugin { version, .. }
            | Source::Fallback { version, .. }
            | Source::Quarantined { version, .. } => Some(version),
            Source::Native => None,
        }
    }

    /// The version whose code produced the answer (`None` when native did).
    pub fn deciding_version(&self) -> Option<&str> {
        match self {
            Source::Plugin { version, .. } => Some(version),
            _ => None,
        }
    }

    /// A short stable label, for metrics: plugin, native, fallback,
    /// quarantined.
    pub fn label(&self) -> &'static str {
        match self {
            Source::Plugin { .. } => "plugin",
            Source::Native => "native",
            Source::Fallback { .. } => "fallback",
            Source::Quarantined { .. } => "quarantined",
        }
    }
}

/// A request's facts as the admin API shows them.
fn facts_json(facts: levee_policy::RequestFacts) -> serde_json::Value {
    serde_json::json!({
        "method": format!("{:?}", facts.method).to_lowercase(),
        "idempotent": facts.idempotent,
    })
}

/// A node index with the node's id and zone, as the admin API shows it.
fn node_json(nodes: &crate::nodes::NodeTable, index: levee_policy::NodeIndex) -> serde_json::Value {
    match nodes.get(index) {
        Some(node) => serde_json::json!({ "index": index, "id": node.id, "zone": node.zone }),
        None => serde_json::json!({ "index": index }),
    }
}
