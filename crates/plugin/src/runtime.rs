//! [`Runtime`]: the engine, its epoch ticker, the linker with the `host`
//! import, and the compiled-code caches. One per process; cheap to clone.
//!
//! # Blocking
//! [`Runtime::compile`] (and [`crate::Component::bind`], which
//! instantiates) are blocking and can take tens to hundreds of
//! milliseconds on a cache miss: call them from `spawn_blocking` or a
//! dedicated thread, never on an async worker. Policy calls, by contrast,
//! are microseconds, bounded by the per-call deadline, and may be made
//! directly from async request handlers.
//!
//! # Caches
//! Compiling the same bytes twice is avoided twice over: in memory (a map
//! from version to the live compiled code, held weakly so unloaded
//! versions are freed) and on disk (the `cache` module, when
//! [`RuntimeOptions::cache_dir`] is set), which is what makes a restart
//! skip compilation.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::{Component as WasmComponent, HasSelf, Linker};

use crate::bindings;
use crate::cache::{DiskCache, Lookup};
use crate::component::{CacheOutcome, Compiled, Component};
use crate::engine::deadline_ticks;
use crate::engine::{EngineCaps, EpochTicker, build_engine};
use crate::env::{HostEnv, unix_now_ms};
use crate::error::{Failure, LoadError, RuntimeError};
use crate::headers::HeaderAllowlist;
use crate::host::{HostState, PluginTag, fenced_store};
use crate::instance::{WorldPre, classify, is_guest_fault};
use crate::kind::PolicyKind;
use crate::limits::Limits;
use crate::validate;

/// Default bound on the size of a component's bytes.
pub const COMPONENT_BYTES_MAX_DEFAULT: usize = 32 * 1024 * 1024;
/// Deadline of the load-time trial instantiation.
const TRIAL_TIMEOUT_MS: u32 = 1_000;
/// Name of the cache directory inside levee's data directory.
pub const CACHE_DIR_NAME: &str = "plugin-cache";

/// How to build a [`Runtime`].
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Where compiled code is cached (`<data_dir>/plugin-cache`); `None`
    /// disables the disk cache.
    pub cache_dir: Option<PathBuf>,
    /// Entries kept in the disk cache; the oldest are evicted.
    pub cache_entries_max: usize,
    /// Period of the epoch ticker, which is the granularity of call
    /// deadlines (1..=100).
    pub epoch_tick_ms: u32,
    /// Largest component accepted, in bytes.
    pub component_bytes_max: usize,
    /// Process-wide ceilings of the pooling allocator.
    pub caps: EngineCaps,
    /// The clock and random source plugins and native policies see.
    pub env: HostEnv,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            cache_dir: None,
            cache_entries_max: 256,
            epoch_tick_ms: 1,
            component_bytes_max: COMPONENT_BYTES_MAX_DEFAULT,
            caps: EngineCaps::default(),
            env: HostEnv::default(),
        }
    }
}

impl RuntimeOptions {
    /// Defaults with the disk cache in `<data_dir>/plugin-cache`.
    pub fn for_data_dir(data_dir: &Path) -> RuntimeOptions {
        RuntimeOptions {
            cache_dir: Some(data_dir.join(CACHE_DIR_NAME)),
            ..RuntimeOptions::default()
        }
    }

    fn validate(&self) -> Result<(), RuntimeError> {
        let invalid = |what: String| Err(RuntimeError::InvalidOptions(what));
        if !(1..=100).contains(&self.epoch_tick_ms) {
            return invalid(format!(
                "epoch_tick_ms is {}, must be within 1..=100",
                self.epoch_tick_ms
            ));
        }
        if !(1..=100_000).contains(&self.cache_entries_max) {
            return invalid(format!(
                "cache_entries_max is {}, must be within 1..=100000",
                self.cache_entries_max
            ));
        }
        if !(1..=512 * 1024 * 1024).contains(&self.component_bytes_max) {
            return invalid(format!(
                "component_bytes_max is {}, must be within 1..=512 MiB",
                self.component_bytes_max
            ));
        }
        Ok(())
    }
}

/// The plugin runtime. Clones share everything.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    engine: Engine,
    linker: Linker<HostState>,
    disk_cache: Option<DiskCache>,
    /// Live compiled code by version; entries die with their last user.
    loaded: Mutex<HashMap<Arc<str>, Weak<Compiled>>>,
    epoch_tick_ms: u32,
    component_bytes_max: usize,
    caps: EngineCaps,
    env: HostEnv,
    _ticker: EpochTicker,
}

impl Runtime {
    /// Builds the engine, starts the epoch ticker and opens the disk cache.
    pub fn new(options: RuntimeOptions) -> Result<Runtime, RuntimeError> {
        options.validate()?;
        let engine = build_engine(&options.caps)?;
        let mut linker = Linker::new(&engine);
        // Every world imports the same `host` (and `types`); linking the
        // retry world's imports serves all three.
        bindings::retry::RetryPolicy::add_to_linker::<HostState, HasSelf<HostState>>(
            &mut linker,
            |state| state,
        )
        .map_err(|e| RuntimeError::Engine(format!("linking the host interface: {e:#}")))?;
        crate::wasi::add_to_linker(&mut linker)
            .map_err(|e| RuntimeError::Engine(format!("linking WASI: {e:#}")))?;
        let disk_cache = match &options.cache_dir {
            Some(dir) => Some(
                DiskCache::open(dir, &engine, options.cache_entries_max).map_err(|source| {
                    RuntimeError::Cache {
                        path: dir.clone(),
                        source,
                    }
                })?,
            ),
            None => None,
        };
        let ticker = EpochTicker::start(engine.clone(), options.epoch_tick_ms)?;
        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                engine,
                linker,
                disk_cache,
                loaded: Mutex::new(HashMap::new()),
                epoch_tick_ms: options.epoch_tick_ms,
                component_bytes_max: options.component_bytes_max,
                caps: options.caps,
                env: options.env,
                _ticker: ticker,
            }),
        })
    }

    /// Validates and compiles (or fetches from a cache) a component of any
    /// policy kind. **Blocking.**
    pub fn compile(&self, name: &str, bytes: &[u8]) -> Result<Arc<Component>, LoadError> {
        validate::check_header(bytes, self.inner.component_bytes_max)?;
        let version: Arc<str> = hex::encode(Sha256::digest(bytes)).into();
        let (compiled, cache) = match self.loaded(&version) {
            Some(compiled) => (compiled, CacheOutcome::Memory),
            None => self.load_or_compile(&version, bytes)?,
        };
        Ok(Arc::new(Component::new(
            name,
            version,
            bytes.len(),
            cache,
            unix_now_ms(),
            compiled,
        )))
    }

    /// Like [`Runtime::compile`], but refuses a component that does not
    /// implement the world of `expected`. **Blocking.**
    pub fn compile_as(
        &self,
        name: &str,
        bytes: &[u8],
        expected: PolicyKind,
    ) -> Result<Arc<Component>, LoadError> {
        let component = self.compile(name, bytes)?;
        validate::expect_kind(&component.compiled().shape, expected)?;
        Ok(component)
    }

    fn loaded(&self, version: &str) -> Option<Arc<Compiled>> {
        self.inner
            .loaded
            .lock()
            .ok()?
            .get(version)
            .and_then(Weak::upgrade)
    }

    fn remember(&self, version: &Arc<str>, compiled: &Arc<Compiled>) {
        if let Ok(mut loaded) = self.inner.loaded.lock() {
            // Drop dead entries so the map is bounded by the live versions.
            loaded.retain(|_, weak| weak.strong_count() > 0);
            loaded.insert(version.clone(), Arc::downgrade(compiled));
        }
    }

    /// The disk cache, then compilation; validates either way.
    fn load_or_compile(
        &self,
        version: &Arc<str>,
        bytes: &[u8],
    ) -> Result<(Arc<Compiled>, CacheOutcome), LoadError> {
        let started = Instant::now();
        let (code, mut outcome) = match self
            .inner
            .disk_cache
            .as_ref()
            .map(|cache| cache.load(&self.inner.engine, version))
        {
            Some(Lookup::Hit(code)) => (code, CacheOutcome::Disk),
            Some(Lookup::Absent) => (self.compile_code(bytes)?, CacheOutcome::Miss),
            Some(Lookup::Rejected(reason)) => {
                tracing::warn!(version = %version, %reason, "plugin cache entry rejected; recompiling");
                (self.compile_code(bytes)?, CacheOutcome::Rejected { reason })
            }
            None => (self.compile_code(bytes)?, CacheOutcome::Disabled),
        };
        let compile_ms = started.elapsed().as_secs_f64() * 1e3;
        let compiled = Arc::new(self.prepare(code, compile_ms)?);
        if matches!(outcome, CacheOutcome::Miss | CacheOutcome::Rejected { .. }) {
            self.write_cache_entry(version, &compiled.code, &mut outcome);
        }
        self.remember(version, &compiled);
        Ok((compiled, outcome))
    }

    fn compile_code(&self, bytes: &[u8]) -> Result<WasmComponent, LoadError> {
        WasmComponent::new(&self.inner.engine, bytes)
            .map_err(|e| LoadError::Invalid(format!("{e:#}")))
    }

    /// Validates the shape, links the imports and type-checks the world.
    fn prepare(&self, code: WasmComponent, compile_ms: f64) -> Result<Compiled, LoadError> {
        let shape = validate::shape(&self.inner.engine, &code)?;
        let instance_pre = self
            .inner
            .linker
            .instantiate_pre(&code)
            .map_err(|e| LoadError::type_mismatch(shape.kind, &e))?;
        let pre = WorldPre::new(shape.kind, instance_pre)?;
        self.trial_instantiate(shape.kind, &pre)?;
        Ok(Compiled {
            code,
            pre,
            shape,
            compile_ms,
        })
    }

    /// Instantiates once in a throwaway store, under engine-wide limits
    /// and a load-time deadline. This is where wasmtime type-checks each
    /// export function, so a component with the right export names but the
    /// wrong signatures is refused at load rather than at its first bind; a
    /// component whose start code traps or loops is refused too.
    fn trial_instantiate(&self, kind: PolicyKind, pre: &WorldPre) -> Result<(), LoadError> {
        let caps = &self.inner.caps;
        let limits = Limits {
            configure_timeout_ms: TRIAL_TIMEOUT_MS,
            memory_bytes_max: caps.memory_bytes_max,
            table_elements_max: caps.table_elements_max,
            instances_max: caps.core_instances_per_component_max,
            memories_max: caps.memories_per_component_max,
            tables_max: caps.tables_per_component_max,
            ..Limits::default()
        };
        let tag = Arc::new(PluginTag {
            name: "load-check".into(),
            version: "".into(),
        });
        let env = self.inner.env.clone();
        let headers = HeaderAllowlist::none();
        let state = HostState::new(tag, env, Arc::default(), &limits, headers);
        let mut store = fenced_store(&self.inner.engine, state, &limits);
        store.set_epoch_deadline(deadline_ticks(TRIAL_TIMEOUT_MS, self.inner.epoch_tick_ms));
        store.data_mut().begin_call();
        match pre.instantiate(&mut store) {
            Ok(_) => Ok(()),
            Err(e) => match classify(&store, &e) {
                // A full engine says nothing about the component's types.
                failure @ Failure::HostCapacity(_) => {
                    Err(LoadError::Instantiate(failure.to_string()))
                }
                failure if is_guest_fault(&store, &e) => {
                    Err(LoadError::Instantiate(failure.to_string()))
                }
                _ => Err(LoadError::type_mismatch(kind, &e)),
            },
        }
    }

    /// Only validated code is cached; a failed write costs a recompile on
    /// the next start, nothing more.
    fn write_cache_entry(&self, version: &str, code: &WasmComponent, outcome: &mut CacheOutcome) {
        let Some(cache) = &self.inner.disk_cache else {
            return;
        };
        if let Err(e) = cache.store(version, code) {
            tracing::warn!(version, dir = %cache.dir().display(), error = %e, "writing plugin cache entry failed");
        }
        debug_assert!(!outcome.is_hit());
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The clock and random source plugins and native policies see.
    pub fn env(&self) -> &HostEnv {
        &self.inner.env
    }

    /// The engine-wide ceilings every [`crate::Limits`] must fit in.
    pub fn caps(&self) -> &EngineCaps {
        &self.inner.caps
    }

    /// Granularity of call deadlines.
    pub fn epoch_tick_ms(&self) -> u32 {
        self.inner.epoch_tick_ms
    }

    /// The disk cache directory, when enabled.
    pub fn cache_dir(&self) -> Option<&Path> {
        self.inner.disk_cache.as_ref().map(DiskCache::dir)
    }

    /// The file that caches `version`'s compiled code, when enabled.
    pub fn cache_entry_path(&self, version: &str) -> Option<PathBuf> {
        let is_digest = version.len() == 64 && version.bytes().all(|b| b.is_ascii_hexdigit());
        self.inner
            .disk_cache
            .as_ref()
            .filter(|_| is_digest)
            .map(|cache| cache.entry_path(version))
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("epoch_tick_ms", &self.inner.epoch_tick_ms)
            .field("cache_dir", &self.cache_dir())
            .field("caps", &self.inner.caps)
            .finish_non_exhaustive()
    }
}
