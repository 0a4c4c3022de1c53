//! The recording functions: the only way the rest of the host touches
//! metrics. Each takes plain values and turns them into bounded labels.
//!
//! The ones the request path calls (requests, attempts, retries, hedges,
//! budget refusals, ejections, plugin calls) find their handle in a
//! [`HandleCache`] and allocate nothing once a label set has been seen.

use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use metrics::{Counter, Histogram, counter, gauge, histogram};

use super::handles::HandleCache;
use super::labels::{method_label, version_label};
use super::names::*;

/// Handles by service, then by something else (`()` when nothing else).
type ByService<S, H> = LazyLock<HandleCache<S, H>>;

static REQUESTS: ByService<(&'static str, u16), Counter> = LazyLock::new(HandleCache::default);
static REQUEST_DURATIONS: ByService<&'static str, Histogram> = LazyLock::new(HandleCache::default);
static ATTEMPTS: ByService<Box<str>, Counter> = LazyLock::new(HandleCache::default);
static EJECTIONS: ByService<Box<str>, Counter> = LazyLock::new(HandleCache::default);
static RETRIES: ByService<(), Counter> = LazyLock::new(HandleCache::default);
static BUDGET_EXHAUSTED: ByService<(), Counter> = LazyLock::new(HandleCache::default);
static HEDGES: ByService<(), Counter> = LazyLock::new(HandleCache::default);

/// A client request finished with `status` after `elapsed`.
pub fn request_finished(service: &str, method: &str, status: u16, elapsed: Duration) {
    let method = method_label(method);
    REQUESTS.with(
        service,
        &(method, status),
        |key| *key,
        || {
            counter!(REQUESTS_TOTAL, "service" => service.to_string(), "method" => method, "status" => status.to_string())
        },
        |requests| requests.increment(1),
    );
    REQUEST_DURATIONS.with(
        service,
        &method,
        |method| *method,
        || histogram!(REQUEST_DURATION_SECONDS, "service" => service.to_string(), "method" => method),
        |durations| durations.record(elapsed.as_secs_f64()),
    );
}

/// An attempt was sent to `node`.
pub fn attempt_sent(service: &str, node: &str) {
    ATTEMPTS.with(
        service,
        node,
        |key: &str| Box::from(key),
        || counter!(ATTEMPTS_TOTAL, "service" => service.to_string(), "node" => node.to_string()),
        |attempts| attempts.increment(1),
    );
}

/// Increments the service's counter `name` (labelled by service only).
fn service_counter(cache: &HandleCache<(), Counter>, name: &'static str, service: &str) {
    cache.with(
        service,
        &(),
        |()| (),
        || counter!(name, "service" => service.to_string()),
        |counter| counter.increment(1),
    );
}

/// A retry was sent.
pub fn retry_sent(service: &str) {
    service_counter(&RETRIES, RETRIES_TOTAL, service);
}

/// A retry was refused because the budget was empty.
pub fn budget_exhausted(service: &str) {
    service_counter(&BUDGET_EXHAUSTED, BUDGET_EXHAUSTED_TOTAL, service);
}

/// A hedged attempt was sent.
pub fn hedge_sent(service: &str) {
    service_counter(&HEDGES, HEDGES_TOTAL, service);
}

/// `node` was ejected by passive outlier detection.
pub fn node_ejected(service: &str, node: &str) {
    EJECTIONS.with(
        service,
        node,
        |key: &str| Box::from(key),
        || counter!(EJECTIONS_TOTAL, "service" => service.to_string(), "node" => node.to_string()),
        |ejections| ejections.increment(1),
    );
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

/// Keys awaiting repair are now `keys`.
pub fn repair_keys_pending(keys: u64) {
    gauge!(REPAIR_KEYS_PENDING).set(keys as f64);
}

/// A repair attempt ended: every replica at the newest version, or not.
pub fn repair_finished(repaired: bool) {
    let result = if repaired { "repaired" } else { "failed" };
    counter!(REPAIRS_TOTAL, "result" => result).increment(1);
}

/// A dropped hint's key did not fit in the durable repair set.
pub fn repair_overflow() {
    counter!(REPAIR_OVERFLOW_TOTAL, "set" => "durable").increment(1);
}

/// A read path repair request did not fit in the queue.
pub fn repair_queue_dropped() {
    counter!(REPAIR_OVERFLOW_TOTAL, "set" => "queue").increment(1);
}

/// Handles of the plugin families, by plugin name, then by version.
static PLUGIN_CALLS: ByService<Box<str>, Counter> = LazyLock::new(HandleCache::default);
static PLUGIN_CALL_DURATIONS: ByService<Box<str>, Histogram> = LazyLock::new(HandleCache::default);
static PLUGIN_FALLBACKS: ByService<Box<str>, Counter> = LazyLock::new(HandleCache::default);
static PLUGIN_TRAPS: ByService<Box<str>, Counter> = LazyLock::new(HandleCache::default);
static PLUGIN_QUARANTINED_CALLS: ByService<Box<str>, Counter> = LazyLock::new(HandleCache::default);

/// A guarded policy answered; `source` says who (see
/// `levee_plugin::Source`) and `elapsed` is the plugin call's own time (zero
/// for an answer no plugin code ran for: a cached route plan, a quarantined
/// version). Native answers without a plugin bound are not plugin metrics.
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
            plugin_counter(&PLUGIN_FALLBACKS, PLUGIN_FALLBACKS_TOTAL, name, version);
            if matches!(
                failure,
                Failure::Trap(_) | Failure::Timeout | Failure::MemoryLimit
            ) {
                plugin_counter(&PLUGIN_TRAPS, PLUGIN_TRAPS_TOTAL, name, version);
            }
        }
        Source::Quarantined { name, version } => plugin_counter(
            &PLUGIN_QUARANTINED_CALLS,
            PLUGIN_QUARANTINED_CALLS_TOTAL,
            name,
            version,
        ),
    }
}

fn plugin_call(plugin: &str, version: &str, elapsed: Duration) {
    plugin_counter(&PLUGIN_CALLS, PLUGIN_CALLS_TOTAL, plugin, version);
    PLUGIN_CALL_DURATIONS.with(
        plugin,
        version,
        |key: &str| Box::from(key),
        || {
            histogram!(
                PLUGIN_CALL_DURATION_SECONDS,
                &plugin_labels(plugin, version)
            )
        },
        |durations| durations.record(elapsed.as_secs_f64()),
    );
}

/// Increments the plugin family `name` for `plugin` at `version`.
fn plugin_counter(
    cache: &HandleCache<Box<str>, Counter>,
    name: &'static str,
    plugin: &str,
    version: &str,
) {
    cache.with(
        plugin,
        version,
        |key: &str| Box::from(key),
        || counter!(name, &plugin_labels(plugin, version)),
        |counter| counter.increment(1),
    );
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
    /// A shadow version made live (`POST /admin/plugins/NAME/promote`).
    Promote,
    /// Pulled from an OCI registry by digest (`PUT /admin/plugins/NAME/oci`).
    Oci,
}

impl LoadSource {
    pub fn as_str(self) -> &'static str {
        match self {
            LoadSource::Upload => "upload",
            LoadSource::DropIn => "drop_in",
            LoadSource::Rollback => "rollback",
            LoadSource::Restart => "restart",
            LoadSource::Promote => "promote",
            LoadSource::Oci => "oci",
        }
    }
}

/// A plugin load attempt ended; `ok` says whether it was swapped in.
pub fn plugin_load(plugin: &str, source: LoadSource, ok: bool) {
    let result = if ok { "ok" } else { "refused" };
    counter!(PLUGIN_LOADS_TOTAL, "plugin" => plugin.to_string(), "source" => source.as_str(), "result" => result)
        .increment(1);
}

static LOG_APPENDS: ByService<(), Histogram> = LazyLock::new(HandleCache::default);

/// One log append became durable after `elapsed` (once per client write).
pub fn log_append(elapsed: Duration) {
    LOG_APPENDS.with(
        "",
        &(),
        |()| (),
        || histogram!(LOG_APPEND_DURATION_SECONDS),
        |appends| appends.record(elapsed.as_secs_f64()),
    );
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

/// A version seen on a replica was too far ahead of the clock to adopt.
pub fn version_too_far_ahead() {
    counter!(VERSIONS_TOO_FAR_AHEAD_TOTAL).increment(1);
}

/// An admin request was refused for its token.
pub fn admin_auth_failed() {
    counter!(ADMIN_AUTH_FAILURES_TOTAL).increment(1);
}

/// Another instance on this revision places a service's keys differently.
pub fn ring_epoch_mismatch() {
    counter!(RING_EPOCH_MISMATCHES_TOTAL).increment(1);
}

/// A listener's certificate files changed and were (or were not) reloaded.
pub fn tls_reloaded(listener: &'static str, ok: bool) {
    let result = if ok { "ok" } else { "error" };
    counter!(TLS_RELOADS_TOTAL, "listener" => listener, "result" => result).increment(1);
}

/// A client's TLS handshake failed or timed out.
pub fn tls_handshake_failed(listener: &'static str) {
    counter!(TLS_HANDSHAKE_FAILURES_TOTAL, "listener" => listener).increment(1);
}

/// The counter of connections a listener serves with `protocol`; register
/// once per listener and keep it (a lookup per connection would allocate).
pub fn connections_served(listener: &'static str, protocol: &'static str) -> Counter {
    counter!(CONNECTIONS_TOTAL, "listener" => listener, "protocol" => protocol)
}
