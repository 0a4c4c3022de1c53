//! [`PolicyKind`]: which of the four worlds a plugin implements.
//!
//! The kind is derived from what a component exports, never from what the
//! operator claims, so a component uploaded as "a retry policy" that
//! actually implements `checkpoint-policy` is refused with a message that
//! names both (see [`crate::LoadError::WrongWorld`]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The WIT package every levee policy world lives in, without version.
pub const WIT_PACKAGE_NAME: &str = "levee:policy";
/// The version of the WIT package this host speaks.
pub const WIT_VERSION: &str = "0.2.0";
/// The WIT package every levee policy world lives in, with its version.
pub const WIT_PACKAGE: &str = "levee:policy@0.2.0";
/// The host functions a plugin may import (log, clock, random).
pub const HOST_INTERFACE: &str = "levee:policy/host@0.2.0";
/// The lent client request (retry and routing worlds).
pub const REQUEST_INTERFACE: &str = "levee:policy/request@0.2.0";
/// The type-only interface plugins may import (it has no functions).
pub const TYPES_INTERFACE: &str = "levee:policy/types@0.2.0";
/// Every `levee:policy` interface a plugin may import.
pub const ALLOWED_IMPORTS: [&str; 3] = [HOST_INTERFACE, REQUEST_INTERFACE, TYPES_INTERFACE];

/// The WASI packages a plugin may import (each at 0.2.x).
const GRANTED_PACKAGES: [&str; 6] = [
    "wasi:cli/",
    "wasi:clocks/",
    "wasi:filesystem/",
    "wasi:io/",
    "wasi:random/",
    "wasi:sockets/",
];

/// Whether `name` is a WASI 0.2 interface levee links (granting nothing).
pub fn is_granted_import(name: &str) -> bool {
    GRANTED_PACKAGES
        .iter()
        .any(|package| name.starts_with(package))
        && name
            .rsplit_once('@')
            .is_some_and(|(_, version)| version.starts_with("0.2."))
}

/// One of the four policy worlds of `wit/levee-policy.wit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PolicyKind {
    /// World `retry-policy`, export `levee:policy/retry@0.2.0`.
    #[serde(rename = "retry-policy", alias = "retry")]
    Retry,
    /// World `routing-policy`, export `levee:policy/routing@0.2.0`.
    #[serde(rename = "routing-policy", alias = "routing")]
    Routing,
    /// World `checkpoint-policy`, export `levee:policy/checkpoint@0.2.0`.
    #[serde(rename = "checkpoint-policy", alias = "checkpoint")]
    Checkpoint,
    /// World `write-policy`, export `levee:policy/write@0.2.0`.
    #[serde(rename = "write-policy", alias = "write")]
    Write,
}

impl PolicyKind {
    /// Every kind, in WIT order.
    pub const ALL: [PolicyKind; 4] = [
        PolicyKind::Retry,
        PolicyKind::Routing,
        PolicyKind::Checkpoint,
        PolicyKind::Write,
    ];

    /// The WIT world name, e.g. `retry-policy`.
    pub fn world_name(self) -> &'static str {
        match self {
            PolicyKind::Retry => "retry-policy",
            PolicyKind::Routing => "routing-policy",
            PolicyKind::Checkpoint => "checkpoint-policy",
            PolicyKind::Write => "write-policy",
        }
    }

    /// The fully qualified name of the interface the world exports, as it
    /// appears among a component's exports.
    pub fn export_name(self) -> &'static str {
        match self {
            PolicyKind::Retry => "levee:policy/retry@0.2.0",
            PolicyKind::Routing => "levee:policy/routing@0.2.0",
            PolicyKind::Checkpoint => "levee:policy/checkpoint@0.2.0",
            PolicyKind::Write => "levee:policy/write@0.2.0",
        }
    }

    /// The kind whose world exports `name`, if any.
    pub fn from_export_name(name: &str) -> Option<PolicyKind> {
        PolicyKind::ALL
            .into_iter()
            .find(|kind| kind.export_name() == name)
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.world_name())
    }
}

/// Error of [`PolicyKind::from_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown policy kind {0:?}: expected retry-policy, routing-policy, checkpoint-policy or write-policy"
)]
pub struct UnknownPolicyKind(pub String);

impl FromStr for PolicyKind {
    type Err = UnknownPolicyKind;

    /// Accepts the world name (`retry-policy`) or the short form (`retry`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "retry-policy" | "retry" => Ok(PolicyKind::Retry),
            "routing-policy" | "routing" => Ok(PolicyKind::Routing),
            "checkpoint-policy" | "checkpoint" => Ok(PolicyKind::Checkpoint),
            "write-policy" | "write" => Ok(PolicyKind::Write),
            other => Err(UnknownPolicyKind(other.chars().take(64).collect())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in PolicyKind::ALL {
            assert_eq!(kind.world_name().parse::<PolicyKind>(), Ok(kind));
            assert_eq!(PolicyKind::from_export_name(kind.export_name()), Some(kind));
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.world_name()));
            assert_eq!(serde_json::from_str::<PolicyKind>(&json).unwrap(), kind);
        }
        assert!("retry-policies".parse::<PolicyKind>().is_err());
        assert_eq!(
            PolicyKind::from_export_name("levee:policy/retry@0.1.0"),
            None
        );
        for kind in PolicyKind::ALL {
            assert!(kind.export_name().starts_with(WIT_PACKAGE_NAME));
            assert!(kind.export_name().ends_with(&format!("@{WIT_VERSION}")));
        }
        assert_eq!(WIT_PACKAGE, format!("{WIT_PACKAGE_NAME}@{WIT_VERSION}"));
    }

    #[test]
    fn only_wasi_0_2_of_six_packages_is_granted() {
        for granted in [
            "wasi:cli/environment@0.2.0",
            "wasi:io/streams@0.2.6",
            "wasi:sockets/tcp@0.2.3",
            "wasi:filesystem/preopens@0.2.0",
        ] {
            assert!(is_granted_import(granted), "{granted}");
        }
        for refused in [
            "wasi:http/outgoing-handler@0.2.0",
            "wasi:cli/environment@0.3.0",
            "wasi:cli/environment",
            "wasi:keyvalue/store@0.2.0-draft",
            "levee:policy/host@0.2.0",
            "wasi:clocksx/wall-clock@0.2.0",
        ] {
            assert!(!is_granted_import(refused), "{refused}");
        }
    }
}
