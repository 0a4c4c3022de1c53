//! Arbitrary bytes as a whole segment: header, record scan and the
//! torn-tail/corruption resync search must never panic, must stay inside
//! the data, and every record the scanner accepts must decode on its own.
#![no_main]

use levee_log::format::{Decoded, SEGMENT_HEADER_BYTES, decode_record, decode_segment_header};
use levee_log::scan::{ScanStop, find_valid_record, scan_records};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let first_lsn = decode_segment_header(data).unwrap_or(1);
    let body = data.get(SEGMENT_HEADER_BYTES..).unwrap_or(&[]);
    let start = SEGMENT_HEADER_BYTES as u64;
    let mut expected = first_lsn;
    let outcome = scan_records(body, start, first_lsn, |record| {
        assert_eq!(record.lsn, expected);
        expected += 1;
        let at = (record.offset - start) as usize;
        assert!(matches!(decode_record(&body[at..]), Decoded::Record { .. }));
    })
    .expect("reading a slice cannot fail");
    assert!(outcome.valid_end <= start + body.len() as u64);
    if outcome.stop == ScanStop::CleanEnd {
        assert_eq!(outcome.valid_end, start + body.len() as u64);
    }
    if let Some(damage) = outcome.stop.offset() {
        let from = (damage - start) as usize;
        if let Some(found) =
            find_valid_record(&body[from..], damage, body.len() - from, expected, damage)
        {
            assert!(found.offset >= damage);
        }
    }
});
