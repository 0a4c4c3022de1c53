//! The running process: [`serve`] (boot, listeners, the tasks it owns and
//! joins),
//! [`boot`] probes while recovery runs, the [`listener`] accept loop, and
//! [`shutdown`].

pub mod boot;
pub mod listener;
pub mod serve;
pub mod shutdown;
