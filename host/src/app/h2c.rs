//! h2c with prior knowledge: telling an HTTP/2 client from an HTTP/1 one
//! on a plain listener by the first bytes it sends, without reading them.
//!
//! An HTTP/2 client that knows the server speaks it opens with the
//! 24-byte connection preface (RFC 9113 §3.4), which no HTTP/1 request
//! begins with (`PRI` is not a method any HTTP/1 client sends with the
//! version `HTTP/2.0`). The bytes are peeked (`MSG_PEEK`), so whichever
//! protocol serves the connection reads them itself. The `Upgrade: h2c`
//! dance of RFC 7540 is not offered: RFC 9113 deprecated it and curl,
//! nghttp and gRPC clients use prior knowledge.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;

/// The HTTP/2 connection preface.
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Pause between peeks while a preface arrives in pieces (rare: it is one
/// TCP segment from every real client).
const PARTIAL_PREFACE_PAUSE_MS: u64 = 2;

/// What a new plain connection opens with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    Http2,
    Http1,
    /// The client left, sent nothing within the limit, or shutdown began.
    Gone,
}

/// Peeks at the first bytes: the whole preface is HTTP/2, anything that
/// departs from it is HTTP/1. Waits at most `limit` (the header read
/// timeout) for enough bytes to tell.
pub async fn sniff(
    stream: &TcpStream,
    limit: Duration,
    shutdown: &mut watch::Receiver<bool>,
) -> Opening {
    tokio::select! {
        biased;
        opening = read_opening(stream) => opening,
        _ = tokio::time::sleep(limit) => Opening::Gone,
        _ = shutdown.changed() => Opening::Gone,
    }
}

/// Ends when the bytes so far decide it; the caller bounds the wait.
async fn read_opening(stream: &TcpStream) -> Opening {
    let mut seen = [0u8; PREFACE.len()];
    loop {
        if stream.readable().await.is_err() {
            return Opening::Gone;
        }
        let peeked = match stream.try_io(tokio::io::Interest::READABLE, || peek(stream, &mut seen))
        {
            Ok(0) => return Opening::Gone,
            Ok(peeked) => peeked,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
            Err(_) => return Opening::Gone,
        };
        match classify(&seen[..peeked]) {
            Some(opening) => return opening,
            // A prefix of the preface: readiness stays set while those
            // bytes sit unread, so pause instead of spinning.
            None => tokio::time::sleep(Duration::from_millis(PARTIAL_PREFACE_PAUSE_MS)).await,
        }
    }
}

/// `Some` once `bytes` decide the protocol.
pub fn classify(bytes: &[u8]) -> Option<Opening> {
    if !PREFACE.starts_with(bytes) {
        return Some(Opening::Http1);
    }
    (bytes.len() == PREFACE.len()).then_some(Opening::Http2)
}

/// `recv(MSG_PEEK)` into `into`, non-blocking.
fn peek(stream: &TcpStream, into: &mut [u8; PREFACE.len()]) -> io::Result<usize> {
    // SAFETY: the descriptor is the live socket `stream` owns; recv writes
    // at most `into.len()` bytes into `into`, which outlives the call.
    let read = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            into.as_mut_ptr().cast(),
            into.len(),
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if read < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(read as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preface_and_nothing_else_is_http2() {
        assert_eq!(classify(PREFACE), Some(Opening::Http2));
        assert_eq!(classify(b"PRI * HTTP/2"), None);
        assert_eq!(classify(b""), None);
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Some(Opening::Http1));
        assert_eq!(classify(b"PRI * HTTP/1.1"), Some(Opening::Http1));
        assert_eq!(classify(b"P"), None);
        assert_eq!(classify(b"POST"), Some(Opening::Http1));
    }
}
