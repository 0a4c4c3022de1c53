//! Write versions (`versions`): how far ahead of this machine's clock a
//! version seen on a replica may be and still be adopted by levee's clock.
//!
//! Why a bound: levee's hybrid logical clock moves past every version it
//! observes (so a newer write by another levee instance is followed by a
//! still newer one), but one replica with a clock hours fast, or a bogus
//! header, must not drag every later write into the future. A version more
//! than `clock_skew_ms_max` ahead is refused (logged and counted), so the
//! bound is also the largest clock difference between levee instances
//! writing the same keys under which last-writer-wins follows real time.

use serde::{Deserialize, Serialize};

use crate::error::Errors;

/// Default `versions.clock_skew_ms_max` (a minute).
pub const CLOCK_SKEW_MS_MAX_DEFAULT: u64 = 60_000;
/// Largest accepted `versions.clock_skew_ms_max` (an hour).
pub const CLOCK_SKEW_MS_MAX_LIMIT: u64 = 3_600_000;

/// The `versions` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VersionsSpec {
    /// An observed version more than this many milliseconds ahead of the
    /// wall clock is not adopted.
    pub clock_skew_ms_max: u64,
}

impl Default for VersionsSpec {
    fn default() -> Self {
        VersionsSpec {
            clock_skew_ms_max: CLOCK_SKEW_MS_MAX_DEFAULT,
        }
    }
}

impl VersionsSpec {
    /// Whether every field has its default (then it is not written out).
    pub fn is_default(&self) -> bool {
        *self == VersionsSpec::default()
    }

    pub(crate) fn validate_into(&self, errors: &mut Errors) {
        errors.range(
            "versions.clock_skew_ms_max",
            self.clock_skew_ms_max,
            1,
            CLOCK_SKEW_MS_MAX_LIMIT,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;
    use crate::test_support::messages;

    #[test]
    fn the_skew_bound_defaults_to_a_minute() {
        let config = Config::from_json("{}").unwrap();
        assert_eq!(config.versions.clock_skew_ms_max, 60_000);
        let config = Config::from_json(r#"{"versions": {"clock_skew_ms_max": 5000}}"#).unwrap();
        assert_eq!(config.versions.clock_skew_ms_max, 5_000);
    }

    #[test]
    fn the_skew_bound_is_validated_with_its_field_path() {
        for bad in [0, CLOCK_SKEW_MS_MAX_LIMIT + 1] {
            let text = format!(r#"{{"versions": {{"clock_skew_ms_max": {bad}}}}}"#);
            let error = Config::from_json(&text).unwrap_err();
            assert_eq!(
                messages(error),
                [format!(
                    "versions.clock_skew_ms_max: must be between 1 and 3600000, got {bad}"
                )]
            );
        }
        let error = Config::from_json(r#"{"versions": {"skew": 1}}"#).unwrap_err();
        let message = &messages(error)[0];
        assert!(message.contains("unknown field `skew`"), "{message}");
    }
}
