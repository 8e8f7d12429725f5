//! End-to-end tests: the real `twofoldd` binary over real HTTPS, the real admin socket and CLI, codes from
//! the independent `oathtool`, QR codes read back by `zbarimg`. One test binary, so linking happens once.

mod api_keys;
mod bad_input;
mod cli;
mod clocked;
mod connections;
mod console;
mod delivery;
mod devices_and_backup_codes;
mod directory;
mod directory_identity;
mod directory_membership;
mod disk_full;
mod files;
mod guessing;
mod host;
mod lifecycle;
mod lockout;
mod packaging;
mod plugin_host;
mod plugin_loading;
mod plugin_sdk;
mod policies;
mod privacyidea;
mod readme;
mod replay;
mod restore;
mod secrets;
mod totp;

use std::time::Duration;

/// Waits, if needed, until at least `margin` seconds remain in the current 30 s step, so that a test
/// that computes a code and sends it does not straddle a step boundary.
pub async fn step_margin(margin: i64) {
    let into = twofold_tests::unix_now() % 30;
    if 30 - into < margin {
        tokio::time::sleep(Duration::from_secs((30 - into + 1) as u64)).await;
    }
}
