//! The README's walkthroughs, run as written, command by command, in one bash session against the real
//! daemon, so the README cannot drift from the product.
//!
//! A walkthrough is the ```sh block after a `<!-- walkthrough: NAME -->` line. The test lays out what
//! the README assumes, a checkout with a running daemon: `twofold-data` (the daemon's data folder) and
//! `target/release` (the built binaries) as links in the session's folder. It changes only what it
//! must: the API's port (the daemon listens on a free one), `cargo build` lines (skipped: the binaries
//! are built), and `read` lines, which get what the user would type (the code the SMTP server got).
//! Each command must exit 0, and print (or write to a `.json` file) no `{"error": ...}`; a `# =>`
//! line after a command names fields its JSON answer must have.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use twofold_tests::delivery::{find_code, SmtpServer, TestCa};
use twofold_tests::{workspace_binary, Daemon};

/// The address the README's commands talk to.
const README_API: &str = "127.0.0.1:8443";
/// The longest a single command may take (the restore walkthrough waits up to a minute for a new code).
const COMMAND_LIMIT: Duration = Duration::from_secs(120);

#[derive(Debug)]
struct Step {
    /// Line in README.md where the command starts.
    line: usize,
    command: String,
    /// `"key": "value"` pairs of a `# =>` line after it.
    expect: Vec<(String, String)>,
}

/// The walkthroughs in `readme`, by name, in order.
fn walkthroughs(readme: &str) -> Result<Vec<(String, Vec<Step>)>> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut found = Vec::new();
    let mut n = 0;
    while n < lines.len() {
        let Some(name) = lines[n]
            .trim()
            .strip_prefix("<!-- walkthrough: ")
            .and_then(|r| r.strip_suffix(" -->"))
        else {
            n += 1;
            continue;
        };
        if lines.get(n + 1).map(|l| l.trim()) != Some("```sh") {
            bail!(
                "README.md:{}: walkthrough {name} is not followed by ```sh",
                n + 1
            );
        }
        n += 2;
        let mut steps: Vec<Step> = Vec::new();
        while n < lines.len() && lines[n].trim() != "```" {
            let line = lines[n];
            let trimmed = line.trim();
            if let Some(expected) = trimmed.strip_prefix("# =>") {
                let step = steps
                    .last_mut()
                    .ok_or_else(|| anyhow!("README.md:{}: `# =>` before a command", n + 1))?;
                step.expect = string_fields(expected);
                n += 1;
                continue;
            }
            if trimmed.is_empty() || trimmed.starts_with('#') {
                n += 1;
                continue;
            }
            let start = n;
            let mut command = line.to_owned();
            while command.ends_with('\\') && n + 1 < lines.len() {
                n += 1;
                command.push('\n');
                command.push_str(lines[n]);
            }
            steps.push(Step {
                line: start + 1,
                command,
                expect: Vec::new(),
            });
            n += 1;
        }
        if n >= lines.len() {
            bail!("walkthrough {name}: no closing ```");
        }
        found.push((name.to_owned(), steps));
        n += 1;
    }
    Ok(found)
}

/// The `"key": "value"` pairs with string values in a `# =>` line (`{...}` and `...` are skipped).
fn string_fields(text: &str) -> Vec<(String, String)> {
    let parts: Vec<&str> = text.split('"').collect();
    let mut fields = Vec::new();
    // After split('"'): odd entries are inside quotes; a key is followed by `: ` and a quoted value.
    let mut i = 1;
    while i + 2 < parts.len() {
        if parts[i + 1].trim() == ":" {
            fields.push((parts[i].to_owned(), parts[i + 2].to_owned()));
            i += 4;
        } else {
            i += 2;
        }
    }
    fields
}

/// One bash, fed one command at a time; each command's output goes to files, and a line on bash's
/// own stdout says it ended and how.
struct Shell {
    child: Child,
    stdin: ChildStdin,
    ended: Receiver<String>,
    outputs: std::path::PathBuf,
}

impl Shell {
    fn start(folder: &Path) -> Result<Shell> {
        let outputs = folder.join(".walkthrough");
        std::fs::create_dir_all(&outputs)?;
        let mut child = Command::new("bash")
            .args(["--noprofile", "--norc", "-o", "pipefail"])
            .current_dir(folder)
            .env_remove("TWOFOLD_ADMIN_SOCKET")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("bash")?;
        let stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let (tx, ended) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Shell {
            child,
            stdin,
            ended,
            outputs,
        })
    }

    /// Runs `command` (with `typed` as the user's input, if any): its exit code, stdout, stderr.
    fn run(&mut self, command: &str, typed: Option<&str>) -> Result<(i32, String, String)> {
        let (out, err) = (self.outputs.join("out"), self.outputs.join("err"));
        // Braces, not a subshell: variables and exports stay for the next commands.
        let mut text = format!(
            "{{ {command}\n}} >'{}' 2>'{}'; echo \"__ended $?\"\n",
            out.display(),
            err.display()
        );
        if let Some(typed) = typed {
            text = format!(
                "{{ {command}\n}} <<<'{typed}' >'{}' 2>'{}'; echo \"__ended $?\"\n",
                out.display(),
                err.display()
            );
        }
        self.stdin.write_all(text.as_bytes())?;
        self.stdin.flush()?;
        let deadline = Instant::now() + COMMAND_LIMIT;
        let code = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .ended
                .recv_timeout(left)
                .map_err(|_| anyhow!("no end within {COMMAND_LIMIT:?}"))?;
            if let Some(code) = line.strip_prefix("__ended ") {
                break code.trim().parse::<i32>()?;
            }
        };
        Ok((
            code,
            std::fs::read_to_string(&out).unwrap_or_default(),
            std::fs::read_to_string(&err).unwrap_or_default(),
        ))
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The code in the newest mail to `to` that asks to enter one.
async fn mailed_code(smtp: &SmtpServer, to: &str) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let code = smtp
            .messages()?
            .iter()
            .rev()
            .filter(|m| m.contains(&format!("X-Envelope-To: {to}")))
            .find_map(|m| {
                let body = m.replace("=\r\n", "").replace("=\n", "");
                let at = body.find("enter this code:")?;
                find_code(&body[at..], 6)
            });
        if let Some(code) = code {
            return Ok(code);
        }
        if Instant::now() > deadline {
            bail!("no mail with a code to {to} within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_walkthroughs_run_as_written() -> Result<()> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))?;
    let found = walkthroughs(&readme)?;
    let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["first-code", "restore"], "the walkthroughs");

    let mail = twofold_tests::TempDir::new("twofold-readme-mail")?;
    let ca = TestCa::create(mail.path())?;
    let smtp = SmtpServer::start(mail.path(), &ca)?;
    let daemon = Daemon::start(&format!(
        "\n[email]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"starttls\"\nca_file = \"{}\"\nusername = \"{}\"\npassword_file = \"{}\"\nfrom = \"Twofold <twofold@example.com>\"\n",
        smtp.port,
        ca.ca_file.display(),
        smtp.username,
        smtp.password_file.display()
    ))?;
    // The checkout the README's commands assume, in the daemon's own test folder.
    let folder = daemon.dir.path();
    std::os::unix::fs::symlink(daemon.data_dir(), folder.join("twofold-data"))?;
    std::fs::create_dir_all(folder.join("target"))?;
    let built = workspace_binary("twofold-admin")?
        .parent()
        .ok_or_else(|| anyhow!("no target folder"))?
        .to_owned();
    std::os::unix::fs::symlink(built, folder.join("target/release"))?;

    let mut shell = Shell::start(folder)?;
    let mut ran = 0;
    for (name, steps) in &found {
        for step in steps {
            let command = step.command.replace(README_API, &daemon.api);
            if command.starts_with("cargo build") {
                continue;
            }
            let typed = if command.starts_with("read ") {
                Some(mailed_code(&smtp, "alice@example.com").await?)
            } else {
                None
            };
            let (code, out, err) = shell.run(&command, typed.as_deref())?;
            let at = format!("{name}, README.md:{}: {command}", step.line);
            if code != 0 {
                bail!("{at}\nexited {code}\nstdout: {out}\nstderr: {err}");
            }
            let json: Option<Value> = serde_json::from_str(out.trim()).ok();
            if let Some(error) = json.as_ref().and_then(|j| j.get("error")) {
                bail!("{at}\nanswered an error: {error}");
            }
            // An answer kept in a file (`> enroll.json`) is checked the same way.
            if let Some(file) = command
                .rsplit_once("> ")
                .map(|(_, f)| f.trim())
                .filter(|f| f.ends_with(".json"))
            {
                let kept: Value =
                    serde_json::from_str(&std::fs::read_to_string(folder.join(file))?)
                        .with_context(|| format!("{at}\n{file} is no JSON"))?;
                if let Some(error) = kept.get("error") {
                    bail!("{at}\n{file} holds an error: {error}");
                }
            }
            for (key, value) in &step.expect {
                let got = json.as_ref().and_then(|j| j.get(key));
                assert_eq!(
                    got.and_then(Value::as_str),
                    Some(value.as_str()),
                    "{at}\n{key} in {out}"
                );
            }
            ran += 1;
        }
    }
    // What the last commands did, seen from outside the shell: alice has the new phone only.
    let listed = std::fs::read_to_string(folder.join(".walkthrough/out"))?;
    let devices: Vec<&str> = listed.lines().filter(|l| l.contains(" created ")).collect();
    assert!(
        devices.len() == 1 && devices[0].contains("new phone"),
        "{listed}"
    );
    assert!(ran >= 20, "{ran} commands ran");
    Ok(())
}
