//! Placement: the SHA-1 ring and rendezvous hashing side by side, in one
//! run.
//!
//! Run: `cargo bench -p levee --bench ring`.
//!
//! Part 1, the ring alone over 10 equal nodes and several virtual-node
//! counts: spread (`max / mean` and `min / mean` of primaries, 1.00 is
//! perfect) and lookup cost.
//!
//! Part 2, `ring` (160 and 256 points per unit of weight) against
//! `rendezvous`, for 3 to 64 nodes, equal weights and weights 1, 2, 3 in
//! turn, over 1,000,000 keys `user:0`, `user:1`, ... (hashed once):
//!
//! - `max/mean`, `stdev`: primaries per node against the node's weight
//!   share (the targets: ≤ 1.05 and ≤ 3%). `noise` is the standard
//!   deviation the keys' own sampling gives an ideal placement,
//!   `sqrt((N - 1) / keys)` at equal weights: no placement of these keys
//!   can do better.
//! - `any3 max`, `any3 sd`: the same for "holds one of the key's 3
//!   replicas" (secondary balance); equal weights only (with weights, a
//!   node cannot hold more than every key, so shares are not proportional).
//! - `add`, `remove`: keys whose primary moved when a node of weight 1
//!   joins (resp. the first node leaves), as a multiple of the optimum
//!   `1 / (W + 1)` (resp. the leaver's `w / W`); the target is ≤ 1.10.
//! - `ns`: one N=3 preference-list lookup including SHA-1 of the key,
//!   median of timed rounds; `ring`'s 160-point lookup is the baseline.
//!
//! Measured (release, 2 shared cores with other builds running,
//! 2026-12-02; the README's *Placement* section has the same table):
//!
//! | nodes | weights | placement | max/mean | stdev | noise | any3 max | any3 sd | add | remove | ns |
//! |---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|
//! | 3 | equal | ring 160 | 1.019 | 2.4% | 0.1% | 1.000 | 0.0% | 1.04x | 0.97x | 171 (1.00x) |
//! | 3 | equal | ring 256 | 1.085 | 6.4% | 0.1% | 1.000 | 0.0% | 0.99x | 0.93x | 187 (1.09x) |
//! | 3 | equal | rendezvous | 1.002 | 0.1% | 0.1% | 1.000 | 0.0% | 1.01x | 1.00x | 135 (0.79x) |
//! | 3 | 1,2,3 | ring 160 | 1.103 | 7.3% | - | - | - | 0.98x | 0.95x | 195 (1.14x) |
//! | 3 | 1,2,3 | ring 256 | 1.093 | 6.7% | - | - | - | 0.99x | 0.95x | 196 (1.15x) |
//! | 3 | 1,2,3 | rendezvous | 1.001 | 0.2% | - | - | - | 1.01x | 1.00x | 163 (0.95x) |
//! | 5 | equal | ring 160 | 1.066 | 6.4% | 0.2% | 1.066 | 3.8% | 0.90x | 0.92x | 143 (0.83x) |
//! | 5 | equal | ring 256 | 1.056 | 4.6% | 0.2% | 1.057 | 5.1% | 0.91x | 0.94x | 155 (0.91x) |
//! | 5 | equal | rendezvous | 1.003 | 0.2% | 0.2% | 1.001 | 0.1% | 1.01x | 1.00x | 157 (0.92x) |
//! | 5 | 1,2,3 | ring 160 | 1.089 | 5.8% | - | - | - | 0.83x | 1.02x | 167 (0.97x) |
//! | 5 | 1,2,3 | ring 256 | 1.060 | 3.8% | - | - | - | 0.92x | 1.03x | 184 (1.07x) |
//! | 5 | 1,2,3 | rendezvous | 1.001 | 0.2% | - | - | - | 1.01x | 1.00x | 208 (1.21x) |
//! | 10 | equal | ring 160 | 1.181 | 10.0% | 0.3% | 1.084 | 5.4% | 0.97x | 0.97x | 158 (0.92x) |
//! | 10 | equal | ring 256 | 1.107 | 7.3% | 0.3% | 1.082 | 4.1% | 0.99x | 0.94x | 156 (0.91x) |
//! | 10 | equal | rendezvous | 1.003 | 0.2% | 0.3% | 1.003 | 0.1% | 1.01x | 1.00x | 282 (1.65x) |
//! | 10 | 1,2,3 | ring 160 | 1.128 | 5.0% | - | - | - | 0.99x | 0.98x | 155 (0.90x) |
//! | 10 | 1,2,3 | ring 256 | 1.147 | 5.1% | - | - | - | 1.02x | 0.96x | 160 (0.93x) |
//! | 10 | 1,2,3 | rendezvous | 1.003 | 0.3% | - | - | - | 1.01x | 1.00x | 299 (1.74x) |
//! | 17 | equal | ring 160 | 1.174 | 9.0% | 0.4% | 1.080 | 4.4% | 1.00x | 0.87x | 165 (0.96x) |
//! | 17 | equal | ring 256 | 1.114 | 6.9% | 0.4% | 1.059 | 3.8% | 1.01x | 0.94x | 164 (0.96x) |
//! | 17 | equal | rendezvous | 1.009 | 0.4% | 0.4% | 1.003 | 0.2% | 1.01x | 1.00x | 325 (1.90x) |
//! | 17 | 1,2,3 | ring 160 | 1.132 | 7.1% | - | - | - | 1.07x | 0.93x | 154 (0.90x) |
//! | 17 | 1,2,3 | ring 256 | 1.066 | 4.2% | - | - | - | 0.91x | 0.94x | 205 (1.20x) |
//! | 17 | 1,2,3 | rendezvous | 1.006 | 0.5% | - | - | - | 1.01x | 1.00x | 407 (2.38x) |
//! | 32 | equal | ring 160 | 1.243 | 7.8% | 0.6% | 1.107 | 4.8% | 1.13x | 0.96x | 163 (0.95x) |
//! | 32 | equal | ring 256 | 1.161 | 6.3% | 0.6% | 1.074 | 3.2% | 1.07x | 0.93x | 194 (1.13x) |
//! | 32 | equal | rendezvous | 1.010 | 0.6% | 0.6% | 1.012 | 0.3% | 1.01x | 1.00x | 486 (2.83x) |
//! | 32 | 1,2,3 | ring 160 | 1.139 | 6.6% | - | - | - | 1.05x | 0.92x | 160 (0.93x) |
//! | 32 | 1,2,3 | ring 256 | 1.081 | 4.6% | - | - | - | 0.91x | 0.91x | 163 (0.95x) |
//! | 32 | 1,2,3 | rendezvous | 1.009 | 0.5% | - | - | - | 1.01x | 0.99x | 566 (3.30x) |
//! | 64 | equal | ring 160 | 1.268 | 8.2% | 0.8% | 1.098 | 4.1% | 0.94x | 0.93x | 198 (1.16x) |
//! | 64 | equal | ring 256 | 1.163 | 7.4% | 0.8% | 1.091 | 3.7% | 0.95x | 0.97x | 221 (1.29x) |
//! | 64 | equal | rendezvous | 1.018 | 0.7% | 0.8% | 1.011 | 0.5% | 1.00x | 1.00x | 729 (4.25x) |
//! | 64 | 1,2,3 | ring 160 | 1.216 | 6.6% | - | - | - | 0.91x | 0.93x | 223 (1.30x) |
//! | 64 | 1,2,3 | ring 256 | 1.135 | 6.2% | - | - | - | 0.96x | 0.90x | 228 (1.33x) |
//! | 64 | 1,2,3 | rendezvous | 1.018 | 0.8% | - | - | - | 1.01x | 1.00x | 889 (5.19x) |

use std::hint::black_box;
use std::time::Instant;

use levee::cluster::placement::{Placement, PlacementKind, position_of};
use levee::cluster::ring::Ring;

const KEYS: u32 = 1_000_000;
const ROUNDS: usize = 7;
const LOOKUPS_PER_ROUND: usize = 100_000;

fn main() {
    let keys: Vec<String> = (0..KEYS).map(|k| format!("user:{k}")).collect();
    ring_sweep(&keys);
    let positions: Vec<u64> = keys.iter().map(|k| position_of(k.as_bytes())).collect();
    compare(&keys, &positions);
}

/// Part 1: the ring over 10 equal nodes, several virtual-node counts.
fn ring_sweep(keys: &[String]) {
    const NODES: usize = 10;
    let ids: Vec<String> = (0..NODES).map(|i| format!("node-{i}")).collect();
    let keys = &keys[..200_000];
    println!("ring: {NODES} nodes, {} keys, N=3 lookups", keys.len());
    println!(
        "{:>8} {:>8} {:>12} {:>12} {:>14} {:>10}",
        "vnodes", "points", "max/mean", "min/mean", "lookup ns", "vs 160"
    );
    let mut rows = Vec::new();
    for vnodes in [1u32, 10, 40, 160, 640] {
        let ring = Ring::new(ids.iter().map(|id| (id.as_str(), 1)), vnodes).expect("ring");
        let mut counts = [0u64; NODES];
        for key in keys {
            counts[ring.primary(key.as_bytes())] += 1;
        }
        let mean = keys.len() as f64 / NODES as f64;
        let max = *counts.iter().max().expect("nodes") as f64 / mean;
        let min = *counts.iter().min().expect("nodes") as f64 / mean;
        let ns = lookup_ns(keys, |key| ring.preference(key, 3));
        rows.push((vnodes, ring.point_count(), max, min, ns));
    }
    let baseline = rows.iter().find(|r| r.0 == 160).map_or(1.0, |r| r.4);
    for (vnodes, points, max, min, ns) in rows {
        println!(
            "{vnodes:>8} {points:>8} {max:>12.3} {min:>12.3} {ns:>14.1} {:>9.2}x",
            ns / baseline
        );
    }
    println!();
}

/// One contender: a name and how to build it over a node set.
struct Contender {
    name: &'static str,
    kind: PlacementKind,
    vnodes: u32,
}

const CONTENDERS: [Contender; 3] = [
    Contender {
        name: "ring 160",
        kind: PlacementKind::Ring,
        vnodes: 160,
    },
    Contender {
        name: "ring 256",
        kind: PlacementKind::Ring,
        vnodes: 256,
    },
    Contender {
        name: "rendezvous",
        kind: PlacementKind::Rendezvous,
        vnodes: 160,
    },
];

/// Part 2: the table.
fn compare(keys: &[String], positions: &[u64]) {
    println!(
        "placement: {} keys; targets max/mean <= 1.05, stdev <= 3%, movement <= 1.10x optimal",
        positions.len()
    );
    println!(
        "| nodes | weights | placement | max/mean | stdev | noise | any3 max | any3 sd | add | remove | ns |"
    );
    println!("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut baseline_ns = None;
    for count in [3usize, 5, 10, 17, 32, 64] {
        for weighted in [false, true] {
            let ids: Vec<String> = (0..count).map(|i| format!("node-{i}")).collect();
            let nodes: Vec<(&str, u32)> = ids
                .iter()
                .enumerate()
                .map(|(i, id)| (id.as_str(), if weighted { 1 + (i as u32 % 3) } else { 1 }))
                .collect();
            let mut joined = nodes.clone();
            joined.push(("node-new", 1));
            let left = &nodes[1..];
            let weight: f64 = nodes.iter().map(|(_, w)| f64::from(*w)).sum();
            for contender in &CONTENDERS {
                let build = |set: &[(&str, u32)]| {
                    Placement::new(contender.kind, set.iter().copied(), contender.vnodes)
                        .expect("placement")
                };
                let placement = build(&nodes);
                let (max, stdev) = spread(&placement, &nodes, positions, 1);
                let any3 = if weighted {
                    "- | -".to_string()
                } else {
                    let (max, stdev) = spread(&placement, &nodes, positions, 3);
                    format!("{max:.3} | {:.1}%", stdev * 100.0)
                };
                let moved_add = moved(&placement, &build(&joined), positions, 0);
                let moved_remove = moved(&placement, &build(left), positions, 1);
                let add = moved_add / (1.0 / (weight + 1.0));
                let remove = moved_remove / (f64::from(nodes[0].1) / weight);
                let ns = lookup_ns(&keys[..LOOKUPS_PER_ROUND], |key| {
                    placement.preference(key, 3)
                });
                let baseline = *baseline_ns.get_or_insert(ns);
                let noise = ((count as f64 - 1.0) / positions.len() as f64).sqrt() * 100.0;
                println!(
                    "| {count} | {} | {} | {max:.3} | {:.1}% | {} | {any3} | {add:.2}x | {remove:.2}x | {ns:.0} ({:.2}x) |",
                    if weighted { "1,2,3" } else { "equal" },
                    contender.name,
                    stdev * 100.0,
                    if weighted {
                        "-".to_string()
                    } else {
                        format!("{noise:.1}%")
                    },
                    ns / baseline,
                );
            }
        }
    }
}

/// (max / mean, stdev / mean) of the keys each node holds among their
/// first `replicas`, each node's mean being its weight's share.
fn spread(
    placement: &Placement,
    nodes: &[(&str, u32)],
    positions: &[u64],
    replicas: usize,
) -> (f64, f64) {
    let mut counts = vec![0f64; nodes.len()];
    for &position in positions {
        for node in placement.preference_at(position, replicas).iter() {
            counts[node] += 1.0;
        }
    }
    let total: f64 = counts.iter().sum();
    let weight: f64 = nodes.iter().map(|(_, w)| f64::from(*w)).sum();
    let relative: Vec<f64> = counts
        .iter()
        .zip(nodes)
        .map(|(count, (_, w))| count / (total * f64::from(*w) / weight))
        .collect();
    let max = relative.iter().copied().fold(0.0, f64::max);
    let variance = relative.iter().map(|r| (r - 1.0).powi(2)).sum::<f64>() / nodes.len() as f64;
    (max, variance.sqrt())
}

/// The fraction of keys whose primary differs between `before` and
/// `after`, where `after`'s node `i` is `before`'s node `i + shift` (the
/// first node left) or a new node past the end.
fn moved(before: &Placement, after: &Placement, positions: &[u64], shift: usize) -> f64 {
    let moved = positions
        .iter()
        .filter(|&&position| {
            let old = before.preference_at(position, 1).get(0);
            let new = after.preference_at(position, 1).get(0).map(|n| n + shift);
            old != new
        })
        .count();
    moved as f64 / positions.len() as f64
}

/// Median nanoseconds per `lookup(key)` over `keys`.
fn lookup_ns<T>(keys: &[String], lookup: impl Fn(&[u8]) -> T) -> f64 {
    let mut samples = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for key in keys {
            black_box(lookup(black_box(key.as_bytes())));
        }
        samples.push(started.elapsed().as_nanos() as f64 / keys.len() as f64);
    }
    samples.sort_by(f64::total_cmp);
    samples[ROUNDS / 2]
}
