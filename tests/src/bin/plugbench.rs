//! twofold-plugbench: what a delivery costs the daemon's plugin host (docs/BENCHMARKS.md).
//!
//! 1. Host cost per delivery: a fresh store, instantiation from the pooling allocator, the `deliver` call
//!    with its host calls (config, handover, log), and the store dropped, with the in-person plugin (it
//!    makes no HTTP request, so this is the host's own cost). Median, p99 over `--calls` sequential calls.
//! 2. Deliveries per second through the sms-http plugin to a loopback HTTP gateway stand-in, `--threads`
//!    deliveries at once, for `--seconds`.
//! 3. Loading: compiling a plugin versus loading the daemon's sealed precompiled artifact.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use twofold_tests::delivery::{plugins_dir, Gateway};
use twofoldd::delivery::config::{DeliveryConfig, PluginConfig};
use twofoldd::plugins::{Message, Outcome, PluginHost, WitChannel};

#[derive(Parser)]
#[command(
    name = "twofold-plugbench",
    about = "Plugin host cost per delivery and deliveries per second"
)]
struct Args {
    /// Sequential calls for the per-delivery cost.
    #[arg(long, default_value_t = 20_000)]
    calls: usize,
    /// Deliveries at once for the throughput run.
    #[arg(long, default_value_t = 8)]
    threads: usize,
    /// Length of the throughput run.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
}

fn message(code: &str) -> Message {
    Message {
        channel: WitChannel::InPerson,
        destination: "079 123 45 67".into(),
        code: code.into(),
        user: "alice".into(),
        display_name: Some("Alice Example".into()),
        locale: "en".into(),
        expires_at: 2_000_000_000,
        valid_seconds: 300,
        transaction: "txbench".into(),
        attempt: 1,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn micros(d: Duration) -> String {
    format!("{:.1} us", d.as_secs_f64() * 1e6)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let plugins = plugins_dir()?;
    let data = twofold_tests::TempDir::new("plugbench")?;
    let gateway = Gateway::start(None).await?;
    let mut delivery = DeliveryConfig {
        plugin_dirs: vec![plugins.clone()],
        concurrency: 32,
        ..DeliveryConfig::default()
    };
    delivery.http_requests_per_call = 1;
    let desk = PluginConfig {
        name: "desk".into(),
        file: "in_person.wasm".into(),
        allow_hosts: vec![],
        ca_file: None,
        allow_plain_http_loopback: false,
        handover: true,
        concurrency: 32,
        config: [("note".to_owned(), "Check the photo ID.".to_owned())].into(),
        secrets: Default::default(),
    };
    let sms = PluginConfig {
        name: "sms".into(),
        file: "sms_http.wasm".into(),
        allow_hosts: vec![gateway.addr.to_string()],
        allow_plain_http_loopback: true,
        handover: false,
        config: [
            ("url".to_owned(), format!("http://{}/send", gateway.addr)),
            ("number_rewrite".to_owned(), "0=>+41".to_owned()),
        ]
        .into(),
        ..desk.clone()
    };
    let key = [42u8; 32];

    // 3. Loading: cold (compile and seal), then warm (a new host on the same data folder).
    let host = Arc::new(PluginHost::new(&delivery, data.path(), &key)?);
    let cold = host.load(&delivery, &[desk.clone(), sms.clone()], 0);
    let warm_host = PluginHost::new(&delivery, data.path(), &key)?;
    let warm = warm_host.load(&delivery, &[desk.clone(), sms.clone()], 0);
    drop(warm_host);
    for (c, w) in cold.iter().zip(&warm) {
        if !c.loaded || !w.loaded || !w.from_cache {
            bail!("plugin {} did not load as expected: {c:?} {w:?}", c.name);
        }
        println!(
            "load {:<5} compile {} ms, from the sealed cache {} ms",
            c.name, c.load_ms, w.load_ms
        );
    }

    // 1. Host cost per delivery, sequential.
    let plugin = host.plugin("desk").map_err(anyhow::Error::msg)?;
    let msg = message("123456");
    let mut times = Vec::with_capacity(args.calls);
    let host_for_calls = host.clone();
    let (times, ok) = tokio::task::spawn_blocking(move || {
        let mut ok = 0usize;
        for _ in 0..1000 {
            host_for_calls.call(&plugin, &msg);
        }
        for _ in 0..args.calls {
            let started = Instant::now();
            let report = host_for_calls.call(&plugin, &msg);
            times.push(started.elapsed());
            ok += usize::from(
                matches!(report.result, Ok(Outcome::Delivered(_)))
                    && report.handover_note.is_some(),
            );
        }
        (times, ok)
    })
    .await?;
    if ok != args.calls {
        bail!(
            "{} of {} calls did not deliver",
            args.calls - ok,
            args.calls
        );
    }
    let mut sorted = times.clone();
    sorted.sort();
    let mean = times.iter().sum::<Duration>() / u32::try_from(times.len()).unwrap_or(u32::MAX);
    println!(
        "host cost per delivery (in-person, {} calls): median {}, p99 {}, mean {}, max {}",
        args.calls,
        micros(percentile(&sorted, 0.5)),
        micros(percentile(&sorted, 0.99)),
        micros(mean),
        micros(sorted[sorted.len() - 1])
    );

    // 2. Deliveries per second through sms-http to the loopback gateway.
    let plugin = host.plugin("sms").map_err(anyhow::Error::msg)?;
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(args.seconds);
    let mut workers = Vec::new();
    for t in 0..args.threads {
        let (host, plugin, done, failed) =
            (host.clone(), plugin.clone(), done.clone(), failed.clone());
        workers.push(tokio::task::spawn_blocking(move || {
            let mut latencies = Vec::new();
            let mut msg = message(&format!("{:06}", t));
            msg.channel = WitChannel::Sms;
            while Instant::now() < until {
                let started = Instant::now();
                let report = host.call(&plugin, &msg);
                latencies.push(started.elapsed());
                match report.result {
                    Ok(Outcome::Delivered(_)) => done.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
            latencies
        }));
    }
    let started = Instant::now();
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await.context("worker")?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let delivered = done.load(Ordering::Relaxed);
    println!(
        "sms-http to a loopback HTTP gateway, {} at once: {:.0} deliveries/s ({} delivered, {} failed in {:.1} s), latency median {}, p99 {}; gateway saw {} requests",
        args.threads,
        delivered as f64 / elapsed,
        delivered,
        failed.load(Ordering::Relaxed),
        elapsed,
        micros(percentile(&latencies, 0.5)),
        micros(percentile(&latencies, 0.99)),
        gateway.received().len()
    );
    Ok(())
}
