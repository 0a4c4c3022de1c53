//! The store data of every plugin instance, and the `host` and `request`
//! imports.
//!
//! [`HostState`] is what a plugin's `Store` carries: the tag naming the
//! plugin in logs, the [`HostEnv`] behind `now-ms` and `random-u64`, the
//! store limiter, the per-call log quota, and the request lent to the
//! current call. It implements the WIT `host` and `request` interfaces, the
//! only things a plugin can call:
//! - `log`: forwarded to `tracing` with the plugin's name and version,
//!   the message truncated to [`LOG_MESSAGE_BYTES_MAX`] (or the binding's
//!   `returned_string_bytes_max`, if smaller) and escaped (a plugin cannot
//!   forge log lines), at most [`crate::Limits::log_calls_per_call_max`]
//!   per policy call; the rest are dropped and counted. wasmtime copies a
//!   message before this runs, so what bounds that copy is the store's
//!   hostcall fuel ([`fenced_store`]): a longer message fails the call.
//! - `now-ms`, `random-u64`: from the [`HostEnv`].
//! - the `request` functions: read from the caller's [`RequestView`],
//!   lent for exactly one call by [`with_request`] (outside such a call
//!   they trap); each returns an owned copy of what it reads, bounded (path
//!   at [`PATH_BYTES_MAX`], header values at [`HEADER_VALUE_BYTES_MAX`], cut
//!   at a character boundary), and `header` answers `none` for any header
//!   the binding's [`HeaderAllowlist`] does not list, and for credentials
//!   whatever the list and the case of the name.
//!
//! Whether a call read the request, the clock or the random source is
//! remembered ([`HostState::read_ambient`]): a route plan that depends on
//! them is never cached (see `plan_cache`).
//!
//! It also wraps wasmtime's [`StoreLimits`] so that a denied memory or
//! table growth is remembered: the call's failure is then classified as
//! [`crate::Failure::MemoryLimit`] rather than a generic trap.

use std::ptr::NonNull;
use std::sync::Arc;

use levee_policy::RequestView;
use levee_policy::limits::{HEADER_VALUE_BYTES_MAX, PATH_BYTES_MAX, is_credential_header};
use wasmtime::{Engine, ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder};

use crate::bindings::{wit_host, wit_request, wit_types};
use crate::env::HostEnv;
use crate::headers::HeaderAllowlist;
use crate::limits::{LOG_MESSAGE_BYTES_MAX, Limits, hostcall_fuel_bytes};
use crate::stats::Counters;
use crate::tag::Tag;
use crate::wasi::WasiState;

/// Who a plugin instance is, for log lines.
#[derive(Debug)]
pub(crate) struct PluginTag {
    pub(crate) name: Tag,
    pub(crate) version: Tag,
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
    /// Bytes of a `host.log` message kept.
    log_message_bytes_max: usize,
    /// The request headers this binding's plugin may read.
    headers: HeaderAllowlist,
    /// The request lent to the current call, if any (see [`with_request`]).
    lent: LentView,
    /// Set when the current call read the request, the clock or the random
    /// source; reset before each call.
    read_ambient: bool,
    /// The WASI context, built on the instance's first WASI call (a plugin
    /// that imports no WASI never has one; see [`crate::wasi`]).
    wasi: Option<Box<WasiState>>,
}

/// The caller's request for the duration of one call, lifetime erased.
///
/// Only [`with_request`] sets it, and it clears it before returning (also
/// on a trap, an error or a panic), so whenever it is `Some` the view it
/// points to is alive and borrowed by the frame that called
/// [`with_request`].
struct LentView(Option<NonNull<dyn RequestView>>);

// SAFETY: the pointer is only set while `with_request` runs on the thread
// that owns the borrow, and only dereferenced by host functions, which
// wasmtime runs on that same thread inside that call. A `HostState` moved
// to another thread (an idle pooled instance) always holds `None`.
unsafe impl Send for LentView {}

/// Lends `request` to the `request` functions for the duration of `call`:
/// host functions only run inside a guest call, which `call` makes and
/// finishes before this returns, so the view outlives every use.
pub(crate) fn with_request<R>(
    store: &mut Store<HostState>,
    request: &dyn RequestView,
    call: impl FnOnce(&mut Store<HostState>) -> R,
) -> R {
    /// Clears the lent view when the call ends, however it ends.
    struct Return<'s>(&'s mut Store<HostState>);
    impl Drop for Return<'_> {
        fn drop(&mut self) {
            self.0.data_mut().lent = LentView(None);
        }
    }
    let view: NonNull<dyn RequestView + '_> = NonNull::from(request);
    // SAFETY: only the trait object's lifetime bound changes (same fat
    // pointer). The erased pointer lives in the store only until `Return`
    // drops at the end of this function, while `request` is still
    // borrowed; see `LentView`.
    let view: NonNull<dyn RequestView + 'static> = unsafe { std::mem::transmute(view) };
    store.data_mut().lent = LentView(Some(view));
    let guard = Return(store);
    call(&mut *guard.0)
}

/// A store for one plugin instance, fenced by `limits`: the memory and
/// table limiter, and the hostcall fuel ([`hostcall_fuel_bytes`]), which
/// wasmtime applies afresh to every value it copies out of the guest (each
/// export answer, each import call's arguments). Every instance, the
/// load-time trial one included, is made here.
pub(crate) fn fenced_store(engine: &Engine, state: HostState, limits: &Limits) -> Store<HostState> {
    let mut store = Store::new(engine, state);
    store.limiter(|state| state.limiter());
    store.set_hostcall_fuel(hostcall_fuel_bytes(limits));
    store
}

impl HostState {
    pub(crate) fn new(
        tag: Arc<PluginTag>,
        env: HostEnv,
        counters: Arc<Counters>,
        limits: &Limits,
        headers: HeaderAllowlist,
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
            log_message_bytes_max: LOG_MESSAGE_BYTES_MAX
                .min(limits.returned_string_bytes_max as usize),
            headers,
            lent: LentView(None),
            read_ambient: false,
            wasi: None,
        }
    }

    /// The instance's WASI state, built on first use.
    pub(crate) fn wasi(&mut self) -> &mut WasiState {
        let (tag, env, counters) = (&self.tag, &self.env, &self.counters);
        let lines_max = self.log_calls_max;
        self.wasi
            .get_or_insert_with(|| Box::new(WasiState::new(tag, env, counters, lines_max)))
    }

    /// Resets the per-call state before a policy call.
    pub(crate) fn begin_call(&mut self) {
        self.growth_denied = false;
        self.log_calls = 0;
        self.lent = LentView(None);
        self.read_ambient = false;
        if let Some(wasi) = &mut self.wasi {
            wasi.begin_call(self.log_calls_max);
        }
    }

    /// The request lent to the call in progress; a trap when there is
    /// none (`configure`, `set-nodes`).
    fn lent_request(&mut self) -> wasmtime::Result<&dyn RequestView> {
        self.read_ambient = true;
        match self.lent.0 {
            // SAFETY: set only inside `with_request`, which keeps the view
            // borrowed until it clears this field; host functions run only
            // inside that call (see `LentView`).
            Some(view) => Ok(unsafe { view.as_ref() }),
            None => Err(wasmtime::format_err!(
                "levee:policy/request used outside a decide or route call"
            )),
        }
    }

    /// The counters of the binding this instance belongs to.
    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Whether the call since [`HostState::begin_call`] read the request,
    /// the clock or the random source: inputs a cached route plan does not
    /// capture.
    pub(crate) fn read_ambient(&self) -> bool {
        self.read_ambient || self.wasi.as_ref().is_some_and(|wasi| wasi.read_ambient())
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
        let message = truncate_to_char_boundary(&message, self.log_message_bytes_max);
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
        self.read_ambient = true;
        self.env.now_ms()
    }

    fn random_u64(&mut self) -> u64 {
        self.read_ambient = true;
        self.env.random_u64()
    }
}

/// Every `request` function is trappable: one called with no request
/// lent traps.
impl wit_request::Host for HostState {
    fn service(&mut self) -> wasmtime::Result<String> {
        Ok(self.lent_request()?.service().to_owned())
    }

    fn method(&mut self) -> wasmtime::Result<String> {
        Ok(self.lent_request()?.method().to_owned())
    }

    fn path(&mut self) -> wasmtime::Result<String> {
        let path = self.lent_request()?.path();
        Ok(truncate_to_char_boundary(path, PATH_BYTES_MAX).to_owned())
    }

    fn routing_key(&mut self) -> wasmtime::Result<String> {
        Ok(self.lent_request()?.routing_key().to_owned())
    }

    fn header(&mut self, mut name: String) -> wasmtime::Result<Option<String>> {
        name.make_ascii_lowercase();
        // Both checks, whatever the list says: a credential is never shown.
        let allowed = self.headers.allows(&name) && !is_credential_header(&name);
        let request = self.lent_request()?;
        if !allowed {
            return Ok(None);
        }
        Ok(request
            .header(&name)
            .map(|value| truncate_to_char_boundary(value, HEADER_VALUE_BYTES_MAX).to_owned()))
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
    use crate::bindings::wit_request::Host as _;

    /// A view that shows everything, credentials included: hiding them is
    /// the host functions' job.
    struct View {
        path: String,
        headers: Vec<(&'static str, String)>,
    }

    impl RequestView for View {
        fn service(&self) -> &str {
            "kv"
        }
        fn method(&self) -> &str {
            "PROPFIND"
        }
        fn path(&self) -> &str {
            &self.path
        }
        fn routing_key(&self) -> &str {
            "users"
        }
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        }
    }

    /// A store whose plugin may read `x-echo`, `x-long`, `x-wide` and
    /// `idempotency-key`.
    fn store() -> Store<HostState> {
        let listed = ["x-echo", "x-long", "x-wide", "idempotency-key"];
        store_allowing(HeaderAllowlist::new(&listed).unwrap())
    }

    fn store_allowing(headers: HeaderAllowlist) -> Store<HostState> {
        let tag = Arc::new(PluginTag {
            name: "test".into(),
            version: "v".into(),
        });
        let limits = Limits::default();
        let state = HostState::new(tag, HostEnv::seeded(1, 1), Arc::default(), &limits, headers);
        let store = fenced_store(&wasmtime::Engine::default(), state, &limits);
        assert_eq!(store.hostcall_fuel(), hostcall_fuel_bytes(&limits));
        store
    }

    fn service(store: &mut Store<HostState>) -> wasmtime::Result<String> {
        store.data_mut().service()
    }

    #[test]
    fn the_request_is_readable_only_while_lent() {
        let mut store = store();
        let view = View {
            path: format!("/{}", "é".repeat(PATH_BYTES_MAX)),
            headers: vec![
                ("x-echo", "hello".into()),
                ("x-long", "ab".repeat(HEADER_VALUE_BYTES_MAX)),
                ("x-wide", "é".repeat(HEADER_VALUE_BYTES_MAX)),
                ("authorization", "Bearer secret".into()),
                ("proxy-authorization", "Basic secret".into()),
                ("cookie", "session=secret".into()),
                ("set-cookie", "session=secret".into()),
                ("x-unlisted", "tenant-7".into()),
                ("idempotency-key", "k1".into()),
            ],
        };
        let error = service(&mut store).unwrap_err();
        assert!(error.to_string().contains("outside a decide"), "{error}");

        with_request(&mut store, &view, |store| {
            let state = store.data_mut();
            assert_eq!(state.service().unwrap(), "kv");
            assert_eq!(state.method().unwrap(), "PROPFIND");
            assert_eq!(state.routing_key().unwrap(), "users");
            let path = state.path().unwrap();
            assert!(path.len() <= PATH_BYTES_MAX && path.len() > PATH_BYTES_MAX - 2);
            assert!(view.path.starts_with(&path));
            let header =
                |state: &mut HostState, name: &str| state.header(name.to_string()).unwrap();
            assert_eq!(header(state, "X-Echo").as_deref(), Some("hello"));
            assert_eq!(header(state, "x-missing"), None);
            let long = header(state, "x-long").unwrap();
            assert_eq!(long.len(), HEADER_VALUE_BYTES_MAX);
            let wide = header(state, "X-WIDE").unwrap();
            assert_eq!(wide, "é".repeat(HEADER_VALUE_BYTES_MAX / 2));
            assert_eq!(header(state, "Idempotency-Key").as_deref(), Some("k1"));
            // Present but not listed: absent to the plugin.
            assert_eq!(header(state, "x-unlisted"), None);
            for credential in [
                "authorization",
                "Authorization",
                "PROXY-AUTHORIZATION",
                "Cookie",
                "Set-Cookie",
            ] {
                assert_eq!(header(state, credential), None, "{credential}");
            }
        });
        // The default list shows the idempotency key only.
        let mut default = store_allowing(HeaderAllowlist::default());
        with_request(&mut default, &view, |store| {
            let state = store.data_mut();
            assert_eq!(state.header("x-echo".into()).unwrap(), None);
            let key = state.header("idempotency-key".into()).unwrap();
            assert_eq!(key.as_deref(), Some("k1"));
        });
        // Returned: lent no more.
        assert!(service(&mut store).is_err());

        // Also after a panic inside the call.
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            with_request(&mut store, &view, |store| {
                assert_eq!(service(store).unwrap(), "kv");
                panic!("the call unwinds");
            })
        }));
        assert!(unwound.is_err());
        assert!(service(&mut store).is_err());
    }

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
