//! The HTTPS listener against clients that hold connections without using them (issue 13): silent TLS
//! connections, idle HTTP/1.1 and HTTP/2 keep-alive connections and slow bodies end within their
//! timeouts while `/health` keeps answering, and connections over the per-address cap are closed at once
//! with one log line for the whole burst.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context as _, Result};
use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Frame};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use twofold_tests::Daemon;

/// A shared 2-core machine may be busy: a connection due to close after T must be closed by T + SLACK.
const SLACK: Duration = Duration::from_secs(3);

/// `[api.connections]` with short timeouts, so that these tests take seconds.
fn connections(first_request: u64, idle: u64, body: u64, per_address: u32) -> String {
    format!(
        "\n[api.connections]\nfirst_request_timeout_seconds = {first_request}\nidle_timeout_seconds = {idle}\nbody_timeout_seconds = {body}\nmax_per_address = {per_address}\n"
    )
}

async fn tls_connect(daemon: &Daemon, connector: &TlsConnector) -> Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(&daemon.api).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost")?;
    Ok(connector.connect(name, tcp).await?)
}

/// Reads until the daemon closes the connection (a clean EOF, or a close without TLS close_notify);
/// how long that took, or an error if it is still open after `limit`.
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    limit: Duration,
) -> Result<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        let read = tokio::time::timeout_at((started + limit).into(), stream.read(&mut buf))
            .await
            .map_err(|_| anyhow!("the connection was still open after {limit:?}"))?;
        match read {
            Ok(0) => return Ok(started.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::UnexpectedEof
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionAborted
                ) =>
            {
                return Ok(started.elapsed())
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Sockets for 500 connections plus the daemon's own need more than a soft limit of 1024 may give.
fn raise_descriptor_limit() -> Result<()> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_silent_tls_connections_are_closed_while_health_answers() -> Result<()> {
    const SILENT: usize = 500;
    raise_descriptor_limit()?;
    let first_request = Duration::from_secs(2);
    let daemon = Daemon::start(&connections(2, 2, 2, 1000))?;
    let connector = daemon.tls_connector(&[b"h2", b"http/1.1"])?;
    let api = daemon.api_client()?;

    let mut silent = tokio::task::JoinSet::new();
    for _ in 0..SILENT {
        let api_addr = daemon.api.clone();
        let connector = connector.clone();
        let name = rustls::pki_types::ServerName::try_from("localhost")?;
        silent.spawn(async move {
            let tcp = TcpStream::connect(&api_addr).await?;
            let mut stream = connector.connect(name, tcp).await?;
            closed_within(&mut stream, first_request + SLACK).await
        });
    }
    // /health, from a client of its own, every 250 ms until the last silent connection is closed.
    let mut health_checks = 0;
    let mut closed_after = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    while !silent.is_empty() {
        tokio::select! {
            done = silent.join_next() => {
                if let Some(done) = done {
                    closed_after.push(done??);
                }
            }
            _ = tick.tick() => {
                let answer = tokio::time::timeout(Duration::from_secs(2), api.get("/health"))
                    .await
                    .context("/health did not answer within 2 s")??;
                ensure!(answer.status == 200, "/health answered {}", answer.raw);
                health_checks += 1;
            }
        }
    }
    assert_eq!(closed_after.len(), SILENT);
    let earliest = closed_after.iter().min().copied().unwrap_or_default();
    let latest = closed_after.iter().max().copied().unwrap_or_default();
    eprintln!(
        "{SILENT} silent connections closed {earliest:?} to {latest:?} after their handshakes; /health answered {health_checks} times meanwhile"
    );
    // The client notes a handshake's end when its task next runs, which on a busy machine can be a
    // little after the daemon's.
    assert!(
        earliest + Duration::from_millis(250) >= first_request,
        "a connection was closed {earliest:?} after its handshake, before the first-request timeout"
    );
    assert!(
        health_checks >= 8,
        "only {health_checks} /health checks ran"
    );
    Ok(())
}

/// The h2 client connection ends when the daemon closes it; checks that this happens `idle` after
/// `last_answer`, not before and not much later.
/// Checks a `/health` answer and reads its body, so that the connection is idle again.
async fn health_answered(answer: hyper::Response<hyper::body::Incoming>) -> Result<()> {
    ensure!(
        answer.status() == 200,
        "/health answered {}",
        answer.status()
    );
    answer.into_body().collect().await?;
    Ok(())
}

async fn assert_closed_after_idle(
    connection: tokio::task::JoinHandle<std::result::Result<(), hyper::Error>>,
    last_answer: Instant,
    idle: Duration,
) -> Result<()> {
    tokio::time::timeout(idle + SLACK, connection)
        .await
        .map_err(|_| {
            anyhow!(
                "the idle connection was still open after {:?}",
                idle + SLACK
            )
        })???;
    let closed_after = last_answer.elapsed();
    // The daemon starts counting when its handler finishes, a little before the client has the answer.
    assert!(
        closed_after + Duration::from_millis(250) >= idle,
        "closed {closed_after:?} after the last answer, before the idle timeout"
    );
    eprintln!("closed {closed_after:?} after the last answer (idle timeout {idle:?})");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_is_closed_once_idle_and_kept_while_used() -> Result<()> {
    let idle = Duration::from_secs(2);
    let daemon = Daemon::start(&connections(10, 2, 2, 256))?;
    let stream = tls_connect(&daemon, &daemon.tls_connector(&[b"h2"])?).await?;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    let connection = tokio::spawn(connection);
    // A request every 500 ms for twice the idle timeout: a connection in use stays open.
    let mut last_answer = Instant::now();
    for _ in 0..8 {
        let request = hyper::Request::get(format!("https://{}/health", daemon.api))
            .body(Empty::<Bytes>::new())?;
        sender.ready().await?;
        health_answered(sender.send_request(request).await?).await?;
        last_answer = Instant::now();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_closed_after_idle(connection, last_answer, idle).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_keep_alive_connection_is_closed_once_idle() -> Result<()> {
    let idle = Duration::from_secs(2);
    let daemon = Daemon::start(&connections(10, 2, 2, 256))?;
    let stream = tls_connect(&daemon, &daemon.tls_connector(&[b"http/1.1"])?).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let connection = tokio::spawn(connection);
    let mut last_answer = Instant::now();
    for _ in 0..3 {
        let request = hyper::Request::get("/health")
            .header("host", "localhost")
            .body(Empty::<Bytes>::new())?;
        sender.ready().await?;
        health_answered(sender.send_request(request).await?).await?;
        last_answer = Instant::now();
    }
    assert_closed_after_idle(connection, last_answer, idle).await
}

/// The status and JSON body of one HTTP/1.1 answer read off `stream`, with its Content-Length.
async fn read_http1_answer<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<(u16, Value)> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).into_owned();
            let status: u16 = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .with_context(|| format!("no status in {head:?}"))?;
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .with_context(|| format!("no content-length in {head:?}"))?;
            if raw.len() >= end + 4 + length {
                let body = serde_json::from_slice(&raw[end + 4..end + 4 + length])?;
                return Ok((status, body));
            }
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            bail!(
                "closed before a whole answer: {:?}",
                String::from_utf8_lossy(&raw)
            );
        }
        raw.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_http1_body_is_answered_408_at_the_body_timeout() -> Result<()> {
    let body_timeout = Duration::from_secs(2);
    let daemon = Daemon::start(&connections(10, 10, 2, 256))?;
    let key = daemon.admin()?.api_key("slow-body")?;
    let stream = tls_connect(&daemon, &daemon.tls_connector(&[b"http/1.1"])?).await?;
    let (mut reader, mut writer) = tokio::io::split(stream);
    let head = format!(
        "POST /api/v1/verify HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: 200\r\n\r\n"
    );
    writer.write_all(head.as_bytes()).await?;
    writer.flush().await?;
    let sent_head = Instant::now();
    // One byte every 250 ms: a timeout that restarts with every byte would never fire. 100 bytes take
    // 25 s, far beyond the body timeout, and still short of the promised 200.
    let trickle = tokio::spawn(async move {
        writer.write_all(b"{").await?;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            writer.write_all(b" ").await?;
            writer.flush().await?;
        }
        Ok::<_, std::io::Error>(())
    });
    let (status, body) = tokio::time::timeout(body_timeout + SLACK, read_http1_answer(&mut reader))
        .await
        .map_err(|_| anyhow!("no answer {:?} after the head", body_timeout + SLACK))??;
    let answered_after = sent_head.elapsed();
    trickle.abort();
    eprintln!(
        "answered {status} {answered_after:?} after the head (body timeout {body_timeout:?})"
    );
    assert_eq!(status, 408, "{body}");
    assert_eq!(body["error"]["code"], "body_timeout", "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert!(
        answered_after >= body_timeout,
        "answered {answered_after:?} after the head, before the body timeout"
    );
    // The body was not read to its end, so the connection cannot carry another request: it closes.
    closed_within(&mut reader, SLACK).await?;
    Ok(())
}

/// A request body that never sends a byte.
struct Stalled;

impl hyper::body::Body for Stalled {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, Infallible>>> {
        Poll::Pending
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_http2_body_is_answered_408_at_the_body_timeout() -> Result<()> {
    let body_timeout = Duration::from_secs(2);
    let daemon = Daemon::start(&connections(10, 10, 2, 256))?;
    let key = daemon.admin()?.api_key("stalled-body")?;
    let stream = tls_connect(&daemon, &daemon.tls_connector(&[b"h2"])?).await?;
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = hyper::Request::post(format!("https://{}/api/v1/verify", daemon.api))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Stalled)?;
    let sent = Instant::now();
    let answer = tokio::time::timeout(body_timeout + SLACK, sender.send_request(request))
        .await
        .map_err(|_| anyhow!("no answer {:?} after the headers", body_timeout + SLACK))??;
    let answered_after = sent.elapsed();
    let status = answer.status();
    eprintln!(
        "answered {status} {answered_after:?} after the headers (body timeout {body_timeout:?})"
    );
    let body: Value = serde_json::from_slice(&answer.into_body().collect().await?.to_bytes())?;
    assert_eq!(status, 408, "{body}");
    assert_eq!(body["error"]["code"], "body_timeout", "{body}");
    assert!(
        answered_after >= body_timeout,
        "answered {answered_after:?} after the headers, before the body timeout"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_per_address_cap_are_closed_at_once_and_logged_once() -> Result<()> {
    const CAP: usize = 5;
    const BURST: usize = 30;
    let daemon = Daemon::start(&connections(60, 60, 2, CAP as u32))?;
    let connector = daemon.tls_connector(&[b"http/1.1"])?;
    let mut held = Vec::new();
    for _ in 0..CAP {
        held.push(tls_connect(&daemon, &connector).await?);
    }
    for attempt in 0..BURST {
        let started = Instant::now();
        let outcome =
            tokio::time::timeout(Duration::from_secs(2), tls_connect(&daemon, &connector)).await;
        match outcome {
            Ok(Err(_)) => {}
            Ok(Ok(_)) => bail!(
                "connection {} over the cap of {CAP} was served",
                attempt + 1
            ),
            Err(_) => bail!("connection {} over the cap was left hanging", attempt + 1),
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "connection {} over the cap took {:?} to be closed",
            attempt + 1,
            started.elapsed()
        );
    }
    let log = daemon.log()?;
    let cap_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("connection cap reached"))
        .collect();
    assert_eq!(
        cap_lines.len(),
        1,
        "one line for {BURST} refusals: {cap_lines:#?}"
    );
    assert!(cap_lines[0].contains("127.0.0.1"), "{}", cap_lines[0]);

    // Closing the held connections frees their places at once: a fresh connection is served.
    for mut stream in held {
        stream.shutdown().await?;
        closed_within(&mut stream, SLACK).await?;
    }
    let answer = daemon.api_client()?.get("/health").await?;
    assert_eq!(answer.status, 200, "{}", answer.raw);
    Ok(())
}
