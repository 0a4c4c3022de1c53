//! The JSON configuration: types, defaults and validation.
//!
//! Configuration is untrusted input (an operator typo must not become an
//! outage), so every field is checked before anything is built from it, and
//! every error names the field path and what was expected, e.g.
//! `services[1].write_quorum: must be <= replicas (3)`. Unknown fields are
//! rejected rather than ignored: a misspelt `max_atempts` silently doing
//! nothing is worse than a refusal to start.
//!
//! Parsing happens in two steps: serde (through `serde_path_to_error`, so
//! type errors also carry their path) and then [`Config::validate`], which
//! checks ranges and cross-field rules and collects *all* problems so an
//! operator fixes a file in one go.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub mod hints;

/// Bytes of a configuration file we are willing to read.
pub const CONFIG_FILE_BYTES_MAX: u64 = 4 * 1024 * 1024;
/// Services one levee may front.
pub const SERVICES_MAX: usize = 256;
/// Bytes of a service name.
pub const SERVICE_NAME_BYTES_MAX: usize = 64;
/// Bytes of a node id.
pub const NODE_ID_BYTES_MAX: usize = 128;
/// Nodes of one service.
pub const NODES_MAX: usize = 256;
/// The host's hard cap on attempts per request, whatever the config says.
pub const ATTEMPTS_MAX: u32 = 10;
/// Virtual nodes per unit of weight when the configuration says nothing.
pub const VNODES_PER_WEIGHT_DEFAULT: u32 = 160;
/// Most replicas a preference list may hold.
pub const REPLICAS_MAX: usize = 16;
/// Largest request body a service may accept.
pub const BODY_BYTES_MAX_LIMIT: u64 = 1024 * 1024 * 1024;
/// Largest node weight.
pub const WEIGHT_MAX: u32 = 100;
/// Largest number of ring virtual nodes per unit of weight.
pub const VNODES_PER_WEIGHT_MAX: u32 = 4096;
/// Upper bound on any configured duration (one day), to catch unit mistakes.
pub const DURATION_MS_MAX: u64 = 24 * 60 * 60 * 1000;

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub listeners: Listeners,
    /// Holds the log (`<data_dir>/log`), the plugin cache and hints.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// How the durable log syncs appends to disk.
    #[serde(default)]
    pub fsync: FsyncMode,
    /// Where plugin `.wasm` files are looked up by name; default
    /// `<data_dir>/plugins`.
    #[serde(default)]
    pub plugin_dir: Option<PathBuf>,
    /// Bearer token for the admin API (enforced by the admin listener).
    #[serde(default)]
    pub admin_token: Option<String>,
    #[serde(default)]
    pub server: ServerLimits,
    #[serde(default)]
    pub services: Vec<ServiceSpec>,
    /// How long shutdown waits for in-flight requests to finish before it
    /// drops their connections (then it flushes the log and checkpoints).
    #[serde(default = "default_shutdown_grace_ms")]
    pub shutdown_grace_ms: u64,
}

/// Where levee listens. Port 0 lets the OS pick (the bound addresses are
/// printed at start-up).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listeners {
    pub data: SocketAddr,
    pub admin: SocketAddr,
}

impl Default for Listeners {
    fn default() -> Self {
        Listeners {
            data: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin: SocketAddr::from(([127, 0, 0, 1], 9901)),
        }
    }
}

/// Durability of log appends: `"always"`, `{"every_ms": N}` or `"never"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncMode {
    /// fsync before acknowledging each append (group-committed).
    #[default]
    Always,
    /// fsync at most every N milliseconds; a crash loses at most that window.
    EveryMs(u64),
    /// Leave it to the OS (tests and benchmarks only).
    Never,
}

/// Limits of the listeners themselves, against slow or abusive clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerLimits {
    /// A client must send its complete request head within this time.
    pub header_read_timeout_ms: u64,
    /// Open client connections per listener; further accepts wait.
    pub connections_max: u32,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_read_timeout_ms: 10_000,
            connections_max: 10_000,
        }
    }
}

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
    /// Requests in flight for this service (503 beyond). Default 1024.
    #[serde(default = "default_concurrency_max")]
    pub concurrency_max: u32,
    /// Ring virtual nodes per unit of node weight. Default 160.
    #[serde(default = "default_vnodes_per_weight")]
    pub vnodes_per_weight: u32,
    /// Bounds on hinted writes kept for a replica that missed them
    /// (`age_ms_max`, `bytes_max`); see `hints::HintLimits`.
    #[serde(default)]
    pub hints: hints::HintLimits,
}

/// One replica of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// Unique within the service; hashed into the ring, so renaming a node
    /// moves its keys.
    pub id: String,
    /// `http://host:port` (plain HTTP; no path).
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

/// Plugin bindings; an absent policy means the native built-in.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoliciesSpec {
    pub retry: Option<PolicyRef>,
    pub routing: Option<PolicyRef>,
    pub checkpoint: Option<PolicyRef>,
}

/// `{"plugin": "<name>", "config": {...}, "limits": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRef {
    pub plugin: String,
    #[serde(default = "empty_object")]
    pub config: serde_json::Value,
    /// The fence around the plugin (`levee_plugin::Limits`: per-call CPU
    /// deadline, memory, pool size, ...); its defaults when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<levee_plugin::Limits>,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("levee-data")
}
fn default_shutdown_grace_ms() -> u64 {
    crate::base::shutdown::GRACE_MS_DEFAULT
}
fn default_max_attempts() -> u32 {
    3
}
fn default_body_bytes_max() -> u64 {
    8 * 1024 * 1024
}
fn default_concurrency_max() -> u32 {
    1024
}
fn default_vnodes_per_weight() -> u32 {
    VNODES_PER_WEIGHT_DEFAULT
}
fn default_weight() -> u32 {
    1
}
fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

/// One problem in a configuration, at a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is {bytes} bytes, more than the {max} allowed")]
    TooLarge { path: PathBuf, bytes: u64, max: u64 },
    #[error("{0}")]
    Parse(FieldError),
    #[error("invalid config:\n  {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n  "))]
    Invalid(Vec<FieldError>),
}

impl ConfigError {
    /// The individual problems (one for read and parse errors).
    pub fn field_errors(&self) -> Vec<FieldError> {
        match self {
            ConfigError::Parse(e) => vec![e.clone()],
            ConfigError::Invalid(errors) => errors.clone(),
            other => vec![FieldError {
                path: String::new(),
                message: other.to_string(),
            }],
        }
    }
}

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let read_error = |source| ConfigError::Read {
            path: path.to_owned(),
            source,
        };
        let bytes = std::fs::metadata(path).map_err(read_error)?.len();
        if bytes > CONFIG_FILE_BYTES_MAX {
            return Err(ConfigError::TooLarge {
                path: path.to_owned(),
                bytes,
                max: CONFIG_FILE_BYTES_MAX,
            });
        }
        let text = std::fs::read_to_string(path).map_err(read_error)?;
        Config::from_json(&text)
    }

    /// Parses and validates a configuration from JSON text.
    pub fn from_json(text: &str) -> Result<Config, ConfigError> {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let config: Config = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." {
                "(root)".to_string()
            } else {
                path
            };
            ConfigError::Parse(FieldError {
                path,
                message: e.into_inner().to_string(),
            })
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges and cross-field rules, collecting every problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut errors = Errors::default();
        if self.listeners.data == self.listeners.admin && self.listeners.data.port() != 0 {
            errors.add("listeners.admin", "must differ from listeners.data");
        }
        if let FsyncMode::EveryMs(ms) = self.fsync {
            errors.range("fsync.every_ms", ms, 1, 60_000);
        }
        if let Some(token) = &self.admin_token
            && (token.len() < 16 || token.len() > 1024)
        {
            errors.add("admin_token", "must be 16 to 1024 bytes long");
        }
        errors.range(
            "server.header_read_timeout_ms",
            self.server.header_read_timeout_ms,
            1,
            600_000,
        );
        errors.range(
            "server.connections_max",
            self.server.connections_max.into(),
            1,
            1_000_000,
        );
        errors.range(
            "shutdown_grace_ms",
            self.shutdown_grace_ms,
            0,
            crate::base::shutdown::GRACE_MS_MAX,
        );
        if self.services.len() > SERVICES_MAX {
            errors.add("services", format!("at most {SERVICES_MAX} services"));
        }
        let mut names = BTreeSet::new();
        for (index, service) in self.services.iter().enumerate() {
            let path = format!("services[{index}]");
            if !names.insert(service.name.as_str()) {
                errors.add(
                    format!("{path}.name"),
                    format!("duplicate service name {:?}", service.name),
                );
            }
            service.validate_into(&path, &mut errors);
        }
        errors.into_result()
    }

    /// The log directory inside `data_dir`.
    pub fn log_dir(&self) -> PathBuf {
        self.data_dir.join("log")
    }

    /// Where plugins are looked up by name.
    pub fn plugin_dir(&self) -> PathBuf {
        self.plugin_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("plugins"))
    }

    /// The plugin compilation cache inside `data_dir`.
    pub fn plugin_cache_dir(&self) -> PathBuf {
        self.data_dir.join("plugin-cache")
    }

    /// The service of this name, if configured.
    pub fn service(&self, name: &str) -> Option<&ServiceSpec> {
        self.services.iter().find(|s| s.name == name)
    }
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

    /// Checks this service alone, as `services[i]` at `path`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut errors = Errors::default();
        self.validate_into(&format!("services[{}]", self.name), &mut errors);
        errors.into_result()
    }

    fn validate_into(&self, path: &str, errors: &mut Errors) {
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
        self.validate_key(path, errors);
        self.validate_timing(path, errors);
        self.validate_policies(path, errors);
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
            &format!("{path}.concurrency_max"),
            self.concurrency_max.into(),
            1,
            1_000_000,
        );
        errors.range(
            &format!("{path}.vnodes_per_weight"),
            self.vnodes_per_weight.into(),
            1,
            VNODES_PER_WEIGHT_MAX.into(),
        );
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
                if hyper::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
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
                || check
                    .path
                    .parse::<hyper::http::uri::PathAndQuery>()
                    .is_err()
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

    fn validate_policies(&self, path: &str, errors: &mut Errors) {
        let bindings = [
            ("retry", &self.policies.retry),
            ("routing", &self.policies.routing),
            ("checkpoint", &self.policies.checkpoint),
        ];
        for (kind, binding) in bindings {
            let Some(binding) = binding else { continue };
            let policy_path = format!("{path}.policies.{kind}");
            if validate_plugin_name(&binding.plugin).is_err() {
                errors.add(
                    format!("{policy_path}.plugin"),
                    "must be 1 to 64 bytes of [a-z0-9_-] (a file name in plugin_dir without .wasm)",
                );
            }
            if !binding.config.is_object() {
                errors.add(format!("{policy_path}.config"), "must be a JSON object");
            } else if binding.config.to_string().len() > levee_policy::limits::CONFIG_BYTES_MAX {
                errors.add(
                    format!("{policy_path}.config"),
                    format!(
                        "must serialize to at most {} bytes",
                        levee_policy::limits::CONFIG_BYTES_MAX
                    ),
                );
            }
        }
    }
}

/// `[a-z0-9_-]{1,64}`, not starting with `_` or `-`.
pub fn validate_service_name(name: &str) -> Result<(), String> {
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-';
    if name.is_empty() || name.len() > SERVICE_NAME_BYTES_MAX {
        return Err(format!("must be 1 to {SERVICE_NAME_BYTES_MAX} bytes"));
    }
    if !name.bytes().all(allowed) {
        return Err(format!("{name:?} may only contain a-z, 0-9, '_' and '-'"));
    }
    if name.starts_with(['_', '-']) {
        return Err(format!(
            "{name:?} must not start with '_' or '-' (reserved for levee's own paths)"
        ));
    }
    Ok(())
}

/// Plugin names share the service-name alphabet (they are file names).
pub fn validate_plugin_name(name: &str) -> Result<(), String> {
    validate_service_name(name)
}

/// A node URL: `http://host:port` with an optional trailing `/`.
pub fn parse_node_url(url: &str) -> Result<hyper::Uri, String> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "{url:?} must start with http:// (levee speaks plain HTTP to replicas)"
        ));
    }
    let Some(authority) = uri.authority() else {
        return Err(format!("{url:?} has no host"));
    };
    if authority.port_u16().is_none() {
        return Err(format!("{url:?} must name a port"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!("{url:?} must not have a path or query"));
    }
    Ok(uri)
}

/// Collects field errors.
#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    fn range(&mut self, path: &str, value: u64, min: u64, max: u64) {
        if value < min || value > max {
            self.add(
                path,
                format!("must be between {min} and {max}, got {value}"),
            );
        }
    }

    fn into_result(self) -> Result<(), ConfigError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(self.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(nodes: usize) -> serde_json::Value {
        json!({
            "name": "users",
            "nodes": (0..nodes).map(|i| json!({"id": format!("n{i}"), "url": format!("http://127.0.0.1:{}", 7000 + i)})).collect::<Vec<_>>(),
            "key": {"path_segment": 1},
        })
    }

    fn with_service(service: serde_json::Value) -> String {
        json!({"services": [service]}).to_string()
    }

    fn messages(error: ConfigError) -> Vec<String> {
        error.field_errors().iter().map(|e| e.to_string()).collect()
    }

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
    fn full_config_parses() {
        let text = json!({
            "listeners": {"data": "127.0.0.1:0", "admin": "127.0.0.1:0"},
            "data_dir": "/tmp/x",
            "fsync": {"every_ms": 5},
            "plugin_dir": "/tmp/plugins",
            "admin_token": "0123456789abcdef",
            "server": {"header_read_timeout_ms": 500, "connections_max": 64},
            "services": [{
                "name": "kv_1-a",
                "nodes": [
                    {"id": "a", "url": "http://127.0.0.1:7001", "zone": "z1", "weight": 2},
                    {"id": "b", "url": "http://127.0.0.1:7002/"},
                ],
                "replicas": 2, "write_quorum": 1,
                "key": {"header": "x-key"},
                "timeouts": {"per_try_ms": 100, "total_ms": 500},
                "retry_budget": {"ratio": 0.5, "min_per_s": 1, "window_ms": 1000},
                "max_attempts": 4, "hedge_delay_ms": 20,
                "outlier": {"consecutive_failures": 2, "base_ejection_ms": 10, "max_ejection_ms": 100},
                "health_check": {"path": "/healthz", "interval_ms": 100, "timeout_ms": 50, "healthy_threshold": 1, "unhealthy_threshold": 1},
                "policies": {"retry": {"plugin": "retry-backoff", "config": {"base_delay_ms": 5}}},
                "body_bytes_max": 1024, "concurrency_max": 8, "vnodes_per_weight": 10,
            }],
        })
        .to_string();
        let config = Config::from_json(&text).unwrap();
        assert_eq!(config.fsync, FsyncMode::EveryMs(5));
        assert_eq!(config.services[0].key, KeyRule::Header("x-key".into()));
        assert_eq!(config.services[0].nodes[0].weight, 2);
        assert_eq!(
            config.services[0].policies.retry.as_ref().unwrap().plugin,
            "retry-backoff"
        );
        // Round trip: what we write (snapshots, admin) we can read back.
        let again = Config::from_json(&serde_json::to_string(&config).unwrap()).unwrap();
        assert_eq!(again, config);
    }

    #[test]
    fn fsync_modes_parse() {
        for (text, mode) in [
            ("\"always\"", FsyncMode::Always),
            ("\"never\"", FsyncMode::Never),
            ("{\"every_ms\": 10}", FsyncMode::EveryMs(10)),
        ] {
            let config = Config::from_json(&format!("{{\"fsync\": {text}}}")).unwrap();
            assert_eq!(config.fsync, mode);
        }
        let error = Config::from_json("{\"fsync\": \"sometimes\"}").unwrap_err();
        assert!(messages(error)[0].starts_with("fsync: unknown variant `sometimes`"));
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_path() {
        let mut bad = service(3);
        bad["max_atempts"] = json!(2);
        let error =
            Config::from_json(&json!({"services": [service(3), bad]}).to_string()).unwrap_err();
        let message = messages(error).join("\n");
        assert!(
            message.starts_with("services[1].max_atempts: unknown field `max_atempts`"),
            "{message}"
        );
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
    fn every_problem_is_reported() {
        let bad = json!({
            "name": "Bad Name",
            "nodes": [
                {"id": "a", "url": "https://x:1"},
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
            "services[0].nodes[0].url: \"https://x:1\" must start with http://",
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
    fn duplicate_and_reserved_service_names() {
        let error = Config::from_json(&json!({"services": [service(1), service(1)]}).to_string())
            .unwrap_err();
        assert_eq!(
            messages(error),
            vec!["services[1].name: duplicate service name \"users\""]
        );
        let mut reserved = service(1);
        reserved["name"] = json!("_levee");
        let error = Config::from_json(&with_service(reserved)).unwrap_err();
        assert!(messages(error)[0].starts_with("services[0].name: \"_levee\" must not start with"));
        let mut long = service(1);
        long["name"] = json!("a".repeat(65));
        let error = Config::from_json(&with_service(long)).unwrap_err();
        assert_eq!(
            messages(error),
            vec!["services[0].name: must be 1 to 64 bytes"]
        );
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

    #[test]
    fn load_refuses_missing_and_huge_files() {
        let dir = tempfile::tempdir().unwrap();
        let missing = Config::load(&dir.path().join("nope.json")).unwrap_err();
        assert!(matches!(missing, ConfigError::Read { .. }));
        let huge = dir.path().join("huge.json");
        std::fs::write(&huge, vec![b' '; (CONFIG_FILE_BYTES_MAX + 1) as usize]).unwrap();
        assert!(matches!(
            Config::load(&huge).unwrap_err(),
            ConfigError::TooLarge { .. }
        ));
        let good = dir.path().join("good.json");
        std::fs::write(&good, with_service(service(3))).unwrap();
        assert_eq!(Config::load(&good).unwrap().services.len(), 1);
    }
}
