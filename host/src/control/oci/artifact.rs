//! The Wasm OCI artifact: media types, the manifest and config levee
//! pushes, and what it accepts when it pulls.
//!
//! The layout is that of the CNCF TAG Runtime's Wasm OCI artifact (the
//! `oci-wasm` crate, Spin, wasmCloud): an OCI image manifest whose config
//! is `application/vnd.wasm.config.v0+json` and whose one layer is the
//! component, `application/wasm`. levee writes the JSON itself (the same
//! fields `oci-wasm` 0.6 writes, `created` fixed at the epoch so a push is
//! reproducible) rather than depend on `oci-wasm`, which pins `oci-client`
//! 0.17 and a second set of `wit-component`/`wasmparser` crates.

use serde::{Deserialize, Serialize};

use super::reference::Digest;
use super::{COMPONENT_BYTES_MAX, OciError};

/// The manifest's media type.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// The config's media type.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The component layer's media type.
pub const LAYER_MEDIA_TYPE: &str = "application/wasm";
/// `created` in every config levee pushes: the same file, the same digest.
const CREATED: &str = "1970-01-01T00:00:00Z";

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

impl Descriptor {
    fn of(media_type: &str, bytes: &[u8]) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest: Digest::of(bytes).to_string(),
            size: bytes.len() as u64,
        }
    }
}

/// An OCI image manifest (the fields levee reads and writes; others are
/// ignored when read).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// The Wasm config (`oci-wasm`'s `WasmConfig`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct WasmConfig<'a> {
    created: &'a str,
    author: Option<&'a str>,
    architecture: &'a str,
    os: &'a str,
    layer_digests: Vec<String>,
    component: ComponentShape<'a>,
}

/// A component's imports and exports, as the config lists them.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentShape<'a> {
    pub exports: &'a [String],
    pub imports: &'a [String],
    pub target: Option<&'a str>,
}

/// The three documents of an artifact, serialized as they are pushed.
pub struct Artifact {
    pub manifest: Vec<u8>,
    pub config: Vec<u8>,
    pub layer: Descriptor,
}

impl Artifact {
    /// The artifact for `component` (its bytes, and its shape from the
    /// check the caller ran).
    pub fn build(component: &[u8], shape: ComponentShape<'_>) -> Artifact {
        let layer = Descriptor::of(LAYER_MEDIA_TYPE, component);
        let config = WasmConfig {
            created: CREATED,
            author: None,
            architecture: "wasm",
            os: "wasip2",
            layer_digests: vec![layer.digest.clone()],
            component: shape,
        };
        let config = serde_json::to_vec(&config).expect("the config serializes");
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(MANIFEST_MEDIA_TYPE.to_string()),
            config: Descriptor::of(CONFIG_MEDIA_TYPE, &config),
            layers: vec![layer.clone()],
        };
        let manifest = serde_json::to_vec(&manifest).expect("the manifest serializes");
        Artifact {
            manifest,
            config,
            layer,
        }
    }
}

/// The component layer of a pulled manifest (already verified against its
/// digest): exactly one `application/wasm` layer, within the size bound.
pub fn component_layer(manifest: &[u8]) -> Result<(Digest, u64), OciError> {
    let manifest: Manifest = serde_json::from_slice(manifest).map_err(|e| {
        OciError::Artifact(format!("the manifest is not an OCI image manifest: {e}"))
    })?;
    if manifest.schema_version != 2 {
        return Err(OciError::Artifact(format!(
            "the manifest's schemaVersion is {}, not 2",
            manifest.schema_version
        )));
    }
    if let Some(media_type) = &manifest.media_type
        && media_type != MANIFEST_MEDIA_TYPE
    {
        return Err(OciError::Artifact(format!(
            "the manifest is {media_type}, not {MANIFEST_MEDIA_TYPE}"
        )));
    }
    let wasm: Vec<&Descriptor> = manifest
        .layers
        .iter()
        .filter(|layer| layer.media_type == LAYER_MEDIA_TYPE)
        .collect();
    let [layer] = wasm.as_slice() else {
        let found: Vec<&str> = manifest
            .layers
            .iter()
            .map(|l| l.media_type.as_str())
            .collect();
        return Err(OciError::Artifact(format!(
            "not a Wasm component artifact: it needs exactly one {LAYER_MEDIA_TYPE} layer, \
             its layers are {found:?}"
        )));
    };
    if layer.size > COMPONENT_BYTES_MAX {
        return Err(OciError::Artifact(format!(
            "the component layer is {} bytes, more than the {COMPONENT_BYTES_MAX} a plugin may be",
            layer.size
        )));
    }
    let digest = layer
        .digest
        .parse()
        .map_err(|reason| OciError::Artifact(format!("the component layer's digest: {reason}")))?;
    Ok((digest, layer.size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> ComponentShape<'static> {
        ComponentShape {
            exports: &[],
            imports: &[],
            target: None,
        }
    }

    #[test]
    fn a_built_artifact_is_reproducible_and_reads_back() {
        let one = Artifact::build(b"\0asm component", shape());
        let two = Artifact::build(b"\0asm component", shape());
        assert_eq!(one.manifest, two.manifest, "same bytes, same manifest");
        let (digest, size) = component_layer(&one.manifest).unwrap();
        assert_eq!(digest, Digest::of(b"\0asm component"));
        assert_eq!(size, 14);
        let text = String::from_utf8(one.manifest).unwrap();
        assert!(text.contains(CONFIG_MEDIA_TYPE) && text.contains(LAYER_MEDIA_TYPE));
        let config: serde_json::Value = serde_json::from_slice(&one.config).unwrap();
        assert_eq!(config["architecture"], "wasm");
        assert_eq!(config["layerDigests"][0], digest.to_string());
    }

    #[test]
    fn other_artifacts_are_refused_with_what_they_hold() {
        let mut manifest: serde_json::Value =
            serde_json::from_slice(&Artifact::build(b"x", shape()).manifest).unwrap();
        manifest["layers"][0]["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip".into();
        let error = component_layer(manifest.to_string().as_bytes()).unwrap_err();
        assert!(error.to_string().contains("tar+gzip"), "{error}");
        assert!(!error.is_registry_fault());

        manifest["layers"][0]["mediaType"] = LAYER_MEDIA_TYPE.into();
        manifest["layers"][0]["size"] = (COMPONENT_BYTES_MAX + 1).into();
        let error = component_layer(manifest.to_string().as_bytes()).unwrap_err();
        assert!(error.to_string().contains("more than"), "{error}");

        assert!(component_layer(b"{}").is_err());
        assert!(component_layer(b"not json").is_err());
    }
}
