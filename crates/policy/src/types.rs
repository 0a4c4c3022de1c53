//! Plain-Rust mirrors of the WIT types in `wit/levee-policy.wit`
//! (`levee:policy@0.2.0`).
//!
//! The host's request path speaks these types; the Wasm-backed policies
//! convert them to and from the `bindgen!` types at the boundary, and the
//! plugins convert the `wit-bindgen` types into these before calling the
//! shared logic. Keeping one set of domain types means the native fallback
//! and a plugin built from the same logic decide identically.
//!
//! Why most of these are `Copy` scalars: the request path builds them on
//! every request, so nothing here allocates per call except a route plan's
//! order and a give-up reason. Nodes are named by [`NodeIndex`] into a
//! table ([`NodeInfo`]) given once per configuration change; the request's
//! strings stay with the host behind [`RequestView`].

/// A node's position in the service's node table (0-based); see
/// `types.node-index`.
pub type NodeIndex = u32;

/// One replica as configured (see `types.node-info`). The table of these
/// changes only with the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeInfo {
    pub id: String,
    pub address: String,
    pub zone: Option<String>,
    pub weight: u32,
}

/// One candidate replica with the host's current view of its health (see
/// `types.candidate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Candidate {
    pub node: NodeIndex,
    pub healthy: bool,
    pub failure_rate_permille: u32,
    pub latency_ms: u32,
}

/// The request method, classified (see `types.method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Method {
    #[default]
    Get,
    Head,
    Post,
    Put,
    Delete,
    Patch,
    Options,
    Other,
}

impl Method {
    /// Classifies a method by its (case-sensitive, RFC 9110) name.
    pub fn from_name(name: &str) -> Method {
        match name {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "OPTIONS" => Method::Options,
            _ => Method::Other,
        }
    }

    /// GET and HEAD: reads whose duplicate costs only load.
    pub fn is_read(self) -> bool {
        matches!(self, Method::Get | Method::Head)
    }
}

/// The scalar facts of a request (see `types.request-facts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestFacts {
    pub method: Method,
    /// True for GET/HEAD/OPTIONS/PUT/DELETE, or any method carrying a
    /// non-empty `Idempotency-Key` header.
    pub idempotent: bool,
}

/// The request's strings, read on demand (the WIT's `request` functions).
/// The host implements it over the request it holds, without copying;
/// native policies need none of it, plugins pay per string they read.
pub trait RequestView {
    /// The service name from the configuration.
    fn service(&self) -> &str;
    /// The method as received, e.g. `GET` or `PROPFIND`.
    fn method(&self) -> &str;
    /// Path and query as received.
    fn path(&self) -> &str;
    /// The routing key extracted per the service's `key` rule.
    fn routing_key(&self) -> &str;
    /// One header's value by lower-case name; `None` when absent or not
    /// valid UTF-8. Implementations answer `None` for credentials (see
    /// [`crate::limits::is_credential_header`]).
    fn header(&self, name: &str) -> Option<&str>;
}

/// Why an attempt produced no HTTP response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    Connect,
    Timeout,
    Reset,
    Protocol,
    Other,
}

/// What one attempt produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    Status(u16),
    Error(ErrorKind),
}

/// One failed attempt, as reported to the retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptOutcome {
    pub node: NodeIndex,
    /// 1-based.
    pub attempt: u32,
    pub result: AttemptResult,
    pub elapsed_ms: u32,
    pub retry_after_ms: Option<u32>,
}

/// Limits the host enforces whatever the policy answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryContext<'a> {
    pub budget_remaining: u32,
    pub deadline_remaining_ms: u32,
    pub max_attempts: u32,
    /// Candidate nodes in routing order.
    pub candidates: &'a [NodeIndex],
}

/// Where the next attempt goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Same,
    Next,
    Node(NodeIndex),
}

/// The retry policy's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryDecision {
    Retry { delay_ms: u32, target: Target },
    GiveUp(String),
}

/// The routing policy's answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoutePlan {
    /// Nodes, best first.
    pub order: Vec<NodeIndex>,
    pub hedge_delay_ms: Option<u32>,
}

/// Log statistics for the checkpoint policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogStats {
    pub records_since_checkpoint: u64,
    pub bytes_since_checkpoint: u64,
    pub ms_since_checkpoint: u64,
    pub total_bytes: u64,
    pub oldest_needed_lsn: u64,
    pub reclaimable_bytes: u64,
}

/// The checkpoint policy's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointAction {
    None,
    Checkpoint,
    CheckpointAndCompact,
}
