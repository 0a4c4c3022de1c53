//! The recording functions: the only way the rest of the host touches
//! metrics. Each takes plain values and turns them into bounded labels.

use std::sync::Mutex;
use std::time::Duration;

use metrics::{counter, gauge, histogram};

use super::labels::{method_label, version_label};
use super::names::*;

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
#[cfg(test)] // only tests ask
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
