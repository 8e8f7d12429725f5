//! Distinguished names and group names as AD compares them.
//!
//! The rule: a group named in the configuration (`[[policy.group]]`, `[admin.roles.directory]`) by its CN
//! or its DN matches a synced group DN when the names are equal after
//! - undoing the DN's RFC 4514 escapes (`CN=Sales\, EMEA`, `CN=\#Admins`, `CN=Proj (Alpha)* \\ Team`,
//!   hex escapes such as `\C3\BC`), and
//! - folding case across Unicode, as Windows does (`VERTRIEB SÜD` is `Vertrieb Süd`).
//!
//! A name that parses as a DN is compared RDN by RDN; any name is also compared with the CN of the
//! group's first RDN, so `Sales, EMEA` (a CN with a comma) names its group. Splitting on every comma, as
//! before, cut escaped CNs apart and none of them ever matched.
//!
//! Hand-written rather than taken from a crate: the one RFC 4514 crate found (ldapdn 1.0) is young, has a
//! single author and an unescaper its own docs call machine-generated; the rule is short and tested
//! below as a table.

/// One attribute of an RDN: its type in ASCII lower case, its value unescaped and case-folded.
type Attribute = (String, String);

pub use twofold_wire::policy::{fold_group_name as fold, same_group_name as same_name};

/// True when `wanted` (a DN or a CN) names the group `dn`.
pub fn names_group(wanted: &str, dn: &str) -> bool {
    let Some(group) = parse(dn) else {
        return same_name(wanted, dn);
    };
    if parse(wanted).is_some_and(|w| w == group) {
        return true;
    }
    match group.first().map(Vec::as_slice) {
        Some([(kind, cn)]) if kind == "cn" => cn.trim() == fold(wanted),
        _ => false,
    }
}

/// The RDNs of `dn`, first (most specific) first, each a list of attributes; `None` when it is no DN.
fn parse(dn: &str) -> Option<Vec<Vec<Attribute>>> {
    let bytes = dn.as_bytes();
    let mut rdns = Vec::new();
    let mut rdn = Vec::new();
    let mut kind: Option<String> = None;
    let mut type_text = Vec::new();
    let mut value = Vec::new();
    // The value's length up to its last escaped byte: unescaped spaces after it are dropped, escaped
    // ones (`\ `) kept.
    let mut kept = 0;
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        match byte {
            b'\\' => {
                kind.as_ref()?;
                let next = *bytes.get(i + 1)?;
                if next.is_ascii_hexdigit() {
                    let pair = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                    value.push(u8::from_str_radix(pair, 16).ok()?);
                    i += 3;
                } else {
                    value.push(next);
                    i += 2;
                }
                kept = value.len();
                continue;
            }
            b'=' if kind.is_none() => {
                let text = std::str::from_utf8(&type_text).ok()?.trim();
                let type_byte = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'.';
                if text.is_empty() || !text.bytes().all(type_byte) {
                    return None;
                }
                kind = Some(text.to_ascii_lowercase());
            }
            b',' | b'+' | b';' => {
                rdn.push(attribute(kind.take()?, &mut value, kept)?);
                type_text.clear();
                kept = 0;
                if byte != b'+' {
                    rdns.push(std::mem::take(&mut rdn));
                }
            }
            _ if kind.is_none() => type_text.push(byte),
            b' ' if value.is_empty() => {}
            _ => value.push(byte),
        }
        i += 1;
    }
    rdn.push(attribute(kind?, &mut value, kept)?);
    rdns.push(rdn);
    Some(rdns)
}

fn attribute(kind: String, value: &mut Vec<u8>, kept: usize) -> Option<Attribute> {
    while value.len() > kept && value.last() == Some(&b' ') {
        value.pop();
    }
    let text = String::from_utf8(std::mem::take(value)).ok()?;
    if text.is_empty() {
        return None;
    }
    Some((kind, text.to_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "OU=Groups,DC=corp,DC=example,DC=test";

    #[test]
    fn a_group_is_named_by_its_cn_or_dn_as_ad_compares_them() {
        // (as the admin wrote it, the DN as AD returns it, matches)
        let table = [
            (
                "VPN Users",
                "CN=VPN Users,OU=Groups,DC=corp,DC=example,DC=test",
                true,
            ),
            (
                "vpn users",
                "cn=VPN Users,OU=Groups,DC=corp,DC=example,DC=test",
                true,
            ),
            (
                "VPN",
                "CN=VPN Users,OU=Groups,DC=corp,DC=example,DC=test",
                false,
            ),
            (
                "Groups",
                "CN=VPN Users,OU=Groups,DC=corp,DC=example,DC=test",
                false,
            ),
            (
                "Sales, EMEA",
                "CN=Sales\\, EMEA,OU=Groups,DC=corp,DC=example,DC=test",
                true,
            ),
            (
                "Sales",
                "CN=Sales\\, EMEA,OU=Groups,DC=corp,DC=example,DC=test",
                false,
            ),
            (
                "#Admins",
                "CN=\\#Admins,OU=Groups,DC=corp,DC=example,DC=test",
                true,
            ),
            (
                "Proj (Alpha)* \\ Team",
                "CN=Proj (Alpha)* \\\\ Team,OU=Groups,DC=corp,DC=example,DC=test",
                true,
            ),
            ("a+b", "CN=a\\+b,OU=Groups,DC=corp,DC=example,DC=test", true),
            (
                "Say \"hi\"",
                "CN=Say \\\"hi\\\",OU=Groups,DC=corp,DC=example,DC=test",
                true,
            ),
            (
                "VERTRIEB SÜD",
                "CN=Vertrieb Süd,OU=Groups,DC=corp,DC=example,DC=test",
                true,
            ),
            (
                "Vertrieb Süd",
                "CN=Vertrieb S\\C3\\BCd,OU=Groups,DC=corp,DC=example,DC=test",
                true,
            ),
            (
                "ÉQUIPE",
                "CN=équipe,OU=Groups,DC=corp,DC=example,DC=test",
                true,
            ),
            (
                "trailing ",
                "CN=trailing\\ ,OU=Groups,DC=corp,DC=example,DC=test",
                true,
            ),
            // By DN: escapes, spaces after commas and case do not matter; other RDNs do.
            (
                "cn=sales\\, emea, ou=groups, dc=corp, dc=example, dc=test",
                "CN=Sales\\, EMEA,OU=Groups,DC=corp,DC=example,DC=test",
                true,
            ),
            (
                "CN=Sales\\2C EMEA,OU=Groups,DC=corp,DC=example,DC=test",
                "CN=Sales\\, EMEA,OU=Groups,DC=corp,DC=example,DC=test",
                true,
            ),
            (
                "CN=Sales\\, EMEA,OU=Other,DC=corp,DC=example,DC=test",
                "CN=Sales\\, EMEA,OU=Groups,DC=corp,DC=example,DC=test",
                false,
            ),
        ];
        for (wanted, dn, expected) in table {
            assert_eq!(
                names_group(wanted, dn),
                expected,
                "{wanted:?} against {dn:?}"
            );
        }
    }

    #[test]
    fn dns_are_split_only_on_unescaped_separators() {
        let parsed = parse(&format!("CN=Sales\\, EMEA+sn=x,{BASE}"));
        assert_eq!(
            parsed.as_ref().map(|rdns| rdns[0].clone()),
            Some(vec![
                ("cn".to_owned(), "sales, emea".to_owned()),
                ("sn".to_owned(), "x".to_owned())
            ])
        );
        assert_eq!(parsed.map(|rdns| rdns.len()), Some(5));
        for not_a_dn in [
            "Sales, EMEA",
            "",
            "CN=",
            "CN=a\\",
            "CN=a\\4",
            "=x",
            "CN=x,,DC=y",
        ] {
            assert_eq!(parse(not_a_dn), None, "{not_a_dn:?}");
        }
    }

    #[test]
    fn names_differing_only_in_case_are_the_same_name() {
        assert!(same_name("VERTRIEB SÜD", "Vertrieb Süd"));
        assert!(same_name(" vpn ", "VPN"));
        assert!(!same_name("Vertrieb Sud", "Vertrieb Süd"));
    }
}
