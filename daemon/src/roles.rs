//! Who may do what on the admin socket.
//!
//! The rule: root and the daemon's own user are master admins (they can read the store anyway); anyone
//! else gets the highest role whose configured Unix groups hold the connecting process's primary or
//! supplementary group; someone in none of them is refused at connection. The groups come from the
//! socket's peer credentials (`SO_PEERCRED`, which the peer cannot forge) and, for the supplementary
//! groups, from `/proc/<pid>/status` of the connecting process.
//!
//! Each request needs one `Permission`, and `Permission::role` is the table of the least role holding
//! it (in the wire crate, so the console hides what the daemon would refuse). Refusals name the role
//! needed.

use twofold_wire::admin::{AdminRequest, OperatorIdentity, Role};

use crate::config::AdminRoles;
use crate::error::{Error, Result};

/// The connecting process, as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
}

impl Peer {
    /// Primary and supplementary groups of the connecting process.
    fn groups(&self) -> Vec<u32> {
        let mut groups = vec![self.gid];
        if let Some(status) = self
            .pid
            .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        {
            groups.extend(supplementary_groups(&status));
        }
        groups
    }
}

fn supplementary_groups(proc_status: &str) -> Vec<u32> {
    proc_status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|g| g.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Decides the peer's role, or refuses it with a message saying how to get one.
pub fn identify(peer: &Peer, roles: &AdminRoles) -> Result<OperatorIdentity> {
    let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(peer.uid))
        .ok()
        .flatten()
        .map(|u| u.name);
    let identity = |role, granted_by: String| OperatorIdentity {
        uid: peer.uid,
        name: name.clone(),
        role,
        granted_by,
    };
    if peer.uid == 0 {
        return Ok(identity(Role::MasterAdmin, "root".into()));
    }
    if peer.uid == nix::unistd::geteuid().as_raw() {
        return Ok(identity(Role::MasterAdmin, "daemon user".into()));
    }
    let groups = peer.groups();
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
    match best {
        Some((role, group)) => Ok(identity(role, format!("group {group}"))),
        None => Err(Error::Forbidden(format!(
            "uid {} has no Twofold role: add it to a group listed in [admin.roles] of the daemon's configuration",
            peer.uid
        ))),
    }
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
    use twofold_wire::admin::Permission;

    fn operator(role: Role) -> OperatorIdentity {
        OperatorIdentity {
            uid: 1234,
            name: None,
            role,
            granted_by: "group test".into(),
        }
    }

    #[test]
    fn supplementary_groups_are_read_from_proc_status() {
        let status =
            "Name:\tbash\nUid:\t1000\t1000\t1000\t1000\nGroups:\t4 24 27 1001 \nNgid:\t0\n";
        assert_eq!(supplementary_groups(status), vec![4, 24, 27, 1001]);
        assert!(supplementary_groups("Groups:\n").is_empty());
    }

    #[test]
    fn root_and_the_daemon_user_are_master_admins() -> Result<()> {
        let root = identify(
            &Peer {
                uid: 0,
                gid: 0,
                pid: None,
            },
            &AdminRoles::default(),
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
                    pid: None
                },
                &AdminRoles::default()
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
                pid: None,
            },
            &AdminRoles::default(),
        );
        assert!(
            matches!(refused, Err(Error::Forbidden(ref m)) if m.contains("[admin.roles]")),
            "{refused:?}"
        );
    }

    #[test]
    fn the_primary_group_grants_the_highest_configured_role() -> Result<()> {
        // gid 0 is "root" on every Linux system; the uid is not root.
        let roles = AdminRoles {
            helpdesk: vec!["root".into()],
            admin: vec![],
            master_admin: vec![],
        };
        let peer = Peer {
            uid: 65534,
            gid: 0,
            pid: None,
        };
        assert_eq!(identify(&peer, &roles)?.role, Role::Helpdesk);
        let roles = AdminRoles {
            helpdesk: vec!["nosuchgroup-tf".into()],
            admin: vec!["root".into()],
            master_admin: vec![],
        };
        let found = identify(&peer, &roles)?;
        assert_eq!(
            (found.role, found.granted_by.as_str()),
            (Role::Admin, "group root")
        );
        Ok(())
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
        let key = AdminRequest::ApiKeyCreate { name: "vpn".into() };
        assert!(authorize(&operator(Role::Admin), &key).is_err());
        assert!(authorize(&operator(Role::MasterAdmin), &key).is_ok());
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
