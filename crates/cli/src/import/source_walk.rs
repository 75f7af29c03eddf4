//! Where the SOURCE delivered an address: the lookup order of the software
//! the entries come from, walked over the merged entries, so that
//! [`verify`](super::verify) can hold mailtable's answer to it.
//!
//! The walk: exact key, then the login itself where the source delivers to
//! logins, then smtpd's bare user key, then `@domain`, then `@`
//! (`aliases_virtual_get` in OpenSMTPD `usr.sbin/smtpd/aliases.c`).
//! Postfix-style SQL setups look up every alias, `@domain` included, before
//! the mailboxes (virtual(5)), so there the login comes after the catch-all.
//!
//! The one decision a reader might question: this is a second resolver next
//! to `mailtable_core::Resolver`, and it has to be. Verification compares
//! the source's answer with the core resolver's; computing the source's
//! answer with the core resolver would compare it with itself and prove
//! nothing. Precisely, the core resolver cannot express:
//!
//! - Postfix's order, where a catch-all takes the mail of a mailbox without
//!   an alias of its own (mailtable: a mailbox always beats a catch-all);
//! - a login the source does not deliver to (smtpd credentials without a
//!   route in a routed import): a mailtable mailbox row always receives;
//! - a local user name as a target, which smtpd delivers to its userbase
//!   without looking it up again ([`Resolved::Final`]), where mailtable
//!   would resolve the address once more;
//! - entries that exist in the source but are not imported (a bare key, the
//!   global `@`, a route with a pipe): the source still reaches them, so an
//!   address through them is "not comparable", not "not found";
//! - a domain alias whose target has no entry, reached through another
//!   entry: the source falls through to the rest of its walk, mailtable
//!   reports a dangling target;
//! - a mailbox the source refuses (PostfixAdmin's inactive mailbox: its
//!   alias maps may still send mail there, its mailbox map does not list
//!   it): Postfix accepts the alias and bounces that one copy, the other
//!   targets still get theirs ([`SourceWalk::refused`]).
//!
//! It runs over in-memory maps, so it costs nothing per lookup beyond a
//! B-tree search.

use super::parsed::{Route, RouteKey};
use super::verify::{Expect, Semantics};
use mailtable_core::{Address, Domain, StoreError};
use std::collections::{BTreeMap, BTreeSet};

/// smtpd's own `EXPAND_DEPTH` (`usr.sbin/smtpd/smtpd.h`): lka_expand
/// fails the whole expansion (524) at a node this deep, the recipient
/// being depth 0 and the delivery user name a node of its own.
pub const SMTPD_EXPAND_DEPTH: usize = 10;

/// Postfix's `virtual_alias_recursion_limit` default (postconf(5)).
const POSTFIX_RECURSION_LIMIT: usize = 1000;

/// A target after local user names are mapped.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resolved {
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

/// Whether a route comes over, and as what.
#[derive(Debug, Clone)]
pub enum Status {
    /// Imported, with these targets.
    Ok(Vec<Resolved>),
    /// Not imported, and why.
    Skipped(String),
    /// Not imported because the source delivered nothing through it: every
    /// target is a mailbox it refuses. Its mail bounced there; the walk
    /// gives nothing for it, which is no error.
    Bounced(String),
}

/// What the source's expansion of one address reached.
#[derive(Debug, Default)]
pub struct Reach {
    /// The final destinations.
    pub to: BTreeSet<Address>,
    /// The first address met again while it was being expanded (an
    /// alias loop), with smtpd; the expansion then bounced
    /// ([`SourceWalk::follow`]).
    pub looped: Option<Address>,
    /// While expanding: a copy bounced (a refused mailbox, smtpd's depth
    /// limit). With smtpd the whole expansion then failed: what is
    /// returned is empty, which is what callers read as a bounce.
    pub bounced: bool,
}

impl Reach {
    fn mailbox(a: &Address) -> Reach {
        Reach {
            to: BTreeSet::from([a.clone()]),
            ..Reach::default()
        }
    }
}

/// A route of the sources and its status.
#[derive(Debug, Clone)]
pub struct RouteEntry {
    /// The route as the source gives it.
    pub route: Route,
    /// What becomes of it.
    pub status: Status,
}

/// The merged sources, as the source's lookup walk sees them.
#[derive(Debug, Default)]
pub struct SourceWalk {
    /// Logins the source delivers to without a route.
    pub deliverable: BTreeSet<Address>,
    /// Postfix order: aliases and catch-alls before the mailboxes.
    pub aliases_first: bool,
    /// The tag delimiter: `user+tag@dom` not found as it is goes on as
    /// `user@dom`. `None`: no tags.
    pub delimiter: Option<char>,
    /// Logins of the source that do not come over, with why: the source
    /// delivered them, so an address reaching one is not comparable.
    pub not_imported: BTreeMap<Address, String>,
    /// Every route, one per key.
    pub routes: BTreeMap<RouteKey, RouteEntry>,
    /// The source's domains.
    pub domains: BTreeSet<Domain>,
    /// Mailboxes the source refuses (inactive): a copy sent there bounced.
    pub refused: BTreeSet<Address>,
    /// Inactive mailboxes the admin chose to import disabled
    /// (`--inactive disabled`): after the import they receive their own
    /// mail even where the source sent it to a catch-all, and the check
    /// expects that.
    pub accepted_inactive: BTreeSet<Address>,
}

impl SourceWalk {
    fn blocked(r: &RouteEntry) -> String {
        match &r.status {
            Status::Skipped(why) => format!(
                "{} ({}) is not imported: {why}",
                r.route.key, r.route.origin
            ),
            Status::Ok(_) | Status::Bounced(_) => format!("{} ({})", r.route.key, r.route.origin),
        }
    }

    /// Whether the source bounced every copy of mail to `a` (a refused
    /// mailbox without an entry that delivers elsewhere).
    pub fn bounces(&self, a: &Address) -> bool {
        match self.reach(a) {
            Ok(Some(s)) => s.to.is_empty(),
            Ok(None) => self.refused.contains(a),
            Err(_) => false,
        }
    }

    /// The source's walk for `a` on its own (`a` the recipient).
    pub fn reach(&self, a: &Address) -> Result<Option<Reach>, String> {
        self.lookup(a, &mut vec![a.clone()])
    }

    /// The source's walk for one address: `Ok(None)` when nothing matches,
    /// `Err` when it runs into an entry that is not imported.
    fn lookup(&self, addr: &Address, path: &mut Vec<Address>) -> Result<Option<Reach>, String> {
        if let Some(r) = self.routes.get(&RouteKey::Exact(addr.clone())) {
            return self.expand(r, addr, path).map(Some);
        }
        // smtpd asks `user+tag@dom`, then `user@dom` (aliases_virtual_get
        // in aliases.c), Dovecot's LMTP delivers `user+tag` to `user`,
        // Postfix with a recipient_delimiter looks up `user@dom` next: the
        // rest of the walk is the address's without the tag. (A bare
        // `user+tag` key, which smtpd asks before `user`, is never imported
        // either way.)
        // A login or mailbox of the full address (`john-doe@` with `-` as
        // the delimiter, `a+b@`) is not a tagged address: mailtable's step
        // 1 finds its own row too.
        let own_entry = self.deliverable.contains(addr)
            || self.accepted_inactive.contains(addr)
            || self.refused.contains(addr);
        if let Some(base) = self.delimiter.map(|d| addr.without_tag(d)) {
            if base != *addr && !own_entry {
                return self.lookup(&base, path);
            }
        }
        if let Some(why) = self.not_imported.get(addr) {
            return Err(format!("{addr} is not imported: {why}"));
        }
        if self.accepted_inactive.contains(addr) {
            return Ok(Some(Reach::mailbox(addr)));
        }
        let mailbox = self.deliverable.contains(addr);
        if mailbox && !self.aliases_first {
            return Ok(Some(Reach::mailbox(addr)));
        }
        if let Some(r) = self.routes.get(&RouteKey::Bare(addr.local().to_string())) {
            return Err(Self::blocked(r));
        }
        if let Some(r) = self.routes.get(&RouteKey::CatchAll(addr.domain().clone())) {
            return self.expand(r, addr, path).map(Some);
        }
        if mailbox {
            return Ok(Some(Reach::mailbox(addr)));
        }
        if let Some(r) = self.routes.get(&RouteKey::Global) {
            return Err(Self::blocked(r));
        }
        Ok(None)
    }

    /// What route `r` reaches for `addr`; `path` holds the addresses being
    /// expanded, for loop detection.
    pub fn expand(
        &self,
        r: &RouteEntry,
        addr: &Address,
        path: &mut Vec<Address>,
    ) -> Result<Reach, String> {
        let bounce = Reach::default();
        let targets = match &r.status {
            Status::Ok(t) => t,
            Status::Bounced(_) => return Ok(bounce),
            Status::Skipped(_) => return Err(Self::blocked(r)),
        };
        // The targets of the address last on `path` are nodes of depth
        // `path.len()` (the recipient is first, depth 0): at smtpd's limit
        // the whole expansion fails, a bounce.
        if !self.aliases_first && path.len() >= SMTPD_EXPAND_DEPTH && !targets.is_empty() {
            return Ok(bounce);
        }
        let mut out = Reach::default();
        for t in targets {
            match t {
                // The key's own mailbox, unless the source refuses it:
                // then that copy bounced.
                Resolved::SelfBox if self.refused.contains(addr) => {}
                Resolved::SelfBox => {
                    out.to.insert(addr.clone());
                }
                Resolved::Final(a) => {
                    out.to.insert(a.clone());
                }
                // Postfix ends the recursion where an address appears in
                // its own expansion ("The recursion terminates when the
                // left-hand side appears in its own expansion",
                // src/cleanup/cleanup_map1n.c) and delivers it as it is: a
                // catch-all to one of its domain's mailboxes delivers that
                // mailbox's own mail to it, not a loop; to an address that
                // is no mailbox, that copy bounces (virtual(8): user
                // unknown).
                Resolved::Addr(a) if self.aliases_first && a == addr => {
                    if self.deliverable.contains(a) {
                        out.to.insert(a.clone());
                    } else {
                        out.bounced = true;
                    }
                }
                Resolved::Addr(a) => self.follow(a, addr, path, &mut out, false)?,
                Resolved::DomainAlias(d) => {
                    let a =
                        Address::from_parts(addr.local(), d.as_str()).map_err(|e| e.to_string())?;
                    self.follow(&a, addr, path, &mut out, true)?;
                }
            }
        }
        // smtpd fails the whole expansion on a node that fails (lka_expand
        // in usr.sbin/smtpd/lka_session.c): a target that bounced, past
        // the depth limit too, bounces the entry. Postfix bounces that
        // copy only.
        if out.bounced && !self.aliases_first {
            return Ok(Reach {
                looped: out.looped,
                ..bounce
            });
        }
        Ok(out)
    }

    /// Look `a` up again (a target of `from`) and add what it reaches to
    /// `out`, noting there when `a` is already being expanded (a loop) and
    /// when its copy bounced. `soft`: finding nothing is fine (a domain
    /// alias falls through), otherwise it is a bounce in the source.
    fn follow(
        &self,
        a: &Address,
        from: &Address,
        path: &mut Vec<Address>,
        out: &mut Reach,
        soft: bool,
    ) -> Result<(), String> {
        if !self.domains.contains(a.domain()) {
            out.to.insert(a.clone());
            return Ok(());
        }
        if path.contains(a) {
            // Postfix expands on to `virtual_alias_recursion_limit` and
            // then defers the whole message ("unreasonable ... map
            // nesting", cleanup_map1n in src/cleanup/cleanup_map1n.c);
            // only an address expanding into itself is kept, above.
            if self.aliases_first {
                return Err(format!(
                    "{from} -> {a} is an alias loop: Postfix defers its mail (4.6.0 Alias \
                     expansion error) until it expires"
                ));
            }
            // smtpd tells expand nodes apart by their parent address
            // (expand_cmp in usr.sbin/smtpd/expand.c): `a` met again under
            // another parent is a new node, so the loop is expanded again
            // until EXPAND_DEPTH and the whole expansion fails (524, on
            // smtpd 6.8 with a file table, a way out of the loop or not).
            out.looped.get_or_insert_with(|| a.clone());
            out.bounced = true;
            return Ok(());
        }
        if self.aliases_first && path.len() > POSTFIX_RECURSION_LIMIT {
            return Err(format!(
                "alias chain deeper than {POSTFIX_RECURSION_LIMIT} at {a}"
            ));
        }
        path.push(a.clone());
        let r = self.lookup(a, path);
        path.pop();
        match r? {
            Some(s) if !s.to.is_empty() => out.to.extend(s.to),
            _ if soft => {}
            // A mailbox the source refuses, or an entry all of whose targets
            // are: Postfix bounces this copy and delivers the others.
            Some(s) => {
                out.looped = out.looped.take().or(s.looped);
                out.bounced = true;
            }
            None if self.refused.contains(a) => out.bounced = true,
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

impl Semantics for SourceWalk {
    fn expected(&mut self, addr: &Address) -> Result<Expect, StoreError> {
        if !self.domains.contains(addr.domain()) {
            return Ok(Expect::UnknownDomain);
        }
        Ok(match self.reach(addr) {
            Err(why) => Expect::Blocked(why),
            Ok(Some(s)) if !s.to.is_empty() => Expect::Found(s.to),
            Ok(_) => Expect::NotFound,
        })
    }
}
