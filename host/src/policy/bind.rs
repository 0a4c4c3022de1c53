//! Which plugin serves which policy, and the swap that binds it.
//!
//! Retry, routing and write policies belong to a service (each `Service` holds its
//! guarded policies, bound from `services[].policies`); the checkpoint
//! policy belongs to the process, because the log it decides about is one
//! per process: one binding, the top-level `checkpoint`. Binding is an
//! atomic swap inside the guarded policy: requests in flight finish on the
//! version they started with.

use std::sync::Arc;

use levee_plugin::{BoundPlugin, CheckpointPolicy, LoadError, PolicyKind};

use crate::cluster::service::Service;
use crate::config::{Config, PolicyRef, ServiceSpec};

/// A service's policy bindings (`services[].policies`: retry, routing and
/// write),
/// as `(kind, binding)`. The checkpoint binding is the process's, see
/// [`checkpoint_ref`].
pub fn policy_refs(spec: &ServiceSpec) -> impl Iterator<Item = (PolicyKind, &PolicyRef)> {
    let policies = &spec.policies;
    [
        (PolicyKind::Retry, policies.retry.as_ref()),
        (PolicyKind::Routing, policies.routing.as_ref()),
        (PolicyKind::Write, policies.write.as_ref()),
    ]
    .into_iter()
    .filter_map(|(kind, binding)| binding.map(|binding| (kind, binding)))
}

/// The process's checkpoint binding (the top-level `checkpoint`), if any.
pub fn checkpoint_ref(config: &Config) -> Option<&PolicyRef> {
    config.checkpoint.as_ref()
}

/// Binds (or with `None` unbinds) a plugin of `kind` into `service`'s slot.
/// A service has no checkpoint slot: that kind is refused (the process's
/// checkpoint policy is bound with [`bind_checkpoint`]).
pub fn bind_policy(
    service: &Service,
    kind: PolicyKind,
    plugin: Option<Arc<BoundPlugin>>,
) -> Result<(), LoadError> {
    match kind {
        PolicyKind::Retry => service.policies.retry.bind(plugin).map(drop),
        PolicyKind::Routing => service.policies.routing.bind(plugin).map(drop),
        PolicyKind::Write => service.policies.write.bind(plugin).map(drop),
        PolicyKind::Checkpoint => Err(LoadError::Incompatible {
            world: kind,
            detail: format!(
                "service {:?} has no checkpoint policy: it is the process's (the top-level `checkpoint`)",
                service.name()
            ),
        }),
    }
}

/// Binds (or with `None` unbinds) the process's checkpoint plugin.
pub fn bind_checkpoint(
    checkpoint: &CheckpointPolicy,
    plugin: Option<Arc<BoundPlugin>>,
) -> Result<(), LoadError> {
    checkpoint.bind(plugin).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_lists_only_its_own_policies() {
        let config = Config::from_json(
            &serde_json::json!({
                "checkpoint": {"plugin": "checkpoint-interval"},
                "services": [{
                    "name": "kv",
                    "nodes": [{"id": "a", "url": "http://127.0.0.1:1"}],
                    "key": {"path_segment": 1},
                    "policies": {"routing": {"plugin": "route-affinity"}},
                }],
            })
            .to_string(),
        )
        .unwrap();
        let refs: Vec<(PolicyKind, &str)> = policy_refs(&config.services[0])
            .map(|(kind, binding)| (kind, binding.plugin.as_str()))
            .collect();
        assert_eq!(refs, [(PolicyKind::Routing, "route-affinity")]);
        assert_eq!(
            checkpoint_ref(&config).map(|binding| binding.plugin.as_str()),
            Some("checkpoint-interval")
        );
    }
}
