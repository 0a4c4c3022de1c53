//! The floor every other layer stands on: the monotonic clock, the metric
//! families and how they are recorded, and the shutdown signal. Imports
//! nothing from the rest of the host.

pub mod clock;
pub mod metrics;
pub mod shutdown;
