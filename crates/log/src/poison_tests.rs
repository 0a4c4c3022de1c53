//! fsync-failure poisoning, tested through the real write path: the log
//! really writes and really calls fdatasync, and the injected fault
//! (`SyncFaults`) then forges the kernel's verdict as EIO, which is what a
//! failing disk or a thin-provisioned volume that ran out of space does.

use crate::{Log, LogError, LogOptions, SyncMode};

fn options() -> LogOptions {
    LogOptions {
        segment_bytes_max: 4096,
        record_bytes_max: 1024,
        log_bytes_max: 1 << 20,
        pending_bytes_max: 1 << 16,
        ..LogOptions::default()
    }
}

#[test]
fn a_failed_fsync_poisons_the_log_and_is_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(dir.path(), options()).unwrap();
    assert_eq!(log.append_blocking(0, b"durable".to_vec()).unwrap(), 1);
    let fsyncs_before = log.stats().fsyncs;

    log.inject_sync_failures(1, libc::EIO);
    let error = log.append_blocking(0, b"doomed".to_vec()).unwrap_err();
    let LogError::Poisoned(reason) = &error else {
        panic!("expected Poisoned, got {error}");
    };
    assert!(
        reason.contains("fdatasync") && reason.contains("errno 5"),
        "{reason}"
    );
    assert!(reason.contains(".log"), "names the file: {reason}");
    assert!(error.is_unavailable());

    // Every later write is refused, without another fsync being attempted.
    for _ in 0..3 {
        assert!(matches!(
            log.append_blocking(0, b"later".to_vec()),
            Err(LogError::Poisoned(_))
        ));
    }
    assert!(matches!(log.sync(), Err(LogError::Poisoned(_))));
    let stats = log.stats();
    assert!(stats.poisoned.is_some());
    assert_eq!(
        stats.fsyncs, fsyncs_before,
        "the failed sync did not count as success"
    );
    assert_eq!(stats.synced_lsn, 1);
    // Reads of what was acknowledged still work.
    let records: Vec<_> = log.read_from(1).unwrap().map(Result::unwrap).collect();
    assert_eq!(records.len(), 1);
    drop(log);

    // A restart recovers from what is really on disk and accepts writes.
    let (log, report) = Log::open(dir.path(), options()).unwrap();
    assert!(report.last_lsn >= 1);
    let next = log.append_blocking(0, b"after restart".to_vec()).unwrap();
    assert_eq!(next, report.last_lsn + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_appenders_waiting_on_a_failed_fsync_all_get_poisoned() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(dir.path(), options()).unwrap();
    log.inject_sync_failures(1, libc::EIO);
    let mut tasks = Vec::new();
    for i in 0..16u8 {
        let log = log.clone();
        tasks.push(tokio::spawn(
            async move { log.append(i, vec![i; 100]).await },
        ));
    }
    let mut poisoned = 0;
    for task in tasks {
        match task.await.unwrap() {
            Err(LogError::Poisoned(_)) => poisoned += 1,
            // An append that went into an earlier, successful batch is fine;
            // the first sync fails, so at most none are.
            Ok(lsn) => panic!("LSN {lsn} acknowledged although its fsync failed"),
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!(poisoned, 16);
}

#[test]
fn a_failed_fsync_at_rotation_poisons_too() {
    let dir = tempfile::tempdir().unwrap();
    let options = LogOptions {
        sync: SyncMode::Never,
        ..options()
    };
    let (log, _) = Log::open(dir.path(), options).unwrap();
    log.inject_sync_failures(1, libc::EIO);
    // Never mode does not sync per append, so the first sync is the one at
    // rotation (4 KiB segments, 1 KiB records).
    let mut result = Ok(0);
    for _ in 0..10 {
        result = log.append_blocking(0, vec![1; 1000]);
        if result.is_err() {
            break;
        }
    }
    // The record that triggered rotation may have been acknowledged before
    // the writer noticed; the next one must be refused.
    let refused = result.is_err() || log.append_blocking(0, vec![1; 10]).is_err();
    assert!(refused);
    assert!(log.stats().poisoned.unwrap().contains("fdatasync"));
}

#[test]
fn concurrent_appenders_around_a_failed_fsync_never_get_an_unsynced_ack() {
    // Overlapping syncs (see `writer`): whichever of them reports the
    // failure, no appender may be told its record is durable unless a
    // successful fdatasync covered it, and everything told so survives.
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(dir.path(), options()).unwrap();
    let acked: Vec<Vec<u64>> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..8u8)
            .map(|thread| {
                let log = log.clone();
                scope.spawn(move || {
                    let mut acked = Vec::new();
                    for i in 0..400u32 {
                        if thread == 0 && i == 40 {
                            log.inject_sync_failures(1, libc::EIO);
                        }
                        match log.append_blocking(thread, vec![thread; 50 + (i as usize % 200)]) {
                            Ok(lsn) => acked.push(lsn),
                            Err(LogError::Poisoned(_)) => break,
                            Err(other) => panic!("unexpected {other}"),
                        }
                    }
                    acked
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let stats = log.stats();
    assert!(
        stats.poisoned.is_some(),
        "the injected failure poisoned the log"
    );
    let max_acked = acked.iter().flatten().copied().max().unwrap_or(0);
    assert!(
        max_acked <= stats.synced_lsn,
        "LSN {max_acked} acknowledged, synced only through {}",
        stats.synced_lsn
    );
    drop(log);
    let (log, report) = Log::open(dir.path(), options()).unwrap();
    assert!(report.last_lsn >= max_acked);
    let records: Vec<_> = log.read_from(1).unwrap().map(Result::unwrap).collect();
    for lsn in acked.iter().flatten() {
        let record = &records[(*lsn - 1) as usize];
        assert_eq!(record.lsn, *lsn);
        assert!(record.payload.iter().all(|&b| b == record.kind));
    }
}
