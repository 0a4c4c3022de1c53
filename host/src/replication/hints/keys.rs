//! The lag index: which keys each replica still owes, so reads of a key
//! skip the replicas that have not got its newest write yet
//! (read-your-writes routing).
//!
//! # What is in it
//!
//! Per node, the writes registered for it that it has not settled, as
//! `LSN → key hash` plus `key hash → how many`, where the key hash is a
//! 64-bit hash of (service, routing key) ([`key_hash`]). A write enters
//! for each of its targets when the fan-out registers it
//! ([`super::register::AppendTicket::register_write`]) and, at start-up,
//! for every record above a node's cursor (recovery reads them all back to
//! size the backlogs anyway). It leaves a node's index when the node acks
//! it (or answers that it holds something newer), when it is rejected for
//! good, when the handoff delivers or drops it, and in any case once the
//! node's cursor passes it (the cursor's meaning: everything at or below
//! it is done for the node). A hash collision only makes a read skip a
//! replica it did not have to.
//!
//! # The bound
//!
//! At most [`LAG_KEYS_MAX`] writes per node. A write that would go past it
//! is not indexed: the node is marked **overflowed** through that write's
//! LSN instead, and every read skips it (whatever the key) until its cursor
//! has passed that LSN, i.e. until everything it owed then is delivered,
//! dropped or acked. So memory is at most `LAG_KEYS_MAX` × (about 64 bytes:
//! one B-tree entry and one hash-map entry) = about 2 MiB per node, 0 for
//! a node that owes nothing, whatever the backlog.
//!
//! # Reads
//!
//! A read first loads one atomic, the number of nodes that owe anything;
//! while it is 0 (the normal state) the index costs nothing more. Only
//! otherwise does it take the ledger's lock and look the key up
//! ([`super::HintLedger::lagging`]).
//!
//! Writes whose LSN is closed as a gap (an append that failed after
//! consuming an LSN) are not indexed: their key is unknown, and no client
//! was told they were written.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Lsn, NodeRef};

/// Writes indexed per node at most (see "The bound" above).
pub const LAG_KEYS_MAX: usize = 32 * 1024;

/// A key's identity in the index: a hash of its service and routing key.
pub type KeyHash = u64;

/// The index's hash of (`service`, `key`): SipHash with fixed keys, so it
/// is the same in every process (no allocation).
pub fn key_hash(service: &str, key: &str) -> KeyHash {
    let mut hasher = std::hash::DefaultHasher::new();
    service.hash(&mut hasher);
    key.hash(&mut hasher);
    hasher.finish()
}

/// One node's unsettled writes.
#[derive(Debug, Default)]
struct NodeLag {
    by_lsn: BTreeMap<Lsn, KeyHash>,
    by_key: HashMap<KeyHash, u32>,
    /// Writes up to this LSN may be owed without being indexed (0: none).
    overflow_through: Lsn,
}

impl NodeLag {
    fn owes_anything(&self) -> bool {
        !self.by_lsn.is_empty() || self.overflow_through > 0
    }

    fn owes(&self, hash: KeyHash) -> bool {
        self.overflow_through > 0 || self.by_key.contains_key(&hash)
    }

    fn insert(&mut self, lsn: Lsn, hash: KeyHash) {
        if self.by_lsn.contains_key(&lsn) {
            return;
        }
        if self.by_lsn.len() >= LAG_KEYS_MAX {
            self.overflow_through = self.overflow_through.max(lsn);
            return;
        }
        self.by_lsn.insert(lsn, hash);
        *self.by_key.entry(hash).or_default() += 1;
    }

    fn remove(&mut self, lsn: Lsn) {
        if let Some(hash) = self.by_lsn.remove(&lsn) {
            self.forget_key(hash);
        }
    }

    fn forget_key(&mut self, hash: KeyHash) {
        if let Some(count) = self.by_key.get_mut(&hash) {
            *count -= 1;
            if *count == 0 {
                self.by_key.remove(&hash);
            }
        }
    }

    /// Everything at or below `cursor` is settled.
    fn settle_through(&mut self, cursor: Lsn) {
        // Bounded by the entries removed, each once.
        while let Some((&lsn, &hash)) = self.by_lsn.first_key_value()
            && lsn <= cursor
        {
            self.by_lsn.remove(&lsn);
            self.forget_key(hash);
        }
        if self.overflow_through <= cursor {
            self.overflow_through = 0;
        }
        if self.by_lsn.is_empty() {
            // Give the memory back once a burst is over.
            self.by_key.shrink_to(0);
        }
    }
}

/// Every node's unsettled writes, by service then node id (so a read looks
/// them up by `&str`, without building a [`NodeRef`]).
#[derive(Debug, Default)]
pub(super) struct LagIndex {
    services: HashMap<String, HashMap<String, NodeLag>>,
    /// Nodes that owe anything; read without the ledger's lock.
    owing_nodes: Arc<AtomicUsize>,
}

impl LagIndex {
    /// The counter reads check first.
    pub(super) fn owing_nodes(&self) -> Arc<AtomicUsize> {
        self.owing_nodes.clone()
    }

    /// Applies `change` to `node`'s entry (created if `create`), keeping the
    /// count of owing nodes right.
    fn change(&mut self, node: &NodeRef, create: bool, change: impl FnOnce(&mut NodeLag)) {
        let lag = match self.lookup_mut(node) {
            Some(lag) => lag,
            None if create => self
                .services
                .entry(node.service.clone())
                .or_default()
                .entry(node.node.clone())
                .or_default(),
            None => return,
        };
        let before = lag.owes_anything();
        change(lag);
        match (before, lag.owes_anything()) {
            (false, true) => {
                self.owing_nodes.fetch_add(1, Ordering::Release);
            }
            (true, false) => {
                self.owing_nodes.fetch_sub(1, Ordering::Release);
            }
            _ => {}
        }
    }

    fn lookup_mut(&mut self, node: &NodeRef) -> Option<&mut NodeLag> {
        self.services.get_mut(&node.service)?.get_mut(&node.node)
    }

    /// `node` owes write `lsn` to key `hash`.
    pub(super) fn owe(&mut self, node: &NodeRef, lsn: Lsn, hash: KeyHash) {
        self.change(node, true, |lag| lag.insert(lsn, hash));
    }

    /// `node` no longer owes write `lsn`.
    pub(super) fn settle(&mut self, node: &NodeRef, lsn: Lsn) {
        if self.is_idle() {
            return;
        }
        self.change(node, false, |lag| lag.remove(lsn));
    }

    /// `node`'s cursor is at `cursor`: it owes nothing at or below it.
    pub(super) fn settle_through(&mut self, node: &NodeRef, cursor: Lsn) {
        if self.is_idle() {
            return;
        }
        self.change(node, false, |lag| lag.settle_through(cursor));
    }

    fn is_idle(&self) -> bool {
        self.owing_nodes.load(Ordering::Relaxed) == 0
    }

    /// Whether `node` of `service` may owe key `hash`.
    pub(super) fn owes(&self, service: &str, node: &str, hash: KeyHash) -> bool {
        self.services
            .get(service)
            .and_then(|nodes| nodes.get(node))
            .is_some_and(|lag| lag.owes(hash))
    }

    /// Whether `node` is overflowed, and how many writes it has indexed.
    pub(super) fn node_state(&self, node: &NodeRef) -> (bool, usize) {
        self.services
            .get(&node.service)
            .and_then(|nodes| nodes.get(&node.node))
            .map_or((false, 0), |lag| {
                (lag.overflow_through > 0, lag.by_lsn.len())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> NodeRef {
        NodeRef::new("kv", name)
    }

    #[test]
    fn a_key_is_owed_until_each_of_its_writes_is_settled() {
        let mut index = LagIndex::default();
        let (a, k) = (node("a"), key_hash("kv", "k"));
        index.owe(&a, 1, k);
        index.owe(&a, 2, k);
        assert!(index.owes("kv", "a", k));
        assert!(!index.owes("kv", "a", key_hash("kv", "other")));
        assert!(!index.owes("kv", "b", k));
        assert!(!index.owes("other", "a", k));
        assert_eq!(index.owing_nodes.load(Ordering::Relaxed), 1);
        index.settle(&a, 1);
        assert!(index.owes("kv", "a", k), "write 2 is still owed");
        index.settle(&a, 2);
        assert!(!index.owes("kv", "a", k));
        assert_eq!(index.owing_nodes.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_cursor_settles_everything_at_or_below_it() {
        let mut index = LagIndex::default();
        let a = node("a");
        for lsn in 1..=5 {
            index.owe(&a, lsn, key_hash("kv", &format!("k{lsn}")));
        }
        index.settle_through(&a, 3);
        assert_eq!(index.node_state(&a), (false, 2));
        assert!(!index.owes("kv", "a", key_hash("kv", "k3")));
        assert!(index.owes("kv", "a", key_hash("kv", "k4")));
        index.settle_through(&a, 5);
        assert_eq!(index.owing_nodes.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn past_the_bound_the_node_overflows_until_its_cursor_passes() {
        let mut index = LagIndex::default();
        let (a, b) = (node("a"), node("b"));
        let count = LAG_KEYS_MAX as Lsn;
        for lsn in 1..=count {
            index.owe(&a, lsn, lsn);
        }
        assert_eq!(index.node_state(&a), (false, LAG_KEYS_MAX));
        index.owe(&a, count + 1, 0);
        index.owe(&a, count + 2, 0);
        assert_eq!(index.node_state(&a), (true, LAG_KEYS_MAX), "not indexed");
        assert!(index.owes("kv", "a", key_hash("kv", "never written")));
        // Settling indexed writes does not clear the overflow ...
        for lsn in 1..=count {
            index.settle(&a, lsn);
        }
        assert!(index.owes("kv", "a", 12345));
        assert_eq!(index.owing_nodes.load(Ordering::Relaxed), 1);
        // ... the cursor passing the last unindexed write does.
        index.settle_through(&a, count + 1);
        assert!(index.owes("kv", "a", 12345));
        index.settle_through(&a, count + 2);
        assert!(!index.owes("kv", "a", 12345));
        assert_eq!(index.owing_nodes.load(Ordering::Relaxed), 0);
        // Another node was never affected.
        index.owe(&b, 1, 7);
        assert!(!index.owes("kv", "b", 12345));
    }

    #[test]
    fn the_hash_depends_on_service_and_key() {
        assert_eq!(key_hash("kv", "k"), key_hash("kv", "k"));
        assert_ne!(key_hash("kv", "k"), key_hash("kv2", "k"));
        assert_ne!(key_hash("kv", "k"), key_hash("kv", "k2"));
    }
}
