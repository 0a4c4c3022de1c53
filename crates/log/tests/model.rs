//! Property test against a model: any sequence of appends (sizes from 0 to
//! the maximum), rotations (tiny segments), checkpoints, compactions and
//! reopens yields exactly the acknowledged records, in order, from the
//! checkpoint on. `PROPTEST_CASES` raises the number of cases.

mod common;

use common::{payload_for, read_all};
use levee_log::{Log, LogOptions, SyncMode};
use proptest::prelude::*;

const RECORD_BYTES_MAX: u32 = 1024;

fn options() -> LogOptions {
    LogOptions {
        segment_bytes_max: 2048,
        record_bytes_max: RECORD_BYTES_MAX,
        log_bytes_max: 64 << 20,
        sync: SyncMode::Always,
        repair: false,
        pending_bytes_max: 64 << 10,
        checkpoint_bytes_max: 1 << 20,
        checkpoints_kept: 2,
    }
}

#[derive(Clone, Debug)]
enum Op {
    Append {
        bytes: usize,
        kind: u8,
    },
    Checkpoint,
    /// Compact with the host needing LSNs from `first_lsn + hold_back` on.
    Compact {
        hold_back: u64,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let size = prop_oneof![
        Just(0usize),
        Just(RECORD_BYTES_MAX as usize),
        Just(RECORD_BYTES_MAX as usize - 1),
        0usize..64,
        0usize..=RECORD_BYTES_MAX as usize,
    ];
    prop_oneof![
        12 => (size, any::<u8>()).prop_map(|(bytes, kind)| Op::Append { bytes, kind }),
        2 => Just(Op::Checkpoint),
        2 => (0u64..30).prop_map(|hold_back| Op::Compact { hold_back }),
        1 => Just(Op::Reopen),
    ]
}

/// What the test knows was acknowledged.
#[derive(Default)]
struct Model {
    /// Index i holds LSN i + 1: (kind, payload seed, size).
    records: Vec<(u8, u64, usize)>,
    checkpoint: Option<u64>,
}

fn check(log: &Log, model: &Model) {
    let stats = log.stats();
    assert_eq!(stats.last_lsn, model.records.len() as u64);
    let (covers, state) = match log.latest_checkpoint::<u64>().unwrap() {
        Some((info, state)) => (Some(info.covers_lsn), Some(state)),
        None => (None, None),
    };
    assert_eq!(covers, model.checkpoint);
    assert_eq!(
        state, model.checkpoint,
        "checkpoint state is what was written"
    );
    // Compaction never deleted what the checkpoint needs.
    let replay_from = model.checkpoint.map_or(1, |c| c + 1);
    assert!(stats.first_lsn <= replay_from);
    for from in [replay_from, stats.first_lsn] {
        let records = read_all(log, from);
        let expected = &model.records[(from - 1) as usize..];
        assert_eq!(records.len(), expected.len());
        for (record, &(kind, seed, size)) in records.iter().zip(expected) {
            assert_eq!(record.kind, kind);
            assert_eq!(
                record.payload,
                payload_for(seed, size),
                "LSN {}",
                record.lsn
            );
        }
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn recovery_yields_exactly_the_acknowledged_records(ops in prop::collection::vec(op(), 1..48)) {
        let dir = tempfile::tempdir().unwrap();
        let mut model = Model::default();
        let (mut log, _) = Log::open(dir.path(), options()).unwrap();
        for (step, op) in ops.iter().enumerate() {
            match *op {
                Op::Append { bytes, kind } => {
                    let seed = step as u64 * 7919 + bytes as u64;
                    let lsn = log.append_blocking(kind, payload_for(seed, bytes)).unwrap();
                    model.records.push((kind, seed, bytes));
                    prop_assert_eq!(lsn, model.records.len() as u64);
                }
                Op::Checkpoint => {
                    let covers = model.records.len() as u64;
                    log.write_checkpoint(covers, &covers).unwrap();
                    model.checkpoint = Some(covers);
                }
                Op::Compact { hold_back } => {
                    let needed = log.stats().first_lsn + hold_back;
                    let before = log.reclaimable_bytes(needed);
                    let report = log.compact(needed).unwrap();
                    prop_assert_eq!(report.bytes_freed, before);
                    // Nothing the host or the checkpoint needs was deleted.
                    let replay_from = model.checkpoint.map_or(1, |c| c + 1);
                    prop_assert!(report.first_lsn <= needed.min(replay_from));
                    check(&log, &model);
                }
                Op::Reopen => {
                    drop(log);
                    let (reopened, report) = Log::open(dir.path(), options()).unwrap();
                    prop_assert!(report.torn_tail.is_none() && report.repair.is_none());
                    prop_assert_eq!(report.last_lsn, model.records.len() as u64);
                    prop_assert_eq!(report.checkpoint.map(|c| c.covers_lsn), model.checkpoint);
                    log = reopened;
                    check(&log, &model);
                }
            }
        }
        drop(log);
        let (log, _) = Log::open(dir.path(), options()).unwrap();
        check(&log, &model);
    }
}
