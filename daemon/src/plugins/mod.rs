//! The sandbox delivery plugins run in: wasmtime's component model, pinned to one version.
//!
//! - One engine for the daemon's life, with epoch interruption and a pooling allocator sized for
//!   `[delivery] concurrency` instances of at most `plugin_memory_mib` each.
//! - Each plugin is compiled once: the precompiled artifact is kept in `data_dir/plugin-cache`, named
//!   by the component's SHA-256 and the engine's compatibility hash, and sealed with an HMAC under a key
//!   derived from the master key over the component's SHA-256, the engine's version and settings, and
//!   the artifact. Only an artifact whose HMAC checks for the very component being loaded is
//!   deserialized, so only what this daemon compiled from that component is ever loaded as machine
//!   code; an artifact swapped between plugins is refused and the component compiled again. Cache
//!   files are opened without following links and without blocking, and read only if regular files.
//! - Imports are checked at load: another version of the delivery interface or an unknown package is
//!   refused with a message naming it. A reload that fails keeps the last good version delivering.
//! - Each call gets a fresh store (so a trap never poisons the next call) instantiated from a
//!   pre-instantiated component, memory capped by `StoreLimits`, and a CPU budget enforced by an epoch
//!   ticker thread: every tick the store samples its thread's CPU used inside the plugin (host
//!   functions excluded) and interrupts it past the budget, with the delivery's deadline as the wall-time
//!   backstop (`budget`).
//! - Plugins get no WASI at all: every import other than the `twofold:delivery/host` functions is
//!   defined as a trap, so `std::fs`, `println!`, sockets, clocks and the environment stop the call
//!   with an error naming what was called. Host functions are capability-checked (`capabilities`).
//! - A reload (SIGHUP or the admin's request) loads the configured plugins again and swaps them in;
//!   calls in flight finish on the set they started with.

pub mod budget;
pub mod capabilities;
pub mod said;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use twofold_wire::delivery::PluginInfo;
use wasmtime::component::{Component, ComponentExportIndex, Linker};
use wasmtime::{
    Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap, UpdateDeadline,
};

use crate::delivery::config::{DeliveryConfig, PluginConfig};
use crate::error::{Error, Result};
pub use capabilities::{CallLimits, CallState, Grant};

wasmtime::component::bindgen!({
    path: "../plugins/wit/delivery@0.2.0",
    world: "delivery-plugin",
});

pub use twofold::delivery::types::Channel as WitChannel;

/// The WIT package version this host implements.
/// Components built for 0.1.0 are refused at load with a message saying to rebuild them: 0.2.0 changed
/// `retry-later` and `fetch`'s error; moving a plugin to the new SDK changes a few lines (SDK README).
pub const WIT_VERSION: &str = "0.2.0";
pub const INTERFACE_VERSION: &str = "twofold:delivery@0.2.0";
/// How often the ticker advances the engine's epoch: how often a call's CPU is sampled.
const TICK: Duration = Duration::from_millis(10);

/// Why a call into a plugin did not produce an outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginFault {
    /// The plugin used more CPU than its budget.
    Timeout(Duration),
    /// The call, its HTTP requests included, ran past `plugin_deadline_seconds`.
    Deadline(Duration),
    /// The plugin tried to grow its memory past the cap.
    MemoryLimit(usize),
    /// The plugin panicked (message as the SDK logged it, code blanked out) or hit `unreachable`.
    Panicked(Option<String>),
    /// The plugin called something the host does not provide (a WASI function).
    Forbidden(String),
    /// Any other trap.
    Trap(String),
    /// The plugin could not be instantiated (pool exhausted, link error).
    Instantiate(String),
}

impl std::fmt::Display for PluginFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginFault::Timeout(budget) => write!(f, "stopped after its CPU budget of {} ms", budget.as_millis()),
            PluginFault::Deadline(d) => write!(f, "stopped at the delivery's deadline of {} s (plugin_deadline_seconds)", d.as_secs()),
            PluginFault::MemoryLimit(cap) => write!(f, "stopped growing its memory past the cap of {} MiB", cap >> 20),
            PluginFault::Panicked(Some(m)) => write!(f, "panicked: {m}"),
            PluginFault::Panicked(None) => f.write_str("panicked (wasm unreachable executed)"),
            PluginFault::Forbidden(what) => write!(
                f,
                "called {what}, which plugins are not given (no filesystem, sockets, environment, clock or console; log with the SDK's log)"
            ),
            PluginFault::Trap(m) => write!(f, "trapped: {m}"),
            PluginFault::Instantiate(m) => write!(f, "could not be instantiated: {m}"),
        }
    }
}

/// What one call into a plugin produced.
#[derive(Debug)]
pub struct CallReport {
    pub result: std::result::Result<Outcome, PluginFault>,
    /// The note, when the plugin queued the message for in-person handover.
    pub handover_note: Option<String>,
    /// Whole call; the wall time and the CPU time spent inside the plugin.
    pub elapsed: Duration,
    pub plugin_time: Duration,
    pub plugin_cpu: Duration,
}

/// A plugin ready to run.
pub struct Plugin {
    pub name: String,
    pub file: PathBuf,
    pub sha256: String,
    pre: DeliveryPluginPre<CallState>,
    deliver: ComponentExportIndex,
    grant: Arc<Grant>,
    /// Its own share of the deliveries at once (`[[plugin]] concurrency`).
    pub slots: Arc<tokio::sync::Semaphore>,
    pub concurrency: u32,
    pub loaded_at: i64,
    pub load_ms: u64,
    pub from_cache: bool,
}

enum Slot {
    Ready(Arc<Plugin>),
    /// A reload failed: the last good version keeps delivering, and the failure is shown beside it.
    Kept {
        plugin: Arc<Plugin>,
        error: String,
    },
    Failed {
        file: Option<PathBuf>,
        error: String,
    },
}

/// The engine and the loaded plugins.
pub struct PluginHost {
    engine: Engine,
    cache_dir: PathBuf,
    artifact_key: [u8; 32],
    /// The engine's settings as wasmtime sees them for precompiled code, as 16 hex digits.
    engine_id: String,
    limits: RwLock<CallLimits>,
    plugins: RwLock<Arc<BTreeMap<String, Slot>>>,
    memory_cap: usize,
    ticker_stop: Arc<AtomicBool>,
    runtime: tokio::runtime::Handle,
}

impl Drop for PluginHost {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl PluginHost {
    /// Builds the engine and starts its ticker. `master_key` seals the artifact cache. Must be called
    /// inside a tokio runtime (host functions run their HTTP requests on it).
    pub fn new(config: &DeliveryConfig, data_dir: &Path, master_key: &[u8]) -> Result<PluginHost> {
        let memory_cap = usize::try_from(config.plugin_memory_mib).unwrap_or(16) << 20;
        let instances = config.concurrency;
        let mut pool = PoolingAllocationConfig::default();
        // A Rust component on wasm32-wasip2 holds a few core instances (the program, shims), one memory
        // and a few tables; the totals leave room for that per concurrent instance.
        pool.total_component_instances(instances)
            .total_core_instances(instances.saturating_mul(8))
            .total_memories(instances.saturating_mul(2))
            .total_tables(instances.saturating_mul(8))
            .max_memory_size(memory_cap);
        let mut wasm = wasmtime::Config::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine =
            Engine::new(&wasm).map_err(|e| Error::Config(format!("plugin engine: {e}")))?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_ticker(engine.weak(), ticker_stop.clone())?;
        let cache_dir = data_dir.join("plugin-cache");
        let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut engine_hash);
        let engine_id = format!("{:016x}", std::hash::Hasher::finish(&engine_hash));
        Ok(PluginHost {
            engine,
            cache_dir,
            artifact_key: derive_key(master_key, b"twofold plugin artifact v2"),
            engine_id,
            limits: RwLock::new(call_limits(config, memory_cap)),
            plugins: RwLock::new(Arc::new(BTreeMap::new())),
            memory_cap,
            ticker_stop,
            runtime: tokio::runtime::Handle::current(),
        })
    }

    /// Loads every configured plugin (compiling those not in the cache) and swaps the new set in. A
    /// plugin that fails to load is listed with its error; the others load regardless.
    pub fn load(
        &self,
        delivery: &DeliveryConfig,
        plugins: &[PluginConfig],
        now: i64,
    ) -> Vec<PluginInfo> {
        let memory_cap = self.memory_cap;
        if let Ok(mut limits) = self.limits.write() {
            *limits = call_limits(delivery, memory_cap);
        }
        let http_timeout = Duration::from_secs(delivery.http_timeout_seconds);
        let previous = self.plugins.read().map(|s| s.clone()).unwrap_or_default();
        let mut slots = BTreeMap::new();
        for config in plugins {
            let file = locate(&config.file, &delivery.plugin_dirs);
            let slot = match file {
                None => Slot::Failed {
                    file: None,
                    error: format!(
                        "{} is not in any of the plugin folders {:?}",
                        config.file.display(),
                        delivery.plugin_dirs
                    ),
                },
                Some(file) => match self.load_one(config, &file, http_timeout, now) {
                    Ok(plugin) => {
                        tracing::info!(plugin = %plugin.name, file = %file.display(), cached = plugin.from_cache, ms = plugin.load_ms, "plugin loaded");
                        Slot::Ready(Arc::new(plugin))
                    }
                    Err(error) => {
                        tracing::error!(plugin = %config.name, file = %file.display(), error = %error, "plugin not loaded");
                        Slot::Failed {
                            file: Some(file),
                            error,
                        }
                    }
                },
            };
            let slot = match (slot, previous.get(&config.name)) {
                (
                    Slot::Failed { file, error },
                    Some(Slot::Ready(plugin) | Slot::Kept { plugin, .. }),
                ) => {
                    let what = file.map_or_else(
                        || config.file.display().to_string(),
                        |f| f.display().to_string(),
                    );
                    tracing::warn!(plugin = %config.name, sha256 = %plugin.sha256, "plugin reload failed: the last good version keeps delivering");
                    Slot::Kept {
                        plugin: plugin.clone(),
                        error: format!("reloading {what} failed: {error}; still delivering with the version loaded before"),
                    }
                }
                (slot, _) => slot,
            };
            slots.insert(config.name.clone(), slot);
        }
        let slots = Arc::new(slots);
        if let Ok(mut current) = self.plugins.write() {
            *current = slots.clone();
        }
        release_freed_memory();
        infos(&slots)
    }

    /// Loads a component as `load` would, without installing it or touching the cache: its sha256,
    /// the delivery interface it was built for, and its imports; or why it would not load.
    pub fn check(&self, wasm: &[u8]) -> std::result::Result<(String, String, Vec<String>), String> {
        if wasm.is_empty() {
            return Err("an empty file".into());
        }
        let sha256 = data_encoding::HEXLOWER.encode(&Sha256::digest(wasm));
        let component = Component::new(&self.engine, wasm).map_err(|e| {
            format!(
                "not a valid WebAssembly component: {}",
                whole(&format!("{e:#}"))
            )
        })?;
        check_imports(&component, &self.engine)?;
        self.prepare(&component)?;
        let imports: Vec<String> = component
            .component_type()
            .imports(&self.engine)
            .map(|(name, _)| said::escape_controls(name))
            .collect();
        Ok((sha256, INTERFACE_VERSION.to_owned(), imports))
    }

    /// Links a component against the host functions and finds its `deliver` export.
    fn prepare(
        &self,
        component: &Component,
    ) -> std::result::Result<(DeliveryPluginPre<CallState>, ComponentExportIndex), String> {
        let mut linker: Linker<CallState> = Linker::new(&self.engine);
        capabilities::add_host_functions(&mut linker)
            .map_err(|e| format!("linking the host functions: {e}"))?;
        // What is left is WASI (check_imports refused anything else): a trap naming what was called.
        linker
            .define_unknown_imports_as_traps(component)
            .map_err(|e| format!("not a delivery plugin: {e}"))?;
        let pre = linker
            .instantiate_pre(component)
            .map_err(|e| format!("not a delivery plugin: {e}"))?;
        let pre = DeliveryPluginPre::new(pre).map_err(|e| {
            format!("not a {INTERFACE_VERSION} delivery plugin (it must export `deliver` from the delivery-plugin world): {e}")
        })?;
        let deliver = component.get_export_index(None, "deliver").ok_or_else(|| {
            format!("not a {INTERFACE_VERSION} delivery plugin: no `deliver` export")
        })?;
        Ok((pre, deliver))
    }

    fn load_one(
        &self,
        config: &PluginConfig,
        file: &Path,
        http_timeout: Duration,
        now: i64,
    ) -> std::result::Result<Plugin, String> {
        let started = Instant::now();
        let wasm = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let sha256 = data_encoding::HEXLOWER.encode(&Sha256::digest(&wasm));
        let (component, from_cache) = self.component(&wasm, &sha256)?;
        check_imports(&component, &self.engine)?;
        let (pre, deliver) = self.prepare(&component)?;
        let grant = Grant::new(config, http_timeout)?;
        Ok(Plugin {
            name: config.name.clone(),
            file: file.to_owned(),
            sha256,
            pre,
            deliver,
            grant: Arc::new(grant),
            slots: Arc::new(tokio::sync::Semaphore::new(
                usize::try_from(config.concurrency).unwrap_or(1),
            )),
            concurrency: config.concurrency,
            loaded_at: now,
            load_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            from_cache,
        })
    }

    /// The compiled component: from the sealed cache when this daemon compiled it before, else compiled
    /// now and cached. A cache that cannot be written only costs the next start a compile.
    fn component(
        &self,
        wasm: &[u8],
        sha256: &str,
    ) -> std::result::Result<(Component, bool), String> {
        let path = self.cache_dir.join(format!(
            "{sha256}-wasmtime{}-{}.cwasm",
            wasmtime_version(),
            self.engine_id
        ));
        match read_cache_file(&path) {
            Ok(Some(sealed)) => match self.open_artifact(&sealed, sha256) {
                Some(artifact) => {
                    // SAFETY: the artifact carries a valid HMAC under a key only this daemon holds, over
                    // the SHA-256 of the very component being loaded and this engine's version and
                    // settings: it is machine code this daemon's engine produced from this component.
                    // wasmtime also checks the engine compatibility before loading.
                    match unsafe { Component::deserialize(&self.engine, artifact) } {
                        Ok(component) => return Ok((component, true)),
                        Err(e) => {
                            tracing::warn!(file = %path.display(), error = %whole(&format!("{e:#}")), "cached plugin artifact not usable: compiling again")
                        }
                    }
                }
                None => {
                    tracing::warn!(file = %path.display(), "cached plugin artifact has a bad seal (altered, or sealed for another component or engine): ignored, compiling again")
                }
            },
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cached plugin artifact skipped: compiling again")
            }
        }
        let artifact = self.engine.precompile_component(wasm).map_err(|e| {
            format!(
                "not a valid WebAssembly component: {}",
                whole(&format!("{e:#}"))
            )
        })?;
        // SAFETY: produced by this engine's own compiler a moment ago.
        let component = unsafe { Component::deserialize(&self.engine, &artifact) }
            .map_err(|e| format!("loading the compiled component: {e}"))?;
        if let Err(e) = self.store_artifact(&path, sha256, &artifact) {
            tracing::warn!(file = %path.display(), error = %e, "plugin artifact not cached");
        }
        Ok((component, false))
    }

    /// The seal binds the artifact to what it was compiled from: the component's SHA-256 and the
    /// engine (wasmtime's version and its settings' compatibility hash) are under the HMAC, so an
    /// artifact moved to another plugin's cache name, or left from another engine, does not open.
    fn seal(&self, sha256: &str, artifact: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.artifact_key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        for part in [sha256, wasmtime_version(), &self.engine_id] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac.update(artifact);
        mac.finalize().into_bytes().into()
    }

    /// A sealed artifact is `HMAC (32) || artifact`; it opens only for the component `sha256`.
    fn open_artifact<'a>(&self, sealed: &'a [u8], sha256: &str) -> Option<&'a [u8]> {
        let (tag, artifact) = sealed.split_at_checked(32)?;
        crate::crypto::constant_time_eq(&self.seal(sha256, artifact), tag).then_some(artifact)
    }

    fn store_artifact(&self, path: &Path, sha256: &str, artifact: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::create_dir_all(&self.cache_dir)?;
        let tmp = path.with_extension("tmp");
        // A link or FIFO someone left at the temporary name is replaced, never followed.
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&self.seal(sha256, artifact))?;
        f.write_all(artifact)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    }

    /// The loaded plugin of that name.
    pub fn plugin(&self, name: &str) -> std::result::Result<Arc<Plugin>, String> {
        let slots = self
            .plugins
            .read()
            .map(|s| s.clone())
            .map_err(|_| "plugin table poisoned".to_owned())?;
        match slots.get(name) {
            Some(Slot::Ready(p) | Slot::Kept { plugin: p, .. }) => Ok(p.clone()),
            Some(Slot::Failed { error, .. }) => {
                Err(format!("plugin {name} is not loaded: {error}"))
            }
            None => Err(format!("no plugin named {name} is configured")),
        }
    }

    pub fn status(&self) -> Vec<PluginInfo> {
        self.plugins.read().map(|s| infos(&s)).unwrap_or_default()
    }

    /// Runs one delivery in a fresh instance. Blocking: call it from a blocking thread.
    pub fn call(&self, plugin: &Plugin, message: &Message) -> CallReport {
        let started = Instant::now();
        let limits = self
            .limits
            .read()
            .map(|l| *l)
            .unwrap_or_else(|p| *p.into_inner());
        let state = CallState::new(
            plugin.grant.clone(),
            &message.code,
            limits,
            self.runtime.clone(),
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        store.epoch_deadline_callback(|mut context| {
            Ok(match context.data_mut().budget.check() {
                Some(_) => UpdateDeadline::Interrupt,
                None => UpdateDeadline::Continue(1),
            })
        });
        store.set_epoch_deadline(1);
        let result = match plugin.pre.instance_pre().instantiate(&mut store) {
            Err(e) => Err(PluginFault::Instantiate(whole(&format!("{e:#}")))),
            Ok(instance) => deliver(&mut store, &instance, &plugin.deliver, message)
                .map_err(|e| classify(&e, store.data(), limits)),
        };
        let (plugin_time, plugin_cpu) = (
            store.data().budget.plugin_wall(),
            store.data().budget.plugin_cpu(),
        );
        let handover_note = store.data_mut().handover_note.take();
        CallReport {
            result,
            handover_note,
            elapsed: started.elapsed(),
            plugin_time,
            plugin_cpu,
        }
    }
}

fn call_limits(config: &DeliveryConfig, memory_cap: usize) -> CallLimits {
    CallLimits {
        // The pool's slots are sized at start; a reload can lower the cap but not raise it past them.
        memory_bytes: (usize::try_from(config.plugin_memory_mib).unwrap_or(16) << 20)
            .min(memory_cap),
        cpu: Duration::from_millis(config.plugin_cpu_ms),
        http_timeout: Duration::from_secs(config.http_timeout_seconds),
        http_requests: config.http_requests_per_call,
        deadline: Duration::from_secs(config.plugin_deadline_seconds),
    }
}

/// Calls `deliver` and reads its outcome in place, so that only a bounded part of its text is copied
/// into the host (`capabilities::WasmOutcome`).
fn deliver(
    store: &mut Store<CallState>,
    instance: &wasmtime::component::Instance,
    export: &ComponentExportIndex,
    message: &Message,
) -> wasmtime::Result<Outcome> {
    let func = instance
        .get_typed_func::<(&Message,), (capabilities::WasmOutcome,)>(&mut *store, export)?;
    let (outcome,) = func.call(&mut *store, (message,))?;
    outcome.read(store)
}

/// Refuses, at load, a component that imports what this daemon does not provide: another version of
/// the delivery interface, or an interface of another package (`evil:backdoor/shell`). WASI imports are
/// let through, to trap when called: Rust's standard library imports them whether or not it uses them.
fn check_imports(component: &Component, engine: &Engine) -> std::result::Result<(), String> {
    let mut unknown = Vec::new();
    for (name, _) in component.component_type().imports(engine) {
        let (interface, version) = match name.rsplit_once('@') {
            Some((interface, version)) => (interface, Some(version)),
            None => (name, None),
        };
        if let Some(inner) = interface.strip_prefix("twofold:delivery/") {
            if version != Some(WIT_VERSION) {
                let rebuild = if version == Some("0.1.0") {
                    " (rebuild it with this release's twofold-plugin-sdk: RetryLater now takes a Retry, fetch a typed HostError)"
                } else {
                    ""
                };
                return Err(format!(
                    "built for twofold:delivery@{}; this daemon implements {WIT_VERSION}{rebuild}",
                    said::escape_controls(version.unwrap_or("(no version)"))
                ));
            }
            if !matches!(inner, "host" | "types") {
                unknown.push(said::escape_controls(interface));
            }
        } else if !interface.starts_with("wasi:") {
            unknown.push(said::escape_controls(interface));
        }
    }
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "imports unknown {}: this daemon provides only twofold:delivery/host@{WIT_VERSION}",
            unknown.join(", ")
        ))
    }
}

/// Sorts a failed call into what an admin needs to read.
fn classify(error: &wasmtime::Error, state: &CallState, limits: CallLimits) -> PluginFault {
    let text = format!("{error:#}");
    if let Some(trap) = error.downcast_ref::<Trap>() {
        return match trap {
            Trap::Interrupt => match state.budget.stopped {
                Some(budget::Stop::Deadline(d)) => PluginFault::Deadline(d),
                Some(budget::Stop::Cpu(cpu)) => PluginFault::Timeout(cpu),
                None => PluginFault::Timeout(limits.cpu),
            },
            Trap::UnreachableCodeReached => PluginFault::Panicked(state.panic_message.clone()),
            other => PluginFault::Trap(other.to_string()),
        };
    }
    if text.contains("forcing trap when growing memory") {
        return PluginFault::MemoryLimit(limits.memory_bytes);
    }
    if let Some(rest) = text.split("unknown import: `").nth(1) {
        return PluginFault::Forbidden(said::escape_controls(
            rest.split('`').next().unwrap_or(rest),
        ));
    }
    PluginFault::Trap(whole(&text))
}

/// An error of wasmtime or wasmparser, whole, on one line: their messages span lines
/// (`bad magic number - expected=[\n    0x0, ...`), and the first line alone says nothing.
fn whole(text: &str) -> String {
    said::escape_controls(&text.split_whitespace().collect::<Vec<_>>().join(" "))
}

fn infos(slots: &BTreeMap<String, Slot>) -> Vec<PluginInfo> {
    slots
        .iter()
        .map(|(name, slot)| match slot {
            Slot::Ready(p) | Slot::Kept { plugin: p, .. } => PluginInfo {
                name: name.clone(),
                file: Some(p.file.display().to_string()),
                loaded: true,
                error: match slot {
                    Slot::Kept { error, .. } => Some(error.clone()),
                    _ => None,
                },
                sha256: Some(p.sha256.clone()),
                from_cache: p.from_cache,
                load_ms: p.load_ms,
                loaded_at: Some(p.loaded_at),
            },
            Slot::Failed { file, error } => PluginInfo {
                name: name.clone(),
                file: file.as_ref().map(|f| f.display().to_string()),
                loaded: false,
                error: Some(error.clone()),
                sha256: None,
                from_cache: false,
                load_ms: 0,
                loaded_at: None,
            },
        })
        .collect()
}

/// An absolute path as given; a file name from the last plugin folder that holds it.
pub fn locate(file: &Path, dirs: &[PathBuf]) -> Option<PathBuf> {
    if file.is_absolute() {
        return file.exists().then(|| file.to_owned());
    }
    dirs.iter()
        .rev()
        .map(|d| d.join(file))
        .find(|p| p.is_file())
}

/// The largest cache file read: a precompiled delivery plugin is about 170 KB.
const MAX_ARTIFACT_BYTES: u64 = 64 << 20;

/// Reads a cache file without following a link and without blocking (a FIFO planted at the path would
/// block `open` for good), and only if it is a regular file of a sane size. `Ok(None)`: no file.
fn read_cache_file(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let flags = nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK;
    let mut file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits())
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.len() > MAX_ARTIFACT_BYTES {
        return Err(std::io::Error::other(format!(
            "{} bytes, more than a plugin artifact can be",
            meta.len()
        )));
    }
    let mut sealed = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.by_ref()
        .take(MAX_ARTIFACT_BYTES)
        .read_to_end(&mut sealed)?;
    Ok(Some(sealed))
}

/// Gives the memory that compiling plugins allocated and freed back to the system: glibc keeps freed
/// memory in its arenas, and a compile frees tens of MiB that the daemon would otherwise carry for
/// its whole life.
fn release_freed_memory() {
    // SAFETY: malloc_trim only walks glibc's own free lists; it takes no pointer and is thread-safe.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

fn wasmtime_version() -> &'static str {
    "48.0.8"
}

/// A key for one purpose, derived from the master key (HMAC-SHA256 as a PRF over the purpose label).
pub fn derive_key(master_key: &[u8], purpose: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(master_key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(purpose);
    mac.finalize().into_bytes().into()
}

/// Advances the epoch every tick until the engine is dropped or the host stops it. A thread of its own,
/// so that a busy runtime cannot delay the deadline.
fn spawn_ticker(engine: wasmtime::EngineWeak, stop: Arc<AtomicBool>) -> Result<()> {
    std::thread::Builder::new()
        .name("plugin-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                park_for(TICK);
                match engine.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })
        .map(|_| ())
        .map_err(|e| Error::Config(format!("plugin epoch thread: {e}")))
}

/// Waits about `d` without `thread::sleep` (time goes through the Clock elsewhere; this is a pacing
/// interval, not a time of day).
fn park_for(d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until {
        std::thread::park_timeout(until - Instant::now());
    }
}
