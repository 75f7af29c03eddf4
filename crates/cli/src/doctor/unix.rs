//! Users, groups and file permissions as the daemons see them, and the one
//! real test: fork, become the daemon's user, and try.
//!
//! Permission checks here are pure ([`can_access`] on a file's owner, group
//! and mode against a set of credentials) so they can be tested on literal
//! values; they follow the order of path_resolution(7): owner bits if the
//! uid matches, else group bits if any of the groups matches, else the
//! other bits. Root passes (CAP_DAC_OVERRIDE) except for execute.

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Gid, Group, Uid, User};
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Who a daemon process runs as: what the kernel checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Creds {
    /// User name, for messages.
    pub(crate) user: String,
    pub(crate) uid: u32,
    /// Primary group.
    pub(crate) gid: u32,
    /// Supplementary groups (the primary one may be repeated here).
    pub(crate) groups: Vec<u32>,
}

impl Creds {
    /// Whether `gid` is among the process's groups.
    pub(crate) fn has_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }
}

/// Read or write access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    Read,
    Write,
}

/// Whether `creds` may read or write a file of this owner, group and mode.
pub(crate) fn can_access(owner: u32, group: u32, mode: u32, creds: &Creds, want: Want) -> bool {
    if creds.uid == 0 {
        return true;
    }
    let bit = match want {
        Want::Read => 0o4,
        Want::Write => 0o2,
    };
    let shift = if creds.uid == owner {
        6
    } else if creds.has_group(group) {
        3
    } else {
        0
    };
    mode >> shift & bit != 0
}

/// Whether `creds` may reach and read or write `path` (every directory on
/// the way searchable, the file itself readable or writable).
pub(crate) fn path_access(path: &Path, creds: &Creds, want: Want) -> Result<bool, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut dir = path.parent();
    while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
        let m = std::fs::metadata(d).map_err(|e| format!("{}: {e}", d.display()))?;
        if !searchable(&m, creds) {
            return Ok(false);
        }
        dir = d.parent();
    }
    Ok(can_access(meta.uid(), meta.gid(), meta.mode(), creds, want))
}

/// Whether `creds` may search (enter) the directory of `m`.
fn searchable(m: &std::fs::Metadata, creds: &Creds) -> bool {
    let shift = if creds.uid == m.uid() {
        6
    } else if creds.has_group(m.gid()) {
        3
    } else {
        0
    };
    creds.uid == 0 || m.mode() >> shift & 0o1 != 0
}

/// The credentials a process of `user` gets from initgroups(3): its
/// primary group and every group that lists it in /etc/group.
pub(crate) fn login_creds(user: &str) -> Option<Creds> {
    let u = User::from_name(user).ok()??;
    let name = CString::new(user).ok()?;
    let groups = nix::unistd::getgrouplist(&name, u.gid)
        .map(|g| g.into_iter().map(Gid::as_raw).collect())
        .unwrap_or_else(|_| vec![u.gid.as_raw()]);
    Some(Creds {
        user: user.into(),
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
        groups,
    })
}

/// The running processes whose program (argv\[0\], its file name) is
/// `program` and whose arguments include `arg` (any, for `None`), in pid
/// order, from /proc/PID/cmdline (proc(5)).
pub(crate) fn running(program: &str, arg: Option<&str>) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|pid| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let mut argv = cmdline.split(|&b| b == 0);
            let argv0 = argv
                .next()
                .map(|a| Path::new(std::ffi::OsStr::from_bytes(a)));
            argv0.and_then(Path::file_name) == Some(program.as_ref())
                && arg.is_none_or(|arg| argv.any(|a| a == arg.as_bytes()))
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// The credentials a running process holds: of the first one [`running`]
/// finds that `keep` takes, from /proc (proc(5): `Uid:`, `Gid:` and
/// `Groups:` of /proc/PID/status, the effective ids). `None` when none
/// runs.
pub(crate) fn running_creds(program: &str, arg: &str, keep: impl Fn(u32) -> bool) -> Option<Creds> {
    running(program, Some(arg))
        .into_iter()
        .filter(|pid| keep(*pid))
        .find_map(|pid| {
            let (uid, gid, groups) =
                parse_status(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)?;
            Some(Creds {
                user: user_name(uid).unwrap_or_else(|| uid.to_string()),
                uid,
                gid,
                groups,
            })
        })
}

/// The config file process `pid`, a mailtable program, reads: `Ok` of
/// the one its command line names, relative to its working directory, or
/// of `None` for the default (`Config::locate`); `Err` when that cannot be
/// told (its command line gone, or a relative name and a working
/// directory this user may not read).
pub(crate) fn config_of(pid: u32) -> Result<Option<PathBuf>, ()> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).map_err(drop)?;
    let argv: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let Some(named) = config_in_argv(&argv) else {
        return Ok(None);
    };
    if named.is_absolute() {
        return Ok(Some(named));
    }
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).map_err(drop)?;
    Ok(Some(cwd.join(named)))
}

/// The value of `-c FILE`, `-cFILE`, `--config FILE` or `--config=FILE` in
/// `argv` (clap's forms of the binaries' global option, anywhere after the
/// program name; the last one wins, as clap takes it).
fn config_in_argv(argv: &[&[u8]]) -> Option<PathBuf> {
    let path = |b: &[u8]| PathBuf::from(std::ffi::OsStr::from_bytes(b));
    let mut found = None;
    let mut args = argv.iter().skip(1);
    while let Some(a) = args.next() {
        if *a == b"--" {
            break;
        }
        if *a == b"-c" || *a == b"--config" {
            found = args.next().map(|v| path(v));
        } else if let Some(v) = a.strip_prefix(b"--config=") {
            found = Some(path(v));
        } else if let Some(v) = a.strip_prefix(b"-c").filter(|v| !v.is_empty()) {
            // clap takes `-c=FILE` as `-c FILE`.
            found = Some(path(v.strip_prefix(b"=").unwrap_or(v)));
        }
    }
    found
}

/// The program file process `pid` runs, from the link /proc/PID/exe, and
/// whether that file was removed or replaced since the process started it
/// (the kernel then shows the old path with ` (deleted)` appended,
/// proc(5)); as an upgrade does, which renames the new file over the old.
/// `None` when the link cannot be read (another user's process, without
/// root).
pub(crate) fn program_file(pid: u32) -> Option<(PathBuf, bool)> {
    let link = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    Some(split_deleted(&link))
}

/// A /proc/PID/exe target as the path and whether it was deleted.
fn split_deleted(link: &Path) -> (PathBuf, bool) {
    match link.as_os_str().as_bytes().strip_suffix(b" (deleted)") {
        Some(path) => (PathBuf::from(std::ffi::OsStr::from_bytes(path)), true),
        None => (link.to_path_buf(), false),
    }
}

/// The effective uid and gid and the supplementary groups in the text of
/// /proc/PID/status (`Uid:` and `Gid:` list real, effective, saved and
/// filesystem ids).
fn parse_status(status: &str) -> Option<(u32, u32, Vec<u32>)> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|rest| rest.split_whitespace().filter_map(|n| n.parse().ok()))
    };
    let uid = field("Uid:")?.nth(1)?;
    let gid = field("Gid:")?.nth(1)?;
    let groups = field("Groups:")?.collect();
    Some((uid, gid, groups))
}

/// The uid and primary gid of `user`.
pub(crate) fn user_ids(user: &str) -> Option<(u32, u32)> {
    let u = User::from_name(user).ok()??;
    Some((u.uid.as_raw(), u.gid.as_raw()))
}

/// The name of a uid.
pub(crate) fn user_name(uid: u32) -> Option<String> {
    User::from_uid(Uid::from_raw(uid)).ok()?.map(|u| u.name)
}

/// The gid of a group name.
pub(crate) fn group_id(name: &str) -> Option<u32> {
    Group::from_name(name).ok()?.map(|g| g.gid.as_raw())
}

/// The name of a gid (or the number when it has none).
pub(crate) fn group_name(gid: u32) -> String {
    match Group::from_gid(Gid::from_raw(gid)) {
        Ok(Some(g)) => g.name,
        _ => gid.to_string(),
    }
}

/// Whether a daemon may be given `gid` to read the database: not root's
/// group, nor one that opens the host to whoever has it (system logs,
/// shadow passwords, disks, sudo). A database in such a group (a restore
/// by `cp` as root, the `sqlite3` shell) must be given back to the
/// daemons' group instead: `usermod -aG root opensmtpd` would let smtpd's
/// table process read every root-group file of the host.
pub(crate) fn shareable_group(gid: u32) -> bool {
    const PRIVILEGED: [&str; 9] = [
        "root", "wheel", "adm", "shadow", "sudo", "disk", "kmem", "sys", "staff",
    ];
    gid != 0 && !PRIVILEGED.contains(&group_name(gid).as_str())
}

/// The first directory above `path` that `creds` may not search, if any:
/// the file's own mode is then not what keeps the reader out.
pub(crate) fn unsearchable_dir(path: &Path, creds: &Creds) -> Option<PathBuf> {
    // From `/` down: the first one that stops the walk.
    let mut dirs: Vec<&Path> = path
        .ancestors()
        .skip(1)
        .filter(|d| !d.as_os_str().is_empty())
        .collect();
    dirs.reverse();
    dirs.into_iter()
        .find(|d| std::fs::metadata(d).is_ok_and(|m| !searchable(&m, creds)))
        .map(Path::to_path_buf)
}

/// Whether this process runs as root (the forks below need it).
pub(crate) fn is_root() -> bool {
    Uid::effective().is_root()
}

/// Fork; in the child become `creds` (setgroups, setgid, setuid: the order
/// in which a root process can still drop all three) and run `probe`; give
/// its answer back over a pipe. The child is killed after `timeout`.
///
/// Only called while the doctor holds no other thread (every external
/// command has been waited for and no database connection is open), so the
/// child may allocate and open files like any single-threaded program.
pub(crate) fn run_as(
    creds: &Creds,
    timeout: Duration,
    probe: impl FnOnce() -> Result<String, String>,
) -> Result<String, String> {
    let (reader, writer) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: the doctor is single-threaded at this point (see above), so
    // the child inherits no lock held by another thread.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            drop(reader);
            let result = become_user(creds).and_then(|()| probe());
            let line = match &result {
                Ok(m) => format!("ok {m}"),
                Err(m) => format!("err {m}"),
            };
            let mut w = std::fs::File::from(writer);
            let _ = w.write_all(line.as_bytes());
            drop(w);
            // SAFETY: _exit skips the parent's atexit handlers and buffered
            // output, which belong to the parent.
            unsafe { libc::_exit(i32::from(result.is_err())) }
        }
        ForkResult::Parent { child } => {
            drop(writer);
            let deadline = Instant::now() + timeout;
            loop {
                match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Ok(WaitStatus::StillAlive) => {
                        let _ = kill(child, Signal::SIGKILL);
                        let _ = waitpid(child, None);
                        return Err(format!("no answer within {} s", timeout.as_secs()));
                    }
                    Ok(_) => break,
                    Err(e) => return Err(format!("waitpid: {e}")),
                }
            }
            let mut text = String::new();
            let _ = std::fs::File::from(reader).read_to_string(&mut text);
            match text.split_once(' ') {
                Some(("ok", m)) => Ok(m.to_string()),
                Some(("err", m)) => Err(m.to_string()),
                _ => Err("the probe died without an answer".into()),
            }
        }
    }
}

fn become_user(c: &Creds) -> Result<(), String> {
    let groups: Vec<Gid> = c.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    nix::unistd::setgroups(&groups).map_err(|e| format!("setgroups: {e}"))?;
    nix::unistd::setgid(Gid::from_raw(c.gid)).map_err(|e| format!("setgid: {e}"))?;
    nix::unistd::setuid(Uid::from_raw(c.uid)).map_err(|e| format!("setuid: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_of_a_process() {
        let status = "Name:\tdovecot-mailta\nUid:\t65534\t65534\t65534\t65534\n\
                      Gid:\t997\t998\t998\t998\nGroups:\t998 120 \nVmRSS:\t100 kB\n";
        assert_eq!(parse_status(status), Some((65534, 998, vec![998, 120])));
        assert_eq!(parse_status("Uid:\t1\t1\t1\t1\n"), None);
    }

    /// A process started here is found by its program and an argument,
    /// with the credentials it runs with.
    #[test]
    fn a_running_process_is_found_with_its_credentials() {
        let mut child = std::process::Command::new("sleep")
            .arg("7.25")
            .spawn()
            .expect("sleep runs");
        // Until the child has exec'd, /proc shows this program's command
        // line in it.
        let start = Instant::now();
        let mut found = running_creds("sleep", "7.25", |_| true);
        while found.is_none() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
            found = running_creds("sleep", "7.25", |_| true);
        }
        child.kill().ok();
        child.wait().ok();
        let found = found.expect("found in /proc");
        assert_eq!(found.uid, Uid::effective().as_raw());
        assert_eq!(found.gid, nix::unistd::Gid::effective().as_raw());
        assert!(running_creds("sleep", "no-such-argument", |_| true).is_none());
    }

    /// Every form clap takes for the global `-c`, anywhere on the line.
    #[test]
    fn the_config_a_command_line_names() {
        let argv = |line: &str| -> Option<PathBuf> {
            let v: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
            config_in_argv(&v)
        };
        let p = |s: &str| Some(PathBuf::from(s));
        assert_eq!(argv("dovecot-mailtable serve"), None);
        assert_eq!(argv("dovecot-mailtable -c /a.toml serve"), p("/a.toml"));
        assert_eq!(argv("dovecot-mailtable serve -c /a.toml"), p("/a.toml"));
        assert_eq!(argv("dovecot-mailtable serve -c/a.toml"), p("/a.toml"));
        assert_eq!(argv("dovecot-mailtable serve -c=/a.toml"), p("/a.toml"));
        assert_eq!(argv("dovecot-mailtable --config b.toml serve"), p("b.toml"));
        assert_eq!(
            argv("dovecot-mailtable serve --config=/b.toml"),
            p("/b.toml")
        );
        assert_eq!(
            argv("dovecot-mailtable -c /a.toml serve -c /b.toml"),
            p("/b.toml")
        );
        assert_eq!(argv("dovecot-mailtable serve -- -c /a.toml"), None);
        assert_eq!(argv("-c"), None);
    }

    #[test]
    fn a_deleted_program_file_is_told_by_its_link() {
        assert_eq!(
            split_deleted(Path::new("/usr/bin/dovecot-mailtable (deleted)")),
            (PathBuf::from("/usr/bin/dovecot-mailtable"), true)
        );
        assert_eq!(
            split_deleted(Path::new("/usr/bin/dovecot-mailtable")),
            (PathBuf::from("/usr/bin/dovecot-mailtable"), false)
        );
        // Only the kernel's suffix, at the very end.
        assert_eq!(
            split_deleted(Path::new("/opt/x (deleted)/table-mailtable")),
            (PathBuf::from("/opt/x (deleted)/table-mailtable"), false)
        );
    }

    /// A process whose program file is renamed over (an upgrade) while it
    /// runs is found, and its program file shows as replaced.
    #[test]
    fn a_program_replaced_under_a_running_process_shows() {
        let dir = tempfile::tempdir().expect("temp dir");
        let prog = dir.path().join("mt-doctor-sleep");
        std::fs::copy("/bin/sleep", &prog).expect("copy sleep");
        let mut child = std::process::Command::new(&prog)
            .arg("7.5")
            .spawn()
            .expect("the copy runs");
        let start = Instant::now();
        let mut pids = running("mt-doctor-sleep", Some("7.5"));
        while pids.is_empty() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
            pids = running("mt-doctor-sleep", Some("7.5"));
        }
        let pid = *pids.first().expect("found in /proc");
        let before = program_file(pid);
        let new = dir.path().join("new");
        std::fs::copy("/bin/sleep", &new).expect("copy sleep");
        std::fs::rename(&new, &prog).expect("rename over");
        let after = program_file(pid);
        child.kill().ok();
        child.wait().ok();
        assert_eq!(before, Some((prog.clone(), false)));
        assert_eq!(after, Some((prog, true)));
        assert!(running("mt-doctor-sleep", Some("no-such-argument")).is_empty());
    }

    fn creds(uid: u32, gid: u32, groups: &[u32]) -> Creds {
        Creds {
            user: "u".into(),
            uid,
            gid,
            groups: groups.to_vec(),
        }
    }

    #[test]
    fn access_follows_owner_then_group_then_other() {
        let dovecot = creds(104, 107, &[]);
        // 0640 root:mailtable: only with the group.
        assert!(!can_access(0, 995, 0o640, &dovecot, Want::Read));
        assert!(can_access(
            0,
            995,
            0o640,
            &creds(104, 107, &[995]),
            Want::Read
        ));
        assert!(!can_access(
            0,
            995,
            0o640,
            &creds(104, 107, &[995]),
            Want::Write
        ));
        assert!(can_access(
            0,
            995,
            0o660,
            &creds(104, 995, &[]),
            Want::Write
        ));
        // The owner bits win even when the group would allow more.
        assert!(!can_access(104, 107, 0o060, &dovecot, Want::Read));
        assert!(can_access(0, 0, 0o644, &dovecot, Want::Read));
        assert!(can_access(0, 0, 0o000, &creds(0, 0, &[]), Want::Write));
    }

    #[test]
    fn root_and_privileged_groups_are_never_shared() {
        assert!(!shareable_group(0));
        let named = |n: &str| Group::from_name(n).ok().flatten().map(|g| g.gid.as_raw());
        for n in ["adm", "shadow", "disk"] {
            if let Some(g) = named(n) {
                assert!(!shareable_group(g), "{n}");
            }
        }
        // A group of no privilege (gid of "nogroup", or a number no group has).
        assert!(shareable_group(named("nogroup").unwrap_or(64_999)));
    }

    #[test]
    fn the_first_closed_directory_is_found() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let sub = d.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let f = sub.join("f");
        std::fs::write(&f, "x").unwrap();
        let other = creds(64_998, 64_998, &[]);
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(unsearchable_dir(&f, &other), None);
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(unsearchable_dir(&f, &other), Some(sub.clone()));
        assert_eq!(unsearchable_dir(&f, &creds(0, 0, &[])), None);
    }

    #[test]
    fn path_access_needs_searchable_directories() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let sub = d.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let f = sub.join("f");
        std::fs::write(&f, "x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let other = creds(65534, 65534, &[]);
        assert!(path_access(&f, &other, Want::Read).unwrap());
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(!path_access(&f, &other, Want::Read).unwrap());
        assert!(path_access(&d.path().join("missing"), &other, Want::Read).is_err());
    }

    #[test]
    fn run_as_self_reports_the_probe() {
        // Become who we already are: works as root and as a user alike.
        let me = Creds {
            user: "me".into(),
            uid: Uid::current().as_raw(),
            gid: Gid::current().as_raw(),
            groups: nix::unistd::getgroups()
                .unwrap()
                .into_iter()
                .map(Gid::as_raw)
                .collect(),
        };
        if !is_root() {
            return; // setgroups needs root
        }
        let t = Duration::from_secs(5);
        assert_eq!(run_as(&me, t, || Ok("fine".into())).unwrap(), "fine");
        assert_eq!(run_as(&me, t, || Err("no".into())).unwrap_err(), "no");
    }
}
