//! The configuration file (`Config::from_json`, what `Config::load` runs on
//! the file's text). Properties:
//! - an accepted config validates again, and every service in it validates
//!   alone (as the admin API checks a service);
//! - it round-trips: serialized (as snapshots and `GET /admin/services`
//!   write it) and parsed again, it is accepted and equal;
//! - every node URL it accepts is one the host can build a node from (the
//!   steps of `cluster::service::build_node`: scheme, authority, `Host`);
//! - a refusal is a parse or validation error (never a read error), each
//!   problem at a non-empty path with a message; a validation error's path
//!   starts at a top-level field, and a `services[i]` path names a service
//!   the text has.
#![no_main]

use levee_config::{Config, ConfigError, parse_node_url};
use levee_fuzz::{assert_named, config_fields, field_errors, head};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_json(text) {
        Ok(config) => accepted(&config),
        Err(error) => refused(text, &error),
    }
});

fn accepted(config: &Config) {
    config
        .validate()
        .expect("an accepted config validates again");
    for service in &config.services {
        service
            .validate()
            .expect("a service of an accepted config validates alone");
        assert!(service.nodes.len() <= levee_policy::limits::NODE_TABLE_MAX);
        for node in &service.nodes {
            buildable(&node.url);
        }
    }
    let written = serde_json::to_string(config).expect("a config serializes");
    let again = Config::from_json(&written)
        .unwrap_or_else(|error| panic!("the written config is refused: {error}\n{written}"));
    assert_eq!(&again, config, "the round trip changed it: {written}");
}

/// What `build_node` in the host does with an accepted URL.
fn buildable(url: &str) {
    let uri = parse_node_url(url).expect("an accepted node URL parses again");
    assert!(uri.scheme().is_some(), "{url:?} has no scheme");
    let authority = uri.authority().expect("an accepted node URL has a host");
    http::HeaderValue::from_str(authority.as_str())
        .unwrap_or_else(|_| panic!("{url:?}: the host is not a valid Host header"));
}

fn refused(text: &str, error: &ConfigError) {
    let errors = field_errors(error);
    assert!(!errors.is_empty(), "a refusal without a problem");
    assert_named(&errors);
    let ConfigError::Invalid(errors) = error else {
        return;
    };
    let value: serde_json::Value =
        serde_json::from_str(text).expect("validation only runs on JSON that parsed");
    for error in errors {
        assert!(
            config_fields()
                .iter()
                .any(|field| field == head(&error.path)),
            "a validation error outside the schema: {error}"
        );
        if let Some(index) = service_index(&error.path) {
            assert!(
                value["services"].get(index).is_some(),
                "an error about a service the text does not have: {error}"
            );
        }
    }
}

/// `i` of a `services[i]...` path.
fn service_index(path: &str) -> Option<usize> {
    let rest = path.strip_prefix("services[")?;
    rest[..rest.find(']')?].parse().ok()
}
