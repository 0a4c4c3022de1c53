//! The adversarial zoo: plugins that loop, bomb memory, panic, recurse
//! without end, answer absurdly, implement the wrong world, reject every
//! config, or fail on some inputs; plus garbage, empty and hand-written
//! components. Each must end in a clear load error or a counted fallback to
//! the native policy, with the runtime still healthy afterwards.

mod support;

use std::sync::Arc;

use levee_plugin::{
    BoundPlugin, Component, Failure, HeaderAllowlist, Limits, LoadError, PolicyKind, RetryPolicy,
    RoutingPolicy, Runtime, Source,
};
use levee_policy::{RetryBackoff, RetryDecision, RouteAffinity, Target};
use support::*;

/// The native answer to a 500 is a deterministic give-up, whatever the
/// random value: what every fallback below must return.
fn native_give_up_on_500() -> RetryDecision {
    RetryBackoff::default().decide(get("/k").facts(), &status(0, 1, 500), &roomy_context(), 0)
}

/// `plugins/dist/zoo/<name>.wasm`, compiled under `name` as a `kind` policy.
fn compile_zoo(runtime: &Runtime, name: &str, kind: PolicyKind) -> Arc<Component> {
    runtime
        .compile_as(name, &dist(&format!("zoo/{name}")), kind)
        .unwrap()
}

fn bind_zoo(runtime: &Runtime, name: &str, config: &str, limits: Limits) -> Arc<BoundPlugin> {
    compile_zoo(runtime, name, PolicyKind::Retry)
        .bind(runtime, config, limits)
        .unwrap()
}

/// Binds a misbehaving retry plugin, calls it once, and returns the failure.
fn one_failing_call(runtime: &Runtime, name: &str, config: &str) -> (Failure, Arc<BoundPlugin>) {
    // Only the deadline test runs under the default 2 ms budget: the others
    // must fail for their own reason even on a preempted test thread.
    let limits = if name == "infinite-loop" {
        Limits::default()
    } else {
        patient_limits()
    };
    let bound = bind_zoo(runtime, name, config, limits);
    let policy = retry_policy_with(runtime, bound.clone());
    let decided = decide_first_attempt(&policy, 500);
    assert_eq!(
        decided.value,
        native_give_up_on_500(),
        "{name}: the native policy answers"
    );
    let Source::Fallback {
        failure, version, ..
    } = decided.source
    else {
        panic!("{name}: expected a fallback, got {:?}", decided.source);
    };
    assert_eq!(&*version, bound.version());
    (failure, bound)
}

/// A good plugin still decides correctly on this runtime.
fn assert_runtime_healthy(runtime: &Runtime) {
    let component = compile_retry_backoff(runtime);
    let bound = component.bind(runtime, "{}", patient_limits()).unwrap();
    let decided = decide_first_attempt(&retry_policy_with(runtime, bound), 503);
    assert_plugin_answered(&decided.source);
    match decided.value {
        RetryDecision::Retry { delay_ms, target } => {
            assert!(
                delay_ms <= 25,
                "first retry backs off at most base_delay_ms: {delay_ms}"
            );
            assert_eq!(target, Target::Next);
        }
        other => panic!("expected a retry, got {other:?}"),
    }
}

#[test]
fn infinite_loop_is_stopped_by_the_deadline() {
    let runtime = seeded_runtime(SEED);
    let (failure, bound) = one_failing_call(&runtime, "infinite-loop", "{}");
    assert_eq!(failure, Failure::Timeout);
    let counters = bound.stats().counters;
    assert_eq!(
        (counters.calls, counters.timeouts, counters.fallbacks),
        (1, 1, 1)
    );
    assert_eq!(counters.discarded_instances, 1);
    assert_runtime_healthy(&runtime);
}

#[test]
fn memory_bomb_hits_the_memory_limit() {
    let runtime = seeded_runtime(SEED);
    let (failure, bound) = one_failing_call(&runtime, "memory-bomb", "{}");
    assert_eq!(failure, Failure::MemoryLimit);
    assert_eq!(bound.stats().counters.memory_limits, 1);
    assert_runtime_healthy(&runtime);
}

#[test]
fn panic_traps_and_is_counted() {
    let runtime = seeded_runtime(SEED);
    let (failure, bound) = one_failing_call(&runtime, "panic", "{}");
    assert!(
        matches!(&failure, Failure::Trap(detail) if detail.contains("unreachable")),
        "{failure:?}"
    );
    let counters = bound.stats().counters;
    assert_eq!((counters.traps, counters.discarded_instances), (1, 1));
    assert_runtime_healthy(&runtime);
}

#[test]
fn deep_recursion_traps() {
    let runtime = seeded_runtime(SEED);
    let (failure, bound) = one_failing_call(&runtime, "deep-recursion", "{}");
    assert!(matches!(failure, Failure::Trap(_)), "{failure:?}");
    assert_eq!(bound.stats().counters.traps, 1);
    assert_runtime_healthy(&runtime);
}

#[test]
fn huge_string_cannot_exhaust_the_host() {
    let runtime = seeded_runtime(SEED);
    // 100 MB cannot even be built inside the 16 MiB memory cap.
    let (failure, _) = one_failing_call(&runtime, "huge-string", "{}");
    assert_eq!(failure, Failure::MemoryLimit);

    // 1 MB fits in memory but not in the binding's hostcall bound
    // (8 KiB): refused before the host copies it, and the call fails.
    let (failure, bound) =
        one_failing_call(&runtime, "huge-string", r#"{"reason_bytes": 1000000}"#);
    assert!(
        matches!(&failure, Failure::InvalidOutput(detail) if detail.contains("more than 8192 bytes")),
        "{failure:?}"
    );
    assert_eq!(bound.stats().counters.invalid_outputs, 1);

    // 6 KB is within the hostcall bound: copied, then truncated to the
    // returned-string cap (4 KiB).
    let bound = bind_zoo(
        &runtime,
        "huge-string",
        r#"{"reason_bytes": 6000}"#,
        patient_limits(),
    );
    let decided = decide_first_attempt(&retry_policy_with(&runtime, bound.clone()), 500);
    assert_plugin_answered(&decided.source);
    let RetryDecision::GiveUp(reason) = decided.value else {
        panic!("expected a give-up")
    };
    assert_eq!(
        reason.len(),
        bound.limits().returned_string_bytes_max as usize
    );
    assert_runtime_healthy(&runtime);
}

#[test]
fn huge_route_plans_are_refused_or_cleaned() {
    let runtime = seeded_runtime(SEED);
    let component = compile_zoo(&runtime, "huge-list", PolicyKind::Routing);
    let request = get("/k");
    let candidates = vec![candidate(0, true), candidate(1, true)];
    let native = RouteAffinity::default().route(request.facts(), test_nodes().nodes(), &candidates);
    let route = |config: &str| {
        let policy = RoutingPolicy::new(RouteAffinity::default());
        policy
            .bind(Some(
                component.bind(&runtime, config, patient_limits()).unwrap(),
            ))
            .unwrap();
        policy.route(&request, request.facts(), test_nodes(), &candidates)
    };

    // A million indexes do not fit in the memory cap.
    let decided = route("{}");
    assert!(
        matches!(
            decided.source,
            Source::Fallback {
                failure: Failure::MemoryLimit,
                ..
            }
        ),
        "{:?}",
        decided.source
    );
    assert_eq!(decided.value, native);

    // 100 indexes fit in memory but exceed route_order_max (64): invalid
    // output.
    let decided = route(r#"{"order_len": 100}"#);
    let Source::Fallback {
        failure: Failure::InvalidOutput(detail),
        ..
    } = &decided.source
    else {
        panic!(
            "expected an invalid-output fallback, got {:?}",
            decided.source
        );
    };
    assert!(
        detail.contains("100 nodes, more than the 64 allowed"),
        "{detail}"
    );
    assert_eq!(decided.value, native);

    // 10 indexes: accepted, and those of non-candidates are dropped.
    let decided = route(r#"{"order_len": 10}"#);
    assert_plugin_answered(&decided.source);
    assert_eq!(decided.value.order, vec![0, 1]);
}

#[test]
fn wrong_world_is_refused_with_the_exports_named() {
    let runtime = seeded_runtime(SEED);
    let bytes = dist("zoo/wrong-world");
    let error = runtime
        .compile_as("wrong-world", &bytes, PolicyKind::Retry)
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "expected world retry-policy (export levee:policy/retry@0.2.0), \
         but the component exports [levee:policy/checkpoint@0.2.0]"
    );
    // Loaded as what it is, it cannot be bound where a retry policy goes.
    let component = runtime.compile("wrong-world", &bytes).unwrap();
    assert_eq!(component.kind(), PolicyKind::Checkpoint);
    let bound = component.bind(&runtime, "{}", patient_limits()).unwrap();
    let policy = RetryPolicy::new(&runtime, RetryBackoff::default());
    let error = policy.bind(Some(bound)).unwrap_err();
    assert!(
        matches!(
            error,
            LoadError::WrongWorld {
                expected: PolicyKind::Retry,
                ..
            }
        ),
        "{error}"
    );
    assert!(policy.plugin().is_none());
}

#[test]
fn bad_config_is_refused_with_the_plugins_reason() {
    let runtime = seeded_runtime(SEED);
    let component = compile_zoo(&runtime, "bad-config", PolicyKind::Retry);
    let error = component
        .bind(&runtime, r#"{"anything": 1}"#, patient_limits())
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "plugin rejected its config: zoo/bad-config rejects every config (got 15 bytes)"
    );
}

#[test]
fn garbage_empty_and_core_modules_are_not_components() {
    let runtime = seeded_runtime(SEED);
    let cases: [(&[u8], &str); 4] = [
        (b"", "not a WebAssembly component: the input is empty"),
        (
            b"GIF89a this is not wasm at all",
            "not a WebAssembly component: missing the \\0asm magic header",
        ),
        (
            b"\0asm\x01\0\0\0",
            "not a WebAssembly component: this is a core WebAssembly module",
        ),
        (
            b"\0asm\x0d\0\x01\0\xff\xff\xff",
            "invalid WebAssembly component",
        ),
    ];
    for (bytes, expected) in cases {
        let error = runtime.compile("junk", bytes).unwrap_err().to_string();
        assert!(
            error.starts_with(expected),
            "{error:?} should start with {expected:?}"
        );
    }
    // Random bytes behind a valid header are still refused, never a panic.
    let mut state = SEED;
    for _ in 0..20 {
        let mut bytes = b"\0asm\x0d\0\x01\0".to_vec();
        bytes.extend((0..200).map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 56) as u8
        }));
        assert!(runtime.compile("junk", &bytes).is_err());
    }
    assert_runtime_healthy(&runtime);
}

#[test]
fn foreign_imports_and_missing_exports_are_named() {
    let runtime = seeded_runtime(SEED);
    let importer = wat::parse_str(
        r#"(component
            (import "wasi:http/outgoing-handler@0.2.0" (instance
                (export "handle" (func (result (list string))))))
            (import "wasi:cli/environment@0.3.0" (instance)))"#,
    )
    .unwrap();
    let error = runtime.compile("importer", &importer).unwrap_err();
    assert_eq!(
        error,
        LoadError::ForbiddenImports {
            imports: vec![
                "wasi:http/outgoing-handler@0.2.0".into(),
                "wasi:cli/environment@0.3.0".into()
            ]
        }
    );
    assert!(
        error
            .to_string()
            .contains("may import only levee:policy/host@0.2.0 and levee:policy/request@0.2.0"),
        "{error}"
    );

    let empty = wat::parse_str("(component)").unwrap();
    let error = runtime.compile("empty", &empty).unwrap_err().to_string();
    assert!(
        error.starts_with("not a levee policy: expected one of the worlds retry-policy"),
        "{error}"
    );
    assert!(error.ends_with("but the component exports []"), "{error}");

    // The right export names with the wrong types are caught at load.
    let impostor = wat::parse_str(
        r#"(component
            (core module $m (func (export "f")))
            (core instance $i (instantiate $m))
            (func $f (canon lift (core func $i "f")))
            (instance $retry
                (export "configure" (func $f))
                (export "set-nodes" (func $f))
                (export "decide" (func $f)))
            (export "levee:policy/retry@0.2.0" (instance $retry)))"#,
    )
    .unwrap();
    let error = runtime.compile("impostor", &impostor).unwrap_err();
    let LoadError::Incompatible {
        world: PolicyKind::Retry,
        detail,
    } = &error
    else {
        panic!("expected a type mismatch, got {error}");
    };
    assert!(
        detail.contains("configure") || detail.contains("type"),
        "{detail}"
    );
}

/// A component built against `levee:policy@0.1.0` (strings on every call)
/// is refused at load, naming both versions, by `compile` and by `check`.
#[test]
fn a_0_1_0_component_is_told_to_rebuild() {
    let runtime = seeded_runtime(SEED);
    // The shape of a 0.1.0 retry plugin: the old host import and the old
    // retry export (the functions' types do not matter: the version is
    // refused before they are looked at).
    let old = wat::parse_str(
        r#"(component
            (import "levee:policy/host@0.1.0" (instance
                (export "now-ms" (func (result u64)))))
            (core module $m (func (export "f")))
            (core instance $i (instantiate $m))
            (func $f (canon lift (core func $i "f")))
            (instance $retry (export "configure" (func $f)) (export "decide" (func $f)))
            (export "levee:policy/retry@0.1.0" (instance $retry)))"#,
    )
    .unwrap();
    let expected = LoadError::WitVersion {
        found: "levee:policy@0.1.0".into(),
        interfaces: vec![
            "levee:policy/host@0.1.0".into(),
            "levee:policy/retry@0.1.0".into(),
        ],
    };
    let error = runtime.compile("old", &old).unwrap_err();
    assert_eq!(error, expected);
    assert!(
        error.to_string().starts_with(
            "built against levee:policy@0.1.0; this host speaks levee:policy@0.2.0: \
             rebuild it against wit/levee-policy.wit"
        ),
        "{error}"
    );
    let error = runtime
        .compile_as("old", &old, PolicyKind::Retry)
        .unwrap_err();
    assert_eq!(error, expected);
    assert_eq!(
        levee_plugin::check(&runtime, &old, None).unwrap_err(),
        expected
    );

    // An export-only 0.1.0 component is refused the same way.
    let export_only = wat::parse_str(
        r#"(component
            (core module $m (func (export "f")))
            (core instance $i (instantiate $m))
            (func $f (canon lift (core func $i "f")))
            (instance $c (export "configure" (func $f)) (export "decide" (func $f)))
            (export "levee:policy/checkpoint@0.1.0" (instance $c)))"#,
    )
    .unwrap();
    let error = runtime.compile("old", &export_only).unwrap_err();
    assert!(
        matches!(error, LoadError::WitVersion { ref found, .. } if found == "levee:policy@0.1.0")
    );
    assert_runtime_healthy(&runtime);
}

#[test]
fn oversized_components_and_configs_are_refused() {
    let runtime = seeded_runtime(SEED);
    let huge = vec![0u8; levee_plugin::runtime::COMPONENT_BYTES_MAX_DEFAULT + 1];
    assert!(matches!(
        runtime.compile("huge", &huge).unwrap_err(),
        LoadError::TooLarge { .. }
    ));
    let component = compile_retry_backoff(&runtime);
    let config = format!(
        "{{\"pad\": \"{}\"}}",
        "x".repeat(levee_policy::limits::CONFIG_BYTES_MAX)
    );
    let error = component
        .bind(&runtime, &config, Limits::default())
        .unwrap_err();
    assert!(matches!(error, LoadError::ConfigTooLarge { .. }), "{error}");
    let error = component
        .bind(
            &runtime,
            "{}",
            Limits {
                call_timeout_ms: 0,
                ..Limits::default()
            },
        )
        .unwrap_err();
    assert!(matches!(error, LoadError::InvalidLimits(_)), "{error}");
}

#[test]
fn flaky_failures_are_counted_and_trapped_instances_never_reused() {
    let runtime = seeded_runtime(SEED);
    let bound = bind_zoo(&runtime, "flaky", "{}", quarantine_after(2));
    let policy = retry_policy_with(&runtime, bound.clone());
    let context = roomy_context();

    // Odd attempts succeed, even ones panic. Alternating never reaches two
    // failures in a row, so the plugin is never quarantined.
    for attempt in 1..=20u32 {
        let decided = decide(&policy, &get("/k"), &status(0, attempt, 503), &context);
        if attempt % 2 == 1 {
            assert!(
                matches!(decided.source, Source::Plugin { .. }),
                "attempt {attempt}: {:?}",
                decided.source
            );
        } else {
            assert!(
                matches!(
                    decided.source,
                    Source::Fallback {
                        failure: Failure::Trap(_),
                        ..
                    }
                ),
                "{:?}",
                decided.source
            );
        }
    }
    let counters = bound.stats().counters;
    assert_eq!(
        (
            counters.calls,
            counters.ok,
            counters.traps,
            counters.fallbacks
        ),
        (20, 10, 10, 10)
    );
    // Every trapped instance was thrown away, and each success after a trap
    // needed a fresh one: 1 at bind (served attempts 1 and 2), then one
    // for each of attempts 3, 5, ..., 19.
    assert_eq!(counters.discarded_instances, 10);
    assert_eq!(counters.instantiations, 10);
    assert!(!bound.is_quarantined());
}

#[test]
fn quarantine_after_consecutive_failures_until_a_new_version_is_bound() {
    let runtime = seeded_runtime(SEED);
    let bound = bind_zoo(&runtime, "panic", "{}", quarantine_after(3));
    let policy = retry_policy_with(&runtime, bound.clone());

    for _ in 0..3 {
        let decided = decide_first_attempt(&policy, 500);
        assert!(
            matches!(decided.source, Source::Fallback { .. }),
            "{:?}",
            decided.source
        );
    }
    assert!(bound.is_quarantined());
    let reason = bound.stats().quarantine_reason.unwrap();
    assert!(reason.starts_with("3 consecutive failures"), "{reason}");

    // Quarantined: native answers without calling the plugin.
    for _ in 0..5 {
        let decided = decide_first_attempt(&policy, 500);
        assert!(
            matches!(decided.source, Source::Quarantined { .. }),
            "{:?}",
            decided.source
        );
        assert_eq!(decided.value, native_give_up_on_500());
    }
    let counters = bound.stats().counters;
    assert_eq!(
        (counters.calls, counters.traps, counters.quarantined_calls),
        (3, 3, 5)
    );

    // Another binding of the same version stays quarantined...
    let again = bound
        .component()
        .bind(&runtime, "{}", patient_limits())
        .unwrap();
    policy.bind(Some(again)).unwrap();
    let decided = decide_first_attempt(&policy, 500);
    assert!(matches!(decided.source, Source::Quarantined { .. }));

    // ...a new version is called again.
    let fresh = compile_retry_backoff(&runtime);
    policy
        .bind(Some(fresh.bind(&runtime, "{}", patient_limits()).unwrap()))
        .unwrap();
    assert_plugin_answered(&decide_first_attempt(&policy, 503).source);
}

#[test]
fn the_whole_zoo_in_one_runtime_leaves_it_healthy() {
    let runtime = seeded_runtime(SEED);
    for name in [
        "infinite-loop",
        "memory-bomb",
        "panic",
        "deep-recursion",
        "huge-string",
    ] {
        for _ in 0..3 {
            let (failure, _) = one_failing_call(&runtime, name, "{}");
            assert_ne!(failure, Failure::PoolExhausted, "{name}");
        }
    }
    assert_runtime_healthy(&runtime);
}

#[test]
fn no_plugin_means_native() {
    let runtime = seeded_runtime(SEED);
    let policy = RetryPolicy::new(&runtime, RetryBackoff::default());
    let decided = decide_first_attempt(&policy, 500);
    assert_eq!(decided.source, Source::Native);
    assert_eq!(decided.value, native_give_up_on_500());
    assert_eq!(policy.native_calls(), 1);
    assert!(policy.stats().is_none());
}

#[test]
fn plugin_logs_are_capped_per_call() {
    let runtime = seeded_runtime(SEED);
    let component = compile_zoo(&runtime, "retry-fixed", PolicyKind::Retry);
    // retry-fixed logs one line per decision.
    let quiet = Limits {
        log_calls_per_call_max: 0,
        ..patient_limits()
    };
    let policy = retry_policy_with(&runtime, component.bind(&runtime, "{}", quiet).unwrap());
    for _ in 0..5 {
        let decided = decide_first_attempt(&policy, 503);
        assert!(
            matches!(decided.source, Source::Plugin { .. }),
            "a dropped log line is not a failure"
        );
    }
    assert_eq!(policy.stats().unwrap().counters.logs_dropped, 5);

    policy
        .bind(Some(
            component.bind(&runtime, "{}", patient_limits()).unwrap(),
        ))
        .unwrap();
    decide_first_attempt(&policy, 503);
    assert_eq!(policy.stats().unwrap().counters.logs_dropped, 0);
}

#[test]
fn a_binding_outliving_its_runtime_handle_is_still_fenced() {
    let bound = {
        let runtime = seeded_runtime(SEED);
        bind_zoo(&runtime, "infinite-loop", "{}", Limits::default())
    };
    // The caller's Runtime is gone; the binding keeps the epoch ticker alive,
    // so the loop is still interrupted.
    let policy = RetryPolicy::with_env(
        levee_plugin::HostEnv::seeded(SEED, NOW_MS),
        RetryBackoff::default(),
    );
    policy.bind(Some(bound)).unwrap();
    let decided = decide_first_attempt(&policy, 500);
    assert!(
        matches!(
            decided.source,
            Source::Fallback {
                failure: Failure::Timeout,
                ..
            }
        ),
        "{:?}",
        decided.source
    );
}

#[test]
fn stats_serialize_for_the_admin_api() {
    let runtime = seeded_runtime(SEED);
    let (_, bound) = one_failing_call(&runtime, "panic", "{}");
    let json = serde_json::to_value(bound.stats()).unwrap();
    assert_eq!(json["kind"], "retry-policy");
    assert_eq!(json["traps"], 1);
    assert_eq!(json["last_failure"]["kind"], "trap");
    assert_eq!(
        json["latency_buckets"].as_array().unwrap().len(),
        levee_plugin::stats::LATENCY_BUCKETS
    );
}

/// `zoo/echo-request` gives up with what it read through the `request`
/// functions and the size of the last node table it was given:
/// `service|method|path|key|x-echo|authorization|nodes=N` (`-` for absent).
#[test]
fn the_request_functions_lend_the_request_and_hide_credentials() {
    let runtime = seeded_runtime(SEED);
    let limits = Limits {
        returned_string_bytes_max: 64 * 1024,
        ..patient_limits()
    };
    // The binding lists `x-echo`; the plugin still never reads a credential.
    let headers = HeaderAllowlist::new(&["x-echo", "idempotency-key"]).unwrap();
    let bound = compile_zoo(&runtime, "echo-request", PolicyKind::Retry)
        .bind_with_headers(&runtime, "{}", limits, headers)
        .unwrap();
    let policy = retry_policy_with(&runtime, bound.clone());
    let request = TestRequest {
        service: "kv".into(),
        method: "PROPFIND".into(),
        path: "/users/42?view=full".into(),
        routing_key: "users".into(),
        headers: Vec::new(),
    }
    .with_header("X-Echo", "hello")
    .with_header("Authorization", "Bearer secret")
    .with_header("Idempotency-Key", "k1");
    let echo = |request: &TestRequest, nodes: &levee_plugin::NodeTable| {
        let decided = policy.decide(
            request,
            request.facts(),
            nodes,
            &status(0, 1, 503),
            &roomy_context(),
        );
        assert_plugin_answered(&decided.source);
        match decided.value {
            RetryDecision::GiveUp(reason) => reason,
            other => panic!("echo-request gives up, got {other:?}"),
        }
    };
    assert_eq!(
        echo(&request, test_nodes()),
        "kv|PROPFIND|/users/42?view=full|users|hello|-|nodes=3"
    );
    // The same table again: not given again.
    echo(&request, test_nodes());
    assert_eq!(bound.stats().counters.node_tables_given, 1);

    // A new table is given before the next call, once.
    let five =
        levee_plugin::NodeTable::new((1..=5).map(|i| node_info(&format!("m{i}"), None)).collect())
            .unwrap();
    let without_echo = TestRequest {
        headers: Vec::new(),
        ..request.clone()
    };
    assert_eq!(
        echo(&without_echo, &five),
        "kv|PROPFIND|/users/42?view=full|users|-|-|nodes=5"
    );
    echo(&without_echo, &five);
    assert_eq!(bound.stats().counters.node_tables_given, 2);

    // Long header values are cut at a character boundary, long paths at
    // 8 KiB.
    let long = TestRequest {
        path: format!("/{}", "p".repeat(9_000)),
        ..get("/k")
    }
    .with_header("x-echo", &"é".repeat(300));
    let reason = echo(&long, &five);
    let fields: Vec<&str> = reason.split('|').collect();
    assert_eq!(fields[2].len(), levee_policy::limits::PATH_BYTES_MAX);
    assert_eq!(fields[4], "é".repeat(128));
    assert_eq!(bound.stats().counters.fallbacks, 0);
}

/// A plugin reads only the headers its binding lists (by default only
/// `idempotency-key`), and never a credential, even when the client sends
/// it: `zoo/echo-request` asks for `x-echo` and `authorization` on every
/// call.
#[test]
fn a_plugin_reads_only_the_headers_its_binding_lists() {
    let runtime = seeded_runtime(SEED);
    let component = compile_zoo(&runtime, "echo-request", PolicyKind::Retry);
    let request = get("/k")
        .with_header("X-Echo", "hello")
        .with_header("Authorization", "Bearer secret");
    let echo = |bound: Arc<BoundPlugin>| {
        let policy = retry_policy_with(&runtime, bound);
        let decided = decide(&policy, &request, &status(0, 1, 503), &roomy_context());
        assert_plugin_answered(&decided.source);
        let RetryDecision::GiveUp(reason) = decided.value else {
            panic!("echo-request gives up, got {:?}", decided.value)
        };
        reason
    };
    let default = component.bind(&runtime, "{}", patient_limits()).unwrap();
    assert_eq!(default.headers(), &HeaderAllowlist::default());
    assert_eq!(echo(default), "kv|GET|/k|k|-|-|nodes=3");
    let listed = HeaderAllowlist::new(&["x-echo"]).unwrap();
    let bound = component
        .bind_with_headers(&runtime, "{}", patient_limits(), listed)
        .unwrap();
    assert_eq!(echo(bound), "kv|GET|/k|k|hello|-|nodes=3");
    // A credential cannot even be listed.
    for credential in levee_policy::limits::CREDENTIAL_HEADERS {
        let error = HeaderAllowlist::new(&["x-echo", credential]).unwrap_err();
        assert!(matches!(error, LoadError::InvalidHeaders(_)), "{error}");
        assert!(error.to_string().contains("is a credential"), "{error}");
    }
}
