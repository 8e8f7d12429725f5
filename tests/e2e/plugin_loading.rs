//! What the daemon refuses when it loads a plugin, before any delivery: a component built for another
//! version of the delivery interface (0.1.0, the release before, or a later one), one that imports an
//! interface the daemon does not provide, and a file that is no component at all (wasmparser's message
//! shown whole, not cut at its first line break).

use anyhow::{bail, Context, Result};
use twofold_tests::delivery::plugins_dir;
use twofold_tests::Daemon;
use twofold_wire::admin::{AdminReply, AdminRequest};
use twofold_wire::delivery::PluginInfo;

/// `wasm` with every occurrence of `from` replaced by `to`, which must be as long: import names are
/// length-prefixed strings, so a same-length rename keeps the component well-formed.
pub(crate) fn renamed(wasm: &[u8], from: &str, to: &str) -> Result<Vec<u8>> {
    assert_eq!(from.len(), to.len(), "{from} and {to} differ in length");
    let (from, to) = (from.as_bytes(), to.as_bytes());
    let mut out = Vec::with_capacity(wasm.len());
    let (mut i, mut count) = (0, 0);
    while i < wasm.len() {
        if wasm[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
            count += 1;
        } else {
            out.push(wasm[i]);
            i += 1;
        }
    }
    if count == 0 {
        bail!(
            "{} not found in the component",
            String::from_utf8_lossy(from)
        );
    }
    Ok(out)
}

#[test]
fn other_wit_versions_unknown_imports_and_bad_files_are_refused_at_load_with_whole_messages(
) -> Result<()> {
    let dir = twofold_tests::TempDir::new("plugin-loading")?;
    let wasm = std::fs::read(plugins_dir()?.join("hostile.wasm"))?;
    let version = |v: &str| -> Result<Vec<u8>> {
        renamed(
            &renamed(
                &wasm,
                "twofold:delivery/host@0.2.0",
                &format!("twofold:delivery/host@{v}"),
            )?,
            "twofold:delivery/types@0.2.0",
            &format!("twofold:delivery/types@{v}"),
        )
    };
    std::fs::write(dir.path().join("newer.wasm"), version("0.9.0")?)?;
    // A plugin built with the SDK of the release before (same names, 0.1.0's interface).
    std::fs::write(dir.path().join("older.wasm"), version("0.1.0")?)?;
    // Rust's standard library imports wasi:cli/environment: renamed, it is an import of another package.
    let evil = renamed(
        &wasm,
        "wasi:cli/environment@0.2.6",
        "evil:backdoor/shell@10.0.0",
    )?;
    std::fs::write(dir.path().join("evil.wasm"), evil)?;
    std::fs::write(dir.path().join("junk.wasm"), b"not a component at all")?;
    let mut config = format!(
        "\n[delivery]\nplugin_dirs = [\"{}\"]\nsms = [\"newer\", \"older\", \"evil\", \"junk\", \"plain\"]\n",
        dir.path().display()
    );
    for (name, file) in [
        ("newer", "newer.wasm"),
        ("older", "older.wasm"),
        ("evil", "evil.wasm"),
        ("junk", "junk.wasm"),
    ] {
        config.push_str(&format!(
            "\n[[plugin]]\nname = \"{name}\"\nfile = \"{file}\"\n"
        ));
    }
    config.push_str(&format!(
        "\n[[plugin]]\nname = \"plain\"\nfile = \"{}\"\n",
        plugins_dir()?.join("hostile.wasm").display()
    ));
    let daemon = Daemon::start(&config)?;
    let mut admin = daemon.admin()?;
    let status: Vec<PluginInfo> = match admin.ok(&AdminRequest::PluginStatus)? {
        AdminReply::Plugins { plugins } => plugins,
        other => bail!("unexpected reply {other:?}"),
    };
    let error_of = |name: &str| -> Result<String> {
        let p = status.iter().find(|p| p.name == name).context("listed")?;
        if p.loaded {
            bail!("{name} loaded: {p:?}");
        }
        Ok(p.error.clone().unwrap_or_default())
    };
    let newer = error_of("newer")?;
    assert!(
        newer.contains("built for twofold:delivery@0.9.0; this daemon implements 0.2.0"),
        "{newer}"
    );
    let older = error_of("older")?;
    assert!(
        older.contains("built for twofold:delivery@0.1.0; this daemon implements 0.2.0 (rebuild it with this release's twofold-plugin-sdk"),
        "{older}"
    );
    let evil = error_of("evil")?;
    assert!(
        evil.contains("imports unknown evil:backdoor/shell"),
        "{evil}"
    );
    // wasmparser's message spans lines; all of it is shown, on one line.
    let junk = error_of("junk")?;
    assert!(
        junk.contains("expected=[") && junk.contains("actual=[") && !junk.contains('\n'),
        "{junk}"
    );
    // The unaltered component still loads: the refusals are about what was changed.
    let plain = status
        .iter()
        .find(|p| p.name == "plain")
        .context("listed")?;
    assert!(plain.loaded, "{plain:?}");
    Ok(())
}
