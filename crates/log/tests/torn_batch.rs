//! A half-written, never-acknowledged last batch against real mid-log
//! corruption (format version 3, `unsynced_span`).
//!
//! A group commit writes a batch with one `write` and then fdatasyncs it;
//! a crash before the fdatasync completes can persist a later page of the
//! batch and not an earlier one. Recovery finds damage followed by valid
//! records whose spans say the damaged LSNs were not yet durable: a torn
//! tail, cut at the damage. Damage followed by records written after it
//! was durable is corruption: refused, naming segment and offset and
//! `levee serve --repair`; with repair, cut there.
//!
//! The records are written by the real writer. A batch whose fdatasync has
//! not returned is modelled with `SyncMode::EveryMs` and a long interval:
//! appends are written while the durable LSN stays where it was, exactly
//! as in a batch (or two overlapping batches) in flight.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use common::{open, payload_for, read_all};
use levee_log::format::{RECORD_HEADER_BYTES, RecordHeader};
use levee_log::{Log, LogError, LogOptions, SyncMode};

/// Records acknowledged one by one (each synced) before the batch.
const BEFORE: u64 = 10;
/// Records of the never-synced batch.
const BATCH: u64 = 20;
const PAYLOAD_BYTES: usize = 1000;
const PAGE_BYTES: u64 = 4096;

fn options(sync: SyncMode) -> LogOptions {
    LogOptions {
        segment_bytes_max: 1 << 20,
        record_bytes_max: 4096,
        sync,
        ..common::small_options()
    }
}

/// Record offsets in the (only) segment, by LSN (index 0 is LSN 1).
fn offsets() -> Vec<u64> {
    (0..BEFORE + BATCH)
        .map(|index| 32 + index * (RECORD_HEADER_BYTES + PAYLOAD_BYTES) as u64)
        .collect()
}

/// Builds `BEFORE` synced records, then `BATCH` more written by a second
/// process "life" whose durable LSN never moved (`batch_synced: false`) or
/// that synced each one (`true`: a later batch after every record).
fn build(batch_synced: bool) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), options(SyncMode::Always));
    for lsn in 1..=BEFORE {
        log.append_blocking(1, payload_for(lsn, PAYLOAD_BYTES))
            .unwrap();
    }
    drop(log);
    let mode = match batch_synced {
        true => SyncMode::Always,
        false => SyncMode::EveryMs(3_600_000),
    };
    let (log, _) = open(dir.path(), options(mode));
    for lsn in BEFORE + 1..=BEFORE + BATCH {
        log.append_blocking(1, payload_for(lsn, PAYLOAD_BYTES))
            .unwrap();
    }
    let segment = log.stats().segments.last().unwrap().path.clone();
    drop(log);
    (dir, segment)
}

/// Zeroes the page that holds the start of record `lsn`'s payload, as a
/// crash that lost that page of the write (and kept the later ones) does.
/// Returns the offset of the first record that page damages.
fn lose_page_of(segment: &Path, lsn: u64) -> u64 {
    let offsets = offsets();
    let payload_at = offsets[lsn as usize - 1] + RECORD_HEADER_BYTES as u64;
    let page = payload_at / PAGE_BYTES * PAGE_BYTES;
    let file = OpenOptions::new().write(true).open(segment).unwrap();
    file.write_all_at(&[0u8; PAGE_BYTES as usize], page)
        .unwrap();
    let first_damaged = offsets.iter().rposition(|&o| o <= page).unwrap();
    offsets[first_damaged]
}

fn check_prefix(log: &Log, last: u64) {
    let records = read_all(log, 1);
    assert_eq!(records.len() as u64, last);
    for record in &records {
        assert_eq!(record.payload, payload_for(record.lsn, PAYLOAD_BYTES));
    }
}

#[test]
fn the_writer_stamps_what_was_durable() {
    let (_dir, segment) = build(false);
    let bytes = std::fs::read(&segment).unwrap();
    for (index, &offset) in offsets().iter().enumerate() {
        let lsn = index as u64 + 1;
        let header: &[u8; RECORD_HEADER_BYTES] = bytes
            [offset as usize..offset as usize + RECORD_HEADER_BYTES]
            .try_into()
            .unwrap();
        let header = RecordHeader::parse(header);
        assert_eq!(header.lsn, lsn);
        let expected = if lsn <= BEFORE { lsn - 1 } else { BEFORE };
        assert_eq!(header.durable_lsn_claimed(), expected, "LSN {lsn}");
    }
}

#[test]
fn a_lost_early_page_of_an_unsynced_batch_is_a_torn_tail() {
    let (dir, segment) = build(false);
    let damaged_lsn = BEFORE + 4;
    let cut_at = lose_page_of(&segment, damaged_lsn);
    let (log, report) = open(dir.path(), options(SyncMode::Always));
    let torn = report.torn_tail.as_ref().expect("a torn tail was cut");
    assert_eq!(torn.segment, segment);
    assert_eq!(torn.offset, cut_at);
    assert!(
        torn.reason.contains("half-written batch"),
        "{}",
        torn.reason
    );
    assert!(torn.broken_copy.as_ref().unwrap().exists());
    let kept = offsets().iter().filter(|&&o| o < cut_at).count() as u64;
    assert!(kept >= BEFORE && kept < damaged_lsn);
    check_prefix(&log, kept);
    // Appendable, and clean on the next open.
    log.append_blocking(1, payload_for(kept + 1, PAYLOAD_BYTES))
        .unwrap();
    drop(log);
    let (log, report) = open(dir.path(), options(SyncMode::Always));
    assert!(report.torn_tail.is_none(), "{report}");
    check_prefix(&log, kept + 1);
}

#[test]
fn damage_followed_by_a_later_batch_is_refused_then_repaired() {
    let (dir, segment) = build(true);
    let damaged_lsn = BEFORE + 4;
    let cut_at = lose_page_of(&segment, damaged_lsn);
    match Log::open(dir.path(), options(SyncMode::Always)) {
        Err(error @ LogError::Corrupt { .. }) => {
            let LogError::Corrupt {
                segment: named,
                offset,
                ..
            } = &error
            else {
                unreachable!()
            };
            assert_eq!(named, &segment);
            assert_eq!(*offset, cut_at);
            let message = error.to_string();
            assert!(message.contains("levee serve --repair"), "{message}");
            assert!(message.contains(&format!("offset {cut_at}")), "{message}");
        }
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok((_, report)) => panic!("expected Corrupt, opened: {report}"),
    }
    let repair = LogOptions {
        repair: true,
        ..options(SyncMode::Always)
    };
    let (log, report) = open(dir.path(), repair);
    let repaired = report.repair.as_ref().expect("repaired");
    assert_eq!(repaired.offset, cut_at);
    assert!(repaired.records_dropped > 0);
    let kept = offsets().iter().filter(|&&o| o < cut_at).count() as u64;
    check_prefix(&log, kept);
}
