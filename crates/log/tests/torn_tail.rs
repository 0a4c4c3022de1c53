//! Crash artefacts at the end of the log: a write cut at any byte, or
//! followed by garbage (or, in a version 1 segment, zeros), must be cut off
//! on open, keeping exactly the records before it, with the cut bytes saved
//! as `.broken`. Zeros after the last record of a version 2 segment are
//! free space (preallocation), kept without a report.

mod common;

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use common::{open, payload_for, read_all, small_options};
use levee_log::format::encode_segment_header_version;
use levee_log::{LogOptions, SyncMode};

/// Segment size large enough that all records land in one segment after
/// the first rotation, so the last segment holds several records.
fn options() -> LogOptions {
    LogOptions {
        segment_bytes_max: 64 << 10,
        sync: SyncMode::Always,
        ..small_options()
    }
}

/// Builds a log of `count` records and returns (dir, last segment path,
/// record start offsets within it as (lsn, offset)).
fn build_log(count: u64) -> (tempfile::TempDir, PathBuf, Vec<(u64, u64)>) {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), options());
    for lsn in 1..=count {
        log.append_blocking(1, payload_for(lsn, size_for(lsn)))
            .unwrap();
    }
    let stats = log.stats();
    let last = stats.segments.last().unwrap().clone();
    drop(log);
    let mut offsets = Vec::new();
    let mut offset = 32u64;
    for lsn in last.first_lsn..=last.last_lsn {
        offsets.push((lsn, offset));
        offset += 20 + size_for(lsn) as u64;
    }
    assert_eq!(offset, std::fs::metadata(&last.path).unwrap().len());
    (dir, last.path, offsets)
}

fn size_for(lsn: u64) -> usize {
    [0, 1, 17, 100, 255][lsn as usize % 5]
}

fn copy_dir(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.path().join(entry.file_name())).unwrap();
    }
    to
}

/// Opens the damaged copy and checks: records 1..=keep_lsn intact, torn
/// tail reported and saved, log appendable at keep_lsn + 1.
fn assert_recovers_prefix(dir: &Path, keep_lsn: u64, cut_at: u64, file_len: u64) {
    let (log, report) = open(dir, options());
    assert_eq!(report.last_lsn, keep_lsn, "cut at {cut_at}");
    let records = read_all(&log, 1);
    assert_eq!(records.len() as u64, keep_lsn);
    for record in &records {
        assert_eq!(
            record.payload,
            payload_for(record.lsn, size_for(record.lsn))
        );
    }
    if cut_at < file_len {
        let torn = report
            .torn_tail
            .as_ref()
            .unwrap_or_else(|| panic!("cut at {cut_at}: no torn tail reported"));
        assert_eq!(torn.offset, cut_at);
        assert_eq!(torn.bytes_cut, file_len - cut_at);
        assert!(torn.broken_copy.as_ref().unwrap().exists());
        assert_eq!(
            std::fs::metadata(torn.broken_copy.as_ref().unwrap())
                .unwrap()
                .len(),
            file_len - cut_at
        );
    } else {
        assert!(report.torn_tail.is_none());
    }
    assert_eq!(
        log.append_blocking(0, b"after".to_vec()).unwrap(),
        keep_lsn + 1
    );
    drop(log);
    let (_, report) = open(dir, options());
    assert!(report.torn_tail.is_none(), "second open finds a clean log");
    assert_eq!(report.last_lsn, keep_lsn + 1);
}

#[test]
fn truncation_at_every_offset_of_the_last_records_keeps_the_valid_prefix() {
    let (dir, segment, offsets) = build_log(40);
    let file_len = std::fs::metadata(&segment).unwrap().len();
    // Every byte offset inside the last four records.
    let (first_cut_lsn, first_cut) = offsets[offsets.len() - 4];
    for cut in first_cut..file_len {
        let copy = copy_dir(dir.path());
        let damaged = copy.path().join(segment.file_name().unwrap());
        OpenOptions::new()
            .write(true)
            .open(&damaged)
            .unwrap()
            .set_len(cut)
            .unwrap();
        // The records that end at or before the cut survive; the cut record
        // (if the cut is not on a boundary) is the torn tail.
        let keep = offsets
            .iter()
            .filter(|&&(lsn, start)| start + 20 + size_for(lsn) as u64 <= cut)
            .map(|&(lsn, _)| lsn)
            .max()
            .unwrap_or(first_cut_lsn - 1);
        let valid_end = offsets
            .iter()
            .find(|&&(lsn, _)| lsn == keep + 1)
            .map_or(cut, |&(_, start)| start);
        assert_recovers_prefix(copy.path(), keep, valid_end, cut);
    }
}

/// Overwrites the last `records_zeroed` records with zeros and extends
/// the file by `zero_bytes` more zeros, as a preallocated or partially
/// flushed file would look. Returns (first zeroed LSN, its offset, length).
fn zero_the_tail(
    damaged: &Path,
    offsets: &[(u64, u64)],
    file_len: u64,
    records_zeroed: usize,
    zero_bytes: u64,
) -> (u64, u64, u64) {
    let (first_zeroed_lsn, from) = offsets[offsets.len() - records_zeroed];
    let mut file = OpenOptions::new().write(true).open(damaged).unwrap();
    file.seek(SeekFrom::Start(from)).unwrap();
    file.write_all(&vec![0u8; (file_len - from + zero_bytes) as usize])
        .unwrap();
    (first_zeroed_lsn, from, file_len + zero_bytes)
}

#[test]
fn zeros_after_the_last_record_are_free_space_in_a_version_2_segment() {
    // Version 2 segments may be preallocated: zeros after the last record
    // are what such a segment looks like after a crash. A record whose
    // bytes are zeros was never acknowledged (acknowledgement waits for its
    // fdatasync), so nothing is cut and nothing is reported.
    let (dir, segment, offsets) = build_log(25);
    let file_len = std::fs::metadata(&segment).unwrap().len();
    for (records_zeroed, zero_bytes) in [(1usize, 7u64), (2, 4096), (3, 1)] {
        let copy = copy_dir(dir.path());
        let damaged = copy.path().join(segment.file_name().unwrap());
        let (first_zeroed_lsn, _, new_len) =
            zero_the_tail(&damaged, &offsets, file_len, records_zeroed, zero_bytes);
        let keep_lsn = first_zeroed_lsn - 1;
        let (log, report) = open(copy.path(), options());
        assert!(report.torn_tail.is_none(), "{report:?}");
        assert_eq!(report.last_lsn, keep_lsn);
        assert_eq!(read_all(&log, 1).len() as u64, keep_lsn);
        assert_eq!(
            log.append_blocking(0, b"after".to_vec()).unwrap(),
            keep_lsn + 1
        );
        drop(log);
        // A clean close cuts the free space off.
        assert!(std::fs::metadata(&damaged).unwrap().len() < new_len);
        let (log, report) = open(copy.path(), options());
        assert!(report.torn_tail.is_none());
        assert_eq!(report.last_lsn, keep_lsn + 1);
        assert_eq!(read_all(&log, 1).len() as u64, keep_lsn + 1);
        let broken = std::fs::read_dir(copy.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .to_string_lossy()
                    .contains(".broken")
            })
            .count();
        assert_eq!(broken, 0, "nothing was damaged");
    }
}

#[test]
fn zeros_after_the_last_record_of_a_version_1_segment_are_a_torn_tail() {
    // Version 1 segments were never preallocated: zeros there are the
    // remains of a write that did not finish.
    let (dir, segment, offsets) = build_log(25);
    let file_len = std::fs::metadata(&segment).unwrap().len();
    let first_lsn = offsets[0].0;
    for (records_zeroed, zero_bytes) in [(1usize, 7u64), (2, 4096), (3, 1)] {
        let copy = copy_dir(dir.path());
        let damaged = copy.path().join(segment.file_name().unwrap());
        let mut file = OpenOptions::new().write(true).open(&damaged).unwrap();
        file.write_all(&encode_segment_header_version(first_lsn, 1))
            .unwrap();
        drop(file);
        let (first_zeroed_lsn, from, new_len) =
            zero_the_tail(&damaged, &offsets, file_len, records_zeroed, zero_bytes);
        assert_recovers_prefix(copy.path(), first_zeroed_lsn - 1, from, new_len);
    }
}

#[test]
fn garbage_after_the_last_record_is_a_torn_tail() {
    let (dir, segment, offsets) = build_log(25);
    let file_len = std::fs::metadata(&segment).unwrap().len();
    for seed in 0..20u64 {
        let copy = copy_dir(dir.path());
        let damaged = copy.path().join(segment.file_name().unwrap());
        let records_replaced = 1 + (seed as usize % 3);
        let (first_replaced_lsn, from) = offsets[offsets.len() - records_replaced];
        let garbage = payload_for(
            10_000 + seed,
            (file_len - from) as usize + seed as usize * 37,
        );
        let mut file = OpenOptions::new().write(true).open(&damaged).unwrap();
        file.seek(SeekFrom::Start(from)).unwrap();
        file.write_all(&garbage).unwrap();
        drop(file);
        assert_recovers_prefix(
            copy.path(),
            first_replaced_lsn - 1,
            from,
            from + garbage.len() as u64,
        );
    }
}

#[test]
fn leftover_temp_files_from_an_interrupted_rotation_are_removed() {
    let (dir, _, _) = build_log(10);
    std::fs::write(
        dir.path().join("seg-00000000000000000999.log.tmp"),
        b"LEVEELOG partial",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("checkpoint-00000000000000000005.ckpt.tmp"),
        b"partial",
    )
    .unwrap();
    let (log, report) = open(dir.path(), options());
    assert_eq!(report.temp_files_removed, 2);
    assert_eq!(report.last_lsn, 10);
    assert_eq!(read_all(&log, 1).len(), 10);
}
