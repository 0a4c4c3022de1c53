//! Reading a data-plane request body so that a slow or huge body costs only
//! its own connection, never what other requests need.
//!
//! A request body is read whole before the request takes its service's
//! concurrency slot ([`crate::dataplane::inbound`]): a client that sends
//! headers and then stalls holds its connection and the bytes it reserved,
//! but no slot, so it cannot make a service answer 503 to everybody else.
//! Three limits bound what it can hold instead:
//!
//! - **Size**: at most the service's `body_bytes_max` (413; refused by
//!   `Content-Length` before the first byte is read when it is declared).
//! - **Time**: the body must never pause longer than `body_read_timeout_ms`
//!   (nginx's `client_body_timeout` rule), and it must arrive within
//!   `body_read_timeout_ms` plus one second per `body_rate_min_bytes_per_s`
//!   bytes received (Apache `mod_reqtimeout`'s `body=T,MinRate=R`). So
//!   after a grace of `body_read_timeout_ms` a body must average at least
//!   the minimum rate, a stalled one is answered 408 within
//!   `body_read_timeout_ms` of its last byte, and a large body sent steadily
//!   at the minimum rate or faster always fits. Each rule alone leaves a
//!   hole: pauses alone let a client trickle a byte just before each
//!   timeout forever; a rate alone lets a client that sent a lot stall for
//!   as long as its bytes earned.
//! - **Memory across services**: one [`BodyBudget`] per process
//!   (`server.buffered_body_bytes_max`). A body reserves its declared
//!   `Content-Length` before reading, or grows its share frame by frame
//!   when chunked; the share is released when the request is dropped
//!   (its [`Reservation`]). A body that does not fit is answered 503 with
//!   the reason, and requests without a body (most reads) never touch it.
//!
//! Refusals close the connection (see
//! [`AppError::closes_connection`]): the unread rest of a body is not a
//! request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::header::{self, HeaderMap};
use tokio::time::Instant;

use crate::config::ServiceSpec;
use crate::dataplane::error::AppError;

/// Request-body bytes buffered at once across every service.
#[derive(Debug)]
pub struct BodyBudget {
    used_bytes: AtomicU64,
    max_bytes: u64,
}

impl BodyBudget {
    pub fn new(max_bytes: u64) -> BodyBudget {
        BodyBudget {
            used_bytes: AtomicU64::new(0),
            max_bytes,
        }
    }

    /// Bytes reserved right now.
    #[cfg(test)]
    pub fn used_bytes(&self) -> u64 {
        self.used_bytes.load(Ordering::Acquire)
    }

    /// Takes `bytes` more if they fit under the cap.
    fn try_take(&self, bytes: u64) -> bool {
        self.used_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&sum| sum <= self.max_bytes)
            })
            .is_ok()
    }

    fn full(&self) -> AppError {
        AppError::Overloaded(format!(
            "levee is buffering as many request-body bytes as its \
             server.buffered_body_bytes_max ({}) allows; retry later",
            self.max_bytes
        ))
    }
}

/// A request's share of the [`BodyBudget`], given back on drop.
#[derive(Debug, Default)]
pub struct Reservation {
    budget: Option<Arc<BodyBudget>>,
    bytes: u64,
}

impl Reservation {
    /// Grows this share to `bytes` in all, or answers 503.
    fn grow_to(&mut self, budget: &Arc<BodyBudget>, bytes: u64) -> Result<(), AppError> {
        let more = bytes.saturating_sub(self.bytes);
        if more == 0 {
            return Ok(());
        }
        if !budget.try_take(more) {
            return Err(budget.full());
        }
        self.budget.get_or_insert_with(|| Arc::clone(budget));
        self.bytes = bytes;
        Ok(())
    }

    /// Bytes held.
    #[cfg(test)]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.used_bytes.fetch_sub(self.bytes, Ordering::AcqRel);
        }
    }
}

/// A service's limits on one request body.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub bytes_max: u64,
    pub read_timeout_ms: u64,
    pub rate_min_bytes_per_s: u64,
}

impl BodyLimits {
    pub fn of(spec: &ServiceSpec) -> BodyLimits {
        BodyLimits {
            bytes_max: spec.body_bytes_max,
            read_timeout_ms: spec.body_read_timeout_ms,
            rate_min_bytes_per_s: spec.body_rate_min_bytes_per_s.max(1),
        }
    }

    /// When the body must be complete, having received `received` bytes
    /// since `started`: the grace plus a second per minimum rate's worth.
    fn total_deadline(&self, started: Instant, received: u64) -> Instant {
        let earned_ms = received.saturating_mul(1000) / self.rate_min_bytes_per_s;
        started + Duration::from_millis(self.read_timeout_ms.saturating_add(earned_ms))
    }
}

/// Reads `body` whole within `limits`, holding its bytes in `budget`.
/// A body that is known to be empty is answered at once, with no timer and
/// no reservation.
pub async fn read(
    mut body: Body,
    headers: &HeaderMap,
    limits: &BodyLimits,
    budget: &Arc<BodyBudget>,
) -> Result<(Bytes, Reservation), AppError> {
    let mut reservation = Reservation::default();
    if hyper::body::Body::is_end_stream(&body) {
        return Ok((Bytes::new(), reservation));
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(length) = declared {
        if length > limits.bytes_max {
            return Err(AppError::PayloadTooLarge {
                limit_bytes: limits.bytes_max,
            });
        }
        reservation.grow_to(budget, length)?;
    }
    let started = Instant::now();
    let mut last_bytes_at = started;
    let mut collected = Collected::new(declared);
    loop {
        let pause_deadline = last_bytes_at + Duration::from_millis(limits.read_timeout_ms);
        let total_deadline = limits.total_deadline(started, collected.bytes);
        let frame =
            match tokio::time::timeout_at(pause_deadline.min(total_deadline), body.frame()).await {
                Ok(Some(Ok(frame))) => frame,
                Ok(None) => break,
                Ok(Some(Err(error))) => return Err(unreadable(&error)),
                Err(_) if pause_deadline <= total_deadline => {
                    return Err(AppError::RequestTimeout(format!(
                        "request body stalled: no bytes for {} ms (body_read_timeout_ms) after \
                     {} bytes",
                        limits.read_timeout_ms, collected.bytes
                    )));
                }
                Err(_) => {
                    return Err(AppError::RequestTimeout(format!(
                        "request body too slow: {} bytes in {} ms, below {} bytes/s \
                     (body_rate_min_bytes_per_s) after the first {} ms",
                        collected.bytes,
                        started.elapsed().as_millis(),
                        limits.rate_min_bytes_per_s,
                        limits.read_timeout_ms
                    )));
                }
            };
        let Ok(data) = frame.into_data() else {
            continue; // Trailers: not forwarded.
        };
        if data.is_empty() {
            continue;
        }
        let total = collected.bytes + data.len() as u64;
        if total > limits.bytes_max {
            return Err(AppError::PayloadTooLarge {
                limit_bytes: limits.bytes_max,
            });
        }
        reservation.grow_to(budget, total)?;
        collected.push(data);
        last_bytes_at = Instant::now();
    }
    Ok((collected.finish(), reservation))
}

/// A body frame error: the client went away or broke framing.
fn unreadable(error: &axum::Error) -> AppError {
    AppError::BadRequest(format!("could not read the request body: {error}"))
}

/// A body's frames: one frame is kept as it is (no copy), more are joined
/// into one buffer sized by `Content-Length` when declared.
struct Collected {
    one: Option<Bytes>,
    many: Option<BytesMut>,
    declared: Option<u64>,
    bytes: u64,
}

impl Collected {
    fn new(declared: Option<u64>) -> Collected {
        Collected {
            one: None,
            many: None,
            declared,
            bytes: 0,
        }
    }

    fn push(&mut self, data: Bytes) {
        self.bytes += data.len() as u64;
        if let Some(many) = &mut self.many {
            many.extend_from_slice(&data);
        } else if let Some(first) = self.one.take() {
            let capacity = usize::try_from(self.declared.unwrap_or(0))
                .unwrap_or(0)
                .max(first.len() + data.len());
            let mut many = BytesMut::with_capacity(capacity);
            many.extend_from_slice(&first);
            many.extend_from_slice(&data);
            self.many = Some(many);
        } else {
            self.one = Some(data);
        }
    }

    fn finish(self) -> Bytes {
        match (self.one, self.many) {
            (_, Some(many)) => many.freeze(),
            (Some(one), None) => one,
            (None, None) => Bytes::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(bytes_max: u64, read_timeout_ms: u64, rate: u64) -> BodyLimits {
        BodyLimits {
            bytes_max,
            read_timeout_ms,
            rate_min_bytes_per_s: rate,
        }
    }

    /// A body fed by the test through a channel, one frame per send.
    struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

    impl hyper::body::Body for ChannelBody {
        type Data = Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            context: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
            self.0
                .poll_recv(context)
                .map(|data| data.map(|data| Ok(hyper::body::Frame::data(data))))
        }
    }

    fn channel_body() -> (tokio::sync::mpsc::Sender<Bytes>, Body) {
        let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(16);
        (sender, Body::new(ChannelBody(receiver)))
    }

    #[tokio::test]
    async fn frames_are_joined_and_the_budget_is_given_back() {
        let budget = Arc::new(BodyBudget::new(100));
        let (sender, body) = channel_body();
        for part in ["ab", "cd", "e"] {
            sender.send(Bytes::from(part)).await.unwrap();
        }
        drop(sender);
        let (bytes, reservation) = read(body, &HeaderMap::new(), &limits(10, 1000, 1), &budget)
            .await
            .unwrap();
        assert_eq!(bytes, "abcde");
        assert_eq!((reservation.bytes(), budget.used_bytes()), (5, 5));
        drop(reservation);
        assert_eq!(budget.used_bytes(), 0);
    }

    #[tokio::test]
    async fn an_empty_body_takes_nothing() {
        let budget = Arc::new(BodyBudget::new(0));
        let (bytes, reservation) =
            read(Body::empty(), &HeaderMap::new(), &limits(10, 1, 1), &budget)
                .await
                .unwrap();
        assert!(bytes.is_empty() && reservation.budget.is_none());
    }

    #[tokio::test]
    async fn declared_lengths_are_refused_or_reserved_before_reading() {
        let budget = Arc::new(BodyBudget::new(8));
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, "11".parse().unwrap());
        let (_sender, body) = channel_body();
        let error = read(body, &headers, &limits(10, 1000, 1), &budget)
            .await
            .unwrap_err();
        assert_eq!(error.status(), hyper::StatusCode::PAYLOAD_TOO_LARGE);
        headers.insert(header::CONTENT_LENGTH, "9".parse().unwrap());
        let (_sender, body) = channel_body();
        let error = read(body, &headers, &limits(10, 1000, 1), &budget)
            .await
            .unwrap_err();
        assert_eq!(error.status(), hyper::StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            error
                .to_string()
                .contains("server.buffered_body_bytes_max (8)")
        );
        assert_eq!(budget.used_bytes(), 0);
    }

    #[tokio::test]
    async fn a_chunked_body_grows_its_share_until_the_budget_is_full() {
        let budget = Arc::new(BodyBudget::new(4));
        let held = {
            let mut held = Reservation::default();
            held.grow_to(&budget, 3).unwrap();
            held
        };
        let (sender, body) = channel_body();
        sender.send(Bytes::from("a")).await.unwrap();
        sender.send(Bytes::from("b")).await.unwrap();
        drop(sender);
        let error = read(body, &HeaderMap::new(), &limits(10, 1000, 1), &budget)
            .await
            .unwrap_err();
        assert_eq!(error.status(), hyper::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            budget.used_bytes(),
            3,
            "the refused body gave its byte back"
        );
        drop(held);
        assert_eq!(budget.used_bytes(), 0);
    }

    #[tokio::test]
    async fn a_stalled_body_times_out() {
        let budget = Arc::new(BodyBudget::new(100));
        let (sender, body) = channel_body();
        sender.send(Bytes::from("abc")).await.unwrap();
        let error = read(body, &HeaderMap::new(), &limits(100, 100, 1), &budget)
            .await
            .unwrap_err();
        assert_eq!(error.status(), hyper::StatusCode::REQUEST_TIMEOUT);
        assert_eq!(
            error.to_string(),
            "request body stalled: no bytes for 100 ms (body_read_timeout_ms) after 3 bytes"
        );
        drop(sender);
    }

    #[tokio::test]
    async fn a_trickle_below_the_minimum_rate_times_out() {
        let budget = Arc::new(BodyBudget::new(1000));
        let (sender, body) = channel_body();
        // A byte every 50 ms: never a 200 ms pause, but 20 bytes/s against
        // a minimum of 1000 after the 200 ms grace.
        let trickle = tokio::spawn(async move {
            for _ in 0..1000 {
                if sender.send(Bytes::from("x")).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let error = read(body, &HeaderMap::new(), &limits(1000, 200, 1000), &budget)
            .await
            .unwrap_err();
        assert_eq!(error.status(), hyper::StatusCode::REQUEST_TIMEOUT);
        assert!(
            error.to_string().starts_with("request body too slow: "),
            "{error}"
        );
        trickle.abort();
    }
}
