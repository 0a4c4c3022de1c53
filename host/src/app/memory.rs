//! Process resources a proxy with many clients needs: enough file
//! descriptors, and memory handed back after a burst of connections.
//!
//! - **File descriptors**: every client connection is one descriptor, every
//!   upstream connection another. levee raises its soft `RLIMIT_NOFILE` to
//!   the hard limit at start (what Go's runtime and many servers do), so
//!   `server.connections_max` is not silently capped by a shell's default
//!   of 1,024. Raising the hard limit needs privileges and stays the
//!   operator's call (`ulimit -Hn`, systemd `LimitNOFILE=`).
//! - **Memory after a burst**: glibc malloc keeps freed memory in its
//!   arenas; after thousands of connections close, the process would keep
//!   their buffers' pages. Each connection's buffers exist only while it is
//!   busy (see `app::connection`), but a burst of busy connections still
//!   grows the heap, and the freed buffers of a burst of connections that
//!   went idle are interleaved with the small state of the ones that stay.
//!   When the count of open connections, or of busy ones, has fallen by
//!   [`TRIM_CONNECTIONS_DROP_MIN`] from its peak since the last look (every
//!   [`TRIM_CHECK_INTERVAL_MS`]), levee calls
//!   `malloc_trim(0)`, which returns free pages inside the heaps to the
//!   kernel (glibc only; elsewhere this is a no-op); and at least every
//!   [`TRIM_EVERY_MS`] for memory freed by anything else.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

/// How often the upkeep looks at the connection counts.
pub const TRIM_CHECK_INTERVAL_MS: u64 = 1_000;
/// A trim at least this often whatever the counts say: memory freed by
/// other means (expired pooled upstream connections, a drained hint
/// backlog) goes back too. One walk of the arenas per interval is cheap.
pub const TRIM_EVERY_MS: u64 = 30_000;
/// A fall in open or busy connections (from the highest count seen since
/// the last look) worth a `malloc_trim`: below this the pages are few
/// (each busy connection frees ~24 KB) and a trim's cost (it walks every
/// arena) is not worth it. Steady load keeps the busy count level: no trims.
pub const TRIM_CONNECTIONS_DROP_MIN: usize = 128;

/// A count and the highest it reached since the memory upkeep last looked.
#[derive(Debug, Default)]
pub struct Gauge {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl Gauge {
    pub fn up(&self) {
        let now = self.now.fetch_add(1, Relaxed) + 1;
        self.peak.fetch_max(now, Relaxed);
    }

    pub fn down(&self) {
        self.now.fetch_sub(1, Relaxed);
    }

    pub fn get(&self) -> usize {
        self.now.load(Relaxed)
    }

    /// How far the count fell from its peak since the last call (which
    /// restarts the peak from now).
    pub fn take_fall(&self) -> usize {
        let now = self.get();
        self.peak.swap(now, Relaxed).saturating_sub(now)
    }
}

/// Client connections across the listeners that share it: open ones, and
/// busy ones (holding a hyper connection and its buffers). The memory
/// upkeep (`app::memory`) hands freed pages back when either falls.
#[derive(Debug, Default)]
pub struct ConnectionCounts {
    pub open: Gauge,
    pub busy: Gauge,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit. Returns the soft
/// limit in force afterwards (`None` if it cannot be read).
pub fn raise_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given, nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct it is given, nothing else.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = limit.rlim_max;
        }
    }
    Some(limit.rlim_cur)
}

/// Returns freed heap pages to the kernel after the connection count falls,
/// until `stop` resolves. Bounded: one check per interval.
pub async fn trim_after_bursts(counts: Arc<ConnectionCounts>, stop: impl Future<Output = ()>) {
    let mut stop = std::pin::pin!(stop);
    let mut ticker = tokio::time::interval(Duration::from_millis(TRIM_CHECK_INTERVAL_MS));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let checks_per_trim_max = TRIM_EVERY_MS / TRIM_CHECK_INTERVAL_MS;
    let mut checks_since_trim = 0;
    // Bounded by `stop`: one check per interval.
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = ticker.tick() => {}
        }
        checks_since_trim += 1;
        let (closed, calmed) = (counts.open.take_fall(), counts.busy.take_fall());
        if closed.max(calmed) >= TRIM_CONNECTIONS_DROP_MIN
            || checks_since_trim >= checks_per_trim_max
        {
            checks_since_trim = 0;
            let _ = tokio::task::spawn_blocking(trim).await;
        }
    }
}

/// `malloc_trim(0)`: free pages in every arena back to the kernel.
#[cfg(all(target_os = "linux", target_env = "gnu", not(feature = "mimalloc")))]
fn trim() {
    // SAFETY: malloc_trim only inspects and releases the allocator's own
    // free memory; it is safe to call at any time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu", not(feature = "mimalloc"))))]
fn trim() {}
