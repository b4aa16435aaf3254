//! Serving HTTP/1.1 with limits against slow and idle clients: every listener of agentyard
//! (the API, the built-in MCP tool server, a worker's `/metrics`) is served by [`serve`].
//!
//! - **Header timeout** (`AY_HTTP_HEADER_TIMEOUT`): a request's head must arrive whole within
//!   this time of its first byte (of the connection's opening, for its first request);
//!   otherwise the connection is closed.
//! - **Body timeout** (`AY_HTTP_BODY_TIMEOUT`): a request's body must arrive whole within this
//!   time of its head; reading it then fails with [`BodyTimedOut`] (the API answers 408) and the
//!   connection is closed after the answer.
//! - **Idle timeout** (`AY_HTTP_IDLE_TIMEOUT`): a kept-alive connection with no request for
//!   this long is closed.
//! - **Connection cap** (`AY_HTTP_MAX_CONNECTIONS`): at the cap, nothing more is accepted: new
//!   connections wait in the kernel's listen backlog until one closes.
//!
//! None of these cut a response being sent: a request being answered (an SSE stream, a
//! long-poll) is neither idle nor slow, however long it lasts.
//!
//! Every request carries the peer's address as [`axum::extract::ConnectInfo`].

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The limits of one HTTP listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// A request's head must arrive within this time of its first byte.
    pub header_timeout: Duration,
    /// A request's body must arrive within this time of its head.
    pub body_timeout: Duration,
    /// A kept-alive connection without a request for this long is closed.
    pub idle_timeout: Duration,
    /// Connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 20_000,
        }
    }
}

/// Largest request head (and read buffer) per connection: a longer head is answered 431.
/// hyper's default (about 400 KiB) let a client that never finished its head hold that much.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Reading a request body took longer than [`HttpLimits::body_timeout`].
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimedOut(pub Duration);

impl BodyTimedOut {
    /// The [`BodyTimedOut`] in `err`'s chain of sources, if any.
    pub fn find<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Self> {
        let mut next = Some(err);
        while let Some(e) = next {
            if let Some(t) = e.downcast_ref::<Self>() {
                return Some(t);
            }
            next = e.source();
        }
        None
    }
}

/// Serves `app` on `listener` with `limits` until `shutdown`; then stops accepting, lets each
/// connection finish the request it is answering, and returns once all are closed.
///
/// # Errors
/// None today: failures to accept are logged and retried (as `axum::serve` does).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(max));
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(s) => s,
            Err(_) => {
                tracing::warn!(max, "connection cap reached: new connections wait in the backlog");
                tokio::select! {
                    s = slots.clone().acquire_owned() => s.expect("the semaphore is never closed"),
                    () = shutdown.cancelled() => break,
                }
            }
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    if !is_connection_error(&e) {
                        // EMFILE and the like: wait for descriptors to free up.
                        tracing::error!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        // Events are small writes: without TCP_NODELAY, Nagle's algorithm holds one back until
        // the client's delayed ACK, about 40 ms per event on a reused connection.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "cannot set TCP_NODELAY");
        }
        let (app, shutdown) = (app.clone(), shutdown.clone());
        tokio::spawn(async move {
            connection(tcp, peer, app, limits, shutdown).await;
            drop(slot);
        });
    }
    drop(listener);
    // Every connection holds a slot until it closes.
    let _all = slots.acquire_many(u32::try_from(max).unwrap_or(u32::MAX)).await;
    Ok(())
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}

/// One connection: hyper's HTTP/1.1 with a watchdog that closes it when its client is too slow
/// to send a head, or idle too long.
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
) {
    let watch = Arc::new(Watch::new());
    let io = TokioIo::new(Watched { inner: tcp, watch: watch.clone() });
    let service = {
        let watch = watch.clone();
        hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            let active = Active::begin(watch.clone());
            req.extensions_mut().insert(ConnectInfo(peer));
            let req = req.map(|body| DeadlineBody::new(body, limits.body_timeout));
            let app = app.clone();
            async move {
                let response = app.oneshot(req).await.unwrap_or_else(|e: Infallible| match e {});
                Ok::<_, Infallible>(
                    response.map(|body| Body::new(Tracked { body, _active: active })),
                )
            }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let check = tokio::time::sleep(limits.header_timeout);
    tokio::pin!(check);
    let mut closing = false;
    loop {
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(error = %e, %peer, "connection ended with an error");
                }
                return;
            }
            () = &mut check => match watch.deadline(&limits) {
                Some(at) if at <= Instant::now() => {
                    tracing::debug!(%peer, "closing a slow or idle connection");
                    return;
                }
                Some(at) => check.as_mut().reset(at),
                // Answering: look again later.
                None => check.as_mut().reset(Instant::now() + limits.idle_timeout),
            },
            () = shutdown.cancelled(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

const IDLE: u8 = 0;
const HEAD: u8 = 1;
const ACTIVE: u8 = 2;

/// What a connection is doing, and since when: waiting for a request (`IDLE`), receiving a
/// head (`HEAD`) or answering (`ACTIVE`, requests in flight).
#[derive(Debug)]
struct Watch {
    epoch: Instant,
    phase: AtomicU8,
    since_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Watch {
    /// A new connection is receiving its first head.
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            phase: AtomicU8::new(HEAD),
            since_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// When the connection is to be closed as it is now; None while it answers.
    fn deadline(&self, limits: &HttpLimits) -> Option<Instant> {
        let limit = match self.phase.load(Ordering::Acquire) {
            IDLE => limits.idle_timeout,
            HEAD => limits.header_timeout,
            _ => return None,
        };
        let since = Duration::from_millis(self.since_ms.load(Ordering::Acquire));
        Some(self.epoch + since + limit)
    }

    /// Bytes arrived: a waiting connection starts receiving a head.
    fn bytes_read(&self) {
        if self.phase.load(Ordering::Acquire) == IDLE {
            self.since_ms.store(self.now_ms(), Ordering::Release);
            let _ = self.phase.compare_exchange(IDLE, HEAD, Ordering::AcqRel, Ordering::Acquire);
        }
    }
}

/// A request in flight: from its head to the end of its response (or until either is dropped).
#[derive(Debug)]
struct Active(Arc<Watch>);

impl Active {
    fn begin(watch: Arc<Watch>) -> Self {
        watch.in_flight.fetch_add(1, Ordering::AcqRel);
        watch.phase.store(ACTIVE, Ordering::Release);
        Self(watch)
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.since_ms.store(self.0.now_ms(), Ordering::Release);
            self.0.phase.store(IDLE, Ordering::Release);
        }
    }
}

/// The socket, telling the watch when bytes arrive.
struct Watched {
    inner: TcpStream,
    watch: Arc<Watch>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.watch.bytes_read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body that fails with [`BodyTimedOut`] unless it has arrived whole by its deadline
/// (a total, not a per-chunk, limit: a trickle of bytes does not extend it).
struct DeadlineBody {
    inner: Incoming,
    limit: Duration,
    deadline: Instant,
    timer: Option<Pin<Box<Sleep>>>,
}

impl DeadlineBody {
    fn new(inner: Incoming, limit: Duration) -> Self {
        Self { inner, limit, deadline: Instant::now() + limit, timer: None }
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut(this.limit))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that keeps its request counted as in flight until it is sent (or dropped).
struct Tracked {
    body: Body,
    /// Held for its `Drop`.
    _active: Active,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The token of an `Authorization` header: the scheme `Bearer` in any case (RFC 9110), one or
/// more spaces or tabs, the token.
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim_start().split_once([' ', '\t'])?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watch_gives_the_deadline_of_its_phase() {
        let limits = HttpLimits {
            header_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(5),
            ..HttpLimits::default()
        };
        let watch = Arc::new(Watch::new());
        let head = watch.deadline(&limits).unwrap();
        assert!(head <= watch.epoch + Duration::from_secs(1));
        let active = Active::begin(watch.clone());
        assert_eq!(watch.deadline(&limits), None, "a request being answered is never cut");
        drop(active);
        let idle = watch.deadline(&limits).unwrap();
        assert!(idle >= watch.epoch + Duration::from_secs(5));
        watch.bytes_read();
        let head = watch.deadline(&limits).unwrap();
        assert!(head < idle, "a started head gets the header timeout");
    }

    #[test]
    fn the_scheme_is_case_insensitive() {
        for h in ["Bearer abc", "bearer abc", "BEARER abc", "BeArEr  abc ", "Bearer\tabc"] {
            assert_eq!(bearer_token(h), Some("abc"), "{h:?}");
        }
        for h in ["Basic abc", "Bearer", "Bearer   ", "Bearerabc", "abc"] {
            assert_eq!(bearer_token(h), None, "{h:?}");
        }
    }
}
