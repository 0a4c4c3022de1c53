//! Crash-test child: opens a log, replays it like the host would (latest
//! checkpoint + the records after it, every payload verified), then appends
//! from several threads with `SyncMode::Always` and prints one line per
//! acknowledged record on stdout: `A <lsn> <fnv1a64 of payload, hex>`.
//! Thread 0 also checkpoints and compacts now and then. It runs until
//! killed (the test sends SIGKILL at a random moment) or until it has made
//! `appends_max` appends per thread.
//!
//! Usage: levee-log-crash-child DIR THREADS SEED [APPENDS_MAX]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use levee_log::testkit::{crash_payload, crash_payload_is_intact, fnv1a64};
use levee_log::{Log, LogOptions, SyncMode};

/// Small segments so that rotation and compaction happen within a cycle.
fn options() -> LogOptions {
    LogOptions {
        segment_bytes_max: 256 << 10,
        record_bytes_max: LARGE_PAYLOAD_BYTES_MAX as u32,
        log_bytes_max: 1 << 30,
        sync: SyncMode::Always,
        ..LogOptions::default()
    }
}

const CHECKPOINT_EVERY_APPENDS: u64 = 40;
/// Most payloads are small; one in `LARGE_EVERY` is up to this large, so
/// that batches span many pages and a SIGKILL can land inside a `write`
/// (the kernel stops copying at a page boundary), leaving a real torn tail.
const LARGE_PAYLOAD_BYTES_MAX: usize = 32 << 10;
const LARGE_EVERY: u64 = 8;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: levee-log-crash-child DIR THREADS SEED [APPENDS_MAX]");
        return ExitCode::from(64);
    }
    let dir = PathBuf::from(&args[1]);
    let (Ok(threads), Ok(seed)) = (args[2].parse::<u32>(), args[3].parse::<u64>()) else {
        eprintln!("THREADS and SEED must be integers");
        return ExitCode::from(64);
    };
    let appends_max: u64 = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let (log, report) = match Log::open(&dir, options()) {
        Ok(opened) => opened,
        Err(error) => {
            eprintln!("open failed: {error}");
            return ExitCode::from(2);
        }
    };
    if let Err(problem) = replay(&log) {
        eprintln!("replay failed: {problem}");
        return ExitCode::from(3);
    }
    println!("READY {}", report.last_lsn);
    std::thread::scope(|scope| {
        for writer in 0..threads {
            let log = log.clone();
            scope.spawn(move || append_loop(&log, seed, writer, appends_max));
        }
    });
    ExitCode::SUCCESS
}

/// What the host does at start: load the checkpoint, replay what follows.
fn replay(log: &Log) -> Result<(), String> {
    let checkpoint = log.latest_checkpoint::<u64>().map_err(|e| e.to_string())?;
    let from = match checkpoint {
        Some((info, state)) if state != info.covers_lsn => {
            return Err(format!(
                "checkpoint state {state} != covers {}",
                info.covers_lsn
            ));
        }
        Some((info, _)) => info.covers_lsn + 1,
        None => 1,
    };
    let reader = log.read_from(from).map_err(|e| e.to_string())?;
    for record in reader {
        let record = record.map_err(|e| e.to_string())?;
        if !crash_payload_is_intact(&record.payload) {
            return Err(format!("LSN {} payload damaged", record.lsn));
        }
    }
    Ok(())
}

fn append_loop(log: &Log, seed: u64, writer: u32, appends_max: u64) {
    let mut rng = seed ^ (u64::from(writer) + 1).wrapping_mul(0xA076_1D64_78BD_642F);
    for seq in 0..appends_max {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let bytes = if rng.is_multiple_of(LARGE_EVERY) {
            (rng >> 8) as usize % LARGE_PAYLOAD_BYTES_MAX
        } else {
            (rng >> 8) as usize % 2048
        };
        let payload = crash_payload(seed, writer, seq, bytes);
        let hash = fnv1a64(&payload);
        let lsn = match log.append_blocking((writer % 256) as u8, payload) {
            Ok(lsn) => lsn,
            Err(error) => {
                eprintln!("append failed: {error}");
                std::process::exit(4);
            }
        };
        // One write(2) per line, well under PIPE_BUF: atomic in the pipe,
        // so a kill never leaves half a line that looks like an ack.
        let line = format!("A {lsn} {hash:016x}\n");
        let mut stdout = std::io::stdout().lock();
        if stdout
            .write_all(line.as_bytes())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            std::process::exit(5);
        }
        drop(stdout);
        if writer == 0 && seq % CHECKPOINT_EVERY_APPENDS == CHECKPOINT_EVERY_APPENDS - 1 {
            checkpoint_and_compact(log);
        }
    }
}

fn checkpoint_and_compact(log: &Log) {
    let covers = log.stats().last_lsn;
    if let Err(error) = log.write_checkpoint(covers, &covers) {
        eprintln!("checkpoint failed: {error}");
        std::process::exit(6);
    }
    if let Err(error) = log.compact(covers + 1) {
        eprintln!("compact failed: {error}");
        std::process::exit(7);
    }
}
