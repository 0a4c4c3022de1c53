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
//!   waiting; so does one for which the engine has no free slot
//!   ([`Failure::HostCapacity`]). Both are the host's limits, not the
//!   plugin's fault: they do not count toward quarantine.
//! - A lease that is not explicitly [`Lease::recycle`]d is discarded when
//!   dropped. Only a call that returned normally and validly recycles, so
//!   an instance that trapped, timed out, hit a limit or answered nonsense
//!   is never reused (its guest state may be corrupt).
//! - Leasing and returning take no lock (see [`Pool`]).
//! - Every instance runs under a fresh [`HostState`] with the plugin's
//!   [`Limits`] and [`HeaderAllowlist`], in a [`fenced_store`] (memory
//!   limiter, hostcall fuel); instantiation and `configure` get their own
//!   deadline.

use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use wasmtime::Store;

use crate::component::Compiled;
use crate::engine::deadline_ticks;
use crate::error::Failure;
use crate::headers::HeaderAllowlist;
use crate::host::{HostState, PluginTag, fenced_store, truncate_to_char_boundary};
use crate::instance::{Instance, classify};
use crate::limits::Limits;
use crate::plan_cache::RouteTraits;
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
    /// The request headers the plugin may read.
    pub(crate) headers: HeaderAllowlist,
    pub(crate) config: String,
}

impl Recipe {
    /// Store + instantiate + `configure`, under the configure deadline;
    /// with what `configure` declared.
    pub(crate) fn instantiate(&self) -> Result<(Instance, RouteTraits), InstantiateError> {
        let state = HostState::new(
            self.tag.clone(),
            self.runtime.env().clone(),
            self.counters.clone(),
            &self.limits,
            self.headers.clone(),
        );
        let mut store = fenced_store(self.runtime.engine(), state, &self.limits);
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
            Ok(Ok(traits)) => Ok((Instance::new(store, world), traits)),
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

/// One idle-instance slot: null, or an instance the pool owns (a leaked
/// `Box<Instance>`). Each slot has its own cache line, so threads leasing
/// from different slots do not contend.
#[repr(align(64))]
struct Slot(AtomicPtr<Instance>);

/// The bounded set of ready instances of one bound plugin.
///
/// Lock-free: idle instances sit in slots, and leasing or returning one is
/// one atomic swap or compare-exchange on the first slot that holds (or
/// lacks) one, starting at the calling thread's own slot. So a thread
/// tends to get back the instance it returned, its guest memory still warm
/// in this core's cache. `live` counts idle plus leased instances and is
/// only raised below `live_max`.
pub(crate) struct Pool {
    recipe: Recipe,
    /// `max(idle_max, 1)` slots: the first `idle_max` take returned
    /// instances; the extra one when `idle_max` is 0 only ever holds the
    /// instance [`Pool::prime`] made.
    slots: Box<[Slot]>,
    idle_max: usize,
    /// Idle plus leased instances.
    live: AtomicU32,
    live_max: u32,
    /// What the first instance's `configure` declared ([`Pool::prime`]);
    /// every later instance must declare the same.
    declared: OnceLock<RouteTraits>,
}

// Idle instances move between threads through the slots.
const _: () = {
    const fn must_be_send<T: Send>() {}
    must_be_send::<Instance>();
};

thread_local! {
    /// The slot this thread tries first, in every pool.
    static SLOT_HINT: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed)
    };
}

fn slot_hint() -> usize {
    SLOT_HINT.with(|hint| *hint)
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
            slots: (0..idle_max.max(1))
                .map(|_| Slot(AtomicPtr::new(ptr::null_mut())))
                .collect(),
            idle_max,
            live: AtomicU32::new(0),
            live_max,
            declared: OnceLock::new(),
        }
    }

    /// Makes one instance now and keeps it idle (even when `idle_max` is
    /// 0, in which case it serves one call); used at bind time so a bad
    /// config is refused before the plugin serves anything. Returns (and
    /// holds every later instance to) what its `configure` declared.
    pub(crate) fn prime(&self) -> Result<RouteTraits, InstantiateError> {
        self.reserve().map_err(InstantiateError::Failed)?;
        match self.recipe.instantiate() {
            Ok((instance, traits)) => {
                let declared = *self.declared.get_or_init(|| traits);
                debug_assert_eq!(declared, traits, "prime runs once");
                let instance = Box::into_raw(Box::new(instance));
                // Only `bind` primes, before the pool is shared: the first
                // slot is empty.
                let parked = self.slots[0].0.compare_exchange(
                    ptr::null_mut(),
                    instance,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                );
                debug_assert!(parked.is_ok(), "prime runs first, on an empty pool");
                if parked.is_err() {
                    // SAFETY: not parked, so still owned here.
                    self.discard(unsafe { Box::from_raw(instance) });
                }
                Ok(declared)
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
        if let Some(instance) = self.take_idle() {
            return Ok(Lease {
                pool: self,
                instance: Some(instance),
            });
        }
        self.reserve()?;
        match self.recipe.instantiate() {
            Ok((instance, traits)) if Some(&traits) == self.declared.get() => Ok(Lease {
                pool: self,
                instance: Some(Box::new(instance)),
            }),
            Ok((instance, traits)) => {
                // A plugin whose promise changes between instances cannot
                // be held to it: this instance never serves.
                self.discard(Box::new(instance));
                Err(Failure::Instantiate(format!(
                    "configure declared {traits:?}, not the {:?} it declared at bind",
                    self.declared.get()
                )))
            }
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

    /// Takes an idle instance out of the first slot that has one.
    fn take_idle(&self) -> Option<Box<Instance>> {
        let count = self.slots.len();
        let start = slot_hint();
        for step in 0..count {
            let slot = &self.slots[(start + step) % count].0;
            // A plain load first: an empty slot costs no write.
            if slot.load(Ordering::Relaxed).is_null() {
                continue;
            }
            let instance = slot.swap(ptr::null_mut(), Ordering::AcqRel);
            if !instance.is_null() {
                // SAFETY: a non-null slot holds a `Box<Instance>` leaked by
                // `prime` or `give_back`; the swap made this thread its
                // only owner (the Acquire pairs with the Release that
                // parked it).
                return Some(unsafe { Box::from_raw(instance) });
            }
        }
        None
    }

    /// Counts one more live instance, unless the pool is full.
    fn reserve(&self) -> Result<(), Failure> {
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |live| {
                (live < self.live_max).then_some(live + 1)
            })
            .map(drop)
            .map_err(|_| Failure::PoolExhausted)
    }

    fn release_slot(&self) {
        let before = self.live.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(before > 0);
    }

    /// Drops an instance that will not be kept and counts it out.
    fn discard(&self, instance: Box<Instance>) {
        drop(instance);
        self.release_slot();
    }

    /// Parks a healthy instance in a free slot among the first
    /// `idle_max`, or drops it when they are all taken.
    fn give_back(&self, instance: Box<Instance>) {
        let count = self.idle_max;
        if count == 0 {
            return self.discard(instance);
        }
        let instance = Box::into_raw(instance);
        let start = slot_hint();
        for step in 0..count {
            let slot = &self.slots[(start + step) % count].0;
            if slot.load(Ordering::Relaxed).is_null()
                && slot
                    .compare_exchange(
                        ptr::null_mut(),
                        instance,
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    )
                    .is_ok()
            {
                return;
            }
        }
        // SAFETY: no slot took it, so it is still owned here.
        self.discard(unsafe { Box::from_raw(instance) });
    }

    /// (idle, live) right now (a racy snapshot while calls run).
    pub(crate) fn occupancy(&self) -> (u32, u32) {
        let idle = self
            .slots
            .iter()
            .filter(|slot| !slot.0.load(Ordering::Acquire).is_null())
            .count();
        (idle as u32, self.live.load(Ordering::Acquire))
    }

    pub(crate) fn recipe(&self) -> &Recipe {
        &self.recipe
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for slot in self.slots.iter_mut() {
            let instance = std::mem::replace(slot.0.get_mut(), ptr::null_mut());
            if !instance.is_null() {
                // SAFETY: `&mut self`: no lease or return is in progress,
                // and a non-null slot owns its leaked box.
                drop(unsafe { Box::from_raw(instance) });
            }
        }
    }
}

/// One instance lent to one call. Dropped without [`Lease::recycle`], the
/// instance is discarded.
pub(crate) struct Lease<'pool> {
    pool: &'pool Pool,
    instance: Option<Box<Instance>>,
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
            self.pool.discard(instance);
            self.pool.recipe.counters.record_discard();
        }
    }
}
