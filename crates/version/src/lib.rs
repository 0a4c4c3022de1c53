//! Write versions: what orders two writes to the same key, on every
//! replica, whichever levee instance wrote them and whatever happened to
//! its log in between.
//!
//! A [`Version`] is `(physical_ms, logical, instance)`, compared in that
//! order. It is issued by a [`Hlc`] (hybrid logical clock, Kulkarni et al.
//! 2014): the physical part follows the wall clock, the logical part orders
//! writes issued within one millisecond or while the wall clock lags behind
//! a version already seen, and the instance id (random, new at every start
//! of a levee process, shown in the data directory) breaks the remaining
//! ties between two levee instances and keeps two lives of one data
//! directory (a restored backup, a copy) from issuing the same version. Why not the log's LSN, which levee used
//! before: LSNs restart at 1 when a log is wiped or restored and are
//! meaningless across instances, so a replica ordering by LSN silently
//! discarded newer writes as "stale".
//!
//! Never reused: the clock persists a high-water mark
//! ([`hlc::RESERVE_MS`] ahead of what it hands out) and starts above it
//! after a restart, so a crash cannot make it issue a version twice even if
//! the wall clock stepped back.
//!
//! The wire form ([`Version`]'s `Display`) is
//! `<physical_ms>.<logical>.<instance as 16 hex digits>`, e.g.
//! `1764590400123.0.9f3a0c1d2e4b5a6c`, sent in [`VERSION_HEADER`].
//!
//! # Layout
//! - [`version`]: the value type, its wire form and parsing.
//! - [`hlc`]: the clock, its persisted mark and the instance id file.

pub mod hlc;
pub mod version;

pub use hlc::{Hlc, HlcError, HlcOptions, Opened};
pub use version::{InstanceId, ParseError, Version};

/// The header that carries a write's version to a replica, and a stored
/// value's version back on reads (and on a 404 for a deleted key).
pub const VERSION_HEADER: &str = "x-levee-version";
/// On a replica's `409 Conflict` to a versioned write: the newer version it
/// holds, which superseded the write. A 409 without it is an ordinary
/// rejection.
pub const HELD_VERSION_HEADER: &str = "x-levee-held-version";
