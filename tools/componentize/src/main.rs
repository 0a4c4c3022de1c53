//! `levee-componentize CORE.wasm OUT.wasm`: wraps a plugin's core module
//! (built by rustc for wasm32-unknown-unknown, with the world embedded by
//! `wit-bindgen`) into a levee policy component, after checking it asks for
//! no capability beyond levee's `host` and `request` interfaces.
//!
//! It exists so that `scripts/build-plugins.sh` needs nothing from outside
//! this repo: `wasm-tools component new` would do the encoding too, but costs
//! a multi-minute `cargo install`, and it would not refuse WASI imports.

mod componentize;

use anyhow::{Context, bail};
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let (core_path, out_path) = parse_args()?;
    let core = std::fs::read(&core_path)
        .with_context(|| format!("reading core module {}", core_path.display()))?;
    let component = componentize::componentize(&core)
        .with_context(|| format!("componentizing {}", core_path.display()))?;
    write_atomically(&out_path, &component.bytes)?;
    println!(
        "{}: {} component, {} bytes (core module {} bytes)",
        out_path.display(),
        component.world,
        component.bytes.len(),
        core.len()
    );
    Ok(())
}

fn parse_args() -> anyhow::Result<(PathBuf, PathBuf)> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [core, out] => Ok((PathBuf::from(core), PathBuf::from(out))),
        _ => bail!("usage: levee-componentize CORE.wasm OUT.wasm"),
    }
}

/// Writes through a temporary file and a rename, so that a host watching
/// `plugins/dist/` for hot reload never sees a half-written component.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    std::fs::write(&temporary, bytes)
        .with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(&temporary, path)
        .with_context(|| format!("renaming {} to {}", temporary.display(), path.display()))
}
