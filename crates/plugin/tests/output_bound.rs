//! What a plugin's output costs the host: bounded by the binding's limits
//! however the plugin shapes it.
//!
//! `zoo/aliased-output` hands the host the largest strings its 16 MiB of
//! memory allows through every way a string crosses into the host (a
//! give-up reason, a `configure` error, `host.log` messages,
//! `request.header` names), the same buffer many times over; `zoo/huge-list`
//! returns a route plan of two million entries. A counting global allocator
//! measures the host's own heap during each call: the peak must stay
//! within the binding's hostcall bound (`hostcall_fuel_bytes`, 8 KiB by
//! default) plus a fixed allowance for the call's own bookkeeping, the call
//! must fail as invalid output (a guest fault, counted toward quarantine),
//! and the native policy must answer. A control binding whose limits allow
//! a 1 MiB string shows the allocator does see such a copy.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use levee_plugin::{
    BoundPlugin, Failure, Limits, LoadError, PolicyKind, RoutingPolicy, Runtime, Source,
    hostcall_fuel_bytes,
};
use levee_policy::limits::RETURNED_STRING_BYTES_CEILING;
use levee_policy::{RetryDecision, RouteAffinity};
use support::*;

/// Host heap a failed plugin call may use besides the one value wasmtime
/// copies out of the guest: the call's own bookkeeping (the failure's
/// text, wasmtime's call frames). Measured at about 2 KiB; 64 KiB is
/// still far below the megabytes an unbounded copy costs.
const CALL_BOOKKEEPING_BYTES_MAX: usize = 64 * 1024;
/// What the plugin tries to hand over in one value: far over any bound,
/// well within its 16 MiB of linear memory.
const HUGE_BYTES: usize = 8_000_000;

/// The system allocator, counting this thread's live bytes and their peak.
struct Counting;

thread_local! {
    static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
    static PEAK_BYTES: Cell<isize> = const { Cell::new(0) };
}

fn note(delta: isize) {
    // `try_with`: the allocator also runs while thread-locals are torn down.
    let _ = LIVE_BYTES.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK_BYTES.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is forwarded to `System` unchanged; only counts are
// kept, in const-initialized thread-locals that never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let block = unsafe { System.alloc(layout) };
        if !block.is_null() {
            note(layout.size() as isize);
        }
        block
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let block = unsafe { System.alloc_zeroed(layout) };
        if !block.is_null() {
            note(layout.size() as isize);
        }
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        unsafe { System.dealloc(block, layout) };
        note(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        let moved = unsafe { System.realloc(block, layout, size) };
        if !moved.is_null() {
            note(size as isize - layout.size() as isize);
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `call` and returns its result with the most host heap this thread
/// held during it, beyond what it held before.
fn peak_during<R>(call: impl FnOnce() -> R) -> (R, usize) {
    let before = LIVE_BYTES.with(Cell::get);
    PEAK_BYTES.with(|peak| peak.set(before));
    let result = call();
    let peak = PEAK_BYTES.with(Cell::get) - before;
    (result, usize::try_from(peak).unwrap_or(0))
}

/// Patient limits that never quarantine within a test.
fn lenient() -> Limits {
    Limits {
        consecutive_failures_max: 1_000,
        ..patient_limits()
    }
}

fn bind(
    runtime: &Runtime,
    name: &str,
    kind: PolicyKind,
    config: &str,
    limits: Limits,
) -> Arc<BoundPlugin> {
    runtime
        .compile_as(name, &dist(&format!("zoo/{name}")), kind)
        .unwrap()
        .bind(runtime, config, limits)
        .unwrap()
}

/// One retry decision by `aliased-output` under `config`: the failure (the
/// native policy must have answered) and the host's peak heap.
fn failing_retry_call(runtime: &Runtime, config: &str) -> (Failure, usize, Arc<BoundPlugin>) {
    let bound = bind(
        runtime,
        "aliased-output",
        PolicyKind::Retry,
        config,
        lenient(),
    );
    let policy = retry_policy_with(runtime, bound.clone());
    let (decided, peak) = peak_during(|| decide_first_attempt(&policy, 500));
    let Source::Fallback { failure, .. } = decided.source else {
        panic!("{config}: expected a fallback, got {:?}", decided.source);
    };
    (failure, peak, bound)
}

#[track_caller]
fn assert_refused_before_copy(failure: &Failure, peak: usize, limits: &Limits) {
    let fuel = hostcall_fuel_bytes(limits);
    assert!(
        matches!(failure, Failure::InvalidOutput(detail)
            if detail.contains(&format!("more than {fuel} bytes"))),
        "{failure:?}"
    );
    assert!(failure.is_guest_fault(), "counts toward quarantine");
    assert!(
        peak <= fuel + CALL_BOOKKEEPING_BYTES_MAX,
        "the host held {peak} bytes during the call, more than its {fuel}-byte bound \
         plus {CALL_BOOKKEEPING_BYTES_MAX}"
    );
}

#[test]
fn a_huge_give_up_reason_is_refused_before_the_host_copies_it() {
    let runtime = seeded_runtime(SEED);
    let config = format!(r#"{{"give_up_bytes": {HUGE_BYTES}}}"#);
    let (failure, peak, bound) = failing_retry_call(&runtime, &config);
    assert_refused_before_copy(&failure, peak, bound.limits());
    let counters = bound.stats().counters;
    assert_eq!(
        (counters.invalid_outputs, counters.consecutive_failures),
        (1, 1)
    );
}

#[test]
fn one_log_buffer_handed_over_many_times_is_refused_at_the_first() {
    let runtime = seeded_runtime(SEED);
    let config = format!(r#"{{"log_bytes": {HUGE_BYTES}, "log_calls": 64}}"#);
    let (failure, peak, bound) = failing_retry_call(&runtime, &config);
    assert_refused_before_copy(&failure, peak, bound.limits());
}

#[test]
fn one_huge_header_name_handed_over_many_times_is_refused_at_the_first() {
    let runtime = seeded_runtime(SEED);
    let config = format!(r#"{{"header_name_bytes": {HUGE_BYTES}, "header_calls": 64}}"#);
    let (failure, peak, bound) = failing_retry_call(&runtime, &config);
    assert_refused_before_copy(&failure, peak, bound.limits());
}

#[test]
fn a_route_plan_of_millions_of_entries_is_refused_before_the_host_copies_it() {
    let runtime = seeded_runtime(SEED);
    let bound = bind(
        &runtime,
        "huge-list",
        PolicyKind::Routing,
        r#"{"order_len": 2000000}"#,
        lenient(),
    );
    let limits = bound.limits().clone();
    let policy = RoutingPolicy::new(RouteAffinity::default());
    policy.bind(Some(bound)).unwrap();
    let request = get("/k");
    let candidates = [candidate(0, true), candidate(1, true)];
    let (decided, peak) =
        peak_during(|| policy.route(&request, request.facts(), test_nodes(), &candidates));
    let Source::Fallback { failure, .. } = decided.source else {
        panic!("expected a fallback, got {:?}", decided.source);
    };
    assert_refused_before_copy(&failure, peak, &limits);
}

#[test]
fn a_huge_configure_error_refuses_the_binding_with_a_bounded_message() {
    let runtime = seeded_runtime(SEED);
    let component = runtime
        .compile_as(
            "aliased-output",
            &dist("zoo/aliased-output"),
            PolicyKind::Retry,
        )
        .unwrap();
    let config = format!(r#"{{"reject_bytes": {HUGE_BYTES}}}"#);
    let error = component.bind(&runtime, &config, lenient()).unwrap_err();
    let LoadError::Instantiate(message) = &error else {
        panic!("expected an instantiation failure, got {error}");
    };
    assert!(message.contains("more than 8192 bytes"), "{message}");
    assert!(message.len() < 1024, "{message}");

    // Within the bound, the reason is kept, cut to the returned-string cap.
    let error = component
        .bind(&runtime, r#"{"reject_bytes": 6000}"#, lenient())
        .unwrap_err();
    let LoadError::ConfigRejected(reason) = &error else {
        panic!("expected the plugin's reason, got {error}");
    };
    assert_eq!(reason.len(), lenient().returned_string_bytes_max as usize);
}

/// Aliasing within the bound does not add up: a thousand `log` calls with
/// one 8,000-byte buffer copy 8 MB into the host over the call, but each
/// copy is dropped before the next, and the call succeeds.
#[test]
fn copies_within_the_bound_do_not_accumulate() {
    let runtime = seeded_runtime(SEED);
    let config = r#"{"log_bytes": 8000, "log_calls": 1000}"#;
    let bound = bind(
        &runtime,
        "aliased-output",
        PolicyKind::Retry,
        config,
        lenient(),
    );
    let fuel = hostcall_fuel_bytes(bound.limits());
    assert!(8000 <= fuel);
    let policy = retry_policy_with(&runtime, bound.clone());
    let (decided, peak) = peak_during(|| decide_first_attempt(&policy, 503));
    assert_plugin_answered(&decided.source);
    assert!(peak <= fuel + CALL_BOOKKEEPING_BYTES_MAX, "{peak}");
    let quota = u64::from(bound.limits().log_calls_per_call_max);
    assert_eq!(bound.stats().counters.logs_dropped, 1000 - quota);
}

/// The control: a binding whose limits let a 1 MiB string through makes
/// the host copy it, and the allocator sees that copy. So the small peaks
/// above are the bound at work, not a blind counter.
#[test]
fn the_allocator_sees_a_copy_the_limits_allow() {
    let runtime = seeded_runtime(SEED);
    let wide = Limits {
        returned_string_bytes_max: RETURNED_STRING_BYTES_CEILING,
        ..lenient()
    };
    let bytes = RETURNED_STRING_BYTES_CEILING as usize + 100_000;
    assert!(bytes <= hostcall_fuel_bytes(&wide));
    let config = format!(r#"{{"give_up_bytes": {bytes}}}"#);
    let bound = bind(&runtime, "aliased-output", PolicyKind::Retry, &config, wide);
    let policy = retry_policy_with(&runtime, bound);
    let (decided, peak) = peak_during(|| decide_first_attempt(&policy, 500));
    assert_plugin_answered(&decided.source);
    let RetryDecision::GiveUp(reason) = decided.value else {
        panic!("expected a give-up, got {:?}", decided.value);
    };
    assert_eq!(reason.len(), RETURNED_STRING_BYTES_CEILING as usize);
    assert!(
        peak >= bytes,
        "the copy of {bytes} bytes was not seen: {peak}"
    );
}

#[test]
fn output_over_the_bound_is_a_guest_fault_that_quarantines() {
    let runtime = seeded_runtime(SEED);
    let config = format!(r#"{{"give_up_bytes": {HUGE_BYTES}}}"#);
    let bound = bind(
        &runtime,
        "aliased-output",
        PolicyKind::Retry,
        &config,
        quarantine_after(3),
    );
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
    assert!(reason.contains("invalid answer"), "{reason}");
}
