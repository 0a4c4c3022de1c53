//! A gate blocking appenders sleep behind until their batch is settled:
//! a generation counter plus a futex, so that settling a whole batch is one
//! atomic increment and at most one `FUTEX_WAKE` system call, and a woken
//! appender checks the acknowledged watermark (an atomic) without taking
//! the log's mutex again. With a condition variable every woken thread
//! would first have to re-acquire the mutex, one after the other.
//!
//! Protocol: a waiter reads `generation()` while it holds the state mutex
//! (so that no settle it depends on can slip in between), releases the
//! mutex, and calls `wait(seen)`, which returns once the generation has
//! moved on (or spuriously; callers re-check their condition). A settler
//! calls `advance()` under the state mutex and, if it returned true,
//! `wake_all()`/`wake_one()` after releasing the mutex.

use std::sync::atomic::{AtomicU32, Ordering};

pub(crate) struct Gate {
    generation: AtomicU32,
    /// Threads inside `wait`: lets `advance` skip the wake system call
    /// when nobody sleeps (the common case with one appender).
    sleepers: AtomicU32,
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fallback: fallback::Fallback,
}

impl Gate {
    pub(crate) fn new() -> Gate {
        Gate {
            generation: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
            #[cfg(not(any(target_os = "linux", target_os = "android")))]
            fallback: fallback::Fallback::default(),
        }
    }

    pub(crate) fn generation(&self) -> u32 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Moves the generation on; true if a sleeper may need waking.
    /// SeqCst on both sides (here and in `wait`) is what makes "either the
    /// settler sees the sleeper, or the sleeper sees the new generation".
    pub(crate) fn advance(&self) -> bool {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.sleepers.load(Ordering::SeqCst) > 0
    }

    /// Sleeps while the generation is still `seen`. May return spuriously.
    pub(crate) fn wait(&self, seen: u32) {
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        if self.generation.load(Ordering::SeqCst) == seen {
            self.sleep(seen);
        }
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
    }

    pub(crate) fn wake_all(&self) {
        self.wake(i32::MAX);
    }

    pub(crate) fn wake_one(&self) {
        self.wake(1);
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn sleep(&self, seen: u32) {
        // SAFETY: FUTEX_WAIT on a live, aligned AtomicU32 owned by `self`;
        // the kernel only reads it. Interruptions and spurious returns are
        // handled by the callers, which re-check their condition.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.generation.as_ptr(),
                libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                seen,
                std::ptr::null::<libc::timespec>(),
            );
        }
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn wake(&self, count: i32) {
        // SAFETY: FUTEX_WAKE on a live, aligned AtomicU32 owned by `self`.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.generation.as_ptr(),
                libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                count,
            );
        }
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn sleep(&self, seen: u32) {
        self.fallback.sleep(&self.generation, seen);
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn wake(&self, count: i32) {
        self.fallback.wake(count == 1);
    }
}

/// Portable stand-in for the futex: a mutex and a condition variable.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod fallback {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Condvar, Mutex};

    #[derive(Default)]
    pub(super) struct Fallback {
        lock: Mutex<()>,
        changed: Condvar,
    }

    impl Fallback {
        pub(super) fn sleep(&self, generation: &AtomicU32, seen: u32) {
            let guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            if generation.load(Ordering::SeqCst) == seen {
                drop(self.changed.wait(guard));
            }
        }

        pub(super) fn wake(&self, one: bool) {
            // Taking the lock orders this wake after a sleeper's check.
            drop(self.lock.lock().unwrap_or_else(|p| p.into_inner()));
            if one {
                self.changed.notify_one();
            } else {
                self.changed.notify_all();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_sleeper_wakes_when_the_generation_moves() {
        let gate = Arc::new(Gate::new());
        let seen = gate.generation();
        let sleeper = {
            let gate = Arc::clone(&gate);
            std::thread::spawn(move || {
                while gate.generation() == seen {
                    gate.wait(seen);
                }
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        if gate.advance() {
            gate.wake_all();
        }
        sleeper.join().unwrap();
    }

    #[test]
    fn a_stale_generation_does_not_sleep() {
        let gate = Gate::new();
        let seen = gate.generation();
        assert!(!gate.advance(), "nobody sleeps");
        gate.wait(seen); // returns at once
    }
}
