//! `AppState`: everything a request handler or background task needs,
//! shared by cheap clones (`Arc` inside).
//!
//! Mutable-at-runtime parts (configuration, service table) sit behind
//! `ArcSwap`: readers take a snapshot with one atomic load and never block,
//! writers (hot reload, admin API) build a complete replacement and swap it
//! in. Nothing here is locked across an `.await`.
//!
//! To add shared state: add a field to [`AppInner`] and initialise it in
//! [`AppState::new`]; handlers reach it as `state.field` through `Deref`.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::config::Config;
use crate::service::{Service, ServiceError};
use crate::upstream::UpstreamClient;

/// Services by name.
pub type ServiceMap = BTreeMap<String, Arc<Service>>;

/// Why the state could not be built at start-up.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("starting the plugin runtime: {0}")]
    Runtime(#[from] levee_plugin::RuntimeError),
    #[error(transparent)]
    Write(#[from] crate::write::WriteSetupError),
    #[error(transparent)]
    ServiceChanges(#[from] crate::service_changes::ChangeError),
    #[error(transparent)]
    Control(#[from] crate::control::ControlError),
}

/// Shared application state; clone freely.
#[derive(Clone, Debug)]
pub struct AppState(Arc<AppInner>);

/// The fields of [`AppState`].
#[derive(Debug)]
pub struct AppInner {
    /// The configuration currently in force.
    pub config: ArcSwap<Config>,
    /// The services currently in force, built from `config`.
    pub services: ArcSwap<ServiceMap>,
    /// The pooled upstream client shared by every service.
    pub client: UpstreamClient,
    /// The Wasm plugin runtime (engine, epoch ticker, compile caches) that
    /// every service's policies and the plugin registry share.
    pub runtime: levee_plugin::Runtime,
    /// The write path: the durable log (`writes.log`, `<data_dir>/log`,
    /// opened and recovered at start), hint ledger, handoff, checkpoints.
    pub writes: Arc<crate::write::WritePlane>,
    /// The control plane: admin auth, plugin registry and store (`control`).
    pub control: crate::control::ControlPlane,
    /// False until start-up (recovery) finishes and after shutdown begins.
    ready: AtomicBool,
    /// Flips to `true` once when shutdown starts.
    shutdown: watch::Sender<bool>,
}

impl Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

impl AppState {
    /// Builds the state from a validated configuration.
    pub fn new(config: Config) -> Result<AppState, StateError> {
        let runtime = levee_plugin::Runtime::new(levee_plugin::RuntimeOptions::for_data_dir(
            &config.data_dir,
        ))?;
        let control = crate::control::ControlPlane::new(&config, &runtime)?;
        let log = crate::write::open_log(&config)?;
        // Services changed through the admin API live in the log.
        let config = crate::service_changes::recover(&log, config)?;
        let services = build_services(&config, &runtime)?;
        let (shutdown, _) = watch::channel(false);
        let writes = crate::write::WritePlane::open(log, &config)?;
        Ok(AppState(Arc::new(AppInner {
            config: ArcSwap::from_pointee(config),
            services: ArcSwap::from_pointee(services),
            client: UpstreamClient::new(),
            runtime,
            writes: Arc::new(writes),
            control,
            ready: AtomicBool::new(false),
            shutdown,
        })))
    }

    /// The service of this name in the current table.
    pub fn service(&self, name: &str) -> Option<Arc<Service>> {
        self.services.load().get(name).cloned()
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
        self.shutdown.send_replace(true);
    }

    /// True once shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// A receiver that sees `true` when shutdown begins.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Resolves when shutdown begins.
    pub async fn shutdown_requested(&self) {
        let mut receiver = self.shutdown_signal();
        // An Err means the sender is gone, which also means "stop".
        let _ = receiver.wait_for(|&stop| stop).await;
    }
}

/// Builds every configured service.
pub fn build_services(
    config: &Config,
    runtime: &levee_plugin::Runtime,
) -> Result<ServiceMap, ServiceError> {
    config
        .services
        .iter()
        .map(|spec| {
            Ok((
                spec.name.clone(),
                Arc::new(Service::build(spec.clone(), runtime)?),
            ))
        })
        .collect()
}
