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
//! from the log (where the record itself says whom it targets).
//!
//! # The handoff's side
//!
//! A handoff task walks its node's backlog in LSN order, asking
//! [`HintLedger::judge`] about each record that targets the node, and
//! reports with [`HintLedger::passed`] (delivered, dropped, already acked)
//! so the cursor advances; [`HintLedger::caught_up`] ends the backlog once
//! it reaches the end of the log and no newer miss arrived meanwhile.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// A log sequence number (the log's `Lsn`).
pub type Lsn = u64;

/// Records remembered as done per node above its cursor. Past this, the
/// newest are forgotten, which only makes the handoff redeliver them
/// (idempotently).
pub const DONE_AHEAD_MAX: usize = 16 * 1024;

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

pub use crate::config::hints::{HINT_AGE_MS_LIMIT, HINT_BYTES_LIMIT, HintLimits};

/// Why a hint was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Older than `hints.age_ms_max`.
    Age,
    /// The node's backlog was over `hints.bytes_max`.
    Budget,
    /// The replica answered with a definitive 4xx; sending again cannot help.
    Rejected,
    /// The log record could not be decoded (written by an incompatible levee
    /// or damaged); there is nothing to send.
    Undecodable,
}

impl DropReason {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::Age => "age",
            DropReason::Budget => "budget",
            DropReason::Rejected => "rejected",
            DropReason::Undecodable => "undecodable",
        }
    }

    /// What it means, for logs.
    pub fn describe(self) -> &'static str {
        match self {
            DropReason::Age => "older than hints.age_ms_max",
            DropReason::Budget => "over hints.bytes_max",
            DropReason::Rejected => "rejected by the replica",
            DropReason::Undecodable => "undecodable log record",
        }
    }
}

/// Cumulative hint counters of one node. Persisted in checkpoints so that
/// a restart does not reset what operators are shown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HintCounters {
    pub delivered_records: u64,
    pub delivered_bytes: u64,
    pub dropped_age_records: u64,
    pub dropped_budget_records: u64,
    pub dropped_rejected_records: u64,
    pub dropped_undecodable_records: u64,
    pub dropped_bytes: u64,
}

impl HintCounters {
    /// Hints dropped for any reason.
    pub fn dropped_records(&self) -> u64 {
        self.dropped_age_records
            + self.dropped_budget_records
            + self.dropped_rejected_records
            + self.dropped_undecodable_records
    }

    fn count_drop(&mut self, reason: DropReason, bytes: u64) {
        match reason {
            DropReason::Age => self.dropped_age_records += 1,
            DropReason::Budget => self.dropped_budget_records += 1,
            DropReason::Rejected => self.dropped_rejected_records += 1,
            DropReason::Undecodable => self.dropped_undecodable_records += 1,
        }
        self.dropped_bytes += bytes;
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

#[derive(Debug)]
struct NodeLedger {
    cursor: Lsn,
    inflight: BTreeSet<Lsn>,
    backlog_from: Option<Lsn>,
    /// The highest LSN recorded as missed (or made unknown by a gap); the
    /// backlog may only end once the handoff has walked past it.
    highest_missed: Lsn,
    done_ahead: BTreeSet<Lsn>,
    backlog_records: u64,
    backlog_bytes: u64,
    counters: HintCounters,
    signal: Arc<Notify>,
}

impl NodeLedger {
    fn new(cursor: Lsn) -> Self {
        NodeLedger {
            cursor,
            inflight: BTreeSet::new(),
            backlog_from: None,
            highest_missed: 0,
            done_ahead: BTreeSet::new(),
            backlog_records: 0,
            backlog_bytes: 0,
            counters: HintCounters::default(),
            signal: Arc::new(Notify::new()),
        }
    }

    /// Moves the cursor as far as the facts allow; it never goes back.
    fn advance_cursor(&mut self, registered_through: Lsn) {
        let mut bound = registered_through;
        if let Some(&lowest) = self.inflight.first() {
            bound = bound.min(lowest - 1);
        }
        if let Some(from) = self.backlog_from {
            bound = bound.min(from - 1);
        }
        if bound > self.cursor {
            self.cursor = bound;
            // Acks at or below the cursor are facts the cursor now carries.
            self.done_ahead = self.done_ahead.split_off(&(bound + 1));
        }
    }

    fn remember_done(&mut self, lsn: Lsn) {
        if lsn <= self.cursor {
            return;
        }
        self.done_ahead.insert(lsn);
        if self.done_ahead.len() > DONE_AHEAD_MAX {
            self.done_ahead.pop_last();
        }
    }

    fn open_backlog_at(&mut self, lsn: Lsn) {
        debug_assert!(
            lsn > self.cursor,
            "backlog {lsn} at or below cursor {}",
            self.cursor
        );
        self.backlog_from = Some(self.backlog_from.map_or(lsn, |from| from.min(lsn)));
        self.highest_missed = self.highest_missed.max(lsn);
    }
}

#[derive(Debug)]
struct Inner {
    registered_through: Lsn,
    registered_ahead: BTreeSet<Lsn>,
    appends_in_progress: u64,
    nodes: BTreeMap<NodeRef, NodeLedger>,
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
}

/// The ledger of every replica's hints. Cheap operations under one mutex,
/// never held across an `.await`.
#[derive(Debug)]
pub struct HintLedger {
    inner: Mutex<Inner>,
}

/// Proof that an append is in progress, so [`HintLedger::close_gaps`] does
/// not mistake its LSN for a lost one. Register the LSN with it, or drop it
/// if the append failed.
#[must_use = "register the appended LSN, or drop the ticket if the append failed"]
pub struct AppendTicket<'a> {
    ledger: &'a HintLedger,
    done: bool,
}

impl AppendTicket<'_> {
    /// Registers a successfully appended record and the nodes it is about to
    /// be sent to (all of them in flight).
    pub fn register(mut self, lsn: Lsn, targets: &[NodeRef]) {
        self.done = true;
        let mut inner = self.ledger.lock();
        debug_assert!(!inner.is_registered(lsn), "LSN {lsn} registered twice");
        inner.appends_in_progress -= 1;
        if lsn <= inner.registered_through {
            // close_gaps already declared it unknown; its targets' handoffs
            // will read it back. Only reachable if the log misreported.
            return;
        }
        // In flight first: a node first seen here starts at the cursor the
        // registration had before this LSN.
        for target in targets {
            inner.node_mut(target).inflight.insert(lsn);
        }
        inner.registered_ahead.insert(lsn);
        while inner.registered_ahead.first() == Some(&(inner.registered_through + 1)) {
            inner.registered_ahead.pop_first();
            inner.registered_through += 1;
        }
        let registered_through = inner.registered_through;
        for node in inner.nodes.values_mut() {
            node.advance_cursor(registered_through);
        }
        for target in targets {
            inner.nodes[target].signal.notify_one();
        }
    }
}

impl Drop for AppendTicket<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.ledger.lock().appends_in_progress -= 1;
        }
    }
}

impl HintLedger {
    /// A ledger for a log whose records up to `last_lsn` are already on disk
    /// (recovered): nothing appended before now will be registered, so they
    /// count as registered, and each node's handoff reads back what lies
    /// above its cursor (see [`HintLedger::recover_node`]).
    pub fn new(last_lsn: Lsn) -> Self {
        HintLedger {
            inner: Mutex::new(Inner {
                registered_through: last_lsn,
                registered_ahead: BTreeSet::new(),
                appends_in_progress: 0,
                nodes: BTreeMap::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock is a bug in a few lines of
        // arithmetic; the state is still the best we have.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

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

    /// Sets a recovered node's backlog size, as measured by reading it back.
    pub fn set_backlog_size(&self, node: &NodeRef, records: u64, bytes: u64) {
        let mut inner = self.lock();
        let ledger = inner.node_mut(node);
        ledger.backlog_records = records;
        ledger.backlog_bytes = bytes;
    }

    /// Call before appending a client write.
    pub fn begin_append(&self) -> AppendTicket<'_> {
        self.lock().appends_in_progress += 1;
        AppendTicket {
            ledger: self,
            done: false,
        }
    }

    /// The node acknowledged LSN `lsn` directly.
    pub fn acked(&self, node: &NodeRef, lsn: Lsn) {
        let mut inner = self.lock();
        let registered_through = inner.registered_through;
        let ledger = inner.node_mut(node);
        let was_inflight = ledger.inflight.remove(&lsn);
        debug_assert!(
            was_inflight,
            "ack for {lsn} on {node} which was not in flight"
        );
        ledger.remember_done(lsn);
        ledger.advance_cursor(registered_through);
        ledger.signal.notify_one();
    }

    /// The node did not acknowledge LSN `lsn` (of `bytes` body bytes): it is
    /// now a hint, to be read back from the log by the node's handoff.
    pub fn missed(&self, node: &NodeRef, lsn: Lsn, bytes: u64) {
        let mut inner = self.lock();
        let ledger = inner.node_mut(node);
        let was_inflight = ledger.inflight.remove(&lsn);
        debug_assert!(
            was_inflight,
            "miss for {lsn} on {node} which was not in flight"
        );
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
        let was_inflight = ledger.inflight.remove(&lsn);
        debug_assert!(
            was_inflight,
            "rejection for {lsn} on {node} which was not in flight"
        );
        ledger.counters.count_drop(DropReason::Rejected, bytes);
        // For the cursor a rejection is as final as an ack.
        ledger.remember_done(lsn);
        ledger.advance_cursor(registered_through);
        ledger.signal.notify_one();
    }

    /// Declares lost every LSN up to `last_lsn` (the log's last durable
    /// LSN, read *before* this call) that no append in progress can still
    /// register. Every node's handoff then reads those records back from the
    /// log. Returns how many LSNs were closed this way.
    pub fn close_gaps(&self, last_lsn: Lsn) -> u64 {
        let mut inner = self.lock();
        if inner.appends_in_progress > 0 || last_lsn <= inner.registered_through {
            return 0;
        }
        let gap_start = inner.registered_through + 1;
        let registered_in_gap = inner.registered_ahead.range(..=last_lsn).count() as u64;
        let closed = last_lsn - inner.registered_through - registered_in_gap;
        if closed == 0 {
            return 0;
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
        closed
    }

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
        true
    }

    /// Notified whenever the node's facts change (a miss, an ack, a
    /// registration that concerns it); a handoff waits on it.
    pub fn signal(&self, node: &NodeRef) -> Arc<Notify> {
        self.lock().node_mut(node).signal.clone()
    }

    /// The node's cursor.
    pub fn cursor(&self, node: &NodeRef) -> Option<Lsn> {
        self.lock().nodes.get(node).map(|ledger| ledger.cursor)
    }

    /// Every LSN up to here is registered.
    pub fn registered_through(&self) -> Lsn {
        self.lock().registered_through
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
            .map(|(node, ledger)| NodeHintStats {
                service: node.service.clone(),
                node: node.node.clone(),
                cursor: ledger.cursor,
                backlog_from: ledger.backlog_from,
                backlog_records: ledger.backlog_records,
                backlog_bytes: ledger.backlog_bytes,
                inflight: ledger.inflight.len(),
                counters: ledger.counters,
                dropped_records: ledger.counters.dropped_records(),
            })
            .collect()
    }

    /// The node's counters.
    pub fn counters(&self, node: &NodeRef) -> HintCounters {
        self.lock()
            .nodes
            .get(node)
            .map(|ledger| ledger.counters)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn node(name: &str) -> NodeRef {
        NodeRef::new("kv", name)
    }

    fn append(ledger: &HintLedger, lsn: Lsn, targets: &[NodeRef]) {
        ledger.begin_append().register(lsn, targets);
    }

    #[test]
    fn all_acked_moves_the_cursor_with_registration() {
        let ledger = HintLedger::new(0);
        let (a, b) = (node("a"), node("b"));
        append(&ledger, 1, &[a.clone(), b.clone()]);
        assert_eq!(ledger.cursor(&a), Some(0));
        ledger.acked(&a, 1);
        ledger.acked(&b, 1);
        assert_eq!(ledger.cursor(&a), Some(1));
        assert_eq!(ledger.backlog_from(&a), None);
    }

    #[test]
    fn cursor_waits_for_an_earlier_unregistered_lsn() {
        let ledger = HintLedger::new(0);
        let a = node("a");
        let early = ledger.begin_append(); // LSN 1, registered late
        append(&ledger, 2, std::slice::from_ref(&a));
        ledger.acked(&a, 2);
        assert_eq!(ledger.cursor(&a), Some(0), "LSN 1 might still target a");
        early.register(1, std::slice::from_ref(&a));
        assert_eq!(ledger.cursor(&a), Some(0));
        ledger.acked(&a, 1);
        assert_eq!(ledger.cursor(&a), Some(2));
    }

    #[test]
    fn a_miss_holds_the_cursor_until_the_handoff_passes_it() {
        let ledger = HintLedger::new(0);
        let a = node("a");
        for lsn in 1..=3 {
            append(&ledger, lsn, std::slice::from_ref(&a));
        }
        ledger.acked(&a, 1);
        ledger.missed(&a, 2, 100);
        ledger.acked(&a, 3);
        assert_eq!(ledger.cursor(&a), Some(1));
        assert_eq!(ledger.backlog_from(&a), Some(2));
        assert_eq!(ledger.judge(&a, 2), Judgement::Deliver);
        assert!(ledger.passed(&a, 2, Passed::Delivered { bytes: 100 }));
        assert_eq!(ledger.judge(&a, 3), Judgement::AlreadyDone);
        assert!(ledger.passed(&a, 3, Passed::AlreadyDone));
        assert!(ledger.caught_up(&a, 4));
        assert_eq!(ledger.cursor(&a), Some(3));
        assert_eq!(ledger.counters(&a).delivered_records, 1);
        assert_eq!(ledger.backlog_bytes(&a), 0);
    }

    #[test]
    fn a_miss_during_the_walk_keeps_the_backlog_open() {
        let ledger = HintLedger::new(0);
        let a = node("a");
        append(&ledger, 1, std::slice::from_ref(&a));
        ledger.missed(&a, 1, 10);
        assert!(ledger.passed(&a, 1, Passed::Delivered { bytes: 10 }));
        // The handoff read to the end at LSN 2, but LSN 2 was appended and
        // missed before it could say so.
        append(&ledger, 2, std::slice::from_ref(&a));
        ledger.missed(&a, 2, 10);
        assert!(!ledger.caught_up(&a, 2));
        assert_eq!(ledger.backlog_from(&a), Some(2));
    }

    #[test]
    fn the_handoff_waits_for_inflight_and_unregistered_records() {
        let ledger = HintLedger::new(0);
        let a = node("a");
        append(&ledger, 1, std::slice::from_ref(&a));
        ledger.missed(&a, 1, 1);
        append(&ledger, 2, std::slice::from_ref(&a));
        assert_eq!(ledger.judge(&a, 2), Judgement::InFlight);
        assert_eq!(ledger.judge(&a, 3), Judgement::Unregistered);
    }

    #[test]
    fn recovery_opens_a_backlog_above_the_checkpointed_cursor() {
        let ledger = HintLedger::new(10);
        let a = node("a");
        ledger.recover_node(
            &a,
            4,
            HintCounters {
                delivered_records: 7,
                ..Default::default()
            },
        );
        assert_eq!(ledger.backlog_from(&a), Some(5));
        assert_eq!(ledger.cursor(&a), Some(4));
        assert_eq!(ledger.judge(&a, 5), Judgement::Deliver);
        for lsn in 5..=10 {
            assert!(ledger.passed(&a, lsn, Passed::NotTargeted));
        }
        assert!(ledger.caught_up(&a, 11));
        assert_eq!(ledger.cursor(&a), Some(10));
        assert_eq!(ledger.counters(&a).delivered_records, 7);
    }

    #[test]
    fn an_up_to_date_recovered_node_has_no_backlog() {
        let ledger = HintLedger::new(10);
        let a = node("a");
        ledger.recover_node(&a, 10, HintCounters::default());
        assert_eq!(ledger.backlog_from(&a), None);
    }

    #[test]
    fn gaps_are_closed_only_when_no_append_is_in_progress() {
        let ledger = HintLedger::new(0);
        let a = node("a");
        append(&ledger, 1, std::slice::from_ref(&a));
        ledger.acked(&a, 1);
        let pending = ledger.begin_append();
        assert_eq!(ledger.close_gaps(3), 0);
        drop(pending); // the append failed after consuming LSNs 2 and 3
        assert_eq!(ledger.close_gaps(3), 2);
        assert_eq!(ledger.registered_through(), 3);
        assert_eq!(ledger.backlog_from(&a), Some(2));
        assert_eq!(ledger.cursor(&a), Some(1));
    }

    #[test]
    fn drops_are_counted_by_reason() {
        let ledger = HintLedger::new(0);
        let a = node("a");
        append(&ledger, 1, std::slice::from_ref(&a));
        append(&ledger, 2, std::slice::from_ref(&a));
        ledger.missed(&a, 1, 5);
        ledger.missed(&a, 2, 7);
        let age = Passed::Dropped {
            reason: DropReason::Age,
            bytes: 5,
        };
        assert!(ledger.passed(&a, 1, age));
        let budget = Passed::Dropped {
            reason: DropReason::Budget,
            bytes: 7,
        };
        assert!(ledger.passed(&a, 2, budget));
        let counters = ledger.counters(&a);
        assert_eq!(counters.dropped_age_records, 1);
        assert_eq!(counters.dropped_budget_records, 1);
        assert_eq!(counters.dropped_records(), 2);
        assert_eq!(counters.dropped_bytes, 12);
    }

    #[test]
    fn a_record_walked_past_above_a_slower_send_is_not_handled_twice() {
        let ledger = HintLedger::new(0);
        let a = node("a");
        append(&ledger, 1, std::slice::from_ref(&a));
        append(&ledger, 2, std::slice::from_ref(&a));
        // LSN 2's send fails first; LSN 1's is still retrying.
        ledger.missed(&a, 2, 10);
        assert_eq!(ledger.backlog_from(&a), Some(2));
        let dropped = Passed::Dropped {
            reason: DropReason::Age,
            bytes: 10,
        };
        assert!(ledger.passed(&a, 2, dropped));
        assert_eq!(ledger.cursor(&a), Some(0), "LSN 1 is still in flight");
        // Now LSN 1 misses too: the walk goes back to 1, and must skip 2.
        ledger.missed(&a, 1, 10);
        assert_eq!(ledger.backlog_from(&a), Some(1));
        assert!(ledger.passed(&a, 1, dropped));
        assert_eq!(ledger.judge(&a, 2), Judgement::AlreadyDone);
        assert!(ledger.passed(&a, 2, Passed::AlreadyDone));
        assert!(ledger.caught_up(&a, 3));
        assert_eq!(
            ledger.counters(&a).dropped_age_records,
            2,
            "each record counted once"
        );
        assert_eq!(ledger.cursor(&a), Some(2));
    }

    #[test]
    fn passed_refuses_a_stale_head() {
        let ledger = HintLedger::new(0);
        let a = node("a");
        append(&ledger, 1, std::slice::from_ref(&a));
        ledger.missed(&a, 1, 1);
        assert!(!ledger.passed(&a, 2, Passed::NotTargeted));
        assert_eq!(ledger.backlog_from(&a), Some(1));
    }

    #[derive(Debug, Clone)]
    enum Fate {
        Ack,
        Miss,
    }

    /// A walk for node `index` as far as it can go now: delivers what the
    /// ledger says to deliver, stops at an in-flight record or the end.
    fn walk(
        ledger: &HintLedger,
        nodes: &[NodeRef],
        index: usize,
        writes: &[(Vec<bool>, Vec<Fate>)],
        deliveries: &mut BTreeMap<(usize, Lsn), u32>,
    ) {
        let target = &nodes[index];
        let count = writes.len() as u64;
        // Bounded: each pass moves the head forward or returns.
        for _ in 0..=(4 * count + 4) {
            let Some(from) = ledger.backlog_from(target) else {
                return;
            };
            if from > count {
                ledger.caught_up(target, from);
                return;
            }
            let what = if !writes[(from - 1) as usize].0[index] {
                Passed::NotTargeted
            } else {
                match ledger.judge(target, from) {
                    Judgement::Deliver => {
                        *deliveries.entry((index, from)).or_default() += 1;
                        Passed::Delivered { bytes: 1 }
                    }
                    Judgement::AlreadyDone => Passed::AlreadyDone,
                    Judgement::InFlight | Judgement::Unregistered => return,
                }
            };
            assert!(ledger.passed(target, from, what));
        }
        panic!("walk did not end");
    }

    fn shuffle<T>(items: &mut [T], mut seed: u64) {
        for i in (1..items.len()).rev() {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            items.swap(i, (seed >> 33) as usize % (i + 1));
        }
    }

    proptest! {
        /// Model check: whatever the interleaving of registrations (in any
        /// LSN order, as concurrent appends), acks and misses (in any order,
        /// as sends with different retry delays) and handoff walks (at any
        /// moment), in the end every missed record was delivered exactly
        /// once, no acknowledged record was delivered, and every cursor
        /// reached the end.
        #[test]
        fn every_missed_record_is_delivered_exactly_once(
            writes in proptest::collection::vec(
                (proptest::collection::vec(any::<bool>(), 3), proptest::collection::vec(prop_oneof![Just(Fate::Ack), Just(Fate::Miss)], 3)),
                1..40,
            ),
            register_seed in any::<u64>(),
            fate_seed in any::<u64>(),
            walk_every in 1usize..6,
        ) {
            let nodes = [node("a"), node("b"), node("c")];
            let ledger = HintLedger::new(0);
            // As at start-up: every configured node is declared.
            for target in &nodes {
                ledger.recover_node(target, 0, HintCounters::default());
            }
            let count = writes.len() as u64;
            let mut order: Vec<u64> = (1..=count).collect();
            shuffle(&mut order, register_seed);
            for &lsn in &order {
                let targeted = &writes[(lsn - 1) as usize].0;
                let targets: Vec<NodeRef> = nodes.iter().zip(targeted).filter(|(_, t)| **t).map(|(n, _)| n.clone()).collect();
                ledger.begin_append().register(lsn, &targets);
            }
            let mut fates: Vec<(u64, usize)> = (1..=count)
                .flat_map(|lsn| (0..3).map(move |index| (lsn, index)))
                .filter(|&(lsn, index)| writes[(lsn - 1) as usize].0[index])
                .collect();
            shuffle(&mut fates, fate_seed);
            let mut missed = BTreeSet::new();
            let mut deliveries = BTreeMap::new();
            for (step, &(lsn, index)) in fates.iter().enumerate() {
                match writes[(lsn - 1) as usize].1[index] {
                    Fate::Ack => ledger.acked(&nodes[index], lsn),
                    Fate::Miss => {
                        ledger.missed(&nodes[index], lsn, 1);
                        missed.insert((index, lsn));
                    }
                }
                if step % walk_every == 0 {
                    walk(&ledger, &nodes, step % 3, &writes, &mut deliveries);
                }
            }
            for index in 0..3 {
                walk(&ledger, &nodes, index, &writes, &mut deliveries);
                prop_assert_eq!(ledger.backlog_from(&nodes[index]), None);
                prop_assert_eq!(ledger.cursor(&nodes[index]), Some(count));
            }
            let delivered: BTreeSet<_> = deliveries.keys().cloned().collect();
            prop_assert_eq!(&delivered, &missed);
            prop_assert!(deliveries.values().all(|&times| times == 1), "delivered twice: {:?}", deliveries);
        }
    }
}
