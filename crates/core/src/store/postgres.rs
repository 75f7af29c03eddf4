//! The PostgreSQL backend: tokio-postgres driven from one current-thread
//! runtime per store, i.e. a blocking client with a deadline on every call.
//!
//! Why not the blocking `postgres` crate: it is the same thin shim over
//! tokio-postgres (a current-thread runtime and `block_on`), but it has no
//! per-call timeout, and its connect timeout covers only the TCP connect. A
//! server that accepted the connection and then stopped answering (a stopped
//! process, a stuck disk, a black-holed network) would hang smtpd's table
//! with it. DESIGN.md "Failure semantics" asks that every database call be
//! bounded, so here every call runs under `tokio::time::timeout`; the
//! server-side `statement_timeout` fires first in the ordinary case and gives
//! the cleaner error.
//!
//! Connections:
//! - a URL may name several hosts (libpq syntax
//!   `postgresql://h1:5432,h2:5433/db`, parsed by tokio-postgres' `Config`),
//!   tried in order. Read-only access (the daemons) takes the first reachable
//!   host, replicas included (`target_session_attrs` as the URL says, default
//!   `any`); read-write access (the CLI) forces
//!   `target_session_attrs=read-write` and reports "no writable primary
//!   reachable at URL" when no host accepts writes;
//! - every connection starts with `statement_timeout` set to the configured
//!   timeout (a startup option, so it bounds the very first statement too),
//!   readers also with `default_transaction_read_only=on`, and
//!   `application_name` set to the binary's name unless the URL sets one, so
//!   `pg_stat_activity` shows who is connected;
//! - a URL without a host uses the Unix socket in `/var/run/postgresql`,
//!   where libpq looks on Debian;
//! - statements are prepared once per connection and reused.
//!
//! Failures:
//! - any error drops the connection; the next call reconnects lazily;
//! - a read that fails because a connection opened earlier turned out dead
//!   (`pg_terminate_backend`, a server restart, an idle timeout) is retried
//!   once on a fresh connection: idle connections die routinely, and that
//!   must not turn a delivery into a temporary failure. Writes are never
//!   retried (the first attempt may have committed), `begin` is;
//! - reconnect attempts back off (200 ms doubling to 5 s after consecutive
//!   failed attempts, or after a call that got no answer at all), per URL
//!   and process-wide, so a caller that throws a failing store away and
//!   opens a new one (`table-mailtable` does) cannot bypass it. Inside the
//!   window a call answers `Unavailable` at once;
//! - a transaction whose connection was lost stays failed until
//!   `rollback`: reconnecting and running `COMMIT` on a new connection would
//!   report success for a change that was never made;
//! - no message ever carries the URL's password (`url::redact`).
//!
//! Row order: PostgreSQL has no rowid. `ORDER BY ctid` gives insertion order
//! for rows that were never updated (alias rows, hence fan-out order); lists
//! sort with `COLLATE "C"`, byte order like SQLite's `BINARY`, so both
//! backends list rows in the same order whatever the database's locale.

use super::url::redact;
use super::{Access, Delete, OpenOptions, Row, SchemaState, Store, StoreError};
use crate::password::PasswordHash;
use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use tokio_postgres::config::TargetSessionAttrs;
use tokio_postgres::error::{DbError, SqlState};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Statement};

/// Added to the configured timeout for the client-side deadline, so that the
/// server's own `statement_timeout` (a clean error) normally fires first.
const GRACE: Duration = Duration::from_millis(250);
/// How long closing a connection may wait for the goodbye to be sent.
const CLOSE_WAIT: Duration = Duration::from_millis(100);
/// libpq's socket directory on Debian, for URLs that name no host.
const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";
/// Advisory lock key of mailtable's writers ("mailtabl"): one writer at a
/// time, as SQLite's `BEGIN IMMEDIATE` gives, so the checks a command makes
/// before writing still hold when it writes.
const WRITE_LOCK: i64 = 0x6d61_696c_7461_626c;

/// Optional columns present in this database.
#[derive(Debug, Clone, Copy, Default)]
struct Columns {
    active: bool,
    quota: bool,
}

/// A live connection and what belongs to it.
struct Open {
    client: Client,
    /// Drives the socket; runs whenever the runtime runs (during calls).
    driver: JoinHandle<()>,
    columns: Columns,
    /// Prepared statements of this connection, by query key.
    statements: HashMap<&'static str, Statement>,
}

/// Transaction state (`begin` .. `commit`/`rollback`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tx {
    None,
    Open,
    /// The connection died inside the transaction: nothing was committed.
    Lost,
}

/// Why a call on a connection failed (mapped to [`StoreError`] once, in
/// [`PostgresStore::fail`]).
enum Failure {
    Pg(tokio_postgres::Error),
    /// The client-side deadline passed while doing this.
    Timeout(&'static str),
    NotConnected,
}

impl Failure {
    /// The connection itself is gone (as opposed to a query the server
    /// refused): a fresh connection may well succeed.
    fn connection_lost(&self) -> bool {
        match self {
            Failure::NotConnected => true,
            Failure::Timeout(_) => false,
            Failure::Pg(e) => {
                e.is_closed()
                    || matches!(
                        e.code(),
                        Some(c) if *c == SqlState::ADMIN_SHUTDOWN || *c == SqlState::CRASH_SHUTDOWN
                    )
                    || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
            }
        }
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        Failure::Pg(e)
    }
}

/// Run `fut` on `rt`, bounded by `limit`.
fn block<T>(
    rt: &Runtime,
    limit: Duration,
    what: &'static str,
    fut: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, Failure> {
    match rt.block_on(async { tokio::time::timeout(limit, fut).await }) {
        Ok(r) => r.map_err(Failure::Pg),
        Err(_) => Err(Failure::Timeout(what)),
    }
}

/// One call's view of the connection.
struct Conn<'a> {
    rt: &'a Runtime,
    open: &'a mut Open,
    limit: Duration,
}

impl Conn<'_> {
    /// The prepared statement for `key`, preparing `sql(columns)` the first
    /// time on this connection.
    fn statement(
        &mut self,
        key: &'static str,
        sql: impl FnOnce(Columns) -> String,
    ) -> Result<Statement, Failure> {
        if let Some(s) = self.open.statements.get(key) {
            return Ok(s.clone());
        }
        let text = sql(self.open.columns);
        let s = block(
            self.rt,
            self.limit,
            "preparing a statement",
            self.open.client.prepare(&text),
        )?;
        self.open.statements.insert(key, s.clone());
        Ok(s)
    }

    fn query(
        &mut self,
        key: &'static str,
        sql: impl FnOnce(Columns) -> String,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, Failure> {
        let s = self.statement(key, sql)?;
        block(
            self.rt,
            self.limit,
            "running a query",
            self.open.client.query(&s, params),
        )
    }

    /// A fixed statement: the SQL is its own key.
    fn query_static(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, Failure> {
        self.query(sql, |_| sql.to_string(), params)
    }

    fn execute_static(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, Failure> {
        let s = self.statement(sql, |_| sql.to_string())?;
        block(
            self.rt,
            self.limit,
            "running a statement",
            self.open.client.execute(&s, params),
        )
    }

    /// A statement that is not kept (migrations: the tables it names may
    /// not exist after a rollback).
    fn execute_once(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, Failure> {
        block(
            self.rt,
            self.limit,
            "running a statement",
            self.open.client.execute(sql, params),
        )
    }

    fn batch(&mut self, sql: &str) -> Result<(), Failure> {
        block(
            self.rt,
            self.limit,
            "running a statement",
            self.open.client.batch_execute(sql),
        )
    }
}

/// A PostgreSQL-backed [`Store`].
pub struct PostgresStore {
    config: Config,
    /// The URL with its password replaced, for every message.
    shown: String,
    access: Access,
    timeout: Duration,
    /// Hosts in the URL: the connect deadline covers trying each in turn.
    hosts: u32,
    rt: Runtime,
    open: Option<Open>,
    tx: Tx,
}

const COLS_FULL: &str = "username, domain, mailbox, password, active::integer, quota";
const COLS_BASE: &str = "username, domain, mailbox, password, 1::integer, NULL::text";

// Query tails, each with its index (schema/postgres/0001_users.sql): the
// wildcard conditions repeat the expression indexes exactly.
const EXACT: &str = "WHERE domain = $1 AND username = $2 ORDER BY ctid";
const WILDCARDS: &str = "WHERE domain = $1 AND strpos(username, '%') > 0 ORDER BY ctid";
const TARGETING: &str = "WHERE mailbox = $1 ORDER BY ctid";
const WILDCARD_TARGETS: &str = "WHERE strpos(mailbox, '%') > 0 ORDER BY ctid";
const HAS_DOMAIN: &str = "SELECT 1 FROM users WHERE domain = $1 LIMIT 1";
const LIST_DOMAIN: &str =
    "WHERE domain = $1 ORDER BY domain COLLATE \"C\", username COLLATE \"C\", ctid";
const LIST_ALL: &str = "ORDER BY domain COLLATE \"C\", username COLLATE \"C\", ctid";
const DOMAINS: &str = "SELECT domain FROM users GROUP BY domain ORDER BY domain COLLATE \"C\"";

const COLUMNS_SQL: &str = "SELECT column_name::text FROM information_schema.columns \
     WHERE table_schema = current_schema() AND table_name = 'users'";
const TABLES_SQL: &str = "SELECT table_name::text FROM information_schema.tables \
     WHERE table_schema = current_schema() AND table_name IN ('users', 'mailtable_schema')";
const LOCK_SQL: &str = "SELECT pg_advisory_xact_lock($1)";

fn select(cols: Columns, tail: &str) -> String {
    let c = if cols.active && cols.quota {
        COLS_FULL
    } else {
        COLS_BASE
    };
    format!("SELECT {c} FROM users {tail}")
}

fn row_from(r: &tokio_postgres::Row) -> Result<Row, tokio_postgres::Error> {
    Ok(Row {
        username: r.try_get(0)?,
        domain: r.try_get(1)?,
        mailbox: r.try_get(2)?,
        password: r.try_get::<_, Option<String>>(3)?.map(PasswordHash::new),
        active: r.try_get::<_, Option<i32>>(4)?.unwrap_or(1) != 0,
        quota: r.try_get(5)?,
    })
}

/// The binary's name, for `application_name`.
fn program_name() -> String {
    std::env::args_os()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "mailtable".to_string())
}

/// An error with its causes: tokio-postgres' `Display` stops at the kind
/// ("error connecting to server") and keeps the reason ("Connection
/// refused", "database does not allow writes") in `source()`.
fn chain(e: &dyn std::error::Error) -> String {
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

/// What the server said, with its SQLSTATE.
fn db_text(db: &DbError) -> String {
    format!("{} (SQLSTATE {})", db.message(), db.code().code())
}

/// Map a server error. Everything that can go away by itself (connection,
/// resources, shutdown, locks, authentication, a missing database, a
/// read-only server) is `Unavailable`: the daemons answer a temporary
/// failure and mail waits.
fn map_db(shown: &str, timeout: Duration, db: &DbError) -> StoreError {
    let code = db.code();
    if *code == SqlState::QUERY_CANCELED {
        return StoreError::Unavailable(format!(
            "query on {shown} took longer than the configured timeout ({} ms)",
            timeout.as_millis()
        ));
    }
    let text = format!("{shown}: {}", db_text(db));
    match code.code().get(..2).unwrap_or("") {
        "23" => StoreError::Conflict(text),
        "08" | "25" | "28" | "3D" | "40" | "53" | "55" | "57" | "58" | "XX" => {
            StoreError::Unavailable(text)
        }
        _ if *code == SqlState::INSUFFICIENT_PRIVILEGE => StoreError::Unavailable(text),
        _ => StoreError::Other(text),
    }
}

/// The text of an error without its kind's prefix (the back-off repeats it
/// inside a new `Unavailable`).
fn message(e: &StoreError) -> &str {
    match e {
        StoreError::Unavailable(m)
        | StoreError::NotADatabase(m)
        | StoreError::Schema(m)
        | StoreError::Conflict(m)
        | StoreError::Config(m)
        | StoreError::Other(m) => m,
    }
}

fn tx_lost() -> StoreError {
    StoreError::Unavailable(
        "the database connection was lost inside the transaction; nothing was committed".into(),
    )
}

impl PostgresStore {
    /// Connect to the database named by `url` (lazily re-connected after
    /// errors).
    pub fn open(url: &str, options: &OpenOptions) -> Result<PostgresStore, StoreError> {
        let shown = redact(url);
        let config = Self::config(url, &shown, options)?;
        let hosts = config
            .get_hosts()
            .len()
            .max(config.get_hostaddrs().len())
            .max(1);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot start the PostgreSQL client: {e}"))
            })?;
        let mut store = PostgresStore {
            config,
            shown,
            access: options.access,
            timeout: options.timeout,
            hosts: u32::try_from(hosts).unwrap_or(u32::MAX),
            rt,
            open: None,
            tx: Tx::None,
        };
        store.connect()?;
        Ok(store)
    }

    /// The connection settings: the URL's, plus what mailtable needs.
    fn config(url: &str, shown: &str, options: &OpenOptions) -> Result<Config, StoreError> {
        let mut config: Config = url
            .parse()
            .map_err(|e| StoreError::Config(format!("invalid PostgreSQL URL {shown}: {e}")))?;
        if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
            config.host_path(DEFAULT_SOCKET_DIR);
        }
        let mut startup = config.get_options().unwrap_or_default().to_string();
        // Later `-c` settings win, so ours override any the URL carries.
        startup.push_str(&format!(
            " -c statement_timeout={}",
            options.timeout.as_millis().max(1)
        ));
        if options.access == Access::ReadOnly {
            startup.push_str(" -c default_transaction_read_only=on");
        } else {
            // Writes go to the primary only (libpq's target_session_attrs).
            config.target_session_attrs(TargetSessionAttrs::ReadWrite);
        }
        config.options(startup.trim_start());
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name(program_name());
        }
        Ok(config)
    }

    fn writer(&self) -> bool {
        self.access != Access::ReadOnly
    }

    fn backoff_key(&self) -> String {
        format!("{}#{}", self.shown, if self.writer() { "rw" } else { "ro" })
    }

    /// Close the connection, if any, sending the server a goodbye.
    fn close(&mut self) {
        if let Some(open) = self.open.take() {
            let Open {
                client, mut driver, ..
            } = open;
            // Without a client the driver sends Terminate and finishes.
            drop(client);
            let done = self
                .rt
                .block_on(async { tokio::time::timeout(CLOSE_WAIT, &mut driver).await })
                .is_ok();
            if !done {
                driver.abort();
                let _ = self.rt.block_on(driver);
            }
        }
    }

    /// Connect now, unless a recent attempt failed (back-off).
    fn connect(&mut self) -> Result<(), StoreError> {
        self.close();
        let key = self.backoff_key();
        backoff::claim(&key, Instant::now()).map_err(StoreError::Unavailable)?;
        match self.try_connect() {
            Ok(open) => {
                if backoff::succeeded(&key) {
                    tracing::info!(database = %self.shown, "database reachable again");
                }
                self.open = Some(open);
                Ok(())
            }
            Err(f) => {
                let err = self.connect_error(f);
                // The caller reports the error (the daemons log each failed
                // lookup, the CLI prints it); here only for debugging.
                tracing::debug!(database = %self.shown, "{err}");
                backoff::failed(&key, Instant::now(), message(&err));
                Err(err)
            }
        }
    }

    fn try_connect(&self) -> Result<Open, Failure> {
        let limit = self.timeout * self.hosts + GRACE;
        let (client, connection) =
            block(&self.rt, limit, "connecting", self.config.connect(NoTls))?;
        let driver = self.rt.spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("PostgreSQL connection ended: {e}");
            }
        });
        let mut open = Open {
            client,
            driver,
            columns: Columns::default(),
            statements: HashMap::new(),
        };
        let mut conn = Conn {
            rt: &self.rt,
            open: &mut open,
            limit: self.timeout + GRACE,
        };
        // A failure here drops `open`; its driver ends with the runtime's
        // next run, closing the socket.
        for r in conn.query_static(COLUMNS_SQL, &[])? {
            match r.try_get::<_, String>(0)?.as_str() {
                "active" => open.columns.active = true,
                "quota" => open.columns.quota = true,
                _ => {}
            }
        }
        Ok(open)
    }

    fn connect_error(&self, f: Failure) -> StoreError {
        if let Failure::Pg(e) = &f {
            if let Some(db) = e.as_db_error() {
                // The server answered: say what it said.
                return map_db(&self.shown, self.timeout, db);
            }
        }
        let detail = match f {
            Failure::Pg(e) => chain(&e),
            Failure::Timeout(what) => format!(
                "no answer within {} ms ({what})",
                (self.timeout * self.hosts + GRACE).as_millis()
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

    /// Make sure there is a connection. `Ok(true)`: one from before was
    /// reused; `Ok(false)`: a new one was made.
    fn ensure(&mut self) -> Result<bool, StoreError> {
        if self.tx == Tx::Lost {
            return Err(tx_lost());
        }
        if let Some(open) = &self.open {
            if !open.client.is_closed() {
                return Ok(true);
            }
            self.close();
        }
        if self.tx == Tx::Open {
            self.tx = Tx::Lost;
            return Err(tx_lost());
        }
        self.connect()?;
        Ok(false)
    }

    /// Map a failure, drop the connection, and remember a lost transaction.
    fn fail(&mut self, f: Failure) -> StoreError {
        let err = match &f {
            Failure::Pg(e) => match e.as_db_error() {
                Some(db) => map_db(&self.shown, self.timeout, db),
                None if e.is_closed() => {
                    StoreError::Unavailable(format!("connection to {} lost", self.shown))
                }
                None => StoreError::Unavailable(format!("{}: {}", self.shown, chain(e))),
            },
            Failure::Timeout(what) => StoreError::Unavailable(format!(
                "{}: no answer within {} ms ({what})",
                self.shown,
                (self.timeout + GRACE).as_millis()
            )),
            Failure::NotConnected => {
                StoreError::Unavailable(format!("not connected to {}", self.shown))
            }
        };
        if matches!(f, Failure::Timeout(_)) {
            // No answer at all: a hung server or network, not a slow query
            // (that is the server's statement_timeout, a clean error). Back
            // off, so the caller's immediate reconnect (table-mailtable
            // reopens after every error) cannot make smtpd wait a second
            // full timeout.
            backoff::failed(&self.backoff_key(), Instant::now(), message(&err));
        }
        self.close();
        if self.tx == Tx::Open {
            self.tx = Tx::Lost;
        }
        err
    }

    fn run<T>(
        &mut self,
        f: &mut impl FnMut(&mut Conn<'_>) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        let Some(open) = self.open.as_mut() else {
            return Err(Failure::NotConnected);
        };
        let mut conn = Conn {
            rt: &self.rt,
            open,
            limit: self.timeout + GRACE,
        };
        f(&mut conn)
    }

    /// Run a read; retried once on a fresh connection when a connection
    /// made earlier turns out to be dead (outside transactions only).
    fn read<T>(
        &mut self,
        mut f: impl FnMut(&mut Conn<'_>) -> Result<T, Failure>,
    ) -> Result<T, StoreError> {
        let reused = self.ensure()?;
        match self.run(&mut f) {
            Ok(v) => Ok(v),
            Err(failure) => {
                let retry = reused && self.tx == Tx::None && failure.connection_lost();
                let err = self.fail(failure);
                if !retry {
                    return Err(err);
                }
                tracing::info!(database = %self.shown, "{err}; reconnecting");
                self.ensure()?;
                self.run(&mut f).map_err(|e| self.fail(e))
            }
        }
    }

    /// Run a write: never retried (the first attempt may have committed).
    fn write<T>(
        &mut self,
        mut f: impl FnMut(&mut Conn<'_>) -> Result<T, Failure>,
    ) -> Result<T, StoreError> {
        self.ensure()?;
        self.run(&mut f).map_err(|e| self.fail(e))
    }

    fn rows(
        &mut self,
        tail: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        self.read(|c| {
            let rows = c.query(tail, |cols| select(cols, tail), params)?;
            rows.iter()
                .map(row_from)
                .collect::<Result<_, _>>()
                .map_err(Failure::Pg)
        })
    }

    fn columns(&mut self) -> Result<Columns, StoreError> {
        self.ensure()?;
        Ok(self.open.as_ref().map(|o| o.columns).unwrap_or_default())
    }

    /// The plan PostgreSQL chooses for each lookup (`EXPLAIN`), by method
    /// name: for the test that no lookup scans the table.
    pub fn lookup_plans(&mut self) -> Result<Vec<(&'static str, String)>, StoreError> {
        self.read(|c| {
            let probes: [(&'static str, String, Vec<&(dyn ToSql + Sync)>); 5] = [
                (
                    "exact",
                    select(c.open.columns, EXACT),
                    vec![&"example.org", &"hugo"],
                ),
                (
                    "wildcards",
                    select(c.open.columns, WILDCARDS),
                    vec![&"example.org"],
                ),
                ("has_domain", HAS_DOMAIN.to_string(), vec![&"example.org"]),
                (
                    "targeting",
                    select(c.open.columns, TARGETING),
                    vec![&"hugo@example.org"],
                ),
                (
                    "wildcard_targets",
                    select(c.open.columns, WILDCARD_TARGETS),
                    vec![],
                ),
            ];
            let mut out = Vec::new();
            for (name, sql, params) in probes {
                let rows = block(
                    c.rt,
                    c.limit,
                    "explaining a query",
                    c.open.client.query(&format!("EXPLAIN {sql}"), &params),
                )?;
                let lines = rows
                    .iter()
                    .map(|r| r.try_get::<_, String>(0))
                    .collect::<Result<Vec<_>, _>>()?;
                out.push((name, lines.join(" / ")));
            }
            Ok(out)
        })
    }
}

/// The version recorded in `mailtable_schema`, `None` without that table;
/// and whether `users` exists.
fn schema_version(c: &mut Conn<'_>) -> Result<(Option<i32>, bool), Failure> {
    let mut users = false;
    let mut versioned = false;
    for r in c.query_static(TABLES_SQL, &[])? {
        match r.try_get::<_, String>(0)?.as_str() {
            "users" => users = true,
            "mailtable_schema" => versioned = true,
            _ => {}
        }
    }
    if !versioned {
        return Ok((None, users));
    }
    let rows = c.query_static("SELECT max(version) FROM mailtable_schema", &[])?;
    let v = match rows.first() {
        Some(r) => r.try_get::<_, Option<i32>>(0)?,
        None => None,
    };
    Ok((Some(v.unwrap_or(0).max(0)), users))
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.close();
    }
}

impl Store for PostgresStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn exact(&mut self, username: &str, domain: &str) -> Result<Vec<Row>, StoreError> {
        self.rows(EXACT, &[&domain, &username])
    }

    fn wildcards(&mut self, domain: &str) -> Result<Vec<Row>, StoreError> {
        self.rows(WILDCARDS, &[&domain])
    }

    fn has_domain(&mut self, domain: &str) -> Result<bool, StoreError> {
        self.read(|c| Ok(!c.query_static(HAS_DOMAIN, &[&domain])?.is_empty()))
    }

    fn targeting(&mut self, mailbox: &str) -> Result<Vec<Row>, StoreError> {
        self.rows(TARGETING, &[&mailbox])
    }

    fn wildcard_targets(&mut self) -> Result<Vec<Row>, StoreError> {
        self.rows(WILDCARD_TARGETS, &[])
    }

    fn reopen(&mut self) -> Result<(), StoreError> {
        self.tx = Tx::None;
        self.connect()
    }

    fn list(&mut self, domain: Option<&str>) -> Result<Vec<Row>, StoreError> {
        match domain {
            Some(d) => self.rows(LIST_DOMAIN, &[&d]),
            None => self.rows(LIST_ALL, &[]),
        }
    }

    fn domains(&mut self) -> Result<Vec<String>, StoreError> {
        self.read(|c| {
            c.query_static(DOMAINS, &[])?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()
                .map_err(Failure::Pg)
        })
    }

    fn begin(&mut self) -> Result<(), StoreError> {
        if self.tx != Tx::None {
            return Err(StoreError::Other("a transaction is already open".into()));
        }
        // A read as far as retrying goes: a failed BEGIN leaves nothing
        // behind, so a stale connection may be replaced.
        self.read(|c| {
            c.batch("BEGIN")?;
            // Bounded by statement_timeout, like SQLite's busy_timeout.
            c.execute_static(LOCK_SQL, &[&WRITE_LOCK])?;
            Ok(())
        })?;
        self.tx = Tx::Open;
        Ok(())
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        match self.tx {
            Tx::Open => {}
            Tx::Lost => {
                self.tx = Tx::None;
                return Err(tx_lost());
            }
            Tx::None => return Err(StoreError::Other("no transaction to commit".into())),
        }
        let result = self.write(|c| c.batch("COMMIT"));
        self.tx = Tx::None;
        result
    }

    fn rollback(&mut self) {
        if self.tx == Tx::Open && self.open.is_some() {
            let _ = self.write(|c| c.batch("ROLLBACK"));
        }
        self.tx = Tx::None;
    }

    fn insert(&mut self, row: &Row) -> Result<(), StoreError> {
        let cols = self.columns()?;
        let full = cols.active && cols.quota;
        if !full && (!row.active || row.quota.is_some()) {
            return Err(StoreError::Schema(
                "this database has no active/quota columns; run `mailtable migrate` first".into(),
            ));
        }
        let password = row.password.as_ref().map(|p| p.stored());
        let active = i32::from(row.active);
        self.write(|c| {
            if full {
                c.execute_static(
                    "INSERT INTO users (username, domain, mailbox, password, active, quota) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    &[
                        &row.username,
                        &row.domain,
                        &row.mailbox,
                        &password,
                        &active,
                        &row.quota,
                    ],
                )?;
            } else {
                c.execute_static(
                    "INSERT INTO users (username, domain, mailbox, password) VALUES ($1, $2, $3, $4)",
                    &[&row.username, &row.domain, &row.mailbox, &password],
                )?;
            }
            Ok(())
        })
    }

    fn delete(
        &mut self,
        username: &str,
        domain: &str,
        what: Delete<'_>,
    ) -> Result<usize, StoreError> {
        let n = self.write(|c| match what {
            Delete::Mailbox => c.execute_static(
                "DELETE FROM users WHERE domain = $1 AND username = $2 AND password IS NOT NULL",
                &[&domain, &username],
            ),
            Delete::Alias(None) => c.execute_static(
                "DELETE FROM users WHERE domain = $1 AND username = $2 AND password IS NULL",
                &[&domain, &username],
            ),
            Delete::Alias(Some(targets)) => {
                let mut n = 0;
                for t in targets {
                    n += c.execute_static(
                        "DELETE FROM users WHERE domain = $1 AND username = $2 \
                         AND password IS NULL AND mailbox = $3",
                        &[&domain, &username, t],
                    )?;
                }
                Ok(n)
            }
        })?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn set_password(
        &mut self,
        username: &str,
        domain: &str,
        hash: &PasswordHash,
    ) -> Result<usize, StoreError> {
        let n = self.write(|c| {
            c.execute_static(
                "UPDATE users SET password = $3 \
                 WHERE domain = $1 AND username = $2 AND password IS NOT NULL",
                &[&domain, &username, &hash.stored()],
            )
        })?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn set_active(
        &mut self,
        username: &str,
        domain: &str,
        active: bool,
    ) -> Result<usize, StoreError> {
        if !self.columns()?.active {
            return Err(StoreError::Schema(
                "this database has no `active` column; run `mailtable migrate` first".into(),
            ));
        }
        let active = i32::from(active);
        let n = self.write(|c| {
            c.execute_static(
                "UPDATE users SET active = $3 \
                 WHERE domain = $1 AND username = $2 AND password IS NOT NULL",
                &[&domain, &username, &active],
            )
        })?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn schema_state(&mut self) -> Result<SchemaState, StoreError> {
        let (version, users) = self.read(schema_version)?;
        Ok(match (version, users) {
            (Some(v), _) => SchemaState::Version(u32::try_from(v).unwrap_or(0)),
            (None, true) => SchemaState::Unversioned,
            (None, false) => SchemaState::Empty,
        })
    }

    fn apply_migration(&mut self, version: u32, sql: &str) -> Result<(), StoreError> {
        let v = i32::try_from(version)
            .map_err(|_| StoreError::Schema(format!("schema version {version} is out of range")))?;
        let result = self.write(|c| {
            // PostgreSQL DDL is transactional: the step and its version
            // record land together or not at all.
            c.batch("BEGIN")?;
            let step = (|| {
                c.execute_static(LOCK_SQL, &[&WRITE_LOCK])?;
                // Another `mailtable migrate` may have applied it while we
                // waited for the lock.
                if schema_version(c)?.0.is_some_and(|have| have >= v) {
                    return c.batch("COMMIT");
                }
                c.batch(sql)?;
                c.batch("CREATE TABLE IF NOT EXISTS mailtable_schema (version INTEGER NOT NULL)")?;
                c.batch("DELETE FROM mailtable_schema")?;
                c.execute_once("INSERT INTO mailtable_schema (version) VALUES ($1)", &[&v])?;
                c.batch("COMMIT")
            })();
            if step.is_err() {
                let _ = c.batch("ROLLBACK");
            }
            step
        });
        // Columns may have changed: re-read them on next use.
        self.close();
        result
    }
}

/// Reconnect back-off, shared by every store of the process that uses the
/// same URL and access.
mod backoff {
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    /// Wait after the first failed attempt; doubles with each further one.
    pub(super) const FIRST: Duration = Duration::from_millis(200);
    /// The longest wait between two attempts.
    pub(super) const MAX: Duration = Duration::from_secs(5);

    struct Entry {
        failures: u32,
        not_before: Instant,
        last: String,
    }

    /// Keyed by the redacted URL and the access mode.
    static STATE: Mutex<BTreeMap<String, Entry>> = Mutex::new(BTreeMap::new());

    fn state() -> std::sync::MutexGuard<'static, BTreeMap<String, Entry>> {
        // A panic elsewhere cannot leave this map inconsistent.
        STATE.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The wait after `failures` consecutive failed attempts.
    pub(super) fn delay(failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(16);
        (FIRST * (1u32 << shift)).min(MAX)
    }

    /// May we try to connect now? Inside the window after a failed attempt:
    /// no, and here is why. Otherwise the caller claims the attempt: other
    /// callers wait for the next window meanwhile, so a failing server gets
    /// at most one attempt per window from this process.
    pub(super) fn claim(key: &str, now: Instant) -> Result<(), String> {
        let mut map = state();
        let Some(e) = map.get_mut(key) else {
            return Ok(());
        };
        if now < e.not_before {
            let left = e.not_before - now;
            return Err(format!(
                "{} (next connection attempt in {} ms)",
                e.last,
                left.as_millis().max(1)
            ));
        }
        e.not_before = now + delay(e.failures);
        Ok(())
    }

    /// An attempt failed.
    pub(super) fn failed(key: &str, now: Instant, why: &str) {
        let mut map = state();
        let e = map.entry(key.to_string()).or_insert(Entry {
            failures: 0,
            not_before: now,
            last: String::new(),
        });
        e.failures = e.failures.saturating_add(1);
        e.not_before = now + delay(e.failures);
        e.last = why.to_string();
    }

    /// An attempt succeeded; returns whether earlier ones had failed.
    pub(super) fn succeeded(key: &str) -> bool {
        state().remove(key).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_postgres::config::Host;

    fn opts(access: Access) -> OpenOptions {
        OpenOptions {
            access,
            timeout: Duration::from_millis(1500),
        }
    }

    #[test]
    fn backoff_grows_to_a_cap() {
        assert_eq!(backoff::delay(1), Duration::from_millis(200));
        assert_eq!(backoff::delay(2), Duration::from_millis(400));
        assert_eq!(backoff::delay(4), Duration::from_millis(1600));
        assert_eq!(backoff::delay(6), backoff::MAX);
        assert_eq!(backoff::delay(1000), backoff::MAX);
    }

    #[test]
    fn backoff_window_answers_at_once() {
        let key = "postgresql://test-window/db#ro";
        let t0 = Instant::now();
        assert!(backoff::claim(key, t0).is_ok());
        backoff::failed(key, t0, "cannot connect to x: refused");
        let why = backoff::claim(key, t0 + Duration::from_millis(50)).unwrap_err();
        assert!(why.starts_with("cannot connect to x: refused (next connection attempt in "));
        // After the window: one caller gets the attempt, the next waits.
        assert!(backoff::claim(key, t0 + Duration::from_millis(250)).is_ok());
        assert!(backoff::claim(key, t0 + Duration::from_millis(260)).is_err());
        backoff::failed(key, t0 + Duration::from_millis(300), "again");
        assert!(backoff::claim(key, t0 + Duration::from_millis(650)).is_err());
        assert!(backoff::claim(key, t0 + Duration::from_millis(701)).is_ok());
        assert!(backoff::succeeded(key));
        assert!(backoff::claim(key, t0).is_ok());
        assert!(!backoff::succeeded(key));
    }

    #[test]
    fn settings_added_to_the_url() {
        let url = "postgresql://mail:s3cret@db1:5432,db2:5433/mail?options=-c%20search_path%3Dmt";
        let ro = PostgresStore::config(url, &redact(url), &opts(Access::ReadOnly)).unwrap();
        assert_eq!(ro.get_hosts().len(), 2);
        assert_eq!(ro.get_ports(), &[5432, 5433]);
        assert_eq!(ro.get_target_session_attrs(), TargetSessionAttrs::Any);
        assert_eq!(
            ro.get_options(),
            Some("-c search_path=mt -c statement_timeout=1500 -c default_transaction_read_only=on")
        );
        assert_eq!(ro.get_connect_timeout(), Some(&Duration::from_millis(1500)));
        assert!(ro.get_application_name().is_some());
        let rw = PostgresStore::config(url, &redact(url), &opts(Access::ReadWrite)).unwrap();
        assert_eq!(rw.get_target_session_attrs(), TargetSessionAttrs::ReadWrite);
        assert_eq!(
            rw.get_options(),
            Some("-c search_path=mt -c statement_timeout=1500")
        );
        // No host: Debian's socket directory, as libpq does there.
        let local = PostgresStore::config(
            "postgresql:///mail",
            "postgresql:///mail",
            &opts(Access::ReadOnly),
        )
        .unwrap();
        assert!(
            matches!(local.get_hosts(), [Host::Unix(p)] if p.as_path() == std::path::Path::new(DEFAULT_SOCKET_DIR))
        );
    }

    #[test]
    fn bad_url_is_a_config_error_without_the_password() {
        let err = PostgresStore::open(
            "postgresql://mail:s3cret@db1/mail?sslmode=bogus",
            &opts(Access::ReadOnly),
        )
        .err()
        .unwrap();
        assert!(matches!(err, StoreError::Config(_)), "{err}");
        let text = err.to_string();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("postgresql://mail:***@db1/mail"), "{text}");
    }

    /// Nothing listens on port 1 of the loopback: refused at once.
    #[test]
    fn unreachable_server_is_unavailable_and_never_shows_the_password() {
        for (access, want) in [
            (
                Access::ReadOnly,
                "cannot connect to postgresql://mt:***@127.0.0.1:1/ro",
            ),
            (
                Access::ReadWrite,
                "no writable primary reachable at postgresql://mt:***@127.0.0.1:1/rw",
            ),
        ] {
            let db = if access == Access::ReadOnly {
                "ro"
            } else {
                "rw"
            };
            let url = format!("postgresql://mt:s3cret@127.0.0.1:1/{db}");
            let err = PostgresStore::open(&url, &opts(access)).err().unwrap();
            let text = err.to_string();
            assert!(matches!(err, StoreError::Unavailable(_)), "{text}");
            assert!(text.contains(want), "{text}");
            assert!(!text.contains("s3cret"), "{text}");
            // Inside the back-off window: the same answer, at once.
            let t = Instant::now();
            let again = PostgresStore::open(&url, &opts(access)).err().unwrap();
            assert!(t.elapsed() < Duration::from_millis(100));
            let again = again.to_string();
            assert!(again.contains("next connection attempt in"), "{again}");
            assert_eq!(again.matches("database unavailable").count(), 1, "{again}");
        }
    }
}
