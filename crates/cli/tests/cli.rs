//! The real `mailtable` binary against temporary SQLite files: every command,
//! the documented exit codes, and "a refused command changes nothing".

#![allow(clippy::unwrap_used)]

mod common;

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Db {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Db {
    fn new() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail.db");
        Db { _dir: dir, path }
    }

    fn url(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }

    fn run_in(&self, args: &[&str], stdin: Option<&str>) -> Output {
        common::mailtable(&self.url(), args, stdin, None)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run_in(args, None);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn code(&self, args: &[&str]) -> (i32, String) {
        let out = self.run_in(args, None);
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn add_user(&self, addr: &str, pw: &str) {
        let out = self.run_in(
            &["user", "add", addr, "--password-stdin"],
            Some(&format!("{pw}\n")),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }

    fn resolve(&self, addr: &str) -> (String, Vec<String>) {
        let out = self.run_in(&["resolve", addr, "--json"], None);
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{addr}: {}", String::from_utf8_lossy(&out.stderr)));
        let dests = v["destinations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap().to_string())
            .collect();
        (v["result"].as_str().unwrap().to_string(), dests)
    }

    /// Everything in the database, for "nothing changed" checks.
    fn snapshot(&self) -> (Value, Value) {
        (
            self.json(&["user", "list", "--json"]),
            self.json(&["alias", "list", "--json"]),
        )
    }
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn article_db(path: &Path) {
    // The article's exact DDL and its three rows (a bcrypt mailbox, the
    // catch-all of its domain, an alias in another domain).
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(
        "CREATE TABLE users (username TEXT NOT NULL, domain TEXT NOT NULL, mailbox TEXT NOT NULL, password TEXT NULL);
         INSERT INTO users VALUES ('hugo', 'barrera.io', 'hugo@barrera.io', '$2b$04$9rERsNbp0S1V9T8wbr0UXOvPcf.X7zDMJgYH.ZPhHx5wHfXDkBpBi');
         INSERT INTO users VALUES ('%', 'barrera.io', 'hugo@barrera.io', NULL);
         INSERT INTO users VALUES ('contact', 'example.com', 'hugo@barrera.io', NULL);",
    )
    .unwrap();
}

#[test]
fn init_is_idempotent_and_not_world_readable() {
    let db = Db::new();
    assert!(db.ok(&["init"]).contains("schema version 5"));
    assert_eq!(mode(&db.path) & 0o007, 0, "world-readable database");
    assert_eq!(mode(&db.path), 0o640);
    assert!(db.ok(&["init"]).contains("already at schema version 5"));
}

/// `init` by a user who cannot give the file to the daemons' group leaves
/// nothing behind (it used to fail at the end, schema written). Needs
/// root to run the CLI as `nobody`; skipped otherwise.
#[test]
fn init_that_cannot_share_the_file_leaves_nothing() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to run as nobody");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let path = dir.path().join("mail.db");
    let out = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_mailtable"))
        .arg("--database")
        .arg(format!("sqlite://{}", path.display()))
        .args(["init", "--group", "root"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(!path.exists(), "left behind: {err}");
}

/// `init --group NAME` with a group the host lacks creates it (as root)
/// and says so, with the gid: a mistyped group name must not pass
/// unnoticed. Skipped unless root.
#[test]
fn init_says_when_it_creates_the_group() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to create a group");
        return;
    }
    let name = format!("mt-test-{}", std::process::id());
    let db = Db::new();
    let out = db.run_in(&["init", "--group", &name], None);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let group = nix::unistd::Group::from_name(&name).unwrap();
    // Remove the group before asserting, so a failure leaves nothing.
    let _ = Command::new("groupdel").arg(&name).status();
    assert!(out.status.success(), "{err}");
    let gid = group.expect("group created").gid;
    assert!(
        err.contains(&format!("created system group \"{name}\" (gid {gid})")),
        "{err}"
    );
    // An existing group is used silently.
    let again = db.run_in(&["init", "--group", "root"], None);
    assert!(again.status.success());
    assert!(!String::from_utf8_lossy(&again.stderr).contains("created"));
}

#[test]
fn users_lifecycle() {
    let db = Db::new();
    db.ok(&["init"]);
    db.add_user("Hugo@Barrera.IO", "secret");
    let users = db.json(&["user", "list", "--json"]);
    assert_eq!(users[0]["address"], "hugo@barrera.io");
    assert_eq!(users[0]["active"], true);
    db.ok(&["user", "disable", "hugo@barrera.io"]);
    assert_eq!(db.json(&["user", "list", "--json"])[0]["active"], false);
    // Disabled users still receive mail.
    assert_eq!(
        db.resolve("hugo@barrera.io"),
        ("found".into(), vec!["hugo@barrera.io".into()])
    );
    db.ok(&["user", "enable", "hugo@barrera.io"]);
    assert_eq!(db.json(&["user", "list", "--json"])[0]["active"], true);
    // A hash locked by hand (passwd(5)'s `!`) is shown as such.
    assert_eq!(db.json(&["user", "list", "--json"])[0]["locked"], false);
    rusqlite::Connection::open(&db.path)
        .unwrap()
        .execute_batch("UPDATE users SET password = '!' || password")
        .unwrap();
    let listed = db.json(&["user", "list", "--json"]);
    assert_eq!(listed[0]["locked"], true, "{listed}");
    let text = db.ok(&["user", "list"]);
    assert!(
        text.contains("hugo@barrera.io  (password locked)"),
        "{text}"
    );
    let out = db.run_in(
        &["user", "passwd", "hugo@barrera.io", "--password-stdin"],
        Some("new\n"),
    );
    assert!(out.status.success());
    db.ok(&["user", "del", "hugo@barrera.io"]);
    assert_eq!(db.json(&["user", "list", "--json"]), Value::Array(vec![]));
    assert_eq!(db.code(&["user", "del", "hugo@barrera.io"]).0, 1);
    assert_eq!(db.code(&["user", "disable", "nobody@barrera.io"]).0, 1);
    let out = db.run_in(
        &["user", "passwd", "nobody@barrera.io", "--password-stdin"],
        Some("x\n"),
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn hash_prints_a_2b_hash_and_never_takes_argv_passwords() {
    let db = Db::new();
    let out = db.run_in(&["hash", "--password-stdin"], Some("pw\n"));
    let h = String::from_utf8(out.stdout).unwrap();
    assert!(h.starts_with("$2b$10$"), "{h}");
    // No terminal and no --password-stdin: refused, not read from anywhere else.
    assert_eq!(db.code(&["hash"]).0, 2);
}

/// A senders list longer than one imsg reply carries is printed whole,
/// with a warning that smtpd 7.5 and older cannot take it; a shorter one
/// has no warning.
#[test]
fn senders_warns_when_smtpd_7_5_cannot_take_the_list() {
    let db = Db::new();
    db.ok(&["init"]);
    db.add_user("admin@hoster.example", "pw");
    let insert = |from: u32, to: u32| {
        let c = rusqlite::Connection::open(&db.path).unwrap();
        for i in from..to {
            for local in ["postmaster", "abuse"] {
                c.execute(
                    "INSERT INTO users (username, domain, mailbox) VALUES (?1, ?2, ?3)",
                    (
                        local,
                        format!("customer{i}.example"),
                        "admin@hoster.example",
                    ),
                )
                .unwrap();
            }
        }
    };
    // 2 x 250 aliases: about 14.6 KB, under the bound.
    insert(0, 250);
    let out = db.run_in(&["senders", "admin@hoster.example"], None);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 501);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 2 x 300: about 17.5 KB.
    insert(250, 300);
    let out = db.run_in(&["senders", "admin@hoster.example", "--json"], None);
    assert!(out.status.success());
    let list: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.len(), 601);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("over the 16363 one reply carries"), "{err}");
    assert!(err.contains("admin@hoster.example with 421"), "{err}");
}

/// A mailbox written by hand whose delivery user name smtpd cuts at the
/// tag delimiter (`jo+x@`): the algorithm finds the row, but smtpd's
/// lookup gets an error and the mail is deferred. `resolve` reports what
/// smtpd gets: an error, exit 75, no destinations.
#[test]
fn resolve_reports_what_smtpd_gets() {
    let db = Db::new();
    db.ok(&["init"]);
    rusqlite::Connection::open(&db.path)
        .unwrap()
        .execute(
            "INSERT INTO users (username, domain, mailbox, password) \
             VALUES ('jo+x', 'barrera.io', 'jo+x@barrera.io', '$2b$05$abcdefghijklmnopqrstuu')",
            [],
        )
        .unwrap();
    let (code, _) = db.code(&["resolve", "jo+x@barrera.io"]);
    assert_eq!(code, 75);
    let out = db.run_in(&["resolve", "jo+x@barrera.io", "--json"], None);
    assert_eq!(out.status.code(), Some(75));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["result"], "error", "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("tag delimiter"),
        "{v}"
    );
    assert_eq!(v["destinations"], Value::Array(vec![]));
    let text = db.run_in(&["resolve", "jo+x@barrera.io"], None);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("result: error: smtpd's lookup fails"),
        "{text}"
    );
    assert!(!text.contains("result: found"), "{text}");
    // A loop written by hand: the same report, in JSON too (it printed
    // nothing on stdout).
    rusqlite::Connection::open(&db.path)
        .unwrap()
        .execute_batch(
            "INSERT INTO users (username, domain, mailbox) VALUES \
             ('l1', 'barrera.io', 'l2@barrera.io'), ('l2', 'barrera.io', 'l1@barrera.io')",
        )
        .unwrap();
    let out = db.run_in(&["resolve", "l1+x@barrera.io", "--json"], None);
    assert_eq!(out.status.code(), Some(75));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["result"], "error", "{v}");
    assert!(v["error"].as_str().unwrap().contains("loop"), "{v}");
    // smtpd's lookups up to the key answered `error` (they were left out
    // when the walk met a loop or a target without rows).
    let walk = v["smtpd_walk"].as_array().unwrap();
    assert_eq!(walk.len(), 2, "{v}");
    assert_eq!(walk[0]["key"], "l1+x@barrera.io", "{v}");
    assert_eq!(walk[0]["answer"], Value::Null, "{v}");
    assert_eq!(walk[1]["key"], "l1@barrera.io", "{v}");
    assert!(
        walk[1]["error"].as_str().unwrap().contains("alias loop"),
        "{v}"
    );
    let text = db.run_in(&["resolve", "l1+x@barrera.io"], None);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("l1@barrera.io") && text.contains("error: alias loop"),
        "{text}"
    );
}

/// `resolve` names the rows the mail goes by: a pattern whose target has
/// no rows for this address passes it on (smtpd's walk goes on to `@dom`),
/// so the catch-all is the step, and with no catch-all nothing is.
#[test]
fn resolve_names_the_step_that_delivers() {
    let db = Db::new();
    db.ok(&["init"]);
    db.add_user("keep@b.org", "pw");
    db.add_user("boss@a.org", "pw");
    db.ok(&["alias", "add", "%@a.org", "boss@a.org"]);
    db.ok(&["alias", "add", "p-%@a.org", "%@b.org"]);
    let step = |addr: &str| {
        let v = db.json(&["resolve", addr, "--json"]);
        (v["step"].clone(), v["matched"].clone(), v["result"].clone())
    };
    assert_eq!(
        step("p-keep@a.org"),
        (json!(3), json!("p-%@a.org"), json!("found"))
    );
    assert_eq!(
        step("p-nobody@a.org"),
        (json!(4), json!("%@a.org"), json!("found"))
    );
    let text = db.ok(&["resolve", "p-nobody@a.org"]);
    assert!(
        text.contains(
            "step 3: pattern: p-%@a.org -> %@b.org (gives this address no destination: \
             smtpd's walk goes on)\n  step 4: catch-all: %@a.org -> boss@a.org\n"
        ),
        "{text}"
    );
    db.ok(&["alias", "del", "%@a.org"]);
    let out = db.run_in(&["resolve", "p-nobody@a.org", "--json"], None);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["step"].clone(), v["matched"].clone(), v["result"].clone()),
        (Value::Null, Value::Null, json!("not-found"))
    );
}

#[test]
fn resolution_through_the_cli() {
    let db = Db::new();
    db.ok(&["init"]);
    db.add_user("hugo@barrera.io", "pw");
    db.add_user("alice@example.org", "pw");
    db.add_user("bob@example.org", "pw");
    db.add_user("john_doe@example.com", "pw");
    db.ok(&["alias", "add", "@barrera.io", "hugo@barrera.io"]);
    db.ok(&[
        "alias",
        "add",
        "team@example.org",
        "alice@example.org",
        "bob@example.org",
        "carol@elsewhere.net",
    ]);
    db.ok(&["alias", "add", "sales-%@example.org", "bob@example.org"]);
    db.ok(&[
        "alias",
        "add",
        "sales-eu-%@example.org",
        "alice@example.org",
    ]);
    db.ok(&["alias", "add", "%@old.org", "%@example.org"]);
    db.ok(&["alias", "add", "info@example.org", "team@example.org"]);
    let found = |d: &[&str]| {
        (
            "found".to_string(),
            d.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        db.resolve("hugo+news@barrera.io"),
        found(&["hugo@barrera.io"])
    );
    assert_eq!(
        db.resolve("whatever@barrera.io"),
        found(&["hugo@barrera.io"])
    );
    assert_eq!(
        db.resolve("info@example.org"),
        found(&[
            "alice@example.org",
            "bob@example.org",
            "carol@elsewhere.net"
        ])
    );
    assert_eq!(
        db.resolve("sales-eu-fr@example.org"),
        found(&["alice@example.org"])
    );
    assert_eq!(
        db.resolve("sales-x@example.org"),
        found(&["bob@example.org"])
    );
    assert_eq!(db.resolve("bob@old.org"), found(&["bob@example.org"]));
    assert_eq!(
        db.resolve("JOHN_DOE@EXAMPLE.COM"),
        found(&["john_doe@example.com"])
    );
    assert_eq!(
        db.resolve("nobody@example.org"),
        ("not-found".into(), vec![])
    );
    assert_eq!(
        db.resolve("a@nowhere.net"),
        ("unknown-domain".into(), vec![])
    );
    assert_eq!(db.code(&["resolve", "nobody@example.org"]).0, 1);
    let walk = db.json(&["resolve", "john_doe@example.com", "--json"]);
    assert_eq!(
        walk["deliveries"][0]["delivery_user"],
        "john_doe_example.com"
    );
    assert_eq!(
        db.json(&["domain", "list", "--json"])
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["domain"].clone())
            .collect::<Vec<_>>(),
        ["barrera.io", "example.com", "example.org", "old.org"]
    );
    let senders = db.json(&["senders", "alice@example.org", "--json"]);
    // The delivery user name is the same login, as smtpd's table takes it.
    assert_eq!(
        db.json(&["senders", "alice_example.org", "--json"]),
        senders
    );
    for want in [
        "alice@example.org",
        "team@example.org",
        "info@example.org",
        "alice@old.org",
    ] {
        assert!(
            senders.as_array().unwrap().iter().any(|v| v == want),
            "{want}: {senders}"
        );
    }
    db.ok(&["alias", "del", "team@example.org", "carol@elsewhere.net"]);
    assert_eq!(
        db.resolve("team@example.org"),
        found(&["alice@example.org", "bob@example.org"])
    );
}

#[test]
fn targets_may_be_one_comma_separated_list_as_in_smtpds_aliases() {
    let db = Db::new();
    db.ok(&["init"]);
    for u in ["a@barrera.io", "b@barrera.io", "c@barrera.io"] {
        db.add_user(u, "pw");
    }
    // aliases(5) spelling, a list beside a separate argument, a repeat.
    db.ok(&[
        "alias",
        "add",
        "team@barrera.io",
        "a@barrera.io, B@barrera.io,c@barrera.io",
        "b@barrera.io",
    ]);
    let (result, mut dests) = db.resolve("team@barrera.io");
    dests.sort();
    assert_eq!(result, "found");
    assert_eq!(dests, ["a@barrera.io", "b@barrera.io", "c@barrera.io"]);
    db.ok(&[
        "alias",
        "del",
        "team@barrera.io",
        "a@barrera.io,c@barrera.io",
    ]);
    assert_eq!(db.resolve("team@barrera.io").1, ["b@barrera.io"]);
    // An empty piece is a typo, not a target to skip.
    let before = db.snapshot();
    for list in [
        "a@barrera.io,",
        ",a@barrera.io",
        "a@barrera.io,,c@barrera.io",
        " , ",
    ] {
        let (code, err) = db.code(&["alias", "add", "list@barrera.io", list]);
        assert_eq!(code, 2, "{list:?}: {err}");
        assert!(
            err.contains("empty target between commas"),
            "{list:?}: {err}"
        );
    }
    // One empty target without a comma is an address that is not one.
    let (code, err) = db.code(&["alias", "add", "list@barrera.io", " "]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("expected local@domain"), "{err}");
    assert_eq!(db.snapshot(), before);
}

#[test]
fn bad_input_names_the_input_and_changes_nothing() {
    let db = Db::new();
    db.ok(&["init"]);
    db.add_user("hugo@barrera.io", "pw");
    db.add_user("z@example.net", "pw");
    db.ok(&["alias", "add", "@barrera.io", "hugo@barrera.io"]);
    // b@barrera.io reaches hugo through the catch-all.
    db.ok(&["alias", "add", "a@barrera.io", "b@barrera.io"]);
    // Every name of a.example to b.example, which has no rows (relayed).
    db.ok(&["alias", "add", "%@a.example", "%@b.example"]);
    let many: Vec<String> = (0..120)
        .map(|i| format!("member{i:03}@partner.example"))
        .collect();
    let mut too_long = vec!["alias", "add", "list@barrera.io"];
    too_long.extend(many.iter().map(String::as_str));
    let before = db.snapshot();
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["alias", "add", "not-an-address", "hugo@barrera.io"],
            2,
            "not-an-address",
        ),
        (
            &["alias", "add", "x@barrera.io", "bad target"],
            2,
            "bad target",
        ),
        (
            &["alias", "add", "self@barrera.io", "self@barrera.io"],
            2,
            "points to itself",
        ),
        (
            &["alias", "add", "a%b%@barrera.io", "hugo@barrera.io"],
            2,
            "at most one %",
        ),
        (&["alias", "add", "x@barrera.io", "%@example.org"], 2, "%"),
        // b -> a -> b: a loop through the alias added first.
        (&["alias", "add", "b@barrera.io", "a@barrera.io"], 2, "loop"),
        // Wildcards loop for every name they match.
        (
            &["alias", "add", "%@example.net", "%@example.net"],
            2,
            "loop",
        ),
        (&["alias", "add", "%@b.example", "%@a.example"], 2, "loop"),
        // The refusal names the wildcard, and the address it was tried as.
        (
            &["alias", "add", "%@c.example", "%@c.example"],
            2,
            "mail to %@c.example (tried as mailtable-alias-check@c.example) would fail",
        ),
        (
            &["alias", "add", "sales-%@b.example", "sales-%@a.example"],
            2,
            "loop",
        ),
        // More destinations than smtpd's alias buffer takes (2047 bytes).
        (&too_long, 2, "split the alias"),
        // Patterns see the local part without its tag.
        (
            &["alias", "add", "x+%@barrera.io", "hugo@barrera.io"],
            2,
            "can never match",
        ),
        (
            &["alias", "add", "dangling@barrera.io", "ghost@example.net"],
            2,
            "ghost@example.net",
        ),
        (
            &["alias", "add", "a@barrera.io", "b@barrera.io"],
            2,
            "already exists",
        ),
        (&["senders", "hugo@unknown.org"], 2, "unknown.org"),
        (&["resolve", "no-at-sign"], 2, "no-at-sign"),
        (
            &["user", "list", "--domain", "bad_domain.org"],
            2,
            "bad_domain.org",
        ),
    ];
    for (args, code, needle) in cases {
        let (got, err) = db.code(args);
        assert_eq!(got, *code, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(
            err.trim().lines().count(),
            1,
            "{args:?}: one line wanted: {err}"
        );
    }
    let out = db.run_in(
        &["user", "add", "hugo@barrera.io", "--password-stdin"],
        Some("x\n"),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already has a mailbox"));
    // Said before any password is read.
    let out = db.run_in(
        &["user", "add", "hugo@barrera.io", "--password-stdin"],
        Some(""),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already has a mailbox"));
    let out = db.run_in(
        &["user", "add", "Ü@barrera.io", "--password-stdin"],
        Some("x\n"),
    );
    assert_eq!(out.status.code(), Some(2));
    // RFC 5321 allows it, smtpd's delivery user names do not.
    let out = db.run_in(
        &["user", "add", "o'brien@barrera.io", "--password-stdin"],
        Some("x\n"),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be a mailbox"));
    // smtpd cuts a delivery user name at the tag delimiter: a mailbox
    // a+b@ would be asked for as user a. Neither added nor renamed to.
    for args in [
        &["user", "add", "a+b@barrera.io", "--password-stdin"][..],
        &["user", "rename", "hugo@barrera.io", "hugo+old@barrera.io"][..],
    ] {
        let out = db.run_in(args, Some("x\n"));
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("`+` is the tag delimiter"), "{args:?}: {err}");
    }
    assert_eq!(db.snapshot(), before);
}

#[test]
fn unusable_databases() {
    let db = Db::new();
    std::fs::write(&db.path, vec![b'x'; 4096]).unwrap();
    let (code, err) = db.code(&["user", "list"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("not a SQLite database") && err.contains("mail.db"),
        "{err}"
    );
    let missing = Db::new();
    for args in [
        &["user", "list"][..],
        &["resolve", "a@example.org"],
        &["alias", "add", "a@example.org", "b@example.org"],
        &["migrate"],
    ] {
        let (code, err) = missing.code(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains("mailtable init"), "{args:?}: {err}");
    }
    assert!(!missing.path.exists(), "only init creates the file");
    let nodir = Db {
        _dir: tempfile::tempdir().unwrap(),
        path: PathBuf::from("/nonexistent-dir/x/mail.db"),
    };
    let (code, err) = nodir.code(&["user", "list"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/nonexistent-dir/x/mail.db"), "{err}");
    let bad_cfg = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad_cfg.path(), "databse = \"x\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mailtable"))
        .arg("-c")
        .arg(bad_cfg.path())
        .args(["domain", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("databse"));
}

#[test]
fn migrate_keeps_the_articles_database() {
    let db = Db::new();
    article_db(&db.path);
    // Read-only commands work on the article's layout before migrating.
    assert_eq!(
        db.resolve("hugo+news@barrera.io").1,
        vec!["hugo@barrera.io"]
    );
    assert!(db.ok(&["migrate"]).contains("from schema version 0 to 5"));
    // Nothing to do: the file's mode stays as the admin set it.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&db.path, std::fs::Permissions::from_mode(0o440)).unwrap();
    assert!(db.ok(&["migrate"]).contains("already at schema version 5"));
    assert_eq!(mode(&db.path), 0o440);
    std::fs::set_permissions(&db.path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let c = rusqlite::Connection::open(&db.path).unwrap();
    let n: i64 = c
        .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 3, "rows lost");
    drop(c);
    assert_eq!(db.resolve("hugo@barrera.io").1, vec!["hugo@barrera.io"]);
    assert_eq!(db.resolve("anything@barrera.io").1, vec!["hugo@barrera.io"]);
    assert_eq!(db.resolve("contact@example.com").1, vec!["hugo@barrera.io"]);
    assert_eq!(db.json(&["user", "list", "--json"])[0]["active"], true);
    db.ok(&["user", "disable", "hugo@barrera.io"]);
}

/// `init` on the article's database migrates it in place and says so,
/// with what the daemons then need, as `migrate` does; on a new file it
/// initialises.
#[test]
fn init_on_the_articles_database_says_it_migrated_it() {
    let db = Db::new();
    article_db(&db.path);
    let out = db.ok(&["init"]);
    assert!(
        out.contains("migrated the existing users table")
            && out.contains("from schema version 0 to 5")
            && out.contains("keeping every row"),
        "{out}"
    );
    assert!(out.contains("smtpctl update table users"), "{out}");
    assert_eq!(db.resolve("hugo@barrera.io").1, vec!["hugo@barrera.io"]);
    let fresh = Db::new();
    assert!(fresh.ok(&["init"]).starts_with("initialised"));
}

#[test]
fn newer_schema_is_refused_untouched() {
    let db = Db::new();
    db.ok(&["init"]);
    let c = rusqlite::Connection::open(&db.path).unwrap();
    c.execute("UPDATE mailtable_schema SET version = 99", [])
        .unwrap();
    drop(c);
    let before = std::fs::read(&db.path).unwrap();
    let (code, err) = db.code(&["migrate"]);
    assert_eq!(code, 2);
    assert!(err.contains("99"), "{err}");
    let out = db.run_in(&["user", "add", "a@b.org", "--password-stdin"], Some("x\n"));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(std::fs::read(&db.path).unwrap(), before);
}

/// A list read by a reader that stops early (`mailtable user list | head`)
/// ends quietly, killed by SIGPIPE as Unix tools are: no panic, no
/// backtrace on the terminal.
#[test]
fn a_reader_that_stops_early_ends_the_list_quietly() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::ExitStatusExt;
    let db = Db::new();
    db.ok(&["init"]);
    // Far more output than a pipe holds, so the list is still writing
    // when its reader has gone.
    let c = rusqlite::Connection::open(&db.path).unwrap();
    c.execute_batch(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) \
         INSERT INTO users (username, domain, mailbox, password) \
         SELECT 'user' || i, 'example.org', 'user' || i || '@example.org', '$2b$04$x' FROM n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailtable"))
        .args(["--database", &db.url(), "user", "list"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.ends_with("@example.org\n"), "{first:?}");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGPIPE),
        "{:?}: {stderr}",
        out.status
    );
}

/// `alias add x@ex.org` sent `sig` while it waits for the lock another
/// writer holds (inside its write), `sig` ignored from the start or not;
/// its output once the lock is free.
fn signal_during_write(db: &Db, sig: nix::sys::signal::Signal, ignored: bool) -> Output {
    signal_during_lock_wait(db, sig, ignored, false)
}

/// [`signal_during_write`], the lock freed at once after the signal, or
/// `held` until the process is gone.
fn signal_during_lock_wait(
    db: &Db,
    sig: nix::sys::signal::Signal,
    ignored: bool,
    held: bool,
) -> Output {
    use std::os::unix::process::CommandExt;
    let holder = rusqlite::Connection::open(&db.path).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mailtable"));
    if held {
        // A wait far longer than the test waits for the signal to act.
        let config = db.path.with_file_name("patient.toml");
        std::fs::write(&config, "query_timeout_ms = 600000\n").unwrap();
        cmd.arg("-c").arg(config);
    }
    cmd.args([
        "--database",
        &db.url(),
        "alias",
        "add",
        "x@ex.org",
        "y@other.org",
    ])
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    if ignored {
        // SAFETY: only signal(2), async-signal-safe, between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                libc::signal(sig as libc::c_int, libc::SIG_IGN);
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn().unwrap();
    // It has the database open, which `alias add` does inside its write
    // only, and waits for the lock: the signal comes inside the write.
    let fds = format!("/proc/{}/fd", child.id());
    let opened = || {
        std::fs::read_dir(&fds)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| std::fs::read_link(e.path()).is_ok_and(|t| t == db.path))
    };
    while !opened() {
        assert!(child.try_wait().unwrap().is_none(), "exited before opening");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
    if held {
        // Bounded, not timed: the signal ends the wait at once, or the
        // process would sit out the ten minutes of its config.
        let since = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            if since.elapsed() > std::time::Duration::from_secs(60) {
                child.kill().ok();
                holder.execute_batch("ROLLBACK").unwrap();
                panic!("{sig} did not end the wait for the lock");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        holder.execute_batch("ROLLBACK").unwrap();
        return out;
    }
    holder.execute_batch("ROLLBACK").unwrap();
    child.wait_with_output().unwrap()
}

impl Db {
    /// `init` with its report lost (a change made all the same), then a
    /// mailbox `hugo@ex.org`.
    fn add_user_after_full_init(&self) {
        let out = to_full_stdout(self, &["init"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "init: {err}");
        assert!(err.contains("the change was made"), "init: {err}");
        self.add_user("hugo@ex.org", "a-password");
    }
}

/// `args` with stdout on a file that takes no byte (`/dev/full`: ENOSPC,
/// as a script's log on a full disk).
fn to_full_stdout(db: &Db, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_mailtable"))
        .args(["--database", &db.url()])
        .args(args)
        .stdout(std::fs::File::create("/dev/full").unwrap())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    out
}

/// Output that stdout does not take never panics (exit 101, after a
/// commit too, so a script saw a failure for a change that was made): a
/// committed change stays a success and the lost report is said on
/// stderr; a command that only reads fails temporarily.
#[test]
fn output_stdout_does_not_take_is_said_never_a_panic() {
    let db = Db::new();
    db.add_user_after_full_init();
    for args in [
        &["user", "quota", "hugo@ex.org", "1G"][..],
        &["alias", "add", "team@ex.org", "hugo@ex.org"],
    ] {
        let out = to_full_stdout(&db, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(
            err.contains("the change was made, but its report could not be written to stdout"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(db.resolve("team@ex.org").1, ["hugo@ex.org"]);
    assert!(db.ok(&["user", "list"]).contains("quota=1G"));
    for args in [
        &["resolve", "team@ex.org"][..],
        &["migrate"],
        &["senders", "hugo@ex.org"],
        &["user", "list"],
        &["alias", "list", "--json"],
        &["domain", "list"],
    ] {
        let out = to_full_stdout(&db, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(75), "{args:?}: {err}");
        assert!(
            err.contains("cannot write to stdout: No space left on device")
                && err.contains("nothing was changed"),
            "{args:?}: {err}"
        );
    }
}

/// Ctrl-C while a write waits for a lock that stays held: the wait ends
/// and the process says it was interrupted (exit 75), where it waited out
/// the timeout and then died of the signal with nothing on stderr. The
/// lock is held until the process is gone, so only giving up on the
/// signal can end it with this message.
#[test]
fn ctrl_c_ends_a_lock_wait_with_its_message() {
    use nix::sys::signal::Signal;
    let db = Db::new();
    db.ok(&["init"]);
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        let out = signal_during_lock_wait(&db, sig, false, true);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(75), "{sig}: {:?} {err}", out.status);
        assert!(
            err.contains(&format!("interrupted by {sig}: nothing was changed")),
            "{err}"
        );
        assert!(
            !err.contains("locked"),
            "the lock error is not the news: {err}"
        );
    }
    let (code, _) = db.code(&["resolve", "x@ex.org"]);
    assert_eq!(code, 1, "the alias was not added");
}

/// Ctrl-C during a write rolls it back and says so, instead of killing
/// the process inside its transaction (which left a hot journal that the
/// daemons, reading as their own users, cannot roll back). A signal the
/// process was started ignoring (`nohup`) stays ignored.
#[test]
fn an_interrupted_write_rolls_back_and_leaves_no_journal() {
    use nix::sys::signal::Signal;
    let db = Db::new();
    db.ok(&["init"]);
    let out = signal_during_write(&db, Signal::SIGINT, false);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{err}");
    assert!(
        err.contains("interrupted by SIGINT: nothing was changed"),
        "{err}"
    );
    let journal = PathBuf::from(format!("{}-journal", db.path.display()));
    assert!(!journal.exists(), "a journal left behind");
    let (code, _) = db.code(&["resolve", "x@ex.org"]);
    assert_eq!(code, 1, "the alias was not added");

    let out = signal_during_write(&db, Signal::SIGHUP, true);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "under nohup: {err}");
    let (code, _) = db.code(&["resolve", "x@ex.org"]);
    assert_eq!(code, 0, "the alias was added");
}

/// A writer that died inside a transaction (the sqlite3 shell killed, a
/// crash) leaves a hot journal: the first write as a user who can write
/// the file rolls it back, as the error the daemons log says. `user add`
/// and `passwd` look first (no password is asked for a command that would
/// be refused): that look must not be the read-only one that cannot.
#[test]
fn a_write_rolls_back_the_hot_journal_a_dead_writer_left() {
    let db = Db::new();
    db.ok(&["init"]);
    db.add_user("a@x.org", "first-password");
    let journal = |p: &Path| PathBuf::from(format!("{}-journal", p.display()));
    let crashed = db.path.with_extension("crashed");
    for (args, stdin) in [
        (
            &["user", "add", "b@x.org", "--password-stdin"][..],
            "pw-of-b\n",
        ),
        (
            &["user", "passwd", "a@x.org", "--password-stdin"][..],
            "second-password\n",
        ),
    ] {
        {
            // The files as they are while a transaction that spilled pages
            // into the database is open.
            let writer = rusqlite::Connection::open(&db.path).unwrap();
            writer
                .execute_batch(
                    "PRAGMA cache_size = 1; BEGIN; \
                     UPDATE users SET mailbox = 'gone@x.org'; \
                     WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) \
                     INSERT INTO users (username, domain, mailbox) \
                     SELECT 'u' || i, 'x.org', 'gone@x.org' FROM n;",
                )
                .unwrap();
            std::fs::copy(&db.path, &crashed).unwrap();
            std::fs::copy(journal(&db.path), journal(&crashed)).unwrap();
            writer.execute_batch("ROLLBACK").unwrap();
        }
        std::fs::rename(&crashed, &db.path).unwrap();
        std::fs::rename(journal(&crashed), journal(&db.path)).unwrap();
        let (code, err) = db.code(&["user", "list"]);
        assert_eq!(code, 75, "a read-only command cannot roll it back: {err}");
        assert!(err.contains("hot journal"), "{err}");

        let out = db.run_in(args, Some(stdin));
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!journal(&db.path).exists(), "{args:?} left the journal");
    }
    assert_eq!(db.ok(&["user", "list"]), "a@x.org\nb@x.org\n");
    assert_eq!(db.resolve("a@x.org").1, ["a@x.org"]);
    assert!(db.ok(&["user", "list", "--json"]).contains("b@x.org"));
}
