//! [`Component`]: one compiled, validated plugin version.
//!
//! A version is the SHA-256 (hex) of the component's bytes, so the same
//! bytes are the same version whatever they are called. A [`Component`]
//! owns the compiled code and a pre-linked, type-checked instance template
//! of its world (`WorldPre`); binding it to a config
//! ([`Component::bind`]) creates the instance pool that serves calls.
//!
//! Quarantine lives here, on the version: when a bound plugin fails too
//! often in a row, the version stops being called until a new version is
//! bound (or an operator clears it), and the registry reports it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use wasmtime::component::Component as WasmComponent;

use crate::instance::WorldPre;
use crate::kind::PolicyKind;
use crate::tag::Tag;
use crate::validate::Shape;

/// Compiled code plus its template; shared by every [`Component`] with the
/// same version (the runtime's in-memory cache hands out the same one).
pub(crate) struct Compiled {
    pub(crate) code: WasmComponent,
    pub(crate) pre: WorldPre,
    pub(crate) shape: Shape,
    /// Time spent producing `code` (compiling or loading from disk).
    pub(crate) compile_ms: f64,
}

/// Where a [`Component`]'s compiled code came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum CacheOutcome {
    /// The same version was already loaded in this process.
    Memory,
    /// Loaded from the verified on-disk cache: no compilation.
    Disk,
    /// Compiled; there was no cache entry.
    Miss,
    /// Compiled; a cache entry existed but was refused (tampered with,
    /// foreign, truncated, or from an incompatible engine) and has been
    /// overwritten.
    Rejected { reason: String },
    /// Compiled; the runtime has no cache directory.
    Disabled,
}

impl CacheOutcome {
    /// True when no compilation was needed.
    pub fn is_hit(&self) -> bool {
        matches!(self, CacheOutcome::Memory | CacheOutcome::Disk)
    }
}

/// One loaded plugin version. Create with [`crate::Runtime::compile`].
pub struct Component {
    name: Tag,
    version: Tag,
    size_bytes: usize,
    cache: CacheOutcome,
    loaded_at_unix_ms: u64,
    compiled: Arc<Compiled>,
    quarantined: AtomicBool,
    quarantine_reason: Mutex<Option<String>>,
}

/// A serializable description of a [`Component`], for the admin API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComponentInfo {
    pub name: String,
    /// SHA-256 of the component bytes, hex.
    pub version: String,
    /// World name, e.g. `retry-policy`.
    pub kind: PolicyKind,
    pub size_bytes: usize,
    pub compile_ms: f64,
    pub cache: CacheOutcome,
    pub loaded_at_unix_ms: u64,
    pub exports: Vec<String>,
    pub imports: Vec<String>,
    pub quarantined: bool,
    pub quarantine_reason: Option<String>,
}

impl Component {
    pub(crate) fn new(
        name: &str,
        version: Arc<str>,
        size_bytes: usize,
        cache: CacheOutcome,
        loaded_at_unix_ms: u64,
        compiled: Arc<Compiled>,
    ) -> Component {
        Component {
            name: Tag::intern(name),
            version: Tag::intern(&version),
            size_bytes,
            cache,
            loaded_at_unix_ms,
            compiled,
            quarantined: AtomicBool::new(false),
            quarantine_reason: Mutex::new(None),
        }
    }

    /// The name it was loaded under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// SHA-256 of the bytes, lower-case hex.
    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn kind(&self) -> PolicyKind {
        self.compiled.shape.kind
    }

    pub fn size_bytes(&self) -> usize {
        self.size_bytes
    }

    /// Milliseconds spent compiling (or loading from the disk cache); 0
    /// for an in-memory hit.
    pub fn compile_ms(&self) -> f64 {
        match self.cache {
            CacheOutcome::Memory => 0.0,
            _ => self.compiled.compile_ms,
        }
    }

    pub fn cache(&self) -> &CacheOutcome {
        &self.cache
    }

    pub fn cache_hit(&self) -> bool {
        self.cache.is_hit()
    }

    pub fn loaded_at_unix_ms(&self) -> u64 {
        self.loaded_at_unix_ms
    }

    /// Export names as they appear in the component's type.
    pub fn exports(&self) -> &[String] {
        &self.compiled.shape.exports
    }

    /// Import names as they appear in the component's type.
    pub fn imports(&self) -> &[String] {
        &self.compiled.shape.imports
    }

    pub fn is_quarantined(&self) -> bool {
        self.quarantined.load(Ordering::Acquire)
    }

    pub fn quarantine_reason(&self) -> Option<String> {
        self.quarantine_reason
            .lock()
            .ok()
            .and_then(|reason| reason.clone())
    }

    /// Stops calls to this version; returns false if it already was.
    pub fn quarantine(&self, reason: &str) -> bool {
        if let Ok(mut slot) = self.quarantine_reason.lock() {
            slot.get_or_insert_with(|| reason.to_string());
        }
        !self.quarantined.swap(true, Ordering::AcqRel)
    }

    /// Lets this version be called again (an operator's decision).
    pub fn clear_quarantine(&self) {
        self.quarantined.store(false, Ordering::Release);
        if let Ok(mut slot) = self.quarantine_reason.lock() {
            *slot = None;
        }
    }

    pub fn info(&self) -> ComponentInfo {
        ComponentInfo {
            name: self.name.to_string(),
            version: self.version.to_string(),
            kind: self.kind(),
            size_bytes: self.size_bytes,
            compile_ms: self.compile_ms(),
            cache: self.cache.clone(),
            loaded_at_unix_ms: self.loaded_at_unix_ms,
            exports: self.exports().to_vec(),
            imports: self.imports().to_vec(),
            quarantined: self.is_quarantined(),
            quarantine_reason: self.quarantine_reason(),
        }
    }

    pub(crate) fn compiled(&self) -> &Arc<Compiled> {
        &self.compiled
    }

    /// The name, as answers carry it.
    pub fn name_tag(&self) -> Tag {
        self.name
    }

    /// The version, as answers carry it.
    pub fn version_tag(&self) -> Tag {
        self.version
    }
}

impl std::fmt::Debug for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Component")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("kind", &self.kind())
            .field("size_bytes", &self.size_bytes)
            .field("cache", &self.cache)
            .field("quarantined", &self.is_quarantined())
            .finish_non_exhaustive()
    }
}
