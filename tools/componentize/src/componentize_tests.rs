//! Tests of the componentizer on modules shaped like real plugins
//! (`wit_component::dummy_module` builds one for any world, with the world
//! embedded the way `wit-bindgen` embeds it) and on modules that break the
//! sandbox's rules.

use super::*;
use std::path::Path;
use wit_component::StringEncoding;
use wit_parser::{LiftLowerAbi, ManglingAndAbi};

/// The repo's contract plus, optionally, a test package using it.
fn resolve_with(extra_wit: Option<&str>) -> Resolve {
    let mut resolve = Resolve::default();
    let wit_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wit");
    resolve.push_dir(&wit_dir).expect("the repo's WIT parses");
    if let Some(wit) = extra_wit {
        resolve.push_str("test.wit", wit).expect("test WIT parses");
    }
    resolve
}

fn world(resolve: &Resolve, name: &str) -> WorldId {
    let (id, _) = resolve
        .worlds
        .iter()
        .find(|(_, w)| w.name == name)
        .expect("world exists");
    id
}

fn module_for(resolve: &Resolve, world_name: &str) -> Vec<u8> {
    let abi = ManglingAndAbi::Legacy(LiftLowerAbi::Sync);
    let mut module = wit_component::dummy_module(resolve, world(resolve, world_name), abi);
    wit_component::embed_component_metadata(
        &mut module,
        resolve,
        world(resolve, world_name),
        StringEncoding::UTF8,
    )
    .unwrap();
    module
}

/// The interfaces a finished component imports.
fn imports_of(component: &[u8]) -> Vec<String> {
    match wit_component::decode(component).unwrap() {
        DecodedWasm::Component(resolve, world) => world_names(&resolve, world).0,
        DecodedWasm::WitPackage(..) => panic!("got a WIT package"),
    }
}

#[test]
fn each_policy_world_becomes_a_component() {
    let resolve = resolve_with(None);
    let host = "levee:policy/host@0.2.0";
    let request = "levee:policy/request@0.2.0";
    let cases = [
        (
            "retry-policy",
            "levee:policy/retry@0.2.0",
            &[host, request][..],
        ),
        (
            "routing-policy",
            "levee:policy/routing@0.2.0",
            &[host, request],
        ),
        (
            "checkpoint-policy",
            "levee:policy/checkpoint@0.2.0",
            &[host],
        ),
    ];
    for (world_name, export, expected_imports) in cases {
        let component = componentize(&module_for(&resolve, world_name)).unwrap();
        assert_eq!(component.world, export);
        assert!(wasmparser::Parser::is_component(&component.bytes));
        let imports = imports_of(&component.bytes);
        for expected in expected_imports {
            assert!(
                imports.iter().any(|name| name == expected),
                "{world_name}: {imports:?}"
            );
        }
        assert!(
            imports
                .iter()
                .all(|name| ALLOWED_IMPORTS.contains(&name.as_str())),
            "{world_name}: {imports:?}"
        );
    }
}

#[test]
fn the_old_contract_is_refused() {
    // A plugin still importing 0.1.0's host, next to a 0.2.0 export: the
    // host refuses such a component, so the build does first.
    let wit = "package levee:policy@0.1.0;
        interface host { now-ms: func() -> u64; }
        world stale {
            import host;
            export levee:policy/retry@0.2.0;
        }";
    let resolve = resolve_with(Some(wit));
    match componentize(&module_for(&resolve, "stale")) {
        Err(ComponentizeError::ForbiddenImport(name)) => {
            assert_eq!(name, "levee:policy/host@0.1.0")
        }
        other => panic!(
            "expected a forbidden import, got {:?}",
            other.map(|c| c.world)
        ),
    }
}

#[test]
fn wasi_imports_are_refused_by_name() {
    use wasm_encoder::{EntityType, ImportSection, Module, TypeSection, ValType};
    let mut types = TypeSection::new();
    types.ty().function([ValType::I32; 4], [ValType::I32]);
    let mut imports = ImportSection::new();
    imports.import(
        "wasi_snapshot_preview1",
        "fd_write",
        EntityType::Function(0),
    );
    let mut module = Module::new();
    module.section(&types).section(&imports);
    let mut core = module.finish();
    let resolve = resolve_with(None);
    let retry = world(&resolve, "retry-policy");
    wit_component::embed_component_metadata(&mut core, &resolve, retry, StringEncoding::UTF8)
        .unwrap();
    match componentize(&core) {
        Err(ComponentizeError::WasiImport { module, name }) => {
            assert_eq!(
                (module.as_str(), name.as_str()),
                ("wasi_snapshot_preview1", "fd_write")
            );
        }
        other => panic!("expected a WASI refusal, got {:?}", other.map(|c| c.world)),
    }
}

#[test]
fn foreign_interface_imports_are_refused() {
    let wit = "package test:zoo;
        interface clock { now: func() -> u64; }
        world sneaky { import clock; export levee:policy/retry@0.2.0; }";
    let resolve = resolve_with(Some(wit));
    match componentize(&module_for(&resolve, "sneaky")) {
        Err(ComponentizeError::ForbiddenImport(name)) => assert_eq!(name, "test:zoo/clock"),
        other => panic!(
            "expected a forbidden import, got {:?}",
            other.map(|c| c.world)
        ),
    }
}

#[test]
fn two_policy_exports_are_refused() {
    let wit = "package test:zoo;
        world greedy {
            import levee:policy/host@0.2.0;
            export levee:policy/retry@0.2.0;
            export levee:policy/routing@0.2.0;
        }";
    let resolve = resolve_with(Some(wit));
    match componentize(&module_for(&resolve, "greedy")) {
        Err(ComponentizeError::WrongExports(exports)) => assert_eq!(exports.len(), 2),
        other => panic!("expected wrong exports, got {:?}", other.map(|c| c.world)),
    }
}

#[test]
fn garbage_and_empty_input_are_errors() {
    for bytes in [&b""[..], b"not wasm at all", b"\0asm\x01\0\0\0\xff\xff"] {
        assert!(componentize(bytes).is_err(), "{bytes:?}");
    }
}

#[test]
fn a_module_without_a_world_exports_no_policy() {
    // The encoder happily wraps a module with no embedded world into an
    // empty component; only the export check stops it.
    let core = wasm_encoder::Module::new().finish();
    match componentize(&core) {
        Err(ComponentizeError::WrongExports(exports)) => assert!(exports.is_empty()),
        other => panic!("expected wrong exports, got {:?}", other.map(|c| c.world)),
    }
}
