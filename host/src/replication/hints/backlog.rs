//! The handoff's side of the ledger: where a node's walk reads from, what
//! to do with each record ([`HintLedger::judge`]), what became of it
//! ([`HintLedger::passed`]), and when the backlog ends
//! ([`HintLedger::caught_up`]).

use std::sync::Arc;

use tokio::sync::Notify;

use super::{HintLedger, Judgement, Lsn, NodeRef, Passed};

impl HintLedger {
    /// The log no longer holds the backlog head (something compacted or
    /// deleted it): the node's walk resumes at the oldest record stored.
    /// Whatever was below is lost for this node, and said so loudly.
    pub fn skip_compacted(&self, node: &NodeRef, first_available: Lsn) {
        let mut inner = self.lock();
        let registered_through = inner.registered_through;
        let ledger = inner.node_mut(node);
        let Some(from) = ledger.backlog_from.filter(|&from| from < first_available) else {
            return;
        };
        tracing::error!(%node, from, first_available, "hints below the oldest stored log record are lost");
        ledger.backlog_from = Some(first_available);
        ledger.advance_cursor(registered_through);
        ledger.signal.notify_one();
        inner.settle_through_cursor(node);
    }

    /// Where the node's handoff reads next, if it has a backlog.
    pub fn backlog_from(&self, node: &NodeRef) -> Option<Lsn> {
        self.lock()
            .nodes
            .get(node)
            .and_then(|ledger| ledger.backlog_from)
    }

    /// The node's undelivered hint bytes (as far as known).
    pub fn backlog_bytes(&self, node: &NodeRef) -> u64 {
        self.lock()
            .nodes
            .get(node)
            .map_or(0, |ledger| ledger.backlog_bytes)
    }

    /// What to do with record `lsn`, which targets `node`.
    pub fn judge(&self, node: &NodeRef, lsn: Lsn) -> Judgement {
        let inner = self.lock();
        if !inner.is_registered(lsn) {
            return Judgement::Unregistered;
        }
        let Some(ledger) = inner.nodes.get(node) else {
            return Judgement::Deliver;
        };
        if ledger.inflight.contains(&lsn) {
            Judgement::InFlight
        } else if ledger.done_ahead.contains(&lsn) || lsn <= ledger.cursor {
            Judgement::AlreadyDone
        } else {
            Judgement::Deliver
        }
    }

    /// The node's handoff has dealt with record `lsn` (the one at the head of
    /// its backlog). Returns false, changing nothing, if the backlog head is
    /// not `lsn` any more (a gap moved it back): the handoff must re-read
    /// from [`HintLedger::backlog_from`].
    pub fn passed(&self, node: &NodeRef, lsn: Lsn, what: Passed) -> bool {
        let mut inner = self.lock();
        let registered_through = inner.registered_through;
        let ledger = inner.node_mut(node);
        if ledger.backlog_from != Some(lsn) {
            return false;
        }
        match what {
            Passed::NotTargeted | Passed::AlreadyDone => {}
            Passed::Delivered { bytes } => {
                ledger.counters.delivered_records += 1;
                ledger.counters.delivered_bytes += bytes;
                ledger.backlog_records = ledger.backlog_records.saturating_sub(1);
                ledger.backlog_bytes = ledger.backlog_bytes.saturating_sub(bytes);
            }
            Passed::Dropped { reason, bytes } => {
                ledger.counters.count_drop(reason, bytes);
                ledger.backlog_records = ledger.backlog_records.saturating_sub(1);
                ledger.backlog_bytes = ledger.backlog_bytes.saturating_sub(bytes);
            }
        }
        if matches!(what, Passed::Delivered { .. } | Passed::Dropped { .. }) {
            // A lower LSN may still be in flight (the cursor stays below it)
            // and, if it misses, send the walk back over this record.
            ledger.remember_done(lsn);
        }
        ledger.backlog_from = Some(lsn + 1);
        ledger.advance_cursor(registered_through);
        // Whatever became of it, the walk is past it: delivered, dropped,
        // or already settled (acked, superseded) for this node.
        if what != Passed::NotTargeted {
            inner.lag.settle(node, lsn);
        }
        inner.settle_through_cursor(node);
        true
    }

    /// The node's handoff found no record at `next_lsn` (the end of the log).
    /// Ends the backlog unless a miss at or after `next_lsn` arrived in the
    /// meantime. Returns true if the node is now up to date.
    pub fn caught_up(&self, node: &NodeRef, next_lsn: Lsn) -> bool {
        let mut inner = self.lock();
        let registered_through = inner.registered_through;
        let ledger = inner.node_mut(node);
        if ledger.backlog_from != Some(next_lsn) || ledger.highest_missed >= next_lsn {
            return ledger.backlog_from.is_none();
        }
        ledger.backlog_from = None;
        // Whatever the counters still say is drift (a restart counted records
        // the node had in fact acknowledged): the walk is the truth.
        ledger.backlog_records = 0;
        ledger.backlog_bytes = 0;
        ledger.advance_cursor(registered_through);
        inner.settle_through_cursor(node);
        true
    }

    /// Notified whenever the node's facts change (a miss, an ack, a
    /// registration that concerns it); a handoff waits on it.
    pub fn signal(&self, node: &NodeRef) -> Arc<Notify> {
        self.lock().node_mut(node).signal.clone()
    }
}
