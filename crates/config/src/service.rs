//! One service: its replicas, quorum, routing key, timeouts, retry budget,
//! outlier ejection, health checks and limits, and their validation.
//! The policy bindings ([`PoliciesSpec`]) and the hint limits
//! ([`HintLimits`]) have files of their own.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, Errors};
use crate::hints::HintLimits;
use crate::names::{parse_node_url, validate_service_name};
use crate::policy::PoliciesSpec;
use crate::{
    ATTEMPTS_MAX, BODY_BYTES_MAX_LIMIT, DURATION_MS_MAX, NODE_ID_BYTES_MAX, NODES_MAX,
    REPLICAS_MAX, RING_POINTS_MAX, VNODES_PER_WEIGHT_DEFAULT, VNODES_PER_WEIGHT_MAX, WEIGHT_MAX,
};

/// One service: a set of replicas that levee fronts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// `[a-z0-9_-]`, at most 64 bytes, not starting with `_` (reserved for
    /// levee's own paths); the first path segment of data-plane requests.
    pub name: String,
    pub nodes: Vec<NodeSpec>,
    /// N: replicas per key. Default `min(3, nodes)`.
    #[serde(default)]
    pub replicas: Option<u32>,
    /// W: acknowledgements a write waits for. Default majority of N.
    #[serde(default)]
    pub write_quorum: Option<u32>,
    /// The floor under a write policy plugin (`policies.write`): it may
    /// wait for more than W, or fail early, but never acknowledge a write
    /// with fewer acks than this (1..=W). Default W: a plugin can only be
    /// stricter than W-of-N unless the operator lowers the floor.
    #[serde(default)]
    pub write_quorum_min: Option<u32>,
    /// R: replicas a GET or HEAD asks in parallel (1..=N); the answer is
    /// the newest version among them, and the older ones are repaired.
    /// Default 1: one replica answers (replicas still owed a write to the
    /// key are skipped, and a stale answer is retried on the next one).
    #[serde(default = "default_read_quorum")]
    pub read_quorum: u32,
    /// Where the routing key comes from.
    pub key: KeyRule,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub retry_budget: RetryBudgetSpec,
    /// Attempts per request including the first (host cap: 10).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Hedge reads to the next replica after this long (routing policies
    /// may override per request). Absent: no hedging.
    #[serde(default)]
    pub hedge_delay_ms: Option<u64>,
    #[serde(default)]
    pub outlier: OutlierSpec,
    /// Active health checks; absent: passive outlier ejection only.
    #[serde(default)]
    pub health_check: Option<HealthCheckSpec>,
    #[serde(default)]
    pub policies: PoliciesSpec,
    /// Largest accepted request body (413 beyond). Default 8 MiB.
    #[serde(default = "default_body_bytes_max")]
    pub body_bytes_max: u64,
    /// A request body may pause at most this long between bytes, and must
    /// arrive within this long plus one second per
    /// `body_rate_min_bytes_per_s` bytes received (408 otherwise). Default
    /// 20 s (Apache's `mod_reqtimeout` `body=20`; nginx's
    /// `client_body_timeout`, a pause rule only, is 60 s).
    #[serde(default = "default_body_read_timeout_ms")]
    pub body_read_timeout_ms: u64,
    /// The slowest average a request body may arrive at once
    /// `body_read_timeout_ms` has passed. Default 1024 (Apache's
    /// `MinRate` is 500).
    #[serde(default = "default_body_rate_min_bytes_per_s")]
    pub body_rate_min_bytes_per_s: u64,
    /// Requests in flight for this service (503 beyond). Default 1024.
    #[serde(default = "default_concurrency_max")]
    pub concurrency_max: u32,
    /// Ring virtual nodes per unit of node weight (`placement: "ring"`
    /// only). Default 160.
    #[serde(default = "default_vnodes_per_weight")]
    pub vnodes_per_weight: u32,
    /// How a key's replicas are chosen from the nodes: `"ring"` (the SHA-1
    /// consistent-hash ring, the default) or `"rendezvous"` (weighted
    /// rendezvous hashing: balanced to the keys' own noise, optimal key
    /// movement). Changing it on a live service moves most keys to other
    /// replicas: see the README, *Placement*.
    #[serde(default)]
    pub placement: Placement,
    /// Bounded loads for reads (HAProxy's `hash-balance-factor`): a replica
    /// whose requests in flight reach this percentage of its weighted share
    /// of the service's in-flight requests is tried after the others for a
    /// read. Never changes where data lives or where writes go. 0 (the
    /// default) is off; otherwise more than 100, e.g. 125 for 1.25×.
    #[serde(default)]
    pub read_balance_factor_percent: u32,
    /// Bounds on hinted writes kept for a replica that missed them
    /// (`age_ms_max`, `bytes_max`); see [`HintLimits`].
    #[serde(default)]
    pub hints: HintLimits,
}

/// How a service places keys on its nodes (`services[].placement`).
///
/// The default stays `ring` on purpose: a service that changed placement
/// would find most of its keys on replicas that never received them (reads
/// miss until the data is rewritten or copied over), so only a new service,
/// or an operator who moves the data, should choose `rendezvous`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// The SHA-1 consistent-hash ring (`vnodes_per_weight` points per unit
    /// of weight).
    #[default]
    Ring,
    /// Weighted rendezvous (highest random weight) hashing over the key's
    /// SHA-1 position.
    Rendezvous,
}

impl Placement {
    /// The name as written in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Placement::Ring => "ring",
            Placement::Rendezvous => "rendezvous",
        }
    }
}

/// Most total node weight a `rendezvous` service may have: a lookup scores
/// every unit of weight, so this bounds its cost (about 1.5 ns a unit).
pub const RENDEZVOUS_WEIGHT_TOTAL_MAX: u64 = 1024;

/// Largest `read_balance_factor_percent` (100×).
pub const READ_BALANCE_FACTOR_PERCENT_MAX: u32 = 10_000;

/// One replica of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// Unique within the service; hashed into the ring, so renaming a node
    /// moves its keys.
    pub id: String,
    /// `http://host:port` or `https://host:port` (TLS per the top-level
    /// `upstream_tls`); no path.
    pub url: String,
    #[serde(default)]
    pub zone: Option<String>,
    /// Relative share of keys (1..=100).
    #[serde(default = "default_weight")]
    pub weight: u32,
}

/// Where the routing key of a request comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum KeyRule {
    /// `{"header": "x-key"}`: the value of this request header.
    Header(String),
    /// `{"path_segment": 1}`: the 0-based segment of the path after the
    /// service prefix (`/svc/kv/alice`: 0 = `kv`, 1 = `alice`).
    PathSegment(u32),
    /// `{"query": "key"}`: the value of this query parameter.
    Query(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// One attempt, until the response head arrives.
    pub per_try_ms: u64,
    /// The whole request including retries and their delays.
    pub total_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            per_try_ms: 1_000,
            total_ms: 3_000,
        }
    }
}

/// Retries allowed: `ratio × requests + min_per_s × window` over the
/// trailing window (Linkerd's and Envoy's rule).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryBudgetSpec {
    pub ratio: f64,
    pub min_per_s: u32,
    pub window_ms: u64,
}

impl Default for RetryBudgetSpec {
    fn default() -> Self {
        RetryBudgetSpec {
            ratio: 0.2,
            min_per_s: 10,
            window_ms: 10_000,
        }
    }
}

/// Passive outlier ejection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierSpec {
    /// Failures in a row (errors or 5xx) that eject a node.
    pub consecutive_failures: u32,
    /// First ejection; each repeated ejection doubles it.
    pub base_ejection_ms: u64,
    pub max_ejection_ms: u64,
}

impl Default for OutlierSpec {
    fn default() -> Self {
        OutlierSpec {
            consecutive_failures: 5,
            base_ejection_ms: 1_000,
            max_ejection_ms: 30_000,
        }
    }
}

/// Active health checking: `GET <node url><path>` every `interval_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckSpec {
    pub path: String,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// Successes in a row that mark an unhealthy node healthy.
    pub healthy_threshold: u32,
    /// Failures in a row that mark a healthy node unhealthy.
    pub unhealthy_threshold: u32,
}

impl Default for HealthCheckSpec {
    fn default() -> Self {
        HealthCheckSpec {
            path: "/healthz".into(),
            interval_ms: 1_000,
            timeout_ms: 500,
            healthy_threshold: 2,
            unhealthy_threshold: 3,
        }
    }
}

fn default_max_attempts() -> u32 {
    3
}
fn default_body_bytes_max() -> u64 {
    8 * 1024 * 1024
}
fn default_body_read_timeout_ms() -> u64 {
    20_000
}
fn default_body_rate_min_bytes_per_s() -> u64 {
    1024
}
fn default_concurrency_max() -> u32 {
    1024
}
fn default_read_quorum() -> u32 {
    1
}
fn default_vnodes_per_weight() -> u32 {
    VNODES_PER_WEIGHT_DEFAULT
}
fn default_weight() -> u32 {
    1
}

impl ServiceSpec {
    /// N, with its default applied.
    pub fn replicas(&self) -> u32 {
        let nodes = u32::try_from(self.nodes.len()).unwrap_or(u32::MAX);
        self.replicas.unwrap_or(3.min(nodes))
    }

    /// W, with its default (majority of N) applied.
    pub fn write_quorum(&self) -> u32 {
        self.write_quorum.unwrap_or(self.replicas() / 2 + 1)
    }

    /// The write policy's floor, with its default (W) applied.
    pub fn write_quorum_min(&self) -> u32 {
        self.write_quorum_min.unwrap_or(self.write_quorum())
    }

    /// Checks this service alone, as `services[i]` at `path`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut errors = Errors::default();
        self.validate_into(&format!("services[{}]", self.name), &mut errors);
        errors.into_result()
    }

    pub(crate) fn validate_into(&self, path: &str, errors: &mut Errors) {
        if let Err(message) = validate_service_name(&self.name) {
            errors.add(format!("{path}.name"), message);
        }
        self.validate_nodes(path, errors);
        let nodes = self.nodes.len();
        let replicas = self.replicas();
        if replicas == 0 {
            errors.add(format!("{path}.replicas"), "must be >= 1");
        } else if replicas as usize > nodes && nodes > 0 {
            errors.add(
                format!("{path}.replicas"),
                format!("must be <= nodes ({nodes})"),
            );
        } else if replicas as usize > REPLICAS_MAX {
            errors.add(
                format!("{path}.replicas"),
                format!("must be <= {}", REPLICAS_MAX),
            );
        }
        let quorum = self.write_quorum();
        if quorum == 0 {
            errors.add(format!("{path}.write_quorum"), "must be >= 1");
        } else if quorum > replicas {
            errors.add(
                format!("{path}.write_quorum"),
                format!("must be <= replicas ({replicas})"),
            );
        }
        match self.write_quorum_min {
            Some(0) => errors.add(format!("{path}.write_quorum_min"), "must be >= 1"),
            Some(min) if min > quorum => errors.add(
                format!("{path}.write_quorum_min"),
                format!("must be <= write_quorum ({quorum})"),
            ),
            _ => {}
        }
        if self.read_quorum == 0 {
            errors.add(format!("{path}.read_quorum"), "must be >= 1");
        } else if self.read_quorum > replicas {
            errors.add(
                format!("{path}.read_quorum"),
                format!("must be <= replicas ({replicas})"),
            );
        }
        self.validate_key(path, errors);
        self.validate_timing(path, errors);
        self.policies.validate_into(path, errors);
        self.hints
            .validate_into(&format!("{path}.hints"), |field, message| {
                errors.add(field, message)
            });
        errors.range(
            &format!("{path}.body_bytes_max"),
            self.body_bytes_max,
            0,
            BODY_BYTES_MAX_LIMIT,
        );
        errors.range(
            &format!("{path}.body_read_timeout_ms"),
            self.body_read_timeout_ms,
            1,
            DURATION_MS_MAX,
        );
        errors.range(
            &format!("{path}.body_rate_min_bytes_per_s"),
            self.body_rate_min_bytes_per_s,
            1,
            BODY_BYTES_MAX_LIMIT,
        );
        errors.range(
            &format!("{path}.concurrency_max"),
            self.concurrency_max.into(),
            1,
            1_000_000,
        );
        self.validate_ring(path, errors);
    }

    /// The placement's size: for the ring, `vnodes_per_weight` in range
    /// and the points it makes (total node weight × `vnodes_per_weight`) at
    /// most [`RING_POINTS_MAX`], the bound the host's ring enforces; for
    /// rendezvous, the total node weight at most
    /// [`RENDEZVOUS_WEIGHT_TOTAL_MAX`]. And the read balance factor: 0 or
    /// more than 100 (HAProxy's rule).
    fn validate_ring(&self, path: &str, errors: &mut Errors) {
        let factor = self.read_balance_factor_percent;
        if factor != 0 && !(101..=READ_BALANCE_FACTOR_PERCENT_MAX).contains(&factor) {
            errors.add(
                format!("{path}.read_balance_factor_percent"),
                format!(
                    "must be 0 (off) or between 101 and {READ_BALANCE_FACTOR_PERCENT_MAX}, \
                     got {factor}"
                ),
            );
        }
        errors.range(
            &format!("{path}.vnodes_per_weight"),
            self.vnodes_per_weight.into(),
            1,
            VNODES_PER_WEIGHT_MAX.into(),
        );
        let weight: u64 = self.nodes.iter().map(|node| u64::from(node.weight)).sum();
        if self.placement == Placement::Rendezvous {
            if weight > RENDEZVOUS_WEIGHT_TOTAL_MAX {
                errors.add(
                    format!("{path}.placement"),
                    format!(
                        "rendezvous scores every unit of node weight per lookup: total node \
                         weight {weight} is more than {RENDEZVOUS_WEIGHT_TOTAL_MAX}"
                    ),
                );
            }
            return;
        }
        let points = weight.saturating_mul(self.vnodes_per_weight.into());
        if points > RING_POINTS_MAX {
            errors.add(
                format!("{path}.vnodes_per_weight"),
                format!(
                    "total node weight {weight} × vnodes_per_weight {} makes {points} ring \
                     points, more than {RING_POINTS_MAX}",
                    self.vnodes_per_weight
                ),
            );
        }
    }

    fn validate_nodes(&self, path: &str, errors: &mut Errors) {
        if self.nodes.is_empty() {
            errors.add(format!("{path}.nodes"), "must list at least one node");
        }
        if self.nodes.len() > NODES_MAX {
            errors.add(
                format!("{path}.nodes"),
                format!("at most {NODES_MAX} nodes"),
            );
        }
        let mut ids = BTreeSet::new();
        for (index, node) in self.nodes.iter().enumerate() {
            let node_path = format!("{path}.nodes[{index}]");
            if node.id.is_empty() || node.id.len() > NODE_ID_BYTES_MAX {
                errors.add(
                    format!("{node_path}.id"),
                    format!("must be 1 to {NODE_ID_BYTES_MAX} bytes"),
                );
            } else if !ids.insert(node.id.as_str()) {
                errors.add(
                    format!("{node_path}.id"),
                    format!("duplicate node id {:?}", node.id),
                );
            }
            if let Err(message) = parse_node_url(&node.url) {
                errors.add(format!("{node_path}.url"), message);
            }
            errors.range(
                &format!("{node_path}.weight"),
                node.weight.into(),
                1,
                WEIGHT_MAX.into(),
            );
            if let Some(zone) = &node.zone
                && (zone.is_empty() || zone.len() > 64)
            {
                errors.add(format!("{node_path}.zone"), "must be 1 to 64 bytes");
            }
        }
    }

    fn validate_key(&self, path: &str, errors: &mut Errors) {
        match &self.key {
            KeyRule::Header(name) => {
                if http::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    errors.add(
                        format!("{path}.key.header"),
                        format!("{name:?} is not a valid header name"),
                    );
                }
            }
            KeyRule::PathSegment(segment) => {
                errors.range(
                    &format!("{path}.key.path_segment"),
                    (*segment).into(),
                    0,
                    64,
                );
            }
            KeyRule::Query(name) => {
                if name.is_empty() || name.len() > 128 {
                    errors.add(format!("{path}.key.query"), "must be 1 to 128 bytes");
                }
            }
        }
    }

    fn validate_timing(&self, path: &str, errors: &mut Errors) {
        let timeouts = &self.timeouts;
        errors.range(
            &format!("{path}.timeouts.per_try_ms"),
            timeouts.per_try_ms,
            1,
            DURATION_MS_MAX,
        );
        errors.range(
            &format!("{path}.timeouts.total_ms"),
            timeouts.total_ms,
            1,
            DURATION_MS_MAX,
        );
        if timeouts.per_try_ms > timeouts.total_ms {
            errors.add(
                format!("{path}.timeouts.per_try_ms"),
                format!("must be <= timeouts.total_ms ({})", timeouts.total_ms),
            );
        }
        let budget = &self.retry_budget;
        if !(0.0..=10.0).contains(&budget.ratio) || budget.ratio.is_nan() {
            errors.add(
                format!("{path}.retry_budget.ratio"),
                "must be between 0.0 and 10.0",
            );
        }
        errors.range(
            &format!("{path}.retry_budget.min_per_s"),
            budget.min_per_s.into(),
            0,
            100_000,
        );
        errors.range(
            &format!("{path}.retry_budget.window_ms"),
            budget.window_ms,
            100,
            600_000,
        );
        errors.range(
            &format!("{path}.max_attempts"),
            self.max_attempts.into(),
            1,
            ATTEMPTS_MAX.into(),
        );
        if let Some(delay) = self.hedge_delay_ms {
            errors.range(&format!("{path}.hedge_delay_ms"), delay, 1, DURATION_MS_MAX);
        }
        let outlier = &self.outlier;
        errors.range(
            &format!("{path}.outlier.consecutive_failures"),
            outlier.consecutive_failures.into(),
            1,
            1_000,
        );
        errors.range(
            &format!("{path}.outlier.base_ejection_ms"),
            outlier.base_ejection_ms,
            1,
            DURATION_MS_MAX,
        );
        if outlier.max_ejection_ms < outlier.base_ejection_ms
            || outlier.max_ejection_ms > DURATION_MS_MAX
        {
            errors.add(
                format!("{path}.outlier.max_ejection_ms"),
                format!(
                    "must be between base_ejection_ms ({}) and {DURATION_MS_MAX}",
                    outlier.base_ejection_ms
                ),
            );
        }
        if let Some(check) = &self.health_check {
            let check_path = format!("{path}.health_check");
            if !check.path.starts_with('/')
                || check.path.parse::<http::uri::PathAndQuery>().is_err()
            {
                errors.add(
                    format!("{check_path}.path"),
                    "must be an absolute path like /healthz",
                );
            }
            errors.range(
                &format!("{check_path}.interval_ms"),
                check.interval_ms,
                10,
                DURATION_MS_MAX,
            );
            errors.range(
                &format!("{check_path}.timeout_ms"),
                check.timeout_ms,
                1,
                DURATION_MS_MAX,
            );
            errors.range(
                &format!("{check_path}.healthy_threshold"),
                check.healthy_threshold.into(),
                1,
                100,
            );
            errors.range(
                &format!("{check_path}.unhealthy_threshold"),
                check.unhealthy_threshold.into(),
                1,
                100,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use serde_json::json;

    use super::*;
    use crate::test_support::{messages, service, with_service};
    use crate::{Config, FsyncMode, Listeners};

    #[test]
    fn minimal_config_gets_defaults() {
        let config = Config::from_json(&with_service(service(5))).unwrap();
        let spec = &config.services[0];
        assert_eq!(spec.replicas(), 3);
        assert_eq!(spec.write_quorum(), 2);
        assert_eq!(spec.body_bytes_max, 8 * 1024 * 1024);
        assert_eq!(spec.max_attempts, 3);
        assert_eq!(spec.retry_budget, RetryBudgetSpec::default());
        assert_eq!(config.listeners, Listeners::default());
        assert_eq!(config.fsync, FsyncMode::Always);
        assert_eq!(config.log_dir(), PathBuf::from("levee-data/log"));
    }

    #[test]
    fn replicas_default_to_node_count_when_fewer_than_three() {
        let config = Config::from_json(&with_service(service(2))).unwrap();
        assert_eq!(config.services[0].replicas(), 2);
        assert_eq!(config.services[0].write_quorum(), 2);
    }

    #[test]
    fn type_errors_name_the_path() {
        let mut bad = service(3);
        bad["timeouts"] = json!({"per_try_ms": "fast"});
        let error = Config::from_json(&with_service(bad)).unwrap_err();
        let message = messages(error).join("\n");
        assert!(
            message.starts_with("services[0].timeouts.per_try_ms: invalid type"),
            "{message}"
        );
    }

    #[test]
    fn quorum_above_replicas_is_named() {
        let mut second = service(3);
        second["name"] = json!("orders");
        second["write_quorum"] = json!(4);
        let error =
            Config::from_json(&json!({"services": [service(3), second]}).to_string()).unwrap_err();
        assert_eq!(
            messages(error),
            vec!["services[1].write_quorum: must be <= replicas (3)"]
        );
    }

    #[test]
    fn read_quorum_defaults_to_one_and_stays_within_replicas() {
        let config = Config::from_json(&with_service(service(3))).unwrap();
        assert_eq!(config.services[0].read_quorum, 1);
        for (read_quorum, expected) in [
            (0, Some("services[0].read_quorum: must be >= 1")),
            (2, None),
            (3, None),
            (4, Some("services[0].read_quorum: must be <= replicas (3)")),
        ] {
            let mut spec = service(3);
            spec["read_quorum"] = json!(read_quorum);
            let result = Config::from_json(&with_service(spec));
            match expected {
                None => assert_eq!(result.unwrap().services[0].read_quorum, read_quorum),
                Some(message) => assert_eq!(messages(result.unwrap_err()), vec![message]),
            }
        }
    }

    #[test]
    fn every_problem_is_reported() {
        let bad = json!({
            "name": "Bad Name",
            "nodes": [
                {"id": "a", "url": "ftp://x:1"},
                {"id": "a", "url": "http://127.0.0.1:7002/path"},
                {"id": "c", "url": "http://127.0.0.1", "weight": 0},
            ],
            "replicas": 4,
            "key": {"header": "bad header"},
            "timeouts": {"per_try_ms": 5000, "total_ms": 1000},
            "retry_budget": {"ratio": -1.0},
            "max_attempts": 11,
            "outlier": {"base_ejection_ms": 100, "max_ejection_ms": 10},
            "policies": {"routing": {"plugin": "../etc/passwd"}},
        });
        let error = Config::from_json(&with_service(bad)).unwrap_err();
        let all = messages(error);
        let expect = [
            "services[0].name: \"Bad Name\" may only contain",
            "services[0].nodes[0].url: \"ftp://x:1\" must start with http://",
            "services[0].nodes[1].id: duplicate node id \"a\"",
            "services[0].nodes[1].url: \"http://127.0.0.1:7002/path\" must not have a path",
            "services[0].nodes[2].url: \"http://127.0.0.1\" must name a port",
            "services[0].nodes[2].weight: must be between 1 and 100, got 0",
            "services[0].replicas: must be <= nodes (3)",
            "services[0].key.header: \"bad header\" is not a valid header name",
            "services[0].timeouts.per_try_ms: must be <= timeouts.total_ms (1000)",
            "services[0].retry_budget.ratio: must be between 0.0 and 10.0",
            "services[0].max_attempts: must be between 1 and 10, got 11",
            "services[0].outlier.max_ejection_ms: must be between base_ejection_ms (100)",
            "services[0].policies.routing.plugin: must be 1 to 64 bytes",
        ];
        for prefix in expect {
            assert!(
                all.iter().any(|m| m.starts_with(prefix)),
                "missing {prefix:?} in {all:#?}"
            );
        }
    }

    #[test]
    fn body_read_limits_have_defaults_and_ranges() {
        let spec = &Config::from_json(&with_service(service(1)))
            .unwrap()
            .services[0];
        assert_eq!(
            (spec.body_read_timeout_ms, spec.body_rate_min_bytes_per_s),
            (20_000, 1024)
        );
        let mut bad = service(1);
        bad["body_read_timeout_ms"] = json!(0);
        bad["body_rate_min_bytes_per_s"] = json!(0);
        let all = messages(Config::from_json(&with_service(bad)).unwrap_err());
        assert_eq!(
            all,
            [
                "services[0].body_read_timeout_ms: must be between 1 and 86400000, got 0",
                "services[0].body_rate_min_bytes_per_s: must be between 1 and 1073741824, got 0",
            ]
        );
    }

    #[test]
    fn ring_points_are_checked_with_the_field_errors() {
        // 256 nodes of weight 100 at 41 vnodes each: 1,049,600 points.
        let mut big = service(256);
        for node in big["nodes"].as_array_mut().unwrap() {
            node["weight"] = json!(100);
        }
        big["vnodes_per_weight"] = json!(41);
        let all = messages(Config::from_json(&with_service(big.clone())).unwrap_err());
        assert_eq!(
            all,
            [
                "services[0].vnodes_per_weight: total node weight 25600 × vnodes_per_weight 41 \
              makes 1049600 ring points, more than 1048576"
            ]
        );
        big["vnodes_per_weight"] = json!(40);
        assert!(Config::from_json(&with_service(big)).is_ok());
    }

    #[test]
    fn placement_defaults_to_the_ring_and_rendezvous_bounds_the_weight() {
        let spec = &Config::from_json(&with_service(service(3)))
            .unwrap()
            .services[0];
        assert_eq!(
            (spec.placement, spec.read_balance_factor_percent),
            (Placement::Ring, 0)
        );
        let mut chosen = service(3);
        chosen["placement"] = json!("rendezvous");
        chosen["read_balance_factor_percent"] = json!(125);
        let spec = &Config::from_json(&with_service(chosen.clone()))
            .unwrap()
            .services[0];
        assert_eq!(
            (spec.placement, spec.read_balance_factor_percent),
            (Placement::Rendezvous, 125)
        );
        for node in chosen["nodes"].as_array_mut().unwrap() {
            node["weight"] = json!(100);
        }
        assert!(Config::from_json(&with_service(chosen.clone())).is_ok());
        let mut heavy = service(11);
        heavy["placement"] = json!("rendezvous");
        for node in heavy["nodes"].as_array_mut().unwrap() {
            node["weight"] = json!(100);
        }
        assert_eq!(
            messages(Config::from_json(&with_service(heavy)).unwrap_err()),
            [
                "services[0].placement: rendezvous scores every unit of node weight per \
                 lookup: total node weight 1100 is more than 1024"
            ]
        );
        let mut unknown = service(3);
        unknown["placement"] = json!("maglev");
        let message = messages(Config::from_json(&with_service(unknown)).unwrap_err()).join("");
        assert!(
            message.starts_with("services[0].placement: unknown variant `maglev`"),
            "{message}"
        );
    }

    #[test]
    fn read_balance_factor_is_off_or_above_100() {
        for (factor, ok) in [
            (0, true),
            (100, false),
            (101, true),
            (125, true),
            (10_001, false),
        ] {
            let mut spec = service(3);
            spec["read_balance_factor_percent"] = json!(factor);
            let result = Config::from_json(&with_service(spec));
            if ok {
                assert!(result.is_ok(), "{factor}");
            } else {
                assert_eq!(
                    messages(result.unwrap_err()),
                    [format!(
                        "services[0].read_balance_factor_percent: must be 0 (off) or between \
                         101 and 10000, got {factor}"
                    )]
                );
            }
        }
    }

    #[test]
    fn key_rule_variants() {
        for (rule, expected) in [
            (json!({"header": "x-key"}), KeyRule::Header("x-key".into())),
            (json!({"path_segment": 0}), KeyRule::PathSegment(0)),
            (json!({"query": "k"}), KeyRule::Query("k".into())),
        ] {
            let mut spec = service(1);
            spec["key"] = rule;
            assert_eq!(
                Config::from_json(&with_service(spec)).unwrap().services[0].key,
                expected
            );
        }
        let mut spec = service(1);
        spec["key"] = json!({"cookie": "k"});
        let message = messages(Config::from_json(&with_service(spec)).unwrap_err()).join("");
        assert!(
            message.starts_with("services[0].key: unknown variant `cookie`"),
            "{message}"
        );
    }
}
