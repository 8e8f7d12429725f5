//! Write a Twofold delivery plugin in one short file.
//!
//! ```ignore
//! use twofold_plugin_sdk::{DeliveryPlugin, Message, Outcome};
//!
//! struct Hello;
//!
//! impl DeliveryPlugin for Hello {
//!     fn deliver(message: Message) -> Outcome {
//!         twofold_plugin_sdk::log::info(&format!("code for {}", message.user));
//!         Outcome::Delivered("logged".into())
//!     }
//! }
//!
//! twofold_plugin_sdk::export_plugin!(Hello);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2`; see README.md for the whole way from an
//! empty folder to a plugin running in the daemon. [`outcome_of`] and [`HostError::outcome`] turn a
//! gateway's answer or the host's error into the outcome most gateways need (429 retried after its
//! `Retry-After`, 400 failed with the gateway's reason, an untrusted certificate failed at once);
//! [`mock::MockHost`] runs `deliver` in `cargo test` on the build machine.
//!
//! What a plugin can reach is only what the daemon grants it in its `[[plugin]]` table: its config
//! values, its secrets, HTTPS to allow-listed hosts, logging, and (for in-person plugins) the handover
//! queue. There is no filesystem, no socket, no environment and no clock: `std::fs`, `println!` and
//! `std::env` trap, and the delivery fails with a message naming the call. Log through [`log`] instead.

pub mod gateway;
#[cfg(not(target_arch = "wasm32"))]
pub mod mock;
pub mod phone;
pub mod response;
pub mod template;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit/delivery@0.2.0",
        world: "delivery-plugin",
        pub_export_macro: true,
        export_macro_name: "__export_delivery_plugin",
        default_bindings_module: "twofold_plugin_sdk::bindings",
    });
}

pub use bindings::twofold::delivery::host::{
    HostError, HostErrorKind, HttpRequest, HttpResponse, LogLevel,
};
pub use bindings::twofold::delivery::types::{Channel, Retry};
pub use bindings::{Message, Outcome};
pub use response::outcome_of;

/// The host's functions: the daemon's inside a component, the [`mock`] host in `cargo test`.
#[cfg(target_arch = "wasm32")]
use bindings::twofold::delivery::host;
#[cfg(not(target_arch = "wasm32"))]
use mock::host;

/// A delivery plugin: one function from a message to its outcome.
pub trait DeliveryPlugin {
    fn deliver(message: Message) -> Outcome;
}

impl<T: DeliveryPlugin> bindings::Guest for T {
    fn deliver(message: Message) -> Outcome {
        install_panic_hook();
        T::deliver(message)
    }
}

/// Exports a type implementing [`DeliveryPlugin`] as the component's `deliver` function.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ident) => {
        $crate::bindings::__export_delivery_plugin!($plugin with_types_in $crate::bindings);
    };
}

/// A panic's message goes to the daemon's log (standard error does not exist here); the panic then
/// aborts, which the daemon reports as a failed delivery, and the next delivery starts afresh.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let message = info.payload_as_str().unwrap_or("(no message)");
            match info.location() {
                Some(at) => log::error(&format!("panic: {message} (at {}:{})", at.file(), at.line())),
                None => log::error(&format!("panic: {message}")),
            }
        }));
    });
}

/// A value from the plugin's `[plugin.config]` table.
pub fn config(key: &str) -> Option<String> {
    host::config(key)
}

/// A config value, or `default` when the table does not set it.
pub fn config_or(key: &str, default: &str) -> String {
    config(key).unwrap_or_else(|| default.to_owned())
}

/// A config value the plugin cannot work without; the error names the key.
pub fn require_config(key: &str) -> Result<String, String> {
    config(key).ok_or_else(|| format!("config value `{key}` is not set in the plugin's [plugin.config] table"))
}

/// A secret granted in the plugin's `[plugin.secrets]` table.
pub fn secret(name: &str) -> Result<String, String> {
    host::secret(name)
}

/// One HTTP request through the daemon (allow-listed hosts only; see the host interface). Turn the
/// answer into an outcome with [`outcome_of`] and an error with [`HostError::outcome`].
pub fn http_request(request: &HttpRequest) -> Result<HttpResponse, HostError> {
    host::fetch(request)
}

/// Queues the current message for a helpdesk admin to hand over in person (`handover` capability).
pub fn handover(note: &str) -> Result<(), String> {
    host::handover(note)
}

/// The daemon's log, attributed to the plugin. The code is blanked out of every line.
pub mod log {
    use crate::host;
    use crate::LogLevel;

    pub fn debug(message: &str) {
        host::log(LogLevel::Debug, message);
    }
    pub fn info(message: &str) {
        host::log(LogLevel::Info, message);
    }
    pub fn warn(message: &str) {
        host::log(LogLevel::Warn, message);
    }
    pub fn error(message: &str) {
        host::log(LogLevel::Error, message);
    }
}

/// The channel's name as the configuration spells it.
pub fn channel_name(channel: Channel) -> &'static str {
    match channel {
        Channel::Sms => "sms",
        Channel::Voice => "voice",
        Channel::Email => "email",
        Channel::InPerson => "in_person",
    }
}
