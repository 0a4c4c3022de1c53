//! Crash loop with a real child process: the child appends from several
//! threads with fsync and reports every acknowledged LSN and payload hash
//! over a pipe; the test SIGKILLs it at random moments, checks that every
//! acknowledged record is present and intact, and restarts it.
//!
//! `LEVEE_CRASH_CYCLES` sets the number of kill cycles (default 20);
//! `LEVEE_CRASH_SEED` makes a run reproducible (the seed is printed).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use levee_log::testkit::{crash_payload_is_intact, fnv1a64};
use levee_log::{Log, LogOptions, SyncMode};

const CHILD: &str = env!("CARGO_BIN_EXE_levee-log-crash-child");
const WRITER_THREADS: u32 = 4;
/// Generous bounds that only a hung child would reach.
const CHILD_READY_TIMEOUT: Duration = Duration::from_secs(60);
const CYCLE_RUN_MAX: Duration = Duration::from_secs(30);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

enum Line {
    Ready,
    Ack(u64, u64),
}

fn parse(line: &str) -> Line {
    let mut words = line.split_whitespace();
    match words.next() {
        Some("READY") => Line::Ready,
        Some("A") => {
            let lsn = words.next().and_then(|w| w.parse().ok()).expect("lsn");
            let hash = words
                .next()
                .and_then(|w| u64::from_str_radix(w, 16).ok())
                .expect("hash");
            Line::Ack(lsn, hash)
        }
        _ => panic!("unexpected line from child: {line:?}"),
    }
}

/// Starts the child and a thread that forwards its stdout lines.
fn spawn_child(dir: &Path, seed: u64) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(CHILD)
        .arg(dir)
        .arg(WRITER_THREADS.to_string())
        .arg(seed.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn crash child");
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, lines_rx)
}

/// Runs the child until the randomly chosen kill moment, SIGKILLs it and
/// returns every ack it printed (including those still in the pipe).
fn run_and_kill(dir: &Path, rng: &mut Rng, cycle: u64) -> Vec<(u64, u64)> {
    let (mut child, lines) = spawn_child(dir, rng.next());
    let ready = lines
        .recv_timeout(CHILD_READY_TIMEOUT)
        .expect("child did not start");
    assert!(matches!(parse(&ready), Line::Ready), "first line: {ready}");
    // Kill either after a random number of acks or a random delay, so that
    // kills land both mid-batch and between batches, and sometimes before
    // any append completed.
    let acks_before_kill = rng.below(400);
    let delay = Duration::from_micros(rng.below(60_000));
    let started = Instant::now();
    let mut acks = Vec::new();
    loop {
        if acks.len() as u64 >= acks_before_kill || started.elapsed() >= delay {
            break;
        }
        assert!(
            started.elapsed() < CYCLE_RUN_MAX,
            "cycle {cycle}: child too slow"
        );
        match lines.recv_timeout(Duration::from_millis(1)) {
            Ok(line) => {
                if let Line::Ack(lsn, hash) = parse(&line) {
                    acks.push((lsn, hash));
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!("cycle {cycle}: child exited early: {:?}", child.wait())
            }
        }
    }
    child.kill().expect("SIGKILL child"); // std sends SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success(), "child was killed");
    // Lines already in the pipe were printed after their append returned:
    // they are acknowledgements too.
    for line in lines.iter() {
        if let Line::Ack(lsn, hash) = parse(&line) {
            acks.push((lsn, hash));
        }
    }
    acks
}

fn verify(dir: &Path, acked: &BTreeMap<u64, u64>, cycle: u64) {
    let options = LogOptions {
        segment_bytes_max: 256 << 10,
        record_bytes_max: 32 << 10,
        sync: SyncMode::Always,
        ..LogOptions::default()
    };
    let (log, report) = Log::open(dir, options).unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
    assert!(report.repair.is_none());
    let covers = report.checkpoint.as_ref().map_or(0, |c| c.covers_lsn);
    let first_lsn = log.stats().first_lsn;
    let mut present = BTreeMap::new();
    for record in log.read_from(first_lsn).unwrap() {
        let record = record.unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
        assert!(
            crash_payload_is_intact(&record.payload),
            "cycle {cycle}: LSN {} damaged",
            record.lsn
        );
        present.insert(record.lsn, fnv1a64(&record.payload));
    }
    let expected_lsns: Vec<u64> = (first_lsn..=report.last_lsn).collect();
    assert_eq!(
        present.keys().copied().collect::<Vec<_>>(),
        expected_lsns,
        "contiguous"
    );
    for (&lsn, &hash) in acked {
        if lsn < first_lsn {
            assert!(
                lsn <= covers,
                "cycle {cycle}: acked LSN {lsn} compacted but not checkpointed"
            );
            continue;
        }
        assert_eq!(
            present.get(&lsn),
            Some(&hash),
            "cycle {cycle}: acknowledged LSN {lsn} lost or changed"
        );
    }
}

#[test]
fn every_acknowledged_record_survives_sigkill() {
    let cycles = env_u64("LEVEE_CRASH_CYCLES", 20);
    let seed = env_u64("LEVEE_CRASH_SEED", 0x5EED_1E7E);
    println!("crash test: {cycles} cycles, LEVEE_CRASH_SEED={seed}");
    let mut rng = Rng(seed | 1);
    let dir = tempfile::tempdir().unwrap();
    let mut acked: BTreeMap<u64, u64> = BTreeMap::new();
    let mut torn_tails = 0;
    for cycle in 0..cycles {
        for (lsn, hash) in run_and_kill(dir.path(), &mut rng, cycle) {
            if let Some(previous) = acked.insert(lsn, hash) {
                assert_eq!(
                    previous, hash,
                    "cycle {cycle}: LSN {lsn} acknowledged twice with different data"
                );
            }
        }
        // Inspect first (read-only), then recover and verify.
        let inspected = levee_log::inspect(dir.path()).unwrap();
        assert!(inspected.opens_without_repair, "cycle {cycle}: {inspected}");
        if inspected.problem.is_some() {
            torn_tails += 1;
        }
        verify(dir.path(), &acked, cycle);
    }
    println!(
        "crash test: {} acknowledged records verified over {cycles} kills, {torn_tails} torn tails cut",
        acked.len()
    );
    assert!(!acked.is_empty());
}
