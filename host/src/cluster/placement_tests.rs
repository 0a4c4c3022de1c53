//! Rendezvous placement: the documented rule, determinism, distinct
//! replicas, balance and movement targets; the fingerprint.

use proptest::prelude::*;

use super::*;

fn ids(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("node-{i}")).collect()
}

fn nodes_of(ids: &[String], weight: impl Fn(usize) -> u32) -> Vec<(&str, u32)> {
    ids.iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), weight(i)))
        .collect()
}

fn rendezvous(nodes: &[(&str, u32)]) -> Placement {
    Placement::new(PlacementKind::Rendezvous, nodes.iter().copied(), 160).unwrap()
}

/// Key positions as the data plane makes them (SHA-1 of the key).
fn positions(count: u32) -> Vec<u64> {
    (0..count)
        .map(|k| position_of(format!("user:{k}").as_bytes()))
        .collect()
}

/// The rule exactly as the module doc words it, the slow way: every node's
/// best seed score, sorted by (score, id) with the higher score first and
/// the smaller id first on a tie.
fn by_the_doc(nodes: &[(&str, u32)], position: u64, replicas: usize) -> Vec<usize> {
    let mut scored: Vec<(u64, &str, usize)> = nodes
        .iter()
        .enumerate()
        .map(|(index, (id, weight))| {
            let best = (0..*weight)
                .map(|c| {
                    let digest = Sha1::digest(format!("{id}#{c}").as_bytes());
                    let seed = u64::from_be_bytes(digest[..8].try_into().unwrap());
                    score(position, seed)
                })
                .max()
                .unwrap();
            (best, *id, index)
        })
        .collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.as_bytes().cmp(b.1.as_bytes())));
    scored
        .into_iter()
        .take(replicas)
        .map(|(_, _, index)| index)
        .collect()
}

#[test]
fn the_score_is_splitmix64() {
    // SplitMix64 seeded with 0 first outputs 0xe220a8397b1dcdaf: the
    // score of a position equal to the seed (their XOR is 0).
    assert_eq!(score(7, 7), 0xe220_a839_7b1d_cdaf);
    assert_eq!(score(0, 0), 0xe220_a839_7b1d_cdaf);
}

#[test]
fn lookups_follow_the_documented_rule() {
    let names = ids(7);
    let nodes = nodes_of(&names, |i| 1 + (i as u32 % 3));
    let placement = rendezvous(&nodes);
    for position in positions(2_000) {
        let fast: Vec<usize> = placement.preference_at(position, 4).iter().collect();
        assert_eq!(fast, by_the_doc(&nodes, position, 4));
    }
    assert_eq!(
        placement.primary(b"alice"),
        by_the_doc(&nodes, position_of(b"alice"), 1)[0]
    );
}

#[test]
fn rendezvous_refuses_what_the_ring_refuses_and_too_much_weight() {
    let refused = |nodes: &[(&str, u32)]| {
        Placement::new(PlacementKind::Rendezvous, nodes.iter().copied(), 160).unwrap_err()
    };
    assert_eq!(refused(&[]), RingError::Empty);
    assert_eq!(
        refused(&[("a", 1), ("a", 2)]),
        RingError::DuplicateNode("a".into())
    );
    assert_eq!(refused(&[("a", 0)]), RingError::ZeroWeight("a".into()));
    assert_eq!(
        refused(&[("a", 1000), ("b", 25)]),
        RingError::TooMuchWeight {
            weight: 1025,
            max: 1024
        }
    );
}

#[test]
fn the_epoch_is_the_node_set_not_its_order() {
    let epoch = |kind, nodes: &[(&str, u32)], vnodes| {
        Placement::new(kind, nodes.iter().copied(), vnodes)
            .unwrap()
            .epoch()
    };
    let ring = PlacementKind::Ring;
    let base = epoch(ring, &[("a", 1), ("b", 2), ("c", 1)], 160);
    assert_eq!(base, epoch(ring, &[("c", 1), ("a", 1), ("b", 2)], 160));
    assert_ne!(base, epoch(ring, &[("a", 1), ("b", 1), ("c", 1)], 160));
    assert_ne!(base, epoch(ring, &[("a", 1), ("b", 2), ("d", 1)], 160));
    assert_ne!(base, epoch(ring, &[("a", 1), ("b", 2)], 160));
    assert_ne!(base, epoch(ring, &[("a", 1), ("b", 2), ("c", 1)], 161));
    let rendezvous = PlacementKind::Rendezvous;
    let other = epoch(rendezvous, &[("a", 1), ("b", 2), ("c", 1)], 160);
    assert_ne!(base, other);
    // vnodes_per_weight is the ring's alone.
    assert_eq!(other, epoch(rendezvous, &[("b", 2), ("c", 1), ("a", 1)], 7));
    // Ids are length-prefixed: moving bytes between ids changes it.
    assert_ne!(
        epoch(ring, &[("ab", 1), ("c", 1)], 160),
        epoch(ring, &[("a", 1), ("bc", 1)], 160)
    );
    assert_eq!(
        fingerprint(ring, &[("a", 1), ("b", 2), ("c", 1)], 160),
        base
    );
}

/// (max / mean, standard deviation / mean) of the primaries per node,
/// each node's mean being its weight's share.
fn spread(placement: &Placement, nodes: &[(&str, u32)], keys: &[u64]) -> (f64, f64) {
    let mut counts = vec![0f64; nodes.len()];
    for &position in keys {
        counts[placement.preference_at(position, 1).get(0).unwrap()] += 1.0;
    }
    let weight: f64 = nodes.iter().map(|(_, w)| f64::from(*w)).sum();
    let relative: Vec<f64> = counts
        .iter()
        .zip(nodes)
        .map(|(count, (_, w))| count / (keys.len() as f64 * f64::from(*w) / weight))
        .collect();
    let max = relative.iter().copied().fold(0.0, f64::max);
    let variance = relative.iter().map(|r| (r - 1.0).powi(2)).sum::<f64>() / nodes.len() as f64;
    (max, variance.sqrt())
}

#[test]
fn balance_meets_the_targets_over_node_counts_and_weights() {
    // 300,000 keys: the keys' own sampling noise alone is sqrt(N / 300,000)
    // per node (1.5% at 64 nodes), inside the 3% target.
    let keys = positions(300_000);
    for count in [3usize, 8, 17, 64] {
        let names = ids(count);
        for weighted in [false, true] {
            let nodes = nodes_of(&names, |i| if weighted { 1 + (i as u32 % 3) } else { 1 });
            let (max, stdev) = spread(&rendezvous(&nodes), &nodes, &keys);
            assert!(
                max <= 1.05 && stdev <= 0.03,
                "{count} nodes (weighted {weighted}): max/mean {max:.3}, stdev {stdev:.3}"
            );
        }
    }
}

#[test]
fn secondary_replicas_are_balanced_too() {
    let keys = positions(200_000);
    let names = ids(10);
    let nodes = nodes_of(&names, |_| 1);
    let placement = rendezvous(&nodes);
    let mut any = [0f64; 10];
    for &position in &keys {
        for node in placement.preference_at(position, 3).iter() {
            any[node] += 1.0;
        }
    }
    let mean = keys.len() as f64 * 3.0 / 10.0;
    for (node, count) in any.iter().enumerate() {
        assert!(
            (count / mean - 1.0).abs() <= 0.03,
            "node {node} holds {count} of the key copies, mean {mean}"
        );
    }
}

#[test]
fn movement_on_add_and_remove_is_within_a_tenth_of_optimal() {
    let keys = positions(200_000);
    for count in [3usize, 10, 32] {
        let names = ids(count);
        let before_nodes = nodes_of(&names, |_| 1);
        let before = rendezvous(&before_nodes);
        let mut added_nodes = before_nodes.clone();
        added_nodes.push(("node-new", 1));
        let added = rendezvous(&added_nodes);
        let removed = rendezvous(&before_nodes[1..]);
        let (mut moved_add, mut moved_remove) = (0u32, 0u32);
        for &position in &keys {
            let old: Vec<usize> = before.preference_at(position, 3).iter().collect();
            let new: Vec<usize> = added.preference_at(position, 3).iter().collect();
            if old[0] != new[0] {
                moved_add += 1;
                assert_eq!(new[0], count, "a primary moves only to the new node");
            }
            // The list changes only by the new node entering it.
            let kept: Vec<usize> = new.iter().copied().filter(|&n| n != count).collect();
            assert!(old.starts_with(&kept));
            let fewer: Vec<usize> = removed
                .preference_at(position, 3)
                .iter()
                .map(|n| n + 1)
                .collect();
            if old[0] != fewer[0] {
                moved_remove += 1;
                assert_eq!(old[0], 0, "only the removed node's keys move");
            }
            let survivors: Vec<usize> = old.iter().copied().filter(|&n| n != 0).collect();
            assert!(fewer.starts_with(&survivors));
        }
        let keys = keys.len() as f64;
        let add = f64::from(moved_add) / (keys / (count as f64 + 1.0));
        let remove = f64::from(moved_remove) / (keys / count as f64);
        assert!(
            add <= 1.1 && remove <= 1.1,
            "{count} nodes: moved {add:.3}× optimal on add, {remove:.3}× on remove"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Same node set in any order: the same lists, by node id.
    #[test]
    fn lists_are_a_function_of_the_node_set(
        weights in proptest::collection::vec(1u32..5, 1..20),
        rotate in any::<usize>(),
        swap in any::<(usize, usize)>(),
        key in any::<Vec<u8>>(),
        replicas in 1usize..6,
    ) {
        let names = ids(weights.len());
        let nodes = nodes_of(&names, |i| weights[i]);
        let mut shuffled = nodes.clone();
        let len = shuffled.len();
        shuffled.rotate_left(rotate % len);
        shuffled.swap(swap.0 % len, swap.1 % len);
        for kind in [PlacementKind::Ring, PlacementKind::Rendezvous] {
            let a = Placement::new(kind, nodes.iter().copied(), 16).unwrap();
            let b = Placement::new(kind, shuffled.iter().copied(), 16).unwrap();
            prop_assert_eq!(a.epoch(), b.epoch());
            let by_id = |placement: &Placement, set: &[(&str, u32)]| -> Vec<String> {
                placement.preference(&key, replicas).iter().map(|i| set[i].0.to_owned()).collect()
            };
            prop_assert_eq!(by_id(&a, &nodes), by_id(&b, &shuffled));
        }
    }

    #[test]
    fn lists_hold_distinct_nodes(
        weights in proptest::collection::vec(1u32..5, 1..24),
        replicas in 1usize..20,
        key in any::<Vec<u8>>(),
    ) {
        let names = ids(weights.len());
        let nodes = nodes_of(&names, |i| weights[i]);
        let placement = rendezvous(&nodes);
        let list: Vec<usize> = placement.preference(&key, replicas).iter().collect();
        let wanted = replicas.min(nodes.len()).min(REPLICAS_MAX);
        prop_assert_eq!(list.len(), wanted);
        let mut distinct = list.clone();
        distinct.sort_unstable();
        distinct.dedup();
        prop_assert_eq!(distinct.len(), wanted);
        prop_assert_eq!(list.first().copied(), Some(placement.primary(&key)));
    }
}
