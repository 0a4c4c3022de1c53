//! Read-only diagnostics for `levee log inspect` and `levee log dump`.
//!
//! Neither takes the directory lock or changes a byte, so both are safe to
//! run beside a live host (a torn tail reported then may just be a write in
//! flight) and on a copy of a damaged log sent for analysis.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::checkpoint::{CheckpointInfo, list_checkpoint_files, load_checkpoint_file};
use crate::reader::LogReader;
use crate::segment::list_segment_files;
use crate::verify::{Problem, ProblemKind, examine};
use crate::{LogError, Lsn};

/// Checkpoints larger than this are reported, not loaded, by `inspect`.
const INSPECT_CHECKPOINT_BYTES_MAX: u64 = 1 << 30;

/// Everything `inspect` found.
#[derive(Clone, Debug, Serialize)]
pub struct InspectReport {
    pub dir: PathBuf,
    /// No damage at all.
    pub ok: bool,
    /// `Log::open` would succeed without `repair` (at worst cutting a torn
    /// tail).
    pub opens_without_repair: bool,
    pub first_lsn: Option<Lsn>,
    pub last_lsn: Option<Lsn>,
    pub records: u64,
    pub total_bytes: u64,
    pub segments: Vec<SegmentReport>,
    pub checkpoints: Vec<CheckpointReport>,
    pub latest_valid_checkpoint: Option<CheckpointInfo>,
    /// The first damage found, with segment and byte offset.
    pub problem: Option<Problem>,
    /// `.broken` side copies left by earlier recoveries.
    pub broken_files: Vec<PathBuf>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SegmentReport {
    pub path: PathBuf,
    pub first_lsn: Lsn,
    /// `None` when the segment holds no valid record.
    pub last_lsn: Option<Lsn>,
    pub records: u64,
    pub file_bytes: u64,
    pub status: SegmentStatus,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SegmentStatus {
    Ok,
    TornTail {
        offset: u64,
    },
    Corrupt {
        offset: u64,
    },
    /// Comes after a corrupt segment, so it was not verified.
    NotExamined,
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckpointReport {
    pub path: PathBuf,
    pub covers_lsn: Lsn,
    pub created_unix_ms: Option<u64>,
    pub valid: bool,
    pub problem: Option<String>,
}

/// Verifies every checksum in `dir` without modifying anything and reports
/// segments, LSN ranges, checkpoints and the first damage (segment + byte
/// offset). Errors only if the directory cannot be read at all.
pub fn inspect(dir: &Path) -> Result<InspectReport, LogError> {
    let files = list_segment_files(dir)?;
    let examined = examine(&files)?;
    let mut segments = Vec::with_capacity(files.len());
    for (index, (name_lsn, path)) in files.iter().enumerate() {
        let file_bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let meta = examined.segments.iter().find(|s| &s.path == path);
        let status = match (&examined.problem, examined.problem_index) {
            (Some(problem), Some(at)) if at == index => match problem.kind {
                ProblemKind::TornTail => SegmentStatus::TornTail {
                    offset: problem.offset,
                },
                ProblemKind::Corrupt => SegmentStatus::Corrupt {
                    offset: problem.offset,
                },
            },
            (Some(_), Some(at)) if index > at => SegmentStatus::NotExamined,
            _ => SegmentStatus::Ok,
        };
        segments.push(SegmentReport {
            path: path.clone(),
            first_lsn: *name_lsn,
            last_lsn: meta.filter(|m| m.records() > 0).map(|m| m.last_lsn),
            records: meta.map_or(0, |m| m.records()),
            file_bytes,
            status,
        });
    }
    let checkpoints = inspect_checkpoints(dir)?;
    let latest_valid_checkpoint =
        checkpoints
            .iter()
            .rev()
            .find(|c| c.valid)
            .map(|c| CheckpointInfo {
                path: c.path.clone(),
                covers_lsn: c.covers_lsn,
                created_unix_ms: c.created_unix_ms.unwrap_or(0),
                bytes: std::fs::metadata(&c.path).map(|m| m.len()).unwrap_or(0),
            });
    let valid = &examined.segments;
    let last_lsn = valid
        .iter()
        .rev()
        .find(|s| s.records() > 0)
        .map(|s| s.last_lsn);
    Ok(InspectReport {
        dir: dir.to_path_buf(),
        ok: examined.problem.is_none() && checkpoints.iter().all(|c| c.valid),
        opens_without_repair: examined
            .problem
            .as_ref()
            .is_none_or(|p| p.kind == ProblemKind::TornTail),
        first_lsn: valid.first().map(|s| s.first_lsn),
        last_lsn,
        records: valid.iter().map(|s| s.records()).sum(),
        total_bytes: segments.iter().map(|s| s.file_bytes).sum(),
        segments,
        checkpoints,
        latest_valid_checkpoint,
        problem: examined.problem,
        broken_files: list_broken_files(dir)?,
    })
}

fn inspect_checkpoints(dir: &Path) -> Result<Vec<CheckpointReport>, LogError> {
    let mut reports = Vec::new();
    for (covers_lsn, path) in list_checkpoint_files(dir)? {
        let report = match load_checkpoint_file(&path, covers_lsn, INSPECT_CHECKPOINT_BYTES_MAX) {
            Ok(loaded) => CheckpointReport {
                path,
                covers_lsn,
                created_unix_ms: Some(loaded.info.created_unix_ms),
                valid: true,
                problem: None,
            },
            Err(reason) => CheckpointReport {
                path,
                covers_lsn,
                created_unix_ms: None,
                valid: false,
                problem: Some(reason),
            },
        };
        reports.push(report);
    }
    Ok(reports)
}

fn list_broken_files(dir: &Path) -> Result<Vec<PathBuf>, LogError> {
    let mut found = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| LogError::io("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| LogError::io("list", dir, e))?;
        if entry.file_name().to_string_lossy().contains(".broken") {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

/// Reads up to `limit` records from LSN `from` on, read-only, verifying each
/// one. Stops quietly at a torn tail; yields a `Corrupt` error where the
/// valid part of a corrupt log ends.
pub fn dump(dir: &Path, from: Lsn, limit: usize) -> Result<Dump, LogError> {
    let from = from.max(1);
    let files = list_segment_files(dir)?;
    // Skip segments that end before `from` (the next one starts at or
    // before it); verify only the rest.
    let skip = files
        .windows(2)
        .take_while(|pair| pair[1].0 <= from)
        .count();
    let examined = examine(&files[skip..])?;
    if let Some(first) = examined.segments.first().filter(|s| from < s.first_lsn) {
        return Err(LogError::Compacted {
            requested: from,
            first_available: first.first_lsn,
        });
    }
    let trailing_error = examined
        .problem
        .filter(|p| p.kind == ProblemKind::Corrupt)
        .map(|p| LogError::Corrupt {
            segment: p.segment,
            offset: p.offset,
            reason: p.reason,
        });
    Ok(Dump {
        reader: LogReader::fixed(examined.segments, from, limit),
        trailing_error,
    })
}

/// Iterator returned by [`dump`].
pub struct Dump {
    reader: LogReader,
    trailing_error: Option<LogError>,
}

impl Iterator for Dump {
    type Item = Result<crate::Record, LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.reader.next() {
            Some(item) => Some(item),
            None if self.reader.exhausted_limit() => None,
            None => self.trailing_error.take().map(Err),
        }
    }
}

impl fmt::Display for InspectReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "log directory: {}", self.dir.display())?;
        let verdict = match (&self.problem, self.ok) {
            (None, true) => "OK".to_string(),
            (None, false) => "segments OK, but a checkpoint is damaged".to_string(),
            (Some(p), _) if p.kind == ProblemKind::TornTail => format!(
                "TORN TAIL in {} at offset {} ({}); the next open cuts it",
                p.segment.display(),
                p.offset,
                p.reason
            ),
            (Some(p), _) => format!(
                "CORRUPT in {} at offset {}: {}; open refuses without repair",
                p.segment.display(),
                p.offset,
                p.reason
            ),
        };
        writeln!(f, "status: {verdict}")?;
        match (self.first_lsn, self.last_lsn) {
            (Some(first), Some(last)) => writeln!(
                f,
                "records: {} (LSN {first}..={last}), {} bytes",
                self.records, self.total_bytes
            )?,
            _ => writeln!(f, "records: 0, {} bytes", self.total_bytes)?,
        }
        writeln!(f, "segments:")?;
        for segment in &self.segments {
            let range = match segment.last_lsn {
                Some(last) => format!("{}..={last}", segment.first_lsn),
                None => format!("{}.. (empty)", segment.first_lsn),
            };
            let status = match &segment.status {
                SegmentStatus::Ok => "ok".to_string(),
                SegmentStatus::TornTail { offset } => format!("torn tail at offset {offset}"),
                SegmentStatus::Corrupt { offset } => format!("CORRUPT at offset {offset}"),
                SegmentStatus::NotExamined => "not examined (after corruption)".to_string(),
            };
            writeln!(
                f,
                "  {}  LSN {range}  {} records  {} bytes  {status}",
                segment.path.display(),
                segment.records,
                segment.file_bytes
            )?;
        }
        writeln!(f, "checkpoints:")?;
        if self.checkpoints.is_empty() {
            writeln!(f, "  (none)")?;
        }
        for checkpoint in &self.checkpoints {
            let status = match &checkpoint.problem {
                None => "ok".to_string(),
                Some(problem) => format!("INVALID: {problem}"),
            };
            writeln!(
                f,
                "  {}  covers LSN {}  {status}",
                checkpoint.path.display(),
                checkpoint.covers_lsn
            )?;
        }
        if let Some(latest) = &self.latest_valid_checkpoint {
            writeln!(
                f,
                "latest valid checkpoint covers LSN {}",
                latest.covers_lsn
            )?;
        }
        for broken in &self.broken_files {
            writeln!(f, "side copy of damaged bytes: {}", broken.display())?;
        }
        Ok(())
    }
}
