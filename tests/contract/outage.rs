//! Failures are errors, bounded in time, and the store recovers by itself:
//! DESIGN.md "Failure semantics". Locks on both backends; PostgreSQL's own
//! failure modes (statement timeout, killed connections, a lost
//! transaction, a missing database) with `pg_test!`. Server restarts and
//! replicas need a server this process can stop: `tests/e2e/test-postgres.sh`.

use mailtable_core::store::{Access, Delete, StoreError};
use mailtable_core::{Address, Resolver};
use mailtable_tests::{insert_all, mailbox, postgres_url, with_dbname, Backend, Raw};
use std::time::{Duration, Instant};

const SHORT: Duration = Duration::from_millis(300);

/// Hold the write lock the way another writer would: SQLite's reserved
/// lock, PostgreSQL's EXCLUSIVE table lock (readers still read).
fn block_writers(db: &mailtable_tests::TestDb) -> Raw {
    let mut raw = db.raw();
    match db.backend() {
        Backend::Sqlite => raw.exec("BEGIN IMMEDIATE"),
        Backend::Postgres => raw.exec("BEGIN; LOCK TABLE users IN EXCLUSIVE MODE"),
    }
    raw
}

/// Terminate every connection to this test's database; wait until gone.
fn kill_connections(db: &mailtable_tests::TestDb) -> usize {
    let name = db.pg_database().expect("postgres");
    let mut admin = db.pg_admin().expect("postgres");
    let killed = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&name],
        )
        .unwrap()
        .len();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        let left: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
                &[&name],
            )
            .unwrap()
            .get(0);
        if left == 0 {
            return killed;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("connections to {name} survived pg_terminate_backend");
}

backend_test!(a_writer_blocked_past_the_timeout_is_unavailable, |db| {
    let mut w = db.init();
    insert_all(w.as_mut(), &[mailbox("a", "ex.org")]);
    drop(w);
    let mut s = db.try_open(Access::ReadWrite, SHORT).unwrap();
    let mut raw = block_writers(&db);
    // Readers are not blocked by a writer.
    assert_eq!(s.exact("a", "ex.org").unwrap().len(), 1);
    let t = Instant::now();
    let e = s
        .begin()
        .and_then(|()| s.insert(&mailbox("b", "ex.org")))
        .unwrap_err();
    s.rollback();
    let waited = t.elapsed();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e}");
    assert!(waited >= SHORT / 2, "gave up too early: {waited:?}");
    assert!(waited < Duration::from_secs(3), "not bounded: {waited:?}");
    raw.exec("ROLLBACK");
    // Free again: the same store writes (reconnecting if it had to).
    s.begin().unwrap();
    s.insert(&mailbox("b", "ex.org")).unwrap();
    s.commit().unwrap();
    assert_eq!(s.exact("b", "ex.org").unwrap().len(), 1);
});

pg_test!(
    a_lookup_blocked_past_the_statement_timeout_is_unavailable,
    |db| {
        let mut w = db.init();
        insert_all(w.as_mut(), &[mailbox("hugo", "barrera.io")]);
        drop(w);
        let mut s = db.try_open(Access::ReadOnly, SHORT).unwrap();
        let mut raw = db.raw();
        raw.exec("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE");
        let t = Instant::now();
        let e = s.exact("hugo", "barrera.io").unwrap_err();
        let waited = t.elapsed();
        assert!(
            matches!(&e, StoreError::Unavailable(m) if m.contains("took longer than the configured timeout")),
            "{e}"
        );
        assert!(waited < Duration::from_secs(2), "not bounded: {waited:?}");
        // Through the resolver it stays an error, never "not found".
        let r = Resolver::default();
        assert!(r.alias_for_key(s.as_mut(), "hugo@barrera.io").is_err());
        raw.exec("ROLLBACK");
        assert_eq!(s.exact("hugo", "barrera.io").unwrap().len(), 1);
    }
);

pg_test!(
    a_statement_cancelled_by_an_administrator_is_unavailable_not_a_timeout,
    |db| {
        let mut w = db.init();
        insert_all(w.as_mut(), &[mailbox("hugo", "barrera.io")]);
        drop(w);
        let mut s = db
            .try_open(Access::ReadOnly, Duration::from_secs(20))
            .unwrap();
        assert_eq!(s.exact("hugo", "barrera.io").unwrap().len(), 1);
        let mut raw = db.raw();
        raw.exec("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE");
        let name = db.pg_database().expect("postgres").to_string();
        let mut admin = db.pg_admin().expect("postgres");
        // pg_cancel_backend, as an administrator ends a query that waits:
        // SQLSTATE 57014, the code of a statement timeout too.
        let canceller = std::thread::spawn(move || {
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(10) {
                let cancelled = admin
                    .query(
                        "SELECT pg_cancel_backend(pid) FROM pg_stat_activity \
                         WHERE datname = $1 AND wait_event_type = 'Lock'",
                        &[&name],
                    )
                    .unwrap()
                    .len();
                if cancelled > 0 {
                    return cancelled;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            0
        });
        let e = s.exact("hugo", "barrera.io").unwrap_err();
        assert_eq!(canceller.join().unwrap(), 1);
        assert!(
            matches!(&e, StoreError::Unavailable(m)
                if m.contains("cancelled by the server") && m.contains("user request")
                    && !m.contains("took longer")),
            "{e}"
        );
        raw.exec("ROLLBACK");
        assert_eq!(s.exact("hugo", "barrera.io").unwrap().len(), 1);
    }
);

pg_test!(a_killed_connection_is_replaced_on_the_next_lookup, |db| {
    let mut w = db.init();
    insert_all(w.as_mut(), &[mailbox("hugo", "barrera.io")]);
    drop(w);
    let mut s = db.open(Access::ReadOnly);
    let r = Resolver::default();
    let hugo = Address::parse("hugo@barrera.io").unwrap();
    assert!(r.mailbox(s.as_mut(), &hugo).unwrap().is_some());
    for round in 0..3 {
        assert_eq!(kill_connections(&db), 1, "round {round}");
        // The dead connection is noticed and replaced within the call.
        assert!(
            r.mailbox(s.as_mut(), &hugo).unwrap().is_some(),
            "round {round}"
        );
        assert!(s.has_domain("barrera.io").unwrap());
    }
});

pg_test!(a_connection_the_server_closed_when_idle_is_replaced, |db| {
    // `idle_session_timeout` (PostgreSQL 14+), or a pooler or firewall
    // that drops idle connections: the server ends the session with
    // 57P05. The next lookup must not fail for it.
    let mut w = db.init();
    insert_all(w.as_mut(), &[mailbox("hugo", "barrera.io")]);
    drop(w);
    let name = db.pg_database().expect("postgres");
    let mut admin = db.pg_admin().expect("postgres");
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{name}\" SET idle_session_timeout = '200ms'"
        ))
        .unwrap();
    let mut s = db.open(Access::ReadOnly);
    let r = Resolver::default();
    let hugo = Address::parse("hugo@barrera.io").unwrap();
    for round in 0..3 {
        assert!(
            r.mailbox(s.as_mut(), &hugo).unwrap().is_some(),
            "round {round}"
        );
        std::thread::sleep(Duration::from_millis(600));
    }
    assert!(s.has_domain("barrera.io").unwrap());
});

pg_test!(a_transaction_whose_connection_dies_commits_nothing, |db| {
    let mut s = db.init();
    insert_all(s.as_mut(), &[mailbox("a", "ex.org")]);
    s.begin().unwrap();
    s.insert(&mailbox("lost", "ex.org")).unwrap();
    s.delete("a", "ex.org", Delete::Mailbox).unwrap();
    kill_connections(&db);
    let e = s.commit().unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e}");
    s.rollback();
    assert!(s.exact("lost", "ex.org").unwrap().is_empty());
    assert_eq!(s.exact("a", "ex.org").unwrap().len(), 1);

    // Lost in the middle: later statements fail too, until rollback.
    s.begin().unwrap();
    s.insert(&mailbox("lost2", "ex.org")).unwrap();
    kill_connections(&db);
    assert!(s.insert(&mailbox("lost3", "ex.org")).is_err());
    assert!(s.insert(&mailbox("lost4", "ex.org")).is_err());
    assert!(s.commit().is_err());
    s.rollback();
    for gone in ["lost2", "lost3", "lost4"] {
        assert!(s.exact(gone, "ex.org").unwrap().is_empty(), "{gone}");
    }
});

pg_test!(a_missing_database_is_unavailable_and_named, |db| {
    let server = postgres_url().expect("postgres");
    let url = with_dbname(&server, "mt_no_such_database");
    let _ = db;
    let e = mailtable_core::store::open(
        &url.parse().unwrap(),
        &mailtable_core::store::OpenOptions {
            access: Access::ReadOnly,
            timeout: SHORT,
        },
    )
    .err()
    .expect("no such database");
    assert!(
        matches!(&e, StoreError::Unavailable(m) if m.contains("\"mt_no_such_database\" does not exist")),
        "{e}"
    );
});

pg_test!(passwords_never_reach_an_error_message, |db| {
    let _ = db;
    let server = postgres_url().expect("postgres");
    let (scheme, rest) = server.split_once("://").expect("URL");
    let Some((user, host)) = rest.split_once('@') else {
        println!("skipped: MAILTABLE_TEST_POSTGRES_URL has no user name to add a password to");
        return;
    };
    let user = user.split(':').next().unwrap_or(user);
    let with_pw = format!("{scheme}://{user}:Sup3r-s3cret@{host}");
    let url = with_dbname(&with_pw, "mt_no_such_database_either");
    for access in [Access::ReadOnly, Access::ReadWrite] {
        let e = mailtable_core::store::open(
            &url.parse().unwrap(),
            &mailtable_core::store::OpenOptions {
                access,
                timeout: SHORT,
            },
        )
        .err()
        .expect("no such database");
        let text = format!("{e} / {e:?}");
        assert!(!text.contains("Sup3r-s3cret"), "{text}");
        assert!(text.contains(&format!("{user}:***@")), "{text}");
    }
});

pg_test!(connections_carry_the_binary_name, |db| {
    // `application_name` lets an admin see who is connected, and the
    // end-to-end test find the table's connection to kill it.
    let mut s = db.init();
    assert!(s.exact("a", "ex.org").unwrap().is_empty());
    let name = db.pg_database().expect("postgres");
    let mut admin = db.pg_admin().expect("postgres");
    let apps: Vec<String> = admin
        .query(
            "SELECT application_name FROM pg_stat_activity WHERE datname = $1",
            &[&name],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(apps.len(), 1, "{apps:?}");
    assert!(apps[0].starts_with("contract"), "{apps:?}");
});

backend_test!(a_whole_table_read_outlasts_the_lookup_bound, |db| {
    // A lookup's bound, far below what reading 400,000 rows takes, and
    // enough for connecting on a busy machine.
    const LOOKUP: Duration = Duration::from_millis(150);
    const ROWS: usize = 400_000;
    drop(db.init());
    let mut raw = db.raw();
    raw.insert_generated(ROWS);
    let mut s = db.try_open(Access::ReadOnly, LOOKUP).unwrap();
    let t = Instant::now();
    assert_eq!(s.list(None).unwrap().len(), ROWS);
    let took = t.elapsed();
    assert!(
        took > LOOKUP,
        "the list took {took:?}: the test proves nothing"
    );
    assert_eq!(s.list(Some("d7.org")).unwrap().len(), ROWS / 100);
    let mut scanned = 0;
    s.scan(None, &mut |_| scanned += 1).unwrap();
    assert_eq!(scanned, ROWS);
    assert_eq!(s.domains().unwrap().len(), 100);
    // Lock waits keep the lookup bound, for a list and for the lookups
    // after one: behind a lock each is an error within seconds, not after
    // the list's ten minutes.
    match db.backend() {
        Backend::Sqlite => raw.exec("BEGIN EXCLUSIVE"),
        Backend::Postgres => raw.exec("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE"),
    }
    let bounded = |what: &str, call: &mut dyn FnMut() -> Result<(), StoreError>| {
        let t = Instant::now();
        let e = call().unwrap_err();
        assert!(matches!(e, StoreError::Unavailable(_)), "{what}: {e}");
        let waited = t.elapsed();
        assert!(
            waited < Duration::from_secs(3),
            "{what} not bounded: {waited:?}"
        );
    };
    bounded("list", &mut || s.list(None).map(|_| ()));
    bounded("scan", &mut || s.scan(None, &mut |_| ()));
    bounded("lookup", &mut || s.exact("u1", "d1.org").map(|_| ()));
    raw.exec("ROLLBACK");
    assert_eq!(s.exact("u1", "d1.org").unwrap().len(), 1);
});

backend_test!(a_held_lock_is_waited_out_once_then_briefly, |db| {
    // A lock held past the timeout (an `ALTER TABLE`, `LOCK TABLE`, a
    // shell left in `BEGIN EXCLUSIVE`) costs the first lookup the whole
    // timeout; the next ones, until one gets through, wait only briefly
    // (smtpd asks five keys per recipient, one at a time: each waiting the
    // timeout held every message 25 s). Once a lookup gets through, a
    // lock is waited for in full again, so a short write never fails one.
    const TIMEOUT: Duration = Duration::from_millis(1000);
    let mut w = db.init();
    insert_all(w.as_mut(), &[mailbox("hugo", "barrera.io")]);
    drop(w);
    let mut s = db.try_open(Access::ReadOnly, TIMEOUT).unwrap();
    let mut lookup = || {
        let t = Instant::now();
        s.begin_lookup();
        let _ = s.change_token();
        let result = s.exact("hugo", "barrera.io").map(|rows| rows.len());
        s.end_lookup();
        (result, t.elapsed())
    };
    assert_eq!(lookup().0.unwrap(), 1);
    let lock = match db.backend() {
        Backend::Sqlite => "BEGIN EXCLUSIVE",
        Backend::Postgres => "BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE",
    };
    let mut raw = db.raw();
    raw.exec(lock);
    let (result, waited) = lookup();
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
    assert!(
        waited >= TIMEOUT / 2,
        "gave up before the timeout: {waited:?}"
    );
    for _ in 0..3 {
        let (result, waited) = lookup();
        assert!(
            matches!(result, Err(StoreError::Unavailable(_))),
            "{result:?}"
        );
        assert!(waited < TIMEOUT / 2, "waited the timeout again: {waited:?}");
    }
    raw.exec("ROLLBACK");
    assert_eq!(lookup().0.unwrap(), 1);
    raw.exec(lock);
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        raw.exec("ROLLBACK");
    });
    let (result, waited) = lookup();
    release.join().unwrap();
    assert_eq!(
        result.unwrap(),
        1,
        "a short lock failed the lookup ({waited:?})"
    );
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
});

/// `url` with `host` put before its own host(s) (a multi-host URL).
fn with_host_first(url: &str, host: &str) -> String {
    let (head, rest) = url.split_once('@').expect("a URL with a user name");
    format!("{head}@{host},{rest}")
}

/// A TCP port that takes connections and never answers (a stopped
/// server, a proxy without a backend), for as long as the guard lives.
struct Silent {
    port: u16,
    _stop: std::sync::mpsc::Sender<()>,
}

fn silent_port() -> Silent {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        // Until the guard is dropped (the channel then disconnects).
        while let Err(std::sync::mpsc::TryRecvError::Empty) = stopped.try_recv() {
            if let Ok((s, _)) = listener.accept() {
                held.push(s);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    Silent { port, _stop: stop }
}

// A host that takes the connection and never answers, listed first, is
// passed over once its own timeout runs out: the next host answers.
// Before, one deadline covered the whole list and the first host used it
// up. With every host silent, the error names each.
pg_test!(a_host_that_never_answers_is_passed_over, |db| {
    let mut w = db.init();
    w.insert(&mailbox("a", "ex.org")).unwrap();
    let silent = silent_port();
    let url = with_host_first(db.url_text(), &format!("127.0.0.1:{}", silent.port));
    let opts = |access| mailtable_core::store::OpenOptions {
        access,
        timeout: SHORT,
    };
    for access in [Access::ReadOnly, Access::ReadWrite] {
        let mut s = mailtable_core::store::open(&url.parse().unwrap(), &opts(access))
            .unwrap_or_else(|e| panic!("{access:?}: {e}"));
        assert_eq!(s.exact("a", "ex.org").unwrap().len(), 1, "{access:?}");
    }
    let other = silent_port();
    let both = format!(
        "postgresql://u@127.0.0.1:{},127.0.0.1:{}/mail?sslmode=disable",
        silent.port, other.port
    );
    let e = mailtable_core::store::open(&both.parse().unwrap(), &opts(Access::ReadOnly))
        .err()
        .expect("no host answers");
    let text = e.to_string();
    for port in [silent.port, other.port] {
        assert!(text.contains(&format!("127.0.0.1:{port}: ")), "{text}");
    }
});

// `target_session_attrs` in the URL picks the daemons' host as libpq
// would, whatever the session is made afterwards: a primary is
// `read-write`, never `read-only`, and a reader's session refuses writes
// either way. (Readers once set read-only at startup, which made every
// server look read-only to that check.)
pg_test!(target_session_attrs_choose_the_readers_host_too, |db| {
    let mut w = db.init();
    w.insert(&mailbox("a", "ex.org")).unwrap();
    let with = |attrs: &str| {
        let url = db.url_text();
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}target_session_attrs={attrs}")
    };
    let opts = mailtable_core::store::OpenOptions {
        access: Access::ReadOnly,
        timeout: SHORT,
    };
    let mut primary = mailtable_core::store::open(&with("read-write").parse().unwrap(), &opts)
        .expect("the primary is read-write");
    assert_eq!(primary.exact("a", "ex.org").unwrap().len(), 1);
    let e = primary.insert(&mailbox("b", "ex.org")).unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e}");
    let standby = mailtable_core::store::open(&with("read-only").parse().unwrap(), &opts)
        .and_then(|mut s| s.exact("a", "ex.org"));
    assert!(
        standby.is_err(),
        "a primary taken for read-only: {standby:?}"
    );
    let e = mailtable_core::store::open(&with("standby").parse().unwrap(), &opts)
        .err()
        .expect("not a value the driver takes");
    assert!(
        e.to_string().contains("target_session_attrs takes any"),
        "{e}"
    );
});
