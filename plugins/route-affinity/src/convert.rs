//! Conversions from the `wit-bindgen` types of the routing world to the
//! plain-Rust types of `levee-policy`.

use crate::levee::policy::types as wit;
use levee_policy as policy;

pub fn request_info(request: wit::RequestInfo) -> policy::RequestInfo {
    policy::RequestInfo {
        service: request.service,
        method: request.method,
        path: request.path,
        routing_key: request.routing_key,
        idempotent: request.idempotent,
        headers: request.headers,
    }
}

pub fn node(node: wit::Node) -> policy::Node {
    policy::Node {
        id: node.id,
        address: node.address,
        zone: node.zone,
        weight: node.weight,
        healthy: node.healthy,
        failure_rate_permille: node.failure_rate_permille,
        latency_ms: node.latency_ms,
    }
}
