//! Cluster mode (`cluster`): many levee instances sharing one truth in
//! etcd. Absent, levee is the single instance it always was.
//!
//! What etcd holds (under `prefix`): the services (one key per service,
//! changed with compare-and-swap on its revision), plugin bindings by
//! digest, membership (one key per instance under a lease) and each
//! instance's status (the revision it has applied, or what stopped it).
//! The configuration file still names the listeners, the data directory
//! and the limits, which are each instance's own; its `services` seed etcd
//! when etcd holds none yet, and are otherwise replaced by etcd's.

use serde::{Deserialize, Serialize};

use crate::error::Errors;

/// Most etcd endpoints.
pub const ETCD_ENDPOINTS_MAX: usize = 16;
/// Longest key prefix.
pub const CLUSTER_PREFIX_BYTES_MAX: usize = 256;
/// Longest instance id.
pub const INSTANCE_ID_BYTES_MAX: usize = 64;
/// Shortest and longest membership lease.
pub const LEASE_TTL_S_MIN: u64 = 2;
pub const LEASE_TTL_S_MAX: u64 = 120;

/// The `cluster` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// etcd client endpoints, `http://host:port` (1..=16).
    pub etcd: Vec<String>,
    /// Every key levee writes starts with this (default `/levee/`), so
    /// several levee fleets can share one etcd.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// This instance's name in the membership (`[a-z0-9._-]`, at most 64
    /// bytes). Absent: the `LEVEE_INSTANCE_ID` environment variable, else
    /// the host name (a StatefulSet pod's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// Seconds a dead instance stays listed (its lease's TTL).
    #[serde(default = "default_lease_ttl_s")]
    pub lease_ttl_s: u64,
    /// Bound on each etcd call, connecting included.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
}

fn default_prefix() -> String {
    "/levee/".to_string()
}
fn default_lease_ttl_s() -> u64 {
    10
}
fn default_request_timeout_ms() -> u64 {
    2_000
}

/// Whether `id` may name an instance.
pub fn validate_instance_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > INSTANCE_ID_BYTES_MAX {
        return Err(format!("must be 1 to {INSTANCE_ID_BYTES_MAX} bytes"));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(format!(
            "{id:?} may only contain a-z, 0-9, '.', '_' and '-'"
        ));
    }
    Ok(())
}

impl ClusterSpec {
    pub(crate) fn validate_into(&self, errors: &mut Errors) {
        if self.etcd.is_empty() || self.etcd.len() > ETCD_ENDPOINTS_MAX {
            errors.add(
                "cluster.etcd",
                format!("must list 1 to {ETCD_ENDPOINTS_MAX} endpoints"),
            );
        }
        for (index, endpoint) in self.etcd.iter().enumerate() {
            if let Err(message) = validate_endpoint(endpoint) {
                errors.add(format!("cluster.etcd[{index}]"), message);
            }
        }
        let prefix = &self.prefix;
        if !prefix.starts_with('/')
            || !prefix.ends_with('/')
            || prefix.len() > CLUSTER_PREFIX_BYTES_MAX
            || !prefix.bytes().all(|b| b.is_ascii_graphic())
        {
            errors.add(
                "cluster.prefix",
                format!(
                    "{prefix:?} must start and end with '/', be visible ASCII and at most {CLUSTER_PREFIX_BYTES_MAX} bytes"
                ),
            );
        }
        if let Some(id) = &self.instance_id
            && let Err(message) = validate_instance_id(id)
        {
            errors.add("cluster.instance_id", message);
        }
        errors.range(
            "cluster.lease_ttl_s",
            self.lease_ttl_s,
            LEASE_TTL_S_MIN,
            LEASE_TTL_S_MAX,
        );
        errors.range(
            "cluster.request_timeout_ms",
            self.request_timeout_ms,
            50,
            60_000,
        );
    }
}

fn validate_endpoint(endpoint: &str) -> Result<(), String> {
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|e| format!("{endpoint:?} is not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "{endpoint:?} must start with http:// (levee speaks plain gRPC to etcd; keep etcd on a private network)"
        ));
    }
    match uri.authority() {
        Some(authority) if !authority.host().is_empty() && authority.port_u16().is_some() => Ok(()),
        _ => Err(format!("{endpoint:?} must name a host and a port")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::Config;
    use crate::test_support::messages;

    #[test]
    fn cluster_mode_is_opt_in_and_defaulted() {
        assert!(Config::from_json("{}").unwrap().cluster.is_none());
        let config =
            Config::from_json(&json!({"cluster": {"etcd": ["http://127.0.0.1:2379"]}}).to_string())
                .unwrap();
        let cluster = config.cluster.unwrap();
        assert_eq!(cluster.prefix, "/levee/");
        assert_eq!(cluster.lease_ttl_s, 10);
        assert_eq!(cluster.instance_id, None);
    }

    #[test]
    fn bad_cluster_fields_are_named() {
        let error = Config::from_json(
            &json!({"cluster": {
                "etcd": ["https://e:1", "http://e"],
                "prefix": "levee",
                "instance_id": "Pod 0",
                "lease_ttl_s": 1,
            }})
            .to_string(),
        )
        .unwrap_err();
        let found = messages(error);
        assert_eq!(found.len(), 5, "{found:?}");
        assert!(found[0].starts_with("cluster.etcd[0]: "), "{found:?}");
        assert!(found[1].starts_with("cluster.etcd[1]: "), "{found:?}");
        assert!(found[2].starts_with("cluster.prefix: "), "{found:?}");
        assert!(found[3].starts_with("cluster.instance_id: "), "{found:?}");
        assert!(found[4].starts_with("cluster.lease_ttl_s: "), "{found:?}");
    }
}
