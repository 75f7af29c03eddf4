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

use super::parsed::{
    At, Conflict, Finding, Login, LoginName, Origin, Parsed, Route, RouteKey, Target,
};
use super::source_walk::SMTPD_EXPAND_DEPTH;
use mailtable_core::{Address, Domain, Row, Store, StoreError};
use std::borrow::Cow;
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
    /// be told. A set: every key delivering to `vmail` asks whether it is
    /// one of them, and there may be a million.
    Shared(BTreeSet<Address>),
    /// No login delivers to it.
    Unknown,
    /// Keys with the local part of this login without a domain deliver
    /// to it, and which of them is the login's address cannot be told:
    /// the login's own entry says why and which option settles it. Its
    /// mailbox is that login's, counted once, as the login.
    Unplaced(String),
    /// The userbase given to the import (an smtpd userinfo or passwd
    /// table) lacks it: smtpd refused every message whose expansion
    /// reached it (550), whatever delivers to it.
    NotInUserbase,
    /// The userbase given has it, but its lookup fails there (a
    /// table-passwd line whose uid, gid or home it cannot read): smtpd
    /// answered every message reaching it with a temporary error (451).
    UserinfoFails,
    /// The mailbox of a login left behind (plan's drops): mail the source
    /// delivered to the user has no mailbox to go to after the import.
    LeftBehind(Address),
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
    /// Addresses given to bare logins that no key of the sources has: new
    /// addresses, not the source's.
    pub invented: BTreeSet<Address>,
    /// Local users that keys with an unplaced bare login's local part
    /// deliver to, with that login ([`LocalUser::Unplaced`]).
    pub unplaced: BTreeMap<String, String>,
    /// Logins (and local delivery users) of the sources that do not come
    /// over: their mail has nowhere to go.
    pub lost_mailboxes: BTreeSet<String>,
    /// Mailboxes whose mail the source refused (inactive, with
    /// `--inactive reject`).
    pub refused: BTreeSet<Address>,
    /// Inactive mailboxes imported disabled (`--inactive disabled`).
    pub accepted_inactive: BTreeSet<Address>,
}

impl Merged {
    /// A login of the sources or a mailbox in the database.
    pub fn has_login(&self, a: &Address) -> bool {
        self.logins.contains_key(a) || self.db_mailboxes.contains(a)
    }
}

/// Combine `parsed` (its findings already taken into `f`), consulting `db`
/// for mailboxes and domains it already has.
pub fn merge(
    parsed: Parsed,
    db: &mut dyn Store,
    hints: &LoginHints,
    f: &mut Findings,
) -> Result<Merged, StoreError> {
    let mut m = Merged {
        routes: routes_by_key(parsed.routes, f),
        aliases_first: parsed.aliases_first,
        refused: parsed.refused.into_iter().collect(),
        accepted_inactive: parsed.accepted_inactive.into_iter().collect(),
        lost_mailboxes: parsed.lost_mailboxes.into_iter().collect(),
        ..Merged::default()
    };
    let bare_logins = add_logins(&mut m, parsed.logins, hints, f);
    m.deliverable = m
        .logins
        .iter()
        .filter(|(_, l)| l.implied_route || !parsed.defines_routes)
        .map(|(a, _)| a.clone())
        .collect();
    m.db_mailboxes = mailboxes_in_db(&m, db)?;
    m.local_users = local_users(&m, &bare_logins, f);
    // A local user no login delivers to is a mailbox of the source that
    // does not come over (local aliases, `root: pi`, are not the table's):
    // the users smtpd delivers to, after their own bare keys.
    let mut unknown = Vec::new();
    for r in m.routes.values() {
        if !matches!(r.key, RouteKey::Exact(_) | RouteKey::CatchAll(_)) {
            continue;
        }
        let Ok(targets) = through_user_keys(&r.targets, &m.routes) else {
            continue;
        };
        for t in targets.iter() {
            if let Target::LocalUser(u) = t {
                if matches!(m.local_users.get(u), Some(LocalUser::Unknown)) {
                    unknown.push(format!("local user {u}"));
                }
            }
        }
    }
    m.lost_mailboxes.extend(unknown);
    add_domains(&mut m, &parsed.domains, db, f)?;
    if m.aliases_first {
        note_catch_alls_first(&m, f);
    }
    Ok(m)
}

fn routes_by_key(routes: Vec<Route>, f: &mut Findings) -> BTreeMap<RouteKey, Route> {
    let mut by_key: BTreeMap<RouteKey, Route> = BTreeMap::new();
    for mut r in routes {
        match by_key.get(&r.key) {
            None => {
                // A reader that pushed the targets one by one left room
                // for more; the route is kept to the end of the import.
                r.targets.shrink_to_fit();
                by_key.insert(r.key.clone(), r);
            }
            Some(first) if same_targets(&first.targets, &r.targets) => {
                f.notes.push(Finding::about(
                    r.origin.clone(),
                    &r.key.to_string(),
                    format!("repeats {} (same targets)", first.origin),
                ))
            }
            Some(first) => {
                // Only a text table is smtpd's; database rows of one key
                // fan out and meet here only across tables or sources.
                let smtpd = if matches!(r.origin.at, At::Line(_)) {
                    "; smtpd would keep only the last"
                } else {
                    ""
                };
                f.conflicts.push(Conflict {
                    at: r.origin.clone(),
                    subject: r.key.to_string(),
                    why: format!(
                        "given again with other targets (first at {}){smtpd}",
                        first.origin
                    ),
                })
            }
        }
    }
    by_key
}

/// Whether two target lists deliver alike: the same targets in any order,
/// a repeated one counted once (smtpd's expansion delivers each once:
/// `expand_insert` in `usr.sbin/smtpd/expand.c` keeps a node per target).
fn same_targets(a: &[Target], b: &[Target]) -> bool {
    use std::collections::HashSet;
    a == b || a.iter().collect::<HashSet<_>>() == b.iter().collect::<HashSet<_>>()
}

/// What differs between two logins of one address, if anything. The same
/// hash in two notations (`$6$...` and `{SHA512-CRYPT}$6$...`) is one
/// password; a quota given by one source only (smtpd tables have none) is
/// no disagreement.
fn same_login(a: &Login, b: &Login) -> Option<&'static str> {
    if !a.hash.same_password(&b.hash) {
        Some("a different password")
    } else if a.active != b.active {
        Some("a different active state")
    } else if a.quota.is_some() && b.quota.is_some() && a.quota != b.quota {
        Some("a different quota")
    } else {
        None
    }
}

/// `bare`: the login's own name when it had no domain and was placed at
/// `addr`: meeting another login there joins two logins of the source into
/// one, which the note says in those words.
fn add_login(
    logins: &mut BTreeMap<Address, Login>,
    addr: Address,
    login: Login,
    bare: Option<&str>,
    f: &mut Findings,
) {
    let Some(first) = logins.get_mut(&addr) else {
        logins.insert(addr, login);
        return;
    };
    match same_login(first, &login) {
        None => {
            let notation = if first.hash == login.hash {
                String::new()
            } else {
                // Kept byte for byte as the first source wrote it; both
                // daemons read either form (PasswordHash::canonical).
                format!(
                    " in another notation ({} there, {} here; the first is kept)",
                    notation(&first.hash),
                    notation(&login.hash)
                )
            };
            let why = match bare {
                None => format!("repeats {} (same login{notation})", first.origin),
                Some(u) => format!(
                    "login {u} is placed at {addr}, the login of {} already, with the same \
                     password{notation}: the two are one login and one mailbox from now on",
                    first.origin
                ),
            };
            f.notes
                .push(Finding::about(login.origin.clone(), &addr.to_string(), why));
            if first.quota.is_none() {
                first.quota = login.quota;
            }
            first.implied_route |= login.implied_route;
        }
        Some(what) => f.conflicts.push(Conflict {
            at: login.origin.clone(),
            subject: addr.to_string(),
            why: format!("given again with {what} (first at {})", first.origin),
        }),
    }
}

/// How a hash is written, without the hash: its `{SCHEME}` or "bare".
fn notation(h: &mailtable_core::PasswordHash) -> String {
    h.prefix()
        .map_or_else(|| "bare".to_string(), |p| format!("{{{p}}}"))
}

/// What the admin said about logins without a domain: `--login-domain`
/// qualifies every bare login the sources cannot place, `--map` one login.
#[derive(Debug, Clone, Default)]
pub struct LoginHints {
    /// `--login-domain DOMAIN`.
    pub domain: Option<Domain>,
    /// `--map LOGIN=ADDRESS`.
    pub map: BTreeMap<String, Address>,
}

/// Logins by address; a bare name becomes the address [`qualify`] finds
/// for it. Returns the bare names whose local user of the same name is
/// that address's mailbox (smtpd's `m@d m` with the login `m`).
fn add_logins(
    m: &mut Merged,
    logins: Vec<Login>,
    hints: &LoginHints,
    f: &mut Findings,
) -> BTreeMap<String, Address> {
    let mut bare = Vec::new();
    for l in logins {
        match l.name.clone() {
            LoginName::Address(a) => add_login(&mut m.logins, a, l, None, f),
            LoginName::Bare(u) => bare.push((u, l)),
        }
    }
    let bare_names: BTreeSet<String> = bare.iter().map(|(u, _)| u.clone()).collect();
    // A `--map` that places nothing is a typo or a wrong source: said,
    // not ignored (the import would silently differ from what was asked).
    for (u, a) in hints.map.iter().filter(|(u, _)| !bare_names.contains(*u)) {
        f.conflicts.push(Conflict {
            at: Origin::whole("--map"),
            subject: format!("{u}={a}"),
            why: format!(
                "the sources have no login {u} without a domain: --map places such logins \
                 only (drop the option, or correct the login's name)"
            ),
        });
    }
    let evidence = if bare.is_empty() {
        Evidence::new()
    } else {
        delivering_keys_by_local_part(&m.routes)
    };
    let mut mapped = BTreeMap::new();
    for (u, mut l) in bare {
        let (k, why) = match qualify(&u, &evidence, hints, &bare_names) {
            Ok(k) => k,
            Err(why) => {
                for (_, users) in evidence.get(u.as_str()).map_or(&[][..], Vec::as_slice) {
                    for user in users {
                        m.unplaced.insert(user.to_string(), u.clone());
                    }
                }
                f.skipped.push(Finding::about(l.origin, &u, why));
                m.lost_mailboxes.insert(u);
                continue;
            }
        };
        let route = m.routes.get(&RouteKey::Exact(k.clone()));
        // smtpd's walk for an address without an entry of its own: the
        // bare key, the domain's catch-all, the global one.
        let through = [
            RouteKey::Bare(k.local().to_string()),
            RouteKey::CatchAll(k.domain().clone()),
            RouteKey::Global,
        ]
        .into_iter()
        .find(|key| m.routes.contains_key(key));
        let new = match (route, through) {
            (Some(_), _) => String::new(),
            (None, Some(key)) => format!(
                " (the sources have no entry of its own: its mail went through the entry {key} \
                 until now, and comes to this mailbox from now on)"
            ),
            (None, None) => " (a new address: the sources have no entry for it, so it receives \
                             mail from now on)"
                .to_string(),
        };
        f.notes.push(Finding::about(
            l.origin.clone(),
            &u,
            format!("login {u} becomes {k}, {why}{new}: mail clients must log in as {k}"),
        ));
        l.name = LoginName::Address(k.clone());
        add_login(&mut m.logins, k.clone(), l, Some(&u), f);
        match route {
            Some(r) if !r.targets.contains(&Target::LocalUser(u.clone())) => {}
            Some(_) => {
                mapped.insert(u, k);
            }
            None => {
                m.invented.insert(k.clone());
                mapped.insert(u, k);
            }
        }
    }
    mapped
}

/// The exact keys that deliver to a local user, by local part, with those
/// local users: the evidence [`qualify`] weighs for a bare login.
type Evidence<'a> = BTreeMap<&'a str, Vec<(&'a Address, Vec<&'a str>)>>;

/// [`Evidence`] in one pass over the routes, so that qualifying a login is
/// a lookup: a scan of every route per login made a 20,000-login smtpd
/// 6.x setup take 5 s, quadratic in the source (hours at 500,000).
fn delivering_keys_by_local_part(routes: &BTreeMap<RouteKey, Route>) -> Evidence<'_> {
    let mut by_local = Evidence::new();
    for r in routes.values() {
        let RouteKey::Exact(k) = &r.key else { continue };
        let users: Vec<&str> = r.local_users().collect();
        if !users.is_empty() {
            by_local.entry(k.local()).or_default().push((k, users));
        }
    }
    by_local
}

/// The address of bare login `u`, and why; or why it cannot be told and
/// which option settles it.
///
/// smtpd 5.x/6.x setups authenticate `u` against a credentials table
/// without domains while the virtual table (table(5): `user@domain
/// local-user`) says where `u@domain` goes, often to a system user of
/// another name. The evidence is unambiguous when exactly one key of the
/// virtual table has the local part `u` and delivers to a local user, and
/// no local user it delivers to is another bare login's own name (whose
/// mailbox that would be). Explicit options come first: `--map`, then
/// `--login-domain` for the logins the evidence does not place.
fn qualify(
    u: &str,
    evidence: &Evidence<'_>,
    hints: &LoginHints,
    bare_names: &BTreeSet<String>,
) -> Result<(Address, String), String> {
    if let Some(a) = hints.map.get(u) {
        return Ok((a.clone(), format!("as --map {u}={a} says")));
    }
    let candidates: &[(&Address, Vec<&str>)] = evidence.get(u).map_or(&[], Vec::as_slice);
    let clash = |users: &[&str]| {
        users
            .iter()
            .find(|x| **x != u && bare_names.contains(**x))
            .map(|x| x.to_string())
    };
    let why_not = match candidates {
        [(k, users)] => match clash(users) {
            None => {
                return Ok((
                    (*k).clone(),
                    format!(
                        "the one address with the local part {u} that delivers to a local user \
                         ({})",
                        users.join(", ")
                    ),
                ))
            }
            Some(x) => format!(
                "login without a domain: the one address with its local part, {k}, delivers to \
                 local user {x}, which is another login's name, so whose mailbox that is cannot \
                 be told; --map {u}=ADDRESS settles it"
            ),
        },
        [] => format!(
            "login without a domain, and no address {u}@DOMAIN in the sources delivers to a \
             local user, so its address cannot be told; --login-domain DOMAIN or --map \
             {u}=ADDRESS settles it"
        ),
        many => {
            let list = super::report::first_few(many.iter().map(|(k, _)| k));
            format!(
                "login without a domain, and several addresses with its local part deliver to a \
                 local user ({}): which one is its mailbox cannot be told; --login-domain DOMAIN \
                 or --map {u}=ADDRESS settles it",
                list
            )
        }
    };
    match &hints.domain {
        Some(d) => Address::from_parts(u, d.as_str())
            .map(|a| (a, format!("as --login-domain {d} says")))
            .map_err(|e| format!("login without a domain: with --login-domain {d}: {e}")),
        None => Err(why_not),
    }
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

/// The logins delivering to each local user name, in key order, found in
/// one pass over the routes (looking them up per name was a scan of every
/// route per name: quadratic, 23 s for 20,000 smtpd 6.x users).
fn logins_by_local_user(m: &Merged) -> BTreeMap<&str, Vec<(&Address, &Origin)>> {
    let mut by_user: BTreeMap<&str, Vec<(&Address, &Origin)>> = BTreeMap::new();
    for r in m.routes.values() {
        let RouteKey::Exact(k) = &r.key else { continue };
        if !m.has_login(k) {
            continue;
        }
        let mut users: Vec<&str> = r.local_users().collect();
        // A route naming a user twice is one login delivering to it.
        users.sort_unstable();
        users.dedup();
        for u in users {
            by_user.entry(u).or_default().push((k, &r.origin));
        }
    }
    by_user
}

/// What each local user name used as a target stands for. A local user of
/// another name than its one mailbox (smtpd 6.x: `gilles@d vgilles`) is a
/// decision worth a note: every key delivering to it becomes an alias of
/// that mailbox.
fn local_users(
    m: &Merged,
    bare_logins: &BTreeMap<String, Address>,
    f: &mut Findings,
) -> BTreeMap<String, LocalUser> {
    let logins = logins_by_local_user(m);
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
                let boxes = logins.get(u.as_str()).map_or(&[][..], Vec::as_slice);
                match boxes {
                    [] => match m.unplaced.get(u) {
                        Some(login) => LocalUser::Unplaced(login.clone()),
                        None => LocalUser::Unknown,
                    },
                    [(a, at)] => {
                        let a = (*a).clone();
                        if a.local() != u {
                            f.notes.push(Finding::about(
                                (*at).clone(),
                                u,
                                format!(
                                    "local user {u} is the mailbox of {a}, the one login \
                                     delivering to it: the other addresses delivering to {u} \
                                     become aliases of {a}"
                                ),
                            ));
                        }
                        LocalUser::Mailbox(a)
                    }
                    _ => LocalUser::Shared(boxes.iter().map(|(a, _)| (*a).clone()).collect()),
                }
            };
            map.insert(u.clone(), meaning);
        }
    }
    map
}

/// `targets` as smtpd expands their delivery users (lka_expand in
/// `usr.sbin/smtpd/lka_session.c`): a user is looked up again in the
/// virtual table as a bare key (aliases_virtual_get with the user name and
/// no domain) and, when it has one, stands for that key's targets; a user
/// its own key names (`vmail  vmail`) is delivered (`sameuser`); a user met
/// again under the same address adds nothing (expand_cmp in expand.c
/// tells users apart by their nearest address only); a chain of keys
/// past smtpd's depth limit fails the whole expansion (524): `Err` with
/// the user it ran out at. Postfix-style sources have no user targets.
/// `targets` themselves, not a copy, where no user has a bare key (every
/// route of an import is asked, and few users have one).
pub fn through_user_keys<'a>(
    targets: &'a [Target],
    routes: &BTreeMap<RouteKey, Route>,
) -> Result<Cow<'a, [Target]>, String> {
    fn walk(
        targets: &[Target],
        routes: &BTreeMap<RouteKey, Route>,
        (from_user, depth): (Option<&str>, usize),
        seen: &mut BTreeSet<String>,
        out: &mut Vec<Target>,
    ) -> Result<(), String> {
        for t in targets {
            let Target::LocalUser(u) = t else {
                out.push(t.clone());
                continue;
            };
            let key = match routes.get(&RouteKey::Bare(u.clone())) {
                Some(k) if from_user != Some(u.as_str()) => k,
                _ => {
                    out.push(t.clone());
                    continue;
                }
            };
            if !seen.insert(u.clone()) {
                continue;
            }
            if depth >= SMTPD_EXPAND_DEPTH {
                return Err(u.clone());
            }
            walk(&key.targets, routes, (Some(u), depth + 1), seen, out)?;
        }
        Ok(())
    }
    let aliased = |t: &Target| match t {
        Target::LocalUser(u) => routes.contains_key(&RouteKey::Bare(u.clone())),
        _ => false,
    };
    if !targets.iter().any(aliased) {
        return Ok(Cow::Borrowed(targets));
    }
    let mut out = Vec::new();
    // The recipient's address is depth 0, its first user 1.
    walk(targets, routes, (None, 1), &mut BTreeSet::new(), &mut out)?;
    Ok(Cow::Owned(out))
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
        if m.routes.contains_key(&RouteKey::Exact(a.clone())) {
            continue;
        }
        let Some(catch_all) = m.routes.get(&RouteKey::CatchAll(a.domain().clone())) else {
            continue;
        };
        // A catch-all to this very mailbox gives it its own mail in the
        // source too (Postfix stops where an address expands to itself).
        if matches!(catch_all.targets.as_slice(), [Target::Address(t)] if t == a) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::smtpd;
    use mailtable_core::store::memory::MemStore;

    const VIRTUALS: &str = "a@x.org va\nalias@x.org va\nb@x.org b\nb@y.org b\nc@x.org e\n\
                            e@x.org e\ns1@x.org vmail\ns2@x.org vmail, vmail\n";
    const CREDENTIALS: &str = "a a:$2b$h\nb b:$2b$h\nc c:$2b$h\ne e:$2b$h\nz z:$2b$h\n\
                               s1@x.org s1:$2b$h\ns2@x.org s2:$2b$h\n";

    fn merged(hints: &LoginHints) -> (Merged, Findings) {
        let mut p = smtpd::parse_aliases("virtuals", VIRTUALS);
        p.absorb(smtpd::parse_credentials("credentials", CREDENTIALS));
        let mut f = Findings::default();
        let m = merge(p, &mut MemStore::default(), hints, &mut f).unwrap();
        (m, f)
    }

    fn logins(m: &Merged) -> Vec<String> {
        m.logins.keys().map(ToString::to_string).collect()
    }

    fn why(f: &Findings, login: &str) -> String {
        let whys: Vec<&str> = f
            .skipped
            .iter()
            .filter(|s| s.subject.as_deref() == Some(login))
            .map(|s| s.why.as_str())
            .collect();
        whys.join("; ")
    }

    fn local(m: &Merged, u: &str) -> String {
        match m.local_users.get(u) {
            Some(LocalUser::Mailbox(a)) => a.to_string(),
            Some(LocalUser::Shared(s)) => {
                let s: Vec<String> = s.iter().map(ToString::to_string).collect();
                format!("shared {}", s.join(" "))
            }
            Some(LocalUser::Unknown) => "unknown".into(),
            Some(LocalUser::Unplaced(login)) => format!("unplaced {login}"),
            Some(LocalUser::NotInUserbase) => "not in the userbase".into(),
            Some(LocalUser::UserinfoFails) => "userinfo fails".into(),
            Some(LocalUser::LeftBehind(a)) => format!("left behind {a}"),
            None => "absent".into(),
        }
    }

    /// A key given twice with the same targets, in another order or with
    /// one repeated, is a repeat (smtpd delivers each target once); other
    /// targets are a conflict.
    #[test]
    fn a_key_given_twice_conflicts_only_with_other_targets() {
        let text = "i@x.org a@x.org, b@x.org\ni@x.org b@x.org,a@x.org\n\
                    i@x.org a@x.org, b@x.org, a@x.org\ni@x.org a@x.org\n";
        let routes = smtpd::parse_aliases("v", text).routes;
        let mut f = Findings::default();
        let by_key = routes_by_key(routes, &mut f);
        assert_eq!(by_key.len(), 1);
        let notes: Vec<String> = f.notes.iter().map(ToString::to_string).collect();
        assert_eq!(
            notes,
            [
                "v:2: i@x.org: repeats v:1 (same targets)",
                "v:3: i@x.org: repeats v:1 (same targets)"
            ]
        );
        assert_eq!(f.conflicts.len(), 1, "{:?}", f.conflicts);
        assert_eq!(f.conflicts[0].at.to_string(), "v:4");
    }

    /// Every way a bare login is placed or not, each local user's meaning,
    /// side by side in one source (the indexes behind them must keep each
    /// login's evidence its own).
    #[test]
    fn bare_logins_and_local_users_by_the_evidence() {
        let (m, f) = merged(&LoginHints::default());
        assert_eq!(
            logins(&m),
            ["a@x.org", "e@x.org", "s1@x.org", "s2@x.org"],
            "{:?}",
            f.skipped
        );
        assert!(
            why(&f, "b").contains(
                "several addresses with its local part deliver to a local user (b@x.org, b@y.org)"
            ),
            "{}",
            why(&f, "b")
        );
        assert!(why(&f, "c").contains("the one address with its local part, c@x.org, delivers to local user e, which is another login's name"), "{}", why(&f, "c"));
        assert!(
            why(&f, "z").contains("no address z@DOMAIN in the sources delivers to a local user"),
            "{}",
            why(&f, "z")
        );
        let notes: Vec<String> = f.notes.iter().map(ToString::to_string).collect();
        assert!(
            notes.iter().any(|n| n.contains("login a becomes a@x.org, the one address with the local part a that delivers to a local user (va)")),
            "{notes:?}"
        );
        assert!(
            notes
                .iter()
                .any(|n| n.starts_with("virtuals:1: va: local user va is the mailbox of a@x.org")),
            "{notes:?}"
        );
        assert_eq!(local(&m, "va"), "a@x.org");
        assert_eq!(local(&m, "e"), "e@x.org");
        // b's login was not placed: the local user its keys deliver to is
        // its mailbox, lost once, as the login.
        assert_eq!(local(&m, "b"), "unplaced b");
        // Named twice by s2, still two mailboxes.
        assert_eq!(local(&m, "vmail"), "shared s1@x.org s2@x.org");
        assert_eq!(m.lost_mailboxes.iter().collect::<Vec<_>>(), ["b", "c", "z"]);
    }

    #[test]
    fn options_place_what_the_evidence_does_not() {
        let hints = LoginHints {
            domain: Some(Domain::parse("y.org").unwrap()),
            map: BTreeMap::from([("c".to_string(), Address::parse("c@x.org").unwrap())]),
        };
        let (m, f) = merged(&hints);
        assert_eq!(
            logins(&m),
            ["a@x.org", "b@y.org", "c@x.org", "e@x.org", "s1@x.org", "s2@x.org", "z@y.org"],
            "{:?}",
            f.skipped
        );
        assert!(f.skipped.is_empty(), "{:?}", f.skipped);
        // z@y.org is no key of the sources: a new address.
        assert_eq!(
            m.invented
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["z@y.org"]
        );
        assert_eq!(local(&m, "b"), "b@y.org");
    }
}
