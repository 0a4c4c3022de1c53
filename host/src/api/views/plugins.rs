//! What the admin API and the status page show about plugins: every
//! plugin the registry knows (version, world, status, counters) and which
//! bindings use it.

use std::collections::BTreeMap;
use std::sync::Arc;

use levee_plugin::{BoundPlugin, PluginInfo, PluginStatus, PolicyKind};
use serde::Serialize;

use crate::api::state::AppState;
use crate::policy::bind::{checkpoint_ref, policy_refs};

/// One plugin as the admin API and the status page show it.
#[derive(Debug, Clone, Serialize)]
pub struct PluginView {
    pub name: String,
    /// The world of the current version (`retry-policy`, ...).
    pub world: Option<PolicyKind>,
    /// SHA-256 of the current version, hex.
    pub version: Option<String>,
    /// When the current version was loaded (Unix epoch, ms).
    pub loaded_at_ms: Option<u64>,
    pub status: PluginStatus,
    pub quarantine_reason: Option<String>,
    pub size_bytes: Option<usize>,
    /// Counters of the current version, summed over its bindings.
    pub calls: u64,
    /// Routing answers served from the plan cache (no plugin code ran).
    pub cached: u64,
    pub fallbacks: u64,
    pub traps: u64,
    pub timeouts: u64,
    pub quarantined_calls: u64,
    /// Services whose configuration names this plugin.
    pub services: Vec<String>,
    /// True when the process's checkpoint binding (the top-level
    /// `checkpoint`) names this plugin.
    pub checkpoint_policy: bool,
    /// What each binding runs right now (during a swap, briefly, two
    /// bindings may show different versions).
    pub bindings: Vec<BindingView>,
    /// Versions `rollback` can return to, newest first.
    pub previous_versions: Vec<String>,
    pub last_error: Option<String>,
    pub last_error_at_ms: Option<u64>,
    /// The shadow version and its counts summed over the bindings, when
    /// one is set (details: `GET /admin/plugins/NAME/shadow`).
    pub shadow: Option<ShadowSummary>,
}

/// A shadow version's counts, summed over its plugin's bindings.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ShadowSummary {
    pub version: String,
    pub compared: u64,
    pub agreed: u64,
    pub disagreed: u64,
    pub failed: u64,
    pub dropped: u64,
    pub quarantined: bool,
}

/// `name`'s shadow summary, if it has a shadow.
fn shadow_summary(state: &AppState, name: &str) -> Option<ShadowSummary> {
    let view = state.control.plugins.shadow_view(name).ok()?;
    let mut summary = ShadowSummary {
        version: view.version?,
        ..ShadowSummary::default()
    };
    for report in view.bindings.iter().filter_map(|b| b.shadow.as_ref()) {
        let counts = &report.comparison;
        summary.compared += counts.compared;
        summary.agreed += counts.agreed;
        summary.disagreed += counts.disagreed;
        summary.failed += counts.failed;
        summary.dropped += report.dropped;
        summary.quarantined |= report.quarantined;
    }
    Some(summary)
}

/// One use of a plugin: a service's `policies.<kind>`, or the process's
/// checkpoint binding.
#[derive(Debug, Clone, Serialize)]
pub struct BindingView {
    /// `service` or `process` (the top-level `checkpoint`).
    pub scope: BindingScope,
    /// The service whose slot it is; `None` for the process's binding.
    pub service: Option<String>,
    pub kind: PolicyKind,
    /// The version bound in that slot, `None` while unbound.
    pub version: Option<String>,
}

/// Whose slot a binding fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BindingScope {
    /// A service's `policies.<kind>`.
    Service,
    /// The process's checkpoint policy (the top-level `checkpoint`).
    Process,
}

/// Every plugin the registry knows, plus any a binding names that is not
/// loaded (shown as failed, so a typo in a binding is visible).
pub fn views(state: &AppState) -> Vec<PluginView> {
    let registry = state.control.plugins.registry();
    let bindings = current_bindings(state);
    let mut views: BTreeMap<String, PluginView> = registry
        .list()
        .into_iter()
        .map(|info| (info.name.clone(), view_of(info)))
        .collect();
    for (plugin, uses) in bindings {
        let view = views
            .entry(plugin.clone())
            .or_insert_with(|| missing(&plugin));
        for (binding, bound) in uses {
            if let Some(bound) = &bound
                && Some(bound.version()) == view.version.as_deref()
            {
                add_counters(view, bound);
            }
            match &binding.service {
                Some(service) => view.services.push(service.clone()),
                None => view.checkpoint_policy = true,
            }
            view.bindings.push(binding);
        }
        view.services.sort();
        view.services.dedup();
    }
    for view in views.values_mut() {
        view.shadow = shadow_summary(state, &view.name);
    }
    views.into_values().collect()
}

fn view_of(info: PluginInfo) -> PluginView {
    let current = info.current.as_ref();
    PluginView {
        name: info.name.clone(),
        world: current.map(|c| c.kind),
        version: current.map(|c| c.version.clone()),
        loaded_at_ms: current.map(|c| c.loaded_at_unix_ms),
        status: info.status,
        quarantine_reason: current.and_then(|c| c.quarantine_reason.clone()),
        size_bytes: current.map(|c| c.size_bytes),
        calls: 0,
        cached: 0,
        fallbacks: 0,
        traps: 0,
        timeouts: 0,
        quarantined_calls: 0,
        services: Vec::new(),
        checkpoint_policy: false,
        bindings: Vec::new(),
        previous_versions: info.previous_versions,
        last_error: info.last_error,
        last_error_at_ms: info.last_error_at_unix_ms,
        shadow: None,
    }
}

fn missing(name: &str) -> PluginView {
    let mut view = view_of(PluginInfo {
        name: name.to_string(),
        status: PluginStatus::Failed,
        current: None,
        previous_versions: Vec::new(),
        last_error: None,
        last_error_at_unix_ms: None,
    });
    view.last_error =
        Some("not loaded: no such plugin in the plugin directory or the store".into());
    view
}

fn add_counters(view: &mut PluginView, bound: &BoundPlugin) {
    let counters = bound.stats().counters;
    view.calls += counters.calls;
    view.cached += counters.cached;
    view.fallbacks += counters.fallbacks;
    view.traps += counters.traps;
    view.timeouts += counters.timeouts;
    view.quarantined_calls += counters.quarantined_calls;
}

/// A binding and the plugin its slot holds.
type BindingSlot = (BindingView, Option<Arc<BoundPlugin>>);

/// Per plugin name: each binding (services', then the process's) and what
/// its slot holds.
fn current_bindings(state: &AppState) -> BTreeMap<String, Vec<BindingSlot>> {
    let mut bindings: BTreeMap<String, Vec<BindingSlot>> = BTreeMap::new();
    let mut add = |plugin: &str, service: Option<&str>, kind, bound: Option<Arc<BoundPlugin>>| {
        let bound = bound.filter(|bound| bound.name() == plugin);
        let view = BindingView {
            scope: match service {
                Some(_) => BindingScope::Service,
                None => BindingScope::Process,
            },
            service: service.map(str::to_string),
            kind,
            version: bound.as_ref().map(|b| b.version().to_string()),
        };
        bindings
            .entry(plugin.to_string())
            .or_default()
            .push((view, bound));
    };
    for service in state.directory.services.load().values() {
        for (kind, policy) in policy_refs(&service.spec) {
            let bound = match kind {
                PolicyKind::Retry => service.policies.retry.plugin(),
                PolicyKind::Routing => service.policies.routing.plugin(),
                PolicyKind::Write => service.policies.write.plugin(),
                PolicyKind::Checkpoint => None,
            };
            add(&policy.plugin, Some(service.name()), kind, bound);
        }
    }
    if let Some(policy) = checkpoint_ref(&state.directory.config.load()) {
        let bound = state.writes.checkpoints.policy.plugin();
        add(&policy.plugin, None, PolicyKind::Checkpoint, bound);
    }
    bindings
}

/// Bounds a name echoed back in an error: it is untrusted input.
pub fn truncated(name: &str) -> String {
    name.chars().take(80).collect()
}
