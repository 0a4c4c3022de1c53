//! Placement: which nodes hold a key, by the service's `placement` rule,
//! the SHA-1 ring ([`crate::cluster::ring`]) or weighted rendezvous hashing
//! (here), and the fingerprint of the node set both are a pure function of
//! ([`Placement::epoch`]).
//!
//! # Rendezvous (`placement: "rendezvous"`)
//!
//! Highest-random-weight hashing (Thaler & Ravishankar 1998), weighted by
//! giving a node one seed per unit of weight. Spelled out so any instance,
//! or a tool in any language, computes the same lists from the node set:
//!
//! - **Key position.** The ring's: the first 8 bytes of SHA-1(key) read as
//!   a big-endian u64 ([`position_of`]).
//! - **Seeds.** A node with id `ID` and weight `w` has `w` seeds; seed `c`
//!   (0-based) is the ring's virtual-node position of `ID#c`
//!   ([`vnode_position`]): the first 8 bytes of SHA-1(`"ID#c"`),
//!   big-endian.
//! - **Score.** A seed `s` scores position `p` as SplitMix64's output
//!   function of `p XOR s` (all arithmetic wrapping on u64):
//!   `z = (p ^ s) + 0x9e3779b97f4a7c15; z = (z ^ (z >> 30)) ×
//!   0xbf58476d1ce4e5b9; z = (z ^ (z >> 27)) × 0x94d049bb133111eb;
//!   score = z ^ (z >> 31)`. A node's score is the highest of its seeds'.
//! - **Preference list.** Nodes by score, highest first; equal scores (odds
//!   about 2^-64 per pair) by id bytes, ascending. The first `N` are the
//!   key's replicas, the first of them its primary.
//!
//! Why it balances: each key picks its replicas independently of every
//! other key, so a node's share of keys is its weight's share up to the
//! keys' own sampling noise (no arcs of uneven length as on a ring); each
//! of the `W` seeds is equally likely to score highest, so weight `w` gets
//! `w / W` of the primaries exactly. Why keys move optimally: adding a node
//! changes a key's list only where the new node scores among its top `N`,
//! and a key's primary moves only to the new node (`w / (W + w)` of keys);
//! removing one moves only the keys it held. The price is the lookup: it
//! scores every seed, `W` mixes (about 1.5 ns each), where the ring does a
//! binary search, so the total weight of a rendezvous service is bounded
//! ([`crate::config::RENDEZVOUS_WEIGHT_TOTAL_MAX`]).

use sha1::{Digest, Sha1};

use crate::cluster::ring::{NODES_MAX, Preference, REPLICAS_MAX, Ring, RingError};
pub use crate::cluster::ring::{position_of, vnode_position};
pub use crate::config::Placement as PlacementKind;
use crate::config::RENDEZVOUS_WEIGHT_TOTAL_MAX;

/// A built placement of one node set: the rule, its structure, and the
/// node set's fingerprint. Node indices refer to the order of the `nodes`
/// given to [`Placement::new`]; the lists never depend on that order.
#[derive(Debug, Clone)]
pub struct Placement {
    kind: PlacementKind,
    epoch: u64,
    rule: Rule,
}

#[derive(Debug, Clone)]
enum Rule {
    Ring(Ring),
    Rendezvous(Rendezvous),
}

impl Placement {
    /// Builds the `kind` placement over `nodes` given as `(id, weight)`;
    /// `vnodes_per_weight` is the ring's (ignored by rendezvous).
    pub fn new<'a>(
        kind: PlacementKind,
        nodes: impl IntoIterator<Item = (&'a str, u32)>,
        vnodes_per_weight: u32,
    ) -> Result<Placement, RingError> {
        let nodes: Vec<(&str, u32)> = nodes.into_iter().collect();
        let rule = match kind {
            PlacementKind::Ring => Rule::Ring(Ring::new(nodes.iter().copied(), vnodes_per_weight)?),
            PlacementKind::Rendezvous => Rule::Rendezvous(Rendezvous::new(&nodes)?),
        };
        Ok(Placement {
            kind,
            epoch: fingerprint(kind, &nodes, vnodes_per_weight),
            rule,
        })
    }

    /// The rule in force.
    pub fn kind(&self) -> PlacementKind {
        self.kind
    }

    /// The fingerprint of what the lists are a function of (the rule, the
    /// ring's `vnodes_per_weight`, every node's id and weight; not their
    /// order): two instances with equal epochs compute equal lists. See
    /// [`fingerprint`].
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// How many nodes the placement was built over.
    pub fn node_count(&self) -> usize {
        match &self.rule {
            Rule::Ring(ring) => ring.node_count(),
            Rule::Rendezvous(rendezvous) => rendezvous.node_count(),
        }
    }

    /// The key's primary node (the first entry of its preference list).
    pub fn primary(&self, key: &[u8]) -> usize {
        match &self.rule {
            Rule::Ring(ring) => ring.primary(key),
            Rule::Rendezvous(rendezvous) => {
                let preference = rendezvous.preference_at(position_of(key), 1);
                preference.get(0).expect("a placement has a node")
            }
        }
    }

    /// The key's preference list: `replicas` distinct nodes (fewer if
    /// there are fewer nodes), primary first.
    pub fn preference(&self, key: &[u8], replicas: usize) -> Preference {
        self.preference_at(position_of(key), replicas)
    }

    /// [`Placement::preference`] for an already hashed key position.
    pub fn preference_at(&self, position: u64, replicas: usize) -> Preference {
        match &self.rule {
            Rule::Ring(ring) => ring.preference_at(position, replicas),
            Rule::Rendezvous(rendezvous) => rendezvous.preference_at(position, replicas),
        }
    }
}

/// The fingerprint of a placement: the first 8 bytes, big-endian, of
/// SHA-1 over `"levee-placement/1"`, the rule's name (`ring` or
/// `rendezvous`), for the ring `vnodes_per_weight` as a big-endian u32,
/// then for each node in ascending order of id bytes: the id's length as a
/// big-endian u32, the id's bytes, the weight as a big-endian u32. Cheap to
/// carry (a u64) and to compare; the order nodes are listed in does not
/// change it, anything the lists depend on does.
pub fn fingerprint(kind: PlacementKind, nodes: &[(&str, u32)], vnodes_per_weight: u32) -> u64 {
    let mut sorted: Vec<(&str, u32)> = nodes.to_vec();
    sorted.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()).then(a.1.cmp(&b.1)));
    let mut hasher = Sha1::new();
    hasher.update(b"levee-placement/1");
    hasher.update(kind.name().as_bytes());
    if kind == PlacementKind::Ring {
        hasher.update(vnodes_per_weight.to_be_bytes());
    }
    for (id, weight) in sorted {
        let length = u32::try_from(id.len()).unwrap_or(u32::MAX);
        hasher.update(length.to_be_bytes());
        hasher.update(id.as_bytes());
        hasher.update(weight.to_be_bytes());
    }
    let digest = hasher.finalize();
    u64::from_be_bytes(digest[..8].try_into().expect("SHA-1 has 20 bytes"))
}

/// SplitMix64's output function of `position ^ seed`: the score of one
/// seed for one key position.
#[inline]
pub fn score(position: u64, seed: u64) -> u64 {
    let mut z = (position ^ seed).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Weighted rendezvous hashing over a node set (see the module doc).
#[derive(Debug, Clone)]
pub struct Rendezvous {
    /// Every node's seeds, node after node.
    seeds: Vec<u64>,
    /// Per node (in input order): the end of its seeds in `seeds`, and its
    /// tie-break, `NODES_MAX` minus its rank in ascending id order (so the
    /// larger wins, like the score).
    nodes: Vec<(u32, u16)>,
}

impl Rendezvous {
    /// Builds the seeds of `nodes` given as `(id, weight)`.
    pub fn new(nodes: &[(&str, u32)]) -> Result<Rendezvous, RingError> {
        crate::cluster::ring::validate_nodes(nodes)?;
        let weight: u64 = nodes.iter().map(|(_, weight)| u64::from(*weight)).sum();
        if weight > RENDEZVOUS_WEIGHT_TOTAL_MAX {
            return Err(RingError::TooMuchWeight {
                weight,
                max: RENDEZVOUS_WEIGHT_TOTAL_MAX,
            });
        }
        let mut by_id: Vec<usize> = (0..nodes.len()).collect();
        by_id.sort_unstable_by(|&a, &b| nodes[a].0.as_bytes().cmp(nodes[b].0.as_bytes()));
        let mut tie = vec![0u16; nodes.len()];
        for (rank, &index) in by_id.iter().enumerate() {
            tie[index] = u16::try_from(NODES_MAX - rank).expect("validated: nodes <= NODES_MAX");
        }
        let mut seeds = Vec::with_capacity(usize::try_from(weight).unwrap_or(0));
        let mut ends = Vec::with_capacity(nodes.len());
        for (index, (id, weight)) in nodes.iter().enumerate() {
            seeds.extend((0..*weight).map(|c| vnode_position(id, c)));
            let end = u32::try_from(seeds.len()).expect("bounded by the weight limit");
            ends.push((end, tie[index]));
        }
        Ok(Rendezvous { seeds, nodes: ends })
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The `replicas` best-scoring nodes for `position`, best first.
    /// Allocation-free: one pass over the seeds keeping the best few.
    pub fn preference_at(&self, position: u64, replicas: usize) -> Preference {
        let wanted = replicas.min(self.nodes.len()).min(REPLICAS_MAX);
        if wanted == 0 {
            return Preference::default();
        }
        // (score, tie-break, node index), best first; `filled` are valid.
        let mut best = [(0u64, 0u16, 0u16); REPLICAS_MAX];
        let mut filled = 0;
        let mut start = 0usize;
        for (index, &(end, tie)) in self.nodes.iter().enumerate() {
            let end = end as usize;
            let mut node_score = 0u64;
            for &seed in &self.seeds[start..end] {
                node_score = node_score.max(score(position, seed));
            }
            start = end;
            let candidate = (node_score, tie);
            if filled == wanted && candidate <= (best[wanted - 1].0, best[wanted - 1].1) {
                continue;
            }
            let mut at = if filled < wanted {
                filled += 1;
                filled - 1
            } else {
                wanted - 1
            };
            while at > 0 && (best[at - 1].0, best[at - 1].1) < candidate {
                best[at] = best[at - 1];
                at -= 1;
            }
            let index = u16::try_from(index).expect("validated: nodes <= NODES_MAX");
            best[at] = (node_score, tie, index);
        }
        let mut preference = Preference::default();
        for &(_, _, index) in &best[..filled] {
            preference.push(index);
        }
        preference
    }
}

#[cfg(test)]
#[path = "placement_tests.rs"]
mod tests;
