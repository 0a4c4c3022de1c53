//! Host invariants enforced on every policy answer, plugin or native.
//!
//! A policy answer is advice; the host decides what it may do. Whatever
//! the source, the guarded policies pass answers through here so the
//! request path can rely on:
//! - a retry delay never exceeds [`RETRY_DELAY_MS_MAX`] nor the time left
//!   until the request's deadline;
//! - a retry `target.node` names one of the candidates (otherwise it
//!   becomes `next`, as the WIT specifies);
//! - a route plan lists only candidate ids, each at most once, and its
//!   hedge delay is clamped like a retry delay;
//! - the request shown to a policy carries at most [`HEADERS_MAX`] headers
//!   of at most [`HEADER_VALUE_BYTES_MAX`] bytes each.
//!
//! Native policies satisfy these by construction, so applying the same
//! rules to both keeps plugin and native answers comparable.

use std::borrow::Cow;
use std::collections::HashSet;

use levee_policy::limits::{HEADER_VALUE_BYTES_MAX, HEADERS_MAX, RETRY_DELAY_MS_MAX};
use levee_policy::{Node, RequestInfo, RetryContext, RetryDecision, RoutePlan, Target};

use crate::host::truncate_to_char_boundary;

/// Order lengths up to which duplicate detection uses a linear scan.
const LINEAR_DEDUP_MAX: usize = 16;

/// The request with its headers bounded; borrowed when already in bounds.
pub(crate) fn bounded_request(request: &RequestInfo) -> Cow<'_, RequestInfo> {
    let in_bounds = request.headers.len() <= HEADERS_MAX
        && request.headers.iter().all(|(name, value)| {
            name.len() <= HEADER_VALUE_BYTES_MAX && value.len() <= HEADER_VALUE_BYTES_MAX
        });
    if in_bounds {
        return Cow::Borrowed(request);
    }
    let headers = request
        .headers
        .iter()
        .take(HEADERS_MAX)
        .map(|(name, value)| {
            (
                truncate_to_char_boundary(name, HEADER_VALUE_BYTES_MAX).to_string(),
                truncate_to_char_boundary(value, HEADER_VALUE_BYTES_MAX).to_string(),
            )
        })
        .collect();
    Cow::Owned(RequestInfo {
        headers,
        ..request.clone()
    })
}

/// Clamps the delay and resolves an unknown target node to `next`.
pub(crate) fn retry_decision(decision: RetryDecision, context: &RetryContext) -> RetryDecision {
    match decision {
        RetryDecision::Retry { delay_ms, target } => {
            let delay_ms = delay_ms
                .min(RETRY_DELAY_MS_MAX)
                .min(context.deadline_remaining_ms);
            let target = match target {
                Target::Node(id) if !context.candidates.contains(&id) => Target::Next,
                other => other,
            };
            RetryDecision::Retry { delay_ms, target }
        }
        give_up @ RetryDecision::GiveUp(_) => give_up,
    }
}

/// Drops unknown and repeated ids and clamps the hedge delay.
pub(crate) fn route_plan(plan: RoutePlan, candidates: &[Node]) -> RoutePlan {
    let is_candidate = |id: &str| candidates.iter().any(|node| node.id == id);
    let mut order: Vec<String> = Vec::with_capacity(plan.order.len().min(candidates.len()));
    if plan.order.len() <= LINEAR_DEDUP_MAX {
        for id in plan.order {
            if is_candidate(&id) && !order.contains(&id) {
                order.push(id);
            }
        }
    } else {
        let mut seen: HashSet<String> = HashSet::with_capacity(candidates.len());
        for id in plan.order {
            if is_candidate(&id) && seen.insert(id.clone()) {
                order.push(id);
            }
        }
    }
    let hedge_delay_ms = plan
        .hedge_delay_ms
        .map(|delay| delay.min(RETRY_DELAY_MS_MAX));
    RoutePlan {
        order,
        hedge_delay_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn candidates(ids: &[&str]) -> Vec<Node> {
        ids.iter()
            .map(|id| Node {
                id: id.to_string(),
                healthy: true,
                weight: 1,
                ..Node::default()
            })
            .collect()
    }

    fn context(deadline_ms: u32, ids: &[&str]) -> RetryContext {
        RetryContext {
            budget_remaining: 10,
            deadline_remaining_ms: deadline_ms,
            max_attempts: 3,
            candidates: ids.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn delays_are_clamped_and_unknown_targets_become_next() {
        let ctx = context(500, &["a", "b"]);
        let long = RetryDecision::Retry {
            delay_ms: u32::MAX,
            target: Target::Node("zz".into()),
        };
        assert_eq!(
            retry_decision(long, &ctx),
            RetryDecision::Retry {
                delay_ms: 500,
                target: Target::Next
            }
        );
        let ctx = context(u32::MAX, &["a"]);
        let known = RetryDecision::Retry {
            delay_ms: 70_000,
            target: Target::Node("a".into()),
        };
        assert_eq!(
            retry_decision(known, &ctx),
            RetryDecision::Retry {
                delay_ms: RETRY_DELAY_MS_MAX,
                target: Target::Node("a".into())
            }
        );
        let give_up = RetryDecision::GiveUp("no".into());
        assert_eq!(retry_decision(give_up.clone(), &ctx), give_up);
    }

    #[test]
    fn route_plans_keep_known_ids_once() {
        let nodes = candidates(&["a", "b", "c"]);
        let plan = RoutePlan {
            order: vec!["c".into(), "x".into(), "a".into(), "c".into(), "a".into()],
            hedge_delay_ms: Some(u32::MAX),
        };
        let clean = route_plan(plan, &nodes);
        assert_eq!(clean.order, vec!["c".to_string(), "a".to_string()]);
        assert_eq!(clean.hedge_delay_ms, Some(RETRY_DELAY_MS_MAX));
    }

    #[test]
    fn oversized_headers_are_bounded() {
        let mut request = RequestInfo {
            method: "GET".into(),
            ..RequestInfo::default()
        };
        assert!(matches!(bounded_request(&request), Cow::Borrowed(_)));
        request.headers = (0..40)
            .map(|i| (format!("h{i}"), "v".repeat(1_000)))
            .collect();
        let bounded = bounded_request(&request);
        assert_eq!(bounded.headers.len(), HEADERS_MAX);
        assert!(
            bounded
                .headers
                .iter()
                .all(|(_, value)| value.len() == HEADER_VALUE_BYTES_MAX)
        );
    }

    proptest! {
        #[test]
        fn route_plan_is_a_duplicate_free_subset_of_candidates(
            order in proptest::collection::vec("[a-e]{1}", 0..64),
        ) {
            let nodes = candidates(&["a", "b", "c", "d"]);
            let clean = route_plan(RoutePlan { order: order.clone(), hedge_delay_ms: None }, &nodes);
            let mut unique = clean.order.clone();
            unique.sort();
            unique.dedup();
            prop_assert_eq!(unique.len(), clean.order.len());
            prop_assert!(clean.order.iter().all(|id| nodes.iter().any(|n| &n.id == id)));
            // Order of first occurrences is preserved.
            let mut expected: Vec<String> = Vec::new();
            for id in order {
                if id != "e" && !expected.contains(&id) { expected.push(id); }
            }
            prop_assert_eq!(clean.order, expected);
        }
    }
}
