//! [`Guarded`]: the one guarded policy, generic over its kind.
//!
//! The three kinds differ only in their native policy, their inputs, which
//! export they call and how the answer is cleaned; a [`PolicyKindSpec`]
//! says that much per kind. Everything else (the slot and its kind check,
//! the native fallback and its replacement, quarantine, counters) is here
//! once, so the three kinds cannot drift apart in how they guard.
//!
//! [`PolicyKindSpec`] is public but unreachable from outside the crate (a
//! sealed trait): only the three kinds here implement it, and its calls
//! into the plugin are not an API.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};

use super::{Decided, Source};
use crate::bound::{BoundPlugin, Called};
use crate::error::LoadError;
use crate::kind::PolicyKind;
use crate::stats::Stats;

/// What one policy kind contributes to [`Guarded`].
pub trait PolicyKindSpec {
    /// The native policy, which answers whenever the plugin does not.
    type Native: Send + Sync;
    /// What the native policy needs besides itself (retry: the random
    /// source of its jitter); `()` for none.
    type NativeEnv: Send + Sync;
    /// The inputs of one call, already bounded for the plugin.
    type Input<'a>;
    /// The answer, plugin's or native.
    type Answer;
    /// The only kind of plugin [`Guarded::bind`] accepts.
    const KIND: PolicyKind;

    /// Calls the plugin's export; the answer is not yet sanitized.
    fn ask_plugin(plugin: &BoundPlugin, input: &Self::Input<'_>) -> Called<Self::Answer>;

    /// Asks the native policy.
    fn ask_native(
        native: &Self::Native,
        env: &Self::NativeEnv,
        input: &Self::Input<'_>,
    ) -> Self::Answer;

    /// The host's invariants on every answer, whoever gave it.
    fn sanitize(answer: Self::Answer, input: &Self::Input<'_>) -> Self::Answer;
}

/// A guarded policy of kind `K`: a bound plugin of that kind, or the
/// native `K::Native`. Use it as [`super::RetryPolicy`],
/// [`super::RoutingPolicy`] or [`super::CheckpointPolicy`].
pub struct Guarded<K: PolicyKindSpec> {
    plugin: ArcSwapOption<BoundPlugin>,
    native: ArcSwap<K::Native>,
    native_env: K::NativeEnv,
    native_calls: AtomicU64,
}

impl<K: PolicyKindSpec> Guarded<K> {
    /// Native `native` until a plugin is bound.
    pub(super) fn with_native(native: K::Native, native_env: K::NativeEnv) -> Guarded<K> {
        Guarded {
            plugin: ArcSwapOption::empty(),
            native: ArcSwap::from_pointee(native),
            native_env,
            native_calls: AtomicU64::new(0),
        }
    }

    /// Atomically replaces the bound plugin (`None`: native only). Refuses
    /// a plugin of another kind. Returns the previous one.
    pub fn bind(
        &self,
        plugin: Option<Arc<BoundPlugin>>,
    ) -> Result<Option<Arc<BoundPlugin>>, LoadError> {
        if let Some(plugin) = &plugin
            && plugin.kind() != K::KIND
        {
            return Err(LoadError::WrongWorld {
                expected: K::KIND,
                exports: plugin.component().exports().to_vec(),
            });
        }
        Ok(self.plugin.swap(plugin))
    }

    /// The bound plugin, if any.
    pub fn plugin(&self) -> Option<Arc<BoundPlugin>> {
        self.plugin.load_full()
    }

    /// Replaces the native fallback (e.g. after a config change).
    pub fn set_native(&self, native: K::Native) {
        self.native.store(Arc::new(native));
    }

    /// The native fallback.
    pub fn native(&self) -> Arc<K::Native> {
        self.native.load_full()
    }

    /// The bound plugin's counters, if one is bound.
    pub fn stats(&self) -> Option<Stats> {
        self.plugin.load().as_deref().map(BoundPlugin::stats)
    }

    /// Calls answered natively because no plugin was bound.
    pub fn native_calls(&self) -> u64 {
        self.native_calls.load(Ordering::Relaxed)
    }

    /// Asks the plugin (if bound and healthy), else native; sanitizes the
    /// answer either way.
    pub(super) fn ask(&self, input: K::Input<'_>) -> Decided<K::Answer> {
        // One load per call: the call is answered by this version only.
        let guard = self.plugin.load();
        let (value, source, elapsed) = match guard.as_deref() {
            Some(plugin) => self.ask_bound(plugin, &input),
            None => {
                self.native_calls.fetch_add(1, Ordering::Relaxed);
                (self.ask_native(&input), Source::Native, None)
            }
        };
        Decided {
            value: K::sanitize(value, &input),
            source,
            elapsed,
        }
    }

    /// The bound plugin's answer, or native's when it is quarantined or
    /// fails this call; and how long the plugin call took, if one was made.
    fn ask_bound(
        &self,
        plugin: &BoundPlugin,
        input: &K::Input<'_>,
    ) -> (K::Answer, Source, Option<Duration>) {
        // Interned: copying them costs no atomic operation.
        let (name, version) = (
            plugin.component().name_tag(),
            plugin.component().version_tag(),
        );
        if plugin.is_quarantined() {
            plugin.record_quarantined_call();
            return (
                self.ask_native(input),
                Source::Quarantined { name, version },
                None,
            );
        }
        let Called { result, elapsed } = K::ask_plugin(plugin, input);
        match result {
            Ok(value) => (value, Source::Plugin { name, version }, elapsed),
            Err(failure) => (
                self.ask_native(input),
                Source::Fallback {
                    name,
                    version,
                    failure,
                },
                elapsed,
            ),
        }
    }

    fn ask_native(&self, input: &K::Input<'_>) -> K::Answer {
        K::ask_native(&self.native.load(), &self.native_env, input)
    }
}
