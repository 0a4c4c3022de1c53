//! Consistent-hash ring: load spread and lookup cost, side by side for
//! several virtual-node counts, in one run.
//!
//! Run: `cargo bench -p levee --bench ring`
//!
//! Spread is `max / mean` keys per node over 10 equal-weight nodes and
//! 200 000 keys (1.00 is perfect balance); lookup cost is the time of one
//! N=3 preference-list lookup including SHA-1 of the key, as the median of
//! several timed rounds, with the ratio to the 160-vnode default.

use std::hint::black_box;
use std::time::Instant;

use levee::cluster::ring::Ring;

const NODES: usize = 10;
const KEYS: u32 = 200_000;
const ROUNDS: usize = 7;
const LOOKUPS_PER_ROUND: u32 = 200_000;

fn main() {
    let ids: Vec<String> = (0..NODES).map(|i| format!("node-{i}")).collect();
    let keys: Vec<String> = (0..KEYS).map(|k| format!("user:{k}")).collect();
    let vnode_counts = [1u32, 10, 40, 160, 640];
    println!("ring: {NODES} nodes, {KEYS} keys, N=3 lookups");
    println!(
        "{:>8} {:>8} {:>12} {:>12} {:>14} {:>10}",
        "vnodes", "points", "max/mean", "min/mean", "lookup ns", "vs 160"
    );
    let mut rows = Vec::new();
    for &vnodes in &vnode_counts {
        let ring = Ring::new(ids.iter().map(|id| (id.as_str(), 1)), vnodes).expect("ring");
        let (max_ratio, min_ratio) = spread(&ring, &keys);
        let lookup_ns = lookup_cost_ns(&ring, &keys);
        rows.push((vnodes, ring.point_count(), max_ratio, min_ratio, lookup_ns));
    }
    let baseline = rows.iter().find(|r| r.0 == 160).map(|r| r.4).unwrap_or(1.0);
    for (vnodes, points, max_ratio, min_ratio, lookup_ns) in rows {
        println!(
            "{vnodes:>8} {points:>8} {max_ratio:>12.3} {min_ratio:>12.3} {lookup_ns:>14.1} {:>9.2}x",
            lookup_ns / baseline
        );
    }
}

/// (max/mean, min/mean) of primary ownership.
fn spread(ring: &Ring, keys: &[String]) -> (f64, f64) {
    let mut counts = vec![0u64; ring.node_count()];
    for key in keys {
        counts[ring.primary(key.as_bytes())] += 1;
    }
    let mean = keys.len() as f64 / counts.len() as f64;
    let max = *counts.iter().max().expect("nodes") as f64;
    let min = *counts.iter().min().expect("nodes") as f64;
    (max / mean, min / mean)
}

/// Median nanoseconds per `preference(key, 3)`.
fn lookup_cost_ns(ring: &Ring, keys: &[String]) -> f64 {
    let mut samples = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for i in 0..LOOKUPS_PER_ROUND {
            let key = &keys[i as usize % keys.len()];
            black_box(ring.preference(black_box(key.as_bytes()), 3));
        }
        samples.push(started.elapsed().as_nanos() as f64 / f64::from(LOOKUPS_PER_ROUND));
    }
    samples.sort_by(f64::total_cmp);
    samples[ROUNDS / 2]
}
