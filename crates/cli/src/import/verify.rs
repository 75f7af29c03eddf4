//! The proof after an import: for every address the sources knew, where the
//! SOURCE delivered it ([`Semantics`]) against what `Resolver::resolve` on
//! the database gives now.
//!
//! The one decision a reader might question: an address whose delivery in
//! the source runs through an entry that is not imported is counted as not
//! comparable ([`Expect::Blocked`]) rather than as a difference: the report
//! already lists that entry and why, and refusing the whole import for it
//! would leave nothing importable from a setup with a single pipe alias.

use indicatif::ProgressBar;
use mailtable_core::resolve::{smtpd_item_len, SMTPD_ALIAS_VALUE_MAX};
use mailtable_core::{Address, Outcome, ResolveError, Resolver, Store, StoreError};
use std::collections::BTreeSet;
use std::fmt;

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

    /// Whether the source's mail went through smtpd's own limits (an
    /// answer longer than its alias buffer is deferred): then an address
    /// the table fails for failed in the source too. A Postfix source had
    /// no such limit. Default: it did (smtpd tables, mailtable databases).
    fn under_smtpd_limits(&self) -> bool {
        true
    }
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

/// An address whose mail smtpd cannot have after the import, the source
/// agreeing or not: the table answers it an error (a loop, a dangling
/// target, an answer longer than smtpd takes), so its mail is deferred
/// until the rows are fixed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Failing {
    /// The address.
    pub address: String,
    /// Why, as `mailtable resolve` says it.
    pub why: String,
    /// The source delivered its mail (a Postfix source has no limit on an
    /// alias's length, smtpd has): deferring it from now on loses mail
    /// the source delivered, which the import does not do silently.
    pub source_delivered: bool,
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
    /// Addresses the source delivered through an entry that is not
    /// imported, which now reach a mailbox anyway (a catch-all or a
    /// pattern takes them): their mail would go to someone else.
    pub redirected: Vec<Difference>,
    /// Addresses that resolve as in the source (or differ, listed above)
    /// but whose mail smtpd will defer: see [`Failing`]. Not a
    /// difference when the source failed too (a loop copied as it is),
    /// but never silent either.
    pub failing: Vec<Failing>,
}

/// Compare the source's answer with `Resolver::resolve` on `db` for every
/// address in `known`, counting them on `bar`.
pub fn verify(
    known: &BTreeSet<Address>,
    sem: &mut dyn Semantics,
    resolver: &Resolver,
    db: &mut dyn Store,
    bar: &ProgressBar,
) -> Result<Verification, StoreError> {
    let mut v = Verification::default();
    for a in known {
        bar.inc(1);
        crate::interrupt::stopped()?;
        let want = sem.expected(a)?;
        if matches!(want, Expect::Blocked(_)) {
            v.not_comparable += 1;
            continue;
        }
        let got = expect_of(resolver.resolve(db, a))?;
        v.checked += 1;
        if !agrees(&want, &got) {
            v.differences.push(Difference {
                address: a.to_string(),
                source: want.to_string(),
                mailtable: got.to_string(),
            });
        } else if let Some(why) = smtpd_fault(resolver, db, a, &got)? {
            v.failing.push(Failing {
                address: a.to_string(),
                why,
                source_delivered: matches!(want, Expect::Found(_)) && !sem.under_smtpd_limits(),
            });
        }
    }
    bar.finish_and_clear();
    Ok(v)
}

/// Why smtpd cannot have the mail of `a`, which resolves to `got`: the
/// resolver's error, or the table's error for an answer too long for
/// smtpd, at `a`'s key or at an alias its answer lists
/// ([`Resolver::smtpd_failure`]). smtpd's walks are asked only where the
/// destinations alone are longer than smtpd takes (it then answers an
/// alias's own targets, each expanded in turn): none for the rest. The
/// reason leaves out `a` itself where it starts with it (the report names
/// the address first).
fn smtpd_fault(
    resolver: &Resolver,
    db: &mut dyn Store,
    a: &Address,
    got: &Expect,
) -> Result<Option<String>, StoreError> {
    match got {
        Expect::Error(e) => Ok(Some(e.clone())),
        Expect::Found(to) => {
            // The joined length, `local@domain, ` each with smtpd's
            // escapes (a `'` in a local part), counted without building
            // the strings: asked for every address the source knew (a
            // million for a big source).
            let len: usize = to
                .iter()
                .map(|d| smtpd_item_len(d.local()) + 1 + d.domain().as_str().len() + 2)
                .sum();
            if len <= SMTPD_ALIAS_VALUE_MAX + 2 {
                return Ok(None);
            }
            let own = format!("{a}: ");
            match resolver.smtpd_failure(db, a) {
                Ok(why) => Ok(why.map(|w| w.strip_prefix(&own).map_or(w.clone(), String::from))),
                Err(ResolveError::Store(e)) => Err(e),
                Err(e) => Ok(Some(e.to_string())),
            }
        }
        _ => Ok(None),
    }
}

/// Whether mailtable's answer is the source's. An address the source
/// refused is refused after the import too when its domain has no rows
/// left at all: both are a permanent reject at RCPT, the daemon cannot
/// tell them apart.
fn agrees(want: &Expect, got: &Expect) -> bool {
    want == got || matches!((want, got), (Expect::NotFound, Expect::UnknownDomain))
}

/// The addresses of `lost` (whose entries are not imported) that `db`
/// resolves all the same: those that reach somewhere else (a catch-all or
/// a pattern takes them), with where, and those that reach their own
/// mailbox (the login came over; only an entry of theirs did not), which
/// lose nothing.
pub fn delivered_after(
    lost: &[Address],
    resolver: &Resolver,
    db: &mut dyn Store,
) -> Result<(Vec<Difference>, Vec<Address>), StoreError> {
    let (mut elsewhere, mut own) = (Vec::new(), Vec::new());
    for a in lost {
        match expect_of(resolver.resolve(db, a))? {
            Expect::Found(s) if s.len() == 1 && s.contains(a) => own.push(a.clone()),
            got @ Expect::Found(_) => elsewhere.push(Difference {
                address: a.to_string(),
                source: "an entry that is not imported".into(),
                mailtable: got.to_string(),
            }),
            _ => {}
        }
    }
    Ok((elsewhere, own))
}

/// A resolver's answer in the terms of [`Expect`]; a database failure stays
/// an error (never "not found").
pub fn expect_of(r: Result<Outcome, ResolveError>) -> Result<Expect, StoreError> {
    Ok(match r {
        Ok(Outcome::Found(d)) => Expect::Found(d.iter().map(|d| d.address().clone()).collect()),
        Ok(Outcome::NotFound) => Expect::NotFound,
        Ok(Outcome::UnknownDomain) => Expect::UnknownDomain,
        Err(ResolveError::Store(e)) => return Err(e),
        Err(e) => Expect::Error(e.to_string()),
    })
}
