//! Plugin vs native vs fresh instantiation, side by side in one run.
//!
//! For each example plugin (retry-backoff, route-affinity,
//! checkpoint-interval) three ways to get the same decision through the
//! guarded policy the request path calls:
//! - `plugin-pooled`: the bound plugin, reusing a pooled instance;
//! - `native`: no plugin bound, the native policy answers;
//! - `plugin-fresh`: a binding whose pool keeps no idle instance, so every
//!   call pays store + instantiate + `configure` + call.
//!
//! After criterion's report, a plain timing pass prints the ratios
//! (median of batches, same process, same inputs).
//!
//! Run: `cargo bench -p levee-plugin --bench policy` (needs
//! `scripts/build-plugins.sh` to have built `plugins/dist`).

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use criterion::Criterion;
use levee_plugin::{
    BoundPlugin, CheckpointPolicy, Limits, PolicyKind, RetryPolicy, RoutingPolicy, Runtime,
    RuntimeOptions,
};
use levee_policy::{
    AttemptOutcome, AttemptResult, CheckpointInterval, LogStats, Node, RequestInfo, RetryBackoff,
    RetryContext, RouteAffinity,
};

const BATCHES: usize = 21;
const CALLS_PER_BATCH: usize = 2_000;
const FRESH_CALLS_PER_BATCH: usize = 200;

fn dist(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../plugins/dist")
        .join(format!("{name}.wasm"));
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{} ({e}): run scripts/build-plugins.sh", path.display()))
}

fn bind(runtime: &Runtime, name: &str, kind: PolicyKind, pooled: bool) -> Arc<BoundPlugin> {
    let component = runtime
        .compile_as(name, &dist(name), kind)
        .expect("example plugin loads");
    let limits = if pooled {
        Limits::default()
    } else {
        Limits {
            pool_idle_max: 0,
            ..Limits::default()
        }
    };
    component
        .bind(runtime, "{}", limits)
        .expect("example plugin binds")
}

fn request() -> RequestInfo {
    RequestInfo {
        service: "kv".into(),
        method: "GET".into(),
        path: "/users/42".into(),
        routing_key: "users/42".into(),
        idempotent: true,
        headers: vec![("accept".into(), "application/json".into())],
    }
}

fn outcome() -> AttemptOutcome {
    AttemptOutcome {
        node_id: "n1".into(),
        attempt: 1,
        result: AttemptResult::Status(503),
        elapsed_ms: 12,
        retry_after_ms: None,
    }
}

fn context() -> RetryContext {
    RetryContext {
        budget_remaining: 10,
        deadline_remaining_ms: 5_000,
        max_attempts: 3,
        candidates: vec!["n1".into(), "n2".into(), "n3".into()],
    }
}

fn candidates() -> Vec<Node> {
    ["a", "b", "a"]
        .iter()
        .enumerate()
        .map(|(i, zone)| Node {
            id: format!("n{}", i + 1),
            address: format!("http://127.0.0.1:{}", 7001 + i),
            zone: Some(zone.to_string()),
            weight: 1,
            healthy: i != 1,
            failure_rate_permille: 0,
            latency_ms: 4,
        })
        .collect()
}

fn stats() -> LogStats {
    LogStats {
        records_since_checkpoint: 12_000,
        bytes_since_checkpoint: 1 << 20,
        ms_since_checkpoint: 5_000,
        total_bytes: 64 << 20,
        oldest_needed_lsn: 1_000,
        reclaimable_bytes: 1 << 20,
    }
}

/// One way of making a decision, boxed so all cases share a loop.
struct Case {
    group: &'static str,
    variant: &'static str,
    run: Box<dyn Fn()>,
    calls_per_batch: usize,
}

impl Case {
    /// `plugin-fresh` pays an instantiation per call, so it runs smaller
    /// batches.
    fn new(group: &'static str, variant: &'static str, run: impl Fn() + 'static) -> Case {
        Case {
            group,
            variant,
            run: Box::new(run),
            calls_per_batch: if variant == "plugin-fresh" {
                FRESH_CALLS_PER_BATCH
            } else {
                CALLS_PER_BATCH
            },
        }
    }
}

/// The three ways to decide with the example plugin `name`: what each
/// variant binds (nothing, for native).
fn variants(
    runtime: &Runtime,
    name: &str,
    kind: PolicyKind,
) -> [(&'static str, Option<Arc<BoundPlugin>>); 3] {
    [
        ("plugin-pooled", Some(bind(runtime, name, kind, true))),
        ("native", None),
        ("plugin-fresh", Some(bind(runtime, name, kind, false))),
    ]
}

fn cases(runtime: &Runtime) -> Vec<Case> {
    let mut cases = Vec::new();
    for (variant, bound) in variants(runtime, "retry-backoff", PolicyKind::Retry) {
        let policy = RetryPolicy::new(runtime, RetryBackoff::default());
        policy.bind(bound).unwrap();
        let (request, outcome, context) = (request(), outcome(), context());
        cases.push(Case::new("retry-backoff", variant, move || {
            black_box(policy.decide(
                black_box(&request),
                black_box(&outcome),
                black_box(&context),
            ));
        }));
    }
    for (variant, bound) in variants(runtime, "route-affinity", PolicyKind::Routing) {
        let policy = RoutingPolicy::new(RouteAffinity::default());
        policy.bind(bound).unwrap();
        let (request, candidates) = (request(), candidates());
        cases.push(Case::new("route-affinity", variant, move || {
            black_box(policy.route(black_box(&request), black_box(&candidates)));
        }));
    }
    for (variant, bound) in variants(runtime, "checkpoint-interval", PolicyKind::Checkpoint) {
        let policy = CheckpointPolicy::new(CheckpointInterval::default());
        policy.bind(bound).unwrap();
        let stats = stats();
        cases.push(Case::new("checkpoint-interval", variant, move || {
            black_box(policy.decide(black_box(&stats)));
        }));
    }
    cases
}

/// Median nanoseconds per call over `BATCHES` batches.
fn median_ns(case: &Case) -> f64 {
    let mut per_call: Vec<f64> = (0..BATCHES)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..case.calls_per_batch {
                (case.run)();
            }
            started.elapsed().as_nanos() as f64 / case.calls_per_batch as f64
        })
        .collect();
    per_call.sort_by(f64::total_cmp);
    per_call[BATCHES / 2]
}

fn print_ratios(cases: &[Case]) {
    println!("\nside by side (median of {BATCHES} batches, ns per decision):");
    println!(
        "{:<22} {:>14} {:>12} {:>14} {:>16} {:>16}",
        "policy", "plugin-pooled", "native", "plugin-fresh", "pooled/native", "fresh/pooled"
    );
    for group in ["retry-backoff", "route-affinity", "checkpoint-interval"] {
        let ns = |variant: &str| {
            let case = cases
                .iter()
                .find(|c| c.group == group && c.variant == variant)
                .expect("case exists");
            median_ns(case)
        };
        let (pooled, native, fresh) = (ns("plugin-pooled"), ns("native"), ns("plugin-fresh"));
        println!(
            "{group:<22} {pooled:>14.0} {native:>12.0} {fresh:>14.0} {:>15.1}x {:>15.1}x",
            pooled / native,
            fresh / pooled
        );
    }
}

/// `LEVEE_BENCH_PROFILE=<group>/<variant>` runs just that case in a loop
/// (for `perf record`) instead of the benchmarks.
fn profile_one(cases: &[Case], name: &str) {
    let case = cases
        .iter()
        .find(|c| format!("{}/{}", c.group, c.variant) == name)
        .unwrap_or_else(|| panic!("no case {name}"));
    for _ in 0..50 {
        println!("{name}: {:.0} ns", median_ns(case));
    }
}

fn main() {
    let runtime = Runtime::new(RuntimeOptions::default()).expect("runtime starts");
    let cases = cases(&runtime);
    if let Ok(name) = std::env::var("LEVEE_BENCH_PROFILE") {
        return profile_one(&cases, &name);
    }
    let mut criterion = Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3))
        .configure_from_args();
    for group in ["retry-backoff", "route-affinity", "checkpoint-interval"] {
        let mut benches = criterion.benchmark_group(group);
        for case in cases.iter().filter(|c| c.group == group) {
            benches.bench_function(case.variant, |b| b.iter(|| (case.run)()));
        }
        benches.finish();
    }
    criterion.final_summary();
    print_ratios(&cases);
}
