//! Segment files: naming, listing, creation (preallocated or not), the
//! spare segment zero-filled ahead of time, and the in-memory description
//! (LSN range, size, sparse offset index) that readers use to find a record
//! without scanning from the start of a 64 MiB file.
//!
//! Preallocation (format version 2, see [`crate::format`]): appending to a
//! growing file makes every fdatasync write the file's new size too;
//! overwriting zeros that are already on disk does not. So a new segment
//! is, when possible, a file already `segment_bytes_max` long: a spare
//! that a background thread zero-filled and synced while the previous
//! segment was filling, renamed into place at rotation. When no spare is
//! ready (the first rotations of a small-segment log, or after a failure
//! to prepare one) the segment is created empty and grows, as before.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use serde::Serialize;

use crate::format::{SEGMENT_HEADER_BYTES, encode_segment_header};
use crate::fsio::{SyncFaults, sync_data, sync_dir, temp_path_for, write_file_atomically};
use crate::{LogError, Lsn};

const SEGMENT_PREFIX: &str = "seg-";
const SEGMENT_SUFFIX: &str = ".log";

/// One index entry every this many bytes: a read from the middle of a
/// segment scans at most this much before reaching its record.
pub(crate) const INDEX_STRIDE_BYTES: u64 = 256 << 10;

/// `seg-<first_lsn, 20 digits>.log`: zero-padded so that names sort in LSN
/// order in `ls`.
pub(crate) fn segment_file_name(first_lsn: Lsn) -> String {
    format!("{SEGMENT_PREFIX}{first_lsn:020}{SEGMENT_SUFFIX}")
}

/// Parses a segment file name back into its first LSN.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<Lsn> {
    let digits = name
        .strip_prefix(SEGMENT_PREFIX)?
        .strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&lsn| lsn >= 1)
}

/// Segment files in `dir`, sorted by first LSN.
pub(crate) fn list_segment_files(dir: &Path) -> Result<Vec<(Lsn, PathBuf)>, LogError> {
    let mut segments = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| LogError::io("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| LogError::io("list", dir, e))?;
        let name = entry.file_name();
        if let Some(first_lsn) = name.to_str().and_then(parse_segment_file_name) {
            segments.push((first_lsn, entry.path()));
        }
    }
    segments.sort();
    Ok(segments)
}

/// Creates the segment that starts at `first_lsn`, durably (header written
/// to a temp file, synced, renamed, directory synced), and opens it for
/// writing.
pub(crate) fn create_segment(
    dir: &Path,
    first_lsn: Lsn,
    faults: &SyncFaults,
) -> Result<(File, PathBuf), LogError> {
    let path = dir.join(segment_file_name(first_lsn));
    write_file_atomically(&path, &encode_segment_header(first_lsn), faults)?;
    let file = open_for_writing(&path)?;
    Ok((file, path))
}

/// Opens a segment for writing at explicit offsets (`pwrite`), not with
/// `O_APPEND`: the writer always knows where the valid data ends.
pub(crate) fn open_for_writing(path: &Path) -> Result<File, LogError> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| LogError::io("open for writing", path, e))
}

/// Creates the segment that starts at `first_lsn` preallocated to
/// `file_bytes` (header, then zeros), durably (temp file, fdatasync,
/// rename, directory fsync), and returns it open for writing.
pub(crate) fn create_preallocated_segment(
    dir: &Path,
    first_lsn: Lsn,
    file_bytes: u64,
    faults: &SyncFaults,
) -> Result<(File, PathBuf), LogError> {
    let path = dir.join(segment_file_name(first_lsn));
    let temp = temp_path_for(&path);
    let prepared = write_zeroed(&temp, file_bytes, &|| false).and_then(|file| {
        file.write_all_at(&encode_segment_header(first_lsn), 0)
            .map_err(|e| LogError::io("write", &temp, e))?;
        sync_data(&file, faults).map_err(|e| LogError::io("fdatasync", &temp, e))?;
        std::fs::rename(&temp, &path).map_err(|e| LogError::io("rename into place", &path, e))?;
        Ok(file)
    });
    let file = prepared.inspect_err(|_| {
        let _ = std::fs::remove_file(&temp);
    })?;
    sync_dir(dir)?;
    Ok((file, path))
}

/// Creates (or replaces) `path` as `bytes` zero bytes, really written (not
/// a sparse or unwritten extent, which the first overwrite would have to
/// convert, a metadata change that fdatasync then has to write), and synced.
/// Gives up (with an error) as soon as `cancelled()` says so.
fn write_zeroed(path: &Path, bytes: u64, cancelled: &dyn Fn() -> bool) -> Result<File, LogError> {
    const CHUNK: usize = 1 << 20;
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| LogError::io("create", path, e))?;
    let zeros = vec![0u8; CHUNK];
    let mut offset = 0u64;
    while offset < bytes {
        if cancelled() {
            return Err(LogError::io(
                "zero-fill",
                path,
                std::io::Error::other("cancelled: the log is closing"),
            ));
        }
        let chunk = (bytes - offset).min(CHUNK as u64) as usize;
        file.write_all_at(&zeros[..chunk], offset)
            .map_err(|e| LogError::io("zero-fill", path, e))?;
        offset += chunk as u64;
    }
    file.sync_data()
        .map_err(|e| LogError::io("fdatasync", path, e))?;
    Ok(file)
}

/// Name of the spare segment. It ends in `.tmp`, so whatever a crash
/// leaves of it is deleted at open, like any other temp file.
const SPARE_FILE_NAME: &str = "seg-spare.log.tmp";

/// Zero-fills the next segment on a background thread while the current
/// one fills up, so that rotation only has to write a header and rename.
pub(crate) struct SparePreparer {
    shared: Arc<SpareShared>,
    thread: Option<JoinHandle<()>>,
}

struct SpareShared {
    path: PathBuf,
    file_bytes: u64,
    state: Mutex<SpareState>,
    changed: Condvar,
}

enum SpareState {
    /// Nothing asked for (yet): a spare is prepared only when the active
    /// segment is half full, so that opening a log or a log that never
    /// fills a segment costs no zero-filling.
    Idle,
    Wanted,
    Preparing,
    Ready(File),
    /// Preparing failed; tried again when the next one is asked for.
    Failed,
    Stopping,
}

impl SparePreparer {
    /// Starts the thread that prepares spares of `file_bytes` in `dir`
    /// when asked to (`want`). Without a thread (spawning failed) segments
    /// are simply created empty.
    pub(crate) fn start(dir: &Path, file_bytes: u64) -> SparePreparer {
        let shared = Arc::new(SpareShared {
            path: dir.join(SPARE_FILE_NAME),
            file_bytes,
            state: Mutex::new(SpareState::Idle),
            changed: Condvar::new(),
        });
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("levee-log-spare".into())
            .spawn(move || thread_shared.run())
            .map_err(|error| {
                tracing::warn!(%error, "cannot start the spare-segment thread; segments will grow by appending");
            })
            .ok();
        SparePreparer { shared, thread }
    }

    /// Asks for a spare to be prepared, unless one is on its way.
    pub(crate) fn want(&self) {
        let mut state = self.shared.lock();
        if matches!(*state, SpareState::Idle | SpareState::Failed) {
            *state = SpareState::Wanted;
            self.shared.changed.notify_all();
        }
    }

    /// The prepared spare, if one is ready, with its path. The thread stays
    /// idle until the next `want`, which comes only after the taken spare
    /// was renamed into place (the next segment must be half full first),
    /// so it never recreates the file under the caller's feet.
    pub(crate) fn take(&self) -> Option<(File, &Path)> {
        let mut state = self.shared.lock();
        match std::mem::replace(&mut *state, SpareState::Idle) {
            SpareState::Ready(file) => Some((file, self.shared.path.as_path())),
            SpareState::Failed => None,
            other => {
                *state = other;
                None
            }
        }
    }

    /// Stops the thread and deletes an unused spare.
    pub(crate) fn stop(&mut self) {
        *self.shared.lock() = SpareState::Stopping;
        self.shared.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        match std::fs::remove_file(&self.shared.path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                tracing::warn!(path = %self.shared.path.display(), %error, "cannot delete the spare segment")
            }
        }
    }
}

impl Drop for SparePreparer {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop();
        }
    }
}

impl SpareShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, SpareState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn run(&self) {
        let mut state = self.lock();
        loop {
            match *state {
                SpareState::Stopping => return,
                SpareState::Wanted => {}
                _ => {
                    state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
                    continue;
                }
            }
            *state = SpareState::Preparing;
            drop(state);
            let prepared = write_zeroed(&self.path, self.file_bytes, &|| {
                matches!(*self.lock(), SpareState::Stopping)
            });
            state = self.lock();
            if matches!(*state, SpareState::Stopping) {
                return;
            }
            *state = match prepared {
                Ok(file) => SpareState::Ready(file),
                Err(error) => {
                    tracing::warn!(%error, "cannot prepare a spare segment; the next one will grow by appending");
                    // Out of space, a half-filled spare would hold on to
                    // what little is left.
                    let _ = std::fs::remove_file(&self.path);
                    SpareState::Failed
                }
            };
        }
    }
}

/// Turns a prepared spare into the segment that starts at `first_lsn`:
/// header written and synced before the rename, directory synced after.
pub(crate) fn install_spare(
    dir: &Path,
    spare: File,
    spare_path: &Path,
    first_lsn: Lsn,
    faults: &SyncFaults,
) -> Result<(File, PathBuf), LogError> {
    let path = dir.join(segment_file_name(first_lsn));
    spare
        .write_all_at(&encode_segment_header(first_lsn), 0)
        .map_err(|e| LogError::io("write", spare_path, e))?;
    sync_data(&spare, faults).map_err(|e| LogError::io("fdatasync", spare_path, e))?;
    std::fs::rename(spare_path, &path).map_err(|e| LogError::io("rename into place", &path, e))?;
    sync_dir(dir)?;
    Ok((spare, path))
}

/// Cuts the free space off a segment: truncated to `length`, durably.
pub(crate) fn seal_segment(file: &File, path: &Path, length: u64) -> Result<(), LogError> {
    file.set_len(length)
        .map_err(|e| LogError::io("truncate", path, e))?;
    file.sync_all()
        .map_err(|e| LogError::io("fsync after truncation", path, e))
}

/// Truncates a segment to `length` bytes durably.
pub(crate) fn truncate_segment(path: &Path, length: u64) -> Result<(), LogError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| LogError::io("open for truncation", path, e))?;
    file.set_len(length)
        .map_err(|e| LogError::io("truncate", path, e))?;
    file.sync_all()
        .map_err(|e| LogError::io("fsync after truncation", path, e))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Sparse map from LSN to file offset: one entry per `INDEX_STRIDE_BYTES`,
/// so at most `segment_bytes_max / 256 KiB + 1` entries per segment.
#[derive(Clone, Debug)]
pub(crate) struct SparseIndex {
    entries: Vec<(Lsn, u64)>,
}

impl SparseIndex {
    pub(crate) fn new(first_lsn: Lsn) -> Self {
        SparseIndex {
            entries: vec![(first_lsn, SEGMENT_HEADER_BYTES as u64)],
        }
    }

    /// Notes that record `lsn` starts at `offset`; keeps it if it is a
    /// stride past the previous entry.
    pub(crate) fn note(&mut self, lsn: Lsn, offset: u64) {
        let (last_lsn, last_offset) = *self.entries.last().expect("index never empty");
        debug_assert!(lsn >= last_lsn && offset >= last_offset);
        if offset >= last_offset + INDEX_STRIDE_BYTES {
            self.entries.push((lsn, offset));
        }
    }

    /// The closest known (lsn, offset) at or before `lsn`.
    pub(crate) fn seek_hint(&self, lsn: Lsn) -> (Lsn, u64) {
        let position = self
            .entries
            .partition_point(|&(entry_lsn, _)| entry_lsn <= lsn);
        self.entries[position.saturating_sub(1)]
    }
}

/// What the log knows about one segment file.
#[derive(Clone, Debug)]
pub(crate) struct SegmentMeta {
    pub path: PathBuf,
    pub first_lsn: Lsn,
    /// `first_lsn - 1` while the segment holds no record.
    pub last_lsn: Lsn,
    /// Length of the valid data: header plus records.
    pub bytes: u64,
    /// Record bytes stored in the earlier segments, counted from the first
    /// segment present at open (compaction does not change it), so that the
    /// byte distance between two LSNs is a subtraction.
    pub base_position: u64,
    pub index: SparseIndex,
}

impl SegmentMeta {
    pub(crate) fn empty(path: PathBuf, first_lsn: Lsn, base_position: u64) -> Self {
        SegmentMeta {
            path,
            first_lsn,
            last_lsn: first_lsn - 1,
            bytes: SEGMENT_HEADER_BYTES as u64,
            base_position,
            index: SparseIndex::new(first_lsn),
        }
    }

    pub(crate) fn records(&self) -> u64 {
        self.last_lsn + 1 - self.first_lsn
    }

    /// Log position just past this segment's last record.
    pub(crate) fn end_position(&self) -> u64 {
        self.base_position + self.bytes - SEGMENT_HEADER_BYTES as u64
    }

    /// Accounts for a record appended at the end of this segment.
    pub(crate) fn note_appended(&mut self, lsn: Lsn, record_bytes: u64) {
        debug_assert_eq!(lsn, self.last_lsn + 1, "records are contiguous");
        self.index.note(lsn, self.bytes);
        self.last_lsn = lsn;
        self.bytes += record_bytes;
    }

    pub(crate) fn info(&self) -> SegmentInfo {
        SegmentInfo {
            path: self.path.clone(),
            first_lsn: self.first_lsn,
            last_lsn: self.last_lsn,
            records: self.records(),
            bytes: self.bytes,
        }
    }
}

/// Public description of one segment, for status and inspection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SegmentInfo {
    pub path: PathBuf,
    pub first_lsn: Lsn,
    /// `first_lsn - 1` when the segment is empty.
    pub last_lsn: Lsn,
    pub records: u64,
    pub bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_reject_lookalikes() {
        assert_eq!(parse_segment_file_name(&segment_file_name(42)), Some(42));
        assert_eq!(parse_segment_file_name("seg-42.log"), None);
        assert_eq!(
            parse_segment_file_name("seg-00000000000000000042.log.broken"),
            None
        );
        assert_eq!(
            parse_segment_file_name("seg-00000000000000000000.log"),
            None
        );
    }

    #[test]
    fn index_finds_the_nearest_entry_before() {
        let mut index = SparseIndex::new(10);
        let mut offset = 32;
        for lsn in 10..10_000 {
            index.note(lsn, offset);
            offset += 1000;
        }
        let (lsn, entry_offset) = index.seek_hint(5000);
        assert!(lsn <= 5000 && 5000 - lsn <= INDEX_STRIDE_BYTES / 1000 + 1);
        assert_eq!(entry_offset, 32 + (lsn - 10) * 1000);
        assert_eq!(index.seek_hint(10), (10, 32));
    }
}
