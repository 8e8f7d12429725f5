//! A real Active Directory for the tests: a throw-away Samba AD DC on 127.0.0.1.
//!
//! One DC serves the whole test run (it takes 10-20 s to provision and binds the standard LDAP ports);
//! each test works in its own OU, so tests do not see each other's changes. Facts behind the steps are
//! in shared/notes/samba-ad.md. The DC is a child of a thread that lives as long as the test process and
//! gets SIGTERM when the process ends (PR_SET_PDEATHSIG), so no DC outlives a test run.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::TempDir;

pub const REALM: &str = "CORP.EXAMPLE.TEST";
pub const BASE_DN: &str = "DC=corp,DC=example,DC=test";
pub const ADMIN_DN: &str = "CN=Administrator,CN=Users,DC=corp,DC=example,DC=test";
pub const ADMIN_PASSWORD: &str = "Tw0fold!Samba-Test";
/// Users seeded in `OU=Bulk` before the DC starts: more than AD's 1000-entry page cap.
pub const BULK_USERS: usize = 1200;

pub struct SambaDc {
    /// The DC's folder: configuration, databases, certificates, logs.
    pub dir: PathBuf,
    /// Removes the folder when the DC goes, unless it is a kept one (`start_kept`).
    _temporary: Option<TempDir>,
    /// The CA that signed the DC's certificate: what clients trust.
    pub ca_cert: PathBuf,
    /// A second, unrelated CA: trusting it instead must fail verification.
    pub wrong_ca_cert: PathBuf,
    pub password_file: PathBuf,
}

static DC: OnceLock<std::result::Result<SambaDc, String>> = OnceLock::new();
/// Held for the life of the process that runs the DC: the DC binds the fixed LDAP ports, so a second
/// test process on the machine (another checkout, a benchmark) waits here instead of failing to bind.
static PORTS_LOCK: OnceLock<std::fs::File> = OnceLock::new();

/// Waits (without bound: the holder's DC dies with its process) for this machine's LDAP ports.
fn lock_ldap_ports() -> Result<()> {
    let path = std::env::temp_dir().join("twofold-samba-dc.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("open {}", path.display()))?;
    file.lock()
        .with_context(|| format!("lock {}", path.display()))?;
    let _ = PORTS_LOCK.set(file);
    Ok(())
}

/// The test run's DC, provisioned and started on first use.
pub fn shared_dc() -> Result<&'static SambaDc> {
    DC.get_or_init(|| SambaDc::provision_and_start(BULK_USERS).map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow!("Samba AD DC: {e}"))
}

fn run(command: &mut Command) -> Result<String> {
    let output = command.output().with_context(|| format!("{command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A CA certificate and key (webpki refuses a self-signed CA certificate as a server's own).
fn make_ca(dir: &Path, name: &str) -> Result<(PathBuf, PathBuf)> {
    let key = dir.join(format!("{name}.key"));
    let cert = dir.join(format!("{name}.pem"));
    run(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj",
        ])
        .arg(format!("/CN={name}"))
        .args([
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert))?;
    Ok((cert, key))
}

/// A server certificate for 127.0.0.1 and `cn`, signed by the CA.
fn make_server_cert(dir: &Path, ca: &(PathBuf, PathBuf), cn: &str) -> Result<(PathBuf, PathBuf)> {
    let key = dir.join("dc.key");
    let csr = dir.join("dc.csr");
    let cert = dir.join("dc.pem");
    let ext = dir.join("dc.ext");
    run(Command::new("openssl")
        .args(["req", "-newkey", "rsa:2048", "-nodes", "-subj"])
        .arg(format!("/CN={cn}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&csr))?;
    std::fs::write(
        &ext,
        format!("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost,DNS:{cn}\n"),
    )?;
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "30", "-in"])
        .arg(&csr)
        .arg("-CA")
        .arg(&ca.0)
        .arg("-CAkey")
        .arg(&ca.1)
        .arg("-CAcreateserial")
        .arg("-extfile")
        .arg(&ext)
        .arg("-out")
        .arg(&cert))?;
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok((cert, key))
}

/// LDIF for `count` users in `ou`, without passwords (userAccountControl 544), some with non-ASCII
/// names, every tenth without a mail address. Past 5,000 users they are spread over sub-OUs of 1,000:
/// ldb keeps an OU's children in one index record, so adding to a huge OU costs more with every entry.
pub fn bulk_ldif(ou: &str, count: usize) -> String {
    let mut ldif = format!("dn: OU={ou},{BASE_DN}\nobjectClass: organizationalUnit\n\n");
    let parts = count > 5000;
    for i in 1..=count {
        let parent = if parts {
            let part = format!("OU=Part{:03},OU={ou},{BASE_DN}", i / 1000);
            if i == 1 || i % 1000 == 0 {
                ldif.push_str(&format!("dn: {part}\nobjectClass: organizationalUnit\n\n"));
            }
            part
        } else {
            format!("OU={ou},{BASE_DN}")
        };
        let name = format!("{}{i:05}", ou.to_lowercase());
        let display = format!("Jürgen Ærø {i}");
        ldif.push_str(&format!(
            "dn: CN={name},{parent}\nobjectClass: user\nsAMAccountName: {name}\nuserPrincipalName: {name}@corp.example.test\ndisplayName:: {}\nmobile: +41 79 {:03} {:02} {:02}\nuserAccountControl: 544\n",
            data_encoding::BASE64.encode(display.as_bytes()),
            i % 1000,
            i % 100,
            (i / 100) % 100
        ));
        if i % 10 != 0 {
            ldif.push_str(&format!("mail: {name}@corp.example.test\n"));
        }
        ldif.push('\n');
    }
    ldif
}

/// The DN `bulk_ldif(ou, count)` gives its user number `i` (1-based).
pub fn bulk_user_dn(ou: &str, count: usize, i: usize) -> String {
    let name = format!("{}{i:05}", ou.to_lowercase());
    if count > 5000 {
        format!("CN={name},OU=Part{:03},OU={ou},{BASE_DN}", i / 1000)
    } else {
        format!("CN={name},OU={ou},{BASE_DN}")
    }
}

/// Nested groups seeded under `OU=Groups` with the bulk users (`nested_groups_ldif`): `groups` groups
/// in `depth` levels. Each level but the last has a tenth of the groups of the level below it (10,000
/// groups 3 deep: 100 top, 1,000 mid, 8,900 leaf groups); each group is a member of one group of the
/// level above (leaf `j` of mid `j % mids`, mid `m` of top `m % tops`), and each user of one to three
/// leaf groups (`user_leaves`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NestedGroups {
    pub groups: usize,
    pub depth: usize,
}

impl NestedGroups {
    /// Groups per level, the top level first.
    pub fn levels(&self) -> Vec<usize> {
        if self.groups == 0 || self.depth == 0 {
            return Vec::new();
        }
        let mut levels: Vec<usize> = (0..self.depth - 1)
            .map(|k| {
                let down = u32::try_from(self.depth - 1 - k).unwrap_or(u32::MAX);
                (self.groups / 10usize.saturating_pow(down)).max(1)
            })
            .collect();
        let upper: usize = levels.iter().sum();
        levels.push(self.groups.saturating_sub(upper).max(1));
        levels
    }

    /// The common name of group `j` (0-based) of `level` (0 = top).
    pub fn name(&self, level: usize, j: usize) -> String {
        let kind = if level == 0 {
            "top".to_owned()
        } else if level + 1 == self.depth {
            "leaf".to_owned()
        } else {
            format!("mid{level}-")
        };
        format!("{kind}{j:05}")
    }

    /// The DN of group `j` of `level`: sub-OUs of 1,000 groups per level under `OU=Groups`.
    pub fn dn(&self, level: usize, j: usize) -> String {
        format!(
            "CN={},OU=L{level}P{:03},OU=Groups,{BASE_DN}",
            self.name(level, j),
            j / 1000
        )
    }

    /// The group of the level above that group `j` of `level` is a member of.
    pub fn parent(&self, level: usize, j: usize) -> Option<usize> {
        let levels = self.levels();
        (level > 0).then(|| j % levels[level - 1])
    }

    /// The top group above group `j` of `level`.
    pub fn top_of(&self, mut level: usize, mut j: usize) -> usize {
        while let Some(p) = self.parent(level, j) {
            level -= 1;
            j = p;
        }
        j
    }

    /// The leaf groups bulk user `i` (1-based) is a direct member of: one to three, two on average.
    pub fn user_leaves(&self, i: usize) -> Vec<usize> {
        let leaves = self.levels().last().copied().unwrap_or(0);
        if leaves == 0 {
            return Vec::new();
        }
        let mut out = vec![i % leaves];
        for (extra, (mul, add)) in [(7, 1), (13, 5)].into_iter().enumerate() {
            if i % 3 > extra {
                let j = (i * mul + add) % leaves;
                if !out.contains(&j) {
                    out.push(j);
                }
            }
        }
        out
    }
}

/// LDIF for the nested groups of `plan` over `users` bulk users of `OU=Bulk` (`bulk_ldif`): leaf groups
/// first (their `member` the users), then each level up, so that every `member` names an entry already
/// added. Samba's linked-attribute module writes the users' and groups' `memberOf`.
pub fn nested_groups_ldif(plan: &NestedGroups, users: usize) -> String {
    let levels = plan.levels();
    let mut ldif = format!("dn: OU=Groups,{BASE_DN}\nobjectClass: organizationalUnit\n\n");
    let Some(&leaves) = levels.last() else {
        return ldif;
    };
    let mut members: Vec<Vec<String>> = vec![Vec::new(); leaves];
    for i in 1..=users {
        for j in plan.user_leaves(i) {
            members[j].push(bulk_user_dn("Bulk", users, i));
        }
    }
    for level in (0..levels.len()).rev() {
        if level + 1 < levels.len() {
            let mut next: Vec<Vec<String>> = vec![Vec::new(); levels[level]];
            for j in 0..levels[level + 1] {
                if let Some(p) = plan.parent(level + 1, j) {
                    next[p].push(plan.dn(level + 1, j));
                }
            }
            members = next;
        }
        for (j, group_members) in members.iter().enumerate() {
            if j % 1000 == 0 {
                ldif.push_str(&format!(
                    "dn: OU=L{level}P{:03},OU=Groups,{BASE_DN}\nobjectClass: organizationalUnit\n\n",
                    j / 1000
                ));
            }
            let name = plan.name(level, j);
            ldif.push_str(&format!(
                "dn: {}\nobjectClass: group\nsAMAccountName: {name}\n",
                plan.dn(level, j)
            ));
            for m in group_members {
                ldif.push_str(&format!("member: {m}\n"));
            }
            ldif.push('\n');
        }
    }
    ldif
}

impl SambaDc {
    /// Provisions a DC in a temporary folder, seeds `bulk_users` in `OU=Bulk` and starts it.
    pub fn provision_and_start(bulk_users: usize) -> Result<SambaDc> {
        SambaDc::provision_and_start_with(bulk_users, NestedGroups::default())
    }

    /// As `provision_and_start`, with nested groups over the bulk users.
    pub fn provision_and_start_with(bulk_users: usize, groups: NestedGroups) -> Result<SambaDc> {
        let started = Instant::now();
        let dir = TempDir::new("twofold-samba")?;
        let d = dir.path().to_owned();
        provision(&d, bulk_users, groups, Backend::Tdb)?;
        SambaDc::start(d, Some(dir), bulk_users, started)
    }

    /// As `provision_and_start`, but the seeded directory is kept in `keep` and reused by later calls
    /// with the same `bulk_users`: seeding 100,000 users takes minutes. It is reused in place, not
    /// copied (1.5 GB at 100,000 users, on a shared disk), so a caller that changes entries must leave
    /// them usable by the next run (syncbench gives each run's changes values of their own).
    pub fn start_kept(
        keep: &Path,
        bulk_users: usize,
        groups: NestedGroups,
        backend: Backend,
    ) -> Result<SambaDc> {
        let started = Instant::now();
        let work = SambaDc::seed_kept(keep, bulk_users, groups, backend)?;
        SambaDc::start(work, None, bulk_users, started)
    }

    /// The seeding of `start_kept` alone (none if `keep` holds it already): the DC's folder.
    pub fn seed_kept(
        keep: &Path,
        bulk_users: usize,
        groups: NestedGroups,
        backend: Backend,
    ) -> Result<PathBuf> {
        let work = keep.join("dc");
        let marker = keep.join("seeded-users");
        // "N" for the default tdb backend (as kept folders always said), "N mdb" for LMDB, and
        // " groups G depth D" after it when nested groups were seeded.
        let mut seeded = match backend {
            Backend::Tdb => bulk_users.to_string(),
            Backend::Mdb => format!("{bulk_users} mdb"),
        };
        if groups.groups > 0 {
            seeded.push_str(&format!(" groups {} depth {}", groups.groups, groups.depth));
        }
        let reusable =
            std::fs::read_to_string(&marker).is_ok_and(|n| n.trim() == seeded) && work.is_dir();
        if reusable {
            eprintln!(
                "reusing the directory of {bulk_users} users kept in {}",
                keep.display()
            );
        } else {
            // Only what this function made: `keep` may hold other things.
            remove_file_if_present(&marker)?;
            remove_dir_if_present(&work)?;
            std::fs::create_dir_all(&work)?;
            provision(&work, bulk_users, groups, backend)?;
            // Written last: an interrupted seeding is never taken for a finished one.
            std::fs::write(&marker, format!("{seeded}\n"))?;
        }
        Ok(work)
    }

    /// The DC's `highestCommittedUSN`: it grows with every change, so it tells runs apart.
    pub fn highest_usn(&self) -> Result<u64> {
        let out = run(self.ldap_tool("ldapsearch").args([
            "-LLL",
            "-b",
            "",
            "-s",
            "base",
            "highestCommittedUSN",
        ]))?;
        out.lines()
            .find_map(|l| l.strip_prefix("highestCommittedUSN: "))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| anyhow!("no highestCommittedUSN in the rootDSE: {out}"))
    }

    fn start(
        d: PathBuf,
        temporary: Option<TempDir>,
        bulk_users: usize,
        started: Instant,
    ) -> Result<SambaDc> {
        // Provisioning and seeding touch only the DC's folder; the ports are taken from here on.
        lock_ldap_ports()?;
        start_samba(&d.join("etc/smb.conf"), &d.join("log/samba.out"))?;
        let dc = SambaDc {
            ca_cert: d.join("tls/test-ca.pem"),
            wrong_ca_cert: d.join("tls/other-ca.pem"),
            password_file: d.join("bind-password"),
            dir: d,
            _temporary: temporary,
        };
        // A large directory takes a while to load when the machine is busy.
        dc.wait_ready(Duration::from_secs(240))?;
        eprintln!(
            "samba AD DC ready in {:.1} s ({bulk_users} bulk users)",
            started.elapsed().as_secs_f64()
        );
        Ok(dc)
    }

    fn wait_ready(&self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let probe = self
                .ldap_tool("ldapsearch")
                .args(["-b", "", "-s", "base", "highestCommittedUSN"])
                .output()?;
            if probe.status.success() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "Samba did not answer LDAPS within {limit:?}: {}",
                    String::from_utf8_lossy(&probe.stderr)
                );
            }
            std::thread::park_timeout(Duration::from_millis(200));
        }
    }

    /// An OpenLDAP client tool bound as Administrator over LDAPS, trusting the DC's certificate.
    pub fn ldap_tool(&self, tool: &str) -> Command {
        let mut c = Command::new(tool);
        c.env("LDAPTLS_CACERT", &self.ca_cert).args([
            "-H",
            "ldaps://127.0.0.1",
            "-x",
            "-D",
            ADMIN_DN,
            "-w",
            ADMIN_PASSWORD,
        ]);
        c
    }

    /// Applies LDIF changes (adds, modifies, renames, deletes) over LDAPS.
    pub fn modify(&self, ldif: &str) -> Result<()> {
        let mut child = self
            .ldap_tool("ldapmodify")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .ok_or_else(|| anyhow!("no stdin"))?
            .write_all(ldif.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "ldapmodify failed: {}\n{ldif}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// The `[[directory]]` table for a daemon syncing `base` from this DC.
    pub fn directory_config(&self, name: &str, url: &str, base: &str, extra: &str) -> String {
        format!(
            "\n[[directory]]\nname = \"{name}\"\nurls = [\"{url}\"]\nca_file = \"{}\"\nbind_dn = \"{ADMIN_DN}\"\nbind_password_file = \"{}\"\nuser_bases = [\"{base}\"]\nsync_interval_seconds = 3600\n{extra}\n",
            self.ca_cert.display(),
            self.password_file.display()
        )
    }
}

/// Provisions a DC into `d` (empty) with its certificates, and seeds `bulk_users` in `OU=Bulk`.
/// The DC's database backend (`samba-tool domain provision --backend-store`). They differ in what the
/// incremental sync's `(uSNChanged>=N)` costs: ldb answers a `>=` from an index only on LMDB, which can
/// iterate index keys in order; on tdb it reads every candidate entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Tdb,
    Mdb,
}

fn provision(d: &Path, bulk_users: usize, groups: NestedGroups, backend: Backend) -> Result<()> {
    let started = Instant::now();
    for sub in ["tls", "log", "run", "cache"] {
        std::fs::create_dir_all(d.join(sub))?;
    }
    let ca = make_ca(&d.join("tls"), "test-ca")?;
    let (cert, key) = make_server_cert(
        &d.join("tls"),
        &ca,
        &format!("dc1.{}", REALM.to_lowercase()),
    )?;
    // A second, unrelated CA: `SambaDc::wrong_ca_cert`.
    make_ca(&d.join("tls"), "other-ca")?;
    let opt = |o: String| format!("--option={o}");
    run(Command::new("samba-tool")
        .args([
            "domain",
            "provision",
            "--use-rfc2307",
            "--server-role=dc",
            "--dns-backend=NONE",
        ])
        .arg(format!("--realm={REALM}"))
        .args(["--domain=CORP", "--host-name=dc1"])
        .arg(format!("--adminpass={ADMIN_PASSWORD}"))
        .arg(format!("--targetdir={}", d.display()))
        .arg(match backend {
            Backend::Tdb => "--backend-store=tdb",
            Backend::Mdb => "--backend-store=mdb",
        })
        .arg(opt("interfaces = lo".into()))
        .arg(opt("bind interfaces only = yes".into()))
        .arg(opt(format!("log file = {}/log/log.samba", d.display())))
        .arg(opt(format!("pid directory = {}/run", d.display())))
        .arg(opt(format!("ncalrpc dir = {}/run/ncalrpc", d.display())))
        .arg(opt(format!(
            "winbindd socket directory = {}/run/winbindd",
            d.display()
        )))
        .arg(opt("tls enabled = yes".into()))
        .arg(opt(format!("tls keyfile = {}", key.display())))
        .arg(opt(format!("tls certfile = {}", cert.display())))
        .arg(opt("tls cafile = ".into())))?;
    let conf = d.join("etc/smb.conf");
    let text = std::fs::read_to_string(&conf)?;
    // Only the directory services; and allow simple binds over plain LDAP so the test can also
    // show that Twofold itself refuses plain LDAP unless told otherwise.
    let text = text.replacen(
        "[global]\n",
        "[global]\n\tserver services = ldap, cldap, kdc\n\tldap server require strong auth = no\n",
        1,
    );
    std::fs::write(&conf, text)?;
    if bulk_users > 0 {
        // ldb wraps each add in a sub-transaction whose commit copies every index list the add
        // touched (objectClass=user holds every user): each add costs in proportion to the
        // directory, 1,000 users took 2.8 s into an empty one and 19 s past 8,000. Batch mode
        // (what `samba-tool domain join` uses) drops the sub-transactions: 1.6 s per 1,000 at any
        // size. A failed add then aborts its whole chunk, which is fine for a fresh directory.
        let mut ldif = bulk_ldif("Bulk", bulk_users);
        if groups.groups > 0 {
            ldif.push_str(&nested_groups_ldif(&groups, bulk_users));
        }
        let mut chunk = String::new();
        let mut in_chunk = 0;
        let mut loaded = 0;
        let entries: Vec<&str> = ldif
            .split("\n\n")
            .filter(|e| !e.trim().is_empty())
            .collect();
        for (i, entry) in entries.iter().enumerate() {
            chunk.push_str(entry);
            chunk.push_str("\n\n");
            in_chunk += 1;
            if in_chunk == SEED_CHUNK || i + 1 == entries.len() {
                let path = d.join("bulk.ldif");
                std::fs::write(&path, &chunk)?;
                // At the lowest priority: seeding 100,000 users runs alongside other engineers' builds
                // and tests on a shared machine, and nothing waits on it but its own run.
                run(Command::new("nice")
                    .args(["-n", "19", "ldbadd"])
                    .arg(format!("--configfile={}", conf.display()))
                    .arg("-H")
                    .arg(d.join("private/sam.ldb"))
                    .args(["-o", "batch_mode:1"])
                    .arg(&path))?;
                loaded += in_chunk;
                if entries.len() > 10_000 {
                    eprintln!(
                        "seeded {loaded}/{} entries in {:.0} s",
                        entries.len(),
                        started.elapsed().as_secs_f64()
                    );
                }
                chunk.clear();
                in_chunk = 0;
            }
        }
    }
    std::fs::write(d.join("bind-password"), format!("{ADMIN_PASSWORD}\n"))?;
    Ok(())
}

/// Entries per `ldbadd` run (one transaction each).
const SEED_CHUNK: usize = 10_000;

fn remove_file_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

fn remove_dir_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Starts `samba -i` from a thread that never ends, so PR_SET_PDEATHSIG fires only when the test
/// process itself exits.
fn start_samba(conf: &Path, out: &Path) -> Result<()> {
    let conf = conf.to_owned();
    let log = std::fs::File::create(out)?;
    let (tx, rx) = std::sync::mpsc::channel::<std::result::Result<(), String>>();
    std::thread::Builder::new()
        .name("samba-dc".into())
        .spawn(move || {
            let mut command = Command::new("samba");
            command.arg("-i").arg("-s").arg(&conf).stdin(Stdio::null());
            match log.try_clone() {
                Ok(l) => {
                    command.stdout(l);
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            }
            command.stderr(log);
            // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec here.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                        .map_err(std::io::Error::from)
                });
            }
            match command.spawn() {
                Ok(mut child) => {
                    let _ = tx.send(Ok(()));
                    let _ = child.wait();
                }
                Err(e) => {
                    let _ = tx.send(Err(format!("starting samba: {e}")));
                }
            }
            loop {
                std::thread::park();
            }
        })?;
    rx.recv()?.map_err(|e| anyhow!(e))
}
