//! Request bodies from hostile clients: slow bodies must not take a
//! service's concurrency slots, the bytes buffered across services are
//! capped, and oversized bodies are refused; each with a 4xx/5xx and a
//! reason (`dataplane::body`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Cluster, Levee, Replica, call, reason};

/// Longest wait for levee's answer on a raw connection.
const RAW_ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// Most bytes of an answer read from a raw connection.
const RAW_ANSWER_BYTES_MAX: usize = 64 * 1024;
/// Time for levee to start reading a staller's body before the test goes
/// on (not an assertion: a slow start only makes the test weaker).
const SETTLE: Duration = Duration::from_millis(500);

/// Opens a connection and sends `text` (a request head, maybe some body).
pub async fn send_raw(address: SocketAddr, text: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    stream.write_all(text).await.expect("send");
    stream
}

/// A PUT head announcing `content_length` bytes, followed by `sent`.
fn stalled_put(path: &str, content_length: u64, sent: &str) -> Vec<u8> {
    format!("PUT {path} HTTP/1.1\r\nHost: levee\r\nContent-Length: {content_length}\r\n\r\n{sent}")
        .into_bytes()
}

/// Reads one response (bounded in time and size): its status and body.
pub async fn read_answer(stream: &mut TcpStream) -> (u16, String) {
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 4096];
    let reading = async {
        while bytes.len() < RAW_ANSWER_BYTES_MAX {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => bytes.extend_from_slice(&buffer[..read]),
            }
            if complete(&bytes) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(RAW_ANSWER_TIMEOUT, reading).await;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

/// Whether `bytes` hold a whole response with a `Content-Length` body.
fn complete(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())?
    });
    length.is_some_and(|length| body.len() >= length)
}

#[tokio::test]
async fn stalled_bodies_hold_no_slot_and_time_out() {
    const SLOTS: usize = 4;
    const BODY_TIMEOUT: Duration = Duration::from_millis(3_000);
    let cluster = Cluster::start(
        3,
        json!({"concurrency_max": SLOTS, "body_read_timeout_ms": BODY_TIMEOUT.as_millis() as u64}),
    )
    .await;
    let levee = &cluster.levee;
    let mut stallers = Vec::new();
    for index in 0..SLOTS {
        let head = stalled_put(&format!("/kv/kv/stall{index}"), 1000, "abc");
        stallers.push(send_raw(levee.data, &head).await);
    }
    tokio::time::sleep(SETTLE).await;

    // Every slot's client is stalled; a normal write and read still pass.
    let started = Instant::now();
    let (status, _, body) = call(Method::PUT, &levee.url("/kv/kv/alice"), &[], "v1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = call(Method::GET, &levee.url("/kv/kv/alice"), &[], "").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "v1"));
    let bound = BODY_TIMEOUT + Duration::from_secs(1);
    assert!(
        started.elapsed() <= bound,
        "normal requests took {:?} with stalled bodies, more than the issue's {bound:?}",
        started.elapsed()
    );

    // Each staller is told why, and nothing of theirs reached a replica.
    for staller in &mut stallers {
        let (status, body) = read_answer(staller).await;
        assert_eq!(status, 408, "{body}");
        assert_eq!(
            reason(&body),
            "request body stalled: no bytes for 3000 ms (body_read_timeout_ms) after 3 bytes"
        );
    }
    for replica in &cluster.replicas {
        let keys = replica.dump().await["keys"].clone();
        let keys = keys.as_object().expect("keys");
        assert!(keys.keys().all(|key| !key.starts_with("stall")), "{keys:?}");
    }
}

/// Three replicas behind a levee whose `server` limits are `server`.
async fn with_server_limits(server: Value, service: Value) -> (Vec<Replica>, Levee) {
    let cluster = Cluster::start_with(3, service, json!({"server": server})).await;
    (cluster.replicas, cluster.levee)
}

#[tokio::test]
async fn buffered_bytes_are_capped_across_requests_and_released() {
    let (replicas, levee) = with_server_limits(
        json!({"buffered_body_bytes_max": 1000}),
        json!({"body_bytes_max": 1000, "body_read_timeout_ms": 2000}),
    )
    .await;
    // One stalled body reserves the whole budget by its Content-Length.
    let mut staller = send_raw(levee.data, &stalled_put("/kv/kv/big", 1000, "abc")).await;
    tokio::time::sleep(SETTLE).await;

    let (status, _, body) = call(Method::PUT, &levee.url("/kv/kv/small"), &[], "v").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(
        reason(&body),
        "levee is buffering as many request-body bytes as its \
         server.buffered_body_bytes_max (1000) allows; retry later"
    );
    // Requests without a body need no share.
    let (status, _, body) = call(Method::GET, &levee.url("/kv/kv/small"), &[], "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // The staller's share comes back with its 408; then the write fits.
    let (status, body) = read_answer(&mut staller).await;
    assert_eq!(status, 408, "{body}");
    let (status, _, body) = call(Method::PUT, &levee.url("/kv/kv/small"), &[], "v").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for replica in &replicas {
        let keys = replica.dump().await["keys"].clone();
        assert!(keys.get("big").is_none(), "{keys}");
    }
}

#[tokio::test]
async fn oversized_bodies_are_refused_declared_or_chunked() {
    let (replicas, levee) = with_server_limits(json!({}), json!({"body_bytes_max": 1000})).await;
    let too_large = "request body is larger than the 1000 bytes this service accepts";

    // Declared: refused from the head alone.
    let mut declared = send_raw(levee.data, &stalled_put("/kv/kv/a", 1001, "")).await;
    let (status, body) = read_answer(&mut declared).await;
    assert_eq!((status, reason(&body).as_str()), (413, too_large));

    // Chunked: refused once the bytes pass the limit.
    let chunk = "x".repeat(600);
    let chunked = format!(
        "PUT /kv/kv/a HTTP/1.1\r\nHost: levee\r\nTransfer-Encoding: chunked\r\n\r\n\
         258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    let mut stream = send_raw(levee.data, chunked.as_bytes()).await;
    let (status, body) = read_answer(&mut stream).await;
    assert_eq!((status, reason(&body).as_str()), (413, too_large));
    for replica in &replicas {
        assert_eq!(replica.kv_requests().await, 0, "refused before any replica");
    }

    // Within the limit, chunked is fine.
    let fits = format!(
        "PUT /kv/kv/a HTTP/1.1\r\nHost: levee\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    let mut stream = send_raw(levee.data, fits.as_bytes()).await;
    let (status, body) = read_answer(&mut stream).await;
    assert_eq!(status, 200, "{body}");
}
