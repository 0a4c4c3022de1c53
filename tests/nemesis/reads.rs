//! The checks on the reads made during the run: each returned a value that
//! was written to that key (by a write that began before the read ended and
//! was not refused), or a 404 that some history explains (no acknowledged
//! PUT before the read, or a DELETE that may have applied in between).
//! Stale reads (an older value, or a 404, after a newer write was
//! acknowledged) fail the run when the service reads a quorum
//! (`read_quorum` 2 with N=3, W=2: any two replicas include one that
//! acknowledged the write). With one-replica reads they are counted and
//! shown as notes: the read-your-writes routing and the stale-answer
//! recheck make them rare, but while two of the three replicas are down
//! the survivor's answer is the only one there is.

use crate::check::{Findings, History};
use crate::history::{Outcome, ReadOp, ReadResult, Ver, WriteOp};

/// Figures about the reads.
#[derive(Debug, Default)]
pub struct ReadCounts {
    pub values: u64,
    pub not_found: u64,
    pub failed: u64,
    pub stale: u64,
}

pub fn check_reads(
    history: &History,
    reads: &[ReadOp],
    quorum_reads: bool,
    findings: &mut Findings,
) -> ReadCounts {
    let mut counts = ReadCounts::default();
    let stale = |findings: &mut Findings, key: &str, message: String| {
        if quorum_reads {
            findings.fail("stale read with quorum reads", key, message);
        } else {
            findings.note("stale read", key, message);
        }
    };
    for read in reads {
        match &read.result {
            ReadResult::Value { sha, version } => {
                counts.values += 1;
                let Some(write) = history
                    .by_sha
                    .get(sha.as_str())
                    .filter(|w| w.key == read.key)
                else {
                    findings.fail("read of a value never written", &read.key, read.to_string());
                    continue;
                };
                if !write.outcome.may_have_applied() {
                    findings.fail(
                        "read of a refused write",
                        &read.key,
                        format!("{read}; {write}"),
                    );
                }
                if write.start_us > read.end_us {
                    findings.fail(
                        "read of a write not yet begun",
                        &read.key,
                        format!("{read}; {write}"),
                    );
                }
                if let (Some(answered), Some(read_version)) = (write.version, version)
                    && answered != *read_version
                {
                    findings.fail(
                        "read version differs from the answered one",
                        &read.key,
                        format!("{read}; {write}"),
                    );
                }
                if let Some(newer) = newer_acked(history, read, write) {
                    counts.stale += 1;
                    let message = format!("{read} returned {write}; newer acked: {newer}");
                    stale(findings, &read.key, message);
                }
            }
            ReadResult::NotFound { version, tombstone } => {
                counts.not_found += 1;
                if let Some(put) = unexplained_404(history, read) {
                    counts.stale += 1;
                    let message = format!(
                        "{read}: 404 for a key with an acked PUT and no DELETE since: {put}"
                    );
                    stale(findings, &read.key, message);
                } else if let Some(put) = newer_than_tombstone(history, read, *version, *tombstone)
                {
                    counts.stale += 1;
                    let message = format!("{read}: a tombstone older than {put}");
                    stale(findings, &read.key, message);
                }
            }
            ReadResult::Failed(reason) => {
                counts.failed += 1;
                findings.note("read failed (not checked)", &read.key, reason.clone());
            }
        }
    }
    counts
}

/// An acked write of the key that completed before `read` began and is
/// newer than `returned` (by version when both are known, else by real time).
fn newer_acked<'a>(
    history: &History<'a>,
    read: &ReadOp,
    returned: &WriteOp,
) -> Option<&'a WriteOp> {
    history.acked(&read.key).find(|acked| {
        !std::ptr::eq(*acked, returned)
            && acked.end_us < read.start_us
            && match (acked.version, returned.version) {
                (Some(acked), Some(returned)) => acked > returned,
                _ => returned.end_us < acked.start_us,
            }
    })
}

/// An acked PUT completed before `read` began with no DELETE that may have
/// applied after it began and before the read ended.
fn unexplained_404<'a>(history: &History<'a>, read: &ReadOp) -> Option<&'a WriteOp> {
    let deletes = history.deletes(&read.key);
    history.acked(&read.key).find(|put| {
        !put.is_delete()
            && put.outcome == Outcome::Acked
            && put.end_us < read.start_us
            && !deletes
                .iter()
                .any(|d| d.end_us > put.start_us && d.start_us < read.end_us)
    })
}

/// An acked PUT completed before `read` began whose version is newer than
/// the tombstone the 404 reported.
fn newer_than_tombstone<'a>(
    history: &History<'a>,
    read: &ReadOp,
    version: Option<Ver>,
    tombstone: bool,
) -> Option<&'a WriteOp> {
    let held = version.filter(|_| tombstone)?;
    history.acked(&read.key).find(|put| {
        !put.is_delete() && put.end_us < read.start_us && put.version.is_some_and(|v| v > held)
    })
}
