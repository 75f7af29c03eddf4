//! The harness of mailtable's cross-crate tests: one fresh database per test
//! on each backend, opened through `mailtable_core::store::open` exactly as
//! the binaries open it, plus a side door (the native driver) for what the
//! `Store` trait must not offer: hand-made article tables, locks held by
//! another client, killed connections, query plans.
//!
//! - SQLite: a file in a temporary directory.
//! - PostgreSQL: a new database (`CREATE DATABASE`, dropped afterwards) on
//!   the server named by `MAILTABLE_TEST_POSTGRES_URL`, e.g.
//!   `postgresql://postgres@127.0.0.1:5432/postgres` (a URL, not libpq's
//!   key=value form; its user must be allowed to create databases). Without
//!   that variable the PostgreSQL tests are compiled as ignored (see
//!   `build.rs`) and, if run anyway, print one line saying they skipped.
//!
//! A database per test, not a schema per test: the backend's own URL
//! handling, information_schema checks and `current_schema()` are then
//! exercised as in production.

#![deny(missing_docs)]

use mailtable_core::store::migrate::{self, Dialect};
use mailtable_core::store::postgres::PostgresStore;
use mailtable_core::store::sqlite::SqliteStore;
use mailtable_core::store::{self, Access, DatabaseUrl, OpenOptions, Row, Store, StoreError};
use mailtable_core::PasswordHash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The server for the PostgreSQL half of the suite.
pub const POSTGRES_URL_VAR: &str = "MAILTABLE_TEST_POSTGRES_URL";
/// Set to `1` to make a missing [`POSTGRES_URL_VAR`] a failure (CI).
pub const REQUIRE_POSTGRES_VAR: &str = "MAILTABLE_TEST_REQUIRE_POSTGRES";
/// The line a PostgreSQL test prints when it cannot run.
pub const SKIPPED: &str = "skipped: MAILTABLE_TEST_POSTGRES_URL not set";

/// The article's DDL, exactly (issue 2).
pub const ARTICLE_DDL: &str = "CREATE TABLE users (username TEXT NOT NULL, domain TEXT NOT NULL, \
     mailbox TEXT NOT NULL, password TEXT NULL);";
/// The article's three rows (a bcrypt hash stands for its password).
pub const ARTICLE_ROWS: &str = "\
    INSERT INTO users VALUES ('hugo', 'barrera.io', 'hugo@barrera.io', '$2b$04$7uBIAvhsv1Lq9eDbXaDQleAUahS1KVD8zMDEKTT9WwiZiGP2TNGS.');\n\
    INSERT INTO users VALUES ('%', 'barrera.io', 'hugo@barrera.io', NULL);\n\
    INSERT INTO users VALUES ('contact', 'example.com', 'hugo@barrera.io', NULL);";

/// A storage backend under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `SqliteStore` on a temporary file.
    Sqlite,
    /// `PostgresStore` on a fresh database.
    Postgres,
}

/// The PostgreSQL server of the suite, if configured.
pub fn postgres_url() -> Option<String> {
    std::env::var(POSTGRES_URL_VAR)
        .ok()
        .filter(|v| !v.trim().is_empty())
}

/// `url` with its database name replaced by `db` (URL form only).
pub fn with_dbname(url: &str, db: &str) -> String {
    let (scheme, rest) = url
        .split_once("://")
        .unwrap_or_else(|| panic!("{POSTGRES_URL_VAR} must be a postgresql:// URL"));
    let (path, query) = match rest.find('?') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = path.split('/').next().unwrap_or_default();
    format!("{scheme}://{authority}/{db}{query}")
}

/// A connection of the native PostgreSQL driver (the side door).
pub fn pg_client(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls)
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", store::url::redact(url)))
}

/// A mailbox row (`username@domain`, delivering to itself).
pub fn mailbox(username: &str, domain: &str) -> Row {
    Row {
        username: username.into(),
        domain: domain.into(),
        mailbox: format!("{username}@{domain}"),
        password: Some(PasswordHash::new("$2b$04$abcdefghijklmnopqrstuu")),
        active: true,
        quota: None,
    }
}

/// An alias row: `username@domain` -> `target`.
pub fn alias(username: &str, domain: &str, target: &str) -> Row {
    Row {
        username: username.into(),
        domain: domain.into(),
        mailbox: target.into(),
        password: None,
        active: true,
        quota: None,
    }
}

/// Insert `rows` in order, in one transaction.
pub fn insert_all(store: &mut dyn Store, rows: &[Row]) {
    store.begin().expect("begin");
    for r in rows {
        store
            .insert(r)
            .unwrap_or_else(|e| panic!("insert {}: {e}", r.address()));
    }
    store.commit().expect("commit");
}

/// A native connection to a test database, for what the Store must not do.
pub enum Raw {
    /// rusqlite.
    Sqlite(rusqlite::Connection),
    /// postgres (sync).
    Postgres(Box<postgres::Client>),
}

impl Raw {
    /// Run SQL statements (no results).
    pub fn exec(&mut self, sql: &str) {
        match self {
            Raw::Sqlite(c) => c
                .execute_batch(sql)
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
            Raw::Postgres(c) => c
                .batch_execute(sql)
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
        }
    }

    /// Insert `n` mailboxes, `u1@d1.org` to `u{n}@d{n % 100}.org`, in one
    /// statement (a table big enough that reading all of it outlasts a
    /// lookup's bound, in a fraction of a second).
    pub fn insert_generated(&mut self, n: usize) {
        let row =
            "'u' || i, 'd' || (i % 100) || '.org', 'u' || i || '@d' || (i % 100) || '.org', NULL";
        let sql = match self {
            Raw::Sqlite(_) => format!(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) \
                 INSERT INTO users (username, domain, mailbox, password) SELECT {row} FROM n"
            ),
            Raw::Postgres(_) => format!(
                "INSERT INTO users (username, domain, mailbox, password) \
                 SELECT {row} FROM generate_series(1, {n}) AS i"
            ),
        };
        self.exec(&sql);
    }

    /// The first column of every row of `sql`, as text.
    pub fn strings(&mut self, sql: &str) -> Vec<String> {
        match self {
            Raw::Sqlite(c) => {
                let mut st = c.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
                st.query_map([], |r| r.get::<_, String>(0))
                    .and_then(|rows| rows.collect())
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
            }
            Raw::Postgres(c) => c
                .query(sql, &[])
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect(),
        }
    }
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// One test's database.
pub struct TestDb {
    backend: Backend,
    url: String,
    _dir: Option<tempfile::TempDir>,
    /// PostgreSQL: the server URL and this test's database name.
    pg: Option<(String, String)>,
}

impl TestDb {
    /// A fresh, empty database, or `None` (after printing [`SKIPPED`]) when
    /// the backend is not available.
    pub fn new(backend: Backend, test: &str) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let url = format!("sqlite://{}", dir.path().join("mail.db").display());
                Some(TestDb {
                    backend,
                    url,
                    _dir: Some(dir),
                    pg: None,
                })
            }
            Backend::Postgres => {
                let Some(server) = postgres_url() else {
                    println!("{SKIPPED}");
                    return None;
                };
                let n = COUNTER.fetch_add(1, Ordering::Relaxed);
                let tag: String = test
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() {
                            c.to_ascii_lowercase()
                        } else {
                            '_'
                        }
                    })
                    .collect();
                let mut name = format!("mt_{}_{n}_{tag}", std::process::id());
                name.truncate(63);
                let mut admin = pg_client(&server);
                admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .and_then(|()| {
                        admin.batch_execute(&format!(
                            "CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8'"
                        ))
                    })
                    .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
                let url = with_dbname(&server, &name);
                Some(TestDb {
                    backend,
                    url,
                    _dir: None,
                    pg: Some((server, name)),
                })
            }
        }
    }

    /// Which backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The database URL, as a config file would give it.
    pub fn url_text(&self) -> &str {
        &self.url
    }

    /// The parsed URL.
    pub fn url(&self) -> DatabaseUrl {
        self.url.parse().expect("test database URL")
    }

    /// The SQL dialect of the migrations.
    pub fn dialect(&self) -> Dialect {
        match self.backend {
            Backend::Sqlite => Dialect::Sqlite,
            Backend::Postgres => Dialect::Postgres,
        }
    }

    /// PostgreSQL: this test's database name.
    pub fn pg_database(&self) -> Option<&str> {
        self.pg.as_ref().map(|(_, n)| n.as_str())
    }

    /// PostgreSQL: a native connection to the server's admin database (not
    /// the test database), e.g. to kill the store's connections.
    pub fn pg_admin(&self) -> Option<postgres::Client> {
        self.pg.as_ref().map(|(server, _)| pg_client(server))
    }

    /// Open through `store::open`, with `timeout`.
    pub fn try_open(
        &self,
        access: Access,
        timeout: Duration,
    ) -> Result<Box<dyn Store>, StoreError> {
        store::open(&self.url(), &OpenOptions { access, timeout })
    }

    /// Open through `store::open` (5 s timeout); panics on failure.
    pub fn open(&self, access: Access) -> Box<dyn Store> {
        self.try_open(access, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("open {}: {e}", self.url))
    }

    /// What `mailtable init` does: create, migrate to the latest schema;
    /// returns the read-write store.
    pub fn init(&self) -> Box<dyn Store> {
        let mut s = self.open(Access::Create);
        migrate::migrate(s.as_mut(), self.dialect(), true).expect("init migrates");
        s
    }

    /// A native connection to the test database.
    pub fn raw(&self) -> Raw {
        match self.backend {
            Backend::Sqlite => {
                let path = self.url.trim_start_matches("sqlite://");
                let c = rusqlite::Connection::open(path).expect("open sqlite");
                c.busy_timeout(Duration::from_secs(5))
                    .expect("busy_timeout");
                Raw::Sqlite(c)
            }
            Backend::Postgres => Raw::Postgres(Box::new(pg_client(&self.url))),
        }
    }

    /// The query plan of every lookup, by Store method name, from the
    /// backend's own `lookup_plans`.
    pub fn lookup_plans(&self) -> Vec<(&'static str, String)> {
        let opts = OpenOptions {
            access: Access::ReadOnly,
            timeout: Duration::from_secs(5),
        };
        match self.backend {
            Backend::Sqlite => {
                let path = self.url.trim_start_matches("sqlite://");
                SqliteStore::open(path.as_ref(), &opts)
                    .and_then(|mut s| s.lookup_plans())
                    .expect("sqlite plans")
            }
            Backend::Postgres => PostgresStore::open(&self.url, &opts)
                .and_then(|mut s| s.lookup_plans())
                .expect("postgres plans"),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((server, name)) = &self.pg {
            if let Ok(mut admin) = postgres::Client::connect(server, postgres::NoTls) {
                let _ = admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
            }
        }
    }
}
