//! The file descriptors smtpd gives its table process, and the readiness
//! probe the serving loop uses to spot injected bytes.
//!
//! smtpd puts one end of a socketpair on fd 0, and from 7.x also on fd 1
//! (`fork_proc_backend` in `usr.sbin/smtpd/smtpd.c`). In 6.x fd 1 is
//! smtpd's own stdout, so replies must go to fd 0 for imsg; writing to fd 0
//! also works for the text protocol, since it is the same socket there.
//! Hence [`smtpd_channel`] duplicates fd 0 for both directions instead of
//! using stdout, and the loop never has to know which descriptor it writes.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

/// Two independent handles on fd 0: one to read requests, one to write
/// replies. Unbuffered; the loop writes each reply with one `write_all`.
pub fn smtpd_channel() -> io::Result<(File, File)> {
    let reader = File::from(io::stdin().as_fd().try_clone_to_owned()?);
    let writer = reader.try_clone()?;
    Ok((reader, writer))
}

/// Whether reading `fd` would return at once (data, EOF or an error), by a
/// zero-timeout `poll`. Any failure of `poll` itself reads as "nothing
/// pending", the answer that never drops a request; a signal (the
/// database watch's `SIGIO`, which `SA_RESTART` does not restart `poll`
/// after: signal(7)) asks again.
pub fn input_pending(fd: BorrowedFd<'_>) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: `pfd` is one valid, exclusively borrowed pollfd and the
        // count is 1; `fd` stays open for the call because it is borrowed.
        let ready = unsafe { libc::poll(&mut pfd, 1, 0) };
        if ready < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        return ready > 0 && pfd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    #[test]
    fn pending_sees_data_and_eof_but_not_silence() {
        let (mut smtpd, table) = UnixStream::pair().expect("socketpair");
        assert!(!input_pending(table.as_fd()));
        smtpd.write_all(b"x").expect("write");
        assert!(input_pending(table.as_fd()));
        drop(smtpd);
        assert!(input_pending(table.as_fd()));
    }
}
