//! The host state a checkpoint persists, and how start-up recovers it.
//!
//! # Why a snapshot at all
//!
//! The log keeps every write until no replica needs it; what the log cannot
//! tell by itself is *which* replica still needs *what*. That is the hint
//! ledger's cursors (see [`super::hints`]), and they live in memory. A
//! checkpoint writes them down, stamped with the LSN they are valid for, so
//! that after a restart the handoff resumes from the cursor instead of
//! redelivering the whole log, and so that compaction can delete segments
//! every replica has. Losing a snapshot (or never having one) loses no
//! write: recovery then starts every node at cursor 0 and redelivers
//! idempotently.
//!
//! # Versioning
//!
//! The log wraps the state in its own envelope (`format_version`,
//! `covers_lsn`, `created_unix_ms`, checksum). Inside, [`Snapshot::version`]
//! is ours. The evolution rule: **every field added after version 1 carries
//! `#[serde(default)]`**, so a newer levee reads an older snapshot; unknown
//! fields are ignored (no `deny_unknown_fields`), so an older levee can read
//! a newer one after a rollback. A change that cannot follow that rule bumps
//! [`SNAPSHOT_VERSION`], and [`Snapshot::check_version`] refuses what it does
//! not understand rather than misreading it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::hints::{HintCounters, LedgerExport, Lsn, NodeRef};
use super::service_changes::ServiceOverlay;
use crate::config::Config;

/// The snapshot layout this levee writes.
pub const SNAPSHOT_VERSION: u32 = 1;

/// Everything a checkpoint persists about the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u32,
    /// Every LSN up to here was registered when the snapshot was taken: the
    /// cursors are exact for those records. The checkpoint covers it.
    pub covers_lsn: Lsn,
    /// The services in force when the snapshot was taken (what the cursors
    /// refer to); recovery reports nodes that have gone since.
    #[serde(default)]
    pub services: Vec<ServiceSnapshot>,
    /// The policy plugins bound per service and kind at the time.
    #[serde(default)]
    pub plugin_bindings: Vec<PluginBinding>,
    /// The process's checkpoint binding (the top-level `checkpoint`) at the
    /// time, if any.
    #[serde(default)]
    pub checkpoint_binding: Option<CheckpointBinding>,
    /// One entry per replica: its hint cursor and counters.
    #[serde(default)]
    pub hint_cursors: Vec<NodeCursor>,
    /// Service changes made through the admin API (`service_changes`).
    #[serde(default)]
    pub service_overlay: ServiceOverlay,
}

/// The identity of a service's replicas, as the cursors refer to them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSnapshot {
    pub name: String,
    pub nodes: Vec<NodeSnapshot>,
    #[serde(default)]
    pub replicas: u32,
    #[serde(default)]
    pub write_quorum: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSnapshot {
    pub id: String,
    pub url: String,
}

/// `policies.<kind>` of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginBinding {
    pub service: String,
    /// `retry` or `routing` (`checkpoint` in snapshots written before the
    /// checkpoint binding moved to the top level).
    pub kind: String,
    pub plugin: String,
    /// The binding's config, as JSON text.
    #[serde(default)]
    pub config: String,
}

/// The top-level `checkpoint`: the process's checkpoint policy binding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointBinding {
    pub plugin: String,
    /// The binding's config, as JSON text.
    #[serde(default)]
    pub config: String,
}

/// One replica's cursor: every record up to `cursor` that targets it has
/// been delivered or dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCursor {
    pub service: String,
    pub node: String,
    pub cursor: Lsn,
    #[serde(default)]
    pub counters: HintCounters,
}

/// Why a snapshot cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error(
        "snapshot version {found} is newer than this levee understands ({SNAPSHOT_VERSION}); upgrade levee or move the checkpoint away"
    )]
    TooNew { found: u32 },
    #[error("snapshot version 0 is not valid")]
    Invalid,
}

impl Snapshot {
    /// Builds a snapshot from the configuration in force and the ledger.
    pub fn capture(
        config: &Config,
        service_overlay: ServiceOverlay,
        ledger: LedgerExport,
    ) -> Snapshot {
        let services = config
            .services
            .iter()
            .map(|spec| ServiceSnapshot {
                name: spec.name.clone(),
                nodes: spec
                    .nodes
                    .iter()
                    .map(|node| NodeSnapshot {
                        id: node.id.clone(),
                        url: node.url.clone(),
                    })
                    .collect(),
                replicas: spec.replicas(),
                write_quorum: spec.write_quorum(),
            })
            .collect();
        let plugin_bindings = config
            .services
            .iter()
            .flat_map(|spec| {
                let policies = &spec.policies;
                [("retry", &policies.retry), ("routing", &policies.routing)]
                    .into_iter()
                    .filter_map(|(kind, binding)| {
                        binding.as_ref().map(|binding| PluginBinding {
                            service: spec.name.clone(),
                            kind: kind.to_string(),
                            plugin: binding.plugin.clone(),
                            config: binding.config.to_string(),
                        })
                    })
            })
            .collect();
        let checkpoint_binding = config.checkpoint.as_ref().map(|binding| CheckpointBinding {
            plugin: binding.plugin.clone(),
            config: binding.config.to_string(),
        });
        let hint_cursors = ledger
            .cursors
            .iter()
            .map(|(node, &cursor)| NodeCursor {
                service: node.service.clone(),
                node: node.node.clone(),
                cursor,
                counters: ledger.counters.get(node).copied().unwrap_or_default(),
            })
            .collect();
        Snapshot {
            version: SNAPSHOT_VERSION,
            covers_lsn: ledger.registered_through,
            services,
            plugin_bindings,
            checkpoint_binding,
            hint_cursors,
            service_overlay,
        }
    }

    /// Refuses a snapshot written by a levee whose layout this one does not
    /// know.
    pub fn check_version(&self) -> Result<(), SnapshotError> {
        match self.version {
            0 => Err(SnapshotError::Invalid),
            found if found > SNAPSHOT_VERSION => Err(SnapshotError::TooNew { found }),
            _ => Ok(()),
        }
    }

    /// Cursors and counters by node.
    pub fn cursors(&self) -> BTreeMap<NodeRef, (Lsn, HintCounters)> {
        self.hint_cursors
            .iter()
            .map(|entry| {
                (
                    NodeRef::new(&entry.service, &entry.node),
                    (entry.cursor, entry.counters),
                )
            })
            .collect()
    }
}

/// What start-up recovered, for the log line and the admin API.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RecoverySummary {
    /// LSN the loaded snapshot covers; `None` when no checkpoint existed.
    pub snapshot_covers_lsn: Option<Lsn>,
    /// Nodes whose cursor came from the snapshot.
    pub nodes_from_snapshot: usize,
    /// Configured nodes the snapshot did not know (they start at cursor 0,
    /// i.e. every record in the log that targets them is redelivered).
    pub nodes_new: usize,
    /// Nodes in the snapshot that are no longer configured; their hints
    /// cannot be delivered and are not kept.
    pub nodes_gone: Vec<String>,
    /// Records read back at start to size each node's backlog.
    pub records_scanned: u64,
    /// Nodes with a backlog to deliver.
    pub nodes_with_backlog: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_one_without_later_fields_parses() {
        let old = r#"{"version": 1, "covers_lsn": 7}"#;
        let snapshot: Snapshot = serde_json::from_str(old).unwrap();
        assert_eq!(snapshot.covers_lsn, 7);
        assert!(snapshot.hint_cursors.is_empty());
        snapshot.check_version().unwrap();
    }

    #[test]
    fn unknown_fields_from_a_newer_levee_are_ignored_but_newer_versions_refused() {
        let newer = r#"{"version": 1, "covers_lsn": 7, "some_future_field": [1, 2]}"#;
        let snapshot: Snapshot = serde_json::from_str(newer).unwrap();
        snapshot.check_version().unwrap();
        let too_new: Snapshot =
            serde_json::from_str(r#"{"version": 99, "covers_lsn": 7}"#).unwrap();
        assert_eq!(
            too_new.check_version(),
            Err(SnapshotError::TooNew { found: 99 })
        );
    }

    #[test]
    fn capture_round_trips_cursors_and_counters() {
        let config = Config::from_json(
            &serde_json::json!({"services": [{
                "name": "kv",
                "nodes": [{"id": "a", "url": "http://127.0.0.1:1"}, {"id": "b", "url": "http://127.0.0.1:2"}],
                "key": {"path_segment": 1},
                "policies": {"retry": {"plugin": "retry-backoff", "config": {"base_delay_ms": 5}}},
            }], "checkpoint": {"plugin": "checkpoint-interval", "config": {"every_records": 5}}})
            .to_string(),
        )
        .unwrap();
        let a = NodeRef::new("kv", "a");
        let counters = HintCounters {
            delivered_records: 3,
            dropped_age_records: 1,
            ..Default::default()
        };
        let export = LedgerExport {
            registered_through: 42,
            cursors: [(a.clone(), 40)].into_iter().collect(),
            counters: [(a.clone(), counters)].into_iter().collect(),
        };
        let snapshot = Snapshot::capture(&config, ServiceOverlay::default(), export);
        let text = serde_json::to_string(&snapshot).unwrap();
        let back: Snapshot = serde_json::from_str(&text).unwrap();
        assert_eq!(back, snapshot);
        assert_eq!(back.covers_lsn, 42);
        assert_eq!(back.cursors()[&a], (40, counters));
        assert_eq!(back.services[0].nodes.len(), 2);
        assert_eq!(back.plugin_bindings.len(), 1);
        assert_eq!(back.plugin_bindings[0].plugin, "retry-backoff");
        let checkpoint = back.checkpoint_binding.unwrap();
        assert_eq!(checkpoint.plugin, "checkpoint-interval");
        assert_eq!(checkpoint.config, r#"{"every_records":5}"#);
    }
}
