//! `x-levee-policy-version`: which retry policy version decided a request's
//! retries, on the response.
//!
//! Why: hot reload promises that a request is decided by exactly one plugin
//! version, the one it loaded, never a mix of an old and a new instance.
//! That is only checkable from outside if the response says who decided.
//! The header is set on responses whose request consulted the retry policy
//! at least once; its value is the deciding plugin version (SHA-256 hex),
//! or `native` (no plugin bound), `fallback:<why>` (the plugin failed, e.g.
//! `fallback:timeout`, and the native policy answered) or `quarantined`. If one request's retries were
//! decided by several versions (a swap between two of its retries), every
//! one is listed, comma-separated, in the order they decided.

use std::sync::Mutex;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use levee_plugin::Source;

/// The response header.
pub static X_LEVEE_POLICY_VERSION: HeaderName = HeaderName::from_static("x-levee-policy-version");
/// Distinct deciders listed at most (a request has at most 10 attempts).
const DECIDERS_MAX: usize = 10;

/// The deciders of one request's retry decisions.
#[derive(Debug, Default)]
pub struct PolicyVersions {
    // A request's retries are decided one after another, never concurrently,
    // so the lock is never contended.
    seen: Mutex<Vec<String>>,
}

impl PolicyVersions {
    /// Records who answered one retry decision.
    pub fn note(&self, source: &Source) {
        let decider = match source {
            Source::Plugin { version, .. } => version.to_string(),
            Source::Fallback { failure, .. } => format!("fallback:{}", failure.label()),
            other => other.label().to_string(),
        };
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !seen.contains(&decider) && seen.len() < DECIDERS_MAX {
            seen.push(decider);
        }
    }

    /// Sets the header if any decision was recorded.
    pub fn write(&self, headers: &mut HeaderMap) {
        let seen = self
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if seen.is_empty() {
            return;
        }
        if let Ok(value) = HeaderValue::from_str(&seen.join(",")) {
            headers.insert(X_LEVEE_POLICY_VERSION.clone(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_each_decider_once_in_order() {
        let versions = PolicyVersions::default();
        let mut headers = HeaderMap::new();
        versions.write(&mut headers);
        assert!(headers.is_empty(), "no decision, no header");
        versions.note(&Source::Plugin {
            name: "r".into(),
            version: "aa".into(),
        });
        versions.note(&Source::Plugin {
            name: "r".into(),
            version: "aa".into(),
        });
        versions.note(&Source::Native);
        versions.write(&mut headers);
        assert_eq!(headers[&X_LEVEE_POLICY_VERSION], "aa,native");
    }
}
