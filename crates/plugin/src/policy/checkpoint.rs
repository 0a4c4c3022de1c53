//! [`CheckpointPolicy`]: when to snapshot state and compact the log.

use std::sync::Arc;

use arc_swap::ArcSwap;
use levee_policy::{CheckpointAction, CheckpointInterval, LogStats};

use super::{Decided, Slot};
use crate::bound::BoundPlugin;
use crate::error::LoadError;
use crate::kind::PolicyKind;
use crate::stats::Stats;

/// The guarded checkpoint policy: a bound `checkpoint-policy` plugin, or
/// the native [`CheckpointInterval`].
pub struct CheckpointPolicy {
    slot: Slot,
    native: ArcSwap<CheckpointInterval>,
}

impl CheckpointPolicy {
    pub fn new(native: CheckpointInterval) -> CheckpointPolicy {
        CheckpointPolicy {
            slot: Slot::new(PolicyKind::Checkpoint),
            native: ArcSwap::from_pointee(native),
        }
    }

    /// Atomically replaces the bound plugin (`None`: native only). Refuses
    /// a plugin of another kind. Returns the previous one.
    pub fn bind(
        &self,
        plugin: Option<Arc<BoundPlugin>>,
    ) -> Result<Option<Arc<BoundPlugin>>, LoadError> {
        self.slot.bind(plugin)
    }

    pub fn plugin(&self) -> Option<Arc<BoundPlugin>> {
        self.slot.plugin()
    }

    pub fn set_native(&self, native: CheckpointInterval) {
        self.native.store(Arc::new(native));
    }

    pub fn native(&self) -> Arc<CheckpointInterval> {
        self.native.load_full()
    }

    /// Whether to checkpoint (and compact) now.
    pub fn decide(&self, stats: &LogStats) -> Decided<CheckpointAction> {
        self.slot.decide(
            |plugin| plugin.call_checkpoint(stats),
            || self.native.load().decide(stats),
        )
    }

    pub fn stats(&self) -> Option<Stats> {
        self.slot.stats()
    }

    pub fn native_calls(&self) -> u64 {
        self.slot.native_calls()
    }
}
