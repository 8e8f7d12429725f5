//! `twofold-admin`: the console and the scriptable CLI over the daemon's admin socket, as a library so the
//! binary stays a thin shell and the benchmark can drive the console without a terminal.
//!
//! The console follows one shape: `screens` holds one file per screen with its state, its keys (one list
//! each, `keys`, read by the dispatch, the key line and the help) and its widget; `app` holds the state of
//! the whole console and decides what a key or a reply does, without I/O; `ui` draws the frame around the
//! active screen (top line, status, key line, dialogs, help); `console` runs the loop that feeds keys,
//! ticks and daemon replies to the state and draws it; `client` is the only code that talks to the daemon.
//! Dependencies go one way: console -> ui -> app -> screens -> keys, words.

pub mod app;
pub mod cli;
pub mod client;
pub mod console;
pub mod keys;
pub mod policy_form;
pub mod render;
pub mod screens;
pub mod search;
pub mod ui;
pub mod words;

#[cfg(test)]
mod snapshot_tests;
