//! Repair: bringing every replica of a key to the newest version any of
//! them holds, for keys that a replica may have missed for good.
//!
//! Why: hinted handoff gives up on a hint past its limits (age, budget), on
//! a definitive rejection, and for a replica missing from the
//! configuration at restart. Each such drop is a write one replica will
//! never get from the log, so its key is recorded here and a background
//! pass repairs it from what the other replicas hold. The read path adds
//! keys it saw answered stale ([`Repairs::request`]).
//!
//! # Two sources, two guarantees
//!
//! - **Durable set** (dropped hints): one file per key under
//!   `<data_dir>/repair/` (see [`set`]), written and fsynced *before* the
//!   handoff moves its cursor past the dropped hint, so a key is never
//!   forgotten by a crash: either the file exists, or the cursor did not
//!   move and the hint is dropped (and recorded) again after restart. At
//!   most [`REPAIR_KEYS_MAX`] keys; past that a key is counted as overflow
//!   and warned about (it stays unrepaired until written again). Reads of
//!   a durable key ask a quorum ([`Repairs::awaits`], an index of one
//!   64-bit hash and count per durable key: at most 100,000 × ~24 bytes).
//! - **Queue** (read path): in memory, at most [`REPAIR_QUEUE_KEYS_MAX`]
//!   keys; [`Repairs::request`] never blocks and drops (and counts) a key
//!   when full. Losing a queued key loses nothing durable: the read that
//!   saw it stale answered the client from a newer replica.
//!
//! # The pass ([`pass`])
//!
//! Durable keys first, then queued ones, at most
//! [`pass::REPAIR_KEYS_PER_TICK`] per tick. For one key: GET it from every
//! replica of its service's *current* preference list (short timeout),
//! pick the newest version (a tombstone counts), and write it to every
//! replica holding an older one: PUT with the body, its `x-levee-version`
//! and content-type, or DELETE with the tombstone's version. A replica
//! applies only what is newer (409 = it holds something newer still:
//! fine). The key is cleared once every replica answered and none is
//! older; otherwise it is retried with backoff. A replica that refuses the
//! key for good (a 4xx other than 404, 408, 429: e.g. a key it cannot
//! store) is warned about and left out, so such a key cannot keep the set
//! busy forever. A repair only ever copies
//! what a replica returned; it never invents a value. It assumes the
//! key-value shape of the bundled `kv-replica`: a GET of the write's
//! upstream path returns what a PUT to it stored.
//!
//! # Layout
//! - this module: the set and queue in memory, their bounds and counters;
//! - [`set`]: the entry files under `<data_dir>/repair/`;
//! - [`forgotten`]: recovery's hook for replicas gone at restart;
//! - [`pass`]: the background pass and the newest-version pick;
//! - [`progress`]: taking due keys for the pass and settling them.

mod forgotten;
pub mod pass;
mod progress;
mod set;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::Serialize;

use super::hints::{KeyHash, key_hash};
use super::record::WriteHeader;
use crate::base::clock;
use set::{SetDir, entry_id};

pub use forgotten::{record_forgotten, repair_dir};
pub use pass::spawn;

/// Keys in the durable repair set, at most.
pub const REPAIR_KEYS_MAX: usize = 100_000;
/// Keys queued in memory for repair at most (the read path's requests).
pub const REPAIR_QUEUE_KEYS_MAX: usize = 10_000;
/// A key whose repair could not finish is retried after this ...
pub const REPAIR_BACKOFF_MS_MIN: u64 = 1_000;
/// ... doubling up to this.
pub const REPAIR_BACKOFF_MS_MAX: u64 = 60_000;
/// Overflows are warned about on the first and then every this many.
const OVERFLOW_WARN_EVERY: u64 = 1_000;

/// One key to repair: its service, its routing key (which picks the
/// replicas) and the upstream path it lives at (what is read and written).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepairKey {
    pub service: String,
    pub key: String,
    pub path: String,
}

impl RepairKey {
    /// The key a logged write addressed.
    pub fn of_write(header: &WriteHeader) -> RepairKey {
        RepairKey {
            service: header.service.clone(),
            key: header.key.clone(),
            path: header.path.clone(),
        }
    }
}

/// A key waiting for the pass, with its retry state.
#[derive(Debug, Clone)]
struct Entry {
    key: RepairKey,
    /// Bumped whenever the key is recorded again, so a pass that started
    /// before a newer drop does not clear it.
    generation: u64,
    next_try_ms: u64,
    backoff_ms: u64,
}

impl Entry {
    fn new(key: RepairKey) -> Entry {
        Entry {
            key,
            generation: 0,
            next_try_ms: 0,
            backoff_ms: REPAIR_BACKOFF_MS_MIN,
        }
    }
}

/// Where a taken key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Durable,
    Queued,
}

/// A key the pass is working on.
#[derive(Debug, Clone)]
pub(crate) struct Taken {
    id: String,
    origin: Origin,
    entry: Entry,
}

impl Taken {
    pub(crate) fn key(&self) -> &RepairKey {
        &self.entry.key
    }
}

#[derive(Debug, Default)]
struct Inner {
    durable: BTreeMap<String, Entry>,
    /// How many durable entries each (service, routing key) hash has (a
    /// key written at several paths has several): what
    /// [`Repairs::awaits`] looks up. At most one per durable entry.
    durable_keys: HashMap<KeyHash, u32>,
    queue: VecDeque<(String, Entry)>,
    queued_ids: HashSet<String>,
    /// The durable id the next take starts after (round robin).
    cursor: Option<String>,
}

#[derive(Debug, Default)]
struct Counters {
    repaired: AtomicU64,
    failed: AtomicU64,
    overflow: AtomicU64,
    queue_dropped: AtomicU64,
}

/// The repair set and queue; the pass works through them.
#[derive(Debug)]
pub struct Repairs {
    dir: Arc<SetDir>,
    inner: Mutex<Inner>,
    /// Serialises durable adds, so a second drop of a key being written
    /// waits until its file is durable.
    add_lock: tokio::sync::Mutex<()>,
    counters: Counters,
    /// [`REPAIR_KEYS_MAX`] (smaller in tests).
    keys_max: usize,
    /// [`REPAIR_QUEUE_KEYS_MAX`] (smaller in tests).
    queue_max: usize,
    /// `durable.len()`, readable without the lock: reads skip the lookup
    /// while it is 0 (the normal state).
    durable_len: AtomicUsize,
}

/// What operators are shown.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct RepairStatus {
    /// Keys awaiting repair: durable + queued.
    pub keys_pending: u64,
    pub durable_keys: u64,
    pub queued_keys: u64,
    /// Keys cleared since start (every replica at the newest version).
    pub repaired_total: u64,
    /// Repair attempts that could not finish (a replica down or failing).
    pub failed_total: u64,
    /// Dropped hints whose key did not fit in the durable set.
    pub overflow_total: u64,
    /// Read-path requests dropped because the queue was full.
    pub queue_dropped_total: u64,
}

/// Why a repair attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Finish {
    /// Every replica answered and holds the newest version (or nothing to
    /// do): clear the key.
    Done,
    /// Try again later.
    Retry,
}

impl Repairs {
    /// Opens the durable set under `dir` (created if missing) and loads it.
    pub fn open(dir: &Path) -> io::Result<Repairs> {
        Repairs::open_bounded(dir, REPAIR_KEYS_MAX, REPAIR_QUEUE_KEYS_MAX)
    }

    /// [`Repairs::open`] with other bounds.
    fn open_bounded(dir: &Path, keys_max: usize, queue_max: usize) -> io::Result<Repairs> {
        let set = SetDir::open(dir)?;
        let loaded = set.load(keys_max)?;
        if loaded.over_limit > 0 {
            tracing::warn!(
                dir = %dir.display(),
                loaded = loaded.entries.len(),
                left_on_disk = loaded.over_limit,
                "repair set holds more than REPAIR_KEYS_MAX ({REPAIR_KEYS_MAX}) keys; the rest are loaded once these are repaired and levee restarts"
            );
        }
        if !loaded.entries.is_empty() {
            tracing::info!(keys = loaded.entries.len(), "repair set loaded");
        }
        let repairs = Repairs {
            dir: Arc::new(set),
            inner: Mutex::new(Inner::default()),
            add_lock: tokio::sync::Mutex::new(()),
            counters: Counters::default(),
            keys_max,
            queue_max,
            durable_len: AtomicUsize::new(0),
        };
        for (id, key) in loaded.entries {
            repairs.insert_durable(id, Entry::new(key));
        }
        repairs.publish();
        Ok(repairs)
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // Every change under the lock is a single map or queue operation.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks for a background repair of `key` of `service`, which lives at
    /// the upstream `path` (the read path, after a stale answer). Never
    /// blocks; dropped (and counted) when the queue is full.
    pub fn request(&self, service: &str, key: &str, path: &str) {
        let key = RepairKey {
            service: service.to_owned(),
            key: key.to_owned(),
            path: path.to_owned(),
        };
        let id = entry_id(&key);
        let mut inner = self.inner();
        if inner.durable.contains_key(&id) || inner.queued_ids.contains(&id) {
            return;
        }
        if inner.queue.len() >= self.queue_max {
            drop(inner);
            self.counters.queue_dropped.fetch_add(1, Ordering::Relaxed);
            crate::base::metrics::repair_queue_dropped();
            return;
        }
        inner.queued_ids.insert(id.clone());
        inner.queue.push_back((id, Entry::new(key)));
    }

    /// Records durably that the write `header` describes will not reach a
    /// replica by handoff (its hint was dropped). Returns once the key is
    /// on disk (or known already, or counted as overflow).
    pub async fn record_dropped(&self, header: &WriteHeader) {
        self.record(RepairKey::of_write(header)).await;
    }

    async fn record(&self, key: RepairKey) {
        let id = entry_id(&key);
        let _adding = self.add_lock.lock().await;
        if self.bump_known(&id) {
            return;
        }
        if self.inner().durable.len() >= self.keys_max {
            self.overflowed(&key);
            return;
        }
        let dir = self.dir.clone();
        let write_key = key.clone();
        let since_ms = clock::unix_ms();
        let written = tokio::task::spawn_blocking(move || dir.add(&write_key, since_ms))
            .await
            .unwrap_or_else(|join| Err(io::Error::other(join.to_string())));
        if let Err(error) = written {
            // Still repaired while this process lives, just not after a restart.
            tracing::error!(dir = %self.dir.path().display(), service = key.service, key = key.key, %error,
                "cannot record a key to repair on disk; it is repaired only if levee keeps running");
        }
        self.insert_durable(id, Entry::new(key));
        self.publish();
    }

    /// Whether a durable entry (a dropped hint) of `key` of `service`
    /// awaits repair: some replica may lack an acknowledged write of it
    /// that nothing else tracks, so its reads must not trust one replica
    /// (see `crate::dataplane::read_quorum`). One atomic load while the
    /// set is empty. A hash collision only makes a read ask more replicas.
    pub fn awaits(&self, service: &str, key: &str) -> bool {
        if self.durable_len.load(Ordering::Acquire) == 0 {
            return false;
        }
        let hash = key_hash(service, key);
        self.inner().durable_keys.contains_key(&hash)
    }

    fn insert_durable(&self, id: String, entry: Entry) {
        let hash = key_hash(&entry.key.service, &entry.key.key);
        let mut inner = self.inner();
        if inner.durable.insert(id, entry).is_none() {
            *inner.durable_keys.entry(hash).or_default() += 1;
        }
        self.durable_len
            .store(inner.durable.len(), Ordering::Release);
    }

    /// If `id` is in the durable set, marks it recorded again (a pass in
    /// progress must not clear it) and returns true.
    fn bump_known(&self, id: &str) -> bool {
        let mut inner = self.inner();
        match inner.durable.get_mut(id) {
            Some(entry) => {
                entry.generation += 1;
                entry.next_try_ms = 0;
                true
            }
            None => false,
        }
    }

    fn overflowed(&self, key: &RepairKey) {
        let before = self.counters.overflow.fetch_add(1, Ordering::Relaxed);
        crate::base::metrics::repair_overflow();
        if before.is_multiple_of(OVERFLOW_WARN_EVERY) {
            tracing::warn!(
                service = key.service,
                key = key.key,
                overflow_total = before + 1,
                "repair set full (REPAIR_KEYS_MAX {REPAIR_KEYS_MAX}): this key's dropped write will not be repaired"
            );
        }
    }

    /// Keys awaiting repair (durable + queued).
    pub fn pending(&self) -> u64 {
        let inner = self.inner();
        (inner.durable.len() + inner.queue.len()) as u64
    }

    /// The figures operators are shown.
    pub fn status(&self) -> RepairStatus {
        let (durable, queued) = {
            let inner = self.inner();
            (inner.durable.len() as u64, inner.queue.len() as u64)
        };
        RepairStatus {
            keys_pending: durable + queued,
            durable_keys: durable,
            queued_keys: queued,
            repaired_total: self.counters.repaired.load(Ordering::Relaxed),
            failed_total: self.counters.failed.load(Ordering::Relaxed),
            overflow_total: self.counters.overflow.load(Ordering::Relaxed),
            queue_dropped_total: self.counters.queue_dropped.load(Ordering::Relaxed),
        }
    }

    /// Sets the pending gauge.
    pub fn publish(&self) {
        crate::base::metrics::repair_keys_pending(self.pending());
    }
}

#[cfg(test)]
mod tests;
