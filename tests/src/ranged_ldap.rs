//! Windows AD's ranged retrieval, put in front of the Samba DC.
//!
//! Windows answers a multi-valued attribute with more values than MaxValRange (1,500 by default) with
//! only its first 1,500, named `member;range=0-1499`, and gives the rest only to searches that ask for
//! `member;range=1500-*`, a range at a time, the last one named `member;range=3000-*`. Samba
//! understands such requests (its ranged_results module) but never cuts an answer, so against Samba
//! alone a client that reads only the first range passes. This TLS proxy cuts every answer Samba sends
//! as Windows would with MaxValRange = `max`: requests go through unchanged.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::BytesMut;
use lber::common::TagClass;
use lber::structure::{StructureTag, PL};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::samba::SambaDc;

/// The DC's LDAPS port.
const UPSTREAM: &str = "127.0.0.1:636";
/// LDAPMessage's protocolOp for a search result entry: [APPLICATION 4].
const SEARCH_RESULT_ENTRY: u64 = 4;

/// A running proxy; it stops with the test process.
pub struct RangedLdap {
    /// `ldaps://127.0.0.1:PORT`, with the DC's own certificate (so the DC's CA is what clients trust).
    pub url: String,
}

impl RangedLdap {
    /// Starts the proxy in front of `dc`, cutting every attribute to `max` values per answer.
    pub fn start(dc: &SambaDc, max: usize) -> Result<RangedLdap> {
        let tls = dc.dir.join("tls");
        let server = server_config(&tls.join("dc.pem"), &tls.join("dc.key"))?;
        let client = client_config(&dc.ca_cert)?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr: SocketAddr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = TcpListener::from_std(listener) else {
                    return;
                };
                let acceptor = tokio_rustls::TlsAcceptor::from(server);
                let connector = tokio_rustls::TlsConnector::from(client);
                while let Ok((socket, _)) = listener.accept().await {
                    let (acceptor, connector) = (acceptor.clone(), connector.clone());
                    tokio::spawn(async move {
                        let _ = serve(socket, acceptor, connector, max).await;
                    });
                }
            });
        });
        Ok(RangedLdap {
            url: format!("ldaps://{addr}"),
        })
    }
}

fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .with_context(|| cert.display().to_string())?
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| key.display().to_string())?;
    Ok(Arc::new(
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)?,
    ))
}

fn client_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca)? {
        roots.add(cert?)?;
    }
    Ok(Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

/// One client: its requests go to the DC as they are; the DC's answers come back cut.
async fn serve(
    socket: TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    connector: tokio_rustls::TlsConnector,
    max: usize,
) -> Result<()> {
    let client = acceptor.accept(socket).await?;
    let upstream = TcpStream::connect(UPSTREAM).await?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1")?;
    let upstream = connector.connect(name, upstream).await?;
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut dc_read, mut dc_write) = tokio::io::split(upstream);
    let requests = async {
        tokio::io::copy(&mut client_read, &mut dc_write).await?;
        dc_write.shutdown().await
    };
    let answers = async {
        let mut buffer = BytesMut::new();
        loop {
            // Every whole message in the buffer goes out cut; a partial one waits for more bytes.
            loop {
                match lber::parse::parse_tag(&buffer) {
                    Ok((rest, message)) => {
                        let used = buffer.len() - rest.len();
                        let mut out = BytesMut::new();
                        lber::write::encode_into(&mut out, cut_message(message, max))?;
                        client_write.write_all(&out).await?;
                        let _ = buffer.split_to(used);
                    }
                    Err(nom::Err::Incomplete(_)) => break,
                    Err(e) => return Err(std::io::Error::other(format!("{e:?}"))),
                }
            }
            if dc_read.read_buf(&mut buffer).await? == 0 {
                return client_write.shutdown().await;
            }
        }
    };
    let (sent, answered) = tokio::join!(requests, answers);
    sent?;
    answered?;
    Ok(())
}

/// An LDAPMessage with every attribute of a search result entry cut to `max` values.
fn cut_message(mut message: StructureTag, max: usize) -> StructureTag {
    let PL::C(parts) = &mut message.payload else {
        return message;
    };
    let Some(op) = parts
        .get_mut(1)
        .filter(|op| op.class == TagClass::Application && op.id == SEARCH_RESULT_ENTRY)
    else {
        return message;
    };
    // SearchResultEntry ::= SEQUENCE { objectName, attributes SEQUENCE OF SEQUENCE { type, vals } }
    let Some(attributes) = (match &mut op.payload {
        PL::C(entry) => entry.get_mut(1),
        PL::P(_) => None,
    }) else {
        return message;
    };
    if let PL::C(list) = &mut attributes.payload {
        for attribute in list {
            if let PL::C(pair) = &mut attribute.payload {
                if let [name, StructureTag {
                    payload: PL::C(values),
                    ..
                }] = pair.as_mut_slice()
                {
                    if let PL::P(bytes) = &mut name.payload {
                        let text = String::from_utf8_lossy(bytes).into_owned();
                        if let Some(cut) = cut_name(&text, values.len(), max) {
                            *bytes = cut.into_bytes();
                            values.truncate(max);
                        }
                    }
                }
            }
        }
    }
    message
}

/// What Windows would name an attribute `name` carrying `count` values, when it would cut them:
/// `member` becomes `member;range=0-{max-1}`, `member;range=L-*` becomes `member;range=L-{L+max-1}`.
/// None when all of them fit.
fn cut_name(name: &str, count: usize, max: usize) -> Option<String> {
    if count <= max {
        return None;
    }
    let lower = name.to_ascii_lowercase();
    let (base, start) = match lower.find(";range=") {
        Some(at) => {
            let low = lower[at + ";range=".len()..].split('-').next()?;
            (&name[..at], low.parse::<usize>().ok()?)
        }
        None => (name, 0),
    };
    Some(format!("{base};range={start}-{}", start + max - 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::anyhow;

    #[test]
    fn answers_are_cut_as_windows_cuts_them() {
        // (name, values, max, new name)
        let table = [
            ("member", 25, 10, Some("member;range=0-9")),
            ("member", 10, 10, None),
            ("member;range=10-*", 15, 10, Some("member;range=10-19")),
            ("member;range=20-*", 5, 10, None),
            ("Member;Range=10-*", 11, 10, Some("Member;range=10-19")),
            ("objectClass", 4, 10, None),
        ];
        for (name, count, max, expected) in table {
            assert_eq!(
                cut_name(name, count, max).as_deref(),
                expected,
                "{name} x{count}"
            );
        }
    }

    #[test]
    fn a_search_result_entry_keeps_the_first_values_and_other_messages_pass() -> Result<()> {
        let octets = |s: &str| StructureTag {
            class: TagClass::Universal,
            id: 4,
            payload: PL::P(s.as_bytes().to_vec()),
        };
        let seq = |id, class, items| StructureTag {
            class,
            id,
            payload: PL::C(items),
        };
        let entry = |name: &str, count: usize| {
            let values = (0..count).map(|i| octets(&format!("v{i}"))).collect();
            seq(
                16,
                TagClass::Universal,
                vec![
                    StructureTag {
                        class: TagClass::Universal,
                        id: 2,
                        payload: PL::P(vec![7]),
                    },
                    seq(
                        SEARCH_RESULT_ENTRY,
                        TagClass::Application,
                        vec![
                            octets("CN=g"),
                            seq(
                                16,
                                TagClass::Universal,
                                vec![seq(
                                    16,
                                    TagClass::Universal,
                                    vec![octets(name), seq(17, TagClass::Universal, values)],
                                )],
                            ),
                        ],
                    ),
                ],
            )
        };
        let cut = cut_message(entry("member", 25), 10);
        let mut wire = BytesMut::new();
        lber::write::encode_into(&mut wire, cut.clone())?;
        let (_, back) = lber::parse::parse_tag(&wire).map_err(|e| anyhow!("re-encoded: {e:?}"))?;
        assert_eq!(back, cut);
        // The first ten values, in order, under the ranged name.
        assert_eq!(cut, entry("member;range=0-9", 10));
        // Not an entry (a search result done, [APPLICATION 5]): unchanged.
        let mut done = entry("member", 25);
        if let PL::C(parts) = &mut done.payload {
            parts[1].id = 5;
        }
        assert_eq!(cut_message(done.clone(), 10), done);
        Ok(())
    }
}
