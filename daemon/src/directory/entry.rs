//! One directory entry, read from LDAP attributes into the fields Twofold keeps.

use ldap3::SearchEntry;

use crate::config::AttributeMap;

/// userAccountControl ACCOUNTDISABLE.
const ACCOUNT_DISABLED: u32 = 0x2;
/// msDS-User-Account-Control-Computed UF_LOCKOUT: locked now, with the domain's lockout duration
/// taken into account (lockoutTime alone stays set after the duration ran out, until the next logon).
const UF_LOCKOUT: u32 = 0x10;
const COMPUTED_CONTROL: &str = "msDS-User-Account-Control-Computed";
/// Seconds from 1601-01-01 (FILETIME's epoch) to 1970-01-01.
const FILETIME_UNIX_OFFSET: i64 = 11_644_473_600;

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
    /// Every group the user is in (`groups::GroupGraph::effective`); `read` fills in the direct ones.
    pub groups: Vec<String>,
    /// The direct groups, as `memberOf` lists them.
    pub member_of: Vec<String>,
    /// The primary group's SID, from objectSid and primaryGroupID.
    pub primary_group: Option<String>,
    pub disabled: bool,
    /// accountExpires as unix seconds; None when it never expires.
    pub expires: Option<i64>,
    /// Locked out in AD (see `UF_LOCKOUT`).
    pub locked_out: bool,
    /// When AD locked the account (lockoutTime, unix seconds), while it is locked.
    pub locked_at: Option<i64>,
    /// When the lockout ends by itself: `locked_at` + the domain's lockoutDuration, filled in by the
    /// sync (`read` leaves it None).
    pub locked_until: Option<i64>,
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
    let primary_group = binary(entry, "objectSid")
        .and_then(|raw| super::groups::sid_text(&raw))
        .zip(single(entry, "primaryGroupID").and_then(|v| v.parse().ok()))
        .and_then(|(sid, rid)| super::groups::primary_group_sid(&sid, rid));
    let locked_out = match single(entry, COMPUTED_CONTROL).and_then(|v| v.parse::<u32>().ok()) {
        Some(computed) => computed & UF_LOCKOUT != 0,
        // A DC that does not compute it: lockoutTime is set while locked (and reset by an unlock).
        None => single(entry, "lockoutTime")
            .and_then(|v| v.parse::<i64>().ok())
            .is_some_and(|t| t != 0),
    };
    let locked_at = single(entry, "lockoutTime")
        .and_then(|v| v.parse::<i64>().ok())
        .and_then(filetime_to_unix)
        .filter(|_| locked_out);
    Ok(DirectoryEntry {
        guid,
        dn: entry.dn.clone(),
        username,
        upn: single(entry, &map.upn),
        display_name: single(entry, &map.display_name),
        email: single(entry, &map.email),
        mobile: single(entry, &map.mobile),
        voice: single(entry, &map.voice),
        member_of: groups.clone(),
        groups,
        primary_group,
        disabled: control & ACCOUNT_DISABLED != 0,
        expires: single(entry, "accountExpires")
            .and_then(|v| v.parse::<i64>().ok())
            .and_then(filetime_to_unix),
        locked_out,
        locked_at,
        locked_until: None,
    })
}

/// The domain's lockoutDuration (a negative count of 100 ns ticks) in seconds; None when a lockout
/// lasts until an admin lifts it (the "forever" value, i64::MIN, or 0).
pub fn lockout_duration_seconds(ticks: i64) -> Option<i64> {
    (ticks != i64::MIN && ticks != 0).then(|| ticks.unsigned_abs().div_ceil(10_000_000) as i64)
}

/// accountExpires: 100 ns ticks since 1601; 0 and i64::MAX mean "never".
fn filetime_to_unix(ticks: i64) -> Option<i64> {
    (ticks != 0 && ticks != i64::MAX).then(|| ticks / 10_000_000 - FILETIME_UNIX_OFFSET)
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
        "objectSid".to_owned(),
        "primaryGroupID".to_owned(),
        "accountExpires".to_owned(),
        "lockoutTime".to_owned(),
        COMPUTED_CONTROL.to_owned(),
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

    #[test]
    fn expiry_and_lockout_read_as_ad_means_them() {
        let mut attrs = std::collections::HashMap::new();
        attrs.insert("sAMAccountName".to_owned(), vec!["ann".to_owned()]);
        let mut bin_attrs = std::collections::HashMap::new();
        bin_attrs.insert("objectGUID".to_owned(), vec![vec![0x11u8; 16]]);
        let base = SearchEntry {
            dn: "CN=ann,DC=x".into(),
            attrs,
            bin_attrs,
        };
        let with = |pairs: &[(&str, &str)]| {
            let mut e = base.clone();
            for (k, v) in pairs {
                e.attrs.insert((*k).to_owned(), vec![(*v).to_owned()]);
            }
            read(&e, &AttributeMap::default()).unwrap_or_else(|e| unreachable!("{e}"))
        };
        // (attributes, expires, locked)
        type Row<'a> = (&'a [(&'a str, &'a str)], Option<i64>, bool);
        let table: [Row; 7] = [
            (&[], None, false),
            (&[("accountExpires", "0")], None, false),
            (&[("accountExpires", "9223372036854775807")], None, false),
            // 2012-01-01T00:00:00Z
            (
                &[("accountExpires", "129698496000000000")],
                Some(1_325_376_000),
                false,
            ),
            (&[("lockoutTime", "134000000000000000")], None, true),
            // The computed bit wins over a lockoutTime left behind by an expired lockout.
            (
                &[
                    ("lockoutTime", "134000000000000000"),
                    (COMPUTED_CONTROL, "0"),
                ],
                None,
                false,
            ),
            (
                &[("lockoutTime", "0"), (COMPUTED_CONTROL, "16")],
                None,
                true,
            ),
        ];
        for (pairs, expires, locked) in table {
            let e = with(pairs);
            assert_eq!((e.expires, e.locked_out), (expires, locked), "{pairs:?}");
        }
    }

    #[test]
    fn a_domains_lockout_duration_reads_as_seconds_or_until_lifted() {
        // (lockoutDuration as AD stores it, seconds)
        let table = [
            (-18_000_000_000, Some(1800)),
            (-600_000_000, Some(60)),
            (-1, Some(1)),
            (0, None),
            (i64::MIN, None),
        ];
        for (ticks, seconds) in table {
            assert_eq!(lockout_duration_seconds(ticks), seconds, "{ticks}");
        }
    }

    fn read_err(entry: &SearchEntry) -> String {
        read(entry, &AttributeMap::default())
            .err()
            .unwrap_or_default()
    }
}
