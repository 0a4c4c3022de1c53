//! The state shared between appenders, the writer thread, readers and
//! maintenance calls, and the rules for changing it.
//!
//! One mutex guards it. Appenders hold it only to take an LSN and push their
//! record onto the pending queue (no I/O, no copying of payloads); the writer
//! holds it only to swap the queue out and to publish what it wrote. All
//! waiting happens on condition variables (blocking callers) or on a tokio
//! `watch` channel (async callers), never while holding the lock.

use std::path::PathBuf;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::watch;

use crate::checkpoint::CheckpointInfo;
use crate::format::{RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES, encode_record_header};
use crate::fsio::SyncFaults;
use crate::segment::SegmentMeta;
use crate::{LogError, LogOptions, Lsn, SyncMode};

/// Immutable configuration plus the mutable state and its wake-ups.
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub options: LogOptions,
    pub state: Mutex<State>,
    /// The writer waits here for pending records or a sync request.
    pub work_ready: Condvar,
    /// Blocking appenders wait here for their LSN to be acknowledged or for
    /// queue space.
    pub progress_changed: Condvar,
    /// Async appenders and tailing readers watch this.
    pub progress_tx: watch::Sender<Progress>,
    pub faults: SyncFaults,
}

/// What waiters need to know, published after every writer step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Progress {
    pub acked_lsn: Lsn,
    pub synced_lsn: Lsn,
    pub batches_taken: u64,
    pub poisoned: bool,
}

/// A record waiting for the writer: its encoded header and its payload
/// (moved in, never copied, until the writer gathers the batch).
pub(crate) struct PendingRecord {
    pub header: [u8; RECORD_HEADER_BYTES],
    pub payload: Vec<u8>,
}

impl PendingRecord {
    pub(crate) fn disk_bytes(&self) -> u64 {
        (RECORD_HEADER_BYTES + self.payload.len()) as u64
    }
}

/// Counters since open, for status and the benchmark's records-per-fsync.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Counters {
    pub fsyncs: u64,
    pub batches_written: u64,
    pub records_written: u64,
}

pub(crate) struct State {
    /// LSN the next append gets.
    pub next_lsn: Lsn,
    pub pending: Vec<PendingRecord>,
    pub pending_bytes: u64,
    /// Highest LSN handed to `write(2)`.
    pub written_lsn: Lsn,
    /// Highest LSN covered by a completed fdatasync.
    pub synced_lsn: Lsn,
    pub sync_requested: bool,
    pub poisoned: Option<String>,
    pub closing: bool,
    pub batches_taken: u64,
    /// Segments in LSN order; the last one is the one being appended to.
    pub segments: Vec<SegmentMeta>,
    /// Sum of the segment file sizes.
    pub disk_bytes: u64,
    /// Retained checkpoints, oldest first.
    pub checkpoints: Vec<CheckpointInfo>,
    /// Log position of the first record after the newest checkpoint.
    pub checkpoint_position: u64,
    /// When the newest checkpoint was taken, or the log opened if none.
    pub checkpoint_instant: Instant,
    pub counters: Counters,
    /// Appenders currently waiting for queue space.
    pub space_waiters: usize,
    /// The progress last sent to waiters, to skip wake-ups that change
    /// nothing they wait for.
    pub published: Progress,
}

/// Outcome of one attempt to queue a record.
pub(crate) enum Enqueued {
    Queued(Lsn),
    /// The pending queue is full; wait for the writer to take a batch.
    QueueFull,
}

impl State {
    /// The highest LSN an appender may be told is done, and a reader may see.
    pub(crate) fn acked_lsn(&self, sync: SyncMode) -> Lsn {
        match sync {
            SyncMode::Always => self.synced_lsn,
            SyncMode::EveryMs(_) | SyncMode::Never => self.written_lsn,
        }
    }

    pub(crate) fn first_lsn(&self) -> Lsn {
        self.segments
            .first()
            .expect("a log always has a segment")
            .first_lsn
    }

    pub(crate) fn active(&mut self) -> &mut SegmentMeta {
        self.segments
            .last_mut()
            .expect("a log always has a segment")
    }

    /// Log position just past the last written record.
    pub(crate) fn end_position(&self) -> u64 {
        self.segments
            .last()
            .expect("a log always has a segment")
            .end_position()
    }

    pub(crate) fn latest_checkpoint(&self) -> Option<&CheckpointInfo> {
        self.checkpoints.last()
    }

    /// Refuses the append if the log is poisoned, closing or full; queues it
    /// (moving the payload out of `payload`) if there is room.
    pub(crate) fn try_enqueue(
        &mut self,
        options: &LogOptions,
        kind: u8,
        payload: &mut Option<Vec<u8>>,
        payload_crc: u32,
    ) -> Result<Enqueued, LogError> {
        if let Some(reason) = &self.poisoned {
            return Err(LogError::Poisoned(reason.clone()));
        }
        if self.closing {
            return Err(LogError::Closed);
        }
        let payload_bytes = payload.as_ref().map_or(0, Vec::len);
        let record_bytes = (RECORD_HEADER_BYTES + payload_bytes) as u64;
        // Reserve room for one more segment header: the record may rotate.
        let needed_bytes = record_bytes + SEGMENT_HEADER_BYTES as u64;
        let used_bytes = self.disk_bytes + self.pending_bytes;
        if used_bytes + needed_bytes > options.log_bytes_max {
            return Err(LogError::Full {
                used_bytes,
                needed_bytes,
                max_bytes: options.log_bytes_max,
            });
        }
        if !self.pending.is_empty() && self.pending_bytes + record_bytes > options.pending_bytes_max
        {
            return Ok(Enqueued::QueueFull);
        }
        let payload = payload.take().expect("payload present until queued");
        let lsn = self.next_lsn;
        self.next_lsn += 1;
        let header = encode_record_header(lsn, kind, payload_bytes as u32, payload_crc);
        self.pending.push(PendingRecord { header, payload });
        self.pending_bytes += record_bytes;
        Ok(Enqueued::Queued(lsn))
    }

    pub(crate) fn progress(&self, sync: SyncMode) -> Progress {
        Progress {
            acked_lsn: self.acked_lsn(sync),
            synced_lsn: self.synced_lsn,
            batches_taken: self.batches_taken,
            poisoned: self.poisoned.is_some(),
        }
    }
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the state as consistent as
        // any crash would; keep going rather than cascading panics.
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Wakes the waiters if something they wait for changed: the
    /// acknowledged LSN, poisoning, or (only if someone waits for it) queue
    /// space. Skipping the others matters: waking 64 sleeping appenders per
    /// batch for nothing would cost more than the batch.
    pub(crate) fn publish(&self, state: &mut State) {
        let progress = state.progress(self.options.sync);
        let previous = state.published;
        let changed = progress.acked_lsn != previous.acked_lsn
            || progress.synced_lsn != previous.synced_lsn
            || progress.poisoned != previous.poisoned
            || (state.space_waiters > 0 && progress.batches_taken != previous.batches_taken);
        if !changed {
            return;
        }
        state.published = progress;
        self.progress_tx.send_replace(progress);
        self.progress_changed.notify_all();
    }

    /// Marks the log poisoned: logged loudly, every waiter woken, every
    /// later write refused.
    pub(crate) fn poison(&self, reason: String) {
        tracing::error!(dir = %self.dir.display(), %reason, "levee log poisoned: refusing all further writes");
        let mut state = self.lock();
        if state.poisoned.is_none() {
            state.poisoned = Some(reason);
        }
        self.publish(&mut state);
    }
}
