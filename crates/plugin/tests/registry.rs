//! The registry (names, versions, status, rollback) and `check`.

mod support;

use levee_plugin::registry::FAILED_NAMES_MAX;
use levee_plugin::{LoadError, PluginStatus, PolicyKind, Registry, RegistryError, Source, check};
use support::*;

#[test]
fn install_fail_rollback_remove() {
    let registry = Registry::new(seeded_runtime(SEED));
    let backoff = registry.install("retry", &dist("retry-backoff")).unwrap();
    let info = registry.info("retry").unwrap();
    assert_eq!(info.status, PluginStatus::Active);
    assert_eq!(info.current.as_ref().unwrap().version, backoff.version());
    assert_eq!(info.current.as_ref().unwrap().kind, PolicyKind::Retry);

    // A bad upload is refused, recorded, and the current version stays.
    let error = registry.install("retry", b"not wasm").unwrap_err();
    assert!(
        matches!(error, RegistryError::Load(LoadError::NotAComponent(_))),
        "{error}"
    );
    let info = registry.info("retry").unwrap();
    assert_eq!(info.status, PluginStatus::Failed);
    assert!(
        info.last_error
            .unwrap()
            .starts_with("not a WebAssembly component")
    );
    assert_eq!(registry.get("retry").unwrap().version(), backoff.version());

    // A new version: the old one becomes history.
    let fixed = registry.install("retry", &dist("zoo/retry-fixed")).unwrap();
    let info = registry.info("retry").unwrap();
    assert_eq!(info.status, PluginStatus::Active);
    assert_eq!(info.previous_versions, vec![backoff.version().to_string()]);
    assert_eq!(
        registry
            .get_version("retry", backoff.version())
            .unwrap()
            .version(),
        backoff.version()
    );

    // Re-installing the current version changes nothing.
    registry.install("retry", &dist("zoo/retry-fixed")).unwrap();
    assert_eq!(registry.info("retry").unwrap().previous_versions.len(), 1);

    let rolled_back = registry.rollback("retry").unwrap();
    assert_eq!(rolled_back.version(), backoff.version());
    assert_eq!(registry.get("retry").unwrap().version(), backoff.version());
    assert!(matches!(
        registry.rollback("retry"),
        Err(RegistryError::NoPreviousVersion(_))
    ));
    assert_ne!(fixed.version(), backoff.version());

    assert!(registry.remove("retry").unwrap().is_some());
    assert!(registry.get("retry").is_none());
    assert!(matches!(
        registry.remove("retry"),
        Err(RegistryError::NotFound(_))
    ));
    assert!(matches!(
        registry.rollback("retry"),
        Err(RegistryError::NotFound(_))
    ));
}

#[test]
fn names_kinds_history_and_capacity_are_bounded() {
    let registry = Registry::with_bounds(seeded_runtime(SEED), 1, 2);
    assert!(matches!(
        registry.install("../etc", &dist("retry-backoff")),
        Err(RegistryError::InvalidName(_))
    ));
    let error = registry
        .install_as("ckpt", &dist("zoo/wrong-world"), PolicyKind::Retry)
        .unwrap_err();
    assert!(
        error.to_string().starts_with("expected world retry-policy"),
        "{error}"
    );
    // A name that never loaded is listed as failed, with its error, and
    // holds no slot.
    let info = registry.info("ckpt").unwrap();
    assert_eq!(
        (info.status, info.current.is_none()),
        (PluginStatus::Failed, true)
    );

    registry.install("a", &dist("retry-backoff")).unwrap();
    registry.install("b", &dist("retry-backoff")).unwrap();
    assert!(matches!(
        registry.install("c", &dist("retry-backoff")),
        Err(RegistryError::Full { max: 2 })
    ));
    // A failed name that loads later needs a slot like any other.
    assert!(matches!(
        registry.install("ckpt", &dist("zoo/wrong-world")),
        Err(RegistryError::Full { max: 2 })
    ));
    registry.remove("b").unwrap();

    registry.install("ckpt", &dist("zoo/wrong-world")).unwrap();
    registry
        .install("ckpt", &dist("checkpoint-interval"))
        .unwrap();
    registry.install("ckpt", &dist("zoo/wrong-world")).unwrap();
    assert_eq!(
        registry.info("ckpt").unwrap().previous_versions.len(),
        1,
        "history_max is 1"
    );
    let names: Vec<String> = registry.list().into_iter().map(|p| p.name).collect();
    assert_eq!(names, vec!["a".to_string(), "ckpt".to_string()]);
}

#[test]
fn failed_loads_take_no_slot_and_are_bounded_apart() {
    let registry = Registry::with_bounds(seeded_runtime(SEED), 1, 1);
    let names: Vec<String> = (0..FAILED_NAMES_MAX + 10)
        .map(|i| format!("bad{i:03}"))
        .collect();
    for name in &names {
        assert!(registry.install(name, b"not wasm").is_err());
    }
    assert_eq!(registry.len(), 0, "no slot taken");
    let listed: Vec<String> = registry.list().into_iter().map(|p| p.name).collect();
    assert_eq!(
        listed,
        names[10..].to_vec(),
        "at most {FAILED_NAMES_MAX} failed names, the oldest forgotten first"
    );
    registry.install("good", &dist("retry-backoff")).unwrap();
    assert_eq!(registry.len(), 1);
    assert_eq!(registry.info("good").unwrap().status, PluginStatus::Active);
    // A failure of a loaded plugin updates its entry, evicting nothing.
    registry.record_failure("good", "refused");
    assert_eq!(registry.info("good").unwrap().status, PluginStatus::Failed);
    assert_eq!(registry.list().len(), FAILED_NAMES_MAX + 1);
}

#[test]
fn quarantine_shows_in_the_status_and_rollback_clears_it() {
    let runtime = seeded_runtime(SEED);
    let registry = Registry::new(runtime.clone());
    registry.install("retry", &dist("retry-backoff")).unwrap();
    let panicky = registry.install("retry", &dist("zoo/panic")).unwrap();
    let bound = panicky.bind(&runtime, "{}", quarantine_after(1)).unwrap();
    let policy = retry_policy_with(&runtime, bound);
    let decided = decide_first_attempt(&policy, 503);
    assert!(matches!(decided.source, Source::Fallback { .. }));
    let info = registry.info("retry").unwrap();
    assert_eq!(info.status, PluginStatus::Quarantined);
    assert!(
        info.current
            .unwrap()
            .quarantine_reason
            .unwrap()
            .contains("trapped")
    );

    let previous = registry.rollback("retry").unwrap();
    assert!(!previous.is_quarantined());
    assert_eq!(registry.info("retry").unwrap().status, PluginStatus::Active);
}

#[test]
fn check_reports_world_size_and_config() {
    let runtime = seeded_runtime(SEED);
    let report = check(
        &runtime,
        &dist("retry-backoff"),
        Some(r#"{"max_attempts": 4}"#),
    )
    .unwrap();
    assert_eq!(report.world, PolicyKind::Retry);
    assert_eq!(report.exports, vec!["levee:policy/retry@0.2.0".to_string()]);
    assert!(
        report
            .imports
            .iter()
            .all(|name| name.starts_with("levee:policy/"))
    );
    assert!(report.config_accepted);
    assert_eq!(report.version.len(), 64);
    let text = report.to_string();
    assert!(
        text.starts_with("ok: implements world retry-policy"),
        "{text}"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["world"], "retry-policy");

    let without_config = check(&runtime, &dist("route-affinity"), None).unwrap();
    assert_eq!(without_config.world, PolicyKind::Routing);
    assert!(!without_config.config_accepted);

    let error = check(
        &runtime,
        &dist("retry-backoff"),
        Some(r#"{"max_attempts": 99}"#),
    )
    .unwrap_err();
    assert!(
        matches!(error, LoadError::ConfigRejected(ref reason) if reason.contains("max_attempts")),
        "{error}"
    );
    let error = check(&runtime, b"", None).unwrap_err();
    assert_eq!(
        error.to_string(),
        "not a WebAssembly component: the input is empty"
    );
}
