//! The on-disk store of plugin components, so that plugins and their
//! versions survive a restart.
//!
//! Layout, under `<data_dir>/plugins/`:
//! ```text
//! <name>/<sha256>.wasm     one file per stored version, named by its digest
//! <name>/manifest.json     {"current": "<sha256>", "previous": ["<sha256>", ...], "updated_at_ms": ...}
//! ```
//! Why this shape:
//! - **Content-addressed files** make saving idempotent (the same bytes land
//!   on the same name) and make corruption detectable: a file whose digest
//!   does not match its name is refused at load.
//! - **A manifest per plugin** is the single commit point: the component is
//!   fully on disk (written to a temporary file, fsynced, renamed, directory
//!   fsynced) before the manifest that points at it is replaced the same
//!   way. A crash at any moment leaves either the old or the new manifest,
//!   never one that names a missing or half-written file.
//! - **Only `current` and [`HISTORY_MAX`] previous versions are kept**, the
//!   same window as the in-memory `levee_plugin::Registry`, so every
//!   rollback the registry allows can be persisted, and a store that grew
//!   with every hot reload would eventually fill the disk. A version that
//!   falls out of the window, or that was rolled back from, is deleted.
//!
//! The plugin drop-in directory (config `plugin_dir`) defaults to this same
//! directory: drop-ins are `*.wasm` files at the top level, stored versions
//! live in per-plugin subdirectories, so the two never collide. Deleting a
//! plugin deletes its drop-in file too ([`remove_drop_in`]): otherwise it
//! would come back at the next start.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};
use thiserror::Error;

/// Largest component the store accepts (and the default upload limit).
pub const COMPONENT_BYTES_MAX: u64 = 32 * 1024 * 1024;
/// Largest manifest file read.
const MANIFEST_BYTES_MAX: u64 = 4 * 1024;
/// Most plugins the store holds (the registry's bound).
pub const PLUGINS_MAX: usize = levee_plugin::registry::PLUGINS_MAX_DEFAULT;
/// Previous versions kept per plugin (the registry's history).
pub const HISTORY_MAX: usize = levee_plugin::registry::HISTORY_MAX_DEFAULT;
const MANIFEST_FILE: &str = "manifest.json";
const COMPONENT_SUFFIX: &str = ".wasm";
const TMP_SUFFIX: &str = ".tmp";

/// A stored version: the lower-case hex SHA-256 of the component bytes.
pub type Version = String;

/// The SHA-256 of `bytes` as 64 lower-case hex digits.
pub fn version_of(bytes: &[u8]) -> Version {
    hex::encode(Sha256::digest(bytes))
}

/// Whether `text` looks like a version (64 lower-case hex digits).
pub fn is_version(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Which versions of one plugin are stored and which one serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub current: Version,
    /// Newest first, at most [`HISTORY_MAX`].
    pub previous: Vec<Version>,
    /// When `current` was activated, milliseconds since the Unix epoch.
    pub updated_at_ms: u64,
}

impl Manifest {
    fn validate(&self) -> Result<(), String> {
        if !is_version(&self.current) {
            return Err("current is not a sha256 hex digest".into());
        }
        if self.previous.len() > HISTORY_MAX {
            return Err(format!(
                "{} previous versions, more than {HISTORY_MAX}",
                self.previous.len()
            ));
        }
        match self.previous.iter().find(|previous| !is_version(previous)) {
            Some(_) => Err("previous holds something that is not a sha256 hex digest".into()),
            None => Ok(()),
        }
    }

    fn references(&self, version: &str) -> bool {
        self.current == version || self.previous.iter().any(|previous| previous == version)
    }
}

/// What went wrong in the store.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("plugin name {name:?}: {reason}")]
    BadName { name: String, reason: String },
    #[error("component is {component_bytes} bytes, more than the {COMPONENT_BYTES_MAX} allowed")]
    TooLarge { component_bytes: u64 },
    #[error("plugin {name:?} is not stored")]
    NotStored { name: String },
    #[error("plugin {name:?} has no previous version to roll back to")]
    NoPrevious { name: String },
    #[error("plugin {name:?}: stored version {version} is corrupt ({reason})")]
    Corrupt {
        name: String,
        version: String,
        reason: String,
    },
    #[error("plugin {name:?}: manifest is invalid: {reason}")]
    BadManifest { name: String, reason: String },
    #[error("the store already holds {PLUGINS_MAX} plugins")]
    Full,
    #[error("plugin store I/O at {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The store rooted at `<data_dir>/plugins`.
#[derive(Debug, Clone)]
pub struct PluginStore {
    root: PathBuf,
}

impl PluginStore {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(io_at(&root))?;
        Ok(PluginStore { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn plugin_dir(&self, name: &str) -> Result<PathBuf, StoreError> {
        crate::config::validate_plugin_name(name).map_err(|reason| StoreError::BadName {
            name: name.chars().take(80).collect(),
            reason,
        })?;
        Ok(self.root.join(name))
    }

    /// Writes `bytes` as a version of `name` (durably), without activating it.
    /// Saving bytes that are already stored is a no-op.
    pub fn save(&self, name: &str, bytes: &[u8]) -> Result<Version, StoreError> {
        if bytes.len() as u64 > COMPONENT_BYTES_MAX {
            return Err(StoreError::TooLarge {
                component_bytes: bytes.len() as u64,
            });
        }
        let dir = self.plugin_dir(name)?;
        if !dir.exists() {
            self.check_room()?;
            fs::create_dir_all(&dir).map_err(io_at(&dir))?;
            sync_dir(&self.root)?;
        }
        let version = version_of(bytes);
        let file_name = format!("{version}{COMPONENT_SUFFIX}");
        if !dir.join(&file_name).exists() {
            write_atomically(&dir, &file_name, bytes)?;
        }
        Ok(version)
    }

    fn check_room(&self) -> Result<(), StoreError> {
        if self.names()?.len() >= PLUGINS_MAX {
            return Err(StoreError::Full);
        }
        Ok(())
    }

    /// Makes `version` (already saved) the current one of `name`; the old
    /// current becomes the newest previous version, and a version pushed
    /// out of the history is deleted. Activating the current version again
    /// is a no-op. Mirrors `levee_plugin::Registry`'s promotion rule.
    pub fn activate(&self, name: &str, version: &str) -> Result<Manifest, StoreError> {
        let dir = self.plugin_dir(name)?;
        debug_assert!(is_version(version));
        if !dir.join(format!("{version}{COMPONENT_SUFFIX}")).is_file() {
            return Err(StoreError::NotStored {
                name: name.to_string(),
            });
        }
        let old = self.manifest(name)?;
        if let Some(old) = &old
            && old.current == version
        {
            return Ok(old.clone());
        }
        let mut previous = old
            .as_ref()
            .map(|old| old.previous.clone())
            .unwrap_or_default();
        previous.retain(|kept| kept != version);
        if let Some(old) = &old {
            previous.insert(0, old.current.clone());
        }
        let dropped: Vec<Version> = previous.split_off(previous.len().min(HISTORY_MAX));
        let manifest = Manifest {
            current: version.to_string(),
            previous,
            updated_at_ms: now_ms(),
        };
        self.write_manifest(&dir, &manifest)?;
        for version in dropped {
            delete_if_unreferenced(&dir, &version, &manifest);
        }
        Ok(manifest)
    }

    /// Makes the newest previous version current again; the version rolled
    /// back from is dropped (as the registry does). Returns the new manifest.
    pub fn rollback(&self, name: &str) -> Result<Manifest, StoreError> {
        let dir = self.plugin_dir(name)?;
        let old = self.manifest(name)?.ok_or_else(|| StoreError::NotStored {
            name: name.to_string(),
        })?;
        let mut previous = old.previous;
        if previous.is_empty() {
            return Err(StoreError::NoPrevious {
                name: name.to_string(),
            });
        }
        let current = previous.remove(0);
        let manifest = Manifest {
            current,
            previous,
            updated_at_ms: now_ms(),
        };
        self.write_manifest(&dir, &manifest)?;
        delete_if_unreferenced(&dir, &old.current, &manifest);
        Ok(manifest)
    }

    /// The manifest of `name`, `None` if the plugin is not stored.
    pub fn manifest(&self, name: &str) -> Result<Option<Manifest>, StoreError> {
        let path = self.plugin_dir(name)?.join(MANIFEST_FILE);
        let text = match read_bounded(&path, MANIFEST_BYTES_MAX) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => {
                return Err(StoreError::Io {
                    path,
                    source: error,
                });
            }
        };
        let bad = |reason: String| StoreError::BadManifest {
            name: name.to_string(),
            reason,
        };
        let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
        manifest.validate().map_err(bad)?;
        Ok(Some(manifest))
    }

    /// The bytes of a stored version, checked against their digest.
    pub fn load(&self, name: &str, version: &str) -> Result<Vec<u8>, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            name: name.to_string(),
            version: version.chars().take(64).collect(),
            reason,
        };
        if !is_version(version) {
            return Err(corrupt("not a sha256 hex digest".into()));
        }
        let path = self
            .plugin_dir(name)?
            .join(format!("{version}{COMPONENT_SUFFIX}"));
        let bytes = read_bounded(&path, COMPONENT_BYTES_MAX).map_err(|e| corrupt(e.to_string()))?;
        let actual = version_of(&bytes);
        if actual != version {
            return Err(corrupt(format!("content hashes to {actual}")));
        }
        Ok(bytes)
    }

    /// Deletes every stored version of `name`. Deleting an unknown plugin is
    /// not an error (the caller checked it is unbound).
    pub fn remove(&self, name: &str) -> Result<(), StoreError> {
        let dir = self.plugin_dir(name)?;
        // Remove the manifest first and sync: after that the plugin is gone
        // even if deleting the component files is interrupted.
        let manifest = dir.join(MANIFEST_FILE);
        match fs::remove_file(&manifest) {
            Ok(()) => sync_dir(&dir)?,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(StoreError::Io {
                    path: manifest,
                    source: error,
                });
            }
        }
        match fs::remove_dir_all(&dir) {
            Ok(()) => sync_dir(&self.root),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(StoreError::Io {
                path: dir,
                source: error,
            }),
        }
    }

    /// Names of stored plugins (those with a manifest), sorted.
    pub fn names(&self) -> Result<Vec<String>, StoreError> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(io_at(&self.root))? {
            let entry = entry.map_err(io_at(&self.root))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let is_plugin = crate::config::validate_plugin_name(&name).is_ok()
                && entry.path().join(MANIFEST_FILE).is_file();
            if is_plugin {
                names.push(name);
            }
            if names.len() > PLUGINS_MAX {
                break;
            }
        }
        names.sort();
        Ok(names)
    }

    fn write_manifest(&self, dir: &Path, manifest: &Manifest) -> Result<(), StoreError> {
        let text = serde_json::to_vec_pretty(manifest).expect("a manifest always serializes");
        write_atomically(dir, MANIFEST_FILE, &text)
    }

    /// Deletes stored versions of `name` that its manifest does not name:
    /// left over by a crash between saving and activating. Call at start-up,
    /// before anything saves. Best effort: a leftover file wastes space but
    /// breaks nothing.
    pub fn delete_strays(&self, name: &str) -> Result<(), StoreError> {
        let dir = self.plugin_dir(name)?;
        let Some(manifest) = self.manifest(name)? else {
            return Ok(());
        };
        for entry in fs::read_dir(&dir).map_err(io_at(&dir))?.flatten() {
            let file_name = entry.file_name();
            let Some(version) = file_name
                .to_str()
                .and_then(|f| f.strip_suffix(COMPONENT_SUFFIX))
            else {
                continue;
            };
            if is_version(version) {
                delete_if_unreferenced(&dir, version, &manifest);
            }
        }
        Ok(())
    }
}

/// Deletes the drop-in file `<plugin_dir>/<name>.wasm` (a link of that
/// name itself, never what it points to), so that a deleted plugin does
/// not come back from it at the next start. `Ok(true)` when there was one;
/// the error says which file could not be removed and why.
pub fn remove_drop_in(plugin_dir: &Path, name: &str) -> Result<bool, String> {
    crate::config::validate_plugin_name(name)?;
    let path = plugin_dir.join(format!("{name}{COMPONENT_SUFFIX}"));
    match fs::remove_file(&path) {
        Ok(()) => {
            sync_dir(plugin_dir).map_err(|e| e.to_string())?;
            Ok(true)
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(format!(
            "cannot remove the plugin's drop-in file {} ({error}); remove it by hand, \
             or the plugin comes back at the next start",
            path.display()
        )),
    }
}

fn delete_if_unreferenced(dir: &Path, version: &str, manifest: &Manifest) {
    if manifest.references(version) {
        return;
    }
    let path = dir.join(format!("{version}{COMPONENT_SUFFIX}"));
    if let Err(error) = fs::remove_file(&path)
        && error.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(%error, file = %path.display(), "cannot delete old plugin version");
    }
}

/// Writes `dir/file_name` so that a crash leaves either the old file or the
/// complete new one: temporary file, fsync, rename, fsync of the directory.
pub fn write_atomically(dir: &Path, file_name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    let final_path = dir.join(file_name);
    let tmp_path = dir.join(format!("{file_name}{TMP_SUFFIX}"));
    let mut file = File::create(&tmp_path).map_err(io_at(&tmp_path))?;
    file.write_all(bytes).map_err(io_at(&tmp_path))?;
    file.sync_all().map_err(io_at(&tmp_path))?;
    drop(file);
    fs::rename(&tmp_path, &final_path).map_err(io_at(&final_path))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_at(dir))
}

/// Reads a file, refusing it if it is larger than `bytes_max`.
fn read_bounded(path: &Path, bytes_max: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let file = File::open(path)?;
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

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, PluginStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = PluginStore::open(dir.path().join("plugins")).unwrap();
        (dir, store)
    }

    #[test]
    fn save_is_content_addressed_and_idempotent() {
        let (_dir, store) = store();
        let first = store.save("retry", b"v1").unwrap();
        assert_eq!(first, version_of(b"v1"));
        assert_eq!(store.save("retry", b"v1").unwrap(), first);
        assert_eq!(store.load("retry", &first).unwrap(), b"v1");
        assert_eq!(
            store.manifest("retry").unwrap(),
            None,
            "saving does not activate"
        );
    }

    #[test]
    fn activate_keeps_a_bounded_history() {
        let (_dir, store) = store();
        let blobs: Vec<Vec<u8>> = (0..HISTORY_MAX + 2)
            .map(|i| format!("v{i}").into_bytes())
            .collect();
        let versions: Vec<_> = blobs
            .iter()
            .map(|b| store.save("retry", b).unwrap())
            .collect();
        for version in &versions {
            store.activate("retry", version).unwrap();
        }
        let manifest = store.manifest("retry").unwrap().unwrap();
        let newest = versions.len() - 1;
        assert_eq!(manifest.current, versions[newest]);
        assert_eq!(manifest.previous.len(), HISTORY_MAX);
        assert_eq!(
            manifest.previous[0],
            versions[newest - 1],
            "newest previous first"
        );
        assert!(
            store.load("retry", &versions[0]).is_err(),
            "the oldest version was deleted"
        );
        let stray = store.save("retry", b"crashed before activation").unwrap();
        store.delete_strays("retry").unwrap();
        assert!(
            store.load("retry", &stray).is_err(),
            "strays are deleted at start-up"
        );
        assert!(store.load("retry", &versions[newest - 1]).is_ok());
        assert_eq!(store.names().unwrap(), vec!["retry".to_string()]);
    }

    #[test]
    fn reactivating_a_version_moves_it_to_the_front() {
        let (_dir, store) = store();
        let v1 = store.save("p", b"v1").unwrap();
        let v2 = store.save("p", b"v2").unwrap();
        store.activate("p", &v1).unwrap();
        store.activate("p", &v2).unwrap();
        assert_eq!(
            store.activate("p", &v2).unwrap().previous,
            vec![v1.clone()],
            "current again: no-op"
        );
        let manifest = store.activate("p", &v1).unwrap();
        assert_eq!((manifest.current, manifest.previous), (v1, vec![v2]));
    }

    #[test]
    fn rollback_steps_back_and_drops_what_it_left() {
        let (_dir, store) = store();
        let v1 = store.save("p", b"v1").unwrap();
        store.activate("p", &v1).unwrap();
        assert!(matches!(
            store.rollback("p"),
            Err(StoreError::NoPrevious { .. })
        ));
        let v2 = store.save("p", b"v2").unwrap();
        store.activate("p", &v2).unwrap();
        let manifest = store.rollback("p").unwrap();
        assert_eq!(
            (manifest.current.as_str(), manifest.previous.len()),
            (v1.as_str(), 0)
        );
        assert!(
            store.load("p", &v2).is_err(),
            "the version rolled back from is gone"
        );
        assert!(matches!(
            store.rollback("p"),
            Err(StoreError::NoPrevious { .. })
        ));
        assert!(matches!(
            store.rollback("nope"),
            Err(StoreError::NotStored { .. })
        ));
    }

    #[test]
    fn corrupt_components_are_detected() {
        let (_dir, store) = store();
        let v1 = store.save("p", b"v1").unwrap();
        fs::write(
            store.root().join("p").join(format!("{v1}.wasm")),
            b"tampered",
        )
        .unwrap();
        assert!(matches!(
            store.load("p", &v1),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(
            store.load("p", "../../etc/passwd"),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn bad_names_never_touch_the_disk() {
        let (dir, store) = store();
        for name in ["../escape", "a/b", "", "UPPER", &"x".repeat(65)] {
            assert!(
                matches!(store.save(name, b"x"), Err(StoreError::BadName { .. })),
                "{name:?}"
            );
        }
        assert!(!dir.path().join("escape").exists());
    }

    #[test]
    fn oversized_components_are_refused() {
        let (_dir, store) = store();
        let big = vec![0u8; COMPONENT_BYTES_MAX as usize + 1];
        assert!(matches!(
            store.save("p", &big),
            Err(StoreError::TooLarge { .. })
        ));
    }

    #[test]
    fn remove_deletes_everything() {
        let (_dir, store) = store();
        let v1 = store.save("p", b"v1").unwrap();
        store.activate("p", &v1).unwrap();
        store.remove("p").unwrap();
        store.remove("p").unwrap();
        assert_eq!(store.manifest("p").unwrap(), None);
        assert!(store.names().unwrap().is_empty());
    }

    #[test]
    fn remove_drop_in_deletes_the_file_or_a_link_but_not_its_target() {
        let (dir, store) = store();
        let plugin_dir = store.root();
        fs::write(plugin_dir.join("p.wasm"), b"drop-in").unwrap();
        assert_eq!(remove_drop_in(plugin_dir, "p"), Ok(true));
        assert!(!plugin_dir.join("p.wasm").exists());
        assert_eq!(remove_drop_in(plugin_dir, "p"), Ok(false));
        let target = dir.path().join("target.wasm");
        fs::write(&target, b"elsewhere").unwrap();
        std::os::unix::fs::symlink(&target, plugin_dir.join("l.wasm")).unwrap();
        assert_eq!(remove_drop_in(plugin_dir, "l"), Ok(true));
        assert!(target.exists(), "the link's target is untouched");
        assert!(remove_drop_in(plugin_dir, "../escape").is_err());
    }

    #[test]
    fn garbage_manifest_is_an_error_not_a_panic() {
        let (_dir, store) = store();
        fs::create_dir_all(store.root().join("p")).unwrap();
        fs::write(
            store.root().join("p").join(MANIFEST_FILE),
            b"{\"current\": \"../x\"}",
        )
        .unwrap();
        assert!(matches!(
            store.manifest("p"),
            Err(StoreError::BadManifest { .. })
        ));
    }

    #[test]
    fn drop_in_files_beside_the_store_are_not_plugins() {
        let (_dir, store) = store();
        fs::write(store.root().join("retry.wasm"), b"drop-in").unwrap();
        assert!(store.names().unwrap().is_empty());
    }
}
