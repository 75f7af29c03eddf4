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
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
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

/// Binds a UNIX socket at `path` with the configured mode and owner,
/// replacing a stale socket file but never a live one (another `serve`
/// still answering) or a non-socket file. Needs a tokio runtime.
pub fn bind_unix(
    path: &Path,
    settings: &Settings,
    files: &mut SocketFiles,
) -> Result<Listener, ServeError> {
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
