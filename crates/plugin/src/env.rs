//! The host's clock and random source, as plugins and native policies see
//! them.
//!
//! Plugins get no ambient clock or entropy: `now-ms` and `random-u64` come
//! from a [`HostEnv`] the host chooses. In production that is the system
//! clock and an entropy-seeded generator; tests pass a [`ManualClock`] and a
//! [`HostRng::seeded`] so a plugin and the native policy, fed the same
//! inputs and the same random sequence, can be compared decision by
//! decision. The native fallback draws from the same [`HostEnv`] as the
//! plugins of its policy, so the swap between them is invisible to the
//! random sequence's consumers.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of wall-clock time in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now_ms(&self) -> u64;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        unix_now_ms()
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub(crate) fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A clock that only moves when told to; for tests.
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ms: AtomicU64,
}

impl ManualClock {
    pub fn new(now_ms: u64) -> Self {
        ManualClock {
            now_ms: AtomicU64::new(now_ms),
        }
    }

    pub fn set_ms(&self, now_ms: u64) {
        self.now_ms.store(now_ms, Ordering::Relaxed);
    }

    pub fn advance_ms(&self, delta_ms: u64) {
        self.now_ms.fetch_add(delta_ms, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::Relaxed)
    }
}

/// SplitMix64: a tiny, fast, lock-free generator with a 64-bit state.
///
/// Why not a CSPRNG: the values are jitter for retry delays, not secrets,
/// and a seedable generator is what makes plugin-vs-native comparisons
/// replayable. The state advances with one atomic add, so concurrent
/// callers each get a distinct value without a lock; a single-threaded
/// caller gets the exact sequence of the seed.
pub struct HostRng {
    state: AtomicU64,
}

impl HostRng {
    const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

    /// The sequence is a pure function of `seed`.
    pub fn seeded(seed: u64) -> Self {
        HostRng {
            state: AtomicU64::new(seed),
        }
    }

    /// Seeded from the operating system's entropy.
    pub fn from_entropy() -> Self {
        HostRng::seeded(rand::random::<u64>())
    }

    /// A second generator whose sequence is a pure function of this one's
    /// current state and `salt`; this one does not advance.
    pub fn fork(&self, salt: u64) -> HostRng {
        HostRng::seeded(self.state.load(Ordering::Relaxed) ^ salt)
    }

    pub fn next_u64(&self) -> u64 {
        let state = self
            .state
            .fetch_add(Self::GAMMA, Ordering::Relaxed)
            .wrapping_add(Self::GAMMA);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl fmt::Debug for HostRng {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The state is not secret, but printing it is noise.
        f.debug_struct("HostRng").finish_non_exhaustive()
    }
}

/// The clock and generator handed to plugins (`now-ms`, `random-u64`) and
/// to native policies. Cheap to clone.
#[derive(Debug, Clone)]
pub struct HostEnv {
    clock: Arc<dyn Clock>,
    rng: Arc<HostRng>,
    /// What WASI's random sources draw from (see [`crate::wasi`]): a
    /// second stream of the same seed, so that a language runtime's own
    /// draws (CPython seeds its `random` module at start) leave the
    /// sequence of `random-u64` alone, and a plugin decides exactly like
    /// the native policy given the same seed.
    wasi_rng: Arc<HostRng>,
}

/// Salt of the WASI stream ([`HostRng::fork`]).
const WASI_STREAM_SALT: u64 = 0x7761_7369_5f72_6e67;

impl HostEnv {
    pub fn new(clock: Arc<dyn Clock>, rng: Arc<HostRng>) -> Self {
        let wasi_rng = Arc::new(rng.fork(WASI_STREAM_SALT));
        HostEnv {
            clock,
            rng,
            wasi_rng,
        }
    }

    /// A manual clock at `now_ms` and a generator seeded with `seed`.
    pub fn seeded(seed: u64, now_ms: u64) -> Self {
        HostEnv::new(
            Arc::new(ManualClock::new(now_ms)),
            Arc::new(HostRng::seeded(seed)),
        )
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    pub fn random_u64(&self) -> u64 {
        self.rng.next_u64()
    }

    /// The next value of the WASI stream.
    pub(crate) fn wasi_random_u64(&self) -> u64 {
        self.wasi_rng.next_u64()
    }
}

impl Default for HostEnv {
    /// The system clock and an entropy-seeded generator.
    fn default() -> Self {
        HostEnv::new(Arc::new(SystemClock), Arc::new(HostRng::from_entropy()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_sequences_repeat_and_differ_by_seed() {
        let first: Vec<u64> = {
            let rng = HostRng::seeded(42);
            (0..16).map(|_| rng.next_u64()).collect()
        };
        let again: Vec<u64> = {
            let rng = HostRng::seeded(42);
            (0..16).map(|_| rng.next_u64()).collect()
        };
        let other: Vec<u64> = {
            let rng = HostRng::seeded(43);
            (0..16).map(|_| rng.next_u64()).collect()
        };
        assert_eq!(first, again);
        assert_ne!(first, other);
        // Reference value of SplitMix64 for seed 0 (Vigna's splitmix64.c).
        assert_eq!(HostRng::seeded(0).next_u64(), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        clock.advance_ms(5);
        assert_eq!(clock.now_ms(), 1_005);
        clock.set_ms(7);
        assert_eq!(clock.now_ms(), 7);
    }
}
