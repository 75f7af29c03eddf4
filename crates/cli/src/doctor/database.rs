//! The config, the database, its schema and its files, and whether each
//! daemon's user can actually read it.
//!
//! The per-user test forks, drops to the daemon's user and groups exactly as
//! the daemon does (initgroups for smtpd's table, which runs as smtpd's
//! user; the `service auth` user, group and `extra_groups` for Dovecot,
//! whose processes get no other supplementary groups), then loads the
//! config, opens the database read-only and runs one lookup. mailtable keeps
//! SQLite in rollback-journal mode, whose readers write nothing; a database
//! another tool switched to WAL is reported, since its readers would need
//! side files the daemons cannot keep
//! (<https://sqlite.org/wal.html>, "Read-Only Databases").

use super::dovecot::Dovecot;
use super::smtpd::Smtpd;
use super::unix::{self, Creds};
use super::{Check, DoctorArgs};
use mailtable_core::config::DEFAULT_PATH;
use mailtable_core::store::{
    self, migrate, Access, DatabaseUrl, OpenOptions, SchemaState, StoreError,
};
use mailtable_core::{Accounts, Config};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Looked up by the per-user probes when `--address` is not given: any
/// name will do, "not found" proves the database answered.
const PROBE_NAME: &str = "postmaster@doctor.invalid";

/// What the database checks found, for the later areas.
pub(crate) struct Db {
    /// The config, when it loaded.
    pub(crate) config: Option<Config>,
    /// The file it came from (None: built-in defaults).
    pub(crate) config_path: Option<PathBuf>,
    /// The database URL, when it parsed.
    pub(crate) url: Option<DatabaseUrl>,
    /// Group of the SQLite file: the one the daemons need.
    pub(crate) group: Option<u32>,
    /// `mailtable` with the options that reach the checked database
    /// ([`cli`]), to start fix commands with.
    pub(crate) mt: String,
}

/// `mailtable` with the `-c` that reaches the same config, and the
/// `--database` doctor was given (shown without its password), for fixes:
/// a fix must act on the database that was checked.
pub(crate) fn cli(config_path: Option<&Path>, database: Option<&DatabaseUrl>) -> String {
    let mut out = match config_path {
        Some(p) if p != Path::new(DEFAULT_PATH) => format!("mailtable -c {}", p.display()),
        _ => "mailtable".into(),
    };
    if let Some(url) = database {
        out.push_str(&format!(" --database {url}"));
    }
    out
}

pub(crate) fn run(
    given: Option<&Path>,
    database: Option<&str>,
    timeout: Duration,
    checks: &mut Vec<Check>,
) -> Db {
    let (check, config, config_path) = check_config(given);
    checks.push(check);
    let mt = cli(config_path.as_deref(), None);
    let mut db = Db {
        config: None,
        config_path,
        url: None,
        group: None,
        mt,
    };
    let Some(config) = config else {
        return db;
    };
    let url_text = database.map_or_else(|| config.database.clone(), str::to_string);
    db.config = Some(config);
    let url: DatabaseUrl = match url_text.parse() {
        Ok(u) => u,
        Err(e) => {
            checks.push(Check::problem(
                "database.answers",
                e,
                "set `database` in the config to sqlite:///path or postgresql://...",
            ));
            return db;
        }
    };
    let mt = cli(db.config_path.as_deref(), database.and(Some(&url)));
    db.mt = mt.clone();
    // The files first: opening the database may create its side files.
    let files = match &url {
        DatabaseUrl::Sqlite(path) => {
            db.group = std::fs::metadata(path).ok().map(|m| m.gid());
            check_sqlite_files(path, &mt)
        }
        DatabaseUrl::Postgres(_) => Vec::new(),
    };
    let (check, state) = check_answers(&url, timeout, &mt);
    checks.push(check);
    if let Some(state) = state {
        let has_rows = state != SchemaState::Empty;
        checks.push(check_schema(state, &url, &mt));
        if has_rows {
            let fallback = Config::default();
            let config = db.config.as_ref().unwrap_or(&fallback);
            let resolver = Accounts::new(config).resolver().clone();
            checks.extend(super::rows::check_rows(&url, timeout, &resolver, &mt));
        }
    }
    checks.extend(files);
    db.url = Some(url);
    db
}

/// The config loads (`-c`, else the default path if it exists, else the
/// built-in defaults: the rule of all three binaries, `Config::locate`).
pub(crate) fn check_config(given: Option<&Path>) -> (Check, Option<Config>, Option<PathBuf>) {
    let path = given
        .map(Path::to_path_buf)
        .or_else(|| Some(PathBuf::from(DEFAULT_PATH)).filter(|p| p.exists()));
    match Config::locate(path.as_deref()) {
        Ok(c) => {
            let msg = match &path {
                Some(p) => format!("{} parses", p.display()),
                None => format!("no {DEFAULT_PATH}: built-in defaults"),
            };
            (Check::ok("config", msg), Some(c), path)
        }
        Err(e) => (
            Check::problem(
                "config",
                e.to_string(),
                "correct the file (its keys and defaults: mailtable.toml(5), or the README's Configuration section)",
            ),
            None,
            path,
        ),
    }
}

/// The database opens read-only and answers a query.
pub(crate) fn check_answers(
    url: &DatabaseUrl,
    timeout: Duration,
    mt: &str,
) -> (Check, Option<SchemaState>) {
    let opts = OpenOptions {
        access: Access::ReadOnly,
        timeout,
    };
    let answer = store::open(url, &opts).and_then(|mut s| {
        let state = s.schema_state()?;
        let domains = match state {
            SchemaState::Empty => 0,
            _ => s.domains()?.len(),
        };
        Ok((state, domains))
    });
    match answer {
        Ok((state, domains)) => (
            Check::ok(
                "database.answers",
                format!("{url} answers ({domains} domain(s))"),
            ),
            Some(state),
        ),
        Err(e) => {
            let fix = match url {
                // `init` on a mistyped or moved path would make an empty
                // database there: the daemons would then refuse every
                // address for good where they now defer it.
                DatabaseUrl::Sqlite(p) if !p.exists() => format!(
                    "if `database` names the wrong file (a typo, a database moved or not \
                     restored yet), correct it or put the file back; for a new installation \
                     only: {mt} init --group mailtable"
                ),
                // A schema the binaries cannot use (no users table, a
                // `users` view): no file check would help.
                _ if matches!(e, StoreError::Schema(_)) => format!(
                    "`database` must hold mailtable's own users table: {mt} init makes it; \
                     for a `users` view, make a new database with `mailtable init` and \
                     `mailtable import` the rows into it"
                ),
                // A hot journal: only a read-write open rolls it back.
                DatabaseUrl::Sqlite(_) if e.to_string().contains("hot journal") => format!(
                    "{mt} migrate  (as root: rolls back what the writer that died left; the \
                     daemons, reading only, cannot)"
                ),
                DatabaseUrl::Sqlite(_) => {
                    "check the file (`sqlite3 PATH 'PRAGMA integrity_check'`) and its permissions"
                        .into()
                }
                // The server answered, and refused this role the table.
                DatabaseUrl::Postgres(_) if e.to_string().contains("SQLSTATE 42501") => {
                    format!("{PG_GRANT} (as the tables' owner)")
                }
                DatabaseUrl::Postgres(_) => {
                    "start PostgreSQL or correct `database` in the config".into()
                }
            };
            (Check::problem("database.answers", e.to_string(), fix), None)
        }
    }
}

/// The fix for a PostgreSQL role refused the tables the daemons read.
const PG_GRANT: &str = "GRANT SELECT ON users, mailtable_changes TO the role in `database`";

/// The schema is the one the binaries know.
pub(crate) fn check_schema(state: SchemaState, url: &DatabaseUrl, mt: &str) -> Check {
    let latest = migrate::LATEST;
    match state {
        SchemaState::Empty => Check::problem(
            "database.schema",
            format!("{url} has no users table"),
            // `--group` gives a SQLite file to the daemons' group; a
            // PostgreSQL server decides by its roles.
            match url {
                DatabaseUrl::Sqlite(_) => format!("{mt} init --group mailtable"),
                DatabaseUrl::Postgres(_) => format!("{mt} init"),
            },
        ),
        SchemaState::Unversioned => Check::problem(
            "database.schema",
            format!("{url} is an unversioned users table; these binaries know schema {latest}"),
            format!("{mt} migrate"),
        ),
        // The daemons read `users` and the change stamp only; a role
        // granted no more cannot see the version, which is no fault.
        SchemaState::VersionUnreadable => Check::ok(
            "database.schema",
            "the schema version is not readable by this role (no SELECT on mailtable_schema); \
             the daemons need none, `mailtable migrate` as the tables' owner checks it",
        ),
        SchemaState::Version(v) if v < latest => Check::problem(
            "database.schema",
            format!("{url} has schema version {v}; these binaries know {latest}"),
            format!("{mt} migrate"),
        ),
        SchemaState::Version(v) if v > latest => Check::problem(
            "database.schema",
            format!("{url} has schema version {v}, newer than these binaries ({latest})"),
            "install the mailtable release that wrote it (all three binaries)",
        ),
        SchemaState::Version(v) => Check::ok(
            "database.schema",
            format!("schema version {v}, as these binaries expect"),
        ),
    }
}

/// The SQLite file holds password hashes: never world-readable. In WAL mode
/// the daemons write the `-shm` index and need `-wal` to exist: both must
/// be there, in the database's group, mode 0660 (`mailtable init` makes them
/// so; the sqlite3 shell deletes them on exit unless told to keep them).
pub(crate) fn check_sqlite_files(path: &Path, mt: &str) -> Vec<Check> {
    let mut out = Vec::new();
    let Ok(meta) = std::fs::metadata(path) else {
        return out;
    };
    let shown = path.display();
    let group = unix::group_name(meta.gid());
    if meta.mode() & 0o007 != 0 {
        out.push(Check::problem(
            "database.mode",
            format!(
                "{shown} is mode {:04o}: every local user can read the password hashes",
                meta.mode() & 0o7777
            ),
            format!("chmod 0640 {shown}"),
        ));
    } else {
        out.push(Check::ok(
            "database.mode",
            format!(
                "{shown} is mode {:04o}, group {group}",
                meta.mode() & 0o7777
            ),
        ));
    }
    // The CLI's own writes: a read-only mount or a directory it may not
    // write fails every one of them, while every read still works.
    out.push(match store::sqlite::why_read_only(path) {
        Some((why, fix)) => Check::problem(
            "database.writable",
            format!("mailtable cannot write {shown}: {why}"),
            fix,
        ),
        None => Check::ok(
            "database.writable",
            format!("mailtable can write {shown} and make its journal beside it"),
        ),
    });
    out.push(Check::ok(
        "database.watch",
        match store::watch::unwatchable(path) {
            None => format!(
                "table-mailtable learns of every change to {shown} from the kernel (inotify): \
                 answers from its cache cost no look at the file"
            ),
            Some(why) => format!(
                "{why}; table-mailtable checks the file at every lookup instead (a `stat` and a \
                 read: as fresh, a little slower)"
            ),
        },
    ));
    let journal = journal_mode(path);
    // A `-wal` with frames next to a file whose header says rollback: a
    // WAL session that crashed, or a backup copied over the file since.
    // SQLite replays such a file at the next open whatever the header says
    // (pagerOpenWalIfPresent in its pager.c), over a restored backup too.
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    let left = std::fs::metadata(&wal).map_or(0, |m| m.len());
    if journal.as_deref() == Some("rollback") && left > 0 {
        out.push(Check::problem(
            "database.side-files",
            format!(
                "{} ({left} bytes) is left from a WAL session that did not end: SQLite \
                 replays it over {shown} at the next open, even over a backup copied in since",
                wal.display()
            ),
            format!(
                "if {shown} was restored from a backup after that session, remove {} and \
                 {shown}-shm (their writes would undo the restore); otherwise `{} migrate` \
                 keeps them and converts the file",
                wal.display(),
                mt
            ),
        ));
        return out;
    }
    if journal.as_deref() != Some("wal") {
        out.push(Check::ok(
            "database.side-files",
            format!(
                "journal mode {}: readers need no side files",
                journal.as_deref().unwrap_or("unknown")
            ),
        ));
        return out;
    }
    // mailtable keeps SQLite in rollback-journal mode, whose readers write
    // nothing. In WAL mode (set by another tool, or a database of an older
    // mailtable) the daemons must write `-shm`, which the sqlite3 shell
    // deletes on exit and a root reader recreates 0640: lookups fail.
    out.push(Check::problem(
        "database.side-files",
        "WAL journal mode: the daemons' readers need group-writable side files that the \
         sqlite3 shell deletes when it exits"
            .to_string(),
        format!(
            "{} migrate  (any mailtable write converts the file to the rollback journal; \
             the daemons let go of a WAL file between lookups)",
            mt
        ),
    ));
    out
}

/// The journal mode from the file header, without opening the database
/// (an open would itself create the side files being checked): bytes 18
/// and 19 are 2 in WAL mode, 1 otherwise (<https://sqlite.org/fileformat2.html>,
/// "The Database Header").
fn journal_mode(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut head = [0u8; 20];
    std::fs::File::open(path).ok()?.read_exact(&mut head).ok()?;
    if !head.starts_with(b"SQLite format 3\0") {
        return None;
    }
    Some(
        if head[18] == 2 && head[19] == 2 {
            "wal"
        } else {
            "rollback"
        }
        .into(),
    )
}

/// One daemon process that reads the database itself.
pub(crate) struct Reader {
    /// Check name suffix and label, e.g. "smtpd".
    pub(crate) name: &'static str,
    /// Who it runs as.
    pub(crate) creds: Creds,
    /// The config file it is given.
    pub(crate) config: Option<PathBuf>,
    /// What to do when it lacks the database's group.
    pub(crate) group_fix: String,
}

/// For each daemon user that reads the database: fork, become it, try.
pub(crate) fn probe_daemons(
    db: &Db,
    smtpd: &Smtpd,
    dovecot: &Dovecot,
    args: &DoctorArgs,
    timeout: Duration,
    checks: &mut Vec<Check>,
) {
    let mut readers = Vec::new();
    readers.extend(smtpd.reader(db.group));
    readers.extend(dovecot.reader(db.group));
    // Only a serve of this config: another one on the host (a test
    // instance, a second site) reads another database.
    let ours = |pid| {
        unix::config_of(pid).is_ok_and(|c| same_config(c.as_deref(), db.config_path.as_deref()))
    };
    readers.extend(serve_reader(
        db,
        unix::running_creds("dovecot-mailtable", "serve", ours),
    ));
    if readers.is_empty() {
        checks.push(Check::na(
            "database.daemons",
            "no daemon configured to read the database itself (smtpd table, Dovecot checkpassword, serve)",
        ));
        return;
    }
    checks.push(check_same_database(db, &readers));
    // In WAL mode a reader needs `-shm` and `-wal`, which doctor's own
    // connection as root has just made: a probe would pass thanks to
    // them, and the daemons fail again once the sqlite3 shell deletes
    // them. database.side-files says what to do.
    if let Some(DatabaseUrl::Sqlite(path)) = &db.url {
        if journal_mode(path).as_deref() == Some("wal") {
            for r in readers {
                checks.push(Check::na(
                    &format!("database.read-as-{}", r.name),
                    "not tried: the file is in WAL mode (see database.side-files)",
                ));
            }
            return;
        }
    }
    let name = args.address.as_deref().unwrap_or(PROBE_NAME);
    for r in readers {
        checks.push(probe(&r, db, name, timeout));
    }
}

/// The daemons read the database doctor checked: smtpd's table and
/// Dovecot's helper each name a config, and two configs naming two
/// databases break the one promise (both daemons agree on every address)
/// while every probe, on its own database, answers.
fn check_same_database(db: &Db, readers: &[Reader]) -> Check {
    let Some(ours) = &db.url else {
        return Check::na("database.same", "no database URL to compare with");
    };
    let mut differ = Vec::new();
    for r in readers {
        let Some(path) = &r.config else { continue };
        // A config that does not load is database.read-as-*'s to say.
        let Ok(url) = Config::locate(Some(path))
            .map_err(|e| e.to_string())
            .and_then(|c| c.database_url())
        else {
            continue;
        };
        if db_identity(&url) != db_identity(ours) {
            differ.push(format!("{} reads {url} ({})", r.name, path.display()));
        }
    }
    match differ.is_empty() {
        true => Check::ok(
            "database.same",
            format!("every daemon configured here reads {ours}"),
        ),
        false => Check::problem(
            "database.same",
            format!("doctor checked {ours}, but {}", differ.join("; ")),
            "point `database` of every config at one database: smtpd and Dovecot must agree \
             on every address",
        ),
    }
}

/// What names one database, whatever the spelling: a SQLite file by its
/// real path, a PostgreSQL one by host, port and database name (the
/// daemons may log in with another role than the admin).
fn db_identity(url: &DatabaseUrl) -> String {
    match url {
        DatabaseUrl::Sqlite(p) => std::fs::canonicalize(p)
            .unwrap_or_else(|_| p.clone())
            .display()
            .to_string(),
        DatabaseUrl::Postgres(u) => {
            let u = u.as_str();
            match u.split_once("://") {
                Some((_, rest)) => {
                    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
                    rest.split('?').next().unwrap_or(rest).to_string()
                }
                // key=value form: the keys that name the database.
                None => {
                    let mut keys: Vec<&str> = u
                        .split_whitespace()
                        .filter(|kv| {
                            ["host=", "hostaddr=", "port=", "dbname="]
                                .iter()
                                .any(|k| kv.starts_with(k))
                        })
                        .collect();
                    keys.sort_unstable();
                    keys.join(" ")
                }
            }
        }
    }
}

/// `serve` as a database reader, when it runs as another user than root:
/// with the credentials the running `dovecot-mailtable serve` holds
/// (/proc), whoever started it and how. Not running, who it runs as
/// shows on its UNIX socket: the socket belongs to the running user
/// unless `socket_owner` says otherwise, and then the socket directory
/// does (systemd's `RuntimeDirectory=` is the unit's `User=`,
/// dovecot-checkpassword/conf/dovecot-mailtable.service), and the unit
/// starts it with `User=` and its groups, as initgroups gives them. A
/// serve on TCP that is not running is not probed here (serve.* says
/// whether it answers).
///
/// `running`: the credentials of the running serve, if one runs.
/// Whether two programs given these config paths (`None`: none given,
/// the default) read the same file.
fn same_config(a: Option<&Path>, b: Option<&Path>) -> bool {
    let real = |p: Option<&Path>| {
        let p = p.unwrap_or(Path::new(DEFAULT_PATH));
        std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
    };
    real(a) == real(b)
}

fn serve_reader(db: &Db, running: Option<unix::Creds>) -> Option<Reader> {
    let g = daemons_group(db.group);
    let reader = |creds: unix::Creds| Reader {
        name: "serve",
        group_fix: format!(
            "usermod -aG {g} {}  (then systemctl restart dovecot-mailtable)",
            creds.user
        ),
        creds,
        config: db.config_path.clone(),
    };
    if let Some(creds) = running {
        return (creds.uid != 0).then(|| reader(creds));
    }
    let serve = &db.config.as_ref()?.serve;
    let socket = [serve.http_listen.trim(), serve.dict_socket.trim()]
        .into_iter()
        .map(|l| l.strip_prefix("unix:").unwrap_or(l))
        .find(|l| l.starts_with('/'))
        .map(PathBuf::from)?;
    let meta = if serve.socket_owner.trim().is_empty() {
        std::fs::metadata(&socket).ok()?
    } else {
        std::fs::metadata(socket.parent()?).ok()?
    };
    if meta.uid() == 0 {
        return None;
    }
    let user = unix::user_name(meta.uid())?;
    Some(reader(unix::login_creds(&user)?))
}

/// The group to give the database to: the file's, unless that is one no
/// daemon may be given ([`unix::shareable_group`]), then `mailtable`.
pub(crate) fn daemons_group(file_group: Option<u32>) -> String {
    match file_group.filter(|g| unix::shareable_group(*g)) {
        Some(g) => unix::group_name(g),
        None => "mailtable".into(),
    }
}

/// How a probe's error says the config could not be read (as opposed to
/// the database): the fix is another.
const CONFIG_FAILED: &str = "config: ";

fn probe(r: &Reader, db: &Db, name: &str, timeout: Duration) -> Check {
    let check = format!("database.read-as-{}", r.name);
    if !unix::is_root() {
        return Check::na(
            &check,
            format!("run doctor as root to try the database as {}", r.creds.user),
        );
    }
    let config = r.config.clone().or_else(|| db.config_path.clone());
    let override_url = db.url.clone().filter(|_| r.config.is_none());
    let result = unix::run_as(&r.creds, timeout, || {
        let c = Config::locate(config.as_deref()).map_err(|e| format!("{CONFIG_FAILED}{e}"))?;
        let url = match &override_url {
            Some(u) => u.clone(),
            None => c.database_url()?,
        };
        let opts = OpenOptions {
            access: Access::ReadOnly,
            timeout: c.timeout(),
        };
        let mut s = store::open(&url, &opts).map_err(|e| e.to_string())?;
        let found = Accounts::new(&c)
            .find(s.as_mut(), name)
            .map_err(|e| e.to_string())?;
        Ok(format!(
            "{url}: {name} {}",
            if found.is_some() {
                "found"
            } else {
                "not found"
            }
        ))
    });
    let groups: Vec<String> = r
        .creds
        .groups
        .iter()
        .map(|g| unix::group_name(*g))
        .collect();
    let who = format!(
        "{} (uid {}, groups {})",
        r.creds.user,
        r.creds.uid,
        groups.join(",")
    );
    match result {
        Ok(m) => Check::ok(
            &check,
            format!("as {who}: config read, lookup answered ({m})"),
        ),
        Err(e) => {
            let lacks = db.group.is_some_and(|g| !r.creds.has_group(g));
            let db_path = match &db.url {
                Some(DatabaseUrl::Sqlite(p)) => Some(p.clone()),
                _ => None,
            };
            let config_failed = e.starts_with(CONFIG_FAILED);
            let fix = if config_failed && !lacks {
                // The config, not the database: `init` would not touch it.
                let g = daemons_group(db.group);
                let path = config
                    .as_deref()
                    .map_or("/etc/mail/mailtable.toml".into(), |p| {
                        p.display().to_string()
                    });
                format!(
                    "chgrp {g} {path} && chmod 640 {path}  (and every directory above it \
                     searchable by {})",
                    r.creds.user
                )
            } else if matches!(db.url, Some(DatabaseUrl::Postgres(_))) {
                // No file to give to a group: the server decides who may
                // connect. A server that is down, or a role without the
                // grant, is no matter of this user's connection: the same
                // fix as database.answers.
                if e.contains("SQLSTATE 42501") {
                    format!("{PG_GRANT} (see database.answers)")
                } else if e.contains("Connection refused") || e.contains("No such file") {
                    "start PostgreSQL, or correct the host and port in `database` (see \
                     database.answers)"
                        .to_string()
                } else {
                    "let this user's connection in: the role and password in `database`, \
                     and a pg_hba.conf line for its address or socket (see database.answers)"
                        .to_string()
                }
            } else if lacks && db.group.is_some_and(unix::shareable_group) {
                // The group first: the database's directory is in it too
                // (`init` makes it so).
                r.group_fix.clone()
            } else if let Some(dir) = db_path
                .as_deref()
                .and_then(|p| unix::unsearchable_dir(p, &r.creds))
            {
                // The file's group and mode are not what keeps it out, and
                // `init` changes no directory.
                let g = daemons_group(db.group);
                match db_path.as_deref().and_then(Path::parent) == Some(dir.as_path()) {
                    true => format!(
                        "chgrp {g} {0} && chmod 0750 {0}  ({1} cannot enter the database's \
                         directory)",
                        dir.display(),
                        r.creds.user
                    ),
                    false => format!(
                        "chmod o+x {}  ({} cannot enter it, on the way to the database)",
                        dir.display(),
                        r.creds.user
                    ),
                }
            } else {
                format!(
                    "{} init --group {}  (gives the database to the group)",
                    db.mt,
                    daemons_group(db.group)
                )
            };
            Check::problem(&check, format!("as {who}: {e}"), fix)
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::Status;
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    pub(in crate::doctor) fn url(p: &Path) -> DatabaseUrl {
        format!("sqlite://{}", p.display()).parse().unwrap()
    }

    /// A serve of another config file is not the one doctor asks about;
    /// one path spelt two ways is the same file.
    #[test]
    fn a_serve_counts_when_it_reads_this_config() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a.toml"), d.path().join("b.toml"));
        std::fs::write(&a, "").unwrap();
        std::fs::write(&b, "").unwrap();
        let a_again = d.path().join(".").join("a.toml");
        assert!(same_config(Some(&a), Some(&a_again)));
        assert!(!same_config(Some(&a), Some(&b)));
        assert!(!same_config(Some(&a), None));
        assert!(same_config(None, Some(Path::new(DEFAULT_PATH))));
        assert!(!same_config(Some(&d.path().join("missing.toml")), Some(&a)));
    }

    #[test]
    fn config_problems_are_findings() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.toml");
        std::fs::write(&p, "databse = 'x'\n").unwrap();
        let (c, cfg, _) = check_config(Some(&p));
        assert_eq!(c.status, Status::Problem);
        assert!(c.message.contains("databse"), "{c:?}");
        assert!(cfg.is_none());
        std::fs::write(&p, "uid = 5000\n").unwrap();
        let (c, cfg, path) = check_config(Some(&p));
        assert_eq!(c.status, Status::Ok);
        assert!(cfg.is_some());
        assert_eq!(path.as_deref(), Some(p.as_path()));
    }

    #[test]
    fn schema_versions() {
        let u = url(Path::new("/x/m.db"));
        let conf = Path::new("/etc/alt.toml");
        let c = check_schema(SchemaState::Version(1), &u, &cli(Some(conf), None));
        assert_eq!(c.status, Status::Problem);
        assert_eq!(c.fix.as_deref(), Some("mailtable -c /etc/alt.toml migrate"));
        let c = check_schema(SchemaState::Unversioned, &u, "mailtable");
        assert_eq!(c.fix.as_deref(), Some("mailtable migrate"));
        let c = check_schema(SchemaState::Empty, &u, "mailtable");
        assert!(c.fix.unwrap().contains("init"));
        assert_eq!(
            check_schema(SchemaState::Version(migrate::LATEST), &u, "mailtable").status,
            Status::Ok
        );
        let c = check_schema(SchemaState::Version(migrate::LATEST + 1), &u, "mailtable");
        assert!(c.message.contains("newer"));
        // PostgreSQL has no file to give to a group.
        let pg: DatabaseUrl = "postgresql://mail@db.example.net/mail".parse().unwrap();
        let c = check_schema(SchemaState::Empty, &pg, "mailtable");
        assert_eq!(c.fix.as_deref(), Some("mailtable init"));
        // A daemon's least-privilege role: nothing to fix.
        let c = check_schema(SchemaState::VersionUnreadable, &u, "mailtable");
        assert_eq!(c.status, Status::Ok);
        assert!(c.message.contains("no SELECT on mailtable_schema"));
    }

    /// Two configs naming two databases are a problem, however each
    /// answers; one database spelled two ways, or reached with another
    /// PostgreSQL role, is not.
    #[test]
    fn the_daemons_must_read_the_database_doctor_checked() {
        let d = tempfile::tempdir().unwrap();
        let conf = |name: &str, url: &str| {
            let p = d.path().join(name);
            std::fs::write(&p, format!("database = \"{url}\"\n")).unwrap();
            p
        };
        std::fs::write(d.path().join("a.db"), "").unwrap();
        let a = format!("sqlite://{}/a.db", d.path().display());
        let a_again = format!("sqlite://{}/./a.db", d.path().display());
        let b = format!("sqlite://{}/b.db", d.path().display());
        let reader = |name: &'static str, config: PathBuf| Reader {
            name,
            creds: unix::Creds {
                user: "nobody".into(),
                uid: 65534,
                gid: 65534,
                groups: vec![],
            },
            config: Some(config),
            group_fix: String::new(),
        };
        let db = Db {
            config: None,
            config_path: None,
            url: Some(a.parse().unwrap()),
            group: None,
            mt: "mailtable".into(),
        };
        let same = [
            reader("smtpd", conf("s.toml", &a)),
            reader("dovecot", conf("d.toml", &a_again)),
        ];
        assert_eq!(check_same_database(&db, &same).status, Status::Ok);
        let split = [
            reader("smtpd", conf("s2.toml", &a)),
            reader("dovecot", conf("d2.toml", &b)),
        ];
        let c = check_same_database(&db, &split);
        assert_eq!(c.status, Status::Problem, "{c:?}");
        assert!(
            c.message.contains("dovecot reads") && c.message.contains("b.db"),
            "{c:?}"
        );
        assert!(!c.message.contains("smtpd reads"), "{c:?}");
        let pg = |u: &str| db_identity(&u.parse().unwrap());
        assert_eq!(
            pg("postgresql://admin:pw@db.example:5432/mail?sslmode=require"),
            pg("postgresql://mailtable_r@db.example:5432/mail")
        );
        assert_ne!(
            pg("postgresql://u@db.example:5432/mail"),
            pg("postgresql://u@db.example:5432/other")
        );
    }

    #[test]
    fn serve_is_probed_only_on_a_socket_of_another_user() {
        let d = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        let db = |config: &Config| Db {
            config: Some(config.clone()),
            config_path: None,
            url: None,
            group: None,
            mt: "mailtable".into(),
        };
        // TCP: nothing on disk tells who serve runs as.
        config.serve.http_listen = "127.0.0.1:8787".into();
        assert!(serve_reader(&db(&config), None).is_none());
        // A running serve tells, whatever its listeners: as it runs.
        let running = unix::Creds {
            user: "nobody".into(),
            uid: 65534,
            gid: 997,
            groups: vec![997, 120],
        };
        let r = serve_reader(&db(&config), Some(running)).expect("probed");
        assert_eq!((r.creds.uid, r.creds.groups), (65534, vec![997, 120]));
        let root = unix::Creds {
            user: "root".into(),
            uid: 0,
            gid: 0,
            groups: vec![],
        };
        assert!(serve_reader(&db(&config), Some(root)).is_none());
        // Not running: no socket.
        config.serve.http_listen = format!("unix:{}", d.path().join("http.sock").display());
        assert!(serve_reader(&db(&config), None).is_none());
        // A socket of root's (or of the one running the test, if that is
        // root): root reads anything, no probe; else the owner is probed.
        let sock = d.path().join("http.sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let r = serve_reader(&db(&config), None);
        if unix::is_root() {
            assert!(r.is_none());
        } else {
            let r = r.expect("a reader");
            assert_eq!(r.creds.uid, std::fs::metadata(&sock).unwrap().uid());
            assert!(r.group_fix.contains("dovecot-mailtable"), "{}", r.group_fix);
        }
    }

    /// A fix acts on the database doctor checked: `--database` given to
    /// doctor is in it (a PostgreSQL password is not).
    #[test]
    fn fixes_name_the_database_given() {
        let d = tempfile::tempdir().unwrap();
        let conf = d.path().join("m.toml");
        std::fs::write(&conf, "database = \"sqlite:///nowhere/m.db\"\n").unwrap();
        let other = d.path().join("other.db");
        let given = format!("sqlite://{}", other.display());
        let mut checks = Vec::new();
        run(
            Some(&conf),
            Some(&given),
            Duration::from_secs(2),
            &mut checks,
        );
        let answers = checks
            .iter()
            .find(|c| c.name == "database.answers")
            .unwrap();
        let fix = answers.fix.as_deref().unwrap_or_default();
        assert!(
            fix.ends_with(&format!(
                "for a new installation only: mailtable -c {} --database {given} init --group \
                 mailtable",
                conf.display()
            )),
            "{answers:?}"
        );
        // A wrong path comes first: `init` there would make an empty
        // database the daemons then answer "unknown" from.
        assert!(
            fix.starts_with("if `database` names the wrong file"),
            "{fix}"
        );
        // The fixes of the row checks too.
        let db = make_db(d.path());
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute_batch(
                "INSERT INTO users (username, domain, mailbox, password) \
                 VALUES ('bad', 'x.org', 'bad@x.org', 'garbage')",
            )
            .unwrap();
        let given = format!("sqlite://{}", db.display());
        let mut checks = Vec::new();
        run(
            Some(&conf),
            Some(&given),
            Duration::from_secs(2),
            &mut checks,
        );
        let hashes = checks.iter().find(|c| c.name == "database.hashes").unwrap();
        assert!(
            hashes.fix.as_deref().unwrap().contains(&format!(
                "mailtable -c {} --database {given} user passwd",
                conf.display()
            )),
            "{hashes:?}"
        );
        let pg: DatabaseUrl = "postgresql://mail:s3cret@db.example.net/mail"
            .parse()
            .unwrap();
        let shown = cli(None, Some(&pg));
        assert!(
            shown.starts_with("mailtable --database postgresql://mail"),
            "{shown}"
        );
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn missing_database_says_init() {
        let d = tempfile::tempdir().unwrap();
        let (c, state) = check_answers(
            &url(&d.path().join("no.db")),
            Duration::from_secs(2),
            "mailtable",
        );
        assert_eq!(c.status, Status::Problem);
        let fix = c.fix.unwrap_or_default();
        assert!(
            fix.ends_with("for a new installation only: mailtable init --group mailtable"),
            "{fix}"
        );
        assert!(state.is_none());
    }

    /// A database of the latest schema, shared as `init --group` shares it.
    pub(in crate::doctor) fn make_db(dir: &Path) -> PathBuf {
        let p = dir.join("m.db");
        let opts = OpenOptions {
            access: Access::Create,
            timeout: Duration::from_secs(2),
        };
        let mut s = store::open(&url(&p), &opts).unwrap();
        migrate::migrate(s.as_mut(), migrate::Dialect::Sqlite, true).unwrap();
        drop(s);
        store::sqlite::share_files(&p, None).unwrap();
        p
    }

    #[test]
    fn answers_and_side_files() {
        let d = tempfile::tempdir().unwrap();
        let p = make_db(d.path());
        let (c, state) = check_answers(&url(&p), Duration::from_secs(2), "mailtable");
        assert_eq!(c.status, Status::Ok, "{c:?}");
        assert_eq!(state, Some(SchemaState::Version(migrate::LATEST)));
        let checks = check_sqlite_files(&p, "mailtable");
        assert!(checks.iter().all(|c| c.status == Status::Ok), "{checks:?}");
        let watch = |checks: &[Check]| {
            checks
                .iter()
                .find(|c| c.name == "database.watch")
                .unwrap()
                .message
                .clone()
        };
        assert!(
            watch(&checks).contains("from the kernel (inotify)"),
            "{checks:?}"
        );
        // Through a symbolic link: checked at every lookup, and said why.
        let link = d.path().join("link.db");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        let message = watch(&check_sqlite_files(&link, "mailtable"));
        assert!(
            message.contains("goes through a symbolic link"),
            "{message}"
        );
        assert!(message.contains("at every lookup"), "{message}");

        // A WAL database (set by another tool): a problem, fixed by any
        // mailtable write, which converts it back.
        rusqlite::Connection::open(&p)
            .unwrap()
            .pragma_update(None, "journal_mode", "wal")
            .unwrap();
        let checks = check_sqlite_files(&p, &cli(Some(Path::new("/etc/alt.toml")), None));
        let side = checks
            .iter()
            .find(|c| c.name == "database.side-files")
            .unwrap();
        assert_eq!(side.status, Status::Problem, "{side:?}");
        assert!(side.message.contains("WAL"), "{side:?}");
        assert!(side
            .fix
            .as_ref()
            .unwrap()
            .starts_with("mailtable -c /etc/alt.toml migrate"));
        let opts = store::OpenOptions {
            access: store::Access::ReadWrite,
            timeout: Duration::from_secs(2),
        };
        drop(store::open(&url(&p), &opts).unwrap());
        let checks = check_sqlite_files(&p, "mailtable");
        assert!(checks.iter().all(|c| c.status == Status::Ok), "{checks:?}");

        // A WAL session still open (as one that crashed leaves it) and a
        // backup copied over the file since: the -wal would be replayed.
        let backup = d.path().join("backup.db");
        std::fs::copy(&p, &backup).unwrap();
        let session = rusqlite::Connection::open(&p).unwrap();
        session
            .execute_batch(
                "PRAGMA journal_mode=wal; \
                 INSERT INTO users (username, domain, mailbox) VALUES ('z', 'x.org', 'a@x.org');",
            )
            .unwrap();
        std::fs::copy(&backup, &p).unwrap();
        let checks = check_sqlite_files(&p, "mailtable");
        let side = checks
            .iter()
            .find(|c| c.name == "database.side-files")
            .unwrap();
        assert_eq!(side.status, Status::Problem, "{side:?}");
        assert!(side.message.contains("-wal ("), "{side:?}");
        assert!(side.fix.as_ref().unwrap().contains("remove"), "{side:?}");
        drop(session);

        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let checks = check_sqlite_files(&p, "mailtable");
        let mode = checks.iter().find(|c| c.name == "database.mode").unwrap();
        assert_eq!(mode.status, Status::Problem);
        assert_eq!(mode.fix, Some(format!("chmod 0640 {}", p.display())));
    }
}
