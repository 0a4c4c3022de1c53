//! The floor every other layer stands on: the monotonic clock, the metric
//! families and how they are recorded, the shutdown signal, and bounded
//! reading of certificate and key files. Imports nothing from the rest of
//! the host.

pub mod clock;
pub mod metrics;
pub mod pem;
pub mod shutdown;
