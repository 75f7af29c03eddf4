//! `mailtable doctor`: what is wrong with this installation, and the one
//! command or config line that fixes each problem.
//!
//! The failures it looks for are plumbing, not data: a daemon user that
//! cannot read the database or its side files, Dovecot's auth process
//! without the database's group, smtpd's table line naming a program that is
//! not where smtpd looks, the Lua script's URL or token not matching
//! `serve`, a schema older than the binaries. Each shows up far away, as a
//! 451 or "temporary authentication failure", so each gets its own line.
//!
//! One file per area ([`database`], [`smtpd`], [`dovecot`], [`serve`],
//! [`endtoend`]); every check is a function returning [`Check`] (ok, a
//! problem with its fix, or not applicable), so it can be tested on a fake
//! config tree; [`render`] turns the list into text or JSON without I/O.
//! External commands run through [`exec`] with a timeout, and a daemon that
//! is not installed makes its checks "not applicable", never an error.
//! [`unix`] holds the user and permission look-ups and the fork that tries
//! the database as a daemon's user.

mod database;
mod dovecot;
mod endtoend;
mod exec;
mod render;
mod rows;
mod serve;
mod smtpd;
mod unix;

pub use crate::args::DoctorArgs;
use crate::error::CliError;
use mailtable_core::exit::Exit;
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    /// It holds.
    Ok,
    /// It does not; `fix` says how to make it hold.
    Problem,
    /// Nothing to check here (daemon not installed, mode not used).
    NotApplicable,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Check {
    /// Stable name, `area.what` (scripts may match on it).
    pub(crate) name: String,
    /// The outcome.
    pub(crate) status: Status,
    /// What was found.
    pub(crate) message: String,
    /// The command or config line that fixes a problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) fix: Option<String>,
}

impl Check {
    pub(crate) fn ok(name: &str, message: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: Status::Ok,
            message: message.into(),
            fix: None,
        }
    }

    pub(crate) fn problem(name: &str, message: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: Status::Problem,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }

    pub(crate) fn na(name: &str, message: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: Status::NotApplicable,
            message: message.into(),
            fix: None,
        }
    }
}

/// A file only the package installs (Debian policy 12.5 puts every
/// package's copyright there): present when mailtable came from the .deb.
/// Not dpkg's own database under /var/lib/dpkg, which is dpkg's business
/// (lintian: uses-dpkg-database-directly).
const PACKAGE_FILES: &str = "/usr/share/doc/mailtable/copyright";

/// The fix for one of mailtable's programs missing at `dest`: reinstall
/// the package when it is installed (its files are dpkg's to restore),
/// else copy the program from a source build.
pub(crate) fn program_fix(program: &str, dest: &Path) -> String {
    program_fix_for(Path::new(PACKAGE_FILES).exists(), program, dest)
}

fn program_fix_for(packaged: bool, program: &str, dest: &Path) -> String {
    if packaged {
        "apt install --reinstall mailtable".into()
    } else {
        format!("install -m 755 target/release/{program} {}", dest.display())
    }
}

/// Whether the running processes of one of mailtable's programs run the
/// file now installed: after an upgrade or a new build put over it, a
/// process started before goes on with the old code (and the old bugs)
/// until it is restarted. `what` names it in the message, `fix` restarts
/// it.
pub(crate) fn program_current(
    check: &str,
    what: &str,
    program: &str,
    arg: Option<&str>,
    fix: &str,
) -> Check {
    let procs: Vec<_> = unix::running(program, arg)
        .into_iter()
        .map(|pid| (pid, unix::program_file(pid)))
        .collect();
    program_current_of(check, what, &procs, fix)
}

/// [`program_current`] on what /proc gave for each process: the program
/// file and whether it was replaced, `None` when it could not be read.
fn program_current_of(
    check: &str,
    what: &str,
    procs: &[(u32, Option<(std::path::PathBuf, bool)>)],
    fix: &str,
) -> Check {
    if procs.is_empty() {
        return Check::na(check, format!("no {what} runs"));
    }
    let replaced: Vec<String> = procs
        .iter()
        .filter_map(|(pid, f)| match f {
            Some((path, true)) => Some(format!("pid {pid}: {}", path.display())),
            _ => None,
        })
        .collect();
    if !replaced.is_empty() {
        return Check::problem(
            check,
            format!(
                "{what} runs a program file replaced or removed since it started ({}): \
                 it still runs the old code",
                replaced.join(", ")
            ),
            fix,
        );
    }
    let current: Vec<String> = procs
        .iter()
        .filter_map(|(pid, f)| {
            f.as_ref()
                .map(|(path, _)| format!("pid {pid}: {}", path.display()))
        })
        .collect();
    if current.is_empty() {
        return Check::na(
            check,
            format!("run doctor as root to see which program file {what} runs"),
        );
    }
    Check::ok(
        check,
        format!(
            "{what} runs the program file installed now ({})",
            current.join(", ")
        ),
    )
}

/// Run every check and print the report; exit 0 when all hold.
pub fn run(
    config: Option<&Path>,
    database: Option<&str>,
    args: &DoctorArgs,
) -> Result<Exit, CliError> {
    let timeout = Duration::from_secs(args.timeout.max(1));
    let mut checks = Vec::new();

    let db = database::run(config, database, timeout, &mut checks);
    let smtpd = smtpd::run(args, timeout, &mut checks);
    let dovecot = dovecot::run(args, db.config.as_ref(), timeout, &mut checks);
    database::probe_daemons(&db, &smtpd, &dovecot, args, timeout, &mut checks);
    serve::run(db.config.as_ref(), &dovecot, args, timeout, &mut checks);
    endtoend::run(&db, &smtpd, &dovecot, args, timeout, &mut checks);

    let out = if args.json {
        render::json(&checks)
    } else {
        render::text(&checks)
    };
    crate::output::write(format_args!("{out}"));
    Ok(if render::all_hold(&checks) {
        Exit::Ok
    } else {
        Exit::Problems
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_replaced_under_a_running_process_is_a_problem() {
        let fix = "systemctl restart dovecot-mailtable";
        let file = |p: &str, gone| Some((std::path::PathBuf::from(p), gone));
        let c = program_current_of("serve.program", "serve", &[], fix);
        assert_eq!(
            (c.status, c.message.as_str()),
            (Status::NotApplicable, "no serve runs")
        );
        let c = program_current_of(
            "serve.program",
            "serve",
            &[(7, file("/usr/bin/dovecot-mailtable", false))],
            fix,
        );
        assert_eq!(c.status, Status::Ok);
        assert!(
            c.message.contains("pid 7: /usr/bin/dovecot-mailtable"),
            "{}",
            c.message
        );
        // One old process among current ones is enough.
        let c = program_current_of(
            "serve.program",
            "serve",
            &[
                (7, file("/usr/bin/dovecot-mailtable", false)),
                (9, file("/usr/bin/dovecot-mailtable", true)),
                (11, None),
            ],
            fix,
        );
        assert_eq!(c.status, Status::Problem);
        assert_eq!(c.fix.as_deref(), Some(fix));
        assert!(
            c.message.contains("(pid 9: /usr/bin/dovecot-mailtable)"),
            "{}",
            c.message
        );
        // Not readable (not root): nothing is claimed.
        let c = program_current_of("serve.program", "serve", &[(7, None)], fix);
        assert_eq!(c.status, Status::NotApplicable);
    }

    #[test]
    fn a_missing_program_is_reinstalled_from_where_it_came() {
        let dest = Path::new("/usr/libexec/opensmtpd/table-mailtable");
        assert_eq!(
            program_fix_for(true, "table-mailtable", dest),
            "apt install --reinstall mailtable"
        );
        assert_eq!(
            program_fix_for(false, "table-mailtable", dest),
            "install -m 755 target/release/table-mailtable /usr/libexec/opensmtpd/table-mailtable"
        );
    }
}
