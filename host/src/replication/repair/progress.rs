//! The pass's side of the repair set: taking the keys whose turn has come
//! (durable ones round robin, then queued ones) and settling each attempt:
//! cleared when repaired (unless recorded again meanwhile), else retried
//! after a doubling backoff.

use std::ops::Bound;
use std::sync::atomic::Ordering;

use super::{Finish, Inner, Origin, REPAIR_BACKOFF_MS_MAX, Repairs, Taken};
use crate::base::clock;
use crate::replication::hints::key_hash;

impl Repairs {
    /// Up to `budget` keys whose retry time has come: durable ones first
    /// (round robin), then queued ones. Queued keys leave the queue.
    pub(crate) fn take_due(&self, now_ms: u64, budget: usize) -> Vec<Taken> {
        let mut inner = self.inner();
        let mut taken = take_durable(&mut inner, now_ms, budget);
        for _ in 0..inner.queue.len() {
            if taken.len() >= budget {
                break;
            }
            let Some((id, entry)) = inner.queue.pop_front() else {
                break;
            };
            if entry.next_try_ms > now_ms {
                inner.queue.push_back((id, entry));
                continue;
            }
            inner.queued_ids.remove(&id);
            taken.push(Taken {
                id,
                origin: Origin::Queued,
                entry,
            });
        }
        taken
    }

    /// Ends the pass's attempt on `taken`.
    pub(crate) async fn finish(&self, taken: Taken, finish: Finish) {
        let now_ms = clock::now_ms();
        match finish {
            Finish::Done => {
                self.counters.repaired.fetch_add(1, Ordering::Relaxed);
                crate::base::metrics::repair_finished(true);
                if taken.origin == Origin::Durable && self.clear_durable(&taken) {
                    let dir = self.dir.clone();
                    let id = taken.id.clone();
                    let removed = tokio::task::spawn_blocking(move || dir.remove(&id)).await;
                    if let Ok(Err(error)) = removed {
                        tracing::warn!(%error, "cannot remove a repaired key's file; it is repaired again after a restart");
                    }
                }
            }
            Finish::Retry => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                crate::base::metrics::repair_finished(false);
                self.retry_later(taken, now_ms);
            }
        }
        self.publish();
    }

    /// Removes a durable key unless it was recorded again meanwhile.
    fn clear_durable(&self, taken: &Taken) -> bool {
        let mut inner = self.inner();
        match inner.durable.get(&taken.id) {
            Some(entry) if entry.generation == taken.entry.generation => {
                inner.durable.remove(&taken.id);
                let hash = key_hash(&taken.entry.key.service, &taken.entry.key.key);
                if let Some(count) = inner.durable_keys.get_mut(&hash) {
                    *count -= 1;
                    if *count == 0 {
                        inner.durable_keys.remove(&hash);
                    }
                }
                self.durable_len
                    .store(inner.durable.len(), Ordering::Release);
                true
            }
            _ => false,
        }
    }

    fn retry_later(&self, taken: Taken, now_ms: u64) {
        let mut inner = self.inner();
        let backoff_ms = taken.entry.backoff_ms;
        let next_try_ms = now_ms + backoff_ms;
        let next_backoff_ms = (backoff_ms * 2).min(REPAIR_BACKOFF_MS_MAX);
        match taken.origin {
            Origin::Durable => {
                if let Some(entry) = inner.durable.get_mut(&taken.id)
                    && entry.generation == taken.entry.generation
                {
                    entry.next_try_ms = next_try_ms;
                    entry.backoff_ms = next_backoff_ms;
                }
            }
            Origin::Queued => {
                let known =
                    inner.durable.contains_key(&taken.id) || inner.queued_ids.contains(&taken.id);
                if known {
                    return;
                }
                if inner.queue.len() >= self.queue_max {
                    drop(inner);
                    self.counters.queue_dropped.fetch_add(1, Ordering::Relaxed);
                    crate::base::metrics::repair_queue_dropped();
                    return;
                }
                let mut entry = taken.entry;
                entry.next_try_ms = next_try_ms;
                entry.backoff_ms = next_backoff_ms;
                inner.queued_ids.insert(taken.id.clone());
                inner.queue.push_back((taken.id, entry));
            }
        }
    }
}

/// Takes up to `budget` due durable entries, starting after the cursor.
fn take_durable(inner: &mut Inner, now_ms: u64, budget: usize) -> Vec<Taken> {
    let start = inner.cursor.clone();
    let after = match &start {
        Some(id) => (Bound::Excluded(id.clone()), Bound::Unbounded),
        None => (Bound::Unbounded, Bound::Unbounded),
    };
    let before = match &start {
        Some(id) => (Bound::Unbounded, Bound::Included(id.clone())),
        None => (Bound::Unbounded, Bound::Excluded(String::new())),
    };
    let taken: Vec<Taken> = inner
        .durable
        .range::<String, _>(after)
        .chain(inner.durable.range::<String, _>(before))
        .filter(|(_, entry)| entry.next_try_ms <= now_ms)
        .take(budget)
        .map(|(id, entry)| Taken {
            id: id.clone(),
            origin: Origin::Durable,
            entry: entry.clone(),
        })
        .collect();
    if let Some(last) = taken.last() {
        inner.cursor = Some(last.id.clone());
    }
    taken
}
