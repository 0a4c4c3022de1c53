//! HTTP handlers, grouped by listener.
//!
//! - [`data`]: the data plane (`/{service}/...`), on the data listener.
//! - [`error`]: `AppError`, the one error type every handler returns.
//!
//! The admin listener (control plane):
//! - [`admin`]: the admin router, probes and metrics; [`auth`]: bearer
//!   token; [`admin_error`]: `AdminError` (JSON, 422 with field errors).
//! - [`admin_plugins`], [`admin_services`], [`admin_log`]: the admin API.
//! - [`admin_state`]: `GET /admin/state`; [`status_page`]: `GET /admin/`.

pub mod admin;
pub mod admin_error;
pub mod admin_log;
pub mod admin_plugins;
pub mod admin_services;
pub mod admin_state;
pub mod auth;
pub mod data;
pub mod error;
pub mod status_page;
