//! Quiescence after the nemesis: every fault cleared, then a bounded wait
//! until levee has nothing left to deliver (every node's hint backlog empty,
//! nothing in flight), nothing awaits repair, and the replicas' dumps agree.
//! The checks run on what is there when the wait ends, reached or not.

use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};
use serde_json::Value;

use crate::support::{Cluster, try_call};
use crate::write_support::{ADMIN_TOKEN, try_dump};

/// Spacing of the quiescence polls.
const POLL_PAUSE: Duration = Duration::from_millis(250);

/// Where the wait ended.
pub struct Quiet {
    pub reached: bool,
    pub waited: Duration,
    /// `write_path.nodes` of `/admin/log` at the end.
    pub nodes: Value,
    /// `write_path` of `/admin/log` at the end, less the nodes (recovery,
    /// repair, reads that found every replica lagging; since the last
    /// levee start).
    pub write_path: Value,
    /// Every "awaiting repair" figure found (admin JSON or metrics).
    pub repair_figures: Vec<(String, f64)>,
    /// Each replica's `/_dump` (`None`: it did not answer).
    pub dumps: Vec<Option<Value>>,
}

impl Quiet {
    pub fn summary(&self) -> String {
        let backlog: Vec<String> = self
            .nodes
            .as_array()
            .map(|nodes| {
                nodes
                    .iter()
                    .map(|n| {
                        format!(
                            "{}: backlog {} records from {}, inflight {}, dropped {}",
                            n["node"],
                            n["backlog_records"],
                            n["backlog_from"],
                            n["inflight"],
                            n["dropped_records"]
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        format!(
            "quiescence {} after {:.1} s; hints: [{}]; repair figures: {:?}",
            if self.reached {
                "reached"
            } else {
                "NOT reached"
            },
            self.waited.as_secs_f64(),
            backlog.join("; "),
            self.repair_figures
        )
    }
}

/// Clears every replica's faults, then waits (at most `bound`).
pub async fn wait(cluster: &Cluster, bound: Duration) -> Quiet {
    for replica in &cluster.replicas {
        let url = format!("{}/_fault", replica.url());
        let _ = try_call(Method::DELETE, &url, &[], "").await;
    }
    let began = Instant::now();
    let polls = (bound.as_millis() / POLL_PAUSE.as_millis()).max(1);
    let mut quiet = Quiet {
        reached: false,
        waited: Duration::ZERO,
        nodes: Value::Null,
        write_path: Value::Null,
        repair_figures: Vec::new(),
        dumps: Vec::new(),
    };
    for _ in 0..polls {
        let log = admin_json(cluster, "/admin/log").await;
        quiet.nodes = log["write_path"]["nodes"].clone();
        quiet.write_path = log["write_path"].clone();
        if let Some(fields) = quiet.write_path.as_object_mut() {
            fields.remove("nodes");
        }
        let state = admin_json(cluster, "/admin/state").await;
        quiet.repair_figures = repair_figures(&log, &state, &metrics(cluster).await);
        quiet.dumps.clear();
        for replica in &cluster.replicas {
            quiet.dumps.push(try_dump(replica).await);
        }
        quiet.waited = began.elapsed();
        if backlog_empty(&quiet.nodes)
            && quiet.repair_figures.iter().all(|(_, n)| *n == 0.0)
            && dumps_agree(&quiet.dumps)
        {
            quiet.reached = true;
            break;
        }
        tokio::time::sleep(POLL_PAUSE).await;
    }
    quiet
}

fn backlog_empty(nodes: &Value) -> bool {
    nodes.as_array().is_some_and(|nodes| {
        nodes.iter().all(|n| {
            n["backlog_records"].as_u64() == Some(0)
                && n["backlog_from"].is_null()
                && n["inflight"].as_u64().unwrap_or(0) == 0
        })
    })
}

fn dumps_agree(dumps: &[Option<Value>]) -> bool {
    match dumps.first() {
        Some(Some(first)) => dumps.iter().all(|d| d.as_ref() == Some(first)),
        _ => false,
    }
}

async fn admin_json(cluster: &Cluster, path: &str) -> Value {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let url = cluster.levee.admin_url(path);
    match try_call(Method::GET, &url, &[("authorization", &auth)], "").await {
        Some((StatusCode::OK, _, body)) => serde_json::from_str(&body).unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

async fn metrics(cluster: &Cluster) -> String {
    let url = cluster.levee.admin_url("/metrics");
    match try_call(Method::GET, &url, &[], "").await {
        Some((StatusCode::OK, _, body)) => body,
        _ => String::new(),
    }
}

/// Figures of keys awaiting repair wherever levee shows them: admin JSON
/// fields whose path mentions "repair" and whose name says pending or
/// awaiting, and `levee_repair*pending*` samples. Empty when levee has none.
fn repair_figures(log: &Value, state: &Value, metrics: &str) -> Vec<(String, f64)> {
    let mut found = Vec::new();
    walk(log, "admin/log", &mut found);
    walk(state, "admin/state", &mut found);
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        if let Some((series, value)) = line.rsplit_once(' ')
            && series.starts_with("levee_repair")
            && series.contains("pending")
            && let Ok(value) = value.parse::<f64>()
        {
            found.push((series.to_owned(), value));
        }
    }
    found
}

fn walk(value: &Value, path: &str, found: &mut Vec<(String, f64)>) {
    match value {
        Value::Object(fields) => {
            for (name, field) in fields {
                walk(field, &format!("{path}.{name}"), found);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, &format!("{path}[{i}]"), found);
            }
        }
        Value::Number(number) => {
            let lower = path.to_ascii_lowercase();
            let name = lower.rsplit('.').next().unwrap_or_default();
            if lower.contains("repair") && (name.contains("pending") || name.contains("await")) {
                found.push((path.to_owned(), number.as_f64().unwrap_or(0.0)));
            }
        }
        _ => {}
    }
}
