//! [`Shadows`]: the shadow version of each plugin that has one, kept by
//! the plugin host (see `plugin_shadow` for what a shadow is).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use levee_plugin::Component;

/// The shadow version of each plugin that has one (at most one per
/// plugin, so bounded by the registry's plugin count).
#[derive(Default)]
pub struct Shadows {
    by_name: Mutex<HashMap<String, ShadowVersion>>,
}

/// A shadow version: compiled, and its bytes for a promotion.
#[derive(Clone)]
pub struct ShadowVersion {
    pub component: Arc<Component>,
    pub bytes: Bytes,
}

impl Shadows {
    pub fn get(&self, name: &str) -> Option<ShadowVersion> {
        self.lock().get(name).cloned()
    }

    pub fn insert(&self, name: &str, shadow: ShadowVersion) {
        self.lock().insert(name.to_string(), shadow);
    }

    /// Drops `name`'s shadow; whether it had one.
    pub fn forget(&self, name: &str) -> bool {
        self.lock().remove(name).is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ShadowVersion>> {
        self.by_name.lock().unwrap_or_else(|e| e.into_inner())
    }
}
