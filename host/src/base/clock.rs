//! A monotonic millisecond clock shared by health, budgets and the request
//! path.
//!
//! Health and budget state lives in atomics, which want plain integers, not
//! `Instant`s. Milliseconds since the first call in this process fit a u64
//! for millions of years and never go backwards (unlike wall time).

use std::sync::OnceLock;
use std::time::Instant;

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// Milliseconds since this process first asked for the time.
pub fn now_ms() -> u64 {
    u64::try_from(base().elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Milliseconds since the Unix epoch (for logs and plugins, not timeouts).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
