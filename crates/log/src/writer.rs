//! Committing: the only code that writes to segment files.
//!
//! # Group commit without a thread hop
//!
//! An appender copies its encoded record onto the pending batch buffer
//! under the state mutex. Then, if nobody is writing and a sync slot is
//! free, the appender commits the batch itself, on its own thread: it takes
//! the batch (swapping in an empty buffer, so later appenders keep
//! queueing), writes it with one `write` at the segment's end, releases the
//! write token, runs one `fdatasync`, and publishes. A lone appender thus
//! pays exactly one `write` and one `fdatasync` per append and never waits
//! for another thread to be scheduled. If the tokens are busy, it sleeps on
//! its batch's gate; whoever frees a token next hands the pending batch to
//! one of its appenders (or to a committer thread), so under load every
//! batch carries everyone who arrived while the previous one was in flight.
//!
//! Async appenders must not block their executor, so they ask one of the
//! committer threads (`run_committer`) to do it; the committer threads also
//! run `SyncMode::EveryMs` syncs and the final sync at close.
//!
//! # Overlapping syncs
//!
//! The write token is held only for the `write`; the fdatasync runs after
//! it is released, in one of `SYNC_SLOTS` sync slots. So the next batch can
//! be written and synced while the previous fdatasync is still running:
//! on virtualised and flash storage two overlapping fdatasyncs complete in
//! about the time of one, and appenders no longer wait out a whole
//! in-flight sync before their own starts (with one slot, a steady load
//! splits into two groups taking turns, each waiting two sync times).
//!
//! Why this is safe: a successful fdatasync covers every byte written
//! before it was called, through any descriptor. What it reports is the
//! catch: Linux (since 4.13) reports a writeback error once per open file
//! description, to the first fsync on that description that checks after
//! the error. Two concurrent fdatasyncs on one description could therefore
//! split the verdict: one reports the error, the other returns success for
//! data that was lost. So each slot syncs through its own descriptor
//! (opened when the segment is created), and a slot runs one fdatasync at
//! a time and is released only after its verdict is processed. Then every
//! error reaches every slot's next fdatasync, and a success means that no
//! page written before the call failed. Its LSN is what was written before
//! it started (`covered`), and the watermark only ever moves up to it.
//!
//! # Failure policy
//!
//! If an fdatasync fails, the log is poisoned and nothing is written any
//! more. A failed fsync must not be retried: Linux may have already dropped
//! the dirty pages and cleared the error, so a second fsync can report
//! success for data that never reached the disk. Only a restart, whose
//! recovery reads back what is really on disk, is safe. A failed `write`
//! poisons too, with one exception:
//!
//! A full file system (ENOSPC, or EDQUOT for a quota) refuses the batch
//! instead. Nothing was lost behind our back: the kernel only declined to
//! allocate. So the writer cuts off whatever part of the batch did land
//! (truncating the segment to its valid end, which needs no space, and
//! syncing that, so that neither the next batch nor recovery ever sees
//! half a refused batch; a preallocated segment thereby gives up its free
//! space and grows by appending), and the state refuses the batch and the
//! records queued behind it with `LogError::NoSpace`, handing their LSNs
//! out again (`State::refuse_no_space`). A rotation that cannot create the
//! next segment for lack of space is refused the same way and retried by
//! the next batch. The next batch that finds space is written as usual.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

use crate::format::{RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES, stamp_unsynced_span};
use crate::fsio::{SyncFaults, describe_io_error, is_no_space, sync_data};
use crate::segment::{SegmentMeta, SparePreparer, create_segment, install_spare, seal_segment};
use crate::state::{Batch, SYNC_SLOTS, Shared, State, Wakes};
use crate::{LogError, Lsn, SyncMode};

/// The segment recovery leaves open for appending.
pub(crate) struct ActiveFile {
    pub file: File,
    pub path: PathBuf,
    /// Valid bytes in the file (header + records): where the next write goes.
    pub bytes: u64,
    /// Length of the file: more than `bytes` if it is preallocated.
    pub file_bytes: u64,
    /// Records in the file.
    pub records: u64,
    /// The segment is format version 3: records carry `unsynced_span`.
    pub has_spans: bool,
}

/// Why a batch was not (wholly) written.
pub(crate) struct WriteFailure {
    pub reason: String,
    /// Out of space with nothing of the refused records left on disk:
    /// refuse them, do not poison.
    pub no_space: bool,
    /// Records of the batch already published (they went into a segment
    /// that a rotation then synced) before the failure.
    pub published: usize,
}

/// A failure before it is known how much of the batch was published.
struct Failed {
    reason: String,
    no_space: bool,
}

impl Failed {
    fn fatal(reason: String) -> Failed {
        Failed {
            reason,
            no_space: false,
        }
    }

    /// Out of space while creating the next segment (not while syncing:
    /// sync failures always poison).
    fn from_rotation(what: &str, error: LogError) -> Failed {
        let no_space = matches!(&error, LogError::Io { op, source, .. }
            if is_no_space(source) && !op.contains("sync"));
        Failed {
            reason: format!("{what} failed: {error}"),
            no_space,
        }
    }
}

/// The file side of the log. Locked only by the holder of the write token.
pub(crate) struct Writer {
    path: PathBuf,
    /// Descriptor for writes, and for the full sync before a rotation.
    file: Arc<File>,
    /// One descriptor per sync slot (see "Overlapping syncs").
    sync_files: [Arc<File>; SYNC_SLOTS],
    bytes: u64,
    /// Length of the file (see `ActiveFile::file_bytes`).
    file_bytes: u64,
    records: u64,
    has_spans: bool,
    spare: SparePreparer,
    /// A spare was asked for since the active segment was created.
    spare_wanted: bool,
}

impl Writer {
    pub(crate) fn new(active: ActiveFile, spare: SparePreparer) -> Result<Writer, LogError> {
        let sync_files = open_sync_files(&active.path)?;
        Ok(Writer {
            path: active.path,
            file: Arc::new(active.file),
            sync_files,
            bytes: active.bytes,
            file_bytes: active.file_bytes,
            records: active.records,
            has_spans: active.has_spans,
            spare,
            spare_wanted: false,
        })
    }

    /// At a clean close: stops the spare thread (deleting an unused spare)
    /// and, unless the log is poisoned, cuts the active segment's free
    /// space, so that a closed log holds exactly its records. Failures
    /// only cost disk space (free space is valid in a version 2 segment).
    pub(crate) fn close(&mut self, poisoned: bool) {
        self.spare.stop();
        if !poisoned && self.file_bytes > self.bytes {
            match seal_segment(&self.file, &self.path, self.bytes) {
                Ok(()) => self.file_bytes = self.bytes,
                Err(error) => {
                    tracing::warn!(%error, "cannot cut the free space off the last segment")
                }
            }
        }
    }

    /// Writes `batch`, rotating where a record would not fit. Records that
    /// went into segments before the last rotation are published here; the
    /// returned index is the first record not yet published (all from it on
    /// are in the current segment).
    fn write_batch(&mut self, shared: &Shared, batch: &mut Batch) -> Result<usize, WriteFailure> {
        let segment_bytes_max = shared.options.segment_bytes_max;
        let mut published = 0;
        let (mut index, mut offset) = (0, 0);
        let failure = |failed: Failed, published: usize| WriteFailure {
            reason: failed.reason,
            no_space: failed.no_space,
            published,
        };
        while index < batch.records() {
            let (first, start) = (index, offset);
            while index < batch.records() {
                let record_bytes = u64::from(batch.record_bytes[index]);
                let in_segment = self.records + (index - first) as u64;
                let chunk = (offset - start) as u64;
                if in_segment > 0 && self.bytes + chunk + record_bytes > segment_bytes_max {
                    break;
                }
                if self.has_spans {
                    stamp_span(batch, index, offset);
                }
                offset += batch.record_bytes[index] as usize;
                index += 1;
            }
            self.write_at_end(&batch.bytes[start..offset], &shared.faults)
                .map_err(|failed| failure(failed, published))?;
            self.records += (index - first) as u64;
            self.want_spare_if_due(segment_bytes_max);
            if index < batch.records() {
                {
                    let mut state = shared.lock();
                    note_written(&mut state, batch, published..index, self.bytes);
                }
                published = index;
                self.rotate(shared, batch.first_lsn + index as u64)
                    .map_err(|failed| failure(failed, published))?;
            }
        }
        Ok(published)
    }

    fn write_at_end(&mut self, bytes: &[u8], faults: &SyncFaults) -> Result<(), Failed> {
        let mut written = 0;
        if !bytes.is_empty() && faults.take_write_no_space() {
            // Injected (tests): half the bytes land, then the disk is full.
            let half = bytes.len().div_ceil(2);
            if self.file.write_all_at(&bytes[..half], self.bytes).is_ok() {
                written = half;
            }
            let error = std::io::Error::from_raw_os_error(libc::ENOSPC);
            return Err(self.failed_write(&error, written));
        }
        while written < bytes.len() {
            match self
                .file
                .write_at(&bytes[written..], self.bytes + written as u64)
            {
                Ok(0) => {
                    let error = std::io::Error::from(std::io::ErrorKind::WriteZero);
                    return Err(self.failed_write(&error, written));
                }
                Ok(count) => written += count,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => return Err(self.failed_write(&error, written)),
            }
        }
        self.bytes += bytes.len() as u64;
        self.file_bytes = self.file_bytes.max(self.bytes);
        Ok(())
    }

    /// A write failed after `written` bytes of it landed. Out of space,
    /// those bytes are cut off again (see "Failure policy"); if that
    /// fails too, or the error is another one, the log must be poisoned.
    fn failed_write(&mut self, error: &std::io::Error, written: usize) -> Failed {
        let reason = format!(
            "write to {} failed: {}",
            self.path.display(),
            describe_io_error(error)
        );
        if !is_no_space(error) {
            return Failed::fatal(reason);
        }
        if written > 0 {
            if let Err(cut) = seal_segment(&self.file, &self.path, self.bytes) {
                return Failed::fatal(format!(
                    "{reason}; cutting the partly written batch off again failed too: {cut}"
                ));
            }
            self.file_bytes = self.bytes;
        }
        Failed {
            reason,
            no_space: true,
        }
    }

    /// Asks for the next segment's spare once this one is half full.
    fn want_spare_if_due(&mut self, segment_bytes_max: u64) {
        if !self.spare_wanted && self.bytes >= segment_bytes_max / 2 {
            self.spare.want();
            self.spare_wanted = true;
        }
    }

    /// Closes the full segment durably and starts the next one at
    /// `first_lsn`. The old segment is synced first in every mode: a later
    /// segment must never exist on disk while an earlier one may still lose
    /// its tail, or a power loss would turn a torn tail into mid-log
    /// corruption.
    fn rotate(&mut self, shared: &Shared, first_lsn: Lsn) -> Result<(), Failed> {
        sync_data(&self.file, &shared.faults)
            .map_err(|e| Failed::fatal(sync_failure(&self.path, &e)))?;
        let base_position = {
            let mut state = shared.lock();
            let covered = state.written_lsn;
            let mut wakes = Wakes::default();
            mark_synced(shared, &mut state, covered, &mut wakes);
            let base_position = state.active().end_position();
            drop(state);
            wakes.run(shared);
            base_position
        };
        if self.file_bytes > self.bytes {
            seal_segment(&self.file, &self.path, self.bytes).map_err(|error| {
                Failed::fatal(format!("sealing the full segment failed: {error}"))
            })?;
            self.file_bytes = self.bytes;
        }
        let (file, path, file_bytes) = match self.spare.take() {
            Some((spare, spare_path)) => {
                let spare_path = spare_path.to_path_buf();
                let installed =
                    install_spare(&shared.dir, spare, &spare_path, first_lsn, &shared.faults);
                let (file, path) = installed.map_err(|error| {
                    // Its space is better given back than kept for a retry.
                    let _ = std::fs::remove_file(&spare_path);
                    Failed::from_rotation("installing the next segment", error)
                })?;
                (file, path, shared.options.segment_bytes_max)
            }
            None => {
                let (file, path) = create_segment(&shared.dir, first_lsn, &shared.faults)
                    .map_err(|error| Failed::from_rotation("creating the next segment", error))?;
                (file, path, SEGMENT_HEADER_BYTES as u64)
            }
        };
        let sync_files = open_sync_files(&path)
            .map_err(|error| Failed::fatal(format!("opening the next segment failed: {error}")))?;
        self.path = path.clone();
        self.file = Arc::new(file);
        self.sync_files = sync_files;
        self.bytes = SEGMENT_HEADER_BYTES as u64;
        self.file_bytes = file_bytes;
        self.records = 0;
        self.has_spans = true;
        self.spare_wanted = false;
        let mut state = shared.lock();
        state
            .segments
            .push(SegmentMeta::empty(path, first_lsn, base_position));
        state.disk_bytes += SEGMENT_HEADER_BYTES as u64;
        Ok(())
    }
}

/// Stamps record `index` of `batch`, whose header starts at `offset` in
/// `batch.bytes`, with its `unsynced_span` (format version 3).
fn stamp_span(batch: &mut Batch, index: usize, offset: usize) {
    let header: &mut [u8; RECORD_HEADER_BYTES] = (&mut batch.bytes
        [offset..offset + RECORD_HEADER_BYTES])
        .try_into()
        .expect("a record starts with a whole header");
    stamp_unsynced_span(header, batch.synced_at_take, batch.payload_crcs[index]);
}

fn open_sync_files(path: &std::path::Path) -> Result<[Arc<File>; SYNC_SLOTS], LogError> {
    let open = || {
        File::open(path)
            .map(Arc::new)
            .map_err(|e| LogError::io("open for syncing", path, e))
    };
    Ok([open()?, open()?])
}

/// Accounts for `batch.records[range]`, just written to the active segment,
/// whose size is now `segment_bytes`.
fn note_written(
    state: &mut State,
    batch: &Batch,
    range: std::ops::Range<usize>,
    segment_bytes: u64,
) {
    if range.is_empty() {
        return;
    }
    let records = range.len() as u64;
    let mut added_bytes = 0;
    let segment = state.active();
    for index in range {
        let record_bytes = u64::from(batch.record_bytes[index]);
        segment.note_appended(batch.first_lsn + index as u64, record_bytes);
        added_bytes += record_bytes;
    }
    debug_assert_eq!(
        segment.bytes, segment_bytes,
        "writer and state agree on the segment size"
    );
    let last_lsn = segment.last_lsn;
    state.disk_bytes += added_bytes;
    state.unwritten_bytes -= added_bytes;
    state.written_lsn = last_lsn;
    state.counters.records_written += records;
    state.counters.batches_written += 1;
}

/// Records a successful fdatasync that covered everything written up to
/// `covered`, and settles the batches it acknowledges.
fn mark_synced(shared: &Shared, state: &mut State, covered: Lsn, wakes: &mut Wakes) {
    state.counters.fsyncs += 1;
    if covered > state.synced_lsn {
        state.synced_lsn = covered;
    }
    state.settle(shared, wakes);
    shared.publish(state);
}

/// Commits the pending batch (which may be empty: then it is a sync
/// alone), as the calling thread. Called with the state locked and
/// `state.can_commit()`; returns with it unlocked. `force_sync` syncs in
/// every mode (`Log::sync`, close, `EveryMs` timer). Returns an error if
/// the log is poisoned, by this commit or another.
pub(crate) fn commit(
    shared: &Shared,
    mut state: MutexGuard<'_, State>,
    force_sync: bool,
) -> Result<(), LogError> {
    let (mut batch, slot) = state.take_batch();
    if state.space_waiters > 0 {
        // Queue space was freed.
        shared.publish(&mut state);
    }
    drop(state);

    let mut writer = shared.writer.lock().unwrap_or_else(|p| p.into_inner());
    let written = writer.write_batch(shared, &mut batch);
    let segment_bytes = writer.bytes;
    let sync_file = Arc::clone(&writer.sync_files[slot]);
    let sync_path = writer.path.clone();
    drop(writer);

    let mut state = shared.lock();
    let mut wakes = Wakes::default();
    state.writing = false;
    let unpublished = match written {
        Ok(unpublished) => unpublished,
        Err(failure) if failure.no_space => {
            state.slot_busy[slot] = false;
            let reason = failure.reason;
            state.refuse_no_space(shared, &batch, failure.published, reason, &mut wakes);
            state.recycle(batch);
            state.hand_off(shared, &mut wakes);
            return finish(shared, state, wakes);
        }
        Err(failure) => {
            state.slot_busy[slot] = false;
            shared.poison_locked(&mut state, failure.reason, &mut wakes);
            return finish(shared, state, wakes);
        }
    };
    let clean_before = state.written_lsn == state.synced_lsn;
    note_written(
        &mut state,
        &batch,
        unpublished..batch.records(),
        segment_bytes,
    );
    state.recycle(batch);
    let unsynced = state.written_lsn > state.synced_lsn;
    let sync_now = unsynced
        && match shared.options.sync {
            SyncMode::Always => true,
            SyncMode::EveryMs(interval_ms) => {
                force_sync || state.last_sync.elapsed() >= Duration::from_millis(interval_ms)
            }
            SyncMode::Never => force_sync,
        };
    if !sync_now {
        state.slot_busy[slot] = false;
        if unsynced && clean_before && state.idle_committers > 0 {
            // EveryMs: an idle committer thread must arm its timer.
            shared.work_ready.notify_one();
        }
    }
    state.settle(shared, &mut wakes);
    shared.publish(&mut state);
    state.hand_off(shared, &mut wakes);
    if !sync_now {
        return finish(shared, state, wakes);
    }
    let covered = state.written_lsn;
    if let SyncMode::EveryMs(_) = shared.options.sync {
        // Only the timer needs it: no clock read per batch otherwise.
        state.last_sync = Instant::now();
    }
    drop(state);
    wakes.run(shared);

    let synced = sync_data(&sync_file, &shared.faults);

    let mut state = shared.lock();
    let mut wakes = Wakes::default();
    state.slot_busy[slot] = false;
    match synced {
        Ok(()) => {
            mark_synced(shared, &mut state, covered, &mut wakes);
            state.hand_off(shared, &mut wakes);
        }
        Err(error) => {
            let reason = sync_failure(&sync_path, &error);
            shared.poison_locked(&mut state, reason, &mut wakes);
        }
    }
    finish(shared, state, wakes)
}

/// Unlocks, wakes whoever must be woken, and reports poisoning.
fn finish(shared: &Shared, state: MutexGuard<'_, State>, wakes: Wakes) -> Result<(), LogError> {
    let result = match &state.poisoned {
        Some(reason) => Err(LogError::Poisoned(reason.clone())),
        None => Ok(()),
    };
    if state.closing {
        // Committer threads wait for in-flight work to end before closing.
        shared.work_ready.notify_all();
    }
    drop(state);
    wakes.run(shared);
    result
}

/// A committer thread: commits for async appenders (which cannot block),
/// runs `EveryMs` syncs, and syncs everything at close. Runs until the log
/// closes or is poisoned.
pub(crate) fn run_committer(shared: Arc<Shared>) {
    let mut state = shared.lock();
    loop {
        if state.poisoned.is_some() {
            return;
        }
        let quiet = state.pending.is_empty() && !state.writing && !state.slot_busy.contains(&true);
        let unsynced = state.written_lsn > state.synced_lsn;
        let timer_due = match shared.options.sync {
            SyncMode::EveryMs(interval_ms) => {
                unsynced && state.last_sync.elapsed() >= Duration::from_millis(interval_ms)
            }
            _ => false,
        };
        let closing_sync = state.closing && quiet && unsynced;
        if state.can_commit() && (!state.pending.is_empty() || timer_due || closing_sync) {
            let force_sync = timer_due || state.closing;
            // Errors poison the log; the loop then ends above.
            let _ = commit(&shared, state, force_sync);
            state = shared.lock();
            continue;
        }
        if state.closing && quiet && !unsynced {
            return;
        }
        let timeout = match shared.options.sync {
            SyncMode::EveryMs(interval_ms) if unsynced => Some(
                (state.last_sync + Duration::from_millis(interval_ms))
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            ),
            _ => None,
        };
        state.idle_committers += 1;
        state = match timeout {
            Some(timeout) => {
                shared
                    .work_ready
                    .wait_timeout(state, timeout)
                    .unwrap_or_else(|poison| poison.into_inner())
                    .0
            }
            None => shared
                .work_ready
                .wait(state)
                .unwrap_or_else(|poison| poison.into_inner()),
        };
        state.idle_committers -= 1;
    }
}

fn sync_failure(path: &std::path::Path, error: &std::io::Error) -> String {
    format!(
        "fdatasync of {} failed: {}; the kernel may have dropped the unsynced pages, so the \
         sync is not retried",
        path.display(),
        describe_io_error(error)
    )
}
