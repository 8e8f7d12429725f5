//! Keystroke to filtered list drawn, with 100,000 users: `cargo bench -p twofold-admin --bench search`.
//!
//! The console's real state and widgets: the index arrives as the daemon's JSON reply, then each key goes
//! through `App::on_key` and the frame is drawn by a real crossterm backend (writing its escape codes to
//! a sink instead of a tty) at 80x24. Results are in docs/BENCHMARKS.md.

use std::time::{Duration, Instant};

use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::Rect;
use ratatui::{Terminal, TerminalOptions, Viewport};
use twofold_admin::app::{App, Purpose};
use twofold_wire::admin::{AdminReply, OperatorIdentity, Role, UserIndexEntry};
use twofold_wire::TwoFactorState;

const USERS: usize = 100_000;
const ROUNDS: usize = 20;

const FIRST: &[&str] = &[
    "anna", "ben", "carla", "david", "eva", "felix", "greta", "hans", "ines", "jonas", "karin",
    "lukas", "maria", "nina", "oliver", "paula", "quentin", "rosa", "stefan", "tina", "urs",
    "vera", "walter", "xenia", "yves", "zoe",
];
const LAST: &[&str] = &[
    "meier",
    "mueller",
    "schmid",
    "keller",
    "weber",
    "huber",
    "schneider",
    "meyer",
    "steiner",
    "fischer",
    "gerber",
    "brunner",
    "baumann",
    "frei",
    "zimmermann",
    "moser",
    "widmer",
    "wyss",
    "graf",
    "roth",
    "smith",
    "jones",
    "kowalski",
    "rossi",
    "dubois",
    "novak",
    "nielsen",
    "garcia",
    "silva",
    "yilmaz",
];

fn users() -> Vec<UserIndexEntry> {
    // A fixed linear congruential sequence: the same 100,000 users on every run.
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        usize::try_from(seed >> 33).unwrap_or(0)
    };
    let mut users: Vec<UserIndexEntry> = (0..USERS)
        .map(|n| {
            let (first, last) = (FIRST[next() % FIRST.len()], LAST[next() % LAST.len()]);
            let username = format!("{}{last}{n}", &first[..1]);
            let capital = |s: &str| format!("{}{}", s[..1].to_uppercase(), &s[1..]);
            UserIndexEntry {
                upn: Some(format!("{username}@corp.example.com")),
                display_name: Some(format!("{} {}", capital(first), capital(last))),
                email: Some(format!("{first}.{last}{n}@example.com")),
                enabled: next() % 50 != 0,
                state: if next() % 3 == 0 {
                    TwoFactorState::NotEnrolled
                } else {
                    TwoFactorState::Enrolled
                },
                locked: next() % 500 == 0,
                username,
            }
        })
        .collect();
    users.sort_by(|a, b| a.username.cmp(&b.username));
    users
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let reply = serde_json::to_string(&AdminReply::UserIndex { users: users() })?;
    let started = Instant::now();
    let decoded: AdminReply = serde_json::from_str(&reply)?;
    let decode = started.elapsed();

    let identity = OperatorIdentity {
        uid: 0,
        name: Some("root".into()),
        role: Role::MasterAdmin,
        granted_by: "root".into(),
        directory_user: None,
    };
    let mut app = App::new(identity, "bench".into());
    app.outbox.clear();
    let started = Instant::now();
    app.on_reply(Purpose::Index, Ok(decoded));
    let index = started.elapsed();
    app.on_key(key(KeyCode::Tab));

    let viewport = Viewport::Fixed(Rect::new(0, 0, 80, 24));
    let mut terminal = Terminal::with_options(
        CrosstermBackend::new(std::io::sink()),
        TerminalOptions { viewport },
    )?;
    terminal.draw(|f| f.render_widget(&app, f.area()))?;

    // Opening the search box, typing a surname, deleting it, typing a name and a first name, leaving the
    // box and clearing the search: the keys an operator presses while a caller spells their name. The
    // first letter, each backspace and the clearing Esc scan all 100,000 users.
    let mut keys = vec![key(KeyCode::Char('/'))];
    keys.extend("smith".chars().map(|c| key(KeyCode::Char(c))));
    keys.extend(std::iter::repeat_n(key(KeyCode::Backspace), 5));
    keys.extend("keller anna".chars().map(|c| key(KeyCode::Char(c))));
    keys.push(key(KeyCode::Down));
    keys.push(key(KeyCode::Esc));
    keys.push(key(KeyCode::Esc));

    let mut all = Vec::new();
    let mut full_scans = Vec::new();
    let mut shown = Vec::new();
    for round in 0..ROUNDS {
        for (n, k) in keys.iter().enumerate() {
            let started = Instant::now();
            app.on_key(*k);
            terminal.draw(|f| f.render_widget(&app, f.area()))?;
            let took = started.elapsed();
            all.push(took);
            let clears = n + 1 == keys.len();
            if n == 1 || clears || k.code == KeyCode::Backspace {
                full_scans.push(took);
            }
            if round == 0 {
                shown.push(app.users.matches.len());
            }
        }
    }
    all.sort();
    full_scans.sort();
    println!(
        "users: {USERS}; keystrokes: {} ({} rounds of {})",
        all.len(),
        ROUNDS,
        keys.len()
    );
    println!("matches after each key of round 1: {shown:?}");
    if app.users.searching || !app.users.query.is_empty() {
        return Err("a round did not end with the search box closed and cleared".into());
    }
    println!(
        "decode the UserIndex reply ({} MB JSON): {}",
        reply.len() / 1_000_000,
        ms(decode)
    );
    println!("build the search index: {}", ms(index));
    println!(
        "keystroke -> filtered list drawn: median {}, p95 {}, max {}",
        ms(percentile(&all, 0.5)),
        ms(percentile(&all, 0.95)),
        ms(percentile(&all, 1.0))
    );
    println!(
        "  of which full scans (first key, backspace, clear): median {}, max {}",
        ms(percentile(&full_scans, 0.5)),
        ms(percentile(&full_scans, 1.0))
    );
    Ok(())
}
