//! The state document (`GET /admin/state`): everything the status page
//! draws, so the page needs one request per refresh and the picture it shows
//! is one moment, not several.
//!
//! Ring ownership is sampled: the ring is asked for the primary owner of 720
//! evenly spaced positions (a lookup each, microseconds in total), and
//! consecutive positions with the same owner are merged into arcs. A node's
//! share is its fraction of the samples, accurate to about ±0.14 %: plenty
//! for a picture, and it needs nothing from the ring but its public lookup.

use std::collections::BTreeMap;
use std::sync::Arc;

use levee_plugin::{BoundPlugin, PolicyKind};
use serde::Serialize;

use crate::api::state::AppState;
use crate::api::views::plugins::{PluginView, views};
use crate::cluster::service::Service;
use crate::config::ServiceSpec;
use crate::policy::bind::{checkpoint_ref, policy_refs};
use crate::replication::repair::RepairStatus;

/// Samples of ring ownership per service.
pub const RING_SAMPLES: u64 = 720;

/// The whole status document.
#[derive(Debug, Serialize)]
pub struct StateView {
    pub version: &'static str,
    pub ready: bool,
    pub shutting_down: bool,
    pub uptime_ms: u64,
    pub services: Vec<ServiceView>,
    /// The process's checkpoint policy binding (the top-level
    /// `checkpoint`); `None`: the native `checkpoint-interval`.
    pub checkpoint_policy: Option<PolicyView>,
    pub plugins: Vec<PluginView>,
    pub log: LogView,
    /// Keys awaiting repair (dropped hints, stale reads) and the repair
    /// pass's counters.
    pub repair: RepairStatus,
}

/// One service: spec, node health, ring picture, bound policies.
#[derive(Debug, Serialize)]
pub struct ServiceView {
    pub name: String,
    pub replicas: u32,
    pub write_quorum: u32,
    pub in_flight: u32,
    pub nodes: Vec<NodeView>,
    /// Arcs of the ring, as fractions of the circle from 0 (12 o'clock).
    pub ring: Vec<ArcView>,
    /// The service's own policies (`retry`, `routing`); the checkpoint
    /// policy is the process's ([`StateView::checkpoint_policy`]).
    pub policies: BTreeMap<&'static str, Option<PolicyView>>,
    pub spec: ServiceSpec,
}

#[derive(Debug, Serialize)]
pub struct NodeView {
    pub id: String,
    pub url: String,
    pub zone: Option<String>,
    pub weight: u32,
    pub healthy: bool,
    pub ejected: bool,
    pub ejected_for_ms: u64,
    pub ejections: u64,
    pub failure_rate_permille: u32,
    pub latency_ms: u32,
    /// Writes this node still has to receive by hinted handoff.
    pub hint_backlog: u64,
    /// Fraction of the key space this node is primary for.
    pub ring_share: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArcView {
    pub start: f64,
    pub end: f64,
    pub node: String,
}

#[derive(Debug, Serialize)]
pub struct PolicyView {
    pub plugin: String,
    /// The version bound right now; `None` while the native policy serves.
    pub version: Option<String>,
}

/// The durable log and the hints waiting in it.
#[derive(Debug, Serialize)]
pub struct LogView {
    pub segments: usize,
    pub first_lsn: u64,
    pub last_lsn: u64,
    pub synced_lsn: u64,
    pub total_bytes: u64,
    pub records_since_checkpoint: u64,
    pub latest_checkpoint: Option<CheckpointView>,
    pub poisoned: Option<String>,
    pub fsyncs: u64,
    pub hint_backlog: Vec<HintBacklogView>,
    /// Keys whose replicas may disagree, waiting for the repair pass
    /// (the same figure as [`StateView::repair`]'s `keys_pending`).
    pub keys_awaiting_repair: u64,
}

#[derive(Debug, Serialize)]
pub struct CheckpointView {
    pub lsn: u64,
    pub at_ms: u64,
    pub bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct HintBacklogView {
    pub service: String,
    pub node: String,
    pub cursor: u64,
    pub records: u64,
    pub bytes: u64,
    pub dropped: u64,
}

/// The whole status document, now.
pub fn state_view(state: &AppState) -> StateView {
    let services = state.directory.services.load();
    StateView {
        version: env!("CARGO_PKG_VERSION"),
        ready: state.is_ready(),
        shutting_down: state.is_shutting_down(),
        uptime_ms: state.control.started.elapsed().as_millis() as u64,
        services: services
            .values()
            .map(|service| service_view(state, service))
            .collect(),
        checkpoint_policy: checkpoint_policy_view(state),
        plugins: views(state),
        log: log_view(state),
        repair: state.writes.repairs.status(),
    }
}

/// A service as the admin API shows it.
pub fn service_view(state: &AppState, service: &Service) -> ServiceView {
    let now_ms = crate::base::clock::now_ms();
    let (ring, samples) = ring_arcs(service);
    let backlog = hint_backlogs(state, service.name());
    let nodes = service
        .nodes
        .iter()
        .enumerate()
        .map(|(index, node)| NodeView {
            id: node.spec.id.clone(),
            url: node.spec.url.clone(),
            zone: node.spec.zone.clone(),
            weight: node.spec.weight,
            healthy: node.health.is_healthy(now_ms),
            ejected: node.health.is_ejected(now_ms),
            ejected_for_ms: node.health.ejected_for_ms(now_ms),
            ejections: node.health.ejections_total(),
            failure_rate_permille: node.health.failure_rate_permille(),
            latency_ms: node.health.latency_ms(),
            hint_backlog: backlog.get(node.spec.id.as_str()).copied().unwrap_or(0),
            ring_share: samples[index] as f64 / RING_SAMPLES as f64,
        })
        .collect();
    ServiceView {
        name: service.name().to_string(),
        replicas: service.spec.replicas(),
        write_quorum: service.spec.write_quorum(),
        in_flight: service.in_flight(),
        nodes,
        ring,
        policies: policy_views(service),
        spec: service.spec.clone(),
    }
}

/// The ring's arcs and each node's sample count.
fn ring_arcs(service: &Service) -> (Vec<ArcView>, Vec<u64>) {
    let mut samples = vec![0u64; service.nodes.len()];
    let mut arcs: Vec<ArcView> = Vec::new();
    for sample in 0..RING_SAMPLES {
        // The middle of the sample's slice of the u64 circle.
        let position = (((2 * sample + 1) as u128) << 63) / RING_SAMPLES as u128;
        let Some(owner) = service.ring.preference_at(position as u64, 1).get(0) else {
            continue;
        };
        samples[owner] += 1;
        let node = &service.nodes[owner].spec.id;
        let start = sample as f64 / RING_SAMPLES as f64;
        let end = (sample + 1) as f64 / RING_SAMPLES as f64;
        match arcs.last_mut() {
            Some(last) if &last.node == node => last.end = end,
            _ => arcs.push(ArcView {
                start,
                end,
                node: node.clone(),
            }),
        }
    }
    debug_assert!(arcs.len() as u64 <= RING_SAMPLES);
    (arcs, samples)
}

fn policy_views(service: &Service) -> BTreeMap<&'static str, Option<PolicyView>> {
    let mut policies: BTreeMap<&'static str, Option<PolicyView>> =
        [("retry", None), ("routing", None), ("write", None)]
            .into_iter()
            .collect();
    for (kind, policy) in policy_refs(&service.spec) {
        let (key, bound) = match kind {
            PolicyKind::Retry => ("retry", service.policies.retry.plugin()),
            PolicyKind::Routing => ("routing", service.policies.routing.plugin()),
            PolicyKind::Write => ("write", service.policies.write.plugin()),
            PolicyKind::Checkpoint => continue,
        };
        policies.insert(key, Some(policy_view(&policy.plugin, bound)));
    }
    policies
}

/// The process's checkpoint binding and what its slot holds.
pub fn checkpoint_policy_view(state: &AppState) -> Option<PolicyView> {
    let config = state.directory.config.load();
    let policy = checkpoint_ref(&config)?;
    let bound = state.writes.checkpoints.policy.plugin();
    Some(policy_view(&policy.plugin, bound))
}

/// A binding to `plugin`, with the version its slot holds if it is that
/// plugin's.
fn policy_view(plugin: &str, bound: Option<Arc<BoundPlugin>>) -> PolicyView {
    let version = bound
        .filter(|b| b.name() == plugin)
        .map(|b| b.version().to_string());
    PolicyView {
        plugin: plugin.to_string(),
        version,
    }
}

/// Hint backlog (records) per node id of `service`.
fn hint_backlogs(state: &AppState, service: &str) -> BTreeMap<String, u64> {
    state
        .writes
        .ledger
        .stats()
        .into_iter()
        .filter(|stats| stats.service == service)
        .map(|stats| (stats.node, stats.backlog_records))
        .collect()
}

/// The log's state and every node's hint backlog.
pub fn log_view(state: &AppState) -> LogView {
    let status = state.writes.log.stats();
    LogView {
        segments: status.segments.len(),
        first_lsn: status.first_lsn,
        last_lsn: status.last_lsn,
        synced_lsn: status.synced_lsn,
        total_bytes: status.total_bytes,
        records_since_checkpoint: status.records_since_checkpoint,
        latest_checkpoint: status.last_checkpoint.map(|checkpoint| CheckpointView {
            lsn: checkpoint.covers_lsn,
            at_ms: checkpoint.created_unix_ms,
            bytes: checkpoint.bytes,
        }),
        poisoned: status.poisoned,
        fsyncs: status.fsyncs,
        keys_awaiting_repair: state.writes.repairs.pending(),
        hint_backlog: state
            .writes
            .ledger
            .stats()
            .into_iter()
            .map(|stats| HintBacklogView {
                cursor: stats.cursor,
                records: stats.backlog_records,
                bytes: stats.backlog_bytes,
                dropped: stats.dropped_records,
                service: stats.service,
                node: stats.node,
            })
            .collect(),
    }
}

/// Gauges that mirror state kept elsewhere, refreshed at scrape time.
pub fn mirror_gauges(state: &AppState) {
    let status = state.writes.log.stats();
    crate::base::metrics::log_position(status.last_lsn, status.total_bytes);
    crate::base::metrics::log_fsync_totals(status.fsyncs, status.records_written);
    state.writes.repairs.publish();
    for stats in state.writes.ledger.stats() {
        crate::base::metrics::hint_backlog(&stats.service, &stats.node, stats.backlog_records);
    }
    for info in state.control.plugins.registry().list() {
        if let Some(current) = info.current {
            crate::base::metrics::plugin_quarantined(
                &info.name,
                &current.version,
                current.quarantined,
            );
        }
    }
}
