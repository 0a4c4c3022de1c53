//! The state shared between appenders, committers, readers and maintenance
//! calls, and the rules for changing it.
//!
//! One mutex guards it, and nobody does I/O while holding it. An appender
//! holds it to take an LSN and copy its encoded record (header + payload)
//! onto the end of the pending batch buffer; a committer holds it to swap
//! that buffer out and later to publish what it wrote and synced.
//!
//! Two tokens, both plain flags in the state, order the file work:
//! * the write token (`writing`): whoever holds it takes the pending batch
//!   and writes it, in LSN order, so writes never interleave;
//! * the sync slots (`slot_busy`): a committer reserves one together with
//!   the write token and keeps it until its fdatasync returned. With two
//!   slots, the next batch can be written and its fdatasync started while
//!   the previous batch's fdatasync is still running.
//!
//! Waiting: blocking appenders sleep on the [`Gate`] of their batch (one
//! futex per batch parity, see `GATES`), `Log::sync` callers and appenders
//! waiting for queue space on the `progress_changed` condition variable,
//! idle committer threads on `work_ready`, and async callers on a tokio
//! `watch` channel. Each is only signalled when someone waits on it.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::watch;

use crate::checkpoint::CheckpointInfo;
use crate::format::{RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES, encode_record_header};
use crate::fsio::SyncFaults;
use crate::gate::Gate;
use crate::segment::SegmentMeta;
use crate::writer::Writer;
use crate::{LogError, LogOptions, Lsn, SyncMode};

/// fdatasync calls that may run at once, each on its own file descriptor
/// (see `writer`, "Overlapping syncs").
pub(crate) const SYNC_SLOTS: usize = 2;

/// Gates, indexed by batch number modulo `GATES`. At most `SYNC_SLOTS + 1`
/// batches are unacknowledged at any time (one per sync slot plus the
/// pending one), so with `SYNC_SLOTS + 2` gates the appenders of two live
/// batches never share a gate, and settling one batch wakes nobody else.
pub(crate) const GATES: usize = SYNC_SLOTS + 2;

/// Buffers above this capacity are not kept for reuse after a burst.
const BATCH_CAPACITY_KEPT: usize = 4 << 20;

/// No-space refusals remembered (8 bytes each), so that an appender that
/// sleeps through several refusals still learns whether its own record was
/// refused. It would have to sleep through this many failed writes to lose
/// track (see `State::fate`).
const REFUSALS_KEPT: usize = 4096;

/// The epoch of an appender whose record was written before a refusal: it
/// can never be refused any more (see `State::fate`).
pub(crate) const EPOCH_WRITTEN: u64 = u64::MAX;

/// Immutable configuration plus the mutable state and its wake-ups.
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub options: LogOptions,
    pub state: Mutex<State>,
    /// The file side: only the holder of the write token locks it.
    pub writer: Mutex<Writer>,
    /// Idle committer threads wait here.
    pub work_ready: Condvar,
    /// `Log::sync` callers and blocking appenders waiting for queue space
    /// wait here (counted in `State::progress_waiters`).
    pub progress_changed: Condvar,
    /// Blocking appenders wait here, on the gate of their batch.
    pub gates: [Gate; GATES],
    /// Mirror of `State::acked_lsn()`, for woken appenders.
    pub acked: AtomicU64,
    /// Mirror of `State::epoch`, for woken appenders. Read *after*
    /// `acked`: if it still equals the appender's epoch, no LSN was
    /// reused since it queued, so `acked` speaks about its own record.
    pub epoch: AtomicU64,
    /// Async appenders watch this.
    pub progress_tx: watch::Sender<Progress>,
    pub faults: SyncFaults,
}

/// What async waiters need to know, published when it changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Progress {
    pub acked_lsn: Lsn,
    pub synced_lsn: Lsn,
    pub batches_taken: u64,
    pub poisoned: bool,
    pub epoch: u64,
}

/// Encoded records waiting to be written together, back to back, exactly
/// as they go to disk.
#[derive(Default)]
pub(crate) struct Batch {
    /// LSN of the first record (meaningful when not empty).
    pub first_lsn: Lsn,
    pub bytes: Vec<u8>,
    /// Disk size of each record, in LSN order.
    pub record_bytes: Vec<u32>,
    /// CRC32C of each record's payload alone, so that the writer can
    /// stamp the header's `unsynced_span` and re-checksum only the header.
    pub payload_crcs: Vec<u32>,
    /// `synced_lsn` when the batch was taken: what the writer stamps into
    /// each record as its `unsynced_span` (format version 3).
    pub synced_at_take: Lsn,
}

impl Batch {
    pub(crate) fn is_empty(&self) -> bool {
        self.record_bytes.is_empty()
    }

    pub(crate) fn records(&self) -> usize {
        self.record_bytes.len()
    }

    pub(crate) fn last_lsn(&self) -> Lsn {
        self.first_lsn + self.records() as u64 - 1
    }

    fn clear_for_reuse(&mut self) {
        self.bytes.clear();
        self.record_bytes.clear();
        self.payload_crcs.clear();
        if self.bytes.capacity() > BATCH_CAPACITY_KEPT {
            self.bytes.shrink_to(BATCH_CAPACITY_KEPT);
            self.record_bytes.shrink_to(BATCH_CAPACITY_KEPT / 64);
            self.payload_crcs.shrink_to(BATCH_CAPACITY_KEPT / 64);
        }
    }
}

/// Counters since open, for status and the benchmark's records-per-fsync.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Counters {
    pub fsyncs: u64,
    pub batches_written: u64,
    pub records_written: u64,
}

/// A batch that was taken and is not yet acknowledged.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    batch: u64,
    last_lsn: Lsn,
}

pub(crate) struct State {
    /// LSN the next append gets.
    pub next_lsn: Lsn,
    /// Records appended but not yet taken by a committer.
    pub pending: Batch,
    /// Emptied batch buffers, for reuse.
    spare_batches: Vec<Batch>,
    /// Blocking appenders whose record is in `pending`: candidates to
    /// commit it when the tokens come free.
    pub pending_leaders: usize,
    /// Someone was already asked to take `pending`.
    handoff_sent: bool,
    /// The write token (see the module docs).
    pub writing: bool,
    pub slot_busy: [bool; SYNC_SLOTS],
    /// Bytes of batches taken but not yet written.
    pub unwritten_bytes: u64,
    /// Taken batches not yet acknowledged, oldest first.
    in_flight: VecDeque<InFlight>,
    /// Highest LSN handed to `write(2)`.
    pub written_lsn: Lsn,
    /// Highest LSN covered by a completed fdatasync.
    pub synced_lsn: Lsn,
    /// When the last fdatasync started (kept for `SyncMode::EveryMs` only).
    pub last_sync: Instant,
    pub poisoned: Option<String>,
    /// No-space refusals so far. A refusal gives the refused LSNs out
    /// again, so an appender remembers the epoch it queued in.
    pub epoch: u64,
    /// First refused LSN of each remembered refusal: entry `i` ended epoch
    /// `refusals_first_epoch + i`. Non-decreasing.
    refusals: VecDeque<Lsn>,
    refusals_first_epoch: u64,
    /// Why the last refusal happened (the errno and file).
    pub no_space_reason: String,
    pub closing: bool,
    /// Non-empty batches taken so far; the pending batch is number
    /// `batches_taken + 1`.
    pub batches_taken: u64,
    /// Committer threads waiting on `work_ready`.
    pub idle_committers: usize,
    /// Threads waiting on `progress_changed`.
    pub progress_waiters: usize,
    /// Appenders (blocking or async) waiting for queue space.
    pub space_waiters: usize,
    /// Segments in LSN order; the last one is the one being appended to.
    pub segments: Vec<SegmentMeta>,
    /// Sum of the segments' valid bytes (header + records).
    pub disk_bytes: u64,
    /// Retained checkpoints, oldest first.
    pub checkpoints: Vec<CheckpointInfo>,
    /// Log position of the first record after the newest checkpoint.
    pub checkpoint_position: u64,
    /// When the newest checkpoint was taken, or the log opened if none.
    pub checkpoint_instant: Instant,
    pub counters: Counters,
    /// The progress last sent to async waiters.
    pub published: Progress,
}

/// Outcome of one attempt to queue a record.
pub(crate) enum Enqueued {
    /// Queued as this LSN, in the pending batch.
    Queued(Lsn),
    /// The pending batch is full; wait for a committer to take it.
    QueueFull,
}

/// Gates to wake once the state mutex is released.
#[derive(Default)]
#[must_use]
pub(crate) struct Wakes {
    all: [bool; GATES],
    one: [bool; GATES],
    committer: bool,
}

impl Wakes {
    /// Performs the wake-ups; call without holding the state mutex.
    pub(crate) fn run(self, shared: &Shared) {
        for (index, gate) in shared.gates.iter().enumerate() {
            if self.all[index] {
                gate.wake_all();
            } else if self.one[index] {
                gate.wake_one();
            }
        }
        if self.committer {
            shared.work_ready.notify_one();
        }
    }
}

impl State {
    pub(crate) fn new(last_lsn: Lsn, segments: Vec<SegmentMeta>) -> State {
        let disk_bytes = segments.iter().map(|s| s.bytes).sum();
        State {
            next_lsn: last_lsn + 1,
            pending: Batch {
                first_lsn: last_lsn + 1,
                ..Batch::default()
            },
            spare_batches: Vec::with_capacity(SYNC_SLOTS + 1),
            pending_leaders: 0,
            handoff_sent: false,
            writing: false,
            slot_busy: [false; SYNC_SLOTS],
            unwritten_bytes: 0,
            in_flight: VecDeque::with_capacity(SYNC_SLOTS + 1),
            written_lsn: last_lsn,
            synced_lsn: last_lsn,
            last_sync: Instant::now(),
            poisoned: None,
            epoch: 0,
            refusals: VecDeque::new(),
            refusals_first_epoch: 0,
            no_space_reason: String::new(),
            closing: false,
            batches_taken: 0,
            idle_committers: 0,
            progress_waiters: 0,
            space_waiters: 0,
            segments,
            disk_bytes,
            checkpoints: Vec::new(),
            checkpoint_position: 0,
            checkpoint_instant: Instant::now(),
            counters: Counters::default(),
            published: Progress::default(),
        }
    }

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

    /// Number of the pending batch (what its appenders wait for).
    pub(crate) fn pending_batch(&self) -> u64 {
        self.batches_taken + 1
    }

    /// True if `lsn` is still in the pending batch (not yet taken).
    pub(crate) fn is_pending(&self, lsn: Lsn) -> bool {
        !self.pending.is_empty() && lsn >= self.pending.first_lsn
    }

    /// A committer may start: the write token and a sync slot are free.
    pub(crate) fn can_commit(&self) -> bool {
        !self.writing && self.poisoned.is_none() && self.slot_busy.contains(&false)
    }

    /// Refuses the append if the log is poisoned, closing or full; copies
    /// the encoded record onto the pending batch if there is room.
    pub(crate) fn try_enqueue(
        &mut self,
        options: &LogOptions,
        kind: u8,
        payload: &[u8],
        payload_crc: u32,
    ) -> Result<Enqueued, LogError> {
        if let Some(reason) = &self.poisoned {
            return Err(LogError::Poisoned(reason.clone()));
        }
        if self.closing {
            return Err(LogError::Closed);
        }
        let record_bytes = (RECORD_HEADER_BYTES + payload.len()) as u64;
        // Reserve room for one more segment header: the record may rotate.
        let needed_bytes = record_bytes + SEGMENT_HEADER_BYTES as u64;
        let pending_bytes = self.pending.bytes.len() as u64;
        let used_bytes = self.disk_bytes + self.unwritten_bytes + pending_bytes;
        if used_bytes + needed_bytes > options.log_bytes_max {
            return Err(LogError::Full {
                used_bytes,
                needed_bytes,
                max_bytes: options.log_bytes_max,
            });
        }
        if !self.pending.is_empty() && pending_bytes + record_bytes > options.pending_bytes_max {
            return Ok(Enqueued::QueueFull);
        }
        let lsn = self.next_lsn;
        self.next_lsn += 1;
        let header = encode_record_header(lsn, kind, payload.len() as u32, payload_crc);
        if self.pending.is_empty() {
            self.pending.first_lsn = lsn;
        }
        self.pending.bytes.extend_from_slice(&header);
        self.pending.bytes.extend_from_slice(payload);
        self.pending.record_bytes.push(record_bytes as u32);
        self.pending.payload_crcs.push(payload_crc);
        Ok(Enqueued::Queued(lsn))
    }

    /// Takes the write token, a sync slot and the pending batch (possibly
    /// empty, for a sync alone). Precondition: `can_commit()`.
    pub(crate) fn take_batch(&mut self) -> (Batch, usize) {
        debug_assert!(self.can_commit());
        let slot = self
            .slot_busy
            .iter()
            .position(|busy| !busy)
            .expect("can_commit checked for a free slot");
        self.writing = true;
        self.slot_busy[slot] = true;
        let spare = self.spare_batches.pop().unwrap_or_default();
        let mut batch = std::mem::replace(&mut self.pending, spare);
        batch.synced_at_take = self.synced_lsn;
        self.pending.first_lsn = self.next_lsn;
        self.pending_leaders = 0;
        self.handoff_sent = false;
        if !batch.is_empty() {
            self.batches_taken += 1;
            self.unwritten_bytes = batch.bytes.len() as u64;
            self.in_flight.push_back(InFlight {
                batch: self.batches_taken,
                last_lsn: batch.last_lsn(),
            });
        }
        (batch, slot)
    }

    /// Keeps an emptied batch buffer for reuse.
    pub(crate) fn recycle(&mut self, mut batch: Batch) {
        if self.spare_batches.len() < SYNC_SLOTS + 1 {
            batch.clear_for_reuse();
            self.spare_batches.push(batch);
        }
    }

    /// Settles the batches whose records are now all acknowledged: their
    /// gates move on, and the woken appenders find `acked` past their LSN.
    pub(crate) fn settle(&mut self, shared: &Shared, wakes: &mut Wakes) {
        let acked = self.acked_lsn(shared.options.sync);
        shared.acked.store(acked, Ordering::SeqCst);
        while let Some(first) = self.in_flight.front().copied() {
            if first.last_lsn > acked {
                break;
            }
            self.in_flight.pop_front();
            let index = (first.batch % GATES as u64) as usize;
            if shared.gates[index].advance() {
                wakes.all[index] = true;
            }
        }
    }

    /// If the pending batch could be committed now, makes sure somebody
    /// does: preferably one of its own blocking appenders (no thread hop),
    /// else an idle committer thread. Called whenever a token comes free.
    pub(crate) fn hand_off(&mut self, shared: &Shared, wakes: &mut Wakes) {
        if self.progress_waiters > 0 {
            // `Log::sync` callers and queue-space waiters may now commit.
            shared.progress_changed.notify_all();
        }
        if self.pending.is_empty() || self.handoff_sent || !self.can_commit() {
            return;
        }
        if self.pending_leaders > 0 {
            let index = (self.pending_batch() % GATES as u64) as usize;
            if shared.gates[index].advance() {
                wakes.one[index] = true;
            }
            self.handoff_sent = true;
        } else if self.idle_committers > 0 {
            wakes.committer = true;
            self.handoff_sent = true;
        }
        // Otherwise a busy committer thread finds the work when it is done.
    }

    /// Asks an idle committer thread to take the pending batch (async
    /// appenders cannot commit themselves: they must not block).
    pub(crate) fn request_committer(&mut self, wakes: &mut Wakes) {
        if self.pending.is_empty() || self.handoff_sent || !self.can_commit() {
            return;
        }
        if self.idle_committers > 0 {
            wakes.committer = true;
            self.handoff_sent = true;
        }
    }

    pub(crate) fn progress(&self, sync: SyncMode) -> Progress {
        Progress {
            acked_lsn: self.acked_lsn(sync),
            synced_lsn: self.synced_lsn,
            batches_taken: self.batches_taken,
            poisoned: self.poisoned.is_some(),
            epoch: self.epoch,
        }
    }

    /// What became of the append of `lsn`, queued in `epoch`, in the
    /// light of the no-space refusals since: `Ok(epoch)` to keep waiting
    /// (the epoch to remember from now on), or the refusal.
    ///
    /// A refusal ending epoch `e` refused every LSN from its first refused
    /// LSN `from_e` on, and gave those LSNs out again. A record below
    /// `from_e` was written, and stays below every later refusal's first
    /// LSN (they never decrease), so it can never be refused any more
    /// (`EPOCH_WRITTEN`).
    pub(crate) fn fate(
        &self,
        epoch: u64,
        lsn: Lsn,
        dir: &std::path::Path,
    ) -> Result<u64, LogError> {
        if epoch == EPOCH_WRITTEN || epoch == self.epoch {
            return Ok(epoch);
        }
        let no_space = || LogError::NoSpace {
            dir: dir.to_path_buf(),
            reason: self.no_space_reason.clone(),
        };
        match epoch.checked_sub(self.refusals_first_epoch) {
            Some(index) => {
                let from = self.refusals[index as usize];
                if lsn >= from {
                    return Err(no_space());
                }
                Ok(EPOCH_WRITTEN)
            }
            // Forgotten: only a record at or past the oldest remembered
            // refusal's first LSN is certainly refused.
            None if self.refusals.front().is_some_and(|&from| lsn >= from) => Err(no_space()),
            None => Err(LogError::io(
                "learn the outcome of an append to",
                dir,
                std::io::Error::other(format!(
                    "more than {REFUSALS_KEPT} no-space refusals happened while LSN {lsn} \
                     waited; it may or may not be in the log"
                )),
            )),
        }
    }

    /// Refuses, for lack of space, every record of `batch` from index
    /// `published` on (the ones before went into a full segment and were
    /// synced and published by its rotation) and every record of the
    /// pending batch, which queued behind them with higher LSNs. Nothing
    /// of theirs is on disk (the writer cut its partial write back), so
    /// their LSNs are given out again: LSNs stay contiguous. Called by the
    /// writer with the write token held, so no later batch was taken.
    pub(crate) fn refuse_no_space(
        &mut self,
        shared: &Shared,
        batch: &Batch,
        published: usize,
        reason: String,
        wakes: &mut Wakes,
    ) {
        let from = batch.first_lsn + published as u64;
        let refused = self.next_lsn - from;
        tracing::warn!(dir = %shared.dir.display(), %reason, first_lsn = from, records = refused,
            "levee log: no space left, refusing the batch (the log stays open)");
        if self
            .in_flight
            .back()
            .is_some_and(|b| b.last_lsn == batch.last_lsn())
        {
            let refused_batch = self.in_flight.pop_back().expect("checked");
            self.wake_gate(shared, refused_batch.batch, wakes);
        }
        if !self.pending.is_empty() {
            self.batches_taken += 1;
            self.wake_gate(shared, self.batches_taken, wakes);
            self.pending.clear_for_reuse();
        }
        self.pending.first_lsn = from;
        self.pending_leaders = 0;
        self.handoff_sent = false;
        self.next_lsn = from;
        self.unwritten_bytes = 0;
        if self.refusals.len() == REFUSALS_KEPT {
            self.refusals.pop_front();
            self.refusals_first_epoch += 1;
        }
        self.refusals.push_back(from);
        self.epoch += 1;
        shared.epoch.store(self.epoch, Ordering::SeqCst);
        self.no_space_reason = reason;
        shared.publish(self);
        shared.progress_changed.notify_all();
    }

    fn wake_gate(&self, shared: &Shared, batch: u64, wakes: &mut Wakes) {
        let index = (batch % GATES as u64) as usize;
        if shared.gates[index].advance() {
            wakes.all[index] = true;
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

    /// Tells async waiters and `progress_changed` waiters what changed.
    /// Skips the wake-ups when nothing they wait for changed: the
    /// acknowledged LSN, the synced LSN, poisoning, or (only if someone
    /// waits for it) queue space.
    pub(crate) fn publish(&self, state: &mut State) {
        let progress = state.progress(self.options.sync);
        let previous = state.published;
        let changed = progress.acked_lsn != previous.acked_lsn
            || progress.synced_lsn != previous.synced_lsn
            || progress.poisoned != previous.poisoned
            || progress.epoch != previous.epoch
            || (state.space_waiters > 0 && progress.batches_taken != previous.batches_taken);
        if !changed {
            return;
        }
        state.published = progress;
        self.progress_tx.send_replace(progress);
        if state.progress_waiters > 0 {
            self.progress_changed.notify_all();
        }
    }

    /// Marks the log poisoned: logged loudly, every waiter woken, every
    /// later write refused.
    pub(crate) fn poison_locked(&self, state: &mut State, reason: String, wakes: &mut Wakes) {
        if state.poisoned.is_none() {
            tracing::error!(dir = %self.dir.display(), %reason, "levee log poisoned: refusing all further writes");
            state.poisoned = Some(reason);
        }
        for (index, gate) in self.gates.iter().enumerate() {
            if gate.advance() {
                wakes.all[index] = true;
            }
        }
        self.publish(state);
        self.progress_changed.notify_all();
        self.work_ready.notify_all();
    }
}
