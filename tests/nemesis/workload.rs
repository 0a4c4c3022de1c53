//! The clients: writers PUT unique values (and sometimes DELETE) on a small
//! shared key set through levee, readers GET the same keys; each records
//! what it did and what it was told. They follow levee across restarts
//! (its data address changes: it binds port 0) and stop when told.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};

use crate::history::{
    Outcome, ReadOp, ReadResult, Reply, Ver, WriteOp, send, sha256_hex, since_us,
};
use crate::rng::Rng;

/// Keys the clients share (overlapping: every writer writes every key).
pub const KEYS: u64 = 16;
pub const WRITERS: usize = 8;
pub const READERS: usize = 2;
/// Share of writes that are DELETEs.
const DELETE_PERCENT: u64 = 15;
/// Longest a client waits for one answer (levee's own total timeout is
/// far shorter; this only bounds a hung connection).
const OP_TIMEOUT: Duration = Duration::from_secs(15);
/// A client's pause between operations, at most.
const THINK_MS_MAX: u64 = 20;
/// Pause after a refused connection (levee restarting).
const NOT_SENT_PAUSE: Duration = Duration::from_millis(50);
/// Bound on one client's operations (the stop flag ends it long before).
const OPS_PER_CLIENT_MAX: u64 = 1_000_000;
/// Padding bytes of a value, at most.
const PADDING_BYTES_MAX: u64 = 200;

/// What every client shares.
pub struct Clients {
    pub seed: u64,
    pub start: Instant,
    pub stop: AtomicBool,
    /// levee's current data address (the nemesis updates it on restart).
    pub levee: RwLock<SocketAddr>,
}

impl Clients {
    fn url(&self, key: &str) -> String {
        let address = *self.levee.read().expect("levee address lock");
        format!("http://{address}/kv/kv/{key}")
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

pub fn key_name(index: u64) -> String {
    format!("k{index:02}")
}

/// One writer's life: writes until stopped; returns its history.
pub async fn writer(clients: Arc<Clients>, id: usize) -> Vec<WriteOp> {
    let mut rng = Rng::fork(clients.seed, 100 + id as u64);
    let mut ops = Vec::new();
    for seq in 0..OPS_PER_CLIENT_MAX {
        if clients.stopped() {
            break;
        }
        let key = key_name(rng.below(KEYS));
        let value = (!rng.percent(DELETE_PERCENT)).then(|| {
            let padding = "x".repeat(rng.below(PADDING_BYTES_MAX + 1) as usize);
            format!("{key}/w{id}/{seq}/{:016x}/{padding}", clients.seed)
        });
        let method = if value.is_some() {
            Method::PUT
        } else {
            Method::DELETE
        };
        let start_us = since_us(clients.start);
        let body = value.clone().unwrap_or_default();
        let reply = send(method, &clients.url(&key), body, OP_TIMEOUT).await;
        let end_us = since_us(clients.start);
        let mut op = WriteOp {
            writer: id,
            seq,
            sha: value.as_ref().map(|v| sha256_hex(v.as_bytes())),
            key,
            value,
            start_us,
            end_us,
            outcome: Outcome::Unknown,
            status: None,
            version: None,
            held: None,
            unlabeled: false,
            detail: String::new(),
        };
        judge(&mut op, reply);
        if op.outcome == Outcome::NotSent {
            tokio::time::sleep(NOT_SENT_PAUSE).await;
        }
        ops.push(op);
        tokio::time::sleep(Duration::from_millis(rng.below(THINK_MS_MAX + 1))).await;
    }
    ops
}

/// Fills in what the client was told.
fn judge(op: &mut WriteOp, reply: Reply) {
    let (status, headers, body) = match reply {
        Reply::Connect(error) => {
            op.outcome = Outcome::NotSent;
            op.detail = error;
            return;
        }
        Reply::Failed(error) => {
            op.outcome = Outcome::Unknown;
            op.detail = error;
            return;
        }
        Reply::Answer {
            status,
            headers,
            body,
        } => (status, headers, body),
    };
    op.status = Some(status.as_u16());
    op.version = Ver::from_header(&headers, "x-levee-version");
    op.held = Ver::from_header(&headers, "x-levee-held-version");
    let label = headers
        .get("x-levee-outcome")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let acks = header(&headers, "x-levee-acks");
    op.detail = format!(
        "outcome={} acks={acks} body={:.160}",
        label.as_deref().unwrap_or("-"),
        body.trim()
    );
    op.outcome = match (status, label.as_deref()) {
        (s, _) if s.is_success() => Outcome::Acked,
        (StatusCode::CONFLICT, Some("superseded")) => Outcome::Superseded,
        (_, Some("not-written")) => Outcome::Refused,
        (_, Some("rejected")) => Outcome::Rejected,
        (_, Some("unknown")) => Outcome::Unknown,
        _ => {
            // No label: the honest-outcome rules say there should be one.
            // Counted, and taken as "may have applied" (the weakest claim).
            op.unlabeled = true;
            Outcome::Unknown
        }
    };
}

/// One reader's life: reads random keys until stopped.
pub async fn reader(clients: Arc<Clients>, id: usize) -> Vec<ReadOp> {
    let mut rng = Rng::fork(clients.seed, 200 + id as u64);
    let mut ops = Vec::new();
    for _ in 0..OPS_PER_CLIENT_MAX {
        if clients.stopped() {
            break;
        }
        let key = key_name(rng.below(KEYS));
        let start_us = since_us(clients.start);
        let reply = send(Method::GET, &clients.url(&key), String::new(), OP_TIMEOUT).await;
        let end_us = since_us(clients.start);
        let not_sent = matches!(reply, Reply::Connect(_));
        let detail = match &reply {
            Reply::Answer { headers, .. } => format!(
                "attempts={} request={}",
                header(headers, "x-levee-attempts"),
                header(headers, "x-request-id")
            ),
            _ => String::new(),
        };
        let result = read_result(reply);
        ops.push(ReadOp {
            reader: id,
            key,
            start_us,
            end_us,
            result,
            detail,
        });
        if not_sent {
            tokio::time::sleep(NOT_SENT_PAUSE).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.below(THINK_MS_MAX + 1))).await;
    }
    ops
}

fn read_result(reply: Reply) -> ReadResult {
    match reply {
        Reply::Answer {
            status: StatusCode::OK,
            headers,
            body,
        } => ReadResult::Value {
            sha: sha256_hex(body.as_bytes()),
            version: Ver::from_header(&headers, "x-levee-version"),
        },
        Reply::Answer {
            status: StatusCode::NOT_FOUND,
            headers,
            ..
        } => ReadResult::NotFound {
            version: Ver::from_header(&headers, "x-levee-version"),
            tombstone: headers
                .get("x-levee-tombstone")
                .is_some_and(|v| v.as_bytes() == b"true"),
        },
        Reply::Answer { status, body, .. } => ReadResult::Failed(format!("{status}: {body:.120}")),
        Reply::Connect(error) | Reply::Failed(error) => ReadResult::Failed(error),
    }
}

fn header<'a>(headers: &'a hyper::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
}
