//! Following etcd's services: a snapshot, then the watch, each change
//! applied through the service-change transaction.
//!
//! [`apply_snapshot`] brings the local services to etcd's (adds, replaces,
//! deletes); [`apply_event`] applies one watched change. The loop that
//! drives them (reconnecting, resyncing after a compaction or an outage)
//! is the process's (`app::cluster`), since it needs the whole state.
//! [`Follower`] records how far this instance got, for its status and for
//! the admin API's wait.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use etcd_client::{Event, EventType};
use tokio::sync::Notify;

use super::store::{Keys, PluginBinding, Snapshot, Status, decode};
use crate::config::ServiceSpec;
use crate::control::service_change::{ChangeContext, ChangeRefused};

/// How far this instance has followed.
#[derive(Debug, Default)]
pub struct Follower {
    /// The configuration revision applied (0: none yet).
    applied: AtomicI64,
    /// The latest change this instance could not apply, if any.
    error: Mutex<Option<String>>,
    /// Woken at every change of the two above.
    changed: Notify,
}

impl Follower {
    pub fn applied(&self) -> i64 {
        self.applied.load(Ordering::Acquire)
    }

    pub fn error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records revision `revision` applied, with the problem it left.
    pub fn record(&self, revision: i64, error: Option<String>) {
        self.applied.fetch_max(revision, Ordering::AcqRel);
        *self.error.lock().unwrap_or_else(|p| p.into_inner()) = error;
        self.changed.notify_waiters();
    }

    /// Resolves at the next [`Follower::record`].
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Waits at most `limit` for revision `revision` to be applied.
    pub async fn wait_for(&self, revision: i64, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        // Bounded by the deadline.
        loop {
            let notified = self.changed.notified();
            if self.applied() >= revision {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.applied() >= revision;
            }
        }
    }
}

/// Serves `binding` as plugin `name` unless it already does: pulls by
/// digest (the instance's OCI cache first), validates and swaps through
/// the ordinary load path. A failure keeps the last good version serving
/// and is this instance's problem to report, never the others'.
pub async fn bind_plugin(
    ctx: &ChangeContext<'_>,
    name: &str,
    binding: &PluginBinding,
) -> Option<String> {
    let serving = ctx
        .host
        .registry()
        .info(name)
        .and_then(|info| info.current)
        .map(|current| format!("sha256:{}", current.version));
    if serving.as_deref() == Some(binding.layer_digest.as_str()) {
        return None;
    }
    let options = crate::control::oci::Options {
        plain_http: binding.plain_http,
    };
    match crate::control::oci::install::install(ctx.host, name, &binding.reference, &options).await
    {
        Ok(_) => None,
        Err(error) => Some(format!("plugin {name} ({}): {error}", binding.reference)),
    }
}

/// Brings the local plugins and services to `snapshot`'s: plugins first
/// (services may name them), each service that differs is put, each etcd
/// lacks is deleted. Every refusal is reported; the rest still apply.
pub async fn apply_snapshot(ctx: &ChangeContext<'_>, snapshot: &Snapshot) -> Option<String> {
    let local = ctx.host.directory().config.load_full();
    let mut problems = Vec::new();
    for (name, binding) in &snapshot.plugins {
        problems.extend(bind_plugin(ctx, name, binding).await);
    }
    for (spec, _) in &snapshot.services {
        if local.service(&spec.name) != Some(spec)
            && let Err(refused) = ctx.put(spec.clone()).await
        {
            problems.push(format!("service {}: {refused}", spec.name));
        }
    }
    for spec in &local.services {
        let kept = snapshot.services.iter().any(|(s, _)| s.name == spec.name);
        if !kept
            && let Err(refused) = ctx.delete(&spec.name).await
            && !matches!(refused, ChangeRefused::NotFound(_))
        {
            problems.push(format!("service {}: {refused}", spec.name));
        }
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

/// What one watched event asks of this instance.
#[derive(Debug)]
pub enum Change {
    Put(Box<ServiceSpec>),
    Delete(String),
    /// The configuration revision moved (`revision` key): apply nothing.
    Revision(i64),
    /// An instance's status was written.
    Status(Box<Status>),
    /// A plugin version was bound cluster-wide.
    Plugin(String, PluginBinding),
    /// Not a service key (membership, status).
    Other,
}

/// Reads one watched event.
pub fn change_of(keys: &Keys, event: &Event) -> Result<Change, String> {
    let Some(kv) = event.kv() else {
        return Ok(Change::Other);
    };
    let key = String::from_utf8_lossy(kv.key());
    if key == keys.revision() {
        return Ok(Change::Revision(kv.mod_revision()));
    }
    if key.starts_with(&keys.statuses()) && event.event_type() == EventType::Put {
        return decode::<Status>(&key, kv.value())
            .map(|status| Change::Status(Box::new(status)))
            .map_err(|e| e.to_string());
    }
    if let Some(name) = key.strip_prefix(&keys.plugins())
        && event.event_type() == EventType::Put
    {
        return decode::<PluginBinding>(&key, kv.value())
            .map(|binding| Change::Plugin(name.to_string(), binding))
            .map_err(|e| e.to_string());
    }
    let Some(name) = key.strip_prefix(&keys.services()) else {
        return Ok(Change::Other);
    };
    match event.event_type() {
        EventType::Delete => Ok(Change::Delete(name.to_string())),
        EventType::Put => decode::<ServiceSpec>(&key, kv.value())
            .map(|spec| Change::Put(Box::new(spec)))
            .map_err(|e| e.to_string()),
    }
}

/// Applies one change; the refusal, if any, for the status.
pub async fn apply_change(ctx: &ChangeContext<'_>, change: Change) -> Option<String> {
    match change {
        Change::Put(spec) => {
            let name = spec.name.clone();
            let unchanged = ctx.host.directory().config.load().service(&name) == Some(&*spec);
            if unchanged {
                return None;
            }
            ctx.put(*spec)
                .await
                .err()
                .map(|refused| format!("service {name}: {refused}"))
        }
        Change::Delete(name) => match ctx.delete(&name).await {
            Ok(()) | Err(ChangeRefused::NotFound(_)) => None,
            Err(refused) => Some(format!("service {name}: {refused}")),
        },
        Change::Plugin(name, binding) => bind_plugin(ctx, &name, &binding).await,
        Change::Revision(_) | Change::Status(_) | Change::Other => None,
    }
}
