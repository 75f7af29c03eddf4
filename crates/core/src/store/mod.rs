//! The storage boundary: the `Store` trait, its error type, the registry that
//! picks a backend from the `database` URL, and the embedded migrations.
//!
//! Backends only run parameterised SQL and map rows; every policy decision
//! (normalisation, wildcard matching, precedence, wire formatting) lives above
//! them, in [`crate::resolve`] and the binaries, so SQLite and PostgreSQL can
//! never disagree about an address. This mirrors OpenSMTPD's table layer,
//! where `table.c` applies policy once and each `table_<backend>.c` only maps
//! a key to a value.
//!
//! Three outcomes stay distinct all the way up: rows (found), an empty list
//! (not found), and `StoreError` (a temporary failure: smtpd answers 4xx,
//! Dovecot tempfails, checkpassword exits 111).

pub mod failing;
pub mod memory;
pub mod migrate;
pub mod postgres;
pub mod sqlite;
pub mod url;
pub mod watch;

use crate::password::PasswordHash;
use std::time::Duration;

pub use crate::row::{Row, RowKind};

pub use url::DatabaseUrl;

/// Which rows `delete` removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delete<'a> {
    /// The mailbox row(s) of the address.
    Mailbox,
    /// Alias rows of the address (password NULL); all of them, or only those
    /// with these targets.
    Alias(Option<&'a [String]>),
}

/// The schema state of a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaState {
    /// No `users` table at all.
    Empty,
    /// A `users` table without mailtable's version table: the article's
    /// hand-made database (version 0), or one made by another tool.
    Unversioned,
    /// A mailtable schema version.
    Version(u32),
    /// A `users` table and mailtable's version table, which this role may
    /// not read (PostgreSQL: a daemon's role granted SELECT on `users` and
    /// the change stamp only, as the README has it). The daemons need no
    /// more; `migrate` and `doctor` say so.
    VersionUnreadable,
}

/// A storage failure. Every variant is a temporary failure for the daemons;
/// the CLI maps a few to "bad input" (see [`crate::exit`]).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Locked, missing, unreadable, timed out, connection lost: retry later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The file exists but is not a database of the expected kind.
    #[error("{0}")]
    NotADatabase(String),
    /// The schema is missing, too old for this operation, or newer than this
    /// binary knows.
    #[error("{0}")]
    Schema(String),
    /// A write was refused because it would break an invariant.
    #[error("{0}")]
    Conflict(String),
    /// The database URL or config cannot be used.
    #[error("{0}")]
    Config(String),
    /// Anything else the database reported.
    #[error("database error: {0}")]
    Other(String),
}

/// How a binary opens the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Daemon-facing binaries: read-only, never creates or changes anything.
    ReadOnly,
    /// The admin CLI: read-write on an existing database.
    ReadWrite,
    /// `mailtable init`: read-write, creating the SQLite file if needed (a
    /// PostgreSQL database must exist: `createdb`).
    Create,
}

/// Options every backend honours.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Read-only, read-write or create.
    pub access: Access,
    /// Upper bound for one database call (lock waits, query time, connect);
    /// whole-table reads and migration steps have [`BULK_TIMEOUT`] for
    /// their query time.
    pub timeout: Duration,
}

/// A version stamp of the data, from [`Store::change_token`]: equal tokens
/// mean no write happened in between. Opaque; only compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChangeToken([u64; 6]);

impl ChangeToken {
    /// A token from the backend's own counters.
    pub fn new(parts: [u64; 6]) -> ChangeToken {
        ChangeToken(parts)
    }
}

/// The bound on one call whose work grows with the table: reading every row
/// ([`Store::list`], [`Store::domains`]: the admin's list commands, imports,
/// `domain del`) and a schema migration step ([`Store::apply_migration`],
/// which builds indexes). Seconds at a million rows, so the per-call
/// timeout, which bounds lookups, would make those fail on big tables; ten
/// minutes still ends a call to a server that stopped answering.
pub const BULK_TIMEOUT: Duration = Duration::from_secs(600);

/// How long a lookup waits for a lock that has already outlasted the
/// timeout once, until a read of `users` gets through again (both
/// backends). smtpd asks the table about five keys per recipient (domain,
/// the alias walk, userinfo), one at a time: a writer holding the lock for
/// a minute cost every recipient five timeouts (25 s at the default 5 s),
/// served from the cache at the end of each. A mailtable write holds the
/// lock for milliseconds; a longer hold (an `ALTER TABLE`, a `LOCK
/// TABLE`, a shell left in `BEGIN EXCLUSIVE`) is an outage until it ends,
/// and answered as one at once.
pub(crate) const LOCKED_WAIT: Duration = Duration::from_millis(100);

/// How an error names the bound a statement ran past: the configured
/// timeout, or [`BULK_TIMEOUT`] (a whole-table read said to have taken
/// longer than "5000 ms" would send the admin to the wrong setting).
pub(crate) fn limit_text(bound: Duration) -> String {
    if bound == BULK_TIMEOUT {
        format!(
            "the limit for whole-table work ({} s)",
            BULK_TIMEOUT.as_secs()
        )
    } else {
        format!("the configured timeout ({} ms)", bound.as_millis())
    }
}

/// The storage interface. Lookups take normalised strings (policy above has
/// already lower-cased and validated them) and return raw rows.
pub trait Store: Send {
    /// `"sqlite"` or `"postgres"`, for log lines.
    fn kind(&self) -> &'static str;

    /// Rows whose address is exactly `username@domain`.
    fn exact(&mut self, username: &str, domain: &str) -> Result<Vec<Row>, StoreError>;
    /// The rows of several addresses at once, `(username, domain)` each:
    /// exactly the rows [`Store::exact`] gives for each key, in row order.
    /// One query where the backend can, for the targets of an alias.
    fn exact_many(&mut self, keys: &[(&str, &str)]) -> Result<Vec<Row>, StoreError> {
        let mut rows = Vec::new();
        for (username, domain) in keys {
            rows.extend(self.exact(username, domain)?);
        }
        Ok(rows)
    }
    /// [`Store::exact`], and in the same query the rows of the addresses
    /// its rows point at: the target keys as [`target_key`] splits them
    /// from the stored text. An alias and its targets then cost one query,
    /// not two. A backend without the join (the default) probes no target:
    /// the resolver asks for what it still needs, so the answer is the
    /// same either way.
    fn exact_joined(&mut self, username: &str, domain: &str) -> Result<Joined, StoreError> {
        Ok(Joined {
            rows: self.exact(username, domain)?,
            targets: Vec::new(),
        })
    }
    /// Rows of `domain` whose username contains `%` (patterns, catch-all).
    fn wildcards(&mut self, domain: &str) -> Result<Vec<Row>, StoreError>;
    /// Whether any row has this domain.
    fn has_domain(&mut self, domain: &str) -> Result<bool, StoreError>;
    /// Rows whose target is exactly `mailbox`.
    fn targeting(&mut self, mailbox: &str) -> Result<Vec<Row>, StoreError>;
    /// Rows whose target contains `%` (domain aliases).
    fn wildcard_targets(&mut self) -> Result<Vec<Row>, StoreError>;

    /// The password column of a few login rows (at most 16), the most
    /// recently added first where the database can tell: a sample of the
    /// hashes stored, so that a dummy check for an unknown user costs what
    /// a real one costs here ([`crate::accounts`] takes the first usable
    /// one). Empty when there is no such row (or the store cannot sample).
    fn sample_passwords(&mut self) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }

    /// A stamp of the data's current version, for the daemons' answer
    /// cache ([`crate::cache`]): it changes with every committed write,
    /// whoever made it, as the backend documents. `None`: this store cannot
    /// tell (the cache then never answers from memory). It asks the
    /// database, so it can fail like any lookup.
    fn change_token(&mut self) -> Result<Option<ChangeToken>, StoreError> {
        Ok(None)
    }

    /// Whether the data is still the version a change check gave `token`
    /// for, as far as can be told without the database's lock, a query or
    /// a connection; `None` when this store cannot tell without the
    /// database (PostgreSQL, the default, or a SQLite file gone). For an outage, when the change
    /// check itself has failed: a lock held by a writer that committed a
    /// moment before still lets a SQLite file's header say the data moved.
    fn known_unchanged_since(&self, token: ChangeToken) -> Option<bool> {
        let _ = token;
        None
    }

    /// [`Store::change_token`] when it can be had without waiting: SQLite
    /// from the `stat` of its file and a read of the header, PostgreSQL
    /// from a stamp it read moments ago. `None` when more is needed (a
    /// server to ask, a file to reopen); the caller then asks
    /// [`Store::change_token`] where waiting is allowed. A caller that must
    /// never block (a worker of `serve`'s async runtime, which answers
    /// cached lookups in place) uses this. Default: `None`, always safe.
    fn change_token_in_place(&mut self) -> Option<Result<Option<ChangeToken>, StoreError>> {
        None
    }

    /// The start of one request's lookup in a daemon; [`Store::end_lookup`]
    /// ends it. In between, the checks a backend makes before every query
    /// count as made once for the whole lookup: SQLite `stat`s its path
    /// here and not again per query, so the change check and every query
    /// of the lookup read the same file, and a lookup that makes N queries
    /// costs N `stat`s less. On SQLite the lookup's queries are also one
    /// read transaction, which holds SQLite's shared lock from the first
    /// query to [`Store::end_lookup`]: callers must end every lookup they
    /// begin, also when it panics, or writers wait for the lock. A lookup
    /// begun while another is still open ends that one first. Nothing is
    /// reported here: a failed check is made again, and reported, by the
    /// next call. A store used outside a lookup (the CLI) checks before
    /// every query. Default: nothing.
    fn begin_lookup(&mut self) {}

    /// The end of the lookup [`Store::begin_lookup`] started: its read
    /// transaction ends, and the next query checks afresh. Default:
    /// nothing.
    fn end_lookup(&mut self) {}

    /// Drop cached connections and statements (smtpd `update`).
    fn reopen(&mut self) -> Result<(), StoreError>;

    /// Every row, or those of one domain, ordered by domain then username.
    /// A read whose time grows with the table, not a lookup: bounded by
    /// [`BULK_TIMEOUT`] instead of the configured per-call timeout, which
    /// a million rows can take on a busy machine. Lock waits keep the
    /// configured bound. Callers: the CLI, and serve's dict iteration
    /// (`doveadm user '*'`), never a lookup for mail.
    fn list(&mut self, domain: Option<&str>) -> Result<Vec<Row>, StoreError>;
    /// [`Store::list`], a row at a time and in the same order: `each` gets
    /// every row as it is read, so the caller's memory stays bounded
    /// whatever the table's size (the admin's list commands). Never
    /// retried, since rows may have been handed out. SQLite reads pages
    /// of rows, each under [`BULK_TIMEOUT`] and holding no lock while
    /// `each` runs; PostgreSQL streams one statement, whose server-side
    /// bound ([`BULK_TIMEOUT`]) counts the time `each` takes too (a list
    /// read by a pager left open ten minutes ends in an error). Default:
    /// `list`, then each row.
    fn scan(&mut self, domain: Option<&str>, each: &mut dyn FnMut(Row)) -> Result<(), StoreError> {
        for row in self.list(domain)? {
            each(row);
        }
        Ok(())
    }
    /// Distinct domains, sorted. Bounded like [`Store::list`].
    fn domains(&mut self) -> Result<Vec<String>, StoreError>;

    /// Start a write transaction that later reads see consistently.
    fn begin(&mut self) -> Result<(), StoreError>;
    /// Commit it.
    fn commit(&mut self) -> Result<(), StoreError>;
    /// Roll it back (best effort).
    fn rollback(&mut self);

    /// Insert one row. Columns the database lacks must be at their defaults
    /// (`active`, no quota), or this fails with [`StoreError::Schema`].
    fn insert(&mut self, row: &Row) -> Result<(), StoreError>;
    /// Delete rows of `username@domain`; returns how many.
    fn delete(
        &mut self,
        username: &str,
        domain: &str,
        what: Delete<'_>,
    ) -> Result<usize, StoreError>;
    /// Replace the hash of the mailbox row; returns rows changed.
    fn set_password(
        &mut self,
        username: &str,
        domain: &str,
        hash: &PasswordHash,
    ) -> Result<usize, StoreError>;
    /// Set `active` on the mailbox row; returns rows changed.
    fn set_active(
        &mut self,
        username: &str,
        domain: &str,
        active: bool,
    ) -> Result<usize, StoreError>;
    /// Set (or, with `None`, clear) the quota of the mailbox row; returns
    /// rows changed. Needs the `quota` column ([`StoreError::Schema`]
    /// without it).
    fn set_quota(
        &mut self,
        username: &str,
        domain: &str,
        quota: Option<&str>,
    ) -> Result<usize, StoreError>;
    /// Point every alias row (password NULL) whose target is exactly `from`
    /// at `to` instead; returns rows changed. Mailbox rows are left alone.
    fn retarget(&mut self, from: &str, to: &str) -> Result<usize, StoreError>;

    /// Where the schema stands.
    fn schema_state(&mut self) -> Result<SchemaState, StoreError>;
    /// Run one migration step's SQL and record `version`, atomically.
    /// Bounded like [`Store::list`] (an index build reads every row).
    fn apply_migration(&mut self, version: u32, sql: &str) -> Result<(), StoreError>;
}

/// [`Store::exact_joined`]'s answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Joined {
    /// The rows of the key, as [`Store::exact`] gives them.
    pub rows: Vec<Row>,
    /// Each target key probed, `(username, domain)`, with every row
    /// [`Store::exact`] gives for it (none: no such address). A key is
    /// listed once, however many rows point at it.
    pub targets: Vec<((String, String), Vec<Row>)>,
}

/// One result row of a backend's join: an identity of the key's row
/// (rowid, ctid), that row, the target key it was joined on (`None`: not
/// probed), and one row found there (`None`: nothing there).
pub(crate) type JoinedResult<I> = (I, Row, Option<(String, String)>, Option<Row>);

impl Joined {
    /// Gather the result rows of a join. The backends return them ordered
    /// by the key's row, so that a row joined to several targets comes in
    /// consecutive results.
    pub(crate) fn gather<I>(results: impl IntoIterator<Item = JoinedResult<I>>) -> Joined
    where
        I: PartialEq,
    {
        let mut joined = Joined::default();
        // The target keys listed so far: looked up, not searched, since an
        // alias may have thousands.
        let mut listed = std::collections::HashSet::new();
        let mut current: Option<I> = None;
        // Where the rows of the current row's target go; None when that
        // key was listed by an earlier row (its rows are there already).
        let mut filling: Option<usize> = None;
        for (id, row, key, target) in results {
            if current.as_ref() != Some(&id) {
                current = Some(id);
                filling = key.filter(|k| listed.insert(k.clone())).map(|k| {
                    joined.targets.push((k, Vec::new()));
                    joined.targets.len() - 1
                });
                joined.rows.push(row);
            }
            if let (Some(i), Some(t)) = (filling, target) {
                joined.targets[i].1.push(t);
            }
        }
        joined
    }
}

/// The key [`Store::exact_joined`] probes for a row of `username`: its
/// target with `%` replaced by `username` (for an exact key, what `%`
/// matches), split at the first `@`, as stored (no case folding). `None`
/// for a mailbox row, which delivers to itself and needs no probe, and for
/// a target without `@`. The SQL backends compute the same in SQL; the
/// resolver uses a probed key only where it equals its own normalised key
/// for the target, so a key that differs (a target stored in upper case)
/// costs a query, never a wrong answer.
pub fn target_key(row: &Row, username: &str) -> Option<(String, String)> {
    if row.mailbox == format!("{}@{}", row.username, row.domain) {
        return None;
    }
    let target = row.mailbox.replace('%', username);
    let (u, d) = target.split_once('@')?;
    Some((u.to_string(), d.to_string()))
}

/// Open the backend named by the URL's scheme.
pub fn open(url: &DatabaseUrl, options: &OpenOptions) -> Result<Box<dyn Store>, StoreError> {
    match url {
        DatabaseUrl::Sqlite(path) => Ok(Box::new(sqlite::SqliteStore::open(path, options)?)),
        DatabaseUrl::Postgres(u) => Ok(Box::new(postgres::PostgresStore::open(u, options)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_error_names_the_bound_that_applied() {
        assert_eq!(
            limit_text(Duration::from_millis(5000)),
            "the configured timeout (5000 ms)"
        );
        assert_eq!(
            limit_text(BULK_TIMEOUT),
            "the limit for whole-table work (600 s)"
        );
    }
}
