//! Benchmark (not a test): lookups per second through the real
//! `table-mailtable` binary, played the way smtpd plays it: one request in
//! flight, waiting for each reply, over a socketpair on the child's fd 0.
//!
//! ```sh
//! cargo build --release -p table-mailtable
//! cargo run --release -p table-mailtable --example lookup_bench -- [USERS] [SECONDS] [--postgres URL]
//! ```
//!
//! It builds a SQLite database of USERS mailboxes (default 100000) with an
//! alias and a catch-all mix, then reports, per service and key kind,
//! lookups/s and p50/p99 latency, for the text protocol (OpenSMTPD 7.6+).
//! With `--postgres URL` (an empty database: the benchmark creates the
//! schema and the same rows in it) it runs the same cases on PostgreSQL too
//! and prints the two side by side. The PostgreSQL server should be on the
//! same machine (loopback) for a fair comparison: SQLite has no network hop.

use mailtable_core::store::{self, migrate, Access, DatabaseUrl, OpenOptions, Row, SchemaState};
use mailtable_core::PasswordHash;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Makes the key of request number `i` for one benchmark case.
type KeyFn = Box<dyn Fn(usize) -> String>;

/// One measured case: lookups/s, p50 and p99 in µs.
type Measure = (f64, f64, f64);

fn build_db(url: &DatabaseUrl, users: usize) -> Result<(), Box<dyn std::error::Error>> {
    let opts = OpenOptions {
        access: Access::Create,
        timeout: Duration::from_secs(30),
    };
    let mut s = store::open(url, &opts)?;
    let dialect = match url {
        DatabaseUrl::Sqlite(_) => migrate::Dialect::Sqlite,
        DatabaseUrl::Postgres(_) => migrate::Dialect::Postgres,
    };
    if s.schema_state()? != SchemaState::Empty {
        return Err(format!(
            "{url} already has a users table: give the benchmark an empty database"
        )
        .into());
    }
    migrate::migrate(s.as_mut(), dialect, true)?;
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
    drop(s);
    if let DatabaseUrl::Postgres(u) = url {
        // What autovacuum does within a minute of a bulk load: statistics
        // for the planner and a visibility map. Without them the first
        // seconds measure autovacuum competing for the CPU.
        let mut c = postgres::Client::connect(u, postgres::NoTls)?;
        c.batch_execute("VACUUM ANALYZE users")?;
    }
    Ok(())
}

/// The cases: (service, key kind, key of request i).
fn cases(users: usize) -> Vec<(&'static str, &'static str, KeyFn)> {
    vec![
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
    ]
}

/// Run every case against a `table-mailtable` reading `conf`.
fn run(
    bin: &str,
    conf: &Path,
    users: usize,
    secs: u64,
) -> Result<Vec<Measure>, Box<dyn std::error::Error>> {
    let (ours, theirs) = UnixStream::pair()?;
    let mut child = Command::new(bin)
        .arg(conf)
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
    let mut out = Vec::new();
    for (service, _, key) in &cases(users) {
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
        out.push((i as f64 / total.as_secs_f64(), p(0.5), p(0.99)));
    }
    drop(w);
    drop(r);
    let _ = child.wait();
    Ok(out)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut numbers = Vec::new();
    let mut postgres = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--postgres" {
            postgres = Some(args.next().ok_or("--postgres needs a URL")?);
        } else {
            numbers.push(a.parse::<u64>().map_err(|_| format!("not a number: {a}"))?);
        }
    }
    let users = numbers.first().map_or(100_000, |&n| n as usize);
    let secs = numbers.get(1).copied().unwrap_or(2);
    let bin = std::env::var("TABLE_MAILTABLE").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../target/release/table-mailtable"
        )
        .to_string()
    });
    let dir = tempfile::tempdir()?;

    let mut backends: Vec<(&str, DatabaseUrl)> = vec![(
        "sqlite",
        format!("sqlite://{}", dir.path().join("bench.db").display()).parse()?,
    )];
    if let Some(url) = postgres {
        backends.push(("postgres", url.parse()?));
    }
    let mut results = Vec::new();
    for (name, url) in &backends {
        let t = Instant::now();
        build_db(url, users)?;
        println!(
            "{name}: {users} mailboxes (+10% aliases, 500 catch-alls) built in {:.1?} ({url})",
            t.elapsed()
        );
        let conf = dir.path().join(format!("{name}.toml"));
        // The URL verbatim (a password included): this file stays in the
        // benchmark's private temporary directory.
        let text = match url {
            DatabaseUrl::Sqlite(p) => format!("sqlite://{}", p.display()),
            DatabaseUrl::Postgres(u) => u.clone(),
        };
        std::fs::write(&conf, format!("database = \"{text}\"\n"))?;
        results.push(run(&bin, &conf, users, secs)?);
    }

    print!("{:<12} {:<16}", "service", "key");
    for (name, _) in &backends {
        print!(
            " {:>18} {:>8} {:>8}",
            format!("{name} lookups/s"),
            "p50 µs",
            "p99 µs"
        );
    }
    println!();
    for (c, (service, kind, _)) in cases(users).iter().enumerate() {
        print!("{service:<12} {kind:<16}");
        for r in &results {
            let (rate, p50, p99) = r[c];
            print!(" {rate:>18.0} {p50:>8.1} {p99:>8.1}");
        }
        println!();
    }
    Ok(())
}
