//! `mailtable import` through the real binary, against temporary SQLite
//! files and the fixtures in `tests/fixtures/import/` (issue 8): every
//! format, the report, resolution equal to the source's, and "malformed,
//! conflicting or differing input changes nothing and names the line".
//!
//! The commands run inside the fixtures directory, so sources are named as
//! an admin would type them (`virtuals:28`).

#![allow(clippy::unwrap_used)]

mod common;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/import");

/// The bcrypt hash of m@example.org in `credentials`.
const M_HASH: &str = "$2b$10$ca7x7jpX7VFBAdKPHGdju.3HfRYVwzYaGvKEARK/xu7d8d0g/s6Km";

/// The smtpd setup of the fixtures, as one import.
const SMTPD: &[&str] = &[
    "--from",
    "smtpd-aliases",
    "virtuals",
    "smtpd-credentials:credentials",
    "smtpd-userinfo:userinfo",
];

struct Db {
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl Db {
    /// A fresh database made by `mailtable init`.
    fn new() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail.db");
        let db = Db { dir, path };
        db.ok(&["init"]);
        db
    }

    fn url(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }

    fn run_in(&self, args: &[&str], stdin: Option<&str>) -> Output {
        common::mailtable(&self.url(), args, stdin, Some(Path::new(FIXTURES)))
    }

    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.run_in(args, None);
        (
            out.status.code().unwrap(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "{args:?}: {err}\n{out}");
        out
    }

    /// `import ARGS --json`, expecting `code`.
    fn import_json(&self, args: &[&str], code: i32) -> (Value, String) {
        let mut a = vec!["import"];
        a.extend_from_slice(args);
        a.push("--json");
        let (c, out, err) = self.run(&a);
        assert_eq!(c, code, "{a:?}: {err}\n{out}");
        (serde_json::from_str(&out).unwrap(), err)
    }

    /// `resolve --json`: (result, destinations).
    fn resolve(&self, addr: &str) -> (String, BTreeSet<String>) {
        let out = self.run_in(&["resolve", addr, "--json"], None);
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{addr}: {}", String::from_utf8_lossy(&out.stderr)));
        let d = v["destinations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap().to_string())
            .collect();
        (v["result"].as_str().unwrap().to_string(), d)
    }

    /// The database file's bytes, and every row in words.
    fn snapshot(&self) -> (Vec<u8>, Vec<String>) {
        let bytes = std::fs::read(&self.path).unwrap();
        let c = rusqlite::Connection::open_with_flags(
            &self.path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let mut stmt = c
            .prepare("SELECT username, domain, mailbox, password, active, quota FROM users ORDER BY rowid")
            .unwrap();
        let rows = stmt
            .query_map([], |r| {
                Ok(format!(
                    "{}@{} {} {:?} {} {:?}",
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, Option<String>>(5)?
                ))
            })
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        (bytes, rows)
    }

    /// `user list --json`'s entry for `address`.
    fn user(&self, address: &str) -> Value {
        let users: Value = serde_json::from_str(&self.ok(&["user", "list", "--json"])).unwrap();
        users
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["address"] == address)
            .unwrap()
            .clone()
    }

    fn password_of(&self, local: &str, domain: &str) -> Option<String> {
        let c = rusqlite::Connection::open(&self.path).unwrap();
        c.query_row(
            "SELECT password FROM users WHERE username = ?1 AND domain = ?2 AND password IS NOT NULL",
            [local, domain],
            |r| r.get(0),
        )
        .ok()
    }

    /// Source files written into this database's dir, each `(format,
    /// name, text)`; the `format:path` arguments of `import` for them.
    fn sources(&self, files: &[(&str, &str, String)]) -> Vec<String> {
        files
            .iter()
            .map(|(format, name, text)| {
                let p = self.dir.path().join(name);
                std::fs::write(&p, text).unwrap();
                format!("{format}:{}", p.display())
            })
            .collect()
    }

    /// `import` of the source files ([`Db::sources`]): exit code, stdout,
    /// stderr.
    fn import_sources(&self, files: &[(&str, &str, String)]) -> (i32, String, String) {
        let args = self.sources(files);
        let mut cmd = vec!["import"];
        cmd.extend(args.iter().map(String::as_str));
        self.run(&cmd)
    }

    /// A PostfixAdmin database in this database's dir: its `domain`,
    /// `mailbox` and `alias` tables with the columns the import reads,
    /// filled by `rows` (SQL); the URL to import it by.
    fn postfixadmin(&self, name: &str, rows: &str) -> String {
        let p = self.dir.path().join(name);
        rusqlite::Connection::open(&p)
            .unwrap()
            .execute_batch(&format!(
                "CREATE TABLE domain (domain TEXT, backupmx TEXT, active TEXT);
                 CREATE TABLE mailbox (username TEXT, password TEXT, domain TEXT,
                                       quota INTEGER, active TEXT);
                 CREATE TABLE alias (address TEXT, goto TEXT, active TEXT);
                 {rows}"
            ))
            .unwrap();
        format!("sqlite://{}", p.display())
    }

    /// A SQLite file built from a fixture's SQL, in this database's dir.
    fn source_db(&self, name: &str, fixture: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        let sql = std::fs::read_to_string(Path::new(FIXTURES).join(fixture)).unwrap();
        rusqlite::Connection::open(&p)
            .unwrap()
            .execute_batch(&sql)
            .unwrap();
        p
    }
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn ats(v: &Value, field: &str) -> Vec<String> {
    v[field]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["at"].as_str().unwrap().to_string())
        .collect()
}

fn whys(v: &Value, field: &str) -> String {
    v[field]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| format!("{} {}\n", i["at"], i["why"]))
        .collect()
}

/// One passwd-file per domain (`args = username_format=%n
/// /etc/auth/%d/passwd`): the path as Dovecot's config writes it reads
/// every domain's file, a bare user name being a user of its file's
/// domain; the same user name in two domains is two mailboxes, each with
/// its own hash byte for byte; the report says which files it read.
#[test]
fn a_passwd_file_per_domain() {
    let db = Db::new();
    let (v, _) = db.import_json(&["dovecot-passwd:per-domain/%d/passwd"], 0);
    assert_eq!(v["status"], "imported", "{v}");
    assert_eq!(v["counts"]["mailboxes"], 3, "{v}");
    assert_eq!(v["counts"]["with_quota"], 1, "{v}");
    assert_eq!(v["verification"]["differences"], serde_json::json!([]));
    let notes = whys(&v, "notes");
    assert!(
        notes.contains(
            "\"per-domain/%d/passwd\" \"a passwd-file per domain: read 2 file(s), of \
             example.net, example.org; a user name without a domain is a user of its file's domain\""
        ),
        "{notes}"
    );
    let rows = db.snapshot().1;
    let hash = |fixture: &str, n: usize| {
        let text = std::fs::read_to_string(Path::new(FIXTURES).join(fixture)).unwrap();
        let line = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .nth(n)
            .unwrap()
            .to_string();
        line.split(':').nth(1).unwrap().to_string()
    };
    for (address, fixture, n) in [
        ("alice@example.org", "per-domain/example.org/passwd", 0),
        ("bob@example.org", "per-domain/example.org/passwd", 1),
        ("alice@example.net", "per-domain/example.net/passwd", 0),
    ] {
        let expected = hash(fixture, n);
        assert!(
            rows.iter()
                .any(|r| r.starts_with(&format!("{address} {address} Some({expected:?})"))),
            "{address}: {rows:?}"
        );
        assert_eq!(db.resolve(address).0, "found", "{address}");
    }
    // No file there: said, nothing written.
    let (code, _, err) = db.run(&["import", "dovecot-passwd:per-domain/%d/users"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no file of a domain in per-domain/"), "{err}");
    // A variable the import does not expand: named.
    let (code, _, err) = db.run(&[
        "import",
        "dovecot-passwd:per-domain/%{domain | lower}/passwd",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no such file, and %{domain | lower} is no variable the import expands"),
        "{err}"
    );
}

/// Whether `makemap` (OpenSMTPD's) runs here; when not, one line says the
/// test skipped, unless `MAILTABLE_TEST_REQUIRE_MAKEMAP=1` (set by the
/// README test command, which installs OpenSMTPD) makes it a failure.
fn makemap_runs() -> bool {
    let runs = Command::new("makemap")
        .arg("-U")
        .arg("/dev/null")
        .output()
        .is_ok();
    if !runs {
        assert!(
            std::env::var("MAILTABLE_TEST_REQUIRE_MAKEMAP").as_deref() != Ok("1"),
            "MAILTABLE_TEST_REQUIRE_MAKEMAP=1 but makemap does not run"
        );
        println!("skipped: makemap not found");
    }
    runs
}

/// smtpd tables kept as `db:` maps, the Berkeley DB files makemap builds
/// (`table virtuals db:/etc/mail/virtuals.db`): read through `makemap
/// -U`, they import exactly the rows their text files import, a `-t set`
/// domain list included, and the report says how they were read. A map
/// makemap cannot read is refused with the command that failed.
#[test]
fn smtpd_db_maps_import_as_the_text_they_were_made_from() {
    if !makemap_runs() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fixture = |name: &str| std::fs::read_to_string(Path::new(FIXTURES).join(name)).unwrap();
    // makemap refuses a key given twice, which smtpd's text table takes
    // (the fixture repeats one entry identically): left out of both.
    let virtuals: String = fixture("virtuals")
        .lines()
        .filter(|l| !l.starts_with("postmaster@example.org"))
        .map(|l| format!("{l}\n"))
        .collect();
    let files = [
        ("virtuals", virtuals, "aliases"),
        ("credentials", fixture("credentials"), ""),
        ("userinfo", fixture("userinfo"), ""),
        ("domains", "example.org\nexample.net\n".to_string(), "set"),
    ];
    for (name, text, kind) in &files {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        // The types of makemap(8): `aliases` for the virtual table, the
        // default (plain key and value) for credentials and userinfo.
        let typed: &[&str] = if kind.is_empty() { &[] } else { &["-t", kind] };
        let out = Command::new("makemap")
            .args(typed)
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {out:?}");
    }
    let sources = |ext: &str| -> Vec<String> {
        [
            "smtpd-aliases:virtuals",
            "smtpd-credentials:credentials",
            "smtpd-userinfo:userinfo",
            "smtpd-domains:domains",
        ]
        .iter()
        .map(|s| {
            let (format, name) = s.split_once(':').unwrap();
            format!("{format}:{}{ext}", dir.path().join(name).display())
        })
        .collect()
    };
    let import = |ext: &str| {
        let db = Db::new();
        let args = sources(ext);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (v, _) = db.import_json(&args, 0);
        assert_eq!(v["status"], "imported", "{v}");
        assert_eq!(v["verification"]["differences"], serde_json::json!([]));
        let mut rows = db.snapshot().1;
        rows.sort();
        (v, rows)
    };
    let (text, text_rows) = import("");
    let (maps, map_rows) = import(".db");
    assert!(text_rows.len() > 3, "{text_rows:?}");
    assert_eq!(map_rows, text_rows);
    assert_eq!(maps["counts"], text["counts"]);
    assert_eq!(maps["undeliverable"], text["undeliverable"]);
    let notes = whys(&maps, "notes");
    for name in ["virtuals", "credentials", "userinfo", "domains"] {
        let said = format!(
            "\"{}.db\" \"a `db:` map (Berkeley DB, hash): read through `makemap -U`",
            dir.path().join(name).display()
        );
        assert!(notes.contains(&said), "{said}\n{notes}");
    }
    // The pipe of the text file is left out from the map too, named by
    // the map.
    let not = whys(&maps, "not_imported");
    assert!(not.contains("virtuals.db:"), "{not}");
    assert!(not.contains("a pipe to a command"), "{not}");

    // An empty map is an empty source, as an empty text file is.
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "").unwrap();
    assert!(Command::new("makemap")
        .arg(&empty)
        .status()
        .unwrap()
        .success());
    let (code, _, err) =
        Db::new().run(&["import", &format!("smtpd-aliases:{}.db", empty.display())]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no entries in smtpd-aliases:"), "{err}");

    // A btree magic on a file that is none: makemap's own refusal, named.
    let bad = dir.path().join("broken.db");
    let mut bytes = vec![0u8; 64];
    bytes[12..16].copy_from_slice(&0x0005_3162u32.to_le_bytes());
    std::fs::write(&bad, bytes).unwrap();
    let db = Db::new();
    let (code, _, err) = db.run(&["import", &format!("smtpd-aliases:{}", bad.display())]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("is a Berkeley DB map (btree format) that `makemap -U -d btree"),
        "{err}"
    );
}

#[test]
fn smtpd_files_import_and_resolve_as_smtpd_did() {
    let db = Db::new();
    let (v, _) = db.import_json(SMTPD, 0);
    assert_eq!(v["status"], "imported");
    let c = &v["counts"];
    assert_eq!(c["domains"], 2);
    assert_eq!(c["mailboxes"], 3);
    assert_eq!(c["aliases"], 6);
    assert_eq!(c["alias_rows"], 10);
    assert_eq!(c["catch_alls"], 1);
    assert_eq!(c["rows_to_write"], 14);

    // The local aliases and the pipe are reported, with their lines.
    assert_eq!(
        ats(&v, "not_imported"),
        ["virtuals:28", "virtuals:29", "virtuals:30"]
    );
    let not = whys(&v, "not_imported");
    assert!(not.contains("local alias without a domain"), "{not}");
    assert!(not.contains("pipe"), "{not}");
    // The bare login, the repeated key and the odd home are noted.
    let notes = whys(&v, "notes");
    assert!(
        notes.contains("login gilles becomes gilles@example.org"),
        "{notes}"
    );
    assert!(notes.contains("repeats virtuals:15"), "{notes}");
    assert!(notes.contains("home /var/vmail/m differs"), "{notes}");
    assert!(notes.contains("uid:gid 2000:2000"), "{notes}");
    assert!(v["conflicts"].as_array().unwrap().is_empty());

    // Schemes: all three crypt(3) formats work for both daemons.
    let schemes: Vec<&str> = v["password_schemes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["scheme"].as_str().unwrap())
        .collect();
    assert_eq!(
        schemes,
        ["MD5-crypt ($1$)", "SHA512-crypt ($6$)", "bcrypt ($2b$)"]
    );
    assert!(v["smtpd_cannot_verify"].as_array().unwrap().is_empty());

    // Every address smtpd knew resolves as smtpd resolved it.
    let ver = &v["verification"];
    assert_eq!(ver["checked"], 10, "{ver}");
    assert_eq!(ver["differences"], Value::Array(vec![]));
    assert_eq!(
        db.resolve("team@example.org").1,
        set(&[
            "m@example.org",
            "gilles@example.org",
            "eric@example.org",
            "friend@partner.example"
        ])
    );
    assert_eq!(db.resolve("mayeu@example.org").1, set(&["m@example.org"]));
    assert_eq!(
        db.resolve("abuse@example.org").1,
        set(&["gilles@example.org"])
    );
    assert_eq!(
        db.resolve("sales@example.org").1,
        set(&[
            "m@example.org",
            "gilles@example.org",
            "eric@example.org",
            "friend@partner.example",
            "boss@partner.example"
        ])
    );
    assert_eq!(db.resolve("anyone@example.net").1, set(&["m@example.org"]));
    assert_eq!(db.resolve("info@example.net").1, set(&["eric@example.org"]));
    assert_eq!(db.resolve("nobody@example.org").0, "not-found");

    // Hashes are kept verbatim, never re-hashed.
    assert_eq!(db.password_of("m", "example.org").as_deref(), Some(M_HASH));
    assert!(db
        .password_of("gilles", "example.org")
        .unwrap()
        .starts_with("$6$Kq3TgFj8x2Lm9PzA$"));
}

/// A 6.x file written `key : value` (a blank before the colon) comes over
/// with the meaning smtpd 6.x gave it, and the report says why.
#[test]
fn smtpd_6_lines_with_a_blank_before_the_colon_import() {
    let db = Db::new();
    let (code, out, err) = db.import_sources(&[
        (
            "smtpd-aliases",
            "virtuals",
            "m@example.org : m\nteam@example.org : m@example.org, friend@partner.example\n"
                .to_string(),
        ),
        (
            "smtpd-credentials",
            "credentials",
            format!("m@example.org : m@example.org:{M_HASH}\n"),
        ),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("virtuals:2"), "{out}");
    assert!(out.contains("read as smtpd 6.x read it"), "{out}");
    assert!(!out.contains(M_HASH), "{out}");
    assert_eq!(
        db.resolve("team@example.org").1,
        set(&["m@example.org", "friend@partner.example"])
    );
    assert_eq!(db.password_of("m", "example.org").as_deref(), Some(M_HASH));
}

#[test]
fn a_second_import_writes_nothing_and_verify_passes() {
    let db = Db::new();
    db.import_json(SMTPD, 0);
    let before = db.snapshot().1;
    let (v, _) = db.import_json(SMTPD, 0);
    assert_eq!(v["counts"]["rows_to_write"], 0);
    assert_eq!(v["counts"]["keys_already_present"], 10);
    assert_eq!(db.snapshot().1, before);

    let mut args = SMTPD.to_vec();
    args.push("--verify");
    let (v, _) = db.import_json(&args, 0);
    assert_eq!(v["status"], "verified");
    assert_eq!(v["verification"]["differences"], Value::Array(vec![]));
}

#[test]
fn text_report_names_schemes_but_never_a_hash() {
    let db = Db::new();
    let mut args = vec!["import"];
    args.extend_from_slice(SMTPD);
    args.push("--dry-run");
    let out = db.ok(&args);
    assert!(
        out.contains("result: dry run, nothing written (14 row(s) would be)"),
        "{out}"
    );
    assert!(out.contains("MD5-crypt ($1$)"), "{out}");
    assert!(out.contains("auth_allow_weak_schemes"), "{out}");
    assert!(out.contains("not imported (3):"), "{out}");
    assert!(out.contains("virtuals:28: root: local alias"), "{out}");
    assert!(out.contains("verification: all 10 address(es)"), "{out}");
    for hash_part in ["ca7x7jpX7VFBAdKPHGdju", "Kq3TgFj8x2Lm9PzA", "Zr8kWq2P"] {
        assert!(!out.contains(hash_part), "a hash was printed:\n{out}");
    }
}

/// A Dovecot passwd-file given as another format (a common slip): its
/// password field, plain text with or without a `{SCHEME}` prefix, never
/// reaches the report or the error, whatever characters it holds.
#[test]
fn a_file_of_the_wrong_format_never_shows_its_passwords() {
    let db = Db::new();
    let passwd = "alice@example.org:{PLAIN}Tr0ub4dor&3xtra!Secret:5000:5000::/h\n\
                  bob@example.org:S3cretPW:5000:5000::/h\n\
                  carl@example.org:{CLEAR}Qz7\"Wy8,pw(x):5000:5000::/h\n\
                  dora@example.org: {PLAIN}correct horse battery\n";
    for format in ["smtpd-aliases", "smtpd-userinfo", "smtpd-credentials"] {
        let (code, out, err) = db.import_sources(&[(format, "passwd", passwd.to_string())]);
        // As userinfo the lines read as table-passwd entries (user, uid,
        // gid, home), as credentials as logins whose hash smtpd cannot
        // check (reported): only as aliases are they refused.
        if format == "smtpd-aliases" {
            assert_eq!(code, 2, "{format}: {out}{err}");
            assert!(err.contains("passwd:1"), "{format}: no line named: {err}");
        }
        for secret in [
            "Tr0ub4dor",
            "3xtra",
            "Secret",
            "S3cretPW",
            "Qz7",
            "Wy8",
            "correct",
            "horse",
            "battery",
        ] {
            assert!(
                !out.contains(secret) && !err.contains(secret),
                "{format}: {secret:?} shown:\n{out}{err}"
            );
        }
    }
}

#[test]
fn dry_run_writes_nothing() {
    let db = Db::new();
    let before = db.snapshot();
    let mut args = SMTPD.to_vec();
    args.push("--dry-run");
    let (v, _) = db.import_json(&args, 0);
    assert_eq!(v["status"], "dry-run");
    assert_eq!(
        v["verification"]["checked"], 10,
        "checked inside the transaction"
    );
    assert_eq!(db.snapshot(), before, "a dry run changed the database");
    assert_eq!(db.resolve("m@example.org").0, "unknown-domain");
}

#[test]
fn malformed_input_changes_nothing_and_names_the_line() {
    let db = Db::new();
    db.run_in(
        &["user", "add", "keep@example.org", "--password-stdin"],
        Some("secret\n"),
    );
    let before = db.snapshot();
    let (code, out, err) = db.run(&[
        "import",
        "--from",
        "smtpd-aliases",
        "virtuals-malformed",
        "smtpd-credentials:credentials",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("virtuals-malformed:7: broken@example.org: unbalanced \" quote"),
        "{err}"
    );
    // smtpd keeps quotes around an address and refuses the whole line.
    assert!(
        out.contains(
            "virtuals-malformed:8: quoted@example.org: \"friend@partner.example\": \
             smtpd keeps the quotes"
        ),
        "{out}"
    );
    assert!(err.contains("nothing was changed"), "{err}");
    assert!(out.contains("malformed (2):"), "{out}");
    assert_eq!(db.snapshot(), before);

    // JSON says the same.
    let (v, _) = db.import_json(&["--from", "smtpd-aliases", "virtuals-malformed"], 2);
    assert_eq!(v["status"], "refused");
    assert_eq!(
        ats(&v, "malformed"),
        ["virtuals-malformed:7", "virtuals-malformed:8"]
    );

    // A credentials line smtpd would refuse names its line, not its hash.
    let bad = db.dir.path().join("credentials-bad");
    std::fs::write(
        &bad,
        format!("m@example.org m@example.org:{M_HASH}\nx@example.org :{M_HASH}\n"),
    )
    .unwrap();
    let (code, _, err) = db.run(&[
        "import",
        "--from",
        "smtpd-credentials",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("credentials-bad:2: x@example.org"), "{err}");
    assert!(!err.contains("ca7x7jpX"), "{err}");
    assert_eq!(db.snapshot(), before);
}

#[test]
fn conflicting_lines_change_nothing() {
    let db = Db::new();
    let before = db.snapshot();
    let (code, out, err) = db.run(&[
        "import",
        "--from",
        "smtpd-aliases",
        "virtuals-conflict",
        "smtpd-credentials:credentials",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("virtuals-conflict:6: info@example.org: given again with other targets (first at virtuals-conflict:5)"),
        "{err}"
    );
    assert!(out.contains("conflicts (1):"), "{out}");
    assert_eq!(db.snapshot(), before);
}

/// A conflict refuses the import before the proof: the first line counts
/// the keys left out as "up to", since an address a catch-all takes
/// (here the pipe's, which the `@example.org` line then catches) still
/// receives mail; once the conflict is gone, the proof says so.
#[test]
fn a_conflict_counts_what_would_be_lost_as_at_most() {
    let db = Db::new();
    let hash = "$2b$08$abcdefghijklmnopqrstuuPq9bLx0PjjqQ9gZ3sJ1p3JcN1hQ5t6e";
    let virt = (
        "smtpd-aliases",
        "virt",
        "pipe@example.org \"|/usr/bin/prog\"\n@example.org carol@example.org\n\
         carol@example.org vmail\n"
            .to_string(),
    );
    let creds = (
        "smtpd-credentials",
        "creds",
        format!("carol@example.org {hash}\n"),
    );
    let again = (
        "smtpd-aliases",
        "virt2",
        "carol@example.org carol@example.net\n".to_string(),
    );
    let (code, out, err) = db.import_sources(&[virt.clone(), again, creds.clone()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        out.starts_with(
            "mailtable import: up to 1 address(es) of the sources would not receive mail: \
             pipe@example.org (the proof"
        ),
        "{out}"
    );
    let (code, out, err) = db.import_sources(&[virt, creds]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(
            "mailtable import: no address of the sources loses its mail; 1 would reach \
             another mailbox"
        ),
        "{out}"
    );
    assert_eq!(
        db.resolve("pipe@example.org").1,
        set(&["carol@example.org"])
    );
}

/// A key mailtable cannot store (`100%@`, a local part past 64 bytes) is
/// left out, but smtpd still asks for it: where the domain's catch-all now
/// takes it, the report lists it as redirected, with where it goes, not as
/// an address that receives no mail.
#[test]
fn a_key_mailtable_cannot_store_that_a_catch_all_takes_is_redirected() {
    let db = Db::new();
    let long = format!("{}@ex.org", "l".repeat(70));
    let virt = format!(
        "alice@ex.org vmail\nbob@ex.org vmail\n100%@ex.org alice@ex.org\n\
         {long} alice@ex.org\n@ex.org bob@ex.org\n"
    );
    let h = "$6$saltsalt$qFmFH.bQmmtXzyBY0s9v7Oicd2z4XSIecDzlB5KiA2/jctKu9YterLp8wwnSq.qc.eoxqOmSuNp2xS0ktL3nh/";
    let creds = format!("alice@ex.org alice@ex.org:{h}\nbob@ex.org bob@ex.org:{h}\n");
    let mut args = vec!["import".to_string(), "--json".to_string()];
    args.extend(db.sources(&[
        ("smtpd-aliases", "v", virt),
        ("smtpd-credentials", "c", creds),
    ]));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = db.run(&args);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["undeliverable"], Value::Array(vec![]), "{out}");
    let redirected: BTreeSet<String> = v["verification"]["redirected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| format!("{} {}", d["address"].as_str().unwrap(), d["mailtable"]))
        .collect();
    assert_eq!(redirected.len(), 2, "{redirected:?}");
    for a in ["100%@ex.org", long.as_str()] {
        assert!(
            redirected
                .iter()
                .any(|r| r.starts_with(a) && r.contains("bob@ex.org")),
            "{a}: {redirected:?}"
        );
    }
}

#[test]
fn conflict_with_rows_present_changes_nothing() {
    let db = Db::new();
    let out = db.run_in(
        &["user", "add", "m@example.org", "--password-stdin"],
        Some("another password\n"),
    );
    assert!(out.status.success());
    let before = db.snapshot();
    let (v, err) = db.import_json(SMTPD, 2);
    assert_eq!(v["status"], "refused");
    assert_eq!(ats(&v, "conflicts"), ["credentials:3"]);
    assert!(
        err.contains(
            "credentials:3: m@example.org: already in the database with a different password"
        ),
        "{err}"
    );
    assert!(!err.contains("$2b$"), "{err}");
    assert_eq!(db.snapshot(), before);
}

#[test]
fn a_login_whose_mail_goes_elsewhere_is_refused() {
    let db = Db::new();
    let src = db.dir.path().join("forward-only");
    std::fs::write(&src, "m@example.org  m@elsewhere.example\n").unwrap();
    let before = db.snapshot();
    let (code, _, err) = db.run(&[
        "import",
        "--from",
        "smtpd-credentials",
        "credentials",
        &format!("smtpd-aliases:{}", src.display()),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("forward-only:1: m@example.org: has a login (credentials:3)"),
        "{err}"
    );
    assert_eq!(db.snapshot(), before);
}

/// A Dovecot user with `nopassword` received mail there (its userdb entry
/// answers like any other); mailtable cannot make it a mailbox, so the
/// import must not look like a success without `--partial`.
#[test]
fn a_nopassword_user_is_a_mailbox_left_behind() {
    let db = Db::new();
    let src = db.dir.path().join("nopw-users");
    std::fs::write(
        &src,
        format!("ok@example.com:{{BLF-CRYPT}}{M_HASH}\nnp@example.com:::::::nopassword\n"),
    )
    .unwrap();
    let source = format!("dovecot-passwd:{}", src.display());
    let before = db.snapshot();
    let (v, err) = db.import_json(&[&source], 2);
    assert_eq!(
        v["mailboxes_not_imported"],
        serde_json::json!(["np@example.com"])
    );
    assert!(
        err.contains("1 address(es) of the sources would not receive mail"),
        "{err}"
    );
    assert_eq!(db.snapshot(), before);
    let (v, _) = db.import_json(&[&source, "--partial"], 0);
    assert_eq!(v["counts"]["mailboxes"], 1);
    assert!(whys(&v, "not_imported").contains("nopassword"));
}

/// smtpd delivers a tagged target as its untagged address (its walk asks
/// `user+tag@dom`, then `user@dom`) and cuts a user name's tag before the
/// user lookup: both come over, to the mailbox, none reported lost.
#[test]
fn tagged_targets_reach_the_untagged_entry() {
    let db = Db::new();
    let virtuals = db.dir.path().join("tagged-virtuals");
    let credentials = db.dir.path().join("tagged-credentials");
    std::fs::write(
        &virtuals,
        "gilles@example.org vgilles\n\
         lists@example.org gilles+lists@example.org\n\
         folder@example.org vgilles+folder\n",
    )
    .unwrap();
    std::fs::write(&credentials, format!("gilles gilles:{M_HASH}\n")).unwrap();
    let (v, _) = db.import_json(
        &[
            &format!("smtpd-aliases:{}", virtuals.display()),
            &format!("smtpd-credentials:{}", credentials.display()),
        ],
        0,
    );
    assert_eq!(v["mailboxes_not_imported"], serde_json::json!([]), "{v}");
    assert_eq!(ats(&v, "not_imported"), Vec::<String>::new(), "{v}");
    assert_eq!(v["verification"]["differences"], Value::Array(vec![]));
    for a in [
        "lists@example.org",
        "folder@example.org",
        "gilles+x@example.org",
    ] {
        assert_eq!(db.resolve(a).1, set(&["gilles@example.org"]), "{a}");
    }
}

/// A login smtpd could not deliver to as a mailbox (`o'brien@`: its user
/// name would hold `'`; `a+b@`: smtpd cuts its user name at the tag
/// delimiter and asks for user `a`) is a mailbox left behind, with the
/// reason.
#[test]
fn a_login_smtpd_cannot_deliver_to_is_a_mailbox_left_behind() {
    let db = Db::new();
    let src = db.dir.path().join("quote-users");
    std::fs::write(
        &src,
        format!(
            "ok@example.com:{{BLF-CRYPT}}{M_HASH}\no'brien@example.com:{{BLF-CRYPT}}{M_HASH}\n\
             a+b@example.com:{{BLF-CRYPT}}{M_HASH}\n"
        ),
    )
    .unwrap();
    let source = format!("dovecot-passwd:{}", src.display());
    let (v, _) = db.import_json(&[&source], 2);
    assert_eq!(
        v["mailboxes_not_imported"],
        serde_json::json!(["a+b@example.com", "o'brien@example.com"])
    );
    let why = whys(&v, "not_imported");
    assert!(why.contains("o'brien_example.com"), "{v}");
    assert!(why.contains("holds the tag delimiter '+'"), "{v}");
    let (v, _) = db.import_json(&[&source, "--partial"], 0);
    assert_eq!(v["counts"]["mailboxes"], 1);

    // A list holding it is not imported either (smtpd would fail it for
    // everyone on it), and the report says why; --partial still imports
    // the rest, with nothing resolving differently.
    let db = Db::new();
    let sql = db.dir.path().join("quote.db");
    rusqlite::Connection::open(&sql)
        .unwrap()
        .execute_batch(&format!(
            "CREATE TABLE domains (domain TEXT);
             CREATE TABLE users (username TEXT, domain TEXT, password TEXT);
             CREATE TABLE aliases (alias TEXT, destination TEXT);
             INSERT INTO domains VALUES ('example.com');
             INSERT INTO users VALUES ('ok', 'example.com', '{M_HASH}'),
                                      ('o''brien', 'example.com', '{M_HASH}');
             INSERT INTO aliases VALUES ('ok@example.com', 'ok@example.com'),
                                        ('o''brien@example.com', 'o''brien@example.com'),
                                        ('team@example.com', 'ok@example.com,o''brien@example.com');"
        ))
        .unwrap();
    let sql = format!("sql:{}", sql.display());
    let (v, _) = db.import_json(&[&sql], 2);
    let not = whys(&v, "not_imported");
    assert!(
        not.lines()
            .any(|l| l.contains("aliases:3") && l.contains("its mailbox is not imported")),
        "{not}"
    );
    let (v, _) = db.import_json(&[&sql, "--partial"], 0);
    assert_eq!(v["verification"]["differences"], Value::Array(vec![]));
    assert_eq!(db.resolve("team@example.com").0, "not-found");
}

/// A login whose own name holds the tag delimiter (`a+b@`) cannot be a
/// mailbox: smtpd cuts its delivery user name `a+b_example.com` at the
/// delimiter and refuses the mail (no user `a`). Left behind, said so,
/// and with `--partial` nothing of it is written.
#[test]
fn a_login_with_the_delimiter_in_its_name_is_left_behind() {
    let db = Db::new();
    let src = db.dir.path().join("plus-users");
    std::fs::write(
        &src,
        format!("a+b@example.com:{{BLF-CRYPT}}{M_HASH}\nc@example.com:{{BLF-CRYPT}}{M_HASH}\n"),
    )
    .unwrap();
    let source = format!("dovecot-passwd:{}", src.display());
    let (v, _) = db.import_json(&[&source], 2);
    assert_eq!(
        v["mailboxes_not_imported"],
        serde_json::json!(["a+b@example.com"])
    );
    let (v, _) = db.import_json(&[&source, "--partial"], 0);
    assert_eq!(v["verification"]["differences"], Value::Array(vec![]));
    assert_eq!(db.resolve("a+b@example.com").0, "not-found");
    assert_eq!(db.resolve("c+b@example.com").1, set(&["c@example.com"]));
}

/// The userbase given as a source (`userbase <userinfo>`): smtpd refused
/// every message whose expansion reached a delivery user the userinfo
/// table lacks (550), also where other targets were fine (smtpd fails the
/// whole expansion), and through an alias to such an entry. Checked
/// against smtpd 6.8 by hand: hugo@, hb@, mixed@ got 550.
#[test]
fn a_delivery_user_missing_from_the_userbase_bounced() {
    let db = Db::new();
    let args = db.sources(&[
        (
            "smtpd-aliases",
            "ub-virtuals",
            "gilles@example.org  gilles\n\
             hugo@example.org    hugo\n\
             hb@example.org      hugo\n\
             mixed@example.org   gilles, hugo\n\
             via@example.org     hb@example.org, gilles@example.org\n\
             ok@example.org      gilles@example.org\n"
                .into(),
        ),
        (
            "smtpd-userinfo",
            "ub-userinfo",
            "gilles 5000:5000:/var/vmail/gilles\n".into(),
        ),
        (
            "smtpd-credentials",
            "ub-credentials",
            format!(
                "gilles@example.org gilles@example.org:{M_HASH}\n\
                 hugo@example.org hugo@example.org:{M_HASH}\n"
            ),
        ),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // hugo@ has a login but smtpd never delivered to it: refused until the
    // admin decides.
    let (v, _) = db.import_json(&args, 2);
    let not = whys(&v, "not_imported");
    assert!(
        not.contains("local user hugo is not in the userbase given"),
        "{not}"
    );
    assert!(
        not.contains("smtpd refused its mail (550) while the login worked"),
        "{not}"
    );
    assert_eq!(
        v["mailboxes_not_imported"],
        serde_json::json!(["hugo@example.org"])
    );
    let (v, _) = db.import_json(&[&args[..], &["--partial"]].concat(), 0);
    assert_eq!(v["verification"]["differences"], Value::Array(vec![]));
    for addr in ["hb@example.org", "mixed@example.org", "via@example.org"] {
        assert_eq!(db.resolve(addr).0, "not-found", "{addr}");
    }
    assert_eq!(db.resolve("ok@example.org").1, set(&["gilles@example.org"]));
}

/// smtpd looks a delivery user up again as a bare key of the virtual
/// table (RCPT probes of smtpd 6.8: `hugo@example.org  hugo` next to
/// `hugo  hugo@home.example` relayed hugo@'s mail to home.example), and a
/// user reached from its own key (`vmail  vmail`) is delivered. The
/// import made hugo@ a mailbox that kept the mail here.
#[test]
fn a_delivery_user_with_a_bare_key_goes_where_the_key_sends_it() {
    // u1 and u2 name each other: smtpd keeps a user once per address
    // (expand_cmp), so x@ goes to y@ only.
    let virtuals = "hugo@example.org hugo\n\
                    h@example.org hugo\n\
                    hugo hugo@home.example\n\
                    gilles@example.org vmail\n\
                    vmail vmail\n\
                    x@example.org u1\n\
                    u1 u2, y@example.net\n\
                    u2 u1\n";
    let db = Db::new();
    let args = db.sources(&[
        ("smtpd-aliases", "virtuals", virtuals.into()),
        (
            "smtpd-credentials",
            "credentials",
            format!(
                "hugo@example.org hugo@example.org:{M_HASH}\n\
                 gilles@example.org gilles@example.org:{M_HASH}\n"
            ),
        ),
    ]);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    // A login whose mail went elsewhere: mailtable would keep it here.
    let (_, err) = db.import_json(&args, 2);
    assert!(
        err.contains("hugo@example.org: has a login") && err.contains("only elsewhere"),
        "{err}"
    );
    // With a userbase that lacks hugo, the same: smtpd never asked the
    // userbase for a user its bare key sends elsewhere.
    let userinfo = db.sources(&[(
        "smtpd-userinfo",
        "userinfo",
        "vmail 5000:5000:/var/vmail\n".into(),
    )]);
    args.push(&userinfo[0]);
    let (_, err) = db.import_json(&args, 2);
    assert!(err.contains("only elsewhere"), "{err}");
    let db = Db::new();
    let args = db.sources(&[
        ("smtpd-aliases", "virtuals", virtuals.into()),
        (
            "smtpd-credentials",
            "credentials",
            format!("gilles@example.org gilles@example.org:{M_HASH}\n"),
        ),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (v, _) = db.import_json(&args, 0);
    assert_eq!(v["verification"]["differences"], Value::Array(vec![]));
    for a in ["hugo@example.org", "h@example.org"] {
        assert_eq!(db.resolve(a).1, set(&["hugo@home.example"]), "{a}");
    }
    assert_eq!(
        db.resolve("gilles@example.org").1,
        set(&["gilles@example.org"])
    );
    assert_eq!(db.resolve("x@example.org").1, set(&["y@example.net"]));
}

/// smtpd's domain table (`match from any for domain <domains>`): an
/// address of a domain it does not list got 550 however the virtual
/// table maps it, and a target there was another host's (relayed). With
/// the table given, those entries are bounced, their logins left behind,
/// and their domain is no domain of the import.
#[test]
fn smtpd_domain_table_decides_which_domains_are_ours() {
    let db = Db::new();
    let mut args = db.sources(&[
        (
            "smtpd-aliases",
            "dom-virtuals",
            "a@example.org x@example.net\n\
             b@stale.example y@example.net\n\
             c@sub.example.com z@example.net\n\
             d@example.com w@example.net\n\
             e@example.org b@stale.example\n\
             @stale.example q@example.net\n\
             old@stale.example old\n\
             x@example.org old\n"
                .into(),
        ),
        (
            "smtpd-credentials",
            "dom-credentials",
            format!("old@stale.example old@stale.example:{M_HASH}\n"),
        ),
        (
            "smtpd-domains",
            "domains",
            "# accepted\nexample.org\n*.example.com\n".into(),
        ),
    ]);
    let (_, err) = db.import_json(&args.iter().map(String::as_str).collect::<Vec<_>>(), 2);
    assert!(
        err.contains("would not come over (old@stale.example)"),
        "{err}"
    );
    args.push("--partial".into());
    let (v, _) = db.import_json(&args.iter().map(String::as_str).collect::<Vec<_>>(), 0);
    assert_eq!(v["verification"]["differences"], Value::Array(vec![]));
    assert_eq!(
        v["domains"],
        serde_json::json!(["example.org", "sub.example.com"])
    );
    let not = whys(&v, "not_imported");
    assert_eq!(
        not.matches("is not in smtpd's domain table").count(),
        5,
        "{not}"
    );
    for a in [
        "b@stale.example",
        "old@stale.example",
        "d@example.com",
        "x@stale.example",
    ] {
        assert_eq!(db.resolve(a).0, "unknown-domain", "{a}");
    }
    assert_eq!(db.resolve("a@example.org").1, set(&["x@example.net"]));
    assert_eq!(db.resolve("c@sub.example.com").1, set(&["z@example.net"]));
    // Relayed in the source, an external address now.
    assert_eq!(db.resolve("e@example.org").1, set(&["b@stale.example"]));
    // Delivered to the local user of a login left behind: not relayed to
    // its address now, left out and said lost.
    assert!(
        not.contains("local user old is the mailbox of old@stale.example, which is not imported"),
        "{not}"
    );
    assert_eq!(db.resolve("x@example.org").0, "not-found");
    assert_eq!(v["undeliverable"], serde_json::json!(["x@example.org"]));
}

/// A domain smtpd accepted (its domain table) without an entry of its
/// own: the global `@` took all its mail, and with `@` not imported all
/// of it is refused. The report names the domain, not only `@`.
#[test]
fn a_domain_only_the_global_key_served_is_named() {
    let db = Db::new();
    let args = db.sources(&[
        (
            "smtpd-aliases",
            "global-virtuals",
            "gilles@example.org vgilles\n@ gilles@example.org\n".into(),
        ),
        (
            "smtpd-credentials",
            "global-credentials",
            format!("gilles@example.org gilles@example.org:{M_HASH}\n"),
        ),
        (
            "smtpd-domains",
            "global-domains",
            "example.org\nexample.com\n".into(),
        ),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (v, _) = db.import_json(&args, 0);
    let not = whys(&v, "not_imported");
    assert!(
        not.contains("example.com is in smtpd's domain table and has no entry of its own"),
        "{not}"
    );
    let lost = v["undeliverable"].to_string();
    assert!(lost.contains("@example.com"), "{lost}");
    assert_eq!(db.resolve("anyone@example.com").0, "unknown-domain");
}

/// A table-passwd file serving both `auth <passwd>` and `userbase
/// <passwd>` (smtpd 6.x with opensmtpd-extras), given twice: as
/// smtpd-passwd for the logins and as smtpd-userinfo for the userbase.
/// smtpd refused (550) what reached a user the file lacks; without the
/// userbase given the import cannot know, and says those addresses lose
/// their mail.
#[test]
fn a_passwd_file_as_the_userbase() {
    let passwd = format!(
        "gilles:{M_HASH}:5000:5000::/var/vmail/gilles:/sbin/nologin\n\
         eric:{M_HASH}:5001:5001::/var/vmail/eric:/sbin/nologin\n"
    );
    let virtuals = "gilles@example.org gilles\n\
                    eric@example.org eric\n\
                    hugo@example.org hugo\n\
                    team@example.org gilles, hugo\n";
    for userbase in [false, true] {
        let db = Db::new();
        let mut args = db.sources(&[
            ("smtpd-passwd", "passwd", passwd.clone()),
            ("smtpd-aliases", "virtuals", virtuals.into()),
        ]);
        if userbase {
            args.push(args[0].replace("smtpd-passwd:", "smtpd-userinfo:"));
        } else {
            // hugo is a mailbox whose login is missing, as far as the
            // import can tell: refused unless --partial.
            args.push("--partial".into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (v, _) = db.import_json(&args, 0);
        assert_eq!(v["verification"]["differences"], Value::Array(vec![]));
        assert_eq!(
            db.resolve("gilles@example.org").1,
            set(&["gilles@example.org"])
        );
        assert_eq!(db.resolve("eric@example.org").1, set(&["eric@example.org"]));
        assert_eq!(db.resolve("hugo@example.org").0, "not-found");
        assert_eq!(db.resolve("team@example.org").0, "not-found");
        let not = whys(&v, "not_imported");
        if userbase {
            // Bounced in the source: nothing is lost.
            assert_eq!(v["undeliverable"], serde_json::json!([]));
            assert!(
                not.contains("local user hugo is not in the userbase given"),
                "{not}"
            );
            // The file's facts, read twice, are said once.
            let notes = whys(&v, "notes");
            assert_eq!(
                notes.matches("home /var/vmail/gilles differs").count(),
                1,
                "{notes}"
            );
        } else {
            assert_eq!(
                v["undeliverable"],
                serde_json::json!(["hugo@example.org", "team@example.org"])
            );
            assert!(
                not.contains("where smtpd's userbase is a table, give it as smtpd-userinfo"),
                "{not}"
            );
        }
    }

    // eric's uid unreadable: table-passwd's userinfo lookup of him is an
    // error, and smtpd 6.8 answered 451 for eric@ and for list@ (which
    // reaches him), not 550. His login is left behind, list@ is mail lost
    // (deferred until it expired), not a bounce.
    let db = Db::new();
    let broken = passwd.replace(":5001:5001:", ":x:5001:");
    let mut args = db.sources(&[
        ("smtpd-passwd", "passwd", broken.clone()),
        (
            "smtpd-aliases",
            "virtuals",
            format!("{virtuals}list@example.org gilles, eric\n"),
        ),
        ("smtpd-userinfo", "passwd", broken),
    ]);
    let (_, err) = db.import_json(&args.iter().map(String::as_str).collect::<Vec<_>>(), 2);
    assert!(
        err.contains("would not come over (eric@example.org)"),
        "{err}"
    );
    args.push("--partial".into());
    let (v, _) = db.import_json(&args.iter().map(String::as_str).collect::<Vec<_>>(), 0);
    // Deferred until they expired: they received nothing there either.
    assert_eq!(v["undeliverable"], serde_json::json!([]));
    assert_eq!(
        v["mailboxes_not_imported"],
        serde_json::json!(["eric@example.org"])
    );
    let not = whys(&v, "not_imported");
    assert!(not.contains("smtpd deferred its mail (451)"), "{not}");
    assert!(not.contains("with a temporary error (451)"), "{not}");
    assert_eq!(db.resolve("list@example.org").0, "not-found");
    assert_eq!(
        db.resolve("gilles@example.org").1,
        set(&["gilles@example.org"])
    );
}

/// smtpd's expansion depth (EXPAND_DEPTH 10, the delivery user a node of
/// its own): `d0 -> d1 -> ... -> d8 -> eric@ -> veric` got 524 on smtpd
/// 6.8, `d1` and shorter 250. What smtpd refused is not imported.
#[test]
fn chains_past_smtpds_depth_limit_bounced() {
    let db = Db::new();
    let mut virt = String::from("eric@example.org veric\n");
    for i in 0..9 {
        let next = if i == 8 {
            "eric".to_string()
        } else {
            format!("d{}", i + 1)
        };
        virt.push_str(&format!("d{i}@example.org {next}@example.org\n"));
    }
    for i in 0..13 {
        let next = if i == 12 {
            "eric".to_string()
        } else {
            format!("c{}", i + 1)
        };
        virt.push_str(&format!("c{i}@example.org {next}@example.org\n"));
    }
    // One branch past the limit bounces the whole entry (smtpd fails the
    // expansion, 524), a mailbox beside it or not. Two entries that name
    // each other walk without end unless the path is carried (the import
    // overflowed its stack); smtpd expands the loop again until its depth
    // limit (524 on smtpd 6.8), so they bounce, their way out to eric or
    // not.
    virt.push_str("mix@example.org eric@example.org, c3@example.org\n");
    virt.push_str("loop1@example.org eric@example.org, loop2@example.org\n");
    virt.push_str("loop2@example.org loop1@example.org\n");
    let args = db.sources(&[
        ("smtpd-aliases", "deep-virtuals", virt),
        (
            "smtpd-credentials",
            "deep-credentials",
            format!("eric@example.org eric@example.org:{M_HASH}\n"),
        ),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (v, _) = db.import_json(&args, 0);
    assert_eq!(v["verification"]["differences"], Value::Array(vec![]));
    assert!(
        whys(&v, "not_imported").contains("past smtpd's limit of 10 levels"),
        "{}",
        whys(&v, "not_imported")
    );
    for bounced in ["d0", "c0", "c3", "c4", "mix"] {
        let a = format!("{bounced}@example.org");
        assert_eq!(db.resolve(&a).0, "not-found", "{a}");
    }
    for bounced in ["loop1", "loop2"] {
        let a = format!("{bounced}@example.org");
        assert_eq!(db.resolve(&a).0, "not-found", "{a}");
    }
    assert!(
        whys(&v, "not_imported").contains("runs into an alias loop at"),
        "{}",
        whys(&v, "not_imported")
    );
    for delivered in ["d1", "d8", "c5", "c12"] {
        let a = format!("{delivered}@example.org");
        assert_eq!(db.resolve(&a).1, set(&["eric@example.org"]), "{a}");
    }
}

/// Alias loops as smtpd 6.8 answered them (RCPT probes of the file
/// table): smtpd tells expand nodes apart by their parent, so an address
/// met again is expanded again until the depth limit, and every address
/// whose expansion runs into a loop got 524, with a way out of the loop
/// (`b -> c, x@`) or without, directly or through another entry or a
/// catch-all. Not imported, they are refused after the import too.
#[test]
fn alias_loops_bounce_as_smtpd_expands_them() {
    let db = Db::new();
    let args = db.sources(&[
        (
            "smtpd-aliases",
            "loop-virtuals",
            "a@example.org b@example.org\n\
         b@example.org c@example.org, x@example.net\n\
         c@example.org a@example.org\n\
         p@example.org q@example.org\n\
         q@example.org p@example.org\n\
         e@example.org p@example.org, y@example.net\n\
         keep@example.org y@example.net\n\
         @example.com loop@example.com\n\
         loop@example.com back@example.com\n\
         back@example.com loop@example.com\n\
         kept@example.com z@example.net\n\
         chain@example.com kept@example.com\n\
         self@example.com self@example.com\n\
         me@example.com me@example.com, z@example.net\n"
                .into(),
        ),
        (
            "smtpd-credentials",
            "loop-credentials",
            format!("me@example.com me@example.com:{M_HASH}\n"),
        ),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // An entry naming its own address is a loop too (524 on smtpd 6.8,
    // the login's own or not): a login whose mail smtpd refused is left
    // behind, not made a mailbox that receives.
    let (_, err) = db.import_json(&args, 2);
    assert!(
        err.contains("would not come over (me@example.com)"),
        "{err}"
    );
    let (v, _) = db.import_json(&[&args[..], &["--partial"]].concat(), 0);
    assert_eq!(v["verification"]["differences"], Value::Array(vec![]));
    // The login left behind received nothing in the source either: a
    // mailbox not imported, no address losing mail.
    assert_eq!(v["undeliverable"], serde_json::json!([]));
    assert_eq!(
        v["mailboxes_not_imported"],
        serde_json::json!(["me@example.com"])
    );
    for a in [
        "a@example.org",
        "b@example.org",
        "c@example.org",
        "p@example.org",
        "q@example.org",
        "e@example.org",
        "loop@example.com",
        "anyone@example.com",
        "self@example.com",
        "me@example.com",
    ] {
        assert_eq!(db.resolve(a).0, "not-found", "{a}");
    }
    assert_eq!(db.resolve("kept@example.com").1, set(&["z@example.net"]));
    assert_eq!(db.resolve("chain@example.com").1, set(&["z@example.net"]));
    let not = whys(&v, "not_imported");
    assert_eq!(
        not.matches("runs into an alias loop at").count(),
        9,
        "{not}"
    );
    assert!(
        not.contains(":6\" \"its expansion runs into an alias loop at p@example.org"),
        "{not}"
    );
    assert!(
        not.contains("target self@example.com is its own address: smtpd expands it again"),
        "{not}"
    );
    assert!(
        not.contains("its entry names its own address, which smtpd expands again"),
        "{not}"
    );
}

/// Postfix expands an alias loop until `virtual_alias_recursion_limit`
/// and defers the message (cleanup_map1n.c), so a PostfixAdmin alias in a
/// loop, with a way out or not, received nothing there: not imported and
/// named, unlike smtpd's expansion above.
#[test]
fn postfixadmin_alias_loops_defer_and_are_not_imported() {
    let db = Db::new();
    let url = db.postfixadmin(
        "pfa-loop.db",
        &format!(
            "INSERT INTO domain VALUES ('example.org', '0', '1');
             INSERT INTO mailbox VALUES ('alice@example.org', '{M_HASH}', 'example.org', 0, '1');
             INSERT INTO alias VALUES ('alice@example.org', 'alice@example.org', '1'),
                                      ('a@example.org', 'b@example.org', '1'),
                                      ('b@example.org', 'a@example.org,alice@example.org', '1'),
                                      ('ok@example.org', 'alice@example.org', '1');"
        ),
    );
    let (v, _) = db.import_json(&["--from", "sql", &url], 0);
    let not = whys(&v, "not_imported");
    assert_eq!(not.matches("Postfix defers its mail").count(), 2, "{not}");
    assert_eq!(db.resolve("a@example.org").0, "not-found");
    assert_eq!(db.resolve("b@example.org").0, "not-found");
    assert_eq!(db.resolve("ok@example.org").1, set(&["alice@example.org"]));
}

/// A NULL `active` is off: PostfixAdmin's queries (`active = '1'`) never
/// select such a row, so the mailbox never received mail nor logged in,
/// and the alias never delivered. A table without the column has every
/// row on (the other tests).
#[test]
fn a_null_active_flag_is_off_as_the_sources_queries_read_it() {
    let db = Db::new();
    let url = db.postfixadmin(
        "pfa-null.db",
        &format!(
            "INSERT INTO domain VALUES ('example.org', '0', '1');
             INSERT INTO mailbox VALUES ('alice@example.org', '{M_HASH}', 'example.org', 0, '1'),
                                        ('nul@example.org', '{M_HASH}', 'example.org', 0, NULL);
             INSERT INTO alias VALUES ('alice@example.org', 'alice@example.org', '1'),
                                      ('nul@example.org', 'nul@example.org', '1'),
                                      ('old@example.org', 'alice@example.org', NULL);"
        ),
    );
    let (v, _) = db.import_json(&["--from", "sql", &url], 0);
    assert_eq!(v["verification"]["differences"], Value::Array(vec![]));
    assert_eq!(
        db.resolve("alice@example.org").1,
        set(&["alice@example.org"])
    );
    assert_eq!(db.resolve("nul@example.org").0, "not-found");
    assert_eq!(db.resolve("old@example.org").0, "not-found");
    assert_eq!(db.password_of("nul", "example.org"), None);
}

/// Two PostfixAdmin mailboxes that each keep a copy and forward one to the
/// other, and lists naming both: Postfix marks an address that expanded
/// into itself and never expands it again for that recipient
/// (`been_here_fixed` in cleanup_map1n.c), so every copy arrives; no loop
/// is deferred. After the import each address reaches the same
/// mailboxes.
#[test]
fn postfixadmin_mailboxes_forwarding_to_each_other_are_no_loop() {
    let db = Db::new();
    let url = db.postfixadmin(
        "pfa-mutual.db",
        &format!(
            "INSERT INTO domain VALUES ('example.org', '0', '1');
             INSERT INTO mailbox VALUES ('alice@example.org', '{M_HASH}', 'example.org', 0, '1'),
                                        ('bob@example.org', '{M_HASH}', 'example.org', 0, '1'),
                                        ('carl@example.org', '{M_HASH}', 'example.org', 0, '1');
             INSERT INTO alias VALUES
               ('alice@example.org', 'alice@example.org,bob@example.org', '1'),
               ('bob@example.org', 'bob@example.org, alice@example.org', '1'),
               ('carl@example.org', 'carl@example.org', '1'),
               ('team@example.org', 'alice@example.org,  bob@example.org ,carl@example.org', '1'),
               ('sales@example.org', 'dora@example.com,bob@example.org', '1'),
               ('fwd@example.org', 'fwd2@example.org', '1'),
               ('fwd2@example.org', 'fwd2@example.org,fwd@example.org,carl@example.org', '1');"
        ),
    );
    let (v, _) = db.import_json(&["--from", "sql", &url], 0);
    assert_eq!(v["verification"]["differences"], Value::Array(vec![]));
    let not = whys(&v, "not_imported");
    assert_eq!(v["undeliverable"], serde_json::json!([]), "{not}");
    assert!(!not.contains("loop"), "{not}");
    let both = set(&["alice@example.org", "bob@example.org"]);
    assert_eq!(db.resolve("alice@example.org").1, both);
    assert_eq!(db.resolve("bob@example.org").1, both);
    assert_eq!(
        db.resolve("team@example.org").1,
        set(&["alice@example.org", "bob@example.org", "carl@example.org"])
    );
    assert_eq!(
        db.resolve("sales@example.org").1,
        set(&["alice@example.org", "bob@example.org", "dora@example.com"])
    );
    // fwd -> fwd2, which keeps nothing (no mailbox) but names fwd again:
    // Postfix expands fwd once more, meets fwd2 marked, and delivers to
    // carl; the copy left at fwd2 bounces.
    assert_eq!(db.resolve("fwd@example.org").1, set(&["carl@example.org"]));
    assert_eq!(db.resolve("fwd2@example.org").1, set(&["carl@example.org"]));
    assert!(
        not.contains("target fwd2@example.org (its own address): the sources have no mailbox"),
        "{not}"
    );
}

/// An alias row with an empty `goto`: Postfix ignores an empty lookup
/// result (db_common.c warns and skips it), so the address went on to
/// its other rows, or to the catch-all. The row is reported, not a reason
/// to refuse the whole source.
#[test]
fn postfixadmin_empty_goto_is_ignored_like_postfix() {
    let db = Db::new();
    let url = db.postfixadmin(
        "pfa-empty.db",
        &format!(
            "INSERT INTO domain VALUES ('example.org', '0', '1');
             INSERT INTO mailbox VALUES ('alice@example.org', '{M_HASH}', 'example.org', 0, '1'),
                                        ('bob@example.org', '{M_HASH}', 'example.org', 0, '1');
             INSERT INTO alias VALUES ('alice@example.org', 'alice@example.org', '1'),
                                      ('bob@example.org', 'bob@example.org', '1'),
                                      ('@example.org', 'alice@example.org', '1'),
                                      ('empty@example.org', '', '1'),
                                      ('list@example.org', ' , ', '1'),
                                      ('list@example.org', 'bob@example.org', '1');"
        ),
    );
    let (v, _) = db.import_json(&["--from", "sql", &url], 0);
    assert_eq!(v["verification"]["differences"], Value::Array(vec![]));
    let not = whys(&v, "not_imported");
    assert_eq!(
        not.matches("alias without a destination: Postfix ignores an empty result")
            .count(),
        2,
        "{not}"
    );
    assert_eq!(
        db.resolve("empty@example.org").1,
        set(&["alice@example.org"])
    );
    assert_eq!(db.resolve("list@example.org").1, set(&["bob@example.org"]));
}

/// Postfix defers a recipient whose expansion needs more lookups than
/// `virtual_alias_recursion_limit` (1000): a chain of 1000 aliases before
/// the mailbox needs 1001, one of 999 needs 1000 (cleanup_map1n.c checks
/// `count >= limit` before each lookup, counting from 0).
#[test]
fn postfix_defers_past_its_recursion_limit_to_the_lookup() {
    for (chain, deferred) in [(999, 0), (1000, 1)] {
        let db = Db::new();
        let mut rows = String::from("('alice@example.org', 'alice@example.org', '1')");
        for i in 0..chain {
            let next = match i + 1 == chain {
                true => "alice@example.org".to_string(),
                false => format!("c{}@example.org", i + 1),
            };
            rows.push_str(&format!(", ('c{i}@example.org', '{next}', '1')"));
        }
        let url = db.postfixadmin(
            "pfa-deep.db",
            &format!(
                "INSERT INTO domain VALUES ('example.org', '0', '1');
                 INSERT INTO mailbox VALUES ('alice@example.org', '{M_HASH}', 'example.org', 0, \
                 '1');
                 INSERT INTO alias VALUES {rows};"
            ),
        );
        let (_, out, _) = db.run(&["import", "--from", "sql", &url, "--dry-run", "--json"]);
        let v: Value = serde_json::from_str(&out).unwrap();
        let not = whys(&v, "not_imported");
        assert_eq!(
            not.matches("alias chain deeper than 1000 at alice@example.org")
                .count(),
            deferred,
            "chain of {chain}: {not}"
        );
    }
}

/// A PostfixAdmin catch-all to an address that is no mailbox: Postfix
/// keeps an address that expands into itself (`been_here_fixed` in
/// cleanup_map1n.c) and delivers it as it is, so that copy bounced (user
/// unknown), while an alias naming it with a mailbox delivered to the
/// mailbox. Neither is an alias loop that Postfix defers.
#[test]
fn postfixadmin_catch_all_to_no_mailbox_bounces() {
    let db = Db::new();
    let url = db.postfixadmin(
        "pfa-catch.db",
        &format!(
            "INSERT INTO domain VALUES ('example.org', '0', '1');
             INSERT INTO mailbox VALUES ('alice@example.org', '{M_HASH}', 'example.org', 0, '1');
             INSERT INTO alias VALUES ('alice@example.org', 'alice@example.org', '1'),
                                      ('@example.org', 'info@example.org', '1'),
                                      ('team@example.org', 'alice@example.org,info@example.org',
                                       '1');"
        ),
    );
    let (v, _) = db.import_json(&["--from", "sql", &url], 0);
    assert_eq!(v["verification"]["differences"], Value::Array(vec![]));
    assert_eq!(v["undeliverable"], serde_json::json!([]));
    let not = whys(&v, "not_imported");
    assert!(!not.contains("defers"), "{not}");
    assert_eq!(
        db.resolve("team@example.org").1,
        set(&["alice@example.org"])
    );
    assert_eq!(db.resolve("anyone@example.org").0, "not-found");
    assert_eq!(db.resolve("info@example.org").0, "not-found");
}

/// An inactive PostfixAdmin mailbox whose address holds the tag delimiter
/// (`dev+old@`, without the self-alias PostfixAdmin would add) has no
/// alias entry of its own, so Postfix looks up `dev@` next (virtual(5),
/// "ADDRESS EXTENSION") and delivers there; the mailbox query never saw
/// it. The import leaves it out, and mailtable sends its mail to `dev@`
/// as well: the check finds no difference, and says why it is not
/// imported.
#[test]
fn an_inactive_mailbox_with_a_delimiter_is_the_tagged_address() {
    let db = Db::new();
    let url = db.postfixadmin(
        "pfa-tag.db",
        &format!(
            "INSERT INTO domain VALUES ('example.org', '0', '1');
             INSERT INTO mailbox VALUES ('dev@example.org', '{M_HASH}', 'example.org', 0, '1'),
                                        ('dev+old@example.org', '{M_HASH}', 'example.org', 0, '0');
             INSERT INTO alias VALUES ('dev@example.org', 'dev@example.org', '1');"
        ),
    );
    let (v, _) = db.import_json(&["--from", "sql", &url], 0);
    assert_eq!(v["verification"]["differences"], Value::Array(vec![]));
    assert_eq!(v["verification"]["checked"], 2);
    assert_eq!(
        v["refused_inactive"],
        serde_json::json!(["dev+old@example.org"])
    );
    assert!(
        whys(&v, "not_imported").contains("by the entry of its address without the tag"),
        "{v}"
    );
    assert_eq!(
        db.resolve("dev+old@example.org").1,
        set(&["dev@example.org"])
    );
}

/// A target in one of the sources' domains that no entry answers: the
/// source bounced mail through it, and the import, which cannot tell it
/// from an address kept elsewhere, leaves the entry out and says so.
#[test]
fn a_target_without_an_entry_is_named() {
    let db = Db::new();
    let args = db.sources(&[(
        "smtpd-aliases",
        "dangling-virtuals",
        "a@example.org nobody@example.org, x@example.net\n\
         b@example.org y@example.net\n"
            .into(),
    )]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (v, _) = db.import_json(&args, 0);
    let not = whys(&v, "not_imported");
    assert!(
        not.contains("a@example.org points to nobody@example.org, which has no entry"),
        "{not}"
    );
    assert_eq!(db.resolve("a@example.org").0, "not-found");
    assert_eq!(db.resolve("b@example.org").1, set(&["y@example.net"]));
}

/// `:error:` entries delivered nothing in smtpd: bounced, not mail lost;
/// a bare key whose addresses a catch-all now takes is said to go there.
#[test]
fn error_entries_bounced_and_redirects_are_named() {
    let db = Db::new();
    let args = db.sources(&[
        (
            "smtpd-aliases",
            "err-virtuals",
            "m@example.org m\n\
             err@example.org :error:550 gone\n\
             temp@example.org m, :error:451 later\n\
             postmaster gilles@example.org\n\
             @example.net m\n"
                .into(),
        ),
        (
            "smtpd-credentials",
            "err-credentials",
            format!("m@example.org m@example.org:{M_HASH}\n"),
        ),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (v, _) = db.import_json(&args, 0);
    // postmaster@ of both domains went to gilles@ through the bare key:
    // in example.org it is lost, in example.net the catch-all takes it.
    assert_eq!(
        v["undeliverable"],
        serde_json::json!(["postmaster@example.org"])
    );
    let not = whys(&v, "not_imported");
    assert!(
        not.contains("smtpd answered every message to it with this error"),
        "{not}"
    );
    assert_eq!(v["verification"]["differences"], Value::Array(vec![]));
    assert_eq!(
        v["verification"]["redirected"],
        serde_json::json!([{
            "address": "postmaster@example.net",
            "source": "an entry that is not imported",
            "mailtable": "m@example.org"
        }])
    );
    assert_eq!(db.resolve("err@example.org").0, "not-found");
    assert_eq!(db.resolve("temp@example.org").0, "not-found");
}

/// An address whose own entry is not imported but whose login came over
/// as its mailbox (delivered through a shared `vmail` behind a bare key)
/// reaches that mailbox after the import: neither lost nor redirected.
#[test]
fn an_address_reaching_its_own_mailbox_is_not_lost() {
    let db = Db::new();
    let mut args = db.sources(&[
        (
            "smtpd-aliases",
            "own-virtuals",
            "alice@example.com vmail\ncarol@example.com vmail\nvmail vmail\n".into(),
        ),
        (
            "smtpd-credentials",
            "own-credentials",
            format!(
                "alice@example.com alice@example.com:{M_HASH}\n\
                 carol@example.com carol@example.com:{M_HASH}\n"
            ),
        ),
    ]);
    args.push("--partial".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (v, _) = db.import_json(&args, 0);
    assert_eq!(v["undeliverable"], serde_json::json!(["vmail@example.com"]));
    assert_eq!(v["verification"]["redirected"], serde_json::json!([]));
    assert_eq!(
        db.resolve("alice@example.com").1,
        set(&["alice@example.com"])
    );
}

#[test]
fn smtpd_passwd_table_with_aliases() {
    let db = Db::new();
    let args = ["--from", "smtpd-aliases", "virtuals", "smtpd-passwd:passwd"];
    // m's mailbox would not come over: not a success without --partial.
    let (v, err) = db.import_json(&args, 2);
    assert_eq!(
        v["mailboxes_not_imported"],
        serde_json::json!(["local user m"])
    );
    assert!(
        err.contains("9 address(es) and 1 catch-all(s) of the sources would not receive mail"),
        "{err}"
    );
    // The bare keys `root: pi` and `mailer-daemon: postmaster` served
    // root@ and mailer-daemon@ of both domains in smtpd's walk.
    let undeliverable = v["undeliverable"].to_string();
    for a in [
        "root@example.org",
        "root@example.net",
        "mailer-daemon@example.org",
        "mailer-daemon@example.net",
    ] {
        assert!(undeliverable.contains(a), "{a}: {undeliverable}");
    }
    let (v, _) = db.import_json(&[&args[..], &["--partial"]].concat(), 0);
    assert_eq!(v["counts"]["mailboxes"], 2);
    // m has no password in these sources: its entries are reported.
    let not = whys(&v, "not_imported");
    assert!(not.contains("local user m: no login"), "{not}");
    assert!(ats(&v, "not_imported").contains(&"virtuals:9".to_string()));
    assert_eq!(v["verification"]["differences"], Value::Array(vec![]));
    assert_eq!(
        db.resolve("postmaster@example.org").1,
        set(&["gilles@example.org"])
    );
    assert!(db
        .password_of("eric", "example.org")
        .unwrap()
        .starts_with("$5$rounds=10000$"));
}

#[test]
fn dovecot_passwd_file() {
    let db = Db::new();
    // legacy has no domain: its mailbox does not come over.
    let (v, _) = db.import_json(&["--from", "dovecot-passwd", "dovecot-users"], 2);
    assert_eq!(v["mailboxes_not_imported"], serde_json::json!(["legacy"]));
    let (v, _) = db.import_json(
        &["--from", "dovecot-passwd", "dovecot-users", "--partial"],
        0,
    );
    let c = &v["counts"];
    assert_eq!(c["mailboxes"], 5);
    assert_eq!(c["disabled"], 1);
    assert_eq!(c["with_quota"], 2);
    assert_eq!(ats(&v, "not_imported"), ["dovecot-users:10"]);
    assert!(whys(&v, "not_imported").contains("login without a domain"));
    // Schemes only Dovecot checks are flagged for smtpd.
    let flagged: Vec<&str> = v["smtpd_cannot_verify"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["address"].as_str().unwrap())
        .collect();
    assert_eq!(
        flagged,
        ["carol@example.com", "dave@example.com", "erin@example.com"]
    );
    let notes = whys(&v, "notes");
    assert!(
        notes.contains("dovecot-users:12"),
        "the repeated line: {notes}"
    );
    assert!(notes.contains("userdb_mail"), "{notes}");
    assert_eq!(v["verification"]["checked"], 5);

    let find = |a: &str| db.user(a);
    assert_eq!(find("alice@example.com")["quota"], "2G");
    assert_eq!(find("carol@example.com")["quota"], "500M");
    assert_eq!(find("dave@example.com")["active"], false);
    assert!(db
        .password_of("carol", "example.com")
        .unwrap()
        .starts_with("{SSHA512}YhBJbz"));
}

/// A SQLite source whose application is writing when the import starts
/// is read once the writer lets go, not refused at the first lock.
#[test]
fn a_locked_sqlite_source_is_waited_for() {
    let db = Db::new();
    let src = db.source_db("postfix.db", "normalized.sql");
    let writer = rusqlite::Connection::open(&src).unwrap();
    writer.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(700));
        writer.execute_batch("COMMIT").unwrap();
    });
    let url = format!("sqlite://{}", src.display());
    let (v, _) = db.import_json(&["--from", "sql", &url, "--inactive", "disabled"], 0);
    release.join().unwrap();
    assert_eq!(v["status"], "imported");
    assert_eq!(v["counts"]["mailboxes"], 4);
}

#[test]
fn normalized_sql_schema_from_sqlite() {
    let db = Db::new();
    let src = db.source_db("postfix.db", "normalized.sql");
    let url = format!("sqlite://{}", src.display());
    // Disabled on request: the defaults (inactive rows refused as the
    // source refused them) are the PostfixAdmin tests'.
    let (v, _) = db.import_json(&["--from", "sql", &url, "--inactive", "disabled"], 0);
    assert_eq!(v["inactive"], "disabled");
    let c = &v["counts"];
    assert_eq!(c["mailboxes"], 4);
    assert_eq!(
        c["disabled"], 2,
        "carol (inactive) and dan (inactive domain)"
    );
    assert_eq!(c["catch_alls"], 1);
    assert_eq!(c["domain_aliases"], 1);
    let shown = src.display().to_string();
    assert_eq!(
        ats(&v, "not_imported"),
        [format!("{shown}:aliases:7"), format!("{shown}:aliases:10")]
    );
    assert_eq!(v["verification"]["differences"], Value::Array(vec![]));

    assert_eq!(
        db.resolve("bob@example.org").1,
        set(&["bob@example.org", "bob@home.example"])
    );
    assert_eq!(
        db.resolve("info@example.org").1,
        set(&[
            "alice@example.org",
            "bob@example.org",
            "bob@home.example",
            "office@partner.example"
        ])
    );
    assert_eq!(
        db.resolve("sales@example.org").1,
        db.resolve("info@example.org").1
    );
    // The domain alias and the catch-all, as Postfix did.
    assert_eq!(db.resolve("x@old-name.org").1, set(&["alice@example.org"]));
    let users: Value = serde_json::from_str(&db.ok(&["user", "list", "--json"])).unwrap();
    let carol = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["address"] == "carol@example.org")
        .unwrap();
    assert_eq!(carol["active"], false);
}

#[test]
fn a_source_that_would_resolve_differently_is_refused() {
    // Without a self-alias, Postfix gives erin's mail to the catch-all;
    // mailtable would keep it in her mailbox.
    let db = Db::new();
    let src = db.source_db("postfix.db", "normalized.sql");
    rusqlite::Connection::open(&src)
        .unwrap()
        .execute(
            "INSERT INTO users (username, domain, password, name, active) \
             VALUES ('erin', 'example.org', '$2b$10$jmG0D2Kis4rO6wYww9W/A.TvzP2C5PkX9x8ppmIIwwc0dF98vkKoa', 'Erin', TRUE)",
            [],
        )
        .unwrap();
    let before = db.snapshot();
    let (v, err) = db.import_json(&["--from", "sql", src.to_str().unwrap()], 2);
    assert_eq!(v["status"], "refused");
    let d = &v["verification"]["differences"];
    // Each twice: in example.org and in its domain alias old-name.org.
    assert_eq!(d.as_array().unwrap().len(), 4, "{d}");
    // carol is inactive but her self-alias is not: Postfix took the alias
    // and bounced at her mailbox; without her rows the catch-all would
    // take it. Refused too, so an admin decides (`--inactive disabled`,
    // or deactivate the alias as PostfixAdmin does).
    for (i, domain) in [(0, "example.org"), (1, "old-name.org")] {
        assert_eq!(d[i]["address"], format!("carol@{domain}"));
        assert_eq!(d[i]["source"], "not found");
        assert_eq!(d[i]["mailtable"], "alice@example.org");
    }
    for (i, domain) in [(2, "example.org"), (3, "old-name.org")] {
        assert_eq!(d[i]["address"], format!("erin@{domain}"));
        assert_eq!(d[i]["source"], "alice@example.org");
        assert_eq!(d[i]["mailtable"], "erin@example.org");
    }
    assert!(whys(&v, "notes").contains("catch-all @example.org takes its mail"));
    assert!(err.contains("resolve differently"), "{err}");
    assert_eq!(db.snapshot(), before);
}

#[test]
fn verify_lists_differences_after_a_change() {
    let db = Db::new();
    db.import_json(SMTPD, 0);
    db.ok(&["alias", "del", "mayeu@example.org"]);
    db.ok(&["alias", "add", "mayeu@example.org", "gilles@example.org"]);
    let mut args = SMTPD.to_vec();
    args.push("--verify");
    let (v, err) = db.import_json(&args, 1);
    assert_eq!(v["status"], "verified");
    let d = &v["verification"]["differences"];
    assert_eq!(d.as_array().unwrap().len(), 1, "{d}");
    assert_eq!(d[0]["address"], "mayeu@example.org");
    assert_eq!(d[0]["source"], "m@example.org");
    assert_eq!(d[0]["mailtable"], "gilles@example.org");
    assert!(err.contains("1 address(es) resolve differently"), "{err}");
}

#[test]
fn mailtable_database_merges() {
    let db = Db::new();
    db.run_in(
        &["user", "add", "local@here.example", "--password-stdin"],
        Some("pw\n"),
    );
    let src = db.source_db("other.db", "other-mailtable.sql");
    let (v, _) = db.import_json(&["--from", "mailtable", src.to_str().unwrap()], 0);
    let c = &v["counts"];
    assert_eq!(c["mailboxes"], 2);
    assert_eq!(c["patterns"], 1);
    assert_eq!(c["catch_alls"], 1);
    assert_eq!(c["domain_aliases"], 1);
    assert_eq!(c["rows_to_write"], 7);
    assert_eq!(v["verification"]["differences"], Value::Array(vec![]));
    assert_eq!(
        db.resolve("sales-eu@barrera.io").1,
        set(&["hugo@barrera.io", "ana@example.com"])
    );
    assert_eq!(
        db.resolve("hugo+news@barrera.io").1,
        set(&["hugo@barrera.io"])
    );
    assert_eq!(
        db.resolve("contact@example.com").1,
        set(&["hugo@barrera.io"])
    );
    assert_eq!(
        db.resolve("ana@old.example.com").1,
        set(&["ana@example.com"])
    );
    assert_eq!(
        db.resolve("local@here.example").1,
        set(&["local@here.example"])
    );
    assert_eq!(
        db.password_of("hugo", "barrera.io").as_deref(),
        Some(M_HASH)
    );

    // Merging a database whose rows disagree with ours changes nothing.
    let other = db.source_db("third.db", "other-mailtable.sql");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute(
            "UPDATE users SET mailbox = 'someone@else.example' WHERE username = 'contact'",
            [],
        )
        .unwrap();
    let before = db.snapshot();
    let (code, _, err) = db.run(&["import", "--from", "mailtable", other.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(":contact@example.com: already in the database as -> hugo@barrera.io; the source has -> someone@else.example"), "{err}");
    assert_eq!(db.snapshot(), before);
}

/// Rows written by hand in another mailtable database with an upper-case
/// or Unicode domain never matched there (the daemons compare normalised
/// forms): they come over normalised, resolvable, with a note, never as
/// rows that stay dead while the check says all is well.
#[test]
fn hand_written_rows_of_a_mailtable_source_come_over_normalised() {
    let db = Db::new();
    let src = db.dir.path().join("hand.db");
    rusqlite::Connection::open(&src)
        .unwrap()
        .execute_batch(&format!(
            "CREATE TABLE users (username TEXT, domain TEXT, mailbox TEXT, password TEXT);
             INSERT INTO users VALUES ('hugo', 'Barrera.IO', 'hugo@barrera.io', '{M_HASH}'),
                                      ('ann', 'bücher.de', 'ann@bücher.de', '{M_HASH}'),
                                      ('Info', 'Barrera.IO', 'Hugo@Barrera.IO', NULL),
                                      ('%', 'Old.Example', '%@Bücher.de', NULL),
                                      ('caps', 'barrera.io', 'HUGO@BARRERA.IO', NULL);"
        ))
        .unwrap();
    let (v, _) = db.import_json(&["--from", "mailtable", src.to_str().unwrap()], 0);
    assert_eq!(v["verification"]["differences"], Value::Array(vec![]));
    let notes = whys(&v, "notes");
    assert_eq!(
        notes.matches("never matched this row").count(),
        4,
        "{notes}"
    );
    // A key as lookups ask it, only its target in upper case: it matched,
    // and delivered to the folded target.
    assert!(
        notes.contains("its target is written in upper case")
            && notes.contains("caps@barrera.io -> hugo@barrera.io"),
        "{notes}"
    );
    assert_eq!(db.resolve("caps@barrera.io").1, set(&["hugo@barrera.io"]));
    assert_eq!(db.resolve("hugo@barrera.io").1, set(&["hugo@barrera.io"]));
    assert_eq!(db.resolve("info@barrera.io").1, set(&["hugo@barrera.io"]));
    assert_eq!(
        db.resolve("ann@bücher.de").1,
        set(&["ann@xn--bcher-kva.de"])
    );
    assert_eq!(
        db.resolve("ann@old.example").1,
        set(&["ann@xn--bcher-kva.de"])
    );
    let (code, out, _) = db.run(&["domain", "list"]);
    assert_eq!(code, 0);
    assert!(
        !out.contains("Barrera.IO") && !out.contains("bücher"),
        "{out}"
    );
}

#[test]
fn mailtable_database_comes_over_row_for_row() {
    // Rows as the source has them, and only those: the import resolves the
    // source through an index of its rows, and must write exactly what it
    // wrote when it scanned them.
    let db = Db::new();
    let src = db.source_db("other.db", "other-mailtable.sql");
    let copy = db.source_db("copy.db", "other-mailtable.sql");
    let (v, _) = db.import_json(
        &[
            "--from",
            "mailtable",
            src.to_str().unwrap(),
            copy.to_str().unwrap(),
        ],
        0,
    );
    assert_eq!(v["counts"]["rows_to_write"], 7);
    // hugo, ana, contact, and probes of the catch-all and the pattern.
    assert_eq!(v["verification"]["checked"], 5);
    assert_eq!(v["verification"]["differences"], Value::Array(vec![]));
    // The second source repeats the first: noted at its own place.
    let notes = &v["notes"];
    assert!(
        notes.as_array().unwrap().iter().any(|n| n["at"]
            .as_str()
            .unwrap()
            .ends_with("other.db:hugo@barrera.io")
            && n["why"]
                .as_str()
                .unwrap()
                .contains("copy.db:hugo@barrera.io")),
        "{notes}"
    );
    let hugo = format!("{:?}", Some(M_HASH));
    let ana = format!(
        "{:?}",
        Some("$2b$10$e7MZnHbf8r6/8chJXVYQQOTJkUec70Qe5On2paf4tMAKvjJNxEpKG")
    );
    let mut rows = db.snapshot().1;
    rows.sort();
    assert_eq!(
        rows,
        [
            "%@barrera.io hugo@barrera.io None 1 None".to_string(),
            "%@old.example.com %@example.com None 1 None".to_string(),
            format!("ana@example.com ana@example.com {ana} 1 None"),
            "contact@example.com hugo@barrera.io None 1 None".to_string(),
            format!("hugo@barrera.io hugo@barrera.io {hugo} 1 None"),
            "sales-%@barrera.io ana@example.com None 1 None".to_string(),
            "sales-%@barrera.io hugo@barrera.io None 1 None".to_string(),
        ]
    );
}

#[test]
fn usage_errors() {
    let db = Db::new();
    let (code, _, err) = db.run(&["import", "virtuals"]);
    assert_eq!(code, 2);
    assert!(err.contains("FORMAT:virtuals"), "{err}");
    let (code, _, err) = db.run(&["import", "--from", "postfix", "virtuals"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown format \"postfix\""), "{err}");
    let (code, _, err) = db.run(&["import", "--from", "smtpd-aliases", "no-such-file"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read no-such-file"), "{err}");
    let (code, _, err) = db.run(&[
        "import",
        "--from",
        "mailtable",
        "x.db",
        "smtpd-aliases:virtuals",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("on its own"), "{err}");
    let (code, _, err) = db.run(&[
        "import",
        "--from",
        "sql",
        "postgresql://u:pw@127.0.0.1:1/mail",
    ]);
    // A source server that does not answer is a temporary failure, as
    // for the database itself: run it again later.
    assert_eq!(code, 75, "{err}");
    assert!(
        err.contains("cannot read postgresql://u:***@127.0.0.1:1/mail"),
        "{err}"
    );
}

/// A source with no entries (an empty file, only comments, a failed
/// export) is not an import of nothing: alone, or with only others like
/// it, it is refused and names them; beside a source with entries it is a
/// note of the report.
#[test]
fn an_empty_source_is_refused_alone_and_a_note_beside_others() {
    let db = Db::new();
    let dir = db.dir.path();
    std::fs::write(dir.join("virtuals"), "# filled in later\n\n").unwrap();
    std::fs::write(dir.join("credentials"), "").unwrap();
    // An editor's byte order mark is no entry either.
    std::fs::write(dir.join("passwd"), "\u{feff}# none yet\n").unwrap();
    std::fs::write(dir.join("users"), format!("m@example.org:{M_HASH}\n")).unwrap();
    let src = |format: &str, file: &str| format!("{format}:{}", dir.join(file).display());
    let before = db.snapshot();
    for sources in [
        vec![src("smtpd-aliases", "virtuals")],
        vec![
            src("smtpd-aliases", "virtuals"),
            src("smtpd-credentials", "credentials"),
        ],
        vec![src("dovecot-passwd", "passwd")],
    ] {
        let mut args = vec!["import".to_string()];
        args.extend(sources.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, out, err) = db.run(&args);
        assert_eq!(code, 2, "{sources:?}: {err}\n{out}");
        assert!(err.contains("no entries in"), "{err}");
        for s in &sources {
            assert!(err.contains(s.as_str()), "{s} not named: {err}");
        }
        assert!(err.contains("nothing was changed"), "{err}");
        assert_eq!(db.snapshot(), before);
    }

    let virtuals = src("smtpd-aliases", "virtuals");
    let users = src("dovecot-passwd", "users");
    let (v, _) = db.import_json(&[&users, &virtuals], 0);
    assert_eq!(v["status"], "imported");
    let virtuals_path = dir.join("virtuals").display().to_string();
    assert_eq!(ats(&v, "notes"), [virtuals_path]);
    assert!(whys(&v, "notes").contains("no entries"), "{v}");
    assert_eq!(db.resolve("m@example.org").0, "found");
}

/// `MAILTABLE_TEST_POSTGRES_URL` (the suite's convention, tests/harness.rs),
/// or `None` after printing one line saying the test skipped.
fn postgres_server() -> Option<String> {
    match std::env::var("MAILTABLE_TEST_POSTGRES_URL") {
        Ok(u) if !u.trim().is_empty() => Some(u),
        _ => {
            assert!(
                std::env::var("MAILTABLE_TEST_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "MAILTABLE_TEST_REQUIRE_POSTGRES=1 but MAILTABLE_TEST_POSTGRES_URL is not set"
            );
            println!("skipped: MAILTABLE_TEST_POSTGRES_URL not set");
            None
        }
    }
}

/// Databases created on the test server, dropped when the test ends.
struct PgDatabases {
    server: String,
    names: Vec<String>,
}

impl PgDatabases {
    /// Databases on the test server, or `None` (the test skips).
    fn on_test_server() -> Option<PgDatabases> {
        postgres_server().map(|server| PgDatabases {
            server,
            names: Vec::new(),
        })
    }

    fn exec(url: &str, sql: &str) {
        common::pg_exec(url, sql)
    }

    /// A new database; its URL.
    fn create(&mut self, tag: &str) -> String {
        let name = format!("mailtable_import_{tag}_{}", std::process::id());
        Self::exec(&self.server, &format!("DROP DATABASE IF EXISTS {name}"));
        Self::exec(&self.server, &format!("CREATE DATABASE {name}"));
        self.names.push(name.clone());
        common::pg_url_for(&self.server, &name)
    }

    /// A new database loaded with a fixture's SQL; its URL.
    fn source(&mut self, tag: &str, fixture: &str) -> String {
        let url = self.create(tag);
        let sql = std::fs::read_to_string(Path::new(FIXTURES).join(fixture)).unwrap();
        Self::exec(&url, &sql);
        url
    }
}

impl Drop for PgDatabases {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = std::panic::catch_unwind(|| {
                Self::exec(
                    &self.server,
                    &format!("DROP DATABASE IF EXISTS {n} WITH (FORCE)"),
                )
            });
        }
    }
}

/// A domain alias (`@old.org -> @ex.org`) of a Postfix-style source maps
/// an address to its twin when the twin has something: a mailbox
/// without an alias row, or an alias; a twin with nothing does not match
/// (the address is unknown, as before).
#[test]
fn a_domain_alias_reaches_mailboxes_and_aliases_of_its_target() {
    let db = Db::new();
    let src = db.dir.path().join("domain-alias.db");
    let conn = rusqlite::Connection::open(&src).unwrap();
    conn.execute_batch(&format!(
        "CREATE TABLE domains (domain TEXT);
         CREATE TABLE users (username TEXT, domain TEXT, password TEXT);
         CREATE TABLE aliases (alias TEXT, destination TEXT);
         INSERT INTO domains VALUES ('ex.org'), ('old.org');
         INSERT INTO users VALUES ('alice', 'ex.org', '{M_HASH}');
         INSERT INTO aliases VALUES ('@old.org', '@ex.org'),
                                    ('team@ex.org', 'alice@ex.org');"
    ))
    .unwrap();
    let source = format!("sql:{}", src.display());
    let (v, _) = db.import_json(&[&source], 0);
    assert_eq!(v["verification"]["differences"], Value::Array(vec![]));
    for addr in ["alice@old.org", "team@old.org", "team@ex.org"] {
        assert_eq!(
            db.resolve(addr),
            ("found".to_string(), set(&["alice@ex.org"])),
            "{addr}"
        );
    }
    assert_eq!(db.resolve("nobody@old.org").0, "not-found");
}

/// The normalized tables may be views (docs/import.md), on both kinds of
/// source: the import reads them as it reads the tables, with the same
/// counts and the rows named by their position in the view.
/// Postfix stops expanding where an address expands to itself
/// (cleanup_map1n.c): a catch-all to one of the domain's own mailboxes
/// gives that mailbox its own mail, not a loop. Where a mailbox without an
/// alias of its own loses its mail to the catch-all, the import is
/// refused with the difference, never imported with the catch-all and the
/// aliases through it dropped.
#[test]
fn a_catch_all_to_a_mailbox_of_its_domain_is_no_loop() {
    let db = Db::new();
    let src = db.dir.path().join("catch-all.db");
    let conn = rusqlite::Connection::open(&src).unwrap();
    conn.execute_batch(&format!(
        "CREATE TABLE domains (domain TEXT);
         CREATE TABLE users (username TEXT, domain TEXT, password TEXT);
         CREATE TABLE aliases (alias TEXT, destination TEXT);
         INSERT INTO domains VALUES ('ex.org');
         INSERT INTO users VALUES ('alice', 'ex.org', '{M_HASH}'), ('bob', 'ex.org', '{M_HASH}');
         INSERT INTO aliases VALUES ('@ex.org', 'alice@ex.org'),
                                    ('team@ex.org', 'alice@ex.org,bob@ex.org');"
    ))
    .unwrap();
    let source = format!("sql:{}", src.display());
    let before = db.snapshot();
    // bob has no alias of its own: the catch-all takes its mail in the
    // source, so bob's and team's mail would go elsewhere after.
    let (v, err) = db.import_json(&[&source], 2);
    assert!(
        err.contains("2 address(es) would resolve differently"),
        "{err}"
    );
    let diffs: Vec<(&str, &str)> = v["verification"]["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["address"].as_str().unwrap(),
                d["source"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        diffs,
        [
            ("bob@ex.org", "alice@ex.org"),
            ("team@ex.org", "alice@ex.org")
        ]
    );
    assert_eq!(ats(&v, "not_imported"), Vec::<String>::new());
    // The note says how to keep bob's mail where it went; alice's own
    // catch-all gives her her own mail: no note about her.
    let notes = whys(&v, "notes");
    assert!(notes.contains("alias bob@ex.org -> bob@ex.org"), "{notes}");
    assert!(
        !notes.contains("alias alice@ex.org -> alice@ex.org"),
        "{notes}"
    );
    assert_eq!(db.snapshot(), before);

    conn.execute_batch("INSERT INTO aliases VALUES ('bob@ex.org', 'bob@ex.org')")
        .unwrap();
    let (v, _) = db.import_json(&[&source], 0);
    assert_eq!(v["verification"]["checked"], 4);
    assert_eq!(db.resolve("zz@ex.org").1, set(&["alice@ex.org"]));
    assert_eq!(db.resolve("alice@ex.org").1, set(&["alice@ex.org"]));
    assert_eq!(
        db.resolve("team@ex.org").1,
        set(&["alice@ex.org", "bob@ex.org"])
    );
}

#[test]
fn normalized_tables_may_be_views() {
    const AS_VIEWS: &str = "ALTER TABLE users RENAME TO users_t; \
         ALTER TABLE aliases RENAME TO aliases_t; \
         CREATE VIEW users AS SELECT * FROM users_t; \
         CREATE VIEW aliases AS SELECT * FROM aliases_t;";
    let db = Db::new();
    let src = db.source_db("postfix.db", "normalized.sql");
    let mut sources = vec![format!("sqlite://{}", src.display())];
    rusqlite::Connection::open(&src)
        .unwrap()
        .execute_batch(AS_VIEWS)
        .unwrap();
    let mut pg = PgDatabases::on_test_server();
    if let Some(pg) = pg.as_mut() {
        let url = pg.source("views", "normalized.sql");
        PgDatabases::exec(&url, AS_VIEWS);
        sources.push(url);
    }
    for source in &sources {
        let (v, _) = db.import_json(
            &[
                "--dry-run",
                "--from",
                "sql",
                source,
                "--inactive",
                "disabled",
            ],
            0,
        );
        let c = &v["counts"];
        assert_eq!(
            (&c["mailboxes"], &c["disabled"], &c["catch_alls"]),
            (
                &serde_json::json!(4),
                &serde_json::json!(2),
                &serde_json::json!(1)
            ),
            "{source}: {c}"
        );
        assert_eq!(v["verification"]["differences"], serde_json::json!([]));
    }
}

#[test]
fn postgresql_source_and_target() {
    let Some(mut pg) = PgDatabases::on_test_server() else {
        return;
    };
    let source = pg.source("src", "normalized.sql");
    let target = pg.create("dst");

    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_mailtable"))
            .current_dir(FIXTURES)
            .arg("--database")
            .arg(&target)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (code, _, err) = run(&["init"]);
    assert_eq!(code, 0, "{err}");
    // As normalized_sql_schema_from_sqlite: inactive rows imported
    // disabled, on request (the default refuses them, as the source did).
    let (code, out, err) = run(&[
        "import",
        "--from",
        "sql",
        &source,
        "--inactive",
        "disabled",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}\n{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["inactive"], "disabled");
    assert_eq!(v["counts"]["mailboxes"], 4);
    assert_eq!(v["counts"]["disabled"], 2);
    // PostgreSQL has no rowid: rows are named by their position.
    assert_eq!(v["not_imported"].as_array().unwrap().len(), 2, "{v}");
    assert!(v["not_imported"][0]["at"]
        .as_str()
        .unwrap()
        .ends_with(":aliases:7"));
    assert_eq!(v["verification"]["differences"], Value::Array(vec![]));
    let (code, out, _) = run(&["resolve", "x@old-name.org", "--json"]);
    assert_eq!(code, 0);
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["destinations"], serde_json::json!(["alice@example.org"]));

    // Again: everything is present, nothing to write; --verify agrees.
    let (code, out, err) = run(&[
        "import",
        "--from",
        "sql",
        &source,
        "--inactive",
        "disabled",
        "--verify",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["counts"]["rows_to_write"], 0);
}

/// The smtpd 6.x setup of `smtpd6/`: logins without a domain, virtual
/// addresses delivered to system users of other names.
const SMTPD6: &[&str] = &[
    "--from",
    "smtpd-aliases",
    "smtpd6/virtuals",
    "smtpd-credentials:smtpd6/credentials",
];

/// A new database with the `smtpd6/` setup imported with `extra` options,
/// expecting `code`; the JSON report.
fn smtpd6_import(extra: &[&str], code: i32) -> (Db, Value) {
    let db = Db::new();
    let (v, _) = db.import_json(&[SMTPD6, extra].concat(), code);
    (db, v)
}

/// Where every address of `smtpd6/virtuals` went in smtpd, with hugo's
/// login placed at `hugo_at`.
fn smtpd6_delivery(db: &Db, hugo_at: &str) {
    let cases: &[(&str, &[&str])] = &[
        ("gilles@example.org", &["gilles@example.org"]),
        ("g@example.org", &["gilles@example.org"]),
        ("eric@example.org", &["eric@example.org"]),
        (
            "webmaster@example.org",
            &["gilles@example.org", "eric@example.org"],
        ),
        ("anyone@example.net", &["eric@example.org"]),
        ("hugo@example.org", &[hugo_at]),
        ("hugo@example.net", &[hugo_at]),
    ];
    for (addr, want) in cases {
        assert_eq!(db.resolve(addr), ("found".to_string(), set(want)), "{addr}");
    }
    assert_eq!(db.resolve("nobody@example.org").0, "not-found");
}

#[test]
fn bare_logins_are_placed_where_the_virtual_table_is_unambiguous() {
    let db = Db::new();
    let before = db.snapshot();
    // hugo has two addresses: his login cannot be placed, his mail would
    // bounce, so the import is refused and says which option settles it.
    let (v, err) = db.import_json(SMTPD6, 2);
    assert_eq!(v["status"], "refused");
    // hugo@example.net would reach example.net's catch-all: not lost, but
    // someone else's mailbox, and the report says so.
    assert_eq!(v["undeliverable"], serde_json::json!(["hugo@example.org"]));
    assert_eq!(
        v["verification"]["redirected"][0]["address"],
        "hugo@example.net"
    );
    // vhugo is hugo's mailbox: one mailbox, counted once, as the login.
    assert_eq!(v["mailboxes_not_imported"], serde_json::json!(["hugo"]));
    assert!(err.contains("--partial"), "{err}");
    // The count of the report's first line: the redirected address still
    // receives mail.
    assert!(err.contains("1 address(es)"), "{err}");
    let not = whys(&v, "not_imported");
    assert!(
        not.contains("--login-domain DOMAIN or --map hugo=ADDRESS settles it"),
        "{not}"
    );
    assert_eq!(db.snapshot(), before, "nothing changed");

    // The text report says it on its first line.
    let (code, out, _) = db.run(&[
        "import",
        "--from",
        "smtpd-aliases",
        "smtpd6/virtuals",
        "smtpd-credentials:smtpd6/credentials",
    ]);
    assert_eq!(code, 2);
    assert!(
        out.contains("  hugo@example.net -> eric@example.org"),
        "{out}"
    );
    assert_eq!(
        out.lines().next().unwrap(),
        "mailtable import: 1 address(es) of the sources will not receive mail: \
         hugo@example.org; 1 would reach another mailbox (see redirected)"
    );

    // Each placement is a decision the report states.
    let notes = whys(&v, "notes");
    assert!(
        notes.contains(
            "login gilles becomes gilles@example.org, the one address with the local part \
             gilles that delivers to a local user (vgilles)"
        ),
        "{notes}"
    );
    assert!(
        notes.contains("login eric becomes eric@example.org"),
        "{notes}"
    );
    assert!(
        notes.contains("local user vgilles is the mailbox of gilles@example.org"),
        "{notes}"
    );
}

/// A `--map` that places nothing (no such bare login) is refused, and so
/// is one login mapped twice to different addresses: either would make
/// the import differ silently from what was asked.
#[test]
fn a_map_that_places_nothing_or_twice_is_refused() {
    let db = Db::new();
    let before = db.snapshot();
    let (v, _) = db.import_json(
        &[
            SMTPD6,
            &["--map=hugo=hugo@example.org", "--map=nobody=x@example.org"],
        ]
        .concat(),
        2,
    );
    let conflicts = v["conflicts"].to_string();
    assert!(
        conflicts.contains("the sources have no login nobody without a domain"),
        "{conflicts}"
    );
    assert_eq!(db.snapshot(), before);
    let (code, _, err) = db.run(
        &[
            &["import"][..],
            SMTPD6,
            &["--map=hugo=hugo@example.org", "--map=Hugo=hugo@example.net"],
        ]
        .concat(),
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--map hugo: given twice, as hugo@example.org and as hugo@example.net"),
        "{err}"
    );
    assert_eq!(db.snapshot(), before);
}

#[test]
fn map_and_login_domain_settle_an_ambiguous_login() {
    let (db, v) = smtpd6_import(&["--map=hugo=hugo@example.org"], 0);
    assert_eq!(v["status"], "imported");
    assert_eq!(v["undeliverable"], serde_json::json!([]));
    assert!(whys(&v, "notes")
        .contains("login hugo becomes hugo@example.org, as --map hugo=hugo@example.org says"));
    assert_eq!(v["verification"]["differences"], serde_json::json!([]));
    assert_eq!(v["verification"]["checked"], 7, "{}", v["verification"]);
    smtpd6_delivery(&db, "hugo@example.org");
    // Hashes byte for byte.
    let creds = std::fs::read_to_string(Path::new(FIXTURES).join("smtpd6/credentials")).unwrap();
    for (login, domain) in [
        ("gilles", "example.org"),
        ("eric", "example.org"),
        ("hugo", "example.org"),
    ] {
        let line = creds
            .lines()
            .find(|l| l.starts_with(&format!("{login} ")))
            .unwrap();
        let hash = line.split_once(':').unwrap().1;
        assert_eq!(
            db.password_of(login, domain).as_deref(),
            Some(hash),
            "{login}"
        );
    }

    let (db, v) = smtpd6_import(&["--login-domain", "example.net"], 0);
    assert_eq!(v["verification"]["differences"], serde_json::json!([]));
    smtpd6_delivery(&db, "hugo@example.net");
    assert!(db.password_of("hugo", "example.net").is_some());
    assert!(
        db.password_of("gilles", "example.org").is_some(),
        "evidence first"
    );
}

/// A login placed by `--login-domain` at an address without an entry of
/// its own that a catch-all served: its mail went to the catch-all's
/// target until now, so it is no new address, and the check holds the
/// change of mailbox against the import.
#[test]
fn a_placed_login_that_a_catch_all_served_is_no_new_address() {
    let db = Db::new();
    let args = db.sources(&[
        (
            "smtpd-aliases",
            "virtuals",
            "gilles@example.org vgilles\n@example.org gilles@example.org\n".into(),
        ),
        (
            "smtpd-credentials",
            "credentials",
            format!("gilles gilles:{M_HASH}\neric eric:{M_HASH}\n"),
        ),
    ]);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend(["--login-domain", "example.org"]);
    let (v, _) = db.import_json(&args, 2);
    let notes = whys(&v, "notes");
    assert!(
        notes.contains("its mail went through the entry @example.org until now"),
        "{notes}"
    );
    assert!(!notes.contains("a new address"), "{notes}");
    assert_eq!(
        v["verification"]["differences"][0]["address"],
        "eric@example.org"
    );
}

#[test]
fn partial_imports_what_can_come_over() {
    let (db, v) = smtpd6_import(&["--partial"], 0);
    assert_eq!(v["status"], "imported");
    assert_eq!(v["undeliverable"].as_array().unwrap().len(), 1);
    assert_eq!(v["verification"]["redirected"].as_array().unwrap().len(), 1);
    assert_eq!(db.resolve("g@example.org").1, set(&["gilles@example.org"]));
    assert_eq!(db.resolve("hugo@example.org").0, "not-found");
}

#[test]
fn an_import_of_nothing_is_not_a_success() {
    // The alias table without its credentials: no mailbox can be placed.
    let db = Db::new();
    let (code, out, err) = db.run(&["import", "--from", "smtpd-aliases", "smtpd6/virtuals"]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.starts_with(
            "mailtable import: 6 address(es) and 1 catch-all(s) of the sources will not receive mail"
        ),
        "{out}"
    );
    assert!(err.contains("nothing would be imported"), "{err}");
    assert!(err.contains("no rest for --partial"), "{err}");
    // --partial has no rest to import: still refused, nothing written.
    let before = db.snapshot();
    let (code, out, err) = db.run(&[
        "import",
        "--partial",
        "--from",
        "smtpd-aliases",
        "smtpd6/virtuals",
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(
        err.contains("nothing would be imported") && err.contains("no rest for --partial"),
        "{err}"
    );
    assert!(out.contains("result: refused, nothing written"), "{out}");
    assert_eq!(db.snapshot(), before);
}

/// Text tables as editors leave them: a UTF-8 byte order mark before a
/// first comment line, CRLF line ends, tabs and runs of spaces between key
/// and value, trailing blanks, upper-case keys and domains, a blank line
/// and no newline after the last line. smtpd reads all of it (table(5);
/// `parse_table_line` strips the blanks and `\r`), and so does the import.
#[test]
fn messy_text_tables_read_as_smtpd_reads_them() {
    let db = Db::new();
    let virtuals = db.dir.path().join("virtuals");
    let credentials = db.dir.path().join("credentials");
    std::fs::write(
        &virtuals,
        "\u{feff}# virtual users, saved by a Windows editor\r\n\
         M@Example.ORG\tm \t\r\n\
         \r\n\
         Mayeu@example.org    m,  gilles@example.org \r\n\
         @Example.NET\t\tm\r\n\
         gilles@example.org  vgilles",
    )
    .unwrap();
    std::fs::write(
        &credentials,
        format!("m@example.org\tm@example.org:{M_HASH}\r\nGILLES  gilles:{M_HASH}  \r\n"),
    )
    .unwrap();
    let (v, _) = db.import_json(
        &[
            "--from",
            "smtpd-aliases",
            virtuals.to_str().unwrap(),
            &format!("smtpd-credentials:{}", credentials.display()),
        ],
        0,
    );
    assert_eq!(v["not_imported"], serde_json::json!([]));
    assert_eq!(v["verification"]["differences"], serde_json::json!([]));
    let notes = whys(&v, "notes");
    assert!(
        notes.contains("virtuals:1\" \"the file starts with a UTF-8 byte order mark"),
        "{notes}"
    );
    for (addr, want) in [
        ("m@example.org", &["m@example.org"][..]),
        (
            "mayeu@example.org",
            &["m@example.org", "gilles@example.org"],
        ),
        ("anyone@example.net", &["m@example.org"]),
        ("gilles@example.org", &["gilles@example.org"]),
    ] {
        assert_eq!(db.resolve(addr), ("found".to_string(), set(want)), "{addr}");
    }
    assert_eq!(db.password_of("m", "example.org").as_deref(), Some(M_HASH));
    assert_eq!(
        db.password_of("gilles", "example.org").as_deref(),
        Some(M_HASH)
    );
}

/// A mailbox the source delivered to but that has no password (an SQL
/// user whose password is NULL, a Dovecot userdb-only entry) does not come
/// over: its mail would bounce from now on, so the import is refused
/// without `--partial`, and the report's first line names it.
/// An import that writes the first rows of a domain must not break the
/// database's own forwards into it (as `user add` must not): refused,
/// nothing written, the broken forward named.
#[test]
fn an_import_that_makes_a_domain_ours_must_not_break_forwards() {
    let db = Db::new();
    db.run_in(
        &["user", "add", "hugo@a.org", "--password-stdin"],
        Some("pw\n"),
    );
    let out = db.run_in(&["alias", "add", "team@a.org", "bar@ext.test"], None);
    assert!(out.status.success());
    let before = db.snapshot();
    let (code, _, err) = db.import_sources(&[
        (
            "smtpd-aliases",
            "vv",
            "foo@ext.test vmail-foo\n".to_string(),
        ),
        (
            "smtpd-credentials",
            "cc",
            format!("foo@ext.test foo@ext.test:{M_HASH}\n"),
        ),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("ext.test would become one of our domains")
            && err.contains("team@a.org: mail to team@a.org would fail"),
        "{err}"
    );
    assert_eq!(db.snapshot(), before, "nothing written");
    // With the forward's own target in the source, its mail stays here.
    let (code, out, err) = db.import_sources(&[
        (
            "smtpd-aliases",
            "vv",
            "foo@ext.test vmail-foo\nbar@ext.test vmail-bar\n".to_string(),
        ),
        (
            "smtpd-credentials",
            "cc",
            format!("foo@ext.test foo@ext.test:{M_HASH}\nbar@ext.test bar@ext.test:{M_HASH}\n"),
        ),
    ]);
    assert_eq!(code, 0, "{out}{err}");
}

/// An address mailtable cannot store (`%` is its wildcard) is left
/// behind like a mailbox without a password, from every kind of source:
/// a login or mailbox refuses the import without `--partial`, and every
/// such address is counted on the report's first line.
#[test]
fn an_address_mailtable_cannot_store_is_mail_left_behind() {
    let db = Db::new();
    let (code, out, err) = db.import_sources(&[
        (
            "smtpd-aliases",
            "vv",
            "ok@example.org vmail-ok\n100%@example.org vmail-pc\n50%@example.org ok@example.org\n"
                .to_string(),
        ),
        (
            "smtpd-credentials",
            "cc",
            format!("ok@example.org ok@example.org:{M_HASH}\n100%@example.org 100%@example.org:{M_HASH}\n"),
        ),
    ]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        out.starts_with("mailtable import: 2 address(es) of the sources will not receive mail"),
        "{out}"
    );
    assert!(
        out.contains("100%@example.org") && out.contains("50%@example.org"),
        "{out}"
    );
    assert!(
        err.contains("would not come over (100%@example.org)"),
        "{err}"
    );
    assert!(db.snapshot().1.is_empty(), "nothing written");

    let db = Db::new();
    let url = db.postfixadmin(
        "pfa.db",
        &format!(
            "INSERT INTO domain VALUES ('example.org', '0', '1');
             INSERT INTO mailbox VALUES ('alice@example.org', '{M_HASH}', 'example.org', 0, '1'),
                                        ('100%@example.org', '{M_HASH}', 'example.org', 0, '1');
             INSERT INTO alias VALUES ('alice@example.org', 'alice@example.org', '1'),
                                      ('100%@example.org', '100%@example.org', '1'),
                                      ('5%@example.org', 'alice@example.org', '1');"
        ),
    );
    let (code, out, err) = db.run(&["import", "--from", "sql", &url]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        out.starts_with("mailtable import: 2 address(es) of the sources will not receive mail"),
        "{out}"
    );
    assert!(out.contains("5%@example.org"), "{out}");
    assert!(
        err.contains("would not come over (100%@example.org)"),
        "{err}"
    );
    let (v, _) = db.import_json(&["--from", "sql", &url, "--partial"], 0);
    assert_eq!(v["status"], "imported");
    assert_eq!(
        db.resolve("alice@example.org").1,
        set(&["alice@example.org"])
    );
}

#[test]
fn a_mailbox_without_a_password_is_mail_left_behind() {
    let db = Db::new();
    let src = db.dir.path().join("users.db");
    rusqlite::Connection::open(&src)
        .unwrap()
        .execute_batch(&format!(
            "CREATE TABLE users (username TEXT, domain TEXT, password TEXT, active INTEGER);
             INSERT INTO users VALUES ('alice', 'example.org', '{M_HASH}', 1),
                                      ('dave', 'example.org', NULL, 1),
                                      ('olga', 'example.org', NULL, 0);
             CREATE TABLE aliases (alias TEXT, destination TEXT, active INTEGER);
             INSERT INTO aliases VALUES ('alice@example.org', 'alice@example.org', 1),
                                        ('dave@example.org', 'dave@example.org', 1);"
        ))
        .unwrap();
    let url = format!("sqlite://{}", src.display());
    let (code, out, err) = db.run(&["import", "--from", "sql", &url]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.starts_with("mailtable import: 1 address(es) of the sources will not receive mail: dave@example.org"),
        "{out}"
    );
    assert!(
        err.contains("would not come over (dave@example.org)"),
        "{err}"
    );
    assert!(err.contains("--partial"), "{err}");
    // dave's self-alias names the mailbox left behind, not a bounce: the
    // source delivered his mail.
    assert!(
        out.contains("delivers to its own mailbox, which does not come over"),
        "{out}"
    );
    assert!(!out.contains("bounced"), "{out}");
    assert!(db.snapshot().1.is_empty(), "nothing written");
    // olga is inactive: her mail was refused already, nothing is lost.
    let (v, _) = db.import_json(&["--from", "sql", &url, "--partial"], 0);
    assert_eq!(
        v["refused_inactive"],
        serde_json::json!(["olga@example.org"])
    );
    assert_eq!(
        db.resolve("alice@example.org").1,
        set(&["alice@example.org"])
    );

    let db = Db::new();
    let users = db.dir.path().join("users");
    std::fs::write(
        &users,
        format!(
            "alice@example.org:{{BLF-CRYPT}}{M_HASH}:5000:5000::/var/vmail/example.org/alice\n\
             shared@example.org::5000:5000::/var/vmail/example.org/shared\n"
        ),
    )
    .unwrap();
    let source = format!("dovecot-passwd:{}", users.display());
    let (code, out, err) = db.run(&["import", &source]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.starts_with("mailtable import: 1 address(es) of the sources will not receive mail: shared@example.org"),
        "{out}"
    );
    assert!(err.contains("shared@example.org"), "{err}");
    db.import_json(&[&source, "--partial"], 0);
    assert_eq!(
        db.password_of("alice", "example.org"),
        Some(format!("{{BLF-CRYPT}}{M_HASH}"))
    );
}

#[test]
fn one_password_in_two_notations_is_one_login() {
    let db = Db::new();
    let args = [
        "smtpd-passwd:one-host/passwd",
        "dovecot-passwd:one-host/users",
    ];
    let (v, _) = db.import_json(&args, 0);
    assert_eq!(v["counts"]["mailboxes"], 3);
    assert_eq!(v["conflicts"], serde_json::json!([]));
    let notes = whys(&v, "notes");
    assert!(
        notes.contains(
            "same login in another notation (bare there, {BLF-CRYPT} here; the first is kept)"
        ),
        "{notes}"
    );
    assert!(!notes.contains('$'), "{notes}");
    // The first source's bytes are kept; Dovecot's quota comes along.
    let passwd = std::fs::read_to_string(Path::new(FIXTURES).join("one-host/passwd")).unwrap();
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        let (local, domain) = f[0].split_once('@').unwrap();
        assert_eq!(db.password_of(local, domain).as_deref(), Some(f[1]));
    }
    assert!(db
        .snapshot()
        .1
        .iter()
        .any(|r| r.starts_with("alice@example.com") && r.ends_with("Some(\"2G\")")));
    assert_eq!(v["verification"]["differences"], serde_json::json!([]));

    // The other order keeps the other notation.
    let db = Db::new();
    db.import_json(&[args[1], args[0]], 0);
    assert!(db
        .password_of("bob", "example.com")
        .unwrap()
        .starts_with("{SHA512-CRYPT}$6$"));

    // A real difference stays a conflict, named without the hash.
    let db = Db::new();
    let (v, err) = db.import_json(&[args[0], "dovecot-passwd:one-host/users-changed"], 2);
    assert!(
        err.contains("bob@example.com: given again with a different password"),
        "{err}"
    );
    assert!(!v["conflicts"].to_string().contains('$'));

    // A database holding the other notation already has that login; alice
    // differs by her quota only, which the smtpd table does not have.
    let db = Db::new();
    db.import_json(&[args[1]], 0);
    let (v, err) = db.import_json(&[args[0]], 2);
    assert_eq!(v["counts"]["keys_already_present"], 2);
    assert!(
        err.contains("alice@example.com: already in the database as a mailbox (quota 2G)"),
        "{err}"
    );
}

/// What an import of `postfixadmin.sql` from `source` must give: every
/// address PostfixAdmin's Postfix queries delivered, delivered the same,
/// and every address they refused (inactive mailboxes and domains: the
/// queries select `active = '1'` rows only) still refused.
fn check_postfixadmin(db: &Db, source: &str) {
    check_postfixadmin_as(db, "sql", source)
}

/// [`check_postfixadmin`] of the source in `format`.
fn check_postfixadmin_as(db: &Db, format: &str, source: &str) {
    let (v, _) = db.import_json(&["--from", format, source], 0);
    assert_eq!(v["status"], "imported");
    assert_eq!(v["inactive"], "reject");
    let c = &v["counts"];
    assert_eq!(c["mailboxes"], 3, "{c}");
    assert_eq!(c["disabled"], 0, "inactive mailboxes are not imported");
    assert_eq!(c["with_quota"], 1);
    assert_eq!(c["catch_alls"], 1);
    assert_eq!(c["domain_aliases"], 1);
    assert_eq!(v["undeliverable"], serde_json::json!([]));
    assert_eq!(
        v["refused_inactive"],
        serde_json::json!([
            "carol@example.org",
            "dan@closed.example",
            "gina@example.com"
        ])
    );
    let not = whys(&v, "not_imported");
    for (at, why) in [
        (":domain:4", "backup MX domain"),
        (
            ":domain:5",
            "inactive domain: the source refused all its mail",
        ),
        (
            ":mailbox:3",
            "inactive mailbox: the source delivered nothing to it",
        ),
        (":mailbox:3", "--inactive disabled"),
        (":mailbox:4", "mailbox of an inactive domain"),
        (":mailbox:6", "inactive mailbox"),
        (":alias:3", "inactive alias"),
        (":alias:4", "alias of an inactive domain"),
        (":alias:8", "inactive alias"),
        (":alias:11", "inactive alias"),
        (":alias_domain:2", "inactive alias"),
        // The vacation target is left out, frank's own copy kept.
        (
            ":alias:10",
            "frank#example.com@autoreply.example.org: PostfixAdmin's vacation",
        ),
        // An alias to an inactive mailbox: that copy bounced, frank's not.
        (
            ":alias:12",
            "target gina@example.com: the source refused its mail",
        ),
        // An alias to nothing but an inactive mailbox bounced entirely.
        (":alias:13", "every target is refused by the source"),
    ] {
        assert!(
            not.lines().any(|l| l.contains(at) && l.contains(why)),
            "{at} {why}: {not}"
        );
    }
    assert_eq!(v["verification"]["differences"], serde_json::json!([]));
    // example.org has a catch-all: its alias domain's tagged addresses
    // went there in the source, which no row keeps.
    let notes = whys(&v, "notes");
    assert!(
        notes.lines().any(|l| l.contains(":alias_domain:1")
            && l.contains(
                "tagged addresses of example.net (u+tag@example.net): PostfixAdmin's \
                 alias-domain catch-all map gave them to the catch-all of example.org"
            )),
        "{notes}"
    );
    assert!(
        !notes.contains("tagged addresses of example.info"),
        "{notes}"
    );

    let cases: &[(&str, &[&str])] = &[
        ("alice@example.org", &["alice@example.org"]),
        (
            "bob@example.org",
            &["bob@example.org", "bob@elsewhere.example"],
        ),
        // carol's mailbox and self-alias are inactive: Postfix finds no
        // alias for her and takes the catch-all.
        ("carol@example.org", &["alice@example.org"]),
        ("postmaster@example.org", &["alice@example.org"]),
        ("abuse@example.org", &["alice@example.org"]),
        (
            "sales@example.org",
            &[
                "alice@example.org",
                "bob@example.org",
                "bob@elsewhere.example",
            ],
        ),
        ("old@example.org", &["alice@example.org"]),
        ("anyone@example.org", &["alice@example.org"]),
        (
            "bob@example.net",
            &["bob@example.org", "bob@elsewhere.example"],
        ),
        (
            "sales@example.net",
            &[
                "alice@example.org",
                "bob@example.org",
                "bob@elsewhere.example",
            ],
        ),
        ("anyone@example.net", &["alice@example.org"]),
        ("frank@example.com", &["frank@example.com"]),
        ("team@example.com", &["frank@example.com"]),
    ];
    for (addr, want) in cases {
        assert_eq!(db.resolve(addr), ("found".to_string(), set(want)), "{addr}");
    }
    assert_eq!(db.resolve("x@relay.example").0, "unknown-domain");
    // Refused in the source, refused now: no catch-all in example.com, and
    // closed.example is no domain of the host any more.
    assert_eq!(db.resolve("gina@example.com").0, "not-found");
    assert_eq!(db.resolve("gone@example.com").0, "not-found");
    assert_eq!(db.resolve("dan@closed.example").0, "unknown-domain");

    // Hashes byte for byte, quotas in Dovecot's units.
    let sql = std::fs::read_to_string(Path::new(FIXTURES).join("postfixadmin.sql")).unwrap();
    for (local, domain) in [
        ("alice", "example.org"),
        ("bob", "example.org"),
        ("frank", "example.com"),
    ] {
        let row = sql
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("('{local}@{domain}'")))
            .unwrap();
        let hash = row.split('\'').nth(3).unwrap();
        assert_eq!(
            db.password_of(local, domain).as_deref(),
            Some(hash),
            "{local}"
        );
    }
    let quota = |a: &str| db.user(a)["quota"].clone();
    assert_eq!(quota("alice@example.org"), "2G");
    assert_eq!(quota("bob@example.org"), Value::Null, "0 is unlimited");

    // Once more: nothing to write, and --verify agrees.
    let (v, _) = db.import_json(&["--from", format, source, "--verify"], 0);
    assert_eq!(v["counts"]["rows_to_write"], 0);
}

/// The same tables as `mysqldump` writes them, read from the file: the
/// same import, row for row, as from the database they were loaded into.
#[test]
fn postfixadmin_tables_from_a_mysqldump_file() {
    let dump = Path::new(FIXTURES).join("postfixadmin.mysqldump");
    let db = Db::new();
    check_postfixadmin_as(&db, "sql-dump", &dump.display().to_string());
    let from_db = Db::new();
    let src = from_db.source_db("postfixadmin.db", "postfixadmin.sql");
    check_postfixadmin(&from_db, &format!("sqlite://{}", src.display()));
    assert_eq!(db.snapshot().1, from_db.snapshot().1);
}

/// A dump of the whole server (`mysqldump --all-databases`, as MariaDB
/// 10.11 writes it: its sandbox line first, then `CREATE DATABASE` and
/// `USE` before each database's tables): PostfixAdmin's database is read,
/// the system database and Roundcube's `users` beside it are not, and the
/// report says which database it read. Two databases with mail tables are
/// refused, naming both; a cut between two statements is refused too,
/// the sandbox line notwithstanding.
#[test]
fn postfixadmin_from_a_dump_of_every_database() {
    let single =
        std::fs::read_to_string(Path::new(FIXTURES).join("postfixadmin.mysqldump")).unwrap();
    let body: String = single
        .lines()
        .filter(|l| !l.starts_with("-- MySQL dump") && !l.starts_with("-- Dump completed"))
        .map(|l| format!("{l}\n"))
        .collect();
    let database = |name: &str, tables: &str| {
        format!(
            "CREATE DATABASE /*!32312 IF NOT EXISTS*/ `{name}` \
             /*!40100 DEFAULT CHARACTER SET utf8mb4 */;\n\nUSE `{name}`;\n{tables}"
        )
    };
    let system = "CREATE TABLE `db` (\n  `Host` char(255) NOT NULL DEFAULT '',\n  \
                  `Db` char(64) NOT NULL DEFAULT '',\n  `User` char(128) NOT NULL DEFAULT ''\n\
                  ) ENGINE=Aria;\nINSERT INTO `db` VALUES ('localhost','postfix','postfix');\n";
    let roundcube =
        "CREATE TABLE `users` (\n  `user_id` int(10) unsigned NOT NULL AUTO_INCREMENT,\n  \
                     `username` varchar(128) NOT NULL,\n  `mail_host` varchar(128) NOT NULL,\n  \
                     PRIMARY KEY (`user_id`)\n) ENGINE=InnoDB;\n\
                     INSERT INTO `users` VALUES (1,'alice@example.org','localhost');\n";
    let dump = |dbs: &[(&str, &str)], complete: bool| {
        let mut text = "/*M!999999\\- enable the sandbox mode */ \n\
                        -- MariaDB dump 10.19  Distrib 10.11.19-MariaDB\n"
            .to_string();
        for (name, tables) in dbs {
            text.push_str(&database(name, tables));
        }
        if complete {
            text.push_str("-- Dump completed on 2024-03-01 10:00:00\n");
        }
        text
    };
    let db = Db::new();
    let all = db.dir.path().join("all.sql");
    let whole = dump(
        &[
            ("mysql", system),
            ("postfix", &body),
            ("roundcube", roundcube),
        ],
        true,
    );
    std::fs::write(&all, &whole).unwrap();
    check_postfixadmin_as(&db, "sql-dump", &all.display().to_string());
    let one = Db::new();
    check_postfixadmin_as(
        &one,
        "sql-dump",
        &Path::new(FIXTURES)
            .join("postfixadmin.mysqldump")
            .display()
            .to_string(),
    );
    assert_eq!(db.snapshot().1, one.snapshot().1);

    let check = Db::new();
    let (v, _) = check.import_json(&["--from", "sql-dump", &all.display().to_string()], 0);
    assert!(
        whys(&v, "notes").contains(
            "the dump holds 3 databases (`mysql`, `postfix`, `roundcube`): read `postfix`, \
             the only one with mail tables"
        ),
        "{}",
        whys(&v, "notes")
    );

    // A compressed dump, and a MySQL URL: each named with the way to
    // read it.
    let gz = db.dir.path().join("all.sql.gz");
    std::fs::write(&gz, b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03").unwrap();
    let (code, _, err) = db.run(&["import", "--from", "sql-dump", &gz.display().to_string()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("is compressed (gzip): give it uncompressed, e.g. `zcat"),
        "{err}"
    );
    for format in ["sql", "sql-dump"] {
        let (code, _, err) = db.run(&["import", "--from", format, "mysql://pfa:s3cret@db/postfix"]);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains("are read from their dump: `mysqldump --default-character-set=utf8mb4 postfix > postfix.sql`"),
            "{err}"
        );
        assert!(!err.contains("s3cret"), "{err}");
    }
    // A dump in another character set: refused at its line.
    let latin1 = db.dir.path().join("latin1.sql");
    std::fs::write(
        &latin1,
        b"-- x\n-- y\nINSERT INTO t VALUES ('J\xfcrgen');\n",
    )
    .unwrap();
    let (code, _, err) = db.run(&[
        "import",
        "--from",
        "sql-dump",
        &latin1.display().to_string(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("latin1.sql: line 3: not UTF-8"), "{err}");
    // A file that is neither SQLite nor SQL text: not called a dump.
    let other = db.dir.path().join("other.db");
    std::fs::write(&other, "hello, this is no database\n").unwrap();
    let (code, _, err) = db.run(&["import", "--from", "sql", &other.display().to_string()]);
    assert_eq!(code, 2, "{err}");
    assert!(!err.contains("is SQL text"), "{err}");
    // Each kind of file given to the other format: said what it is.
    let sqlite = db.source_db("pfa.db", "postfixadmin.sql");
    let (code, _, err) = db.run(&[
        "import",
        "--from",
        "sql-dump",
        &sqlite.display().to_string(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("is a SQLite database, not a dump: read it with --from sql"),
        "{err}"
    );
    let (code, _, err) = db.run(&["import", "--from", "sql", &all.display().to_string()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("is SQL text (a dump), not a SQLite database: read it with --from sql-dump"),
        "{err}"
    );

    let refused = |text: String, why: &str| {
        let db = Db::new();
        let path = db.dir.path().join("dump.sql");
        std::fs::write(&path, text).unwrap();
        let (code, _, err) = db.run(&["import", "--from", "sql-dump", &path.display().to_string()]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains(why), "{err}");
        assert_eq!(db.snapshot().1, Db::new().snapshot().1, "nothing written");
    };
    refused(
        dump(&[("postfix", &body), ("postfix_old", &body)], true),
        "the databases `postfix`, `postfix_old` all have mail tables",
    );
    refused(
        dump(&[("mysql", system), ("roundcube", roundcube)], true),
        "none of its 2 databases (`mysql`, `roundcube`) has PostfixAdmin's tables",
    );
    // Cut after the first mailbox statement: half the mailboxes, which
    // only the missing last line tells.
    let cut_at = whole.find("INSERT INTO `mailbox`").unwrap();
    let cut_at = cut_at + whole[cut_at..].find(";\n").unwrap() + 2;
    refused(whole[..cut_at].to_string(), "it looks cut short");
}

#[test]
fn postfixadmin_tables_from_sqlite() {
    let db = Db::new();
    let src = db.source_db("postfixadmin.db", "postfixadmin.sql");
    check_postfixadmin(&db, &format!("sqlite://{}", src.display()));
}

/// Login switches beyond `active` in PostfixAdmin's layout: mailcow's
/// `active = 2` ("disallow login", mail still delivered) comes over as a
/// disabled mailbox that receives mail, as does one whose `attributes`
/// switch every login off (some off: reported); PostfixAdmin 4's `smtp_active = 0`
/// (SMTP AUTH refused only) is reported, the mailbox imported as it was.
#[test]
fn postfixadmin_and_mailcow_login_switches() {
    let db = Db::new();
    let src = db.source_db("postfixadmin.db", "postfixadmin.sql");
    rusqlite::Connection::open(&src)
        .unwrap()
        .execute_batch(
            "ALTER TABLE mailbox ADD COLUMN smtp_active INTEGER NOT NULL DEFAULT 1;
             UPDATE mailbox SET active = 2 WHERE username = 'bob@example.org';
             UPDATE mailbox SET smtp_active = 0 WHERE username = 'frank@example.com';
             UPDATE mailbox SET smtp_active = 0 WHERE username = 'carol@example.org';
             ALTER TABLE mailbox ADD COLUMN attributes TEXT;
             UPDATE mailbox SET attributes = '{\"imap_access\": \"1\", \"pop3_access\": \"0\", \
               \"smtp_access\": \"1\", \"sieve_access\": \"1\", \"sogo_access\": \"0\"}'
               WHERE username = 'alice@example.org';
             INSERT INTO mailbox (username, password, local_part, domain, active, attributes)
               VALUES ('hank@example.com', '$2y$05$8dQgwmQ1KU9byJcUGpyP1OIo4JgD9ubeH.eGRDWfIQV/axEm3D5Ue',
                 'hank', 'example.com', 1, '{\"imap_access\": \"0\", \"pop3_access\": \"0\", \
                 \"smtp_access\": \"0\", \"sieve_access\": \"0\"}');",
        )
        .unwrap();
    let (v, _) = db.import_json(&["--from", "sql", &src.display().to_string()], 0);
    assert_eq!(v["status"], "imported", "{v}");
    let rows = db.snapshot().1;
    let active_of = |user: &str| {
        rows.iter()
            .find(|r| r.starts_with(&format!("{user} {user} ")))
            .and_then(|r| r.split(' ').nth(3))
            .map(str::to_string)
    };
    assert_eq!(
        active_of("bob@example.org").as_deref(),
        Some("0"),
        "{rows:?}"
    );
    assert_eq!(
        active_of("frank@example.com").as_deref(),
        Some("1"),
        "{rows:?}"
    );
    assert_eq!(
        active_of("alice@example.org").as_deref(),
        Some("1"),
        "{rows:?}"
    );
    assert_eq!(
        active_of("hank@example.com").as_deref(),
        Some("0"),
        "{rows:?}"
    );
    assert_eq!(
        db.resolve("hank@example.com"),
        ("found".to_string(), set(&["hank@example.com"]))
    );
    // bob still receives his mail, and what went to him through aliases.
    assert_eq!(
        db.resolve("bob@example.org"),
        (
            "found".to_string(),
            set(&["bob@example.org", "bob@elsewhere.example"])
        )
    );
    assert_eq!(v["verification"]["differences"], serde_json::json!([]));
    let notes = whys(&v, "notes");
    for (at, why) in [
        (":mailbox:2", "active = 2: mailcow's \\\"disallow login\\\""),
        (
            ":mailbox:5",
            "smtp_active = 0: where Dovecot's queries read it (PostfixAdmin's smtp_active_flag), \
             SMTP AUTH was refused",
        ),
    ] {
        assert!(
            notes.lines().any(|l| l.contains(at) && l.contains(why)),
            "{at} {why}\n{notes}"
        );
    }
    for (at, why) in [
        (
            ":mailbox:1",
            "attributes pop3_access = 0: mailcow refused these logins of this mailbox and \
             allowed the others",
        ),
        (
            ":mailbox:7",
            "attributes imap_access = 0, pop3_access = 0, smtp_access = 0, sieve_access = 0: \
             mailcow refused every login of this mailbox: imported as a disabled mailbox",
        ),
    ] {
        assert!(
            notes.lines().any(|l| l.contains(at) && l.contains(why)),
            "{at} {why}\n{notes}"
        );
    }
    // carol is inactive (not imported): her smtp_active says nothing.
    assert!(!notes.contains(":mailbox:3"), "{notes}");
    assert_eq!(notes.matches("\" \"smtp_active = 0").count(), 1, "{notes}");
}

/// mailcow's tables (PostfixAdmin's layout with mailcow's columns), read
/// as mailcow's Postfix maps read them: its alias domain reaches the
/// target's mailboxes only (not its aliases, not its catch-all), the
/// discard and learn addresses of its `localhost` are reported as targets
/// mailtable cannot hold, a permanent spam alias is an alias, one that
/// expires is reported as losing its mail, an expired one refused mail
/// already, a SOGo resource is no mailbox, and app passwords are counted.
#[test]
fn mailcow_tables_resolve_as_its_postfix_did() {
    let db = Db::new();
    let src = db.source_db("mailcow.db", "postfixadmin.sql");
    rusqlite::Connection::open(&src)
        .unwrap()
        .execute_batch(
            "ALTER TABLE mailbox ADD COLUMN mailbox_path_prefix TEXT DEFAULT '/var/vmail/';
             ALTER TABLE mailbox ADD COLUMN attributes TEXT;
             ALTER TABLE mailbox ADD COLUMN kind TEXT NOT NULL DEFAULT '';
             ALTER TABLE mailbox ADD COLUMN authsource TEXT DEFAULT 'mailcow';
             INSERT INTO mailbox (username, password, local_part, domain, active, kind)
               VALUES ('room@example.org', 'RESOURCE', 'room', 'example.org', 1, 'location');
             UPDATE mailbox SET authsource = 'ldap' WHERE username = 'bob@example.org';
             INSERT INTO alias (address, goto, domain, active) VALUES
               ('discard@example.org', 'null@localhost', 'example.org', 1),
               ('learn@example.org', 'spam@localhost,alice@example.org', 'example.org', 1);
             CREATE TABLE spamalias (address TEXT NOT NULL, goto TEXT NOT NULL,
               description TEXT NOT NULL DEFAULT '', validity INTEGER, permanent INTEGER NOT NULL DEFAULT 0);
             INSERT INTO spamalias (address, goto, validity, permanent) VALUES
               ('shop1@example.org', 'alice@example.org', NULL, 1),
               ('tmp1@example.org', 'alice@example.org', 4102444800, 0),
               ('tmp0@example.org', 'alice@example.org', 1, 0);
             CREATE TABLE app_passwd (id INTEGER PRIMARY KEY, name TEXT, mailbox TEXT,
               password TEXT, active INTEGER NOT NULL DEFAULT 1);
             INSERT INTO app_passwd (name, mailbox, password, active) VALUES
               ('phone', 'alice@example.org', '{BLF-CRYPT}$2y$05$x', 1),
               ('old', 'alice@example.org', '{BLF-CRYPT}$2y$05$y', 0);
             CREATE TABLE sender_acl (id INTEGER PRIMARY KEY, logged_in_as TEXT NOT NULL,
               send_as TEXT NOT NULL, external INTEGER NOT NULL DEFAULT 0);
             INSERT INTO sender_acl (logged_in_as, send_as) VALUES
               ('bob@example.org', 'sales@example.org'), ('bob@example.org', '@example.com');",
        )
        .unwrap();
    let (v, _) = db.import_json(&["--from", "sql", &src.display().to_string()], 0);
    assert_eq!(v["status"], "imported", "{v}");
    assert_eq!(
        v["verification"]["differences"],
        serde_json::json!([]),
        "{v}"
    );
    for (address, to) in [
        ("alice@example.net", &["alice@example.org"][..]),
        (
            "bob@example.net",
            &["bob@example.org", "bob@elsewhere.example"],
        ),
        ("shop1@example.org", &["alice@example.org"]),
        ("learn@example.org", &["alice@example.org"]),
        // example.org's catch-all still takes its own unknown addresses.
        ("nobody@example.org", &["alice@example.org"]),
    ] {
        assert_eq!(
            db.resolve(address),
            ("found".to_string(), set(to)),
            "{address}"
        );
    }
    // Not mailboxes of example.org: an alias, an unknown address; the
    // resource is no mailbox at all.
    for address in ["postmaster@example.net", "nobody@example.net"] {
        assert_eq!(db.resolve(address).0, "not-found", "{address}");
    }
    let rows = db.snapshot().1;
    assert!(!rows.iter().any(|r| r.starts_with("room@")), "{rows:?}");
    assert!(
        !rows.iter().any(|r| r.contains("@example.net %")),
        "no domain alias: {rows:?}"
    );
    let skipped = whys(&v, "not_imported");
    for (at, why) in [
        (":mailbox:7", "kind location: a SOGo resource"),
        (
            ":alias:14",
            "target null@localhost: mailcow's discard address",
        ),
        (":spamalias:2", "temporary alias valid until 4102444800"),
        (":spamalias:3", "expired spam alias"),
    ] {
        assert!(
            skipped.lines().any(|l| l.contains(at) && l.contains(why)),
            "{at} {why}\n{skipped}"
        );
    }
    let notes = whys(&v, "notes");
    for (at, why) in [
        (
            ":alias_domain:1",
            "alias domain of example.org: mailcow's alias-domain map finds only the mailboxes",
        ),
        (
            ":mailbox:2",
            "authsource ldap: mailcow checked this login's password there",
        ),
        ("", "app_passwd: 1 active row(s), each an app password"),
        (
            "",
            "sender_acl: 2 active row(s), each a permission to send as another address",
        ),
        ("", "mailcow's tables (PostfixAdmin's layout)"),
    ] {
        assert!(
            notes.lines().any(|l| l.contains(at) && l.contains(why)),
            "{at} {why}\n{notes}"
        );
    }
    // No alias-domain catch-all map: nothing said of tagged addresses.
    assert!(!notes.contains("tagged addresses"), "{notes}");
    // What the source dropped, learned from, or will expire: example.org's
    // catch-all takes it now, and the report says so.
    let redirected: Vec<&str> = v["verification"]["redirected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["address"].as_str().unwrap())
        .collect();
    assert_eq!(
        redirected,
        [
            "discard@example.org",
            "learn@example.org",
            "tmp1@example.org"
        ],
        "{v}"
    );
}

/// `--inactive disabled`: the inactive mailboxes come over disabled and
/// receive their own mail (the admin's choice, which the check expects),
/// aliases to them deliver there too; hashes still byte for byte.
#[test]
fn postfixadmin_inactive_disabled_on_request() {
    let db = Db::new();
    let src = db.source_db("postfixadmin.db", "postfixadmin.sql");
    let src = format!("sqlite://{}", src.display());
    let (v, _) = db.import_json(&["--from", "sql", &src, "--inactive", "disabled"], 0);
    assert_eq!(v["inactive"], "disabled");
    assert_eq!(v["counts"]["mailboxes"], 6);
    assert_eq!(v["counts"]["disabled"], 3, "carol, dan, gina");
    assert_eq!(v["refused_inactive"], serde_json::json!([]));
    assert_eq!(v["verification"]["differences"], serde_json::json!([]));
    let notes = whys(&v, "notes");
    assert!(notes.contains("--inactive disabled"), "{notes}");
    for (addr, want) in [
        ("carol@example.org", &["carol@example.org"][..]),
        ("gina@example.com", &["gina@example.com"]),
        (
            "team@example.com",
            &["frank@example.com", "gina@example.com"],
        ),
        ("gone@example.com", &["gina@example.com"]),
        ("dan@closed.example", &["dan@closed.example"]),
    ] {
        assert_eq!(db.resolve(addr), ("found".to_string(), set(want)), "{addr}");
    }
    assert_eq!(db.user("gina@example.com")["active"], false);
    assert!(db
        .password_of("gina", "example.com")
        .unwrap()
        .starts_with("$2y$05$Hc7n"));
}

/// A catch-all plus a domain alias: `alias.example` is an alias domain of
/// `example.org` and has a catch-all of its own. With a catch-all in
/// `example.org`, PostfixAdmin's alias-domain catch-all map answers every
/// `u@alias.example` first, so the own catch-all was never used: the domain
/// alias comes over and resolves as Postfix did. Without one, the own
/// catch-all took what `example.org` lacked, which a domain alias cannot
/// say: a conflict, and the report says what to change.
#[test]
fn postfixadmin_alias_domain_with_its_own_catch_all() {
    let tables = format!(
        "INSERT INTO domain VALUES ('example.org', '0', '1'), ('alias.example', '0', '1');
         INSERT INTO mailbox VALUES ('alice@example.org', '{M_HASH}', 'example.org', 0, '1'),
                                    ('bob@example.org', '{M_HASH}', 'example.org', 0, '1');
         INSERT INTO alias VALUES ('alice@example.org', 'alice@example.org', '1'),
                                  ('bob@example.org', 'bob@example.org', '1'),
                                  ('@alias.example', 'bob@example.org', '1');
         CREATE TABLE alias_domain (alias_domain TEXT, target_domain TEXT, active TEXT);
         INSERT INTO alias_domain VALUES ('alias.example', 'example.org', '1');"
    );
    let source = |db: &Db, extra: &str| db.postfixadmin("pfa.db", &format!("{tables}{extra}"));

    let db = Db::new();
    let url = source(
        &db,
        "INSERT INTO alias VALUES ('@example.org', 'alice@example.org', '1');",
    );
    let (v, _) = db.import_json(&["--from", "sql", &url], 0);
    assert_eq!(v["counts"]["domain_aliases"], 1);
    assert!(
        whys(&v, "not_imported")
            .contains(":alias:3\" \"catch-all of alias.example, an alias domain of example.org"),
        "{}",
        whys(&v, "not_imported")
    );
    for (addr, want) in [
        ("bob@alias.example", "bob@example.org"),
        ("alice@alias.example", "alice@example.org"),
        ("anyone@alias.example", "alice@example.org"),
        ("anyone@example.org", "alice@example.org"),
    ] {
        assert_eq!(
            db.resolve(addr),
            ("found".to_string(), set(&[want])),
            "{addr}"
        );
    }

    let db = Db::new();
    let url = source(&db, "");
    let (v, err) = db.import_json(&["--from", "sql", &url], 2);
    assert!(
        err.contains("@alias.example: given again with other targets"),
        "{err}"
    );
    assert!(!err.contains("smtpd"), "a database is not smtpd's: {err}");
    assert!(
        whys(&v, "notes").contains("has a catch-all of its own"),
        "{}",
        whys(&v, "notes")
    );
    assert!(db.snapshot().1.is_empty(), "nothing written");
}

/// PostfixAdmin alias domains Postfix never delivered through: one whose
/// target is a backup MX (relayed, no address of its own here), one that
/// is no row of the `domain` table (Postfix's domain query does not list
/// it). Imported, the first would accept every `x@a5.example` and relay
/// it to `x@bk.example`; both are left out, their addresses unknown as
/// before.
#[test]
fn postfixadmin_alias_domains_to_or_from_no_served_domain_are_left_out() {
    let db = Db::new();
    let url = db.postfixadmin(
        "pfa-served.db",
        &format!(
            "INSERT INTO domain VALUES ('example.org', '0', '1'), ('a5.example', '0', '1'),
                                       ('bk.example', '1', '1');
             INSERT INTO mailbox VALUES ('alice@example.org', '{M_HASH}', 'example.org', 0, '1');
             INSERT INTO alias VALUES ('alice@example.org', 'alice@example.org', '1');
             CREATE TABLE alias_domain (alias_domain TEXT, target_domain TEXT, active TEXT);
             INSERT INTO alias_domain VALUES ('a5.example', 'bk.example', '1'),
                                             ('a4.example', 'example.org', '1');"
        ),
    );
    let (v, _) = db.import_json(&["--from", "sql", &url], 0);
    assert_eq!(v["counts"]["domain_aliases"], 0, "{v}");
    let not = whys(&v, "not_imported");
    assert!(
        not.contains("target bk.example is not a domain the source delivers"),
        "{not}"
    );
    assert!(
        not.contains("a4.example is not a domain of the source"),
        "{not}"
    );
    assert_eq!(db.resolve("x@a5.example").0, "unknown-domain");
    assert_eq!(db.resolve("alice@a4.example").0, "unknown-domain");
    assert_eq!(
        db.resolve("alice@example.org").1,
        set(&["alice@example.org"])
    );
}

/// Alias domains in a chain: `a.example -> b.example -> example.org`.
/// PostfixAdmin's alias-domain maps look `u@a.example` up among the rows of
/// `b.example` only, so `a.example` reached `b.example`'s own addresses and
/// nothing through its alias domain; as two domain aliases the chain would
/// deliver `anyone@a.example` to `anyone@example.org`, which Postfix
/// refused. `c.example -> b2.example -> example.org`, where `b2.example`
/// has no address of its own, reached nothing.
#[test]
fn postfixadmin_alias_domains_in_a_chain_look_one_level_deep() {
    let db = Db::new();
    let url = db.postfixadmin(
        "pfa-chain.db",
        &format!(
            "INSERT INTO domain VALUES ('example.org', '0', '1'), ('a.example', '0', '1'),
                                       ('b.example', '0', '1'), ('c.example', '0', '1'),
                                       ('b2.example', '0', '1'), ('x.example', '0', '1'),
                                       ('y.example', '0', '1'), ('z.example', '0', '1'),
                                       ('k.example', '0', '1'), ('kb.example', '0', '1');
             INSERT INTO mailbox VALUES ('alice@example.org', '{M_HASH}', 'example.org', 0, '1'),
                                        ('bob@b.example', '{M_HASH}', 'b.example', 0, '1'),
                                        ('own@a.example', '{M_HASH}', 'a.example', 0, '1'),
                                        ('zed@z.example', '{M_HASH}', 'z.example', 0, '1');
             INSERT INTO alias VALUES ('alice@example.org', 'alice@example.org', '1'),
                                      ('bob@b.example', 'bob@b.example', '1'),
                                      ('own@a.example', 'own@a.example', '1'),
                                      ('sales@b.example', 'alice@example.org', '1'),
                                      ('own@b.example', 'alice@example.org', '1'),
                                      ('zed@z.example', 'zed@z.example', '1'),
                                      ('@kb.example', 'alice@example.org', '1'),
                                      ('@example.org', 'alice@example.org', '1'),
                                      ('@k.example', 'bob@b.example', '1');
             CREATE TABLE alias_domain (alias_domain TEXT, target_domain TEXT, active TEXT);
             INSERT INTO alias_domain VALUES ('a.example', 'b.example', '1'),
                                             ('b.example', 'example.org', '1'),
                                             ('c.example', 'b2.example', '1'),
                                             ('b2.example', 'example.org', '1'),
                                             ('y.example', 'z.example', '1'),
                                             ('x.example', 'y.example', '1'),
                                             ('z.example', 'example.org', '1'),
                                             ('k.example', 'kb.example', '1'),
                                             ('kb.example', 'example.org', '1');"
        ),
    );
    let (v, _) = db.import_json(&["--from", "sql", &url], 0);
    assert_eq!(v["verification"]["differences"], Value::Array(vec![]));
    let notes = whys(&v, "notes");
    assert!(
        notes.contains("imported as 2 alias(es) u@a.example -> u@b.example"),
        "{notes}"
    );
    assert!(
        whys(&v, "not_imported").contains("mail to c.example was refused"),
        "{}",
        whys(&v, "not_imported")
    );
    for (addr, want) in [
        ("bob@a.example", Some("bob@b.example")),
        ("sales@a.example", Some("alice@example.org")),
        ("sales+x@a.example", Some("alice@example.org")),
        // a.example's own mailbox wins over b.example's alias.
        ("own@a.example", Some("own@a.example")),
        // Through b.example's own alias domain: refused by Postfix.
        ("alice@a.example", None),
        // One level is what an alias domain does.
        ("alice@b.example", Some("alice@example.org")),
        ("alice@b2.example", Some("alice@example.org")),
    ] {
        let got = db.resolve(addr);
        match want {
            Some(w) => assert_eq!(got, ("found".to_string(), set(&[w])), "{addr}"),
            None => assert_eq!(got.0, "not-found", "{addr}"),
        }
    }
    // c.example is left without a row: mailtable does not know the domain,
    // which smtpd refuses as Postfix refused its addresses.
    assert_eq!(db.resolve("alice@c.example").0, "unknown-domain");
    // x -> y -> z, the y -> z link read first: the aliases made for it are
    // no addresses of y's own, so x reached nothing.
    assert_eq!(db.resolve("zed@y.example").1, set(&["zed@z.example"]));
    assert_ne!(db.resolve("zed@x.example").0, "found");
    // kb.example has a catch-all row: its catch-all map answered every
    // address of k.example, before k.example's own catch-all.
    assert_eq!(
        db.resolve("anyone@k.example").1,
        set(&["alice@example.org"])
    );
    assert!(
        whys(&v, "not_imported").contains("catch-all of k.example: never used"),
        "{}",
        whys(&v, "not_imported")
    );
}

#[test]
fn postfixadmin_tables_from_postgresql() {
    let Some(mut pg) = PgDatabases::on_test_server() else {
        return;
    };
    let source = pg.source("pfa", "postfixadmin.sql");
    check_postfixadmin(&Db::new(), &source);
    // The reading role with a schema of its own, first on the default
    // search_path (`"$user", public`): the tables in `public` are still
    // the ones read (the source looked empty).
    let user = source
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split(['@', ':']).next())
        .unwrap_or("postgres")
        .to_string();
    common::pg_exec(&source, &format!("CREATE SCHEMA \"{user}\""));
    check_postfixadmin(&Db::new(), &source);
}

/// The ISPmail guide's tables (`virtual_domains`, `virtual_users`,
/// `virtual_aliases`), from SQLite and from the dump MariaDB writes of
/// them: every address resolves where the guide's Postfix maps sent it,
/// its `email2email` map included (a mailbox gets its own mail before the
/// catch-all); hashes byte for byte, the quota from bytes.
#[test]
fn ispmail_tables_resolve_as_postfix_did() {
    let db = Db::new();
    let src = db.source_db("ispmail.db", "ispmail.sql");
    let (v, _) = db.import_json(&["--from", "sql", &src.display().to_string()], 0);
    assert_eq!(v["status"], "imported", "{v}");
    assert_eq!(v["counts"]["mailboxes"], 3, "{v}");
    assert_eq!(v["counts"]["with_quota"], 1, "{v}");
    assert_eq!(v["counts"]["catch_alls"], 1, "{v}");
    assert!(
        whys(&v, "notes").contains("read with the guide's email2email map"),
        "{}",
        whys(&v, "notes")
    );
    for (address, to) in [
        // email2email: the catch-all does not take a mailbox's mail.
        ("john@example.org", &["john@example.org"][..]),
        (
            "jane@example.org",
            &["jane@example.org", "jane@elsewhere.example"],
        ),
        ("max@example.com", &["max@example.com"]),
        (
            "team@example.org",
            &[
                "john@example.org",
                "jane@example.org",
                "jane@elsewhere.example",
            ],
        ),
        ("postmaster@example.org", &["john@example.org"]),
        ("info@example.com", &["max@example.com"]),
        (
            "nobody@example.org",
            &["jane@example.org", "jane@elsewhere.example"],
        ),
    ] {
        assert_eq!(
            db.resolve(address),
            ("found".to_string(), set(to)),
            "{address}"
        );
    }
    assert_eq!(db.resolve("nobody@example.com").0, "not-found");
    let rows = db.snapshot().1;
    for row in [
        "john@example.org john@example.org Some(\"{BLF-CRYPT}$2y$05$8dQgwmQ1KU9byJcUGpyP1OIo4JgD9ubeH.eGRDWfIQV/axEm3D5Ue\") 1 None",
        "jane@example.org jane@example.org Some(\"{SHA512-CRYPT}$6$saltb2b2b2$RTzKA4I/NipbMba6KIR5vy0e9GQYeoDhH8EQXG4f9cnUpOXRaE6yyzwQTWrfny1dgqzmvKj5KBA9WoJryoCXv0\") 1 Some(\"2G\")",
    ] {
        assert!(rows.iter().any(|r| r == row), "{row}\n{rows:?}");
    }
    let dumped = Db::new();
    let dump = Path::new(FIXTURES).join("ispmail.mysqldump");
    let (v, _) = dumped.import_json(&["--from", "sql-dump", &dump.display().to_string()], 0);
    assert_eq!(v["status"], "imported", "{v}");
    let sorted = |mut r: Vec<String>| {
        r.sort();
        r
    };
    assert_eq!(sorted(dumped.snapshot().1), sorted(rows));
}

/// Where every address of `iredmail.sql` goes, as iRedMail's Postfix maps
/// sent it: the forwardings row of a mailbox's own address keeps the
/// catch-all off its mail, the catch-all's address is the bare domain, the
/// alias domain without a `domain` row of its own is served, the copy to
/// a mailbox whose delivery is off bounced alone.
const IREDMAIL_RESOLVED: &[(&str, &[&str])] = &[
    ("john@example.org", &["john@example.org"]),
    (
        "jane@example.org",
        &["jane@example.org", "jane@elsewhere.example"],
    ),
    ("max@example.com", &["max@example.com"]),
    ("noreply@example.com", &["noreply@example.com"]),
    ("postmaster@example.org", &["john@example.org"]),
    (
        "team@example.org",
        &[
            "john@example.org",
            "jane@example.org",
            "jane@elsewhere.example",
        ],
    ),
    ("info@example.com", &["max@example.com"]),
    ("copy@example.org", &["john@example.org"]),
    ("nobody@example.org", &["john@example.org"]),
    ("nobody+tag@example.org", &["john@example.org"]),
    ("gone@example.org", &["john@example.org"]),
    ("old@example.org", &["john@example.org"]),
    ("john@alias.example", &["john@example.org"]),
    ("nobody@alias.example", &["john@example.org"]),
];

/// iRedMail's tables (`mailbox`, `forwardings`, `domain`, `alias_domain`,
/// written from its documented schema), from SQLite, from the dump
/// MariaDB writes of them, and from PostgreSQL where a test server is
/// given: every address resolves where iRedMail's Postfix maps sent it,
/// hashes byte for byte (`{SSHA512}`, its default, and a bare crypt hash,
/// its `default_pass_scheme = CRYPT`), the quota from megabytes, and the
/// report names what mailtable does not hold.
#[test]
fn iredmail_tables_resolve_as_postfix_did() {
    let db = Db::new();
    let src = db.source_db("iredmail.db", "iredmail.sql");
    let (v, _) = db.import_json(&["--from", "sql", &src.display().to_string()], 0);
    assert_eq!(v["status"], "imported", "{v}");
    assert_eq!(v["counts"]["mailboxes"], 4, "{v}");
    assert_eq!(v["counts"]["disabled"], 1, "{v}");
    assert_eq!(v["counts"]["with_quota"], 2, "{v}");
    assert_eq!(v["counts"]["catch_alls"], 1, "{v}");
    for (address, to) in IREDMAIL_RESOLVED {
        assert_eq!(
            db.resolve(address),
            ("found".to_string(), set(to)),
            "{address}"
        );
    }
    for address in ["held@example.com", "nobody@example.com"] {
        assert_eq!(db.resolve(address).0, "not-found", "{address}");
    }
    assert_eq!(db.resolve("x@old.example").0, "unknown-domain");
    let rows = db.snapshot().1;
    for row in [
        "john@example.org john@example.org Some(\"{BLF-CRYPT}$2y$05$8dQgwmQ1KU9byJcUGpyP1OIo4JgD9ubeH.eGRDWfIQV/axEm3D5Ue\") 1 Some(\"1G\")",
        "jane@example.org jane@example.org Some(\"{SSHA512}Wjk04UtgfFrWMBmv2gs4iWxXIzG4R9rL6YdGoVatS1CkKpTxKsvO80S0UCE+rgNqQK7zdAWMuSmc8kb055Lnv2lyZWRzYWx0\") 1 None",
        "max@example.com max@example.com Some(\"$6$saltb2b2b2$RTzKA4I/NipbMba6KIR5vy0e9GQYeoDhH8EQXG4f9cnUpOXRaE6yyzwQTWrfny1dgqzmvKj5KBA9WoJryoCXv0\") 1 Some(\"2G\")",
        "noreply@example.com noreply@example.com Some(\"{BLF-CRYPT}$2y$05$Qp2M1cK4mYw3pHt8rLd6mOe2pYz9V0sX1bN7cQ4tR8uW3eF6gH2jK\") 0 None",
    ] {
        assert!(rows.iter().any(|r| r == row), "{row}\n{rows:?}");
    }
    let notes = whys(&v, "notes");
    for note in [
        "iRedMail's tables",
        "alias:1\" \"access policy \\\"membersonly\\\"",
        "every login switch is 0",
        "refused its logins where enableimap, enableimapsecured = 0",
        "transport \\\"relay:[mx.example.net]\\\"",
        "recipient_bcc_user: 1 active row(s)",
        "alias_domain:1\" \"tagged addresses of alias.example (u+tag@alias.example): iRedMail's",
        "home /var/vmail/vmail1/example.org/j/o/h/john-2024.01.02.03.04.05/ differs",
    ] {
        assert!(notes.contains(note), "{note}\n{notes}");
    }
    let skipped = whys(&v, "not_imported");
    for why in [
        "mailbox:5\" \"enabledeliver = 0",
        "forwardings:11\" \"target held@example.com",
        "forwardings:13\" \"inactive alias",
    ] {
        assert!(skipped.contains(why), "{why}\n{skipped}");
    }
    let sorted = |mut r: Vec<String>| {
        r.sort();
        r
    };
    let dumped = Db::new();
    let dump = Path::new(FIXTURES).join("iredmail.mysqldump");
    let (v, _) = dumped.import_json(&["--from", "sql-dump", &dump.display().to_string()], 0);
    assert_eq!(v["status"], "imported", "{v}");
    assert_eq!(sorted(dumped.snapshot().1), sorted(rows.clone()));
    let Some(mut pg) = PgDatabases::on_test_server() else {
        return;
    };
    let url = pg.source("iredmail", "iredmail.sql");
    let on_pg = Db::new();
    let (v, _) = on_pg.import_json(&["--from", "sql", &url], 0);
    assert_eq!(v["status"], "imported", "{v}");
    assert_eq!(sorted(on_pg.snapshot().1), sorted(rows));
}

/// The dump of a whole iRedMail host (`mysqldump --all-databases`): next
/// to `vmail` sit Amavisd's (its own `users` and `mailaddr`), iRedAdmin's,
/// iRedAPD's and Roundcube's (`users(username)`) databases; `vmail` is
/// read, as from its own dump, and the report names it.
#[test]
fn iredmail_from_a_dump_of_every_database() {
    let single = std::fs::read_to_string(Path::new(FIXTURES).join("iredmail.mysqldump")).unwrap();
    let body: String = single
        .lines()
        .filter(|l| !l.starts_with("-- MariaDB dump") && !l.starts_with("-- Dump completed"))
        .filter(|l| !l.starts_with("/*M!999999"))
        .map(|l| format!("{l}\n"))
        .collect();
    let table = |name: &str, columns: &str, rows: &str| {
        format!(
            "CREATE TABLE `{name}` (\n{columns}\n) ENGINE=InnoDB;\n\
             INSERT INTO `{name}` VALUES {rows};\n"
        )
    };
    let amavisd = table(
        "users",
        "  `id` int(10) unsigned NOT NULL AUTO_INCREMENT,\n  `priority` smallint(6) NOT NULL \
         DEFAULT 7,\n  `policy_id` int(10) unsigned NOT NULL DEFAULT 1,\n  `email` varbinary(255) \
         NOT NULL,\n  `fullname` varchar(255) DEFAULT NULL,\n  PRIMARY KEY (`id`)",
        "(1,7,1,'john@example.org','John')",
    ) + &table(
        "mailaddr",
        "  `id` int(10) unsigned NOT NULL AUTO_INCREMENT,\n  `priority` smallint(6) NOT NULL \
         DEFAULT 9,\n  `email` varbinary(255) NOT NULL,\n  PRIMARY KEY (`id`)",
        "(1,9,'@.')",
    );
    let iredadmin = table(
        "domain_ownership",
        "  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,\n  `admin` varchar(255) NOT NULL \
         DEFAULT '',\n  `domain` varchar(255) NOT NULL DEFAULT '',\n  `alias_domain` varchar(255) \
         NOT NULL DEFAULT '',\n  PRIMARY KEY (`id`)",
        "(1,'postmaster@example.org','example.org','')",
    );
    let iredapd = table(
        "throttle",
        "  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,\n  `account` varchar(255) NOT NULL,\n  \
         `kind` varchar(10) NOT NULL DEFAULT 'outbound',\n  PRIMARY KEY (`id`)",
        "(1,'@.','outbound')",
    );
    let roundcube = table(
        "users",
        "  `user_id` int(10) unsigned NOT NULL AUTO_INCREMENT,\n  `username` varchar(128) NOT \
         NULL,\n  `mail_host` varchar(128) NOT NULL,\n  PRIMARY KEY (`user_id`)",
        "(1,'john@example.org','127.0.0.1')",
    );
    let mut whole = "/*M!999999\\- enable the sandbox mode */ \n\
                     -- MariaDB dump 10.19  Distrib 10.11.19-MariaDB\n"
        .to_string();
    for (name, tables) in [
        ("amavisd", amavisd.as_str()),
        ("iredadmin", &iredadmin),
        ("iredapd", &iredapd),
        ("roundcubemail", &roundcube),
        ("vmail", &body),
    ] {
        whole.push_str(&format!(
            "CREATE DATABASE /*!32312 IF NOT EXISTS*/ `{name}` \
             /*!40100 DEFAULT CHARACTER SET utf8mb4 */;\n\nUSE `{name}`;\n{tables}"
        ));
    }
    whole.push_str("-- Dump completed on 2026-12-02 10:00:00\n");
    let db = Db::new();
    let all = db.dir.path().join("all.sql");
    std::fs::write(&all, &whole).unwrap();
    let (v, _) = db.import_json(&["--from", "sql-dump", &all.display().to_string()], 0);
    assert_eq!(v["status"], "imported", "{v}");
    assert!(
        whys(&v, "notes").contains(
            "the dump holds 5 databases (`amavisd`, `iredadmin`, `iredapd`, `roundcubemail`, \
             `vmail`): read `vmail`, the only one with mail tables"
        ),
        "{}",
        whys(&v, "notes")
    );
    let one = Db::new();
    let dump = Path::new(FIXTURES).join("iredmail.mysqldump");
    let (w, _) = one.import_json(&["--from", "sql-dump", &dump.display().to_string()], 0);
    assert_eq!(v["counts"], w["counts"]);
    assert_eq!(db.snapshot().1, one.snapshot().1);
}

/// A list address mailtable cannot store (`%` is its wildcard) loses its
/// mail like any list: counted on the first line, not only listed.
#[test]
fn an_iredmail_list_mailtable_cannot_store_is_counted() {
    let db = Db::new();
    let src = db.source_db("iredmail.db", "iredmail.sql");
    rusqlite::Connection::open(&src)
        .unwrap()
        .execute_batch(
            "INSERT INTO maillists (id, address, domain, transport, active) VALUES
               (1, '100%@example.com', 'example.com', 'mlmmj:example.com/pc', 1);",
        )
        .unwrap();
    let (v, _) = db.import_json(&[&format!("sql:{}", src.display())], 0);
    let lost = v["undeliverable"].to_string();
    assert!(lost.contains("100%@example.com"), "{v}");
}

/// An iRedMail `mailbox` table without `enabledeliver` (an older or
/// trimmed schema) delivers to every active mailbox: none is held.
#[test]
fn an_iredmail_mailbox_table_without_enabledeliver_delivers() {
    let db = Db::new();
    let src = db.source_db("iredmail.db", "iredmail.sql");
    rusqlite::Connection::open(&src)
        .unwrap()
        .execute_batch("ALTER TABLE mailbox DROP COLUMN enabledeliver;")
        .unwrap();
    let (v, _) = db.import_json(&[&format!("sql:{}", src.display())], 0);
    let text = v.to_string();
    assert!(!text.contains("enabledeliver = 0"), "{v}");
    assert_eq!(v["verification"]["differences"], Value::Array(vec![]));
}

/// An mlmmj mailing list of iRedMail (`maillists`, delivered by its
/// transport) is nothing mailtable holds: the list and the alias that
/// reaches it are reported as losing their mail on the report's first
/// line, a list a catch-all now takes as redirected, and an inactive list
/// (its mail refused) is no loss.
/// A mailbox whose delivery is off comes over receiving mail with
/// `--inactive disabled`, the copy to it with it.
#[test]
fn iredmail_lists_and_switched_off_delivery() {
    let db = Db::new();
    let src = db.source_db("iredmail.db", "iredmail.sql");
    rusqlite::Connection::open(&src)
        .unwrap()
        .execute_batch(
            "INSERT INTO maillists (id, address, domain, transport, active) VALUES
               (1, 'news@example.com', 'example.com', 'mlmmj:example.com/news', 1),
               (2, 'old-news@example.com', 'example.com', 'mlmmj:example.com/old-news', 0),
               (3, 'events@example.org', 'example.org', 'mlmmj:example.org/events', 1);
             INSERT INTO forwardings (id, address, forwarding, domain, dest_domain, is_maillist) VALUES
               (20, 'news@example.com', 'news@example.com', 'example.com', 'example.com', 1);
             INSERT INTO forwardings (id, address, forwarding, domain, dest_domain, is_list) VALUES
               (21, 'all@example.com', 'news@example.com', 'example.com', 'example.com', 1);
             UPDATE domain SET transport = 'smtp:[mx.example.net]' WHERE domain = 'example.com';
             UPDATE domain SET transport = 'relay:[old.example.net]' WHERE domain = 'old.example';
             ALTER TABLE mailbox ADD COLUMN mailboxformat TEXT NOT NULL DEFAULT 'maildir';
             ALTER TABLE mailbox ADD COLUMN mailboxfolder TEXT NOT NULL DEFAULT 'Maildir';
             ALTER TABLE mailbox ADD COLUMN allow_nets TEXT DEFAULT NULL;
             UPDATE mailbox SET mailboxformat = 'mdbox', mailboxfolder = 'mdbox'
               WHERE username = 'max@example.com';
             UPDATE mailbox SET allow_nets = '192.0.2.0/24,2001:db8::/32'
               WHERE username = 'jane@example.org';",
        )
        .unwrap();
    let source = format!("sql:{}", src.display());
    let (code, out, _) = Db::new().run(&["import", &source]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.lines().next(),
        Some(
            "mailtable import: 2 address(es) of the sources will not receive mail: \
             all@example.com, news@example.com; 1 would reach another mailbox (see redirected)"
        ),
        "{out}"
    );
    let (v, _) = db.import_json(&[&source], 0);
    // A domain relayed elsewhere is said; an inactive one received nothing.
    let notes = whys(&v, "notes");
    assert!(
        notes.contains(
            "domain:2\" \"transport \\\"smtp:[mx.example.net]\\\" (domain.transport): the \
             source delivered this domain's mailboxes there"
        ),
        "{notes}"
    );
    assert!(!notes.contains("old.example.net"), "{notes}");
    for note in [
        "mailbox:2\" \"allow_nets \\\"192.0.2.0/24,2001:db8::/32\\\": Dovecot refused its logins \
         from other networks",
        "mailbox:3\" \"mail mdbox:~/mdbox: the source stored this mailbox's mail so",
    ] {
        assert!(notes.contains(note), "{note}\n{notes}");
    }
    // The default mail location, and no allow_nets, are nothing to say.
    assert_eq!(notes.matches("allow_nets").count(), 1, "{notes}");
    assert_eq!(notes.matches("\" \"mail ").count(), 1, "{notes}");
    assert_eq!(
        v["undeliverable"],
        serde_json::json!(["all@example.com", "news@example.com"]),
        "{v}"
    );
    let skipped = whys(&v, "not_imported");
    for why in [
        "maillists:1\" \"target mailing list (mlmmj:example.com/news): an mlmmj mailing list",
        "forwardings:21\" \"news@example.com (",
        "maillists:2\" \"inactive mailing list",
        "maillists:3\" \"target mailing list (mlmmj:example.org/events)",
    ] {
        assert!(skipped.contains(why), "{why}\n{skipped}");
    }
    assert_eq!(db.resolve("news@example.com").0, "not-found");
    // A list in a domain with a catch-all does not lose its mail: the
    // catch-all takes it, which the report says.
    assert_eq!(
        v["verification"]["redirected"],
        serde_json::json!([{
            "address": "events@example.org",
            "source": "an entry that is not imported",
            "mailtable": "john@example.org",
        }]),
        "{v}"
    );
    assert_eq!(db.resolve("copy@example.org").1, set(&["john@example.org"]));

    let accepting = Db::new();
    let (v, _) = accepting.import_json(&[&source, "--inactive", "disabled"], 0);
    assert!(
        whys(&v, "notes").contains(
            "mailbox:5\" \"enabledeliver = 0: the source refused its mail but let it log in; \
             imported as a mailbox that accepts mail"
        ),
        "{v}"
    );
    assert_eq!(
        accepting.resolve("copy@example.org").1,
        set(&["john@example.org", "held@example.com"])
    );
    assert_eq!(
        accepting.resolve("held@example.com").1,
        set(&["held@example.com"])
    );
}

/// The HowtoForge guides' tables (`domains`, `users` with `email`,
/// `forwardings`), read like the ISPmail guide's with their email2email
/// map: every address resolves where Postfix sent it, the hashes (MySQL's
/// ENCRYPT() DES crypt included, which the report flags as one no daemon
/// of mailtable checks) byte for byte, the quota from bytes.
#[test]
fn howtoforge_tables_resolve_as_postfix_did() {
    let db = Db::new();
    let src = db.source_db("hf.db", "howtoforge.sql");
    let (v, _) = db.import_json(&["--from", "sql", &src.display().to_string()], 0);
    assert_eq!(v["status"], "imported", "{v}");
    assert!(
        whys(&v, "notes").contains("the HowtoForge guide's tables (domains, users, forwardings), read with the guide's email2email map"),
        "{}",
        whys(&v, "notes")
    );
    for (address, to) in [
        ("sales@example.com", &["sales@example.com"][..]),
        (
            "tom@example.net",
            &["tom@example.net", "tom@elsewhere.example"],
        ),
        (
            "info@example.net",
            &[
                "tom@example.net",
                "tom@elsewhere.example",
                "sales@example.com",
            ],
        ),
        ("anyone@example.com", &["sales@example.com"]),
    ] {
        assert_eq!(
            db.resolve(address),
            ("found".to_string(), set(to)),
            "{address}"
        );
    }
    assert_eq!(db.resolve("anyone@example.net").0, "not-found");
    let rows = db.snapshot().1;
    assert!(
        rows.iter()
            .any(|r| r
                == "sales@example.com sales@example.com Some(\"abNANd1rDfiNc\") 1 Some(\"10M\")"),
        "{rows:?}"
    );
    let schemes = v["password_schemes"].to_string();
    assert!(schemes.contains("\"scheme\":\"DES crypt\""), "{schemes}");
}

/// A user deleted but still on lists (a target of ours that matches
/// nothing): Postfix bounces that one copy (virtual(8): user unknown) and
/// delivers the others, or hands it to the domain's catch-all, which its
/// recursive lookup asks. PostfixAdmin and ISPmail sources alike: the
/// target is left out with a note, the list kept; a list of only such
/// targets is not imported; no address is reported as losing its mail.
#[test]
fn a_deleted_user_on_a_list_bounces_only_its_copy() {
    let db = Db::new();
    let src = db.source_db("pfa.db", "postfixadmin.sql");
    rusqlite::Connection::open(&src)
        .unwrap()
        .execute_batch(
            "INSERT INTO alias (address, goto, domain) VALUES \
             ('staff@example.com', 'frank@example.com,deleted@example.com', 'example.com'), \
             ('lonely@example.com', 'deleted@example.com', 'example.com'), \
             ('list@example.org', 'bob@example.org,deleted@example.org', 'example.org');",
        )
        .unwrap();
    let (v, _) = db.import_json(&["--from", "sql", &src.display().to_string()], 0);
    assert_eq!(v["status"], "imported", "{v}");
    assert_eq!(v["undeliverable"], serde_json::json!([]), "{v}");
    let not = whys(&v, "not_imported");
    // The fixture has 13 alias rows: staff is the 14th, lonely the 15th.
    assert!(
        not.contains(":alias:14\" \"target deleted@example.com: the source refused its mail"),
        "{not}"
    );
    assert!(
        not.contains(":alias:15\" \"every target is refused by the source"),
        "{not}"
    );
    assert_eq!(
        db.resolve("staff@example.com"),
        ("found".into(), set(&["frank@example.com"]))
    );
    assert_eq!(db.resolve("lonely@example.com").0, "not-found");
    // example.org's catch-all (to alice) takes deleted@example.org.
    assert_eq!(
        db.resolve("list@example.org"),
        (
            "found".into(),
            set(&[
                "bob@example.org",
                "bob@elsewhere.example",
                "alice@example.org"
            ])
        )
    );

    let isp = Db::new();
    let src = isp.source_db("isp.db", "ispmail.sql");
    rusqlite::Connection::open(&src)
        .unwrap()
        .execute_batch(
            "INSERT INTO virtual_aliases (domain_id, source, destination) VALUES \
             (2, 'staff@example.com', 'max@example.com'), \
             (2, 'staff@example.com', 'deleted@example.com');",
        )
        .unwrap();
    let (v, _) = isp.import_json(&["--from", "sql", &src.display().to_string()], 0);
    assert_eq!(v["undeliverable"], serde_json::json!([]), "{v}");
    assert_eq!(
        isp.resolve("staff@example.com"),
        ("found".into(), set(&["max@example.com"]))
    );
}

/// Another application's tables beside PostfixAdmin's in one database
/// (Roundcube's `users`, which has no password) change nothing; the
/// tables of two mail setups in one database (PostfixAdmin's and the
/// ISPmail guide's, plain and prefixed PostfixAdmin, PostfixAdmin and an
/// empty normalized `users`) are refused naming both, never one read and
/// the other silently left.
#[test]
fn one_database_one_setup() {
    let db = Db::new();
    let src = db.source_db("pfa.db", "postfixadmin.sql");
    let conn = rusqlite::Connection::open(&src).unwrap();
    conn.execute_batch(
        "CREATE TABLE users (user_id INTEGER PRIMARY KEY, username TEXT NOT NULL, \
         mail_host TEXT NOT NULL); INSERT INTO users VALUES (1, 'alice@example.org', 'localhost');",
    )
    .unwrap();
    // A leftover table that looks like half an installation (a mailbox
    // table under a prefix, without its alias table) is none either.
    conn.execute_batch("CREATE TABLE old_mailbox AS SELECT * FROM mailbox;")
        .unwrap();
    check_postfixadmin(&db, &format!("sqlite://{}", src.display()));

    let isp = std::fs::read_to_string(Path::new(FIXTURES).join("ispmail.sql")).unwrap();
    let prefixed = "CREATE TABLE pfa_mailbox AS SELECT * FROM mailbox; \
                    CREATE TABLE pfa_alias AS SELECT * FROM alias;";
    for (extra, names) in [
        (
            isp.as_str(),
            "PostfixAdmin's tables; the ISPmail guide's tables (virtual_domains, virtual_users, virtual_aliases)",
        ),
        (
            prefixed,
            "PostfixAdmin's tables; PostfixAdmin's tables with the prefix pfa_",
        ),
        (
            "CREATE TABLE users (username TEXT, domain TEXT, password TEXT); \
             CREATE TABLE aliases (alias TEXT, destination TEXT);",
            "the normalized users table; PostfixAdmin's tables",
        ),
    ] {
        let db = Db::new();
        let src = db.source_db("two.db", "postfixadmin.sql");
        rusqlite::Connection::open(&src)
            .unwrap()
            .execute_batch(extra)
            .unwrap();
        let (code, _, err) = db.run(&["import", "--from", "sql", &src.display().to_string()]);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains(&format!("holds the tables of several setups ({names})")),
            "{err}"
        );
    }
}

/// A mailbox or alias of a domain the domain table does not list: the
/// guides' Postfix accepted no mail for it (`virtual_mailbox_domains` is
/// that table), so it is not imported, and the report says why.
#[test]
fn a_domain_without_its_row_received_no_mail() {
    for (fixture, rows) in [
        (
            "postfixadmin.sql",
            "INSERT INTO mailbox (username, password, name, maildir, local_part, domain) VALUES \
             ('orphan@nodom.example', '$2y$05$8dQgwmQ1KU9byJcUGpyP1OIo4JgD9ubeH.eGRDWfIQV/axEm3D5Ue', \
              'O', 'nodom.example/orphan/', 'orphan', 'nodom.example'); \
             INSERT INTO alias (address, goto, domain) VALUES \
             ('orphan@nodom.example', 'orphan@nodom.example', 'nodom.example');",
        ),
        (
            "ispmail.sql",
            "INSERT INTO virtual_users (domain_id, email, password) VALUES \
             (1, 'orphan@nodom.example', '{PLAIN}x');",
        ),
    ] {
        // --inactive disabled imports inactive rows, never a mailbox of
        // a domain the source did not serve.
        for extra in [&[][..], &["--inactive", "disabled"]] {
            let db = Db::new();
            let src = db.source_db("src.db", fixture);
            rusqlite::Connection::open(&src)
                .unwrap()
                .execute_batch(rows)
                .unwrap();
            let src = src.display().to_string();
            let (v, _) = db.import_json(&[&["--from", "sql", &src][..], extra].concat(), 0);
            assert!(
                whys(&v, "not_imported").contains(
                    "mailbox of a domain the source does not serve (no row in its domain table"
                ),
                "{fixture} {extra:?}: {}",
                whys(&v, "not_imported")
            );
            assert_ne!(db.resolve("orphan@nodom.example").0, "found", "{fixture}");
            assert!(
                !db.snapshot().1.iter().any(|r| r.contains("nodom.example")),
                "{fixture} {extra:?}"
            );
        }
    }
    // A mailbox of PostfixAdmin's backup MX domain: its mail was relayed
    // to the primary, and an alias to it stays a relay.
    let db = Db::new();
    let src = db.source_db("src.db", "postfixadmin.sql");
    rusqlite::Connection::open(&src)
        .unwrap()
        .execute_batch(
            "INSERT INTO mailbox (username, password, name, maildir, local_part, domain) VALUES \
             ('rel@relay.example', '{PLAIN}x', 'R', 'r/', 'rel', 'relay.example'); \
             INSERT INTO alias (address, goto, domain) VALUES \
             ('fwd@example.org', 'rel@relay.example', 'example.org');",
        )
        .unwrap();
    let src = src.display().to_string();
    db.import_json(&["--from", "sql", &src, "--inactive", "disabled"], 0);
    assert_eq!(
        db.resolve("fwd@example.org"),
        ("found".into(), set(&["rel@relay.example"]))
    );
    assert!(!db
        .snapshot()
        .1
        .iter()
        .any(|r| r.starts_with("rel@relay.example")));
}

/// A PostfixAdmin alias longer than smtpd's alias buffer: Postfix
/// delivered it, smtpd would defer it on every try, so the import is
/// refused naming it (and imports it with `--partial`, still listed as
/// failing).
#[test]
fn a_postfix_alias_longer_than_smtpd_takes_is_refused() {
    let db = Db::new();
    let src = db.source_db("pfa.db", "postfixadmin.sql");
    let goto: Vec<String> = (0..300)
        .map(|i| format!("m{i:03}@partner.example"))
        .collect();
    rusqlite::Connection::open(&src)
        .unwrap()
        .execute(
            "INSERT INTO alias (address, goto, domain) VALUES ('all@example.org', ?1, 'example.org')",
            [goto.join(",")],
        )
        .unwrap();
    let src = src.display().to_string();
    let (code, _, err) = db.run(&["import", "--from", "sql", &src]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("the source delivered would have their mail deferred by smtpd from now on"),
        "{err}"
    );
    assert!(err.contains("all@example.org"), "{err}");
    let (v, _) = db.import_json(&["--from", "sql", &src, "--partial"], 0);
    assert_eq!(v["status"], "imported");
    let failing = v["verification"]["failing"].as_array().unwrap();
    assert!(failing
        .iter()
        .any(|f| f["address"] == "all@example.org" && f["source_delivered"] == true));
}

/// A SQL source says where mail goes: a Dovecot passwd-file given beside
/// it with a user its tables do not have (Postfix never accepted that
/// user's mail) is a difference, never a new mailbox passed as the
/// source's; for PostfixAdmin, the normalized schema and a guide's tables.
#[test]
fn sql_sources_say_where_mail_goes() {
    for (fixture, user) in [
        ("postfixadmin.sql", "extra@example.org"),
        ("normalized.sql", "extra@example.org"),
        ("ispmail.sql", "extra@example.org"),
        // A domain without a catch-all: only the source's own word that
        // it says where mail goes keeps the extra user undeliverable.
        ("postfixadmin.sql", "extra@example.com"),
        ("ispmail.sql", "extra@example.com"),
    ] {
        let db = Db::new();
        let src = db.source_db("src.db", fixture);
        let users = db.dir.path().join("users");
        std::fs::write(
            &users,
            format!("{user}:{{SHA512-CRYPT}}$6$saltb2b2b2$RTzKA4I/NipbMba6KIR5vy0e9GQYeoDhH8EQXG4f9cnUpOXRaE6yyzwQTWrfny1dgqzmvKj5KBA9WoJryoCXv0:5000:5000::/h::\n"),
        )
        .unwrap();
        let (code, out, err) = db.run(&[
            "import",
            &format!("sql:{}", src.display()),
            &format!("dovecot-passwd:{}", users.display()),
        ]);
        assert_eq!(code, 2, "{fixture}: {err}\n{out}");
        // The catch-all of example.org took that mail in the source; at
        // example.com it bounced.
        assert!(
            out.contains(&format!("{user}: the source gives")),
            "{fixture}: {out}"
        );
    }
}

/// A PostfixAdmin alias domain whose target domain is inactive delivered
/// nothing (Postfix refused the target's mail): reported, not imported.
#[test]
fn an_alias_domain_to_an_inactive_domain_is_not_imported() {
    let db = Db::new();
    let src = db.source_db("pfa.db", "postfixadmin.sql");
    rusqlite::Connection::open(&src)
        .unwrap()
        .execute_batch(
            "INSERT INTO domain (domain, description, transport) VALUES ('alias.example', '', ''); \
             INSERT INTO alias_domain (alias_domain, target_domain) VALUES \
             ('alias.example', 'closed.example');",
        )
        .unwrap();
    let (v, _) = db.import_json(&["--from", "sql", &src.display().to_string()], 0);
    let not = whys(&v, "not_imported");
    assert!(
        not.contains("target closed.example is inactive: Postfix refused the mail; not imported"),
        "{not}"
    );
    assert!(!db.snapshot().1.iter().any(|r| r.contains("alias.example")));
}

/// The renames that put PostfixAdmin's tables under a `database_prefix`.
fn prefix_tables(prefix: &str) -> String {
    ["domain", "mailbox", "alias", "alias_domain"]
        .iter()
        .map(|t| format!("ALTER TABLE {t} RENAME TO {prefix}{t};\n"))
        .collect()
}

/// PostfixAdmin's tables under its `database_prefix` (`pfa_mailbox`, ...),
/// SQLite and PostgreSQL: found without being named, imported row for row
/// as without the prefix, and said in a note; two installations under two
/// prefixes in one database are refused, naming both.
#[test]
fn postfixadmin_tables_under_a_database_prefix() {
    let plain = Db::new();
    let src = plain.source_db("postfixadmin.db", "postfixadmin.sql");
    check_postfixadmin(&plain, &format!("sqlite://{}", src.display()));

    let db = Db::new();
    let src = db.source_db("prefixed.db", "postfixadmin.sql");
    let conn = rusqlite::Connection::open(&src).unwrap();
    conn.execute_batch(&prefix_tables("pfa_")).unwrap();
    let url = format!("sqlite://{}", src.display());
    check_postfixadmin(&db, &url);
    assert_eq!(db.snapshot().1, plain.snapshot().1);
    let check = Db::new();
    let (v, _) = check.import_json(&["--from", "sql", &url], 0);
    assert!(
        whys(&v, "notes").contains(
            "PostfixAdmin's tables with the prefix \\\"pfa_\\\" (its database_prefix): read \
             pfa_domain, pfa_mailbox, pfa_alias, pfa_alias_domain;"
        ),
        "{}",
        whys(&v, "notes")
    );
    // Without a prefix, no such note; a table the source lacks is not
    // named as read.
    let plain_src = plain.dir.path().join("postfixadmin.db");
    let (v, _) = Db::new().import_json(&["--from", "sql", &plain_src.display().to_string()], 0);
    assert!(
        !whys(&v, "notes").contains("prefix"),
        "{}",
        whys(&v, "notes")
    );
    let partial = Db::new();
    let src2 = partial.source_db("partial.db", "postfixadmin.sql");
    rusqlite::Connection::open(&src2)
        .unwrap()
        .execute_batch(&format!(
            "{}DROP TABLE pfa_alias_domain;",
            prefix_tables("pfa_")
        ))
        .unwrap();
    let (v, _) = partial.import_json(
        &["--from", "sql", &src2.display().to_string(), "--partial"],
        0,
    );
    assert!(
        whys(&v, "notes").contains("read pfa_domain, pfa_mailbox, pfa_alias; the report"),
        "{}",
        whys(&v, "notes")
    );

    // A second installation beside it.
    conn.execute_batch(
        "CREATE TABLE old_mailbox AS SELECT * FROM pfa_mailbox;\n\
         CREATE TABLE old_alias AS SELECT * FROM pfa_alias;",
    )
    .unwrap();
    let (code, _, err) = Db::new().run(&["import", "--from", "sql", &url]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(
            "holds the tables of several setups (PostfixAdmin's tables with the prefix old_; \
             PostfixAdmin's tables with the prefix pfa_)"
        ),
        "{err}"
    );

    let Some(mut pg) = PgDatabases::on_test_server() else {
        return;
    };
    let source = pg.source("pfaprefix", "postfixadmin.sql");
    PgDatabases::exec(&source, &prefix_tables("pfa_"));
    let db = Db::new();
    check_postfixadmin(&db, &source);
    assert_eq!(db.snapshot().1, plain.snapshot().1);
}

/// How many addresses the big-source runs generate:
/// `MAILTABLE_IMPORT_BENCH_N`, default one million.
fn bench_n() -> usize {
    std::env::var("MAILTABLE_IMPORT_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// Import generated files, `(format, lines of entry i)` each with `n / 2`
/// entries, into a new SQLite database and check that all `n` addresses
/// came over, one row each, and verify; prints the time.
fn big_import(what: &str, n: usize, sources: &[(&str, &dyn Fn(usize) -> String)]) {
    use std::io::Write;
    let db = Db::new();
    let mut args = Vec::new();
    for (i, (format, line)) in sources.iter().enumerate() {
        let path = db.dir.path().join(format!("source{i}"));
        let mut w = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        for k in 0..n / 2 {
            w.write_all(line(k).as_bytes()).unwrap();
        }
        w.flush().unwrap();
        args.push(format!("{format}:{}", path.display()));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let start = std::time::Instant::now();
    let (v, _) = db.import_json(&args, 0);
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(v["counts"]["rows_to_write"], (n / 2 * 2) as u64, "{what}");
    assert_eq!(v["verification"]["checked"], (n / 2 * 2) as u64, "{what}");
    assert_eq!(v["verification"]["differences"], serde_json::json!([]));
    assert_eq!(v["not_imported"], serde_json::json!([]), "{what}");
    println!("{what}: imported and verified {n} addresses in {secs:.1} s");
}

/// The one-host layout of the README's figures: Dovecot's passwd-file
/// holds the users, smtpd's virtual table delivers each to `vmail` (the
/// Dovecot LMTP user) and gives each a second address.
fn dovecot_users_and_aliases(n: usize) {
    big_import(
        "Dovecot users and aliases",
        n,
        &[
            ("dovecot-passwd", &|i| {
                format!("user{i}@d{}.example:{{BLF-CRYPT}}{M_HASH}\n", i % 100)
            }),
            ("smtpd-aliases", &|i| {
                let d = i % 100;
                format!("user{i}@d{d}.example vmail\nalias{i}@d{d}.example user{i}@d{d}.example\n")
            }),
        ],
    );
}

/// The smtpd 6.x layout: logins without a domain, each placed by the one
/// virtual address delivering to a system user of another name, which a
/// second address reaches too. Every login and every local user is looked
/// up among all the keys: this is the run that shows that lookup is not a
/// scan (it was: 20,000 users took 23 s, a million hours).
fn bare_logins(n: usize) {
    big_import(
        "smtpd 6.x bare logins",
        n,
        &[
            ("smtpd-credentials", &|i| format!("u{i} u{i}:{M_HASH}\n")),
            ("smtpd-aliases", &|i| {
                let d = i % 100;
                format!("u{i}@d{d}.example vu{i}\nalias{i}@d{d}.example vu{i}\n")
            }),
        ],
    );
}

/// The big-source layouts at a small size, in every test run: the
/// generators of the README's figures must keep importing cleanly (they
/// once stopped when Dovecot users without a virtual key lost their mail,
/// and only the ignored runs would have shown it).
#[test]
fn big_source_layouts_import_cleanly_at_a_small_size() {
    dovecot_users_and_aliases(2000);
    bare_logins(2000);
}

/// The figures in the README: generated sources of `MAILTABLE_IMPORT_BENCH_N`
/// addresses over 100 domains imported and verified into SQLite. Not run by
/// default; run them on a release build:
/// `cargo test --release -p mailtable --test import -- --ignored --nocapture big_source`.
/// The README's peak memory is the import's maximum resident set size
/// (`/usr/bin/time -v` around the same import run by hand).
#[test]
#[ignore]
fn big_source_imports_and_verifies() {
    dovecot_users_and_aliases(bench_n());
}

/// [`bare_logins`] at the size of [`bench_n`].
#[test]
#[ignore]
fn big_source_of_bare_logins_imports_and_verifies() {
    bare_logins(bench_n());
}

/// Every `mailtable import` command of the README's import section runs,
/// with its paths standing for the fixtures of that layout, and succeeds.
#[test]
fn readme_import_commands_run() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let section = readme
        .split("## Bringing an existing setup over")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    let mut in_sh = false;
    let mut commands = Vec::new();
    for line in section.lines().map(str::trim) {
        match line {
            "```sh" => in_sh = true,
            "```" => in_sh = false,
            l if in_sh => {
                assert!(l.starts_with("mailtable import "), "untested snippet: {l}");
                commands.push(l.to_string());
            }
            _ => {}
        }
    }
    assert_eq!(commands.len(), 9, "{commands:?}");
    let ispmail = Path::new(FIXTURES).join("ispmail.mysqldump");
    let iredmail = Path::new(FIXTURES).join("iredmail.mysqldump");
    let dump = Path::new(FIXTURES).join("postfixadmin.mysqldump");
    for cmd in commands {
        let db = Db::new();
        let pfa = db.source_db("postfixadmin.db", "postfixadmin.sql");
        let pfa = format!("sqlite://{}", pfa.display());
        let fixtures = [
            ("/etc/mail/virtuals", "virtuals"),
            ("/etc/mail/credentials", "credentials"),
            ("/etc/smtpd/virtuals", "smtpd6/virtuals"),
            ("/etc/smtpd/credentials", "smtpd6/credentials"),
            ("/etc/mail/passwd", "one-host/passwd"),
            ("/etc/dovecot/users", "one-host/users"),
            ("/etc/auth", "per-domain"),
            (
                "postgresql://postfixadmin@db.example.org/postfixadmin",
                &pfa,
            ),
            ("postfixadmin.sql", &dump.display().to_string()),
            ("mailserver.sql", &ispmail.display().to_string()),
            ("iredmail.sql", &iredmail.display().to_string()),
        ];
        let args: Vec<String> = cmd
            .split_whitespace()
            .skip(1)
            .map(|a| {
                fixtures
                    .iter()
                    .fold(a.to_string(), |a, (path, f)| a.replace(path, f))
            })
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, out, err) = db.run(&args);
        assert_eq!(code, 0, "{cmd}: {err}\n{out}");
    }
}

/// A pseudo-terminal, opened with posix_openpt(3): the controller side and
/// the device path of the terminal side. Set to 80x24, as a terminal
/// window would be (indicatif sizes the bar from it).
fn open_pty() -> (std::fs::File, PathBuf) {
    use std::os::fd::FromRawFd;
    // SAFETY: plain libc calls on a descriptor this function owns; the
    // name buffer is large enough and NUL-terminated by ptsname_r.
    unsafe {
        let fd = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(fd >= 0, "posix_openpt");
        assert_eq!(libc::grantpt(fd), 0, "grantpt");
        assert_eq!(libc::unlockpt(fd), 0, "unlockpt");
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(fd, name.as_mut_ptr(), name.len()), 0);
        let size = libc::winsize {
            ws_row: 24,
            ws_col: 80,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        libc::ioctl(fd, libc::TIOCSWINSZ, &size);
        let path = std::ffi::CStr::from_ptr(name.as_ptr())
            .to_string_lossy()
            .into_owned();
        (std::fs::File::from_raw_fd(fd), PathBuf::from(path))
    }
}

/// The progress bar is drawn on stderr when it is a terminal, and nothing
/// of it when stderr is a pipe (scripts, `--json` consumers): the same
/// import of 1,500 Dovecot users run both ways.
#[test]
fn progress_bar_on_a_terminal_and_not_in_a_pipe() {
    use std::io::{Read, Write};
    let db = Db::new();
    let users = db.dir.path().join("users");
    {
        let mut u = std::io::BufWriter::new(std::fs::File::create(&users).unwrap());
        for i in 0..1500 {
            writeln!(u, "user{i}@example.org:{{BLF-CRYPT}}{M_HASH}").unwrap();
        }
    }
    let source = format!("dovecot-passwd:{}", users.display());
    let args = ["import", source.as_str(), "--dry-run"];

    let (code, _, err) = db.run(&args);
    assert_eq!(code, 0, "{err}");
    assert!(
        !err.contains("checking") && !err.contains("verifying"),
        "{err:?}"
    );
    assert!(!err.contains('\r') && !err.contains('\u{1b}'), "{err:?}");

    let (mut controller, tty) = open_pty();
    let terminal = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&tty)
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailtable"))
        .arg("--database")
        .arg(db.url())
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(terminal)
        .spawn()
        .unwrap();
    // Read the terminal while the import runs (its buffer is small); the
    // read ends with EIO once the last holder of the terminal side exits.
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = controller.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&seen).into_owned()
    });
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert!(child.wait().unwrap().success(), "{stdout}");
    let drawn = reader.join().unwrap();
    // The bar of each phase: its name, the bar, the count out of 1,500.
    for phase in ["checking", "writing", "verifying"] {
        assert!(drawn.contains(phase), "{phase}: {drawn:?}");
    }
    assert!(
        drawn.contains("1,500") || drawn.contains("1500"),
        "{drawn:?}"
    );
    assert!(drawn.contains('['), "{drawn:?}");
    // The report itself still goes to stdout, untouched by the bar.
    assert!(stdout.starts_with("mailtable import: "), "{stdout}");
}

/// A Dovecot user is a mailbox only where the MTA delivers to it: with
/// smtpd's virtual table in the import, smtpd looks every recipient up
/// there, so a user without a key of its own got the catch-all's mail,
/// or was refused without one. Making such a user a mailbox changes where
/// its mail goes: a difference, refused as smtpd credentials are. A
/// Dovecot file alone, with nothing saying where mail goes, is delivered
/// as it is.
#[test]
fn a_dovecot_user_gets_mail_only_where_the_mta_routes_it() {
    let users = format!("a@ex.org:{{BLF-CRYPT}}{M_HASH}\nd@ex.org:{{BLF-CRYPT}}{M_HASH}\n");
    let creds = format!("a@ex.org {M_HASH}\nd@ex.org {M_HASH}\n");
    for (virtuals, source_gives) in [
        ("a@ex.org vmail\n@ex.org a@ex.org\n", "a@ex.org"),
        ("a@ex.org vmail\n", "not found"),
    ] {
        for (format, logins) in [("dovecot-passwd", &users), ("smtpd-credentials", &creds)] {
            let db = Db::new();
            let dir = db.dir.path();
            std::fs::write(dir.join("virtuals"), virtuals).unwrap();
            std::fs::write(dir.join("logins"), logins).unwrap();
            let before = db.snapshot();
            let virt = format!("smtpd-aliases:{}", dir.join("virtuals").display());
            let logins = format!("{format}:{}", dir.join("logins").display());
            let (v, err) = db.import_json(&[&virt, &logins], 2);
            assert_eq!(v["status"], "refused", "{format} {virtuals:?}: {v}");
            assert_eq!(
                v["verification"]["differences"],
                serde_json::json!([{
                    "address": "d@ex.org",
                    "source": source_gives,
                    "mailtable": "d@ex.org",
                }]),
                "{format} {virtuals:?}"
            );
            assert!(err.contains("would resolve differently"), "{err}");
            assert_eq!(db.snapshot(), before);
        }
    }
    let db = Db::new();
    std::fs::write(db.dir.path().join("users"), &users).unwrap();
    let users = format!("dovecot-passwd:{}", db.dir.path().join("users").display());
    let (v, _) = db.import_json(&[&users], 0);
    assert_eq!(v["status"], "imported");
    assert_eq!(v["verification"]["differences"], serde_json::json!([]));
    assert_eq!(
        db.resolve("d@ex.org"),
        ("found".into(), BTreeSet::from(["d@ex.org".to_string()]))
    );
}

/// An alias whose answer smtpd cannot use (longer than the 2047 bytes its
/// expansion takes: 424 on every try, in the source's smtpd as after the
/// import) comes over, but is never silent: the first line and the
/// `failing` list name it with why; the addresses around it are fine.
#[test]
fn an_alias_smtpd_cannot_expand_is_named_not_silent() {
    let db = Db::new();
    let dir = db.dir.path();
    let targets: Vec<String> = (0..120)
        .map(|i| format!("user{i:03}@partner.test"))
        .collect();
    std::fs::write(
        dir.join("virtuals"),
        format!(
            "big@ex.org {}\nsmall@ex.org a@partner.test\n",
            targets.join(", ")
        ),
    )
    .unwrap();
    let src = format!("smtpd-aliases:{}", dir.join("virtuals").display());
    let (v, _) = db.import_json(&[&src], 0);
    assert_eq!(v["status"], "imported");
    let failing = v["verification"]["failing"].as_array().unwrap();
    assert_eq!(failing.len(), 1, "{v}");
    assert_eq!(failing[0]["address"], "big@ex.org");
    assert!(failing[0]["why"].as_str().unwrap().contains("2047"), "{v}");
    assert_eq!(v["verification"]["differences"], serde_json::json!([]));

    let db = Db::new();
    let dir = db.dir.path();
    std::fs::write(
        dir.join("virtuals"),
        format!(
            "big@ex.org {}\nsmall@ex.org a@partner.test\n",
            targets.join(", ")
        ),
    )
    .unwrap();
    let src = format!("smtpd-aliases:{}", dir.join("virtuals").display());
    let (code, out, _) = db.run(&["import", &src]);
    assert_eq!(code, 0, "{out}");
    let first = out.lines().next().unwrap();
    assert_eq!(
        first,
        "mailtable import: smtpd will defer the mail of 1 address(es) of the sources: \
         big@ex.org (see failing)"
    );
    assert!(
        out.contains("\nfailing: smtpd will defer the mail of 1 address(es)"),
        "{out}"
    );
    assert!(out.contains("\n  big@ex.org: "), "{out}");
}

/// A login without a domain whose address cannot be told (two keys with
/// its local part deliver to its local user): the virtual entries say
/// whose mailbox their local user is and which option settles it, not
/// that no login delivers there; the mailbox is counted once, as the
/// login. `--login-domain` then places it.
#[test]
fn the_entries_of_an_unplaced_login_name_it() {
    let db = Db::new();
    let dir = db.dir.path();
    std::fs::write(
        dir.join("virtuals"),
        "hugo@example.org vhugo\nhugo@example.net vhugo\n",
    )
    .unwrap();
    std::fs::write(dir.join("credentials"), format!("hugo {M_HASH}\n")).unwrap();
    let virt = format!("smtpd-aliases:{}", dir.join("virtuals").display());
    let cred = format!("smtpd-credentials:{}", dir.join("credentials").display());
    let (v, _) = db.import_json(&[&virt, &cred], 2);
    assert_eq!(
        v["mailboxes_not_imported"],
        serde_json::json!(["hugo"]),
        "{v}"
    );
    let whys = whys(&v, "not_imported");
    assert!(
        whys.contains("several addresses with its local part"),
        "{whys}"
    );
    assert_eq!(
        whys.matches(
            "local user vhugo is the mailbox of the login hugo, whose address cannot be told"
        )
        .count(),
        2,
        "{whys}"
    );
    assert!(whys.contains("--map hugo=ADDRESS"), "{whys}");
    assert!(!whys.contains("no login of the sources"), "{whys}");
    let (v, _) = db.import_json(&[&virt, &cred, "--login-domain", "example.org"], 0);
    assert_eq!(v["status"], "imported", "{v}");
    assert_eq!(
        db.resolve("hugo@example.net"),
        (
            "found".into(),
            BTreeSet::from(["hugo@example.org".to_string()])
        )
    );
}

/// `--map` placing a login at another login's address with the same hash
/// joins them: said in those words, not as a repeated line.
#[test]
fn two_logins_placed_at_one_address_are_said_to_become_one() {
    let db = Db::new();
    let dir = db.dir.path();
    std::fs::write(dir.join("virtuals"), "hugo@example.org vhugo\n").unwrap();
    std::fs::write(
        dir.join("credentials"),
        format!("hugo {M_HASH}\nzoe {M_HASH}\n"),
    )
    .unwrap();
    let virt = format!("smtpd-aliases:{}", dir.join("virtuals").display());
    let cred = format!("smtpd-credentials:{}", dir.join("credentials").display());
    let (v, _) = db.import_json(&[&virt, &cred, "--map", "zoe=hugo@example.org"], 0);
    let notes = whys(&v, "notes");
    let first = format!("{}:1", dir.join("credentials").display());
    assert!(
        notes.contains(&format!(
            "login zoe is placed at hugo@example.org, the login of {first} already, with the \
             same password: the two are one login and one mailbox from now on"
        )),
        "{notes}"
    );
    assert!(!notes.contains("same login"), "{notes}");
}

/// An alias whose answer lists, one level deep, an alias smtpd cannot
/// expand fails with it (smtpd expands each listed address in turn): the
/// proof names both, `resolve` reports it, each reason said once.
#[test]
fn an_alias_reaching_one_smtpd_cannot_expand_fails_too() {
    let db = Db::new();
    let dir = db.dir.path();
    let targets: Vec<String> = (0..120)
        .map(|i| format!("user{i:03}@partner.test"))
        .collect();
    std::fs::write(
        dir.join("virtuals"),
        format!(
            "a@example.com vmail\ntop2@example.com l9@example.com, a@example.com\n\
             l9@example.com {}\nfine@example.com a@example.com, x@partner.test\n",
            targets.join(", ")
        ),
    )
    .unwrap();
    std::fs::write(dir.join("credentials"), format!("a@example.com {M_HASH}\n")).unwrap();
    let virt = format!("smtpd-aliases:{}", dir.join("virtuals").display());
    let cred = format!("smtpd-credentials:{}", dir.join("credentials").display());
    let (v, _) = db.import_json(&[&virt, &cred], 0);
    let failing: BTreeMap<String, String> = v["verification"]["failing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["address"].as_str().unwrap().into(),
                f["why"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        failing.keys().collect::<Vec<_>>(),
        ["l9@example.com", "top2@example.com"],
        "{v}"
    );
    assert!(
        failing["l9@example.com"].starts_with("120 destinations"),
        "{failing:?}"
    );
    assert!(
        failing["top2@example.com"].starts_with("l9@example.com: 120 destinations"),
        "{failing:?}"
    );
    for (addr, code) in [
        ("top2@example.com", 75),
        ("l9@example.com", 75),
        ("fine@example.com", 0),
    ] {
        let (c, out, _) = db.run(&["resolve", addr, "--json"]);
        assert_eq!(c, code, "{addr}: {out}");
        let r: Value = serde_json::from_str(&out).unwrap();
        let want = if code == 0 { "found" } else { "error" };
        assert_eq!(r["result"], want, "{addr}: {out}");
    }
}

/// Aliases that fan out into each other level after level (6 per level,
/// each pointing at all 6 of the next, 9 levels, the last at a mailbox):
/// the source walk looks each address up once per depth, not once per way
/// to it (6^9 ways: the import took 19.7 s for these 56 lines), and finds
/// what smtpd does: the first level is past smtpd's depth limit (524), the
/// entry above it bounces with it, every deeper level delivers.
#[test]
fn aliases_fanning_out_into_each_other_import_as_smtpd_delivers_them() {
    use std::fmt::Write;
    let db = Db::new();
    let (width, levels) = (6, 9);
    let mut aliases = String::from("hugo@barrera.io vmail\ntop@dag.org ");
    let level = |l: usize| (0..width).map(move |w| format!("l{l}x{w}@dag.org"));
    aliases.push_str(&level(0).collect::<Vec<_>>().join(", "));
    aliases.push('\n');
    for l in 0..levels {
        for name in level(l) {
            let to = match l + 1 == levels {
                true => "hugo@barrera.io".to_string(),
                false => level(l + 1).collect::<Vec<_>>().join(", "),
            };
            writeln!(aliases, "{name} {to}").unwrap();
        }
    }
    let dir = db.dir.path();
    std::fs::write(dir.join("aliases"), aliases).unwrap();
    std::fs::write(
        dir.join("passwd"),
        format!("hugo@barrera.io:{{BLF-CRYPT}}{M_HASH}\n"),
    )
    .unwrap();
    let passwd = format!("dovecot-passwd:{}", dir.join("passwd").display());
    let virtuals = format!("smtpd-aliases:{}", dir.join("aliases").display());
    let (v, _) = db.import_json(&[&passwd, &virtuals], 0);
    assert_eq!(v["verification"]["checked"], 56, "{v}");
    assert_eq!(v["verification"]["differences"], serde_json::json!([]));
    let skipped: BTreeSet<String> = v["not_imported"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["subject"].as_str().unwrap().to_string())
        .collect();
    let mut want: BTreeSet<String> = level(0).collect();
    want.insert("top@dag.org".into());
    assert_eq!(skipped, want, "{v}");
    for l in 1..levels {
        assert_eq!(
            db.resolve(&format!("l{l}x3@dag.org")),
            (
                "found".to_string(),
                BTreeSet::from(["hugo@barrera.io".to_string()])
            )
        );
    }
}

/// A password locked in the source (passwd(5)'s `!` before the hash, `*`)
/// comes over byte for byte and locked: the report names it as such and
/// asks for no new password, and the mailbox is refused at login.
#[test]
fn locked_passwords_come_over_locked() {
    let db = Db::new();
    let args = db.sources(&[(
        "dovecot-passwd",
        "locked-users",
        format!(
            "open@example.org:{M_HASH}\n\
             shut@example.org:!{M_HASH}\n\
             none@example.org:*\n"
        ),
    )]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (v, text) = db.import_json(&args, 0);
    assert_eq!(v["counts"]["mailboxes"], 3, "{text}");
    for list in [
        "no_daemon_can_verify",
        "smtpd_cannot_verify",
        "dovecot_dict_only",
    ] {
        assert_eq!(v[list], serde_json::json!([]), "{list}: {v}");
    }
    let schemes = v["password_schemes"].to_string();
    assert!(schemes.contains("locked"), "{schemes}");
    // A bare value of a passwd-file is read with Dovecot's CRYPT scheme.
    assert_eq!(
        db.password_of("shut", "example.org"),
        Some(format!("{{CRYPT}}!{M_HASH}"))
    );
    let listed = db.ok(&["user", "list"]);
    assert!(
        listed.contains("shut@example.org  (password locked)"),
        "{listed}"
    );
    assert!(
        listed.contains("none@example.org  (password locked)"),
        "{listed}"
    );
    assert!(
        !listed.contains("open@example.org  (password locked)"),
        "{listed}"
    );
}
