//! [`FileWatch`]: tells a daemon's lookup that the SQLite file cannot have
//! changed since its last change check, without a system call.
//!
//! The change check ([`super::sqlite`]) is a `stat` of the path and a read
//! of the file's header per lookup: two system calls, which on a lookup
//! served from the answer cache cost more than the rest of the lookup
//! (issue 16: a warm lookup of table-mailtable was 1.4 to 1.6 times the
//! cost of a table that answers without looking at anything). The kernel
//! can say instead when something happened: an inotify instance watches
//! the file and every directory above it (inotify(7)), and with `O_ASYNC`
//! it raises `SIGIO` the moment an event is queued (fcntl(2), "Managing
//! signals"), directed at the thread that does the lookups
//! (`F_SETOWN_EX` with `F_OWNER_TID`). The handler only counts. A lookup
//! whose thread saw no signal since the last full check skips the check.
//!
//! Why that is as fresh as the check itself: the event is queued, and the
//! signal made pending, by the writer's own system call (`write`,
//! `rename`, `unlink`, `chmod`: `fsnotify` in the kernel's VFS), before it
//! returns. A request smtpd sends after a write reaches the table through
//! a `read`, and a pending signal is handled before any system call
//! returns to the process: by the time the lookup looks at the count, the
//! handler has run. An event merged into one still unread raises no signal
//! (`fsnotify_insert_event` in the kernel's `fs/notify/notification.c`),
//! so the count is read before the queue is drained, and the check that
//! follows reads the file after the drain: whatever the drained events
//! were about is in what the check reads, and any write after the drain
//! queues a new event and signals again.
//!
//! Where the kernel cannot tell, there is no watch and every lookup checks
//! as before ([`FileWatch::new`] returns `None`): a path through a symbolic
//! link (a re-pointed link would go unseen), a file system not on this
//! host's list of local ones (a change made on another NFS client queues
//! nothing here), no inotify (its per-user limit, `max_user_instances`),
//! or a process that has not installed the handler ([`enable`]: only
//! table-mailtable does, whose lookups run on one thread). A lookup on
//! another thread than the watch's, or after a watch could not be set
//! again (the file missing), checks too.
//!
//! A signal cuts short the sleep of SQLite's own busy handler (its
//! `nanosleep` returns early and the handler counts the sleep in full), so
//! with the watch a lookup would give up on a writer's lock before
//! `query_timeout_ms` whenever the directory saw activity. A watched
//! connection waits with [`wait_for_lock`] instead, which measures the
//! time it waited.
//!
//! A mount over the file or a directory above it (a file system mounted
//! late, a snapshot mounted as a restore, a bind mount in a container)
//! queues no event: the watches stay on the inodes it hides. So the
//! silence is trusted for [`QUIET_MAX`] at most, after which a lookup
//! checks anyway; the check sees another file, its new connection arms
//! the watch again ([`FileWatch::rearm`]) on what the paths name now,
//! and from then on writes to it are heard at once again.
//!
//! The one decision a reader might question: every event counts, also
//! one about another file of the same directory (a journal, a file beside
//! the database in `/etc/mail`). Telling them apart would take a name
//! comparison per event and a reason to get it wrong; a write elsewhere
//! only costs the next lookup its check.

use std::cell::Cell;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::thread::ThreadId;
use std::time::{Duration, Instant};

/// Signals handled since [`enable`]; only ever incremented.
static SIGNALS: AtomicU64 = AtomicU64::new(0);

/// [`enable`] installed the handler.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// `F_SETOWN_EX` and `F_OWNER_TID` of `<fcntl.h>` (Linux, every
/// architecture: `include/uapi/asm-generic/fcntl.h`), which the `libc`
/// crate does not define for glibc.
const F_SETOWN_EX: libc::c_int = 15;
const F_OWNER_TID: libc::c_int = 0;

/// `struct f_owner_ex` of fcntl(2).
#[repr(C)]
struct OwnerEx {
    kind: libc::c_int,
    pid: libc::pid_t,
}

/// What the file's watch reports: writes, attribute and link-count
/// changes (`chmod`, `rm`, a file renamed over it), the file renamed or
/// deleted. Also through another name of it (a hard link elsewhere),
/// which no directory watch sees.
const FILE_EVENTS: u32 =
    libc::IN_MODIFY | libc::IN_ATTRIB | libc::IN_MOVE_SELF | libc::IN_DELETE_SELF;

/// What a directory's watch reports: an entry created, deleted or renamed
/// (a backup moved over the file, a directory moved away), its own
/// attributes or an entry's (`chmod 700` on the way to the file).
const DIR_EVENTS: u32 = libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_ATTRIB
    | libc::IN_MOVE_SELF
    | libc::IN_DELETE_SELF;

/// File systems whose changes all pass through this kernel, by their
/// `statfs` magic (statfs(2)): ext2/3/4, XFS, Btrfs, tmpfs, F2FS, ZFS.
/// Not NFS, CIFS, FUSE or overlayfs, where a change can be made past it.
const LOCAL_FILE_SYSTEMS: [i64; 6] = [
    0xef53,
    0x5846_5342,
    0x9123_683e,
    0x0102_1994,
    0xf2f5_2010,
    0x2fc1_2fc1,
];

extern "C" fn counted(_: libc::c_int) {
    SIGNALS.fetch_add(1, Ordering::SeqCst);
}

/// Install the `SIGIO` handler that makes watches possible in this
/// process. For a daemon whose lookups run on the thread that opens its
/// store (table-mailtable); returns whether it is installed. `SA_RESTART`:
/// a read of smtpd's socket interrupted by the signal goes on by itself.
pub fn enable() -> bool {
    // SAFETY: a zeroed sigaction is a valid value (no flags, empty mask);
    // the handler only increments an atomic, which is async-signal-safe.
    let installed = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = counted as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGIO, &action, std::ptr::null_mut()) == 0
    };
    if installed {
        ENABLED.store(true, Ordering::SeqCst);
    }
    installed
}

/// A watch on one database file; see the module doc.
#[derive(Debug)]
pub struct FileWatch {
    fd: OwnedFd,
    /// The thread the signals go to, and the only one that may trust them.
    owner: ThreadId,
    /// The file, then every directory above it up to `/`.
    paths: Vec<CString>,
    /// [`SIGNALS`] when the last check began.
    seen: u64,
    /// Every path has its watch (a path that could not be watched, e.g.
    /// the file missing, leaves it false until a later check sets it).
    armed: bool,
    /// The queue could not be read: events left in it would swallow later
    /// ones of the same kind without a signal, so the watch is out for
    /// good and every lookup checks.
    broken: bool,
    /// Full checks begun, for the tests.
    checks: u64,
    /// When the last full check began: silence is trusted for
    /// [`QUIET_MAX`] after it.
    checked_at: Instant,
}

/// The longest a watch's silence stands for "nothing changed": what a
/// mount over the path (which queues no event) can hide, at the cost of
/// one check a second on a busy table.
pub const QUIET_MAX: Duration = Duration::from_secs(1);

impl FileWatch {
    /// A watch on `path` for the calling thread, or `None` where the kernel
    /// cannot tell every change (see the module doc).
    pub fn new(path: &Path) -> Option<FileWatch> {
        if !ENABLED.load(Ordering::SeqCst) {
            return None;
        }
        let paths = match watched_paths(path) {
            Ok(paths) => paths,
            Err(why) => {
                tracing::debug!("no change watch: {why}");
                return None;
            }
        };
        // SAFETY: plain system calls on integers and on a struct owned
        // here; a descriptor returned is owned by `fd` from then on.
        let fd = unsafe {
            let raw = libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC);
            if raw < 0 {
                tracing::debug!(
                    "no change watch: inotify_init1: {}",
                    std::io::Error::last_os_error()
                );
                return None;
            }
            let fd = OwnedFd::from_raw_fd(raw);
            let owner = OwnerEx {
                kind: F_OWNER_TID,
                pid: libc::gettid(),
            };
            if libc::fcntl(raw, F_SETOWN_EX, &owner as *const OwnerEx) != 0
                || libc::fcntl(raw, libc::F_SETFL, libc::O_ASYNC | libc::O_NONBLOCK) != 0
            {
                return None;
            }
            fd
        };
        let mut watch = FileWatch {
            fd,
            owner: std::thread::current().id(),
            paths,
            seen: SIGNALS.load(Ordering::SeqCst),
            armed: false,
            broken: false,
            checks: 0,
            checked_at: Instant::now(),
        };
        watch.arm();
        Some(watch)
    }

    /// Nothing happened to the file or a directory above it since the last
    /// [`FileWatch::begin_check`], as far as the calling thread can tell.
    pub fn quiet(&self) -> bool {
        self.armed
            && SIGNALS.load(Ordering::SeqCst) == self.seen
            && std::thread::current().id() == self.owner
            && self.checked_at.elapsed() < QUIET_MAX
    }

    /// Watch the paths again, as they name files now: for a new
    /// connection, which may be to another file than the watched one (a
    /// mount over the path changed what it names without an event).
    pub fn rearm(&mut self) {
        self.arm();
    }

    /// Call before a full change check: notes the signals so far, empties
    /// the event queue, and watches the paths again where something
    /// happened (a path may name another file or directory now).
    pub fn begin_check(&mut self) {
        self.checks += 1;
        self.checked_at = Instant::now();
        self.seen = SIGNALS.load(Ordering::SeqCst);
        match self.drain() {
            Ok(any) if any || !self.armed => self.arm(),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(
                    "the database's change watch is off, every lookup checks: reading its events: {e}"
                );
                self.broken = true;
                self.armed = false;
            }
        }
    }

    /// Full checks begun so far.
    pub fn checks(&self) -> u64 {
        self.checks
    }

    /// Read every queued event; whether there was any.
    fn drain(&mut self) -> std::io::Result<bool> {
        let mut buf = [0u8; 4096];
        let mut any = false;
        loop {
            // SAFETY: reads at most `buf.len()` bytes into `buf`.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast::<libc::c_void>(),
                    buf.len(),
                )
            };
            if n > 0 {
                any = true;
                continue;
            }
            let err = std::io::Error::last_os_error();
            match err.kind() {
                std::io::ErrorKind::Interrupted => continue,
                std::io::ErrorKind::WouldBlock => return Ok(any),
                _ => return Err(err),
            }
        }
    }

    /// Add (again) the watch of every path. For a path that names the
    /// same file as before, the kernel updates the existing watch.
    fn arm(&mut self) {
        self.armed = !self.broken
            && self.paths.iter().enumerate().all(|(i, p)| {
                let mask = if i == 0 { FILE_EVENTS } else { DIR_EVENTS };
                // SAFETY: `p` is a NUL-terminated path owned by `self`.
                unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), p.as_ptr(), mask) >= 0 }
            });
    }
}

/// Why a watch on `path` could not report every change, and every
/// lookup of table-mailtable checks the file instead; `None` when it can
/// (inotify itself aside). For `mailtable doctor`.
pub fn unwatchable(path: &Path) -> Option<String> {
    watched_paths(path).err()
}

/// The file and each directory above it, up to `/`, when no component of
/// `path` is a symbolic link and the file is on a local file system; why
/// not otherwise.
fn watched_paths(path: &Path) -> Result<Vec<CString>, String> {
    let shown = path.display();
    let absolute = std::path::absolute(path).map_err(|e| format!("{shown}: {e}"))?;
    let canonical = std::fs::canonicalize(&absolute).map_err(|e| format!("{shown}: {e}"))?;
    if canonical != absolute {
        return Err(format!(
            "{shown} goes through a symbolic link (the file is {}): a link pointed elsewhere \
             would go unseen; give that path in `database` to let table-mailtable learn of \
             changes from the kernel",
            canonical.display()
        ));
    }
    let c = CString::new(canonical.as_os_str().as_bytes()).map_err(|e| format!("{shown}: {e}"))?;
    // SAFETY: `fs` is written by statfs; `c` is NUL-terminated.
    let kind = unsafe {
        let mut fs: libc::statfs = std::mem::zeroed();
        if libc::statfs(c.as_ptr(), &mut fs) != 0 {
            return Err(format!(
                "{shown}: statfs: {}",
                std::io::Error::last_os_error()
            ));
        }
        fs.f_type as i64 & 0xffff_ffff
    };
    if !LOCAL_FILE_SYSTEMS.contains(&kind) {
        return Err(format!(
            "{shown} is on a file system (type {kind:#x} in statfs(2)) not known to pass every \
             change through this host's kernel, as NFS does not"
        ));
    }
    canonical
        .ancestors()
        .map(|p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(|e| format!("{shown}: {e}")))
        .collect()
}

thread_local! {
    /// The lock wait of the statement this thread runs
    /// ([`set_lock_wait`]), and since when it has waited.
    static LOCK_WAIT: Cell<(Duration, Option<Instant>)> = const { Cell::new((Duration::ZERO, None)) };
}

/// The bound [`wait_for_lock`] puts on the next statement this thread
/// runs on a watched connection. Set before each statement.
pub fn set_lock_wait(wait: Duration) {
    LOCK_WAIT.with(|w| w.set((wait, None)));
}

/// What tells [`wait_for_lock`] to stop waiting at once, in a process
/// whose signal handlers only note a signal (see [`give_up_waiting_when`]).
static GIVE_UP: OnceLock<fn() -> bool> = OnceLock::new();

/// From now on, every lock wait of this process's SQLite connections is
/// [`wait_for_lock`]'s and ends as soon as `stop` says so, at most one
/// sleep step (100 ms) after. For the CLI: it notes Ctrl-C during a write
/// instead of dying of it (to roll back), and SQLite's own busy handler
/// would otherwise wait out the whole timeout first, its `usleep` cut
/// short by the signal and simply called again. Set once; later calls
/// change nothing.
pub fn give_up_waiting_when(stop: fn() -> bool) {
    let _ = GIVE_UP.set(stop);
}

/// Whether [`give_up_waiting_when`] was called: lock waits must then be
/// [`wait_for_lock`]'s, which asks it.
pub fn waits_give_up() -> bool {
    GIVE_UP.get().is_some()
}

/// SQLite's busy handler for a watched connection (`sqlite3_busy_handler`;
/// `count` is how often it was called for this lock before): sleeps in
/// SQLite's steps (`sqliteDefaultBusyCallback` in its `main.c`) until the
/// bound of [`set_lock_wait`] has passed by the clock, not by the sum of
/// the sleeps, so a signal does not shorten the wait.
/// `std::thread::sleep` sleeps on after a signal by itself. Ends early
/// when the process asked for that ([`give_up_waiting_when`]).
pub fn wait_for_lock(count: i32) -> bool {
    const STEPS_MS: [u64; 12] = [1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100];
    if GIVE_UP.get().is_some_and(|stop| stop()) {
        return false;
    }
    LOCK_WAIT.with(|w| {
        let (limit, since) = w.get();
        let since = match since {
            Some(since) if count > 0 => since,
            _ => {
                let now = Instant::now();
                w.set((limit, Some(now)));
                now
            }
        };
        let waited = since.elapsed();
        if waited >= limit {
            return false;
        }
        let step = STEPS_MS[usize::try_from(count).unwrap_or(0).min(STEPS_MS.len() - 1)];
        std::thread::sleep(Duration::from_millis(step).min(limit - waited));
        true
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reason `mailtable doctor` gives, and none for a plain path
    /// (this test's files are on the machine's local `/tmp`).
    #[test]
    fn a_link_on_the_path_or_a_missing_file_is_said_why() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mail.db");
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(unwatchable(&file), None);
        let link = dir.path().join("link.db");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let why = unwatchable(&link).unwrap();
        assert!(why.contains("goes through a symbolic link"), "{why}");
        assert!(why.contains(&file.display().to_string()), "{why}");
        let missing = unwatchable(&dir.path().join("missing.db")).unwrap();
        assert!(missing.contains("missing.db"), "{missing}");
    }
}
