//! `Log`: the handle the host holds. Appends (blocking and async, both
//! group-committed, see `writer`), reads, checkpoints, compaction and
//! status, on top of the shared state.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::watch;

use crate::checkpoint::{
    CheckpointInfo, checkpoint_file_name, decode_state, encode_checkpoint, load_checkpoint_file,
    now_unix_ms,
};
use crate::format::{SEGMENT_HEADER_BYTES, payload_crc};
use crate::fsio::{DirLock, SyncFaults, sync_dir, write_file_atomically};
use crate::gate::Gate;
use crate::reader::{LogReader, skip_to};
use crate::recovery::recover;
use crate::segment::{SegmentMeta, SparePreparer};
use crate::state::{EPOCH_WRITTEN, Enqueued, GATES, SYNC_SLOTS, Shared, State, Wakes};
use crate::status::{CompactReport, LogStatus, RecoveryReport};
use crate::writer::{Writer, commit, run_committer};
use crate::{LogError, LogOptions, Lsn};

/// The durable append-only log. Cheap to clone (an `Arc` inside); every
/// clone is the same log. The committer threads stop, after syncing
/// everything queued, when the last clone is dropped; that drop therefore
/// blocks for one fdatasync (do it outside async code, or call `sync` first).
#[derive(Clone)]
pub struct Log {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    committers: Vec<JoinHandle<()>>,
    /// Serialises checkpoints and compactions with each other.
    maintenance: Mutex<()>,
    _dir_lock: DirLock,
}

impl Drop for Inner {
    fn drop(&mut self) {
        {
            let mut state = self.shared.lock();
            state.closing = true;
        }
        self.shared.work_ready.notify_all();
        for committer in self.committers.drain(..) {
            // A panicked committer has nothing left to flush.
            let _ = committer.join();
        }
        let poisoned = self.shared.lock().poisoned.is_some();
        self.shared
            .writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .close(poisoned);
    }
}

impl Log {
    /// Opens (creating if needed) the log in `dir` and recovers it: see
    /// [`RecoveryReport`] for what recovery may have done.
    pub fn open(dir: &Path, options: LogOptions) -> Result<(Log, RecoveryReport), LogError> {
        options.validate()?;
        std::fs::create_dir_all(dir).map_err(|e| LogError::io("create directory", dir, e))?;
        let dir_lock = DirLock::acquire(dir)?;
        let faults = SyncFaults::default();
        let recovered = recover(dir, &options, &faults)?;
        let last_lsn = recovered
            .segments
            .last()
            .expect("recovery leaves a segment")
            .last_lsn;
        let checkpoint_lsn = recovered.checkpoints.last().map_or(0, |c| c.covers_lsn);
        let checkpoint_position = position_of(&recovered.segments, checkpoint_lsn + 1)?;
        let mut state = State::new(last_lsn, recovered.segments);
        state.checkpoints = recovered.checkpoints;
        state.checkpoint_position = checkpoint_position;
        state.published = state.progress(options.sync);
        let (progress_tx, _) = watch::channel(state.published);
        let spare = SparePreparer::start(dir, options.segment_bytes_max);
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            options,
            acked: AtomicU64::new(last_lsn),
            epoch: AtomicU64::new(0),
            state: Mutex::new(state),
            writer: Mutex::new(Writer::new(recovered.active, spare)?),
            work_ready: Condvar::new(),
            progress_changed: Condvar::new(),
            gates: std::array::from_fn::<Gate, GATES, _>(|_| Gate::new()),
            progress_tx,
            faults,
        });
        let mut committers = Vec::with_capacity(SYNC_SLOTS);
        for index in 0..SYNC_SLOTS {
            let committer_shared = Arc::clone(&shared);
            let committer = std::thread::Builder::new()
                .name(format!("levee-log-commit-{index}"))
                .spawn(move || run_committer(committer_shared));
            match committer {
                Ok(handle) => committers.push(handle),
                Err(e) => {
                    shared.lock().closing = true;
                    shared.work_ready.notify_all();
                    for handle in committers {
                        let _ = handle.join();
                    }
                    return Err(LogError::io("spawn a committer thread for", dir, e));
                }
            }
        }
        tracing::info!(dir = %dir.display(), report = %recovered.report, "levee log opened");
        let inner = Inner {
            shared,
            committers,
            maintenance: Mutex::new(()),
            _dir_lock: dir_lock,
        };
        Ok((
            Log {
                inner: Arc::new(inner),
            },
            recovered.report,
        ))
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// The directory this log lives in.
    pub fn dir(&self) -> &Path {
        &self.shared().dir
    }

    pub fn options(&self) -> &LogOptions {
        &self.shared().options
    }

    fn check_record_size(&self, payload: &[u8]) -> Result<(), LogError> {
        let max = self.options().record_bytes_max;
        if payload.len() as u64 > u64::from(max) {
            return Err(LogError::RecordTooLarge {
                bytes: payload.len() as u64,
                max,
            });
        }
        Ok(())
    }

    /// Appends a record and returns its LSN once it is durable per the
    /// [`SyncMode`](crate::SyncMode). Never blocks the calling thread: it
    /// takes a mutex to copy the record into the pending batch and then
    /// awaits a committer thread. Dropping the future after it was first
    /// polled does not un-append the record.
    pub async fn append(&self, kind: u8, payload: Vec<u8>) -> Result<Lsn, LogError> {
        self.check_record_size(&payload)?;
        let crc = payload_crc(&payload);
        let shared = self.shared();
        let mut progress = shared.progress_tx.subscribe();
        let (lsn, mut epoch) = loop {
            let space_wait = {
                let mut state = shared.lock();
                let mut wakes = Wakes::default();
                let enqueued = state.try_enqueue(&shared.options, kind, &payload, crc)?;
                state.request_committer(&mut wakes);
                match enqueued {
                    Enqueued::Queued(lsn) => {
                        let epoch = state.epoch;
                        drop(state);
                        wakes.run(shared);
                        break (lsn, epoch);
                    }
                    Enqueued::QueueFull => {
                        progress.borrow_and_update();
                        let waiter = SpaceWaiter::register(shared, state);
                        wakes.run(shared);
                        waiter
                    }
                }
            };
            let changed = progress.changed().await;
            drop(space_wait);
            changed.map_err(|_| LogError::Closed)?;
        };
        drop(payload);
        loop {
            let reached = *progress
                .wait_for(|p| {
                    p.poisoned || (epoch != EPOCH_WRITTEN && p.epoch != epoch) || p.acked_lsn >= lsn
                })
                .await
                .map_err(|_| LogError::Closed)?;
            if reached.poisoned {
                return Err(self.poisoned_error());
            }
            if epoch == EPOCH_WRITTEN || reached.epoch == epoch {
                // No LSN was given out again since: `acked_lsn` is ours.
                return Ok(lsn);
            }
            epoch = shared.lock().fate(epoch, lsn, &shared.dir)?;
        }
    }

    /// Appends a record and returns its LSN once it is durable per the
    /// [`SyncMode`](crate::SyncMode), blocking the calling thread meanwhile.
    /// If no commit is in progress, the calling thread commits its record
    /// itself (with whatever else is pending), so that a lone appender pays
    /// one `write` + one `fdatasync` and no thread hand-over.
    pub fn append_blocking(&self, kind: u8, payload: Vec<u8>) -> Result<Lsn, LogError> {
        self.check_record_size(&payload)?;
        let crc = payload_crc(&payload);
        let shared = self.shared();
        let mut state = shared.lock();
        let lsn = loop {
            match state.try_enqueue(&shared.options, kind, &payload, crc)? {
                Enqueued::Queued(lsn) => break lsn,
                Enqueued::QueueFull if state.can_commit() => {
                    // Commit the full batch out of the way, then queue.
                    let _ = commit(shared, state, false);
                    state = shared.lock();
                }
                Enqueued::QueueFull => {
                    state.space_waiters += 1;
                    state.progress_waiters += 1;
                    state = wait(&shared.progress_changed, state);
                    state.progress_waiters -= 1;
                    state.space_waiters -= 1;
                }
            }
        };
        self.wait_appended(state, lsn, payload)
    }

    /// Waits until the blocking append of `lsn` is acknowledged, committing
    /// it when the tokens come free while it is still pending.
    fn wait_appended(
        &self,
        state: MutexGuard<'_, State>,
        lsn: Lsn,
        payload: Vec<u8>,
    ) -> Result<Lsn, LogError> {
        let shared = self.shared();
        let sync = shared.options.sync;
        let gate = &shared.gates[(state.pending_batch() % GATES as u64) as usize];
        let mut epoch = state.epoch;
        let mut state = Some(state);
        let mut payload = Some(payload);
        let mut counted = false;
        loop {
            let mut guard = state.take().unwrap_or_else(|| shared.lock());
            // First: was it refused for lack of space (and its LSN given
            // out again, so that `acked_lsn` no longer speaks about it)?
            epoch = guard.fate(epoch, lsn, &shared.dir)?;
            if guard.acked_lsn(sync) >= lsn {
                return Ok(lsn);
            }
            if let Some(reason) = &guard.poisoned {
                return Err(LogError::Poisoned(reason.clone()));
            }
            if guard.closing {
                return Err(LogError::Closed);
            }
            let pending = guard.is_pending(lsn);
            if pending && guard.can_commit() {
                commit(shared, guard, false)?;
                continue;
            }
            if pending && !counted {
                guard.pending_leaders += 1;
                counted = true;
            }
            let seen = gate.generation();
            drop(guard);
            // Free the payload outside the lock, once.
            drop(payload.take());
            gate.wait(seen);
            // `acked` before `epoch` (see `Shared::epoch`).
            if shared.acked.load(Ordering::SeqCst) >= lsn
                && (epoch == EPOCH_WRITTEN || shared.epoch.load(Ordering::SeqCst) == epoch)
            {
                return Ok(lsn);
            }
        }
    }

    fn poisoned_error(&self) -> LogError {
        match &self.shared().lock().poisoned {
            Some(reason) => LogError::Poisoned(reason.clone()),
            None => LogError::Closed,
        }
    }

    /// Forces an fdatasync of everything appended so far, in any sync mode,
    /// and returns the LSN it covers.
    pub fn sync(&self) -> Result<Lsn, LogError> {
        let shared = self.shared();
        let mut state = shared.lock();
        let mut target = state.next_lsn - 1;
        loop {
            // A no-space refusal may have taken back LSNs up to `target`.
            target = target.min(state.next_lsn - 1);
            if state.synced_lsn >= target {
                return Ok(target);
            }
            if let Some(reason) = &state.poisoned {
                return Err(LogError::Poisoned(reason.clone()));
            }
            if state.closing {
                return Err(LogError::Closed);
            }
            if state.can_commit() {
                commit(shared, state, true)?;
                state = shared.lock();
                continue;
            }
            state.progress_waiters += 1;
            state = wait(&shared.progress_changed, state);
            state.progress_waiters -= 1;
        }
    }

    /// Streams records from LSN `from` on (LSN 0 means the start). Fails
    /// with `Compacted` if `from` was deleted by compaction.
    pub fn read_from(&self, from: Lsn) -> Result<LogReader, LogError> {
        LogReader::live(Arc::clone(&self.inner.shared), from.max(1))
    }

    /// A snapshot of the log's state, for metrics and checkpoint policies.
    pub fn stats(&self) -> LogStatus {
        let shared = self.shared();
        let state = shared.lock();
        let last_lsn = state.acked_lsn(shared.options.sync);
        let checkpoint = state.latest_checkpoint().cloned();
        let ms_since_checkpoint = match &checkpoint {
            Some(c) => now_unix_ms().saturating_sub(c.created_unix_ms),
            None => state.checkpoint_instant.elapsed().as_millis() as u64,
        };
        let covered = checkpoint.as_ref().map_or(0, |c| c.covers_lsn);
        LogStatus {
            dir: shared.dir.clone(),
            sync: shared.options.sync,
            first_lsn: state.first_lsn(),
            last_lsn,
            written_lsn: state.written_lsn,
            synced_lsn: state.synced_lsn,
            next_lsn: state.next_lsn,
            pending_records: state.pending.records(),
            pending_bytes: state.pending.bytes.len() as u64,
            segments: state.segments.iter().map(SegmentMeta::info).collect(),
            total_bytes: state.disk_bytes,
            log_bytes_max: shared.options.log_bytes_max,
            records_since_checkpoint: last_lsn.saturating_sub(covered.max(state.first_lsn() - 1)),
            bytes_since_checkpoint: state
                .end_position()
                .saturating_sub(state.checkpoint_position),
            ms_since_checkpoint,
            last_checkpoint: checkpoint,
            reclaimable_bytes_by_checkpoint: reclaimable(&state, u64::MAX).1,
            poisoned: state.poisoned.clone(),
            fsyncs: state.counters.fsyncs,
            batches_written: state.counters.batches_written,
            records_written: state.counters.records_written,
        }
    }

    /// Durably writes a checkpoint of `state` covering every LSN up to
    /// `covers_lsn`, which must already be appended. The log is synced
    /// through `covers_lsn` first (whatever the sync mode), so a checkpoint
    /// never claims records a crash could still take away. Keeps the newest
    /// `checkpoints_kept` checkpoints and deletes older ones.
    pub fn write_checkpoint<S: serde::Serialize>(
        &self,
        covers_lsn: Lsn,
        state: &S,
    ) -> Result<CheckpointInfo, LogError> {
        let _maintenance = lock(&self.inner.maintenance);
        self.check_checkpoint_lsn(covers_lsn)?;
        if self.shared().lock().synced_lsn < covers_lsn {
            self.sync()?;
        }
        let shared = self.shared();
        let path = shared.dir.join(checkpoint_file_name(covers_lsn));
        let created_unix_ms = now_unix_ms();
        let bytes = encode_checkpoint(covers_lsn, created_unix_ms, state).map_err(|e| {
            LogError::Checkpoint {
                path: path.clone(),
                reason: format!("cannot serialize the state: {e}"),
            }
        })?;
        if bytes.len() as u64 > shared.options.checkpoint_bytes_max {
            return Err(LogError::Checkpoint {
                path,
                reason: format!(
                    "serialized checkpoint is {} bytes, above checkpoint_bytes_max = {}",
                    bytes.len(),
                    shared.options.checkpoint_bytes_max
                ),
            });
        }
        write_file_atomically(&path, &bytes, &shared.faults)?;
        let info = CheckpointInfo {
            path,
            covers_lsn,
            created_unix_ms,
            bytes: bytes.len() as u64,
        };
        let segments = shared.lock().segments.clone();
        let position = position_of(&segments, covers_lsn + 1)?;
        let retired = {
            let mut state = shared.lock();
            state.checkpoints.retain(|c| c.covers_lsn != covers_lsn);
            state.checkpoints.push(info.clone());
            state.checkpoint_position = position;
            state.checkpoint_instant = Instant::now();
            let excess = state
                .checkpoints
                .len()
                .saturating_sub(shared.options.checkpoints_kept);
            state.checkpoints.drain(..excess).collect::<Vec<_>>()
        };
        for old in &retired {
            std::fs::remove_file(&old.path)
                .map_err(|e| LogError::io("delete old checkpoint", &old.path, e))?;
        }
        if !retired.is_empty() {
            sync_dir(&shared.dir)?;
        }
        Ok(info)
    }

    fn check_checkpoint_lsn(&self, covers_lsn: Lsn) -> Result<(), LogError> {
        let state = self.shared().lock();
        let appended = state.next_lsn - 1;
        let invalid = |why: String| Err(LogError::InvalidArgument(why));
        if covers_lsn > appended {
            return invalid(format!(
                "a checkpoint cannot cover LSN {covers_lsn}: the last appended LSN is {appended}"
            ));
        }
        if let Some(latest) = state
            .latest_checkpoint()
            .filter(|c| c.covers_lsn > covers_lsn)
        {
            return invalid(format!(
                "a checkpoint covering LSN {covers_lsn} would be older than the newest one, which covers LSN {}",
                latest.covers_lsn
            ));
        }
        if covers_lsn + 1 < state.first_lsn() {
            return invalid(format!(
                "a checkpoint covering LSN {covers_lsn} is useless: the log starts at LSN {}",
                state.first_lsn()
            ));
        }
        Ok(())
    }

    /// The newest checkpoint that still verifies, with its state; falls back
    /// to older retained ones if the newest is damaged. `None` if the log has
    /// no checkpoint (replay from LSN 1).
    pub fn latest_checkpoint<S: serde::de::DeserializeOwned>(
        &self,
    ) -> Result<Option<(CheckpointInfo, S)>, LogError> {
        let shared = self.shared();
        let retained = shared.lock().checkpoints.clone();
        for info in retained.iter().rev() {
            match load_checkpoint_file(
                &info.path,
                info.covers_lsn,
                shared.options.checkpoint_bytes_max,
            ) {
                Ok(loaded) => {
                    let state = decode_state(&loaded)?;
                    return Ok(Some((loaded.info, state)));
                }
                Err(reason) => {
                    tracing::error!(path = %info.path.display(), %reason,
                        "checkpoint no longer verifies; falling back to an older one");
                }
            }
        }
        Ok(None)
    }

    /// Deletes the segments all of whose records are below both
    /// `oldest_needed_lsn` (the oldest LSN the host still needs, such as an
    /// undelivered replica hint) and the oldest retained checkpoint's
    /// `covers_lsn + 1`. Bounding by the oldest retained checkpoint rather
    /// than the newest keeps the fallback checkpoint usable. Never deletes
    /// the segment being appended to.
    pub fn compact(&self, oldest_needed_lsn: Lsn) -> Result<CompactReport, LogError> {
        let _maintenance = lock(&self.inner.maintenance);
        let shared = self.shared();
        let (report, doomed) = {
            let mut state = shared.lock();
            let (count, bytes_freed, bound_lsn) = reclaimable(&state, oldest_needed_lsn);
            let doomed: Vec<SegmentMeta> = state.segments.drain(..count).collect();
            state.disk_bytes -= bytes_freed;
            let report = CompactReport {
                bound_lsn,
                segments_deleted: doomed.iter().map(|s| s.path.clone()).collect(),
                bytes_freed,
                first_lsn: state.first_lsn(),
            };
            (report, doomed)
        };
        // Readers that already opened a deleted segment keep reading it: on
        // Unix the data lives until the last descriptor closes.
        for segment in &doomed {
            std::fs::remove_file(&segment.path)
                .map_err(|e| LogError::io("delete compacted segment", &segment.path, e))?;
        }
        if !doomed.is_empty() {
            sync_dir(&shared.dir)?;
        }
        Ok(report)
    }

    /// Bytes `compact(oldest_needed_lsn)` would free now.
    pub fn reclaimable_bytes(&self, oldest_needed_lsn: Lsn) -> u64 {
        reclaimable(&self.shared().lock(), oldest_needed_lsn).1
    }

    /// Makes the next `count` segment writes of this log land half their
    /// bytes and then fail with ENOSPC, to test the no-space path.
    #[cfg(any(test, feature = "fault-injection"))]
    pub fn inject_write_no_space(&self, count: u32) {
        self.shared().faults.arm_write_no_space(count);
    }

    /// Makes the next `count` fdatasync calls of this log fail with `errno`
    /// (after really syncing), to test the poisoning path.
    #[cfg(any(test, feature = "fault-injection"))]
    pub fn inject_sync_failures(&self, count: u32, errno: i32) {
        self.shared().faults.arm(count, errno);
    }
}

/// (segments, bytes, bound): how many leading segments compaction may
/// delete, what they weigh, and the LSN bound used.
fn reclaimable(state: &State, oldest_needed_lsn: Lsn) -> (usize, u64, Lsn) {
    let checkpoint_bound = state.checkpoints.first().map_or(1, |c| c.covers_lsn + 1);
    let bound = oldest_needed_lsn.min(checkpoint_bound);
    let deletable = state.segments.len().saturating_sub(1);
    let count = state.segments[..deletable]
        .iter()
        .take_while(|s| s.last_lsn < bound)
        .count();
    let bytes = state.segments[..count].iter().map(|s| s.bytes).sum();
    (count, bytes, bound)
}

/// Log position (record bytes from the first segment at open) where record
/// `lsn` starts, or the end position if `lsn` is past the last record.
fn position_of(segments: &[SegmentMeta], lsn: Lsn) -> Result<u64, LogError> {
    let Some(segment) = segments
        .iter()
        .find(|s| s.first_lsn <= lsn && lsn <= s.last_lsn)
    else {
        let first = segments.first().expect("a log always has a segment");
        if lsn < first.first_lsn {
            return Ok(first.base_position);
        }
        return Ok(segments.last().expect("non-empty").end_position());
    };
    let file = File::open(&segment.path).map_err(|e| LogError::io("open", &segment.path, e))?;
    let mut reader = BufReader::with_capacity(64 << 10, file);
    let offset = skip_to(
        &mut reader,
        &segment.path,
        segment.index.seek_hint(lsn),
        lsn,
    )?;
    Ok(segment.base_position + offset - SEGMENT_HEADER_BYTES as u64)
}

fn wait<'a>(condvar: &Condvar, guard: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
    condvar
        .wait(guard)
        .unwrap_or_else(|poison| poison.into_inner())
}

fn lock(mutex: &Mutex<()>) -> MutexGuard<'_, ()> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// Counts an async appender as waiting for queue space for as long as it
/// lives, so that whoever takes the full batch wakes it, even if the
/// waiting future is dropped midway.
struct SpaceWaiter<'a> {
    shared: &'a Shared,
}

impl<'a> SpaceWaiter<'a> {
    fn register(shared: &'a Shared, mut state: MutexGuard<'_, State>) -> SpaceWaiter<'a> {
        state.space_waiters += 1;
        SpaceWaiter { shared }
    }
}

impl Drop for SpaceWaiter<'_> {
    fn drop(&mut self) {
        self.shared.lock().space_waiters -= 1;
    }
}
