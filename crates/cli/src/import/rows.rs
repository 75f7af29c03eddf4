//! Planning the import of other mailtable databases: their rows come over
//! as they are, so there is nothing to translate, only sources to agree.
//!
//! The one decision a reader might question: the source's semantics here
//! ARE mailtable's, so the check after writing runs the core `Resolver` on
//! the source rows (held in a [`RowIndex`]) and compares it with the same
//! resolver on the database; it catches rows already in the database that
//! change where an imported address goes (a catch-all of the target taking
//! a pattern's mail, an alias loop through existing rows).
//!
//! Everything here is linear in the rows (B-tree and hash maps, no scan per
//! row): a source may hold millions.

use super::check::{describe, same_rows};
use super::parsed::{Conflict, Finding, Origin, Parsed};
use super::plan::{Group, Plan, PROBE};
use super::row_index::RowIndex;
use super::verify::{expect_of, Expect, Semantics};
use mailtable_core::{Address, AddressPattern, Resolver, Row, RowKind, StoreError};
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// Rows of one key, and where the first of them was read.
type Entries = BTreeMap<(String, String), (Origin, Vec<Row>)>;

/// Plan the merge of mailtable databases: rows as they are.
pub fn plan_rows(parsed: Parsed, resolver: &Resolver) -> (Plan, Box<dyn Semantics>) {
    let mut plan = Plan {
        skipped: parsed.skipped,
        notes: parsed.notes,
        ..Plan::default()
    };
    let by_key = agree(parsed.rows, &mut plan.notes, &mut plan.conflicts);
    let domains: HashSet<String> = by_key.keys().map(|(d, _)| d.clone()).collect();
    let mut known = BTreeSet::new();
    let mut keys = Vec::new();
    for (_, (origin, rows)) in by_key {
        let Some(group) = Group::of_rows(rows, origin.clone()) else {
            continue;
        };
        add_known(&group, &domains, &mut known);
        keys.push((group.key(), origin));
        plan.groups.push(group);
    }
    plan.known = known;
    let rows = plan.groups.iter().flat_map(Group::rows);
    let mut sem = RowsSemantics {
        store: RowIndex::new(rows.collect()),
        resolver: resolver.clone(),
    };
    note_failing_keys(&mut sem, keys, &mut plan.notes);
    (plan, Box::new(sem))
}

/// Keys whose mail fails in the source already (a loop, an alias to an
/// address of ours without rows, a mailbox name smtpd cuts at the tag
/// delimiter): they come over as they are and fail the same way, so the
/// proof finds no difference; a note names each, for the admin to fix
/// (`mailtable doctor` names them too).
fn note_failing_keys(
    sem: &mut RowsSemantics,
    keys: Vec<(String, Origin)>,
    notes: &mut Vec<Finding>,
) {
    for (key, origin) in keys {
        let probe = key.replace('%', PROBE);
        let Ok(addr) = Address::parse(&probe) else {
            continue;
        };
        let why = match sem.resolver.smtpd_walk(&mut sem.store, &addr) {
            Ok(walk) => match walk.into_iter().find_map(|w| w.error) {
                Some(why) => why,
                None => continue,
            },
            Err(e) => e.to_string(),
        };
        notes.push(Finding::about(
            origin,
            &key,
            format!(
                "its mail fails in the source already ({why}); copied as it is, so it keeps \
                 failing (deferred, 4xx) until the rows are fixed"
            ),
        ));
    }
}

/// Rows per (domain, username, source name), with the place of the first.
type PerSource = BTreeMap<(String, String, std::sync::Arc<str>), (Origin, Vec<Row>)>;

/// One entry per key; a key that several sources give must have the same
/// rows in each (a repeat is noted, a difference is a conflict and the
/// first source's rows stand).
fn agree(
    rows: Vec<(Row, Origin)>,
    notes: &mut Vec<Finding>,
    conflicts: &mut Vec<Conflict>,
) -> Entries {
    // Rows per key and source, in the order read; the first row of a key in
    // a source names the entry.
    let mut per_source: PerSource = BTreeMap::new();
    for (row, at) in rows {
        let key = (row.domain.clone(), row.username.clone(), at.source.clone());
        per_source
            .entry(key)
            .or_insert_with(|| (at, Vec::new()))
            .1
            .push(row);
    }
    let mut by_key = Entries::new();
    for ((domain, username, _), (at, mut rows)) in per_source {
        rows.dedup();
        let subject = format!("{username}@{domain}");
        match by_key.entry((domain, username)) {
            Entry::Vacant(e) => {
                e.insert((at, rows));
            }
            Entry::Occupied(e) => {
                let (first, existing) = e.get();
                if same_rows(existing, &rows) {
                    notes.push(Finding::about(at, &subject, format!("repeats {first}")));
                } else {
                    conflicts.push(Conflict {
                        at,
                        subject,
                        why: format!(
                            "{} here, {} at {first}",
                            describe(&rows),
                            describe(existing)
                        ),
                    });
                }
            }
        }
    }
    by_key
}

/// The addresses of `g` to check: its own address, a probe for a pattern or
/// catch-all (a domain alias has none: its answer depends on the other
/// domain), and its targets in the sources' domains.
fn add_known(g: &Group, domains: &HashSet<String>, known: &mut BTreeSet<Address>) {
    let own = AddressPattern::parse(&g.key())
        .ok()
        .and_then(|p| p.as_address());
    match own {
        Some(a) => {
            known.insert(a);
        }
        None if g.kind() != RowKind::DomainAlias => {
            let probe = g.username().replace('%', PROBE);
            if let Ok(a) = Address::from_parts(&probe, g.domain()) {
                known.insert(a);
            }
        }
        None => {}
    }
    for r in g.rows().filter(|r| !r.has_template_target()) {
        if let Ok(a) = Address::parse(&r.mailbox) {
            if domains.contains(a.domain().as_str()) {
                known.insert(a);
            }
        }
    }
}

/// A mailtable database's semantics: the resolver on its rows.
struct RowsSemantics {
    store: RowIndex,
    resolver: Resolver,
}

impl Semantics for RowsSemantics {
    fn expected(&mut self, addr: &Address) -> Result<Expect, StoreError> {
        expect_of(self.resolver.resolve(&mut self.store, addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::verify::verify;
    use indicatif::ProgressBar;
    use mailtable_core::store::memory::MemStore;
    use mailtable_core::Store;

    #[test]
    fn mailtable_rows_merge() {
        let mut p = Parsed::default();
        let src = MemStore::default()
            .with("hugo", "barrera.io", "hugo@barrera.io", Some("$2b$h"))
            .with("%", "barrera.io", "hugo@barrera.io", None)
            .with("contact", "example.com", "hugo@barrera.io", None);
        for r in &src.rows {
            p.rows
                .push((r.clone(), Origin::key("old.db", &r.address())));
        }
        let (plan, mut sem) = plan_rows(p, &Resolver::default());
        assert_eq!(plan.groups.len(), 3);
        let mut db = MemStore::default();
        for g in &plan.groups {
            for r in g.rows() {
                db.insert(&r).unwrap();
            }
        }
        let v = verify(
            &plan.known,
            sem.as_mut(),
            &Resolver::default(),
            &mut db,
            &ProgressBar::hidden(),
        )
        .unwrap();
        assert_eq!(v.checked, 3, "hugo, contact, the catch-all probe");
        assert!(v.differences.is_empty());
        assert!(plan.notes.is_empty(), "{:?}", plan.notes);
    }

    /// Keys that fail in the source come over as they are, each named in
    /// a note: a loop, a dangling alias, a mailbox smtpd cannot deliver.
    #[test]
    fn keys_failing_in_the_source_are_noted() {
        let mut p = Parsed::default();
        let src = MemStore::default()
            .with("hugo", "barrera.io", "hugo@barrera.io", Some("$2b$h"))
            .with("a", "barrera.io", "b@barrera.io", None)
            .with("b", "barrera.io", "a@barrera.io", None)
            .with("ghost", "barrera.io", "nobody@barrera.io", None)
            .with("jo+x", "barrera.io", "jo+x@barrera.io", Some("$2b$h"));
        for r in &src.rows {
            p.rows
                .push((r.clone(), Origin::key("old.db", &r.address())));
        }
        let (plan, _) = plan_rows(p, &Resolver::new('+'));
        let noted: Vec<String> = plan.notes.iter().map(|n| n.to_string()).collect();
        assert_eq!(noted.len(), 4, "{noted:?}");
        for k in [
            "a@barrera.io",
            "b@barrera.io",
            "ghost@barrera.io",
            "jo+x@barrera.io",
        ] {
            assert!(
                noted
                    .iter()
                    .any(|n| n.contains(k) && n.contains("fails in the source already")),
                "{k}: {noted:?}"
            );
        }
        assert!(!noted.iter().any(|n| n.contains("hugo@")), "{noted:?}");
    }
}
