//! levee's write clock: the one [`Hlc`] that issues every write's version,
//! opened at start-up in `data_dir`, and the receive rule for versions seen
//! on replicas.
//!
//! Why here: the clock's instance id must be new whenever the log is new
//! (wiped, restored from nothing, first start), because a new log means the
//! old one's history is gone and nothing may tie the two lives together;
//! only the write path knows whether its recovered log ever held a record.
//!
//! [`observe`] is what every reader of replica answers calls (the fan-out
//! on a superseded write, the read path on echoed versions, repair): it
//! moves the clock past a newer version, so this instance's next write is
//! newer still. A version past the skew bound (`versions.clock_skew_ms_max`)
//! is not adopted: it is counted (`levee_versions_too_far_ahead_total`) and
//! warned about at most once per [`TOO_FAR_AHEAD_WARN_INTERVAL_MS`], never
//! fatal.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use levee_log::Log;
use levee_version::{Hlc, HlcError, HlcOptions, Version};

use crate::base::clock;
use crate::config::Config;

/// At most one warning about a too-far-ahead version per this interval.
pub const TOO_FAR_AHEAD_WARN_INTERVAL_MS: u64 = 10_000;

/// `clock::now_ms` of the last too-far-ahead warning (0: never).
static WARNED_AT_MS: AtomicU64 = AtomicU64::new(0);

/// Whether `log` has never held a record: no LSN was ever handed out and
/// no checkpoint exists (a compacted log keeps its LSN sequence, so an
/// emptied old log is not new).
pub fn log_is_new(log: &Log) -> bool {
    let stats = log.stats();
    stats.next_lsn <= 1 && stats.last_checkpoint.is_none()
}

/// Opens the clock in `dir` for `config` (a new instance id, every start);
/// logs the id, the previous one and whether the log is new.
pub fn open(dir: &Path, config: &Config, log_is_new: bool) -> Result<Hlc, HlcError> {
    let options = HlcOptions {
        skew_ms_max: config.versions.clock_skew_ms_max,
        wall_ms: None,
    };
    let (hlc, opened) = Hlc::open(dir, options)?;
    let previous = opened.previous_instance.map(|id| id.to_string());
    tracing::info!(
        instance = %opened.instance,
        previous_instance = previous.as_deref().unwrap_or("none"),
        log_is_new,
        resumed_from_ms = opened.resumed_from_ms,
        "write clock opened"
    );
    Ok(hlc)
}

/// Moves `hlc` past `seen` (a version a replica holds or echoed). A version
/// too far ahead is counted and warned about (rate-limited), not adopted.
pub fn observe(hlc: &Hlc, seen: Version) {
    match hlc.observe(seen) {
        Ok(()) => {}
        Err(error) => {
            crate::base::metrics::version_too_far_ahead();
            if should_warn(&WARNED_AT_MS, clock::now_ms()) {
                tracing::warn!(%error, "a replica holds a version from the future; not adopted");
            }
        }
    }
}

/// Whether a warning may be logged at `now_ms`, given the time of the last
/// one in `warned_at_ms` (and if so, notes it there).
fn should_warn(warned_at_ms: &AtomicU64, now_ms: u64) -> bool {
    let last = warned_at_ms.load(Ordering::Relaxed);
    let due = last == 0 || now_ms.saturating_sub(last) >= TOO_FAR_AHEAD_WARN_INTERVAL_MS;
    due && warned_at_ms
        .compare_exchange(last, now_ms.max(1), Ordering::Relaxed, Ordering::Relaxed)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use levee_log::LogOptions;

    #[test]
    fn a_log_that_held_records_is_not_new_even_when_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = Log::open(dir.path(), LogOptions::default()).unwrap();
        assert!(log_is_new(&log));
        log.append_blocking(1, b"x".to_vec()).unwrap();
        assert!(!log_is_new(&log));
        drop(log);
        let (log, _) = Log::open(dir.path(), LogOptions::default()).unwrap();
        assert!(!log_is_new(&log));
    }

    #[test]
    fn a_version_from_the_future_is_refused_without_moving_the_clock() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::from_json(r#"{"versions": {"clock_skew_ms_max": 1000}}"#).unwrap();
        let hlc = open(dir.path(), &config, true).unwrap();
        let before = hlc.now().unwrap();
        let far = Version {
            physical_ms: before.physical_ms + 3_600_000,
            ..before
        };
        observe(&hlc, far);
        assert!(hlc.now().unwrap() < far);
        let near = Version {
            physical_ms: before.physical_ms + 500,
            ..before
        };
        observe(&hlc, near);
        assert!(hlc.now().unwrap() > near);
    }

    #[test]
    fn warnings_are_rate_limited() {
        let warned_at_ms = AtomicU64::new(0);
        assert!(should_warn(&warned_at_ms, 1_000_000));
        assert!(!should_warn(&warned_at_ms, 1_000_001));
        assert!(should_warn(
            &warned_at_ms,
            1_000_000 + TOO_FAR_AHEAD_WARN_INTERVAL_MS
        ));
    }
}
