//! What every built component asks of its host: only levee's 0.2.0
//! interfaces, and exactly one policy export. The componentizer refuses
//! anything else while building; this re-reads what `plugins/dist/` holds,
//! so a stale component from another contract version shows up here.
//!
//! Python plugins (`*-py.wasm`, componentize-py) carry CPython, which also
//! imports WASI 0.2 (levee links it granting nothing, see
//! crates/plugin/src/wasi): for those, the six WASI packages at 0.2.x are
//! allowed too, and nothing else; and componentize-py's own extra export,
//! named `exports`.

use std::path::{Path, PathBuf};
use wit_component::DecodedWasm;
use wit_parser::{Resolve, WorldKey};

/// The interfaces a component may import.
const ALLOWED_IMPORTS: [&str; 3] = [
    "levee:policy/host@0.2.0",
    "levee:policy/request@0.2.0",
    "levee:policy/types@0.2.0",
];

/// Every `.wasm` in `plugins/dist/` and `plugins/dist/zoo/`.
fn components() -> Vec<PathBuf> {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/dist");
    let mut paths: Vec<PathBuf> = [dist.clone(), dist.join("zoo")]
        .iter()
        .flat_map(|dir| std::fs::read_dir(dir).expect("run scripts/build-plugins.sh first"))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "wasm"))
        .collect();
    paths.sort();
    paths
}

/// The WASI packages levee links for language runtimes (each at 0.2.x).
const WASI_PACKAGES: [&str; 6] = [
    "wasi:cli/",
    "wasi:clocks/",
    "wasi:filesystem/",
    "wasi:io/",
    "wasi:random/",
    "wasi:sockets/",
];

fn is_wasi_0_2(name: &str) -> bool {
    WASI_PACKAGES
        .iter()
        .any(|package| name.starts_with(package))
        && name
            .rsplit_once('@')
            .is_some_and(|(_, version)| version.starts_with("0.2."))
}

fn is_python(path: &Path) -> bool {
    path.file_stem()
        .and_then(|stem| stem.to_str())
        .is_some_and(|stem| stem.ends_with("-py"))
}

fn names(resolve: &Resolve, keys: impl Iterator<Item = WorldKey>) -> Vec<String> {
    keys.map(|key| match key {
        WorldKey::Name(name) => name,
        WorldKey::Interface(id) => resolve.id_of(id).unwrap(),
    })
    .collect()
}

#[test]
fn every_component_imports_only_levee_0_2_0() {
    let paths = components();
    assert!(paths.len() >= 14, "{paths:?}");
    for path in paths {
        let bytes = std::fs::read(&path).unwrap();
        let DecodedWasm::Component(resolve, world) = wit_component::decode(&bytes).unwrap() else {
            panic!("{} is not a component", path.display())
        };
        let world = &resolve.worlds[world];
        let imports = names(&resolve, world.imports.keys().cloned());
        let mut exports = names(&resolve, world.exports.keys().cloned());
        let wasi_allowed = is_python(&path);
        if wasi_allowed {
            // componentize-py adds a plain-named export of its own
            // (`exports`); the host ignores exports outside levee:policy.
            exports.retain(|name| name != "exports");
        }
        assert!(
            imports
                .iter()
                .all(|name| ALLOWED_IMPORTS.contains(&name.as_str())
                    || (wasi_allowed && is_wasi_0_2(name))),
            "{}: imports {imports:?}",
            path.display()
        );
        assert!(
            matches!(exports.as_slice(), [one] if one.starts_with("levee:policy/") && one.ends_with("@0.2.0")),
            "{}: exports {exports:?}",
            path.display()
        );
        println!(
            "{}: imports {imports:?}, exports {exports:?}",
            path.display()
        );
    }
}
