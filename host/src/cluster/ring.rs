//! The SHA-1 consistent-hash ring: which replicas own a key.
//!
//! Placement must be reproducible by another levee instance, or by a tool
//! written in any language, from the configuration alone. So the rule is
//! spelled out exactly here and nothing else feeds into it:
//!
//! - **Points.** A node with id `ID` and weight `w` owns `vnodes_per_weight
//!   × w` points (default 160 per unit of weight). Virtual node `i`
//!   (0-based, decimal, no padding) hashes the UTF-8 bytes of `ID#i`, e.g.
//!   `"node-a#0"`, `"node-a#1"`, ... with SHA-1. Its point is the first 8
//!   bytes of the 20-byte digest read as a **big-endian u64**.
//! - **Order and ties.** Points are sorted ascending by `(point, node id
//!   bytes, virtual node index)`. Two nodes colliding on a point (odds about
//!   2^-64 per pair) are therefore ordered by id, which every implementation
//!   can reproduce; nothing depends on the order nodes are listed in.
//! - **Keys.** A key's position is the same rule applied to the key's
//!   bytes: first 8 bytes of SHA-1(key), big-endian. The key is the one the
//!   data plane took from the request after normalizing it
//!   (`dataplane::key`: `%61lice` and `alice` are the same key).
//! - **Preference list.** Starting at the first point whose value is `>=`
//!   the key's position (wrapping past the end to index 0), walk clockwise
//!   and collect the nodes of the points met, skipping nodes already
//!   collected, until `N` distinct nodes are found or every node has been
//!   seen. The first is the key's primary.
//!
//! Lookup is a binary search over the sorted points plus a short walk; it
//! allocates nothing (the result is a fixed-capacity [`Preference`]).
//!
//! The ring is `placement: "ring"`, the default; a service may choose
//! weighted rendezvous hashing instead ([`crate::cluster::placement`],
//! which also fingerprints the node set). With 160 points per node the
//! busiest node holds about 1.2× the mean (host/benches/ring.rs measures
//! both side by side).

use sha1::{Digest, Sha1};

pub use crate::config::{REPLICAS_MAX, VNODES_PER_WEIGHT_DEFAULT};

/// Most nodes a ring may hold (also bounds the node index type).
pub const NODES_MAX: usize = 1024;
/// Most points a ring may hold, so a misconfigured weight cannot eat memory:
/// the configuration's [`crate::config::RING_POINTS_MAX`], which validation
/// checks with the other field errors (`services[i].vnodes_per_weight`), so
/// a validated spec never meets [`RingError::TooManyPoints`] here.
pub const POINTS_MAX: usize = crate::config::RING_POINTS_MAX as usize;

/// Why a ring could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RingError {
    #[error("a ring needs at least one node")]
    Empty,
    #[error("{count} nodes is more than the {max} allowed")]
    TooManyNodes { count: usize, max: usize },
    #[error("node id {0:?} appears twice")]
    DuplicateNode(String),
    #[error("node {0:?} has weight 0")]
    ZeroWeight(String),
    #[error("{points} virtual nodes is more than the {max} allowed")]
    TooManyPoints { points: u64, max: usize },
    #[error("total node weight {weight} is more than the {max} rendezvous allows")]
    TooMuchWeight { weight: u64, max: u64 },
}

/// One point on the ring: its position and the index of the node owning it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Point {
    position: u64,
    node_index: u16,
}

/// An immutable consistent-hash ring. Node indices returned by lookups refer
/// to the order of the `nodes` slice given to [`Ring::new`].
#[derive(Debug, Clone)]
pub struct Ring {
    points: Vec<Point>,
    node_count: usize,
}

/// The first 8 bytes of SHA-1(`bytes`), big-endian: the one hash rule of the
/// ring, used for both points and keys.
pub fn position_of(bytes: &[u8]) -> u64 {
    let digest = Sha1::digest(bytes);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The position of virtual node `vnode_index` of node `node_id`.
pub fn vnode_position(node_id: &str, vnode_index: u32) -> u64 {
    let mut hasher = Sha1::new();
    hasher.update(node_id.as_bytes());
    hasher.update(b"#");
    hasher.update(vnode_index.to_string().as_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

impl Ring {
    /// Builds a ring over `nodes` given as `(id, weight)`.
    pub fn new<'a>(
        nodes: impl IntoIterator<Item = (&'a str, u32)>,
        vnodes_per_weight: u32,
    ) -> Result<Ring, RingError> {
        let nodes: Vec<(&str, u32)> = nodes.into_iter().collect();
        Self::validate(&nodes, vnodes_per_weight)?;
        let mut keyed: Vec<(u64, &str, u32, u16)> = Vec::new();
        for (node_index, (id, weight)) in nodes.iter().enumerate() {
            let vnodes = weight * vnodes_per_weight;
            for vnode_index in 0..vnodes {
                let index = u16::try_from(node_index).expect("validated: nodes <= NODES_MAX");
                keyed.push((vnode_position(id, vnode_index), id, vnode_index, index));
            }
        }
        keyed.sort_unstable_by(|a, b| (a.0, a.1.as_bytes(), a.2).cmp(&(b.0, b.1.as_bytes(), b.2)));
        let points = keyed
            .into_iter()
            .map(|(position, _, _, node_index)| Point {
                position,
                node_index,
            })
            .collect();
        Ok(Ring {
            points,
            node_count: nodes.len(),
        })
    }

    fn validate(nodes: &[(&str, u32)], vnodes_per_weight: u32) -> Result<(), RingError> {
        validate_nodes(nodes)?;
        let mut total: u64 = 0;
        for (id, weight) in nodes {
            if vnodes_per_weight == 0 {
                return Err(RingError::ZeroWeight(id.to_string()));
            }
            total += u64::from(*weight) * u64::from(vnodes_per_weight);
        }
        if total > POINTS_MAX as u64 {
            return Err(RingError::TooManyPoints {
                points: total,
                max: POINTS_MAX,
            });
        }
        Ok(())
    }

    /// How many nodes the ring was built over.
    pub fn node_count(&self) -> usize {
        self.node_count
    }

    /// How many points (virtual nodes) the ring holds.
    pub fn point_count(&self) -> usize {
        self.points.len()
    }

    /// The index of the first point at or after `position`, wrapping.
    fn first_point_at_or_after(&self, position: u64) -> usize {
        let index = self
            .points
            .partition_point(|point| point.position < position);
        if index == self.points.len() { 0 } else { index }
    }

    /// The key's primary node (the first entry of its preference list).
    pub fn primary(&self, key: &[u8]) -> usize {
        let start = self.first_point_at_or_after(position_of(key));
        usize::from(self.points[start].node_index)
    }

    /// The key's preference list: the first `replicas` distinct nodes
    /// clockwise from the key's position (fewer if the ring has fewer nodes).
    pub fn preference(&self, key: &[u8], replicas: usize) -> Preference {
        self.preference_at(position_of(key), replicas)
    }

    /// [`Ring::preference`] for an already hashed key position.
    pub fn preference_at(&self, position: u64, replicas: usize) -> Preference {
        let wanted = replicas.min(self.node_count).min(REPLICAS_MAX);
        let mut preference = Preference::default();
        let start = self.first_point_at_or_after(position);
        // Bounded: at most one full turn of the ring.
        for step in 0..self.points.len() {
            if preference.len() == wanted {
                break;
            }
            let point = self.points[(start + step) % self.points.len()];
            if !preference.contains(point.node_index) {
                preference.push(point.node_index);
            }
        }
        debug_assert_eq!(preference.len(), wanted);
        preference
    }
}

/// The checks every placement makes of its node set: at least one node, at
/// most [`NODES_MAX`], no id twice, no weight 0.
pub(crate) fn validate_nodes(nodes: &[(&str, u32)]) -> Result<(), RingError> {
    if nodes.is_empty() {
        return Err(RingError::Empty);
    }
    if nodes.len() > NODES_MAX {
        return Err(RingError::TooManyNodes {
            count: nodes.len(),
            max: NODES_MAX,
        });
    }
    let mut seen = std::collections::HashSet::new();
    for (id, weight) in nodes {
        if !seen.insert(*id) {
            return Err(RingError::DuplicateNode(id.to_string()));
        }
        if *weight == 0 {
            return Err(RingError::ZeroWeight(id.to_string()));
        }
    }
    Ok(())
}

/// A fixed-capacity, allocation-free list of distinct node indices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Preference {
    nodes: [u16; REPLICAS_MAX],
    len: u8,
}

impl Preference {
    pub(crate) fn push(&mut self, node_index: u16) {
        assert!(
            usize::from(self.len) < REPLICAS_MAX,
            "preference list overflow"
        );
        self.nodes[usize::from(self.len)] = node_index;
        self.len += 1;
    }

    fn contains(&self, node_index: u16) -> bool {
        self.nodes[..usize::from(self.len)].contains(&node_index)
    }

    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Node indices, primary first.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.nodes[..usize::from(self.len)]
            .iter()
            .map(|&i| usize::from(i))
    }

    pub fn get(&self, at: usize) -> Option<usize> {
        self.nodes[..usize::from(self.len)]
            .get(at)
            .map(|&i| usize::from(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ids(count: usize) -> Vec<String> {
        (0..count).map(|i| format!("node-{i}")).collect()
    }

    fn ring_of(ids: &[String], vnodes: u32) -> Ring {
        Ring::new(ids.iter().map(|id| (id.as_str(), 1)), vnodes).unwrap()
    }

    #[test]
    fn hash_rule_is_the_documented_one() {
        // SHA-1("node-a#0") = c2b1b4... computed independently below from the
        // digest, so a change of rule (separator, endianness) fails here.
        let digest = Sha1::digest(b"node-a#0");
        let expected = u64::from_be_bytes(digest[..8].try_into().unwrap());
        assert_eq!(vnode_position("node-a", 0), expected);
        // Known vector: SHA-1("abc") = a9993e36 4706816a ba3e2571 ...
        assert_eq!(position_of(b"abc"), 0xa999_3e36_4706_816a);
    }

    #[test]
    fn rejects_bad_rings() {
        assert_eq!(Ring::new([], 160).unwrap_err(), RingError::Empty);
        assert_eq!(
            Ring::new([("a", 1), ("a", 1)], 160).unwrap_err(),
            RingError::DuplicateNode("a".into())
        );
        assert_eq!(
            Ring::new([("a", 0)], 160).unwrap_err(),
            RingError::ZeroWeight("a".into())
        );
        assert!(matches!(
            Ring::new([("a", u32::MAX)], 160).unwrap_err(),
            RingError::TooManyPoints { .. }
        ));
    }

    #[test]
    fn order_of_nodes_in_config_does_not_matter() {
        let forward = ring_of(&ids(5), 40);
        let reversed_ids: Vec<String> = ids(5).into_iter().rev().collect();
        let reversed = ring_of(&reversed_ids, 40);
        for key in 0..500u32 {
            let key = key.to_be_bytes();
            let a: Vec<String> = forward
                .preference(&key, 3)
                .iter()
                .map(|i| ids(5)[i].clone())
                .collect();
            let b: Vec<String> = reversed
                .preference(&key, 3)
                .iter()
                .map(|i| reversed_ids[i].clone())
                .collect();
            assert_eq!(a, b);
        }
    }

    #[test]
    fn weight_scales_the_share_of_keys() {
        let ring = Ring::new([("light", 1), ("heavy", 3)], 160).unwrap();
        let heavy = (0..20_000u32)
            .filter(|k| ring.primary(&k.to_be_bytes()) == 1)
            .count();
        // Expect 75%; 160 vnodes/unit keeps the spread within a few percent.
        assert!(
            (13_000..17_000).contains(&heavy),
            "heavy got {heavy} of 20000"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn preference_lists_hold_distinct_nodes(nodes in 1usize..12, replicas in 1usize..8, key in any::<Vec<u8>>()) {
            let ring = ring_of(&ids(nodes), 16);
            let preference = ring.preference(&key, replicas);
            prop_assert_eq!(preference.len(), replicas.min(nodes));
            let mut seen: Vec<usize> = preference.iter().collect();
            seen.sort_unstable();
            seen.dedup();
            prop_assert_eq!(seen.len(), replicas.min(nodes));
            prop_assert_eq!(preference.get(0), Some(ring.primary(&key)));
        }

        #[test]
        fn lookups_are_deterministic(nodes in 1usize..10, key in any::<Vec<u8>>()) {
            let first = ring_of(&ids(nodes), 32);
            let second = ring_of(&ids(nodes), 32);
            prop_assert_eq!(first.preference(&key, 3), second.preference(&key, 3));
        }

        #[test]
        fn adding_a_node_moves_about_one_share_and_only_to_it(nodes in 2usize..9, seed in any::<u32>()) {
            let before_ids = ids(nodes);
            let mut after_ids = before_ids.clone();
            after_ids.push(format!("new-{seed}"));
            let new_index = nodes;
            let before = ring_of(&before_ids, 160);
            let after = ring_of(&after_ids, 160);
            let keys = 4_000u32;
            let mut moved = 0u32;
            for k in 0..keys {
                let key = [seed.to_be_bytes(), k.to_be_bytes()].concat();
                let old = before.primary(&key);
                let new = after.primary(&key);
                if old != new {
                    moved += 1;
                    // A moved key can only have moved to the new node.
                    prop_assert_eq!(new, new_index);
                }
                // Replica lists change only by the new node entering.
                let old_list: Vec<usize> = before.preference(&key, 3).iter().collect();
                let new_list: Vec<usize> =
                    after.preference(&key, 3).iter().filter(|&i| i != new_index).collect();
                prop_assert!(old_list.starts_with(&new_list));
            }
            // Expected share 1/(N+1); allow a generous band around it.
            let expected = f64::from(keys) / (nodes as f64 + 1.0);
            let moved = f64::from(moved);
            prop_assert!(moved > expected * 0.5 && moved < expected * 1.6,
                "moved {} keys, expected about {}", moved, expected);
        }

        #[test]
        fn removing_a_node_moves_only_its_keys(nodes in 3usize..9, removed in 0usize..9, seed in any::<u32>()) {
            let removed = removed % nodes;
            let before_ids = ids(nodes);
            let after_ids: Vec<String> =
                before_ids.iter().enumerate().filter(|(i, _)| *i != removed).map(|(_, id)| id.clone()).collect();
            let before = ring_of(&before_ids, 160);
            let after = ring_of(&after_ids, 160);
            let keys = 4_000u32;
            let mut moved = 0u32;
            for k in 0..keys {
                let key = [seed.to_be_bytes(), k.to_be_bytes()].concat();
                let old_id = &before_ids[before.primary(&key)];
                let new_id = &after_ids[after.primary(&key)];
                if old_id != new_id {
                    moved += 1;
                    prop_assert_eq!(old_id, &before_ids[removed]);
                }
            }
            let expected = f64::from(keys) / nodes as f64;
            let moved = f64::from(moved);
            prop_assert!(moved > expected * 0.5 && moved < expected * 1.6,
                "moved {} keys, expected about {}", moved, expected);
        }
    }
}
