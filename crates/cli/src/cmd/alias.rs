//! `mailtable alias ...`: aliases, patterns, catch-alls and domain aliases
//! (rows without a password).
//!
//! The one decision a reader might question: `alias add` inserts the rows
//! and then resolves, inside the same transaction, the address it changed
//! (or, for a wildcard, each concrete target and every address of its
//! domain that other rows name and that it may take over), and rolls back
//! on a loop or a
//! target in our domains that does not exist. Checking on the database as
//! it would be is the only way to catch a loop through rows already present;
//! refusing there keeps smtpd from tempfailing mail to the new alias.

use super::guard;
use crate::args::{AliasCommand, AliasListArgs};
use crate::ctx::Ctx;
use crate::error::CliError;
use crate::output::say;
use mailtable_core::exit::Exit;
use mailtable_core::store::{Access, Delete};
use mailtable_core::{
    Address, AddressPattern, Domain, Outcome, ResolveError, Resolver, Row, Store,
};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

/// `mailtable alias ...`.
pub(super) fn run(ctx: &Ctx, cmd: AliasCommand) -> Result<Exit, CliError> {
    match cmd {
        AliasCommand::Add {
            pattern,
            targets,
            force,
        } => add(ctx, &pattern, &targets, force),
        AliasCommand::Del {
            pattern,
            targets,
            force,
        } => del(ctx, &pattern, &targets, force),
        AliasCommand::List(a) => list(ctx, &a),
    }
}

/// Validate a target for `pattern`: an address, or, when the pattern has a
/// `%`, an address with one `%` that is replaced by what it matched.
fn parse_target(pattern: &AddressPattern, text: &str) -> Result<String, CliError> {
    let n = text.matches('%').count();
    if n == 0 {
        return Ok(Address::parse(text)?.to_string());
    }
    if !pattern.local.is_wildcard() {
        return Err(CliError::usage(format!(
            "invalid target {text:?}: % in a target needs a pattern with % on the left"
        )));
    }
    if n > 1 || !text.split('@').next().unwrap_or_default().contains('%') {
        return Err(CliError::usage(format!(
            "invalid target {text:?}: at most one %, in the local part"
        )));
    }
    // Stored in the normal form of every other target (the local part
    // lower-cased, the domain in IDNA ASCII form without a trailing dot):
    // `%@MÜNCHEN.de.` as typed would be a row doctor calls hand-written,
    // and one `alias del` with the normal spelling could not find.
    let invalid = |e: mailtable_core::AddressError| {
        CliError::usage(format!("invalid target {text:?}: {}", e.reason()))
    };
    let (local, domain) = text.rsplit_once('@').ok_or_else(|| {
        CliError::usage(format!("invalid target {text:?}: expected local@domain"))
    })?;
    let domain = Domain::parse(domain).map_err(invalid)?;
    // An address once the % is filled in.
    Address::from_parts(&local.replace('%', "x"), domain.as_str()).map_err(invalid)?;
    Ok(format!("{}@{domain}", local.to_ascii_lowercase()))
}

/// The targets, each once (in the order given): a target named twice is
/// one row, as adding it again later is refused. An argument may be a
/// comma-separated list, as an smtpd aliases(5) value is written
/// (`a@x.org, b@y.org`): no address holds a comma, so the split is never
/// ambiguous.
fn parse_targets(pattern: &AddressPattern, texts: &[String]) -> Result<Vec<String>, CliError> {
    let mut out: Vec<String> = Vec::new();
    for arg in texts {
        let pieces: Vec<&str> = arg.split(',').map(str::trim).collect();
        // Without a comma the argument is one target, whose own error
        // says what is wrong with it.
        if pieces.len() > 1 && pieces.iter().any(|p| p.is_empty()) {
            return Err(CliError::usage(format!(
                "invalid target list {arg:?}: an empty target between commas"
            )));
        }
        for piece in pieces {
            // `'a@x.org b@y.org'`, one quoted argument: the address parser
            // would blame the second `@`; the blank is what is wrong.
            if piece.contains(char::is_whitespace) {
                return Err(CliError::usage(format!(
                    "invalid target {piece:?}: a target holds no blank; give several as \
                     separate arguments or separated by commas"
                )));
            }
            let t = parse_target(pattern, piece)?;
            if !out.contains(&t) {
                out.push(t);
            }
        }
    }
    Ok(out)
}

/// The stored texts of `p`'s alias rows whose targets are `targets`
/// once normalised as `alias add` writes them: a target written by hand
/// (`HUGO@Barrera.io`, a Unicode domain) is removed by the spelling
/// `alias add` would have stored, as `doctor` advises. A row whose target
/// does not parse is matched by its text only.
fn stored_targets(
    s: &mut dyn Store,
    p: &AddressPattern,
    targets: &[String],
) -> Result<Vec<String>, CliError> {
    let local = p.local.to_string();
    let rows = match p.as_address() {
        Some(a) => s.exact(a.local(), a.domain().as_str())?,
        None => s.wildcards(p.domain.as_str())?,
    };
    let mut out: Vec<String> = targets.to_vec();
    let mut named = vec![false; targets.len()];
    for r in rows
        .iter()
        .filter(|r| !r.is_mailbox() && r.username == local)
    {
        let Some(i) = parse_target(p, &r.mailbox)
            .ok()
            .and_then(|n| targets.iter().position(|t| *t == n))
        else {
            continue;
        };
        named[i] = true;
        if !out.contains(&r.mailbox) {
            out.push(r.mailbox.clone());
        }
    }
    // All or nothing, as everywhere: a mistyped target in a list must not
    // pass because another one was right.
    let missing: Vec<&str> = targets
        .iter()
        .zip(&named)
        .filter(|(_, found)| !**found)
        .map(|(t, _)| t.as_str())
        .collect();
    if !missing.is_empty() && missing.len() < targets.len() {
        return Err(CliError::not_found(format!(
            "{} {} not a target of {p}; nothing was removed",
            missing.join(", "),
            if missing.len() == 1 { "is" } else { "are" }
        )));
    }
    Ok(out)
}

fn add(ctx: &Ctx, pattern: &str, targets: &[String], force: bool) -> Result<Exit, CliError> {
    let p = AddressPattern::parse(pattern)?;
    // Patterns are tried on the local part without its tag (DESIGN step
    // 3): one with the delimiter in it could never match.
    let delimiter = ctx.config.delimiter().map_err(CliError::usage)?;
    if p.local.is_wildcard() && p.local.to_string().contains(delimiter) {
        return Err(CliError::usage(format!(
            "pattern {p} can never match: patterns are tried after the tag (from \
             {delimiter:?} on) is removed; leave {delimiter:?} out of the pattern"
        )));
    }
    let targets = parse_targets(&p, targets)?;
    if let Some(own) = p.as_address() {
        if targets.contains(&own.to_string()) {
            return Err(CliError::usage(format!("alias {own} points to itself")));
        }
    }
    let username = p.local.to_string();
    let rows: Vec<Row> = targets
        .iter()
        .map(|t| Row {
            username: username.clone(),
            domain: p.domain.to_string(),
            mailbox: t.clone(),
            password: None,
            active: true,
            quota: None,
        })
        .collect();
    let broken = ctx.write(|s| {
        let arrival = guard::Arrival::before(&ctx.resolver, s, &[&p.domain])?;
        // The addresses of the domain that rows name and that resolve now:
        // a wildcard takes over those without rows of their own
        // (`info@b.org -> info@a.org`, delivered by a catch-all, then
        // `info%@a.org -> info%@b.org` makes both loop), and their mail
        // must not start to fail.
        let mut served = Vec::new();
        if p.as_address().is_none() {
            let feeding = domains_feeding(s, &p.domain)?;
            for (t, named_by) in named_and_found(&ctx.resolver, s, &feeding)? {
                // Only what works now: a failure already there is not
                // this command's to refuse.
                match check_resolves(&ctx.resolver, s, &t) {
                    Ok(()) => served.push((t, named_by)),
                    Err(e) if e.exit() == Exit::Usage => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let existing = s.exact(&username, p.domain.as_str())?;
        for row in &rows {
            if existing
                .iter()
                .any(|r| !r.is_mailbox() && r.mailbox == row.mailbox)
            {
                return Err(CliError::usage(format!(
                    "{p} -> {} already exists",
                    row.mailbox
                )));
            }
            s.insert(row)?;
        }
        // Refuse what would make mail to the alias fail: loops, targets
        // in our domains that do not exist, and more destinations than
        // smtpd can take. A wildcard is tried with an address it matches
        // (`%@a.org -> %@b.org` beside `%@b.org -> %@a.org` loops for
        // every name), and each fixed target on its own.
        match p.as_address() {
            Some(own) => check_resolves(&ctx.resolver, s, &own)?,
            None => {
                let probe = guard::probe_address(&p)?;
                check_resolves_as(&ctx.resolver, s, &probe, &p.to_string())?;
                for row in rows.iter().filter(|r| !r.has_template_target()) {
                    check_resolves(&ctx.resolver, s, &Address::parse(&row.mailbox)?)?;
                }
                for (t, named_by) in &served {
                    check_resolves(&ctx.resolver, s, t).map_err(|e| {
                        e.context(format_args!(
                            "with {p}, {t} (a target of {})",
                            guard::some_of(named_by, ", ")
                        ))
                    })?;
                }
            }
        }
        arrival.refuse(&ctx.resolver, s, force)
    })?;
    say!("added {p} -> {}", targets.join(", "));
    guard::warn_arrival(&broken);
    Ok(Exit::Ok)
}

fn del(ctx: &Ctx, pattern: &str, targets: &[String], force: bool) -> Result<Exit, CliError> {
    let p = AddressPattern::parse(pattern)?;
    let targets = parse_targets(&p, targets)?;
    let r = &ctx.resolver;
    let (n, stuck, broken) = ctx.write(|s| {
        // Aliases through this one (`team@ -> info@`, then `info@` removed)
        // would point at nothing: their mail would tempfail, so it is
        // refused as `user del` refuses. For a wildcard, the addresses it
        // served cannot be listed, but those the other rows name can.
        let own = p.as_address();
        let before = match &own {
            Some(a) => r.reaching(s, a)?,
            None => Vec::new(),
        };
        let served = match &own {
            Some(_) => Vec::new(),
            None => named_and_found(r, s, &BTreeSet::from([p.domain.clone()]))?,
        };
        // What reached it, and for a wildcard the pattern itself: mail
        // there must not start to fail or leave the host.
        let reached = match &own {
            Some(_) => before.clone(),
            None => r.reaching(s, &guard::probe_address(&p)?)?,
        };
        let wildcard = own.is_none().then_some(&p);
        let guard = guard::Guard::before(r, s, &p.domain, &reached, wildcard, own.as_ref())?;
        let stored;
        let what = if targets.is_empty() {
            Delete::Alias(None)
        } else {
            stored = stored_targets(s, &p, &targets)?;
            Delete::Alias(Some(&stored))
        };
        let n = match s.delete(&p.local.to_string(), p.domain.as_str(), what)? {
            0 if targets.is_empty() => return Err(CliError::not_found(format!("no alias {p}"))),
            0 => {
                return Err(CliError::not_found(format!(
                    "no alias {p} with those targets"
                )))
            }
            n => n,
        };
        let stuck = match &own {
            Some(a) => {
                let stuck = super::user::dangling(r, s, a, &before, false)?;
                super::user::refuse_stranding(&stuck, &p, force)?;
                stuck
            }
            None => {
                let stuck = no_longer_found(r, s, served)?;
                if !stuck.is_empty() && !force {
                    return Err(CliError::usage(format!(
                        "refused: without {p}, which served them, {}; add those addresses \
                         or change the aliases first, or use --force",
                        guard::some_of(&stuck, "; ")
                    )));
                }
                stuck
            }
        };
        let broken = guard.broken(r, s, &stuck)?;
        guard::refuse(&broken, &p, force)?;
        Ok((n, stuck, broken))
    })?;
    say!("removed {n} row(s) of {p}");
    guard::warn(&broken, &p);
    match p.as_address() {
        Some(_) => super::user::warn_stranded(&stuck, &p),
        None => {
            for a in &stuck {
                eprintln!("mailtable: warning: without {p}, {a}");
            }
        }
    }
    Ok(Exit::Ok)
}

/// `domain` and every domain whose mail a domain alias or pattern sends
/// there (`%@c.org -> %@a.org`), directly or through others: a wildcard
/// of `domain` may take over addresses named in any of them
/// (`info@b.org -> info@c.org` reaches `info@a.org`).
fn domains_feeding(s: &mut dyn Store, domain: &Domain) -> Result<BTreeSet<Domain>, CliError> {
    let wild = s.wildcard_targets()?;
    let mut set = BTreeSet::from([domain.clone()]);
    loop {
        let before = set.len();
        for row in &wild {
            let target = AddressPattern::parse(&row.mailbox).map(|t| t.domain);
            let source = Domain::parse(&row.domain);
            if let (Ok(t), Ok(src)) = (target, source) {
                if set.contains(&t) {
                    set.insert(src);
                }
            }
        }
        if set.len() == before {
            return Ok(set);
        }
    }
}

/// The addresses of `domains` that rows name as their target and that
/// resolve now, with the rows naming each: what a wildcard of the domain
/// may be serving. One pass over the rows (the CLI's, not a daemon's).
fn named_and_found(
    r: &Resolver,
    s: &mut dyn Store,
    domains: &BTreeSet<Domain>,
) -> Result<Vec<(Address, Vec<String>)>, CliError> {
    let mut named: BTreeMap<Address, Vec<String>> = BTreeMap::new();
    s.scan(None, &mut |row| {
        if row.has_template_target() {
            return;
        }
        if let Ok(t) = Address::parse(&row.mailbox) {
            if domains.contains(t.domain()) {
                named.entry(t).or_default().push(row.address());
            }
        }
    })?;
    let mut found = Vec::new();
    for (t, rows) in named {
        match r.resolve(s, &t) {
            Ok(Outcome::Found(_)) => found.push((t, rows)),
            Err(ResolveError::Store(e)) => return Err(e.into()),
            _ => {}
        }
    }
    Ok(found)
}

/// Of [`named_and_found`]'s addresses, those that no longer resolve, as
/// `row (-> address)` for each row naming one.
fn no_longer_found(
    r: &Resolver,
    s: &mut dyn Store,
    served: Vec<(Address, Vec<String>)>,
) -> Result<Vec<String>, CliError> {
    let mut stuck = Vec::new();
    for (t, rows) in served {
        // A domain with no row left is no longer ours: smtpd relays its
        // mail, which leaves the host rather than fails.
        let fate = match r.resolve(s, &t) {
            Ok(Outcome::Found(_)) => continue,
            Err(ResolveError::Store(e)) => return Err(e.into()),
            Ok(Outcome::UnknownDomain) => format!(
                "sends its mail off this host ({} is no longer ours)",
                t.domain()
            ),
            _ => "points at nothing".into(),
        };
        stuck.extend(rows.into_iter().map(|row| format!("{row} (-> {t}) {fate}")));
    }
    Ok(stuck)
}

pub(super) fn check_resolves(
    r: &Resolver,
    s: &mut dyn Store,
    addr: &Address,
) -> Result<(), CliError> {
    check_resolves_as(r, s, addr, &addr.to_string())
}

/// [`check_resolves`] for `addr` standing for `what`: a wildcard is tried
/// with an address it matches, and the refusal names the wildcard, with
/// the address tried, not an address the admin never typed.
fn check_resolves_as(
    r: &Resolver,
    s: &mut dyn Store,
    addr: &Address,
    what: &str,
) -> Result<(), CliError> {
    let shown = match what == addr.to_string() {
        true => what.to_string(),
        false => format!("{what} (tried as {addr})"),
    };
    let refused = |e: &dyn std::fmt::Display| {
        CliError::usage(format!("refused, mail to {shown} would fail: {e}"))
    };
    match r.resolve(s, addr) {
        Ok(_) => {}
        Err(ResolveError::Store(e)) => return Err(e.into()),
        Err(e) => return Err(refused(&e)),
    }
    // What the table would answer smtpd for it (the walk stops at the
    // first key that answers).
    for w in r.smtpd_walk(s, addr)? {
        if let Some(why) = &w.error {
            return Err(refused(why));
        }
    }
    Ok(())
}

/// `alias list [--domain D] [--to ADDRESS]`.
fn list(ctx: &Ctx, args: &AliasListArgs) -> Result<Exit, CliError> {
    let a = &args.list;
    let domain = super::domain::filter(a)?;
    let to = args.to.as_deref().map(Address::parse).transpose()?;
    let mut s = ctx.open(Access::ReadOnly)?;
    let mut out = super::listing::Listing::new(a.json);
    let mut print = |r: &Row| {
        out.item(
            || format!("{} -> {}  ({})", r.address(), r.mailbox, r.kind()),
            || json!({"pattern": r.address(), "target": r.mailbox, "kind": r.kind().name()}),
        );
    };
    match &to {
        // Every row whose resolution reaches ADDRESS, found the way
        // `senders` finds them (Resolver::reaching): bounded by its walk.
        // Rows aimed at a tagged form of it (`x@ -> hugo+lists@`) reach it
        // too (DESIGN step 2), but that walk looks targets up by their
        // stored text: they are found by one pass over the rows, as the
        // removal guards find them, with what reaches them in turn.
        Some(to) => {
            let r = &ctx.resolver;
            let mut rows: Vec<Row> = r
                .reaching(s.as_mut(), to)?
                .into_iter()
                .map(|x| x.row)
                .collect();
            for (row, src) in guard::tagged_aliases(r, s.as_mut(), to)? {
                let more = r.reaching(s.as_mut(), &src)?.into_iter().map(|x| x.row);
                for row in std::iter::once(row).chain(more) {
                    if !rows.contains(&row) {
                        rows.push(row);
                    }
                }
            }
            rows.iter()
                .filter(|r| domain.as_deref().is_none_or(|d| r.domain == d))
                .for_each(&mut print);
        }
        None => s.scan(domain.as_deref(), &mut |r| {
            if !r.is_mailbox() {
                print(&r);
            }
        })?,
    }
    out.finish()
}
