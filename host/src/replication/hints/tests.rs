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
            ledger.begin_append().register(lsn, &targets);
        }
        let mut fates: Vec<(u64, usize)> = (1..=count)
            .flat_map(|lsn| (0..3).map(move |index| (lsn, index)))
            .filter(|&(lsn, index)| writes[(lsn - 1) as usize].0[index])
            .collect();
        shuffle(&mut fates, fate_seed);
        let mut missed = BTreeSet::new();
        let mut deliveries = BTreeMap::new();
        for (step, &(lsn, index)) in fates.iter().enumerate() {
            match writes[(lsn - 1) as usize].1[index] {
                Fate::Ack => ledger.acked(&nodes[index], lsn),
                Fate::Miss => {
                    ledger.missed(&nodes[index], lsn, 1);
                    missed.insert((index, lsn));
                }
            }
            if step % walk_every == 0 {
                walk(&ledger, &nodes, step % 3, &writes, &mut deliveries);
            }
        }
        for index in 0..3 {
            walk(&ledger, &nodes, index, &writes, &mut deliveries);
            prop_assert_eq!(ledger.backlog_from(&nodes[index]), None);
            prop_assert_eq!(ledger.cursor(&nodes[index]), Some(count));
        }
        let delivered: BTreeSet<_> = deliveries.keys().cloned().collect();
        prop_assert_eq!(&delivered, &missed);
        prop_assert!(deliveries.values().all(|&times| times == 1), "delivered twice: {:?}", deliveries);
    }
}
