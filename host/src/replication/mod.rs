//! The write path: replicated fan-out, hinted handoff, durable state.
//!
//! levee's promise for a write: once a client has been told "acknowledged",
//! the write is in the durable log and on W replicas, and every other
//! replica of its key will get it, even if replicas die and levee itself is
//! killed in the middle. How the pieces deliver that:
//!
//! - [`record`]: the log record of a client write (versioned byte layout).
//! - [`clock`]: the write clock that gives every write its version.
//! - `dataplane::fanout` (a layer up): append → N replicas in parallel →
//!   answer at W acks, using the pieces below.
//! - [`deliver`]: the request one replica gets, first time or hint.
//! - [`hints`]: the ledger of which replica still lacks which record; hints
//!   are facts about log records, never copies in memory. Its lag index
//!   (which keys each replica still owes) lets reads skip lagging replicas.
//! - [`recent`]: the newest version acknowledged per recent key, against
//!   which reads detect a stale answer.
//! - [`handoff`]: per-replica background delivery of hints, streamed from
//!   the log once the replica is healthy; drops past the limits, counted.
//! - [`repair`]: keys a replica may have missed for good (dropped hints,
//!   stale reads), durably recorded; a background pass copies the newest
//!   version to the replicas that lack it.
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
//! after a newer direct write, a restart redelivers, a second levee
//! instance writes the same key. Every write is therefore given a
//! **version** before its append ([`clock`]: a hybrid logical clock,
//! physical ms + logical counter + this data directory's instance id,
//! persisted high-water mark, never reused), stored in its log record and
//! sent with every delivery of it (`x-levee-version`; a redelivery sends
//! the same version). A replica that keeps the version per key (the
//! bundled `kv-replica` does, with tombstones for deletes) applies only a
//! newer version: **last writer wins by version**, and redelivery is
//! harmless. LSNs are not an order between writers: they restart at 1 when
//! a log is wiped or restored and mean nothing across instances, so
//! `x-levee-lsn` is still sent, for tracing only.
//!
//! A replica that holds a newer version answers a write `409` with
//! `x-levee-held-version`: the write is **superseded**. That is final for
//! the replica (nothing to deliver, no hint) but never an acknowledgement,
//! and the clock observes the held version, so the client's retry is newer.
//! Versions follow real time only as well as the instances' clocks agree:
//! the clock adopts a version seen on a replica up to
//! `versions.clock_skew_ms_max` ahead of its wall clock and refuses (counts)
//! one further ahead. An upstream that ignores the header gets
//! at-least-once delivery in LSN order per handoff walk, but no protection
//! against the races above.
//!
//! What a client can rely on: 2xx means logged and on W replicas; 409
//! `superseded` means a newer write to the key won; a 503/504 with
//! `x-levee-outcome: unknown` means not confirmed (the write is logged, and
//! the replicas that missed it will still get it: quorum stores cannot
//! un-send); `not-written` means refused before the log.
//!
//! # Limits
//!
//! Memory does not grow with the backlog (hints are read back from the log,
//! a few records at a time). Everything else that grows is bounded: writes
//! in flight by the service's `concurrency_max` (the slot is held until the
//! last replica's send ends), each send by the request deadline, remembered
//! acks per node by [`hints::DONE_AHEAD_MAX`], hints per node by
//! `hints.age_ms_max` and `hints.bytes_max`, the log by its `log_bytes_max`
//! (a full log answers 503 and sends nothing), the lag index by
//! `hints::keys::LAG_KEYS_MAX` writes per node (~2 MiB; past it the node
//! is skipped by every read until it catches up), the recent versions by
//! [`recent::RECENT_KEYS_MAX`] keys (2.5 MiB).

pub mod checkpoint;
pub mod clock;
pub mod deliver;
pub mod handoff;
pub mod hints;
pub mod recent;
pub mod record;
pub mod recovery;
pub mod repair;
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
    /// The repair set (`data_dir/repair`) could not be opened or read.
    #[error("opening the repair set {dir}: {source}")]
    Repair {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    /// The write clock's files (`data_dir/instance-id`, `data_dir/hlc-mark`)
    /// could not be read or written; the error names the file.
    /// (Not a `#[source]`: the text already carries it, once.)
    #[error("opening the write clock: {0}")]
    Clock(levee_version::HlcError),
}

/// The write path's shared state.
pub struct WritePlane {
    /// The durable log every write goes to first.
    pub log: Log,
    /// Which replica lacks which record.
    pub ledger: HintLedger,
    /// The checkpoint policy and the checkpoint writer.
    pub checkpoints: Checkpointer,
    /// The newest version acknowledged per recently written key (bounded;
    /// the read path's stale-answer check).
    pub recent: recent::RecentVersions,
    /// Keys to repair (dropped hints, stale reads) and the pass's figures.
    pub repairs: Arc<repair::Repairs>,
    /// Issues every write's version; observes versions seen on replicas
    /// (through [`clock::observe`]).
    pub hlc: Arc<levee_version::Hlc>,
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
    /// Reads that found every replica of their key still owed a write to it
    /// (so none could be skipped).
    pub reads_all_replicas_lagging: u64,
    /// Keys awaiting repair and the repair pass's counters.
    pub repair: repair::RepairStatus,
}

impl WritePlane {
    /// Recovers the write path's state from `log` for `config`: hint cursors
    /// from the latest checkpoint, backlogs from the records after it, and
    /// opens the write clock in `data_dir` (a new instance id if the log has
    /// never held a record). Reads the log back once (blocking I/O: call at
    /// start-up).
    pub fn open(
        log: Log,
        config: &Config,
        service_overlay: ServiceOverlay,
    ) -> Result<WritePlane, WriteSetupError> {
        let hlc = clock::open(&config.data_dir, config, clock::log_is_new(&log))
            .map_err(WriteSetupError::Clock)?;
        let recent = recent::RecentVersions::default();
        let (ledger, recovery) = recovery::recover_with(&log, config, &recent)?;
        let repair_dir = repair::repair_dir(&config.data_dir);
        let repairs =
            repair::Repairs::open(&repair_dir).map_err(|source| WriteSetupError::Repair {
                dir: repair_dir.display().to_string(),
                source,
            })?;
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
            recent,
            repairs: Arc::new(repairs),
            hlc: Arc::new(hlc),
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
            reads_all_replicas_lagging: self.ledger.reads_all_lagging(),
            repair: self.repairs.status(),
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

/// Set by `levee serve --repair` before start-up: the log is opened with
/// `LogOptions::repair`, which cuts a corrupt log at its first damage
/// (moving the rest aside as `.broken`) instead of refusing to open. A
/// process-wide switch rather than a config field on purpose: repair is a
/// one-off operator decision for one start, never a setting to leave on.
static REPAIR_LOG_AT_OPEN: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// See [`REPAIR_LOG_AT_OPEN`]; `levee serve --repair` calls it once.
pub fn set_repair_log_at_open(repair: bool) {
    REPAIR_LOG_AT_OPEN.store(repair, std::sync::atomic::Ordering::Relaxed);
}

/// The log's options for `config`: its fsync mode, records big enough
/// for the largest body any service accepts plus the record header (within
/// the log format's limit; a larger write is refused with 413), and repair
/// if `levee serve --repair` asked for it.
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
        repair: REPAIR_LOG_AT_OPEN.load(std::sync::atomic::Ordering::Relaxed),
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
    if let Some(repair) = &report.repair {
        tracing::error!(
            segment = %repair.segment.display(),
            offset = repair.offset,
            records_dropped = repair.records_dropped,
            reason = %repair.reason,
            "--repair cut the corrupt log at its first damage; later records were moved aside \
             as .broken files"
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

/// Starts the repair pass, the handoff supervisor and the checkpointer.
/// All stop when shutdown begins; the checkpointer writes a last checkpoint
/// first.
pub fn spawn_background(
    plane: Arc<WritePlane>,
    directory: Arc<Directory>,
    client: UpstreamClient,
    shutdown: Shutdown,
) -> Vec<JoinHandle<()>> {
    vec![
        repair::spawn(
            plane.clone(),
            directory.clone(),
            client.clone(),
            shutdown.clone(),
        ),
        handoff::spawn(plane.clone(), directory.clone(), client, shutdown.clone()),
        checkpoint::spawn(plane, directory, shutdown),
    ]
}
