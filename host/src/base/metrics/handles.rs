//! Registered metric handles, so that recording on the request path costs
//! no allocation.
//!
//! Why: `counter!(NAME, "service" => service.to_string(), ...)` builds its
//! label strings, a label list and a key, and the recorder wraps the handle
//! it finds in a fresh `Arc`, on every call: a handful of allocations per
//! sample, several samples per request. A [`HandleCache`] registers the
//! handle of a label set once and afterwards finds it by borrowed keys (the
//! service name, then a family-specific part: a node id, a method and
//! status, a plugin version), under a read lock that is never held across
//! anything but the lookup and the increment.
//!
//! Bounds: the label values that reach a cache are already bounded (see the
//! [`super`] doc); a cache also stops adding entries at
//! [`CACHED_LABEL_SETS_MAX`], past which samples are recorded the uncached
//! way (correct, only slower). Entries of services or nodes that a reload
//! removed stay, like their time series in the recorder.
//!
//! Only handles of the process-wide recorder are cached: before
//! [`super::install`] the `metrics` macros hand out no-op handles, and a
//! cached no-op would swallow the samples of that label set for good.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::RwLock;

/// Label sets one cache holds at most.
pub const CACHED_LABEL_SETS_MAX: usize = 4096;

/// Handles of type `H` by service (or plugin) name, then by `S`.
pub struct HandleCache<S, H> {
    inner: RwLock<Inner<S, H>>,
}

struct Inner<S, H> {
    by_name: HashMap<Box<str>, HashMap<S, H>>,
    len: usize,
}

impl<S: Eq + Hash, H> Default for HandleCache<S, H> {
    fn default() -> Self {
        HandleCache {
            inner: RwLock::new(Inner {
                by_name: HashMap::new(),
                len: 0,
            }),
        }
    }
}

impl<S: Eq + Hash, H> HandleCache<S, H> {
    /// Calls `record` with the handle of `(name, sub)`: the cached one, or
    /// one from `register` (cached when the recorder is installed and
    /// there is room; `owned` turns `sub` into the stored key).
    pub fn with<Q>(
        &self,
        name: &str,
        sub: &Q,
        owned: impl FnOnce(&Q) -> S,
        register: impl FnOnce() -> H,
        record: impl FnOnce(&H),
    ) where
        S: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        {
            let inner = self
                .inner
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(handle) = inner.by_name.get(name).and_then(|subs| subs.get(sub)) {
                record(handle);
                return;
            }
        }
        let handle = register();
        record(&handle);
        if !super::installer::is_installed() {
            return;
        }
        let mut inner = self
            .inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if inner.len >= CACHED_LABEL_SETS_MAX {
            return;
        }
        let subs = match inner.by_name.get_mut(name) {
            Some(subs) => subs,
            None => inner.by_name.entry(name.into()).or_default(),
        };
        if subs.contains_key(sub) {
            return; // Another thread registered it meanwhile.
        }
        subs.insert(owned(sub), handle);
        inner.len += 1;
    }

    /// Label sets cached.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_set_is_registered_once_and_the_cache_is_bounded() {
        super::super::install();
        let cache: HandleCache<Box<str>, u32> = HandleCache::default();
        let mut registered = 0;
        for _ in 0..3 {
            cache.with(
                "svc",
                "node-a",
                |s| s.into(),
                || {
                    registered += 1;
                    7
                },
                |handle| assert_eq!(*handle, 7),
            );
        }
        assert_eq!((registered, cache.len()), (1, 1));
        for i in 0..CACHED_LABEL_SETS_MAX + 10 {
            let node = format!("n{i}");
            cache.with("svc", node.as_str(), |s| s.into(), || 1, |_| {});
        }
        assert_eq!(cache.len(), CACHED_LABEL_SETS_MAX);
        let mut registered = 0;
        for _ in 0..2 {
            cache.with(
                "svc",
                "past-the-bound",
                |s| s.into(),
                || {
                    registered += 1;
                    2
                },
                |_| {},
            );
        }
        assert_eq!(registered, 2, "past the bound: registered per call");
    }
}
