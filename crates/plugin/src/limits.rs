//! [`Limits`]: the fence around one bound plugin.
//!
//! A plugin runs on the request path, so everything it can consume is
//! capped: CPU per call (epoch deadline), linear memory and table growth
//! (a store limiter), how many instances, memories and tables it may
//! create, how large the strings and lists it returns may be, how much it
//! may log, how many instances its pool keeps, and how many failures in a
//! row are tolerated before the version is quarantined.
//!
//! # What the host copies out of a plugin
//! Strings and lists cross from the guest into the host by copy, and a
//! plugin chooses their length. The memory cap alone does not bound that
//! copy well: 16 MiB of linear memory is a 16 MiB string, and a plugin can
//! hand the same guest bytes to the host again and again (one buffer, many
//! `log` calls). So every binding also sets wasmtime's *hostcall fuel*:
//! the most bytes of strings and lists the host copies out of one value
//! the plugin hands it (an export's answer, or the arguments of one import
//! call), checked by wasmtime **before** it copies anything.
//! [`hostcall_fuel_bytes`] derives it from the binding's output limits
//! (twice the largest value they let through, so an answer a little over
//! its limit still reaches the host's own checks and their precise
//! messages). A value over it fails the call as
//! [`crate::Failure::InvalidOutput`], a guest fault that counts toward
//! quarantine. Within it, the host's own rules apply to the copy:
//! returned strings (give-up reasons, `configure` errors) are cut to
//! `returned_string_bytes_max`, `log` messages to
//! [`LOG_MESSAGE_BYTES_MAX`] (and `returned_string_bytes_max`), and a
//! route plan longer than `route_order_max` is refused (see `convert`).
//! Each copy is dropped before the plugin runs on, so the host holds at
//! most about one hostcall bound per call however often the plugin calls
//! it; the CPU deadline bounds how often.
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

/// Bytes of one `host.log` message kept (further bytes are cut); the WIT
/// promises 1 KiB.
pub const LOG_MESSAGE_BYTES_MAX: usize = 1024;
/// What wasmtime charges against the hostcall fuel per route-plan entry
/// (a `node-index`, a `u32`).
const ROUTE_INDEX_BYTES: usize = size_of::<u32>();
/// How far over the largest value its limits let through a plugin may go
/// before wasmtime refuses to copy a value at all (see
/// [`hostcall_fuel_bytes`]).
pub const HOSTCALL_FUEL_FACTOR: usize = 2;

/// The hostcall fuel of a binding: the most bytes of strings and lists the
/// host copies out of any one value the plugin hands it (see the module
/// docs). [`HOSTCALL_FUEL_FACTOR`] times the largest of the returned-string
/// bound, a route plan of `route_order_max` entries, and a `log` message
/// ([`LOG_MESSAGE_BYTES_MAX`]). With the defaults: 8 KiB.
pub fn hostcall_fuel_bytes(limits: &Limits) -> usize {
    let string = limits.returned_string_bytes_max as usize;
    let plan = (limits.route_order_max as usize).saturating_mul(ROUTE_INDEX_BYTES);
    string
        .max(plan)
        .max(LOG_MESSAGE_BYTES_MAX)
        .saturating_mul(HOSTCALL_FUEL_FACTOR)
}

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
    fn hostcall_fuel_follows_the_output_limits() {
        assert_eq!(hostcall_fuel_bytes(&Limits::default()), 8 * 1024);
        let tiny = Limits {
            returned_string_bytes_max: 1,
            route_order_max: 1,
            ..Limits::default()
        };
        assert_eq!(hostcall_fuel_bytes(&tiny), 2 * LOG_MESSAGE_BYTES_MAX);
        let widest = Limits {
            returned_string_bytes_max: RETURNED_STRING_BYTES_CEILING,
            route_order_max: ROUTE_ORDER_CEILING,
            ..Limits::default()
        };
        assert_eq!(hostcall_fuel_bytes(&widest), 2 * 1024 * 1024);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let error =
            Limits::from_json(r#"{"call_timeout": 5}"#, &EngineCaps::default()).unwrap_err();
        assert!(error.to_string().contains("unknown field"), "{error}");
    }
}
