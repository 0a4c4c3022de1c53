//! The process-wide Prometheus recorder: installed once, with the histogram
//! buckets of each family; rendering for `/metrics`; the upkeep task that
//! drains histogram buffers.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::names::{
    LOG_APPEND_DURATION_SECONDS, LOG_FSYNC_BATCH_RECORDS, PLUGIN_CALL_DURATION_SECONDS,
    REQUEST_DURATION_SECONDS, describe_all,
};

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

/// Whether [`install`] has run: from then on the `metrics` macros hand out
/// the process-wide recorder's handles, which may be cached.
pub(super) fn is_installed() -> bool {
    HANDLE.get().is_some()
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
