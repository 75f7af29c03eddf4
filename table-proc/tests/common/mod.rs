//! A built `table-mailtable` on a socketpair, as smtpd 7.6 runs it: the
//! text protocol on its fd 0.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const HANDSHAKE: &str =
    "config|smtpd-version|7.6.0\nconfig|protocol|0.1\nconfig|tablename|users\nconfig|ready\n";

/// A table process on a socketpair, past the handshake.
pub struct Table {
    child: Child,
    w: UnixStream,
    r: BufReader<UnixStream>,
    n: u32,
}

impl Table {
    /// Started with `config` (a path that need not exist: every answer
    /// is then an error).
    pub fn start(config: &Path) -> Table {
        let (ours, theirs) = UnixStream::pair().expect("socketpair");
        ours.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let child = Command::new(env!("CARGO_BIN_EXE_table-mailtable"))
            .arg(config)
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
        Table { child, w, r, n: 0 }
    }

    /// The `alias` lookup of `key`: the reply's result and value.
    pub fn alias(&mut self, key: &str) -> String {
        self.n += 1;
        let id = format!("{:08x}", self.n);
        let req = format!("table|0.1|1.5|users|lookup|alias|{id}|{key}\n");
        self.w.write_all(req.as_bytes()).expect("request");
        let mut line = String::new();
        self.r.read_line(&mut line).expect("an answer");
        let prefix = format!("lookup-result|{id}|");
        assert!(line.starts_with(&prefix), "{line:?}");
        line[prefix.len()..].trim_end().to_string()
    }

    /// Send it `sig`; it must still be running.
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) with the pid of our own child, still running.
        assert_eq!(
            unsafe { libc::kill(self.child.id() as libc::pid_t, sig) },
            0
        );
    }

    /// Still running; then EOF, how smtpd ends it, and a clean exit.
    pub fn end(self) {
        let Table {
            mut child, w, r, ..
        } = self;
        assert_eq!(child.try_wait().expect("wait"), None, "still running");
        drop(w);
        drop(r);
        let status = child.wait().expect("wait");
        assert!(status.success(), "{status}");
    }
}
