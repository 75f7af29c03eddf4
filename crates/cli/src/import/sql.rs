//! Database sources, read only: the normalized `domains/users/aliases`
//! schema (`sql`) and another mailtable database (`mailtable`).
//!
//! The normalized schema is the one of Postfix-style virtual setups
//! (PostfixAdmin, the ISPmail guides): `domains(domain, active)`,
//! `users(username, domain, password, active)` and
//! `aliases(alias, destination, active)`. Columns are found by name, so a
//! table may have more; `active` and the `domains` table are optional, and
//! `users.username` may hold the whole address. Its semantics are Postfix's:
//! `virtual_alias_maps` is consulted before the mailboxes, so an alias row
//! for a user's own address replaces its delivery unless it lists the
//! address itself (PostfixAdmin writes `u@d -> u@d` for that); a
//! `destination` may be a comma list (PostfixAdmin `alias.goto`), and
//! `@old -> @new` is a domain alias. Because the alias maps come first, a
//! catch-all `@d` also takes the mail of a user of `d` without an alias of
//! its own (Postfix virtual(5); the reason PostfixAdmin writes the
//! self-aliases), and the check after the import holds mailtable to that.
//!
//! `active` is what the Postfix maps filter on (PostfixAdmin
//! `DOCUMENTS/POSTFIX_CONF.txt`: `... AND active = '1'` in the domain,
//! mailbox and alias queries), so an inactive user, and every user of an
//! inactive domain, had its mail refused. By default ([`Inactive::Reject`])
//! they are therefore not imported, and a copy an alias sent to them, which
//! bounced, is not either ([`plan`](super::plan) drops that target and
//! keeps the others); `--inactive disabled` imports them disabled (login
//! refused, mail accepted) for admins who want that. Inactive aliases are
//! not imported: mailtable has no disabled alias and in the source they
//! delivered nothing. PostfixAdmin's vacation targets
//! (`user#domain@VACATION-DOMAIN`) go to its auto-reply transport, not to a
//! mailbox: they are reported and left out, the other targets kept.
//!
//! The layouts of known tools are recognised by their tables and read as
//! their own Postfix maps read them ([`Schema`]): PostfixAdmin's, the
//! ISPmail and HowtoForge guides', iRedMail's ([`iredmail`]), and
//! mailcow's, PostfixAdmin's layout read with mailcow's maps ([`mailcow`]).
//!
//! A `sqlite://` URL or a path is read with rusqlite, a `postgresql://`
//! URL through mailtable's own PostgreSQL client in a read-only session
//! ([`PostgresStore::read_rows`]: the URL means what it means for
//! `database`). The normalized tables are not a `Store`, so they are read
//! here, behind the small [`Tables`] trait.

use super::mysqldump::{parse_dump, Cell, Database, Dump};
use super::{At, Finding, Inactive, Login, LoginName, Origin, Parsed, Route, RouteKey, Target};
use crate::error::CliError;
use mailtable_core::store::postgres::PostgresStore;
use mailtable_core::store::{self, Access, DatabaseUrl, OpenOptions, SchemaState};
use mailtable_core::{Address, AddressPattern, Domain, PasswordHash};
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::time::Duration;

mod iredmail;
mod mailcow;

/// A row: its id (rowid, or position for PostgreSQL) and its cells.
type TableRow = (i64, Vec<Cell>);

/// Read access to the tables of a source database.
trait Tables {
    /// Lower-cased column names of `table`; empty when it does not exist.
    fn columns(&mut self, table: &str) -> Result<Vec<String>, CliError>;
    /// Every row of `table`, in insertion order, with these columns (`None`
    /// = a column the table lacks: NULL).
    fn rows(&mut self, table: &str, cols: &[Option<&str>]) -> Result<Vec<TableRow>, CliError>;
    /// The names of the tables and views, lower-cased.
    fn tables(&mut self) -> Result<Vec<String>, CliError>;
}

/// PostfixAdmin's tables under its `database_prefix` (`config.inc.php`,
/// `$CONF['database_prefix']`: `pfa_mailbox`, `pfa_alias`, ...), read
/// under their plain names, so that every rule of [`read_postfixadmin`]
/// (which names its tables) holds for them as it is.
struct Prefixed<'a> {
    db: &'a mut dyn Tables,
    prefix: String,
}

impl Tables for Prefixed<'_> {
    fn columns(&mut self, table: &str) -> Result<Vec<String>, CliError> {
        self.db.columns(&format!("{}{table}", self.prefix))
    }

    fn rows(&mut self, table: &str, cols: &[Option<&str>]) -> Result<Vec<TableRow>, CliError> {
        self.db.rows(&format!("{}{table}", self.prefix), cols)
    }

    fn tables(&mut self) -> Result<Vec<String>, CliError> {
        let all = self.db.tables()?;
        Ok(all
            .iter()
            .filter_map(|t| t.strip_prefix(self.prefix.as_str()).map(String::from))
            .collect())
    }
}

/// A SQLite source's error: a lock its writer held past
/// [`SOURCE_LOCK_WAIT`] may pass by itself (exit 75, as for a PostgreSQL
/// server that is down); anything else needs the admin (exit 2).
fn sqlite_error(e: rusqlite::Error) -> CliError {
    use rusqlite::ErrorCode as C;
    match e.sqlite_error_code() {
        Some(C::DatabaseBusy | C::DatabaseLocked) => {
            mailtable_core::StoreError::Unavailable(format!("locked by its writer ({e})")).into()
        }
        _ => CliError::usage(e.to_string()),
    }
}

impl Tables for Connection {
    fn tables(&mut self) -> Result<Vec<String>, CliError> {
        let mut stmt = self
            .prepare("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")
            .map_err(sqlite_error)?;
        let names = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(sqlite_error)?;
        names
            .map(|n| n.map(|n| n.to_ascii_lowercase()).map_err(sqlite_error))
            .collect()
    }

    fn columns(&mut self, table: &str) -> Result<Vec<String>, CliError> {
        let mut stmt = self
            .prepare("SELECT name FROM pragma_table_info(?1)")
            .map_err(sqlite_error)?;
        let names = stmt
            .query_map([table], |r| r.get::<_, String>(0))
            .map_err(sqlite_error)?;
        names
            .map(|n| n.map(|n| n.to_ascii_lowercase()).map_err(sqlite_error))
            .collect()
    }

    fn rows(&mut self, table: &str, cols: &[Option<&str>]) -> Result<Vec<TableRow>, CliError> {
        let list: Vec<String> = cols
            .iter()
            .map(|c| c.map_or("NULL".to_string(), |c| format!("\"{c}\"")))
            .collect();
        // A view has no rowid: then the row's position names it.
        let with_rowid = format!(
            "SELECT rowid, {} FROM \"{table}\" ORDER BY rowid",
            list.join(", ")
        );
        let (mut stmt, has_id) = match self.prepare(&with_rowid) {
            Ok(s) => (s, true),
            Err(_) => (
                self.prepare(&format!("SELECT 0, {} FROM \"{table}\"", list.join(", ")))
                    .map_err(sqlite_error)?,
                false,
            ),
        };
        let n = cols.len();
        let rows = stmt
            .query_map([], |r| {
                let mut v = Vec::with_capacity(n);
                for i in 0..n {
                    v.push(match r.get::<_, Value>(i + 1)? {
                        Value::Null => None,
                        Value::Integer(i) => Some(i.to_string()),
                        Value::Real(f) => Some(f.to_string()),
                        Value::Text(t) => Some(t),
                        Value::Blob(b) => Some(String::from_utf8_lossy(&b).into_owned()),
                    });
                }
                Ok((r.get::<_, i64>(0)?, v))
            })
            .map_err(sqlite_error)?;
        let rows: Vec<TableRow> = rows.collect::<Result<_, _>>().map_err(sqlite_error)?;
        Ok(if has_id {
            rows
        } else {
            rows.into_iter()
                .enumerate()
                .map(|(i, (_, v))| (i as i64 + 1, v))
                .collect()
        })
    }
}

/// How long a source's lock is waited for (SQLite's busy timeout; on
/// PostgreSQL the connect timeout and the lock waits).
const SOURCE_LOCK_WAIT: Duration = Duration::from_secs(10);

/// A PostgreSQL source, read through mailtable's own PostgreSQL client
/// ([`PostgresStore::read_rows`]) in a read-only session: the URL means
/// what it means for `database` (`sslmode`, `sslrootcert`, the password
/// file, the socket directory), and each table is read under the
/// whole-table bound. Cells are read as `::text`, so booleans arrive as
/// `t`/`f`.
struct Postgres {
    store: PostgresStore,
}

impl Postgres {
    fn connect(url: &str) -> Result<Postgres, CliError> {
        let opts = OpenOptions {
            access: Access::ReadOnly,
            timeout: SOURCE_LOCK_WAIT,
        };
        let store = PostgresStore::open(url, &opts)?;
        Ok(Postgres { store })
    }

    fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, CliError> {
        Ok(self.store.read_rows(sql, params)?)
    }
}

/// The `information_schema` rows of the table an unqualified name reads
/// (`FROM "alias"` below): the first schema on the search_path that holds
/// one. `current_schema()` is the first that exists, which for a role with
/// a schema of its own (the default `"$user", public`) is that schema,
/// while the tables are in `public`: the source then looked empty.
const VISIBLE: &str = "to_regclass(quote_ident(table_schema) || '.' || quote_ident(table_name)) \
     = to_regclass(quote_ident(table_name))";

impl Tables for Postgres {
    fn tables(&mut self) -> Result<Vec<String>, CliError> {
        let rows = self.query(
            &format!("SELECT table_name::text FROM information_schema.tables WHERE {VISIBLE}"),
            &[],
        )?;
        Ok(rows
            .iter()
            .map(|r| r.get::<_, String>(0).to_ascii_lowercase())
            .collect())
    }

    fn columns(&mut self, table: &str) -> Result<Vec<String>, CliError> {
        let rows = self.query(
            &format!(
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_name = $1 AND {VISIBLE} ORDER BY ordinal_position"
            ),
            &[&table],
        )?;
        Ok(rows
            .iter()
            .map(|r| r.get::<_, String>(0).to_ascii_lowercase())
            .collect())
    }

    fn rows(&mut self, table: &str, cols: &[Option<&str>]) -> Result<Vec<TableRow>, CliError> {
        let list: Vec<String> = cols
            .iter()
            .map(|c| c.map_or("NULL::text".to_string(), |c| format!("\"{c}\"::text")))
            .collect();
        // No rowid: ctid order is insertion order for rows never updated,
        // and the position in it names the row. A view has no ctid: then
        // the order is the view's own. Asked, not tried: a failed read
        // costs the connection, and a slow one would run twice.
        let kind = self.query(
            &format!(
                "SELECT table_type::text FROM information_schema.tables \
                 WHERE table_name = $1 AND {VISIBLE}"
            ),
            &[&table],
        )?;
        let is_view = kind
            .first()
            .is_some_and(|r| r.get::<_, String>(0) == "VIEW");
        let mut sql = format!("SELECT {} FROM \"{table}\"", list.join(", "));
        if !is_view {
            sql.push_str(" ORDER BY ctid");
        }
        let rows = self.query(&sql, &[])?;
        Ok(rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let cells = (0..cols.len()).map(|j| r.get::<_, Cell>(j)).collect();
                (i as i64 + 1, cells)
            })
            .collect())
    }
}

/// SQL `active` values: integers, booleans written as text, NULL (off: the
/// sources' own queries, `WHERE active = 1` or `= '1'`, never select it;
/// a table without the column has every row on, see [`select`]), and a
/// `BIT(1)` column's raw byte, which MySQL and MariaDB dump as a quoted
/// `'\x01'` or `'\0'` (or `0x01` with `--hex-blob`): control bytes only,
/// true when one is not zero (`SELECT ... WHERE active = '1'` finds `b'1'`
/// there too).
fn truthy(v: &Cell) -> bool {
    if let Some(t) = v.as_deref() {
        if !t.is_empty() && t.chars().all(|c| c < ' ') {
            return t.chars().any(|c| c != '\0');
        }
    }
    match v.as_deref().map(|t| t.trim().to_ascii_lowercase()) {
        None => false,
        Some(t) => {
            matches!(t.as_str(), "t" | "true" | "y" | "yes" | "on")
                || t.parse::<f64>().is_ok_and(|n| n != 0.0)
        }
    }
}

fn text(v: &Cell) -> Option<String> {
    v.clone()
}

/// The on/off columns whose absence means on: every row of a table
/// without one is selected by the source's queries (`active = 1`,
/// iRedMail's `enabledeliver = 1`), while a NULL in one is not. `""`
/// stands for a switch a layout does not have.
const SWITCHES: &[&str] = &["active", "enabledeliver", ""];

/// The rows of `table` with the `required` and `optional` columns, in that
/// order; `Ok(None)` when the table does not exist; an error naming the
/// first missing required column. An absent [`SWITCHES`] column reads as
/// on (`1`), any other absent column as NULL.
fn select(
    db: &mut dyn Tables,
    source: &str,
    table: &str,
    required: &[&str],
    optional: &[&str],
) -> Result<Option<Vec<TableRow>>, CliError> {
    let sql_err = |e: CliError| e.context(format_args!("cannot read {source}"));
    let have = db.columns(table).map_err(sql_err)?;
    if have.is_empty() {
        return Ok(None);
    }
    let mut cols = Vec::new();
    for c in required {
        if !have.iter().any(|h| h == c) {
            return Err(CliError::usage(format!(
                "{source}: table {table} has no column {c} (expected {})",
                required.join(", ")
            )));
        }
        cols.push(Some(*c));
    }
    for c in optional {
        cols.push(have.iter().any(|h| h == c).then_some(*c));
    }
    let mut rows = db.rows(table, &cols).map_err(sql_err)?;
    // A table without a switch column has every row on; a NULL in one it
    // has is off ([`truthy`]).
    let absent_switches: Vec<usize> = optional
        .iter()
        .enumerate()
        .filter(|(i, c)| SWITCHES.contains(*c) && cols[required.len() + i].is_none())
        .map(|(i, _)| required.len() + i)
        .collect();
    for (_, cells) in &mut rows {
        for &i in &absent_switches {
            cells[i] = Some("1".into());
        }
    }
    Ok(Some(rows))
}

impl Tables for Dump {
    fn tables(&mut self) -> Result<Vec<String>, CliError> {
        Ok(self.tables.keys().cloned().collect())
    }

    fn columns(&mut self, table: &str) -> Result<Vec<String>, CliError> {
        Ok(self
            .tables
            .get(&table.to_lowercase())
            .map(|t| t.columns.clone())
            .unwrap_or_default())
    }

    fn rows(&mut self, table: &str, cols: &[Option<&str>]) -> Result<Vec<TableRow>, CliError> {
        let Some(t) = self.tables.get(&table.to_lowercase()) else {
            return Ok(Vec::new());
        };
        let at: Vec<Option<usize>> = cols
            .iter()
            .map(|c| c.and_then(|c| t.columns.iter().position(|x| x == c)))
            .collect();
        // The row's place in the dump names it, as a view's position does.
        Ok(t.rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let cells = at.iter().map(|j| j.and_then(|j| r[j].clone())).collect();
                (i as i64 + 1, cells)
            })
            .collect())
    }
}

/// `sql-dump`: the tables of `sql` in a MySQL/MariaDB dump file, read as
/// `mysqldump` writes it ([`super::mysqldump`]).
pub fn read_dump(source: &str, inactive: Inactive) -> Result<Parsed, CliError> {
    if let Some(e) = mysql_url(source) {
        return Err(e);
    }
    if source.contains("://") {
        return Err(CliError::usage(format!(
            "{}: sql-dump reads a dump file; a database URL is read with --from sql",
            store::url::redact(source)
        )));
    }
    let bytes =
        std::fs::read(source).map_err(|e| CliError::usage(format!("cannot read {source}: {e}")))?;
    super::refuse_compressed(source, &bytes)?;
    if bytes.starts_with(SQLITE_MAGIC) {
        return Err(CliError::usage(format!(
            "{source} is a SQLite database, not a dump: read it with --from sql (or --from \
             mailtable for another mailtable database)"
        )));
    }
    if super::makemap::berkeley_db(&bytes).is_some() {
        return Err(CliError::usage(format!(
            "{source} is a Berkeley DB map (makemap), not a dump: give it with the format of \
             the smtpd table it holds (smtpd-aliases, smtpd-credentials, smtpd-userinfo, \
             smtpd-domains)"
        )));
    }
    // A hash or an address read in another character set would come over
    // changed: refused, with the option that writes UTF-8.
    let text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes()[..at].iter().filter(|b| **b == b'\n').count();
        CliError::usage(format!(
            "{source}: line {line}: not UTF-8: dump it again with \
             mysqldump --default-character-set=utf8mb4"
        ))
    })?;
    let databases = parse_dump(&text).map_err(|e| CliError::usage(format!("{source}: {e}")))?;
    let Some((mut dump, picked)) = pick_database(databases, source)? else {
        return Ok(Parsed::default());
    };
    let mut parsed = read_tables(&mut dump, source, inactive)?;
    parsed.notes.extend(picked);
    Ok(parsed)
}

/// The database of a dump to read: its only one, or of several (a dump
/// made with `--databases` or `--all-databases`, where PostfixAdmin's
/// sits beside `mysql`, Roundcube's `users` and others) the only one with
/// mail tables, said in a note. Taking every table of every database
/// together would read another application's `users` as mail users, or
/// refuse PostfixAdmin's tables because of it. Two databases with mail
/// tables are refused: which one the admin means, no rule can tell.
fn pick_database(
    mut databases: Vec<Database>,
    source: &str,
) -> Result<Option<(Dump, Option<Finding>)>, CliError> {
    if databases.len() <= 1 {
        return Ok(databases.pop().map(|d| (d.dump, None)));
    }
    let named = |d: &Database| match &d.name {
        Some(n) => format!("`{n}`"),
        None => "the tables before the first USE".to_string(),
    };
    let all: Vec<String> = databases.iter().map(named).collect();
    let mut with_mail = Vec::new();
    for (i, d) in databases.iter_mut().enumerate() {
        // Several layouts in one are mail tables too (refused when read,
        // naming them).
        if !schemas(&mut d.dump, source)?.is_empty() {
            with_mail.push(i);
        }
    }
    match with_mail[..] {
        [i] => {
            let d = databases.swap_remove(i);
            let note = Finding::new(
                Origin::whole(source),
                format!(
                    "the dump holds {} databases ({}): read {}, the only one with mail tables",
                    all.len(),
                    all.join(", "),
                    named(&d)
                ),
            );
            Ok(Some((d.dump, Some(note))))
        }
        [] => Err(CliError::usage(format!(
            "{source}: none of its {} databases ({}) has PostfixAdmin's tables (mailbox with \
             username and password, alias with address and goto) or the normalized ones \
             (users, aliases)",
            all.len(),
            all.join(", ")
        ))),
        _ => {
            let mail: Vec<String> = with_mail.iter().map(|i| named(&databases[*i])).collect();
            Err(CliError::usage(format!(
                "{source}: the databases {} all have mail tables: dump only the one to import \
                 (mysqldump DATABASE), or cut the others out of the file",
                mail.join(", ")
            )))
        }
    }
}

/// The first bytes of every SQLite database file (sqlite.org/fileformat.html).
const SQLITE_MAGIC: &[u8] = b"SQLite format 3\0";

/// A MySQL or MariaDB URL: there is no MySQL client here, its databases
/// come over as their dump. The refusal gives the command, with the
/// database the URL names, and never the URL's password.
fn mysql_url(source: &str) -> Option<CliError> {
    let (scheme, rest) = source.split_once("://")?;
    if !matches!(
        scheme.to_ascii_lowercase().as_str(),
        "mysql" | "mariadb" | "mysqlx"
    ) {
        return None;
    }
    let database = rest
        .split_once('/')
        .map(|(_, d)| d.split(['?', '#']).next().unwrap_or_default())
        .filter(|d| !d.is_empty())
        .unwrap_or("DATABASE");
    Some(CliError::usage(format!(
        "{}: MySQL and MariaDB databases are read from their dump: `mysqldump \
         --default-character-set=utf8mb4 {database} > {database}.sql` on their host, then \
         `mailtable import --from sql-dump {database}.sql`",
        store::url::redact(source)
    )))
}

/// `sql`: the normalized schema, from a SQLite file or a PostgreSQL URL.
pub fn read_normalized(source: &str, inactive: Inactive) -> Result<Parsed, CliError> {
    if let Some(e) = mysql_url(source) {
        return Err(e);
    }
    match source.parse::<DatabaseUrl>().map_err(CliError::usage)? {
        DatabaseUrl::Sqlite(path) => {
            if !path.exists() {
                return Err(CliError::usage(format!(
                    "cannot read {source}: no such file"
                )));
            }
            // A dump given here instead of to sql-dump: said as such, not
            // as SQLite's "file is not a database".
            let head = std::fs::read(&path)
                .map(|b| b.into_iter().take(16).collect::<Vec<u8>>())
                .unwrap_or_default();
            super::refuse_compressed(source, &head)?;
            if !head.starts_with(SQLITE_MAGIC)
                && ["--", "/*", "CREATE", "DROP", "SET"]
                    .iter()
                    .any(|w| head.starts_with(w.as_bytes()))
            {
                return Err(CliError::usage(format!(
                    "{source} is SQL text (a dump), not a SQLite database: read it with \
                     --from sql-dump"
                )));
            }
            let mut conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
                .map_err(|e| sqlite_error(e).context(format_args!("cannot open {source}")))?;
            // A source still in use (its application writing) is read once
            // its writer lets go, not refused at the first lock.
            conn.busy_timeout(SOURCE_LOCK_WAIT)
                .map_err(|e| sqlite_error(e).context(format_args!("cannot open {source}")))?;
            read_tables(&mut conn, &path.display().to_string(), inactive)
        }
        DatabaseUrl::Postgres(url) => {
            let shown = store::url::redact(&url);
            let mut pg = Postgres::connect(&url)
                .map_err(|e| e.context(format_args!("cannot read {shown}")))?;
            read_tables(&mut pg, &shown, inactive)
        }
    }
}

fn read_tables(db: &mut dyn Tables, source: &str, inactive: Inactive) -> Result<Parsed, CliError> {
    let found = schemas(db, source)?;
    match found.as_slice() {
        [] => {
            return Err(CliError::usage(format!(
                "{source} has neither the normalized tables (users with username and password, \
                 aliases) nor PostfixAdmin's (mailbox with username and password, alias with \
                 address and goto, under their plain names or one database_prefix) nor \
                 iRedMail's (mailbox with username and password, forwardings with address and \
                 forwarding) nor those of the ISPmail or HowtoForge guides (virtual_users or \
                 users with email and password)"
            )))
        }
        [Schema::Normalized] => {}
        [Schema::PostfixAdmin(prefix)] if prefix.is_empty() => {
            return read_postfixadmin(db, source, inactive)
        }
        [Schema::PostfixAdmin(prefix)] => {
            let mut prefixed = Prefixed {
                db,
                prefix: prefix.clone(),
            };
            let mut p = read_postfixadmin(&mut prefixed, source, inactive)?;
            let read: Vec<String> = ["domain", "mailbox", "alias", "alias_domain"]
                .iter()
                .filter(|t| prefixed.columns(t).is_ok_and(|c| !c.is_empty()))
                .map(|t| format!("{prefix}{t}"))
                .collect();
            p.notes.push(Finding::new(
                Origin::whole(source),
                format!(
                    "PostfixAdmin's tables with the prefix {prefix:?} (its database_prefix): \
                     read {}; the report names their rows without the prefix",
                    read.join(", ")
                ),
            ));
            return Ok(p);
        }
        [Schema::Guide(guide)] => return read_guide(db, source, inactive, guide),
        [Schema::IRedMail] => return iredmail::read_iredmail(db, source, inactive),
        several => {
            let names: Vec<String> = several.iter().map(ToString::to_string).collect();
            return Err(CliError::usage(format!(
                "{source} holds the tables of several setups ({}): which one delivered the \
                 mail, no rule can tell; copy the one to import into a database of its own \
                 (or dump only its tables)",
                names.join("; ")
            )));
        }
    }
    let mut p = Parsed {
        defines_routes: true,
        aliases_first: true,
        ..Parsed::default()
    };
    let mut cols = |t: &str| {
        db.columns(t)
            .map_err(|e| e.context(format_args!("cannot read {source}")))
    };
    if cols("users")?.iter().any(|c| c == "mailbox") && cols("aliases")?.is_empty() {
        return Err(CliError::usage(format!(
            "{source} looks like a mailtable (single-table) database: use --from mailtable"
        )));
    }
    let Some(users) = select(
        db,
        source,
        "users",
        &["username", "password"],
        &["domain", "active"],
    )?
    else {
        return Err(CliError::usage(format!("{source} has no users table")));
    };
    let aliases = select(
        db,
        source,
        "aliases",
        &["alias", "destination"],
        &["active"],
    )?
    .unwrap_or_default();
    let domains = select(db, source, "domains", &["domain"], &["active"])?.unwrap_or_default();

    let domain_active = Domains {
        active: read_domains(source, "domains", &domains, inactive, &mut p),
        only_listed: false,
    };
    for (id, v) in &users {
        read_user(
            &Origin::row(source, "users", *id),
            v,
            None,
            &domain_active,
            inactive,
            &mut p,
        );
    }
    read_aliases(source, "aliases", &aliases, &domain_active, &mut p);
    Ok(p)
}

/// The mailboxes of `table`, whose column `user` holds the whole address,
/// with `password` and the optional `domain`, `active` and `quota` (bytes,
/// as PostfixAdmin and the ISPmail guide keep it).
fn read_mailboxes(
    db: &mut dyn Tables,
    source: &str,
    (table, user): (&str, &str),
    domain_active: &Domains,
    inactive: Inactive,
    p: &mut Parsed,
) -> Result<(), CliError> {
    let rows = select(
        db,
        source,
        table,
        &[user, "password"],
        &["domain", "active", "quota"],
    )?
    .unwrap_or_default();
    for (id, v) in &rows {
        read_user(
            &Origin::row(source, table, *id),
            v,
            quota_of_bytes(&v[4]),
            domain_active,
            inactive,
            p,
        );
    }
    Ok(())
}

/// The tables of a how-to guide's Postfix + Dovecot setup, which many
/// hosts were built from word for word: a table of domains, one of
/// mailboxes keyed by the whole address, one of aliases (`source ->
/// destination`, `@d` the catch-all), read by Postfix as
/// `virtual_mailbox_domains`, `virtual_mailbox_maps` and
/// `virtual_alias_maps`, the last followed by the guide's `email2email`
/// map (`SELECT email FROM <users> WHERE email='%s'`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Guide {
    /// How the report names it.
    name: &'static str,
    /// The domains table and its name column.
    domains: (&'static str, &'static str),
    /// The mailboxes table and its address column (with `password`, and
    /// an optional `quota` in bytes).
    users: (&'static str, &'static str),
    /// The aliases table and its source and destination columns.
    aliases: (&'static str, &'static str, &'static str),
}

/// The ISPmail guide (workaround.org) and the many tutorials that copied
/// it: `virtual_domains(id, name)`, `virtual_users(id, domain_id, email,
/// password, quota)`, `virtual_aliases(id, domain_id, source,
/// destination)`, one row per target.
const ISPMAIL: Guide = Guide {
    name: "the ISPmail guide's tables (virtual_domains, virtual_users, virtual_aliases)",
    domains: ("virtual_domains", "name"),
    users: ("virtual_users", "email"),
    aliases: ("virtual_aliases", "source", "destination"),
};

/// The HowtoForge "virtual users and domains with Postfix" guides:
/// `domains(domain)`, `users(email, password, quota)` (quota in bytes, the
/// hash from MySQL's ENCRYPT()), `forwardings(source, destination)`.
const HOWTOFORGE: Guide = Guide {
    name: "the HowtoForge guide's tables (domains, users, forwardings)",
    domains: ("domains", "domain"),
    users: ("users", "email"),
    aliases: ("forwardings", "source", "destination"),
};

/// A guide's tables ([`Guide`]), as its Postfix maps and Dovecot queries
/// read them: the domains are those Postfix accepts, the mailboxes its
/// mailbox map and Dovecot's users (the address whole, the hash as
/// written, the quota from bytes), the aliases Postfix's with its
/// semantics (as for PostfixAdmin: an alias row of a mailbox's own
/// address routes its mail, listing the address keeps a copy).
///
/// `email2email`, after the aliases in `virtual_alias_maps`, makes every
/// mailbox an alias of itself, so that a catch-all takes only the mail of
/// addresses that are no mailbox (without it Postfix would give a
/// catch-all the mail of every user). It is read as that: a mailbox
/// without an alias row of its own address gets the route to itself; one
/// with such a row is routed by the row, which Postfix asks first. An
/// `active` column, which the guides have not but some copies add, is
/// honoured as in the normalized schema.
fn read_guide(
    db: &mut dyn Tables,
    source: &str,
    inactive: Inactive,
    guide: &Guide,
) -> Result<Parsed, CliError> {
    let mut p = Parsed {
        defines_routes: true,
        aliases_first: true,
        ..Parsed::default()
    };
    let domains = select(db, source, guide.domains.0, &[guide.domains.1], &["active"])?;
    let only_listed = domains.is_some();
    let domains = domains.unwrap_or_default();
    let domain_active = Domains {
        active: read_domains(source, guide.domains.0, &domains, inactive, &mut p),
        only_listed,
    };
    read_mailboxes(db, source, guide.users, &domain_active, inactive, &mut p)?;
    let (table, from, to) = guide.aliases;
    let aliases = select(db, source, table, &[from, to], &["active"])?.unwrap_or_default();
    read_aliases(source, table, &aliases, &domain_active, &mut p);
    // email2email: each mailbox without a route of its own address.
    let routed: BTreeSet<Address> = p
        .routes
        .iter()
        .filter_map(|r| match &r.key {
            RouteKey::Exact(a) => Some(a.clone()),
            _ => None,
        })
        .collect();
    let own: Vec<Route> = p
        .logins
        .iter()
        .filter_map(|l| match &l.name {
            LoginName::Address(a) if !routed.contains(a) => Some(Route {
                key: RouteKey::Exact(a.clone()),
                targets: vec![Target::Address(a.clone())],
                origin: l.origin.clone(),
            }),
            _ => None,
        })
        .collect();
    p.routes.extend(own);
    p.notes.push(Finding::new(
        Origin::whole(source),
        format!(
            "{}, read with the guide's email2email map: a mailbox gets its own mail before a \
             catch-all",
            guide.name
        ),
    ));
    Ok(p)
}

/// A layout of mail tables a database can hold.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Schema {
    /// `users` with `username` and `password`, `aliases`, `domains`
    /// (a mailtable database has such a `users` too, and is told apart
    /// when read).
    Normalized,
    /// PostfixAdmin's `mailbox` with `username` and `password` and `alias`
    /// with `address` and `goto`, under their plain names (`""`) or a
    /// `database_prefix`.
    PostfixAdmin(String),
    /// A how-to guide's tables ([`ISPMAIL`], [`HOWTOFORGE`]): its users
    /// table with the address column and `password`.
    Guide(&'static Guide),
    /// iRedMail's `mailbox` with `username` and `password` and
    /// `forwardings` with `address` and `forwarding` ([`iredmail`]).
    IRedMail,
}

impl fmt::Display for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schema::Normalized => f.write_str("the normalized users table"),
            Schema::PostfixAdmin(p) if p.is_empty() => f.write_str("PostfixAdmin's tables"),
            Schema::PostfixAdmin(p) => write!(f, "PostfixAdmin's tables with the prefix {p}"),
            Schema::Guide(g) => f.write_str(g.name),
            Schema::IRedMail => f.write_str("iRedMail's tables"),
        }
    }
}

/// Every layout of mail tables `db` holds. A table of another
/// application beside them (Roundcube's `users`, which has no
/// `password`) is none.
fn schemas(db: &mut dyn Tables, source: &str) -> Result<Vec<Schema>, CliError> {
    let context = |e: CliError| e.context(format_args!("cannot read {source}"));
    let has = |db: &mut dyn Tables, table: &str, cols: &[&str]| -> Result<bool, CliError> {
        let have = db.columns(table).map_err(context)?;
        Ok(!have.is_empty() && cols.iter().all(|c| have.iter().any(|h| h == c)))
    };
    let mut found = Vec::new();
    if has(db, "users", &["username", "password"])? {
        found.push(Schema::Normalized);
    }
    let mut prefixes: Vec<String> = db
        .tables()
        .map_err(context)?
        .iter()
        .filter_map(|t| t.strip_suffix("mailbox").map(String::from))
        .collect();
    prefixes.sort();
    prefixes.dedup();
    for prefix in prefixes {
        let mut prefixed = Prefixed {
            db: &mut *db,
            prefix: prefix.clone(),
        };
        if has(&mut prefixed, "mailbox", &["username", "password"])?
            && has(&mut prefixed, "alias", &["address", "goto"])?
        {
            found.push(Schema::PostfixAdmin(prefix));
        }
    }
    if has(db, "mailbox", &["username", "password"])?
        && has(db, "forwardings", &["address", "forwarding"])?
    {
        found.push(Schema::IRedMail);
    }
    for guide in [&ISPMAIL, &HOWTOFORGE] {
        if has(db, guide.users.0, &[guide.users.1, "password"])? {
            found.push(Schema::Guide(guide));
        }
    }
    Ok(found)
}

/// PostfixAdmin's own tables, as its Postfix and Dovecot queries read them
/// (PostfixAdmin `DOCUMENTS/POSTFIX_CONF.txt` and `DOVECOT.txt`):
///
/// - `domain(domain, backupmx, active)`: a domain Postfix accepts mail for
///   unless it is a backup MX (relayed, not delivered) or inactive; the
///   pseudo-domain `ALL` is PostfixAdmin's "every domain" for superadmins;
/// - `mailbox(username, password, domain, quota, active)`: `username` is
///   the whole address, `quota` bytes (0: unlimited);
/// - `alias(address, goto, active)`: `goto` a comma list, `u@d -> u@d`
///   the mailbox itself, `@d` the catch-all;
/// - `alias_domain(alias_domain, target_domain, active)`: `u@alias` is
///   looked up as `u@target`, mailboxes and aliases alike, which is
///   mailtable's domain alias `%@alias -> %@target`.
///
/// `active` is what the queries filter on (`active = '1'`, or `true` on
/// PostgreSQL); the rows then mean what the normalized schema's mean.
fn read_postfixadmin(
    db: &mut dyn Tables,
    source: &str,
    inactive: Inactive,
) -> Result<Parsed, CliError> {
    let (mut p, domain_active) = postfix_maps_start(db, source, inactive)?;
    read_mailboxes(
        db,
        source,
        ("mailbox", "username"),
        &domain_active,
        inactive,
        &mut p,
    )?;
    postfixadmin_login_switches(db, source, &mut p)?;
    let aliases =
        select(db, source, "alias", &["address", "goto"], &["active"])?.unwrap_or_default();
    read_aliases(source, "alias", &aliases, &domain_active, &mut p);
    if mailcow::is_mailcow(db, source)? {
        read_alias_domains(db, source, &domain_active, mailcow::MAILCOW_MAPS, &mut p)?;
        mailcow::mailcow_maps(db, source, &domain_active, &mut p)?;
        return Ok(p);
    }
    read_alias_domains(db, source, &domain_active, POSTFIXADMIN_MAPS, &mut p)?;
    alias_domain_chains(&mut p, POSTFIXADMIN_MAPS);
    alias_domain_catch_alls(&mut p, POSTFIXADMIN_MAPS);
    Ok(p)
}

/// The switches of a PostfixAdmin-layout mailbox beyond `active`, read
/// after its login:
///
/// - `active = 2` is mailcow's "disallow login" (its Postfix maps deliver
///   to `active = '1' OR active = '2'`, its Dovecot passdb asks `active =
///   '1'`): the mailbox comes over disabled, receiving mail, as before;
/// - mailcow's `attributes` switch logins per service: all off, the
///   mailbox comes over disabled; some off, the report says which;
/// - `smtp_active = 0` (PostfixAdmin 4, `$CONF['smtp_active_flag']`, with
///   the Dovecot queries of `DOCUMENTS/DOVECOT.txt`) refused SMTP AUTH
///   only: mailtable has one login switch, so the report says so.
fn postfixadmin_login_switches(
    db: &mut dyn Tables,
    source: &str,
    p: &mut Parsed,
) -> Result<(), CliError> {
    let Some(rows) = select(
        db,
        source,
        "mailbox",
        &["username"],
        &["active", "smtp_active", "attributes"],
    )?
    else {
        return Ok(());
    };
    // The logins by their mailbox row; a lookup per row, not a scan.
    let by_row: BTreeMap<i64, usize> = p
        .logins
        .iter()
        .enumerate()
        .filter_map(|(i, l)| match &l.origin.at {
            At::Row { table, id } if table == "mailbox" && *l.origin.source == *source => {
                Some((*id, i))
            }
            _ => None,
        })
        .collect();
    for (id, v) in rows {
        let Some(login) = by_row.get(&id).and_then(|i| p.logins.get_mut(*i)) else {
            continue;
        };
        if !login.active {
            continue;
        }
        let user = login.name.to_string();
        let refused = mailcow::refused_services(&v[3]);
        let why = if text(&v[1]).is_some_and(|a| a.trim() == "2") {
            login.active = false;
            "active = 2: mailcow's \"disallow login\" (its Postfix maps deliver to active 1 and 2, \
             its Dovecot passdb logs in active 1 only): imported as a disabled mailbox (logins \
             refused, mail accepted, as in the source)"
                .to_string()
        } else if refused.len() == mailcow::LOGIN_SWITCHES.len() {
            login.active = false;
            format!(
                "attributes {}: mailcow refused every login of this mailbox: imported as a \
                 disabled mailbox (logins refused, mail accepted, as in the source)",
                refused.join(", ")
            )
        } else if !refused.is_empty() {
            format!(
                "attributes {}: mailcow refused these logins of this mailbox and allowed the \
                 others; mailtable has one login switch for every service, so it is imported \
                 with logins allowed (`mailtable user disable {user}` refuses them all)",
                refused.join(", ")
            )
        } else if v[2].is_some() && !truthy(&v[2]) {
            format!(
                "smtp_active = 0: where Dovecot's queries read it (PostfixAdmin's \
                 smtp_active_flag), SMTP AUTH was refused and other logins allowed; mailtable has \
                 one login switch for every service, so it is imported with logins allowed \
                 (`mailtable user disable {user}` refuses them all)"
            )
        } else {
            continue;
        };
        p.notes.push(Finding::about(
            Origin::row(source, "mailbox", id),
            &user,
            why,
        ));
    }
    Ok(())
}

/// The start of reading a tool's tables as its Postfix maps read them:
/// the alias maps come before the mailboxes, and `domain` says which
/// domains are served ([`read_domain_table`]).
fn postfix_maps_start(
    db: &mut dyn Tables,
    source: &str,
    inactive: Inactive,
) -> Result<(Parsed, Domains), CliError> {
    let mut p = Parsed {
        defines_routes: true,
        aliases_first: true,
        ..Parsed::default()
    };
    let domain_active = read_domain_table(db, source, inactive, &mut p)?;
    Ok((p, domain_active))
}

/// The `domain(domain, backupmx, active)` table PostfixAdmin and iRedMail
/// share: a domain Postfix accepts mail for unless it is a backup MX
/// (relayed, not delivered) or inactive; the pseudo-domain `ALL` is
/// PostfixAdmin's "every domain" for superadmins (iRedMail's
/// `domain_admins` has it too, never `domain`). Without the table (a
/// partial dump) every domain counts as one.
fn read_domain_table(
    db: &mut dyn Tables,
    source: &str,
    inactive: Inactive,
    p: &mut Parsed,
) -> Result<Domains, CliError> {
    let domains = select(db, source, "domain", &["domain"], &["active", "backupmx"])?;
    let has_domain_table = domains.is_some();
    let domains = domains.unwrap_or_default();
    let mut kept = Vec::new();
    for (id, v) in domains {
        let name = text(&v[0]).unwrap_or_default();
        if name.trim().eq_ignore_ascii_case("ALL") {
            continue;
        }
        if v[2].is_some() && truthy(&v[2]) {
            p.skipped.push(Finding::about(
                Origin::row(source, "domain", id),
                name.trim(),
                "backup MX domain: Postfix relays its mail to the primary, it is not delivered here",
            ));
            continue;
        }
        kept.push((id, v));
    }
    Ok(Domains {
        active: read_domains(source, "domain", &kept, inactive, p),
        only_listed: has_domain_table,
    })
}

/// The `alias_domain(alias_domain, target_domain, active)` table
/// PostfixAdmin and iRedMail share, as the domain aliases `@alias ->
/// @target`: `u@alias` is looked up as `u@target` (PostfixAdmin's
/// alias-domain maps; iRedMail's `domain_alias_maps.cf` and
/// `domain_alias_catchall_maps.cf`), where both are domains the source
/// serves.
fn read_alias_domains(
    db: &mut dyn Tables,
    source: &str,
    domain_active: &Domains,
    maps: &AliasMaps,
    p: &mut Parsed,
) -> Result<(), CliError> {
    // `alias.example -> example.org` reads as the alias row
    // `@alias.example -> @example.org`.
    let alias_domains = select(
        db,
        source,
        "alias_domain",
        &["alias_domain", "target_domain"],
        &["active"],
    )?
    .unwrap_or_default();
    // Postfix accepts mail only for the domains the domain query lists
    // (a row of `domain`, no backup MX; iRedMail's also lists the alias
    // domains of such a domain): an alias domain that is none of them, or
    // whose target is none, delivered nothing (its lookup finds no address
    // at the target: 550). Imported, it would accept that mail, and relay
    // it where the target is not ours.
    let served = |d: &str| match domain_active.only_listed {
        true => Domain::parse(d.trim())
            .ok()
            .and_then(|d| domain_active.active.get(&d).copied()),
        false => Some(true),
    };
    let as_aliases: Vec<TableRow> = alias_domains
        .into_iter()
        .filter(|(id, v)| {
            let name = |c: &Cell| c.as_deref().unwrap_or_default().trim().to_ascii_lowercase();
            let (alias, target) = (name(&v[0]), name(&v[1]));
            // An inactive row is reported as such by read_aliases.
            if v[2].is_some() && !truthy(&v[2]) {
                return true;
            }
            let alias_served = match maps.alias_domain_needs_row {
                true => served(&alias),
                false => Some(true),
            };
            let why = match (alias_served, served(&target)) {
                (None, _) => format!(
                    "{alias} is not a domain of the source (no row in its domain table, or a \
                     backup MX): Postfix refused its mail; not imported"
                ),
                (_, None) => format!(
                    "target {target} is not a domain the source delivers (no row in its domain \
                     table, or a backup MX): Postfix found no address there and refused the \
                     mail; not imported"
                ),
                (Some(_), Some(false)) => {
                    format!("target {target} is inactive: Postfix refused the mail; not imported")
                }
                _ => return true,
            };
            p.skipped.push(Finding::about(
                Origin::row(source, "alias_domain", *id),
                &format!("@{alias}"),
                why,
            ));
            false
        })
        .map(|(id, v)| {
            let at = |c: &Cell| c.as_ref().map(|d| format!("@{}", d.trim()));
            (id, vec![at(&v[0]), at(&v[1]), v[2].clone()])
        })
        .collect();
    // The alias domains accepted without a row of their own are domains
    // of the source for their alias rows (and the report).
    let mut accepted = Domains {
        active: domain_active.active.clone(),
        only_listed: domain_active.only_listed,
    };
    if !maps.alias_domain_needs_row {
        for (id, v) in &as_aliases {
            let alias = v[0].as_deref().and_then(|a| Domain::parse(&a[1..]).ok());
            if let Some(alias) = alias.filter(|a| !accepted.active.contains_key(a)) {
                if truthy(&v[2]) {
                    p.domains.push((
                        alias.clone(),
                        true,
                        Origin::row(source, "alias_domain", *id),
                    ));
                }
                accepted.active.insert(alias, truthy(&v[2]));
            }
        }
    }
    read_aliases(source, "alias_domain", &as_aliases, &accepted, p);
    Ok(())
}

/// The alias domains of `p` as (alias domain, target, row).
fn alias_domains(p: &Parsed) -> Vec<(Domain, Domain, Origin)> {
    p.routes
        .iter()
        .filter(|r| table_of(&r.origin) == Some("alias_domain"))
        .filter_map(|r| match (&r.key, r.targets.as_slice()) {
            (RouteKey::CatchAll(a), [Target::DomainAlias(t)]) => {
                Some((a.clone(), t.clone(), r.origin.clone()))
            }
            _ => None,
        })
        .collect()
}

/// An alias domain whose target is itself an alias domain (`a -> b -> c`).
/// PostfixAdmin's alias-domain maps look `u@a` up among the rows of `b`
/// only: the `alias` and `mailbox` rows whose address is `u@b`, and the
/// `alias` row `@b` (`mysql_virtual_alias_domain_maps.cf`,
/// `..._mailbox_maps.cf`, `..._catchall_maps.cf`, PostfixAdmin
/// `DOCUMENTS/POSTFIX_CONF.txt`), never `b`'s own alias domain. As the
/// domain alias `%@a -> %@b` the chain would go on to `c`, delivering what
/// Postfix refused. So `a` comes over as what it reached: an alias
/// `u@a -> u@b` for each address `b` has of its own that `a` does not
/// (`b` has no catch-all row: its catch-all is the domain alias), with a
/// note; with none, `a` reached nothing and is reported.
fn alias_domain_chains(p: &mut Parsed, maps: &AliasMaps) {
    let aliased = alias_domains(p);
    let is_alias_domain = |d: &Domain| aliased.iter().any(|(a, _, _)| a == d);
    // What each domain has of its own, read before any chain is rewritten
    // (the aliases made for one link are no rows of the domain they sit
    // in): its addresses, and its catch-all row in `alias`.
    let own_addresses = |d: &Domain| -> BTreeSet<Address> {
        let routed = p.routes.iter().filter_map(|r| match &r.key {
            RouteKey::Exact(x) if x.domain() == d => Some(x.clone()),
            _ => None,
        });
        let boxes = p.logins.iter().filter_map(|l| match &l.name {
            LoginName::Address(x) if x.domain() == d => Some(x.clone()),
            _ => None,
        });
        routed.chain(boxes).collect()
    };
    let own_catch_all = |d: &Domain| -> Option<Vec<Target>> {
        p.routes
            .iter()
            .find(|r| {
                table_of(&r.origin) == Some(maps.table)
                    && matches!(&r.key, RouteKey::CatchAll(x) if x == d)
            })
            .map(|r| r.targets.clone())
    };
    let links: Vec<_> = aliased
        .iter()
        .filter(|(_, b, _)| is_alias_domain(b))
        .map(|(a, b, at)| {
            let taken = own_addresses(a);
            let reached: Vec<Address> = own_addresses(b)
                .into_iter()
                .filter_map(|x| Address::from_parts(x.local(), a.as_str()).ok())
                .filter(|x| !taken.contains(x))
                .collect();
            (a.clone(), b.clone(), at.clone(), reached, own_catch_all(b))
        })
        .collect();
    for (a, b, at, reached, catch_all) in links {
        if !take_alias_domain(p, &a, &at) {
            continue;
        }
        let chain = format!(
            "{a} is an alias domain of {b}, itself an alias domain: {} alias-domain maps look \
             only at {b}'s own rows",
            maps.owner
        );
        if reached.is_empty() && catch_all.is_none() {
            p.skipped.push(Finding::about(
                at.clone(),
                &format!("@{a}"),
                format!(
                    "{chain}, and it has none, so mail to {a} was refused; not imported \
                     (point {a} at the last domain of the chain to deliver it)"
                ),
            ));
            continue;
        }
        p.notes.push(Finding::about(
            at.clone(),
            &format!("@{a}"),
            format!(
                "{chain}: imported as {} alias(es) u@{a} -> u@{b}, one per address of {b}{}",
                reached.len(),
                match catch_all {
                    Some(_) => format!(", and {b}'s catch-all as {a}'s (its catch-all map)"),
                    None => String::new(),
                }
            ),
        ));
        for x in reached {
            let target = Address::from_parts(x.local(), b.as_str());
            p.routes.push(Route {
                key: RouteKey::Exact(x),
                targets: target.map(Target::Address).into_iter().collect(),
                origin: at.clone(),
            });
        }
        if let Some(targets) = catch_all {
            // The alias-domain catch-all map answers the full address,
            // before `@a` is asked: a catch-all of a's own never was.
            if let Some(j) = p.routes.iter().position(|r| {
                table_of(&r.origin) == Some(maps.table)
                    && matches!(&r.key, RouteKey::CatchAll(x) if *x == a)
            }) {
                let r = p.routes.remove(j);
                p.skipped.push(Finding::about(
                    r.origin,
                    &format!("@{a}"),
                    format!(
                        "catch-all of {a}: never used, {b}'s catch-all answered every address \
                         of {a} first; not imported"
                    ),
                ));
            }
            p.routes.push(Route {
                key: RouteKey::CatchAll(a.clone()),
                targets,
                origin: at.clone(),
            });
        }
    }
}

/// Takes the domain alias `@a -> @target` read from `at` out of the
/// routes, for a reader that brings `a` over another way; false when
/// there is none.
fn take_alias_domain(p: &mut Parsed, a: &Domain, at: &Origin) -> bool {
    let Some(i) = p
        .routes
        .iter()
        .position(|r| r.origin == *at && matches!(&r.key, RouteKey::CatchAll(d) if d == a))
    else {
        return false;
    };
    p.routes.remove(i);
    true
}

/// Counts the rows of tables mailtable has no place for, one note per
/// table that has any: `(table, the column that switches a row on, if
/// any, what a row did)`; `advice` ends each note.
fn note_not_held(
    db: &mut dyn Tables,
    source: &str,
    tables: &[(&str, Option<&str>, &str)],
    advice: &str,
    p: &mut Parsed,
) -> Result<(), CliError> {
    for (table, switch, what) in tables {
        // One column at least (a query of none is no SQL): the switch, or
        // a name no table has, read as NULL (on) for every row.
        let Some(rows) = select(db, source, table, &[], &[switch.unwrap_or("")])? else {
            continue;
        };
        let used = rows.iter().filter(|(_, v)| truthy(&v[0])).count();
        if used > 0 {
            p.notes.push(Finding::new(
                Origin::whole(source),
                format!(
                    "{table}: {used} active row(s), each {what}; mailtable has no such setting, \
                     so they are not imported{advice}"
                ),
            ));
        }
    }
    Ok(())
}

/// Whose alias maps a reader follows, for the rules of alias domains that
/// PostfixAdmin and iRedMail share.
struct AliasMaps {
    /// The table the alias rows come from.
    table: &'static str,
    /// Whose maps, for messages.
    owner: &'static str,
    /// Whether the alias-domain catch-all map is asked before the
    /// domain's own catch-all (PostfixAdmin's order), or after it
    /// (iRedMail's `catchall_maps.cf` before
    /// `domain_alias_catchall_maps.cf` in `virtual_alias_maps`).
    target_catch_all_first: bool,
    /// Whether an alias domain needs a row of its own in `domain` to be
    /// accepted (PostfixAdmin: its domain query lists `domain` only), or
    /// is accepted for being an active alias of a served domain
    /// (iRedMail's `virtual_mailbox_domains.cf`, a UNION of both tables).
    alias_domain_needs_row: bool,
}

/// PostfixAdmin's `alias` table and maps (`DOCUMENTS/POSTFIX_CONF.txt`).
const POSTFIXADMIN_MAPS: &AliasMaps = &AliasMaps {
    table: "alias",
    owner: "PostfixAdmin's",
    target_catch_all_first: true,
    alias_domain_needs_row: true,
};

/// The table a row came from.
fn table_of(o: &Origin) -> Option<&str> {
    match &o.at {
        At::Row { table, .. } => Some(table),
        _ => None,
    }
}

/// An alias domain with a catch-all of its own in `alias`. Postfix looks a
/// recipient up as the full address in every `virtual_alias_maps` table
/// before it tries `@domain` (`mail_addr_find`), and PostfixAdmin's
/// alias-domain catch-all map answers `u@alias` with the target domain's
/// catch-all (`mysql_virtual_alias_domain_catchall_maps.cf`, PostfixAdmin
/// `DOCUMENTS/POSTFIX_CONF.txt`). So where the target has a catch-all, the
/// alias domain's own one is never reached: it is left out and reported,
/// and the domain alias comes over. Where the target has none, the own
/// catch-all takes the addresses the target does not have, a fallback a
/// mailtable domain alias does not have: both stay, the merge reports the
/// conflict, and a note says what to change.
fn alias_domain_catch_alls(p: &mut Parsed, maps: &AliasMaps) {
    let own = |r: &Route| match &r.key {
        RouteKey::CatchAll(d) if table_of(&r.origin) == Some(maps.table) => Some(d.clone()),
        _ => None,
    };
    let catch_alls: Vec<Domain> = p.routes.iter().filter_map(own).collect();
    for (a, t, at) in alias_domains(p) {
        if catch_alls.contains(&t) {
            note_tagged_at_alias_domain(p, &a, &t, &at, maps);
        }
        let Some(i) = p.routes.iter().position(|r| own(r).as_ref() == Some(&a)) else {
            continue;
        };
        if maps.target_catch_all_first && catch_alls.contains(&t) {
            let r = p.routes.remove(i);
            p.skipped.push(Finding::about(
                r.origin,
                &format!("@{a}"),
                format!(
                    "catch-all of {a}, an alias domain of {t} ({at}): never used, {} \
                     alias-domain catch-all map answers every address of {a} with the catch-all \
                     of {t} first; not imported, the domain alias is",
                    maps.owner
                ),
            ));
        } else {
            p.notes.push(Finding::about(
                p.routes[i].origin.clone(),
                &format!("@{a}"),
                format!(
                    "{a} is an alias domain of {t} ({at}) and has a catch-all of its own: \
                     Postfix sends u@{a} to u@{t} where that has an alias, and to this \
                     catch-all otherwise; a mailtable domain alias has no such fallback, so \
                     remove one of the two in the source (or give {t} the catch-all)"
                ),
            ));
        }
    }
}

/// A tagged address of an alias domain whose target has a catch-all:
/// Postfix asks every `virtual_alias_maps` table for the full address,
/// tag and all, before it drops the tag (`mail_addr_find`), and the
/// alias-domain catch-all map matches on the domain alone
/// (PostfixAdmin's `mysql_virtual_alias_domain_catchall_maps.cf`,
/// iRedMail's `domain_alias_catchall_maps.cf`; only iRedMail's own
/// `catchall_maps.cf` skips tagged names). So `u+tag@a` went to the
/// catch-all of `t`, even where `u@t` exists; mailtable drops the tag
/// first and delivers it as `u@a`. No row can keep the source's way, so
/// the report says so.
fn note_tagged_at_alias_domain(
    p: &mut Parsed,
    a: &Domain,
    t: &Domain,
    at: &Origin,
    maps: &AliasMaps,
) {
    p.notes.push(Finding::about(
        at.clone(),
        &format!("@{a}"),
        format!(
            "tagged addresses of {a} (u+tag@{a}): {} alias-domain catch-all map gave them to \
             the catch-all of {t}, tag and all, before Postfix dropped the tag; after the import \
             they go where u@{a} goes, as untagged mail did (u@{t} where it exists)",
            maps.owner
        ),
    ));
}

/// PostfixAdmin's `mailbox.quota` (bytes; 0 or less: unlimited) as a
/// Dovecot size with a unit: a bare number in `*:storage=` would be read
/// as kilobytes (Dovecot quota configuration, "storage").
fn quota_of_bytes(v: &Cell) -> Option<String> {
    crate::quota::of_bytes(v.as_deref()?.trim().parse().ok()?)
}

/// The domains of a source's domain table, with whether each is active.
struct Domains {
    active: BTreeMap<Domain, bool>,
    /// Only the listed domains are the source's: PostfixAdmin's and the
    /// ISPmail guide's Postfix accepts mail for the domains its domain
    /// query lists (`virtual_mailbox_domains`), so a mailbox or alias of
    /// another domain never received mail (relay access denied). The
    /// normalized schema's `domains` table is optional and not known to
    /// be a Postfix map: there a domain it does not list is active.
    only_listed: bool,
}

impl Domains {
    /// Whether mail to `d` was accepted (listed and active, or not listed
    /// where that is fine).
    fn ok(&self, d: &Domain) -> bool {
        self.active.get(d).copied().unwrap_or(!self.only_listed)
    }

    /// Whether `d` is no domain of the source at all (not merely inactive).
    fn unlisted(&self, d: &Domain) -> bool {
        self.only_listed && !self.active.contains_key(d)
    }

    /// Why mail to `d` was refused, for a message: `None` when it was not.
    fn refused(&self, d: &Domain) -> Option<&'static str> {
        match self.active.get(d) {
            Some(true) => None,
            Some(false) => Some("of an inactive domain"),
            None if self.only_listed => Some(
                "of a domain the source does not serve (no row in its domain table, or a backup \
                 MX): Postfix refused its mail",
            ),
            None => None,
        }
    }
}

/// The `domains` table into `p.domains`; returns whether each is active.
/// With `--inactive reject` an inactive domain is not one of the source's
/// (Postfix's `virtual_mailbox_domains` query does not list it: all its
/// mail was refused), and the report says so.
fn read_domains(
    source: &str,
    table: &str,
    rows: &[TableRow],
    inactive: Inactive,
    p: &mut Parsed,
) -> BTreeMap<Domain, bool> {
    let mut domain_active: BTreeMap<Domain, bool> = BTreeMap::new();
    for (id, v) in rows {
        let at = Origin::row(source, table, *id);
        let name = text(&v[0]).unwrap_or_default();
        match Domain::parse(name.trim()) {
            Ok(d) => {
                let active = truthy(&v[1]);
                domain_active.insert(d.clone(), active);
                if active || inactive == Inactive::Disabled {
                    p.domains.push((d, active, at));
                } else {
                    p.skipped.push(Finding::about(
                        at,
                        d.as_str(),
                        "inactive domain: the source refused all its mail (its Postfix domain \
                         query lists active domains only), so none of its mailboxes and aliases \
                         is imported (--inactive disabled imports its mailboxes disabled)",
                    ));
                }
            }
            Err(e) => p.skipped.push(Finding::about(at, &name, e.to_string())),
        }
    }
    domain_active
}

/// One row of `users` (username, password, domain, active) into a login
/// with `quota`, or a finding saying why not.
/// What an SQL source compared its keys with: whatever its database's
/// collation says. MySQL's and MariaDB's default ones ignore case, so a
/// mixed-case row matched there; PostgreSQL's compare bytes.
const SQL_MATCHED: &str = "the source's database compared it as its collation does (MySQL's \
                           and MariaDB's default ignores case, PostgreSQL's does not)";

fn read_user(
    at: &Origin,
    v: &[Cell],
    quota: Option<String>,
    domain_active: &Domains,
    inactive: Inactive,
    p: &mut Parsed,
) {
    let at = at.clone();
    let user = text(&v[0]).unwrap_or_default().trim().to_string();
    let domain = text(&v[2])
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty());
    let full = match (&domain, user.contains('@')) {
        (_, true) => user.clone(),
        (Some(d), false) => format!("{user}@{d}"),
        (None, false) => {
            p.skipped.push(Finding::about(
                at,
                &user,
                "user without a domain: mailtable logins are addresses",
            ));
            return;
        }
    };
    let addr = match Address::parse(&full) {
        Ok(a) => a,
        Err(e) => {
            p.mailbox_left_behind(at, &full, &e.to_string());
            return;
        }
    };
    p.notes.extend(Finding::stored_as(
        &at,
        &full,
        &addr.to_string(),
        SQL_MATCHED,
    ));
    if let (Some(d), true) = (&domain, user.contains('@')) {
        if Domain::parse(d).ok().as_ref() != Some(addr.domain()) {
            p.malformed.push(Finding::about(
                at,
                &full,
                format!("username is an address in another domain than the domain column {d:?}"),
            ));
            return;
        }
    }
    let domain_on = domain_active.ok(addr.domain());
    // Not a domain of the source at all (relayed as a backup MX, or no
    // row): never delivered here, so no --inactive makes it a mailbox.
    if domain_active.unlisted(addr.domain()) {
        let why = domain_active.refused(addr.domain()).unwrap_or_default();
        p.skipped.push(Finding::about(
            at,
            &full,
            format!(
                "mailbox {why}; not imported (whatever --inactive says: its mail was never \
                 delivered here)"
            ),
        ));
        return;
    }
    let active = truthy(&v[3]) && domain_on;
    if !active && inactive == Inactive::Reject {
        // Not a login, and not lost: the source refused this mail already.
        let what = match domain_active.refused(addr.domain()) {
            None => "inactive mailbox: the source delivered nothing to it and refused its logins \
                     (its Postfix mailbox query lists active mailboxes only: its mail was \
                     refused, or taken by a catch-all, or by the entry of its address without \
                     the tag)"
                .to_string(),
            Some(why) => format!("mailbox {why}: the source refused its mail"),
        };
        p.skipped.push(Finding::about(
            at,
            &full,
            format!(
                "{what}; not imported, so the same happens after the import (--inactive \
                 disabled imports it as a disabled mailbox, accepting its mail)"
            ),
        ));
        p.refused.push(addr);
        return;
    }
    let Some(hash) = text(&v[1]).filter(|h| !h.is_empty()) else {
        // Postfix's mailbox lookup does not read the password: the source
        // delivered to it, and without a row its mail would bounce. (An
        // inactive one, refused above, lost nothing.)
        p.mailbox_left_behind(at, &full, "no password: a mailbox needs a hash");
        return;
    };
    if !active {
        p.accepted_inactive.push(addr.clone());
        p.notes.push(Finding::about(
            at.clone(),
            &full,
            "inactive: imported as a disabled mailbox as --inactive disabled says (login refused, \
             mail accepted, which the source refused)",
        ));
    }
    p.logins.push(Login {
        name: LoginName::Address(addr),
        hash: PasswordHash::new(hash),
        active,
        quota,
        implied_route: true,
        origin: at,
    });
}

/// The `aliases` table (alias, destination, active) into routes; alias
/// rows of one key fan out, so they become one route per key.
fn read_aliases(
    source: &str,
    table: &str,
    rows: &[TableRow],
    domain_active: &Domains,
    p: &mut Parsed,
) {
    let mut routes: BTreeMap<RouteKey, Route> = BTreeMap::new();
    for (id, v) in rows {
        let at = Origin::row(source, table, *id);
        let written = text(&v[0]).unwrap_or_default().trim().to_string();
        let key_text = written.to_ascii_lowercase();
        let key = if let Some(d) = key_text.strip_prefix('@') {
            Domain::parse(d).map(|d| (d.clone(), RouteKey::CatchAll(d)))
        } else {
            Address::parse(&key_text).map(|a| (a.domain().clone(), RouteKey::Exact(a)))
        };
        let (key_domain, key) = match key {
            Ok(k) => k,
            Err(e) => {
                p.address_left_behind(at, &key_text, &e.to_string());
                continue;
            }
        };
        p.notes.extend(Finding::stored_as(
            &at,
            &written,
            &key.to_string(),
            SQL_MATCHED,
        ));
        if !truthy(&v[2]) || !domain_active.ok(&key_domain) {
            let what = match domain_active.refused(&key_domain) {
                Some(why) if truthy(&v[2]) => format!("alias {why}"),
                _ => "inactive alias".to_string(),
            };
            p.skipped.push(Finding::about(
                at,
                &key_text,
                format!(
                    "{what}: mailtable has no disabled aliases, and in the source it delivered \
                     nothing"
                ),
            ));
            continue;
        }
        let dest = text(&v[1]).unwrap_or_default();
        let mut targets = Vec::new();
        let mut vacation = false;
        for t in dest.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if is_vacation_target(t, &key) {
                vacation = true;
                p.skipped.push(Finding::about(
                    at.clone(),
                    &key_text,
                    format!(
                        "target {t}: PostfixAdmin's vacation auto-reply (its vacation \
                         transport, not a mailbox): not imported, mailtable sends no \
                         auto-replies (Dovecot's Sieve vacation does); the other targets are"
                    ),
                ));
            } else {
                targets.push(sql_target(t, &key));
            }
        }
        if targets.is_empty() && vacation {
            // Only the auto-reply: no mailbox got this mail.
            p.lost.push(key_text.clone());
            continue;
        }
        if targets.is_empty() {
            // Postfix skips an empty result with a warning ("empty lookup
            // result ... ignored", db_common_expand in
            // src/global/db_common.c) and a NULL one silently: the address
            // was looked up as if the row were not there.
            p.skipped.push(Finding::about(
                at,
                &key_text,
                "alias without a destination: Postfix ignores an empty result, so its lookup \
                 went on as if this row were not there; not imported",
            ));
            continue;
        }
        match routes.get_mut(&key) {
            Some(r) => {
                for t in targets {
                    if !r.targets.contains(&t) {
                        r.targets.push(t);
                    }
                }
            }
            None => {
                routes.insert(
                    key.clone(),
                    Route {
                        key,
                        targets,
                        origin: at,
                    },
                );
            }
        }
    }
    p.routes.extend(routes.into_values());
}

/// Whether `t`, a target of `key`, is PostfixAdmin's vacation address for
/// it: the key with `@` written `#`, at the vacation domain
/// (`user#example.org@autoreply.example.org`; PostfixAdmin
/// `model/VacationHandler.php` and `$CONF['vacation_domain']` in
/// `config.inc.php`, routed to the `vacation` transport by Postfix's
/// `transport_maps`).
fn is_vacation_target(t: &str, key: &RouteKey) -> bool {
    let RouteKey::Exact(k) = key else {
        return false;
    };
    let Some((local, _vacation_domain)) = t.rsplit_once('@') else {
        return false;
    };
    let Some((user, domain)) = local.rsplit_once('#') else {
        return false;
    };
    user.eq_ignore_ascii_case(k.local()) && domain.eq_ignore_ascii_case(k.domain().as_str())
}

/// One element of a `destination` list: an address, or `@new.org` on a
/// catch-all (a domain alias).
fn sql_target(t: &str, key: &RouteKey) -> Target {
    if let Some(d) = t.strip_prefix('@') {
        match (Domain::parse(d), key) {
            (Ok(d), RouteKey::CatchAll(_)) => Target::DomainAlias(d),
            (Ok(_), _) => Target::Unrepresentable {
                text: t.into(),
                why: "a whole domain is only a target of a whole domain".into(),
            },
            (Err(e), _) => Target::Unrepresentable {
                text: t.into(),
                why: e.to_string(),
            },
        }
    } else {
        match Address::parse(t) {
            Ok(a) => Target::Address(a),
            Err(e) => Target::Unrepresentable {
                text: t.into(),
                why: format!("mailtable refuses this address ({e})"),
            },
        }
    }
}

/// `mailtable`: every row of another mailtable database.
pub fn read_mailtable(source: &str) -> Result<Parsed, CliError> {
    let url: DatabaseUrl = source.parse().map_err(CliError::usage)?;
    if let DatabaseUrl::Sqlite(p) = &url {
        if !Path::new(p).exists() {
            return Err(CliError::usage(format!(
                "cannot read {source}: no such file"
            )));
        }
    }
    let shown = match &url {
        DatabaseUrl::Sqlite(p) => p.display().to_string(),
        DatabaseUrl::Postgres(u) => store::url::redact(u),
    };
    let opts = OpenOptions {
        access: Access::ReadOnly,
        timeout: Duration::from_secs(10),
    };
    let mut s = store::open(&url, &opts)?;
    if s.schema_state()? == SchemaState::Empty {
        return Err(CliError::usage(format!("{shown} has no users table")));
    }
    let mut p = Parsed::default();
    for row in s.list(None)? {
        let at = Origin::key(&shown, &row.address());
        let pattern = match AddressPattern::parse(&row.address()) {
            Ok(pattern) => pattern,
            Err(e) => {
                p.malformed.push(Finding::new(at, e.to_string()));
                continue;
            }
        };
        // A `%` in the target is only meaningful on a wildcard row, once.
        let target = if row.has_template_target() {
            (row.kind().is_wildcard() && row.mailbox.matches('%').count() == 1)
                .then(|| normalized_template(&row.mailbox))
                .flatten()
        } else {
            Address::parse(&row.mailbox).ok().map(|a| a.to_string())
        };
        let Some(target) = target else {
            p.malformed.push(Finding::new(
                at,
                format!("invalid target {:?}", row.mailbox),
            ));
            continue;
        };
        let mut row = row;
        let written = format!("{} -> {}", row.address(), row.mailbox);
        let key_written = row.address();
        row.username = pattern.local.to_string();
        row.domain = pattern.domain.to_string();
        row.mailbox = target;
        let now = format!("{} -> {}", row.address(), row.mailbox);
        if row.address() != key_written {
            // The daemons compare the normalised forms of keys, so in the
            // source this row never matched (hand-written with the sqlite3
            // shell): what was meant comes over, and the report says so.
            p.notes.push(Finding::about(
                at.clone(),
                &written,
                format!(
                    "its key is written in upper case or with a Unicode domain: mailtable \
                     stores and compares addresses in lower case with domains in IDNA form, \
                     so the daemons never matched this row in the source; imported as {now}"
                ),
            ));
        } else if now != written {
            // Only the target: the resolver folds targets, so the row
            // delivered as it will; stored as mailtable writes targets.
            p.notes.push(Finding::about(
                at.clone(),
                &written,
                format!(
                    "its target is written in upper case or with a Unicode domain, which the \
                     daemons delivered to as {now}; imported in that form"
                ),
            ));
        }
        p.rows.push((row, at));
    }
    Ok(p)
}

/// A template target (`%@new.org`, `sales-%@Example.ORG`) in the form the
/// resolver compares: its local part lower-cased, its domain in IDNA
/// form; `None` when no address comes of it.
fn normalized_template(target: &str) -> Option<String> {
    let (local, domain) = target.rsplit_once('@')?;
    let local = local.to_ascii_lowercase();
    Address::parse(&format!("{}@{domain}", local.replace('%', "x"))).ok()?;
    Some(format!("{local}@{}", Domain::parse(domain).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailtable_core::exit::Exit;

    fn db(sql: &str) -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(sql).unwrap();
        c
    }

    /// Every way an `active` flag reaches the reader: SQL values, text,
    /// and a `BIT(1)` column's raw byte as a MariaDB dump quotes it.
    #[test]
    fn active_flags_in_every_form() {
        let flag = |v: Option<&str>| truthy(&v.map(String::from));
        for on in [
            Some("1"),
            Some("true"),
            Some("t"),
            Some(" Y "),
            Some("\u{1}"),
            Some("2"),
        ] {
            assert!(flag(on), "{on:?}");
        }
        // NULL: the source's `active = 1` never selects it.
        for off in [
            None,
            Some("0"),
            Some("false"),
            Some("f"),
            Some("\0"),
            Some(""),
            Some("no"),
        ] {
            assert!(!flag(off), "{off:?}");
        }
    }

    /// A MariaDB dump of PostfixAdmin's tables with `active` as `BIT(1)`:
    /// the flags are raw bytes in quotes, read as MariaDB compares them.
    #[test]
    fn bit_flags_of_a_dump() {
        let text = "CREATE TABLE `mailbox` (`username` varchar(255), `password` varchar(255), \
                    `domain` varchar(255), `active` bit(1));\n\
                    INSERT INTO `mailbox` VALUES ('a@x.org','$2y$05$h','x.org','\x01'),\
                    ('b@x.org','$2y$05$h','x.org','\\0');\n\
                    CREATE TABLE `alias` (`address` varchar(255), `goto` text, \
                    `domain` varchar(255), `active` bit(1));\n\
                    INSERT INTO `alias` VALUES ('team@x.org','a@x.org','x.org',0x01),\
                    ('old@x.org','a@x.org','x.org',0x00);\n";
        let mut dump = parse_dump(text).unwrap().remove(0).dump;
        let p = read_tables(&mut dump, "dump", Inactive::Reject).unwrap();
        let logins: Vec<String> = p.logins.iter().map(|l| format!("{:?}", l.name)).collect();
        assert_eq!(logins.len(), 1, "{logins:?}");
        assert!(logins[0].contains("local: \"a\""), "{logins:?}");
        let keys: Vec<String> = p.routes.iter().map(|r| format!("{:?}", r.key)).collect();
        assert!(keys.iter().any(|k| k.contains("team")), "{keys:?}");
        assert!(!keys.iter().any(|k| k.contains("old")), "{keys:?}");
    }

    #[test]
    fn normalized_schema() {
        let mut c = db("
            CREATE TABLE domains (domain TEXT, active INTEGER);
            INSERT INTO domains VALUES ('example.org', 1), ('old.org', 1), ('gone.org', 0);
            CREATE TABLE users (username TEXT, domain TEXT, password TEXT, active BOOLEAN);
            INSERT INTO users VALUES ('alice', 'example.org', '$2b$h', 1);
            INSERT INTO users VALUES ('bob@example.org', 'example.org', '{SSHA512}x', 'f');
            INSERT INTO users VALUES ('carol', 'gone.org', '$6$s$h', 1);
            INSERT INTO users VALUES ('dave', 'example.org', NULL, 1);
            CREATE TABLE aliases (alias TEXT, destination TEXT, active INTEGER);
            INSERT INTO aliases VALUES ('info@example.org', 'alice@example.org, bob@example.org', 1);
            INSERT INTO aliases VALUES ('info@example.org', 'x@elsewhere.net', 1);
            INSERT INTO aliases VALUES ('old@example.org', 'alice@example.org', 0);
            INSERT INTO aliases VALUES ('@old.org', '@example.org', 1);
        ");
        let p = read_tables(&mut c, "old.db", Inactive::Disabled).unwrap();
        assert!(p.malformed.is_empty(), "{:?}", p.malformed);
        assert_eq!(p.logins.len(), 3);
        assert!(p.logins[0].active);
        assert!(!p.logins[1].active, "inactive user");
        assert!(!p.logins[2].active, "inactive domain");
        assert_eq!(p.skipped.len(), 2, "{:?}", p.skipped);
        assert_eq!(p.skipped[0].at.to_string(), "old.db:users:4");
        assert_eq!(p.skipped[1].at.to_string(), "old.db:aliases:3");
        assert_eq!(p.routes.len(), 2);
        let info = p
            .routes
            .iter()
            .find(|r| r.key.to_string() == "info@example.org")
            .unwrap();
        assert_eq!(info.targets.len(), 3, "rows of one key fan out");
        assert!(
            p.routes
                .iter()
                .any(|r| r.targets
                    == vec![Target::DomainAlias(Domain::parse("example.org").unwrap())])
        );
        assert_eq!(p.domains.len(), 3);
    }

    #[test]
    fn views_adapt_other_schemas() {
        let mut c = db("
            CREATE TABLE mailbox (local_part TEXT, domain TEXT, crypt TEXT, enabled INTEGER);
            INSERT INTO mailbox VALUES ('zoe', 'example.org', '$2b$h', 0);
            CREATE VIEW users AS
              SELECT local_part AS username, domain, crypt AS password, enabled AS active FROM mailbox;
        ");
        let p = read_tables(&mut c, "v.db", Inactive::Disabled).unwrap();
        assert_eq!(p.logins.len(), 1);
        assert!(!p.logins[0].active);
        assert_eq!(p.logins[0].origin.to_string(), "v.db:users:1");
    }

    /// The normalized schema's domains table is optional: an inactive
    /// user of a domain it does not list is an inactive mailbox, not one
    /// of a domain the source does not serve.
    #[test]
    fn an_unlisted_domain_of_the_normalized_schema_is_served() {
        let mut c = db(
            "CREATE TABLE users (username TEXT, domain TEXT, password TEXT, active INTEGER);
             INSERT INTO users VALUES ('a', 'x.org', '$2b$h', 0);
             CREATE TABLE aliases (alias TEXT, destination TEXT);",
        );
        let p = read_tables(&mut c, "n.db", Inactive::Reject).unwrap();
        assert_eq!(p.skipped.len(), 1, "{:?}", p.skipped);
        assert!(
            p.skipped[0].why.starts_with("inactive mailbox:"),
            "{}",
            p.skipped[0].why
        );
    }

    #[test]
    fn missing_columns_and_mailtable_databases() {
        let mut c =
            db("CREATE TABLE users (username TEXT, domain TEXT, mailbox TEXT, password TEXT);");
        let e = read_tables(&mut c, "mt.db", Inactive::Reject)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--from mailtable"), "{e}");
        let mut c = db("CREATE TABLE users (name TEXT, password TEXT);");
        let e = read_tables(&mut c, "x.db", Inactive::Reject)
            .unwrap_err()
            .to_string();
        assert!(e.contains("users with username and password"), "{e}");
    }

    #[test]
    fn postfixadmin_tables_are_read_directly() {
        let mut c = db("
            CREATE TABLE domain (domain TEXT, backupmx INTEGER, active INTEGER);
            INSERT INTO domain VALUES ('ALL', 0, 1), ('example.org', 0, 1), ('mx2.example', 1, 1),
                                      ('example.net', 0, 1);
            CREATE TABLE mailbox (username TEXT, password TEXT, local_part TEXT, domain TEXT,
                                  quota INTEGER, active INTEGER);
            INSERT INTO mailbox VALUES ('a@example.org', '$2b$h', 'a', 'example.org', 1048576, 1);
            CREATE TABLE alias (address TEXT, goto TEXT, domain TEXT, active INTEGER);
            INSERT INTO alias VALUES ('a@example.org', 'a@example.org', 'example.org', 1);
            CREATE TABLE alias_domain (alias_domain TEXT, target_domain TEXT, active INTEGER);
            INSERT INTO alias_domain VALUES ('example.net', 'example.org', 1);
        ");
        let p = read_tables(&mut c, "pfa.db", Inactive::Reject).unwrap();
        assert_eq!(p.logins.len(), 1);
        assert_eq!(p.logins[0].quota.as_deref(), Some("1M"));
        assert_eq!(
            p.domains.len(),
            2,
            "ALL is not a domain, a backup MX is skipped"
        );
        assert_eq!(p.skipped[0].at.to_string(), "pfa.db:domain:3");
        assert!(p.routes.iter().any(|r| r.key.to_string() == "@example.net"
            && r.targets == vec![Target::DomainAlias(Domain::parse("example.org").unwrap())]));
        assert_eq!(p.routes.len(), 2);
    }

    /// A row written in mixed case (PostfixAdmin on MySQL, whose default
    /// collation ignores case) comes over lower-cased, with a note naming
    /// both forms; a row in lower case gets none.
    #[test]
    fn mixed_case_rows_are_noted() {
        let mut c = db("
            CREATE TABLE domain (domain TEXT, backupmx INTEGER, active INTEGER);
            INSERT INTO domain VALUES ('example.org', 0, 1);
            CREATE TABLE mailbox (username TEXT, password TEXT, local_part TEXT, domain TEXT,
                                  quota INTEGER, active INTEGER);
            INSERT INTO mailbox VALUES ('Anna@Example.org', '$2b$h', 'Anna', 'example.org', 0, 1),
                                       ('b@example.org', '$2b$h', 'b', 'example.org', 0, 1);
            CREATE TABLE alias (address TEXT, goto TEXT, domain TEXT, active INTEGER);
            INSERT INTO alias VALUES ('Sales@example.ORG', 'b@example.org', 'example.org', 1),
                                     ('b@example.org', 'b@example.org', 'example.org', 1);
        ");
        let p = read_tables(&mut c, "pfa.db", Inactive::Reject).unwrap();
        let notes: Vec<String> = p.notes.iter().map(ToString::to_string).collect();
        let stored: Vec<&String> = notes.iter().filter(|n| n.contains("stored as")).collect();
        assert_eq!(stored.len(), 2, "{notes:?}");
        assert!(stored[0].contains("Anna@Example.org: stored as anna@example.org"));
        assert!(stored[1].contains("Sales@example.ORG: stored as sales@example.org"));
        assert!(p
            .routes
            .iter()
            .any(|r| r.key.to_string() == "sales@example.org"));
    }

    /// An alias domain with a catch-all of its own. Postfix looks the full
    /// address up in every alias map before `@domain`, so where the target
    /// has a catch-all, PostfixAdmin's alias-domain catch-all map answers
    /// every address of the alias domain and its own catch-all is never
    /// used; where the target has none, the own catch-all takes what the
    /// target lacks, which a mailtable domain alias cannot say.
    #[test]
    fn an_alias_domain_with_a_catch_all_of_its_own() {
        let tables = "
            CREATE TABLE mailbox (username TEXT, password TEXT, domain TEXT, active TEXT);
            INSERT INTO mailbox VALUES ('a@example.org', '$2b$h', 'example.org', '1');
            CREATE TABLE alias (address TEXT, goto TEXT, active TEXT);
            INSERT INTO alias VALUES ('a@example.org', 'a@example.org', '1'),
                                     ('@alias.example', 'b@elsewhere.example', '1');
            CREATE TABLE alias_domain (alias_domain TEXT, target_domain TEXT, active TEXT);
            INSERT INTO alias_domain VALUES ('alias.example', 'example.org', '1');
        ";
        let keys = |p: &Parsed| -> Vec<String> {
            let mut k: Vec<String> = p.routes.iter().map(|r| r.key.to_string()).collect();
            k.sort();
            k
        };
        let mut c = db(&format!(
            "{tables} INSERT INTO alias VALUES ('@example.org', 'a@example.org', '1');"
        ));
        let p = read_tables(&mut c, "pfa.db", Inactive::Reject).unwrap();
        assert_eq!(
            keys(&p),
            ["@alias.example", "@example.org", "a@example.org"]
        );
        let own = p
            .routes
            .iter()
            .find(|r| r.key.to_string() == "@alias.example")
            .unwrap();
        assert_eq!(
            own.targets,
            [Target::DomainAlias(Domain::parse("example.org").unwrap())]
        );
        let s = p
            .skipped
            .iter()
            .find(|s| s.at.to_string() == "pfa.db:alias:2");
        assert!(
            s.is_some_and(|s| s.why.contains("never used")),
            "{:?}",
            p.skipped
        );

        // Without a catch-all of the target both stay, and a note says why
        // they cannot both come over.
        let mut c = db(tables);
        let p = read_tables(&mut c, "pfa.db", Inactive::Reject).unwrap();
        assert_eq!(
            keys(&p),
            ["@alias.example", "@alias.example", "a@example.org"]
        );
        assert!(
            p.notes
                .iter()
                .any(|n| n.at.to_string() == "pfa.db:alias:2" && n.why.contains("remove one")),
            "{:?}",
            p.notes
        );
    }

    #[test]
    fn inactive_rows_are_refused_by_default_and_vacation_targets_left_out() {
        let mut c = db("
            CREATE TABLE domains (domain TEXT, active INTEGER);
            INSERT INTO domains VALUES ('example.org', 1), ('gone.org', 0);
            CREATE TABLE users (username TEXT, domain TEXT, password TEXT, active INTEGER);
            INSERT INTO users VALUES ('alice', 'example.org', '$2b$h', 1);
            INSERT INTO users VALUES ('bob', 'example.org', '$2b$h', 0);
            INSERT INTO users VALUES ('carol', 'gone.org', '$2b$h', 1);
            CREATE TABLE aliases (alias TEXT, destination TEXT, active INTEGER);
            INSERT INTO aliases VALUES
              ('alice@example.org', 'alice@example.org,alice#example.org@autoreply.example.org', 1);
        ");
        let p = read_tables(&mut c, "db", Inactive::Reject).unwrap();
        assert_eq!(p.logins.len(), 1, "only alice");
        let refused: Vec<String> = p.refused.iter().map(ToString::to_string).collect();
        assert_eq!(refused, ["bob@example.org", "carol@gone.org"]);
        assert!(p.lost.is_empty(), "refused mail is not mail left behind");
        assert_eq!(p.domains.len(), 1, "an inactive domain is not the source's");
        assert_eq!(
            p.routes[0].targets,
            [Target::Address(
                Address::parse("alice@example.org").unwrap()
            )]
        );
        let why: Vec<String> = p.skipped.iter().map(ToString::to_string).collect();
        assert!(
            why[0].starts_with("db:domains:2: gone.org: inactive domain"),
            "{why:?}"
        );
        assert!(
            why[1].contains("users:2: bob@example.org: inactive mailbox"),
            "{why:?}"
        );
        assert!(why[1].contains("--inactive disabled"), "{why:?}");
        assert!(why[2].contains("mailbox of an inactive domain"), "{why:?}");
        assert!(why[3].contains("vacation auto-reply"), "{why:?}");

        let p = read_tables(&mut c, "db", Inactive::Disabled).unwrap();
        assert_eq!(p.logins.len(), 3);
        assert!(p.refused.is_empty());
        assert_eq!(p.accepted_inactive.len(), 2);
    }

    #[test]
    fn vacation_targets() {
        let key = RouteKey::Exact(Address::parse("u@example.org").unwrap());
        assert!(is_vacation_target(
            "u#example.org@autoreply.example.org",
            &key
        ));
        assert!(is_vacation_target(
            "U#Example.org@vacation.example.net",
            &key
        ));
        assert!(!is_vacation_target(
            "v#example.org@autoreply.example.org",
            &key
        ));
        assert!(!is_vacation_target("u@example.org", &key));
        assert!(!is_vacation_target(
            "u#example.net@autoreply.example.org",
            &key
        ));
        let catch_all = RouteKey::CatchAll(Domain::parse("example.org").unwrap());
        assert!(!is_vacation_target(
            "u#example.org@autoreply.example.org",
            &catch_all
        ));
    }

    #[test]
    fn postfixadmin_quota_in_bytes() {
        let q = |s: &str| quota_of_bytes(&Some(s.to_string()));
        assert_eq!(q("0"), None, "unlimited");
        assert_eq!(q("-1"), None);
        assert_eq!(q("2147483648").as_deref(), Some("2G"));
        assert_eq!(q("524288000").as_deref(), Some("500M"));
        assert_eq!(q("1536").as_deref(), Some("1536B"), "not a whole K");
        assert_eq!(q("3072").as_deref(), Some("3K"));
        assert_eq!(q("1000").as_deref(), Some("1000B"));
        assert_eq!(q("lots"), None);
    }

    #[test]
    fn active_values() {
        for t in ["1", "t", "TRUE", "yes", "on", "2"] {
            assert!(truthy(&Some(t.into())), "{t}");
        }
        // Blanks are no raw BIT byte (those are below the space): an
        // empty value, not a flag.
        for f in ["0", "f", "false", "no", "off", "0.0", " ", "  "] {
            assert!(!truthy(&Some(f.into())), "{f:?}");
        }
        assert!(
            !truthy(&None),
            "NULL is off: the source's `active = 1` never selects it"
        );
    }

    #[test]
    fn a_source_locked_past_the_wait_is_a_temporary_failure() {
        use rusqlite::ffi;
        let busy = rusqlite::Error::SqliteFailure(ffi::Error::new(ffi::SQLITE_BUSY), None);
        assert_eq!(sqlite_error(busy).exit(), Exit::TempFail);
        let corrupt = rusqlite::Error::SqliteFailure(ffi::Error::new(ffi::SQLITE_NOTADB), None);
        assert_eq!(sqlite_error(corrupt).exit(), Exit::Usage);
    }

    #[test]
    fn unreachable_postgres_never_shows_the_password() {
        let e = read_normalized("postgresql://u:secret@127.0.0.1:1/mail", Inactive::Reject)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("cannot read postgresql://u:***@127.0.0.1:1/mail"),
            "{e}"
        );
        assert!(!e.contains("secret"), "{e}");
    }
}
