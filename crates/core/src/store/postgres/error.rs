//! Mapping driver errors to [`StoreError`], with the redaction rule: every
//! message names the database by its redacted URL (`url::redact`), never
//! by the URL itself, so no message carries the password.
//!
//! Server errors are told apart by SQLSTATE class (PostgreSQL manual,
//! Appendix A "PostgreSQL Error Codes"). The decision a reader would
//! question is the long list that maps to `Unavailable`: connection (08),
//! transaction state (25), authentication (28), a missing database (3D),
//! rollbacks and deadlocks (40), resources (53), locks (55), shutdown and
//! cancel (57), system and internal errors (58, XX), a missing privilege.
//! Each of those can go away without anyone changing mailtable's command
//! or data, so the message says "database unavailable"; constraint
//! violations (23) are a `Conflict` the admin must resolve. The daemons
//! answer a temporary failure for every `StoreError` whatever its kind.

use super::connect::GRACE;
use super::PostgresStore;
use crate::store::{limit_text, StoreError};
use std::time::Duration;
use tokio_postgres::error::{DbError, SqlState};

/// Why a call on a connection failed; mapped to [`StoreError`] once, by
/// `connect_error` or `call_error` below.
pub(super) enum Failure {
    Pg(tokio_postgres::Error),
    /// The client-side deadline passed while doing this.
    Timeout(&'static str),
    NotConnected,
}

impl Failure {
    /// The connection itself is gone (as opposed to a query the server
    /// refused): a fresh connection may well succeed.
    pub(super) fn connection_lost(&self) -> bool {
        match self {
            Failure::NotConnected => true,
            Failure::Timeout(_) => false,
            // The server ends a session with a FATAL error first: an admin
            // or a shutdown (57P01, 57P02), or `idle_session_timeout`
            // (57P05, PostgreSQL 14+) on a connection the daemon kept
            // between lookups.
            Failure::Pg(e) => {
                e.is_closed()
                    || matches!(
                        e.code(),
                        Some(c) if *c == SqlState::ADMIN_SHUTDOWN
                            || *c == SqlState::CRASH_SHUTDOWN
                            || *c == SqlState::IDLE_SESSION_TIMEOUT
                    )
                    || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
            }
        }
    }
}

impl Failure {
    /// The server gave up waiting: `statement_timeout` (57014 with
    /// "statement timeout", not an administrator's cancel) or
    /// `lock_timeout` (55P03). A lookup's statement is an index probe of
    /// milliseconds, so its timeout is a lock held past the bound (`LOCK
    /// TABLE`, `ALTER TABLE`, `VACUUM FULL`) far more often than a slow
    /// plan; either way, a shorter lock wait for the next ones costs
    /// nothing a slow plan would not cost anyway.
    pub(super) fn waited_out(&self) -> bool {
        let Failure::Pg(e) = self else {
            return false;
        };
        match e.as_db_error() {
            Some(db) if *db.code() == SqlState::QUERY_CANCELED => {
                db.message().contains("statement timeout")
            }
            Some(db) => *db.code() == SqlState::LOCK_NOT_AVAILABLE,
            None => false,
        }
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        Failure::Pg(e)
    }
}

/// An error with its causes: tokio-postgres' `Display` stops at the kind
/// ("error connecting to server") and keeps the reason ("Connection
/// refused", "database does not allow writes") in `source()`.
pub(super) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let c = cause.to_string();
        if !text.ends_with(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
        next = cause.source();
    }
    text
}

/// The rustls error behind a failed connect, if TLS is what failed
/// (tokio-postgres wraps it in an `io::Error`, whose `source()` skips it).
fn tls_error(e: &tokio_postgres::Error) -> Option<&rustls::Error> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(r) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(r);
        }
        next = err.source();
    }
    None
}

/// What the server said, with its SQLSTATE.
fn db_text(db: &DbError) -> String {
    format!("{} (SQLSTATE {})", db.message(), db.code().code())
}

/// Map a server error. Everything that can go away by itself (connection,
/// resources, shutdown, locks, authentication, a missing database, a
/// read-only server) is `Unavailable`: the daemons answer a temporary
/// failure and mail waits. `bound`: the statement timeout the call ran
/// under.
fn map_db(shown: &str, bound: Duration, db: &DbError) -> StoreError {
    let code = db.code();
    if *code == SqlState::QUERY_CANCELED {
        // 57014 is also an administrator's pg_cancel_backend ("canceling
        // statement due to user request"): not a timeout, and not said to
        // be one.
        if !db.message().contains("timeout") {
            return StoreError::Unavailable(format!(
                "query on {shown} cancelled by the server: {}",
                db_text(db)
            ));
        }
        return StoreError::Unavailable(format!(
            "query on {shown} took longer than {}",
            limit_text(bound)
        ));
    }
    let text = format!("{shown}: {}", db_text(db));
    match code.code().get(..2).unwrap_or("") {
        "23" => StoreError::Conflict(text),
        "08" | "25" | "28" | "3D" | "40" | "53" | "55" | "57" | "58" | "XX" => {
            StoreError::Unavailable(text)
        }
        _ if *code == SqlState::INSUFFICIENT_PRIVILEGE => StoreError::Unavailable(text),
        // As SQLite's "no such table" (sqlite.rs): a wrong database.
        _ if *code == SqlState::UNDEFINED_TABLE && db.message().contains("\"users\"") => {
            StoreError::Schema(format!(
                "{text}: it has no users table; create it with `mailtable init`, or, \
                 where another schema holds it, grant the role USAGE on that schema \
                 (its search_path skips a schema without USAGE, silently)"
            ))
        }
        _ => StoreError::Other(text),
    }
}

/// Whether `e` is the client's failure to read a row it was sent, as
/// tokio-postgres words it (`Error::from_sql`: "error deserializing column
/// N", `Error::column`: "invalid column", `Error::column_count`;
/// `src/error/mod.rs`).
fn is_row_error(e: &tokio_postgres::Error) -> bool {
    let text = e.to_string();
    [
        "error deserializing column",
        "invalid column",
        "query returned an unexpected number",
    ]
    .iter()
    .any(|p| text.starts_with(p))
}

/// The text of an error without its kind's prefix (the back-off repeats it
/// inside a new `Unavailable`).
pub(super) fn message(e: &StoreError) -> &str {
    match e {
        StoreError::Unavailable(m)
        | StoreError::NotADatabase(m)
        | StoreError::Schema(m)
        | StoreError::Conflict(m)
        | StoreError::Config(m)
        | StoreError::Other(m) => m,
    }
}

/// A transaction whose connection died: nothing was committed, and a
/// `COMMIT` on a new connection must not say otherwise.
pub(super) fn tx_lost() -> StoreError {
    StoreError::Unavailable(
        "the database connection was lost inside the transaction; nothing was committed".into(),
    )
}

impl PostgresStore {
    /// Why connecting failed: what the server said if it answered, else
    /// why there was no answer.
    pub(super) fn connect_error(&self, f: Failure) -> StoreError {
        if let Failure::Pg(e) = &f {
            if let Some(db) = e.as_db_error() {
                // The server answered: say what it said.
                return map_db(&self.shown, self.timeout, db);
            }
            if let Some(tls) = tls_error(e) {
                // Not the network: the server is there, and talking to it
                // is refused. Still `Unavailable` (the admin may fix the
                // certificate without touching mailtable), but named.
                return StoreError::Unavailable(format!(
                    "TLS connection to {} refused: {}",
                    self.shown,
                    super::tls::explain(tls)
                ));
            }
        }
        let detail = match f {
            Failure::Pg(e) => chain(&e),
            Failure::Timeout(what) => format!(
                "no answer within {} ms ({what})",
                (self.timeout + GRACE).as_millis()
            ),
            Failure::NotConnected => "not connected".into(),
        };
        if self.writer() {
            StoreError::Unavailable(format!(
                "no writable primary reachable at {}: {detail}",
                self.shown
            ))
        } else {
            StoreError::Unavailable(format!("cannot connect to {}: {detail}", self.shown))
        }
    }

    /// What a failed call on an open connection means for the caller.
    /// `bound`: the statement timeout the call ran under.
    pub(super) fn call_error(&self, f: &Failure, bound: Duration) -> StoreError {
        match f {
            Failure::Pg(e) => match e.as_db_error() {
                Some(db) => map_db(&self.shown, bound, db),
                None if e.is_closed() => {
                    StoreError::Unavailable(format!("connection to {} lost", self.shown))
                }
                // The server answered with rows the client cannot read as
                // the table's (a NULL, a value of another type, a column
                // gone: tokio-postgres' `Row::try_get`): the data, not an
                // outage.
                None if is_row_error(e) => {
                    StoreError::Other(format!("{}: {}", self.shown, chain(e)))
                }
                None => StoreError::Unavailable(format!("{}: {}", self.shown, chain(e))),
            },
            Failure::Timeout(what) => StoreError::Unavailable(format!(
                "{}: no answer within {} ms ({what})",
                self.shown,
                (bound + GRACE).as_millis()
            )),
            Failure::NotConnected => {
                StoreError::Unavailable(format!("not connected to {}", self.shown))
            }
        }
    }
}
