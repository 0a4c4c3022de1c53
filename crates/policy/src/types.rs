//! Plain-Rust mirrors of the WIT types in `wit/levee-policy.wit`.
//!
//! The host's request path speaks these types; the Wasm-backed policies
//! convert them to and from the `bindgen!` types at the boundary, and the
//! plugins convert the `wit-bindgen` types into these before calling the
//! shared logic. Keeping one set of domain types means the native fallback
//! and a plugin built from the same logic decide identically.

/// A client request as the host saw it (see `types.request-info`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestInfo {
    pub service: String,
    pub method: String,
    pub path: String,
    pub routing_key: String,
    pub idempotent: bool,
    /// Lower-case names. At most [`crate::limits::HEADERS_MAX`] entries.
    pub headers: Vec<(String, String)>,
}

impl RequestInfo {
    /// The value of a header, by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A replica with the host's view of its health (see `types.node`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Node {
    pub id: String,
    pub address: String,
    pub zone: Option<String>,
    pub weight: u32,
    pub healthy: bool,
    pub failure_rate_permille: u32,
    pub latency_ms: u32,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptOutcome {
    pub node_id: String,
    /// 1-based.
    pub attempt: u32,
    pub result: AttemptResult,
    pub elapsed_ms: u32,
    pub retry_after_ms: Option<u32>,
}

/// Limits the host enforces whatever the policy answers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetryContext {
    pub budget_remaining: u32,
    pub deadline_remaining_ms: u32,
    pub max_attempts: u32,
    pub candidates: Vec<String>,
}

/// Where the next attempt goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Same,
    Next,
    Node(String),
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
    /// Node ids, best first.
    pub order: Vec<String>,
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
