//! [`CheckpointPolicy`]: when to snapshot state and compact the log.

use levee_policy::{CheckpointAction, CheckpointInterval, LogStats};

use super::Decided;
use super::guarded::{Guarded, PolicyKindSpec};
use crate::bound::{BoundPlugin, Called};
use crate::kind::PolicyKind;

/// The checkpoint kind of [`Guarded`].
pub enum CheckpointKind {}

/// The guarded checkpoint policy: a bound `checkpoint-policy` plugin, or
/// the native [`CheckpointInterval`].
pub type CheckpointPolicy = Guarded<CheckpointKind>;

impl PolicyKindSpec for CheckpointKind {
    type Native = CheckpointInterval;
    type NativeEnv = ();
    type Input<'a> = &'a LogStats;
    type Answer = CheckpointAction;
    const KIND: PolicyKind = PolicyKind::Checkpoint;

    fn ask_plugin(plugin: &BoundPlugin, stats: &&LogStats) -> Called<CheckpointAction> {
        plugin.call_checkpoint(stats)
    }

    fn ask_native(native: &CheckpointInterval, _: &(), stats: &&LogStats) -> CheckpointAction {
        native.decide(stats)
    }

    /// Any action is valid: nothing to clean.
    fn sanitize(action: CheckpointAction, _: &&LogStats) -> CheckpointAction {
        action
    }
}

impl CheckpointPolicy {
    /// Native `native` until a plugin is bound.
    pub fn new(native: CheckpointInterval) -> CheckpointPolicy {
        Guarded::with_native(native, ())
    }

    /// Whether to checkpoint (and compact) now.
    pub fn decide(&self, stats: &LogStats) -> Decided<CheckpointAction> {
        self.ask(stats)
    }
}
