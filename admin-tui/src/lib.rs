//! `twofold-admin`: the console and the scriptable CLI over the daemon's admin socket, as a library so the
//! binary stays a thin shell and the benchmark can drive the console without a terminal.
//!
//! The console follows one shape: `app` holds the state and decides what to do with a key or a reply,
//! without I/O; `ui` draws that state (each screen is a widget); `console` runs the loop that feeds keys,
//! ticks and daemon replies to the state and draws it; `client` is the only code that talks to the daemon.

pub mod app;
pub mod cli;
pub mod client;
pub mod console;
pub mod keys;
pub mod policy_form;
pub mod render;
pub mod search;
pub mod ui;

#[cfg(test)]
mod snapshot_tests;
