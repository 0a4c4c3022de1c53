//! `checkpoint-interval`: checkpoint every N records, M bytes or T ms since
//! the last checkpoint, whichever comes first; compact when enough of the
//! log is reclaimable.
//!
//! Why these rules:
//! - **Three triggers, first one wins**: records bound recovery *work*
//!   (records replayed after a crash), bytes bound recovery *I/O*, and time
//!   bounds how stale a checkpoint gets under a trickle of writes.
//! - **Nothing written, nothing to checkpoint**: after an idle stretch the
//!   time trigger alone would snapshot an unchanged state again and again.
//! - **Compaction when `reclaimable_bytes` reaches the threshold**, whether
//!   or not anything was written: segments become reclaimable when replica
//!   hints are delivered, which happens on idle logs too, and the disk space
//!   should come back without waiting for the next write. A checkpoint is
//!   taken with it because compaction may only drop what a checkpoint covers.
//!
//! Every trigger is required to be at least 1; to effectively disable one,
//! set it very high (e.g. `18446744073709551615`).

use crate::config::{self, ConfigError};
use crate::types::*;
use serde::Deserialize;

/// Configuration of `checkpoint-interval`; JSON field names are the same.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// Checkpoint once this many records were appended since the last one.
    pub every_records: u64,
    /// ... or this many bytes ...
    pub every_bytes: u64,
    /// ... or this long passed with at least one record written.
    pub every_ms: u64,
    /// Checkpoint and compact once compaction would free this many bytes.
    pub compact_reclaimable_bytes: u64,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            every_records: 10_000,
            every_bytes: 64 << 20,
            every_ms: 60_000,
            compact_reclaimable_bytes: 64 << 20,
        }
    }
}

impl CheckpointConfig {
    /// Checks every field, naming the one at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fields = [
            ("every_records", self.every_records),
            ("every_bytes", self.every_bytes),
            ("every_ms", self.every_ms),
            ("compact_reclaimable_bytes", self.compact_reclaimable_bytes),
        ];
        match fields.iter().find(|(_, value)| *value == 0) {
            Some((field, _)) => Err(ConfigError::field(field, "must be at least 1")),
            None => Ok(()),
        }
    }
}

/// The `checkpoint-interval` policy.
#[derive(Debug, Clone, Default)]
pub struct CheckpointInterval {
    pub config: CheckpointConfig,
}

impl CheckpointInterval {
    /// A policy from a validated config.
    pub fn new(config: CheckpointConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(CheckpointInterval { config })
    }

    /// Parses and validates a JSON config (empty means defaults).
    pub fn from_json(json: &str) -> Result<Self, String> {
        Ok(Self::new(config::parse(json)?)?)
    }

    pub fn decide(&self, stats: &LogStats) -> CheckpointAction {
        if stats.reclaimable_bytes >= self.config.compact_reclaimable_bytes {
            return CheckpointAction::CheckpointAndCompact;
        }
        let written = stats.records_since_checkpoint > 0 || stats.bytes_since_checkpoint > 0;
        if written && self.interval_elapsed(stats) {
            return CheckpointAction::Checkpoint;
        }
        CheckpointAction::None
    }

    fn interval_elapsed(&self, stats: &LogStats) -> bool {
        stats.records_since_checkpoint >= self.config.every_records
            || stats.bytes_since_checkpoint >= self.config.every_bytes
            || stats.ms_since_checkpoint >= self.config.every_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy() -> CheckpointInterval {
        let json = r#"{"every_records": 100, "every_bytes": 4096, "every_ms": 1000,
            "compact_reclaimable_bytes": 8192}"#;
        CheckpointInterval::from_json(json).expect("valid config")
    }

    fn stats(records: u64, bytes: u64, ms: u64, reclaimable_bytes: u64) -> LogStats {
        LogStats {
            records_since_checkpoint: records,
            bytes_since_checkpoint: bytes,
            ms_since_checkpoint: ms,
            total_bytes: 1 << 20,
            oldest_needed_lsn: 7,
            reclaimable_bytes,
        }
    }

    #[test]
    fn rules_table() {
        use CheckpointAction::*;
        #[rustfmt::skip]
        let cases = [
            ("quiet log", stats(0, 0, 0, 0), None),
            ("below every trigger", stats(99, 4095, 999, 8191), None),
            ("records trigger", stats(100, 10, 1, 0), Checkpoint),
            ("bytes trigger", stats(1, 4096, 1, 0), Checkpoint),
            ("time trigger", stats(1, 10, 1000, 0), Checkpoint),
            ("every trigger at once", stats(500, 1 << 20, 5000, 0), Checkpoint),
            ("time alone with nothing written", stats(0, 0, 1_000_000, 0), None),
            ("reclaimable reaches the threshold", stats(1, 10, 1, 8192), CheckpointAndCompact),
            ("reclaimable with a due checkpoint", stats(100, 4096, 1000, 9000), CheckpointAndCompact),
            ("reclaimable on an idle log", stats(0, 0, 5, 8192), CheckpointAndCompact),
            ("extremes", stats(u64::MAX, u64::MAX, u64::MAX, u64::MAX), CheckpointAndCompact),
        ];
        for (name, stats, expected) in cases {
            assert_eq!(policy().decide(&stats), expected, "case: {name}");
        }
    }

    #[test]
    fn defaults_are_valid_and_used_for_empty_config() {
        assert_eq!(CheckpointConfig::default().validate(), Ok(()));
        let parsed = CheckpointInterval::from_json("").unwrap().config;
        assert_eq!(parsed, CheckpointConfig::default());
        let partial = CheckpointInterval::from_json(r#"{"every_ms": 5}"#)
            .unwrap()
            .config;
        assert_eq!(
            partial,
            CheckpointConfig {
                every_ms: 5,
                ..CheckpointConfig::default()
            }
        );
    }

    #[test]
    fn config_errors_name_the_field() {
        let cases = [
            (r#"{"every_records": 0}"#, "every_records"),
            (r#"{"every_bytes": 0}"#, "every_bytes"),
            (r#"{"every_ms": 0}"#, "every_ms"),
            (
                r#"{"compact_reclaimable_bytes": 0}"#,
                "compact_reclaimable_bytes",
            ),
            (r#"{"every_ms": -1}"#, "every_ms"),
            (r#"{"every_bytes": "1MB"}"#, "every_bytes"),
            (r#"{"every_minutes": 1}"#, "every_minutes"),
        ];
        for (json, field) in cases {
            let error = CheckpointInterval::from_json(json).unwrap_err();
            assert!(error.contains(&format!("`{field}`")), "{json} -> {error}");
        }
    }

    proptest! {
        #[test]
        fn decision_matches_the_rules(
            records in 0u64..300,
            bytes in 0u64..10_000,
            ms in 0u64..3000,
            reclaimable in 0u64..20_000,
        ) {
            let action = policy().decide(&stats(records, bytes, ms, reclaimable));
            let written = records > 0 || bytes > 0;
            let due = records >= 100 || bytes >= 4096 || ms >= 1000;
            let expected = if reclaimable >= 8192 {
                CheckpointAction::CheckpointAndCompact
            } else if written && due {
                CheckpointAction::Checkpoint
            } else {
                CheckpointAction::None
            };
            prop_assert_eq!(action, expected);
        }

        #[test]
        fn more_progress_never_cancels_a_checkpoint(
            records in 0u64..300,
            bytes in 0u64..10_000,
            ms in 0u64..3000,
            extra in 0u64..1000,
        ) {
            let before = policy().decide(&stats(records, bytes, ms, 0));
            let after = policy().decide(&stats(records + extra, bytes + extra, ms + extra, 0));
            if before == CheckpointAction::Checkpoint {
                prop_assert_eq!(after, CheckpointAction::Checkpoint);
            }
        }
    }
}
