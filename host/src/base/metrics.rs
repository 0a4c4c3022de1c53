//! Every Prometheus metric levee exports: names, labels, buckets and the
//! helper functions the rest of the host calls to record them.
//!
//! Why one file: a metric's name is a public API (dashboards and alerts are
//! written against it), so it must be defined once, spelled once and
//! documented once. Other modules never call the `metrics` macros directly;
//! they call the small functions below, which also keep label values bounded.
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

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::collections::BTreeSet;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

// ---- Data plane -------------------------------------------------------------

/// Counter: client requests answered, by `service`, `method`, `status`.
pub const REQUESTS_TOTAL: &str = "levee_requests_total";
/// Histogram: client request latency, by `service`, `method`.
pub const REQUEST_DURATION_SECONDS: &str = "levee_request_duration_seconds";
/// Counter: attempts sent to an upstream node, by `service`, `node`.
pub const ATTEMPTS_TOTAL: &str = "levee_upstream_attempts_total";
/// Counter: retries (attempts after the first), by `service`.
pub const RETRIES_TOTAL: &str = "levee_retries_total";
/// Counter: retries refused because the retry budget was empty, by `service`.
pub const BUDGET_EXHAUSTED_TOTAL: &str = "levee_retry_budget_exhausted_total";
/// Counter: hedged attempts sent, by `service`.
pub const HEDGES_TOTAL: &str = "levee_hedges_total";
/// Counter: passive outlier ejections, by `service`, `node`.
pub const EJECTIONS_TOTAL: &str = "levee_node_ejections_total";
/// Gauge: undelivered hinted writes, by `service`, `node`.
pub const HINT_BACKLOG: &str = "levee_hint_backlog";
/// Counter: hinted writes delivered by the handoff, by `service`, `node`.
pub const HINTS_DELIVERED_TOTAL: &str = "levee_hints_delivered_total";
/// Counter: hinted writes dropped (never to be delivered), by `service`,
/// `node`, `reason` (`age`, `budget`, `rejected`, `undecodable`).
pub const HINTS_DROPPED_TOTAL: &str = "levee_hints_dropped_total";

// ---- Plugins ----------------------------------------------------------------

/// Counter: plugin calls, by `plugin`, `version`.
pub const PLUGIN_CALLS_TOTAL: &str = "levee_plugin_calls_total";
/// Histogram: plugin call latency, by `plugin`, `version`.
pub const PLUGIN_CALL_DURATION_SECONDS: &str = "levee_plugin_call_duration_seconds";
/// Counter: calls answered by the native fallback, by `plugin`, `version`.
pub const PLUGIN_FALLBACKS_TOTAL: &str = "levee_plugin_fallbacks_total";
/// Counter: calls that trapped (or ran out of fuel/memory), by `plugin`, `version`.
pub const PLUGIN_TRAPS_TOTAL: &str = "levee_plugin_traps_total";
/// Counter: calls not made because the version is quarantined (the native
/// policy answered), by `plugin`, `version`.
pub const PLUGIN_QUARANTINED_CALLS_TOTAL: &str = "levee_plugin_quarantined_calls_total";
/// Gauge: 1 while the plugin's current version is quarantined, by `plugin`, `version`.
pub const PLUGIN_QUARANTINED: &str = "levee_plugin_quarantined";
/// Counter: load attempts (upload, drop-in, rollback, restart), by `plugin`, `source`, `result`.
pub const PLUGIN_LOADS_TOTAL: &str = "levee_plugin_loads_total";

// ---- Log --------------------------------------------------------------------

/// Histogram: time from `append` to durable, in seconds.
pub const LOG_APPEND_DURATION_SECONDS: &str = "levee_log_append_duration_seconds";
/// Histogram: records made durable by one fsync (group commit size).
pub const LOG_FSYNC_BATCH_RECORDS: &str = "levee_log_fsync_batch_records";
/// Gauge: last LSN appended.
pub const LOG_LAST_LSN: &str = "levee_log_last_lsn";
/// Gauge: bytes of all live segments.
pub const LOG_BYTES: &str = "levee_log_bytes";
/// Counter: checkpoints written, by `trigger` (`policy`, `admin`, `shutdown`).
pub const CHECKPOINTS_TOTAL: &str = "levee_checkpoints_total";

// ---- Control plane ----------------------------------------------------------

/// Counter: admin requests refused for a missing or wrong token.
pub const ADMIN_AUTH_FAILURES_TOTAL: &str = "levee_admin_auth_failures_total";

/// Every family name, for documentation and for the `/metrics` test.
pub const ALL_FAMILIES: &[&str] = &[
    REQUESTS_TOTAL,
    REQUEST_DURATION_SECONDS,
    ATTEMPTS_TOTAL,
    RETRIES_TOTAL,
    BUDGET_EXHAUSTED_TOTAL,
    HEDGES_TOTAL,
    EJECTIONS_TOTAL,
    HINT_BACKLOG,
    PLUGIN_CALLS_TOTAL,
    PLUGIN_CALL_DURATION_SECONDS,
    PLUGIN_FALLBACKS_TOTAL,
    PLUGIN_TRAPS_TOTAL,
    PLUGIN_QUARANTINED_CALLS_TOTAL,
    PLUGIN_QUARANTINED,
    PLUGIN_LOADS_TOTAL,
    LOG_APPEND_DURATION_SECONDS,
    LOG_FSYNC_BATCH_RECORDS,
    LOG_LAST_LSN,
    LOG_BYTES,
    CHECKPOINTS_TOTAL,
    ADMIN_AUTH_FAILURES_TOTAL,
];

/// Latency buckets for request-sized work: 0.5 ms .. 10 s.
const REQUEST_BUCKETS_SECONDS: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Plugin calls are fenced at a few milliseconds: 5 µs .. 10 ms.
const PLUGIN_CALL_BUCKETS_SECONDS: &[f64] = &[
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
    0.01,
];
/// Group-commit sizes: 1 .. 1024 records.
const BATCH_BUCKETS_RECORDS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// Histogram samples are buffered until drained; drain at least this often.
const UPKEEP_INTERVAL_MS: u64 = 5_000;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once) and returns its
/// handle. Later calls return the same handle. Call it at start-up, before
/// any traffic: samples recorded before a recorder exists are dropped.
pub fn install() -> PrometheusHandle {
    HANDLE.get_or_init(build_and_install).clone()
}

fn build_and_install() -> PrometheusHandle {
    let recorder = builder().build_recorder();
    let handle = recorder.handle();
    if metrics::set_global_recorder(recorder).is_err() {
        // Someone else installed a recorder first (an embedding program);
        // ours still renders, just empty. Say so instead of failing.
        tracing::warn!("a global metrics recorder was already installed; /metrics will be empty");
    }
    describe_all();
    handle
}

fn builder() -> PrometheusBuilder {
    let with_buckets = |builder: PrometheusBuilder, name: &str, buckets: &[f64]| {
        builder
            .set_buckets_for_metric(Matcher::Full(name.to_string()), buckets)
            .expect("bucket lists are non-empty constants")
    };
    let builder = PrometheusBuilder::new();
    let builder = with_buckets(builder, REQUEST_DURATION_SECONDS, REQUEST_BUCKETS_SECONDS);
    let builder = with_buckets(
        builder,
        LOG_APPEND_DURATION_SECONDS,
        REQUEST_BUCKETS_SECONDS,
    );
    let builder = with_buckets(
        builder,
        PLUGIN_CALL_DURATION_SECONDS,
        PLUGIN_CALL_BUCKETS_SECONDS,
    );
    with_buckets(builder, LOG_FSYNC_BATCH_RECORDS, BATCH_BUCKETS_RECORDS)
}

fn describe_all() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        REQUESTS_TOTAL,
        "Client requests answered, by service, method and status."
    );
    describe_histogram!(
        REQUEST_DURATION_SECONDS,
        metrics::Unit::Seconds,
        "Client request latency."
    );
    describe_counter!(ATTEMPTS_TOTAL, "Attempts sent to upstream nodes.");
    describe_counter!(RETRIES_TOTAL, "Retries (attempts after the first).");
    describe_counter!(
        BUDGET_EXHAUSTED_TOTAL,
        "Retries refused by an empty retry budget."
    );
    describe_counter!(HEDGES_TOTAL, "Hedged attempts sent.");
    describe_counter!(
        EJECTIONS_TOTAL,
        "Passive outlier ejections of upstream nodes."
    );
    describe_gauge!(HINT_BACKLOG, "Hinted writes not yet delivered to a node.");
    describe_counter!(
        HINTS_DELIVERED_TOTAL,
        "Hinted writes delivered by the handoff."
    );
    describe_counter!(
        HINTS_DROPPED_TOTAL,
        "Hinted writes dropped past their limits, never delivered."
    );
    describe_counter!(PLUGIN_CALLS_TOTAL, "Policy plugin calls.");
    describe_histogram!(
        PLUGIN_CALL_DURATION_SECONDS,
        metrics::Unit::Seconds,
        "Policy plugin call latency."
    );
    describe_counter!(
        PLUGIN_FALLBACKS_TOTAL,
        "Plugin calls answered by the native policy instead."
    );
    describe_counter!(
        PLUGIN_TRAPS_TOTAL,
        "Plugin calls that trapped or exceeded their fences."
    );
    describe_counter!(
        PLUGIN_QUARANTINED_CALLS_TOTAL,
        "Calls answered natively because the plugin is quarantined."
    );
    describe_gauge!(
        PLUGIN_QUARANTINED,
        "1 while the plugin's current version is quarantined."
    );
    describe_counter!(
        PLUGIN_LOADS_TOTAL,
        "Plugin load attempts, by source and result."
    );
    describe_histogram!(
        LOG_APPEND_DURATION_SECONDS,
        metrics::Unit::Seconds,
        "Log append to durable."
    );
    describe_histogram!(LOG_FSYNC_BATCH_RECORDS, "Records made durable per fsync.");
    describe_gauge!(LOG_LAST_LSN, "Last LSN appended to the log.");
    describe_gauge!(
        LOG_BYTES,
        metrics::Unit::Bytes,
        "Bytes of live log segments."
    );
    describe_counter!(CHECKPOINTS_TOTAL, "Checkpoints written, by trigger.");
    describe_counter!(
        ADMIN_AUTH_FAILURES_TOTAL,
        "Admin requests refused for a missing or wrong token."
    );
}

/// The current metrics in Prometheus text format (installs on first use).
pub fn render() -> String {
    install().render()
}

/// Drains histogram buffers periodically so memory stays bounded between
/// scrapes. Ends when `stop` resolves.
pub fn spawn_upkeep(
    stop: impl Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let handle = install();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_millis(UPKEEP_INTERVAL_MS));
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = ticker.tick() => handle.run_upkeep(),
                _ = &mut stop => return,
            }
        }
    })
}

// ---- Bounded label values ---------------------------------------------------

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

fn version_label(version: &str) -> String {
    let short = &version[..version.len().min(VERSION_LABEL_CHARS)];
    PLUGIN_VERSIONS.admit(short)
}

// ---- Recording helpers (the only way other modules touch metrics) ----------

/// A client request finished with `status` after `elapsed`.
pub fn request_finished(service: &str, method: &str, status: u16, elapsed: Duration) {
    let method = method_label(method);
    counter!(REQUESTS_TOTAL, "service" => service.to_string(), "method" => method, "status" => status.to_string())
        .increment(1);
    histogram!(REQUEST_DURATION_SECONDS, "service" => service.to_string(), "method" => method)
        .record(elapsed.as_secs_f64());
}

/// An attempt was sent to `node`.
pub fn attempt_sent(service: &str, node: &str) {
    counter!(ATTEMPTS_TOTAL, "service" => service.to_string(), "node" => node.to_string())
        .increment(1);
}

/// A retry was sent.
pub fn retry_sent(service: &str) {
    counter!(RETRIES_TOTAL, "service" => service.to_string()).increment(1);
}

/// A retry was refused because the budget was empty.
pub fn budget_exhausted(service: &str) {
    counter!(BUDGET_EXHAUSTED_TOTAL, "service" => service.to_string()).increment(1);
}

/// A hedged attempt was sent.
pub fn hedge_sent(service: &str) {
    counter!(HEDGES_TOTAL, "service" => service.to_string()).increment(1);
}

/// `node` was ejected by passive outlier detection.
pub fn node_ejected(service: &str, node: &str) {
    counter!(EJECTIONS_TOTAL, "service" => service.to_string(), "node" => node.to_string())
        .increment(1);
}

/// The hint backlog for `node` is now `records`.
pub fn hint_backlog(service: &str, node: &str, records: u64) {
    gauge!(HINT_BACKLOG, "service" => service.to_string(), "node" => node.to_string())
        .set(records as f64);
}

/// The handoff delivered `records` hints to `node`.
pub fn hints_delivered(service: &str, node: &str, records: u64) {
    counter!(HINTS_DELIVERED_TOTAL, "service" => service.to_string(), "node" => node.to_string())
        .increment(records);
}

/// `records` hints for `node` were dropped for `reason`.
pub fn hints_dropped(service: &str, node: &str, reason: &'static str, records: u64) {
    counter!(HINTS_DROPPED_TOTAL, "service" => service.to_string(), "node" => node.to_string(), "reason" => reason)
        .increment(records);
}

/// A guarded policy answered; `source` says who (see
/// `levee_plugin::Source`) and `elapsed` is the whole call, fallback included.
/// Native answers without a plugin bound are not plugin metrics.
pub fn policy_decided(source: &levee_plugin::Source, elapsed: Duration) {
    use levee_plugin::{Failure, Source};
    match source {
        Source::Native => {}
        Source::Plugin { name, version } => plugin_call(name, version, elapsed),
        Source::Fallback {
            name,
            version,
            failure,
        } => {
            plugin_call(name, version, elapsed);
            let labels = plugin_labels(name, version);
            counter!(PLUGIN_FALLBACKS_TOTAL, &labels).increment(1);
            if matches!(
                failure,
                Failure::Trap(_) | Failure::Timeout | Failure::MemoryLimit
            ) {
                counter!(PLUGIN_TRAPS_TOTAL, &labels).increment(1);
            }
        }
        Source::Quarantined { name, version } => {
            counter!(
                PLUGIN_QUARANTINED_CALLS_TOTAL,
                &plugin_labels(name, version)
            )
            .increment(1);
        }
    }
}

fn plugin_call(plugin: &str, version: &str, elapsed: Duration) {
    let labels = plugin_labels(plugin, version);
    counter!(PLUGIN_CALLS_TOTAL, &labels).increment(1);
    histogram!(PLUGIN_CALL_DURATION_SECONDS, &labels).record(elapsed.as_secs_f64());
}

fn plugin_labels(plugin: &str, version: &str) -> [(&'static str, String); 2] {
    [
        ("plugin", plugin.to_string()),
        ("version", version_label(version)),
    ]
}

/// Whether the current version of `plugin` is quarantined, mirrored at
/// scrape time.
pub fn plugin_quarantined(plugin: &str, version: &str, quarantined: bool) {
    gauge!(PLUGIN_QUARANTINED, &plugin_labels(plugin, version)).set(if quarantined {
        1.0
    } else {
        0.0
    });
}

/// Where a plugin load came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadSource {
    Upload,
    DropIn,
    Rollback,
    Restart,
}

impl LoadSource {
    pub fn as_str(self) -> &'static str {
        match self {
            LoadSource::Upload => "upload",
            LoadSource::DropIn => "drop_in",
            LoadSource::Rollback => "rollback",
            LoadSource::Restart => "restart",
        }
    }
}

/// A plugin load attempt ended; `ok` says whether it was swapped in.
pub fn plugin_load(plugin: &str, source: LoadSource, ok: bool) {
    let result = if ok { "ok" } else { "refused" };
    counter!(PLUGIN_LOADS_TOTAL, "plugin" => plugin.to_string(), "source" => source.as_str(), "result" => result)
        .increment(1);
}

/// One log append became durable after `elapsed`.
pub fn log_append(elapsed: Duration) {
    histogram!(LOG_APPEND_DURATION_SECONDS).record(elapsed.as_secs_f64());
}

/// One fsync made `records` records durable.
pub fn log_fsync_batch(records: u64) {
    histogram!(LOG_FSYNC_BATCH_RECORDS).record(records as f64);
}

/// The log's running totals of fsyncs and records written, mirrored at
/// scrape time. The log crate does not depend on `metrics`, so batch sizes
/// are derived from the totals: the records written since the previous
/// scrape, spread evenly over the fsyncs since then (one sample per fsync,
/// each the window's average batch). Exact in count, averaged in size.
pub fn log_fsync_totals(fsyncs_total: u64, records_total: u64) {
    static LAST: Mutex<(u64, u64)> = Mutex::new((0, 0));
    let mut last = LAST.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let (fsyncs_before, records_before) = *last;
    // A smaller total means a different log (tests open several): restart.
    let (fsyncs_before, records_before) =
        if fsyncs_total < fsyncs_before || records_total < records_before {
            (0, 0)
        } else {
            (fsyncs_before, records_before)
        };
    *last = (fsyncs_total, records_total);
    let fsyncs = fsyncs_total - fsyncs_before;
    if fsyncs == 0 {
        return;
    }
    let average = (records_total - records_before) as f64 / fsyncs as f64;
    histogram!(LOG_FSYNC_BATCH_RECORDS)
        .record_many(average, usize::try_from(fsyncs).unwrap_or(usize::MAX));
}

/// The `service` label of a data-plane request: the first path segment if
/// it names a configured service, else `_unknown` (client-chosen paths must
/// not create time series).
/// `is_service` says whether a name is configured.
pub fn service_label(path: &str, is_service: impl FnOnce(&str) -> bool) -> String {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    if is_service(first) {
        first.to_string()
    } else {
        "_unknown".to_string()
    }
}

/// The log's size and position, mirrored at scrape time.
pub fn log_position(last_lsn: u64, total_bytes: u64) {
    gauge!(LOG_LAST_LSN).set(last_lsn as f64);
    gauge!(LOG_BYTES).set(total_bytes as f64);
}

/// What made a checkpoint happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointTrigger {
    Policy,
    Admin,
    Shutdown,
}

/// A checkpoint was written.
pub fn checkpoint_written(trigger: CheckpointTrigger) {
    let trigger = match trigger {
        CheckpointTrigger::Policy => "policy",
        CheckpointTrigger::Admin => "admin",
        CheckpointTrigger::Shutdown => "shutdown",
    };
    counter!(CHECKPOINTS_TOTAL, "trigger" => trigger).increment(1);
}

/// An admin request was refused for its token.
pub fn admin_auth_failed() {
    counter!(ADMIN_AUTH_FAILURES_TOTAL).increment(1);
}

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
    fn bounded_labels_stop_growing() {
        let labels = BoundedLabels::new(2);
        assert_eq!(labels.admit("a"), "a");
        assert_eq!(labels.admit("b"), "b");
        assert_eq!(labels.admit("c"), OVERFLOW_LABEL);
        assert_eq!(labels.admit("a"), "a", "known values keep their label");
    }

    #[test]
    fn family_names_are_unique_and_prefixed() {
        let unique: BTreeSet<_> = ALL_FAMILIES.iter().collect();
        assert_eq!(unique.len(), ALL_FAMILIES.len());
        assert!(ALL_FAMILIES.iter().all(|name| name.starts_with("levee_")));
    }

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
}
