//! twofoldd: the Twofold two-factor authentication daemon, as a library.
//!
//! `main.rs` is a thin shell over [`start`]: it parses the command line, builds the runtime, calls
//! `start(config, clock)` and waits for signals. Tests call `start` too, with a manual clock.

pub mod admin;
pub mod api;
pub mod challenge;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod data_folder;
pub mod delivery;
pub mod directory;
pub mod email;
pub mod error;
pub mod lifecycle;
pub mod live_policy;
pub mod lockout;
pub mod logging;
pub mod phone;
pub mod plugins;
pub mod policy;
pub mod restore;
pub mod roles;
pub mod service;
pub mod store;
pub mod tls;
pub mod totp;
pub mod validate;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use twofold_wire::admin::DaemonStatus;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::service::Service;
use crate::store::Store;

/// A running daemon.
pub struct DaemonHandle {
    pub api_addr: SocketAddr,
    pub admin_socket: PathBuf,
    pub service: Arc<Service>,
    /// The configuration the daemon started with.
    config: Arc<Config>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// Released when the daemon is dropped, after its tasks.
    _data_folder: data_folder::DataFolderLock,
}

/// What a reload did with a new, valid configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// The settings other than `log.level` that changed (`api.listen`, `lockout.user.max_failures`,
    /// `directory`): they take effect at the next restart. (The caller applies `log.level`, which
    /// belongs to the process-wide logger.)
    pub restart_needed: Vec<String>,
    /// The file's policy sections differ from the live policies, which stay (see `live_policy`).
    pub policy_differs: bool,
}

impl DaemonHandle {
    /// Takes in a re-read configuration without dropping a request: what can change live does,
    /// the rest is reported as needing a restart.
    pub fn reload(&self, new: &Config) -> Reloaded {
        let mut comparable = new.clone();
        comparable.log = self.config.log.clone();
        // Delivery routes and plugins apply live: load the plugins again with the new tables.
        comparable.delivery = self.config.delivery.clone();
        comparable.plugin = self.config.plugin.clone();
        // The store holds the live policies: the file's sections wait for `policy reset-to-config`,
        // which neither a reload nor a restart replaces (see `live_policy`).
        comparable.policy = self.config.policy.clone();
        let policy_differs = self.service.set_file_policy(new.policy.clone());
        if let Ok(challenges) = self.service.challenges() {
            let load = || {
                challenges
                    .delivery()
                    .reload(Some((&new.delivery, &new.plugin)))
            };
            let loaded = match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
                Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(load),
                _ => load(),
            };
            tracing::info!(
                plugins = loaded.len(),
                failed = loaded.iter().filter(|p| !p.loaded).count(),
                "plugins reloaded"
            );
        }
        // Debug output covers every field, including ones added later, without asking each
        // config type to implement PartialEq or Serialize.
        Reloaded {
            restart_needed: config::changed_settings(
                &format!("{:?}", self.config),
                &format!("{comparable:?}"),
            ),
            policy_differs,
        }
    }

    /// Resolves with the error of the first failed store commit. From then on every write is refused
    /// (see `store::durability`): the caller should exit so that a supervisor restarts the daemon from
    /// what is on disk.
    pub async fn store_failed(&self) -> String {
        let mut failure = self.service.store().failure();
        loop {
            if let Some(e) = failure.borrow_and_update().clone() {
                return e;
            }
            if failure.changed().await.is_err() {
                // The commit thread is gone without reporting a failure: the store is closing.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Stops accepting, lets requests in flight finish, and flushes the store.
    pub async fn shutdown(self) -> Result<()> {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        self.service.store().commit().await
    }
}

/// How often the journal is compacted (see `Service::compact_journal`): often enough that counters
/// for guessed names stay bounded, rarely enough that its encoding pause (about 10 ms for 100,000
/// devices) does not matter.
const COMPACT_JOURNAL_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

async fn compact_journal_periodically(service: Arc<Service>, mut stopped: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval_at(
        tokio::time::Instant::now() + COMPACT_JOURNAL_EVERY,
        COMPACT_JOURNAL_EVERY,
    );
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopped.changed() => return,
        }
        let service = service.clone();
        match tokio::task::spawn_blocking(move || service.compact_journal()).await {
            Ok(Ok(done)) => tracing::info!(
                counters_dropped = done.counters_dropped,
                counters_kept = done.counters_kept,
                segments_dropped = done.segments_dropped,
                "journal compacted"
            ),
            Ok(Err(e)) => tracing::error!(error = %e, "journal compaction failed"),
            Err(e) => tracing::error!(error = %e, "journal compaction task failed"),
        }
    }
}

/// Opens the store, binds the API and the admin socket, and starts serving.
pub async fn start(config: Config, clock: SharedClock) -> Result<DaemonHandle> {
    tls::install_crypto_provider();
    let config = Arc::new(config);
    let data_dir = &config.data_dir;
    std::fs::create_dir_all(data_dir).map_err(|e| Error::io(data_dir, e))?;
    // Seeds are sealed, codes hashed; still, nobody else has business in here.
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io(data_dir, e))?;
    let data_folder = data_folder::lock(data_dir)?;

    let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
    let (key, key_source) = crypto::load_master_key(
        config.store.master_key_file.as_deref(),
        data_dir,
        credentials.as_deref(),
    )?;
    tracing::info!(source = ?key_source, "master key loaded");
    let store = Store::open(&data_dir.join("store"))?;
    let plugin_host = Arc::new(plugins::PluginHost::new(
        &config.delivery,
        data_dir,
        key.as_slice(),
    )?);
    let mailer = config.email.as_ref().map(email::Mailer::new).transpose()?;
    let delivery = Arc::new(delivery::Delivery::new(
        plugin_host,
        mailer,
        store.clone(),
        clock.clone(),
        &config.delivery,
        &config.plugin,
    ));
    let challenges = Arc::new(challenge::Challenges::new(
        challenge::CodeKey::derive(key.as_slice()),
        delivery,
    ));
    let service = Arc::new(
        Service::new(store, clock, crypto::SecretBox::new(&key), config.clone())
            .with_challenges(challenges),
    );
    service.load_policies().await?;

    // The ciphers and derived keys hold what they need: wipe the master key now.
    drop(key);
    let (cert, key) = match (&config.api.tls_cert_file, &config.api.tls_key_file) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone()),
        _ => tls::ensure_self_signed(data_dir)?,
    };
    let tls = tls::server_config(&cert, &key)?;
    let listener = tokio::net::TcpListener::bind(config.api.listen)
        .await
        .map_err(|e| Error::Config(format!("api.listen {}: {e}", config.api.listen)))?;
    let api_addr = listener
        .local_addr()
        .map_err(|e| Error::Config(format!("api.listen: {e}")))?;
    let admin = admin::AdminSocket::bind(&config.admin_socket(), config.admin.group.as_deref())?;
    let admin_socket = admin.path().to_owned();

    let (stop, stopped) = watch::channel(false);
    let app = api::router(service.clone(), config.api.max_body_bytes);
    let status = Arc::new(DaemonStatus {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        users: 0,
        api_listen: api_addr.to_string(),
        schema_version: store::SCHEMA_VERSION,
        audit_log: None,
    });
    let mut tasks = directory::spawn(service.clone(), &config.directory, stopped.clone());
    tasks.extend([
        tokio::spawn(compact_journal_periodically(
            service.clone(),
            stopped.clone(),
        )),
        tokio::spawn(api::server::serve(
            listener,
            tls,
            app,
            config.api.connections.clone(),
            stopped.clone(),
        )),
        tokio::spawn(admin.serve(service.clone(), status, stopped)),
    ]);
    tracing::info!(api = %api_addr, admin = %admin_socket.display(), data = %data_dir.display(), "twofoldd started");
    Ok(DaemonHandle {
        api_addr,
        admin_socket,
        service,
        config,
        stop,
        tasks,
        _data_folder: data_folder,
    })
}
