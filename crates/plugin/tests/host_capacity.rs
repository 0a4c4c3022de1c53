//! Quarantine counts only the plugin's own faults. When the host has no
//! room for an instance (the engine's pooling allocator is full: every
//! binding's instances count against it), the call falls back to the
//! native policy without extending the failure streak, so a healthy
//! plugin is never quarantined, for every service using it, because the
//! host was busy. Guest faults still quarantine (`zoo.rs`,
//! `output_bound.rs`).

mod support;

use levee_plugin::{EngineCaps, Failure, HostEnv, Limits, Runtime, RuntimeOptions, Source};
use support::*;

/// A runtime whose engine holds at most `instances` plugin instances.
fn runtime_with_room_for(instances: u32) -> Runtime {
    Runtime::new(RuntimeOptions {
        env: HostEnv::seeded(SEED, NOW_MS),
        caps: EngineCaps {
            instances_total_max: instances,
            ..EngineCaps::default()
        },
        ..RuntimeOptions::default()
    })
    .unwrap()
}

/// One instance at most, none kept idle: every call after the first needs
/// a fresh instance from the engine.
fn fresh_instance_per_call(failures: u32) -> Limits {
    Limits {
        pool_instances_max: 1,
        pool_idle_max: 0,
        ..quarantine_after(failures)
    }
}

#[test]
fn a_full_engine_falls_back_without_quarantining_a_healthy_plugin() {
    let runtime = runtime_with_room_for(2);
    let component = compile_retry_backoff(&runtime);
    let one_each = Limits {
        pool_instances_max: 1,
        pool_idle_max: 1,
        ..patient_limits()
    };
    // The plugin under test: its bind-time instance serves one call and is
    // then dropped, freeing its engine slot.
    let healthy = component
        .bind(&runtime, "{}", fresh_instance_per_call(2))
        .unwrap();
    let policy = retry_policy_with(&runtime, healthy.clone());
    assert_plugin_answered(&decide_first_attempt(&policy, 503).source);
    // Two other bindings now hold both engine slots.
    let others = [
        component.bind(&runtime, "{}", one_each.clone()).unwrap(),
        component.bind(&runtime, "{}", one_each).unwrap(),
    ];

    for _ in 0..10 {
        let decided = decide_first_attempt(&policy, 500);
        let Source::Fallback { failure, .. } = &decided.source else {
            panic!("expected a fallback, got {:?}", decided.source);
        };
        assert!(
            matches!(failure, Failure::HostCapacity(detail) if detail.contains("component instances")),
            "{failure:?}"
        );
        assert!(!failure.is_guest_fault());
    }
    assert!(
        !healthy.is_quarantined(),
        "10 host failures, threshold 2: still not quarantined"
    );
    let counters = healthy.stats().counters;
    assert_eq!(
        (
            counters.host_capacity,
            counters.fallbacks,
            counters.consecutive_failures
        ),
        (10, 10, 0)
    );

    // Room again: the plugin answers.
    drop(others);
    assert_plugin_answered(&decide_first_attempt(&policy, 503).source);
}

#[test]
fn host_capacity_failures_neither_count_nor_end_a_guest_fault_streak() {
    let runtime = runtime_with_room_for(2);
    let panic = runtime
        .compile_as("panic", &dist("zoo/panic"), levee_plugin::PolicyKind::Retry)
        .unwrap();
    // Threshold 2: one trap, then host failures, then a second trap.
    let bound = panic
        .bind(&runtime, "{}", fresh_instance_per_call(2))
        .unwrap();
    let policy = retry_policy_with(&runtime, bound.clone());
    let first = decide_first_attempt(&policy, 500).source;
    assert!(
        matches!(
            first,
            Source::Fallback {
                failure: Failure::Trap(_),
                ..
            }
        ),
        "{first:?}"
    );
    let filler = compile_retry_backoff(&runtime);
    let one_each = Limits {
        pool_instances_max: 1,
        pool_idle_max: 1,
        ..patient_limits()
    };
    let others = [
        filler.bind(&runtime, "{}", one_each.clone()).unwrap(),
        filler.bind(&runtime, "{}", one_each).unwrap(),
    ];
    for _ in 0..5 {
        let source = decide_first_attempt(&policy, 500).source;
        assert!(
            matches!(
                source,
                Source::Fallback {
                    failure: Failure::HostCapacity(_),
                    ..
                }
            ),
            "{source:?}"
        );
    }
    assert_eq!(bound.stats().counters.consecutive_failures, 1);
    assert!(!bound.is_quarantined());

    drop(others);
    let second = decide_first_attempt(&policy, 500).source;
    assert!(
        matches!(
            second,
            Source::Fallback {
                failure: Failure::Trap(_),
                ..
            }
        ),
        "{second:?}"
    );
    assert!(bound.is_quarantined(), "two guest faults in a row");
}

#[test]
fn a_full_engine_at_load_is_named_not_blamed_on_the_component() {
    let runtime = runtime_with_room_for(1);
    let one = Limits {
        pool_instances_max: 1,
        pool_idle_max: 1,
        ..patient_limits()
    };
    let held = compile_retry_backoff(&runtime)
        .bind(&runtime, "{}", one)
        .unwrap();
    let error = runtime
        .compile_as("panic", &dist("zoo/panic"), levee_plugin::PolicyKind::Retry)
        .unwrap_err();
    let levee_plugin::LoadError::Instantiate(message) = &error else {
        panic!("expected an instantiation failure, got {error}");
    };
    assert!(message.contains("no room on the host"), "{message}");
    drop(held);
}
