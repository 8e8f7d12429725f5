//! Every screen drawn into ratatui's `TestBackend` at 80x24, before and after key presses, compared with
//! the snapshots in `src/snapshots/` (times and ids redacted). The replies are what the daemon would send;
//! the state under test is the real one the console runs.

use qrcode::{Color as QrColor, EcLevel, QrCode};
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::Color;
use ratatui::Terminal;
use twofold_wire::admin::{
    AdminReply, AdminRequest, AuditEvent, DashboardStats, GroupPolicyView, OperatorIdentity,
    PolicyOverview, Role, SyncStatus, SystemTwoFactorView, UserIndexEntry, UserView,
};
use twofold_wire::api::{ConfirmAnswer, EnrollAnswer};
use twofold_wire::delivery::{
    AccessCodeIssued, DeliveryAttempt, DeliveryInfo, DeliveryState, HandoverEntry, PluginInfo,
};
use twofold_wire::policy::{Channel, PolicyOrigin, PolicySource, RestoreRule, TwoFactorRule};
use twofold_wire::{DeviceInfo, DeviceKind, DeviceOrigin, DeviceStatus, TwoFactorState};

use crate::app::{App, Mode, Purpose, ScreenId};
use crate::screens::user::{UserKey, USER_KEYS};

const T0: i64 = 1_790_000_000;

fn identity(role: Role) -> OperatorIdentity {
    match role {
        Role::MasterAdmin => OperatorIdentity {
            uid: 0,
            name: Some("root".into()),
            role,
            granted_by: "root".into(),
            directory_user: None,
        },
        _ => OperatorIdentity {
            uid: 1001,
            name: Some("hd1".into()),
            role,
            granted_by: "group twofold-helpdesk".into(),
            directory_user: None,
        },
    }
}

fn event(id: u64, action: &str, user: &str, outcome: &str, detail: &str) -> AuditEvent {
    AuditEvent {
        id,
        time: T0 + i64::try_from(id).unwrap_or(0) * 60,
        actor: if action == "verify" {
            "api:vpn".into()
        } else {
            "admin:uid=0".into()
        },
        action: action.into(),
        user: Some(user.into()),
        outcome: outcome.into(),
        detail: Some(detail.into()),
    }
}

fn events() -> Vec<AuditEvent> {
    vec![
        event(1, "user_create", "alice", "ok", ""),
        event(2, "totp_confirm", "alice", "ok", "device=d0123456789abcdef"),
        event(
            3,
            "verify",
            "alice",
            "accept",
            "factor=totp device=d0123456789abcdef address=127.0.0.1",
        ),
        event(
            4,
            "verify",
            "bob",
            "reject",
            "reason=invalid_code failures=4 address=10.0.0.7",
        ),
        event(5, "device_block", "alice", "ok", "device=d0123456789abcdef"),
    ]
}

fn stats() -> DashboardStats {
    DashboardStats {
        users: 100_000,
        enrolled: 61_234,
        enrollment_required: 812,
        disabled: 97,
        locked: 3,
        devices_active: 64_001,
        devices_blocked: 41,
        devices_pending: 17,
        api_keys: 2,
        recent: events(),
    }
}

fn entry(username: &str, display: &str, state: TwoFactorState, locked: bool) -> UserIndexEntry {
    UserIndexEntry {
        username: username.into(),
        upn: Some(format!("{username}@corp.example")),
        display_name: Some(display.into()),
        email: Some(format!("{username}@example.com")),
        enabled: username != "dave",
        state,
        locked,
    }
}

fn index() -> Vec<UserIndexEntry> {
    vec![
        entry("alice", "Alice Smith", TwoFactorState::Enrolled, false),
        entry("bob", "Bob Smith", TwoFactorState::Enrolled, true),
        entry("carol", "Carol Jones", TwoFactorState::NotEnrolled, false),
        entry(
            "dave",
            "Dave Smithers",
            TwoFactorState::EnrollmentRequired,
            false,
        ),
        entry("erin", "Erin Example", TwoFactorState::Enrolled, false),
    ]
}

fn device(id: &str, label: &str, status: DeviceStatus, last_used: Option<i64>) -> DeviceInfo {
    DeviceInfo {
        id: id.into(),
        kind: DeviceKind::Totp,
        label: label.into(),
        status,
        created: T0,
        last_used,
        destination: None,
        origin: DeviceOrigin::Enrolled,
    }
}

/// Built from JSON as the daemon sends it, so fields that later features add (all optional) stay out.
fn alice() -> UserView {
    let view = serde_json::json!({
        "id": "u00112233445566ff",
        "username": "alice",
        "upn": "alice@corp.example",
        "display_name": "Alice Smith",
        "email": "alice@example.com",
        "mobile": "+41 79 123 45 67",
        "voice": "+999 44 123",
        "mobile_override": "+41 (0)79 999 00 00",
        "voice_override": null,
        "mobile_dialled": {"kind": "e164", "number": "+41799990000"},
        "voice_dialled": {"kind": "unusable", "reason": "+999 44 123: no such country code"},
        "groups": ["vpn-users", "staff"],
        "enabled": true,
        "source": "ad:corp",
        "directory": {
            "domain": "corp",
            "guid": "5f1c8a52-0d1e-4c77-9a43-1b2c3d4e5f60",
            "dn": "CN=Alice Smith,OU=Staff,DC=corp,DC=example",
            "account_disabled": false,
            "removed_at": null
        },
        "policy": {"two_factor": "required", "channels": ["totp", "sms"], "restore": "allowed", "from_groups": ["vpn-users"]},
        "state": "enrolled",
        "devices": [
            device("d0123456789abcdef", "work phone", DeviceStatus::Active, Some(T0 + 3600)),
            DeviceInfo {
                origin: DeviceOrigin::Restored,
                ..device("dfedcba9876543210", "old phone", DeviceStatus::Active, None)
            },
        ],
        "restore": {
            "allowed": true, "activated": true, "activated_at": T0, "code_issued_at": T0,
            "restores_in_period": 1, "limit": 3, "period_days": 30, "last_restore": T0,
            "next_restore_at": null, "logins": 12
        },
        "backup_codes_remaining": 9,
        "failures": 4,
        "locked": true,
        "created": T0,
    });
    match serde_json::from_value(view) {
        Ok(v) => v,
        Err(e) => unreachable!("the test user does not parse: {e}"),
    }
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn type_text(app: &mut App, text: &str) {
    for c in text.chars() {
        app.on_key(key(KeyCode::Char(c)));
    }
}

fn draw(app: &App) -> TestBackend {
    draw_sized(app, 80, 24)
}

fn draw_sized(app: &App, width: u16, height: u16) -> TestBackend {
    let mut terminal = match Terminal::new(TestBackend::new(width, height)) {
        Ok(t) => t,
        Err(e) => unreachable!("a test backend cannot fail: {e}"),
    };
    if let Err(e) = terminal.draw(|f| f.render_widget(app, f.area())) {
        unreachable!("a test backend cannot fail: {e}");
    }
    terminal.backend().clone()
}

macro_rules! snapshot {
    ($name:expr, $app:expr) => {{
        let mut settings = insta::Settings::clone_current();
        settings.add_filter(r"\d{4}-\d\d-\d\d \d\d:\d\d", "[date time]     ");
        settings.add_filter(r"\d\d-\d\d \d\d:\d\d:\d\d", "[time]        ");
        settings.add_filter(r"\b[ud][0-9a-f]{16}\b", "[id]             ");
        settings.bind(|| insta::assert_snapshot!($name, draw($app)));
    }};
    ($name:expr, $app:expr, $width:expr, $height:expr) => {{
        let mut settings = insta::Settings::clone_current();
        settings.add_filter(r"\d{4}-\d\d-\d\d \d\d:\d\d", "[date time]     ");
        settings.add_filter(r"\d\d-\d\d \d\d:\d\d:\d\d", "[time]        ");
        settings.add_filter(r"\b[ud][0-9a-f]{16}\b", "[id]             ");
        settings.bind(|| insta::assert_snapshot!($name, draw_sized($app, $width, $height)));
    }};
}

/// The text drawn at `width` x `height`, one string per row.
fn rows(app: &App, width: u16, height: u16) -> Vec<String> {
    let backend = draw_sized(app, width, height);
    let buffer = backend.buffer();
    (0..height)
        .map(|y| (0..width).map(|x| buffer[(x, y)].symbol()).collect())
        .collect()
}

/// The drawn rows trimmed and joined by one space: a line wrapped at a space reads as before.
fn joined(rows: &[String]) -> String {
    rows.iter()
        .map(|r| r.trim())
        .filter(|r| !r.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The console after its first requests, with the outbox taken as the console loop would.
fn started(role: Role) -> (App, Vec<(Purpose, AdminRequest)>) {
    let mut app = App::new(identity(role), "/run/twofold/admin.sock".into());
    let sent = std::mem::take(&mut app.outbox);
    (app, sent)
}

fn corp(ok: bool) -> SyncStatus {
    SyncStatus {
        domain: "corp".into(),
        mode: "incremental".into(),
        ok,
        last_run: Some(T0 + 240),
        last_success: Some(if ok { T0 + 240 } else { T0 - 3600 }),
        duration_ms: 412,
        directory_ms: 380,
        server: Some("ldaps://dc1.corp.example:636".into()),
        pages: 3,
        entries: 1200,
        added: 4,
        changed: 17,
        disabled: 1,
        removed: 0,
        purged: 0,
        failed: 0,
        errors: if ok {
            vec![]
        } else {
            vec!["ldaps://dc1.corp.example:636: connection refused".into()]
        },
    }
}

fn delivery(
    n: i64,
    user: &str,
    channel: Channel,
    state: DeliveryState,
    last: Option<(&str, &str)>,
) -> DeliveryInfo {
    DeliveryInfo {
        transaction_id: format!("t{n:016x}"),
        user: user.into(),
        channel,
        destination: "+41 •• ••• •• 67".into(),
        created: T0 + n * 60,
        expires_at: T0 + n * 60 + 600,
        state,
        used: false,
        attempts: last
            .map(|(outcome, detail)| DeliveryAttempt {
                at: T0 + n * 60 + 1,
                via: "sms-http".into(),
                outcome: outcome.into(),
                detail: detail.into(),
                duration_ms: 120,
            })
            .into_iter()
            .collect(),
    }
}

fn deliveries() -> Vec<DeliveryInfo> {
    vec![
        delivery(
            9,
            "bob",
            Channel::Sms,
            DeliveryState::Retrying,
            Some(("retry_later", "gateway answered 503")),
        ),
        delivery(
            8,
            "carol",
            Channel::Voice,
            DeliveryState::Failed,
            Some(("failed", "number not reachable")),
        ),
        delivery(
            7,
            "alice",
            Channel::Sms,
            DeliveryState::Delivered,
            Some(("delivered", "message id 8812")),
        ),
    ]
}

fn loaded(role: Role) -> App {
    let (mut app, _) = started(role);
    app.on_reply(
        Purpose::Deliveries,
        Ok(AdminReply::Deliveries {
            deliveries: deliveries(),
        }),
    );
    app.on_reply(Purpose::Dashboard, Ok(AdminReply::Dashboard(stats())));
    app.on_reply(
        Purpose::Directories,
        Ok(AdminReply::DirectoryStatus {
            domains: vec![corp(true)],
        }),
    );
    app.on_reply(Purpose::Index, Ok(AdminReply::UserIndex { users: index() }));
    app
}

/// alice's screen, reached by searching and pressing Enter.
fn on_alice(role: Role) -> App {
    let mut app = loaded(role);
    app.on_key(key(KeyCode::Tab));
    app.on_key(key(KeyCode::Char('/')));
    type_text(&mut app, "alice");
    app.on_key(key(KeyCode::Enter));
    app.outbox.clear();
    app.on_reply(Purpose::User("alice".into()), Ok(AdminReply::User(alice())));
    app
}

#[test]
fn dashboard_loading_then_loaded() {
    let (mut app, sent) = started(Role::MasterAdmin);
    assert_eq!(
        sent,
        vec![
            (Purpose::Dashboard, AdminRequest::Dashboard),
            (Purpose::Directories, AdminRequest::DirectoryStatus),
            (
                Purpose::Deliveries,
                AdminRequest::DeliveryList {
                    user: None,
                    limit: Some(200)
                }
            ),
            (Purpose::Index, AdminRequest::UserIndex)
        ]
    );
    snapshot!("dashboard_loading", &app);
    app.on_reply(Purpose::Dashboard, Ok(AdminReply::Dashboard(stats())));
    app.on_reply(
        Purpose::Directories,
        Ok(AdminReply::DirectoryStatus {
            domains: vec![corp(true)],
        }),
    );
    app.on_reply(
        Purpose::Deliveries,
        Ok(AdminReply::Deliveries {
            deliveries: deliveries(),
        }),
    );
    snapshot!("dashboard", &app);
}

#[test]
fn dashboard_says_when_the_daemon_fails() {
    let (mut app, _) = started(Role::MasterAdmin);
    app.on_reply(
        Purpose::Dashboard,
        Err("twofoldd closed the connection".into()),
    );
    snapshot!("dashboard_failed", &app);
}

#[test]
fn users_search_narrows_as_keys_are_typed() {
    let mut app = loaded(Role::MasterAdmin);
    app.on_key(key(KeyCode::Tab));
    assert_eq!(app.screen, ScreenId::Users);
    snapshot!("users_all", &app);
    app.on_key(key(KeyCode::Char('/')));
    type_text(&mut app, "smi");
    snapshot!("users_smi", &app);
    app.on_key(key(KeyCode::Down));
    snapshot!("users_smi_second_selected", &app);
    type_text(&mut app, "x");
    snapshot!("users_no_match", &app);
    app.on_key(key(KeyCode::Esc));
    assert_eq!(
        app.users.query, "smix",
        "the first Esc leaves the search box"
    );
    app.on_key(key(KeyCode::Esc));
    assert_eq!(app.users.query, "");
    assert_eq!(app.users.matches.len(), 5);
}

#[test]
fn enter_opens_the_selected_user() {
    let mut app = loaded(Role::MasterAdmin);
    app.on_key(key(KeyCode::Tab));
    app.on_key(key(KeyCode::Char('/')));
    type_text(&mut app, "smith");
    app.on_key(key(KeyCode::Down));
    app.on_key(key(KeyCode::Enter));
    assert_eq!(app.screen, ScreenId::User);
    assert_eq!(
        app.outbox,
        vec![(
            Purpose::User("bob".into()),
            AdminRequest::UserShow { user: "bob".into() }
        )]
    );
    snapshot!("user_loading", &app);
}

#[test]
fn user_detail_shows_devices_and_lockout() {
    let app = on_alice(Role::MasterAdmin);
    snapshot!("user_alice", &app);
}

#[test]
fn blocking_a_device_asks_first_then_sends_and_reports() {
    let mut app = on_alice(Role::Helpdesk);
    app.on_key(key(KeyCode::Down));
    app.on_key(key(KeyCode::Char('b')));
    assert!(matches!(app.mode, Mode::Confirm(_)));
    assert!(
        app.outbox.is_empty(),
        "nothing is sent before the confirmation"
    );
    snapshot!("user_block_confirm", &app);
    app.on_key(key(KeyCode::Char('y')));
    let block = AdminRequest::DeviceBlock {
        user: "alice".into(),
        device: "dfedcba9876543210".into(),
    };
    assert_eq!(
        app.outbox
            .iter()
            .map(|(_, r)| r.clone())
            .collect::<Vec<_>>(),
        vec![block]
    );
    let (purpose, _) = app.outbox.remove(0);
    app.on_reply(
        purpose,
        Ok(AdminReply::Device(device(
            "dfedcba9876543210",
            "old phone",
            DeviceStatus::Blocked,
            None,
        ))),
    );
    // The user is read again to show the new state.
    assert_eq!(
        app.outbox,
        vec![(
            Purpose::User("alice".into()),
            AdminRequest::UserShow {
                user: "alice".into()
            }
        )]
    );
    let mut view = alice();
    view.devices[1].status = DeviceStatus::Blocked;
    app.on_reply(Purpose::User("alice".into()), Ok(AdminReply::User(view)));
    snapshot!("user_blocked", &app);
}

#[test]
fn a_cancelled_action_sends_nothing() {
    let mut app = on_alice(Role::MasterAdmin);
    app.on_key(key(KeyCode::Char('u')));
    app.on_key(key(KeyCode::Char('n')));
    assert_eq!(app.mode, Mode::Normal);
    assert!(app.outbox.is_empty());
}

#[test]
fn helpdesk_sees_only_its_actions_and_is_told_the_role_needed() {
    let mut app = on_alice(Role::Helpdesk);
    snapshot!("user_alice_helpdesk", &app);
    app.on_key(key(KeyCode::Char('n')));
    assert_eq!(app.mode, Mode::Normal);
    assert!(app.outbox.is_empty());
    snapshot!("user_unblock_refused_helpdesk", &app);
}

#[test]
fn the_daemons_refusal_is_shown() {
    let mut app = on_alice(Role::MasterAdmin);
    app.on_key(key(KeyCode::Char('d')));
    app.on_key(key(KeyCode::Enter));
    let (purpose, _) = app.outbox.remove(0);
    app.on_reply(
        purpose,
        Err("unpair devices needs the admin role; uid 1001 is helpdesk (forbidden)".into()),
    );
    snapshot!("user_unpair_refused_by_daemon", &app);
}

fn enrollment() -> EnrollAnswer {
    EnrollAnswer {
        device: device("d00000000000000aa", "Authenticator", DeviceStatus::Pending, None),
        otpauth_uri: "otpauth://totp/Twofold:alice%40corp.example?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=Twofold".into(),
        secret: "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP".into(),
        qr_png_base64: String::new(),
        qr_svg: String::new(),
    }
}

fn enrolling() -> App {
    let mut app = on_alice(Role::MasterAdmin);
    app.on_key(key(KeyCode::Char('e')));
    snapshot!("user_enroll_confirm", &app);
    app.on_key(key(KeyCode::Char('y')));
    let (purpose, request) = app.outbox.remove(0);
    assert_eq!(
        request,
        AdminRequest::TotpEnroll {
            user: "alice".into(),
            label: None,
            algorithm: None,
            digits: None
        }
    );
    app.on_reply(purpose, Ok(AdminReply::Enrollment(enrollment())));
    app
}

#[test]
fn enrollment_draws_the_qr_code_and_confirms_with_a_code() {
    let mut app = enrolling();
    assert_eq!(app.screen, ScreenId::Enrollment);
    snapshot!("enroll_qr", &app);
    type_text(&mut app, "12a34");
    assert_eq!(
        app.enrollment.as_ref().map(|e| e.code.as_str()),
        Some("1234"),
        "only digits are typed"
    );
    type_text(&mut app, "56");
    app.on_key(key(KeyCode::Enter));
    let (purpose, request) = app.outbox.remove(0);
    assert_eq!(
        request,
        AdminRequest::TotpConfirm {
            user: "alice".into(),
            device: "d00000000000000aa".into(),
            code: "123456".into()
        }
    );
    app.on_reply(purpose.clone(), Err("the code does not match: check the authenticator's clock and try the next code (invalid_request)".into()));
    snapshot!("enroll_wrong_code", &app);
    type_text(&mut app, "654321");
    app.on_key(key(KeyCode::Enter));
    let (purpose, _) = app.outbox.remove(0);
    let backup_codes = (0..10)
        .map(|i| format!("{i}{i}{i}{i}{i}-{i}{i}{i}{i}{i}"))
        .collect();
    let confirmed = ConfirmAnswer {
        device: device(
            "d00000000000000aa",
            "Authenticator",
            DeviceStatus::Active,
            Some(T0),
        ),
        backup_codes: Some(backup_codes),
        restore_code: None,
    };
    app.on_reply(purpose, Ok(AdminReply::Confirmed(confirmed)));
    snapshot!("enroll_confirmed", &app);
    app.on_key(key(KeyCode::Esc));
    assert_eq!(app.screen, ScreenId::User);
}

/// The drawn code is the QR code of the URI: reading the half blocks back gives the same modules.
#[test]
fn the_drawn_qr_code_has_the_uris_modules() {
    let app = enrolling();
    let backend = draw(&app);
    let buffer = backend.buffer();
    let code = match QrCode::with_error_correction_level(
        enrollment().otpauth_uri.as_bytes(),
        EcLevel::L,
    ) {
        Ok(c) => c,
        Err(e) => unreachable!("{e}"),
    };
    let width = code.width();
    let colors = code.to_colors();
    // The code starts after a one-line, two-column light margin.
    let (x0, y0) = (2u16, 1u16);
    for y in 0..width {
        for x in 0..width {
            let cell = &buffer[(
                x0 + u16::try_from(x).unwrap_or(0),
                y0 + u16::try_from(y / 2).unwrap_or(0),
            )];
            assert_eq!(
                (cell.fg, cell.bg),
                (Color::Black, Color::White),
                "dark on light at {x},{y}"
            );
            let (top, bottom) = match cell.symbol() {
                "█" => (true, true),
                "▀" => (true, false),
                "▄" => (false, true),
                " " => (false, false),
                other => unreachable!("unexpected symbol {other:?}"),
            };
            let dark = if y % 2 == 0 { top } else { bottom };
            assert_eq!(
                dark,
                colors[y * width + x] == QrColor::Dark,
                "module {x},{y}"
            );
        }
    }
}

#[test]
fn audit_filter_is_typed_and_sent() {
    let mut app = loaded(Role::MasterAdmin);
    app.on_key(key(KeyCode::Tab));
    app.on_key(key(KeyCode::Tab));
    assert_eq!(app.screen, ScreenId::Audit);
    let (purpose, request) = app.outbox.remove(app.outbox.len() - 1);
    assert_eq!(
        request,
        AdminRequest::AuditSearch {
            filter: Default::default()
        }
    );
    app.on_reply(purpose, Ok(AdminReply::Audit { events: events() }));
    snapshot!("audit_all", &app);
    app.on_key(key(KeyCode::Char('/')));
    type_text(&mut app, "user:alice action:verify 127.0");
    snapshot!("audit_filter_editing", &app);
    app.on_key(key(KeyCode::Enter));
    let (purpose, request) = app.outbox.remove(0);
    let AdminRequest::AuditSearch { filter } = request else {
        unreachable!("{request:?}")
    };
    assert_eq!(
        (
            filter.user.as_deref(),
            filter.action.as_deref(),
            filter.text.as_deref()
        ),
        (Some("alice"), Some("verify"), Some("127.0"))
    );
    app.on_reply(
        purpose,
        Ok(AdminReply::Audit {
            events: events().into_iter().filter(|e| filter.matches(e)).collect(),
        }),
    );
    snapshot!("audit_filtered", &app);
}

#[test]
fn help_lists_the_keys_and_the_role_table() {
    let mut app = loaded(Role::Helpdesk);
    app.on_key(key(KeyCode::Char('?')));
    snapshot!("help_helpdesk", &app);
    app.on_key(key(KeyCode::Char('x')));
    assert_eq!(app.mode, Mode::Normal);
}

#[test]
fn ctrl_c_quits_from_any_screen() {
    let mut app = on_alice(Role::MasterAdmin);
    app.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    assert!(app.quit);
}

#[test]
fn phone_numbers_are_edited_confirmed_and_sent() {
    let mut app = on_alice(Role::Admin);
    app.on_key(key(KeyCode::Char('p')));
    snapshot!("user_phones_form", &app);
    // The form starts from the current overrides: clear the mobile one, set a voice number.
    for _ in 0..20 {
        app.on_key(key(KeyCode::Backspace));
    }
    app.on_key(key(KeyCode::Tab));
    type_text(&mut app, "+41 44 555 66 77");
    app.on_key(key(KeyCode::Enter));
    snapshot!("user_phones_confirm", &app);
    app.on_key(key(KeyCode::Char('y')));
    let (_, request) = app.outbox.remove(0);
    assert_eq!(
        request,
        AdminRequest::UserSetPhoneOverride {
            user: "alice".into(),
            mobile: None,
            voice: Some("+41 44 555 66 77".into())
        }
    );
}

#[test]
fn helpdesk_cannot_change_phone_numbers_or_sync() {
    let mut app = on_alice(Role::Helpdesk);
    app.on_key(key(KeyCode::Char('p')));
    assert_eq!(app.mode, Mode::Normal);
    assert_eq!(
        app.status,
        Some(crate::app::Status::Error(
            "update phone numbers needs the admin role; you are helpdesk".into()
        ))
    );
    let mut app = loaded(Role::Helpdesk);
    app.on_key(key(KeyCode::Char('d')));
    assert_eq!(app.screen, ScreenId::Directory);
    app.outbox.clear();
    app.on_key(key(KeyCode::Char('s')));
    assert!(app.outbox.is_empty() && app.mode == Mode::Normal);
    snapshot!("directory_helpdesk_refused_sync", &app);
}

#[test]
fn directory_screen_shows_the_last_sync_and_syncs_on_request() {
    let mut app = loaded(Role::Admin);
    app.on_key(key(KeyCode::Char('d')));
    let (purpose, request) = app.outbox.remove(app.outbox.len() - 1);
    assert_eq!(request, AdminRequest::DirectoryStatus);
    app.on_reply(
        purpose,
        Ok(AdminReply::DirectoryStatus {
            domains: vec![corp(false)],
        }),
    );
    snapshot!("directory_failed_sync", &app);
    app.on_key(key(KeyCode::Char('s')));
    app.on_key(key(KeyCode::Char('y')));
    let (purpose, request) = app.outbox.remove(0);
    assert_eq!(
        request,
        AdminRequest::DirectorySync {
            domain: None,
            full: false
        }
    );
    snapshot!("directory_syncing", &app);
    app.on_reply(
        purpose,
        Ok(AdminReply::DirectoryStatus {
            domains: vec![corp(true)],
        }),
    );
    snapshot!("directory_synced", &app);
}

#[test]
fn policies_screen_lists_defaults_and_group_entries_in_order() {
    let mut app = loaded(Role::Helpdesk);
    app.on_key(key(KeyCode::Char('p')));
    assert_eq!(app.screen, ScreenId::Policies);
    let (switch_purpose, request) = app.outbox.remove(app.outbox.len() - 1);
    assert_eq!(request, AdminRequest::SystemTwoFactorShow);
    let (purpose, request) = app.outbox.remove(app.outbox.len() - 1);
    assert_eq!(request, AdminRequest::PolicyShow);
    snapshot!("policies_loading", &app);
    app.on_reply(
        switch_purpose,
        Ok(AdminReply::SystemTwoFactor(SystemTwoFactorView {
            users: 5,
            ..SystemTwoFactorView::default()
        })),
    );
    let overview = PolicyOverview {
        two_factor: TwoFactorRule::Optional,
        channels: vec![
            Channel::Totp,
            Channel::Sms,
            Channel::Voice,
            Channel::Email,
            Channel::InPerson,
        ],
        restore: RestoreRule::Allowed,
        restore_settings: Default::default(),
        groups: vec![
            GroupPolicyView {
                group: "CN=VPN Users,OU=Groups,DC=corp,DC=example".into(),
                two_factor: Some(TwoFactorRule::Required),
                channels: Some(vec![Channel::Totp, Channel::Sms]),
                restore: None,
                restore_settings: Default::default(),
            },
            GroupPolicyView {
                group: "Executives".into(),
                two_factor: None,
                channels: None,
                restore: Some(RestoreRule::Prohibited),
                restore_settings: Default::default(),
            },
            GroupPolicyView {
                group: "SSO Only".into(),
                two_factor: Some(TwoFactorRule::Off),
                channels: None,
                restore: None,
                restore_settings: Default::default(),
            },
        ],
        origin: None,
        config_differs: false,
    };
    app.on_reply(purpose, Ok(AdminReply::Policies(overview)));
    snapshot!("policies", &app);
}

fn handover_entry(id: &str, user: &str, code: &str) -> HandoverEntry {
    HandoverEntry {
        id: id.into(),
        user: user.into(),
        display_name: Some(format!("{} Example", user.to_uppercase())),
        code: code.into(),
        note: "check a photo ID before reading the code out".into(),
        created: T0,
        expires_at: T0 + 600,
    }
}

#[test]
fn handover_queue_shows_the_code_and_who_asked_and_marks_it_handed_over() {
    let mut app = loaded(Role::Helpdesk);
    app.on_key(key(KeyCode::Char('h')));
    assert_eq!(app.screen, ScreenId::Handover);
    let (purpose, request) = app.outbox.remove(app.outbox.len() - 1);
    assert_eq!(request, AdminRequest::HandoverList);
    app.on_reply(
        purpose,
        Ok(AdminReply::Handovers {
            entries: vec![
                handover_entry("h1", "bob", "482913"),
                handover_entry("h2", "carol", "105527"),
            ],
        }),
    );
    app.on_key(key(KeyCode::Down));
    snapshot!("handover_queue", &app);
    app.on_key(key(KeyCode::Enter));
    snapshot!("handover_confirm", &app);
    app.on_key(key(KeyCode::Char('y')));
    let (purpose, request) = app.outbox.remove(0);
    assert_eq!(request, AdminRequest::HandoverDone { id: "h2".into() });
    app.on_reply(
        purpose,
        Ok(AdminReply::Done {
            message: "handover h2 for carol done".into(),
        }),
    );
    // The queue is read again, and only then: listing it is audited.
    assert_eq!(
        app.outbox,
        vec![(Purpose::Handovers, AdminRequest::HandoverList)]
    );
    for _ in 0..100 {
        app.on_tick();
    }
    assert_eq!(app.outbox.len(), 1, "ticks never re-read the queue");
}

#[test]
fn delivery_screen_lists_plugins_and_codes_sent_and_only_master_admins_reload() {
    let mut app = loaded(Role::Admin);
    app.on_key(key(KeyCode::Char('7')));
    assert_eq!(app.screen, ScreenId::Delivery);
    let sent: Vec<AdminRequest> = app.outbox.drain(..).map(|(_, r)| r).collect();
    assert!(sent.contains(&AdminRequest::PluginStatus), "{sent:?}");
    let plugins = vec![
        PluginInfo {
            name: "sms-http".into(),
            file: Some("/usr/lib/twofold/plugins/sms-http.wasm".into()),
            loaded: true,
            error: None,
            sha256: None,
            from_cache: true,
            load_ms: 3,
            loaded_at: Some(T0),
        },
        PluginInfo {
            name: "voice".into(),
            file: Some("/etc/twofold/plugins/voice.wasm".into()),
            loaded: false,
            error: Some("unknown import wasi:http/outgoing-handler".into()),
            sha256: None,
            from_cache: false,
            load_ms: 0,
            loaded_at: None,
        },
    ];
    app.on_reply(Purpose::Plugins, Ok(AdminReply::Plugins { plugins }));
    app.on_reply(
        Purpose::Deliveries,
        Ok(AdminReply::Deliveries {
            deliveries: deliveries(),
        }),
    );
    snapshot!("delivery", &app);
    app.on_key(key(KeyCode::Char('R')));
    assert!(app.outbox.is_empty());
    assert_eq!(
        app.status,
        Some(crate::app::Status::Error(
            "change policies needs the master admin role; you are admin".into()
        ))
    );
    let mut app = loaded(Role::MasterAdmin);
    app.on_key(key(KeyCode::Char('7')));
    app.outbox.clear();
    app.on_key(key(KeyCode::Char('R')));
    app.on_key(key(KeyCode::Char('y')));
    assert_eq!(
        app.outbox
            .iter()
            .map(|(_, r)| r.clone())
            .collect::<Vec<_>>(),
        vec![AdminRequest::PluginReload]
    );
}

#[test]
fn an_access_code_is_generated_after_confirmation_and_shown_once() {
    let mut app = on_alice(Role::Admin);
    app.on_key(key(KeyCode::Char('c')));
    snapshot!("access_code_confirm", &app);
    app.on_key(key(KeyCode::Char('y')));
    let (purpose, request) = app.outbox.remove(0);
    assert_eq!(
        request,
        AdminRequest::AccessCodeGenerate {
            user: "alice".into()
        }
    );
    app.on_reply(
        purpose,
        Ok(AdminReply::AccessCode(AccessCodeIssued {
            user: "alice".into(),
            code: "3141-5926".into(),
            expires_at: T0 + 86_400,
        })),
    );
    snapshot!("access_code_shown", &app);
    app.on_key(key(KeyCode::Char('x')));
    assert_eq!(app.mode, Mode::Normal);
    let backend = draw(&app);
    assert!(
        !format!("{backend}").contains("3141-5926"),
        "the code is gone once the notice is closed"
    );
}

#[test]
fn resetting_2fa_asks_first_then_sends_and_reports() {
    let mut app = on_alice(Role::Admin);
    app.on_key(key(KeyCode::Char('R')));
    assert!(
        app.outbox.is_empty(),
        "nothing is sent before the confirmation"
    );
    snapshot!("user_reset_confirm", &app);
    app.on_key(key(KeyCode::Char('y')));
    let (purpose, request) = app.outbox.remove(0);
    assert_eq!(
        request,
        AdminRequest::UserResetTwoFactor {
            user: "alice".into()
        }
    );
    let mut view = alice();
    view.devices.clear();
    view.backup_codes_remaining = 0;
    view.state = TwoFactorState::EnrollmentRequired;
    app.on_reply(purpose, Ok(AdminReply::User(view.clone())));
    assert_eq!(
        app.outbox,
        vec![(
            Purpose::User("alice".into()),
            AdminRequest::UserShow {
                user: "alice".into()
            }
        )]
    );
    app.on_reply(Purpose::User("alice".into()), Ok(AdminReply::User(view)));
    snapshot!("user_reset_done", &app);
}

#[test]
fn helpdesk_cannot_reset_2fa_and_is_told_the_role_needed() {
    let mut app = on_alice(Role::Helpdesk);
    app.on_key(key(KeyCode::Char('R')));
    assert_eq!(app.mode, Mode::Normal);
    assert!(app.outbox.is_empty());
    assert_eq!(
        app.status,
        Some(crate::app::Status::Error(
            "reset 2FA needs the admin role; you are helpdesk".into()
        ))
    );
}

/// The live policies as a master admin left them (`policy_form`'s fixture), seeded from the file.
fn live_policies() -> PolicyOverview {
    PolicyOverview {
        origin: Some(PolicyOrigin {
            source: PolicySource::ConfigFile,
            changed_at: T0,
            changed_by: "daemon".into(),
            revision: 1,
        }),
        ..crate::policy_form::tests::overview()
    }
}

fn on_policies(role: Role, system: SystemTwoFactorView) -> App {
    let mut app = loaded(role);
    app.on_key(key(KeyCode::Char('p')));
    app.on_reply(Purpose::Policies, Ok(AdminReply::Policies(live_policies())));
    app.on_reply(
        Purpose::SystemTwoFactor,
        Ok(AdminReply::SystemTwoFactor(system)),
    );
    app.outbox.clear();
    app
}

#[test]
fn a_master_admin_changes_a_group_setting_after_confirmation() {
    let mut app = on_policies(Role::MasterAdmin, SystemTwoFactorView::default());
    snapshot!("policies_master_admin", &app);
    app.on_key(key(KeyCode::Down));
    app.on_key(key(KeyCode::Enter));
    assert!(matches!(&app.mode, Mode::PolicyForm(f) if f.group.as_deref() == Some("SSO Only")));
    snapshot!("policies_group_form", &app);
    app.on_key(key(KeyCode::Left));
    snapshot!("policies_group_form_changed", &app);
    app.on_key(key(KeyCode::Enter));
    assert!(
        app.outbox.is_empty(),
        "nothing is sent before the confirmation"
    );
    snapshot!("policies_group_confirm", &app);
    app.on_key(key(KeyCode::Char('y')));
    let (purpose, request) = app.outbox.remove(0);
    assert_eq!(
        request,
        AdminRequest::PolicyGroupSet {
            group: "SSO Only".into(),
            key: "two_factor".into(),
            value: Some("optional".into()),
        }
    );
    let mut after = live_policies();
    after.groups[0].two_factor = Some(TwoFactorRule::Optional);
    after.origin = Some(PolicyOrigin {
        source: PolicySource::Admin,
        changed_at: T0 + 600,
        changed_by: "admin:uid=0".into(),
        revision: 2,
    });
    after.config_differs = true;
    app.on_reply(
        purpose,
        Ok(AdminReply::PolicyChanged {
            changes: vec!["group SSO Only: two_factor off -> optional".into()],
            policies: after,
        }),
    );
    // The form comes back on the setting just changed, with its new value.
    snapshot!("policies_group_changed", &app);
    app.on_key(key(KeyCode::Esc));
    assert_eq!(app.mode, Mode::Normal);
    snapshot!("policies_file_differs", &app);
    // Del makes a group's setting fall through again.
    app.on_key(key(KeyCode::Enter));
    app.on_key(key(KeyCode::Delete));
    app.on_key(key(KeyCode::Enter));
    app.on_key(key(KeyCode::Char('y')));
    assert_eq!(
        app.outbox.remove(0).1,
        AdminRequest::PolicyGroupSet {
            group: "SSO Only".into(),
            key: "two_factor".into(),
            value: None,
        }
    );
}

#[test]
fn a_number_is_typed_into_a_default() {
    let mut app = on_policies(Role::MasterAdmin, SystemTwoFactorView::default());
    app.on_key(key(KeyCode::Enter));
    for _ in 0..3 {
        app.on_key(key(KeyCode::Down));
    }
    type_text(&mut app, "5x");
    snapshot!("policies_defaults_typing", &app);
    app.on_key(key(KeyCode::Enter));
    assert!(
        matches!(&app.mode, Mode::Confirm(a) if a.question().starts_with("Change the default restore_limit from 3 to 5?")),
        "{:?}",
        app.mode
    );
    app.on_key(key(KeyCode::Char('y')));
    assert_eq!(
        app.outbox.remove(0).1,
        AdminRequest::PolicySet {
            key: "restore_limit".into(),
            value: "5".into(),
        }
    );
    // The daemon's refusal (here: a value the file refuses too) is shown.
    let mut app = on_policies(Role::MasterAdmin, SystemTwoFactorView::default());
    app.on_key(key(KeyCode::Enter));
    for _ in 0..4 {
        app.on_key(key(KeyCode::Down));
    }
    type_text(&mut app, "0");
    app.on_key(key(KeyCode::Enter));
    app.on_key(key(KeyCode::Char('y')));
    let (purpose, _) = app.outbox.remove(0);
    app.on_reply(
        purpose,
        Err(
            "restore_period_days must be at least 1 when restore_limit is set (invalid_request)"
                .into(),
        ),
    );
    assert_eq!(
        app.status,
        Some(crate::app::Status::Error(
            "policies: restore_period_days must be at least 1 when restore_limit is set (invalid_request)".into()
        ))
    );
}

#[test]
fn others_see_every_setting_read_only_and_are_told_the_role_needed() {
    let mut app = on_policies(Role::Admin, SystemTwoFactorView::default());
    app.on_key(key(KeyCode::Enter));
    app.on_key(key(KeyCode::Right));
    assert!(app.outbox.is_empty());
    assert!(matches!(&app.mode, Mode::PolicyForm(f) if f.draft.is_none() && !f.editable));
    snapshot!("policies_read_only_admin", &app);
    app.on_key(key(KeyCode::Esc));
    for c in ['a', 'C'] {
        app.status = None;
        app.on_key(key(KeyCode::Char(c)));
        assert_eq!(
            app.status,
            Some(crate::app::Status::Error(
                "change policies needs the master admin role; you are admin".into()
            )),
            "{c}"
        );
    }
    app.on_key(key(KeyCode::Down));
    app.on_key(key(KeyCode::Char('x')));
    assert!(app.outbox.is_empty() && app.mode == Mode::Normal);
}

#[test]
fn groups_are_added_removed_and_reset_to_the_file_after_confirmation() {
    let mut app = on_policies(Role::MasterAdmin, SystemTwoFactorView::default());
    app.on_key(key(KeyCode::Char('x')));
    assert_eq!(
        app.status,
        Some(crate::app::Status::Error(
            "the defaults stay: pick a group entry with ↓".into()
        ))
    );
    app.on_key(key(KeyCode::Char('a')));
    type_text(&mut app, "Kiosk");
    snapshot!("policies_add_group", &app);
    app.on_key(key(KeyCode::Enter));
    app.on_key(key(KeyCode::Down));
    type_text(&mut app, "totp");
    snapshot!("policies_new_group_form", &app);
    app.on_key(key(KeyCode::Enter));
    app.on_key(key(KeyCode::Char('y')));
    assert_eq!(
        app.outbox.remove(0).1,
        AdminRequest::PolicyGroupSet {
            group: "Kiosk".into(),
            key: "channels".into(),
            value: Some("totp".into()),
        }
    );
    app.on_key(key(KeyCode::Down));
    app.on_key(key(KeyCode::Char('x')));
    assert!(
        matches!(&app.mode, Mode::Confirm(a) if a.question().starts_with("Remove the policy entry of group SSO Only?"))
    );
    app.on_key(key(KeyCode::Char('y')));
    assert_eq!(
        app.outbox.remove(0).1,
        AdminRequest::PolicyGroupRemove {
            group: "SSO Only".into()
        }
    );
    app.on_key(key(KeyCode::Char('C')));
    snapshot!("policies_reset_confirm", &app);
    app.on_key(key(KeyCode::Char('y')));
    assert_eq!(app.outbox.remove(0).1, AdminRequest::PolicyResetToConfig);
}

#[test]
fn the_system_switch_is_for_master_admins_and_asks_first() {
    let off = SystemTwoFactorView {
        users: 100_000,
        ..SystemTwoFactorView::default()
    };
    let mut admin = on_policies(Role::Admin, off.clone());
    admin.on_key(key(KeyCode::Char('s')));
    assert!(admin.outbox.is_empty() && admin.mode == Mode::Normal);
    snapshot!("policies_switch_refused_admin", &admin);

    let mut app = on_policies(Role::MasterAdmin, off);
    app.on_key(key(KeyCode::Char('s')));
    assert!(
        app.outbox.is_empty(),
        "nothing is sent before the confirmation"
    );
    snapshot!("policies_switch_on_confirm", &app);
    app.on_key(key(KeyCode::Char('y')));
    let (purpose, request) = app.outbox.remove(0);
    assert_eq!(request, AdminRequest::SystemTwoFactorSet { on: true });
    app.on_reply(
        purpose,
        Ok(AdminReply::SystemTwoFactor(SystemTwoFactorView {
            on: true,
            epoch: 2,
            changed_at: Some(T0 + 600),
            changed_by: Some("admin:uid=0".into()),
            enrollment_required: 100_000,
            users: 100_000,
        })),
    );
    snapshot!("policies_switch_on", &app);
    // Switching off again asks its own question.
    app.on_key(key(KeyCode::Char('s')));
    assert!(matches!(
        &app.mode,
        Mode::Confirm(crate::app::Action::SystemTwoFactor { on: false, .. })
    ));
}

#[test]
fn a_lost_restore_code_is_resent_by_the_channel_the_admin_picks() {
    let mut helpdesk = on_alice(Role::Helpdesk);
    helpdesk.on_key(key(KeyCode::Char('s')));
    assert_eq!(
        helpdesk.status,
        Some(crate::app::Status::Error(
            "re-send restore codes needs the admin role; you are helpdesk".into()
        ))
    );

    let mut app = on_alice(Role::Admin);
    app.on_key(key(KeyCode::Char('s')));
    snapshot!("user_resend_pick", &app);
    app.on_key(key(KeyCode::Down));
    app.on_key(key(KeyCode::Enter));
    assert!(
        app.outbox.is_empty(),
        "nothing is sent before the confirmation"
    );
    snapshot!("user_resend_confirm", &app);
    app.on_key(key(KeyCode::Char('y')));
    let (purpose, request) = app.outbox.remove(0);
    assert_eq!(
        request,
        AdminRequest::RestoreResend {
            user: "alice".into(),
            channel: Channel::InPerson
        }
    );
    app.on_reply(
        purpose,
        Ok(AdminReply::RestoreCodeSent(
            twofold_wire::restore::RestoreCodeResent {
                user: "alice".into(),
                channel: Channel::InPerson,
                destination: "helpdesk".into(),
            },
        )),
    );
    assert_eq!(
        app.status,
        Some(crate::app::Status::Info(
            "a new restore code for alice went by in person to helpdesk".into()
        ))
    );
    // The user is read again.
    assert_eq!(
        app.outbox,
        vec![(
            Purpose::User("alice".into()),
            AdminRequest::UserShow {
                user: "alice".into()
            }
        )]
    );
}

/// The console sizes every console test of issue 16 is drawn at: the smallest it supports and a wide one.
const SIZES: [(u16, u16); 2] = [(80, 24), (200, 50)];

/// alice's screen showing `view` instead of the usual one.
fn on_alice_as(role: Role, view: UserView) -> App {
    let mut app = on_alice(role);
    app.on_reply(Purpose::User("alice".into()), Ok(AdminReply::User(view)));
    app
}

#[test]
fn on_the_users_screen_number_keys_and_q_pick_screens_and_slash_searches() {
    let mut app = loaded(Role::MasterAdmin);
    app.on_key(key(KeyCode::Char('2')));
    assert_eq!(app.screen, ScreenId::Users);
    app.on_key(key(KeyCode::Char('3')));
    assert_eq!(app.screen, ScreenId::Audit, "3 picks the audit screen");
    assert_eq!(app.users.query, "");
    app.on_key(key(KeyCode::Char('2')));
    app.on_key(key(KeyCode::Char('q')));
    assert_eq!(
        app.screen,
        ScreenId::Dashboard,
        "q leaves as on every screen"
    );
    assert_eq!(app.users.query, "");
    app.on_key(key(KeyCode::Char('2')));
    snapshot!("users_not_searching", &app, 80, 24);
    app.on_key(key(KeyCode::Char('/')));
    type_text(&mut app, "q3");
    assert_eq!(app.users.query, "q3", "after / every key types");
    assert_eq!(app.screen, ScreenId::Users);
    app.on_key(key(KeyCode::Backspace));
    app.on_key(key(KeyCode::Backspace));
    type_text(&mut app, "smi");
    snapshot!("users_searching", &app, 80, 24);
    app.on_key(key(KeyCode::Esc));
    assert_eq!(
        app.users.query, "smi",
        "Esc leaves the search, the list stays narrowed"
    );
    assert_eq!(app.users.matches.len(), 3);
    app.on_key(key(KeyCode::Char('4')));
    assert_eq!(app.screen, ScreenId::Directory);
    // From the dashboard, `/` goes straight into the search box; Enter opens and leaves it.
    app.on_key(key(KeyCode::Char('1')));
    app.on_key(key(KeyCode::Char('/')));
    assert_eq!((app.screen, app.users.searching), (ScreenId::Users, true));
    app.on_key(key(KeyCode::Backspace));
    app.on_key(key(KeyCode::Backspace));
    type_text(&mut app, "ob");
    assert_eq!(app.users.query, "sob");
    app.on_key(key(KeyCode::Backspace));
    app.on_key(key(KeyCode::Backspace));
    app.on_key(key(KeyCode::Backspace));
    type_text(&mut app, "bob");
    app.on_key(key(KeyCode::Enter));
    assert_eq!(app.screen, ScreenId::User);
    assert!(!app.users.searching);
    app.on_key(key(KeyCode::Char('q')));
    assert_eq!(
        app.screen,
        ScreenId::Users,
        "q goes back from a user to the list"
    );
}

#[test]
fn at_80_columns_the_key_line_is_one_line_and_keeps_help() {
    for role in [Role::MasterAdmin, Role::Admin, Role::Helpdesk] {
        let mut app = on_alice(role);
        // The user screen first (the most keys), then every screen in Tab order.
        for screen in 0..8 {
            let drawn = rows(&app, 80, 24);
            assert!(
                drawn[23].contains("? help"),
                "{role:?}, {:?}: {:?}",
                app.screen,
                drawn[23]
            );
            assert_eq!(
                drawn[22].trim(),
                "",
                "{role:?}, {:?}: the keys take one line",
                app.screen
            );
            if screen > 0 {
                app.on_key(key(KeyCode::Tab));
            } else {
                app.on_key(key(KeyCode::Esc));
            }
        }
    }
}

/// A policy from long group DNs and a long DN: each fact wraps under its label.
fn alice_in_long_groups() -> UserView {
    let mut view = alice();
    if let Some(policy) = view.policy.as_mut() {
        policy.from_groups = vec![
            "CN=VPN Users,OU=Security Groups,OU=Zurich,DC=corp,DC=example".into(),
            "CN=Staff,OU=Security Groups,OU=Zurich,DC=corp,DC=example".into(),
        ];
    }
    view
}

#[test]
fn the_users_facts_wrap_instead_of_being_cut() {
    let app = on_alice_as(Role::MasterAdmin, alice_in_long_groups());
    for (width, height) in SIZES {
        let text = joined(&rows(&app, width, height));
        assert!(
            text.contains(
                "from CN=VPN Users,OU=Security Groups,OU=Zurich,DC=corp,DC=example, \
                 CN=Staff,OU=Security Groups,OU=Zurich,DC=corp,DC=example"
            ),
            "{width}x{height}: {text}"
        );
        assert!(text.contains("(override; directory: +41 79 123 45 67) · dialled"));
    }
    snapshot!("user_long_groups", &app, 80, 24);
    snapshot!("user_long_groups_wide", &app, 200, 50);
}

fn alice_with_labels() -> UserView {
    let mut view = alice();
    view.devices[0].label = "Authenticator".into();
    view.devices[1].label = "Maria's second work phone".into();
    view
}

#[test]
fn device_labels_get_the_width_they_need() {
    let app = on_alice_as(Role::MasterAdmin, alice_with_labels());
    for (width, height) in SIZES {
        let drawn = rows(&app, width, height);
        assert!(
            drawn.iter().any(|r| r.contains("│Authenticator ")),
            "{width}x{height}: {drawn:#?}"
        );
    }
    let wide = rows(&app, 200, 50);
    assert!(wide
        .iter()
        .any(|r| r.contains("│Maria's second work phone ")));
    snapshot!("user_labels", &app, 80, 24);
    snapshot!("user_labels_wide", &app, 200, 50);
}

fn long_named_events() -> Vec<AuditEvent> {
    let mut events = events();
    events.push(event(
        6,
        "verify",
        "maximilian.mustermann",
        "reject",
        "reason=invalid_code failures=1 address=10.0.0.9",
    ));
    events
}

#[test]
fn audit_user_names_get_the_width_they_need() {
    let mut app = loaded(Role::MasterAdmin);
    app.on_key(key(KeyCode::Tab));
    app.on_key(key(KeyCode::Tab));
    assert_eq!(app.screen, ScreenId::Audit);
    let (purpose, _) = app.outbox.remove(app.outbox.len() - 1);
    app.on_reply(
        purpose,
        Ok(AdminReply::Audit {
            events: long_named_events(),
        }),
    );
    for (width, height) in SIZES {
        let drawn = rows(&app, width, height);
        assert!(
            drawn.iter().any(|r| r.contains(" maximilian.mustermann ")),
            "{width}x{height}: {drawn:#?}"
        );
    }
    snapshot!("audit_long_name", &app, 80, 24);
    snapshot!("audit_long_name_wide", &app, 200, 50);
}

#[test]
fn at_200_columns_the_extra_width_goes_to_the_details() {
    let mut app = loaded(Role::MasterAdmin);
    let mut wide_stats = stats();
    wide_stats.recent = long_named_events();
    app.on_reply(Purpose::Dashboard, Ok(AdminReply::Dashboard(wide_stats)));
    let drawn = rows(&app, 200, 50);
    let header = drawn
        .iter()
        .find(|r| r.contains("Actor"))
        .cloned()
        .unwrap_or_default();
    let (user, outcome) = (header.find("User"), header.find("Outcome"));
    assert!(
        matches!((user, outcome), (Some(u), Some(o)) if o - u <= 24),
        "the user column is as wide as the longest name: {header:?}"
    );
    assert!(
        drawn
            .iter()
            .any(|r| r.contains("factor=totp device=d0123456789abcdef address=127.0.0.1")),
        "{drawn:#?}"
    );
    assert!(drawn.iter().any(|r| r.contains(" maximilian.mustermann ")));
    snapshot!("dashboard_wide", &app, 200, 50);
    let user = on_alice_as(Role::MasterAdmin, alice_with_labels());
    let drawn = rows(&user, 200, 50);
    let header = drawn
        .iter()
        .find(|r| r.contains("Label"))
        .cloned()
        .unwrap_or_default();
    assert!(
        header.find("Status").is_some_and(|s| s < 40),
        "the label column is as wide as the longest label: {header:?}"
    );
}

#[test]
fn the_last_actions_message_is_cleared_when_the_screen_changes() {
    let mut app = on_alice(Role::MasterAdmin);
    app.on_key(key(KeyCode::Char('u')));
    app.on_key(key(KeyCode::Char('y')));
    let (purpose, _) = app.outbox.remove(0);
    app.on_reply(
        purpose,
        Ok(AdminReply::Done {
            message: "alice unlocked".into(),
        }),
    );
    let shown = |app: &App| {
        rows(app, 80, 24)
            .iter()
            .any(|r| r.contains("alice unlocked"))
    };
    assert!(shown(&app));
    app.on_key(key(KeyCode::Esc));
    assert_eq!(app.screen, ScreenId::Users);
    assert!(
        !shown(&app),
        "the users screen does not repeat what was done to alice"
    );
    assert_eq!(app.status, None);
    app.status = Some(crate::app::Status::Info("refreshed".into()));
    app.on_key(key(KeyCode::Tab));
    assert_eq!(app.status, None, "Tab changes the screen too");
}

#[test]
fn help_lists_the_user_screens_letter_keys() {
    let mut app = on_alice(Role::MasterAdmin);
    app.on_key(key(KeyCode::Char('?')));
    assert_eq!(app.mode, Mode::Help);
    let text = rows(&app, 200, 50).join("\n");
    for entry in [
        "u unlock",
        "b block",
        "n unblock",
        "d unpair",
        "e enroll",
        "p phones",
        "c access code",
        "R reset 2FA",
        "s send restore code",
        "x disable/enable",
    ] {
        assert!(text.contains(entry), "{entry:?} missing from\n{text}");
    }
    // Every key the user screen answers to, as its list says it.
    for binding in USER_KEYS {
        let entry = format!("{} {}", binding.shown, binding.does);
        assert!(text.contains(&entry), "{entry:?} missing from\n{text}");
    }
    snapshot!("help_user", &app, 80, 24);
    snapshot!("help_user_wide", &app, 200, 50);
    // At 80x24 the rest is reached by scrolling: the role table is at the end.
    for _ in 0..20 {
        app.on_key(key(KeyCode::PageDown));
    }
    assert_eq!(app.mode, Mode::Help, "scrolling keeps the help open");
    assert!(joined(&rows(&app, 80, 24)).contains("master admin: manage API keys"));
    app.on_key(key(KeyCode::Char('q')));
    assert_eq!(app.mode, Mode::Normal);
    assert_eq!(
        app.screen,
        ScreenId::User,
        "the key that closes the help does nothing else"
    );
}

#[test]
fn the_readme_calls_the_user_screens_device_keys_what_the_console_does() {
    let readme = include_str!("../../README.md");
    let device_keys = USER_KEYS.iter().filter(|b| {
        matches!(
            b.command,
            UserKey::Block | UserKey::Unblock | UserKey::Unpair
        )
    });
    let mut named = 0;
    for binding in device_keys {
        let entry = format!("`{}` {}", binding.shown, binding.does);
        assert!(readme.contains(&entry), "README.md lacks {entry:?}");
        named += 1;
    }
    assert_eq!(named, 3);
    assert!(readme.contains("`d` unpair"));
}

/// The new layout arithmetic (facts' heights, column widths, the fitted key line, the help's scroll)
/// holds at any size: nothing panics, and wherever there is a row for it the key line keeps `? help`.
#[test]
fn every_screen_draws_at_tiny_and_huge_sizes() {
    let mut app = on_alice_as(Role::MasterAdmin, alice_in_long_groups());
    for step in 0..10 {
        for (width, height) in [(1, 1), (12, 3), (40, 10), (80, 24), (300, 90)] {
            let drawn = rows(&app, width, height);
            if width >= 40 && app.mode == Mode::Normal && app.screen != ScreenId::Enrollment {
                assert!(
                    drawn[usize::from(height) - 1].contains("? help"),
                    "{:?} at {width}x{height}: {:?}",
                    app.screen,
                    drawn[usize::from(height) - 1]
                );
            }
        }
        match step {
            0 => app.on_key(key(KeyCode::Char('?'))),
            1 => {
                for _ in 0..50 {
                    app.on_key(key(KeyCode::Down));
                }
            }
            2 => app.on_key(key(KeyCode::Char('x'))),
            _ => app.on_key(key(KeyCode::Tab)),
        }
    }
}

#[test]
fn user_names_in_the_list_get_the_width_they_need() {
    let mut app = loaded(Role::MasterAdmin);
    let mut users = index();
    users.push(entry(
        "maximilian.mustermann-extern",
        "Maximilian Mustermann",
        TwoFactorState::Enrolled,
        false,
    ));
    app.on_reply(Purpose::Index, Ok(AdminReply::UserIndex { users }));
    app.on_key(key(KeyCode::Char('2')));
    for (width, height) in SIZES {
        let drawn = rows(&app, width, height);
        assert!(
            drawn
                .iter()
                .any(|r| r.starts_with("maximilian.mustermann-extern Maximilian Mustermann")),
            "{width}x{height}: {drawn:#?}"
        );
    }
    snapshot!("users_long_name", &app, 80, 24);
    // A page of usual names keeps the usual 22 columns.
    app.on_key(key(KeyCode::Char('/')));
    type_text(&mut app, "alice");
    let header = format!("{:<23}Name", "User");
    assert!(rows(&app, 80, 24)[2].starts_with(&header));
}
