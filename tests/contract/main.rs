//! The Store contract suite: every test is written once and runs on SQLite
//! and on PostgreSQL (`backend_test!`). Policy lives above the backends, so
//! the two must give the same answers to the same rows; this is where that
//! is checked.
//!
//! Run the PostgreSQL half with a server:
//! `MAILTABLE_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/postgres
//! cargo test -p mailtable-tests` (`tests/e2e/test-postgres.sh` starts a
//! throwaway one). Without it those tests are reported as ignored.

// A test binary: a panic in a helper is a failed test, with its message.
#![allow(clippy::unwrap_used)]

#[macro_use]
mod macros;

/// Failures: locks, timeouts, killed connections, lost transactions.
mod outage;
/// The resolution table of DESIGN.md (shared with the core's unit tests).
mod resolution;
/// Migrations: the article's table, idempotent init, newer versions, indexes.
mod schema;
/// Each Store method, on both backends.
mod store;

use mailtable_tests::{postgres_url, REQUIRE_POSTGRES_VAR, SKIPPED};

/// Says whether the PostgreSQL half ran; fails when it was required
/// (`MAILTABLE_TEST_REQUIRE_POSTGRES=1`, set by the README test command)
/// and could not.
#[test]
fn postgres_half_ran_or_says_it_skipped() {
    if postgres_url().is_some() {
        return;
    }
    println!("{SKIPPED}");
    eprintln!("{SKIPPED}");
    assert!(
        std::env::var(REQUIRE_POSTGRES_VAR).as_deref() != Ok("1"),
        "{REQUIRE_POSTGRES_VAR}=1 but MAILTABLE_TEST_POSTGRES_URL is not set: \
         the PostgreSQL half of the contract suite did not run"
    );
}

/// The PostgreSQL snippet of the README is a valid config with a
/// several-host URL (its password never shown).
#[test]
fn readme_postgres_config_parses() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let section = readme
        .split("### PostgreSQL")
        .nth(1)
        .expect("README has a PostgreSQL section");
    let snippet = section
        .split("```toml\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("a toml block in the PostgreSQL section");
    let config = mailtable_core::Config::parse(snippet).expect("valid config");
    let url = config.database_url().expect("database URL");
    assert!(matches!(
        url,
        mailtable_core::store::DatabaseUrl::Postgres(_)
    ));
    let shown = url.to_string();
    assert!(
        shown.contains("mailer:***@db1.example.net:5432,db2.example.net:5432/mail"),
        "{shown}"
    );
    assert!(!shown.contains("PASSWORD"), "{shown}");
}
