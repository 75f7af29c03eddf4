//! The built `table-mailtable`, whose lookups skip the change check while
//! the kernel reports nothing about its SQLite file (the watch of
//! `mailtable_core::store::watch`), still answers every lookup from the
//! data as it is: each write by another program, a row added, changed or
//! removed, a backup copied over the file or renamed into its place, is
//! seen by the very next lookup, with `SIGIO` from outside thrown in.
//! Played over a socketpair on fd 0 with the text protocol, as smtpd 7.6
//! does.

use mailtable_core::store::{self, migrate, Access, DatabaseUrl, OpenOptions};
use rusqlite::Connection;
use std::path::Path;
use std::time::Duration;

mod common;
use common::Table;

/// Run `statement` on `db` through a connection of its own, as another
/// program would.
fn sql(db: &Path, statement: &str, params: &[&str]) {
    Connection::open(db)
        .and_then(|c| c.execute(statement, rusqlite::params_from_iter(params)))
        .expect("the write");
}

fn insert(db: &Path, user: &str, mailbox: &str) {
    sql(
        db,
        "INSERT INTO users (username, domain, mailbox, password) VALUES (?1, 'example.org', ?2, NULL)",
        &[user, mailbox],
    );
}

#[test]
fn every_write_is_seen_by_the_very_next_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("mail.db");
    let create = OpenOptions {
        access: Access::Create,
        timeout: Duration::from_secs(2),
    };
    let mut s = store::open(&DatabaseUrl::Sqlite(db.clone()), &create).unwrap();
    migrate::migrate(s.as_mut(), migrate::Dialect::Sqlite, true).unwrap();
    drop(s);
    sql(
        &db,
        "INSERT INTO users (username, domain, mailbox, password) VALUES \
         ('box', 'example.org', 'box@example.org', '{PLAIN}x'), \
         ('other', 'example.org', 'other@example.org', '{PLAIN}x')",
        &[],
    );
    let config = dir.path().join("mailtable.toml");
    std::fs::write(
        &config,
        format!(
            "database = \"sqlite://{}\"\nuid = 5000\ngid = 5000\nhome = \"/var/vmail/%d/%n\"\n",
            db.display()
        ),
    )
    .unwrap();
    let mut t = Table::start(&config);
    let found = t.alias("box@example.org");
    let other = t.alias("other@example.org");
    assert!(found.starts_with("found|"), "{found}");
    assert!(other.starts_with("found|") && other != found, "{other}");

    for i in 0..200 {
        let key = format!("a{i}@example.org");
        // Asked before it exists, so that a stale cache would answer.
        assert_eq!(t.alias(&key), "not-found", "{key} before");
        insert(&db, &format!("a{i}"), "box@example.org");
        assert_eq!(t.alias(&key), found, "{key} after the insert");
        assert_eq!(t.alias(&key), found, "{key} from the cache");
        if i % 3 == 0 {
            sql(
                &db,
                "UPDATE users SET mailbox = 'other@example.org' WHERE username = ?1",
                &[&format!("a{i}")],
            );
            assert_eq!(t.alias(&key), other, "{key} after the update");
        }
        if i % 2 == 0 {
            sql(
                &db,
                "DELETE FROM users WHERE username = ?1",
                &[&format!("a{i}")],
            );
            assert_eq!(t.alias(&key), "not-found", "{key} after the delete");
        }
        if i % 7 == 0 {
            t.signal(libc::SIGIO);
        }
    }

    // A backup with one more row, copied over the file, then renamed in.
    let backup = dir.path().join("backup.db");
    std::fs::copy(&db, &backup).unwrap();
    insert(&backup, "restored", "box@example.org");
    assert_eq!(t.alias("restored@example.org"), "not-found");
    std::fs::copy(&backup, &db).unwrap();
    assert_eq!(t.alias("restored@example.org"), found, "after cp");
    let renamed = dir.path().join("new.db");
    std::fs::copy(&db, &renamed).unwrap();
    insert(&renamed, "renamed", "box@example.org");
    assert_eq!(t.alias("renamed@example.org"), "not-found");
    std::fs::rename(&renamed, &db).unwrap();
    assert_eq!(t.alias("renamed@example.org"), found, "after mv");
    insert(&db, "later", "box@example.org");
    assert_eq!(t.alias("later@example.org"), found, "a write after mv");

    t.end();
}
