//! The directory: the configuration and the services in force.
//!
//! Both sit behind `ArcSwap`: a request takes a snapshot with one atomic
//! load and never blocks; a change (hot reload, the admin API) builds a
//! complete replacement and swaps it in, so a request keeps one consistent
//! view of its service from its first attempt to its last. Lower layers
//! (handoff, checkpoints, the plugin host) take an `Arc<Directory>`, not
//! the application state.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::cluster::service::{Service, ServiceError};
use crate::config::Config;

/// Services by name.
pub type ServiceMap = BTreeMap<String, Arc<Service>>;

/// The configuration and services currently in force.
#[derive(Debug)]
pub struct Directory {
    /// The configuration currently in force (the file's, with the admin
    /// API's service changes applied).
    pub config: ArcSwap<Config>,
    /// The services currently in force, built from `config`.
    pub services: ArcSwap<ServiceMap>,
}

impl Directory {
    /// Builds every service of `config` (native policies until plugins are
    /// bound).
    pub fn build(
        config: Config,
        runtime: &levee_plugin::Runtime,
    ) -> Result<Directory, ServiceError> {
        let services = build_services(&config, runtime)?;
        Ok(Directory {
            config: ArcSwap::from_pointee(config),
            services: ArcSwap::from_pointee(services),
        })
    }

    /// The service of this name in the current table.
    pub fn service(&self, name: &str) -> Option<Arc<Service>> {
        self.services.load().get(name).cloned()
    }
}

/// Builds every configured service.
fn build_services(
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
