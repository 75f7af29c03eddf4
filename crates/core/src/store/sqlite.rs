//! The SQLite backend (rusqlite, bundled SQLite: a fresh machine needs no C
//! library).
//!
//! One connection per `SqliteStore`, statements prepared once and reused from
//! rusqlite's statement cache. Every lookup is an index probe: exact rows by
//! `(domain, username)`, wildcard rows by the expression index
//! `(domain, instr(username, '%'))`, reverse lookups by `(mailbox)` (see
//! `schema/sqlite/0001_users.sql`); a test checks the query plans.
//!
//! No join of an alias with its targets, and no `IN` lists for several
//! keys: [`Store::exact_joined`] and [`Store::exact_many`] are the trait's
//! defaults, one [`Store::exact`] probe per key. Both save round trips on
//! PostgreSQL; here there are none to save, and the SQL they need cost more
//! than the probes. Counted with callgrind, a cold lookup over imsg (100k
//! users) took, with the join, 48,000 instructions for a mailbox, 92,000
//! for an alias and 214,000 for an alias with several targets; without it
//! 36,000, 58,000 and 148,000; and for the last, a probe per target instead
//! of the `IN` lists (which SQLite probes once per combination of username
//! and domain, then sorts) about 15 % less again.
//!
//! Failure handling, for daemons that must never hang smtpd:
//! - `busy_timeout` bounds lock waits, and a progress handler interrupts any
//!   statement that runs past the configured timeout;
//! - the file is `stat`ed before each query, or once per lookup in the
//!   daemons ([`Store::begin_lookup`]): a missing file is an error, a
//!   replaced file (new inode, e.g. a restored backup) is reopened. An open
//!   SQLite handle keeps reading a deleted or renamed file forever, which
//!   would hide an outage from the admin and serve stale data. Once per
//!   lookup is enough for that, and better: the change check and all the
//!   queries of one request then read the same file, never the old file's
//!   alias and the new file's mailbox;
//! - an error drops the connection, so the next lookup reopens it: when the
//!   database comes back, lookups work again without restarting anything.
//!   Not a lock held past the timeout: the connection is as good as it
//!   was, and kept, the next change check needs no lock.
//!
//! A daemon's lookup is also one read transaction, from its first query to
//! [`Store::end_lookup`]. In autocommit mode every query takes SQLite's
//! shared lock, looks for a hot journal and checks its page cache against
//! the file's change counter, and releases the lock: a few system calls
//! each time, for each of the two or more queries of an alias. Once per
//! lookup makes an alias with one target as cheap as a mailbox (paired
//! benchmark, imsg, 100k users, no answer cache: 15,300 to 20,900 ops/s),
//! and all queries of the lookup read one state of the data, so an alias
//! and its target never straddle a commit. A writer waits for the lock
//! (its `busy_timeout`) only while a lookup runs; a password check, which
//! hashes after its queries, is not such a lookup.
//!
//! The change token of the daemons' cache ([`Store::change_token`]) is one
//! `stat` of the path and one read of the file's header: the file change
//! counter at offset 24, which every commit in rollback-journal mode
//! increments, by any connection of any process, and which SQLite itself
//! compares to tell whether its page cache is still valid
//! (<https://sqlite.org/fileformat2.html>, "File change counter"). The same
//! file gives the same token on every connection, so the stores of
//! `serve`'s pool share one cache. With the file's identity, modification
//! time and size (a backup copied over the file or renamed into its place)
//! every way of writing changes the token before the next lookup. A file
//! written at all (its times or size moved) also gets a new connection at
//! the next lookup: SQLite keeps its page cache by the counter alone, and a
//! copy of the same database changed as often, `cp`'d over the live one,
//! carries the counter SQLite last read. Read
//! without a lock: a counter read mid-commit only makes the next lookup ask
//! again. A database someone switched to WAL keeps that counter still, so
//! there the token is `PRAGMA data_version` (which any commit advances, but
//! which only means something on one connection) and the connection's
//! number.
//!
//! table-mailtable's lookups skip the `stat` and the header read while the
//! file's [`FileWatch`] says nothing happened since the last check: the
//! kernel signals any write to the file and any rename or removal on its
//! path ([`super::watch`] has why that is as fresh). The lookup then
//! reuses that check's `stat` and token.

use super::watch::{self, FileWatch};
use super::{
    Access, ChangeToken, Delete, OpenOptions, Row, SchemaState, Store, StoreError, BULK_TIMEOUT,
    LOCKED_WAIT,
};
use crate::password::PasswordHash;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Rows per page of [`Store::scan`]: a few MB, read in a few ms.
const SCAN_PAGE: i64 = 10_000;

/// Optional columns present in this database.
#[derive(Debug, Clone, Copy, Default)]
struct Columns {
    active: bool,
    quota: bool,
}

impl Columns {
    /// The index of this layout's text in a `select!` list.
    fn variant(self) -> usize {
        usize::from(self.active) * 2 + usize::from(self.quota)
    }
}

struct Open {
    conn: Connection,
    columns: Columns,
    /// (device, inode) of the file when it was opened.
    ident: (u64, u64),
    /// The file, for reading its header (the change counter).
    file: std::fs::File,
    /// A read transaction of the running lookup is open on `conn`
    /// ([`SqliteStore::read_in_one_transaction`]).
    reading: bool,
    /// The file as the last change check saw it.
    seen: Option<FileState>,
    /// The last change check found the file in WAL mode.
    wal: bool,
    /// The connection's `busy_timeout` now.
    busy: Duration,
    /// Its lock waits are [`watch::wait_for_lock`]'s, bounded per
    /// statement.
    own_busy_handler: bool,
}

/// Whether the header of `file` says WAL mode: its bytes 18 and 19 (file
/// format write and read versions) are 2 in WAL mode, 1 otherwise
/// (<https://sqlite.org/fileformat2.html>, "The Database Header").
fn in_wal_mode(file: &std::fs::File) -> bool {
    use std::os::unix::fs::FileExt;
    let mut version = [0u8; 1];
    file.read_exact_at(&mut version, 18).is_ok() && version[0] == 2
}

/// `sql` without its lines `ALTER TABLE users ADD COLUMN <name> ...;` for
/// a column the table has already: a table made by hand, or one that lost
/// the other optional column, migrates as PostgreSQL's `ADD COLUMN IF NOT
/// EXISTS` lets it there (SQLite has no such clause).
fn without_present_columns(sql: &str, present: &[String]) -> String {
    sql.lines()
        .filter(|line| {
            let column = line
                .strip_prefix("ALTER TABLE users ADD COLUMN ")
                .and_then(|rest| rest.split_whitespace().next());
            !column.is_some_and(|c| present.iter().any(|p| p.eq_ignore_ascii_case(c)))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What the change check reads of the file: its modification and change
/// times and size from `stat`, and the change counter from its header
/// (`None` in WAL mode or before SQLite wrote a header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileState {
    /// mtime and ctime, folded: a write moves ctime even when the writer
    /// sets mtime back (`cp -p`, `touch -r`, a tar restore), and nobody
    /// can set ctime.
    times: u64,
    size: u64,
    counter: Option<u32>,
}

impl FileState {
    /// The state of `file`, whose `stat` is `meta`, and whether its header
    /// says WAL mode.
    fn read(file: &std::fs::File, meta: &std::fs::Metadata) -> (FileState, bool) {
        use std::os::unix::fs::FileExt;
        let mut header = [0u8; 28];
        let read = file.read_exact_at(&mut header, 0);
        let state = FileState {
            // Bytes 18 and 19: 2 in WAL mode, 1 with a rollback journal.
            counter: match read {
                Ok(()) if header[18] == 1 => Some(u32::from_be_bytes([
                    header[24], header[25], header[26], header[27],
                ])),
                _ => None,
            },
            ..FileState::of_stat(meta)
        };
        (state, read.is_ok() && header[18] == 2)
    }

    /// What `stat` tells: all that [`FileState::rewritten_behind_sqlite`]
    /// compares (no counter).
    fn of_stat(meta: &std::fs::Metadata) -> FileState {
        FileState {
            times: (meta.mtime() as u64 ^ ((meta.mtime_nsec() as u64) << 34))
                ^ (meta.ctime() as u64 ^ ((meta.ctime_nsec() as u64) << 34)).rotate_left(17),
            size: meta.size(),
            counter: None,
        }
    }

    /// Whether the file was written since `self`, in a way SQLite might
    /// not tell: SQLite keeps its page cache while the header's counter
    /// equals the one it read last, and a backup copied over the file in
    /// place (`cp`, `cat >`, `dd`, `rsync --inplace`) may carry that very
    /// counter, even when the counter seen here since (a check without a
    /// query) is another. Any write: the next lookup reads through a new
    /// connection; a reconnect per commit costs a schema read.
    fn rewritten_behind_sqlite(&self, now: &FileState) -> bool {
        (self.times, self.size) != (now.times, now.size)
    }

    /// The change token of the file `ident` in this state: every part a
    /// write moves (the file itself, its times and size, SQLite's change
    /// counter). `None` without a counter (WAL mode, a header that could
    /// not be read): nothing then says the data is unchanged.
    fn token(&self, ident: (u64, u64)) -> Option<ChangeToken> {
        let counter = self.counter?;
        Some(ChangeToken::new([
            ident.0,
            ident.1,
            self.times,
            self.size,
            u64::from(counter),
            0,
        ]))
    }
}

/// The change token of the database at `path` as a store's change check
/// would find it ([`Store::change_token`]), from the file alone: its `stat`
/// and header, without a SQLite connection and so without any lock. For a
/// process whose stores may all be waiting on a writer's lock (`serve`'s
/// pool), so that the answers it has cached can still be told fresh.
/// `None` when the file cannot be read or says nothing (WAL mode, a
/// header that cannot be read).
pub fn peek_change_token(path: &Path) -> Option<ChangeToken> {
    let file = std::fs::File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    let (state, _) = FileState::read(&file, &meta);
    state.token((meta.dev(), meta.ino()))
}

/// A SQLite-backed [`Store`].
pub struct SqliteStore {
    path: PathBuf,
    access: Access,
    timeout: Duration,
    /// Deadline for the running statement, in nanoseconds after `epoch`;
    /// 0 = none. Read by the progress handler.
    deadline: Arc<AtomicU64>,
    epoch: Instant,
    open: Option<Open>,
    /// The path as `stat`ed at the start of the running lookup
    /// ([`Store::begin_lookup`]); `None` outside one, and after a reconnect
    /// within one, so that every query then `stat`s for itself.
    pinned: Option<std::fs::Metadata>,
    /// Inside a lookup ([`Store::begin_lookup`] .. [`Store::end_lookup`]).
    in_lookup: bool,
    /// The database was unavailable earlier in this lookup: its next calls
    /// fail at once with the same reason instead of waiting out the
    /// timeout again (a lock held by a writer cost smtpd's lookup process
    /// two timeouts: the change check's reconnect, then the query's).
    failed_in_lookup: Option<String>,
    /// A lock outlasted the timeout and no query has got through since:
    /// later queries wait at most [`LOCKED_WAIT`] for it, not the whole
    /// timeout again ([`SqliteStore::with_limit`]).
    locked: bool,
    /// The kernel's word that the file has not changed since the last
    /// change check; table-mailtable only ([`super::watch`]).
    watch: Option<FileWatch>,
    /// What that check found, the path's `stat` and the token, for a
    /// lookup the watch calls quiet to reuse.
    quiet: Option<(std::fs::Metadata, ChangeToken)>,
    /// The running lookup reuses `quiet`: no `stat`, no header read.
    reusing: bool,
}

/// How long a read that met a hot journal waits before it looks again
/// ([`SqliteStore::with_limit`]): a writer's rollback takes milliseconds.
const HOT_JOURNAL_RECHECK: Duration = Duration::from_millis(20);

/// The pause before a read that met a hot journal looks again (the
/// tests roll the journal back there).
fn before_second_look() {
    #[cfg(test)]
    tests::between_hot_journal_attempts();
    std::thread::sleep(HOT_JOURNAL_RECHECK);
}

/// Whether `e` is SQLite refusing to read past a hot journal it may not
/// roll back (`SQLITE_READONLY_ROLLBACK`).
fn is_hot_journal(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_READONLY_ROLLBACK)
}

/// Whether SQLite's extended code says a WAL reader could not make or use
/// the `-shm` index beside the file (its result codes page:
/// `SQLITE_READONLY_DIRECTORY`, `_CANTINIT`, `_CANTLOCK`, `_RECOVERY`),
/// not that a write was refused.
fn is_wal_side_file_refusal(extended: i32) -> bool {
    use rusqlite::ffi;
    matches!(
        extended,
        ffi::SQLITE_READONLY_DIRECTORY
            | ffi::SQLITE_READONLY_CANTINIT
            | ffi::SQLITE_READONLY_CANTLOCK
            | ffi::SQLITE_READONLY_RECOVERY
    )
}

/// Whether `e` is a lock that outlasted the connection's wait.
fn is_lock_timeout(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// The directory holding `path`, where SQLite makes its side files.
fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Whether `dir` is on a file system mounted read-only (statvfs(3)
/// `ST_RDONLY`).
fn on_read_only_fs(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(folder) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    let mut vfs = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `folder` is a NUL-terminated path that outlives the call, and
    // `vfs` a buffer of the size statvfs(3) fills; it is read only after
    // the call succeeded.
    let stated = unsafe { libc::statvfs(folder.as_ptr(), vfs.as_mut_ptr()) } == 0;
    stated && unsafe { vfs.assume_init() }.f_flag & libc::ST_RDONLY != 0
}

/// What keeps this process from writing the database at `path`, if
/// anything, and the fix: the file system mounted read-only, the file, or
/// its directory, where SQLite creates `NAME-journal` for every write
/// transaction (<https://sqlite.org/tempfiles.html>, "Rollback Journals").
/// `None` when none of them is the reason.
pub fn why_read_only(path: &Path) -> Option<(String, String)> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let dir = directory_of(path);
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).ok();
    let (file, folder) = (c(path)?, c(dir)?);
    if on_read_only_fs(dir) {
        return Some((
            format!(
                "the file system holding {} is mounted read-only",
                dir.display()
            ),
            "remount it read-write (mount -o remount,rw MOUNTPOINT)".to_string(),
        ));
    }
    // access(2) checks the real user id: the CLI's, which is who writes.
    // SAFETY: getuid cannot fail; both paths are NUL-terminated and
    // outlive the calls.
    let uid = unsafe { libc::getuid() };
    if unsafe { libc::access(file.as_ptr(), libc::W_OK) } != 0 {
        return Some((
            format!("this user (uid {uid}) may not write the file"),
            "run mailtable as root".to_string(),
        ));
    }
    if unsafe { libc::access(folder.as_ptr(), libc::W_OK) } != 0 {
        return Some((
            format!(
                "this user (uid {uid}) may not write its directory {}, where SQLite makes the \
                 journal of every write",
                dir.display()
            ),
            // u+w helps only the directory's owner.
            match std::fs::metadata(dir).map(|m| std::os::unix::fs::MetadataExt::uid(&m)) {
                Ok(owner) if owner == uid => {
                    format!("run mailtable as root, or chmod u+w {}", dir.display())
                }
                _ => "run mailtable as root".to_string(),
            },
        ));
    }
    None
}

/// `bound`: the limit on the statement's running time
/// ([`SqliteStore::with_limit`]), named when it ran past it.
fn map_err(path: &Path, bound: Duration, e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode as C;
    let shown = path.display();
    match &e {
        rusqlite::Error::SqliteFailure(f, msg) => {
            let detail = msg.clone().unwrap_or_else(|| f.to_string());
            match f.code {
                // SQLITE_READONLY_ROLLBACK: a writer died inside a
                // transaction and left a hot journal, which SQLite must
                // roll back before anyone reads the file; a read-only
                // connection cannot ("Hot Journals", sqlite.org/lockingv3.html).
                C::ReadOnly if is_hot_journal(&e) => StoreError::Unavailable(format!(
                    "{shown} cannot be read until its hot journal ({shown}-journal, left \
                         by a writer that died inside a transaction) is rolled back, which \
                         needs write access: run any mailtable write as root (`mailtable \
                         migrate`), or open the file with the sqlite3 shell as root"
                )),
                C::NotADatabase => {
                    StoreError::NotADatabase(format!("{shown} is not a SQLite database"))
                }
                C::DatabaseBusy | C::DatabaseLocked => {
                    StoreError::Unavailable(format!("{shown} is locked ({detail})"))
                }
                C::OperationInterrupted => StoreError::Unavailable(format!(
                    "query on {shown} took longer than {}",
                    super::limit_text(bound)
                )),
                // A WAL file (another tool's `PRAGMA journal_mode=wal`):
                // even a reader must create `-shm` beside it, so the
                // daemons, which write nothing, fail with SQLITE_READONLY
                // too (SQLITE_READONLY_DIRECTORY); "cannot write" would
                // send the admin after a write no daemon makes.
                C::ReadOnly
                    if is_wal_side_file_refusal(f.extended_code)
                        && !on_read_only_fs(directory_of(path))
                        && std::fs::File::open(path).is_ok_and(|f| in_wal_mode(&f)) =>
                {
                    StoreError::Unavailable(format!(
                        "{shown} is in WAL journal mode (set by another tool), whose readers \
                         must create {shown}-shm, which this user cannot: run any mailtable \
                         write as root (`mailtable migrate`) to put it back in rollback-journal \
                         mode ({detail})"
                    ))
                }
                // SQLITE_READONLY on a write says "attempt to write a
                // readonly database" whatever stood in the way: the admin
                // needs to know which of three things to fix.
                C::ReadOnly => StoreError::Unavailable(match why_read_only(path) {
                    Some((why, fix)) => format!("cannot write {shown}: {why}; {fix}"),
                    None => format!("cannot use {shown}: {detail}"),
                }),
                C::CannotOpen | C::PermissionDenied | C::SystemIoFailure => {
                    StoreError::Unavailable(format!("cannot use {shown}: {detail}"))
                }
                C::DatabaseCorrupt => {
                    StoreError::Unavailable(format!("{shown} is corrupt: {detail}"))
                }
                // A database without mailtable's table (a wrong path, a
                // file of another program): no retry will find it, and
                // the CLI says so with exit 2; the daemons still answer a
                // temporary failure, as for every schema problem.
                _ if detail == "no such table: users" => StoreError::Schema(format!(
                    "{shown} has no users table; create it with `mailtable init`"
                )),
                _ => StoreError::Other(format!("{shown}: {detail}")),
            }
        }
        _ => StoreError::Other(format!("{shown}: {e}")),
    }
}

/// `SELECT <columns> FROM users <tail>` for every layout: each optional
/// column read where the table has it, its default where not (a table
/// with `active` but no `quota`, hand-made or with a column dropped, still
/// refuses its disabled logins). Indexed by [`Columns::variant`]. Literals,
/// so a lookup allocates no SQL text (rusqlite's statement cache is keyed
/// by it).
macro_rules! select {
    (rowid $tail:literal) => {
        [
            concat!(
                "SELECT username, domain, mailbox, password, 1, NULL, rowid FROM users ",
                $tail
            ),
            concat!(
                "SELECT username, domain, mailbox, password, 1, CAST(quota AS TEXT), rowid FROM users ",
                $tail
            ),
            concat!(
                "SELECT username, domain, mailbox, password, active, NULL, rowid FROM users ",
                $tail
            ),
            concat!(
                "SELECT username, domain, mailbox, password, active, CAST(quota AS TEXT), rowid FROM users ",
                $tail
            ),
        ]
    };
    ($tail:literal) => {
        [
            concat!(
                "SELECT username, domain, mailbox, password, 1, NULL FROM users ",
                $tail
            ),
            concat!(
                "SELECT username, domain, mailbox, password, 1, CAST(quota AS TEXT) FROM users ",
                $tail
            ),
            concat!(
                "SELECT username, domain, mailbox, password, active, NULL FROM users ",
                $tail
            ),
            concat!(
                "SELECT username, domain, mailbox, password, active, CAST(quota AS TEXT) FROM users ",
                $tail
            ),
        ]
    };
}

/// The row-returning queries, each with its index
/// (schema/sqlite/0001_users.sql).
#[derive(Debug, Clone, Copy)]
enum Select {
    Exact,
    Wildcards,
    Targeting,
    WildcardTargets,
    /// [`Store::scan`]'s pages: the first, and those after a row (its
    /// domain, username and rowid), of every row or of one domain.
    PageAll,
    PageAllAfter,
    PageDomain,
    PageDomainAfter,
}

impl Select {
    fn sql(self, cols: Columns) -> &'static str {
        let variants = match self {
            Select::Exact => select!("WHERE domain = ?1 AND username = ?2 ORDER BY rowid"),
            // The expression repeats the index `users_domain_wildcards`
            // exactly, so SQLite probes it instead of reading every row of
            // the domain.
            Select::Wildcards => {
                select!("WHERE domain = ?1 AND instr(username, '%') > 0 ORDER BY rowid")
            }
            Select::Targeting => select!("WHERE mailbox = ?1 ORDER BY rowid"),
            // `+rowid`: with a plain `ORDER BY rowid` SQLite prefers reading
            // the whole table in rowid order over the index and a sort of the
            // few matches (seen on SQLite 3.46, with and without ANALYZE). The
            // unary `+` takes the ordering term out of the planner's index
            // choices (https://sqlite.org/optoverview.html).
            Select::WildcardTargets => select!("WHERE instr(mailbox, '%') > 0 ORDER BY +rowid"),
            // Row values over the index `(domain, username)`, whose
            // entries end with the rowid: each page is an index search,
            // never a sort (see the plans test).
            Select::PageAll => select!(rowid "ORDER BY domain, username, rowid LIMIT ?1"),
            Select::PageAllAfter => select!(
                rowid "WHERE (domain, username, rowid) > (?1, ?2, ?3) \
                 ORDER BY domain, username, rowid LIMIT ?4"
            ),
            Select::PageDomain => {
                select!(rowid "WHERE domain = ?1 ORDER BY domain, username, rowid LIMIT ?2")
            }
            Select::PageDomainAfter => select!(
                rowid "WHERE domain = ?1 AND (username, rowid) > (?2, ?3) \
                 ORDER BY domain, username, rowid LIMIT ?4"
            ),
        };
        variants[cols.variant()]
    }
}

const HAS_DOMAIN: &str = "SELECT 1 FROM users WHERE domain = ?1 LIMIT 1";

/// The newest login rows' hashes (rowid order: the last one inserted
/// first); [`Store::sample_passwords`] keeps the ones that are text.
const SAMPLE_PASSWORD: &str = "SELECT password FROM users \
     WHERE password IS NOT NULL AND password <> '' AND instr(username, '%') = 0 \
     ORDER BY rowid DESC LIMIT 16";

impl SqliteStore {
    /// Open (lazily re-opened after errors) the database at `path`.
    pub fn open(path: &Path, options: &OpenOptions) -> Result<SqliteStore, StoreError> {
        let mut store = SqliteStore {
            path: path.to_path_buf(),
            access: options.access,
            timeout: options.timeout,
            deadline: Arc::new(AtomicU64::new(0)),
            epoch: Instant::now(),
            open: None,
            pinned: None,
            in_lookup: false,
            failed_in_lookup: None,
            locked: false,
            // Only a daemon's: the CLI writes, and checks once per call.
            watch: match options.access {
                Access::ReadOnly => FileWatch::new(path),
                _ => None,
            },
            quiet: None,
            reusing: false,
        };
        store.connect()?;
        Ok(store)
    }

    fn file_ident(&self) -> Result<(u64, u64), StoreError> {
        self.stat().map(|m| (m.dev(), m.ino()))
    }

    fn stat(&self) -> Result<std::fs::Metadata, StoreError> {
        match std::fs::metadata(&self.path) {
            Ok(m) => Ok(m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::Unavailable(format!(
                    "no database at {} (create it with `mailtable init`)",
                    self.path.display()
                )))
            }
            Err(e) => Err(StoreError::Unavailable(format!(
                "cannot use {}: {e}",
                self.path.display()
            ))),
        }
    }

    fn connect(&mut self) -> Result<(), StoreError> {
        self.open = None;
        self.quiet = None;
        // The file may have changed since the lookup's `stat`: from here
        // the lookup checks before every query again.
        self.pinned = None;
        if self.access != Access::Create {
            self.file_ident()?;
        } else if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                return Err(StoreError::Unavailable(format!(
                    "directory {} does not exist",
                    dir.display()
                )));
            }
        }
        let flags = match self.access {
            Access::ReadOnly => OpenFlags::SQLITE_OPEN_READ_ONLY,
            Access::ReadWrite => OpenFlags::SQLITE_OPEN_READ_WRITE,
            Access::Create => OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let path = self.path.clone();
        // The handle, the identity of the file it opened, and the file's
        // state as SQLite is about to read it: a copy
        // carrying the same change counter written over the file before
        // the first change check (a lookup after `update`, a login, an
        // iteration: queries that read pages first) must still get a new
        // connection, as it does after any check; with no state kept, that
        // check took the rewritten file's for the one SQLite had read.
        let open_file = || {
            std::fs::File::open(&path)
                .and_then(|f| {
                    f.metadata().map(|m| {
                        let (state, _) = FileState::read(&f, &m);
                        (f, (m.dev(), m.ino()), state)
                    })
                })
                .map_err(|e| StoreError::Unavailable(format!("cannot use {}: {e}", path.display())))
        };
        // Our own handle (the header reads, and the identity the change
        // check compares with the path's) is opened before SQLite opens
        // its own: if the path is replaced in between, or while SQLite
        // reads the schema, the identity kept is the older file's, and the
        // next `stat` of the path (another file) reconnects. Taken after,
        // it could name the newer file while SQLite reads the older one,
        // and no later check would tell. A database being created has no
        // file yet: SQLite makes it, and only the CLI creates.
        let early = match self.access {
            Access::Create => None,
            _ => Some(open_file()?),
        };
        let conn = Connection::open_with_flags(&path, flags)
            .map_err(|e| map_err(&path, self.timeout, e))?;
        // A new connection reads the schema, which waits for the lock like
        // any query: after a commit the change check reconnects (see
        // `FileState`), so a writer holding the lock after a change made
        // every lookup wait here, the whole timeout each.
        let wait = self.lock_wait();
        // A watched store's thread gets signals, which would cut SQLite's
        // own waits short (see `watch`); the CLI's waits end at Ctrl-C.
        let own_busy_handler = self.watch.is_some() || watch::waits_give_up();
        if own_busy_handler {
            watch::set_lock_wait(wait);
            conn.busy_handler(Some(watch::wait_for_lock))
        } else {
            conn.busy_timeout(wait)
        }
        .map_err(|e| map_err(&path, self.timeout, e))?;
        conn.set_prepared_statement_cache_capacity(32);
        let deadline = Arc::clone(&self.deadline);
        let epoch = self.epoch;
        // Checked every 1000 VM instructions: cheap, and bounds a runaway
        // query (a scan on a database that lacks our indexes) by the timeout.
        conn.progress_handler(
            1000,
            Some(move || {
                let d = deadline.load(Ordering::Relaxed);
                d != 0 && epoch.elapsed().as_nanos() as u64 > d
            }),
        );
        // A journal that looks hot and is gone a moment later gets a second
        // look, as a query's does (`with_limit`): a new connection reads
        // the schema first, so it meets such a journal before any query.
        let columns = match Self::columns(&conn) {
            Err(e) if is_hot_journal(&e) => {
                before_second_look();
                Self::columns(&conn)
            }
            first => first,
        };
        let columns = match columns {
            Ok(c) => c,
            Err(e) => {
                self.locked = is_lock_timeout(&e);
                return Err(map_err(&path, self.timeout, e));
            }
        };
        self.locked = false;
        let (file, ident, state) = match early {
            Some(opened) => opened,
            // `init`: SQLite has made the file by now.
            None => open_file()?,
        };
        let mut wal = in_wal_mode(&file);
        // Only a file in WAL mode: setting the mode takes a lock, and on a
        // file another writer holds it would wait out the timeout once
        // more before the write itself does, and warn of WAL where there
        // is none. The daemons (read only) never convert.
        if self.access != Access::ReadOnly && wal {
            Self::use_rollback_journal(&conn, &path);
            wal = in_wal_mode(&file);
        }
        self.open = Some(Open {
            conn,
            columns,
            ident,
            file,
            reading: false,
            seen: Some(state),
            wal,
            busy: wait,
            own_busy_handler,
        });
        // A new connection may be to another file than the one watched (a
        // mount over the path changes what it names without an event):
        // watch what the paths name now.
        if let Some(watch) = self.watch.as_mut() {
            watch.rearm();
        }
        Ok(())
    }

    /// Put the database in rollback-journal mode (`journal_mode=DELETE`),
    /// converting a WAL database made by an earlier version.
    ///
    /// Why not WAL: a WAL reader must write the `-shm` index, so the
    /// daemons, reading as their own users, would need side files they
    /// cannot create (the `sqlite3` shell deletes them when it exits, a
    /// restore by `cp` leaves none) and a group-writable `-wal` through
    /// which a daemon's group could change the data. A rollback-journal
    /// reader needs nothing but read access to the file: it takes a shared
    /// lock, and sees every commit, by the CLI, by `sqlite3` as root or by a
    /// copied-in backup, at its next transaction
    /// (<https://sqlite.org/lockingv3.html>). The cost, a writer briefly
    /// blocking readers at commit, is bounded by `busy_timeout` and is
    /// nothing at a mail host's write rate.
    ///
    /// Leaving WAL needs the only connection; when a daemon still holds one
    /// the write goes on in WAL and a later command converts the file.
    fn use_rollback_journal(conn: &Connection, path: &Path) {
        let mode =
            conn.pragma_update_and_check(None, "journal_mode", "delete", |r| r.get::<_, String>(0));
        match mode {
            Ok(m) if m.eq_ignore_ascii_case("delete") => {}
            Ok(m) => tracing::warn!(database = %path.display(), mode = %m,
                "database still in {m} journal mode (another connection holds it); a later write converts it"),
            Err(e) => tracing::warn!(database = %path.display(),
                "cannot leave WAL mode yet (another connection holds it): {e}"),
        }
    }

    /// The names of the `users` table's columns.
    fn column_names(conn: &Connection) -> rusqlite::Result<Vec<String>> {
        let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('users')")?;
        let names = stmt.query_map([], |r| r.get::<_, String>(0))?;
        names.collect()
    }

    fn columns(conn: &Connection) -> rusqlite::Result<Columns> {
        let mut cols = Columns::default();
        for n in Self::column_names(conn)? {
            match n.as_str() {
                "active" => cols.active = true,
                "quota" => cols.quota = true,
                _ => {}
            }
        }
        Ok(cols)
    }

    /// The change token: the file's identity, times and size from the
    /// lookup's `stat`, and the change counter in its header (bytes 24..28,
    /// <https://sqlite.org/fileformat2.html>, "File change counter"), which
    /// every commit in rollback-journal mode increments, whoever writes.
    ///
    /// `in_place`: only what needs no more than that `stat` and one read of
    /// the header, never waiting on a lock; `Ok(None)` when more would be
    /// needed: the path names another file (the connection would be
    /// reopened, which reads the schema under a lock a writer may hold), or
    /// the file was rewritten behind SQLite's back (a new connection).
    ///
    /// A file in WAL mode (or too short for a header: a database SQLite has
    /// not written yet) has no token, in place or not: its counter stays
    /// still while commits go to the `-wal`, and a daemon closes its
    /// connection after each lookup there (see `end_lookup`), so the one
    /// stamp left, `PRAGMA data_version`, would start afresh on every
    /// connection and equal another's. Its answers are never served from
    /// the cache fresh (stale-if-error still serves them in an outage).
    fn token(&mut self, in_place: bool) -> Result<Option<ChangeToken>, StoreError> {
        self.failed_before()?;
        if let (true, Some((_, token))) = (self.reusing, &self.quiet) {
            return Ok(Some(*token));
        }
        let result = self.read_token(in_place);
        let result = self.note_failure(result);
        // What a lookup the watch calls quiet reuses: a token read with
        // the lookup's own `stat`, or nothing.
        if self.watch.is_some() && self.in_lookup && !in_place {
            self.quiet = match (&result, &self.pinned) {
                (Ok(Some(token)), Some(meta)) => Some((meta.clone(), *token)),
                _ => None,
            };
        }
        result
    }

    /// [`SqliteStore::token`]'s work.
    fn read_token(&mut self, in_place: bool) -> Result<Option<ChangeToken>, StoreError> {
        let meta = match &self.pinned {
            Some(meta) => meta.clone(),
            None => self.stat()?,
        };
        let ident = (meta.dev(), meta.ino());
        let current = self.open.as_ref().is_some_and(|o| o.ident == ident);
        if in_place && !current {
            return Ok(None);
        }
        let pinned = self.pinned.is_some();
        self.follow(ident)?;
        // A reconnect (connect() unpins) that opened the file the lookup
        // `stat`ed: the lookup goes on pinned to it, in one transaction.
        if pinned && self.pinned.is_none() && self.open.as_ref().is_some_and(|o| o.ident == ident) {
            self.pinned = Some(meta.clone());
        }
        let Some(open) = self.open.as_mut() else {
            return Err(StoreError::Other("connection vanished".into()));
        };
        let (state, wal) = FileState::read(&open.file, &meta);
        if open
            .seen
            .is_some_and(|seen| seen.rewritten_behind_sqlite(&state))
        {
            if in_place {
                return Ok(None);
            }
            // SQLite's pages of the old contents must go: a new
            // connection, then the check again, taking the state it finds
            // as the new connection's, so this happens once. (The `stat`
            // of a pinned lookup is older than the file the connection
            // just opened: compared, a write in between would reconnect
            // forever. Taken as seen, it only makes the next lookup
            // reconnect again if the file moved on meanwhile.)
            self.connect()?;
            if pinned && self.open.as_ref().is_some_and(|o| o.ident == ident) {
                self.pinned = Some(meta);
            }
            if let Some(open) = self.open.as_mut() {
                open.seen = None;
            }
            return self.token(false);
        }
        open.seen = Some(state);
        open.wal = wal;
        Ok(state.token(ident))
    }

    /// Reopen when the connection was dropped or the path now names
    /// another file (`ident`: its device and inode as just `stat`ed).
    fn follow(&mut self, ident: (u64, u64)) -> Result<(), StoreError> {
        if self.open.as_ref().is_none_or(|o| o.ident != ident) {
            self.connect()?;
        }
        Ok(())
    }

    /// The live connection, reopened if it was dropped or the file changed
    /// (since the lookup's `stat`, or, outside a lookup, since the last
    /// query).
    fn conn(&mut self) -> Result<&mut Open, StoreError> {
        let (ident, state) = match &self.pinned {
            Some(meta) => ((meta.dev(), meta.ino()), None),
            None => {
                let meta = self.stat()?;
                ((meta.dev(), meta.ino()), Some(FileState::of_stat(&meta)))
            }
        };
        self.follow(ident)?;
        // A daemon's query outside a lookup (a login's, an iteration's,
        // `update`'s) has no change check before it: a copy written over
        // the file with SQLite's own change counter would be read through
        // the old pages. Any write since the connection last looked gets a
        // new one, as the check gives a lookup. Only read-only stores (the
        // CLI's queries run inside its own write transactions), and never
        // inside an open read transaction (the rest of a lookup would read
        // a second state of the data).
        let rewritten = self.access == Access::ReadOnly
            && state.is_some_and(|now| {
                self.open.as_ref().is_some_and(|o| {
                    o.ident == ident
                        && !o.reading
                        && o.seen
                            .is_some_and(|seen| seen.rewritten_behind_sqlite(&now))
                })
            });
        if rewritten {
            self.connect()?;
        }
        self.open
            .as_mut()
            .ok_or_else(|| StoreError::Other("connection vanished".into()))
    }

    /// Run `f` on the connection under the deadline; drop the connection on
    /// an error other than a lock timeout, so the next call starts afresh.
    fn with<T>(
        &mut self,
        f: impl FnMut(&Connection, Columns) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        self.with_limit(self.timeout, f)
    }

    /// [`SqliteStore::with`] with `limit` on the statement's running time
    /// (lock waits stay bounded by `busy_timeout`, the configured timeout).
    fn with_limit<T>(
        &mut self,
        limit: Duration,
        mut f: impl FnMut(&Connection, Columns) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        self.failed_before()?;
        let start = self.epoch.elapsed() + limit;
        self.deadline
            .store(start.as_nanos() as u64, Ordering::Relaxed);
        let in_lookup = self.pinned.is_some();
        let mut retried = false;
        let outcome = loop {
            // Only a statement that starts a read can meet a hot journal
            // (SQLite looks for one when it takes its shared lock).
            let starts_read = !self.open.as_ref().is_some_and(|o| o.reading);
            // Err(Err): no connection; Err(Ok): the statement failed.
            let outcome = match self.conn().map(|_| ()) {
                Err(e) => Err(Err(e)),
                // After conn(): a reconnect that read the schema has told
                // whether the lock is still held.
                Ok(()) => {
                    let wait = self.lock_wait();
                    match self.open.as_mut() {
                        None => Err(Err(StoreError::Other("connection vanished".into()))),
                        Some(open) => Self::wait_for_locks(open, wait)
                            .and_then(|()| Self::read_in_one_transaction(open, in_lookup))
                            .and_then(|()| f(&open.conn, open.columns))
                            .map_err(Ok),
                    }
                }
            };
            match outcome {
                // A journal seen as hot that was not: SQLite found the
                // file, and by the time it opened it a writer rolling back
                // (the sqlite3 shell whose COMMIT found the database
                // locked) had deleted it (the false positive `hasHotJournal`
                // in SQLite's pager.c accepts). A read-only connection
                // cannot roll back, so it fails; looked at again a moment
                // later, the journal is gone. A real one (a writer killed
                // in a transaction) is there again, and named.
                Err(Ok(e)) if starts_read && !retried && is_hot_journal(&e) => {
                    retried = true;
                    self.open = None;
                    before_second_look();
                }
                outcome => break outcome,
            }
        };
        // Also when no connection could be made: no deadline is left for
        // the statements that run outside this bound (a new connection's
        // schema read, the change check's `data_version`).
        self.deadline.store(0, Ordering::Relaxed);
        let result = outcome.map_err(|e| match e {
            Err(no_connection) => no_connection,
            Ok(e) => {
                // A lock that outlasted the timeout leaves the connection
                // as good as it was: kept, the next lookup's change check
                // reads the file's header without waiting on the lock
                // (answers from the cache come at once while a writer
                // holds it), where a new connection would first wait the
                // timeout out reading the schema.
                let locked = is_lock_timeout(&e);
                let err = map_err(&self.path, limit, e);
                if locked {
                    self.locked = true;
                } else if !matches!(err, StoreError::Conflict(_)) {
                    self.open = None;
                }
                err
            }
        });
        if result.is_ok() {
            self.locked = false;
        }
        self.note_failure(result)
    }

    /// How long the next statement waits for a lock: [`LOCKED_WAIT`] once
    /// one has outlasted the timeout, until a statement gets through.
    fn lock_wait(&self) -> Duration {
        match self.locked {
            true => LOCKED_WAIT.min(self.timeout),
            false => self.timeout,
        }
    }

    /// Set the connection's lock wait to `wait` if it is not that already.
    fn wait_for_locks(open: &mut Open, wait: Duration) -> rusqlite::Result<()> {
        if open.own_busy_handler {
            watch::set_lock_wait(wait);
        } else if open.busy != wait {
            open.conn.busy_timeout(wait)?;
            open.busy = wait;
        }
        Ok(())
    }

    /// The reason the database was unavailable earlier in this lookup, as
    /// this call's error ([`SqliteStore::failed_in_lookup`]).
    fn failed_before(&self) -> Result<(), StoreError> {
        match &self.failed_in_lookup {
            Some(why) => Err(StoreError::Unavailable(why.clone())),
            None => Ok(()),
        }
    }

    /// Remember, for the rest of the lookup, that the database was
    /// unavailable.
    fn note_failure<T>(&mut self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(StoreError::Unavailable(why)) = &result {
            if self.in_lookup {
                self.failed_in_lookup = Some(why.clone());
            }
        }
        result
    }

    /// Within a lookup, open one read transaction before its first query,
    /// which [`Store::end_lookup`] ends: SQLite then takes its shared lock,
    /// looks for a hot journal and checks its page cache once per lookup,
    /// not once per query (an alias and its targets are two or more
    /// queries), and every query of the lookup reads one snapshot. A
    /// connection already in a transaction (the CLI's writes) is left as
    /// it is.
    fn read_in_one_transaction(open: &mut Open, in_lookup: bool) -> rusqlite::Result<()> {
        if in_lookup && !open.reading && open.conn.is_autocommit() {
            open.conn.prepare_cached("BEGIN")?.execute([])?;
            open.reading = true;
        }
        Ok(())
    }

    fn rows(
        &mut self,
        query: Select,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<Row>, StoreError> {
        self.with(|conn, cols| {
            let mut stmt = conn.prepare_cached(query.sql(cols))?;
            let rows = stmt.query_map(args, row_from)?;
            rows.collect()
        })
    }

    /// The plan SQLite chooses for each lookup (`EXPLAIN QUERY PLAN`), by
    /// method name: for the test that no lookup scans the table.
    pub fn lookup_plans(&mut self) -> Result<Vec<(&'static str, String)>, StoreError> {
        self.with(|conn, cols| {
            let probes: [(&'static str, &str, &[&str]); 5] = [
                ("exact", Select::Exact.sql(cols), &["example.org", "hugo"]),
                ("wildcards", Select::Wildcards.sql(cols), &["example.org"]),
                ("has_domain", HAS_DOMAIN, &["example.org"]),
                (
                    "targeting",
                    Select::Targeting.sql(cols),
                    &["hugo@example.org"],
                ),
                ("wildcard_targets", Select::WildcardTargets.sql(cols), &[]),
            ];
            probes
                .into_iter()
                .map(|(name, sql, args)| {
                    Ok((
                        name,
                        query_plan(conn, sql, rusqlite::params_from_iter(args))?,
                    ))
                })
                .collect()
        })
    }
}

/// The plan SQLite chooses for `sql` with `args` (`EXPLAIN QUERY PLAN`),
/// its lines joined by ` / `.
fn query_plan(
    conn: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
) -> rusqlite::Result<String> {
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
    let lines = stmt
        .query_map(args, |r| r.get::<_, String>(3))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(lines.join(" / "))
}

/// Give the database to `gid`: the file 0640 (readable by the daemons'
/// group, writable by root only). Returns the paths changed. Ownership
/// changes need root; without it only the mode is set. In rollback-journal
/// mode the database has no side files the readers need.
pub fn share_files(path: &Path, gid: Option<u32>) -> std::io::Result<Vec<PathBuf>> {
    use std::os::unix::fs::PermissionsExt;
    if !path.exists() {
        return Ok(Vec::new());
    }
    if let Some(gid) = gid {
        std::os::unix::fs::chown(path, None, Some(gid))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o640))?;
    Ok(vec![path.to_path_buf()])
}

/// The six columns of a row, in `select!`'s order.
fn row_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok(Row {
        username: text(r, 0)?.unwrap_or_default(),
        domain: text(r, 1)?.unwrap_or_default(),
        mailbox: text(r, 2)?.unwrap_or_default(),
        password: password(r, 3)?,
        active: active(r, 4)?,
        quota: text(r, 5)?,
    })
}

/// The `active` flag, readable whatever another program wrote: NULL is on
/// (a table without the column reads the same), a number is on unless
/// zero, and so is text that is a whole number. Any other text (`'yes'`,
/// `'true'`) is off, as a `WHERE active = 1` of the SQL tables of other
/// setups reads it: the mailbox may not log in, keeps getting mail, and
/// lists as disabled. Read strictly, one such row failed every listing of
/// the rows (`doveadm user '*'`, `user list`, doctor's checks).
fn active(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<bool> {
    use rusqlite::types::ValueRef;
    Ok(match r.get_ref(i)? {
        ValueRef::Null => true,
        ValueRef::Integer(n) => n != 0,
        ValueRef::Real(x) => x != 0.0,
        ValueRef::Text(t) | ValueRef::Blob(t) => std::str::from_utf8(t)
            .ok()
            .and_then(|t| t.trim().parse::<i64>().ok())
            .is_some_and(|n| n != 0),
    })
}

/// A text column of a row written by another program, readable whatever
/// it holds: bytes that are no UTF-8 (a value carried over in Latin-1, a
/// BLOB) get U+FFFD in their place, a number its digits. Such a key then
/// matches no lookup and such a target fails to parse, for that row
/// alone; read strictly, one of them failed every listing of the rows
/// (`doveadm user '*'`, doctor's checks).
fn text(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<String>> {
    use rusqlite::types::ValueRef;
    Ok(match r.get_ref(i)? {
        ValueRef::Null => None,
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Integer(n) => Some(n.to_string()),
        ValueRef::Real(x) => Some(x.to_string()),
    })
}

/// The stored hash, which is never guessed at: a value that is no UTF-8
/// text becomes one no daemon checks (its own logins fail temporarily,
/// doctor names it), while the row still serves as a mailbox for mail
/// and userdb lookups, which need no password.
fn password(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<PasswordHash>> {
    use rusqlite::types::ValueRef;
    Ok(match r.get_ref(i)? {
        ValueRef::Null => None,
        ValueRef::Text(t) => Some(PasswordHash::new(
            std::str::from_utf8(t).unwrap_or(NOT_TEXT_HASH),
        )),
        _ => Some(PasswordHash::new(NOT_TEXT_HASH)),
    })
}

/// What a stored password that is no UTF-8 text reads as: a scheme no
/// daemon knows.
const NOT_TEXT_HASH: &str = "{NOT-UTF-8-TEXT}";

impl Store for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn exact(&mut self, username: &str, domain: &str) -> Result<Vec<Row>, StoreError> {
        self.rows(Select::Exact, &[&domain, &username])
    }

    fn wildcards(&mut self, domain: &str) -> Result<Vec<Row>, StoreError> {
        self.rows(Select::Wildcards, &[&domain])
    }

    fn has_domain(&mut self, domain: &str) -> Result<bool, StoreError> {
        self.with(|conn, _| {
            let mut stmt = conn.prepare_cached(HAS_DOMAIN)?;
            Ok(stmt.query_row([domain], |_| Ok(())).optional()?.is_some())
        })
    }

    fn sample_passwords(&mut self) -> Result<Vec<String>, StoreError> {
        // A value that is no UTF-8 text (a `{PLAIN}` password in Latin-1
        // carried over by hand, a BLOB) is that one row's problem, found
        // when it logs in: as the sample it failed every login of every
        // user. It is left out.
        self.with(|conn, _| {
            let mut stmt = conn.prepare_cached(SAMPLE_PASSWORD)?;
            let mut rows = stmt.query([])?;
            let mut sample = Vec::new();
            while let Some(r) = rows.next()? {
                if let rusqlite::types::ValueRef::Text(t) = r.get_ref(0)? {
                    if let Ok(text) = std::str::from_utf8(t) {
                        sample.push(text.to_string());
                    }
                }
            }
            Ok(sample)
        })
    }

    fn targeting(&mut self, mailbox: &str) -> Result<Vec<Row>, StoreError> {
        self.rows(Select::Targeting, &[&mailbox])
    }

    fn wildcard_targets(&mut self) -> Result<Vec<Row>, StoreError> {
        self.rows(Select::WildcardTargets, &[])
    }

    fn change_token(&mut self) -> Result<Option<ChangeToken>, StoreError> {
        self.token(false)
    }

    fn known_unchanged_since(&self, token: ChangeToken) -> Option<bool> {
        // A file gone or unreadable tells nothing: the outage the cache
        // rides out (mail to external destinations keeps relaying).
        peek_change_token(&self.path).map(|now| now == token)
    }

    fn change_token_in_place(&mut self) -> Option<Result<Option<ChangeToken>, StoreError>> {
        match self.token(true) {
            Ok(None) => None,
            checked => Some(checked),
        }
    }

    /// One `stat` for the whole lookup; a failure leaves nothing pinned, so
    /// the first query `stat`s again and reports it. None at all when the
    /// file's watch saw nothing since the last check: the lookup reuses
    /// what that check found.
    fn begin_lookup(&mut self) {
        // A lookup that panicked never ended: end its transaction first.
        self.end_lookup();
        self.in_lookup = true;
        if let Some(watch) = self.watch.as_mut() {
            match &self.quiet {
                Some((meta, _)) if self.open.is_some() && watch.quiet() => {
                    self.pinned = Some(meta.clone());
                    self.reusing = true;
                    return;
                }
                _ => {
                    self.quiet = None;
                    watch.begin_check();
                }
            }
        }
        self.pinned = self.stat().ok();
    }

    fn end_lookup(&mut self) {
        self.in_lookup = false;
        self.reusing = false;
        self.failed_in_lookup = None;
        self.pinned = None;
        if let Some(open) = self.open.as_mut().filter(|o| o.reading) {
            open.reading = false;
            if open
                .conn
                .prepare_cached("COMMIT")
                .and_then(|mut st| st.execute([]))
                .is_err()
            {
                // Ending a read transaction fails only with the connection:
                // the next lookup starts afresh.
                self.open = None;
            }
        }
        // A connection to a WAL database holds a shared lock for as long
        // as it is open (<https://sqlite.org/wal.html>, "Persistence of
        // WAL mode"), and leaving WAL needs the only one: a daemon that
        // kept it would keep the file in WAL for good (someone ran
        // `PRAGMA journal_mode=wal` by hand), and its `-wal` file would
        // outlive a restore by `cp`, rolling the restored file forward
        // with the old data. A daemon lets go of it after each lookup; the
        // last connection to close checkpoints and removes the `-wal`,
        // and the CLI's next write converts the file.
        if self.access == Access::ReadOnly && self.open.as_ref().is_some_and(|o| o.wal) {
            self.open = None;
        }
    }

    fn reopen(&mut self) -> Result<(), StoreError> {
        self.connect()
    }

    fn list(&mut self, domain: Option<&str>) -> Result<Vec<Row>, StoreError> {
        let mut rows = Vec::new();
        self.scan(domain, &mut |r| rows.push(r))?;
        Ok(rows)
    }

    /// A page of `SCAN_PAGE` rows at a time, each page a query of its
    /// own: outside a transaction the shared lock is held while a page is
    /// read, never while the caller handles it (a list piped into a pager
    /// the admin leaves open would otherwise keep every writer out, and a
    /// waiting writer keeps the daemons out). Inside one (`domain del`)
    /// the pages read one state of the data.
    fn scan(&mut self, domain: Option<&str>, each: &mut dyn FnMut(Row)) -> Result<(), StoreError> {
        let mut after: Option<(String, String, i64)> = None;
        loop {
            let page = self.with_limit(BULK_TIMEOUT, |conn, cols| {
                let (query, args): (Select, Vec<&dyn rusqlite::ToSql>) = match (&domain, &after) {
                    (None, None) => (Select::PageAll, vec![&SCAN_PAGE]),
                    (None, Some((d, u, id))) => (Select::PageAllAfter, vec![d, u, id, &SCAN_PAGE]),
                    (Some(d), None) => (Select::PageDomain, vec![d, &SCAN_PAGE]),
                    (Some(d), Some((_, u, id))) => {
                        (Select::PageDomainAfter, vec![d, u, id, &SCAN_PAGE])
                    }
                };
                let mut stmt = conn.prepare_cached(query.sql(cols))?;
                let rows = stmt.query_map(args.as_slice(), |r| Ok((row_from(r)?, r.get(6)?)))?;
                rows.collect::<rusqlite::Result<Vec<(Row, i64)>>>()
            })?;
            let more = page.len() as i64 == SCAN_PAGE;
            after = page
                .last()
                .map(|(r, id)| (r.domain.clone(), r.username.clone(), *id));
            for (row, _) in page {
                each(row);
            }
            if !more {
                return Ok(());
            }
        }
    }

    fn domains(&mut self) -> Result<Vec<String>, StoreError> {
        self.with_limit(BULK_TIMEOUT, |conn, _| {
            let mut stmt =
                conn.prepare_cached("SELECT DISTINCT domain FROM users ORDER BY domain")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect()
        })
    }

    fn begin(&mut self) -> Result<(), StoreError> {
        // IMMEDIATE takes the write lock now, so the checks a command makes
        // before writing still hold when it writes.
        self.with(|conn, _| conn.execute_batch("BEGIN IMMEDIATE"))
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        self.with(|conn, _| conn.execute_batch("COMMIT"))
    }

    fn rollback(&mut self) {
        if let Some(open) = &self.open {
            let _ = open.conn.execute_batch("ROLLBACK");
        }
    }

    fn insert(&mut self, row: &Row) -> Result<(), StoreError> {
        let cols = self.conn()?.columns;
        if !(cols.active && cols.quota) && (!row.active || row.quota.is_some()) {
            return Err(StoreError::Schema(
                "this database has no active/quota columns; run `mailtable migrate` first".into(),
            ));
        }
        let password = row.password.as_ref().map(|p| p.stored().to_string());
        self.with(|conn, cols| {
            if cols.active && cols.quota {
                let mut stmt = conn.prepare_cached(
                    "INSERT INTO users (username, domain, mailbox, password, active, quota) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                stmt.execute(params![
                    row.username,
                    row.domain,
                    row.mailbox,
                    password,
                    row.active as i64,
                    row.quota
                ])?;
            } else {
                let mut stmt = conn.prepare_cached(
                    "INSERT INTO users (username, domain, mailbox, password) VALUES (?1, ?2, ?3, ?4)",
                )?;
                stmt.execute(params![row.username, row.domain, row.mailbox, password])?;
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
        self.with(|conn, _| match what {
            Delete::Mailbox => conn.execute(
                "DELETE FROM users WHERE domain = ?1 AND username = ?2 AND password IS NOT NULL",
                params![domain, username],
            ),
            Delete::Alias(None) => conn.execute(
                "DELETE FROM users WHERE domain = ?1 AND username = ?2 AND password IS NULL",
                params![domain, username],
            ),
            Delete::Alias(Some(targets)) => {
                let mut n = 0;
                let mut stmt = conn.prepare_cached(
                    "DELETE FROM users WHERE domain = ?1 AND username = ?2 \
                     AND password IS NULL AND mailbox = ?3",
                )?;
                for t in targets {
                    n += stmt.execute(params![domain, username, t])?;
                }
                Ok(n)
            }
        })
    }

    fn set_password(
        &mut self,
        username: &str,
        domain: &str,
        hash: &PasswordHash,
    ) -> Result<usize, StoreError> {
        self.with(|conn, _| {
            conn.execute(
                "UPDATE users SET password = ?3 \
                 WHERE domain = ?1 AND username = ?2 AND password IS NOT NULL",
                params![domain, username, hash.stored()],
            )
        })
    }

    fn set_active(
        &mut self,
        username: &str,
        domain: &str,
        active: bool,
    ) -> Result<usize, StoreError> {
        if !self.conn()?.columns.active {
            return Err(StoreError::Schema(
                "this database has no `active` column; run `mailtable migrate` first (a table \
                 that lost it after schema 2: ALTER TABLE users ADD COLUMN active INTEGER NOT \
                 NULL DEFAULT 1)"
                    .into(),
            ));
        }
        self.with(|conn, _| {
            conn.execute(
                "UPDATE users SET active = ?3 \
                 WHERE domain = ?1 AND username = ?2 AND password IS NOT NULL",
                params![domain, username, active as i64],
            )
        })
    }

    fn set_quota(
        &mut self,
        username: &str,
        domain: &str,
        quota: Option<&str>,
    ) -> Result<usize, StoreError> {
        if !self.conn()?.columns.quota {
            return Err(StoreError::Schema(
                "this database has no `quota` column; run `mailtable migrate` first (a table \
                 that lost it after schema 2: ALTER TABLE users ADD COLUMN quota TEXT NULL)"
                    .into(),
            ));
        }
        self.with(|conn, _| {
            conn.execute(
                "UPDATE users SET quota = ?3 \
                 WHERE domain = ?1 AND username = ?2 AND password IS NOT NULL",
                params![domain, username, quota],
            )
        })
    }

    fn retarget(&mut self, from: &str, to: &str) -> Result<usize, StoreError> {
        self.with(|conn, _| {
            conn.execute(
                "UPDATE users SET mailbox = ?2 WHERE mailbox = ?1 AND password IS NULL",
                params![from, to],
            )
        })
    }

    fn schema_state(&mut self) -> Result<SchemaState, StoreError> {
        let state = self.with(|conn, _| {
            let has = |name: &str| -> rusqlite::Result<bool> {
                conn.query_row(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
                    [name],
                    |_| Ok(()),
                )
                .optional()
                .map(|o| o.is_some())
            };
            if has("mailtable_schema")? {
                let v: Option<i64> =
                    conn.query_row("SELECT max(version) FROM mailtable_schema", [], |r| {
                        r.get(0)
                    })?;
                return Ok(Some(SchemaState::Version(v.unwrap_or(0).max(0) as u32)));
            }
            if has("users")? {
                return Ok(Some(SchemaState::Unversioned));
            }
            // A view over another program's tables (a common adapter) is
            // no empty database: `init` would fail on it ("views may not
            // be indexed") and lookups fail on `rowid`. Said as it is.
            let view: Option<()> = conn
                .query_row(
                    "SELECT 1 FROM sqlite_master WHERE type = 'view' AND name = 'users'",
                    [],
                    |_| Ok(()),
                )
                .optional()?;
            Ok(match view {
                Some(()) => None,
                None => Some(SchemaState::Empty),
            })
        })?;
        state.ok_or_else(|| {
            StoreError::Schema(format!(
                "users in {} is a view; mailtable reads a table of its own (lookups use its \
                 rowid and indexes): make one in a new file with `mailtable init` and bring the \
                 rows over with `mailtable import` (docs/import.md)",
                self.path.display()
            ))
        })
    }

    fn apply_migration(&mut self, version: u32, sql: &str) -> Result<(), StoreError> {
        let result = self.with_limit(BULK_TIMEOUT, |conn, _| {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            let step = (|| {
                let present = Self::column_names(conn)?;
                conn.execute_batch(&without_present_columns(sql, &present))?;
                conn.execute_batch(
                    "CREATE TABLE IF NOT EXISTS mailtable_schema (version INTEGER NOT NULL)",
                )?;
                conn.execute("DELETE FROM mailtable_schema", [])?;
                conn.execute(
                    "INSERT INTO mailtable_schema (version) VALUES (?1)",
                    [version],
                )?;
                conn.execute_batch("COMMIT")
            })();
            if step.is_err() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            step
        });
        // Columns may have changed: re-read them on next use.
        self.open = None;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::migrate;

    fn fresh() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = create(&dir.path().join("mail.db"));
        (dir, s)
    }

    /// A new mailtable database at `path`, opened by the CLI.
    fn create(path: &Path) -> SqliteStore {
        let opts = OpenOptions {
            access: Access::Create,
            timeout: Duration::from_secs(2),
        };
        let mut s = SqliteStore::open(path, &opts).unwrap();
        migrate::migrate(&mut s, migrate::Dialect::Sqlite, true).unwrap();
        s
    }

    #[test]
    fn lookups_use_indexes_never_a_scan() {
        let (_d, mut s) = fresh();
        let plans = s.lookup_plans().unwrap();
        assert_eq!(plans.len(), 5);
        for (name, plan) in plans {
            assert!(plan.contains("USING"), "{name}: {plan}");
            assert!(plan.contains("INDEX"), "{name}: {plan}");
            // Every step that reads the table is an index search.
            for step in plan.split(" / ") {
                assert!(!step.starts_with("SCAN"), "{name}: {plan}");
            }
        }
    }

    #[test]
    fn missing_file_is_unavailable_and_recovers() {
        let (dir, mut s) = fresh();
        s.insert(&Row {
            username: "hugo".into(),
            domain: "barrera.io".into(),
            mailbox: "hugo@barrera.io".into(),
            password: Some(PasswordHash::new("$2b$04$x")),
            active: true,
            quota: None,
        })
        .unwrap();
        let path = dir.path().join("mail.db");
        let moved = dir.path().join("moved.db");
        std::fs::rename(&path, &moved).unwrap();
        assert!(matches!(
            s.exact("hugo", "barrera.io"),
            Err(StoreError::Unavailable(_))
        ));
        std::fs::rename(&moved, &path).unwrap();
        assert_eq!(s.exact("hugo", "barrera.io").unwrap().len(), 1);
    }

    #[test]
    fn not_a_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk.db");
        std::fs::write(
            &path,
            b"this is not sqlite, just text long enough to matter....",
        )
        .unwrap();
        let opts = OpenOptions {
            access: Access::ReadOnly,
            timeout: Duration::from_secs(1),
        };
        let err = match SqliteStore::open(&path, &opts) {
            Ok(mut s) => s.exact("a", "b").unwrap_err(),
            Err(e) => e,
        };
        assert!(matches!(err, StoreError::NotADatabase(_)), "{err}");
    }

    fn reader(path: &Path) -> SqliteStore {
        let opts = OpenOptions {
            access: Access::ReadOnly,
            timeout: Duration::from_secs(2),
        };
        SqliteStore::open(path, &opts).unwrap()
    }

    /// A `users` view (an adapter over another program's tables) is said
    /// as such: lookups fail on its rowid, and `init` cannot index it.
    #[test]
    fn a_users_view_is_named_not_taken_for_an_empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("view.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TABLE t (u, d, m, p); \
                 CREATE VIEW users AS SELECT u AS username, d AS domain, m AS mailbox, \
                 p AS password FROM t;",
            )
            .unwrap();
        match reader(&path).schema_state() {
            Err(StoreError::Schema(why)) => assert!(why.contains("users in "), "{why}"),
            other => panic!("{other:?}"),
        }
        let why = reader(&path).schema_state().unwrap_err().to_string();
        assert!(why.contains("is a view"), "{why}");
    }

    fn journal_mode(path: &Path) -> String {
        Connection::open(path)
            .unwrap()
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap()
    }

    /// What the article's workflow does: the `sqlite3` shell as root, a few
    /// INSERTs, exit. A reader opened before sees them at its next lookup.
    /// The sample of the stored hashes skips a value that is no UTF-8
    /// text (the newest row's `{PLAIN}` in Latin-1 made every login of
    /// every user fail); with none left, there is no sample.
    #[test]
    fn the_hash_sample_skips_values_that_are_no_text() {
        let (dir, s) = fresh();
        drop(s);
        let path = dir.path().join("mail.db");
        let c = Connection::open(&path).unwrap();
        c.execute_batch(
            "INSERT INTO users (username, domain, mailbox, password) \
             VALUES ('a', 'x.org', 'a@x.org', '$2b$10$B8ECNE9QBhHF22AH.0SUfOqT1Lopy88o0K.Kd0soWRmwY3JnVPGRi'); \
             INSERT INTO users (username, domain, mailbox, password) \
             VALUES ('latin', 'x.org', 'latin@x.org', CAST(X'7B504C41494E7D6AFC7267656E' AS TEXT)); \
             INSERT INTO users (username, domain, mailbox, password) \
             VALUES ('blob', 'x.org', 'blob@x.org', X'00FF');",
        )
        .unwrap();
        let opts = OpenOptions {
            access: Access::ReadOnly,
            timeout: Duration::from_secs(1),
        };
        let mut r = SqliteStore::open(&path, &opts).unwrap();
        assert_eq!(
            r.sample_passwords().unwrap(),
            ["$2b$10$B8ECNE9QBhHF22AH.0SUfOqT1Lopy88o0K.Kd0soWRmwY3JnVPGRi"]
        );
        c.execute_batch("DELETE FROM users WHERE username = 'a'")
            .unwrap();
        assert!(r.sample_passwords().unwrap().is_empty());
    }

    /// Rows written by another program with bytes that are no UTF-8 text
    /// stay readable: a listing of all rows still works, a password of
    /// that kind is a hash no daemon checks (not an error for the row),
    /// a target of that kind fails to parse for its key alone.
    #[test]
    fn rows_that_are_no_utf8_text_stay_readable() {
        let (dir, s) = fresh();
        drop(s);
        let path = dir.path().join("mail.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "INSERT INTO users (username, domain, mailbox, password) \
                 VALUES ('ok', 'x.org', 'ok@x.org', NULL); \
                 INSERT INTO users (username, domain, mailbox, password) \
                 VALUES ('latin', 'x.org', 'latin@x.org', CAST(X'7B504C41494E7D6AFC7267656E' AS TEXT)); \
                 INSERT INTO users (username, domain, mailbox, password) \
                 VALUES ('odd', 'x.org', CAST(X'6AFC40782E6F7267' AS TEXT), NULL);",
            )
            .unwrap();
        let opts = OpenOptions {
            access: Access::ReadOnly,
            timeout: Duration::from_secs(1),
        };
        let mut r = SqliteStore::open(&path, &opts).unwrap();
        assert_eq!(r.list(None).unwrap().len(), 3);
        let latin = r.exact("latin", "x.org").unwrap();
        let hash = latin[0].password.as_ref().unwrap();
        assert!(hash.validate().is_err());
        assert!(!hash.dovecot_only());
        assert_eq!(latin[0].mailbox, "latin@x.org");
        let odd = r.exact("odd", "x.org").unwrap();
        assert_eq!(odd[0].mailbox, "j\u{FFFD}@x.org");
    }

    /// An `active` flag written by hand as something else than 0 or 1
    /// fails no listing: a number is on unless zero, other text is off.
    #[test]
    fn an_active_flag_of_any_type_is_read() {
        let (dir, s) = fresh();
        drop(s);
        let path = dir.path().join("mail.db");
        let flags = [
            ("yes", "'yes'", false),
            ("true", "'true'", false),
            ("blob", "X'31'", true),
            ("spaced", "' 1 '", true),
            ("real", "1.5", true),
            ("realzero", "0.0", false),
            ("two", "2", true),
            ("zero", "0", false),
        ];
        let c = Connection::open(&path).unwrap();
        for (name, value, _) in flags {
            c.execute_batch(&format!(
                "INSERT INTO users (username, domain, mailbox, password, active) \
                 VALUES ('{name}', 'x.org', '{name}@x.org', NULL, {value})"
            ))
            .unwrap();
        }
        let opts = OpenOptions {
            access: Access::ReadOnly,
            timeout: Duration::from_secs(1),
        };
        let mut r = SqliteStore::open(&path, &opts).unwrap();
        assert_eq!(r.list(None).unwrap().len(), flags.len());
        for (name, value, on) in flags {
            let row = &r.exact(name, "x.org").unwrap()[0];
            assert_eq!(row.active, on, "active = {value}");
        }
    }

    /// A writer that died inside a transaction leaves a hot journal; a
    /// read-only reader cannot roll it back, and the error says what
    /// happened and what fixes it, not "attempt to write a readonly
    /// database". A read-write open (the CLI) rolls it back and the
    /// readers work again.
    #[test]
    fn a_hot_journal_is_named_with_its_fix() {
        let (dir, s) = fresh();
        drop(s);
        let path = dir.path().join("mail.db");
        shell_insert(&path, "before");
        let crashed = dir.path().join("crashed.db");
        hot_journal_of(&path, &crashed);
        let ro = OpenOptions {
            access: Access::ReadOnly,
            timeout: Duration::from_secs(1),
        };
        let err = match SqliteStore::open(&crashed, &ro)
            .and_then(|mut r| r.exact("before", "example.org"))
        {
            Err(e) => e.to_string(),
            Ok(rows) => panic!("read through a hot journal: {rows:?}"),
        };
        assert!(err.contains("hot journal"), "{err}");
        assert!(err.contains("mailtable migrate"), "{err}");
        // The CLI's open rolls it back; the transaction never happened.
        let rw = OpenOptions {
            access: Access::ReadWrite,
            timeout: Duration::from_secs(1),
        };
        let mut w = SqliteStore::open(&crashed, &rw).unwrap();
        assert_eq!(w.exact("before", "example.org").unwrap().len(), 1);
        drop(w);
        let mut r = SqliteStore::open(&crashed, &ro).unwrap();
        assert_eq!(r.exact("before", "example.org").unwrap().len(), 1);
        assert!(r.exact("u1", "example.org").unwrap().is_empty());
    }

    thread_local! {
        /// What a test does between a read that met a hot journal and
        /// its second look ([`SqliteStore::with_limit`]).
        static BETWEEN_HOT_JOURNAL_ATTEMPTS: std::cell::RefCell<Option<Box<dyn FnMut()>>> =
            std::cell::RefCell::new(None);
    }

    pub(super) fn between_hot_journal_attempts() {
        BETWEEN_HOT_JOURNAL_ATTEMPTS.with(|h| {
            if let Some(f) = h.borrow_mut().as_mut() {
                f();
            }
        });
    }

    /// The pair of files a writer killed inside a transaction leaves, at
    /// `crashed` and its journal: `path`'s, copied while a transaction that
    /// spilled pages into the file is open.
    fn hot_journal_of(path: &Path, crashed: &Path) {
        let writer = Connection::open(path).unwrap();
        writer
            .execute_batch(
                "PRAGMA cache_size = 1; BEGIN; \
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) \
                 INSERT INTO users (username, domain, mailbox) \
                 SELECT 'u' || i, 'example.org', 'x@example.org' FROM n;",
            )
            .unwrap();
        std::fs::copy(path, crashed).unwrap();
        let journal = |p: &Path| PathBuf::from(format!("{}-journal", p.display()));
        std::fs::copy(journal(path), journal(crashed)).unwrap();
        writer.execute_batch("ROLLBACK").unwrap();
    }

    /// A journal that looks hot to a read and is gone a moment later (the
    /// sqlite3 shell rolling back a COMMIT that found the database locked)
    /// costs the read a second look, not an error; one that stays is named.
    #[test]
    fn a_journal_rolled_back_while_a_read_looks_is_looked_at_again() {
        let (dir, s) = fresh();
        drop(s);
        let path = dir.path().join("mail.db");
        shell_insert(&path, "before");
        let crashed = dir.path().join("crashed.db");
        std::fs::copy(&path, &crashed).unwrap();
        let ro = OpenOptions {
            access: Access::ReadOnly,
            timeout: Duration::from_secs(1),
        };
        let mut r = SqliteStore::open(&crashed, &ro).unwrap();
        assert_eq!(r.exact("before", "example.org").unwrap().len(), 1);
        hot_journal_of(&path, &crashed);
        let rolled_back = std::rc::Rc::new(std::cell::Cell::new(0));
        let count = rolled_back.clone();
        let writable = crashed.clone();
        BETWEEN_HOT_JOURNAL_ATTEMPTS.with(|h| {
            *h.borrow_mut() = Some(Box::new(move || {
                // Any connection that may write rolls it back.
                let rw = Connection::open(&writable).unwrap();
                rw.query_row("SELECT count(*) FROM users", [], |_| Ok(()))
                    .unwrap();
                count.set(count.get() + 1);
            }))
        });
        let rows = r.exact("before", "example.org");
        BETWEEN_HOT_JOURNAL_ATTEMPTS.with(|h| *h.borrow_mut() = None);
        assert_eq!(rows.unwrap().len(), 1);
        assert_eq!(rolled_back.get(), 1, "one second look");
        assert!(r.exact("u1", "example.org").unwrap().is_empty());

        // A journal that stays: named after the second look.
        hot_journal_of(&path, &crashed);
        let err = r.exact("before", "example.org").unwrap_err().to_string();
        assert!(err.contains("hot journal"), "{err}");
    }

    /// A backup restored by `cp`: a copy of `path` with `username` added,
    /// copied back over it (written in place, same inode). Returns the
    /// backup.
    fn restore_by_cp(path: &Path, username: &str) -> PathBuf {
        let backup = path.with_extension("backup");
        std::fs::copy(path, &backup).unwrap();
        shell_insert(&backup, username);
        std::fs::copy(&backup, path).unwrap();
        backup
    }

    /// A tool that writes a new file and renames it into place: a copy of
    /// `path` with `username` added, renamed over it (a new inode).
    fn rename_into_place(path: &Path, username: &str) {
        let copy = path.with_extension("new");
        std::fs::copy(path, &copy).unwrap();
        shell_insert(&copy, username);
        std::fs::rename(&copy, path).unwrap();
    }

    fn shell_insert(path: &Path, username: &str) {
        let c = Connection::open(path).unwrap();
        c.execute(
            "INSERT INTO users (username, domain, mailbox, password) VALUES (?1, 'example.org', ?1 || '@example.org', NULL)",
            [username],
        )
        .unwrap();
    }

    #[test]
    fn new_databases_use_a_rollback_journal() {
        let (dir, s) = fresh();
        drop(s);
        let path = dir.path().join("mail.db");
        assert_eq!(journal_mode(&path), "delete");
        for side in ["mail.db-wal", "mail.db-shm", "mail.db-journal"] {
            assert!(!dir.path().join(side).exists(), "{side}");
        }
    }

    /// A database someone switched to WAL mode.
    fn wal_database() -> (tempfile::TempDir, PathBuf) {
        let (dir, s) = fresh();
        drop(s);
        let path = dir.path().join("mail.db");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "journal_mode", "wal")
            .unwrap();
        (dir, path)
    }

    /// A reader that may not create `-shm` beside a WAL file gets
    /// SQLITE_READONLY_DIRECTORY: the daemons must read why (WAL, and the
    /// write that ends it), not "cannot write" as a write of the CLI
    /// would. The code as SQLite gives it, since root, who runs the tests,
    /// may create the file.
    #[test]
    fn a_wal_reader_refused_its_side_file_is_told_of_wal() {
        let (_dir, path) = wal_database();
        let refused = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_READONLY_DIRECTORY),
            Some("attempt to write a readonly database".into()),
        );
        let shown = map_err(&path, Duration::from_secs(1), refused).to_string();
        assert!(shown.contains("is in WAL journal mode"), "{shown}");
        assert!(shown.contains("mailtable migrate"), "{shown}");
        assert!(!shown.contains("cannot write"), "{shown}");
        // A write refused (plain SQLITE_READONLY) is not about WAL.
        let refused = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_READONLY),
            Some("attempt to write a readonly database".into()),
        );
        let shown = map_err(&path, Duration::from_secs(1), refused).to_string();
        assert!(!shown.contains("WAL"), "{shown}");
    }

    #[test]
    fn a_wal_database_is_converted_by_the_next_write_access() {
        let (dir, path) = wal_database();
        assert_eq!(journal_mode(&path), "wal");
        assert!(in_wal_mode(&std::fs::File::open(&path).unwrap()));
        let opts = OpenOptions {
            access: Access::ReadWrite,
            timeout: Duration::from_secs(2),
        };
        drop(SqliteStore::open(&path, &opts).unwrap());
        assert_eq!(journal_mode(&path), "delete");
        assert!(!in_wal_mode(&std::fs::File::open(&path).unwrap()));
        assert!(!dir.path().join("mail.db-wal").exists());
        assert!(!dir.path().join("mail.db-shm").exists());
    }

    /// A daemon does not keep a WAL database open between lookups: its
    /// connection would hold the file in WAL for good (leaving WAL needs
    /// the only connection), and keep a `-wal` that a restore by `cp`
    /// would be rolled forward with.
    #[test]
    fn a_daemon_lets_go_of_a_wal_database_between_lookups() {
        let (dir, path) = wal_database();
        shell_insert(&path, "before");
        let mut d = reader(&path);
        d.begin_lookup();
        assert_eq!(d.change_token().unwrap(), None, "WAL: no token");
        assert_eq!(d.exact("before", "example.org").unwrap().len(), 1);
        d.end_lookup();
        let opts = OpenOptions {
            access: Access::ReadWrite,
            timeout: Duration::from_secs(2),
        };
        drop(SqliteStore::open(&path, &opts).unwrap());
        assert_eq!(journal_mode(&path), "delete");
        assert!(!dir.path().join("mail.db-wal").exists());
        // The daemon goes on, on the converted file, with a token again,
        // and sees a write.
        shell_insert(&path, "after");
        d.begin_lookup();
        assert!(d.change_token().unwrap().is_some());
        assert_eq!(d.exact("after", "example.org").unwrap().len(), 1);
        d.end_lookup();
    }

    /// Every way of writing: a reader opened before sees it at its next
    /// lookup, and its change token (the answer cache's freshness check)
    /// moves, the same on every connection, and stays put otherwise.
    #[test]
    fn readers_see_every_way_of_writing_without_a_restart() {
        let (dir, s) = fresh();
        drop(s);
        let path = dir.path().join("mail.db");
        let mut r = reader(&path);
        assert!(r.exact("shell", "example.org").unwrap().is_empty());
        let mut last = r.change_token().unwrap().expect("SQLite gives a token");
        assert_eq!(r.change_token().unwrap(), Some(last), "nothing written");
        // A daemon opened before: one lookup, the change check first.
        let mut d = reader(&path);
        let mut sees = |r: &mut SqliteStore, user: &str, how: &str| {
            assert_eq!(r.exact(user, "example.org").unwrap().len(), 1, "{how}");
            let now = r.change_token().unwrap().unwrap();
            assert_ne!(now, last, "the token did not move after {how}");
            assert_eq!(r.change_token().unwrap(), Some(now), "after {how}");
            let other = reader(&r.path).change_token().unwrap();
            assert_eq!(other, Some(now), "another connection after {how}");
            d.begin_lookup();
            assert_eq!(d.change_token().unwrap(), Some(now), "a daemon after {how}");
            assert_eq!(d.exact(user, "example.org").unwrap().len(), 1, "{how}");
            d.end_lookup();
            last = now;
        };

        // The sqlite3 shell, as root.
        shell_insert(&path, "shell");
        sees(&mut r, "shell", "the sqlite3 shell");

        let backup = restore_by_cp(&path, "restored");
        sees(&mut r, "restored", "a backup copied over the file");

        // The shell's `.restore` (SQLite's backup API).
        shell_insert(&backup, "viabackupapi");
        {
            let src = Connection::open(&backup).unwrap();
            let mut dst = Connection::open(&path).unwrap();
            rusqlite::backup::Backup::new(&src, &mut dst)
                .unwrap()
                .run_to_completion(64, Duration::ZERO, None)
                .unwrap();
        }
        sees(&mut r, "viabackupapi", "the backup API");

        rename_into_place(&path, "renamed");
        sees(&mut r, "renamed", "a file renamed into place");

        assert_eq!(journal_mode(&path), "delete");
        assert!(!dir.path().join("mail.db-wal").exists());
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(r.change_token(), Err(StoreError::Unavailable(_))));
    }

    /// A daemon's lookup with the file's watch (table-mailtable's): no
    /// change check while nothing happens, and every way of writing seen
    /// at the very next lookup, also those the plain check is there for (a
    /// file renamed into place, removed, a directory moved).
    #[test]
    fn a_watched_daemon_checks_only_after_a_change_and_sees_every_one() {
        assert!(super::super::watch::enable());
        let top = tempfile::tempdir().unwrap();
        let sub = top.path().join("mail");
        std::fs::create_dir(&sub).unwrap();
        let path = sub.join("mail.db");
        drop(create(&path));
        let mut d = reader(&path);
        let checks = |d: &SqliteStore| d.watch.as_ref().expect("a watch").checks();
        // One lookup: its token, whether it reused the last check's, and
        // whether `user` is found.
        let lookup = |d: &mut SqliteStore, user: &str| {
            d.begin_lookup();
            let reused = d.reusing;
            let token = d.change_token();
            let found = d.exact(user, "example.org").map(|r| r.len());
            d.end_lookup();
            (token, reused, found)
        };
        // Quiet again: a lookup that reuses the last check, within a few.
        // Any event costs a check, and a directory above the file (/tmp
        // here) sees other tests' files come and go: a check more is no
        // failure, a change without one is.
        let settle = |d: &mut SqliteStore, user: &str| {
            let quiet = (0..100).any(|_| lookup(d, user).1);
            assert!(quiet, "never quiet again");
        };
        let (first, _, _) = lookup(&mut d, "nobody");
        let first = first.unwrap().expect("a token");
        settle(&mut d, "nobody");
        let before = checks(&d);
        let mut reused = 0;
        for _ in 0..20 {
            let (token, quiet, found) = lookup(&mut d, "nobody");
            assert_eq!(token.unwrap(), Some(first));
            assert_eq!(found.unwrap(), 0);
            reused += usize::from(quiet);
        }
        assert!(reused > 0, "nothing written: lookups without a check");
        assert_eq!(checks(&d) - before, 20 - reused as u64);

        let mut last = first;
        // A change: the very next lookup checks and sees it.
        let mut sees = |d: &mut SqliteStore, user: &str, how: &str| {
            let before = checks(d);
            let (token, reused, found) = lookup(d, user);
            assert!(!reused, "{how}: the next lookup checks");
            assert_eq!(checks(d), before + 1, "{how}: one check");
            let token = token.unwrap().expect("a token");
            assert_ne!(token, last, "{how}: the token moves");
            assert_eq!(found.unwrap(), 1, "{how}: the row is seen");
            settle(d, user);
            assert_eq!(lookup(d, user).0.unwrap(), Some(token), "{how}");
            last = token;
        };
        shell_insert(&path, "shell");
        sees(&mut d, "shell", "the sqlite3 shell");

        restore_by_cp(&path, "restored");
        sees(&mut d, "restored", "a backup copied over the file");

        rename_into_place(&path, "renamed");
        sees(&mut d, "renamed", "a file renamed into place");
        // The watch follows the new file: a write to it is seen too.
        shell_insert(&path, "afterrename");
        sees(&mut d, "afterrename", "a write to the renamed-in file");
        // Even one that does not touch the directory (no journal: its
        // own bytes again, through an open descriptor).
        let rewrite = |file: &Path| {
            let bytes = std::fs::read(file).unwrap();
            let f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
            std::os::unix::fs::FileExt::write_all_at(&f, &bytes[..100], 0).unwrap();
            f
        };
        let held = rewrite(&path);
        assert!(!lookup(&mut d, "afterrename").1, "a write in place");
        drop(held);
        settle(&mut d, "afterrename");

        // The directory moved away and another put in its place.
        let new_sub = top.path().join("mail.new");
        std::fs::create_dir(&new_sub).unwrap();
        std::fs::copy(&path, new_sub.join("mail.db")).unwrap();
        shell_insert(&new_sub.join("mail.db"), "newdir");
        std::fs::rename(&sub, top.path().join("mail.old")).unwrap();
        std::fs::rename(&new_sub, &sub).unwrap();
        sees(&mut d, "newdir", "the directory replaced");

        // Removed: an error at once, and again at every lookup; back: seen.
        std::fs::rename(&path, top.path().join("away.db")).unwrap();
        for _ in 0..2 {
            let (token, reused, _) = lookup(&mut d, "newdir");
            assert!(!reused);
            assert!(
                matches!(token, Err(StoreError::Unavailable(_))),
                "{token:?}"
            );
        }
        std::fs::copy(top.path().join("away.db"), &path).unwrap();
        shell_insert(&path, "back");
        sees(&mut d, "back", "the file back");

        use std::os::unix::fs::PermissionsExt;
        // Changes only the file's own watch hears of, through another
        // name of it (a hard link in a directory not watched): its bytes
        // written again by a process that keeps it open, its mode.
        let elsewhere = top.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let link = elsewhere.join("hard.db");
        std::fs::hard_link(&path, &link).unwrap();
        settle(&mut d, "back");
        let writer = rewrite(&link);
        assert!(!lookup(&mut d, "back").1, "a write through a hard link");
        settle(&mut d, "back");
        std::fs::set_permissions(&link, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(!lookup(&mut d, "back").1, "chmod through a hard link");
        settle(&mut d, "back");
        drop(writer);
        settle(&mut d, "back");
        // A directory on the path made unreadable to others.
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(!lookup(&mut d, "back").1, "chmod of the directory");
        settle(&mut d, "back");
        let (token, _, _) = lookup(&mut d, "back");
        last = token.unwrap().unwrap();

        // Another thread does not trust this thread's signals.
        let (token, reused, _) =
            std::thread::scope(|s| s.spawn(|| lookup(&mut d, "back")).join().unwrap());
        assert!(!reused);
        assert_eq!(token.unwrap(), Some(last));

        // Silence stands for QUIET_MAX at most: what no event reports (a
        // mount over the path) is looked at within it.
        settle(&mut d, "back");
        std::thread::sleep(super::super::watch::QUIET_MAX + Duration::from_millis(100));
        let before = checks(&d);
        assert!(!lookup(&mut d, "back").1, "silence past its bound");
        assert_eq!(checks(&d), before + 1);
    }

    /// A mount over the database's directory queues no event. A lookup
    /// checks within QUIET_MAX anyway and reads the file now at the path;
    /// its new connection watches that file, so a write to it is seen at
    /// the very next lookup again. Root only (a bind mount, undone at
    /// the end); skipped where mounting is not allowed.
    #[test]
    fn a_mount_over_the_directory_is_seen_and_then_watched() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: a bind mount needs root");
            return;
        }
        assert!(super::super::watch::enable());
        let top = tempfile::tempdir().unwrap();
        let (dir, other) = (top.path().join("d"), top.path().join("d2"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::create_dir(&other).unwrap();
        let path = dir.join("mail.db");
        drop(create(&path));
        std::fs::copy(&path, other.join("mail.db")).unwrap();
        shell_insert(&other.join("mail.db"), "mounted");
        let mut d = reader(&path);
        let found = |d: &mut SqliteStore, user: &str| {
            d.begin_lookup();
            let reused = d.reusing;
            let _ = d.change_token();
            let n = d.exact(user, "example.org").unwrap().len();
            d.end_lookup();
            (n, reused)
        };
        assert_eq!(found(&mut d, "mounted").0, 0);
        // Undone however the test ends: the reader closed first (a mount
        // with a file open on it cannot be undone), then the umount.
        struct Mounted(std::path::PathBuf, Option<SqliteStore>);
        impl Drop for Mounted {
            fn drop(&mut self) {
                drop(self.1.take());
                let _ = std::process::Command::new("umount").arg(&self.0).status();
            }
        }
        let ok = std::process::Command::new("mount")
            .arg("--bind")
            .arg(&other)
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("skipped: mount --bind not allowed here");
            return;
        }
        let mut m = Mounted(dir.clone(), Some(d));
        let d = m.1.as_mut().unwrap();
        std::thread::sleep(super::super::watch::QUIET_MAX + Duration::from_millis(100));
        assert_eq!(
            found(d, "mounted").0,
            1,
            "the mounted file, within the bound"
        );
        // Quiet again (the new file's own watch), then a write to it.
        assert!((0..100).any(|_| found(d, "mounted").1), "never quiet again");
        shell_insert(&path, "later");
        let (n, reused) = found(d, "later");
        assert!(!reused, "the write to the mounted file is heard");
        assert_eq!(n, 1);
    }

    /// The watch's signals do not cut a watched lookup's wait for a
    /// writer's lock short: SQLite's own busy handler would count each
    /// interrupted sleep in full and give up early.
    #[test]
    fn signals_do_not_shorten_a_watched_lookups_wait_for_a_lock() {
        assert!(super::super::watch::enable());
        let (dir, s) = fresh();
        drop(s);
        let path = dir.path().join("mail.db");
        let timeout = Duration::from_millis(600);
        let opts = OpenOptions {
            access: Access::ReadOnly,
            timeout,
        };
        let mut r = SqliteStore::open(&path, &opts).unwrap();
        assert!(r.watch.is_some());
        let writer = Connection::open(&path).unwrap();
        writer.execute_batch("BEGIN EXCLUSIVE").unwrap();
        // SAFETY: the id of the calling thread, which outlives the scope
        // below, where it is signalled.
        let me = unsafe { libc::pthread_self() };
        let stop = std::sync::atomic::AtomicBool::new(false);
        let (result, waited) = std::thread::scope(|scope| {
            scope.spawn(|| {
                while !stop.load(Ordering::SeqCst) {
                    // SAFETY: `me` is alive until `stop` is set.
                    unsafe { libc::pthread_kill(me, libc::SIGIO) };
                    std::thread::sleep(Duration::from_millis(2));
                }
            });
            // The signals stop also when the lookup panics, or the scope
            // would wait for them forever.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let t = Instant::now();
                r.begin_lookup();
                let _ = r.change_token();
                let result = r.exact("shell", "example.org");
                r.end_lookup();
                (result, t.elapsed())
            }));
            stop.store(true, Ordering::SeqCst);
            outcome.unwrap_or_else(|p| std::panic::resume_unwind(p))
        });
        assert!(
            matches!(result, Err(StoreError::Unavailable(_))),
            "{result:?}"
        );
        assert!(waited >= timeout * 9 / 10, "gave up after {waited:?}");
        writer.execute_batch("ROLLBACK").unwrap();
    }

    /// No watch where the kernel would not report every change: a path
    /// through a symbolic link.
    #[test]
    fn a_path_through_a_symbolic_link_is_checked_at_every_lookup() {
        assert!(super::super::watch::enable());
        let (dir, s) = fresh();
        drop(s);
        let link = dir.path().join("link.db");
        std::os::unix::fs::symlink(dir.path().join("mail.db"), &link).unwrap();
        assert!(reader(&link).watch.is_none());
        assert!(reader(&dir.path().join("mail.db")).watch.is_some());
    }

    /// A writer that gives up at once when a reader holds the file.
    fn impatient_insert(path: &Path, username: &str) -> rusqlite::Result<usize> {
        let c = Connection::open(path).unwrap();
        c.busy_timeout(Duration::ZERO).unwrap();
        c.execute(
            "INSERT INTO users (username, domain, mailbox, password) VALUES (?1, 'example.org', ?1 || '@example.org', NULL)",
            [username],
        )
    }

    /// `scan` reads pages: across their boundaries (one username's rows
    /// among them) it gives every row once, in `ORDER BY domain, username,
    /// rowid`; each page is an index search, never a sort; and between
    /// pages no lock is held, so a writer commits while the caller is
    /// still handling rows (a list piped into a pager).
    #[test]
    fn scan_reads_pages_in_list_order_and_holds_no_lock_between_them() {
        let (dir, s) = fresh();
        drop(s);
        let path = dir.path().join("mail.db");
        let c = Connection::open(&path).unwrap();
        // 25,000 rows over two domains; `team@b.org` has 6,000 of them,
        // across the first page boundary.
        c.execute_batch(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 19000) \
             INSERT INTO users (username, domain, mailbox, password) \
             SELECT 'u' || (i % 7000), CASE WHEN i % 2 = 0 THEN 'a.org' ELSE 'b.org' END, \
             'x' || i || '@c.org', NULL FROM n; \
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 6000) \
             INSERT INTO users (username, domain, mailbox, password) \
             SELECT 'team', 'b.org', 't' || i || '@c.org', NULL FROM n;",
        )
        .unwrap();
        let want = |domain: Option<&str>| -> Vec<String> {
            let sql = "SELECT domain || ' ' || username || ' ' || mailbox FROM users \
                       WHERE ?1 IS NULL OR domain = ?1 ORDER BY domain, username, rowid";
            let mut st = c.prepare(sql).unwrap();
            st.query_map([domain], |r| r.get(0))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        };
        let mut r = reader(&path);
        for domain in [None, Some("b.org"), Some("none.org")] {
            let mut got = Vec::new();
            r.scan(domain, &mut |row| {
                got.push(format!("{} {} {}", row.domain, row.username, row.mailbox))
            })
            .unwrap();
            assert_eq!(got, want(domain), "{domain:?}");
        }
        assert_eq!(r.list(None).unwrap().len(), 25_000);

        let mut rows = 0;
        let mut written = Vec::new();
        r.scan(None, &mut |_| {
            rows += 1;
            if rows % 10_000 == 1 {
                written.push(impatient_insert(&path, &format!("w{rows}")).is_ok());
            }
        })
        .unwrap();
        assert_eq!(written, [true, true, true], "a writer waited for the scan");
        // Not a snapshot: rows committed meanwhile, after the page read
        // so far (example.org sorts last), come in the later pages; the
        // third went in while the last page was being handled.
        assert_eq!(rows, 25_002);

        for (name, sql) in [
            ("first", Select::PageAll),
            ("after", Select::PageAllAfter),
            ("domain", Select::PageDomain),
            ("domain after", Select::PageDomainAfter),
        ] {
            let text = sql.sql(Columns {
                active: true,
                quota: true,
            });
            let n = c.prepare(text).unwrap().parameter_count();
            let plan = query_plan(&c, text, rusqlite::params_from_iter(vec![1; n])).unwrap();
            assert!(
                plan.contains("INDEX users_domain_username"),
                "{name}: {plan}"
            );
            assert!(!plan.contains("TEMP B-TREE"), "{name}: {plan}");
        }
    }

    /// A daemon's lookup is one read transaction from its first query to
    /// its end: no commit lands between its queries (an alias and its
    /// target are read from one state of the data), and once it ends it
    /// holds nothing, so a writer that will not wait commits at once. A
    /// lookup that never ended (it panicked) is ended by the next one.
    #[test]
    fn a_lookup_is_one_read_transaction_and_holds_nothing_after() {
        let (dir, s) = fresh();
        drop(s);
        let path = dir.path().join("mail.db");
        shell_insert(&path, "a");
        let mut r = reader(&path);
        let found = |r: &mut SqliteStore, u: &str| r.exact(u, "example.org").unwrap().len();

        r.begin_lookup();
        assert_eq!(found(&mut r, "a"), 1);
        let busy = impatient_insert(&path, "b").unwrap_err();
        assert!(
            busy.to_string().contains("locked"),
            "a commit between two queries of a lookup: {busy}"
        );
        assert_eq!(found(&mut r, "b"), 0);
        r.end_lookup();
        impatient_insert(&path, "b").expect("the lookup ended and holds no lock");

        r.begin_lookup();
        assert_eq!(found(&mut r, "b"), 1, "the next lookup sees the commit");
        // Never ended: the next lookup ends it before it begins.
        r.begin_lookup();
        impatient_insert(&path, "c").expect("the unended lookup was ended");
        assert_eq!(found(&mut r, "c"), 1, "and the new one reads from now");
        r.end_lookup();

        // Outside a lookup every query is a transaction of its own.
        assert_eq!(found(&mut r, "c"), 1);
        impatient_insert(&path, "d").expect("a query outside a lookup holds nothing");
        assert_eq!(found(&mut r, "d"), 1);

        // A lookup whose change check reconnects (the file was replaced)
        // is one transaction on the new connection too.
        let next = dir.path().join("next.db");
        std::fs::copy(&path, &next).unwrap();
        std::fs::rename(&next, &path).unwrap();
        r.begin_lookup();
        r.change_token().unwrap();
        assert_eq!(found(&mut r, "d"), 1);
        assert!(impatient_insert(&path, "e").is_err(), "the lock is held");
        r.end_lookup();
        impatient_insert(&path, "e").expect("and released at the end");
    }

    /// A lookup that finds the file locked by a writer waits out the
    /// timeout once (two timeouts stalled smtpd's lookup process), and the
    /// connection outlives the failure, so that the change check of the
    /// next lookups needs no lock: a cached answer is served at once while
    /// the writer holds it. The next lookups wait only [`LOCKED_WAIT`],
    /// until one gets through.
    #[test]
    fn a_lookup_waits_for_a_held_lock_once() {
        let (dir, s) = fresh();
        drop(s);
        let path = dir.path().join("mail.db");
        let timeout = Duration::from_millis(1000);
        let opts = OpenOptions {
            access: Access::ReadOnly,
            timeout,
        };
        let mut r = SqliteStore::open(&path, &opts).unwrap();
        let lookup = |r: &mut SqliteStore| {
            let t = Instant::now();
            r.begin_lookup();
            // The table's cache runs the query even when the check failed
            // (an answer that needs no data stays right).
            let _ = r.change_token();
            let result = r.exact("shell", "example.org");
            r.end_lookup();
            (result, t.elapsed())
        };
        assert!(lookup(&mut r).0.unwrap().is_empty());
        let before = r.change_token().unwrap();
        let writer = Connection::open(&path).unwrap();
        writer.execute_batch("BEGIN EXCLUSIVE").unwrap();
        // The open connection's query waits and fails.
        let (result, waited) = lookup(&mut r);
        assert!(
            matches!(result, Err(StoreError::Unavailable(_))),
            "{result:?}"
        );
        assert!(waited >= timeout / 2, "{waited:?}");
        // The connection is kept: the check in place (serve's answers
        // from the cache) reads the header without waiting on the lock,
        // and the data has not changed.
        assert!(matches!(r.change_token_in_place(), Some(Ok(t)) if t == before));
        // The next lookups' queries wait only briefly for a lock that has
        // outlasted the timeout already: a recipient costs smtpd five
        // lookups, and each waiting the whole timeout held every message
        // for 25 s.
        for _ in 0..3 {
            let (result, waited) = lookup(&mut r);
            assert!(
                matches!(result, Err(StoreError::Unavailable(_))),
                "{result:?}"
            );
            assert!(waited < timeout / 2, "waited the timeout again: {waited:?}");
        }
        writer.execute_batch("ROLLBACK").unwrap();
        shell_insert(&path, "shell");
        assert_eq!(lookup(&mut r).0.unwrap().len(), 1);
        // A query got through: the next lock is waited for in full again
        // (a short write ends within it).
        writer.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            writer.execute_batch("ROLLBACK").unwrap();
        });
        let (result, waited) = lookup(&mut r);
        release.join().unwrap();
        assert_eq!(result.unwrap().len(), 1, "waited {waited:?}");
        assert!(waited >= Duration::from_millis(250), "{waited:?}");
        // A commit, then the lock: the change check reconnects (a new
        // connection reads the schema, which waits for the lock too).
        // The first lookup waits the timeout, the next ones briefly.
        shell_insert(&path, "later");
        let writer = Connection::open(&path).unwrap();
        writer.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let (result, waited) = lookup(&mut r);
        assert!(result.is_err(), "{result:?}");
        assert!(waited >= timeout / 2, "{waited:?}");
        for _ in 0..3 {
            let (result, waited) = lookup(&mut r);
            assert!(result.is_err(), "{result:?}");
            assert!(waited < timeout / 2, "after a change: {waited:?}");
        }
        writer.execute_batch("ROLLBACK").unwrap();
        assert_eq!(lookup(&mut r).0.unwrap().len(), 1);
    }

    /// The token read from the file alone is the store's own, before and
    /// after a write by another program, and moves with the data: a
    /// process whose stores all wait on a lock tells its cached answers
    /// fresh by it. A writer holding the lock does not stop it.
    #[test]
    fn the_peeked_token_is_the_stores() {
        let (dir, s) = fresh();
        drop(s);
        let path = dir.path().join("mail.db");
        let mut r = reader(&path);
        let first = r.change_token().unwrap();
        assert!(first.is_some());
        assert_eq!(peek_change_token(&path), first);
        std::thread::sleep(Duration::from_millis(50));
        shell_insert(&path, "new");
        let peeked = peek_change_token(&path);
        assert_ne!(peeked, first);
        assert_eq!(r.change_token().unwrap(), peeked);
        let writer = Connection::open(&path).unwrap();
        writer.execute_batch("BEGIN EXCLUSIVE").unwrap();
        assert_eq!(peek_change_token(&path), peeked);
        writer.execute_batch("ROLLBACK").unwrap();
        assert_eq!(peek_change_token(&dir.path().join("none.db")), None);
    }

    /// A database `mail.db` with a row `live`, and `copy.db`, a copy of it
    /// from before that row with a row `edit` instead: the same change
    /// counter, size and free list, other contents.
    fn same_counter_copies() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let (dir, s) = fresh();
        drop(s);
        let path = dir.path().join("mail.db");
        let copy = dir.path().join("copy.db");
        std::fs::copy(&path, &copy).unwrap();
        shell_insert(&path, "live");
        shell_insert(&copy, "edit");
        let counter = |p: &Path| std::fs::read(p).unwrap()[24..28].to_vec();
        assert_eq!(counter(&path), counter(&copy), "the case under test");
        (dir, path, copy)
    }

    /// A backup copied over the file in place whose change counter equals
    /// the live file's (two copies of one database, each changed once
    /// since): SQLite compares only that counter to keep its page cache,
    /// so the check must start a new connection, or the old contents are
    /// served until the next commit. Both ways of checking (the daemons'
    /// lookup, serve's check in place on an idle store) see the backup.
    #[test]
    fn a_copy_with_the_same_change_counter_is_seen() {
        let (_dir, path, copy) = same_counter_copies();
        let counter = |p: &Path| std::fs::read(p).unwrap()[24..28].to_vec();
        let mut r = reader(&path);
        let found = |r: &mut SqliteStore, user: &str| {
            r.begin_lookup();
            r.change_token().unwrap();
            let n = r.exact(user, "example.org").unwrap().len();
            r.end_lookup();
            n
        };
        assert_eq!(found(&mut r, "live"), 1);
        let before = r.change_token().unwrap();
        // A write lands on a later clock tick than the last one seen (the
        // kernel's file times are as coarse as its timer).
        std::thread::sleep(Duration::from_millis(50));
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::fs::copy(&copy, &path).unwrap();
        // With the old modification time put back, as `cp -p` or a tar
        // restore does: only the change time tells.
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert_eq!(counter(&path), counter(&copy));
        assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), mtime);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            std::fs::metadata(&copy).unwrap().len()
        );
        assert!(r.change_token_in_place().is_none(), "decided in place");
        assert_ne!(r.change_token().unwrap(), before);
        assert_eq!(found(&mut r, "edit"), 1, "the copy's row");
        assert_eq!(found(&mut r, "live"), 0, "the replaced row");
    }

    /// The same, where the connection's first reads were queries without a
    /// change check (table-mailtable's `update` and its `auth` service,
    /// serve's iteration): the copy is still seen at the next lookup. It
    /// was not: the first check took the copy's state for the one SQLite's
    /// pages came from, and the table answered from the old pages, mixed
    /// with the copy's, until the next write.
    #[test]
    fn a_copy_with_the_same_counter_is_seen_after_reads_without_a_check() {
        let (_dir, path, copy) = same_counter_copies();
        std::fs::copy(&path, path.with_file_name("live.db")).unwrap();
        let counter = |p: &Path| std::fs::read(p).unwrap()[24..28].to_vec();
        let mut r = reader(&path);
        assert_eq!(r.exact("live", "example.org").unwrap().len(), 1);
        std::thread::sleep(Duration::from_millis(50));
        std::fs::copy(&copy, &path).unwrap();
        assert_eq!(counter(&path), counter(&copy));
        // A query outside a lookup (a login, an iteration) sees it too.
        let mut q = reader(&path);
        q.exact("edit", "example.org").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        std::fs::copy(path.with_file_name("live.db"), &path).unwrap();
        assert_eq!(counter(&path), counter(&copy));
        assert_eq!(q.exact("live", "example.org").unwrap().len(), 1);
        assert_eq!(q.exact("edit", "example.org").unwrap().len(), 0);
        std::fs::copy(&copy, &path).unwrap();
        r.begin_lookup();
        r.change_token().unwrap();
        let edit = r.exact("edit", "example.org").unwrap().len();
        let live = r.exact("live", "example.org").unwrap().len();
        r.end_lookup();
        assert_eq!((edit, live), (1, 0), "the copy's rows, not the old pages'");
    }

    /// A daemon's lookup (`begin_lookup` .. `end_lookup`) reads the file it
    /// began with, whatever happens to the path meanwhile, and the next
    /// lookup or query sees what the path names then: the new file, or the
    /// outage.
    #[test]
    fn a_lookup_reads_one_file_and_the_next_sees_the_new_one() {
        let (dir, s) = fresh();
        drop(s);
        let path = dir.path().join("mail.db");
        let next = dir.path().join("next.db");
        std::fs::copy(&path, &next).unwrap();
        shell_insert(&next, "renamed");
        let mut r = reader(&path);
        let found = |r: &mut SqliteStore| r.exact("renamed", "example.org").map(|v| v.len());

        r.begin_lookup();
        let token = r.change_token().unwrap();
        std::fs::rename(&next, &path).unwrap();
        assert_eq!(found(&mut r).unwrap(), 0, "the lookup keeps its file");
        assert_eq!(r.change_token().unwrap(), token, "and its token");
        r.end_lookup();
        assert_eq!(
            found(&mut r).unwrap(),
            1,
            "the next query, outside a lookup"
        );

        r.begin_lookup();
        assert_ne!(r.change_token().unwrap(), token, "the next lookup");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            found(&mut r).unwrap(),
            1,
            "a lookup begun before the removal"
        );
        r.end_lookup();

        r.begin_lookup();
        assert!(matches!(found(&mut r), Err(StoreError::Unavailable(_))));
        assert!(matches!(r.change_token(), Err(StoreError::Unavailable(_))));
        r.end_lookup();
    }

    /// The check without waiting ([`Store::change_token_in_place`]) is the
    /// change check itself while it needs only the `stat` and the header:
    /// a removed file is an error, as in `change_token`. When the path
    /// names another file or the file was written (reopening reads the
    /// schema, under a lock a writer may hold) or the file is in WAL mode
    /// (a query), it declines, and `change_token` does the rest.
    #[test]
    fn the_change_check_in_place_is_the_change_check_or_declines() {
        let (dir, s) = fresh();
        drop(s);
        let path = dir.path().join("mail.db");
        let mut r = reader(&path);
        let in_place = |r: &mut SqliteStore| r.change_token_in_place().map(|t| t.unwrap());
        let token = r.change_token().unwrap();
        assert_eq!(in_place(&mut r), Some(token));
        shell_insert(&path, "edited");
        // Written: SQLite's pages must go, which takes a new connection.
        assert_eq!(in_place(&mut r), None, "written: declined");
        let edited = r.change_token().unwrap();
        assert_ne!(edited, token, "a hand edit");
        assert_eq!(in_place(&mut r), Some(edited), "then in place again");

        let next = dir.path().join("next.db");
        std::fs::copy(&path, &next).unwrap();
        std::fs::rename(&next, &path).unwrap();
        assert_eq!(in_place(&mut r), None, "another file: reopened elsewhere");
        let renamed = r.change_token().unwrap();
        assert_ne!(renamed, edited);
        assert_eq!(in_place(&mut r), Some(renamed), "followed");

        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            r.change_token_in_place(),
            Some(Err(StoreError::Unavailable(_)))
        ));

        let (_wal_dir, wal) = wal_database();
        let mut w = reader(&wal);
        assert_eq!(w.change_token().unwrap(), None, "WAL: no token");
        assert_eq!(in_place(&mut w), None, "WAL: no token in place either");
    }

    /// Commits to a WAL database land in the -wal file and leave the main
    /// file's header and `stat` as they were: no change token there (two
    /// daemons' fresh connections would give equal ones across a commit),
    /// so nothing is served fresh from the cache, and every lookup reads
    /// the commits.
    #[test]
    fn a_wal_database_has_no_change_token_and_every_lookup_reads_it() {
        let (_dir, path) = wal_database();
        let keep = Connection::open(&path).unwrap();
        let mut w = reader(&path);
        let lookup = |w: &mut SqliteStore, user: &str| {
            w.begin_lookup();
            let token = w.change_token().unwrap();
            let rows = w.exact(user, "example.org").unwrap().len();
            w.end_lookup();
            (token, rows)
        };
        assert_eq!(lookup(&mut w, "wal"), (None, 0));
        shell_insert(&path, "wal");
        assert_eq!(lookup(&mut w, "wal"), (None, 1));
        drop(keep);
    }
}
