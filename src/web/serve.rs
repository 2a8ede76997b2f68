//! Serving HTTP/1.1 connections: a cap on open connections
//! (`server.max_connections`; beyond it new ones wait in the listen backlog),
//! a timeout for the request head (`server.header_read_timeout`, against
//! slow-loris clients), WebSocket upgrades, and graceful shutdown.
//!
//! Written here rather than with `axum::serve`, which offers neither knob.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::HeaderValue;
use axum::http::header::CONNECTION;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tower::ServiceExt;

/// How long to wait after a failed `accept` (out of file descriptors, say)
/// before trying again, so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The serving limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
}

/// How long the shutdown keeps taking connections that were already waiting
/// in the kernel's backlog (a closed listener would reset them).
const BACKLOG_DRAIN: Duration = Duration::from_millis(5);

/// What every connection task shares.
#[derive(Clone)]
struct Shared {
    app: Router,
    header_read_timeout: Duration,
    /// True once the server is shutting down: every response then carries
    /// `Connection: close`, so each connection ends after its request.
    stopping: Arc<AtomicBool>,
    /// Changes once, at shutdown: idle connections close.
    stop: watch::Receiver<()>,
    /// Held by every connection task; the server waits until none is left.
    done: watch::Receiver<()>,
}

/// Serves `app` on `listener` until `shutdown` resolves. Then it takes no new
/// connections (those already in the backlog are still served), lets every
/// accepted request finish (bounded by `grace`), and returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop) = watch::channel(());
    let (done_tx, done) = watch::channel(());
    let shared = Shared {
        app,
        header_read_timeout: limits.header_read_timeout,
        stopping: Arc::new(AtomicBool::new(false)),
        stop,
        done,
    };
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A place first, then a connection: past the cap, clients wait in the
        // kernel's backlog instead of costing us memory.
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => permit,
            () = shutdown.as_mut() => break,
        };
        let Ok(permit) = permit else { break };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => spawn_connection(&shared, stream, peer, permit),
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            () = shutdown.as_mut() => break,
        }
    }
    shared.stopping.store(true, Ordering::SeqCst);
    drain_backlog(&listener, &shared, &permits).await;
    drop(listener);
    // Nobody listening means no connection is open: fine.
    let _ = stop_tx.send(());
    let Shared { done, .. } = shared;
    drop(done);
    tokio::select! {
        () = done_tx.closed() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!("requests still open after the shutdown grace; stopping anyway");
        }
    }
}

/// Serves the connections that reached the backlog before the listener
/// closes, instead of letting the kernel reset them.
async fn drain_backlog(listener: &TcpListener, shared: &Shared, permits: &Arc<Semaphore>) {
    while let Ok(Ok((stream, peer))) = tokio::time::timeout(BACKLOG_DRAIN, listener.accept()).await
    {
        match Arc::clone(permits).try_acquire_owned() {
            Ok(permit) => spawn_connection(shared, stream, peer, permit),
            Err(_) => drop(stream),
        }
    }
}

/// Serves one connection on its own task.
fn spawn_connection(
    shared: &Shared,
    stream: TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
) {
    let served = Arc::new(AtomicBool::new(false));
    let (seen, stopping) = (Arc::clone(&served), Arc::clone(&shared.stopping));
    let service = shared
        .app
        .clone()
        .map_request(move |mut req: hyper::Request<Incoming>| {
            seen.store(true, Ordering::SeqCst);
            req.extensions_mut().insert(ConnectInfo(peer));
            req.map(axum::body::Body::new)
        })
        .map_response(move |mut response: axum::response::Response| {
            if stopping.load(Ordering::SeqCst) {
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            response
        });
    let stream = Counted {
        stream,
        _place: permit,
    };
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(shared.header_read_timeout)
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
        .with_upgrades();
    let (mut stop, done) = (shared.stop.clone(), shared.done.clone());
    tokio::spawn(async move {
        let mut connection = std::pin::pin!(connection);
        let mut stop_seen = false;
        loop {
            tokio::select! {
                // A client that hangs up or times out is normal.
                _ = connection.as_mut() => break,
                _ = stop.changed(), if !stop_seen => {
                    stop_seen = true;
                    // An idle connection that has served requests closes now; a
                    // new one gets to send its first request, whose answer
                    // carries `Connection: close`.
                    if served.load(Ordering::SeqCst) {
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
        }
        drop(done);
    });
}

/// A connection's stream, holding its place under `max_connections` for as
/// long as it is open: after a WebSocket upgrade too, since the upgraded
/// socket owns this stream.
struct Counted {
    stream: TcpStream,
    _place: OwnedSemaphorePermit,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
