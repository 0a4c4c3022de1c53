//! The checkpointer: when the checkpoint policy says so, write a
//! [`Snapshot`] into the log's checkpoint files and compact the log.
//!
//! # When
//!
//! A background task asks the checkpoint policy (a bound
//! `checkpoint-policy` plugin, or the native `checkpoint-interval`) with the
//! log's [`LogStats`] shortly after appends (woken by the write path, at
//! most every [`EVALUATE_INTERVAL_MS_MIN`]) and on a timer (every
//! [`TIMER_TICK_MS`], so a quiet log still gets its time-based checkpoint).
//! The admin API calls [`Checkpointer::checkpoint_now`] (`POST
//! /admin/checkpoint`), and shutdown writes one last checkpoint so a restart
//! does not redeliver what was already delivered.
//!
//! # What "oldest needed" means
//!
//! Compaction may delete a record only when no one needs it any more: not
//! the recovery (everything after the checkpoint's `covers_lsn` is replayed)
//! and not any replica (its hint cursor). The bound passed to
//! `Log::compact` is computed from the snapshot *just written*, never from
//! the live ledger: if levee crashed right after compacting, the restart
//! would resume from exactly those cursors, so the records they need must
//! still be there.
//!
//! Which policy: the log is one per levee, so the checkpoint policy is the
//! process's: the top-level `checkpoint` binding's `fallback` configures the
//! native `checkpoint-interval` (which answers whenever no plugin does; its
//! defaults without one; the binding's `config` is the plugin's), and
//! the control plane binds its plugin (`control::plugin_host`); without a
//! binding, the native policy with its defaults.

use std::sync::Arc;
use std::time::Duration;

use levee_log::{CheckpointInfo, CompactReport, Log, LogError};
use levee_plugin::CheckpointPolicy;
use levee_policy::{CheckpointAction, CheckpointInterval, LogStats};
use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::WritePlane;
use super::hints::{HintLedger, Lsn};
use super::snapshot::Snapshot;
use crate::base::metrics::CheckpointTrigger;
use crate::base::shutdown::Shutdown;
use crate::cluster::directory::Directory;
use crate::config::Config;

/// The policy is asked at most this often after appends.
pub const EVALUATE_INTERVAL_MS_MIN: u64 = 100;
/// ... and at least this often.
pub const TIMER_TICK_MS: u64 = 1_000;

/// Why a checkpoint could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("writing the checkpoint failed: {0}")]
    Write(#[source] LogError),
    #[error("compacting the log failed: {0}")]
    Compact(#[source] LogError),
    #[error("the checkpoint task failed: {0}")]
    Task(String),
}

/// What a checkpoint did (the admin API's answer).
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointReport {
    pub covers_lsn: Lsn,
    pub bytes: u64,
    pub created_unix_ms: u64,
    /// The lowest LSN still needed (by recovery or a replica's hints) after
    /// this checkpoint.
    pub oldest_needed_lsn: Lsn,
    /// Set when the log was compacted.
    pub compacted: Option<CompactSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CompactSummary {
    pub segments_deleted: usize,
    pub bytes_freed: u64,
    pub first_lsn: Lsn,
}

/// Owns the checkpoint policy and serialises checkpoints.
pub struct Checkpointer {
    pub policy: CheckpointPolicy,
    wake: Notify,
    /// One checkpoint at a time (policy, admin and shutdown may race).
    running: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpointer").finish_non_exhaustive()
    }
}

impl Checkpointer {
    /// A checkpointer with the native policy configured as described in the
    /// module doc. A plugin is bound later with `policy.bind`.
    pub fn new(config: &Config) -> Result<Checkpointer, String> {
        let native = match &config.checkpoint {
            Some(binding) => CheckpointInterval::from_json(&binding.fallback_json())?,
            None => CheckpointInterval::default(),
        };
        Ok(Checkpointer {
            policy: CheckpointPolicy::new(native),
            wake: Notify::new(),
            running: tokio::sync::Mutex::new(()),
        })
    }

    /// A record was appended: the policy should have a look soon.
    pub fn appended(&self) {
        self.wake.notify_one();
    }

    /// Writes a checkpoint now (and compacts if asked).
    pub async fn checkpoint_now(
        &self,
        plane: &Arc<WritePlane>,
        directory: Arc<Directory>,
        trigger: CheckpointTrigger,
        compact: bool,
    ) -> Result<CheckpointReport, CheckpointError> {
        let _one_at_a_time = self.running.lock().await;
        let plane = plane.clone();
        let report =
            tokio::task::spawn_blocking(move || write_and_compact(&plane, &directory, compact))
                .await
                .map_err(|e| CheckpointError::Task(e.to_string()))??;
        crate::base::metrics::checkpoint_written(trigger);
        tracing::info!(
            covers_lsn = report.covers_lsn,
            oldest_needed_lsn = report.oldest_needed_lsn,
            compacted_bytes = report.compacted.as_ref().map_or(0, |c| c.bytes_freed),
            ?trigger,
            "checkpoint written"
        );
        Ok(report)
    }
}

/// The snapshot, the checkpoint, and maybe the compaction, in that order.
fn write_and_compact(
    plane: &WritePlane,
    directory: &Directory,
    compact: bool,
) -> Result<CheckpointReport, CheckpointError> {
    // The ledger first, then the overlay and the configuration: an admin
    // service change is registered in the ledger only after both hold it
    // (`control::service_change`), so reading in this order guarantees that
    // the snapshot's services include every change its `covers_lsn` claims.
    let ledger = plane.ledger.export();
    let overlay = plane.service_overlay();
    let config = directory.config.load();
    checkpoint_and_compact(plane, Snapshot::capture(&config, overlay, ledger), compact)
}

/// Writes `snapshot` as a checkpoint, then compacts below what it still
/// needs if asked.
fn checkpoint_and_compact(
    plane: &WritePlane,
    snapshot: Snapshot,
    compact: bool,
) -> Result<CheckpointReport, CheckpointError> {
    let info: CheckpointInfo = plane
        .log
        .write_checkpoint(snapshot.covers_lsn, &snapshot)
        .map_err(CheckpointError::Write)?;
    let oldest_needed_lsn = snapshot
        .hint_cursors
        .iter()
        .map(|entry| entry.cursor + 1)
        .fold(snapshot.covers_lsn + 1, Lsn::min);
    let compacted = if compact {
        let report: CompactReport = plane
            .log
            .compact(oldest_needed_lsn)
            .map_err(CheckpointError::Compact)?;
        Some(CompactSummary {
            segments_deleted: report.segments_deleted.len(),
            bytes_freed: report.bytes_freed,
            first_lsn: report.first_lsn,
        })
    } else {
        None
    };
    Ok(CheckpointReport {
        covers_lsn: info.covers_lsn,
        bytes: info.bytes,
        created_unix_ms: info.created_unix_ms,
        oldest_needed_lsn,
        compacted,
    })
}

/// The statistics the checkpoint policy decides on.
pub fn log_stats(log: &Log, ledger: &HintLedger) -> LogStats {
    let status = log.stats();
    let after_checkpoint = status
        .last_checkpoint
        .as_ref()
        .map_or(status.first_lsn, |c| c.covers_lsn + 1);
    let oldest_needed_lsn = ledger
        .oldest_needed_lsn()
        .map_or(after_checkpoint, |lsn| lsn.min(after_checkpoint));
    LogStats {
        records_since_checkpoint: status.records_since_checkpoint,
        bytes_since_checkpoint: status.bytes_since_checkpoint,
        ms_since_checkpoint: status.ms_since_checkpoint,
        total_bytes: status.total_bytes,
        oldest_needed_lsn,
        reclaimable_bytes: log.reclaimable_bytes(oldest_needed_lsn),
    }
}

/// Starts the checkpoint task; it writes a last checkpoint at shutdown.
pub fn spawn(
    plane: Arc<WritePlane>,
    directory: Arc<Directory>,
    shutdown: Shutdown,
) -> JoinHandle<()> {
    tokio::spawn(run(plane, directory, shutdown.signal()))
}

async fn run(
    plane: Arc<WritePlane>,
    directory: Arc<Directory>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = plane.checkpoints.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(TIMER_TICK_MS)) => {}
            _ = shutdown.wait_for(|&stop| stop) => break,
        }
        let stats = log_stats(&plane.log, &plane.ledger);
        let started = std::time::Instant::now();
        let decided = plane.checkpoints.policy.decide(&stats);
        crate::base::metrics::policy_decided(&decided.source, started.elapsed());
        let compact = match decided.value {
            CheckpointAction::None => None,
            CheckpointAction::Checkpoint => Some(false),
            CheckpointAction::CheckpointAndCompact => Some(true),
        };
        if let Some(compact) = compact
            && let Err(error) = plane
                .checkpoints
                .checkpoint_now(
                    &plane,
                    directory.clone(),
                    CheckpointTrigger::Policy,
                    compact,
                )
                .await
        {
            tracing::error!(%error, "policy checkpoint failed");
        }
        // Debounce: a burst of appends costs one evaluation per interval.
        tokio::time::sleep(Duration::from_millis(EVALUATE_INTERVAL_MS_MIN)).await;
    }
    if let Err(error) = plane
        .checkpoints
        .checkpoint_now(
            &plane,
            directory.clone(),
            CheckpointTrigger::Shutdown,
            false,
        )
        .await
    {
        tracing::error!(%error, "shutdown checkpoint failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::hints::{NodeRef, Passed};
    use crate::replication::record::{KIND_CLIENT_WRITE, WriteHeader, WriteRecord};
    use levee_log::LogOptions;

    fn config() -> Config {
        Config::from_json(
            &serde_json::json!({"services": [{
                "name": "kv",
                "nodes": [{"id": "a", "url": "http://127.0.0.1:1"}, {"id": "b", "url": "http://127.0.0.1:2"}],
                "replicas": 2, "write_quorum": 1, "key": {"path_segment": 1},
            }]})
            .to_string(),
        )
        .unwrap()
    }

    /// Appends one 4 KiB write for nodes a and b through the ledger, as the
    /// fan-out would; a acknowledges it, b misses it.
    fn write_missed_by_b(plane: &WritePlane, key: usize) -> Lsn {
        let record = WriteRecord {
            header: WriteHeader {
                service: "kv".into(),
                method: "PUT".into(),
                path: format!("/kv/{key}"),
                key: key.to_string(),
                targets: vec!["a".into(), "b".into()],
                headers: vec![],
                request_id: String::new(),
                accepted_unix_ms: 0,
                version: levee_version::Version::legacy(1, key as u64 + 1),
            },
            body: bytes::Bytes::from(vec![b'x'; 4096]),
        };
        let (a, b) = (NodeRef::new("kv", "a"), NodeRef::new("kv", "b"));
        let ticket = plane.ledger.begin_append();
        let lsn = plane
            .log
            .append_blocking(KIND_CLIENT_WRITE, record.encode().unwrap())
            .unwrap();
        ticket.register(lsn, &[a.clone(), b.clone()]);
        plane.ledger.acked(&a, lsn);
        plane.ledger.missed(&b, lsn, 4096);
        lsn
    }

    #[test]
    fn the_native_policy_is_configured_by_the_bindings_fallback() {
        let defaults = Checkpointer::new(&config()).unwrap();
        assert_eq!(
            defaults.policy.native().config,
            CheckpointInterval::default().config
        );
        let mut bound = config();
        bound.checkpoint = Some(crate::config::PolicyRef {
            plugin: "checkpoint-interval".into(),
            config: serde_json::json!({"the plugin's own field": true}),
            fallback: Some(serde_json::json!({"every_records": 5, "every_ms": 3_600_000})),
            limits: None,
            headers: Vec::new(),
        });
        let checkpointer = Checkpointer::new(&bound).unwrap();
        let native = checkpointer.policy.native();
        assert_eq!(native.config.every_records, 5);
        assert_eq!(native.config.every_ms, 3_600_000);
        assert!(checkpointer.policy.plugin().is_none(), "bound later");
        bound.checkpoint.as_mut().unwrap().fallback = None;
        let checkpointer = Checkpointer::new(&bound).unwrap();
        assert_eq!(
            checkpointer.policy.native().config,
            CheckpointInterval::default().config,
            "no fallback: the native defaults, whatever the plugin's config"
        );
        bound.checkpoint.as_mut().unwrap().fallback = Some(serde_json::json!({"every_records": 0}));
        assert!(Checkpointer::new(&bound).is_err());
    }

    #[test]
    fn compaction_keeps_every_record_a_replica_still_needs() {
        let dir = tempfile::tempdir().unwrap();
        let options = LogOptions {
            segment_bytes_max: 16 << 10,
            record_bytes_max: 8 << 10,
            log_bytes_max: 1 << 20,
            pending_bytes_max: 64 << 10,
            ..LogOptions::default()
        };
        let (log, _) = Log::open(&dir.path().join("log"), options).unwrap();
        let mut config = config();
        config.data_dir = dir.path().to_owned();
        let plane = WritePlane::open(log, &config, Default::default()).unwrap();
        let b = NodeRef::new("kv", "b");
        let lsns: Vec<Lsn> = (0..40).map(|key| write_missed_by_b(&plane, key)).collect();
        let segments_before = plane.log.stats().segments.len();
        assert!(segments_before > 4, "{segments_before} segments");

        // b still needs everything: nothing may go.
        let snapshot = Snapshot::capture(&config, Default::default(), plane.ledger.export());
        let report = checkpoint_and_compact(&plane, snapshot, true).unwrap();
        assert_eq!(report.oldest_needed_lsn, lsns[0]);
        assert_eq!(report.compacted.unwrap().segments_deleted, 0);

        // The handoff delivers b's first 30 hints: their segments may go, the
        // records of the last 10 must stay readable.
        for &lsn in &lsns[..30] {
            assert!(
                plane
                    .ledger
                    .passed(&b, lsn, Passed::Delivered { bytes: 4096 })
            );
        }
        let snapshot = Snapshot::capture(&config, Default::default(), plane.ledger.export());
        let report = checkpoint_and_compact(&plane, snapshot, true).unwrap();
        assert_eq!(report.oldest_needed_lsn, lsns[30]);
        let compacted = report.compacted.unwrap();
        assert!(compacted.segments_deleted > 0);
        assert!(
            compacted.first_lsn <= lsns[30],
            "{} > {}",
            compacted.first_lsn,
            lsns[30]
        );
        let mut reader = plane.log.read_from(lsns[30]).unwrap();
        assert_eq!(reader.next().unwrap().unwrap().lsn, lsns[30]);

        // A restart resumes b from the checkpointed cursor, over what is left.
        let (ledger, summary) = crate::replication::recovery::recover(&plane.log, &config).unwrap();
        assert_eq!(summary.snapshot_covers_lsn, Some(lsns[39]));
        assert_eq!(ledger.cursor(&b), Some(lsns[29]));
        assert_eq!(ledger.backlog_from(&b), Some(lsns[30]));
        assert_eq!(
            ledger
                .stats()
                .iter()
                .find(|n| n.node == "b")
                .unwrap()
                .backlog_records,
            10
        );
    }
}
