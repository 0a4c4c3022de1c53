//! Hinted handoff: one background task per replica streams the writes it
//! missed back out of the log and delivers them, in LSN order, once the
//! replica is healthy again.
//!
//! # One node's task (`walk`)
//!
//! While the ledger says the node has a backlog, the task
//! 1. **probes** the node, unless it answered in the last second, under the
//!    one probe rule of [`crate::cluster::probe`] (the active health checks
//!    ask the same function): with a `health_check` configured, its path
//!    must answer 2xx; without, `GET /healthz` must answer anything below
//!    500 (an upstream with no such path answers 404, and that is an
//!    upstream that is up);
//! 2. **walks** the log from the backlog head: a blocking `reader` thread
//!    decodes records and passes those that target the node through a
//!    channel two records deep (so memory is a few records, whatever the
//!    backlog: a 1 GB backlog costs the same as a 1 KB one);
//! 3. for each record asks the ledger ([`HintLedger::judge`]): already
//!    acknowledged → skip; still being sent by the fan-out, or not yet
//!    registered → stop and wait; otherwise it is a hint: **dropped** if it
//!    is older than `hints.age_ms_max` or the node's backlog is over
//!    `hints.bytes_max` (oldest first; counted, and warned about once per
//!    walk), else **delivered** (the same request the fan-out sends, see
//!    [`super::deliver`]); a superseded answer (the replica holds a newer
//!    version) settles the hint like a delivery, a definitive rejection is
//!    dropped and counted, a failure ends the walk (the node is down again).
//!    A dropped hint's key is recorded durably for repair
//!    ([`super::repair`]) before the cursor moves past it (an undecodable
//!    record has no key to record);
//! 4. reports every record it walks past ([`HintLedger::passed`]), which
//!    moves the node's cursor, until the end of the log
//!    ([`HintLedger::caught_up`]).
//!
//! A node that is down is not sent anything, but its walk still runs (every
//! few seconds) to drop hints past their limits, so an absent replica cannot
//! hold the log forever. A node removed from the configuration is treated
//! as down for good: its hints age out.
//!
//! # The supervisor (this module)
//!
//! One more task keeps a node task running for every configured replica
//! (and for every replica the ledger still has hints for), closes LSN gaps
//! left by failed appends ([`HintLedger::close_gaps`]) and publishes the
//! backlog gauges.

mod reader;
mod walk;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::WritePlane;
use super::hints::{GapMark, HintLedger, HintLimits, NodeRef};
use crate::base::shutdown::Shutdown;
use crate::cluster::directory::Directory;
use crate::cluster::service::Service;
use crate::upstream::UpstreamClient;
use walk::NodeTask;

/// How often the supervisor looks for new nodes and LSN gaps.
const SUPERVISOR_TICK_MS: u64 = 500;

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
    // The gap marked a tick ago: closed once the appends begun before it
    // have ended, however many newer ones are in progress.
    let mut gap: Option<GapMark> = None;
    loop {
        if let Some(mark) = gap
            && let Some(closed) = plane.ledger.close_gaps(mark)
        {
            gap = None;
            if closed > 0 {
                tracing::warn!(
                    closed,
                    "LSNs appended without registration (failed appends); handoff will read them back"
                );
            }
        }
        if gap.is_none() {
            // The log's last LSN first: see HintLedger::gap_mark.
            let last_lsn = plane.log.stats().last_lsn;
            gap = Some(plane.ledger.gap_mark(last_lsn));
        }
        for node in wanted_nodes(&plane.ledger, &state) {
            let running = tasks.get(&node).is_some_and(|task| !task.is_finished());
            if !running {
                let task = NodeTask::new(plane.clone(), state.clone(), node.clone());
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
