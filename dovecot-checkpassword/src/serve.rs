//! `dovecot-mailtable serve`: the long-running daemon behind Dovecot's dict
//! passdb/userdb (2.3) and the Lua script's HTTP calls (2.3 and 2.4).
//!
//! Shape, with std threads only (no async runtime: every request is one
//! short database probe, and the slow part, hashing, has its own pool):
//!
//! - one acceptor thread per listener: the dict UNIX socket and the HTTP
//!   API (a UNIX socket, or TCP on a loopback address);
//! - one thread per connection, at most `max_connections` at a time; at the
//!   cap the acceptors stop accepting and new clients wait in the kernel's
//!   listen queue. An idle connection is closed after [`IDLE_TIMEOUT`], so
//!   keep-alive clients cannot hold every slot forever;
//! - database handles from a [`StorePool`], password checks on a
//!   [`HashPool`] of `workers` threads (see `pool.rs` for why);
//! - SIGTERM and SIGINT are blocked in every thread and taken by the main
//!   thread with `sigwait(3)`: it stops the acceptors (a pipe wakes their
//!   `poll(2)`), removes the socket files, shuts down the reading side of
//!   every open connection (idle keep-alive clients see EOF at once, a
//!   request being worked on still gets its reply), gives running requests
//!   [`SHUTDOWN_GRACE`] to finish and returns.
//!
//! The HTTP API never listens on anything but loopback or a UNIX socket: it
//! answers password checks, and even with its bearer token it has no
//! business on a network (issue 4). `0.0.0.0`, `::`, host names and any
//! other address are refused at start-up.

use std::collections::HashMap;
use std::io::{self, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use mailtable_core::store::{self, Access, OpenOptions};
use mailtable_core::Config;

use crate::backend::{Backend, Directory};
use crate::http::ApiConfig;
use crate::pool::{HashPool, StorePool};
use crate::secret::Secret;

/// A connection with no request for this long is closed. Dovecot's dict
/// client disconnects as soon as it is idle (reference §2.1); its HTTP
/// client reuses a connection for a while, then reconnects on demand.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on writing one reply to a client that stopped reading.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long running requests may take to finish after SIGTERM.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why `serve` cannot start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A setting is wrong; fixing the config is the only cure.
    #[error("{0}")]
    Config(String),
    /// A socket or thread could not be set up.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ServeError {
    let what = what.into();
    move |source| ServeError::Io { what, source }
}

/// Where the HTTP API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpListen {
    /// A loopback TCP address.
    Tcp(SocketAddr),
    /// A UNIX socket path.
    Unix(PathBuf),
}

impl HttpListen {
    /// Parses `http_listen`: `unix:/absolute/path`, `127.0.0.1:PORT` (any
    /// 127.0.0.0/8 address) or `[::1]:PORT`. Everything else is refused.
    pub fn parse(s: &str) -> Result<HttpListen, ServeError> {
        if let Some(path) = s.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err(ServeError::Config(format!(
                    "http_listen {s:?}: the socket path must be absolute"
                )));
            }
            return Ok(HttpListen::Unix(PathBuf::from(path)));
        }
        let addr: SocketAddr = s.parse().map_err(|_| {
            ServeError::Config(format!(
                "http_listen {s:?} is neither unix:/path nor IP:PORT \
                 (use 127.0.0.1:PORT or [::1]:PORT; host names are not accepted)"
            ))
        })?;
        if !addr.ip().is_loopback() {
            return Err(ServeError::Config(format!(
                "http_listen {s:?} is not a loopback address: the password API only \
                 listens on 127.0.0.1, [::1] or a UNIX socket"
            )));
        }
        if addr.port() == 0 {
            return Err(ServeError::Config(format!(
                "http_listen {s:?}: choose a port; the Lua script needs to know it"
            )));
        }
        Ok(HttpListen::Tcp(addr))
    }
}

/// Everything `serve` needs, checked before anything is bound.
#[derive(Debug)]
pub struct Settings {
    /// Dict socket path, if the dict server is on.
    pub dict_socket: Option<PathBuf>,
    /// HTTP API listener, if on.
    pub http: Option<HttpListen>,
    /// Bearer token of the API.
    pub secret: Secret,
    /// Owner of the socket files (`None`: the running user).
    pub owner: Option<u32>,
    /// Group of the socket files (`None`: the running group).
    pub group: Option<u32>,
    /// Mode of the socket files.
    pub mode: u32,
    /// Hashing threads.
    pub workers: usize,
    /// Cap on concurrent connections.
    pub max_connections: usize,
}

impl Settings {
    /// Reads the `[serve]` section.
    pub fn from_config(config: &Config) -> Result<Settings, ServeError> {
        let s = &config.serve;
        let dict_socket = match s.dict_socket.as_str() {
            "" => None,
            p if p.starts_with('/') && !p.contains(':') => Some(PathBuf::from(p)),
            p => {
                return Err(ServeError::Config(format!(
                    "dict_socket {p:?} must be an absolute path without ':' \
                     (Dovecot's proxy dict URI cannot name another)"
                )))
            }
        };
        let http = match s.http_listen.as_str() {
            "" => None,
            l => Some(HttpListen::parse(l)?),
        };
        if dict_socket.is_none() && http.is_none() {
            return Err(ServeError::Config(
                "nothing to serve: set dict_socket and/or http_listen in [serve]".into(),
            ));
        }
        let secret = match (s.http_secret.as_str(), s.http_secret_file.as_str()) {
            ("", "") => Secret::default(),
            (inline, "") => Secret::new(inline.trim()),
            ("", file) => {
                let text = std::fs::read(file)
                    .map_err(io_err(format!("cannot read http_secret_file {file}")))?;
                Secret::new(text.trim_ascii())
            }
            _ => {
                return Err(ServeError::Config(
                    "set http_secret or http_secret_file, not both".into(),
                ))
            }
        };
        if http.is_some() && secret.is_empty() {
            return Err(ServeError::Config(
                "http_listen needs a secret (http_secret or http_secret_file): \
                 without it any local user could test passwords"
                    .into(),
            ));
        }
        let mode = u32::from_str_radix(s.socket_mode.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| {
                ServeError::Config(format!(
                    "socket_mode {:?} is not an octal mode",
                    s.socket_mode
                ))
            })?;
        let owner = match s.socket_owner.as_str() {
            "" => None,
            name => Some(lookup_user(name)?),
        };
        let group = match s.socket_group.as_str() {
            "" => None,
            name => Some(lookup_group(name)?),
        };
        if s.max_connections == 0 {
            return Err(ServeError::Config(
                "max_connections must be positive".into(),
            ));
        }
        Ok(Settings {
            dict_socket,
            http,
            secret,
            owner,
            group,
            mode,
            workers: s.workers.max(1),
            max_connections: s.max_connections,
        })
    }
}

/// uid of a user name or number.
fn lookup_user(name: &str) -> Result<u32, ServeError> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    let c = std::ffi::CString::new(name)
        .map_err(|_| ServeError::Config(format!("bad user name {name:?}")))?;
    let mut pw: libc::passwd = unsafe_zeroed();
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and `buf` outlives it;
    // getpwnam_r is the thread-safe variant.
    let rc =
        unsafe { libc::getpwnam_r(c.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut out) };
    if rc != 0 || out.is_null() {
        return Err(ServeError::Config(format!(
            "socket_owner: no such user {name:?}"
        )));
    }
    Ok(pw.pw_uid)
}

/// gid of a group name or number.
fn lookup_group(name: &str) -> Result<u32, ServeError> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    let c = std::ffi::CString::new(name)
        .map_err(|_| ServeError::Config(format!("bad group name {name:?}")))?;
    let mut gr: libc::group = unsafe_zeroed();
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut out: *mut libc::group = std::ptr::null_mut();
    // SAFETY: as in lookup_user.
    let rc =
        unsafe { libc::getgrnam_r(c.as_ptr(), &mut gr, buf.as_mut_ptr(), buf.len(), &mut out) };
    if rc != 0 || out.is_null() {
        return Err(ServeError::Config(format!(
            "socket_group: no such group {name:?}"
        )));
    }
    Ok(gr.gr_gid)
}

/// A zeroed C struct (passwd, group, sigset_t): all-zero is a valid value of
/// each.
fn unsafe_zeroed<T: Copy>() -> T {
    // SAFETY: only used for plain C structs of integers and pointers, for
    // which all-zero bytes are a valid (empty) value.
    unsafe { std::mem::zeroed() }
}

/// A listening socket of either kind.
enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl Listener {
    fn fd(&self) -> RawFd {
        match self {
            Listener::Unix(l) => l.as_raw_fd(),
            Listener::Tcp(l) => l.as_raw_fd(),
        }
    }

    fn accept(&self) -> io::Result<Conn> {
        match self {
            Listener::Unix(l) => l.accept().map(|(s, _)| Conn::Unix(s)),
            Listener::Tcp(l) => l.accept().map(|(s, _)| Conn::Tcp(s)),
        }
    }
}

/// An accepted connection of either kind.
enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Conn {
    fn prepare(&self) -> io::Result<()> {
        match self {
            Conn::Unix(s) => {
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(IDLE_TIMEOUT))?;
                s.set_write_timeout(Some(WRITE_TIMEOUT))
            }
            Conn::Tcp(s) => {
                s.set_nonblocking(false)?;
                s.set_nodelay(true)?;
                s.set_read_timeout(Some(IDLE_TIMEOUT))?;
                s.set_write_timeout(Some(WRITE_TIMEOUT))
            }
        }
    }

    /// Ends the reading side: the connection's thread sees EOF after the
    /// request it is working on, whose reply still goes out.
    fn shutdown_read(&self) {
        let _ = match self {
            Conn::Unix(s) => s.shutdown(std::net::Shutdown::Read),
            Conn::Tcp(s) => s.shutdown(std::net::Shutdown::Read),
        };
    }

    fn try_clone(&self) -> io::Result<Conn> {
        match self {
            Conn::Unix(s) => s.try_clone().map(Conn::Unix),
            Conn::Tcp(s) => s.try_clone().map(Conn::Tcp),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.read(buf),
            Conn::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.write(buf),
            Conn::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Unix(s) => s.flush(),
            Conn::Tcp(s) => s.flush(),
        }
    }
}

/// Binds a UNIX socket at `path`, replacing a stale socket file but never a
/// live one (another `serve` still answering) or a non-socket file.
fn bind_unix(path: &Path, settings: &Settings) -> Result<UnixListener, ServeError> {
    let shown = path.display();
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(ServeError::Config(format!(
                    "{shown} is in use by another process (another serve running?)"
                )));
            }
            std::fs::remove_file(path)
                .map_err(io_err(format!("cannot remove stale socket {shown}")))?;
        }
        Ok(_) => {
            return Err(ServeError::Config(format!(
                "{shown} exists and is not a socket; refusing to replace it"
            )))
        }
        Err(_) => {}
    }
    let listener = UnixListener::bind(path).map_err(io_err(format!("cannot listen on {shown}")))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(settings.mode))
        .map_err(io_err(format!("cannot set the mode of {shown}")))?;
    if settings.owner.is_some() || settings.group.is_some() {
        std::os::unix::fs::chown(path, settings.owner, settings.group)
            .map_err(io_err(format!("cannot set the owner of {shown}")))?;
    }
    Ok(listener)
}

/// Counts running connections against the cap.
struct Slots {
    used: Mutex<usize>,
    changed: Condvar,
    max: usize,
}

/// One taken slot; freed on drop.
struct Slot(Arc<Slots>);

impl Drop for Slot {
    fn drop(&mut self) {
        let mut used = self.0.used.lock().unwrap_or_else(PoisonError::into_inner);
        *used = used.saturating_sub(1);
        self.0.changed.notify_all();
    }
}

impl Slots {
    /// Waits for a free slot; `None` once `stop` is set.
    fn acquire(self: &Arc<Self>, stop: &AtomicBool) -> Option<Slot> {
        let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if stop.load(Ordering::SeqCst) {
                return None;
            }
            if *used < self.max {
                *used += 1;
                return Some(Slot(Arc::clone(self)));
            }
            used = self
                .changed
                .wait_timeout(used, Duration::from_millis(200))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Waits until no connection runs, or `limit` passes; true if idle.
    fn drain(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        while *used > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            used = self
                .changed
                .wait_timeout(used, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Protocol {
    Dict,
    Http,
}

/// Waits until `fd` is readable or `wake` is; false when woken.
fn wait_readable(fd: RawFd, wake: RawFd) -> bool {
    let mut fds = [
        libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: wake,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    loop {
        // SAFETY: `fds` is a valid array of two pollfd for the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // poll cannot fail on valid fds otherwise; avoid a busy loop.
            thread::sleep(Duration::from_millis(50));
            continue;
        }
        if fds[1].revents != 0 {
            return false;
        }
        if fds[0].revents != 0 {
            return true;
        }
    }
}

struct Shared {
    backend: Backend,
    api: ApiConfig,
    slots: Arc<Slots>,
    stop: AtomicBool,
    wake: RawFd,
    /// A handle on every open connection, to end idle ones at shutdown.
    open: Mutex<HashMap<u64, Conn>>,
    next_id: AtomicU64,
}

/// Removes a connection from [`Shared::open`] when its thread ends.
struct Registered<'a>(&'a Shared, u64);

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.0
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.1);
    }
}

fn accept_loop(listener: &Listener, protocol: Protocol, shared: &Arc<Shared>) {
    loop {
        let Some(slot) = shared.slots.acquire(&shared.stop) else {
            return;
        };
        if !wait_readable(listener.fd(), shared.wake) || shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let conn = match listener.accept() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                // EMFILE and friends: wait a little rather than spin.
                tracing::warn!("accept failed: {e}");
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let shared_conn = Arc::clone(shared);
        let spawned = thread::Builder::new()
            .name(format!("{protocol:?}-conn").to_lowercase())
            .spawn(move || {
                let _slot = slot;
                if let Err(e) = handle(conn, protocol, &shared_conn) {
                    tracing::debug!("{protocol:?} connection ended: {e}");
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start a connection thread: {e}");
        }
    }
}

fn handle(conn: Conn, protocol: Protocol, shared: &Shared) -> io::Result<()> {
    conn.prepare()?;
    let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
    shared
        .open
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(id, conn.try_clone()?);
    let _registered = Registered(shared, id);
    // A connection accepted just as the stop flag was set would miss the
    // sweep in `run`: end it here instead.
    if shared.stop.load(Ordering::SeqCst) {
        conn.shutdown_read();
    }
    let mut backend = shared.backend.clone();
    match protocol {
        Protocol::Dict => {
            let reader = BufReader::new(conn.try_clone()?);
            crate::dict::serve_connection(reader, conn, &mut backend)
        }
        Protocol::Http => {
            let mut conn = conn;
            crate::http::serve_connection(&mut conn, &shared.api, &mut backend)
        }
    }
}

fn blocked_signals() -> libc::sigset_t {
    let mut set: libc::sigset_t = unsafe_zeroed();
    // SAFETY: `set` is a valid sigset_t for these calls.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
    }
    set
}

/// Blocks SIGTERM and SIGINT in the calling thread and every thread it
/// starts afterwards, so only `sigwait` sees them.
fn block_signals() -> Result<libc::sigset_t, ServeError> {
    let set = blocked_signals();
    // SAFETY: valid set pointer, null old-set pointer.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(ServeError::Io {
            what: "cannot block signals".into(),
            source: io::Error::from_raw_os_error(rc),
        });
    }
    Ok(set)
}

fn wait_for_signal(set: &libc::sigset_t) -> i32 {
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: valid set and out pointer.
        let rc = unsafe { libc::sigwait(set, &mut sig) };
        if rc == 0 {
            return sig;
        }
    }
}

fn wake_pipe() -> Result<(OwnedFd, OwnedFd), ServeError> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    if rc != 0 {
        return Err(ServeError::Io {
            what: "cannot create the shutdown pipe".into(),
            source: io::Error::last_os_error(),
        });
    }
    // SAFETY: pipe2 succeeded, so both are fresh descriptors we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Runs the daemon until SIGTERM or SIGINT. Returns the signal's name.
pub fn run(config: Config) -> Result<&'static str, ServeError> {
    let settings = Settings::from_config(&config)?;
    let url = config.database_url().map_err(ServeError::Config)?;
    let options = OpenOptions {
        access: Access::ReadOnly,
        timeout: config.timeout(),
    };

    // Before any thread exists, so all of them inherit the mask.
    let signals = block_signals()?;

    let hashes = Arc::new(
        HashPool::new(settings.workers, settings.workers * 16)
            .map_err(io_err("cannot start hashing threads"))?,
    );
    let shown_url = url.to_string();
    let stores = Arc::new(StorePool::new(
        Box::new(move || store::open(&url, &options)),
        settings.max_connections.min(32),
    ));
    // Open one store now so a wrong path shows up in the log at start-up;
    // failing is not fatal: the database may come later.
    match stores.with(|_| Ok(())) {
        Ok(()) => tracing::info!(database = %shown_url, "database opened"),
        Err(e) => tracing::warn!("database not available yet: {e}"),
    }
    let directory = Arc::new(Directory::new(config));
    let backend = Backend::new(directory, stores, Some(hashes));

    let mut listeners = Vec::new();
    let mut socket_files = Vec::new();
    let mut bind_all = || -> Result<(), ServeError> {
        if let Some(path) = &settings.dict_socket {
            let l = bind_unix(path, &settings)?;
            socket_files.push(path.clone());
            tracing::info!("dict server listening on {}", path.display());
            listeners.push((Listener::Unix(l), Protocol::Dict));
        }
        match &settings.http {
            Some(HttpListen::Unix(path)) => {
                let l = bind_unix(path, &settings)?;
                socket_files.push(path.clone());
                tracing::info!("HTTP API listening on unix:{}", path.display());
                listeners.push((Listener::Unix(l), Protocol::Http));
            }
            Some(HttpListen::Tcp(addr)) => {
                let l =
                    TcpListener::bind(addr).map_err(io_err(format!("cannot listen on {addr}")))?;
                tracing::info!("HTTP API listening on {addr}");
                listeners.push((Listener::Tcp(l), Protocol::Http));
            }
            None => {}
        }
        Ok(())
    };
    let bound = bind_all();
    let cleanup = |files: &[PathBuf]| {
        for f in files {
            if let Err(e) = std::fs::remove_file(f) {
                tracing::warn!("cannot remove {}: {e}", f.display());
            }
        }
    };
    if let Err(e) = bound {
        cleanup(&socket_files);
        return Err(e);
    }
    for (l, _) in &listeners {
        let set = match l {
            Listener::Unix(l) => l.set_nonblocking(true),
            Listener::Tcp(l) => l.set_nonblocking(true),
        };
        if let Err(e) = set {
            cleanup(&socket_files);
            return Err(io_err("cannot make a listener non-blocking")(e));
        }
    }

    let (wake_r, wake_w) = match wake_pipe() {
        Ok(p) => p,
        Err(e) => {
            cleanup(&socket_files);
            return Err(e);
        }
    };
    let shared = Arc::new(Shared {
        backend,
        api: ApiConfig::new(settings.secret.clone()),
        slots: Arc::new(Slots {
            used: Mutex::new(0),
            changed: Condvar::new(),
            max: settings.max_connections,
        }),
        stop: AtomicBool::new(false),
        wake: wake_r.as_raw_fd(),
        open: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(0),
    });
    let mut acceptors = Vec::new();
    for (listener, protocol) in listeners {
        let for_thread = Arc::clone(&shared);
        let spawned = thread::Builder::new()
            .name(format!("{protocol:?}-accept").to_lowercase())
            .spawn(move || accept_loop(&listener, protocol, &for_thread));
        match spawned {
            Ok(h) => acceptors.push(h),
            Err(e) => {
                shared.stop.store(true, Ordering::SeqCst);
                cleanup(&socket_files);
                return Err(io_err("cannot start an acceptor thread")(e));
            }
        }
    }

    let sig = wait_for_signal(&signals);
    let name = if sig == libc::SIGINT {
        "SIGINT"
    } else {
        "SIGTERM"
    };
    tracing::info!("{name}: shutting down");
    shared.stop.store(true, Ordering::SeqCst);
    // SAFETY: writing one byte from a valid buffer to our own pipe.
    let _ = unsafe { libc::write(wake_w.as_raw_fd(), b"x".as_ptr().cast(), 1) };
    for a in acceptors {
        let _ = a.join();
    }
    cleanup(&socket_files);
    for conn in shared
        .open
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .values()
    {
        conn.shutdown_read();
    }
    if !shared.slots.drain(SHUTDOWN_GRACE) {
        tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; closing them");
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_unix_listen_addresses() {
        assert_eq!(
            HttpListen::parse("127.0.0.1:8787").ok(),
            Some(HttpListen::Tcp("127.0.0.1:8787".parse().expect("literal")))
        );
        assert!(matches!(
            HttpListen::parse("[::1]:8787"),
            Ok(HttpListen::Tcp(_))
        ));
        assert!(matches!(
            HttpListen::parse("127.0.0.2:1"),
            Ok(HttpListen::Tcp(_))
        ));
        assert_eq!(
            HttpListen::parse("unix:/run/mailtable/http.sock").ok(),
            Some(HttpListen::Unix("/run/mailtable/http.sock".into()))
        );
    }

    #[test]
    fn other_listen_addresses_are_refused() {
        for bad in [
            "0.0.0.0:8787",
            "[::]:8787",
            "192.168.1.10:8787",
            "10.0.0.1:80",
            "localhost:8787",
            "8787",
            "127.0.0.1:0",
            "unix:relative.sock",
            "",
        ] {
            let e = HttpListen::parse(bad);
            assert!(matches!(e, Err(ServeError::Config(_))), "{bad}: {e:?}");
        }
        let Err(ServeError::Config(msg)) = HttpListen::parse("0.0.0.0:8787") else {
            panic!("0.0.0.0 accepted");
        };
        assert!(msg.contains("not a loopback address"), "{msg}");
    }

    fn settings(toml: &str) -> Result<Settings, ServeError> {
        Settings::from_config(&Config::parse(toml).map_err(ServeError::Config)?)
    }

    #[test]
    fn settings_need_a_listener_and_a_secret() {
        assert!(settings("").is_err());
        assert!(settings("[serve]\nhttp_listen = \"127.0.0.1:8787\"").is_err());
        assert!(settings("[serve]\nhttp_listen = \"0.0.0.0:8787\"\nhttp_secret = \"x\"").is_err());
        assert!(settings("[serve]\ndict_socket = \"relative.sock\"").is_err());
        assert!(settings("[serve]\ndict_socket = \"/run/a:b\"").is_err());
        let s = settings("[serve]\ndict_socket = \"/run/mt/dict.sock\"\nsocket_mode = \"0660\"")
            .expect("valid settings");
        assert_eq!(s.mode, 0o660);
        assert_eq!(s.dict_socket, Some(PathBuf::from("/run/mt/dict.sock")));
        let s = settings(
            "[serve]\nhttp_listen = \"[::1]:8787\"\nhttp_secret = \" tok \"\nsocket_owner = \"0\"\nsocket_group = \"root\"",
        )
        .expect("valid settings");
        assert!(s.secret.ct_eq(b"tok"));
        assert_eq!((s.owner, s.group), (Some(0), Some(0)));
        assert!(settings("[serve]\ndict_socket = \"/x\"\nsocket_mode = \"rw\"").is_err());
        assert!(
            settings("[serve]\ndict_socket = \"/x\"\nsocket_owner = \"no-such-user-mt\"").is_err()
        );
    }
}
