//! Combining the parsed text and SQL sources into one set of entries: one
//! route per key, one login per address, what each local user name stands
//! for, and which domains are the source's. Repeats are noted, disagreements
//! are conflicts; nothing is decided here about what comes over (that is
//! [`plan`](super::plan)).
//!
//! The one decision a reader might question: a login without a domain
//! (smtpd credentials `m m:$hash`) becomes the one address whose route
//! delivers to local user `m` (`m@d m`), and a local user name as a target
//! becomes the address of the one mailbox delivering to it; a name shared
//! by several mailboxes (`vmail`), or by none, is reported, never guessed,
//! because a wrong guess would hand one user's mail to another.

use super::parsed::{Conflict, Finding, Login, LoginName, Origin, Parsed, Route, RouteKey, Target};
use mailtable_core::{Address, Domain, Row, Store, StoreError};
use std::collections::{BTreeMap, BTreeSet};

/// What the sources say about entries, besides the entries: collected while
/// merging and planning, sorted by place at the end.
#[derive(Debug, Default)]
pub struct Findings {
    /// Entries not imported, with why.
    pub skipped: Vec<Finding>,
    /// Things worth knowing that change nothing.
    pub notes: Vec<Finding>,
    /// Disagreements inside the sources, or with the database.
    pub conflicts: Vec<Conflict>,
}

/// What a local user name (smtpd's `mayeu@d m`) stands for.
#[derive(Debug, Clone)]
pub enum LocalUser {
    /// The one mailbox delivering to it.
    Mailbox(Address),
    /// Several mailboxes deliver to it (`vmail`): which one is meant cannot
    /// be told.
    Shared(Vec<Address>),
    /// No login delivers to it.
    Unknown,
}

/// The sources, combined.
#[derive(Debug, Default)]
pub struct Merged {
    /// One route per key.
    pub routes: BTreeMap<RouteKey, Route>,
    /// One login per address (bare logins mapped to theirs).
    pub logins: BTreeMap<Address, Login>,
    /// Logins the source delivers to without a route.
    pub deliverable: BTreeSet<Address>,
    /// Route keys without a login here that have a mailbox in the database.
    pub db_mailboxes: BTreeSet<Address>,
    /// Local user names used as targets.
    pub local_users: BTreeMap<String, LocalUser>,
    /// The source's domains.
    pub domains: BTreeSet<Domain>,
    /// Places that declare a domain (SQL `domains`, smtpd domain lines).
    pub markers: Vec<(Domain, Origin)>,
    /// Postfix order: aliases and catch-alls before the mailboxes.
    pub aliases_first: bool,
}

impl Merged {
    /// A login of the sources or a mailbox in the database.
    pub fn has_login(&self, a: &Address) -> bool {
        self.logins.contains_key(a) || self.db_mailboxes.contains(a)
    }
}

/// Combine `parsed` (its findings already taken into `f`), consulting `db`
/// for mailboxes and domains it already has.
pub fn merge(parsed: Parsed, db: &mut dyn Store, f: &mut Findings) -> Result<Merged, StoreError> {
    let mut m = Merged {
        routes: routes_by_key(parsed.routes, f),
        aliases_first: parsed.aliases_first,
        ..Merged::default()
    };
    let bare_logins = add_logins(&mut m, parsed.logins, f);
    m.deliverable = m
        .logins
        .iter()
        .filter(|(_, l)| l.implied_route || !parsed.defines_routes)
        .map(|(a, _)| a.clone())
        .collect();
    m.db_mailboxes = mailboxes_in_db(&m, db)?;
    m.local_users = local_users(&m, &bare_logins);
    add_domains(&mut m, &parsed.domains, db, f)?;
    if m.aliases_first {
        note_catch_alls_first(&m, f);
    }
    Ok(m)
}

fn routes_by_key(routes: Vec<Route>, f: &mut Findings) -> BTreeMap<RouteKey, Route> {
    let mut by_key: BTreeMap<RouteKey, Route> = BTreeMap::new();
    for r in routes {
        match by_key.get(&r.key) {
            None => {
                by_key.insert(r.key.clone(), r);
            }
            Some(first) if first.targets == r.targets => f.notes.push(Finding::about(
                r.origin.clone(),
                &r.key.to_string(),
                format!("repeats {} (same targets)", first.origin),
            )),
            Some(first) => f.conflicts.push(Conflict {
                at: r.origin.clone(),
                subject: r.key.to_string(),
                why: format!(
                    "given again with other targets (first at {}); smtpd would keep only the last",
                    first.origin
                ),
            }),
        }
    }
    by_key
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

fn add_login(logins: &mut BTreeMap<Address, Login>, addr: Address, login: Login, f: &mut Findings) {
    match logins.get(&addr) {
        None => {
            logins.insert(addr, login);
        }
        Some(first) => match same_login(first, &login) {
            None => f.notes.push(Finding::about(
                login.origin.clone(),
                &addr.to_string(),
                format!("repeats {} (same login)", first.origin),
            )),
            Some(what) => f.conflicts.push(Conflict {
                at: login.origin.clone(),
                subject: addr.to_string(),
                why: format!("given again with {what} (first at {})", first.origin),
            }),
        },
    }
}

/// Logins by address; a bare name becomes the one address whose route
/// delivers to that local user. Returns the bare names so mapped.
fn add_logins(m: &mut Merged, logins: Vec<Login>, f: &mut Findings) -> BTreeMap<String, Address> {
    let mut bare = Vec::new();
    for l in logins {
        match l.name.clone() {
            LoginName::Address(a) => add_login(&mut m.logins, a, l, f),
            LoginName::Bare(u) => bare.push((u, l)),
        }
    }
    let mut mapped = BTreeMap::new();
    for (u, mut l) in bare {
        let local = Target::LocalUser(u.clone());
        let candidates: Vec<Address> = m
            .routes
            .values()
            .filter_map(|r| match &r.key {
                RouteKey::Exact(k) if k.local() == u && r.targets.contains(&local) => {
                    Some(k.clone())
                }
                _ => None,
            })
            .collect();
        match candidates.as_slice() {
            [k] => {
                f.notes.push(Finding::about(
                    l.origin.clone(),
                    &u,
                    format!(
                        "login {u} becomes {k}, the one address delivered to local user {u}: \
                         mail clients must log in as {k}"
                    ),
                ));
                mapped.insert(u, k.clone());
                l.name = LoginName::Address(k.clone());
                add_login(&mut m.logins, k.clone(), l, f);
            }
            [] => f.skipped.push(Finding::about(
                l.origin,
                &u,
                format!(
                    "login without a domain: mailtable logins are addresses, and no alias in the \
                     sources maps {u}@DOMAIN to local user {u}"
                ),
            )),
            many => {
                let list: Vec<String> = many.iter().map(ToString::to_string).collect();
                f.skipped.push(Finding::about(
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
    mapped
}

/// Route keys that have no login in the sources but a mailbox in the
/// database: they count as logins.
fn mailboxes_in_db(m: &Merged, db: &mut dyn Store) -> Result<BTreeSet<Address>, StoreError> {
    let mut found = BTreeSet::new();
    for key in m.routes.keys() {
        if let RouteKey::Exact(k) = key {
            if !m.logins.contains_key(k)
                && db
                    .exact(k.local(), k.domain().as_str())?
                    .iter()
                    .any(Row::is_mailbox)
            {
                found.insert(k.clone());
            }
        }
    }
    Ok(found)
}

/// What each local user name used as a target stands for.
fn local_users(m: &Merged, bare_logins: &BTreeMap<String, Address>) -> BTreeMap<String, LocalUser> {
    let mut map: BTreeMap<String, LocalUser> = BTreeMap::new();
    for r in m.routes.values() {
        for t in &r.targets {
            let Target::LocalUser(u) = t else { continue };
            if map.contains_key(u) {
                continue;
            }
            let meaning = if let Some(a) = bare_logins.get(u) {
                LocalUser::Mailbox(a.clone())
            } else {
                let mut boxes: Vec<Address> = m
                    .routes
                    .values()
                    .filter_map(|r| match &r.key {
                        RouteKey::Exact(k) if r.targets.contains(t) && m.has_login(k) => {
                            Some(k.clone())
                        }
                        _ => None,
                    })
                    .collect();
                match boxes.len() {
                    0 => LocalUser::Unknown,
                    1 => LocalUser::Mailbox(boxes.remove(0)),
                    _ => LocalUser::Shared(boxes),
                }
            };
            map.insert(u.clone(), meaning);
        }
    }
    map
}

/// A bare key that is a domain line (`example.org true`): a valid name
/// with a dot.
pub fn domain_line(key: &str) -> Option<Domain> {
    key.contains('.').then(|| Domain::parse(key).ok()).flatten()
}

/// The source's domains and the places that declare them. A domain line of
/// a domain with addresses (here or in the database) is a marker, not a
/// route.
fn add_domains(
    m: &mut Merged,
    declared: &[(Domain, bool, Origin)],
    db: &mut dyn Store,
    f: &mut Findings,
) -> Result<(), StoreError> {
    m.domains = m.logins.keys().map(|a| a.domain().clone()).collect();
    for k in m.routes.keys() {
        match k {
            RouteKey::Exact(a) => {
                m.domains.insert(a.domain().clone());
            }
            RouteKey::CatchAll(d) => {
                m.domains.insert(d.clone());
            }
            _ => {}
        }
    }
    for (d, active, at) in declared {
        m.domains.insert(d.clone());
        m.markers.push((d.clone(), at.clone()));
        if !active {
            f.notes.push(Finding::about(
                at.clone(),
                d.as_str(),
                "inactive domain: its mailboxes come over disabled, its aliases are not imported",
            ));
        }
    }
    let domain_lines: Vec<(RouteKey, Domain)> = m
        .routes
        .keys()
        .filter_map(|k| match k {
            RouteKey::Bare(b) => domain_line(b).map(|d| (k.clone(), d)),
            _ => None,
        })
        .collect();
    for (k, d) in domain_lines {
        if m.domains.contains(&d) || db.has_domain(d.as_str())? {
            if let Some(r) = m.routes.remove(&k) {
                m.markers.push((d.clone(), r.origin));
            }
            m.domains.insert(d);
        }
    }
    Ok(())
}

/// In Postfix order a catch-all takes the mail of a mailbox without an
/// alias of its own; mailtable would deliver it to the mailbox. Say so.
fn note_catch_alls_first(m: &Merged, f: &mut Findings) {
    for a in &m.deliverable {
        if m.routes.contains_key(&RouteKey::Exact(a.clone()))
            || !m
                .routes
                .contains_key(&RouteKey::CatchAll(a.domain().clone()))
        {
            continue;
        }
        if let Some(l) = m.logins.get(a) {
            f.notes.push(Finding::about(
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
