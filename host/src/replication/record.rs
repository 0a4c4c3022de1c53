//! The log record of one client write (log record kind [`KIND_CLIENT_WRITE`]).
//!
//! Why a record of its own: the log is the single source of truth for a
//! write from the instant it is durable. Everything the write path does
//! later (the fan-out's sends, every hint delivery after a replica comes
//! back, the redelivery after levee itself restarts) is rebuilt from these
//! bytes alone, so a record must carry all that is needed to send the write
//! again: where it goes (service, target replicas), what it is (method,
//! upstream path, the headers that describe the stored representation, the
//! body), when it was accepted (for the hint age limit) and its version
//! (what orders it against every other write to the key on the replicas,
//! see [`levee_version`]): a redelivery hours later carries the version the
//! write was given before its append, never a new one.
//!
//! # Byte layout (format version 2)
//!
//! ```text
//! offset  size  field
//! 0       1     format version (2)
//! 1       4     header_bytes: u32, little-endian (<= HEADER_BYTES_MAX)
//! 5       n     header: UTF-8 JSON object, see `WriteHeader`
//! 5+n     ..    body: raw bytes, to the end of the payload
//! ```
//!
//! Version 2 added the header's `version` (required). Version 1 records
//! (written before versions existed) are still read: their version is
//! `Version::legacy(accepted_unix_ms, lsn)`, which is why decoding takes the
//! record's LSN. Any other format byte is refused, naming both.
//!
//! A JSON header keeps the format self-describing and easy to evolve (a
//! later field gets `#[serde(default)]` so old records stay readable; a new
//! incompatible layout bumps the version byte), while the body stays raw so a
//! 1 MiB body is not inflated by an encoding. The log's own framing already
//! checksums the whole payload, so this layer only checks structure and
//! bounds: a record is untrusted input the moment it is read back (a log
//! written by an older or newer levee, a hand-edited file), and decoding it
//! never panics.

use levee_version::Version;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Log record kind of a client write.
pub const KIND_CLIENT_WRITE: u8 = 1;
/// The payload layout this levee writes (and reads).
pub const FORMAT_VERSION: u8 = 2;
/// The layout before versions: still read, its version derived from the
/// acceptance time and the LSN.
pub const FORMAT_VERSION_LEGACY: u8 = 1;
/// Bytes of the JSON header, at most.
pub const HEADER_BYTES_MAX: usize = 64 * 1024;
/// Replicas a write may target, at most.
pub const TARGETS_MAX: usize = 32;
/// Replicated headers per write, at most.
pub const HEADERS_MAX: usize = 16;
/// Bytes of one replicated header value, at most.
pub const HEADER_VALUE_BYTES_MAX: usize = 4 * 1024;

/// Fixed prefix before the JSON header: version byte + header length.
const PREFIX_BYTES: usize = 1 + 4;

/// Headers that describe the stored representation, and so must reach every
/// replica identically, including one that gets the write hours later from
/// the log. Everything else (hop-by-hop, credentials, tracing) describes one
/// exchange and is deliberately not replayed.
pub const REPLICATED_HEADERS: &[&str] = &[
    "content-type",
    "content-encoding",
    "content-language",
    "content-disposition",
    "idempotency-key",
];

/// Everything about a write except its body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteHeader {
    /// The service name from the configuration.
    pub service: String,
    /// Upper-case HTTP method: PUT, POST, PATCH or DELETE.
    pub method: String,
    /// Path and query to send to a replica (the upstream path).
    pub path: String,
    /// The routing key the targets were chosen by.
    pub key: String,
    /// Node ids of the replicas that must receive this write, in ring order.
    pub targets: Vec<String>,
    /// Lower-case names from [`REPLICATED_HEADERS`].
    pub headers: Vec<(String, String)>,
    /// The client request's `x-request-id`, for tracing a hint back to it.
    pub request_id: String,
    /// When levee accepted the write (Unix epoch, milliseconds); hint ages
    /// are measured from here.
    pub accepted_unix_ms: u64,
    /// The write's version, issued before the append and sent with every
    /// delivery (`x-levee-version`). Stored as its wire form. Absent in a
    /// format-1 record: [`WriteRecord::decode`] fills in the legacy version
    /// (absence parses as [`Version::ZERO`], which no clock issues).
    #[serde(with = "wire_version", default)]
    pub version: Version,
}

/// A version as its wire string in the JSON header.
mod wire_version {
    use levee_version::Version;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(version: &Version, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(version)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Version, D::Error> {
        let text = String::deserialize(deserializer)?;
        Version::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A decoded client write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteRecord {
    pub header: WriteHeader,
    pub body: bytes::Bytes,
}

/// Why a record could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecordError {
    #[error("write record is {record_bytes} bytes, shorter than its {PREFIX_BYTES}-byte prefix")]
    Truncated { record_bytes: usize },
    #[error(
        "write record format version {found} is not supported (this levee writes version \
         {FORMAT_VERSION} and reads versions {FORMAT_VERSION_LEGACY} and {FORMAT_VERSION})"
    )]
    UnsupportedVersion { found: u8 },
    #[error("write record header is {header_bytes} bytes, more than {HEADER_BYTES_MAX}")]
    HeaderTooLarge { header_bytes: usize },
    #[error("write record header claims {header_bytes} bytes but only {available_bytes} follow")]
    HeaderPastEnd {
        header_bytes: usize,
        available_bytes: usize,
    },
    #[error("write record header is not valid: {reason}")]
    BadHeader { reason: String },
}

impl WriteRecord {
    /// Encodes the record as a log payload.
    pub fn encode(&self) -> Result<Vec<u8>, RecordError> {
        self.header.validate()?;
        let header = serde_json::to_vec(&self.header).map_err(|e| RecordError::BadHeader {
            reason: e.to_string(),
        })?;
        if header.len() > HEADER_BYTES_MAX {
            return Err(RecordError::HeaderTooLarge {
                header_bytes: header.len(),
            });
        }
        let header_bytes = u32::try_from(header.len()).expect("bounded by HEADER_BYTES_MAX");
        let mut payload = Vec::with_capacity(PREFIX_BYTES + header.len() + self.body.len());
        payload.push(FORMAT_VERSION);
        payload.extend_from_slice(&header_bytes.to_le_bytes());
        payload.extend_from_slice(&header);
        payload.extend_from_slice(&self.body);
        Ok(payload)
    }

    /// Decodes the payload of log record `lsn` (the LSN gives a format-1
    /// record its legacy version). The body is taken without copying.
    pub fn decode(payload: Vec<u8>, lsn: u64) -> Result<WriteRecord, RecordError> {
        let header = decode_header(&payload, lsn)?;
        let header_end = header_end(&payload)?;
        let mut body = bytes::Bytes::from(payload);
        let body = body.split_off(header_end);
        Ok(WriteRecord { header, body })
    }
}

/// Decodes only the header of the payload of log record `lsn`.
pub fn decode_header(payload: &[u8], lsn: u64) -> Result<WriteHeader, RecordError> {
    let header_end = header_end(payload)?;
    let mut header = parse_header(&payload[PREFIX_BYTES..header_end])?;
    if payload[0] == FORMAT_VERSION_LEGACY {
        header.version = Version::legacy(header.accepted_unix_ms, lsn);
    }
    // A format-2 header without a version parsed as ZERO: refused here.
    header.validate()?;
    Ok(header)
}

/// Where the JSON header ends (the body's first byte), after checking the
/// prefix.
fn header_end(payload: &[u8]) -> Result<usize, RecordError> {
    if payload.len() < PREFIX_BYTES {
        return Err(RecordError::Truncated {
            record_bytes: payload.len(),
        });
    }
    if payload[0] != FORMAT_VERSION && payload[0] != FORMAT_VERSION_LEGACY {
        return Err(RecordError::UnsupportedVersion { found: payload[0] });
    }
    let length_word: [u8; 4] = payload[1..PREFIX_BYTES].try_into().expect("4 bytes");
    let header_bytes = u32::from_le_bytes(length_word) as usize;
    if header_bytes > HEADER_BYTES_MAX {
        return Err(RecordError::HeaderTooLarge { header_bytes });
    }
    let available_bytes = payload.len() - PREFIX_BYTES;
    if header_bytes > available_bytes {
        return Err(RecordError::HeaderPastEnd {
            header_bytes,
            available_bytes,
        });
    }
    Ok(PREFIX_BYTES + header_bytes)
}

fn parse_header(bytes: &[u8]) -> Result<WriteHeader, RecordError> {
    serde_json::from_slice(bytes).map_err(|e| RecordError::BadHeader {
        reason: e.to_string(),
    })
}

impl WriteHeader {
    /// Structural bounds a record must meet both when written and when read
    /// back: a record that breaks them is refused rather than sent.
    pub fn validate(&self) -> Result<(), RecordError> {
        let bad = |reason: String| Err(RecordError::BadHeader { reason });
        if self.version == Version::ZERO {
            return bad("the write has no version".into());
        }
        if !matches!(self.method.as_str(), "PUT" | "POST" | "PATCH" | "DELETE") {
            return bad(format!(
                "method {:?} is not a write",
                truncated(&self.method)
            ));
        }
        if !self.path.starts_with('/') {
            return bad(format!(
                "path {:?} does not start with '/'",
                truncated(&self.path)
            ));
        }
        if self.targets.is_empty() || self.targets.len() > TARGETS_MAX {
            return bad(format!(
                "{} targets, expected 1..={TARGETS_MAX}",
                self.targets.len()
            ));
        }
        if self.headers.len() > HEADERS_MAX {
            return bad(format!(
                "{} headers, at most {HEADERS_MAX}",
                self.headers.len()
            ));
        }
        for (name, value) in &self.headers {
            if !REPLICATED_HEADERS.contains(&name.as_str()) {
                return bad(format!("header {:?} is not replicated", truncated(name)));
            }
            if value.len() > HEADER_VALUE_BYTES_MAX {
                return bad(format!("header {name} is {} bytes", value.len()));
            }
        }
        Ok(())
    }

    /// Whether the write must reach `node`.
    pub fn targets_node(&self, node: &str) -> bool {
        self.targets.iter().any(|target| target == node)
    }

    /// The client's `Idempotency-Key`, if it sent one.
    pub fn idempotency_key(&self) -> Option<&str> {
        self.headers
            .iter()
            .find(|(name, _)| name == "idempotency-key")
            .map(|(_, value)| value.as_str())
    }

    /// PUT and DELETE of a key are idempotent by HTTP semantics; POST and
    /// PATCH only when the client named the operation with a non-empty key
    /// (the same rule as the read path's `Inbound::is_idempotent`).
    pub fn is_idempotent(&self) -> bool {
        matches!(self.method.as_str(), "PUT" | "DELETE")
            || self.idempotency_key().is_some_and(|key| !key.is_empty())
    }
}

/// Bounds untrusted text echoed into an error message.
fn truncated(text: &str) -> String {
    text.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(body: &[u8]) -> WriteRecord {
        WriteRecord {
            header: WriteHeader {
                service: "kv".into(),
                method: "PUT".into(),
                path: "/kv/apple?x=1".into(),
                key: "apple".into(),
                targets: vec!["a".into(), "b".into(), "c".into()],
                headers: vec![("content-type".into(), "text/plain".into())],
                request_id: "req-1".into(),
                accepted_unix_ms: 1_700_000_000_000,
                version: Version::parse("1700000000000.3.9f3a0c1d2e4b5a6c").unwrap(),
            },
            body: bytes::Bytes::copy_from_slice(body),
        }
    }

    #[test]
    fn round_trips_with_empty_and_binary_bodies() {
        for body in [&b""[..], b"hello", &[0u8, 255, 1, 2, 3][..]] {
            let record = sample(body);
            let payload = record.encode().unwrap();
            assert_eq!(payload[0], FORMAT_VERSION);
            assert_eq!(WriteRecord::decode(payload.clone(), 7).unwrap(), record);
            assert_eq!(decode_header(&payload, 7).unwrap(), record.header);
        }
    }

    #[test]
    fn refuses_unknown_version() {
        let mut payload = sample(b"x").encode().unwrap();
        payload[0] = 9;
        let error = WriteRecord::decode(payload, 1).unwrap_err();
        assert_eq!(error, RecordError::UnsupportedVersion { found: 9 });
        let text = error.to_string();
        assert!(
            text.contains("version 9") && text.contains("writes version 2"),
            "{text}"
        );
    }

    #[test]
    fn refuses_header_length_past_the_end() {
        let mut payload = sample(b"").encode().unwrap();
        payload.truncate(payload.len() - 1);
        assert!(matches!(
            WriteRecord::decode(payload, 1).unwrap_err(),
            RecordError::HeaderPastEnd { .. }
        ));
    }

    #[test]
    fn refuses_oversized_header_length_without_reading_it() {
        let mut payload = vec![FORMAT_VERSION];
        payload.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            WriteRecord::decode(payload, 1).unwrap_err(),
            RecordError::HeaderTooLarge { .. }
        ));
    }

    #[test]
    fn refuses_a_read_method_and_unreplicated_headers() {
        let mut record = sample(b"");
        record.header.method = "GET".into();
        assert!(record.encode().is_err());
        let mut record = sample(b"");
        record
            .header
            .headers
            .push(("authorization".into(), "secret".into()));
        assert!(record.encode().is_err());
    }

    /// A payload with `header` as its JSON header, in format `format`.
    fn payload_with(format: u8, header: &serde_json::Value, body: &[u8]) -> Vec<u8> {
        let json = serde_json::to_vec(header).unwrap();
        let mut payload = vec![format];
        payload.extend_from_slice(&(json.len() as u32).to_le_bytes());
        payload.extend_from_slice(&json);
        payload.extend_from_slice(body);
        payload
    }

    /// The header of `sample` as JSON, without its version: what a format-1
    /// record (written before versions) holds.
    fn header_json_without_version() -> serde_json::Value {
        let mut json = serde_json::to_value(&sample(b"").header).unwrap();
        json.as_object_mut().unwrap().remove("version");
        json
    }

    #[test]
    fn the_version_is_stored_as_its_wire_form() {
        let json = serde_json::to_value(&sample(b"").header).unwrap();
        assert_eq!(json["version"], "1700000000000.3.9f3a0c1d2e4b5a6c");
    }

    #[test]
    fn format_1_records_read_with_their_legacy_version() {
        let payload = payload_with(
            FORMAT_VERSION_LEGACY,
            &header_json_without_version(),
            b"old",
        );
        let record = WriteRecord::decode(payload, 42).unwrap();
        assert_eq!(
            record.header.version,
            Version::legacy(1_700_000_000_000, 42)
        );
        assert_eq!(record.header.service, "kv");
        assert_eq!(&record.body[..], b"old");
    }

    #[test]
    fn format_2_records_require_a_version() {
        let payload = payload_with(FORMAT_VERSION, &header_json_without_version(), b"");
        let error = WriteRecord::decode(payload, 1).unwrap_err();
        assert!(error.to_string().contains("no version"), "{error}");
        let mut record = sample(b"");
        record.header.version = Version::ZERO;
        assert!(
            record.encode().is_err(),
            "a write is never logged without a version"
        );
    }

    #[test]
    fn malformed_versions_are_refused_not_guessed() {
        for bad in [
            serde_json::json!("1.2"),
            serde_json::json!("1.2.9F3A0C1D2E4B5A6C"),
            serde_json::json!("01.2.9f3a0c1d2e4b5a6c"),
            serde_json::json!(" 1.2.9f3a0c1d2e4b5a6c"),
            serde_json::json!("1.4294967296.9f3a0c1d2e4b5a6c"),
            serde_json::json!("9".repeat(200)),
            serde_json::json!(1_700_000_000_000u64),
            serde_json::json!(null),
            serde_json::json!({"physical_ms": 1}),
        ] {
            let mut header = header_json_without_version();
            header["version"] = bad.clone();
            let payload = payload_with(FORMAT_VERSION, &header, b"");
            let error = WriteRecord::decode(payload, 1).unwrap_err();
            assert!(
                matches!(error, RecordError::BadHeader { .. }),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn idempotency_follows_method_and_key() {
        let mut header = sample(b"").header;
        assert!(header.is_idempotent());
        header.method = "POST".into();
        assert!(!header.is_idempotent());
        header
            .headers
            .push(("idempotency-key".into(), String::new()));
        assert!(!header.is_idempotent(), "an empty key names nothing");
        header.headers.last_mut().unwrap().1 = "k1".into();
        assert!(header.is_idempotent());
        assert_eq!(header.idempotency_key(), Some("k1"));
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = WriteRecord::decode(bytes.clone(), 1);
            let _ = decode_header(&bytes, 1);
        }

        #[test]
        fn decoding_mutated_records_never_panics(
            body in proptest::collection::vec(any::<u8>(), 0..64),
            flip_at in any::<usize>(),
            flip_bits in 1u8..=255,
        ) {
            let mut payload = sample(&body).encode().unwrap();
            let index = flip_at % payload.len();
            payload[index] ^= flip_bits;
            let _ = WriteRecord::decode(payload, 1);
        }

        /// Any text in the version field: refused or parsed, never a panic,
        /// and what parses is exactly the text's version.
        #[test]
        fn arbitrary_version_text_never_panics(text in ".{0,64}") {
            let mut header = header_json_without_version();
            header["version"] = serde_json::Value::String(text.clone());
            let payload = payload_with(FORMAT_VERSION, &header, b"");
            if let Ok(record) = WriteRecord::decode(payload, 1) {
                prop_assert_eq!(record.header.version.to_string(), text);
            }
        }
    }
}
