//! `mailtable user ...` (mailboxes: rows with a password) and `mailtable
//! hash`; `user add --from-file` lives in [`super::bulk`].
//!
//! The one decision a reader might question: removing a mailbox never
//! removes the aliases that point to it. An alias may fan out to other
//! targets too, and which rows to drop is the admin's call; so `user del`
//! names the aliases that would be left pointing at nothing (smtpd would
//! tempfail their mail) and refuses unless `--force`. `user rename`, on the
//! other hand, repoints them: the mailbox still exists, under a new name.

use crate::args::{ListArgs, PasswordInput, UserCommand};
use crate::ctx::Ctx;
use crate::error::CliError;
use crate::output::say;
use crate::secret_input;
use mailtable_core::exit::Exit;
use mailtable_core::password::{self, PasswordHash};
use mailtable_core::store::{Access, Delete};
use mailtable_core::{
    delivery, Address, Outcome, Reach, ResolveError, Resolver, Row, RowKind, Store,
};
use serde_json::json;

/// `mailtable user ...`.
pub(super) fn run(ctx: &Ctx, cmd: UserCommand) -> Result<Exit, CliError> {
    match cmd {
        UserCommand::Add {
            from_file: Some(file),
            force,
            ..
        } => super::bulk::add(ctx, &file, force),
        UserCommand::Add {
            address,
            password,
            quota,
            from_file: None,
            force,
        } => {
            // clap requires ADDRESS without --from-file.
            let address = address.unwrap_or_default();
            add(ctx, &address, &password, quota.as_deref(), force)
        }
        UserCommand::Passwd { address, password } => passwd(ctx, &address, &password),
        UserCommand::Quota { address, quota } => set_quota(ctx, &address, &quota),
        UserCommand::Rename {
            old,
            new,
            keep_alias,
            force,
        } => rename(ctx, &old, &new, keep_alias, force),
        UserCommand::Del { address, force } => del(ctx, &address, force),
        UserCommand::Disable { address } => set_active(ctx, &address, false),
        UserCommand::Enable { address } => set_active(ctx, &address, true),
        UserCommand::List(a) => list(ctx, &a),
    }
}

/// `mailtable hash`: a hash for hand-written SQL, with the configured cost.
pub(super) fn hash(ctx: &Ctx, input: &PasswordInput) -> Result<Exit, CliError> {
    let h = new_hash(ctx, input, "the hash")?;
    say!("{}", h.stored());
    Ok(Exit::Ok)
}

fn new_hash(ctx: &Ctx, input: &PasswordInput, what: &str) -> Result<PasswordHash, CliError> {
    let pw = secret_input::read(input.password_stdin, what)?;
    password::hash(&pw, ctx.config.password_cost).map_err(|e| CliError::usage(e.to_string()))
}

/// An address a new mailbox may have: one whose delivery user name smtpd
/// takes (letters, digits and `_ . + -`: `alias_is_username` in smtpd's
/// to.c). RFC 5321 allows more (`o'brien@`), but smtpd could not deliver
/// to such a mailbox, and a list holding it would fail for everyone.
///
/// Nor the tag `delimiter`: smtpd cuts a delivery user name at its
/// subaddressing delimiter before it asks for the user's userinfo
/// (lka_expand, EXPAND_USERNAME, in usr.sbin/smtpd/lka_session.c), so
/// mail to a mailbox `a+b@` would be asked for as user `a` and refused;
/// `a+b@` is already `a@`'s address with the tag `b`.
pub(super) fn mailbox_address(text: &str, delimiter: char) -> Result<Address, CliError> {
    as_mailbox(Address::parse(text)?, delimiter)
}

/// [`mailbox_address`] for an address parsed already.
pub(super) fn as_mailbox(addr: Address, delimiter: char) -> Result<Address, CliError> {
    if addr.local().contains(delimiter) {
        return Err(CliError::usage(format!(
            "{addr} cannot be a mailbox: `{delimiter}` is the tag delimiter (mail to \
             {base}{delimiter}anything@{domain} goes to the mailbox {base}@{domain}, and \
             smtpd would look a mailbox {addr} up as user {base}); it may be an alias",
            base = addr.split_tag(delimiter).0,
            domain = addr.domain(),
        )));
    }
    match mailtable_core::resolve::smtpd_item_fault(&delivery::encode(&addr), delimiter) {
        None => Ok(addr),
        Some(_) => Err(CliError::usage(format!(
            "{addr} cannot be a mailbox: smtpd delivers to a mailbox by a user name of \
             letters, digits and _ . + - only (it may be an alias to one)"
        ))),
    }
}

fn add(
    ctx: &Ctx,
    address: &str,
    input: &PasswordInput,
    quota: Option<&str>,
    force: bool,
) -> Result<Exit, CliError> {
    let addr = mailbox_address(address, ctx.resolver.delimiter)?;
    // Check everything typed before asking for the password.
    let quota = match quota {
        Some(q) => crate::quota::parse(q)?,
        None => None,
    };
    // Nor a password asked for a mailbox that exists (checked again in
    // the write: another writer may come in between).
    let existing = ctx
        .open_before_write()?
        .exact(addr.local(), addr.domain().as_str())?;
    if existing.iter().any(Row::is_mailbox) {
        return Err(CliError::usage(format!("{addr} already has a mailbox")));
    }
    let hash = new_hash(ctx, input, &addr.to_string())?;
    let broken = ctx.write(|s| {
        let arrival = super::guard::Arrival::before(&ctx.resolver, s, &[addr.domain()])?;
        insert_mailbox(s, &addr, hash, quota.clone())?;
        arrival.refuse(&ctx.resolver, s, force)
    })?;
    match &quota {
        Some(q) => say!(
            "added mailbox {addr} (delivery user {}, quota {q})",
            delivery::encode(&addr)
        ),
        None => say!(
            "added mailbox {addr} (delivery user {})",
            delivery::encode(&addr)
        ),
    }
    super::guard::warn_arrival(&broken);
    Ok(Exit::Ok)
}

/// Insert the mailbox row of `addr`, refusing a second mailbox; shared with
/// `user add --from-file`.
pub(super) fn insert_mailbox(
    s: &mut dyn Store,
    addr: &Address,
    hash: PasswordHash,
    quota: Option<String>,
) -> Result<(), CliError> {
    let existing = s.exact(addr.local(), addr.domain().as_str())?;
    if existing.iter().any(Row::is_mailbox) {
        return Err(CliError::usage(format!("{addr} already has a mailbox")));
    }
    if !existing.is_empty() {
        eprintln!(
            "mailtable: note: {addr} also has alias rows; mail goes to the mailbox and to them"
        );
    }
    s.insert(&Row {
        username: addr.local().into(),
        domain: addr.domain().to_string(),
        mailbox: addr.to_string(),
        password: Some(hash),
        active: true,
        quota,
    })?;
    Ok(())
}

/// `user quota ADDRESS SIZE|none`.
fn set_quota(ctx: &Ctx, address: &str, quota: &str) -> Result<Exit, CliError> {
    let addr = Address::parse(address)?;
    let quota = crate::quota::parse(quota)?;
    ctx.write(
        |s| match s.set_quota(addr.local(), addr.domain().as_str(), quota.as_deref())? {
            0 => Err(CliError::not_found(format!("{addr} has no mailbox"))),
            _ => Ok(()),
        },
    )?;
    match quota {
        Some(q) => say!("quota of {addr} set to {q}"),
        None => say!("quota of {addr} cleared"),
    }
    Ok(Exit::Ok)
}

/// `user rename OLD NEW [--keep-alias]`, in one transaction.
/// The tagged forms of `old` that alias rows name (`lists -> ann+lists@`,
/// as stored), each with the same tag on `new` (`anna+lists@`): mail to
/// them reaches `old` (DESIGN step 2), so on a rename they follow, or the
/// domain's catch-all would take them without a word. A form that makes
/// no address on `new` (the tag pushes its local part past 64 bytes)
/// refuses the rename.
fn tagged_forms(
    r: &Resolver,
    s: &mut dyn Store,
    old: &Address,
    new: &Address,
) -> Result<Vec<(String, String)>, CliError> {
    let mut forms = std::collections::BTreeSet::new();
    for (row, _) in super::guard::tagged_aliases(r, s, old)? {
        let Some(tag) = Address::parse(&row.mailbox)
            .ok()
            .and_then(|t| t.split_tag(r.delimiter).1.map(str::to_string))
        else {
            continue;
        };
        let to = format!("{}{}{tag}@{}", new.local(), r.delimiter, new.domain());
        let to = Address::parse(&to).map_err(|e| {
            CliError::usage(format!(
                "refused: {} -> {} cannot follow the rename, as {to} is no address ({e}); \
                 change that alias first",
                row.address(),
                row.mailbox
            ))
        })?;
        forms.insert((row.mailbox, to.to_string()));
    }
    Ok(forms.into_iter().collect())
}

fn rename(
    ctx: &Ctx,
    old: &str,
    new: &str,
    keep_alias: bool,
    force: bool,
) -> Result<Exit, CliError> {
    let old = Address::parse(old)?;
    let new = mailbox_address(new, ctx.resolver.delimiter)?;
    if old == new {
        return Err(CliError::usage(format!(
            "{old} and {new} are the same address"
        )));
    }
    let r = &ctx.resolver;
    let repointed = ctx.write(|s| {
        let Some(row) = r.mailbox(s, &old)? else {
            return Err(CliError::not_found(format!("{old} has no mailbox")));
        };
        if !s.exact(new.local(), new.domain().as_str())?.is_empty() {
            return Err(CliError::usage(format!(
                "{new} already has rows; remove them first or pick another name"
            )));
        }
        // Rows aimed at OLD by name are repointed below; those that reach
        // it through a `%` target (`%@old.org -> %@ex.org`) cannot be.
        let fixed: Vec<Reach> = r
            .reaching(s, &old)?
            .into_iter()
            .filter(|x| x.row.has_template_target())
            .collect();
        // And their mail must not leave the host: the last row of OLD's
        // domain gone, `%@src.org -> %@old.org` would relay to old.org.
        let guard = super::guard::Guard::before(r, s, old.domain(), &fixed, None, Some(&old))?;
        let arrival = super::guard::Arrival::before(r, s, &[new.domain()])?;
        // Alias rows of OLD itself (`hugo -> backup@x.net` beside the
        // mailbox: a copy elsewhere) belong to the mailbox: they move too.
        let copies: Vec<Row> = s
            .exact(old.local(), old.domain().as_str())?
            .into_iter()
            .filter(|x| !x.is_mailbox())
            .collect();
        s.insert(&Row {
            username: new.local().into(),
            domain: new.domain().to_string(),
            mailbox: new.to_string(),
            ..row
        })?;
        for c in copies {
            s.insert(&Row {
                username: new.local().into(),
                domain: new.domain().to_string(),
                ..c
            })?;
        }
        // The targets that follow: OLD itself, and each tagged form of it
        // an alias names (`lists -> ann+lists@`), which reaches OLD too
        // (DESIGN step 2) and becomes NEW's with its tag.
        let mut follow = vec![(old.to_string(), new.to_string())];
        follow.extend(tagged_forms(r, s, &old, &new)?);
        // The aliases about to be repointed must still resolve after it,
        // as `alias add` refuses: a longer name can push an alias's
        // destinations past what smtpd can take.
        let mut named_old: Vec<Address> = Vec::new();
        for (from, _) in &follow {
            named_old.extend(
                s.targeting(from)?
                    .iter()
                    .filter(|x| !x.is_mailbox() && !x.username.contains('%'))
                    .filter_map(|x| Address::parse(&x.address()).ok()),
            );
        }
        s.delete(old.local(), old.domain().as_str(), Delete::Mailbox)?;
        s.delete(old.local(), old.domain().as_str(), Delete::Alias(None))?;
        let mut repointed = 0;
        for (from, to) in &follow {
            // An alias that names the new target already (`team -> hugo,
            // hugh`, hugh@ reached through a catch-all) keeps its one row
            // for it: repointing would write a second, which `alias add`
            // refuses.
            for a in s.targeting(from)?.into_iter().filter(|a| !a.is_mailbox()) {
                let has_new = s
                    .exact(&a.username, &a.domain)?
                    .iter()
                    .any(|x| !x.is_mailbox() && x.mailbox == *to);
                if has_new {
                    let old_target = [a.mailbox];
                    repointed +=
                        s.delete(&a.username, &a.domain, Delete::Alias(Some(&old_target)))?;
                }
            }
            repointed += s.retarget(from, to)?;
        }
        if keep_alias {
            s.insert(&Row {
                username: old.local().into(),
                domain: old.domain().to_string(),
                mailbox: new.to_string(),
                password: None,
                active: true,
                quota: None,
            })?;
        }
        let stuck = dangling(r, s, &old, &fixed, true)?;
        if !stuck.is_empty() {
            return Err(CliError::usage(format!(
                "refused: {} would point to {old}, which would no longer exist; \
                 use --keep-alias, or change them first",
                super::guard::some_of(&stuck, ", ")
            )));
        }
        let broken = guard.broken(r, s, &stuck)?;
        if !broken.is_empty() {
            return Err(CliError::usage(format!(
                "refused: without {old}, {}; use --keep-alias, or change those rows first",
                super::guard::some_of(&broken, "; ")
            )));
        }
        check_found(r, s, &new)?;
        for a in &named_old {
            super::alias::check_resolves(r, s, a)?;
        }
        let now = match keep_alias {
            true => None,
            false => after_removal(r, s, &old)?,
        };
        Ok((repointed, arrival.refuse(r, s, force)?, now))
    })?;
    let (repointed, arrived, now) = repointed;
    let (old_home, new_home) = (ctx.config.home_for(&old), ctx.config.home_for(&new));
    say!(
        "renamed mailbox {old} to {new} (delivery user {})",
        delivery::encode(&new)
    );
    if repointed > 0 {
        say!("repointed {repointed} alias row(s) from {old} to {new}");
    }
    if keep_alias {
        say!("kept {old} as an alias to {new}");
    }
    if old_home != new_home {
        say!("move the mail store: {old_home} -> {new_home}");
    }
    super::guard::warn_arrival(&arrived);
    match now {
        // A catch-all or pattern sends it on to the new name anyway.
        Some((to, why)) if to == [new.to_string()] => {
            eprintln!("mailtable: note: mail to {old} still reaches {new}, through {why}")
        }
        Some((to, why)) => eprintln!(
            "mailtable: note: mail to {old} now goes to {} ({why}); `mailtable alias add {old} \
             {new}` sends it to {new} instead",
            to.join(", ")
        ),
        None => {}
    }
    Ok(Exit::Ok)
}

/// Where mail to `addr` goes once its mailbox row is gone, for the note
/// after `user del` and `user rename`: to what its own alias rows name (a
/// forward kept beside the mailbox), or to a catch-all or pattern of its
/// domain that takes the address over. `None` when it goes nowhere.
fn after_removal(
    r: &Resolver,
    s: &mut dyn Store,
    addr: &Address,
) -> Result<Option<(Vec<String>, String)>, CliError> {
    let to = match r.resolve(s, addr) {
        Ok(Outcome::Found(to)) => to
            .iter()
            .map(|d| d.address().to_string())
            .collect::<Vec<_>>(),
        _ => return Ok(None),
    };
    let why = match s.exact(addr.local(), addr.domain().as_str())?.is_empty() {
        true => {
            format!("a catch-all or pattern of its domain; `mailtable resolve {addr}` shows how")
        }
        false => format!(
            "the alias rows of {addr} left beside the mailbox; `mailtable alias del {addr}` \
             removes them"
        ),
    };
    Ok(Some((to, why)))
}

/// The rows of `before` (what reached `addr`) through which mail would now
/// fail: they point at `addr` itself and `addr` resolves to nothing any
/// more. Rows pointing at an alias on the way keep working.
///
/// `domain_aliases`: whether a domain alias (`%@old.org -> %@new.org`)
/// counts. For a rename it does: mail to the old name through it would be
/// lost while the mailbox lives on. For a removal it does not: it maps
/// every local part, so mail to the removed name through it fails exactly
/// as mail to any other unknown name of that domain already does, and
/// counting it would make every removal in an aliased domain need
/// `--force`.
pub(super) fn dangling(
    r: &Resolver,
    s: &mut dyn Store,
    addr: &Address,
    before: &[Reach],
    domain_aliases: bool,
) -> Result<Vec<String>, CliError> {
    // Still delivered (a catch-all takes it over), or not ours at all:
    // nothing points at nothing. A match alone is not enough: a domain
    // alias matches every name, and may find none at its target.
    match r.resolve(s, addr) {
        Ok(Outcome::Found(_)) | Ok(Outcome::UnknownDomain) => return Ok(Vec::new()),
        Err(ResolveError::Store(e)) => return Err(e.into()),
        Ok(Outcome::NotFound) | Err(_) => {}
    }
    // The rows that reached it naming it, or naming an address that now
    // finds nothing (an address of another domain that a domain alias
    // mapped to it: `via@ -> bob@old.org`, `%@old.org -> %@new.org`). Not
    // a row naming an alias that now points at nothing: that alias is
    // named itself, and fixing it fixes them.
    let mut out: Vec<String> = Vec::new();
    for x in before
        .iter()
        .filter(|x| domain_aliases || x.row.kind() != RowKind::DomainAlias)
    {
        let gone = x.target == *addr
            || match r.resolve(s, &x.target) {
                Ok(Outcome::NotFound) => true,
                Err(ResolveError::Store(e)) => return Err(e.into()),
                Ok(_) | Err(_) => false,
            };
        if gone {
            out.push(x.row.address());
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn check_found(r: &Resolver, s: &mut dyn Store, addr: &Address) -> Result<(), CliError> {
    match r.resolve(s, addr) {
        Ok(_) => Ok(()),
        Err(ResolveError::Store(e)) => Err(e.into()),
        Err(e) => Err(CliError::usage(format!(
            "refused, mail to {addr} would fail: {e}"
        ))),
    }
}

fn passwd(ctx: &Ctx, address: &str, input: &PasswordInput) -> Result<Exit, CliError> {
    let addr = Address::parse(address)?;
    // No password asked for an address without a mailbox (checked again
    // in the write: another writer may come in between).
    let existing = ctx
        .open_before_write()?
        .exact(addr.local(), addr.domain().as_str())?;
    if !existing.iter().any(Row::is_mailbox) {
        return Err(CliError::not_found(format!("{addr} has no mailbox")));
    }
    let hash = new_hash(ctx, input, &addr.to_string())?;
    ctx.write(
        |s| match s.set_password(addr.local(), addr.domain().as_str(), &hash)? {
            0 => Err(CliError::not_found(format!("{addr} has no mailbox"))),
            _ => Ok(()),
        },
    )?;
    say!("changed the password of {addr}");
    Ok(Exit::Ok)
}

/// `user del ADDRESS [--force]`.
fn del(ctx: &Ctx, address: &str, force: bool) -> Result<Exit, CliError> {
    let addr = Address::parse(address)?;
    let r = &ctx.resolver;
    let (stuck, broken, now) = ctx.write(|s| {
        let before = r.reaching(s, &addr)?;
        let guard = super::guard::Guard::before(r, s, addr.domain(), &before, None, Some(&addr))?;
        if s.delete(addr.local(), addr.domain().as_str(), Delete::Mailbox)? == 0 {
            return Err(CliError::not_found(format!("{addr} has no mailbox")));
        }
        let stuck = dangling(r, s, &addr, &before, false)?;
        refuse_stranding(&stuck, &addr, force)?;
        let broken = guard.broken(r, s, &stuck)?;
        super::guard::refuse(&broken, &addr, force)?;
        // A catch-all or pattern of the domain takes the address from now
        // on, or the address's own alias rows do, and with it the mail of
        // every alias that named it: legal, and worth saying.
        let now = after_removal(r, s, &addr)?;
        Ok((stuck, broken, now))
    })?;
    say!("removed mailbox {addr}");
    warn_stranded(&stuck, &addr);
    super::guard::warn(&broken, &addr);
    if let Some((to, why)) = now {
        eprintln!(
            "mailtable: note: mail to {addr}, and to the aliases that named it, now goes to {} \
             ({why})",
            to.join(", ")
        );
    }
    Ok(Exit::Ok)
}

/// A removal that would leave the aliases `stuck` pointing at `what`,
/// which no longer exists: refused without `--force` (`user del`,
/// `alias del`).
pub(super) fn refuse_stranding(
    stuck: &[String],
    what: &dyn std::fmt::Display,
    force: bool,
) -> Result<(), CliError> {
    super::guard::unless_forced(stuck, force, |stuck| {
        format!(
            "refused: {} point(s) to {what} and would fail; remove or change them first \
             (see `mailtable alias list --to {what}`), or use --force",
            super::guard::some_of(stuck, ", ")
        )
    })
}

/// After a forced removal: a warning per alias left pointing at nothing.
pub(super) fn warn_stranded(stuck: &[String], what: &dyn std::fmt::Display) {
    for a in stuck {
        eprintln!(
            "mailtable: warning: {a} still points to {what}; its mail now fails until you fix it \
             (`mailtable alias del {a} {what}`)"
        );
    }
}

/// `user disable` / `user enable`.
fn set_active(ctx: &Ctx, address: &str, enable: bool) -> Result<Exit, CliError> {
    let addr = Address::parse(address)?;
    ctx.write(
        |s| match s.set_active(addr.local(), addr.domain().as_str(), enable)? {
            0 => Err(CliError::not_found(format!("{addr} has no mailbox"))),
            _ => Ok(()),
        },
    )?;
    if enable {
        say!("enabled logins for {addr}");
    } else {
        say!("disabled logins for {addr} (mail is still accepted)");
    }
    Ok(Exit::Ok)
}

fn list(ctx: &Ctx, a: &ListArgs) -> Result<Exit, CliError> {
    let domain = super::domain::filter(a)?;
    let mut s = ctx.open(Access::ReadOnly)?;
    let mut out = super::listing::Listing::new(a.json);
    s.scan(domain.as_deref(), &mut |r| {
        if !r.is_mailbox() {
            return;
        }
        out.item(
            || {
                let mut line = r.address();
                if !r.active {
                    line.push_str("  (disabled)");
                }
                if r.password.as_ref().is_some_and(|p| p.is_locked()) {
                    line.push_str("  (password locked)");
                }
                if let Some(q) = &r.quota {
                    line.push_str(&format!("  quota={q}"));
                }
                line
            },
            || {
                json!({
                    "address": r.address(),
                    "active": r.active,
                    "locked": r.password.as_ref().is_some_and(|p| p.is_locked()),
                    "quota": r.quota,
                    "scheme": r.password.as_ref().map(|p| p.scheme().name()),
                })
            },
        );
    })?;
    out.finish()
}
