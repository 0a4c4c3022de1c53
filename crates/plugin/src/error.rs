//! Typed errors of the plugin runtime.
//!
//! Two families, because they reach two different audiences:
//! - [`LoadError`] answers an operator who tried to load, bind or check a
//!   plugin. Every variant says exactly what is wrong (which world was
//!   expected and what the component exports, which imports are forbidden,
//!   the plugin's own reason for rejecting its config, ...) so the admin API
//!   and `levee plugin check` can show it verbatim.
//! - [`Failure`] is why one call on the request path did not use the plugin's
//!   answer. It never reaches the client: the native policy answers instead,
//!   and the failure is counted and reported in [`crate::Decided::source`].
//!   Only the guest's own faults ([`Failure::is_guest_fault`]: a trap, the
//!   deadline, the memory limit, an invalid answer, a failed `configure`)
//!   count toward quarantine; the host running out of room for an instance
//!   ([`Failure::PoolExhausted`], [`Failure::HostCapacity`]) says nothing
//!   about the plugin, so it falls back without counting: quarantine is per
//!   version, and one busy service must not cost every service its plugin.

use std::fmt;

use serde::Serialize;

use crate::kind::{HOST_INTERFACE, PolicyKind, REQUEST_INTERFACE, WIT_PACKAGE};

/// Why a plugin could not be loaded, bound or checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// Empty input, garbage, or a core module instead of a component.
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),

    /// The input exceeds [`crate::RuntimeOptions::component_bytes_max`].
    #[error("component is {size_bytes} bytes, more than the {max_bytes} allowed")]
    TooLarge { size_bytes: usize, max_bytes: usize },

    /// The bytes parse as a component but fail validation or compilation.
    #[error("invalid WebAssembly component: {0}")]
    Invalid(String),

    /// The component implements a different world than the one required.
    #[error(
        "expected world {expected} (export {}), but the component exports [{}]",
        expected.export_name(),
        exports.join(", ")
    )]
    WrongWorld {
        expected: PolicyKind,
        exports: Vec<String>,
    },

    /// The component exports none of the four policy interfaces.
    #[error(
        "not a levee policy: expected one of the worlds retry-policy (export {}), \
         routing-policy (export {}), checkpoint-policy (export {}) or write-policy (export {}), \
         but the component exports [{}]",
        PolicyKind::Retry.export_name(),
        PolicyKind::Routing.export_name(),
        PolicyKind::Checkpoint.export_name(),
        PolicyKind::Write.export_name(),
        exports.join(", ")
    )]
    NotAPolicy { exports: Vec<String> },

    /// The component exports more than one policy interface.
    #[error("ambiguous policy: the component exports several policy interfaces [{}]; a plugin implements exactly one world", exports.join(", "))]
    Ambiguous { exports: Vec<String> },

    /// The component was built against another version of the policy
    /// WIT (e.g. `levee:policy@0.1.0`, which passed strings on every call).
    /// `found` is the package and version it names, e.g.
    /// `levee:policy@0.1.0`; `interfaces` are its imports and exports that
    /// name it.
    #[error(
        "built against {found}; this host speaks {WIT_PACKAGE}: rebuild it against wit/levee-policy.wit \
         (the component names [{}])",
        interfaces.join(", ")
    )]
    WitVersion {
        found: String,
        interfaces: Vec<String>,
    },

    /// The component imports something a plugin may not have.
    #[error(
        "forbidden imports [{}]: a policy plugin may import only {HOST_INTERFACE} and {REQUEST_INTERFACE}, \
         and the WASI 0.2.x packages cli, clocks, filesystem, io, random and sockets (which grant nothing)",
        imports.join(", ")
    )]
    ForbiddenImports { imports: Vec<String> },

    /// Names match but the types do not (e.g. built against another WIT).
    #[error("component does not match world {world}: {detail}")]
    Incompatible { world: PolicyKind, detail: String },

    /// The config handed to `configure` is too big to even offer.
    #[error("config is {size_bytes} bytes, more than the {max_bytes} allowed")]
    ConfigTooLarge { size_bytes: usize, max_bytes: usize },

    /// The plugin's `configure` returned an error; this is its reason.
    #[error("plugin rejected its config: {0}")]
    ConfigRejected(String),

    /// Instantiation or `configure` trapped, timed out or hit a limit.
    #[error("instantiating the plugin failed: {0}")]
    Instantiate(String),

    /// A [`crate::Limits`] value is out of range.
    #[error("invalid limits: {0}")]
    InvalidLimits(String),

    /// A binding's header allowlist ([`crate::HeaderAllowlist`]) is
    /// refused: a credential, a bad or duplicate name, too many names.
    #[error("invalid header allowlist: {0}")]
    InvalidHeaders(String),
}

/// Why the runtime itself could not start.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A [`crate::RuntimeOptions`] value is out of range.
    #[error("invalid runtime options: {0}")]
    InvalidOptions(String),
    /// wasmtime refused the engine configuration.
    #[error("creating the wasmtime engine failed: {0}")]
    Engine(String),
    /// The compiled-code cache directory could not be prepared.
    #[error("plugin cache at {path}: {source}")]
    Cache {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The epoch ticker thread could not be spawned.
    #[error("spawning the epoch ticker thread failed: {0}")]
    Ticker(#[source] std::io::Error),
}

/// Why one plugin call was answered by the native policy instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "kebab-case")]
pub enum Failure {
    /// The guest trapped (panic, `unreachable`, stack overflow, bad memory
    /// access, ...). The detail is wasmtime's trap description.
    Trap(String),
    /// The call ran past its CPU deadline (epoch interruption).
    Timeout,
    /// The guest tried to grow memory or a table past its limit.
    MemoryLimit,
    /// The guest answered, but the answer broke a rule (too long, ...),
    /// or handed the host more bytes in one value (an answer, or one
    /// import call's arguments) than its binding's hostcall bound
    /// ([`crate::limits::hostcall_fuel_bytes`]), which wasmtime refuses
    /// before copying them.
    InvalidOutput(String),
    /// Every instance of the binding's pool is busy and the pool is at its
    /// maximum. Host capacity: not counted toward quarantine.
    PoolExhausted,
    /// A fresh instance could not be created for a host reason: the
    /// engine's pooling allocator is full (every plugin's instances count
    /// against it) or the host is out of memory. Host capacity: not
    /// counted toward quarantine.
    HostCapacity(String),
    /// A fresh instance could not be configured: its `configure` trapped,
    /// or rejected the config, or declared other route traits than at bind.
    Instantiate(String),
}

impl LoadError {
    /// The component names the right interfaces but its types are not
    /// this host's (e.g. built against an earlier draft of the WIT).
    pub(crate) fn type_mismatch(world: PolicyKind, error: &wasmtime::Error) -> LoadError {
        LoadError::Incompatible {
            world,
            detail: format!(
                "{error:#} (rebuild it against this host's wit/levee-policy.wit, {WIT_PACKAGE})"
            ),
        }
    }
}

impl Failure {
    /// A short stable label, for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Failure::Trap(_) => "trap",
            Failure::Timeout => "timeout",
            Failure::MemoryLimit => "memory-limit",
            Failure::InvalidOutput(_) => "invalid-output",
            Failure::PoolExhausted => "pool-exhausted",
            Failure::HostCapacity(_) => "host-capacity",
            Failure::Instantiate(_) => "instantiate",
        }
    }

    /// Whether the plugin itself is to blame (it counts toward quarantine),
    /// rather than the host lacking room for an instance.
    pub fn is_guest_fault(&self) -> bool {
        match self {
            Failure::Trap(_)
            | Failure::Timeout
            | Failure::MemoryLimit
            | Failure::InvalidOutput(_)
            | Failure::Instantiate(_) => true,
            Failure::PoolExhausted | Failure::HostCapacity(_) => false,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Trap(detail) => write!(f, "plugin trapped: {detail}"),
            Failure::Timeout => f.write_str("plugin exceeded its CPU deadline"),
            Failure::MemoryLimit => f.write_str("plugin exceeded its memory limit"),
            Failure::InvalidOutput(detail) => {
                write!(f, "plugin returned an invalid answer: {detail}")
            }
            Failure::PoolExhausted => f.write_str("plugin instance pool exhausted"),
            Failure::HostCapacity(detail) => {
                write!(f, "no room on the host for a plugin instance: {detail}")
            }
            Failure::Instantiate(detail) => write!(f, "plugin instantiation failed: {detail}"),
        }
    }
}

impl std::error::Error for Failure {}

/// Why a [`crate::Registry`] operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// Names are `[a-z0-9_-]{1,64}`: they become file names elsewhere.
    #[error("invalid plugin name {0:?}: use 1 to 64 of a-z, 0-9, '_' and '-'")]
    InvalidName(String),
    #[error("no plugin named {0:?}")]
    NotFound(String),
    #[error("plugin {0:?} has no previous version to roll back to")]
    NoPreviousVersion(String),
    #[error("the registry already holds {max} plugins")]
    Full { max: usize },
    #[error(transparent)]
    Load(#[from] LoadError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_world_names_expected_and_actual_exports() {
        let error = LoadError::WrongWorld {
            expected: PolicyKind::Retry,
            exports: vec!["levee:policy/checkpoint@0.2.0".into()],
        };
        assert_eq!(
            error.to_string(),
            "expected world retry-policy (export levee:policy/retry@0.2.0), \
             but the component exports [levee:policy/checkpoint@0.2.0]"
        );
    }

    #[test]
    fn forbidden_imports_are_named() {
        let error = LoadError::ForbiddenImports {
            imports: vec!["wasi:cli/environment@0.2.0".into()],
        };
        let text = error.to_string();
        assert!(text.contains("wasi:cli/environment@0.2.0"), "{text}");
        assert!(text.contains(HOST_INTERFACE), "{text}");
        assert!(text.contains(REQUEST_INTERFACE), "{text}");
    }

    #[test]
    fn an_old_wit_version_names_both_versions() {
        let error = LoadError::WitVersion {
            found: "levee:policy@0.1.0".into(),
            interfaces: vec!["levee:policy/retry@0.1.0".into()],
        };
        assert_eq!(
            error.to_string(),
            "built against levee:policy@0.1.0; this host speaks levee:policy@0.2.0: \
             rebuild it against wit/levee-policy.wit (the component names [levee:policy/retry@0.1.0])"
        );
    }
}
