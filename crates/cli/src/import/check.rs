//! The plan against the rows already in the database: which groups are new,
//! which are present and identical, which conflict.
//!
//! The one decision a reader might question: a key whose rows are present
//! but differ in any way (another target, hash, active state or quota) is a
//! conflict, never a merge: which side is right is the admin's call, and an
//! import must not quietly change where mail to an existing address goes.

use super::parsed::Conflict;
use super::plan::{Group, Plan};
use indicatif::ProgressBar;
use mailtable_core::{Row, Store, StoreError};
use std::collections::BTreeSet;

/// Rows compared as sets of (target, hash, active, quota); a hash in
/// another notation of the same password is the same hash.
fn row_set(rows: &[Row]) -> BTreeSet<(&str, Option<&str>, bool, Option<&str>)> {
    rows.iter()
        .map(|r| {
            (
                r.mailbox.as_str(),
                r.password.as_ref().map(|p| p.canonical()),
                r.active,
                r.quota.as_deref(),
            )
        })
        .collect()
}

/// Whether two lists hold the same rows, in any order.
pub fn same_rows(a: &[Row], b: &[Row]) -> bool {
    row_set(a) == row_set(b)
}

/// Rows in words, without hashes.
pub fn describe(rows: &[Row]) -> String {
    let mut parts = Vec::new();
    for r in rows.iter().filter(|r| r.is_mailbox()) {
        let mut s = "a mailbox".to_string();
        if !r.active {
            s.push_str(" (disabled)");
        }
        if let Some(q) = &r.quota {
            s.push_str(&format!(" (quota {q})"));
        }
        parts.push(s);
    }
    let targets: Vec<&str> = rows
        .iter()
        .filter(|r| !r.is_mailbox())
        .map(|r| r.mailbox.as_str())
        .collect();
    if !targets.is_empty() {
        parts.push(format!("-> {}", targets.join(", ")));
    }
    parts.join(" and ")
}

/// The plan against the rows already in the database.
#[derive(Debug, Default)]
pub struct Checked {
    /// Groups to insert, by index into [`Plan::groups`] (the rows are not
    /// copied: an import may hold a million of them).
    pub new: Vec<usize>,
    /// Groups already present, identical.
    pub present: usize,
    /// Groups that differ from rows present.
    pub conflicts: Vec<Conflict>,
}

impl Checked {
    /// The groups to insert.
    pub fn new_groups<'a>(&'a self, plan: &'a Plan) -> impl Iterator<Item = &'a Group> + 'a {
        self.new.iter().filter_map(|&i| plan.groups.get(i))
    }
}

/// Compare every planned group with the database, counting them on `bar`.
pub fn check_database(
    plan: &Plan,
    db: &mut dyn Store,
    bar: &ProgressBar,
) -> Result<Checked, StoreError> {
    let mut c = Checked::default();
    for (i, g) in plan.groups.iter().enumerate() {
        bar.inc(1);
        crate::interrupt::stopped()?;
        let existing = db.exact(g.username(), g.domain())?;
        if existing.is_empty() {
            c.new.push(i);
            continue;
        }
        let rows: Vec<Row> = g.rows().collect();
        if same_rows(&existing, &rows) {
            c.present += 1;
        } else {
            c.conflicts.push(Conflict {
                at: g.origin.clone(),
                subject: g.key(),
                why: why_different(&existing, &rows),
            });
        }
    }
    bar.finish_and_clear();
    Ok(c)
}

fn why_different(existing: &[Row], source: &[Row]) -> String {
    let mailbox = |rows: &[Row]| {
        rows.iter()
            .position(Row::is_mailbox)
            .map(|i| rows[i].password.clone())
    };
    match (mailbox(existing), mailbox(source)) {
        (Some(Some(d)), Some(Some(s))) if !d.same_password(&s) => {
            "already in the database with a different password".to_string()
        }
        _ => format!(
            "already in the database as {}; the source has {}",
            describe(existing),
            describe(source)
        ),
    }
}
