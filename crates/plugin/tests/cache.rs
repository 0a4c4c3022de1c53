//! The compiled-code cache: a restart does not recompile, and only entries
//! this install wrote itself are ever deserialized.

mod support;

use std::fs;
use std::path::Path;

use levee_plugin::{CacheOutcome, RetryPolicy, Runtime, Source};
use levee_policy::RetryBackoff;
use support::*;

fn entry_of(runtime: &Runtime, version: &str) -> std::path::PathBuf {
    runtime.cache_entry_path(version).expect("cache enabled")
}

/// Loads retry-backoff and checks it still decides through a plugin.
fn load_and_use(runtime: &Runtime) -> CacheOutcome {
    let component = runtime
        .compile("retry-backoff", &dist("retry-backoff"))
        .unwrap();
    let policy = RetryPolicy::new(runtime, RetryBackoff::default());
    policy
        .bind(Some(
            component.bind(runtime, "{}", patient_limits()).unwrap(),
        ))
        .unwrap();
    let decided = policy.decide(&get("/k"), &status("n1", 1, 503), &roomy_context());
    assert!(
        matches!(decided.source, Source::Plugin { .. }),
        "{:?}",
        decided.source
    );
    component.cache().clone()
}

fn fresh_runtime_outcome(data_dir: &Path) -> CacheOutcome {
    let runtime = cached_runtime(data_dir);
    load_and_use(&runtime)
}

#[test]
fn restart_is_a_cache_hit() {
    let data_dir = tempfile::tempdir().unwrap();
    {
        let runtime = cached_runtime(data_dir.path());
        assert_eq!(load_and_use(&runtime), CacheOutcome::Miss);
        // Once unused, compiled code is freed; loading again reads the disk.
        let first = runtime
            .compile("retry-backoff", &dist("retry-backoff"))
            .unwrap();
        assert_eq!(first.cache(), &CacheOutcome::Disk);
        // While a version is loaded, the in-memory cache answers.
        let again = runtime
            .compile("retry-backoff", &dist("retry-backoff"))
            .unwrap();
        assert_eq!(again.cache(), &CacheOutcome::Memory);
        assert_eq!(again.compile_ms(), 0.0);
    }
    // "Restart": a new runtime (new engine) on the same directory.
    assert_eq!(fresh_runtime_outcome(data_dir.path()), CacheOutcome::Disk);
    assert_eq!(fresh_runtime_outcome(data_dir.path()), CacheOutcome::Disk);

    let cache_dir = data_dir.path().join("plugin-cache");
    let entries: Vec<_> = fs::read_dir(&cache_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".cwasm"))
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
}

#[test]
fn tampered_entries_are_rejected_and_rewritten() {
    let data_dir = tempfile::tempdir().unwrap();
    let version = {
        let runtime = cached_runtime(data_dir.path());
        load_and_use(&runtime);
        runtime
            .compile("retry-backoff", &dist("retry-backoff"))
            .unwrap()
            .version()
            .to_string()
    };
    let runtime = cached_runtime(data_dir.path());
    let entry = entry_of(&runtime, &version);
    drop(runtime);

    // Flip one byte of the compiled code.
    let mut bytes = fs::read(&entry).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    fs::write(&entry, &bytes).unwrap();
    let CacheOutcome::Rejected { reason } = fresh_runtime_outcome(data_dir.path()) else {
        panic!("a tampered entry must be rejected");
    };
    assert!(reason.contains("authentication tag mismatch"), "{reason}");
    // It was recompiled and overwritten: the next start hits again.
    assert_eq!(fresh_runtime_outcome(data_dir.path()), CacheOutcome::Disk);

    // Truncated.
    let bytes = fs::read(&entry).unwrap();
    fs::write(&entry, &bytes[..bytes.len() - 100]).unwrap();
    let CacheOutcome::Rejected { reason } = fresh_runtime_outcome(data_dir.path()) else {
        panic!("a truncated entry must be rejected");
    };
    assert!(reason.contains("length mismatch"), "{reason}");

    // Not ours at all: raw wasmtime output without levee's header.
    let runtime = cached_runtime(data_dir.path());
    let component = runtime
        .compile("retry-backoff", &dist("retry-backoff"))
        .unwrap();
    drop(component);
    drop(runtime);
    fs::write(&entry, b"\x7fELF pretending to be compiled code").unwrap();
    let CacheOutcome::Rejected { reason } = fresh_runtime_outcome(data_dir.path()) else {
        panic!("a foreign entry must be rejected");
    };
    assert!(reason.contains("bad magic"), "{reason}");
    assert_eq!(fresh_runtime_outcome(data_dir.path()), CacheOutcome::Disk);
}

#[test]
fn entries_from_another_install_are_rejected() {
    let data_dir = tempfile::tempdir().unwrap();
    fresh_runtime_outcome(data_dir.path());
    // A new secret means another install: its old entries are not trusted.
    fs::remove_file(data_dir.path().join("plugin-cache/secret.key")).unwrap();
    let CacheOutcome::Rejected { reason } = fresh_runtime_outcome(data_dir.path()) else {
        panic!("an entry signed with another secret must be rejected");
    };
    assert!(reason.contains("authentication tag mismatch"), "{reason}");
    assert_eq!(fresh_runtime_outcome(data_dir.path()), CacheOutcome::Disk);
}

#[test]
fn an_entry_moved_to_another_version_is_rejected() {
    let data_dir = tempfile::tempdir().unwrap();
    let runtime = cached_runtime(data_dir.path());
    let backoff = runtime
        .compile("retry-backoff", &dist("retry-backoff"))
        .unwrap();
    let fixed = runtime
        .compile("retry-fixed", &dist("zoo/retry-fixed"))
        .unwrap();
    let (backoff_entry, fixed_entry) = (
        entry_of(&runtime, backoff.version()),
        entry_of(&runtime, fixed.version()),
    );
    drop((backoff, fixed, runtime));
    // Swap in retry-backoff's (valid, authentic) code under retry-fixed's
    // name: the tag covers the version, so this must not load.
    fs::copy(&backoff_entry, &fixed_entry).unwrap();
    let runtime = cached_runtime(data_dir.path());
    let fixed = runtime
        .compile("retry-fixed", &dist("zoo/retry-fixed"))
        .unwrap();
    assert!(
        matches!(fixed.cache(), CacheOutcome::Rejected { .. }),
        "{:?}",
        fixed.cache()
    );
}

#[test]
fn without_a_cache_dir_nothing_is_written() {
    let runtime = seeded_runtime(SEED);
    assert!(runtime.cache_dir().is_none());
    let component = runtime
        .compile("retry-backoff", &dist("retry-backoff"))
        .unwrap();
    assert_eq!(component.cache(), &CacheOutcome::Disabled);
}
