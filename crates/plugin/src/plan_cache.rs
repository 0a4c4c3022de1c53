//! The route-plan cache of a routing plugin that declared
//! `cacheable-by-health-flags` (WIT `routing.route-traits`).
//!
//! # What may be cached, and the key
//! A plan may be reused only for a request on which `route` would certainly
//! answer the same. The plugin promises that its plan is a pure function
//! of the request facts, the node table and the candidates' nodes (in
//! order) with their `healthy` flags. So the key is exactly that:
//!
//! | part | why |
//! |---|---|
//! | node-table epoch ([`crate::NodeTable::epoch`]) | a new configuration is a new table; nodes are named by index in it |
//! | facts (method class, idempotent) | the only request data a call passes |
//! | candidates: `(node, healthy)` in order | the key's replicas (they stand for the routing key and the ring) and the health the plan may use |
//!
//! Not in the key, and kept out of the plugin's reach instead: the
//! candidates' `failure-rate-permille` and `latency-ms` (they change with
//! every request; a declared plugin is passed 0 for both, so it cannot
//! depend on them), and the `request` functions, `now-ms` and `random-u64`
//! (a call that reads any of them is answered but not cached). Only state a
//! plugin keeps between calls escapes the host's checks; the WIT forbids
//! it to a declared plugin.
//!
//! Why not (routing-key hash, ring epoch, health epoch): the candidates are
//! what the routing key and the ring determine, so keying by them makes two
//! keys with the same replicas share an entry and makes hash collisions
//! harmless (the candidates are compared, not only hashed). And health is
//! not an event stream the host could number: an ejection *ends* when the
//! clock passes its deadline (the host's `NodeHealth::is_healthy(now)`),
//! without any write that could bump an epoch. The `healthy` flags the
//! request path computes for this very call are the exact health the plan
//! would see, so a flip in either direction is a different key, never a
//! stale entry, and a flip of a node that is not among a key's candidates
//! leaves that key's entry valid.
//!
//! # Bounds and cost
//! Set-associative: [`PLAN_CACHE_ENTRIES_MAX`] entries in sets of
//! [`WAYS`], each set behind its own mutex; the key's hash picks the set,
//! and a new entry takes a free way or, in a full set, replaces the ways in
//! turn. So memory is bounded (about 48 bytes per set up front, plus each
//! entry's key and plan, at most [`CANDIDATES_CACHED_MAX`] nodes each),
//! nothing is ever rehashed or swept, a working set well under the bound
//! stays cached (it takes five keys in one set of four to evict one), and
//! two requests contend only when their keys share a set. A hit hashes the
//! key, locks one set, compares at most four entries, and clones the plan's
//! order (one small `Vec`, as any answer is).
//!
//! # Lifetime
//! The cache belongs to the [`crate::BoundPlugin`]: a new binding (new
//! version, new config, new limits) starts empty, and dropping the binding
//! drops it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use levee_policy::{Candidate, RequestFacts, RoutePlan};
use serde::Serialize;

/// Plans one bound routing plugin keeps at most.
pub const PLAN_CACHE_ENTRIES_MAX: usize = 4_096;

/// Entries per set (the associativity).
pub const WAYS: usize = 4;

const SETS: usize = PLAN_CACHE_ENTRIES_MAX / WAYS;

/// Calls with more candidates than this are never cached: it bounds each
/// entry (key and plan) to a few hundred bytes.
pub const CANDIDATES_CACHED_MAX: usize = 64;

/// What a routing plugin's `configure` declared (WIT
/// `routing.route-traits`); all false for other kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct RouteTraits {
    /// The plan depends only on the facts, the node table and the
    /// candidates' nodes, order and `healthy` flags: plans are cached.
    pub cacheable_by_health_flags: bool,
}

/// The cache's occupancy, for [`crate::Stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PlanCacheStats {
    /// Slots holding a plan.
    pub entries: u32,
    pub entries_max: u32,
}

/// One cached plan and the whole key it answers.
struct Entry {
    hash: u64,
    table_epoch: u64,
    facts: RequestFacts,
    /// `node << 1 | healthy` per candidate, in order.
    candidates: Box<[u64]>,
    plan: RoutePlan,
}

impl Entry {
    fn answers(&self, key: &Key<'_>) -> bool {
        self.hash == key.hash
            && self.table_epoch == key.table_epoch
            && self.facts == key.facts
            && self.candidates.len() == key.candidates.len()
            && self
                .candidates
                .iter()
                .zip(key.candidates)
                .all(|(&packed, candidate)| packed == pack(candidate))
    }
}

/// A lookup key, borrowed from the call's inputs (no allocation).
pub(crate) struct Key<'a> {
    hash: u64,
    table_epoch: u64,
    facts: RequestFacts,
    candidates: &'a [Candidate],
}

impl<'a> Key<'a> {
    /// The key of a call over the node table of epoch `table_epoch`
    /// ([`crate::NodeTable::epoch`]), or `None` when it has too many
    /// candidates to cache.
    pub(crate) fn of(
        table_epoch: u64,
        facts: RequestFacts,
        candidates: &'a [Candidate],
    ) -> Option<Key<'a>> {
        if candidates.len() > CANDIDATES_CACHED_MAX {
            return None;
        }
        let mut hash = mix(SEED, table_epoch);
        hash = mix(hash, facts.method as u64);
        hash = mix(hash, u64::from(facts.idempotent));
        for candidate in candidates {
            hash = mix(hash, pack(candidate));
        }
        Some(Key {
            hash,
            table_epoch,
            facts,
            candidates,
        })
    }
}

fn pack(candidate: &Candidate) -> u64 {
    u64::from(candidate.node) << 1 | u64::from(candidate.healthy)
}

const SEED: u64 = 0x243F_6A88_85A3_08D3;

/// One multiply-rotate round (FxHash-like): the keys are short and come
/// from the host (the ring's replicas), not from clients, so speed matters
/// more than flooding resistance; a collision only evicts.
fn mix(hash: u64, value: u64) -> u64 {
    (hash.rotate_left(5) ^ value).wrapping_mul(0x51_7C_C1_B7_27_22_0A_95)
}

/// Spreads every input bit over the top bits the slot index takes
/// (MurmurHash3's `fmix64`): one multiply-rotate round per input alone
/// leaves keys that differ in one candidate crowding few slots.
fn finish(mut hash: u64) -> u64 {
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    hash ^ (hash >> 33)
}

/// One set: up to [`WAYS`] entries, and the way a full set replaces next.
#[derive(Default)]
struct Set {
    ways: [Option<Box<Entry>>; WAYS],
    next: usize,
}

/// The bounded plan cache of one bound routing plugin.
pub(crate) struct PlanCache {
    sets: Box<[Mutex<Set>]>,
    entries: AtomicU32,
}

impl PlanCache {
    pub(crate) fn new() -> PlanCache {
        PlanCache {
            sets: (0..SETS).map(|_| Mutex::default()).collect(),
            entries: AtomicU32::new(0),
        }
    }

    /// The plan cached for `key`, if any.
    pub(crate) fn get(&self, key: &Key<'_>) -> Option<RoutePlan> {
        let set = self.set(key.hash);
        set.ways
            .iter()
            .flatten()
            .find(|entry| entry.answers(key))
            .map(|entry| entry.plan.clone())
    }

    /// Caches `plan` (already validated and sanitized) for `key`: in place
    /// of an entry for the same key (a racing miss), else in a free way of
    /// its set, else in place of the way the set replaces next.
    pub(crate) fn insert(&self, key: &Key<'_>, plan: &RoutePlan) {
        let entry = Box::new(Entry {
            hash: key.hash,
            table_epoch: key.table_epoch,
            facts: key.facts,
            candidates: key.candidates.iter().map(pack).collect(),
            plan: plan.clone(),
        });
        let mut set = self.set(key.hash);
        let way = set
            .ways
            .iter()
            .position(|way| way.as_ref().is_some_and(|entry| entry.answers(key)))
            .or_else(|| set.ways.iter().position(Option::is_none));
        let way = way.unwrap_or_else(|| {
            let way = set.next;
            set.next = (way + 1) % WAYS;
            way
        });
        if set.ways[way].replace(entry).is_none() {
            self.entries.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn stats(&self) -> PlanCacheStats {
        PlanCacheStats {
            entries: self.entries.load(Ordering::Relaxed),
            entries_max: PLAN_CACHE_ENTRIES_MAX as u32,
        }
    }

    /// The set of `hash`, locked. Each way is whole or absent, so a panic
    /// elsewhere cannot leave a set torn: poisoning is ignored.
    fn set(&self, hash: u64) -> std::sync::MutexGuard<'_, Set> {
        let index = (finish(hash) >> (u64::BITS - SETS.trailing_zeros())) as usize;
        self.sets[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

const _: () = assert!(SETS.is_power_of_two() && SETS * WAYS == PLAN_CACHE_ENTRIES_MAX);

#[cfg(test)]
mod tests {
    use super::*;
    use levee_policy::Method;

    fn facts(method: Method) -> RequestFacts {
        RequestFacts {
            method,
            idempotent: method.is_read(),
        }
    }

    fn candidates(nodes: &[(u32, bool)]) -> Vec<Candidate> {
        nodes
            .iter()
            .map(|&(node, healthy)| Candidate {
                node,
                healthy,
                failure_rate_permille: 7,
                latency_ms: 3,
            })
            .collect()
    }

    fn plan(order: &[u32]) -> RoutePlan {
        RoutePlan {
            order: order.to_vec(),
            hedge_delay_ms: Some(5),
        }
    }

    #[test]
    fn a_plan_answers_exactly_its_key() {
        let cache = PlanCache::new();
        let (table, other_table) = (7, 8);
        let three = candidates(&[(0, true), (1, false), (2, true)]);
        let key = Key::of(table, facts(Method::Get), &three).unwrap();
        assert_eq!(cache.get(&key), None);
        cache.insert(&key, &plan(&[0, 2]));
        assert_eq!(cache.get(&key), Some(plan(&[0, 2])));
        assert_eq!(cache.stats().entries, 1);

        // The health scalars are not part of the key.
        let mut slower = three.clone();
        slower[0].latency_ms = 900;
        slower[2].failure_rate_permille = 1000;
        let same = Key::of(table, facts(Method::Get), &slower).unwrap();
        assert_eq!(cache.get(&same), Some(plan(&[0, 2])));

        // Everything else is.
        let flipped = candidates(&[(0, true), (1, true), (2, true)]);
        let reordered = candidates(&[(2, true), (1, false), (0, true)]);
        let fewer = candidates(&[(0, true), (1, false)]);
        for (table, method, candidates) in [
            (table, Method::Get, &flipped),
            (table, Method::Get, &reordered),
            (table, Method::Get, &fewer),
            (table, Method::Post, &three),
            (other_table, Method::Get, &three),
        ] {
            let key = Key::of(table, facts(method), candidates).unwrap();
            assert_eq!(cache.get(&key), None, "{method:?} {candidates:?}");
        }
    }

    #[test]
    fn sets_are_bounded_and_replaced() {
        let cache = PlanCache::new();
        let table = 1;
        for node in 0..(3 * PLAN_CACHE_ENTRIES_MAX as u32) {
            let one = candidates(&[(node, true)]);
            let key = Key::of(table, facts(Method::Get), &one).unwrap();
            cache.insert(&key, &plan(&[node]));
            assert_eq!(cache.get(&key), Some(plan(&[node])));
        }
        // 12 keys per set of 4 on average: nearly every way holds one,
        // if the keys spread evenly.
        let stats = cache.stats();
        assert!(stats.entries as usize <= PLAN_CACHE_ENTRIES_MAX);
        assert!(
            stats.entries as usize > PLAN_CACHE_ENTRIES_MAX * 9 / 10,
            "{stats:?}"
        );
    }

    #[test]
    fn a_small_working_set_stays_cached() {
        // 256 keys in 1,024 sets of 4: evicting one would take five keys
        // in one set.
        let cache = PlanCache::new();
        let keys: Vec<Vec<Candidate>> = (0..256).map(|node| candidates(&[(node, true)])).collect();
        for one in &keys {
            let key = Key::of(1, facts(Method::Get), one).unwrap();
            cache.insert(&key, &plan(&[one[0].node]));
        }
        for one in &keys {
            let key = Key::of(1, facts(Method::Get), one).unwrap();
            assert_eq!(cache.get(&key), Some(plan(&[one[0].node])));
        }
        assert_eq!(cache.stats().entries, 256);
        // A repeated insert of a key replaces its own entry.
        let key = Key::of(1, facts(Method::Get), &keys[0]).unwrap();
        cache.insert(&key, &plan(&[9]));
        assert_eq!(cache.get(&key), Some(plan(&[9])));
        assert_eq!(cache.stats().entries, 256);
    }

    #[test]
    fn too_many_candidates_have_no_key() {
        let table = 1;
        let many = vec![Candidate::default(); CANDIDATES_CACHED_MAX + 1];
        assert!(Key::of(table, facts(Method::Get), &many).is_none());
        let enough = &many[..CANDIDATES_CACHED_MAX];
        assert!(Key::of(table, facts(Method::Get), enough).is_some());
    }
}
