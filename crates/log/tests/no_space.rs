//! A full file system, for real: the log lives on a small tmpfs that the
//! test mounts (root only; skipped with a printed reason otherwise), a
//! filler file takes most of the space, and appenders (blocking threads
//! and async tasks) write until the file system refuses. The refused
//! appends must get `NoSpace` without poisoning the log, every acknowledged
//! record must read back, and once the filler is deleted appends must
//! succeed again; after a reopen the log holds exactly the acknowledged
//! records (no refused one, no half batch). The same when what runs out of
//! space is creating the next segment, and a torn tail is cut at start-up
//! even when there is no space left to keep it as `.broken`.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::tmpfs::{fill, mount_tmpfs};
use common::{payload_for, read_all};
use levee_log::{Log, LogError, LogOptions, SyncMode};

/// Size of the tmpfs: small enough to fill in well under a second.
const TMPFS_BYTES: u64 = 4 << 20;
/// Space the filler leaves for the log to fill.
const LEFT_FOR_LOG_BYTES: u64 = 768 << 10;
/// Appends per blocking thread at most (each stops at its first refusal).
const APPENDS_PER_THREAD_MAX: u64 = 5_000;
const THREADS: u64 = 4;
/// Appends after the space came back.
const APPENDS_AFTER: u64 = 40;

fn options() -> LogOptions {
    LogOptions {
        // Several segments fit, so rotations (and spares) hit the wall too.
        segment_bytes_max: 128 << 10,
        record_bytes_max: 16 << 10,
        log_bytes_max: 64 << 20,
        sync: SyncMode::Always,
        repair: false,
        pending_bytes_max: 64 << 10,
        checkpoint_bytes_max: 1 << 20,
        checkpoints_kept: 2,
    }
}

/// Sizes vary so that batches end at odd offsets and partial writes happen.
fn size_for(seed: u64) -> usize {
    [100, 3000, 7000, 12_000][seed as usize % 4]
}

type Acked = Arc<Mutex<BTreeMap<u64, u64>>>;

/// Appends from `THREADS` threads until each has seen a refusal; returns
/// the refusals' messages.
fn append_until_refused(log: &Log, acked: &Acked, seed_base: u64) -> Vec<String> {
    let handles: Vec<_> = (0..THREADS)
        .map(|thread| {
            let (log, acked) = (log.clone(), Arc::clone(acked));
            std::thread::spawn(move || {
                for attempt in 0..APPENDS_PER_THREAD_MAX {
                    let seed = seed_base + thread * 1_000_000 + attempt;
                    match log.append_blocking(1, payload_for(seed, size_for(seed))) {
                        Ok(lsn) => {
                            let previous = acked.lock().unwrap().insert(lsn, seed);
                            assert_eq!(previous, None, "LSN {lsn} acknowledged twice");
                        }
                        Err(error @ LogError::NoSpace { .. }) => return Some(error.to_string()),
                        Err(other) => panic!("unexpected append error: {other}"),
                    }
                }
                None
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().unwrap().expect("the file system never filled up"))
        .collect()
}

fn check_contents(log: &Log, acked: &Acked) {
    let acked = acked.lock().unwrap();
    let records = read_all(log, 1);
    let lsns: Vec<u64> = records.iter().map(|r| r.lsn).collect();
    let expected: Vec<u64> = acked.keys().copied().collect();
    assert_eq!(
        lsns, expected,
        "the log holds exactly the acknowledged LSNs"
    );
    for record in &records {
        let seed = acked[&record.lsn];
        assert_eq!(
            record.payload,
            payload_for(seed, size_for(seed)),
            "LSN {} holds what was acknowledged for it",
            record.lsn
        );
    }
}

#[test]
fn a_full_file_system_refuses_appends_without_poisoning_and_recovers() {
    let mount_point = tempfile::tempdir().unwrap();
    let Some(_mounted) = mount_tmpfs(mount_point.path(), TMPFS_BYTES, "no_space") else {
        return;
    };
    let dir = mount_point.path().join("log");
    let filler = mount_point.path().join("filler");
    fill(&filler, LEFT_FOR_LOG_BYTES, TMPFS_BYTES);

    let (log, _) = Log::open(&dir, options()).expect("open on the tmpfs");
    let acked: Acked = Arc::default();
    let messages = append_until_refused(&log, &acked, 0);
    let message = &messages[0];
    assert!(message.contains(&dir.display().to_string()), "{message}");
    assert!(message.contains("resume once space is freed"), "{message}");
    let stats = log.stats();
    eprintln!(
        "full after {} acknowledged appends, {} segment(s); first refusal: {message}",
        acked.lock().unwrap().len(),
        stats.segments.len()
    );
    assert!(acked.lock().unwrap().len() > 10, "some appends fit");

    // An async append on the full disk is refused the same way.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let big = payload_for(7, 12_000);
    let refused = runtime.block_on(async {
        let mut result = Ok(0);
        for _ in 0..50 {
            result = log.append(1, big.clone()).await;
            if result.is_err() {
                break;
            }
            acked.lock().unwrap().insert(*result.as_ref().unwrap(), 7);
        }
        result
    });
    // (size_for(7) is 12_000, so the map's seed 7 reproduces `big`.)
    assert!(
        matches!(refused, Err(LogError::NoSpace { .. })),
        "{refused:?}"
    );
    assert_eq!(log.stats().poisoned, None, "no space is not poison");
    check_contents(&log, &acked);

    std::fs::remove_file(&filler).unwrap();
    for attempt in 0..APPENDS_AFTER {
        let seed = 50_000_000 + attempt;
        let lsn = log
            .append_blocking(1, payload_for(seed, size_for(seed)))
            .expect("appends succeed once space is freed");
        acked.lock().unwrap().insert(lsn, seed);
    }
    runtime.block_on(async {
        let seed = 60_000_000;
        let lsn = log
            .append(1, payload_for(seed, size_for(seed)))
            .await
            .expect("async appends too");
        acked.lock().unwrap().insert(lsn, seed);
    });
    check_contents(&log, &acked);
    drop(log);

    let (log, report) = Log::open(&dir, options()).expect("reopen");
    assert!(report.torn_tail.is_none(), "{report}");
    check_contents(&log, &acked);
    drop(log);
}

/// Writes zeros to `path` until the file system refuses (ENOSPC).
fn fill_completely(path: &Path) {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 4096];
    for _ in 0..(TMPFS_BYTES / chunk.len() as u64 + 1) {
        if let Err(error) = file.write_all(&chunk) {
            assert_eq!(error.raw_os_error(), Some(libc::ENOSPC), "{error}");
            return;
        }
    }
    panic!("the tmpfs never filled up");
}

#[test]
fn a_torn_tail_is_cut_even_without_space_for_its_broken_copy() {
    let mount_point = tempfile::tempdir().unwrap();
    let Some(_mounted) = mount_tmpfs(mount_point.path(), TMPFS_BYTES, "no_space") else {
        return;
    };
    let dir = mount_point.path().join("log");
    let (log, _) = Log::open(&dir, options()).expect("open on the tmpfs");
    for seed in 1..=5 {
        log.append_blocking(1, payload_for(seed, size_for(seed)))
            .unwrap();
    }
    let segment = log.stats().segments.last().unwrap().path.clone();
    drop(log);
    // A crash artefact: garbage after the last record.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap();
    file.write_all(&[0xab; 3000]).unwrap();
    drop(file);
    fill_completely(&mount_point.path().join("filler"));

    let (log, report) = Log::open(&dir, options()).expect("a full disk does not block start-up");
    let torn = report.torn_tail.as_ref().expect("the torn tail was cut");
    assert_eq!(torn.broken_copy, None, "no space for the evidence");
    assert_eq!(torn.bytes_cut, 3000);
    let no_broken_files = std::fs::read_dir(&dir)
        .unwrap()
        .all(|e| !e.unwrap().file_name().to_string_lossy().contains(".broken"));
    assert!(no_broken_files, "no half copy is left behind");
    let records = read_all(&log, 1);
    assert_eq!(records.len(), 5);
    for record in &records {
        assert_eq!(
            record.payload,
            payload_for(record.lsn, size_for(record.lsn))
        );
    }
    drop(log);
}

#[test]
fn a_rotation_without_space_for_the_next_segment_is_refused_not_poisoned() {
    let mount_point = tempfile::tempdir().unwrap();
    let Some(_mounted) = mount_tmpfs(mount_point.path(), TMPFS_BYTES, "no_space") else {
        return;
    };
    let dir = mount_point.path().join("log");
    let filler = mount_point.path().join("filler");
    fill(&filler, 256 << 10, TMPFS_BYTES);
    // One-page segments of three records: every record lands in a page the
    // segment already has, so the only thing that can run out of space is
    // creating the next segment (or its spare).
    let options = LogOptions {
        segment_bytes_max: 4096,
        record_bytes_max: 1024,
        ..options()
    };
    let (log, _) = Log::open(&dir, options.clone()).expect("open on the tmpfs");
    let mut acked = BTreeMap::new();
    let mut refusal = None;
    for seed in 1..=APPENDS_PER_THREAD_MAX {
        match log.append_blocking(1, payload_for(seed, 1000)) {
            Ok(lsn) => {
                acked.insert(lsn, seed);
            }
            Err(error @ LogError::NoSpace { .. }) => {
                refusal = Some(error.to_string());
                break;
            }
            Err(other) => panic!("unexpected append error: {other}"),
        }
    }
    let refusal = refusal.expect("the file system never filled up");
    assert!(refusal.contains("next segment"), "{refusal}");
    assert_eq!(log.stats().poisoned, None);
    // Still refused while there is no space, and still not poisoned.
    assert!(matches!(
        log.append_blocking(1, payload_for(0, 1000)),
        Err(LogError::NoSpace { .. })
    ));
    std::fs::remove_file(&filler).unwrap();
    for seed in 1_000_000..1_000_010 {
        let lsn = log
            .append_blocking(1, payload_for(seed, 1000))
            .expect("appends succeed once space is freed");
        acked.insert(lsn, seed);
    }
    let check = |log: &Log| {
        let records = read_all(log, 1);
        assert_eq!(
            records.iter().map(|r| r.lsn).collect::<Vec<_>>(),
            acked.keys().copied().collect::<Vec<_>>()
        );
        for record in &records {
            assert_eq!(record.payload, payload_for(acked[&record.lsn], 1000));
        }
    };
    check(&log);
    drop(log);
    let (log, report) = Log::open(&dir, options).expect("reopen");
    assert!(report.torn_tail.is_none(), "{report}");
    check(&log);
    drop(log);
}
