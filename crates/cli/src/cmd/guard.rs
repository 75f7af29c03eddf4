//! What a removal must not break: the addresses whose mail reached the
//! removed key, resolved again inside the write's transaction.
//!
//! `user del` and `alias del` already refuse to leave an alias pointing at
//! nothing ([`super::user::dangling`]). Two more ways a removal breaks mail
//! are found here, for every row that reached the key (an alias, a
//! pattern, a catch-all, a domain alias) and, for a wildcard, the pattern
//! itself:
//!
//! - mail that resolved before now fails: `%@a.org -> %@b.org` beside
//!   `%@b.org -> hugo@, %@a.org` loops for every name once `hugo@` is
//!   taken out of the second;
//! - mail now leaves the host: the last row of `tgt.org` removed, the
//!   domain is no longer ours, and `%@src.org -> %@tgt.org` (or
//!   `team@src.org -> ann@tgt.org`) relays to tgt.org's own servers, where
//!   before its mail was delivered here or refused.
//!
//! A removal only takes rows of one key, so only that key's domain can
//! stop being ours.
//!
//! The other way round, an addition can make a domain ours ([`Arrival`]).

use crate::error::CliError;
use mailtable_core::{
    Address, AddressPattern, Destination, Domain, Outcome, Reach, ResolveError, Resolver, Row,
    Store,
};

/// A local part no row is likely to have, to try a wildcard with.
const PROBE_LOCAL: &str = "mailtable-alias-check";

/// An address `pattern` matches, to resolve in its place: a wildcard's
/// rows are checked as mail to such an address would use them.
pub(super) fn probe_address(pattern: &AddressPattern) -> Result<Address, CliError> {
    let text = pattern.local.to_string();
    // A long pattern leaves no room for the probe's name: one character.
    let long = Address::from_parts(&text.replace('%', PROBE_LOCAL), pattern.domain.as_str());
    Ok(long.or_else(|_| Address::from_parts(&text.replace('%', "x"), pattern.domain.as_str()))?)
}

/// The addresses to resolve again after a removal from `domain`, with
/// whether each resolved before it.
pub(super) struct Guard {
    domain: Domain,
    sources: Vec<(String, Address, bool)>,
}

impl Guard {
    /// Taken before the removal: `reaching` is what reached the removed
    /// key ([`Resolver::reaching`]), `own` the key itself when it is a
    /// wildcard (its probe).
    /// `removed`: the one address the removal takes, when it is one (not
    /// a wildcard): aliases to its tagged forms are guarded too.
    pub(super) fn before(
        r: &Resolver,
        s: &mut dyn Store,
        domain: &Domain,
        reaching: &[Reach],
        own: Option<&AddressPattern>,
        removed: Option<&Address>,
    ) -> Result<Guard, CliError> {
        let mut sources: Vec<(String, Address)> = Vec::new();
        if let Some(p) = own {
            sources.push((p.to_string(), probe_address(p)?));
        }
        if let Some(a) = removed {
            sources.extend(
                tagged_aliases(r, s, a)?
                    .into_iter()
                    .map(|(row, src)| (row.address(), src)),
            );
        }
        for x in reaching {
            let label = x.row.address();
            let addr = match &x.source {
                Some(a) => a.clone(),
                // A catch-all or a pattern with a fixed target: an address
                // it answers for.
                None => match AddressPattern::parse(&label) {
                    Ok(p) => probe_address(&p)?,
                    Err(_) => continue,
                },
            };
            if !sources.iter().any(|(_, a)| *a == addr) {
                sources.push((label, addr));
            }
        }
        let mut out = Vec::with_capacity(sources.len());
        for (label, addr) in sources {
            let ok = resolved(r.resolve(s, &addr))?;
            out.push((label, addr, ok));
        }
        Ok(Guard {
            domain: domain.clone(),
            sources: out,
        })
    }

    /// After the removal, in the same transaction: each address whose mail
    /// now fails or leaves the host, as `label: why`. Rows in `named`
    /// were reported already (an alias left pointing at nothing).
    pub(super) fn broken(
        &self,
        r: &Resolver,
        s: &mut dyn Store,
        named: &[String],
    ) -> Result<Vec<String>, CliError> {
        let gone = !s.has_domain(self.domain.as_str())?;
        let mut out = Vec::new();
        for (label, addr, ok_before) in &self.sources {
            if named
                .iter()
                .any(|n| n == label || n.starts_with(&format!("{label} (-> ")))
            {
                continue;
            }
            let why = match r.resolve(s, addr) {
                Err(ResolveError::Store(e)) => return Err(e.into()),
                Err(e) if *ok_before => format!("mail to {addr} would fail ({e})"),
                Ok(Outcome::Found(to)) if gone => {
                    let away: Vec<String> = to
                        .iter()
                        .filter_map(|d| match d {
                            Destination::External(a) if *a.domain() == self.domain => {
                                Some(a.to_string())
                            }
                            _ => None,
                        })
                        .collect();
                    if away.is_empty() {
                        continue;
                    }
                    format!(
                        "mail to {addr} would leave this host for {} ({} would no longer be \
                         one of our domains)",
                        away.join(", "),
                        self.domain
                    )
                }
                _ => continue,
            };
            out.push(format!("{label}: {why}"));
        }
        Ok(out)
    }
}

/// What adding the first rows of a domain must not break: mail that left
/// the host for that domain before the write, resolved again inside the
/// write's transaction (`user add`, `alias add`, `user rename`, `user
/// add --from-file`, `import`).
///
/// A domain with rows is one of ours: an address of it without rows is
/// unknown, and a fixed target there without rows is a broken alias. So
/// the first `user add foo@ext.com` turns `x@barrera.io -> bar@ext.com`,
/// which relayed to ext.com's servers, into an alias that defers its mail,
/// and `%@fwd.org -> %@ext.com` into one that rejects every name but foo.
/// Taking over a domain the host forwarded to is a common migration step;
/// the admin must add those addresses first, or say `--force`.
pub(crate) struct Arrival {
    /// Rows whose mail left for a domain that becomes ours: label, the
    /// address resolved in their place, and that domain.
    sources: Vec<(String, Address, Domain)>,
}

impl Arrival {
    /// Taken before a write that adds rows of `domains`: for each that has
    /// no rows yet, the rows whose mail goes there (one pass over the
    /// rows, and only when such a domain is written: the CLI's check,
    /// never a daemon's lookup).
    pub(crate) fn before(
        r: &Resolver,
        s: &mut dyn Store,
        domains: &[&Domain],
    ) -> Result<Arrival, CliError> {
        let mut new: Vec<Domain> = Vec::new();
        for d in domains {
            if !new.contains(d) && !s.has_domain(d.as_str())? {
                new.push((*d).clone());
            }
        }
        let mut sources = Vec::new();
        if new.is_empty() {
            return Ok(Arrival { sources });
        }
        let mut rows = Vec::new();
        s.scan(None, &mut |row| {
            let to = row
                .mailbox
                .rsplit_once('@')
                .and_then(|(_, d)| Domain::parse(d).ok());
            if let Some(d) = to.filter(|d| new.contains(d)) {
                rows.push((row, d));
            }
        })?;
        for (row, domain) in rows {
            let label = row.address();
            let probe = match AddressPattern::parse(&label) {
                Ok(p) if p.as_address().is_none() => probe_address(&p)?,
                _ => match Address::from_parts(&row.username, &row.domain) {
                    Ok(a) => a,
                    Err(_) => continue,
                },
            };
            // Only mail that left for the domain counts: what failed or
            // stayed here before is not this write's doing.
            let left = match r.resolve(s, &probe) {
                Ok(Outcome::Found(to)) => to
                    .iter()
                    .any(|d| matches!(d, Destination::External(a) if *a.domain() == domain)),
                Err(ResolveError::Store(e)) => return Err(e.into()),
                _ => false,
            };
            if left && !sources.iter().any(|(_, a, _)| *a == probe) {
                sources.push((label, probe, domain));
            }
        }
        Ok(Arrival { sources })
    }

    /// After the write, in the same transaction: each address whose mail
    /// now fails or is refused, as `label: why`, with the domain it went
    /// to.
    fn broken(&self, r: &Resolver, s: &mut dyn Store) -> Result<Vec<(String, Domain)>, CliError> {
        let mut out = Vec::new();
        for (label, probe, domain) in &self.sources {
            let why = match r.resolve(s, probe) {
                Ok(Outcome::Found(_)) => continue,
                Err(ResolveError::Store(e)) => return Err(e.into()),
                Err(e) => format!("mail to {probe} would fail ({e})"),
                Ok(_) => format!("mail to {probe} would be refused (no such address)"),
            };
            out.push((
                format!("{label}: {why}, where it went to {domain}'s own servers"),
                domain.clone(),
            ));
        }
        Ok(out)
    }

    /// [`Arrival::broken`] refused without `--force`; with it, a warning
    /// each once written ([`warn_arrival`]).
    pub(crate) fn refuse(
        &self,
        r: &Resolver,
        s: &mut dyn Store,
        force: bool,
    ) -> Result<Vec<String>, CliError> {
        let (broken, what) = self.breakage(r, s)?;
        unless_forced(&broken, force, |_| {
            format!("refused: {what}; add those addresses first, change the rows, or use --force")
        })?;
        Ok(broken)
    }

    /// After the write: each address whose mail it broke (`label: why`),
    /// and a sentence of the domains that became ours with the first of
    /// those, for a refusal.
    pub(crate) fn breakage(
        &self,
        r: &Resolver,
        s: &mut dyn Store,
    ) -> Result<(Vec<String>, String), CliError> {
        let found = self.broken(r, s)?;
        // The domains whose arrival breaks something, each once.
        let mut domains: Vec<String> = Vec::new();
        for (_, d) in &found {
            if !domains.contains(&d.to_string()) {
                domains.push(d.to_string());
            }
        }
        let broken: Vec<String> = found.into_iter().map(|(b, _)| b).collect();
        let what = format!(
            "{} would become one of our domains, and {}",
            domains.join(", "),
            some_of(&broken, "; ")
        );
        Ok((broken, what))
    }
}

/// After a forced write that made a domain ours: a warning per address
/// whose mail it broke.
pub(super) fn warn_arrival(broken: &[String]) {
    for b in broken {
        eprintln!("mailtable: warning: {b}");
    }
}

/// The rows whose target is a tagged form of `addr` (`x@b.org ->
/// ann+tag@a.org` for `ann@a.org`) that reaches it, each with its
/// address: the reverse walks ([`Resolver::reaching`]) look targets up by
/// their stored text and miss them, while their mail reaches `addr`
/// (DESIGN step 2). A tagged form with rows of its own (`ann+tag@a.org ->
/// ext@x.org`) goes where they say (step 1), not to `addr`, and is left
/// out. One pass over the rows: the CLI's check, never a daemon's lookup.
pub(super) fn tagged_aliases(
    r: &Resolver,
    s: &mut dyn Store,
    addr: &Address,
) -> Result<Vec<(Row, Address)>, CliError> {
    let mut found = Vec::new();
    s.scan(None, &mut |row| {
        if row.has_template_target() {
            return;
        }
        let Ok(t) = Address::parse(&row.mailbox) else {
            return;
        };
        if t != *addr && t.without_tag(r.delimiter) == *addr {
            if let Ok(src) = Address::from_parts(&row.username, &row.domain) {
                found.push((row, src, t));
            }
        }
    })?;
    let mut out = Vec::new();
    for (row, src, t) in found {
        if s.exact(t.local(), t.domain().as_str())?.is_empty() {
            out.push((row, src));
        }
    }
    Ok(out)
}

/// Whether a resolution answered (found, not found, not ours); a store
/// failure stays an error.
fn resolved(r: Result<Outcome, ResolveError>) -> Result<bool, CliError> {
    match r {
        Ok(_) => Ok(true),
        Err(ResolveError::Store(e)) => Err(e.into()),
        Err(_) => Ok(false),
    }
}

/// A removal that breaks `broken`: refused without `--force`, the reasons
/// listed. With it, [`warn`] says each once the removal is written.
pub(super) fn refuse(
    broken: &[String],
    what: &dyn std::fmt::Display,
    force: bool,
) -> Result<(), CliError> {
    unless_forced(broken, force, |broken| {
        format!(
            "refused: without {what}, {}; change those rows first (`mailtable alias list --to \
             ADDRESS` shows what reaches an address), or use --force",
            some_of(broken, "; ")
        )
    })
}

/// The first of `items` joined with `sep`, and how many more there are:
/// a refusal names what is in the way, and an address with a thousand
/// aliases must not make it a thousand-name line. The command it points
/// to (`alias list --to`) lists them all.
pub(super) fn some_of(items: &[String], sep: &str) -> String {
    const SHOWN: usize = 10;
    let mut text = items[..items.len().min(SHOWN)].join(sep);
    if items.len() > SHOWN {
        text.push_str(&format!(" and {} more", items.len() - SHOWN));
    }
    text
}

/// The refusal of every removal guard: `message(found)` as a usage error,
/// unless nothing was found or the admin forces the removal (the guard
/// then warns instead).
pub(super) fn unless_forced(
    found: &[String],
    force: bool,
    message: impl FnOnce(&[String]) -> String,
) -> Result<(), CliError> {
    match found.is_empty() || force {
        true => Ok(()),
        false => Err(CliError::usage(message(found))),
    }
}

/// After a forced removal: a warning for each of [`Guard::broken`]'s.
pub(super) fn warn(broken: &[String], what: &dyn std::fmt::Display) {
    for b in broken {
        eprintln!("mailtable: warning: without {what}, {b}");
    }
}

#[cfg(test)]
mod tests {
    use super::some_of;

    #[test]
    fn a_long_list_is_cut_with_a_count() {
        let names = |n: usize| (1..=n).map(|i| format!("a{i}")).collect::<Vec<_>>();
        assert_eq!(some_of(&names(1), ", "), "a1");
        assert_eq!(some_of(&names(3), "; "), "a1; a2; a3");
        assert_eq!(
            some_of(&names(10), ", "),
            "a1, a2, a3, a4, a5, a6, a7, a8, a9, a10"
        );
        assert_eq!(
            some_of(&names(1000), ", "),
            "a1, a2, a3, a4, a5, a6, a7, a8, a9, a10 and 990 more"
        );
    }
}
