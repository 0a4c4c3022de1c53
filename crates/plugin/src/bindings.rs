//! `bindgen!` output for the four worlds of `wit/levee-policy.wit`
//! (`levee:policy@0.2.0`).
//!
//! Why four invocations: a world is the unit `bindgen!` generates a typed
//! instance for, and levee loads plugins of four different worlds. The
//! worlds share the `types`, `host` and `request` interfaces, so the retry
//! world generates them once and the other two map onto those modules with
//! `with:`. That way there is exactly one Rust type per WIT type and one
//! `Host` implementation serves every plugin (see [`crate::host`]).
//!
//! The `request` functions read the caller's `RequestView`, lent for the
//! duration of one call (see [`crate::host::with_request`]); they are
//! `trappable` so that a function reached with no request lent (from
//! `configure` or `set-nodes`) traps instead of answering.
//!
//! Nothing here is public: the rest of the crate converts between these
//! generated types and the plain-Rust types of `levee_policy` at the
//! boundary ([`crate::convert`]), so callers never see `bindgen!` output.

/// The `retry-policy` world, plus the shared `types`, `host` and `request`
/// interfaces.
pub(crate) mod retry {
    wasmtime::component::bindgen!({
        world: "retry-policy",
        path: "../../wit",
        imports: {
            "levee:policy/request": trappable,
        },
    });
}

/// The `routing-policy` world; shared interfaces come from [`retry`].
pub(crate) mod routing {
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

/// The `checkpoint-policy` world; shared interfaces come from [`retry`].
pub(crate) mod checkpoint {
    wasmtime::component::bindgen!({
        world: "checkpoint-policy",
        path: "../../wit",
        with: {
            "levee:policy/types": super::retry::levee::policy::types,
            "levee:policy/host": super::retry::levee::policy::host,
        },
    });
}

/// The `write-policy` world; shared interfaces come from [`retry`].
pub(crate) mod write {
    wasmtime::component::bindgen!({
        world: "write-policy",
        path: "../../wit",
        with: {
            "levee:policy/types": super::retry::levee::policy::types,
            "levee:policy/host": super::retry::levee::policy::host,
            "levee:policy/request": super::retry::levee::policy::request,
        },
    });
}

/// The `checkpoint` export's own types (`action`).
pub(crate) use checkpoint::exports::levee::policy::checkpoint as wit_checkpoint;
/// The `retry` export's own types (`decision`, `retry-plan`, `target`).
pub(crate) use retry::exports::levee::policy::retry as wit_retry;
/// The shared `host` interface (log, clock, random).
pub(crate) use retry::levee::policy::host as wit_host;
/// The shared `request` interface (the request of the call in progress).
pub(crate) use retry::levee::policy::request as wit_request;
/// The shared `types` interface.
pub(crate) use retry::levee::policy::types as wit_types;
/// The `routing` export's own types (`route-plan`).
pub(crate) use routing::exports::levee::policy::routing as wit_routing;
/// The `write` export's own types (`write-result`, `write-decision`).
pub(crate) use write::exports::levee::policy::write as wit_write;
