//! The replicas behind each service: the SHA-1 [`ring`] or rendezvous
//! [`placement`] (with the node set's fingerprint), per-node
//! [`health`] (passive ejection, active-check streaks), the one [`probe`]
//! rule and the active checks that run it (the handoff asks the same rule),
//! the retry [`budget`], a built [`service::Service`], and the
//! [`directory`] of the services in force.

pub(crate) mod budget;
pub(crate) mod directory;
pub(crate) mod health;
pub mod placement;
pub(crate) mod probe;
pub mod ring;
pub(crate) mod service;
