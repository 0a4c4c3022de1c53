//! Cluster mode's tasks: the first sync with etcd (before the instance is
//! ready), following etcd's services for the process's life, and keeping
//! this instance listed with its status (see `control::etcd`).
//!
//! etcd being down never stops an instance from serving: at start the
//! first sync is bounded by [`FIRST_SYNC_MS`] and the instance serves what
//! its own log last applied; later the follower retries with backoff and
//! resyncs from a snapshot once etcd answers again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::WatchOptions;

use crate::api::state::AppState;
use crate::config::ClusterSpec;
use crate::control::etcd::follow::{Change, apply_change, apply_snapshot, change_of};
use crate::control::etcd::membership;
use crate::control::etcd::store::{Member, Status, StoreError};
use crate::control::etcd::{ClusterMode, Store};

/// Longest the first sync may hold readiness back.
pub const FIRST_SYNC_MS: u64 = 10_000;
/// Pause before retrying etcd (doubling up to the max).
const RETRY_PAUSE_MS_MIN: u64 = 100;
const RETRY_PAUSE_MS_MAX: u64 = 2_000;

/// Connects, syncs once (bounded), then starts following and membership.
pub async fn start(
    state: &AppState,
    spec: &ClusterSpec,
    data: SocketAddr,
    admin: SocketAddr,
) -> anyhow::Result<()> {
    let mode = Arc::new(
        ClusterMode::connect(spec)
            .await
            .map_err(anyhow::Error::msg)?,
    );
    state.set_cluster(mode.clone());
    let first =
        tokio::time::timeout(Duration::from_millis(FIRST_SYNC_MS), sync(state, &mode)).await;
    match first {
        Ok(Ok(_)) => tracing::info!(
            revision = mode.follower.applied(),
            "cluster: in sync with etcd"
        ),
        Ok(Err(error)) => {
            tracing::warn!(%error, "cluster: etcd unavailable at start; serving the last applied configuration")
        }
        Err(_) => tracing::warn!(
            "cluster: first sync with etcd timed out; serving the last applied configuration"
        ),
    }
    tokio::spawn(follow(state.clone(), mode.clone()));
    let member = Member {
        instance_id: mode.instance_id.clone(),
        data: data.to_string(),
        admin: admin.to_string(),
        started_ms: crate::base::clock::unix_ms(),
    };
    let status_state = state.clone();
    tokio::spawn(membership::keep(
        mode,
        member,
        move || status(&status_state),
        state.shutdown_signal(),
    ));
    Ok(())
}

/// This instance's status as `status/<id>` shows it.
fn status(state: &AppState) -> Status {
    let Some(mode) = state.cluster() else {
        return Status::default();
    };
    let plugins = state
        .control
        .plugins
        .registry()
        .list()
        .into_iter()
        .filter_map(|info| Some((info.name, format!("sha256:{}", info.current?.version))))
        .collect();
    Status {
        instance_id: mode.instance_id.clone(),
        revision: mode.follower.applied(),
        services: state.directory.config.load().services.len(),
        plugins,
        error: mode.follower.error(),
        epochs: state
            .directory
            .services
            .load()
            .values()
            .map(|s| (s.name().to_string(), format!("{:016x}", s.ring.epoch())))
            .collect(),
        updated_ms: crate::base::clock::unix_ms(),
    }
}

/// Another instance on this one's revision that places a service's keys
/// differently (a different node set or rule: a bug or a skewed build) is
/// counted and logged.
fn compare_epochs(state: &AppState, mode: &ClusterMode, other: &Status) {
    if other.instance_id == mode.instance_id || other.revision != mode.follower.applied() {
        return;
    }
    let mine = status(state);
    for service in mine.epoch_mismatches(other) {
        crate::base::metrics::ring_epoch_mismatch();
        tracing::warn!(
            %service,
            other = %other.instance_id,
            revision = other.revision,
            "cluster: another instance on this revision places the service's keys differently (ring epoch mismatch)"
        );
    }
}

/// Seeds etcd if it holds no configuration, then applies its snapshot;
/// returns the revision to watch from.
async fn sync(state: &AppState, mode: &ClusterMode) -> Result<i64, StoreError> {
    let store: &Store = &mode.store;
    let mut snapshot = store.snapshot().await?;
    if snapshot.revision == 0 {
        let local = state.directory.config.load().services.clone();
        if store.seed(&local).await? {
            tracing::info!(
                services = local.len(),
                "cluster: seeded etcd from the configuration file"
            );
        }
        snapshot = store.snapshot().await?;
    }
    let problem = apply_snapshot(&state.service_changes(), &snapshot).await;
    mode.follower.record(snapshot.revision, problem);
    Ok(snapshot.read_at + 1)
}

/// Follows etcd until shutdown: snapshot, watch, and again after any
/// interruption.
async fn follow(state: AppState, mode: Arc<ClusterMode>) {
    let mut shutdown = state.shutdown_signal();
    let mut pause = RETRY_PAUSE_MS_MIN;
    // Bounded by shutdown; each turn is one watch's life.
    loop {
        let watched = tokio::select! {
            watched = sync_and_watch(&state, &mode) => watched,
            _ = shutdown.wait_for(|&stop| stop) => return,
        };
        if let Err(error) = &watched {
            tracing::warn!(%error, "cluster: following etcd interrupted; resyncing");
        }
        pause = if watched.is_ok() {
            RETRY_PAUSE_MS_MIN
        } else {
            (pause * 2).min(RETRY_PAUSE_MS_MAX)
        };
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(pause)) => {}
            _ = shutdown.wait_for(|&stop| stop) => return,
        }
    }
}

/// One snapshot and the watch after it; returns when the watch ends.
async fn sync_and_watch(state: &AppState, mode: &ClusterMode) -> Result<(), String> {
    let from = sync(state, mode).await.map_err(|e| e.to_string())?;
    let keys = &mode.store.keys;
    let options = WatchOptions::new().with_prefix().with_start_revision(from);
    let mut client = mode.store.client();
    let (_watcher, mut stream) = client
        .watch(keys.all(), Some(options))
        .await
        .map_err(|e| e.to_string())?;
    // Bounded by etcd: ends with the stream (outage, compaction, cancel).
    while let Some(response) = stream.message().await.map_err(|e| e.to_string())? {
        if response.canceled() || response.compact_revision() > 0 {
            return Err(format!("watch canceled: {}", response.cancel_reason()));
        }
        let mut problems = Vec::new();
        let mut revision = None;
        for event in response.events() {
            match change_of(keys, event) {
                Ok(Change::Revision(at)) => revision = Some(at),
                Ok(Change::Status(other)) => compare_epochs(state, mode, &other),
                Ok(change) => problems.extend(apply_change(&state.service_changes(), change).await),
                Err(problem) => problems.push(problem),
            }
        }
        if let Some(revision) = revision {
            let problem = (!problems.is_empty()).then(|| problems.join("; "));
            mode.follower.record(revision, problem);
        }
    }
    Err("the watch stream ended".to_string())
}
