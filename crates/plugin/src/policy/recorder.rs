//! [`Recorder`]: the last [`RECORDED_CALLS_MAX`] recorded calls of one
//! binding, with their inputs and the live answers, for trials of a
//! candidate version ([`super::Guarded::trial`]).
//!
//! Which calls: every retry, write and checkpoint call (the interesting
//! calls, a retry after a 503 or a write that lost a zone, are the rare
//! ones), and one routing call in 16 (routing is asked on every request:
//! recording each would add four allocations to every proxied GET, a fifth
//! of its count; sampled, a quarter of one). A record costs one
//! allocation for the request strings (see `RecordedRequest`), one for
//! the candidate list where the kind has one, and one for the entry; the
//! node table is shared per configuration (`TableCache`). A record is
//! made only while a plugin is bound (a slot answered natively has nothing
//! to try a version against). The ring is behind a lock taken with
//! `try_lock`: a call that finds it held (another call recording, a trial
//! copying it) skips its record rather than wait, so recording never
//! blocks the request path.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, TryLockError};

use super::compare::Entry;
use super::spec::PolicyKindSpec;
use super::tables::TableCache;

/// Calls kept per binding (the newest).
pub const RECORDED_CALLS_MAX: usize = 256;

/// The ring of one binding's recent calls.
pub struct Recorder<K: PolicyKindSpec> {
    ring: Mutex<VecDeque<Arc<Entry<K>>>>,
    pub(crate) tables: TableCache,
}

impl<K: PolicyKindSpec> Default for Recorder<K> {
    fn default() -> Self {
        Recorder {
            ring: Mutex::new(VecDeque::with_capacity(RECORDED_CALLS_MAX)),
            tables: TableCache::default(),
        }
    }
}

impl<K: PolicyKindSpec> Recorder<K> {
    /// Keeps `entry`, dropping the oldest beyond the bound; skipped when
    /// the ring is busy.
    pub fn push(&self, entry: Arc<Entry<K>>) {
        let mut ring = match self.ring.try_lock() {
            Ok(ring) => ring,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        if ring.len() == RECORDED_CALLS_MAX {
            ring.pop_front();
        }
        ring.push_back(entry);
    }

    /// The recorded calls, oldest first.
    pub fn snapshot(&self) -> Vec<Arc<Entry<K>>> {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.iter().cloned().collect()
    }

    /// How many calls are kept.
    pub fn len(&self) -> usize {
        self.ring.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}
