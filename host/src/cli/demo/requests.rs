//! The demo's HTTP client: requests to levee and the replicas (each data
//! request counted for the summary), the admin API's views (hints, plugins
//! and who decided a retry), the wait for the replicas to converge, and the
//! summary read from `/metrics`.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};

use super::processes::Cluster;
use super::{CONVERGE_MS_MAX, REQUEST_TIMEOUT_MS, SERVICE};

/// One demo request's result.
pub(super) struct Reply {
    pub(super) status: StatusCode,
    headers: hyper::HeaderMap,
    body: Bytes,
}

impl Reply {
    pub(super) fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    }

    pub(super) fn body_text(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        text.chars().take(60).collect()
    }
}

impl Cluster {
    pub(super) async fn request(
        &self,
        method: Method,
        url: &str,
        body: Bytes,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Reply> {
        let mut request = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(body))?;
        let timeout = Duration::from_millis(REQUEST_TIMEOUT_MS);
        let response = self
            .client
            .send(request, timeout)
            .await
            .map_err(|error| anyhow::anyhow!("{url}: {:?}", error.kind))?;
        let (parts, body) = response.into_parts();
        let body = tokio::time::timeout(timeout, body.collect())
            .await
            .context("reading the body timed out")??
            .to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// A data-plane request, counted in the summary.
    async fn data_request(
        &mut self,
        method: Method,
        service: &str,
        key: &str,
        body: Bytes,
    ) -> anyhow::Result<Reply> {
        let url = format!("http://{}/{service}/kv/{key}", self.data);
        let started = Instant::now();
        let headers: &[(&str, &str)] = if method == Method::PUT {
            &[("content-type", "application/json")]
        } else {
            &[]
        };
        let reply = self.request(method, &url, body, headers).await?;
        self.latencies_us
            .push(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
        self.requests += 1;
        let attempts: u64 = reply.header("x-levee-attempts").parse().unwrap_or(1);
        self.retries += attempts.saturating_sub(1);
        Ok(reply)
    }

    pub(super) async fn put(&mut self, key: &str, value: &str) -> anyhow::Result<Reply> {
        let value = Bytes::from(value.to_owned());
        self.data_request(Method::PUT, SERVICE, key, value).await
    }

    /// A read of `key` through `service`.
    pub(super) async fn get(&mut self, service: &str, key: &str) -> anyhow::Result<Reply> {
        self.data_request(Method::GET, service, key, Bytes::new())
            .await
    }

    /// An admin API `GET` as JSON (`None` on any failure: the narration
    /// then leaves that detail out).
    async fn admin_json(&self, path: &str) -> Option<serde_json::Value> {
        let url = format!("http://{}{path}", self.admin);
        let auth = format!("Bearer {}", self.admin_token);
        let reply = self
            .request(Method::GET, &url, Bytes::new(), &[("authorization", &auth)])
            .await
            .ok()?;
        if !reply.status.is_success() {
            return None;
        }
        serde_json::from_slice(&reply.body).ok()
    }

    /// Every plugin levee runs, from `/admin/plugins`: name, version and
    /// counters.
    pub(super) async fn plugins(&self) -> Vec<serde_json::Value> {
        match self.admin_json("/admin/plugins").await {
            Some(serde_json::Value::Array(plugins)) => plugins,
            _ => Vec::new(),
        }
    }

    /// Learns which plugin each version is, to name who decided a retry.
    pub(super) async fn learn_plugin_names(&mut self) {
        self.plugin_names = self
            .plugins()
            .await
            .iter()
            .filter_map(|plugin| {
                Some((
                    plugin["version"].as_str()?.to_owned(),
                    plugin["name"].as_str()?.to_owned(),
                ))
            })
            .collect();
    }

    /// Who decided a response's retries (`x-levee-policy-version`: plugin
    /// versions, `native`, `fallback:<why>`), plugins by name; `None` when
    /// the retry policy was not consulted.
    pub(super) fn decided_by(&self, reply: &Reply) -> Option<String> {
        let header = reply.headers.get("x-levee-policy-version")?.to_str().ok()?;
        let names: Vec<&str> = header
            .split(',')
            .map(|decider| {
                self.plugin_names
                    .get(decider)
                    .map_or(decider, String::as_str)
            })
            .collect();
        Some(names.join(", "))
    }

    /// The admin API's view of a node's hints (`/admin/log`), if shown.
    pub(super) async fn node_hints(&self, node: &str) -> Option<serde_json::Value> {
        let value = self.admin_json("/admin/log").await?;
        let nodes = find_array(&value, "nodes")?;
        nodes
            .iter()
            .find(|entry| entry["node"] == node && entry["service"] == SERVICE)
            .cloned()
    }

    /// Polls every replica's `/_dump` until all are identical and reflect
    /// every write (bounded by CONVERGE_MS_MAX). Returns the key count and
    /// the dump's digest.
    pub(super) async fn wait_converged(&self) -> anyhow::Result<(usize, String)> {
        let started = Instant::now();
        let mut last = Vec::new();
        while started.elapsed() < Duration::from_millis(CONVERGE_MS_MAX) {
            let mut dumps = Vec::new();
            for address in &self.replica_addresses {
                let url = format!("http://{address}/_dump");
                match self.request(Method::GET, &url, Bytes::new(), &[]).await {
                    Ok(reply) if reply.status.is_success() => dumps.push(reply.body),
                    _ => break,
                }
            }
            if dumps.len() == self.replica_addresses.len()
                && dumps.windows(2).all(|pair| pair[0] == pair[1])
            {
                let value: serde_json::Value = serde_json::from_slice(&dumps[0])?;
                let keys = value["keys"].as_object().map_or(0, |keys| keys.len());
                return Ok((keys, sha256_hex(&dumps[0])));
            }
            last = dumps;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let sizes: Vec<usize> = last.iter().map(Bytes::len).collect();
        bail!(
            "replicas did not converge within {} s (dump sizes {sizes:?})",
            CONVERGE_MS_MAX / 1000
        )
    }

    pub(super) async fn print_summary(&mut self) {
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        let percentile = |p: f64| -> f64 {
            if sorted.is_empty() {
                return 0.0;
            }
            let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
            sorted[index] as f64 / 1000.0
        };
        let fallbacks = self.metric_sum("levee_plugin_fallbacks_total").await;
        let mut line = format!(
            "      requests {}   retries {}   plugin fallbacks {}   latency p50 {:.2} ms  p99 {:.2} ms",
            self.requests,
            self.retries,
            fallbacks.map_or_else(|| "n/a".into(), |n| format!("{n}")),
            percentile(0.50),
            percentile(0.99),
        );
        if let Some(delivered) = self.metric_sum("levee_hints_delivered_total").await {
            let _ = write!(line, "   hints delivered {delivered}");
        }
        if let Some(dropped) = self.metric_sum("levee_hints_dropped_total").await {
            let _ = write!(line, "   hints dropped {dropped}");
        }
        println!("{line}");
    }

    /// Sums a Prometheus counter family from the admin `/metrics`.
    async fn metric_sum(&self, family: &str) -> Option<u64> {
        let url = format!("http://{}/metrics", self.admin);
        let auth = format!("Bearer {}", self.admin_token);
        let reply = self
            .request(Method::GET, &url, Bytes::new(), &[("authorization", &auth)])
            .await
            .ok()?;
        if !reply.status.is_success() {
            return None;
        }
        let text = String::from_utf8_lossy(&reply.body);
        let mut found = false;
        let mut sum = 0.0;
        for line in text.lines().filter(|line| line.starts_with(family)) {
            let rest = &line[family.len()..];
            if !(rest.starts_with('{') || rest.starts_with(' ')) {
                continue;
            }
            if let Some(value) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
                found = true;
                sum += value;
            }
        }
        // An absent family after traffic means "never happened".
        Some(if found { sum as u64 } else { 0 })
    }
}

/// Finds the first array under `key` anywhere in `value` (the admin API's
/// exact nesting is its own business).
fn find_array<'a>(value: &'a serde_json::Value, key: &str) -> Option<&'a Vec<serde_json::Value>> {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::Array(array)) = map.get(key) {
                return Some(array);
            }
            map.values().find_map(|child| find_array(child, key))
        }
        _ => None,
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
