//! Sequential verification of a segment's records, with bounded memory.
//!
//! Recovery, `inspect` and `dump` all need to walk every record of a
//! segment, verify its checksum and LSN, and stop at the first thing that is
//! not a valid next record. This module does that walk over any `Read`
//! (a file or, for fuzzing, a byte slice), reading in large chunks and
//! decoding in place so that no per-record allocation or syscall happens.
//!
//! It also holds the "is there a valid record further on?" search that
//! tells a torn tail (nothing valid after the damage: a crash artefact) from
//! corruption (valid, once-acknowledged records after the damage).

use std::io::Read;

use crate::Lsn;
use crate::crc::verify_run;
use crate::format::{
    Decoded, RECORD_HEADER_BYTES, RecordHeader, decode_record, decode_verified_record,
    record_checksum_ok,
};

/// Size of each read while scanning; large so that scanning is bound by
/// memory bandwidth, not syscalls.
pub const SCAN_CHUNK_BYTES: usize = 1 << 20;

/// One verified record seen by the scanner.
#[derive(Debug)]
pub struct RecordView<'a> {
    pub lsn: Lsn,
    pub kind: u8,
    /// Byte offset of the record header within the segment file.
    pub offset: u64,
    pub payload: &'a [u8],
}

/// Where and why a scan stopped before the end of the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanStop {
    /// Every byte belonged to a valid record.
    CleanEnd,
    /// The data ends inside a record (a header or payload is cut short).
    Truncated { offset: u64, reason: String },
    /// Bytes at `offset` are not the expected next record.
    Invalid { offset: u64, reason: String },
}

impl ScanStop {
    /// Offset of the first byte that is not part of a valid record.
    pub fn offset(&self) -> Option<u64> {
        match self {
            ScanStop::CleanEnd => None,
            ScanStop::Truncated { offset, .. } | ScanStop::Invalid { offset, .. } => Some(*offset),
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            ScanStop::CleanEnd => "clean end",
            ScanStop::Truncated { reason, .. } | ScanStop::Invalid { reason, .. } => reason,
        }
    }
}

/// Summary of a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanOutcome {
    /// Offset just past the last valid record.
    pub valid_end: u64,
    /// LSN of the last valid record, if any.
    pub last_lsn: Option<Lsn>,
    pub records: u64,
    pub stop: ScanStop,
}

/// Walks records starting at `start_offset` (the position `reader` is at)
/// expecting LSNs `first_lsn`, `first_lsn + 1`, ... and calls `on_record`
/// for each valid one. Stops at the first invalid or incomplete record or
/// at the end of the data. Memory: one chunk plus the largest record seen.
pub fn scan_records<R: Read>(
    mut reader: R,
    start_offset: u64,
    first_lsn: Lsn,
    mut on_record: impl FnMut(RecordView<'_>),
) -> std::io::Result<ScanOutcome> {
    let mut buffer = vec![0u8; SCAN_CHUNK_BYTES];
    // buffer[begin..end] holds bytes not yet decoded; buffer[0] is at file
    // offset `buffer_offset`.
    let (mut begin, mut end) = (0usize, 0usize);
    let mut buffer_offset = start_offset;
    let mut expected_lsn = first_lsn;
    let mut records = 0u64;
    let mut eof = false;
    // Records before this file offset passed `verify_run` (checksums are
    // computed for many records at once, see `crc`).
    let mut verified_end = start_offset;
    let stop = loop {
        let record_offset = buffer_offset + begin as u64;
        if record_offset >= verified_end {
            verified_end = record_offset + verify_run(&buffer[begin..end], expected_lsn) as u64;
        }
        let decoded = if record_offset < verified_end {
            decode_verified_record(&buffer[begin..end])
        } else {
            decode_record(&buffer[begin..end])
        };
        match decoded {
            Decoded::Record { header, payload } => {
                if header.lsn != expected_lsn {
                    break ScanStop::Invalid {
                        offset: record_offset,
                        reason: format!(
                            "record has LSN {} where LSN {expected_lsn} was expected",
                            header.lsn
                        ),
                    };
                }
                on_record(RecordView {
                    lsn: header.lsn,
                    kind: header.kind,
                    offset: record_offset,
                    payload,
                });
                begin += header.record_bytes();
                expected_lsn += 1;
                records += 1;
            }
            Decoded::Invalid(why) => {
                break ScanStop::Invalid {
                    offset: record_offset,
                    reason: why.to_string(),
                };
            }
            Decoded::Incomplete { needed_bytes } => {
                if eof {
                    if begin == end {
                        break ScanStop::CleanEnd;
                    }
                    break ScanStop::Truncated {
                        offset: record_offset,
                        reason: format!(
                            "data ends {} bytes into a record that needs {needed_bytes}",
                            end - begin
                        ),
                    };
                }
                // Slide the undecoded bytes to the front, grow the buffer if
                // one record is larger than it (bounded by the format's
                // record limit), and read more.
                buffer.copy_within(begin..end, 0);
                buffer_offset += begin as u64;
                end -= begin;
                begin = 0;
                if needed_bytes > buffer.len() {
                    buffer.resize(needed_bytes, 0);
                }
                let read = read_some(&mut reader, &mut buffer[end..])?;
                if read == 0 {
                    eof = true;
                }
                end += read;
            }
        }
    };
    Ok(ScanOutcome {
        valid_end: buffer_offset + begin as u64,
        last_lsn: expected_lsn.checked_sub(1).filter(|_| records > 0),
        records,
        stop,
    })
}

/// `read` that retries on EINTR.
fn read_some<R: Read>(reader: &mut R, into: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match reader.read(into) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// A record found by [`find_valid_record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FoundRecord {
    pub offset: u64,
    pub lsn: Lsn,
    pub record_bytes: u64,
    /// What the record says was durable when it was written
    /// ([`RecordHeader::durable_lsn_claimed`]).
    pub durable_lsn_claimed: Lsn,
}

/// Searches `window` (whose first byte is at file offset `window_offset`)
/// for a complete, checksum-valid record that starts at a position in
/// `window[..starts_before]` and whose LSN is at least `min_lsn`. Used after
/// damage at `damage_offset`: a record found there is one the writer
/// produced after the damaged bytes, so the damage is not a torn tail.
///
/// The LSN of any genuine record at position `p` is at most
/// `min_lsn + (p - damage_offset) / 20`, since each earlier record took at
/// least a header's worth of bytes; checking that bound before the CRC keeps
/// the search fast over garbage and zeros.
pub fn find_valid_record(
    window: &[u8],
    window_offset: u64,
    starts_before: usize,
    min_lsn: Lsn,
    damage_offset: u64,
) -> Option<FoundRecord> {
    let starts_before = starts_before.min(window.len());
    for start in 0..starts_before {
        let Some(header_bytes) = window[start..].first_chunk::<RECORD_HEADER_BYTES>() else {
            break;
        };
        let offset = window_offset + start as u64;
        let header = RecordHeader::parse(header_bytes);
        let lsn_bound = min_lsn.saturating_add(offset.saturating_sub(damage_offset) / 20 + 1);
        if header.lsn < min_lsn || header.lsn > lsn_bound {
            continue;
        }
        let Some(payload) = window.get(start + RECORD_HEADER_BYTES..start + header.record_bytes())
        else {
            continue;
        };
        if record_checksum_ok(header_bytes, payload) {
            return Some(FoundRecord {
                offset,
                lsn: header.lsn,
                record_bytes: header.record_bytes() as u64,
                durable_lsn_claimed: header.durable_lsn_claimed(),
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::encode_record;

    fn records(count: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for lsn in 1..=count {
            encode_record(&mut out, lsn, 0, &vec![lsn as u8; lsn as usize * 10]);
        }
        out
    }

    #[test]
    fn scans_every_record_and_stops_cleanly() {
        let bytes = records(20);
        let mut seen = Vec::new();
        let outcome = scan_records(&bytes[..], 0, 1, |r| seen.push(r.lsn)).unwrap();
        assert_eq!(seen, (1..=20).collect::<Vec<_>>());
        assert_eq!(outcome.stop, ScanStop::CleanEnd);
        assert_eq!(outcome.valid_end, bytes.len() as u64);
    }

    #[test]
    fn truncation_is_reported_at_the_record_start() {
        let bytes = records(3);
        let cut = bytes.len() - 5;
        let outcome = scan_records(&bytes[..cut], 0, 1, |_| {}).unwrap();
        assert_eq!(outcome.last_lsn, Some(2));
        assert!(
            matches!(outcome.stop, ScanStop::Truncated { offset, .. } if offset == outcome.valid_end)
        );
    }

    #[test]
    fn wrong_lsn_is_invalid() {
        let bytes = records(3);
        let outcome = scan_records(&bytes[..], 0, 5, |_| {}).unwrap();
        assert_eq!(outcome.records, 0);
        assert!(matches!(outcome.stop, ScanStop::Invalid { offset: 0, .. }));
    }

    #[test]
    fn finds_a_valid_record_after_damage() {
        let mut bytes = records(5);
        bytes[25] ^= 1; // damage record 1's payload
        let found = find_valid_record(&bytes, 0, bytes.len(), 1, 0).unwrap();
        assert_eq!(found.lsn, 2);
    }
}
