//! Shared helpers for the runtime's integration tests: the built plugin
//! components, seeded runtimes and typical inputs.
//!
//! The components come from `scripts/build-plugins.sh` (run by CI before
//! `cargo test`). A missing file fails the test with that instruction: a
//! skipped plugin test would look like a passing one.

// Each test file includes this module but uses only some of its helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use levee_plugin::{
    BoundPlugin, Component, Decided, EngineCaps, HostEnv, Limits, RetryPolicy, Runtime,
    RuntimeOptions, Source,
};
use levee_policy::{
    AttemptOutcome, AttemptResult, ErrorKind, Node, RequestInfo, RetryBackoff, RetryContext,
    RetryDecision,
};

/// Seed of the host random source in tests.
pub const SEED: u64 = 0x5EED_1E7E_E000_0001;
/// The manual clock's time in tests.
pub const NOW_MS: u64 = 1_800_000_000_000;

/// Limits for tests that expect the plugin to answer: the CPU budget is
/// raised to its ceiling so that a test thread preempted on a loaded
/// machine is not mistaken for a slow plugin (the deadline is wall time).
/// Tests about the deadline itself use the defaults.
pub fn patient_limits() -> Limits {
    Limits {
        call_timeout_ms: 1_000,
        configure_timeout_ms: 10_000,
        ..Limits::default()
    }
}

/// [`patient_limits`] that quarantine the version after `failures`
/// consecutive failures.
pub fn quarantine_after(failures: u32) -> Limits {
    Limits {
        consecutive_failures_max: failures,
        ..patient_limits()
    }
}

/// `plugins/dist/<name>.wasm`, e.g. `retry-backoff` or `zoo/panic`.
pub fn dist_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../plugins/dist")
        .join(format!("{name}.wasm"))
}

/// The bytes of a built plugin; fails loudly when it was not built.
pub fn dist(name: &str) -> Vec<u8> {
    let path = dist_path(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read plugin component {} ({e}): run scripts/build-plugins.sh",
            path.display()
        )
    })
}

/// Engine caps small enough that many test runtimes can coexist.
pub fn test_caps() -> EngineCaps {
    EngineCaps {
        instances_total_max: 64,
        ..EngineCaps::default()
    }
}

/// A runtime with a seeded random source, a manual clock, no disk cache.
pub fn seeded_runtime(seed: u64) -> Runtime {
    Runtime::new(RuntimeOptions {
        env: HostEnv::seeded(seed, NOW_MS),
        caps: test_caps(),
        ..RuntimeOptions::default()
    })
    .expect("runtime starts")
}

/// A runtime with its disk cache in `data_dir/plugin-cache`.
pub fn cached_runtime(data_dir: &Path) -> Runtime {
    Runtime::new(RuntimeOptions {
        env: HostEnv::seeded(SEED, NOW_MS),
        caps: test_caps(),
        ..RuntimeOptions::for_data_dir(data_dir)
    })
    .expect("runtime starts")
}

pub fn get(path: &str) -> RequestInfo {
    RequestInfo {
        service: "kv".into(),
        method: "GET".into(),
        path: path.into(),
        routing_key: path.trim_start_matches('/').into(),
        idempotent: true,
        headers: vec![("accept".into(), "*/*".into())],
    }
}

pub fn status(node: &str, attempt: u32, status: u16) -> AttemptOutcome {
    AttemptOutcome {
        node_id: node.into(),
        attempt,
        result: AttemptResult::Status(status),
        elapsed_ms: 5,
        retry_after_ms: None,
    }
}

pub fn error(node: &str, attempt: u32, kind: ErrorKind) -> AttemptOutcome {
    AttemptOutcome {
        node_id: node.into(),
        attempt,
        result: AttemptResult::Error(kind),
        elapsed_ms: 5,
        retry_after_ms: None,
    }
}

/// A context with room to retry: budget, time and attempts to spare.
pub fn roomy_context() -> RetryContext {
    RetryContext {
        budget_remaining: 10,
        deadline_remaining_ms: 10_000,
        max_attempts: 5,
        candidates: vec!["n1".into(), "n2".into(), "n3".into()],
    }
}

pub fn node(id: &str, zone: Option<&str>, healthy: bool) -> Node {
    Node {
        id: id.into(),
        address: format!("http://127.0.0.1:1/{id}"),
        zone: zone.map(Into::into),
        weight: 1,
        healthy,
        failure_rate_permille: 0,
        latency_ms: 3,
    }
}

/// The example `retry-backoff` plugin, compiled under its own name.
pub fn compile_retry_backoff(runtime: &Runtime) -> Arc<Component> {
    runtime
        .compile("retry-backoff", &dist("retry-backoff"))
        .unwrap()
}

/// A retry policy (native fallback: the default `RetryBackoff`) with
/// `bound` plugged in.
pub fn retry_policy_with(runtime: &Runtime, bound: Arc<BoundPlugin>) -> RetryPolicy {
    let policy = RetryPolicy::new(runtime, RetryBackoff::default());
    policy.bind(Some(bound)).unwrap();
    policy
}

/// The decision after a first attempt at `GET /k` that got `code` from
/// n1, with room to retry.
pub fn decide_first_attempt(policy: &RetryPolicy, code: u16) -> Decided<RetryDecision> {
    policy.decide(&get("/k"), &status("n1", 1, code), &roomy_context())
}

/// Fails unless the plugin itself answered (no native, fallback or
/// quarantine answer).
#[track_caller]
pub fn assert_plugin_answered(source: &Source) {
    assert!(matches!(source, Source::Plugin { .. }), "{source:?}");
}
