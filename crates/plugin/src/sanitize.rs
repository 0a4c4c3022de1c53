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

/// Order lengths up to which duplicate detection uses a linear scan.
const LINEAR_DEDUP_MAX: usize = 64;

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
pub(crate) fn route_plan(mut plan: RoutePlan, candidates: &[Candidate]) -> RoutePlan {
    let is_candidate = |node: NodeIndex| candidates.iter().any(|c| c.node == node);
    let order = &mut plan.order;
    let mut kept = 0;
    if order.len() <= LINEAR_DEDUP_MAX {
        for at in 0..order.len() {
            let node = order[at];
            if is_candidate(node) && !order[..kept].contains(&node) {
                order[kept] = node;
                kept += 1;
            }
        }
    } else {
        let mut seen: HashSet<NodeIndex> = HashSet::with_capacity(candidates.len());
        for at in 0..order.len() {
            let node = order[at];
            if is_candidate(node) && seen.insert(node) {
                order[kept] = node;
                kept += 1;
            }
        }
    }
    order.truncate(kept);
    plan.hedge_delay_ms = plan
        .hedge_delay_ms
        .map(|delay| delay.min(RETRY_DELAY_MS_MAX));
    plan
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
    }
}
