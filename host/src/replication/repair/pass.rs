//! The repair pass: a background task that takes a few due keys per tick
//! and brings each key's replicas to the newest version among them (see
//! the [`super`] module doc for the rules).
//!
//! Pacing: at most [`REPAIR_KEYS_PER_TICK`] keys per tick, one key at a
//! time (its replicas in parallel); the next tick comes after
//! [`REPAIR_BUSY_PAUSE_MS`] when the tick was full, else after
//! [`REPAIR_TICK_MS`]. A value is buffered at most once per replica of the
//! key being repaired, and at most the service's `body_bytes_max`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use levee_version::{HELD_VERSION_HEADER, VERSION_HEADER, Version};
use tokio::task::JoinHandle;

use super::{Finish, RepairKey, Repairs};
use crate::base::clock;
use crate::base::shutdown::Shutdown;
use crate::cluster::directory::Directory;
use crate::cluster::service::{Service, ServiceNode};
use crate::replication::WritePlane;
use crate::upstream::UpstreamClient;

/// Keys repaired per tick, at most.
pub const REPAIR_KEYS_PER_TICK: usize = 32;
/// The pause between ticks when there is nothing (more) due.
pub const REPAIR_TICK_MS: u64 = 1_000;
/// The pause after a full tick.
pub const REPAIR_BUSY_PAUSE_MS: u64 = 50;
/// A repair read's or write's timeout.
pub const REPAIR_REQUEST_TIMEOUT_MS: u64 = 2_000;
/// The `x-request-id` of repair requests (for a replica's request log).
const REPAIR_REQUEST_ID: &str = "levee-repair";

/// What one replica holds for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// A value (a 2xx; version ZERO when the answer carried none).
    Value {
        version: Version,
        body: Bytes,
        content_type: Option<HeaderValue>,
    },
    /// A deletion that remembers its version (404 with a version; the
    /// bundled replica also says `x-levee-tombstone: true`, but the version
    /// alone decides).
    Tombstone(Version),
    /// Never written (404 without a version).
    Absent,
    /// A definitive refusal of the key (a 4xx other than 404, 408, 429):
    /// asking again cannot help, so the replica is left out of the repair.
    Refused,
}

impl Held {
    pub fn version(&self) -> Version {
        match self {
            Held::Value { version, .. } | Held::Tombstone(version) => *version,
            Held::Absent | Held::Refused => Version::ZERO,
        }
    }
}

/// What the pass will do for a key, given what each replica answered
/// (`None`: it did not answer usably).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The newest version seen and what holds it; `None` when nothing
    /// versioned was seen (nothing can be copied).
    pub newest: Option<Held>,
    /// Indices (into the answers) of replicas holding an older version.
    pub laggards: Vec<usize>,
    /// Some replica did not answer: the key must be looked at again.
    pub incomplete: bool,
}

/// Picks the newest version among `answers` (a tombstone counts like a
/// value; ties keep the first) and the replicas that hold an older one.
/// Version ZERO (absent, or written without a version) is never copied:
/// there is no version to order it by.
pub fn plan(answers: &[Option<Held>]) -> Plan {
    let incomplete = answers.iter().any(Option::is_none);
    let newest = answers
        .iter()
        .flatten()
        .fold(None::<&Held>, |best, held| match best {
            Some(best) if best.version() >= held.version() => Some(best),
            _ => Some(held),
        })
        .filter(|held| held.version() > Version::ZERO)
        .cloned();
    let laggards = match &newest {
        Some(newest) => answers
            .iter()
            .enumerate()
            .filter_map(|(index, held)| match held {
                Some(Held::Refused) => None,
                Some(held) if held.version() < newest.version() => Some(index),
                _ => None,
            })
            .collect(),
        None => Vec::new(),
    };
    Plan {
        newest,
        laggards,
        incomplete,
    }
}

/// Starts the pass; it stops when shutdown begins.
pub fn spawn(
    plane: Arc<WritePlane>,
    directory: Arc<Directory>,
    client: UpstreamClient,
    shutdown: Shutdown,
) -> JoinHandle<()> {
    tokio::spawn(run(plane, directory, client, shutdown))
}

async fn run(
    plane: Arc<WritePlane>,
    directory: Arc<Directory>,
    client: UpstreamClient,
    shutdown: Shutdown,
) {
    let mut stop = shutdown.signal();
    let repairs: &Repairs = &plane.repairs;
    loop {
        let batch = repairs.take_due(clock::now_ms(), REPAIR_KEYS_PER_TICK);
        let full = batch.len() >= REPAIR_KEYS_PER_TICK;
        for taken in batch {
            if *stop.borrow() {
                return;
            }
            let finish = repair_key(&plane, &directory, &client, taken.key()).await;
            repairs.finish(taken, finish).await;
        }
        let pause_ms = if full {
            REPAIR_BUSY_PAUSE_MS
        } else {
            REPAIR_TICK_MS
        };
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(pause_ms)) => {}
            _ = stop.wait_for(|&stop| stop) => return,
        }
    }
}

/// Repairs one key: read every replica, write the newest to the older ones.
async fn repair_key(
    plane: &WritePlane,
    directory: &Directory,
    client: &UpstreamClient,
    key: &RepairKey,
) -> Finish {
    let Some(service) = directory.service(&key.service) else {
        tracing::warn!(
            service = key.service,
            key = key.key,
            "key to repair belongs to a service no longer configured; forgotten"
        );
        return Finish::Done;
    };
    let replicas: Vec<usize> = service.preference(key.key.as_bytes()).iter().collect();
    let reads = replicas.iter().map(|&index| {
        let (client, service, path) = (client.clone(), service.clone(), key.path.clone());
        tokio::spawn(async move { read(&client, &service, &service.nodes[index], &path).await })
    });
    let answers = join_ordered(reads.collect()).await;
    let plan = plan(&answers);
    let Some(newest) = &plan.newest else {
        return if plan.incomplete {
            Finish::Retry
        } else {
            Finish::Done
        };
    };
    // Versions seen on replicas move the clock (so a later write is newer).
    crate::replication::clock::observe(&plane.hlc, newest.version());
    let writes = plan.laggards.iter().map(|&at| {
        let (client, service, path) = (client.clone(), service.clone(), key.path.clone());
        let (index, newest) = (replicas[at], newest.clone());
        tokio::spawn(
            async move { Some(write(&client, &service.nodes[index], &path, &newest).await) },
        )
    });
    let written = join_ordered(writes.collect()).await;
    let copied = written
        .iter()
        .filter(|done| matches!(done, Some(true)))
        .count();
    if copied > 0 {
        tracing::info!(service = key.service, key = key.key, version = %newest.version(), replicas = copied, "repaired");
    }
    if plan.incomplete || copied < written.len() {
        Finish::Retry
    } else {
        Finish::Done
    }
}

/// Awaits every task, in order; a task that panicked gives `None`.
async fn join_ordered<T>(tasks: Vec<JoinHandle<Option<T>>>) -> Vec<Option<T>> {
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await.ok().flatten());
    }
    results
}

fn uri(node: &ServiceNode, path: &str) -> Option<Uri> {
    Uri::builder()
        .scheme(node.scheme.clone())
        .authority(node.authority.clone())
        .path_and_query(path)
        .build()
        .ok()
}

/// GETs `path` from `node`: what it holds, or `None` if it did not answer
/// usably (down, 5xx, timeout, malformed version, oversized value).
async fn read(
    client: &UpstreamClient,
    service: &Service,
    node: &ServiceNode,
    path: &str,
) -> Option<Held> {
    let request = Request::builder()
        .method(Method::GET)
        .uri(uri(node, path)?)
        .header("x-request-id", REPAIR_REQUEST_ID)
        .body(Full::new(Bytes::new()))
        .ok()?;
    let timeout = Duration::from_millis(REPAIR_REQUEST_TIMEOUT_MS);
    let started = tokio::time::Instant::now();
    let response = client.send(request, timeout).await.ok()?;
    let (parts, incoming) = response.into_parts();
    let version = header_version(&parts.headers, VERSION_HEADER, &node.spec.id)?;
    if parts.status == StatusCode::NOT_FOUND {
        return Some(version.map_or(Held::Absent, Held::Tombstone));
    }
    if is_definitive_refusal(parts.status) {
        tracing::warn!(node = node.spec.id, path, status = %parts.status, "replica refuses to read the key; left out of its repair");
        return Some(Held::Refused);
    }
    if !parts.status.is_success() {
        tracing::debug!(node = node.spec.id, status = %parts.status, "repair read failed");
        return None;
    }
    let limit = usize::try_from(service.spec.body_bytes_max).unwrap_or(usize::MAX);
    let remaining = timeout.saturating_sub(started.elapsed());
    let body = tokio::time::timeout(remaining, Limited::new(incoming, limit).collect())
        .await
        .ok()?
        .ok()?
        .to_bytes();
    Some(Held::Value {
        version: version.unwrap_or(Version::ZERO),
        body,
        content_type: parts.headers.get(CONTENT_TYPE).cloned(),
    })
}

/// A 4xx that asking again cannot change (the rule of
/// `deliver::judge`), other than 404 (a read's "absent").
fn is_definitive_refusal(status: StatusCode) -> bool {
    status.is_client_error()
        && status != StatusCode::NOT_FOUND
        && status != StatusCode::REQUEST_TIMEOUT
        && status != StatusCode::TOO_MANY_REQUESTS
}

/// The version in header `name`: `Some(None)` when absent, `None` when
/// malformed (the answer cannot be judged).
fn header_version(headers: &HeaderMap, name: &str, node: &str) -> Option<Option<Version>> {
    let Some(value) = headers.get(name) else {
        return Some(None);
    };
    match value.to_str().ok().map(Version::parse) {
        Some(Ok(version)) => Some(Some(version)),
        _ => {
            tracing::warn!(node, header = name, value = ?value, "replica answered a malformed version");
            None
        }
    }
}

/// Writes `newest` to `node`: true when the node now holds it or something
/// newer.
async fn write(client: &UpstreamClient, node: &ServiceNode, path: &str, newest: &Held) -> bool {
    let Some(request) = write_request(node, path, newest) else {
        return false;
    };
    let timeout = Duration::from_millis(REPAIR_REQUEST_TIMEOUT_MS);
    match client.send(request, timeout).await {
        Ok(response) if response.status().is_success() => true,
        Ok(response)
            if response.status() == StatusCode::CONFLICT
                && response.headers().contains_key(HELD_VERSION_HEADER) =>
        {
            true // Someone wrote something newer meanwhile.
        }
        Ok(response) if is_definitive_refusal(response.status()) => {
            tracing::warn!(node = node.spec.id, path, status = %response.status(), "replica refuses the repair write; left as it is");
            true // Sending again cannot help.
        }
        Ok(response) => {
            tracing::debug!(node = node.spec.id, status = %response.status(), "repair write failed");
            false
        }
        Err(error) => {
            tracing::debug!(node = node.spec.id, kind = ?error.kind, "repair write failed");
            false
        }
    }
}

fn write_request(node: &ServiceNode, path: &str, newest: &Held) -> Option<Request<Full<Bytes>>> {
    let builder = Request::builder()
        .uri(uri(node, path)?)
        .header(VERSION_HEADER, newest.version().to_string())
        .header("x-request-id", REPAIR_REQUEST_ID);
    let request = match newest {
        Held::Value {
            body, content_type, ..
        } => {
            let mut builder = builder.method(Method::PUT);
            if let Some(content_type) = content_type {
                builder = builder.header(CONTENT_TYPE, content_type);
            }
            builder.body(Full::new(body.clone()))
        }
        Held::Tombstone(_) => builder.method(Method::DELETE).body(Full::new(Bytes::new())),
        Held::Absent | Held::Refused => return None,
    };
    request.ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use levee_version::InstanceId;

    fn version(ms: u64) -> Version {
        Version {
            physical_ms: ms,
            logical: 0,
            instance: InstanceId(7),
        }
    }

    fn value(ms: u64, body: &str) -> Option<Held> {
        Some(Held::Value {
            version: version(ms),
            body: Bytes::from(body.to_owned()),
            content_type: None,
        })
    }

    #[test]
    fn the_newest_value_goes_to_the_older_replicas() {
        let answers = [value(10, "old"), value(20, "new"), Some(Held::Absent)];
        let plan = plan(&answers);
        assert_eq!(plan.newest, answers[1].clone());
        assert_eq!(plan.laggards, vec![0, 2]);
        assert!(!plan.incomplete);
    }

    #[test]
    fn a_newer_tombstone_wins_over_an_older_value() {
        let answers = [
            value(10, "v"),
            Some(Held::Tombstone(version(11))),
            value(10, "v"),
        ];
        let plan = plan(&answers);
        assert_eq!(plan.newest, Some(Held::Tombstone(version(11))));
        assert_eq!(plan.laggards, vec![0, 2]);
    }

    #[test]
    fn a_newer_value_wins_over_an_older_tombstone() {
        let answers = [Some(Held::Tombstone(version(5))), value(6, "back"), None];
        let plan = plan(&answers);
        assert_eq!(plan.newest, answers[1].clone());
        assert_eq!(plan.laggards, vec![0]);
        assert!(
            plan.incomplete,
            "a replica that did not answer keeps the key"
        );
    }

    #[test]
    fn unversioned_or_absent_everywhere_copies_nothing() {
        let unversioned = Some(Held::Value {
            version: Version::ZERO,
            body: Bytes::from_static(b"direct"),
            content_type: None,
        });
        let plan = plan(&[unversioned, Some(Held::Absent), None]);
        assert_eq!(plan.newest, None);
        assert!(plan.laggards.is_empty());
        assert!(plan.incomplete);
    }

    #[test]
    fn a_replica_refusing_the_key_is_neither_source_nor_target() {
        let answers = [value(3, "x"), Some(Held::Refused), Some(Held::Absent)];
        let plan = plan(&answers);
        assert_eq!(plan.laggards, vec![2]);
        assert!(!plan.incomplete);
    }

    #[test]
    fn replicas_at_the_newest_version_are_left_alone() {
        let answers = [value(9, "x"), value(9, "x"), value(9, "x")];
        let plan = plan(&answers);
        assert!(plan.laggards.is_empty());
        assert_eq!(plan.newest.map(|held| held.version()), Some(version(9)));
    }
}
