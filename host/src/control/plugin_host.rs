//! The control plane's side of policy plugins: load a component (upload,
//! drop-in, rollback or restart), check it against every binding that names
//! it (services' and the process's checkpoint binding), persist it, and swap
//! it in.
//!
//! # One path for every load
//! Whatever the source, a new version goes through [`PluginHost::install`]:
//! 1. **compile** (in `spawn_blocking`: tens to hundreds of milliseconds on a
//!    cache miss), which validates the component and finds its world;
//! 2. **check every binding** ([`super::plugin_bindings`]): each service
//!    whose `policies.<kind>.plugin` names the plugin, and the process when
//!    the top-level `checkpoint.plugin` does, must bind it with its own
//!    config; a world of the wrong kind or a `configure` that rejects the
//!    binding's config refuses the whole load, naming the service (or the
//!    checkpoint policy);
//! 3. **persist** to the [`PluginStore`] (fsynced) before anything changes,
//!    so a version that served a request survives a crash;
//! 4. **swap** each binding's slot (an `ArcSwap` inside the guarded policy):
//!    a request in flight finishes on the version it loaded, new requests
//!    get the new one, and the old instances are dropped with the last
//!    request holding them.
//!
//! A plugin nothing uses yet is compiled and validated only; its
//! `configure` first runs when a service binds it (`PUT /admin/services`),
//! and a refusal there is that request's 422. The checkpoint binding is
//! read from the configuration file at start-up ([`PluginHost::bind_checkpoint`]).
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
use levee_plugin::{BoundPlugin, Component, LoadError, PolicyKind, Registry};
use tokio::sync::{Mutex, MutexGuard};

use crate::base::metrics::{self, LoadSource};
use crate::cluster::directory::Directory;
use crate::cluster::service::Service;
use crate::config::ServiceSpec;
use crate::control::plugin_bindings::{
    bind_all, bind_current, bindings_of, installed, swap_all, targets,
};
pub use crate::control::plugin_error::{Installed, PluginError, TargetName};
use crate::control::plugin_store::PluginStore;
use crate::control::shadow_versions::Shadows;
use crate::policy::bind::{bind_checkpoint, bind_policy, checkpoint_ref, policy_refs};
use crate::policy::slot::Slot;
use crate::replication::WritePlane;

/// One policy of a service about to be (re)built, bound: the current
/// version and, when the plugin has one, its shadow version.
pub struct Prepared {
    pub kind: PolicyKind,
    pub live: Arc<BoundPlugin>,
    pub shadow: Option<Arc<BoundPlugin>>,
}

/// Plugins: the registry (in memory, compiled) and the store (on disk).
pub struct PluginHost {
    registry: Arc<Registry>,
    store: PluginStore,
    /// The services and the running configuration (the top-level
    /// `checkpoint`), whose bindings a load checks and swaps.
    directory: Arc<Directory>,
    /// Holds the process's checkpoint policy.
    writes: Arc<WritePlane>,
    changes: Mutex<()>,
    upload_bytes_max: u64,
    /// Shadow versions, per plugin (see [`super::plugin_shadow`]).
    shadows: Shadows,
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
            shadows: Shadows::default(),
        }
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The services this host binds plugins for.
    pub fn directory(&self) -> &Arc<Directory> {
        &self.directory
    }

    /// Holds the process's checkpoint policy.
    pub(crate) fn writes(&self) -> &Arc<WritePlane> {
        &self.writes
    }

    pub(crate) fn shadows(&self) -> &Shadows {
        &self.shadows
    }

    /// Swaps `bound` (from [`PluginHost::bind_for`]) into `service`, each
    /// with its shadow, if any.
    pub fn swap_into(&self, service: &Service, bound: Vec<Prepared>) -> Result<(), LoadError> {
        for Prepared { kind, live, shadow } in bound {
            bind_policy(service, kind, Some(live))?;
            if let Some(slot) = Slot::of_service(service, kind) {
                slot.set_shadow(shadow)?;
            }
        }
        Ok(())
    }

    /// Swaps `plugin` (from [`PluginHost::bind_checkpoint`]) into the
    /// process's checkpoint policy.
    pub fn swap_checkpoint(&self, plugin: Arc<BoundPlugin>) -> Result<(), LoadError> {
        bind_checkpoint(&self.writes.checkpoints.policy, Some(plugin))
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
                checkpoint_policy = installed.checkpoint_policy,
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

    pub(crate) async fn compile(
        &self,
        name: &str,
        bytes: Bytes,
    ) -> Result<Arc<Component>, PluginError> {
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

    /// Makes the previous version current again, for every binding.
    pub async fn rollback(&self, name: &str) -> Result<Installed, PluginError> {
        check_name(name)?;
        let _changes = self.lock().await;
        let outcome = rollback_locked(self, name).await;
        self.record_outcome(name, LoadSource::Rollback, &outcome);
        outcome
    }

    /// Forgets `name`, deletes its stored versions and its drop-in file;
    /// refused while any service or the checkpoint policy is bound to it.
    pub async fn remove(&self, name: &str) -> Result<(), PluginError> {
        check_name(name)?;
        let _changes = self.lock().await;
        let users = targets(&bindings_of(&self.directory, name));
        if !users.is_empty() {
            return Err(PluginError::InUse {
                name: name.to_string(),
                users,
            });
        }
        // The drop-in file first: if it cannot go, nothing changes.
        let plugin_dir = self.directory.config.load().plugin_dir();
        let owned = name.to_string();
        let dropped = tokio::task::spawn_blocking(move || {
            crate::control::plugin_store::remove_drop_in(&plugin_dir, &owned)
        })
        .await
        .map_err(|e| PluginError::Internal(format!("store task: {e}")))?
        .map_err(PluginError::DropInFile)?;
        let known = self.registry.remove(name).is_ok();
        self.shadows.forget(name);
        let stored = self.store.manifest(name)?.is_some();
        if !known && !stored && !dropped {
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
    /// Returns the bound plugins by kind, each with the plugin's shadow
    /// version when it has one, to be swapped into the new service.
    pub async fn bind_for(&self, spec: &ServiceSpec) -> Result<Vec<Prepared>, PluginError> {
        let mut bound = Vec::new();
        for (kind, policy) in policy_refs(spec) {
            let target = TargetName::Service(spec.name.clone());
            let live = bind_current(&self.registry, target.clone(), kind, policy).await?;
            let shadow = self.bind_shadow(target, kind, policy).await;
            bound.push(Prepared { kind, live, shadow });
        }
        Ok(bound)
    }

    /// Binds the current version of the plugin the process's checkpoint
    /// binding (top-level `checkpoint`) names, if there is one; refuses a
    /// missing plugin or a rejected config. Swap it in with
    /// [`PluginHost::swap_checkpoint`].
    pub async fn bind_checkpoint(&self) -> Result<Option<Arc<BoundPlugin>>, PluginError> {
        let config = self.directory.config.load_full();
        let Some(policy) = checkpoint_ref(&config) else {
            return Ok(None);
        };
        let target = TargetName::CheckpointPolicy;
        let plugin = bind_current(&self.registry, target, PolicyKind::Checkpoint, policy).await?;
        Ok(Some(plugin))
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

pub(crate) fn check_name(name: &str) -> Result<(), PluginError> {
    crate::config::validate_plugin_name(name).map_err(|reason| PluginError::BadName {
        name: name.chars().take(80).collect(),
        reason,
    })
}
