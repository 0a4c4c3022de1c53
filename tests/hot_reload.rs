//! Hot reload under load: a retry policy plugin is swapped 100 times, half
//! by `PUT /admin/plugins/retry`, half by dropping `retry.wasm` into the
//! plugin directory, alternating two versions (`retry-backoff` and
//! `zoo/retry-fixed`), while a bounded load generator sends reads whose
//! first replica always fails.
//!
//! What must hold:
//! - **zero failed requests**: every read answers 200 (the retry on the
//!   healthy replica always happens, whichever version decides);
//! - **one version per decision**: every retried response names in
//!   `x-levee-policy-version` exactly one decider, and it is one of the two
//!   versions: never a mix, never the native fallback;
//! - **new requests get the new version**: after each swap is acknowledged,
//!   a probe request is decided by the version just installed.

mod control;
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hyper::{Method, StatusCode};
use serde_json::json;

use control::{
    admin, drop_in, keys_with_primary, plugin_bytes, retrying_config, version_of, wait_for_version,
};
use support::{Levee, Replica, call};

/// Swaps in total, alternating versions and methods.
const SWAPS: usize = 100;
/// Concurrent load workers, and the most requests each may send.
const WORKERS: usize = 4;
/// A safety bound only: the workers run until the swaps are done.
const REQUESTS_PER_WORKER_MAX: usize = 5_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn swapping_a_retry_plugin_under_load_loses_nothing_and_never_mixes_versions() {
    let backoff = plugin_bytes("retry-backoff.wasm");
    let fixed = plugin_bytes("zoo/retry-fixed.wasm");
    let versions = [version_of(&backoff), version_of(&fixed)];
    let plugin_dir = control::plugin_dir_with_retry(&backoff);
    let replicas = vec![Replica::spawn("r0"), Replica::spawn("r1")];
    // r0 answers every read with 503: a read whose primary is r0 needs the
    // retry policy to reach r1.
    replicas[0]
        .fault(json!({"fail_status": 503, "methods": ["GET"]}))
        .await;
    let keys = keys_with_primary(&["r0", "r1"], 0, 32);
    for key in &keys {
        replicas[1].put(key, "value").await;
    }
    let levee = Arc::new(Levee::start(retrying_config(&replicas, plugin_dir.path())).await);
    wait_for_version(&levee, "retry", &versions[0]).await;

    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..WORKERS)
        .map(|worker| tokio::spawn(load(levee.clone(), keys.clone(), worker, stop.clone())))
        .collect();

    // Milliseconds from the swap's start to every binding serving the new
    // version, by method: reported, not asserted (tests never time out on a
    // slow machine).
    let mut swap_ms: BTreeMap<&str, Vec<u128>> = BTreeMap::new();
    for swap in 0..SWAPS {
        let started = std::time::Instant::now();
        let (bytes, version) = if swap % 2 == 0 {
            (&fixed, &versions[1])
        } else {
            (&backoff, &versions[0])
        };
        if swap % 4 < 2 {
            let (status, _, body) =
                admin(&levee, Method::PUT, "/admin/plugins/retry", bytes.clone()).await;
            assert_eq!(status, StatusCode::OK, "swap {swap} by API: {body}");
        } else {
            drop_in(plugin_dir.path(), "retry", bytes);
        }
        wait_for_version(&levee, "retry", version).await;
        let method = if swap % 4 < 2 { "api" } else { "drop-in" };
        swap_ms
            .entry(method)
            .or_default()
            .push(started.elapsed().as_millis());
        let probe = &keys[swap % keys.len()];
        let (status, headers, body) =
            call(Method::GET, &levee.url(&format!("/kv/kv/{probe}")), &[], "").await;
        assert_eq!(status, StatusCode::OK, "probe after swap {swap}: {body}");
        assert_eq!(
            headers["x-levee-policy-version"],
            version.as_str(),
            "probe after swap {swap}"
        );
    }
    stop.store(true, Ordering::Release);

    let mut deciders: BTreeMap<String, usize> = BTreeMap::new();
    let mut requests = 0;
    for worker in workers {
        let report = worker.await.unwrap();
        requests += report.requests;
        for (decider, count) in report.deciders {
            *deciders.entry(decider).or_default() += count;
        }
    }
    let stats = control::admin_json(&levee, "/admin/plugins").await;
    println!("{requests} requests under {SWAPS} swaps; deciders {deciders:?}; plugins {stats}");
    for (method, times) in &swap_ms {
        let mean = times.iter().sum::<u128>() / times.len() as u128;
        let max = times.iter().max().unwrap();
        println!(
            "swap by {method}: {} swaps, mean {mean} ms, max {max} ms (until every binding serves it)",
            times.len()
        );
    }
    assert!(requests >= WORKERS, "the load generator sent nothing");
    for decider in deciders.keys() {
        assert!(
            versions.contains(decider),
            "a request was decided by {decider:?}, not one of {versions:?}; levee's log:\n{}",
            levee.proc.stderr()
        );
    }
}

struct LoadReport {
    /// Reads sent (each retried once).
    requests: usize,
    /// Requests per `x-levee-policy-version` value.
    deciders: BTreeMap<String, usize>,
}

/// Reads keys whose primary fails until told to stop; every answer must be
/// 200 and carry exactly one decider. Each read is followed by a HEAD of
/// the same key, which r0 answers: that success resets r0's run of
/// failures, so r0 is never ejected and every read consults the policy.
async fn load(
    levee: Arc<Levee>,
    keys: Vec<String>,
    worker: usize,
    stop: Arc<AtomicBool>,
) -> LoadReport {
    let mut report = LoadReport {
        requests: 0,
        deciders: BTreeMap::new(),
    };
    for round in 0..REQUESTS_PER_WORKER_MAX {
        if stop.load(Ordering::Acquire) {
            return report;
        }
        let key = &keys[(worker * 7 + round) % keys.len()];
        let (status, headers, body) =
            call(Method::GET, &levee.url(&format!("/kv/kv/{key}")), &[], "").await;
        assert_eq!(
            status,
            StatusCode::OK,
            "worker {worker} request {round} failed: {body}"
        );
        let decider = headers
            .get("x-levee-policy-version")
            .unwrap_or_else(|| panic!("worker {worker} request {round}: no x-levee-policy-version"))
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            !decider.contains(','),
            "one request decided by several versions: {decider}"
        );
        *report.deciders.entry(decider).or_default() += 1;
        report.requests += 1;
        let (status, _, _) =
            call(Method::HEAD, &levee.url(&format!("/kv/kv/{key}")), &[], "").await;
        assert!(
            !status.is_server_error(),
            "worker {worker} HEAD {round}: {status}"
        );
        // Leave room for the swapper on two cores.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!(
        "worker {worker} hit its bound of {REQUESTS_PER_WORKER_MAX} reads before the swaps finished"
    );
}
