//! A WASI plugin is granted nothing (crates/plugin/src/wasi).
//!
//! `plugins/python/sandbox-probe` is CPython (componentize-py) with the
//! whole WASI 0.2 surface imported. Each case binds it with one probe and
//! checks, in the host, what the probe got: files, sockets, name lookup,
//! environment, stdin refused or empty; stdout and stderr in the host log;
//! clock and random from the host's seeded sources; a sleep fails the call
//! instead of blocking the thread. Calls also run on a tokio worker, where
//! levee makes them.

mod support;

use std::io::Write;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use levee_plugin::{Failure, Limits, PolicyKind, RetryPolicy, Runtime, Source, check};
use levee_policy::{RetryBackoff, RetryDecision};
use support::*;

const PROBE: &str = "sandbox-probe-py";
/// Linear memory of a CPython plugin (see tests/languages.rs).
const PY_MEMORY_BYTES: u64 = 48 * 1024 * 1024;

fn limits() -> Limits {
    Limits {
        memory_bytes_max: PY_MEMORY_BYTES,
        ..patient_limits()
    }
}

fn runtime() -> Runtime {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap());
    Runtime::new(levee_plugin::RuntimeOptions {
        env: levee_plugin::HostEnv::seeded(SEED, NOW_MS),
        caps: test_caps(),
        cache_dir: Some(dir.path().to_path_buf()),
        ..levee_plugin::RuntimeOptions::default()
    })
    .unwrap()
}

/// The probe bound to `config`, as a retry policy.
fn probe(runtime: &Runtime, config: &str, limits: Limits) -> RetryPolicy {
    let bound = runtime
        .compile_as(PROBE, &dist(PROBE), PolicyKind::Retry)
        .unwrap()
        .bind(runtime, config, limits)
        .unwrap();
    let policy = RetryPolicy::new(runtime, RetryBackoff::default());
    policy.bind(Some(bound)).unwrap();
    policy
}

/// What the probe said (its give-up reason), failing unless it answered.
fn answer(policy: &RetryPolicy) -> String {
    let decided = decide_first_attempt(policy, 503);
    assert_plugin_answered(&decided.source);
    match decided.value {
        RetryDecision::GiveUp(reason) => reason,
        other => panic!("the probe always gives up, got {other:?}"),
    }
}

fn run(runtime: &Runtime, config: &str) -> String {
    answer(&probe(runtime, config, limits()))
}

#[test]
fn files_are_not_there() {
    let runtime = runtime();
    for probe in ["open", "write", "listdir"] {
        let said = run(&runtime, &format!(r#"{{"probe": "{probe}"}}"#));
        assert!(said.starts_with("refused: "), "{probe}: {said}");
    }
    assert!(!std::path::Path::new("levee-probe.txt").exists());
}

#[test]
fn sockets_and_name_lookup_are_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let runtime = runtime();
    let said = run(
        &runtime,
        &format!(r#"{{"probe": "socket", "port": {port}}}"#),
    );
    assert!(said.starts_with("refused: "), "{said}");
    let accepted = listener.accept();
    assert!(
        matches!(&accepted, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the plugin reached the listener: {accepted:?}"
    );
    let said = run(&runtime, r#"{"probe": "resolve"}"#);
    assert!(said.starts_with("refused: "), "{said}");
}

#[test]
fn environment_arguments_and_stdin_are_empty() {
    let runtime = runtime();
    let said = run(&runtime, r#"{"probe": "env"}"#);
    assert!(said.starts_with("env: {} argv: ["), "{said}");
    assert!(!said.contains("PATH"), "{said}");
    let said = run(&runtime, r#"{"probe": "stdin"}"#);
    assert_eq!(said, "stdin: ''");
}

#[test]
fn clock_and_random_are_the_hosts() {
    let one = runtime();
    assert_eq!(
        run(&one, r#"{"probe": "time"}"#),
        format!("time_ms: {NOW_MS}")
    );
    let first = run(&runtime(), r#"{"probe": "random"}"#);
    let again = run(&runtime(), r#"{"probe": "random"}"#);
    assert!(first.starts_with("random: "), "{first}");
    assert_eq!(first, again, "the same seed gives the same bytes");
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn stdout_and_stderr_go_to_the_host_log_within_the_quota() {
    let runtime = runtime();
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let policy = probe(&runtime, r#"{"probe": "print"}"#, limits());
    let said = tracing::subscriber::with_default(subscriber, || answer(&policy));
    assert_eq!(said, "printed");
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("hello from python on stdout"), "{log}");
    assert!(log.contains("stream=\"stdout\""), "{log}");
    assert!(log.contains("hello from python on stderr"), "{log}");
    assert!(log.contains(&format!("plugin=\"{PROBE}\"")), "{log}");

    // One line allowed per call: the second is dropped and counted.
    let one_line = probe(
        &runtime,
        r#"{"probe": "print"}"#,
        Limits {
            log_calls_per_call_max: 1,
            ..limits()
        },
    );
    assert_eq!(answer(&one_line), "printed");
    let stats = one_line.stats().unwrap();
    assert_eq!(stats.counters.logs_dropped, 1, "{stats:?}");
}

#[test]
fn a_sleep_fails_the_call_instead_of_blocking() {
    let runtime = runtime();
    let policy = probe(&runtime, r#"{"probe": "sleep"}"#, limits());
    let decided = decide_first_attempt(&policy, 503);
    match &decided.source {
        Source::Fallback {
            failure: Failure::Trap(detail),
            ..
        } => assert!(detail.contains(levee_plugin::wasi::WOULD_BLOCK), "{detail}"),
        other => panic!("expected a failed call, got {other:?}"),
    }
}

#[test]
fn calls_on_a_tokio_worker_do_not_panic() {
    let runtime = runtime();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let policy = Arc::new(probe(&runtime, r#"{"probe": "print"}"#, limits()));
    let on_worker = policy.clone();
    let said = tokio
        .block_on(tokio.spawn(async move { answer(&on_worker) }))
        .unwrap();
    assert_eq!(said, "printed");
    let sleepy = Arc::new(probe(&runtime, r#"{"probe": "sleep"}"#, limits()));
    let source = tokio
        .block_on(tokio.spawn(async move { decide_first_attempt(&sleepy, 503).source }))
        .unwrap();
    assert!(matches!(source, Source::Fallback { .. }), "{source:?}");
}

#[test]
fn check_lists_the_wasi_imports_and_grants_nothing() {
    let runtime = runtime();
    let report = check::check(&runtime, &dist(PROBE), None).unwrap();
    assert!(
        report
            .wasi_imports
            .iter()
            .any(|name| name.starts_with("wasi:filesystem/"))
    );
    assert!(
        report
            .wasi_imports
            .iter()
            .any(|name| name.starts_with("wasi:sockets/"))
    );
    assert_eq!(report.wasi_granted, "nothing");
    let text = report.to_string();
    assert!(text.contains("granted:  nothing"), "{text}");
    let rust = check::check(&runtime, &dist("retry-backoff"), None).unwrap();
    assert!(rust.wasi_imports.is_empty());
    assert!(!rust.to_string().contains("granted:"));
}
