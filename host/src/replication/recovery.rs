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
//! A replica that was configured at the checkpoint but is not any more is
//! reported and forgotten (there is nowhere to deliver to); a configured
//! replica the checkpoint did not know starts at cursor 0, i.e. every record
//! in the log that targets it is redelivered.

use std::collections::BTreeMap;

use levee_log::{Log, LogError};

use super::hints::{HintCounters, HintLedger, Lsn, NodeRef};
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
pub fn recover(log: &Log, config: &Config) -> Result<(HintLedger, RecoverySummary), RecoveryError> {
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
    }
    size_backlogs(
        log,
        status.first_lsn,
        status.last_lsn,
        &ledger,
        &cursors,
        &mut summary,
    )?;
    Ok((ledger, summary))
}

/// Counts, per node, the records above its cursor that target it.
fn size_backlogs(
    log: &Log,
    first_lsn: Lsn,
    last_lsn: Lsn,
    ledger: &HintLedger,
    cursors: &BTreeMap<NodeRef, Lsn>,
    summary: &mut RecoverySummary,
) -> Result<(), RecoveryError> {
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
            let Ok(record) = WriteRecord::decode(entry.payload) else {
                continue;
            };
            for target in &record.header.targets {
                let node = NodeRef::new(&record.header.service, target);
                if let Some((node, &cursor)) = cursors.get_key_value(&node)
                    && entry.lsn > cursor
                {
                    let size = sizes.entry(node).or_default();
                    size.0 += 1;
                    size.1 += record.body.len() as u64;
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
