//! Each `Store` method, on both backends: the same rows in give the same
//! rows out, in the same order, with the same counts.

use mailtable_core::store::{migrate, Access, Delete, Row, SchemaState, StoreError};
use mailtable_core::PasswordHash;
use mailtable_tests::{alias, insert_all, mailbox, Backend, ARTICLE_DDL, ARTICLE_ROWS};

/// Wait until a PostgreSQL reader reads the change stamp again (it reads
/// it at most once per `CHANGE_CHECK`); SQLite checks at every call.
fn settle(db: &mailtable_tests::TestDb) {
    if db.backend() == Backend::Postgres {
        let bound = mailtable_core::store::postgres::CHANGE_CHECK;
        std::thread::sleep(bound + std::time::Duration::from_millis(100));
    }
}

/// `address -> target` of each row, in the order returned.
fn shown(rows: &[Row]) -> Vec<String> {
    rows.iter()
        .map(|r| format!("{} -> {}", r.address(), r.mailbox))
        .collect()
}

fn targets(rows: &[Row]) -> Vec<&str> {
    rows.iter().map(|r| r.mailbox.as_str()).collect()
}

backend_test!(kind_names_the_backend, |db| {
    let s = db.init();
    let want = match db.backend() {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    assert_eq!(s.kind(), want);
});

backend_test!(
    exact_returns_every_row_of_the_address_in_insertion_order,
    |db| {
        let mut s = db.init();
        let mut hugo = mailbox("hugo", "barrera.io");
        hugo.quota = Some("2G".into());
        insert_all(
            s.as_mut(),
            &[
                alias("team", "example.org", "c@x.net"),
                hugo.clone(),
                alias("team", "example.org", "a@x.net"),
                alias("team", "example.org", "b@x.net"),
                alias("teams", "example.org", "z@x.net"),
                alias("team", "example.com", "y@x.net"),
            ],
        );
        let rows = s.exact("team", "example.org").unwrap();
        assert_eq!(targets(&rows), ["c@x.net", "a@x.net", "b@x.net"]);
        assert!(rows
            .iter()
            .all(|r| !r.is_mailbox() && r.active && r.quota.is_none()));
        // Every column comes back as it went in.
        assert_eq!(s.exact("hugo", "barrera.io").unwrap(), vec![hugo]);
        assert!(s.exact("nobody", "example.org").unwrap().is_empty());
        // Exact and case-sensitive: policy lower-cases above the backend.
        assert!(s.exact("Team", "example.org").unwrap().is_empty());
        // `%` and `_` in a key are literal characters, not LIKE wildcards
        // (the article's `LIKE` made `_` a wildcard: a bug).
        assert!(s.exact("te%", "example.org").unwrap().is_empty());
        assert!(s.exact("tea_", "example.org").unwrap().is_empty());
    }
);

backend_test!(wildcards_are_the_rows_with_percent_of_one_domain, |db| {
    let mut s = db.init();
    insert_all(
        s.as_mut(),
        &[
            mailbox("hugo", "example.org"),
            alias("%", "example.org", "hugo@example.org"),
            alias("john_doe", "example.org", "hugo@example.org"),
            alias("sales-%", "example.org", "hugo@example.org"),
            alias("%", "other.org", "x@example.org"),
            alias("%-bounces", "example.org", "hugo@example.org"),
        ],
    );
    let names = |rows: Vec<Row>| rows.into_iter().map(|r| r.username).collect::<Vec<_>>();
    assert_eq!(
        names(s.wildcards("example.org").unwrap()),
        ["%", "sales-%", "%-bounces"]
    );
    assert_eq!(names(s.wildcards("other.org").unwrap()), ["%"]);
    assert!(s.wildcards("none.org").unwrap().is_empty());
});

backend_test!(has_domain_is_exact, |db| {
    let mut s = db.init();
    insert_all(s.as_mut(), &[alias("%", "example.org", "a@b.net")]);
    assert!(s.has_domain("example.org").unwrap());
    assert!(!s.has_domain("example.com").unwrap());
    assert!(!s.has_domain("EXAMPLE.ORG").unwrap());
    assert!(!s.has_domain("org").unwrap());
    assert!(!s.has_domain("").unwrap());
});

backend_test!(reverse_lookups_find_rows_by_target, |db| {
    let mut s = db.init();
    insert_all(
        s.as_mut(),
        &[
            mailbox("hugo", "barrera.io"),
            alias("%", "barrera.io", "hugo@barrera.io"),
            alias("contact", "example.com", "hugo@barrera.io"),
            alias("%", "old.org", "%@barrera.io"),
            alias("x", "y.org", "other@z.org"),
        ],
    );
    assert_eq!(
        shown(&s.targeting("hugo@barrera.io").unwrap()),
        [
            "hugo@barrera.io -> hugo@barrera.io",
            "%@barrera.io -> hugo@barrera.io",
            "contact@example.com -> hugo@barrera.io",
        ]
    );
    // The target is compared as a string: `%` is literal here.
    assert_eq!(
        shown(&s.targeting("%@barrera.io").unwrap()),
        ["%@old.org -> %@barrera.io"]
    );
    assert!(s.targeting("nobody@barrera.io").unwrap().is_empty());
    assert_eq!(
        shown(&s.wildcard_targets().unwrap()),
        ["%@old.org -> %@barrera.io"]
    );
});

backend_test!(list_and_domains_sort_bytewise, |db| {
    let mut s = db.init();
    // Inserted out of order; `x-y.org` sorts before `xa.org` by bytes, after
    // it in a locale that ignores punctuation (en_US): lists must not depend
    // on the database's locale.
    insert_all(
        s.as_mut(),
        &[
            alias("zed", "b.org", "z@x.net"),
            mailbox("alice", "b.org"),
            alias("%", "b.org", "alice@b.org"),
            mailbox("bob", "a.org"),
            alias("sales-%", "b.org", "alice@b.org"),
            alias("alice-2", "b.org", "alice@b.org"),
            alias("alice", "b.org", "copy@x.net"),
            alias("%", "xa.org", "bob@a.org"),
            alias("%", "x-y.org", "bob@a.org"),
        ],
    );
    let all = shown(&s.list(None).unwrap());
    assert_eq!(
        all,
        [
            "bob@a.org -> bob@a.org",
            "%@b.org -> alice@b.org",
            "alice@b.org -> alice@b.org",
            "alice@b.org -> copy@x.net",
            "alice-2@b.org -> alice@b.org",
            "sales-%@b.org -> alice@b.org",
            "zed@b.org -> z@x.net",
            "%@x-y.org -> bob@a.org",
            "%@xa.org -> bob@a.org",
        ]
    );
    assert_eq!(shown(&s.list(Some("b.org")).unwrap()), all[1..7]);
    assert!(s.list(Some("none.org")).unwrap().is_empty());
    // scan is list a row at a time: the same rows, in the same order.
    for domain in [None, Some("b.org"), Some("none.org")] {
        let mut scanned = Vec::new();
        s.scan(domain, &mut |r| scanned.push(r)).unwrap();
        assert_eq!(scanned, s.list(domain).unwrap(), "{domain:?}");
    }
    assert_eq!(
        s.domains().unwrap(),
        ["a.org", "b.org", "x-y.org", "xa.org"]
    );
});

backend_test!(delete_removes_only_the_rows_asked_for, |db| {
    let mut s = db.init();
    insert_all(
        s.as_mut(),
        &[
            mailbox("hugo", "ex.org"),
            alias("hugo", "ex.org", "backup@x.net"),
            alias("team", "ex.org", "a@x.net"),
            alias("team", "ex.org", "b@x.net"),
            alias("team", "ex.org", "c@x.net"),
        ],
    );
    let some = ["a@x.net".to_string(), "c@x.net".into(), "nope@x.net".into()];
    assert_eq!(
        s.delete("team", "ex.org", Delete::Alias(Some(&some)))
            .unwrap(),
        2
    );
    assert_eq!(targets(&s.exact("team", "ex.org").unwrap()), ["b@x.net"]);
    assert_eq!(s.delete("hugo", "ex.org", Delete::Mailbox).unwrap(), 1);
    assert_eq!(
        targets(&s.exact("hugo", "ex.org").unwrap()),
        ["backup@x.net"]
    );
    assert_eq!(s.delete("hugo", "ex.org", Delete::Mailbox).unwrap(), 0);
    assert_eq!(s.delete("hugo", "ex.org", Delete::Alias(None)).unwrap(), 1);
    assert_eq!(s.delete("team", "ex.org", Delete::Alias(None)).unwrap(), 1);
    assert_eq!(
        s.delete("nobody", "ex.org", Delete::Alias(None)).unwrap(),
        0
    );
    assert!(s.list(None).unwrap().is_empty());
});

backend_test!(password_and_active_change_only_the_mailbox_row, |db| {
    let mut s = db.init();
    insert_all(
        s.as_mut(),
        &[
            mailbox("hugo", "ex.org"),
            alias("hugo", "ex.org", "backup@x.net"),
            alias("team", "ex.org", "hugo@ex.org"),
        ],
    );
    let new = PasswordHash::new("{BLF-CRYPT}$2b$04$newnewnewnewnewnewnewu");
    assert_eq!(s.set_password("hugo", "ex.org", &new).unwrap(), 1);
    assert_eq!(s.set_password("team", "ex.org", &new).unwrap(), 0);
    assert_eq!(s.set_password("nobody", "ex.org", &new).unwrap(), 0);
    let rows = s.exact("hugo", "ex.org").unwrap();
    let (mb, al): (Vec<Row>, Vec<Row>) = rows.into_iter().partition(Row::is_mailbox);
    assert_eq!(mb[0].password.as_ref(), Some(&new));
    assert_eq!(al[0].password, None);

    assert_eq!(s.set_active("hugo", "ex.org", false).unwrap(), 1);
    assert_eq!(s.set_active("team", "ex.org", false).unwrap(), 0);
    let active: Vec<(bool, bool)> = s
        .exact("hugo", "ex.org")
        .unwrap()
        .iter()
        .map(|r| (r.is_mailbox(), r.active))
        .collect();
    assert!(active.contains(&(true, false)) && active.contains(&(false, true)));
    assert_eq!(s.set_active("hugo", "ex.org", true).unwrap(), 1);
    assert!(s.exact("hugo", "ex.org").unwrap().iter().all(|r| r.active));
});

backend_test!(quota_and_retarget_change_only_what_they_name, |db| {
    let mut s = db.init();
    insert_all(
        s.as_mut(),
        &[
            mailbox("hugo", "ex.org"),
            alias("hugo", "ex.org", "backup@x.net"),
            alias("team", "ex.org", "hugo@ex.org"),
            alias("team", "ex.org", "ann@x.net"),
            alias("%", "ex.org", "hugo@ex.org"),
        ],
    );
    // The quota of the mailbox row only; `None` clears it.
    assert_eq!(s.set_quota("hugo", "ex.org", Some("2G")).unwrap(), 1);
    assert_eq!(s.set_quota("team", "ex.org", Some("2G")).unwrap(), 0);
    assert_eq!(s.set_quota("nobody", "ex.org", Some("2G")).unwrap(), 0);
    let quotas: Vec<(bool, Option<String>)> = s
        .exact("hugo", "ex.org")
        .unwrap()
        .into_iter()
        .map(|r| (r.is_mailbox(), r.quota))
        .collect();
    assert!(quotas.contains(&(true, Some("2G".into()))), "{quotas:?}");
    assert!(quotas.contains(&(false, None)), "{quotas:?}");
    assert_eq!(s.set_quota("hugo", "ex.org", None).unwrap(), 1);
    assert!(s
        .exact("hugo", "ex.org")
        .unwrap()
        .iter()
        .all(|r| r.quota.is_none()));

    // Alias rows aimed at hugo move to hugh; the mailbox row stays.
    assert_eq!(s.retarget("hugo@ex.org", "hugh@ex.org").unwrap(), 2);
    assert!(s
        .targeting("hugo@ex.org")
        .unwrap()
        .iter()
        .all(Row::is_mailbox));
    // Sorted: an UPDATE moves a PostgreSQL row (see postgres/sql.rs).
    let mut moved = shown(&s.targeting("hugh@ex.org").unwrap());
    moved.sort();
    assert_eq!(
        moved,
        ["%@ex.org -> hugh@ex.org", "team@ex.org -> hugh@ex.org"]
    );
    let mut team = targets(&s.exact("team", "ex.org").unwrap())
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    team.sort();
    assert_eq!(team, ["ann@x.net", "hugh@ex.org"]);
    assert_eq!(s.retarget("nobody@ex.org", "x@ex.org").unwrap(), 0);
});

backend_test!(commit_keeps_and_rollback_drops_the_writes, |db| {
    let mut s = db.init();
    let mut other = db.open(Access::ReadOnly);
    s.begin().unwrap();
    s.insert(&mailbox("a", "ex.org")).unwrap();
    assert_eq!(s.exact("a", "ex.org").unwrap().len(), 1, "own writes");
    assert!(
        other.exact("a", "ex.org").unwrap().is_empty(),
        "not before commit"
    );
    s.commit().unwrap();
    assert_eq!(other.exact("a", "ex.org").unwrap().len(), 1);

    s.begin().unwrap();
    s.insert(&mailbox("b", "ex.org")).unwrap();
    assert_eq!(s.delete("a", "ex.org", Delete::Mailbox).unwrap(), 1);
    s.rollback();
    assert!(s.exact("b", "ex.org").unwrap().is_empty());
    assert_eq!(s.exact("a", "ex.org").unwrap().len(), 1);
    assert_eq!(other.exact("a", "ex.org").unwrap().len(), 1);
    // The store is usable for a next transaction.
    s.begin().unwrap();
    s.insert(&mailbox("c", "ex.org")).unwrap();
    s.commit().unwrap();
    assert_eq!(other.exact("c", "ex.org").unwrap().len(), 1);
});

backend_test!(read_only_access_refuses_writes_and_keeps_reading, |db| {
    let mut s = db.init();
    insert_all(s.as_mut(), &[mailbox("a", "ex.org")]);
    let mut ro = db.open(Access::ReadOnly);
    let e = ro.insert(&mailbox("b", "ex.org")).unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e}");
    let e = ro.delete("a", "ex.org", Delete::Mailbox).unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e}");
    assert_eq!(ro.exact("a", "ex.org").unwrap().len(), 1);
    assert!(ro.exact("b", "ex.org").unwrap().is_empty());
});

backend_test!(reopen_keeps_serving, |db| {
    let mut s = db.init();
    insert_all(s.as_mut(), &[mailbox("a", "ex.org")]);
    let mut ro = db.open(Access::ReadOnly);
    assert_eq!(ro.exact("a", "ex.org").unwrap().len(), 1);
    ro.reopen().unwrap();
    assert_eq!(ro.exact("a", "ex.org").unwrap().len(), 1);
    s.reopen().unwrap();
    s.insert(&mailbox("b", "ex.org")).unwrap();
    assert_eq!(ro.exact("b", "ex.org").unwrap().len(), 1);
});

backend_test!(optional_columns_are_optional, |db| {
    db.raw().exec(&format!("{ARTICLE_DDL}\n{ARTICLE_ROWS}"));
    let mut s = db.open(Access::ReadWrite);
    // Rows of a table without `active`/`quota` read with the defaults.
    let hugo = s.exact("hugo", "barrera.io").unwrap();
    assert_eq!(hugo.len(), 1);
    assert!(hugo[0].is_mailbox() && hugo[0].active && hugo[0].quota.is_none());
    // Writes that need the columns are refused, the others work.
    s.insert(&mailbox("new", "barrera.io")).unwrap();
    let mut inactive = mailbox("off", "barrera.io");
    inactive.active = false;
    assert!(matches!(s.insert(&inactive), Err(StoreError::Schema(_))));
    let mut quota = mailbox("big", "barrera.io");
    quota.quota = Some("1G".into());
    assert!(matches!(s.insert(&quota), Err(StoreError::Schema(_))));
    assert!(matches!(
        s.set_active("hugo", "barrera.io", false),
        Err(StoreError::Schema(_))
    ));
    // After `migrate` they work.
    migrate::migrate(s.as_mut(), db.dialect(), false).unwrap();
    assert_eq!(s.set_active("hugo", "barrera.io", false).unwrap(), 1);
    s.insert(&quota).unwrap();
    assert_eq!(
        s.exact("big", "barrera.io").unwrap()[0].quota.as_deref(),
        Some("1G")
    );
    assert!(!s.exact("hugo", "barrera.io").unwrap()[0].active);
});

backend_test!(schema_state_follows_each_migration_step, |db| {
    let mut s = db.open(Access::Create);
    assert_eq!(s.schema_state().unwrap(), SchemaState::Empty);
    for step in migrate::steps(db.dialect()) {
        s.apply_migration(step.version, step.sql)
            .unwrap_or_else(|e| panic!("{}: {e}", step.name));
        assert_eq!(
            s.schema_state().unwrap(),
            SchemaState::Version(step.version)
        );
    }
    assert_eq!(
        s.schema_state().unwrap(),
        SchemaState::Version(migrate::LATEST)
    );
});

backend_test!(a_failed_migration_step_changes_nothing, |db| {
    let mut s = db.init();
    insert_all(s.as_mut(), &[mailbox("a", "ex.org")]);
    let bad = "CREATE TABLE half_done (x INTEGER);\n\
               DELETE FROM users;\n\
               INSERT INTO no_such_table VALUES (1);";
    assert!(s.apply_migration(migrate::LATEST + 1, bad).is_err());
    assert_eq!(
        s.schema_state().unwrap(),
        SchemaState::Version(migrate::LATEST)
    );
    assert_eq!(s.list(None).unwrap().len(), 1);
    // `half_done` was rolled back with the rest: creating it works.
    s.apply_migration(migrate::LATEST + 1, "CREATE TABLE half_done (x INTEGER);")
        .unwrap();
    assert_eq!(
        s.schema_state().unwrap(),
        SchemaState::Version(migrate::LATEST + 1)
    );
});

// The answer cache's change token ([`mailtable_core::Store::change_token`]):
// unchanged while nothing is written, changed by a write through another
// store (the CLI) and by a hand edit (the `sqlite3` shell, `psql`), the
// same on every connection. PostgreSQL reads the stamp at most once per
// `CHANGE_CHECK`, the staleness bound it states; SQLite at every call.
backend_test!(
    the_change_token_moves_with_every_write_and_only_then,
    |db| {
        let settle = || settle(&db);
        let mut writer = db.init();
        writer.insert(&mailbox("hugo", "barrera.io")).unwrap();
        let mut reader = db.open(Access::ReadOnly);
        let first = reader.change_token().unwrap().expect("a token");
        settle();
        assert_eq!(
            reader.change_token().unwrap(),
            Some(first),
            "nothing written"
        );
        let mut other = db.open(Access::ReadOnly);
        assert_eq!(
            other.change_token().unwrap(),
            Some(first),
            "another connection"
        );

        writer
            .insert(&alias("info", "barrera.io", "hugo@barrera.io"))
            .unwrap();
        settle();
        let second = reader.change_token().unwrap().expect("a token");
        assert_ne!(second, first, "a write by another store");
        assert_eq!(other.change_token().unwrap(), Some(second));

        db.raw()
            .exec("UPDATE users SET mailbox = 'x@example.net' WHERE username = 'info'");
        settle();
        let third = reader.change_token().unwrap().expect("a token");
        assert_ne!(third, second, "a hand edit");
        settle();
        assert_eq!(
            reader.change_token().unwrap(),
            Some(third),
            "nothing written"
        );
    }
);

// A `users` replaced by a renamed copy (a restore into a new table, then
// `ALTER TABLE ... RENAME`) is a change, and so is every later write to
// the copy: on PostgreSQL the copy has no trigger to move the stamp, so
// the token stops trusting the stamp (and says so in the log) until the
// trigger is back.
backend_test!(
    a_users_table_replaced_by_a_renamed_copy_moves_the_token,
    |db| {
        let settle = || settle(&db);
        let mut writer = db.init();
        writer.insert(&mailbox("hugo", "barrera.io")).unwrap();
        let mut reader = db.open(Access::ReadOnly);
        let first = reader.change_token().unwrap().expect("a token");
        let mut raw = db.raw();
        raw.exec(
            "CREATE TABLE users_copy AS SELECT * FROM users;
             UPDATE users_copy SET mailbox = 'moved@example.net';
             ALTER TABLE users RENAME TO users_before;
             ALTER TABLE users_copy RENAME TO users;",
        );
        settle();
        let second = reader.change_token().unwrap().expect("a token");
        assert_ne!(second, first, "the table replaced");
        raw.exec("UPDATE users SET mailbox = 'again@example.net'");
        settle();
        let third = reader.change_token().unwrap().expect("a token");
        assert_ne!(third, second, "a write to the copy");
        if db.backend() == Backend::Postgres {
            // The trigger back on the copy, by the statement the log
            // gives: the stamp is trusted again, and an unchanged table
            // keeps its token.
            raw.exec(&mailtable_core::store::postgres::recreate_trigger("public"));
            settle();
            let fourth = reader.change_token().unwrap().expect("a token");
            settle();
            assert_eq!(
                reader.change_token().unwrap(),
                Some(fourth),
                "nothing written"
            );
            raw.exec("UPDATE users SET mailbox = 'third@example.net'");
            settle();
            let fifth = reader.change_token().unwrap().expect("a token");
            assert_ne!(fifth, fourth, "a write");
            // A copy given the trigger before it is renamed in: no write
            // moved the stamp, the table's identity moves the token.
            raw.exec(
                "CREATE TABLE users_copy AS SELECT * FROM users;
                 CREATE TRIGGER users_stamp_change AFTER INSERT OR UPDATE OR DELETE OR \
                 TRUNCATE ON users_copy FOR EACH STATEMENT EXECUTE FUNCTION \
                 mailtable_stamp_change();
                 ALTER TABLE users RENAME TO users_second;
                 ALTER TABLE users_copy RENAME TO users;",
            );
            settle();
            let sixth = reader.change_token().unwrap().expect("a token");
            assert_ne!(sixth, fifth, "another table with the trigger");
            settle();
            assert_eq!(
                reader.change_token().unwrap(),
                Some(sixth),
                "nothing written"
            );
        }
    }
);

// The change token without waiting ([`Store::change_token_in_place`], what
// `serve` answers cached lookups with on its async workers): never another
// token than `change_token` gives, and after a write, never the old one.
// SQLite always has it (its file's header); PostgreSQL only the stamp it
// read within `CHANGE_CHECK`, never before it read one.
backend_test!(
    the_change_token_in_place_is_the_change_token_or_none,
    |db| {
        use mailtable_core::store::postgres::CHANGE_CHECK;
        let in_place =
            |s: &mut dyn mailtable_core::Store| s.change_token_in_place().map(|r| r.unwrap());
        let mut writer = db.init();
        writer.insert(&mailbox("hugo", "barrera.io")).unwrap();
        let mut reader = db.open(Access::ReadOnly);
        let sqlite = db.backend() == Backend::Sqlite;
        if !sqlite {
            assert_eq!(in_place(reader.as_mut()), None, "no stamp read yet");
        }
        let first = reader.change_token().unwrap();
        assert!(first.is_some());
        match in_place(reader.as_mut()) {
            Some(token) => assert_eq!(token, first),
            // PostgreSQL, on a machine that stalled past the bound.
            None => assert!(!sqlite, "SQLite always checks in place"),
        }

        writer
            .insert(&alias("info", "barrera.io", "hugo@barrera.io"))
            .unwrap();
        if !sqlite {
            std::thread::sleep(CHANGE_CHECK + std::time::Duration::from_millis(100));
            assert_eq!(in_place(reader.as_mut()), None, "the stamp is too old");
        }
        let second = reader.change_token().unwrap();
        assert_ne!(second, first, "a write by another store");
        if sqlite {
            assert_eq!(in_place(reader.as_mut()), Some(second));
        }
    }
);

// `exact_many`: exactly the rows `exact` gives for each key, in row
// order, and none of the other pairs its query probes (every username
// with every domain of the keys).
backend_test!(exact_many_gives_the_rows_of_each_key_only, |db| {
    let mut s = db.init();
    insert_all(
        s.as_mut(),
        &[
            alias("team", "example.org", "c@x.net"),
            mailbox("hugo", "barrera.io"),
            alias("team", "example.org", "a@x.net"),
            // The cross pairs of the keys below: never returned.
            mailbox("hugo", "example.org"),
            alias("team", "barrera.io", "z@x.net"),
            alias("info", "barrera.io", "hugo@barrera.io"),
        ],
    );
    let keys = [
        ("team", "example.org"),
        ("hugo", "barrera.io"),
        ("nobody", "barrera.io"),
    ];
    let many = s.exact_many(&keys).unwrap();
    let mut one_by_one = Vec::new();
    for (u, d) in keys {
        one_by_one.extend(s.exact(u, d).unwrap());
    }
    let mut sorted = shown(&one_by_one);
    sorted.sort();
    let mut got = shown(&many);
    got.sort();
    assert_eq!(got, sorted);
    // Row order within a key is insertion order, as `exact` gives it.
    let team: Vec<&str> = many
        .iter()
        .filter(|r| r.username == "team")
        .map(|r| r.mailbox.as_str())
        .collect();
    assert_eq!(team, ["c@x.net", "a@x.net"]);
    assert!(s.exact_many(&[]).unwrap().is_empty());
});

/// `exact_joined` against `exact`: the key's rows as `exact` gives them,
/// and, where the backend joins (PostgreSQL), for each target key probed
/// (as `target_key` computes it from the stored text) exactly `exact`'s
/// rows of that key, listed once; where it does not, no target.
fn assert_joined_is_exact(s: &mut dyn mailtable_core::Store, username: &str, domain: &str) {
    let joined = s.exact_joined(username, domain).unwrap();
    let exact = s.exact(username, domain).unwrap();
    assert_eq!(shown(&joined.rows), shown(&exact), "{username}@{domain}");
    let joins = s.kind() == "postgres";
    let mut want: Vec<(String, String)> = Vec::new();
    for r in exact.iter().filter(|_| joins) {
        if let Some(k) = mailtable_core::store::target_key(r, username) {
            if !want.contains(&k) {
                want.push(k);
            }
        }
    }
    let probed: Vec<(String, String)> = joined.targets.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(probed, want, "{username}@{domain}");
    for ((u, d), rows) in &joined.targets {
        assert_eq!(
            shown(rows),
            shown(&s.exact(u, d).unwrap()),
            "{username}@{domain}: target {u}@{d}"
        );
    }
}

// `exact_joined`: an alias and its targets' rows in one query where the
// backend joins (PostgreSQL), the key's rows alone where it does not
// (SQLite: sqlite.rs says why). Targets of every shape: a mailbox, a
// mailbox with a second row, a tagged and an upper-case target (probed as
// stored, found nothing), a `%` target (the username put in), a target
// without `@`, a key given twice, and an external address; a mailbox row
// probes nothing.
backend_test!(
    exact_joined_gives_the_rows_of_the_key_and_of_its_targets,
    |db| {
        let mut s = db.init();
        insert_all(
            s.as_mut(),
            &[
                alias("team", "example.org", "a@x.net"),
                alias("team", "example.org", "b+tag@x.net"),
                alias("team", "example.org", "Hugo@Barrera.io"),
                alias("team", "example.org", "%-desk@example.org"),
                alias("team", "example.org", "nowhere"),
                alias("team", "example.org", "a@x.net"),
                alias("team", "example.org", "someone@elsewhere.test"),
                mailbox("a", "x.net"),
                alias("a", "x.net", "copy@y.net"),
                mailbox("b", "x.net"),
                mailbox("hugo", "barrera.io"),
                alias("team-desk", "example.org", "z@y.net"),
                alias("team-desk", "example.org", "a@x.net"),
            ],
        );
        let joined = s.exact_joined("team", "example.org").unwrap();
        let probed: Vec<String> = joined
            .targets
            .iter()
            .map(|((u, d), rows)| format!("{u}@{d}: {}", rows.len()))
            .collect();
        let want: &[&str] = match db.backend() {
            Backend::Postgres => &[
                "a@x.net: 2",
                "b+tag@x.net: 0",
                "Hugo@Barrera.io: 0",
                "team-desk@example.org: 2",
                "someone@elsewhere.test: 0",
            ],
            Backend::Sqlite => &[],
        };
        assert_eq!(probed, want);
        for (u, d) in [
            ("team", "example.org"),
            ("a", "x.net"),
            ("team-desk", "example.org"),
            ("hugo", "barrera.io"),
            ("nobody", "example.org"),
        ] {
            assert_joined_is_exact(s.as_mut(), u, d);
        }
        // A mailbox row delivers to itself: nothing probed.
        assert_eq!(
            s.exact_joined("hugo", "barrera.io").unwrap().targets,
            Vec::new()
        );
    }
);

// The join on the article's own table, without the optional columns.
backend_test!(exact_joined_reads_the_article_table, |db| {
    db.raw().exec(&format!("{ARTICLE_DDL}\n{ARTICLE_ROWS}"));
    let mut s = db.open(Access::ReadOnly);
    let joined = s.exact_joined("contact", "example.com").unwrap();
    assert_eq!(
        shown(&joined.rows),
        ["contact@example.com -> hugo@barrera.io"]
    );
    if db.backend() == Backend::Postgres {
        assert_eq!(joined.targets.len(), 1);
        let ((u, d), rows) = &joined.targets[0];
        assert_eq!((u.as_str(), d.as_str()), ("hugo", "barrera.io"));
        assert!(rows.len() == 1 && rows[0].is_mailbox() && rows[0].active);
    }
    assert_joined_is_exact(s.as_mut(), "contact", "example.com");
});

/// Rows in `users` of the database behind `client`.
fn count_users(client: &mut postgres::Client) -> i64 {
    client
        .query_one("SELECT count(*) FROM users", &[])
        .unwrap()
        .get(0)
}

// A logical-replication subscriber (a second site's database fed by
// `CREATE SUBSCRIPTION`): its apply worker fires row triggers only, never
// the statement trigger that moves the stamp (enabled ALWAYS or not), so
// the daemons kept serving what they had cached. A subscribed `users` is
// read as having no stamp (answers reused for at most the bound, with a
// warning); once no subscription writes it, the stamp is trusted again.
pg_test!(
    a_logical_replication_subscriber_sees_replicated_changes,
    |db| {
        let mut writer = db.init();
        writer.insert(&mailbox("hugo", "barrera.io")).unwrap();
        drop(writer);
        let server = mailtable_tests::postgres_url().expect("postgres");
        // Short: PostgreSQL cuts names at 63 bytes, and this test's own
        // database name is that long already.
        let publisher = format!("mtpub_{}", std::process::id());
        let mut admin = db.pg_admin().expect("postgres");
        for sql in [
            format!("DROP DATABASE IF EXISTS \"{publisher}\" WITH (FORCE)"),
            format!("CREATE DATABASE \"{publisher}\""),
        ] {
            admin.batch_execute(&sql).unwrap();
        }
        let pub_url = mailtable_tests::with_dbname(&server, &publisher);
        let mut publ = mailtable_tests::pg_client(&pub_url);
        let slot = format!("s{}", std::process::id());
        publ.batch_execute(
            "CREATE TABLE users (username TEXT NOT NULL, domain TEXT NOT NULL, mailbox TEXT NOT \
         NULL, password TEXT NULL, active INTEGER NOT NULL DEFAULT 1, quota TEXT NULL);
         ALTER TABLE users REPLICA IDENTITY FULL;
         INSERT INTO users (username, domain, mailbox, password) \
           VALUES ('hugo', 'barrera.io', 'hugo@barrera.io', 'x');
         CREATE PUBLICATION mt_pub FOR TABLE users;",
        )
        .unwrap();
        // Its own transaction: no slot in one that has written.
        publ.batch_execute(&format!(
            "SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')"
        ))
        .unwrap();
        // The same cluster: the slot made above, not by CREATE SUBSCRIPTION
        // (which would wait for itself).
        let conninfo = pub_url.replace('\'', "");
        let mut raw = db.raw();
        raw.exec(&format!(
            "ALTER TABLE users REPLICA IDENTITY FULL;
         CREATE SUBSCRIPTION mt_sub CONNECTION '{conninfo}' PUBLICATION mt_pub \
         WITH (create_slot = false, slot_name = '{slot}', copy_data = false)"
        ));
        let mut sub = mailtable_tests::pg_client(db.url_text());
        let replicated = |sub: &mut postgres::Client, want: i64| {
            let t = std::time::Instant::now();
            while count_users(sub) != want {
                assert!(
                    t.elapsed() < std::time::Duration::from_secs(30),
                    "replication stalled"
                );
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        };
        let mut reader = db.open(Access::ReadOnly);
        for round in [
            "the trigger as migrate makes it",
            "the trigger enabled ALWAYS (fires no statement trigger either)",
        ] {
            let before = reader.change_token().unwrap().expect("a token");
            let n = count_users(&mut sub);
            publ.batch_execute(&format!(
                "INSERT INTO users (username, domain, mailbox, password) \
             VALUES ('r{n}', 'barrera.io', 'hugo@barrera.io', NULL)"
            ))
            .unwrap();
            replicated(&mut sub, n + 1);
            settle(&db);
            let after = reader.change_token().unwrap().expect("a token");
            assert_ne!(after, before, "{round}: a replicated insert");
            assert_eq!(
                reader.exact(&format!("r{n}"), "barrera.io").unwrap().len(),
                1,
                "{round}"
            );
            // A replicated change of a row (a password, a disabled login).
            let before = reader.change_token().unwrap().expect("a token");
            publ.batch_execute(&format!(
                "UPDATE users SET mailbox = 'moved{n}@example.net' WHERE username = 'r{n}'"
            ))
            .unwrap();
            let t = std::time::Instant::now();
            while reader.exact(&format!("r{n}"), "barrera.io").unwrap()[0].mailbox
                != format!("moved{n}@example.net")
            {
                assert!(t.elapsed() < std::time::Duration::from_secs(30), "{round}");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            settle(&db);
            let after = reader.change_token().unwrap().expect("a token");
            assert_ne!(after, before, "{round}: a replicated update");
            raw.exec("ALTER TABLE users ENABLE ALWAYS TRIGGER users_stamp_change");
        }
        // No subscription writes it any more: the stamp is trusted again,
        // nothing written, the token stays.
        raw.exec("ALTER TABLE users ENABLE TRIGGER users_stamp_change");
        raw.exec("DROP SUBSCRIPTION mt_sub");
        settle(&db);
        let still = reader.change_token().unwrap().expect("a token");
        settle(&db);
        assert_eq!(
            reader.change_token().unwrap(),
            Some(still),
            "nothing written"
        );
        drop(reader);
        drop(publ);
        admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{publisher}\" WITH (FORCE)"
            ))
            .unwrap();
    }
);

// Another writer whose search_path lacks the tables' schema (a tool that
// sets its own, a session on another schema writing `public.users`): its
// writes go through, and move the stamp. Schema 3's trigger named the
// stamp table through the writer's search_path and refused them.
pg_test!(a_writer_on_another_search_path_moves_the_stamp, |db| {
    let mut writer = db.init();
    writer.insert(&mailbox("hugo", "barrera.io")).unwrap();
    drop(writer);
    let mut reader = db.open(Access::ReadOnly);
    let first = reader.change_token().unwrap().expect("a token");
    let schema = db.raw().strings("SELECT current_schema()::text");
    db.raw().exec(&format!(
        "SET search_path = pg_catalog; \
         UPDATE \"{}\".users SET mailbox = 'x@example.net' WHERE username = 'hugo'",
        schema[0]
    ));
    settle(&db);
    let second = reader.change_token().unwrap().expect("a token");
    assert_ne!(second, first, "a write from another search_path");
    settle(&db);
    assert_eq!(reader.change_token().unwrap(), Some(second));
});

// Without a stamp (the trigger disabled, a schema before 3, no SELECT on
// the stamp table) every check gives a token no other check gave, on any
// connection: `serve`'s pool shares one cache, and per-connection
// numbers, each counting from 1, made two connections' tokens equal, so
// answers cached before a change passed for current past the bound.
pg_test!(without_a_stamp_no_two_checks_give_one_token, |db| {
    let mut writer = db.init();
    writer.insert(&mailbox("hugo", "barrera.io")).unwrap();
    drop(writer);
    db.raw()
        .exec("ALTER TABLE users DISABLE TRIGGER users_stamp_change");
    let mut a = db.open(Access::ReadOnly);
    let mut b = db.open(Access::ReadOnly);
    let a1 = a.change_token().unwrap().expect("a token");
    let b1 = b.change_token().unwrap().expect("a token");
    assert_ne!(a1, b1, "the first checks of two connections");
    settle(&db);
    let b2 = b.change_token().unwrap().expect("a token");
    let a2 = a.change_token().unwrap().expect("a token");
    for (x, y) in [(a2, a1), (a2, b1), (b2, a1), (b2, b1), (a2, b2)] {
        assert_ne!(x, y);
    }
});
