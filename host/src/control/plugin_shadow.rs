//! Trying a plugin version on live traffic before it decides anything:
//! shadow versions, promotion, and trials on recorded calls.
//!
//! - **Shadow** (`PUT /admin/plugins/NAME/shadow`): the version is
//!   compiled and bound for every binding of NAME with that binding's
//!   config, limits and headers (a refusal names the binding, as a load
//!   does), then set as each slot's shadow (`levee_plugin::policy`: asked
//!   the same questions after each live decision, off the request path,
//!   answers only counted). The shadow belongs to the plugin, not to the
//!   configuration file, which names plugins, not versions; it is kept in
//!   memory only (an experiment, not a deployment: a restart ends it) and a
//!   service rebuilt by a service change gets it again ([`PluginHost::bind_for`]).
//! - **Promote** (`POST /admin/plugins/NAME/promote`): the shadow's bytes go
//!   through the one load path ([`PluginHost::install`]: checked, persisted,
//!   swapped) and the shadow ends.
//! - **Trial** (`POST /admin/plugins/NAME/trial`): a candidate is compiled
//!   and bound like a shadow, replays each binding's recorded calls, and the
//!   comparison is returned. Nothing is stored, swapped or kept.

use std::sync::Arc;

use bytes::Bytes;
use levee_plugin::policy::{Comparison, RECORDED_CALLS_MAX, ShadowReport};
use levee_plugin::{BoundPlugin, Component, PolicyKind};
use serde::Serialize;

use crate::base::metrics::LoadSource;
use crate::config::PolicyRef;
use crate::control::plugin_bindings::{Binding, bind_all, bind_checked, bindings_of};
use crate::control::plugin_error::{Installed, PluginError, TargetName};
use crate::control::plugin_host::{PluginHost, check_name};
use crate::control::shadow_versions::ShadowVersion;

/// What `PUT /admin/plugins/NAME/shadow` answers.
#[derive(Debug, Serialize)]
pub struct ShadowSet {
    pub plugin: String,
    pub version: String,
    pub world: PolicyKind,
    /// The bindings now evaluating it.
    pub bindings: Vec<String>,
}

/// One binding's shadow counts.
#[derive(Debug, Serialize)]
pub struct BindingShadow {
    pub target: String,
    pub kind: PolicyKind,
    /// The version deciding live.
    pub live_version: Option<String>,
    /// `None` when the binding has no shadow (e.g. bound after a restart).
    pub shadow: Option<ShadowReport>,
}

/// What `GET /admin/plugins/NAME/shadow` answers.
#[derive(Debug, Serialize)]
pub struct ShadowView {
    pub plugin: String,
    /// The shadow version, if one is set.
    pub version: Option<String>,
    pub bindings: Vec<BindingShadow>,
}

/// One binding's trial.
#[derive(Debug, Serialize)]
pub struct BindingTrial {
    pub target: String,
    pub kind: PolicyKind,
    pub live_version: Option<String>,
    /// Calls replayed (at most [`RECORDED_CALLS_MAX`]).
    pub recorded_calls: usize,
    #[serde(flatten)]
    pub comparison: Comparison,
}

/// What `POST /admin/plugins/NAME/trial` answers.
#[derive(Debug, Serialize)]
pub struct TrialView {
    pub plugin: String,
    pub candidate_version: String,
    pub world: PolicyKind,
    pub recorded_calls_max: usize,
    pub bindings: Vec<BindingTrial>,
}

fn target_label(binding: &Binding) -> String {
    binding.target.name().to_string()
}

impl PluginHost {
    /// Compiles `bytes` and binds it for every binding of `name` (each with
    /// its own config, limits and headers); refuses an unbound plugin.
    async fn bind_candidate(
        &self,
        name: &str,
        bytes: Bytes,
    ) -> Result<(Arc<Component>, Vec<(Binding, Arc<BoundPlugin>)>), PluginError> {
        check_name(name)?;
        if bytes.len() as u64 > self.upload_bytes_max() {
            return Err(PluginError::TooLarge {
                component_bytes: bytes.len() as u64,
                limit_bytes: self.upload_bytes_max(),
            });
        }
        let bindings = bindings_of(self.directory(), name);
        if bindings.is_empty() {
            return Err(PluginError::Unbound(name.to_string()));
        }
        let component = self.compile(name, bytes).await?;
        let bound = bind_all(self.registry(), &component, &bindings).await?;
        Ok((component, bound))
    }

    /// Sets `bytes` as the shadow version of `name` for every binding.
    pub async fn set_shadow(&self, name: &str, bytes: Bytes) -> Result<ShadowSet, PluginError> {
        let _changes = self.lock().await;
        let (component, bound) = self.bind_candidate(name, bytes.clone()).await?;
        for (binding, plugin) in &bound {
            if let Some(slot) = binding.slot(self.writes()) {
                slot.set_shadow(Some(plugin.clone()))
                    .map_err(|e| PluginError::Internal(format!("setting the shadow: {e}")))?;
            }
        }
        let set = ShadowSet {
            plugin: name.to_string(),
            version: component.version().to_string(),
            world: component.kind(),
            bindings: bound.iter().map(|(b, _)| target_label(b)).collect(),
        };
        tracing::info!(plugin = name, version = %set.version, bindings = ?set.bindings, "shadow version set");
        let shadow = ShadowVersion { component, bytes };
        self.shadows().insert(name, shadow);
        Ok(set)
    }

    /// Ends `name`'s shadow on every binding.
    pub async fn clear_shadow(&self, name: &str) -> Result<(), PluginError> {
        check_name(name)?;
        let _changes = self.lock().await;
        self.clear_shadow_locked(name)
    }

    fn clear_shadow_locked(&self, name: &str) -> Result<(), PluginError> {
        if !self.shadows().forget(name) {
            return Err(PluginError::NoShadow(name.to_string()));
        }
        for binding in bindings_of(self.directory(), name) {
            if let Some(slot) = binding.slot(self.writes()) {
                slot.set_shadow(None)
                    .map_err(|e| PluginError::Internal(format!("clearing the shadow: {e}")))?;
            }
        }
        tracing::info!(plugin = name, "shadow version cleared");
        Ok(())
    }

    /// Makes `name`'s shadow version live (the one load path), then ends
    /// the shadow.
    pub async fn promote(&self, name: &str) -> Result<Installed, PluginError> {
        check_name(name)?;
        let _changes = self.lock().await;
        let shadow = self
            .shadows()
            .get(name)
            .ok_or_else(|| PluginError::NoShadow(name.to_string()))?;
        let installed = self
            .install_locked(name, shadow.bytes, LoadSource::Promote)
            .await?;
        self.clear_shadow_locked(name)?;
        Ok(installed)
    }

    /// `name`'s shadow counts per binding.
    pub fn shadow_view(&self, name: &str) -> Result<ShadowView, PluginError> {
        check_name(name)?;
        let version = self
            .shadows()
            .get(name)
            .map(|shadow| shadow.component.version().to_string());
        if version.is_none() && self.registry().get(name).is_none() {
            return Err(PluginError::NotFound(name.to_string()));
        }
        let bindings = bindings_of(self.directory(), name)
            .iter()
            .filter_map(|binding| {
                let slot = binding.slot(self.writes())?;
                Some(BindingShadow {
                    target: target_label(binding),
                    kind: binding.kind,
                    live_version: slot.live_version(),
                    shadow: slot.shadow_report(),
                })
            })
            .collect();
        Ok(ShadowView {
            plugin: name.to_string(),
            version,
            bindings,
        })
    }

    /// Replays every binding's recorded calls on the candidate `bytes`;
    /// stores and swaps nothing. Does not take the change lock: it changes
    /// nothing, and a trial of a slow candidate must not hold up loads.
    pub async fn trial(&self, name: &str, bytes: Bytes) -> Result<TrialView, PluginError> {
        let (component, bound) = self.bind_candidate(name, bytes).await?;
        let writes = self.writes().clone();
        let bindings = tokio::task::spawn_blocking(move || {
            bound
                .iter()
                .filter_map(|(binding, candidate)| {
                    let slot = binding.slot(&writes)?;
                    let comparison = slot.trial(candidate).ok()?;
                    Some(BindingTrial {
                        target: target_label(binding),
                        kind: binding.kind,
                        live_version: slot.live_version(),
                        recorded_calls: comparison.compared as usize,
                        comparison,
                    })
                })
                .collect()
        })
        .await
        .map_err(|e| PluginError::Internal(format!("trial task: {e}")))?;
        Ok(TrialView {
            plugin: name.to_string(),
            candidate_version: component.version().to_string(),
            world: component.kind(),
            recorded_calls_max: RECORDED_CALLS_MAX,
            bindings,
        })
    }

    /// The shadow of `policy.plugin`, if one is set, bound for `target`
    /// (a service being rebuilt). A shadow the new binding refuses is
    /// skipped with a warning: a shadow never blocks a service change.
    pub async fn bind_shadow(
        &self,
        target: TargetName,
        kind: PolicyKind,
        policy: &PolicyRef,
    ) -> Option<Arc<BoundPlugin>> {
        let shadow = self.shadows().get(&policy.plugin)?;
        let runtime = self.registry().runtime().clone();
        let (config_json, headers) = (policy.config.to_string(), policy.headers.clone());
        let limits = policy.limits.clone().unwrap_or_default();
        let label = target.to_string();
        let bound = tokio::task::spawn_blocking(move || {
            let component = &shadow.component;
            bind_checked(
                &runtime,
                component,
                target,
                kind,
                &config_json,
                limits,
                &headers,
            )
        })
        .await;
        match bound {
            Ok(Ok(plugin)) => Some(plugin),
            Ok(Err(error)) => {
                tracing::warn!(plugin = %policy.plugin, target = %label, %error, "shadow version not bound: the live version serves without it");
                None
            }
            Err(error) => {
                tracing::warn!(plugin = %policy.plugin, %error, "shadow bind task failed");
                None
            }
        }
    }
}
