//! The ledger's tests: each side on its own, and a model check of the
//! fan-out and the handoff together.

use super::*;
use proptest::prelude::*;

fn node(name: &str) -> NodeRef {
    NodeRef::new("kv", name)
}

fn append(ledger: &HintLedger, lsn: Lsn, targets: &[NodeRef]) {
    ledger.begin_append().register(lsn, targets);
}

#[test]
fn all_acked_moves_the_cursor_with_registration() {
    let ledger = HintLedger::new(0);
    let (a, b) = (node("a"), node("b"));
    append(&ledger, 1, &[a.clone(), b.clone()]);
    assert_eq!(ledger.cursor(&a), Some(0));
    ledger.acked(&a, 1);
    ledger.acked(&b, 1);
    assert_eq!(ledger.cursor(&a), Some(1));
    assert_eq!(ledger.backlog_from(&a), None);
}

#[test]
fn cursor_waits_for_an_earlier_unregistered_lsn() {
    let ledger = HintLedger::new(0);
    let a = node("a");
    let early = ledger.begin_append(); // LSN 1, registered late
    append(&ledger, 2, std::slice::from_ref(&a));
    ledger.acked(&a, 2);
    assert_eq!(ledger.cursor(&a), Some(0), "LSN 1 might still target a");
    early.register(1, std::slice::from_ref(&a));
    assert_eq!(ledger.cursor(&a), Some(0));
    ledger.acked(&a, 1);
    assert_eq!(ledger.cursor(&a), Some(2));
}

#[test]
fn a_miss_holds_the_cursor_until_the_handoff_passes_it() {
    let ledger = HintLedger::new(0);
    let a = node("a");
    for lsn in 1..=3 {
        append(&ledger, lsn, std::slice::from_ref(&a));
    }
    ledger.acked(&a, 1);
    ledger.missed(&a, 2, 100);
    ledger.acked(&a, 3);
    assert_eq!(ledger.cursor(&a), Some(1));
    assert_eq!(ledger.backlog_from(&a), Some(2));
    assert_eq!(ledger.judge(&a, 2), Judgement::Deliver);
    assert!(ledger.passed(&a, 2, Passed::Delivered { bytes: 100 }));
    assert_eq!(ledger.judge(&a, 3), Judgement::AlreadyDone);
    assert!(ledger.passed(&a, 3, Passed::AlreadyDone));
    assert!(ledger.caught_up(&a, 4));
    assert_eq!(ledger.cursor(&a), Some(3));
    assert_eq!(ledger.counters(&a).delivered_records, 1);
    assert_eq!(ledger.backlog_bytes(&a), 0);
}

#[test]
fn a_miss_during_the_walk_keeps_the_backlog_open() {
    let ledger = HintLedger::new(0);
    let a = node("a");
    append(&ledger, 1, std::slice::from_ref(&a));
    ledger.missed(&a, 1, 10);
    assert!(ledger.passed(&a, 1, Passed::Delivered { bytes: 10 }));
    // The handoff read to the end at LSN 2, but LSN 2 was appended and
    // missed before it could say so.
    append(&ledger, 2, std::slice::from_ref(&a));
    ledger.missed(&a, 2, 10);
    assert!(!ledger.caught_up(&a, 2));
    assert_eq!(ledger.backlog_from(&a), Some(2));
}

#[test]
fn the_handoff_waits_for_inflight_and_unregistered_records() {
    let ledger = HintLedger::new(0);
    let a = node("a");
    append(&ledger, 1, std::slice::from_ref(&a));
    ledger.missed(&a, 1, 1);
    append(&ledger, 2, std::slice::from_ref(&a));
    assert_eq!(ledger.judge(&a, 2), Judgement::InFlight);
    assert_eq!(ledger.judge(&a, 3), Judgement::Unregistered);
}

#[test]
fn recovery_opens_a_backlog_above_the_checkpointed_cursor() {
    let ledger = HintLedger::new(10);
    let a = node("a");
    ledger.recover_node(
        &a,
        4,
        HintCounters {
            delivered_records: 7,
            ..Default::default()
        },
    );
    assert_eq!(ledger.backlog_from(&a), Some(5));
    assert_eq!(ledger.cursor(&a), Some(4));
    assert_eq!(ledger.judge(&a, 5), Judgement::Deliver);
    for lsn in 5..=10 {
        assert!(ledger.passed(&a, lsn, Passed::NotTargeted));
    }
    assert!(ledger.caught_up(&a, 11));
    assert_eq!(ledger.cursor(&a), Some(10));
    assert_eq!(ledger.counters(&a).delivered_records, 7);
}

#[test]
fn an_up_to_date_recovered_node_has_no_backlog() {
    let ledger = HintLedger::new(10);
    let a = node("a");
    ledger.recover_node(&a, 10, HintCounters::default());
    assert_eq!(ledger.backlog_from(&a), None);
}

#[test]
fn gaps_are_closed_once_the_appends_begun_before_the_mark_ended() {
    let ledger = HintLedger::new(0);
    let a = node("a");
    append(&ledger, 1, std::slice::from_ref(&a));
    ledger.acked(&a, 1);
    let pending = ledger.begin_append();
    let mark = ledger.gap_mark(3);
    // A newer append does not hold the gap: its LSN will be above 3.
    let newer = ledger.begin_append();
    assert_eq!(ledger.close_gaps(mark), None);
    drop(pending); // the append failed after consuming LSNs 2 and 3
    assert_eq!(ledger.close_gaps(mark), Some(2));
    assert_eq!(ledger.registered_through(), 3);
    assert_eq!(ledger.backlog_from(&a), Some(2));
    assert_eq!(ledger.cursor(&a), Some(1));
    newer.register(4, std::slice::from_ref(&a));
    assert_eq!(ledger.registered_through(), 4);
}

/// 32 writers that never pause, one append that fails after taking its
/// LSN: the supervisor's mark-then-close (every 10 appends here) still
/// closes the gap, and what waits above it stays bounded. The old rule
/// (close only when no append is in progress) never closed it: 32 tickets
/// are always open.
#[test]
fn an_orphaned_lsn_is_closed_under_continuous_load() {
    const WRITERS: usize = 32;
    const APPENDS: u64 = 1_000;
    const ORPHAN: u64 = 5;
    const APPENDS_PER_TICK: u64 = 10;
    let ledger = HintLedger::new(0);
    let a = node("a");
    let mut open: std::collections::VecDeque<_> =
        (0..WRITERS).map(|_| ledger.begin_append()).collect();
    let mut mark = None;
    let mut ahead_max = 0;
    for lsn in 1..=APPENDS {
        let ticket = open.pop_front().expect("a writer");
        if lsn == ORPHAN {
            drop(ticket);
        } else {
            ticket.register(lsn, std::slice::from_ref(&a));
            ledger.acked(&a, lsn);
        }
        open.push_back(ledger.begin_append());
        ahead_max = ahead_max.max(ledger.registered_ahead());
        if lsn % APPENDS_PER_TICK == 0 {
            if let Some(gap) = mark
                && ledger.close_gaps(gap).is_some()
            {
                mark = None;
            }
            if mark.is_none() {
                mark = Some(ledger.gap_mark(lsn));
            }
        }
    }
    assert_eq!(ledger.registered_through(), APPENDS);
    assert_eq!(ledger.registered_ahead(), 0);
    // A ticket here lives for WRITERS appends; the gap closes at the first
    // tick after the tickets older than its mark have ended.
    let bound = WRITERS + 2 * APPENDS_PER_TICK as usize;
    assert!(
        ahead_max <= bound,
        "{ahead_max} waited above the gap, bound {bound}"
    );
    assert_eq!(ledger.backlog_from(&a), Some(ORPHAN));
}

#[test]
fn drops_are_counted_by_reason() {
    let ledger = HintLedger::new(0);
    let a = node("a");
    append(&ledger, 1, std::slice::from_ref(&a));
    append(&ledger, 2, std::slice::from_ref(&a));
    ledger.missed(&a, 1, 5);
    ledger.missed(&a, 2, 7);
    let age = Passed::Dropped {
        reason: DropReason::Age,
        bytes: 5,
    };
    assert!(ledger.passed(&a, 1, age));
    let budget = Passed::Dropped {
        reason: DropReason::Budget,
        bytes: 7,
    };
    assert!(ledger.passed(&a, 2, budget));
    let counters = ledger.counters(&a);
    assert_eq!(counters.dropped_age_records, 1);
    assert_eq!(counters.dropped_budget_records, 1);
    assert_eq!(counters.dropped_records(), 2);
    assert_eq!(counters.dropped_bytes, 12);
}

#[test]
fn a_record_walked_past_above_a_slower_send_is_not_handled_twice() {
    let ledger = HintLedger::new(0);
    let a = node("a");
    append(&ledger, 1, std::slice::from_ref(&a));
    append(&ledger, 2, std::slice::from_ref(&a));
    // LSN 2's send fails first; LSN 1's is still retrying.
    ledger.missed(&a, 2, 10);
    assert_eq!(ledger.backlog_from(&a), Some(2));
    let dropped = Passed::Dropped {
        reason: DropReason::Age,
        bytes: 10,
    };
    assert!(ledger.passed(&a, 2, dropped));
    assert_eq!(ledger.cursor(&a), Some(0), "LSN 1 is still in flight");
    // Now LSN 1 misses too: the walk goes back to 1, and must skip 2.
    ledger.missed(&a, 1, 10);
    assert_eq!(ledger.backlog_from(&a), Some(1));
    assert!(ledger.passed(&a, 1, dropped));
    assert_eq!(ledger.judge(&a, 2), Judgement::AlreadyDone);
    assert!(ledger.passed(&a, 2, Passed::AlreadyDone));
    assert!(ledger.caught_up(&a, 3));
    assert_eq!(
        ledger.counters(&a).dropped_age_records,
        2,
        "each record counted once"
    );
    assert_eq!(ledger.cursor(&a), Some(2));
}

#[test]
fn passed_refuses_a_stale_head() {
    let ledger = HintLedger::new(0);
    let a = node("a");
    append(&ledger, 1, std::slice::from_ref(&a));
    ledger.missed(&a, 1, 1);
    assert!(!ledger.passed(&a, 2, Passed::NotTargeted));
    assert_eq!(ledger.backlog_from(&a), Some(1));
}

#[derive(Debug, Clone)]
enum Fate {
    Ack,
    Miss,
}

/// A walk for node `index` as far as it can go now: delivers what the
/// ledger says to deliver, stops at an in-flight record or the end.
fn walk(
    ledger: &HintLedger,
    nodes: &[NodeRef],
    index: usize,
    writes: &[(Vec<bool>, Vec<Fate>)],
    deliveries: &mut BTreeMap<(usize, Lsn), u32>,
) {
    let target = &nodes[index];
    let count = writes.len() as u64;
    // Bounded: each pass moves the head forward or returns.
    for _ in 0..=(4 * count + 4) {
        let Some(from) = ledger.backlog_from(target) else {
            return;
        };
        if from > count {
            ledger.caught_up(target, from);
            return;
        }
        let what = if !writes[(from - 1) as usize].0[index] {
            Passed::NotTargeted
        } else {
            match ledger.judge(target, from) {
                Judgement::Deliver => {
                    *deliveries.entry((index, from)).or_default() += 1;
                    Passed::Delivered { bytes: 1 }
                }
                Judgement::AlreadyDone => Passed::AlreadyDone,
                Judgement::InFlight | Judgement::Unregistered => return,
            }
        };
        assert!(ledger.passed(target, from, what));
    }
    panic!("walk did not end");
}

fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        items.swap(i, (seed >> 33) as usize % (i + 1));
    }
}

proptest! {
    /// Model check: whatever the interleaving of registrations (in any
    /// LSN order, as concurrent appends), acks and misses (in any order,
    /// as sends with different retry delays) and handoff walks (at any
    /// moment), in the end every missed record was delivered exactly
    /// once, no acknowledged record was delivered, and every cursor
    /// reached the end.
    #[test]
    fn every_missed_record_is_delivered_exactly_once(
        writes in proptest::collection::vec(
            (proptest::collection::vec(any::<bool>(), 3), proptest::collection::vec(prop_oneof![Just(Fate::Ack), Just(Fate::Miss)], 3)),
            1..40,
        ),
        register_seed in any::<u64>(),
        fate_seed in any::<u64>(),
        walk_every in 1usize..6,
    ) {
        let nodes = [node("a"), node("b"), node("c")];
        let ledger = HintLedger::new(0);
        // As at start-up: every configured node is declared.
        for target in &nodes {
            ledger.recover_node(target, 0, HintCounters::default());
        }
        let count = writes.len() as u64;
        let mut order: Vec<u64> = (1..=count).collect();
        shuffle(&mut order, register_seed);
        for &lsn in &order {
            let targeted = &writes[(lsn - 1) as usize].0;
            let targets: Vec<NodeRef> = nodes.iter().zip(targeted).filter(|(_, t)| **t).map(|(n, _)| n.clone()).collect();
            ledger.begin_append().register_write(lsn, &model_key(lsn), &targets);
        }
        let mut fates: Vec<(u64, usize)> = (1..=count)
            .flat_map(|lsn| (0..3).map(move |index| (lsn, index)))
            .filter(|&(lsn, index)| writes[(lsn - 1) as usize].0[index])
            .collect();
        shuffle(&mut fates, fate_seed);
        let mut missed = BTreeSet::new();
        let mut acked = BTreeSet::new();
        let mut deliveries = BTreeMap::new();
        for (step, &(lsn, index)) in fates.iter().enumerate() {
            match writes[(lsn - 1) as usize].1[index] {
                Fate::Ack => {
                    ledger.acked(&nodes[index], lsn);
                    acked.insert((index, lsn));
                }
                Fate::Miss => {
                    ledger.missed(&nodes[index], lsn, 1);
                    missed.insert((index, lsn));
                }
            }
            if step % walk_every == 0 {
                walk(&ledger, &nodes, step % 3, &writes, &mut deliveries);
            }
            // The lag index never forgets a write a node still lacks.
            for &(lsn, index) in &fates {
                let settled = acked.contains(&(index, lsn)) || deliveries.contains_key(&(index, lsn));
                if !settled {
                    prop_assert!(
                        ledger.lagging("kv", &model_key(lsn), [nodes[index].node.as_str()]) == 1,
                        "node {} lacks write {} but is not lagging", index, lsn
                    );
                }
            }
        }
        for index in 0..3 {
            walk(&ledger, &nodes, index, &writes, &mut deliveries);
            prop_assert_eq!(ledger.backlog_from(&nodes[index]), None);
            prop_assert_eq!(ledger.cursor(&nodes[index]), Some(count));
            prop_assert_eq!(ledger.lag_state(&nodes[index]), (false, 0));
        }
        let delivered: BTreeSet<_> = deliveries.keys().cloned().collect();
        prop_assert_eq!(&delivered, &missed);
        prop_assert!(deliveries.values().all(|&times| times == 1), "delivered twice: {:?}", deliveries);
    }
}

// ---- The lag index ----------------------------------------------------------

/// The model check's key of write `lsn`: a few keys, written many times.
fn model_key(lsn: Lsn) -> String {
    format!("k{}", lsn % 5)
}

fn write(ledger: &HintLedger, lsn: Lsn, key: &str, targets: &[NodeRef]) {
    ledger.begin_append().register_write(lsn, key, targets);
}

/// Whether `node` owes `key` (of service kv), as a read asks.
fn owes(ledger: &HintLedger, node: &NodeRef, key: &str) -> bool {
    ledger.lagging("kv", key, [node.node.as_str()]) == 1
}

#[test]
fn a_key_is_owed_from_registration_until_acked() {
    let ledger = HintLedger::new(0);
    let (a, b) = (node("a"), node("b"));
    assert_eq!(ledger.lagging("kv", "k", ["a", "b"]), 0);
    write(&ledger, 1, "k", &[a.clone(), b.clone()]);
    assert_eq!(
        ledger.lagging("kv", "k", ["a", "b"]),
        0b11,
        "both in flight"
    );
    assert_eq!(ledger.lagging("kv", "other", ["a", "b"]), 0);
    assert_eq!(ledger.lagging("other", "k", ["a", "b"]), 0);
    ledger.acked(&a, 1);
    assert_eq!(ledger.lagging("kv", "k", ["a", "b"]), 0b10);
    ledger.acked(&b, 1);
    assert_eq!(ledger.lagging("kv", "k", ["a", "b"]), 0);
}

#[test]
fn a_missed_key_is_owed_until_its_hint_is_delivered() {
    let ledger = HintLedger::new(0);
    let a = node("a");
    write(&ledger, 1, "k", std::slice::from_ref(&a));
    write(&ledger, 2, "k", std::slice::from_ref(&a));
    ledger.missed(&a, 1, 10);
    ledger.acked(&a, 2);
    assert!(
        owes(&ledger, &a, "k"),
        "the newer ack does not settle the older miss"
    );
    assert!(ledger.passed(&a, 1, Passed::Delivered { bytes: 10 }));
    assert!(!owes(&ledger, &a, "k"));
    assert_eq!(ledger.lag_state(&a), (false, 0));
}

#[test]
fn a_dropped_or_rejected_write_is_no_longer_owed() {
    let ledger = HintLedger::new(0);
    let a = node("a");
    write(&ledger, 1, "dropped", std::slice::from_ref(&a));
    write(&ledger, 2, "rejected", std::slice::from_ref(&a));
    ledger.missed(&a, 1, 10);
    ledger.rejected(&a, 2, 10);
    assert!(!owes(&ledger, &a, "rejected"));
    assert!(owes(&ledger, &a, "dropped"));
    let dropped = Passed::Dropped {
        reason: DropReason::Age,
        bytes: 10,
    };
    assert!(ledger.passed(&a, 1, dropped));
    assert!(!owes(&ledger, &a, "dropped"));
}

#[test]
fn a_walk_past_an_already_settled_record_or_to_the_end_settles_it() {
    let ledger = HintLedger::new(0);
    let a = node("a");
    write(&ledger, 1, "k1", std::slice::from_ref(&a));
    write(&ledger, 2, "k2", std::slice::from_ref(&a));
    ledger.missed(&a, 1, 1);
    ledger.missed(&a, 2, 1);
    assert!(ledger.passed(&a, 1, Passed::AlreadyDone));
    assert!(!owes(&ledger, &a, "k1"));
    assert!(ledger.passed(&a, 2, Passed::Delivered { bytes: 1 }));
    assert!(ledger.caught_up(&a, 3));
    assert_eq!(ledger.lag_state(&a), (false, 0));
    assert_eq!(ledger.lagging("kv", "k2", ["a"]), 0);
}

#[test]
fn past_its_bound_a_node_is_skipped_for_every_key_until_its_cursor_passes() {
    let ledger = HintLedger::new(0);
    let (a, b) = (node("a"), node("b"));
    let bound = keys::LAG_KEYS_MAX as Lsn;
    for lsn in 1..=bound + 1 {
        write(&ledger, lsn, &format!("k{lsn}"), std::slice::from_ref(&a));
        ledger.missed(&a, lsn, 1);
    }
    write(&ledger, bound + 2, "b's key", std::slice::from_ref(&b));
    ledger.acked(&b, bound + 2);
    assert_eq!(ledger.lag_state(&a), (true, keys::LAG_KEYS_MAX));
    assert!(
        owes(&ledger, &a, "never written"),
        "overflowed: owes anything"
    );
    assert!(!owes(&ledger, &b, "never written"));
    for lsn in 1..=bound {
        assert!(ledger.passed(&a, lsn, Passed::Delivered { bytes: 1 }));
    }
    assert!(
        owes(&ledger, &a, "never written"),
        "the unindexed write is still owed"
    );
    assert!(ledger.passed(&a, bound + 1, Passed::Delivered { bytes: 1 }));
    assert!(ledger.passed(&a, bound + 2, Passed::NotTargeted));
    assert!(ledger.caught_up(&a, bound + 3));
    assert_eq!(ledger.lag_state(&a), (false, 0));
    assert!(!owes(&ledger, &a, "never written"));
}

#[test]
fn recovery_owes_every_record_above_the_cursor_until_redelivered() {
    let ledger = HintLedger::new(3);
    let a = node("a");
    ledger.recover_node(&a, 1, HintCounters::default());
    ledger.recover_key(&a, 1, key_hash("kv", "at the cursor"));
    ledger.recover_key(&a, 2, key_hash("kv", "k"));
    ledger.recover_key(&a, 3, key_hash("kv", "k"));
    assert!(!owes(&ledger, &a, "at the cursor"));
    assert!(owes(&ledger, &a, "k"));
    assert!(ledger.passed(&a, 2, Passed::Delivered { bytes: 1 }));
    assert!(owes(&ledger, &a, "k"), "write 3 is still owed");
    assert!(ledger.passed(&a, 3, Passed::Delivered { bytes: 1 }));
    assert!(!owes(&ledger, &a, "k"));
}

#[test]
fn after_the_fan_out_and_the_handoff_nothing_is_owed() {
    // Every entry leaves once its node's cursor passes it: after the
    // fan-out and the handoff are done, nothing is owed.
    let ledger = HintLedger::new(0);
    let (a, b) = (node("a"), node("b"));
    for lsn in 1..=100 {
        write(
            &ledger,
            lsn,
            &format!("k{}", lsn % 7),
            &[a.clone(), b.clone()],
        );
        ledger.acked(&b, lsn);
        if lsn % 3 == 0 {
            ledger.missed(&a, lsn, 1);
        } else {
            ledger.acked(&a, lsn);
        }
    }
    assert_eq!(ledger.lag_state(&b), (false, 0));
    assert_eq!(ledger.lag_state(&a), (false, 33));
    let mut lsn = ledger.backlog_from(&a).unwrap();
    while lsn <= 100 {
        let what = match ledger.judge(&a, lsn) {
            Judgement::Deliver => Passed::Delivered { bytes: 1 },
            _ => Passed::AlreadyDone,
        };
        assert!(ledger.passed(&a, lsn, what));
        lsn += 1;
    }
    assert!(ledger.caught_up(&a, 101));
    assert_eq!(ledger.lag_state(&a), (false, 0));
    assert_eq!(ledger.lagging("kv", "k0", ["a", "b"]), 0);
}
