//! Measurement (ignored by default: it writes over a gigabyte): levee's
//! memory stays flat while a dead replica's hint backlog grows past 1 GiB,
//! because hints are log records streamed from disk, never copies in
//! memory; and the backlog is then delivered when the replica returns.
//!
//! Run it with:
//! ```text
//! cargo test --release -p levee --test hint_backlog_rss -- --ignored --nocapture
//! ```
//! It prints levee's resident set size (VmRSS, and the peak VmHWM) as the
//! backlog grows, then during the handoff. `LEVEE_RSS_BACKLOG_MIB` changes
//! the backlog size (default 1024).

mod support;
mod write_support;

use std::time::Instant;

use hyper::{Method, StatusCode};
use serde_json::json;
use support::call;
use write_support::{node_hints, restart_replica, start, wait_node_hints};

/// Writes in flight at once (client side).
const CONCURRENT_WRITERS: usize = 4;
/// Body sizes cycle through these (256 KiB .. 1 MiB).
const BODY_SIZES: [usize; 4] = [256 << 10, 512 << 10, 768 << 10, 1 << 20];

/// levee's (VmRSS, VmHWM) in MiB.
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "writes over 1 GiB; run explicitly to measure"]
async fn memory_stays_flat_while_a_dead_replicas_backlog_grows_past_a_gigabyte() {
    let backlog_mib: usize = std::env::var("LEVEE_RSS_BACKLOG_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let service = json!({
        "body_bytes_max": 2 << 20,
        "hints": {"bytes_max": 8u64 << 30},
        "timeouts": {"per_try_ms": 5000, "total_ms": 20000},
    });
    let mut cluster = start(3, service).await;
    let pid = cluster.levee.proc.pid().expect("levee runs");
    cluster.replicas[2].proc.kill();

    let (rss, _) = rss_mib(pid);
    println!("levee pid {pid}: RSS before writing: {rss:.1} MiB");
    println!(
        "{:>12} {:>10} {:>12} {:>12}",
        "backlog MiB", "writes", "VmRSS MiB", "VmHWM MiB"
    );
    let target_bytes = backlog_mib << 20;
    let started = Instant::now();
    let mut written_bytes = 0usize;
    let mut writes = 0usize;
    let mut next_report = 0usize;
    while written_bytes < target_bytes {
        let mut batch = tokio::task::JoinSet::new();
        for _ in 0..CONCURRENT_WRITERS {
            let size = BODY_SIZES[writes % BODY_SIZES.len()];
            let body = vec![b'a' + (writes % 26) as u8; size];
            let url = cluster.levee.url(&format!("/kv/kv/blob-{writes:06}"));
            batch.spawn(async move {
                let (status, headers, body) = call(Method::PUT, &url, &[], body).await;
                (
                    status,
                    headers
                        .get("x-levee-acks")
                        .map(|v| v.to_str().unwrap_or("").to_owned()),
                    body,
                )
            });
            written_bytes += size;
            writes += 1;
        }
        while let Some(joined) = batch.join_next().await {
            let (status, acks, body) = joined.expect("writer task");
            assert_eq!(
                (status, acks.as_deref()),
                (StatusCode::OK, Some("2/3")),
                "{body}"
            );
        }
        if written_bytes >= next_report {
            let (rss, hwm) = rss_mib(pid);
            println!(
                "{:>12} {:>10} {:>12.1} {:>12.1}",
                written_bytes >> 20,
                writes,
                rss,
                hwm
            );
            next_report += target_bytes / 8;
        }
    }
    let write_secs = started.elapsed().as_secs_f64();
    let hints = node_hints(&cluster.levee, "r2").await;
    let (rss_full, hwm_full) = rss_mib(pid);
    println!(
        "wrote {writes} writes, {} MiB in {write_secs:.1} s; r2 backlog: {} records, {} MiB; RSS {rss_full:.1} MiB (peak {hwm_full:.1})",
        written_bytes >> 20,
        hints["backlog_records"],
        hints["backlog_bytes"].as_u64().unwrap_or(0) >> 20,
    );

    let started = Instant::now();
    restart_replica(&mut cluster.replicas[2]);
    let hints = wait_node_hints(&cluster.levee, "r2", "an empty backlog", |n| {
        n["backlog_from"].is_null()
    })
    .await;
    let (rss, hwm) = rss_mib(pid);
    println!(
        "handoff delivered {} records in {:.1} s; RSS after handoff {rss:.1} MiB, peak over the whole run {hwm:.1} MiB",
        hints["delivered_records"],
        started.elapsed().as_secs_f64()
    );
    assert!(hints["delivered_records"].as_u64() >= Some(writes as u64));
    assert_eq!(hints["dropped_records"], 0);
    // Flat: the peak stays far below the backlog it held.
    assert!(
        hwm < (backlog_mib as f64) / 4.0,
        "peak RSS {hwm:.1} MiB for a {backlog_mib} MiB backlog"
    );
}
