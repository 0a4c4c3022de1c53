//! The nemesis: a seeded schedule of faults against the real processes.
//! Kinds: SIGKILL + restart of a replica, SIGSTOP/SIGCONT of a replica,
//! injected 503s and delays on a replica (`POST /_fault`, cleared by
//! `DELETE /_fault`), SIGKILL + restart of levee on the same data
//! directory. At most one, sometimes two, replicas are disturbed at once,
//! so the cluster goes in and out of having a write quorum.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::Method;
use serde_json::{Value, json};

use crate::history::since_us;
use crate::rng::Rng;
use crate::support::{Cluster, Proc, try_call};
use crate::workload::Clients;
use crate::write_support::{restart_levee, restart_replica};

/// How often the nemesis looks at its schedule.
const TICK: Duration = Duration::from_millis(100);
/// Pause between two fault decisions, bounds.
const GAP_MS_MIN: u64 = 300;
const GAP_MS_MAX: u64 = 2_500;
/// How long a replica fault lasts, bounds.
const FAULT_MS_MIN: u64 = 500;
const FAULT_MS_MAX: u64 = 5_000;
/// How long levee stays dead before its restart, bounds.
const LEVEE_DOWN_MS_MIN: u64 = 100;
const LEVEE_DOWN_MS_MAX: u64 = 1_500;
/// An injected delay, bounds (levee's per-try timeout is in between).
const DELAY_MS_MIN: u64 = 100;
const DELAY_MS_MAX: u64 = 2_000;
/// Share of decisions that allow a second disturbed replica (no quorum).
const TWO_DOWN_PERCENT: u64 = 35;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Healthy,
    Down { until: Instant },
    Paused { until: Instant },
    Faulted { until: Instant },
}

/// The nemesis and the cluster it torments.
pub struct Nemesis {
    rng: Rng,
    pub cluster: Cluster,
    clients: Arc<Clients>,
    states: Vec<State>,
    /// Faults injected, per kind.
    pub counts: BTreeMap<&'static str, u64>,
    /// What it did and when, for the report.
    pub events: Vec<String>,
}

impl Nemesis {
    pub fn new(seed: u64, cluster: Cluster, clients: Arc<Clients>) -> Nemesis {
        let states = vec![State::Healthy; cluster.replicas.len()];
        Nemesis {
            rng: Rng::fork(seed, 1),
            cluster,
            clients,
            states,
            counts: BTreeMap::new(),
            events: Vec::new(),
        }
    }

    /// Injects faults until `until`, then heals everything.
    pub async fn run(mut self, until: Instant) -> Nemesis {
        let mut next_action = Instant::now() + Duration::from_millis(GAP_MS_MIN);
        while Instant::now() < until {
            self.heal(false).await;
            if Instant::now() >= next_action {
                self.act().await;
                let gap = self.rng.between(GAP_MS_MIN, GAP_MS_MAX);
                next_action = Instant::now() + Duration::from_millis(gap);
            }
            tokio::time::sleep(TICK).await;
        }
        self.heal(true).await;
        self.note("healed everything".into());
        self
    }

    fn note(&mut self, event: String) {
        let at = since_us(self.clients.start) as f64 / 1e6;
        self.events.push(format!("[{at:7.3}s] {event}"));
    }

    async fn act(&mut self) {
        let roll = self.rng.below(100);
        if roll < 10 {
            return self.kill_levee().await;
        }
        if roll < 20 {
            return; // a quiet moment
        }
        let healthy: Vec<usize> = (0..self.states.len())
            .filter(|&i| self.states[i] == State::Healthy)
            .collect();
        let disturbed = self.states.len() - healthy.len();
        let limit = if self.rng.percent(TWO_DOWN_PERCENT) {
            2
        } else {
            1
        };
        if disturbed >= limit || healthy.is_empty() {
            return;
        }
        let target = healthy[self.rng.below(healthy.len() as u64) as usize];
        let lasting = Duration::from_millis(self.rng.between(FAULT_MS_MIN, FAULT_MS_MAX));
        let until = Instant::now() + lasting;
        let (kind, state, detail) = match roll {
            20..=39 => {
                self.cluster.replicas[target].proc.kill();
                ("replica SIGKILL", State::Down { until }, String::new())
            }
            40..=59 => {
                signal(&self.cluster.replicas[target].proc, libc::SIGSTOP);
                ("replica SIGSTOP", State::Paused { until }, String::new())
            }
            60..=79 => {
                let faults = self.failure_faults();
                self.post_fault(target, &faults).await;
                ("replica 503s", State::Faulted { until }, faults.to_string())
            }
            _ => {
                let faults = self.delay_faults();
                self.post_fault(target, &faults).await;
                (
                    "replica delays",
                    State::Faulted { until },
                    faults.to_string(),
                )
            }
        };
        self.states[target] = state;
        *self.counts.entry(kind).or_default() += 1;
        self.note(format!("{kind} r{target} for {lasting:?} {detail}"));
    }

    fn methods(&mut self) -> Option<Value> {
        self.rng.percent(50).then(|| json!(["PUT", "DELETE"]))
    }

    fn failure_faults(&mut self) -> Value {
        let mut faults = json!({"fail_status": 503});
        if let Some(methods) = self.methods() {
            faults["methods"] = methods;
        }
        if self.rng.percent(30) {
            faults["fail_count"] = json!(self.rng.between(1, 5));
        }
        faults
    }

    fn delay_faults(&mut self) -> Value {
        let mut faults = json!({"delay_ms": self.rng.between(DELAY_MS_MIN, DELAY_MS_MAX)});
        if let Some(methods) = self.methods() {
            faults["methods"] = methods;
        }
        faults
    }

    async fn post_fault(&mut self, target: usize, faults: &Value) {
        let url = format!("{}/_fault", self.cluster.replicas[target].url());
        if try_call(Method::POST, &url, &[], faults.to_string())
            .await
            .is_none()
        {
            self.note(format!("could not set faults on r{target}"));
        }
    }

    async fn kill_levee(&mut self) {
        self.cluster.levee.proc.kill();
        *self.counts.entry("levee SIGKILL").or_default() += 1;
        let down = self.rng.between(LEVEE_DOWN_MS_MIN, LEVEE_DOWN_MS_MAX);
        self.note(format!("levee SIGKILL, down for {down} ms"));
        tokio::time::sleep(Duration::from_millis(down)).await;
        restart_levee(&mut self.cluster.levee).await;
        *self.clients.levee.write().expect("levee address lock") = self.cluster.levee.data;
        self.note(format!("levee restarted on {}", self.cluster.levee.data));
    }

    /// Ends the faults whose time is up (all of them when `all`).
    async fn heal(&mut self, all: bool) {
        let now = Instant::now();
        for i in 0..self.states.len() {
            let due = |until: Instant| all || now >= until;
            match self.states[i] {
                State::Healthy => continue,
                State::Down { until } if due(until) => {
                    let replica = &mut self.cluster.replicas[i];
                    tokio::task::block_in_place(|| restart_replica(replica));
                    self.note(format!("r{i} restarted"));
                }
                State::Paused { until } if due(until) => {
                    signal(&self.cluster.replicas[i].proc, libc::SIGCONT);
                    self.note(format!("r{i} SIGCONT"));
                }
                State::Faulted { until } if due(until) => {
                    let url = format!("{}/_fault", self.cluster.replicas[i].url());
                    let cleared = try_call(Method::DELETE, &url, &[], "").await.is_some();
                    self.note(format!("r{i} faults cleared ({cleared})"));
                }
                _ => continue,
            }
            self.states[i] = State::Healthy;
        }
    }
}

/// Sends `signal` to the process by its PID.
fn signal(proc: &Proc, signal: i32) {
    if let Some(pid) = proc.pid() {
        // SAFETY: kill(2) on our own child's PID, which we have not reaped.
        unsafe { libc::kill(pid as i32, signal) };
    }
}
