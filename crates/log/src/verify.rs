//! Read-only verification of a directory's segments: the common first half
//! of recovery (`Log::open`) and of `inspect`/`dump`.
//!
//! It walks every segment in LSN order, checks headers, checksums and LSN
//! continuity, builds each segment's sparse index, and stops at the first
//! problem, which it classifies:
//! * torn tail: the damage is in the last segment and no valid record
//!   follows it. That is what a crash in the middle of a write leaves, and
//!   those bytes were never acknowledged (acknowledgement waits for the
//!   fdatasync that follows the whole write).
//! * corruption: anything else. Records after the damage were written, and
//!   possibly acknowledged, after the damaged ones, so silently dropping
//!   them could lose acknowledged writes.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::format::{
    RECORD_BYTES_LIMIT, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES, decode_segment_header,
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

/// Examines `files` (sorted by first LSN) without modifying anything.
pub(crate) fn examine(files: &[(Lsn, PathBuf)]) -> Result<Examined, LogError> {
    let mut examined = Examined {
        segments: Vec::with_capacity(files.len()),
        problem_index: None,
        problem: None,
        bytes_scanned: 0,
    };
    let mut next_lsn: Option<Lsn> = None;
    let mut position = 0u64;
    for (index, (name_lsn, path)) in files.iter().enumerate() {
        let is_last = index + 1 == files.len();
        let outcome = examine_segment(path, *name_lsn, next_lsn, position, is_last)?;
        examined.bytes_scanned += outcome.file_bytes;
        if let Some(meta) = outcome.meta {
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

struct SegmentOutcome {
    meta: Option<SegmentMeta>,
    problem: Option<Problem>,
    file_bytes: u64,
}

fn examine_segment(
    path: &Path,
    name_lsn: Lsn,
    expected_first: Option<Lsn>,
    base_position: u64,
    is_last: bool,
) -> Result<SegmentOutcome, LogError> {
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
            expected_lsn: expected_first.unwrap_or(name_lsn),
        }),
        file_bytes,
    };
    let mut header = [0u8; SEGMENT_HEADER_BYTES];
    let header_len =
        read_up_to(&mut file, &mut header).map_err(|e| LogError::io("read", path, e))?;
    let first_lsn = match decode_segment_header(&header[..header_len]) {
        Ok(lsn) => lsn,
        Err(why) => return Ok(corrupt_header(why.to_string())),
    };
    if first_lsn != name_lsn {
        return Ok(corrupt_header(format!(
            "segment header says first LSN {first_lsn} but the file name says {name_lsn}"
        )));
    }
    if let Some(expected) = expected_first.filter(|&e| e != first_lsn) {
        return Ok(corrupt_header(format!(
            "segment starts at LSN {first_lsn} but the previous segment ends at LSN {}",
            expected - 1
        )));
    }
    let mut meta = SegmentMeta::empty(path.to_path_buf(), first_lsn, base_position);
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
    let problem = match &outcome.stop {
        ScanStop::CleanEnd => None,
        stop => {
            let offset = outcome.valid_end;
            let expected_lsn = meta.last_lsn + 1;
            let later_record =
                find_valid_record_in_file(&file, offset + 1, file_bytes, expected_lsn, offset)
                    .map_err(|e| LogError::io("read", path, e))?;
            let kind = if is_last && later_record.is_none() {
                ProblemKind::TornTail
            } else {
                ProblemKind::Corrupt
            };
            let reason = match later_record {
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
