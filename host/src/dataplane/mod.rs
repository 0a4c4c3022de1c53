//! The request path: [`inbound`] validation (the routing [`key`] and its
//! normalization, the request [`body`] and its limits), the shared
//! [`attempt`] path and retry gate, the read [`proxy`] (and its
//! [`read_quorum`] variant for services that ask R replicas per read), the
//! write [`fanout`] (with its [`write_policy`]), and [`error::AppError`], the one error every
//! data-plane step returns.

pub mod attempt;
pub mod body;
pub mod error;
pub mod fanout;
pub mod inbound;
pub mod key;
pub mod plan;
pub mod proxy;
pub mod read_quorum;
pub mod replica_send;
pub mod tally;
pub mod write_policy;
