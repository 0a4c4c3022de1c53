//! A policy binding's `config` (`services[].policies.*.config`, the
//! top-level `checkpoint.config`, `levee plugin check --config`): the text
//! the native policies parse (`levee_policy::config::parse` + `validate`)
//! and a plugin's `configure` receives. Each input goes through all three
//! native policies. Properties:
//! - empty text and `null` are the defaults;
//! - `from_json` (what the host calls) refuses exactly what `parse` or
//!   `validate` refuses, with the same message;
//! - a field error names a field: a validation error one of the policy's
//!   own fields, a parse error a key of the input object, cut to 64
//!   characters (the name is echoed back, so it is bounded).
#![no_main]

use levee_policy::config::parse;
use levee_policy::{
    CheckpointConfig, CheckpointInterval, ConfigError, RetryBackoff, RetryConfig, RouteAffinity,
    RoutingConfig,
};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;

/// Longest field name an error echoes, in characters (then `…`).
const FIELD_CHARS_MAX: usize = 64;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check::<RetryConfig>(
        text,
        &[
            "max_attempts",
            "base_delay_ms",
            "max_delay_ms",
            "retry_statuses",
            "retry_after_max_ms",
            "target",
        ],
        RetryConfig::validate,
        |t| RetryBackoff::from_json(t).map(drop),
    );
    check::<RoutingConfig>(
        text,
        &["prefer_zone", "hedge_delay_ms"],
        RoutingConfig::validate,
        |t| RouteAffinity::from_json(t).map(drop),
    );
    check::<CheckpointConfig>(
        text,
        &[
            "every_records",
            "every_bytes",
            "every_ms",
            "compact_reclaimable_bytes",
        ],
        CheckpointConfig::validate,
        |t| CheckpointInterval::from_json(t).map(drop),
    );
});

fn check<T: DeserializeOwned + Default + PartialEq + std::fmt::Debug>(
    text: &str,
    fields: &[&str],
    validate: fn(&T) -> Result<(), ConfigError>,
    from_json: fn(&str) -> Result<(), String>,
) {
    let parsed = parse::<T>(text);
    // "All whitespace" is Rust's (as `parse` checks it); around `null` only
    // JSON's own whitespace is allowed.
    let json_whitespace: &[char] = &[' ', '\t', '\n', '\r'];
    if text.trim().is_empty() || text.trim_matches(json_whitespace) == "null" {
        assert_eq!(parsed.as_ref().ok(), Some(&T::default()), "{text:?}");
    }
    let refusal = match parsed {
        Ok(config) => match validate(&config) {
            Ok(()) => {
                from_json(text).expect("a config that parses and validates is accepted");
                return;
            }
            Err(error) => {
                let named = matches!(&error, ConfigError::Field { field, .. } if fields.contains(&field.as_str()));
                assert!(named, "a validation error about no field: {error:?}");
                error
            }
        },
        Err(error) => {
            if let ConfigError::Field { field, .. } = &error {
                assert!(is_input_key(text, field), "{field:?} is no key of {text:?}");
            }
            error
        }
    };
    assert_eq!(from_json(text), Err(refusal.to_string()));
}

/// Whether `field` is a key of the input object, as an error shows it.
fn is_input_key(text: &str, field: &str) -> bool {
    let Ok(serde_json::Value::Object(object)) = serde_json::from_str(text) else {
        return false;
    };
    object.keys().any(|key| shown(key) == field)
}

fn shown(key: &str) -> String {
    if key.chars().count() <= FIELD_CHARS_MAX {
        return key.to_string();
    }
    let mut short: String = key.chars().take(FIELD_CHARS_MAX).collect();
    short.push('…');
    short
}
