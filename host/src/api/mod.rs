//! HTTP handlers, grouped by listener.
//!
//! - [`data`]: the data plane (`/{service}/...`), on the data listener.
//! - [`error`]: `AppError`, the one error type every handler returns.
//!
//! The admin listener's handlers (admin, auth, status page) live beside
//! these, owned by the control plane.

pub mod data;
pub mod error;
