//! Membership and status: this instance's keys under a lease.
//!
//! `members/<id>` says the instance is alive and where it listens;
//! `status/<id>` says which configuration revision it has applied, the
//! plugin versions it serves, and what stopped it, rewritten at each
//! change. Both hang on one lease kept alive every third of its TTL: if the
//! instance dies (or loses etcd for a whole TTL), etcd deletes both and the
//! others see it gone. When etcd comes back, a new lease and both keys are
//! written again.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::ClusterMode;
use super::store::{Member, Status};

/// Pause before trying etcd again after a failure (doubling up to
/// [`RETRY_PAUSE_MS_MAX`]).
const RETRY_PAUSE_MS_MIN: u64 = 200;
const RETRY_PAUSE_MS_MAX: u64 = 2_000;

/// Keeps this instance listed until shutdown. `status` is asked for a
/// fresh status at every change of the follower.
pub async fn keep(
    mode: Arc<ClusterMode>,
    member: Member,
    status: impl Fn() -> Status,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut pause = RETRY_PAUSE_MS_MIN;
    // Bounded by shutdown; each turn is one lease's life.
    loop {
        let lived = tokio::select! {
            lived = one_lease(&mode, &member, &status) => lived,
            _ = shutdown.wait_for(|&stop| stop) => return,
        };
        if let Err(error) = &lived {
            tracing::warn!(%error, "cluster membership lost; retrying");
        }
        pause = if lived.is_ok() {
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

/// Grants a lease, writes both keys, keeps it alive; returns when etcd
/// stops answering.
async fn one_lease(
    mode: &ClusterMode,
    member: &Member,
    status: &impl Fn() -> Status,
) -> Result<(), String> {
    let store = &mode.store;
    let ttl_s = mode.spec.lease_ttl_s;
    let lease = store.grant_lease(ttl_s).await.map_err(|e| e.to_string())?;
    let id = &mode.instance_id;
    store
        .put_leased(store.keys.member(id), member, lease)
        .await
        .map_err(|e| e.to_string())?;
    store
        .put_leased(store.keys.status(id), &status(), lease)
        .await
        .map_err(|e| e.to_string())?;
    let mut client = store.client();
    let (mut keeper, mut answers) = client
        .lease_keep_alive(lease)
        .await
        .map_err(|e| e.to_string())?;
    let every = Duration::from_millis(ttl_s * 1000 / 3);
    let mut tick = tokio::time::interval(every);
    let mut written = (mode.follower.applied(), mode.follower.error());
    // Bounded by etcd: ends at the first failed keep-alive.
    loop {
        tokio::select! {
            _ = tick.tick() => {
                // A change the notification missed (it came while writing).
                let now = (mode.follower.applied(), mode.follower.error());
                if now != written {
                    store
                        .put_leased(store.keys.status(id), &status(), lease)
                        .await
                        .map_err(|e| e.to_string())?;
                    written = now;
                }
                keeper.keep_alive().await.map_err(|e| e.to_string())?;
                let answer = tokio::time::timeout(every, answers.message()).await;
                match answer {
                    Ok(Ok(Some(answer))) if answer.ttl() > 0 => {}
                    Ok(Ok(Some(_))) => return Err("the lease expired".to_string()),
                    Ok(Ok(None)) => return Err("the keep-alive stream ended".to_string()),
                    Ok(Err(error)) => return Err(error.to_string()),
                    Err(_) => return Err(format!("no keep-alive answer within {every:?}")),
                }
            }
            _ = mode.follower.changed() => {
                written = (mode.follower.applied(), mode.follower.error());
                store
                    .put_leased(store.keys.status(id), &status(), lease)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
    }
}
