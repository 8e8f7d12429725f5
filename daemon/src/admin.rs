//! The admin socket: newline-delimited JSON (`twofold_wire::admin`) over a Unix socket.
//!
//! Who may connect is decided twice: the socket file is mode 0660 (owner and the configured group), and
//! each connection's peer credentials decide the operator's role (see `roles`). A peer without a role is
//! refused as it connects; the role is then decided again for every request (name service lookups and
//! AD groups may have changed), and the request is checked against it. The operator's uid (and, when an
//! AD group gave the role, the AD user) goes into every audit event, refusals included.
//!
//! A connection that sends no complete request, or does not take its answer, for
//! `[admin] idle_timeout_seconds` is closed: a forgotten console or a stuck script holds no connection
//! for ever. The console connects again by itself.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use twofold_wire::admin::{
    AdminAnswer, AdminReply, AdminRequest, DaemonStatus, OperatorIdentity, MAX_REQUEST_BYTES,
};
use twofold_wire::policy::Channel;
use twofold_wire::ErrorBody;

use crate::error::{Error, Result};
use crate::live_policy::PolicyChange;
use crate::policy::PolicyEdit;
use crate::roles::{self, Peer};
use crate::service::{Actor, Service};

/// How long a stop waits for the admin requests in flight to be answered.
const ANSWER_IN_FLIGHT_WITHIN: Duration = Duration::from_secs(10);

pub struct AdminSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl AdminSocket {
    pub fn bind(path: &Path, group: Option<&str>) -> Result<AdminSocket> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        // A socket file left by a daemon that was killed would make bind fail.
        if path.exists() {
            std::fs::remove_file(path).map_err(|e| Error::io(path, e))?;
        }
        let listener = UnixListener::bind(path).map_err(|e| Error::io(path, e))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
            .map_err(|e| Error::io(path, e))?;
        if let Some(name) = group {
            let g = nix::unistd::Group::from_name(name)
                .map_err(|e| Error::Config(format!("admin group {name}: {e}")))?
                .ok_or_else(|| Error::Config(format!("admin group {name} does not exist")))?;
            std::os::unix::fs::chown(path, None, Some(g.gid.as_raw()))
                .map_err(|e| Error::io(path, e))?;
        }
        Ok(AdminSocket {
            listener,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub async fn serve(
        self,
        service: Arc<Service>,
        status: Arc<DaemonStatus>,
        mut stop: watch::Receiver<bool>,
    ) {
        // Stopping closes idle connections at once and lets a request already read get its answer (a
        // failed store stops the daemon while the request that found it out is still being answered).
        let connections = tokio_util::task::TaskTracker::new();
        loop {
            let stream = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "admin accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = stop.changed() => break,
            };
            let service = service.clone();
            let status = status.clone();
            let stop = stop.clone();
            connections.spawn(async move {
                if let Err(e) = handle(stream, service, status, stop).await {
                    tracing::debug!(error = %e, "admin connection ended");
                }
            });
        }
        let _ = std::fs::remove_file(&self.path);
        connections.close();
        // Bounded: an on-demand sync of a large domain may run for most of a minute, and a stop must not
        // wait for it (the unit's TimeoutStopSec would kill the daemon instead).
        if tokio::time::timeout(ANSWER_IN_FLIGHT_WITHIN, connections.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                requests = connections.len(),
                "stopping with admin requests unanswered after {} s",
                ANSWER_IN_FLIGHT_WITHIN.as_secs()
            );
        }
    }
}

async fn handle(
    stream: UnixStream,
    service: Arc<Service>,
    status: Arc<DaemonStatus>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let peer = Peer::of(&stream)?;
    let idle = Duration::from_secs(service.config().admin.idle_timeout_seconds);
    let (read, mut write) = stream.into_split();
    if let Err(e) = identify(&service, &peer).await {
        tracing::warn!(uid = peer.uid, "admin connection refused: no role");
        write_answer(&mut write, &error_answer(&e), idle).await?;
        return Ok(());
    }
    let limit = u64::try_from(MAX_REQUEST_BYTES).unwrap_or(u64::MAX) + 1;
    let mut reader = BufReader::new(read).take(limit);
    let mut line = String::new();
    loop {
        line.clear();
        reader.set_limit(limit);
        let next = tokio::select! {
            next = tokio::time::timeout(idle, reader.read_line(&mut line)) => next,
            _ = stop.wait_for(|stopping| *stopping) => return Ok(()),
        };
        let Ok(read) = next else {
            tracing::debug!(
                uid = peer.uid,
                idle_seconds = idle.as_secs(),
                "admin connection idle: closed"
            );
            return Ok(());
        };
        if read? == 0 {
            return Ok(());
        }
        if line.len() > MAX_REQUEST_BYTES {
            let answer = error_answer(&Error::invalid(format!(
                "request longer than {MAX_REQUEST_BYTES} bytes"
            )));
            write_answer(&mut write, &answer, idle).await?;
            return Ok(());
        }
        if line.trim().is_empty() {
            continue;
        }
        let request = match serde_json::from_str::<AdminRequest>(line.trim()) {
            Ok(request) => request,
            Err(e) => {
                let answer = error_answer(&Error::invalid(format!("bad request: {e}")));
                write_answer(&mut write, &answer, idle).await?;
                continue;
            }
        };
        let operator = match identify(&service, &peer).await {
            Ok(operator) => operator,
            Err(e) => {
                tracing::warn!(uid = peer.uid, "admin connection closed: the role is gone");
                write_answer(&mut write, &error_answer(&e), idle).await?;
                return Ok(());
            }
        };
        let actor = Actor::Admin {
            uid: operator.uid,
            directory_user: operator.directory_user.clone(),
        };
        let answer = match authorize(&service, &operator, &actor, &request).await {
            Err(e) => error_answer(&e),
            Ok(()) => match dispatch(&service, &status, &operator, &actor, request).await {
                Ok(reply) => AdminAnswer::Ok {
                    reply: Box::new(reply),
                },
                Err(e) => error_answer(&e),
            },
        };
        write_answer(&mut write, &answer, idle).await?;
    }
}

/// The peer's role now. User and group lookups go through NSS (files, sssd, winbind), which blocks:
/// they run on the blocking pool, not on the runtime's workers.
async fn identify(service: &Arc<Service>, peer: &Peer) -> Result<OperatorIdentity> {
    let service = service.clone();
    let peer = peer.clone();
    tokio::task::spawn_blocking(move || {
        let config = service.config();
        roles::identify(
            &peer,
            &config.admin.roles,
            &config.directory,
            |login| service.store().find_user(login),
            &|user| service.sign_in_block(user).is_none(),
        )
    })
    .await
    .map_err(|e| Error::Config(format!("admin role lookup task: {e}")))?
}

/// Refuses what the operator's role does not permit, and audits the refusal.
async fn authorize(
    service: &Service,
    operator: &OperatorIdentity,
    actor: &Actor,
    request: &AdminRequest,
) -> Result<()> {
    let Err(refusal) = roles::authorize(operator, request) else {
        return Ok(());
    };
    let permission = request.permission();
    let detail = format!(
        "needs={} role={} granted_by={}",
        permission.role().name(),
        operator.role.name(),
        operator.granted_by
    );
    let action = serde_json::to_value(request)
        .ok()
        .and_then(|v| v.get("action").and_then(|a| a.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "admin_request".to_owned());
    service.audit_refusal(actor, &action, detail).await?;
    Err(refusal)
}

fn error_answer(e: &Error) -> AdminAnswer {
    // An operator may see why the store failed; a relying application may not.
    let message = if e.is_caller_error() || matches!(e, Error::StoreFailed(_)) {
        e.to_string()
    } else {
        tracing::error!(error = %e, "admin request failed");
        "internal error; see the daemon's log".to_owned()
    };
    AdminAnswer::Error {
        error: ErrorBody {
            code: e.code().to_owned(),
            message,
        },
    }
}

/// Writes one answer line, giving up after `idle` on a peer that does not read.
async fn write_answer(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    answer: &AdminAnswer,
    idle: Duration,
) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(answer).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    tokio::time::timeout(idle, write.write_all(&bytes))
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "admin peer does not read")
        })?
}

async fn dispatch(
    service: &Service,
    status: &DaemonStatus,
    operator: &OperatorIdentity,
    actor: &Actor,
    request: AdminRequest,
) -> Result<AdminReply> {
    Ok(match request {
        AdminRequest::Status => AdminReply::Status(DaemonStatus {
            users: service.store().count_users(),
            schema_version: service.store().schema_version()?,
            audit_log: Some(service.audit_log_status()?),
            ..status.clone()
        }),
        AdminRequest::UserCreate(new) => AdminReply::User(service.create_user(actor, new).await?),
        AdminRequest::UserShow { user } => AdminReply::User(service.show_user(&user)?),
        AdminRequest::UserList { query, limit } => AdminReply::Users {
            users: service.list_users(query.as_deref(), limit)?,
        },
        AdminRequest::UserSetEnabled { user, enabled } => {
            AdminReply::User(service.set_user_enabled(actor, &user, enabled).await?)
        }
        AdminRequest::UserDelete { user } => {
            service.delete_user(actor, &user).await?;
            AdminReply::Done {
                message: format!("user {user} deleted"),
            }
        }
        AdminRequest::UserUnlock { user } => {
            let cleared = service.unlock_user(actor, &user).await?;
            AdminReply::Done {
                message: if cleared {
                    format!("user {user} unlocked")
                } else {
                    format!("user {user} had no failures")
                },
            }
        }
        AdminRequest::AddressUnlock { address } => {
            let cleared = service.unlock_address(actor, &address).await?;
            AdminReply::Done {
                message: if cleared {
                    format!("address {address} unlocked")
                } else {
                    format!("address {address} had no failures")
                },
            }
        }
        AdminRequest::DeviceList { user } => AdminReply::Devices {
            devices: service.devices(&user)?,
        },
        AdminRequest::DeviceBlock { user, device } => AdminReply::Device(
            service
                .set_device_blocked(actor, &user, &device, true)
                .await?,
        ),
        AdminRequest::DeviceUnblock { user, device } => AdminReply::Device(
            service
                .set_device_blocked(actor, &user, &device, false)
                .await?,
        ),
        AdminRequest::DeviceDelete { user, device } => {
            AdminReply::Device(service.delete_device(actor, &user, &device).await?)
        }
        AdminRequest::TotpEnroll {
            user,
            label,
            algorithm,
            digits,
        } => AdminReply::Enrollment(
            service
                .enroll_totp(actor, &user, label, algorithm, digits, None)
                .await?,
        ),
        AdminRequest::TotpConfirm { user, device, code } => AdminReply::Confirmed(
            service
                .confirm_totp(actor, &user, &device, &code, None)
                .await?,
        ),
        AdminRequest::ApiKeyCreate {
            name,
            scopes,
            trusted_proxy,
        } => {
            let key = service
                .create_api_key(actor, &name, &scopes, trusted_proxy)
                .await?;
            AdminReply::ApiKeyCreated { name, key }
        }
        AdminRequest::ApiKeySet {
            name,
            scopes,
            trusted_proxy,
        } => AdminReply::ApiKeys {
            keys: vec![
                service
                    .set_api_key(actor, &name, scopes.as_deref(), trusted_proxy)
                    .await?,
            ],
        },
        AdminRequest::ApiKeyList => AdminReply::ApiKeys {
            keys: service.api_keys()?,
        },
        AdminRequest::ApiKeyRevoke { name } => {
            service.revoke_api_key(actor, &name).await?;
            AdminReply::Done {
                message: format!("API key {name} revoked"),
            }
        }
        AdminRequest::AuditTail { limit } => AdminReply::Audit {
            events: service.audit_tail(limit)?,
        },
        AdminRequest::AuditSearch { filter } => AdminReply::Audit {
            events: service.audit_search(&filter)?,
        },
        AdminRequest::WhoAmI => AdminReply::Identity(operator.clone()),
        AdminRequest::Dashboard => AdminReply::Dashboard(service.dashboard()?),
        AdminRequest::UserIndex => AdminReply::UserIndex {
            users: service.user_index()?,
        },
        AdminRequest::PolicyShow => AdminReply::Policies(service.policy_overview()),
        AdminRequest::PolicySet { key, value } => policy_changed(
            service
                .edit_policy(actor, PolicyEdit::Default { key, value })
                .await?,
        ),
        AdminRequest::PolicyGroupSet { group, key, value } => policy_changed(
            service
                .edit_policy(actor, PolicyEdit::Group { group, key, value })
                .await?,
        ),
        AdminRequest::PolicyGroupRemove { group } => policy_changed(
            service
                .edit_policy(actor, PolicyEdit::RemoveGroup { group })
                .await?,
        ),
        AdminRequest::PolicyGroupMove { group, position } => policy_changed(
            service
                .edit_policy(actor, PolicyEdit::MoveGroup { group, position })
                .await?,
        ),
        AdminRequest::PolicyResetToConfig => {
            policy_changed(service.reset_policy_to_config(actor).await?)
        }
        AdminRequest::DirectorySync { domain, full } => AdminReply::DirectoryStatus {
            domains: service.sync_directories(domain.as_deref(), full).await?,
        },
        AdminRequest::DirectoryStatus => AdminReply::DirectoryStatus {
            domains: service.directory_status()?,
        },
        AdminRequest::UserSetPhoneOverride {
            user,
            mobile,
            voice,
        } => AdminReply::User(
            service
                .set_phone_override(actor, &user, mobile, voice)
                .await?,
        ),
        AdminRequest::DeliveryList { user, limit } => AdminReply::Deliveries {
            deliveries: service
                .challenges()?
                .deliveries(service, user.as_deref(), limit)?,
        },
        AdminRequest::HandoverList => {
            let entries = service
                .challenges()?
                .delivery()
                .handover()
                .list(service.now());
            let users: Vec<&str> = entries.iter().map(|e| e.user.as_str()).collect();
            service.audit(
                actor,
                "handover_list",
                None,
                "ok",
                Some(format!("shown={}", users.join(","))),
            )?;
            service.store().commit().await?;
            AdminReply::Handovers { entries }
        }
        AdminRequest::HandoverDone { id } => {
            let user = service
                .challenges()?
                .delivery()
                .handover()
                .done(&id)
                .ok_or(Error::NotFound {
                    what: "handover entry",
                })?;
            service.audit(
                actor,
                "handover_done",
                Some(&user),
                "ok",
                Some(format!("entry={id}")),
            )?;
            service.store().commit().await?;
            AdminReply::Done {
                message: format!("handover {id} for {user} done"),
            }
        }
        AdminRequest::PluginStatus => AdminReply::Plugins {
            plugins: service.challenges()?.delivery().host().status(),
        },
        AdminRequest::PluginCheck { file, wasm_base64 } => {
            let wasm = data_encoding::BASE64
                .decode(wasm_base64.as_bytes())
                .map_err(|e| Error::invalid(format!("{file}: not base64: {e}")))?;
            let host = service.challenges()?.delivery().host().clone();
            let report = tokio::task::spawn_blocking(move || host.check(&wasm))
                .await
                .map_err(|e| Error::Config(format!("plugin check task: {e}")))?
                .map_err(|e| Error::invalid(format!("{file}: {e}")))?;
            AdminReply::PluginChecked(twofold_wire::delivery::PluginCheck {
                file,
                sha256: report.0,
                interface: report.1,
                imports: report.2,
            })
        }
        AdminRequest::PluginTest {
            plugin,
            to,
            channel,
        } => {
            if !matches!(channel, Channel::Sms | Channel::Voice) {
                return Err(Error::invalid(
                    "plugin test sends to a phone number: the channel is sms or voice",
                ));
            }
            let to = crate::phone::dial(&to).map_err(|why| {
                Error::invalid(format!("{to:?} is not a number to send to: {why}"))
            })?;
            let delivery = service.challenges()?.delivery().clone();
            delivery.host().plugin(&plugin).map_err(Error::invalid)?;
            let tested = delivery.test_plugin(&plugin, channel, &to).await;
            service.audit(
                actor,
                "plugin_test",
                None,
                &tested.outcome,
                Some(format!(
                    "plugin={plugin} channel={} ms={}",
                    match channel {
                        Channel::Voice => "voice",
                        _ => "sms",
                    },
                    tested.duration_ms
                )),
            )?;
            service.store().commit().await?;
            AdminReply::PluginTested(tested)
        }
        AdminRequest::PluginReload => {
            let delivery = service.challenges()?.delivery().clone();
            let plugins = tokio::task::spawn_blocking(move || delivery.reload(None))
                .await
                .map_err(|e| Error::Config(format!("plugin reload task: {e}")))?;
            let failed = plugins.iter().filter(|p| !p.loaded).count();
            service.audit(
                actor,
                "plugin_reload",
                None,
                if failed == 0 { "ok" } else { "partial" },
                Some(format!("plugins={} failed={failed}", plugins.len())),
            )?;
            service.store().commit().await?;
            AdminReply::Plugins { plugins }
        }
        AdminRequest::AccessCodeGenerate { user } => AdminReply::AccessCode(
            service
                .challenges()?
                .generate_access_code(service, actor, &user)
                .await?,
        ),
        AdminRequest::RestoreStatus { user } => {
            let (user, state) = service.restore_status(&user)?;
            AdminReply::RestoreState { user, state }
        }
        AdminRequest::RestoreResend { user, channel } => {
            AdminReply::RestoreCodeSent(service.resend_restore_code(actor, &user, channel).await?)
        }
        AdminRequest::RestoreStart { user, label } => {
            AdminReply::Enrollment(service.admin_restore_start(actor, &user, label).await?)
        }
        AdminRequest::RestoreConfirm { user, device, code } => AdminReply::Restored(
            service
                .admin_restore_confirm(actor, &user, &device, &code)
                .await?,
        ),
        AdminRequest::UserResetTwoFactor { user } => {
            AdminReply::User(service.reset_two_factor(actor, &user).await?)
        }
        AdminRequest::SystemTwoFactorShow => {
            AdminReply::SystemTwoFactor(service.system_two_factor_view()?)
        }
        AdminRequest::SystemTwoFactorSet { on } => {
            AdminReply::SystemTwoFactor(service.set_system_two_factor(actor, on).await?)
        }
    })
}

fn policy_changed(change: PolicyChange) -> AdminReply {
    AdminReply::PolicyChanged {
        changes: change.changes,
        policies: change.policies,
    }
}
