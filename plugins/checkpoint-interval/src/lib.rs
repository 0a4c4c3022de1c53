//! The `checkpoint-interval` policy as a component: WIT glue around
//! [`levee_policy::CheckpointInterval`], the same code the host runs as its
//! native checkpoint policy.

wit_bindgen::generate!({
    world: "checkpoint-policy",
    path: "../../wit",
});

use exports::levee::policy::checkpoint::{Action, Guest};
use levee::policy::types::LogStats;
use levee_policy::{CheckpointAction, CheckpointInterval};
use std::cell::RefCell;

thread_local! {
    /// The configured policy; defaults until `configure` succeeds. A later
    /// `configure` replaces it, a failed one leaves it untouched.
    static POLICY: RefCell<CheckpointInterval> = RefCell::new(CheckpointInterval::default());
}

struct CheckpointIntervalPlugin;

impl Guest for CheckpointIntervalPlugin {
    fn configure(config: String) -> Result<(), String> {
        let policy = CheckpointInterval::from_json(&config)?;
        POLICY.with(|slot| *slot.borrow_mut() = policy);
        Ok(())
    }

    fn decide(stats: LogStats) -> Action {
        let stats = levee_policy::LogStats {
            records_since_checkpoint: stats.records_since_checkpoint,
            bytes_since_checkpoint: stats.bytes_since_checkpoint,
            ms_since_checkpoint: stats.ms_since_checkpoint,
            total_bytes: stats.total_bytes,
            oldest_needed_lsn: stats.oldest_needed_lsn,
            reclaimable_bytes: stats.reclaimable_bytes,
        };
        match POLICY.with(|slot| slot.borrow().decide(&stats)) {
            CheckpointAction::None => Action::None,
            CheckpointAction::Checkpoint => Action::Checkpoint,
            CheckpointAction::CheckpointAndCompact => Action::CheckpointAndCompact,
        }
    }
}

export!(CheckpointIntervalPlugin);
