//! [`push`]: a component to `REGISTRY/REPOSITORY:TAG` as a Wasm OCI
//! artifact, answering the manifest digest to bind.
//!
//! The caller validates the component first (`levee plugin push` runs the
//! checks of `levee plugin check`): a registry holds only what a levee
//! would load. Blobs the registry already holds are not sent again; the
//! manifest is sent as the exact bytes whose digest is answered, and the
//! tag is read back to confirm the registry now points it there.

use std::time::Duration;

use bytes::Bytes;
use oci_client::RegistryOperation;

use super::artifact::{Artifact, ComponentShape, MANIFEST_MEDIA_TYPE};
use super::reference::{Digest, parse_push_target};
use super::transport::{Registry, describe_oci};
use super::{COMPONENT_BYTES_MAX, OciError, Options};

/// Longest a push may take.
pub const PUSH_TIMEOUT: Duration = Duration::from_secs(300);

/// What a push stored.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// `REGISTRY/REPOSITORY@sha256:...`: what a binding names.
    pub reference: String,
    /// The manifest's digest.
    pub digest: Digest,
    /// The component layer's digest (its hex is the plugin's version).
    pub layer: Digest,
    /// `REGISTRY/REPOSITORY:TAG`, now pointing at `digest`.
    pub tag: String,
}

/// Pushes `component` (already validated; `shape` from that check) to
/// `target`, `REGISTRY/REPOSITORY:TAG`.
pub async fn push(
    component: Bytes,
    shape: ComponentShape<'_>,
    target: &str,
    options: &Options,
) -> Result<Pushed, OciError> {
    let target = parse_push_target(target)?;
    if component.len() as u64 > COMPONENT_BYTES_MAX {
        return Err(OciError::Artifact(format!(
            "the component is {} bytes, more than the {COMPONENT_BYTES_MAX} a plugin may be",
            component.len()
        )));
    }
    let artifact = Artifact::build(&component, shape);
    let registry = Registry::connect(target.resolve_registry(), options)?;
    let pushing = send(&registry, &target, &artifact, component);
    let digest = match tokio::time::timeout(PUSH_TIMEOUT, pushing).await {
        Ok(digest) => digest?,
        Err(_) => {
            return Err(registry.fault(format!(
                "the push did not finish within {} s",
                PUSH_TIMEOUT.as_secs()
            )));
        }
    };
    Ok(Pushed {
        reference: format!(
            "{}/{}@{digest}",
            target.resolve_registry(),
            target.repository()
        ),
        digest,
        layer: artifact.layer.digest.parse().map_err(OciError::Local)?,
        tag: format!(
            "{}/{}:{}",
            target.resolve_registry(),
            target.repository(),
            target.tag().unwrap_or_default()
        ),
    })
}

async fn send(
    registry: &Registry,
    target: &oci_client::Reference,
    artifact: &Artifact,
    component: Bytes,
) -> Result<Digest, OciError> {
    let client = &registry.client;
    let fault = |what: &str, error: oci_client::errors::OciDistributionError| {
        registry.fault(format!("{what}: {}", describe_oci(&error)))
    };
    client
        .auth(target, &registry.auth, RegistryOperation::Push)
        .await
        .map_err(|e| fault("authentication", e))?;
    let config = Bytes::from(artifact.config.clone());
    let config_digest = Digest::of(&config).to_string();
    for (what, digest, bytes) in [
        ("component layer", &artifact.layer.digest, component),
        ("config", &config_digest, config),
    ] {
        let present = client
            .blob_exists(target, digest)
            .await
            .map_err(|e| fault(what, e))?;
        if !present {
            client
                .push_blob(target, bytes, digest)
                .await
                .map_err(|e| fault(what, e))?;
        }
    }
    let content_type = reqwest::header::HeaderValue::from_static(MANIFEST_MEDIA_TYPE);
    client
        .push_manifest_raw(target, artifact.manifest.clone(), content_type)
        .await
        .map_err(|e| fault("manifest", e))?;
    let digest = Digest::of(&artifact.manifest);
    let tagged = client
        .fetch_manifest_digest(target, &registry.auth)
        .await
        .map_err(|e| fault("reading the tag back", e))?;
    if tagged != digest.to_string() {
        return Err(registry.fault(format!(
            "the tag points at {tagged} after the push, not at the pushed manifest {digest}"
        )));
    }
    Ok(digest)
}
