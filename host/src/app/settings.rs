//! What every connection of one listener shares: hyper's builders for each
//! protocol, the idle limits, whether h2c is accepted. One `Arc` per
//! listener, so an idle connection's task holds a pointer, not copies.

use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;

use crate::config::ServerLimits;

/// The most a connection's read buffer grows to while hyper parses a
/// request head or reads a body (hyper's default is ~400 KiB). A head
/// longer than this is refused with 431; nginx allows 4 × 8 KiB, HAProxy
/// 16 KiB.
pub const READ_BUFFER_BYTES_MAX: usize = 64 * 1024;

/// How long an idle plain HTTP/1 connection keeps its hyper connection (and
/// buffers) in case the next request follows at once: back-to-back
/// requests must not pay a rebuild each. It sheds after this and before
/// twice this (see [`connection`](super::connection)).
pub const SHED_AFTER_IDLE_MS: u64 = 50;

/// One listener's connection settings.
#[derive(Debug)]
pub struct Settings {
    /// Plain HTTP/1 connections (served only while busy).
    pub http1: http1::Builder,
    /// HTTP/1 over TLS: served for the connection's whole life.
    pub http1_whole: auto::Builder<TokioExecutor>,
    /// HTTP/2, over TLS (ALPN) or h2c.
    pub http2: auto::Builder<TokioExecutor>,
    /// A plain connection that opens with the HTTP/2 preface is served as
    /// HTTP/2 (prior knowledge); otherwise it is an HTTP/1 client.
    pub h2c: bool,
    pub idle: IdleLimits,
    /// Connections served, per protocol (`levee_connections_total`).
    pub served: Served,
}

/// One registered counter per protocol a listener serves.
#[derive(Debug)]
pub struct Served {
    pub http1: metrics::Counter,
    pub h2c: metrics::Counter,
    pub http1_tls: metrics::Counter,
    pub h2: metrics::Counter,
}

impl Served {
    fn register(listener: &'static str) -> Served {
        use crate::base::metrics::connections_served;
        Served {
            http1: connections_served(listener, "http1"),
            h2c: connections_served(listener, "h2c"),
            http1_tls: connections_served(listener, "http1-tls"),
            h2: connections_served(listener, "h2"),
        }
    }
}

/// How long a connection may wait for bytes before levee closes it, and
/// when it sheds its buffers.
#[derive(Debug, Clone, Copy)]
pub struct IdleLimits {
    /// Before the first request: the header read timeout (a client that
    /// connects and says nothing is a slowloris, not a keep-alive client).
    /// It also bounds a TLS handshake.
    pub first_request: Duration,
    /// Between requests: the keep-alive timeout.
    pub between_requests: Duration,
    /// Idle time before a plain HTTP/1 connection's hyper connection is
    /// shed ([`SHED_AFTER_IDLE_MS`]; tests use less).
    pub shed_after: Duration,
}

impl Settings {
    /// The settings `limits` give a listener named `listener`.
    pub fn new(listener: &'static str, limits: &ServerLimits) -> Settings {
        let header_read_timeout = Duration::from_millis(limits.header_read_timeout_ms);
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .max_buf_size(READ_BUFFER_BYTES_MAX)
            .keep_alive(true);
        let mut http1_whole = auto::Builder::new(TokioExecutor::new()).http1_only();
        http1_whole
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .max_buf_size(READ_BUFFER_BYTES_MAX)
            .keep_alive(true);
        let h2 = &limits.http2;
        let mut http2 = auto::Builder::new(TokioExecutor::new()).http2_only();
        http2
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(h2.streams_max)
            .initial_stream_window_size(h2.stream_window_bytes)
            .initial_connection_window_size(h2.connection_window_bytes)
            .max_header_list_size(h2.header_list_bytes_max)
            // What one stream may queue for a slow reader before its
            // handler waits (hyper's default is 400 KiB).
            .max_send_buf_size(h2.stream_window_bytes as usize)
            // Rapid-reset bound (CVE-2023-44487): hyper's default, named.
            .max_pending_accept_reset_streams(Some(20));
        Settings {
            served: Served::register(listener),
            http1,
            http1_whole,
            http2,
            h2c: h2.h2c,
            idle: IdleLimits {
                first_request: header_read_timeout,
                between_requests: Duration::from_millis(limits.keepalive_timeout_ms),
                shed_after: Duration::from_millis(SHED_AFTER_IDLE_MS),
            },
        }
    }
}

#[cfg(test)]
impl Settings {
    /// Default settings with this HTTP/1 builder and these idle limits.
    pub fn plain(http1: http1::Builder, idle: IdleLimits) -> Settings {
        Settings {
            http1,
            idle,
            ..Settings::new("data", &ServerLimits::default())
        }
    }
}
