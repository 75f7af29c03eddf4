//! From merged text and SQL sources to the rows mailtable will hold, what
//! is left out and why, and the addresses whose delivery is then checked.
//!
//! - a login `a@d` with a hash is a mailbox row;
//! - a route `a@d -> t1, t2` is one alias row per target, except a target
//!   that is the key's own mailbox (its login, smtpd's `a@d vmail`, SQL's
//!   `a@d -> a@d`), which the mailbox row already covers;
//! - `@d -> t` is the catch-all `%@d`, `@old -> @new` the domain alias
//!   `%@old -> %@new`;
//! - a local user name as a target becomes the address of the one mailbox
//!   that delivers to it ([`merge`]).
//!
//! The one decision a reader might question: an entry whose expansion in
//! the source runs into something not imported is itself not imported,
//! iterated to a fixed point, so that no imported row points at nothing;
//! the report names the entry it ran into. A target the source bounced (a
//! mailbox it refuses: PostfixAdmin's inactive mailbox) is different: the
//! source delivered the other targets, so only that target is left out,
//! and an entry left with no target is not imported (its mail bounced).
//!
//! A mailtable database needs none of this: [`rows`](super::rows).

use super::merge::{self, domain_line, Findings, LocalUser, LoginHints, Merged};
use super::parsed::{Conflict, Finding, Login, Origin, Parsed, Route, RouteKey, Target, UserInfo};
use super::smtpd::hostname_match;
use super::source_walk::{Resolved, RouteEntry, SourceWalk, Status};
use super::verify::Semantics;
use crate::error::CliError;
use mailtable_core::{
    delivery, Address, Config, Domain, PasswordHash, Row, RowKind, Store, StoreError,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Local part used to probe catch-alls and patterns.
pub const PROBE: &str = "mailtable-import-probe";

/// One row of a [`Group`], without the key the group holds once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// Target address (the address itself for a mailbox row).
    pub mailbox: String,
    /// `Some` makes this a mailbox row.
    pub password: Option<PasswordHash>,
    /// `false`: login refused, mail still accepted.
    pub active: bool,
    /// Dovecot quota.
    pub quota: Option<String>,
}

/// The rows of one `username@domain` (never none).
///
/// The username and domain are held once for all the rows (the domain
/// shared with every other group of it), and the [`Row`]s are made when
/// they are read: an import may plan a million groups, and a `Row` of its
/// own per group cost a third of a big import's memory.
#[derive(Debug, Clone)]
pub struct Group {
    username: Arc<str>,
    domain: Arc<str>,
    planned: Vec<Planned>,
    /// The source entry they come from.
    pub origin: Origin,
}

impl Group {
    /// A group of `username@domain` without rows yet.
    fn new(username: Arc<str>, domain: Arc<str>, origin: Origin, rows: usize) -> Group {
        Group {
            username,
            domain,
            planned: Vec::with_capacity(rows),
            origin,
        }
    }

    /// The group of `rows`, which all have one username and domain (the
    /// rows of one key of a mailtable database); `None` for no rows.
    pub fn of_rows(rows: Vec<Row>, origin: Origin) -> Option<Group> {
        let first = rows.first()?;
        let mut g = Group::new(
            first.username.as_str().into(),
            first.domain.as_str().into(),
            origin,
            rows.len(),
        );
        g.planned.extend(rows.into_iter().map(|r| Planned {
            mailbox: r.mailbox,
            password: r.password,
            active: r.active,
            quota: r.quota,
        }));
        Some(g)
    }

    /// Username column (local part or pattern).
    pub fn username(&self) -> &str {
        &self.username
    }

    /// Domain column.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// `username@domain`.
    pub fn key(&self) -> String {
        format!("{}@{}", self.username(), self.domain())
    }

    /// How many rows.
    pub fn len(&self) -> usize {
        self.planned.len()
    }

    /// The rows, mailbox first, made as they are read.
    pub fn rows(&self) -> impl Iterator<Item = Row> + '_ {
        self.planned.iter().map(|p| Row {
            username: self.username.to_string(),
            domain: self.domain.to_string(),
            mailbox: p.mailbox.clone(),
            password: p.password.clone(),
            active: p.active,
            quota: p.quota.clone(),
        })
    }

    /// What the rows of this address are together: a mailbox if one row
    /// is, a domain alias if one row is (the others are then the same
    /// catch-all with other targets), otherwise what every row is.
    pub fn kind(&self) -> RowKind {
        let kinds: BTreeSet<RowKind> = self.rows().map(|r| r.kind()).collect();
        [RowKind::Mailbox, RowKind::DomainAlias]
            .into_iter()
            .find(|k| kinds.contains(k))
            .or_else(|| kinds.first().copied())
            .unwrap_or(RowKind::Alias)
    }
}

/// What an import will write, and what it will not.
#[derive(Debug, Default)]
pub struct Plan {
    /// Rows per key.
    pub groups: Vec<Group>,
    /// Addresses whose resolution is checked.
    pub known: BTreeSet<Address>,
    /// Entries not imported, with why.
    pub skipped: Vec<Finding>,
    /// Notes.
    pub notes: Vec<Finding>,
    /// Disagreements inside the sources.
    pub conflicts: Vec<Conflict>,
    /// Keys of the source (addresses, `@domain`) that received mail there
    /// and will not after the import.
    pub lost: Vec<String>,
    /// Logins and local delivery users of the source that do not come
    /// over.
    pub lost_mailboxes: Vec<String>,
    /// Mailboxes the source refused mail to (inactive), not imported so
    /// that it stays refused.
    pub refused: Vec<String>,
}

/// Plan an import of text or SQL sources into `db`; the second half is the
/// sources' own semantics, for the check after writing.
pub fn plan(
    mut parsed: Parsed,
    db: &mut dyn Store,
    config: &Config,
    hints: &LoginHints,
) -> Result<(Plan, Box<dyn Semantics>), CliError> {
    let mut f = Findings {
        skipped: std::mem::take(&mut parsed.skipped),
        notes: std::mem::take(&mut parsed.notes),
        conflicts: Vec::new(),
    };
    let userinfo = std::mem::take(&mut parsed.userinfo);
    let accepted_domains = parsed.accepted_domains.take();
    let mut lost: BTreeSet<String> = std::mem::take(&mut parsed.lost).into_iter().collect();
    let mut merged = merge::merge(parsed, db, hints, &mut f)?;
    mark_users_not_in_userbase(&userinfo, &mut merged);
    // Logins left behind: those smtpd refused mail to (their addresses
    // received nothing there either), and those it delivered to that
    // mailtable cannot (their mail is lost).
    let mut dropped = match &accepted_domains {
        Some(listed) => drop_domains_smtpd_refused(listed, &mut merged, &mut f.skipped),
        None => BTreeMap::new(),
    };
    dropped.extend(drop_logins_smtpd_refused(&mut merged, &mut f.skipped));
    let refused_logins: BTreeSet<Address> = dropped.keys().cloned().collect();
    // smtpd, Dovecot's LMTP and Postfix (with its `recipient_delimiter`)
    // deliver `user+tag` as `user`, the tag cut at mailtable's delimiter.
    let delimiter = config.delimiter().map_err(CliError::usage)?;
    let undeliverable = drop_logins_smtpd_cannot_deliver(&mut merged, delimiter, &mut f.skipped);
    lost.extend(undeliverable.keys().map(ToString::to_string));
    dropped.extend(undeliverable);
    for a in dropped.keys() {
        merged.lost_mailboxes.insert(a.to_string());
    }
    // A delivery user whose mailbox is such a login delivered to it in the
    // source; after the import there is no mailbox for it (and in a domain
    // smtpd refused, its address would be relayed elsewhere).
    for meaning in merged.local_users.values_mut() {
        if let LocalUser::Mailbox(a) = meaning {
            if dropped.contains_key(a) {
                *meaning = LocalUser::LeftBehind(a.clone());
            }
        }
    }
    // What reaches the dropped logins is not imported either (the fixed
    // point below).
    let walk = decide_routes(&mut merged, &mut f, delimiter, (dropped, &refused_logins));
    let mut walk = drop_what_reaches_the_skipped(walk);
    if !walk.aliases_first {
        bounce_loops(&mut walk);
    }
    drop_bounced_targets(&mut walk, &mut f.skipped);
    for (key, r) in &walk.routes {
        match &r.status {
            Status::Ok(_) => {}
            Status::Skipped(why) | Status::Bounced(why) => {
                // A bounced entry lost nothing: the source delivered
                // nothing through it either.
                match (&r.status, key) {
                    (Status::Bounced(_), _) => {}
                    // A bare key serves `u@dom` of every domain of the
                    // table where nothing before it in smtpd's walk
                    // answers (aliases_virtual_get): those addresses lose
                    // their mail.
                    (_, RouteKey::Bare(u)) => lost.extend(bare_key_addresses(u, &walk)),
                    (_, key) => {
                        lost.insert(key.to_string());
                    }
                }
                f.skipped.push(Finding::about(
                    r.origin.clone(),
                    &key.to_string(),
                    why.clone(),
                ));
            }
        }
    }
    if let (Some(listed), Some(global)) = (&accepted_domains, walk.routes.get(&RouteKey::Global)) {
        for d in domains_only_the_global_key_served(listed, &walk, db)? {
            f.skipped.push(Finding::about(
                global.origin.clone(),
                &format!("@{d}"),
                format!(
                    "{d} is in smtpd's domain table and has no entry of its own: every address \
                     there went through the global @, which is not imported, so all of them \
                     are refused from now on (add a catch-all %@{d} where that is wrong)"
                ),
            ));
            lost.insert(format!("@{d}"));
        }
    }
    userinfo_notes(&userinfo, &merged, config, &mut f.notes);
    let known = known_addresses(&merged, &walk);
    // The logins become mailbox rows by value: a big source's hashes and
    // origins are moved, not copied, and the logins freed as they go.
    let groups = groups(std::mem::take(&mut merged.logins), &walk.routes);
    skip_domains_without_rows(&merged.markers, &groups, db, &mut f.skipped)?;

    f.skipped.sort_by(|a, b| a.at.cmp(&b.at));
    f.notes.sort_by(|a, b| a.at.cmp(&b.at));
    f.conflicts.sort_by(|a, b| a.at.cmp(&b.at));
    let plan = Plan {
        groups,
        known,
        skipped: f.skipped,
        notes: f.notes,
        conflicts: f.conflicts,
        lost: lost.into_iter().collect(),
        lost_mailboxes: merged.lost_mailboxes.into_iter().collect(),
        refused: walk.refused.iter().map(ToString::to_string).collect(),
    };
    Ok((plan, Box::new(walk)))
}

/// With an smtpd userbase among the sources (`userbase <userinfo>`), a
/// delivery user it lacks made smtpd refuse every message whose expansion
/// reached it (550: the userinfo lookup of an expanded user name fails,
/// lka_expand in usr.sbin/smtpd/lka_session.c): whatever delivered to it
/// bounced there.
fn mark_users_not_in_userbase(userinfo: &[UserInfo], m: &mut Merged) {
    // Each user of the userbase, and whether its lookup works there (an
    // entry without uid: table-passwd could not read it).
    let mut userbase: BTreeMap<&str, bool> = BTreeMap::new();
    for u in userinfo.iter().filter(|u| u.userbase) {
        *userbase.entry(u.user.as_str()).or_default() |= u.uid.is_some();
    }
    if userbase.is_empty() {
        return;
    }
    for (u, meaning) in &mut m.local_users {
        match userbase.get(u.as_str()) {
            None => {
                *meaning = LocalUser::NotInUserbase;
                // No mailbox left behind: smtpd bounced its mail.
                m.lost_mailboxes.remove(&format!("local user {u}"));
            }
            Some(false) => *meaning = LocalUser::UserinfoFails,
            Some(true) => {}
        }
    }
}

/// The domains of the entries that smtpd's domain table does not list:
/// smtpd refused their mail (550, no rule matched), so their entries are
/// bounced, not imported, and their logins (which could authenticate) are
/// left behind like the userbase's refusals; they are no domains of ours,
/// so a target there was relayed, and is an external address after the
/// import too.
fn drop_domains_smtpd_refused(
    listed: &[(String, Origin)],
    m: &mut Merged,
    skipped: &mut Vec<Finding>,
) -> BTreeMap<Address, String> {
    let table = listed
        .first()
        .map_or("the smtpd-domains source, empty".into(), |(_, at)| {
            at.source.to_string()
        });
    let outside: BTreeSet<Domain> = m
        .domains
        .iter()
        .filter(|d| !listed.iter().any(|(p, _)| hostname_match(d.as_str(), p)))
        .cloned()
        .collect();
    if outside.is_empty() {
        return BTreeMap::new();
    }
    let why = |d: &Domain| {
        format!(
            "{d} is not in smtpd's domain table ({table}): no rule accepted its mail, smtpd \
             refused it (550)"
        )
    };
    let keys: Vec<(RouteKey, Domain)> = m
        .routes
        .keys()
        .filter_map(|k| match k {
            RouteKey::Exact(a) => Some((k.clone(), a.domain().clone())),
            RouteKey::CatchAll(d) => Some((k.clone(), d.clone())),
            _ => None,
        })
        .filter(|(_, d)| outside.contains(d))
        .collect();
    for (k, d) in keys {
        if let Some(r) = m.routes.remove(&k) {
            skipped.push(Finding::about(r.origin, &k.to_string(), why(&d)));
        }
    }
    let logins: Vec<(Address, String)> = m
        .logins
        .keys()
        .filter(|a| outside.contains(a.domain()))
        .map(|a| {
            let why = format!(
                "{}, while the login worked; a mailtable mailbox would take the mail (add the \
                 domain to the table, or drop the login)",
                why(a.domain())
            );
            (a.clone(), why)
        })
        .collect();
    m.domains.retain(|d| !outside.contains(d));
    leave_behind(m, logins, skipped)
}

/// Take `logins` out of the import, each with why: a finding each, and
/// the map the plan counts them by.
fn leave_behind(
    m: &mut Merged,
    logins: Vec<(Address, String)>,
    skipped: &mut Vec<Finding>,
) -> BTreeMap<Address, String> {
    let mut dropped = BTreeMap::new();
    for (a, why) in logins {
        if let Some(l) = m.logins.remove(&a) {
            m.deliverable.remove(&a);
            skipped.push(Finding::about(l.origin, &a.to_string(), why.clone()));
            dropped.insert(a, why);
        }
    }
    dropped
}

/// The domains smtpd's domain table names outright (no `*`) that no entry
/// of the sources and no row of the database has: smtpd took their mail,
/// and only the global `@` answered for it.
fn domains_only_the_global_key_served(
    listed: &[(String, Origin)],
    walk: &SourceWalk,
    db: &mut dyn Store,
) -> Result<Vec<Domain>, CliError> {
    let mut out = Vec::new();
    for (pattern, _) in listed.iter().filter(|(p, _)| !p.contains('*')) {
        let Ok(d) = Domain::parse(pattern) else {
            continue;
        };
        if !walk.domains.contains(&d) && !db.has_domain(d.as_str())? {
            out.push(d);
        }
    }
    Ok(out)
}

/// Logins whose own entry delivers to a user the userbase lacks, or names
/// the login's own address (a loop to smtpd): smtpd let them authenticate
/// but refused their mail. A mailtable mailbox would
/// take it, and a login alone cannot be had: left behind (the import
/// refused without `--partial`), for the admin to add the user to the
/// userinfo table or drop the login.
fn drop_logins_smtpd_refused(
    m: &mut Merged,
    skipped: &mut Vec<Finding>,
) -> BTreeMap<Address, String> {
    let refused: Vec<(Address, String)> = m
        .logins
        .keys()
        .filter_map(|a| {
            let r = m.routes.get(&RouteKey::Exact(a.clone()))?;
            if !m.aliases_first && r.targets.contains(&Target::Address(a.clone())) {
                return Some((
                    a.clone(),
                    "its entry names its own address, which smtpd expands again until its depth \
                     limit: smtpd refused its mail (524) while the login worked; a mailtable \
                     mailbox would take the mail (deliver it to its local user instead, or drop \
                     the login)"
                        .to_string(),
                ));
            }
            // The users smtpd asks the userbase for: after their own bare
            // keys (a user with one is never looked up there).
            let delivered = merge::through_user_keys(&r.targets, &m.routes).ok()?;
            let (u, fails) = delivered.iter().find_map(|t| match t {
                Target::LocalUser(u) => match m.local_users.get(u) {
                    Some(LocalUser::NotInUserbase) => Some((u, false)),
                    Some(LocalUser::UserinfoFails) => Some((u, true)),
                    _ => None,
                },
                _ => None,
            })?;
            let why = match fails {
                false => format!(
                    "its entry delivers to local user {u}, which is not in the userbase given \
                     (userinfo): smtpd refused its mail (550) while the login worked; a \
                     mailtable mailbox would take the mail (add {u} to the userinfo table, or \
                     drop the login)"
                ),
                true => format!(
                    "its entry delivers to local user {u}, whose userinfo lookup fails in the \
                     userbase given (uid, gid or home unreadable): smtpd deferred its mail \
                     (451) until it expired while the login worked; a mailtable mailbox would \
                     take the mail (mend the user's line, or drop the login)"
                ),
            };
            Some((a.clone(), why))
        })
        .collect();
    leave_behind(m, refused, skipped)
}

/// Logins whose delivery user name smtpd does not take (`o'brien@`: RFC
/// 5321 allows it, smtpd's user names are letters, digits and `_ . + -`)
/// or cuts at the tag delimiter (`a+b@` is delivered as user `a`): as
/// mailboxes they would fail every message, and every list they are on.
/// Taken out of the mailboxes with a finding; the source delivered them
/// (Dovecot, Postfix do), so their addresses are lost.
fn drop_logins_smtpd_cannot_deliver(
    m: &mut Merged,
    delimiter: char,
    skipped: &mut Vec<Finding>,
) -> BTreeMap<Address, String> {
    let unusable: Vec<(Address, String)> = m
        .logins
        .keys()
        .filter_map(|a| {
            let name = delivery::encode(a);
            let fault = mailtable_core::resolve::smtpd_item_fault(&name, delimiter)?;
            let why = format!(
                "smtpd delivers to a mailbox by its user name, and {fault} in the source \
                 (or import it under another name with an alias from this one)"
            );
            Some((a.clone(), why))
        })
        .collect();
    leave_behind(m, unusable, skipped)
}

/// Every route with its status: imported with these targets, or not and
/// why. Takes the routes, the deliverable logins and the domains out of
/// `m`: from here on they belong to the walk.
fn decide_routes(
    m: &mut Merged,
    f: &mut Findings,
    delimiter: char,
    (not_imported, refused): (BTreeMap<Address, String>, &BTreeSet<Address>),
) -> SourceWalk {
    // The bare keys, which smtpd also asks for delivery users: kept for
    // route_status once the routes are moved out below.
    let bare_keys: BTreeMap<RouteKey, Route> = m
        .routes
        .iter()
        .filter(|(k, _)| matches!(k, RouteKey::Bare(_)))
        .map(|(k, r)| (k.clone(), r.clone()))
        .collect();
    let routes = std::mem::take(&mut m.routes)
        .into_iter()
        .map(|(key, route)| {
            let status = match &route.key {
                // The source refused its mail: the entry delivered nothing.
                RouteKey::Exact(a) if refused.contains(a) => {
                    Status::Bounced(format!("its mailbox is not imported: {}", not_imported[a]))
                }
                RouteKey::Exact(a) if not_imported.contains_key(a) => {
                    Status::Skipped(format!("its mailbox is not imported: {}", not_imported[a]))
                }
                _ => route_status(&route, m, &bare_keys, f),
            };
            let origin = route.origin;
            (key, RouteEntry { origin, status })
        })
        .collect();
    SourceWalk {
        deliverable: std::mem::take(&mut m.deliverable),
        aliases_first: m.aliases_first,
        delimiter: Some(delimiter),
        not_imported,
        routes,
        domains: std::mem::take(&mut m.domains),
        refused: std::mem::take(&mut m.refused),
        accepted_inactive: std::mem::take(&mut m.accepted_inactive),
        memo: Default::default(),
    }
}

/// Targets the source bounced (a mailbox it refuses, or an entry all of
/// whose targets are) are left out of an imported entry, with a finding;
/// an entry left without targets delivered nothing in the source and is
/// not imported. Postfix bounces such a copy at delivery and still
/// delivers the others (virtual(8): "user unknown" for an address its
/// mailbox maps do not list), so the entry's other targets keep theirs.
/// smtpd fails the whole expansion instead (a node that fails sets the
/// session's error, lka_expand in usr.sbin/smtpd/lka_session.c): there an
/// entry with a target that bounces bounces as a whole, and so does an
/// entry whose expansion runs past smtpd's depth limit.
/// Iterated, since an entry that bounces makes its aliases' copies bounce.
fn drop_bounced_targets(walk: &mut SourceWalk, skipped: &mut Vec<Finding>) {
    if !walk.aliases_first {
        bounce_too_deep(walk);
    }
    // What can bounce: a refused mailbox, an entry bounced already, and in
    // Postfix order a catch-all's target that is no mailbox (it expands
    // into itself and is delivered as it is: user unknown), and so any
    // target of ours that is no mailbox (a deleted user still on a list).
    let bounced = walk.routes.iter().any(|(k, r)| {
        matches!(r.status, Status::Bounced(_))
            || (walk.aliases_first && matches!(k, RouteKey::CatchAll(_)))
            || (walk.aliases_first
                && matches!(&r.status, Status::Ok(t) if t.iter().any(|t| matches!(t,
                    Resolved::Addr(a) if walk.domains.contains(a.domain())
                        && !walk.deliverable.contains(a)))))
    });
    if walk.refused.is_empty() && !bounced {
        return;
    }
    loop {
        let mut changes = Vec::new();
        for (k, r) in &walk.routes {
            let Status::Ok(targets) = &r.status else {
                continue;
            };
            let dropped: Vec<Address> = targets
                .iter()
                .filter_map(|t| match t {
                    Resolved::Addr(a) if walk.domains.contains(a.domain()) && walk.bounces(a) => {
                        Some(a.clone())
                    }
                    _ => None,
                })
                .collect();
            if !dropped.is_empty() {
                changes.push((k.clone(), dropped));
            }
        }
        if changes.is_empty() {
            return;
        }
        for (k, dropped) in changes {
            let aliases_first = walk.aliases_first;
            let Some(r) = walk.routes.get_mut(&k) else {
                continue;
            };
            if !aliases_first {
                r.status = Status::Bounced(format!(
                    "target {} bounced in the source, and smtpd refuses the whole entry with \
                     it (5xx)",
                    dropped[0]
                ));
                continue;
            }
            let Status::Ok(targets) = &mut r.status else {
                continue;
            };
            let gone: BTreeSet<&Address> = dropped.iter().collect();
            targets.retain(|t| !matches!(t, Resolved::Addr(a) if gone.contains(a)));
            // An entry left with nothing says so once, below.
            for a in dropped.iter().filter(|_| !targets.is_empty()) {
                skipped.push(Finding::about(
                    r.origin.clone(),
                    &k.to_string(),
                    format!(
                        "target {a}: the source refused its mail (an inactive mailbox, an \
                         address that is no mailbox, or only such targets), so this copy \
                         bounced there; not imported, the other targets are"
                    ),
                ));
            }
            if targets.is_empty() {
                r.status = Status::Bounced(
                    "every target is refused by the source (inactive, or no mailbox): its mail \
                     bounced there and is not accepted after the import either"
                        .into(),
                );
            }
        }
    }
}

/// smtpd entries whose expansion runs into an alias loop: smtpd expands
/// the loop again until its depth limit and refuses the whole entry
/// (524), whether the loop has a way out (`a -> b`, `b -> a, x`) or not,
/// and so does every entry reaching one ([`SourceWalk::follow`]). Without
/// its rows mailtable refuses it too; with them it would deliver to `x`,
/// or answer a temporary error for a loop without a way out.
fn bounce_loops(walk: &mut SourceWalk) {
    let looped: Vec<(RouteKey, Address)> = walk
        .routes
        .iter()
        .filter(|(_, r)| matches!(r.status, Status::Ok(_)))
        .filter_map(|(k, _)| {
            let own = key_address(k, &walk.routes)?;
            let at = walk.reach(&own).ok()??.looped?;
            Some((k.clone(), at))
        })
        .collect();
    for (k, at) in looped {
        if let Some(r) = walk.routes.get_mut(&k) {
            r.status = Status::Bounced(format!(
                "its expansion runs into an alias loop at {at}: smtpd expands the loop again \
                 until its depth limit and refuses the whole entry (524)"
            ));
        }
    }
}

/// smtpd entries whose expansion, from their own key, runs past smtpd's
/// depth limit: smtpd answered 524 there. Only entries with a target in
/// our domains can go deeper than one level.
fn bounce_too_deep(walk: &mut SourceWalk) {
    let deep: Vec<RouteKey> = walk
        .routes
        .iter()
        .filter(|(k, r)| {
            let (RouteKey::Exact(a), Status::Ok(targets)) = (k, &r.status) else {
                return false;
            };
            // Ours, so looked up again; a target that bounces from its own
            // key is drop_bounced_targets' case. What is left of a bounce
            // from this key is the depth.
            let ours: Vec<&Address> = targets
                .iter()
                .filter_map(|t| match t {
                    Resolved::Addr(t) if walk.domains.contains(t.domain()) => Some(t),
                    _ => None,
                })
                .collect();
            !ours.is_empty() && walk.bounces(a) && !ours.iter().any(|t| walk.bounces(t))
        })
        .map(|(k, _)| k.clone())
        .collect();
    for k in deep {
        if let Some(r) = walk.routes.get_mut(&k) {
            r.status = Status::Bounced(
                "its expansion runs past smtpd's limit of 10 levels (EXPAND_DEPTH, the \
                 delivery user counted): smtpd refused its mail (524)"
                    .into(),
            );
        }
    }
}

/// Fixed point: an entry that delivers through something not imported is
/// not imported either.
fn drop_what_reaches_the_skipped(mut walk: SourceWalk) -> SourceWalk {
    loop {
        let mut newly = Vec::new();
        for (k, r) in &walk.routes {
            if !matches!(r.status, Status::Ok(_)) {
                continue;
            }
            let Some(probe) = key_address(k, &walk.routes) else {
                continue;
            };
            let mut path = vec![probe.clone()];
            if let Err(why) = walk.expand((k, r), &probe, &mut path) {
                newly.push((k.clone(), why));
            }
        }
        if newly.is_empty() {
            return walk;
        }
        for (k, why) in newly {
            if let Some(r) = walk.routes.get_mut(&k) {
                r.status = Status::Skipped(why);
            }
        }
    }
}

/// The address a route's own expansion is walked for: its key, or a probe
/// of a catch-all's domain; none for smtpd's bare keys and `@`.
fn key_address(k: &RouteKey, routes: &BTreeMap<RouteKey, RouteEntry>) -> Option<Address> {
    match k {
        RouteKey::Exact(a) => Some(a.clone()),
        RouteKey::CatchAll(d) => Some(probe_address(d, routes)),
        RouteKey::Bare(_) | RouteKey::Global => None,
    }
}

/// A local part no exact key of `d` uses.
fn probe_address(d: &Domain, routes: &BTreeMap<RouteKey, RouteEntry>) -> Address {
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

/// Whether `route` comes over, and with which targets.
fn route_status(
    route: &Route,
    m: &Merged,
    bare_keys: &BTreeMap<RouteKey, Route>,
    f: &mut Findings,
) -> Status {
    let own = match &route.key {
        RouteKey::Global => {
            return Status::Skipped(
                "smtpd's global catch-all @ applies to every domain of the table; mailtable \
                 catch-alls are per domain (add %@DOMAIN where needed)"
                    .into(),
            )
        }
        RouteKey::Bare(u) => return Status::Skipped(why_bare_key_is_skipped(u)),
        RouteKey::Exact(a) => Some(a),
        RouteKey::CatchAll(_) => None,
    };
    let mut out: Vec<Resolved> = Vec::new();
    // The targets met so far: an "everyone" list has thousands, and
    // searching `out` for each would be quadratic in them.
    let mut seen = BTreeSet::new();
    let targets = match merge::through_user_keys(&route.targets, bare_keys) {
        Ok(t) => t,
        Err(u) => {
            return Status::Bounced(format!(
                "local user {u} is a bare key again, past smtpd's depth limit: smtpd refused its \
                 mail (524)"
            ))
        }
    };
    for t in targets.iter() {
        match resolve_target(t, own, m.aliases_first, &m.local_users) {
            Ok(r) if seen.insert(r.clone()) => out.push(r),
            Ok(_) => {}
            Err(Unresolved::Skipped(why)) => return Status::Skipped(why),
            Err(Unresolved::Bounced(why)) => return Status::Bounced(why),
        }
    }
    // Kept for the whole import, one per route: no spare capacity.
    out.shrink_to_fit();
    let Some(k) = own else {
        return Status::Ok(out);
    };
    let in_import = m.logins.get(k);
    let has_login = m.has_login(k);
    let to_self = out.contains(&Resolved::SelfBox);
    // The target stays in the list (the walk needs it: Postfix marks an
    // address that expands into itself and never expands it again for
    // that recipient), and gives no row: the mailbox row comes from a
    // login only.
    let only_self = out.len() == 1;
    if to_self && !has_login && m.refused.contains(k) {
        // The self-alias of a mailbox the source refuses: that copy
        // bounced, the other targets were delivered.
        if only_self {
            return Status::Bounced(format!(
                "delivers only to its own mailbox, which the source refused (inactive, or its \
                 delivery switched off): its mail bounced there and is not accepted after the \
                 import either (--inactive disabled imports {k} as a mailbox accepting mail)"
            ));
        }
        return Status::Ok(out);
    }
    if to_self && only_self && !has_login && m.lost_mailboxes.contains(&k.to_string()) {
        // The source's own mailbox, left behind (no password, or an
        // address mailtable cannot store): the source delivered this mail,
        // it did not bounce it. Its entry says why; the address is
        // counted there.
        return Status::Skipped(format!(
            "delivers to its own mailbox, which does not come over (see the entry of {k}): \
             the source delivered this mail, and after the import it has nowhere to go"
        ));
    }
    if to_self && !has_login && m.aliases_first {
        // Postfix delivers an address that expands into itself as it is
        // (cleanup_map1n.c), and its mailbox maps do not list this one:
        // that copy bounced (virtual(8): user unknown), the other targets
        // got theirs.
        if only_self {
            return Status::Bounced(
                "delivers only to its own address, which has no mailbox in the sources: \
                 Postfix bounced its mail there (user unknown) and it is not accepted after \
                 the import either"
                    .into(),
            );
        }
        f.skipped.push(Finding::about(
            route.origin.clone(),
            &k.to_string(),
            format!(
                "target {k} (its own address): the sources have no mailbox for it, so Postfix \
                 bounced this copy (user unknown); not imported, the other targets are"
            ),
        ));
        return Status::Ok(out);
    }
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
        f.conflicts.push(Conflict {
            at: route.origin.clone(),
            subject: k.to_string(),
            why: format!(
                "{login_at} but the source delivers its mail only elsewhere; mailtable keeps \
                 the mail of every mailbox: add {k} to its own targets, or drop the login"
            ),
        });
        return Status::Skipped("conflict (see conflicts)".into());
    }
    Status::Ok(out)
}

/// The addresses smtpd delivered through the bare key `u` (a virtual
/// table's `postmaster  gilles@example.org`): `u@d` of every domain of the
/// sources whose walk reaches the bare key, i.e. that has no entry of its
/// own and is no login delivered before it. None for a domain line.
fn bare_key_addresses(u: &str, walk: &SourceWalk) -> Vec<String> {
    if domain_line(u).is_some() {
        return Vec::new();
    }
    walk.domains
        .iter()
        .filter_map(|d| Address::from_parts(u, d.as_str()).ok())
        .filter(|a| {
            !walk.routes.contains_key(&RouteKey::Exact(a.clone()))
                && (walk.aliases_first || !walk.deliverable.contains(a))
        })
        .map(|a| a.to_string())
        .collect()
}

fn why_bare_key_is_skipped(u: &str) -> String {
    match domain_line(u) {
        Some(d) => format!(
            "domain line for {d}, which has no address in the sources or the database: \
             mailtable knows a domain only by its rows"
        ),
        None => format!(
            "local alias without a domain: mailtable holds virtual addresses only; keep \
             it in the local aliases file (in a virtual table smtpd also applies it to \
             {u}@ every domain: add {u}@DOMAIN aliases where that is wanted)"
        ),
    }
}

/// Why a target does not come over.
enum Unresolved {
    /// It delivered in the source, and cannot here.
    Skipped(String),
    /// The source bounced the route's mail on it.
    Bounced(String),
}

impl From<String> for Unresolved {
    fn from(why: String) -> Unresolved {
        Unresolved::Skipped(why)
    }
}

/// One target of a route whose key is `own` (`None`: a catch-all), or why
/// the route cannot come over.
fn resolve_target(
    t: &Target,
    own: Option<&Address>,
    postfix: bool,
    local_users: &BTreeMap<String, LocalUser>,
) -> Result<Resolved, Unresolved> {
    Ok(match t {
        // smtpd answers an `:error:` element with its code, refusing the
        // whole expansion (lka_expand, EXPAND_ERROR): the entry delivered
        // nothing, and after the import the address is unknown (5xx).
        Target::Error { text, temporary } => {
            let then = match temporary {
                true => "a temporary error, retried until the message expired",
                false => "a bounce",
            };
            return Err(Unresolved::Bounced(format!(
                "target {text}: smtpd answered every message to it with this error ({then}); \
                 unknown after the import, it is refused permanently (5xx), unless a \
                 catch-all or pattern of its domain takes it: mailtable has no row that \
                 refuses one address, so the check then names it (remove the entry from the \
                 source if that mail should go there)"
            )));
        }
        Target::Unrepresentable { text, why } => return Err(format!("target {text}: {why}").into()),
        // Postfix delivers an address that expands to itself as it is
        // (cleanup_map1n.c): the mailbox. smtpd expands it again, a node
        // of another parent, until its depth limit ([`SourceWalk::follow`]).
        Target::Address(a) if Some(a) == own && postfix => Resolved::SelfBox,
        Target::Address(a) if Some(a) == own => {
            return Err(Unresolved::Bounced(format!(
                "target {a} is its own address: smtpd expands it again until its depth limit \
                 and refused the whole entry (524)"
            )))
        }
        Target::Address(a) => Resolved::Addr(a.clone()),
        Target::DomainAlias(d) if own.is_none() => Resolved::DomainAlias(d.clone()),
        Target::DomainAlias(d) => {
            return Err(
                format!("target @{d}: a whole domain is only a target of a whole domain").into(),
            )
        }
        Target::LocalUser(u) => {
            match local_users.get(u).unwrap_or(&LocalUser::Unknown) {
                LocalUser::Mailbox(a) if Some(a) == own => Resolved::SelfBox,
                LocalUser::Mailbox(a) => Resolved::Final(a.clone()),
                LocalUser::Shared(s) if own.is_some_and(|o| s.contains(o)) => Resolved::SelfBox,
                LocalUser::Shared(s) => {
                    return Err(format!(
                        "local user {u} receives the mail of several mailboxes ({}: {}): which \
                         one is meant cannot be told",
                        s.len(),
                        super::report::first_few(s.iter())
                    )
                    .into());
                }
                LocalUser::Unknown => {
                    return Err(format!(
                        "local user {u}: no login of the sources or the database delivers \
                         to it, so its mailbox address is unknown (import the credentials \
                         too, or write the address; where smtpd's userbase is a table, give \
                         it as smtpd-userinfo: a user it lacks bounced there)"
                    )
                    .into())
                }
                LocalUser::Unplaced(login) => {
                    return Err(format!(
                        "local user {u} is the mailbox of the login {login}, whose address \
                         cannot be told (see that login); --login-domain DOMAIN or --map \
                         {login}=ADDRESS settles it"
                    )
                    .into())
                }
                LocalUser::NotInUserbase => {
                    return Err(Unresolved::Bounced(format!(
                        "local user {u} is not in the userbase given (userinfo): smtpd refused \
                         every message that reached it (550)"
                    )))
                }
                LocalUser::LeftBehind(a) => {
                    return Err(format!(
                        "local user {u} is the mailbox of {a}, which is not imported (see there)"
                    )
                    .into())
                }
                // The source kept its mail in the queue, retrying, until it
                // expired: it never delivered it, as a bounce.
                LocalUser::UserinfoFails => {
                    return Err(Unresolved::Bounced(format!(
                        "local user {u}: its userinfo lookup fails in the userbase given (uid, \
                         gid or home unreadable), so smtpd answered every message that reached \
                         it with a temporary error (451) until it expired; refused at once \
                         after the import"
                    )))
                }
            }
        }
    })
}

/// The rows, in (domain, username) order: mailbox rows from the logins,
/// alias rows from the imported routes (after the mailbox row where a key
/// has both).
///
/// Built as one list sorted once, not a map: a map keyed by a copy of
/// every key, then copied into the plan's list, held the planned rows
/// twice at the peak of a big import.
fn groups(logins: BTreeMap<Address, Login>, routes: &BTreeMap<RouteKey, RouteEntry>) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::with_capacity(logins.len() + routes.len());
    for (a, l) in logins {
        let mut g = Group::new(a.local_shared(), a.domain().shared(), l.origin, 1);
        g.planned.push(Planned {
            mailbox: a.to_string(),
            password: Some(l.hash),
            active: l.active,
            quota: l.quota,
        });
        groups.push(g);
    }
    for (k, r) in routes {
        let Status::Ok(targets) = &r.status else {
            continue;
        };
        let (username, domain) = match k {
            RouteKey::Exact(a) => (a.local_shared(), a.domain()),
            RouteKey::CatchAll(d) => (Arc::from("%"), d),
            _ => continue,
        };
        let mut has = BTreeSet::new();
        let mailboxes: Vec<String> = targets
            .iter()
            .filter_map(|t| match t {
                Resolved::SelfBox => None,
                Resolved::Addr(a) | Resolved::Final(a) => Some(a.to_string()),
                Resolved::DomainAlias(d) => Some(format!("%@{d}")),
            })
            .filter(|m| has.insert(m.clone()))
            .collect();
        if mailboxes.is_empty() {
            continue;
        }
        // Sized for this route's rows: most aliases have one target.
        let mut g = Group::new(username, domain.shared(), r.origin.clone(), mailboxes.len());
        g.planned
            .extend(mailboxes.into_iter().map(|mailbox| Planned {
                mailbox,
                password: None,
                active: true,
                quota: None,
            }));
        groups.push(g);
    }
    // Stable: a key's mailbox group stays before its alias group, which
    // is then taken into it, in place.
    groups.sort_by(|a, b| (a.domain(), a.username()).cmp(&(b.domain(), b.username())));
    groups.dedup_by(|later, first| {
        let same = later.domain == first.domain && later.username == first.username;
        if same {
            first.planned.append(&mut later.planned);
        }
        same
    });
    groups
}

/// Declared domains that would have no row at all (mailtable knows a
/// domain only by its rows).
fn skip_domains_without_rows(
    markers: &[(Domain, Origin)],
    groups: &[Group],
    db: &mut dyn Store,
    skipped: &mut Vec<Finding>,
) -> Result<(), StoreError> {
    let row_domains: BTreeSet<&str> = groups.iter().map(Group::domain).collect();
    let mut seen = BTreeSet::new();
    for (d, at) in markers {
        if row_domains.contains(d.as_str()) || !seen.insert(d.clone()) {
            continue;
        }
        if !db.has_domain(d.as_str())? {
            skipped.push(Finding::about(
                at.clone(),
                d.as_str(),
                "domain with no mailbox or alias to import: mailtable knows a domain only by \
                 its rows (add a user or an alias there)",
            ));
        }
    }
    Ok(())
}

/// Notes where the source's uid, gid or home differ from mailtable's
/// config: the mail store must follow.
fn userinfo_notes(info: &[UserInfo], m: &Merged, config: &Config, notes: &mut Vec<Finding>) {
    // A table-passwd file given as smtpd-passwd and as smtpd-userinfo
    // states each user twice: said once.
    let mut seen = BTreeSet::new();
    for u in info {
        if !seen.insert((&u.user, u.uid, u.gid, &u.home)) {
            continue;
        }
        let addr = if u.user.contains('@') {
            Address::parse(&u.user).ok()
        } else {
            match m.local_users.get(&u.user) {
                Some(LocalUser::Mailbox(a)) => Some(a.clone()),
                _ => None,
            }
        };
        let Some(addr) = addr.filter(|a| m.logins.contains_key(a)) else {
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

/// Every address the sources knew: logins, keys, targets in the source's
/// domains, and a probe for each catch-all (a domain alias has no address
/// of its own to probe). An address given to a bare login by an option,
/// which the source did not know, is new unless a catch-all took its mail.
fn known_addresses(m: &Merged, walk: &SourceWalk) -> BTreeSet<Address> {
    let mut known: BTreeSet<Address> = m
        .logins
        .keys()
        .filter(|a| {
            !m.invented.contains(*a)
                || walk
                    .routes
                    .contains_key(&RouteKey::CatchAll(a.domain().clone()))
        })
        .cloned()
        .collect();
    for (k, r) in &walk.routes {
        let targets = match (&r.status, k) {
            (Status::Ok(targets), _) => targets,
            // Its mail bounced in the source: it must not be delivered now.
            (Status::Bounced(_), RouteKey::Exact(a)) => {
                known.insert(a.clone());
                continue;
            }
            _ => continue,
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
                known.insert(probe_address(d, &walk.routes));
            }
            _ => {}
        }
        for t in targets {
            if let Resolved::Addr(a) | Resolved::Final(a) = t {
                if walk.domains.contains(a.domain()) {
                    known.insert(a.clone());
                }
            }
        }
    }
    // Mailboxes the source refused: mailtable must not deliver them either
    // (a catch-all would, where the source's own entry bounced them).
    known.extend(
        walk.refused
            .iter()
            .filter(|a| walk.domains.contains(a.domain()))
            .cloned(),
    );
    // The twins in a domain alias (`@old -> @new`) of every address of the
    // target domain: the source reached them too, through the alias.
    let twins: Vec<Address> = walk
        .routes
        .iter()
        .filter_map(|(k, r)| match (k, &r.status) {
            (RouteKey::CatchAll(old), Status::Ok(t)) => match t.as_slice() {
                [Resolved::DomainAlias(new)] => Some((old, new)),
                _ => None,
            },
            _ => None,
        })
        .flat_map(|(old, new)| {
            known
                .iter()
                .filter(move |a| a.domain() == new)
                .filter_map(move |a| Address::from_parts(a.local(), old.as_str()).ok())
        })
        .collect();
    known.extend(twins);
    known
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::check::check_database;
    use crate::import::parsed::{LoginName, Route};
    use crate::import::verify::{verify, Verification};
    use crate::import::{passwd_file, smtpd};
    use indicatif::ProgressBar;
    use mailtable_core::store::memory::MemStore;
    use mailtable_core::{PasswordHash, Resolver, Store};

    fn parsed(parts: Vec<Parsed>) -> Parsed {
        let mut all = Parsed::default();
        for p in parts {
            all.absorb(p);
        }
        all
    }

    /// The plan of `parts` with the default config and no login options.
    fn plan_of(parts: Vec<Parsed>, db: &mut MemStore) -> (Plan, Box<dyn Semantics>) {
        plan(
            parsed(parts),
            db,
            &Config::default(),
            &LoginHints::default(),
        )
        .unwrap()
    }

    fn run(parts: Vec<Parsed>, db: &mut MemStore) -> (Plan, Verification) {
        let (p, mut sem) = plan_of(parts, db);
        let checked = check_database(&p, db, &ProgressBar::hidden()).unwrap();
        if p.conflicts.is_empty() && checked.conflicts.is_empty() {
            for g in checked.new_groups(&p) {
                for r in g.rows() {
                    db.insert(&r).unwrap();
                }
            }
        }
        let v = verify(
            &p.known,
            sem.as_mut(),
            &Resolver::default(),
            db,
            &ProgressBar::hidden(),
        )
        .unwrap();
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
    fn a_key_with_a_mailbox_and_aliases_is_one_group_mailbox_first() {
        // m@ keeps its own copy (the mailbox) and sends one to z@; the
        // other keys sort around it, across two domains.
        let aliases = smtpd::parse_aliases(
            "virtuals",
            "m@example.org m, z@elsewhere.example\nb@example.org y@elsewhere.example\n\
             q@b.example y@elsewhere.example\n",
        );
        let cred = smtpd::parse_credentials("credentials", CRED);
        let mut db = MemStore::default();
        let (plan, v) = run(vec![aliases, cred], &mut db);
        assert!(plan.conflicts.is_empty(), "{:?}", plan.conflicts);
        let keys: Vec<String> = plan.groups.iter().map(Group::key).collect();
        assert_eq!(keys, ["q@b.example", "b@example.org", "m@example.org"]);
        let m: Vec<(String, bool)> = plan.groups[2]
            .rows()
            .map(|r| (r.mailbox.clone(), r.is_mailbox()))
            .collect();
        assert_eq!(
            m,
            [
                ("m@example.org".to_string(), true),
                ("z@elsewhere.example".to_string(), false)
            ]
        );
        assert_eq!(plan.groups[2].kind(), RowKind::Mailbox);
        assert_eq!(plan.groups[2].len(), 2);
        assert!(v.differences.is_empty(), "{:?}", v.differences);
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
        // smtpd looks the user root up again as a bare key: the mail went
        // to pi, a user no login delivers to.
        assert!(
            why("postmaster@example.org").contains("local user pi:"),
            "{}",
            why("postmaster@example.org")
        );
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
        let (p, _) = plan_of(vec![cred], &mut db);
        let c = check_database(&p, &mut db, &ProgressBar::hidden()).unwrap();
        assert_eq!((c.new.len(), c.present, c.conflicts.len()), (0, 1, 0));

        let other = smtpd::parse_credentials("credentials", "m@example.org x:$2b$other\n");
        let (p, _) = plan_of(vec![other], &mut db);
        let c = check_database(&p, &mut db, &ProgressBar::hidden()).unwrap();
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

    /// A refused (inactive) mailbox whose self-alias is still active and
    /// forwards: Postfix bounces its own copy and delivers the forward, so
    /// an alias to it reaches the forward; an alias to nothing else but it
    /// bounced and is not imported, and not counted as lost.
    #[test]
    fn refused_mailbox_copies_bounce_the_other_targets_deliver() {
        let a = |s: &str| Address::parse(s).unwrap();
        let route = |key: &str, targets: &[&str], id| Route {
            key: RouteKey::Exact(a(key)),
            targets: targets.iter().map(|t| Target::Address(a(t))).collect(),
            origin: Origin::row("old.db", "aliases", id),
        };
        let mut p = Parsed {
            defines_routes: true,
            aliases_first: true,
            ..Parsed::default()
        };
        p.logins.push(Login {
            name: LoginName::Address(a("alice@x.org")),
            hash: PasswordHash::new("$2b$x"),
            active: true,
            quota: None,
            implied_route: true,
            origin: Origin::row("old.db", "users", 1),
        });
        p.refused = vec![a("carol@x.org"), a("gina@x.org")];
        p.routes
            .push(route("carol@x.org", &["carol@x.org", "c@elsewhere.net"], 1));
        p.routes.push(route(
            "team@x.org",
            &["alice@x.org", "carol@x.org", "gina@x.org"],
            2,
        ));
        p.routes.push(route("gina@x.org", &["gina@x.org"], 3));
        p.routes.push(route("old@x.org", &["gina@x.org"], 4));
        let mut db = MemStore::default();
        let (plan, v) = run(vec![p], &mut db);
        assert!(plan.conflicts.is_empty(), "{:?}", plan.conflicts);
        assert!(plan.lost.is_empty(), "{:?}", plan.lost);
        assert_eq!(
            rows(&db),
            [
                "alice@x.org -> alice@x.org (mailbox)",
                "carol@x.org -> c@elsewhere.net",
                "team@x.org -> alice@x.org",
                "team@x.org -> carol@x.org",
            ]
        );
        let why: Vec<String> = plan.skipped.iter().map(ToString::to_string).collect();
        assert_eq!(why.len(), 3, "{why:?}");
        assert!(why[0].contains("old.db:aliases:2: team@x.org: target gina@x.org"));
        assert!(why[1].contains("aliases:3: gina@x.org: delivers only to its own mailbox"));
        assert!(why[2].contains("aliases:4: old@x.org: every target is refused"));
        assert!(v.differences.is_empty(), "{:?}", v.differences);
        // carol, team, gina, old, alice, c@elsewhere is not ours.
        assert_eq!(v.checked, 5);
    }

    #[test]
    fn sql_self_alias_forward_and_domain_alias() {
        // As the SQL readers give it: Postfix's order, where an address
        // expanding to itself is its mailbox (smtpd's would loop).
        let mut p = Parsed {
            defines_routes: true,
            aliases_first: true,
            ..Parsed::default()
        };
        let login = |a: &str, id| Login {
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
}
