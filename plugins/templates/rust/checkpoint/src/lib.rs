//! A checkpoint policy for levee: the `checkpoint-policy` world of
//! `wit/levee-policy.wit` (its doc comments are the manual).
//!
//! It checkpoints once `every_records` records were appended since the
//! last checkpoint, and compacts the log with it (deleting the segments
//! that checkpoint made unneeded), so the log does not grow without end.
//!
//! Config, every field optional: `{"every_records": 10000}`.

wit_bindgen::generate!({
    world: "checkpoint-policy",
    path: "wit",
});

use std::cell::RefCell;

use exports::levee::policy::checkpoint::{Action, Guest};
use levee::policy::types::LogStats;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    /// Records appended since the last checkpoint that call for the next.
    every_records: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            every_records: 10_000,
        }
    }
}

/// The binding's `config`, validated; the error names the field at fault.
fn parse_config(text: &str) -> Result<Config, String> {
    let config: Config =
        serde_json::from_str(text).map_err(|error| format!("invalid config: {error}"))?;
    if config.every_records == 0 {
        return Err("config field `every_records`: must be at least 1".to_string());
    }
    Ok(config)
}

/// The policy itself: plain Rust over the WIT types, tested below.
fn decide(config: &Config, stats: &LogStats) -> Action {
    if stats.records_since_checkpoint >= config.every_records {
        Action::CheckpointAndCompact
    } else {
        Action::None
    }
}

thread_local! {
    /// The configured policy: defaults until `configure` succeeds; a
    /// failed `configure` leaves it as it was.
    static CONFIG: RefCell<Config> = RefCell::new(Config::default());
}

struct Plugin;

impl Guest for Plugin {
    fn configure(config: String) -> Result<(), String> {
        let config = parse_config(&config)?;
        CONFIG.with(|slot| *slot.borrow_mut() = config);
        Ok(())
    }

    fn decide(stats: LogStats) -> Action {
        CONFIG.with(|config| decide(&config.borrow(), &stats))
    }
}

export!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_every_n_records() {
        let config = parse_config(r#"{"every_records": 100}"#).unwrap();
        let stats = |records_since_checkpoint| LogStats {
            records_since_checkpoint,
            bytes_since_checkpoint: records_since_checkpoint * 64,
            ms_since_checkpoint: 1_000,
            total_bytes: 1 << 20,
            oldest_needed_lsn: 1,
            reclaimable_bytes: 0,
        };

        assert!(matches!(decide(&config, &stats(0)), Action::None));
        assert!(matches!(decide(&config, &stats(99)), Action::None));
        assert!(matches!(
            decide(&config, &stats(100)),
            Action::CheckpointAndCompact
        ));

        assert_eq!(parse_config("{}").unwrap().every_records, 10_000);
        assert!(parse_config(r#"{"every_records": 0}"#).is_err());
        assert!(parse_config(r#"{"every": 5}"#).is_err());
    }
}
