//! Measurement (ignored by default): what a replicated, logged write costs.
//! Three cells, one run, same replicas, same machine:
//!
//! 1. `direct`: PUT straight to one kv-replica (it fsyncs each value);
//! 2. `client fan-out`: the client PUTs to all three replicas itself and
//!    waits for two, what an application would do without levee;
//! 3. `levee`: PUT through levee (log append with fsync, then N=3, W=2).
//!
//! Run with:
//! ```text
//! cargo test --release -p levee --test write_throughput -- --ignored --nocapture
//! ```
//! `LEVEE_BENCH_WRITERS` (default 16) concurrent writers, 256-byte bodies,
//! `LEVEE_BENCH_SECS` (default 3) seconds per cell. It prints writes/s,
//! p50/p99 latency and the ratios; it asserts nothing about speed.

mod support;
mod write_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};
use serde_json::json;
use support::call;
use write_support::start;

const BODY_BYTES: usize = 256;

/// One cell's result.
struct Cell {
    writes: u64,
    secs: f64,
    p50_ms: f64,
    p99_ms: f64,
}

impl Cell {
    fn rate(&self) -> f64 {
        self.writes as f64 / self.secs
    }
}

/// Runs `writers` loops of `write(key)` for `secs`; each returns success.
async fn run_cell<F, Fut>(writers: usize, secs: u64, write: F) -> Cell
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let write = Arc::new(write);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..writers {
        let write = write.clone();
        tasks.spawn(async move {
            let mut latencies_us = Vec::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let began = Instant::now();
                assert!(write(format!("w{writer}-{i}")).await, "a write failed");
                latencies_us.push(began.elapsed().as_micros() as u64);
                i += 1;
            }
            latencies_us
        });
    }
    let mut all = Vec::new();
    while let Some(latencies) = tasks.join_next().await {
        all.extend(latencies.expect("writer"));
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let percentile = |p: f64| all[((all.len() - 1) as f64 * p) as usize] as f64 / 1000.0;
    Cell {
        writes: all.len() as u64,
        secs,
        p50_ms: percentile(0.5),
        p99_ms: percentile(0.99),
    }
}

async fn put(url: String) -> bool {
    let (status, _, _) = call(Method::PUT, &url, &[], vec![b'v'; BODY_BYTES]).await;
    status == StatusCode::OK
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement; run explicitly"]
async fn replicated_write_throughput_side_by_side() {
    let writers: usize = std::env::var("LEVEE_BENCH_WRITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let secs: u64 = std::env::var("LEVEE_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let cluster = start(3, json!({"concurrency_max": 4096})).await;
    let replicas: Arc<Vec<String>> = Arc::new(cluster.replicas.iter().map(|r| r.url()).collect());

    let first = replicas[0].clone();
    let direct = run_cell(writers, secs, move |key| {
        put(format!("{first}/kv/direct-{key}"))
    })
    .await;

    let all = replicas.clone();
    let fan_out = run_cell(writers, secs, move |key| {
        let all = all.clone();
        async move {
            // Three PUTs in parallel; done at the second success.
            let (sender, mut receiver) = tokio::sync::mpsc::channel(3);
            for url in all.iter() {
                let sender = sender.clone();
                let url = format!("{url}/kv/fan-{key}");
                tokio::spawn(async move {
                    let _ = sender.send(put(url).await).await;
                });
            }
            drop(sender);
            let mut acks = 0;
            while let Some(ok) = receiver.recv().await {
                acks += usize::from(ok);
                if acks == 2 {
                    return true;
                }
            }
            false
        }
    })
    .await;

    let levee = cluster.levee.url("/kv/kv");
    let through_levee = run_cell(writers, secs, move |key| {
        put(format!("{levee}/levee-{key}"))
    })
    .await;

    println!("{writers} writers, {BODY_BYTES}-byte bodies, {secs} s per cell");
    println!(
        "{:<32} {:>10} {:>10} {:>10}",
        "cell", "writes/s", "p50 ms", "p99 ms"
    );
    for (name, cell) in [
        ("direct to one replica", &direct),
        ("client fan-out, 2 of 3", &fan_out),
        ("levee: log + fan-out, W=2 of 3", &through_levee),
    ] {
        println!(
            "{name:<32} {:>10.0} {:>10.2} {:>10.2}",
            cell.rate(),
            cell.p50_ms,
            cell.p99_ms
        );
    }
    println!(
        "levee / client fan-out = {:.2}x throughput; levee / direct = {:.2}x",
        through_levee.rate() / fan_out.rate(),
        through_levee.rate() / direct.rate()
    );
}
