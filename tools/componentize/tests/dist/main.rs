//! The built components in `plugins/dist/` behave as documented when run
//! under wasmtime with fences like the host's (fuel for CPU, a 16 MiB
//! linear-memory cap):
//! - the good plugins decide exactly like the native `levee-policy` code on
//!   the same inputs and the same `random-u64`, which they draw exactly once
//!   per call (`good.rs`);
//! - every zoo plugin loads and then misbehaves the way its docs say, and
//!   `echo-request` echoes what the `request` functions show it and
//!   `route-probe` what it was passed (`zoo.rs`),
//!   so the host's sandboxing tests exercise what they think;
//! - every component imports only levee's 0.2.0 interfaces (`imports.rs`).
//!
//! This runs the components directly on wasmtime, not through the host's
//! runtime (`crates/plugin`), so a failure here points at the plugins or at
//! `scripts/build-plugins.sh`, never at the host. It needs
//! `scripts/build-plugins.sh` to have run first, as CI does.

mod convert;
mod good;
mod harness;
mod imports;
mod zoo;
