//! Why hints are dropped, and the cumulative counters of each node.
//!
//! A dropped hint is a write that will never reach a replica, so every drop
//! is counted under its reason, persisted in checkpoints, and shown to
//! operators: never silent.

use serde::{Deserialize, Serialize};

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

    pub(super) fn count_drop(&mut self, reason: DropReason, bytes: u64) {
        match reason {
            DropReason::Age => self.dropped_age_records += 1,
            DropReason::Budget => self.dropped_budget_records += 1,
            DropReason::Rejected => self.dropped_rejected_records += 1,
            DropReason::Undecodable => self.dropped_undecodable_records += 1,
        }
        self.dropped_bytes += bytes;
    }
}
