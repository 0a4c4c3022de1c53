//! A nemesis test (Jepsen/VOPR style) with real processes: three
//! `levee kv-replica`s behind one `levee serve` (N=3, W=2), eight writers
//! PUTting unique values (and sometimes DELETEing) on sixteen shared keys,
//! two readers, and a seeded nemesis that SIGKILLs and restarts replicas,
//! SIGSTOPs and SIGCONTs them, injects 503s and delays on them, and SIGKILLs
//! and restarts levee on its data directory (issue 10).
//!
//! Every operation is recorded with its real-time interval and what levee
//! answered (acked, superseded, refused, rejected or unknown, with
//! `x-levee-version`). After the nemesis stops and the cluster quiesces
//! (hint backlogs empty, nothing awaiting repair, bounded wait) the checks
//! in `nemesis/check.rs`, `nemesis/reads.rs` and `nemesis/protocol.rs`
//! run; every failure names the seed and the key, and prints the key's
//! history. `nemesis/selftest.rs` checks the checks on made-up histories.
//!
//! `LEVEE_NEMESIS_SEED` replays a run's choices (the interleaving of real
//! processes is not reproducible, the faults, targets and keys are);
//! `LEVEE_NEMESIS_SECS` runs longer than the default 60 s;
//! `LEVEE_NEMESIS_HINTS=tight|default` picks the hint limits (by default
//! the seed does: tight limits drop hints, which exercises repair);
//! `LEVEE_NEMESIS_READS=one|quorum` picks `read_quorum` 1 or 2 (by
//! default the seed does: with quorum reads a stale read fails the run).

mod support;
mod write_support;

#[path = "nemesis/check.rs"]
mod check;
#[path = "nemesis/faults.rs"]
mod faults;
#[path = "nemesis/history.rs"]
mod history;
#[path = "nemesis/protocol.rs"]
mod protocol;
#[path = "nemesis/quiesce.rs"]
mod quiesce;
#[path = "nemesis/reads.rs"]
mod reads;
#[path = "nemesis/rng.rs"]
mod rng;
#[path = "nemesis/selftest.rs"]
mod selftest;
#[path = "nemesis/workload.rs"]
mod workload;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use history::{Outcome, ReadOp, WriteOp};
use workload::{Clients, READERS, WRITERS};

/// The nemesis runs this long unless `LEVEE_NEMESIS_SECS` says otherwise.
const RUN_SECS_DEFAULT: u64 = 60;
/// The longest run `LEVEE_NEMESIS_SECS` may ask for (a day).
const RUN_SECS_MAX: u64 = 24 * 60 * 60;
/// The quiescence wait is at least this long (and as long as the run): a
/// key whose repair failed during the faults is retried after a backoff of
/// up to `REPAIR_BACKOFF_MS_MAX` (60 s), so quiescence can take a minute
/// after the faults end (a 300 s run once took 55 s); twice that, plus
/// slack for a loaded machine. The wait ends as soon as it is reached.
const QUIESCE_SECS_MIN: u64 = 150;
/// Hint limits of `LEVEE_NEMESIS_HINTS=tight` (shorter than most faults).
const HINT_AGE_MS_TIGHT: u64 = 3_000;
const HINT_BYTES_TIGHT: u64 = 64 * 1024;
/// Lines of levee's stderr shown with a failure.
const STDERR_LINES_MAX: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_a_seeded_nemesis_and_the_replicas_converge() {
    let seed = rng::seed_from_env();
    let run = Duration::from_secs(run_secs());
    let tight = tight_hints(seed);
    let quorum_reads = quorum_reads(seed);
    println!(
        "nemesis: seed {seed} (LEVEE_NEMESIS_SEED={seed} replays its choices), {run:?}, {} hint limits, read_quorum {}",
        if tight { "tight" } else { "default" },
        if quorum_reads { 2 } else { 1 },
    );
    let cluster = write_support::start(3, service(tight, quorum_reads)).await;
    let clients = Arc::new(Clients {
        seed,
        start: Instant::now(),
        stop: AtomicBool::new(false),
        levee: RwLock::new(cluster.levee.data),
    });
    let writers: Vec<_> = (0..WRITERS)
        .map(|id| tokio::spawn(workload::writer(Arc::clone(&clients), id)))
        .collect();
    let readers: Vec<_> = (0..READERS)
        .map(|id| tokio::spawn(workload::reader(Arc::clone(&clients), id)))
        .collect();
    let deadline = Instant::now() + run;
    let nemesis = faults::Nemesis::new(seed, cluster, Arc::clone(&clients));
    let nemesis = tokio::spawn(nemesis.run(deadline));
    tokio::time::sleep_until(deadline.into()).await;
    clients.stop.store(true, Ordering::Release);

    let mut writes: Vec<WriteOp> = Vec::new();
    for writer in writers {
        writes.extend(writer.await.expect("writer task"));
    }
    let mut reads: Vec<ReadOp> = Vec::new();
    for reader in readers {
        reads.extend(reader.await.expect("reader task"));
    }
    let nemesis = nemesis
        .await
        .unwrap_or_else(|error| panic!("[seed {seed}] the nemesis failed: {error}"));
    println!("nemesis events:\n  {}", nemesis.events.join("\n  "));

    let bound = Duration::from_secs(run.as_secs().max(QUIESCE_SECS_MIN));
    let quiet = quiesce::wait(&nemesis.cluster, bound).await;
    println!("{}", quiet.summary());

    let history = check::History::new(&writes);
    let mut findings = check::Findings::default();
    check::check_replicas(&history, &quiet.dumps, &mut findings);
    let read_counts = reads::check_reads(&history, &reads, quorum_reads, &mut findings);
    protocol::check_answers(&writes, &mut findings);
    check_exercised(&writes, &nemesis.counts, &mut findings);
    println!(
        "nemesis [seed {seed}]: writes {}; reads {read_counts:?}; faults {:?}",
        write_counts(&writes),
        nemesis.counts
    );
    let report = findings.render(&history, seed);
    if findings.failures.is_empty() {
        print!("{report}");
    }
    if !findings.failures.is_empty() || !quiet.reached {
        panic!(
            "nemesis found problems [seed {seed}] ({}):\n{report}\nlevee stderr (tail):\n{}",
            quiet.summary(),
            tail(&nemesis.cluster.levee.proc.stderr())
        );
    }
}

/// The service under test: N=3, W=2, short timeouts and ejections and a
/// fast health check, so faults come and go within the run.
fn service(tight_hints: bool, quorum_reads: bool) -> Value {
    let mut service = json!({
        "replicas": 3,
        "write_quorum": 2,
        "max_attempts": 2,
        "timeouts": {"per_try_ms": 1000, "total_ms": 4000},
        "outlier": {"consecutive_failures": 5, "base_ejection_ms": 200, "max_ejection_ms": 2000},
        "health_check": {"interval_ms": 250, "timeout_ms": 200, "healthy_threshold": 1, "unhealthy_threshold": 2},
    });
    if quorum_reads {
        service["read_quorum"] = json!(2);
    }
    if tight_hints {
        service["hints"] = json!({"age_ms_max": HINT_AGE_MS_TIGHT, "bytes_max": HINT_BYTES_TIGHT});
    }
    service
}

/// Tight hint limits (`LEVEE_NEMESIS_HINTS=tight`, or chosen by the seed's
/// low bit when unset): hints are dropped after a few seconds or 64 KiB, so
/// a replica down for a while misses writes that only the repair of
/// dropped hints brings back. `default`: levee's limits (hours, GiB).
fn tight_hints(seed: u64) -> bool {
    match std::env::var("LEVEE_NEMESIS_HINTS").as_deref() {
        Ok("tight") => true,
        Ok("default") => false,
        Ok(other) => panic!("LEVEE_NEMESIS_HINTS={other:?}: tight or default"),
        Err(_) => seed & 1 == 1,
    }
}

/// Quorum reads (`LEVEE_NEMESIS_READS=quorum`, or chosen by the seed's
/// second bit when unset): `read_quorum` 2, so R + W > N and every read
/// must see every write acknowledged before it began. `one`: the default
/// one-replica reads, whose stale answers are only counted.
fn quorum_reads(seed: u64) -> bool {
    match std::env::var("LEVEE_NEMESIS_READS").as_deref() {
        Ok("quorum") => true,
        Ok("one") => false,
        Ok(other) => panic!("LEVEE_NEMESIS_READS={other:?}: one or quorum"),
        Err(_) => seed & 2 == 2,
    }
}

fn run_secs() -> u64 {
    match std::env::var("LEVEE_NEMESIS_SECS") {
        Ok(text) => text
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|s| (1..=RUN_SECS_MAX).contains(s))
            .unwrap_or_else(|| panic!("LEVEE_NEMESIS_SECS={text:?}: 1..={RUN_SECS_MAX} seconds")),
        Err(_) => RUN_SECS_DEFAULT,
    }
}

/// A run that acknowledged nothing or injected no fault checked nothing.
fn check_exercised(
    writes: &[WriteOp],
    faults: &BTreeMap<&'static str, u64>,
    findings: &mut check::Findings,
) {
    if !writes.iter().any(|w| w.outcome == Outcome::Acked) {
        findings.fail("no write was acknowledged", "-", String::new());
    }
    if faults.values().sum::<u64>() == 0 {
        findings.fail("no fault was injected", "-", String::new());
    }
}

fn write_counts(writes: &[WriteOp]) -> String {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for write in writes {
        *counts.entry(format!("{:?}", write.outcome)).or_default() += 1;
    }
    let deletes = writes.iter().filter(|w| w.is_delete()).count();
    format!("{} in all ({deletes} DELETEs): {counts:?}", writes.len())
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(STDERR_LINES_MAX)..].join("\n")
}
