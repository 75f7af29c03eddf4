//! The runner of the resolution table: every case of
//! [`super::resolution::CASES`] through [`Resolver::resolve`] and through
//! smtpd's walk ([`Resolver::smtpd_walk`]), every key of `KEYS` through
//! [`Resolver::alias_for_key`], every user of `SENDERS` through
//! [`Resolver::senders`], on whatever store it is given.
//!
//! It collects every mismatch and panics once with all of them, rather than
//! stopping at the first: a backend that disagrees usually disagrees about
//! several addresses, and the list shows the pattern.

use super::resolution::{Dest, Want, CASES, KEYS, SENDERS};
use crate::address::Address;
use crate::resolve::{Destination, Outcome, ResolveError, Resolver};
use crate::store::Store;

/// Run the whole table on `store`, which must hold exactly
/// [`super::resolution::rows`]; panics listing every mismatch.
pub fn assert_resolution_table(store: &mut dyn Store) {
    let r = Resolver::default();
    let mut bad = Vec::new();
    for &(address, want) in CASES {
        case(&r, store, address, want, &mut bad);
    }
    for &(key, want) in KEYS {
        let got = r.alias_for_key(store, key).map(|a| a.map(|d| wire(&d)));
        match got {
            Ok(got) if got.as_deref() == want => {}
            got => bad.push(format!("key {key:?}: want {want:?}, got {got:?}")),
        }
    }
    for &(user, want) in SENDERS {
        let Ok(addr) = Address::parse(user) else {
            bad.push(format!("senders {user}: not an address"));
            continue;
        };
        let got = r.senders(store, &addr);
        let want = want.map(|w| w.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        match got {
            Ok(got) if got == want => {}
            got => bad.push(format!("senders {user}: want {want:?}, got {got:?}")),
        }
    }
    assert!(
        bad.is_empty(),
        "{} mismatches on the {} store:\n  {}",
        bad.len(),
        store.kind(),
        bad.join("\n  ")
    );
}

/// One case: the algorithm's answer, then the walk's.
fn case(r: &Resolver, store: &mut dyn Store, address: &str, want: Want, bad: &mut Vec<String>) {
    let addr = match Address::parse_key(address) {
        Ok(a) => a,
        Err(e) => {
            bad.push(format!("{address}: not an address: {e}"));
            return;
        }
    };
    let resolved = r.resolve(store, &addr);
    let ok = match (&resolved, want) {
        (Ok(Outcome::Found(got)), Want::Found { to, .. }) => same(got, to),
        (Ok(Outcome::NotFound), Want::NotFound) => true,
        (Ok(Outcome::UnknownDomain), Want::UnknownDomain) => true,
        (Err(ResolveError::Loop(_)), Want::Loop) => true,
        (Err(ResolveError::Dangling { .. }), Want::Dangling) => true,
        _ => false,
    };
    if !ok {
        bad.push(format!("{address}: want {want:?}, resolved {resolved:?}"));
    }
    // smtpd stops at the first key that answers: that key and its answer,
    // or no answer at all, or the same error.
    let walk = r.smtpd_walk(store, &addr);
    let ok = match (&walk, want) {
        (Ok(w), Want::Found { at, to }) => w.last().is_some_and(|last| {
            last.key == at
                && last.answer.as_deref() == Some(&to.iter().map(dest_wire).collect::<Vec<_>>())
                && w[..w.len() - 1].iter().all(|e| e.answer.is_none())
        }),
        (Ok(w), Want::NotFound | Want::UnknownDomain) => {
            w.len() == r.smtpd_keys(&addr).len() && w.iter().all(|e| e.answer.is_none())
        }
        // The key that answers is answered `error`, and the walk stops.
        (Ok(w), Want::Loop | Want::Dangling) => w.last().is_some_and(|last| {
            let why = last.error.as_deref().unwrap_or_default();
            let right = match want {
                Want::Loop => why.starts_with("alias loop"),
                _ => why.contains("but has no rows"),
            };
            right && w.iter().all(|e| e.answer.is_none())
        }),
        _ => false,
    };
    if !ok {
        bad.push(format!("{address}: want {want:?}, smtpd's walk {walk:?}"));
    }
}

fn same(got: &[Destination], want: &[Dest]) -> bool {
    got.len() == want.len()
        && got.iter().zip(want).all(|(g, w)| match (g, w) {
            (Destination::Mailbox(a), Dest::Mailbox(b))
            | (Destination::External(a), Dest::External(b)) => a.to_string() == *b,
            _ => false,
        })
}

/// The wire form smtpd gets for an expected destination.
fn dest_wire(d: &Dest) -> String {
    let (Dest::Mailbox(a) | Dest::External(a)) = d;
    match (Address::parse(a), d) {
        (Ok(addr), Dest::Mailbox(_)) => Destination::Mailbox(addr).wire(),
        (Ok(addr), Dest::External(_)) => Destination::External(addr).wire(),
        (Err(_), _) => format!("(invalid address {a})"),
    }
}

fn wire(d: &[Destination]) -> String {
    d.iter()
        .map(Destination::wire)
        .collect::<Vec<_>>()
        .join(", ")
}
