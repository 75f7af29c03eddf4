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
    print!("{out}");
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
