//! The fan-out's side of the ledger: an append ticket per client write,
//! then the registration of its LSN and targets, then each target's ack,
//! miss or rejection. And the supervisor's [`HintLedger::close_gaps`] for
//! LSNs whose append failed (see "Registration" in the [`super`] doc).

use super::counters::DropReason;
use super::node::NodeLedger;
use super::{HintLedger, Lsn, NodeRef};

/// Proof that an append is in progress, so [`HintLedger::close_gaps`] does
/// not mistake its LSN for a lost one. Register the LSN with it, or drop it
/// if the append failed.
#[must_use = "register the appended LSN, or drop the ticket if the append failed"]
pub struct AppendTicket<'a> {
    ledger: &'a HintLedger,
    id: u64,
    done: bool,
}

/// The log's last durable LSN, read before the mark was taken, and the
/// first ticket begun after it: a ticket begun later gets a later LSN, so
/// once every older ticket has ended, no LSN up to `last_lsn` can still be
/// registered (see [`HintLedger::close_gaps`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GapMark {
    last_lsn: Lsn,
    first_later_ticket: u64,
}

impl AppendTicket<'_> {
    /// Registers a successfully appended record and the nodes it is about to
    /// be sent to (all of them in flight), for a record without a key (an
    /// admin change; tests).
    pub fn register(self, lsn: Lsn, targets: &[NodeRef]) {
        self.register_inner(lsn, None, targets);
    }

    /// Registers a client write to `key` (its routing key) like
    /// [`AppendTicket::register`]; every target owes the key in the lag
    /// index until it settles the write.
    pub fn register_write(self, lsn: Lsn, key: &str, targets: &[NodeRef]) {
        let hash = targets
            .first()
            .map(|target| super::key_hash(&target.service, key));
        self.register_inner(lsn, hash, targets);
    }

    fn register_inner(mut self, lsn: Lsn, hash: Option<super::KeyHash>, targets: &[NodeRef]) {
        self.done = true;
        let mut inner = self.ledger.lock();
        debug_assert!(!inner.is_registered(lsn), "LSN {lsn} registered twice");
        inner.tickets_in_progress.remove(&self.id);
        if lsn <= inner.registered_through {
            // close_gaps already declared it unknown; its targets' handoffs
            // will read it back. Only reachable if the log misreported.
            return;
        }
        // In flight first: a node first seen here starts at the cursor the
        // registration had before this LSN.
        for target in targets {
            inner.node_mut(target).inflight.insert(lsn);
            if let Some(hash) = hash {
                inner.lag.owe(target, lsn, hash);
            }
        }
        inner.registered_ahead.insert(lsn);
        while inner.registered_ahead.first() == Some(&(inner.registered_through + 1)) {
            inner.registered_ahead.pop_first();
            inner.registered_through += 1;
        }
        let registered_through = inner.registered_through;
        let super::Inner { nodes, lag, .. } = &mut *inner;
        for (node, ledger) in nodes.iter_mut() {
            ledger.advance_cursor(registered_through);
            lag.settle_through(node, ledger.cursor);
        }
        for target in targets {
            inner.nodes[target].signal.notify_one();
        }
    }
}

impl Drop for AppendTicket<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.ledger.lock().tickets_in_progress.remove(&self.id);
        }
    }
}

impl HintLedger {
    /// Call before appending a client write.
    pub fn begin_append(&self) -> AppendTicket<'_> {
        let mut inner = self.lock();
        let id = inner.next_ticket;
        inner.next_ticket += 1;
        inner.tickets_in_progress.insert(id);
        AppendTicket {
            ledger: self,
            id,
            done: false,
        }
    }

    /// Marks the gap up to `last_lsn`, the log's last durable LSN, which the
    /// caller must have read *before* this call.
    pub fn gap_mark(&self, last_lsn: Lsn) -> GapMark {
        GapMark {
            last_lsn,
            first_later_ticket: self.lock().next_ticket,
        }
    }

    /// The node acknowledged LSN `lsn` directly, or answered that it holds
    /// a newer version of the key (superseded: nothing to deliver, as final
    /// for the cursor and the lag index as an ack).
    pub fn acked(&self, node: &NodeRef, lsn: Lsn) {
        let mut inner = self.lock();
        let registered_through = inner.registered_through;
        let ledger = inner.node_mut(node);
        take_inflight(ledger, node, lsn, "ack");
        finish(ledger, lsn, registered_through);
        inner.lag.settle(node, lsn);
        inner.settle_through_cursor(node);
    }

    /// The node did not acknowledge LSN `lsn` (of `bytes` body bytes): it is
    /// now a hint, to be read back from the log by the node's handoff.
    pub fn missed(&self, node: &NodeRef, lsn: Lsn, bytes: u64) {
        let mut inner = self.lock();
        let ledger = inner.node_mut(node);
        take_inflight(ledger, node, lsn, "miss");
        ledger.open_backlog_at(lsn);
        ledger.backlog_records += 1;
        ledger.backlog_bytes += bytes;
        ledger.signal.notify_one();
    }

    /// The node refused LSN `lsn` for good (a definitive 4xx): sending it
    /// again cannot help, so it is not a hint; it is counted as dropped.
    pub fn rejected(&self, node: &NodeRef, lsn: Lsn, bytes: u64) {
        let mut inner = self.lock();
        let registered_through = inner.registered_through;
        let ledger = inner.node_mut(node);
        take_inflight(ledger, node, lsn, "rejection");
        ledger.counters.count_drop(DropReason::Rejected, bytes);
        // For the cursor a rejection is as final as an ack; the replica
        // lacks the write, which stale-read detection and repair handle.
        finish(ledger, lsn, registered_through);
        inner.lag.settle(node, lsn);
        inner.settle_through_cursor(node);
    }

    /// Declares lost every LSN up to the mark's `last_lsn` that no append
    /// can still register, once every ticket begun before the mark has
    /// ended (`None`: not yet, try the same mark again later). Every node's
    /// handoff then reads those records back from the log. Returns how many
    /// LSNs were closed this way.
    pub fn close_gaps(&self, mark: GapMark) -> Option<u64> {
        let mut inner = self.lock();
        let oldest = inner.tickets_in_progress.first().copied();
        if oldest.is_some_and(|ticket| ticket < mark.first_later_ticket) {
            return None;
        }
        let last_lsn = mark.last_lsn;
        if last_lsn <= inner.registered_through {
            return Some(0);
        }
        let gap_start = inner.registered_through + 1;
        let registered_in_gap = inner.registered_ahead.range(..=last_lsn).count() as u64;
        let closed = last_lsn - inner.registered_through - registered_in_gap;
        if closed == 0 {
            return Some(0);
        }
        // Appends that finished after `last_lsn` was read stay registered.
        inner.registered_ahead = inner.registered_ahead.split_off(&(last_lsn + 1));
        inner.registered_through = last_lsn;
        while inner.registered_ahead.first() == Some(&(inner.registered_through + 1)) {
            inner.registered_ahead.pop_first();
            inner.registered_through += 1;
        }
        for ledger in inner.nodes.values_mut() {
            ledger.open_backlog_at(gap_start.max(ledger.cursor + 1));
            ledger.highest_missed = ledger.highest_missed.max(last_lsn);
            ledger.signal.notify_one();
        }
        Some(closed)
    }
}

/// `lsn` was in flight to `node` and now has an outcome (`what`).
fn take_inflight(ledger: &mut NodeLedger, node: &NodeRef, lsn: Lsn, what: &str) {
    let was_inflight = ledger.inflight.remove(&lsn);
    debug_assert!(
        was_inflight,
        "{what} for {lsn} on {node} which was not in flight"
    );
}

/// `lsn` is done for the node (acked, or rejected for good): the cursor may
/// move past it, and the node's handoff should look.
fn finish(ledger: &mut NodeLedger, lsn: Lsn, registered_through: Lsn) {
    ledger.remember_done(lsn);
    ledger.advance_cursor(registered_through);
    ledger.signal.notify_one();
}
