//! [`pull`]: a component by manifest digest, verified, from the cache when
//! it holds it, else from the registry (then cached).
//!
//! What is checked, in order: the manifest is at most
//! [`MANIFEST_BYTES_MAX`] and its SHA-256 is the reference's digest; it is
//! a Wasm artifact with one `application/wasm` layer of at most
//! [`COMPONENT_BYTES_MAX`]; the layer is at most its declared size and its
//! SHA-256 is the manifest's digest for it. The whole exchange is bounded
//! by [`PULL_TIMEOUT`]. Nothing that fails a check is cached.

use bytes::Bytes;
use serde::Serialize;

use super::artifact::{LAYER_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, component_layer};
use super::cache::{Cache, Kind};
use super::reference::{Digest, Pinned};
use super::transport::Registry;
use super::{COMPONENT_BYTES_MAX, MANIFEST_BYTES_MAX, OciError, Options, PULL_TIMEOUT};

/// Where a pulled component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FetchedFrom {
    /// The on-disk cache: the registry was not asked.
    Cache,
    Registry,
}

/// A verified component.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub reference: Pinned,
    /// The component layer's digest; its hex is the plugin's version.
    pub layer: Digest,
    pub component: Bytes,
    pub fetched_from: FetchedFrom,
}

/// Pulls the component `reference` names: from `cache` when it holds a
/// verified copy, else from the registry within [`PULL_TIMEOUT`], storing
/// what was verified in `cache`.
pub async fn pull(
    reference: &Pinned,
    options: &Options,
    cache: Option<&Cache>,
) -> Result<Pulled, OciError> {
    if let Some(cache) = cache
        && let Some(pulled) = from_cache(cache.clone(), reference.clone()).await?
    {
        return Ok(pulled);
    }
    let fetch = from_registry(reference, options, cache);
    match tokio::time::timeout(PULL_TIMEOUT, fetch).await {
        Ok(pulled) => pulled,
        Err(_) => Err(OciError::Registry {
            registry: reference.registry().to_string(),
            reason: format!(
                "the pull did not finish within {} s",
                PULL_TIMEOUT.as_secs()
            ),
        }),
    }
}

/// The cached manifest and layer of `reference`, both verified.
async fn from_cache(cache: Cache, reference: Pinned) -> Result<Option<Pulled>, OciError> {
    tokio::task::spawn_blocking(move || {
        let manifest = cache.read(Kind::Manifest, &reference.digest(), MANIFEST_BYTES_MAX)?;
        let (layer, _) = component_layer(&manifest).ok()?;
        let component = cache.read(Kind::Layer, &layer, COMPONENT_BYTES_MAX)?;
        Some(Pulled {
            reference,
            layer,
            component: Bytes::from(component),
            fetched_from: FetchedFrom::Cache,
        })
    })
    .await
    .map_err(|e| OciError::Local(format!("cache task: {e}")))
}

async fn from_registry(
    reference: &Pinned,
    options: &Options,
    cache: Option<&Cache>,
) -> Result<Pulled, OciError> {
    let registry = Registry::connect(reference.registry(), options)?;
    let credential = registry.credential(reference.oci()).await?;
    let digest = reference.digest();
    let manifest = registry
        .get_bounded(
            &credential,
            reference.oci(),
            "manifests",
            &digest.to_string(),
            MANIFEST_MEDIA_TYPE,
            MANIFEST_BYTES_MAX,
        )
        .await?;
    verify(&registry, "manifest", &digest, &manifest)?;
    let (layer, size) = component_layer(&manifest)?;
    let cached = match cache {
        Some(cache) => {
            let cache = cache.clone();
            tokio::task::spawn_blocking(move || cache.read(Kind::Layer, &layer, size))
                .await
                .map_err(|e| OciError::Local(format!("cache task: {e}")))?
        }
        None => None,
    };
    let component = match cached {
        Some(bytes) => Bytes::from(bytes),
        None => {
            let bytes = registry
                .get_bounded(
                    &credential,
                    reference.oci(),
                    "blobs",
                    &layer.to_string(),
                    LAYER_MEDIA_TYPE,
                    size,
                )
                .await?;
            verify(&registry, "component layer", &layer, &bytes)?;
            bytes
        }
    };
    if let Some(cache) = cache {
        store(cache.clone(), digest, manifest, layer, component.clone()).await;
    }
    Ok(Pulled {
        reference: reference.clone(),
        layer,
        component,
        fetched_from: FetchedFrom::Registry,
    })
}

fn verify(
    registry: &Registry,
    what: &'static str,
    expected: &Digest,
    bytes: &[u8],
) -> Result<(), OciError> {
    let actual = Digest::of(bytes);
    if actual == *expected {
        return Ok(());
    }
    Err(OciError::DigestMismatch {
        registry: registry.name.clone(),
        what,
        expected: expected.to_string(),
        actual: actual.to_string(),
    })
}

/// Caches a verified pull, layer first (a manifest in the cache always has
/// its layer). A failure is logged, not returned: the pull itself is good.
async fn store(
    cache: Cache,
    manifest_digest: Digest,
    manifest: Bytes,
    layer: Digest,
    component: Bytes,
) {
    let stored = tokio::task::spawn_blocking(move || {
        cache.write(Kind::Layer, &layer, &component)?;
        cache.write(Kind::Manifest, &manifest_digest, &manifest)
    })
    .await;
    match stored {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::warn!(%error, "cannot cache a pulled plugin; the next pull fetches it again")
        }
        Err(error) => tracing::warn!(%error, "OCI cache task failed"),
    }
}
