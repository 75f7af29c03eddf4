//! What the CLI's integration tests share: running the built `mailtable`
//! against a database URL, and creating throwaway PostgreSQL databases on
//! the test server. One copy, so that every test file spawns the binary and
//! feeds its stdin the same way.

#![allow(dead_code)] // each test binary uses part of it

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Run `mailtable --database URL ARGS...` in `dir` (or the current
/// directory), with `stdin` written to its standard input.
pub fn mailtable(url: &str, args: &[&str], stdin: Option<&str>, dir: Option<&Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailtable"));
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    cmd.arg("--database")
        .arg(url)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("the mailtable binary runs");
    let mut input = child.stdin.take().expect("stdin is piped");
    if let Some(s) = stdin {
        // A command that refuses its arguments may exit before reading
        // stdin: only a broken pipe is expected here.
        if let Err(e) = input.write_all(s.as_bytes()) {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
        }
    }
    drop(input);
    child.wait_with_output().expect("mailtable exits")
}

/// Run SQL on a PostgreSQL server (test set-up and clean-up).
pub fn pg_exec(url: &str, sql: &str) {
    pg_try(url, sql).expect("test SQL runs");
}

/// Run SQL on a PostgreSQL server: the server's error, if any.
#[allow(dead_code)]
pub fn pg_try(url: &str, sql: &str) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("the test server answers");
        tokio::spawn(conn);
        client
            .batch_execute(sql)
            .await
            .map_err(|e| match e.as_db_error() {
                Some(db) => db.message().to_string(),
                None => e.to_string(),
            })
    })
}

/// `server` with its database name replaced by `name`, query kept.
pub fn pg_url_for(server: &str, name: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (server, String::new()),
    };
    let (prefix, _) = base.rsplit_once('/').expect("a URL with a database");
    format!("{prefix}/{name}{query}")
}
