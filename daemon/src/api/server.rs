//! The HTTPS listener: TCP accept under the connection caps, TLS handshake, HTTP/1.1 keep-alive or
//! HTTP/2, each connection closed when idle, graceful shutdown. The timeouts and caps are in
//! `connections`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tower::Service as _;

use super::connections::{
    connection_budget, raise_descriptor_limit, ConnectionConfig, OpenConnections, RequestActivity,
    Slot,
};

/// How long shutdown waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an idle connection, asked to close, may take to do so before it is dropped: long enough
/// to flush a GOAWAY or a last answer, short enough that a client cannot hold it by not reading.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Pause after a failed accept (out of descriptors and the like) instead of spinning on it.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    limits: ConnectionConfig,
    mut stop: watch::Receiver<bool>,
) {
    let descriptor_limit = raise_descriptor_limit();
    let max = connection_budget(limits.max, descriptor_limit);
    if max < limits.max {
        tracing::warn!(
            configured = limits.max,
            open_file_limit = descriptor_limit,
            "[api.connections] max lowered to {max} to stay under the open-file limit; raise LimitNOFILE= to allow more"
        );
    }
    let open = OpenConnections::new(max, limits.max_per_address);
    let listener_parts = Arc::new(PerConnection {
        acceptor: TlsAcceptor::from(tls),
        app,
        http: http_builder(&limits),
        limits,
    });
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    open.accept_failed(&e, Instant::now());
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        // Over a cap: `tcp` is dropped here, which closes it before any TLS work.
        let Some(slot) = open.admit(peer.ip(), Instant::now()) else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(serve_connection(
            tcp,
            peer,
            slot,
            listener_parts.clone(),
            stop.clone(),
        ));
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, open.all_closed())
        .await
        .is_err()
    {
        tracing::warn!(
            "{} connections were still open after {}s and were dropped",
            open.open(),
            DRAIN_TIMEOUT.as_secs()
        );
    }
}

fn http_builder(limits: &ConnectionConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Slow and idle heads are the connection's own deadline's to end (see `connections`), the same for
    // both protocols; hyper's HTTP/1 timer would add a second idle timeout for HTTP/1 alone.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(limits.http2_ping_interval()))
        .keep_alive_timeout(limits.http2_ping_timeout());
    builder
}

/// What every connection is served with.
struct PerConnection {
    acceptor: TlsAcceptor,
    app: Router,
    http: auto::Builder<TokioExecutor>,
    limits: ConnectionConfig,
}

async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    shared: Arc<PerConnection>,
    mut stop: watch::Receiver<bool>,
) {
    let limits = &shared.limits;
    let handshake = shared.acceptor.accept(tcp);
    let stream = match tokio::time::timeout(limits.handshake_timeout(), handshake).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let activity = RequestActivity::new(Instant::now());
    let service = {
        let activity = activity.clone();
        let app = shared.app.clone();
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request
                .extensions_mut()
                .insert(ConnectInfo::<SocketAddr>(peer));
            let in_progress = activity.begin();
            let answer = app.clone().call(request);
            async move {
                let answer = answer.await;
                drop(in_progress);
                answer
            }
        })
    };
    let connection = shared.http.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let grace = loop {
        let deadline =
            activity.idle_deadline(limits.first_request_timeout(), limits.idle_timeout());
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                // Freed before the socket is dropped (with `connection`, below).
                drop(slot);
                return;
            }
            () = sleep_until(deadline) => {
                // A request may have started since the deadline was read.
                let still = activity.idle_deadline(limits.first_request_timeout(), limits.idle_timeout());
                if still.is_some_and(|at| at <= Instant::now()) {
                    tracing::debug!(%peer, "closing an idle connection");
                    break CLOSE_GRACE;
                }
            }
            () = activity.went_idle() => {}
            _ = stop.changed() => break DRAIN_TIMEOUT,
        }
    };
    connection.as_mut().graceful_shutdown();
    match tokio::time::timeout(grace, connection.as_mut()).await {
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "connection ended with an error"),
        Ok(Ok(())) => {}
        Err(_) => tracing::debug!(%peer, "connection did not close in time and was dropped"),
    }
    drop(slot);
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
