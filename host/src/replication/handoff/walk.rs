//! One node's handoff task: wait for a backlog, probe the node, walk the
//! backlog in LSN order, back off while the node is down. The steps are in
//! the [`super`] module doc; the ledger decides what each record needs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use levee_log::LogError;

use super::reader::{Item, spawn_reader};
use super::{Env, hint_limits};
use crate::base::clock;
use crate::cluster::health::Verdict;
use crate::cluster::probe::probe;
use crate::cluster::service::Service;
use crate::replication::WritePlane;
use crate::replication::deliver::{self, SendOutcome};
use crate::replication::hints::{DropReason, HintLimits, Judgement, Lsn, NodeRef, Passed};
use crate::replication::record::WriteRecord;
use crate::upstream::UpstreamClient;

/// How long a node task sleeps when nothing wakes it.
const IDLE_TICK_MS: u64 = 1_000;
/// How long a walk blocked on an in-flight send waits before looking again.
const BLOCKED_RETRY_MS: u64 = 50;
/// Backoff between walks of a node that is down: from this ...
const DOWN_BACKOFF_MS_MIN: u64 = 200;
/// ... doubling up to this.
const DOWN_BACKOFF_MS_MAX: u64 = 2_000;
/// A node that answered this recently is not probed again before a walk.
const PROBE_REUSE_MS: u64 = 1_000;
/// A delivery's timeout: the service's per-try timeout, at least this.
const DELIVERY_TIMEOUT_MS_MIN: u64 = 1_000;

/// How a walk ended.
#[derive(Debug, PartialEq, Eq)]
enum WalkEnd {
    /// Reached the end of the log; the node is up to date.
    CaughtUp,
    /// A record is still being sent by the fan-out (or not yet registered).
    Blocked,
    /// The node is down (probe failed, or a delivery failed).
    NodeDown,
    /// The backlog head moved under the walk; walk again.
    Restart,
    /// The log could not be read; try again later.
    Stalled,
}

/// One node's handoff task.
pub(super) struct NodeTask {
    plane: Arc<WritePlane>,
    state: Env,
    node: NodeRef,
    /// `clock::now_ms` of the node's last answer (0: none, or it failed).
    answered_at_ms: AtomicU64,
}

/// Drops seen during one walk, reported once at its end.
#[derive(Default)]
struct DropTally {
    by_reason: BTreeMap<&'static str, (DropReason, u64, u64)>,
}

impl DropTally {
    fn add(&mut self, reason: DropReason, bytes: u64) {
        let entry = self
            .by_reason
            .entry(reason.label())
            .or_insert((reason, 0, 0));
        entry.1 += 1;
        entry.2 += bytes;
    }

    /// Logs and counts the walk's drops: never silent.
    fn report(&self, node: &NodeRef) {
        for (label, (reason, records, bytes)) in &self.by_reason {
            let reason = reason.describe();
            tracing::warn!(%node, records, bytes, reason, "hints dropped: these writes will not reach this replica");
            crate::base::metrics::hints_dropped(&node.service, &node.node, label, *records);
        }
    }
}

impl NodeTask {
    pub(super) fn new(plane: Arc<WritePlane>, state: Env, node: NodeRef) -> NodeTask {
        NodeTask {
            plane,
            state,
            node,
            answered_at_ms: AtomicU64::new(0),
        }
    }

    pub(super) async fn run(self) {
        let signal = self.plane.ledger.signal(&self.node);
        let mut shutdown = self.state.shutdown.signal();
        let mut down_backoff_ms = DOWN_BACKOFF_MS_MIN;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let wait_ms = match self.plane.ledger.backlog_from(&self.node) {
                None => IDLE_TICK_MS,
                Some(from) => match self.walk(from).await {
                    WalkEnd::CaughtUp => {
                        down_backoff_ms = DOWN_BACKOFF_MS_MIN;
                        continue;
                    }
                    WalkEnd::Restart => {
                        tokio::task::yield_now().await;
                        continue;
                    }
                    WalkEnd::Blocked => {
                        down_backoff_ms = DOWN_BACKOFF_MS_MIN;
                        BLOCKED_RETRY_MS
                    }
                    WalkEnd::NodeDown | WalkEnd::Stalled => {
                        let wait_ms = down_backoff_ms;
                        down_backoff_ms = (down_backoff_ms * 2).min(DOWN_BACKOFF_MS_MAX);
                        // A node that is down is not woken by new misses.
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(wait_ms)) => {}
                            _ = shutdown.wait_for(|&stop| stop) => return,
                        }
                        continue;
                    }
                },
            };
            tokio::select! {
                _ = signal.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(wait_ms)) => {}
                _ = shutdown.wait_for(|&stop| stop) => return,
            }
        }
    }

    /// Where the node is now, if it is still configured.
    fn resolve(&self) -> Option<(Arc<Service>, usize)> {
        let service = self.state.directory.service(&self.node.service)?;
        let index = service.node_index(&self.node.node)?;
        Some((service, index))
    }

    /// Walks the backlog from `from`; see the module doc.
    async fn walk(&self, from: Lsn) -> WalkEnd {
        let target = self.resolve();
        let healthy = match &target {
            Some((service, index)) => self.answered_recently() || self.probe(service, *index).await,
            None => false,
        };
        let limits = target
            .as_ref()
            .map(|(service, _)| hint_limits(service))
            .unwrap_or_default();
        let mut items = spawn_reader(self.plane.clone(), self.node.clone(), from);
        let mut drops = DropTally::default();
        let mut delivered_records = 0u64;
        let mut expected = from;
        let end = loop {
            let Some(item) = items.recv().await else {
                break if self.plane.ledger.caught_up(&self.node, expected) {
                    WalkEnd::CaughtUp
                } else {
                    WalkEnd::Restart
                };
            };
            let (lsn, passed) = match item {
                Item::Failed(LogError::Compacted {
                    first_available, ..
                }) => {
                    self.plane
                        .ledger
                        .skip_compacted(&self.node, first_available);
                    break WalkEnd::Restart;
                }
                Item::Failed(error) => {
                    tracing::error!(node = %self.node, %error, "hinted handoff cannot read the log");
                    break WalkEnd::Stalled;
                }
                Item::Skip(lsn) => (lsn, Passed::NotTargeted),
                Item::Undecodable(lsn, reason) => {
                    tracing::error!(node = %self.node, lsn, %reason, "log record cannot be decoded; dropped");
                    (
                        lsn,
                        Passed::Dropped {
                            reason: DropReason::Undecodable,
                            bytes: 0,
                        },
                    )
                }
                Item::Hint(lsn, record) => match self.plane.ledger.judge(&self.node, lsn) {
                    Judgement::AlreadyDone => (lsn, Passed::AlreadyDone),
                    Judgement::InFlight | Judgement::Unregistered => break WalkEnd::Blocked,
                    Judgement::Deliver => match self
                        .hint(lsn, &record, &limits, healthy, target.as_ref())
                        .await
                    {
                        Some(passed) => {
                            if matches!(passed, Passed::Dropped { .. }) {
                                // Durable before the cursor moves past it.
                                self.plane.repairs.record_dropped(&record.header).await;
                            }
                            (lsn, passed)
                        }
                        None => break WalkEnd::NodeDown,
                    },
                },
            };
            if lsn != expected {
                break WalkEnd::Restart;
            }
            match passed {
                Passed::Dropped { reason, bytes } => drops.add(reason, bytes),
                Passed::Delivered { .. } => delivered_records += 1,
                Passed::NotTargeted | Passed::AlreadyDone => {}
            }
            if !self.plane.ledger.passed(&self.node, lsn, passed) {
                break WalkEnd::Restart;
            }
            expected = lsn + 1;
        };
        drops.report(&self.node);
        if delivered_records > 0 {
            tracing::info!(node = %self.node, delivered_records, end = ?end, "hinted handoff delivered");
            crate::base::metrics::hints_delivered(
                &self.node.service,
                &self.node.node,
                delivered_records,
            );
        }
        end
    }

    /// Drops or delivers one hint; `None` if the node is down.
    async fn hint(
        &self,
        lsn: Lsn,
        record: &WriteRecord,
        limits: &HintLimits,
        healthy: bool,
        target: Option<&(Arc<Service>, usize)>,
    ) -> Option<Passed> {
        let bytes = record.body.len() as u64;
        let age_ms = clock::unix_ms().saturating_sub(record.header.accepted_unix_ms);
        if age_ms > limits.age_ms_max {
            return Some(Passed::Dropped {
                reason: DropReason::Age,
                bytes,
            });
        }
        if self.plane.ledger.backlog_bytes(&self.node) > limits.bytes_max {
            return Some(Passed::Dropped {
                reason: DropReason::Budget,
                bytes,
            });
        }
        let (service, index) = target.filter(|_| healthy)?;
        let node = &service.nodes[*index];
        let timeout_ms = service
            .spec
            .timeouts
            .per_try_ms
            .max(DELIVERY_TIMEOUT_MS_MIN);
        let started_ms = clock::now_ms();
        let outcome = deliver::send_write(
            &self.state.client,
            node,
            lsn,
            &record.header,
            &record.body,
            Duration::from_millis(timeout_ms),
        )
        .await;
        let elapsed_ms = clock::now_ms().saturating_sub(started_ms);
        match outcome {
            SendOutcome::Acked(_) => {
                self.note_answer(true);
                node.health
                    .record(Verdict::Success, elapsed_ms, clock::now_ms());
                Some(Passed::Delivered { bytes })
            }
            SendOutcome::Superseded(held) => {
                // The replica holds a newer version: nothing to deliver,
                // ever. Settled like a delivery (not a drop: nothing is lost).
                self.note_answer(true);
                node.health
                    .record(Verdict::Success, elapsed_ms, clock::now_ms());
                crate::replication::clock::observe(&self.plane.hlc, held);
                tracing::debug!(node = %self.node, lsn, %held, "hint superseded by a newer version on the replica");
                Some(Passed::Delivered { bytes })
            }
            SendOutcome::Rejected(answer) => {
                self.note_answer(true);
                tracing::warn!(node = %self.node, lsn, status = answer.status.as_u16(), "replica rejected a hint for good");
                Some(Passed::Dropped {
                    reason: DropReason::Rejected,
                    bytes,
                })
            }
            SendOutcome::Failed(result) => {
                self.note_answer(false);
                tracing::debug!(node = %self.node, lsn, failure = %deliver::describe_failure(result), "hint delivery failed");
                None
            }
        }
    }

    /// Did the node answer a probe or a delivery within the last
    /// [`PROBE_REUSE_MS`]? Then a walk need not probe it again.
    fn answered_recently(&self) -> bool {
        let at_ms = self.answered_at_ms.load(Ordering::Relaxed);
        at_ms != 0 && clock::now_ms().saturating_sub(at_ms) < PROBE_REUSE_MS
    }

    fn note_answer(&self, answered: bool) {
        let at_ms = if answered { clock::now_ms().max(1) } else { 0 };
        self.answered_at_ms.store(at_ms, Ordering::Relaxed);
    }

    /// Is the node up? Asks [`node_is_up`] and remembers the answer.
    async fn probe(&self, service: &Service, index: usize) -> bool {
        let up = node_is_up(&self.state.client, service, index).await;
        self.note_answer(up);
        up
    }
}

/// Is node `index` of `service` up? The one probe rule of
/// [`crate::cluster::probe`] with the service's `health_check`, if any: the
/// answer the active health checks would give for the same node.
async fn node_is_up(client: &UpstreamClient, service: &Service, index: usize) -> bool {
    let node = &service.nodes[index];
    let result = probe(client, node, service.spec.health_check.as_ref()).await;
    if !result.up {
        tracing::debug!(
            service = service.name(),
            node = node.spec.id,
            answer = ?result.answer,
            latency_ms = result.latency_ms,
            "handoff probe: node down"
        );
    }
    result.up
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use hyper::StatusCode;

    use super::*;
    use crate::cluster::probe::check_once;
    use crate::cluster::probe::testing::{answering, silent};
    use crate::config::{HealthCheckSpec, ServiceSpec};

    fn service(address: SocketAddr, check: Option<HealthCheckSpec>) -> Service {
        let mut spec = serde_json::json!({
            "name": "kv",
            "nodes": [{"id": "a", "url": format!("http://{address}")}],
            "key": {"path_segment": 1},
        });
        if let Some(check) = check {
            spec["health_check"] = serde_json::to_value(check).unwrap();
        }
        let spec: ServiceSpec = serde_json::from_value(spec).unwrap();
        spec.validate().unwrap();
        let runtime = levee_plugin::Runtime::new(levee_plugin::RuntimeOptions::default()).unwrap();
        Service::build(spec, &runtime).unwrap()
    }

    /// The handoff and the active health checks reach the same verdict on
    /// the same node, because both ask `cluster::probe::probe`.
    #[tokio::test]
    async fn the_handoff_and_the_health_checks_agree() {
        let client = UpstreamClient::new();
        let check = HealthCheckSpec {
            path: "/ready".into(),
            timeout_ms: 150,
            ..Default::default()
        };
        let servers = [
            (answering(StatusCode::OK).await, true),
            (answering(StatusCode::NOT_FOUND).await, false),
            (answering(StatusCode::SERVICE_UNAVAILABLE).await, false),
            (silent().await, false),
        ];
        for (address, up) in servers {
            let service = service(address, Some(check.clone()));
            let handoff = node_is_up(&client, &service, 0).await;
            let health = check_once(&client, &service.nodes[0], &check).await.up;
            assert_eq!(handoff, health, "{address}");
            assert_eq!(handoff, up, "{address}");
        }
    }

    /// Without a `health_check` the handoff probes `/healthz` and takes
    /// anything below 500: a replica without that path is up.
    #[tokio::test]
    async fn without_a_health_check_the_handoff_takes_a_404() {
        let client = UpstreamClient::new();
        for (status, up) in [
            (StatusCode::OK, true),
            (StatusCode::NOT_FOUND, true),
            (StatusCode::SERVICE_UNAVAILABLE, false),
        ] {
            let service = service(answering(status).await, None);
            assert_eq!(node_is_up(&client, &service, 0).await, up, "{status}");
        }
    }
}
