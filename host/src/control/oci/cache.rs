//! The on-disk cache of pulled artifacts, content-addressed:
//!
//! ```text
//! <data_dir>/oci-cache/sha256/<hex>.json   a manifest, named by its digest
//! <data_dir>/oci-cache/sha256/<hex>.wasm   a component layer, named by its digest
//! ```
//!
//! A file is written to a temporary name, fsynced, renamed into place and
//! the directory fsynced, so a crash leaves the complete file or none. A
//! file read back is verified against its name (and bounded); one that does
//! not match (a damaged disk, a hand edit) is deleted, logged and treated
//! as absent, so the next pull fetches it again. Entries are immutable and
//! never expire: a digest always names the same bytes.
//!
//! **Blocking**: call from `spawn_blocking`.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::reference::Digest;

/// The cache's directory under a data directory.
pub const DIR: &str = "oci-cache";

/// What a cached file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Manifest,
    Layer,
}

impl Kind {
    fn extension(self) -> &'static str {
        match self {
            Kind::Manifest => "json",
            Kind::Layer => "wasm",
        }
    }
}

/// A cache rooted at `<data_dir>/oci-cache`.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    pub fn in_data_dir(data_dir: &Path) -> Cache {
        Cache {
            root: data_dir.join(DIR),
        }
    }

    /// Where `digest`'s `kind` file lives (present or not).
    pub fn path(&self, kind: Kind, digest: &Digest) -> PathBuf {
        self.root
            .join("sha256")
            .join(format!("{}.{}", digest.hex(), kind.extension()))
    }

    /// The cached bytes of `digest`, verified; `None` when absent, larger
    /// than `bytes_max`, or not what the name says (then deleted).
    pub fn read(&self, kind: Kind, digest: &Digest, bytes_max: u64) -> Option<Vec<u8>> {
        let path = self.path(kind, digest);
        let bytes = match read_bounded(&path, bytes_max) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return None,
            Err(error) => {
                tracing::warn!(file = %path.display(), %error, "OCI cache entry unreadable; fetching it again");
                discard(&path);
                return None;
            }
        };
        if digest.matches(&bytes) {
            return Some(bytes);
        }
        tracing::warn!(
            file = %path.display(),
            actual = %Digest::of(&bytes),
            "OCI cache entry does not match its digest; deleted, fetching it again"
        );
        discard(&path);
        None
    }

    /// Stores `bytes` (whose digest the caller verified) as `digest`.
    pub fn write(&self, kind: Kind, digest: &Digest, bytes: &[u8]) -> io::Result<()> {
        let path = self.path(kind, digest);
        let dir = path.parent().expect("cache files live in a directory");
        fs::create_dir_all(dir)?;
        // A unique temporary name: two pulls of one digest may race.
        static SEQUENCE: AtomicU64 = AtomicU64::new(0);
        let tmp = dir.join(format!(
            ".{}.{}.{}.tmp",
            digest.hex(),
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        ));
        let written = (|| {
            let mut file = File::create(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            drop(file);
            fs::rename(&tmp, &path)?;
            File::open(dir)?.sync_all()
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written
    }
}

fn discard(path: &Path) {
    if let Err(error) = fs::remove_file(path)
        && error.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(file = %path.display(), %error, "cannot delete a bad OCI cache entry");
    }
}

fn read_bounded(path: &Path, bytes_max: u64) -> io::Result<Vec<u8>> {
    let file = File::open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a regular file",
        ));
    }
    let mut bytes = Vec::new();
    file.take(bytes_max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > bytes_max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {bytes_max} bytes"),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_verified_when_read() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::in_data_dir(dir.path());
        let digest = Digest::of(b"component");
        assert_eq!(cache.read(Kind::Layer, &digest, 100), None);
        cache.write(Kind::Layer, &digest, b"component").unwrap();
        let path = cache.path(Kind::Layer, &digest);
        assert!(path.ends_with(format!("oci-cache/sha256/{}.wasm", digest.hex())));
        assert_eq!(cache.read(Kind::Layer, &digest, 100).unwrap(), b"component");
        // Too large to read: absent (and deleted).
        assert_eq!(cache.read(Kind::Layer, &digest, 4), None);
        assert!(!path.exists());

        cache.write(Kind::Layer, &digest, b"component").unwrap();
        std::fs::write(&path, b"componenT").unwrap();
        assert_eq!(cache.read(Kind::Layer, &digest, 100), None, "tampered");
        assert!(!path.exists(), "a tampered entry is deleted");
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert!(
            leftovers.is_empty(),
            "no temporary file left: {leftovers:?}"
        );
    }
}
