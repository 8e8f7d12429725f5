//! Who may do what on the admin socket.
//!
//! The rule: root and the daemon's own user are master admins (they can read the store anyway); anyone
//! else gets the highest role given by either
//! - a Unix group of `[admin.roles]` that holds the connecting process's primary or supplementary
//!   group, or
//! - an AD group of `[admin.roles.directory]` that the operator's synced AD user is a member of;
//!
//! someone with neither is refused. On a tie the Unix group is named. The uid and primary gid come from
//! the socket's peer credentials (`SO_PEERCRED`), the supplementary groups from `SO_PEERGROUPS` (Linux
//! 4.13+): both are what the kernel recorded when the peer called connect(), so the peer cannot forge
//! them, and neither depends on the connecting process still running (`/proc/<pid>/status`, read after
//! accept, could belong to another process by then) nor on a name service lookup. They are the groups
//! the process holds, as for any file it opens: a user removed from a group keeps it in sessions that
//! began before, until they log in again.
//!
//! The operator's AD user is the synced user whose username (sAMAccountName by default) equals the
//! uid's Unix login name, case-insensitively; a login of the form `user@realm`, as sssd and winbind can
//! give, names the user whose UPN equals it. A `DOMAIN\user` login (winbind's default) names `user`
//! synced from the `[[directory]]` whose `netbios_name` is `DOMAIN`, and nobody when no directory has
//! that NetBIOS name: the domain part is checked, not dropped. The user must be synced from a `[[directory]]`
//! (a local Twofold user of the same name gives nothing), enabled in Twofold, and neither disabled nor
//! removed in AD. Its groups are the memberOf DNs of the last sync, matched like `[[policy.group]]`
//! (DN or CN, see `directory::dn::names_group`). The role is decided again for every request (see `admin`), so a
//! membership change synced from AD applies from the operator's next request, also on an open connection.
//!
//! Each request needs one `Permission`, and `Permission::role` is the table of the least role holding
//! it (in the wire crate, so the console hides what the daemon would refuse). Refusals name the role
//! needed.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use twofold_wire::admin::{AdminRequest, OperatorIdentity, Role};

use crate::config::{AdminRoles, DirectoryConfig, DirectoryRoles};
use crate::directory::dn::names_group;
use crate::error::{Error, Result};
use crate::store::records::UserRecord;

/// The connecting process, as the kernel recorded it at connect().
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (`SO_PEERGROUPS`).
    pub groups: Vec<u32>,
}

impl Peer {
    /// The peer of a connected Unix socket.
    pub fn of(socket: &tokio::net::UnixStream) -> std::io::Result<Peer> {
        let cred = socket.peer_cred()?;
        Ok(Peer {
            uid: cred.uid(),
            gid: cred.gid(),
            groups: peer_groups(socket.as_fd())?,
        })
    }

    /// Primary and supplementary groups of the connecting process.
    fn groups(&self) -> impl Iterator<Item = u32> + '_ {
        std::iter::once(self.gid).chain(self.groups.iter().copied())
    }
}

/// `getsockopt(SO_PEERGROUPS)`: the supplementary groups of a Unix socket's peer. nix and rustix do not
/// wrap this option. The kernel answers ERANGE with the size it needs when the buffer is too small, and
/// the peer's groups are fixed at connect(), so the second call fits.
fn peer_groups(socket: BorrowedFd<'_>) -> std::io::Result<Vec<u32>> {
    use nix::libc;
    const GID_BYTES: usize = std::mem::size_of::<libc::gid_t>();
    let mut groups: Vec<libc::gid_t> = vec![0; 32];
    for _ in 0..2 {
        let mut len =
            libc::socklen_t::try_from(groups.len() * GID_BYTES).map_err(std::io::Error::other)?;
        // SAFETY: `groups` is valid for writes of `len` bytes, and the kernel writes at most `len`
        // bytes of gid_t values and sets `len` to the bytes written (or, on ERANGE, needed).
        let rc = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let len = usize::try_from(len).map_err(std::io::Error::other)?;
        if rc == 0 {
            groups.truncate(len / GID_BYTES);
            return Ok(groups);
        }
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::ERANGE) {
            return Err(error);
        }
        groups.resize(len.div_ceil(GID_BYTES), 0);
    }
    Err(std::io::Error::other(
        "SO_PEERGROUPS: the group list kept growing",
    ))
}

/// What the operator's login name finds among the synced AD users.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DirectoryOperator {
    /// No synced AD user answers to the login (none, a local user, or a name that only looks alike).
    Absent,
    /// `<domain>/<username>` of an AD user that is disabled (in AD or in Twofold) or removed from AD.
    Unusable(String),
    /// `<domain>/<username>` and the user's groups.
    Usable(String, Vec<String>),
}

/// The name to look the operator's AD user up by, and the directory it must come from: a `DOMAIN\user`
/// login names `user` in the directory whose `netbios_name` is `DOMAIN` (none: nobody).
fn login_in_directory<'a>(
    login: &'a str,
    directories: &'a [DirectoryConfig],
) -> Option<(&'a str, Option<&'a str>)> {
    match login.split_once('\\') {
        None => Some((login, None)),
        Some((netbios, name)) => directories
            .iter()
            .find(|d| {
                d.netbios_name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(netbios))
            })
            .map(|d| (name, Some(d.name.as_str()))),
    }
}

/// Whether `user` (found by the store for `login`) is the operator's AD user, and in what state;
/// `domain`, when given, is the `[[directory]]` the user must be synced from. `can_sign_in` is the
/// sign-in rule (`Service::sign_in_block`): an AD account that may not sign in gets no role from AD.
fn directory_operator(
    login: &str,
    domain: Option<&str>,
    user: Option<&UserRecord>,
    can_sign_in: &dyn Fn(&UserRecord) -> bool,
) -> DirectoryOperator {
    let Some(user) = user else {
        return DirectoryOperator::Absent;
    };
    let Some(link) = user
        .directory
        .as_ref()
        .filter(|link| domain.is_none_or(|d| d == link.domain))
    else {
        return DirectoryOperator::Absent;
    };
    let login = login.to_lowercase();
    let by_username = user.username.to_lowercase() == login;
    let by_upn = login.contains('@')
        && user
            .upn
            .as_deref()
            .is_some_and(|upn| upn.to_lowercase() == login);
    if !by_username && !by_upn {
        return DirectoryOperator::Absent;
    }
    let name = format!("{}/{}", link.domain, user.username);
    if can_sign_in(user) {
        DirectoryOperator::Usable(name, user.groups.clone())
    } else {
        DirectoryOperator::Unusable(name)
    }
}

/// The highest role `[admin.roles.directory]` gives to members of `groups`, with the DN that gave it.
fn directory_role(groups: &[String], roles: &DirectoryRoles) -> Option<(Role, String)> {
    [
        (Role::MasterAdmin, &roles.master_admin),
        (Role::Admin, &roles.admin),
        (Role::Helpdesk, &roles.helpdesk),
    ]
    .into_iter()
    .find_map(|(role, wanted)| {
        wanted.iter().find_map(|w| {
            groups
                .iter()
                .find(|dn| names_group(w, dn))
                .map(|dn| (role, dn.clone()))
        })
    })
}

/// The highest role `[admin.roles]` gives through the peer's Unix groups, with the group's name.
fn unix_role(peer: &Peer, roles: &AdminRoles) -> Option<(Role, String)> {
    let groups: Vec<u32> = peer.groups().collect();
    let mut best: Option<(Role, &str)> = None;
    for (role, names) in [
        (Role::Helpdesk, &roles.helpdesk),
        (Role::Admin, &roles.admin),
        (Role::MasterAdmin, &roles.master_admin),
    ] {
        for name in names {
            let gid = match nix::unistd::Group::from_name(name) {
                Ok(Some(g)) => g.gid.as_raw(),
                Ok(None) => {
                    tracing::warn!(group = %name, role = role.name(), "admin role group does not exist");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(group = %name, error = %e, "admin role group lookup failed");
                    continue;
                }
            };
            if groups.contains(&gid) && best.is_none_or(|(r, _)| role > r) {
                best = Some((role, name));
            }
        }
    }
    best.map(|(role, name)| (role, name.to_owned()))
}

/// Decides the peer's role, or refuses it with a message saying how to get one. `synced_user` finds a
/// stored user by username or UPN (`Store::find_user`); it is asked only when AD groups give roles.
/// `directories` are the configured `[[directory]]` tables (for `DOMAIN\user` logins).
pub fn identify(
    peer: &Peer,
    roles: &AdminRoles,
    directories: &[DirectoryConfig],
    synced_user: impl FnOnce(&str) -> Result<Option<UserRecord>>,
    can_sign_in: &dyn Fn(&UserRecord) -> bool,
) -> Result<OperatorIdentity> {
    let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(peer.uid))
        .ok()
        .flatten()
        .map(|u| u.name);
    let identity = |role, granted_by: String, directory_user| OperatorIdentity {
        uid: peer.uid,
        name: name.clone(),
        role,
        granted_by,
        directory_user,
    };
    if peer.uid == 0 {
        return Ok(identity(Role::MasterAdmin, "root".into(), None));
    }
    if peer.uid == nix::unistd::geteuid().as_raw() {
        return Ok(identity(Role::MasterAdmin, "daemon user".into(), None));
    }
    let unix = unix_role(peer, roles);
    let directory = match &name {
        Some(login) if !roles.directory.is_empty() => {
            match login_in_directory(login, directories) {
                Some((name, domain)) => {
                    directory_operator(name, domain, synced_user(name)?.as_ref(), can_sign_in)
                }
                None => DirectoryOperator::Absent,
            }
        }
        _ => DirectoryOperator::Absent,
    };
    let from_directory = match &directory {
        DirectoryOperator::Usable(user, groups) => directory_role(groups, &roles.directory)
            .map(|(role, dn)| (role, format!("AD group {dn}"), user.clone())),
        _ => None,
    };
    match (unix, from_directory) {
        (Some((unix_role, _)), Some((role, granted_by, user))) if role > unix_role => {
            Ok(identity(role, granted_by, Some(user)))
        }
        (None, Some((role, granted_by, user))) => Ok(identity(role, granted_by, Some(user))),
        (Some((role, group)), _) => Ok(identity(role, format!("group {group}"), None)),
        (None, None) => Err(Error::Forbidden(no_role(peer.uid, roles, &directory))),
    }
}

fn no_role(uid: u32, roles: &AdminRoles, directory: &DirectoryOperator) -> String {
    let mut message = format!(
        "uid {uid} has no Twofold role: add it to a group listed in [admin.roles] of the daemon's configuration"
    );
    if !roles.directory.is_empty() {
        match directory {
            DirectoryOperator::Absent => message.push_str(
                ", or log in as a user synced from AD who is in a group listed in [admin.roles.directory]",
            ),
            DirectoryOperator::Unusable(user) => message.push_str(&format!(
                "; AD user {user} is disabled or removed and gets no role from AD groups"
            )),
            DirectoryOperator::Usable(user, _) => message.push_str(&format!(
                ", or AD user {user} to a group listed in [admin.roles.directory]"
            )),
        }
    }
    message
}

/// Refuses a request the operator's role does not permit, naming the role that would.
pub fn authorize(operator: &OperatorIdentity, request: &AdminRequest) -> Result<()> {
    let needed = request.permission();
    if operator.role.permits(needed) {
        return Ok(());
    }
    Err(Error::Forbidden(format!(
        "{} needs the {} role; uid {} is {}",
        needed.describe(),
        needed.role().name(),
        operator.uid,
        operator.role.name()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::DirectoryLink;
    use twofold_wire::admin::Permission;

    const HELPDESK_DN: &str = "CN=TF Helpdesk,OU=Groups,DC=corp,DC=example";
    const ADMINS_DN: &str = "CN=TF Admins,OU=Groups,DC=corp,DC=example";
    const MASTERS_DN: &str = "CN=TF Masters,OU=Groups,DC=corp,DC=example";

    fn operator(role: Role) -> OperatorIdentity {
        OperatorIdentity {
            uid: 1234,
            name: None,
            role,
            granted_by: "group test".into(),
            directory_user: None,
        }
    }

    /// uid 65534 (`nobody` on every Debian system) with primary group 0 (`root`); the uid is not root.
    fn nobody_in_group_root() -> Peer {
        Peer {
            uid: 65534,
            gid: 0,
            groups: Vec::new(),
        }
    }

    fn no_synced_user(_: &str) -> Result<Option<UserRecord>> {
        Ok(None)
    }

    /// A user synced from AD domain `corp`, enabled, in `groups`.
    /// The sign-in rule with no clock (nobody expires) and AD lockout honoured.
    fn sign_in_ok(user: &UserRecord) -> bool {
        user.sign_in_block(0, true).is_none()
    }

    fn synced(username: &str, upn: &str, groups: &[&str]) -> UserRecord {
        UserRecord {
            upn: Some(upn.into()),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            source: "ad:corp".into(),
            directory: Some(DirectoryLink {
                domain: "corp".into(),
                guid: "00000000-0000-0000-0000-000000000001".into(),
                dn: format!("CN={username},OU=Staff,DC=corp,DC=example"),
                account_disabled: false,
                ..DirectoryLink::default()
            }),
            ..UserRecord::new_local("u1", username, 0)
        }
    }

    fn directory_roles() -> DirectoryRoles {
        DirectoryRoles {
            // By CN, by DN, and by a DN in other case: all as `[[policy.group]]` names groups.
            helpdesk: vec!["TF Helpdesk".into()],
            admin: vec![ADMINS_DN.into()],
            master_admin: vec![MASTERS_DN.to_lowercase()],
        }
    }

    #[tokio::test]
    async fn the_peers_supplementary_groups_are_the_ones_it_held_at_connect() -> Result<()> {
        let (ours, theirs) =
            tokio::net::UnixStream::pair().map_err(|e| Error::io("socketpair", e))?;
        let peer = Peer::of(&ours).map_err(|e| Error::io("SO_PEERGROUPS", e))?;
        let mut expected: Vec<u32> = nix::unistd::getgroups()
            .map_err(|e| Error::io("getgroups", e.into()))?
            .into_iter()
            .map(|g| g.as_raw())
            .collect();
        let mut got = peer.groups.clone();
        expected.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, expected);
        assert_eq!(peer.uid, nix::unistd::geteuid().as_raw());
        assert_eq!(peer.gid, nix::unistd::getegid().as_raw());
        drop(theirs);
        Ok(())
    }

    #[test]
    fn a_supplementary_group_grants_its_role() -> Result<()> {
        let roles = AdminRoles {
            admin: vec!["root".into()],
            ..AdminRoles::default()
        };
        let peer = Peer {
            uid: 65534,
            gid: 65534,
            groups: vec![4, 0],
        };
        assert_eq!(
            identify(&peer, &roles, &[], no_synced_user, &sign_in_ok)?.role,
            Role::Admin
        );
        Ok(())
    }

    #[test]
    fn root_and_the_daemon_user_are_master_admins() -> Result<()> {
        let root = identify(
            &Peer {
                uid: 0,
                gid: 0,
                groups: Vec::new(),
            },
            &AdminRoles::default(),
            &[],
            no_synced_user,
            &sign_in_ok,
        )?;
        assert_eq!(
            (root.role, root.granted_by.as_str()),
            (Role::MasterAdmin, "root")
        );
        let me = nix::unistd::geteuid().as_raw();
        assert_eq!(
            identify(
                &Peer {
                    uid: me,
                    gid: 0,
                    groups: Vec::new(),
                },
                &AdminRoles::default(),
                &[],
                no_synced_user,
                &sign_in_ok,
            )?
            .role,
            Role::MasterAdmin
        );
        Ok(())
    }

    #[test]
    fn a_user_in_no_role_group_is_refused() {
        // uid 65534 (nobody) is in no configured group: nothing is configured.
        let refused = identify(
            &Peer {
                uid: 65534,
                gid: 65534,
                groups: Vec::new(),
            },
            &AdminRoles::default(),
            &[],
            no_synced_user,
            &sign_in_ok,
        );
        assert!(
            matches!(refused, Err(Error::Forbidden(ref m)) if m.contains("[admin.roles]")),
            "{refused:?}"
        );
    }

    #[test]
    fn the_primary_group_grants_the_highest_configured_role() -> Result<()> {
        let roles = AdminRoles {
            helpdesk: vec!["root".into()],
            ..AdminRoles::default()
        };
        let peer = nobody_in_group_root();
        assert_eq!(
            identify(&peer, &roles, &[], no_synced_user, &sign_in_ok)?.role,
            Role::Helpdesk
        );
        let roles = AdminRoles {
            helpdesk: vec!["nosuchgroup-tf".into()],
            admin: vec!["root".into()],
            ..AdminRoles::default()
        };
        let found = identify(&peer, &roles, &[], no_synced_user, &sign_in_ok)?;
        assert_eq!(
            (found.role, found.granted_by.as_str()),
            (Role::Admin, "group root")
        );
        Ok(())
    }

    #[test]
    fn the_login_names_the_synced_ad_user_by_username_or_upn() {
        use DirectoryOperator::{Absent, Unusable, Usable};
        let alice = synced("alice", "alice@corp.example", &[HELPDESK_DN]);
        let local = UserRecord {
            directory: None,
            source: "local".into(),
            ..alice.clone()
        };
        let disabled_in_ad = UserRecord {
            directory: alice.directory.clone().map(|d| DirectoryLink {
                account_disabled: true,
                ..d
            }),
            ..alice.clone()
        };
        let removed_from_ad = UserRecord {
            directory: alice.directory.clone().map(|d| DirectoryLink {
                removed_at: Some(1),
                ..d
            }),
            ..alice.clone()
        };
        let disabled_in_twofold = UserRecord {
            enabled: false,
            ..alice.clone()
        };
        let usable = || Usable("corp/alice".into(), vec![HELPDESK_DN.to_owned()]);
        // (login, what the store found for it, the operator's AD user)
        let table: Vec<(&str, Option<&UserRecord>, DirectoryOperator)> = vec![
            ("alice", Some(&alice), usable()),
            ("ALICE", Some(&alice), usable()),
            ("alice@corp.example", Some(&alice), usable()),
            ("Alice@CORP.EXAMPLE", Some(&alice), usable()),
            // The store finds by username or UPN; the rule is stricter than the index.
            ("alice@other.example", Some(&alice), Absent),
            ("bob", Some(&alice), Absent),
            ("corp\\alice", Some(&alice), Absent),
            ("alice", None, Absent),
            ("alice", Some(&local), Absent),
            (
                "alice",
                Some(&disabled_in_ad),
                Unusable("corp/alice".into()),
            ),
            (
                "alice",
                Some(&removed_from_ad),
                Unusable("corp/alice".into()),
            ),
            (
                "alice",
                Some(&disabled_in_twofold),
                Unusable("corp/alice".into()),
            ),
        ];
        for (row, (login, found, expected)) in table.into_iter().enumerate() {
            assert_eq!(
                directory_operator(login, None, found, &sign_in_ok),
                expected,
                "row {row}: {login}"
            );
        }
    }

    #[test]
    fn a_domain_login_names_the_user_of_the_directory_with_that_netbios_name() -> Result<()> {
        let directory = |name: &str, netbios: &str| -> Result<DirectoryConfig> {
            toml::from_str(&format!(
                "name = \"{name}\"\nurls = [\"ldaps://dc.example\"]\nbind_dn = \"CN=twofold\"\nbind_password_file = \"/etc/twofold/bind\"\n{netbios}"
            ))
            .map_err(|e| Error::Config(e.to_string()))
        };
        let directories = [
            directory("corp", "netbios_name = \"CORP\"")?,
            directory("lab", "")?,
        ];
        // (login, the name looked up and the directory it must come from)
        type Lookup<'a> = Option<(&'a str, Option<&'a str>)>;
        let table: [(&str, Lookup); 5] = [
            ("alice", Some(("alice", None))),
            ("alice@corp.example", Some(("alice@corp.example", None))),
            ("CORP\\alice", Some(("alice", Some("corp")))),
            ("corp\\alice", Some(("alice", Some("corp")))),
            // No directory has this NetBIOS name (lab has none): nobody, not `alice` anywhere.
            ("LAB\\alice", None),
        ];
        for (login, expected) in table {
            assert_eq!(login_in_directory(login, &directories), expected, "{login}");
        }
        let alice = synced("alice", "alice@corp.example", &[HELPDESK_DN]);
        assert_eq!(
            directory_operator("alice", Some("corp"), Some(&alice), &sign_in_ok),
            DirectoryOperator::Usable("corp/alice".into(), vec![HELPDESK_DN.to_owned()])
        );
        assert_eq!(
            directory_operator("alice", Some("lab"), Some(&alice), &sign_in_ok),
            DirectoryOperator::Absent,
            "a user of another directory is not the operator"
        );
        Ok(())
    }

    #[test]
    fn the_highest_ad_group_role_wins_and_names_its_group() {
        let roles = directory_roles();
        let role_of = |groups: &[&str]| {
            let groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
            directory_role(&groups, &roles)
        };
        let given = |role, dn: &str| Some((role, dn.to_owned()));
        assert_eq!(role_of(&[]), None);
        assert_eq!(role_of(&["CN=Staff,OU=Groups,DC=corp,DC=example"]), None);
        assert_eq!(role_of(&[HELPDESK_DN]), given(Role::Helpdesk, HELPDESK_DN));
        assert_eq!(
            role_of(&[HELPDESK_DN, ADMINS_DN]),
            given(Role::Admin, ADMINS_DN)
        );
        assert_eq!(
            role_of(&[ADMINS_DN, MASTERS_DN, HELPDESK_DN]),
            given(Role::MasterAdmin, MASTERS_DN)
        );
        // A CN names a group in any OU (as in [[policy.group]]); a DN only that one.
        let elsewhere = "cn=tf helpdesk,OU=Elsewhere,DC=corp,DC=example";
        assert_eq!(role_of(&[elsewhere]), given(Role::Helpdesk, elsewhere));
        assert_eq!(
            role_of(&["CN=TF Admins,OU=Elsewhere,DC=corp,DC=example"]),
            None
        );
    }

    #[test]
    fn unix_and_ad_groups_give_the_higher_role_and_say_which() -> Result<()> {
        let peer = nobody_in_group_root();
        let with = |unix_helpdesk: bool, unix_admin: bool| AdminRoles {
            helpdesk: if unix_helpdesk {
                vec!["root".into()]
            } else {
                vec![]
            },
            admin: if unix_admin {
                vec!["root".into()]
            } else {
                vec![]
            },
            master_admin: vec![],
            directory: directory_roles(),
        };
        let in_groups = |groups: &'static [&'static str]| {
            move |login: &str| Ok(Some(synced(login, "x@corp.example", groups)))
        };
        // AD admin beats Unix helpdesk: the AD group and the AD user are named.
        let ad = identify(
            &peer,
            &with(true, false),
            &[],
            in_groups(&[ADMINS_DN]),
            &sign_in_ok,
        )?;
        assert_eq!(
            (
                ad.role,
                ad.granted_by.as_str(),
                ad.directory_user.as_deref()
            ),
            (
                Role::Admin,
                "AD group CN=TF Admins,OU=Groups,DC=corp,DC=example",
                Some("corp/nobody")
            )
        );
        // Unix admin beats AD helpdesk; on a tie the Unix group is named.
        for groups in [&[HELPDESK_DN][..], &[ADMINS_DN][..]] {
            let unix = identify(
                &peer,
                &with(false, true),
                &[],
                in_groups(groups),
                &sign_in_ok,
            )?;
            assert_eq!(
                (unix.role, unix.granted_by.as_str(), unix.directory_user),
                (Role::Admin, "group root", None)
            );
        }
        // AD alone.
        let only_ad = identify(
            &peer,
            &with(false, false),
            &[],
            in_groups(&[HELPDESK_DN]),
            &sign_in_ok,
        )?;
        assert_eq!(only_ad.role, Role::Helpdesk);
        // An AD user in no role group, or disabled: refused, saying why.
        let refused = identify(&peer, &with(false, false), &[], in_groups(&[]), &sign_in_ok);
        assert!(
            matches!(refused, Err(Error::Forbidden(ref m)) if m.contains("AD user corp/nobody to a group listed in [admin.roles.directory]")),
            "{refused:?}"
        );
        let disabled = |login: &str| {
            let mut user = synced(login, "x@corp.example", &[MASTERS_DN]);
            user.directory = user.directory.map(|d| DirectoryLink {
                account_disabled: true,
                ..d
            });
            Ok(Some(user))
        };
        let refused = identify(&peer, &with(false, false), &[], disabled, &sign_in_ok);
        assert!(
            matches!(refused, Err(Error::Forbidden(ref m)) if m.contains("AD user corp/nobody is disabled or removed")),
            "{refused:?}"
        );
        // The Unix role still holds for a user disabled in AD.
        assert_eq!(
            identify(&peer, &with(true, false), &[], disabled, &sign_in_ok)?.granted_by,
            "group root"
        );
        Ok(())
    }

    #[test]
    fn without_ad_role_groups_the_store_is_not_asked() -> Result<()> {
        let roles = AdminRoles {
            helpdesk: vec!["root".into()],
            ..AdminRoles::default()
        };
        let found = identify(
            &nobody_in_group_root(),
            &roles,
            &[],
            |_| Err(Error::Config("the store must not be asked".into())),
            &sign_in_ok,
        )?;
        assert_eq!(found.role, Role::Helpdesk);
        Ok(())
    }

    #[test]
    fn the_audit_actor_names_the_ad_user_that_gave_the_role() {
        use crate::service::Actor;
        let unix = Actor::Admin {
            uid: 1001,
            directory_user: None,
        };
        let ad = Actor::Admin {
            uid: 1001,
            directory_user: Some("corp/alice".into()),
        };
        assert_eq!(unix.to_string(), "admin:uid=1001");
        assert_eq!(ad.to_string(), "admin:uid=1001,ad=corp/alice");
    }

    #[test]
    fn refusals_name_the_role_needed() {
        let unblock = AdminRequest::DeviceUnblock {
            user: "a".into(),
            device: "d".into(),
        };
        let refused = authorize(&operator(Role::Helpdesk), &unblock)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            refused,
            "unblock devices needs the admin role; uid 1234 is helpdesk"
        );
        assert!(authorize(&operator(Role::Admin), &unblock).is_ok());
        let key = AdminRequest::ApiKeyCreate {
            name: "vpn".into(),
            scopes: vec![twofold_wire::admin::ApiScope::Verify],
            trusted_proxy: false,
        };
        assert!(authorize(&operator(Role::Admin), &key).is_err());
        assert!(authorize(&operator(Role::MasterAdmin), &key).is_ok());
        // Live policy edits are the master admin's; looking at the policies is everyone's.
        let edits = [
            AdminRequest::PolicySet {
                key: "two_factor".into(),
                value: "required".into(),
            },
            AdminRequest::PolicyGroupSet {
                group: "VPN".into(),
                key: "channels".into(),
                value: Some("totp".into()),
            },
            AdminRequest::PolicyGroupRemove {
                group: "VPN".into(),
            },
            AdminRequest::PolicyGroupMove {
                group: "VPN".into(),
                position: 1,
            },
            AdminRequest::PolicyResetToConfig,
        ];
        for edit in &edits {
            for role in [Role::Helpdesk, Role::Admin] {
                let refused = authorize(&operator(role), edit)
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                assert_eq!(
                    refused,
                    format!(
                        "change policies needs the master admin role; uid 1234 is {}",
                        role.name()
                    ),
                    "{edit:?}"
                );
            }
            assert!(authorize(&operator(Role::MasterAdmin), edit).is_ok());
        }
        assert!(authorize(&operator(Role::Helpdesk), &AdminRequest::PolicyShow).is_ok());
    }

    #[test]
    fn the_role_table_follows_the_issue() {
        let least = |p: Permission| p.role();
        for p in [
            Permission::LookUp,
            Permission::Unlock,
            Permission::HandOverCode,
            Permission::BlockDevice,
        ] {
            assert_eq!(least(p), Role::Helpdesk, "{p:?}");
        }
        for p in [
            Permission::ResetTwoFactor,
            Permission::UnpairDevice,
            Permission::UpdatePhoneNumbers,
            Permission::GenerateAccessCode,
            Permission::ResendRestoreCode,
            Permission::RestoreForUser,
        ] {
            assert_eq!(least(p), Role::Admin, "{p:?}");
        }
        for p in [
            Permission::ManagePolicies,
            Permission::SystemTwoFactorSwitch,
        ] {
            assert_eq!(least(p), Role::MasterAdmin, "{p:?}");
        }
        for role in Role::ALL {
            for p in Permission::ALL {
                assert_eq!(role.permits(p), role >= p.role());
            }
        }
    }
}
