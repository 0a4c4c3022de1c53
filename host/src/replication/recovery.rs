//! Start-up recovery of the write path: hint cursors from the latest
//! checkpoint, backlogs from the records after them.
//!
//! After a restart (clean or SIGKILL) levee knows, per replica, only the
//! cursor the newest checkpoint recorded. Every record above it that
//! targets the replica may or may not have reached it (acks are not
//! logged: an ack lost in a crash costs one idempotent redelivery, while
//! logging every ack would cost an append per replica per write), so all of
//! them become the replica's backlog. One sequential pass over the log
//! (from the lowest cursor) measures each backlog, so the byte limit on
//! hints holds from the first second; the handoff then delivers them.
//!
//! The same pass rebuilds the lag index (`hints::keys`): every record
//! above a node's cursor is owed by it until redelivered, so reads of
//! those keys skip it meanwhile. The pass reads every record above the
//! lowest cursor, i.e. every record any node still owes: nothing owed goes
//! unindexed (past the index's bound the node is marked overflowed). It
//! also notes each record's version in the recent versions (a write in the
//! log is the newest its key will have once delivered): right after a
//! restart every replica of a recently written key may count as lagging,
//! and a read that then lands on one that lacks the write is caught as
//! stale instead of answered.
//!
//! A replica that was configured at the checkpoint but is not any more is
//! reported and forgotten (there is nowhere to deliver to); a configured
//! replica the checkpoint did not know starts at cursor 0, i.e. every record
//! in the log that targets it is redelivered.

use std::collections::BTreeMap;

use levee_log::{Log, LogError};

use super::hints::{HintCounters, HintLedger, Lsn, NodeRef, key_hash};
use super::recent::RecentVersions;
use super::record::{KIND_CLIENT_WRITE, WriteRecord};
use super::snapshot::{RecoverySummary, Snapshot, SnapshotError};
use crate::config::Config;

/// Why the write path could not recover.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("reading the latest checkpoint: {0}")]
    Checkpoint(#[source] LogError),
    #[error("the latest checkpoint cannot be used: {0}")]
    Snapshot(#[from] SnapshotError),
    #[error("reading the log back to size hint backlogs: {0}")]
    Scan(#[source] LogError),
}

/// Builds the hint ledger for `config` from what `log` holds.
#[cfg(test)] // the write path also notes the versions: `recover_with`
pub fn recover(log: &Log, config: &Config) -> Result<(HintLedger, RecoverySummary), RecoveryError> {
    recover_with(log, config, &RecentVersions::default())
}

/// Builds the hint ledger for `config` from what `log` holds, and notes in
/// `recent` the version of every write some replica may still lack.
pub fn recover_with(
    log: &Log,
    config: &Config,
    recent: &RecentVersions,
) -> Result<(HintLedger, RecoverySummary), RecoveryError> {
    let status = log.stats();
    let ledger = HintLedger::new(status.last_lsn);
    let mut summary = RecoverySummary::default();
    let snapshot = match log
        .latest_checkpoint::<Snapshot>()
        .map_err(RecoveryError::Checkpoint)?
    {
        Some((info, snapshot)) => {
            snapshot.check_version()?;
            summary.snapshot_covers_lsn = Some(info.covers_lsn);
            Some(snapshot)
        }
        None => None,
    };
    let mut known = snapshot.as_ref().map(Snapshot::cursors).unwrap_or_default();
    let mut cursors: BTreeMap<NodeRef, Lsn> = BTreeMap::new();
    for service in &config.services {
        for node in &service.nodes {
            let node = NodeRef::new(&service.name, &node.id);
            let (cursor, counters) = match known.remove(&node) {
                Some(entry) => {
                    summary.nodes_from_snapshot += 1;
                    entry
                }
                None => {
                    summary.nodes_new += 1;
                    (0, HintCounters::default())
                }
            };
            // A cursor past the log's end means the log was replaced: start over.
            let cursor = if cursor > status.last_lsn { 0 } else { cursor };
            ledger.recover_node(&node, cursor, counters);
            cursors.insert(node, cursor);
        }
    }
    summary.nodes_gone = known.keys().map(ToString::to_string).collect();
    if !summary.nodes_gone.is_empty() {
        tracing::warn!(nodes = ?summary.nodes_gone, "replicas in the checkpoint are no longer configured; their hints are forgotten");
        // Their keys are repaired from the replicas that have them.
        let gone = known.iter().map(|(node, (cursor, _))| (node, *cursor));
        super::repair::record_forgotten(log, &config.data_dir, gone);
    }
    let scan = Scan {
        ledger: &ledger,
        cursors: &cursors,
        recent,
    };
    size_backlogs(log, status.first_lsn, status.last_lsn, &scan, &mut summary)?;
    Ok((ledger, summary))
}

/// What the scan of the log fills in.
struct Scan<'a> {
    ledger: &'a HintLedger,
    cursors: &'a BTreeMap<NodeRef, Lsn>,
    recent: &'a RecentVersions,
}

/// Counts, per node, the records above its cursor that target it; indexes
/// their keys as owed by it (the lag index), and notes their versions.
fn size_backlogs(
    log: &Log,
    first_lsn: Lsn,
    last_lsn: Lsn,
    scan: &Scan<'_>,
    summary: &mut RecoverySummary,
) -> Result<(), RecoveryError> {
    let (ledger, cursors) = (scan.ledger, scan.cursors);
    let Some(lowest) = cursors.values().min().copied() else {
        return Ok(());
    };
    let from = (lowest + 1).max(first_lsn);
    let mut sizes: BTreeMap<&NodeRef, (u64, u64)> = BTreeMap::new();
    if from <= last_lsn {
        for entry in log.read_from(from).map_err(RecoveryError::Scan)? {
            let entry = entry.map_err(RecoveryError::Scan)?;
            summary.records_scanned += 1;
            if entry.kind != KIND_CLIENT_WRITE {
                continue;
            }
            // Undecodable records are reported by the handoff that meets them.
            let Ok(record) = WriteRecord::decode(entry.payload, entry.lsn) else {
                continue;
            };
            let header = &record.header;
            let deleted = header.method.eq_ignore_ascii_case("DELETE");
            scan.recent
                .note(&header.service, &header.key, header.version, deleted);
            let hash = key_hash(&record.header.service, &record.header.key);
            for target in &record.header.targets {
                let node = NodeRef::new(&record.header.service, target);
                if let Some((node, &cursor)) = cursors.get_key_value(&node)
                    && entry.lsn > cursor
                {
                    let size = sizes.entry(node).or_default();
                    size.0 += 1;
                    size.1 += record.body.len() as u64;
                    ledger.recover_key(node, entry.lsn, hash);
                }
            }
        }
    }
    for (node, (records, bytes)) in &sizes {
        ledger.set_backlog_size(node, *records, *bytes);
    }
    summary.nodes_with_backlog = sizes.len();
    Ok(())
}
