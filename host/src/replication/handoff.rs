//! Hinted handoff: one background task per replica streams the writes it
//! missed back out of the log and delivers them, in LSN order, once the
//! replica is healthy again.
//!
//! # One node's task
//!
//! While the ledger says the node has a backlog, the task
//! 1. **probes** the node, unless it answered in the last second: with an
//!    active health check configured, its path must answer 2xx; without,
//!    `GET /healthz` must answer anything but a 5xx (an upstream with no
//!    such path answers 404, and that is an upstream that is up);
//! 2. **walks** the log from the backlog head: a blocking reader thread
//!    decodes records and passes those that target the node through a
//!    channel two records deep (so memory is a few records, whatever the
//!    backlog: a 1 GB backlog costs the same as a 1 KB one);
//! 3. for each record asks the ledger ([`HintLedger::judge`]): already
//!    acknowledged → skip; still being sent by the fan-out, or not yet
//!    registered → stop and wait; otherwise it is a hint: **dropped** if it
//!    is older than `hints.age_ms_max` or the node's backlog is over
//!    `hints.bytes_max` (oldest first; counted, and warned about once per
//!    walk), else **delivered** (the same request the fan-out sends, see
//!    [`super::deliver`]); a definitive rejection is dropped and counted, a
//!    failure ends the walk (the node is down again);
//! 4. reports every record it walks past ([`HintLedger::passed`]), which
//!    moves the node's cursor, until the end of the log
//!    ([`HintLedger::caught_up`]).
//!
//! A node that is down is not sent anything, but its walk still runs (every
//! few seconds) to drop hints past their limits, so an absent replica cannot
//! hold the log forever. A node removed from the configuration is treated
//! as down for good: its hints age out.
//!
//! # The supervisor
//!
//! One more task keeps a node task running for every configured replica
//! (and for every replica the ledger still has hints for), closes LSN gaps
//! left by failed appends ([`HintLedger::close_gaps`]) and publishes the
//! backlog gauges.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use levee_log::{LogError, Lsn as LogLsn};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::WritePlane;
use super::deliver::{self, SendOutcome};
use super::hints::{DropReason, HintLedger, HintLimits, Judgement, Lsn, NodeRef, Passed};
use super::record::{KIND_CLIENT_WRITE, WriteRecord};
use crate::base::clock;
use crate::base::shutdown::Shutdown;
use crate::cluster::directory::Directory;
use crate::cluster::health::Verdict;
use crate::cluster::service::Service;
use crate::upstream::UpstreamClient;

/// Records read ahead of the delivery (bounds the walk's memory).
const READ_AHEAD_RECORDS: usize = 2;
/// How often the supervisor looks for new nodes and LSN gaps.
const SUPERVISOR_TICK_MS: u64 = 500;
/// How long a node task sleeps when nothing wakes it.
const IDLE_TICK_MS: u64 = 1_000;
/// How long a walk blocked on an in-flight send waits before looking again.
const BLOCKED_RETRY_MS: u64 = 50;
/// Backoff between walks of a node that is down: from this ...
const DOWN_BACKOFF_MS_MIN: u64 = 200;
/// ... doubling up to this.
const DOWN_BACKOFF_MS_MAX: u64 = 2_000;
/// A probe's timeout when the service configures no active health check.
const PROBE_TIMEOUT_MS_DEFAULT: u64 = 1_000;
/// A node that answered this recently is not probed again before a walk.
const PROBE_REUSE_MS: u64 = 1_000;
/// A delivery's timeout: the service's per-try timeout, at least this.
const DELIVERY_TIMEOUT_MS_MIN: u64 = 1_000;

/// What the handoff works with besides the write plane.
#[derive(Clone, Debug)]
struct Env {
    directory: Arc<Directory>,
    client: UpstreamClient,
    shutdown: Shutdown,
}

/// Starts the supervisor; it stops when shutdown begins.
pub fn spawn(
    plane: Arc<WritePlane>,
    directory: Arc<Directory>,
    client: UpstreamClient,
    shutdown: Shutdown,
) -> JoinHandle<()> {
    let env = Env {
        directory,
        client,
        shutdown,
    };
    tokio::spawn(supervise(plane, env))
}

async fn supervise(plane: Arc<WritePlane>, state: Env) {
    let mut tasks: BTreeMap<NodeRef, JoinHandle<()>> = BTreeMap::new();
    let mut shutdown = state.shutdown.signal();
    loop {
        // Read the log's last LSN first: see HintLedger::close_gaps.
        let last_lsn = plane.log.stats().last_lsn;
        let closed = plane.ledger.close_gaps(last_lsn);
        if closed > 0 {
            tracing::warn!(
                closed,
                "LSNs appended without registration (failed appends); handoff will read them back"
            );
        }
        for node in wanted_nodes(&plane.ledger, &state) {
            let running = tasks.get(&node).is_some_and(|task| !task.is_finished());
            if !running {
                let task = NodeTask {
                    plane: plane.clone(),
                    state: state.clone(),
                    node: node.clone(),
                    answered_at_ms: AtomicU64::new(0),
                };
                tasks.insert(node, tokio::spawn(task.run()));
            }
        }
        for stats in plane.ledger.stats() {
            crate::base::metrics::hint_backlog(&stats.service, &stats.node, stats.backlog_records);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(SUPERVISOR_TICK_MS)) => {}
            _ = shutdown.wait_for(|&stop| stop) => break,
        }
    }
    for (_, task) in tasks {
        task.abort();
    }
}

/// Every configured replica, and every replica the ledger knows.
fn wanted_nodes(ledger: &HintLedger, state: &Env) -> Vec<NodeRef> {
    let mut nodes: Vec<NodeRef> = state
        .directory
        .services
        .load()
        .values()
        .flat_map(|service| {
            service
                .nodes
                .iter()
                .map(|node| NodeRef::new(service.name(), &node.spec.id))
        })
        .collect();
    nodes.extend(
        ledger
            .stats()
            .into_iter()
            .map(|stats| NodeRef::new(stats.service, stats.node)),
    );
    nodes.sort();
    nodes.dedup();
    nodes
}

/// The hint limits of a service.
pub fn hint_limits(service: &Service) -> HintLimits {
    service.spec.hints
}

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

/// One record, as the reader thread hands it over.
enum Item {
    /// Not a write for this node.
    Skip(Lsn),
    /// A write for this node.
    Hint(Lsn, WriteRecord),
    /// A write record that cannot be decoded.
    Undecodable(Lsn, String),
    /// The log failed; the walk ends.
    Failed(LogError),
}

struct NodeTask {
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
    async fn run(self) {
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
                        Some(passed) => (lsn, passed),
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

    /// Is the node up? With an active health check configured: its path
    /// answers 2xx. Without: `/healthz` answers anything but a 5xx (a
    /// service with no such path answers 404, and is up).
    async fn probe(&self, service: &Service, index: usize) -> bool {
        let healthy = self.probe_once(service, index).await;
        self.note_answer(healthy);
        healthy
    }

    async fn probe_once(&self, service: &Service, index: usize) -> bool {
        let node = &service.nodes[index];
        let (path, timeout_ms, strict) = match &service.spec.health_check {
            Some(check) => (check.path.as_str(), check.timeout_ms, true),
            None => ("/healthz", PROBE_TIMEOUT_MS_DEFAULT, false),
        };
        let uri = format!("{}://{}{}", node.scheme, node.authority, path);
        let Ok(request) = Request::get(uri).body(Full::new(Bytes::new())) else {
            return false;
        };
        match self
            .state
            .client
            .send(request, Duration::from_millis(timeout_ms))
            .await
        {
            Ok(response) if strict => response.status().is_success(),
            Ok(response) => !response.status().is_server_error(),
            Err(_) => false,
        }
    }
}

/// Reads the log from `from` on a blocking thread, handing over records
/// that concern `node` (and just the LSN of those that do not). The thread
/// ends when the log ends or the receiver is dropped.
fn spawn_reader(plane: Arc<WritePlane>, node: NodeRef, from: Lsn) -> mpsc::Receiver<Item> {
    let (sender, receiver) = mpsc::channel(READ_AHEAD_RECORDS);
    tokio::task::spawn_blocking(move || {
        let reader = match plane.log.read_from(from as LogLsn) {
            Ok(reader) => reader,
            Err(error) => {
                let _ = sender.blocking_send(Item::Failed(error));
                return;
            }
        };
        for entry in reader {
            let item = match entry {
                Ok(entry) => classify(&node, entry.lsn, entry.kind, entry.payload),
                Err(error) => Item::Failed(error),
            };
            let failed = matches!(item, Item::Failed(_));
            if sender.blocking_send(item).is_err() || failed {
                return;
            }
        }
    });
    receiver
}

/// Sorts one log record for `node`'s walk.
fn classify(node: &NodeRef, lsn: Lsn, kind: u8, payload: Vec<u8>) -> Item {
    if kind != KIND_CLIENT_WRITE {
        return Item::Skip(lsn);
    }
    // Decoding borrows the body from the payload: no copy.
    match WriteRecord::decode(payload) {
        Ok(record)
            if record.header.service != node.service || !record.header.targets_node(&node.node) =>
        {
            Item::Skip(lsn)
        }
        Ok(record) => Item::Hint(lsn, record),
        Err(error) => Item::Undecodable(lsn, error.to_string()),
    }
}
