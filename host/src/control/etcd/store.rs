//! The keys levee keeps in etcd, and the bounded calls that read and
//! change them.
//!
//! Under the cluster's `prefix` (default `/levee/`):
//! - `services/<name>`: a service, the configuration file's JSON object.
//! - `plugins/<name>`: the plugin version every instance serves, by
//!   digest (`{"reference": "REGISTRY/REPO@sha256:...", "layer_digest",
//!   "plain_http"}`), pulled from the registry by each instance.
//! - `revision`: written in the same transaction as every service change,
//!   so its `mod_revision` is the configuration's revision R, the one
//!   `GET /admin/cluster` asks every instance to be on (a deletion leaves
//!   no service key behind to carry it).
//! - `members/<instance>`: who is alive (under the instance's lease).
//! - `status/<instance>`: what it has applied, or what stopped it (same
//!   lease), so an instance that dies disappears from both within its TTL.
//!
//! Every call is bounded by the cluster's `request_timeout_ms`; an etcd
//! that cannot answer in time is [`StoreError::Unavailable`] with the
//! reason, which the admin API answers as 503.

use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::{ClusterSpec, ServiceSpec};

/// Largest value levee reads back from etcd (a service definition is at
/// most 1 MiB through the admin API; etcd's own request limit is 1.5 MiB).
pub const VALUE_BYTES_MAX: usize = 2 * 1024 * 1024;

/// Why an etcd call did not do what was asked.
#[derive(Debug, Error)]
pub enum StoreError {
    /// etcd did not answer (down, no quorum, timed out).
    #[error("etcd is unavailable: {0}")]
    Unavailable(String),
    /// The key changed since the revision the change was based on.
    #[error("{key} changed concurrently (now at revision {revision}); read it again and retry")]
    Conflict { key: String, revision: i64 },
    /// A value in etcd that levee cannot read (written by something else).
    #[error("etcd holds an unreadable value at {key}: {reason}")]
    Unreadable { key: String, reason: String },
}

/// The key layout under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_string(),
        }
    }
    pub fn all(&self) -> &str {
        &self.prefix
    }
    pub fn services(&self) -> String {
        format!("{}services/", self.prefix)
    }
    pub fn service(&self, name: &str) -> String {
        format!("{}services/{name}", self.prefix)
    }
    pub fn plugins(&self) -> String {
        format!("{}plugins/", self.prefix)
    }
    pub fn plugin(&self, name: &str) -> String {
        format!("{}plugins/{name}", self.prefix)
    }
    pub fn revision(&self) -> String {
        format!("{}revision", self.prefix)
    }
    pub fn members(&self) -> String {
        format!("{}members/", self.prefix)
    }
    pub fn member(&self, instance: &str) -> String {
        format!("{}members/{instance}", self.prefix)
    }
    pub fn statuses(&self) -> String {
        format!("{}status/", self.prefix)
    }
    pub fn status(&self, instance: &str) -> String {
        format!("{}status/{instance}", self.prefix)
    }
}

/// A plugin version bound cluster-wide, by digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginBinding {
    /// `REGISTRY/REPOSITORY@sha256:...` (the manifest's digest).
    pub reference: String,
    /// The component layer's digest: `sha256:` + the version it loads as.
    pub layer_digest: String,
    #[serde(default)]
    pub plain_http: bool,
}

/// The services etcd holds, read in one range.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Each plugin binding, by plugin name.
    pub plugins: Vec<(String, PluginBinding)>,
    /// Each service with the revision it was last changed at.
    pub services: Vec<(ServiceSpec, i64)>,
    /// The configuration's revision R (0: never written).
    pub revision: i64,
    /// etcd's revision when it was read: watch from the next one.
    pub read_at: i64,
}

/// An instance as it lists itself under `members/`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Member {
    pub instance_id: String,
    pub data: String,
    pub admin: String,
    pub started_ms: u64,
}

/// What an instance says it has applied, under `status/`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    pub instance_id: String,
    /// The configuration revision it has applied.
    pub revision: i64,
    /// Services in force.
    pub services: usize,
    /// The plugins bound, by name: `version` (`sha256:…` digest or file).
    #[serde(default)]
    pub plugins: std::collections::BTreeMap<String, String>,
    /// What stopped it from applying a change, if something did.
    pub error: Option<String>,
    /// Each service's placement epoch (hex): instances on one revision
    /// must agree on them, or they place keys differently.
    #[serde(default)]
    pub epochs: std::collections::BTreeMap<String, String>,
    pub updated_ms: u64,
}

impl Status {
    /// The services on which `self` and `other` place keys differently.
    pub fn epoch_mismatches(&self, other: &Status) -> Vec<String> {
        self.epochs
            .iter()
            .filter(|(service, epoch)| other.epochs.get(*service).is_some_and(|e| e != *epoch))
            .map(|(service, _)| service.clone())
            .collect()
    }
}

/// A connection to etcd with levee's key layout and time bound.
#[derive(Clone)]
pub struct Store {
    client: Client,
    pub keys: Keys,
    timeout: Duration,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

fn unavailable(error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

impl Store {
    /// A client of `spec.etcd`. Connecting is lazy: an etcd that is down
    /// now is found by the first call, not here.
    pub async fn connect(spec: &ClusterSpec) -> Result<Store, StoreError> {
        let timeout = Duration::from_millis(spec.request_timeout_ms);
        let options = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_keep_alive(Duration::from_secs(5), timeout);
        let client = tokio::time::timeout(timeout, Client::connect(&spec.etcd, Some(options)))
            .await
            .map_err(|_| {
                unavailable(format!(
                    "no endpoint of {:?} answered in {timeout:?}",
                    spec.etcd
                ))
            })?
            .map_err(unavailable)?;
        Ok(Store {
            client,
            keys: Keys::new(&spec.prefix),
            timeout,
        })
    }

    /// The raw client, for watches and lease streams.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Runs `call` on a client clone within the time bound.
    async fn bounded<T, F>(&self, call: impl FnOnce(Client) -> F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, etcd_client::Error>>,
    {
        match tokio::time::timeout(self.timeout, call(self.client.clone())).await {
            Ok(result) => result.map_err(unavailable),
            Err(_) => Err(unavailable(format!("no answer within {:?}", self.timeout))),
        }
    }

    /// Every service and the configuration's revision, in one range read.
    pub async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let (services, revision_key) = (self.keys.services(), self.keys.revision());
        let plugins = self.keys.plugins();
        let prefix = self.keys.all().to_string();
        let response = self
            .bounded(|mut client| async move {
                client
                    .get(prefix, Some(GetOptions::new().with_prefix()))
                    .await
            })
            .await?;
        let mut snapshot = Snapshot {
            read_at: response.header().map_or(0, |h| h.revision()),
            ..Snapshot::default()
        };
        for kv in response.kvs() {
            let key = String::from_utf8_lossy(kv.key());
            if key == revision_key {
                snapshot.revision = kv.mod_revision();
            } else if key.starts_with(&services) {
                let spec = decode::<ServiceSpec>(&key, kv.value())?;
                snapshot.services.push((spec, kv.mod_revision()));
            } else if let Some(name) = key.strip_prefix(&plugins) {
                let binding = decode::<PluginBinding>(&key, kv.value())?;
                snapshot.plugins.push((name.to_string(), binding));
            }
        }
        Ok(snapshot)
    }

    /// The revision `name` was last changed at (0: absent).
    pub async fn service_revision(&self, name: &str) -> Result<i64, StoreError> {
        let key = self.keys.service(name);
        let response = self
            .bounded(|mut client| async move { client.get(key, None).await })
            .await?;
        Ok(response.kvs().first().map_or(0, |kv| kv.mod_revision()))
    }

    /// Writes `spec` if its key is still at `based_on` (0: absent);
    /// returns the configuration's new revision.
    pub async fn put_service(&self, spec: &ServiceSpec, based_on: i64) -> Result<i64, StoreError> {
        let value = serde_json::to_vec(spec).map_err(unavailable)?;
        let key = self.keys.service(&spec.name);
        self.change(key.clone(), based_on, TxnOp::put(key, value, None))
            .await
    }

    /// Binds plugin `name` to `binding` cluster-wide; returns the
    /// configuration's new revision.
    pub async fn put_plugin(&self, name: &str, binding: &PluginBinding) -> Result<i64, StoreError> {
        let value = serde_json::to_vec(binding).map_err(unavailable)?;
        let key = self.keys.plugin(name);
        let txn = Txn::new().and_then([
            TxnOp::put(key, value, None),
            TxnOp::put(self.keys.revision(), "", None),
        ]);
        let response = self
            .bounded(|mut client| async move { client.txn(txn).await })
            .await?;
        Ok(response.header().map_or(0, |h| h.revision()))
    }

    /// Deletes `name` if its key is still at `based_on`.
    pub async fn delete_service(&self, name: &str, based_on: i64) -> Result<i64, StoreError> {
        let key = self.keys.service(name);
        self.change(key.clone(), based_on, TxnOp::delete(key, None))
            .await
    }

    /// One compare-and-swap on `key`, bumping the configuration revision.
    async fn change(&self, key: String, based_on: i64, op: TxnOp) -> Result<i64, StoreError> {
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                based_on,
            )])
            .and_then([op, TxnOp::put(self.keys.revision(), "", None)])
            .or_else([TxnOp::get(key.clone(), None)]);
        let response = self
            .bounded(|mut client| async move { client.txn(txn).await })
            .await?;
        let revision = response.header().map_or(0, |h| h.revision());
        if response.succeeded() {
            return Ok(revision);
        }
        let now = response
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                etcd_client::TxnOpResponse::Get(get) => {
                    Some(get.kvs().first().map_or(0, |kv| kv.mod_revision()))
                }
                _ => None,
            })
            .unwrap_or(0);
        Err(StoreError::Conflict { key, revision: now })
    }

    /// Writes `services` as the first configuration if etcd holds none
    /// (no `revision` key yet). False: another instance seeded first.
    pub async fn seed(&self, services: &[ServiceSpec]) -> Result<bool, StoreError> {
        let mut ops = Vec::with_capacity(services.len() + 1);
        for spec in services {
            let value = serde_json::to_vec(spec).map_err(unavailable)?;
            ops.push(TxnOp::put(self.keys.service(&spec.name), value, None));
        }
        ops.push(TxnOp::put(self.keys.revision(), "", None));
        let txn = Txn::new()
            .when([Compare::create_revision(
                self.keys.revision(),
                CompareOp::Equal,
                0,
            )])
            .and_then(ops);
        let response = self
            .bounded(|mut client| async move { client.txn(txn).await })
            .await?;
        Ok(response.succeeded())
    }

    /// A lease of `ttl_s` seconds.
    pub async fn grant_lease(&self, ttl_s: u64) -> Result<i64, StoreError> {
        let ttl = i64::try_from(ttl_s).unwrap_or(i64::MAX);
        let response = self
            .bounded(|mut client| async move { client.lease_grant(ttl, None).await })
            .await?;
        Ok(response.id())
    }

    /// Writes `value` as JSON at `key`, attached to `lease`.
    pub async fn put_leased(
        &self,
        key: String,
        value: &impl Serialize,
        lease: i64,
    ) -> Result<(), StoreError> {
        let value = serde_json::to_vec(value).map_err(unavailable)?;
        self.bounded(|mut client| async move {
            client
                .put(key, value, Some(PutOptions::new().with_lease(lease)))
                .await
        })
        .await
        .map(drop)
    }

    /// Every live member and every status, with etcd's revision now.
    pub async fn fleet(&self) -> Result<(Vec<Member>, Vec<Status>, i64), StoreError> {
        let prefix = self.keys.all().to_string();
        let response = self
            .bounded(|mut client| async move {
                client
                    .get(prefix, Some(GetOptions::new().with_prefix()))
                    .await
            })
            .await?;
        let (members, statuses) = (self.keys.members(), self.keys.statuses());
        let (mut found_members, mut found_statuses, mut revision) = (Vec::new(), Vec::new(), 0);
        for kv in response.kvs() {
            let key = String::from_utf8_lossy(kv.key());
            if key == self.keys.revision() {
                revision = kv.mod_revision();
            } else if key.starts_with(&members) {
                found_members.push(decode::<Member>(&key, kv.value())?);
            } else if key.starts_with(&statuses) {
                found_statuses.push(decode::<Status>(&key, kv.value())?);
            }
        }
        Ok((found_members, found_statuses, revision))
    }
}

/// A JSON value of at most [`VALUE_BYTES_MAX`] bytes.
pub fn decode<T: serde::de::DeserializeOwned>(key: &str, value: &[u8]) -> Result<T, StoreError> {
    let unreadable = |reason: String| StoreError::Unreadable {
        key: key.to_string(),
        reason,
    };
    if value.len() > VALUE_BYTES_MAX {
        return Err(unreadable(format!("{} bytes", value.len())));
    }
    serde_json::from_slice(value).map_err(|e| unreadable(e.to_string()))
}
