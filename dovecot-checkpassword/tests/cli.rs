//! The `dovecot-mailtable` binary as Dovecot runs it, on a temporary SQLite
//! database: `checkpassword` with the request on fd 3 and the reply on fd 4
//! (exit codes of reference §1.7), and `serve` (both sockets answer, a
//! non-loopback HTTP address is refused, SIGTERM removes the sockets).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use mailtable_core::password::{self, Secret};
use mailtable_core::store::{self, migrate, Access, OpenOptions};
use mailtable_core::Row;

const BIN: &str = env!("CARGO_BIN_EXE_dovecot-mailtable");
const PW: &str = "right password";

struct Fixture {
    dir: tempfile::TempDir,
    config: PathBuf,
}

fn fixture(serve: &str) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("mail.db");
    let url: store::DatabaseUrl = format!("sqlite://{}", db.display())
        .parse()
        .expect("valid URL");
    let options = OpenOptions {
        access: Access::Create,
        timeout: Duration::from_secs(5),
    };
    let mut s = store::open(&url, &options).expect("create database");
    migrate::migrate(s.as_mut(), migrate::Dialect::Sqlite, true).expect("schema");
    let hash = password::hash(&Secret::new(PW), 4).expect("hash");
    for (user, active) in [("hugo", true), ("off", false)] {
        s.insert(&Row {
            username: user.into(),
            domain: "barrera.io".into(),
            mailbox: format!("{user}@barrera.io"),
            password: Some(hash.clone()),
            active,
            quota: None,
        })
        .expect("insert");
    }
    drop(s);
    let config = dir.path().join("mailtable.toml");
    let serve = serve.replace("@DIR@", &dir.path().display().to_string());
    std::fs::write(
        &config,
        format!(
            "database = \"{url}\"\nuid = 5000\ngid = 5000\nhome = \"/var/vmail/%d/%n\"\npassword_cost = 4\n{serve}"
        ),
    )
    .expect("write config");
    Fixture { dir, config }
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: room for two descriptors; O_CLOEXEC keeps them from leaking.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2");
    // SAFETY: fresh descriptors nobody else owns.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Runs `checkpassword` like Dovecot: `input` on fd 3, reply from fd 4.
/// `input: None` leaves fd 3 closed.
fn checkpassword(
    config: &Path,
    env: &[(&str, &str)],
    input: Option<&[u8]>,
) -> (i32, String, String) {
    let (req_r, req_w) = pipe();
    let (rep_r, rep_w) = pipe();
    let (req_fd, rep_fd) = (req_r.as_raw_fd(), rep_w.as_raw_fd());
    let connect = input.is_some();
    let mut cmd = Command::new(BIN);
    cmd.arg("-c")
        .arg(config)
        .arg("checkpassword")
        .arg("/usr/lib/dovecot/checkpassword-reply")
        .env_remove("AUTHORIZED")
        .env_remove("CREDENTIALS_LOOKUP")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: async-signal-safe fcntl/dup2 only, between fork and exec;
    // both ends move above 9 first so neither is clobbered.
    unsafe {
        cmd.pre_exec(move || {
            let req = libc::fcntl(req_fd, libc::F_DUPFD_CLOEXEC, 10);
            let rep = libc::fcntl(rep_fd, libc::F_DUPFD_CLOEXEC, 10);
            if req < 0 || rep < 0 || libc::dup2(rep, 4) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if connect && libc::dup2(req, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if !connect {
                libc::close(3);
            }
            Ok(())
        });
    }
    let child = cmd.spawn().expect("spawn checkpassword");
    drop(req_r);
    drop(rep_w);
    let mut w = std::fs::File::from(req_w);
    if let Some(input) = input {
        w.write_all(input).expect("write fd 3");
    }
    drop(w);
    let mut reply = Vec::new();
    std::fs::File::from(rep_r)
        .read_to_end(&mut reply)
        .expect("read fd 4");
    let out: Output = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&reply).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn checkpassword_verify_exit_codes() {
    let f = fixture("");
    let login = |user: &str, pw: &str| {
        checkpassword(
            &f.config,
            &[("SERVICE", "imap")],
            Some(format!("{user}\0{pw}\0\0").as_bytes()),
        )
    };
    let (code, reply, _) = login("hugo@barrera.io", PW);
    assert_eq!(code, 0);
    assert!(
        reply.starts_with("user=hugo@barrera.io\tuserdb_uid=5000\t"),
        "{reply}"
    );
    let (code, reply, _) = login("hugo_barrera.io", PW);
    assert_eq!(code, 0);
    assert!(reply.starts_with("user=hugo@barrera.io\t"), "{reply}");
    for (user, pw) in [
        ("hugo@barrera.io", "wrong"),
        ("nobody@barrera.io", PW),
        ("off@barrera.io", PW),
    ] {
        let (code, reply, stderr) = login(user, pw);
        assert_eq!(code, 1, "{user}");
        assert!(reply.is_empty());
        assert!(!stderr.contains(pw), "password in the log: {stderr}");
    }
}

#[test]
fn checkpassword_lookup_exit_codes() {
    let f = fixture("");
    let userdb = [("AUTHORIZED", "1"), ("SERVICE", "lmtp")];
    let (code, reply, _) = checkpassword(&f.config, &userdb, Some(b"hugo_barrera.io\0\0\0"));
    assert_eq!(code, 2);
    assert_eq!(
        reply,
        "userdb_user=hugo@barrera.io\tuserdb_uid=5000\tuserdb_gid=5000\tuserdb_home=/var/vmail/barrera.io/hugo"
    );
    let (code, _, _) = checkpassword(&f.config, &userdb, Some(b"nobody_barrera.io\0\0\0"));
    assert_eq!(code, 3);
    let passdb = [
        ("AUTHORIZED", "1"),
        ("CREDENTIALS_LOOKUP", "1"),
        ("SCHEME", ""),
    ];
    let (code, reply, _) = checkpassword(&f.config, &passdb, Some(b"hugo@barrera.io\0\0\0"));
    assert_eq!(code, 2);
    assert!(reply.contains("\tpassword={BLF-CRYPT}$2b$04$"), "{reply}");
}

#[test]
fn checkpassword_trouble_is_a_temporary_failure() {
    let f = fixture("");
    let input = Some(&b"hugo@barrera.io\0right password\0\0"[..]);
    // Database gone.
    std::fs::rename(f.dir.path().join("mail.db"), f.dir.path().join("away.db")).expect("rename");
    let (code, reply, stderr) = checkpassword(&f.config, &[], input);
    assert_eq!(code, 111, "{stderr}");
    assert!(reply.is_empty());
    assert!(!stderr.contains("right password"));
    let (code, _, _) = checkpassword(
        &f.config,
        &[("AUTHORIZED", "1")],
        Some(b"hugo@barrera.io\0\0\0"),
    );
    assert_eq!(code, 111);
    // Config missing, fd 3 closed, a request over 512 bytes, bad usage.
    let (code, _, _) = checkpassword(&f.dir.path().join("none.toml"), &[], input);
    assert_eq!(code, 111);
    let (code, _, stderr) = checkpassword(&f.config, &[], None);
    assert_eq!(code, 111, "{stderr}");
    assert!(stderr.contains("fd 3"), "{stderr}");
    let (code, _, _) = checkpassword(&f.config, &[], Some(&[b'a'; 600]));
    assert_eq!(code, 111);
    let out = Command::new(BIN)
        .args(["checkpassword", "--bogus"])
        .output()
        .expect("run");
    // --bogus after the subcommand is taken as the reply program: still
    // no fd 3, so a temporary failure either way.
    assert_eq!(out.status.code(), Some(111));
    let out = Command::new(BIN)
        .args(["--bogus", "checkpassword"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(111));
}

#[test]
fn serve_refuses_non_loopback_addresses() {
    for listen in [
        "0.0.0.0:8787",
        "192.0.2.1:8787",
        "[::]:8787",
        "localhost:8787",
    ] {
        let f = fixture(&format!(
            "[serve]\nhttp_listen = \"{listen}\"\nhttp_secret = \"t\"\n"
        ));
        let out = Command::new(BIN)
            .arg("-c")
            .arg(&f.config)
            .arg("serve")
            .output()
            .expect("run serve");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{listen}: {stderr}");
        assert!(stderr.contains("http_listen"), "{stderr}");
    }
}

#[test]
fn serve_refuses_unprivileged_ports_without_the_opt_in() {
    let f = fixture("[serve]\nhttp_listen = \"127.0.0.1:8787\"\nhttp_secret = \"t\"\n");
    let out = Command::new(BIN)
        .arg("-c")
        .arg(&f.config)
        .arg("serve")
        .output()
        .expect("run serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("http_listen_unprivileged_port"), "{stderr}");
}

fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn serve_answers_and_stops_cleanly_on_sigterm() {
    let f = fixture(
        "[serve]\ndict_socket = \"@DIR@/dict.sock\"\nhttp_listen = \"unix:@DIR@/http.sock\"\nhttp_secret = \"tok\"\nsocket_mode = \"0600\"\n",
    );
    let dict = f.dir.path().join("dict.sock");
    let http = f.dir.path().join("http.sock");
    let mut child = Command::new(BIN)
        .arg("-c")
        .arg(&f.config)
        .arg("serve")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    wait_for(&dict);
    wait_for(&http);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&dict).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // Dict: hello, then a userdb lookup by delivery name.
    let mut s = UnixStream::connect(&dict).expect("connect dict");
    s.write_all(b"H3\t2\t0\t\ttest\nLshared/userdb/hugo_barrera.io\thugo_barrera.io\nLshared/userdb/x@y.z\t\n")
        .expect("write");
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).expect("read");
    assert!(
        line.starts_with("O{") && line.contains("\"user\":\"hugo@barrera.io\""),
        "{line}"
    );
    line.clear();
    r.read_line(&mut line).expect("read");
    assert_eq!(line, "N\n");

    // HTTP: a password check over the UNIX socket.
    let mut s = UnixStream::connect(&http).expect("connect http");
    let body = format!("user=hugo@barrera.io\tpassword={PW}");
    write!(
        s,
        "POST /passdb/verify HTTP/1.1\r\nAuthorization: Bearer tok\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut response = String::new();
    s.read_to_string(&mut response).expect("read");
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.ends_with("ok\tuser=hugo@barrera.io\tuserdb_uid=5000\tuserdb_gid=5000\tuserdb_home=/var/vmail/barrera.io/hugo\n"), "{response}");

    // SIGHUP (an admin expecting a reload) is logged and ignored: serve
    // keeps its sockets and answers (its default action ended serve
    // without a word and left the sockets behind).
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGHUP);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "SIGHUP ended serve"
    );
    let mut s = UnixStream::connect(&dict).expect("connect dict after SIGHUP");
    s.write_all(b"H3\t2\t0\t\ttest\nLshared/userdb/hugo@barrera.io\thugo@barrera.io\n")
        .expect("write");
    let mut after = String::new();
    BufReader::new(s).read_line(&mut after).expect("read");
    assert!(after.starts_with("O{"), "{after}");

    // The dict connection stays open and idle: shutdown must end it at
    // once rather than wait for the grace period.
    let stopping = Instant::now();
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut stderr).expect("read stderr");
    }
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stopping.elapsed() < Duration::from_secs(3), "{stderr}");
    line.clear();
    assert_eq!(
        r.read_line(&mut line).ok(),
        Some(0),
        "idle dict connection closed"
    );
    assert!(!dict.exists() && !http.exists(), "sockets left behind");
    assert!(!stderr.contains(PW), "password in the log: {stderr}");
    assert!(stderr.contains("SIGHUP ignored"), "{stderr}");
}
