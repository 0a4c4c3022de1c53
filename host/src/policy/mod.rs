//! Binding policies to services: the routing and retry decisions a service
//! asks for (plugin or native, timed into the metrics), binding and
//! unbinding plugins, and the `x-levee-policy-version` header that says who
//! decided.

pub mod bind;
pub mod header;
