//! The HTTP/1.1 server: vigil's own accept loop over hyper, so slow, idle and numerous clients
//! are bounded (README, "Settings"; issue 10 item 2). `axum::serve` has no header, body or idle
//! timeout and no connection cap.
//!
//! - **Connection cap.** At most `max_connections` connections are served at once. One more is
//!   answered a fixed `503` with `Connection: close` and closed; up to [`REFUSING`] such answers
//!   are written at once, beyond that a connection is closed at accept.
//! - **Header timeout.** A request's head must arrive within `header_timeout`, counted from the
//!   accept for a connection's first request and from its first byte for the next ones.
//! - **Idle timeout.** A kept-alive connection with no request for `idle_timeout` is closed.
//! - **Body timeout.** A request's body must arrive within `body_timeout` of its head
//!   ([`DeadlineBody`]); a handler reading it after that gets an error it answers with 408.
//! - **Head size.** hyper reads at most [`MAX_BUFFER`] at a time; a larger head gets 431.
//!
//! A connection hyper ends while the client may still be sending (an answer given without
//! reading the body, e.g. a 401) is closed gracefully: vigil shuts its side, then reads and
//! discards for up to [`LINGER`] so the kernel does not reset the connection under the answer.
//!
//! Shutdown: once `stop` is cancelled, no connection is accepted; requests in flight are answered
//! (with `Connection: close`), connections between requests are closed, and `serve` returns when
//! the last connection has ended.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::service::Service as _;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::settings::HttpLimits;

/// hyper's read buffer bound per connection: request heads larger than this get 431.
pub const MAX_BUFFER: usize = 64 * 1024;
/// How long a closing connection is read (and discarded) after vigil's last answer.
pub const LINGER: Duration = Duration::from_secs(1);
/// At most this many bytes are discarded while lingering.
const LINGER_BYTES: usize = 512 * 1024;
/// Connections over the cap answered 503 at once; more are closed without an answer.
pub const REFUSING: usize = 64;

/// The answer to a connection over the cap.
fn overloaded() -> Vec<u8> {
    let body = r#"{"error":"unavailable","detail":"too many connections; retry later"}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves `router` on `listener` until `stop` is cancelled and every connection has ended.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let refusing = Arc::new(Semaphore::new(REFUSING));
    let overloaded: Arc<[u8]> = overloaded().into();
    let tracker = TaskTracker::new();
    let mut at_cap = false;
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors, most likely: wait rather than spin.
                    tracing::error!(error.message = %e, "Cannot accept connections.");
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            },
        };
        let _ = stream.set_nodelay(true);
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                at_cap = false;
                tracker.spawn(connection(
                    stream,
                    router.clone(),
                    limits.clone(),
                    stop.clone(),
                    slot,
                ));
            }
            Err(_) => {
                if !at_cap {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "Connection limit reached (VIGIL_MAX_CONNECTIONS); answering 503."
                    );
                    at_cap = true;
                }
                if let Ok(turn) = refusing.clone().try_acquire_owned() {
                    let answer = overloaded.clone();
                    tracker.spawn(async move {
                        refuse(stream, &answer).await;
                        drop(turn);
                    });
                }
            }
        }
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// Errors of one connection, not of the listener (as `axum::serve` counts them).
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

async fn refuse(mut stream: TcpStream, answer: &[u8]) {
    if tokio::time::timeout(LINGER, stream.write_all(answer))
        .await
        .is_ok_and(|w| w.is_ok())
    {
        linger(stream).await;
    }
}

/// Half-closes, then discards what the client still sends for a moment, so that closing with
/// unread bytes does not reset the connection before the client has read vigil's answer.
async fn linger(mut stream: TcpStream) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let mut buf = vec![0u8; 8 * 1024];
    let mut left = LINGER_BYTES;
    let _ = tokio::time::timeout(LINGER, async {
        while left > 0 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

/// Where a connection is between requests, for the header and idle timeouts.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for a request's head since this instant (the accept, or its first byte).
    Head(Instant),
    /// Requests being served (hyper serves one at a time; pipelined ones queue in its buffer).
    Busy(usize),
    /// The last answer was given at this instant; nothing received since.
    Idle(Instant),
}

struct Activity {
    phase: Mutex<Phase>,
    changed: Notify,
}

impl Activity {
    fn new() -> Self {
        Self {
            phase: Mutex::new(Phase::Head(Instant::now())),
            changed: Notify::new(),
        }
    }

    fn update(&self, f: impl FnOnce(Phase) -> Phase) {
        let mut p = self.phase.lock().unwrap_or_else(|e| e.into_inner());
        *p = f(*p);
        drop(p);
        self.changed.notify_one();
    }

    fn get(&self) -> Phase {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes arrived: an idle connection starts a request head.
    fn received(&self) {
        if matches!(self.get(), Phase::Idle(_)) {
            self.update(|p| match p {
                Phase::Idle(_) => Phase::Head(Instant::now()),
                other => other,
            });
        }
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.update(|p| match p {
            Phase::Busy(n) => Phase::Busy(n + 1),
            _ => Phase::Busy(1),
        });
        Busy(self.clone())
    }

    /// When the connection is to be closed unless something happens, and why.
    fn deadline(&self, limits: &HttpLimits) -> Option<(Instant, &'static str)> {
        match self.get() {
            Phase::Head(since) => Some((since + limits.header_timeout, "header")),
            Phase::Idle(since) => Some((since + limits.idle_timeout, "idle")),
            Phase::Busy(_) => None,
        }
    }
}

/// A request being served; dropped when its handler has answered (or was cancelled).
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.update(|p| match p {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            _ => Phase::Idle(Instant::now()),
        });
    }
}

/// The connection's socket, telling [`Activity`] when bytes arrive.
struct Watched {
    io: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.received();
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
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

enum Ended {
    /// hyper finished the connection (the client closed, or one side asked to close).
    Done(Result<(), hyper::Error>),
    TimedOut(&'static str),
    /// Shutdown, between requests.
    Stopped,
}

async fn connection(
    stream: TcpStream,
    router: Router,
    limits: HttpLimits,
    stop: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        io: stream,
        activity: activity.clone(),
    });
    let tower = TowerToHyperService::new(router);
    let on_request = activity.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let busy = on_request.begin();
        let answer = tower.call(req);
        Box::pin(async move {
            let answer = answer.await;
            drop(busy);
            answer
        })
    });
    let mut conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .max_buf_size(MAX_BUFFER)
        // Ours (`Activity`): hyper's would also close kept-alive connections after it.
        .header_read_timeout(None)
        .serve_connection(io, service);
    let mut stopping = false;
    let ended = loop {
        if stopping && !matches!(activity.get(), Phase::Busy(_)) {
            break Ended::Stopped;
        }
        let deadline = activity.deadline(&limits);
        let changed = activity.changed.notified();
        tokio::select! {
            done = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => break Ended::Done(done),
            _ = stop.cancelled(), if !stopping => {
                stopping = true;
                Pin::new(&mut conn).graceful_shutdown();
            }
            _ = changed => {}
            _ = tokio::time::sleep_until(deadline.map_or_else(Instant::now, |d| d.0)), if deadline.is_some() => {
                if let Some((at, why)) = activity.deadline(&limits)
                    && at <= Instant::now()
                {
                    break Ended::TimedOut(why);
                }
            }
        }
    };
    match ended {
        Ended::Done(Ok(())) => linger(conn.into_parts().io.into_inner().io).await,
        Ended::Done(Err(e)) => tracing::debug!(error.message = %e, "HTTP connection failed."),
        Ended::TimedOut(why) => tracing::debug!(timeout = why, "HTTP connection timed out."),
        Ended::Stopped => {}
    }
}

/// The client was too slow to send the body (`VIGIL_BODY_TIMEOUT`).
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimedOut(pub Duration);

impl BodyTimedOut {
    /// Whether `e`, or what caused it, is a body timeout.
    pub fn caused<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyTimedOut> {
        let mut cur = Some(e);
        while let Some(e) = cur {
            if let Some(t) = e.downcast_ref::<BodyTimedOut>() {
                return Some(t);
            }
            cur = e.source();
        }
        None
    }
}

/// A request body that fails once `timeout` has passed since the request's head, however the
/// bytes trickle in (tower-http's body timeout restarts with every frame).
pub struct DeadlineBody {
    inner: Body,
    timeout: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl DeadlineBody {
    pub fn wrap(inner: Body, timeout: Duration) -> Body {
        if inner.is_end_stream() {
            // No body (a GET, `content-length: 0`): nothing to wait for.
            return inner;
        }
        Body::new(Self {
            inner,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        })
    }
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut(this.timeout)))))
                }
                Poll::Pending => Poll::Pending,
            },
            ready => ready,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
