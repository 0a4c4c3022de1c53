//! What plugin operations answer: [`PluginError`] (why one was refused,
//! every message safe to show the operator), [`Installed`] (what now
//! serves) and [`TargetName`] (how both name a binding's target).

use std::fmt;

use levee_plugin::{LoadError, PolicyKind, RegistryError};
use serde::Serialize;
use thiserror::Error;

use crate::control::plugin_store::StoreError;

/// Why a plugin operation was refused. Every message is safe to show the
/// operator and says exactly what is wrong.
#[derive(Debug, Error)]
pub enum PluginError {
    #[error("invalid plugin name {name:?}: {reason}")]
    BadName { name: String, reason: String },
    #[error("component is {component_bytes} bytes, more than the {limit_bytes} allowed")]
    TooLarge {
        component_bytes: u64,
        limit_bytes: u64,
    },
    /// Not a component, not a policy, forbidden imports, ...
    #[error("{0}")]
    Load(LoadError),
    /// A binding of the plugin (a service's, or the checkpoint policy's)
    /// cannot use this version.
    #[error("{target} ({kind} binding): {reason}")]
    Binding {
        target: TargetName,
        kind: PolicyKind,
        reason: LoadError,
    },
    #[error("no plugin named {0:?}")]
    NotFound(String),
    #[error("plugin {name:?} is used by {}; unbind it first", listed(users))]
    InUse {
        name: String,
        users: Vec<TargetName>,
    },
    #[error("plugin {0:?} has no previous version to roll back to")]
    NoPrevious(String),
    #[error("plugin {0:?} has no shadow version (upload one with PUT /admin/plugins/{0}/shadow)")]
    NoShadow(String),
    /// Shadows and trials compare against live bindings: none, nothing to
    /// compare with.
    #[error(
        "no service or checkpoint policy is bound to plugin {0:?}: there is no live decision to compare with"
    )]
    Unbound(String),
    #[error("the plugin registry is full ({max} plugins)")]
    Full { max: usize },
    /// The plugin's drop-in file could not be removed; nothing was deleted.
    #[error("{0}")]
    DropInFile(String),
    /// Storage or task failure: the detail is for the log.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for PluginError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::BadName { name, reason } => PluginError::BadName { name, reason },
            StoreError::TooLarge { component_bytes } => PluginError::TooLarge {
                component_bytes,
                limit_bytes: crate::control::plugin_store::COMPONENT_BYTES_MAX,
            },
            StoreError::NotStored { name } => PluginError::NotFound(name),
            StoreError::NoPrevious { name } => PluginError::NoPrevious(name),
            StoreError::Full => PluginError::Full {
                max: crate::control::plugin_store::PLUGINS_MAX,
            },
            other => PluginError::Internal(other.to_string()),
        }
    }
}

impl From<RegistryError> for PluginError {
    fn from(error: RegistryError) -> Self {
        match error {
            RegistryError::InvalidName(name) => PluginError::BadName {
                name,
                reason: "use 1 to 64 of a-z, 0-9, '_' and '-'".into(),
            },
            RegistryError::NotFound(name) => PluginError::NotFound(name),
            RegistryError::NoPreviousVersion(name) => PluginError::NoPrevious(name),
            RegistryError::Full { max } => PluginError::Full { max },
            RegistryError::Load(error) => PluginError::Load(error),
        }
    }
}

/// A successful load: what now serves.
#[derive(Debug, Clone, Serialize)]
pub struct Installed {
    pub name: String,
    /// SHA-256 of the component, hex.
    pub version: String,
    pub world: PolicyKind,
    /// Services now bound to this version.
    pub services: Vec<String>,
    /// True when the process's checkpoint policy (the top-level
    /// `checkpoint`) is now bound to this version.
    pub checkpoint_policy: bool,
    /// False when this version was already current (nothing changed).
    pub changed: bool,
}

/// A binding's target as messages name it: `service "kv"` or `the
/// checkpoint policy`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum TargetName {
    Service(String),
    /// The process's checkpoint policy (top-level `checkpoint`).
    CheckpointPolicy,
}

impl fmt::Display for TargetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetName::Service(name) => write!(f, "service {name:?}"),
            TargetName::CheckpointPolicy => f.write_str("the checkpoint policy"),
        }
    }
}

/// `service "a", the checkpoint policy`.
fn listed(users: &[TargetName]) -> String {
    let users: Vec<String> = users.iter().map(ToString::to_string).collect();
    users.join(", ")
}
