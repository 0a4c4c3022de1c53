//! Typed templates and instances of the four worlds, and what a failed
//! guest call means.
//!
//! This is the lowest layer that knows about a running plugin: it sits on
//! the `bindgen!` output and the store data ([`HostState`]) and below
//! everything that compiles ([`crate::component`], [`crate::runtime`]) or
//! pools (`pool`) instances. Keeping [`WorldPre`], [`WorldInstance`] and
//! [`classify`] here is what lets those modules depend on each other one
//! way only: the compile side needs the template and the failure
//! classification, the pool needs the instance, and neither needs the
//! other to provide them.

use wasmtime::component::InstancePre;
use wasmtime::{Store, Trap};

use crate::bindings;
use crate::convert::{self, Scratch};
use crate::error::{Failure, LoadError};
use crate::host::{HostState, truncate_to_char_boundary};
use crate::kind::PolicyKind;
use crate::nodes::NodeTable;
use crate::plan_cache::RouteTraits;

/// Bytes of a trap description kept in a [`Failure`].
const TRAP_DETAIL_BYTES_MAX: usize = 512;
/// How wasmtime (pinned at 48.0.8; its error type is private) says a value
/// the guest handed the host was over the store's hostcall fuel. The zoo
/// tests (`aliased-output`) fail if a wasmtime upgrade rewords it.
const HOSTCALL_FUEL_EXHAUSTED: &str = "fuel allocated for hostcalls has been exhausted";

/// The pre-instantiation template of a component, typed by its world.
pub(crate) enum WorldPre {
    Retry(bindings::retry::RetryPolicyPre<HostState>),
    Routing(bindings::routing::RoutingPolicyPre<HostState>),
    Checkpoint(bindings::checkpoint::CheckpointPolicyPre<HostState>),
    Write(bindings::write::WritePolicyPre<HostState>),
}

impl WorldPre {
    /// Type-checks the component's exports against the world of `kind`.
    pub(crate) fn new(
        kind: PolicyKind,
        pre: InstancePre<HostState>,
    ) -> Result<WorldPre, LoadError> {
        let incompatible = |e: wasmtime::Error| LoadError::type_mismatch(kind, &e);
        Ok(match kind {
            PolicyKind::Retry => {
                WorldPre::Retry(bindings::retry::RetryPolicyPre::new(pre).map_err(incompatible)?)
            }
            PolicyKind::Routing => WorldPre::Routing(
                bindings::routing::RoutingPolicyPre::new(pre).map_err(incompatible)?,
            ),
            PolicyKind::Checkpoint => WorldPre::Checkpoint(
                bindings::checkpoint::CheckpointPolicyPre::new(pre).map_err(incompatible)?,
            ),
            PolicyKind::Write => {
                WorldPre::Write(bindings::write::WritePolicyPre::new(pre).map_err(incompatible)?)
            }
        })
    }

    /// Instantiates into `store`: runs the component's start code and
    /// type-checks every export function, but calls none.
    pub(crate) fn instantiate(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<WorldInstance> {
        match self {
            WorldPre::Retry(pre) => pre.instantiate(store).map(WorldInstance::Retry),
            WorldPre::Routing(pre) => pre.instantiate(store).map(WorldInstance::Routing),
            WorldPre::Checkpoint(pre) => pre.instantiate(store).map(WorldInstance::Checkpoint),
            WorldPre::Write(pre) => pre.instantiate(store).map(WorldInstance::Write),
        }
    }
}

/// A typed instance of one of the four worlds.
pub(crate) enum WorldInstance {
    Retry(bindings::retry::RetryPolicy),
    Routing(bindings::routing::RoutingPolicy),
    Checkpoint(bindings::checkpoint::CheckpointPolicy),
    Write(bindings::write::WritePolicy),
}

impl WorldInstance {
    /// Calls the world's `configure` export with the plugin's config; a
    /// routing plugin's answer says what it promises about `route` (other
    /// kinds promise nothing).
    pub(crate) fn call_configure(
        &self,
        store: &mut Store<HostState>,
        config: &str,
    ) -> wasmtime::Result<Result<RouteTraits, String>> {
        let nothing = |answer: Result<(), String>| answer.map(|()| RouteTraits::default());
        Ok(match self {
            WorldInstance::Retry(w) => {
                nothing(w.levee_policy_retry().call_configure(store, config)?)
            }
            WorldInstance::Routing(w) => w
                .levee_policy_routing()
                .call_configure(store, config)?
                .map(convert::route_traits),
            WorldInstance::Checkpoint(w) => {
                nothing(w.levee_policy_checkpoint().call_configure(store, config)?)
            }
            WorldInstance::Write(w) => {
                nothing(w.levee_policy_write().call_configure(store, config)?)
            }
        })
    }
}

/// One configured plugin instance and its store.
pub(crate) struct Instance {
    pub(crate) store: Store<HostState>,
    pub(crate) world: WorldInstance,
    /// The epoch of the node table last given to `set-nodes`; 0 (no
    /// table's epoch) until the first.
    pub(crate) nodes_epoch: u64,
    /// Buffers the call's lists are lowered from.
    pub(crate) scratch: Scratch,
}

impl Instance {
    pub(crate) fn new(store: Store<HostState>, world: WorldInstance) -> Instance {
        Instance {
            store,
            world,
            nodes_epoch: 0,
            scratch: Scratch::new(),
        }
    }

    /// Gives the instance `nodes` through `set-nodes` unless it already
    /// has that table: called inside the fenced call, before the policy
    /// call that names nodes by index. Checkpoint instances have no table.
    pub(crate) fn give_nodes(&mut self, nodes: &NodeTable) -> Result<(), Failure> {
        if self.nodes_epoch == nodes.epoch() {
            return Ok(());
        }
        let given = match &self.world {
            WorldInstance::Retry(w) => w
                .levee_policy_retry()
                .call_set_nodes(&mut self.store, nodes.wit()),
            WorldInstance::Routing(w) => w
                .levee_policy_routing()
                .call_set_nodes(&mut self.store, nodes.wit()),
            WorldInstance::Write(w) => w
                .levee_policy_write()
                .call_set_nodes(&mut self.store, nodes.wit()),
            WorldInstance::Checkpoint(_) => return Ok(()),
        };
        given.map_err(|e| classify(&self.store, &e))?;
        self.store.data().counters().record_node_table_given();
        self.nodes_epoch = nodes.epoch();
        Ok(())
    }

    /// Arms the deadline and resets per-call state.
    pub(crate) fn begin_call(&mut self, deadline_ticks: u64) {
        self.store.set_epoch_deadline(deadline_ticks);
        self.store.data_mut().begin_call();
    }
}

/// Whether a failed instantiation or call is the guest's doing (a trap or
/// a denied growth) rather than the host refusing the component's types.
pub(crate) fn is_guest_fault(store: &Store<HostState>, error: &wasmtime::Error) -> bool {
    store.data().growth_denied() || error.downcast_ref::<Trap>().is_some()
}

/// Turns a wasmtime error from instantiation or a guest call in `store`
/// into a [`Failure`]: a denied growth, the deadline, a trap, a value over
/// the hostcall fuel (invalid output), or the host lacking room for an
/// instance (host capacity, the only kind that is not the guest's fault).
pub(crate) fn classify(store: &Store<HostState>, error: &wasmtime::Error) -> Failure {
    if store.data().growth_denied() {
        return Failure::MemoryLimit;
    }
    // The root cause first: a host function's refusal (e.g. a WASI call
    // that would block) is what matters, and wasmtime wraps it in a long
    // wasm backtrace that would otherwise fill the detail.
    let detail = || {
        let detail = format!("{}; {error:#}", error.root_cause());
        truncate_to_char_boundary(&detail, TRAP_DETAIL_BYTES_MAX).to_string()
    };
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => Failure::Timeout,
        Some(trap) => Failure::Trap(trap.to_string()),
        None if is_hostcall_fuel_exhausted(error) => Failure::InvalidOutput(format!(
            "it handed the host more than {} bytes of strings and lists in one value \
             (the binding's hostcall bound); nothing was copied",
            store.hostcall_fuel()
        )),
        None if is_host_capacity(error) => Failure::HostCapacity(detail()),
        None => Failure::Trap(detail()),
    }
}

/// wasmtime refused to copy a value out of the guest: over the hostcall
/// fuel.
fn is_hostcall_fuel_exhausted(error: &wasmtime::Error) -> bool {
    error
        .chain()
        .any(|cause| cause.to_string().contains(HOSTCALL_FUEL_EXHAUSTED))
}

/// The host, not the guest, ran out of room: the engine's pooling
/// allocator has no free slot (instances, memories, tables, stacks are
/// shared by every plugin), or an allocation failed.
fn is_host_capacity(error: &wasmtime::Error) -> bool {
    error.is::<wasmtime::PoolConcurrencyLimitError>() || error.is::<wasmtime::OutOfMemory>()
}
