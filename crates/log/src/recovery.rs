//! Recovery at open: make the directory a consistent log again after
//! whatever happened to the previous process, and say what was done.
//!
//! Order of work: delete temp-file debris (including an unused spare
//! segment), verify every segment (`verify::examine`; zeros after the last
//! record of a version 2 segment are free space, not damage), cut a torn
//! tail (keeping the damaged bytes as `.broken`),
//! refuse or (with `repair`) truncate at corruption, then pick the newest
//! checkpoint that verifies and agrees with the log, and open the last
//! segment for appending. Every change is made durable (file and directory
//! fsync) before the log accepts writes, so a crash during recovery is
//! recovered from the same way.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::checkpoint::{CheckpointInfo, list_checkpoint_files, load_checkpoint_file};
use crate::format::{SEGMENT_HEADER_BYTES, SegmentHeader, parse_segment_header};
use crate::fsio::{SyncFaults, TEMP_SUFFIX, is_no_space, move_aside, save_broken_tail, sync_dir};
use crate::segment::{
    SegmentMeta, create_preallocated_segment, create_segment, list_segment_files, open_for_writing,
    truncate_segment,
};
use crate::status::{RecoveryReport, RepairReport, SkippedCheckpoint, TornTail};
use crate::verify::{Problem, ProblemKind, count_valid_records_in_file, end_of_data, examine};
use crate::writer::ActiveFile;
use crate::{LogError, LogOptions, Lsn};

/// A recovered log, ready for appending.
pub(crate) struct Recovered {
    pub segments: Vec<SegmentMeta>,
    /// Retained checkpoints, oldest first.
    pub checkpoints: Vec<CheckpointInfo>,
    pub active: ActiveFile,
    pub report: RecoveryReport,
}

pub(crate) fn recover(
    dir: &Path,
    options: &LogOptions,
    faults: &SyncFaults,
) -> Result<Recovered, LogError> {
    let started = Instant::now();
    let mut report = RecoveryReport {
        temp_files_removed: remove_temp_files(dir)?,
        ..RecoveryReport::default()
    };
    let files = list_segment_files(dir)?;
    let examined = examine(&files)?;
    report.bytes_scanned = examined.bytes_scanned;
    let mut segments = examined.segments;
    if let (Some(problem), Some(index)) = (examined.problem, examined.problem_index) {
        let header_ok = segments.last().is_some_and(|s| s.path == problem.segment);
        match problem.kind {
            ProblemKind::TornTail => {
                debug_assert!(header_ok, "a torn tail is always past a valid header");
                report.torn_tail = Some(cut_torn_tail(&problem, faults)?);
                tracing::warn!(segment = %problem.segment.display(), offset = problem.offset, "cut a torn tail");
            }
            ProblemKind::Corrupt if !options.repair => {
                return Err(LogError::Corrupt {
                    segment: problem.segment,
                    offset: problem.offset,
                    reason: problem.reason,
                });
            }
            ProblemKind::Corrupt => {
                let repair = repair_at(&problem, header_ok, &files[index + 1..], faults)?;
                tracing::error!(segment = %problem.segment.display(), offset = problem.offset,
                    records_dropped = repair.records_dropped, "repaired a corrupt log by truncation");
                report.repair = Some(repair);
            }
        }
        if header_ok {
            let damaged = segments.last_mut().expect("header_ok implies a segment");
            debug_assert_eq!(damaged.bytes, problem.offset);
        }
    }
    let choice = choose_checkpoints(dir, &segments, options)?;
    let first_lsn = segments
        .first()
        .map_or(choice.next_lsn_if_empty, |s| s.first_lsn);
    if choice.usable.is_empty() && first_lsn > 1 {
        let reason = format!(
            "the log starts at LSN {first_lsn}, but no valid checkpoint covers the LSNs before it"
        );
        if !options.repair {
            return Err(LogError::Corrupt {
                segment: segments
                    .first()
                    .map_or(dir.to_path_buf(), |s| s.path.clone()),
                offset: 0,
                reason,
            });
        }
        tracing::error!(%reason, "recovering anyway because repair is set");
        report.state_gap_before_lsn = Some(first_lsn);
    }
    report.checkpoints_skipped = apply_checkpoint_choice(dir, &choice)?;
    let active = open_active_segment(dir, &mut segments, first_lsn, options, faults)?;
    let last_lsn = segments.last().expect("active segment exists").last_lsn;
    let checkpoint = choice.usable.last().cloned();
    report.first_lsn = first_lsn;
    report.last_lsn = last_lsn;
    report.records_replayable =
        last_lsn - checkpoint.as_ref().map_or(first_lsn - 1, |c| c.covers_lsn);
    report.checkpoint = checkpoint;
    report.segments = segments.len();
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(Recovered {
        segments,
        checkpoints: choice.usable,
        active,
        report,
    })
}

/// Deletes `*.tmp` files: a rotation or checkpoint that crashed before its
/// rename. Their content was never part of the log.
fn remove_temp_files(dir: &Path) -> Result<usize, LogError> {
    let mut removed = 0;
    let entries = std::fs::read_dir(dir).map_err(|e| LogError::io("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| LogError::io("list", dir, e))?;
        let is_temp = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.ends_with(TEMP_SUFFIX));
        if is_temp {
            std::fs::remove_file(entry.path())
                .map_err(|e| LogError::io("remove temp file", entry.path(), e))?;
            removed += 1;
        }
    }
    if removed > 0 {
        sync_dir(dir)?;
    }
    Ok(removed)
}

/// Granularity of the torn-tail copy in a preallocated segment.
const BLOCK_BYTES: u64 = 4096;

fn cut_torn_tail(problem: &Problem, faults: &SyncFaults) -> Result<TornTail, LogError> {
    // In a possibly preallocated segment, the zeros after the damage are
    // free space, not part of the torn write: the copy ends with the block
    // that holds the last non-zero byte (whole blocks, since the torn
    // record itself may end in zeros).
    let damage_end = if segment_may_be_preallocated(&problem.segment)? {
        let file =
            File::open(&problem.segment).map_err(|e| LogError::io("open", &problem.segment, e))?;
        let data_end = end_of_data(&file, problem.offset, problem.file_bytes)
            .map_err(|e| LogError::io("read", &problem.segment, e))?;
        Some(
            data_end
                .next_multiple_of(BLOCK_BYTES)
                .min(problem.file_bytes),
        )
    } else {
        None
    };
    let (broken_copy, bytes_cut) =
        match save_broken_tail(&problem.segment, problem.offset, damage_end, faults) {
            Ok((copy, bytes)) => (Some(copy), bytes),
            Err(LogError::Io { ref source, .. }) if is_no_space(source) => {
                // The evidence is lost, not data: a torn tail was never
                // acknowledged. Refusing to start would help nobody.
                tracing::warn!(segment = %problem.segment.display(), offset = problem.offset,
                    "no space to keep the torn tail as .broken evidence; cutting it anyway");
                let end = damage_end.unwrap_or(problem.file_bytes);
                (None, end.saturating_sub(problem.offset))
            }
            Err(error) => return Err(error),
        };
    truncate_segment(&problem.segment, problem.offset)?;
    Ok(TornTail {
        segment: problem.segment.clone(),
        offset: problem.offset,
        bytes_cut,
        broken_copy,
        reason: problem.reason.clone(),
    })
}

/// Truncates at the corruption and moves every later segment aside,
/// counting the valid records that are thereby dropped.
fn repair_at(
    problem: &Problem,
    header_ok: bool,
    later: &[(Lsn, PathBuf)],
    faults: &SyncFaults,
) -> Result<RepairReport, LogError> {
    let count_from = if header_ok { problem.offset } else { 0 };
    let mut records_dropped =
        count_valid_records_in_file(&problem.segment, count_from, problem.expected_lsn)?;
    for (first_lsn, path) in later {
        // A later segment's records start at its own first LSN, which
        // bounds how large an LSN at a given offset can plausibly be.
        let min_lsn = problem.expected_lsn.max(*first_lsn);
        records_dropped += count_valid_records_in_file(path, SEGMENT_HEADER_BYTES as u64, min_lsn)?;
    }
    let broken_copy = if !header_ok {
        Some(move_aside(&problem.segment)?)
    } else if problem.offset < problem.file_bytes {
        let (copy, _) = save_broken_tail(&problem.segment, problem.offset, None, faults)?;
        truncate_segment(&problem.segment, problem.offset)?;
        Some(copy)
    } else {
        None
    };
    let mut segments_moved_aside = Vec::with_capacity(later.len());
    for (_, path) in later {
        segments_moved_aside.push(move_aside(path)?);
    }
    let dir = problem.segment.parent().unwrap_or(Path::new("."));
    sync_dir(dir)?;
    Ok(RepairReport {
        segment: problem.segment.clone(),
        offset: problem.offset,
        reason: problem.reason.clone(),
        records_dropped,
        broken_copy,
        segments_moved_aside,
    })
}

/// Which checkpoints to use, which to move aside, which to delete.
struct CheckpointChoice {
    /// Verified and consistent with the log, oldest first, at most
    /// `checkpoints_kept`.
    usable: Vec<CheckpointInfo>,
    /// Unusable: (file, covered LSN, reason).
    move_aside: Vec<(PathBuf, Lsn, String)>,
    /// Valid but no longer needed (older than the retained ones).
    delete: Vec<PathBuf>,
    /// First LSN of a log that has no segment at all.
    next_lsn_if_empty: Lsn,
}

fn choose_checkpoints(
    dir: &Path,
    segments: &[SegmentMeta],
    options: &LogOptions,
) -> Result<CheckpointChoice, LogError> {
    let mut choice = CheckpointChoice {
        usable: Vec::new(),
        move_aside: Vec::new(),
        delete: Vec::new(),
        next_lsn_if_empty: 1,
    };
    let mut verified = Vec::new();
    for (covers_lsn, path) in list_checkpoint_files(dir)?.into_iter().rev() {
        match load_checkpoint_file(&path, covers_lsn, options.checkpoint_bytes_max) {
            Ok(loaded) => verified.push(loaded.info),
            Err(reason) => {
                tracing::warn!(path = %path.display(), %reason, "skipping a corrupt checkpoint");
                choice.move_aside.push((path, covers_lsn, reason));
            }
        }
    }
    // `verified` is newest first. A log without segments continues after
    // the newest checkpoint.
    let (first_lsn, last_lsn) = match (segments.first(), segments.last()) {
        (Some(first), Some(last)) => (first.first_lsn, last.last_lsn),
        _ => {
            let next = verified.first().map_or(1, |c| c.covers_lsn + 1);
            choice.next_lsn_if_empty = next;
            (next, next - 1)
        }
    };
    for info in verified {
        if info.covers_lsn > last_lsn {
            let reason = format!(
                "checkpoint covers LSN {} but the log ends at LSN {last_lsn}: acknowledged \
                 records are missing from the log",
                info.covers_lsn
            );
            if !options.repair {
                return Err(LogError::Corrupt {
                    segment: info.path,
                    offset: 0,
                    reason,
                });
            }
            choice.move_aside.push((info.path, info.covers_lsn, reason));
        } else if info.covers_lsn + 1 < first_lsn || choice.usable.len() >= options.checkpoints_kept
        {
            choice.delete.push(info.path);
        } else {
            choice.usable.push(info);
        }
    }
    choice.usable.reverse();
    Ok(choice)
}

fn apply_checkpoint_choice(
    dir: &Path,
    choice: &CheckpointChoice,
) -> Result<Vec<SkippedCheckpoint>, LogError> {
    let mut skipped = Vec::with_capacity(choice.move_aside.len());
    for (path, covers_lsn, reason) in &choice.move_aside {
        skipped.push(SkippedCheckpoint {
            path: path.clone(),
            covers_lsn: *covers_lsn,
            reason: reason.clone(),
            moved_to: Some(move_aside(path)?),
        });
    }
    for path in &choice.delete {
        std::fs::remove_file(path).map_err(|e| LogError::io("delete old checkpoint", path, e))?;
    }
    if !choice.move_aside.is_empty() || !choice.delete.is_empty() {
        sync_dir(dir)?;
    }
    Ok(skipped)
}

/// Opens the last segment for appending, or creates the first one
/// (preallocated, see `segment`).
fn open_active_segment(
    dir: &Path,
    segments: &mut Vec<SegmentMeta>,
    first_lsn: Lsn,
    options: &LogOptions,
    faults: &SyncFaults,
) -> Result<ActiveFile, LogError> {
    if let Some(last) = segments.last() {
        let file = open_for_writing(&last.path)?;
        let file_bytes = file_length(&file, &last.path)?;
        // Past the valid bytes there can only be free space (zeros in a
        // version 2 segment), which `examine` checked.
        assert!(
            file_bytes >= last.bytes,
            "recovery left at least the valid bytes"
        );
        return Ok(ActiveFile {
            file,
            path: last.path.clone(),
            bytes: last.bytes,
            file_bytes,
            records: last.records(),
            has_spans: segment_header(&last.path)?.is_some_and(|h| h.has_spans()),
        });
    }
    let (file, path, file_bytes) =
        match create_preallocated_segment(dir, first_lsn, options.segment_bytes_max, faults) {
            Ok((file, path)) => (file, path, options.segment_bytes_max),
            Err(LogError::Io { ref source, .. }) if is_no_space(source) => {
                tracing::warn!(dir = %dir.display(),
                    "no space to preallocate the first segment; it grows by appending instead");
                let (file, path) = create_segment(dir, first_lsn, faults)?;
                (file, path, SEGMENT_HEADER_BYTES as u64)
            }
            Err(error) => return Err(error),
        };
    segments.push(SegmentMeta::empty(path.clone(), first_lsn, 0));
    Ok(ActiveFile {
        file,
        path,
        bytes: SEGMENT_HEADER_BYTES as u64,
        file_bytes,
        records: 0,
        has_spans: true,
    })
}

/// True if the segment's header says it may carry free space (version 2).
fn segment_may_be_preallocated(path: &Path) -> Result<bool, LogError> {
    Ok(segment_header(path)?.is_some_and(|h| h.may_be_preallocated()))
}

/// The segment's header, if it verifies.
fn segment_header(path: &Path) -> Result<Option<SegmentHeader>, LogError> {
    let file = File::open(path).map_err(|e| LogError::io("open", path, e))?;
    let mut header = [0u8; SEGMENT_HEADER_BYTES];
    use std::os::unix::fs::FileExt;
    file.read_exact_at(&mut header, 0)
        .map_err(|e| LogError::io("read", path, e))?;
    Ok(parse_segment_header(&header).ok())
}

fn file_length(file: &File, path: &Path) -> Result<u64, LogError> {
    Ok(file
        .metadata()
        .map_err(|e| LogError::io("stat", path, e))?
        .len())
}
