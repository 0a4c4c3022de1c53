//! One node's state in the ledger, and the rule that moves its cursor.
//!
//! The cursor only moves forward, and never past what is known: the
//! highest fully registered LSN, the lowest LSN still in flight, and the
//! backlog head each bound it (see [`NodeLedger::advance_cursor`]).

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::Notify;

use super::Lsn;
use super::counters::HintCounters;

/// Records remembered as done per node above its cursor. Past this, the
/// newest are forgotten, which only makes the handoff redeliver them
/// (idempotently).
pub const DONE_AHEAD_MAX: usize = 16 * 1024;

/// One node's facts (see the [`super`] module doc).
#[derive(Debug)]
pub(super) struct NodeLedger {
    pub(super) cursor: Lsn,
    pub(super) inflight: BTreeSet<Lsn>,
    pub(super) backlog_from: Option<Lsn>,
    /// The highest LSN recorded as missed (or made unknown by a gap); the
    /// backlog may only end once the handoff has walked past it.
    pub(super) highest_missed: Lsn,
    pub(super) done_ahead: BTreeSet<Lsn>,
    pub(super) backlog_records: u64,
    pub(super) backlog_bytes: u64,
    pub(super) counters: HintCounters,
    pub(super) signal: Arc<Notify>,
}

impl NodeLedger {
    pub(super) fn new(cursor: Lsn) -> Self {
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
    pub(super) fn advance_cursor(&mut self, registered_through: Lsn) {
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

    pub(super) fn remember_done(&mut self, lsn: Lsn) {
        if lsn <= self.cursor {
            return;
        }
        self.done_ahead.insert(lsn);
        if self.done_ahead.len() > DONE_AHEAD_MAX {
            self.done_ahead.pop_last();
        }
    }

    pub(super) fn open_backlog_at(&mut self, lsn: Lsn) {
        debug_assert!(
            lsn > self.cursor,
            "backlog {lsn} at or below cursor {}",
            self.cursor
        );
        self.backlog_from = Some(self.backlog_from.map_or(lsn, |from| from.min(lsn)));
        self.highest_missed = self.highest_missed.max(lsn);
    }
}
