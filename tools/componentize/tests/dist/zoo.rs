//! Every zoo plugin loads (its world is real) and then misbehaves exactly
//! as documented, under fences like the host's.

use crate::convert;
use crate::harness::retry::RetryPolicy;
use crate::harness::retry::exports::levee::policy::retry::Decision;
use crate::harness::wit;
use crate::harness::{
    self, RequestData, instantiate_checkpoint, instantiate_retry, instantiate_routing,
};
use levee_policy::{
    AttemptOutcome, AttemptResult, Method, NodeIndex, RequestFacts, RetryBackoff, RetryContext,
};
use wasmtime::{Store, Trap};

fn request() -> RequestData {
    RequestData {
        service: "kv".into(),
        method: "POST".into(),
        path: "/kv/a".into(),
        routing_key: "a".into(),
        headers: vec![],
    }
}

fn post() -> RequestFacts {
    RequestFacts {
        method: Method::Post,
        idempotent: false,
    }
}

fn outcome(attempt: u32, status: u16) -> AttemptOutcome {
    AttemptOutcome {
        node: 1,
        attempt,
        result: AttemptResult::Status(status),
        elapsed_ms: 4,
        retry_after_ms: None,
    }
}

const CANDIDATES: [NodeIndex; 2] = [1, 2];

fn context() -> RetryContext<'static> {
    RetryContext {
        budget_remaining: 5,
        deadline_remaining_ms: 10_000,
        max_attempts: 5,
        candidates: &CANDIDATES,
    }
}

fn decide_with(
    store: &mut Store<harness::HostState>,
    plugin: &RetryPolicy,
    request: &RequestData,
    facts: RequestFacts,
    outcome: &AttemptOutcome,
) -> wasmtime::Result<Decision> {
    let answer = harness::with_request(store, request, |store| {
        plugin.levee_policy_retry().call_decide(
            store,
            convert::facts(facts),
            convert::attempt_outcome(outcome),
            &convert::retry_context(&context()),
        )
    });
    harness::refuel(store);
    answer
}

fn decide(
    store: &mut Store<harness::HostState>,
    plugin: &RetryPolicy,
    facts: RequestFacts,
    outcome: &AttemptOutcome,
) -> wasmtime::Result<Decision> {
    decide_with(store, plugin, &request(), facts, outcome)
}

/// Loads a retry-world zoo plugin and makes one `decide` call.
fn decide_once(
    name: &str,
    config: &str,
) -> (Store<harness::HostState>, wasmtime::Result<Decision>) {
    let (mut store, plugin) = instantiate_retry(name, config, 3);
    let answer = decide(&mut store, &plugin, post(), &outcome(1, 503));
    (store, answer)
}

#[test]
fn infinite_loop_runs_until_the_cpu_fence() {
    let (_, answer) = decide_once("zoo/infinite-loop", "{}");
    assert_eq!(harness::trap_of(&answer.unwrap_err()), Trap::OutOfFuel);
}

#[test]
fn memory_bomb_is_stopped_by_the_memory_cap() {
    let (store, answer) = decide_once("zoo/memory-bomb", "{}");
    let trap = harness::trap_of(&answer.unwrap_err());
    assert_ne!(
        trap,
        Trap::OutOfFuel,
        "the CPU fence fired before the memory cap"
    );
    assert!(
        store.data().cap.refused_growth,
        "never reached the memory cap"
    );
}

#[test]
fn panic_traps() {
    let (_, answer) = decide_once("zoo/panic", "{}");
    assert_eq!(
        harness::trap_of(&answer.unwrap_err()),
        Trap::UnreachableCodeReached
    );
}

#[test]
fn deep_recursion_overflows_a_stack() {
    let (store, answer) = decide_once("zoo/deep-recursion", "{}");
    let trap = harness::trap_of(&answer.unwrap_err());
    // The shadow stack in linear memory underflows address 0 (an
    // out-of-bounds access) or wasmtime's native stack limit trips first.
    assert!(
        matches!(trap, Trap::MemoryOutOfBounds | Trap::StackOverflow),
        "{trap:?}"
    );
    assert!(
        !store.data().cap.refused_growth,
        "it should overflow, not allocate"
    );
}

#[test]
fn huge_string_by_default_cannot_fit_the_memory_cap() {
    let (store, answer) = decide_once("zoo/huge-string", "{}");
    harness::trap_of(&answer.unwrap_err());
    assert!(store.data().cap.refused_growth);
}

#[test]
fn huge_string_returns_the_configured_size() {
    let (_, answer) = decide_once("zoo/huge-string", r#"{"reason_bytes": 1048576}"#);
    match answer.unwrap() {
        Decision::GiveUp(reason) => assert_eq!(reason.len(), 1 << 20),
        other => panic!("expected a huge give-up reason, got {other:?}"),
    }
}

#[test]
fn huge_list_returns_the_configured_length_and_traps_by_default() {
    let candidates: Vec<wit::Candidate> = [0, 1]
        .map(|node| wit::Candidate {
            node,
            healthy: true,
            failure_rate_permille: 0,
            latency_ms: 1,
        })
        .to_vec();
    let facts = convert::facts(post());
    let route = |config: &str| {
        let (mut store, plugin) = instantiate_routing("zoo/huge-list", config);
        let answer = harness::with_request(&mut store, &request(), |store| {
            plugin
                .levee_policy_routing()
                .call_route(store, facts, &candidates)
        });
        (store, answer)
    };
    let (_, plan) = route(r#"{"order_len": 10000}"#);
    let plan = plan.unwrap();
    assert_eq!(plan.order.len(), 10_000);
    assert_eq!(plan.order[..3], [0, 1, 1 << 31]);
    assert_eq!(plan.order[9_999], (1 << 31) + 9_997);

    // Sixteen million indexes (64 MB) cannot fit the memory cap.
    let (store, answer) = route("{}");
    harness::trap_of(&answer.unwrap_err());
    assert!(
        store.data().cap.refused_growth,
        "never reached the memory cap"
    );
}

#[test]
fn echo_request_reads_the_request_and_sees_no_credential() {
    let (mut store, plugin) = instantiate_retry("zoo/echo-request", "{}", 1);
    let request = RequestData {
        method: "PROPFIND".into(),
        path: "/kv/a?x=1".into(),
        headers: vec![
            ("x-echo".into(), "hello".into()),
            ("authorization".into(), "Bearer secret".into()),
        ],
        ..request()
    };
    let reason = |answer: wasmtime::Result<Decision>| match answer.unwrap() {
        Decision::GiveUp(reason) => reason,
        other => panic!("expected the echo as a give-up, got {other:?}"),
    };

    let before = decide_with(&mut store, &plugin, &request, post(), &outcome(1, 503));
    assert_eq!(
        reason(before),
        "kv|PROPFIND|/kv/a?x=1|a|hello|-|nodes=unset"
    );

    let nodes: Vec<wit::NodeInfo> = (0..3)
        .map(|i| wit::NodeInfo {
            id: format!("n{i}"),
            address: format!("http://127.0.0.1:{}", 7000 + i),
            zone: None,
            weight: 1,
        })
        .collect();
    let retry = plugin.levee_policy_retry();
    retry.call_set_nodes(&mut store, &nodes).expect("set-nodes");
    let quiet = RequestData {
        headers: vec![],
        ..request.clone()
    };
    let after = decide_with(&mut store, &plugin, &quiet, post(), &outcome(2, 503));
    assert_eq!(reason(after), "kv|PROPFIND|/kv/a?x=1|a|-|-|nodes=3");

    // It did ask for the credential, every time; the host said `none`.
    let asked = &store.data().headers_asked;
    assert_eq!(
        asked.iter().filter(|name| *name == "authorization").count(),
        2,
        "{asked:?}"
    );
    assert_eq!(store.data().random_calls, 0);
}

#[test]
fn wrong_world_is_a_checkpoint_policy_not_a_retry_policy() {
    let mut store = harness::store(1);
    let component = harness::component("zoo/wrong-world");
    let as_retry = RetryPolicy::instantiate(&mut store, &component, &harness::linker());
    assert!(
        as_retry.is_err(),
        "a checkpoint component instantiated as a retry policy"
    );
    let (mut store, plugin) = instantiate_checkpoint("zoo/wrong-world", "{}");
    let stats = convert::log_stats(&levee_policy::LogStats::default());
    let action = plugin
        .levee_policy_checkpoint()
        .call_decide(&mut store, stats)
        .unwrap();
    assert_eq!(
        convert::action(action),
        levee_policy::CheckpointAction::Checkpoint
    );
}

#[test]
fn bad_config_rejects_every_config() {
    for config in ["{}", "", r#"{"max_attempts": 3}"#] {
        let mut store = harness::store(1);
        let component = harness::component("zoo/bad-config");
        let plugin = RetryPolicy::instantiate(&mut store, &component, &harness::linker()).unwrap();
        let answer = plugin
            .levee_policy_retry()
            .call_configure(&mut store, config)
            .unwrap();
        let reason = answer.expect_err("bad-config accepted a config");
        assert!(reason.contains("rejects every config"), "{reason}");
    }
}

#[test]
fn flaky_traps_on_even_attempts_and_is_retry_backoff_otherwise() {
    let config = r#"{"max_attempts": 6}"#;
    let native = RetryBackoff::from_json(config).unwrap();
    let get = RequestFacts {
        method: Method::Get,
        idempotent: true,
    };
    for attempt in 1..=5 {
        // A trapped instance is dead (the host replaces it): one per call.
        let (mut store, plugin) = instantiate_retry("zoo/flaky", config, u64::from(attempt));
        let answer = decide(&mut store, &plugin, get, &outcome(attempt, 503));
        assert_eq!(store.data().random_calls, 1, "random-u64 once per decide");
        if attempt % 2 == 0 {
            assert_eq!(
                harness::trap_of(&answer.unwrap_err()),
                Trap::UnreachableCodeReached
            );
        } else {
            let random = store.data().last_random;
            let expected = native.decide(get, &outcome(attempt, 503), &context(), random);
            assert_eq!(convert::decision(answer.unwrap()), expected);
        }
    }
}

#[test]
fn retry_fixed_retries_everything_at_once_and_says_so() {
    let (mut store, plugin) = instantiate_retry("zoo/retry-fixed", r#"{"max_attempts": 3}"#, 5);
    // A 500 on a POST: retry-backoff would give up on both counts.
    let answer = decide(&mut store, &plugin, post(), &outcome(1, 500)).unwrap();
    let expected = levee_policy::RetryDecision::Retry {
        delay_ms: 0,
        target: levee_policy::Target::Next,
    };
    assert_eq!(convert::decision(answer), expected);
    assert_eq!(store.data().random_calls, 1);
    assert_eq!(store.data().logs, ["retry-fixed: retry now"]);
    let native = RetryBackoff::default().decide(post(), &outcome(1, 500), &context(), 0);
    assert!(matches!(native, levee_policy::RetryDecision::GiveUp(_)));
}

/// route-probe rotates its plan by the calls it answered, reports the
/// health scalars it was passed in its hedge delay, declares what its
/// config says, and reads what its config says.
#[test]
fn route_probe_shows_each_call_and_what_it_was_passed() {
    let candidates: Vec<wit::Candidate> = [(4, 10, 3), (7, 0, 5), (9, 20, 1)]
        .into_iter()
        .map(|(node, failure_rate_permille, latency_ms)| wit::Candidate {
            node,
            healthy: true,
            failure_rate_permille,
            latency_ms,
        })
        .collect();
    let facts = convert::facts(post());
    let (mut store, plugin) = instantiate_routing("zoo/route-probe", "{}");
    let route = |store: &mut Store<harness::HostState>| {
        let answer = harness::with_request(store, &request(), |store| {
            plugin
                .levee_policy_routing()
                .call_route(store, facts, &candidates)
        });
        harness::refuel(store);
        answer.expect("route")
    };
    let first = route(&mut store);
    assert_eq!(first.order, [4, 7, 9]);
    assert_eq!(first.hedge_delay_ms, Some(1 + 10 + 3 + 5 + 20 + 1));
    assert_eq!(route(&mut store).order, [7, 9, 4]);
    assert_eq!(route(&mut store).order, [9, 4, 7]);

    for (config, declared) in [
        ("{}", false),
        ("not json", false),
        (r#"{"declare_cacheable": true}"#, true),
        (r#"{"declare_cacheable": false, "read": "clock"}"#, false),
    ] {
        let mut store = harness::store(1);
        let plugin = harness::routing::RoutingPolicy::instantiate(
            &mut store,
            &harness::component("zoo/route-probe"),
            &harness::linker(),
        )
        .unwrap();
        let traits = plugin
            .levee_policy_routing()
            .call_configure(&mut store, config)
            .unwrap()
            .expect("any config is accepted");
        assert_eq!(traits.cacheable_by_health_flags, declared, "{config}");
    }

    // `read: random` draws once per call; `read: request` reads the lent
    // request (and traps with none lent, as with the host).
    let (mut store, plugin) = instantiate_routing("zoo/route-probe", r#"{"read": "random"}"#);
    let _ = harness::with_request(&mut store, &request(), |store| {
        plugin
            .levee_policy_routing()
            .call_route(store, facts, &candidates)
    })
    .expect("route");
    assert_eq!(store.data().random_calls, 1);
    let (mut store, plugin) = instantiate_routing("zoo/route-probe", r#"{"read": "request"}"#);
    let unlent = plugin
        .levee_policy_routing()
        .call_route(&mut store, facts, &candidates);
    assert!(unlent.is_err(), "reading no lent request traps");
}
