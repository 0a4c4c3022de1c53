//! The running process: [`serve`] (boot, listeners, the tasks it owns and
//! joins),
//! [`boot`] probes while recovery runs, the [`listener`] accept loop, and
//! [`shutdown`].

pub(crate) mod boot;
pub(crate) mod listener;
pub mod serve;
pub(crate) mod shutdown;
