//! The PostgreSQL backend: tokio-postgres driven from one current-thread
//! runtime per store, i.e. a blocking client with a deadline on every call.
//!
//! Why not the blocking `postgres` crate: it is the same thin shim over
//! tokio-postgres (a current-thread runtime and `block_on`; docs.rs
//! `postgres::Client`), but it has no per-call timeout, and its connect
//! timeout covers only the TCP connect. A server that accepted the
//! connection and then stopped answering (a stopped process, a stuck disk,
//! a black-holed network) would hang smtpd's table with it. DESIGN.md
//! "Failure semantics" asks that every database call be bounded, so here
//! every call runs under `tokio::time::timeout`; the server-side
//! `statement_timeout` fires first in the ordinary case and gives the
//! cleaner error.
//!
//! This file is the [`Store`] implementation: what each method runs, and
//! whether it is a read (retried once on a fresh connection) or a write
//! (never retried). The rest, one job per file:
//! - `config.rs`: the URL plus mailtable's settings (timeouts, read-only,
//!   primaries for writers, the default socket directory, `sslmode`);
//! - `connect.rs`: the connection lifecycle and its failure rules;
//! - `conn.rs`: one connection and the deadline on each call;
//! - `tls.rs`: the TLS client for each `sslmode`;
//! - `backoff.rs`: the process-wide reconnect back-off;
//! - `error.rs`: driver errors to [`StoreError`], never with the password;
//! - `passfile.rs`: the password from libpq's password file;
//! - `sql.rs`: the SQL text and the row mapping (and why rows sort by `ctid`).
//!
//! The change token of the daemons' cache ([`Store::change_token`]) is the
//! stamp that schema 3's trigger writes on every change of `users` (the id
//! of the writing transaction, so the same on every connection), read at
//! most once per [`CHANGE_CHECK`]: a change committed anywhere, on this
//! host or another, is seen by every daemon within that bound, at the cost
//! of one tiny query per second instead of one per lookup. Without the
//! stamp (a database not yet migrated, a role without SELECT on it) every
//! check is a new version: answers are then cached for at most
//! [`CHANGE_CHECK`] too, only less often reused. The check also reads
//! which table the name `users` resolves to and whether that table has
//! the trigger: a `users` replaced by a renamed copy is a change, and a
//! copy without the trigger (whose writes would never move the stamp) is
//! treated as a database without the stamp, with a warning.

mod backoff;
mod config;
mod conn;
mod connect;
mod error;
mod passfile;
mod sql;
pub use sql::recreate_trigger;
mod tls;

use super::url::redact;
use super::{
    Access, ChangeToken, Delete, Joined, OpenOptions, Row, SchemaState, Store, StoreError,
    BULK_TIMEOUT,
};
use crate::password::PasswordHash;
use conn::{Conn, Open};
use connect::Tx;
use error::{tx_lost, Failure};
use sql::*;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tokio_postgres::types::ToSql;
use tokio_postgres::Config;

/// A PostgreSQL-backed [`Store`].
pub struct PostgresStore {
    config: Config,
    /// The TLS client (used unless `sslmode=disable`).
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    /// The URL with its password replaced, for every message.
    shown: String,
    access: Access,
    timeout: Duration,
    /// Each host of the URL with its own config, tried in turn, each
    /// within the timeout ([`config::per_host`]).
    hosts: Vec<(String, Config)>,
    rt: Runtime,
    open: Option<Open>,
    tx: Tx,
    /// The last change check: when, and the token it gave.
    checked: Option<(Instant, ChangeToken)>,
    /// Change checks made so far on this connection (the first without a
    /// stamp says so in the log).
    checks: u64,
    /// The missing trigger was logged, and not seen back since.
    warned_no_trigger: bool,
    /// Inside a daemon's lookup ([`Store::begin_lookup`]).
    in_lookup: bool,
    /// Why the database was unavailable earlier in this lookup: its other
    /// calls fail at once with it. A held lock would otherwise cost one
    /// full timeout for the change check and another for the query.
    failed_in_lookup: Option<String>,
    /// A statement waited out its timeout and no read of `users` has got
    /// through since: new connections wait at most [`LOCKED_WAIT`] for a
    /// lock (`lock_timeout`), as the SQLite store does.
    locked: bool,
}

/// How often the change stamp is read: the bound on how stale a cached
/// answer can be on PostgreSQL.
pub const CHANGE_CHECK: Duration = Duration::from_secs(1);

impl PostgresStore {
    /// The stamp read within [`CHANGE_CHECK`] on the connection still open;
    /// the bound on staleness the module doc states.
    fn recent_token(&self) -> Option<ChangeToken> {
        let (at, token) = self.checked?;
        (at.elapsed() < CHANGE_CHECK && self.open.is_some()).then_some(token)
    }

    /// Connect to the database named by `url` (lazily re-connected after
    /// errors).
    pub fn open(url: &str, options: &OpenOptions) -> Result<PostgresStore, StoreError> {
        let shown = redact(url);
        let config::Settings { config, hosts, tls } = config::from_url(url, &shown, options)?;
        let tls = tls::connector(&tls)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot start the PostgreSQL client: {e}"))
            })?;
        let mut store = PostgresStore {
            config,
            tls,
            shown,
            access: options.access,
            timeout: options.timeout,
            hosts,
            rt,
            open: None,
            tx: Tx::None,
            checked: None,
            checks: 0,
            warned_no_trigger: false,
            in_lookup: false,
            failed_in_lookup: None,
            locked: false,
        };
        store.connect()?;
        Ok(store)
    }

    fn rows(
        &mut self,
        tail: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        self.read_users(|c| {
            let rows = c.query(tail, |cols| select(cols, tail), params)?;
            rows.iter()
                .map(row_from)
                .collect::<Result<_, _>>()
                .map_err(Failure::Pg)
        })
    }

    /// [`PostgresStore::read`] of `users`, a lookup's: once one gets
    /// through, a lock that held an earlier one past the timeout is gone
    /// ([`PostgresStore::got_through`]). Other reads (the change stamp,
    /// the catalog) take no lock `LOCK TABLE users` holds, so they prove
    /// nothing.
    fn read_users<T>(
        &mut self,
        f: impl FnMut(&mut Conn<'_>) -> Result<T, Failure>,
    ) -> Result<T, StoreError> {
        let result = self.read(f);
        if result.is_ok() {
            self.got_through();
        }
        result
    }

    /// A whole-table read ([`Store::list`]): the server's
    /// `statement_timeout` and the client's deadline are [`BULK_TIMEOUT`]
    /// for its statement, while `lock_timeout` keeps lock waits within the
    /// configured bound; both are the connection's startup values again
    /// after it (`RESET`). A `SET` inside a transaction that then aborts is
    /// undone with it; one that cannot be set back costs the connection,
    /// whose next use starts afresh.
    ///
    /// `retry`: a read that may run again on a fresh connection when the
    /// one it found turned out dead ([`PostgresStore::read`]); without,
    /// it runs once (a scan may have handed out rows already).
    fn bulk<T>(
        &mut self,
        retry: bool,
        mut query: impl FnMut(&mut Conn<'_>) -> Result<T, Failure>,
    ) -> Result<T, StoreError> {
        let bulk = self.bulk_settings("");
        let normal = "RESET statement_timeout; RESET lock_timeout";
        let mut reset_failed = false;
        let mut run = |c: &mut Conn<'_>| {
            c.batch(&bulk)?;
            let result = query(c);
            // A failed call costs the connection anyway (`fail`), and after
            // a timeout a RESET would only wait as long again.
            if result.is_ok() {
                reset_failed = c.batch(normal).is_err();
            }
            result
        };
        let result = if retry {
            self.read_within(BULK_TIMEOUT, &mut run)
        } else {
            self.write_within(BULK_TIMEOUT, &mut run)
        };
        if reset_failed && self.tx == Tx::None {
            self.close();
        }
        result
    }

    /// The session settings of a bulk call: [`BULK_TIMEOUT`] for its
    /// statements, the configured bound for its lock waits. `scope`:
    /// `""` for the session (set back by `bulk`), `"LOCAL "` for the
    /// transaction.
    fn bulk_settings(&self, scope: &str) -> String {
        format!(
            "SET {scope}statement_timeout = {}; SET {scope}lock_timeout = {}",
            BULK_TIMEOUT.as_millis(),
            self.timeout.as_millis().max(1)
        )
    }

    /// The rows of a read-only query on another application's tables:
    /// `mailtable import` reads PostfixAdmin's through this, so that a
    /// source connects as the database does (TLS by `sslmode` and
    /// `sslrootcert`, the password file, the default socket directory)
    /// and reads under the whole-table bound. Open the store with
    /// [`Access::ReadOnly`]: the session then refuses writes.
    pub fn read_rows(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        self.bulk(true, |c| c.query_once(sql, params))
    }

    fn columns(&mut self) -> Result<Columns, StoreError> {
        self.ensure()?;
        Ok(self.open.as_ref().map(|o| o.columns).unwrap_or_default())
    }
}

/// The query of [`Store::list`] and [`Store::scan`] (its key in `sql.rs`)
/// and its parameters.
fn list_query<'a>(domain: &'a Option<&str>) -> (&'static str, Vec<&'a (dyn ToSql + Sync)>) {
    match domain {
        Some(d) => (LIST_DOMAIN, vec![d]),
        None => (LIST_ALL, Vec::new()),
    }
}

/// What a change check read.
enum Stamp {
    /// The stamp, the oid of the `users` table the name resolves to
    /// (none without one), whether that table has the trigger, its
    /// schema's name quoted for SQL, and whether the stamp's table is in
    /// that schema (none without a `users`).
    Read((i64, Option<i64>, bool, Option<String>, Option<bool>)),
    /// No stamp table, no right to read it, or no row in it.
    Unreadable,
}

/// A stamp query that failed because there is no stamp to read.
fn no_stamp(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    e.code()
        .is_some_and(|c| *c == SqlState::UNDEFINED_TABLE || *c == SqlState::INSUFFICIENT_PRIVILEGE)
}

/// The version recorded in `mailtable_schema`, `None` without that table;
/// and whether `users` exists.
/// `(version, users)`: the version `None` without a version table, `-1`
/// when the role may not read it.
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
    let rows = match c.query_static(MAX_VERSION, &[]) {
        Err(Failure::Pg(e))
            if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) =>
        {
            return Ok((Some(-1), users));
        }
        r => r?,
    };
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

    fn exact_joined(&mut self, username: &str, domain: &str) -> Result<Joined, StoreError> {
        let results = self.read_users(|c| {
            let rows = c.query(JOINED, joined_sql, &[&domain, &username])?;
            rows.iter()
                .map(joined_from)
                .collect::<Result<Vec<_>, _>>()
                .map_err(Failure::Pg)
        })?;
        Ok(Joined::gather(results))
    }

    fn exact_many(&mut self, keys: &[(&str, &str)]) -> Result<Vec<Row>, StoreError> {
        let (users, domains) = key_parts(keys);
        let rows = self.rows(EXACT_MANY, &[&domains, &users])?;
        Ok(only_keys(rows, keys))
    }

    fn wildcards(&mut self, domain: &str) -> Result<Vec<Row>, StoreError> {
        self.rows(WILDCARDS, &[&domain])
    }

    fn has_domain(&mut self, domain: &str) -> Result<bool, StoreError> {
        self.read_users(|c| Ok(!c.query_static(HAS_DOMAIN, &[&domain])?.is_empty()))
    }

    fn sample_passwords(&mut self) -> Result<Vec<String>, StoreError> {
        self.read_users(|c| {
            Ok(c.query_static(SAMPLE_PASSWORD, &[])?
                .iter()
                .filter_map(|r| r.try_get::<_, Option<String>>(0).ok().flatten())
                .collect())
        })
    }

    fn targeting(&mut self, mailbox: &str) -> Result<Vec<Row>, StoreError> {
        self.rows(TARGETING, &[&mailbox])
    }

    fn wildcard_targets(&mut self) -> Result<Vec<Row>, StoreError> {
        self.rows(WILDCARD_TARGETS, &[])
    }

    fn begin_lookup(&mut self) {
        self.in_lookup = true;
        self.failed_in_lookup = None;
    }

    fn end_lookup(&mut self) {
        self.in_lookup = false;
        self.failed_in_lookup = None;
    }

    fn change_token(&mut self) -> Result<Option<ChangeToken>, StoreError> {
        if let Some(token) = self.recent_token() {
            return Ok(Some(token));
        }
        // The stamp is as old as the moment it was asked for, not the
        // moment the answer came back (a slow reply, a reconnect): counted
        // from here, reuse stays within CHANGE_CHECK of the data it saw.
        let asked = Instant::now();
        let stamp = self.read(|c| match c.query_static(CHANGE_STAMP, &[]) {
            // Without its one row the trigger's UPDATE changes nothing:
            // no stamp either.
            Ok(rows) => Ok(match rows.first() {
                Some(r) => Stamp::Read((
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get(2)?,
                    r.try_get(3)?,
                    r.try_get(4)?,
                )),
                None => Stamp::Unreadable,
            }),
            Err(Failure::Pg(e)) if no_stamp(&e) => Ok(Stamp::Unreadable),
            Err(f) => Err(f),
        })?;
        self.checks += 1;
        // Without a stamp, every check must give a token no other check
        // gave, on any connection: `serve`'s pool shares one cache, and
        // per-connection numbers (each counting from 1) made two
        // connections' tokens equal, so answers cached before a change
        // passed for current long after CHANGE_CHECK.
        let unstamped = || {
            static CHECKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = CHECKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            ChangeToken::new([2, n, 0, 0, 0, 0])
        };
        let token = match stamp {
            Stamp::Read((s, Some(table), true, _, Some(true))) => {
                self.warned_no_trigger = false;
                ChangeToken::new([1, s as u64, table as u64, 0, 0, 0])
            }
            // No table named `users` at all (renamed away, dropped): the
            // lookup that follows says so; advice to recreate its trigger
            // would send the admin the wrong way.
            Stamp::Read((_, None, _, _, _)) => unstamped(),
            Stamp::Read((_, _, true, schema, _)) => {
                if !self.warned_no_trigger {
                    self.warned_no_trigger = true;
                    tracing::warn!(database = %self.shown,
                        "the mailtable_changes table the search path finds first is not in                          the schema of users ({}), where the trigger moves the stamp: it never                          changes, so cached answers are reused for at most {} s; drop or                          rename that other mailtable_changes",
                        schema.as_deref().unwrap_or("?"),
                        CHANGE_CHECK.as_secs());
                }
                unstamped()
            }
            Stamp::Read((_, _, _, schema, _)) => {
                if !self.warned_no_trigger {
                    self.warned_no_trigger = true;
                    tracing::warn!(database = %self.shown,
                        "the users table has no enabled users_stamp_change trigger (replaced \
                         by a copy made without it, or the trigger disabled), or is fed by a \
                         logical-replication subscription (whose apply worker fires no \
                         statement trigger), so its changes do not move the change stamp: \
                         cached answers are reused for at most {} s; where the trigger is \
                         missing, put it back with: {}",
                        CHANGE_CHECK.as_secs(),
                        recreate_trigger(schema.as_deref().unwrap_or("public")));
                }
                unstamped()
            }
            Stamp::Unreadable => {
                if self.checks == 1 {
                    tracing::info!(database = %self.shown,
                        "no change stamp readable (schema older than 3, no SELECT on \
                         mailtable_changes, or its row deleted): cached answers are reused for \
                         at most {} s",
                        CHANGE_CHECK.as_secs());
                }
                unstamped()
            }
        };
        self.checked = Some((asked, token));
        Ok(Some(token))
    }

    // Only the stamp read within CHANGE_CHECK: reading a new one is a
    // round trip to the server.
    fn change_token_in_place(&mut self) -> Option<Result<Option<ChangeToken>, StoreError>> {
        self.recent_token().map(|token| Ok(Some(token)))
    }

    fn reopen(&mut self) -> Result<(), StoreError> {
        self.checked = None;
        self.tx = Tx::None;
        self.connect()
    }

    fn list(&mut self, domain: Option<&str>) -> Result<Vec<Row>, StoreError> {
        let (key, params) = list_query(&domain);
        let rows = self.bulk(true, |c| c.query(key, |cols| select(cols, key), &params))?;
        rows.iter()
            .map(row_from)
            .collect::<Result<_, _>>()
            .map_err(|e| self.fail(Failure::Pg(e), BULK_TIMEOUT))
    }

    fn scan(&mut self, domain: Option<&str>, each: &mut dyn FnMut(Row)) -> Result<(), StoreError> {
        let (key, params) = list_query(&domain);
        self.bulk(false, |c| {
            c.query_each(key, |cols| select(cols, key), &params, &mut |r| {
                each(row_from(r).map_err(Failure::Pg)?);
                Ok(())
            })
        })
    }

    fn domains(&mut self) -> Result<Vec<String>, StoreError> {
        let rows = self.bulk(true, |c| c.query_static(DOMAINS, &[]))?;
        rows.iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()
            .map_err(|e| self.fail(Failure::Pg(e), BULK_TIMEOUT))
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
                    INSERT_FULL,
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
                    INSERT_BASE,
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
            Delete::Mailbox => c.execute_static(DELETE_MAILBOX, &[&domain, &username]),
            Delete::Alias(None) => c.execute_static(DELETE_ALIASES, &[&domain, &username]),
            Delete::Alias(Some(targets)) => {
                let mut n = 0;
                for t in targets {
                    n += c.execute_static(DELETE_ALIAS_TO, &[&domain, &username, t])?;
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
        let n =
            self.write(|c| c.execute_static(SET_PASSWORD, &[&domain, &username, &hash.stored()]))?;
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
                "this database has no `active` column; run `mailtable migrate` first (a table \
                 that lost it after schema 2: ALTER TABLE users ADD COLUMN active INTEGER NOT \
                 NULL DEFAULT 1)"
                    .into(),
            ));
        }
        let active = i32::from(active);
        let n = self.write(|c| c.execute_static(SET_ACTIVE, &[&domain, &username, &active]))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn set_quota(
        &mut self,
        username: &str,
        domain: &str,
        quota: Option<&str>,
    ) -> Result<usize, StoreError> {
        if !self.columns()?.quota {
            return Err(StoreError::Schema(
                "this database has no `quota` column; run `mailtable migrate` first (a table \
                 that lost it after schema 2: ALTER TABLE users ADD COLUMN quota TEXT NULL)"
                    .into(),
            ));
        }
        let n = self.write(|c| c.execute_static(SET_QUOTA, &[&domain, &username, &quota]))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn retarget(&mut self, from: &str, to: &str) -> Result<usize, StoreError> {
        let n = self.write(|c| c.execute_static(RETARGET, &[&from, &to]))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn schema_state(&mut self) -> Result<SchemaState, StoreError> {
        let (version, users) = self.read(schema_version)?;
        Ok(match (version, users) {
            (Some(-1), _) => SchemaState::VersionUnreadable,
            (Some(v), _) => SchemaState::Version(u32::try_from(v).unwrap_or(0)),
            (None, true) => SchemaState::Unversioned,
            (None, false) => SchemaState::Empty,
        })
    }

    fn apply_migration(&mut self, version: u32, sql: &str) -> Result<(), StoreError> {
        let v = i32::try_from(version)
            .map_err(|_| StoreError::Schema(format!("schema version {version} is out of range")))?;
        let bulk = self.bulk_settings("LOCAL ");
        let result = self.write_within(BULK_TIMEOUT, |c| {
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
                // The step may build an index over every row: its own
                // bound, for the rest of this transaction; lock waits (the
                // lock above, and the step's own on `users`) keep the
                // configured one.
                c.batch(&bulk)?;
                c.query_static(MIGRATE_IN_USERS_SCHEMA, &[])?;
                c.batch(sql)?;
                c.batch(CREATE_VERSION_TABLE)?;
                c.batch(CLEAR_VERSION)?;
                c.execute_once(RECORD_VERSION, &[&v])?;
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

/// Keep the rows whose address is one of `keys`: [`EXACT_MANY`] fetches
/// the rows of every username with every domain of the keys (an index
/// probe for each pair), and the pairs nobody asked for are dropped.
fn only_keys(rows: Vec<Row>, keys: &[(&str, &str)]) -> Vec<Row> {
    rows.into_iter()
        .filter(|r| keys.iter().any(|(u, d)| r.username == *u && r.domain == *d))
        .collect()
}

/// The distinct usernames and domains of `keys`, in order.
fn key_parts<'a>(keys: &[(&'a str, &'a str)]) -> (Vec<&'a str>, Vec<&'a str>) {
    let mut users: Vec<&str> = Vec::new();
    let mut domains: Vec<&str> = Vec::new();
    for (u, d) in keys {
        if !users.contains(u) {
            users.push(u);
        }
        if !domains.contains(d) {
            domains.push(d);
        }
    }
    (users, domains)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn opts(access: Access) -> OpenOptions {
        OpenOptions {
            access,
            timeout: Duration::from_millis(1500),
        }
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
