//! Recent versions: the newest version of each recently written key that a
//! write through this levee instance was acknowledged with (quorum reached,
//! 200 to the client), so the read path can tell a stale answer.
//!
//! A read answered with an older `x-levee-version` than the one noted here,
//! or with a 404 without a version for a key noted as holding a value, came
//! from a replica that missed the write (the lag index did not know, e.g.
//! a hint was dropped, or a replica lost data): the read path then asks the
//! next replica for the client and requests a repair of the key.
//!
//! Start-up also notes the version of every logged write some replica may
//! still lack (see [`crate::replication::recovery`]): once delivered it is
//! the newest its key has, so an older answer is stale meanwhile.
//!
//! # The bound
//!
//! A fixed table of [`RECENT_KEYS_MAX`] slots, direct-mapped by a 64-bit
//! hash of (service, key) ([`crate::replication::hints::key_hash`]): a key
//! takes the slot its hash points to, evicting whatever was there. So
//! eviction is one overwrite, memory is at most `RECENT_KEYS_MAX` × 40
//! bytes = 2.5 MiB (allocated a shard at a time, on the first write that
//! lands in it), and a lookup is one hash and one uncontended lock of one
//! of [`SHARDS`] shards. A key evicted (or never written through this
//! instance, or written before the log's oldest undelivered record) is
//! simply not known: its reads are not checked, which is how levee behaved
//! before.
//!
//! Reads of a levee that has not acknowledged a write yet cost one atomic
//! load here.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use levee_version::Version;

use crate::replication::hints::key_hash;
use crate::replication::record::WriteHeader;

/// Keys remembered at most (slots in the table).
pub const RECENT_KEYS_MAX: usize = 65_536;
/// Locks the table is split under (a power of two dividing the slots).
pub const SHARDS: usize = 64;
const SLOTS_PER_SHARD: usize = RECENT_KEYS_MAX / SHARDS;

/// What is known about a key: the newest version acknowledged through this
/// instance, and whether that write was a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Known {
    pub version: Version,
    pub deleted: bool,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    hash: u64,
    known: Known,
}

/// The table (see the module doc).
#[derive(Debug)]
pub struct RecentVersions {
    shards: Box<[Mutex<Vec<Option<Slot>>>]>,
    /// Set by the first note: until then reads skip the lookup.
    any: AtomicBool,
}

impl Default for RecentVersions {
    fn default() -> Self {
        RecentVersions {
            shards: (0..SHARDS).map(|_| Mutex::new(Vec::new())).collect(),
            any: AtomicBool::new(false),
        }
    }
}

/// What a read's answer says compared with what is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// At least as new as known (or nothing to compare).
    Fresh,
    /// Older than a version acknowledged through this instance.
    Stale,
}

impl RecentVersions {
    /// A write of `key` of `service` with `version` was acknowledged to the
    /// client (`deleted`: it was a DELETE). Keeps the newest.
    pub fn note(&self, service: &str, key: &str, version: Version, deleted: bool) {
        let hash = key_hash(service, key);
        let (shard, slot) = place(hash);
        let mut table = lock(&self.shards[shard]);
        if table.is_empty() {
            table.resize(SLOTS_PER_SHARD, None);
        }
        let entry = &mut table[slot];
        match entry {
            Some(held) if held.hash == hash && held.known.version >= version => {}
            _ => {
                *entry = Some(Slot {
                    hash,
                    known: Known { version, deleted },
                })
            }
        }
        self.any.store(true, Ordering::Release);
    }

    /// The fan-out answered the write of `header`: noted if the answer
    /// was an acknowledgement (`acked`, W replicas took it).
    pub fn note_write(&self, header: &WriteHeader, acked: bool) {
        if acked {
            let deleted = header.method.eq_ignore_ascii_case("DELETE");
            self.note(&header.service, &header.key, header.version, deleted);
        }
    }

    /// What is known about `key` of `service`, if anything.
    pub fn known(&self, service: &str, key: &str) -> Option<Known> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let hash = key_hash(service, key);
        let (shard, slot) = place(hash);
        let table = lock(&self.shards[shard]);
        let held = table.get(slot).copied().flatten()?;
        (held.hash == hash).then_some(held.known)
    }
}

impl Known {
    /// Judges a replica's read answer: `status` and its version, if it
    /// carried one. An older version is stale; so is a 404 without a
    /// version when the key holds a value. An answer without a version
    /// otherwise is not judged (an upstream that does not speak versions).
    pub fn judge(&self, status: u16, version: Option<Version>) -> Freshness {
        let stale = match version {
            Some(version) => version < self.version,
            None => status == 404 && !self.deleted,
        };
        if stale {
            Freshness::Stale
        } else {
            Freshness::Fresh
        }
    }
}

/// The shard and the slot within it of `hash`.
fn place(hash: u64) -> (usize, usize) {
    let index = (hash % RECENT_KEYS_MAX as u64) as usize;
    (index % SHARDS, index / SHARDS)
}

fn lock(shard: &Mutex<Vec<Option<Slot>>>) -> std::sync::MutexGuard<'_, Vec<Option<Slot>>> {
    // A panic while holding it left whole slots (one copy each).
    shard
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use levee_version::InstanceId;

    fn version(physical_ms: u64) -> Version {
        Version {
            physical_ms,
            logical: 0,
            instance: InstanceId(1),
        }
    }

    #[test]
    fn keeps_the_newest_version_per_key() {
        let recent = RecentVersions::default();
        assert_eq!(recent.known("kv", "k"), None);
        recent.note("kv", "k", version(5), false);
        recent.note("kv", "k", version(3), true);
        let known = recent.known("kv", "k").unwrap();
        assert_eq!((known.version, known.deleted), (version(5), false));
        recent.note("kv", "k", version(7), true);
        assert_eq!(recent.known("kv", "k").unwrap().version, version(7));
        assert_eq!(recent.known("kv", "other"), None);
        assert_eq!(recent.known("other", "k"), None);
    }

    #[test]
    fn the_table_never_holds_more_than_its_bound() {
        let recent = RecentVersions::default();
        let keys = 4 * RECENT_KEYS_MAX;
        for i in 0..keys {
            recent.note("kv", &format!("k{i}"), version(i as u64 + 1), false);
        }
        let held: usize = recent.shards.iter().map(|s| lock(s).len()).sum();
        assert_eq!(held, RECENT_KEYS_MAX);
        // The last keys written are (mostly) still known; evicted ones are
        // simply unknown, never wrong.
        let last = (keys - 100..keys)
            .filter(|i| recent.known("kv", &format!("k{i}")).is_some())
            .count();
        assert!(last > 90, "{last} of the last 100 keys known");
        for i in 0..keys {
            if let Some(known) = recent.known("kv", &format!("k{i}")) {
                assert_eq!(known.version, version(i as u64 + 1));
            }
        }
    }

    #[test]
    fn judges_answers_against_the_known_version() {
        let value = Known {
            version: version(5),
            deleted: false,
        };
        assert_eq!(value.judge(200, Some(version(5))), Freshness::Fresh);
        assert_eq!(value.judge(200, Some(version(6))), Freshness::Fresh);
        assert_eq!(value.judge(200, Some(version(4))), Freshness::Stale);
        assert_eq!(value.judge(404, Some(version(4))), Freshness::Stale);
        assert_eq!(value.judge(404, None), Freshness::Stale);
        assert_eq!(value.judge(200, None), Freshness::Fresh, "not judged");
        let tombstone = Known {
            version: version(5),
            deleted: true,
        };
        assert_eq!(tombstone.judge(404, None), Freshness::Fresh);
        assert_eq!(tombstone.judge(404, Some(version(5))), Freshness::Fresh);
        assert_eq!(tombstone.judge(200, Some(version(4))), Freshness::Stale);
    }
}
