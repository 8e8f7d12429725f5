//! The daemon's one error type. The HTTP layer and the admin socket map it to `{"error": {code, message}}`.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller sent something malformed or not allowed: always a 4xx, never a change to stored data.
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{what} not found")]
    NotFound { what: &'static str },
    /// A user looked up by the name the caller gave: the message names it, so that a script's log says
    /// which of its users is missing.
    #[error("user {0:?} not found")]
    UserNotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("missing or unknown API key")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    /// Refused for a reason the caller can act on, named by `code` (`second_factor_required`,
    /// `two_factor_required`, ...): a 403 with that code.
    #[error("{message}")]
    Refused { code: &'static str, message: String },
    /// Too many failed codes lately: the code was not checked. `locked`: locked, not only delayed;
    /// `retry_after`: seconds until a code is checked again (none: until an admin unlocks).
    #[error("{}", throttled_message(*locked, *retry_after))]
    Throttled {
        locked: bool,
        retry_after: Option<u64>,
    },
    #[error("configuration: {0}")]
    Config(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A commit failed (a full disk, an I/O error): nothing more is written until the daemon restarts.
    #[error("store: commit failed, no further writes until a restart: {0}")]
    StoreFailed(String),
    #[error("crypto: {0}")]
    Crypto(String),
    #[error("tls: {0}")]
    Tls(String),
    /// Something that cannot happen did (a request without its connection's address): a bug, not the
    /// caller's fault.
    #[error("internal: {0}")]
    Internal(&'static str),
}

/// What went wrong in the store, with the underlying error kept as the source.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Sled(#[from] sled::Error),
    #[error("record encoding: {0}")]
    Encoding(#[from] serde_json::Error),
    #[error("{}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    /// A stored record or file is not what this daemon wrote (a damaged file, a newer layout).
    #[error("{0}")]
    Corrupt(String),
    /// A transaction failed in sled, named by what it did.
    #[error("{what}: {detail}")]
    Transaction { what: &'static str, detail: String },
    #[error("the commit thread has stopped")]
    CommitThreadStopped,
    #[error("commit thread: {0}")]
    CommitThreadStart(#[source] std::io::Error),
    #[error("{0}")]
    Advice(#[from] nix::errno::Errno),
}

impl StoreError {
    pub fn corrupt(message: impl Into<String>) -> Error {
        Error::Store(StoreError::Corrupt(message.into()))
    }
}

impl Error {
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidRequest(message.into())
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Stable machine-readable code for error answers.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidRequest(_) => "invalid_request",
            Error::NotFound { .. } | Error::UserNotFound(_) => "not_found",
            Error::Conflict(_) => "conflict",
            Error::Unauthorized => "unauthorized",
            Error::Forbidden(_) => "forbidden",
            Error::Refused { code, .. } => code,
            Error::Throttled { locked: true, .. } => "locked",
            Error::Throttled { locked: false, .. } => "rate_limited",
            Error::Config(_) => "config",
            Error::StoreFailed(_) => "unavailable",
            Error::Io { .. }
            | Error::Store(_)
            | Error::Crypto(_)
            | Error::Tls(_)
            | Error::Internal(_) => "internal",
        }
    }

    /// True when the caller did something wrong (4xx), false for the daemon's own faults (5xx).
    pub fn is_caller_error(&self) -> bool {
        !matches!(self.code(), "internal" | "config" | "unavailable")
    }
}

fn throttled_message(locked: bool, retry_after: Option<u64>) -> String {
    match (locked, retry_after) {
        (true, Some(s)) => format!("locked after too many failed codes: the lock lifts in {s} s"),
        (true, None) => "locked after too many failed codes: an admin must unlock".to_owned(),
        (false, s) => format!(
            "too many recent failed codes: try again in {} s",
            s.unwrap_or(1)
        ),
    }
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        Error::Store(StoreError::Sled(e))
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Store(StoreError::Encoding(e))
    }
}
