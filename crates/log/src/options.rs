//! Tuning knobs and limits of the log.
//!
//! Every quantity that can grow has a maximum here, so that a burst of
//! traffic or a bad client turns into a clear error rather than a full disk
//! or an out-of-memory kill.

use serde::{Deserialize, Serialize};

use crate::LogError;
use crate::format::{RECORD_BYTES_LIMIT, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES};

/// When `append` returns relative to the data reaching stable storage.
///
/// | mode | `append` returns after | lost on process crash (SIGKILL) | lost on power loss / kernel panic |
/// |------|------------------------|----------------------------------|-----------------------------------|
/// | `Always` (default) | `write` + `fdatasync` (group commit) | nothing | nothing |
/// | `EveryMs(n)` | `write` (page cache); a sync runs every `n` ms | nothing | up to `n` ms of acknowledged writes |
/// | `Never` | `write` (page cache) | nothing | everything since the kernel last flushed (typically up to 30 s) |
///
/// `Always` costs one fdatasync per batch, but concurrent appenders share
/// it, so throughput grows with the number of writers. The relaxed modes
/// trade the "acknowledged means durable" promise for latency; levee's
/// data path must use `Always`. Segment rotation, checkpoints, `Log::sync`
/// and a clean shutdown sync in every mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    #[default]
    Always,
    EveryMs(u64),
    Never,
}

/// Options for [`crate::Log::open`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogOptions {
    /// A segment is rotated before it would grow past this size.
    pub segment_bytes_max: u64,
    /// Largest payload a single record may carry.
    pub record_bytes_max: u32,
    /// Appends fail with `LogError::Full` once the segments on disk plus the
    /// queued records would exceed this.
    pub log_bytes_max: u64,
    /// Durability mode, see [`SyncMode`].
    pub sync: SyncMode,
    /// Truncate at the first corruption instead of refusing to open.
    pub repair: bool,
    /// Bytes of records queued for the next batch; appenders wait (they
    /// are not refused) while the queue is fuller than this.
    pub pending_bytes_max: u64,
    /// Largest checkpoint file accepted, written or read.
    pub checkpoint_bytes_max: u64,
    /// Checkpoints kept on disk (the newest and its fallbacks).
    pub checkpoints_kept: usize,
}

/// Upper bound for `segment_bytes_max`: keeps offsets, recovery time per
/// segment and the sparse index bounded.
pub const SEGMENT_BYTES_LIMIT: u64 = 1 << 30;

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_bytes_max: 64 << 20,
            record_bytes_max: 1 << 20,
            log_bytes_max: 8 << 30,
            sync: SyncMode::Always,
            repair: false,
            pending_bytes_max: 16 << 20,
            checkpoint_bytes_max: 256 << 20,
            checkpoints_kept: 2,
        }
    }
}

impl LogOptions {
    /// Bytes one record of `payload_bytes` occupies on disk.
    pub fn record_disk_bytes(payload_bytes: usize) -> u64 {
        (RECORD_HEADER_BYTES + payload_bytes) as u64
    }

    /// Checks that the limits are consistent with each other.
    pub fn validate(&self) -> Result<(), LogError> {
        let invalid = |msg: String| Err(LogError::InvalidOptions(msg));
        if self.record_bytes_max > RECORD_BYTES_LIMIT {
            return invalid(format!(
                "record_bytes_max = {} exceeds the format limit {RECORD_BYTES_LIMIT}",
                self.record_bytes_max
            ));
        }
        let largest_record = Self::record_disk_bytes(self.record_bytes_max as usize);
        let smallest_segment = SEGMENT_HEADER_BYTES as u64 + largest_record;
        if self.segment_bytes_max < smallest_segment {
            return invalid(format!(
                "segment_bytes_max = {} cannot hold one record of record_bytes_max = {} \
                 (needs at least {smallest_segment})",
                self.segment_bytes_max, self.record_bytes_max
            ));
        }
        if self.segment_bytes_max > SEGMENT_BYTES_LIMIT {
            return invalid(format!(
                "segment_bytes_max = {} exceeds the limit {SEGMENT_BYTES_LIMIT}",
                self.segment_bytes_max
            ));
        }
        if self.log_bytes_max < 2 * self.segment_bytes_max {
            return invalid(format!(
                "log_bytes_max = {} must be at least two segments (2 x {})",
                self.log_bytes_max, self.segment_bytes_max
            ));
        }
        if self.pending_bytes_max < largest_record {
            return invalid(format!(
                "pending_bytes_max = {} cannot queue one record of record_bytes_max = {}",
                self.pending_bytes_max, self.record_bytes_max
            ));
        }
        if let SyncMode::EveryMs(0) = self.sync {
            return invalid("SyncMode::EveryMs(0) is meaningless; use SyncMode::Always".into());
        }
        if self.checkpoints_kept == 0 || self.checkpoints_kept > 16 {
            return invalid(format!(
                "checkpoints_kept = {} must be between 1 and 16",
                self.checkpoints_kept
            ));
        }
        if self.checkpoint_bytes_max < 64 {
            return invalid("checkpoint_bytes_max must be at least 64 bytes".into());
        }
        Ok(())
    }
}
