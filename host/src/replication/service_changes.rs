//! Durable service changes made through the admin API.
//!
//! `PUT` and `DELETE /admin/services/{name}` change the running services;
//! those changes must survive a restart, like everything else levee
//! acknowledged. They are kept the way writes are: each change is a log
//! record (kind [`KIND_SERVICE_CHANGE`]) appended and fsynced before it takes
//! effect, and checkpoints carry the accumulated changes (the
//! [`ServiceOverlay`], inside the write path's snapshot) so the records can
//! be compacted away.
//!
//! # Overlay, not replacement
//! The admin changes are an *overlay* on the configuration file: at start-up
//! the file's services are read, then the overlay is applied (a `put`
//! replaces or adds a service by name, a `delete` removes it). A service the
//! admin API never touched keeps following the file, so an operator can
//! still edit the file for those; a service the admin API changed follows the
//! admin API until it is changed again (or deleted and re-added in the
//! file after a `DELETE`).
//!
//! # Ordering with checkpoints
//! A snapshot claims to cover every LSN up to its `covers_lsn`, and the
//! overlay it carries must include every change up to there. The change is
//! registered with the hint ledger (which is what `covers_lsn` follows) only
//! after the running configuration holds it, and the checkpoint reads the
//! configuration after the ledger; a change a snapshot does not cover is
//! replayed from the log at start-up (replaying a put or delete by name is
//! idempotent).

use std::collections::{BTreeMap, BTreeSet};

use levee_log::{Log, LogError};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::{Config, ServiceSpec};

/// Log record kind of a service change (client writes are kind 1).
pub const KIND_SERVICE_CHANGE: u8 = 16;
/// Bytes of one encoded change, at most.
pub const CHANGE_BYTES_MAX: usize = 1024 * 1024;

/// One admin change to the services.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServiceChange {
    /// Adds the service, or replaces the one of the same name.
    Put { spec: Box<ServiceSpec> },
    /// Removes the service.
    Delete { name: String },
}

impl ServiceChange {
    pub fn name(&self) -> &str {
        match self {
            ServiceChange::Put { spec } => &spec.name,
            ServiceChange::Delete { name } => name,
        }
    }

    /// The log payload: versioned JSON.
    pub fn encode(&self) -> Result<Vec<u8>, ChangeError> {
        let record = Record {
            version: FORMAT_VERSION,
            change: self.clone(),
        };
        let bytes = serde_json::to_vec(&record).map_err(|e| ChangeError::Encode(e.to_string()))?;
        if bytes.len() > CHANGE_BYTES_MAX {
            return Err(ChangeError::TooLarge {
                change_bytes: bytes.len(),
            });
        }
        Ok(bytes)
    }

    /// Reads a payload back; a record from the log is untrusted input.
    pub fn decode(payload: &[u8]) -> Result<ServiceChange, ChangeError> {
        if payload.len() > CHANGE_BYTES_MAX {
            return Err(ChangeError::TooLarge {
                change_bytes: payload.len(),
            });
        }
        let record: Record =
            serde_json::from_slice(payload).map_err(|e| ChangeError::Decode(e.to_string()))?;
        if record.version != FORMAT_VERSION {
            return Err(ChangeError::Decode(format!(
                "format version {} is not {FORMAT_VERSION}",
                record.version
            )));
        }
        Ok(record.change)
    }
}

const FORMAT_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    version: u32,
    change: ServiceChange,
}

/// Why a change could not be encoded, decoded or recovered.
#[derive(Debug, Error)]
pub enum ChangeError {
    #[error("service change is {change_bytes} bytes, more than {CHANGE_BYTES_MAX}")]
    TooLarge { change_bytes: usize },
    #[error("cannot encode service change: {0}")]
    Encode(String),
    #[error("cannot decode service change record: {0}")]
    Decode(String),
    #[error("reading service changes from the log: {0}")]
    Log(#[source] LogError),
    #[error("the services recorded by the admin API no longer fit the configuration file: {0}")]
    Invalid(String),
}

/// The admin changes accumulated since the log began: service name to its
/// spec, or `None` for a deleted configuration-file service.
///
/// Bounded: a `Some` entry is a live service (at most `SERVICES_MAX`), and a
/// `None` entry is only kept for a name the configuration file defines.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServiceOverlay {
    pub changes: BTreeMap<String, Option<ServiceSpec>>,
    /// Names of the configuration file's services (not persisted: the file
    /// is read at every start).
    #[serde(skip)]
    file_names: BTreeSet<String>,
}

/// Two overlays are equal when they hold the same changes (the file's
/// names are context, not content).
impl PartialEq for ServiceOverlay {
    fn eq(&self, other: &Self) -> bool {
        self.changes == other.changes
    }
}

impl ServiceOverlay {
    /// An empty overlay over a file defining `file_services`.
    pub fn over(file_services: &[ServiceSpec]) -> ServiceOverlay {
        ServiceOverlay {
            changes: BTreeMap::new(),
            file_names: file_services.iter().map(|s| s.name.clone()).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Records `change`.
    pub fn record(&mut self, change: &ServiceChange) {
        match change {
            ServiceChange::Put { spec } => {
                self.changes
                    .insert(spec.name.clone(), Some((**spec).clone()));
            }
            ServiceChange::Delete { name } if self.file_names.contains(name) => {
                self.changes.insert(name.clone(), None);
            }
            ServiceChange::Delete { name } => {
                self.changes.remove(name);
            }
        }
        debug_assert!(
            self.changes.len() <= 2 * crate::config::SERVICES_MAX + self.file_names.len()
        );
    }

    /// `services` with the overlay applied, in a stable order: the file's
    /// order first, then services added by the admin API by name.
    pub fn apply(&self, services: &[ServiceSpec]) -> Vec<ServiceSpec> {
        let mut result: Vec<ServiceSpec> = services
            .iter()
            .filter_map(|service| match self.changes.get(&service.name) {
                Some(Some(changed)) => Some(changed.clone()),
                Some(None) => None,
                None => Some(service.clone()),
            })
            .collect();
        let present: BTreeSet<String> = services.iter().map(|s| s.name.clone()).collect();
        for (name, change) in &self.changes {
            if let Some(spec) = change
                && !present.contains(name)
            {
                result.push(spec.clone());
            }
        }
        result
    }
}

/// Applies `change` to a running configuration's services (the overlay
/// that remembers it is the write plane's, see `WritePlane::record_service_change`).
pub fn apply_to_config(config: &Config, change: &ServiceChange) -> Config {
    let mut next = config.clone();
    match change {
        ServiceChange::Put { spec } => match next.services.iter_mut().find(|s| s.name == spec.name)
        {
            Some(existing) => *existing = (**spec).clone(),
            None => next.services.push((**spec).clone()),
        },
        ServiceChange::Delete { name } => next.services.retain(|s| &s.name != name),
    }
    next
}

/// Start-up: the file's `config` with the admin changes found in the log
/// (the latest checkpoint's overlay, then the change records after it).
/// Refuses to start if the result is not a valid configuration, naming the
/// problem, rather than silently dropping an acknowledged change. Returns
/// the overlay too: the write plane keeps it for the next checkpoint.
pub fn recover(log: &Log, config: Config) -> Result<(Config, ServiceOverlay), ChangeError> {
    let mut overlay = ServiceOverlay::over(&config.services);
    let mut from_lsn = log.stats().first_lsn;
    if let Some((info, snapshot)) = log
        .latest_checkpoint::<crate::replication::snapshot::Snapshot>()
        .map_err(ChangeError::Log)?
    {
        overlay.changes = snapshot.service_overlay.changes;
        from_lsn = from_lsn.max(info.covers_lsn + 1);
    }
    let replayed = replay(log, from_lsn, &mut overlay)?;
    let mut recovered = config;
    recovered.services = overlay.apply(&recovered.services);
    recovered
        .validate()
        .map_err(|e| ChangeError::Invalid(e.to_string()))?;
    if !overlay.is_empty() {
        tracing::info!(
            changed = overlay.changes.len(),
            replayed,
            "services changed through the admin API were restored"
        );
    }
    Ok((recovered, overlay))
}

/// Applies every change record from `from_lsn` on; returns how many.
fn replay(log: &Log, from_lsn: u64, overlay: &mut ServiceOverlay) -> Result<u64, ChangeError> {
    let last_lsn = log.stats().last_lsn;
    if from_lsn > last_lsn {
        return Ok(0);
    }
    let mut replayed = 0;
    for entry in log.read_from(from_lsn).map_err(ChangeError::Log)? {
        let entry = entry.map_err(ChangeError::Log)?;
        if entry.kind != KIND_SERVICE_CHANGE {
            continue;
        }
        let change = ServiceChange::decode(&entry.payload)?;
        overlay.record(&change);
        replayed += 1;
    }
    Ok(replayed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(name: &str, port: u16) -> ServiceSpec {
        serde_json::from_value(json!({
            "name": name,
            "nodes": [{"id": "a", "url": format!("http://127.0.0.1:{port}")}],
            "key": {"path_segment": 1},
        }))
        .unwrap()
    }

    #[test]
    fn changes_round_trip_and_garbage_is_refused() {
        let change = ServiceChange::Put {
            spec: Box::new(spec("users", 7001)),
        };
        assert_eq!(
            ServiceChange::decode(&change.encode().unwrap()).unwrap(),
            change
        );
        let delete = ServiceChange::Delete {
            name: "users".into(),
        };
        assert_eq!(
            ServiceChange::decode(&delete.encode().unwrap()).unwrap(),
            delete
        );
        assert!(ServiceChange::decode(b"\x00garbage").is_err());
        assert!(
            ServiceChange::decode(br#"{"version": 9, "change": {"op": "delete", "name": "x"}}"#)
                .is_err()
        );
    }

    #[test]
    fn overlay_puts_replace_add_and_deletes_remove() {
        let file = vec![spec("a", 1), spec("b", 2)];
        let mut overlay = ServiceOverlay::over(&file);
        overlay.record(&ServiceChange::Put {
            spec: Box::new(spec("b", 22)),
        });
        overlay.record(&ServiceChange::Put {
            spec: Box::new(spec("c", 3)),
        });
        overlay.record(&ServiceChange::Delete { name: "a".into() });
        let services = overlay.apply(&file);
        let names: Vec<_> = services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["b", "c"]);
        assert_eq!(services[0].nodes[0].url, "http://127.0.0.1:22");
    }

    #[test]
    fn deleting_an_admin_added_service_leaves_nothing_behind() {
        let mut overlay = ServiceOverlay::over(&[]);
        for round in 0..100 {
            let name = format!("s{round}");
            overlay.record(&ServiceChange::Put {
                spec: Box::new(spec(&name, 1)),
            });
            overlay.record(&ServiceChange::Delete { name });
        }
        assert!(overlay.is_empty(), "{:?}", overlay.changes.keys());
    }

    #[test]
    fn apply_to_config_keeps_services_and_overlay_in_step() {
        let config = Config::from_json(&json!({"services": [spec("a", 1)]}).to_string()).unwrap();
        let mut overlay = ServiceOverlay::over(&config.services);
        let mut running = config.clone();
        for change in [
            ServiceChange::Put {
                spec: Box::new(spec("b", 2)),
            },
            ServiceChange::Delete { name: "a".into() },
        ] {
            overlay.record(&change);
            running = apply_to_config(&running, &change);
        }
        assert_eq!(running.services.len(), 1);
        assert_eq!(overlay.apply(&config.services), running.services);
    }
}
