//! Typed errors for the log.
//!
//! Every message names what went wrong, where (file, byte offset, LSN) and
//! what an operator can do about it, because these errors end up in HTTP 503
//! bodies and in the output of `levee log inspect`.

use std::path::PathBuf;

use crate::Lsn;

/// Everything that can go wrong when opening, writing, reading or
/// compacting the log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// An operating-system call failed.
    #[error("I/O error while trying to {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A checksum or structure check failed somewhere other than the torn
    /// tail of the last segment, so data that was once acknowledged may be
    /// damaged.
    #[error(
        "log corrupt in {segment} at byte offset {offset}: {reason}; run `levee log inspect` \
         to see the damage, or start with `levee serve --repair` (LogOptions.repair) to \
         truncate the log there (every later record is dropped and its bytes kept in a \
         .broken file, later segments are moved aside)"
    )]
    Corrupt {
        segment: PathBuf,
        offset: u64,
        reason: String,
    },

    /// An fsync (or a write) failed earlier. The log refuses every write from
    /// then on, because the kernel may have dropped the dirty pages and a
    /// retried fsync could falsely report success.
    #[error(
        "log is poisoned and refuses writes: {0}; restart the process so that recovery \
         re-reads what really reached the disk"
    )]
    Poisoned(String),

    /// Appending would take the log past `log_bytes_max`.
    #[error(
        "log is full: {used_bytes} bytes used + {needed_bytes} bytes needed exceeds \
         log_bytes_max = {max_bytes}; write a checkpoint and compact, deliver pending hints, \
         or raise log_bytes_max"
    )]
    Full {
        used_bytes: u64,
        needed_bytes: u64,
        max_bytes: u64,
    },

    /// The file system holding the log is full (ENOSPC, or EDQUOT for a
    /// quota). The batch this append was part of was not written: its
    /// partly written bytes were cut off again, nothing acknowledged is
    /// lost, and the log is *not* poisoned, so appends succeed again once
    /// space is freed (a write to already-allocated blocks cannot lose
    /// data behind our back the way a failed fsync can).
    #[error(
        "no space left for the log in {dir}: {reason}; this append was not written (nothing \
         acknowledged is lost) and appends resume once space is freed on that file system"
    )]
    NoSpace { dir: PathBuf, reason: String },

    /// A single record's payload is larger than `record_bytes_max`.
    #[error("record payload of {bytes} bytes exceeds record_bytes_max = {max}")]
    RecordTooLarge { bytes: u64, max: u32 },

    /// The requested LSN was deleted by compaction.
    #[error(
        "LSN {requested} is no longer in the log (compacted away); the oldest LSN still \
         stored is {first_available}"
    )]
    Compacted {
        requested: u64,
        first_available: Lsn,
    },

    /// `LogOptions` are inconsistent (for example a segment smaller than one
    /// maximal record).
    #[error("invalid log options: {0}")]
    InvalidOptions(String),

    /// A caller passed an argument that can never be valid here.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// Another process (or another `Log` in this process) has the directory
    /// open for writing.
    #[error(
        "log directory {dir} is locked by another process or Log instance; only one writer \
         may open it at a time"
    )]
    Locked { dir: PathBuf },

    /// A checkpoint could not be written or read back.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },

    /// The log was shut down while the call was in flight.
    #[error("log is closed")]
    Closed,
}

impl LogError {
    /// Wraps an `io::Error` with the operation and the file it concerned.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LogError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// True for the errors the host should answer with "503, try later"
    /// (507 for `NoSpace`).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            LogError::Poisoned(_)
                | LogError::Full { .. }
                | LogError::NoSpace { .. }
                | LogError::Closed
        )
    }
}
