//! Benchmark (not a test): lookups per second through the real
//! `table-mailtable` binary, played the way smtpd plays it: one request in
//! flight, waiting for each reply, over a socketpair on the child's fd 0.
//!
//! ```sh
//! cargo build --release -p table-mailtable
//! cargo run --release -p table-mailtable --example lookup_bench -- [USERS] [SECONDS]
//! ```
//!
//! It builds a SQLite database of USERS mailboxes (default 100000) with an
//! alias and a catch-all mix, then reports, per service and key kind,
//! lookups/s and p50/p99 latency, for the text protocol (OpenSMTPD 7.6+).

use mailtable_core::store::{self, migrate, Access, OpenOptions, Row};
use mailtable_core::PasswordHash;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Makes the key of request number `i` for one benchmark case.
type KeyFn = Box<dyn Fn(usize) -> String>;

fn build_db(path: &std::path::Path, users: usize) -> Result<(), Box<dyn std::error::Error>> {
    let opts = OpenOptions {
        access: Access::Create,
        timeout: Duration::from_secs(30),
    };
    let mut s = store::open(&format!("sqlite://{}", path.display()).parse()?, &opts)?;
    migrate::migrate(s.as_mut(), migrate::Dialect::Sqlite, true)?;
    // One fixed hash: the benchmark measures lookups, not hashing.
    let hash = PasswordHash::new("$2b$04$abcdefghijklmnopqrstuuQ0fWm2fvO1x7qU8mB0h7lZ3k6i6xQ8y");
    s.begin()?;
    for i in 0..users {
        let domain = format!("d{}.example", i % 1000);
        let user = format!("user{i}");
        s.insert(&Row {
            username: user.clone(),
            domain: domain.clone(),
            mailbox: format!("{user}@{domain}"),
            password: Some(hash.clone()),
            active: true,
            quota: None,
        })?;
        if i % 10 == 0 {
            s.insert(&Row {
                username: format!("alias{i}"),
                domain: domain.clone(),
                mailbox: format!("{user}@{domain}"),
                password: None,
                active: true,
                quota: None,
            })?;
        }
        if i < 1000 && i % 2 == 0 {
            s.insert(&Row {
                username: "%".into(),
                domain,
                mailbox: format!("{user}@d{}.example", i % 1000),
                password: None,
                active: true,
                quota: None,
            })?;
        }
    }
    s.commit()?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let users: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let secs: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(2);
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("bench.db");
    let t = Instant::now();
    build_db(&db, users)?;
    println!(
        "database: {users} mailboxes (+10% aliases, 500 catch-alls) built in {:.1?}",
        t.elapsed()
    );
    let conf = dir.path().join("bench.toml");
    std::fs::write(&conf, format!("database = \"sqlite://{}\"\n", db.display()))?;

    let bin = std::env::var("TABLE_MAILTABLE").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../target/release/table-mailtable"
        )
        .to_string()
    });
    let (ours, theirs) = UnixStream::pair()?;
    let mut child = Command::new(&bin)
        .arg(&conf)
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .env("MAILTABLE_LOG", "warn")
        .spawn()?;
    let mut w = ours.try_clone()?;
    let mut r = BufReader::new(ours);
    w.write_all(
        b"config|smtpd-version|7.6.0\nconfig|protocol|0.1\nconfig|tablename|bench\nconfig|ready\n",
    )?;
    let mut line = String::new();
    loop {
        line.clear();
        r.read_line(&mut line)?;
        if line.trim_end() == "register|ready" || line.is_empty() {
            break;
        }
    }
    let cases: Vec<(&str, &str, KeyFn)> = vec![
        (
            "alias",
            "mailbox",
            Box::new(move |i| format!("user{}@d{}.example", i % users, (i % users) % 1000)),
        ),
        (
            "alias",
            "alias",
            Box::new(move |i| {
                let j = (i * 10) % users;
                format!("alias{j}@d{}.example", j % 1000)
            }),
        ),
        (
            "alias",
            "catch-all @dom",
            Box::new(|i| format!("@d{}.example", (i % 500) * 2)),
        ),
        (
            "alias",
            "unknown",
            Box::new(|i| format!("nobody{i}@d{}.example", i % 1000)),
        ),
        (
            "domain",
            "known",
            Box::new(|i| format!("d{}.example", i % 1000)),
        ),
        (
            "userinfo",
            "mailbox",
            Box::new(move |i| format!("user{}_d{}.example", i % users, (i % users) % 1000)),
        ),
        (
            "credentials",
            "mailbox",
            Box::new(move |i| format!("user{}@d{}.example", i % users, (i % users) % 1000)),
        ),
    ];
    println!(
        "{:<12} {:<16} {:>10} {:>9} {:>9}",
        "service", "key", "lookups/s", "p50 µs", "p99 µs"
    );
    for (service, kind, key) in &cases {
        let mut lat = Vec::new();
        let start = Instant::now();
        let mut i = 0usize;
        while start.elapsed() < Duration::from_secs(secs) {
            let k = key(i.wrapping_mul(7919));
            let t = Instant::now();
            writeln!(
                w,
                "table|0.1|0.0|bench|lookup|{service}|{:08x}|{k}",
                i as u32
            )?;
            line.clear();
            r.read_line(&mut line)?;
            lat.push(t.elapsed());
            if line.contains("|error") {
                return Err(format!("error answer for {k}: {line}").into());
            }
            i += 1;
        }
        let total = start.elapsed();
        lat.sort();
        let p = |q: f64| lat[((lat.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1e6;
        println!(
            "{service:<12} {kind:<16} {:>10.0} {:>9.1} {:>9.1}",
            i as f64 / total.as_secs_f64(),
            p(0.5),
            p(0.99)
        );
    }
    drop(w);
    drop(r);
    let _ = child.wait();
    Ok(())
}
