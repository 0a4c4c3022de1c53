//! [`CheckpointPolicy`]: when to snapshot state and compact the log.

use levee_policy::{CheckpointAction, CheckpointInterval, LogStats};
use serde_json::{Value, json};

use super::Decided;
use super::guarded::Guarded;
use super::spec::{PolicyKindSpec, replay_with};
use super::tables::TableCache;
use crate::bound::{BoundPlugin, Called};
use crate::headers::HeaderAllowlist;
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
    type Owned = LogStats;
    const KIND: PolicyKind = PolicyKind::Checkpoint;
    /// Asked only when something happened: every call is kept.
    const RECORD_ONE_IN: u64 = 1;

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

    fn own(stats: &&LogStats, _: &HeaderAllowlist, _: &TableCache) -> LogStats {
        **stats
    }

    fn replay(plugin: &BoundPlugin, stats: &LogStats) -> Called<CheckpointAction> {
        replay_with::<CheckpointKind>(plugin, &stats)
    }

    fn input_json(stats: &LogStats) -> Value {
        json!({
            "records_since_checkpoint": stats.records_since_checkpoint,
            "bytes_since_checkpoint": stats.bytes_since_checkpoint,
            "ms_since_checkpoint": stats.ms_since_checkpoint,
            "total_bytes": stats.total_bytes,
            "oldest_needed_lsn": stats.oldest_needed_lsn,
            "reclaimable_bytes": stats.reclaimable_bytes,
        })
    }

    fn answer_json(action: &CheckpointAction) -> Value {
        json!(Self::decision_kind(action))
    }

    fn decision_kind(action: &CheckpointAction) -> &'static str {
        match action {
            CheckpointAction::None => "none",
            CheckpointAction::Checkpoint => "checkpoint",
            CheckpointAction::CheckpointAndCompact => "checkpoint-and-compact",
        }
    }

    fn agree(live: &CheckpointAction, other: &CheckpointAction) -> bool {
        live == other
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
