//! Keys of hints forgotten at restart: recovery forgets the hints of a
//! replica that was in the checkpoint but is no longer configured (there
//! is nowhere to deliver them), so before it does, the keys of the writes
//! that replica missed are added to the durable repair set. Blocking I/O,
//! at start-up, before [`super::Repairs::open`] loads the set.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use levee_log::Log;

use super::set::{SetDir, entry_id};
use super::{REPAIR_KEYS_MAX, RepairKey};
use crate::base::clock;
use crate::replication::hints::{Lsn, NodeRef};
use crate::replication::record::{KIND_CLIENT_WRITE, WriteRecord};

/// Records the keys of the writes that replicas missing from the
/// configuration at restart will never get (recovery forgets their hints):
/// every client write above the gone node's cursor that targets it. Called
/// by recovery before it forgets them; blocking I/O.
pub fn record_forgotten<'a>(
    log: &Log,
    data_dir: &Path,
    gone: impl IntoIterator<Item = (&'a NodeRef, Lsn)>,
) {
    let gone: BTreeMap<&NodeRef, Lsn> = gone.into_iter().collect();
    let Some(lowest) = gone.values().min().copied() else {
        return;
    };
    if let Err(error) = scan_forgotten(log, &repair_dir(data_dir), &gone, lowest) {
        tracing::error!(%error, "cannot record the keys of forgotten hints for repair");
    }
}

/// The repair set's directory under `data_dir`.
pub fn repair_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("repair")
}

fn scan_forgotten(
    log: &Log,
    dir: &Path,
    gone: &BTreeMap<&NodeRef, Lsn>,
    lowest: Lsn,
) -> Result<(), String> {
    let set = SetDir::open(dir).map_err(|e| e.to_string())?;
    let mut known: HashSet<String> = set
        .load(REPAIR_KEYS_MAX)
        .map_err(|e| e.to_string())?
        .entries
        .into_keys()
        .collect();
    let from = (lowest + 1).max(log.stats().first_lsn);
    let (mut recorded, mut overflow) = (0u64, 0u64);
    for entry in log.read_from(from).map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        if entry.kind != KIND_CLIENT_WRITE {
            continue;
        }
        let Ok(record) = WriteRecord::decode(entry.payload, entry.lsn) else {
            continue;
        };
        let missed = record.header.targets.iter().any(|target| {
            let node = NodeRef::new(&record.header.service, target);
            gone.get(&node).is_some_and(|&cursor| entry.lsn > cursor)
        });
        if !missed {
            continue;
        }
        let key = RepairKey::of_write(&record.header);
        let id = entry_id(&key);
        if known.contains(&id) {
            continue;
        }
        if known.len() >= REPAIR_KEYS_MAX {
            overflow += 1;
            continue;
        }
        set.add(&key, clock::unix_ms()).map_err(|e| e.to_string())?;
        known.insert(id);
        recorded += 1;
    }
    if overflow > 0 {
        tracing::warn!(
            overflow,
            "repair set full (REPAIR_KEYS_MAX {REPAIR_KEYS_MAX}): keys of forgotten hints not recorded"
        );
    }
    if recorded > 0 {
        tracing::warn!(
            recorded,
            "keys of hints for replicas no longer configured were recorded for repair"
        );
    }
    Ok(())
}
