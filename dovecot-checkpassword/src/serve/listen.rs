//! The listening sockets of `serve`: creating them (a UNIX socket with its
//! mode and owner, or loopback TCP), removing the socket files again, and
//! accepting from them under a per-listener cap on open connections.
//!
//! The decision a reader would question: each listener has its own cap,
//! taken *before* `accept`. At the cap a listener stops accepting and new
//! clients wait in the kernel's listen queue, where they cost us nothing,
//! rather than being accepted and closed. Separate caps keep a flood of
//! slow clients on one socket (say, the HTTP API) from starving the other
//! (the dict socket that LMTP deliveries depend on).

use std::future::Future;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{watch, Semaphore};

use super::config::{io_err, ServeError, Settings};
use crate::stop::stopped;

/// Raise the soft limit on open files to what the caps can use: both
/// listeners full, every database connection, and some room for the rest.
/// The usual soft limit is 1024 (systemd's default `LimitNOFILE=1024:524288`,
/// systemd.exec(5)), below two listeners of 1024 connections each; past it
/// `accept` fails with EMFILE and the listener stalls instead of queueing.
/// The hard limit is left alone: the admin's word. Returns the new soft
/// limit.
pub fn raise_open_files(settings: &Settings) -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let needed = u64::try_from(2 * settings.max_connections + settings.database_connections)
        .unwrap_or(u64::MAX)
        .saturating_add(64);
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 0;
    };
    if soft >= needed {
        return soft;
    }
    let want = needed.min(hard);
    if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, want, hard) {
        tracing::warn!("cannot raise the open files limit from {soft} to {want}: {e}");
        return soft;
    }
    if want < needed {
        tracing::warn!(
            "open files limited to {want} (hard limit), below the {needed} that max_connections \
             and database_connections can use: raise LimitNOFILE or lower max_connections"
        );
    }
    want
}

/// A listening socket of either kind.
#[derive(Debug)]
pub enum Listener {
    /// A UNIX socket.
    Unix(UnixListener),
    /// A loopback TCP socket.
    Tcp(TcpListener),
}

impl Listener {
    /// Binds a TCP listener on `addr` (checked to be loopback by the
    /// config). Needs a tokio runtime.
    pub fn tcp(addr: std::net::SocketAddr) -> Result<Listener, ServeError> {
        let l = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .and_then(TcpListener::from_std)
            .map_err(io_err(format!("cannot listen on {addr}")))?;
        Ok(Listener::Tcp(l))
    }

    async fn accept(&self) -> io::Result<Conn> {
        match self {
            Listener::Unix(l) => l.accept().await.map(|(s, _)| Conn::Unix(s)),
            Listener::Tcp(l) => {
                let (s, _) = l.accept().await?;
                // Requests and replies are single small writes; do not let
                // Nagle hold a reply back for the client's delayed ACK.
                s.set_nodelay(true)?;
                Ok(Conn::Tcp(s))
            }
        }
    }
}

/// An accepted connection of either kind.
#[derive(Debug)]
pub enum Conn {
    /// From a UNIX socket.
    Unix(UnixStream),
    /// From a TCP socket.
    Tcp(TcpStream),
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tcp(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tcp(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Unix(s) => Pin::new(s).poll_flush(cx),
            Conn::Tcp(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tcp(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Socket files created by `serve`, removed when dropped: on shutdown and
/// on every error path after the first bind.
#[derive(Debug, Default)]
pub struct SocketFiles(Vec<PathBuf>);

impl Drop for SocketFiles {
    fn drop(&mut self) {
        for f in &self.0 {
            if let Err(e) = std::fs::remove_file(f) {
                tracing::warn!("cannot remove {}: {e}", f.display());
            }
        }
    }
}

/// Makes sure nobody but root, the running user and `socket_owner` can
/// create, remove or rename a file at `socket`: otherwise a local user
/// could put its own socket there while `serve` is stopped and receive
/// every password. A missing directory (`serve` started by hand, without
/// the unit's `RuntimeDirectory=`) is created 0755 for the running user
/// when possible; otherwise the error names the command that makes it.
pub fn prepare_socket_dir(socket: &Path, settings: &Settings) -> Result<(), ServeError> {
    let dir = socket
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("/"));
    let euid = nix::unistd::geteuid().as_raw();
    if std::fs::symlink_metadata(dir).is_err() {
        let made = std::fs::DirBuilder::new().mode(0o755).create(dir);
        match made {
            Ok(()) => {
                // The umask may have taken bits away; never added any.
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
                    .map_err(io_err(format!("cannot set the mode of {}", dir.display())))?;
                tracing::info!("created the socket directory {}", dir.display());
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(euid))
                    .ok()
                    .flatten()
                    .map_or_else(|| euid.to_string(), |u| u.name);
                return Err(ServeError::Config(format!(
                    "the socket directory {} does not exist and cannot be created ({e}); \
                     create it as root: install -d -o {user} -m 0755 {} \
                     (the systemd unit's RuntimeDirectory=mailtable does this)",
                    dir.display(),
                    dir.display()
                )));
            }
        }
    }
    let trusted = |uid: u32| uid == 0 || uid == euid || Some(uid) == settings.owner;
    // The directory itself: writable by trusted users only. Its ancestors
    // too, except that a sticky one (like /tmp) is fine: nobody else can
    // rename a trusted user's entry in it.
    for (i, d) in dir.ancestors().enumerate() {
        let m = std::fs::metadata(d).map_err(io_err(format!(
            "cannot inspect the socket directory {}",
            d.display()
        )))?;
        let mode = m.permissions().mode();
        let shared = mode & 0o022 != 0 && (i == 0 || mode & 0o1000 == 0);
        if !m.is_dir() || !trusted(m.uid()) || shared {
            return Err(ServeError::Config(format!(
                "{} is not a safe place for the socket {}: {} must be a directory \
                 owned by root or the service user and writable by nobody else \
                 (it is mode {:o}, owner uid {}); use /run/mailtable/ \
                 (install -d -m 0755 /run/mailtable)",
                dir.display(),
                socket.display(),
                d.display(),
                mode & 0o7777,
                m.uid()
            )));
        }
    }
    Ok(())
}

/// Binds a UNIX socket at `path` with the configured mode and owner,
/// replacing a stale socket file but never a live one (another `serve`
/// still answering) or a non-socket file. Its directory must be one only
/// trusted users can write ([`prepare_socket_dir`]). Needs a tokio runtime.
pub fn bind_unix(
    path: &Path,
    settings: &Settings,
    files: &mut SocketFiles,
) -> Result<Listener, ServeError> {
    prepare_socket_dir(path, settings)?;
    let shown = path.display();
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
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
    files.0.push(path.to_owned());
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(settings.mode))
        .map_err(io_err(format!("cannot set the mode of {shown}")))?;
    if settings.owner.is_some() || settings.group.is_some() {
        std::os::unix::fs::chown(path, settings.owner, settings.group)
            .map_err(io_err(format!("cannot set the owner of {shown}")))?;
    }
    Ok(Listener::Unix(listener))
}

/// Accepts connections until `stop`, running `handle` on each in its own
/// task, with at most `max` of them open at once. Then waits up to `grace`
/// for the open ones to finish; returns whether they all did.
pub async fn accept_loop<F, Fut>(
    listener: Listener,
    max: usize,
    grace: Duration,
    mut stop: watch::Receiver<bool>,
    handle: F,
) -> bool
where
    F: Fn(Conn, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let max = u32::try_from(max.clamp(1, Semaphore::MAX_PERMITS)).unwrap_or(u32::MAX);
    let slots = Arc::new(Semaphore::new(max as usize));
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot,
            () = stopped(&mut stop) => break,
        };
        // The semaphore is never closed, so this only guards the type.
        let Ok(slot) = slot else { break };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stopped(&mut stop) => break,
        };
        match accepted {
            Ok(conn) => {
                let served = handle(conn, stop.clone());
                tokio::spawn(async move {
                    served.await;
                    drop(slot);
                });
            }
            Err(e) => {
                // EMFILE and friends: wait a little rather than spin.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(grace, slots.acquire_many(max)).await;
    drained.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn settings() -> Settings {
        Settings {
            dict_socket: None,
            http: None,
            secret: Secret::new("tok"),
            owner: None,
            group: None,
            mode: 0o600,
            workers: 1,
            max_connections: 1,
            database_connections: 1,
            header_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn a_missing_socket_directory_is_made_0755() {
        let dir = tempfile::tempdir().expect("temp dir");
        let run = dir.path().join("mailtable");
        prepare_socket_dir(&run.join("http.sock"), &settings()).expect("created");
        let m = std::fs::metadata(&run).expect("made");
        assert_eq!(m.permissions().mode() & 0o7777, 0o755);
        assert_eq!(m.uid(), nix::unistd::geteuid().as_raw());
    }

    #[test]
    fn a_directory_others_can_write_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        for mode in [0o777, 0o1777, 0o775, 0o757] {
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode))
                .expect("chmod");
            let e = prepare_socket_dir(&dir.path().join("http.sock"), &settings());
            let Err(ServeError::Config(msg)) = e else {
                panic!("mode {mode:o} accepted: {e:?}");
            };
            assert!(msg.contains("not a safe place"), "{msg}");
        }
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        prepare_socket_dir(&dir.path().join("http.sock"), &settings()).expect("0755 is safe");
    }

    #[test]
    fn a_directory_that_cannot_be_made_names_the_command() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("file");
        std::fs::write(&file, "").expect("write");
        let e = prepare_socket_dir(&file.join("run/http.sock"), &settings());
        let Err(ServeError::Config(msg)) = e else {
            panic!("accepted: {e:?}");
        };
        assert!(msg.contains("install -d -o "), "{msg}");
        assert!(
            msg.contains(&file.join("run").display().to_string()),
            "{msg}"
        );
    }
}
