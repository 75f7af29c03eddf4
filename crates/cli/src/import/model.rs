//! From parsed sources to rows, and the sources' own semantics.
//!
//! [`plan`] turns logins and routes into mailtable rows:
//!
//! - a login `a@d` with a hash is a mailbox row;
//! - a route `a@d -> t1, t2` is one alias row per target, except a target
//!   that is the key's own mailbox (its login, smtpd's `a@d vmail`, SQL's
//!   `a@d -> a@d`), which the mailbox row already covers;
//! - `@d -> t` is the catch-all `%@d`, `@old -> @new` the domain alias
//!   `%@old -> %@new`;
//! - a local user name `m` as a target (smtpd's `mayeu@d m`) becomes the
//!   address of the one mailbox whose login delivers to `m` (`m@d m` with a
//!   password for `m@d`); a user name shared by several mailboxes
//!   (`vmail`), or by none, is reported, not guessed.
//!
//! Every address the source knew then gets the destinations the SOURCE
//! gives it, computed here by walking the source's own lookup order: exact
//! key, then the login itself where the source delivers to logins, then
//! smtpd's bare user key, then `@domain`, then `@` (`aliases_virtual_get`
//! in OpenSMTPD `usr.sbin/smtpd/aliases.c`). Postfix-style SQL setups look
//! up every alias, `@domain` included, before the mailboxes (virtual(5)),
//! so there the login comes after the catch-all. [`verify`] compares that with
//! `Resolver::resolve` on the database. An entry whose expansion runs into
//! something not imported is itself not imported (iterated to a fixed
//! point), so that no imported row points at nothing.
//!
//! A mailtable database ([`plan_rows`]) needs none of this: its rows come
//! over as they are, and its semantics are the resolver's own, run on the
//! source rows in memory.

use super::{Finding, Login, LoginName, Origin, Parsed, Route, RouteKey, Target};
use crate::error::CliError;
use mailtable_core::store::memory::MemStore;
use mailtable_core::{
    Address, AddressPattern, Config, Domain, Outcome, PasswordHash, ResolveError, Resolver, Row,
    Store, StoreError,
};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// smtpd's own `EXPAND_DEPTH`, and mailtable's default depth limit.
const MAX_DEPTH: usize = 10;

/// Local part used to probe catch-alls and patterns.
const PROBE: &str = "mailtable-import-probe";

/// What a group of rows is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Has a mailbox row.
    Mailbox,
    /// Alias rows of one address.
    Alias,
    /// `%@domain`.
    CatchAll,
    /// `%@old -> %@new`.
    DomainAlias,
    /// `sales-%@domain`.
    Pattern,
}

/// The rows of one `username@domain`.
#[derive(Debug, Clone)]
pub struct Group {
    /// Username column (local part or pattern).
    pub username: String,
    /// Domain column.
    pub domain: String,
    /// The rows, mailbox first.
    pub rows: Vec<Row>,
    /// The source entry they come from.
    pub origin: Origin,
    /// What they are.
    pub kind: Kind,
}

impl Group {
    /// `username@domain`.
    pub fn key(&self) -> String {
        format!("{}@{}", self.username, self.domain)
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

/// A login that becomes a mailbox.
#[derive(Debug, Clone)]
pub struct PlannedLogin {
    /// The address.
    pub address: Address,
    /// Its hash, verbatim.
    pub hash: PasswordHash,
    /// Where.
    pub origin: Origin,
}

/// What an import will write, and what it will not.
#[derive(Debug, Default)]
pub struct Plan {
    /// Rows per key.
    pub groups: Vec<Group>,
    /// Mailboxes (for the password report).
    pub logins: Vec<PlannedLogin>,
    /// Addresses whose resolution is checked.
    pub known: Vec<Address>,
    /// Entries not imported, with why.
    pub skipped: Vec<Finding>,
    /// Notes.
    pub notes: Vec<Finding>,
    /// Disagreements inside the sources.
    pub conflicts: Vec<Conflict>,
}

/// Where the source delivers an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// To these addresses.
    Found(BTreeSet<Address>),
    /// The domain is the source's, the address unknown.
    NotFound,
    /// The domain is not the source's.
    UnknownDomain,
    /// Through an entry that is not imported: not comparable.
    Blocked(String),
    /// mailtable's resolver failed (loop, dangling target).
    Error(String),
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Found(s) => {
                let v: Vec<String> = s.iter().map(ToString::to_string).collect();
                f.write_str(&v.join(", "))
            }
            Expect::NotFound => f.write_str("not found"),
            Expect::UnknownDomain => f.write_str("unknown domain"),
            Expect::Blocked(w) => write!(f, "not comparable: {w}"),
            Expect::Error(e) => write!(f, "error: {e}"),
        }
    }
}

/// The source's semantics.
pub trait Semantics {
    /// Where the source delivers `addr`.
    fn expected(&mut self, addr: &Address) -> Result<Expect, StoreError>;
}

/// A target after local user names are mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Resolved {
    /// The key's own mailbox.
    SelfBox,
    /// An address, looked up again.
    Addr(Address),
    /// A mailbox reached through a local user name: delivered, not looked
    /// up again (smtpd delivers a user node to its userbase).
    Final(Address),
    /// `%@new`.
    DomainAlias(Domain),
}

#[derive(Debug, Clone)]
enum Status {
    Ok(Vec<Resolved>),
    Skipped(String),
}

#[derive(Debug, Clone)]
struct RouteE {
    route: Route,
    status: Status,
}

#[derive(Debug, Clone)]
enum LocalMap {
    Mailbox(Address),
    Shared(Vec<Address>),
    Unknown,
}

/// The sources, combined: logins, routes and their statuses.
#[derive(Debug, Default)]
struct Model {
    logins: BTreeMap<Address, Login>,
    /// Logins the source delivers to without a route.
    deliverable: BTreeSet<Address>,
    /// Postfix order: aliases and catch-alls before the mailboxes.
    aliases_first: bool,
    routes: BTreeMap<RouteKey, RouteE>,
    domains: BTreeSet<Domain>,
}

fn same_login(a: &Login, b: &Login) -> Option<&'static str> {
    if a.hash != b.hash {
        Some("a different password")
    } else if a.active != b.active {
        Some("a different active state")
    } else if a.quota != b.quota {
        Some("a different quota")
    } else {
        None
    }
}

fn add_login(
    logins: &mut BTreeMap<Address, Login>,
    addr: Address,
    login: Login,
    notes: &mut Vec<Finding>,
    conflicts: &mut Vec<Conflict>,
) {
    match logins.get(&addr) {
        None => {
            logins.insert(addr, login);
        }
        Some(first) => match same_login(first, &login) {
            None => notes.push(Finding::about(
                login.origin.clone(),
                &addr.to_string(),
                format!("repeats {} (same login)", first.origin),
            )),
            Some(what) => conflicts.push(Conflict {
                at: login.origin.clone(),
                subject: addr.to_string(),
                why: format!("given again with {what} (first at {})", first.origin),
            }),
        },
    }
}

/// A bare key that is a domain line (`example.org true`): a valid name
/// with a dot.
fn domain_line(key: &str) -> Option<Domain> {
    key.contains('.').then(|| Domain::parse(key).ok()).flatten()
}

/// Plan an import of text or SQL sources into `db`.
pub fn plan(
    parsed: Parsed,
    db: &mut dyn Store,
    config: &Config,
) -> Result<(Plan, Box<dyn Semantics>), CliError> {
    let mut skipped = parsed.skipped;
    let mut notes = parsed.notes;
    let mut conflicts = Vec::new();

    // Routes, one per key.
    let mut routes: BTreeMap<RouteKey, Route> = BTreeMap::new();
    for r in parsed.routes {
        match routes.get(&r.key) {
            None => {
                routes.insert(r.key.clone(), r);
            }
            Some(first) if first.targets == r.targets => notes.push(Finding::about(
                r.origin.clone(),
                &r.key.to_string(),
                format!("repeats {} (same targets)", first.origin),
            )),
            Some(first) => conflicts.push(Conflict {
                at: r.origin.clone(),
                subject: r.key.to_string(),
                why: format!(
                    "given again with other targets (first at {}); smtpd would keep only the last",
                    first.origin
                ),
            }),
        }
    }

    // Logins by address; bare names are mapped through the routes.
    let mut logins: BTreeMap<Address, Login> = BTreeMap::new();
    let mut bare_logins = Vec::new();
    for l in parsed.logins {
        match l.name.clone() {
            LoginName::Address(a) => add_login(&mut logins, a, l, &mut notes, &mut conflicts),
            LoginName::Bare(u) => bare_logins.push((u, l)),
        }
    }
    let mut bare_map: BTreeMap<String, Address> = BTreeMap::new();
    for (u, mut l) in bare_logins {
        let candidates: Vec<Address> = routes
            .values()
            .filter_map(|r| match &r.key {
                RouteKey::Exact(k)
                    if k.local() == u && r.targets.contains(&Target::LocalUser(u.clone())) =>
                {
                    Some(k.clone())
                }
                _ => None,
            })
            .collect();
        match candidates.as_slice() {
            [k] => {
                notes.push(Finding::about(
                    l.origin.clone(),
                    &u,
                    format!(
                        "login {u} becomes {k}, the one address delivered to local user {u}: \
                         mail clients must log in as {k}"
                    ),
                ));
                bare_map.insert(u, k.clone());
                l.name = LoginName::Address(k.clone());
                add_login(&mut logins, k.clone(), l, &mut notes, &mut conflicts);
            }
            [] => skipped.push(Finding::about(
                l.origin,
                &u,
                format!(
                    "login without a domain: mailtable logins are addresses, and no alias in the \
                     sources maps {u}@DOMAIN to local user {u}"
                ),
            )),
            many => {
                let list: Vec<String> = many.iter().map(ToString::to_string).collect();
                skipped.push(Finding::about(
                    l.origin,
                    &u,
                    format!(
                        "login without a domain, and several addresses deliver to local user {u} \
                         ({}): which one it is cannot be told",
                        list.join(", ")
                    ),
                ));
            }
        }
    }

    let any_routes = parsed.defines_routes;
    let deliverable: BTreeSet<Address> = logins
        .iter()
        .filter(|(_, l)| l.implied_route || !any_routes)
        .map(|(a, _)| a.clone())
        .collect();

    // Mailboxes already in the database count as logins.
    let mut db_mailboxes = BTreeSet::new();
    for key in routes.keys() {
        if let RouteKey::Exact(k) = key {
            if !logins.contains_key(k)
                && db
                    .exact(k.local(), k.domain().as_str())?
                    .iter()
                    .any(Row::is_mailbox)
            {
                db_mailboxes.insert(k.clone());
            }
        }
    }
    let has_login = |k: &Address| logins.contains_key(k) || db_mailboxes.contains(k);

    // Local user names -> mailbox addresses.
    let mut local_map: BTreeMap<String, LocalMap> = BTreeMap::new();
    for r in routes.values() {
        for t in &r.targets {
            let Target::LocalUser(u) = t else { continue };
            if local_map.contains_key(u) {
                continue;
            }
            let m = if let Some(a) = bare_map.get(u) {
                LocalMap::Mailbox(a.clone())
            } else {
                let s: Vec<Address> = routes
                    .values()
                    .filter_map(|r| match &r.key {
                        RouteKey::Exact(k) if r.targets.contains(t) && has_login(k) => {
                            Some(k.clone())
                        }
                        _ => None,
                    })
                    .collect();
                match s.len() {
                    0 => LocalMap::Unknown,
                    1 => LocalMap::Mailbox(s[0].clone()),
                    _ => LocalMap::Shared(s),
                }
            };
            local_map.insert(u.clone(), m);
        }
    }

    // The source's domains; domain lines of a domain with addresses are
    // markers, not routes.
    let mut domains: BTreeSet<Domain> = logins.keys().map(|a| a.domain().clone()).collect();
    for k in routes.keys() {
        match k {
            RouteKey::Exact(a) => {
                domains.insert(a.domain().clone());
            }
            RouteKey::CatchAll(d) => {
                domains.insert(d.clone());
            }
            _ => {}
        }
    }
    let mut markers: Vec<(Domain, Origin)> = Vec::new();
    for (d, active, at) in &parsed.domains {
        domains.insert(d.clone());
        markers.push((d.clone(), at.clone()));
        if !active {
            notes.push(Finding::about(
                at.clone(),
                d.as_str(),
                "inactive domain: its mailboxes come over disabled, its aliases are not imported",
            ));
        }
    }
    let bare_domains: Vec<(RouteKey, Domain)> = routes
        .keys()
        .filter_map(|k| match k {
            RouteKey::Bare(b) => domain_line(b).map(|d| (k.clone(), d)),
            _ => None,
        })
        .collect();
    for (k, d) in bare_domains {
        if domains.contains(&d) || db.has_domain(d.as_str())? {
            if let Some(r) = routes.remove(&k) {
                markers.push((d.clone(), r.origin));
            }
            domains.insert(d);
        }
    }

    if parsed.aliases_first {
        for a in &deliverable {
            if !routes.contains_key(&RouteKey::Exact(a.clone()))
                && routes.contains_key(&RouteKey::CatchAll(a.domain().clone()))
            {
                if let Some(l) = logins.get(a) {
                    notes.push(Finding::about(
                        l.origin.clone(),
                        &a.to_string(),
                        format!(
                            "has no alias of its own, so in the source the catch-all @{} takes \
                             its mail; mailtable would deliver it to the mailbox (if that is \
                             what you want, add the alias {a} -> {a} to the source first)",
                            a.domain()
                        ),
                    ));
                }
            }
        }
    }

    // Statuses.
    let mut model = Model {
        logins,
        deliverable,
        aliases_first: parsed.aliases_first,
        routes: BTreeMap::new(),
        domains,
    };
    let bare_keys: BTreeMap<String, Origin> = routes
        .iter()
        .filter_map(|(k, r)| match k {
            RouteKey::Bare(u) => Some((u.clone(), r.origin.clone())),
            _ => None,
        })
        .collect();
    for (key, route) in routes {
        let status = route_status(
            &route,
            &local_map,
            &bare_keys,
            &model.logins,
            &db_mailboxes,
            &mut conflicts,
        );
        model.routes.insert(key, RouteE { route, status });
    }

    // Fixed point: an entry that delivers through something not imported
    // is not imported either.
    loop {
        let mut newly = Vec::new();
        for (k, r) in &model.routes {
            if !matches!(r.status, Status::Ok(_)) {
                continue;
            }
            let probe = match k {
                RouteKey::Exact(a) => a.clone(),
                RouteKey::CatchAll(d) => probe_address(d, &model.routes),
                _ => continue,
            };
            let mut path = vec![probe.clone()];
            if let Err(why) = model.expand(r, &probe, &mut path) {
                newly.push((k.clone(), why));
            }
        }
        if newly.is_empty() {
            break;
        }
        for (k, why) in newly {
            if let Some(r) = model.routes.get_mut(&k) {
                r.status = Status::Skipped(why);
            }
        }
    }
    for r in model.routes.values() {
        if let Status::Skipped(why) = &r.status {
            skipped.push(Finding::about(
                r.route.origin.clone(),
                &r.route.key.to_string(),
                why.clone(),
            ));
        }
    }

    // Rows.
    let mut groups: BTreeMap<(String, String), Group> = BTreeMap::new();
    let mut planned = Vec::new();
    for (a, l) in &model.logins {
        planned.push(PlannedLogin {
            address: a.clone(),
            hash: l.hash.clone(),
            origin: l.origin.clone(),
        });
        groups.insert(
            (a.domain().to_string(), a.local().to_string()),
            Group {
                username: a.local().to_string(),
                domain: a.domain().to_string(),
                rows: vec![Row {
                    username: a.local().to_string(),
                    domain: a.domain().to_string(),
                    mailbox: a.to_string(),
                    password: Some(l.hash.clone()),
                    active: l.active,
                    quota: l.quota.clone(),
                }],
                origin: l.origin.clone(),
                kind: Kind::Mailbox,
            },
        );
    }
    for (k, r) in &model.routes {
        let Status::Ok(targets) = &r.status else {
            continue;
        };
        let (username, domain) = match k {
            RouteKey::Exact(a) => (a.local().to_string(), a.domain().to_string()),
            RouteKey::CatchAll(d) => ("%".to_string(), d.to_string()),
            _ => continue,
        };
        let mut mailboxes = Vec::new();
        for t in targets {
            match t {
                Resolved::SelfBox => {}
                Resolved::Addr(a) | Resolved::Final(a) => mailboxes.push(a.to_string()),
                Resolved::DomainAlias(d) => mailboxes.push(format!("%@{d}")),
            }
        }
        mailboxes.dedup();
        if mailboxes.is_empty() {
            continue;
        }
        let kind = match k {
            RouteKey::CatchAll(_) if mailboxes.iter().any(|m| m.contains('%')) => Kind::DomainAlias,
            RouteKey::CatchAll(_) => Kind::CatchAll,
            _ => Kind::Alias,
        };
        let g = groups
            .entry((domain.clone(), username.clone()))
            .or_insert_with(|| Group {
                username: username.clone(),
                domain: domain.clone(),
                rows: Vec::new(),
                origin: r.route.origin.clone(),
                kind,
            });
        for m in mailboxes {
            if !g
                .rows
                .iter()
                .any(|row| !row.is_mailbox() && row.mailbox == m)
            {
                g.rows.push(Row {
                    username: username.clone(),
                    domain: domain.clone(),
                    mailbox: m,
                    password: None,
                    active: true,
                    quota: None,
                });
            }
        }
    }

    // Domains that would have no row at all.
    let row_domains: BTreeSet<&str> = groups.values().map(|g| g.domain.as_str()).collect();
    let mut seen = BTreeSet::new();
    for (d, at) in markers {
        if row_domains.contains(d.as_str()) || !seen.insert(d.clone()) {
            continue;
        }
        if !db.has_domain(d.as_str())? {
            skipped.push(Finding::about(
                at,
                d.as_str(),
                "domain with no mailbox or alias to import: mailtable knows a domain only by \
                 its rows (add a user or an alias there)",
            ));
        }
    }

    userinfo_notes(
        &parsed.userinfo,
        &model.logins,
        &local_map,
        config,
        &mut notes,
    );

    // Addresses to check.
    let mut known: BTreeSet<Address> = model.logins.keys().cloned().collect();
    for (k, r) in &model.routes {
        let Status::Ok(targets) = &r.status else {
            continue;
        };
        match k {
            RouteKey::Exact(a) => {
                known.insert(a.clone());
            }
            RouteKey::CatchAll(d)
                if !targets
                    .iter()
                    .any(|t| matches!(t, Resolved::DomainAlias(_))) =>
            {
                known.insert(probe_address(d, &model.routes));
            }
            _ => {}
        }
        for t in targets {
            if let Resolved::Addr(a) | Resolved::Final(a) = t {
                if model.domains.contains(a.domain()) {
                    known.insert(a.clone());
                }
            }
        }
    }

    skipped.sort_by(|a, b| a.at.cmp(&b.at));
    notes.sort_by(|a, b| a.at.cmp(&b.at));
    conflicts.sort_by(|a, b| a.at.cmp(&b.at));
    let plan = Plan {
        groups: groups.into_values().collect(),
        logins: planned,
        known: known.into_iter().collect(),
        skipped,
        notes,
        conflicts,
    };
    Ok((plan, Box::new(model)))
}

/// A local part no exact key of `d` uses.
fn probe_address(d: &Domain, routes: &BTreeMap<RouteKey, RouteE>) -> Address {
    let mut local = PROBE.to_string();
    let mut n = 0;
    loop {
        if let Ok(a) = Address::from_parts(&local, d.as_str()) {
            if !routes.contains_key(&RouteKey::Exact(a.clone())) {
                return a;
            }
        }
        n += 1;
        local = format!("{PROBE}-{n}");
    }
}

fn route_status(
    route: &Route,
    local_map: &BTreeMap<String, LocalMap>,
    bare_keys: &BTreeMap<String, Origin>,
    logins: &BTreeMap<Address, Login>,
    db_mailboxes: &BTreeSet<Address>,
    conflicts: &mut Vec<Conflict>,
) -> Status {
    let own = match &route.key {
        RouteKey::Global => {
            return Status::Skipped(
                "smtpd's global catch-all @ applies to every domain of the table; mailtable \
                 catch-alls are per domain (add %@DOMAIN where needed)"
                    .into(),
            )
        }
        RouteKey::Bare(u) => {
            return Status::Skipped(match domain_line(u) {
                Some(d) => format!(
                    "domain line for {d}, which has no address in the sources or the database: \
                     mailtable knows a domain only by its rows"
                ),
                None => format!(
                    "local alias without a domain: mailtable holds virtual addresses only; keep \
                     it in the local aliases file (in a virtual table smtpd also applies it to \
                     {u}@ every domain: add {u}@DOMAIN aliases where that is wanted)"
                ),
            })
        }
        RouteKey::Exact(a) => Some(a),
        RouteKey::CatchAll(_) => None,
    };
    let mut out: Vec<Resolved> = Vec::new();
    for t in &route.targets {
        let r = match t {
            Target::Unrepresentable { text, why } => {
                return Status::Skipped(format!("target {text}: {why}"))
            }
            Target::Address(a) if Some(a) == own => Resolved::SelfBox,
            Target::Address(a) => Resolved::Addr(a.clone()),
            Target::DomainAlias(d) if own.is_none() => Resolved::DomainAlias(d.clone()),
            Target::DomainAlias(d) => {
                return Status::Skipped(format!(
                    "target @{d}: a whole domain is only a target of a whole domain"
                ))
            }
            Target::LocalUser(u) => {
                if let Some(at) = bare_keys.get(u) {
                    return Status::Skipped(format!(
                        "local user {u} is itself a local alias ({at}), which is not imported"
                    ));
                }
                match local_map.get(u).unwrap_or(&LocalMap::Unknown) {
                    LocalMap::Mailbox(a) if Some(a) == own => Resolved::SelfBox,
                    LocalMap::Mailbox(a) => Resolved::Final(a.clone()),
                    LocalMap::Shared(s) if own.is_some_and(|o| s.contains(o)) => Resolved::SelfBox,
                    LocalMap::Shared(s) => {
                        let list: Vec<String> = s.iter().map(ToString::to_string).collect();
                        return Status::Skipped(format!(
                            "local user {u} receives the mail of several mailboxes ({}): \
                             which one is meant cannot be told",
                            list.join(", ")
                        ));
                    }
                    LocalMap::Unknown => {
                        return Status::Skipped(format!(
                            "local user {u}: no login of the sources or the database delivers \
                             to it, so its mailbox address is unknown (import the credentials \
                             too, or write the address)"
                        ))
                    }
                }
            }
        };
        if !out.contains(&r) {
            out.push(r);
        }
    }
    if let Some(k) = own {
        let in_import = logins.get(k);
        let has_login = in_import.is_some() || db_mailboxes.contains(k);
        let to_self = out.contains(&Resolved::SelfBox);
        if to_self && !has_login {
            return Status::Skipped(format!(
                "delivers to a mailbox of its own, but the sources have no password for {k} \
                 (import its credentials too)"
            ));
        }
        if has_login && !to_self {
            let login_at = match in_import {
                Some(l) => format!("has a login ({})", l.origin),
                None => "has a mailbox in the database".to_string(),
            };
            conflicts.push(Conflict {
                at: route.origin.clone(),
                subject: k.to_string(),
                why: format!(
                    "{login_at} but the source delivers its mail only elsewhere; mailtable keeps \
                     the mail of every mailbox: add {k} to its own targets, or drop the login"
                ),
            });
            return Status::Skipped("conflict (see conflicts)".into());
        }
    }
    Status::Ok(out)
}

fn userinfo_notes(
    info: &[super::UserInfo],
    logins: &BTreeMap<Address, Login>,
    local_map: &BTreeMap<String, LocalMap>,
    config: &Config,
    notes: &mut Vec<Finding>,
) {
    for u in info {
        let addr = if u.user.contains('@') {
            Address::parse(&u.user).ok()
        } else {
            match local_map.get(&u.user) {
                Some(LocalMap::Mailbox(a)) => Some(a.clone()),
                _ => None,
            }
        };
        let Some(addr) = addr.filter(|a| logins.contains_key(a)) else {
            continue;
        };
        if let (Some(uid), Some(gid)) = (u.uid, u.gid) {
            if (uid, gid) != (config.uid, config.gid) {
                notes.push(Finding::about(
                    u.origin.clone(),
                    &addr.to_string(),
                    format!(
                        "uid:gid {uid}:{gid} differs from mailtable's {}:{} (config uid/gid): \
                         chown the mail store, or set uid and gid",
                        config.uid, config.gid
                    ),
                ));
            }
        }
        if let Some(home) = &u.home {
            let ours = config.home_for(&addr);
            if home.trim_end_matches('/') != ours.trim_end_matches('/') {
                notes.push(Finding::about(
                    u.origin.clone(),
                    &addr.to_string(),
                    format!(
                        "home {home} differs from mailtable's {ours} (config home = {:?}): move \
                         the mail, or set home",
                        config.home
                    ),
                ));
            }
        }
    }
}

impl Model {
    fn blocked(r: &RouteE) -> String {
        match &r.status {
            Status::Skipped(why) => format!(
                "{} ({}) is not imported: {why}",
                r.route.key, r.route.origin
            ),
            Status::Ok(_) => format!("{} ({})", r.route.key, r.route.origin),
        }
    }

    /// The source's walk for one address: `Ok(None)` when nothing matches.
    fn lookup(
        &self,
        addr: &Address,
        path: &mut Vec<Address>,
    ) -> Result<Option<BTreeSet<Address>>, String> {
        if let Some(r) = self.routes.get(&RouteKey::Exact(addr.clone())) {
            return self.expand(r, addr, path).map(Some);
        }
        let mailbox = self.deliverable.contains(addr);
        if mailbox && !self.aliases_first {
            return Ok(Some(BTreeSet::from([addr.clone()])));
        }
        if let Some(r) = self.routes.get(&RouteKey::Bare(addr.local().to_string())) {
            return Err(Self::blocked(r));
        }
        if let Some(r) = self.routes.get(&RouteKey::CatchAll(addr.domain().clone())) {
            return self.expand(r, addr, path).map(Some);
        }
        if mailbox {
            return Ok(Some(BTreeSet::from([addr.clone()])));
        }
        if let Some(r) = self.routes.get(&RouteKey::Global) {
            return Err(Self::blocked(r));
        }
        Ok(None)
    }

    fn expand(
        &self,
        r: &RouteE,
        addr: &Address,
        path: &mut Vec<Address>,
    ) -> Result<BTreeSet<Address>, String> {
        let Status::Ok(targets) = &r.status else {
            return Err(Self::blocked(r));
        };
        let mut out = BTreeSet::new();
        let mut looped = false;
        for t in targets {
            match t {
                Resolved::SelfBox => {
                    out.insert(addr.clone());
                }
                Resolved::Final(a) => {
                    out.insert(a.clone());
                }
                Resolved::Addr(a) => self.follow(a, addr, path, &mut out, &mut looped, false)?,
                Resolved::DomainAlias(d) => {
                    let a =
                        Address::from_parts(addr.local(), d.as_str()).map_err(|e| e.to_string())?;
                    self.follow(&a, addr, path, &mut out, &mut looped, true)?;
                }
            }
        }
        if out.is_empty() && looped {
            return Err(format!("every target of {addr} loops back to it"));
        }
        Ok(out)
    }

    fn follow(
        &self,
        a: &Address,
        from: &Address,
        path: &mut Vec<Address>,
        out: &mut BTreeSet<Address>,
        looped: &mut bool,
        soft: bool,
    ) -> Result<(), String> {
        if !self.domains.contains(a.domain()) {
            out.insert(a.clone());
            return Ok(());
        }
        if path.contains(a) {
            *looped = true;
            return Ok(());
        }
        if path.len() > MAX_DEPTH {
            return Err(format!("alias chain deeper than {MAX_DEPTH} at {a}"));
        }
        path.push(a.clone());
        let r = self.lookup(a, path);
        path.pop();
        match r? {
            Some(s) if !s.is_empty() => out.extend(s),
            _ if soft => {}
            _ => {
                return Err(format!(
                    "{from} points to {a}, which has no entry in the sources (mail to {from} \
                     bounces there today)"
                ))
            }
        }
        Ok(())
    }
}

impl Semantics for Model {
    fn expected(&mut self, addr: &Address) -> Result<Expect, StoreError> {
        if !self.domains.contains(addr.domain()) {
            return Ok(Expect::UnknownDomain);
        }
        let mut path = vec![addr.clone()];
        Ok(match self.lookup(addr, &mut path) {
            Err(why) => Expect::Blocked(why),
            Ok(Some(s)) if !s.is_empty() => Expect::Found(s),
            Ok(_) => Expect::NotFound,
        })
    }
}

/// A mailtable database's semantics: the resolver on its rows.
struct RowsSemantics {
    store: MemStore,
    resolver: Resolver,
}

impl Semantics for RowsSemantics {
    fn expected(&mut self, addr: &Address) -> Result<Expect, StoreError> {
        outcome(self.resolver.resolve(&mut self.store, addr))
    }
}

fn outcome(r: Result<Outcome, ResolveError>) -> Result<Expect, StoreError> {
    Ok(match r {
        Ok(Outcome::Found(d)) => Expect::Found(d.iter().map(|d| d.address().clone()).collect()),
        Ok(Outcome::NotFound) => Expect::NotFound,
        Ok(Outcome::UnknownDomain) => Expect::UnknownDomain,
        Err(ResolveError::Store(e)) => return Err(e),
        Err(e) => Expect::Error(e.to_string()),
    })
}

/// Plan the merge of mailtable databases: rows as they are.
pub fn plan_rows(
    parsed: Parsed,
    resolver: &Resolver,
) -> Result<(Plan, Box<dyn Semantics>), CliError> {
    let mut plan = Plan {
        skipped: parsed.skipped,
        notes: parsed.notes,
        ..Plan::default()
    };
    // Rows per key and source; two sources must agree on a key.
    let mut by_key: BTreeMap<(String, String), (Origin, Vec<Row>)> = BTreeMap::new();
    let mut all = Vec::new();
    let mut per_source: BTreeMap<(String, String, String), Vec<Row>> = BTreeMap::new();
    for (row, at) in &parsed.rows {
        per_source
            .entry((row.domain.clone(), row.username.clone(), at.source.clone()))
            .or_default()
            .push(row.clone());
    }
    for ((domain, username, _), rows) in per_source {
        let at = parsed
            .rows
            .iter()
            .find(|(r, _)| r.domain == domain && r.username == username)
            .map(|(_, a)| a.clone())
            .unwrap_or_else(|| Origin::key("?", &username));
        let mut rows = rows;
        rows.dedup();
        match by_key.get(&(domain.clone(), username.clone())) {
            None => {
                all.extend(rows.iter().cloned());
                by_key.insert((domain, username), (at, rows));
            }
            Some((first, existing)) if same_rows(existing, &rows) => {
                plan.notes.push(Finding::about(
                    at,
                    &format!("{username}@{domain}"),
                    format!("repeats {first}"),
                ))
            }
            Some((first, existing)) => plan.conflicts.push(Conflict {
                at,
                subject: format!("{username}@{domain}"),
                why: format!(
                    "{} here, {} at {first}",
                    describe(&rows),
                    describe(existing)
                ),
            }),
        }
    }
    let domains: BTreeSet<String> = all.iter().map(|r| r.domain.clone()).collect();
    let mut known = BTreeSet::new();
    for ((domain, username), (origin, rows)) in by_key {
        let pattern = AddressPattern::parse(&format!("{username}@{domain}"));
        let kind = if rows.iter().any(Row::is_mailbox) {
            Kind::Mailbox
        } else if username == "%" && rows.iter().any(|r| r.mailbox.contains('%')) {
            Kind::DomainAlias
        } else if username == "%" {
            Kind::CatchAll
        } else if username.contains('%') {
            Kind::Pattern
        } else {
            Kind::Alias
        };
        match pattern.as_ref().ok().and_then(AddressPattern::as_address) {
            Some(a) => {
                known.insert(a);
            }
            None if kind != Kind::DomainAlias => {
                let probe = username.replace('%', PROBE);
                if let Ok(a) = Address::from_parts(&probe, &domain) {
                    known.insert(a);
                }
            }
            None => {}
        }
        for r in &rows {
            if let Some(h) = &r.password {
                if let Ok(a) = Address::from_parts(&r.username, &r.domain) {
                    plan.logins.push(PlannedLogin {
                        address: a,
                        hash: h.clone(),
                        origin: origin.clone(),
                    });
                }
            }
            if !r.mailbox.contains('%') {
                if let Ok(a) = Address::parse(&r.mailbox) {
                    if domains.contains(a.domain().as_str()) {
                        known.insert(a);
                    }
                }
            }
        }
        plan.groups.push(Group {
            username,
            domain,
            rows,
            origin,
            kind,
        });
    }
    plan.known = known.into_iter().collect();
    let sem = RowsSemantics {
        store: MemStore::new(all),
        resolver: resolver.clone(),
    };
    Ok((plan, Box::new(sem)))
}

/// Rows compared as sets of (target, hash, active, quota).
fn row_set(rows: &[Row]) -> BTreeSet<(String, Option<String>, bool, Option<String>)> {
    rows.iter()
        .map(|r| {
            (
                r.mailbox.clone(),
                r.password.as_ref().map(|p| p.stored().to_string()),
                r.active,
                r.quota.clone(),
            )
        })
        .collect()
}

fn same_rows(a: &[Row], b: &[Row]) -> bool {
    row_set(a) == row_set(b)
}

/// Rows in words, without hashes.
fn describe(rows: &[Row]) -> String {
    let mut parts = Vec::new();
    for r in rows.iter().filter(|r| r.is_mailbox()) {
        let mut s = "a mailbox".to_string();
        if !r.active {
            s.push_str(" (disabled)");
        }
        if let Some(q) = &r.quota {
            s.push_str(&format!(" (quota {q})"));
        }
        parts.push(s);
    }
    let targets: Vec<&str> = rows
        .iter()
        .filter(|r| !r.is_mailbox())
        .map(|r| r.mailbox.as_str())
        .collect();
    if !targets.is_empty() {
        parts.push(format!("-> {}", targets.join(", ")));
    }
    parts.join(" and ")
}

/// The plan against the rows already in the database.
#[derive(Debug, Default)]
pub struct Checked {
    /// Groups to insert.
    pub new: Vec<Group>,
    /// Groups already present, identical.
    pub present: usize,
    /// Groups that differ from rows present.
    pub conflicts: Vec<Conflict>,
}

/// Compare every planned group with the database.
pub fn check_database(plan: &Plan, db: &mut dyn Store) -> Result<Checked, StoreError> {
    let mut c = Checked::default();
    for g in &plan.groups {
        let existing = db.exact(&g.username, &g.domain)?;
        if existing.is_empty() {
            c.new.push(g.clone());
        } else if same_rows(&existing, &g.rows) {
            c.present += 1;
        } else {
            let (db_box, src_box) = (
                existing.iter().find(|r| r.is_mailbox()),
                g.rows.iter().find(|r| r.is_mailbox()),
            );
            let why = match (db_box, src_box) {
                (Some(d), Some(s)) if d.password != s.password => {
                    "already in the database with a different password".to_string()
                }
                _ => format!(
                    "already in the database as {}; the source has {}",
                    describe(&existing),
                    describe(&g.rows)
                ),
            };
            c.conflicts.push(Conflict {
                at: g.origin.clone(),
                subject: g.key(),
                why,
            });
        }
    }
    Ok(c)
}

/// One address that resolves differently.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Difference {
    /// The address.
    pub address: String,
    /// What the source gives.
    pub source: String,
    /// What `mailtable resolve` gives.
    pub mailtable: String,
}

/// The outcome of the resolution check.
#[derive(Debug, Default, serde::Serialize)]
pub struct Verification {
    /// Addresses compared.
    pub checked: usize,
    /// Addresses that reach something not imported (not comparable).
    pub not_comparable: usize,
    /// Addresses that differ.
    pub differences: Vec<Difference>,
}

/// Compare the source's answer with `Resolver::resolve` on `db` for every
/// address the source knew.
pub fn verify(
    plan: &Plan,
    sem: &mut dyn Semantics,
    resolver: &Resolver,
    db: &mut dyn Store,
) -> Result<Verification, StoreError> {
    let mut v = Verification::default();
    for a in &plan.known {
        let want = sem.expected(a)?;
        if matches!(want, Expect::Blocked(_)) {
            v.not_comparable += 1;
            continue;
        }
        let got = outcome(resolver.resolve(db, a))?;
        v.checked += 1;
        if want != got {
            v.differences.push(Difference {
                address: a.to_string(),
                source: want.to_string(),
                mailtable: got.to_string(),
            });
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::{passwd_file, smtpd, Parsed};

    fn parsed(parts: Vec<Parsed>) -> Parsed {
        let mut all = Parsed::default();
        for p in parts {
            all.absorb(p);
        }
        all
    }

    fn run(parts: Vec<Parsed>, db: &mut MemStore) -> (Plan, Verification) {
        let (p, mut sem) = plan(parsed(parts), db, &Config::default()).unwrap();
        let checked = check_database(&p, db).unwrap();
        if p.conflicts.is_empty() && checked.conflicts.is_empty() {
            for g in &checked.new {
                for r in &g.rows {
                    db.insert(r).unwrap();
                }
            }
        }
        let v = verify(&p, sem.as_mut(), &Resolver::default(), db).unwrap();
        (p, v)
    }

    fn rows(db: &MemStore) -> Vec<String> {
        let mut v: Vec<String> = db
            .rows
            .iter()
            .map(|r| {
                format!(
                    "{}@{} -> {}{}",
                    r.username,
                    r.domain,
                    r.mailbox,
                    if r.is_mailbox() { " (mailbox)" } else { "" }
                )
            })
            .collect();
        v.sort();
        v
    }

    const CRED: &str = "m@example.org  m@example.org:$2b$08$0123456789012345678901uAbcdefghijklmnopqrstuvwxyz0123\n";

    #[test]
    fn local_user_becomes_the_one_mailbox_that_delivers_to_it() {
        let aliases = smtpd::parse_aliases(
            "virtuals",
            "m@example.org m\nmayeu@example.org m\nexample.org true\n@example.org m\n",
        );
        let cred = smtpd::parse_credentials("credentials", CRED);
        let mut db = MemStore::default();
        let (plan, v) = run(vec![aliases, cred], &mut db);
        assert!(plan.skipped.is_empty(), "{:?}", plan.skipped);
        assert!(plan.conflicts.is_empty(), "{:?}", plan.conflicts);
        assert_eq!(
            rows(&db),
            [
                "%@example.org -> m@example.org",
                "m@example.org -> m@example.org (mailbox)",
                "mayeu@example.org -> m@example.org",
            ]
        );
        assert!(v.differences.is_empty(), "{:?}", v.differences);
        // m, mayeu, and the catch-all probe.
        assert_eq!(v.checked, 3);
    }

    #[test]
    fn bare_login_is_mapped_and_noted() {
        let aliases = smtpd::parse_aliases("virtuals", "m@example.org m\n");
        let cred = smtpd::parse_credentials("credentials", "m m:$6$salt$hash\n");
        let mut db = MemStore::default();
        let (plan, v) = run(vec![aliases, cred], &mut db);
        assert!(plan
            .notes
            .iter()
            .any(|n| n.why.contains("becomes m@example.org")));
        assert_eq!(rows(&db), ["m@example.org -> m@example.org (mailbox)"]);
        assert!(v.differences.is_empty());
    }

    #[test]
    fn shared_delivery_user_and_unknown_users_are_reported() {
        let aliases = smtpd::parse_aliases(
            "virtuals",
            "gilles@example.org vmail\neric@example.org vmail\nabuse@example.org vmail\n\
             root pi\npostmaster@example.org root\nlist@example.org gilles@example.org, |/bin/cat\n\
             staff@example.org list@example.org\n",
        );
        let cred = smtpd::parse_credentials(
            "credentials",
            "gilles@example.org gilles@example.org:$2b$x\neric@example.org eric@example.org:$2b$y\n",
        );
        let mut db = MemStore::default();
        let (plan, v) = run(vec![aliases, cred], &mut db);
        let why = |k: &str| {
            plan.skipped
                .iter()
                .find(|f| f.subject.as_deref() == Some(k))
                .map(|f| f.why.clone())
                .unwrap_or_default()
        };
        assert!(why("abuse@example.org").contains("several mailboxes"));
        assert!(why("root").contains("local alias"));
        assert!(why("postmaster@example.org").contains("itself a local alias"));
        assert!(why("list@example.org").contains("pipe"));
        assert!(
            why("staff@example.org").contains("list@example.org"),
            "{}",
            why("staff@example.org")
        );
        assert_eq!(
            rows(&db),
            [
                "eric@example.org -> eric@example.org (mailbox)",
                "gilles@example.org -> gilles@example.org (mailbox)",
            ]
        );
        assert!(v.differences.is_empty(), "{:?}", v.differences);
    }

    #[test]
    fn login_that_only_forwards_is_a_conflict() {
        let aliases = smtpd::parse_aliases("virtuals", "m@example.org other@example.net\n");
        let cred = smtpd::parse_credentials("credentials", CRED);
        let mut db = MemStore::default();
        let (plan, _) = run(vec![aliases, cred], &mut db);
        assert_eq!(plan.conflicts.len(), 1);
        assert_eq!(plan.conflicts[0].at.to_string(), "virtuals:1");
        assert!(db.rows.is_empty());
    }

    #[test]
    fn repeated_keys() {
        let aliases = smtpd::parse_aliases(
            "virtuals",
            "a@x.org b@y.org\na@x.org b@y.org\nc@x.org d@y.org\nc@x.org e@y.org\n",
        );
        let mut db = MemStore::default();
        let (plan, _) = run(vec![aliases], &mut db);
        assert!(plan.notes.iter().any(|n| n.at.to_string() == "virtuals:2"));
        assert_eq!(plan.conflicts.len(), 1);
        assert_eq!(plan.conflicts[0].at.to_string(), "virtuals:4");
    }

    #[test]
    fn existing_rows_identical_are_present_different_conflict() {
        let mut db = MemStore::default().with(
            "m",
            "example.org",
            "m@example.org",
            Some("$2b$08$0123456789012345678901uAbcdefghijklmnopqrstuvwxyz0123"),
        );
        let cred = smtpd::parse_credentials("credentials", CRED);
        let (p, _) = plan(parsed(vec![cred]), &mut db, &Config::default()).unwrap();
        let c = check_database(&p, &mut db).unwrap();
        assert_eq!((c.new.len(), c.present, c.conflicts.len()), (0, 1, 0));

        let other = smtpd::parse_credentials("credentials", "m@example.org x:$2b$other\n");
        let (p, _) = plan(parsed(vec![other]), &mut db, &Config::default()).unwrap();
        let c = check_database(&p, &mut db).unwrap();
        assert_eq!(c.conflicts.len(), 1);
        assert!(c.conflicts[0].why.contains("different password"));
        assert!(!c.conflicts[0].to_string().contains('$'));
    }

    #[test]
    fn login_without_route_in_a_routed_import_is_a_difference() {
        // smtpd: bob can log in but mail to bob goes to the catch-all.
        let aliases = smtpd::parse_aliases("virtuals", "m@example.org m\n@example.org m\n");
        let cred = smtpd::parse_credentials(
            "credentials",
            &format!("{CRED}bob@example.org bob@example.org:$2b$z\n"),
        );
        let mut db = MemStore::default();
        let (_, v) = run(vec![aliases, cred], &mut db);
        assert_eq!(v.differences.len(), 1, "{:?}", v.differences);
        assert_eq!(v.differences[0].address, "bob@example.org");
        assert_eq!(v.differences[0].source, "m@example.org");
    }

    #[test]
    fn dovecot_users_are_mailboxes_with_quota() {
        let p = passwd_file::parse(
            "users",
            "a@x.org:{SHA512-CRYPT}$6$s$h:::::: userdb_quota_rule=*:storage=1G\nb:{PLAIN}p\n",
        );
        let mut db = MemStore::default();
        let (plan, v) = run(vec![p], &mut db);
        assert_eq!(db.rows.len(), 1);
        assert_eq!(db.rows[0].quota.as_deref(), Some("1G"));
        assert_eq!(plan.skipped.len(), 1, "b has no domain");
        assert_eq!(v.checked, 1);
        assert!(v.differences.is_empty());
    }

    #[test]
    fn sql_self_alias_forward_and_domain_alias() {
        let mut p = Parsed {
            defines_routes: true,
            ..Parsed::default()
        };
        let login = |a: &str, id| super::Login {
            name: LoginName::Address(Address::parse(a).unwrap()),
            hash: PasswordHash::new("$2b$x"),
            active: true,
            quota: None,
            implied_route: true,
            origin: Origin::row("old.db", "users", id),
        };
        p.logins.push(login("u@x.org", 1));
        p.logins.push(login("v@x.org", 2));
        p.routes.push(Route {
            key: RouteKey::Exact(Address::parse("u@x.org").unwrap()),
            targets: vec![
                Target::Address(Address::parse("u@x.org").unwrap()),
                Target::Address(Address::parse("u@elsewhere.net").unwrap()),
            ],
            origin: Origin::row("old.db", "aliases", 1),
        });
        p.routes.push(Route {
            key: RouteKey::CatchAll(Domain::parse("old.org").unwrap()),
            targets: vec![Target::DomainAlias(Domain::parse("x.org").unwrap())],
            origin: Origin::row("old.db", "aliases", 2),
        });
        let mut db = MemStore::default();
        let (plan, v) = run(vec![p], &mut db);
        assert!(plan.conflicts.is_empty(), "{:?}", plan.conflicts);
        assert_eq!(
            rows(&db),
            [
                "%@old.org -> %@x.org",
                "u@x.org -> u@elsewhere.net",
                "u@x.org -> u@x.org (mailbox)",
                "v@x.org -> v@x.org (mailbox)",
            ]
        );
        assert!(v.differences.is_empty(), "{:?}", v.differences);
    }

    #[test]
    fn mailtable_rows_merge() {
        let mut p = Parsed::default();
        let src = MemStore::default()
            .with("hugo", "barrera.io", "hugo@barrera.io", Some("$2b$h"))
            .with("%", "barrera.io", "hugo@barrera.io", None)
            .with("contact", "example.com", "hugo@barrera.io", None);
        for r in &src.rows {
            p.rows
                .push((r.clone(), Origin::key("old.db", &r.address())));
        }
        let (plan, mut sem) = plan_rows(p, &Resolver::default()).unwrap();
        assert_eq!(plan.groups.len(), 3);
        let mut db = MemStore::default();
        for g in &plan.groups {
            for r in &g.rows {
                db.insert(r).unwrap();
            }
        }
        let v = verify(&plan, sem.as_mut(), &Resolver::default(), &mut db).unwrap();
        assert_eq!(v.checked, 3, "hugo, contact, the catch-all probe");
        assert!(v.differences.is_empty());
    }
}
