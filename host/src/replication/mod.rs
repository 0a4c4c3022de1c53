//! The write path: replicated fan-out, hinted handoff, durable state.
//!
//! levee's promise for a write: once a client has been told "acknowledged",
//! the write is in the durable log and on W replicas, and every other
//! replica of its key will get it, even if replicas die and levee itself is
//! killed in the middle. How the pieces deliver that:
//!
//! - [`record`]: the log record of a client write (versioned byte layout).
//! - `dataplane::fanout` (a layer up): append → N replicas in parallel →
//!   answer at W acks, using the pieces below.
//! - [`deliver`]: the request one replica gets, first time or hint.
//! - [`hints`]: the ledger of which replica still lacks which record; hints
//!   are facts about log records, never copies in memory.
//! - [`handoff`]: per-replica background delivery of hints, streamed from
//!   the log once the replica is healthy; drops past the limits, counted.
//! - [`snapshot`]: the typed, versioned state a checkpoint persists.
//! - [`checkpoint`]: when to checkpoint and compact (the checkpoint policy),
//!   and `checkpoint_now` for the admin API.
//! - [`recovery`]: cursors from the latest checkpoint, backlogs from the log.
//! - [`service_changes`]: the admin API's service changes as log records,
//!   and their overlay on the configuration file.
//!
//! [`WritePlane`] ties them together and lives for the life of
//! the process; [`spawn_background`] starts the handoff supervisor and the
//! checkpointer.
//!
//! # Ordering and consistency
//!
//! Writes to one key can reach a replica out of order: two concurrent
//! client writes race, a direct send overtakes a slow one, a hint arrives
//! after a newer direct write, a restart redelivers. Every send therefore
//! carries the write's LSN (`x-levee-lsn`), levee's single total order, and
//! a replica that keeps the LSN per key (the bundled `kv-replica` does,
//! with tombstones for deletes) applies only what is newer: last writer
//! wins by LSN, and redelivery is harmless. An upstream that ignores the
//! header gets at-least-once delivery in LSN order per handoff walk, but no
//! protection against the races above.
//!
//! What a client can rely on: 2xx means logged and on W replicas; 503 means
//! not confirmed (the write is logged, and the replicas that missed it will
//! still get it: quorum stores cannot un-send). Reads are answered by one
//! replica (the read path), so a replica that is still catching up on hints
//! can serve an older value until its handoff completes; there is no read
//! repair.
//!
//! # Limits
//!
//! Memory does not grow with the backlog (hints are read back from the log,
//! a few records at a time). Everything else that grows is bounded: writes
//! in flight by the service's `concurrency_max` (the slot is held until the
//! last replica's send ends), each send by the request deadline, remembered
//! acks per node by [`hints::DONE_AHEAD_MAX`], hints per node by
//! `hints.age_ms_max` and `hints.bytes_max`, the log by its `log_bytes_max`
//! (a full log answers 503 and sends nothing).

pub mod checkpoint;
pub mod deliver;
pub mod handoff;
pub mod hints;
pub mod record;
pub mod recovery;
pub mod service_changes;
pub mod snapshot;

use std::sync::Arc;

use levee_log::format::RECORD_BYTES_LIMIT;
use levee_log::{Log, LogOptions, SyncMode};
use serde::Serialize;
use tokio::task::JoinHandle;

use crate::base::metrics::CheckpointTrigger;
use crate::base::shutdown::Shutdown;
use crate::cluster::directory::Directory;
use crate::config::{Config, FsyncMode};
use crate::upstream::UpstreamClient;
use checkpoint::{CheckpointError, CheckpointReport, Checkpointer};
use hints::{HintLedger, NodeHintStats};
use recovery::RecoveryError;
use service_changes::{ServiceChange, ServiceOverlay};
use snapshot::RecoverySummary;

/// Why the write path could not start.
#[derive(Debug, thiserror::Error)]
pub enum WriteSetupError {
    #[error("opening the log: {0}")]
    Log(#[source] levee_log::LogError),
    #[error(transparent)]
    Recovery(#[from] RecoveryError),
    #[error("checkpoint policy: {0}")]
    Policy(String),
}

/// The write path's shared state.
pub struct WritePlane {
    /// The durable log every write goes to first.
    pub log: Log,
    /// Which replica lacks which record.
    pub ledger: HintLedger,
    /// The checkpoint policy and the checkpoint writer.
    pub checkpoints: Checkpointer,
    /// The admin API's service changes since the log began; checkpoints
    /// carry it so change records can be compacted away.
    service_overlay: std::sync::Mutex<ServiceOverlay>,
    recovery: RecoverySummary,
}

impl std::fmt::Debug for WritePlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WritePlane")
            .field("log", &self.log.dir())
            .field("registered_through", &self.ledger.registered_through())
            .finish_non_exhaustive()
    }
}

/// What the admin API and the status page show about the write path.
#[derive(Debug, Clone, Serialize)]
pub struct WriteStatus {
    pub recovery: RecoverySummary,
    /// Every LSN up to here has been registered by the fan-out.
    pub registered_through: hints::Lsn,
    pub nodes: Vec<NodeHintStats>,
    /// Hints dropped over all nodes (age, budget, rejection, undecodable).
    pub hints_dropped_total: u64,
}

impl WritePlane {
    /// Recovers the write path's state from `log` for `config`: hint cursors
    /// from the latest checkpoint, backlogs from the records after it. Reads
    /// the log back once (blocking I/O: call at start-up).
    pub fn open(
        log: Log,
        config: &Config,
        service_overlay: ServiceOverlay,
    ) -> Result<WritePlane, WriteSetupError> {
        let (ledger, recovery) = recovery::recover(&log, config)?;
        let checkpoints = Checkpointer::new(config).map_err(WriteSetupError::Policy)?;
        tracing::info!(
            snapshot_covers_lsn = ?recovery.snapshot_covers_lsn,
            records_scanned = recovery.records_scanned,
            nodes_with_backlog = recovery.nodes_with_backlog,
            "write path recovered"
        );
        Ok(WritePlane {
            log,
            ledger,
            checkpoints,
            service_overlay: std::sync::Mutex::new(service_overlay),
            recovery,
        })
    }

    /// Remembers an admin service change (after its append, before its
    /// ledger registration: see `service_changes`).
    pub fn record_service_change(&self, change: &ServiceChange) {
        self.overlay().record(change);
    }

    /// The service changes so far, for a snapshot.
    pub fn service_overlay(&self) -> ServiceOverlay {
        self.overlay().clone()
    }

    fn overlay(&self) -> std::sync::MutexGuard<'_, ServiceOverlay> {
        // A panic while holding it left a whole overlay (record is one
        // map insert or remove): keep using it.
        self.service_overlay
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Called by the fan-out after each append.
    pub fn appended(&self) {
        self.checkpoints.appended();
    }

    /// The write path's state for operators.
    pub fn status(&self) -> WriteStatus {
        let nodes = self.ledger.stats();
        WriteStatus {
            recovery: self.recovery.clone(),
            registered_through: self.ledger.registered_through(),
            hints_dropped_total: nodes.iter().map(|node| node.dropped_records).sum(),
            nodes,
        }
    }

    /// Writes a checkpoint now (the admin API's `POST /admin/checkpoint`),
    /// compacting the log if `compact`.
    pub async fn checkpoint_now(
        self: &Arc<Self>,
        directory: &Arc<Directory>,
        trigger: CheckpointTrigger,
        compact: bool,
    ) -> Result<CheckpointReport, CheckpointError> {
        self.checkpoints
            .checkpoint_now(self, directory.clone(), trigger, compact)
            .await
    }
}

/// The log's options for `config`: its fsync mode, and records big enough
/// for the largest body any service accepts plus the record header (within
/// the log format's limit; a larger write is refused with 413).
pub fn log_options(config: &Config) -> LogOptions {
    let defaults = LogOptions::default();
    let body_bytes_max = config
        .services
        .iter()
        .map(|service| service.body_bytes_max)
        .max()
        .unwrap_or(0);
    let wanted = body_bytes_max + record::HEADER_BYTES_MAX as u64 + 64;
    let record_bytes_max = wanted.clamp(
        u64::from(defaults.record_bytes_max),
        u64::from(RECORD_BYTES_LIMIT),
    );
    let record_bytes_max = u32::try_from(record_bytes_max).expect("clamped to the format limit");
    let sync = match config.fsync {
        FsyncMode::Always => SyncMode::Always,
        FsyncMode::EveryMs(ms) => SyncMode::EveryMs(ms),
        FsyncMode::Never => SyncMode::Never,
    };
    let record_disk_bytes = LogOptions::record_disk_bytes(record_bytes_max as usize);
    LogOptions {
        record_bytes_max,
        pending_bytes_max: defaults.pending_bytes_max.max(2 * record_disk_bytes),
        sync,
        ..defaults
    }
}

/// Opens (and recovers) the log alone, for start-up steps that read it
/// before the write path is built (the admin API's service changes).
pub fn open_log(config: &Config) -> Result<Log, WriteSetupError> {
    let dir = config.log_dir();
    let (log, report) = Log::open(&dir, log_options(config)).map_err(WriteSetupError::Log)?;
    if let Some(torn) = &report.torn_tail {
        tracing::warn!(
            ?torn,
            "the log ended in a torn write (a crash artefact); it was cut off"
        );
    }
    tracing::info!(
        dir = %dir.display(),
        first_lsn = report.first_lsn,
        last_lsn = report.last_lsn,
        duration_ms = report.duration_ms,
        "log opened"
    );
    Ok(log)
}

/// Waits (bounded) for the background tasks to end after shutdown began;
/// the checkpointer writes its last checkpoint meanwhile.
pub async fn join_background(tasks: Vec<JoinHandle<()>>) {
    let all = futures_join_all(tasks);
    if tokio::time::timeout(std::time::Duration::from_millis(SHUTDOWN_WAIT_MS), all)
        .await
        .is_err()
    {
        tracing::warn!("write path tasks did not stop within {SHUTDOWN_WAIT_MS} ms");
    }
}

/// How long shutdown waits for the write path's last checkpoint.
const SHUTDOWN_WAIT_MS: u64 = 10_000;

async fn futures_join_all(tasks: Vec<JoinHandle<()>>) {
    for task in tasks {
        let _ = task.await;
    }
}

/// Starts the handoff supervisor and the checkpointer. Both stop when
/// shutdown begins; the checkpointer writes a last checkpoint first.
pub fn spawn_background(
    plane: Arc<WritePlane>,
    directory: Arc<Directory>,
    client: UpstreamClient,
    shutdown: Shutdown,
) -> Vec<JoinHandle<()>> {
    vec![
        handoff::spawn(plane.clone(), directory.clone(), client, shutdown.clone()),
        checkpoint::spawn(plane, directory, shutdown),
    ]
}
