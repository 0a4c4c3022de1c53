//! One service: its spec, ring, node table with health, retry budget,
//! in-flight limit and bound policies, and the node table the policies see
//! (built once per configuration; calls name nodes by index).
//!
//! A `Service` is immutable once built (except for the atomics inside health,
//! budget and the in-flight counter) and shared as `Arc<Service>` through
//! [`crate::cluster::directory::Directory`]. A configuration change builds a new
//! `Service` and swaps the map, so a request keeps a consistent view of the
//! service from its first attempt to its last without any lock.
//!
//! To add per-service state (e.g. hint cursors for the write path), add a
//! field here and initialise it in [`Service::build`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use hyper::header::{HeaderName, HeaderValue};
use hyper::http::uri::{Authority, Scheme};
use levee_plugin::NodeTable;
use levee_policy::{
    AttemptOutcome, Candidate, NodeIndex, NodeInfo, RequestFacts, RequestView, RetryContext,
    RetryDecision, RoutePlan,
};

use crate::cluster::budget::RetryBudget;
use crate::cluster::health::NodeHealth;
use crate::cluster::placement::Placement;
use crate::cluster::ring::{Preference, RingError};
use crate::config::{KeyRule, NodeSpec, ServiceSpec, parse_node_url};

/// Why a service could not be built from a (validated) spec.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("service {service}: {source}")]
    Ring { service: String, source: RingError },
    #[error("service {service}: node {node}: {reason}")]
    Node {
        service: String,
        node: String,
        reason: String,
    },
    #[error("service {service}: policy {kind}: {reason}")]
    Policy {
        service: String,
        kind: &'static str,
        reason: String,
    },
}

/// One replica as the request path needs it.
#[derive(Debug)]
pub struct ServiceNode {
    pub spec: NodeSpec,
    pub scheme: Scheme,
    pub authority: Authority,
    /// The `Host` header of requests to this node (its authority), built
    /// once so that no attempt formats it.
    pub host: HeaderValue,
    /// The service's placement epoch (hex), sent with every write to this
    /// node as `x-levee-ring-epoch`: which node set placed the write.
    pub ring_epoch: HeaderValue,
    pub health: NodeHealth,
}

/// A configured service, ready to serve.
#[derive(Debug)]
pub struct Service {
    pub spec: ServiceSpec,
    /// Where keys live: the ring or rendezvous, as `spec.placement` says
    /// (the field kept its name from when the ring was the only rule).
    pub ring: Placement,
    /// Indexed like the ring's node indices (the order of `spec.nodes`).
    pub nodes: Vec<ServiceNode>,
    /// `nodes` as the policies see them (ids, urls, zones, weights), in
    /// the same order: a node's index here is its `NodeIndex`. Given to a
    /// plugin instance once per table, not on every call.
    pub node_table: Arc<NodeTable>,
    pub budget: RetryBudget,
    pub policies: Policies,
    /// Pre-parsed `key.header` name, so the request path does not parse it.
    pub key_header: Option<HeaderName>,
    in_flight: AtomicU32,
}

impl Service {
    /// Builds a service from a spec that passed [`ServiceSpec::validate`].
    pub fn build(
        spec: ServiceSpec,
        runtime: &levee_plugin::Runtime,
    ) -> Result<Service, ServiceError> {
        let ring = Placement::new(
            spec.placement,
            spec.nodes.iter().map(|n| (n.id.as_str(), n.weight)),
            spec.vnodes_per_weight,
        )
        .map_err(|source| ServiceError::Ring {
            service: spec.name.clone(),
            source,
        })?;
        let nodes = spec
            .nodes
            .iter()
            .map(|node| build_node(&spec, node, ring.epoch()))
            .collect::<Result<Vec<_>, _>>()?;
        let node_table = node_table(&spec)?;
        let policies = Policies::build(&spec, runtime)?;
        let key_header = match &spec.key {
            KeyRule::Header(name) => Some(HeaderName::from_bytes(name.as_bytes()).map_err(
                |e| ServiceError::Policy {
                    service: spec.name.clone(),
                    kind: "key",
                    reason: e.to_string(),
                },
            )?),
            _ => None,
        };
        Ok(Service {
            budget: RetryBudget::new(&spec.retry_budget),
            ring,
            nodes,
            node_table,
            policies,
            key_header,
            in_flight: AtomicU32::new(0),
            spec,
        })
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// N for this service.
    pub fn replicas(&self) -> usize {
        self.spec.replicas() as usize
    }

    /// The key's replicas in placement order (primary first).
    pub fn preference(&self, routing_key: &[u8]) -> Preference {
        self.ring.preference(routing_key, self.replicas())
    }

    /// The node index of a node id, if it is one of ours.
    pub fn node_index(&self, node_id: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.spec.id == node_id)
    }

    /// Node `index` as a routing candidate: its index in
    /// [`Service::node_table`] and its health now. Scalars only.
    pub fn candidate(&self, index: usize, now_ms: u64) -> Candidate {
        let health = &self.nodes[index].health;
        Candidate {
            node: policy_index(index),
            healthy: health.is_healthy(now_ms),
            failure_rate_permille: health.failure_rate_permille(),
            latency_ms: health.latency_ms(),
        }
    }

    /// Takes an in-flight slot, or `None` when `concurrency_max` are taken.
    pub fn try_enter(self: &Arc<Self>) -> Option<InFlight> {
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        if before >= self.spec.concurrency_max {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(InFlight {
            service: Arc::clone(self),
        })
    }

    /// Requests currently in flight.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }
}

/// Node `index` (into `Service::nodes`) as the policies name it, a
/// [`NodeIndex`] into `Service::node_table`. The ring holds at most
/// `NODES_MAX` (1024) nodes, so every index fits.
pub fn policy_index(index: usize) -> NodeIndex {
    NodeIndex::try_from(index).expect("a service has at most NODES_MAX nodes")
}

/// The policies' node table: `spec.nodes` in order.
fn node_table(spec: &ServiceSpec) -> Result<Arc<NodeTable>, ServiceError> {
    let nodes = spec
        .nodes
        .iter()
        .map(|node| NodeInfo {
            id: node.id.clone(),
            address: node.url.clone(),
            zone: node.zone.clone(),
            weight: node.weight,
        })
        .collect();
    let table = NodeTable::new(nodes).map_err(|e| ServiceError::Policy {
        service: spec.name.clone(),
        kind: "nodes",
        reason: e.to_string(),
    })?;
    Ok(Arc::new(table))
}

fn build_node(
    spec: &ServiceSpec,
    node: &NodeSpec,
    epoch: u64,
) -> Result<ServiceNode, ServiceError> {
    let error = |reason: String| ServiceError::Node {
        service: spec.name.clone(),
        node: node.id.clone(),
        reason,
    };
    let uri = parse_node_url(&node.url).map_err(error)?;
    let scheme = uri
        .scheme()
        .cloned()
        .ok_or_else(|| error("no scheme".into()))?;
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| error("no host".into()))?;
    let host = HeaderValue::from_str(authority.as_str())
        .map_err(|_| error("the host is not a valid Host header".into()))?;
    Ok(ServiceNode {
        spec: node.clone(),
        scheme,
        authority,
        host,
        ring_epoch: epoch_header(epoch),
        health: NodeHealth::new(spec.outlier.clone()),
    })
}

/// A placement epoch as its header value: 16 hex digits.
pub fn epoch_header(epoch: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("{epoch:016x}")).expect("hex digits")
}

/// An in-flight slot of a service; released on drop.
#[derive(Debug)]
pub struct InFlight {
    service: Arc<Service>,
}

impl InFlight {
    pub fn service(&self) -> &Arc<Service> {
        &self.service
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let before = self.service.in_flight.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(before > 0, "in-flight counter underflow");
    }
}

/// The retry, routing and write policies of a service: the guarded
/// `levee_plugin` policies, which call the bound plugin when there is one
/// and the native `levee_policy` logic (configured from the binding's
/// `fallback`, its defaults without one; the binding's `config` is the
/// plugin's) otherwise or when the plugin fails. Plugins are bound after the
/// service is built (they compile off the async threads), through
/// [`crate::policy::bind::bind_policy`]; until then the native policy answers.
pub struct Policies {
    pub retry: levee_plugin::RetryPolicy,
    pub routing: levee_plugin::RoutingPolicy,
    /// When a write is acknowledged (native: W-of-N, see
    /// [`crate::dataplane::tally`]).
    pub write: levee_plugin::WritePolicy,
}

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name =
            |plugin: Option<Arc<levee_plugin::BoundPlugin>>| plugin.map(|p| p.name().to_owned());
        f.debug_struct("Policies")
            .field("retry", &name(self.retry.plugin()))
            .field("routing", &name(self.routing.plugin()))
            .field("write", &name(self.write.plugin()))
            .finish()
    }
}

impl Policies {
    fn build(
        spec: &ServiceSpec,
        runtime: &levee_plugin::Runtime,
    ) -> Result<Policies, ServiceError> {
        // The native fallbacks take the bindings' `fallback` configs (their
        // defaults without one); a binding's `config` is its plugin's.
        let config_of = |binding: &Option<crate::config::PolicyRef>| {
            binding
                .as_ref()
                .map(crate::config::PolicyRef::fallback_json)
                .unwrap_or_default()
        };
        let error = |kind, reason| ServiceError::Policy {
            service: spec.name.clone(),
            kind,
            reason,
        };
        let retry = levee_policy::RetryBackoff::from_json(&config_of(&spec.policies.retry))
            .map_err(|reason| error("retry.fallback", reason))?;
        let routing = levee_policy::RouteAffinity::from_json(&config_of(&spec.policies.routing))
            .map_err(|reason| error("routing.fallback", reason))?;
        levee_policy::WriteQuorum::from_json(&config_of(&spec.policies.write))
            .map_err(|reason| error("write.fallback", reason))?;
        Ok(Policies {
            retry: levee_plugin::RetryPolicy::new(runtime, retry),
            routing: levee_plugin::RoutingPolicy::new(routing),
            write: levee_plugin::WritePolicy::new(),
        })
    }

    /// Orders the candidates (the key's replicas in ring order, indexes
    /// into `nodes`, the service's [`Service::node_table`]).
    pub fn route(
        &self,
        request: &dyn RequestView,
        facts: RequestFacts,
        nodes: &NodeTable,
        candidates: &[Candidate],
    ) -> RoutePlan {
        let decided = self.routing.route(request, facts, nodes, candidates);
        record_policy(&decided);
        decided.value
    }

    /// Decides about a failed attempt (`outcome.node` and the context's
    /// candidates index `nodes`, the service's [`Service::node_table`]).
    pub fn decide_retry(
        &self,
        request: &dyn RequestView,
        facts: RequestFacts,
        nodes: &NodeTable,
        outcome: &AttemptOutcome,
        context: &RetryContext<'_>,
    ) -> levee_plugin::Decided<RetryDecision> {
        let decided = self.retry.decide(request, facts, nodes, outcome, context);
        record_policy(&decided);
        decided
    }

    /// Decides whether a write may be answered after a replica's result
    /// (see [`crate::dataplane::write_policy`]).
    pub fn decide_write(
        &self,
        request: &dyn RequestView,
        facts: RequestFacts,
        nodes: &NodeTable,
        results: &[levee_policy::ReplicaResult],
        context: &levee_policy::WriteContext<'_>,
    ) -> levee_plugin::Decided<levee_policy::WriteDecision> {
        let decided = self.write.decide(request, facts, nodes, results, context);
        record_policy(&decided);
        decided
    }
}

/// Feeds a guarded policy's answer to the metrics. The duration is the
/// one the guarded policy measured around the plugin call (the clock pair
/// the plugin's own stats use), so the request path reads the clock once
/// per plugin call, and not at all when the native policy answers alone.
/// An answer no plugin code ran for (quarantined, or a cached route plan)
/// counts with a zero duration.
fn record_policy<T>(decided: &levee_plugin::Decided<T>) {
    if !matches!(decided.source, levee_plugin::Source::Native) {
        let elapsed = decided.elapsed.unwrap_or_default();
        crate::base::metrics::policy_decided(&decided.source, elapsed);
    }
}

/// A routing plugin that declares `cacheable-by-health-flags`
/// (route-affinity) has its plans cached per facts, node table and
/// candidates with their healthy flags: the plan follows a node's health
/// through the real health path, including an ejection that ends by the
/// clock alone (no write anyone could count).
/// Test support: binds the built plugin `plugins/dist/<file>` (named after
/// its file stem) as `kind` with `config_json`, default limits but a call deadline
/// loose enough for unoptimized test builds.
#[cfg(test)]
pub(crate) fn bind_dist_plugin(
    runtime: &levee_plugin::Runtime,
    file: &str,
    kind: levee_plugin::PolicyKind,
    config_json: &str,
) -> Arc<levee_plugin::BoundPlugin> {
    let path = format!("{}/../plugins/dist/{file}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{path} ({e}): run scripts/build-plugins.sh"));
    let name = std::path::Path::new(file)
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap();
    let limits = levee_plugin::Limits {
        call_timeout_ms: 1_000,
        ..levee_plugin::Limits::default()
    };
    runtime
        .compile_as(name, &bytes, kind)
        .unwrap()
        .bind(runtime, config_json, limits)
        .unwrap()
}

#[cfg(test)]
mod plan_cache_tests {
    use levee_plugin::{PolicyKind, Runtime, RuntimeOptions, Source};
    use levee_policy::{Method, NodeIndex, RequestView};

    use super::*;
    use crate::cluster::health::{Verdict, ejection_ms};

    /// A request for `users`; route-affinity reads none of it.
    struct Users;

    impl RequestView for Users {
        fn service(&self) -> &str {
            "kv"
        }
        fn method(&self) -> &str {
            "GET"
        }
        fn path(&self) -> &str {
            "/users"
        }
        fn routing_key(&self) -> &str {
            "users"
        }
        fn header(&self, _: &str) -> Option<&str> {
            None
        }
    }

    fn service(runtime: &Runtime) -> Arc<Service> {
        let spec: ServiceSpec = serde_json::from_value(serde_json::json!({
            "name": "kv",
            "nodes": (0..4)
                .map(|i| serde_json::json!({"id": format!("n{i}"), "url": format!("http://127.0.0.1:{}", 1 + i)}))
                .collect::<Vec<_>>(),
            "replicas": 3,
            "write_quorum": 2,
            "key": {"path_segment": 1},
        }))
        .unwrap();
        spec.validate().unwrap();
        Arc::new(Service::build(spec, runtime).unwrap())
    }

    /// The plan for `users` at `now_ms`, with each candidate's health then.
    fn route(service: &Service, now_ms: u64) -> Vec<NodeIndex> {
        let candidates: Vec<Candidate> = service
            .preference(b"users")
            .iter()
            .map(|node| service.candidate(node, now_ms))
            .collect();
        let facts = RequestFacts {
            method: Method::Get,
            idempotent: true,
        };
        let decided =
            service
                .policies
                .routing
                .route(&Users, facts, &service.node_table, &candidates);
        assert!(
            matches!(decided.source, Source::Plugin { .. }),
            "{:?}",
            decided.source
        );
        decided.value.order
    }

    #[test]
    fn a_cached_plan_follows_node_health_both_ways() {
        let runtime = Runtime::new(RuntimeOptions::default()).unwrap();
        let service = service(&runtime);
        let bound = bind_dist_plugin(&runtime, "route-affinity.wasm", PolicyKind::Routing, "{}");
        crate::policy::bind::bind_policy(&service, PolicyKind::Routing, Some(bound.clone()))
            .unwrap();
        let counts = || {
            let counters = bound.stats().counters;
            (counters.calls, counters.cached)
        };
        let t0 = 1_000_000;
        let healthy = route(&service, t0);
        assert_eq!(healthy.len(), 3);
        assert_eq!(route(&service, t0 + 1), healthy);
        assert_eq!(counts(), (1, 1));

        // The primary fails enough to be ejected: the next plan is a miss
        // and routes around it, and repeats are hits again. (The failures
        // also moved its failure rate and latency: not part of the key.)
        let primary = healthy[0] as usize;
        let outlier = &service.spec.outlier;
        for _ in 0..outlier.consecutive_failures {
            service.nodes[primary]
                .health
                .record(Verdict::Failure, 1, t0);
        }
        let ejected = route(&service, t0 + 1);
        assert_eq!(ejected, healthy[1..]);
        assert_eq!(route(&service, t0 + 2), ejected);
        assert_eq!(counts(), (2, 2));

        // The ejection ends when the clock passes its deadline, with no
        // write: the candidates say healthy again, and the first entry
        // answers.
        let back = t0 + ejection_ms(outlier, 1);
        assert_eq!(route(&service, back), healthy);
        assert_eq!(counts(), (2, 3));
    }
}
