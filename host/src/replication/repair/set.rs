//! The durable repair set: one small file per key under
//! `<data_dir>/repair/`.
//!
//! Why one file per key rather than an append-only journal: entries are
//! few (a key lands here only when a hint for it was dropped), they are
//! added and cleared one at a time, and a file per entry needs no
//! compaction: adding is a temp file, fsync, rename and directory fsync,
//! clearing is an unlink. A clear that a crash undoes only repeats a
//! repair, which is harmless (a repair copies what the replicas hold).
//!
//! A file is named by the hex of the SHA-256 of its entry (service, key
//! and upstream path, NUL-separated) plus `.json`, and holds the entry as
//! JSON. Files that cannot be read back are renamed `*.broken` and
//! reported; leftover `*.tmp` files (a crash mid-add) are removed.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::RepairKey;

/// The file name suffix of an entry.
const ENTRY_SUFFIX: &str = ".json";
/// The suffix of a file being written.
const TEMP_SUFFIX: &str = ".tmp";
/// Bytes of one entry file, at most (service and key names are short;
/// the path is bounded by the request line limit).
const ENTRY_BYTES_MAX: u64 = 64 * 1024;

/// An entry as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct StoredEntry {
    service: String,
    key: String,
    path: String,
    /// When the entry was first recorded (Unix epoch, milliseconds).
    since_unix_ms: u64,
}

/// The directory of entry files.
#[derive(Debug)]
pub(super) struct SetDir {
    dir: PathBuf,
}

/// What [`SetDir::load`] found.
#[derive(Debug, Default)]
pub(super) struct Loaded {
    /// Entries by file id, at most `limit` of them.
    pub entries: BTreeMap<String, RepairKey>,
    /// Entry files left on disk because the set was full.
    pub over_limit: usize,
    /// Files that could not be read back (renamed `*.broken`).
    pub broken: usize,
}

/// The id (file stem) of an entry: hex SHA-256 of its parts.
pub(super) fn entry_id(key: &RepairKey) -> String {
    let mut hash = Sha256::new();
    for part in [&key.service, &key.key, &key.path] {
        hash.update(part.as_bytes());
        hash.update([0u8]);
    }
    hex::encode(hash.finalize())
}

impl SetDir {
    /// The set under `dir`, created if missing.
    pub fn open(dir: &Path) -> io::Result<SetDir> {
        fs::create_dir_all(dir)?;
        Ok(SetDir {
            dir: dir.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Reads every entry back (at most `limit`, in file name order).
    pub fn load(&self, limit: usize) -> io::Result<Loaded> {
        let mut loaded = Loaded::default();
        let mut names: Vec<String> = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if name.ends_with(TEMP_SUFFIX) {
                let _ = fs::remove_file(self.dir.join(&name));
            } else if name.ends_with(ENTRY_SUFFIX) {
                names.push(name);
            }
        }
        names.sort();
        for name in names {
            if loaded.entries.len() >= limit {
                loaded.over_limit += 1;
                continue;
            }
            let path = self.dir.join(&name);
            match read_entry(&path) {
                Ok(key) if format!("{}{ENTRY_SUFFIX}", entry_id(&key)) == name => {
                    loaded.entries.insert(entry_id(&key), key);
                }
                Ok(_) => self.set_aside(
                    &path,
                    &name,
                    "its name does not match its content",
                    &mut loaded,
                ),
                Err(reason) => self.set_aside(&path, &name, &reason, &mut loaded),
            }
        }
        Ok(loaded)
    }

    fn set_aside(&self, path: &Path, name: &str, reason: &str, loaded: &mut Loaded) {
        tracing::warn!(file = %path.display(), reason, "repair set entry cannot be read; renamed *.broken");
        let _ = fs::rename(path, self.dir.join(format!("{name}.broken")));
        loaded.broken += 1;
    }

    /// Writes `key`'s entry durably: temp file, fsync, rename, fsync of
    /// the directory.
    pub fn add(&self, key: &RepairKey, since_unix_ms: u64) -> io::Result<()> {
        let stored = StoredEntry {
            service: key.service.clone(),
            key: key.key.clone(),
            path: key.path.clone(),
            since_unix_ms,
        };
        let bytes = serde_json::to_vec(&stored).map_err(io::Error::other)?;
        let id = entry_id(key);
        let temp = self.dir.join(format!("{id}{TEMP_SUFFIX}"));
        let target = self.dir.join(format!("{id}{ENTRY_SUFFIX}"));
        let mut file = File::create(&temp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, &target)?;
        File::open(&self.dir)?.sync_all()
    }

    /// Removes `id`'s entry (not fsynced: see the module doc).
    pub fn remove(&self, id: &str) -> io::Result<()> {
        match fs::remove_file(self.dir.join(format!("{id}{ENTRY_SUFFIX}"))) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }
}

fn read_entry(path: &Path) -> Result<RepairKey, String> {
    let bytes_on_disk = fs::metadata(path).map_err(|e| e.to_string())?.len();
    if bytes_on_disk > ENTRY_BYTES_MAX {
        return Err(format!(
            "{bytes_on_disk} bytes, more than {ENTRY_BYTES_MAX}"
        ));
    }
    let bytes = fs::read(path).map_err(|e| e.to_string())?;
    let stored: StoredEntry = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    Ok(RepairKey {
        service: stored.service,
        key: stored.key,
        path: stored.path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: usize) -> RepairKey {
        RepairKey {
            service: "kv".into(),
            key: format!("k{n}"),
            path: format!("/kv/k{n}"),
        }
    }

    #[test]
    fn entries_survive_a_reopen_and_removal_sticks() {
        let dir = tempfile::tempdir().unwrap();
        let set = SetDir::open(&dir.path().join("repair")).unwrap();
        for n in 0..5 {
            set.add(&key(n), 1).unwrap();
        }
        set.remove(&entry_id(&key(3))).unwrap();
        set.remove(&entry_id(&key(3))).unwrap(); // absent: fine
        let reopened = SetDir::open(&dir.path().join("repair")).unwrap();
        let loaded = reopened.load(100).unwrap();
        let keys: Vec<_> = loaded.entries.values().map(|k| k.key.clone()).collect();
        assert_eq!(loaded.entries.len(), 4, "{keys:?}");
        assert!(!keys.contains(&"k3".to_string()));
        assert_eq!(loaded.entries[&entry_id(&key(1))], key(1));
    }

    #[test]
    fn loading_respects_the_limit_and_sets_damage_aside() {
        let dir = tempfile::tempdir().unwrap();
        let set = SetDir::open(dir.path()).unwrap();
        for n in 0..4 {
            set.add(&key(n), 1).unwrap();
        }
        fs::write(dir.path().join("junk.json"), b"{not json").unwrap();
        fs::write(dir.path().join("half.tmp"), b"{").unwrap();
        let loaded = set.load(3).unwrap();
        assert_eq!(loaded.entries.len(), 3);
        assert_eq!(loaded.over_limit + loaded.broken, 2);
        assert!(!dir.path().join("half.tmp").exists());
        let all = set.load(100).unwrap();
        assert_eq!((all.entries.len(), all.broken), (4, 1));
        assert!(dir.path().join("junk.json.broken").exists());
    }
}
