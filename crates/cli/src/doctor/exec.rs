//! External commands (`smtpd -n`, `doveconf`, `doveadm`) with a timeout.
//!
//! A command that is not installed is [`Ran::Missing`], which the callers
//! report as "not applicable": a host without Dovecot is not broken. A
//! command that does not finish in time is killed, so one hung daemon
//! cannot hang the whole report.

use std::ffi::OsStr;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What running a command gave.
#[derive(Debug)]
pub(crate) enum Ran {
    /// No such program.
    Missing,
    /// It could not be started for another reason.
    Unstartable(String),
    /// Killed after the timeout.
    TimedOut,
    /// It exited (or was killed by a signal: `code` None).
    Exited {
        code: Option<i32>,
        stdout: String,
        stderr: String,
    },
}

impl Ran {
    /// Exited with status 0.
    pub(crate) fn success(&self) -> bool {
        matches!(self, Ran::Exited { code: Some(0), .. })
    }

    /// The last non-empty line of stderr (else stdout): what to show when
    /// the command failed.
    pub(crate) fn complaint(&self) -> String {
        match self {
            Ran::Missing => "not installed".into(),
            Ran::Unstartable(e) => e.clone(),
            Ran::TimedOut => "did not finish in time".into(),
            Ran::Exited {
                code,
                stdout,
                stderr,
            } => {
                let last = |s: &str| {
                    s.lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .map(|l| l.trim().to_string())
                };
                let what = last(stderr).or_else(|| last(stdout)).unwrap_or_default();
                match code {
                    Some(c) => format!("exit {c}: {what}"),
                    None => format!("killed by a signal: {what}"),
                }
            }
        }
    }
}

/// Run `program args...` with stdin closed, capturing its output; kill it
/// after `timeout`.
pub(crate) fn run<S: AsRef<OsStr>>(program: &str, args: &[S], timeout: Duration) -> Ran {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ran::Missing,
        Err(e) => return Ran::Unstartable(format!("cannot run {program}: {e}")),
    };
    // Readers on threads, so a chatty command never blocks on a full pipe.
    let reader = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let code = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status.code(),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                // The readers may stay blocked if the command left a
                // grandchild holding the pipes: leave them, do not wait.
                return Ran::TimedOut;
            }
        }
    };
    Ran::Exited {
        code,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_exit_and_timeout() {
        let t = Duration::from_secs(5);
        assert!(matches!(
            run("mailtable-no-such-program", &["x"], t),
            Ran::Missing
        ));
        let r = run("sh", &["-c", "echo out; echo bad >&2; exit 3"], t);
        assert!(!r.success());
        assert_eq!(r.complaint(), "exit 3: bad");
        assert!(run("true", &[] as &[&str], t).success());
        let r = run("sleep", &["5"], Duration::from_millis(100));
        assert!(matches!(r, Ran::TimedOut));
    }
}
