//! Routing keys from hostile clients: every spelling of a key that a
//! replica treats as the same key must land on the same replicas, the path
//! a replica receives is the one the key was read from, and a request with
//! no single meaning is refused with 400 and the reason
//! (`dataplane::key`).

use std::sync::{Arc, Mutex};

use hyper::{Method, StatusCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::bodies::{read_answer, send_raw};
use crate::support::{Cluster, Levee, call, reason};

/// Candidate keys tried to find one whose escaped spelling hashes apart.
const CANDIDATE_KEYS: usize = 200;
/// Most bytes of one request head the recording upstream accepts.
const HEAD_BYTES_MAX: usize = 64 * 1024;

#[tokio::test]
async fn spellings_of_a_key_share_its_replicas_and_ambiguity_is_refused() {
    let cluster = Cluster::start(5, json!({"replicas": 2, "write_quorum": 2})).await;
    // A key whose raw escaped spelling `%61...` would hash to other
    // replicas than `a...`: placement by the raw bytes would split them.
    let key = (0..CANDIDATE_KEYS)
        .map(|i| format!("a{i}"))
        .find(|key| {
            cluster.preference(key, 2) != cluster.preference(&format!("%61{}", &key[1..]), 2)
        })
        .expect("some key's spellings hash apart");
    let escaped = format!("%61{}", &key[1..]);

    let url = cluster.levee.url(&format!("/kv/kv/{escaped}"));
    let (status, _, body) = call(Method::PUT, &url, &[], "v1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let owners = cluster.preference(&key, 2);
    for (index, replica) in cluster.replicas.iter().enumerate() {
        let stored = replica.dump().await["keys"].get(&key).is_some();
        assert_eq!(
            stored,
            owners.contains(&index),
            "replica r{index}, key {key}"
        );
    }
    let (status, _, body) = cluster.get(&key).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "v1"));

    let before = cluster.total_kv_requests().await;
    for (path, why) in [
        (
            format!("/kv/kv/bob/../{key}"),
            "ambiguous path: dot-segment (. or ..)",
        ),
        (
            format!("/kv/kv/bob/%2e%2E/{key}"),
            "ambiguous path: dot-segment (. or ..)",
        ),
        (
            format!("/kv/kv//{key}"),
            "ambiguous path: empty segment (//)",
        ),
        (
            format!("/kv/kv/{key}%00"),
            "ambiguous request: encoded NUL (%00)",
        ),
    ] {
        let (status, _, body) = call(Method::PUT, &cluster.levee.url(&path), &[], "v2").await;
        assert_eq!(
            (status, reason(&body).as_str()),
            (StatusCode::BAD_REQUEST, why),
            "{path}"
        );
    }
    let malformed = cluster.levee.url(&format!("/kv/kv/{key}%zz"));
    let (status, _, body) = call(Method::PUT, &malformed, &[], "v2").await;
    assert_eq!(
        (status, reason(&body)),
        (
            StatusCode::BAD_REQUEST,
            format!(
                "malformed percent-escape in the path at byte {}: expected % and two hex digits",
                "/kv/".len() + key.len()
            )
        )
    );
    let (status, _, body) = call(Method::PUT, &cluster.levee.url("/kv/kv/a%2Fb"), &[], "x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        reason(&body).starts_with("ambiguous path: encoded slash (%2F)"),
        "{body}"
    );
    assert_eq!(
        cluster.total_kv_requests().await,
        before,
        "no replica saw them"
    );
    let (status, _, body) = cluster.get(&key).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "v1"),
        "nothing was lost"
    );
}

/// An upstream on a real socket that answers every request `200 ok` and
/// records each request line, so the test sees exactly the path levee sent.
struct Recorder {
    url: String,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let lines = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&lines);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_recorded(stream, Arc::clone(&record)));
            }
        });
        Recorder { url, lines }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

/// Serves one keep-alive connection: reads each request (head and
/// `Content-Length` body), records its request line, answers `200 ok`.
async fn serve_recorded(mut stream: TcpStream, lines: Arc<Mutex<Vec<String>>>) {
    let mut pending = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        while !pending.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read) if pending.len() + read > HEAD_BYTES_MAX => return,
                Ok(read) => pending.extend_from_slice(&buffer[..read]),
            }
        }
        let head_end = pending.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&pending[..head_end]).into_owned();
        let length: usize = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        while pending.len() < head_end + length {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read) => pending.extend_from_slice(&buffer[..read]),
            }
        }
        pending.drain(..head_end + length);
        lines
            .lock()
            .unwrap()
            .push(head.lines().next().unwrap_or_default().to_owned());
        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        if stream.write_all(answer).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn the_upstream_receives_the_path_the_key_came_from() {
    let upstream = Recorder::start().await;
    let levee = Levee::start(json!({"services": [{
        "name": "kv",
        "nodes": [{"id": "u", "url": upstream.url}],
        "key": {"query": "key"},
    }]}))
    .await;
    let raw = "/kv/kv/%61lic%65/x%7e%7b?key=%61%2bb+c&q=%3b";
    let canonical = "/kv/alice/x~%7B?key=a%2Bb+c&q=%3B";
    for method in ["GET", "PUT"] {
        let request = format!(
            "{method} {raw} HTTP/1.1\r\nHost: levee\r\nContent-Length: 1\r\nConnection: close\r\n\r\nv"
        );
        let mut stream = send_raw(levee.data, request.as_bytes()).await;
        let (status, body) = read_answer(&mut stream).await;
        assert_eq!(status, 200, "{method}: {body}");
    }
    assert_eq!(
        upstream.lines(),
        [
            format!("GET {canonical} HTTP/1.1"),
            format!("PUT {canonical} HTTP/1.1"),
        ]
    );

    // The key parameter twice, by any spelling of its name: refused.
    for query in ["key=a&key=b", "key=a&%6Bey=a", "key&key=b"] {
        let url = levee.url(&format!("/kv/kv/x?{query}"));
        let (status, _, body) = call(Method::PUT, &url, &[], "v").await;
        assert_eq!(
            (status, reason(&body).as_str()),
            (
                StatusCode::BAD_REQUEST,
                "ambiguous query: parameter key appears more than once"
            ),
            "{query}"
        );
    }
    assert_eq!(
        upstream.lines().len(),
        2,
        "no refused request went upstream"
    );
}
