//! Durability of the log: how appends reach the disk (`fsync`).

use serde::{Deserialize, Serialize};

use crate::error::Errors;

/// The longest accepted `fsync.every_ms` (a minute).
pub const FSYNC_EVERY_MS_MAX: u64 = 60_000;

/// Durability of log appends: `"always"`, `{"every_ms": N}` or `"never"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncMode {
    /// fsync before acknowledging each append (group-committed).
    #[default]
    Always,
    /// fsync at most every N milliseconds; a crash loses at most that window.
    EveryMs(u64),
    /// Leave it to the OS (tests and benchmarks only).
    Never,
}

impl FsyncMode {
    /// Checks the mode as the top-level `fsync` field.
    pub(crate) fn validate_into(&self, errors: &mut Errors) {
        if let FsyncMode::EveryMs(ms) = *self {
            errors.range("fsync.every_ms", ms, 1, FSYNC_EVERY_MS_MAX);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;
    use crate::test_support::messages;

    #[test]
    fn fsync_modes_parse() {
        for (text, mode) in [
            ("\"always\"", FsyncMode::Always),
            ("\"never\"", FsyncMode::Never),
            ("{\"every_ms\": 10}", FsyncMode::EveryMs(10)),
        ] {
            let config = Config::from_json(&format!("{{\"fsync\": {text}}}")).unwrap();
            assert_eq!(config.fsync, mode);
        }
        let error = Config::from_json("{\"fsync\": \"sometimes\"}").unwrap_err();
        assert!(messages(error)[0].starts_with("fsync: unknown variant `sometimes`"));
    }

    #[test]
    fn every_ms_is_bounded() {
        for bad in [0, FSYNC_EVERY_MS_MAX + 1] {
            let error =
                Config::from_json(&format!("{{\"fsync\": {{\"every_ms\": {bad}}}}}")).unwrap_err();
            assert!(
                messages(error)[0].starts_with("fsync.every_ms: must be between 1 and 60000"),
                "{bad}"
            );
        }
    }
}
