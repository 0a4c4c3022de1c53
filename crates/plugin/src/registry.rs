//! [`Registry`]: the named plugins of this process and their versions.
//!
//! A name maps to its current [`Component`] plus a bounded history of
//! previous versions (for [`Registry::rollback`]), a status, and the last
//! load error. It is in memory only and knows nothing of services: the
//! control plane persists components, binds them to services
//! ([`Component::bind`] + `policy.bind`) and watches the drop-in directory
//! on top of these methods.
//!
//! Status, as reported by [`Registry::list`]:
//! - `failed` when no version loaded yet, or the latest load attempt
//!   failed (the current version, if any, keeps serving; see
//!   `last_error`);
//! - `quarantined` when the current version is quarantined;
//! - `active` otherwise.
//!
//! **Only loaded plugins take a slot.** At most `plugins_max` names hold a
//! version; a name whose loads all failed is kept only to report its
//! `failed` status and `last_error`, in a separate pool of at most
//! [`FAILED_NAMES_MAX`] where the oldest failure is forgotten first. So a
//! stream of bad uploads or drop-ins under fresh names can neither fill
//! the registry nor grow it without bound.
//!
//! Installing is **blocking** (it compiles); call it from
//! `spawn_blocking`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::Serialize;

use crate::component::{Component, ComponentInfo};
use crate::env::unix_now_ms;
use crate::error::{LoadError, RegistryError};
use crate::kind::PolicyKind;
use crate::runtime::Runtime;

/// Default previous versions kept per name.
pub const HISTORY_MAX_DEFAULT: usize = 3;
/// Default number of names.
pub const PLUGINS_MAX_DEFAULT: usize = 256;
/// Names kept only for a failed load (no version): the oldest is forgotten
/// beyond this.
pub const FAILED_NAMES_MAX: usize = 64;
/// Longest plugin name.
pub const NAME_BYTES_MAX: usize = 64;
/// Bytes of a recorded error message kept.
const ERROR_BYTES_MAX: usize = 2048;

/// Health of a named plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginStatus {
    Active,
    Quarantined,
    Failed,
}

/// What [`Registry::list`] reports per name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginInfo {
    pub name: String,
    pub status: PluginStatus,
    /// The serving version, if any loaded.
    pub current: Option<ComponentInfo>,
    /// Previous versions, newest first.
    pub previous_versions: Vec<String>,
    /// The latest load failure, cleared by a successful load.
    pub last_error: Option<String>,
    pub last_error_at_unix_ms: Option<u64>,
}

struct Entry {
    current: Option<Arc<Component>>,
    /// Newest first; at most `history_max`.
    previous: VecDeque<Arc<Component>>,
    last_error: Option<(String, u64)>,
}

impl Entry {
    fn empty() -> Entry {
        Entry {
            current: None,
            previous: VecDeque::new(),
            last_error: None,
        }
    }

    /// Whether this name holds one of the registry's `plugins_max` slots:
    /// only a loaded version does.
    fn holds_slot(&self) -> bool {
        self.current.is_some()
    }

    fn status(&self) -> PluginStatus {
        match &self.current {
            None => PluginStatus::Failed,
            Some(current) if current.is_quarantined() => PluginStatus::Quarantined,
            Some(_) if self.last_error.is_some() => PluginStatus::Failed,
            Some(_) => PluginStatus::Active,
        }
    }

    /// Makes `component` current; the old current becomes the newest
    /// previous version. Re-installing the current version is a no-op.
    fn promote(&mut self, component: Arc<Component>, history_max: usize) {
        self.last_error = None;
        if self
            .current
            .as_ref()
            .is_some_and(|current| current.version() == component.version())
        {
            return;
        }
        self.previous
            .retain(|old| old.version() != component.version());
        if let Some(old) = self.current.replace(component) {
            self.previous.push_front(old);
        }
        self.previous.truncate(history_max);
    }
}

/// Named plugins and their versions. Share it behind an `Arc`.
pub struct Registry {
    runtime: Runtime,
    entries: RwLock<BTreeMap<String, Entry>>,
    history_max: usize,
    plugins_max: usize,
}

impl Registry {
    pub fn new(runtime: Runtime) -> Registry {
        Registry::with_bounds(runtime, HISTORY_MAX_DEFAULT, PLUGINS_MAX_DEFAULT)
    }

    /// `history_max` previous versions per name, `plugins_max` names.
    pub fn with_bounds(runtime: Runtime, history_max: usize, plugins_max: usize) -> Registry {
        assert!(plugins_max > 0, "a registry that can hold nothing is a bug");
        Registry {
            runtime,
            entries: RwLock::new(BTreeMap::new()),
            history_max,
            plugins_max,
        }
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Checks a plugin name: `[a-z0-9_-]{1,64}` (names become file names).
    pub fn validate_name(name: &str) -> Result<(), RegistryError> {
        let valid = !name.is_empty()
            && name.len() <= NAME_BYTES_MAX
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if valid {
            Ok(())
        } else {
            Err(RegistryError::InvalidName(
                name.chars().take(NAME_BYTES_MAX).collect(),
            ))
        }
    }

    /// Compiles `bytes` and makes it `name`'s current version. On failure
    /// the current version (if any) stays and the error is recorded.
    /// **Blocking.**
    pub fn install(&self, name: &str, bytes: &[u8]) -> Result<Arc<Component>, RegistryError> {
        self.install_checked(name, |runtime| runtime.compile(name, bytes))
    }

    /// Like [`Registry::install`], refusing a component of another kind.
    pub fn install_as(
        &self,
        name: &str,
        bytes: &[u8],
        kind: PolicyKind,
    ) -> Result<Arc<Component>, RegistryError> {
        self.install_checked(name, |runtime| runtime.compile_as(name, bytes, kind))
    }

    /// Makes an already compiled (and, by the caller, validated) component
    /// `name`'s current version. For callers that must check a new version
    /// against its bound services before it becomes current.
    pub fn install_component(
        &self,
        component: Arc<Component>,
    ) -> Result<Arc<Component>, RegistryError> {
        let name = component.name().to_string();
        self.install_checked(&name, |_| Ok(component))
    }

    fn install_checked(
        &self,
        name: &str,
        load: impl FnOnce(&Runtime) -> Result<Arc<Component>, LoadError>,
    ) -> Result<Arc<Component>, RegistryError> {
        Registry::validate_name(name)?;
        self.check_room(&self.read(), name)?;
        match load(&self.runtime) {
            Ok(component) => {
                let mut entries = self.write();
                self.check_room(&entries, name)?;
                entries
                    .entry(name.to_string())
                    .or_insert_with(Entry::empty)
                    .promote(component.clone(), self.history_max);
                Ok(component)
            }
            Err(error) => {
                self.record_failure(name, &error.to_string());
                Err(error.into())
            }
        }
    }

    /// Refuses a new version of `name` when every slot is held by another
    /// loaded plugin.
    fn check_room(
        &self,
        entries: &BTreeMap<String, Entry>,
        name: &str,
    ) -> Result<(), RegistryError> {
        let holds_slot = entries.get(name).is_some_and(Entry::holds_slot);
        if !holds_slot && loaded(entries) >= self.plugins_max {
            return Err(RegistryError::Full {
                max: self.plugins_max,
            });
        }
        Ok(())
    }

    /// Records a failed load of `name` (e.g. the control plane refused a
    /// new version because a bound service's config was rejected). The
    /// current version keeps serving; the status becomes `failed`. A name
    /// with no version is kept in the failed pool (see the module doc).
    pub fn record_failure(&self, name: &str, error: &str) {
        if Registry::validate_name(name).is_err() {
            return;
        }
        let message = crate::host::truncate_to_char_boundary(error, ERROR_BYTES_MAX).to_string();
        let last_error = Some((message, unix_now_ms()));
        let mut entries = self.write();
        if let Some(entry) = entries.get_mut(name) {
            entry.last_error = last_error;
            return;
        }
        if entries.len() - loaded(&entries) >= FAILED_NAMES_MAX {
            forget_oldest_failure(&mut entries);
        }
        let mut entry = Entry::empty();
        entry.last_error = last_error;
        entries.insert(name.to_string(), entry);
    }

    /// The current version of `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Component>> {
        self.read()
            .get(name)
            .and_then(|entry| entry.current.clone())
    }

    /// A specific version of `name`: current or one of the previous ones.
    pub fn get_version(&self, name: &str, version: &str) -> Option<Arc<Component>> {
        let entries = self.read();
        let entry = entries.get(name)?;
        entry
            .current
            .iter()
            .chain(entry.previous.iter())
            .find(|c| c.version() == version)
            .cloned()
    }

    /// Every name, sorted.
    pub fn list(&self) -> Vec<PluginInfo> {
        self.read()
            .iter()
            .map(|(name, entry)| info(name, entry))
            .collect()
    }

    pub fn info(&self, name: &str) -> Option<PluginInfo> {
        self.read().get(name).map(|entry| info(name, entry))
    }

    /// Makes the newest previous version current again (and clears its
    /// quarantine: rolling back is binding it anew). The version rolled
    /// back from is dropped from the history.
    pub fn rollback(&self, name: &str) -> Result<Arc<Component>, RegistryError> {
        let mut entries = self.write();
        let entry = entries
            .get_mut(name)
            .ok_or_else(|| RegistryError::NotFound(name.to_string()))?;
        let previous = entry
            .previous
            .pop_front()
            .ok_or_else(|| RegistryError::NoPreviousVersion(name.to_string()))?;
        previous.clear_quarantine();
        entry.current = Some(previous.clone());
        entry.last_error = None;
        Ok(previous)
    }

    /// Forgets `name` and its history; returns the current version.
    pub fn remove(&self, name: &str) -> Result<Option<Arc<Component>>, RegistryError> {
        self.write()
            .remove(name)
            .map(|entry| entry.current)
            .ok_or_else(|| RegistryError::NotFound(name.to_string()))
    }

    /// Loaded plugins: the names holding a slot (failed-only names aside).
    pub fn len(&self) -> usize {
        loaded(&self.read())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The map holds plain data; a panic elsewhere cannot break it.
    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<String, Entry>> {
        self.entries
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<String, Entry>> {
        self.entries
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Names holding a slot.
fn loaded(entries: &BTreeMap<String, Entry>) -> usize {
    entries.values().filter(|entry| entry.holds_slot()).count()
}

/// Drops the failed-only name whose failure is the oldest.
fn forget_oldest_failure(entries: &mut BTreeMap<String, Entry>) {
    let oldest = entries
        .iter()
        .filter(|(_, entry)| !entry.holds_slot())
        .min_by_key(|(_, entry)| entry.last_error.as_ref().map_or(0, |(_, at)| *at))
        .map(|(name, _)| name.clone());
    if let Some(name) = oldest {
        entries.remove(&name);
    }
}

fn info(name: &str, entry: &Entry) -> PluginInfo {
    PluginInfo {
        name: name.to_string(),
        status: entry.status(),
        current: entry.current.as_ref().map(|current| current.info()),
        previous_versions: entry
            .previous
            .iter()
            .map(|old| old.version().to_string())
            .collect(),
        last_error: entry
            .last_error
            .as_ref()
            .map(|(message, _)| message.clone()),
        last_error_at_unix_ms: entry.last_error.as_ref().map(|(_, at)| *at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        for good in ["a", "retry-backoff", "x_1", &"a".repeat(64)] {
            Registry::validate_name(good).unwrap();
        }
        for bad in ["", "A", "a/b", "..", "a.wasm", "é", &"a".repeat(65)] {
            assert!(Registry::validate_name(bad).is_err(), "{bad:?}");
        }
    }
}
