//! One way to serve an axum router (the metrics endpoint, the dashboard): hyper's HTTP/1 on a
//! thread and current-thread runtime of its own, so a slow client never touches the graph's
//! threads, with limits a public-facing port needs.
//!
//! Every connection is a task of its own, so an idle socket blocks no other request; a client
//! gets `header_timeout` to send its headers, at most `max_request` bytes of them, and
//! `connection_timeout` in all; past `max_connections` new connections are closed at once.
//! Each request carries the client's address as an [`axum::Extension`] of [`Peer`].

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

/// The limits a served port enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time a client has to send its request headers.
    pub header_timeout: Duration,
    /// Time a connection may stay open in all.
    pub connection_timeout: Duration,
    /// Bytes of request headers read at most.
    pub max_request: usize,
    /// Connections served at once; more are closed.
    pub max_connections: usize,
}

/// The address a request came from (for audit records).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// Binds `addr` and serves `app` on a thread named `name`; returns the bound address (port 0
/// picks a free one).
///
/// # Errors
/// The address cannot be bound, or the thread or runtime cannot start.
pub fn spawn(
    name: &str,
    addr: &str,
    app: axum::Router,
    limits: Limits,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let label = name.to_string();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || rt.block_on(accept_loop(label, listener, app, limits)))?;
    Ok(local)
}

async fn accept_loop(name: String, listener: TcpListener, app: axum::Router, limits: Limits) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(server = %name, error = %e, "cannot listen");
            return;
        }
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(server = %name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::warn!(server = %name, %peer, "too many connections: closed");
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(
            app.clone().layer(axum::Extension(Peer(peer))),
        );
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(limits.max_request)
                .keep_alive(false)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(limits.connection_timeout, conn).await;
            drop(slot);
        });
    }
}
