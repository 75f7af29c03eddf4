//! The password prompt on a real terminal: the binary runs on a
//! pseudo-terminal that is its controlling terminal, and the test types at
//! the prompts. What was typed is what is stored, or the password is
//! refused; nothing typed is echoed; the terminal is left as it was, also
//! after `^C`.

#![allow(clippy::unwrap_used)]

use mailtable_core::password::PasswordHash;
use mailtable_core::Secret;
use nix::pty::openpty;
use nix::sys::termios::{tcgetattr, LocalFlags};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};

struct Typed {
    status: ExitStatus,
    /// Everything the terminal showed.
    screen: String,
    /// The terminal's local flags after the command ended.
    flags: LocalFlags,
}

/// Runs `mailtable ARGS` on a new pseudo-terminal and types `keys` once the
/// first prompt is shown.
fn on_terminal(db: &str, args: &[&str], keys: &[u8]) -> Typed {
    let pty = openpty(None, None).unwrap();
    let slave: OwnedFd = pty.slave;
    let stdio = || Stdio::from(slave.try_clone().unwrap());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailtable"));
    cmd.arg("--database")
        .arg(db)
        .args(args)
        .stdin(stdio())
        .stdout(stdio())
        .stderr(stdio());
    // SAFETY: setsid and ioctl are async-signal-safe; the child makes the
    // terminal on its stdin its controlling one, as a login shell's is.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()?;
            if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    // Only the child holds the terminal now: reading it ends (EIO) when the
    // child is gone.
    drop(cmd);
    drop(slave);
    let mut master = File::from(pty.master);
    let mut screen = Vec::new();
    let mut buf = [0u8; 1024];
    let mut typed = false;
    loop {
        // EIO once the child and every copy of the slave are gone.
        let n = master.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        screen.extend_from_slice(&buf[..n]);
        if !typed && String::from_utf8_lossy(&screen).contains("Password for") {
            master.write_all(keys).unwrap();
            typed = true;
        }
    }
    let status = child.wait().unwrap();
    // The master side reads the pair's settings (tty_ioctl(4)).
    let flags = tcgetattr(&master).unwrap().local_flags;
    Typed {
        status,
        screen: String::from_utf8_lossy(&screen).into_owned(),
        flags,
    }
}

fn fresh() -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mail.db");
    let url = format!("sqlite://{}", path.display());
    let out = Command::new(env!("CARGO_BIN_EXE_mailtable"))
        .args(["--database", &url, "init"])
        .output()
        .unwrap();
    assert!(out.status.success());
    (dir, path, url)
}

fn stored_hash(path: &PathBuf, username: &str) -> Option<String> {
    let c = rusqlite::Connection::open(path).unwrap();
    c.query_row(
        "SELECT password FROM users WHERE username = ?1",
        [username],
        |r| r.get(0),
    )
    .ok()
}

#[test]
fn what_is_typed_is_what_is_stored_and_nothing_is_echoed() {
    let (_dir, path, url) = fresh();
    let pw = "typed pass wörd 1";
    let t = on_terminal(
        &url,
        &["user", "add", "ann@example.com"],
        format!("{pw}\n{pw}\n").as_bytes(),
    );
    assert_eq!(t.status.code(), Some(0), "{}", t.screen);
    assert!(
        t.screen.contains("added mailbox ann@example.com"),
        "{}",
        t.screen
    );
    assert!(!t.screen.contains("typed pass"), "echoed: {}", t.screen);
    let hash = PasswordHash::new(stored_hash(&path, "ann").unwrap());
    assert!(hash.verify(&Secret::new(pw)).unwrap());
    assert!(t.flags.contains(LocalFlags::ECHO), "echo left off");
}

/// `--password-stdin` with stdin on a terminal: the line typed is not
/// echoed either, and it is asked once.
#[test]
fn password_stdin_on_a_terminal_is_not_echoed() {
    let (_dir, path, url) = fresh();
    let pw = "stdin typed pass";
    let t = on_terminal(
        &url,
        &["user", "add", "ann@example.com", "--password-stdin"],
        format!("{pw}\n").as_bytes(),
    );
    assert_eq!(t.status.code(), Some(0), "{}", t.screen);
    assert!(!t.screen.contains("stdin typed"), "echoed: {}", t.screen);
    assert!(!t.screen.contains("Again"), "{}", t.screen);
    let hash = PasswordHash::new(stored_hash(&path, "ann").unwrap());
    assert!(hash.verify(&Secret::new(pw)).unwrap());
    assert!(t.flags.contains(LocalFlags::ECHO), "echo left off");
}

/// A raw-mode prompt dropped these: `a<TAB>b` was stored as `ab`.
#[test]
fn control_characters_typed_are_refused_not_dropped() {
    let (_dir, path, url) = fresh();
    for (n, keys) in [
        &b"a\tb secret\na\tb secret\n"[..],
        b"a\x01b secret\na\x01b secret\n",
        b"a\x1b[Db secret\na\x1b[Db secret\n",
    ]
    .into_iter()
    .enumerate()
    {
        let user = format!("u{n}");
        let t = on_terminal(&url, &["user", "add", &format!("{user}@example.com")], keys);
        assert_eq!(t.status.code(), Some(2), "{keys:?}: {}", t.screen);
        assert!(t.screen.contains("refused"), "{keys:?}: {}", t.screen);
        assert!(!t.screen.contains("secret"), "{}", t.screen);
        assert_eq!(stored_hash(&path, &user), None, "{keys:?} was stored");
        assert!(t.flags.contains(LocalFlags::ECHO), "echo left off");
    }
}

#[test]
fn the_terminals_line_editing_applies() {
    let (_dir, path, url) = fresh();
    // Erase (DEL) and kill (^U), as the terminal's defaults have them.
    let t = on_terminal(
        &url,
        &["user", "add", "bob@example.com"],
        b"wrongX\x7f\x7f\x7f\x7f\x7f\x7fright pw 9\njunk\x15right pw 9\n",
    );
    assert_eq!(t.status.code(), Some(0), "{}", t.screen);
    let hash = PasswordHash::new(stored_hash(&path, "bob").unwrap());
    assert!(hash.verify(&Secret::new("right pw 9")).unwrap());
}

#[test]
fn interrupt_and_end_of_input_leave_the_terminal_as_it_was() {
    let (_dir, path, url) = fresh();
    let t = on_terminal(&url, &["user", "add", "c@example.com"], b"half typ\x03");
    assert_eq!(t.status.signal(), Some(libc::SIGINT), "{}", t.screen);
    assert!(t.flags.contains(LocalFlags::ECHO), "echo left off after ^C");
    assert_eq!(stored_hash(&path, "c"), None);
    let t = on_terminal(&url, &["user", "add", "c@example.com"], b"\x04");
    assert_eq!(t.status.code(), Some(2), "{}", t.screen);
    assert!(t.screen.contains("no password typed"), "{}", t.screen);
    assert!(t.flags.contains(LocalFlags::ECHO), "echo left off after ^D");
    assert_eq!(stored_hash(&path, "c"), None);
}

/// Nothing is asked for an address that cannot take it.
#[test]
fn no_prompt_for_an_address_without_a_mailbox() {
    let (_dir, _path, url) = fresh();
    let t = on_terminal(
        &url,
        &["user", "passwd", "ghost@example.com"],
        b"typed in vain\ntyped in vain\n",
    );
    assert_eq!(t.status.code(), Some(1), "{}", t.screen);
    assert!(
        t.screen.contains("ghost@example.com has no mailbox"),
        "{}",
        t.screen
    );
    assert!(!t.screen.contains("Password for"), "{}", t.screen);
    let pw = "new pass 2";
    let keys = b"first pass 1\nfirst pass 1\n";
    let t = on_terminal(&url, &["user", "add", "dan@example.com"], keys);
    assert_eq!(t.status.code(), Some(0), "{}", t.screen);
    let t = on_terminal(
        &url,
        &["user", "passwd", "dan@example.com"],
        format!("{pw}\n{pw}\n").as_bytes(),
    );
    assert_eq!(t.status.code(), Some(0), "{}", t.screen);
    assert!(
        t.screen.contains("changed the password of dan@example.com"),
        "{}",
        t.screen
    );
}
