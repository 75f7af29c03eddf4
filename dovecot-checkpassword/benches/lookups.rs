//! userdb lookups per second: `dovecot-mailtable serve` (dict socket and
//! HTTP API) against fork+exec of `dovecot-mailtable checkpassword`.
//!
//! Not a test: `cargo bench -p dovecot-mailtable` builds the binary in
//! release mode, creates a SQLite database with [`USERS`] mailboxes in a
//! temporary directory, starts `serve` on a UNIX dict socket and a loopback
//! HTTP port, and for each client shape runs [`THREADS`] client threads for
//! [`SECONDS`] seconds, each asking for random users, then prints the rate.
//! The client shapes copy what Dovecot does:
//!
//! - dict: a new connection, `H` and one `L` per lookup, as Dovecot 2.3's
//!   passdb/userdb dict client does with its default idle timeout of 0
//!   (reference §2.1, VERIFIED); and, for comparison, one persistent
//!   connection per thread;
//! - HTTP: keep-alive connections, as `dovecot.http.client` keeps them;
//! - checkpassword: one fork+exec per lookup with the request on fd 3 and
//!   the reply read from fd 4, `AUTHORIZED=1` (a userdb lookup), as Dovecot's
//!   auth process does (core@2.3.19.1:src/auth/db-checkpassword.c).
//!
//! Userdb lookups involve no password hashing, so this measures the
//! transport and the database probe; a login adds one bcrypt check of the
//! configured cost in every mode. The last line repeats the persistent dict
//! measurement while [`LOGIN_THREADS`] clients log in through the HTTP API
//! with a bcrypt cost of [`SLOW_COST`]: the hashes run on serve's worker
//! pool, so lookups keep going.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use mailtable_core::password::{self, Secret};
use mailtable_core::store::{self, migrate, Access, OpenOptions};
use mailtable_core::Row;

/// Mailboxes in the database.
const USERS: usize = 5000;
/// Client threads per measurement.
const THREADS: usize = 8;
/// Length of one measurement.
const SECONDS: u64 = 3;
const SECRET: &str = "bench-secret-token";
/// bcrypt cost of the user whose logins run beside lookups.
const SLOW_COST: u32 = 12;
/// Client threads doing those logins.
const LOGIN_THREADS: usize = 16;

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> BenchResult<()> {
    // `cargo bench` passes --bench; a libtest-style filter is ignored.
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_dovecot-mailtable"));
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("mail.db");
    let t0 = Instant::now();
    create_database(&db)?;
    println!(
        "database: {USERS} mailboxes in {:?} ({:.1?})",
        db,
        t0.elapsed()
    );

    let port = free_port()?;
    let dict_sock = dir.path().join("dict.sock");
    let config = dir.path().join("mailtable.toml");
    std::fs::write(
        &config,
        format!(
            "database = \"sqlite://{}\"\nuid = 5000\ngid = 5000\nhome = \"/var/vmail/%d/%n\"\npassword_cost = 4\n\
             [serve]\ndict_socket = \"{}\"\nhttp_listen = \"127.0.0.1:{port}\"\nhttp_listen_unprivileged_port = true\nhttp_secret = \"{SECRET}\"\nsocket_mode = \"0600\"\n",
            db.display(),
            dict_sock.display()
        ),
    )?;
    let mut serve = Server::start(&bin, &config, &dict_sock, port)?;

    println!("{THREADS} client threads, {SECONDS} s each, random users out of {USERS}:");
    let results = [
        (
            "serve, dict, new connection per lookup (Dovecot 2.3 dict)",
            measure(|i| dict_lookup_fresh(&dict_sock, i)),
        ),
        (
            "serve, dict, persistent connection",
            measure_with_state(|| dict_connect(&dict_sock), dict_lookup_on),
        ),
        (
            "serve, HTTP keep-alive (Lua script)",
            measure_with_state(|| http_connect(port), http_lookup_on),
        ),
        (
            "checkpassword, fork+exec per lookup",
            measure(|i| checkpassword_lookup(&bin, &config, i)),
        ),
    ];
    for (name, rate) in &results {
        match rate {
            Ok(r) => println!("  {name:<58} {r:>9.0} lookups/s"),
            Err(e) => println!("  {name:<58} failed: {e}"),
        }
    }
    // A slow hash must not hold up lookups: run LOGIN_THREADS clients
    // logging in (bcrypt cost SLOW_COST, on serve's `workers` threads)
    // while the dict lookups run again.
    let stop = AtomicBool::new(false);
    let logins = AtomicU64::new(0);
    let (beside, login_rate) = thread::scope(|scope| {
        for _ in 0..LOGIN_THREADS {
            let (stop, logins) = (&stop, &logins);
            scope.spawn(move || {
                let Ok(mut conn) = http_connect(port) else {
                    return;
                };
                while !stop.load(Ordering::Relaxed) {
                    if http_verify_on(&mut conn).is_err() {
                        return;
                    }
                    logins.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        thread::sleep(Duration::from_millis(500));
        let before = logins.load(Ordering::Relaxed);
        let t = Instant::now();
        let rate = measure_with_state(|| dict_connect(&dict_sock), dict_lookup_on);
        let login_rate =
            (logins.load(Ordering::Relaxed) - before) as f64 / t.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        (rate, login_rate)
    });
    let name = format!("serve, dict, persistent, during {LOGIN_THREADS} clients' logins");
    match beside {
        Ok(r) => println!("  {name:<58} {r:>9.0} lookups/s (logins at bcrypt cost {SLOW_COST}: {login_rate:.1}/s)"),
        Err(e) => println!("  {name:<58} failed: {e}"),
    }
    serve.stop();
    Ok(())
}

fn create_database(path: &Path) -> BenchResult<()> {
    let url: store::DatabaseUrl = format!("sqlite://{}", path.display()).parse()?;
    let options = OpenOptions {
        access: Access::Create,
        timeout: Duration::from_secs(5),
    };
    let mut s = store::open(&url, &options)?;
    migrate::migrate(s.as_mut(), migrate::Dialect::Sqlite, true)?;
    // One hash for all: lookups never hash, and bcrypt per row would make
    // set-up slow.
    let hash = password::hash(&Secret::new("bench password"), 4)?;
    s.begin()?;
    for i in 0..USERS {
        let domain = format!("d{}.bench.test", i % 50);
        s.insert(&Row {
            username: format!("user{i}"),
            mailbox: format!("user{i}@{domain}"),
            domain,
            password: Some(hash.clone()),
            active: true,
            quota: (i % 3 == 0).then(|| "1G".to_string()),
        })?;
    }
    // One user with an expensive hash, for the logins that run beside
    // lookups in the last measurement.
    s.insert(&Row {
        username: "slow".into(),
        domain: "bench.test".into(),
        mailbox: "slow@bench.test".into(),
        password: Some(password::hash(&Secret::new("bench password"), SLOW_COST)?),
        active: true,
        quota: None,
    })?;
    s.commit()?;
    Ok(())
}

fn user(i: u64) -> String {
    let n = i as usize % USERS;
    format!("user{n}@d{}.bench.test", n % 50)
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The `serve` child, stopped with SIGTERM.
struct Server(Child);

impl Server {
    fn start(bin: &Path, config: &Path, dict_sock: &Path, port: u16) -> BenchResult<Server> {
        let child = Command::new(bin)
            .arg("-c")
            .arg(config)
            .arg("serve")
            .env("MAILTABLE_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()?;
        let server = Server(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(dict_sock.exists() && TcpStream::connect(("127.0.0.1", port)).is_ok()) {
            if Instant::now() > deadline {
                return Err("serve did not come up".into());
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    fn stop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM);
        }
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            self.stop();
        }
    }
}

/// Runs `op` in [`THREADS`] threads for [`SECONDS`]; lookups per second.
fn measure(op: impl Fn(u64) -> BenchResult<()> + Sync) -> BenchResult<f64> {
    measure_with_state(|| Ok(()), |_: &mut (), i| op(i))
}

fn measure_with_state<S>(
    init: impl Fn() -> BenchResult<S> + Sync,
    op: impl Fn(&mut S, u64) -> BenchResult<()> + Sync,
) -> BenchResult<f64> {
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let failed = Arc::new(std::sync::Mutex::new(None::<String>));
    let start = Instant::now();
    thread::scope(|scope| {
        for t in 0..THREADS {
            let (stop, done, failed, init, op) = (&stop, &done, &failed, &init, &op);
            scope.spawn(move || {
                let mut state = match init() {
                    Ok(s) => s,
                    Err(e) => {
                        *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                        return;
                    }
                };
                // A cheap per-thread pseudo-random walk over the users.
                let mut i = (t as u64 + 1) * 7919;
                while !stop.load(Ordering::Relaxed) {
                    i = i
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    if let Err(e) = op(&mut state, i >> 33) {
                        *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                        stop.store(true, Ordering::Relaxed);
                        return;
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        thread::sleep(Duration::from_secs(SECONDS));
        stop.store(true, Ordering::Relaxed);
    });
    let elapsed = start.elapsed().as_secs_f64();
    if let Some(e) = failed.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(e.into());
    }
    Ok(done.load(Ordering::Relaxed) as f64 / elapsed)
}

fn expect_found(line: &str, what: &str) -> BenchResult<()> {
    if line.starts_with('O') && line.contains("\"home\"") {
        Ok(())
    } else {
        Err(format!("{what}: unexpected reply {line:?}").into())
    }
}

fn dict_lookup_fresh(sock: &Path, i: u64) -> BenchResult<()> {
    let mut conn = dict_connect(sock)?;
    dict_lookup_on(&mut conn, i)
}

fn dict_connect(sock: &Path) -> BenchResult<BufReader<UnixStream>> {
    let mut s = UnixStream::connect(sock)?;
    s.write_all(b"H3\t2\t0\t\tbench\n")?;
    Ok(BufReader::new(s))
}

fn dict_lookup_on(conn: &mut BufReader<UnixStream>, i: u64) -> BenchResult<()> {
    let u = user(i);
    conn.get_mut()
        .write_all(format!("Lshared/userdb/{u}\t{u}\n").as_bytes())?;
    let mut line = String::new();
    conn.read_line(&mut line)?;
    expect_found(&line, "dict")
}

fn http_connect(port: u16) -> BenchResult<BufReader<TcpStream>> {
    let s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_nodelay(true)?;
    Ok(BufReader::new(s))
}

fn http_lookup_on(conn: &mut BufReader<TcpStream>, i: u64) -> BenchResult<()> {
    let body = format!("user={}", user(i));
    let request = format!(
        "POST /userdb/lookup HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {SECRET}\r\n\
         Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.get_mut().write_all(request.as_bytes())?;
    read_http_ok(conn)
}

fn http_verify_on(conn: &mut BufReader<TcpStream>) -> BenchResult<()> {
    let body = "user=slow@bench.test\tpassword=bench password";
    let request = format!(
        "POST /passdb/verify HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {SECRET}\r\n\
         Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.get_mut().write_all(request.as_bytes())?;
    read_http_ok(conn)
}

fn read_http_ok(conn: &mut BufReader<TcpStream>) -> BenchResult<()> {
    let mut len = 0usize;
    let mut status = String::new();
    conn.read_line(&mut status)?;
    loop {
        let mut h = String::new();
        conn.read_line(&mut h)?;
        if h == "\r\n" || h.is_empty() {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse()?;
        }
    }
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body)?;
    if status.starts_with("HTTP/1.1 200") && body.starts_with(b"ok\t") {
        Ok(())
    } else {
        Err(format!("http: unexpected reply {status:?}").into())
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for both descriptors; O_CLOEXEC keeps them out
    // of other children.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fresh descriptors owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn checkpassword_lookup(bin: &Path, config: &Path, i: u64) -> BenchResult<()> {
    let (req_r, req_w) = pipe()?;
    let (rep_r, rep_w) = pipe()?;
    let (req_fd, rep_fd) = (req_r.as_raw_fd(), rep_w.as_raw_fd());
    let mut cmd = Command::new(bin);
    cmd.arg("-c")
        .arg(config)
        .arg("checkpassword")
        .arg("/usr/lib/dovecot/checkpassword-reply")
        .env("AUTHORIZED", "1")
        .stdin(Stdio::null());
    // SAFETY: only async-signal-safe fcntl/dup2 calls between fork and
    // exec. Both ends move above 9 first, so neither can be clobbered when
    // the other is placed on 3 or 4; dup2 clears O_CLOEXEC on 3 and 4.
    unsafe {
        cmd.pre_exec(move || {
            let req = libc::fcntl(req_fd, libc::F_DUPFD_CLOEXEC, 10);
            let rep = libc::fcntl(rep_fd, libc::F_DUPFD_CLOEXEC, 10);
            if req < 0 || rep < 0 || libc::dup2(req, 3) < 0 || libc::dup2(rep, 4) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    drop(req_r);
    drop(rep_w);
    let mut w = std::fs::File::from(req_w);
    w.write_all(format!("{}\0\0\0", user(i)).as_bytes())?;
    drop(w);
    let mut reply = Vec::new();
    std::fs::File::from(rep_r).read_to_end(&mut reply)?;
    let status = child.wait()?;
    if status.code() == Some(2) && reply.starts_with(b"userdb_user=") {
        Ok(())
    } else {
        Err(format!(
            "checkpassword: exit {status}, reply {:?}",
            String::from_utf8_lossy(&reply)
        )
        .into())
    }
}
