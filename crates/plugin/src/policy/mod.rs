//! The guarded policies the request path calls: [`RetryPolicy`],
//! [`RoutingPolicy`], [`CheckpointPolicy`].
//!
//! Each holds an optional [`BoundPlugin`] in an [`ArcSwapOption`] plus the
//! native policy of the same kind, and always returns an answer:
//! - no plugin bound → native ([`Source::Native`]);
//! - plugin quarantined → native, without calling it
//!   ([`Source::Quarantined`]);
//! - plugin fails (trap, deadline, memory, invalid answer, pool exhausted)
//!   → native for this call, failure counted ([`Source::Fallback`]);
//! - otherwise the plugin's answer ([`Source::Plugin`]).
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

mod checkpoint;
mod retry;
mod routing;

pub use checkpoint::CheckpointPolicy;
pub use retry::RetryPolicy;
pub use routing::RoutingPolicy;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwapOption;
use serde::Serialize;

use crate::bound::BoundPlugin;
use crate::error::{Failure, LoadError};
use crate::kind::PolicyKind;
use crate::stats::Stats;

/// A policy answer and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided<T> {
    pub value: T,
    pub source: Source,
}

/// Who answered a policy call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "source", rename_all = "kebab-case")]
pub enum Source {
    /// The bound plugin answered.
    Plugin { name: Arc<str>, version: Arc<str> },
    /// No plugin is bound: the native policy answered.
    Native,
    /// The plugin failed this call; the native policy answered.
    Fallback {
        name: Arc<str>,
        version: Arc<str>,
        failure: Failure,
    },
    /// The plugin version is quarantined; the native policy answered.
    Quarantined { name: Arc<str>, version: Arc<str> },
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

/// The plugin slot shared by the three guarded policies.
struct Slot {
    kind: PolicyKind,
    plugin: ArcSwapOption<BoundPlugin>,
    native_calls: AtomicU64,
}

impl Slot {
    fn new(kind: PolicyKind) -> Slot {
        Slot {
            kind,
            plugin: ArcSwapOption::empty(),
            native_calls: AtomicU64::new(0),
        }
    }

    /// Swaps in `plugin` (or none); returns the previous one.
    fn bind(
        &self,
        plugin: Option<Arc<BoundPlugin>>,
    ) -> Result<Option<Arc<BoundPlugin>>, LoadError> {
        if let Some(plugin) = &plugin
            && plugin.kind() != self.kind
        {
            return Err(LoadError::WrongWorld {
                expected: self.kind,
                exports: plugin.component().exports().to_vec(),
            });
        }
        Ok(self.plugin.swap(plugin))
    }

    fn plugin(&self) -> Option<Arc<BoundPlugin>> {
        self.plugin.load_full()
    }

    /// Asks the plugin (if bound and healthy), else native.
    fn decide<T>(
        &self,
        ask_plugin: impl FnOnce(&BoundPlugin) -> Result<T, Failure>,
        ask_native: impl FnOnce() -> T,
    ) -> Decided<T> {
        // One load per call: the call is answered by this version only.
        let guard = self.plugin.load();
        let Some(plugin) = guard.as_deref() else {
            self.native_calls.fetch_add(1, Ordering::Relaxed);
            return Decided {
                value: ask_native(),
                source: Source::Native,
            };
        };
        let name = plugin.component().name_arc().clone();
        let version = plugin.component().version_arc().clone();
        if plugin.is_quarantined() {
            plugin.record_quarantined_call();
            return Decided {
                value: ask_native(),
                source: Source::Quarantined { name, version },
            };
        }
        match ask_plugin(plugin) {
            Ok(value) => Decided {
                value,
                source: Source::Plugin { name, version },
            },
            Err(failure) => Decided {
                value: ask_native(),
                source: Source::Fallback {
                    name,
                    version,
                    failure,
                },
            },
        }
    }

    fn stats(&self) -> Option<Stats> {
        self.plugin.load().as_deref().map(BoundPlugin::stats)
    }

    fn native_calls(&self) -> u64 {
        self.native_calls.load(Ordering::Relaxed)
    }
}
