//! `twofold-loadgen`: the verify benchmark, against the real `twofoldd` binary.
//!
//! One run, one daemon (started through the test harness, next to this executable):
//! 1. enrolls `--users` users (admin socket `user_create`, then API enroll + confirm with the code of the
//!    previous 30 s step, computed here with totp-rs);
//! 2. measures `GET /health` as a baseline for the HTTPS stack;
//! 3. measures `POST /api/v1/verify` with a planned mix of right codes, wrong codes and replays;
//! 4. measures privacyIDEA's `POST /validate/check` (form-encoded `user`, `pass`, `client`, the key bare
//!    in `Authorization`, as privacyIDEA clients send it) with the same plan, in a later step, so both
//!    servers can be driven by the same load and compared (`--no-validate-check` skips it).
//!
//! Both phases use the same `--concurrency` keep-alive connections (one client, so one pool, per worker),
//! run for `--seconds` or `--max-requests`, whichever comes first, and target 127.0.0.1 only.
//!
//! The verify plan, per user, by how many times the round-robin has come round to that user:
//! right code for step T-1, wrong, right for T, wrong, right for T+1, then wrong codes and replays of
//! T-1..T+1 alternately. T is the step the verify phase runs in; the phase is started at the beginning
//! of a step so that it ends before that step does. A wrong code or a replay that is accepted, an answer
//! that is not 200, or a transport error makes the run fail (exit code 1).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::HeaderValue;
use hyper::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use twofold_tests::{Admin, Api, Daemon};
use twofold_wire::api::{RejectReason, VerifyResult};

const PERIOD: u64 = 30;

/// Lockout rules high enough that the benchmark measures verification, not refusals. Every user also
/// sends its own `client_ip`, so the address counters are per user, not one shared 127.0.0.1 counter.
const BENCH_CONFIG: &str = "\n[privacyidea]\nenabled = true\n\n[lockout.user]\nmax_failures = 100\ndelay_after = 100\nmax_delay_seconds = 1\nlock_seconds = 0\nforget_after_seconds = 0\n\n[lockout.address]\nmax_failures = 100\ndelay_after = 100\nmax_delay_seconds = 1\nlock_seconds = 1\nforget_after_seconds = 1\n";

#[derive(Parser, Debug)]
#[command(
    name = "twofold-loadgen",
    about = "Verify benchmark against the real twofoldd (build it first: cargo build --release --workspace --bins)"
)]
struct Cli {
    /// Users to enroll before measuring. Each takes about 105 checked codes before its lockout (100
    /// failures) answers `locked` without checking anything: 4,000 users cover 42,000 checked codes a
    /// second for 10 s.
    #[arg(long, default_value_t = 4000)]
    users: usize,
    /// Concurrent keep-alive HTTPS connections (one request in flight on each).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Length of each measured phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Health and verify each run in this many slices, alternating, so that both meet the same machine:
    /// a shared virtual machine's speed drifts by a fifth between one 10 s phase and the next.
    #[arg(long, default_value_t = 5)]
    slices: u32,
    /// Upper bound on requests per phase (health reaches 500,000 in 7 s on an idle 2-core machine).
    #[arg(long, default_value_t = 2_000_000)]
    max_requests: u64,
    /// Enrollments in flight at once.
    #[arg(long, default_value_t = 8)]
    enroll_concurrency: usize,
    /// The daemon's log filter. `info` is the production default (admin actions and locks; each
    /// verification is audited in the store and logged only at `debug`).
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Print the results as JSON instead of markdown tables.
    #[arg(long)]
    json: bool,
    /// Skip the privacyIDEA `/validate/check` phase (it waits for fresh TOTP steps, about a minute).
    #[arg(long)]
    no_validate_check: bool,
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

#[tokio::main]
async fn main() -> Result<ExitCode> {
    let cli = Cli::parse();
    if cli.users == 0 || cli.concurrency == 0 || cli.enroll_concurrency == 0 || cli.seconds == 0 {
        bail!("--users, --concurrency, --enroll-concurrency and --seconds must be at least 1");
    }
    if cli.users < 4 * cli.concurrency {
        eprintln!(
            "warning: with fewer than 4 users per connection, requests for one user may overtake each other and right codes show up as replays"
        );
    }

    let mut daemon =
        Daemon::start(BENCH_CONFIG).context("starting twofoldd through the harness")?;
    set_log_level(&mut daemon, &cli.log_level)?;
    let daemon_pid = find_daemon_pid(&daemon.config_path);
    eprintln!(
        "twofoldd at https://{} (pid {})",
        daemon.api,
        daemon_pid.map_or("?".into(), |p| p.to_string())
    );
    let ca = daemon.data_dir().join("tls/cert.pem");
    let mut admin = daemon.admin()?;
    let api_key = admin.api_key("loadgen")?;
    drop(admin);

    // ---- enrollment ----
    let api = daemon.api_client()?.with_key(&api_key);
    let started = Instant::now();
    let enrolled = enroll_all(&daemon, &api, cli.users, cli.enroll_concurrency).await?;
    let enroll_seconds = started.elapsed().as_secs_f64();
    let last_confirm_step = enrolled.iter().map(|u| u.confirm_step).max().unwrap_or(0);
    eprintln!(
        "enrolled {} users in {enroll_seconds:.1} s ({:.0} users/s, {} at a time)",
        enrolled.len(),
        enrolled.len() as f64 / enroll_seconds,
        cli.enroll_concurrency
    );
    // Its connections would blur the count of the benchmark's own below.
    drop(api);

    // ---- connections ----
    let tls = Arc::new(tls_config(&ca)?);
    let base = format!("https://{}", daemon.api);
    let clients: Vec<HttpsClient> = (0..cli.concurrency)
        .map(|_| https_client(tls.clone()))
        .collect();
    let health_uri: Uri = format!("{base}/health").parse()?;
    let verify_uri: Uri = format!("{base}/api/v1/verify").parse()?;
    let validate_check_uri: Uri = format!("{base}/validate/check").parse()?;
    warm_up(&clients, &health_uri).await?;
    let port = daemon
        .api
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(0);
    let connections_after_warm_up = established_connections(port);

    let probe = Probe { pid: daemon_pid };

    // ---- health and verify, in alternating slices inside one 30 s step ----
    let step = wait_for_fresh_step(last_confirm_step + 2, 2 * cli.seconds).await;
    let users: Vec<PlannedUser> = enrolled
        .iter()
        .map(|u| u.plan(step))
        .collect::<Result<_>>()?;
    let verify_plan = Arc::new(Plan::verify(
        verify_uri,
        &format!("Bearer {api_key}"),
        &users,
        step,
        Protocol::Native,
    )?);
    let health_plan = Arc::new(Plan::Health { uri: health_uri });
    let slices = cli.slices.max(1);
    let slice = Limits {
        seconds: cli.seconds as f64 / f64::from(slices),
        max_requests: cli.max_requests / u64::from(slices),
    };
    eprintln!(
        "health and verify: {} connections, {slices} slices of {:.1} s (or {} requests) each, alternating",
        clients.len(),
        slice.seconds,
        slice.max_requests
    );
    // One request counter per plan across its slices: the verify plan goes on where it stopped.
    let (health_next, verify_next) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (mut health, mut verify) = (PhaseResult::empty("health"), PhaseResult::empty("verify"));
    let mut connections_after_health = None;
    for _ in 0..slices {
        health.absorb(run_phase(&clients, &health_plan, &health_next, slice, &probe).await?);
        connections_after_health = established_connections(port);
        verify.absorb(run_phase(&clients, &verify_plan, &verify_next, slice, &probe).await?);
    }
    health.latencies_us.sort_unstable();
    verify.latencies_us.sort_unstable();
    let connections_after_verify = established_connections(port);
    let verify_ended_in_step = unix_time_f64() as u64 / PERIOD == step;

    // ---- privacyIDEA's /validate/check: the same plan in a step whose T-1 is past the verify phase's T+1 ----
    let validate_check = if cli.no_validate_check {
        None
    } else {
        let step = wait_for_fresh_step(step + 3, cli.seconds).await;
        let users: Vec<PlannedUser> = enrolled
            .iter()
            .map(|u| u.plan(step))
            .collect::<Result<_>>()?;
        let plan = Arc::new(Plan::verify(
            validate_check_uri,
            &api_key,
            &users,
            step,
            Protocol::PrivacyIdea,
        )?);
        let mut phase = PhaseResult::empty("validate_check");
        let limits = Limits {
            seconds: cli.seconds as f64,
            max_requests: cli.max_requests,
        };
        eprintln!(
            "validate_check: {} connections, {} s or {} requests",
            clients.len(),
            cli.seconds,
            cli.max_requests
        );
        phase.absorb(
            run_phase(
                &clients,
                &plan,
                &Arc::new(AtomicU64::new(0)),
                limits,
                &probe,
            )
            .await?,
        );
        phase.latencies_us.sort_unstable();
        Some((phase, unix_time_f64() as u64 / PERIOD == step))
    };

    let report = Report {
        enroll_users: enrolled.len(),
        enroll_seconds,
        enroll_concurrency: cli.enroll_concurrency,
        concurrency: cli.concurrency,
        connections: [
            connections_after_warm_up,
            connections_after_health,
            connections_after_verify,
        ],
        health,
        verify,
        verify_ended_in_step,
        validate_check,
        log_level: cli.log_level.clone(),
        store_bytes: dir_size(&daemon.data_dir().join("store")),
    };
    let failures = report.failures();
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report.to_json(&failures))?
        );
    } else {
        print!("{}", report.markdown(&failures));
    }
    drop(daemon);
    if failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        for f in &failures {
            eprintln!("FAIL: {f}");
        }
        Ok(ExitCode::FAILURE)
    }
}

/// Makes the daemon log at `level`, restarting it if its config said otherwise. A harness config that
/// fixes `[log] level` cannot be overridden by an appended table, so that line is edited in place.
fn set_log_level(daemon: &mut Daemon, level: &str) -> Result<()> {
    if level.is_empty()
        || !level
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_=,:".contains(c))
    {
        bail!(
            "--log-level {level:?}: expected a tracing filter such as info or twofoldd=debug,warn"
        );
    }
    let text = std::fs::read_to_string(&daemon.config_path)?;
    let wanted = format!("level = \"{level}\"");
    let mut in_log = false;
    let mut found = false;
    let mut lines: Vec<String> = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_log = t == "[log]";
        } else if in_log && t.split('=').next().is_some_and(|k| k.trim() == "level") {
            found = true;
            lines.push(wanted.clone());
            continue;
        }
        lines.push(line.to_owned());
    }
    let mut changed = lines.join("\n") + "\n";
    if !found {
        if level == "info" {
            // The daemon's default.
            return Ok(());
        }
        changed.push_str(&format!("\n[log]\n{wanted}\n"));
    }
    if changed.trim_end() == text.trim_end() {
        return Ok(());
    }
    std::fs::write(&daemon.config_path, changed)?;
    daemon.restart()
}

// ---- enrollment ----

struct EnrolledUser {
    name: String,
    client_ip: String,
    totp: totp_rs::Totp,
    /// The step whose code confirmed the device: that step and older ones are used up.
    confirm_step: u64,
}

/// What the verify phase sends for one user, worked out once before the clock starts.
struct PlannedUser {
    name: String,
    client_ip: String,
    /// Codes for steps T-1, T, T+1.
    right: [String; 3],
    /// A code that matches no step from T-2 to T+2, so no step the daemon could accept during the phase.
    wrong: String,
}

impl EnrolledUser {
    fn code(&self, step: u64) -> String {
        self.totp.generate(step * PERIOD).to_string()
    }

    fn plan(&self, step: u64) -> Result<PlannedUser> {
        let right = [self.code(step - 1), self.code(step), self.code(step + 1)];
        let near: Vec<String> = (step - 2..=step + 2).map(|s| self.code(s)).collect();
        let mut candidate: u32 = right[1].parse::<u32>()?.wrapping_add(500_009) % 1_000_000;
        let wrong = loop {
            let text = format!("{candidate:06}");
            if !near.contains(&text) {
                break text;
            }
            candidate = (candidate + 1) % 1_000_000;
        };
        Ok(PlannedUser {
            name: self.name.clone(),
            client_ip: self.client_ip.clone(),
            right,
            wrong,
        })
    }
}

async fn enroll_all(
    daemon: &Daemon,
    api: &Api,
    users: usize,
    at_once: usize,
) -> Result<Vec<EnrolledUser>> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..at_once.min(users) {
        let admin = daemon.admin()?;
        let api = api.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut admin = admin;
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= users {
                    return Ok::<_, anyhow::Error>(done);
                }
                let (back, user) = enroll_one(admin, &api, i).await?;
                admin = back;
                done.push(user);
            }
        }));
    }
    let mut all = Vec::with_capacity(users);
    for task in tasks {
        all.extend(task.await??);
    }
    all.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(all)
}

async fn enroll_one(admin: Admin, api: &Api, i: usize) -> Result<(Admin, EnrolledUser)> {
    let name = format!("load{i:06}");
    let (admin, created) = tokio::task::spawn_blocking({
        let name = name.clone();
        move || {
            let mut admin = admin;
            let created = admin.create_user(&name);
            (admin, created)
        }
    })
    .await?;
    created?;
    let started = api
        .post(
            &format!("/api/v1/users/{name}/totp"),
            &json!({"label": "loadgen"}),
        )
        .await?;
    if started.status != 201 {
        bail!(
            "enrolling {name} answered {}: {}",
            started.status,
            started.raw
        );
    }
    let secret = started.body["secret"]
        .as_str()
        .ok_or_else(|| anyhow!("no secret in {}", started.raw))?;
    let device = started.body["device"]["id"]
        .as_str()
        .ok_or_else(|| anyhow!("no device in {}", started.raw))?;
    let secret = data_encoding::BASE32_NOPAD
        .decode(secret.as_bytes())
        .context("the secret is not base32")?;
    let totp = totp_rs::Builder::new()
        .with_secret(secret)
        .with_skew(0)
        .build()?;
    let confirm = format!("/api/v1/users/{name}/totp/{device}/confirm");
    // The previous step's code, so the current and next steps stay free. Across a step boundary the code
    // can fall out of the window between computing and checking it: then once more with a fresh one.
    let mut attempt = 0;
    let confirm_step = loop {
        let step = unix_time_f64() as u64 / PERIOD - 1;
        let code = totp.generate(step * PERIOD).to_string();
        let answer = api.post(&confirm, &json!({"code": code})).await?;
        if answer.status == 200 {
            break step;
        }
        attempt += 1;
        if attempt == 2 {
            bail!(
                "confirming {name} answered {}: {}",
                answer.status,
                answer.raw
            );
        }
    };
    let client_ip = format!("10.{}.{}.{}", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff);
    Ok((
        admin,
        EnrolledUser {
            name,
            client_ip,
            totp,
            confirm_step,
        },
    ))
}

// ---- HTTPS ----

fn tls_config(ca: &Path) -> Result<rustls::ClientConfig> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pem = std::fs::read(ca).with_context(|| ca.display().to_string())?;
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert?)?;
    }
    Ok(rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// One client per worker, so each has its own pool and so its own connection.
fn https_client(tls: Arc<rustls::ClientConfig>) -> HttpsClient {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((*tls).clone())
        .https_only()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1)
        .build(connector)
}

/// Opens every connection (TCP + TLS handshake) before any clock starts.
async fn warm_up(clients: &[HttpsClient], uri: &Uri) -> Result<()> {
    let mut tasks = Vec::new();
    for client in clients {
        let (client, uri) = (client.clone(), uri.clone());
        tasks.push(tokio::spawn(async move {
            let request = hyper::Request::get(uri).body(Full::new(Bytes::new()))?;
            let response = client.request(request).await?;
            let status = response.status();
            response.into_body().collect().await?;
            if status != 200 {
                bail!("warm-up GET /health answered {status}");
            }
            Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

// ---- phases ----

enum Plan {
    Health {
        uri: Uri,
    },
    Verify {
        uri: Uri,
        auth: HeaderValue,
        /// Per user: the request bodies for the codes of steps T-1, T, T+1 and the wrong code, built
        /// before the clock starts so that the phase measures the daemon, not this program's formatting.
        bodies: Vec<[Bytes; 4]>,
        step: u64,
        protocol: Protocol,
    },
}

impl Plan {
    fn verify(
        uri: Uri,
        auth: &str,
        users: &[PlannedUser],
        step: u64,
        protocol: Protocol,
    ) -> Result<Plan> {
        let bodies = users
            .iter()
            .map(|user| {
                let [a, b, c] = &user.right;
                [a, b, c, &user.wrong].map(|code| Bytes::from(protocol.body(user, code)))
            })
            .collect();
        Ok(Plan::Verify {
            uri,
            auth: HeaderValue::from_str(auth)?,
            bodies,
            step,
            protocol,
        })
    }
}

/// Which API the verify plan speaks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// `POST /api/v1/verify`, JSON.
    Native,
    /// privacyIDEA's `POST /validate/check`, form-encoded.
    PrivacyIdea,
}

impl Protocol {
    fn body(self, user: &PlannedUser, code: &str) -> String {
        match self {
            Protocol::Native => format!(
                r#"{{"user":"{}","code":"{code}","client_ip":"{}"}}"#,
                user.name, user.client_ip
            ),
            // Names and addresses here need no percent-encoding (load000042, 10.x.y.z).
            Protocol::PrivacyIdea => {
                format!("user={}&pass={code}&client={}", user.name, user.client_ip)
            }
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Protocol::Native => "application/json",
            Protocol::PrivacyIdea => "application/x-www-form-urlencoded",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Sent {
    Health,
    RightCode,
    WrongCode,
    Replay,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Got {
    Ok,
    Accept,
    InvalidCode,
    Replayed,
    RateLimited,
    Locked,
    RejectWithoutReason,
    Status(u16),
    BadBody,
    TransportError,
}

impl Got {
    fn name(self) -> String {
        match self {
            Got::Ok => "ok".into(),
            Got::Accept => "accept".into(),
            Got::InvalidCode => "reject(invalid_code)".into(),
            Got::Replayed => "reject(replayed)".into(),
            Got::RateLimited => "reject(rate_limited)".into(),
            Got::Locked => "reject(locked)".into(),
            Got::RejectWithoutReason => "reject(no reason)".into(),
            Got::Status(s) => format!("HTTP {s}"),
            Got::BadBody => "unreadable body".into(),
            Got::TransportError => "transport error".into(),
        }
    }
}

impl Sent {
    fn name(self) -> &'static str {
        match self {
            Sent::Health => "GET /health",
            Sent::RightCode => "right code",
            Sent::WrongCode => "wrong code",
            Sent::Replay => "replay",
        }
    }
}

impl Plan {
    /// Request number `n` of the phase.
    fn request(&self, n: u64) -> Result<(hyper::Request<Full<Bytes>>, Sent)> {
        match self {
            Plan::Health { uri } => Ok((
                hyper::Request::get(uri.clone()).body(Full::new(Bytes::new()))?,
                Sent::Health,
            )),
            Plan::Verify {
                uri,
                auth,
                bodies,
                protocol,
                ..
            } => {
                let count = bodies.len() as u64;
                let user = &bodies[usize::try_from(n % count)?];
                let round = n / count;
                let (body, sent) = match round {
                    0 => (&user[0], Sent::RightCode),
                    2 => (&user[1], Sent::RightCode),
                    4 => (&user[2], Sent::RightCode),
                    r if r % 2 == 1 => (&user[3], Sent::WrongCode),
                    r => (&user[usize::try_from((r / 2) % 3)?], Sent::Replay),
                };
                let request = hyper::Request::post(uri.clone())
                    .header(hyper::header::AUTHORIZATION, auth.clone())
                    .header(hyper::header::CONTENT_TYPE, protocol.content_type())
                    .body(Full::new(body.clone()))?;
                Ok((request, sent))
            }
        }
    }
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    outcomes: BTreeMap<(Sent, Got), u64>,
    first_error: Option<String>,
}

struct PhaseResult {
    name: &'static str,
    requests: u64,
    seconds: f64,
    latencies_us: Vec<u32>,
    outcomes: BTreeMap<(Sent, Got), u64>,
    first_error: Option<String>,
    daemon_cpu_seconds: Option<f64>,
    loadgen_cpu_seconds: Option<f64>,
    daemon_write_bytes: Option<u64>,
    machine_cpu: Option<MachineCpu>,
    verify_step: Option<u64>,
}

impl PhaseResult {
    fn empty(name: &'static str) -> PhaseResult {
        PhaseResult {
            name,
            requests: 0,
            seconds: 0.0,
            latencies_us: Vec::new(),
            outcomes: BTreeMap::new(),
            first_error: None,
            daemon_cpu_seconds: Some(0.0),
            loadgen_cpu_seconds: Some(0.0),
            daemon_write_bytes: Some(0),
            machine_cpu: Some(MachineCpu {
                processes: 0.0,
                interrupts: 0.0,
            }),
            verify_step: None,
        }
    }

    /// Adds a slice of the same phase (latencies are sorted by the caller once all are in).
    fn absorb(&mut self, slice: PhaseResult) {
        fn sum<T: std::ops::Add<Output = T>>(a: Option<T>, b: Option<T>) -> Option<T> {
            a.zip(b).map(|(a, b)| a + b)
        }
        self.requests += slice.requests;
        self.seconds += slice.seconds;
        self.latencies_us.extend(slice.latencies_us);
        for (key, n) in slice.outcomes {
            *self.outcomes.entry(key).or_default() += n;
        }
        self.first_error = self.first_error.take().or(slice.first_error);
        self.daemon_cpu_seconds = sum(self.daemon_cpu_seconds, slice.daemon_cpu_seconds);
        self.loadgen_cpu_seconds = sum(self.loadgen_cpu_seconds, slice.loadgen_cpu_seconds);
        self.daemon_write_bytes = sum(self.daemon_write_bytes, slice.daemon_write_bytes);
        self.machine_cpu = self
            .machine_cpu
            .zip(slice.machine_cpu)
            .map(|(a, b)| MachineCpu {
                processes: a.processes + b.processes,
                interrupts: a.interrupts + b.interrupts,
            });
        self.verify_step = self.verify_step.or(slice.verify_step);
    }

    fn rps(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    /// Nearest-rank percentile, in milliseconds.
    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * self.latencies_us.len() as f64).ceil() as usize;
        let index = rank.clamp(1, self.latencies_us.len()) - 1;
        f64::from(self.latencies_us[index]) / 1000.0
    }

    /// Requests whose code was checked: all but the lockout's `locked` and `rate_limited` answers,
    /// which are cheap and would flatter the figure once the plan's users run out of failures.
    fn checked_rps(&self) -> f64 {
        let refused = self.count(None, Got::Locked) + self.count(None, Got::RateLimited);
        self.requests.saturating_sub(refused) as f64 / self.seconds
    }

    fn max_ms(&self) -> f64 {
        self.latencies_us
            .last()
            .map_or(0.0, |&v| f64::from(v) / 1000.0)
    }

    fn per_request_us(&self, total_seconds: Option<f64>) -> Option<f64> {
        total_seconds
            .filter(|_| self.requests > 0)
            .map(|s| s * 1e6 / self.requests as f64)
    }

    /// Cores kept busy by other processes during the phase, on average.
    fn other_cores(&self) -> Option<f64> {
        let ours = self.daemon_cpu_seconds? + self.loadgen_cpu_seconds?;
        Some(((self.machine_cpu?.processes - ours) / self.seconds).max(0.0))
    }

    /// Cores spent in interrupts and softirqs (loopback TCP is mostly softirq work), on average.
    fn interrupt_cores(&self) -> Option<f64> {
        Some(self.machine_cpu?.interrupts / self.seconds)
    }

    fn count(&self, sent: Option<Sent>, got: Got) -> u64 {
        self.outcomes
            .iter()
            .filter(|((s, g), _)| *g == got && sent.is_none_or(|want| *s == want))
            .map(|(_, n)| n)
            .sum()
    }
}

/// How long one slice of a phase runs: `seconds` or `max_requests`, whichever comes first.
#[derive(Clone, Copy)]
struct Limits {
    seconds: f64,
    max_requests: u64,
}

async fn run_phase(
    clients: &[HttpsClient],
    plan: &Arc<Plan>,
    next: &Arc<AtomicU64>,
    limits: Limits,
    probe: &Probe,
) -> Result<PhaseResult> {
    let before = probe.sample();
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(limits.seconds);
    let first = next.load(Ordering::Relaxed);
    let end = first.saturating_add(limits.max_requests);
    let per_worker =
        usize::try_from(limits.max_requests / clients.len() as u64 + 1).unwrap_or(1 << 20);
    let mut tasks = Vec::new();
    for client in clients {
        let (client, plan, next) = (client.clone(), plan.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally {
                latencies_us: Vec::with_capacity(per_worker.min(1 << 16)),
                ..Tally::default()
            };
            loop {
                if Instant::now() >= deadline {
                    break;
                }
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= end {
                    break;
                }
                let (request, sent) = plan.request(n)?;
                let sent_at = Instant::now();
                let answer = send(&client, request).await;
                let elapsed = u32::try_from(sent_at.elapsed().as_micros()).unwrap_or(u32::MAX);
                tally.latencies_us.push(elapsed);
                let got = match answer {
                    Ok((status, body)) => classify(&plan, sent, status, &body),
                    Err(e) => {
                        tally.first_error.get_or_insert_with(|| format!("{e:#}"));
                        Got::TransportError
                    }
                };
                *tally.outcomes.entry((sent, got)).or_default() += 1;
            }
            Ok::<_, anyhow::Error>(tally)
        }));
    }
    let mut tallies = Vec::new();
    for task in tasks {
        tallies.push(task.await??);
    }
    let seconds = started.elapsed().as_secs_f64();
    let after = probe.sample();
    // Numbers taken by workers that stopped at the deadline were never sent: the next slice reuses them.
    let sent: u64 = tallies.iter().map(|t| t.latencies_us.len() as u64).sum();
    next.store(first + sent, Ordering::Relaxed);
    let mut result = PhaseResult::empty("");
    result.seconds = seconds;
    for tally in tallies {
        result.latencies_us.extend(tally.latencies_us);
        for (key, n) in tally.outcomes {
            *result.outcomes.entry(key).or_default() += n;
        }
        result.first_error = result.first_error.or(tally.first_error);
    }
    result.requests = result.latencies_us.len() as u64;
    result.daemon_cpu_seconds = before.daemon_cpu.zip(after.daemon_cpu).map(|(a, b)| b - a);
    result.loadgen_cpu_seconds = before.own_cpu.zip(after.own_cpu).map(|(a, b)| b - a);
    result.daemon_write_bytes = before
        .daemon_write_bytes
        .zip(after.daemon_write_bytes)
        .map(|(a, b)| b.saturating_sub(a));
    result.machine_cpu = before
        .machine_cpu
        .zip(after.machine_cpu)
        .map(|(a, b)| MachineCpu {
            processes: b.processes - a.processes,
            interrupts: b.interrupts - a.interrupts,
        });
    result.verify_step = match plan.as_ref() {
        Plan::Verify { step, .. } => Some(*step),
        Plan::Health { .. } => None,
    };
    Ok(result)
}

async fn send(client: &HttpsClient, request: hyper::Request<Full<Bytes>>) -> Result<(u16, Bytes)> {
    let response = client.request(request).await?;
    let status = response.status().as_u16();
    Ok((status, response.into_body().collect().await?.to_bytes()))
}

fn classify(plan: &Plan, sent: Sent, status: u16, body: &[u8]) -> Got {
    if status != 200 {
        return Got::Status(status);
    }
    if sent == Sent::Health {
        return match serde_json::from_slice::<twofold_wire::api::Health>(body) {
            Ok(h) if h.status == "ok" => Got::Ok,
            _ => Got::BadBody,
        };
    }
    if let Plan::Verify {
        protocol: Protocol::PrivacyIdea,
        ..
    } = plan
    {
        return classify_privacyidea(body);
    }
    match serde_json::from_slice::<Verdict>(body) {
        Ok(Verdict {
            result: VerifyResult::Accept,
            ..
        }) => Got::Accept,
        Ok(Verdict {
            reason: Some(reason),
            ..
        }) => match reason {
            RejectReason::InvalidCode => Got::InvalidCode,
            RejectReason::Replayed => Got::Replayed,
            RejectReason::RateLimited => Got::RateLimited,
            RejectReason::Locked => Got::Locked,
            // The load's users have 2FA: an `off` answer is as wrong as none, and plain verification
            // takes every factor.
            RejectReason::TwoFactorOff | RejectReason::FactorNotAllowed => Got::RejectWithoutReason,
        },
        Ok(_) => Got::RejectWithoutReason,
        Err(_) => Got::BadBody,
    }
}

/// The part of a `VerifyAnswer` the tally needs: decoding only these two fields keeps this program's
/// share of the shared CPU small.
#[derive(serde::Deserialize)]
struct Verdict {
    result: VerifyResult,
    #[serde(default)]
    reason: Option<RejectReason>,
}

/// privacyIDEA's envelope: `result.value` and `result.authentication`, the reason in `detail.message`.
fn classify_privacyidea(body: &[u8]) -> Got {
    let Ok(answer) = serde_json::from_slice::<Value>(body) else {
        return Got::BadBody;
    };
    let result = &answer["result"];
    if result["status"] != true {
        return Got::BadBody;
    }
    match (
        result["value"].as_bool(),
        result["authentication"].as_str(),
        answer["detail"]["message"].as_str(),
    ) {
        (Some(true), Some("ACCEPT"), _) => Got::Accept,
        (Some(false), Some("REJECT"), Some("wrong otp value")) => Got::InvalidCode,
        (Some(false), Some("REJECT"), Some("wrong otp value. previous otp used again")) => {
            Got::Replayed
        }
        (Some(false), Some("REJECT"), Some("Failcounter exceeded")) => Got::Locked,
        (Some(false), Some("REJECT"), Some(m)) if m.starts_with("Failcounter exceeded") => {
            Got::RateLimited
        }
        (Some(false), Some("REJECT"), _) => Got::RejectWithoutReason,
        _ => Got::BadBody,
    }
}

// ---- the clock ----

/// Wall-clock time, which TOTP codes are made of. The daemon reads the same clock.
#[allow(clippy::disallowed_methods)]
fn unix_time_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Waits until a step at least `min_step` has begun with room for the whole phase in it, and returns it.
/// T-1 stays in the window only while the step is T, so the phase must not cross a step boundary.
async fn wait_for_fresh_step(min_step: u64, seconds: u64) -> u64 {
    let room_needed = seconds as f64 + 2.0;
    if room_needed > PERIOD as f64 {
        eprintln!("warning: a {seconds} s phase does not fit in one 30 s step: right codes for T-1 may be refused late in the run");
    }
    loop {
        let now = unix_time_f64();
        let step = now as u64 / PERIOD;
        let left = ((step + 1) * PERIOD) as f64 - now;
        if step >= min_step
            && (left >= room_needed || room_needed > PERIOD as f64 && left > PERIOD as f64 - 1.0)
        {
            return step;
        }
        eprintln!(
            "waiting {left:.1} s for the next 30 s step, so the verify phase runs inside one step"
        );
        tokio::time::sleep(Duration::from_secs_f64(left + 0.05)).await;
    }
}

// ---- where the time goes: CPU and disk writes of both processes ----

struct Probe {
    pid: Option<u32>,
}

struct Sample {
    daemon_cpu: Option<f64>,
    own_cpu: Option<f64>,
    daemon_write_bytes: Option<u64>,
    machine_cpu: Option<MachineCpu>,
}

/// CPU seconds of the whole machine. What the processes used beyond the daemon and the load generator is
/// someone else's, and makes the figures worse than on a quiet machine.
#[derive(Clone, Copy)]
struct MachineCpu {
    /// user + nice + system: time charged to processes.
    processes: f64,
    /// irq + softirq: charged to no process.
    interrupts: f64,
}

impl Probe {
    fn sample(&self) -> Sample {
        Sample {
            daemon_cpu: self
                .pid
                .and_then(|p| cpu_seconds(&format!("/proc/{p}/stat"))),
            own_cpu: cpu_seconds("/proc/self/stat"),
            daemon_write_bytes: self.pid.and_then(|p| write_bytes(&format!("/proc/{p}/io"))),
            machine_cpu: machine_cpu_seconds(),
        }
    }
}

/// utime + stime of a process, from `/proc/<pid>/stat` (fields 14 and 15, in clock ticks).
fn cpu_seconds(path: &str) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / clock_ticks_per_second())
}

/// Busy time of all CPUs together, from the `cpu` line of `/proc/stat`.
fn machine_cpu_seconds() -> Option<MachineCpu> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<u64> = text
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let ticks = clock_ticks_per_second();
    Some(MachineCpu {
        processes: (f.first()? + f.get(1)? + f.get(2)?) as f64 / ticks,
        interrupts: (f.get(5)? + f.get(6)?) as f64 / ticks,
    })
}

fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Bytes the process caused to be written to storage, from `/proc/<pid>/io`.
fn write_bytes(path: &str) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes: "))
        .and_then(|v| v.trim().parse().ok())
}

/// The daemon the harness started: the process whose command line names our config file.
fn find_daemon_pid(config: &Path) -> Option<u32> {
    let wanted = config.as_os_str().as_encoded_bytes();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            cmdline
                .split(|&b| b == 0)
                .any(|arg| arg == wanted)
                .then_some(pid)
        })
}

/// Established TCP connections to the daemon's port (IPv4 loopback), to show keep-alive is in effect.
fn established_connections(port: u16) -> Option<usize> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let wanted = format!(":{port:04X}");
    Some(
        table
            .lines()
            .skip(1)
            .filter(|line| {
                let cols: Vec<&str> = line.split_whitespace().collect();
                cols.get(2).is_some_and(|remote| remote.ends_with(&wanted))
                    && cols.get(3) == Some(&"01")
            })
            .count(),
    )
}

fn dir_size(dir: &Path) -> Option<u64> {
    let mut total = 0;
    let mut stack: Vec<PathBuf> = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).ok()?.flatten() {
            let meta = entry.metadata().ok()?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    Some(total)
}

// ---- the report ----

struct Report {
    enroll_users: usize,
    enroll_seconds: f64,
    enroll_concurrency: usize,
    concurrency: usize,
    connections: [Option<usize>; 3],
    health: PhaseResult,
    verify: PhaseResult,
    verify_ended_in_step: bool,
    /// privacyIDEA's `/validate/check`, and whether it stayed in its step.
    validate_check: Option<(PhaseResult, bool)>,
    log_level: String,
    store_bytes: Option<u64>,
}

impl Report {
    fn ratio(&self) -> f64 {
        if self.health.rps() > 0.0 {
            self.verify.rps() / self.health.rps()
        } else {
            0.0
        }
    }

    /// As `ratio`, counting only verifications whose code was checked: the goal's measure.
    fn checked_ratio(&self) -> f64 {
        if self.health.rps() > 0.0 {
            self.verify.checked_rps() / self.health.rps()
        } else {
            0.0
        }
    }

    fn phases(&self) -> Vec<&PhaseResult> {
        let mut phases = vec![&self.health, &self.verify];
        phases.extend(self.validate_check.as_ref().map(|(p, _)| p));
        phases
    }

    /// `/validate/check` req/s against native verify's and health's, in the same run.
    fn validate_check_ratios(&self) -> Option<(f64, f64)> {
        let (phase, _) = self.validate_check.as_ref()?;
        let per = |other: f64| {
            if other > 0.0 {
                phase.rps() / other
            } else {
                0.0
            }
        };
        Some((per(self.verify.rps()), per(self.health.rps())))
    }

    /// What makes the run fail: anything accepted that must not be, and anything not answered 200.
    fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        for phase in self.phases() {
            for ((sent, got), n) in &phase.outcomes {
                let bad = matches!(
                    (sent, got),
                    (Sent::WrongCode | Sent::Replay, Got::Accept)
                        | (
                            _,
                            Got::Status(_)
                                | Got::BadBody
                                | Got::TransportError
                                | Got::RejectWithoutReason
                        )
                );
                if bad {
                    failures.push(format!(
                        "{}: {n} × {} answered {}",
                        phase.name,
                        sent.name(),
                        got.name()
                    ));
                }
            }
            if let Some(e) = &phase.first_error {
                failures.push(format!("{}: first transport error: {e}", phase.name));
            }
            if phase.requests == 0 {
                failures.push(format!("{}: no request completed", phase.name));
            }
        }
        failures
    }

    fn markdown(&self, failures: &[String]) -> String {
        let mut out = String::new();
        let fmt_opt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
        out.push_str(&format!(
            "\nEnrollment: {} users in {:.1} s ({:.0} users/s, {} at a time)\n",
            self.enroll_users,
            self.enroll_seconds,
            self.enroll_users as f64 / self.enroll_seconds,
            self.enroll_concurrency
        ));
        out.push_str(&format!(
            "Connections: {} workers; established to the daemon after warm-up / health / verify: {} / {} / {}; daemon log level {}\n\n",
            self.concurrency,
            opt_count(self.connections[0]),
            opt_count(self.connections[1]),
            opt_count(self.connections[2]),
            self.log_level
        ));
        out.push_str("| phase | requests | seconds | req/s | p50 ms | p90 ms | p99 ms | max ms | daemon CPU µs/req | loadgen CPU µs/req | daemon disk writes B/req | irq+softirq, cores | other processes, cores |\n");
        out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for phase in self.phases() {
            out.push_str(&format!(
                "| {} | {} | {:.2} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} | {} |\n",
                phase.name,
                phase.requests,
                phase.seconds,
                phase.rps(),
                phase.percentile_ms(50.0),
                phase.percentile_ms(90.0),
                phase.percentile_ms(99.0),
                phase.max_ms(),
                fmt_opt(phase.per_request_us(phase.daemon_cpu_seconds)),
                fmt_opt(phase.per_request_us(phase.loadgen_cpu_seconds)),
                fmt_opt(phase.daemon_write_bytes.filter(|_| phase.requests > 0).map(|b| b as f64 / phase.requests as f64)),
                phase.interrupt_cores().map_or("-".to_owned(), |c| format!("{c:.2}")),
                phase.other_cores().map_or("-".to_owned(), |c| format!("{c:.2}")),
            ));
        }
        out.push_str(&format!(
            "\nverify req/s ÷ health req/s = {:.3}; checked codes only: {:.0}/s, ÷ health = {:.3}\n\n",
            self.ratio(),
            self.verify.checked_rps(),
            self.checked_ratio()
        ));
        if let Some((to_verify, to_health)) = self.validate_check_ratios() {
            out.push_str(&format!(
                "validate_check req/s ÷ verify req/s = {to_verify:.3}; ÷ health req/s = {to_health:.3}\n\n"
            ));
        }
        for phase in self.phases().into_iter().skip(1) {
            out.push_str(&format!(
                "| {}: sent | answer | count |\n|---|---|---:|\n",
                phase.name
            ));
            for ((sent, got), n) in &phase.outcomes {
                out.push_str(&format!("| {} | {} | {n} |\n", sent.name(), got.name()));
            }
            out.push('\n');
        }
        let v = &self.verify;
        out.push_str(&format!(
            "\nverify totals: accept {} / reject(invalid_code) {} / reject(replayed) {} / rate_limited {} / locked {}\n",
            v.count(None, Got::Accept),
            v.count(None, Got::InvalidCode),
            v.count(None, Got::Replayed),
            v.count(None, Got::RateLimited),
            v.count(None, Got::Locked),
        ));
        for phase in self.phases() {
            if let Some(cores) = phase.other_cores().filter(|&c| c > 0.1) {
                out.push_str(&format!(
                    "note: other processes kept {cores:.2} cores busy during {}: its figures are lower than on a quiet machine\n",
                    phase.name
                ));
            }
        }
        if !self.verify_ended_in_step {
            out.push_str("note: the verify phase crossed a 30 s step boundary; some right codes may have been refused\n");
        }
        if self
            .validate_check
            .as_ref()
            .is_some_and(|(_, in_step)| !in_step)
        {
            out.push_str("note: the validate_check phase crossed a 30 s step boundary; some right codes may have been refused\n");
        }
        if let Some(bytes) = self.store_bytes {
            out.push_str(&format!(
                "store size after the run: {:.1} MiB\n",
                bytes as f64 / 1048576.0
            ));
        }
        out.push_str(&format!(
            "goals (checked codes only): verify ≥ 20000/s: {}; verify p99 < 10 ms: {}; verify ≥ 1/3 of health: {}\n",
            yes_no(v.checked_rps() >= 20_000.0),
            yes_no(v.percentile_ms(99.0) < 10.0),
            yes_no(self.checked_ratio() >= 1.0 / 3.0)
        ));
        out.push_str(&format!(
            "result: {}\n",
            if failures.is_empty() {
                "PASS (no wrong code or replay accepted, every answer 200)"
            } else {
                "FAIL"
            }
        ));
        out
    }

    fn to_json(&self, failures: &[String]) -> Value {
        let phase = |p: &PhaseResult| {
            json!({
                "requests": p.requests,
                "seconds": p.seconds,
                "requests_per_second": p.rps(),
                "latency_ms": {
                    "p50": p.percentile_ms(50.0),
                    "p90": p.percentile_ms(90.0),
                    "p99": p.percentile_ms(99.0),
                    "max": p.max_ms(),
                },
                "daemon_cpu_seconds": p.daemon_cpu_seconds,
                "loadgen_cpu_seconds": p.loadgen_cpu_seconds,
                "daemon_write_bytes": p.daemon_write_bytes,
                "other_processes_cores": p.other_cores(),
                "interrupt_cores": p.interrupt_cores(),
                "totp_step": p.verify_step,
                "outcomes": p.outcomes.iter().map(|((s, g), n)| json!({"sent": s.name(), "answer": g.name(), "count": n})).collect::<Vec<_>>(),
            })
        };
        json!({
            "enrollment": {"users": self.enroll_users, "seconds": self.enroll_seconds, "concurrency": self.enroll_concurrency},
            "concurrency": self.concurrency,
            "connections": {"after_warm_up": self.connections[0], "after_health": self.connections[1], "after_verify": self.connections[2]},
            "daemon_log_level": self.log_level,
            "health": phase(&self.health),
            "verify": phase(&self.verify),
            "verify_to_health_ratio": self.ratio(),
            "verify_checked_per_second": self.verify.checked_rps(),
            "verify_checked_to_health_ratio": self.checked_ratio(),
            "validate_check": self.validate_check.as_ref().map(|(p, _)| phase(p)),
            "validate_check_to_verify_ratio": self.validate_check_ratios().map(|r| r.0),
            "validate_check_to_health_ratio": self.validate_check_ratios().map(|r| r.1),
            "validate_check_stayed_in_one_step": self.validate_check.as_ref().map(|(_, s)| *s),
            "verify_stayed_in_one_step": self.verify_ended_in_step,
            "store_bytes": self.store_bytes,
            "failures": failures,
            "pass": failures.is_empty(),
        })
    }
}

fn opt_count(v: Option<usize>) -> String {
    v.map_or("?".to_owned(), |n| n.to_string())
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "met"
    } else {
        "not met"
    }
}
