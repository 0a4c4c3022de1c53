//! Checkpoints: durable, checksummed snapshots of the host's state, each
//! stamped with the LSN it covers (every record up to and including it is
//! reflected in the state), so that recovery loads the snapshot and replays
//! only the records after it, and compaction may delete what it covers.
//!
//! # File `checkpoint-<covers_lsn, 20 digits>.ckpt`
//!
//! ```text
//! offset size field
//!      0    8 magic          b"LEVEECKP"
//!      8    4 frame_version  1
//!     12    4 crc            CRC32C of bytes 16..end
//!     16    8 covers_lsn     same as in the file name and the envelope
//!     24    8 body_bytes     length of the body
//!     32    n body           JSON envelope, see below
//! ```
//!
//! The body is a typed, versioned envelope:
//!
//! ```json
//! {"format_version":1,"covers_lsn":1234,"created_unix_ms":1700000000000,"state":{...}}
//! ```
//!
//! `state` is the host's own serde type. Schema evolution is the host's
//! business and works the serde way: a field added later must carry
//! `#[serde(default)]` so that checkpoints written before it still
//! deserialize; unknown fields from a newer writer are ignored unless the
//! host opts into `deny_unknown_fields`. `format_version` is the envelope's
//! version, bumped only if this frame or envelope changes shape.
//!
//! Writing is atomic (temp file, fdatasync, rename, directory fsync); the
//! newest `checkpoints_kept` files are kept so that a corrupt newest one
//! falls back to the one before it.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{LogError, Lsn};

/// Version of the JSON envelope.
pub const CHECKPOINT_FORMAT_VERSION: u32 = 1;
const CHECKPOINT_MAGIC: [u8; 8] = *b"LEVEECKP";
const FRAME_VERSION: u32 = 1;
const FRAME_HEADER_BYTES: usize = 32;
const CHECKPOINT_PREFIX: &str = "checkpoint-";
const CHECKPOINT_SUFFIX: &str = ".ckpt";

/// The versioned envelope around the host's state.
#[derive(Debug, Serialize, Deserialize)]
pub struct CheckpointEnvelope<S> {
    pub format_version: u32,
    pub covers_lsn: Lsn,
    pub created_unix_ms: u64,
    pub state: S,
}

/// Describes a checkpoint on disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckpointInfo {
    pub path: PathBuf,
    /// Every record with an LSN up to and including this is reflected in
    /// the checkpointed state.
    pub covers_lsn: Lsn,
    pub created_unix_ms: u64,
    pub bytes: u64,
}

pub(crate) fn checkpoint_file_name(covers_lsn: Lsn) -> String {
    format!("{CHECKPOINT_PREFIX}{covers_lsn:020}{CHECKPOINT_SUFFIX}")
}

fn parse_checkpoint_file_name(name: &str) -> Option<Lsn> {
    let digits = name
        .strip_prefix(CHECKPOINT_PREFIX)?
        .strip_suffix(CHECKPOINT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Checkpoint files in `dir`, sorted by covered LSN (oldest first).
pub(crate) fn list_checkpoint_files(dir: &Path) -> Result<Vec<(Lsn, PathBuf)>, LogError> {
    let mut found = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| LogError::io("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| LogError::io("list", dir, e))?;
        if let Some(lsn) = entry
            .file_name()
            .to_str()
            .and_then(parse_checkpoint_file_name)
        {
            found.push((lsn, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// Serializes the envelope and wraps it in the checksummed frame.
pub(crate) fn encode_checkpoint<S: Serialize>(
    covers_lsn: Lsn,
    created_unix_ms: u64,
    state: &S,
) -> Result<Vec<u8>, serde_json::Error> {
    let envelope = CheckpointEnvelope {
        format_version: CHECKPOINT_FORMAT_VERSION,
        covers_lsn,
        created_unix_ms,
        state,
    };
    let mut bytes = vec![0u8; FRAME_HEADER_BYTES];
    serde_json::to_writer(&mut bytes, &envelope)?;
    let body_bytes = (bytes.len() - FRAME_HEADER_BYTES) as u64;
    bytes[0..8].copy_from_slice(&CHECKPOINT_MAGIC);
    bytes[8..12].copy_from_slice(&FRAME_VERSION.to_le_bytes());
    bytes[16..24].copy_from_slice(&covers_lsn.to_le_bytes());
    bytes[24..32].copy_from_slice(&body_bytes.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[16..]);
    bytes[12..16].copy_from_slice(&crc.to_le_bytes());
    Ok(bytes)
}

/// A checkpoint file that verified: its description and JSON body.
pub(crate) struct LoadedCheckpoint {
    pub info: CheckpointInfo,
    pub body: Vec<u8>,
}

/// Reads and verifies a checkpoint file: size bound, frame, checksum, name,
/// and the envelope's fields (the state itself is only checked to be JSON).
/// `Err` carries a human-readable reason; I/O errors are reasons too, since
/// an unreadable checkpoint is skipped like a corrupt one.
pub(crate) fn load_checkpoint_file(
    path: &Path,
    name_lsn: Lsn,
    bytes_max: u64,
) -> Result<LoadedCheckpoint, String> {
    let mut file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let file_bytes = file
        .metadata()
        .map_err(|e| format!("cannot stat: {e}"))?
        .len();
    if file_bytes > bytes_max {
        return Err(format!(
            "file is {file_bytes} bytes, above checkpoint_bytes_max = {bytes_max}"
        ));
    }
    let mut bytes = Vec::with_capacity(file_bytes as usize);
    file.read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    let Some(header) = bytes.first_chunk::<FRAME_HEADER_BYTES>() else {
        return Err(format!(
            "file is {} bytes, shorter than the frame header",
            bytes.len()
        ));
    };
    if header[0..8] != CHECKPOINT_MAGIC {
        return Err("wrong magic (not a levee checkpoint)".into());
    }
    let frame_version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    if frame_version != FRAME_VERSION {
        return Err(format!("unsupported frame version {frame_version}"));
    }
    let stored_crc = u32::from_le_bytes(header[12..16].try_into().expect("4 bytes"));
    let computed_crc = crc32c::crc32c(&bytes[16..]);
    if stored_crc != computed_crc {
        return Err(format!(
            "checksum mismatch (stored {stored_crc:#010x}, computed {computed_crc:#010x})"
        ));
    }
    let covers_lsn = u64::from_le_bytes(header[16..24].try_into().expect("8 bytes"));
    let body_bytes = u64::from_le_bytes(header[24..32].try_into().expect("8 bytes"));
    if body_bytes != (bytes.len() - FRAME_HEADER_BYTES) as u64 {
        return Err(format!(
            "frame says {body_bytes} body bytes, file has {}",
            bytes.len() - FRAME_HEADER_BYTES
        ));
    }
    if covers_lsn != name_lsn {
        return Err(format!(
            "frame covers LSN {covers_lsn} but the file name says {name_lsn}"
        ));
    }
    let body = bytes.split_off(FRAME_HEADER_BYTES);
    let envelope: CheckpointEnvelope<serde::de::IgnoredAny> =
        serde_json::from_slice(&body).map_err(|e| format!("envelope is not valid JSON: {e}"))?;
    if envelope.format_version != CHECKPOINT_FORMAT_VERSION {
        return Err(format!(
            "envelope format_version {} is not supported (this build reads {CHECKPOINT_FORMAT_VERSION})",
            envelope.format_version
        ));
    }
    if envelope.covers_lsn != covers_lsn {
        return Err(format!(
            "envelope covers LSN {} but the frame says {covers_lsn}",
            envelope.covers_lsn
        ));
    }
    Ok(LoadedCheckpoint {
        info: CheckpointInfo {
            path: path.to_path_buf(),
            covers_lsn,
            created_unix_ms: envelope.created_unix_ms,
            bytes: file_bytes,
        },
        body,
    })
}

/// Deserializes the host's state out of a verified body.
pub(crate) fn decode_state<S: serde::de::DeserializeOwned>(
    loaded: &LoadedCheckpoint,
) -> Result<S, LogError> {
    let envelope: CheckpointEnvelope<S> =
        serde_json::from_slice(&loaded.body).map_err(|e| LogError::Checkpoint {
            path: loaded.info.path.clone(),
            reason: format!(
                "checksum is valid but the state does not deserialize into the requested type \
                 ({e}); fields added to the state type need #[serde(default)]"
            ),
        })?;
    Ok(envelope.state)
}

/// Milliseconds since the Unix epoch, for checkpoint stamps.
pub(crate) fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage_detection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(checkpoint_file_name(9));
        let bytes = encode_checkpoint(9, 1234, &vec![1u32, 2, 3]).unwrap();
        std::fs::write(&path, &bytes).unwrap();
        let loaded = load_checkpoint_file(&path, 9, 1 << 20).unwrap();
        assert_eq!(loaded.info.covers_lsn, 9);
        assert_eq!(loaded.info.created_unix_ms, 1234);
        assert_eq!(decode_state::<Vec<u32>>(&loaded).unwrap(), vec![1, 2, 3]);
        assert!(
            load_checkpoint_file(&path, 10, 1 << 20).is_err(),
            "name mismatch"
        );
        assert!(load_checkpoint_file(&path, 9, 16).is_err(), "size bound");
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x10;
            std::fs::write(&path, &damaged).unwrap();
            assert!(
                load_checkpoint_file(&path, 9, 1 << 20).is_err(),
                "byte {at}"
            );
        }
    }
}
