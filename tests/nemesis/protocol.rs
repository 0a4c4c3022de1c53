//! Checks on what levee answered, independent of the replicas: every ack
//! carries its version, every failure says what became of the write
//! (`x-levee-outcome`), a superseded answer names a newer held version, no
//! version is issued twice, and versions follow real time (a write that
//! completed before another began has the smaller version, across levee
//! restarts too: the clock's persisted mark).

use std::collections::HashMap;

use crate::check::Findings;
use crate::history::{Outcome, Ver, WriteOp};

pub fn check_answers(writes: &[WriteOp], findings: &mut Findings) {
    for write in writes {
        let key = write.key.as_str();
        if write.outcome == Outcome::Acked && write.version.is_none() {
            findings.fail("acked without x-levee-version", key, write.to_string());
        }
        if write.unlabeled {
            findings.fail(
                "failure answer without x-levee-outcome",
                key,
                write.to_string(),
            );
        }
        if write.outcome == Outcome::Superseded
            && !matches!((write.version, write.held), (Some(v), Some(h)) if h > v)
        {
            let held = write.held.map_or("-".into(), |h| h.to_string());
            findings.fail(
                "superseded answer without a newer x-levee-held-version",
                key,
                format!("held {held}; {write}"),
            );
        }
    }
    check_versions_unique(writes, findings);
    check_versions_follow_real_time(writes, findings);
}

fn check_versions_unique(writes: &[WriteOp], findings: &mut Findings) {
    let mut seen: HashMap<Ver, &WriteOp> = HashMap::new();
    for write in writes {
        let Some(version) = write.version else {
            continue;
        };
        if let Some(first) = seen.insert(version, write) {
            findings.fail(
                "version issued twice",
                &write.key,
                format!("{version}: {first} and {write}"),
            );
        }
    }
}

/// Sweeps the writes by start time, keeping the largest version of those
/// that completed before it.
fn check_versions_follow_real_time(writes: &[WriteOp], findings: &mut Findings) {
    let mut by_end: Vec<&WriteOp> = writes.iter().filter(|w| w.version.is_some()).collect();
    let mut by_start = by_end.clone();
    by_end.sort_by_key(|w| w.end_us);
    by_start.sort_by_key(|w| w.start_us);
    let mut ended = by_end.into_iter().peekable();
    let mut newest: Option<&WriteOp> = None;
    for write in by_start {
        while let Some(done) = ended.next_if(|done| done.end_us < write.start_us) {
            if newest.is_none_or(|n| n.version < done.version) {
                newest = Some(done);
            }
        }
        if let Some(earlier) = newest
            && earlier.version >= write.version
        {
            findings.fail(
                "version older than a write completed before it began",
                &write.key,
                format!("{write}; completed earlier: {earlier}"),
            );
        }
    }
}
