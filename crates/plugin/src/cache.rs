//! The on-disk cache of compiled plugin code, `<data_dir>/plugin-cache/`.
//!
//! Compiling a component with Cranelift takes tens to hundreds of
//! milliseconds; a restart should not pay it again. wasmtime can serialize
//! compiled code ([`wasmtime::component::Component::serialize`]) and load
//! it back, but loading is `unsafe`: the bytes are mapped as executable
//! machine code, so a file that levee did not write itself must never be
//! deserialized. The scheme:
//!
//! - **Per-install secret**: `secret.key`, 32 random bytes, created with
//!   mode 0600 in a 0700 directory. A key that is the wrong size, readable
//!   by others, or owned by another user is not trusted: it is replaced,
//!   which turns every existing entry into a miss.
//! - **Authenticated entries**: `<version>-<engine>.cwasm`, where `version`
//!   is the SHA-256 of the component bytes and `engine` the hash of the
//!   engine's compatibility fingerprint
//!   ([`wasmtime::Engine::precompile_compatibility_hash`]), so a wasmtime
//!   upgrade or a config change simply misses. Layout:
//!   `magic "LEVEECC1" | payload length (u64 LE) | HMAC-SHA-256 tag (32) |
//!   payload`. The tag covers a domain label, the version, the engine hash,
//!   the length and the payload, so an entry cannot be moved to another key
//!   either.
//! - **Verify, then deserialize from the verified bytes**: the file is read
//!   into memory once, the tag checked in constant time, and the *same
//!   bytes* handed to [`wasmtime::component::Component::deserialize`]. We do
//!   not use `deserialize_file` on the path after verifying it, because the
//!   file could be swapped between the check and the mapping.
//! - **Any mismatch is a miss**: bad magic, length, tag or a wasmtime
//!   refusal → the entry is reported as rejected, the component recompiled
//!   and the entry overwritten.
//! - **Durable, atomic writes**: temp file, `fsync`, `rename`, directory
//!   `fsync`; a crash leaves either the old entry or the new one.
//! - **Bounded**: at most `entries_max` entries; the oldest (by mtime) are
//!   deleted after each write.

use std::fs::{self, File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component as WasmComponent;

use crate::hmac::{HmacSha256, TAG_BYTES, tags_equal};

const MAGIC: &[u8; 8] = b"LEVEECC1";
const HEADER_BYTES: usize = MAGIC.len() + 8 + TAG_BYTES;
const SECRET_FILE: &str = "secret.key";
const SECRET_BYTES: usize = 32;
const ENTRY_EXTENSION: &str = "cwasm";
const TAG_DOMAIN: &[u8] = b"levee plugin-cache entry v1\0";
/// Largest entry we will read; compiled code of a sane plugin is far
/// smaller, and this bounds the read of a corrupted length field.
pub(crate) const ENTRY_BYTES_MAX: u64 = 512 * 1024 * 1024;
/// Directory entries examined per eviction pass.
const EVICTION_SCAN_MAX: usize = 100_000;

/// The result of a cache lookup.
pub(crate) enum Lookup {
    Hit(WasmComponent),
    /// No entry for this key.
    Absent,
    /// An entry exists but failed verification or deserialization.
    Rejected(String),
}

/// The compiled-code cache of one runtime.
pub(crate) struct DiskCache {
    dir: PathBuf,
    secret: [u8; SECRET_BYTES],
    engine_hash: String,
    entries_max: usize,
}

impl DiskCache {
    /// Opens (creating if needed) the cache in `dir` for `engine`.
    pub(crate) fn open(dir: &Path, engine: &Engine, entries_max: usize) -> io::Result<DiskCache> {
        assert!(entries_max > 0, "validated by RuntimeOptions");
        create_private_dir(dir)?;
        let secret = load_or_create_secret(dir)?;
        Ok(DiskCache {
            dir: dir.to_path_buf(),
            secret,
            engine_hash: engine_hash(engine),
            entries_max,
        })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of the entry for a component version.
    pub(crate) fn entry_path(&self, version: &str) -> PathBuf {
        debug_assert!(
            version.bytes().all(|b| b.is_ascii_hexdigit()),
            "versions are hex digests"
        );
        self.dir
            .join(format!("{version}-{}.{ENTRY_EXTENSION}", self.engine_hash))
    }

    /// Looks up, verifies and deserializes the entry for `version`.
    pub(crate) fn load(&self, engine: &Engine, version: &str) -> Lookup {
        let path = self.entry_path(version);
        let bytes = match read_bounded(&path, ENTRY_BYTES_MAX) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Lookup::Absent,
            Err(e) => return Lookup::Rejected(format!("reading {}: {e}", path.display())),
        };
        let payload = match self.verify(version, &bytes) {
            Ok(payload) => payload,
            Err(reason) => return Lookup::Rejected(reason),
        };
        // SAFETY: `payload` is exactly the bytes levee serialized itself for
        // this version and this engine configuration: the HMAC under the
        // install's private key proves it, and we verified the in-memory
        // copy we are about to hand over (no re-read of the file).
        match unsafe { WasmComponent::deserialize(engine, payload) } {
            Ok(component) => Lookup::Hit(component),
            Err(e) => Lookup::Rejected(format!("wasmtime refused the cached code: {e:#}")),
        }
    }

    /// Checks magic, length and tag; returns the payload.
    fn verify<'a>(&self, version: &str, bytes: &'a [u8]) -> Result<&'a [u8], String> {
        if bytes.len() < HEADER_BYTES || &bytes[..MAGIC.len()] != MAGIC {
            return Err("not a levee cache entry (bad magic)".into());
        }
        let length_field: [u8; 8] = bytes[MAGIC.len()..MAGIC.len() + 8]
            .try_into()
            .expect("8 bytes");
        let stored_tag: [u8; TAG_BYTES] = bytes[MAGIC.len() + 8..HEADER_BYTES]
            .try_into()
            .expect("32 bytes");
        let payload = &bytes[HEADER_BYTES..];
        if u64::from_le_bytes(length_field) != payload.len() as u64 {
            return Err("truncated or padded entry (length mismatch)".into());
        }
        if !tags_equal(&stored_tag, &self.tag(version, payload)) {
            return Err(
                "authentication tag mismatch (entry not written by this install, or tampered with)"
                    .into(),
            );
        }
        Ok(payload)
    }

    fn tag(&self, version: &str, payload: &[u8]) -> [u8; TAG_BYTES] {
        let mut mac = HmacSha256::new(&self.secret);
        mac.update(TAG_DOMAIN);
        mac.update(version.as_bytes());
        mac.update(b"\0");
        mac.update(self.engine_hash.as_bytes());
        mac.update(b"\0");
        mac.update(&(payload.len() as u64).to_le_bytes());
        mac.update(payload);
        mac.finish()
    }

    /// Writes the entry for `version` durably and atomically, then evicts
    /// the oldest entries beyond `entries_max`.
    pub(crate) fn store(&self, version: &str, component: &WasmComponent) -> io::Result<()> {
        let payload = component
            .serialize()
            .map_err(|e| io::Error::other(format!("{e:#}")))?;
        let mut entry = Vec::with_capacity(HEADER_BYTES + payload.len());
        entry.extend_from_slice(MAGIC);
        entry.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        entry.extend_from_slice(&self.tag(version, &payload));
        entry.extend_from_slice(&payload);
        write_atomically(&self.dir, &self.entry_path(version), &entry, 0o600)?;
        self.evict_oldest();
        Ok(())
    }

    /// Deletes the oldest entries (and stale temp files) so that at most
    /// `entries_max` remain. Failures are logged, never fatal.
    fn evict_oldest(&self) {
        let Ok(listing) = fs::read_dir(&self.dir) else {
            return;
        };
        let mut entries = Vec::new();
        for dir_entry in listing.take(EVICTION_SCAN_MAX).flatten() {
            let path = dir_entry.path();
            let Ok(metadata) = dir_entry.metadata() else {
                continue;
            };
            let is_entry = path.extension().is_some_and(|ext| ext == ENTRY_EXTENSION);
            let is_stale_temp = is_temp_name(&path)
                && metadata
                    .modified()
                    .is_ok_and(|m| m.elapsed().is_ok_and(|age| age.as_secs() > 3_600));
            if is_stale_temp {
                let _ = fs::remove_file(&path);
            } else if is_entry && metadata.is_file() {
                entries.push((metadata.modified().ok(), path));
            }
        }
        if entries.len() <= self.entries_max {
            return;
        }
        entries.sort();
        let excess = entries.len() - self.entries_max;
        for (_, path) in entries.into_iter().take(excess) {
            if let Err(e) = fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "evicting plugin cache entry failed");
            }
        }
    }
}

/// A stable hex digest of the engine's compatibility fingerprint.
fn engine_hash(engine: &Engine) -> String {
    /// Feeds `Hash` output into SHA-256, so the digest is stable across
    /// processes (unlike `DefaultHasher`, whose algorithm may change).
    struct Sha256Hasher(Sha256);
    impl Hasher for Sha256Hasher {
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
        fn finish(&self) -> u64 {
            unreachable!("only the full digest is used")
        }
    }
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex::encode(&hasher.0.finalize()[..16])
}

/// Creates `dir` (and parents) and makes it private to this user.
fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let metadata = fs::metadata(dir)?;
    if metadata.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Reads the install's secret, creating it on first use and replacing one
/// that cannot be trusted.
fn load_or_create_secret(dir: &Path) -> io::Result<[u8; SECRET_BYTES]> {
    let path = dir.join(SECRET_FILE);
    match read_trusted_secret(&path) {
        Ok(Some(secret)) => return Ok(secret),
        Ok(None) => {}
        Err(reason) => {
            tracing::warn!(path = %path.display(), %reason, "replacing untrusted plugin cache secret; cached code will be recompiled");
            let secret: [u8; SECRET_BYTES] = rand::random();
            write_atomically(dir, &path, &secret, 0o600)?;
            return Ok(secret);
        }
    }
    // First use. Publish with a hard link so that of two processes racing
    // here, exactly one secret wins and both use it.
    let secret: [u8; SECRET_BYTES] = rand::random();
    let temp = temp_path(dir, SECRET_FILE);
    write_file_synced(&temp, &secret, 0o600)?;
    let linked = fs::hard_link(&temp, &path);
    let _ = fs::remove_file(&temp);
    match linked {
        Ok(()) => {
            sync_dir(dir)?;
            Ok(secret)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match read_trusted_secret(&path) {
            Ok(Some(winner)) => Ok(winner),
            _ => Err(io::Error::other(
                "plugin cache secret appeared concurrently but is not trustworthy",
            )),
        },
        Err(e) => Err(e),
    }
}

/// `Ok(None)` when absent; `Err(reason)` when present but not trustworthy.
fn read_trusted_secret(path: &Path) -> Result<Option<[u8; SECRET_BYTES]>, String> {
    let metadata = match fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    if !metadata.is_file() {
        return Err("not a regular file".into());
    }
    if metadata.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "mode {:o} is accessible to others",
            metadata.permissions().mode() & 0o777
        ));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if metadata.uid() != euid {
        return Err(format!("owned by uid {}, not {euid}", metadata.uid()));
    }
    let bytes = read_bounded(path, SECRET_BYTES as u64 + 1).map_err(|e| e.to_string())?;
    bytes
        .try_into()
        .map(Some)
        .map_err(|bytes: Vec<u8>| format!("{} bytes instead of {SECRET_BYTES}", bytes.len()))
}

/// Reads a whole file, refusing files larger than `bytes_max`.
fn read_bounded(path: &Path, bytes_max: u64) -> io::Result<Vec<u8>> {
    let file = File::open(path)?;
    let length = file.metadata()?.len();
    if length > bytes_max {
        return Err(io::Error::other(format!(
            "{length} bytes, more than the {bytes_max} allowed"
        )));
    }
    let mut bytes = Vec::with_capacity(length as usize);
    file.take(bytes_max).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Writes `bytes` to `path` via a synced temp file and a rename, then
/// syncs the directory so the rename itself is durable.
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("entry");
    let temp = temp_path(dir, name);
    let result = write_file_synced(&temp, bytes, mode).and_then(|()| fs::rename(&temp, path));
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result?;
    sync_dir(dir)
}

fn write_file_synced(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A temp name unique to this process and moment, hidden from listings of
/// entries (it has no `.cwasm` extension).
fn temp_path(dir: &Path, name: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{name}.tmp-{}-{sequence}", std::process::id()))
}

fn is_temp_name(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.') && n.contains(".tmp-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_private_stable_and_replaced_when_exposed() {
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = dir.path().join("plugin-cache");
        create_private_dir(&cache_dir).unwrap();
        assert_eq!(
            fs::metadata(&cache_dir).unwrap().permissions().mode() & 0o777,
            0o700
        );

        let first = load_or_create_secret(&cache_dir).unwrap();
        let secret_path = cache_dir.join(SECRET_FILE);
        assert_eq!(
            fs::metadata(&secret_path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            load_or_create_secret(&cache_dir).unwrap(),
            first,
            "stable across opens"
        );

        fs::set_permissions(&secret_path, fs::Permissions::from_mode(0o644)).unwrap();
        let replaced = load_or_create_secret(&cache_dir).unwrap();
        assert_ne!(replaced, first, "an exposed secret is not trusted");
        assert_eq!(
            fs::metadata(&secret_path).unwrap().permissions().mode() & 0o777,
            0o600
        );

        fs::write(&secret_path, b"short").unwrap();
        fs::set_permissions(&secret_path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(read_trusted_secret(&secret_path).is_err());
    }

    #[test]
    fn bounded_read_refuses_big_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, vec![0u8; 100]).unwrap();
        assert_eq!(read_bounded(&path, 100).unwrap().len(), 100);
        assert!(read_bounded(&path, 99).is_err());
    }
}
