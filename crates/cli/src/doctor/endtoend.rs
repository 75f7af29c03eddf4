//! End to end: for one mailbox, what smtpd's table answers (run as smtpd
//! would run it: the installed program, as smtpd's user, with the argument
//! from smtpd.conf) and what `doveadm user` answers through the running
//! Dovecot must name the same mailbox, uid, gid and home.
//!
//! The table is driven with the text protocol of smtpd-tables(7) (7.6 and
//! later); table-mailtable speaks both protocols and tells them apart by
//! the first bytes, so this works whichever smtpd is installed. Its
//! answers: `alias` gives the delivery user (`hugo_barrera.io`), `userinfo`
//! of that name gives `uid:gid:home` (table(5)).

use super::database::Db;
use super::dovecot::Dovecot;
use super::exec::{self, Ran};
use super::smtpd::Smtpd;
use super::unix::Creds;
use super::{Check, DoctorArgs};
use mailtable_core::store::{self, Access, OpenOptions};
use mailtable_core::{delivery, Accounts};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What one side says about a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    pub(crate) user: String,
    pub(crate) uid: String,
    pub(crate) gid: String,
    pub(crate) home: String,
}

/// `doveadm user` output (2.3: `field\tvalue` lines after a header; 2.4
/// the same with aligned columns) -> its fields. 2.3 prints no `user` line
/// when the userdb kept the name it was asked: then it is `asked`.
pub(crate) fn parse_doveadm(text: &str, asked: &str) -> Option<Seen> {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(name)).then(|| w.collect::<Vec<_>>().join(" "))
        })
    };
    let home = field("home")?;
    Some(Seen {
        user: field("user").unwrap_or_else(|| asked.to_string()),
        uid: field("uid").unwrap_or_default(),
        gid: field("gid").unwrap_or_default(),
        home,
    })
}

/// The table's `alias` and `userinfo` answers -> its view of the mailbox.
pub(crate) fn from_table(alias: &str, userinfo: &str) -> Option<Seen> {
    let first = alias.split(',').next()?.trim();
    let user = delivery::decode(first).ok()?.to_string();
    let mut parts = userinfo.splitn(3, ':');
    Some(Seen {
        user,
        uid: parts.next()?.into(),
        gid: parts.next()?.into(),
        home: parts.next()?.into(),
    })
}

/// Compare both views.
pub(crate) fn compare(address: &str, table: &Seen, dovecot: &Seen) -> Check {
    if table == dovecot {
        Check::ok(
            "end-to-end",
            format!(
                "{address}: smtpd's table and Dovecot agree: {} uid {} gid {} home {}",
                table.user, table.uid, table.gid, table.home
            ),
        )
    } else {
        Check::problem(
            "end-to-end",
            format!("{address}: smtpd's table says {table:?}, Dovecot says {dovecot:?}"),
            "give smtpd's table and Dovecot's helper the same mailtable.toml (smtpd.conf table line, dovecot args/-c)",
        )
    }
}

/// One request/reply session with the table program.
struct TableSession {
    child: std::process::Child,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    n: u32,
}

impl TableSession {
    fn start(
        binary: &Path,
        config: &str,
        creds: &Creds,
        timeout: Duration,
    ) -> Result<Self, String> {
        let (ours, theirs) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
        ours.set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        let groups: Vec<libc::gid_t> = creds.groups.clone();
        let (uid, gid) = (creds.uid, creds.gid);
        let mut cmd = Command::new(binary);
        cmd.arg(config)
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: between fork and exec the closure only makes three
        // async-signal-safe system calls on data prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
        let writer = ours.try_clone().map_err(|e| e.to_string())?;
        let mut s = TableSession {
            child,
            reader: BufReader::new(ours),
            writer,
            n: 0,
        };
        s.send(
            "config|smtpd-version|7.6.0\nconfig|protocol|0.1\nconfig|tablename|doctor\nconfig|ready\n",
        )?;
        loop {
            if s.line()? == "register|ready" {
                return Ok(s);
            }
        }
    }

    fn send(&mut self, text: &str) -> Result<(), String> {
        self.writer
            .write_all(text.as_bytes())
            .map_err(|e| format!("table: {e}"))
    }

    fn line(&mut self) -> Result<String, String> {
        let mut l = String::new();
        match self.reader.read_line(&mut l) {
            Ok(0) => Err("the table exited (its config or database? see smtpd's log)".into()),
            Ok(_) => Ok(l.trim_end_matches('\n').to_string()),
            Err(e) => Err(format!("no answer from the table: {e}")),
        }
    }

    /// `lookup SERVICE KEY` -> Ok(Some(value)) found, Ok(None) not found.
    fn lookup(&mut self, service: &str, key: &str) -> Result<Option<String>, String> {
        self.n += 1;
        let id = format!("{:08x}", self.n);
        self.send(&format!(
            "table|0.1|0.0|doctor|lookup|{service}|{id}|{key}\n"
        ))?;
        let reply = self.line()?;
        let mut f = reply.splitn(4, '|');
        match (f.next(), f.next(), f.next(), f.next()) {
            (Some("lookup-result"), Some(i), Some("found"), Some(v)) if i == id => {
                Ok(Some(v.into()))
            }
            (Some("lookup-result"), Some(i), Some("not-found"), _) if i == id => Ok(None),
            _ => Err(format!("table answered {reply:?}")),
        }
    }

    fn finish(mut self, timeout: Duration) {
        drop(self.writer);
        drop(self.reader);
        let deadline = Instant::now() + timeout;
        while let Ok(None) = self.child.try_wait() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn table_view(smtpd: &Smtpd, address: &str, timeout: Duration) -> Result<Seen, String> {
    let (Some(table), Some(creds)) = (&smtpd.table, &smtpd.creds) else {
        return Err("no smtpd table".into());
    };
    let mut s = TableSession::start(&smtpd.binary, &table.config, creds, timeout)?;
    let result = (|| {
        let alias = s
            .lookup("alias", address)?
            .ok_or_else(|| format!("the table does not know {address}"))?;
        let first = alias.split(',').next().unwrap_or("").trim().to_string();
        let info = s
            .lookup("userinfo", &first)?
            .ok_or_else(|| format!("the table has no userinfo for {first}"))?;
        from_table(&alias, &info).ok_or_else(|| format!("cannot read {alias:?} / {info:?}"))
    })();
    s.finish(timeout);
    result
}

fn first_mailbox(db: &Db, timeout: Duration) -> Option<String> {
    let (config, url) = (db.config.as_ref()?, db.url.as_ref()?);
    let opts = OpenOptions {
        access: Access::ReadOnly,
        timeout,
    };
    let mut s = store::open(url, &opts).ok()?;
    let accounts = Accounts::new(config).list(s.as_mut()).ok()?;
    accounts
        .into_iter()
        .find(|a| a.is_active())
        .map(|a| a.address.to_string())
}

pub(crate) fn run(
    db: &Db,
    smtpd: &Smtpd,
    dovecot: &Dovecot,
    args: &DoctorArgs,
    timeout: Duration,
    checks: &mut Vec<Check>,
) {
    if smtpd.table.is_none() || smtpd.creds.is_none() || dovecot.mode.is_none() {
        checks.push(Check::na(
            "end-to-end",
            "needs both smtpd's mailtable table and a Dovecot mailtable mode",
        ));
        return;
    }
    let Some(address) = args.address.clone().or_else(|| first_mailbox(db, timeout)) else {
        checks.push(Check::na(
            "end-to-end",
            "no mailbox to look up (give one with --address)",
        ));
        return;
    };
    let table = match table_view(smtpd, &address, timeout) {
        Ok(t) => t,
        Err(e) => {
            // The table answering "unknown" is no plumbing problem when
            // the address given is no mailbox at all.
            let fix = match e.contains("does not know") && args.address.is_some() {
                true => {
                    "give --address a mailbox of the database (`mailtable user list`), or \
                         fix the smtpd.* and database.read-as-smtpd lines if it is one"
                }
                false => "fix the smtpd.* and database.read-as-smtpd lines first",
            };
            checks.push(Check::problem(
                "end-to-end",
                format!("{address}: smtpd's table ({}): {e}", smtpd.binary.display()),
                fix,
            ));
            return;
        }
    };
    let mut doveadm_args = dovecot.conf_args.clone();
    doveadm_args.extend(["user".into(), address.clone().into()]);
    let shown = format!(
        "doveadm {}",
        doveadm_args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let check = match exec::run("doveadm", &doveadm_args, timeout) {
        Ran::Missing => Check::na("end-to-end", "doveadm is not installed"),
        Ran::Exited {
            code: Some(0),
            stdout,
            ..
        } => match parse_doveadm(&stdout, &address) {
            Some(d) => compare(&address, &table, &d),
            None => Check::problem(
                "end-to-end",
                format!("{shown}: no home field in its answer"),
                "run it by hand and compare with the README's Dovecot section",
            ),
        },
        r => Check::problem(
            "end-to-end",
            format!("{shown}: {}", r.complaint()),
            "start Dovecot (systemctl start dovecot) and fix the dovecot.* and serve.* lines first",
        ),
    };
    checks.push(check);
}

#[cfg(test)]
mod tests {
    use super::super::Status;
    use super::*;

    #[test]
    fn both_views() {
        let d23 = "field\tvalue\nuser\thugo@barrera.io\nuid\t5000\ngid\t5000\nhome\t/var/vmail/barrera.io/hugo\n";
        let d = parse_doveadm(d23, "hugo_barrera.io").unwrap();
        // 2.3 leaves out `user` when the name did not change.
        let plain = "field\tvalue\nuid\t5000\ngid\t5000\nhome\t/var/vmail/barrera.io/hugo\n";
        assert_eq!(parse_doveadm(plain, "hugo@barrera.io").unwrap(), d);
        let t = from_table("hugo_barrera.io", "5000:5000:/var/vmail/barrera.io/hugo").unwrap();
        assert_eq!(d, t);
        assert_eq!(compare("hugo@barrera.io", &t, &d).status, Status::Ok);
        let other = from_table("hugo_barrera.io", "5000:5000:/srv/mail/barrera.io/hugo").unwrap();
        let c = compare("hugo@barrera.io", &other, &d);
        assert_eq!(c.status, Status::Problem);
        assert!(c.message.contains("/srv/mail"));
        assert!(parse_doveadm("userdb lookup: user x doesn't exist", "x").is_none());
        // john_doe@x.org round-trips through the delivery name.
        assert_eq!(
            from_table("john_doe_x.org", "1:2:/h").unwrap().user,
            "john_doe@x.org"
        );
    }
}
