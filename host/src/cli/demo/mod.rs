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
//! replica is killed; reads fail over (`x-levee-attempts`), each retry
//! decided by a Wasm plugin, named from `x-levee-policy-version`; the same
//! failover on two more services over the same replicas whose retry
//! policies are the same rules written in JavaScript and in Python, each
//! with its own config fields, and what the admin API counted for each;
//! writes are still acknowledged with W=2 (`x-levee-acks: 2/3`); the
//! replica comes back on the same port and hinted handoff brings it up to
//! date, shown by all three replicas' `/_dump` being identical; a summary of
//! requests, retries, plugin fallbacks and latencies.
//!
//! Policies: the example Wasm plugins (`retry-backoff`, `route-affinity`,
//! `checkpoint-interval`, and `retry-backoff-js`, `retry-backoff-py` for
//! the services `kv-js` and `kv-py`, [`LANGUAGE_SERVICES`]) are used when
//! found (`--plugin-dir`, else `LEVEE_PLUGIN_DIR`, else `plugins/dist` next
//! to the binary's repository or the current directory); otherwise the demo
//! says how to build them and runs on the native policies (a missing
//! JavaScript or Python component only drops its service). The ones bound
//! are copied into a plugin directory of the demo's own, so levee compiles
//! nothing else at start. `--retry-plugin` picks the retry plugin of the
//! service `kv` ([`RETRY_PLUGINS`]).
//!
//! Compiling: a JavaScript or Python component carries its language's
//! runtime and takes ~20 s to compile (release build, 2 cores; ~40 s in a
//! debug build), which levee does before it reports ready. The compiled
//! code is kept across runs: levee's cache directory
//! (`<data_dir>/plugin-cache`) is a link to `LEVEE_DEMO_CACHE_DIR`, else
//! `$XDG_CACHE_HOME/levee/demo-plugin-cache`, else
//! `~/.cache/levee/demo-plugin-cache`, so only the first run pays, and the
//! demo says so while it waits.
//!
//! Bounds: every wait is a bounded poll; levee's start-up (compiling
//! included) is capped at [`READY_MS_MAX`], the whole run at that plus
//! [`DEMO_MS_MAX`]. Children are killed by PID when the demo ends, fails or
//! is interrupted (Ctrl-C); with `--keep` they are left running and the demo
//! prints the commands to try and how to stop them.
//!
//! The parts: `scenario` is the narration, step by step; `processes`
//! starts, kills and restarts the child processes and waits for levee to be
//! ready; `setup` finds the plugins, prepares the demo's plugin directory
//! and compiled-code cache and writes levee's configuration; `requests` is
//! the demo's HTTP client (its statistics, the admin API's views, the
//! convergence wait, the summary from `/metrics`).

mod processes;
mod requests;
mod scenario;
mod setup;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use processes::Cluster;
use scenario::scenario;

/// The demo's own steps must finish within this (levee's start-up is
/// bounded on its own, by [`READY_MS_MAX`]).
pub const DEMO_MS_MAX: u64 = 30_000;
/// How long levee gets to become ready. Measured on 2 shared cores under
/// load: compiling the JavaScript and Python plugins cold took 48 s in a
/// release build and 82 s in a debug build; a start from the cache takes
/// well under 1 s.
pub const READY_MS_MAX: u64 = 300_000;
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

/// A retry plugin the demo binds, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPlugin {
    pub name: &'static str,
    /// The language it is written in.
    pub language: &'static str,
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
        language: "Rust",
        config: r#"{"max_attempts": 3, "base_delay_ms": 25}"#,
        limits: None,
    },
    RetryPlugin {
        name: "retry-backoff-js",
        language: "JavaScript",
        config: r#"{"maxAttempts": 3, "baseDelayMs": 25}"#,
        limits: Some(r#"{"call_timeout_ms": 20}"#),
    },
    RetryPlugin {
        name: "retry-backoff-py",
        language: "Python",
        config: r#"{"attempts": 3, "backoff_base_ms": 25}"#,
        limits: Some(r#"{"memory_bytes_max": 25165824, "call_timeout_ms": 20}"#),
    },
];

/// The service every step uses.
const SERVICE: &str = "kv";
/// The services that show the retry rules in other languages: same
/// replicas, same routing, the service's retry policy in that language.
const LANGUAGE_SERVICES: [(&str, RetryPlugin); 2] =
    [("kv-js", RETRY_PLUGINS[1]), ("kv-py", RETRY_PLUGINS[2])];

impl RetryPlugin {
    /// The plugin named `name`, if the demo knows it.
    pub fn named(name: &str) -> Option<RetryPlugin> {
        RETRY_PLUGINS.into_iter().find(|plugin| plugin.name == name)
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
    /// The retry plugin of the service `kv` (`None`: `retry-backoff`).
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
    let bound_ms = DEMO_MS_MAX + READY_MS_MAX;
    let scenario = tokio::time::timeout(
        Duration::from_millis(bound_ms),
        scenario(&mut cluster, &options),
    );
    let outcome = tokio::select! {
        outcome = scenario => match outcome {
            Ok(result) => result,
            Err(_) => Err(anyhow::anyhow!("the demo took longer than {} s", bound_ms / 1000)),
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
