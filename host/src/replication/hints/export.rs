//! What leaves the ledger and what comes back: the consistent copy a
//! checkpoint persists ([`HintLedger::export`]), the state operators see
//! ([`HintLedger::stats`]), and start-up recovery of each node from the
//! latest checkpoint ([`HintLedger::recover_node`]).

use std::collections::BTreeMap;

use serde::Serialize;

use super::counters::HintCounters;
use super::node::NodeLedger;
use super::{HintLedger, KeyHash, Lsn, NodeRef};

/// A node's hint state as shown to operators (admin API, status page).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeHintStats {
    pub service: String,
    pub node: String,
    pub cursor: Lsn,
    /// LSN the handoff reads from next; `None` when up to date.
    pub backlog_from: Option<Lsn>,
    pub backlog_records: u64,
    pub backlog_bytes: u64,
    pub inflight: usize,
    /// Writes the node still owes in the lag index (reads of their keys
    /// skip it).
    pub lag_writes: usize,
    /// Over the lag index's bound: every read skips the node until its
    /// cursor catches up.
    pub lag_overflowed: bool,
    #[serde(flatten)]
    pub counters: HintCounters,
    pub dropped_records: u64,
}

/// A consistent copy of what checkpoints persist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerExport {
    /// Every LSN up to here is registered, so the cursors below are final for
    /// the records up to here: the checkpoint covers it.
    pub registered_through: Lsn,
    pub cursors: BTreeMap<NodeRef, Lsn>,
    pub counters: BTreeMap<NodeRef, HintCounters>,
}

impl HintLedger {
    /// Declares a node at start-up with the cursor from the latest checkpoint
    /// (0 if none) and its counters. If the log holds records above the
    /// cursor, the node has a backlog to read back: after a restart levee
    /// cannot know which of them the node acknowledged, so it redelivers
    /// them (idempotently).
    pub fn recover_node(&self, node: &NodeRef, cursor: Lsn, counters: HintCounters) {
        let mut inner = self.lock();
        let last_lsn = inner.registered_through;
        let ledger = inner
            .nodes
            .entry(node.clone())
            .or_insert_with(|| NodeLedger::new(cursor));
        ledger.cursor = ledger.cursor.min(cursor);
        ledger.counters = counters;
        if last_lsn > cursor {
            ledger.open_backlog_at(cursor + 1);
            ledger.highest_missed = last_lsn;
        }
    }

    /// At start-up: `node` may owe record `lsn`, a write to the key whose
    /// hash is `hash` (see `keys`): after a restart every record above the
    /// node's cursor is owed, as it is redelivered.
    pub fn recover_key(&self, node: &NodeRef, lsn: Lsn, hash: KeyHash) {
        let mut inner = self.lock();
        if inner
            .nodes
            .get(node)
            .is_some_and(|ledger| lsn > ledger.cursor)
        {
            inner.lag.owe(node, lsn, hash);
        }
    }

    /// Sets a recovered node's backlog size, as measured by reading it back.
    pub fn set_backlog_size(&self, node: &NodeRef, records: u64, bytes: u64) {
        let mut inner = self.lock();
        let ledger = inner.node_mut(node);
        ledger.backlog_records = records;
        ledger.backlog_bytes = bytes;
    }

    /// The lowest LSN some node still needs from the log (`cursor + 1`
    /// minimised over nodes); `None` when there are no nodes.
    pub fn oldest_needed_lsn(&self) -> Option<Lsn> {
        self.lock()
            .nodes
            .values()
            .map(|ledger| ledger.cursor + 1)
            .min()
    }

    /// A consistent copy of cursors and counters for a checkpoint.
    pub fn export(&self) -> LedgerExport {
        let inner = self.lock();
        LedgerExport {
            registered_through: inner.registered_through,
            cursors: inner
                .nodes
                .iter()
                .map(|(node, l)| (node.clone(), l.cursor))
                .collect(),
            counters: inner
                .nodes
                .iter()
                .map(|(node, l)| (node.clone(), l.counters))
                .collect(),
        }
    }

    /// Every node's hint state, for operators.
    pub fn stats(&self) -> Vec<NodeHintStats> {
        let inner = self.lock();
        inner
            .nodes
            .iter()
            .map(|(node, ledger)| (node, ledger, inner.lag.node_state(node)))
            .map(
                |(node, ledger, (lag_overflowed, lag_writes))| NodeHintStats {
                    service: node.service.clone(),
                    node: node.node.clone(),
                    cursor: ledger.cursor,
                    backlog_from: ledger.backlog_from,
                    backlog_records: ledger.backlog_records,
                    backlog_bytes: ledger.backlog_bytes,
                    inflight: ledger.inflight.len(),
                    lag_writes,
                    lag_overflowed,
                    counters: ledger.counters,
                    dropped_records: ledger.counters.dropped_records(),
                },
            )
            .collect()
    }

    /// The node's counters.
    #[cfg(test)] // only tests ask
    pub fn counters(&self, node: &NodeRef) -> HintCounters {
        self.lock()
            .nodes
            .get(node)
            .map(|ledger| ledger.counters)
            .unwrap_or_default()
    }
}
