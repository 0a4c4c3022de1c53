//! levee against hostile input, end to end: real `levee serve` processes,
//! real replicas and raw sockets. Each module is one kind of abuse; every
//! refusal must be a clear 4xx/5xx with a reason, and nothing already
//! accepted may be lost.

mod control;
mod support;

#[path = "hostile/admin.rs"]
mod admin;
#[path = "hostile/bodies.rs"]
mod bodies;
#[path = "hostile/keys.rs"]
mod keys;
#[path = "hostile/plugin_headers.rs"]
mod plugin_headers;
