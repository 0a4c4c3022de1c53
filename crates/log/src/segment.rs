//! Segment files: naming, listing, creation, and the in-memory description
//! (LSN range, size, sparse offset index) that readers use to find a record
//! without scanning from the start of a 64 MiB file.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::format::{SEGMENT_HEADER_BYTES, encode_segment_header};
use crate::fsio::{SyncFaults, sync_dir, write_file_atomically};
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
/// appending.
pub(crate) fn create_segment(
    dir: &Path,
    first_lsn: Lsn,
    faults: &SyncFaults,
) -> Result<(File, PathBuf), LogError> {
    let path = dir.join(segment_file_name(first_lsn));
    write_file_atomically(&path, &encode_segment_header(first_lsn), faults)?;
    let file = open_for_append(&path)?;
    Ok((file, path))
}

pub(crate) fn open_for_append(path: &Path) -> Result<File, LogError> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| LogError::io("open for append", path, e))
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
