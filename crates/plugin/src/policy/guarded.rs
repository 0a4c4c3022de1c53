//! [`Guarded`]: the one guarded policy, generic over its kind.
//!
//! The kinds differ only in what a [`PolicyKindSpec`] says per kind.
//! Everything else (the slot and its kind check, the native fallback and
//! its replacement, quarantine, counters, the recorder of recent calls and
//! the shadow version) is here once, so the kinds cannot drift apart in
//! how they guard.
//!
//! While a plugin is bound, every answered call is recorded (its inputs,
//! the answer, who gave it) in the binding's [`Recorder`], for trials of a
//! candidate version ([`Guarded::trial`]), and offered to the shadow
//! version if one is set ([`Guarded::set_shadow`]); see those modules for
//! what that costs and why it never blocks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};

use super::compare::{Comparison, Entry};
use super::recorder::Recorder;
use super::shadow::{Shadow, ShadowReport};
use super::spec::PolicyKindSpec;
use super::{Decided, Source};
use crate::bound::{BoundPlugin, Called};
use crate::error::LoadError;
use crate::stats::Stats;

/// Whether this call is the one in `one_in` to record: a per-thread
/// counter, so sampling costs no shared cache line.
fn sample(one_in: u64) -> bool {
    thread_local! {
        static CALLS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }
    one_in <= 1
        || CALLS.with(|calls| {
            let n = calls.get().wrapping_add(1);
            calls.set(n);
            n % one_in == 0
        })
}

/// A guarded policy of kind `K`: a bound plugin of that kind, or the
/// native `K::Native`. Use it as [`super::RetryPolicy`],
/// [`super::RoutingPolicy`] or [`super::CheckpointPolicy`].
pub struct Guarded<K: PolicyKindSpec> {
    plugin: ArcSwapOption<BoundPlugin>,
    native: ArcSwap<K::Native>,
    native_env: K::NativeEnv,
    native_calls: AtomicU64,
    shadow: ArcSwapOption<Shadow<K>>,
    recorder: Recorder<K>,
}

impl<K: PolicyKindSpec> Guarded<K> {
    /// Native `native` until a plugin is bound.
    pub(super) fn with_native(native: K::Native, native_env: K::NativeEnv) -> Guarded<K> {
        Guarded {
            plugin: ArcSwapOption::empty(),
            native: ArcSwap::from_pointee(native),
            native_env,
            native_calls: AtomicU64::new(0),
            shadow: ArcSwapOption::empty(),
            recorder: Recorder::default(),
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
        let Some(plugin) = guard.as_deref() else {
            self.native_calls.fetch_add(1, Ordering::Relaxed);
            let value = K::sanitize(self.ask_native(&input), &input);
            return Decided {
                value,
                source: Source::Native,
                elapsed: None,
            };
        };
        let (value, source, elapsed) = self.ask_bound(plugin, &input);
        let value = K::sanitize(value, &input);
        self.record(plugin, &input, &value, &source);
        Decided {
            value,
            source,
            elapsed,
        }
    }

    /// Keeps the call for trials (one in `K::RECORD_ONE_IN`) and offers
    /// it to the shadow (every call), if any. Neither: no allocation.
    fn record(
        &self,
        plugin: &BoundPlugin,
        input: &K::Input<'_>,
        value: &K::Answer,
        source: &Source,
    ) {
        let shadow = self.shadow.load();
        let sampled = sample(K::RECORD_ONE_IN);
        if shadow.is_none() && !sampled {
            return;
        }
        let entry = Arc::new(Entry {
            input: K::own(input, plugin.headers(), &self.recorder.tables),
            live: value.clone(),
            source: source.clone(),
        });
        if let Some(shadow) = shadow.as_deref() {
            shadow.offer(entry.clone());
        }
        if sampled {
            self.recorder.push(entry);
        }
    }

    /// Sets (or with `None` clears) the shadow version: `plugin` bound
    /// with this binding's config, limits and headers. Refuses another
    /// kind. Its counts start from zero.
    pub fn set_shadow(&self, plugin: Option<Arc<BoundPlugin>>) -> Result<(), LoadError> {
        let shadow = plugin.map(Shadow::start).transpose()?;
        self.shadow.store(shadow.map(Arc::new));
        Ok(())
    }

    /// What the shadow has counted so far, if one is set.
    pub fn shadow_report(&self) -> Option<ShadowReport> {
        self.shadow.load().as_deref().map(Shadow::report)
    }

    /// How many recent calls a trial would replay.
    pub fn recorded_calls(&self) -> usize {
        self.recorder.len()
    }

    /// Replays the recorded calls on `candidate` (bound like the live
    /// version) and compares its answers with the live ones. **Blocking**:
    /// at most [`super::RECORDED_CALLS_MAX`] calls, each within the
    /// candidate's own CPU deadline.
    pub fn trial(&self, candidate: &BoundPlugin) -> Result<Comparison, LoadError> {
        if candidate.kind() != K::KIND {
            return Err(LoadError::WrongWorld {
                expected: K::KIND,
                exports: candidate.component().exports().to_vec(),
            });
        }
        let mut comparison = Comparison::default();
        for entry in self.recorder.snapshot() {
            let answer = K::replay(candidate, &entry.input).result;
            comparison.add::<K>(&entry, &answer);
        }
        Ok(comparison)
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
