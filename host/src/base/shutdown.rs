//! The process-wide shutdown signal, and the drain limits.
//!
//! Every background task (health checks, handoff, checkpoints, the drop-in
//! watch) and both listeners hold a [`Shutdown`] clone: they stop when it
//! flips. It lives at the bottom so lower layers take just this, not the
//! whole application state.

use std::sync::Arc;

use tokio::sync::watch;

/// Flips to "stop" once; clone freely.
#[derive(Clone, Debug)]
pub struct Shutdown(Arc<watch::Sender<bool>>);

impl Default for Shutdown {
    fn default() -> Shutdown {
        Shutdown::new()
    }
}

impl Shutdown {
    pub fn new() -> Shutdown {
        let (sender, _) = watch::channel(false);
        Shutdown(Arc::new(sender))
    }

    /// Starts shutdown; idempotent.
    pub fn begin(&self) {
        self.0.send_replace(true);
    }

    /// True once shutdown has begun.
    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }

    /// A receiver that sees `true` when shutdown begins.
    pub fn signal(&self) -> watch::Receiver<bool> {
        self.0.subscribe()
    }

    /// Resolves when shutdown begins.
    pub async fn requested(&self) {
        let mut receiver = self.signal();
        // An Err means the sender is gone, which also means "stop".
        let _ = receiver.wait_for(|&stop| stop).await;
    }
}
