//! The connection loop against a raw client on a real loopback socket:
//! keep-alive across sheds, pipelining, a head split across a shed, the
//! idle limits, `Connection: close`, an unread body, graceful shutdown,
//! and the size of what an idle connection holds.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use http_body_util::BodyExt;
use hyper::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::{IdleLimits, Settings, serve};

/// Longest any step may take before the test calls it hung (generous: CI).
const STEP_TIMEOUT: Duration = Duration::from_secs(20);
/// A pause long enough for the server to go idle and shed hyper.
const SETTLE: Duration = Duration::from_millis(50);

/// Answers `ok <path> <body bytes read>`; `/ignore-body` answers without
/// reading the request body; `/slow` waits 300 ms first.
async fn handler(request: Request<Incoming>) -> Result<Response, Infallible> {
    let path = request.uri().path().to_owned();
    if path == "/slow" {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let read = if path == "/ignore-body" {
        0
    } else {
        let body = request.into_body().collect().await;
        body.map(|b| b.to_bytes().len()).unwrap_or(0)
    };
    Ok(Response::new(Body::from(format!("ok {path} {read}"))))
}

struct Server {
    address: SocketAddr,
    stop: watch::Sender<bool>,
}

async fn start(idle: IdleLimits) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let (stop, shutdown) = watch::channel(false);
    tokio::spawn(async move {
        let mut http1 = http1::Builder::new();
        http1.timer(hyper_util::rt::TokioTimer::new());
        let settings = std::sync::Arc::new(Settings::plain(http1, idle));
        // Bounded by the test: the runtime ends with it.
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (settings, shutdown) = (settings.clone(), shutdown.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(handler);
                serve(
                    stream,
                    service,
                    &settings,
                    &crate::app::memory::Gauge::default(),
                    shutdown,
                )
                .await;
            });
        }
    });
    Server { address, stop }
}

/// Sheds after 1 ms idle, so [`SETTLE`] always sees a shed.
fn limits_ms(first: u64, between: u64) -> IdleLimits {
    IdleLimits {
        first_request: Duration::from_millis(first),
        between_requests: Duration::from_millis(between),
        shed_after: Duration::from_millis(1),
    }
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n")
}

/// Reads one response (head + `content-length` body); None at EOF.
async fn response(stream: &mut TcpStream) -> Option<String> {
    let read = async {
        let mut bytes = Vec::new();
        let mut byte = [0u8; 1];
        // Bounded: a response here is under 1 KiB.
        for _ in 0..4096 {
            if stream.read(&mut byte).await.ok()? == 0 {
                return None;
            }
            bytes.push(byte[0]);
            let text = String::from_utf8_lossy(&bytes).to_string();
            if let Some(head_end) = text.find("\r\n\r\n") {
                let length = text
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if bytes.len() == head_end + 4 + length {
                    return Some(text);
                }
            }
        }
        None
    };
    tokio::time::timeout(STEP_TIMEOUT, read)
        .await
        .expect("response hung")
}

async fn closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(STEP_TIMEOUT, stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn keep_alive_survives_sheds_and_pipelining() {
    let server = start(limits_ms(5_000, 5_000)).await;
    let mut client = TcpStream::connect(server.address).await.expect("connect");
    for round in 0..3 {
        client
            .write_all(get(&format!("/r{round}")).as_bytes())
            .await
            .unwrap();
        let answer = response(&mut client).await.expect("answer");
        assert!(answer.ends_with(&format!("ok /r{round} 0")), "{answer}");
        tokio::time::sleep(SETTLE).await;
    }
    let pipelined = format!("{}{}", get("/p1"), get("/p2"));
    client.write_all(pipelined.as_bytes()).await.unwrap();
    assert!(response(&mut client).await.unwrap().ends_with("ok /p1 0"));
    assert!(response(&mut client).await.unwrap().ends_with("ok /p2 0"));
}

#[tokio::test]
async fn a_head_split_across_a_shed_is_served() {
    let server = start(limits_ms(5_000, 5_000)).await;
    let mut client = TcpStream::connect(server.address).await.expect("connect");
    client.write_all(get("/a").as_bytes()).await.unwrap();
    assert!(response(&mut client).await.unwrap().ends_with("ok /a 0"));
    tokio::time::sleep(SETTLE).await;
    let next = "POST /b HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello";
    client.write_all(&next.as_bytes()[..10]).await.unwrap();
    tokio::time::sleep(SETTLE).await;
    client.write_all(&next.as_bytes()[10..]).await.unwrap();
    assert!(response(&mut client).await.unwrap().ends_with("ok /b 5"));
}

#[tokio::test]
async fn idle_limits_close_connections() {
    let server = start(limits_ms(100, 100)).await;
    let mut silent = TcpStream::connect(server.address).await.expect("connect");
    assert!(closed(&mut silent).await, "a silent client is closed");
    let mut client = TcpStream::connect(server.address).await.expect("connect");
    client.write_all(get("/a").as_bytes()).await.unwrap();
    assert!(response(&mut client).await.is_some());
    assert!(
        closed(&mut client).await,
        "an idle keep-alive client is closed"
    );
}

#[tokio::test]
async fn connection_close_and_unread_bodies_end_the_connection() {
    let server = start(limits_ms(5_000, 5_000)).await;
    let mut client = TcpStream::connect(server.address).await.expect("connect");
    let close = "GET /c HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
    client.write_all(close.as_bytes()).await.unwrap();
    assert!(response(&mut client).await.unwrap().ends_with("ok /c 0"));
    assert!(closed(&mut client).await);
    // Half a body the handler never reads: the socket's position is
    // unknown, so the next bytes must not be parsed as a request.
    let mut client = TcpStream::connect(server.address).await.expect("connect");
    let partial = "POST /ignore-body HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nabc";
    client.write_all(partial.as_bytes()).await.unwrap();
    assert!(
        response(&mut client)
            .await
            .unwrap()
            .ends_with("ok /ignore-body 0")
    );
    tokio::time::sleep(SETTLE).await;
    let _ = client.write_all(get("/after").as_bytes()).await;
    match response(&mut client).await {
        None => {}
        Some(answer) => panic!("served a request from inside a body: {answer}"),
    }
}

#[tokio::test]
async fn shutdown_closes_idle_and_finishes_in_flight() {
    let server = start(limits_ms(5_000, 5_000)).await;
    let mut idle = TcpStream::connect(server.address).await.expect("connect");
    idle.write_all(get("/a").as_bytes()).await.unwrap();
    assert!(response(&mut idle).await.is_some());
    let mut busy = TcpStream::connect(server.address).await.expect("connect");
    busy.write_all(get("/slow").as_bytes()).await.unwrap();
    tokio::time::sleep(SETTLE).await;
    server.stop.send(true).unwrap();
    assert!(
        closed(&mut idle).await,
        "idle connection closed at shutdown"
    );
    let answer = response(&mut busy)
        .await
        .expect("in-flight request finished");
    assert!(answer.contains("connection: close"), "{answer}");
    assert!(answer.ends_with("ok /slow 0"), "{answer}");
}

/// What an idle connection's task holds, besides the socket's kernel
/// buffers: the future (its largest state) must stay small, because it
/// lives as long as the connection.
#[test]
fn an_idle_connection_future_is_small() {
    /// The future was 808 bytes (release) and 824 (debug) when this test was written; the
    /// ceiling leaves room, not a regression to hyper's inline state.
    const CONNECTION_FUTURE_BYTES_MAX: usize = 1024;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (stream, _) = listener.accept().unwrap();
        stream.set_nonblocking(true).unwrap();
        let stream = TcpStream::from_std(stream).unwrap();
        let (_stop, shutdown) = watch::channel(false);
        let settings = Settings::plain(http1::Builder::new(), limits_ms(1, 1));
        let service = hyper::service::service_fn(handler);
        let busy = crate::app::memory::Gauge::default();
        let future = serve(stream, service, &settings, &busy, shutdown);
        let bytes = std::mem::size_of_val(&future);
        println!("connection future: {bytes} bytes");
        assert!(bytes <= CONNECTION_FUTURE_BYTES_MAX, "{bytes} bytes");
        drop(client);
    });
}
