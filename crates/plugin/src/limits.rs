//! [`Limits`]: the fence around one bound plugin.
//!
//! A plugin runs on the request path, so everything it can consume is
//! capped: CPU per call (epoch deadline), linear memory and table growth
//! (a store limiter), how many instances, memories and tables it may
//! create, how large the strings and lists it returns may be, how much it
//! may log, how many instances its pool keeps, and how many failures in a
//! row are tolerated before the version is quarantined.
//!
//! The memory cap is also what bounds a hostile answer: a plugin cannot
//! build a 100 MB string inside 16 MiB of linear memory, so the host never
//! lifts more than roughly the memory cap; the returned-size caps are then
//! checked again on the lifted values (see the `sanitize` module).
//!
//! Limits are serde so the service config can carry them
//! (`policies.retry.limits`), every field has a sane default, and
//! [`Limits::validate`] refuses nonsense before anything is instantiated.

use serde::{Deserialize, Serialize};

use crate::engine::EngineCaps;
use crate::error::LoadError;

/// Per-bound-plugin limits. Units are in the names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// CPU budget of one policy call, enforced by epoch interruption: the
    /// call is stopped between this and this plus one epoch tick. It is
    /// measured in wall time while the call runs, so a thread preempted
    /// mid-call on an overloaded machine can time out; the native policy
    /// then answers that call, which keeps the answer correct.
    pub call_timeout_ms: u32,
    /// Budget for instantiation plus `configure` of a fresh instance.
    pub configure_timeout_ms: u32,
    /// Linear memory of one instance.
    pub memory_bytes_max: u64,
    /// Elements of any one table.
    pub table_elements_max: u32,
    /// Core instances one component instance may create.
    pub instances_max: u32,
    /// Linear memories one component instance may create.
    pub memories_max: u32,
    /// Tables one component instance may create.
    pub tables_max: u32,
    /// Bytes of any string the plugin returns (reasons, node ids).
    pub returned_string_bytes_max: u32,
    /// Entries of a returned route plan.
    pub route_order_max: u32,
    /// `host.log` calls honoured per policy call; further ones are dropped.
    pub log_calls_per_call_max: u32,
    /// Failures in a row after which the version is quarantined.
    pub consecutive_failures_max: u32,
    /// Ready instances kept between calls.
    pub pool_idle_max: u32,
    /// Instances alive at once (idle + in a call).
    pub pool_instances_max: u32,
}

impl Default for Limits {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let pool_idle_max = u32::try_from(2 * cores).unwrap_or(u32::MAX).min(64);
        Limits {
            call_timeout_ms: 2,
            configure_timeout_ms: 100,
            memory_bytes_max: 16 * 1024 * 1024,
            table_elements_max: 10_000,
            instances_max: 16,
            memories_max: 4,
            tables_max: 16,
            returned_string_bytes_max: levee_policy::limits::RETURNED_STRING_BYTES_MAX as u32,
            route_order_max: levee_policy::limits::ROUTE_ORDER_MAX as u32,
            log_calls_per_call_max: 8,
            consecutive_failures_max: 5,
            pool_idle_max,
            pool_instances_max: 32.max(pool_idle_max),
        }
    }
}

/// The hard ceiling of [`Limits::call_timeout_ms`]: a request-path policy
/// that needs more than a second of CPU is a bug, not a configuration.
pub const CALL_TIMEOUT_MS_MAX: u32 = 1_000;
/// The hard ceiling of [`Limits::configure_timeout_ms`].
pub const CONFIGURE_TIMEOUT_MS_MAX: u32 = 10_000;
/// The hard ceiling of [`Limits::returned_string_bytes_max`].
pub const RETURNED_STRING_BYTES_CEILING: u32 = 1024 * 1024;
/// The hard ceiling of [`Limits::route_order_max`].
pub const ROUTE_ORDER_CEILING: u32 = 4_096;
/// The hard ceiling of [`Limits::log_calls_per_call_max`].
pub const LOG_CALLS_PER_CALL_CEILING: u32 = 1_024;
/// One WebAssembly page: the smallest memory a plugin can run in.
const WASM_PAGE_BYTES: u64 = 64 * 1024;

impl Limits {
    /// Checks every field against its range and against what the engine
    /// was built to allow (`caps`).
    pub fn validate(&self, caps: &EngineCaps) -> Result<(), LoadError> {
        check_range(
            "call_timeout_ms",
            self.call_timeout_ms.into(),
            1,
            CALL_TIMEOUT_MS_MAX.into(),
        )?;
        check_range(
            "configure_timeout_ms",
            self.configure_timeout_ms.into(),
            1,
            CONFIGURE_TIMEOUT_MS_MAX.into(),
        )?;
        check_range(
            "memory_bytes_max",
            self.memory_bytes_max,
            WASM_PAGE_BYTES,
            caps.memory_bytes_max,
        )?;
        check_range(
            "table_elements_max",
            self.table_elements_max.into(),
            1,
            caps.table_elements_max.into(),
        )?;
        check_range(
            "instances_max",
            self.instances_max.into(),
            1,
            caps.core_instances_per_component_max.into(),
        )?;
        check_range(
            "memories_max",
            self.memories_max.into(),
            1,
            caps.memories_per_component_max.into(),
        )?;
        check_range(
            "tables_max",
            self.tables_max.into(),
            1,
            caps.tables_per_component_max.into(),
        )?;
        check_range(
            "returned_string_bytes_max",
            self.returned_string_bytes_max.into(),
            1,
            RETURNED_STRING_BYTES_CEILING.into(),
        )?;
        check_range(
            "route_order_max",
            self.route_order_max.into(),
            1,
            ROUTE_ORDER_CEILING.into(),
        )?;
        check_range(
            "log_calls_per_call_max",
            self.log_calls_per_call_max.into(),
            0,
            LOG_CALLS_PER_CALL_CEILING.into(),
        )?;
        check_range(
            "consecutive_failures_max",
            self.consecutive_failures_max.into(),
            1,
            1_000_000,
        )?;
        check_range(
            "pool_instances_max",
            self.pool_instances_max.into(),
            1,
            caps.instances_total_max.into(),
        )?;
        check_range(
            "pool_idle_max",
            self.pool_idle_max.into(),
            0,
            self.pool_instances_max.into(),
        )?;
        Ok(())
    }

    /// Parses limits from JSON (`{}` or empty means defaults) and validates.
    pub fn from_json(json: &str, caps: &EngineCaps) -> Result<Limits, LoadError> {
        let limits: Limits = if json.trim().is_empty() {
            Limits::default()
        } else {
            serde_json::from_str(json).map_err(|e| LoadError::InvalidLimits(e.to_string()))?
        };
        limits.validate(caps)?;
        Ok(limits)
    }
}

fn check_range(field: &str, value: u64, min: u64, max: u64) -> Result<(), LoadError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(LoadError::InvalidLimits(format!(
            "{field} is {value}, but must be within {min}..={max}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Limits::default().validate(&EngineCaps::default()).unwrap();
        assert_eq!(
            Limits::from_json("", &EngineCaps::default()).unwrap(),
            Limits::default()
        );
        assert_eq!(
            Limits::from_json("{}", &EngineCaps::default()).unwrap(),
            Limits::default()
        );
    }

    #[test]
    fn out_of_range_values_are_named() {
        let caps = EngineCaps::default();
        let zero_timeout = Limits {
            call_timeout_ms: 0,
            ..Limits::default()
        };
        let message = zero_timeout.validate(&caps).unwrap_err().to_string();
        assert!(message.contains("call_timeout_ms is 0"), "{message}");

        let huge_memory = Limits {
            memory_bytes_max: caps.memory_bytes_max + 1,
            ..Limits::default()
        };
        let message = huge_memory.validate(&caps).unwrap_err().to_string();
        assert!(message.contains("memory_bytes_max"), "{message}");

        let idle_over_total = Limits {
            pool_idle_max: 9,
            pool_instances_max: 8,
            ..Limits::default()
        };
        assert!(idle_over_total.validate(&caps).is_err());
    }

    #[test]
    fn unknown_fields_are_refused() {
        let error =
            Limits::from_json(r#"{"call_timeout": 5}"#, &EngineCaps::default()).unwrap_err();
        assert!(error.to_string().contains("unknown field"), "{error}");
    }
}
