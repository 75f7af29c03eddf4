//! The rows themselves: whether the daemons can use every one of them.
//!
//! Other programs write the table too (the `sqlite3` shell, psql, an
//! import script), and what they write is not checked on the way in. Five
//! kinds of row fail in five ways, each named with up to five examples:
//!
//! - a key (username, domain) not in the form lookups ask for (upper case,
//!   white space, a Unicode domain): never found, its mail refused as
//!   unknown;
//! - a key whose lookup fails as the daemons' does (a target that cannot
//!   be read, such as two addresses in one row; an alias whose target has
//!   no rows; a loop; a chain too deep; a delivery user name smtpd cuts or
//!   refuses): its mail waits in the queue, a temporary failure;
//! - a mailbox whose stored hash no daemon can check (empty, malformed,
//!   a password in clear): every login fails;
//! - a mailbox row whose mailbox column is another address: its mail goes
//!   there, while its login opens a mailbox that receives nothing;
//! - a target not in the form mailtable writes: delivered (the resolver
//!   folds targets), but the reverse walks compare the stored text, so
//!   `senders`, `alias list --to` and the checks of `user del` and `user
//!   rename` miss it.

use super::Check;
use mailtable_core::resolve::KeyAnswer;
use mailtable_core::store::{self, Access, DatabaseUrl, OpenOptions};
use mailtable_core::{AddressPattern, PasswordHash, ResolveError, Resolver, Row};
use std::collections::BTreeSet;
use std::time::Duration;

/// How many rows a finding names.
const EXAMPLES: usize = 5;

/// Local part a wildcard key is probed with: what smtpd would ask.
const PROBE: &str = "mailtable-doctor-probe";

/// Rows of one kind of fault: how many, and the first few with why.
#[derive(Default)]
struct Found {
    n: usize,
    examples: Vec<String>,
}

impl Found {
    fn add(&mut self, example: impl FnOnce() -> String) {
        self.n += 1;
        if self.examples.len() < EXAMPLES {
            self.examples.push(example());
        }
    }

    fn listed(&self) -> String {
        let more = if self.n > self.examples.len() {
            "; ..."
        } else {
            ""
        };
        format!("{}{more}", self.examples.join("; "))
    }
}

/// The key a row answers for, as lookups ask it; `None` when no lookup
/// ever asks for it as stored.
fn key_as_asked(r: &Row) -> Option<String> {
    let p = AddressPattern::parse(&r.address()).ok()?;
    (p.local.to_string() == r.username && p.domain.as_str() == r.domain).then(|| {
        if r.username.contains('%') {
            format!("{}@{}", r.username.replace('%', PROBE), r.domain)
        } else {
            r.address()
        }
    })
}

/// Whether a mailbox row (one with a password) sends its mail to another
/// address than its own: the data model has a mailbox deliver to itself
/// (DESIGN.md, "Mailbox row"), and the resolver follows the column, so
/// the mail leaves while the login (IMAP, SMTP AUTH) opens a mailbox that
/// never receives any. Compared in the normal form (a target in upper
/// case is the same address); a column that is no address at all is the
/// lookups' to name, a wildcard key is no mailbox.
fn delivers_elsewhere(r: &Row) -> bool {
    let normal = |s: &str| {
        mailtable_core::Address::parse(s)
            .ok()
            .map(|a| a.to_string())
    };
    r.is_mailbox()
        && !r.username.contains('%')
        && matches!((normal(&r.address()), normal(&r.mailbox)), (Some(own), Some(to)) if own != to)
}

/// A target as mailtable writes it: lower case, domains in punycode, no
/// trailing dot. One that is no address at all is the lookups' to name.
fn normal(s: &str) -> bool {
    match AddressPattern::parse(s) {
        Ok(p) if !s.starts_with('@') => p.to_string() == s,
        _ => s.is_ascii() && !s.bytes().any(|b| b.is_ascii_uppercase()),
    }
}

/// The checks of every row of the database at `url`, read-only.
/// `mt`: `mailtable` with the options that reach this database, for the
/// fixes.
pub(crate) fn check_rows(
    url: &DatabaseUrl,
    timeout: Duration,
    resolver: &Resolver,
    mt: &str,
) -> Vec<Check> {
    let opts = OpenOptions {
        access: Access::ReadOnly,
        timeout,
    };
    let mut total = 0usize;
    let mut unreachable = Found::default();
    let mut odd_targets = Found::default();
    let mut bad_hashes = Found::default();
    let mut bad_quotas = Found::default();
    let mut elsewhere = Found::default();
    let mut mailboxes = 0usize;
    let mut keys = BTreeSet::new();
    let mut s = match store::open(url, &opts) {
        Ok(s) => s,
        Err(e) => return vec![cannot_read(&e)],
    };
    let scanned = s.scan(None, &mut |r| {
        total += 1;
        match key_as_asked(&r) {
            Some(k) => {
                keys.insert(k);
            }
            None => unreachable.add(|| format!("{} -> {}", r.address(), r.mailbox)),
        }
        if !normal(&r.mailbox) {
            odd_targets.add(|| format!("{} -> {}", r.address(), r.mailbox));
        }
        if delivers_elsewhere(&r) {
            elsewhere.add(|| format!("{} -> {}", r.address(), r.mailbox));
        }
        if r.is_mailbox() {
            mailboxes += 1;
            if let Some(why) = r.password.as_ref().and_then(unusable_hash) {
                bad_hashes.add(|| format!("{}: {why}", r.address()));
            }
            // As `user quota` takes them: what Dovecot reads as a size in
            // both generations. A value it cannot read fails every
            // delivery there while the quota plugin is on; 0 is no limit.
            let quota = r.quota.as_deref().map(str::trim).filter(|q| !q.is_empty());
            if let Some(q) = quota {
                if !matches!(crate::quota::parse(q), Ok(Some(_))) {
                    bad_quotas.add(|| format!("{} ({q:?})", r.address()));
                }
            }
        }
    });
    if let Err(e) = scanned {
        return vec![cannot_read(&e)];
    }
    // Every key as smtpd asks it: what the table would answer.
    let mut failing = Found::default();
    for k in &keys {
        match resolver.smtpd_answer(s.as_mut(), k) {
            Ok(None | Some(KeyAnswer::Items(_))) => {}
            Ok(Some(KeyAnswer::Unusable(why))) => failing.add(|| why),
            Err(ResolveError::Store(e)) => return vec![cannot_read(&e)],
            Err(e) => failing.add(|| format!("{k}: {e}")),
        }
    }
    vec![
        if unreachable.n == 0 {
            Check::ok(
                "database.keys",
                format!("all {total} row(s) are found by the lookups"),
            )
        } else {
            Check::problem(
                "database.keys",
                format!(
                    "{} row(s) written by hand are never found, their username or domain not \
                     in the lower case (punycode) lookups ask for, or not an address at all: \
                     {}; mail to them is refused as unknown, or, where a catch-all or pattern \
                     of the domain answers, silently goes where that sends it (`{mt} resolve \
                     ADDRESS` shows which)",
                    unreachable.n,
                    unreachable.listed()
                ),
                format!(
                    "rewrite them as mailtable writes them (`{mt} user add`, `alias add`), or \
                     an UPDATE with lower(trim(...)) in the sqlite3 shell or psql"
                ),
            )
        },
        if failing.n == 0 {
            Check::ok(
                "database.lookups",
                format!("all {} key(s) resolve", keys.len()),
            )
        } else {
            Check::problem(
                "database.lookups",
                format!(
                    "{} key(s) fail to resolve, so their mail waits in the senders' queues \
                     (a temporary failure): {}",
                    failing.n,
                    failing.listed()
                ),
                format!("`{mt} resolve ADDRESS` shows each step; fix the rows it names"),
            )
        },
        if bad_hashes.n == 0 {
            Check::ok(
                "database.hashes",
                format!("the hashes of all {mailboxes} mailbox(es) can be checked"),
            )
        } else {
            Check::problem(
                "database.hashes",
                format!(
                    "{} mailbox(es) with a stored hash no daemon can check, so every login \
                     fails (a temporary failure, logged): {}",
                    bad_hashes.n,
                    bad_hashes.listed()
                ),
                format!(
                    "give each a new password: `{mt} user passwd ADDRESS` (or store a hash \
                     from `mailtable hash`)"
                ),
            )
        },
        if elsewhere.n == 0 {
            Check::ok(
                "database.mailboxes",
                format!("all {mailboxes} mailbox(es) receive their own mail"),
            )
        } else {
            Check::problem(
                "database.mailboxes",
                format!(
                    "{} mailbox row(s) (rows with a password) deliver to another address, \
                     their mailbox column not their own address, written by hand: {}; their \
                     mail goes there, while their login (IMAP, SMTP AUTH) opens a mailbox \
                     that receives nothing",
                    elsewhere.n,
                    elsewhere.listed()
                ),
                format!(
                    "set the mailbox column to the row's own address (in the sqlite3 shell or \
                     psql: UPDATE users SET mailbox = username || '@' || domain WHERE ...), \
                     then, to forward its mail as well, `{mt} alias add ADDRESS TARGET`; or, \
                     for no mailbox at all, `{mt} user del ADDRESS` and `{mt} alias add \
                     ADDRESS TARGET`"
                ),
            )
        },
        if bad_quotas.n == 0 {
            Check::ok("database.quotas", "every quota is a size Dovecot reads")
        } else {
            Check::problem(
                "database.quotas",
                format!(
                    "{} mailbox(es) with a quota Dovecot cannot read as a size (its quota \
                     plugin then fails every delivery there) or 0 (no limit to Dovecot): {}",
                    bad_quotas.n,
                    bad_quotas.listed()
                ),
                format!("set each with `{mt} user quota ADDRESS SIZE` (or none)"),
            )
        },
        if odd_targets.n == 0 {
            Check::ok(
                "database.rows",
                format!(
                    "the targets of all {total} row(s) in lower case, domains in punycode, \
                     no trailing dot"
                ),
            )
        } else {
            Check::problem(
                "database.rows",
                format!(
                    "{} row(s) with a target not in lower case, with a Unicode domain or a \
                     trailing dot, written by hand: {}; mail through them is delivered, but \
                     senders \
                     (smtpd's `senders <users>`), `alias list --to` and the checks of `user \
                     del` and `user rename` compare the stored text and miss them",
                    odd_targets.n,
                    odd_targets.listed()
                ),
                format!(
                    "write them as mailtable does: lower case, Unicode domains in punycode \
                     (`{mt} alias del` and `alias add`, or an UPDATE in the sqlite3 shell or \
                     psql)"
                ),
            )
        },
    ]
}

/// Why no daemon can check a mailbox's stored hash, or `None` when one
/// can: the rule of the login paths (`Accounts::credentials`), a scheme
/// only Dovecot knows being Dovecot's to check. Never shows the value: it
/// may be a password stored in clear.
fn unusable_hash(h: &PasswordHash) -> Option<String> {
    match h.validate() {
        // Locked on purpose: refused at login, as a disabled mailbox is.
        _ if h.is_locked() => None,
        Ok(()) => None,
        Err(_) if h.dovecot_only() => None,
        Err(e) => Some(e.to_string()),
    }
}

fn cannot_read(e: &dyn std::fmt::Display) -> Check {
    Check::problem(
        "database.rows",
        format!("cannot read the rows: {e}"),
        "see database.answers",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::database::tests::{make_db, url};
    use crate::doctor::Status;
    use std::path::Path;

    fn checks(p: &Path) -> Vec<Check> {
        check_rows(
            &url(p),
            Duration::from_secs(2),
            &Resolver::new('+'),
            "mailtable",
        )
    }

    /// A well-formed bcrypt hash (of "pw").
    const H: &str = "$2b$10$B8ECNE9QBhHF22AH.0SUfOqT1Lopy88o0K.Kd0soWRmwY3JnVPGRi";

    fn named<'a>(c: &'a [Check], name: &str) -> &'a Check {
        c.iter().find(|c| c.name == name).unwrap()
    }

    /// Each kind of row written by hand is named under its check, and
    /// rows as mailtable writes them are fine.
    #[test]
    fn rows_written_by_hand_are_named_by_what_they_break() {
        let d = tempfile::tempdir().unwrap();
        let p = make_db(d.path());
        let insert = |sql: &str| {
            rusqlite::Connection::open(&p)
                .unwrap()
                .execute_batch(&format!(
                    "INSERT INTO users (username, domain, mailbox, password) VALUES {}",
                    sql.replace("{H}", H)
                ))
                .unwrap()
        };
        insert("('a', 'x.org', 'a@x.org', '{H}'), ('b', 'x.org', 'a@x.org', NULL)");
        let c = checks(&p);
        assert!(c.iter().all(|c| c.status == Status::Ok), "{c:?}");
        assert!(named(&c, "database.rows")
            .message
            .contains("the targets of all 2 row(s)"));

        // Never found: upper case and white space in the key.
        insert(
            "('Frank', 'x.org', 'frank@x.org', '{H}'), ('gus', 'X.ORG', 'gus@x.org', NULL), \
             ('hank ', 'x.org', 'a@x.org', NULL)",
        );
        // Failing: two targets in one row, an empty target, a loop, an
        // alias to an address of ours without rows, a mailbox smtpd cuts.
        insert(
            "('team', 'x.org', 'a@x.org, b@x.org', NULL), ('empty', 'x.org', '', NULL), \
             ('p1', 'x.org', 'p2@x.org', NULL), ('p2', 'x.org', 'p1@x.org', NULL), \
             ('gone', 'x.org', 'nobody@x.org', NULL), ('c+d', 'x.org', 'c+d@x.org', '{H}')",
        );
        // Delivered, missed by the reverse walks: upper case, a trailing
        // dot (on a fixed target and a domain alias's).
        insert(
            "('up', 'x.org', 'A@X.org', NULL), ('dot', 'x.org', 'a@x.org.', NULL), \
             ('%', 'y.org', '%@x.org.', NULL)",
        );
        let c = checks(&p);
        let keys = named(&c, "database.keys");
        assert_eq!(keys.status, Status::Problem, "{keys:?}");
        assert!(keys.message.starts_with("3 row(s)"), "{keys:?}");
        for k in ["Frank@x.org", "gus@X.ORG", "hank @x.org"] {
            assert!(keys.message.contains(k), "{k}: {keys:?}");
        }
        let lookups = named(&c, "database.lookups");
        assert_eq!(lookups.status, Status::Problem, "{lookups:?}");
        assert!(lookups.message.starts_with("6 key(s)"), "{lookups:?}");
        assert!(lookups.message.contains("c+d@x.org: "), "{lookups:?}");
        assert!(lookups.message.ends_with("; ..."), "{lookups:?}");
        let rows = named(&c, "database.rows");
        assert_eq!(rows.status, Status::Problem, "{rows:?}");
        assert!(rows.message.starts_with("3 row(s)"), "{rows:?}");
        // None of these is a mailbox delivering elsewhere: `Frank`'s
        // column is its own address, the rest are aliases.
        assert_eq!(named(&c, "database.mailboxes").status, Status::Ok);
        // A mailbox row whose column names another address, ours or not.
        insert("('i', 'x.org', 'i@elsewhere.example', '{H}'), ('j', 'x.org', 'a@x.org', '{H}')");
        let c = checks(&p);
        let m = named(&c, "database.mailboxes");
        assert_eq!(m.status, Status::Problem, "{m:?}");
        assert!(m.message.starts_with("2 mailbox row(s)"), "{m:?}");
        for r in ["i@x.org -> i@elsewhere.example", "j@x.org -> a@x.org"] {
            assert!(m.message.contains(r), "{r}: {m:?}");
        }
        for r in [
            "up@x.org -> A@X.org",
            "dot@x.org -> a@x.org.",
            "%@y.org -> %@x.org.",
        ] {
            assert!(rows.message.contains(r), "{r}: {rows:?}");
        }
    }

    /// Quotas written by hand that Dovecot cannot read as a size are
    /// named; the forms `user quota` stores are fine.
    #[test]
    fn quotas_dovecot_cannot_read_are_named() {
        let d = tempfile::tempdir().unwrap();
        let p = make_db(d.path());
        let c = rusqlite::Connection::open(&p).unwrap();
        for (user, quota) in [
            ("ok", "2G"),
            ("bytes", "1048576B"),
            ("bare", "1024"),
            ("dec", "1.5G"),
            ("neg", "-5"),
            ("zero", "0"),
            ("huge", "99999999999999999999T"),
        ] {
            c.execute(
                "INSERT INTO users (username, domain, mailbox, password, quota) \
                 VALUES (?1, 'x.org', ?1 || '@x.org', ?2, ?3)",
                [user, H, quota],
            )
            .unwrap();
        }
        let q = named(&checks(&p), "database.quotas").clone();
        assert_eq!(q.status, Status::Problem, "{q:?}");
        assert!(q.message.starts_with("4 mailbox(es)"), "{q:?}");
        for a in ["dec@x.org", "neg@x.org", "zero@x.org", "huge@x.org"] {
            assert!(q.message.contains(a), "{a}: {q:?}");
        }
        for a in ["ok@x.org", "bytes@x.org", "bare@x.org"] {
            assert!(!q.message.contains(a), "{a}: {q:?}");
        }
    }

    /// Mailboxes whose stored hash no daemon can check are named, without
    /// the value; a scheme only Dovecot knows is Dovecot's to check, and a
    /// locked hash (`!` before it) is refused at login on purpose.
    #[test]
    fn hashes_no_daemon_can_check_are_named() {
        let d = tempfile::tempdir().unwrap();
        let p = make_db(d.path());
        rusqlite::Connection::open(&p)
            .unwrap()
            .execute_batch(&format!(
                "INSERT INTO users (username, domain, mailbox, password) VALUES \
                 ('ok', 'x.org', 'ok@x.org', '{H}'), \
                 ('pb', 'x.org', 'pb@x.org', '{{PBKDF2}}$1$c2FsdA$5000$abcdef'), \
                 ('dan', 'x.org', 'dan@x.org', ''), \
                 ('eve', 'x.org', 'eve@x.org', '$2b$04$garbage'), \
                 ('fay', 'x.org', 'fay@x.org', 'hunter2secret'), \
                 ('lee', 'x.org', 'lee@x.org', '{H} '), \
                 ('lok', 'x.org', 'lok@x.org', '!{H}'), \
                 ('al', 'x.org', 'ok@x.org', NULL)"
            ))
            .unwrap();
        let c = checks(&p);
        let h = named(&c, "database.hashes");
        assert_eq!(h.status, Status::Problem, "{h:?}");
        assert!(h.message.starts_with("4 mailbox(es)"), "{h:?}");
        for a in [
            "dan@x.org: the password column is empty",
            "eve@x.org: ",
            "fay@x.org: ",
            "lee@x.org: ",
        ] {
            assert!(h.message.contains(a), "{a}: {h:?}");
        }
        assert!(
            !h.message.contains("ok@x.org")
                && !h.message.contains("pb@x.org")
                && !h.message.contains("lok@x.org"),
            "{h:?}"
        );
        assert!(
            !h.message.contains("hunter2") && !h.message.contains("garbage"),
            "{h:?}"
        );
        assert!(
            h.fix.as_deref().unwrap().contains("mailtable user passwd"),
            "{h:?}"
        );
    }
}
