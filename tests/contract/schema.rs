//! Migrations on both backends: `schema/sqlite/` and `schema/postgres/`
//! really run, adopt the article's hand-made table keeping every row, are
//! idempotent, refuse a newer schema untouched, and leave every lookup an
//! index probe.

use mailtable_core::store::migrate::{self, Report};
use mailtable_core::store::{Access, SchemaState, StoreError};
use mailtable_core::{Address, Destination, Outcome, Resolver};
use mailtable_tests::{alias, insert_all, mailbox, Backend, Raw, ARTICLE_DDL, ARTICLE_ROWS};

/// The mailtable indexes present on `users`.
fn indexes(raw: &mut Raw, backend: Backend) -> Vec<String> {
    let sql = match backend {
        Backend::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'users' \
             AND name LIKE 'users\\_%' ESCAPE '\\' ORDER BY name"
        }
        Backend::Postgres => {
            "SELECT indexname::text FROM pg_indexes WHERE schemaname = current_schema() \
             AND tablename = 'users' ORDER BY indexname"
        }
    };
    raw.strings(sql)
}

const INDEXES: [&str; 4] = [
    "users_domain_username",
    "users_domain_wildcards",
    "users_mailbox",
    "users_wildcard_targets",
];

backend_test!(migrate_adopts_the_article_table_keeping_every_row, |db| {
    db.raw().exec(&format!("{ARTICLE_DDL}\n{ARTICLE_ROWS}"));
    let mut s = db.open(Access::ReadWrite);
    assert_eq!(s.schema_state().unwrap(), SchemaState::Unversioned);
    let before = s.list(None).unwrap();
    assert_eq!(before.len(), 3);
    let report = migrate::migrate(s.as_mut(), db.dialect(), false).unwrap();
    assert_eq!(
        report,
        Report {
            from: 0,
            to: migrate::LATEST,
            applied: vec![
                "0001_users.sql",
                "0002_active_quota.sql",
                "0003_change_counter.sql",
                "0004_stamp_any_search_path.sql",
                "0005_stamp_as_owner.sql"
            ],
        }
    );
    assert_eq!(
        s.schema_state().unwrap(),
        SchemaState::Version(migrate::LATEST)
    );
    // Every row, unchanged (the new columns at their defaults).
    assert_eq!(s.list(None).unwrap(), before);
    assert_eq!(indexes(&mut db.raw(), db.backend()), INDEXES);
    // And every meaning: the article's three lookups.
    let r = Resolver::default();
    for a in [
        "hugo@barrera.io",
        "anything@barrera.io",
        "contact@example.com",
    ] {
        assert_eq!(
            r.resolve(s.as_mut(), &Address::parse(a).unwrap()).unwrap(),
            Outcome::Found(vec![Destination::Mailbox(
                Address::parse("hugo@barrera.io").unwrap()
            )]),
            "{a}"
        );
    }
});

backend_test!(init_twice_changes_nothing, |db| {
    let mut s = db.init();
    insert_all(s.as_mut(), &[mailbox("a", "ex.org")]);
    let again = migrate::migrate(s.as_mut(), db.dialect(), true).unwrap();
    assert!(again.applied.is_empty(), "{again:?}");
    assert_eq!(again.from, migrate::LATEST);
    assert_eq!(s.list(None).unwrap().len(), 1);
    assert_eq!(indexes(&mut db.raw(), db.backend()), INDEXES);
});

backend_test!(migrate_without_a_table_asks_for_init, |db| {
    let mut s = db.open(Access::Create);
    let e = migrate::migrate(s.as_mut(), db.dialect(), false).unwrap_err();
    assert!(
        matches!(&e, StoreError::Schema(m) if m.contains("mailtable init")),
        "{e}"
    );
    assert_eq!(s.schema_state().unwrap(), SchemaState::Empty);
});

backend_test!(a_newer_schema_is_refused_and_left_untouched, |db| {
    let mut s = db.init();
    insert_all(s.as_mut(), &[mailbox("a", "ex.org")]);
    db.raw()
        .exec("DELETE FROM mailtable_schema; INSERT INTO mailtable_schema (version) VALUES (99);");
    assert_eq!(s.schema_state().unwrap(), SchemaState::Version(99));
    for create in [false, true] {
        let e = migrate::migrate(s.as_mut(), db.dialect(), create).unwrap_err();
        assert!(
            matches!(&e, StoreError::Schema(m) if m.contains("newer")),
            "{e}"
        );
    }
    assert_eq!(s.schema_state().unwrap(), SchemaState::Version(99));
    assert_eq!(s.list(None).unwrap().len(), 1);
});

backend_test!(lookups_are_index_probes_on_a_large_table, |db| {
    let mut s = db.init();
    let mut rows = Vec::new();
    for i in 0..4000 {
        let d = format!("d{}.example", i % 200);
        rows.push(mailbox(&format!("user{i}"), &d));
        if i % 10 == 0 {
            rows.push(alias(&format!("alias{i}"), &d, &format!("user{i}@{d}")));
        }
        if i < 200 {
            rows.push(alias("%", &d, &format!("user{i}@{d}")));
        }
    }
    rows.push(alias("%", "old.example", "%@d1.example"));
    insert_all(s.as_mut(), &rows);
    // Planner statistics, as autovacuum (PostgreSQL) or `ANALYZE` would
    // give them: plans must stay index probes with them too.
    db.raw().exec("ANALYZE");
    let plans = db.lookup_plans();
    let names: Vec<&str> = plans.iter().map(|(n, _)| *n).collect();
    let mut want = vec![
        "exact",
        "wildcards",
        "has_domain",
        "targeting",
        "wildcard_targets",
    ];
    // Only PostgreSQL has its own SQL for several keys at once: the join
    // and the `IN` lists (sqlite.rs says why SQLite has neither).
    if db.backend() == Backend::Postgres {
        want.splice(1..1, ["exact_joined", "exact_many"]);
    }
    assert_eq!(names, want);
    for (name, plan) in plans {
        match db.backend() {
            Backend::Sqlite => {
                assert!(
                    plan.contains("USING") && plan.contains("INDEX"),
                    "{name}: {plan}"
                );
                // Every step that reads the table is an index search.
                for step in plan.split(" / ") {
                    assert!(!step.starts_with("SCAN"), "{name}: {plan}");
                }
            }
            Backend::Postgres => {
                assert!(plan.contains("Index"), "{name}: {plan}");
                assert!(!plan.contains("Seq Scan"), "{name}: {plan}");
            }
        }
        println!("{name}: {plan}");
    }
});

backend_test!(a_migration_step_outlasts_the_lookup_bound, |db| {
    // A lookup's bound, far below what building one index over 400,000
    // rows takes, and enough for connecting on a busy machine: a
    // migration is bounded like a whole-table read.
    const LOOKUP: std::time::Duration = std::time::Duration::from_millis(150);
    let mut raw = db.raw();
    raw.exec(ARTICLE_DDL);
    raw.insert_generated(400_000);
    let mut s = db.try_open(Access::ReadWrite, LOOKUP).unwrap();
    let t = std::time::Instant::now();
    let report = migrate::migrate(s.as_mut(), db.dialect(), false).unwrap();
    let took = t.elapsed();
    assert!(
        took > LOOKUP,
        "migrating took {took:?}: the test proves nothing"
    );
    assert_eq!(report.to, migrate::LATEST);
    assert_eq!(indexes(&mut raw, db.backend()), INDEXES);
    assert_eq!(s.exact("u7", "d7.org").unwrap().len(), 1);
});

// A table with one optional column and not the other (made by hand, or a
// column dropped): lookups read the one it has, so a disabled mailbox's
// login stays refused; `migrate` adds the missing one and keeps the data.
backend_test!(
    a_table_with_one_optional_column_reads_it_and_migrates,
    |db| {
        for (present, missing) in [("active", "quota"), ("quota", "active")] {
            db.raw()
                .exec("DROP TABLE IF EXISTS users; DROP TABLE IF EXISTS mailtable_schema;");
            db.raw().exec(&format!("{ARTICLE_DDL}\n{ARTICLE_ROWS}"));
            let add = match present {
                "active" => "ALTER TABLE users ADD COLUMN active INTEGER NOT NULL DEFAULT 1",
                _ => "ALTER TABLE users ADD COLUMN quota TEXT NULL",
            };
            db.raw().exec(add);
            db.raw().exec(match present {
                "active" => "UPDATE users SET active = 0 WHERE username = 'hugo'",
                _ => "UPDATE users SET quota = '2G' WHERE username = 'hugo'",
            });
            for pass in ["before migrate", "after migrate"] {
                let mut s = db.open(Access::ReadWrite);
                let hugo = s.exact("hugo", "barrera.io").unwrap();
                assert_eq!(hugo.len(), 1, "{present}, {pass}");
                match present {
                    "active" => assert!(!hugo[0].active, "{present}, {pass}"),
                    _ => assert_eq!(hugo[0].quota.as_deref(), Some("2G"), "{present}, {pass}"),
                }
                // The join reads it too (the resolver's first probe).
                let joined = s.exact_joined("hugo", "barrera.io").unwrap();
                assert_eq!(joined.rows, hugo, "{present}, {pass}");
                if pass == "before migrate" {
                    let report = migrate::migrate(s.as_mut(), db.dialect(), false)
                        .unwrap_or_else(|e| panic!("{present}: {e}"));
                    assert_eq!(report.to, migrate::LATEST);
                    let cols = db.raw().strings(match db.backend() {
                        mailtable_tests::Backend::Sqlite => {
                            "SELECT name FROM pragma_table_info('users') ORDER BY name"
                        }
                        mailtable_tests::Backend::Postgres => {
                            "SELECT column_name::text FROM information_schema.columns \
                         WHERE table_schema = current_schema() AND table_name = 'users' \
                         ORDER BY column_name"
                        }
                    });
                    assert!(cols.iter().any(|c| c == missing), "{present}: {cols:?}");
                }
            }
        }
    }
);

// A daemon's role as the README grants it (SELECT on `users` and the change
// stamp, nothing on `mailtable_schema`): lookups work, the version is
// "unreadable", not "unversioned" (doctor told such a role to migrate),
// and migrate refuses to guess.
pg_test!(a_role_that_may_not_read_the_version_table_says_so, |db| {
    let mut w = db.init();
    insert_all(w.as_mut(), &[mailbox("hugo", "barrera.io")]);
    drop(w);
    let name = db.pg_database().expect("postgres").to_string();
    let mut raw = db.raw();
    raw.exec(&format!(
        "DROP ROLE IF EXISTS \"{name}_r\"; CREATE ROLE \"{name}_r\" LOGIN; \
         GRANT SELECT ON users, mailtable_changes TO \"{name}_r\""
    ));
    let url = db
        .url_text()
        .replacen("://postgres@", &format!("://{name}_r@"), 1);
    assert_ne!(url, db.url_text(), "the test URL names the postgres user");
    let mut s = mailtable_core::store::open(
        &url.parse().unwrap(),
        &mailtable_core::store::OpenOptions {
            access: Access::ReadOnly,
            timeout: std::time::Duration::from_secs(5),
        },
    )
    .unwrap();
    assert_eq!(s.schema_state().unwrap(), SchemaState::VersionUnreadable);
    assert_eq!(s.exact("hugo", "barrera.io").unwrap().len(), 1);
    // The change stamp (and the catalogs its check reads) are readable:
    // nothing written, the token stays, so answers are reused.
    let token = s.change_token().unwrap();
    std::thread::sleep(
        mailtable_core::store::postgres::CHANGE_CHECK + std::time::Duration::from_millis(100),
    );
    assert_eq!(s.change_token().unwrap(), token);
    let err = migrate::migrate(s.as_mut(), db.dialect(), false).unwrap_err();
    assert!(
        err.to_string().contains("may not read mailtable_schema"),
        "{err}"
    );
    drop(s);
    db.raw().exec(&format!(
        "DROP OWNED BY \"{name}_r\"; DROP ROLE \"{name}_r\""
    ));
});

// A daemon's role with a schema of its own holding a `mailtable_changes`
// (a leftover of an `init` run as that role): the search path finds that
// stamp first, which no trigger moves. Not trusted: the token still moves
// after a write, within CHANGE_CHECK, where it stayed put for good.
pg_test!(a_stamp_table_in_another_schema_is_not_trusted, |db| {
    let mut w = db.init();
    insert_all(w.as_mut(), &[mailbox("hugo", "barrera.io")]);
    drop(w);
    let name = db.pg_database().expect("postgres").to_string();
    let role = format!("{name}_s");
    db.raw().exec(&format!(
        "DROP SCHEMA IF EXISTS \"{role}\" CASCADE; DROP ROLE IF EXISTS \"{role}\";
         CREATE ROLE \"{role}\" LOGIN; GRANT SELECT ON users, mailtable_changes TO \"{role}\";
         CREATE SCHEMA \"{role}\" AUTHORIZATION \"{role}\";
         CREATE TABLE \"{role}\".mailtable_changes (id INTEGER PRIMARY KEY, stamp BIGINT NOT NULL);
         INSERT INTO \"{role}\".mailtable_changes VALUES (1, 0);
         GRANT SELECT ON \"{role}\".mailtable_changes TO \"{role}\";"
    ));
    let url = db
        .url_text()
        .replacen("://postgres@", &format!("://{role}@"), 1);
    let mut s = mailtable_core::store::open(
        &url.parse().unwrap(),
        &mailtable_core::store::OpenOptions {
            access: Access::ReadOnly,
            timeout: std::time::Duration::from_secs(5),
        },
    )
    .unwrap();
    assert_eq!(s.exact("hugo", "barrera.io").unwrap().len(), 1);
    let before = s.change_token().unwrap();
    db.raw()
        .exec("INSERT INTO users VALUES ('ann', 'barrera.io', 'ann@barrera.io', NULL, 1, NULL)");
    std::thread::sleep(
        mailtable_core::store::postgres::CHANGE_CHECK + std::time::Duration::from_millis(100),
    );
    assert_ne!(s.change_token().unwrap(), before, "the write is seen");
    assert_eq!(s.exact("ann", "barrera.io").unwrap().len(), 1);
    drop(s);
    db.raw().exec(&format!(
        "DROP SCHEMA \"{role}\" CASCADE; DROP OWNED BY \"{role}\"; DROP ROLE \"{role}\""
    ));
});

// A quota column made by hand as a number (a byte count, as PostfixAdmin
// keeps it): read as its text, not a failed lookup ("error deserializing
// column"). Accounts then reads the bare number as bytes.
backend_test!(a_numeric_quota_column_is_read_as_text, |db| {
    db.raw().exec(&format!("{ARTICLE_DDL}\n{ARTICLE_ROWS}"));
    db.raw().exec(
        "ALTER TABLE users ADD COLUMN active INTEGER NOT NULL DEFAULT 1;
         ALTER TABLE users ADD COLUMN quota BIGINT NULL;",
    );
    db.raw()
        .exec("UPDATE users SET quota = 1073741824 WHERE username = 'hugo'");
    let mut s = db.open(Access::ReadOnly);
    let hugo = s.exact("hugo", "barrera.io").unwrap();
    assert_eq!(hugo[0].quota.as_deref(), Some("1073741824"));
    let joined = s.exact_joined("hugo", "barrera.io").unwrap();
    assert_eq!(joined.rows, hugo);
    assert_eq!(s.list(None).unwrap().len(), 3);
});

// `migrate` by a role that does not own the tables: the server refuses
// (42501, "must be owner of ..."), which no retry fixes: a schema error
// saying which role to run it as (CLI exit 2), not "database unavailable"
// (exit 75).
pg_test!(
    migrate_by_a_role_that_does_not_own_the_tables_says_so,
    |db| {
        drop(db.init());
        let name = db.pg_database().expect("postgres").to_string();
        db.raw().exec(&format!(
            "DELETE FROM mailtable_schema; INSERT INTO mailtable_schema VALUES (3);
         DROP ROLE IF EXISTS \"{name}_w\"; CREATE ROLE \"{name}_w\" LOGIN;
         GRANT SELECT, INSERT, UPDATE, DELETE ON users, mailtable_changes, mailtable_schema \
         TO \"{name}_w\""
        ));
        let url = db
            .url_text()
            .replacen("://postgres@", &format!("://{name}_w@"), 1);
        let mut s = mailtable_core::store::open(
            &url.parse().unwrap(),
            &mailtable_core::store::OpenOptions {
                access: Access::ReadWrite,
                timeout: std::time::Duration::from_secs(5),
            },
        )
        .unwrap();
        let err = migrate::migrate(s.as_mut(), db.dialect(), false).unwrap_err();
        assert!(matches!(err, StoreError::Schema(_)), "{err:?}");
        assert!(
            err.to_string()
                .contains("run migrate as the role that owns"),
            "{err}"
        );
        drop(s);
        db.raw().exec(&format!(
            "DROP OWNED BY \"{name}_w\"; DROP ROLE \"{name}_w\""
        ));
    }
);
