//! levee's configuration file: serde data and validation with field paths.
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
//!
//! This crate is data and validation only: nothing here opens a socket,
//! reads a plugin or touches the log. The host (`levee`) re-exports it as
//! `levee::config`.
//!
//! # Layout
//! - this file: [`Config`] (the whole file), the listeners and server
//!   limits, [`Config::load`] / [`Config::from_json`], top-level
//!   validation, and the bounds every part shares.
//! - `service`: [`ServiceSpec`] and its parts ([`NodeSpec`], [`KeyRule`],
//!   [`Timeouts`], [`RetryBudgetSpec`], [`OutlierSpec`],
//!   [`HealthCheckSpec`]) with their validation.
//! - `policy`: plugin bindings: a service's [`PoliciesSpec`] (retry,
//!   routing), the process's checkpoint binding (top-level `checkpoint`),
//!   both [`PolicyRef`]s.
//! - `cluster`: [`ClusterSpec`], cluster mode on etcd (opt-in).
//! - `durability`: [`FsyncMode`].
//! - `tls`: TLS on the listeners ([`ListenersTls`]), HTTP/2 towards
//!   clients ([`Http2Spec`]) and TLS towards replicas ([`UpstreamTlsSpec`]).
//! - `versions`: [`VersionsSpec`], the clock skew bound of write versions.
//! - `names`: [`validate_service_name`], [`validate_plugin_name`],
//!   [`parse_node_url`].
//! - `admin`: [`validate_admin_host`], the entries of
//!   `admin_allowed_hosts`.
//! - `error`: [`FieldError`], [`ConfigError`] and the collector validation
//!   reports into.
//! - [`hints`]: [`hints::HintLimits`], per-node bounds on hinted writes.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod admin;
mod cluster;
mod durability;
mod error;
pub mod hints;
mod names;
mod policy;
mod service;
mod tls;
mod versions;

pub use admin::validate_admin_host;
pub use cluster::{
    CLUSTER_PREFIX_BYTES_MAX, ClusterSpec, ETCD_ENDPOINTS_MAX, INSTANCE_ID_BYTES_MAX,
    LEASE_TTL_S_MAX, LEASE_TTL_S_MIN, validate_instance_id,
};
pub use durability::{FSYNC_EVERY_MS_MAX, FsyncMode};
pub use error::{ConfigError, FieldError};
pub use names::{parse_node_url, validate_plugin_name, validate_service_name};
pub use policy::{CHECKPOINT_MOVED, PoliciesSpec, PolicyRef};
pub use service::{
    HealthCheckSpec, KeyRule, NodeSpec, OutlierSpec, Placement, READ_BALANCE_FACTOR_PERCENT_MAX,
    RENDEZVOUS_WEIGHT_TOTAL_MAX, RetryBudgetSpec, ServiceSpec, Timeouts,
};
pub use tls::{
    HTTP2_HEADER_LIST_BYTES_MAX_LIMIT, HTTP2_STREAMS_MAX_LIMIT, HTTP2_WINDOW_BYTES_MAX,
    HTTP2_WINDOW_BYTES_MIN, Http2Spec, ListenerTls, ListenersTls, TLS_PATH_BYTES_MAX,
    UpstreamTlsSpec,
};
pub use versions::{CLOCK_SKEW_MS_MAX_DEFAULT, CLOCK_SKEW_MS_MAX_LIMIT, VersionsSpec};

use error::Errors;

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
/// Most points one service's ring may hold (total node weight ×
/// `vnodes_per_weight`), so that a misconfigured weight cannot eat memory
/// or stall a rebuild; checked with the other field errors.
pub const RING_POINTS_MAX: u64 = 1 << 20;
/// Largest `server.buffered_body_bytes_max`.
pub const BUFFERED_BODY_BYTES_MAX_LIMIT: u64 = 64 * 1024 * 1024 * 1024;
/// Upper bound on any configured duration (one day), to catch unit mistakes.
pub const DURATION_MS_MAX: u64 = 24 * 60 * 60 * 1000;
/// Default drain bound when the config does not set `shutdown_grace_ms`.
pub const SHUTDOWN_GRACE_MS_DEFAULT: u64 = 10_000;
/// Shortest admin token, from the file or the environment: 16 random
/// bytes are past online guessing.
pub const ADMIN_TOKEN_BYTES_MIN: usize = 16;
/// Longest admin token, from the file or the environment.
pub const ADMIN_TOKEN_BYTES_MAX: usize = 1024;
/// Entries of `admin_allowed_hosts`.
pub const ADMIN_ALLOWED_HOSTS_MAX: usize = 64;
/// Largest accepted `shutdown_grace_ms`: orchestrators kill after ~30-60 s
/// anyway, and an unbounded drain is no drain.
pub const SHUTDOWN_GRACE_MS_MAX: u64 = 120_000;

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
    /// Bearer token for the admin API (enforced by the admin listener),
    /// [`ADMIN_TOKEN_BYTES_MIN`] to [`ADMIN_TOKEN_BYTES_MAX`] bytes.
    #[serde(default)]
    pub admin_token: Option<String>,
    /// Extra names the admin listener answers to in `Host` (without a
    /// port), besides its own address and the loopback names: e.g. the
    /// name a TLS proxy in front of it uses. Anything else is refused
    /// with 403, which is what stops a DNS-rebinding page (see the host's
    /// `control::admin_origin`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub admin_allowed_hosts: Vec<String>,
    #[serde(default)]
    pub server: ServerLimits,
    #[serde(default)]
    pub services: Vec<ServiceSpec>,
    /// The checkpoint policy's plugin binding, one per process (the log it
    /// decides about is shared by every service). Absent: the native
    /// `checkpoint-interval` with its defaults. Its `config` also
    /// configures that native policy, which answers whenever the plugin
    /// does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<PolicyRef>,
    /// How long shutdown waits for in-flight requests to finish before it
    /// drops their connections (then it flushes the log and checkpoints).
    #[serde(default = "default_shutdown_grace_ms")]
    pub shutdown_grace_ms: u64,
    /// Write versions: the clock skew bound (see `versions`).
    #[serde(default, skip_serializing_if = "VersionsSpec::is_default")]
    pub versions: VersionsSpec,
    /// TLS towards `https://` replicas (see `tls`).
    #[serde(default, skip_serializing_if = "UpstreamTlsSpec::is_default")]
    pub upstream_tls: UpstreamTlsSpec,
    /// Cluster mode on etcd (see `cluster`); absent: a single instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterSpec>,
}

/// Where levee listens. Port 0 lets the OS pick (the bound addresses are
/// printed at start-up).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listeners {
    pub data: SocketAddr,
    pub admin: SocketAddr,
    /// TLS termination per listener (see `tls`); plain HTTP without it.
    #[serde(skip_serializing_if = "ListenersTls::is_empty")]
    pub tls: ListenersTls,
    /// Lets an admin token travel over plain HTTP on an admin listener
    /// other machines can reach. Refused at start without it: a bearer
    /// token in clear text is a token anyone on the path can replay. For a
    /// network the operator trusts (or TLS terminated in front of levee).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub insecure_admin_token_over_plain_http: bool,
}

impl Default for Listeners {
    fn default() -> Self {
        Listeners {
            data: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin: SocketAddr::from(([127, 0, 0, 1], 9901)),
            tls: ListenersTls::default(),
            insecure_admin_token_over_plain_http: false,
        }
    }
}

/// Limits of the listeners themselves, against slow or abusive clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerLimits {
    /// A client must send its complete request head within this time.
    pub header_read_timeout_ms: u64,
    /// Open client connections per listener; further accepts wait.
    pub connections_max: u32,
    /// An idle keep-alive connection (no request in progress, nothing
    /// received) is closed after this long, like nginx's
    /// `keepalive_timeout` or HAProxy's `timeout http-keep-alive`. While it
    /// waits it holds no HTTP buffers (see `app::listener`).
    pub keepalive_timeout_ms: u64,
    /// Request-body bytes buffered at once across every service (a body is
    /// read whole before it is sent to any replica). A body that does not
    /// fit is refused with 503: `Content-Length` is reserved before the
    /// first byte is read, a chunked body grows its share as it arrives.
    /// Each service's `body_bytes_max` must fit in it.
    pub buffered_body_bytes_max: u64,
    /// HTTP/2 towards clients (see `tls`).
    #[serde(skip_serializing_if = "Http2Spec::is_default")]
    pub http2: Http2Spec,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_read_timeout_ms: 10_000,
            connections_max: 10_000,
            keepalive_timeout_ms: 75_000,
            buffered_body_bytes_max: 256 * 1024 * 1024,
            http2: Http2Spec::default(),
        }
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("levee-data")
}
fn default_shutdown_grace_ms() -> u64 {
    SHUTDOWN_GRACE_MS_DEFAULT
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
        // Text after the configuration (a second object, a merge leftover)
        // is refused, not ignored.
        deserializer.end().map_err(|e| {
            ConfigError::Parse(FieldError {
                path: "(root)".to_string(),
                message: e.to_string(),
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
        self.fsync.validate_into(&mut errors);
        self.versions.validate_into(&mut errors);
        self.listeners.tls.validate_into(&mut errors);
        self.server.http2.validate_into(&mut errors);
        self.upstream_tls.validate_into(&mut errors);
        if let Some(cluster) = &self.cluster {
            cluster.validate_into(&mut errors);
        }
        if let Some(token) = &self.admin_token
            && !(ADMIN_TOKEN_BYTES_MIN..=ADMIN_TOKEN_BYTES_MAX).contains(&token.len())
        {
            errors.add(
                "admin_token",
                format!("must be {ADMIN_TOKEN_BYTES_MIN} to {ADMIN_TOKEN_BYTES_MAX} bytes long"),
            );
        }
        admin::validate_admin_hosts(&self.admin_allowed_hosts, &mut errors);
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
            "server.keepalive_timeout_ms",
            self.server.keepalive_timeout_ms,
            1,
            3_600_000,
        );
        errors.range(
            "server.buffered_body_bytes_max",
            self.server.buffered_body_bytes_max,
            1,
            BUFFERED_BODY_BYTES_MAX_LIMIT,
        );
        errors.range(
            "shutdown_grace_ms",
            self.shutdown_grace_ms,
            0,
            SHUTDOWN_GRACE_MS_MAX,
        );
        if let Some(checkpoint) = &self.checkpoint {
            policy::validate_checkpoint(checkpoint, &mut errors);
        }
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
            if service.body_bytes_max > self.server.buffered_body_bytes_max {
                errors.add(
                    format!("{path}.body_bytes_max"),
                    format!(
                        "must be <= server.buffered_body_bytes_max ({})",
                        self.server.buffered_body_bytes_max
                    ),
                );
            }
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

/// Fixtures shared by the unit tests of every module.
#[cfg(test)]
mod test_support {
    use serde_json::json;

    use crate::ConfigError;

    /// A service `users` of `nodes` nodes, keyed by path segment 1.
    pub fn service(nodes: usize) -> serde_json::Value {
        json!({
            "name": "users",
            "nodes": (0..nodes).map(|i| json!({"id": format!("n{i}"), "url": format!("http://127.0.0.1:{}", 7000 + i)})).collect::<Vec<_>>(),
            "key": {"path_segment": 1},
        })
    }

    /// A configuration of just this service.
    pub fn with_service(service: serde_json::Value) -> String {
        json!({"services": [service]}).to_string()
    }

    /// Each problem as `path: message`.
    pub fn messages(error: ConfigError) -> Vec<String> {
        error.field_errors().iter().map(|e| e.to_string()).collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::test_support::{messages, service, with_service};

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
    fn every_body_must_fit_the_buffered_body_cap() {
        let mut big = service(1);
        big["body_bytes_max"] = json!(2048);
        let text = json!({"server": {"buffered_body_bytes_max": 1024}, "services": [big]});
        let error = Config::from_json(&text.to_string()).unwrap_err();
        assert_eq!(
            messages(error),
            vec!["services[0].body_bytes_max: must be <= server.buffered_body_bytes_max (1024)"]
        );
        let zero = json!({"server": {"buffered_body_bytes_max": 0}});
        let error = Config::from_json(&zero.to_string()).unwrap_err();
        assert_eq!(
            messages(error),
            vec![format!(
                "server.buffered_body_bytes_max: must be between 1 and {BUFFERED_BODY_BYTES_MAX_LIMIT}, got 0"
            )]
        );
    }

    #[test]
    fn text_after_the_configuration_is_refused() {
        let error = Config::from_json("{} {\"services\": 5}").unwrap_err();
        assert!(
            messages(error)[0].starts_with("(root): trailing characters"),
            "found by fuzz/fuzz_targets/config_from_json.rs"
        );
        assert!(Config::from_json("{}\n").is_ok());
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
