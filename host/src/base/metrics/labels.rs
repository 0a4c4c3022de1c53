//! Bounded label values: what a label may say, so that clients and hot
//! reloads cannot create time series without end (see the [`super`] doc).

use std::collections::BTreeSet;
use std::sync::Mutex;

/// HTTP methods as a label: the standard ones verbatim, anything a client
/// made up as `OTHER`.
pub fn method_label(method: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
    ];
    KNOWN
        .iter()
        .copied()
        .find(|known| *known == method)
        .unwrap_or("OTHER")
}

/// A set of label values that stops growing at `values_max`: later values
/// are reported as `other`. Used for plugin versions, which accumulate with
/// every hot reload.
pub struct BoundedLabels {
    seen: Mutex<BTreeSet<String>>,
    values_max: usize,
}

/// The label value reported once a [`BoundedLabels`] is full.
pub const OVERFLOW_LABEL: &str = "other";

impl BoundedLabels {
    pub const fn new(values_max: usize) -> Self {
        BoundedLabels {
            seen: Mutex::new(BTreeSet::new()),
            values_max,
        }
    }

    /// `value` if it is already known or there is room, else `other`.
    pub fn admit(&self, value: &str) -> String {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if seen.contains(value) {
            return value.to_string();
        }
        if seen.len() >= self.values_max {
            return OVERFLOW_LABEL.to_string();
        }
        seen.insert(value.to_string());
        debug_assert!(seen.len() <= self.values_max);
        value.to_string()
    }
}

/// Distinct plugin versions labelled individually over the process's life.
const PLUGIN_VERSION_LABELS_MAX: usize = 256;
static PLUGIN_VERSIONS: BoundedLabels = BoundedLabels::new(PLUGIN_VERSION_LABELS_MAX);

/// Hex digits of a plugin version (SHA-256) used in labels: enough to tell
/// versions apart at a glance, short enough for dashboards.
pub const VERSION_LABEL_CHARS: usize = 12;

/// A plugin version as a label: its first [`VERSION_LABEL_CHARS`] hex
/// digits, `other` past [`PLUGIN_VERSION_LABELS_MAX`] distinct versions.
pub(super) fn version_label(version: &str) -> String {
    let short = &version[..version.len().min(VERSION_LABEL_CHARS)];
    PLUGIN_VERSIONS.admit(short)
}

/// The `service` label of a data-plane request: the configured service it
/// names, else `_unknown` (client-chosen paths must not create time
/// series). Borrowed from the service: no string is built per request.
pub fn service_label(service: Option<&str>) -> &str {
    service.unwrap_or(UNKNOWN_SERVICE_LABEL)
}

/// The `service` label of a request that names no configured service.
pub const UNKNOWN_SERVICE_LABEL: &str = "_unknown";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_collapse_to_other() {
        assert_eq!(method_label("GET"), "GET");
        assert_eq!(method_label("BREW"), "OTHER");
        assert_eq!(method_label("get"), "OTHER");
    }

    #[test]
    fn requests_naming_no_service_share_one_label() {
        assert_eq!(service_label(Some("users")), "users");
        assert_eq!(service_label(None), UNKNOWN_SERVICE_LABEL);
    }

    #[test]
    fn bounded_labels_stop_growing() {
        let labels = BoundedLabels::new(2);
        assert_eq!(labels.admit("a"), "a");
        assert_eq!(labels.admit("b"), "b");
        assert_eq!(labels.admit("c"), OVERFLOW_LABEL);
        assert_eq!(labels.admit("a"), "a", "known values keep their label");
    }
}
