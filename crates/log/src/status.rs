//! Reports returned by the log: status for metrics and the checkpoint
//! policy, what recovery did at open, and what compaction freed. All are
//! `Serialize` so that the host can expose them on its admin API as-is.

use std::path::PathBuf;

use serde::Serialize;

use crate::checkpoint::CheckpointInfo;
use crate::segment::SegmentInfo;
use crate::{Lsn, SyncMode};

/// A snapshot of the log's state.
#[derive(Clone, Debug, Serialize)]
pub struct LogStatus {
    pub dir: PathBuf,
    pub sync: SyncMode,
    /// Oldest LSN still stored.
    pub first_lsn: Lsn,
    /// Highest acknowledged LSN (what readers can see); `first_lsn - 1`
    /// when the log holds no record.
    pub last_lsn: Lsn,
    /// Highest LSN handed to the kernel.
    pub written_lsn: Lsn,
    /// Highest LSN known to be on stable storage.
    pub synced_lsn: Lsn,
    /// LSN the next append will get.
    pub next_lsn: Lsn,
    pub pending_records: usize,
    pub pending_bytes: u64,
    pub segments: Vec<SegmentInfo>,
    /// Bytes of all segment files.
    pub total_bytes: u64,
    pub log_bytes_max: u64,
    /// Records after the newest checkpoint (all records if there is none).
    pub records_since_checkpoint: u64,
    /// Record bytes after the newest checkpoint.
    pub bytes_since_checkpoint: u64,
    /// Milliseconds since the newest checkpoint was written (since open if
    /// there is none).
    pub ms_since_checkpoint: u64,
    pub last_checkpoint: Option<CheckpointInfo>,
    /// Bytes `compact` could free if no replica hint held records back.
    pub reclaimable_bytes_by_checkpoint: u64,
    /// Why the log refuses writes, if it does.
    pub poisoned: Option<String>,
    /// fdatasync calls that covered new records, since open.
    pub fsyncs: u64,
    /// Batch writes issued (one `write` per batch and segment), since open.
    pub batches_written: u64,
    /// Records written since open.
    pub records_written: u64,
}

/// What `Log::open` found and did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RecoveryReport {
    /// The checkpoint the host should load (`Log::latest_checkpoint`).
    pub checkpoint: Option<CheckpointInfo>,
    /// Checkpoints that were not usable, newest first.
    pub checkpoints_skipped: Vec<SkippedCheckpoint>,
    pub first_lsn: Lsn,
    pub last_lsn: Lsn,
    /// Records after the checkpoint, to replay with `read_from`.
    pub records_replayable: u64,
    pub segments: usize,
    /// Bytes read and verified.
    pub bytes_scanned: u64,
    pub duration_ms: u64,
    /// Set if the last segment ended in a partial write that was cut off.
    pub torn_tail: Option<TornTail>,
    /// Set if `repair` truncated the log at a corruption.
    pub repair: Option<RepairReport>,
    /// Leftover temporary files from an interrupted rotation or checkpoint.
    pub temp_files_removed: usize,
    /// Set (only with `repair`) if no checkpoint covers the LSNs before the
    /// first stored record, so the host's state cannot be fully rebuilt.
    pub state_gap_before_lsn: Option<Lsn>,
}

/// A crash artefact cut off the end of the last segment.
#[derive(Clone, Debug, Serialize)]
pub struct TornTail {
    pub segment: PathBuf,
    /// The segment now ends here.
    pub offset: u64,
    pub bytes_cut: u64,
    /// The cut bytes, kept for inspection. `None` if the file system had no
    /// space for the copy: a torn tail was never acknowledged, so recovery
    /// cuts it anyway (with a warning) rather than refuse to start.
    pub broken_copy: Option<PathBuf>,
    pub reason: String,
}

/// What `repair: true` dropped.
#[derive(Clone, Debug, Serialize)]
pub struct RepairReport {
    pub segment: PathBuf,
    pub offset: u64,
    pub reason: String,
    /// Checksum-valid records found after the cut (in the damaged segment
    /// and in the later segments); they are no longer part of the log.
    pub records_dropped: u64,
    /// Copy of the bytes cut from the damaged segment, or the segment
    /// itself if its header was damaged.
    pub broken_copy: Option<PathBuf>,
    /// Later segments, renamed to `.broken`.
    pub segments_moved_aside: Vec<PathBuf>,
}

/// A checkpoint file that recovery did not use.
#[derive(Clone, Debug, Serialize)]
pub struct SkippedCheckpoint {
    pub path: PathBuf,
    pub covers_lsn: Lsn,
    pub reason: String,
    /// Where it was renamed so that it is never read again.
    pub moved_to: Option<PathBuf>,
}

/// What `compact` did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CompactReport {
    /// Segments whose every record is below this LSN were deleted.
    pub bound_lsn: Lsn,
    pub segments_deleted: Vec<PathBuf>,
    pub bytes_freed: u64,
    /// Oldest LSN still stored afterwards.
    pub first_lsn: Lsn,
}

impl std::fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "recovered LSNs {}..={} in {} segment(s), {} bytes verified in {} ms; ",
            self.first_lsn, self.last_lsn, self.segments, self.bytes_scanned, self.duration_ms
        )?;
        match &self.checkpoint {
            Some(checkpoint) => write!(
                f,
                "checkpoint covers LSN {}, {} record(s) to replay",
                checkpoint.covers_lsn, self.records_replayable
            )?,
            None => write!(
                f,
                "no checkpoint, {} record(s) to replay",
                self.records_replayable
            )?,
        }
        if let Some(torn) = &self.torn_tail {
            write!(
                f,
                "; torn tail: cut {} bytes at offset {} of {} ({})",
                torn.bytes_cut,
                torn.offset,
                torn.segment.display(),
                match &torn.broken_copy {
                    Some(copy) => format!("copy in {}", copy.display()),
                    None => "no space for a copy".to_string(),
                }
            )?;
        }
        if let Some(repair) = &self.repair {
            write!(
                f,
                "; REPAIRED: truncated {} at offset {}, dropped {} record(s) and {} later segment(s)",
                repair.segment.display(),
                repair.offset,
                repair.records_dropped,
                repair.segments_moved_aside.len()
            )?;
        }
        if !self.checkpoints_skipped.is_empty() {
            write!(
                f,
                "; {} checkpoint(s) skipped",
                self.checkpoints_skipped.len()
            )?;
        }
        Ok(())
    }
}
