//! [`PolicyKindSpec`]: what one policy kind contributes to
//! [`Guarded`](super::Guarded), its recorder, its shadow and its trials.
//!
//! The four kinds differ only in their native policy, their inputs, which
//! export they call, how the answer is cleaned, and how a call's inputs
//! are kept for a later replay; everything else is written once, generic
//! over this trait.
//!
//! Public but unreachable from outside the crate (a sealed trait): only
//! the kinds here implement it, and its calls into the plugin are not an
//! API.

use serde_json::Value;

use super::tables::TableCache;
use crate::bound::{BoundPlugin, Called};
use crate::headers::HeaderAllowlist;
use crate::kind::PolicyKind;

/// What one policy kind contributes to [`super::Guarded`].
pub trait PolicyKindSpec: 'static {
    /// The native policy, which answers whenever the plugin does not.
    type Native: Send + Sync;
    /// What the native policy needs besides itself (retry: the random
    /// source of its jitter); `()` for none.
    type NativeEnv: Send + Sync;
    /// The inputs of one call, already bounded for the plugin.
    type Input<'a>;
    /// The answer, plugin's or native.
    type Answer: Clone + Send + Sync + 'static;
    /// One call's inputs, owned, for a replay on another version (shadow,
    /// trial): what the plugin could read, nothing more.
    type Owned: Send + Sync + 'static;
    /// The only kind of plugin [`super::Guarded::bind`] accepts.
    const KIND: PolicyKind;
    /// One call in this many is recorded for trials (1: every call). A
    /// kind asked on every request samples, so recording stays off the
    /// per-request cost; a kind asked only on failures or writes keeps
    /// every call, because those rare calls are the ones worth trying.
    const RECORD_ONE_IN: u64;

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

    /// Keeps what `input` lets a plugin bound with `headers` read.
    fn own(input: &Self::Input<'_>, headers: &HeaderAllowlist, tables: &TableCache) -> Self::Owned;

    /// Asks `plugin` again with recorded inputs; the answer is sanitized
    /// as a live one would be.
    fn replay(plugin: &BoundPlugin, owned: &Self::Owned) -> Called<Self::Answer>;

    /// The recorded inputs as the admin API shows them.
    fn input_json(owned: &Self::Owned) -> Value;

    /// An answer as the admin API shows it.
    fn answer_json(answer: &Self::Answer) -> Value;

    /// The kind of decision (`retry`, `give-up`, `wait`, ...): agreement
    /// is counted per kind of the live decision.
    fn decision_kind(answer: &Self::Answer) -> &'static str;

    /// Whether `other` makes the same decision as `live`. What only a
    /// random draw decides (a retry's jittered delay) or what is prose (a
    /// give-up's reason) does not count: a replay cannot draw the same
    /// random numbers, and two versions may word a reason differently.
    fn agree(live: &Self::Answer, other: &Self::Answer) -> bool;
}

/// Asks `plugin` with `input` and cleans its answer the way a live call's
/// is cleaned (shared by every kind's `replay`).
pub(super) fn replay_with<K: PolicyKindSpec>(
    plugin: &BoundPlugin,
    input: &K::Input<'_>,
) -> Called<K::Answer> {
    let called = K::ask_plugin(plugin, input);
    called.map(|answer| K::sanitize(answer, input))
}
