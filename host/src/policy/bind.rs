//! Which plugin serves which policy, and the swap that binds it.
//!
//! Retry and routing policies belong to a service (each `Service` holds its
//! guarded policies); the checkpoint policy belongs to the process, because
//! the log it decides about is one per process. Binding is an atomic swap
//! inside the guarded policy: requests in flight finish on the version they
//! started with.

use std::sync::Arc;

use levee_plugin::{BoundPlugin, CheckpointPolicy, LoadError, PolicyKind};

use crate::cluster::service::Service;
use crate::config::{PolicyRef, ServiceSpec};

/// The policy bindings of a service spec, as `(kind, binding)`.
pub fn policy_refs(spec: &ServiceSpec) -> impl Iterator<Item = (PolicyKind, &PolicyRef)> {
    let policies = &spec.policies;
    [
        (PolicyKind::Retry, policies.retry.as_ref()),
        (PolicyKind::Routing, policies.routing.as_ref()),
        (PolicyKind::Checkpoint, policies.checkpoint.as_ref()),
    ]
    .into_iter()
    .filter_map(|(kind, binding)| binding.map(|binding| (kind, binding)))
}

/// Binds (or with `None` unbinds) a plugin of `kind` for `service`; a
/// checkpoint plugin goes to the process's `checkpoint` policy.
pub fn bind_policy(
    service: &Service,
    checkpoint: &CheckpointPolicy,
    kind: PolicyKind,
    plugin: Option<Arc<BoundPlugin>>,
) -> Result<(), LoadError> {
    match kind {
        PolicyKind::Retry => service.policies.retry.bind(plugin).map(drop),
        PolicyKind::Routing => service.policies.routing.bind(plugin).map(drop),
        PolicyKind::Checkpoint => checkpoint.bind(plugin).map(drop),
    }
}
