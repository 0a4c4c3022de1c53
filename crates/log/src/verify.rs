//! Read-only verification of a directory's segments: the common first half
//! of recovery (`Log::open`) and of `inspect`/`dump`.
//!
//! It walks every segment in LSN order, checks headers, checksums and LSN
//! continuity, builds each segment's sparse index, and stops at the first
//! problem, which it classifies:
//! * free space: only zeros after the last record of the last segment, in a
//!   version 2 (possibly preallocated) segment. Not a problem at all.
//! * torn tail: the damage is in the last segment and no valid record
//!   follows it. That is what a crash in the middle of a write leaves, and
//!   those bytes were never acknowledged (acknowledgement waits for the
//!   fdatasync that follows the whole write).
//! * also a torn tail, in a version 3 segment: valid records follow the
//!   damage, but every one of them says (its `unsynced_span`, see
//!   [`crate::format`]) that the damaged LSNs were not yet durable when it
//!   was written. That is a batch (or two overlapping ones) whose later
//!   page reached the disk and an earlier one did not, before the
//!   fdatasync that would have acknowledged them returned.
//! * corruption: anything else. Records after the damage were written, and
//!   possibly acknowledged, after the damaged ones were durable, so
//!   silently dropping them could lose acknowledged writes.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

use crate::format::{
    RECORD_BYTES_LIMIT, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES, parse_segment_header,
};
use crate::scan::{FoundRecord, ScanStop, find_valid_record, scan_records};
use crate::segment::SegmentMeta;
use crate::{LogError, Lsn};

/// What kind of damage was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// Partial or garbage bytes at the very end of the log: a crash
    /// artefact that recovery truncates.
    TornTail,
    /// Damage with valid data after it: refused unless `repair` is set.
    Corrupt,
}

/// The first problem found in a log directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub kind: ProblemKind,
    pub segment: PathBuf,
    pub offset: u64,
    pub reason: String,
    /// Length of the damaged segment file.
    pub file_bytes: u64,
    /// LSN that was expected at `offset`.
    pub expected_lsn: Lsn,
}

/// Result of examining a directory's segments.
#[derive(Debug)]
pub(crate) struct Examined {
    /// Valid segments in order; if there is a problem, the last entry is the
    /// damaged segment described up to the damage (absent if its header
    /// itself is bad).
    pub segments: Vec<SegmentMeta>,
    /// Index into the input list of the damaged segment.
    pub problem_index: Option<usize>,
    pub problem: Option<Problem>,
    /// Bytes read while verifying.
    pub bytes_scanned: u64,
}

/// Segments verified concurrently at most: recovery is bound by checksum
/// and copy speed, which scales with cores; more threads than this would
/// only add scan buffers.
const EXAMINE_THREADS_MAX: usize = 4;

/// Examines `files` (sorted by first LSN) without modifying anything.
/// Segments are verified in parallel, then stitched together in order:
/// LSN continuity between segments, log positions, and the first problem.
pub(crate) fn examine(files: &[(Lsn, PathBuf)]) -> Result<Examined, LogError> {
    let mut examined = Examined {
        segments: Vec::with_capacity(files.len()),
        problem_index: None,
        problem: None,
        bytes_scanned: 0,
    };
    let mut next_lsn: Option<Lsn> = None;
    let mut position = 0u64;
    for (index, outcome) in examine_each(files)?.into_iter().enumerate() {
        examined.bytes_scanned += outcome.file_bytes;
        let outcome = check_continuity(outcome, next_lsn);
        if let Some(mut meta) = outcome.meta {
            meta.base_position = position;
            next_lsn = Some(meta.last_lsn + 1);
            position = meta.end_position();
            examined.segments.push(meta);
        }
        if let Some(problem) = outcome.problem {
            examined.problem_index = Some(index);
            examined.problem = Some(problem);
            break;
        }
    }
    Ok(examined)
}

/// Verifies every segment on its own, on up to `EXAMINE_THREADS_MAX`
/// threads; results are in input order.
fn examine_each(files: &[(Lsn, PathBuf)]) -> Result<Vec<SegmentOutcome>, LogError> {
    let last = files.len().saturating_sub(1);
    let one = |index: usize| {
        let (name_lsn, path) = &files[index];
        examine_segment(path, *name_lsn, index == last)
    };
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(EXAMINE_THREADS_MAX)
        .min(files.len());
    if workers <= 1 {
        return (0..files.len()).map(one).collect();
    }
    let next_index = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<Result<SegmentOutcome, LogError>>>> =
        files.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let index = next_index.fetch_add(1, Ordering::Relaxed);
                    if index >= files.len() {
                        break;
                    }
                    let outcome = one(index);
                    *results[index].lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
                }
            });
        }
    });
    results
        .into_iter()
        .map(|slot| {
            slot.into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .expect("every segment was examined")
        })
        .collect()
}

/// A segment that verifies on its own must also start right after the
/// previous one; if not, the whole segment is reported corrupt.
fn check_continuity(outcome: SegmentOutcome, expected_first: Option<Lsn>) -> SegmentOutcome {
    let (Some(meta), Some(expected)) = (&outcome.meta, expected_first) else {
        return outcome;
    };
    if meta.first_lsn == expected {
        return outcome;
    }
    let problem = Problem {
        kind: ProblemKind::Corrupt,
        segment: meta.path.clone(),
        offset: 0,
        reason: format!(
            "segment starts at LSN {} but the previous segment ends at LSN {}",
            meta.first_lsn,
            expected - 1
        ),
        file_bytes: outcome.file_bytes,
        expected_lsn: expected,
    };
    SegmentOutcome {
        meta: None,
        problem: Some(problem),
        file_bytes: outcome.file_bytes,
    }
}

struct SegmentOutcome {
    meta: Option<SegmentMeta>,
    problem: Option<Problem>,
    file_bytes: u64,
}

fn examine_segment(path: &Path, name_lsn: Lsn, is_last: bool) -> Result<SegmentOutcome, LogError> {
    let mut file = File::open(path).map_err(|e| LogError::io("open", path, e))?;
    let file_bytes = file
        .metadata()
        .map_err(|e| LogError::io("stat", path, e))?
        .len();
    let corrupt_header = |reason: String| SegmentOutcome {
        meta: None,
        problem: Some(Problem {
            kind: ProblemKind::Corrupt,
            segment: path.to_path_buf(),
            offset: 0,
            reason,
            file_bytes,
            expected_lsn: name_lsn,
        }),
        file_bytes,
    };
    let mut header = [0u8; SEGMENT_HEADER_BYTES];
    let header_len =
        read_up_to(&mut file, &mut header).map_err(|e| LogError::io("read", path, e))?;
    let (first_lsn, may_be_preallocated, has_spans) =
        match parse_segment_header(&header[..header_len]) {
            Ok(header) => (
                header.first_lsn,
                header.may_be_preallocated(),
                header.has_spans(),
            ),
            Err(why) => return Ok(corrupt_header(why.to_string())),
        };
    if first_lsn != name_lsn {
        return Ok(corrupt_header(format!(
            "segment header says first LSN {first_lsn} but the file name says {name_lsn}"
        )));
    }
    // The log position is filled in by `examine` once the earlier segments
    // are known.
    let mut meta = SegmentMeta::empty(path.to_path_buf(), first_lsn, 0);
    // The file position is just past the header.
    let outcome = scan_records(&file, SEGMENT_HEADER_BYTES as u64, first_lsn, |record| {
        meta.note_appended(
            record.lsn,
            (RECORD_HEADER_BYTES + record.payload.len()) as u64,
        );
        debug_assert_eq!(
            meta.bytes,
            record.offset + (RECORD_HEADER_BYTES + record.payload.len()) as u64
        );
    })
    .map_err(|e| LogError::io("read", path, e))?;
    debug_assert_eq!(meta.bytes, outcome.valid_end);
    let free_space = |offset: u64| -> Result<bool, LogError> {
        Ok(is_last
            && may_be_preallocated
            && only_zeros(&file, offset, file_bytes).map_err(|e| LogError::io("read", path, e))?)
    };
    let problem = match &outcome.stop {
        ScanStop::CleanEnd => None,
        _ if free_space(outcome.valid_end)? => None,
        stop => {
            let offset = outcome.valid_end;
            let expected_lsn = meta.last_lsn + 1;
            let later_record =
                find_valid_record_in_file(&file, offset + 1, file_bytes, expected_lsn, offset)
                    .map_err(|e| LogError::io("read", path, e))?;
            let unsynced_batch = match later_record {
                Some(found) if is_last && has_spans => {
                    find_durable_claim(&file, found, file_bytes, expected_lsn, offset)
                        .map_err(|e| LogError::io("read", path, e))?
                        .is_none()
                }
                _ => false,
            };
            let kind = if is_last && (later_record.is_none() || unsynced_batch) {
                ProblemKind::TornTail
            } else {
                ProblemKind::Corrupt
            };
            let reason = match later_record {
                Some(found) if unsynced_batch => format!(
                    "{}; the valid records after it (from LSN {} at offset {}) were written \
                     before LSN {expected_lsn} was durable: a half-written batch whose \
                     fdatasync never returned, so none of it was acknowledged",
                    stop.reason(),
                    found.lsn,
                    found.offset
                ),
                Some(found) => format!(
                    "{}; a valid record (LSN {}) follows at offset {}, so this is not a torn tail",
                    stop.reason(),
                    found.lsn,
                    found.offset
                ),
                None if !is_last => format!("{} in a segment that is not the last", stop.reason()),
                None => stop.reason().to_string(),
            };
            Some(Problem {
                kind,
                segment: path.to_path_buf(),
                offset,
                reason,
                file_bytes,
                expected_lsn,
            })
        }
    };
    Ok(SegmentOutcome {
        meta: Some(meta),
        problem,
        file_bytes,
    })
}

/// Reads until `into` is full or the file ends; returns the bytes read.
fn read_up_to(file: &mut File, into: &mut [u8]) -> std::io::Result<usize> {
    file.seek(SeekFrom::Start(0))?;
    let mut filled = 0;
    while filled < into.len() {
        match file.read(&mut into[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// True if `file[from..to]` holds only zero bytes.
fn only_zeros(file: &File, from: u64, to: u64) -> std::io::Result<bool> {
    let mut buffer = vec![0u8; (to.saturating_sub(from)).min(SEARCH_WINDOW_BYTES) as usize];
    let mut offset = from;
    while offset < to {
        let chunk = &mut buffer[..(to - offset).min(SEARCH_WINDOW_BYTES) as usize];
        file.read_exact_at(chunk, offset)?;
        if chunk.iter().any(|&byte| byte != 0) {
            return Ok(false);
        }
        offset += chunk.len() as u64;
    }
    Ok(true)
}

/// Offset just past the last non-zero byte of `file[from..to]` (`from` if
/// there is none): where a torn tail in a version 2 segment ends and its
/// free space begins.
pub(crate) fn end_of_data(file: &File, from: u64, to: u64) -> std::io::Result<u64> {
    let mut buffer = vec![0u8; (to.saturating_sub(from)).min(SEARCH_WINDOW_BYTES) as usize];
    let mut end = to;
    while end > from {
        let start = end.saturating_sub(SEARCH_WINDOW_BYTES).max(from);
        let chunk = &mut buffer[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(last) = chunk.iter().rposition(|&byte| byte != 0) {
            return Ok(start + last as u64 + 1);
        }
        end = start;
    }
    Ok(from)
}

/// Starting positions examined per window by the file-level search.
const SEARCH_WINDOW_BYTES: u64 = 1 << 20;

/// Looks for a checksum-valid record with LSN >= `min_lsn` starting anywhere
/// in `file[first_start..file_bytes]`, after damage at `damage_offset`.
/// Memory: one window plus the largest record the format allows.
pub(crate) fn find_valid_record_in_file(
    file: &File,
    first_start: u64,
    file_bytes: u64,
    min_lsn: Lsn,
    damage_offset: u64,
) -> std::io::Result<Option<FoundRecord>> {
    let mut start = first_start;
    let mut window = Vec::new();
    while start + RECORD_HEADER_BYTES as u64 <= file_bytes {
        let starts = SEARCH_WINDOW_BYTES.min(file_bytes - start);
        let overlap = (RECORD_HEADER_BYTES as u64 + RECORD_BYTES_LIMIT as u64)
            .min(file_bytes - start - starts);
        window.resize((starts + overlap) as usize, 0);
        file.read_exact_at(&mut window, start)?;
        let found = find_valid_record(&window, start, starts as usize, min_lsn, damage_offset);
        if found.is_some() {
            return Ok(found);
        }
        start += starts;
    }
    Ok(None)
}

/// Starting with `first` (the first valid record after damage at
/// `damage_offset`, where LSN `damaged_lsn` was expected), hops from valid
/// record to valid record to the end of the file and returns the first
/// one whose `unsynced_span` says LSN `damaged_lsn` was already durable
/// when it was written: proof that the damage is not a crash artefact.
fn find_durable_claim(
    file: &File,
    first: FoundRecord,
    file_bytes: u64,
    damaged_lsn: Lsn,
    damage_offset: u64,
) -> std::io::Result<Option<FoundRecord>> {
    let mut found = Some(first);
    while let Some(record) = found {
        if record.durable_lsn_claimed >= damaged_lsn {
            return Ok(Some(record));
        }
        let next_start = record.offset + record.record_bytes;
        found =
            find_valid_record_in_file(file, next_start, file_bytes, record.lsn + 1, damage_offset)?;
    }
    Ok(None)
}

/// Counts the checksum-valid records from offset `from` to the end of the
/// file (repair reports how many it dropped), hopping over each one found.
pub(crate) fn count_valid_records_in_file(
    path: &Path,
    from: u64,
    min_lsn: Lsn,
) -> Result<u64, LogError> {
    let file = File::open(path).map_err(|e| LogError::io("open", path, e))?;
    let file_bytes = file
        .metadata()
        .map_err(|e| LogError::io("stat", path, e))?
        .len();
    let (mut count, mut start, mut lsn_floor) = (0u64, from, min_lsn);
    while let Some(found) = find_valid_record_in_file(&file, start, file_bytes, lsn_floor, from)
        .map_err(|e| LogError::io("read", path, e))?
    {
        count += 1;
        start = found.offset + found.record_bytes;
        lsn_floor = found.lsn + 1;
    }
    Ok(count)
}
