//! The one probe rule: is a node up, asked by one `GET`? And the active
//! health checks that ask it periodically ([`spawn_active_checks`]).
//!
//! Two callers ask: the active health checks (every
//! `health_check.interval_ms`, [`check_once`]) and the hinted handoff
//! (`replication::handoff`, before it walks a node's backlog). They used to
//! judge answers differently; now both call [`probe`], so a node the health
//! checks call down is down for the handoff too, and the other way round.
//!
//! # The rule
//!
//! - **`health_check` configured**: `GET <node><health_check.path>` within
//!   `health_check.timeout_ms`; **up on any 2xx**. The operator named a path
//!   the upstream serves to say "ready", so anything else (a 404 from a
//!   wrong path, a redirect, a 503 while warming up) means not ready.
//! - **not configured**: `GET <node>/healthz` within
//!   [`UNCONFIGURED_TIMEOUT_MS`]; **up on any status below 500**. levee
//!   cannot know the upstream has such a path, so a 404 (or any other 4xx
//!   or 3xx) still proves the process accepts connections and answers HTTP;
//!   a 5xx is the upstream saying it is failing.
//! - Either way, **no answer is down**: a refused connection, a reset, a
//!   protocol error or the timeout.
//!
//! Why not "2xx" everywhere: without a configured check, a strict rule
//! would call every upstream that has no `/healthz` down for good, and its
//! hints would only ever age out, never be delivered. Why not "below 500"
//! everywhere: an operator who configures a check is asking for readiness,
//! and the active checks have always held it to a 2xx. Active checks only
//! run when one is configured, so they see exactly the strict half.
//!
//! The probe reports how long it took ([`Probe::latency_ms`]) and what the
//! node answered, for logs. It does not touch the node's passive health:
//! the callers decide what a probe means for it.

use std::sync::Arc;
use std::time::Duration;

use hyper::{Request, StatusCode, Uri};
use levee_policy::ErrorKind;
use tokio::sync::watch;

use crate::base::clock;
use crate::cluster::health::{CheckStreak, check_interval};
use crate::cluster::service::{Service, ServiceNode};
use crate::config::HealthCheckSpec;
use crate::upstream::{UpstreamBody, UpstreamClient};

/// The path probed when the service configures no `health_check`.
pub const UNCONFIGURED_PATH: &str = "/healthz";
/// A probe's timeout when the service configures no `health_check`: long
/// enough for a loaded replica, short enough not to hold up a handoff.
pub const UNCONFIGURED_TIMEOUT_MS: u64 = 1_000;

/// What one probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// The node is up under the rule in the module doc.
    pub up: bool,
    /// What the node answered, or why it did not.
    pub answer: Answer,
    /// From sending the request to the response head (or the failure).
    pub latency_ms: u64,
}

/// What the node made of a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// It answered with this status.
    Status(StatusCode),
    /// It did not answer: connect, reset, protocol error or timeout.
    Failed(ErrorKind),
}

/// Probes `node` under the one rule (see the module doc): with `check`,
/// its path and timeout and 2xx = up; without, `GET /healthz` within
/// [`UNCONFIGURED_TIMEOUT_MS`] and any status below 500 = up.
pub async fn probe(
    client: &UpstreamClient,
    node: &ServiceNode,
    check: Option<&HealthCheckSpec>,
) -> Probe {
    let (path, timeout_ms) = match check {
        Some(check) => (check.path.as_str(), check.timeout_ms),
        None => (UNCONFIGURED_PATH, UNCONFIGURED_TIMEOUT_MS),
    };
    let started_ms = clock::now_ms();
    let answer = match request(node, path) {
        Some(request) => {
            match client
                .send(request, Duration::from_millis(timeout_ms))
                .await
            {
                // The body is not read: the status is the whole answer.
                Ok(response) => Answer::Status(response.status()),
                Err(error) => Answer::Failed(error.kind),
            }
        }
        // Unreachable for a validated path; a probe that cannot be sent
        // proves nothing, so the node counts as down.
        None => Answer::Failed(ErrorKind::Other),
    };
    Probe {
        up: is_up(answer, check.is_some()),
        answer,
        latency_ms: clock::now_ms().saturating_sub(started_ms),
    }
}

/// The rule itself, apart from the I/O.
pub fn is_up(answer: Answer, configured: bool) -> bool {
    match answer {
        Answer::Status(status) if configured => status.is_success(),
        Answer::Status(status) => !status.is_server_error(),
        Answer::Failed(_) => false,
    }
}

fn request(node: &ServiceNode, path: &str) -> Option<Request<UpstreamBody>> {
    let uri = Uri::builder()
        .scheme(node.scheme.clone())
        .authority(node.authority.clone())
        .path_and_query(path)
        .build()
        .ok()?;
    Request::get(uri).body(UpstreamBody::default()).ok()
}

/// Starts one active-check task per node of `service`, if the service has
/// `health_check` configured: every `interval_ms` it [`check_once`]s the
/// node and feeds the result to a [`CheckStreak`], which flips the node's
/// [`NodeHealth::set_actively_healthy`](crate::cluster::health::NodeHealth::set_actively_healthy)
/// after the configured streak. Each task holds only a `Weak` to the
/// service, so replacing the service (reload) ends its tasks on their next
/// tick; shutdown ends them at once. Call again for a newly built service.
pub fn spawn_active_checks(
    service: &Arc<Service>,
    client: UpstreamClient,
    shutdown: watch::Receiver<bool>,
) {
    let Some(spec) = service.spec.health_check.clone() else {
        return;
    };
    for index in 0..service.nodes.len() {
        let service = Arc::downgrade(service);
        let client = client.clone();
        let spec = spec.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut streak = CheckStreak::default();
            let mut ticker = tokio::time::interval(check_interval(&spec));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = shutdown.wait_for(|&stop| stop) => return,
                }
                let Some(service) = service.upgrade() else {
                    return;
                };
                let node = &service.nodes[index];
                let check = check_once(&client, node, &spec).await;
                if let Some(healthy) =
                    streak.observe(check.up, node.health.actively_healthy(), &spec)
                {
                    tracing::warn!(
                        service = service.name(),
                        node = node.spec.id,
                        healthy,
                        answer = ?check.answer,
                        latency_ms = check.latency_ms,
                        "active health changed"
                    );
                    node.health.set_actively_healthy(healthy);
                }
            }
        });
    }
}

/// One active check of `node`: [`probe`] with the service's `health_check`
/// (its path, its timeout, 2xx = up), the rule the handoff uses too.
pub async fn check_once(
    client: &UpstreamClient,
    node: &ServiceNode,
    spec: &HealthCheckSpec,
) -> Probe {
    probe(client, node, Some(spec)).await
}

/// Loopback servers for probe tests (here and in the handoff's tests).
#[cfg(test)]
pub(crate) mod testing {
    use std::net::SocketAddr;

    use hyper::StatusCode;
    use hyper::http::uri::{Authority, Scheme};

    use crate::cluster::health::NodeHealth;
    use crate::cluster::service::ServiceNode;
    use crate::config::{NodeSpec, OutlierSpec};

    /// A server on 127.0.0.1 that answers every request with `status`.
    pub(crate) async fn answering(status: StatusCode) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = axum::Router::new().fallback(move || async move { status });
        tokio::spawn(async move { axum::serve(listener, app).await });
        address
    }

    /// A server on 127.0.0.1 that accepts connections and never answers.
    pub(crate) async fn silent() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        address
    }

    /// An address nothing listens on (bound, then closed).
    pub(crate) async fn closed() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    }

    /// A node at `address`, as the request path holds it.
    pub(crate) fn node(address: SocketAddr) -> ServiceNode {
        ServiceNode {
            spec: NodeSpec {
                id: "n".into(),
                url: format!("http://{address}"),
                zone: None,
                weight: 1,
            },
            scheme: Scheme::HTTP,
            authority: address.to_string().parse::<Authority>().unwrap(),
            host: hyper::header::HeaderValue::from_str(&address.to_string()).unwrap(),
            ring_epoch: crate::cluster::service::epoch_header(0),
            health: NodeHealth::new(OutlierSpec::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{answering, closed, node, silent};
    use super::*;

    fn check(timeout_ms: u64) -> HealthCheckSpec {
        HealthCheckSpec {
            path: "/ready".into(),
            timeout_ms,
            ..Default::default()
        }
    }

    async fn probe_at(address: std::net::SocketAddr, check: Option<&HealthCheckSpec>) -> Probe {
        probe(&UpstreamClient::new(), &node(address), check).await
    }

    #[tokio::test]
    async fn configured_check_wants_a_2xx() {
        let check = check(200);
        let ok = probe_at(answering(StatusCode::OK).await, Some(&check)).await;
        assert!(ok.up, "{ok:?}");
        assert_eq!(ok.answer, Answer::Status(StatusCode::OK));
        for status in [StatusCode::NOT_FOUND, StatusCode::SERVICE_UNAVAILABLE] {
            let probe = probe_at(answering(status).await, Some(&check)).await;
            assert!(!probe.up, "{status}: {probe:?}");
            assert_eq!(probe.answer, Answer::Status(status));
        }
    }

    #[tokio::test]
    async fn unconfigured_probe_takes_anything_below_500() {
        let ok = probe_at(answering(StatusCode::OK).await, None).await;
        assert!(ok.up, "{ok:?}");
        let missing = probe_at(answering(StatusCode::NOT_FOUND).await, None).await;
        assert!(missing.up, "no /healthz, but answering: {missing:?}");
        let failing = probe_at(answering(StatusCode::SERVICE_UNAVAILABLE).await, None).await;
        assert!(!failing.up, "{failing:?}");
    }

    #[tokio::test]
    async fn no_answer_is_down_within_the_timeout() {
        let check = check(150);
        let configured = probe_at(silent().await, Some(&check)).await;
        assert!(!configured.up);
        assert_eq!(configured.answer, Answer::Failed(ErrorKind::Timeout));
        assert!(
            (150..1_000).contains(&configured.latency_ms),
            "{configured:?}"
        );
        let unconfigured = probe_at(silent().await, None).await;
        assert!(!unconfigured.up);
        assert_eq!(unconfigured.answer, Answer::Failed(ErrorKind::Timeout));
        assert!(
            unconfigured.latency_ms >= UNCONFIGURED_TIMEOUT_MS,
            "{unconfigured:?}"
        );
        let refused = probe_at(closed().await, None).await;
        assert!(!refused.up);
        assert!(matches!(refused.answer, Answer::Failed(_)), "{refused:?}");
    }

    #[test]
    fn the_rule_on_every_status_class() {
        let cases = [
            (200, true, true),
            (204, true, true),
            (301, false, true),
            (404, false, true),
            (429, false, true),
            (500, false, false),
            (503, false, false),
        ];
        for (code, configured_up, unconfigured_up) in cases {
            let answer = Answer::Status(StatusCode::from_u16(code).unwrap());
            assert_eq!(is_up(answer, true), configured_up, "{code} configured");
            assert_eq!(is_up(answer, false), unconfigured_up, "{code} unconfigured");
        }
        for configured in [true, false] {
            assert!(!is_up(Answer::Failed(ErrorKind::Connect), configured));
        }
    }
}
