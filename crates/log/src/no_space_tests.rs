//! ENOSPC through the real write path, without root: the injected fault
//! (`SyncFaults::arm_write_no_space`) makes a segment write land half its
//! bytes for real and then fail with ENOSPC, like a file system filling up
//! mid-write. (`tests/no_space.rs` does the same on a real, full tmpfs.)
//!
//! What must hold: the refused appends get `NoSpace` and the log is not
//! poisoned; every acknowledged append reads back under its LSN with its
//! payload, and nothing else is in the log (the refused LSNs were handed
//! out again to later appends, which must never be confused with the
//! refused ones); after a reopen the same.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::{Log, LogError, LogOptions, Lsn, SyncMode};

fn options() -> LogOptions {
    LogOptions {
        segment_bytes_max: 8192,
        record_bytes_max: 1024,
        log_bytes_max: 64 << 20,
        pending_bytes_max: 4096,
        sync: SyncMode::Always,
        ..LogOptions::default()
    }
}

fn payload(id: u64) -> Vec<u8> {
    let size = [0, 7, 300, 1000][id as usize % 4];
    let mut bytes = id.to_le_bytes().repeat(size / 8 + 1);
    bytes.truncate(size.max(8));
    bytes
}

type Acked = Arc<Mutex<BTreeMap<Lsn, u64>>>;

fn note(acked: &Acked, result: Result<Lsn, LogError>, id: u64, refused: &Mutex<u64>) {
    match result {
        Ok(lsn) => {
            let previous = acked.lock().unwrap().insert(lsn, id);
            assert_eq!(previous, None, "LSN {lsn} acknowledged twice");
        }
        Err(LogError::NoSpace { .. }) => *refused.lock().unwrap() += 1,
        Err(other) => panic!("unexpected error: {other}"),
    }
}

fn check(log: &Log, acked: &Acked) {
    let records: Vec<_> = log.read_from(1).unwrap().map(Result::unwrap).collect();
    let acked = acked.lock().unwrap();
    assert_eq!(
        records.iter().map(|r| r.lsn).collect::<Vec<_>>(),
        acked.keys().copied().collect::<Vec<_>>()
    );
    for record in &records {
        assert_eq!(
            record.payload,
            payload(acked[&record.lsn]),
            "LSN {}",
            record.lsn
        );
    }
}

#[test]
fn a_lone_refused_append_is_cut_back_and_the_next_one_reuses_its_lsn() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(dir.path(), options()).unwrap();
    assert_eq!(log.append_blocking(0, payload(1)).unwrap(), 1);
    log.inject_write_no_space(1);
    let error = log.append_blocking(0, payload(2)).unwrap_err();
    assert!(matches!(error, LogError::NoSpace { .. }), "{error}");
    assert!(error.is_unavailable());
    let message = error.to_string();
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );
    assert!(message.contains("errno 28"), "{message}");
    assert_eq!(log.stats().poisoned, None);
    assert_eq!(log.append_blocking(0, payload(3)).unwrap(), 2);
    assert_eq!(log.sync().unwrap(), 2);
    let acked: Acked = Arc::new(Mutex::new(BTreeMap::from([(1, 1), (2, 3)])));
    check(&log, &acked);
    drop(log);
    let (log, report) = Log::open(dir.path(), options()).unwrap();
    assert!(report.torn_tail.is_none(), "{report}");
    check(&log, &acked);
}

#[test]
fn concurrent_appenders_around_refusals_never_confuse_a_reused_lsn() {
    const THREADS: u64 = 6;
    const TASKS: u64 = 6;
    const APPENDS_EACH: u64 = 150;
    const REFUSALS: u32 = 40;
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(dir.path(), options()).unwrap();
    let acked: Acked = Arc::default();
    let refused = Arc::new(Mutex::new(0u64));
    let injector = {
        let log = log.clone();
        std::thread::spawn(move || {
            for _ in 0..REFUSALS {
                log.inject_write_no_space(1);
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        })
    };
    let threads: Vec<_> = (0..THREADS)
        .map(|thread| {
            let (log, acked, refused) = (log.clone(), Arc::clone(&acked), Arc::clone(&refused));
            std::thread::spawn(move || {
                for index in 0..APPENDS_EACH {
                    let id = thread * 1_000_000 + index;
                    note(&acked, log.append_blocking(1, payload(id)), id, &refused);
                }
            })
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let (log, acked, refused) = (log.clone(), Arc::clone(&acked), Arc::clone(&refused));
                tokio::spawn(async move {
                    for index in 0..APPENDS_EACH {
                        let id = 500_000_000 + task * 1_000_000 + index;
                        note(&acked, log.append(1, payload(id)).await, id, &refused);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    for thread in threads {
        thread.join().unwrap();
    }
    injector.join().unwrap();
    log.inject_write_no_space(0);
    let refused = *refused.lock().unwrap();
    let total = (THREADS + TASKS) * APPENDS_EACH;
    assert!(refused > 0, "some appends were refused");
    assert_eq!(acked.lock().unwrap().len() as u64 + refused, total);
    assert_eq!(log.stats().poisoned, None);
    check(&log, &acked);
    drop(log);
    let (log, report) = Log::open(dir.path(), options()).unwrap();
    assert!(report.torn_tail.is_none(), "{report}");
    check(&log, &acked);
}
