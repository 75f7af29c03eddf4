//! Reading a password: from a terminal prompt without echo (asked twice), or
//! stdin with `--password-stdin`, one line and nothing more (typed without
//! echo, once, when stdin is a terminal). Never from argv, where every local user could
//! read it in `ps`.
//!
//! The one decision a reader might question: the prompt turns echo off and
//! leaves the terminal in canonical mode, so the kernel's own line editing
//! (erase, kill, `^V`) applies and every other byte typed reaches the
//! password checks. A prompt in raw mode that edits the line itself drops
//! what it does not know (a tab, `^A`, an arrow key's escape sequence):
//! the stored password would then differ from the one typed, and the
//! checks that refuse such characters on every other path would never see
//! them (termios(3), "Canonical and noncanonical mode").

use crate::error::CliError;
use mailtable_core::Secret;
use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::termios::{self, LocalFlags, SetArg};
use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Read, Write};
use std::os::fd::AsFd;
use zeroize::Zeroize;

/// Read a new password for `what`.
pub fn read(password_stdin: bool, what: &str) -> Result<Secret, CliError> {
    // `--password-stdin` on a terminal: the line is typed, so it must not
    // show on the screen (and stay in the scrollback). Asked once, as the
    // one line the option reads, at the controlling terminal, which is
    // where the prompt reads: only when that is stdin (its session is
    // ours, tcgetsid(3)); any other terminal is read as a file.
    if password_stdin && termios::tcgetsid(std::io::stdin()).is_ok() {
        return prompt(&format!("Password for {what}: "));
    }
    if password_stdin {
        // fd 0 itself, unbuffered: std's stdin buffer would hide from the
        // readiness probe what it already read.
        let fd = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| CliError::usage(format!("cannot read the password from stdin: {e}")))?;
        let probe = fd.try_clone().ok();
        return from_stdin(File::from(fd), || probe.as_ref().is_none_or(readable_now));
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::usage(
            "no terminal to prompt for a password; use --password-stdin",
        ));
    }
    let first = prompt(&format!("Password for {what}: "))?;
    let again = prompt("Again: ")?;
    if first != again {
        return Err(CliError::usage("the two passwords differ"));
    }
    Ok(first)
}

/// Most bytes `--password-stdin` reads: far above any password (bcrypt
/// takes 72 bytes), small enough that a file given by mistake is refused
/// at once rather than read whole.
const STDIN_LIMIT: u64 = 4096;

/// The password `--password-stdin` reads from a pipe or file: one line,
/// its line end (`\n` or `\r\n`) not part of the password. A second line
/// that comes with it is refused rather than dropped: a password followed
/// by anything else (a comment, a second password meant for another
/// command) would otherwise store a password nobody meant, without a
/// word. Once the line is complete, reading goes on only while `pending`
/// says more can be read at once (data or the end of the input): a writer
/// that keeps the pipe open after the password (a program that waits for
/// this one before it closes its end) is not waited for, and a line it
/// sends later is not read at all.
fn from_stdin(mut input: impl Read, mut pending: impl FnMut() -> bool) -> Result<Secret, CliError> {
    let mut all = Vec::new();
    let mut chunk = [0u8; 512];
    while all.len() as u64 <= STDIN_LIMIT && (!all.contains(&b'\n') || pending()) {
        match input.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => all.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                all.zeroize();
                return Err(CliError::usage(format!(
                    "cannot read the password from stdin: {e}"
                )));
            }
        }
    }
    chunk.zeroize();
    let refuse = |all: &mut Vec<u8>, why: &str| {
        all.zeroize();
        Err(CliError::usage(why.to_string()))
    };
    if all.len() as u64 > STDIN_LIMIT {
        return refuse(
            &mut all,
            "more than 4096 bytes on stdin: --password-stdin takes the password alone, on one line",
        );
    }
    let mut end = all.len();
    if all[..end].ends_with(b"\n") {
        end -= 1;
        if all[..end].ends_with(b"\r") {
            end -= 1;
        }
    }
    if all[..end].contains(&b'\n') {
        return refuse(
            &mut all,
            "more than one line on stdin: --password-stdin takes the password alone, on one line",
        );
    }
    let Ok(pw) = std::str::from_utf8(&all[..end]) else {
        return refuse(&mut all, "the password on stdin is not UTF-8");
    };
    let secret = Secret::new(pw);
    all.zeroize();
    if secret.expose().is_empty() {
        return Err(CliError::usage("empty password on stdin"));
    }
    Ok(secret)
}

/// Whether reading `fd` would return at once (data, the end of the input
/// or an error), by a zero-timeout `poll(2)`. A failed `poll` reads as
/// "yes": the read then tells.
fn readable_now(fd: &std::os::fd::OwnedFd) -> bool {
    let mut pfd = [nix::poll::PollFd::new(
        fd.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    loop {
        match nix::poll::poll(&mut pfd, nix::poll::PollTimeout::ZERO) {
            Err(nix::errno::Errno::EINTR) => continue,
            Ok(0) => return false,
            _ => return true,
        }
    }
}

/// One line typed at the controlling terminal after `text`, not echoed.
fn prompt(text: &str) -> Result<Secret, CliError> {
    let cannot =
        |e: &dyn std::fmt::Display| CliError::usage(format!("cannot read the password: {e}"));
    let tty = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|e| cannot(&e))?;
    // `^C` is caught before echo goes off, so that it never ends the
    // process with echo off (it is raised again once echo is back on), and
    // echo goes off before the prompt shows, so that keys typed as soon as
    // it does are not echoed either.
    let interrupt = Interrupt::catch().map_err(|e| cannot(&e))?;
    let quiet = Quiet::on(&tty).map_err(|e| cannot(&e))?;
    let got = (&tty)
        .write_all(text.as_bytes())
        .and_then(|()| read_line(&tty, &interrupt));
    drop(quiet);
    drop(interrupt);
    let mut line = match got {
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {
            // Echo is back on: now `^C` may do what it does by default.
            let _ = signal::raise(Signal::SIGINT);
            return Err(CliError::usage("interrupted at the password prompt"));
        }
        other => other.map_err(|e| cannot(&e))?,
    };
    let secret = match line.as_slice() {
        [] => Err(CliError::usage(
            "no password typed (end of input at the prompt)",
        )),
        typed => {
            let typed = typed.strip_suffix(b"\n").unwrap_or(typed);
            match std::str::from_utf8(typed) {
                // Arrow and function keys arrive as escape sequences the
                // prompt does not edit with: what was stored would not be
                // what the admin saw themselves type.
                Ok(pw) if pw.chars().any(char::is_control) => Err(CliError::usage(
                    "password refused: it holds a control character (a tab, ^A, or a key \
                     such as an arrow, which this prompt does not edit with); nothing was \
                     stored",
                )),
                Ok(pw) => Ok(Secret::new(pw)),
                Err(_) => Err(CliError::usage(
                    "the password typed is not UTF-8 text (check the terminal's character set)",
                )),
            }
        }
    };
    line.zeroize();
    secret
}

/// One canonical-mode read: the line up to and with its `\n`, or what was
/// typed before `^D` (nothing at all: end of input). `^C` ends the read
/// with [`io::ErrorKind::Interrupted`].
fn read_line(mut tty: &File, interrupt: &Interrupt) -> io::Result<Vec<u8>> {
    // Canonical mode hands over at most one line, of at most 4095 bytes
    // (N_TTY_BUF_SIZE), whatever the buffer: typed-ahead lines wait for
    // the next prompt.
    let mut buf = vec![0u8; 4096];
    let got = loop {
        // Before each read: a `^C` may come before the first one starts.
        if interrupt.caught() {
            break Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
        }
        match tty.read(&mut buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => break other,
        }
    };
    let line = got.map(|n| buf[..n].to_vec());
    buf.zeroize();
    line
}

/// Echo off (the newline still echoed, so the next output starts on a
/// line of its own) until dropped, which puts the terminal back as it was,
/// also when the read failed.
struct Quiet<'a> {
    tty: &'a File,
    saved: termios::Termios,
}

impl<'a> Quiet<'a> {
    fn on(tty: &'a File) -> io::Result<Quiet<'a>> {
        let saved = termios::tcgetattr(tty)?;
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        quiet
            .local_flags
            .insert(LocalFlags::ICANON | LocalFlags::ECHONL);
        // TCSANOW, not TCSAFLUSH: a password typed ahead (or fed by a
        // script through a pty) is kept.
        termios::tcsetattr(tty, SetArg::TCSANOW, &quiet)?;
        Ok(Quiet { tty, saved })
    }
}

impl Drop for Quiet<'_> {
    fn drop(&mut self) {
        // Nothing better to do if this fails: the terminal is gone.
        let _ = termios::tcsetattr(self.tty, SetArg::TCSANOW, &self.saved);
    }
}

static CAUGHT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    CAUGHT.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// `SIGINT` turned into an interrupted read while the prompt waits: the
/// default action would end the process with echo still off. Dropping it
/// restores the previous action; [`prompt`] raises the signal again once
/// the terminal is restored.
struct Interrupt {
    previous: SigAction,
}

impl Interrupt {
    fn catch() -> io::Result<Interrupt> {
        CAUGHT.store(false, std::sync::atomic::Ordering::SeqCst);
        // No SA_RESTART: the read must return EINTR.
        let action = SigAction::new(
            SigHandler::Handler(on_interrupt),
            SaFlags::empty(),
            SigSet::empty(),
        );
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe.
        let previous = unsafe { signal::sigaction(Signal::SIGINT, &action) }?;
        Ok(Interrupt { previous })
    }

    fn caught(&self) -> bool {
        CAUGHT.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Interrupt {
    fn drop(&mut self) {
        // SAFETY: puts back the action that was in place before `catch`.
        let _ = unsafe { signal::sigaction(Signal::SIGINT, &self.previous) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Result<String, String> {
        from_stdin(bytes, || true)
            .map(|s| s.expose().to_string())
            .map_err(|e| e.to_string())
    }

    /// One line, its line end not part of it; anything more is refused,
    /// never dropped; blanks inside and at the ends are the password's.
    #[test]
    fn stdin_gives_one_line_or_a_refusal() {
        for (input, want) in [
            (&b"pw"[..], "pw"),
            (b"pw\n", "pw"),
            (b"pw\r\n", "pw"),
            (b" p w \n", " p w "),
            (b"pw\r", "pw\r"),
        ] {
            assert_eq!(read(input).as_deref(), Ok(want), "{input:?}");
        }
        for (input, why) in [
            (&b"a\nb\n"[..], "more than one line"),
            (b"a\n\n", "more than one line"),
            (b"\n", "empty password"),
            (b"", "empty password"),
            (b"\xff\n", "not UTF-8"),
        ] {
            let e = read(input).unwrap_err();
            assert!(e.contains(why), "{input:?}: {e}");
        }
        // The line, then the writer keeps its end open (waiting for this
        // process): taken without waiting for the end of the input. With
        // a second line already sent, refused as above.
        for (sent, want) in [(&b"pw\n"[..], Ok("pw")), (b"pw\nmore\n", Err(()))] {
            let (mut writer, reader) = std::os::unix::net::UnixStream::pair().unwrap();
            writer.write_all(sent).unwrap();
            let (done, result) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let probe = std::os::fd::OwnedFd::from(reader.try_clone().unwrap());
                let got = from_stdin(reader, || readable_now(&probe));
                let _ = done.send(got.map(|s| s.expose().to_string()).map_err(|_| ()));
            });
            let got = result
                .recv_timeout(std::time::Duration::from_secs(60))
                .expect("the reader waited for the writer to close");
            assert_eq!(got.as_deref(), want.as_deref(), "{sent:?}");
            drop(writer);
        }
        let big = vec![b'x'; STDIN_LIMIT as usize + 1];
        assert!(read(&big).unwrap_err().contains("more than 4096 bytes"));
        let most = vec![b'x'; STDIN_LIMIT as usize];
        assert_eq!(read(&most).map(|p| p.len()), Ok(4096));
    }
}
