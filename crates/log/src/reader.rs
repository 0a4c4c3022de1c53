//! Streaming reads of records by LSN, straight from the segment files.
//!
//! A reader keeps one segment file open and a bounded buffer; memory does
//! not grow with the size of the log. It starts at a segment's sparse-index
//! entry nearest the requested LSN and hops record headers from there. Every
//! record it returns has had its checksum and LSN verified again, so damage
//! that happened after the log was opened is reported, not passed on.
//!
//! It reads in large chunks (`READ_BUFFER_BYTES`, one `pread` each) and
//! decodes in place; the only per-record work is the checksum and the copy
//! of the payload into the returned `Record`.
//!
//! It never reads a byte of a segment past the length the log has
//! published for it: the active segment may be preallocated (zeros after
//! the last record, see `segment`), and bytes read ahead of the writer
//! would be stale. Nor does it return a record beyond the acknowledged
//! watermark (bytes past it may still be in flight). When it reaches the
//! watermark it looks at it once more, so it also returns records
//! acknowledged while it was reading; `next()` after `None` picks up newer
//! records again (tailing).

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::crc::verify_run;
use crate::format::{RECORD_BYTES_LIMIT, RECORD_HEADER_BYTES, RecordHeader, record_checksum_ok};
use crate::segment::SegmentMeta;
use crate::state::Shared;
use crate::{LogError, Lsn, Record};

/// Read buffer per reader.
const READ_BUFFER_BYTES: usize = 1 << 20;

/// Bytes of records verified ahead of the one being returned.
const VERIFY_AHEAD_BYTES: usize = 64 << 10;

/// An iterator over records, oldest first. See the module docs.
pub struct LogReader {
    source: Source,
    next_lsn: Lsn,
    limit_lsn: Lsn,
    remaining: usize,
    cursor: Option<Cursor>,
    /// The read buffer, kept across segments.
    buffer: Vec<u8>,
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

/// How far a segment may be read.
#[derive(Clone, Copy)]
struct Extent {
    /// Bytes published for the segment (header + written records).
    bytes: u64,
    /// No more bytes will be appended to it.
    sealed: bool,
}

/// An open segment and the window of it held in the reader's buffer:
/// `buffer[begin..end]` are the file's bytes from `offset()` on.
struct Cursor {
    file: File,
    path: PathBuf,
    first_lsn: Lsn,
    buffer_offset: u64,
    begin: usize,
    end: usize,
    extent: Extent,
    /// Records before this file offset passed `verify_run` (checksums
    /// computed several records at a time, see `crc`).
    verified_end: u64,
}

impl Cursor {
    /// File offset of the next record.
    fn offset(&self) -> u64 {
        self.buffer_offset + self.begin as u64
    }

    /// Makes `needed` bytes from `offset()` available in the buffer if the
    /// extent allows; returns how many are available (less only at the
    /// extent's end). Reads as much as fits in one `pread`.
    fn fill(&mut self, buffer: &mut Vec<u8>, needed: usize) -> std::io::Result<usize> {
        let available = self.end - self.begin;
        let readable = self.extent.bytes.saturating_sub(self.offset()) as usize;
        if available >= needed || available >= readable {
            return Ok(available);
        }
        if self.begin > 0 {
            buffer.copy_within(self.begin..self.end, 0);
            self.buffer_offset += self.begin as u64;
            self.end -= self.begin;
            self.begin = 0;
        }
        if needed > buffer.len() {
            // One record larger than the buffer (bounded by the format).
            buffer.resize(needed, 0);
        }
        let fill_to = buffer.len().min(readable);
        while self.end < needed.min(readable) {
            let read = self.file.read_at(
                &mut buffer[self.end..fill_to],
                self.buffer_offset + self.end as u64,
            );
            match read {
                Ok(0) => break,
                Ok(read) => self.end += read,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(self.end - self.begin)
    }
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
            buffer: Vec::new(),
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
        let mut cursor = match self.cursor.take() {
            Some(cursor) => cursor,
            None => self.open_cursor(lsn)?,
        };
        let header_len = self.fill(&mut cursor, RECORD_HEADER_BYTES)?;
        if header_len == 0 && cursor.extent.sealed {
            // End of this segment: the record must start the next one.
            let spot = self.segment_for(lsn)?;
            if spot.path == cursor.path || spot.first_lsn != lsn {
                return Err(corrupt(
                    &cursor,
                    format!("segment ends before LSN {lsn}, which it should hold"),
                ));
            }
            cursor = self.open_cursor_at(spot, lsn)?;
        }
        let record = self.read_record(&mut cursor, lsn);
        self.cursor = Some(cursor);
        record
    }

    /// Reads and verifies the record `lsn` at the cursor, and advances.
    fn read_record(&mut self, cursor: &mut Cursor, lsn: Lsn) -> Result<Record, LogError> {
        let header_len = self.fill(cursor, RECORD_HEADER_BYTES)?;
        if header_len < RECORD_HEADER_BYTES {
            return Err(corrupt(
                cursor,
                format!("segment ends before LSN {lsn} ({header_len} bytes of its header present)"),
            ));
        }
        let header_bytes: &[u8; RECORD_HEADER_BYTES] = self.buffer[cursor.begin..]
            .first_chunk()
            .expect("header bytes are in the buffer");
        let header = RecordHeader::parse(header_bytes);
        if header.lsn != lsn || header.payload_bytes > RECORD_BYTES_LIMIT {
            return Err(corrupt(
                cursor,
                format!(
                    "expected the record with LSN {lsn}, found a header claiming LSN {} and {} bytes",
                    header.lsn, header.payload_bytes
                ),
            ));
        }
        let record_bytes = header.record_bytes();
        if self.fill(cursor, record_bytes)? < record_bytes {
            return Err(corrupt(
                cursor,
                format!("segment ends inside the payload of LSN {lsn}"),
            ));
        }
        let offset = cursor.offset();
        if offset >= cursor.verified_end {
            // Verify ahead, a bounded amount, so that a reader dropped
            // early has not checksummed much it never returned.
            let ahead = (cursor.end - cursor.begin).min(record_bytes.max(VERIFY_AHEAD_BYTES));
            let run = &self.buffer[cursor.begin..cursor.begin + ahead];
            cursor.verified_end = offset + verify_run(run, lsn) as u64;
        }
        let record = &self.buffer[cursor.begin..cursor.begin + record_bytes];
        let (header_bytes, payload) = record.split_at(RECORD_HEADER_BYTES);
        let header_bytes = header_bytes.try_into().expect("20 bytes");
        let verified = offset + record_bytes as u64 <= cursor.verified_end;
        if !verified && !record_checksum_ok(header_bytes, payload) {
            return Err(corrupt(
                cursor,
                format!("checksum mismatch in the record with LSN {lsn}"),
            ));
        }
        let record = Record {
            lsn,
            kind: header.kind,
            payload: payload.to_vec(),
        };
        cursor.begin += record_bytes;
        Ok(record)
    }

    /// `Cursor::fill`, refreshing the segment's extent when the buffered
    /// bytes run out before `needed`.
    fn fill(&mut self, cursor: &mut Cursor, needed: usize) -> Result<usize, LogError> {
        let filled = cursor.fill(&mut self.buffer, needed);
        let available = filled.map_err(|e| LogError::io("read", &cursor.path, e))?;
        if available >= needed || cursor.extent.sealed {
            return Ok(available);
        }
        cursor.extent = self.extent_of(cursor)?;
        cursor
            .fill(&mut self.buffer, needed)
            .map_err(|e| LogError::io("read", &cursor.path, e))
    }

    fn open_cursor(&mut self, lsn: Lsn) -> Result<Cursor, LogError> {
        let spot = self.segment_for(lsn)?;
        self.open_cursor_at(spot, lsn)
    }

    fn open_cursor_at(&mut self, spot: SegmentSpot, lsn: Lsn) -> Result<Cursor, LogError> {
        let file = File::open(&spot.path).map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => self.compacted(lsn),
            _ => LogError::io("open", &spot.path, error),
        })?;
        if self.buffer.len() < READ_BUFFER_BYTES {
            self.buffer = vec![0u8; READ_BUFFER_BYTES];
        }
        debug_assert!(spot.first_lsn <= lsn);
        let (hint_lsn, hint_offset) = spot.hint;
        let mut cursor = Cursor {
            file,
            path: spot.path,
            first_lsn: spot.first_lsn,
            buffer_offset: hint_offset,
            begin: 0,
            end: 0,
            extent: Extent {
                bytes: 0,
                sealed: false,
            },
            verified_end: 0,
        };
        cursor.extent = self.extent_of(&cursor)?;
        // Hop the headers from the index entry to `lsn`.
        for skipped in hint_lsn..lsn {
            let offset = cursor.offset();
            let mut header = None;
            if self.fill(&mut cursor, RECORD_HEADER_BYTES)? >= RECORD_HEADER_BYTES {
                let bytes = self.buffer[cursor.begin..]
                    .first_chunk()
                    .expect("header bytes are in the buffer");
                header = Some(RecordHeader::parse(bytes));
            }
            let header = header
                .filter(|h| h.lsn == skipped && h.payload_bytes <= RECORD_BYTES_LIMIT)
                .ok_or_else(|| LogError::Corrupt {
                    segment: cursor.path.clone(),
                    offset,
                    reason: format!(
                        "expected the header of LSN {skipped} while seeking to LSN {lsn}"
                    ),
                })?;
            let record_bytes = header.record_bytes();
            let buffered = cursor.end - cursor.begin;
            if record_bytes <= buffered {
                cursor.begin += record_bytes;
            } else {
                // Jump over the rest of a record larger than the buffer.
                cursor.buffer_offset = offset + record_bytes as u64;
                cursor.begin = 0;
                cursor.end = 0;
            }
        }
        Ok(cursor)
    }

    /// How far the cursor's segment may be read now.
    fn extent_of(&self, cursor: &Cursor) -> Result<Extent, LogError> {
        let known = match &self.source {
            Source::Live(shared) => {
                let state = shared.lock();
                let segments = &state.segments;
                let position = segments.partition_point(|s| s.first_lsn < cursor.first_lsn);
                segments
                    .get(position)
                    .filter(|s| s.first_lsn == cursor.first_lsn)
                    .map(|s| Extent {
                        bytes: s.bytes,
                        sealed: position + 1 < segments.len(),
                    })
            }
            Source::Fixed(segments) => segments
                .iter()
                .find(|s| s.first_lsn == cursor.first_lsn)
                .map(|s| Extent {
                    bytes: s.bytes,
                    sealed: true,
                }),
        };
        match known {
            Some(extent) => Ok(extent),
            // Compacted meanwhile: it was sealed, hence cut to its records.
            None => {
                let bytes = cursor
                    .file
                    .metadata()
                    .map_err(|e| LogError::io("stat", &cursor.path, e))?
                    .len();
                Ok(Extent {
                    bytes,
                    sealed: true,
                })
            }
        }
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

fn corrupt(cursor: &Cursor, reason: String) -> LogError {
    LogError::Corrupt {
        segment: cursor.path.clone(),
        offset: cursor.offset(),
        reason,
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
