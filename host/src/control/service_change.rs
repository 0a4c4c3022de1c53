//! The service-change transaction behind `PUT` and `DELETE
//! /admin/services/{name}`.
//!
//! A change is checked whole before anything moves: the configuration
//! after the change must validate, every plugin the service names must be
//! loaded and accept the binding's config, and the service must build.
//! Then it is made durable, then visible, in this order (`commit`): log
//! append (fsynced), the change log's overlay, the running configuration,
//! the service table, and only then the ledger registration that lets a
//! checkpoint claim to cover it (see `replication::service_changes`).
//! Requests in flight finish on the service they started with.
//!
//! The caller holds the plugin host's change lock for the whole
//! transaction, so a plugin load cannot interleave with it.

use std::sync::Arc;

use levee_log::LogError;
use levee_plugin::LoadError;
use thiserror::Error;

use crate::base::shutdown::Shutdown;
use crate::cluster::directory::Directory;
use crate::cluster::service::Service;
use crate::config::{ConfigError, ServiceSpec};
use crate::control::plugin_host::{PluginError, PluginHost};
use crate::replication::WritePlane;
use crate::replication::service_changes::{KIND_SERVICE_CHANGE, ServiceChange, apply_to_config};
use crate::upstream::UpstreamClient;

/// Why a service change was refused; nothing changed.
#[derive(Debug, Error)]
pub enum ChangeRefused {
    /// The configuration would not validate after the change.
    #[error("invalid configuration after the change: {0}")]
    Invalid(ConfigError),
    /// A plugin the service names is missing or refused the binding.
    #[error(transparent)]
    Plugin(PluginError),
    /// The service could not be built from its (valid) spec.
    #[error("{0}")]
    Build(String),
    #[error("no service named {0:?}")]
    NotFound(String),
    /// The durable log refused the change (full, poisoned, closing).
    #[error("the durable log refuses writes: {0}")]
    LogUnavailable(LogError),
    /// A failure of levee itself; the detail is for the log.
    #[error("internal error: {0}")]
    Internal(String),
}

/// What a service change works on.
pub struct ChangeContext<'a> {
    pub host: &'a PluginHost,
    pub runtime: &'a levee_plugin::Runtime,
    pub writes: &'a WritePlane,
    pub client: &'a UpstreamClient,
    pub shutdown: &'a Shutdown,
}

impl ChangeContext<'_> {
    fn directory(&self) -> &Directory {
        self.host.directory()
    }

    /// Adds or replaces `spec`'s service; returns it and whether it was
    /// added (rather than replaced).
    pub async fn put(&self, spec: ServiceSpec) -> Result<(Arc<Service>, bool), ChangeRefused> {
        let _changes = self.host.lock().await;
        let change = ServiceChange::Put {
            spec: Box::new(spec.clone()),
        };
        apply_to_config(&self.directory().config.load(), &change)
            .validate()
            .map_err(ChangeRefused::Invalid)?;
        let bound = self
            .host
            .bind_for(&spec)
            .await
            .map_err(ChangeRefused::Plugin)?;
        let service = Service::build(spec, self.runtime)
            .map_err(|error| ChangeRefused::Build(error.to_string()))?;
        let service = Arc::new(service);
        self.host
            .swap_into(&service, bound)
            .map_err(|error: LoadError| ChangeRefused::Internal(error.to_string()))?;
        let added = self.directory().service(service.name()).is_none();
        commit(self.writes, self.directory(), change, Some(service.clone())).await?;
        crate::cluster::probe::spawn_active_checks(
            &service,
            self.client.clone(),
            self.shutdown.signal(),
        );
        Ok((service, added))
    }

    /// Checks `spec` as [`ChangeContext::put`] would (the configuration
    /// after it validates, its plugins bind, it builds) and changes
    /// nothing: cluster mode checks a change before writing it to etcd.
    pub async fn check_put(&self, spec: &ServiceSpec) -> Result<(), ChangeRefused> {
        let change = ServiceChange::Put {
            spec: Box::new(spec.clone()),
        };
        apply_to_config(&self.directory().config.load(), &change)
            .validate()
            .map_err(ChangeRefused::Invalid)?;
        self.host
            .bind_for(spec)
            .await
            .map_err(ChangeRefused::Plugin)?;
        Service::build(spec.clone(), self.runtime)
            .map_err(|error| ChangeRefused::Build(error.to_string()))?;
        Ok(())
    }

    /// Removes the service `name`.
    pub async fn delete(&self, name: &str) -> Result<(), ChangeRefused> {
        let _changes = self.host.lock().await;
        if self.directory().service(name).is_none() {
            return Err(ChangeRefused::NotFound(name.chars().take(80).collect()));
        }
        let change = ServiceChange::Delete {
            name: name.to_string(),
        };
        commit(self.writes, self.directory(), change, None).await
    }
}

/// Makes `change` durable, then visible (see the module doc for the order).
async fn commit(
    writes: &WritePlane,
    directory: &Directory,
    change: ServiceChange,
    service: Option<Arc<Service>>,
) -> Result<(), ChangeRefused> {
    let payload = change
        .encode()
        .map_err(|error| ChangeRefused::Internal(error.to_string()))?;
    let ticket = writes.ledger.begin_append();
    let lsn = writes
        .log
        .append(KIND_SERVICE_CHANGE, payload)
        .await
        .map_err(|error| {
            if error.is_unavailable() {
                ChangeRefused::LogUnavailable(error)
            } else {
                ChangeRefused::Internal(error.to_string())
            }
        })?;
    writes.record_service_change(&change);
    directory
        .config
        .rcu(|config| apply_to_config(config, &change));
    let name = change.name().to_string();
    directory.services.rcu(|services| {
        let mut next = (**services).clone();
        match &service {
            Some(service) => next.insert(name.clone(), service.clone()),
            None => next.remove(&name),
        };
        next
    });
    ticket.register(lsn, &[]);
    writes.appended();
    Ok(())
}
