//! Load-time validation: is this a component, and which policy world does
//! it implement?
//!
//! Checks run from cheapest to dearest, so garbage is refused before
//! Cranelift sees it:
//! 1. size, emptiness and the 8-byte header (`\0asm` + the component
//!    layer), with a specific message for a core module;
//! 2. after compilation, the component's type
//!    ([`wasmtime::component::Component::component_type`]): every
//!    `levee:policy/...` interface it names is of the version this host
//!    speaks ([`WIT_PACKAGE`]; a 0.1.0 plugin is told to rebuild), exactly
//!    one of the three policy interfaces exported, nothing imported beyond
//!    `levee:policy/host` and `levee:policy/request` (and the type-only
//!    `levee:policy/types`) and the WASI 0.2 interfaces levee links
//!    granting nothing ([`crate::wasi`]);
//! 3. finally the runtime links the imports (type-checked against the
//!    linker), builds the `bindgen!` world's pre-instance (export names),
//!    and instantiates once in a throwaway store, which type-checks every
//!    export function.

use wasmtime::Engine;
use wasmtime::component::Component as WasmComponent;

use crate::error::LoadError;
use crate::kind::{ALLOWED_IMPORTS, PolicyKind, WIT_PACKAGE_NAME, WIT_VERSION, is_granted_import};

const WASM_MAGIC: &[u8; 4] = b"\0asm";
/// Version + layer of a core module (version 1, layer 0).
const CORE_MODULE_VERSION: [u8; 4] = [0x01, 0x00, 0x00, 0x00];
/// Layer 1 marks a component (its version field is 0x0d, pre-1.0).
const COMPONENT_LAYER: [u8; 2] = [0x01, 0x00];

/// Refuses empty, oversized and non-component input with a clear reason.
pub(crate) fn check_header(bytes: &[u8], component_bytes_max: usize) -> Result<(), LoadError> {
    if bytes.is_empty() {
        return Err(LoadError::NotAComponent("the input is empty".into()));
    }
    if bytes.len() > component_bytes_max {
        return Err(LoadError::TooLarge {
            size_bytes: bytes.len(),
            max_bytes: component_bytes_max,
        });
    }
    if bytes.len() < 8 || &bytes[..4] != WASM_MAGIC {
        let head: String = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
        return Err(LoadError::NotAComponent(format!(
            "missing the \\0asm magic header (input starts with {head})"
        )));
    }
    if bytes[4..8] == CORE_MODULE_VERSION {
        return Err(LoadError::NotAComponent(
            "this is a core WebAssembly module; wrap it into a component (e.g. `wasm-tools component new`)".into(),
        ));
    }
    if bytes[6..8] != COMPONENT_LAYER {
        return Err(LoadError::NotAComponent(format!(
            "unknown WebAssembly layer {:02x}{:02x} (expected a component)",
            bytes[6], bytes[7]
        )));
    }
    Ok(())
}

/// What a compiled component imports and exports, and the policy kind
/// that follows.
#[derive(Debug, Clone)]
pub(crate) struct Shape {
    pub(crate) kind: PolicyKind,
    pub(crate) exports: Vec<String>,
    pub(crate) imports: Vec<String>,
}

/// Derives the policy kind from the exports and refuses foreign imports.
pub(crate) fn shape(engine: &Engine, component: &WasmComponent) -> Result<Shape, LoadError> {
    let component_type = component.component_type();
    let exports: Vec<String> = component_type
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let imports: Vec<String> = component_type
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .collect();

    check_wit_version(&imports, &exports)?;
    let forbidden: Vec<String> = imports
        .iter()
        .filter(|name| !ALLOWED_IMPORTS.contains(&name.as_str()) && !is_granted_import(name))
        .cloned()
        .collect();
    if !forbidden.is_empty() {
        return Err(LoadError::ForbiddenImports { imports: forbidden });
    }

    let kinds: Vec<PolicyKind> = exports
        .iter()
        .filter_map(|name| PolicyKind::from_export_name(name))
        .collect();
    match kinds.as_slice() {
        [kind] => Ok(Shape {
            kind: *kind,
            exports,
            imports,
        }),
        [] => Err(LoadError::NotAPolicy { exports }),
        _ => Err(LoadError::Ambiguous { exports }),
    }
}

/// The package and version a `levee:policy/...` interface name belongs to
/// (`levee:policy@0.1.0`), or `None` for a name outside the package.
fn policy_package_of(name: &str) -> Option<String> {
    let rest = name.strip_prefix(WIT_PACKAGE_NAME)?.strip_prefix('/')?;
    Some(match rest.split_once('@') {
        Some((_, version)) => format!("{WIT_PACKAGE_NAME}@{version}"),
        None => format!("{WIT_PACKAGE_NAME} (no version)"),
    })
}

/// Refuses a component that names any `levee:policy` interface of another
/// version than [`WIT_VERSION`]: it was built against another contract
/// (a 0.1.0 plugin expects strings on every call) and must be rebuilt.
fn check_wit_version(imports: &[String], exports: &[String]) -> Result<(), LoadError> {
    let current = format!("{WIT_PACKAGE_NAME}@{WIT_VERSION}");
    let mut found: Option<String> = None;
    let mut interfaces = Vec::new();
    for name in imports.iter().chain(exports) {
        let Some(package) = policy_package_of(name) else {
            continue;
        };
        if package != current {
            found.get_or_insert(package);
            interfaces.push(name.clone());
        }
    }
    match found {
        Some(found) => Err(LoadError::WitVersion { found, interfaces }),
        None => Ok(()),
    }
}

/// Refuses a shape whose kind is not `expected`.
pub(crate) fn expect_kind(shape: &Shape, expected: PolicyKind) -> Result<(), LoadError> {
    if shape.kind == expected {
        Ok(())
    } else {
        Err(LoadError::WrongWorld {
            expected,
            exports: shape.exports.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1024;

    #[test]
    fn empty_garbage_and_core_modules_are_named() {
        let empty = check_header(b"", MAX).unwrap_err().to_string();
        assert_eq!(empty, "not a WebAssembly component: the input is empty");

        let garbage = check_header(b"hello, world", MAX).unwrap_err().to_string();
        assert!(
            garbage.starts_with("not a WebAssembly component: missing the \\0asm magic header"),
            "{garbage}"
        );

        let core = check_header(b"\0asm\x01\0\0\0", MAX)
            .unwrap_err()
            .to_string();
        assert!(core.contains("core WebAssembly module"), "{core}");

        check_header(b"\0asm\x0d\0\x01\0", MAX).unwrap();
        let big = check_header(&vec![0u8; MAX + 1], MAX).unwrap_err();
        assert!(matches!(big, LoadError::TooLarge { .. }));
    }

    #[test]
    fn other_wit_versions_are_named() {
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let current = names(&[
            "levee:policy/host@0.2.0",
            "levee:policy/request@0.2.0",
            "levee:policy/types@0.2.0",
        ]);
        check_wit_version(&current, &names(&["levee:policy/retry@0.2.0"])).unwrap();
        check_wit_version(&names(&["wasi:cli/environment@0.2.0"]), &[]).unwrap();

        let old = check_wit_version(
            &names(&["levee:policy/host@0.1.0"]),
            &names(&["levee:policy/retry@0.1.0"]),
        )
        .unwrap_err();
        assert_eq!(
            old,
            LoadError::WitVersion {
                found: "levee:policy@0.1.0".into(),
                interfaces: names(&["levee:policy/host@0.1.0", "levee:policy/retry@0.1.0"]),
            }
        );
        let unversioned = check_wit_version(&[], &names(&["levee:policy/routing"])).unwrap_err();
        assert!(
            unversioned.to_string().starts_with(
                "built against levee:policy (no version); this host speaks levee:policy@0.2.0"
            ),
            "{unversioned}"
        );
        // A package that merely shares the prefix is not ours.
        assert_eq!(policy_package_of("levee:policyx/retry@0.1.0"), None);
    }
}
