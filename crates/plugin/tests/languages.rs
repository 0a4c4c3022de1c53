//! The JavaScript and Python `retry-backoff` plugins decide exactly like
//! the native policy.
//!
//! `plugins/js/retry-backoff` (componentize-js) and
//! `plugins/python/retry-backoff` (componentize-py) re-implement the rules
//! of `crates/policy/src/retry.rs`, each with config field names of its
//! own. Every config below is written three times, once per naming, and
//! the three must mean the same policy: on the same inputs and the same
//! random value (the host's seeded `random-u64` on one side, the same seed
//! handed to the native policy on the other) every decision, give-up
//! reasons included, must be equal, and must come from the plugin. The
//! table is the one `examples.rs` runs for the Rust example; generated
//! inputs follow.
//!
//! Both run under [`language_limits`] (see its constants for the memory
//! each needs, as measured).

mod support;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use levee_plugin::{
    BoundPlugin, HostEnv, HostRng, Limits, LoadError, PolicyKind, RetryPolicy, Runtime,
    RuntimeOptions, Source,
};
use levee_policy::{AttemptOutcome, ErrorKind, RetryBackoff, RetryContext, RetryDecision};
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use support::*;

/// Linear memory a JavaScript plugin gets: the default 16 MiB. The
/// componentize-js 0.23 component (StarlingMonkey) needs 9.1 MiB after
/// `configure` and 20 `decide`s (the least `memory_bytes_max` that works,
/// found by `measure_languages` in release mode).
pub const JS_MEMORY_BYTES: u64 = 16 * 1024 * 1024;
/// Linear memory a Python plugin gets: the componentize-py 0.25.1
/// component (CPython 3.14) needs 12.4 MiB, measured the same way; 24 MiB
/// leaves the interpreter's heap room to grow over many calls.
pub const PY_MEMORY_BYTES: u64 = 24 * 1024 * 1024;

/// A `retry-backoff` config in the native field names and in each
/// plugin's own.
struct Equivalent {
    native: &'static str,
    js: &'static str,
    py: &'static str,
}

const CONFIGS: [Equivalent; 4] = [
    Equivalent {
        native: "{}",
        js: "{}",
        py: "{}",
    },
    Equivalent {
        native: r#"{"max_attempts": 5, "base_delay_ms": 10, "max_delay_ms": 200, "target": "same"}"#,
        js: r#"{"maxAttempts": 5, "baseDelayMs": 10, "maxDelayMs": 200, "target": "same"}"#,
        py: r#"{"attempts": 5, "backoff_base_ms": 10, "backoff_cap_ms": 200, "retry_to": "same"}"#,
    },
    Equivalent {
        native: r#"{"retry_statuses": [429, 500, 503], "retry_after_max_ms": 2000}"#,
        js: r#"{"retryStatuses": [429, 500, 503], "retryAfterMaxMs": 2000}"#,
        py: r#"{"statuses": [429, 500, 503], "retry_after_cap_ms": 2000}"#,
    },
    // The extremes: the most attempts, the longest delays, no status.
    Equivalent {
        native: r#"{"max_attempts": 10, "base_delay_ms": 60000, "max_delay_ms": 60000, "retry_statuses": [], "retry_after_max_ms": 0}"#,
        js: r#"{"maxAttempts": 10, "baseDelayMs": 60000, "maxDelayMs": 60000, "retryStatuses": [], "retryAfterMaxMs": 0}"#,
        py: r#"{"attempts": 10, "backoff_base_ms": 60000, "backoff_cap_ms": 60000, "statuses": [], "retry_after_cap_ms": 0}"#,
    },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Language {
    JavaScript,
    Python,
}

const LANGUAGES: [Language; 2] = [Language::JavaScript, Language::Python];

impl Language {
    /// `plugins/dist/<plugin>.wasm`.
    fn plugin(self) -> &'static str {
        match self {
            Language::JavaScript => "retry-backoff-js",
            Language::Python => "retry-backoff-py",
        }
    }

    fn config(self, equivalent: &Equivalent) -> &'static str {
        match self {
            Language::JavaScript => equivalent.js,
            Language::Python => equivalent.py,
        }
    }
}

/// [`patient_limits`] with the linear memory the language's runtime needs.
fn language_limits(language: Language) -> Limits {
    Limits {
        memory_bytes_max: match language {
            Language::JavaScript => JS_MEMORY_BYTES,
            Language::Python => PY_MEMORY_BYTES,
        },
        ..patient_limits()
    }
}

/// One disk cache for the whole test process: the JS and Python
/// components take seconds to compile in a test build, and every pair
/// needs a runtime of its own (its own seeded random source).
fn shared_cache_dir() -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap())
        .path()
        .to_path_buf()
}

fn seeded_cached_runtime(seed: u64) -> Runtime {
    Runtime::new(RuntimeOptions {
        env: HostEnv::seeded(seed, NOW_MS),
        caps: test_caps(),
        cache_dir: Some(shared_cache_dir()),
        ..RuntimeOptions::default()
    })
    .expect("runtime starts")
}

fn bind(
    runtime: &Runtime,
    language: Language,
    config: &str,
) -> Result<Arc<BoundPlugin>, LoadError> {
    let name = language.plugin();
    runtime
        .compile_as(name, &dist(name), PolicyKind::Retry)
        .unwrap()
        .bind(runtime, config, language_limits(language))
}

/// A plugin-backed retry policy and a native one fed the same seed.
struct RetryPair {
    plugin: RetryPolicy,
    version: String,
    native: RetryBackoff,
    native_rng: HostRng,
}

impl RetryPair {
    fn new(language: Language, equivalent: &Equivalent) -> RetryPair {
        let seed = SEED ^ equivalent.native.len() as u64;
        let runtime = seeded_cached_runtime(seed);
        let bound = bind(&runtime, language, language.config(equivalent)).unwrap();
        RetryPair {
            version: bound.version().to_string(),
            plugin: retry_policy_with(&runtime, bound),
            native: RetryBackoff::from_json(equivalent.native).unwrap(),
            native_rng: HostRng::seeded(seed),
        }
    }

    fn check(&self, request: &TestRequest, outcome: &AttemptOutcome, context: &RetryContext<'_>) {
        let decided = decide(&self.plugin, request, outcome, context);
        let expected = self.native.decide(
            request.facts(),
            outcome,
            context,
            self.native_rng.next_u64(),
        );
        match &decided.source {
            Source::Plugin { version, .. } => assert_eq!(&**version, self.version),
            other => panic!("expected the plugin to answer, got {other:?}"),
        }
        assert_eq!(
            decided.value, expected,
            "request {request:?}\noutcome {outcome:?}\ncontext {context:?}"
        );
    }
}

/// The cases of `examples.rs`'s `retry_backoff_table`: every rule fires.
fn table() -> Vec<(TestRequest, AttemptOutcome, RetryContext<'static>)> {
    let post = get("/k").with_method("POST");
    let keyed_post = post.clone().with_header("Idempotency-Key", "abc");
    let empty_key_post = post.clone().with_header("Idempotency-Key", "");
    let with_retry_after = AttemptOutcome {
        retry_after_ms: Some(1_500),
        ..status(0, 1, 503)
    };
    let too_many = AttemptOutcome {
        retry_after_ms: Some(700),
        ..status(0, 1, 429)
    };
    let roomy = roomy_context;
    vec![
        (get("/a"), status(0, 1, 503), roomy()),
        (get("/a"), status(0, 2, 502), roomy()),
        (get("/a"), status(0, 4, 504), roomy()),
        (get("/a"), status(0, 1, 500), roomy()),
        (get("/a"), status(0, 1, 429), roomy()),
        (get("/a"), too_many, roomy()),
        (get("/a"), with_retry_after, roomy()),
        (get("/a"), error(1, 1, ErrorKind::Connect), roomy()),
        (get("/a"), error(1, 1, ErrorKind::Timeout), roomy()),
        (get("/a"), error(1, 1, ErrorKind::Reset), roomy()),
        (get("/a"), error(1, 1, ErrorKind::Protocol), roomy()),
        (get("/a"), error(1, 1, ErrorKind::Other), roomy()),
        (post.clone(), status(0, 1, 503), roomy()),
        (keyed_post, status(0, 1, 503), roomy()),
        (empty_key_post, status(0, 1, 503), roomy()),
        (
            get("/a"),
            status(0, 1, 503),
            RetryContext {
                budget_remaining: 0,
                ..roomy()
            },
        ),
        (
            get("/a"),
            status(0, 1, 503),
            RetryContext {
                deadline_remaining_ms: 1,
                ..roomy()
            },
        ),
        (
            get("/a"),
            status(0, 3, 503),
            RetryContext {
                max_attempts: 3,
                ..roomy()
            },
        ),
    ]
}

fn table_matches_native(language: Language) {
    for equivalent in &CONFIGS {
        let pair = RetryPair::new(language, equivalent);
        for (request, outcome, context) in &table() {
            pair.check(request, outcome, context);
        }
    }
}

#[test]
fn javascript_retry_backoff_table() {
    table_matches_native(Language::JavaScript);
}

#[test]
fn python_retry_backoff_table() {
    table_matches_native(Language::Python);
}

fn generated_inputs_match_native(language: Language) {
    for equivalent in &CONFIGS {
        let pair = RetryPair::new(language, equivalent);
        let mut runner = TestRunner::new(ProptestConfig {
            cases: 200,
            ..ProptestConfig::default()
        });
        runner
            .run(
                &retry_inputs(),
                |(request, outcome, budget, deadline, max_attempts, candidates)| {
                    let context = RetryContext {
                        budget_remaining: budget,
                        deadline_remaining_ms: deadline,
                        max_attempts,
                        candidates: &CANDIDATES[..candidates],
                    };
                    pair.check(&request, &outcome, &context);
                    Ok(())
                },
            )
            .unwrap();
        let stats = pair.plugin.stats().unwrap();
        assert_eq!(stats.counters.fallbacks, 0);
        assert_eq!(stats.counters.calls, stats.counters.ok);
    }
}

#[test]
fn javascript_matches_native_on_generated_inputs() {
    generated_inputs_match_native(Language::JavaScript);
}

#[test]
fn python_matches_native_on_generated_inputs() {
    generated_inputs_match_native(Language::Python);
}

/// `configure` refuses a bad config with a reason naming the field: an
/// unknown one (a native field name is unknown to both), a value out of
/// range, a value of the wrong type. A refused config leaves nothing bound.
#[test]
fn config_errors_name_the_field() {
    let cases: [(Language, &str, &str); 10] = [
        (
            Language::JavaScript,
            r#"{"max_attempts": 4}"#,
            "`max_attempts`: unknown field",
        ),
        (
            Language::JavaScript,
            r#"{"maxAttempts": 0}"#,
            "`maxAttempts`: 0 is outside 1..=10",
        ),
        (
            Language::JavaScript,
            r#"{"baseDelayMs": 50, "maxDelayMs": 40}"#,
            "`baseDelayMs`: 50 exceeds maxDelayMs 40",
        ),
        (
            Language::JavaScript,
            r#"{"retryStatuses": [404]}"#,
            "`retryStatuses`: 404 is not 429 or 500..=599",
        ),
        (
            Language::JavaScript,
            r#"{"target": "any"}"#,
            "`target`: \"any\" is not \"next\" or \"same\"",
        ),
        (
            Language::Python,
            r#"{"max_attempts": 4}"#,
            "`max_attempts`: unknown field",
        ),
        (
            Language::Python,
            r#"{"attempts": 11}"#,
            "`attempts`: 11 is outside 1..=10",
        ),
        (
            Language::Python,
            r#"{"backoff_cap_ms": 70000}"#,
            "`backoff_cap_ms`: 70000 exceeds 60000",
        ),
        (
            Language::Python,
            r#"{"attempts": true}"#,
            "`attempts`: true is not an integer",
        ),
        (
            Language::Python,
            "[1]",
            "invalid config: expected a JSON object",
        ),
    ];
    for language in LANGUAGES {
        let runtime = seeded_cached_runtime(SEED);
        for (_, config, expected) in cases.iter().filter(|case| case.0 == language) {
            match bind(&runtime, language, config) {
                Err(LoadError::ConfigRejected(reason)) => {
                    assert!(reason.contains(expected), "{language:?} {config}: {reason}")
                }
                Err(other) => panic!("{language:?} {config}: refused for another reason: {other}"),
                Ok(_) => panic!("{language:?} {config}: accepted"),
            }
        }
    }
}

/// A plugin's own field names are all it accepts, and they mean what the
/// native names mean: checked above decision by decision; here, that an
/// empty or `null` config is the defaults, as for the native policy.
#[test]
fn empty_config_means_defaults() {
    for language in LANGUAGES {
        for config in ["", "null", "{}"] {
            let runtime = seeded_cached_runtime(SEED);
            let bound = bind(&runtime, language, config).unwrap();
            let policy = retry_policy_with(&runtime, bound);
            let decided = decide_first_attempt(&policy, 500);
            assert_plugin_answered(&decided.source);
            assert_eq!(
                decided.value,
                RetryDecision::GiveUp("status 500 is not retryable".into()),
                "{language:?} {config:?}"
            );
        }
    }
}

/// Prints the README's table of plugins in other languages: the Rust
/// example, the JavaScript and the Python plugin, each compiled cold (no
/// cache) and from the disk cache, instantiated (with `configure`), and
/// called. Run in release mode, on a quiet machine:
/// `cargo test --release -p levee-plugin --test languages -- --ignored --nocapture measure_languages`
#[test]
#[ignore = "a measurement: run it by hand in release mode"]
fn measure_languages() {
    println!(
        "| plugin | component | compile cold | compile cached | instantiate + configure | first decide | decide (median) | linear memory needed |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, limits) in [
        ("retry-backoff", patient_limits()),
        ("retry-backoff-js", language_limits(Language::JavaScript)),
        ("retry-backoff-py", language_limits(Language::Python)),
    ] {
        let bytes = dist(name);
        // A cold compile of the JS or Python component takes seconds: once.
        let cold_runs = if bytes.len() > 1024 * 1024 { 1 } else { 3 };
        let cold = median_ms(cold_runs, || {
            let runtime = seeded_runtime(SEED);
            let component = runtime.compile_as(name, &bytes, PolicyKind::Retry).unwrap();
            component.compile_ms()
        });
        let cache = tempfile::tempdir().unwrap();
        let cached_runtime = || {
            Runtime::new(RuntimeOptions {
                env: HostEnv::seeded(SEED, NOW_MS),
                caps: test_caps(),
                cache_dir: Some(cache.path().to_path_buf()),
                ..RuntimeOptions::default()
            })
            .unwrap()
        };
        cached_runtime()
            .compile_as(name, &bytes, PolicyKind::Retry)
            .unwrap();
        let cached = median_ms(3, || {
            let component = cached_runtime()
                .compile_as(name, &bytes, PolicyKind::Retry)
                .unwrap();
            assert!(component.cache_hit(), "{:?}", component.cache());
            component.compile_ms()
        });
        let runtime = seeded_runtime(SEED);
        let component = runtime.compile_as(name, &bytes, PolicyKind::Retry).unwrap();
        let instantiate = median_ms(5, || {
            let started = std::time::Instant::now();
            let bound = component.bind(&runtime, "{}", limits.clone()).unwrap();
            let ms = started.elapsed().as_secs_f64() * 1e3;
            drop(bound);
            ms
        });
        let policy = retry_policy_with(
            &runtime,
            component.bind(&runtime, "{}", limits.clone()).unwrap(),
        );
        let started = std::time::Instant::now();
        assert_plugin_answered(&decide_first_attempt(&policy, 503).source);
        let first_call_ms = started.elapsed().as_secs_f64() * 1e3;
        let call_us = median_ms(2_000, || {
            let started = std::time::Instant::now();
            let decided = decide_first_attempt(&policy, 503);
            let ms = started.elapsed().as_secs_f64() * 1e3;
            assert_plugin_answered(&decided.source);
            ms
        }) * 1e3;
        let memory = memory_needed(&runtime, &component, &limits);
        println!(
            "| `{name}` | {:.1} MiB | {cold:.0} ms | {cached:.1} ms | {instantiate:.2} ms | {first_call_ms:.2} ms | {call_us:.1} µs | {:.1} MiB |",
            bytes.len() as f64 / (1024.0 * 1024.0),
            memory as f64 / (1024.0 * 1024.0),
        );
    }
}

fn median_ms(runs: usize, mut run: impl FnMut() -> f64) -> f64 {
    let mut samples: Vec<f64> = (0..runs).map(|_| run()).collect();
    samples.sort_by(f64::total_cmp);
    samples[runs / 2]
}

/// The least `memory_bytes_max` (in 64 KiB pages) under which the
/// component binds and answers 20 decisions itself: a binary search.
fn memory_needed(
    runtime: &Runtime,
    component: &Arc<levee_plugin::Component>,
    limits: &Limits,
) -> u64 {
    const PAGE: u64 = 64 * 1024;
    let works = |pages: u64| {
        let limits = Limits {
            memory_bytes_max: pages * PAGE,
            consecutive_failures_max: 1_000,
            ..limits.clone()
        };
        let Ok(bound) = component.bind(runtime, "{}", limits) else {
            return false;
        };
        let policy = retry_policy_with(runtime, bound);
        (0..20).all(|attempt| {
            let decided = decide(
                &policy,
                &get("/m"),
                &status(0, attempt % 4, 503),
                &roomy_context(),
            );
            matches!(decided.source, Source::Plugin { .. })
        })
    };
    let (mut failing, mut working) = (0u64, limits.memory_bytes_max / PAGE);
    assert!(
        works(working),
        "the component does not run under its limits"
    );
    while working - failing > 1 {
        let middle = (failing + working) / 2;
        if works(middle) {
            working = middle;
        } else {
            failing = middle;
        }
    }
    working * PAGE
}
