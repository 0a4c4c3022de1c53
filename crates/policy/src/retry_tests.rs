//! Tests of `retry-backoff`: one case per rule, then properties.

use super::*;
use proptest::prelude::*;

fn get() -> RequestFacts {
    RequestFacts {
        method: Method::Get,
        idempotent: true,
    }
}

fn post() -> RequestFacts {
    RequestFacts {
        method: Method::Post,
        idempotent: false,
    }
}

/// A POST the host found an `Idempotency-Key` on: it folds the key into
/// `idempotent`, the only thing the policy looks at.
fn post_with_key() -> RequestFacts {
    RequestFacts {
        idempotent: true,
        ..post()
    }
}

fn outcome(result: AttemptResult, attempt: u32, retry_after_ms: Option<u32>) -> AttemptOutcome {
    AttemptOutcome {
        node: 1,
        attempt,
        result,
        elapsed_ms: 3,
        retry_after_ms,
    }
}

fn status(code: u16) -> AttemptOutcome {
    outcome(AttemptResult::Status(code), 1, None)
}

fn error(kind: ErrorKind) -> AttemptOutcome {
    outcome(AttemptResult::Error(kind), 1, None)
}

/// Candidate nodes of every test context, in routing order.
const CANDIDATES: [NodeIndex; 3] = [1, 2, 3];

fn roomy() -> RetryContext<'static> {
    RetryContext {
        budget_remaining: 10,
        deadline_remaining_ms: 30_000,
        max_attempts: 5,
        candidates: &CANDIDATES,
    }
}

fn policy(json: &str) -> RetryBackoff {
    RetryBackoff::from_json(json).expect("valid config")
}

/// Mid-range randomness: half of the jitter ceiling, rounded down.
const HALF: u64 = 1 << 63;

fn retry(delay_ms: u32, target: Target) -> Result<RetryPlan, GiveUpReason> {
    Ok(RetryPlan { delay_ms, target })
}

/// Name, config JSON, request facts, outcome, context, expected plan.
type Case = (
    &'static str,
    &'static str,
    RequestFacts,
    AttemptOutcome,
    RetryContext<'static>,
    Result<RetryPlan, GiveUpReason>,
);

#[test]
fn rules_table() {
    use AttemptResult::Status;
    use GiveUpReason::*;
    let same = r#"{"target": "same"}"#;
    let with_429 = r#"{"retry_statuses": [429, 503]}"#;
    let past = |delay_ms, deadline_remaining_ms| {
        Err(PastDeadline {
            delay_ms,
            deadline_remaining_ms,
        })
    };
    let deadline = |ms| RetryContext {
        deadline_remaining_ms: ms,
        ..roomy()
    };
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("connect error retries on the next node", "", get(), error(ErrorKind::Connect), roomy(), retry(13, Target::Next)),
        ("timeout retries, next by default", "", get(), error(ErrorKind::Timeout), roomy(), retry(13, Target::Next)),
        ("reset retries", "", get(), error(ErrorKind::Reset), roomy(), retry(13, Target::Next)),
        ("target same applies to timeouts", same, get(), error(ErrorKind::Timeout), roomy(), retry(13, Target::Same)),
        ("target same applies to statuses", same, get(), status(502), roomy(), retry(13, Target::Same)),
        ("connect failure always moves on", same, get(), error(ErrorKind::Connect), roomy(), retry(13, Target::Next)),
        ("protocol error gives up", "", get(), error(ErrorKind::Protocol), roomy(), Err(ErrorNotRetryable(ErrorKind::Protocol))),
        ("other error gives up", "", get(), error(ErrorKind::Other), roomy(), Err(ErrorNotRetryable(ErrorKind::Other))),
        ("502 retries", "", get(), status(502), roomy(), retry(13, Target::Next)),
        ("503 retries", "", get(), status(503), roomy(), retry(13, Target::Next)),
        ("504 retries", "", get(), status(504), roomy(), retry(13, Target::Next)),
        ("500 gives up", "", get(), status(500), roomy(), Err(StatusNotRetryable(500))),
        ("unlisted status gives up", r#"{"retry_statuses": [503]}"#, get(), status(502), roomy(), Err(StatusNotRetryable(502))),
        ("extra listed status retries", r#"{"retry_statuses": [500]}"#, get(), status(500), roomy(), retry(13, Target::Next)),
        ("429 without Retry-After gives up", "", get(), status(429), roomy(), Err(TooManyRequestsWithoutRetryAfter)),
        ("429 with Retry-After waits as told", "", get(), outcome(Status(429), 1, Some(300)), roomy(), retry(300, Target::Next)),
        ("429 configured retries with jitter", with_429, get(), status(429), roomy(), retry(13, Target::Next)),
        ("503 Retry-After is honoured", "", get(), outcome(Status(503), 1, Some(2_000)), roomy(), retry(2_000, Target::Next)),
        ("Retry-After of zero retries at once", "", get(), outcome(Status(503), 1, Some(0)), roomy(), retry(0, Target::Next)),
        ("Retry-After is capped", "", get(), outcome(Status(503), 1, Some(50_000)), roomy(), retry(10_000, Target::Next)),
        ("Retry-After cap is configurable", r#"{"retry_after_max_ms": 700}"#, get(), outcome(Status(429), 1, Some(5_000)), roomy(), retry(700, Target::Next)),
        ("Retry-After past the deadline gives up", "", get(), outcome(Status(503), 1, Some(5_000)), deadline(3_000), past(5_000, 3_000)),
        ("Retry-After ignored on 502", "", get(), outcome(Status(502), 1, Some(5_000)), roomy(), retry(13, Target::Next)),
        ("non-idempotent never retries", "", post(), error(ErrorKind::Timeout), roomy(), Err(NotIdempotent)),
        ("non-idempotent connect failure does not retry", "", post(), error(ErrorKind::Connect), roomy(), Err(NotIdempotent)),
        ("non-idempotent status does not retry", "", post(), status(503), roomy(), Err(NotIdempotent)),
        ("idempotency-key (folded by the host) makes it retryable", "", post_with_key(), error(ErrorKind::Timeout), roomy(), retry(13, Target::Next)),
        ("idempotent POST retries a status too", "", post_with_key(), status(503), roomy(), retry(13, Target::Next)),
        ("a non-idempotent GET (as told) does not retry", "", RequestFacts { idempotent: false, ..get() }, status(503), roomy(), Err(NotIdempotent)),
        ("an idempotent other method retries", "", RequestFacts { method: Method::Other, idempotent: true }, status(503), roomy(), retry(13, Target::Next)),
        ("non-retryable status is reported before idempotency", "", post(), status(500), roomy(), Err(StatusNotRetryable(500))),
        ("config max_attempts caps", "", get(), outcome(Status(503), 3, None), roomy(), Err(AttemptsExhausted { attempt: 3, max_attempts: 3 })),
        ("below config max_attempts retries", "", get(), outcome(Status(503), 2, None), roomy(), retry(25, Target::Next)),
        ("context max_attempts caps below config", "", get(), outcome(Status(503), 2, None), RetryContext { max_attempts: 2, ..roomy() }, Err(AttemptsExhausted { attempt: 2, max_attempts: 2 })),
        ("context max_attempts of zero gives up", "", get(), status(503), RetryContext { max_attempts: 0, ..roomy() }, Err(AttemptsExhausted { attempt: 1, max_attempts: 0 })),
        ("empty budget gives up", "", get(), status(503), RetryContext { budget_remaining: 0, ..roomy() }, Err(BudgetExhausted)),
        ("no deadline left gives up", "", get(), status(503), deadline(0), past(13, 0)),
        ("delay equal to the deadline gives up", "", get(), status(503), deadline(13), past(13, 13)),
        ("delay just under the deadline retries", "", get(), status(503), deadline(14), retry(13, Target::Next)),
    ];
    for (name, config, facts, outcome, context, expected) in cases {
        let actual = policy(config).plan(facts, &outcome, &context, HALF);
        assert_eq!(actual, expected, "case: {name}");
    }
}

#[test]
fn decide_reports_plan_as_decision() {
    let backoff = RetryBackoff::default();
    let retried = backoff.decide(get(), &status(503), &roomy(), 0);
    assert_eq!(
        retried,
        RetryDecision::Retry {
            delay_ms: 0,
            target: Target::Next
        }
    );
    let given_up = backoff.decide(get(), &status(500), &roomy(), 0);
    assert_eq!(
        given_up,
        RetryDecision::GiveUp("status 500 is not retryable".into())
    );
}

#[test]
fn every_reason_reads_well_and_is_short() {
    let reasons = [
        GiveUpReason::StatusNotRetryable(501),
        GiveUpReason::TooManyRequestsWithoutRetryAfter,
        GiveUpReason::ErrorNotRetryable(ErrorKind::Protocol),
        GiveUpReason::NotIdempotent,
        GiveUpReason::AttemptsExhausted {
            attempt: u32::MAX,
            max_attempts: u32::MAX,
        },
        GiveUpReason::BudgetExhausted,
        GiveUpReason::PastDeadline {
            delay_ms: u32::MAX,
            deadline_remaining_ms: u32::MAX,
        },
    ];
    for reason in reasons {
        let text = reason.to_string();
        assert!(!text.is_empty() && text.len() < 200, "{text}");
    }
}

#[test]
fn backoff_doubles_per_attempt_up_to_the_cap() {
    let backoff = policy(r#"{"base_delay_ms": 100, "max_delay_ms": 1000, "max_attempts": 10}"#);
    let ceilings: Vec<u32> = (1..=6).map(|a| backoff.backoff_ceiling_ms(a)).collect();
    assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
    assert_eq!(
        backoff.backoff_ceiling_ms(0),
        100,
        "attempt 0 is treated as the first"
    );
    assert_eq!(backoff.backoff_ceiling_ms(u32::MAX), 1000);
}

#[test]
fn jitter_spans_zero_to_the_ceiling() {
    assert_eq!(full_jitter_ms(1000, 0), 0);
    assert_eq!(full_jitter_ms(1000, u64::MAX), 1000);
    assert_eq!(full_jitter_ms(1000, HALF), 500);
    assert_eq!(full_jitter_ms(0, u64::MAX), 0);
    assert_eq!(full_jitter_ms(u32::MAX, u64::MAX), u32::MAX);
}

#[test]
fn jitter_uses_the_random_argument() {
    let backoff = RetryBackoff::default();
    let delays: std::collections::BTreeSet<u32> = (0..64u64)
        .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .map(
            |random| match backoff.decide(get(), &status(503), &roomy(), random) {
                RetryDecision::Retry { delay_ms, .. } => delay_ms,
                RetryDecision::GiveUp(reason) => panic!("gave up: {reason}"),
            },
        )
        .collect();
    assert!(delays.len() > 10, "jitter barely varies: {delays:?}");
    assert!(delays.iter().all(|&d| d <= 25));
}

#[test]
fn defaults_are_valid() {
    assert_eq!(RetryConfig::default().validate(), Ok(()));
    assert_eq!(
        RetryBackoff::from_json("").unwrap().config,
        RetryConfig::default()
    );
    assert_eq!(
        RetryBackoff::from_json("{}").unwrap().config,
        RetryConfig::default()
    );
}

#[test]
fn config_parses_every_field() {
    let json = r#"{"max_attempts": 5, "base_delay_ms": 10, "max_delay_ms": 200,
        "retry_statuses": [429, 500], "retry_after_max_ms": 3000, "target": "same"}"#;
    let expected = RetryConfig {
        max_attempts: 5,
        base_delay_ms: 10,
        max_delay_ms: 200,
        retry_statuses: vec![429, 500],
        retry_after_max_ms: 3000,
        target: RetryTarget::Same,
    };
    assert_eq!(RetryBackoff::from_json(json).unwrap().config, expected);
}

#[test]
fn config_errors_name_the_field() {
    let many_statuses = format!(
        "{{\"retry_statuses\": {:?}}}",
        vec![503; RETRY_STATUSES_MAX + 1]
    );
    let cases = [
        (r#"{"max_attempts": 0}"#, "max_attempts"),
        (r#"{"max_attempts": 11}"#, "max_attempts"),
        (r#"{"max_attempts": "3"}"#, "max_attempts"),
        (
            r#"{"base_delay_ms": 2000, "max_delay_ms": 1000}"#,
            "base_delay_ms",
        ),
        (r#"{"max_delay_ms": 60001}"#, "max_delay_ms"),
        (r#"{"max_delay_ms": -5}"#, "max_delay_ms"),
        (r#"{"retry_after_max_ms": 90000}"#, "retry_after_max_ms"),
        (r#"{"retry_statuses": [200]}"#, "retry_statuses"),
        (r#"{"retry_statuses": [428]}"#, "retry_statuses"),
        (r#"{"retry_statuses": [70000]}"#, "retry_statuses"),
        (many_statuses.as_str(), "retry_statuses"),
        (r#"{"target": "sideways"}"#, "target"),
        (r#"{"max_atempts": 3}"#, "max_atempts"),
    ];
    for (json, field) in cases {
        let error = RetryBackoff::from_json(json).unwrap_err();
        assert!(error.contains(&format!("`{field}`")), "{json} -> {error}");
    }
}

#[test]
fn config_rejects_non_objects() {
    for json in ["[]", "7", "{", "\"x\""] {
        assert!(RetryBackoff::from_json(json).is_err(), "{json}");
    }
}

fn any_result() -> impl Strategy<Value = AttemptResult> {
    prop_oneof![
        (100u16..=599).prop_map(AttemptResult::Status),
        prop_oneof![Just(429u16), Just(502), Just(503), Just(504)].prop_map(AttemptResult::Status),
        prop_oneof![
            Just(ErrorKind::Connect),
            Just(ErrorKind::Timeout),
            Just(ErrorKind::Reset),
            Just(ErrorKind::Protocol),
            Just(ErrorKind::Other),
        ]
        .prop_map(AttemptResult::Error),
    ]
}

fn any_outcome() -> impl Strategy<Value = AttemptOutcome> {
    (any_result(), 0u32..20, proptest::option::of(any::<u32>()))
        .prop_map(|(result, attempt, retry_after_ms)| outcome(result, attempt, retry_after_ms))
}

fn any_context() -> impl Strategy<Value = RetryContext<'static>> {
    (0u32..4, prop_oneof![0u32..100, any::<u32>()], 0u32..12).prop_map(
        |(budget_remaining, deadline_remaining_ms, max_attempts)| RetryContext {
            budget_remaining,
            deadline_remaining_ms,
            max_attempts,
            candidates: &CANDIDATES[..2],
        },
    )
}

fn any_valid_config() -> impl Strategy<Value = RetryConfig> {
    (
        1u32..=MAX_ATTEMPTS_MAX,
        0u32..=limits::RETRY_DELAY_MS_MAX,
        0u32..=limits::RETRY_DELAY_MS_MAX,
        0u32..=limits::RETRY_DELAY_MS_MAX,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(max_attempts, a, b, retry_after_max_ms, with_429, same)| RetryConfig {
                max_attempts,
                base_delay_ms: a.min(b),
                max_delay_ms: a.max(b),
                retry_statuses: if with_429 {
                    vec![429, 502, 503]
                } else {
                    vec![502, 503, 504]
                },
                retry_after_max_ms,
                target: if same {
                    RetryTarget::Same
                } else {
                    RetryTarget::Next
                },
            },
        )
}

proptest! {
    #[test]
    fn a_retry_always_respects_every_bound(
        config in any_valid_config(),
        outcome in any_outcome(),
        context in any_context(),
        idempotent in any::<bool>(),
        random in any::<u64>(),
    ) {
        let facts = RequestFacts { idempotent, ..post() };
        let backoff = RetryBackoff::new(config.clone()).unwrap();
        if let Ok(plan) = backoff.plan(facts, &outcome, &context, random) {
            prop_assert!(plan.delay_ms < context.deadline_remaining_ms);
            prop_assert!(plan.delay_ms <= limits::RETRY_DELAY_MS_MAX);
            prop_assert!(plan.delay_ms <= config.max_delay_ms.max(config.retry_after_max_ms));
            prop_assert!(outcome.attempt < config.max_attempts.min(context.max_attempts));
            prop_assert!(context.budget_remaining > 0);
            prop_assert!(idempotent);
            if outcome.result == AttemptResult::Error(ErrorKind::Connect) {
                prop_assert_eq!(plan.target, Target::Next);
            }
        }
    }

    #[test]
    fn backoff_delay_stays_under_the_ceiling(
        config in any_valid_config(),
        attempt in 1u32..10,
        random in any::<u64>(),
    ) {
        let backoff = RetryBackoff::new(RetryConfig { max_attempts: MAX_ATTEMPTS_MAX, ..config }).unwrap();
        let ceiling_ms = backoff.backoff_ceiling_ms(attempt);
        let context = RetryContext { deadline_remaining_ms: u32::MAX, max_attempts: 20, ..roomy() };
        let outcome = outcome(AttemptResult::Error(ErrorKind::Timeout), attempt, None);
        match backoff.plan(get(), &outcome, &context, random) {
            Ok(plan) => prop_assert!(plan.delay_ms <= ceiling_ms),
            Err(reason) => {
                let exhausted = matches!(reason, GiveUpReason::AttemptsExhausted { .. });
                prop_assert!(exhausted, "unexpected give-up: {}", reason);
            }
        }
    }

    #[test]
    fn decide_is_deterministic(outcome in any_outcome(), context in any_context(), random in any::<u64>()) {
        let backoff = RetryBackoff::default();
        let first = backoff.decide(get(), &outcome, &context, random);
        let second = backoff.decide(get(), &outcome, &context, random);
        prop_assert_eq!(first, second);
    }

    #[test]
    fn unvalidated_configs_never_panic(
        max_attempts in any::<u32>(),
        base_delay_ms in any::<u32>(),
        max_delay_ms in any::<u32>(),
        retry_after_max_ms in any::<u32>(),
        outcome in any_outcome(),
        context in any_context(),
        random in any::<u64>(),
    ) {
        let config = RetryConfig { max_attempts, base_delay_ms, max_delay_ms, retry_after_max_ms, ..RetryConfig::default() };
        let backoff = RetryBackoff { config };
        if let RetryDecision::Retry { delay_ms, .. } = backoff.decide(get(), &outcome, &context, random) {
            prop_assert!(delay_ms <= limits::RETRY_DELAY_MS_MAX);
        }
    }

    #[test]
    fn jitter_is_monotone_and_bounded(ceiling_ms in any::<u32>(), a in any::<u64>(), b in any::<u64>()) {
        let (low, high) = (a.min(b), a.max(b));
        prop_assert!(full_jitter_ms(ceiling_ms, low) <= full_jitter_ms(ceiling_ms, high));
        prop_assert!(full_jitter_ms(ceiling_ms, high) <= ceiling_ms);
    }
}
