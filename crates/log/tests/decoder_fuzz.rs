//! Fuzz-like test that runs in CI without nightly: random and mutated bytes
//! fed to the record decoder, the segment scanner, the resync search and
//! the whole open path must never panic, and whatever they accept must
//! really be valid. The cargo-fuzz targets in `fuzz/` do the same for
//! longer runs (see crates/log/README.md).

mod common;

use levee_log::format::{
    Decoded, RECORD_HEADER_BYTES, decode_record, decode_segment_header, encode_record,
    encode_segment_header,
};
use levee_log::scan::{ScanStop, find_valid_record, scan_records};
use proptest::prelude::*;

fn valid_segment(records: u64, seed: u64) -> Vec<u8> {
    let mut bytes = encode_segment_header(1).to_vec();
    for lsn in 1..=records {
        encode_record(
            &mut bytes,
            lsn,
            lsn as u8,
            &common::payload_for(seed + lsn, (lsn as usize * 13) % 200),
        );
    }
    bytes
}

/// Checks the invariants of every decoder on arbitrary input.
fn exercise(bytes: &[u8]) {
    let _ = decode_segment_header(bytes);
    if let Decoded::Record { header, payload } = decode_record(bytes) {
        assert_eq!(payload.len(), header.payload_bytes as usize);
        assert!(header.record_bytes() <= bytes.len());
    }
    let body = bytes.get(32..).unwrap_or(&[]);
    let mut seen = 0u64;
    let outcome = scan_records(body, 32, 1, |record| {
        seen += 1;
        assert_eq!(record.lsn, seen);
    })
    .unwrap();
    assert_eq!(outcome.records, seen);
    assert!(outcome.valid_end <= 32 + body.len() as u64);
    if let ScanStop::CleanEnd = outcome.stop {
        assert_eq!(outcome.valid_end, 32 + body.len() as u64);
    }
    if let Some(found) = find_valid_record(bytes, 0, bytes.len(), 1, 0) {
        let start = found.offset as usize;
        assert!(start + RECORD_HEADER_BYTES <= bytes.len());
        assert!(matches!(
            decode_record(&bytes[start..]),
            Decoded::Record { .. }
        ));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        exercise(&bytes);
    }

    #[test]
    fn mutated_segments_never_panic_and_keep_a_valid_prefix(
        records in 1u64..30,
        seed in any::<u64>(),
        mutations in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = valid_segment(records, seed);
        let original = bytes.clone();
        for (at, value) in &mutations {
            let at = at.index(bytes.len());
            bytes[at] = *value;
        }
        let cut = cut.index(bytes.len() + 1);
        bytes.truncate(cut);
        exercise(&bytes);
        // Every record the scanner accepts is byte-identical to the original.
        let outcome = scan_records(&bytes[32.min(bytes.len())..], 32, 1, |_| {}).unwrap();
        let end = outcome.valid_end as usize;
        if bytes.len() >= 32 {
            prop_assert_eq!(&bytes[32..end], &original[32..end]);
        }
    }
}

/// The whole open path (recovery) on garbage segment files must fail with a
/// typed error or recover, never panic.
#[test]
fn open_survives_garbage_files() {
    for seed in 0..40u64 {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = valid_segment(20, seed);
        let garbage = common::payload_for(seed, 64 + seed as usize * 11);
        let at = (seed as usize * 97) % bytes.len();
        let end = (at + garbage.len()).min(bytes.len());
        bytes[at..end].copy_from_slice(&garbage[..end - at]);
        std::fs::write(dir.path().join("seg-00000000000000000001.log"), &bytes).unwrap();
        let _ = levee_log::inspect(dir.path()).unwrap();
        for repair in [false, true] {
            let options = levee_log::LogOptions {
                repair,
                ..levee_log::LogOptions::default()
            };
            if let Ok((log, _)) = levee_log::Log::open(dir.path(), options) {
                for record in log.read_from(1).unwrap() {
                    record.unwrap();
                }
            }
        }
    }
}
