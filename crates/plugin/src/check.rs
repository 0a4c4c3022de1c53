//! [`check`]: what `levee plugin check FILE [--config JSON]` reports.
//!
//! Runs exactly the load path a real install takes (header checks,
//! compilation or cache, world and import validation, type checks) and,
//! with a config, one instantiation plus `configure`, so "check passes"
//! means "install and bind would pass".

use std::fmt;
use std::time::Instant;

use serde::Serialize;

use crate::component::CacheOutcome;
use crate::error::LoadError;
use crate::kind::PolicyKind;
use crate::kind::is_granted_import;
use crate::limits::Limits;
use crate::plan_cache::RouteTraits;
use crate::runtime::Runtime;

/// What a plugin's WASI imports are granted (see [`crate::wasi`]).
pub const WASI_GRANTED: &str = "nothing";

/// The outcome of a successful [`check`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckReport {
    /// The world the component implements.
    pub world: PolicyKind,
    /// SHA-256 of the bytes, hex.
    pub version: String,
    pub size_bytes: usize,
    pub compile_ms: f64,
    pub cache: CacheOutcome,
    pub exports: Vec<String>,
    /// Every import, WASI ones included.
    pub imports: Vec<String>,
    /// The WASI interfaces among `imports` (a language runtime's).
    pub wasi_imports: Vec<String>,
    /// What those WASI imports are granted: always `"nothing"` (see
    /// [`crate::wasi`]); in the report so that scripts need not know.
    pub wasi_granted: &'static str,
    /// Whether a config was given and accepted by `configure`.
    pub config_accepted: bool,
    /// Time for the instantiation + `configure`, when a config was given.
    pub instantiate_ms: Option<f64>,
    /// What `configure` declared under that config (routing plugins).
    pub route_traits: Option<RouteTraits>,
}

/// Validates `bytes` as a policy plugin and, if `config` is given, binds it
/// with default [`Limits`] to check that `configure` accepts it.
/// **Blocking.**
pub fn check(
    runtime: &Runtime,
    bytes: &[u8],
    config: Option<&str>,
) -> Result<CheckReport, LoadError> {
    let component = runtime.compile("check", bytes)?;
    let (instantiate_ms, route_traits) = match config {
        Some(config) => {
            let started = Instant::now();
            let bound = component.bind(runtime, config, Limits::default())?;
            let instantiate_ms = started.elapsed().as_secs_f64() * 1e3;
            (Some(instantiate_ms), Some(bound.route_traits()))
        }
        None => (None, None),
    };
    let wasi_imports = component
        .imports()
        .iter()
        .filter(|name| is_granted_import(name))
        .cloned()
        .collect();
    Ok(CheckReport {
        world: component.kind(),
        version: component.version().to_string(),
        size_bytes: component.size_bytes(),
        compile_ms: component.compile_ms(),
        cache: component.cache().clone(),
        exports: component.exports().to_vec(),
        imports: component.imports().to_vec(),
        wasi_imports,
        wasi_granted: WASI_GRANTED,
        config_accepted: config.is_some(),
        instantiate_ms,
        route_traits,
    })
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "ok: implements world {}", self.world)?;
        writeln!(f, "version:  {}", self.version)?;
        writeln!(f, "size:     {} bytes", self.size_bytes)?;
        let cache = if self.cache.is_hit() {
            " (cache hit)"
        } else {
            ""
        };
        writeln!(f, "compile:  {:.1} ms{cache}", self.compile_ms)?;
        writeln!(f, "exports:  {}", self.exports.join(", "))?;
        let levee: Vec<&str> = self
            .imports
            .iter()
            .filter(|name| !is_granted_import(name))
            .map(String::as_str)
            .collect();
        let list = |names: &[&str]| match names {
            [] => "(none)".to_string(),
            names => names.join(", "),
        };
        writeln!(f, "imports:  {}", list(&levee))?;
        if !self.wasi_imports.is_empty() {
            let wasi: Vec<&str> = self.wasi_imports.iter().map(String::as_str).collect();
            writeln!(f, "wasi:     {}", list(&wasi))?;
            writeln!(
                f,
                "granted:  {} (no files, no sockets, no environment or arguments; \
                 stdout/stderr to the host log; host clock and random source)",
                self.wasi_granted
            )?;
        }
        match self.instantiate_ms {
            Some(ms) => write!(f, "config:   accepted (instantiate + configure {ms:.2} ms)")?,
            None => write!(f, "config:   not checked (pass --config JSON)")?,
        }
        if self.world == PolicyKind::Routing
            && let Some(traits) = self.route_traits
        {
            let promise = if traits.cacheable_by_health_flags {
                "cacheable-by-health-flags (plans are cached per facts, table and candidates)"
            } else {
                "none (route is called for every request)"
            };
            write!(f, "\npromises: {promise}")?;
        }
        Ok(())
    }
}
