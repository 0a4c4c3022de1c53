//! `levee demo`, run as a user runs it: three real `levee kv-replica`
//! processes, a real `levee serve` in front, one replica killed. The check
//! is on what the demo prints: every read that failed over from the dead
//! replica names the plugin that decided its retry (from
//! `x-levee-policy-version`), and the demo's default plugin set puts that
//! decision in Rust (`kv`), JavaScript (`kv-js`, config `maxAttempts`) and
//! Python (`kv-py`, config `attempts`); the admin API's counters for each
//! show calls and no fallback; and the replicas converge after handoff.
//!
//! Cost: levee compiles the JavaScript and Python components before it is
//! ready. The demo keeps the compiled code in `LEVEE_DEMO_CACHE_DIR`; this
//! test points it at a directory under Cargo's target dir, so only the
//! first run after a `cargo clean` (or a component or wasmtime change) pays
//! for compiling. Measured (debug build, 2 cores shared with other builds):
//! 84 s for the first run, 3.2 s for later ones.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const LEVEE: &str = env!("CARGO_BIN_EXE_levee");

/// The three services and the retry plugin each binds.
const DECIDERS: [(&str, &str); 3] = [
    ("kv", "retry-backoff"),
    ("kv-js", "retry-backoff-js"),
    ("kv-py", "retry-backoff-py"),
];

fn plugin_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist");
    for (_, plugin) in DECIDERS {
        let file = dir.join(format!("{plugin}.wasm"));
        assert!(
            file.is_file(),
            "{} is missing; build the plugins first: bash scripts/build-plugins.sh",
            file.display()
        );
    }
    dir
}

/// The demo's read lines for `service` (`GET /<service>/kv/<key> -> ...`).
fn reads<'a>(stdout: &'a str, service: &str) -> Vec<&'a str> {
    let prefix = format!("GET /{service}/kv/");
    stdout
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with(&prefix))
        .collect()
}

/// `x-levee-attempts: N` of a read line.
fn attempts(line: &str) -> u32 {
    line.split("x-levee-attempts: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no x-levee-attempts in {line:?}"))
}

/// The `/admin/plugins` line the demo prints for `plugin`: `(calls,
/// fallbacks, traps, timeouts)`.
fn counters(stdout: &str, plugin: &str) -> [u64; 4] {
    let line = stdout
        .lines()
        .map(str::trim)
        .find(|line| {
            line.strip_prefix("/admin/plugins:")
                .and_then(|rest| rest.split_whitespace().next())
                == Some(plugin)
        })
        .unwrap_or_else(|| panic!("no /admin/plugins line for {plugin}"));
    let value = |name: &str| -> u64 {
        line.split_whitespace()
            .skip_while(|word| *word != name)
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line:?}"))
    };
    [
        value("calls"),
        value("fallbacks"),
        value("traps"),
        value("timeouts"),
    ]
}

#[test]
fn the_demo_fails_over_with_retries_decided_in_rust_javascript_and_python() {
    let plugins = plugin_dir();
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("demo-plugin-cache");
    let started = Instant::now();
    let output = Command::new(LEVEE)
        .args(["demo", "--plugin-dir"])
        .arg(&plugins)
        .env("LEVEE_DEMO_CACHE_DIR", &cache)
        .env("LEVEE_LOG", "warn")
        .output()
        .expect("run levee demo");
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    // The whole narration, for whoever reads a failure (or the timing).
    eprintln!(
        "levee demo took {:.1} s:\n{stdout}\n{}",
        took.as_secs_f64(),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "the demo failed: {:?}",
        output.status
    );

    for (service, plugin) in DECIDERS {
        let reads = reads(&stdout, service);
        assert!(!reads.is_empty(), "no reads through {service}");
        // A read that failed over from the dead replica: answered, after
        // more than one attempt, its retry decided by the service's plugin
        // itself (a fallback would read `fallback:<why>`, a version the
        // admin API does not know would stay hex).
        let failed_over: Vec<&&str> = reads
            .iter()
            .filter(|line| line.contains("-> 200") && attempts(line) >= 2)
            .collect();
        assert!(
            !failed_over.is_empty(),
            "no read through {service} retried: {reads:#?}"
        );
        for line in failed_over {
            assert!(
                line.ends_with(&format!("retry decided by {plugin}")),
                "{service}: {line:?}"
            );
        }
        let [calls, fallbacks, traps, timeouts] = counters(&stdout, plugin);
        assert!(calls >= 2, "{plugin}: {calls} calls");
        assert_eq!(
            (fallbacks, traps, timeouts),
            (0, 0, 0),
            "{plugin} fell back"
        );
    }
    // Each language plugin ran with its own config fields.
    assert!(stdout.contains(r#"retry-backoff-js (JavaScript), config {"maxAttempts": 3"#));
    assert!(stdout.contains(r#"retry-backoff-py (Python), config {"attempts": 3"#));
    assert!(
        stdout.contains("all three replicas identical after"),
        "handoff did not converge"
    );
}
