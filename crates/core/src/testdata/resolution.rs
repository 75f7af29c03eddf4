//! The resolution table of DESIGN.md: fixture rows, then cases (address ->
//! expected outcome, and the key at which smtpd's walk gets that answer),
//! then per-key answers and senders.
//!
//! The rows are built so that a wrong precedence gives a visibly different
//! answer: wherever a mailbox, an exact alias or a pattern competes with a
//! catch-all, a pattern or a domain alias, the two point to different
//! destinations. The article's own rows (`barrera.io`, `example.com`) are
//! kept verbatim, but its catch-all targets the very mailbox it competes
//! with, so `hugo+news@barrera.io` proves nothing about precedence there;
//! `example.net` and `old.org` are the domains that do. Within one domain
//! the less specific rows come first, so "the first matching row wins"
//! would fail too. `example.org` has no catch-all: unknown addresses there
//! are not found, and aliases to them dangle.

use super::{alias, mailbox};
use crate::row::Row;
use Dest::{External, Mailbox};

/// The fixture, in insertion order (fan-out follows row order).
pub fn rows() -> Vec<Row> {
    vec![
        // The article's data, verbatim (a bcrypt hash for its password).
        mailbox("hugo", "barrera.io"),
        alias("%", "barrera.io", "hugo@barrera.io"),
        // A pattern whose target cannot always hold the capture, beside
        // that catch-all.
        alias("ext-%", "barrera.io", "%@partner.example"),
        alias("contact", "example.com", "hugo@barrera.io"),
        // `_` is a literal character, and survives the delivery user name.
        mailbox("john_doe", "example.com"),
        // example.org: mailboxes, fan-out, chains; no catch-all.
        mailbox("alice", "example.org"),
        mailbox("bob", "example.org"),
        alias("team", "example.org", "alice@example.org"),
        alias("team", "example.org", "bob@example.org"),
        alias("team", "example.org", "carol@elsewhere.net"),
        alias("info", "example.org", "team@example.org"),
        alias("all", "example.org", "info@example.org"),
        alias("dup", "example.org", "alice@example.org"),
        alias("dup", "example.org", "team@example.org"),
        // A tagged exact row (step 1), and a chain that ends in it.
        alias("bob+lists", "example.org", "alice@example.org"),
        alias("lists", "example.org", "bob+lists@example.org"),
        // Patterns, least specific first.
        alias("sales-%", "example.org", "bob@example.org"),
        alias("sales-eu-%", "example.org", "alice@example.org"),
        alias("%-bounces", "example.org", "carol@elsewhere.net"),
        alias("sales-vip", "example.org", "dave@example.net"),
        // Equal literal length (4): the longer prefix wins, whatever the
        // order the backend returns rows in.
        alias("%-ops", "example.org", "alice@example.org"),
        alias("dev-%", "example.org", "bob@example.org"),
        // `%` substituted into an external target.
        alias("ext-%", "example.org", "%@partner.example"),
        // A chain through a pattern.
        alias("help", "example.org", "sales-help@example.org"),
        // Cycles: without an exit, a self-loop, with an exit.
        alias("loop1", "example.org", "loop2@example.org"),
        alias("loop2", "example.org", "loop1@example.org"),
        alias("self", "example.org", "self@example.org"),
        alias("half", "example.org", "half2@example.org"),
        alias("half2", "example.org", "half@example.org"),
        alias("half2", "example.org", "bob@example.org"),
        // A target of ours that has no rows.
        alias("dangling", "example.org", "nobody@example.org"),
        // A fixed target that the domain alias of old.org makes one.
        alias("via-old", "example.org", "nobody@old.org"),
        // The same reached from a catch-all (smtpd's `@dom` key).
        alias("%", "catch.example", "nobody@old.org"),
        // example.net: a catch-all that competes with a mailbox and a
        // pattern, and points elsewhere than both. It comes first.
        alias("%", "example.net", "alice@example.org"),
        mailbox("dave", "example.net"),
        alias("news-%", "example.net", "bob@example.org"),
        // old.org: a domain alias that competes with a mailbox and a pattern.
        alias("%", "old.org", "%@example.org"),
        mailbox("keep", "old.org"),
        alias("legacy-%", "old.org", "carol@elsewhere.net"),
        // older.org: a domain alias onto old.org's, a chain of two.
        alias("%", "older.org", "%@old.org"),
        // IDN: stored in punycode (exämple.org).
        alias("juergen", "xn--exmple-cua.org", "alice@example.org"),
        mailbox("kontakt", "xn--exmple-cua.org"),
    ]
}

/// A final destination, as [`crate::Destination`] with static text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// A mailbox row of ours.
    Mailbox(&'static str),
    /// An address outside our domains.
    External(&'static str),
}

/// What resolving an address must give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Deliverable to `to`, in this order; smtpd's walk gets the answer at
    /// key `at` (keys before it answer not-found).
    Found {
        /// The walk key that answers.
        at: &'static str,
        /// The destinations.
        to: &'static [Dest],
    },
    /// Our domain, unknown address: every key of the walk is not found.
    NotFound,
    /// Not our domain: every key of the walk is not found.
    UnknownDomain,
    /// Every branch loops: a temporary error, never a bounce.
    Loop,
    /// An alias to an address of ours without rows: a temporary error.
    Dangling,
}

const fn found(at: &'static str, to: &'static [Dest]) -> Want {
    Want::Found { at, to }
}

const HUGO: &[Dest] = &[Mailbox("hugo@barrera.io")];
const ALICE: &[Dest] = &[Mailbox("alice@example.org")];
const BOB: &[Dest] = &[Mailbox("bob@example.org")];
const CAROL: &[Dest] = &[External("carol@elsewhere.net")];
const TEAM: &[Dest] = &[
    Mailbox("alice@example.org"),
    Mailbox("bob@example.org"),
    External("carol@elsewhere.net"),
];

/// Every address of the table and what it must resolve to.
pub const CASES: &[(&str, Want)] = &[
    // The article's data.
    ("hugo@barrera.io", found("hugo@barrera.io", HUGO)),
    ("random@barrera.io", found("@barrera.io", HUGO)),
    ("contact@example.com", found("contact@example.com", HUGO)),
    // Its catch-all targets hugo too: this one cannot tell the order.
    ("hugo+news@barrera.io", found("hugo@barrera.io", HUGO)),
    // Upper case.
    ("Hugo@Barrera.IO", found("hugo@barrera.io", HUGO)),
    ("TEAM@Example.ORG", found("team@example.org", TEAM)),
    (
        "john_doe@example.com",
        found("john_doe@example.com", &[Mailbox("john_doe@example.com")]),
    ),
    // A mailbox beats the catch-all, with or without a tag.
    (
        "dave@example.net",
        found("dave@example.net", &[Mailbox("dave@example.net")]),
    ),
    (
        "dave+news@example.net",
        found("dave@example.net", &[Mailbox("dave@example.net")]),
    ),
    // A pattern beats the catch-all, with or without a tag.
    (
        "news-daily@example.net",
        found("news-daily@example.net", BOB),
    ),
    (
        "news-daily+x@example.net",
        found("news-daily@example.net", BOB),
    ),
    // The catch-all, answered at `@dom`.
    ("random@example.net", found("@example.net", ALICE)),
    ("random+x@example.net", found("@example.net", ALICE)),
    // A tagged exact row beats the mailbox (step 1); other tags do not.
    (
        "bob+lists@example.org",
        found("bob+lists@example.org", ALICE),
    ),
    ("bob+other@example.org", found("bob@example.org", BOB)),
    ("lists@example.org", found("lists@example.org", ALICE)),
    // Fan-out in row order, with an external target; chains; duplicates.
    ("team@example.org", found("team@example.org", TEAM)),
    ("all@example.org", found("all@example.org", TEAM)),
    ("dup@example.org", found("dup@example.org", TEAM)),
    ("help@example.org", found("help@example.org", BOB)),
    // Pattern specificity: longest literal text, then longest prefix.
    ("sales-us@example.org", found("sales-us@example.org", BOB)),
    (
        "sales-us+q3@example.org",
        found("sales-us@example.org", BOB),
    ),
    (
        "Sales-EU-DE@example.org",
        found("sales-eu-de@example.org", ALICE),
    ),
    (
        "sales-x-bounces@example.org",
        found("sales-x-bounces@example.org", CAROL),
    ),
    (
        "sales-eu-bounces@example.org",
        found("sales-eu-bounces@example.org", ALICE),
    ),
    ("dev-ops@example.org", found("dev-ops@example.org", BOB)),
    // An exact alias beats a pattern.
    (
        "sales-vip@example.org",
        found("sales-vip@example.org", &[Mailbox("dave@example.net")]),
    ),
    // Keys smtpd takes and no row may have (`Address::parse_key`): a local
    // part past 64 bytes (a VERP return path), `|`, `%`. Patterns and
    // catch-alls take them; a `%` in the key is no pattern of its own.
    (
        "sales-yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy@example.org",
        found("sales-yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy@example.org", BOB),
    ),
    ("sales-a|b@example.org", found("sales-a|b@example.org", BOB)),
    ("sales-%@example.org", found("sales-%@example.org", BOB)),
    ("sales-eu-%@example.org", found("sales-eu-%@example.org", ALICE)),
    ("%@barrera.io", found("@barrera.io", HUGO)),
    ("a|b@barrera.io", found("@barrera.io", HUGO)),
    // ... but a target made from such a capture cannot be written: no
    // such address at the target; where the domain has a catch-all with a
    // fixed target, smtpd's walk goes on to `@dom` and finds it.
    ("ext-yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy@example.org", Want::NotFound),
    ("ext-a|b@example.org", Want::NotFound),
    ("ext-yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy@barrera.io", found("@barrera.io", HUGO)),
    ("ext-yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy+t@barrera.io", found("@barrera.io", HUGO)),
    ("ext-a|b@barrera.io", found("@barrera.io", HUGO)),
    (
        "ext-ok@barrera.io",
        found("ext-ok@barrera.io", &[External("ok@partner.example")]),
    ),
    (
        "ext-joe@example.org",
        found("ext-joe@example.org", &[External("joe@partner.example")]),
    ),
    // A domain alias: `%` substituted (tag dropped), answered at the
    // tagless full address, never at `@dom`.
    ("alice@old.org", found("alice@old.org", ALICE)),
    ("bob+x@old.org", found("bob@old.org", BOB)),
    ("team@old.org", found("team@old.org", TEAM)),
    // ... and a mailbox and a pattern of the aliased domain beat it.
    (
        "keep@old.org",
        found("keep@old.org", &[Mailbox("keep@old.org")]),
    ),
    (
        "keep+x@old.org",
        found("keep@old.org", &[Mailbox("keep@old.org")]),
    ),
    ("legacy-app@old.org", found("legacy-app@old.org", CAROL)),
    // ... while an address example.org does not have is unknown at
    // old.org too (no broken alias: it is made from the address).
    ("nobody@old.org", Want::NotFound),
    ("nobody+x@old.org", Want::NotFound),
    // Through a chain of domain aliases (older.org -> old.org ->
    // example.org) alike: found where the end has it, unknown where it
    // has not (not a broken alias: made from the address all the way).
    ("alice@older.org", found("alice@older.org", ALICE)),
    (
        "keep@older.org",
        found("keep@older.org", &[Mailbox("keep@old.org")]),
    ),
    ("nobody@older.org", Want::NotFound),
    // A fixed alias to it stays broken: a temporary error, also through a
    // catch-all.
    ("via-old@example.org", Want::Dangling),
    ("anyone@catch.example", Want::Dangling),
    // Cycles.
    ("loop1@example.org", Want::Loop),
    ("self@example.org", Want::Loop),
    ("half@example.org", found("half@example.org", BOB)),
    ("dangling@example.org", Want::Dangling),
    // IDN input, stored as punycode.
    (
        "JUERGEN@EXÄMPLE.ORG",
        found("juergen@xn--exmple-cua.org", ALICE),
    ),
    (
        "juergen@xn--exmple-cua.org",
        found("juergen@xn--exmple-cua.org", ALICE),
    ),
    (
        "Kontakt@Exämple.org",
        found(
            "kontakt@xn--exmple-cua.org",
            &[Mailbox("kontakt@xn--exmple-cua.org")],
        ),
    ),
    // Not found, and not ours.
    ("nobody@example.org", Want::NotFound),
    ("nobody+tag@example.org", Want::NotFound),
    ("hugo@nowhere.net", Want::UnknownDomain),
    ("hugo+x@nowhere.net", Want::UnknownDomain),
];

/// Keys smtpd may ask that no walk of [`CASES`] stops at, and the table's
/// answer (delivery user names and external addresses, `", "`-joined).
pub const KEYS: &[(&str, Option<&str>)] = &[
    // Bare user names and `@`: not found (smtpd then asks `userinfo`).
    ("hugo", None),
    ("@", None),
    ("", None),
    ("hugo_barrera.io@", None),
    // A catch-all answers at `@dom` only ...
    ("random@example.net", None),
    ("@example.net", Some("alice_example.org")),
    // ... a domain alias never there (the local part is gone).
    ("@old.org", None),
    // A tagged key gets exact rows only.
    ("dave+news@example.net", None),
    ("news-daily+x@example.net", None),
    ("@nowhere.net", None),
];

/// What each user may send as (`mailaddrmap`), in the resolver's order;
/// `None`: not a mailbox.
pub const SENDERS: &[(&str, Option<&[&str]>)] = &[
    (
        "hugo@barrera.io",
        Some(&["hugo@barrera.io", "@barrera.io", "contact@example.com"]),
    ),
    // Aliases, tagged rows, a catch-all of another domain (as `@dom`), an
    // IDN alias, and each of those again through the domain alias old.org
    // and the chain older.org -> old.org.
    (
        "alice@example.org",
        Some(&[
            "alice@example.org",
            "team@example.org",
            "dup@example.org",
            "bob+lists@example.org",
            "@example.net",
            "juergen@xn--exmple-cua.org",
            "alice@old.org",
            "alice@older.org",
            "lists@example.org",
            "lists@old.org",
            "lists@older.org",
            "dup@old.org",
            "dup@older.org",
            "info@example.org",
            "team@old.org",
            "team@older.org",
            "all@example.org",
            "info@old.org",
            "info@older.org",
            "all@old.org",
            "all@older.org",
        ]),
    ),
    // An exact alias that beats a pattern, and the same via old.org.
    (
        "dave@example.net",
        Some(&[
            "dave@example.net",
            "sales-vip@example.org",
            "sales-vip@old.org",
            "sales-vip@older.org",
        ]),
    ),
    ("keep@old.org", Some(&["keep@old.org", "keep@older.org"])),
    ("team@example.org", None),
];
