//! Names and addresses from outside: the `{name}` of
//! `/admin/services/{name}` and `/admin/plugins/{name}` (checked before the
//! body is read; a plugin name becomes a file name in the plugin store) and
//! a node's `url`. Properties:
//! - a name is accepted exactly when it is 1 to 64 bytes of `[a-z0-9_-]`
//!   not starting with `_` or `-` (an independent restatement of the rule),
//!   so an accepted name is one path component (no `/`, no `..`);
//! - an accepted URL is `http://host:port` with nothing after the optional
//!   `/`, shown and parsed again it is the same URI, and its authority is a
//!   valid `Host` header (what the host builds from it).
#![no_main]

use levee_config::{
    SERVICE_NAME_BYTES_MAX, parse_node_url, validate_plugin_name, validate_service_name,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    names(text);
    url(text);
});

fn names(text: &str) {
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-';
    let expected = (1..=SERVICE_NAME_BYTES_MAX).contains(&text.len())
        && text.bytes().all(allowed)
        && !text.starts_with(['_', '-']);
    assert_eq!(validate_service_name(text).is_ok(), expected, "{text:?}");
    assert_eq!(validate_plugin_name(text).is_ok(), expected, "{text:?}");
    if expected {
        assert!(!text.contains(['/', '\\', '.', '\0']), "{text:?}");
    }
}

fn url(text: &str) {
    let Ok(uri) = parse_node_url(text) else {
        return;
    };
    // http:// or https:// (TLS per upstream_tls), nothing else.
    assert!(
        matches!(uri.scheme_str(), Some("http" | "https")),
        "{text:?}"
    );
    assert!(matches!(uri.path(), "" | "/"), "{text:?}");
    assert!(uri.query().is_none(), "{text:?}");
    let authority = uri.authority().expect("an accepted URL has a host");
    assert!(authority.port_u16().is_some(), "{text:?}");
    assert!(!authority.host().is_empty(), "{text:?}: an empty host");
    http::HeaderValue::from_str(authority.as_str())
        .unwrap_or_else(|_| panic!("{text:?}: the host is not a valid Host header"));
    let again = parse_node_url(&uri.to_string()).expect("a shown URL parses again");
    assert_eq!(again, uri, "{text:?}");
}
