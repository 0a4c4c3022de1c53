//! The running process: [`serve`] (boot, listeners, the tasks it owns and
//! joins), [`boot`] probes while recovery runs, the [`listener`] accept
//! loop, each client [`connection`] (hyper only while busy), the process's
//! [`memory`] and file limits, and [`shutdown`].

pub(crate) mod boot;
pub(crate) mod connection;
pub(crate) mod listener;
pub(crate) mod memory;
pub mod serve;
pub(crate) mod shutdown;
