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
//! runs on the native policies.
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
/// The plugins the demo binds, by policy kind.
const PLUGINS: [(&str, &str); 3] = [
    ("retry", "retry-backoff"),
    ("routing", "route-affinity"),
    ("checkpoint", "checkpoint-interval"),
];
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

/// Where the example plugins are, or why they are not used.
fn find_plugins(explicit: Option<&Path>) -> Result<PathBuf, String> {
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
        PLUGINS
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
