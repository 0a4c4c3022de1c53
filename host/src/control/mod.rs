//! The control plane's shared state and its start-up: admin authentication
//! and the `Host` / `Origin` rules, the plugin host, the drop-in watcher
//! and the metrics recorder.
//!
//! [`ControlPlane::new`] runs at start-up, so a configuration the control
//! plane cannot accept (an exposed admin listener without a token, an
//! unusable plugin store) stops levee before it serves anything. [`start`]
//! runs once the services exist: it restores stored plugins, loads the
//! drop-in directory, binds every service to its plugins and the process's
//! checkpoint policy to its plugin, and starts the watcher; only then is
//! levee ready.
//!
//! The control plane takes what it changes (the [`Directory`] of services,
//! the write plane that holds the checkpoint policy and the service-change
//! log) and the [`Shutdown`] signal; it never sees the application state.

pub mod admin_origin;
pub mod auth;
pub mod drop_in;
pub mod etcd;
pub mod oci;
pub mod plugin_bindings;
pub mod plugin_error;
pub mod plugin_host;
pub mod plugin_shadow;
pub mod plugin_store;
pub mod service_change;
pub mod shadow_versions;
pub mod watch;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use levee_plugin::Registry;
use thiserror::Error;
use tokio::sync::mpsc;

use crate::base::metrics::LoadSource;
use crate::base::shutdown::Shutdown;
use crate::cluster::directory::Directory;
use crate::config::Config;
use crate::control::admin_origin::AdminOrigin;
use crate::control::auth::{AdminAuth, AuthConfigError};
use crate::control::plugin_host::{PluginError, PluginHost};
use crate::control::plugin_store::{COMPONENT_BYTES_MAX, PluginStore, StoreError};
use crate::control::watch::{DropIn, DropInError, WatchOptions};
use crate::replication::WritePlane;

/// Drop-ins waiting to be loaded; the watcher waits when it is full.
const DROP_IN_QUEUE_MAX: usize = 16;

/// Why the control plane could not be set up.
#[derive(Debug, Error)]
pub enum ControlError {
    #[error(transparent)]
    Auth(#[from] AuthConfigError),
    #[error("plugin store: {0}")]
    Store(#[from] StoreError),
    #[error("plugin directory: {0}")]
    Watch(#[from] watch::WatchError),
    #[error("{0}")]
    Binding(String),
}

/// What the admin listener needs besides the data plane's state.
#[derive(Debug)]
pub struct ControlPlane {
    pub auth: AdminAuth,
    /// Which `Host` and `Origin` the admin listener answers.
    pub origin: AdminOrigin,
    pub plugins: Arc<PluginHost>,
    /// When this process started, for uptime.
    pub started: Instant,
}

impl ControlPlane {
    /// Checks the admin exposure rule, opens the plugin store and installs
    /// the metrics recorder.
    pub fn new(
        config: &Config,
        runtime: &levee_plugin::Runtime,
        directory: Arc<Directory>,
        writes: Arc<WritePlane>,
    ) -> Result<ControlPlane, ControlError> {
        crate::base::metrics::install();
        let auth =
            AdminAuth::from_env_or_config(config.admin_token.as_deref(), config.listeners.admin)?;
        let origin = AdminOrigin::new(config.listeners.admin, &config.admin_allowed_hosts);
        let store = PluginStore::open(config.data_dir.join("plugins"))?;
        let registry = Arc::new(Registry::new(runtime.clone()));
        let plugins = PluginHost::new(registry, store, directory, writes, COMPONENT_BYTES_MAX);
        Ok(ControlPlane {
            auth,
            origin,
            plugins: Arc::new(plugins),
            started: Instant::now(),
        })
    }
}

/// Brings the plugins up before levee reports ready: restores the store,
/// loads the drop-in directory, binds every service and the checkpoint
/// policy, starts the watcher. A binding to a plugin that is nowhere to be
/// found, or whose config the plugin rejects, stops the start with a
/// message naming both (the service, or the checkpoint policy).
pub async fn start(host: &Arc<PluginHost>, shutdown: &Shutdown) -> Result<(), ControlError> {
    for (name, error) in host.restore().await {
        tracing::error!(plugin = %name, %error, "stored plugin not restored");
    }
    let (sink, drop_ins) = mpsc::channel(DROP_IN_QUEUE_MAX);
    let dir = host.directory().config.load().plugin_dir();
    let stop = {
        let shutdown = shutdown.clone();
        async move { shutdown.requested().await }
    };
    let (initial, _watcher) =
        watch::spawn(dir.clone(), WatchOptions::default(), sink, stop).await?;
    for drop_in in initial {
        load_initial_drop_in(host, drop_in).await;
    }
    bind_all_services(host).await?;
    tokio::spawn(load_drop_ins(host.clone(), drop_ins));
    tracing::info!(plugin_dir = %dir.display(), plugins = host.registry().len(), "plugins ready");
    Ok(())
}

/// A file found at start-up loads unless the store holds something newer
/// (an upload or rollback made after the file was last written).
async fn load_initial_drop_in(host: &PluginHost, drop_in: DropIn) {
    let stored = host.store().manifest(&drop_in.name).ok().flatten();
    if let Some(manifest) = &stored
        && manifest.updated_at_ms >= drop_in.modified_ms
    {
        tracing::info!(plugin = %drop_in.name, "drop-in file is older than the stored version; keeping the stored one");
        return;
    }
    load_drop_in(host, drop_in).await;
}

async fn load_drop_ins(host: Arc<PluginHost>, mut drop_ins: mpsc::Receiver<DropIn>) {
    while let Some(drop_in) = drop_ins.recv().await {
        load_drop_in(&host, drop_in).await;
    }
}

/// Reads and loads one drop-in: one file in memory at a time, however
/// many are queued.
async fn load_drop_in(host: &PluginHost, drop_in: DropIn) {
    tracing::info!(plugin = %drop_in.name, path = %drop_in.path.display(), initial = drop_in.initial, "loading drop-in plugin file");
    match drop_in.read().await {
        Ok(bytes) => {
            // Errors are recorded by the host (status failed, last_error).
            let _ = host
                .install(&drop_in.name, Bytes::from(bytes), LoadSource::DropIn)
                .await;
        }
        Err(DropInError::Moved(why)) => {
            tracing::info!(plugin = %drop_in.name, %why, "drop-in file not loaded; the watcher will look again");
        }
        Err(DropInError::Refused(error)) => {
            tracing::warn!(plugin = %drop_in.name, %error, "drop-in file not loaded");
            host.registry().record_failure(&drop_in.name, &error);
            crate::base::metrics::plugin_load(&drop_in.name, LoadSource::DropIn, false);
        }
    }
}

/// Binds every service to the current version of each plugin it names,
/// then the process's checkpoint policy to the plugin the top-level
/// `checkpoint` names (once: it is one per process).
async fn bind_all_services(host: &PluginHost) -> Result<(), ControlError> {
    let services = host.directory().services.load_full();
    for service in services.values() {
        let user = format!("service {:?}", service.name());
        let bound = host
            .bind_for(&service.spec)
            .await
            .map_err(|error| binding_error(host, &user, error))?;
        host.swap_into(service, bound)
            .map_err(|e| ControlError::Binding(format!("{user}: {e}")))?;
    }
    let user = "the checkpoint policy";
    if let Some(plugin) = host
        .bind_checkpoint()
        .await
        .map_err(|error| binding_error(host, user, error))?
    {
        host.swap_checkpoint(plugin)
            .map_err(|e| ControlError::Binding(format!("{user}: {e}")))?;
    }
    Ok(())
}

/// A start-up binding refusal, naming its `user` (`service "kv"`, `the
/// checkpoint policy`) and, for a missing plugin, why it is missing.
fn binding_error(host: &PluginHost, user: &str, error: PluginError) -> ControlError {
    match error {
        PluginError::NotFound(plugin) => {
            match host
                .registry()
                .info(&plugin)
                .and_then(|info| info.last_error)
            {
                Some(error) => ControlError::Binding(format!(
                    "{user} uses plugin {plugin:?}, which failed to load: {error}"
                )),
                None => ControlError::Binding(format!(
                    "{user} uses plugin {plugin:?}, which is neither in the plugin directory ({}) nor stored",
                    host.directory().config.load().plugin_dir().display()
                )),
            }
        }
        other => ControlError::Binding(other.to_string()),
    }
}
