//! The LDAP side: connecting to a domain controller over TLS, binding, reading the rootDSE, paged searches.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ldap3::controls::{Control, ControlType, PagedResults, RawControl};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};

use crate::config::DirectoryConfig;

/// Returns the DC's deleted objects along with live ones (needed to see deletions incrementally).
pub const SHOW_DELETED_OID: &str = "1.2.840.113556.1.4.417";
const SYSTEM_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

pub type LdapResult<T> = std::result::Result<T, String>;

pub struct Connection {
    ldap: Ldap,
    pub url: String,
    timeout: Duration,
    /// Time spent in requests to the DC since connecting (see `SyncStatus::directory_ms`).
    pub waited: Duration,
}

/// Facts from the rootDSE.
pub struct RootDse {
    pub highest_usn: u64,
    pub naming_context: String,
    /// Identifies the DC: USNs are per DC, so a cursor only holds on the DC that issued it.
    pub server: String,
}

fn read_password(cfg: &DirectoryConfig) -> LdapResult<String> {
    let path = match (&cfg.bind_password_file, &cfg.bind_password_credential) {
        (Some(file), _) => file.clone(),
        (None, Some(name)) => {
            let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or_else(|| {
                format!(
                    "credential {name}: CREDENTIALS_DIRECTORY is not set (not started by systemd?)"
                )
            })?;
            Path::new(&dir).join(name)
        }
        (None, None) => return Err("no bind password configured".into()),
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("bind password {}: {e}", path.display()))?;
    Ok(text.trim_end_matches(['\r', '\n']).to_owned())
}

fn tls_config(cfg: &DirectoryConfig) -> LdapResult<Arc<rustls::ClientConfig>> {
    let path = cfg.ca_file.clone().unwrap_or_else(|| SYSTEM_CA_FILE.into());
    let pem = std::fs::read(&path).map_err(|e| format!("CA file {}: {e}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("CA file {}: {e}", path.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("CA file {}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("CA file {}: no certificate found", path.display()));
    }
    Ok(Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

/// Connects and binds to the first domain controller that answers; errors name each one tried.
pub async fn connect(cfg: &DirectoryConfig) -> LdapResult<Connection> {
    let password = read_password(cfg)?;
    let tls = tls_config(cfg)?;
    let mut failures = Vec::new();
    for url in &cfg.urls {
        match connect_with(cfg, url, &password, tls.clone()).await {
            Ok(conn) => return Ok(conn),
            Err(e) => failures.push(e),
        }
    }
    Err(failures.join("; "))
}

/// Connects and binds to the domain controller at `url` (a second connection to the DC another one is
/// bound to: USNs are per DC, so a search that goes with another's cursor must ask the same one).
pub async fn connect_url(cfg: &DirectoryConfig, url: &str) -> LdapResult<Connection> {
    connect_with(cfg, url, &read_password(cfg)?, tls_config(cfg)?).await
}

async fn connect_with(
    cfg: &DirectoryConfig,
    url: &str,
    password: &str,
    tls: Arc<rustls::ClientConfig>,
) -> LdapResult<Connection> {
    let timeout = Duration::from_secs(cfg.timeout_seconds.max(1));
    let starttls = cfg.starttls && url.starts_with("ldap://");
    let settings = LdapConnSettings::new()
        .set_config(tls)
        .set_starttls(starttls)
        .set_conn_timeout(timeout);
    let started = Instant::now();
    let (conn, mut ldap) = LdapConnAsync::with_settings(settings, url)
        .await
        .map_err(|e| explain_tls(format!("{url}: {e}")))?;
    ldap3::drive!(conn);
    match ldap
        .with_timeout(timeout)
        .simple_bind(&cfg.bind_dn, password)
        .await
        .and_then(|r| r.success())
    {
        Ok(_) => Ok(Connection {
            ldap,
            url: url.to_owned(),
            timeout,
            waited: started.elapsed(),
        }),
        Err(e) => {
            let _ = ldap.unbind().await;
            Err(explain_tls(format!(
                "{url}: bind as {} failed: {e}",
                cfg.bind_dn
            )))
        }
    }
}

impl Connection {
    pub async fn root_dse(&mut self) -> LdapResult<RootDse> {
        let started = Instant::now();
        let (entries, _) = self
            .ldap
            .with_timeout(self.timeout)
            .search(
                "",
                Scope::Base,
                "(objectClass=*)",
                vec![
                    "highestCommittedUSN",
                    "defaultNamingContext",
                    "dsServiceName",
                ],
            )
            .await
            .and_then(|r| r.success())
            .map_err(|e| format!("{}: reading the rootDSE: {e}", self.url))?;
        self.waited += started.elapsed();
        let entry = entries
            .into_iter()
            .next()
            .map(SearchEntry::construct)
            .ok_or("empty rootDSE")?;
        let get = |name: &str| entry.attrs.get(name).and_then(|v| v.first()).cloned();
        Ok(RootDse {
            highest_usn: get("highestCommittedUSN")
                .and_then(|v| v.parse().ok())
                .ok_or("rootDSE has no highestCommittedUSN")?,
            naming_context: get("defaultNamingContext")
                .ok_or("rootDSE has no defaultNamingContext")?,
            server: get("dsServiceName").unwrap_or_else(|| self.url.clone()),
        })
    }

    /// One page of a paged subtree search; referrals are ignored, never chased.
    pub async fn page(&mut self, search: &mut PagedSearch) -> LdapResult<Option<Vec<SearchEntry>>> {
        if search.done {
            return Ok(None);
        }
        let mut controls = search.extra.clone();
        controls.push(
            PagedResults {
                size: search.size,
                cookie: search.cookie.clone(),
            }
            .into(),
        );
        let started = Instant::now();
        let (entries, result) = self
            .ldap
            .with_timeout(self.timeout)
            .with_controls(controls)
            .search(
                &search.base,
                Scope::Subtree,
                &search.filter,
                &search.attributes,
            )
            .await
            .and_then(|r| r.success())
            .map_err(|e| format!("{}: search under {}: {e}", self.url, search.base))?;
        self.waited += started.elapsed();
        search.pages += 1;
        search.cookie = result
            .ctrls
            .iter()
            .find_map(|c| match c {
                Control(Some(ControlType::PagedResults), raw) if raw.val.is_some() => {
                    Some(raw.parse::<PagedResults>().cookie)
                }
                _ => None,
            })
            .unwrap_or_default();
        search.done = search.cookie.is_empty();
        Ok(Some(
            entries
                .into_iter()
                .filter(|e| !e.is_ref() && !e.is_intermediate())
                .map(SearchEntry::construct)
                .collect(),
        ))
    }

    /// Every value of `attr` in `entry`, asking the DC for the further ranges when it sent only the
    /// first: Windows AD answers a multi-valued attribute longer than MaxValRange (1,500 by default)
    /// as `member;range=0-1499`, and the rest only to a base search for `member;range=1500-*`.
    pub async fn all_values(&mut self, entry: &SearchEntry, attr: &str) -> LdapResult<Vec<String>> {
        let mut values = Vec::new();
        let mut part = value_range(entry, attr)?;
        loop {
            let Some(next) = part.next else {
                values.extend(part.values);
                return Ok(values);
            };
            values.extend(part.values);
            let wanted = format!("{attr};range={next}-*");
            let started = Instant::now();
            let (entries, _) = self
                .ldap
                .with_timeout(self.timeout)
                .search(&entry.dn, Scope::Base, "(objectClass=*)", vec![&wanted])
                .await
                .and_then(|r| r.success())
                .map_err(|e| format!("{}: reading {wanted} of {}: {e}", self.url, entry.dn))?;
            self.waited += started.elapsed();
            let more = entries
                .into_iter()
                .map(SearchEntry::construct)
                .find(|e| !e.dn.is_empty())
                .ok_or_else(|| {
                    format!("{}: {} is gone while reading {wanted}", self.url, entry.dn)
                })?;
            part = value_range(&more, attr)?;
            if part.start != Some(next) {
                return Err(format!(
                    "{}: asked for {wanted} of {}, got a range starting at {:?}",
                    self.url, entry.dn, part.start
                ));
            }
        }
    }

    /// The domain's lockoutDuration in seconds (see `entry::lockout_duration_seconds`), read from the
    /// domain object; None when the domain does not say.
    pub async fn lockout_duration(&mut self, naming_context: &str) -> LdapResult<Option<i64>> {
        let started = Instant::now();
        let (entries, _) = self
            .ldap
            .with_timeout(self.timeout)
            .search(
                naming_context,
                Scope::Base,
                "(objectClass=*)",
                vec!["lockoutDuration"],
            )
            .await
            .and_then(|r| r.success())
            .map_err(|e| {
                format!(
                    "{}: reading lockoutDuration of {naming_context}: {e}",
                    self.url
                )
            })?;
        self.waited += started.elapsed();
        Ok(entries
            .into_iter()
            .map(SearchEntry::construct)
            .find_map(|e| {
                e.attrs
                    .into_iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("lockoutDuration"))
                    .and_then(|(_, v)| v.into_iter().next())
            })
            .and_then(|v| v.trim().parse::<i64>().ok())
            .and_then(super::entry::lockout_duration_seconds))
    }

    pub async fn close(mut self) {
        let _ = self.ldap.unbind().await;
    }
}

/// A search read page by page with the paged-results control (RFC 2696): a real AD returns at most
/// MaxPageSize (1000) entries per request, and at most that many in all to a search without paging.
pub struct PagedSearch {
    base: String,
    filter: String,
    attributes: Vec<String>,
    size: i32,
    extra: Vec<RawControl>,
    cookie: Vec<u8>,
    done: bool,
    pub pages: u64,
}

impl PagedSearch {
    pub fn new(base: &str, filter: &str, attributes: Vec<String>, size: u32) -> PagedSearch {
        PagedSearch {
            base: base.to_owned(),
            filter: filter.to_owned(),
            attributes,
            size: i32::try_from(size).unwrap_or(1000),
            extra: Vec::new(),
            cookie: Vec::new(),
            done: false,
            pages: 0,
        }
    }

    /// Includes deleted objects (the show-deleted control).
    pub fn show_deleted(mut self) -> PagedSearch {
        self.extra.push(RawControl {
            ctype: SHOW_DELETED_OID.to_owned(),
            crit: true,
            val: None,
        });
        self
    }
}

/// One answer's share of a multi-valued attribute.
#[derive(Debug, PartialEq, Eq)]
struct ValueRange {
    values: Vec<String>,
    /// The first index of these values when the answer was ranged.
    start: Option<u64>,
    /// Where the next range starts; None when these were the last values.
    next: Option<u64>,
}

/// Reads `attr` from an entry as sent in full (`member`) or in a range (`member;range=0-1499`,
/// the last one ending in `*`). An absent attribute has no values.
fn value_range(entry: &SearchEntry, attr: &str) -> LdapResult<ValueRange> {
    let prefix = format!("{};range=", attr.to_ascii_lowercase());
    for (key, values) in &entry.attrs {
        let lower = key.to_ascii_lowercase();
        if lower == attr.to_ascii_lowercase() {
            return Ok(ValueRange {
                values: values.clone(),
                start: None,
                next: None,
            });
        }
        let Some(range) = lower.strip_prefix(&prefix) else {
            continue;
        };
        let bad = || format!("{}: cannot read the range in {key}", entry.dn);
        let (low, high) = range.split_once('-').ok_or_else(bad)?;
        let low: u64 = low.parse().map_err(|_| bad())?;
        let next = match high {
            "*" => None,
            high => Some(
                high.parse::<u64>()
                    .ok()
                    .filter(|h| *h >= low)
                    .ok_or_else(bad)?
                    + 1,
            ),
        };
        return Ok(ValueRange {
            values: values.clone(),
            start: Some(low),
            next,
        });
    }
    Ok(ValueRange {
        values: Vec::new(),
        start: None,
        next: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(attrs: &[(&str, &[&str])]) -> SearchEntry {
        SearchEntry {
            dn: "CN=g,DC=x".into(),
            attrs: attrs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.iter().map(|s| (*s).to_owned()).collect()))
                .collect(),
            bin_attrs: std::collections::HashMap::new(),
        }
    }

    #[test]
    fn ranged_values_say_where_the_next_range_starts() {
        let range = |start, next, values: &[&str]| ValueRange {
            values: values.iter().map(|s| (*s).to_owned()).collect(),
            start,
            next,
        };
        let table = [
            (
                entry(&[("member", &["a", "b"])]),
                range(None, None, &["a", "b"]),
            ),
            (entry(&[("Member", &["a"])]), range(None, None, &["a"])),
            (entry(&[]), range(None, None, &[])),
            (
                entry(&[("member;range=0-1499", &["a"])]),
                range(Some(0), Some(1500), &["a"]),
            ),
            (
                entry(&[("member;range=1500-*", &["b"])]),
                range(Some(1500), None, &["b"]),
            ),
            (entry(&[("memberOf", &["x"])]), range(None, None, &[])),
        ];
        for (e, expected) in table {
            assert_eq!(value_range(&e, "member"), Ok(expected), "{:?}", e.attrs);
        }
        for bad in ["member;range=x-5", "member;range=9-3", "member;range=7"] {
            assert!(
                value_range(&entry(&[(bad, &["a"])]), "member").is_err(),
                "{bad}"
            );
        }
    }
}

/// Adds to a TLS failure rustls names only by its code what an admin must change.
fn explain_tls(message: String) -> String {
    if message.contains("CaUsedAsEndEntity") {
        format!(
            "{message}: the domain controller presents a CA certificate (basicConstraints CA:TRUE, such as a self-signed one) as its own, which TLS refuses for a server. Give the DC a server certificate issued by a CA (CA:FALSE, serverAuth, its name or address in subjectAltName), and set ca_file to the CA that issued it"
        )
    } else {
        message
    }
}

#[cfg(test)]
mod explain_tests {
    use super::explain_tls;

    #[test]
    fn a_ca_used_as_the_dcs_certificate_is_explained() {
        let raw =
            "ldaps://dc1:636: Io error: invalid peer certificate: CaUsedAsEndEntity".to_owned();
        let explained = explain_tls(raw.clone());
        assert!(explained.starts_with(&raw), "{explained}");
        assert!(
            explained.contains("presents a CA certificate")
                && explained.contains("set ca_file to the CA that issued it"),
            "{explained}"
        );
        let other = "ldaps://dc1:636: Io error: invalid peer certificate: UnknownIssuer".to_owned();
        assert_eq!(explain_tls(other.clone()), other);
    }
}
