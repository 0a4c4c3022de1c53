//! Shadow versions and trials on recorded calls, on real components.
//!
//! The live version is `retry-backoff` (`max_attempts: 3`); the other
//! version is `zoo/retry-fixed`, which retries always. They agree after a
//! first failed attempt (both retry, to the next node) and disagree after
//! the third (live gives up). The counts, the kept disagreements and the
//! live answers are checked against that.

mod support;

use std::sync::Arc;
use std::time::Duration;

use levee_plugin::policy::{DISAGREEMENTS_KEPT_MAX, RECORDED_CALLS_MAX, ShadowReport};
use levee_plugin::{HeaderAllowlist, LoadError, RetryPolicy, Runtime};
use levee_policy::RetryDecision;
use support::*;

fn live_policy(runtime: &Runtime) -> RetryPolicy {
    let bound = compile_retry_backoff(runtime)
        .bind_with_headers(
            runtime,
            r#"{"max_attempts": 3}"#,
            patient_limits(),
            HeaderAllowlist::new(&["x-tenant"]).unwrap(),
        )
        .unwrap();
    retry_policy_with(runtime, bound)
}

fn retry_fixed(runtime: &Runtime) -> Arc<levee_plugin::BoundPlugin> {
    runtime
        .compile("retry-backoff", &dist("zoo/retry-fixed"))
        .unwrap()
        .bind_with_headers(
            runtime,
            "{}",
            patient_limits(),
            HeaderAllowlist::new(&["x-tenant"]).unwrap(),
        )
        .unwrap()
}

/// `agreeing` first attempts then `disagreeing` third attempts, each a
/// 503 from n1; every answer must be the live version's.
fn drive(policy: &RetryPolicy, agreeing: usize, disagreeing: usize) {
    let request = get("/users/42")
        .with_header("x-tenant", "acme")
        .with_header("authorization", "Bearer secret");
    for attempt in std::iter::repeat_n(1, agreeing).chain(std::iter::repeat_n(3, disagreeing)) {
        let decided = decide(policy, &request, &status(0, attempt, 503), &roomy_context());
        assert_plugin_answered(&decided.source);
        let gives_up = matches!(decided.value, RetryDecision::GiveUp(_));
        assert_eq!(gives_up, attempt == 3, "{:?}", decided.value);
    }
}

/// The shadow's report once it has compared `calls` calls (bounded wait:
/// the shadow thread paces itself at 1 ms a call).
fn report_after(policy: &RetryPolicy, calls: u64) -> ShadowReport {
    for _ in 0..2_000 {
        let report = policy.shadow_report().expect("a shadow is set");
        if report.comparison.compared + report.skipped_quarantined >= calls {
            return report;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!(
        "the shadow never compared {calls} calls: {:?}",
        policy.shadow_report()
    );
}

#[test]
fn a_shadow_counts_agreement_per_decision_and_never_decides() {
    let runtime = seeded_runtime(SEED);
    let policy = live_policy(&runtime);
    assert!(policy.shadow_report().is_none());
    policy.set_shadow(Some(retry_fixed(&runtime))).unwrap();
    drive(&policy, 12, 5);
    let report = report_after(&policy, 17);
    assert_eq!((report.offered, report.dropped), (17, 0));
    assert_eq!(
        (
            report.comparison.compared,
            report.comparison.agreed,
            report.comparison.disagreed
        ),
        (17, 12, 5)
    );
    assert_eq!(report.comparison.failed, 0);
    assert_eq!(report.comparison.by_decision["retry"].compared, 12);
    assert_eq!(report.comparison.by_decision["retry"].agreed, 12);
    assert_eq!(report.comparison.by_decision["give-up"].compared, 5);
    assert_eq!(report.comparison.by_decision["give-up"].agreed, 0);
    assert_eq!(report.comparison.disagreements.len(), 5);
    let kept = &report.comparison.disagreements[0];
    assert!(kept.live["give_up"].is_string(), "{kept:?}");
    assert_eq!(kept.other["retry"]["target"], "next", "{kept:?}");
    assert!(kept.live_source.starts_with("plugin "), "{kept:?}");
    assert_eq!(kept.input["outcome"]["attempt"], 3);
    assert_eq!(kept.input["outcome"]["node"]["id"], "n1");
    assert_eq!(kept.input["outcome"]["result"]["status"], 503);
    // What the binding lets the plugin read, never a credential.
    let headers = &kept.input["request"]["headers"];
    assert_eq!(headers["x-tenant"], "acme");
    assert!(headers.get("authorization").is_none(), "{headers}");
    assert!(headers.get("accept").is_none(), "{headers}");
    // Clearing the shadow ends it; the live version is untouched.
    policy.set_shadow(None).unwrap();
    assert!(policy.shadow_report().is_none());
    drive(&policy, 1, 1);
}

#[test]
fn a_trial_replays_the_recorded_calls_on_a_candidate() {
    let runtime = seeded_runtime(SEED);
    let policy = live_policy(&runtime);
    drive(&policy, 7, 3);
    assert_eq!(policy.recorded_calls(), 10);
    let trial = policy.trial(&retry_fixed(&runtime)).unwrap();
    assert_eq!((trial.compared, trial.agreed, trial.disagreed), (10, 7, 3));
    assert_eq!(trial.disagreements.len(), 3);
    // The same version agrees with itself on every call.
    let same = compile_retry_backoff(&runtime)
        .bind(&runtime, r#"{"max_attempts": 3}"#, patient_limits())
        .unwrap();
    let trial = policy.trial(&same).unwrap();
    assert_eq!((trial.compared, trial.agreed), (10, 10));
    // A candidate of another world is refused.
    let routing = runtime
        .compile("route-affinity", &dist("route-affinity"))
        .unwrap()
        .bind(&runtime, "{}", patient_limits())
        .unwrap();
    assert!(matches!(
        policy.trial(&routing),
        Err(LoadError::WrongWorld { .. })
    ));
    assert!(matches!(
        policy.set_shadow(Some(routing)),
        Err(LoadError::WrongWorld { .. })
    ));
}

#[test]
fn recordings_and_kept_disagreements_are_bounded() {
    let runtime = seeded_runtime(SEED);
    let policy = live_policy(&runtime);
    drive(&policy, 0, RECORDED_CALLS_MAX + 40);
    assert_eq!(policy.recorded_calls(), RECORDED_CALLS_MAX);
    let trial = policy.trial(&retry_fixed(&runtime)).unwrap();
    assert_eq!(trial.compared, RECORDED_CALLS_MAX as u64);
    assert_eq!(trial.disagreements.len(), DISAGREEMENTS_KEPT_MAX);
}

#[test]
fn a_shadow_under_load_drops_offers_instead_of_queueing_them() {
    let runtime = seeded_runtime(SEED);
    let policy = live_policy(&runtime);
    policy.set_shadow(Some(retry_fixed(&runtime))).unwrap();
    // The shadow paces itself at 1 ms a call; 3,000 live calls offered as
    // fast as they come outrun it by far.
    drive(&policy, 3_000, 0);
    let report = policy.shadow_report().unwrap();
    assert_eq!(report.offered, 3_000);
    assert!(report.dropped > 0, "{report:?}");
    let report = report_after(&policy, report.offered - report.dropped);
    assert_eq!(report.comparison.compared + report.dropped, 3_000);
    assert_eq!(report.comparison.compared, report.comparison.agreed);
}

#[test]
fn a_failing_shadow_is_fenced_on_its_own() {
    let runtime = seeded_runtime(SEED);
    let policy = live_policy(&runtime);
    let panics = runtime
        .compile("retry-backoff", &dist("zoo/panic"))
        .unwrap()
        .bind(&runtime, "{}", quarantine_after(3))
        .unwrap();
    policy.set_shadow(Some(panics)).unwrap();
    drive(&policy, 8, 0);
    let report = report_after(&policy, 8);
    assert_eq!(report.comparison.failed, 3, "{report:?}");
    assert_eq!(report.skipped_quarantined, 5, "{report:?}");
    assert!(report.quarantined);
    assert!(report.comparison.disagreements[0].other["failed"].is_string());
    // The live version is neither quarantined nor failing.
    let stats = policy.stats().unwrap();
    assert!(!stats.quarantined);
    drive(&policy, 1, 1);
}
