//! `dovecot-mailtable serve`: the long-running daemon behind Dovecot's dict
//! passdb/userdb (2.3) and the Lua script's HTTP calls (2.3 and 2.4).
//!
//! Shape, on a tokio runtime:
//!
//! - one accept loop per listener (the dict UNIX socket; the HTTP API on a
//!   UNIX socket or loopback TCP), each with its own cap on open
//!   connections ([`listen`]);
//! - one task per connection: [`crate::dict::serve_connection`] or
//!   [`crate::http::serve_connection`];
//! - every database call and password check leaves the runtime's worker
//!   threads (`spawn_blocking`), database handles come from a
//!   [`StorePool`], and password checks queue for a [`HashPool`] of
//!   `workers` threads (see `pool.rs` for why);
//! - SIGTERM and SIGINT (handlers installed before the first socket
//!   exists, so a signal that comes early still ends us cleanly) stop the
//!   accept loops, remove the socket files, end idle connections at once,
//!   let requests being answered finish for up to [`SHUTDOWN_GRACE`], and
//!   make [`run`] return.
//!
//! The decision a reader would question: an async runtime for a daemon
//! whose every request is a short blocking database probe. The runtime
//! buys the things the protocols need around the probes cheaply: a header
//! deadline and keep-alive handling from hyper, and hundreds of idle or
//! slow connections that cost a task each instead of a thread each.
//! The probes themselves still run on blocking threads.

pub mod config;
pub mod listen;

use std::sync::Arc;
use std::time::Duration;

use mailtable_core::store::{self, Access, OpenOptions};
use mailtable_core::Config;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::backend::{Backend, Directory};
use crate::dict::DictBackend;
use crate::http::{ApiBackend, ApiConfig};
use crate::pool::{HashPool, StorePool};

use config::io_err;
pub use config::{HttpListen, ServeError, Settings};
use listen::{accept_loop, Conn, Listener, SocketFiles};

/// How long running requests may take to finish after SIGTERM.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Which protocol a listener speaks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Protocol {
    /// The dict proxy protocol.
    Dict,
    /// The HTTP API.
    Http,
}

/// Runs the daemon until SIGTERM or SIGINT. Returns the signal's name.
pub fn run(config: Config) -> Result<&'static str, ServeError> {
    let settings = Settings::from_config(&config)?;
    let backend = open_backend(config, &settings)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("serve")
        .build()
        .map_err(io_err("cannot start the runtime"))?;
    let result = runtime.block_on(serve(&settings, backend));
    // A database call still running after the grace period is abandoned:
    // its client has been told nothing and will retry elsewhere.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}

/// The backend over a store pool and a hashing pool. A database that
/// cannot be opened yet is logged, not fatal: it may come later.
fn open_backend(config: Config, settings: &Settings) -> Result<Backend, ServeError> {
    let url = config.database_url().map_err(ServeError::Config)?;
    let options = OpenOptions {
        access: Access::ReadOnly,
        timeout: config.timeout(),
    };
    let hashes = Arc::new(
        HashPool::new(settings.workers, settings.workers * 16)
            .map_err(io_err("cannot start hashing threads"))?,
    );
    let shown_url = url.to_string();
    let stores = Arc::new(StorePool::new(
        Box::new(move || store::open(&url, &options)),
        settings.max_connections.min(32),
    ));
    match stores.with(|_| Ok(())) {
        Ok(()) => tracing::info!(database = %shown_url, "database opened"),
        Err(e) => tracing::warn!("database not available yet: {e}"),
    }
    let directory = Arc::new(Directory::new(config));
    Ok(Backend::new(directory, stores, Some(hashes)))
}

/// SIGTERM and SIGINT, caught from now on.
struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn catch() -> Result<Signals, ServeError> {
        let term = signal(SignalKind::terminate()).map_err(io_err("cannot catch SIGTERM"))?;
        let int = signal(SignalKind::interrupt()).map_err(io_err("cannot catch SIGINT"))?;
        Ok(Signals { term, int })
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Binds the configured listeners; the socket files go into `files`.
fn bind_all(
    settings: &Settings,
    files: &mut SocketFiles,
) -> Result<Vec<(Listener, Protocol)>, ServeError> {
    let mut listeners = Vec::new();
    if let Some(path) = &settings.dict_socket {
        listeners.push((listen::bind_unix(path, settings, files)?, Protocol::Dict));
        tracing::info!("dict server listening on {}", path.display());
    }
    match &settings.http {
        Some(HttpListen::Unix(path)) => {
            listeners.push((listen::bind_unix(path, settings, files)?, Protocol::Http));
            tracing::info!("HTTP API listening on unix:{}", path.display());
        }
        Some(HttpListen::Tcp(addr)) => {
            listeners.push((Listener::tcp(*addr)?, Protocol::Http));
            tracing::info!("HTTP API listening on {addr}");
        }
        None => {}
    }
    Ok(listeners)
}

async fn serve(settings: &Settings, backend: Backend) -> Result<&'static str, ServeError> {
    let mut signals = Signals::catch()?;
    let mut files = SocketFiles::default();
    let listeners = bind_all(settings, &mut files)?;
    let (stop_tx, stop) = watch::channel(false);
    let served = tokio::spawn(serve_listeners(listeners, backend, settings.into(), stop));
    let name = signals.next().await;
    tracing::info!("{name}: shutting down");
    let _ = stop_tx.send(true);
    // The files go first: a client that connects from now on gets
    // "no such file" at once rather than a queue nobody accepts from.
    drop(files);
    if !served.await.unwrap_or(false) {
        tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; closing them");
    }
    Ok(name)
}

/// What a connection task needs besides its backend.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The API's token and body cap.
    pub api: Arc<ApiConfig>,
    /// Most open connections per listener.
    pub max_connections: usize,
    /// Deadline for a whole HTTP request head.
    pub header_timeout: Duration,
    /// How long open connections may take to finish after `stop`.
    pub grace: Duration,
}

impl From<&Settings> for Limits {
    fn from(s: &Settings) -> Limits {
        Limits {
            api: Arc::new(ApiConfig::new(s.secret.clone())),
            max_connections: s.max_connections,
            header_timeout: s.header_timeout,
            grace: SHUTDOWN_GRACE,
        }
    }
}

/// Serves every listener until `stop` turns true; returns whether all
/// connections finished within the grace period.
pub async fn serve_listeners<B>(
    listeners: Vec<(Listener, Protocol)>,
    backend: B,
    limits: Limits,
    stop: watch::Receiver<bool>,
) -> bool
where
    B: ApiBackend + DictBackend + Clone + Send + 'static,
{
    let mut loops = JoinSet::new();
    for (listener, protocol) in listeners {
        let (backend, limits) = (backend.clone(), limits.clone());
        let (max, grace) = (limits.max_connections, limits.grace);
        let handle = move |conn: Conn, stop: watch::Receiver<bool>| {
            let (backend, limits) = (backend.clone(), limits.clone());
            async move {
                let ended = match protocol {
                    Protocol::Dict => {
                        let (r, w) = tokio::io::split(conn);
                        let r = tokio::io::BufReader::new(r);
                        crate::dict::serve_connection(r, w, backend, stop).await
                    }
                    Protocol::Http => {
                        crate::http::serve_connection(
                            conn,
                            limits.api,
                            limits.header_timeout,
                            backend,
                            stop,
                        )
                        .await
                    }
                };
                if let Err(e) = ended {
                    tracing::debug!("{protocol:?} connection ended: {e}");
                }
            }
        };
        loops.spawn(accept_loop(listener, max, grace, stop.clone(), handle));
    }
    let mut drained = true;
    while let Some(done) = loops.join_next().await {
        drained &= done.unwrap_or(false);
    }
    drained
}
