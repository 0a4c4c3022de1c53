//! Record checksums, three records at a time.
//!
//! The CRC32C instruction has a latency of three cycles and a throughput of
//! one per cycle, so one dependent chain over a short buffer runs at a
//! third of the hardware's speed. The `crc32c` crate splits long buffers
//! into three chains, but only from 768 bytes on; levee's records are
//! typically a few hundred bytes, and each has its own checksum. So when
//! recovery or a reader verifies consecutive records, it runs the chains of
//! three records side by side instead (`verify_run`): the same checks, in
//! about a third of the time. Measured: checksumming was a third of the
//! CPU time of recovery before.

use crate::Lsn;
use crate::format::{RECORD_BYTES_LIMIT, RECORD_HEADER_BYTES, RecordHeader};

/// Walks the records at the start of `bytes`, expecting LSNs `first_lsn`,
/// `first_lsn + 1`, ..., and returns the bytes spanned by the leading ones
/// that are complete, well-formed (size within the format limit, the
/// expected LSN) and whose checksums match. Stops at the
/// first record that is not; the caller decodes that one itself to learn
/// why (or that it is merely incomplete).
pub(crate) fn verify_run(bytes: &[u8], first_lsn: Lsn) -> usize {
    // (start, length) of well-formed records whose checksums are pending.
    let mut group: [(usize, usize); 3] = [(0, 0); 3];
    let mut grouped = 0;
    let mut verified = 0;
    let mut at = 0;
    let mut lsn = first_lsn;
    loop {
        let record = well_formed(&bytes[at..], lsn);
        if let Some(length) = record {
            group[grouped] = (at, length);
            grouped += 1;
            at += length;
            lsn += 1;
        }
        if grouped == 3 || (record.is_none() && grouped > 0) {
            let ok = checksums_match(bytes, &group[..grouped]);
            for (&(start, length), ok) in group[..grouped].iter().zip(ok) {
                if !ok {
                    return verified;
                }
                verified = start + length;
            }
            grouped = 0;
        }
        if record.is_none() {
            return verified;
        }
    }
}

/// Length of the record at the start of `bytes` if it is complete and its
/// header is well-formed with LSN `lsn` (checksum not checked).
fn well_formed(bytes: &[u8], lsn: Lsn) -> Option<usize> {
    let header_bytes = bytes.first_chunk::<RECORD_HEADER_BYTES>()?;
    let header = RecordHeader::parse(header_bytes);
    let fits = header.payload_bytes <= RECORD_BYTES_LIMIT
        && header.lsn == lsn
        && header.record_bytes() <= bytes.len();
    fits.then(|| header.record_bytes())
}

/// Whether each record `bytes[start..start + length]` carries the right
/// checksum (up to three records; the rest of the result is `false`).
fn checksums_match(bytes: &[u8], records: &[(usize, usize)]) -> [bool; 3] {
    let mut payloads: [&[u8]; 3] = [&[]; 3];
    let mut tails: [&[u8]; 3] = [&[]; 3];
    let mut stored = [0u32; 3];
    for (index, &(start, length)) in records.iter().enumerate() {
        let header = &bytes[start..start + RECORD_HEADER_BYTES];
        stored[index] = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
        tails[index] = &header[4..];
        payloads[index] = &bytes[start + RECORD_HEADER_BYTES..start + length];
    }
    let crcs = record_crcs(payloads, tails);
    std::array::from_fn(|index| index < records.len() && crcs[index] == stored[index])
}

/// The record checksum, `crc32c(payload ++ tail)`, of three records,
/// computed side by side.
pub(crate) fn record_crcs(payloads: [&[u8]; 3], tails: [&[u8]; 3]) -> [u32; 3] {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("sse4.2") {
            // SAFETY: the CPU supports SSE 4.2, checked just above.
            return unsafe { x86::crc32c_3(payloads, tails) };
        }
    }
    std::array::from_fn(|index| {
        crc32c::crc32c_append(crc32c::crc32c(payloads[index]), tails[index])
    })
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{_mm_crc32_u8, _mm_crc32_u64};

    /// Three independent CRC32C chains, interleaved word by word over the
    /// common length of the buffers, then each one's remainder and tail.
    #[target_feature(enable = "sse4.2")]
    pub(super) fn crc32c_3(buffers: [&[u8]; 3], tails: [&[u8]; 3]) -> [u32; 3] {
        let words = buffers.iter().map(|b| b.len()).min().unwrap_or(0) / 8;
        let (mut a, mut b, mut c) = (!0u64 >> 32, !0u64 >> 32, !0u64 >> 32);
        let word = |buffer: &[u8], index: usize| {
            u64::from_le_bytes(
                buffer[index * 8..index * 8 + 8]
                    .try_into()
                    .expect("8 bytes"),
            )
        };
        for index in 0..words {
            a = _mm_crc32_u64(a, word(buffers[0], index));
            b = _mm_crc32_u64(b, word(buffers[1], index));
            c = _mm_crc32_u64(c, word(buffers[2], index));
        }
        let mut crcs = [a, b, c];
        for ((crc, buffer), tail) in crcs.iter_mut().zip(buffers).zip(tails) {
            *crc = update(*crc, &buffer[words * 8..]);
            *crc = update(*crc, tail);
        }
        crcs.map(|crc| !(crc as u32))
    }

    #[target_feature(enable = "sse4.2")]
    fn update(crc: u64, bytes: &[u8]) -> u64 {
        let mut crc = crc;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            crc = _mm_crc32_u64(crc, u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let mut crc32 = crc as u32;
        for &byte in chunks.remainder() {
            crc32 = _mm_crc32_u8(crc32, byte);
        }
        u64::from(crc32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{decode_record, encode_record};

    #[test]
    fn side_by_side_crcs_equal_the_plain_ones() {
        let data: Vec<u8> = (0..3000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let lengths = [
            (0, 0, 0),
            (1, 7, 8),
            (256, 256, 256),
            (17, 300, 999),
            (2999, 5, 64),
        ];
        for (x, y, z) in lengths {
            let buffers = [&data[..x], &data[1..1 + y], &data[2..2 + z]];
            let tails = [&data[5..21], &data[..0], &data[9..12]];
            let expected: [u32; 3] = std::array::from_fn(|i| {
                crc32c::crc32c_append(crc32c::crc32c(buffers[i]), tails[i])
            });
            assert_eq!(record_crcs(buffers, tails), expected);
        }
    }

    #[test]
    fn a_run_stops_at_the_first_record_that_does_not_verify() {
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        for lsn in 1..=10u64 {
            encode_record(
                &mut bytes,
                lsn,
                1,
                &vec![lsn as u8; (lsn * 37 % 300) as usize],
            );
            ends.push(bytes.len());
        }
        assert_eq!(verify_run(&bytes, 1), bytes.len());
        assert_eq!(verify_run(&bytes, 2), 0, "wrong first LSN");
        assert_eq!(
            verify_run(&bytes[..bytes.len() - 1], 1),
            ends[8],
            "last one cut"
        );
        for damaged_record in 0..10 {
            let mut damaged = bytes.clone();
            let start = if damaged_record == 0 {
                0
            } else {
                ends[damaged_record - 1]
            };
            damaged[start + 3] ^= 0x10; // the stored checksum
            let expected = start;
            assert_eq!(verify_run(&damaged, 1), expected, "record {damaged_record}");
            // The caller then learns why from the full decoder.
            assert!(!matches!(
                decode_record(&damaged[start..]),
                crate::format::Decoded::Record { .. }
            ));
        }
    }
}
