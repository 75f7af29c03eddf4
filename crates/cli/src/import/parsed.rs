//! What a parser makes of one source: logins, routes (where mail to a key
//! goes), userinfo, mailtable rows, and findings that name the place in the
//! source (`file:line`, `db:table:rowid`, `db:key`). Every parser produces a
//! [`Parsed`]; everything after parsing works on these types only.
//!
//! The one decision a reader might question: a route's targets stay as the
//! source wrote them ([`Target::LocalUser`], [`Target::Unrepresentable`]),
//! not mapped to addresses yet, because what a local user name means
//! depends on the other sources (the credentials that go with an alias
//! file); that mapping is the merge's job, with all sources at hand.

use mailtable_core::{Address, Domain, PasswordHash, Row};
use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

/// Where in a source an entry came from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum At {
    /// A line of a text file (1-based).
    Line(usize),
    /// A row of a table, by rowid.
    Row {
        /// The table.
        table: String,
        /// Its rowid.
        id: i64,
    },
    /// A row named by its key (a mailtable database).
    Key(String),
    /// The source as a whole.
    Whole,
}

/// A source and a place in it; printed `file:line`, `db:table:rowid` or
/// `db:key`.
///
/// Every entry of a source has one, and a big import has millions (each
/// login, route, row group and finding): the source's name is therefore
/// shared, one allocation per source rather than one per entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Origin {
    /// The source as given on the command line (URLs with passwords
    /// redacted).
    pub source: Arc<str>,
    /// The place.
    pub at: At,
}

thread_local! {
    /// The source names made so far: a parser names thousands of entries of
    /// one source in a row, and they all share its name.
    static SOURCES: RefCell<Vec<Arc<str>>> = const { RefCell::new(Vec::new()) };
}

/// `source` as a shared name: the one made before for the same text.
fn shared(source: &str) -> Arc<str> {
    SOURCES.with(|s| {
        let mut s = s.borrow_mut();
        if let Some(a) = s.iter().find(|a| ***a == *source) {
            return a.clone();
        }
        let a: Arc<str> = source.into();
        s.push(a.clone());
        a
    })
}

impl Origin {
    /// Line `n` of `source`.
    pub fn line(source: &str, n: usize) -> Origin {
        Origin {
            source: shared(source),
            at: At::Line(n),
        }
    }

    /// Row `id` of `table` in `source`.
    pub fn row(source: &str, table: &str, id: i64) -> Origin {
        Origin {
            source: shared(source),
            at: At::Row {
                table: table.to_string(),
                id,
            },
        }
    }

    /// `source` as a whole.
    pub fn whole(source: &str) -> Origin {
        Origin {
            source: shared(source),
            at: At::Whole,
        }
    }

    /// The row of `key` in `source`.
    pub fn key(source: &str, key: &str) -> Origin {
        Origin {
            source: shared(source),
            at: At::Key(key.to_string()),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.at {
            At::Line(n) => write!(f, "{}:{n}", self.source),
            At::Row { table, id } => write!(f, "{}:{table}:{id}", self.source),
            At::Key(k) => write!(f, "{}:{k}", self.source),
            At::Whole => write!(f, "{}", self.source),
        }
    }
}

/// Something to tell about one entry: malformed, not imported, or a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Where.
    pub at: Origin,
    /// The key, login or address concerned, if any.
    pub subject: Option<String>,
    /// Why (never a password hash).
    pub why: String,
}

impl Finding {
    /// A finding about a whole line.
    pub fn new(at: Origin, why: impl Into<String>) -> Finding {
        Finding {
            at,
            subject: None,
            why: masked(one_line(why.into())),
        }
    }

    /// A finding about one key or login.
    pub fn about(at: Origin, subject: &str, why: impl Into<String>) -> Finding {
        Finding {
            at,
            subject: Some(masked(one_line(subject.to_string()))),
            why: masked(one_line(why.into())),
        }
    }

    /// The note for a key or login kept in another form than the source
    /// wrote it: lower case, a Unicode domain in its IDNA form
    /// (`info@xn--bcher-kva.de`), the one form mailtable stores and
    /// compares. `None` when it is kept as written. `source` says what the
    /// source's software compared; mailtable takes mail and logins given
    /// in any case and either form, so nothing that reached the key is
    /// lost, but more may reach it.
    pub fn stored_as(at: &Origin, written: &str, stored: &str, source: &str) -> Option<Finding> {
        (stored != written).then(|| {
            Finding::about(
                at.clone(),
                written,
                format!(
                    "stored as {stored}, the form mailtable stores and compares (lower case, \
                     domains in IDNA form), which mail and logins reach in any case and either \
                     form; {source}"
                ),
            )
        })
    }
}

/// `text` with its control characters escaped (`\r`, `\n`, `\u{1b}`): a
/// finding quotes the source's values, and a line end in one (a `goto`
/// with CR LF in it) would split the report's line, an escape sequence
/// drive the terminal.
pub(super) fn one_line(text: String) -> String {
    if !text.chars().any(char::is_control) {
        return text;
    }
    text.chars()
        .map(|c| match c.is_control() {
            true => c.escape_default().to_string(),
            false => c.to_string(),
        })
        .collect()
}

/// `text` with whatever looks like a password hash masked: from a crypt
/// `$id$` or a Dovecot `{SCHEME}` to the end of its word. Findings quote
/// the source's text, and a file read as the wrong format (a credentials
/// file given as aliases) puts hashes where addresses were expected; the
/// report goes to terminals, logs and tickets.
///
/// After `$id$` the word is crypt(3)'s alphabet (a crypt string holds
/// nothing else). After `{SCHEME}` it may be a plaintext password
/// (`{PLAIN}`, `{CLEAR}`), which can hold any character but the field
/// separators of the files that carry it: the word runs to a blank, a `:`
/// (passwd-file fields) or the `"` that ends a quoted value (an escaped
/// `\"` is inside it).
fn masked(text: String) -> String {
    let end_of_crypt = |c: char| !(c.is_ascii_alphanumeric() || "./$+=_-".contains(c));
    // Inside a quoted value the word runs to the closing quote, blanks
    // and all (`"{PLAIN}correct horse battery"`); outside, to a blank or
    // a `:`.
    let end_of_scheme_word = |word: &str, quoted: bool| {
        let mut chars = word.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => return i,
                ':' if !quoted => return i,
                c if c.is_whitespace() && !quoted => return i,
                _ => {}
            }
        }
        word.len()
    };
    // Whether a quote opened in `text` is still open at its end (a `\"`
    // is inside one).
    let opens = |text: &str, mut open: bool| {
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => open = !open,
                _ => {}
            }
        }
        open
    };
    let mut quoted = false;
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(i) = rest.find(['$', '{']) {
        let (before, from) = rest.split_at(i);
        out.push_str(before);
        quoted = opens(before, quoted);
        // The label kept: `$6$`, `{SHA512-CRYPT}`.
        let crypt = from.starts_with('$');
        let label = if let Some(after) = from.strip_prefix('$') {
            after
                .find('$')
                .filter(|&n| {
                    (1..=8).contains(&n) && after[..n].bytes().all(|b| b.is_ascii_alphanumeric())
                })
                .map(|n| n + 2)
        } else {
            from.find('}')
                .filter(|&n| {
                    // A scheme name starts with a letter (`{SHA512-CRYPT}`,
                    // `{plain}`); `{1b}` is an escape of `one_line`.
                    n > 1
                        && from.as_bytes()[1].is_ascii_alphabetic()
                        && from[1..n]
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                })
                .map(|n| n + 1)
        };
        match label {
            Some(n) => {
                out.push_str(&from[..n]);
                let word = match crypt {
                    true => from[n..].find(end_of_crypt).unwrap_or(from.len() - n),
                    false => end_of_scheme_word(&from[n..], quoted),
                };
                if word > 0 {
                    out.push_str("***");
                }
                rest = &from[n + word..];
            }
            None => {
                out.push_str(&from[..1]);
                rest = &from[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.subject {
            Some(s) => write!(f, "{}: {s}: {}", self.at, self.why),
            None => write!(f, "{}: {}", self.at, self.why),
        }
    }
}

/// A login name as the source spells it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum LoginName {
    /// `user@domain`.
    Address(Address),
    /// A name without a domain.
    Bare(String),
}

impl fmt::Display for LoginName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoginName::Address(a) => write!(f, "{a}"),
            LoginName::Bare(b) => f.write_str(b),
        }
    }
}

/// A login: a name and a hash (a mailbox in mailtable).
#[derive(Debug, Clone)]
pub struct Login {
    /// The name.
    pub name: LoginName,
    /// The hash, verbatim.
    pub hash: PasswordHash,
    /// False: login refused (inactive row, `nologin`).
    pub active: bool,
    /// Dovecot storage quota.
    pub quota: Option<String>,
    /// The source delivers mail to this login without a route saying so
    /// (PostfixAdmin's mailboxes, in Postfix's mailbox maps); smtpd
    /// credentials and Dovecot users do not: they get mail by themselves
    /// only in an import where no source says where mail goes.
    pub implied_route: bool,
    /// Where.
    pub origin: Origin,
}

/// The left side of a route.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteKey {
    /// `user@domain`.
    Exact(Address),
    /// `@domain`.
    CatchAll(Domain),
    /// A key without a domain (`root`, or a domain line `example.org`).
    Bare(String),
    /// smtpd's global catch-all `@`.
    Global,
}

impl fmt::Display for RouteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteKey::Exact(a) => write!(f, "{a}"),
            RouteKey::CatchAll(d) => write!(f, "@{d}"),
            RouteKey::Bare(u) => f.write_str(u),
            RouteKey::Global => f.write_str("@"),
        }
    }
}

/// One target of a route, as the source gives it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// An address.
    Address(Address),
    /// A local (delivery) user name.
    LocalUser(String),
    /// `@new.org` on a catch-all: `user@old` goes to `user@new`.
    DomainAlias(Domain),
    /// smtpd's `:error:CODE text`: every message to the entry is answered
    /// with it, 4xx (deferred) or 5xx (bounced).
    Error {
        /// The element as written.
        text: String,
        /// A 4xx code.
        temporary: bool,
    },
    /// A pipe, a file, an include, an error, an address mailtable refuses.
    Unrepresentable {
        /// The element as written.
        text: String,
        /// Why mailtable cannot hold it.
        why: String,
    },
}

/// Where mail to a key goes.
#[derive(Debug, Clone)]
pub struct Route {
    /// The key.
    pub key: RouteKey,
    /// Its targets (several fan out).
    pub targets: Vec<Target>,
    /// Where.
    pub origin: Origin,
}

impl Route {
    /// The local user names among the targets (smtpd's `vmail`), in order.
    pub fn local_users(&self) -> impl Iterator<Item = &str> {
        self.targets.iter().filter_map(|t| match t {
            Target::LocalUser(u) => Some(u.as_str()),
            _ => None,
        })
    }
}

/// uid, gid, home of a user, for the report.
#[derive(Debug, Clone)]
pub struct UserInfo {
    /// The user (delivery user name or login).
    pub user: String,
    /// uid.
    pub uid: Option<u32>,
    /// gid.
    pub gid: Option<u32>,
    /// Home directory.
    pub home: Option<String>,
    /// From an smtpd table that serves as the `userbase` (smtpd-userinfo,
    /// smtpd-passwd): smtpd refuses mail to a delivery user it lacks.
    pub userbase: bool,
    /// Where.
    pub origin: Origin,
}

pub use crate::args::Inactive;

/// One source, parsed.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Logins.
    pub logins: Vec<Login>,
    /// Routes.
    pub routes: Vec<Route>,
    /// Domains the source declares (SQL `domains`), with whether active.
    pub domains: Vec<(Domain, bool, Origin)>,
    /// uid/gid/home facts.
    pub userinfo: Vec<UserInfo>,
    /// Rows of a mailtable database, taken as they are.
    pub rows: Vec<(Row, Origin)>,
    /// Entries that cannot be represented, with why.
    pub skipped: Vec<Finding>,
    /// Things worth knowing that change nothing.
    pub notes: Vec<Finding>,
    /// Lines the source's own software would refuse.
    pub malformed: Vec<Finding>,
    /// This source says where mail goes (alias tables, SQL): logins
    /// without a route of theirs are then not deliverable in the source.
    pub defines_routes: bool,
    /// Addresses the source delivered to that are not imported as logins
    /// (a mailbox without a password).
    pub lost: Vec<String>,
    /// Of those, the mailboxes of the source (a user without a password):
    /// their mail has nowhere to go, so the import is refused unless
    /// `--partial`.
    pub lost_mailboxes: Vec<String>,
    /// Aliases, `@domain` included, are looked up before the mailboxes
    /// (Postfix's `virtual_alias_maps`): a catch-all then takes the mail of
    /// a mailbox that has no alias of its own.
    pub aliases_first: bool,
    /// Addresses whose mail the source refused or bounced (inactive
    /// mailboxes, with `--inactive reject`): not imported, and a copy the
    /// source's aliases sent there bounced.
    pub refused: Vec<Address>,
    /// Inactive mailboxes imported disabled by `--inactive disabled`: they
    /// receive their own mail from now on, which the admin chose; the check
    /// expects that instead of the source's refusal.
    pub accepted_inactive: Vec<Address>,
    /// smtpd's domain table (`match from any for domain <t>`): the domain
    /// patterns it lists, lower-cased. `None`: no such table given, every
    /// domain of the entries counts as accepted.
    pub accepted_domains: Option<Vec<(String, Origin)>>,
}

impl Parsed {
    /// A mailbox of the source that cannot come over (no password): the
    /// source delivered to it, so its mail would have nowhere to go. Counted
    /// as lost (an address, once it has a domain) and as a lost mailbox,
    /// which refuses the import without `--partial`, and reported.
    pub fn mailbox_left_behind(&mut self, at: Origin, key: &str, why: &str) {
        if key.contains('@') {
            self.lost.push(key.to_string());
        }
        self.lost_mailboxes.push(key.to_string());
        self.skipped.push(Finding::about(at, key, why));
    }

    /// An address of the source that mailtable cannot store (`100%@d`,
    /// `%` being its wildcard) and that is no mailbox: an alias key. The
    /// source delivered its mail, so it is counted as an address that
    /// will not receive mail, and reported.
    pub fn address_left_behind(&mut self, at: Origin, key: &str, why: &str) {
        if key.contains('@') {
            self.lost.push(key.to_string());
        }
        self.skipped.push(Finding::about(at, key, why));
    }

    /// Nothing at all came out of the source: no entry, and nothing to
    /// report about one (an empty file, only comments, empty tables).
    pub fn is_empty(&self) -> bool {
        self.logins.is_empty()
            && self.routes.is_empty()
            && self.domains.is_empty()
            && self.userinfo.is_empty()
            && self.rows.is_empty()
            && self.skipped.is_empty()
            && self.notes.is_empty()
            && self.malformed.is_empty()
            && self.lost.is_empty()
            && self.lost_mailboxes.is_empty()
            && self.refused.is_empty()
            && self.accepted_inactive.is_empty()
            && self.accepted_domains.as_ref().is_none_or(Vec::is_empty)
    }

    /// Add another source's entries to these.
    pub fn absorb(&mut self, other: Parsed) {
        self.logins.extend(other.logins);
        self.routes.extend(other.routes);
        self.domains.extend(other.domains);
        self.userinfo.extend(other.userinfo);
        self.rows.extend(other.rows);
        self.skipped.extend(other.skipped);
        self.notes.extend(other.notes);
        self.malformed.extend(other.malformed);
        self.lost.extend(other.lost);
        self.lost_mailboxes.extend(other.lost_mailboxes);
        self.refused.extend(other.refused);
        self.accepted_inactive.extend(other.accepted_inactive);
        if let Some(d) = other.accepted_domains {
            self.accepted_domains.get_or_insert_with(Vec::new).extend(d);
        }
        self.defines_routes |= other.defines_routes;
        self.aliases_first |= other.aliases_first;
    }
}

/// Two entries, or an entry and the database, that disagree.
#[derive(Debug, Clone)]
pub struct Conflict {
    /// The entry.
    pub at: Origin,
    /// The address or key.
    pub subject: String,
    /// What disagrees (never a hash).
    pub why: String,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.at, self.subject, self.why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line end or an escape in a quoted value stays on the report's
    /// one line, escaped; text without one is left as it is.
    #[test]
    fn findings_are_one_line() {
        let at = Origin::line("v", 1);
        let f = Finding::about(at.clone(), "team@x.org", "target \"a@x.org\\r\\nb@x.org\"");
        assert_eq!(f.why, "target \"a@x.org\\r\\nb@x.org\"");
        let f = Finding::about(at.clone(), "a\rb", "goto a@x.org\r\nb@x.org \u{1b}[2J");
        assert_eq!(f.subject.as_deref(), Some("a\\rb"));
        assert_eq!(f.why, "goto a@x.org\\r\\nb@x.org \\u{1b}[2J");
        assert_eq!(Finding::new(at, "plain: ü").why, "plain: ü");
    }

    /// Findings quote the source; a hash in it never comes out.
    #[test]
    fn findings_mask_what_looks_like_a_hash() {
        let at = Origin::line("cred", 1);
        let f = Finding::new(
            at.clone(),
            "invalid target \"gilles@example.org:$6$salt$S3CRETHASH\": not an address",
        );
        assert_eq!(
            f.why,
            "invalid target \"gilles@example.org:$6$***\": not an address"
        );
        let f = Finding::about(
            at.clone(),
            "{PLAIN}S3CRET",
            "uid \"{PLAIN}S3CRET\" is not a number",
        );
        assert_eq!(
            f.to_string(),
            "cred:1: {PLAIN}***: uid \"{PLAIN}***\" is not a number"
        );
        // A plaintext password runs to the end of its field, whatever it
        // holds: a blank, a `:` or the closing quote (not an escaped one).
        let f = Finding::new(
            at.clone(),
            "\"{PLAIN}Tr0ub4dor&3xtra!Secret:5000:5000::/h\" is not an address",
        );
        assert_eq!(f.why, "\"{PLAIN}***\" is not an address");
        let f = Finding::new(at.clone(), "value \"{CLEAR}a\\\"b,c(d)\" is bad");
        assert_eq!(f.why, "value \"{CLEAR}***\" is bad");
        let f = Finding::new(at.clone(), "{PLAIN}pass word");
        assert_eq!(f.why, "{PLAIN}*** word");
        // Quoted, blanks are part of it; after the quote, text is kept.
        let f = Finding::new(
            at.clone(),
            "\"{PLAIN}correct horse battery\" is not an address; \"x\" {PLAIN}y z",
        );
        assert_eq!(
            f.why,
            "\"{PLAIN}***\" is not an address; \"x\" {PLAIN}*** z"
        );
        // Scheme names and crypt ids alone are kept, as is other text.
        let text = "smtpd cannot verify {SSHA512} or bcrypt ($2y$); cost $5 and {a b}";
        assert_eq!(Finding::new(at, text).why, text);
    }
}
