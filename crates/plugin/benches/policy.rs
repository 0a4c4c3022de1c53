//! Plugin vs native vs fresh instantiation, side by side in one run.
//!
//! For each example plugin (retry-backoff, route-affinity,
//! checkpoint-interval) three ways to get the same decision through the
//! guarded policy the request path calls:
//! - `plugin-pooled`: the bound plugin, reusing a pooled instance (for
//!   routing with the plan cache off, `route_plan_cache: false`, so every
//!   decision is a plugin call);
//! - `native`: no plugin bound, the native policy answers;
//! - `plugin-fresh`: a binding whose pool keeps no idle instance, so every
//!   call pays store + instantiate + `configure` + `set-nodes` + call;
//!
//! and for routing a fourth:
//! - `plugin-cached`: the default binding; route-affinity declares
//!   `cacheable-by-health-flags`, so after the first call the same request
//!   is answered from the binding's plan cache.
//!
//! Routing runs twice: with the 3 candidates of a typical key (N = 3) and
//! with 16 (a wide preference list), over a node table of 16 nodes given
//! once per instance (`set-nodes`), as in the host.
//!
//! Checkpoint's call carries one record of scalars and returns an enum: no
//! list, so no `cabi_realloc` and no `cabi_post_return`, one guest entry.
//! It is the closest to an empty export call, the per-call floor.
//!
//! After criterion's report, a plain timing pass prints the figures and
//! ratios (same process, same inputs; each case's median over rounds that
//! run one batch of every case in turn, so load on a shared machine hits
//! all cases alike) against the targets of `levee:policy@0.2.0`:
//! plugin-pooled at most 0.6 µs (retry, route with 3 candidates) or 1.5 µs
//! (route with 16), and at most 3× its native counterpart.
//!
//! Run: `cargo bench -p levee-plugin --bench policy` (needs
//! `scripts/build-plugins.sh` to have built `plugins/dist`).
//! `LEVEE_BENCH_TABLE_ONLY=1` skips criterion and prints the table only;
//! `LEVEE_PLUGINS_DIST=<dir>` loads the components from another directory
//! (a saved bench binary with the components it was built with).

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use criterion::Criterion;
use levee_plugin::{
    BoundPlugin, CheckpointPolicy, Limits, NodeTable, PolicyKind, RetryPolicy, RoutingPolicy,
    Runtime, RuntimeOptions,
};
use levee_policy::{
    AttemptOutcome, AttemptResult, Candidate, CheckpointInterval, LogStats, Method, NodeIndex,
    NodeInfo, RequestFacts, RequestView, RetryBackoff, RetryContext, RouteAffinity,
};

const BATCHES: usize = 21;
const CALLS_PER_BATCH: usize = 2_000;
const FRESH_CALLS_PER_BATCH: usize = 200;
/// Nodes in the service's table.
const NODES: usize = 16;
/// The retry candidates (a plan of three replicas).
const RETRY_CANDIDATES: [NodeIndex; 3] = [0, 1, 2];

/// The groups, in report order, with the plugin each binds and the
/// targets: plugin-pooled ns at most, and plugin-pooled / native at most.
const GROUPS: [(&str, f64, f64); 4] = [
    ("retry-decide", 600.0, 3.0),
    ("route-3", 600.0, 3.0),
    ("route-16", 1_500.0, 3.0),
    ("checkpoint-decide", f64::INFINITY, f64::INFINITY),
];

/// `plugins/dist`, or `LEVEE_PLUGINS_DIST` (to run a saved bench binary
/// against the components it was built with).
fn dist(name: &str) -> Vec<u8> {
    let dir = std::env::var_os("LEVEE_PLUGINS_DIST")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/dist"));
    let path = dir.join(format!("{name}.wasm"));
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{} ({e}): run scripts/build-plugins.sh", path.display()))
}

fn bind(runtime: &Runtime, name: &str, kind: PolicyKind, variant: &str) -> Arc<BoundPlugin> {
    let component = runtime
        .compile_as(name, &dist(name), kind)
        .expect("example plugin loads");
    let limits = match variant {
        "plugin-cached" => Limits::default(),
        "plugin-fresh" => Limits {
            pool_idle_max: 0,
            route_plan_cache: false,
            ..Limits::default()
        },
        _ => Limits {
            route_plan_cache: false,
            ..Limits::default()
        },
    };
    component
        .bind(runtime, "{}", limits)
        .expect("example plugin binds")
}

/// The request the host lends: borrowed strings, as in the host.
struct Request;

impl RequestView for Request {
    fn service(&self) -> &str {
        "kv"
    }
    fn method(&self) -> &str {
        "GET"
    }
    fn path(&self) -> &str {
        "/users/42"
    }
    fn routing_key(&self) -> &str {
        "users"
    }
    fn header(&self, name: &str) -> Option<&str> {
        (name == "accept").then_some("application/json")
    }
}

fn facts() -> RequestFacts {
    RequestFacts {
        method: Method::Get,
        idempotent: true,
    }
}

fn nodes() -> Arc<NodeTable> {
    let nodes = (0..NODES)
        .map(|i| NodeInfo {
            id: format!("n{}", i + 1),
            address: format!("http://127.0.0.1:{}", 7001 + i),
            zone: Some(["a", "b"][i % 2].to_string()),
            weight: 1,
        })
        .collect();
    Arc::new(NodeTable::new(nodes).expect("a small table"))
}

fn outcome() -> AttemptOutcome {
    AttemptOutcome {
        node: 0,
        attempt: 1,
        result: AttemptResult::Status(503),
        elapsed_ms: 12,
        retry_after_ms: None,
    }
}

fn context() -> RetryContext<'static> {
    RetryContext {
        budget_remaining: 10,
        deadline_remaining_ms: 5_000,
        max_attempts: 3,
        candidates: &RETRY_CANDIDATES,
    }
}

/// `count` candidates in a ring-like order, the second one unhealthy.
fn candidates(count: usize) -> Vec<Candidate> {
    (0..count)
        .map(|i| Candidate {
            node: ((i * 5) % NODES) as NodeIndex,
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

/// The ways to decide with the example plugin `name`: what each variant
/// binds (nothing, for native).
fn variants(
    runtime: &Runtime,
    name: &str,
    kind: PolicyKind,
) -> Vec<(&'static str, Option<Arc<BoundPlugin>>)> {
    let mut variants = vec![
        (
            "plugin-pooled",
            Some(bind(runtime, name, kind, "plugin-pooled")),
        ),
        ("native", None),
        (
            "plugin-fresh",
            Some(bind(runtime, name, kind, "plugin-fresh")),
        ),
    ];
    if kind == PolicyKind::Routing {
        let cached = bind(runtime, name, kind, "plugin-cached");
        assert!(cached.route_traits().cacheable_by_health_flags);
        variants.push(("plugin-cached", Some(cached)));
    }
    variants
}

fn cases(runtime: &Runtime) -> Vec<Case> {
    let mut cases = Vec::new();
    let table = nodes();
    for (variant, bound) in variants(runtime, "retry-backoff", PolicyKind::Retry) {
        let policy = RetryPolicy::new(runtime, RetryBackoff::default());
        policy.bind(bound).unwrap();
        let (outcome, table) = (outcome(), table.clone());
        cases.push(Case::new("retry-decide", variant, move || {
            black_box(policy.decide(
                black_box(&Request),
                black_box(facts()),
                black_box(&table),
                black_box(&outcome),
                black_box(&context()),
            ));
        }));
    }
    for (group, count) in [("route-3", 3), ("route-16", 16)] {
        for (variant, bound) in variants(runtime, "route-affinity", PolicyKind::Routing) {
            let policy = RoutingPolicy::new(RouteAffinity::default());
            policy.bind(bound).unwrap();
            let (candidates, table) = (candidates(count), table.clone());
            cases.push(Case::new(group, variant, move || {
                black_box(policy.route(
                    black_box(&Request),
                    black_box(facts()),
                    black_box(&table),
                    black_box(&candidates),
                ));
            }));
        }
    }
    for (variant, bound) in variants(runtime, "checkpoint-interval", PolicyKind::Checkpoint) {
        let policy = CheckpointPolicy::new(CheckpointInterval::default());
        policy.bind(bound).unwrap();
        let stats = stats();
        cases.push(Case::new("checkpoint-decide", variant, move || {
            black_box(policy.decide(black_box(&stats)));
        }));
    }
    cases
}

/// Nanoseconds per call of one batch of `case`.
fn batch_ns(case: &Case) -> f64 {
    let started = Instant::now();
    for _ in 0..case.calls_per_batch {
        (case.run)();
    }
    started.elapsed().as_nanos() as f64 / case.calls_per_batch as f64
}

/// Median nanoseconds per call over `BATCHES` batches.
fn median_ns(case: &Case) -> f64 {
    let mut per_call: Vec<f64> = (0..BATCHES).map(|_| batch_ns(case)).collect();
    per_call.sort_by(f64::total_cmp);
    per_call[BATCHES / 2]
}

/// The median per case over `BATCHES` rounds, each round one batch of
/// every case in turn: a burst of load on a shared machine then lands on
/// all cases alike instead of on whichever ran during it.
fn interleaved_medians(cases: &[Case]) -> Vec<f64> {
    let mut samples = vec![Vec::with_capacity(BATCHES); cases.len()];
    for _ in 0..BATCHES {
        for (case, samples) in cases.iter().zip(&mut samples) {
            samples.push(batch_ns(case));
        }
    }
    samples
        .into_iter()
        .map(|mut per_call| {
            per_call.sort_by(f64::total_cmp);
            per_call[BATCHES / 2]
        })
        .collect()
}

fn print_ratios(cases: &[Case]) {
    let medians = interleaved_medians(cases);
    println!(
        "\nside by side (median of {BATCHES} interleaved rounds, ns per decision; \
         plugin-pooled calls the plugin every time, plugin-cached is a plan-cache hit):"
    );
    println!(
        "{:<18} {:>14} {:>10} {:>14} {:>14} {:>14} {:>13}  target",
        "case",
        "plugin-pooled",
        "native",
        "plugin-fresh",
        "plugin-cached",
        "pooled/native",
        "fresh/pooled",
    );
    for (group, target_ns, target_ratio) in GROUPS {
        let ns = |variant: &str| {
            cases
                .iter()
                .position(|c| c.group == group && c.variant == variant)
                .map(|at| medians[at])
        };
        let (pooled, native, fresh) = (
            ns("plugin-pooled").expect("case exists"),
            ns("native").expect("case exists"),
            ns("plugin-fresh").expect("case exists"),
        );
        let cached = ns("plugin-cached").map_or("-".to_string(), |ns| format!("{ns:.0}"));
        let ratio = pooled / native;
        let verdict = |met: bool| if met { "met" } else { "MISSED" };
        let target = if target_ns.is_finite() {
            format!(
                "<= {:.1} µs {}, <= {target_ratio}x {}",
                target_ns / 1e3,
                verdict(pooled <= target_ns),
                verdict(ratio <= target_ratio)
            )
        } else {
            "- (one guest entry: the per-call floor)".to_string()
        };
        println!(
            "{group:<18} {pooled:>14.0} {native:>10.0} {fresh:>14.0} {cached:>14} {ratio:>13.1}x {:>12.1}x  {target}",
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
    if std::env::var_os("LEVEE_BENCH_TABLE_ONLY").is_some() {
        return print_ratios(&cases);
    }
    let mut criterion = Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3))
        .configure_from_args();
    for (group, ..) in GROUPS {
        let mut benches = criterion.benchmark_group(group);
        for case in cases.iter().filter(|c| c.group == group) {
            benches.bench_function(case.variant, |b| b.iter(|| (case.run)()));
        }
        benches.finish();
    }
    criterion.final_summary();
    print_ratios(&cases);
}
