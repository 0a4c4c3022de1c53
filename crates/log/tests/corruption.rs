//! Damage that is not a torn tail: open must refuse, naming segment and
//! offset; `repair: true` must then truncate there and recover the prefix.

mod common;

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use common::{open, payload_for, read_all, small_options};
use levee_log::{Log, LogError, LogOptions, SegmentStatus, dump, inspect};

const RECORDS: u64 = 120;
const PAYLOAD_BYTES: usize = 180; // 200 bytes per record, 20 per 4 KiB segment

fn build_log() -> (tempfile::TempDir, Vec<levee_log::SegmentInfo>) {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small_options());
    for lsn in 1..=RECORDS {
        log.append_blocking(0, payload_for(lsn, PAYLOAD_BYTES))
            .unwrap();
    }
    let segments = log.stats().segments;
    assert!(segments.len() >= 4);
    (dir, segments)
}

fn record_offset(segment: &levee_log::SegmentInfo, lsn: u64) -> u64 {
    32 + (lsn - segment.first_lsn) * (20 + PAYLOAD_BYTES as u64)
}

fn flip_bit(path: &Path, offset: u64, bit: u8) {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut byte = [0u8; 1];
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.read_exact(&mut byte).unwrap();
    byte[0] ^= 1 << bit;
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.write_all(&byte).unwrap();
}

fn repair_options() -> LogOptions {
    LogOptions {
        repair: true,
        ..small_options()
    }
}

fn expect_corrupt(dir: &Path) -> (std::path::PathBuf, u64, String) {
    match Log::open(dir, small_options()) {
        Err(LogError::Corrupt {
            segment,
            offset,
            reason,
        }) => (segment, offset, reason),
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok((_, report)) => panic!("expected Corrupt, opened: {report}"),
    }
}

#[test]
fn a_flipped_bit_in_an_earlier_segment_is_refused_then_repaired() {
    let (dir, segments) = build_log();
    let damaged = &segments[1];
    let bad_lsn = damaged.first_lsn + 3;
    let bad_offset = record_offset(damaged, bad_lsn);
    // Flip a payload bit in the middle of the record.
    flip_bit(&damaged.path, bad_offset + 20 + 50, 3);

    let (segment, offset, reason) = expect_corrupt(dir.path());
    assert_eq!(segment, damaged.path);
    assert_eq!(offset, bad_offset);
    assert!(reason.contains("checksum"), "{reason}");
    let message = LogError::Corrupt {
        segment,
        offset,
        reason,
    }
    .to_string();
    assert!(
        message.contains(&format!("offset {bad_offset}")) && message.contains("repair"),
        "{message}"
    );

    // inspect says the same, read-only, and dump stops there with the error.
    let report = inspect(dir.path()).unwrap();
    assert!(!report.ok && !report.opens_without_repair);
    assert_eq!(report.problem.as_ref().unwrap().offset, bad_offset);
    assert_eq!(
        report.segments[1].status,
        SegmentStatus::Corrupt { offset: bad_offset }
    );
    assert_eq!(report.segments[2].status, SegmentStatus::NotExamined);
    assert!(report.to_string().contains("CORRUPT"));
    let dumped: Vec<_> = dump(dir.path(), 1, usize::MAX).unwrap().collect();
    assert_eq!(dumped.len() as u64, bad_lsn);
    assert!(dumped[..dumped.len() - 1].iter().all(Result::is_ok));
    assert!(matches!(dumped.last(), Some(Err(LogError::Corrupt { .. }))));

    let (log, report) = open(dir.path(), repair_options());
    let repair = report.repair.as_ref().expect("repair reported");
    assert_eq!(repair.offset, bad_offset);
    assert_eq!(
        repair.records_dropped,
        RECORDS - bad_lsn,
        "all valid records after the bad one"
    );
    assert_eq!(repair.segments_moved_aside.len(), segments.len() - 2);
    assert!(repair.segments_moved_aside.iter().all(|p| p.exists()));
    assert!(repair.broken_copy.as_ref().unwrap().exists());
    assert_eq!(report.last_lsn, bad_lsn - 1);
    let records = read_all(&log, 1);
    assert_eq!(records.len() as u64, bad_lsn - 1);
    assert!(
        records
            .iter()
            .all(|r| r.payload == payload_for(r.lsn, PAYLOAD_BYTES))
    );
    assert_eq!(log.append_blocking(0, b"x".to_vec()).unwrap(), bad_lsn);
    drop(log);
    // The repaired log opens cleanly without repair.
    let (_, report) = open(dir.path(), small_options());
    assert!(report.repair.is_none() && report.torn_tail.is_none());
}

#[test]
fn damage_in_the_last_segment_followed_by_valid_records_is_corruption() {
    let (dir, segments) = build_log();
    let last = segments.last().unwrap();
    assert!(last.records >= 3);
    let bad_offset = record_offset(last, last.first_lsn);
    flip_bit(&last.path, bad_offset + 9, 0); // a bit of the LSN field
    let (segment, offset, reason) = expect_corrupt(dir.path());
    assert_eq!((segment, offset), (last.path.clone(), bad_offset));
    assert!(reason.contains("not a torn tail"), "{reason}");
    let (_, report) = open(dir.path(), repair_options());
    assert_eq!(report.last_lsn, last.first_lsn - 1);
    assert_eq!(report.repair.unwrap().records_dropped, last.records - 1);
}

#[test]
fn damage_in_the_very_last_record_is_a_torn_tail() {
    let (dir, segments) = build_log();
    let last = segments.last().unwrap();
    flip_bit(&last.path, record_offset(last, last.last_lsn) + 30, 5);
    let (_, report) = open(dir.path(), small_options());
    assert_eq!(report.last_lsn, RECORDS - 1);
    assert!(report.torn_tail.is_some());
}

#[test]
fn a_damaged_segment_header_is_corruption_at_offset_zero() {
    let (dir, segments) = build_log();
    flip_bit(&segments[2].path, 17, 1); // first_lsn field
    let (segment, offset, _) = expect_corrupt(dir.path());
    assert_eq!((segment, offset), (segments[2].path.clone(), 0));
    let (log, report) = open(dir.path(), repair_options());
    assert_eq!(report.last_lsn, segments[1].last_lsn);
    assert_eq!(read_all(&log, 1).len() as u64, segments[1].last_lsn);
}

#[test]
fn a_missing_middle_segment_is_corruption() {
    let (dir, segments) = build_log();
    std::fs::remove_file(&segments[1].path).unwrap();
    let (segment, offset, reason) = expect_corrupt(dir.path());
    assert_eq!((segment, offset), (segments[2].path.clone(), 0));
    assert!(reason.contains("previous segment ends"), "{reason}");
}

#[test]
fn repair_that_drops_checkpointed_records_falls_back_to_an_older_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let segments = {
        let (log, _) = open(dir.path(), small_options());
        for lsn in 1..=RECORDS {
            log.append_blocking(0, payload_for(lsn, PAYLOAD_BYTES))
                .unwrap();
        }
        log.write_checkpoint(10, &10u64).unwrap();
        log.write_checkpoint(100, &100u64).unwrap();
        log.stats().segments
    };
    // Damage a record at LSN ~50: the checkpoint at 100 covers lost records.
    let damaged = segments
        .iter()
        .find(|s| s.first_lsn <= 50 && 50 <= s.last_lsn)
        .unwrap();
    flip_bit(&damaged.path, record_offset(damaged, 50) + 25, 2);
    let (_, report) = open(dir.path(), repair_options());
    assert_eq!(report.last_lsn, 49);
    assert_eq!(report.checkpoint.as_ref().unwrap().covers_lsn, 10);
    let skipped = &report.checkpoints_skipped;
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].covers_lsn, 100);
    assert!(
        skipped[0].reason.contains("missing"),
        "{}",
        skipped[0].reason
    );
}

#[test]
fn without_any_checkpoint_a_log_that_does_not_start_at_one_is_refused() {
    let (dir, segments) = build_log();
    std::fs::remove_file(&segments[0].path).unwrap();
    let (_, _, reason) = expect_corrupt(dir.path());
    assert!(reason.contains("no valid checkpoint"), "{reason}");
    let (_, report) = open(dir.path(), repair_options());
    assert_eq!(report.state_gap_before_lsn, Some(segments[1].first_lsn));
}
