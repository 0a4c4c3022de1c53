//! Cluster mode on etcd: many levee instances, one truth.
//!
//! Why etcd: it is what Kubernetes itself stores in, and it gives exactly
//! the three things a fleet of proxies needs to agree: versioned keys
//! changed by compare-and-swap (two operators' edits cannot silently
//! overwrite each other), watches from a revision (an instance that was
//! away catches up on what it missed, in order), and leases (an instance
//! that dies leaves the membership by itself).
//!
//! How it fits the single instance: etcd holds the services; each instance
//! follows them ([`follow`]) and applies every change through the same
//! service-change transaction the admin API uses on one instance, so each
//! change is in the instance's own durable log too: an instance that
//! restarts while etcd is down serves what it last applied. The admin API
//! writes to etcd instead of applying locally ([`store`]); the instance
//! applies its own write like everyone else, from the watch. Membership
//! and per-instance status live under a lease ([`membership`]).
//!
//! What stays local (as in Cassandra): the durable log and its hints. A
//! write acknowledged by one instance is delivered by that instance's
//! handoff; keys whose hints died with an instance are found by the
//! repair pass.

pub mod follow;
pub mod membership;
pub mod store;

use std::sync::Arc;

pub use follow::Follower;
pub use store::{Store, StoreError};

use crate::config::ClusterSpec;

/// This instance's part in the cluster: its etcd store, its name, and how
/// far it has followed.
#[derive(Debug)]
pub struct ClusterMode {
    pub store: Store,
    pub instance_id: String,
    pub spec: ClusterSpec,
    pub follower: Arc<Follower>,
}

/// The instance id: the config's, else `LEVEE_INSTANCE_ID`, else the host
/// name, each checked like the config field.
pub fn instance_id(spec: &ClusterSpec) -> Result<String, String> {
    let id = match &spec.instance_id {
        Some(id) => id.clone(),
        None => match std::env::var("LEVEE_INSTANCE_ID") {
            Ok(id) => id,
            Err(_) => hostname()?,
        },
    };
    crate::config::validate_instance_id(&id).map_err(|e| format!("cluster.instance_id: {e}"))?;
    Ok(id)
}

fn hostname() -> Result<String, String> {
    let mut buffer = [0u8; 256];
    // SAFETY: gethostname writes at most `buffer.len()` bytes into it.
    let done = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if done != 0 {
        return Err("cluster.instance_id: unset and the host name is unreadable".to_string());
    }
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    Ok(String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase())
}

impl ClusterMode {
    /// Connects (lazily) to the spec's etcd.
    pub async fn connect(spec: &ClusterSpec) -> Result<ClusterMode, String> {
        let instance_id = instance_id(spec)?;
        let store = Store::connect(spec).await.map_err(|e| e.to_string())?;
        Ok(ClusterMode {
            store,
            instance_id,
            spec: spec.clone(),
            follower: Arc::new(Follower::default()),
        })
    }
}
