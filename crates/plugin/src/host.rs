//! The store data of every plugin instance, and the `host` import.
//!
//! [`HostState`] is what a plugin's `Store` carries: the tag naming the
//! plugin in logs, the [`HostEnv`] behind `now-ms` and `random-u64`, the
//! store limiter, and the per-call log quota. It implements the WIT `host`
//! interface, the only thing a plugin can call:
//! - `log`: forwarded to `tracing` with the plugin's name and version,
//!   the message truncated to [`LOG_MESSAGE_BYTES_MAX`] and escaped (a
//!   plugin cannot forge log lines), at most
//!   [`crate::Limits::log_calls_per_call_max`] per policy call; the rest
//!   are dropped and counted.
//! - `now-ms`, `random-u64`: from the [`HostEnv`].
//!
//! It also wraps wasmtime's [`StoreLimits`] so that a denied memory or
//! table growth is remembered: the call's failure is then classified as
//! [`crate::Failure::MemoryLimit`] rather than a generic trap.

use std::sync::Arc;

use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};

use crate::bindings::{wit_host, wit_types};
use crate::env::HostEnv;
use crate::limits::Limits;
use crate::stats::Counters;

/// Bytes of one `host.log` message kept; the WIT promises 1 KiB.
pub const LOG_MESSAGE_BYTES_MAX: usize = 1024;

/// Who a plugin instance is, for log lines.
#[derive(Debug)]
pub(crate) struct PluginTag {
    pub(crate) name: Arc<str>,
    pub(crate) version: Arc<str>,
}

/// Data of one plugin instance's `Store`.
pub(crate) struct HostState {
    tag: Arc<PluginTag>,
    env: HostEnv,
    counters: Arc<Counters>,
    limits: StoreLimits,
    /// Set when the limiter refused a growth; reset before each call.
    growth_denied: bool,
    /// `host.log` calls during the current policy call.
    log_calls: u32,
    log_calls_max: u32,
}

impl HostState {
    pub(crate) fn new(
        tag: Arc<PluginTag>,
        env: HostEnv,
        counters: Arc<Counters>,
        limits: &Limits,
    ) -> HostState {
        let store_limits = StoreLimitsBuilder::new()
            .memory_size(usize::try_from(limits.memory_bytes_max).unwrap_or(usize::MAX))
            .table_elements(usize::try_from(limits.table_elements_max).unwrap_or(usize::MAX))
            .instances(limits.instances_max as usize)
            .memories(limits.memories_max as usize)
            .tables(limits.tables_max as usize)
            .trap_on_grow_failure(true)
            .build();
        HostState {
            tag,
            env,
            counters,
            limits: store_limits,
            growth_denied: false,
            log_calls: 0,
            log_calls_max: limits.log_calls_per_call_max,
        }
    }

    /// Resets the per-call state before a policy call.
    pub(crate) fn begin_call(&mut self) {
        self.growth_denied = false;
        self.log_calls = 0;
    }

    /// Whether the limiter refused a memory or table growth since
    /// [`HostState::begin_call`].
    pub(crate) fn growth_denied(&self) -> bool {
        self.growth_denied
    }

    pub(crate) fn limiter(&mut self) -> &mut dyn ResourceLimiter {
        self
    }
}

impl ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let verdict = self.limits.memory_growing(current, desired, maximum);
        self.growth_denied |= !matches!(verdict, Ok(true));
        verdict
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.growth_denied = true;
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let verdict = self.limits.table_growing(current, desired, maximum);
        self.growth_denied |= !matches!(verdict, Ok(true));
        verdict
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.growth_denied = true;
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// `types` has no functions; its trait is empty.
impl wit_types::Host for HostState {}

impl wit_host::Host for HostState {
    fn log(&mut self, level: wit_types::Level, message: String) {
        if self.log_calls >= self.log_calls_max {
            self.counters.record_log_dropped();
            return;
        }
        self.log_calls += 1;
        let message = truncate_to_char_boundary(&message, LOG_MESSAGE_BYTES_MAX);
        let (name, version) = (&*self.tag.name, short_version(&self.tag.version));
        // `?message` escapes newlines and quotes: a plugin cannot forge lines.
        match level {
            wit_types::Level::Trace => {
                tracing::trace!(plugin = name, version, message = ?message, "plugin log")
            }
            wit_types::Level::Debug => {
                tracing::debug!(plugin = name, version, message = ?message, "plugin log")
            }
            wit_types::Level::Info => {
                tracing::info!(plugin = name, version, message = ?message, "plugin log")
            }
            wit_types::Level::Warn => {
                tracing::warn!(plugin = name, version, message = ?message, "plugin log")
            }
            wit_types::Level::Error => {
                tracing::error!(plugin = name, version, message = ?message, "plugin log")
            }
        }
    }

    fn now_ms(&mut self) -> u64 {
        self.env.now_ms()
    }

    fn random_u64(&mut self) -> u64 {
        self.env.random_u64()
    }
}

/// The first 12 hex digits of a version: enough to tell versions apart in
/// a log line.
pub(crate) fn short_version(version: &str) -> &str {
    version.get(..12).unwrap_or(version)
}

/// The longest prefix of `text` of at most `bytes_max` bytes that ends on
/// a character boundary.
pub(crate) fn truncate_to_char_boundary(text: &str, bytes_max: usize) -> &str {
    if text.len() <= bytes_max {
        return text;
    }
    let mut end = bytes_max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate_to_char_boundary("hello", 10), "hello");
        assert_eq!(truncate_to_char_boundary("hello", 3), "hel");
        // 'é' is two bytes; cutting inside it backs off to before it.
        assert_eq!(truncate_to_char_boundary("aé", 2), "a");
        assert_eq!(truncate_to_char_boundary("", 0), "");
    }

    #[test]
    fn short_version_is_a_prefix() {
        assert_eq!(short_version("0123456789abcdef"), "0123456789ab");
        assert_eq!(short_version("abc"), "abc");
    }
}
