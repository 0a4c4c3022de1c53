//! The repair set's bounds, persistence and bookkeeping.

use levee_log::Log;

use super::*;
use crate::replication::hints::NodeRef;
use crate::replication::record::{KIND_CLIENT_WRITE, WriteRecord};

fn header(n: usize) -> WriteHeader {
    WriteHeader {
        service: "kv".into(),
        method: "PUT".into(),
        path: format!("/kv/k{n}"),
        key: format!("k{n}"),
        targets: vec!["a".into(), "b".into()],
        headers: vec![],
        request_id: String::new(),
        accepted_unix_ms: 1,
        version: levee_version::Version::legacy(1, n as u64 + 1),
    }
}

#[tokio::test]
async fn dropped_keys_survive_a_reopen_until_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let repairs = Repairs::open(dir.path()).unwrap();
    for n in 0..3 {
        repairs.record_dropped(&header(n)).await;
    }
    repairs.record_dropped(&header(1)).await; // known: no second entry
    repairs.request("kv", "q", "/kv/q");
    assert_eq!(repairs.status().durable_keys, 3);
    assert_eq!(repairs.pending(), 4);
    drop(repairs);

    let repairs = Repairs::open(dir.path()).unwrap();
    let status = repairs.status();
    assert_eq!(
        (status.durable_keys, status.queued_keys),
        (3, 0),
        "the queue is not durable"
    );
    let taken = repairs.take_due(clock::now_ms(), 10);
    assert_eq!(taken.len(), 3);
    for taken in taken {
        repairs.finish(taken, Finish::Done).await;
    }
    assert_eq!(repairs.pending(), 0);
    assert_eq!(repairs.status().repaired_total, 3);
    drop(repairs);
    assert_eq!(Repairs::open(dir.path()).unwrap().pending(), 0);
}

#[tokio::test]
async fn reads_know_a_dropped_key_awaits_repair_until_it_is_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let repairs = Repairs::open(dir.path()).unwrap();
    assert!(!repairs.awaits("kv", "k0"));
    repairs.record_dropped(&header(0)).await;
    repairs.request("kv", "q", "/kv/q");
    assert!(repairs.awaits("kv", "k0"));
    assert!(!repairs.awaits("kv", "k1"));
    assert!(!repairs.awaits("other", "k0"));
    assert!(
        !repairs.awaits("kv", "q"),
        "a queued key was answered fresh by the read that queued it"
    );
    drop(repairs);

    let repairs = Repairs::open(dir.path()).unwrap();
    assert!(repairs.awaits("kv", "k0"), "known again after a restart");
    for taken in repairs.take_due(clock::now_ms(), 10) {
        assert!(
            repairs.awaits("kv", "k0"),
            "still owed while being repaired"
        );
        repairs.finish(taken, Finish::Done).await;
    }
    assert!(!repairs.awaits("kv", "k0"));
}

#[tokio::test]
async fn the_set_is_bounded_and_counts_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let repairs = Repairs::open_bounded(dir.path(), 2, 2).unwrap();
    for n in 0..4 {
        repairs.record_dropped(&header(n)).await;
    }
    for n in 0..4 {
        repairs.request("kv", &format!("q{n}"), &format!("/kv/q{n}"));
    }
    let status = repairs.status();
    assert_eq!((status.durable_keys, status.overflow_total), (2, 2));
    assert_eq!((status.queued_keys, status.queue_dropped_total), (2, 2));
    assert_eq!(status.keys_pending, 4);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

#[tokio::test]
async fn a_failed_repair_is_retried_after_a_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let repairs = Repairs::open(dir.path()).unwrap();
    repairs.record_dropped(&header(0)).await;
    repairs.request("kv", "q", "/kv/q");
    let now_ms = clock::now_ms();
    let taken = repairs.take_due(now_ms, 10);
    assert_eq!(taken.len(), 2, "durable first, then queued");
    assert_eq!(taken[0].key().key, "k0");
    for taken in taken {
        repairs.finish(taken, Finish::Retry).await;
    }
    assert_eq!(repairs.pending(), 2, "both kept");
    assert!(repairs.take_due(now_ms, 10).is_empty(), "not due yet");
    let later_ms = clock::now_ms() + REPAIR_BACKOFF_MS_MIN;
    assert_eq!(repairs.take_due(later_ms, 10).len(), 2);
    assert_eq!(repairs.status().failed_total, 2);
}

#[tokio::test]
async fn a_key_dropped_again_during_a_pass_is_not_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let repairs = Repairs::open(dir.path()).unwrap();
    repairs.record_dropped(&header(0)).await;
    let taken = repairs.take_due(clock::now_ms(), 10);
    repairs.record_dropped(&header(0)).await; // a newer write's hint dropped
    for taken in taken {
        repairs.finish(taken, Finish::Done).await;
    }
    assert_eq!(repairs.status().durable_keys, 1);
    assert_eq!(
        repairs.take_due(clock::now_ms(), 10).len(),
        1,
        "due again at once"
    );
}

#[tokio::test]
async fn takes_go_round_the_set() {
    let dir = tempfile::tempdir().unwrap();
    let repairs = Repairs::open(dir.path()).unwrap();
    for n in 0..5 {
        repairs.record_dropped(&header(n)).await;
    }
    let now_ms = clock::now_ms();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..3 {
        for taken in repairs.take_due(now_ms, 2) {
            seen.insert(taken.key().key.clone());
        }
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
}

#[test]
fn forgotten_hints_are_recorded_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(&dir.path().join("log"), Default::default()).unwrap();
    let mut lsns = Vec::new();
    for n in 0..4 {
        let mut header = header(n);
        if n == 3 {
            header.targets = vec!["a".into()]; // not for the gone node
        }
        let record = WriteRecord {
            header,
            body: bytes::Bytes::from_static(b"v"),
        };
        lsns.push(
            log.append_blocking(KIND_CLIENT_WRITE, record.encode().unwrap())
                .unwrap(),
        );
    }
    let gone = NodeRef::new("kv", "b");
    // b had everything up to the first record.
    record_forgotten(&log, dir.path(), [(&gone, lsns[0])]);
    let repairs = Repairs::open(&repair_dir(dir.path())).unwrap();
    let mut keys: Vec<String> = repairs
        .take_due(clock::now_ms(), 10)
        .into_iter()
        .map(|taken| taken.key().key.clone())
        .collect();
    keys.sort();
    assert_eq!(keys, ["k1", "k2"]);
}
