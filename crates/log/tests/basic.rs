//! Behaviour of an open log: append, read, rotation, reopen, limits,
//! checkpoints, compaction, status, and the read-only tools.

mod common;

use common::{open, payload_for, read_all, small_options};
use levee_log::{LogError, LogOptions, SegmentStatus, SyncMode, dump, inspect};

#[test]
fn appends_get_contiguous_lsns_and_read_back_across_rotations() {
    let dir = tempfile::tempdir().unwrap();
    let (log, report) = open(dir.path(), small_options());
    assert_eq!((report.first_lsn, report.last_lsn), (1, 0));
    for lsn in 1..=200u64 {
        let payload = payload_for(lsn, (lsn as usize * 7) % 300);
        assert_eq!(log.append_blocking((lsn % 5) as u8, payload).unwrap(), lsn);
    }
    let records = read_all(&log, 1);
    assert_eq!(records.len(), 200);
    for (i, record) in records.iter().enumerate() {
        let lsn = i as u64 + 1;
        assert_eq!(record.lsn, lsn);
        assert_eq!(record.kind, (lsn % 5) as u8);
        assert_eq!(record.payload, payload_for(lsn, (lsn as usize * 7) % 300));
    }
    let stats = log.stats();
    assert!(
        stats.segments.len() > 5,
        "4 KiB segments must rotate: {stats:?}"
    );
    for pair in stats.segments.windows(2) {
        assert_eq!(pair[0].last_lsn + 1, pair[1].first_lsn);
        assert!(pair[0].bytes <= 4096);
    }
    // Reading from the middle uses the segment index.
    let tail = read_all(&log, 150);
    assert_eq!(tail.first().unwrap().lsn, 150);
    assert_eq!(tail.len(), 51);
}

#[test]
fn reopen_continues_after_the_last_record() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (log, _) = open(dir.path(), small_options());
        for i in 0..50u64 {
            log.append_blocking(1, payload_for(i, 100)).unwrap();
        }
    }
    let (log, report) = open(dir.path(), small_options());
    assert_eq!(report.last_lsn, 50);
    assert_eq!(report.records_replayable, 50);
    assert!(report.torn_tail.is_none() && report.repair.is_none());
    assert_eq!(log.append_blocking(1, b"next".to_vec()).unwrap(), 51);
    assert_eq!(read_all(&log, 1).len(), 51);
}

#[test]
fn limits_are_enforced_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let options = LogOptions {
        log_bytes_max: 3 * 4096,
        ..small_options()
    };
    let (log, _) = open(dir.path(), options);
    match log.append_blocking(0, vec![0; 1025]) {
        Err(LogError::RecordTooLarge {
            bytes: 1025,
            max: 1024,
        }) => {}
        other => panic!("expected RecordTooLarge, got {other:?}"),
    }
    log.append_blocking(0, vec![0; 1024]).unwrap();
    let mut full = None;
    for _ in 0..100 {
        if let Err(error) = log.append_blocking(0, vec![7; 1000]) {
            full = Some(error);
            break;
        }
    }
    let error = full.expect("a 12 KiB log fills up");
    assert!(matches!(error, LogError::Full { .. }), "{error}");
    assert!(error.is_unavailable());
    assert!(error.to_string().contains("compact"), "{error}");
    assert!(log.stats().total_bytes <= 3 * 4096);
    // Checkpoint + compaction frees room again.
    let last = log.stats().last_lsn;
    log.write_checkpoint(last, &"state").unwrap();
    log.write_checkpoint(last, &"state").unwrap();
    let compacted = log.compact(u64::MAX).unwrap();
    assert!(compacted.bytes_freed > 0, "{compacted:?}");
    log.append_blocking(0, vec![7; 1000]).unwrap();
}

#[test]
fn invalid_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let options = LogOptions {
        segment_bytes_max: 100,
        ..LogOptions::default()
    };
    assert!(matches!(
        levee_log::Log::open(dir.path(), options),
        Err(LogError::InvalidOptions(_))
    ));
}

#[test]
fn a_second_writer_is_locked_out() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, _) = open(dir.path(), small_options());
    assert!(matches!(
        levee_log::Log::open(dir.path(), small_options()),
        Err(LogError::Locked { .. })
    ));
}

#[test]
fn checkpoints_round_trip_and_bound_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small_options());
    for i in 0..100u64 {
        log.append_blocking(0, payload_for(i, 200)).unwrap();
    }
    assert!(log.latest_checkpoint::<u64>().unwrap().is_none());
    // No checkpoint: nothing may be compacted.
    assert_eq!(log.compact(u64::MAX).unwrap().segments_deleted.len(), 0);
    let first = log.write_checkpoint(40, &40u64).unwrap();
    let second = log.write_checkpoint(80, &80u64).unwrap();
    assert_eq!(first.covers_lsn, 40);
    let (info, state) = log.latest_checkpoint::<u64>().unwrap().unwrap();
    assert_eq!((info.covers_lsn, state), (80, 80));
    let stats = log.stats();
    assert_eq!(stats.records_since_checkpoint, 20);
    assert_eq!(stats.bytes_since_checkpoint, 20 * 220);
    // Compaction keeps what the older retained checkpoint needs (41..).
    let report = log.compact(u64::MAX).unwrap();
    assert!(report.first_lsn <= 41, "{report:?}");
    assert!(!report.segments_deleted.is_empty());
    assert_eq!(read_all(&log, 41).len(), 60);
    // A hint still pending at LSN 10 would have held everything back.
    assert_eq!(log.reclaimable_bytes(report.first_lsn), 0);
    // A third checkpoint retires the first.
    log.write_checkpoint(100, &100u64).unwrap();
    assert!(!first.path.exists());
    assert!(second.path.exists());
    assert!(log.stats().reclaimable_bytes_by_checkpoint > 0);
    match log.read_from(1) {
        Err(LogError::Compacted {
            requested: 1,
            first_available,
        }) => {
            assert_eq!(first_available, report.first_lsn)
        }
        other => panic!("expected Compacted, got {:?}", other.map(|_| ())),
    }
    // Invalid checkpoint LSNs are refused.
    assert!(matches!(
        log.write_checkpoint(101, &0u64),
        Err(LogError::InvalidArgument(_))
    ));
    assert!(matches!(
        log.write_checkpoint(90, &0u64),
        Err(LogError::InvalidArgument(_))
    ));
    drop(log);
    let (log, report) = open(dir.path(), small_options());
    assert_eq!(report.checkpoint.unwrap().covers_lsn, 100);
    assert_eq!(report.records_replayable, 0);
    let (_, state) = log.latest_checkpoint::<u64>().unwrap().unwrap();
    assert_eq!(state, 100);
}

#[test]
fn a_corrupt_newest_checkpoint_falls_back_to_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (log, _) = open(dir.path(), small_options());
        for i in 0..30u64 {
            log.append_blocking(0, payload_for(i, 50)).unwrap();
        }
        log.write_checkpoint(10, &"ten").unwrap();
        let newest = log.write_checkpoint(20, &"twenty").unwrap();
        let mut bytes = std::fs::read(&newest.path).unwrap();
        let at = bytes.len() - 3;
        bytes[at] ^= 0xFF;
        std::fs::write(&newest.path, bytes).unwrap();
    }
    let (log, report) = open(dir.path(), small_options());
    assert_eq!(report.checkpoint.as_ref().unwrap().covers_lsn, 10);
    assert_eq!(report.checkpoints_skipped.len(), 1);
    assert!(report.checkpoints_skipped[0].reason.contains("checksum"));
    assert!(
        report.checkpoints_skipped[0]
            .moved_to
            .as_ref()
            .unwrap()
            .exists()
    );
    assert_eq!(report.records_replayable, 20);
    let (info, state) = log.latest_checkpoint::<String>().unwrap().unwrap();
    assert_eq!((info.covers_lsn, state.as_str()), (10, "ten"));
}

#[test]
fn checkpoint_state_can_gain_defaulted_fields() {
    #[derive(serde::Serialize)]
    struct V1 {
        count: u64,
    }
    #[derive(serde::Deserialize, Debug)]
    struct V2 {
        count: u64,
        #[serde(default)]
        replicas: Vec<String>,
    }
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small_options());
    log.append_blocking(0, vec![]).unwrap();
    log.write_checkpoint(1, &V1 { count: 3 }).unwrap();
    let (_, state) = log.latest_checkpoint::<V2>().unwrap().unwrap();
    assert_eq!(state.count, 3);
    assert!(state.replicas.is_empty());
    // A type that cannot be read is an error, not a silent None.
    assert!(matches!(
        log.latest_checkpoint::<Vec<u8>>(),
        Err(LogError::Checkpoint { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_appends_from_many_tasks_group_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small_options());
    let mut tasks = Vec::new();
    for task in 0..32u64 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut lsns = Vec::new();
            for i in 0..20u64 {
                lsns.push(
                    log.append(task as u8, payload_for(task * 1000 + i, 64))
                        .await
                        .unwrap(),
                );
            }
            lsns
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (1..=640).collect::<Vec<_>>());
    let stats = log.stats();
    assert_eq!(stats.synced_lsn, 640);
    assert!(
        stats.fsyncs < 640,
        "concurrent appends must share fsyncs: {stats:?}"
    );
    let records = read_all(&log, 1);
    assert_eq!(records.len(), 640);
}

#[test]
fn a_queue_smaller_than_the_offered_load_back_pressures_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let options = LogOptions {
        pending_bytes_max: 2048,
        ..small_options()
    };
    let (log, _) = open(dir.path(), options);
    std::thread::scope(|scope| {
        for thread in 0..8u64 {
            let log = log.clone();
            scope.spawn(move || {
                for i in 0..30 {
                    log.append_blocking(0, payload_for(thread * 100 + i, 900))
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(read_all(&log, 1).len(), 240);
}

#[test]
fn relaxed_sync_modes_ack_and_read_back() {
    for sync in [SyncMode::EveryMs(5), SyncMode::Never] {
        let dir = tempfile::tempdir().unwrap();
        {
            let (log, _) = open(
                dir.path(),
                LogOptions {
                    sync,
                    ..small_options()
                },
            );
            for i in 0..100u64 {
                log.append_blocking(0, payload_for(i, 100)).unwrap();
            }
            assert_eq!(read_all(&log, 1).len(), 100);
            assert_eq!(log.sync().unwrap(), 100);
            assert_eq!(log.stats().synced_lsn, 100);
        }
        let (log, report) = open(
            dir.path(),
            LogOptions {
                sync,
                ..small_options()
            },
        );
        assert_eq!(report.last_lsn, 100);
        assert_eq!(read_all(&log, 1).len(), 100);
    }
}

#[test]
fn a_reader_sees_records_acknowledged_after_it_was_created() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small_options());
    log.append_blocking(0, b"one".to_vec()).unwrap();
    let mut reader = log.read_from(1).unwrap();
    assert_eq!(reader.next().unwrap().unwrap().payload, b"one");
    assert!(reader.next().is_none());
    for i in 0..60 {
        log.append_blocking(0, payload_for(i, 300)).unwrap();
    }
    let rest: Vec<_> = reader.map(Result::unwrap).collect();
    assert_eq!(rest.len(), 60);
    assert_eq!(rest.last().unwrap().lsn, 61);
}

#[test]
fn inspect_and_dump_describe_a_healthy_log() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (log, _) = open(dir.path(), small_options());
        for i in 0..40u64 {
            log.append_blocking(3, payload_for(i, 250)).unwrap();
        }
        log.write_checkpoint(25, &"s").unwrap();
    }
    let report = inspect(dir.path()).unwrap();
    assert!(report.ok && report.opens_without_repair, "{report}");
    assert_eq!(
        (report.first_lsn, report.last_lsn, report.records),
        (Some(1), Some(40), 40)
    );
    assert!(
        report
            .segments
            .iter()
            .all(|s| s.status == SegmentStatus::Ok)
    );
    assert_eq!(
        report.latest_valid_checkpoint.as_ref().unwrap().covers_lsn,
        25
    );
    let text = report.to_string();
    assert!(
        text.contains("status: OK") && text.contains("covers LSN 25"),
        "{text}"
    );
    serde_json::to_string(&report).unwrap();
    let dumped: Vec<_> = dump(dir.path(), 30, 5)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        dumped.iter().map(|r| r.lsn).collect::<Vec<_>>(),
        vec![30, 31, 32, 33, 34]
    );
    assert_eq!(dumped[0].payload, payload_for(29, 250));
    assert_eq!(dump(dir.path(), 1, 1000).unwrap().count(), 40);
}

#[test]
fn log_is_send_sync_and_clone() {
    fn assert_send_sync_clone<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync_clone::<levee_log::Log>();
}

#[test]
fn an_acknowledged_append_is_already_covered_by_an_fsync() {
    // SIGKILL cannot tell "acknowledged after write" from "acknowledged after
    // fdatasync" (the page cache survives a process kill), so check the
    // watermark directly: in Always mode every returned LSN is synced.
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small_options());
    std::thread::scope(|scope| {
        for thread in 0..4u64 {
            let log = log.clone();
            scope.spawn(move || {
                for i in 0..50 {
                    let lsn = log
                        .append_blocking(0, payload_for(thread * 100 + i, 64))
                        .unwrap();
                    let synced = log.stats().synced_lsn;
                    assert!(
                        synced >= lsn,
                        "LSN {lsn} acknowledged but synced only through {synced}"
                    );
                }
            });
        }
    });
    assert!(log.stats().fsyncs >= 1);
}

#[test]
fn blocking_and_async_appenders_sync_calls_and_readers_mix_without_loss() {
    // Every path at once: blocking appenders that commit for each other,
    // async appenders served by the committer threads, `sync` calls, a
    // queue small enough to fill up, rotation through preallocated spares,
    // and a tailing reader. Every returned LSN must be synced already, and
    // everything must read back in order.
    let dir = tempfile::tempdir().unwrap();
    let options = LogOptions {
        segment_bytes_max: 16 << 10,
        pending_bytes_max: 4096,
        ..small_options()
    };
    let (log, _) = open(dir.path(), options);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let mut async_tasks = Vec::new();
    for task in 0..16u64 {
        let log = log.clone();
        async_tasks.push(runtime.spawn(async move {
            let mut lsns = Vec::new();
            for i in 0..40u64 {
                let lsn = log
                    .append(1, payload_for(task * 1000 + i, (i * 13 % 700) as usize))
                    .await
                    .unwrap();
                assert!(log.stats().synced_lsn >= lsn, "async LSN {lsn} not synced");
                lsns.push(lsn);
            }
            lsns
        }));
    }
    let mut all: Vec<u64> = std::thread::scope(|scope| {
        let blocking: Vec<_> = (0..8u64)
            .map(|thread| {
                let log = log.clone();
                scope.spawn(move || {
                    let mut lsns = Vec::new();
                    for i in 0..60u64 {
                        let size = (i * 29 % 900) as usize;
                        let lsn = log
                            .append_blocking(0, payload_for(100_000 + thread * 1000 + i, size))
                            .unwrap();
                        assert!(log.stats().synced_lsn >= lsn, "LSN {lsn} not synced");
                        if i % 20 == 0 {
                            assert!(log.sync().unwrap() >= lsn);
                        }
                        lsns.push(lsn);
                    }
                    lsns
                })
            })
            .collect();
        let tail = {
            let log = log.clone();
            scope.spawn(move || {
                let mut reader = log.read_from(1).unwrap();
                let mut seen = 0u64;
                let started = std::time::Instant::now();
                while seen < 1120 && started.elapsed() < std::time::Duration::from_secs(60) {
                    match reader.next() {
                        Some(record) => {
                            let record = record.unwrap();
                            seen += 1;
                            assert_eq!(record.lsn, seen);
                        }
                        None => std::thread::sleep(std::time::Duration::from_millis(1)),
                    }
                }
                seen
            })
        };
        let mut all: Vec<u64> = blocking
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        for task in async_tasks {
            all.extend(runtime.block_on(task).unwrap());
        }
        assert_eq!(
            tail.join().unwrap(),
            1120,
            "the tailing reader saw everything"
        );
        all
    });
    all.sort_unstable();
    assert_eq!(all, (1..=1120).collect::<Vec<_>>());
    let stats = log.stats();
    assert!(
        stats.segments.len() > 10,
        "rotated: {}",
        stats.segments.len()
    );
    let records = read_all(&log, 1);
    assert_eq!(records.len(), 1120);
    drop(log);
    // A clean close leaves only segments cut to their records, no spare.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.ends_with(".tmp"), "left behind: {name}");
    }
    let (log, report) = open(dir.path(), small_options());
    assert!(report.torn_tail.is_none());
    assert_eq!(report.last_lsn, 1120);
    assert_eq!(read_all(&log, 1).len(), 1120);
}

#[test]
fn full_segments_are_cut_to_their_records_and_spares_are_used() {
    // Segments are created preallocated (zeros to `segment_bytes_max`)
    // when a spare is ready; a sealed segment is cut to its records.
    let dir = tempfile::tempdir().unwrap();
    let segment_bytes_max = 64 << 10;
    let options = LogOptions {
        segment_bytes_max,
        ..small_options()
    };
    let (log, _) = open(dir.path(), options);
    let file_len = |path: &std::path::Path| std::fs::metadata(path).unwrap().len();
    let first = log.stats().segments[0].clone();
    assert_eq!(
        file_len(&first.path),
        segment_bytes_max,
        "the first segment is preallocated"
    );
    let mut preallocated_after_rotation = 0;
    for i in 0..600u64 {
        log.append_blocking(0, payload_for(i, 1000)).unwrap();
        let stats = log.stats();
        let active = stats.segments.last().unwrap();
        if active.records == 1 && file_len(&active.path) == segment_bytes_max {
            preallocated_after_rotation += 1;
        }
        if active.bytes > segment_bytes_max / 2 {
            // Give the spare thread time to zero-fill.
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
    let stats = log.stats();
    assert!(stats.segments.len() >= 9);
    for sealed in &stats.segments[..stats.segments.len() - 1] {
        assert_eq!(file_len(&sealed.path), sealed.bytes, "{sealed:?}");
    }
    assert!(
        preallocated_after_rotation > 0,
        "no rotation found a spare ready"
    );
    let last = stats.segments.last().unwrap().clone();
    drop(log);
    assert_eq!(file_len(&last.path), last.bytes, "cut at close");
    let (log, report) = open(dir.path(), small_options());
    assert_eq!(report.last_lsn, 600);
    assert_eq!(read_all(&log, 1).len(), 600);
}
