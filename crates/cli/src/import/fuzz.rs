//! Mutated sources through the whole import, on the stable toolchain: the
//! fixtures of every text format and of the `mysqldump` reader, changed at
//! random (bytes flipped, tokens of the formats inserted, ranges cut,
//! repeated or swapped between files), go through their parsers and then
//! through merge, plan, the database check, the writes and the proof
//! against an in-memory store. Nothing may panic: a source is an admin's
//! file from a host that is being left, often hand-edited for years, and a
//! panic would end the import without a report.
//!
//! The inputs are a pure function of the iteration number (a fixed
//! xorshift seed), so a failure names the iteration and shows the input,
//! and the same run finds it again. `MAILTABLE_IMPORT_MUTATIONS=N` runs
//! `N` pipeline iterations (default 400) and ten times as many parser-only
//! ones, for a longer hunt than the default test run.

use super::check::check_database;
use super::merge::LoginHints;
use super::parsed::Parsed;
use super::plan::plan;
use super::verify::verify;
use super::{mysqldump, passwd_file, smtpd, sql};
use crate::args::Inactive;
use indicatif::ProgressBar;
use mailtable_core::store::memory::MemStore;
use mailtable_core::testdata::mutate::{self, mutate as edit, Edits, Rng};
use mailtable_core::{Address, Config, Domain, Resolver, Store};

/// A parser of one text format, as `import` calls it.
type Parser = fn(&str, &str) -> Parsed;

/// Each text fixture with the parser of its format.
const TEXT_SOURCES: &[(&str, Parser, &str)] = &[
    (
        "virtuals",
        smtpd::parse_aliases,
        include_str!("../../tests/fixtures/import/virtuals"),
    ),
    (
        "virtuals-malformed",
        smtpd::parse_aliases,
        include_str!("../../tests/fixtures/import/virtuals-malformed"),
    ),
    (
        "virtuals-conflict",
        smtpd::parse_aliases,
        include_str!("../../tests/fixtures/import/virtuals-conflict"),
    ),
    (
        "smtpd6/virtuals",
        smtpd::parse_aliases,
        include_str!("../../tests/fixtures/import/smtpd6/virtuals"),
    ),
    (
        "credentials",
        smtpd::parse_credentials,
        include_str!("../../tests/fixtures/import/credentials"),
    ),
    (
        "smtpd6/credentials",
        smtpd::parse_credentials,
        include_str!("../../tests/fixtures/import/smtpd6/credentials"),
    ),
    (
        "userinfo",
        smtpd::parse_userinfo,
        include_str!("../../tests/fixtures/import/userinfo"),
    ),
    (
        "passwd",
        smtpd::parse_passwd,
        include_str!("../../tests/fixtures/import/passwd"),
    ),
    (
        "one-host/passwd",
        smtpd::parse_passwd,
        include_str!("../../tests/fixtures/import/one-host/passwd"),
    ),
    (
        "domains",
        smtpd::parse_domains,
        "example.org\nexample.net\n*.example.com\n",
    ),
    (
        "dovecot-users",
        passwd_file::parse,
        include_str!("../../tests/fixtures/import/dovecot-users"),
    ),
    (
        "one-host/users",
        passwd_file::parse,
        include_str!("../../tests/fixtures/import/one-host/users"),
    ),
];

/// The last line `mysqldump` writes, without its date.
const COMPLETED: &str = "-- Dump completed";

/// The `mysqldump` fixtures.
const DUMPS: &[&str] = &[
    include_str!("../../tests/fixtures/import/postfixadmin.mysqldump"),
    include_str!("../../tests/fixtures/import/iredmail.mysqldump"),
    include_str!("../../tests/fixtures/import/ispmail.mysqldump"),
];

/// Pieces of the formats' syntax, inserted whole: a random byte rarely
/// makes a separator, a quote or a scheme prefix appear where it matters.
const TOKENS: &[&str] = &[
    " ",
    "\t",
    "\n",
    "\r\n",
    ",",
    ":",
    "@",
    "%",
    "+",
    "-",
    "\"",
    "'",
    "`",
    "\\",
    "#",
    "|",
    "/",
    "(",
    ")",
    ";",
    "=",
    "{",
    "}",
    "$",
    "*",
    ".",
    "\0",
    "é",
    "\u{feff}",
    "\u{2028}",
    "@@",
    ":error:421 later",
    ":error:550 gone",
    ":include:/etc/x",
    "|/bin/true",
    "/var/mail/x",
    "{SHA512-CRYPT}",
    "{BLF-CRYPT}",
    "{PLAIN}",
    "{CRYPT}",
    "$6$s$h",
    "$2b$10$",
    "userdb_",
    "userdb_quota_rule=*:storage=",
    "nologin",
    "allow_nets=",
    "::",
    "@example.org",
    "x@",
    "%d",
    "%n",
    "NULL",
    "b'1'",
    "b'0'",
    "0x41",
    "INSERT INTO `mailbox` VALUES (",
    "CREATE TABLE `alias` (\n  `address` varchar(255),\n  `goto` text\n);\n",
    "USE `db`;\n",
    "),(",
    "/*!40101 SET x=1 */;",
    "-- c\n",
    "99999999999999999999",
    "-1",
    "true",
    "false",
];

/// `text` changed by one to `most` random edits with the formats'
/// [`TOKENS`], ranges of `others` spliced in; `cut`: an edit may also
/// truncate it.
fn mutate(rng: &mut Rng, text: &str, others: &[&str], most: usize, cut: bool) -> String {
    let tokens: Vec<&[u8]> = TOKENS.iter().map(|t| t.as_bytes()).collect();
    let others: Vec<&[u8]> = others.iter().map(|t| t.as_bytes()).collect();
    let how = Edits {
        tokens: &tokens,
        others: &others,
        most,
        cut,
    };
    // A file is read as bytes; anything that is not UTF-8 is a reader's
    // finding, tested elsewhere. Here every input is text.
    String::from_utf8_lossy(&edit(rng, text.as_bytes(), &how)).into_owned()
}

/// Iterations of the whole pipeline; the parsers alone get ten times as
/// many.
fn iterations() -> u64 {
    mutate::iterations("MAILTABLE_IMPORT_MUTATIONS", 400)
}

/// Runs `f`, and fails the test naming the iteration and the inputs if it
/// panics.
fn no_panic(what: &str, i: u64, inputs: &[(&str, &str)], f: impl FnOnce()) {
    let shown: Vec<String> = inputs
        .iter()
        .map(|(name, text)| format!("--- {name}\n{text}"))
        .collect();
    mutate::no_panic(what, i, shown.join("\n").as_bytes(), f);
}

/// What `import` does with `parsed`, against `db`: plan, check, write
/// (when nothing conflicts) and prove. Returns the rows written and
/// whether the proof ran over at least one address.
fn import_into(parsed: Parsed, db: &mut MemStore, hints: &LoginHints) -> (usize, bool) {
    let Ok((p, mut semantics)) = plan(parsed, db, &Config::default(), hints) else {
        return (0, false);
    };
    let Ok(checked) = check_database(&p, db, &ProgressBar::hidden()) else {
        return (0, false);
    };
    let mut written = 0;
    if p.conflicts.is_empty() && checked.conflicts.is_empty() {
        for g in checked.new_groups(&p) {
            for r in g.rows() {
                written += usize::from(db.insert(&r).is_ok());
            }
        }
    }
    let v = verify(
        &p.known,
        semantics.as_mut(),
        &Resolver::default(),
        db,
        &ProgressBar::hidden(),
    );
    (written, v.is_ok_and(|v| v.checked > 0))
}

#[test]
fn mutated_text_sources_never_panic_a_parser() {
    let texts: Vec<&str> = TEXT_SOURCES.iter().map(|(_, _, t)| *t).collect();
    for i in 0..iterations() * 10 {
        let mut rng = Rng::new(i);
        let (name, parse, text) = TEXT_SOURCES[rng.below(TEXT_SOURCES.len())];
        let input = mutate(&mut rng, text, &texts, 8, true);
        no_panic("parser", i, &[(name, &input)], || {
            let _ = parse(name, &input);
            // The per-domain reading of the same file (`users-%d`).
            if let Ok(d) = Domain::parse("example.org") {
                let _ = passwd_file::parse_in_domain(name, &input, &d);
            }
        });
    }
}

#[test]
fn mutated_dumps_never_panic_the_dump_reader() {
    for i in 0..iterations() * 10 {
        let mut rng = Rng::new(i);
        let dump = DUMPS[rng.below(DUMPS.len())];
        let input = mutate(&mut rng, dump, DUMPS, 8, true);
        no_panic("mysqldump reader", i, &[("dump", &input)], || {
            let _ = mysqldump::parse_dump(&input);
        });
    }
}

/// One to three mutated sources, merged, planned, checked against a
/// database that is empty or holds rows of the fixtures' addresses,
/// written and proven, as `import` does.
#[test]
fn mutated_sources_never_panic_the_import() {
    let texts: Vec<&str> = TEXT_SOURCES.iter().map(|(_, _, t)| *t).collect();
    let (mut proven, mut written) = (0, 0);
    for i in 0..iterations() {
        let mut rng = Rng::new(i ^ 0x5eed);
        let mut inputs = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let (name, parse, text) = TEXT_SOURCES[rng.below(TEXT_SOURCES.len())];
            let text = if rng.below(4) == 0 {
                text.to_string()
            } else {
                mutate(&mut rng, text, &texts, 8, true)
            };
            inputs.push((name, parse, text));
        }
        let hints = match rng.below(3) {
            0 => LoginHints {
                domain: Domain::parse("example.org").ok(),
                ..LoginHints::default()
            },
            1 => {
                let mut h = LoginHints::default();
                if let Ok(a) = Address::parse("gilles@example.org") {
                    h.map.insert("gilles".to_string(), a);
                }
                h
            }
            _ => LoginHints::default(),
        };
        let mut db = if rng.below(2) == 0 {
            MemStore::default()
        } else {
            MemStore::default()
                .with("m", "example.org", "m@example.org", Some("$2b$08$x"))
                .with("team", "example.org", "m@example.org", None)
                .with("%", "example.net", "m@example.org", None)
        };
        let shown: Vec<(&str, &str)> = inputs.iter().map(|(n, _, t)| (*n, t.as_str())).collect();
        no_panic("import", i, &shown, || {
            let mut parsed = Parsed::default();
            for (name, parse, text) in &inputs {
                parsed.absorb(parse(name, text));
            }
            let (w, p) = import_into(parsed, &mut db, &hints);
            written += w;
            proven += usize::from(p);
        });
    }
    // The mutations must leave most sources usable, or this would only
    // test the readers' refusals.
    let n = iterations() as usize;
    eprintln!("{n} imports: {proven} proven, {written} rows written");
    assert!(
        proven * 2 >= n,
        "only {proven} of {n} imports reached a proof"
    );
    assert!(
        written * 2 >= n,
        "only {written} rows written in {n} imports"
    );
}

/// The `mysqldump` fixtures, mutated, through `--from sql-dump` (the dump
/// loaded into SQLite and read as PostfixAdmin's, iRedMail's or the ISPmail
/// guide's tables), then planned, written and proven.
#[test]
fn mutated_dumps_never_panic_the_sql_readers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dump.sql");
    let source = path.to_str().unwrap();
    let n = iterations() / 2;
    let mut proven = 0;
    for i in 0..n {
        let mut rng = Rng::new(i ^ 0xd0d0);
        let dump = DUMPS[rng.below(DUMPS.len())];
        // Fewer edits, none cutting: one stray quote or cut already makes
        // most of a dump unreadable (refused, rightly), and the readers
        // of the tables behind the dump's syntax need tables to read.
        let mut input = mutate(&mut rng, dump, DUMPS, 3, false);
        // A dump without mysqldump's last line is refused as cut short
        // before anything else is read: most mutated dumps keep it, so
        // that the readers behind that check get the rest.
        if rng.below(8) != 0 && !input.contains(COMPLETED) {
            input.push_str("\n-- Dump completed on 2026-01-01  0:00:00\n");
        }
        std::fs::write(&path, &input).unwrap();
        let inactive = if rng.below(2) == 0 {
            Inactive::Reject
        } else {
            Inactive::Disabled
        };
        no_panic("sql-dump import", i, &[("dump", &input)], || {
            let Ok(parsed) = sql::read_dump(source, inactive) else {
                return;
            };
            let (_, p) = import_into(parsed, &mut MemStore::default(), &LoginHints::default());
            proven += usize::from(p);
        });
    }
    eprintln!("{n} dump imports: {proven} proven");
    assert!(
        proven * 3 >= n as usize,
        "only {proven} of {n} dump imports reached a proof"
    );
}

/// The SQL fixtures (`--from sql`: the normalized schema, PostfixAdmin,
/// the ISPmail and HowtoForge guides, iRedMail).
const SCRIPTS: &[&str] = &[
    include_str!("../../tests/fixtures/import/normalized.sql"),
    include_str!("../../tests/fixtures/import/postfixadmin.sql"),
    include_str!("../../tests/fixtures/import/ispmail.sql"),
    include_str!("../../tests/fixtures/import/howtoforge.sql"),
    include_str!("../../tests/fixtures/import/iredmail.sql"),
];

/// A value of any type SQLite stores, whatever the column was declared
/// as: databases of PHP panels hold `''` for NULL, numbers in text
/// columns, and bytes that are not UTF-8.
fn odd_value(rng: &mut Rng, texts: &[&str]) -> rusqlite::types::Value {
    use rusqlite::types::Value;
    match rng.below(9) {
        0 => Value::Null,
        1 => Value::Integer([0, 1, -1, 2, i64::MAX, i64::MIN][rng.below(6)]),
        2 => Value::Real([0.0, 1.5, -1.0, 1e300][rng.below(4)]),
        3 => Value::Text(String::new()),
        4 => Value::Text(TOKENS[rng.below(TOKENS.len())].to_string()),
        5 => Value::Blob((0..rng.below(12)).map(|_| rng.bits() as u8).collect()),
        _ => {
            // A piece of another fixture, changed: an address, a hash, a
            // list of targets, something near what the column holds.
            let from = texts[rng.below(texts.len())];
            let at = rng.below(from.len());
            let end = (at + 1 + rng.below(60)).min(from.len());
            let piece = String::from_utf8_lossy(&from.as_bytes()[at..end]).into_owned();
            Value::Text(mutate(rng, &piece, texts, 2, true))
        }
    }
}

/// The SQL fixtures loaded into SQLite, then one to six cells set to odd
/// values (or a row removed, or copied), read by `--from sql` and
/// imported.
#[test]
fn odd_cells_never_panic_the_sql_readers() {
    use rusqlite::{params, Connection};
    let texts: Vec<&str> = TEXT_SOURCES.iter().map(|(_, _, t)| *t).collect();
    let dir = tempfile::tempdir().unwrap();
    let n = iterations() / 2;
    let mut proven = 0;
    for i in 0..n {
        let mut rng = Rng::new(i ^ 0xce11);
        let path = dir.path().join("source.db");
        let _ = std::fs::remove_file(&path);
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(SCRIPTS[rng.below(SCRIPTS.len())])
            .unwrap();
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut changes = Vec::new();
        for _ in 0..1 + rng.below(6) {
            let table = &tables[rng.below(tables.len())];
            let quoted = format!("\"{}\"", table.replace('"', "\"\""));
            let columns: Vec<String> = conn
                .prepare(&format!(
                    "SELECT name FROM pragma_table_info('{}')",
                    table.replace('\'', "''")
                ))
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let rows: i64 = conn
                .query_row(&format!("SELECT count(*) FROM {quoted}"), [], |r| r.get(0))
                .unwrap();
            if rows == 0 || columns.is_empty() {
                continue;
            }
            let offset = rng.below(rows as usize) as i64;
            let pick = format!("(SELECT rowid FROM {quoted} LIMIT 1 OFFSET ?1)");
            let column = &columns[rng.below(columns.len())];
            let value = odd_value(&mut rng, &texts);
            // Constraints (NOT NULL, keys) refuse some changes: so would
            // they in the source database; those are skipped.
            let done = match rng.below(8) {
                0 => conn.execute(
                    &format!("DELETE FROM {quoted} WHERE rowid = {pick}"),
                    params![offset],
                ),
                1 => conn.execute(
                    &format!("INSERT INTO {quoted} SELECT * FROM {quoted} WHERE rowid = {pick}"),
                    params![offset],
                ),
                _ => conn.execute(
                    &format!(
                        "UPDATE {quoted} SET \"{}\" = ?2 WHERE rowid = {pick}",
                        column.replace('"', "\"\"")
                    ),
                    params![offset, value],
                ),
            };
            if done.is_ok() {
                changes.push(format!("{table}.{column} row {offset}: {value:?}"));
            }
        }
        drop(conn);
        let inactive = if rng.below(2) == 0 {
            Inactive::Reject
        } else {
            Inactive::Disabled
        };
        let url = format!("sqlite://{}", path.display());
        let shown = changes.join("\n");
        no_panic("sql import", i, &[("changes", &shown)], || {
            let Ok(parsed) = sql::read_normalized(&url, inactive) else {
                return;
            };
            let (_, p) = import_into(parsed, &mut MemStore::default(), &LoginHints::default());
            proven += usize::from(p);
        });
    }
    eprintln!("{n} sql imports: {proven} proven");
    assert!(
        proven * 3 >= n as usize,
        "only {proven} of {n} sql imports reached a proof"
    );
}
