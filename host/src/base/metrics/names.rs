//! The metric family names and their descriptions: a family is spelled
//! here once, and nowhere else (the recording functions use these
//! constants).

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
/// Gauge: keys awaiting repair (durable repair set + in-memory queue).
pub const REPAIR_KEYS_PENDING: &str = "levee_repair_keys_pending";
/// Counter: repair attempts, by `result` (`repaired`: every replica at the
/// newest version; `failed`: a replica could not be read or written, the
/// key is retried).
pub const REPAIRS_TOTAL: &str = "levee_repairs_total";
/// Counter: keys not taken for repair because the set or queue was full,
/// by `set` (`durable`: a dropped hint's key, unrepaired; `queue`: a read
/// path request).
pub const REPAIR_OVERFLOW_TOTAL: &str = "levee_repair_overflow_total";
/// Counter: versions seen on replicas that levee's clock refused to adopt
/// because they were further ahead of its wall clock than
/// `versions.clock_skew_ms_max`.
pub const VERSIONS_TOO_FAR_AHEAD_TOTAL: &str = "levee_versions_too_far_ahead_total";

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

/// Counter: another cluster instance on the same configuration revision
/// reported a different placement epoch for a service.
pub const RING_EPOCH_MISMATCHES_TOTAL: &str = "levee_ring_epoch_mismatches_total";

// ---- Listeners --------------------------------------------------------------

/// Counter: TLS certificate reloads, by `listener` (`data`, `admin`) and
/// `result` (`ok`, `error`: the previous certificate keeps serving).
pub const TLS_RELOADS_TOTAL: &str = "levee_tls_reloads_total";
/// Counter: client TLS handshakes that failed or timed out, by `listener`.
pub const TLS_HANDSHAKE_FAILURES_TOTAL: &str = "levee_tls_handshake_failures_total";
/// Counter: client connections served, by `listener` and `protocol`
/// (`http1`, `h2`, `h2c`, each over `tls` or not).
pub const CONNECTIONS_TOTAL: &str = "levee_connections_total";

/// Every family name, for documentation and for the `/metrics` test.
#[cfg(test)] // only tests ask
pub const ALL_FAMILIES: &[&str] = &[
    REQUESTS_TOTAL,
    REQUEST_DURATION_SECONDS,
    ATTEMPTS_TOTAL,
    RETRIES_TOTAL,
    BUDGET_EXHAUSTED_TOTAL,
    HEDGES_TOTAL,
    EJECTIONS_TOTAL,
    HINT_BACKLOG,
    HINTS_DELIVERED_TOTAL,
    HINTS_DROPPED_TOTAL,
    REPAIR_KEYS_PENDING,
    REPAIRS_TOTAL,
    REPAIR_OVERFLOW_TOTAL,
    VERSIONS_TOO_FAR_AHEAD_TOTAL,
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
    RING_EPOCH_MISMATCHES_TOTAL,
    TLS_RELOADS_TOTAL,
    TLS_HANDSHAKE_FAILURES_TOTAL,
    CONNECTIONS_TOTAL,
];

/// Tells the recorder what each family means (the `# HELP` lines).
pub(super) fn describe_all() {
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
    describe_gauge!(REPAIR_KEYS_PENDING, "Keys awaiting repair.");
    describe_counter!(REPAIRS_TOTAL, "Repair attempts, by result.");
    describe_counter!(
        REPAIR_OVERFLOW_TOTAL,
        "Keys not taken for repair because the set or queue was full."
    );
    describe_counter!(
        VERSIONS_TOO_FAR_AHEAD_TOTAL,
        "Versions seen on replicas too far ahead of the clock to adopt."
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
    describe_counter!(
        RING_EPOCH_MISMATCHES_TOTAL,
        "Cluster instances on one revision placing a service's keys differently."
    );
    describe_counter!(
        TLS_RELOADS_TOTAL,
        "TLS certificate reloads, by listener and result."
    );
    describe_counter!(
        TLS_HANDSHAKE_FAILURES_TOTAL,
        "Client TLS handshakes that failed or timed out, by listener."
    );
    describe_counter!(
        CONNECTIONS_TOTAL,
        "Client connections served, by listener and protocol."
    );
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn family_names_are_unique_and_prefixed() {
        let unique: BTreeSet<_> = ALL_FAMILIES.iter().collect();
        assert_eq!(unique.len(), ALL_FAMILIES.len());
        assert!(ALL_FAMILIES.iter().all(|name| name.starts_with("levee_")));
    }
}
