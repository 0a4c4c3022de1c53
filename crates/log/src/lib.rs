//! levee's durable append-only log.
//!
//! levee promises that a write it acknowledged is never lost, even if the
//! host is killed the next instant. Every client write is appended here and
//! made durable before it is fanned out to replicas; writes a replica missed
//! ("hints") are streamed back out by LSN; the host's own state is
//! recovered from checkpoints plus the records after them. The log knows
//! nothing of HTTP.
//!
//! Shape of the engine (each part has its own module and explains itself):
//! * [`format`]: the byte layout of segments and records, CRC32C-protected.
//! * `state`/`writer`: group commit. Appenders copy their encoded record
//!   into a shared batch buffer; whoever finds the write token free (a
//!   blocking appender itself, or a committer thread for async callers)
//!   writes the whole batch with one `write` and syncs it with one
//!   `fdatasync`, and one futex wake releases the batch's appenders. Two
//!   fdatasyncs may overlap, each through its own descriptor. An fsync
//!   failure poisons the log instead of being retried; a full disk
//!   (ENOSPC) only refuses the batch (`LogError::NoSpace`), its partial
//!   write cut back, and appends resume once space is freed.
//! * `segment`: segment files, created preallocated (zero-filled ahead of
//!   time by a background thread) so that an fdatasync does not also have
//!   to write the file's size.
//! * `recovery`/`verify`/`scan`: at open, verify every record (checksums
//!   three records at a time, `crc`), cut a torn tail (kept as `.broken`
//!   if there is space), including a half-written last batch (format
//!   version 3's `unsynced_span`), refuse (or with `repair`, truncate at)
//!   corruption.
//! * `checkpoint`: atomic, checksummed, versioned snapshots of host state.
//! * `reader`: bounded-memory streaming by LSN with a sparse offset index.
//! * [`inspect`](inspect()) / [`dump`]: read-only diagnostics for the CLI.

mod checkpoint;
mod crc;
mod error;
pub mod format;
mod fsio;
mod gate;
mod inspect;
mod log;
mod options;
mod reader;
mod recovery;
pub mod scan;
mod segment;
mod state;
mod status;
#[doc(hidden)]
pub mod testkit;
mod verify;
mod writer;

pub use checkpoint::{CHECKPOINT_FORMAT_VERSION, CheckpointEnvelope, CheckpointInfo};
pub use error::LogError;
pub use inspect::{
    CheckpointReport, Dump, InspectReport, SegmentReport, SegmentStatus, dump, inspect,
};
pub use log::Log;
pub use options::{LogOptions, SEGMENT_BYTES_LIMIT, SyncMode};
pub use reader::LogReader;
pub use segment::SegmentInfo;
pub use status::{
    CompactReport, LogStatus, RecoveryReport, RepairReport, SkippedCheckpoint, TornTail,
};
pub use verify::{Problem, ProblemKind};

/// Log sequence number. The first record is LSN 1; LSNs are contiguous.
pub type Lsn = u64;

/// One record as stored: its LSN, the caller's type tag and the payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub lsn: Lsn,
    pub kind: u8,
    pub payload: Vec<u8>,
}

#[cfg(test)]
mod no_space_tests;
#[cfg(test)]
mod poison_tests;
