//! The live policies: the `[policy]` and `[[policy.group]]` settings that apply right now, where they
//! came from, and how master admins change them at run time.
//!
//! The rule: the store holds the live policy set. The first start copies it from the configuration file;
//! from then on the file's policy sections apply only when a master admin runs
//! `twofold-admin policy reset-to-config`. Edits from the console and the CLI apply at once and survive
//! restarts; a restart or a SIGHUP never replaces them.
//!
//! Why the store wins over the file: the daemon cannot write /etc/twofold/twofold.toml (it runs
//! unprivileged under a read-only /etc, and a rewrite would lose the admin's comments), so if the file
//! won at every reload it would silently undo the console's edits. Instead nothing diverges silently: the
//! policy overview says where the live set came from, when it last changed and by whom, and whether the
//! file (as last read, at start or on SIGHUP) differs; start and reload log a warning when it does.
//!
//! An edit is parsed and checked exactly as the file is (`PolicyConfig::edited`, `problems`), written to
//! the store, audited with the operator and each setting's before and after, committed, and only then
//! swapped in. Verification reads the set through an `ArcSwap`: lock-free, so an edit never stalls it,
//! and the first request after the edit's answer sees the new set.

use std::sync::Arc;

use twofold_wire::admin::{GroupPolicyView, PolicyOverview};
use twofold_wire::policy::{PolicyOrigin, PolicySource};

use crate::error::{Error, Result};
use crate::policy::{self, PolicyConfig, PolicyEdit};
use crate::service::{Actor, Service};
use crate::store::records::LivePolicy;

/// Serialises edits: each one reads the set, changes it and writes it back.
const EDIT_LOCK: &str = "live_policy";

/// The policies of a service that has not read its store yet (unit tests build services this way).
pub(crate) fn unsaved(rules: &PolicyConfig) -> LivePolicy {
    LivePolicy {
        rules: rules.clone(),
        origin: PolicyOrigin {
            source: PolicySource::ConfigFile,
            changed_at: 0,
            changed_by: "daemon".to_owned(),
            revision: 0,
        },
    }
}

/// What an edit did: the lines that changed (none when the value was already so) and the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyChange {
    pub changes: Vec<String>,
    pub policies: PolicyOverview,
}

impl Service {
    /// The live policies. Cheap and lock-free: meant for a request's lifetime, not for keeping.
    pub fn policy(&self) -> arc_swap::Guard<Arc<LivePolicy>> {
        self.policies.load()
    }

    /// Takes the live policies from the store, or at the first start stores the configuration file's.
    pub async fn load_policies(&self) -> Result<()> {
        let file = self.file_policy.load_full();
        if let Some(stored) = self.store().live_policy()? {
            if stored.rules != *file {
                tracing::warn!(
                    changed_by = %stored.origin.changed_by,
                    revision = stored.origin.revision,
                    "the configuration file's policy sections differ from the live policies, which apply; `twofold-admin policy reset-to-config` applies the file's"
                );
            }
            self.policies.store(Arc::new(stored));
            return Ok(());
        }
        let live = LivePolicy {
            rules: (*file).clone(),
            origin: PolicyOrigin {
                source: PolicySource::ConfigFile,
                changed_at: self.now(),
                changed_by: Actor::Daemon.to_string(),
                revision: 1,
            },
        };
        self.store().put_live_policy(&live)?;
        self.audit(
            &Actor::Daemon,
            "policy_seed",
            None,
            "ok",
            Some(format!(
                "copied from the configuration file, group entries: {}",
                live.rules.group.len()
            )),
        )?;
        self.store().commit().await?;
        self.policies.store(Arc::new(live));
        Ok(())
    }

    /// Notes the policy sections of a configuration file read again (SIGHUP): `reset-to-config` applies
    /// them from now on. Answers whether they differ from the live policies.
    pub fn set_file_policy(&self, rules: PolicyConfig) -> bool {
        let differs = rules != self.policy().rules;
        self.file_policy.store(Arc::new(rules));
        differs
    }

    pub fn policy_overview(&self) -> PolicyOverview {
        let live = self.policies.load_full();
        let differs = **self.file_policy.load() != live.rules;
        overview(&live, differs)
    }

    /// Makes a master admin's edit: checked as the configuration file is, stored, audited with the
    /// before and after of each setting, committed, then applied.
    pub async fn edit_policy(&self, actor: &Actor, edit: PolicyEdit) -> Result<PolicyChange> {
        let action = match &edit {
            PolicyEdit::Default { .. } => "policy_set",
            PolicyEdit::Group { .. } => "policy_group_set",
            PolicyEdit::RemoveGroup { .. } => "policy_group_remove",
            PolicyEdit::MoveGroup { .. } => "policy_group_move",
            PolicyEdit::Replace(_) => "policy_reset",
        };
        let _guard = self.lock_user(EDIT_LOCK).await;
        let current = self.policies.load_full();
        let next = match current.rules.edited(&edit) {
            Ok(next) => next,
            Err(message) => {
                self.audit(actor, action, None, "invalid", Some(message.clone()))?;
                self.store().commit().await?;
                return Err(Error::invalid(message));
            }
        };
        let changes = policy::changes(&current.rules, &next);
        if changes.is_empty() {
            self.audit(
                actor,
                action,
                None,
                "unchanged",
                Some(format!("revision={}", current.origin.revision)),
            )?;
            self.store().commit().await?;
            return Ok(PolicyChange {
                changes,
                policies: self.policy_overview(),
            });
        }
        let live = LivePolicy {
            rules: next,
            origin: PolicyOrigin {
                source: match edit {
                    PolicyEdit::Replace(_) => PolicySource::ConfigFile,
                    _ => PolicySource::Admin,
                },
                changed_at: self.now(),
                changed_by: actor.to_string(),
                revision: current.origin.revision + 1,
            },
        };
        self.store().put_live_policy(&live)?;
        self.audit(
            actor,
            action,
            None,
            "ok",
            Some(format!(
                "{} (revision {})",
                changes.join("; "),
                live.origin.revision
            )),
        )?;
        self.store().commit().await?;
        self.policies.store(Arc::new(live));
        Ok(PolicyChange {
            changes,
            policies: self.policy_overview(),
        })
    }

    /// Applies the configuration file's policy sections (as last read) in place of the live ones.
    pub async fn reset_policy_to_config(&self, actor: &Actor) -> Result<PolicyChange> {
        let file = (*self.file_policy.load_full()).clone();
        self.edit_policy(actor, PolicyEdit::Replace(file)).await
    }
}

fn overview(live: &LivePolicy, config_differs: bool) -> PolicyOverview {
    let rules = &live.rules;
    PolicyOverview {
        two_factor: rules.two_factor,
        channels: rules.channels.clone(),
        restore: rules.restore,
        restore_settings: rules.restore_defaults(),
        groups: rules
            .group
            .iter()
            .map(|g| GroupPolicyView {
                group: g.group.clone(),
                two_factor: g.two_factor,
                channels: g.channels.clone(),
                restore: g.restore,
                restore_settings: g.restore_overrides(),
            })
            .collect(),
        origin: Some(live.origin.clone()),
        config_differs,
    }
}

#[cfg(test)]
mod tests {
    use twofold_wire::admin::NewUser;
    use twofold_wire::TwoFactorState;

    use super::*;
    use crate::clock::ManualClock;
    use crate::config::Config;
    use crate::store::Store;

    const T0: i64 = 1_790_000_000;

    async fn service(dir: &std::path::Path, policy: &str) -> Result<Service> {
        let config = Config::parse(&format!(
            "version = 1\n[store]\nargon2_memory_kib = 1024\nargon2_iterations = 1\n{policy}"
        ))
        .map_err(|e| Error::Config(format!("{e:?}")))?;
        let service = Service::new(
            Store::open(dir)?,
            ManualClock::new(T0),
            crate::crypto::SecretBox::new(&[7u8; 32]),
            Arc::new(config),
        );
        service.load_policies().await?;
        Ok(service)
    }

    fn state(service: &Service, name: &str) -> Result<TwoFactorState> {
        Ok(service.two_factor_status(name)?.state)
    }

    fn vpn(key: &str, value: Option<&str>) -> PolicyEdit {
        PolicyEdit::Group {
            group: "vpn".into(),
            key: key.into(),
            value: value.map(str::to_owned),
        }
    }

    #[tokio::test]
    async fn the_store_holds_the_live_policies_from_the_first_start_on() -> Result<()> {
        let dir = std::env::temp_dir().join(format!(
            "tf-live-policy-{}",
            data_encoding::HEXLOWER.encode(&crate::crypto::random_bytes::<6>())
        ));
        let admin = Actor::Admin {
            uid: 0,
            directory_user: None,
        };
        {
            let service = service(&dir, "[policy]\ntwo_factor = \"optional\"\n").await?;
            let seeded = service.policy_overview();
            assert_eq!(
                seeded.origin.as_ref().map(|o| (o.source, o.revision)),
                Some((PolicySource::ConfigFile, 1))
            );
            assert!(!seeded.config_differs);
            service
                .create_user(
                    &Actor::Daemon,
                    NewUser {
                        username: "vic".into(),
                        groups: vec!["CN=VPN,OU=Groups,DC=corp,DC=example".into()],
                        ..NewUser::default()
                    },
                )
                .await?;
            assert_eq!(state(&service, "vic")?, TwoFactorState::NotEnrolled);

            // The next question after the answer follows the edit.
            let change = service
                .edit_policy(&admin, vpn("two_factor", Some("required")))
                .await?;
            assert_eq!(change.changes, vec!["group vpn added: two_factor required"]);
            assert_eq!(state(&service, "vic")?, TwoFactorState::EnrollmentRequired);
            let origin = change.policies.origin.clone();
            assert_eq!(
                origin.map(|o| (o.source, o.changed_by, o.revision)),
                Some((PolicySource::Admin, "admin:uid=0".to_owned(), 2))
            );
            assert!(change.policies.config_differs);

            // Refused like the file refuses it; nothing changes, the attempt is audited.
            let refused = service
                .edit_policy(&admin, vpn("two_factor", Some("always")))
                .await;
            assert!(
                matches!(&refused, Err(Error::InvalidRequest(m)) if m.contains("unknown variant `always`")),
                "{refused:?}"
            );
            assert_eq!(service.policy().origin.revision, 2);
            let unchanged = service
                .edit_policy(&admin, vpn("two_factor", Some("required")))
                .await?;
            assert!(unchanged.changes.is_empty());

            let audit: Vec<(String, String, String, String)> = service
                .audit_tail(Some(10))?
                .into_iter()
                .filter(|e| e.action.starts_with("policy"))
                .map(|e| (e.actor, e.action, e.outcome, e.detail.unwrap_or_default()))
                .collect();
            let row = |actor: &str, action: &str, outcome: &str, detail: &str| {
                (
                    actor.to_owned(),
                    action.to_owned(),
                    outcome.to_owned(),
                    detail.to_owned(),
                )
            };
            assert_eq!(
                audit,
                vec![
                    row("daemon", "policy_seed", "ok", "copied from the configuration file, group entries: 0"),
                    row("admin:uid=0", "policy_group_set", "ok", "group vpn added: two_factor required (revision 2)"),
                    row("admin:uid=0", "policy_group_set", "invalid", "two_factor: unknown variant `always`, expected one of `required`, `optional`, `off`"),
                    row("admin:uid=0", "policy_group_set", "unchanged", "revision=2"),
                ]
            );
        }

        // A restart with another file keeps the live policies, and says the file differs.
        let service = service(
            &dir,
            "[policy]\ntwo_factor = \"optional\"\n[[policy.group]]\ngroup = \"sso\"\ntwo_factor = \"off\"\n",
        )
        .await?;
        assert_eq!(state(&service, "vic")?, TwoFactorState::EnrollmentRequired);
        let shown = service.policy_overview();
        assert!(shown.config_differs);
        assert_eq!(
            shown
                .groups
                .iter()
                .map(|g| g.group.as_str())
                .collect::<Vec<_>>(),
            vec!["vpn"]
        );

        // reset-to-config applies the file (as last read: a reload changes which).
        assert!(!service.set_file_policy(service.policy().rules.clone()));
        let reset = service.reset_policy_to_config(&admin).await?;
        assert!(
            reset.changes.is_empty(),
            "the same as live: {:?}",
            reset.changes
        );
        let file =
            Config::parse("version = 1\n[[policy.group]]\ngroup = \"sso\"\ntwo_factor = \"off\"\n")
                .map_err(|e| Error::Config(format!("{e:?}")))?;
        assert!(service.set_file_policy(file.policy));
        let reset = service.reset_policy_to_config(&admin).await?;
        assert_eq!(
            reset.changes,
            vec![
                "group sso added: two_factor off",
                "group vpn removed (two_factor required)"
            ]
        );
        assert_eq!(state(&service, "vic")?, TwoFactorState::NotEnrolled);
        assert_eq!(
            reset.policies.origin.map(|o| (o.source, o.revision)),
            Some((PolicySource::ConfigFile, 3))
        );
        assert!(!reset.policies.config_differs);
        drop(service);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
