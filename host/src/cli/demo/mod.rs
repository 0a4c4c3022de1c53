//! `levee demo`: levee's main job on an embedded default, narrated.
//!
//! Why real processes: the point of the demo is to show what happens when a
//! replica *dies*, so the replicas are real `levee kv-replica` child
//! processes (each on a free loopback port with its own data directory),
//! one of them is killed with SIGKILL, and levee itself runs as a real
//! `levee serve` child with a configuration file written here. Nothing is
//! simulated; the demo is only the narrator and the HTTP client.
//!
//! The scenario, printed step by step: writes and reads through levee; one
//! replica is killed; writes are still acknowledged with W=2
//! (`x-levee-acks: 2/3`) and reads fail over (`x-levee-attempts`); the
//! replica comes back on the same port and hinted handoff brings it up to
//! date, shown by all three replicas' `/_dump` being identical; a summary of
//! requests, retries, plugin fallbacks and latencies.
//!
//! Policies: the example Wasm plugins (`retry-backoff`, `route-affinity`,
//! `checkpoint-interval`) are used when found (`--plugin-dir`, else
//! `LEVEE_PLUGIN_DIR`, else `plugins/dist` next to the binary's repository
//! or the current directory); otherwise the demo says how to build them and
//! runs on the native policies. `--retry-plugin` swaps the retry policy for
//! the same rules written in JavaScript (`retry-backoff-js`) or Python
//! (`retry-backoff-py`), each bound with its own config fields and the
//! memory its language runtime needs ([`RETRY_PLUGINS`]).
//!
//! Bounds: every wait is a bounded poll and the whole run is capped at
//! [`DEMO_MS_MAX`]. Children are killed by PID when the demo ends, fails or
//! is interrupted (Ctrl-C); with `--keep` they are left running and the demo
//! prints the commands to try and how to stop them.
//!
//! The parts: `scenario` is the narration, step by step; `processes`
//! starts, kills and restarts the child processes and writes levee's
//! configuration; `requests` is the demo's HTTP client (its statistics, the
//! convergence wait, the summary from `/metrics`).

mod processes;
mod requests;
mod scenario;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use processes::Cluster;
use scenario::scenario;

/// The whole demo must finish within this.
pub const DEMO_MS_MAX: u64 = 30_000;
/// How long a child gets to print its address.
const START_MS_MAX: u64 = 10_000;
/// How long hinted handoff gets to converge.
const CONVERGE_MS_MAX: u64 = 12_000;
/// A demo request's timeout.
const REQUEST_TIMEOUT_MS: u64 = 5_000;
/// Keys written before and during the failure.
const KEYS_PER_PHASE: usize = 24;
/// The routing and checkpoint plugins the demo binds, by policy kind.
const OTHER_PLUGINS: [(&str, &str); 2] = [
    ("routing", "route-affinity"),
    ("checkpoint", "checkpoint-interval"),
];

/// A retry plugin `--retry-plugin` can pick, and how the demo binds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPlugin {
    pub name: &'static str,
    /// Its config, in its own field names (three attempts in all).
    pub config: &'static str,
    /// Its binding's `limits`, when the defaults do not fit.
    pub limits: Option<&'static str>,
}

/// The `retry-backoff` rules in Rust (the default), JavaScript and Python.
/// JS and Python runtimes need 9.1 and 12.4 MiB of linear memory (measured;
/// Python gets 24 MiB for its heap to grow) and up to 0.8 ms for an
/// instance's first call, which a loaded machine can push past the 2 ms
/// default deadline; the README's "Plugins in other languages" has the
/// numbers.
pub const RETRY_PLUGINS: [RetryPlugin; 3] = [
    RetryPlugin {
        name: "retry-backoff",
        config: r#"{"max_attempts": 3, "base_delay_ms": 25}"#,
        limits: None,
    },
    RetryPlugin {
        name: "retry-backoff-js",
        config: r#"{"maxAttempts": 3, "baseDelayMs": 25}"#,
        limits: Some(r#"{"call_timeout_ms": 20}"#),
    },
    RetryPlugin {
        name: "retry-backoff-py",
        config: r#"{"attempts": 3, "backoff_base_ms": 25}"#,
        limits: Some(r#"{"memory_bytes_max": 25165824, "call_timeout_ms": 20}"#),
    },
];

impl RetryPlugin {
    /// The plugin named `name`, if the demo knows it.
    pub fn named(name: &str) -> Option<RetryPlugin> {
        RETRY_PLUGINS.into_iter().find(|plugin| plugin.name == name)
    }

    /// Every plugin the demo binds with this one, by policy kind.
    fn plugin_set(self) -> [(&'static str, &'static str); 3] {
        [("retry", self.name), OTHER_PLUGINS[0], OTHER_PLUGINS[1]]
    }
}
/// Node ids of the three replicas.
const NODE_IDS: [&str; 3] = ["a", "b", "c"];
/// The replica the demo kills.
const VICTIM: usize = 1;

/// `levee demo` options.
#[derive(Debug, Clone, Default)]
pub struct DemoOptions {
    /// Leave everything running at the end.
    pub keep: bool,
    /// Where the example plugins are.
    pub plugin_dir: Option<PathBuf>,
    /// The retry plugin (`None`: `retry-backoff`).
    pub retry_plugin: Option<RetryPlugin>,
}

impl DemoOptions {
    fn retry_plugin(&self) -> RetryPlugin {
        self.retry_plugin.unwrap_or(RETRY_PLUGINS[0])
    }
}

/// Runs the demo. Children are cleaned up on every path out of here unless
/// the scenario completed with `--keep`.
pub async fn run(options: DemoOptions) -> anyhow::Result<ExitCode> {
    let dir = demo_dir()?;
    let mut cluster = Cluster::new(dir.clone());
    let scenario = tokio::time::timeout(
        Duration::from_millis(DEMO_MS_MAX),
        scenario(&mut cluster, &options),
    );
    let outcome = tokio::select! {
        outcome = scenario => match outcome {
            Ok(result) => result,
            Err(_) => Err(anyhow::anyhow!("the demo took longer than {} s", DEMO_MS_MAX / 1000)),
        },
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    match outcome {
        Ok(()) if options.keep => {
            cluster.print_keep_instructions();
            cluster.detach();
            Ok(ExitCode::SUCCESS)
        }
        Ok(()) => {
            cluster.shutdown();
            let _ = std::fs::remove_dir_all(&dir);
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            println!("\ndemo stopped: {error:#}");
            println!("logs were in {}", dir.display());
            cluster.shutdown();
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Where the example plugins are (all of `retry`'s set), or why they are
/// not used.
fn find_plugins(explicit: Option<&Path>, retry: RetryPlugin) -> Result<PathBuf, String> {
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
    let complete = |dir: &Path| {
        retry
            .plugin_set()
            .iter()
            .all(|(_, name)| dir.join(format!("{name}.wasm")).is_file())
    };
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

/// A fresh directory for the demo's files.
fn demo_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "levee-demo-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
