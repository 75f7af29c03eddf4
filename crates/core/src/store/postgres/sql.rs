//! The SQL this backend runs, as text constants, and the mapping of a
//! result row to a [`Row`]. Nothing here talks to a server except
//! [`PostgresStore::lookup_plans`], which asks it how it would run them.
//!
//! The one decision a reader would question: the row order. PostgreSQL
//! has no rowid, so lookups sort by `ctid`, the physical position of the
//! row version (PostgreSQL manual, "System Columns"). For rows that were
//! never updated (alias rows, hence the fan-out order) that is insertion
//! order, as SQLite's rowid gives; an `UPDATE` moves a row, which mailbox
//! rows see (`set_password`, `set_active`, `set_quota`; a mailbox never
//! fans out) and alias rows only when `mailtable user rename` repoints them
//! (`retarget`): the fan-out then lists the new target last on PostgreSQL,
//! in place on SQLite. The set of destinations is the same either way. Listings sort with `COLLATE "C"`, byte order like SQLite's
//! `BINARY`, so both backends list rows in the same order whatever the
//! database's locale.
//!
//! The SQL is plain and fixed; a statement's text is also its key in the
//! per-connection statement cache (`conn.rs`).

use super::conn::block;
use super::PostgresStore;
use crate::password::PasswordHash;
use crate::store::{JoinedResult, Row, StoreError};
use tokio_postgres::types::ToSql;

/// Optional columns present in this database.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Columns {
    pub(super) active: bool,
    pub(super) quota: bool,
}

/// Advisory lock key of mailtable's writers ("mailtabl"): one writer at a
/// time, as SQLite's `BEGIN IMMEDIATE` gives, so the checks a command makes
/// before writing still hold when it writes. A transaction-level lock
/// (`pg_advisory_xact_lock`, PostgreSQL manual "Advisory Lock Functions"),
/// so COMMIT or ROLLBACK, or the session dying, releases it.
pub(super) const WRITE_LOCK: i64 = 0x6d61_696c_7461_626c;

// The columns of every lookup, in `row_from`'s order: each optional column
// read where the table has it, its default where not (the article's own
// table has neither; a table with `active` but no `quota`, hand-made or
// with a column dropped, must still refuse its disabled logins).
impl Columns {
    /// `active` and `quota` of the row aliased `t` (`""`: the table).
    fn optional(self, t: &str) -> String {
        let active = match self.active {
            true => format!("{t}active::integer"),
            false => "1::integer".to_string(),
        };
        let quota = match self.quota {
            true => format!("{t}quota::text"),
            false => "NULL::text".to_string(),
        };
        format!("{active}, {quota}")
    }
}

// Lookup query tails, each with its index (schema/postgres/0001_users.sql): the
// wildcard conditions repeat the expression indexes exactly.
pub(super) const EXACT: &str = "WHERE domain = $1 AND username = $2 ORDER BY ctid";
/// `exact` for several addresses: every username with every domain, an
/// index scan of `users_domain_username` with both arrays as its keys.
pub(super) const EXACT_MANY: &str = "WHERE domain = ANY($1) AND username = ANY($2) ORDER BY ctid";
/// [`Store::exact_joined`](crate::store::Store::exact_joined): the rows of
/// `$2@$1` (`a`), each left-joined to the rows of the key its target names
/// (`t`), computed as [`target_key`](crate::store::target_key) does (`%`
/// replaced by the username, split at the first `@`; no probe for a
/// mailbox row or a target without `@`). Both sides are index scans of
/// `users_domain_username` (the EXPLAIN test). The placeholders are filled
/// by [`joined_sql`]; this text is also the statement's cache key.
pub(super) const JOINED: &str = "SELECT a.ctid::text, a.username, a.domain, a.mailbox, \
     a.password, $A, $KU, $KD, t.ctid IS NOT NULL, t.username, t.domain, t.mailbox, \
     t.password, $T FROM users AS a LEFT JOIN users AS t ON t.domain = $KD AND t.username = $KU \
     WHERE a.domain = $1 AND a.username = $2 ORDER BY a.ctid, t.ctid";
pub(super) const WILDCARDS: &str = "WHERE domain = $1 AND strpos(username, '%') > 0 ORDER BY ctid";
pub(super) const TARGETING: &str = "WHERE mailbox = $1 ORDER BY ctid";
pub(super) const WILDCARD_TARGETS: &str = "WHERE strpos(mailbox, '%') > 0 ORDER BY ctid";
/// The change stamp of schema 3 (`schema/postgres/0003_change_counter.sql`),
/// with the `users` table it speaks for (`to_regclass` resolves the name as
/// the lookups do, through the search path) and whether that table has
/// the trigger that moves the stamp, enabled. A `users` replaced by a
/// renamed copy (a restore) is another table, without the trigger unless
/// the copy was made with it: the stamp alone would stay put forever.
/// `tgenabled`: `O` fires on ordinary writes, `A` always (pg_trigger in
/// the PostgreSQL catalogs); `D` is disabled, `R` fires on a replica only.
/// A table a logical-replication subscription writes into
/// (`pg_subscription_rel`) changes by its apply worker, which fires row
/// triggers only, never statement triggers such as this one, ALWAYS or not
/// (PostgreSQL manual, "Logical Replication", Restrictions/Triggers): there
/// the stamp never moves, and is not trusted. The last column: whether the
/// `mailtable_changes` the search path finds is in the schema of that
/// `users`, where the trigger writes (`TG_TABLE_SCHEMA`); one in an
/// earlier schema of the path (a leftover in the role's own) never moves.
pub(super) const CHANGE_STAMP: &str = "SELECT c.stamp, u.oid::bigint, EXISTS (SELECT 1 FROM \
     pg_catalog.pg_trigger AS t WHERE t.tgrelid = u.oid AND t.tgname = 'users_stamp_change' \
     AND t.tgenabled IN ('O', 'A')) AND NOT EXISTS (SELECT 1 FROM \
     pg_catalog.pg_subscription_rel AS s WHERE s.srrelid = u.oid), \
     (SELECT pg_catalog.quote_ident(n.nspname) FROM pg_catalog.pg_class AS k \
     JOIN pg_catalog.pg_namespace AS n ON n.oid = k.relnamespace WHERE k.oid = u.oid), \
     (SELECT k.relnamespace FROM pg_catalog.pg_class AS k WHERE k.oid = c.tableoid) = \
     (SELECT k.relnamespace FROM pg_catalog.pg_class AS k WHERE k.oid = u.oid) \
     FROM mailtable_changes AS c, \
     (SELECT to_regclass('users')::oid AS oid) AS u WHERE c.id = 1";
/// The trigger of schema 3 on the `users` of `schema` (quoted), for the
/// message that it is missing: qualified, since the admin who runs it is
/// another role (the tables' owner), whose search_path may find another
/// `users` or none.
pub fn recreate_trigger(schema: &str) -> String {
    format!(
        "CREATE TRIGGER users_stamp_change AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE \
         ON {schema}.users FOR EACH STATEMENT EXECUTE FUNCTION \
         {schema}.mailtable_stamp_change();"
    )
}
pub(super) const HAS_DOMAIN: &str = "SELECT 1 FROM users WHERE domain = $1 LIMIT 1";
/// A few login rows' hashes (the table has no insertion order to go by).
pub(super) const SAMPLE_PASSWORD: &str = "SELECT password FROM users \
     WHERE password IS NOT NULL AND password <> '' AND strpos(username, '%') = 0 LIMIT 16";
pub(super) const LIST_DOMAIN: &str =
    "WHERE domain = $1 ORDER BY domain COLLATE \"C\", username COLLATE \"C\", ctid";
pub(super) const LIST_ALL: &str = "ORDER BY domain COLLATE \"C\", username COLLATE \"C\", ctid";
pub(super) const DOMAINS: &str =
    "SELECT domain FROM users GROUP BY domain ORDER BY domain COLLATE \"C\"";

// Which optional columns exist, and which of mailtable's tables (read once
// per connection and by `schema_state`). Both find the tables as every
// query does, through the search_path (`to_regclass`), not in
// `current_schema()`: with the default `"$user", public` and a schema of
// the role's own, that is the role's schema while `users` resolves to
// `public.users`, and the reader saw no `active` column (disabled
// mailboxes logged in) and no version table. From the catalog, not
// `information_schema`, which lists only what the role has a privilege
// on: a daemon's role without SELECT on `mailtable_schema` saw "no version
// table" and doctor told it to migrate.
pub(super) const COLUMNS_SQL: &str = "SELECT attname::text FROM pg_catalog.pg_attribute \
     WHERE attrelid = to_regclass('users') AND attnum > 0 AND NOT attisdropped";
pub(super) const TABLES_SQL: &str = "SELECT t.name FROM (VALUES ('users'), ('mailtable_schema')) \
     AS t(name) JOIN pg_catalog.pg_class AS c ON c.oid = to_regclass(t.name) \
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')";
/// A migration runs where `users` already is, when it is anywhere on the
/// search_path: `CREATE TABLE IF NOT EXISTS users` looks in the first
/// schema only, and would make a second, empty table in the role's own.
pub(super) const MIGRATE_IN_USERS_SCHEMA: &str = "SELECT set_config('search_path', \
     quote_ident(n.nspname) || ', pg_catalog', true) FROM pg_catalog.pg_class AS c \
     JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace \
     WHERE c.oid = to_regclass('users')";
pub(super) const LOCK_SQL: &str = "SELECT pg_advisory_xact_lock($1)";

// Writes (the admin CLI). INSERT_FULL, SET_ACTIVE and SET_QUOTA need the optional
// columns, and their callers check that the columns exist first; the others
// touch the article's four columns only.
pub(super) const INSERT_FULL: &str =
    "INSERT INTO users (username, domain, mailbox, password, active, quota) \
     VALUES ($1, $2, $3, $4, $5, $6)";
pub(super) const INSERT_BASE: &str =
    "INSERT INTO users (username, domain, mailbox, password) VALUES ($1, $2, $3, $4)";
pub(super) const DELETE_MAILBOX: &str =
    "DELETE FROM users WHERE domain = $1 AND username = $2 AND password IS NOT NULL";
pub(super) const DELETE_ALIASES: &str =
    "DELETE FROM users WHERE domain = $1 AND username = $2 AND password IS NULL";
pub(super) const DELETE_ALIAS_TO: &str = "DELETE FROM users WHERE domain = $1 AND username = $2 \
     AND password IS NULL AND mailbox = $3";
pub(super) const SET_PASSWORD: &str = "UPDATE users SET password = $3 \
     WHERE domain = $1 AND username = $2 AND password IS NOT NULL";
pub(super) const SET_ACTIVE: &str = "UPDATE users SET active = $3 \
     WHERE domain = $1 AND username = $2 AND password IS NOT NULL";
pub(super) const SET_QUOTA: &str = "UPDATE users SET quota = $3 \
     WHERE domain = $1 AND username = $2 AND password IS NOT NULL";
pub(super) const RETARGET: &str =
    "UPDATE users SET mailbox = $2 WHERE mailbox = $1 AND password IS NULL";

// The version table of `mailtable migrate`.
pub(super) const MAX_VERSION: &str = "SELECT max(version) FROM mailtable_schema";
pub(super) const CREATE_VERSION_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS mailtable_schema (version INTEGER NOT NULL)";
pub(super) const CLEAR_VERSION: &str = "DELETE FROM mailtable_schema";
pub(super) const RECORD_VERSION: &str = "INSERT INTO mailtable_schema (version) VALUES ($1)";

/// The SELECT of a lookup: the columns this database has, then `tail`.
pub(super) fn select(cols: Columns, tail: &str) -> String {
    let c = cols.optional("");
    format!("SELECT username, domain, mailbox, password, {c} FROM users {tail}")
}

/// [`JOINED`] for this database's columns. Both key parts sit inside the
/// CASE: PostgreSQL's `substr` refuses the negative length a target
/// without `@` would give.
pub(super) fn joined_sql(cols: Columns) -> String {
    let (a, t) = (cols.optional("a."), cols.optional("t."));
    JOINED
        .replace(
            "$KU",
            "(CASE WHEN $NOKEY THEN NULL ELSE substr($M, 1, strpos($M, '@') - 1) END)",
        )
        .replace(
            "$KD",
            "(CASE WHEN $NOKEY THEN NULL ELSE substr($M, strpos($M, '@') + 1) END)",
        )
        .replace(
            "$NOKEY",
            "a.mailbox = a.username || '@' || a.domain OR strpos($M, '@') = 0",
        )
        .replace("$M", "replace(a.mailbox, '%', $2)")
        .replace("$A", &a)
        .replace("$T", &t)
}

/// One result row of [`JOINED`] as the key's row with its identity, the
/// target key probed, and a row found there.
pub(super) fn joined_from(
    r: &tokio_postgres::Row,
) -> Result<JoinedResult<String>, tokio_postgres::Error> {
    let key = match (
        r.try_get::<_, Option<String>>(7)?,
        r.try_get::<_, Option<String>>(8)?,
    ) {
        (Some(u), Some(d)) => Some((u, d)),
        _ => None,
    };
    let target = if r.try_get::<_, bool>(9)? {
        Some(row_at(r, 10)?)
    } else {
        None
    };
    Ok((r.try_get(0)?, row_at(r, 1)?, key, target))
}

/// A result row of [`select`] as a [`Row`]; absent optional columns come
/// back as their defaults (`1`, `NULL`).
pub(super) fn row_from(r: &tokio_postgres::Row) -> Result<Row, tokio_postgres::Error> {
    row_at(r, 0)
}

/// The six columns of a row ([`select`]'s order) from column `i` on.
fn row_at(r: &tokio_postgres::Row, i: usize) -> Result<Row, tokio_postgres::Error> {
    Ok(Row {
        username: r.try_get(i)?,
        domain: r.try_get(i + 1)?,
        mailbox: r.try_get(i + 2)?,
        password: r
            .try_get::<_, Option<String>>(i + 3)?
            .map(PasswordHash::new),
        active: r.try_get::<_, Option<i32>>(i + 4)?.unwrap_or(1) != 0,
        quota: r.try_get(i + 5)?,
    })
}

impl PostgresStore {
    /// The plan PostgreSQL chooses for each lookup (`EXPLAIN`), by method
    /// name: for the test that no lookup scans the table.
    pub fn lookup_plans(&mut self) -> Result<Vec<(&'static str, String)>, StoreError> {
        self.read(|c| {
            let domains = vec!["example.org", "example.net"];
            let users = vec!["hugo", "info", "sales"];
            let probes: [(&'static str, String, Vec<&(dyn ToSql + Sync)>); 7] = [
                (
                    "exact",
                    select(c.open.columns, EXACT),
                    vec![&"example.org", &"hugo"],
                ),
                (
                    "exact_joined",
                    joined_sql(c.open.columns),
                    vec![&"example.org", &"info"],
                ),
                (
                    "exact_many",
                    select(c.open.columns, EXACT_MANY),
                    vec![&domains, &users],
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
