//! `mailtable init` and `mailtable migrate`: the schema.
//!
//! The one decision a reader might question: `init` creates the SQLite file
//! itself, mode 0640 and owned by a group the daemons share, before the
//! backend opens it, so the file never exists even briefly with a wider mode
//! (it holds password hashes); when that group is missing it is created
//! (as root) rather than falling back to a world-readable file.

use crate::ctx::Ctx;
use crate::error::CliError;
use crate::output::say;
use mailtable_core::exit::Exit;
use mailtable_core::store::{self, migrate as steps, Access, DatabaseUrl};
use std::path::Path;

/// The gid of group `name`, creating the group when root and it is missing;
/// `None` when it is missing and cannot be created (not root).
fn group_id(name: &str) -> Result<Option<u32>, CliError> {
    let lookup = || {
        let c = std::ffi::CString::new(name).ok()?;
        // SAFETY: getgrnam returns NULL or a pointer to static storage that
        // stays valid until the next getgr* call; we copy the gid at once.
        let g = unsafe { libc::getgrnam(c.as_ptr()) };
        // SAFETY: checked for NULL just before reading.
        (!g.is_null()).then(|| unsafe { (*g).gr_gid })
    };
    if let Some(gid) = lookup() {
        return Ok(Some(gid));
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("mailtable: group {name:?} does not exist and only root can create it; keeping the current group");
        return Ok(None);
    }
    let status = std::process::Command::new("groupadd")
        .args(["--system", name])
        .status()
        .map_err(|e| {
            CliError::usage(format!("cannot run groupadd to create group {name:?}: {e}"))
        })?;
    if !status.success() {
        return Err(CliError::usage(format!(
            "groupadd could not create group {name:?}"
        )));
    }
    let gid = lookup()
        .ok_or_else(|| CliError::usage(format!("group {name:?} still missing after groupadd")))?;
    // A new account on the host is worth a line: the admin may have meant
    // an existing group and mistyped it (useradd's and groupadd's own
    // convention is to say nothing, which hides exactly that).
    eprintln!("mailtable: created system group {name:?} (gid {gid}) for the database");
    Ok(Some(gid))
}

/// An error of `init`'s own work on the file `path` (`what` failed). A file
/// system mounted read-only is a temporary failure with its fix, as for
/// every other write ([`store::sqlite::why_read_only`]); anything else is
/// the admin's to fix (exit 2).
fn file_error(path: &Path, what: String, e: std::io::Error) -> CliError {
    let read_only = (e.raw_os_error() == Some(libc::EROFS))
        .then(|| store::sqlite::why_read_only(path))
        .flatten();
    match read_only {
        Some((why, fix)) => CliError::temp(format!("{what}: {why}; {fix}")),
        None => CliError::usage(format!("{what}: {e}")),
    }
}

/// Create the directory (0750, group `gid`) and the empty file (0640) of a
/// SQLite database that does not exist yet.
fn create_sqlite_file(path: &Path, gid: Option<u32>) -> Result<(), CliError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(|e| {
                file_error(dir, format!("cannot create directory {}", dir.display()), e)
            })?;
            use std::os::unix::fs::PermissionsExt;
            // Best effort: the file's own mode is what protects the hashes.
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750));
            if let Some(g) = gid {
                let _ = std::os::unix::fs::chown(dir, None, Some(g));
            }
        }
    }
    if !path.exists() {
        // Create the file ourselves so it never exists with a wider mode.
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .open(path)
            .map_err(|e| file_error(path, format!("cannot create {}", path.display()), e))?;
        // The daemons read it through the group: a database they cannot
        // read is no database to leave behind (init would fail at the end,
        // after writing the schema, and a second run would not say why).
        if let Some(g) = gid {
            if let Err(e) = std::os::unix::fs::chown(path, None, Some(g)) {
                let _ = std::fs::remove_file(path);
                return Err(CliError::usage(format!(
                    "cannot give {} to the daemons' group (gid {g}): {e}; nothing was created \
                     (run init as root, or as a member of the group)",
                    path.display()
                )));
            }
        }
    }
    Ok(())
}

/// `mailtable init`.
pub(super) fn init(ctx: &Ctx, group: &str) -> Result<Exit, CliError> {
    let mut gid = None;
    if let DatabaseUrl::Sqlite(path) = &ctx.url {
        gid = group_id(group)?;
        create_sqlite_file(path, gid)?;
    }
    let mut s = ctx.open(Access::Create)?;
    // A users table already there (the article's, or an older mailtable's)
    // is migrated in place, which the admin must hear as such: the
    // daemons reading it need the steps `migrate` prints.
    let existing = s.schema_state()? != store::SchemaState::Empty;
    let report = migrate_noting_signals(s.as_mut(), ctx, true)?;
    drop(s);
    if let DatabaseUrl::Sqlite(path) = &ctx.url {
        store::sqlite::share_files(path, gid).map_err(|e| {
            file_error(
                path,
                format!("cannot set the group of {}", path.display()),
                e,
            )
        })?;
    }
    if report.applied.is_empty() || existing {
        say_migrated(ctx, &report, "the existing users table of ");
    } else {
        say!("initialised {} (schema version {})", ctx.url, report.to);
    }
    if let Some(gid) = gid {
        say!("{}", group_advice(group, &readers(gid)));
    }
    Ok(Exit::Ok)
}

/// The users that may read the database themselves, and why.
const READERS: [(&str, &str); 3] = [
    ("opensmtpd", "smtpd's table"),
    (
        "mailtable-serve",
        "dovecot-mailtable serve: Dovecot's dict and Lua modes",
    ),
    ("dovecot", "Dovecot's checkpassword mode only"),
];

/// Which of [`READERS`] exist on this host (`Some`) and whether each is in
/// the group `gid` already.
fn readers(gid: u32) -> Vec<(&'static str, &'static str, Option<bool>)> {
    use nix::unistd::{Gid, Group, User};
    let members = Group::from_gid(Gid::from_raw(gid))
        .ok()
        .flatten()
        .map(|g| g.mem)
        .unwrap_or_default();
    READERS
        .iter()
        .map(|&(name, why)| {
            let state = User::from_name(name)
                .ok()
                .flatten()
                .map(|u| u.gid.as_raw() == gid || members.iter().any(|m| m == name));
            (name, why, state)
        })
        .collect()
}

/// What `init` says about the database's group: who reads it, and the
/// `usermod` line only for readers that exist and are not in it yet.
fn group_advice(group: &str, readers: &[(&str, &str, Option<bool>)]) -> String {
    let mut out = format!("readable by group {group:?}, which the daemons that read it need:");
    for (name, why, state) in readers {
        let what = match state {
            Some(true) => "in the group".to_owned(),
            Some(false) => format!("not in the group: usermod -aG {group} {name}"),
            None => "no such user here".to_owned(),
        };
        out.push_str(&format!("\n  {name} ({why}): {what}"));
    }
    out
}

/// `mailtable migrate`.
pub(super) fn migrate(ctx: &Ctx) -> Result<Exit, CliError> {
    let mut s = ctx.open(Access::ReadWrite)?;
    let report = migrate_noting_signals(s.as_mut(), ctx, false)?;
    drop(s);
    // Only after a write: a migration with nothing to do leaves the
    // file's mode as the admin set it.
    if !report.applied.is_empty() {
        ctx.reshare();
    }
    say_migrated(ctx, &report, "");
    Ok(Exit::Ok)
}

/// [`steps::migrate`], with Ctrl-C, SIGTERM and SIGHUP acted on once its
/// transaction is over ([`crate::interrupt`]): killed inside it, the CLI
/// would leave the hot journal that `migrate` is the advised cure for.
/// A change made is noted as such for [`crate::output`].
fn migrate_noting_signals(
    s: &mut dyn mailtable_core::Store,
    ctx: &Ctx,
    creating: bool,
) -> Result<steps::Report, CliError> {
    let report = crate::interrupt::guarded(|| {
        steps::migrate(s, ctx.dialect(), creating).map_err(CliError::from)
    })?;
    if !report.applied.is_empty() {
        crate::output::changed();
    }
    Ok(report)
}

/// What a migration did, and what the admin must do next: `migrate`, and
/// `init` on a users table that was there (`what` then names it).
fn say_migrated(ctx: &Ctx, report: &steps::Report, what: &str) {
    if report.applied.is_empty() {
        say!("{} is already at schema version {}", ctx.url, report.to);
        return;
    }
    say!(
        "migrated {what}{} from schema version {} to {} ({}), keeping every row",
        ctx.url,
        report.from,
        report.to,
        report.applied.join(", ")
    );
    for line in after_migrate(ctx.dialect(), report.from) {
        say!("{line}");
    }
}

/// What the admin must do after a migration from schema `from`, one line
/// each (README, "Upgrading"): the daemons keep the columns they read when
/// they opened the database, and on PostgreSQL the change stamp of schema
/// 3 is read with the daemons' own role, which nothing has granted it.
fn after_migrate(dialect: steps::Dialect, from: u32) -> Vec<String> {
    let mut next = vec![
        "next: restart dovecot-mailtable and run `smtpctl update table users`, so the daemons \
         reopen the database and see the new columns"
            .to_string(),
    ];
    if dialect == steps::Dialect::Postgres && from < 3 {
        next.push(
            "next: GRANT SELECT ON mailtable_changes TO the daemons' role (as on users): \
             without it they cannot read the change stamp, and cache answers for at most 1 s"
                .to_string(),
        );
    }
    next
}

#[cfg(test)]
mod tests {
    use super::{after_migrate, group_advice};

    #[test]
    fn after_a_migration_the_admin_is_told_what_is_left() {
        use mailtable_core::store::migrate::Dialect;
        let sqlite = after_migrate(Dialect::Sqlite, 0);
        assert_eq!(sqlite.len(), 1);
        assert!(
            sqlite[0].contains("restart dovecot-mailtable"),
            "{sqlite:?}"
        );
        let pg = after_migrate(Dialect::Postgres, 2);
        assert_eq!(pg.len(), 2);
        assert!(
            pg[1].contains("GRANT SELECT ON mailtable_changes"),
            "{pg:?}"
        );
        // From schema 3 on the stamp was there already: granted then.
        assert_eq!(after_migrate(Dialect::Postgres, 3).len(), 1);
    }

    #[test]
    fn group_advice_suggests_usermod_only_where_needed() {
        let text = group_advice(
            "mailtable",
            &[
                ("opensmtpd", "smtpd's table", Some(true)),
                ("mailtable-serve", "serve", Some(false)),
                ("dovecot", "checkpassword only", None),
            ],
        );
        assert!(
            text.starts_with("readable by group \"mailtable\""),
            "{text}"
        );
        assert!(
            text.contains("opensmtpd (smtpd's table): in the group"),
            "{text}"
        );
        assert!(
            text.contains(
                "mailtable-serve (serve): not in the group: usermod -aG mailtable mailtable-serve"
            ),
            "{text}"
        );
        assert!(
            text.contains("dovecot (checkpassword only): no such user here"),
            "{text}"
        );
        assert!(!text.contains("usermod -aG mailtable opensmtpd"), "{text}");
        assert!(!text.contains("usermod -aG mailtable dovecot"), "{text}");
    }
}
