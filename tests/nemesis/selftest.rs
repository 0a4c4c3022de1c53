//! The checker checked: synthetic histories and dumps for which the
//! nemesis checks must (and must not) report, so a green nemesis run means
//! the checks looked, not that they were blind.

use serde_json::{Value, json};

use crate::check::{Findings, History, check_replicas};
use crate::history::{Outcome, ReadOp, ReadResult, Ver, WriteOp, sha256_hex};
use crate::reads::check_reads;

fn ver(ms: u64) -> Ver {
    Ver {
        physical_ms: ms,
        logical: 0,
        instance: 1,
    }
}

/// A write of `value` (`None`: DELETE) to `k` during `[start, end]` seconds.
fn write(
    seq: u64,
    value: Option<&str>,
    span: (u64, u64),
    outcome: Outcome,
    version: Option<u64>,
) -> WriteOp {
    WriteOp {
        writer: 0,
        seq,
        key: "k".into(),
        value: value.map(str::to_owned),
        sha: value.map(|v| sha256_hex(v.as_bytes())),
        start_us: span.0 * 1_000_000,
        end_us: span.1 * 1_000_000,
        outcome,
        status: None,
        version: version.map(ver),
        held: None,
        unlabeled: false,
        detail: String::new(),
    }
}

/// A dump holding `value` at `version` for `k` (or nothing).
fn dump(value: Option<&str>, version: Option<u64>) -> Option<Value> {
    let mut keys = json!({});
    if let Some(value) = value {
        let mut entry = json!({"sha256": sha256_hex(value.as_bytes()), "bytes": value.len()});
        if let Some(version) = version {
            entry["version"] = json!(ver(version).to_string());
        }
        keys["k"] = entry;
    }
    Some(json!({"keys": keys, "tombstones": {}}))
}

fn failures(writes: &[WriteOp], dumps: &[Option<Value>]) -> Vec<&'static str> {
    let history = History::new(writes);
    let mut findings = Findings::default();
    check_replicas(&history, dumps, &mut findings);
    findings.failures.keys().copied().collect()
}

#[test]
fn an_acked_write_rolled_back_to_an_older_version_is_reported() {
    let writes = [
        write(0, Some("a"), (0, 1), Outcome::Acked, Some(10)),
        write(1, Some("b"), (2, 3), Outcome::Acked, Some(20)),
    ];
    let held = dump(Some("a"), Some(10));
    assert_eq!(
        failures(&writes, &[held.clone(), held.clone(), held]),
        ["acknowledged write lost"]
    );
}

#[test]
fn an_acked_write_superseded_by_a_later_unknown_one_is_fine() {
    let writes = [
        write(0, Some("a"), (0, 1), Outcome::Acked, Some(10)),
        write(1, Some("b"), (2, 3), Outcome::Unknown, None),
    ];
    let held = dump(Some("b"), Some(20));
    assert!(failures(&writes, &[held.clone(), held.clone(), held]).is_empty());
}

#[test]
fn without_versions_real_time_order_still_catches_a_lost_write() {
    let writes = [
        write(0, Some("a"), (0, 1), Outcome::Acked, None),
        write(1, Some("b"), (2, 3), Outcome::Acked, None),
    ];
    let held = dump(Some("a"), None);
    assert_eq!(
        failures(&writes, &[held.clone(), held.clone(), held]),
        ["acknowledged write lost"]
    );
}

#[test]
fn unwritten_refused_and_diverging_values_are_reported() {
    let writes = [
        write(0, Some("a"), (0, 1), Outcome::Refused, None),
        write(1, Some("b"), (0, 1), Outcome::Unknown, None),
    ];
    let refused = dump(Some("a"), None);
    assert_eq!(
        failures(&writes, &[refused.clone(), refused.clone(), refused]),
        ["refused write present"]
    );
    let strange = dump(Some("never"), None);
    assert_eq!(
        failures(&writes, &[strange.clone(), strange.clone(), strange]),
        ["value never written"]
    );
    let (b, absent) = (dump(Some("b"), None), dump(None, None));
    assert_eq!(
        failures(&writes, &[b.clone(), b, absent]),
        ["replicas disagree"]
    );
}

#[test]
fn an_acked_key_absent_everywhere_is_a_lost_write() {
    let writes = [write(0, Some("a"), (0, 1), Outcome::Acked, Some(10))];
    let absent = dump(None, None);
    assert_eq!(
        failures(&writes, &[absent.clone(), absent.clone(), absent]),
        ["acknowledged write lost"]
    );
}

#[test]
fn a_404_after_an_acked_put_needs_a_delete_in_between() {
    let read = |start: u64| ReadOp {
        reader: 0,
        key: "k".into(),
        start_us: start * 1_000_000,
        end_us: (start + 1) * 1_000_000,
        result: ReadResult::NotFound {
            version: None,
            tombstone: false,
        },
        detail: String::new(),
    };
    let put = write(0, Some("a"), (0, 1), Outcome::Acked, Some(10));
    let delete = write(1, None, (3, 4), Outcome::Unknown, None);
    let check = |writes: &[WriteOp], reads: &[ReadOp]| {
        let history = History::new(writes);
        let mut findings = Findings::default();
        check_reads(&history, reads, true, &mut findings);
        findings.failures.keys().copied().collect::<Vec<_>>()
    };
    assert_eq!(
        check(std::slice::from_ref(&put), &[read(2)]),
        ["stale read with quorum reads"]
    );
    let history = History::new(std::slice::from_ref(&put));
    let mut findings = Findings::default();
    check_reads(&history, &[read(2)], false, &mut findings);
    assert!(findings.failures.is_empty(), "one-replica reads: a note");
    assert_eq!(
        findings.notes.keys().copied().collect::<Vec<_>>(),
        ["stale read"]
    );
    assert!(check(&[put.clone(), delete.clone()], &[read(5)]).is_empty());
    assert!(check(&[put], &[]).is_empty());
}

#[test]
fn reused_and_backward_versions_are_reported() {
    let check = |writes: &[WriteOp]| {
        let mut findings = Findings::default();
        crate::protocol::check_answers(writes, &mut findings);
        findings.failures.keys().copied().collect::<Vec<_>>()
    };
    let first = write(0, Some("a"), (0, 1), Outcome::Acked, Some(10));
    let later = |version| write(1, Some("b"), (2, 3), Outcome::Acked, Some(version));
    assert!(check(&[first.clone(), later(20)]).is_empty());
    assert_eq!(
        check(&[first.clone(), later(5)]),
        ["version older than a write completed before it began"]
    );
    assert_eq!(
        check(&[first, later(10)]),
        [
            "version issued twice",
            "version older than a write completed before it began"
        ]
    );
}
