//! Host invariants enforced on every policy answer, plugin or native.
//!
//! A policy answer is advice; the host decides what it may do. Whatever
//! the source, the guarded policies pass answers through here so the
//! request path can rely on:
//! - a retry delay never exceeds [`RETRY_DELAY_MS_MAX`] nor the time left
//!   until the request's deadline;
//! - a retry `target.node` names one of the candidates (otherwise it
//!   becomes `next`, as the WIT specifies);
//! - a route plan lists only candidate nodes, each at most once, in the
//!   order given, and its hedge delay is clamped like a retry delay.
//!
//! Native policies satisfy these by construction, so applying the same
//! rules to both keeps plugin and native answers comparable. Cleaning is
//! in place: a plan that is already clean costs a scan, no allocation.

use std::collections::HashSet;

use levee_policy::limits::RETRY_DELAY_MS_MAX;
use levee_policy::{Candidate, NodeIndex, RetryContext, RetryDecision, RoutePlan, Target};

/// Words of the small bitset: node indexes below 256, the tables of
/// nearly every service (cleared for 32 bytes).
const SMALL_WORDS: usize = 4;
/// Words of the large one: any index of a valid
/// [`NodeTable`](crate::NodeTable) (512 bytes). A candidate beyond it
/// sends the plan down the general path.
const LARGE_WORDS: usize = levee_policy::limits::NODE_TABLE_MAX / 64;

/// Clamps the delay and resolves a target node that is not a candidate to
/// `next`.
pub(crate) fn retry_decision(decision: RetryDecision, context: &RetryContext<'_>) -> RetryDecision {
    match decision {
        RetryDecision::Retry { delay_ms, target } => {
            let delay_ms = delay_ms
                .min(RETRY_DELAY_MS_MAX)
                .min(context.deadline_remaining_ms);
            let target = match target {
                Target::Node(node) if !context.candidates.contains(&node) => Target::Next,
                other => other,
            };
            RetryDecision::Retry { delay_ms, target }
        }
        give_up @ RetryDecision::GiveUp(_) => give_up,
    }
}

/// Drops nodes that are not candidates and repeated nodes (keeping first
/// occurrences in order), and clamps the hedge delay.
///
/// Linear in the plan plus the candidates: the candidates' nodes go into a
/// bitset and each kept node is taken out of it, so membership and
/// duplicates are one bit test per planned node.
pub(crate) fn route_plan(mut plan: RoutePlan, candidates: &[Candidate]) -> RoutePlan {
    if !keep_candidates_once_bitset::<SMALL_WORDS>(&mut plan.order, candidates)
        && !keep_candidates_once_bitset::<LARGE_WORDS>(&mut plan.order, candidates)
    {
        keep_candidates_once_hashed(&mut plan.order, candidates);
    }
    plan.hedge_delay_ms = plan
        .hedge_delay_ms
        .map(|delay| delay.min(RETRY_DELAY_MS_MAX));
    plan
}

/// The common path, with a bitset of `WORDS` words; `false` (nothing
/// changed) when a candidate's index is too large for it.
fn keep_candidates_once_bitset<const WORDS: usize>(
    order: &mut Vec<NodeIndex>,
    candidates: &[Candidate],
) -> bool {
    const WORD: usize = u64::BITS as usize;
    let mut remaining = [0u64; WORDS];
    for candidate in candidates {
        let node = candidate.node as usize;
        if node >= WORDS * WORD {
            return false;
        }
        remaining[node / WORD] |= 1 << (node % WORD);
    }
    let mut kept = 0;
    for at in 0..order.len() {
        let node = order[at] as usize;
        let Some(word) = remaining.get_mut(node / WORD) else {
            continue;
        };
        let bit = 1 << (node % WORD);
        if *word & bit != 0 {
            *word &= !bit;
            order[kept] = order[at];
            kept += 1;
        }
    }
    order.truncate(kept);
    true
}

/// The general path, for candidates no valid node table has.
fn keep_candidates_once_hashed(order: &mut Vec<NodeIndex>, candidates: &[Candidate]) {
    let mut remaining: HashSet<NodeIndex> = candidates.iter().map(|c| c.node).collect();
    order.retain(|node| remaining.remove(node));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn candidates(nodes: &[NodeIndex]) -> Vec<Candidate> {
        nodes
            .iter()
            .map(|&node| Candidate {
                node,
                healthy: true,
                ..Candidate::default()
            })
            .collect()
    }

    fn context(deadline_ms: u32, nodes: &[NodeIndex]) -> RetryContext<'_> {
        RetryContext {
            budget_remaining: 10,
            deadline_remaining_ms: deadline_ms,
            max_attempts: 3,
            candidates: nodes,
        }
    }

    #[test]
    fn delays_are_clamped_and_unknown_targets_become_next() {
        let ctx = context(500, &[0, 1]);
        let long = RetryDecision::Retry {
            delay_ms: u32::MAX,
            target: Target::Node(9),
        };
        assert_eq!(
            retry_decision(long, &ctx),
            RetryDecision::Retry {
                delay_ms: 500,
                target: Target::Next
            }
        );
        let ctx = context(u32::MAX, &[4]);
        let known = RetryDecision::Retry {
            delay_ms: 70_000,
            target: Target::Node(4),
        };
        assert_eq!(
            retry_decision(known, &ctx),
            RetryDecision::Retry {
                delay_ms: RETRY_DELAY_MS_MAX,
                target: Target::Node(4)
            }
        );
        let give_up = RetryDecision::GiveUp("no".into());
        assert_eq!(retry_decision(give_up.clone(), &ctx), give_up);
    }

    #[test]
    fn route_plans_keep_candidates_once() {
        let nodes = candidates(&[0, 1, 2]);
        let plan = RoutePlan {
            order: vec![2, 7, 0, 2, 0],
            hedge_delay_ms: Some(u32::MAX),
        };
        let clean = route_plan(plan, &nodes);
        assert_eq!(clean.order, vec![2, 0]);
        assert_eq!(clean.hedge_delay_ms, Some(RETRY_DELAY_MS_MAX));
    }

    proptest! {
        #[test]
        fn route_plan_is_a_duplicate_free_subset_of_candidates(
            order in proptest::collection::vec(0u32..5, 0..200),
        ) {
            let nodes = candidates(&[0, 1, 2, 3]);
            let clean = route_plan(RoutePlan { order: order.clone(), hedge_delay_ms: None }, &nodes);
            let mut unique = clean.order.clone();
            unique.sort();
            unique.dedup();
            prop_assert_eq!(unique.len(), clean.order.len());
            prop_assert!(clean.order.iter().all(|n| nodes.iter().any(|c| c.node == *n)));
            // Order of first occurrences is preserved.
            let mut expected: Vec<NodeIndex> = Vec::new();
            for node in order {
                if node != 4 && !expected.contains(&node) { expected.push(node); }
            }
            prop_assert_eq!(clean.order, expected);
        }

        /// The bitset and the general path agree, whatever the indexes.
        #[test]
        fn both_paths_clean_alike(
            order in proptest::collection::vec(0u32..80, 0..100),
            nodes in proptest::collection::vec(0u32..80, 0..20),
            huge in any::<bool>(),
        ) {
            let mut nodes = candidates(&nodes);
            if huge {
                nodes.push(Candidate { node: u32::MAX, ..Candidate::default() });
            }
            let mut small = order.clone();
            let used_small = keep_candidates_once_bitset::<1>(&mut small, &nodes);
            prop_assert_eq!(used_small, nodes.iter().all(|c| c.node < 64));
            let mut bitset = order.clone();
            let used_bitset = keep_candidates_once_bitset::<LARGE_WORDS>(&mut bitset, &nodes);
            prop_assert_eq!(used_bitset, !huge);
            let mut hashed = order.clone();
            keep_candidates_once_hashed(&mut hashed, &nodes);
            if used_bitset {
                prop_assert_eq!(&bitset, &hashed);
            }
            if used_small {
                prop_assert_eq!(&small, &hashed);
            }
            let clean = route_plan(RoutePlan { order, hedge_delay_ms: None }, &nodes);
            let mut expected: Vec<NodeIndex> = Vec::new();
            for node in clean.order.iter().copied() {
                prop_assert!(nodes.iter().any(|c| c.node == node));
                prop_assert!(!expected.contains(&node));
                expected.push(node);
            }
        }
    }
}
