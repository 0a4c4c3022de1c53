//! The compiled-code cache: a restart does not recompile, and only entries
//! this install wrote itself are ever deserialized.

mod support;

use std::fs;
use std::path::Path;
use std::sync::Arc;

use levee_plugin::{CacheOutcome, Component, Runtime};
use support::*;

fn entry_of(runtime: &Runtime, version: &str) -> std::path::PathBuf {
    runtime.cache_entry_path(version).expect("cache enabled")
}

/// The zoo's `retry-fixed` plugin, compiled under its own name.
fn compile_retry_fixed(runtime: &Runtime) -> Arc<Component> {
    runtime
        .compile("retry-fixed", &dist("zoo/retry-fixed"))
        .unwrap()
}

/// Loads retry-backoff and checks it still decides through a plugin.
fn load_and_use(runtime: &Runtime) -> CacheOutcome {
    let component = compile_retry_backoff(runtime);
    let bound = component.bind(runtime, "{}", patient_limits()).unwrap();
    let decided = decide_first_attempt(&retry_policy_with(runtime, bound), 503);
    assert_plugin_answered(&decided.source);
    component.cache().clone()
}

fn fresh_runtime_outcome(data_dir: &Path) -> CacheOutcome {
    let runtime = cached_runtime(data_dir);
    load_and_use(&runtime)
}

/// A fresh runtime must reject the cache entry (`what` names it) for a
/// reason that contains `because`.
#[track_caller]
fn assert_rejected_on_restart(data_dir: &Path, what: &str, because: &str) {
    let CacheOutcome::Rejected { reason } = fresh_runtime_outcome(data_dir) else {
        panic!("{what} must be rejected");
    };
    assert!(reason.contains(because), "{reason}");
}

#[test]
fn restart_is_a_cache_hit() {
    let data_dir = tempfile::tempdir().unwrap();
    {
        let runtime = cached_runtime(data_dir.path());
        assert_eq!(load_and_use(&runtime), CacheOutcome::Miss);
        // Once unused, compiled code is freed; loading again reads the disk.
        let first = compile_retry_backoff(&runtime);
        assert_eq!(first.cache(), &CacheOutcome::Disk);
        // While a version is loaded, the in-memory cache answers.
        let again = compile_retry_backoff(&runtime);
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
        compile_retry_backoff(&runtime).version().to_string()
    };
    let runtime = cached_runtime(data_dir.path());
    let entry = entry_of(&runtime, &version);
    drop(runtime);

    // Flip one byte of the compiled code.
    let mut bytes = fs::read(&entry).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    fs::write(&entry, &bytes).unwrap();
    assert_rejected_on_restart(
        data_dir.path(),
        "a tampered entry",
        "authentication tag mismatch",
    );
    // It was recompiled and overwritten: the next start hits again.
    assert_eq!(fresh_runtime_outcome(data_dir.path()), CacheOutcome::Disk);

    // Truncated.
    let bytes = fs::read(&entry).unwrap();
    fs::write(&entry, &bytes[..bytes.len() - 100]).unwrap();
    assert_rejected_on_restart(data_dir.path(), "a truncated entry", "length mismatch");

    // Not ours at all: raw wasmtime output without levee's header.
    let runtime = cached_runtime(data_dir.path());
    let component = compile_retry_backoff(&runtime);
    drop(component);
    drop(runtime);
    fs::write(&entry, b"\x7fELF pretending to be compiled code").unwrap();
    assert_rejected_on_restart(data_dir.path(), "a foreign entry", "bad magic");
    assert_eq!(fresh_runtime_outcome(data_dir.path()), CacheOutcome::Disk);
}

#[test]
fn entries_from_another_install_are_rejected() {
    let data_dir = tempfile::tempdir().unwrap();
    fresh_runtime_outcome(data_dir.path());
    // A new secret means another install: its old entries are not trusted.
    fs::remove_file(data_dir.path().join("plugin-cache/secret.key")).unwrap();
    assert_rejected_on_restart(
        data_dir.path(),
        "an entry signed with another secret",
        "authentication tag mismatch",
    );
    assert_eq!(fresh_runtime_outcome(data_dir.path()), CacheOutcome::Disk);
}

#[test]
fn an_entry_moved_to_another_version_is_rejected() {
    let data_dir = tempfile::tempdir().unwrap();
    let runtime = cached_runtime(data_dir.path());
    let backoff = compile_retry_backoff(&runtime);
    let fixed = compile_retry_fixed(&runtime);
    let (backoff_entry, fixed_entry) = (
        entry_of(&runtime, backoff.version()),
        entry_of(&runtime, fixed.version()),
    );
    drop((backoff, fixed, runtime));
    // Swap in retry-backoff's (valid, authentic) code under retry-fixed's
    // name: the tag covers the version, so this must not load.
    fs::copy(&backoff_entry, &fixed_entry).unwrap();
    let runtime = cached_runtime(data_dir.path());
    let fixed = compile_retry_fixed(&runtime);
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
    let component = compile_retry_backoff(&runtime);
    assert_eq!(component.cache(), &CacheOutcome::Disabled);
}
