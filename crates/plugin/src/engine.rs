//! The one wasmtime [`Engine`] every plugin shares, and its epoch ticker.
//!
//! Why one engine: compiled code is tied to the engine that produced it,
//! the pooling allocator's slots are per engine, and the epoch counter that
//! fences CPU time is per engine. One engine per process means one set of
//! bounded totals and one ticker thread.
//!
//! Configuration, and why:
//! - **Cranelift, optimizing for speed**: policies run on the request path.
//! - **Component model**: plugins are components implementing a WIT world.
//! - **Epoch interruption** instead of fuel: fuel instruments every basic
//!   block (a measurable tax on every call); epochs cost one load and
//!   compare at loop headers and function entries. The price is
//!   granularity: a call is stopped between its budget and its budget plus
//!   one tick.
//! - **Pooling allocator with bounded totals** ([`EngineCaps`]): instance
//!   memory is pre-reserved in slots, so a fresh instantiation is a few
//!   microseconds of copy-on-write setup instead of `mmap` calls, and the
//!   total number of live instances, memories and tables is capped for the
//!   whole process whatever the plugins do.
//! - **A bounded wasm stack**, so unbounded recursion traps with a stack
//!   overflow instead of touching the host's stack guard.
//!
//! # The epoch ticker
//! A dedicated thread increments the engine's epoch every `epoch_tick_ms`
//! (default 1 ms). A call whose budget is `B` ms gets a deadline of
//! `ceil(B / tick) + 1` ticks, so it is interrupted after at least `B` and
//! at most `B + tick` milliseconds of wall time (plus scheduling delay on a
//! loaded machine; the budget is wall time while the call runs, which for a
//! synchronous, non-blocking guest is its CPU time). The thread stops when
//! the `EpochTicker` is dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig,
};

use crate::error::RuntimeError;

/// Process-wide ceilings baked into the engine's pooling allocator. Every
/// plugin's [`crate::Limits`] must fit inside them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineCaps {
    /// Component instances alive at once across all plugins.
    pub instances_total_max: u32,
    /// Linear memory of any one instance.
    pub memory_bytes_max: u64,
    /// Elements of any one table.
    pub table_elements_max: u32,
    /// Core instances inside one component instance.
    pub core_instances_per_component_max: u32,
    /// Linear memories inside one component instance.
    pub memories_per_component_max: u32,
    /// Tables inside one component instance.
    pub tables_per_component_max: u32,
    /// Native stack a guest may use before it traps with a stack overflow.
    pub wasm_stack_bytes_max: u32,
}

impl Default for EngineCaps {
    fn default() -> Self {
        EngineCaps {
            instances_total_max: 256,
            memory_bytes_max: 64 * 1024 * 1024,
            table_elements_max: 20_000,
            core_instances_per_component_max: 16,
            memories_per_component_max: 4,
            tables_per_component_max: 16,
            wasm_stack_bytes_max: 512 * 1024,
        }
    }
}

impl EngineCaps {
    fn validate(&self) -> Result<(), RuntimeError> {
        let invalid = |what: String| Err(RuntimeError::InvalidOptions(what));
        if !(1..=10_000).contains(&self.instances_total_max) {
            return invalid(format!(
                "instances_total_max is {}, must be within 1..=10000",
                self.instances_total_max
            ));
        }
        if !(64 * 1024..=4 * 1024 * 1024 * 1024).contains(&self.memory_bytes_max) {
            return invalid(format!(
                "memory_bytes_max is {}, must be within 64 KiB..=4 GiB",
                self.memory_bytes_max
            ));
        }
        if !(1..=10_000_000).contains(&self.table_elements_max) {
            return invalid(format!(
                "table_elements_max is {}, must be within 1..=10000000",
                self.table_elements_max
            ));
        }
        for (name, value) in [
            (
                "core_instances_per_component_max",
                self.core_instances_per_component_max,
            ),
            (
                "memories_per_component_max",
                self.memories_per_component_max,
            ),
            ("tables_per_component_max", self.tables_per_component_max),
        ] {
            if !(1..=1_000).contains(&value) {
                return invalid(format!("{name} is {value}, must be within 1..=1000"));
            }
        }
        if !(64 * 1024..=64 * 1024 * 1024).contains(&self.wasm_stack_bytes_max) {
            return invalid(format!(
                "wasm_stack_bytes_max is {}, must be within 64 KiB..=64 MiB",
                self.wasm_stack_bytes_max
            ));
        }
        Ok(())
    }
}

/// Dirty bytes of a freed linear memory reset in place rather than
/// decommitted (a Rust guest touches its stack top, data and a little heap).
const LINEAR_MEMORY_KEEP_RESIDENT_BYTES: usize = 2 * 1024 * 1024;
/// The same for tables.
const TABLE_KEEP_RESIDENT_BYTES: usize = 64 * 1024;

/// Builds the shared engine.
pub(crate) fn build_engine(caps: &EngineCaps) -> Result<Engine, RuntimeError> {
    caps.validate()?;
    let total = caps.instances_total_max;
    let mut pooling = PoolingAllocationConfig::new();
    pooling
        .total_component_instances(total)
        // Rust components hold one memory and a few core instances and
        // tables; these totals are averages across all live instances.
        .total_core_instances(total.saturating_mul(4))
        .total_memories(total)
        .total_tables(total.saturating_mul(2))
        .max_core_instances_per_component(caps.core_instances_per_component_max)
        .max_memories_per_component(caps.memories_per_component_max)
        .max_tables_per_component(caps.tables_per_component_max)
        .max_memory_size(usize::try_from(caps.memory_bytes_max).unwrap_or(usize::MAX))
        .table_elements(usize::try_from(caps.table_elements_max).unwrap_or(usize::MAX))
        // Reset a freed slot by rewriting only the pages the guest dirtied
        // (Linux PAGEMAP_SCAN, 6.7+) instead of `madvise`: no TLB
        // shootdown, and the next instance finds its pages resident. Where
        // the ioctl is missing this falls back to `madvise` (Auto).
        .pagemap_scan(Enabled::Auto)
        .linear_memory_keep_resident(LINEAR_MEMORY_KEEP_RESIDENT_BYTES)
        .table_keep_resident(TABLE_KEEP_RESIDENT_BYTES);

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .cranelift_opt_level(OptLevel::Speed)
        .max_wasm_stack(usize::try_from(caps.wasm_stack_bytes_max).unwrap_or(usize::MAX))
        .parallel_compilation(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    Engine::new(&config).map_err(|e| RuntimeError::Engine(format!("{e:#}")))
}

/// Ticks of the epoch deadline that give a call at least `budget_ms`.
pub(crate) fn deadline_ticks(budget_ms: u32, epoch_tick_ms: u32) -> u64 {
    debug_assert!(epoch_tick_ms > 0, "validated by RuntimeOptions");
    u64::from(budget_ms.div_ceil(epoch_tick_ms.max(1))) + 1
}

/// The thread that advances the engine's epoch; stopped on drop.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub(crate) fn start(engine: Engine, tick_ms: u32) -> Result<EpochTicker, RuntimeError> {
        assert!(tick_ms > 0, "a zero tick would spin");
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let tick = Duration::from_millis(tick_ms.into());
        let thread = std::thread::Builder::new()
            .name("levee-epoch".into())
            .spawn(move || tick_until_stopped(&engine, tick, &thread_stop))
            .map_err(RuntimeError::Ticker)?;
        Ok(EpochTicker {
            stop,
            thread: Some(thread),
        })
    }
}

/// Increments the epoch once per `tick` until `stop` is set. Each round
/// sleeps until its own due time so spurious wake-ups never make epochs
/// (and thus deadlines) run fast.
fn tick_until_stopped(engine: &Engine, tick: Duration, stop: &AtomicBool) {
    let mut due = Instant::now() + tick;
    while !stop.load(Ordering::Acquire) {
        let now = Instant::now();
        if now < due {
            std::thread::park_timeout(due - now);
            continue;
        }
        engine.increment_epoch();
        // After a long stall (suspended process) do not burst to catch up.
        due = (due + tick).max(now);
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            // The thread exits within one park; a panic there is a bug we
            // cannot do anything about while dropping.
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_covers_the_budget_plus_a_partial_tick() {
        assert_eq!(deadline_ticks(2, 1), 3);
        assert_eq!(deadline_ticks(1, 1), 2);
        assert_eq!(deadline_ticks(5, 2), 4);
        assert_eq!(deadline_ticks(4, 2), 3);
    }

    #[test]
    fn caps_are_validated() {
        EngineCaps::default().validate().unwrap();
        let bad = EngineCaps {
            instances_total_max: 0,
            ..EngineCaps::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("instances_total_max")
        );
    }
}
