//! Every Prometheus metric levee exports: names, labels, buckets and the
//! helper functions the rest of the host calls to record them.
//!
//! Why one module: a metric's name is a public API (dashboards and alerts
//! are written against it), so it must be defined once, spelled once and
//! documented once. Other modules never call the `metrics` macros directly;
//! they call the small functions in [`record`], which also keep label values
//! bounded.
//!
//! Why bounded labels: every distinct label value is a new time series that
//! lives for the life of the process. Services and nodes come from the
//! operator's configuration (bounded by the config limits), but HTTP methods
//! come from clients and plugin versions accumulate with every hot reload, so
//! both are squeezed through [`method_label`] and [`BoundedLabels`].
//!
//! The recorder is installed once per process ([`install`]); a second call
//! (tests build several `AppState`s in one process) reuses the first handle.
//! Histograms buffer samples until drained, so [`spawn_upkeep`] drains them
//! periodically even when nobody scrapes.
//!
//! # Where the code is
//!
//! - [`names`]: the family names, their descriptions, [`ALL_FAMILIES`];
//! - [`labels`]: bounded label values (methods, plugin versions, services);
//! - [`record`]: the recording functions, the only way other modules touch
//!   metrics;
//! - [`handles`]: the registered handles the request path's recording
//!   functions reuse, so that a sample costs no allocation;
//! - [`installer`]: the recorder, its histogram buckets, rendering and
//!   upkeep.
//!
//! Everything is re-exported here: callers write `crate::base::metrics::X`.

pub mod handles;
pub mod installer;
pub mod labels;
pub mod names;
pub mod record;

pub use installer::{install, render, spawn_upkeep};
pub use labels::service_label;
pub use record::*;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn recorded_families_render() {
        install(); // Before recording: samples sent to no recorder are lost.
        request_finished("svc", "GET", 200, Duration::from_millis(3));
        let source = levee_plugin::Source::Plugin {
            name: "retry".into(),
            version: "0123456789abcdef0123".into(),
        };
        policy_decided(&source, Duration::from_micros(20));
        log_fsync_batch(4);
        let text = render();
        assert!(
            text.contains("levee_requests_total{service=\"svc\",method=\"GET\",status=\"200\"}"),
            "{text}"
        );
        assert!(text.contains("levee_plugin_call_duration_seconds_bucket{plugin=\"retry\",version=\"0123456789ab\""), "{text}");
        assert!(
            text.contains("levee_log_fsync_batch_records_bucket"),
            "{text}"
        );
    }

    #[test]
    fn cached_handles_keep_counting() {
        install();
        for _ in 0..3 {
            request_finished("cached-svc", "GET", 200, Duration::from_millis(1));
            attempt_sent("cached-svc", "node-a");
        }
        request_finished("cached-svc", "GET", 503, Duration::from_millis(1));
        let text = render();
        for line in [
            "levee_requests_total{service=\"cached-svc\",method=\"GET\",status=\"200\"} 3",
            "levee_requests_total{service=\"cached-svc\",method=\"GET\",status=\"503\"} 1",
            "levee_upstream_attempts_total{service=\"cached-svc\",node=\"node-a\"} 3",
            "levee_request_duration_seconds_count{service=\"cached-svc\",method=\"GET\"} 4",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
    }
}
