//! Shared helpers for the runtime's integration tests: the built plugin
//! components, seeded runtimes and typical inputs.
//!
//! The components come from `scripts/build-plugins.sh` (run by CI before
//! `cargo test`). A missing file fails the test with that instruction: a
//! skipped plugin test would look like a passing one.

// Each test file includes this module but uses only some of its helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use levee_plugin::{
    BoundPlugin, Component, Decided, EngineCaps, HostEnv, Limits, NodeTable, RetryPolicy, Runtime,
    RuntimeOptions, Source,
};
use levee_policy::{
    AttemptOutcome, AttemptResult, Candidate, ErrorKind, Method, NodeIndex, NodeInfo, RequestFacts,
    RequestView, RetryBackoff, RetryContext, RetryDecision,
};
use proptest::prelude::*;

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

/// A client request behind [`RequestView`], with owned strings. It shows
/// every header it has, credentials included: hiding those is the host
/// runtime's job, which the tests check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRequest {
    pub service: String,
    pub method: String,
    pub path: String,
    pub routing_key: String,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
}

impl TestRequest {
    pub fn with_method(mut self, method: &str) -> TestRequest {
        self.method = method.into();
        self
    }

    pub fn with_header(mut self, name: &str, value: &str) -> TestRequest {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// The facts the host derives: the method's class, and idempotency
    /// from the method or a non-empty `Idempotency-Key`.
    pub fn facts(&self) -> RequestFacts {
        let method = Method::from_name(&self.method);
        let idempotent_method = matches!(
            method,
            Method::Get | Method::Head | Method::Options | Method::Put | Method::Delete
        );
        let keyed = self
            .headers
            .iter()
            .any(|(name, value)| name == "idempotency-key" && !value.is_empty());
        RequestFacts {
            method,
            idempotent: idempotent_method || keyed,
        }
    }
}

impl RequestView for TestRequest {
    fn service(&self) -> &str {
        &self.service
    }
    fn method(&self) -> &str {
        &self.method
    }
    fn path(&self) -> &str {
        &self.path
    }
    fn routing_key(&self) -> &str {
        &self.routing_key
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

pub fn get(path: &str) -> TestRequest {
    TestRequest {
        service: "kv".into(),
        method: "GET".into(),
        path: path.into(),
        routing_key: path.trim_start_matches('/').into(),
        headers: vec![("accept".into(), "*/*".into())],
    }
}

/// A node of a test table, at `http://127.0.0.1:1/<id>`.
pub fn node_info(id: &str, zone: Option<&str>) -> NodeInfo {
    NodeInfo {
        id: id.into(),
        address: format!("http://127.0.0.1:1/{id}"),
        zone: zone.map(Into::into),
        weight: 1,
    }
}

/// The node table of the retry tests: n1, n2, n3 at indexes 0, 1, 2.
pub fn test_nodes() -> &'static NodeTable {
    static NODES: OnceLock<NodeTable> = OnceLock::new();
    NODES.get_or_init(|| {
        NodeTable::new(vec![
            node_info("n1", Some("a")),
            node_info("n2", Some("b")),
            node_info("n3", None),
        ])
        .unwrap()
    })
}

/// Every node of [`test_nodes`], in order.
pub const CANDIDATES: [NodeIndex; 3] = [0, 1, 2];

pub fn status(node: NodeIndex, attempt: u32, status: u16) -> AttemptOutcome {
    AttemptOutcome {
        node,
        attempt,
        result: AttemptResult::Status(status),
        elapsed_ms: 5,
        retry_after_ms: None,
    }
}

pub fn error(node: NodeIndex, attempt: u32, kind: ErrorKind) -> AttemptOutcome {
    AttemptOutcome {
        node,
        attempt,
        result: AttemptResult::Error(kind),
        elapsed_ms: 5,
        retry_after_ms: None,
    }
}

/// A context with room to retry: budget, time and attempts to spare.
pub fn roomy_context() -> RetryContext<'static> {
    RetryContext {
        budget_remaining: 10,
        deadline_remaining_ms: 10_000,
        max_attempts: 5,
        candidates: &CANDIDATES,
    }
}

/// A routing candidate with a few ms of latency.
pub fn candidate(node: NodeIndex, healthy: bool) -> Candidate {
    Candidate {
        node,
        healthy,
        failure_rate_permille: 0,
        latency_ms: 3,
    }
}

/// `policy`'s decision about `request` over [`test_nodes`].
pub fn decide(
    policy: &RetryPolicy,
    request: &TestRequest,
    outcome: &AttemptOutcome,
    context: &RetryContext<'_>,
) -> Decided<RetryDecision> {
    policy.decide(request, request.facts(), test_nodes(), outcome, context)
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
    decide(policy, &get("/k"), &status(0, 1, code), &roomy_context())
}

/// Fails unless the plugin itself answered (no native, fallback or
/// quarantine answer).
#[track_caller]
pub fn assert_plugin_answered(source: &Source) {
    assert!(matches!(source, Source::Plugin { .. }), "{source:?}");
}

/// Generated retry inputs shared by the plugin-vs-native comparisons
/// (`examples.rs`, `languages.rs`): a request (method, optional
/// idempotency key), a failed attempt, and the context's budget,
/// deadline, attempt cap and candidate count, wide enough to reach every
/// rule and the host's extremes.
pub fn retry_inputs() -> impl Strategy<Value = (TestRequest, AttemptOutcome, u32, u32, u32, usize)>
{
    let request = (
        prop::sample::select(vec![
            "GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS", "PROPFIND",
        ]),
        any::<bool>(),
        "[a-z]{0,12}",
    )
        .prop_map(|(method, keyed, key)| {
            let request = get(&format!("/{key}")).with_method(method);
            if keyed {
                request.with_header("idempotency-key", &key)
            } else {
                request
            }
        });
    let result = proptest::prop_oneof![
        prop::sample::select(vec![429u16, 500, 501, 502, 503, 504, 599])
            .prop_map(AttemptResult::Status),
        prop::sample::select(vec![
            ErrorKind::Connect,
            ErrorKind::Timeout,
            ErrorKind::Reset,
            ErrorKind::Protocol,
            ErrorKind::Other
        ])
        .prop_map(AttemptResult::Error),
    ];
    let outcome = (
        0u32..=40,
        result,
        0u32..5_000,
        prop::option::of(0u32..120_000),
    )
        .prop_map(
            |(attempt, result, elapsed_ms, retry_after_ms)| AttemptOutcome {
                node: 0,
                attempt,
                result,
                elapsed_ms,
                retry_after_ms,
            },
        );
    (
        request,
        outcome,
        0u32..4,
        0u32..70_000,
        1u32..12,
        1usize..=CANDIDATES.len(),
    )
}
