//! [`Slot`]: one binding's guarded policy, whatever its kind, for what is
//! the same across kinds: its shadow version, its recorded calls and
//! trials of a candidate version on them.
//!
//! The guarded policies are one generic type per kind
//! (`levee_plugin::policy::Guarded<K>`); the control plane reaches a
//! binding by (target, kind) and needs one type to hold.

use std::sync::Arc;

use levee_plugin::policy::{Comparison, ShadowReport};
use levee_plugin::{BoundPlugin, CheckpointPolicy, LoadError, PolicyKind};

use crate::cluster::service::Service;

/// A binding's guarded policy.
#[derive(Clone, Copy)]
pub enum Slot<'a> {
    Retry(&'a levee_plugin::RetryPolicy),
    Routing(&'a levee_plugin::RoutingPolicy),
    Write(&'a levee_plugin::WritePolicy),
    Checkpoint(&'a CheckpointPolicy),
}

/// Calls `$method` on whichever guarded policy `$slot` holds.
macro_rules! each_kind {
    ($slot:expr, $policy:ident => $call:expr) => {
        match $slot {
            Slot::Retry($policy) => $call,
            Slot::Routing($policy) => $call,
            Slot::Write($policy) => $call,
            Slot::Checkpoint($policy) => $call,
        }
    };
}

impl<'a> Slot<'a> {
    /// `service`'s slot of `kind`; a service has no checkpoint slot (the
    /// process's is [`Slot::Checkpoint`]).
    pub fn of_service(service: &'a Service, kind: PolicyKind) -> Option<Slot<'a>> {
        let policies = &service.policies;
        match kind {
            PolicyKind::Retry => Some(Slot::Retry(&policies.retry)),
            PolicyKind::Routing => Some(Slot::Routing(&policies.routing)),
            PolicyKind::Write => Some(Slot::Write(&policies.write)),
            PolicyKind::Checkpoint => None,
        }
    }

    /// The version deciding live, if a plugin is bound.
    pub fn live_version(self) -> Option<String> {
        each_kind!(self, policy => policy.plugin().map(|p| p.version().to_string()))
    }

    /// Sets (or with `None` clears) the shadow version.
    pub fn set_shadow(self, plugin: Option<Arc<BoundPlugin>>) -> Result<(), LoadError> {
        each_kind!(self, policy => policy.set_shadow(plugin))
    }

    /// What the shadow has counted, if one is set.
    pub fn shadow_report(self) -> Option<ShadowReport> {
        each_kind!(self, policy => policy.shadow_report())
    }

    /// Replays the recorded calls on `candidate`. **Blocking.**
    pub fn trial(self, candidate: &BoundPlugin) -> Result<Comparison, LoadError> {
        each_kind!(self, policy => policy.trial(candidate))
    }
}
