//! [`RowIndex`]: rows held in memory and looked up through hash maps keyed
//! like the SQL backends' indexed queries: `(domain, username)` for
//! [`Store::exact`], domain for [`Store::wildcards`] and
//! [`Store::has_domain`], mailbox for [`Store::targeting`]. The core
//! [`Resolver`](mailtable_core::Resolver) runs on it unchanged.
//!
//! The one decision a reader might question: an import from another
//! mailtable database resolves on this index rather than on the source
//! database itself. The import's semantics are the resolver on the rows
//! that come over (lower-cased, malformed rows left out, several sources
//! merged, a conflicting source's rows left out), which no single source
//! database holds; and it is faster: resolving each of the 979,000
//! addresses of a 1,006,465-row database took 11.5 s on the SQLite store
//! opened read-only and 2.0 s here (plus 0.5 s to build the index). The
//! test store `MemStore`, used before, scans every row per look-up, which
//! made that import quadratic (hours for a million rows).
//!
//! Read-only: writes fail with [`StoreError::Conflict`].

use mailtable_core::store::{migrate, Delete, SchemaState};
use mailtable_core::{PasswordHash, Row, Store, StoreError};
use std::collections::HashMap;

/// Rows with hash indexes; see the module doc.
#[derive(Debug, Default)]
pub struct RowIndex {
    rows: Vec<Row>,
    /// domain -> username -> rows, in insertion order. Nested rather than
    /// keyed by the pair so that a probe borrows its `&str`s instead of
    /// allocating a key; every row is here, so the outer keys are also the
    /// domains.
    exact: HashMap<String, HashMap<String, Vec<usize>>>,
    /// domain -> its wildcard rows (patterns, catch-alls, domain aliases).
    wildcards: HashMap<String, Vec<usize>>,
    /// Rows whose target has a `%`.
    template_targets: Vec<usize>,
    /// mailbox -> rows targeting it; built on first use, because resolving
    /// never asks (only `senders` does).
    targeting: Option<HashMap<String, Vec<usize>>>,
}

impl RowIndex {
    /// Index `rows`.
    pub fn new(rows: Vec<Row>) -> RowIndex {
        let mut ix = RowIndex {
            rows,
            ..RowIndex::default()
        };
        for (i, r) in ix.rows.iter().enumerate() {
            ix.exact
                .entry(r.domain.clone())
                .or_default()
                .entry(r.username.clone())
                .or_default()
                .push(i);
            if r.kind().is_wildcard() {
                ix.wildcards.entry(r.domain.clone()).or_default().push(i);
            }
            if r.has_template_target() {
                ix.template_targets.push(i);
            }
        }
        ix
    }

    fn get(&self, ids: Option<&Vec<usize>>) -> Vec<Row> {
        ids.into_iter()
            .flatten()
            .filter_map(|&i| self.rows.get(i))
            .cloned()
            .collect()
    }

    fn read_only() -> StoreError {
        StoreError::Conflict("the rows of an import source are read-only".into())
    }
}

impl Store for RowIndex {
    fn kind(&self) -> &'static str {
        "memory"
    }
    fn exact(&mut self, username: &str, domain: &str) -> Result<Vec<Row>, StoreError> {
        Ok(self.get(self.exact.get(domain).and_then(|u| u.get(username))))
    }
    fn wildcards(&mut self, domain: &str) -> Result<Vec<Row>, StoreError> {
        Ok(self.get(self.wildcards.get(domain)))
    }
    fn has_domain(&mut self, domain: &str) -> Result<bool, StoreError> {
        Ok(self.exact.contains_key(domain))
    }
    fn targeting(&mut self, mailbox: &str) -> Result<Vec<Row>, StoreError> {
        let rows = &self.rows;
        let map = self.targeting.get_or_insert_with(|| {
            let mut m: HashMap<String, Vec<usize>> = HashMap::new();
            for (i, r) in rows.iter().enumerate() {
                m.entry(r.mailbox.clone()).or_default().push(i);
            }
            m
        });
        let ids = map.get(mailbox).cloned();
        Ok(self.get(ids.as_ref()))
    }
    fn wildcard_targets(&mut self) -> Result<Vec<Row>, StoreError> {
        Ok(self.get(Some(&self.template_targets)))
    }
    fn reopen(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    fn list(&mut self, domain: Option<&str>) -> Result<Vec<Row>, StoreError> {
        let mut rows: Vec<Row> = self
            .rows
            .iter()
            .filter(|r| domain.is_none_or(|d| r.domain == d))
            .cloned()
            .collect();
        rows.sort_by(|a, b| (&a.domain, &a.username).cmp(&(&b.domain, &b.username)));
        Ok(rows)
    }
    fn domains(&mut self) -> Result<Vec<String>, StoreError> {
        let mut d: Vec<String> = self.exact.keys().cloned().collect();
        d.sort();
        Ok(d)
    }
    fn begin(&mut self) -> Result<(), StoreError> {
        Err(Self::read_only())
    }
    fn commit(&mut self) -> Result<(), StoreError> {
        Err(Self::read_only())
    }
    fn rollback(&mut self) {}
    fn insert(&mut self, _row: &Row) -> Result<(), StoreError> {
        Err(Self::read_only())
    }
    fn delete(&mut self, _: &str, _: &str, _: Delete<'_>) -> Result<usize, StoreError> {
        Err(Self::read_only())
    }
    fn set_password(&mut self, _: &str, _: &str, _: &PasswordHash) -> Result<usize, StoreError> {
        Err(Self::read_only())
    }
    fn set_active(&mut self, _: &str, _: &str, _: bool) -> Result<usize, StoreError> {
        Err(Self::read_only())
    }
    fn set_quota(&mut self, _: &str, _: &str, _: Option<&str>) -> Result<usize, StoreError> {
        Err(Self::read_only())
    }
    fn retarget(&mut self, _: &str, _: &str) -> Result<usize, StoreError> {
        Err(Self::read_only())
    }
    fn schema_state(&mut self) -> Result<SchemaState, StoreError> {
        Ok(SchemaState::Version(migrate::LATEST))
    }
    fn apply_migration(&mut self, _version: u32, _sql: &str) -> Result<(), StoreError> {
        Err(Self::read_only())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailtable_core::store::memory::MemStore;
    use mailtable_core::{Address, Resolver};

    fn rows() -> MemStore {
        MemStore::default()
            .with("hugo", "barrera.io", "hugo@barrera.io", Some("$2b$h"))
            .with("%", "barrera.io", "hugo@barrera.io", None)
            .with("sales-%", "barrera.io", "hugo@barrera.io", None)
            .with("sales-%", "barrera.io", "ana@example.com", None)
            .with("contact", "example.com", "hugo@barrera.io", None)
            .with("contact", "example.com", "ext@elsewhere.net", None)
            .with("ana", "example.com", "ana@example.com", Some("$2b$a"))
            .with("%", "old.example.com", "%@example.com", None)
    }

    /// The index answers every look-up as the scanning test store does, so
    /// the resolver gives the same answers on both.
    #[test]
    fn answers_like_the_scanning_store() {
        let mut scan = rows();
        let mut ix = RowIndex::new(scan.rows.clone());
        for (u, d) in [
            ("hugo", "barrera.io"),
            ("%", "barrera.io"),
            ("contact", "example.com"),
            ("nobody", "example.com"),
            ("hugo", "nowhere.org"),
        ] {
            assert_eq!(ix.exact(u, d).unwrap(), scan.exact(u, d).unwrap());
        }
        for d in [
            "barrera.io",
            "example.com",
            "old.example.com",
            "nowhere.org",
        ] {
            assert_eq!(ix.wildcards(d).unwrap(), scan.wildcards(d).unwrap());
            assert_eq!(ix.has_domain(d).unwrap(), scan.has_domain(d).unwrap());
            assert_eq!(ix.list(Some(d)).unwrap(), scan.list(Some(d)).unwrap());
        }
        for m in ["hugo@barrera.io", "ana@example.com", "x@y.org"] {
            assert_eq!(ix.targeting(m).unwrap(), scan.targeting(m).unwrap());
        }
        assert_eq!(
            ix.wildcard_targets().unwrap(),
            scan.wildcard_targets().unwrap()
        );
        assert_eq!(ix.list(None).unwrap(), scan.list(None).unwrap());
        assert_eq!(ix.domains().unwrap(), scan.domains().unwrap());

        let r = Resolver::default();
        for a in [
            "hugo@barrera.io",
            "hugo+tag@barrera.io",
            "sales-eu@barrera.io",
            "whoever@barrera.io",
            "contact@example.com",
            "ana@old.example.com",
            "nobody@example.com",
            "someone@nowhere.org",
        ] {
            let a = Address::parse(a).unwrap();
            assert_eq!(
                r.resolve(&mut ix, &a).unwrap(),
                r.resolve(&mut scan, &a).unwrap(),
                "{a}"
            );
        }
    }

    #[test]
    fn writes_are_refused() {
        let mut ix = RowIndex::new(rows().rows);
        assert!(ix.begin().is_err());
        assert!(ix.insert(&rows().rows[0]).is_err());
        assert!(ix.delete("hugo", "barrera.io", Delete::Mailbox).is_err());
        assert_eq!(ix.exact("hugo", "barrera.io").unwrap().len(), 1);
    }
}
