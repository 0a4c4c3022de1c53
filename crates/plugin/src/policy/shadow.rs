//! [`Shadow`]: a second version of a binding's plugin, asked the same
//! questions as the live one after each live decision, off the request
//! path, whose answers are only counted.
//!
//! Why this shape:
//! - **Off the path.** The request path hands the recorded call (the same
//!   `Arc` the recorder keeps) to a bounded queue with `try_send` and goes
//!   on; a full queue drops the offer and counts it (`dropped`). The shadow
//!   version never decides anything: its answers go only into the counts.
//! - **Its own fence.** It is bound like the live version (same config,
//!   header allowlist and [`Limits`](crate::Limits)), with its own instance
//!   pool: its CPU deadline, memory limit and quarantine are its own, and a
//!   shadow that traps or loops harms only its counts.
//! - **Its own thread, paced.** One OS thread per shadow (not a tokio
//!   worker: a shadow call may take its whole CPU deadline), at most
//!   [`SHADOW_CALLS_PER_SECOND_MAX`] calls a second, so a shadow costs at
//!   most that many plugin calls of CPU however busy the service is;
//!   beyond it the queue fills and offers are dropped. The thread ends
//!   when the shadow is dropped (its queue's sender goes with it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::compare::{Comparison, Entry};
use super::spec::PolicyKindSpec;
use crate::bound::BoundPlugin;
use crate::error::LoadError;

/// Recorded calls waiting for the shadow; offers beyond are dropped.
pub const SHADOW_QUEUE_DEPTH_MAX: usize = 256;
/// Shadow calls per second, at most (the thread paces itself).
pub const SHADOW_CALLS_PER_SECOND_MAX: u64 = 1_000;

/// The counts one shadow keeps, shared with its thread.
#[derive(Default)]
struct ShadowCounts {
    offered: AtomicU64,
    dropped: AtomicU64,
    skipped_quarantined: AtomicU64,
    comparison: Mutex<Comparison>,
}

/// A shadow version of one binding's plugin, with its thread.
pub struct Shadow<K: PolicyKindSpec> {
    plugin: Arc<BoundPlugin>,
    jobs: SyncSender<Arc<Entry<K>>>,
    counts: Arc<ShadowCounts>,
}

/// What a shadow has seen, for the admin API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShadowReport {
    pub plugin: String,
    /// The shadow version (SHA-256 of its component).
    pub version: String,
    /// Live calls offered to the shadow.
    pub offered: u64,
    /// Offers dropped because the queue was full (load above the pace).
    pub dropped: u64,
    /// Offers not asked because the shadow version is quarantined.
    pub skipped_quarantined: u64,
    pub queue_depth_max: usize,
    pub calls_per_second_max: u64,
    /// The shadow version failed `consecutive_failures_max` calls in a
    /// row and is no longer asked (its own fence, not the live one's).
    pub quarantined: bool,
    #[serde(flatten)]
    pub comparison: Comparison,
}

impl<K: PolicyKindSpec> Shadow<K> {
    /// Starts a shadow of `plugin` (already bound with the live binding's
    /// config, limits and headers); refuses a plugin of another kind.
    pub fn start(plugin: Arc<BoundPlugin>) -> Result<Shadow<K>, LoadError> {
        if plugin.kind() != K::KIND {
            return Err(LoadError::WrongWorld {
                expected: K::KIND,
                exports: plugin.component().exports().to_vec(),
            });
        }
        let (jobs, queue) = mpsc::sync_channel(SHADOW_QUEUE_DEPTH_MAX);
        let counts = Arc::new(ShadowCounts::default());
        let worker = (plugin.clone(), counts.clone());
        std::thread::Builder::new()
            .name(format!("levee-shadow-{}", plugin.name()))
            .spawn(move || run::<K>(queue, worker.0, worker.1))
            .map_err(|e| LoadError::Instantiate(format!("shadow thread: {e}")))?;
        Ok(Shadow {
            plugin,
            jobs,
            counts,
        })
    }

    /// Offers a live call; never blocks.
    pub fn offer(&self, entry: Arc<Entry<K>>) {
        self.counts.offered.fetch_add(1, Ordering::Relaxed);
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.jobs.try_send(entry)
        {
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn report(&self) -> ShadowReport {
        let comparison = self
            .counts
            .comparison
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        ShadowReport {
            plugin: self.plugin.name().to_string(),
            version: self.plugin.version().to_string(),
            offered: self.counts.offered.load(Ordering::Relaxed),
            dropped: self.counts.dropped.load(Ordering::Relaxed),
            skipped_quarantined: self.counts.skipped_quarantined.load(Ordering::Relaxed),
            queue_depth_max: SHADOW_QUEUE_DEPTH_MAX,
            calls_per_second_max: SHADOW_CALLS_PER_SECOND_MAX,
            quarantined: self.plugin.is_quarantined(),
            comparison,
        }
    }
}

/// The shadow's thread: one replay per queued call, paced; ends when the
/// queue's sender is dropped (loop bound: the queue).
fn run<K: PolicyKindSpec>(
    queue: Receiver<Arc<Entry<K>>>,
    plugin: Arc<BoundPlugin>,
    counts: Arc<ShadowCounts>,
) {
    let interval = Duration::from_micros(1_000_000 / SHADOW_CALLS_PER_SECOND_MAX);
    while let Ok(entry) = queue.recv() {
        let started = Instant::now();
        if plugin.is_quarantined() {
            counts.skipped_quarantined.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let answer = K::replay(&plugin, &entry.input).result;
        counts
            .comparison
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add::<K>(&entry, &answer);
        std::thread::sleep(interval.saturating_sub(started.elapsed()));
    }
}
