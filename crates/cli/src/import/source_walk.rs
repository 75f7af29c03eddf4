//! Where the SOURCE delivered an address: the lookup order of the software
//! the entries come from, walked over the merged entries, so that
//! [`verify`](super::verify) can hold mailtable's answer to it.
//!
//! The walk: exact key, then the login itself where the source delivers to
//! logins, then smtpd's bare user key, then `@domain`, then `@`
//! (`aliases_virtual_get` in OpenSMTPD `usr.sbin/smtpd/aliases.c`).
//! Postfix-style SQL setups look up every alias, `@domain` included, before
//! the mailboxes (virtual(5)), so there the login comes after the catch-all;
//! and Postfix expands a recipient its own way, a list with marks rather
//! than a tree with paths ([`SourceWalk::postfix_reach`]).
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

use super::parsed::{Origin, RouteKey};
use super::verify::{Expect, Semantics};
use mailtable_core::{Address, Domain, StoreError};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};

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
#[derive(Debug, Default, Clone)]
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

/// An entry of [`SourceWalk::routes`] with its key, which the entry does
/// not hold, for the messages that name it.
type Found<'a> = (&'a RouteKey, &'a RouteEntry);

/// What one lookup of Postfix's alias maps gives for an address.
enum PostfixStep<'a> {
    /// An entry matched.
    Entry(Found<'a>),
    /// The address without its tag is looked up instead.
    Untagged(Address),
    /// No entry: the address is delivered as it is.
    Final,
}

/// A route of the sources and its status, under its key in
/// [`SourceWalk::routes`]. The source's targets live on in the status
/// (resolved); a big source has half a million routes, so nothing else of
/// the [`Route`](super::parsed::Route) is kept.
#[derive(Debug, Clone)]
pub struct RouteEntry {
    /// Where the source gives it.
    pub origin: Origin,
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
    /// Only the SQL readers give them, so only the Postfix-order walk
    /// meets them.
    pub refused: BTreeSet<Address>,
    /// Inactive mailboxes the admin chose to import disabled
    /// (`--inactive disabled`): after the import they receive their own
    /// mail even where the source sent it to a catch-all, and the check
    /// expects that.
    pub accepted_inactive: BTreeSet<Address>,
    /// Lookups already made in the running walk ([`Memo`]); empty between
    /// walks.
    pub(super) memo: RefCell<Memo>,
}

/// The smtpd-order lookups of one walk (one [`SourceWalk::reach`] or
/// [`SourceWalk::expand`] from outside), by address and depth: an address
/// reached by several ways (aliases that fan out into each other, level
/// after level) is looked up once, not once per way, which was
/// exponential: a 56-line source of 6-wide levels took about 19 s.
///
/// smtpd keeps such nodes apart (`expand_cmp` in
/// `usr.sbin/smtpd/expand.c` compares their parents), so a lookup is kept
/// only when its result cannot depend on the way, and is used again only
/// at the same depth (smtpd's depth limit depends on it):
/// - it met no address on its path (no loop). Without a depth limit met
///   either, everything it reaches was looked up, with no way back to it,
///   so with no way to any address above it on any path (that would be a
///   loop through it): the same lookup finds the same under any path;
/// - where smtpd's depth limit stopped it, what lies beyond was not
///   looked at, so an address it did look up may be above it on another
///   path (a loop smtpd would meet there first). Such a lookup keeps the
///   addresses it looked up, and is used again only where none of them is
///   on the path.
#[derive(Debug, Default)]
pub(super) struct Memo {
    /// A walk is running: lookups are kept.
    on: bool,
    /// Results by (address, path length at its lookup).
    known: HashMap<(Address, usize), Known>,
    /// Addresses met again on their own path, so far in this walk.
    loops: usize,
    /// Expansions stopped by smtpd's depth limit, so far in this walk.
    cuts: usize,
    /// The addresses looked up so far in this walk, in order (those of a
    /// kept lookup used again that met the depth limit included).
    trail: Vec<Address>,
}

/// A kept lookup.
#[derive(Debug)]
struct Known {
    /// Its result.
    reach: Option<Reach>,
    /// Where smtpd's depth limit stopped it: the addresses it looked up
    /// below its own, none of which may be on the path where it is used.
    cut_below: Option<Vec<Address>>,
}

impl SourceWalk {
    /// Runs `walk` with the memo on, unless a walk is running already
    /// (then it is part of that one); the memo is emptied at the end.
    fn memoized<T>(&self, walk: impl FnOnce() -> T) -> T {
        if self.memo.borrow().on {
            return walk();
        }
        self.memo.borrow_mut().on = true;
        let out = walk();
        // Emptied, its room kept: a big import walks a million times.
        let mut m = self.memo.borrow_mut();
        m.known.clear();
        m.trail.clear();
        (m.on, m.loops, m.cuts) = (false, 0, 0);
        out
    }

    /// The entry of `key`, with its key.
    fn entry(&self, key: RouteKey) -> Option<Found<'_>> {
        self.routes.get_key_value(&key)
    }

    fn blocked((k, r): Found<'_>) -> String {
        match &r.status {
            Status::Skipped(why) => format!("{k} ({}) is not imported: {why}", r.origin),
            Status::Ok(_) | Status::Bounced(_) => format!("{k} ({})", r.origin),
        }
    }

    /// Whether the source bounced every copy of mail to `a` (a refused
    /// mailbox without an entry that delivers elsewhere; in Postfix order
    /// also an address of its domains that nothing answers for, which
    /// virtual(8) bounces as user unknown).
    pub fn bounces(&self, a: &Address) -> bool {
        match self.reach(a) {
            Ok(Some(s)) => s.to.is_empty(),
            Ok(None) => self.refused.contains(a) || self.aliases_first,
            Err(_) => false,
        }
    }

    /// The source's walk for `a` on its own (`a` the recipient).
    pub fn reach(&self, a: &Address) -> Result<Option<Reach>, String> {
        match self.aliases_first {
            true => self.postfix_reach(a),
            false => self.memoized(|| self.lookup(a, &mut vec![a.clone()])),
        }
    }

    /// One lookup of Postfix's virtual alias maps for `a`, in the order
    /// of a Postfix-style SQL setup: the address, without its tag, then
    /// `@domain` (virtual(5)).
    fn postfix_step(&self, a: &Address) -> Result<PostfixStep<'_>, String> {
        if let Some(e) = self.entry(RouteKey::Exact(a.clone())) {
            return Ok(PostfixStep::Entry(e));
        }
        // Postfix tries `user@domain` next, whatever else knows the full
        // address: an inactive mailbox `dev+old@` without an alias entry
        // of its own is rewritten by `dev@`'s (virtual(5), "ADDRESS
        // EXTENSION"). A login of the full address never gets here: smtpd
        // could not deliver it, so it is left behind
        // (`drop_logins_smtpd_cannot_deliver` in plan.rs).
        if let Some(base) = self.delimiter.map(|d| a.without_tag(d)) {
            if base != *a {
                return Ok(PostfixStep::Untagged(base));
            }
        }
        if let Some(why) = self.not_imported.get(a) {
            return Err(format!("{a} is not imported: {why}"));
        }
        if self.accepted_inactive.contains(a) {
            return Ok(PostfixStep::Final);
        }
        if let Some(e) = self.entry(RouteKey::Bare(a.local().to_string())) {
            return Err(Self::blocked(e));
        }
        if let Some(e) = self.entry(RouteKey::CatchAll(a.domain().clone())) {
            return Ok(PostfixStep::Entry(e));
        }
        if !self.deliverable.contains(a) {
            if let Some(e) = self.entry(RouteKey::Global) {
                return Err(Self::blocked(e));
            }
        }
        Ok(PostfixStep::Final)
    }

    /// Whether `a` has nothing at all in the sources: no entry, no mailbox.
    fn postfix_unknown(&self, a: &Address) -> Result<bool, String> {
        Ok(matches!(self.postfix_step(a)?, PostfixStep::Final)
            && !self.deliverable.contains(a)
            && !self.accepted_inactive.contains(a))
    }

    /// Postfix's expansion of one recipient, step for step as
    /// `cleanup_map1n_internal` (src/cleanup/cleanup_map1n.c) does it: a
    /// list of addresses, starting with the recipient; each is looked up
    /// again and again, replaced by the first address of the result and
    /// the others appended to the list, until a lookup finds nothing or
    /// the address is one that has expanded into itself before (anywhere
    /// in this recipient's expansion: `been_here_fixed`, marked when a
    /// result names the address looked up). So `a -> a, b` and
    /// `b -> b, a` deliver to both, while `a -> b`, `b -> a` goes round
    /// until `virtual_alias_recursion_limit` and the message is deferred.
    /// What is left is delivered as it is: a mailbox, a remote address, or
    /// a copy that bounces (user unknown, an inactive mailbox).
    fn postfix_reach(&self, recipient: &Address) -> Result<Option<Reach>, String> {
        // Each address of the list, with the address it came from (for
        // the report); `None` once its copy bounced.
        let mut list: Vec<Option<(Address, Address)>> =
            vec![Some((recipient.clone(), recipient.clone()))];
        let mut been_here: BTreeSet<Address> = BTreeSet::new();
        let mut matched = false;
        let mut out = Reach::default();
        let mut i = 0;
        while i < list.len() {
            // The states this slot went through: the lookups depend on the
            // address and on `been_here`, which only grows, so a state met
            // twice repeats forever (Postfix: until the recursion limit).
            let mut states: BTreeSet<(Address, usize)> = BTreeSet::new();
            while let Some((cur, from)) = list[i].clone() {
                if been_here.contains(&cur) {
                    break;
                }
                if !states.insert((cur.clone(), been_here.len())) {
                    return Err(format!(
                        "{from} -> {cur} is an alias loop: Postfix defers its mail (4.6.0 \
                         Alias expansion error) until it expires"
                    ));
                }
                // The lookup of `cur` is this slot's `states.len()`th:
                // Postfix defers before the one numbered past its limit
                // (`count >= var_virt_recur_limit`, counted from 0).
                if states.len() > POSTFIX_RECURSION_LIMIT {
                    return Err(format!(
                        "{recipient}: alias chain deeper than {POSTFIX_RECURSION_LIMIT} at \
                         {cur}: Postfix defers its mail (4.6.0 Alias expansion error) until it \
                         expires"
                    ));
                }
                let (k, r) = match self.postfix_step(&cur)? {
                    PostfixStep::Final => break,
                    PostfixStep::Untagged(base) => {
                        list[i] = Some((base, from));
                        continue;
                    }
                    PostfixStep::Entry(e) => e,
                };
                let targets = match &r.status {
                    Status::Ok(t) => t,
                    Status::Bounced(_) => {
                        matched = true;
                        out.bounced = true;
                        list[i] = None;
                        break;
                    }
                    Status::Skipped(_) => return Err(Self::blocked((k, r))),
                };
                // A domain alias whose address has no entry there does not
                // match: the lookup falls through (the alias-domain maps
                // join on the target's own entry).
                if let [Resolved::DomainAlias(d)] = targets.as_slice() {
                    let there =
                        Address::from_parts(cur.local(), d.as_str()).map_err(|e| e.to_string())?;
                    if self.postfix_unknown(&there)? {
                        break;
                    }
                }
                matched = true;
                let mut result = Vec::with_capacity(targets.len());
                for t in targets {
                    let a = match t {
                        Resolved::SelfBox => cur.clone(),
                        Resolved::Addr(a) | Resolved::Final(a) => a.clone(),
                        Resolved::DomainAlias(d) => Address::from_parts(cur.local(), d.as_str())
                            .map_err(|e| e.to_string())?,
                    };
                    result.push(a);
                }
                if result.contains(&cur) {
                    been_here.insert(cur.clone());
                }
                let mut result = result.into_iter();
                list[i] = result.next().map(|first| (first, cur.clone()));
                list.extend(result.map(|a| Some((a, cur.clone()))));
            }
            i += 1;
        }
        for (a, _) in list.into_iter().flatten() {
            if !self.domains.contains(a.domain())
                || self.deliverable.contains(&a)
                || self.accepted_inactive.contains(&a)
            {
                out.to.insert(a);
            } else if self.refused.contains(&a) || been_here.contains(&a) {
                out.bounced = true;
            } else if !matched {
                // The recipient itself, which nothing matched.
                return Ok(None);
            } else {
                // A target of ours that is no mailbox and matches nothing
                // (a deleted user still on a list): Postfix delivers it as
                // it is and virtual(8) bounces that copy (user unknown);
                // the other targets get theirs.
                out.bounced = true;
            }
        }
        Ok(Some(out))
    }

    /// smtpd's walk for one address: `Ok(None)` when nothing matches,
    /// `Err` when it runs into an entry that is not imported. (Postfix
    /// order: [`SourceWalk::postfix_reach`].)
    fn lookup(&self, addr: &Address, path: &mut Vec<Address>) -> Result<Option<Reach>, String> {
        let key = (addr.clone(), path.len());
        let before = {
            let mut m = self.memo.borrow_mut();
            if !m.on {
                return self.lookup_anew(addr, path);
            }
            if let Some(known) = m.known.get(&key) {
                match &known.cut_below {
                    None => return Ok(known.reach.clone()),
                    Some(below) if !below.iter().any(|a| path.contains(a)) => {
                        let (reach, below) = (known.reach.clone(), below.clone());
                        // The lookups around this one met the limit too.
                        m.cuts += 1;
                        m.trail.push(addr.clone());
                        m.trail.extend(below);
                        return Ok(reach);
                    }
                    Some(_) => {}
                }
            }
            m.trail.push(addr.clone());
            (m.loops, m.cuts, m.trail.len())
        };
        let found = self.lookup_anew(addr, path);
        // The walk's own first address (path length 1) is not looked up
        // again at that depth: not kept.
        if let (Ok(reach), true) = (&found, path.len() > 1) {
            let mut m = self.memo.borrow_mut();
            if m.loops == before.0 {
                let cut_below = (m.cuts != before.1).then(|| {
                    let mut below = m.trail[before.2..].to_vec();
                    below.sort();
                    below.dedup();
                    below
                });
                m.known.insert(
                    key,
                    Known {
                        reach: reach.clone(),
                        cut_below,
                    },
                );
            }
        }
        found
    }

    /// [`SourceWalk::lookup`] without the memo.
    fn lookup_anew(
        &self,
        addr: &Address,
        path: &mut Vec<Address>,
    ) -> Result<Option<Reach>, String> {
        if let Some(e) = self.entry(RouteKey::Exact(addr.clone())) {
            return self.expand_anew(e, addr, path).map(Some);
        }
        // smtpd asks `user+tag@dom`, then `user@dom` (aliases_virtual_get
        // in aliases.c), Dovecot's LMTP delivers `user+tag` to `user`,
        // Postfix with a recipient_delimiter looks up `user@dom` next: the
        // rest of the walk is the address's without the tag. (A bare
        // `user+tag` key, which smtpd asks before `user`, is never imported
        // either way.)
        // smtpd asks its alias table only, so a login of the full address
        // (`john-doe@` with `-` as the delimiter) would not stop it either;
        // such logins are left behind anyway (smtpd cuts their delivery
        // user name at the delimiter).
        if let Some(base) = self.delimiter.map(|d| addr.without_tag(d)) {
            if base != *addr {
                return self.lookup(&base, path);
            }
        }
        if let Some(why) = self.not_imported.get(addr) {
            return Err(format!("{addr} is not imported: {why}"));
        }
        if self.accepted_inactive.contains(addr) {
            return Ok(Some(Reach::mailbox(addr)));
        }
        if self.deliverable.contains(addr) {
            return Ok(Some(Reach::mailbox(addr)));
        }
        if let Some(e) = self.entry(RouteKey::Bare(addr.local().to_string())) {
            return Err(Self::blocked(e));
        }
        if let Some(e) = self.entry(RouteKey::CatchAll(addr.domain().clone())) {
            return self.expand_anew(e, addr, path).map(Some);
        }
        if let Some(e) = self.entry(RouteKey::Global) {
            return Err(Self::blocked(e));
        }
        Ok(None)
    }

    /// What route `r` (under key `k`) reaches for `addr`; `path` holds the
    /// addresses being expanded, for loop detection.
    pub fn expand(
        &self,
        found: Found<'_>,
        addr: &Address,
        path: &mut Vec<Address>,
    ) -> Result<Reach, String> {
        self.memoized(|| self.expand_anew(found, addr, path))
    }

    /// [`SourceWalk::expand`] within a running walk.
    fn expand_anew(
        &self,
        (k, r): Found<'_>,
        addr: &Address,
        path: &mut Vec<Address>,
    ) -> Result<Reach, String> {
        // `r` is the entry Postfix's first lookup of `addr` finds: its
        // expansion is the recipient's.
        if self.aliases_first {
            return Ok(self.postfix_reach(addr)?.unwrap_or_default());
        }
        let bounce = Reach::default();
        let targets = match &r.status {
            Status::Ok(t) => t,
            Status::Bounced(_) => return Ok(bounce),
            Status::Skipped(_) => return Err(Self::blocked((k, r))),
        };
        // The targets of the address last on `path` are nodes of depth
        // `path.len()` (the recipient is first, depth 0): at smtpd's limit
        // the whole expansion fails, a bounce.
        if path.len() >= SMTPD_EXPAND_DEPTH && !targets.is_empty() {
            self.memo.borrow_mut().cuts += 1;
            return Ok(bounce);
        }
        let mut out = Reach::default();
        for t in targets {
            match t {
                // `refused` is empty here: only the SQL readers fill it,
                // and their sources walk in Postfix order.
                Resolved::SelfBox => {
                    out.to.insert(addr.clone());
                }
                Resolved::Final(a) => {
                    out.to.insert(a.clone());
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
        // the depth limit too, bounces the entry.
        if out.bounced {
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
            // smtpd tells expand nodes apart by their parent address
            // (expand_cmp in usr.sbin/smtpd/expand.c): `a` met again under
            // another parent is a new node, so the loop is expanded again
            // until EXPAND_DEPTH and the whole expansion fails (524, on
            // smtpd 6.8 with a file table, a way out of the loop or not).
            out.looped.get_or_insert_with(|| a.clone());
            out.bounced = true;
            self.memo.borrow_mut().loops += 1;
            return Ok(());
        }
        path.push(a.clone());
        let r = self.lookup(a, path);
        path.pop();
        match r? {
            Some(s) if !s.to.is_empty() => out.to.extend(s.to),
            _ if soft => {}
            // An entry all of whose targets bounced.
            Some(s) => {
                out.looped = out.looped.take().or(s.looped);
                out.bounced = true;
            }
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
    /// smtpd order is smtpd's; Postfix order (the SQL sources) is
    /// Postfix's, which delivers an alias of any length.
    fn under_smtpd_limits(&self) -> bool {
        !self.aliases_first
    }

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
