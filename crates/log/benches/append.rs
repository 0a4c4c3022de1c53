//! Side-by-side benchmark, one run, one table:
//!
//! 1. Durable appends per second with 1, 8 and 64 concurrent writers
//!    (threads calling `append_blocking`), 256-byte records, for
//!    (a) levee-log with `SyncMode::Always` (group commit: a lone appender
//!    writes and syncs its record itself; under load each batch is written
//!    by one appender for all, and two fdatasyncs may overlap),
//!    (b) SQLite in WAL mode with `synchronous=FULL`, one row per record,
//!    one transaction per insert, one connection shared behind a mutex
//!    (SQLite allows one writer at a time; serialising in-process
//!    avoids its sleeping busy-handler, which is SQLite's best case),
//!    (c) raw loops: one thread writing 64 records (same bytes as levee's)
//!    with one `write` and then `fdatasync`, over and over, to a growing
//!    file; plus the same with as many records per fsync as there are
//!    writers (raw-N; N = 1 is the floor of one writer).
//!    The raw loops are the limit of *sequential* fdatasyncs on a growing
//!    file. levee can beat them, and that is not a measurement error: it
//!    writes into preallocated segments (an fdatasync there need not also
//!    write the file size, as for SQLite's reused WAL) and lets two
//!    fdatasyncs overlap, which virtual disks complete in about the time
//!    of one.
//! 2. Recovery speed: `Log::open` (which verifies every record) plus a full
//!    `read_from(1)` scan (which verifies them again, as every read does)
//!    versus a plain sequential `read` of the same segment files, with the
//!    page cache warm and (via posix_fadvise DONTNEED) cold. Both passes
//!    read every byte, so even at zero CPU cost recovery would reach only
//!    0.5x of one plain read (more only where `open`'s parallel
//!    verification finds idle cores).
//!
//! Every cell gets a fixed time (`LEVEE_BENCH_SECS`, default 3 s), taken
//! in 250 ms slices that alternate between the systems: a shared or
//! virtual disk's fsync latency drifts over seconds, and interleaving makes
//! every system see the same drift. All files live in fresh directories
//! under one parent (`LEVEE_BENCH_DIR`, default the system temp dir), so
//! they share a disk. Compare ratios within one run, never absolute
//! numbers across runs: on the 2-core VM this was written on, one
//! fdatasync took 0.2 ms when the other cores were busy and up to 4 ms
//! when they were idle (the wake-up of an idle virtual CPU dominates), and
//! that regime changes from minute to minute.
//!
//! Run: `cargo bench -p levee-log --bench append`
//! (`LEVEE_BENCH_ONLY=append` or `=recovery` runs one half;
//! `LEVEE_BENCH_WRITERS=1,64` picks the writer counts.)

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use levee_log::format::encode_record;
use levee_log::{Log, LogOptions, SyncMode};

const RECORD_PAYLOAD_BYTES: usize = 256;
const WRITER_COUNTS: [usize; 3] = [1, 8, 64];
const RAW_RECORDS_PER_FSYNC: usize = 64;
const RECOVERY_LOG_BYTES: u64 = 512 << 20;
const RECOVERY_RUNS: usize = 3;

/// Length of one measurement slice; the systems take turns slice by slice.
const SLICE: Duration = Duration::from_millis(250);

fn main() {
    let seconds: u64 = std::env::var("LEVEE_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let parent = std::env::var_os("LEVEE_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    std::fs::create_dir_all(&parent).expect("create bench parent dir");
    println!(
        "levee-log append benchmark: {RECORD_PAYLOAD_BYTES}-byte records, {seconds} s per cell \
         (interleaved {} ms slices), files under {}",
        SLICE.as_millis(),
        parent.display()
    );
    println!();
    // `LEVEE_BENCH_ONLY=recovery` skips the append table, `=append` the
    // recovery table (for profiling).
    let only = std::env::var("LEVEE_BENCH_ONLY").unwrap_or_default();
    if only == "recovery" {
        recovery(&parent);
        return;
    }
    println!(
        "{:>7} | {:>12} {:>9} | {:>12} | {:>12} {:>12} | {:>8} {:>8} {:>8}",
        "writers",
        "levee rec/s",
        "rec/fsync",
        "sqlite rec/s",
        "raw-64 rec/s",
        "raw-N rec/s",
        "÷sqlite",
        "÷raw-64",
        "÷raw-N"
    );
    println!("{}", "-".repeat(109));
    // `LEVEE_BENCH_WRITERS=1,64` overrides the writer counts.
    let writer_counts: Vec<usize> = std::env::var("LEVEE_BENCH_WRITERS")
        .ok()
        .map(|list| {
            list.split(',')
                .filter_map(|n| n.trim().parse().ok())
                .collect()
        })
        .unwrap_or_else(|| WRITER_COUNTS.to_vec());
    let slices = (Duration::from_secs(seconds).as_millis() / SLICE.as_millis()).max(1);
    for writers in writer_counts {
        let row = append_row(&parent, writers, slices as usize);
        println!(
            "{:>7} | {:>12.0} {:>9.1} | {:>12.0} | {:>12.0} {:>12.0} | {:>7.1}x {:>7.2}x {:>7.2}x",
            writers,
            row.levee.rate(),
            row.levee_records_per_fsync,
            row.sqlite.rate(),
            row.raw_64.rate(),
            row.raw_n.rate(),
            row.levee.rate() / row.sqlite.rate(),
            row.levee.rate() / row.raw_64.rate(),
            row.levee.rate() / row.raw_n.rate(),
        );
    }
    println!();
    println!(
        "raw-64: one thread, one write of 64 records + fdatasync, repeated (the physical limit);"
    );
    println!("raw-N: the same with N = writers records per fdatasync.");
    println!();
    if only != "append" {
        recovery(&parent);
    }
}

/// Completed operations and the time they took.
#[derive(Default)]
struct Tally {
    ops: u64,
    seconds: f64,
}

impl Tally {
    fn add(&mut self, (ops, seconds): (u64, f64)) {
        self.ops += ops;
        self.seconds += seconds;
    }
    fn rate(&self) -> f64 {
        self.ops as f64 / self.seconds
    }
}

struct Row {
    levee: Tally,
    levee_records_per_fsync: f64,
    sqlite: Tally,
    raw_64: Tally,
    raw_n: Tally,
}

/// Measures one writer count: the four systems take turns in short
/// slices, so that the shared disk's changing fsync latency hits each of
/// them alike.
fn append_row(parent: &Path, writers: usize, slices: usize) -> Row {
    let levee = LeveeTarget::new(parent);
    let sqlite = SqliteTarget::new(parent);
    let mut raw_64 = RawTarget::new(parent, RAW_RECORDS_PER_FSYNC);
    let mut raw_n = RawTarget::new(parent, writers);
    let mut row = Row {
        levee: Tally::default(),
        levee_records_per_fsync: 0.0,
        sqlite: Tally::default(),
        raw_64: Tally::default(),
        raw_n: Tally::default(),
    };
    for _ in 0..slices {
        row.levee
            .add(run_writers(writers, SLICE, || levee.append()));
        row.sqlite
            .add(run_writers(writers, SLICE, || sqlite.append()));
        row.raw_64.add(raw_64.run(SLICE));
        row.raw_n.add(raw_n.run(SLICE));
    }
    let stats = levee.log.stats();
    row.levee_records_per_fsync = stats.records_written as f64 / stats.fsyncs.max(1) as f64;
    row
}

fn payload() -> Vec<u8> {
    (0..RECORD_PAYLOAD_BYTES).map(|i| (i * 31) as u8).collect()
}

/// Runs `writers` threads calling `append_one` for `slice`; returns the
/// completed appends and the elapsed time (including the last appends in
/// flight when the slice ended).
fn run_writers(writers: usize, slice: Duration, append_one: impl Fn() + Sync) -> (u64, f64) {
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..writers {
            scope.spawn(|| {
                let mut mine = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    append_one();
                    mine += 1;
                }
                done.fetch_add(mine, Ordering::Relaxed);
            });
        }
        std::thread::sleep(slice);
        stop.store(true, Ordering::Relaxed);
    });
    (
        done.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
    )
}

struct LeveeTarget {
    _dir: tempfile::TempDir,
    log: Log,
    payload: Vec<u8>,
}

impl LeveeTarget {
    fn new(parent: &Path) -> Self {
        let dir = tempfile::tempdir_in(parent).unwrap();
        let options = LogOptions {
            sync: SyncMode::Always,
            ..LogOptions::default()
        };
        let (log, _) = Log::open(dir.path(), options).unwrap();
        LeveeTarget {
            _dir: dir,
            log,
            payload: payload(),
        }
    }

    fn append(&self) {
        self.log.append_blocking(1, self.payload.clone()).unwrap();
    }
}

struct SqliteTarget {
    _dir: tempfile::TempDir,
    connection: Mutex<rusqlite::Connection>,
    payload: Vec<u8>,
}

impl SqliteTarget {
    fn new(parent: &Path) -> Self {
        let dir = tempfile::tempdir_in(parent).unwrap();
        let connection = rusqlite::Connection::open(dir.path().join("bench.db")).unwrap();
        let mode: String = connection
            .query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        connection
            .execute_batch(
                "PRAGMA synchronous=FULL; \
                 CREATE TABLE log (lsn INTEGER PRIMARY KEY, kind INTEGER, payload BLOB);",
            )
            .unwrap();
        SqliteTarget {
            _dir: dir,
            connection: Mutex::new(connection),
            payload: payload(),
        }
    }

    fn append(&self) {
        let connection = self.connection.lock().unwrap();
        // Autocommit: one transaction (and one WAL fsync) per insert.
        connection
            .prepare_cached("INSERT INTO log (kind, payload) VALUES (1, ?1)")
            .unwrap()
            .execute([&self.payload])
            .unwrap();
    }
}

/// One thread: `records_per_sync` encoded records in one `write`, then
/// fdatasync, to a growing file (as the log does).
struct RawTarget {
    _dir: tempfile::TempDir,
    file: File,
    records_per_sync: usize,
    batch: Vec<u8>,
    next_lsn: u64,
}

impl RawTarget {
    fn new(parent: &Path, records_per_sync: usize) -> Self {
        let dir = tempfile::tempdir_in(parent).unwrap();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("raw"))
            .unwrap();
        RawTarget {
            _dir: dir,
            file,
            records_per_sync,
            batch: Vec::new(),
            next_lsn: 1,
        }
    }

    fn run(&mut self, slice: Duration) -> (u64, f64) {
        let payload = payload();
        let started = Instant::now();
        let mut records = 0u64;
        while started.elapsed() < slice {
            self.batch.clear();
            for _ in 0..self.records_per_sync {
                encode_record(&mut self.batch, self.next_lsn, 1, &payload);
                self.next_lsn += 1;
            }
            self.file.write_all(&self.batch).unwrap();
            self.file.sync_data().unwrap();
            records += self.records_per_sync as u64;
        }
        (records, started.elapsed().as_secs_f64())
    }
}

fn recovery(parent: &Path) {
    let dir = tempfile::tempdir_in(parent).unwrap();
    let options = LogOptions {
        sync: SyncMode::Never,
        ..LogOptions::default()
    };
    {
        let (log, _) = Log::open(dir.path(), options.clone()).unwrap();
        let record_bytes = 20 + RECORD_PAYLOAD_BYTES as u64;
        let payload = payload();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..RECOVERY_LOG_BYTES / record_bytes / 4 {
                        log.append_blocking(1, payload.clone()).unwrap();
                    }
                });
            }
        });
        log.sync().unwrap();
    }
    let segments = segment_files(dir.path());
    let bytes: u64 = segments
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    let mb = bytes as f64 / (1 << 20) as f64;
    println!(
        "recovery: {mb:.0} MiB in {} segments of 64 MiB, {RECORD_PAYLOAD_BYTES}-byte records (best of {RECOVERY_RUNS})",
        segments.len()
    );
    println!(
        "{:>6} | {:>16} | {:>26} | {:>6} | {:>10} {:>15}",
        "cache",
        "plain read MB/s",
        "open + read_from(1) MB/s",
        "ratio",
        "open MB/s",
        "read_from MB/s"
    );
    println!("{}", "-".repeat(93));
    for cold in [false, true] {
        let mut plain = f64::MAX;
        let mut levee = f64::MAX;
        let mut payload_bytes = 0u64;
        let mut open_part = 0.0;
        for _ in 0..RECOVERY_RUNS {
            prepare_cache(&segments, cold);
            let started = Instant::now();
            plain_read(&segments);
            plain = plain.min(started.elapsed().as_secs_f64());
            prepare_cache(&segments, cold);
            let started = Instant::now();
            let (log, _) = Log::open(dir.path(), options.clone()).unwrap();
            let opened = started.elapsed().as_secs_f64();
            payload_bytes = log
                .read_from(1)
                .unwrap()
                .map(|r| r.unwrap().payload.len() as u64)
                .sum::<u64>();
            let total = started.elapsed().as_secs_f64();
            if total < levee {
                (levee, open_part) = (total, opened);
            }
        }
        assert!(payload_bytes > 0);
        println!(
            "{:>6} | {:>16.0} | {:>26.0} | {:>5.2}x | {:>10.0} {:>15.0}",
            if cold { "cold" } else { "warm" },
            mb / plain,
            mb / levee,
            plain / levee,
            mb / open_part,
            mb / (levee - open_part),
        );
    }
    println!();
    println!(
        "ratio = levee recovery speed / plain read speed (1.00x = as fast as reading the files)."
    );
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

/// Warm: read everything once. Cold: ask the kernel to drop the files'
/// clean pages (no root needed).
fn prepare_cache(files: &[PathBuf], cold: bool) {
    for path in files {
        let file = File::open(path).unwrap();
        if cold {
            // SAFETY: valid descriptor; advisory call with no memory effects.
            let rc =
                unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
            assert_eq!(rc, 0);
        } else {
            plain_read(std::slice::from_ref(path));
        }
    }
}

fn plain_read(files: &[PathBuf]) -> u64 {
    let mut buffer = vec![0u8; 1 << 20];
    let mut total = 0u64;
    for path in files {
        let mut file = File::open(path).unwrap();
        loop {
            let read = file.read(&mut buffer).unwrap();
            if read == 0 {
                break;
            }
            total += read as u64;
        }
    }
    std::hint::black_box(total)
}
