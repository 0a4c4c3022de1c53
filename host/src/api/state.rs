//! `AppState`: what the HTTP adapters (`api`) and the process lifecycle
//! (`app`) share, by cheap clones (`Arc` inside).
//!
//! Only `api/` and `app/` see it. Everything below takes exactly the parts
//! it uses: the [`Directory`] of services, the upstream client, the write
//! plane, the plugin host, the [`Shutdown`] signal. Nothing here is locked
//! across an `.await`.
//!
//! To add shared state: add a field to [`AppInner`] and initialise it in
//! [`AppState::new`]; handlers reach it as `state.field` through `Deref`.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

use crate::base::shutdown::Shutdown;
use crate::cluster::directory::Directory;
use crate::cluster::service::{Service, ServiceError};
use crate::config::Config;
use crate::control::etcd::ClusterMode;
use crate::control::service_change::ChangeContext;
use crate::control::{ControlError, ControlPlane};
use crate::replication::service_changes::ChangeError;
use crate::replication::{WritePlane, WriteSetupError};
use crate::upstream::{UpstreamClient, UpstreamTlsError};

/// Why the state could not be built at start-up.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("starting the plugin runtime: {0}")]
    Runtime(#[from] levee_plugin::RuntimeError),
    #[error(transparent)]
    Write(#[from] WriteSetupError),
    #[error(transparent)]
    ServiceChanges(#[from] ChangeError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    UpstreamTls(#[from] UpstreamTlsError),
}

/// Shared application state; clone freely.
#[derive(Clone, Debug)]
pub struct AppState(Arc<AppInner>);

/// The fields of [`AppState`].
#[derive(Debug)]
pub struct AppInner {
    /// The configuration and services in force.
    pub directory: Arc<Directory>,
    /// The pooled upstream client shared by every service.
    pub client: UpstreamClient,
    /// The Wasm plugin runtime (engine, epoch ticker, compile caches) that
    /// every service's policies and the plugin registry share.
    pub runtime: levee_plugin::Runtime,
    /// The write path: the durable log (`writes.log`, `<data_dir>/log`,
    /// opened and recovered at start), hint ledger, handoff, checkpoints.
    pub writes: Arc<WritePlane>,
    /// The control plane: admin auth, plugin registry and store (`control`).
    pub control: ControlPlane,
    /// False until start-up (recovery) finishes and after shutdown begins.
    ready: AtomicBool,
    /// Flips once when shutdown starts.
    pub shutdown: Shutdown,
    /// Cluster mode on etcd, once connected (never, without `cluster`).
    cluster: std::sync::OnceLock<Arc<ClusterMode>>,
}

impl Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

impl AppState {
    /// Builds the state from a validated configuration: the upstream
    /// client (its `upstream_tls` files read first, so a wrong one stops
    /// start-up before anything else is opened), plugin runtime, control
    /// plane, the log (recovering the admin API's service changes and the
    /// hint ledger from it), then the services.
    pub fn new(config: Config) -> Result<AppState, StateError> {
        let client = UpstreamClient::from_spec(&config.upstream_tls)?;
        let runtime = levee_plugin::Runtime::new(levee_plugin::RuntimeOptions::for_data_dir(
            &config.data_dir,
        ))?;
        let log = crate::replication::open_log(&config)?;
        // Services changed through the admin API live in the log.
        let (config, overlay) = crate::replication::service_changes::recover(&log, config)?;
        let directory = Arc::new(Directory::build(config, &runtime)?);
        let config = directory.config.load_full();
        let writes = Arc::new(WritePlane::open(log, &config, overlay)?);
        let control = ControlPlane::new(&config, &runtime, directory.clone(), writes.clone())?;
        Ok(AppState(Arc::new(AppInner {
            directory,
            client,
            runtime,
            writes,
            control,
            ready: AtomicBool::new(false),
            shutdown: Shutdown::new(),
            cluster: std::sync::OnceLock::new(),
        })))
    }

    /// Cluster mode, once connected: admin changes go to etcd.
    pub fn cluster(&self) -> Option<&Arc<ClusterMode>> {
        self.cluster.get()
    }

    /// Enters cluster mode (once, at start).
    pub fn set_cluster(&self, mode: Arc<ClusterMode>) {
        let _ = self.cluster.set(mode);
    }

    /// The service-change transaction over this state's parts.
    pub fn service_changes(&self) -> ChangeContext<'_> {
        ChangeContext {
            host: &self.control.plugins,
            runtime: &self.runtime,
            writes: &self.writes,
            client: &self.client,
            shutdown: &self.shutdown,
        }
    }

    /// The service of this name in the current table.
    pub fn service(&self, name: &str) -> Option<Arc<Service>> {
        self.directory.service(name)
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Starts shutdown: listeners stop accepting, background tasks stop.
    pub fn begin_shutdown(&self) {
        self.set_ready(false);
        self.shutdown.begin();
    }

    /// True once shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_requested()
    }

    /// A receiver that sees `true` when shutdown begins.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.signal()
    }
}
