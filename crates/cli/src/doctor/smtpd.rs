//! OpenSMTPD: the `mailtable:` table in smtpd.conf, the program smtpd will
//! run for it, whether smtpd accepts the config, and which table protocol
//! the installed smtpd speaks.
//!
//! smtpd.conf(5): `table name [type:]pathname`. For a type it does not know
//! itself smtpd runs `PATH_LIBEXEC/table-TYPE` with `pathname` as its
//! argument (`fork_proc_backend` in usr.sbin/smtpd/smtpd.c); on Debian
//! PATH_LIBEXEC is /usr/libexec/opensmtpd, and `smtpd -n` already fails
//! when that program is missing. The table runs as smtpd's unprivileged
//! user: `opensmtpd` on Debian, `_smtpd` on OpenBSD.

use super::database::Reader;
use super::exec::{self, Ran};
use super::unix::{self, Creds};
use super::{Check, DoctorArgs};
use mailtable_core::Config;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// smtpd.conf: Debian's path, then OpenBSD's.
const DEFAULT_CONFS: [&str; 2] = ["/etc/smtpd.conf", "/etc/mail/smtpd.conf"];
/// smtpd's user: Debian's, then OpenBSD's (SMTPD_USER).
const USERS: [&str; 2] = ["opensmtpd", "_smtpd"];

/// A `table NAME mailtable:CONFIG` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Table {
    pub(crate) name: String,
    /// The argument smtpd passes (the part after `mailtable:`).
    pub(crate) config: String,
    /// Line number, for messages.
    pub(crate) line: usize,
}

/// What the smtpd checks found.
#[derive(Debug, Default)]
pub(crate) struct Smtpd {
    pub(crate) table: Option<Table>,
    /// smtpd's user, with the groups initgroups gives it.
    pub(crate) creds: Option<Creds>,
    /// The program smtpd runs for the table.
    pub(crate) binary: PathBuf,
}

impl Smtpd {
    /// The table process as a database reader.
    pub(crate) fn reader(&self, db_group: Option<u32>) -> Option<Reader> {
        let (table, creds) = (self.table.as_ref()?, self.creds.clone()?);
        let g = super::database::daemons_group(db_group);
        Some(Reader {
            name: "smtpd",
            group_fix: format!("usermod -aG {g} {}  (then restart smtpd)", creds.user),
            creds,
            config: Some(PathBuf::from(&table.config)),
        })
    }
}

/// The `mailtable:` tables of a smtpd.conf text.
pub(crate) fn tables(conf: &str) -> Vec<Table> {
    let mut out = Vec::new();
    for (i, raw) in conf.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace().map(|w| w.trim_matches('"'));
        if words.next() != Some("table") {
            continue;
        }
        let (Some(name), Some(spec)) = (words.next(), words.next()) else {
            continue;
        };
        if let Some(config) = spec.strip_prefix("mailtable:") {
            out.push(Table {
                name: name.into(),
                config: config.into(),
                line: i + 1,
            });
        }
    }
    out
}

/// smtpd's subaddressing delimiter in a smtpd.conf text: the last
/// `smtp sub-addr-delim C` (smtpd.conf(5); one character, quoted or not),
/// else smtpd's default `+`.
pub(crate) fn sub_addr_delim(conf: &str) -> char {
    let mut delim = '+';
    for raw in conf.lines() {
        let line = raw.split('#').next().unwrap_or("");
        let words: Vec<&str> = line.split_whitespace().collect();
        if let ["smtp", "sub-addr-delim", c] = words[..] {
            let mut chars = c.trim_matches('"').chars();
            if let (Some(c), None) = (chars.next(), chars.next()) {
                delim = c;
            }
        }
    }
    delim
}

/// The table's tag delimiter is smtpd's: smtpd cuts a delivery user name
/// at its own (lka_expand in usr.sbin/smtpd/lka_session.c) and walks a
/// tagged address with it (aliases_virtual_get), so with two different
/// ones `user add p+q@` is accepted and smtpd bounces its mail.
pub(crate) fn check_delimiter(conf: &Path, text: &str, t: &Table) -> Check {
    let smtpd = sub_addr_delim(text);
    let config = match Config::locate(Some(Path::new(&t.config))) {
        Ok(c) => c,
        Err(_) => {
            return Check::na(
                "smtpd.delimiter",
                format!("{} does not load (see config)", t.config),
            )
        }
    };
    match config.delimiter() {
        Ok(d) if d == smtpd => Check::ok(
            "smtpd.delimiter",
            format!("tag_delimiter {d:?} is smtpd's sub-addr-delim"),
        ),
        Ok(d) => Check::problem(
            "smtpd.delimiter",
            format!(
                "{} has tag_delimiter {d:?} and smtpd ({}) cuts addresses at {smtpd:?}: \
                 a mailbox named with {smtpd:?} is refused by smtpd (550), and tagged \
                 addresses are read differently",
                t.config,
                conf.display()
            ),
            format!(
                "tag_delimiter = \"{smtpd}\" in {} (or `smtp sub-addr-delim \"{d}\"` in {})",
                t.config,
                conf.display()
            ),
        ),
        Err(e) => Check::na("smtpd.delimiter", e),
    }
}

/// `version: OpenSMTPD 6.8.0p2` (first line of `smtpd -h`) -> (6, 8).
pub(crate) fn version(text: &str) -> Option<(String, u32, u32)> {
    let v = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("version: OpenSMTPD "))?
        .trim();
    let mut nums = v.split(|c: char| !c.is_ascii_digit());
    let major = nums.next()?.parse().ok()?;
    let minor = nums.next()?.parse().ok()?;
    Some((v.to_string(), major, minor))
}

/// The table protocol of that smtpd: the text protocol from 7.6 on
/// (smtpd-tables(7)), the binary imsg one before.
pub(crate) fn protocol(major: u32, minor: u32) -> &'static str {
    if (major, minor) >= (7, 6) {
        "text protocol 0.1"
    } else {
        "binary imsg protocol"
    }
}

/// The table program exists and smtpd (root) can run it.
pub(crate) fn check_binary(path: &Path) -> Check {
    let shown = path.display();
    let fix = super::program_fix("table-mailtable", path);
    match std::fs::metadata(path) {
        Err(_) => Check::problem(
            "smtpd.table-program",
            format!("{shown} is missing: smtpd runs it for the mailtable: table"),
            fix,
        ),
        Ok(m) if !m.is_file() || m.permissions().mode() & 0o111 == 0 => Check::problem(
            "smtpd.table-program",
            format!("{shown} is not an executable file"),
            fix,
        ),
        Ok(_) => Check::ok("smtpd.table-program", format!("{shown} is executable")),
    }
}

/// The table's argument: an existing absolute path (smtpd passes it as is;
/// a relative one would be resolved against the table's working directory).
pub(crate) fn check_table(conf: &Path, t: &Table) -> Check {
    let shown = conf.display();
    let p = Path::new(&t.config);
    if !p.is_absolute() {
        Check::problem(
            "smtpd.table",
            format!(
                "{shown}:{}: table {} names {:?}, not an absolute path",
                t.line, t.name, t.config
            ),
            format!("table {} mailtable:/etc/mail/mailtable.toml", t.name),
        )
    } else if !p.exists() {
        Check::problem(
            "smtpd.table",
            format!(
                "{shown}:{}: table {}: {} does not exist",
                t.line, t.name, t.config
            ),
            // As the README has it: readable by the daemons' group only.
            format!("install -m 640 -g mailtable mailtable.toml {}", t.config),
        )
    } else {
        Check::ok(
            "smtpd.table",
            format!(
                "{shown}:{}: table {} mailtable:{}",
                t.line, t.name, t.config
            ),
        )
    }
}

pub(crate) fn run(args: &DoctorArgs, timeout: Duration, checks: &mut Vec<Check>) -> Smtpd {
    let mut found = Smtpd {
        binary: args.smtpd_libexec.join("table-mailtable"),
        ..Smtpd::default()
    };
    let conf = args
        .smtpd_conf
        .clone()
        .or_else(|| DEFAULT_CONFS.iter().map(PathBuf::from).find(|p| p.exists()));
    let Some(conf) = conf else {
        checks.push(Check::na(
            "smtpd.conf",
            "no smtpd.conf (OpenSMTPD not installed?)",
        ));
        return found;
    };
    let text = match std::fs::read_to_string(&conf) {
        Ok(t) => t,
        Err(e) => {
            // Only a permission problem is one that root would not have.
            let fix = if e.kind() == std::io::ErrorKind::PermissionDenied && !unix::is_root() {
                "run doctor as root, or give the right path with --smtpd-conf"
            } else {
                "give the path of smtpd's config with --smtpd-conf"
            };
            checks.push(Check::problem(
                "smtpd.conf",
                format!("cannot read {}: {e}", conf.display()),
                fix,
            ));
            return found;
        }
    };
    let Some(table) = tables(&text).into_iter().next() else {
        checks.push(Check::problem(
            "smtpd.table",
            format!("{} has no `mailtable:` table", conf.display()),
            "table users mailtable:/etc/mail/mailtable.toml",
        ));
        return found;
    };
    checks.push(check_table(&conf, &table));
    checks.push(check_delimiter(&conf, &text, &table));
    checks.push(check_binary(&found.binary));
    // smtpd starts the table once, at its own start (and at `smtpctl
    // update table` only the data is read again).
    checks.push(super::program_current(
        "smtpd.table-program-running",
        "smtpd's table-mailtable",
        "table-mailtable",
        None,
        "systemctl restart opensmtpd",
    ));
    found.creds = USERS.iter().find_map(|u| unix::login_creds(u));
    if found.creds.is_none() {
        checks.push(Check::problem(
            "smtpd.user",
            "neither user opensmtpd nor _smtpd exists",
            "apt-get install opensmtpd",
        ));
    }
    found.table = Some(table);

    // smtpd.8: -n checks the configuration only.
    let conf_arg = conf.as_os_str().to_os_string();
    match exec::run("smtpd", &["-n".into(), "-f".into(), conf_arg], timeout) {
        Ran::Missing => checks.push(Check::na("smtpd.config-ok", "smtpd is not installed")),
        r if r.success() => checks.push(Check::ok(
            "smtpd.config-ok",
            format!("smtpd -n -f {} accepts it", conf.display()),
        )),
        r => checks.push(Check::problem(
            "smtpd.config-ok",
            format!("smtpd -n -f {}: {}", conf.display(), r.complaint()),
            format!("correct {} until `smtpd -n -f {0}` says OK", conf.display()),
        )),
    }
    match exec::run("smtpd", &["-h"], timeout) {
        Ran::Exited { stdout, stderr, .. } => match version(&format!("{stdout}\n{stderr}")) {
            Some((v, major, minor)) => checks.push(Check::ok(
                "smtpd.protocol",
                format!(
                    "OpenSMTPD {v} speaks the {} (table-mailtable speaks both)",
                    protocol(major, minor)
                ),
            )),
            None => checks.push(Check::na("smtpd.protocol", "`smtpd -h` printed no version")),
        },
        _ => checks.push(Check::na("smtpd.protocol", "smtpd is not installed")),
    }
    found
}

#[cfg(test)]
mod tests {
    use super::super::Status;
    use super::*;

    #[test]
    fn finds_the_mailtable_table() {
        let conf = "# comment table x mailtable:/no\n\
                    table aliases file:/etc/mail/aliases\n\
                    table users mailtable:/etc/mail/mailtable.toml   # ours\n\
                    table quoted \"mailtable:/q.toml\"\n";
        let t = tables(conf);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].name, "users");
        assert_eq!(t[0].config, "/etc/mail/mailtable.toml");
        assert_eq!(t[0].line, 3);
        assert_eq!(t[1].config, "/q.toml");
        assert!(tables("table users proc:/usr/bin/x\n").is_empty());
    }

    /// smtpd's delimiter from smtpd.conf, and the table's compared with it.
    #[test]
    fn the_tag_delimiter_is_smtpds() {
        assert_eq!(sub_addr_delim("listen on lo\n"), '+');
        assert_eq!(sub_addr_delim("smtp sub-addr-delim \"-\"   # tags\n"), '-');
        assert_eq!(
            sub_addr_delim("smtp sub-addr-delim =\n# smtp sub-addr-delim -\n"),
            '='
        );
        let d = tempfile::tempdir().unwrap();
        let conf = d.path().join("smtpd.conf");
        let table = d.path().join("mailtable.toml");
        let t = Table {
            name: "users".into(),
            config: table.display().to_string(),
            line: 1,
        };
        std::fs::write(&table, "tag_delimiter = \"-\"\n").unwrap();
        let c = check_delimiter(&conf, "listen on lo\n", &t);
        assert_eq!(c.status, Status::Problem, "{c:?}");
        assert!(c.fix.unwrap().starts_with("tag_delimiter = \"+\""));
        let c = check_delimiter(&conf, "smtp sub-addr-delim -\n", &t);
        assert_eq!(c.status, Status::Ok, "{c:?}");
        std::fs::write(&table, "").unwrap();
        assert_eq!(check_delimiter(&conf, "\n", &t).status, Status::Ok);
    }

    #[test]
    fn versions_and_protocols() {
        let (v, a, b) = version("version: OpenSMTPD 6.8.0p2\nusage: smtpd [-dFhnv]").unwrap();
        assert_eq!((v.as_str(), a, b), ("6.8.0p2", 6, 8));
        assert_eq!(protocol(a, b), "binary imsg protocol");
        let (_, a, b) = version("version: OpenSMTPD 7.6.0p1\n").unwrap();
        assert_eq!(protocol(a, b), "text protocol 0.1");
        assert_eq!(protocol(7, 5), "binary imsg protocol");
        assert!(version("usage: smtpd").is_none());
    }

    #[test]
    fn binary_and_table_argument() {
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join("table-mailtable");
        let c = check_binary(&bin);
        assert_eq!(c.status, Status::Problem);
        assert_eq!(
            c.fix.unwrap(),
            format!(
                "install -m 755 target/release/table-mailtable {}",
                bin.display()
            )
        );
        std::fs::write(&bin, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(check_binary(&bin).message.contains("not an executable"));
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(check_binary(&bin).status, Status::Ok);

        let conf = d.path().join("smtpd.conf");
        let t = |c: &str| Table {
            name: "users".into(),
            config: c.into(),
            line: 1,
        };
        assert_eq!(check_table(&conf, &t("rel.toml")).status, Status::Problem);
        assert!(check_table(&conf, &t("/no/such.toml"))
            .message
            .contains("does not exist"));
        let ok = bin.display().to_string();
        assert_eq!(check_table(&conf, &t(&ok)).status, Status::Ok);
    }
}
