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
//!   `workers` threads (see `pool.rs` for why). The one exception is a
//!   lookup whose answer is cached and known fresh by a check that cannot
//!   wait ([`mailtable_core::Store::change_token_in_place`]: a `stat` and
//!   a header read of the SQLite file, a PostgreSQL stamp read within the
//!   last second): it is answered on the worker, saving two thread
//!   hand-offs per request;
//! - SIGHUP is logged and ignored (no reload: its config is read once);
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
//! The probes themselves still run on blocking threads (all but the
//! cached answers above).

pub mod config;
pub mod listen;

use std::sync::Arc;
use std::time::Duration;

use mailtable_core::store::{self, Access, DatabaseUrl, OpenOptions};
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
    listen::raise_open_files(&settings);
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
    // A SQLite file tells its change token without a connection: cached
    // answers stay servable while every store waits on a writer's lock.
    let peek = match &url {
        DatabaseUrl::Sqlite(path) => {
            let path = path.clone();
            Some(move || store::sqlite::peek_change_token(&path))
        }
        DatabaseUrl::Postgres(_) => None,
    };
    let mut pool = StorePool::new(
        Box::new(move || store::open(&url, &options)),
        settings.database_connections,
    )
    .limit(settings.database_connections, config.timeout());
    if let Some(peek) = peek {
        pool = pool.peek(Box::new(peek));
    }
    let stores = Arc::new(pool);
    match stores.with(|_| Ok(())) {
        Ok(()) => tracing::info!(database = %shown_url, "database opened"),
        Err(e) => tracing::warn!("database not available yet: {e}"),
    }
    let directory = Arc::new(Directory::new(config));
    Ok(Backend::new(directory, stores, Some(hashes)))
}

/// SIGTERM and SIGINT, caught from now on; and SIGHUP, whose default
/// action would end the daemon without a word and leave its socket files
/// behind (Dovecot then fails every lookup until someone restarts it).
/// Admins send HUP expecting a reload: serve reads its config once, so
/// the signal is logged with that and otherwise ignored.
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    fn catch() -> Result<Signals, ServeError> {
        let term = signal(SignalKind::terminate()).map_err(io_err("cannot catch SIGTERM"))?;
        let int = signal(SignalKind::interrupt()).map_err(io_err("cannot catch SIGINT"))?;
        let hup = signal(SignalKind::hangup()).map_err(io_err("cannot catch SIGHUP"))?;
        Ok(Signals { term, int, hup })
    }

    async fn next(&mut self) -> &'static str {
        loop {
            tokio::select! {
                _ = self.term.recv() => return "SIGTERM",
                _ = self.int.recv() => return "SIGINT",
                _ = self.hup.recv() => tracing::warn!(
                    "SIGHUP ignored: serve reads its config when it starts; restart it \
                     (systemctl restart dovecot-mailtable) to read it again"
                ),
            }
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
            if addr.port() >= config::FIRST_UNPRIVILEGED_PORT {
                tracing::warn!(
                    "http_listen_unprivileged_port: the HTTP API is on port {}, which any \
                     local user can take while serve is not running and then receive \
                     every password; prefer unix:/run/mailtable/http.sock",
                    addr.port()
                );
            }
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
    /// Deadline for a whole HTTP request head, and for each dict line.
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
                        crate::dict::serve_connection(r, w, backend, limits.header_timeout, stop)
                            .await
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dict::Lookup;
    use crate::http::{Account, LookupResult, VerifyResult};
    use crate::secret::Secret;
    use std::time::Instant;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpStream, UnixStream};

    /// Every user exists; no database.
    #[derive(Clone)]
    struct Everyone;

    impl ApiBackend for Everyone {
        fn passdb_verify(&mut self, _: &str, _: &Secret) -> VerifyResult {
            VerifyResult::Mismatch
        }
        fn passdb_lookup(&mut self, _: &str) -> LookupResult {
            LookupResult::Unknown
        }
        fn userdb_lookup(&mut self, user: &str) -> LookupResult {
            LookupResult::Found(Account {
                user: user.into(),
                fields: Vec::new(),
            })
        }
        fn userdb_iterate(&mut self) -> Result<Vec<String>, String> {
            Ok(Vec::new())
        }
    }

    impl DictBackend for Everyone {
        fn lookup(&mut self, _: &str, _: &str) -> Lookup {
            Lookup::Found("{}".into())
        }
        fn iterate(&mut self, _: &str) -> Result<Vec<(String, String)>, String> {
            Ok(Vec::new())
        }
    }

    fn settings(dict: &std::path::Path) -> Settings {
        Settings {
            dict_socket: Some(dict.to_owned()),
            http: None,
            secret: Secret::new("tok"),
            owner: None,
            group: None,
            mode: 0o600,
            workers: 1,
            max_connections: 100,
            database_connections: 4,
            header_timeout: Duration::from_secs(1),
        }
    }

    /// A client that sends a request head one byte every 100 ms and never
    /// finishes it, until the server closes the connection.
    async fn trickle(addr: std::net::SocketAddr) {
        let Ok(mut s) = TcpStream::connect(addr).await else {
            return;
        };
        for b in b"POST /userdb/lookup HTTP/1.1\r\n".iter().cycle() {
            if s.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A dict client that sends its handshake one byte every 100 ms and
    /// never ends the line, until the server closes the connection.
    async fn trickle_dict(path: std::path::PathBuf) {
        let Ok(mut s) = UnixStream::connect(&path).await else {
            return;
        };
        for b in b"H3\t2\t0\t\tslow".iter().cycle() {
            if s.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_dict_clients_lose_their_slots_at_the_line_deadline() {
        let serve = Running::start();
        let dict = serve.dict.clone();
        // Three times the dict listener's cap (100) in clients that never
        // finish a line: each holds a slot until the 1 s line deadline.
        let slow: Vec<_> = (0..300)
            .map(|_| tokio::spawn(trickle_dict(dict.clone())))
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Answered once the deadline has closed them (a per-connection idle
        // timeout of a minute kept them, and every lookup, waiting).
        let line = tokio::time::timeout(Duration::from_secs(20), dict_lookup(&dict))
            .await
            .expect("dict answered after the line deadline");
        assert_eq!(line, "O{}\n");
        for s in slow {
            s.abort();
        }
        serve.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_quiet_dict_connection_outlives_the_line_deadline() {
        // Dovecot with idle_msecs keeps its connection between lookups:
        // the line deadline (1 s here) is for a line begun, not for quiet.
        let serve = Running::start();
        let s = UnixStream::connect(&serve.dict)
            .await
            .expect("connect dict");
        let (r, mut w) = tokio::io::split(s);
        let mut r = tokio::io::BufReader::new(r);
        let mut line = String::new();
        w.write_all(b"H3\t2\t0\t\ttest\nLshared/userdb/a@b.c\t\n")
            .await
            .expect("write");
        r.read_line(&mut line).await.expect("read");
        assert_eq!(line, "O{}\n");
        tokio::time::sleep(Duration::from_millis(2500)).await;
        line.clear();
        w.write_all(b"Lshared/userdb/a@b.c\t\n")
            .await
            .expect("write after quiet");
        r.read_line(&mut line).await.expect("read after quiet");
        assert_eq!(line, "O{}\n", "the quiet connection was closed");
        drop((r, w));
        serve.stop().await;
    }

    async fn dict_lookup(path: &std::path::Path) -> String {
        let mut s = UnixStream::connect(path).await.expect("connect dict");
        s.write_all(b"H3\t2\t0\t\ttest\nLshared/userdb/a@b.c\t\n")
            .await
            .expect("write");
        let mut line = String::new();
        tokio::io::BufReader::new(s)
            .read_line(&mut line)
            .await
            .expect("read");
        line
    }

    async fn http_lookup(addr: std::net::SocketAddr) -> String {
        let mut s = TcpStream::connect(addr).await.expect("connect http");
        s.write_all(b"POST /userdb/lookup HTTP/1.1\r\nAuthorization: Bearer tok\r\nConnection: close\r\nContent-Length: 8\r\n\r\nuser=a@b")
            .await
            .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        out
    }

    /// `serve_listeners` over [`Everyone`] with the test settings: a dict
    /// socket in a temporary directory and an HTTP listener on a free
    /// loopback port.
    struct Running {
        dict: std::path::PathBuf,
        addr: std::net::SocketAddr,
        stop: watch::Sender<bool>,
        served: tokio::task::JoinHandle<bool>,
        files: SocketFiles,
        _dir: tempfile::TempDir,
    }

    impl Running {
        fn start() -> Running {
            let dir = tempfile::tempdir().expect("temp dir");
            let dict = dir.path().join("dict.sock");
            let settings = settings(&dict);
            let mut files = SocketFiles::default();
            let http = Listener::tcp("127.0.0.1:0".parse().expect("literal")).expect("bind");
            let Listener::Tcp(l) = &http else {
                panic!("TCP listener expected");
            };
            let addr = l.local_addr().expect("local address");
            let listeners = vec![
                (
                    listen::bind_unix(&dict, &settings, &mut files).expect("bind"),
                    Protocol::Dict,
                ),
                (http, Protocol::Http),
            ];
            let (stop, stopped) = watch::channel(false);
            let served = tokio::spawn(serve_listeners(
                listeners,
                Everyone,
                Limits::from(&settings),
                stopped,
            ));
            Running {
                dict,
                addr,
                stop,
                served,
                files,
                _dir: dir,
            }
        }

        /// Stop, and check every connection finished within the grace.
        async fn stop(self) -> SocketFiles {
            let _ = self.stop.send(true);
            assert!(self.served.await.expect("served"), "connections drained");
            self.files
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_clients_on_one_listener_do_not_stop_the_other() {
        let serve = Running::start();
        let (dict, addr) = (serve.dict.clone(), serve.addr);

        // Three times the HTTP listener's cap in slow clients.
        let slow: Vec<_> = (0..300).map(|_| tokio::spawn(trickle(addr))).collect();
        tokio::time::sleep(Duration::from_millis(300)).await;

        // The dict listener has its own cap: answered at once.
        let started = Instant::now();
        let line = tokio::time::timeout(Duration::from_secs(2), dict_lookup(&dict))
            .await
            .expect("dict answered while HTTP is flooded");
        assert_eq!(line, "O{}\n");
        assert!(started.elapsed() < Duration::from_secs(1));

        // The HTTP listener answers too, once the header deadline has
        // closed the slow clients that hold its slots.
        let started = Instant::now();
        let out = tokio::time::timeout(Duration::from_secs(20), http_lookup(addr))
            .await
            .expect("HTTP answered after the header deadline");
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\nok\tuser=a@b\n"), "{out}");
        assert!(
            started.elapsed() >= Duration::from_millis(500),
            "answered before any slot was free: the cap did not hold ({:?})",
            started.elapsed()
        );

        for s in slow {
            s.abort();
        }
        drop(serve.stop().await);
        assert!(!dict.exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stop_ends_idle_connections_at_once() {
        let serve = Running::start();
        let addr = serve.addr;
        // One idle connection on each listener, after a first exchange.
        let mut d = UnixStream::connect(&serve.dict)
            .await
            .expect("connect dict");
        d.write_all(b"H3\t2\t0\t\ttest\n").await.expect("write");
        let mut h = TcpStream::connect(addr).await.expect("connect http");
        h.write_all(b"POST /userdb/lookup HTTP/1.1\r\nAuthorization: Bearer tok\r\nContent-Length: 8\r\n\r\nuser=a@b")
            .await
            .expect("write");
        let mut buf = [0u8; 512];
        let n = h.read(&mut buf).await.expect("read");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK\r\n"));

        let stopping = Instant::now();
        serve.stop().await;
        assert!(stopping.elapsed() < Duration::from_millis(500));
        assert_eq!(
            d.read(&mut buf).await.ok(),
            Some(0),
            "dict connection closed"
        );
        assert_eq!(
            h.read(&mut buf).await.ok(),
            Some(0),
            "HTTP connection closed"
        );
    }
}
