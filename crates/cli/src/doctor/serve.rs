//! `dovecot-mailtable serve`, when the config gives it a listener: is it
//! running, reachable where the config says, and does it answer a lookup
//! with the token?
//!
//! Only serve's documented wire API is used (the module docs of
//! dovecot-checkpassword/src/http.rs): `POST /userdb/lookup` with
//! `Authorization: Bearer <token>` and a text body `user=...`; the answer's
//! first word is a result token (`ok`, `unknown`, `tempfail`, `error`). The
//! token is read here and sent, never printed.

use super::dovecot::{Dovecot, Mode};
use super::{Check, DoctorArgs};
use mailtable_core::Config;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Asked when `--address` is not given: "unknown" proves serve answered.
const PROBE_NAME: &str = "postmaster@doctor.invalid";
/// How serve is started (dovecot-checkpassword/conf/dovecot-mailtable.service).
const START: &str = "systemctl start dovecot-mailtable";

/// What a `/userdb/lookup` answer means: the message, or a problem and
/// its fix.
pub(crate) fn interpret(status: u16, body: &str, user: &str) -> Result<String, (String, String)> {
    let token = body.split(['\t', '\n']).next().unwrap_or("").trim();
    match (status, token) {
        (200, "ok") => Ok(format!("userdb lookup of {user}: found")),
        (404, "unknown") => Ok(format!("userdb lookup of {user}: unknown user (it answered)")),
        (401, _) => Err((
            "serve refuses the token in its http_secret_file (401): it was changed after serve started".into(),
            "systemctl restart dovecot-mailtable".into(),
        )),
        (503, _) | (_, "tempfail") => Err((
            format!("serve answers a temporary failure: {}", body.trim().replace('\t', " ")),
            "serve cannot use the database: see the database.* lines, then systemctl restart dovecot-mailtable".into(),
        )),
        _ => Err((
            format!("unexpected answer {status} {token:?}: is this serve?"),
            "check [serve] http_listen in mailtable.toml and what listens there".into(),
        )),
    }
}

/// Split a raw HTTP/1.1 response into status and body.
pub(crate) fn split_response(raw: &str) -> Option<(u16, &str)> {
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body))
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

fn connect(listen: &str, timeout: Duration) -> std::io::Result<Box<dyn Stream>> {
    if let Some(path) = listen.strip_prefix("unix:") {
        let s = UnixStream::connect(path)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        Ok(Box::new(s))
    } else {
        let addr = listen
            .parse()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e}")))?;
        let s = TcpStream::connect_timeout(&addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        Ok(Box::new(s))
    }
}

fn lookup(listen: &str, token: &str, user: &str, timeout: Duration) -> std::io::Result<String> {
    let mut s = connect(listen, timeout)?;
    let body = format!("user={user}");
    let req = format!(
        "POST /userdb/lookup HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    Ok(String::from_utf8_lossy(&raw).into_owned())
}

fn token(config: &Config) -> Result<String, String> {
    let file = config.serve.http_secret_file.trim();
    if file.is_empty() {
        return Ok(config.serve.http_secret.trim().to_string());
    }
    std::fs::read_to_string(file)
        .map(|t| t.trim().to_string())
        .map_err(|e| format!("cannot read the token file {file}: {e}"))
}

pub(crate) fn run(
    config: Option<&Config>,
    dovecot: &Dovecot,
    args: &DoctorArgs,
    timeout: Duration,
    checks: &mut Vec<Check>,
) {
    let Some(config) = config else {
        return;
    };
    let needed = matches!(dovecot.mode, Some(Mode::Dict { .. } | Mode::Lua { .. }));
    let dict = config.serve.dict_socket.trim();
    let http = config.serve.http_listen.trim();
    if dict.is_empty() && http.is_empty() {
        checks.push(Check::na(
            "serve",
            if needed {
                "no [serve] listener in the config (see the dovecot.* lines)"
            } else {
                "no [serve] listener in the config, and Dovecot does not need one"
            },
        ));
        return;
    }
    // The shipped config has a listener; a host whose Dovecot runs the
    // checkpassword helper does not use serve, and must not be told to
    // start it.
    if !needed && dovecot.mode.is_some() {
        checks.push(Check::na(
            "serve",
            "[serve] has a listener, but this Dovecot runs the checkpassword helper, which \
             does not use serve",
        ));
        return;
    }
    if !dict.is_empty() {
        checks.push(match UnixStream::connect(Path::new(dict)) {
            Ok(_) => Check::ok("serve.dict", format!("serve accepts connections on {dict}")),
            Err(e) => Check::problem(
                "serve.dict",
                format!("serve is not running or not reachable on {dict}: {e}"),
                START,
            ),
        });
    }
    if !http.is_empty() {
        let user = args.address.as_deref().unwrap_or(PROBE_NAME);
        let check = match token(config) {
            Err(e) => Check::problem(
                "serve.http",
                e,
                "run doctor as root, or create the token file (README: Dovecot)",
            ),
            Ok(t) => match lookup(http, &t, user, timeout) {
                Err(e) => Check::problem(
                    "serve.http",
                    format!("serve is not running or not reachable on {http}: {e}"),
                    START,
                ),
                Ok(raw) => match split_response(&raw) {
                    None => Check::problem(
                        "serve.http",
                        format!("{http} did not answer HTTP"),
                        "check [serve] http_listen in mailtable.toml and what listens there",
                    ),
                    Some((status, body)) => match interpret(status, body, user) {
                        Ok(m) => Check::ok("serve.http", format!("{http}: {m}")),
                        Err((m, fix)) => Check::problem("serve.http", format!("{http}: {m}"), fix),
                    },
                },
            },
        };
        checks.push(check);
    }
    checks.push(super::program_current(
        "serve.program",
        "serve",
        "dovecot-mailtable",
        Some("serve"),
        "systemctl restart dovecot-mailtable",
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        assert!(interpret(200, "ok\tuser=a@b.c\tuid=5000\n", "a@b.c").is_ok());
        assert!(interpret(404, "unknown\n", "x@b.c")
            .unwrap()
            .contains("unknown user"));
        let (m, fix) = interpret(401, "error\terror=unauthorized\n", "x").unwrap_err();
        assert!(m.contains("401"));
        assert!(fix.contains("restart"));
        assert!(interpret(503, "tempfail\terror=database unavailable\n", "x").is_err());
        // A 404 from something else is no "unknown user".
        assert!(interpret(404, "<html>", "x").is_err());
        assert_eq!(
            split_response("HTTP/1.1 404 Not Found\r\nContent-Length: 8\r\n\r\nunknown\n"),
            Some((404, "unknown\n"))
        );
        assert_eq!(split_response("garbage"), None);
    }

    #[test]
    fn talks_to_a_listener() {
        use std::net::TcpListener;
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap();
            let req = String::from_utf8_lossy(&buf[..n]).into_owned();
            s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 8\r\nConnection: close\r\n\r\nunknown\n")
                .unwrap();
            req
        });
        let raw = lookup(&addr, "T0K", "who@x.org", Duration::from_secs(5)).unwrap();
        let req = server.join().unwrap();
        assert!(req.starts_with("POST /userdb/lookup HTTP/1.1\r\n"));
        assert!(req.contains("Authorization: Bearer T0K\r\n"));
        assert!(req.ends_with("\r\n\r\nuser=who@x.org"));
        assert_eq!(split_response(&raw).unwrap().0, 404);
    }
}
