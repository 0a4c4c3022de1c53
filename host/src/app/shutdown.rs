//! Graceful shutdown: SIGTERM or Ctrl-C stops the listeners, lets in-flight
//! requests finish within `shutdown_grace_ms`, then makes state durable and
//! exits 0.
//!
//! Why this order:
//! 1. **Stop accepting and report not ready** (`/readyz` turns 503 as soon as
//!    the signal arrives, via `AppState::begin_shutdown`) so load balancers
//!    move traffic away while we drain.
//! 2. **Drain within `shutdown_grace_ms`** (the listeners' graceful
//!    shutdown): idle keep-alive connections are closed and each in-flight
//!    request completes. A request stuck on a slow upstream must not hold
//!    the process hostage, so after the grace period the remaining
//!    connections are dropped.
//! 3. **Then make state durable** ([`finish`]): the write path's last
//!    checkpoint (so a restart resumes hint delivery where it stopped rather
//!    than redelivering), then an fsync of the log, so that even with
//!    `fsync: {"every_ms": N}` nothing acknowledged is left in the page cache.

use std::time::Instant;

use tokio::task::JoinHandle;

use crate::api::state::AppState;

/// Step 3, after the listeners drained: waits for the write path's
/// background tasks (which write the last checkpoint), then syncs the log.
pub async fn finish(state: &AppState, write_tasks: Vec<JoinHandle<()>>) {
    let started = Instant::now();
    crate::replication::join_background(write_tasks).await;
    let log = state.writes.log.clone();
    match tokio::task::spawn_blocking(move || log.sync()).await {
        Ok(Ok(synced_lsn)) => tracing::info!(
            synced_lsn,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "log flushed; shutdown complete"
        ),
        Ok(Err(error)) => tracing::error!(%error, "flushing the log at shutdown failed"),
        Err(error) => tracing::error!(%error, "the log flush task failed"),
    }
}
