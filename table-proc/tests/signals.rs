//! The built `table-mailtable` survives the signals a host sends around
//! (log rotation's USR1, stray ALRM, real-time signals): smtpd exits when
//! one of its tables does. Played over a socketpair on fd 0 with the text
//! protocol, as smtpd 7.6 does.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

const HANDSHAKE: &str =
    "config|smtpd-version|7.6.0\nconfig|protocol|0.1\nconfig|tablename|users\nconfig|ready\n";

#[test]
fn stray_signals_do_not_end_the_table() {
    let (ours, theirs) = UnixStream::pair().expect("socketpair");
    ours.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    // A config that does not exist: every answer is an error, which is
    // all this test needs (an answer at all).
    let mut child = Command::new(env!("CARGO_BIN_EXE_table-mailtable"))
        .arg("/nonexistent/mailtable.toml")
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("table-mailtable runs");
    let mut w = ours.try_clone().expect("clone");
    let mut r = BufReader::new(ours);
    w.write_all(HANDSHAKE.as_bytes()).expect("handshake");
    let mut line = String::new();
    while line != "register|ready\n" {
        line.clear();
        assert!(r.read_line(&mut line).expect("register lines") > 0);
    }
    let pid = child.id() as libc::pid_t;
    let signals = [
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGALRM,
        libc::SIGHUP,
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGPIPE,
        libc::SIGVTALRM,
        libc::SIGPROF,
        libc::SIGIO,
        libc::SIGPWR,
        libc::SIGXCPU,
        libc::SIGXFSZ,
        libc::SIGRTMIN(),
        libc::SIGRTMAX(),
    ];
    for (n, sig) in signals.into_iter().enumerate() {
        // SAFETY: kill(2) with the pid of our own child, still running.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "signal {sig}");
        let id = format!("{n:08x}");
        let req = format!("table|0.1|1.5|users|lookup|alias|{id}|hugo@barrera.io\n");
        w.write_all(req.as_bytes()).expect("request");
        line.clear();
        r.read_line(&mut line).expect("an answer");
        assert!(
            line.starts_with(&format!("lookup-result|{id}|")),
            "after signal {sig}: {line:?}"
        );
        assert_eq!(child.try_wait().expect("wait"), None, "signal {sig}");
    }
    // EOF is how smtpd ends it.
    drop(w);
    drop(r);
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status}");
}
