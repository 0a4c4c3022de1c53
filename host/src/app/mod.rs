//! The running process: [`serve`] (boot, listeners, the tasks it owns and
//! joins), [`boot`] probes while recovery runs, the [`listener`] accept
//! loop and each listener's [`settings`], each plain client [`connection`]
//! (hyper only while busy) or [`h2c`] one, TLS connections ([`tls`]
//! termination and reload, [`secure`] handshake and ALPN) and the
//! [`session`] that serves HTTP/2 and TLS connections for their whole
//! life, the process's [`memory`] and file limits, and [`shutdown`].

pub(crate) mod boot;
pub(crate) mod cluster;
pub(crate) mod connection;
pub(crate) mod h2c;
pub(crate) mod listener;
pub(crate) mod memory;
pub(crate) mod secure;
pub mod serve;
pub(crate) mod session;
pub(crate) mod settings;
pub(crate) mod shutdown;
pub(crate) mod tls;
