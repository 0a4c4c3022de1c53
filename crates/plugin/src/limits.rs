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
//! The data type lives in `levee_policy::limits` as
//! [`PluginLimits`](levee_policy::limits::PluginLimits), so the
//! configuration crate can carry it (`policies.retry.limits`) without
//! depending on this runtime; it is re-exported here as [`Limits`] with its
//! ceilings. What needs the engine stays here: [`ValidateLimits`] refuses
//! nonsense, and anything the engine was not built to allow ([`EngineCaps`]),
//! before anything is instantiated.

use crate::engine::EngineCaps;
use crate::error::LoadError;

pub use levee_policy::limits::PluginLimits as Limits;
pub use levee_policy::limits::{
    CALL_TIMEOUT_MS_MAX, CONFIGURE_TIMEOUT_MS_MAX, LOG_CALLS_PER_CALL_CEILING,
    RETURNED_STRING_BYTES_CEILING, ROUTE_ORDER_CEILING,
};

/// One WebAssembly page: the smallest memory a plugin can run in.
const WASM_PAGE_BYTES: u64 = 64 * 1024;

/// The engine-side checks of [`Limits`] (an extension trait: the type
/// itself lives in `levee_policy`). Bring it into scope to call
/// `limits.validate(&caps)` or `Limits::from_json(json, &caps)`.
pub trait ValidateLimits: Sized {
    /// Checks every field against its range and against what the engine
    /// was built to allow (`caps`).
    fn validate(&self, caps: &EngineCaps) -> Result<(), LoadError>;

    /// Parses limits from JSON (`{}` or empty means defaults) and validates.
    fn from_json(json: &str, caps: &EngineCaps) -> Result<Self, LoadError>;
}

impl ValidateLimits for Limits {
    fn validate(&self, caps: &EngineCaps) -> Result<(), LoadError> {
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

    fn from_json(json: &str, caps: &EngineCaps) -> Result<Limits, LoadError> {
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
