//! Policy plugins in an OCI registry: push a component as a Wasm OCI
//! artifact, pull one back **by digest**, verified, bounded and cached.
//!
//! # The artifact
//! What the Wasm OCI artifact layout (CNCF TAG Runtime; `oci-wasm`, Spin,
//! wasmCloud) says, built by hand here ([`artifact`]):
//! ```text
//! manifest  application/vnd.oci.image.manifest.v1+json
//!   config  application/vnd.wasm.config.v0+json  {"architecture":"wasm","os":"wasip2","layerDigests":[..],"component":{..}}
//!   layer   application/wasm                      the component's bytes, exactly one layer
//! ```
//! Debian's `docker-registry` 2.8 (the CNCF distribution registry) accepts
//! these media types as they are (`tests/oci.rs` pushes to it). The config's
//! `created` is fixed at the Unix epoch, so the same file always pushes to
//! the same manifest digest.
//!
//! # Digests only
//! A pull names a manifest digest (`REGISTRY/REPO@sha256:...`; a tag is
//! refused, [`reference::Pinned`]): what a tag points at can change under
//! a running service, a digest cannot. [`pull`] checks the manifest's
//! SHA-256 against that digest and the layer's against the manifest, and
//! refuses anything larger than the bounds below before reading past them.
//!
//! # The cache
//! Verified manifests and layers are kept under `<data_dir>/oci-cache/`
//! by their digest ([`cache`]), written atomically and verified again
//! whenever they are read: a later pull of the same digest needs no
//! registry, which is what keeps an instance loading plugins while its
//! registry is down (Istio #53891: a cache that expired broke updates).
//!
//! # Where it runs
//! [`push`] is `levee plugin push` (the binary, which validates the file
//! first). [`install::install`] is `PUT /admin/plugins/NAME/oci`: pull,
//! then the ordinary load path ([`super::plugin_host::PluginHost::install`]:
//! validate, compile, check bindings, persist, swap). A failed pull or a
//! refused component keeps the last good version serving and is recorded
//! as the plugin's `last_error` (Istio #23836, #29989: a Wasm fetch failure
//! rejected configuration or failed requests).
//!
//! # Transport
//! TLS (rustls on ring, the system's roots) for every registry except a
//! loopback one (`127.0.0.0/8`, `[::1]`, `localhost`), which is spoken to
//! in plain HTTP, as Docker does; `plain_http` forces plain HTTP for
//! another (the digests still authenticate what is pulled).

pub mod artifact;
pub mod cache;
pub(crate) mod install;
pub mod pull;
pub mod push;
pub mod reference;
pub mod transport;

use std::time::Duration;

use thiserror::Error;

pub use pull::{FetchedFrom, Pulled, pull};
pub use push::{Pushed, push};
pub use reference::{Digest, Pinned};

/// Largest component pulled: the plugin host's component bound.
pub const COMPONENT_BYTES_MAX: u64 = levee_plugin::runtime::COMPONENT_BYTES_MAX_DEFAULT as u64;
/// Largest manifest read (the distribution registry's own bound).
pub const MANIFEST_BYTES_MAX: u64 = 4 * 1024 * 1024;
/// Longest a pull may take, from the first request to the last byte.
pub const PULL_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a TCP (and TLS) connect may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Credentials for the registry, from the environment of the process that
/// pushes or pulls: `LEVEE_REGISTRY_USERNAME` and `LEVEE_REGISTRY_PASSWORD`
/// (both, or neither: anonymous, with a bearer token when the registry
/// asks for one).
pub const USERNAME_ENV: &str = "LEVEE_REGISTRY_USERNAME";
pub const PASSWORD_ENV: &str = "LEVEE_REGISTRY_PASSWORD";

/// How to reach a registry.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Plain HTTP even for a registry that is not on loopback.
    pub plain_http: bool,
}

/// Why a push or a pull failed. Every message is safe to show the operator.
#[derive(Debug, Error)]
pub enum OciError {
    /// The reference cannot be used (not parseable, no digest, not sha256).
    #[error("{0}")]
    Reference(String),
    /// The registry could not be reached or answered with an error.
    #[error("registry {registry}: {reason}")]
    Registry { registry: String, reason: String },
    /// Bytes whose SHA-256 is not the digest that names them.
    #[error(
        "registry {registry}: {what}: digest mismatch: expected {expected}, it served {actual}"
    )]
    DigestMismatch {
        registry: String,
        what: &'static str,
        expected: String,
        actual: String,
    },
    /// The registry served more than the bound or the declared size.
    #[error("{0}")]
    Oversized(String),
    /// The artifact is not a Wasm component artifact levee can load.
    #[error("{0}")]
    Artifact(String),
    /// Local failure (the TLS setup, a task).
    #[error("{0}")]
    Local(String),
}

impl OciError {
    /// True when the registry is at fault (unreachable, an error answer,
    /// bytes that are not what was asked for): a gateway failure, 502.
    /// False for what the artifact or the reference itself is (422, 400).
    pub fn is_registry_fault(&self) -> bool {
        matches!(
            self,
            OciError::Registry { .. } | OciError::DigestMismatch { .. } | OciError::Oversized(_)
        )
    }
}
