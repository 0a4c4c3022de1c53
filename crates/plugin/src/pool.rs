//! The instance pool of one bound plugin.
//!
//! Instantiating a component costs tens of microseconds (store, pooled
//! memory slot, start functions, `configure`); calling an existing instance
//! costs well under a microsecond. So calls reuse instances: each is
//! created and `configure`d once, kept idle between calls, and handed to
//! one call at a time through a [`Lease`].
//!
//! Rules:
//! - At most `pool_idle_max` idle instances are kept; more are dropped on
//!   return. At most `pool_instances_max` exist at once; a call that finds
//!   none idle and the pool full fails fast with
//!   [`Failure::PoolExhausted`] (and is answered natively) instead of
//!   waiting.
//! - A lease that is not explicitly [`Lease::recycle`]d is discarded when
//!   dropped. Only a call that returned normally and validly recycles, so
//!   an instance that trapped, timed out, hit a limit or answered nonsense
//!   is never reused (its guest state may be corrupt).
//! - Every instance runs under a fresh [`HostState`] with the plugin's
//!   [`Limits`]; instantiation and `configure` get their own deadline.

use std::sync::{Arc, Mutex};

use wasmtime::Store;

use crate::component::Compiled;
use crate::engine::deadline_ticks;
use crate::error::Failure;
use crate::host::{HostState, PluginTag, truncate_to_char_boundary};
use crate::instance::{Instance, classify};
use crate::limits::Limits;
use crate::runtime::Runtime;
use crate::stats::Counters;

/// Why a fresh instance could not be made.
pub(crate) enum InstantiateError {
    /// `configure` answered with an error: the plugin's own reason.
    ConfigRejected(String),
    /// Instantiation or `configure` trapped, timed out or hit a limit.
    Failed(Failure),
}

/// Everything needed to make a fresh instance of a bound plugin.
pub(crate) struct Recipe {
    /// Held (not just its engine) so the epoch ticker outlives every
    /// binding: without it a looping plugin could never be interrupted.
    pub(crate) runtime: Runtime,
    pub(crate) compiled: Arc<Compiled>,
    pub(crate) tag: Arc<PluginTag>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) limits: Limits,
    pub(crate) config: String,
}

impl Recipe {
    /// Store + instantiate + `configure`, under the configure deadline.
    pub(crate) fn instantiate(&self) -> Result<Instance, InstantiateError> {
        let state = HostState::new(
            self.tag.clone(),
            self.runtime.env().clone(),
            self.counters.clone(),
            &self.limits,
        );
        let mut store = Store::new(self.runtime.engine(), state);
        store.limiter(|state| state.limiter());
        store.set_epoch_deadline(deadline_ticks(
            self.limits.configure_timeout_ms,
            self.runtime.epoch_tick_ms(),
        ));
        store.data_mut().begin_call();
        self.counters.record_instantiation();

        let failed = |store: &Store<HostState>, e: wasmtime::Error| {
            InstantiateError::Failed(classify(store, &e))
        };
        let world = self.compiled.pre.instantiate(&mut store);
        let world = world.map_err(|e| failed(&store, e))?;
        match world.call_configure(&mut store, &self.config) {
            Ok(Ok(())) => Ok(Instance::new(store, world)),
            Ok(Err(reason)) => {
                let reason = truncate_to_char_boundary(
                    &reason,
                    self.limits.returned_string_bytes_max as usize,
                );
                Err(InstantiateError::ConfigRejected(reason.to_string()))
            }
            Err(e) => Err(failed(&store, e)),
        }
    }
}

struct PoolState {
    idle: Vec<Instance>,
    /// Idle plus leased instances.
    live: u32,
}

/// The bounded set of ready instances of one bound plugin.
pub(crate) struct Pool {
    recipe: Recipe,
    state: Mutex<PoolState>,
    idle_max: usize,
    live_max: u32,
}

impl Pool {
    pub(crate) fn new(recipe: Recipe) -> Pool {
        let idle_max = recipe.limits.pool_idle_max as usize;
        let live_max = recipe.limits.pool_instances_max;
        assert!(
            idle_max <= live_max as usize && live_max > 0,
            "validated by Limits::validate"
        );
        Pool {
            recipe,
            state: Mutex::new(PoolState {
                idle: Vec::with_capacity(idle_max),
                live: 0,
            }),
            idle_max,
            live_max,
        }
    }

    /// Makes one instance now and keeps it idle (even when `idle_max` is
    /// 0, in which case it serves one call); used at bind time so a bad
    /// config is refused before the plugin serves anything.
    pub(crate) fn prime(&self) -> Result<(), InstantiateError> {
        self.reserve().map_err(InstantiateError::Failed)?;
        match self.recipe.instantiate() {
            Ok(instance) => {
                self.lock().idle.push(instance);
                Ok(())
            }
            Err(e) => {
                self.release_slot();
                Err(e)
            }
        }
    }

    /// An instance for one call: an idle one, or a fresh one if the pool
    /// has room.
    pub(crate) fn acquire(&self) -> Result<Lease<'_>, Failure> {
        {
            let mut state = self.lock();
            if let Some(instance) = state.idle.pop() {
                return Ok(Lease {
                    pool: self,
                    instance: Some(instance),
                });
            }
            if state.live >= self.live_max {
                return Err(Failure::PoolExhausted);
            }
            state.live += 1;
        }
        match self.recipe.instantiate() {
            Ok(instance) => Ok(Lease {
                pool: self,
                instance: Some(instance),
            }),
            Err(e) => {
                self.release_slot();
                Err(match e {
                    InstantiateError::ConfigRejected(reason) => Failure::Instantiate(format!(
                        "configure rejected the config it accepted before: {reason}"
                    )),
                    InstantiateError::Failed(failure) => failure,
                })
            }
        }
    }

    fn reserve(&self) -> Result<(), Failure> {
        let mut state = self.lock();
        if state.live >= self.live_max {
            return Err(Failure::PoolExhausted);
        }
        state.live += 1;
        Ok(())
    }

    fn release_slot(&self) {
        let mut state = self.lock();
        debug_assert!(state.live > 0);
        state.live = state.live.saturating_sub(1);
    }

    fn give_back(&self, instance: Instance) {
        let mut state = self.lock();
        if state.idle.len() < self.idle_max {
            state.idle.push(instance);
        } else {
            state.live = state.live.saturating_sub(1);
            drop(state);
            drop(instance);
        }
    }

    /// (idle, live) right now.
    pub(crate) fn occupancy(&self) -> (u32, u32) {
        let state = self.lock();
        (state.idle.len() as u32, state.live)
    }

    /// The pool's state is a plain list and a count: a panic while holding
    /// the lock cannot leave it inconsistent, so poisoning is ignored.
    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn recipe(&self) -> &Recipe {
        &self.recipe
    }
}

/// One instance lent to one call. Dropped without [`Lease::recycle`], the
/// instance is discarded.
pub(crate) struct Lease<'pool> {
    pool: &'pool Pool,
    instance: Option<Instance>,
}

impl Lease<'_> {
    pub(crate) fn instance(&mut self) -> &mut Instance {
        self.instance
            .as_mut()
            .expect("present until recycled or dropped")
    }

    /// Returns a healthy instance to the pool.
    pub(crate) fn recycle(mut self) {
        if let Some(instance) = self.instance.take() {
            self.pool.give_back(instance);
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(instance) = self.instance.take() {
            drop(instance);
            self.pool.release_slot();
            self.pool.recipe.counters.record_discard();
        }
    }
}
