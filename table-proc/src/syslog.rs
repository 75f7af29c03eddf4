//! Logs to syslog when smtpd gave the table nowhere else to write them.
//!
//! smtpd run as a daemon (not `-d`) calls `daemon(0, 0)` first, which
//! points fds 0, 1 and 2 at `/dev/null`, and `fork_proc_backend` hands a
//! table only a new fd 0 (and 1 from 7.x): its stderr stays `/dev/null`
//! (both in `usr.sbin/smtpd/smtpd.c`). Everything the table wrote there
//! (an outage, a row that cannot be served, `MAILTABLE_LOG=debug`) was
//! lost, while smtpd logged only its own 4xx. smtpd itself logs through
//! syslog(3), facility `mail` (`log_init` in `log.c`), and so does the
//! table then: one syslog message per log line, under its own name, with
//! the priority of the line's level. Under `smtpd -d` stderr is smtpd's
//! terminal or log file, and the table keeps writing there.

use std::ffi::CString;
use std::io;
use tracing::Level;
use tracing_subscriber::fmt::MakeWriter;

/// Whether fd 2 is `/dev/null` (a character device with its device
/// number), as smtpd's `daemon(0, 0)` leaves it.
pub fn stderr_discarded() -> bool {
    is_dev_null(libc::STDERR_FILENO)
}

fn is_dev_null(fd: libc::c_int) -> bool {
    let Ok(null) = std::fs::metadata("/dev/null") else {
        return false;
    };
    // SAFETY: fstat writes one `struct stat` into `st`, which is ours and
    // zeroed; a bad fd makes it return -1 and leaves it unread.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return false;
    }
    use std::os::unix::fs::MetadataExt;
    st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == null.rdev()
}

/// Open the connection to syslog once, under `table-mailtable`, facility
/// `mail`, and log each line there from now on ([`Syslog`]).
pub fn init(default: &str) {
    // SAFETY: the ident is a 'static C string, as openlog(3) requires (it
    // keeps the pointer); the flags and facility are libc's constants.
    unsafe {
        libc::openlog(
            c"table-mailtable".as_ptr(),
            libc::LOG_PID | libc::LOG_NDELAY,
            libc::LOG_MAIL,
        );
    }
    mailtable_core::logging::init_without_time(default, Syslog { send: to_syslog });
}

fn to_syslog(priority: libc::c_int, line: &CString) {
    // SAFETY: "%s" with one NUL-terminated string, which `line` is.
    unsafe { libc::syslog(priority, c"%s".as_ptr(), line.as_ptr()) };
}

/// A [`MakeWriter`] whose writers send each line they are given to
/// `send` when dropped, with the syslog priority of the event's level.
pub struct Syslog {
    send: fn(libc::c_int, &CString),
}

impl<'a> MakeWriter<'a> for Syslog {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line::new(self.send, libc::LOG_INFO)
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Line {
        Line::new(self.send, priority(*meta.level()))
    }
}

/// The syslog priority of a log level.
fn priority(level: Level) -> libc::c_int {
    match level {
        Level::ERROR => libc::LOG_ERR,
        Level::WARN => libc::LOG_WARNING,
        Level::INFO => libc::LOG_INFO,
        Level::DEBUG | Level::TRACE => libc::LOG_DEBUG,
    }
}

/// The text of one event, sent when the formatter is done with it.
pub struct Line {
    send: fn(libc::c_int, &CString),
    priority: libc::c_int,
    text: Vec<u8>,
}

impl Line {
    fn new(send: fn(libc::c_int, &CString), priority: libc::c_int) -> Line {
        Line {
            send,
            priority,
            text: Vec::new(),
        }
    }
}

impl io::Write for Line {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        // One message per line; a NUL (never written by our messages, but
        // a key from smtpd could hold one) would cut it short.
        for line in self.text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let clean: Vec<u8> = line
                .iter()
                .map(|&b| if b == 0 { b'?' } else { b })
                .collect();
            if let Ok(c) = CString::new(clean) {
                (self.send)(self.priority, &c);
            }
        }
    }
}

/// Whether `fd` is `/dev/null`: for the tests, on descriptors they open.
#[cfg(test)]
fn fd_is_dev_null(f: &impl std::os::fd::AsRawFd) -> bool {
    is_dev_null(f.as_raw_fd())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    static SENT: Mutex<Vec<(libc::c_int, String)>> = Mutex::new(Vec::new());

    fn record(priority: libc::c_int, line: &CString) {
        SENT.lock()
            .unwrap()
            .push((priority, line.to_string_lossy().into_owned()));
    }

    #[test]
    fn dev_null_is_told_from_pipes_files_and_other_devices() {
        let null = std::fs::File::open("/dev/null").unwrap();
        assert!(fd_is_dev_null(&null));
        let (r, _w) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(!fd_is_dev_null(&r));
        let file = tempfile::tempfile().unwrap();
        assert!(!fd_is_dev_null(&file));
        let zero = std::fs::File::open("/dev/zero").unwrap();
        assert!(!fd_is_dev_null(&zero));
    }

    #[test]
    fn each_line_is_one_message_with_its_levels_priority() {
        use std::io::Write;
        {
            let mut w = Line::new(record, priority(Level::WARN));
            w.write_all(b" WARN table: database ").unwrap();
            w.write_all(b"unavailable\n").unwrap();
            // Nothing is sent before the formatter is done with the line.
            assert!(SENT.lock().unwrap().is_empty());
        }
        {
            let mut w = Line::new(record, priority(Level::DEBUG));
            w.write_all(b"a\0b\nsecond\n").unwrap();
        }
        let sent = SENT.lock().unwrap().clone();
        assert_eq!(
            sent,
            vec![
                (
                    libc::LOG_WARNING,
                    " WARN table: database unavailable".to_string()
                ),
                (libc::LOG_DEBUG, "a?b".to_string()),
                (libc::LOG_DEBUG, "second".to_string()),
            ]
        );
        assert_eq!(priority(Level::ERROR), libc::LOG_ERR);
        assert_eq!(priority(Level::INFO), libc::LOG_INFO);
        assert_eq!(priority(Level::TRACE), libc::LOG_DEBUG);
    }
}
