//! The replicas behind each service: the SHA-1 [`ring`], per-node
//! [`health`] (passive ejection and the one probe rule), the retry
//! [`budget`], a built [`service::Service`], and the [`directory`] of the
//! services in force.

pub mod budget;
pub mod directory;
pub mod health;
pub mod ring;
pub mod service;
