//! The control plane's side of policy plugins: load a component (upload,
//! drop-in, rollback or restart), check it against every service bound to
//! it, persist it, and swap it in.
//!
//! # One path for every load
//! Whatever the source, a new version goes through [`PluginHost::install`]:
//! 1. **compile** (in `spawn_blocking`: tens to hundreds of milliseconds on a
//!    cache miss), which validates the component and finds its world;
//! 2. **check every binding**: each service whose `policies.<kind>.plugin`
//!    names the plugin must bind it with its own config; a world of the
//!    wrong kind or a `configure` that rejects the service's config refuses
//!    the whole load, naming the service;
//! 3. **persist** to the [`PluginStore`] (fsynced) before anything changes,
//!    so a version that served a request survives a crash;
//! 4. **swap** each binding's slot (an `ArcSwap` inside the guarded policy):
//!    a request in flight finishes on the version it loaded, new requests
//!    get the new one, and the old instances are dropped with the last
//!    request holding them.
//!
//! A plugin no service uses yet is compiled and validated only; its
//! `configure` first runs when a service binds it (`PUT /admin/services`),
//! and a refusal there is that request's 422.
//!
//! Any failure before step 4 leaves the previous version serving and is
//! recorded in the registry (`GET /admin/plugins` shows status `failed` and
//! `last_error`).
//!
//! # Ordering
//! Loads, rollbacks, deletions and service changes take one async mutex
//! ([`PluginHost::lock`]), so two uploads of the same plugin cannot
//! interleave their swaps, and a service rebuilt concurrently with a load
//! cannot end up bound to the version the load just replaced.

use std::sync::Arc;

use bytes::Bytes;
use levee_plugin::{
    BoundPlugin, Component, Limits, LoadError, PolicyKind, Registry, RegistryError,
};
use serde::Serialize;
use thiserror::Error;
use tokio::sync::{Mutex, MutexGuard};

use crate::base::metrics::{self, LoadSource};
use crate::cluster::directory::Directory;
use crate::cluster::service::Service;
use crate::config::ServiceSpec;
use crate::control::plugin_store::{PluginStore, StoreError};
use crate::policy::bind::{bind_policy, policy_refs};
use crate::replication::WritePlane;

/// Why a plugin operation was refused. Every message is safe to show the
/// operator and says exactly what is wrong.
#[derive(Debug, Error)]
pub enum PluginError {
    #[error("invalid plugin name {name:?}: {reason}")]
    BadName { name: String, reason: String },
    #[error("component is {component_bytes} bytes, more than the {limit_bytes} allowed")]
    TooLarge {
        component_bytes: u64,
        limit_bytes: u64,
    },
    /// Not a component, not a policy, forbidden imports, ...
    #[error("{0}")]
    Load(LoadError),
    /// A service bound to the plugin cannot use this version.
    #[error("service {service:?} ({kind} binding): {reason}")]
    Binding {
        service: String,
        kind: PolicyKind,
        reason: LoadError,
    },
    #[error("no plugin named {0:?}")]
    NotFound(String),
    #[error("plugin {name:?} is used by services [{}]; unbind it first", services.join(", "))]
    InUse { name: String, services: Vec<String> },
    #[error("plugin {0:?} has no previous version to roll back to")]
    NoPrevious(String),
    #[error("the plugin registry is full ({max} plugins)")]
    Full { max: usize },
    /// Storage or task failure: the detail is for the log.
    #[error("internal error: {0}")]
    Internal(String),
}

impl PluginError {
    /// True when the request itself was at fault (as opposed to levee).
    pub fn is_client_error(&self) -> bool {
        !matches!(self, PluginError::Internal(_))
    }
}

impl From<StoreError> for PluginError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::BadName { name, reason } => PluginError::BadName { name, reason },
            StoreError::TooLarge { component_bytes } => PluginError::TooLarge {
                component_bytes,
                limit_bytes: crate::control::plugin_store::COMPONENT_BYTES_MAX,
            },
            StoreError::NotStored { name } => PluginError::NotFound(name),
            StoreError::NoPrevious { name } => PluginError::NoPrevious(name),
            StoreError::Full => PluginError::Full {
                max: crate::control::plugin_store::PLUGINS_MAX,
            },
            other => PluginError::Internal(other.to_string()),
        }
    }
}

impl From<RegistryError> for PluginError {
    fn from(error: RegistryError) -> Self {
        match error {
            RegistryError::InvalidName(name) => PluginError::BadName {
                name,
                reason: "use 1 to 64 of a-z, 0-9, '_' and '-'".into(),
            },
            RegistryError::NotFound(name) => PluginError::NotFound(name),
            RegistryError::NoPreviousVersion(name) => PluginError::NoPrevious(name),
            RegistryError::Full { max } => PluginError::Full { max },
            RegistryError::Load(error) => PluginError::Load(error),
        }
    }
}

/// A successful load: what now serves.
#[derive(Debug, Clone, Serialize)]
pub struct Installed {
    pub name: String,
    /// SHA-256 of the component, hex.
    pub version: String,
    pub world: PolicyKind,
    /// Services now bound to this version.
    pub services: Vec<String>,
    /// False when this version was already current (nothing changed).
    pub changed: bool,
}

/// One service's use of a plugin: `services[name].policies.<kind>`.
#[derive(Clone)]
pub struct Binding {
    pub service: Arc<Service>,
    pub kind: PolicyKind,
    pub config_json: String,
    /// The binding's fence (`policies.<kind>.limits`).
    pub limits: Limits,
}

impl std::fmt::Debug for Binding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Binding")
            .field("service", &self.service.name())
            .field("kind", &self.kind)
            .finish()
    }
}

/// Plugins: the registry (in memory, compiled) and the store (on disk).
pub struct PluginHost {
    registry: Arc<Registry>,
    store: PluginStore,
    /// The services whose bindings a load checks and swaps.
    directory: Arc<Directory>,
    /// Holds the process's checkpoint policy.
    writes: Arc<WritePlane>,
    changes: Mutex<()>,
    upload_bytes_max: u64,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("store", &self.store.root())
            .finish_non_exhaustive()
    }
}

impl PluginHost {
    pub fn new(
        registry: Arc<Registry>,
        store: PluginStore,
        directory: Arc<Directory>,
        writes: Arc<WritePlane>,
        upload_bytes_max: u64,
    ) -> PluginHost {
        debug_assert!(upload_bytes_max <= crate::control::plugin_store::COMPONENT_BYTES_MAX);
        PluginHost {
            registry,
            store,
            directory,
            writes,
            changes: Mutex::new(()),
            upload_bytes_max,
        }
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The services this host binds plugins for.
    pub fn directory(&self) -> &Arc<Directory> {
        &self.directory
    }

    /// Swaps `bound` (from [`PluginHost::bind_for`]) into `service`.
    pub fn swap_into(
        &self,
        service: &Service,
        bound: Vec<(PolicyKind, Arc<BoundPlugin>)>,
    ) -> Result<(), LoadError> {
        let checkpoint = &self.writes.checkpoints.policy;
        for (kind, plugin) in bound {
            bind_policy(service, checkpoint, kind, Some(plugin))?;
        }
        Ok(())
    }

    pub fn store(&self) -> &PluginStore {
        &self.store
    }

    /// The largest component accepted by an upload.
    pub fn upload_bytes_max(&self) -> u64 {
        self.upload_bytes_max
    }

    /// Serializes control-plane changes (plugins and services).
    pub async fn lock(&self) -> MutexGuard<'_, ()> {
        self.changes.lock().await
    }

    /// Loads `bytes` as the new version of `name` and swaps it in for every
    /// bound service (see the module doc). Takes the change lock.
    pub async fn install(
        &self,
        name: &str,
        bytes: Bytes,
        source: LoadSource,
    ) -> Result<Installed, PluginError> {
        let _changes = self.lock().await;
        self.install_locked(name, bytes, source).await
    }

    /// [`PluginHost::install`] for a caller already holding the change lock.
    pub async fn install_locked(
        &self,
        name: &str,
        bytes: Bytes,
        source: LoadSource,
    ) -> Result<Installed, PluginError> {
        let outcome = self.try_install(name, bytes).await;
        self.record_outcome(name, source, &outcome);
        outcome
    }

    fn record_outcome(
        &self,
        name: &str,
        source: LoadSource,
        outcome: &Result<Installed, PluginError>,
    ) {
        metrics::plugin_load(name, source, outcome.is_ok());
        match outcome {
            Ok(installed) => tracing::info!(
                plugin = name,
                version = %installed.version,
                source = source.as_str(),
                services = ?installed.services,
                changed = installed.changed,
                "plugin loaded"
            ),
            Err(error) => {
                tracing::warn!(plugin = name, source = source.as_str(), %error, "plugin load refused");
                if !matches!(error, PluginError::BadName { .. }) {
                    self.registry.record_failure(name, &error.to_string());
                }
            }
        }
    }

    async fn try_install(&self, name: &str, bytes: Bytes) -> Result<Installed, PluginError> {
        check_name(name)?;
        if bytes.len() as u64 > self.upload_bytes_max {
            return Err(PluginError::TooLarge {
                component_bytes: bytes.len() as u64,
                limit_bytes: self.upload_bytes_max,
            });
        }
        let component = self.compile(name, bytes.clone()).await?;
        let bindings = bindings_of(&self.directory, name);
        let bound = bind_all(&self.registry, &component, &bindings).await?;
        let changed = self
            .registry
            .get(name)
            .is_none_or(|current| current.version() != component.version());
        self.persist(name, bytes).await?;
        self.registry.install_component(component.clone())?;
        swap_all(&self.writes, &bound)?;
        Ok(installed(&component, &bindings, changed))
    }

    async fn compile(&self, name: &str, bytes: Bytes) -> Result<Arc<Component>, PluginError> {
        let runtime = self.registry.runtime().clone();
        let name = name.to_string();
        tokio::task::spawn_blocking(move || runtime.compile(&name, &bytes))
            .await
            .map_err(|e| PluginError::Internal(format!("compile task: {e}")))?
            .map_err(PluginError::Load)
    }

    async fn persist(&self, name: &str, bytes: Bytes) -> Result<(), PluginError> {
        let store = self.store.clone();
        let name = name.to_string();
        tokio::task::spawn_blocking(move || {
            let version = store.save(&name, &bytes)?;
            store.activate(&name, &version).map(drop)
        })
        .await
        .map_err(|e| PluginError::Internal(format!("store task: {e}")))?
        .map_err(PluginError::from)
    }

    /// Makes the previous version current again, for every bound service.
    pub async fn rollback(&self, name: &str) -> Result<Installed, PluginError> {
        check_name(name)?;
        let _changes = self.lock().await;
        let outcome = rollback_locked(self, name).await;
        self.record_outcome(name, LoadSource::Rollback, &outcome);
        outcome
    }

    /// Forgets `name` and deletes its stored versions; refused while any
    /// service is bound to it.
    pub async fn remove(&self, name: &str) -> Result<(), PluginError> {
        check_name(name)?;
        let _changes = self.lock().await;
        let users: Vec<String> = bindings_of(&self.directory, name)
            .iter()
            .map(|b| b.service.name().to_string())
            .collect();
        if !users.is_empty() {
            return Err(PluginError::InUse {
                name: name.to_string(),
                services: dedup(users),
            });
        }
        let known = self.registry.remove(name).is_ok();
        let stored = self.store.manifest(name)?.is_some();
        if !known && !stored {
            return Err(PluginError::NotFound(name.to_string()));
        }
        let store = self.store.clone();
        let owned = name.to_string();
        tokio::task::spawn_blocking(move || store.remove(&owned))
            .await
            .map_err(|e| PluginError::Internal(format!("store task: {e}")))??;
        tracing::info!(plugin = name, "plugin deleted");
        Ok(())
    }

    /// Loads every stored plugin into the registry (history first, so the
    /// registry's rollback window matches the store's). Failures are
    /// recorded per plugin and returned; they do not stop the others.
    pub async fn restore(&self) -> Vec<(String, String)> {
        let store = self.store.clone();
        let registry = self.registry.clone();
        tokio::task::spawn_blocking(move || restore_blocking(&store, &registry))
            .await
            .unwrap_or_else(|e| vec![("*".to_string(), format!("restore task: {e}"))])
    }

    /// Binds the current version of each plugin `spec` names, for a service
    /// about to be (re)built; refuses missing plugins and rejected configs.
    /// Returns the bound plugins by kind, to be swapped into the new service.
    pub async fn bind_for(
        &self,
        spec: &ServiceSpec,
    ) -> Result<Vec<(PolicyKind, Arc<BoundPlugin>)>, PluginError> {
        let mut bound = Vec::new();
        for (kind, policy) in policy_refs(spec) {
            let component = self
                .registry
                .get(&policy.plugin)
                .ok_or_else(|| PluginError::NotFound(policy.plugin.clone()))?;
            let binding_error = |reason| PluginError::Binding {
                service: spec.name.clone(),
                kind,
                reason,
            };
            if component.kind() != kind {
                return Err(binding_error(LoadError::WrongWorld {
                    expected: kind,
                    exports: component.exports().to_vec(),
                }));
            }
            let runtime = self.registry.runtime().clone();
            let config_json = policy.config.to_string();
            let limits = policy.limits.clone().unwrap_or_default();
            let plugin =
                tokio::task::spawn_blocking(move || component.bind(&runtime, &config_json, limits))
                    .await
                    .map_err(|e| PluginError::Internal(format!("bind task: {e}")))?
                    .map_err(binding_error)?;
            bound.push((kind, plugin));
        }
        Ok(bound)
    }
}

async fn rollback_locked(host: &PluginHost, name: &str) -> Result<Installed, PluginError> {
    let info = host
        .registry
        .info(name)
        .ok_or_else(|| PluginError::NotFound(name.to_string()))?;
    let target = info
        .previous_versions
        .first()
        .ok_or_else(|| PluginError::NoPrevious(name.to_string()))?;
    let component = host.registry.get_version(name, target).ok_or_else(|| {
        PluginError::Internal(format!("previous version {target} of {name} is not loaded"))
    })?;
    let bindings = bindings_of(&host.directory, name);
    let bound = bind_all(&host.registry, &component, &bindings).await?;
    let store = host.store.clone();
    let owned = name.to_string();
    let manifest = tokio::task::spawn_blocking(move || store.rollback(&owned))
        .await
        .map_err(|e| PluginError::Internal(format!("store task: {e}")))??;
    if manifest.current != component.version() {
        // The store and the registry disagree (a store edited by hand?):
        // trust neither silently.
        return Err(PluginError::Internal(format!(
            "store rolled {name} back to {} but the registry's previous version is {}",
            manifest.current,
            component.version()
        )));
    }
    let component = host.registry.rollback(name)?;
    swap_all(&host.writes, &bound)?;
    Ok(installed(&component, &bindings, true))
}

fn restore_blocking(store: &PluginStore, registry: &Registry) -> Vec<(String, String)> {
    let mut failures = Vec::new();
    let names = match store.names() {
        Ok(names) => names,
        Err(error) => return vec![("*".to_string(), error.to_string())],
    };
    for name in names {
        if let Err(error) = restore_one(store, registry, &name) {
            tracing::error!(plugin = %name, %error, "cannot restore stored plugin");
            registry.record_failure(&name, &error);
            failures.push((name, error));
        }
    }
    failures
}

fn restore_one(store: &PluginStore, registry: &Registry, name: &str) -> Result<(), String> {
    store.delete_strays(name).map_err(|e| e.to_string())?;
    let manifest = store
        .manifest(name)
        .map_err(|e| e.to_string())?
        .ok_or("manifest vanished")?;
    // Oldest first, so that promoting each in turn rebuilds the history.
    for version in manifest.previous.iter().rev() {
        match store
            .load(name, version)
            .map_err(|e| e.to_string())
            .and_then(|bytes| registry.install(name, &bytes).map_err(|e| e.to_string()))
        {
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(plugin = name, version, %error, "skipping unloadable previous version")
            }
        }
    }
    let bytes = store
        .load(name, &manifest.current)
        .map_err(|e| e.to_string())?;
    let component = registry.install(name, &bytes).map_err(|e| e.to_string())?;
    metrics::plugin_load(name, LoadSource::Restart, true);
    tracing::info!(plugin = name, version = component.version(), cache = ?component.cache(), "plugin restored");
    Ok(())
}

fn check_name(name: &str) -> Result<(), PluginError> {
    crate::config::validate_plugin_name(name).map_err(|reason| PluginError::BadName {
        name: name.chars().take(80).collect(),
        reason,
    })
}

/// Every service binding that names `plugin`, across the current services.
pub fn bindings_of(directory: &Directory, plugin: &str) -> Vec<Binding> {
    let services = directory.services.load();
    let mut bindings = Vec::new();
    for service in services.values() {
        for (kind, policy) in policy_refs(&service.spec) {
            if policy.plugin == plugin {
                bindings.push(Binding {
                    service: service.clone(),
                    kind,
                    config_json: policy.config.to_string(),
                    limits: policy.limits.clone().unwrap_or_default(),
                });
            }
        }
    }
    bindings
}

/// Binds `component` for every binding (blocking work off the async
/// threads); the first refusal names its service.
async fn bind_all(
    registry: &Arc<Registry>,
    component: &Arc<Component>,
    bindings: &[Binding],
) -> Result<Vec<(Binding, Arc<BoundPlugin>)>, PluginError> {
    let runtime = registry.runtime().clone();
    let component = component.clone();
    let bindings = bindings.to_vec();
    tokio::task::spawn_blocking(move || {
        bindings
            .into_iter()
            .map(|binding| {
                let refuse = |reason| PluginError::Binding {
                    service: binding.service.name().to_string(),
                    kind: binding.kind,
                    reason,
                };
                if component.kind() != binding.kind {
                    let exports = component.exports().to_vec();
                    return Err(refuse(LoadError::WrongWorld {
                        expected: binding.kind,
                        exports,
                    }));
                }
                let bound = component
                    .bind(&runtime, &binding.config_json, binding.limits.clone())
                    .map_err(refuse)?;
                Ok((binding, bound))
            })
            .collect()
    })
    .await
    .map_err(|e| PluginError::Internal(format!("bind task: {e}")))?
}

/// Swaps every prepared binding in. Cannot fail for a checked kind; an
/// error here is a bug, reported as internal.
fn swap_all(writes: &WritePlane, bound: &[(Binding, Arc<BoundPlugin>)]) -> Result<(), PluginError> {
    let checkpoint = &writes.checkpoints.policy;
    for (binding, plugin) in bound {
        bind_policy(
            &binding.service,
            checkpoint,
            binding.kind,
            Some(plugin.clone()),
        )
        .map_err(|e| PluginError::Internal(format!("swapping {}: {e}", binding.service.name())))?;
    }
    Ok(())
}

fn installed(component: &Component, bindings: &[Binding], changed: bool) -> Installed {
    Installed {
        name: component.name().to_string(),
        version: component.version().to_string(),
        world: component.kind(),
        services: dedup(
            bindings
                .iter()
                .map(|b| b.service.name().to_string())
                .collect(),
        ),
        changed,
    }
}

fn dedup(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names.dedup();
    names
}
