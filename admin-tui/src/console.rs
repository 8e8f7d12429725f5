//! The console's loop: terminal keys, a tick and the daemon's replies arrive on one channel; each goes
//! to the state (`app`), whose requests go to the client thread; the screen is drawn after each batch.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use ratatui::crossterm::event::{self, Event as TermEvent, KeyEventKind};
use ratatui::DefaultTerminal;
use twofold_wire::admin::{AdminReply, AdminRequest, OperatorIdentity};

use crate::app::{App, Purpose};
use crate::client::{self, Client};

const TICK: Duration = Duration::from_millis(500);

enum Event {
    Key(event::KeyEvent),
    Redraw,
    Reply(Box<(Purpose, Result<AdminReply, String>)>),
}

/// A console connected to the daemon, before the terminal is taken over: everything that can go wrong
/// at the start (daemon down, no permission, no role) is reported as a plain line instead.
pub struct Session {
    socket: std::path::PathBuf,
    client: Client,
    identity: OperatorIdentity,
}

impl Session {
    pub fn connect(socket: &Path) -> Result<Session, String> {
        let mut client = Client::connect(socket)?;
        let identity = match client
            .call(&AdminRequest::WhoAmI)
            .map_err(|e| e.to_string())?
        {
            AdminReply::Identity(identity) => identity,
            _ => {
                return Err(
                    "twofoldd answered who-am-I with something else: is it the same version?"
                        .into(),
                )
            }
        };
        Ok(Session {
            socket: socket.to_owned(),
            client,
            identity,
        })
    }

    pub fn run(self, terminal: &mut DefaultTerminal) -> Result<(), String> {
        let (send, events) = mpsc::channel::<Event>();
        let replies = send.clone();
        let requests =
            client::spawn_worker(self.socket.clone(), self.client, move |purpose, reply| {
                replies
                    .send(Event::Reply(Box::new((purpose, reply))))
                    .is_ok()
            });
        std::thread::spawn(move || loop {
            let forwarded = match event::read() {
                Ok(TermEvent::Key(key)) if key.kind != KeyEventKind::Release => {
                    send.send(Event::Key(key))
                }
                Ok(TermEvent::Resize(..)) => send.send(Event::Redraw),
                Ok(_) => Ok(()),
                Err(_) => return,
            };
            if forwarded.is_err() {
                return;
            }
        });

        let mut app = App::new(self.identity, self.socket.display().to_string());
        loop {
            for (purpose, request) in app.outbox.drain(..) {
                requests
                    .send((purpose, request))
                    .map_err(|_| "the connection thread stopped".to_owned())?;
            }
            terminal
                .draw(|frame| frame.render_widget(&app, frame.area()))
                .map_err(|e| format!("terminal: {e}"))?;
            let first = match events.recv_timeout(TICK) {
                Ok(event) => Some(event),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err("the terminal closed".into())
                }
            };
            match first {
                None => app.on_tick(),
                Some(event) => {
                    // Whatever else has arrived is handled before the next draw.
                    for event in std::iter::once(event).chain(events.try_iter()) {
                        match event {
                            Event::Key(key) => app.on_key(key),
                            Event::Reply(reply) => {
                                let (purpose, reply) = *reply;
                                app.on_reply(purpose, reply);
                            }
                            Event::Redraw => {}
                        }
                    }
                }
            }
            if app.quit {
                return Ok(());
            }
        }
    }
}
