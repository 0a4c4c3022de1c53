//! Binding policies to services: the routing and retry decisions a service
//! asks for (plugin or native, timed into the metrics), binding and
//! unbinding plugins, the `x-levee-policy-version` header that says who
//! decided, and [`slot::Slot`], a binding's guarded policy of any kind
//! (its shadow, its recorded calls, trials).

pub mod bind;
pub mod header;
pub mod slot;
