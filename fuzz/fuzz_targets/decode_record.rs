//! Arbitrary bytes into the record and segment-header decoders: must never
//! panic, and whatever decodes must be self-consistent.
#![no_main]

use levee_log::format::{Decoded, decode_record, decode_segment_header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_segment_header(data);
    if let Decoded::Record { header, payload } = decode_record(data) {
        assert_eq!(payload.len(), header.payload_bytes as usize);
        assert!(header.record_bytes() <= data.len());
        assert!(header.lsn >= 1 || header.lsn == 0);
    }
});
