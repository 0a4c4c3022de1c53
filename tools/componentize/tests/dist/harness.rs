//! A minimal wasmtime host for levee's policy worlds: bindings, a seeded
//! `host` import that counts `random-u64` calls, `request` functions that
//! read the request lent to the call in progress, hide credentials like
//! the host's and record which headers a plugin asked for, a fuel budget
//! per call and a linear-memory cap that records when it refused to grow.

use levee_policy::limits::{HEADER_VALUE_BYTES_MAX, PATH_BYTES_MAX, is_credential_header};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, ResourceLimiter, Store, Trap};

pub mod retry {
    wasmtime::component::bindgen!({
        world: "retry-policy",
        path: "../../wit",
        imports: {
            "levee:policy/request": trappable,
        },
    });
}

pub mod routing {
    wasmtime::component::bindgen!({
        world: "routing-policy",
        path: "../../wit",
        with: {
            "levee:policy/types": super::retry::levee::policy::types,
            "levee:policy/host": super::retry::levee::policy::host,
            "levee:policy/request": super::retry::levee::policy::request,
        },
    });
}

pub mod checkpoint {
    wasmtime::component::bindgen!({
        world: "checkpoint-policy",
        path: "../../wit",
        with: {
            "levee:policy/types": super::retry::levee::policy::types,
            "levee:policy/host": super::retry::levee::policy::host,
        },
    });
}

pub use retry::levee::policy::types as wit;

/// The request a retry or routing call is about, as the `request`
/// functions show it.
#[derive(Debug, Clone, Default)]
pub struct RequestData {
    pub service: String,
    pub method: String,
    pub path: String,
    pub routing_key: String,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
}

/// The host's default memory cap for a plugin.
pub const MEMORY_BYTES_MAX: usize = 16 << 20;
/// Fuel per call: far more than any good decision needs, small enough that
/// a runaway loop ends in well under a second.
pub const FUEL_PER_CALL: u64 = 50_000_000;

/// Refuses growth past [`MEMORY_BYTES_MAX`] and remembers that it did.
pub struct MemoryCap {
    pub refused_growth: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= MEMORY_BYTES_MAX;
        self.refused_growth |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 10_000)
    }
}

pub struct HostState {
    pub cap: MemoryCap,
    /// The request lent to the call in progress (see [`with_request`]).
    lent: Option<RequestData>,
    /// Every name a plugin passed to `request.header`, in order.
    pub headers_asked: Vec<String>,
    random_state: u64,
    pub random_calls: u32,
    pub last_random: u64,
    pub logs: Vec<String>,
}

impl HostState {
    fn new(seed: u64) -> Self {
        HostState {
            cap: MemoryCap {
                refused_growth: false,
            },
            lent: None,
            headers_asked: Vec::new(),
            random_state: seed,
            random_calls: 0,
            last_random: 0,
            logs: Vec::new(),
        }
    }
}

impl wit::Host for HostState {}

impl retry::levee::policy::host::Host for HostState {
    fn log(&mut self, _level: wit::Level, message: String) {
        self.logs.push(message);
    }

    fn now_ms(&mut self) -> u64 {
        1_700_000_000_000
    }

    /// SplitMix64: seeded, so every run replays the same values.
    fn random_u64(&mut self) -> u64 {
        self.random_state = self.random_state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.random_state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        self.random_calls += 1;
        self.last_random = z ^ (z >> 31);
        self.last_random
    }
}

/// Like the host's: a function called with no request lent traps.
impl retry::levee::policy::request::Host for HostState {
    fn service(&mut self) -> wasmtime::Result<String> {
        Ok(self.request()?.service.clone())
    }

    fn method(&mut self) -> wasmtime::Result<String> {
        Ok(self.request()?.method.clone())
    }

    fn path(&mut self) -> wasmtime::Result<String> {
        Ok(cut(&self.request()?.path, PATH_BYTES_MAX).to_string())
    }

    fn routing_key(&mut self) -> wasmtime::Result<String> {
        Ok(self.request()?.routing_key.clone())
    }

    /// Credentials read as absent, as the host's do.
    fn header(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        let value = if is_credential_header(&name) {
            None
        } else {
            let headers = &self.request()?.headers;
            headers
                .iter()
                .find(|(header, _)| header.eq_ignore_ascii_case(&name))
                .map(|(_, value)| cut(value, HEADER_VALUE_BYTES_MAX).to_string())
        };
        self.headers_asked.push(name);
        Ok(value)
    }
}

impl HostState {
    fn request(&self) -> wasmtime::Result<&RequestData> {
        self.lent
            .as_ref()
            .ok_or_else(|| wasmtime::format_err!("request read outside a decide or route call"))
    }
}

/// `text` cut to at most `bytes_max` bytes, at a character boundary.
fn cut(text: &str, bytes_max: usize) -> &str {
    let mut end = text.len().min(bytes_max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Lends `request` to one call, as the host does: readable through the
/// `request` functions for the call's duration only.
pub fn with_request<R>(
    store: &mut Store<HostState>,
    request: &RequestData,
    call: impl FnOnce(&mut Store<HostState>) -> R,
) -> R {
    store.data_mut().lent = Some(request.clone());
    let answer = call(store);
    store.data_mut().lent = None;
    answer
}

pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = Config::new();
        config.consume_fuel(true);
        Engine::new(&config).expect("engine")
    })
}

/// Loads `plugins/dist/<name>.wasm` (compiled once per test process),
/// failing with the fix when it is missing.
pub fn component(name: &str) -> Component {
    static COMPILED: Mutex<BTreeMap<String, Component>> = Mutex::new(BTreeMap::new());
    if let Some(component) = COMPILED.lock().unwrap().get(name) {
        return component.clone();
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../plugins/dist")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-plugins.sh first",
        path.display()
    );
    let component = Component::from_file(engine(), &path)
        .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
    COMPILED
        .lock()
        .unwrap()
        .insert(name.to_string(), component.clone());
    component
}

pub fn linker() -> Linker<HostState> {
    let mut linker = Linker::new(engine());
    retry::RetryPolicy::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
        .expect("host imports");
    linker
}

pub fn store(seed: u64) -> Store<HostState> {
    let mut store = Store::new(engine(), HostState::new(seed));
    store.limiter(|state| &mut state.cap);
    store.set_fuel(FUEL_PER_CALL).expect("fuel is enabled");
    store
}

/// A fresh budget before each call, as the host grants per call.
pub fn refuel(store: &mut Store<HostState>) {
    store.set_fuel(FUEL_PER_CALL).expect("fuel is enabled");
}

/// The trap behind a failed call (panics if the failure was not a trap).
pub fn trap_of(error: &wasmtime::Error) -> Trap {
    *error
        .downcast_ref::<Trap>()
        .unwrap_or_else(|| panic!("not a trap: {error:#}"))
}

pub fn instantiate_retry(
    name: &str,
    config: &str,
    seed: u64,
) -> (Store<HostState>, retry::RetryPolicy) {
    let mut store = store(seed);
    let policy = retry::RetryPolicy::instantiate(&mut store, &component(name), &linker())
        .unwrap_or_else(|e| panic!("{name}: {e:#}"));
    let configured = policy
        .levee_policy_retry()
        .call_configure(&mut store, config);
    configured
        .expect("configure call")
        .expect("config accepted");
    refuel(&mut store);
    (store, policy)
}

pub fn instantiate_routing(name: &str, config: &str) -> (Store<HostState>, routing::RoutingPolicy) {
    let mut store = store(1);
    let policy = routing::RoutingPolicy::instantiate(&mut store, &component(name), &linker())
        .unwrap_or_else(|e| panic!("{name}: {e:#}"));
    let configured = policy
        .levee_policy_routing()
        .call_configure(&mut store, config);
    configured
        .expect("configure call")
        .expect("config accepted");
    refuel(&mut store);
    (store, policy)
}

pub fn instantiate_checkpoint(
    name: &str,
    config: &str,
) -> (Store<HostState>, checkpoint::CheckpointPolicy) {
    let mut store = store(1);
    let policy = checkpoint::CheckpointPolicy::instantiate(&mut store, &component(name), &linker())
        .unwrap_or_else(|e| panic!("{name}: {e:#}"));
    let configured = policy
        .levee_policy_checkpoint()
        .call_configure(&mut store, config);
    configured
        .expect("configure call")
        .expect("config accepted");
    refuel(&mut store);
    (store, policy)
}
