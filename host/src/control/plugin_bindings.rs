//! The bindings a plugin load checks and swaps: every use of a plugin by
//! name, across the services (`services[].policies.<kind>`) and the process
//! (the top-level `checkpoint`).
//!
//! A load ([`super::plugin_host::PluginHost::install`], a rollback) finds
//! the bindings with [`bindings_of`], binds the new component for each with
//! its own config, limits and header allowlist ([`bind_all`], which refuses
//! the whole load on the first refusal and names the binding), and once
//! everything is checked and persisted swaps them all in ([`swap_all`]).

use std::fmt;
use std::sync::Arc;

use levee_plugin::{
    BoundPlugin, Component, HeaderAllowlist, Limits, LoadError, PolicyKind, Registry, Runtime,
};

use crate::cluster::directory::Directory;
use crate::cluster::service::Service;
use crate::config::PolicyRef;
use crate::control::plugin_error::{Installed, PluginError, TargetName};
use crate::policy::bind::{bind_checkpoint, bind_policy, checkpoint_ref, policy_refs};
use crate::policy::slot::Slot;
use crate::replication::WritePlane;

/// Whose policy slot a binding fills.
#[derive(Clone)]
pub enum BindingTarget {
    /// `services[name].policies.<kind>`: a slot of that service.
    Service(Arc<Service>),
    /// The top-level `checkpoint`: the process's checkpoint policy.
    Process,
}

impl BindingTarget {
    /// How messages and views name the target.
    pub fn name(&self) -> TargetName {
        match self {
            BindingTarget::Service(service) => TargetName::Service(service.name().to_string()),
            BindingTarget::Process => TargetName::CheckpointPolicy,
        }
    }
}

/// One use of a plugin: a service's `policies.<kind>`, or the process's
/// `checkpoint`.
#[derive(Clone)]
pub struct Binding {
    pub target: BindingTarget,
    pub kind: PolicyKind,
    /// The plugin it names.
    pub plugin: String,
    pub config_json: String,
    /// The binding's fence (`<binding>.limits`).
    pub limits: Limits,
    /// The request headers its plugin may read (`<binding>.headers`).
    pub headers: Vec<String>,
}

impl Binding {
    fn new(target: BindingTarget, kind: PolicyKind, policy: &PolicyRef) -> Binding {
        Binding {
            target,
            kind,
            plugin: policy.plugin.clone(),
            config_json: policy.config.to_string(),
            limits: policy.limits.clone().unwrap_or_default(),
            headers: policy.headers.clone(),
        }
    }

    /// Binds `component` for this binding (blocking: instantiates and runs
    /// the plugin's `configure`); refuses a world of another kind.
    pub fn bind(
        &self,
        runtime: &Runtime,
        component: &Arc<Component>,
    ) -> Result<Arc<BoundPlugin>, PluginError> {
        bind_checked(
            runtime,
            component,
            self.target.name(),
            self.kind,
            &self.config_json,
            self.limits.clone(),
            &self.headers,
        )
    }

    /// The target's guarded policy of this binding's kind.
    pub fn slot<'a>(&'a self, writes: &'a WritePlane) -> Option<Slot<'a>> {
        match &self.target {
            BindingTarget::Service(service) => Slot::of_service(service, self.kind),
            BindingTarget::Process => Some(Slot::Checkpoint(&writes.checkpoints.policy)),
        }
    }

    /// Swaps `plugin` into the target's slot.
    pub fn swap(&self, writes: &WritePlane, plugin: Arc<BoundPlugin>) -> Result<(), LoadError> {
        match &self.target {
            BindingTarget::Service(service) => bind_policy(service, self.kind, Some(plugin)),
            BindingTarget::Process => bind_checkpoint(&writes.checkpoints.policy, Some(plugin)),
        }
    }
}

impl fmt::Debug for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Binding")
            .field("target", &self.target.name())
            .field("kind", &self.kind)
            .field("plugin", &self.plugin)
            .finish()
    }
}

/// Binds `component` as `kind` for `target` with this config, fence and
/// header allowlist (blocking); a world of another kind, a refused config
/// or a refused header list names `target`.
pub fn bind_checked(
    runtime: &Runtime,
    component: &Arc<Component>,
    target: TargetName,
    kind: PolicyKind,
    config_json: &str,
    limits: Limits,
    headers: &[String],
) -> Result<Arc<BoundPlugin>, PluginError> {
    let refuse = |reason| PluginError::Binding {
        target: target.clone(),
        kind,
        reason,
    };
    if component.kind() != kind {
        return Err(refuse(LoadError::WrongWorld {
            expected: kind,
            exports: component.exports().to_vec(),
        }));
    }
    let headers = HeaderAllowlist::new(headers).map_err(refuse)?;
    component
        .bind_with_headers(runtime, config_json, limits, headers)
        .map_err(refuse)
}

/// Every binding that names `plugin`: the current services' and the
/// process's checkpoint binding.
pub fn bindings_of(directory: &Directory, plugin: &str) -> Vec<Binding> {
    let mut bindings = Vec::new();
    for service in directory.services.load().values() {
        for (kind, policy) in policy_refs(&service.spec) {
            let target = BindingTarget::Service(service.clone());
            bindings.push(Binding::new(target, kind, policy));
        }
    }
    if let Some(policy) = checkpoint_ref(&directory.config.load()) {
        let kind = PolicyKind::Checkpoint;
        bindings.push(Binding::new(BindingTarget::Process, kind, policy));
    }
    bindings.retain(|binding| binding.plugin == plugin);
    bindings
}

/// Binds `component` for every binding (blocking work off the async
/// threads); the first refusal names its binding.
pub async fn bind_all(
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
                let bound = binding.bind(&runtime, &component)?;
                Ok((binding, bound))
            })
            .collect()
    })
    .await
    .map_err(|e| PluginError::Internal(format!("bind task: {e}")))?
}

/// Binds the current version of `policy.plugin` as `kind` for `target`
/// (the blocking work off the async threads); refuses a plugin that is not
/// loaded, a world of another kind and a rejected config.
pub async fn bind_current(
    registry: &Registry,
    target: TargetName,
    kind: PolicyKind,
    policy: &PolicyRef,
) -> Result<Arc<BoundPlugin>, PluginError> {
    let component = registry
        .get(&policy.plugin)
        .ok_or_else(|| PluginError::NotFound(policy.plugin.clone()))?;
    let runtime = registry.runtime().clone();
    let config_json = policy.config.to_string();
    let limits = policy.limits.clone().unwrap_or_default();
    let headers = policy.headers.clone();
    tokio::task::spawn_blocking(move || {
        bind_checked(
            &runtime,
            &component,
            target,
            kind,
            &config_json,
            limits,
            &headers,
        )
    })
    .await
    .map_err(|e| PluginError::Internal(format!("bind task: {e}")))?
}

/// What a load reports: the component and the targets now running it.
pub fn installed(component: &Component, bindings: &[Binding], changed: bool) -> Installed {
    let targets = targets(bindings);
    Installed {
        name: component.name().to_string(),
        version: component.version().to_string(),
        world: component.kind(),
        services: targets
            .iter()
            .filter_map(|target| match target {
                TargetName::Service(name) => Some(name.clone()),
                TargetName::CheckpointPolicy => None,
            })
            .collect(),
        checkpoint_policy: targets.contains(&TargetName::CheckpointPolicy),
        changed,
    }
}

/// Swaps every prepared binding in. Cannot fail for a checked kind; an
/// error here is a bug, reported as internal.
pub fn swap_all(
    writes: &WritePlane,
    bound: &[(Binding, Arc<BoundPlugin>)],
) -> Result<(), PluginError> {
    for (binding, plugin) in bound {
        binding.swap(writes, plugin.clone()).map_err(|e| {
            PluginError::Internal(format!("swapping {}: {e}", binding.target.name()))
        })?;
    }
    Ok(())
}

/// The distinct targets of `bindings`, services first (by name), then the
/// process.
pub fn targets(bindings: &[Binding]) -> Vec<TargetName> {
    let mut names: Vec<TargetName> = bindings.iter().map(|b| b.target.name()).collect();
    names.sort();
    names.dedup();
    names
}
