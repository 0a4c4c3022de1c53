//! The host's clock and random source, in the shapes wasmtime-wasi wants.
//!
//! A plugin that reads time or randomness through WASI gets the
//! [`HostEnv`]'s (seeded in tests), never the machine's: the same clock as
//! `host.now-ms`, and a second stream of the same seed as
//! `host.random-u64` (see [`HostEnv`] for why a second one). Every read is remembered, like
//! a read of `host.now-ms`, so a route plan that depended on it is never
//! cached (see `plan_cache`).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use wasi_rand_core::TryRng;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock};

use crate::env::HostEnv;

const NANOS_PER_MS: u64 = 1_000_000;

/// The host's clock and random source, shared by one instance's WASI
/// adapters.
#[derive(Clone)]
pub(crate) struct Ambient {
    env: HostEnv,
    /// Set by every read; cleared by [`Ambient::clear_read`].
    read: Arc<AtomicBool>,
    /// The largest monotonic reading handed out: the host clock may be
    /// set back (a seeded test clock), a monotonic one may not.
    monotonic_ns_max: Arc<AtomicU64>,
}

impl Ambient {
    pub(crate) fn new(env: HostEnv) -> Ambient {
        Ambient {
            env,
            read: Arc::new(AtomicBool::new(false)),
            monotonic_ns_max: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Whether the plugin read the clock or the random source since
    /// [`Ambient::clear_read`].
    pub(crate) fn was_read(&self) -> bool {
        self.read.load(Ordering::Relaxed)
    }

    pub(crate) fn clear_read(&self) {
        self.read.store(false, Ordering::Relaxed);
    }

    fn mark_read(&self) {
        self.read.store(true, Ordering::Relaxed);
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.mark_read();
        self.env.now_ms()
    }

    /// The host clock in nanoseconds, never going back.
    pub(crate) fn monotonic_ns(&self) -> u64 {
        let now_ns = self.now_ms().saturating_mul(NANOS_PER_MS);
        let before = self.monotonic_ns_max.fetch_max(now_ns, Ordering::Relaxed);
        before.max(now_ns)
    }

    /// A monotonic reading without marking the call: a deadline's
    /// readiness check is the host's, not the plugin's.
    pub(crate) fn monotonic_ns_unmarked(&self) -> u64 {
        let now_ns = self.env.now_ms().saturating_mul(NANOS_PER_MS);
        self.monotonic_ns_max.load(Ordering::Relaxed).max(now_ns)
    }

    fn random_u64(&self) -> u64 {
        self.mark_read();
        self.env.wasi_random_u64()
    }
}

/// `wasi:clocks/wall-clock` from the host clock, millisecond resolution.
pub(crate) struct WallClock(pub(crate) Ambient);

impl HostWallClock for WallClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }

    fn now(&self) -> Duration {
        Duration::from_millis(self.0.now_ms())
    }
}

/// The context's monotonic clock (levee links its own
/// `wasi:clocks/monotonic-clock`, see `deny`, but the context wants one).
pub(crate) struct MonotonicClock(pub(crate) Ambient);

impl HostMonotonicClock for MonotonicClock {
    fn resolution(&self) -> u64 {
        NANOS_PER_MS
    }

    fn now(&self) -> u64 {
        self.0.monotonic_ns()
    }
}

/// Both `wasi:random` sources from the host's generator. (A plugin has no
/// secret to keep from the host that seeds it.)
pub(crate) struct Random(pub(crate) Ambient);

impl TryRng for Random {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(self.0.random_u64() as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.0.random_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        // Bounded by the context's `max_random_size`.
        for chunk in dst.chunks_mut(8) {
            let bytes = self.0.random_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}
