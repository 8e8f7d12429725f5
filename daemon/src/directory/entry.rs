//! One directory entry, read from LDAP attributes into the fields Twofold keeps.

use ldap3::SearchEntry;

use crate::config::AttributeMap;

/// userAccountControl ACCOUNTDISABLE.
const ACCOUNT_DISABLED: u32 = 0x2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryEntry {
    pub guid: String,
    pub dn: String,
    pub username: String,
    pub upn: Option<String>,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub mobile: Option<String>,
    pub voice: Option<String>,
    pub groups: Vec<String>,
    pub disabled: bool,
}

/// Raw bytes of an attribute: ldap3 files values that happen to be valid UTF-8 under `attrs`,
/// the others under `bin_attrs`, so a binary attribute may be in either.
pub fn binary(entry: &SearchEntry, name: &str) -> Option<Vec<u8>> {
    let find = |map_key: &String| map_key.eq_ignore_ascii_case(name);
    entry
        .bin_attrs
        .iter()
        .find(|(k, _)| find(k))
        .and_then(|(_, v)| v.first().cloned())
        .or_else(|| {
            entry
                .attrs
                .iter()
                .find(|(k, _)| find(k))
                .and_then(|(_, v)| v.first())
                .map(|s| s.as_bytes().to_vec())
        })
}

fn text<'a>(entry: &'a SearchEntry, name: &str) -> Option<&'a Vec<String>> {
    entry
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn single(entry: &SearchEntry, name: &str) -> Option<String> {
    text(entry, name)
        .and_then(|v| v.first())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// objectGUID in the form AD tools show: the first three groups are little-endian.
pub fn guid_text(raw: &[u8]) -> Option<String> {
    let b: [u8; 16] = raw.try_into().ok()?;
    Some(format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]
    ))
}

/// Why an entry could not be taken.
pub type Skip = String;

pub fn read(entry: &SearchEntry, map: &AttributeMap) -> Result<DirectoryEntry, Skip> {
    let guid = binary(entry, "objectGUID")
        .and_then(|raw| guid_text(&raw))
        .ok_or_else(|| format!("{}: no objectGUID", entry.dn))?;
    let username =
        single(entry, &map.username).ok_or_else(|| format!("{}: no {}", entry.dn, map.username))?;
    let control: u32 = single(entry, &map.account_control)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut groups = text(entry, &map.groups).cloned().unwrap_or_default();
    groups.sort();
    Ok(DirectoryEntry {
        guid,
        dn: entry.dn.clone(),
        username,
        upn: single(entry, &map.upn),
        display_name: single(entry, &map.display_name),
        email: single(entry, &map.email),
        mobile: single(entry, &map.mobile),
        voice: single(entry, &map.voice),
        groups,
        disabled: control & ACCOUNT_DISABLED != 0,
    })
}

/// The attributes a user search asks for.
pub fn attributes(map: &AttributeMap) -> Vec<String> {
    let mut attrs = vec![
        "objectGUID".to_owned(),
        map.username.clone(),
        map.upn.clone(),
        map.display_name.clone(),
        map.email.clone(),
        map.mobile.clone(),
        map.voice.clone(),
        map.groups.clone(),
        map.account_control.clone(),
    ];
    attrs.dedup();
    attrs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_is_shown_as_ad_does() {
        let raw = [
            0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ];
        assert_eq!(
            guid_text(&raw).as_deref(),
            Some("00112233-4455-6677-8899-aabbccddeeff")
        );
        assert_eq!(guid_text(&raw[..15]), None);
    }

    #[test]
    fn entries_map_attributes_and_the_disabled_bit() {
        let mut attrs = std::collections::HashMap::new();
        attrs.insert("sAMAccountName".to_owned(), vec!["jürgen".to_owned()]);
        attrs.insert("userAccountControl".to_owned(), vec!["514".to_owned()]);
        attrs.insert(
            "memberOf".to_owned(),
            vec!["CN=b".to_owned(), "CN=a".to_owned()],
        );
        attrs.insert("mail".to_owned(), vec![" ".to_owned()]);
        let mut bin_attrs = std::collections::HashMap::new();
        bin_attrs.insert("objectGUID".to_owned(), vec![vec![0xffu8; 16]]);
        let entry = SearchEntry {
            dn: "CN=J,DC=x".into(),
            attrs,
            bin_attrs,
        };
        let read = read(&entry, &AttributeMap::default()).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(read.username, "jürgen");
        assert!(read.disabled);
        assert_eq!(read.groups, vec!["CN=a", "CN=b"]);
        assert_eq!(read.email, None, "blank values are absent values");
        let mut no_name = entry.clone();
        no_name.attrs.remove("sAMAccountName");
        assert!(read_err(&no_name).contains("no sAMAccountName"));
    }

    fn read_err(entry: &SearchEntry) -> String {
        read(entry, &AttributeMap::default())
            .err()
            .unwrap_or_default()
    }
}
