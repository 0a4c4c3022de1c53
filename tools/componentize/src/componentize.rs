//! Core module → component, with the sandbox's import rule enforced.
//!
//! A levee plugin gets no ambient capability: its only imports are the
//! `levee:policy/host` functions, the `levee:policy/request` functions (the
//! request the call in progress is about, lent by the host) and the type-only
//! `levee:policy/types`, all of contract version 0.2.0. A component built
//! against another version of the contract is refused here too, by name,
//! rather than by the host at load time.
//! Rust's `wasm32-unknown-unknown` std imports nothing, but a crate built
//! for `wasm32-wasip1`, or a dependency that sneaks in `wasi` calls, would
//! import `wasi_snapshot_preview1`. The encoder would only fail on that with
//! a remark about a missing adapter; this module names the import instead,
//! and re-checks the finished component's imports and exports so that what
//! `plugins/dist/` holds is exactly one policy world.

use wit_component::{ComponentEncoder, DecodedWasm};
use wit_parser::{Resolve, WorldId, WorldKey};

/// The interfaces a plugin may import.
pub const ALLOWED_IMPORTS: [&str; 3] = [
    "levee:policy/host@0.2.0",
    "levee:policy/request@0.2.0",
    "levee:policy/types@0.2.0",
];

/// The policy interfaces; a plugin exports exactly one.
pub const POLICY_EXPORTS: [&str; 4] = [
    "levee:policy/retry@0.2.0",
    "levee:policy/routing@0.2.0",
    "levee:policy/checkpoint@0.2.0",
    "levee:policy/write@0.2.0",
];

/// Why a core module was refused.
#[derive(Debug, thiserror::Error)]
pub enum ComponentizeError {
    #[error("not a valid core wasm module: {0}")]
    Parse(#[from] wasmparser::BinaryReaderError),
    #[error(
        "core module imports `{module}::{name}` from WASI: plugins get no ambient capabilities; \
         build for wasm32-unknown-unknown"
    )]
    WasiImport { module: String, name: String },
    #[error("component encoding failed: {0:#}")]
    Encode(anyhow::Error),
    #[error("the encoded component does not decode: {0:#}")]
    Decode(anyhow::Error),
    #[error("component imports `{0}`; only {ALLOWED_IMPORTS:?} are allowed")]
    ForbiddenImport(String),
    #[error("component exports {0:?}; a plugin exports exactly one of {POLICY_EXPORTS:?}")]
    WrongExports(Vec<String>),
}

/// A finished component and the policy interface it exports.
pub struct Component {
    pub bytes: Vec<u8>,
    pub world: String,
}

pub fn componentize(core: &[u8]) -> Result<Component, ComponentizeError> {
    refuse_wasi_imports(core)?;
    let bytes = ComponentEncoder::default()
        .validate(true)
        .module(core)
        .and_then(|mut encoder| encoder.encode())
        .map_err(ComponentizeError::Encode)?;
    let world = check_component(&bytes)?;
    Ok(Component { bytes, world })
}

fn refuse_wasi_imports(core: &[u8]) -> Result<(), ComponentizeError> {
    for payload in wasmparser::Parser::new(0).parse_all(core) {
        if let wasmparser::Payload::ImportSection(section) = payload? {
            for import in section.into_imports() {
                let import = import?;
                if import.module.starts_with("wasi") {
                    return Err(ComponentizeError::WasiImport {
                        module: import.module.to_string(),
                        name: import.name.to_string(),
                    });
                }
            }
        }
    }
    Ok(())
}

/// Returns the one policy interface the component exports.
fn check_component(bytes: &[u8]) -> Result<String, ComponentizeError> {
    let (resolve, world) = match wit_component::decode(bytes).map_err(ComponentizeError::Decode)? {
        DecodedWasm::Component(resolve, world) => (resolve, world),
        DecodedWasm::WitPackage(..) => {
            return Err(ComponentizeError::Decode(anyhow::anyhow!(
                "got a WIT package"
            )));
        }
    };
    let (imports, exports) = world_names(&resolve, world);
    if let Some(forbidden) = imports
        .iter()
        .find(|name| !ALLOWED_IMPORTS.contains(&name.as_str()))
    {
        return Err(ComponentizeError::ForbiddenImport(forbidden.clone()));
    }
    match exports.as_slice() {
        [one] if POLICY_EXPORTS.contains(&one.as_str()) => Ok(one.clone()),
        _ => Err(ComponentizeError::WrongExports(exports)),
    }
}

fn world_names(resolve: &Resolve, world: WorldId) -> (Vec<String>, Vec<String>) {
    let name = |key: &WorldKey| match key {
        WorldKey::Name(name) => name.clone(),
        WorldKey::Interface(id) => resolve.id_of(*id).unwrap_or_else(|| "<anonymous>".into()),
    };
    let world = &resolve.worlds[world];
    (
        world.imports.keys().map(name).collect(),
        world.exports.keys().map(name).collect(),
    )
}

#[cfg(test)]
#[path = "componentize_tests.rs"]
mod tests;
