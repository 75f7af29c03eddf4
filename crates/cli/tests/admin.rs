//! The everyday admin commands (quotas, rename, `alias list --to`, `user
//! del` and its dangling aliases, `domain list` counts and `domain del`,
//! `user add --from-file`) through the real binary, each test once on a
//! temporary SQLite file and once on a fresh PostgreSQL database.
//!
//! PostgreSQL follows the suite's convention (tests/harness.rs): the server
//! named by `MAILTABLE_TEST_POSTGRES_URL` (a URL whose user may create
//! databases); without it the PostgreSQL half prints one line saying it
//! skipped, and fails instead when `MAILTABLE_TEST_REQUIRE_POSTGRES=1`.

#![allow(clippy::unwrap_used)]

mod common;

use serde_json::{json, Value};
use std::process::Output;

const BCRYPT: &str = "$2b$04$9rERsNbp0S1V9T8wbr0UXOvPcf.X7zDMJgYH.ZPhHx5wHfXDkBpBi";

/// A database for one test: a SQLite file, or a PostgreSQL database that is
/// dropped afterwards.
enum Where {
    /// Kept for its lifetime: the directory goes when the test ends.
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres {
        server: String,
        name: String,
    },
}

struct Db {
    at: Where,
    url: String,
}

use common::pg_exec;

impl Db {
    fn sqlite() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("mail.db").display());
        let db = Db {
            at: Where::Sqlite(dir),
            url,
        };
        db.ok(&["init"]);
        db
    }

    /// `None` (after one line saying so) without a test server.
    fn postgres(test: &str) -> Option<Db> {
        let server = match std::env::var("MAILTABLE_TEST_POSTGRES_URL") {
            Ok(u) if !u.trim().is_empty() => u,
            _ => {
                assert!(
                    std::env::var("MAILTABLE_TEST_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                    "MAILTABLE_TEST_REQUIRE_POSTGRES=1 but MAILTABLE_TEST_POSTGRES_URL is not set"
                );
                println!("skipped: MAILTABLE_TEST_POSTGRES_URL not set");
                return None;
            }
        };
        let name = format!("mailtable_admin_{test}_{}", std::process::id());
        pg_exec(&server, &format!("DROP DATABASE IF EXISTS {name}"));
        pg_exec(&server, &format!("CREATE DATABASE {name}"));
        let url = common::pg_url_for(&server, &name);
        let db = Db {
            at: Where::Postgres { server, name },
            url,
        };
        db.ok(&["init"]);
        Some(db)
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        common::mailtable(&self.url, args, stdin, None)
    }

    fn ok_in(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        self.ok_in(args, None)
    }

    /// Exit code and stderr of a command expected to fail; checks that it
    /// printed one line and changed nothing.
    fn refused(&self, args: &[&str], stdin: Option<&str>) -> (i32, String) {
        let before = self.snapshot();
        let out = self.run(args, stdin);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{args:?} succeeded");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: one line: {err}"
        );
        assert!(err.starts_with("mailtable: "), "{err}");
        assert_eq!(self.snapshot(), before, "{args:?} changed the database");
        (out.status.code().unwrap(), err)
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }

    fn add_user(&self, addr: &str, extra: &[&str]) {
        let mut args = vec!["user", "add", addr, "--password-stdin"];
        args.extend_from_slice(extra);
        self.ok_in(&args, Some("secret\n"));
    }

    fn destinations(&self, addr: &str) -> Vec<String> {
        let v: Value =
            serde_json::from_slice(&self.run(&["resolve", addr, "--json"], None).stdout).unwrap();
        v["destinations"]
            .as_array()
            .map(|a| a.iter().map(|d| d.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    }

    /// Every row, for "nothing changed".
    fn snapshot(&self) -> (Value, Value) {
        let mut aliases = self.json(&["alias", "list", "--json"]);
        // Sorted: PostgreSQL lists rows of one address in physical order.
        if let Some(a) = aliases.as_array_mut() {
            a.sort_by_key(|v| v.to_string());
        }
        (self.json(&["user", "list", "--json"]), aliases)
    }

    /// Runs `sql` on the database, as another program would.
    fn sql(&self, sql: &str) {
        match &self.at {
            Where::Sqlite(_) => {
                let path = self.url.strip_prefix("sqlite://").unwrap();
                rusqlite::Connection::open(path)
                    .unwrap()
                    .execute_batch(sql)
                    .unwrap();
            }
            Where::Postgres { .. } => pg_exec(&self.url, sql),
        }
    }

    /// `user list --json` as (address, active, quota).
    fn users(&self) -> Vec<(String, bool, Option<String>)> {
        self.json(&["user", "list", "--json"])
            .as_array()
            .unwrap()
            .iter()
            .map(|u| {
                (
                    u["address"].as_str().unwrap().to_string(),
                    u["active"].as_bool().unwrap(),
                    u["quota"].as_str().map(String::from),
                )
            })
            .collect()
    }

    /// `alias list --to ADDRESS --json` as sorted `pattern -> target`.
    fn to(&self, addr: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .json(&["alias", "list", "--to", addr, "--json"])
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                format!(
                    "{} -> {}",
                    r["pattern"].as_str().unwrap(),
                    r["target"].as_str().unwrap()
                )
            })
            .collect();
        v.sort();
        v
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Where::Postgres { server, name } = &self.at {
            let _ = std::panic::catch_unwind(|| {
                pg_exec(
                    server,
                    &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                )
            });
        }
    }
}

/// One body, a `sqlite` and a `postgres` test.
macro_rules! both {
    ($name:ident, |$db:ident| $body:block) => {
        mod $name {
            use super::*;

            fn body($db: Db) $body

            #[test]
            fn sqlite() {
                body(Db::sqlite());
            }

            #[test]
            fn postgres() {
                if let Some(db) = Db::postgres(stringify!($name)) {
                    body(db);
                }
            }
        }
    };
}

// A database without the users table (a wrong path, another program's
// database) is bad input with the fix, exit 2, for reads and writes: not
// a temporary failure (75) a script would retry for ever.
both!(a_database_without_the_users_table, |db| {
    db.sql("DROP TABLE users; DROP TABLE mailtable_schema");
    for (args, stdin) in [
        (&["user", "list"][..], None),
        (&["alias", "list"], None),
        (&["resolve", "a@b.org"], None),
        (
            &["user", "add", "a@b.org", "--password-stdin"],
            Some("secret\n"),
        ),
        (&["alias", "add", "x@b.org", "a@b.org"], None),
        (&["user", "disable", "a@b.org"], None),
    ] {
        let out = db.run(args, stdin);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("has no users table; create it with `mailtable init`"),
            "{args:?}: {err}"
        );
    }
});

// A target written by hand in another spelling (`doctor` flags it and
// advises `alias del` and `alias add`): `alias del` finds it by either
// spelling, and removes that row only.
both!(alias_del_finds_a_hand_written_target, |db| {
    db.add_user("hugo@barrera.io", &[]);
    db.add_user("ann@barrera.io", &[]);
    db.sql(
        "INSERT INTO users (username, domain, mailbox, password) VALUES \
         ('ucase', 'example.com', 'HUGO@Barrera.io', NULL), \
         ('ucase', 'example.com', 'ann@barrera.io', NULL), \
         ('other', 'example.com', 'Ann@BARRERA.io', NULL)",
    );
    let out = db.ok(&["alias", "del", "ucase@example.com", "HUGO@barrera.io"]);
    assert!(
        out.contains("removed 1 row(s) of ucase@example.com"),
        "{out}"
    );
    assert_eq!(db.destinations("ucase@example.com"), ["ann@barrera.io"]);
    let out = db.ok(&["alias", "del", "other@example.com", "ann@barrera.io"]);
    assert!(
        out.contains("removed 1 row(s) of other@example.com"),
        "{out}"
    );
    let (code, err) = db.refused(
        &["alias", "del", "ucase@example.com", "hugo@barrera.io"],
        None,
    );
    assert_eq!(code, 1, "{err}");
});

// Targets named to `alias del` are removed all or none: a mistyped one
// among right ones removed the right ones and exited 0.
both!(alias_del_removes_all_the_targets_named_or_none, |db| {
    db.add_user("hugo@barrera.io", &[]);
    db.add_user("ann@barrera.io", &[]);
    db.ok(&[
        "alias",
        "add",
        "team@barrera.io",
        "ann@barrera.io",
        "hugo@barrera.io",
        "x@ext.example",
    ]);
    let (code, err) = db.refused(
        &[
            "alias",
            "del",
            "team@barrera.io",
            "ann@barrera.io",
            "typo@barrera.io",
        ],
        None,
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("typo@barrera.io is not a target of team@barrera.io; nothing was removed"),
        "{err}"
    );
    let out = db.ok(&[
        "alias",
        "del",
        "team@barrera.io",
        "ann@barrera.io",
        "X@ext.example",
    ]);
    assert!(out.contains("removed 2 row(s) of team@barrera.io"), "{out}");
    assert_eq!(db.destinations("team@barrera.io"), ["hugo@barrera.io"]);
});

// Renaming a mailbox to an address an alias names already (reached
// through a catch-all): the alias keeps one row for it, not two, and the
// note does not suggest an alias to where the mail already goes.
// A wildcard takes over the addresses of its domain that have no rows of
// their own: one that would make an alias that works now loop (mail to it
// deferred for good) is refused, and nothing is written.
both!(a_wildcard_that_breaks_a_working_alias_is_refused, |db| {
    db.add_user("bob@b.org", &[]);
    db.add_user("ann@a.org", &[]);
    db.ok(&["alias", "add", "%@a.org", "ann@a.org"]);
    db.ok(&["alias", "add", "info@b.org", "info@a.org"]);
    let before = db.snapshot();
    let (code, err) = db.refused(&["alias", "add", "info%@a.org", "info%@b.org"], None);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("with info%@a.org, info@a.org (a target of info@b.org)")
            && err.contains("loop"),
        "{err}"
    );
    assert_eq!(db.snapshot(), before);
    assert_eq!(db.destinations("info@b.org"), ["ann@a.org"]);
    // The same through a domain alias: `info@c.org` reaches `info@a.org`.
    db.add_user("cat@c.org", &[]);
    db.ok(&["alias", "del", "info@b.org"]);
    db.ok(&["alias", "add", "%@c.org", "%@a.org"]);
    db.ok(&["alias", "add", "info@b.org", "info@c.org"]);
    assert_eq!(db.destinations("info@b.org"), ["ann@a.org"]);
    let before = db.snapshot();
    let (code, err) = db.refused(&["alias", "add", "info%@a.org", "info%@b.org"], None);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("with info%@a.org, info@c.org (a target of info@b.org)"),
        "{err}"
    );
    assert_eq!(db.snapshot(), before);
    // One that leaves it working is taken.
    db.ok(&["alias", "add", "info%@a.org", "bob@b.org"]);
    assert_eq!(db.destinations("info@b.org"), ["bob@b.org"]);
});

// An alias aimed at a tagged form of the old name (`lists -> ann+lists@`)
// reaches it, so it follows the rename with its tag; with a catch-all in
// the domain, left behind it would silently reach the catch-all's owner.
both!(rename_moves_aliases_to_tagged_forms, |db| {
    db.add_user("ann@a.org", &[]);
    db.add_user("bob@a.org", &[]);
    db.ok(&["alias", "add", "lists@a.org", "ann+lists@a.org"]);
    db.ok(&["alias", "add", "news@a.org", "ann+news@a.org", "bob@a.org"]);
    db.ok(&["alias", "add", "%@a.org", "bob@a.org"]);
    let out = db.ok(&["user", "rename", "ann@a.org", "anna@a.org"]);
    assert!(
        out.contains("repointed 2 alias row(s) from ann@a.org to anna@a.org"),
        "{out}"
    );
    let to = db.to("anna@a.org");
    for row in [
        "lists@a.org -> anna+lists@a.org",
        "news@a.org -> anna+news@a.org",
    ] {
        assert!(to.contains(&row.to_string()), "{row}: {to:?}");
    }
    assert!(db.to("ann@a.org").is_empty());
    assert_eq!(db.destinations("lists@a.org"), ["anna@a.org"]);
    let mut news = db.destinations("news@a.org");
    news.sort();
    assert_eq!(news, ["anna@a.org", "bob@a.org"]);

    // A tagged form with rows of its own goes where they say, not to the
    // mailbox: an alias to it stays as it is.
    db.ok(&["alias", "add", "anna+own@a.org", "ext@x.example"]);
    db.ok(&["alias", "add", "o@a.org", "anna+own@a.org"]);
    db.ok(&["user", "rename", "anna@a.org", "anne@a.org"]);
    assert_eq!(db.destinations("o@a.org"), ["ext@x.example"]);
    assert!(db
        .to("anne@a.org")
        .iter()
        .all(|r| !r.starts_with("o@a.org")));
    db.ok(&["user", "rename", "anne@a.org", "anna@a.org"]);
    db.ok(&["alias", "del", "o@a.org"]);
    db.ok(&["alias", "del", "anna+own@a.org"]);

    // A tag that makes no address on the new name refuses the rename.
    let long = format!("{}@a.org", "x".repeat(60));
    let (code, err) = db.refused(&["user", "rename", "anna@a.org", &long], None);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("lists@a.org -> anna+lists@a.org cannot follow"),
        "{err}"
    );
    assert_eq!(db.destinations("lists@a.org"), ["anna@a.org"]);
});

both!(rename_to_an_address_an_alias_names_keeps_one_row, |db| {
    db.add_user("hugo@barrera.io", &[]);
    db.ok(&["alias", "add", "@barrera.io", "hugo@barrera.io"]);
    db.ok(&[
        "alias",
        "add",
        "team@barrera.io",
        "hugo@barrera.io",
        "hugh@barrera.io",
    ]);
    let out = db.run(
        &["user", "rename", "hugo@barrera.io", "hugh@barrera.io"],
        None,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("mail to hugo@barrera.io still reaches hugh@barrera.io, through a catch-all"),
        "{err}"
    );
    assert!(!err.contains("alias add"), "{err}");
    let team: Vec<Value> = db
        .json(&["alias", "list", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a.to_string().contains("team@barrera.io"))
        .cloned()
        .collect();
    assert_eq!(team.len(), 1, "{team:?}");
    assert_eq!(
        team[0].to_string().matches("hugh@barrera.io").count(),
        1,
        "{team:?}"
    );
    assert_eq!(db.destinations("team@barrera.io"), ["hugh@barrera.io"]);
});

both!(quotas, |db| {
    db.add_user("hugo@barrera.io", &["--quota", "2g"]);
    db.add_user("ann@barrera.io", &[]);
    assert_eq!(
        db.users(),
        [
            ("ann@barrera.io".into(), true, None),
            ("hugo@barrera.io".into(), true, Some("2G".into())),
        ]
    );
    assert!(db
        .ok(&["user", "list"])
        .contains("hugo@barrera.io  quota=2G"));
    assert!(db
        .ok(&["user", "quota", "ann@barrera.io", "500m"])
        .contains("quota of ann@barrera.io set to 500M"));
    db.ok(&["user", "quota", "hugo@barrera.io", "1048576"]);
    assert_eq!(db.users()[1].2.as_deref(), Some("1048576B"));
    db.ok(&["user", "quota", "hugo@barrera.io", "none"]);
    assert_eq!(db.users()[1].2, None);

    let (code, err) = db.refused(&["user", "quota", "ann@barrera.io", "10%"], None);
    assert_eq!(code, 2);
    assert!(err.contains("invalid quota \"10%\""), "{err}");
    let (code, err) = db.refused(&["user", "quota", "nobody@barrera.io", "1G"], None);
    assert_eq!(code, 1);
    assert!(err.contains("nobody@barrera.io has no mailbox"), "{err}");
    // The quota is checked before the password is read or anything written.
    let (code, err) = db.refused(
        &[
            "user",
            "add",
            "bob@barrera.io",
            "--quota",
            "2 G",
            "--password-stdin",
        ],
        Some("secret\n"),
    );
    assert_eq!(code, 2);
    assert!(err.contains("invalid quota \"2 G\""), "{err}");
    // An alias has no quota.
    db.ok(&["alias", "add", "info@barrera.io", "ann@barrera.io"]);
    let (code, _) = db.refused(&["user", "quota", "info@barrera.io", "1G"], None);
    assert_eq!(code, 1);
});

both!(rename_keeps_the_account_and_moves_the_aliases, |db| {
    db.add_user("hugo@barrera.io", &["--quota", "1G"]);
    db.ok(&["user", "disable", "hugo@barrera.io"]);
    db.add_user("ann@barrera.io", &[]);
    db.ok(&[
        "alias",
        "add",
        "info@barrera.io",
        "hugo@barrera.io",
        "ann@barrera.io",
    ]);
    db.ok(&["alias", "add", "%@barrera.io", "hugo@barrera.io"]);
    db.ok(&["alias", "add", "contact@example.com", "hugo@barrera.io"]);

    // A copy of hugo's mail elsewhere: it belongs to the mailbox.
    db.ok(&["alias", "add", "hugo@barrera.io", "backup@elsewhere.net"]);

    let (code, err) = db.refused(
        &["user", "rename", "hugo@barrera.io", "ann@barrera.io"],
        None,
    );
    assert_eq!(code, 2);
    assert!(err.contains("ann@barrera.io already has rows"), "{err}");
    let (code, _) = db.refused(
        &["user", "rename", "nobody@barrera.io", "x@barrera.io"],
        None,
    );
    assert_eq!(code, 1);
    let (code, err) = db.refused(&["user", "rename", "hugo@barrera.io", "bad address"], None);
    assert_eq!(code, 2);
    assert!(err.contains("bad address"), "{err}");

    let out = db.ok(&["user", "rename", "Hugo@Barrera.io", "hugh@example.com"]);
    assert!(
        out.contains("renamed mailbox hugo@barrera.io to hugh@example.com"),
        "{out}"
    );
    assert!(out.contains("repointed 3 alias row(s)"), "{out}");
    assert!(
        out.contains(
            "move the mail store: /var/vmail/barrera.io/hugo -> /var/vmail/example.com/hugh"
        ),
        "{out}"
    );
    // Hash, quota and state kept.
    let users = db.json(&["user", "list", "--json"]);
    let hugh = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["address"] == "hugh@example.com")
        .unwrap();
    assert_eq!(hugh["quota"], "1G");
    assert_eq!(hugh["active"], false);
    assert_eq!(hugh["scheme"], "bcrypt");
    let mut info = db.destinations("info@barrera.io");
    info.sort();
    assert_eq!(
        info,
        ["ann@barrera.io", "backup@elsewhere.net", "hugh@example.com"]
    );
    let mut contact = db.destinations("contact@example.com");
    contact.sort();
    assert_eq!(contact, ["backup@elsewhere.net", "hugh@example.com"]);
    // Without --keep-alias the old name now falls to the catch-all, which
    // follows the mailbox too.
    let mut old = db.destinations("hugo@barrera.io");
    old.sort();
    assert_eq!(old, ["backup@elsewhere.net", "hugh@example.com"]);

    // --keep-alias: the old address stays an alias of the new one.
    db.ok(&[
        "user",
        "rename",
        "ann@barrera.io",
        "anna@barrera.io",
        "--keep-alias",
    ]);
    assert_eq!(db.destinations("ann@barrera.io"), ["anna@barrera.io"]);
    assert_eq!(
        db.to("anna@barrera.io"),
        [
            "ann@barrera.io -> anna@barrera.io",
            "info@barrera.io -> anna@barrera.io"
        ]
    );
});

both!(rename_refuses_what_cannot_follow, |db| {
    // A domain alias reaches hugo through a `%` target: it cannot be
    // repointed, and without --keep-alias its mail would fail.
    db.add_user("hugo@barrera.io", &[]);
    db.ok(&["alias", "add", "%@old.org", "%@barrera.io"]);
    let (code, err) = db.refused(
        &["user", "rename", "hugo@barrera.io", "hugh@barrera.io"],
        None,
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("%@old.org would point to hugo@barrera.io"),
        "{err}"
    );
    db.ok(&[
        "user",
        "rename",
        "hugo@barrera.io",
        "hugh@barrera.io",
        "--keep-alias",
    ]);
    assert_eq!(db.destinations("hugo@old.org"), ["hugh@barrera.io"]);
});

both!(alias_list_to_finds_every_way_in, |db| {
    db.add_user("hugo@barrera.io", &[]);
    db.add_user("ann@barrera.io", &[]);
    db.ok(&[
        "alias",
        "add",
        "info@barrera.io",
        "hugo@barrera.io",
        "ann@barrera.io",
    ]);
    db.ok(&["alias", "add", "team@example.com", "info@barrera.io"]);
    db.ok(&["alias", "add", "sales-%@barrera.io", "hugo@barrera.io"]);
    db.ok(&["alias", "add", "%@barrera.io", "hugo@barrera.io"]);
    db.ok(&["alias", "add", "%@old.org", "%@barrera.io"]);
    db.ok(&["alias", "add", "fwd@example.com", "someone@elsewhere.net"]);
    assert_eq!(
        db.to("hugo@barrera.io"),
        [
            "%@barrera.io -> hugo@barrera.io",
            "%@old.org -> %@barrera.io",
            "info@barrera.io -> hugo@barrera.io",
            "sales-%@barrera.io -> hugo@barrera.io",
            "team@example.com -> info@barrera.io",
        ]
    );
    assert_eq!(
        db.to("someone@elsewhere.net"),
        ["fwd@example.com -> someone@elsewhere.net"]
    );
    let text = db.ok(&[
        "alias",
        "list",
        "--to",
        "ann@barrera.io",
        "--domain",
        "example.com",
    ]);
    assert_eq!(text, "team@example.com -> info@barrera.io  (alias)\n");
    assert_eq!(
        db.json(&["alias", "list", "--to", "nobody@nowhere.net", "--json"]),
        json!([])
    );
    let (code, err) = db.refused(&["alias", "list", "--to", "not-an-address"], None);
    assert_eq!(code, 2);
    assert!(err.contains("not-an-address"), "{err}");
});

// The first row of a domain makes it ours: mail that aliases sent to its
// own servers would then fail (a fixed target there without rows) or be
// refused (a domain alias into it). Every way of adding a row is refused
// without --force, nothing written; an addition that gives the target its
// rows, or a domain already ours, passes.
both!(
    an_addition_that_makes_a_domain_ours_must_not_break_forwards,
    |db| {
        db.add_user("hugo@barrera.io", &[]);
        db.ok(&["alias", "add", "x@barrera.io", "bar@ext.com"]);
        db.ok(&["alias", "add", "%@fwd.org", "%@ext2.com"]);
        let bcrypt = "$2b$04$abcdefghijklmnopqrstuuJ0nMUE6oJ7Vq8yB4vqvZ3.b5D8lEH1e";
        let file = format!("foo@ext.com\t{bcrypt}\n");
        for (args, stdin) in [
            (
                vec!["user", "add", "foo@ext.com", "--password-stdin"],
                "pw\n",
            ),
            (vec!["alias", "add", "info@ext.com", "hugo@barrera.io"], ""),
            (
                vec!["user", "rename", "hugo@barrera.io", "hugo@ext.com"],
                "",
            ),
            (vec!["user", "add", "--from-file", "-"], file.as_str()),
        ] {
            let (code, err) = db.refused(&args, Some(stdin));
            assert_eq!(code, 2, "{args:?}: {err}");
            assert!(
                err.contains("refused: ext.com would become one of our domains")
                    && err.contains("x@barrera.io: mail to x@barrera.io would fail"),
                "{args:?}: {err}"
            );
        }
        // Two new domains, one of them breaking nothing (its forward now
        // reaches the mailbox the file adds): only the other is named.
        db.ok(&["alias", "add", "w@barrera.io", "z@calm.test"]);
        let two = format!("foo@ext.com\t{bcrypt}\nz@calm.test\t{bcrypt}\n");
        let (_, err) = db.refused(&["user", "add", "--from-file", "-"], Some(&two));
        assert!(
            err.contains("refused: ext.com would become one of our domains,"),
            "{err}"
        );
        assert!(!err.contains("calm.test"), "{err}");
        let (_, err) = db.refused(
            &["user", "add", "boss@ext2.com", "--password-stdin"],
            Some("pw\n"),
        );
        assert!(
            err.contains("%@fwd.org: mail to mailtable-alias-check@fwd.org would be refused"),
            "{err}"
        );
        // The target itself: its mail now stays here, as meant.
        db.add_user("bar@ext.com", &[]);
        assert_eq!(db.destinations("x@barrera.io"), vec!["bar@ext.com"]);
        // ext.com is ours now: nothing more to break there.
        db.add_user("foo@ext.com", &[]);
        // Forced: written, with a warning.
        let out = db.run(
            &[
                "user",
                "add",
                "boss@ext2.com",
                "--password-stdin",
                "--force",
            ],
            Some("pw\n"),
        );
        assert!(out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("warning: %@fwd.org: mail to mailtable-alias-check@fwd.org"),
            "{err}"
        );
        assert!(db.destinations("q@fwd.org").is_empty());
    }
);

// A `%` target is stored in the normal form of every other target: the
// domain in IDNA ASCII form without a trailing dot, the local part in
// lower case; so doctor finds nothing hand-written in it, and `alias del`
// with the normal spelling finds it. Errors quote the target as typed.
both!(a_domain_alias_target_is_stored_normalised, |db| {
    db.ok(&["alias", "add", "%@a.org", "Sales-%@MÜNCHEN.de."]);
    let row = db.json(&["alias", "list", "--json"]).to_string();
    assert!(row.contains("sales-%@xn--mnchen-3ya.de"), "{row}");
    db.ok(&["alias", "del", "%@a.org", "sales-%@xn--mnchen-3ya.de"]);
    let (_, err) = db.refused(&["alias", "add", "t@a.org", "b@a.org c@b.org"], None);
    assert!(err.contains("a target holds no blank"), "{err}");
    let (code, err) = db.refused(&["alias", "add", "%@a.org", "%"], None);
    assert_eq!(code, 2);
    assert!(err.contains("invalid target \"%\""), "{err}");
    assert!(!err.contains("\"x\""), "{err}");
});

// `alias list --to` lists the rows aimed at a tagged form of the address
// (their mail reaches it, DESIGN step 2), and what reaches those, as the
// removal guards count them: `user del` names such a row and points here.
both!(alias_list_to_shows_aliases_to_a_tagged_form, |db| {
    db.add_user("hugo@barrera.io", &[]);
    db.ok(&["alias", "add", "x@barrera.io", "hugo+tag@barrera.io"]);
    db.ok(&["alias", "add", "y@example.com", "x@barrera.io"]);
    let (_, err) = db.refused(&["user", "del", "hugo@barrera.io"], None);
    assert!(err.contains("x@barrera.io"), "{err}");
    db.ok(&["alias", "add", "z@barrera.io", "hugo@barrera.io"]);
    let listed: Vec<String> = db
        .json(&["alias", "list", "--to", "hugo@barrera.io", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["pattern"].as_str().unwrap().to_string())
        .collect();
    for want in ["x@barrera.io", "y@example.com", "z@barrera.io"] {
        assert!(listed.iter().any(|l| l == want), "{want}: {listed:?}");
    }
    assert_eq!(listed.len(), 3, "{listed:?}");
});

// What a removal leaves behind is refused or said: a rename that pushes an
// alias it repoints past smtpd's 2047 bytes, a catch-all or the address's
// own forward taking its mail, a domain no longer ours after a wildcard.
both!(removals_say_where_the_mail_goes_now, |db| {
    db.add_user("ann@barrera.io", &[]);
    db.ok(&["alias", "add", "all@barrera.io", "ann@barrera.io"]);
    let many: Vec<String> = (0..75)
        .map(|i| format!("p{i:03}@external-example.com"))
        .collect();
    let mut add = vec!["alias", "add", "all@barrera.io"];
    add.extend(many.iter().map(String::as_str));
    db.ok(&add);
    let long = format!("{}@barrera.io", "a".repeat(64));
    let (code, err) = db.refused(&["user", "rename", "ann@barrera.io", &long], None);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("refused, mail to all@barrera.io would fail"),
        "{err}"
    );
    assert!(err.contains("2047"), "{err}");
    assert_eq!(db.destinations("ann@barrera.io"), ["ann@barrera.io"]);

    // A catch-all takes the old name of a rename.
    db.add_user("boss@example.org", &[]);
    db.add_user("bob@example.org", &[]);
    db.ok(&["alias", "add", "%@example.org", "boss@example.org"]);
    let out = db.run(
        &["user", "rename", "bob@example.org", "robert@example.org"],
        None,
    );
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("note: mail to bob@example.org now goes to boss@example.org (a catch-all"),
        "{err}"
    );
    assert!(
        err.contains("`mailtable alias add bob@example.org robert@example.org`"),
        "{err}"
    );

    // The mailbox's own forward stays after `user del`: said as such.
    db.add_user("cleo@barrera.io", &[]);
    db.ok(&[
        "alias",
        "add",
        "cleo@barrera.io",
        "cleo.private@mail.example",
    ]);
    let out = db.run(&["user", "del", "cleo@barrera.io"], None);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "now goes to cleo.private@mail.example (the alias rows of cleo@barrera.io left \
             beside the mailbox"
        ),
        "{err}"
    );
    assert!(!err.contains("catch-all"), "{err}");

    // A wildcard whose removal leaves its domain without rows: the mail of
    // an alias into it leaves the host, it does not fail.
    db.add_user("someone@barrera.io", &[]);
    db.ok(&["alias", "add", "%@old.example", "%@barrera.io"]);
    db.ok(&["alias", "add", "z@barrera.io", "someone@old.example"]);
    let (code, err) = db.refused(&["alias", "del", "%@old.example"], None);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(
            "z@barrera.io (-> someone@old.example) sends its mail off this host \
             (old.example is no longer ours)"
        ),
        "{err}"
    );
    assert!(!err.contains("points at nothing"), "{err}");
});

/// PostgreSQL roles set up as its manual recommends, each with a schema of
/// its own (the default search_path, `"$user", public`, then puts that
/// schema first): a reader still sees `active` on `public.users` (it saw
/// none, and disabled mailboxes logged in), and a writer granted only
/// `users` may write it (the stamp trigger runs as the tables' owner).
#[test]
fn postgres_roles_with_schemas_of_their_own() {
    let Some(db) = Db::postgres("roles") else {
        return;
    };
    let (server, name) = match &db.at {
        Where::Postgres { server, name } => (server.clone(), name.clone()),
        Where::Sqlite(_) => unreachable!(),
    };
    if !db.url.contains("://postgres@") {
        assert!(
            std::env::var("MAILTABLE_TEST_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "MAILTABLE_TEST_REQUIRE_POSTGRES=1 but the test server's URL names no \
             postgres@ user for this test to swap"
        );
        println!("skipped: the test server's URL names no postgres user to swap");
        return;
    }
    let pid = std::process::id();
    let (reader, writer) = (format!("mt_reader_{pid}"), format!("mt_writer_{pid}"));
    let as_role = |role: &str| db.url.replacen("://postgres@", &format!("://{role}@"), 1);
    pg_exec(
        &server,
        &format!("CREATE ROLE {reader} LOGIN; CREATE ROLE {writer} LOGIN;"),
    );
    let dburl = common::pg_url_for(&server, &name);
    pg_exec(
        &dburl,
        &format!(
            "GRANT SELECT ON users, mailtable_changes TO {reader}; \
             GRANT SELECT, INSERT, UPDATE, DELETE ON users TO {writer}; \
             CREATE SCHEMA {reader} AUTHORIZATION {reader}; \
             CREATE SCHEMA {writer} AUTHORIZATION {writer};"
        ),
    );
    db.add_user("off@barrera.io", &[]);
    db.ok(&["user", "disable", "off@barrera.io"]);

    let out = common::mailtable(
        &as_role(&writer),
        &["user", "add", "new@barrera.io", "--password-stdin"],
        Some("pw\n"),
        None,
    );
    let written = out.status.success();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let out = common::mailtable(&as_role(&reader), &["user", "list", "--json"], None, None);
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    // The function runs as the tables' owner: no other role may attach it
    // to a table of its own (its trigger on a `mailtable_changes` of its
    // own would then run as the owner).
    let attached = common::pg_try(
        &as_role(&writer),
        &format!(
            "CREATE TABLE {writer}.users (username text); \
             CREATE TRIGGER grab AFTER INSERT ON {writer}.users \
             FOR EACH STATEMENT EXECUTE FUNCTION mailtable_stamp_change();"
        ),
    );
    drop(db);
    pg_exec(&server, &format!("DROP ROLE {reader}; DROP ROLE {writer};"));

    assert!(written, "the writer role could not write: {err}");
    let refused = attached.expect_err("another role attached the owner's trigger function");
    assert!(
        refused.contains("permission denied for function"),
        "{refused}"
    );
    let active: Vec<(String, bool)> = listed
        .as_array()
        .expect("the reader lists users")
        .iter()
        .map(|u| {
            (
                u["address"].as_str().unwrap().into(),
                u["active"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        active,
        [
            ("new@barrera.io".to_string(), true),
            ("off@barrera.io".to_string(), false)
        ]
    );
}

both!(a_refusal_names_ten_aliases_and_counts_the_rest, |db| {
    db.add_user("bob@barrera.io", &[]);
    for i in 10..35 {
        db.ok(&[
            "alias",
            "add",
            &format!("b{i}@barrera.io"),
            "bob@barrera.io",
        ]);
    }
    let (code, err) = db.refused(&["user", "del", "bob@barrera.io"], None);
    assert_eq!(code, 2);
    assert!(
        err.contains("refused: b10@barrera.io, b11@barrera.io,"),
        "{err}"
    );
    assert!(
        err.contains("b19@barrera.io and 15 more point(s) to bob@barrera.io"),
        "{err}"
    );
    assert!(!err.contains("b20@barrera.io"), "{err}");
    assert_eq!(db.users().len(), 1);
});

both!(user_del_names_the_aliases_it_would_strand, |db| {
    db.add_user("hugo@barrera.io", &[]);
    db.add_user("ann@barrera.io", &[]);
    db.ok(&[
        "alias",
        "add",
        "info@barrera.io",
        "hugo@barrera.io",
        "ann@barrera.io",
    ]);
    db.ok(&["alias", "add", "team@example.com", "info@barrera.io"]);
    let (code, err) = db.refused(&["user", "del", "hugo@barrera.io"], None);
    assert_eq!(code, 2);
    assert!(
        err.contains("refused: info@barrera.io point(s) to hugo@barrera.io"),
        "{err}"
    );
    assert!(
        !err.contains("team@example.com"),
        "only the direct pointer dangles: {err}"
    );
    let (code, _) = db.refused(&["user", "del", "nobody@barrera.io"], None);
    assert_eq!(code, 1);

    let out = db.run(&["user", "del", "hugo@barrera.io", "--force"], None);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: info@barrera.io still points to hugo@barrera.io"),
        "{err}"
    );
    assert_eq!(db.users().len(), 1);

    // A catch-all takes the address over: nothing dangles, no --force.
    db.ok(&["alias", "del", "info@barrera.io", "hugo@barrera.io"]);
    db.add_user("bob@barrera.io", &[]);
    db.ok(&["alias", "add", "bobby@barrera.io", "bob@barrera.io"]);
    db.ok(&["alias", "add", "%@barrera.io", "ann@barrera.io"]);
    let out = db.run(&["user", "del", "bob@barrera.io"], None);
    assert!(out.status.success());
    // Said, not silent: the catch-all takes bob's mail and bobby's.
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "note: mail to bob@barrera.io, and to the aliases that named it, now goes to \
             ann@barrera.io"
        ),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(db.destinations("bobby@barrera.io"), ["ann@barrera.io"]);

    // A domain alias maps every name: removing one mailbox of its target
    // domain needs no --force (the removed name now fails through it like
    // any unknown name), while a rename would strand it and is refused.
    db.add_user("carl@example.com", &[]);
    db.add_user("dora@example.com", &[]);
    db.ok(&["alias", "add", "%@old.example", "%@example.com"]);
    let (code, err) = db.refused(
        &["user", "rename", "dora@example.com", "dot@example.com"],
        None,
    );
    assert_eq!(code, 2, "{err}");
    db.ok(&["user", "del", "carl@example.com"]);
});

// A removal must not send mail off this host: the last mailbox of a
// domain that a domain alias (or an alias) maps into takes the domain
// out of ours, and its mail would be relayed to that domain's servers.
// Refused; forced, said.
both!(removal_never_sends_mail_off_the_host, |db| {
    db.add_user("ann@tgt.example", &[]);
    db.ok(&["alias", "add", "%@src.example", "%@tgt.example"]);
    db.ok(&["alias", "add", "team@other.example", "ann@tgt.example"]);
    let before = db.snapshot();
    let (code, err) = db.refused(&["user", "del", "ann@tgt.example"], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("%@src.example: mail to ann@src.example would leave this host for ann@tgt.example (tgt.example would no longer be one of our domains)"), "{err}");
    assert!(
        err.contains("team@other.example: mail to team@other.example would leave this host"),
        "{err}"
    );
    assert_eq!(db.snapshot(), before);
    // Its last alias, just as much.
    db.ok(&["alias", "add", "info@tgt2.example", "x@elsewhere.example"]);
    db.ok(&["alias", "add", "%@src2.example", "%@tgt2.example"]);
    let (code, err) = db.refused(&["alias", "del", "info@tgt2.example"], None);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("mail to info@src2.example would leave this host for info@tgt2.example"),
        "{err}"
    );
    // A wildcard: the probe of a domain alias onto it.
    db.ok(&["alias", "add", "%@tgt3.example", "x@elsewhere.example"]);
    db.ok(&["alias", "add", "%@src3.example", "%@tgt3.example"]);
    let (code, err) = db.refused(&["alias", "del", "%@tgt3.example"], None);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(
            "%@src3.example: mail to mailtable-alias-check@src3.example would leave this host"
        ),
        "{err}"
    );
    // A rename to another domain empties tgt.example just as much.
    let before = db.snapshot();
    let (code, err) = db.refused(
        &["user", "rename", "ann@tgt.example", "ann@new.example"],
        None,
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("mail to ann@src.example would leave this host"),
        "{err}"
    );
    assert_eq!(db.snapshot(), before);
    let out = db.run(&["user", "del", "ann@tgt.example", "--force"], None);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("warning: without ann@tgt.example, %@src.example: mail to ann@src.example would leave this host"), "{err}");
    assert_eq!(db.destinations("ann@src.example"), ["ann@tgt.example"]);
});

// An alias to a tagged form of a mailbox (`x@ -> ann+tag@`) reaches the
// mailbox (DESIGN step 2) though no reverse walk finds it by its text:
// removing or renaming the mailbox would leave it failing, so both are
// refused unless forced (rename: unless the old name stays an alias).
both!(removals_see_aliases_to_tagged_forms, |db| {
    db.add_user("ann@a.example", &[]);
    db.add_user("keep@a.example", &[]);
    db.ok(&["alias", "add", "x@b.example", "ann+tag@a.example"]);
    let before = db.snapshot();
    let (code, err) = db.refused(&["user", "del", "ann@a.example"], None);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("x@b.example: mail to x@b.example would fail"),
        "{err}"
    );
    assert_eq!(db.snapshot(), before);
    // A rename takes it along, its tag kept.
    db.ok(&["user", "rename", "ann@a.example", "ann2@a.example"]);
    assert_eq!(db.destinations("x@b.example"), ["ann2@a.example"]);
    assert!(db
        .to("ann2@a.example")
        .contains(&"x@b.example -> ann2+tag@a.example".to_string()));
    // An alias removed with a tagged alias to it: the same.
    db.ok(&["alias", "add", "info@a.example", "keep@a.example"]);
    db.ok(&["alias", "add", "y@b.example", "info+x@a.example"]);
    let (code, err) = db.refused(&["alias", "del", "info@a.example"], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("y@b.example"), "{err}");
});

// Taking one target out of a wildcard alias must not leave a loop: the
// rest of `%@b -> hugo@, %@a` with `%@a -> %@b` loops for every name.
both!(alias_del_never_leaves_a_wildcard_loop, |db| {
    db.add_user("hugo@barrera.io", &[]);
    db.ok(&["alias", "add", "%@a.example", "%@b.example"]);
    db.ok(&[
        "alias",
        "add",
        "%@b.example",
        "hugo@barrera.io",
        "%@a.example",
    ]);
    let before = db.snapshot();
    let (code, err) = db.refused(&["alias", "del", "%@b.example", "hugo@barrera.io"], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("refused: without %@b.example, %@b.example: mail to mailtable-alias-check@b.example would fail (alias loop"), "{err}");
    assert!(
        err.contains("%@a.example: mail to mailtable-alias-check@a.example would fail"),
        "{err}"
    );
    assert_eq!(db.snapshot(), before);
    // Removing what loops is fine.
    db.ok(&["alias", "del", "%@b.example", "%@a.example"]);
});

// `alias del` refuses, as `user del` does, to leave other aliases
// pointing at nothing; a target named twice in `alias add` is one row.
both!(alias_del_never_strands_other_aliases, |db| {
    db.add_user("ann@barrera.io", &[]);
    db.ok(&[
        "alias",
        "add",
        "info@barrera.io",
        "ann@barrera.io",
        "ann@barrera.io",
    ]);
    let rows = db.json(&["alias", "list", "--json"]);
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    db.ok(&["alias", "add", "team@barrera.io", "info@barrera.io"]);
    let before = db.snapshot();
    let (code, err) = db.refused(&["alias", "del", "info@barrera.io"], None);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("refused: team@barrera.io point(s) to info@barrera.io"),
        "{err}"
    );
    assert_eq!(db.snapshot(), before);
    let out = db.run(&["alias", "del", "info@barrera.io", "--force"], None);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: team@barrera.io still points to info@barrera.io"),
        "{err}"
    );
    // A domain alias matches every name, but finds none at its target:
    // it does not stand in for the removed alias.
    db.add_user("bob@y.example", &[]);
    db.ok(&["alias", "add", "%@x.example", "%@y.example"]);
    db.ok(&["alias", "add", "info@x.example", "bob@y.example"]);
    db.ok(&["alias", "add", "team@x.example", "info@x.example"]);
    let (code, err) = db.refused(&["alias", "del", "info@x.example"], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("team@x.example"), "{err}");
    // An alias accepted because a catch-all served its target: removing
    // the catch-all is refused too, and forced, said.
    db.add_user("hugo@z.example", &[]);
    db.ok(&["alias", "add", "@z.example", "hugo@z.example"]);
    db.ok(&["alias", "add", "x@barrera.io", "nosuch@z.example"]);
    db.ok(&["alias", "add", "y@barrera.io", "hugo@z.example"]);
    let before = db.snapshot();
    let (code, err) = db.refused(&["alias", "del", "@z.example"], None);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(
            "refused: without %@z.example, which served them, x@barrera.io \
             (-> nosuch@z.example) points at nothing"
        ),
        "{err}"
    );
    assert!(!err.contains("y@barrera.io"), "{err}");
    assert_eq!(db.snapshot(), before);
    let out = db.run(&["alias", "del", "@z.example", "--force"], None);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "warning: without %@z.example, x@barrera.io (-> nosuch@z.example) points at nothing"
        ),
        "{err}"
    );
    let (code, err) = db.refused(&["alias", "del", "nobody@z.example"], None);
    assert_eq!(
        (code, err.trim()),
        (1, "mailtable: no alias nobody@z.example")
    );
    // An alias of another domain that a domain alias maps to the mailbox
    // (via@ -> bob@old.example, %@old.example -> %@barrera.io): its mail
    // would fail too, so it is named.
    db.add_user("bob@barrera.io", &[]);
    db.ok(&["alias", "add", "%@old.example", "%@barrera.io"]);
    db.ok(&["alias", "add", "via@x.example", "bob@old.example"]);
    let (code, err) = db.refused(&["user", "del", "bob@barrera.io"], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("via@x.example"), "{err}");
    db.ok(&["alias", "del", "via@x.example"]);
    db.ok(&["user", "del", "bob@barrera.io"]);
    // Removing one target of several leaves the alias: nothing dangles.
    db.add_user("bob@barrera.io", &[]);
    db.ok(&[
        "alias",
        "add",
        "info@barrera.io",
        "ann@barrera.io",
        "bob@barrera.io",
    ]);
    db.ok(&["alias", "del", "info@barrera.io", "ann@barrera.io"]);
    assert_eq!(db.destinations("team@barrera.io"), ["bob@barrera.io"]);
});

both!(domains_with_counts_and_removal, |db| {
    db.add_user("hugo@barrera.io", &[]);
    db.add_user("ann@barrera.io", &[]);
    db.ok(&[
        "alias",
        "add",
        "info@barrera.io",
        "hugo@barrera.io",
        "ann@barrera.io",
    ]);
    db.ok(&["alias", "add", "%@barrera.io", "hugo@barrera.io"]);
    db.ok(&["alias", "add", "contact@example.com", "hugo@barrera.io"]);
    assert_eq!(
        db.json(&["domain", "list", "--json"]),
        json!([
            {"domain": "barrera.io", "mailboxes": 2, "aliases": 1, "catch_alls": 1, "rows": 5},
            {"domain": "example.com", "mailboxes": 0, "aliases": 1, "catch_alls": 0, "rows": 1},
        ])
    );
    assert_eq!(
        db.ok(&["domain", "list"]),
        "barrera.io\t2\t1\t1\nexample.com\t0\t1\t0\n"
    );

    let (code, err) = db.refused(&["domain", "del", "barrera.io"], None);
    assert_eq!(code, 2);
    assert!(
        err.contains(
            "barrera.io has 5 row(s): 2 mailbox(es), 1 alias(es), 1 catch-all(s); use --force"
        ),
        "{err}"
    );
    let (code, _) = db.refused(&["domain", "del", "nowhere.org", "--force"], None);
    assert_eq!(code, 1);
    let (code, err) = db.refused(&["domain", "del", "bad..domain"], None);
    assert_eq!(code, 2);
    assert!(err.contains("bad..domain"), "{err}");

    let out = db.run(&["domain", "del", "Barrera.IO", "--force"], None);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("removed domain barrera.io: 5 row(s)"));
    assert!(String::from_utf8_lossy(&out.stderr).contains(
        "warning: contact@example.com -> hugo@barrera.io points into the removed domain"
    ));
    assert_eq!(db.users(), []);
    assert_eq!(db.ok(&["domain", "list"]), "example.com\t0\t1\t0\n");
});

both!(bulk_add_is_all_or_nothing, |db| {
    db.add_user("old@barrera.io", &[]);
    let good = format!(
        "# two mailboxes\nhugo@barrera.io\t{BCRYPT}\n\nann@example.com\t2G\t{{BLF-CRYPT}}{BCRYPT}\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.tsv");
    std::fs::write(&file, &good).unwrap();
    let out = db.ok(&["user", "add", "--from-file", file.to_str().unwrap()]);
    assert!(out.contains("added 2 mailbox(es)"), "{out}");
    assert_eq!(
        db.users(),
        [
            ("hugo@barrera.io".into(), true, None),
            ("old@barrera.io".into(), true, None),
            ("ann@example.com".into(), true, Some("2G".into())),
        ]
    );

    // A cleartext password on line 3: refused with its number, never shown.
    let bad = format!("bob@barrera.io\t{BCRYPT}\n\ncarl@barrera.io\tCorrectHorse9\n");
    let (code, err) = db.refused(&["user", "add", "--from-file", "-"], Some(&bad));
    assert_eq!(code, 2);
    assert!(
        err.contains("stdin: line 3: the last field is not a password hash"),
        "{err}"
    );
    assert!(!err.contains("CorrectHorse9"), "{err}");
    // A mailbox already present on line 2: nothing of line 1 is kept.
    let clash = format!("dan@barrera.io\t{BCRYPT}\nold@barrera.io\t{BCRYPT}\n");
    let (code, err) = db.refused(&["user", "add", "--from-file", "-"], Some(&clash));
    assert_eq!(code, 2);
    assert!(
        err.contains("stdin: line 2: old@barrera.io already has a mailbox"),
        "{err}"
    );
    let (code, err) = db.refused(
        &["user", "add", "--from-file", "-"],
        Some("x@barrera.io\t5Q\t$2b$\n"),
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("line 1: the second field of three is not a quota"),
        "{err}"
    );
    assert!(!err.contains("5Q"), "{err}");
    let (code, err) = db.refused(
        &["user", "add", "--from-file", "/nonexistent/users.tsv"],
        None,
    );
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/users.tsv"), "{err}");
    // --from-file takes no address, password or quota of its own.
    let out = db.run(&["user", "add", "x@barrera.io", "--from-file", "-"], None);
    assert_eq!(out.status.code(), Some(2));
});
