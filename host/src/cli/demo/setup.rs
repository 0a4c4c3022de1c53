//! What levee runs with in the demo: the example plugins (found, copied
//! into a plugin directory of the demo's own), the compiled-code cache kept
//! across runs, and the configuration file.
//!
//! Why a plugin directory of its own: levee compiles every `.wasm` file in
//! its `plugin_dir` before it reports ready, bound or not, and
//! `plugins/dist` holds more than the demo binds (another Python component
//! among them, ~20 s of compiling for nothing). Why a cache outside the
//! demo's directory: that directory is fresh every run, and so would be
//! levee's `<data_dir>/plugin-cache`; a link to a directory that stays makes
//! every run after the first load the JavaScript and Python plugins in
//! ~0.1 s instead of compiling them for ~20 s each. The cache authenticates
//! its entries with a key it keeps in that directory, so a shared directory
//! is one "install" as far as it is concerned.

use std::path::{Path, PathBuf};

use super::{LANGUAGE_SERVICES, NODE_IDS, OTHER_PLUGINS, RetryPlugin, SERVICE};

/// Overrides where the demo keeps compiled plugin code across runs.
pub(super) const CACHE_DIR_ENV: &str = "LEVEE_DEMO_CACHE_DIR";

/// The plugins the demo binds, ready for levee.
#[derive(Debug, Clone)]
pub(super) struct Plugins {
    /// Where they were found.
    pub(super) source: PathBuf,
    /// The demo's own plugin directory (copies of the bound ones only).
    pub(super) dir: PathBuf,
    /// The retry plugin of [`SERVICE`].
    pub(super) retry: RetryPlugin,
    /// The language services whose component was found.
    pub(super) languages: Vec<(&'static str, RetryPlugin)>,
    /// Notes for the narration (a component not found, a cache not kept).
    pub(super) notes: Vec<String>,
    /// Where compiled code is kept across runs, if anywhere.
    pub(super) cache: Option<PathBuf>,
    /// Bound plugins the cache has no compiled code for (levee compiles
    /// them at start).
    pub(super) uncached: Vec<RetryPlugin>,
}

impl Plugins {
    /// Finds the plugins, copies the bound ones into `<demo_dir>/plugins`
    /// and links levee's cache in `data_dir` to the lasting one. `Err` is
    /// the note to print when the demo falls back to the native policies.
    pub(super) fn prepare(
        explicit: Option<&Path>,
        retry: RetryPlugin,
        demo_dir: &Path,
        data_dir: &Path,
    ) -> Result<Plugins, String> {
        let required: Vec<&str> = std::iter::once(retry.name)
            .chain(OTHER_PLUGINS.iter().map(|(_, name)| *name))
            .collect();
        let source = find_plugins(explicit, &required)?;
        let mut notes = Vec::new();
        let mut languages = Vec::new();
        for (service, plugin) in LANGUAGE_SERVICES {
            if wasm(&source, plugin.name).is_file() {
                languages.push((service, plugin));
            } else {
                notes.push(format!(
                    "{} not found in {}: no {service} service ({} retry rules); \
                     build it with `bash scripts/build-plugins.sh`",
                    file_name(plugin.name),
                    source.display(),
                    plugin.language
                ));
            }
        }
        let dir = demo_dir.join("plugins");
        let copy = |name: &str| -> Result<(), String> {
            std::fs::copy(wasm(&source, name), wasm(&dir, name))
                .map(|_| ())
                .map_err(|error| format!("copying {}: {error}", file_name(name)))
        };
        std::fs::create_dir_all(&dir)
            .map_err(|error| format!("creating {}: {error}", dir.display()))?;
        for name in required
            .iter()
            .copied()
            .chain(languages.iter().map(|(_, plugin)| plugin.name))
        {
            copy(name)?;
        }
        let cache = match link_cache(data_dir) {
            Ok(cache) => Some(cache),
            Err(error) => {
                notes.push(format!(
                    "compiled plugin code is not kept across runs ({error}); set {CACHE_DIR_ENV} to keep it"
                ));
                None
            }
        };
        let mut uncached: Vec<RetryPlugin> = Vec::new();
        for plugin in std::iter::once(retry).chain(languages.iter().map(|(_, plugin)| *plugin)) {
            let compiled = cache
                .as_deref()
                .is_some_and(|cache| is_cached(cache, &wasm(&dir, plugin.name)));
            if plugin.language != "Rust" && !compiled && !uncached.contains(&plugin) {
                uncached.push(plugin);
            }
        }
        Ok(Plugins {
            source,
            dir,
            retry,
            languages,
            notes,
            cache,
            uncached,
        })
    }
}

fn file_name(plugin: &str) -> String {
    format!("{plugin}.wasm")
}

fn wasm(dir: &Path, plugin: &str) -> PathBuf {
    dir.join(file_name(plugin))
}

/// Where the example plugins are (every one of `required`), or why they
/// are not used.
fn find_plugins(explicit: Option<&Path>, required: &[&str]) -> Result<PathBuf, String> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    candidates.extend(explicit.map(Path::to_path_buf));
    candidates.extend(std::env::var_os("LEVEE_PLUGIN_DIR").map(PathBuf::from));
    if let Ok(exe) = std::env::current_exe() {
        // target/<profile>/levee → the repository root is three levels up.
        candidates.extend(
            exe.ancestors()
                .skip(1)
                .take(4)
                .map(|dir| dir.join("plugins/dist")),
        );
    }
    candidates.push(PathBuf::from("plugins/dist"));
    let complete = |dir: &Path| required.iter().all(|name| wasm(dir, name).is_file());
    if let Some(dir) = candidates.iter().find(|dir| complete(dir)) {
        return Ok(dir.canonicalize().unwrap_or_else(|_| dir.clone()));
    }
    let looked: Vec<String> = candidates
        .iter()
        .map(|dir| dir.display().to_string())
        .collect();
    Err(format!(
        "the example plugins were not found (looked in {}); build them with `bash scripts/build-plugins.sh` \
         (or pass --plugin-dir); falling back to the native policies",
        looked.join(", ")
    ))
}

/// The directory compiled plugin code is kept in across runs.
fn lasting_cache_dir() -> Option<PathBuf> {
    let non_empty = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
    if let Some(dir) = non_empty(CACHE_DIR_ENV) {
        return Some(PathBuf::from(dir));
    }
    let cache_home = non_empty("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| non_empty("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(cache_home.join("levee/demo-plugin-cache"))
}

/// Makes `<data_dir>/plugin-cache` (levee's cache) a link to the lasting
/// directory, created private (levee checks and keeps it so).
fn link_cache(data_dir: &Path) -> Result<PathBuf, String> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let Some(cache) = lasting_cache_dir() else {
        return Err(format!("neither {CACHE_DIR_ENV} nor HOME is set"));
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&cache)
        .map_err(|error| format!("creating {}: {error}", cache.display()))?;
    let _ = std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700));
    let cache = cache.canonicalize().unwrap_or(cache);
    std::fs::create_dir_all(data_dir)
        .map_err(|error| format!("creating {}: {error}", data_dir.display()))?;
    std::os::unix::fs::symlink(&cache, data_dir.join("plugin-cache"))
        .map_err(|error| format!("linking {}: {error}", cache.display()))?;
    Ok(cache)
}

/// Whether `cache` holds compiled code for the component `file` (entries
/// are named `<sha256 of the component>-<engine>.cwasm`; one built by
/// another wasmtime is recompiled anyway, which only makes the start slower
/// than announced).
fn is_cached(cache: &Path, file: &Path) -> bool {
    use sha2::Digest;
    let Ok(bytes) = std::fs::read(file) else {
        return false;
    };
    let prefix = format!("{}-", hex::encode(sha2::Sha256::digest(&bytes)));
    let Ok(entries) = std::fs::read_dir(cache) else {
        return false;
    };
    entries.flatten().any(|entry| {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        name.starts_with(&prefix) && name.ends_with(".cwasm")
    })
}

/// The configuration levee runs with: [`SERVICE`] and, with the plugins,
/// one service per language found, all over the same replicas.
pub(super) fn config(
    data_dir: &Path,
    admin_token: &str,
    replica_addresses: &[String],
    plugins: Option<&Plugins>,
) -> anyhow::Result<serde_json::Value> {
    let nodes: Vec<serde_json::Value> = NODE_IDS
        .iter()
        .zip(replica_addresses)
        .map(|(id, address)| serde_json::json!({"id": id, "url": format!("http://{address}")}))
        .collect();
    let service = |name: &str, retry: Option<RetryPlugin>| -> anyhow::Result<serde_json::Value> {
        let mut policies = serde_json::Map::new();
        if let Some(retry) = retry {
            let mut binding = serde_json::json!({
                "plugin": retry.name,
                "config": serde_json::from_str::<serde_json::Value>(retry.config)?,
            });
            if let Some(limits) = retry.limits {
                binding["limits"] = serde_json::from_str(limits)?;
            }
            policies.insert("retry".into(), binding);
            for (kind, plugin) in OTHER_PLUGINS
                .iter()
                .filter(|(kind, _)| *kind != "checkpoint")
            {
                policies.insert((*kind).into(), serde_json::json!({"plugin": plugin}));
            }
        }
        Ok(serde_json::json!({
            "name": name,
            "nodes": nodes,
            "replicas": 3,
            "write_quorum": 2,
            "key": {"path_segment": 1},
            "timeouts": {"per_try_ms": 500, "total_ms": 2000},
            "outlier": {"consecutive_failures": 3, "base_ejection_ms": 1000, "max_ejection_ms": 5000},
            "policies": policies,
        }))
    };
    let mut services = vec![service(SERVICE, plugins.map(|plugins| plugins.retry))?];
    for (name, retry) in plugins.iter().flat_map(|plugins| &plugins.languages) {
        services.push(service(name, Some(*retry))?);
    }
    let mut config = serde_json::json!({
        "listeners": {"data": "127.0.0.1:0", "admin": "127.0.0.1:0"},
        "data_dir": data_dir,
        "admin_token": admin_token,
        "services": services,
    });
    if let Some(plugins) = plugins {
        config["plugin_dir"] = serde_json::json!(plugins.dir);
        // One checkpoint policy per process: a top-level binding.
        let checkpoint = OTHER_PLUGINS
            .iter()
            .find(|(kind, _)| *kind == "checkpoint")
            .map(|(_, plugin)| serde_json::json!({"plugin": plugin}));
        if let Some(binding) = checkpoint {
            config["checkpoint"] = binding;
        }
    }
    Ok(config)
}
