//! The writer thread: the only code that writes to segment files.
//!
//! Group commit: appenders queue records and wait; the writer swaps out the
//! whole queue, gathers it into one buffer, issues one `write` and one
//! `fdatasync` for all of it, then publishes the new watermark, which
//! releases every appender whose LSN it covers. While it syncs, new records
//! pile up in the queue for the next round, so under load each fsync is
//! shared by as many appenders as are waiting, and nobody waits for a timer.
//!
//! Failure policy: if a write or an fdatasync fails, the log is poisoned and
//! this thread stops. A failed fsync must not be retried: Linux may have
//! already dropped the dirty pages and cleared the error, so a second fsync
//! can report success for data that never reached the disk. Only a restart,
//! whose recovery reads back what is really on disk, is safe.

use std::fs::File;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::format::SEGMENT_HEADER_BYTES;
use crate::fsio::{describe_io_error, sync_data};
use crate::segment::{SegmentMeta, create_segment};
use crate::state::{PendingRecord, Shared};
use crate::{Lsn, SyncMode};

/// The segment the writer appends to.
pub(crate) struct ActiveFile {
    pub file: File,
    /// Valid bytes in the file (header + records).
    pub bytes: u64,
    /// Records in the file.
    pub records: u64,
}

/// A failed write-path step: which call failed on which file.
struct WriteFailure(String);

/// What one wait for work yielded.
struct Work {
    force_sync: bool,
    closing: bool,
}

/// Runs until the log closes or is poisoned.
pub(crate) fn run_writer(shared: Arc<Shared>, mut active: ActiveFile) {
    let mut batch: Vec<PendingRecord> = Vec::new();
    let mut buffer: Vec<u8> = Vec::new();
    let mut last_sync = Instant::now();
    loop {
        let Some(work) = wait_for_work(&shared, &mut batch, last_sync) else {
            return;
        };
        if let Err(WriteFailure(reason)) =
            write_batch(&shared, &mut active, &mut batch, &mut buffer)
        {
            shared.poison(reason);
            return;
        }
        if let Err(WriteFailure(reason)) =
            sync_if_due(&shared, &active, work.force_sync, &mut last_sync)
        {
            shared.poison(reason);
            return;
        }
        if work.closing && shared.lock().pending.is_empty() {
            return;
        }
    }
}

/// Blocks until there is something to do, then takes the pending queue.
/// Returns `None` if the log is poisoned (nothing may be written any more).
fn wait_for_work(
    shared: &Shared,
    batch: &mut Vec<PendingRecord>,
    last_sync: Instant,
) -> Option<Work> {
    let mut state = shared.lock();
    loop {
        if state.poisoned.is_some() {
            return None;
        }
        if !state.pending.is_empty() || state.sync_requested || state.closing {
            break;
        }
        let unsynced = state.written_lsn > state.synced_lsn;
        state = match shared.options.sync {
            SyncMode::EveryMs(interval_ms) if unsynced => {
                let due = last_sync + Duration::from_millis(interval_ms);
                let now = Instant::now();
                if now >= due {
                    break;
                }
                shared
                    .work_ready
                    .wait_timeout(state, due - now)
                    .unwrap_or_else(|poison| poison.into_inner())
                    .0
            }
            _ => shared
                .work_ready
                .wait(state)
                .unwrap_or_else(|poison| poison.into_inner()),
        };
    }
    debug_assert!(batch.is_empty());
    std::mem::swap(&mut state.pending, batch);
    state.pending_bytes = 0;
    state.batches_taken += 1;
    let work = Work {
        force_sync: std::mem::take(&mut state.sync_requested) || state.closing,
        closing: state.closing,
    };
    // Queue space was freed: wake appenders waiting for it.
    shared.publish(&mut state);
    Some(work)
}

/// Writes the batch, rotating segments where a record would not fit, and
/// publishes the new `written_lsn`.
fn write_batch(
    shared: &Shared,
    active: &mut ActiveFile,
    batch: &mut Vec<PendingRecord>,
    buffer: &mut Vec<u8>,
) -> Result<(), WriteFailure> {
    if batch.is_empty() {
        return Ok(());
    }
    let segment_bytes_max = shared.options.segment_bytes_max;
    // Records batch[published..gathered] are in `buffer`, not yet written.
    let mut published = 0;
    buffer.clear();
    for gathered in 0..batch.len() {
        let record_bytes = batch[gathered].disk_bytes();
        let in_buffer = buffer.len() as u64;
        if active.records > 0 && active.bytes + in_buffer + record_bytes > segment_bytes_max {
            write_all(shared, active, buffer)?;
            publish_written(shared, active, &batch[published..gathered]);
            published = gathered;
            rotate(shared, active, lsn_of(&batch[gathered]))?;
        }
        let record = &batch[gathered];
        buffer.extend_from_slice(&record.header);
        buffer.extend_from_slice(&record.payload);
        active.records += 1;
    }
    write_all(shared, active, buffer)?;
    publish_written(shared, active, &batch[published..]);
    batch.clear();
    Ok(())
}

fn lsn_of(record: &PendingRecord) -> Lsn {
    u64::from_le_bytes(record.header[8..16].try_into().expect("8 bytes"))
}

/// One `write` of everything gathered (the kernel may split it; `write_all`
/// loops). Leaves `buffer` empty.
fn write_all(
    shared: &Shared,
    active: &mut ActiveFile,
    buffer: &mut Vec<u8>,
) -> Result<(), WriteFailure> {
    if buffer.is_empty() {
        return Ok(());
    }
    active.file.write_all(buffer).map_err(|error| {
        let path = shared.lock().active().path.clone();
        WriteFailure(format!(
            "write to {} failed: {}",
            path.display(),
            describe_io_error(&error)
        ))
    })?;
    active.bytes += buffer.len() as u64;
    buffer.clear();
    Ok(())
}

/// Records that `records` reached the active segment file.
fn publish_written(shared: &Shared, active: &ActiveFile, records: &[PendingRecord]) {
    if records.is_empty() {
        return;
    }
    let mut state = shared.lock();
    let mut added_bytes = 0;
    let segment = state.active();
    for record in records {
        segment.note_appended(lsn_of(record), record.disk_bytes());
        added_bytes += record.disk_bytes();
    }
    debug_assert_eq!(
        segment.bytes, active.bytes,
        "writer and state agree on the segment size"
    );
    let last_lsn = segment.last_lsn;
    state.disk_bytes += added_bytes;
    state.written_lsn = last_lsn;
    state.counters.records_written += records.len() as u64;
    state.counters.batches_written += 1;
    shared.publish(&mut state);
}

/// Closes the full segment durably and starts the next one at `first_lsn`.
/// The old segment is synced first in every mode: a later segment must
/// never exist on disk while an earlier one may still lose its tail, or a
/// power loss would turn a torn tail into mid-log corruption.
fn rotate(shared: &Shared, active: &mut ActiveFile, first_lsn: Lsn) -> Result<(), WriteFailure> {
    let (old_path, base_position) = {
        let mut state = shared.lock();
        let segment = state.active();
        (segment.path.clone(), segment.end_position())
    };
    sync_data(&active.file, &shared.faults).map_err(|error| sync_failure(&old_path, &error))?;
    mark_synced(shared, None);
    let (file, path) = create_segment(&shared.dir, first_lsn, &shared.faults)
        .map_err(|error| WriteFailure(format!("creating the next segment failed: {error}")))?;
    *active = ActiveFile {
        file,
        bytes: SEGMENT_HEADER_BYTES as u64,
        records: 0,
    };
    let mut state = shared.lock();
    state
        .segments
        .push(SegmentMeta::empty(path, first_lsn, base_position));
    state.disk_bytes += SEGMENT_HEADER_BYTES as u64;
    Ok(())
}

/// Syncs the active segment if the mode (or a caller) asks for it now.
fn sync_if_due(
    shared: &Shared,
    active: &ActiveFile,
    force_sync: bool,
    last_sync: &mut Instant,
) -> Result<(), WriteFailure> {
    let (written, synced, path) = {
        let mut state = shared.lock();
        (
            state.written_lsn,
            state.synced_lsn,
            state.active().path.clone(),
        )
    };
    let due = match shared.options.sync {
        SyncMode::Always => true,
        SyncMode::EveryMs(interval_ms) => last_sync.elapsed() >= Duration::from_millis(interval_ms),
        SyncMode::Never => false,
    };
    if !(due || force_sync) {
        return Ok(());
    }
    if written == synced {
        // Nothing new; still answer a forced sync request.
        mark_synced(shared, Some(written));
        return Ok(());
    }
    sync_data(&active.file, &shared.faults).map_err(|error| sync_failure(&path, &error))?;
    *last_sync = Instant::now();
    mark_synced(shared, Some(written));
    Ok(())
}

/// Publishes that everything written so far (or up to `through`) is on
/// stable storage.
fn mark_synced(shared: &Shared, through: Option<Lsn>) {
    let mut state = shared.lock();
    let through = through.unwrap_or(state.written_lsn);
    debug_assert!(through <= state.written_lsn);
    if through > state.synced_lsn {
        state.synced_lsn = through;
        state.counters.fsyncs += 1;
    }
    shared.publish(&mut state);
}

fn sync_failure(path: &std::path::Path, error: &std::io::Error) -> WriteFailure {
    WriteFailure(format!(
        "fdatasync of {} failed: {}; the kernel may have dropped the unsynced pages, so the \
         sync is not retried",
        path.display(),
        describe_io_error(error)
    ))
}
