//! Per-node hint limits (`services[].hints`): data the replication layer
//! enforces, validated here with the rest of the configuration.

use serde::{Deserialize, Serialize};

/// Per-node bounds on hints, from the service configuration
/// (`services[].hints`). A hint past either bound is dropped (oldest first),
/// counted and logged, never silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HintLimits {
    /// A hint older than this (measured from when levee accepted the write)
    /// is dropped instead of delivered.
    pub age_ms_max: u64,
    /// When the undelivered hints for one node exceed this many body bytes,
    /// the oldest are dropped until they fit.
    pub bytes_max: u64,
}

/// The longest `hints.age_ms_max` accepted (a week).
pub const HINT_AGE_MS_LIMIT: u64 = 7 * 24 * 60 * 60 * 1000;
/// The largest `hints.bytes_max` accepted (1 TiB).
pub const HINT_BYTES_LIMIT: u64 = 1 << 40;

impl HintLimits {
    /// Reports each out-of-range field as (field path, problem).
    pub fn validate_into(&self, path: &str, mut report: impl FnMut(String, String)) {
        if self.age_ms_max == 0 || self.age_ms_max > HINT_AGE_MS_LIMIT {
            report(
                format!("{path}.age_ms_max"),
                format!(
                    "must be between 1 and {HINT_AGE_MS_LIMIT}, got {}",
                    self.age_ms_max
                ),
            );
        }
        if self.bytes_max == 0 || self.bytes_max > HINT_BYTES_LIMIT {
            report(
                format!("{path}.bytes_max"),
                format!(
                    "must be between 1 and {HINT_BYTES_LIMIT}, got {}",
                    self.bytes_max
                ),
            );
        }
    }
}

impl Default for HintLimits {
    fn default() -> Self {
        // Cassandra's default hint window is 3 hours; the byte bound keeps one
        // dead replica from holding the whole log (8 GiB by default) hostage.
        HintLimits {
            age_ms_max: 3 * 60 * 60 * 1000,
            bytes_max: 2 << 30,
        }
    }
}
