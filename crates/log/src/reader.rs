//! Streaming reads of records by LSN, straight from the segment files.
//!
//! A reader keeps one segment file open and a bounded buffer; memory does
//! not grow with the size of the log. It starts at a segment's sparse-index
//! entry nearest the requested LSN and hops record headers from there. Every
//! record it returns has had its checksum and LSN verified again, so damage
//! that happened after the log was opened is reported, not passed on.
//!
//! A reader never returns a record beyond the acknowledged watermark (bytes
//! past it may still be in flight). When it reaches the watermark it looks
//! at it once more, so it also returns records acknowledged while it was
//! reading; `next()` after `None` picks up newer records again (tailing).

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::format::{RECORD_BYTES_LIMIT, RECORD_HEADER_BYTES, RecordHeader, record_checksum_ok};
use crate::segment::SegmentMeta;
use crate::state::Shared;
use crate::{LogError, Lsn, Record};

/// Read buffer per reader.
const READ_BUFFER_BYTES: usize = 1 << 20;

/// An iterator over records, oldest first. See the module docs.
pub struct LogReader {
    source: Source,
    next_lsn: Lsn,
    limit_lsn: Lsn,
    remaining: usize,
    cursor: Option<Cursor>,
    failed: bool,
}

/// Where the reader learns which segments exist and how far it may read.
enum Source {
    /// An open log: segments and watermark change while reading.
    Live(Arc<Shared>),
    /// A read-only view of a directory (`dump`): fixed at creation.
    Fixed(Vec<SegmentMeta>),
}

/// Just enough about a segment to open it at an LSN.
struct SegmentSpot {
    path: PathBuf,
    first_lsn: Lsn,
    hint: (Lsn, u64),
}

struct Cursor {
    reader: BufReader<File>,
    path: PathBuf,
    /// File offset of the next record.
    offset: u64,
}

impl LogReader {
    pub(crate) fn live(shared: Arc<Shared>, from: Lsn) -> Result<LogReader, LogError> {
        let limit_lsn = {
            let state = shared.lock();
            let first_lsn = state.first_lsn();
            if from < first_lsn {
                return Err(LogError::Compacted {
                    requested: from,
                    first_available: first_lsn,
                });
            }
            state.acked_lsn(shared.options.sync)
        };
        Ok(LogReader::new(
            Source::Live(shared),
            from,
            limit_lsn,
            usize::MAX,
        ))
    }

    pub(crate) fn fixed(segments: Vec<SegmentMeta>, from: Lsn, limit: usize) -> LogReader {
        let limit_lsn = segments.last().map_or(0, |s| s.last_lsn);
        LogReader::new(Source::Fixed(segments), from, limit_lsn, limit)
    }

    fn new(source: Source, from: Lsn, limit_lsn: Lsn, remaining: usize) -> LogReader {
        LogReader {
            source,
            next_lsn: from.max(1),
            limit_lsn,
            remaining,
            cursor: None,
            failed: false,
        }
    }

    /// True once the reader stopped because it returned as many records as
    /// it was allowed to, rather than because the data ended.
    pub(crate) fn exhausted_limit(&self) -> bool {
        self.remaining == 0
    }

    /// LSN of the record the next call to `next` would return.
    pub fn next_lsn(&self) -> Lsn {
        self.next_lsn
    }

    fn read_next(&mut self) -> Result<Record, LogError> {
        let lsn = self.next_lsn;
        let cursor = match self.cursor.take() {
            Some(cursor) => cursor,
            None => self.open_cursor(lsn)?,
        };
        let cursor = self.cursor.insert(cursor);
        let (mut header_bytes, mut header_len) = read_header(cursor)?;
        if header_len == 0 {
            // End of this segment: the record must start the next one.
            let spot = self.segment_for(lsn)?;
            let cursor = self.cursor.as_ref().expect("cursor present");
            if spot.path == cursor.path || spot.first_lsn != lsn {
                return Err(LogError::Corrupt {
                    segment: cursor.path.clone(),
                    offset: cursor.offset,
                    reason: format!("segment ends before LSN {lsn}, which it should hold"),
                });
            }
            let next = self.open_cursor_at(spot, lsn)?;
            let cursor = self.cursor.insert(next);
            (header_bytes, header_len) = read_header(cursor)?;
        }
        let cursor = self.cursor.as_mut().expect("cursor present");
        read_record_body(cursor, header_bytes, header_len, lsn)
    }

    fn open_cursor(&self, lsn: Lsn) -> Result<Cursor, LogError> {
        let spot = self.segment_for(lsn)?;
        self.open_cursor_at(spot, lsn)
    }

    fn open_cursor_at(&self, spot: SegmentSpot, lsn: Lsn) -> Result<Cursor, LogError> {
        let file = File::open(&spot.path).map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => self.compacted(lsn),
            _ => LogError::io("open", &spot.path, error),
        })?;
        let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, file);
        let offset = skip_to(&mut reader, &spot.path, spot.hint, lsn)?;
        debug_assert!(spot.first_lsn <= lsn);
        Ok(Cursor {
            reader,
            path: spot.path,
            offset,
        })
    }

    fn compacted(&self, lsn: Lsn) -> LogError {
        let first_available = match &self.source {
            Source::Live(shared) => shared.lock().first_lsn(),
            Source::Fixed(segments) => segments.first().map_or(1, |s| s.first_lsn),
        };
        LogError::Compacted {
            requested: lsn,
            first_available,
        }
    }

    /// The segment that holds `lsn`.
    fn segment_for(&self, lsn: Lsn) -> Result<SegmentSpot, LogError> {
        let spot = |segments: &[SegmentMeta]| {
            let position = segments.partition_point(|s| s.first_lsn <= lsn);
            let segment = &segments[position.checked_sub(1)?];
            Some(SegmentSpot {
                path: segment.path.clone(),
                first_lsn: segment.first_lsn,
                hint: segment.index.seek_hint(lsn),
            })
        };
        let found = match &self.source {
            Source::Live(shared) => spot(&shared.lock().segments),
            Source::Fixed(segments) => spot(segments),
        };
        found.ok_or_else(|| self.compacted(lsn))
    }

    fn refresh_limit(&mut self) {
        if let Source::Live(shared) = &self.source {
            self.limit_lsn = shared.lock().acked_lsn(shared.options.sync);
        }
    }
}

impl Iterator for LogReader {
    type Item = Result<Record, LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.remaining == 0 {
            return None;
        }
        if self.next_lsn > self.limit_lsn {
            self.refresh_limit();
            if self.next_lsn > self.limit_lsn {
                return None;
            }
        }
        match self.read_next() {
            Ok(record) => {
                debug_assert_eq!(record.lsn, self.next_lsn);
                self.next_lsn += 1;
                self.remaining -= 1;
                Some(Ok(record))
            }
            Err(error) => {
                self.failed = true;
                Some(Err(error))
            }
        }
    }
}

/// Reads the next record header; length 0 means the segment ended cleanly.
fn read_header(cursor: &mut Cursor) -> Result<([u8; RECORD_HEADER_BYTES], usize), LogError> {
    let mut header_bytes = [0u8; RECORD_HEADER_BYTES];
    let header_len = read_fully(&mut cursor.reader, &mut header_bytes)
        .map_err(|e| LogError::io("read", &cursor.path, e))?;
    Ok((header_bytes, header_len))
}

/// Reads the payload of the record whose header was just read, verifies it
/// and advances the cursor.
fn read_record_body(
    cursor: &mut Cursor,
    header_bytes: [u8; RECORD_HEADER_BYTES],
    header_len: usize,
    lsn: Lsn,
) -> Result<Record, LogError> {
    let corrupt = |reason: String| LogError::Corrupt {
        segment: cursor.path.clone(),
        offset: cursor.offset,
        reason,
    };
    if header_len < RECORD_HEADER_BYTES {
        return Err(corrupt(format!(
            "segment ends before LSN {lsn} ({header_len} bytes of its header present)"
        )));
    }
    let header = RecordHeader::parse(&header_bytes);
    if header.lsn != lsn || header.payload_bytes > RECORD_BYTES_LIMIT {
        return Err(corrupt(format!(
            "expected the record with LSN {lsn}, found a header claiming LSN {} and {} bytes",
            header.lsn, header.payload_bytes
        )));
    }
    let payload = read_payload(&mut cursor.reader, header.payload_bytes as usize)
        .map_err(|e| LogError::io("read", &cursor.path, e))?;
    if payload.len() < header.payload_bytes as usize {
        return Err(corrupt(format!(
            "segment ends inside the payload of LSN {lsn}"
        )));
    }
    if !record_checksum_ok(&header_bytes, &payload) {
        return Err(corrupt(format!(
            "checksum mismatch in the record with LSN {lsn}"
        )));
    }
    cursor.offset += header.record_bytes() as u64;
    Ok(Record {
        lsn,
        kind: header.kind,
        payload,
    })
}

/// Positions `reader` at the record `target`, starting from the index hint
/// `(hint_lsn, hint_offset)` and hopping headers. Returns the offset.
pub(crate) fn skip_to(
    reader: &mut BufReader<File>,
    path: &Path,
    (hint_lsn, hint_offset): (Lsn, u64),
    target: Lsn,
) -> Result<u64, LogError> {
    debug_assert!(hint_lsn <= target);
    reader
        .seek(SeekFrom::Start(hint_offset))
        .map_err(|e| LogError::io("seek", path, e))?;
    let mut offset = hint_offset;
    for lsn in hint_lsn..target {
        let mut header_bytes = [0u8; RECORD_HEADER_BYTES];
        let read =
            read_fully(reader, &mut header_bytes).map_err(|e| LogError::io("read", path, e))?;
        let header = RecordHeader::parse(&header_bytes);
        if read < RECORD_HEADER_BYTES
            || header.lsn != lsn
            || header.payload_bytes > RECORD_BYTES_LIMIT
        {
            return Err(LogError::Corrupt {
                segment: path.to_path_buf(),
                offset,
                reason: format!("expected the header of LSN {lsn} while seeking to LSN {target}"),
            });
        }
        reader
            .seek_relative(i64::from(header.payload_bytes))
            .map_err(|e| LogError::io("seek", path, e))?;
        offset += header.record_bytes() as u64;
    }
    Ok(offset)
}

/// Reads up to `bytes` bytes into a new vector, copying straight out of the
/// read buffer (no zero-fill, no intermediate copy). Shorter only at EOF.
fn read_payload(reader: &mut BufReader<File>, bytes: usize) -> std::io::Result<Vec<u8>> {
    let mut payload = Vec::with_capacity(bytes);
    while payload.len() < bytes {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            break;
        }
        let take = available.len().min(bytes - payload.len());
        payload.extend_from_slice(&available[..take]);
        reader.consume(take);
    }
    Ok(payload)
}

/// Like `read_exact`, but returns how much was read when the file ends.
fn read_fully<R: Read>(reader: &mut R, into: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < into.len() {
        match reader.read(&mut into[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
