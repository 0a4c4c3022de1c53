//! The on-disk byte format of segments and records. Pure functions, no I/O,
//! so that the decoder can be fuzzed in isolation.
//!
//! All integers are little-endian.
//!
//! # Segment file `seg-<first_lsn as 20 digits>.log`
//!
//! ```text
//! offset size field
//!      0    8 magic          b"LEVEELOG"
//!      8    4 format_version 3 (1 and 2 are still read, see below)
//!     12    4 flags          0 (reserved, must be zero)
//!     16    8 first_lsn      LSN of the first record in this segment
//!     24    4 header_crc     CRC32C of bytes 0..24
//!     28    4 padding        0
//!     32      records, back to back, until the end of the file
//! ```
//!
//! # Record
//!
//! ```text
//! offset size field
//!      0    4 crc            CRC32C over payload, then bytes 4..20 of this header
//!      4    4 payload_bytes  length of the payload
//!      8    8 lsn            log sequence number; exactly previous + 1
//!     16    1 kind           caller-defined record type
//!     17    3 unsynced_span  version 3: LSN minus the highest LSN known to be
//!                            durable when the record was written (capped
//!                            at 2^24 - 1); 0 in versions 1 and 2
//!     20    n payload
//! ```
//!
//! Why the checksum covers the length, LSN and kind and not just the
//! payload: a torn write can leave a garbage length word, and a checksum
//! over the payload alone would happily validate "the first N bytes" of
//! something. With the header inside the checksum, a record is valid only
//! if every byte of it is the one the writer produced. Computing the CRC as
//! `crc32c(payload)` extended by the 16 header bytes (instead of header
//! first) lets appenders checksum their payload in parallel, before they
//! take the lock that assigns their LSN.
//!
//! A run of zero bytes never decodes as a record (the CRC of sixteen zero
//! bytes is not zero, and LSN 0 is never valid), so zero-filled space after
//! the last record reads as the end of the log.
//!
//! # Versions
//!
//! Version 2 has the same layout as version 1 and adds one rule: the
//! segment being appended to may be *preallocated*, created at its full
//! size with zeros after the header, so that an append overwrites blocks
//! that already exist and its fdatasync need not also write the file's
//! size (measured: a third more fdatasyncs per second than appending to a
//! growing file, which is what SQLite's reused WAL gets too). In a version
//! 2 segment, zeros from the end of the last record to the end of the file
//! are free space, not damage. Anything else there is still a torn tail or
//! corruption; a sealed segment (one that is not the last) is truncated to
//! its records before the next one is created, and a clean close does the
//! same to the last one. A version 1 segment never has free space: zeros
//! after its last record are a torn tail, as they always were.
//!
//! Version 3 has the version 2 layout and rules and fills the three bytes
//! that were padding with `unsynced_span`, so that recovery can tell a
//! half-written, never-acknowledged tail from real corruption. A group
//! commit writes a batch with one `write` and then fdatasyncs it; a crash
//! before the fdatasync completes can persist a later page of the batch
//! and not an earlier one (or the next batch, written while this one's
//! fdatasync ran, and not this one). Recovery then finds damage followed
//! by valid records. Each record says, through its span, up to which LSN
//! the log was durable when it was written (`lsn - unsynced_span`). If
//! every valid record after the damage says the damaged LSNs were not yet
//! durable, the damage is a crash artefact of unsynced writes, and so are
//! those records (nothing after the damage can have been acknowledged: its
//! fdatasync would have covered the damaged bytes too). That is a torn
//! tail, cut like any other. If any later record says the damaged LSNs
//! were already durable, the damage happened to synced data: corruption.
//! A stale (lower) durable LSN only ever makes a tail look torn where the
//! crash rule already allows it; the cap only makes it look corrupt.
//!
//! | version | written by | records | zeros after the last record | damage followed by valid records |
//! |---|---|---|---|---|
//! | 1 | first release | span bytes are 0 | torn tail | corruption |
//! | 2 | preallocation | span bytes are 0 | free space (last segment) | corruption |
//! | 3 | this build | span stamped | free space (last segment) | torn tail if no later record claims the damage durable, else corruption |
//!
//! A version 1 or 2 segment that is still the last one at open goes on
//! being appended to with zero spans (its header says what it is); every
//! segment created after that is version 3. Versions above 3 are refused
//! with a message naming both.

use crate::Lsn;

/// First eight bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"LEVEELOG";
/// Version of the segment and record layout this build writes.
pub const FORMAT_VERSION: u32 = 3;
/// Oldest version this build reads.
pub const FORMAT_VERSION_OLDEST: u32 = 1;
/// Bytes of the segment header.
pub const SEGMENT_HEADER_BYTES: usize = 32;
/// Bytes of a record header.
pub const RECORD_HEADER_BYTES: usize = 20;
/// Hard upper bound on a payload, independent of the configured
/// `record_bytes_max`, so that lowering the option never makes old records
/// unreadable and a garbage length word never makes a reader allocate
/// more than this.
pub const RECORD_BYTES_LIMIT: u32 = 16 << 20;

/// Builds the 32-byte header of a segment whose first record is `first_lsn`.
pub fn encode_segment_header(first_lsn: Lsn) -> [u8; SEGMENT_HEADER_BYTES] {
    encode_segment_header_version(first_lsn, FORMAT_VERSION)
}

/// Like [`encode_segment_header`], with an explicit format version (tests
/// use it to build version 1 segments).
pub fn encode_segment_header_version(first_lsn: Lsn, version: u32) -> [u8; SEGMENT_HEADER_BYTES] {
    debug_assert!(first_lsn >= 1, "LSN 0 is never stored");
    let mut header = [0u8; SEGMENT_HEADER_BYTES];
    header[0..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&version.to_le_bytes());
    header[16..24].copy_from_slice(&first_lsn.to_le_bytes());
    let crc = crc32c::crc32c(&header[0..24]);
    header[24..28].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Why a segment header was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentHeaderError {
    TooShort { bytes: usize },
    BadMagic,
    UnsupportedVersion { version: u32 },
    BadChecksum { stored: u32, computed: u32 },
    NonZeroReserved,
    ZeroFirstLsn,
}

impl std::fmt::Display for SegmentHeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooShort { bytes } => write!(
                f,
                "segment header needs {SEGMENT_HEADER_BYTES} bytes, file has {bytes}"
            ),
            Self::BadMagic => write!(
                f,
                "segment header has wrong magic (not a levee log segment)"
            ),
            Self::UnsupportedVersion { version } => write!(
                f,
                "segment format version {version} is not supported (this build reads \
                 {FORMAT_VERSION_OLDEST} to {FORMAT_VERSION})"
            ),
            Self::BadChecksum { stored, computed } => write!(
                f,
                "segment header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            Self::NonZeroReserved => write!(f, "segment header has non-zero reserved bytes"),
            Self::ZeroFirstLsn => write!(f, "segment header claims first LSN 0"),
        }
    }
}

/// Parses and verifies a segment header, returning its first LSN.
pub fn decode_segment_header(bytes: &[u8]) -> Result<Lsn, SegmentHeaderError> {
    parse_segment_header(bytes).map(|header| header.first_lsn)
}

/// A verified segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub first_lsn: Lsn,
    pub version: u32,
}

impl SegmentHeader {
    /// True if zeros after the last record are free space (version 2 on).
    pub fn may_be_preallocated(&self) -> bool {
        self.version >= 2
    }

    /// True if records carry an `unsynced_span` (version 3 on).
    pub fn has_spans(&self) -> bool {
        self.version >= 3
    }
}

/// Parses and verifies a segment header.
pub fn parse_segment_header(bytes: &[u8]) -> Result<SegmentHeader, SegmentHeaderError> {
    if bytes.len() < SEGMENT_HEADER_BYTES {
        return Err(SegmentHeaderError::TooShort { bytes: bytes.len() });
    }
    if bytes[0..8] != SEGMENT_MAGIC {
        return Err(SegmentHeaderError::BadMagic);
    }
    let stored = read_u32(bytes, 24);
    let computed = crc32c::crc32c(&bytes[0..24]);
    if stored != computed {
        return Err(SegmentHeaderError::BadChecksum { stored, computed });
    }
    let version = read_u32(bytes, 8);
    if !(FORMAT_VERSION_OLDEST..=FORMAT_VERSION).contains(&version) {
        return Err(SegmentHeaderError::UnsupportedVersion { version });
    }
    if read_u32(bytes, 12) != 0 || read_u32(bytes, 28) != 0 {
        return Err(SegmentHeaderError::NonZeroReserved);
    }
    let first_lsn = read_u64(bytes, 16);
    if first_lsn == 0 {
        return Err(SegmentHeaderError::ZeroFirstLsn);
    }
    Ok(SegmentHeader { first_lsn, version })
}

/// CRC32C of a payload alone: the first half of a record checksum, which
/// appenders compute before they have an LSN.
pub fn payload_crc(payload: &[u8]) -> u32 {
    crc32c::crc32c(payload)
}

/// Builds a record header. `payload_crc` must be [`payload_crc`] of the
/// payload that follows the header.
pub fn encode_record_header(
    lsn: Lsn,
    kind: u8,
    payload_bytes: u32,
    payload_crc: u32,
) -> [u8; RECORD_HEADER_BYTES] {
    debug_assert!(lsn >= 1);
    debug_assert!(payload_bytes <= RECORD_BYTES_LIMIT);
    let mut header = [0u8; RECORD_HEADER_BYTES];
    header[4..8].copy_from_slice(&payload_bytes.to_le_bytes());
    header[8..16].copy_from_slice(&lsn.to_le_bytes());
    header[16] = kind;
    let crc = crc32c::crc32c_append(payload_crc, &header[4..RECORD_HEADER_BYTES]);
    header[0..4].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Largest `unsynced_span` the three header bytes hold.
pub const UNSYNCED_SPAN_MAX: u64 = (1 << 24) - 1;

/// Writes `unsynced_span = lsn - synced_lsn` (capped) into an encoded
/// header and recomputes its checksum; `payload_crc` is the payload's.
pub fn stamp_unsynced_span(
    header: &mut [u8; RECORD_HEADER_BYTES],
    synced_lsn: Lsn,
    payload_crc: u32,
) {
    let lsn = read_u64(header, 8);
    let span = lsn.saturating_sub(synced_lsn).min(UNSYNCED_SPAN_MAX) as u32;
    header[17..20].copy_from_slice(&span.to_le_bytes()[..3]);
    let crc = crc32c::crc32c_append(payload_crc, &header[4..RECORD_HEADER_BYTES]);
    header[0..4].copy_from_slice(&crc.to_le_bytes());
}

/// Encodes a full record (header + payload) into `out`.
pub fn encode_record(out: &mut Vec<u8>, lsn: Lsn, kind: u8, payload: &[u8]) {
    let header = encode_record_header(lsn, kind, payload.len() as u32, payload_crc(payload));
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
}

/// The fields of a record header, not yet checked against its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub crc: u32,
    pub payload_bytes: u32,
    pub lsn: Lsn,
    pub kind: u8,
    /// 0 in versions 1 and 2 (see the module docs).
    pub unsynced_span: u32,
}

impl RecordHeader {
    /// Reads the header fields from the first 20 bytes of `bytes`.
    pub fn parse(bytes: &[u8; RECORD_HEADER_BYTES]) -> RecordHeader {
        RecordHeader {
            crc: read_u32(bytes, 0),
            payload_bytes: read_u32(bytes, 4),
            lsn: read_u64(bytes, 8),
            kind: bytes[16],
            unsynced_span: u32::from_le_bytes([bytes[17], bytes[18], bytes[19], 0]),
        }
    }

    /// The highest LSN that was durable when this record was written, as
    /// far as the record says (its own LSN if it says nothing: versions 1
    /// and 2 claim everything, which keeps their old, strict rule).
    pub fn durable_lsn_claimed(&self) -> Lsn {
        self.lsn.saturating_sub(u64::from(self.unsynced_span))
    }

    /// Bytes the whole record occupies on disk.
    pub fn record_bytes(&self) -> usize {
        RECORD_HEADER_BYTES + self.payload_bytes as usize
    }
}

/// Checks that a record header and its payload belong together.
pub fn record_checksum_ok(header_bytes: &[u8; RECORD_HEADER_BYTES], payload: &[u8]) -> bool {
    let stored = read_u32(header_bytes, 0);
    stored == crc32c::crc32c_append(payload_crc(payload), &header_bytes[4..RECORD_HEADER_BYTES])
}

/// Why bytes did not decode as a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordInvalid {
    TooLarge {
        payload_bytes: u32,
    },
    /// No longer produced: the former padding holds `unsynced_span`
    /// (version 3), which the checksum covers like every header byte.
    NonZeroPadding,
    BadChecksum,
}

impl std::fmt::Display for RecordInvalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLarge { payload_bytes } => write!(
                f,
                "record length word says {payload_bytes} bytes, above the format limit {RECORD_BYTES_LIMIT}"
            ),
            Self::NonZeroPadding => write!(f, "record header has non-zero padding"),
            Self::BadChecksum => write!(f, "record checksum mismatch"),
        }
    }
}

/// Result of trying to decode one record from the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A complete record whose checksum verifies.
    Record {
        header: RecordHeader,
        payload: &'a [u8],
    },
    /// The buffer ends before the record does; `needed_bytes` is the size of
    /// the whole record (or of a header, if even that is incomplete).
    Incomplete { needed_bytes: usize },
    /// The bytes cannot be a record.
    Invalid(RecordInvalid),
}

/// Decodes the record at the start of `bytes`. Never panics, never reads
/// past `bytes`, never asks for more than `RECORD_BYTES_LIMIT` bytes.
pub fn decode_record(bytes: &[u8]) -> Decoded<'_> {
    let Some(header_bytes) = bytes.first_chunk::<RECORD_HEADER_BYTES>() else {
        return Decoded::Incomplete {
            needed_bytes: RECORD_HEADER_BYTES,
        };
    };
    let header = RecordHeader::parse(header_bytes);
    if header.payload_bytes > RECORD_BYTES_LIMIT {
        return Decoded::Invalid(RecordInvalid::TooLarge {
            payload_bytes: header.payload_bytes,
        });
    }
    let record_bytes = header.record_bytes();
    let Some(payload) = bytes.get(RECORD_HEADER_BYTES..record_bytes) else {
        return Decoded::Incomplete {
            needed_bytes: record_bytes,
        };
    };
    if !record_checksum_ok(header_bytes, payload) {
        return Decoded::Invalid(RecordInvalid::BadChecksum);
    }
    Decoded::Record { header, payload }
}

/// Decodes a record whose bytes were already verified (`crc::verify_run`):
/// the same as [`decode_record`] minus the checksum.
pub(crate) fn decode_verified_record(bytes: &[u8]) -> Decoded<'_> {
    let header_bytes = bytes
        .first_chunk::<RECORD_HEADER_BYTES>()
        .expect("a verified record is complete");
    let header = RecordHeader::parse(header_bytes);
    Decoded::Record {
        header,
        payload: &bytes[RECORD_HEADER_BYTES..header.record_bytes()],
    }
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips() {
        let mut out = Vec::new();
        encode_record(&mut out, 7, 3, b"hello");
        match decode_record(&out) {
            Decoded::Record { header, payload } => {
                assert_eq!(header.lsn, 7);
                assert_eq!(header.kind, 3);
                assert_eq!(payload, b"hello");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let mut record = Vec::new();
        encode_record(&mut record, 42, 1, b"payload bytes");
        for bit in 0..record.len() * 8 {
            let mut damaged = record.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(
                !matches!(decode_record(&damaged), Decoded::Record { header, .. } if header.lsn == 42 && damaged.len() == header.record_bytes()),
                "bit {bit} flip went unnoticed"
            );
        }
    }

    #[test]
    fn a_stamped_span_verifies_and_reads_back() {
        let mut out = Vec::new();
        encode_record(&mut out, 100, 1, b"abc");
        let header: &mut [u8; RECORD_HEADER_BYTES] =
            (&mut out[..RECORD_HEADER_BYTES]).try_into().unwrap();
        stamp_unsynced_span(header, 93, payload_crc(b"abc"));
        match decode_record(&out) {
            Decoded::Record { header, .. } => {
                assert_eq!(header.unsynced_span, 7);
                assert_eq!(header.durable_lsn_claimed(), 93);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn zeros_never_decode() {
        assert!(matches!(decode_record(&[0u8; 64]), Decoded::Invalid(_)));
    }

    #[test]
    fn segment_header_round_trips_and_rejects_damage() {
        let header = encode_segment_header(99);
        assert_eq!(decode_segment_header(&header), Ok(99));
        for byte in 0..SEGMENT_HEADER_BYTES {
            let mut damaged = header;
            damaged[byte] ^= 0x40;
            assert!(decode_segment_header(&damaged).is_err(), "byte {byte}");
        }
        assert!(decode_segment_header(&header[..31]).is_err());
    }

    #[test]
    fn both_versions_decode_and_others_are_refused() {
        for version in [1, 2, 3] {
            let header = encode_segment_header_version(7, version);
            assert_eq!(
                parse_segment_header(&header),
                Ok(SegmentHeader {
                    first_lsn: 7,
                    version
                })
            );
        }
        for version in [0, 4] {
            let header = encode_segment_header_version(7, version);
            assert_eq!(
                parse_segment_header(&header),
                Err(SegmentHeaderError::UnsupportedVersion { version })
            );
        }
    }
}
