//! The hint ledger: for every replica, which logged writes it still lacks.
//!
//! # Why hints are not kept in memory
//!
//! A replica that is down for an hour misses an hour of writes; holding
//! them in memory would make levee's footprint grow with the outage, which
//! is exactly when it must not. Every write is already in the durable log,
//! so a hint is not a copy of anything: it is a *fact about a log record*:
//! "record L targets node X, and X has not acknowledged it". The ledger
//! keeps only what is needed to compute that fact, in memory bounded by the
//! number of writes in flight, never by the backlog:
//!
//! - a per-node **cursor**: every record with LSN <= cursor that targets the
//!   node has been delivered to it (or dropped, and counted). Checkpoints
//!   persist the cursors; compaction keeps every record above the lowest.
//! - `backlog_from`: the lowest LSN the node's handoff must read back from
//!   the log (`None` when the node is up to date).
//! - the LSNs being sent to the node right now (`inflight`) and the records
//!   above the cursor already done for it (`done_ahead`: acknowledged
//!   directly, or delivered or dropped by a walk that got ahead of a slower
//!   send of a lower LSN), so a later walk from that lower LSN skips them
//!   instead of delivering and counting them twice. Bounded: forgetting one
//!   only costs a redundant, idempotent redelivery.
//! - counters (backlog records/bytes, delivered, dropped by reason).
//! - the **lag index** (`keys`): which keys each node still owes, so reads
//!   skip a replica that has not got a key's newest write yet; bounded per
//!   node by `keys::LAG_KEYS_MAX` (about 2 MiB), past which the node is skipped
//!   for every read until its cursor catches up.
//!
//! # Registration, and why a cursor may not run ahead of it
//!
//! The log assigns LSNs; the fan-out learns its record's LSN only when
//! `append` returns, and concurrent appends return in any order. Until the
//! fan-out has *registered* LSN L (with its targets), nobody knows whether
//! L concerns node X, so no cursor may pass L. `registered_through` is the
//! highest LSN below which every LSN is registered; cursors never exceed it.
//! An append that fails after consuming an LSN would stall it forever, so
//! [`HintLedger::close_gaps`] turns LSNs that no append in progress can
//! still register into "unknown" ranges that every node's handoff reads back
//! from the log (where the record itself says whom it targets). It works
//! under continuous load: a [`GapMark`] pairs the log's last durable LSN
//! with the tickets begun before it was read, and the gap up to that LSN is
//! closed once *those* tickets have ended (a tick later), whatever newer
//! appends are in progress; waiting for a moment with no append at all
//! starved under sustained writes.
//!
//! # The handoff's side
//!
//! A handoff task walks its node's backlog in LSN order, asking
//! [`HintLedger::judge`] about each record that targets the node, and
//! reports with [`HintLedger::passed`] (delivered, dropped, already acked)
//! so the cursor advances; [`HintLedger::caught_up`] ends the backlog once
//! it reaches the end of the log and no newer miss arrived meanwhile.
//!
//! # Where the code is
//!
//! - here: the ledger itself ([`HintLedger`]), the names the others share
//!   ([`Lsn`], [`NodeRef`], [`Judgement`], [`Passed`]);
//! - `node`: one node's state: cursor, backlog head, in-flight and
//!   done-ahead LSNs, and the rule that moves the cursor;
//! - `register`: the fan-out's side: append tickets, acks, misses,
//!   rejections, and closing LSN gaps;
//! - `backlog`: the handoff's side: judging, passing and catching up;
//! - `counters`: why hints are dropped, and the counters of each node;
//! - `keys`: the lag index (read-your-writes routing) and its bound;
//! - `export`: what checkpoints persist and operators see, and start-up
//!   recovery of each node from a checkpoint.

mod backlog;
mod counters;
mod export;
mod keys;
mod node;
mod register;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

pub use counters::{DropReason, HintCounters};
pub use export::{LedgerExport, NodeHintStats};
pub use keys::{KeyHash, key_hash};
pub use register::GapMark;
// The limits are configuration; the ledger's users find them here.
pub use crate::config::hints::HintLimits;

use keys::LagIndex;
use node::NodeLedger;

/// A log sequence number (the log's `Lsn`).
pub type Lsn = u64;

/// One replica: a node id is unique within its service only.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeRef {
    pub service: String,
    pub node: String,
}

impl NodeRef {
    pub fn new(service: impl Into<String>, node: impl Into<String>) -> Self {
        NodeRef {
            service: service.into(),
            node: node.into(),
        }
    }
}

impl std::fmt::Display for NodeRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.service, self.node)
    }
}

/// What the handoff should do with a record that targets its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judgement {
    /// The node has not got it: deliver (or drop, if over a limit).
    Deliver,
    /// The node acknowledged it directly, or a walk already delivered or
    /// dropped it: skip.
    AlreadyDone,
    /// The fan-out is sending it right now: wait for the outcome.
    InFlight,
    /// The fan-out has not registered it yet: wait.
    Unregistered,
}

/// What became of a record the handoff walked past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passed {
    /// It does not target this node.
    NotTargeted,
    /// It was already done for the node (see [`Judgement::AlreadyDone`]).
    AlreadyDone,
    /// Delivered now; `bytes` is the body size.
    Delivered { bytes: u64 },
    /// Dropped; counted under `reason`.
    Dropped { reason: DropReason, bytes: u64 },
}

/// The ledger's state, behind its one mutex.
#[derive(Debug)]
struct Inner {
    registered_through: Lsn,
    registered_ahead: BTreeSet<Lsn>,
    /// Ids of the append tickets not yet registered or dropped (one per
    /// client write in its append: bounded by the services' concurrency).
    tickets_in_progress: BTreeSet<u64>,
    /// The id the next ticket gets.
    next_ticket: u64,
    nodes: BTreeMap<NodeRef, NodeLedger>,
    /// Which keys each node still owes (see `keys`).
    lag: LagIndex,
}

impl Inner {
    fn is_registered(&self, lsn: Lsn) -> bool {
        lsn <= self.registered_through || self.registered_ahead.contains(&lsn)
    }

    fn node_mut(&mut self, node: &NodeRef) -> &mut NodeLedger {
        let registered_through = self.registered_through;
        self.nodes
            .entry(node.clone())
            // A node first seen now was targeted by nothing registered so far.
            .or_insert_with(|| NodeLedger::new(registered_through))
    }

    /// `node`'s cursor may have moved: the lag index forgets what it passed.
    fn settle_through_cursor(&mut self, node: &NodeRef) {
        if let Some(ledger) = self.nodes.get(node) {
            self.lag.settle_through(node, ledger.cursor);
        }
    }
}

/// The ledger of every replica's hints. Cheap operations under one mutex,
/// never held across an `.await`.
#[derive(Debug)]
pub struct HintLedger {
    inner: Mutex<Inner>,
    /// Nodes that owe any key (the lag index's count, read without the lock).
    owing_nodes: Arc<AtomicUsize>,
    /// Reads for which every replica owed the key (so none was skipped).
    reads_all_lagging: AtomicU64,
}

impl HintLedger {
    /// A ledger for a log whose records up to `last_lsn` are already on disk
    /// (recovered): nothing appended before now will be registered, so they
    /// count as registered, and each node's handoff reads back what lies
    /// above its cursor (see [`HintLedger::recover_node`]).
    pub fn new(last_lsn: Lsn) -> Self {
        let lag = LagIndex::default();
        HintLedger {
            owing_nodes: lag.owing_nodes(),
            inner: Mutex::new(Inner {
                registered_through: last_lsn,
                registered_ahead: BTreeSet::new(),
                tickets_in_progress: BTreeSet::new(),
                next_ticket: 0,
                nodes: BTreeMap::new(),
                lag,
            }),
            reads_all_lagging: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock is a bug in a few lines of
        // arithmetic; the state is still the best we have.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The node's cursor.
    #[cfg(test)] // only tests ask
    pub fn cursor(&self, node: &NodeRef) -> Option<Lsn> {
        self.lock().nodes.get(node).map(|ledger| ledger.cursor)
    }

    /// Every LSN up to here is registered.
    pub fn registered_through(&self) -> Lsn {
        self.lock().registered_through
    }

    /// Which of `nodes` (node ids of `service`, at most 64) may still owe a
    /// write to `key`: bit `i` set for `nodes[i]`. One atomic load, and no
    /// lock, while no node owes anything.
    pub fn lagging<'a>(
        &self,
        service: &str,
        key: &str,
        nodes: impl IntoIterator<Item = &'a str>,
    ) -> u64 {
        if self.owing_nodes.load(Ordering::Acquire) == 0 {
            return 0;
        }
        let hash = key_hash(service, key);
        let inner = self.lock();
        let mut mask = 0u64;
        for (slot, node) in nodes.into_iter().take(64).enumerate() {
            if inner.lag.owes(service, node, hash) {
                mask |= 1 << slot;
            }
        }
        mask
    }

    /// A read found every replica of its key lagging and read them anyway.
    pub fn count_read_all_lagging(&self) {
        self.reads_all_lagging.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads that found every replica of their key lagging.
    pub fn reads_all_lagging(&self) -> u64 {
        self.reads_all_lagging.load(Ordering::Relaxed)
    }

    /// Whether `node` is overflowed in the lag index, and how many writes it
    /// has indexed there.
    #[cfg(test)] // operators see it in `stats`
    pub fn lag_state(&self, node: &NodeRef) -> (bool, usize) {
        self.lock().lag.node_state(node)
    }

    /// LSNs registered above `registered_through` (waiting for a lower one).
    #[cfg(test)]
    pub fn registered_ahead(&self) -> usize {
        self.lock().registered_ahead.len()
    }
}

#[cfg(test)]
mod tests;
