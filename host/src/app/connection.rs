//! One client connection: served by hyper while a request is in progress,
//! by nothing while it is idle.
//!
//! Why: a hyper HTTP/1 connection keeps an 8 KiB read buffer, an 8 KiB
//! header write buffer, a boxed header timer and its dispatcher state for
//! the connection's whole life, idle or not. That made an idle keep-alive
//! connection cost levee ~16 KiB where HAProxy spends ~1.8 KiB and nginx
//! ~0.9 KiB (bench/conns.sh). So levee runs a hyper connection only while
//! there is something to do, in three phases:
//! 1. **Idle**: the task holds the socket and waits for it to become
//!    readable, holding no buffer (unread bytes stay in the kernel),
//!    bounded by the keep-alive timeout (the header read timeout before the
//!    first request) and by shutdown.
//! 2. **Active**: once bytes arrive, a fresh hyper connection (boxed, so
//!    the idle task stays small) serves requests for as long as the client
//!    keeps the socket busy, pipelining included.
//! 3. **Shed**: when hyper has handed every response to the socket, its
//!    next read finds nothing and no request began for
//!    [`SHED_AFTER_IDLE_MS`](super::settings::SHED_AFTER_IDLE_MS), levee asks hyper for a graceful end (on an
//!    idle hyper connection that ends it at once, with no bytes written),
//!    takes the socket back with whatever hyper had read but not parsed (a
//!    partial next request head) and returns to 1.
//!
//! hyper still does all of HTTP/1.1 (framing, pipelining, keep-alive rules,
//! `Connection: close`, header timeout): levee only decides when its buffers
//! exist. A connection that hyper ends on its own (close, EOF, error) is
//! closed; so is one that hyper touched again after the shed was asked for
//! (it was not idle after all, e.g. draining an unread request body), since
//! its stream position is then unknown.
//!
//! The cost is a hyper connection built per busy period instead of per
//! socket (about ten allocations and 24 KB allocated). The linger before a
//! shed keeps that cost off back-to-back requests (a benchmark, a proxy's
//! pooled connection): only a client that pauses pays it, once per pause.

use std::future::{Future, poll_fn};
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::{Buf, Bytes, BytesMut};
use hyper::Request;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::memory::Gauge;
#[cfg(test)]
use super::settings::IdleLimits;
pub use super::settings::Settings;

/// What the socket, the service and the drive loop tell each other about
/// one hyper connection. One per client connection (not per request);
/// atomics only because hyper's parts must be `Send`; everything runs on
/// the connection's own task.
#[derive(Debug, Default)]
pub(super) struct Activity {
    /// Requests whose response body hyper has not yet dropped.
    in_flight: AtomicU32,
    /// Requests the current hyper connection has begun. A hyper connection
    /// that has not begun one is never shed: its partial head stays under
    /// hyper's header timeout instead of being re-fed forever.
    begun: AtomicU32,
    /// hyper's last read of the socket found nothing.
    read_pending: AtomicBool,
    /// hyper's last write to the socket could not finish (bytes still in
    /// its buffer).
    write_pending: AtomicBool,
    /// levee asked hyper to end so it can take the socket back.
    shed_requested: AtomicBool,
    /// hyper read the socket after the shed was asked for: it was not idle,
    /// so the stream position is unknown and the socket must close.
    read_after_shed: AtomicBool,
}

impl Activity {
    /// Requests begun and not yet answered to the end.
    pub(super) fn in_flight(&self) -> u32 {
        self.in_flight.load(Relaxed)
    }

    /// Requests (streams) begun on this connection so far.
    pub(super) fn begun(&self) -> u32 {
        self.begun.load(Relaxed)
    }

    /// Ready to shed: nothing in progress, every byte written, nothing to read.
    fn idle(&self) -> bool {
        self.in_flight.load(Relaxed) == 0
            && self.begun.load(Relaxed) > 0
            && self.read_pending.load(Relaxed)
            && !self.write_pending.load(Relaxed)
    }

    /// For a new hyper connection.
    fn reset(&self) {
        self.begun.store(0, Relaxed);
        self.read_pending.store(false, Relaxed);
        self.write_pending.store(false, Relaxed);
        self.shed_requested.store(false, Relaxed);
        self.read_after_shed.store(false, Relaxed);
    }

    /// The socket can carry another request: hyper ended because levee
    /// asked, from an idle state.
    fn reusable(&self) -> bool {
        self.shed_requested.load(Relaxed) && !self.read_after_shed.load(Relaxed)
    }
}

/// The client socket as hyper sees it: reads first drain `carry` (bytes a
/// previous hyper connection read but did not parse), and every poll
/// records what it found for [`Activity`].
#[derive(Debug)]
struct Socket {
    stream: TcpStream,
    carry: Bytes,
    activity: Arc<Activity>,
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.activity.shed_requested.load(Relaxed) {
            this.activity.read_after_shed.store(true, Relaxed);
        }
        if !this.carry.is_empty() {
            let n = this.carry.len().min(buf.remaining());
            buf.put_slice(&this.carry[..n]);
            this.carry.advance(n);
            this.activity.read_pending.store(false, Relaxed);
            return Poll::Ready(Ok(()));
        }
        let poll = Pin::new(&mut this.stream).poll_read(cx, buf);
        this.activity.read_pending.store(poll.is_pending(), Relaxed);
        poll
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.activity
            .write_pending
            .store(poll.is_pending(), Relaxed);
        poll
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.activity
            .write_pending
            .store(poll.is_pending(), Relaxed);
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    /// hyper shuts the socket down when it ends; not when levee took it back.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.activity.shed_requested.load(Relaxed) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_shutdown(cx)
    }
}

/// The service, counting requests in and response bodies out.
#[derive(Debug, Clone)]
pub(super) struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Tracked<S> {
    pub(super) fn new(inner: S, activity: Arc<Activity>) -> Tracked<S> {
        Tracked { inner, activity }
    }
}

impl<S> hyper::service::Service<Request<Incoming>> for Tracked<S>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response>,
{
    type Response = Response<TrackedBody>;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        self.activity.begun.fetch_add(1, Relaxed);
        self.activity.in_flight.fetch_add(1, Relaxed);
        TrackedFuture {
            inner: self.inner.call(request),
            guard: Some(InFlight(Arc::clone(&self.activity))),
        }
    }
}

/// One request in progress; dropped with its response body (or with the
/// service future, if that fails or is dropped).
#[derive(Debug)]
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

pin_project_lite::pin_project! {
    /// The service's future, handing its [`InFlight`] to the response body.
    pub(super) struct TrackedFuture<F> {
        #[pin]
        inner: F,
        guard: Option<InFlight>,
    }
}

impl<F, E> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response<TrackedBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let output = ready!(this.inner.poll(cx));
        let guard = this.guard.take();
        Poll::Ready(output.map(|response| {
            response.map(|inner| TrackedBody {
                inner,
                _guard: guard,
            })
        }))
    }
}

/// A response body that ends the request's [`InFlight`] when hyper drops it.
pub(super) struct TrackedBody {
    inner: Body,
    _guard: Option<InFlight>,
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

type Conn<S> = http1::Connection<TokioIo<Socket>, Tracked<S>>;

/// Serves one accepted connection until the client leaves, a limit in
/// `idle` passes, hyper ends it, or shutdown (in-flight requests finish
/// first; their responses say `Connection: close`).
pub async fn serve<S>(
    stream: TcpStream,
    service: S,
    settings: &Settings,
    busy: &Gauge,
    mut shutdown: watch::Receiver<bool>,
) where
    S: hyper::service::Service<Request<Incoming>, Response = Response> + Send + Unpin + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if settings.h2c {
        match super::h2c::sniff(&stream, settings.idle.first_request, &mut shutdown).await {
            super::h2c::Opening::Http2 => {
                settings.served.h2c.increment(1);
                busy.up();
                // Boxed: an HTTP/2 connection's future would otherwise
                // grow every idle HTTP/1 connection's task.
                Box::pin(super::session::serve(
                    stream,
                    &settings.http2,
                    service,
                    settings,
                    shutdown,
                ))
                .await;
                busy.down();
                return;
            }
            super::h2c::Opening::Http1 => {}
            super::h2c::Opening::Gone => return,
        }
    }
    settings.served.http1.increment(1);
    let activity = Arc::new(Activity::default());
    let mut socket = Socket {
        stream,
        carry: Bytes::new(),
        activity: Arc::clone(&activity),
    };
    let mut service = Tracked {
        inner: service,
        activity: Arc::clone(&activity),
    };
    let mut wait = settings.idle.first_request;
    // Bounded by the client: every turn serves at least one request (a
    // hyper connection is shed only after it began one) or ends.
    loop {
        if *shutdown.borrow() {
            return;
        }
        if socket.carry.is_empty() && !bytes_arrive(&socket.stream, wait, &mut shutdown).await {
            return;
        }
        wait = settings.idle.between_requests;
        activity.reset();
        let mut conn: Box<Conn<S>> = Box::new(
            settings
                .http1
                .serve_connection(TokioIo::new(socket), service),
        );
        busy.up();
        let ended = drive(
            &mut conn,
            &activity,
            settings.idle.shed_after,
            &mut shutdown,
        )
        .await;
        busy.down();
        if let Err(error) = ended {
            // Client-side: reset, bad request head, header timeout.
            tracing::debug!(%error, "client connection ended with an error");
            return;
        }
        if !activity.reusable() {
            return;
        }
        let parts = conn.into_parts();
        socket = parts.io.into_inner();
        socket.carry = prepend(parts.read_buf, std::mem::take(&mut socket.carry));
        service = parts.service;
    }
}

/// Waits, holding no buffer, until the socket has bytes. False: the client
/// left, the limit passed or shutdown began (the only change the shutdown
/// value ever makes).
async fn bytes_arrive(
    stream: &TcpStream,
    limit: Duration,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        biased;
        bytes = readable_with_bytes(stream) => bytes,
        _ = tokio::time::sleep(limit) => false,
        _ = shutdown.changed() => false,
    }
}

/// `readable()` may report readiness with nothing to read: a one-byte peek
/// tells bytes (true) from EOF or an error (false) from nothing yet (wait
/// again; tokio clears the readiness). Ends when the client sends or
/// leaves; the caller bounds the wait.
async fn readable_with_bytes(stream: &TcpStream) -> bool {
    loop {
        if stream.readable().await.is_err() {
            return false;
        }
        match stream.try_io(Interest::READABLE, || peek_byte(stream)) {
            Ok(bytes) => return bytes > 0,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
            Err(_) => return false,
        }
    }
}

/// `recv(MSG_PEEK)` of one byte into the stack, non-blocking.
fn peek_byte(stream: &TcpStream) -> io::Result<usize> {
    let mut byte = 0u8;
    // SAFETY: the descriptor is the live socket `stream` owns; recv writes
    // at most 1 byte into `byte`, which outlives the call.
    let read = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            (&raw mut byte).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if read < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(read as usize)
}

/// Polls hyper until it ends; asks it to end once it has been idle for
/// `shed_after` (shed), or gracefully once shutdown begins.
async fn drive<S>(
    conn: &mut Conn<S>,
    activity: &Activity,
    shed_after: Duration,
    shutdown: &mut watch::Receiver<bool>,
) -> hyper::Result<()>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response> + Unpin,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut closing = false;
    // Armed once per busy period and polled only while idle: a request
    // that began since it was armed re-arms it when it fires, so
    // back-to-back requests cost no timer work at all.
    let mut linger = std::pin::pin!(tokio::time::sleep(shed_after));
    let mut begun_when_armed = 0;
    poll_fn(|cx| {
        // A load, not a lock: the shutdown value only ever turns true.
        if !closing && shutdown.has_changed().unwrap_or(true) && *shutdown.borrow_and_update() {
            closing = true;
            Pin::new(&mut *conn).graceful_shutdown();
        }
        if let Poll::Ready(ended) = Pin::new(&mut *conn).poll(cx) {
            return Poll::Ready(ended);
        }
        if closing || activity.shed_requested.load(Relaxed) || !activity.idle() {
            return Poll::Pending;
        }
        ready!(linger.as_mut().poll(cx));
        let begun = activity.begun.load(Relaxed);
        if begun != begun_when_armed {
            begun_when_armed = begun;
            linger
                .as_mut()
                .reset(tokio::time::Instant::now() + shed_after);
            ready!(linger.as_mut().poll(cx));
        }
        activity.shed_requested.store(true, Relaxed);
        Pin::new(&mut *conn).graceful_shutdown();
        Pin::new(&mut *conn).poll(cx)
    })
    .await
}

/// `first` then `rest`, in a buffer of their own size: `first` is a view
/// into hyper's 8 KiB read buffer, and even an empty view would keep that
/// buffer alive for as long as the connection idles.
fn prepend(first: Bytes, rest: Bytes) -> Bytes {
    if first.is_empty() {
        return rest;
    }
    let mut joined = BytesMut::with_capacity(first.len() + rest.len());
    joined.extend_from_slice(&first);
    joined.extend_from_slice(&rest);
    joined.freeze()
}

#[cfg(test)]
#[path = "connection_tests.rs"]
mod tests;
