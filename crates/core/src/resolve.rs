//! THE resolution algorithm (DESIGN.md "Resolution"), used by every part:
//! the CLI explains it, the smtpd table answers each key of smtpd's walk with
//! it, Dovecot's lookups share its mailbox rules.
//!
//! For `local+tag@domain` (delimiter configurable):
//! 1. exact rows for `local+tag@domain` (only when a tag is present);
//! 2. exact rows for `local@domain`;
//! 3. pattern rows of `domain` matching `local` (tag stripped); the most
//!    specific pattern (longest literal text) wins, ties broken by the
//!    longer prefix, then by the stored username;
//! 4. the catch-all row `%@domain`;
//! 5. nothing: unknown address in a known domain, or an unknown domain.
//!
//! Targets resolve recursively, with cycle detection (a branch that comes
//! back to an address on its own path is dropped) and a depth limit, to final
//! destinations: mailboxes and external addresses. Several rows for one
//! address fan out. A target in one of our domains that resolves to nothing
//! is an error, not a silent drop: mail must never vanish.
//!
//! smtpd walks its own key order (`user+tag@dom`, `user@dom`, `user+tag`,
//! `user`, `@dom`, `@`; `aliases_virtual_get` in OpenSMTPD
//! `usr.sbin/smtpd/aliases.c`) and stops at the first key that answers.
//! [`Resolver::alias_for_key`] answers each key so that the walk yields
//! exactly the result above; a test checks the two agree.

use crate::address::{Address, AddressPattern, Domain, LocalPattern};
use crate::delivery;
use crate::row::{Row, RowKind};
use crate::store::{Store, StoreError};
use std::collections::{BTreeSet, HashSet};
use std::fmt;

/// Default for the recursion depth limit (smtpd's own `EXPAND_DEPTH` is 10).
pub const DEFAULT_MAX_DEPTH: usize = 10;

/// Most addresses the `senders` walk meets (the user, and the address of
/// each row leading to one it follows) before it gives up (with an error)
/// on a pathological table: far above any real mailbox's aliases, low
/// enough that smtpd never waits seconds for one answer. Counted as they
/// are met, before each is looked up: a mailbox that 100,000 aliases
/// point at costs 10,000 look-ups and an error, not 100,000.
pub const SENDERS_WALK_LIMIT: usize = 10_000;

/// Which step of the algorithm matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// 1: exact rows for the tagged address.
    TaggedExact,
    /// 2: exact rows for the address without its tag.
    Exact,
    /// 3: the most specific pattern of the domain.
    Pattern,
    /// 4: the domain catch-all.
    CatchAll,
}

impl Step {
    /// The step number of DESIGN.md.
    pub fn number(self) -> u8 {
        match self {
            Step::TaggedExact => 1,
            Step::Exact => 2,
            Step::Pattern => 3,
            Step::CatchAll => 4,
        }
    }
}

/// A final destination.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Destination {
    /// A mailbox row of ours: mail is stored for this address.
    Mailbox(Address),
    /// An address outside our domains: mail is relayed there.
    External(Address),
}

impl Destination {
    /// The address.
    pub fn address(&self) -> &Address {
        match self {
            Destination::Mailbox(a) | Destination::External(a) => a,
        }
    }

    /// What smtpd's alias expansion gets: the delivery user name for a
    /// mailbox, the address for an external destination.
    pub fn wire(&self) -> String {
        match self {
            Destination::Mailbox(a) => delivery::encode(a),
            Destination::External(a) => a.to_string(),
        }
    }
}

/// The result of resolving an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Deliverable, to these destinations (deduplicated, in row order).
    Found(Vec<Destination>),
    /// The domain is ours but the address is unknown (permanent reject).
    NotFound,
    /// The domain is not ours.
    UnknownDomain,
}

/// Why an address could not be resolved. Every variant is a temporary
/// failure for the daemons: mail waits in the sender's queue until the admin
/// or the database fixes it, it never bounces.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Every branch came back to an address already on its path.
    #[error("alias loop: {0}")]
    Loop(String),
    /// Deeper than the depth limit.
    #[error("alias chain deeper than {limit} at {at}")]
    TooDeep {
        /// Where the limit was hit.
        at: String,
        /// The limit.
        limit: usize,
    },
    /// A stored row cannot be interpreted.
    #[error("invalid row {row:?}: {why}")]
    BadRow {
        /// `username@domain -> mailbox`.
        row: String,
        /// What is wrong.
        why: String,
    },
    /// An alias points to an address of ours that resolves to nothing.
    #[error("{alias} points to {target}, which is in one of our domains but has no rows")]
    Dangling {
        /// The alias.
        alias: String,
        /// Its target.
        target: String,
    },
}

/// Rows matched for one address, with what `%` matched.
#[derive(Debug, Clone)]
pub struct Match {
    /// The step that matched.
    pub step: Step,
    /// The rows of that step (several rows fan out).
    pub rows: Vec<Row>,
    /// What `%` matched (the local part for exact rows).
    pub capture: String,
    /// The rows of the targets fetched with these rows
    /// ([`Store::exact_joined`]), so that expanding them asks nothing
    /// more for those targets.
    ahead: Prefetched,
}

/// The longest alias value smtpd can use: `expand_line` copies it into a
/// `char buffer[LINE_MAX]` (2048 on glibc) and fails from 2048 bytes on,
/// which smtpd answers `424 4.2.4 Mailing list expansion problem` on every
/// try (OpenSMTPD 6.8.0p2 and 7.6.0p1, `usr.sbin/smtpd/expand.c`,
/// `table.c` `table_parse_lookup`, `lka_session.c`).
pub const SMTPD_ALIAS_VALUE_MAX: usize = 2047;

/// The longest value one table reply carries to smtpd 7.5 and older (the
/// imsg protocol): a message is at most 16384 bytes (`MAX_IMSGSIZE` in
/// `imsg.h`), of which the header takes 16, the result 4 and the value's
/// NUL 1 (`table_proc.c`). A longer `mailaddrmap` list (`senders`) cannot
/// reach smtpd there: the table answers an error and smtpd refuses every
/// MAIL FROM of the login with 421. The text protocol of 7.6 and later has
/// no such bound (`mailaddr_line` in `usr.sbin/smtpd/mailaddr.c` copies
/// the list whole).
pub const SMTPD_IMSG_VALUE_MAX: usize = 16363;

/// One line of the explanation printed by `mailtable resolve`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WalkEntry {
    /// The key smtpd asks.
    pub key: String,
    /// The table's answer: `None` = not found (or an error, below).
    pub answer: Option<Vec<String>>,
    /// The table answers an error here: why ([`KeyAnswer::Unusable`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What the table answers smtpd for a key of the walk that has rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAnswer {
    /// These items (joined by `, ` on the wire): the final destinations,
    /// or, when those do not fit [`SMTPD_ALIAS_VALUE_MAX`], the alias's
    /// own targets, one level deep.
    Items(Vec<String>),
    /// No answer smtpd could use as meant: the destinations and the
    /// targets are too long, or an item would be read as something other
    /// than an address or a delivery user ([`smtpd_item_fault`]). An
    /// error, whose text says what to fix.
    Unusable(String),
}

/// Why smtpd would not read `item` of an alias value as meant, if it would
/// not. smtpd tries each item as a filter (`|`), an include, an error, a
/// file (`/` first), an address (an `@`), and only then a user name,
/// which may hold letters, digits and `_ . + -` alone (`alias_parse`,
/// `alias_is_filename`, `alias_is_username` in `usr.sbin/smtpd/to.c`,
/// 6.8.0p2 and 7.6.0p1). An address whose local part starts with `/` (RFC
/// 5321 allows it) would be delivered to a file by the delivery user, and
/// a domain alias copies the sender's local part into its target: such an
/// item is never answered. A mailbox whose delivery user name smtpd does
/// not take would fail the whole expansion, every other item's too; so
/// would one holding the tag `delimiter`, where smtpd cuts a user name
/// before asking for its userinfo (`gilles+hackers` is user `gilles`:
/// lka_expand, EXPAND_USERNAME, in `usr.sbin/smtpd/lka_session.c`), and
/// refuses the mail when no user has the name left (550).
pub fn smtpd_item_fault(item: &str, delimiter: char) -> Option<String> {
    if item.starts_with(['/', '|', ':']) {
        return Some(format!(
            "{item:?} would be read by smtpd as a file, a program or a directive, not an \
             address: not answered (the address is refused)"
        ));
    }
    if !item.contains('@')
        && !item
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.+-".contains(&b))
    {
        return Some(format!(
            "the delivery user name {item:?} has characters smtpd does not take in a user \
             name (letters, digits and _ . + - only): rename the mailbox"
        ));
    }
    if let Some((user, _)) = item.split_once(delimiter).filter(|_| !item.contains('@')) {
        return Some(format!(
            "the delivery user name {item:?} holds the tag delimiter {delimiter:?}: smtpd \
             would look it up as user {user:?} and refuse the mail; rename the mailbox"
        ));
    }
    None
}

/// The targets of a match one level deep, as smtpd's alias expansion
/// takes them: a mailbox delivering to itself as its delivery user, every
/// other target as its address, which smtpd looks up again (a virtual
/// address of ours) or relays. The table answers them when the final
/// destinations do not fit [`SMTPD_ALIAS_VALUE_MAX`]: an "everyone" alias
/// made of team aliases then still works, each team expanded by its own
/// lookup. Each target once, in row order.
fn direct_targets(m: &Match, targets: Vec<(Row, Formed)>) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (row, target) in targets.into_iter().filter_map(|(r, t)| Some((r, t.ok()?))) {
        let wire = match delivers_to_itself(m, &row, &target) {
            true => delivery::encode(&target),
            false => target.to_string(),
        };
        if seen.insert(wire.clone()) {
            out.push(wire);
        }
    }
    out
}

/// Whether smtpd's list syntax needs `c` escaped in a list value: it
/// splits `alias` and `mailaddrmap` values at commas outside quotes, a
/// `'` or `"` opening a quote and `\` escaping the next character, which
/// it keeps (`expand_line_split` in `usr.sbin/smtpd/expand.c`,
/// `mailaddr_line_split` in `usr.sbin/smtpd/mailaddr.c`, 6.8.0p2 and
/// 7.6.0p1). An address may hold `'` (`o'brien@example.org`: RFC 5321
/// allows it, and smtpd takes it); written bare, the quote never closes
/// and smtpd fails the whole lookup, for ever.
fn smtpd_escaped(c: char) -> bool {
    matches!(c, '\'' | '"' | '\\' | ',')
}

/// `item`'s length in a list value for smtpd, escapes included.
pub fn smtpd_item_len(item: &str) -> usize {
    item.len() + item.chars().filter(|&c| smtpd_escaped(c)).count()
}

/// A list value for smtpd, `a, b, c`, each item escaped as its list
/// syntax needs ([`smtpd_item_len`]): the table's `alias` and
/// `mailaddrmap` answers.
pub fn smtpd_list<S: AsRef<str>>(items: &[S]) -> String {
    let mut out = String::with_capacity(items.iter().map(|i| i.as_ref().len() + 2).sum());
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        for c in item.as_ref().chars() {
            if smtpd_escaped(c) {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out
}

/// The length of [`smtpd_list`] of `items`, counted without building it.
pub fn wire_len(items: &[String]) -> usize {
    items.iter().map(|i| smtpd_item_len(i)).sum::<usize>() + 2 * items.len().saturating_sub(1)
}

/// A mailbox row delivering to itself: a final destination, not looked up.
fn delivers_to_itself(m: &Match, row: &Row, target: &Address) -> bool {
    row.is_mailbox()
        && (m.step == Step::Exact || m.step == Step::TaggedExact)
        && is_row_address(target, row)
}

/// `target.to_string() == row.address()`, without building either string:
/// asked for every target of every lookup.
fn is_row_address(target: &Address, row: &Row) -> bool {
    let (tl, td) = (target.local(), target.domain().as_str());
    tl.len() + td.len() == row.username.len() + row.domain.len()
        && tl
            .bytes()
            .chain(std::iter::once(b'@'))
            .chain(td.bytes())
            .eq(row
                .username
                .bytes()
                .chain(std::iter::once(b'@'))
                .chain(row.domain.bytes()))
}

/// Exact rows fetched ahead, by `(username, domain)`: with the rows that
/// point at them ([`Store::exact_joined`]) or several at once
/// ([`Store::exact_many`]). A key not fetched is asked on its own.
///
/// Sorted by key, one entry per key, so that a look-up is a binary search:
/// every target of an alias is looked up here, and an "everyone" list has
/// thousands (a scan per target made a 20,000-target alias quadratic).
#[derive(Debug, Default, Clone)]
struct Prefetched(Vec<((String, String), Vec<Row>)>);

impl Prefetched {
    /// `fetched` as an index; of a key listed twice the first is kept.
    fn new(mut fetched: Vec<((String, String), Vec<Row>)>) -> Prefetched {
        // Stable: equal keys keep their order, and dedup keeps the first.
        fetched.sort_by(|a, b| a.0.cmp(&b.0));
        fetched.dedup_by(|later, earlier| later.0 == earlier.0);
        Prefetched(fetched)
    }

    fn position(&self, username: &str, domain: &str) -> Option<usize> {
        self.0
            .binary_search_by(|((u, d), _)| (u.as_str(), d.as_str()).cmp(&(username, domain)))
            .ok()
    }

    fn get(&self, username: &str, domain: &str) -> Option<&Vec<Row>> {
        self.position(username, domain).map(|i| &self.0[i].1)
    }

    fn get_mut(&mut self, username: &str, domain: &str) -> Option<&mut Vec<Row>> {
        self.position(username, domain).map(|i| &mut self.0[i].1)
    }
}

/// The rows of `username@domain`, from the first of `ahead` that has them
/// or else from the store, and what was fetched ahead with them: nothing
/// when they were fetched ahead themselves (their targets are asked when
/// they are expanded).
fn exact_rows(
    ahead: &[&Prefetched],
    store: &mut dyn Store,
    username: &str,
    domain: &str,
) -> Result<(Vec<Row>, Prefetched), StoreError> {
    match ahead.iter().find_map(|p| p.get(username, domain)) {
        Some(rows) => Ok((rows.clone(), Prefetched::default())),
        // A key smtpd may send ([`Address::parse_key`]) and no row may
        // have: asked as it stands, `sales-%` would find the pattern row
        // `sales-%` and take it for an exact one.
        None if username.contains('%') => Ok((Vec::new(), Prefetched::default())),
        None => {
            let joined = store.exact_joined(username, domain)?;
            Ok((joined.rows, Prefetched::new(joined.targets)))
        }
    }
}

/// The resolver: the algorithm's parameters.
#[derive(Debug, Clone)]
pub struct Resolver {
    /// Subaddress delimiter, `+` by default.
    pub delimiter: char,
    /// Recursion depth limit.
    pub max_depth: usize,
    /// Most addresses the `senders` walk meets ([`SENDERS_WALK_LIMIT`]).
    pub senders_limit: usize,
}

impl Default for Resolver {
    fn default() -> Self {
        Resolver {
            delimiter: '+',
            max_depth: DEFAULT_MAX_DEPTH,
            senders_limit: SENDERS_WALK_LIMIT,
        }
    }
}

/// A target as a row forms it for one address: the address, or why the
/// address's capture cannot form one ([`Resolver::targets`]).
pub type Formed = Result<Address, String>;

/// The target `r` forms with `capture` for its `%` ([`Resolver::targets`]).
fn formed(r: &Row, capture: &str) -> Result<Formed, ResolveError> {
    let bad = |e: crate::AddressError| ResolveError::BadRow {
        row: row_text(r),
        why: e.to_string(),
    };
    if !r.mailbox.contains('%') {
        return Address::parse(&r.mailbox).map(Ok).map_err(bad);
    }
    let text = r.mailbox.replace('%', capture);
    Ok(match Address::parse(&text) {
        Ok(a) if a.local().starts_with('/') && !r.mailbox.starts_with('/') => Err(format!(
            "{text} would be read by smtpd as a file to deliver to"
        )),
        Ok(a) => Ok(a),
        Err(e) => {
            Address::parse(&r.mailbox.replace('%', "x")).map_err(bad)?;
            Err(format!("{text:?} is not an address: {e}"))
        }
    })
}

fn row_text(r: &Row) -> String {
    format!("{}@{} -> {}", r.username, r.domain, r.mailbox)
}

/// Pick the most specific pattern: longest literal text, then longest
/// prefix, then the smallest stored username (deterministic across
/// backends, whatever order they return rows in).
///
/// Two patterns that both match `local` with equal literal and prefix
/// lengths have the same text (one `%` each, so equal prefix and suffix,
/// both cut from `local`). What can still differ is the stored username:
/// `Sales-%` and `sales-%` (a hand-edited row) are one pattern but two
/// groups of rows, and the rows of only one are used. The raw username
/// decides between them, not the backend's row order.
fn best_pattern<'a>(local: &str, rows: &'a [Row]) -> Option<(LocalPattern, &'a str)> {
    let mut best: Option<(LocalPattern, &str)> = None;
    for r in rows {
        let Ok(p) = LocalPattern::parse(&r.username, &r.address()) else {
            continue;
        };
        if !matches!(p, LocalPattern::Wildcard { .. }) {
            continue;
        }
        if p.capture(local).is_none() {
            continue;
        }
        let key = |p: &LocalPattern| {
            let prefix = match p {
                LocalPattern::Wildcard { prefix, .. } => prefix.len(),
                _ => 0,
            };
            (p.literal_len(), prefix)
        };
        let better = match &best {
            None => true,
            Some((b, b_username)) => {
                let (kp, kb) = (key(&p), key(b));
                kp > kb || (kp == kb && r.username.as_str() < *b_username)
            }
        };
        if better {
            best = Some((p, r.username.as_str()));
        }
    }
    best
}

impl Resolver {
    /// A resolver with this delimiter.
    pub fn new(delimiter: char) -> Resolver {
        Resolver {
            delimiter,
            ..Resolver::default()
        }
    }

    /// Steps 1 to 4 for one address, without recursion.
    pub fn match_address(
        &self,
        store: &mut dyn Store,
        addr: &Address,
    ) -> Result<Option<Match>, ResolveError> {
        self.match_with(store, addr, &[])
    }

    /// [`Resolver::match_address`], taking exact rows from `ahead` when
    /// they were fetched ahead.
    fn match_with(
        &self,
        store: &mut dyn Store,
        addr: &Address,
        ahead: &[&Prefetched],
    ) -> Result<Option<Match>, ResolveError> {
        let domain = addr.domain().as_str();
        let (base, tag) = addr.split_tag(self.delimiter);
        if tag.is_some() {
            let (rows, ahead) = exact_rows(ahead, store, addr.local(), domain)?;
            if !rows.is_empty() {
                return Ok(Some(Match {
                    step: Step::TaggedExact,
                    rows,
                    capture: addr.local().to_string(),
                    ahead,
                }));
            }
        }
        let (rows, ahead) = exact_rows(ahead, store, base, domain)?;
        if !rows.is_empty() {
            return Ok(Some(Match {
                step: Step::Exact,
                rows,
                capture: base.to_string(),
                ahead,
            }));
        }
        let wild = store.wildcards(domain)?;
        if let Some(m) = self.pattern_match(base, &wild) {
            return Ok(Some(m));
        }
        Ok(Self::catch_all(base, wild))
    }

    /// The exact rows of the targets the expansion of `targets` will look
    /// up and the match's rows did not bring along (`m.ahead`), in one
    /// query when there are several (an alias with N targets costs 1
    /// query on the SQL backends, at most 2, never 1 + N).
    fn prefetch(
        &self,
        store: &mut dyn Store,
        m: &Match,
        targets: &[(Row, Address)],
        path: &[Address],
    ) -> Result<Prefetched, ResolveError> {
        let mut listed = BTreeSet::new();
        for (row, t) in targets {
            if delivers_to_itself(m, row, t) || path.contains(t) {
                continue;
            }
            let (base, tag) = t.split_tag(self.delimiter);
            let domain = t.domain().as_str();
            let wanted = tag.map(|_| (t.local(), domain)).into_iter();
            for key in wanted.chain(std::iter::once((base, domain))) {
                if m.ahead.get(key.0, key.1).is_none() {
                    listed.insert(key);
                }
            }
        }
        if listed.len() < 2 {
            // One key left (or none): asked on its own when its turn
            // comes, with its own targets joined.
            return Ok(Prefetched::default());
        }
        let keys: Vec<(&str, &str)> = listed.into_iter().collect();
        let rows = store.exact_many(&keys)?;
        // Every key listed, found or not (none: no such address), each row
        // under its key.
        let mut fetched = Prefetched::new(
            keys.iter()
                .map(|(u, d)| ((u.to_string(), d.to_string()), Vec::new()))
                .collect(),
        );
        for r in rows {
            if let Some(of_key) = fetched.get_mut(&r.username, &r.domain) {
                of_key.push(r);
            }
        }
        Ok(fetched)
    }

    fn pattern_match(&self, base: &str, wild: &[Row]) -> Option<Match> {
        let (pattern, username) = best_pattern(base, wild)?;
        let capture = pattern.capture(base).unwrap_or_default().to_string();
        let rows = wild
            .iter()
            .filter(|r| r.username == username)
            .cloned()
            .collect();
        Some(Match {
            step: Step::Pattern,
            rows,
            capture,
            ahead: Prefetched::default(),
        })
    }

    fn catch_all(base: &str, wild: Vec<Row>) -> Option<Match> {
        let rows: Vec<Row> = wild
            .into_iter()
            .filter(|r| matches!(r.kind(), RowKind::CatchAll | RowKind::DomainAlias))
            .collect();
        (!rows.is_empty() && !base.is_empty()).then(|| Match {
            step: Step::CatchAll,
            rows,
            capture: base.to_string(),
            ahead: Prefetched::default(),
        })
    }

    /// Resolve `addr` to its final destinations.
    pub fn resolve(&self, store: &mut dyn Store, addr: &Address) -> Result<Outcome, ResolveError> {
        self.resolve_by(store, addr).map(|(outcome, _)| outcome)
    }

    /// [`Resolver::resolve`], with the match whose rows the destinations
    /// come from: the address's own match, or, when that made it unknown,
    /// the later key's that smtpd's walk goes on to (a tagged address's
    /// untagged one, then `@domain`). `None` when nothing delivers.
    pub fn resolve_by(
        &self,
        store: &mut dyn Store,
        addr: &Address,
    ) -> Result<(Outcome, Option<Match>), ResolveError> {
        match self.match_address(store, addr)? {
            Some(m) => {
                let found = self.expand_match(store, addr, Some(addr), &m)?;
                let (found, by) = match found.is_empty() {
                    true => self.past_unknown(store, addr, m.step)?,
                    false => (found, Some(m)),
                };
                Ok(match found.is_empty() {
                    true => (Outcome::NotFound, None),
                    false => (Outcome::Found(found), by),
                })
            }
            None if store.has_domain(addr.domain().as_str())? => Ok((Outcome::NotFound, None)),
            None => Ok((Outcome::UnknownDomain, None)),
        }
    }

    /// Where mail to `addr` goes when the match of its `step` made it
    /// unknown (every target made from it has no rows, or cannot hold its
    /// local part): smtpd's walk does not stop at a key answered "not
    /// found", and a key after it may answer. After a tagged key, the
    /// untagged address's (its own match); after that, `@dom`, which a
    /// catch-all with a fixed target answers ([`Resolver::alias_for_key`];
    /// a domain alias's `@dom` is not answered). The match the destinations
    /// come from is returned with them.
    fn past_unknown(
        &self,
        store: &mut dyn Store,
        addr: &Address,
        step: Step,
    ) -> Result<(Vec<Destination>, Option<Match>), ResolveError> {
        let next = match step {
            Step::TaggedExact => addr.without_tag(self.delimiter).to_string(),
            Step::Exact | Step::Pattern => format!("@{}", addr.domain()),
            Step::CatchAll => return Ok((Vec::new(), None)),
        };
        let after = match self.key_match(store, &next)? {
            Some((m, start)) => {
                let found = self.expand_match(store, addr, start.as_ref(), &m)?;
                if !found.is_empty() {
                    return Ok((found, Some(m)));
                }
                if start.is_none() {
                    return Ok((found, None));
                }
                m.step
            }
            // The untagged address unanswered: on to `@dom`.
            None if step == Step::TaggedExact => Step::Exact,
            None => return Ok((Vec::new(), None)),
        };
        self.past_unknown(store, addr, after)
    }

    /// The target addresses of a match, with `%` substituted. A target
    /// the row forms from a plain name but not from this capture is
    /// `Err(why)`, not an error of the row: the capture is the address's
    /// local part (a domain alias) or part of it (a pattern), which the
    /// sender chose, and it can make the target too long (`%@a.org ->
    /// longprefix-%@b.org`), empty (`sales-%` matching `sales-`), or start
    /// with `/`, which smtpd takes for a file to deliver to
    /// (`alias_is_filename` in `usr.sbin/smtpd/to.c`). The caller decides
    /// what that means for the address (the expansion: unknown when the
    /// capture is the address's own, an error when fixed rows made it). A
    /// row that forms no address at all is [`ResolveError::BadRow`].
    pub fn targets(&self, m: &Match) -> Result<Vec<(Row, Formed)>, ResolveError> {
        m.rows
            .iter()
            .map(|r| Ok((r.clone(), formed(r, &m.capture)?)))
            .collect()
    }

    /// `from_address`: `m`'s capture is the address being resolved's own
    /// (the first level, or every row on the way here substituted it with
    /// `%`). `made`: whether a target made from it (`%` in the row's
    /// mailbox: a domain alias, a pattern's substitution) is in one of our
    /// domains and has no rows.
    #[allow(clippy::too_many_arguments)]
    fn expand(
        &self,
        store: &mut dyn Store,
        origin: &dyn fmt::Display,
        m: &Match,
        from_address: bool,
        path: &mut Vec<Address>,
        out: &mut Vec<Destination>,
        made: &mut Expansion,
    ) -> Result<(), ResolveError> {
        let mut targets = Vec::with_capacity(m.rows.len());
        for row in &m.rows {
            match formed(row, &m.capture)? {
                Ok(target) => targets.push((row.clone(), target)),
                // The address's own local part cannot be carried over:
                // no such address exists at the target, which makes it
                // unknown (a permanent reject, as step 5 makes an address
                // the target domain lacks), never a deferral the sender
                // retries for days.
                Err(_) if from_address => made.unknown = true,
                // A capture a fixed row made: the rows are at fault.
                Err(why) => {
                    return Err(ResolveError::BadRow {
                        row: row_text(row),
                        why,
                    })
                }
            }
        }
        let fetched = self.prefetch(store, m, &targets, path)?;
        let ahead = [&m.ahead, &fetched];
        for (row, target) in targets {
            if delivers_to_itself(m, &row, &target) {
                out.push(Destination::Mailbox(target));
                continue;
            }
            if path.contains(&target) {
                continue; // a cycle: this branch adds nothing
            }
            if path.len() > self.max_depth {
                return Err(ResolveError::TooDeep {
                    at: target.to_string(),
                    limit: self.max_depth,
                });
            }
            let made_here = from_address && row.mailbox.contains('%');
            // Met before by another way: its destinations are found (a
            // target without rows gave its error or mark the first time).
            if !made.expanded.insert((target.clone(), made_here)) {
                continue;
            }
            match self.match_with(store, &target, &ahead)? {
                Some(next) => {
                    path.push(target.clone());
                    let r = self.expand(store, &target, &next, made_here, path, out, made);
                    path.pop();
                    r?;
                }
                // `%@old.org -> %@new.org` for an address new.org does not
                // have: that address is unknown, as it would be at new.org
                // (DESIGN step 5, a permanent reject), not a broken alias;
                // made from the address, it cannot have been meant to
                // exist; through a chain of domain aliases just as much.
                // A fixed target that is missing stays an error.
                None if made_here && store.has_domain(target.domain().as_str())? => {
                    made.unknown = true;
                }
                None if store.has_domain(target.domain().as_str())? => {
                    return Err(ResolveError::Dangling {
                        alias: origin.to_string(),
                        target: target.to_string(),
                    })
                }
                None => out.push(Destination::External(target)),
            }
        }
        Ok(())
    }

    /// Expand a match found for `addr` into final destinations; none when
    /// every target made from the address is unknown (the address is).
    fn expand_match(
        &self,
        store: &mut dyn Store,
        origin: &dyn fmt::Display,
        start: Option<&Address>,
        m: &Match,
    ) -> Result<Vec<Destination>, ResolveError> {
        let mut out = Vec::new();
        let mut path: Vec<Address> = start.into_iter().cloned().collect();
        let mut made = Expansion {
            unknown: false,
            expanded: HashSet::new(),
        };
        self.expand(store, origin, m, true, &mut path, &mut out, &mut made)?;
        let out = first_of_each(out);
        if out.is_empty() && !made.unknown {
            return Err(ResolveError::Loop(format!(
                "every target of {origin} loops back"
            )));
        }
        Ok(out)
    }

    /// The table's answer to one key of smtpd's virtual walk:
    /// - a full address with a tag: exact rows for it only (step 1);
    /// - a full address without a tag: exact rows (2), then the best
    ///   pattern (3), then a catch-all whose target uses `%` (a domain alias
    ///   needs the local part, which the `@dom` key no longer carries);
    /// - `@dom`: the catch-all (4), unless its target uses `%`;
    /// - bare user names and `@`: not found (smtpd then asks `userinfo`).
    pub fn alias_for_key(
        &self,
        store: &mut dyn Store,
        key: &str,
    ) -> Result<Option<Vec<Destination>>, ResolveError> {
        let Some((m, start)) = self.key_match(store, key)? else {
            return Ok(None);
        };
        self.expand_match(store, &key, start.as_ref(), &m)
            .map(found)
    }

    /// What the table answers for `key` of smtpd's walk: the final
    /// destinations as smtpd takes them (a mailbox as its delivery user),
    /// unless they do not fit smtpd's alias buffer; then the alias's own
    /// targets; when those do not fit either, an error (smtpd would
    /// answer 424 on every try to a value that long, and the admin must
    /// split the alias). `None`: no rows answer the key.
    pub fn smtpd_answer(
        &self,
        store: &mut dyn Store,
        key: &str,
    ) -> Result<Option<KeyAnswer>, ResolveError> {
        let Some((m, start)) = self.key_match(store, key)? else {
            return Ok(None);
        };
        let Some(dests) = found(self.expand_match(store, &key, start.as_ref(), &m)?) else {
            return Ok(None);
        };
        let unusable = |items: &[String]| {
            items
                .iter()
                .find_map(|i| smtpd_item_fault(i, self.delimiter))
                .map(|fault| KeyAnswer::Unusable(format!("{key}: {fault}")))
        };
        let items: Vec<String> = dests.iter().map(Destination::wire).collect();
        if let Some(refused) = unusable(&items) {
            return Ok(Some(refused));
        }
        if wire_len(&items) <= SMTPD_ALIAS_VALUE_MAX {
            return Ok(Some(KeyAnswer::Items(items)));
        }
        // The same rows, one level deep.
        let targets = direct_targets(&m, self.targets(&m)?);
        if let Some(refused) = unusable(&targets) {
            return Ok(Some(refused));
        }
        if wire_len(&targets) <= SMTPD_ALIAS_VALUE_MAX {
            return Ok(Some(KeyAnswer::Items(targets)));
        }
        Ok(Some(KeyAnswer::Unusable(format!(
            "{key}: {} destinations take {} bytes and the alias's {} targets {}, more \
             than the {SMTPD_ALIAS_VALUE_MAX} smtpd can use (it would answer 424 on every \
             try): split the alias into aliases of fewer targets each, which smtpd \
             expands one by one",
            items.len(),
            wire_len(&items),
            targets.len(),
            wire_len(&targets)
        ))))
    }

    /// The rows that answer `key` of smtpd's walk, and the address the key
    /// names (none for `@dom`).
    fn key_match(
        &self,
        store: &mut dyn Store,
        key: &str,
    ) -> Result<Option<(Match, Option<Address>)>, ResolveError> {
        if let Some(domain) = key.strip_prefix('@') {
            let Ok(domain) = Domain::parse(domain) else {
                return Ok(None);
            };
            let wild = store.wildcards(domain.as_str())?;
            let rows: Vec<Row> = wild
                .into_iter()
                .filter(|r| matches!(r.kind(), RowKind::CatchAll | RowKind::DomainAlias))
                .collect();
            if rows.is_empty() || rows.iter().any(|r| r.kind() == RowKind::DomainAlias) {
                return Ok(None);
            }
            // The `@dom` key has lost the local part; `%` targets were
            // answered at the full-address key already.
            let m = Match {
                step: Step::CatchAll,
                rows,
                capture: String::new(),
                ahead: Prefetched::default(),
            };
            return Ok(Some((m, None)));
        }
        if !key.contains('@') {
            return Ok(None);
        }
        let Ok(addr) = Address::parse_key(key) else {
            return Ok(None);
        };
        let domain = addr.domain().as_str();
        let (base, tag) = addr.split_tag(self.delimiter);
        if tag.is_some() {
            let (rows, ahead) = exact_rows(&[], store, addr.local(), domain)?;
            if rows.is_empty() {
                return Ok(None);
            }
            let m = Match {
                step: Step::TaggedExact,
                rows,
                capture: addr.local().to_string(),
                ahead,
            };
            return Ok(Some((m, Some(addr))));
        }
        let (rows, ahead) = exact_rows(&[], store, base, domain)?;
        let m = if !rows.is_empty() {
            Match {
                step: Step::Exact,
                rows,
                capture: base.to_string(),
                ahead,
            }
        } else {
            let wild = store.wildcards(domain)?;
            if let Some(m) = self.pattern_match(base, &wild) {
                m
            } else {
                match Self::catch_all(base, wild) {
                    Some(m) if m.rows.iter().any(|r| r.kind() == RowKind::DomainAlias) => m,
                    _ => return Ok(None),
                }
            }
        };
        Ok(Some((m, Some(addr))))
    }

    /// smtpd's key order for a recipient (`aliases_virtual_get` in
    /// `usr.sbin/smtpd/aliases.c`, 6.8.0p2 and 7.6.0p1). smtpd cuts the
    /// tag at the first delimiter wherever it is, so `+x@d` asks `+x@d`,
    /// `@d` (its empty user at the domain), `+x`, the empty key, `@d` and
    /// `@`; [`Address::split_tag`] leaves such a local part whole, which
    /// resolves the same (the extra keys are the catch-all's or none).
    pub fn smtpd_keys(&self, addr: &Address) -> Vec<String> {
        let local = addr.local();
        let (base, tagged) = match local.find(self.delimiter) {
            Some(i) => (&local[..i], true),
            None => (local, false),
        };
        let d = addr.domain();
        let mut keys = Vec::new();
        if tagged {
            keys.push(format!("{local}@{d}"));
        }
        keys.push(format!("{base}@{d}"));
        if tagged {
            keys.push(local.to_string());
        }
        keys.push(base.to_string());
        keys.push(format!("@{d}"));
        keys.push("@".to_string());
        keys
    }

    /// Walk smtpd's keys, stopping at the first that answers, as smtpd does.
    pub fn smtpd_walk(
        &self,
        store: &mut dyn Store,
        addr: &Address,
    ) -> Result<Vec<WalkEntry>, ResolveError> {
        let mut walk = Vec::new();
        for key in self.smtpd_keys(addr) {
            let (answer, error) = match self.smtpd_answer(store, &key) {
                Ok(None) => (None, None),
                Ok(Some(KeyAnswer::Items(items))) => (Some(items), None),
                Ok(Some(KeyAnswer::Unusable(why))) => (None, Some(why)),
                // The database failing is the caller's error; a loop, a
                // target without rows or a bad row is what the table
                // answers this key: `error`, and smtpd stops there.
                Err(ResolveError::Store(e)) => return Err(e.into()),
                Err(e) => (None, Some(e.to_string())),
            };
            let hit = answer.is_some() || error.is_some();
            walk.push(WalkEntry { key, answer, error });
            if hit {
                break;
            }
        }
        Ok(walk)
    }

    /// Why smtpd's expansion of `addr` fails, if it does: an error the
    /// table answers for a key of its walk, or for an address its answer
    /// lists, which smtpd expands the same way in turn (`lka_expand` in
    /// `usr.sbin/smtpd/lka_session.c` looks every address node up in the
    /// virtual table again, and a table error fails the whole message,
    /// 4xx). An answer of final destinations lists external addresses
    /// only (a mailbox goes as its delivery user), whose walks find
    /// nothing; an alias whose destinations do not fit is answered with
    /// its own targets ([`KeyAnswer::Items`]), and one of those may fail.
    /// Each address once, to smtpd's depth ([`DEFAULT_MAX_DEPTH`] levels).
    /// The text starts with the key that failed.
    pub fn smtpd_failure(
        &self,
        store: &mut dyn Store,
        addr: &Address,
    ) -> Result<Option<String>, ResolveError> {
        let mut seen = HashSet::from([addr.clone()]);
        let mut level = vec![addr.clone()];
        for _ in 0..DEFAULT_MAX_DEPTH {
            let mut next = Vec::new();
            for a in &level {
                for w in self.smtpd_walk(store, a)? {
                    if let Some(why) = w.error {
                        return Ok(Some(why));
                    }
                    for item in w.answer.iter().flatten() {
                        if let Ok(t) = Address::parse(item) {
                            if seen.insert(t.clone()) {
                                next.push(t);
                            }
                        }
                    }
                }
            }
            if next.is_empty() {
                break;
            }
            level = next;
        }
        Ok(None)
    }

    /// The mailbox row of a login (`hugo@barrera.io` or `hugo_barrera.io`).
    pub fn mailbox(
        &self,
        store: &mut dyn Store,
        addr: &Address,
    ) -> Result<Option<Row>, StoreError> {
        let rows = store.exact(addr.local(), addr.domain().as_str())?;
        Ok(rows.into_iter().find(Row::is_mailbox))
    }

    /// What an authenticated user may send as (smtpd `senders`,
    /// `mailaddrmap`): its own address, every address of ours that delivers
    /// to it, and `@dom` for a catch-all of a domain that delivers to it.
    /// `None` when `user` has no mailbox.
    ///
    /// A database error anywhere in the walk is an error of the whole
    /// answer; an alias that loops or dangles merely does not reach `user`.
    pub fn senders(
        &self,
        store: &mut dyn Store,
        user: &Address,
    ) -> Result<Option<Vec<String>>, ResolveError> {
        if self.mailbox(store, user)?.is_none() {
            return Ok(None);
        }
        let mut out = vec![user.to_string()];
        // Only addresses that really resolve to the user (precedence: a
        // mailbox beats a catch-all, an exact row beats a pattern), with
        // every branch of the fan-out intact.
        let keep = |r: &Resolver, s: &mut dyn Store, _: &Row, src: &Address| {
            Ok(match r.resolve(s, src) {
                Ok(Outcome::Found(d)) => d.iter().any(|d| d.address() == user),
                Ok(Outcome::NotFound | Outcome::UnknownDomain) => false,
                // The database failed: the whole answer is an error (smtpd
                // 4xx), never a shorter list (a 5xx for a legitimate sender).
                Err(ResolveError::Store(e)) => return Err(e.into()),
                // A loop, a dangling target, a chain too deep or a bad row:
                // mail to that address never reaches the user (it
                // tempfails). A fact of the data, not an outage; failing the
                // whole list would refuse every address of the user because
                // of one broken alias.
                Err(_) => false,
            })
        };
        for reach in self.walk_sources(store, user, keep)? {
            let item = match (reach.row.kind(), reach.source) {
                (RowKind::CatchAll, _) => format!("@{}", reach.row.domain),
                (_, Some(src)) => src.to_string(),
                // A pattern with a fixed target: no one address to send as.
                (_, None) => continue,
            };
            if !out.contains(&item) {
                out.push(item);
            }
        }
        // A domain alias onto a domain whose catch-all reaches the user
        // (`%@old -> %@new`, `%@new -> user`) gives every address of `old`
        // the same way: `@old` too, through chains of domain aliases.
        let mut i = 0;
        let mut aliases: Option<Vec<Row>> = None;
        while i < out.len() {
            if let Some(d) = out[i].strip_prefix('@').map(str::to_string) {
                let rows = match &aliases {
                    Some(rows) => rows,
                    None => aliases.insert(
                        store
                            .wildcard_targets()?
                            .into_iter()
                            .filter(|r| r.kind() == RowKind::DomainAlias)
                            .collect(),
                    ),
                };
                for r in rows {
                    let onto = r.mailbox.strip_prefix("%@").unwrap_or_default();
                    let item = format!("@{}", r.domain);
                    if onto.eq_ignore_ascii_case(&d) && !out.contains(&item) {
                        out.push(item);
                    }
                }
            }
            i += 1;
        }
        Ok(Some(out))
    }

    /// Every row through which mail reaches `target`, directly or through
    /// other aliases: aliases, patterns, catch-alls and domain aliases, in
    /// the order the walk finds them. A row counts when the resolution of
    /// the address it answers for really uses it (an exact row shadows a
    /// pattern, a pattern the catch-all); a pattern or catch-all with a
    /// fixed target counts as it stands. Rows reaching a pattern or a
    /// catch-all in turn are not followed (no one address to look for).
    /// `target` need not have a mailbox: an external address works too.
    pub fn reaching(
        &self,
        store: &mut dyn Store,
        target: &Address,
    ) -> Result<Vec<Reach>, ResolveError> {
        let keep = |r: &Resolver, s: &mut dyn Store, row: &Row, src: &Address| {
            Ok(r.match_address(s, src)?
                .is_some_and(|m| m.rows.iter().any(|x| x == row)))
        };
        // A wildcard row may lead here from several addresses: list it once.
        let mut out: Vec<Reach> = Vec::new();
        for reach in self.walk_sources(store, target, keep)? {
            if !out.iter().any(|r| r.row == reach.row) {
                out.push(reach);
            }
        }
        Ok(out)
    }

    /// The reverse walk shared by [`Resolver::senders`] and
    /// [`Resolver::reaching`]: from `start`, the rows that target each
    /// address found so far (exactly, or through a `%` target), keeping a
    /// row with a concrete source address when `keep` says so and then
    /// following that address. Rows without one (a catch-all, a pattern
    /// with a fixed target) are kept and not followed.
    fn walk_sources(
        &self,
        store: &mut dyn Store,
        start: &Address,
        mut keep: impl FnMut(&Resolver, &mut dyn Store, &Row, &Address) -> Result<bool, ResolveError>,
    ) -> Result<Vec<Reach>, ResolveError> {
        let mut out: Vec<Reach> = Vec::new();
        let mut queue = vec![start.clone()];
        // Looked up, not searched: one address may have thousands of rows
        // pointing at it.
        let mut seen = HashSet::from([start.clone()]);
        let wild_targets = store.wildcard_targets()?;
        while let Some(target) = queue.pop() {
            let mut sources: Vec<(Row, Option<Address>)> = Vec::new();
            for r in store.targeting(&target.to_string())? {
                let src = Address::from_parts(&r.username, &r.domain).ok();
                sources.push((r, src));
            }
            // Rows whose target has a `%`: reverse the substitution.
            for r in &wild_targets {
                let Ok(tp) = AddressPattern::parse(&r.mailbox) else {
                    continue;
                };
                if tp.domain != *target.domain() {
                    continue;
                }
                let Some(cap) = tp.local.capture(target.local()) else {
                    continue;
                };
                let src = Address::from_parts(&r.username.replace('%', cap), &r.domain).ok();
                sources.push((r.clone(), src));
            }
            for (row, src) in sources {
                // A mailbox row delivering to itself is the target, not a
                // way to it.
                if row.is_mailbox() && is_row_address(&target, &row) {
                    continue;
                }
                let src = match row.kind() {
                    RowKind::CatchAll => None,
                    _ => src,
                };
                let Some(src) = src else {
                    if !out.iter().any(|r| r.row == row) {
                        out.push(Reach {
                            row,
                            source: None,
                            target: target.clone(),
                        });
                    }
                    continue;
                };
                if !seen.insert(src.clone()) {
                    continue;
                }
                if seen.len() > self.senders_limit {
                    // Bounded, so a pathological table cannot stall smtpd;
                    // and an error, not the list so far: a cut list would
                    // refuse a legitimate sender with a 5xx.
                    return Err(ResolveError::TooDeep {
                        at: format!("addresses reaching {start}"),
                        limit: self.senders_limit,
                    });
                }
                if keep(self, store, &row, &src)? {
                    out.push(Reach {
                        row,
                        source: Some(src.clone()),
                        target: target.clone(),
                    });
                    queue.push(src);
                }
            }
        }
        Ok(out)
    }
}

/// One row through which mail reaches an address ([`Resolver::reaching`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    /// The row (an alias, pattern, catch-all or domain alias).
    pub row: Row,
    /// The one address the row answers for here; `None` for a catch-all
    /// or a pattern with a fixed target, which answer for many.
    pub source: Option<Address>,
    /// The address the row points at on the way (the target itself, or an
    /// alias that leads to it).
    pub target: Address,
}

/// What one expansion ([`Resolver::expand`]) has met so far.
struct Expansion {
    /// A target made from the address being resolved (by `%` substitution
    /// from it, directly or through a chain of such rows: `%@a.org ->
    /// %@b.org`, `%@b.org -> %@c.org`) is in one of our domains and has no
    /// rows.
    unknown: bool,
    /// The targets met so far in this lookup (past the cycle and depth
    /// checks), each with whether it was made from the address
    /// ([`Resolver::expand`]'s `from_address`, which is all its expansion
    /// depends on besides its path). One that comes again by another way
    /// adds only destinations already found, or an error already given:
    /// every destination reachable from it was, on the first way, or is
    /// being found by an address on that way's path it looped back to.
    /// Without this, aliases that fan out into each other level after
    /// level (W targets per level, each level's aliases all pointing at
    /// the next) cost W^depth probes for W×depth rows: seconds at W = 5,
    /// while smtpd waits for the answer. (smtpd's own expansion tells
    /// nodes apart by their parent, `expand_cmp` in
    /// `usr.sbin/smtpd/expand.c`, and would walk every way; it gets the
    /// final destinations instead.)
    expanded: HashSet<(Address, bool)>,
}

/// A key's answer: its destinations, or not found when there are none
/// (every target made from the address is unknown).
fn found(destinations: Vec<Destination>) -> Option<Vec<Destination>> {
    (!destinations.is_empty()).then_some(destinations)
}

/// `out` with each destination once, where it first appears. Done once at
/// the end rather than by searching `out` before each push, which was
/// quadratic in an alias's targets.
fn first_of_each(out: Vec<Destination>) -> Vec<Destination> {
    if out.len() < 2 {
        return out;
    }
    let mut seen = HashSet::with_capacity(out.len());
    let first: Vec<bool> = out.iter().map(|d| seen.insert(d)).collect();
    drop(seen);
    out.into_iter()
        .zip(first)
        .filter_map(|(d, first)| first.then_some(d))
        .collect()
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Mailbox(a) => {
                write!(f, "{a} (mailbox, delivery user {})", delivery::encode(a))
            }
            Destination::External(a) => write!(f, "{a} (external)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::failing::each_failure;
    use crate::store::memory::MemStore;
    use crate::testdata::{self, check};

    fn answer(s: &mut MemStore, key: &str) -> KeyAnswer {
        Resolver::default()
            .smtpd_answer(s, key)
            .unwrap()
            .expect("rows answer the key")
    }

    /// smtpd's list syntax escaped on literal values; other items as they
    /// are.
    #[test]
    fn smtpd_list_values_escape_quotes_commas_and_backslashes() {
        assert_eq!(
            smtpd_list(&["hugo_barrera.io", "o'brien@example.org"]),
            "hugo_barrera.io, o\\'brien@example.org"
        );
        assert_eq!(smtpd_list(&["a\"b,c\\d"]), "a\\\"b\\,c\\\\d");
        assert_eq!(smtpd_list::<&str>(&[]), "");
        assert_eq!(smtpd_item_len("a\"b,c\\d"), 10);
        assert_eq!(smtpd_item_len("hugo@ex.org"), 11);
    }

    /// Destinations up to smtpd's 2047 bytes are answered as they are; past
    /// them the alias's own targets, when those fit; else an error.
    #[test]
    fn an_smtpd_answer_fits_the_alias_buffer_to_the_byte() {
        // Externals joined by ", " to exactly `len` bytes: as many short
        // ones as leave room for a last one of 1 to 40 characters before
        // its `@`.
        // (Measured by join, not by wire_len, which this checks.)
        let externals = |len: usize| {
            let joined = |items: &[String]| items.join(", ").len();
            let mut items: Vec<String> = Vec::new();
            while len - joined(&items) > 2 + 40 + "@partner.example".len() {
                items.push(format!("m{:02}@partner.example", items.len()));
            }
            let pad = len - joined(&items) - 2 - "@partner.example".len();
            items.push(format!("{}@partner.example", "x".repeat(pad)));
            assert_eq!(wire_len(&items), len);
            items
        };
        let mut s = MemStore::default();
        for (name, len) in [
            ("fits", SMTPD_ALIAS_VALUE_MAX),
            ("over", SMTPD_ALIAS_VALUE_MAX + 1),
        ] {
            for t in externals(len) {
                s = s.with(name, "ex.org", &t, None);
            }
        }
        for team in ["red", "blue"] {
            for t in externals(1500) {
                s = s.with(team, "ex.org", &t.replace("@", &format!("-{team}@")), None);
            }
            s = s.with("all", "ex.org", &format!("{team}@ex.org"), None);
        }
        assert_eq!(
            answer(&mut s, "fits@ex.org"),
            KeyAnswer::Items(externals(SMTPD_ALIAS_VALUE_MAX))
        );
        match answer(&mut s, "over@ex.org") {
            KeyAnswer::Unusable(why) => assert!(why.contains("split the alias"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            answer(&mut s, "all@ex.org"),
            KeyAnswer::Items(vec!["red@ex.org".into(), "blue@ex.org".into()])
        );
        assert!(matches!(answer(&mut s, "red@ex.org"), KeyAnswer::Items(v) if v.len() > 40));
        // The escapes count: 2047 bytes as stored, one `'` among them, is
        // 2048 on the wire.
        let mut quoted = externals(SMTPD_ALIAS_VALUE_MAX);
        let last = quoted.pop().unwrap();
        quoted.push(format!("o'{}", &last[2..]));
        assert_eq!(quoted.join(", ").len(), SMTPD_ALIAS_VALUE_MAX);
        assert_eq!(smtpd_list(&quoted).len(), SMTPD_ALIAS_VALUE_MAX + 1);
        assert_eq!(wire_len(&quoted), SMTPD_ALIAS_VALUE_MAX + 1);
        for t in &quoted {
            s = s.with("quoted", "ex.org", t, None);
        }
        match answer(&mut s, "quoted@ex.org") {
            KeyAnswer::Unusable(why) => assert!(why.contains("split the alias"), "{why}"),
            other => panic!("{other:?}"),
        }

        // smtpd expands each target `all` lists: none fails, and neither
        // does `all`. An alias listing `over` fails with it, one level
        // down or two; a mailbox and a fitting list do not fail at all.
        let r = Resolver::default();
        let failure =
            |s: &mut MemStore, a: &str| r.smtpd_failure(s, &Address::parse(a).unwrap()).unwrap();
        assert_eq!(failure(&mut s, "all@ex.org"), None);
        assert_eq!(failure(&mut s, "fits@ex.org"), None);
        s = s
            .with("big", "ex.org", "red@ex.org", None)
            .with("big", "ex.org", "over@ex.org", None)
            .with("outer", "ex.org", "big@ex.org", None)
            .with("outer", "ex.org", "blue@ex.org", None)
            .with("hugo", "ex.org", "hugo@ex.org", Some("$2b$h"));
        for a in ["over@ex.org", "big@ex.org", "outer@ex.org"] {
            let why = failure(&mut s, a).unwrap_or_else(|| panic!("{a} does not fail"));
            assert!(why.starts_with("over@ex.org: "), "{a}: {why}");
        }
        assert_eq!(failure(&mut s, "hugo@ex.org"), None);
    }

    /// smtpd reads an item starting with `/` as a file and one without `@`
    /// as a user name of letters, digits and `_ . + -`: an item it would
    /// read otherwise is never answered. A domain alias to an outside
    /// domain copies the sender's local part into its target.
    #[test]
    fn an_smtpd_answer_never_holds_what_smtpd_reads_otherwise() {
        let mut s = MemStore::default()
            .with("%", "old.org", "%@external.net", None)
            .with("o'brien", "ex.org", "o'brien@ex.org", Some("$2b$04$x"))
            .with("hugo", "ex.org", "hugo@ex.org", Some("$2b$04$x"))
            .with("list", "ex.org", "o'brien@ex.org", None)
            .with("list", "ex.org", "hugo@ex.org", None);
        assert_eq!(
            answer(&mut s, "joe@old.org"),
            KeyAnswer::Items(vec!["joe@external.net".into()])
        );
        // The sender's local part made into a file name: never answered,
        // and not a deferral either: no such address can exist there.
        for key in ["/tmp/pwn@old.org", "/x`id`@old.org"] {
            let got = Resolver::default().smtpd_answer(&mut s, key).unwrap();
            assert_eq!(got, None, "{key}");
        }
        // A fixed target starting with `/` (written by hand): refused.
        let mut fixed = MemStore::default().with("f", "ex.org", "/tmp/x@ex.net", None);
        match answer(&mut fixed, "f@ex.org") {
            KeyAnswer::Unusable(why) => assert!(why.contains("file"), "{why}"),
            other => panic!("{other:?}"),
        }
        match answer(&mut s, "list@ex.org") {
            KeyAnswer::Unusable(why) => assert!(why.contains("delivery user name"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            answer(&mut s, "hugo@ex.org"),
            KeyAnswer::Items(vec!["hugo_ex.org".into()])
        );
        // A mailbox written by hand with the delimiter in its name.
        let mut s = MemStore::default().with("a+b", "ex.org", "a+b@ex.org", Some("$2b$04$x"));
        match answer(&mut s, "a+b@ex.org") {
            KeyAnswer::Unusable(why) => assert!(why.contains("tag delimiter"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(smtpd_item_fault("a.b+c-d_e_ex.org", '#'), None);
        assert!(
            smtpd_item_fault("|cmd", '+').is_some()
                && smtpd_item_fault(":include:/x", '+').is_some()
        );
        // smtpd cuts a user name at its delimiter; an address it does not.
        assert!(smtpd_item_fault("a+b_ex.org", '+').is_some_and(|f| f.contains("user \"a\"")));
        assert!(smtpd_item_fault("hugo_x-y.org", '-').is_some());
        assert_eq!(smtpd_item_fault("a+b@ex.org", '+'), None);
        assert_eq!(smtpd_item_fault("hugo_x-y.org", '+'), None);
    }

    /// A row is its address when `username@domain` is the address's
    /// text byte for byte; equal lengths alone, or parts that join to
    /// other text, are not.
    #[test]
    fn a_row_is_its_address_only_byte_for_byte() {
        let row = |u: &str, d: &str| Row {
            username: u.into(),
            domain: d.into(),
            mailbox: format!("{u}@{d}"),
            password: None,
            active: true,
            quota: None,
        };
        let a = Address::parse("hugo@barrera.io").unwrap();
        assert!(is_row_address(&a, &row("hugo", "barrera.io")));
        for (u, d) in [
            ("hugi", "barrera.io"),
            ("hugo", "barrera.ia"),
            ("hug", "obarrera.io"),
            ("hugo.", "barrera.io"),
            ("hugo@barrera.io", ""),
            ("", "hugo@barrera.io"),
        ] {
            assert!(!is_row_address(&a, &row(u, d)), "{u}@{d}");
        }
    }

    fn ext(a: &str) -> Destination {
        Destination::External(Address::parse(a).unwrap())
    }

    /// The exact rows of an alias's targets come in one query for all of
    /// them (`exact_many`), not one or two each; the answer is the one of
    /// one query per target.
    #[test]
    fn an_alias_fetches_its_targets_rows_in_one_query() {
        use crate::store::failing::FailingStore;
        let s = MemStore::default()
            .with("team", "x.org", "a@x.org", None)
            .with("team", "x.org", "b+tag@x.org", None)
            .with("team", "x.org", "out@ext.net", None)
            .with("a", "x.org", "a@x.org", Some(testdata::HASH))
            .with("b", "x.org", "b@x.org", Some(testdata::HASH))
            .with("b", "x.org", "b-copy@ext.net", None);
        let r = Resolver::default();
        let team = Address::parse("team@x.org").unwrap();
        let mut counting = FailingStore::counting(s.clone());
        let got = r.resolve(&mut counting, &team).unwrap();
        let mailbox = |a: &str| Destination::Mailbox(Address::parse(a).unwrap());
        assert_eq!(
            got,
            Outcome::Found(vec![
                mailbox("a@x.org"),
                mailbox("b@x.org"),
                ext("b-copy@ext.net"),
                ext("out@ext.net"),
            ])
        );
        // exact_joined(team) brings the rows of a, b+tag and out (none);
        // b, the base of the tagged target, is the one key left, asked on
        // its own with its targets joined (b-copy: none); b's own row is
        // final; b-copy@ext.net and out@ext.net (no row, not our domain)
        // cost wildcards and has_domain each. One query per target would
        // be 1 + 1 + 2 + 3 + 3 = 10.
        assert_eq!(counting.calls(), 1 + 1 + 2 + 2);
    }

    /// The common alias, whose targets are mailboxes: one query, the key's
    /// rows joined to its targets' rows, whatever the number of targets;
    /// the same for the table's key of smtpd's walk.
    #[test]
    fn an_alias_to_mailboxes_costs_one_query() {
        use crate::store::failing::FailingStore;
        let s = MemStore::default()
            .with("team", "x.org", "a@x.org", None)
            .with("team", "x.org", "b@x.org", None)
            .with("team", "x.org", "c@y.org", None)
            .with("a", "x.org", "a@x.org", Some(testdata::HASH))
            .with("b", "x.org", "b@x.org", Some(testdata::HASH))
            .with("c", "y.org", "c@y.org", Some(testdata::HASH));
        let r = Resolver::default();
        let team = Address::parse("team@x.org").unwrap();
        let want: Vec<Destination> = ["a@x.org", "b@x.org", "c@y.org"]
            .iter()
            .map(|a| Destination::Mailbox(Address::parse(a).unwrap()))
            .collect();
        let mut counting = FailingStore::counting(s.clone());
        assert_eq!(
            r.resolve(&mut counting, &team).unwrap(),
            Outcome::Found(want.clone())
        );
        assert_eq!(counting.calls(), 1);
        let mut counting = FailingStore::counting(s);
        assert_eq!(
            r.alias_for_key(&mut counting, "team@x.org").unwrap(),
            Some(want)
        );
        assert_eq!(counting.calls(), 1);
    }

    /// What the join leaves to fetch: the bases of tagged targets (the
    /// join probes a target as stored), two or more of them in one more
    /// query; and targets that are never looked up (on the path: a cycle)
    /// add no key.
    #[test]
    fn prefetch_asks_what_the_join_left_and_only_that() {
        use crate::store::failing::FailingStore;
        let s = MemStore::default()
            .with("pair", "x.org", "b+x@x.org", None)
            .with("pair", "x.org", "c+y@x.org", None)
            .with("b", "x.org", "b@x.org", Some(testdata::HASH))
            .with("c", "x.org", "c@x.org", Some(testdata::HASH))
            .with("a", "x.org", "b@x.org", None)
            .with("b", "y.org", "a@x.org", None)
            .with("b", "y.org", "b@y.org", None)
            .with("a", "x.org", "b@y.org", None);
        let r = Resolver::default();
        let mailbox = |a: &str| Destination::Mailbox(Address::parse(a).unwrap());
        let mut counting = FailingStore::counting(s.clone());
        let pair = Address::parse("pair@x.org").unwrap();
        assert_eq!(
            r.resolve(&mut counting, &pair).unwrap(),
            Outcome::Found(vec![mailbox("b@x.org"), mailbox("c@x.org")])
        );
        // exact_joined(pair) finds nothing at b+x and c+y; exact_many(b, c).
        assert_eq!(counting.calls(), 2);

        // a@x.org -> b@x.org (a mailbox) and b@y.org; b@y.org -> a@x.org
        // and itself, both on the path: expanding b@y.org asks nothing.
        let mut counting = FailingStore::counting(s);
        let a = Address::parse("a@x.org").unwrap();
        assert_eq!(
            r.resolve(&mut counting, &a).unwrap(),
            Outcome::Found(vec![mailbox("b@x.org")])
        );
        // exact_joined(a) brings b@x.org's and b@y.org's rows.
        assert_eq!(counting.calls(), 1);
    }

    /// A target key the join probed as stored but the resolver normalises
    /// differently (upper case, a tag, `%`) is asked again, not taken from
    /// the join: the answer is the one of a store without the join.
    #[test]
    fn targets_the_join_cannot_answer_are_asked_again() {
        let s = MemStore::default()
            .with("team", "x.org", "Hugo@X.org", None)
            .with("team", "x.org", "b+news@x.org", None)
            .with("hugo", "x.org", "hugo@x.org", Some(testdata::HASH))
            .with("b", "x.org", "b@x.org", Some(testdata::HASH))
            .with("sales", "x.org", "%-desk@x.org", None)
            .with("sales-desk", "x.org", "c@x.org", None)
            .with("c", "x.org", "c@x.org", Some(testdata::HASH));
        let r = Resolver::default();
        let mailbox = |a: &str| Destination::Mailbox(Address::parse(a).unwrap());
        for (addr, want) in [
            (
                "team@x.org",
                vec![mailbox("hugo@x.org"), mailbox("b@x.org")],
            ),
            ("sales@x.org", vec![mailbox("c@x.org")]),
        ] {
            let a = Address::parse(addr).unwrap();
            for unjoined in [false, true] {
                let mut store = s.clone();
                store.unjoined = unjoined;
                assert_eq!(
                    r.resolve(&mut store, &a).unwrap(),
                    Outcome::Found(want.clone()),
                    "{addr}, unjoined: {unjoined}"
                );
            }
        }
    }

    /// A destination reached twice (listed twice, or through an alias that
    /// reaches it too) is given once, where it is first reached; with the
    /// join and without it.
    #[test]
    fn each_destination_once_where_first_reached() {
        let s = MemStore::default()
            .with("list", "x.org", "c@x.org", None)
            .with("list", "x.org", "team@x.org", None)
            .with("list", "x.org", "a@x.org", None)
            .with("list", "x.org", "ext@y.net", None)
            .with("list", "x.org", "c@x.org", None)
            .with("team", "x.org", "a@x.org", None)
            .with("team", "x.org", "ext@y.net", None)
            .with("team", "x.org", "b@x.org", None)
            .with("a", "x.org", "a@x.org", Some(testdata::HASH))
            .with("b", "x.org", "b@x.org", Some(testdata::HASH))
            .with("c", "x.org", "c@x.org", Some(testdata::HASH));
        let r = Resolver::default();
        let list = Address::parse("list@x.org").unwrap();
        let d = |a: &str| Address::parse(a).unwrap();
        for unjoined in [false, true] {
            let mut store = s.clone();
            store.unjoined = unjoined;
            assert_eq!(
                r.resolve(&mut store, &list).unwrap(),
                Outcome::Found(vec![
                    Destination::Mailbox(d("c@x.org")),
                    Destination::Mailbox(d("a@x.org")),
                    Destination::External(d("ext@y.net")),
                    Destination::Mailbox(d("b@x.org")),
                ]),
                "unjoined: {unjoined}"
            );
        }
    }

    /// An "everyone" list of thousands of targets of every kind (mailboxes,
    /// aliases to them, tagged targets, external addresses, repeats)
    /// resolves to each destination once, in the order first reached.
    #[test]
    fn a_list_of_thousands_of_targets() {
        let n = 3000;
        let mut s = MemStore::default();
        let mut want = Vec::new();
        for i in 0..n {
            let m = format!("m{i}@x.org");
            s = s.with(&format!("m{i}"), "x.org", &m, Some(testdata::HASH));
            let (target, dest) = match i % 4 {
                0 => (m.clone(), Destination::Mailbox(d(&m))),
                1 => {
                    s = s.with(&format!("a{i}"), "x.org", &m, None);
                    (format!("a{i}@x.org"), Destination::Mailbox(d(&m)))
                }
                2 => (format!("m{i}+news@x.org"), Destination::Mailbox(d(&m))),
                _ => (
                    format!("e{i}@y.net"),
                    Destination::External(d(&format!("e{i}@y.net"))),
                ),
            };
            s = s.with("all", "x.org", &target, None);
            want.push(dest);
        }
        // The first hundred again: nothing new.
        for i in 0..100 {
            s = s.with("all", "x.org", &format!("m{}@x.org", i * 4), None);
        }
        let all = d("all@x.org");
        for unjoined in [false, true] {
            let mut store = s.clone();
            store.unjoined = unjoined;
            assert_eq!(
                Resolver::default().resolve(&mut store, &all).unwrap(),
                Outcome::Found(want.clone()),
                "unjoined: {unjoined}"
            );
        }

        fn d(a: &str) -> Address {
            Address::parse(a).unwrap()
        }
    }

    /// The rows fetched ahead are found by key whatever order they came
    /// in; of a key listed twice the first is kept; a key fetched with no
    /// rows is known to have none, a key not fetched is not known.
    #[test]
    fn prefetched_rows_by_key() {
        let row = |t: &str| Row {
            username: "u".into(),
            domain: "x.org".into(),
            mailbox: t.into(),
            password: None,
            active: true,
            quota: None,
        };
        let key = |u: &str, d: &str| (u.to_string(), d.to_string());
        let p = Prefetched::new(vec![
            (key("b", "x.org"), vec![row("first@x.org")]),
            (key("a", "y.org"), vec![]),
            (key("a", "x.org"), vec![row("a@x.org")]),
            (key("b", "x.org"), vec![row("second@x.org")]),
        ]);
        assert_eq!(p.get("b", "x.org"), Some(&vec![row("first@x.org")]));
        assert_eq!(p.get("a", "x.org"), Some(&vec![row("a@x.org")]));
        assert_eq!(p.get("a", "y.org"), Some(&vec![]));
        assert_eq!(p.get("c", "x.org"), None);
        assert_eq!(p.get("a", "z.org"), None);
        assert_eq!(p.0.len(), 3);
    }

    /// The resolution table again, on a store without the join: the join
    /// saves queries and changes no answer.
    #[test]
    fn resolution_table_without_the_join() {
        let mut s = MemStore::new(testdata::resolution::rows());
        s.unjoined = true;
        check::assert_resolution_table(&mut s);
    }

    /// The resolution table (`crate::testdata`), here on the in-memory
    /// store; the contract suite runs the same table on SQLite and
    /// PostgreSQL.
    #[test]
    fn resolution_table() {
        let mut s = MemStore::new(testdata::resolution::rows());
        check::assert_resolution_table(&mut s);
    }

    #[test]
    fn depth_limit() {
        let mut s = MemStore::default().with("a0", "x.org", "final@y.org", None);
        for i in 1..30 {
            s = s.with(
                &format!("a{i}"),
                "x.org",
                &format!("a{}@x.org", i - 1),
                None,
            );
        }
        let r = Resolver::default();
        assert!(matches!(
            r.resolve(&mut s, &Address::parse("a29@x.org").unwrap()),
            Err(ResolveError::TooDeep { .. })
        ));
        assert_eq!(
            r.resolve(&mut s, &Address::parse("a5@x.org").unwrap())
                .unwrap(),
            Outcome::Found(vec![ext("final@y.org")])
        );
    }

    /// Aliases that fan out into each other level after level: each of
    /// `width` aliases of a level points at all of the next level's, the
    /// last level at one mailbox, another level at each. The lookup costs
    /// calls in proportion to the rows (each alias expanded once), not
    /// `width^levels` (each expanded once per way to it), and the answer
    /// is the same as for a chain: the mailboxes, each once, in row order.
    #[test]
    fn aliases_reached_many_ways_are_expanded_once() {
        use crate::store::failing::FailingStore;
        let (width, levels) = (4, 7);
        let mut s = MemStore::default()
            .with("hugo", "barrera.io", "hugo@barrera.io", Some("$2b$04$x"))
            .with("ann", "barrera.io", "ann@barrera.io", Some("$2b$04$x"));
        for w in 0..width {
            s = s.with("top", "dag.org", &format!("l0x{w}@dag.org"), None);
        }
        for level in 0..levels {
            for w in 0..width {
                let name = format!("l{level}x{w}");
                if level + 1 == levels {
                    s = s.with(&name, "dag.org", "hugo@barrera.io", None);
                    continue;
                }
                for next in 0..width {
                    s = s.with(
                        &name,
                        "dag.org",
                        &format!("l{}x{next}@dag.org", level + 1),
                        None,
                    );
                }
                if level == 2 && w == width - 1 {
                    s = s.with(&name, "dag.org", "ann@barrera.io", None);
                }
            }
        }
        let rows = s.rows.len();
        let mut counting = FailingStore::counting(s);
        let r = Resolver::default();
        let top = Address::parse("top@dag.org").unwrap();
        assert_eq!(
            r.resolve(&mut counting, &top).unwrap(),
            Outcome::Found(vec![
                Destination::Mailbox(Address::parse("hugo@barrera.io").unwrap()),
                Destination::Mailbox(Address::parse("ann@barrera.io").unwrap()),
            ])
        );
        let calls = counting.calls();
        assert!(calls <= 4 * rows, "{calls} store calls for {rows} rows");
        assert_eq!(
            r.smtpd_answer(&mut counting, "top@dag.org").unwrap(),
            Some(KeyAnswer::Items(vec![
                "hugo_barrera.io".to_string(),
                "ann_barrera.io".to_string()
            ]))
        );
    }

    /// Fails each store call of a lookup in turn (`store::failing`): the
    /// answer must be the store error, never a definitive answer.
    fn assert_each_failure_is_an_error<T: std::fmt::Debug>(
        what: &str,
        lookup: impl FnMut(&mut dyn Store) -> Result<T, ResolveError>,
        bad: &mut Vec<String>,
    ) -> usize {
        let s = MemStore::new(testdata::resolution::rows());
        let (_, failures) = each_failure(&s, lookup);
        for (n, answer) in &failures {
            if !matches!(answer, Err(ResolveError::Store(_))) {
                bad.push(format!("{what}, call {n} failing: {answer:?}"));
            }
        }
        failures.len()
    }

    /// The walk `mailtable resolve` shows is smtpd's, a local part that
    /// starts with the delimiter included (seen with smtpd 6.8's `-T
    /// lookup`).
    #[test]
    fn smtpd_keys_are_smtpds_order() {
        let r = Resolver::default();
        let keys = |a: &str| r.smtpd_keys(&Address::parse(a).unwrap());
        assert_eq!(
            keys("hugo+news@barrera.io"),
            [
                "hugo+news@barrera.io",
                "hugo@barrera.io",
                "hugo+news",
                "hugo",
                "@barrera.io",
                "@"
            ]
        );
        assert_eq!(
            keys("hugo@barrera.io"),
            ["hugo@barrera.io", "hugo", "@barrera.io", "@"]
        );
        assert_eq!(
            keys("+x@example.org"),
            [
                "+x@example.org",
                "@example.org",
                "+x",
                "",
                "@example.org",
                "@"
            ]
        );
    }

    /// Every address of the resolution table through `resolve` and every
    /// key of its smtpd walk, every extra key, and the senders of every
    /// user and every mailbox of the table.
    #[test]
    fn a_failing_store_call_is_never_a_definitive_answer() {
        let r = Resolver::default();
        let mut bad = Vec::new();
        let mut runs = 0;
        for &(address, _) in testdata::resolution::CASES {
            let addr = Address::parse_key(address).unwrap();
            runs += assert_each_failure_is_an_error(
                &format!("resolve {address}"),
                |s| r.resolve(s, &addr),
                &mut bad,
            );
            for key in r.smtpd_keys(&addr) {
                runs += assert_each_failure_is_an_error(
                    &format!("alias_for_key {key:?}"),
                    |s| r.alias_for_key(s, &key),
                    &mut bad,
                );
            }
        }
        for &(key, _) in testdata::resolution::KEYS {
            runs += assert_each_failure_is_an_error(
                &format!("alias_for_key {key:?}"),
                |s| r.alias_for_key(s, key),
                &mut bad,
            );
        }
        let users = testdata::resolution::SENDERS
            .iter()
            .map(|&(u, _)| u.to_string());
        let mailboxes = testdata::resolution::rows()
            .into_iter()
            .filter(Row::is_mailbox)
            .map(|row| row.address());
        for user in users.chain(mailboxes) {
            let addr = Address::parse(&user).unwrap();
            runs += assert_each_failure_is_an_error(
                &format!("senders {user}"),
                |s| r.senders(s, &addr),
                &mut bad,
            );
        }
        assert!(
            bad.is_empty(),
            "{} of {runs} runs:\n  {}",
            bad.len(),
            bad.join("\n  ")
        );
        assert!(runs > 500, "only {runs} failing runs");
    }

    /// A mailbox `a@x.org`, an alias to it, and one that also points at
    /// nothing (dangling: it fails to resolve).
    fn with_broken_alias() -> MemStore {
        MemStore::default()
            .with("a", "x.org", "a@x.org", Some(testdata::HASH))
            .with("good", "x.org", "a@x.org", None)
            .with("broken", "x.org", "a@x.org", None)
            .with("broken", "x.org", "nobody@x.org", None)
    }

    /// A resolver whose senders walk meets `limit` addresses at most.
    fn senders_limited(limit: usize) -> Resolver {
        Resolver {
            senders_limit: limit,
            ..Resolver::default()
        }
    }

    /// A broken alias (dangling here) does not reach the user, and does
    /// not cost the user the rest of the list; a database error would.
    #[test]
    fn senders_skip_a_broken_alias() {
        let mut s = with_broken_alias();
        let r = Resolver::default();
        let a = Address::parse("a@x.org").unwrap();
        assert_eq!(
            r.senders(&mut s, &a).unwrap(),
            Some(vec!["a@x.org".to_string(), "good@x.org".to_string()])
        );
    }

    /// A domain alias onto a domain whose catch-all reaches the user: every
    /// address of the aliased domain reaches it too (`@old`), through a
    /// chain of domain aliases as well; one onto another domain does not.
    #[test]
    fn senders_follow_domain_aliases_onto_a_catch_all() {
        let mut s = MemStore::default()
            .with("bob", "new.org", "bob@new.org", Some(testdata::HASH))
            .with("%", "new.org", "bob@new.org", None)
            .with("%", "old.org", "%@new.org", None)
            .with("%", "older.org", "%@old.org", None)
            .with("%", "other.org", "%@elsewhere.org", None);
        let r = Resolver::default();
        let bob = Address::parse("bob@new.org").unwrap();
        let got = r.senders(&mut s, &bob).unwrap().unwrap();
        for want in [
            "bob@new.org",
            "@new.org",
            "bob@old.org",
            "@old.org",
            "@older.org",
        ] {
            assert!(got.iter().any(|g| g == want), "{want} in {got:?}");
        }
        assert!(!got.iter().any(|g| g == "@other.org"), "{got:?}");
    }

    /// The senders walk meets the user and each address that reaches it;
    /// one more than its limit is an error, never a cut list (a 5xx for a
    /// legitimate sender).
    #[test]
    fn senders_walk_limit_is_an_error_at_the_boundary() {
        let mut s = MemStore::default().with("a", "x.org", "a@x.org", Some(testdata::HASH));
        for i in 0..4 {
            s = s.with(&format!("alias{i}"), "x.org", "a@x.org", None);
        }
        let a = Address::parse("a@x.org").unwrap();
        // Five addresses to visit: the user and its four aliases.
        let all = senders_limited(5).senders(&mut s, &a).unwrap().unwrap();
        assert_eq!(all.len(), 5, "{all:?}");
        assert!(matches!(
            senders_limited(4).senders(&mut s, &a),
            Err(ResolveError::TooDeep { limit: 4, .. })
        ));
    }

    /// The limit counts addresses as they are met, before each is looked
    /// up: a mailbox 200 aliases point at costs about the limit in store
    /// calls, then the error, not a look-up per alias.
    #[test]
    fn senders_walk_stops_at_its_limit_not_after_every_alias() {
        use crate::store::failing::FailingStore;
        let mut s = MemStore::default().with("a", "x.org", "a@x.org", Some(testdata::HASH));
        for i in 0..200 {
            s = s.with(&format!("alias{i}"), "x.org", "a@x.org", None);
        }
        let r = senders_limited(10);
        let mut counting = FailingStore::counting(s);
        let a = Address::parse("a@x.org").unwrap();
        assert!(matches!(
            r.senders(&mut counting, &a),
            Err(ResolveError::TooDeep { limit: 10, .. })
        ));
        assert!(counting.calls() <= 30, "{} store calls", counting.calls());
    }

    /// Addresses the walk meets and does not follow (an alias shadowed by
    /// a broken one of the same key) count toward the limit too: each cost
    /// a look-up.
    #[test]
    fn senders_walk_limit_counts_addresses_it_does_not_follow() {
        let mut s = with_broken_alias();
        let a = Address::parse("a@x.org").unwrap();
        assert_eq!(
            senders_limited(3).senders(&mut s, &a).unwrap(),
            Some(vec!["a@x.org".to_string(), "good@x.org".to_string()])
        );
        assert!(matches!(
            senders_limited(2).senders(&mut s, &a),
            Err(ResolveError::TooDeep { limit: 2, .. })
        ));
    }

    /// Two ways to one mailbox (directly and through another alias): the
    /// mailbox once.
    #[test]
    fn two_ways_to_one_mailbox_give_it_once() {
        let mut s = MemStore::default()
            .with("pair", "x.org", "a@x.org", None)
            .with("pair", "x.org", "b@x.org", None)
            .with("b", "x.org", "a@x.org", None)
            .with("a", "x.org", "a@x.org", Some(testdata::HASH));
        let pair = Address::parse("pair@x.org").unwrap();
        assert_eq!(
            Resolver::default().resolve(&mut s, &pair).unwrap(),
            Outcome::Found(vec![Destination::Mailbox(
                Address::parse("a@x.org").unwrap()
            )])
        );
    }

    /// `mailtable resolve` prints the step numbers of DESIGN.md.
    #[test]
    fn step_numbers_are_the_design_steps() {
        let steps = [
            Step::TaggedExact,
            Step::Exact,
            Step::Pattern,
            Step::CatchAll,
        ];
        assert_eq!(steps.map(Step::number), [1, 2, 3, 4]);
    }

    /// A target that the address's own local part cannot form (too long,
    /// empty, starting with `/`) makes the address unknown, a permanent
    /// reject, not an error that defers the sender's mail for days; the
    /// other targets still get theirs. A capture that fixed rows made is
    /// the rows' fault, and stays an error.
    #[test]
    fn a_target_the_address_cannot_form_makes_it_unknown() {
        let mut s = MemStore::default()
            .with("hugo", "d.org", "hugo@d.org", Some(testdata::HASH))
            .with("%", "pre.org", "longprefix-%@ext.test", None)
            .with("%", "fwd.org", "%@ext.test", None)
            .with("sales-%", "d.org", "%@d.org", None)
            .with("%", "mix.org", "hugo@d.org", None)
            .with("%", "mix.org", "longprefix-%@ext.test", None)
            .with(
                "team",
                "a.org",
                &format!("{}@pre.org", "t".repeat(60)),
                None,
            );
        let r = Resolver::default();
        let resolve = |s: &mut MemStore, a: &str| r.resolve(s, &Address::parse(a).unwrap());
        let long = format!("{}@pre.org", "a".repeat(60));
        assert_eq!(resolve(&mut s, &long).unwrap(), Outcome::NotFound);
        assert_eq!(
            resolve(&mut s, "short@pre.org").unwrap(),
            Outcome::Found(vec![Destination::External(
                Address::parse("longprefix-short@ext.test").unwrap()
            )])
        );
        assert_eq!(
            resolve(&mut s, "/tmp/x@fwd.org").unwrap(),
            Outcome::NotFound
        );
        assert_eq!(resolve(&mut s, "sales-@d.org").unwrap(), Outcome::NotFound);
        assert_eq!(
            resolve(&mut s, &format!("{}@mix.org", "a".repeat(60))).unwrap(),
            Outcome::Found(vec![Destination::Mailbox(
                Address::parse("hugo@d.org").unwrap()
            )])
        );
        let err = resolve(&mut s, "team@a.org").unwrap_err();
        assert!(
            matches!(&err, ResolveError::BadRow { row, .. } if row == "%@pre.org -> longprefix-%@ext.test"),
            "{err:?}"
        );
        // smtpd's walk: the key is not found, so smtpd ends in a reject.
        assert!(r.smtpd_answer(&mut s, &long).unwrap().is_none());
        assert!(r.smtpd_answer(&mut s, "/tmp/x@fwd.org").unwrap().is_none());
    }

    /// A row whose target is no address is an error naming the row.
    #[test]
    fn bad_row_names_the_row() {
        let mut s = MemStore::default().with("a", "x.org", "not an address", None);
        let r = Resolver::default();
        let err = r
            .resolve(&mut s, &Address::parse("a@x.org").unwrap())
            .unwrap_err();
        assert!(
            matches!(&err, ResolveError::BadRow { row, .. } if row == "a@x.org -> not an address"),
            "{err:?}"
        );
    }

    /// The exact boundary of the depth limit: `max_depth` expansions
    /// (every alias after the address, and the final target) resolve, one
    /// more is too deep.
    #[test]
    fn depth_limit_boundary() {
        let r = Resolver::default();
        let mut s = MemStore::default().with("a0", "x.org", "final@y.org", None);
        for i in 1..=r.max_depth + 1 {
            s = s.with(
                &format!("a{i}"),
                "x.org",
                &format!("a{}@x.org", i - 1),
                None,
            );
        }
        let at = |i: usize| Address::parse(&format!("a{i}@x.org")).unwrap();
        assert_eq!(
            r.resolve(&mut s, &at(r.max_depth - 1)).unwrap(),
            Outcome::Found(vec![ext("final@y.org")])
        );
        assert!(matches!(
            r.resolve(&mut s, &at(r.max_depth)),
            Err(ResolveError::TooDeep { .. })
        ));
    }

    /// A mailbox whose own name carries the delimiter is found at step 1
    /// and delivers to itself.
    #[test]
    fn tagged_mailbox_delivers_to_itself() {
        let mut s = MemStore::default().with("a+b", "x.org", "a+b@x.org", Some(testdata::HASH));
        let a = Address::parse("a+b@x.org").unwrap();
        assert_eq!(
            Resolver::default().resolve(&mut s, &a).unwrap(),
            Outcome::Found(vec![Destination::Mailbox(a)])
        );
    }

    /// Two stored usernames that differ only in case (`Sales-%` next to
    /// `sales-%`, a hand-edited row) are one pattern with two groups of
    /// rows: the smaller raw username wins in either row order, so every
    /// backend delivers the same way.
    #[test]
    fn patterns_differing_in_case_pick_the_smaller_username_in_any_row_order() {
        let upper = ("Sales-%", "upper@y.org");
        let lower = ("sales-%", "lower@y.org");
        let r = Resolver::default();
        let a = Address::parse("sales-eu@x.org").unwrap();
        for rows in [[upper, lower], [lower, upper]] {
            let mut s = MemStore::default();
            for (username, target) in rows {
                s = s.with(username, "x.org", target, None);
            }
            assert_eq!(
                r.resolve(&mut s, &a).unwrap(),
                Outcome::Found(vec![ext("upper@y.org")]),
                "rows {rows:?}"
            );
        }
    }

    /// `reaching` finds every row that leads to an address, through
    /// chains and `%` targets, but not rows that precedence shadows.
    #[test]
    fn reaching_follows_chains_and_respects_precedence() {
        let mut s = MemStore::default()
            .with("hugo", "ex.org", "hugo@ex.org", Some("$2b$"))
            .with("ann", "ex.org", "ann@ex.org", Some("$2b$"))
            .with("info", "ex.org", "hugo@ex.org", None)
            .with("info", "ex.org", "ann@ex.org", None)
            .with("team", "ex.org", "info@ex.org", None)
            .with("sales-%", "ex.org", "hugo@ex.org", None)
            .with("%", "ex.org", "hugo@ex.org", None)
            .with("%", "old.org", "%@ex.org", None)
            // Shadowed: ann's mailbox wins over this pattern's source.
            .with("a%", "ex.org", "hugo@ex.org", None)
            .with("x", "other.org", "someone@ext.net", None);
        let r = Resolver::default();
        let hugo = Address::parse("hugo@ex.org").unwrap();
        let mut got: Vec<String> = r
            .reaching(&mut s, &hugo)
            .unwrap()
            .iter()
            .map(|x| format!("{} -> {}", x.row.address(), x.row.mailbox))
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                "%@ex.org -> hugo@ex.org",
                "%@old.org -> %@ex.org",
                "a%@ex.org -> hugo@ex.org",
                "info@ex.org -> hugo@ex.org",
                "sales-%@ex.org -> hugo@ex.org",
                "team@ex.org -> info@ex.org",
            ]
        );
        let ext = Address::parse("someone@ext.net").unwrap();
        let got = r.reaching(&mut s, &ext).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].source.as_ref().map(ToString::to_string).as_deref(),
            Some("x@other.org")
        );
        // A source that an exact row shadows is not a way in: mail to
        // hugo@old.org goes to ann, not through the domain alias to hugo.
        let mut s = MemStore::default()
            .with("hugo", "ex.org", "hugo@ex.org", Some("$2b$"))
            .with("ann", "ex.org", "ann@ex.org", Some("$2b$"))
            .with("%", "old.org", "%@ex.org", None)
            .with("hugo", "old.org", "ann@ex.org", None);
        assert_eq!(r.reaching(&mut s, &hugo).unwrap(), vec![]);
        let ann = Address::parse("ann@ex.org").unwrap();
        let mut got: Vec<String> = r
            .reaching(&mut s, &ann)
            .unwrap()
            .iter()
            .map(|x| x.row.address())
            .collect();
        got.sort();
        assert_eq!(got, ["%@old.org", "hugo@old.org"]);
    }

    /// A mailbox row (it has a password) whose target is another mailbox
    /// is a way in like any alias: its owner may send as itself to the
    /// target's account, and `reaching` lists it. Only a mailbox row
    /// delivering to itself is the target rather than a way to it.
    #[test]
    fn a_mailbox_forwarding_to_another_is_a_way_in() {
        let mut s = MemStore::default()
            .with("hugo", "ex.org", "hugo@ex.org", Some(testdata::HASH))
            .with("ann", "ex.org", "hugo@ex.org", Some(testdata::HASH));
        let r = Resolver::default();
        let hugo = Address::parse("hugo@ex.org").unwrap();
        assert_eq!(
            r.senders(&mut s, &hugo).unwrap(),
            Some(vec!["hugo@ex.org".to_string(), "ann@ex.org".to_string()])
        );
        let reach = r.reaching(&mut s, &hugo).unwrap();
        assert_eq!(reach.len(), 1, "{reach:?}");
        assert_eq!(reach[0].row.address(), "ann@ex.org");
        assert_eq!(reach[0].source, Some(Address::parse("ann@ex.org").unwrap()));
    }

    /// What `mailtable resolve` prints for each destination.
    #[test]
    fn destinations_print_their_kind_and_delivery_user() {
        let mailbox = Destination::Mailbox(Address::parse("hugo@barrera.io").unwrap());
        assert_eq!(
            mailbox.to_string(),
            "hugo@barrera.io (mailbox, delivery user hugo_barrera.io)"
        );
        assert_eq!(ext("x@y.org").to_string(), "x@y.org (external)");
    }

    #[test]
    fn database_errors_stay_errors() {
        let mut s = MemStore::new(testdata::resolution::rows());
        s.broken = true;
        let r = Resolver::default();
        let a = Address::parse("hugo@barrera.io").unwrap();
        assert!(matches!(r.resolve(&mut s, &a), Err(ResolveError::Store(_))));
        assert!(r.alias_for_key(&mut s, "hugo@barrera.io").is_err());
        assert!(r.senders(&mut s, &a).is_err());
    }
}
