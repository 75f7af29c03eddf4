//! `backend_test!`: one body, one test per backend (after ripgrep's
//! `rgtest!` in BurntSushi/ripgrep `tests/macros.rs`).
//!
//! `backend_test!(name, |db| { ... })` expands to a module `name` with the
//! tests `sqlite` and `postgres`, each handing the body a fresh
//! [`mailtable_tests::TestDb`]. Without `MAILTABLE_TEST_POSTGRES_URL` at
//! build time the `postgres` test is `#[ignore]`d, so cargo reports it as
//! skipped; run anyway, it prints one "skipped" line and returns.
//! `pg_test!` is the PostgreSQL-only form.

macro_rules! backend_test {
    ($name:ident, |$db:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[test]
            fn sqlite() {
                let Some($db) = mailtable_tests::TestDb::new(
                    mailtable_tests::Backend::Sqlite,
                    stringify!($name),
                ) else {
                    return;
                };
                $body
            }

            #[test]
            #[cfg_attr(
                not(mailtable_postgres),
                ignore = "skipped: MAILTABLE_TEST_POSTGRES_URL not set"
            )]
            fn postgres() {
                let Some($db) = mailtable_tests::TestDb::new(
                    mailtable_tests::Backend::Postgres,
                    stringify!($name),
                ) else {
                    return;
                };
                $body
            }
        }
    };
}

macro_rules! pg_test {
    ($name:ident, |$db:ident| $body:block) => {
        #[test]
        #[cfg_attr(
            not(mailtable_postgres),
            ignore = "skipped: MAILTABLE_TEST_POSTGRES_URL not set"
        )]
        fn $name() {
            let Some($db) =
                mailtable_tests::TestDb::new(mailtable_tests::Backend::Postgres, stringify!($name))
            else {
                return;
            };
            $body
        }
    };
}
