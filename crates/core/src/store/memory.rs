//! An in-memory [`Store`] for tests of the policy layers above the backends
//! (resolution, the table and Dovecot answers). It implements the same
//! contract as the SQL backends, including a switch that makes every call
//! fail, to test the temporary-failure paths.

use super::{ChangeToken, Delete, Joined, Row, SchemaState, Store, StoreError};
use crate::password::PasswordHash;

/// Rows in a `Vec`, scanned linearly: fine for tests, never for production.
#[derive(Debug, Default, Clone)]
pub struct MemStore {
    /// The rows, in insertion order.
    pub rows: Vec<Row>,
    /// When set, every call fails with [`StoreError::Unavailable`].
    pub broken: bool,
    /// When set, [`Store::change_token`] gives a digest of the rows (so a
    /// test that edits `rows` directly changes it), like a real backend;
    /// otherwise `None`, and the daemons' cache stays out of the way.
    pub versioned: bool,
    /// When set, [`Store::exact_joined`] probes no target (the trait's
    /// default), as a backend without the join: for the tests that the
    /// join changes no answer.
    pub unjoined: bool,
    /// When set, every call records itself: `"begin"` and `"end"` for
    /// [`Store::begin_lookup`] and [`Store::end_lookup`], `"call"` for any
    /// other. For the tests that the daemons make each request one
    /// lookup, every call inside it.
    pub log: Option<CallLog>,
    snapshot: Option<Vec<Row>>,
}

/// The calls a [`MemStore`] saw, shared with the test that reads them
/// after the store went into a daemon's handler.
pub type CallLog = std::sync::Arc<std::sync::Mutex<Vec<&'static str>>>;

impl MemStore {
    /// A store holding `rows`.
    pub fn new(rows: Vec<Row>) -> MemStore {
        MemStore {
            rows,
            ..MemStore::default()
        }
    }

    /// Add a row from `(username, domain, mailbox, password)`.
    pub fn with(
        mut self,
        username: &str,
        domain: &str,
        mailbox: &str,
        password: Option<&str>,
    ) -> Self {
        self.rows.push(Row {
            username: username.into(),
            domain: domain.into(),
            mailbox: mailbox.into(),
            password: password.map(PasswordHash::new),
            active: true,
            quota: None,
        });
        self
    }

    fn note(&self, what: &'static str) {
        if let Some(log) = &self.log {
            log.lock().unwrap_or_else(|p| p.into_inner()).push(what);
        }
    }

    fn check(&self) -> Result<(), StoreError> {
        self.note("call");
        if self.broken {
            Err(StoreError::Unavailable("test store is broken".into()))
        } else {
            Ok(())
        }
    }

    fn filter(&self, f: impl Fn(&Row) -> bool) -> Result<Vec<Row>, StoreError> {
        self.check()?;
        Ok(self.rows.iter().filter(|r| f(r)).cloned().collect())
    }
}

impl Store for MemStore {
    fn kind(&self) -> &'static str {
        "memory"
    }
    fn exact(&mut self, username: &str, domain: &str) -> Result<Vec<Row>, StoreError> {
        self.filter(|r| r.username == username && r.domain == domain)
    }
    fn exact_joined(&mut self, username: &str, domain: &str) -> Result<Joined, StoreError> {
        // The join of the SQL backends, row by row, so that the layers
        // above are tested on the path the daemons take.
        let rows = self.exact(username, domain)?;
        if self.unjoined {
            return Ok(Joined {
                rows,
                targets: Vec::new(),
            });
        }
        let mut results = Vec::new();
        for (i, row) in rows.into_iter().enumerate() {
            let key = super::target_key(&row, username);
            let found = match &key {
                Some((u, d)) => self.exact(u, d)?,
                None => Vec::new(),
            };
            if found.is_empty() {
                results.push((i, row, key, None));
            } else {
                for t in found {
                    results.push((i, row.clone(), key.clone(), Some(t)));
                }
            }
        }
        Ok(Joined::gather(results))
    }
    fn wildcards(&mut self, domain: &str) -> Result<Vec<Row>, StoreError> {
        self.filter(|r| r.domain == domain && r.kind().is_wildcard())
    }
    fn has_domain(&mut self, domain: &str) -> Result<bool, StoreError> {
        Ok(!self.filter(|r| r.domain == domain)?.is_empty())
    }
    fn targeting(&mut self, mailbox: &str) -> Result<Vec<Row>, StoreError> {
        self.filter(|r| r.mailbox == mailbox)
    }
    fn wildcard_targets(&mut self) -> Result<Vec<Row>, StoreError> {
        self.filter(Row::has_template_target)
    }
    fn sample_passwords(&mut self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .filter(|r| r.kind() == crate::row::RowKind::Mailbox)?
            .into_iter()
            .rev()
            .filter_map(|r| r.password)
            .map(|h| h.stored().to_string())
            .take(16)
            .collect())
    }
    fn begin_lookup(&mut self) {
        self.note("begin");
    }
    fn end_lookup(&mut self) {
        self.note("end");
    }
    // The rows are in memory: the check never waits.
    fn change_token_in_place(&mut self) -> Option<Result<Option<ChangeToken>, StoreError>> {
        Some(self.change_token())
    }
    fn change_token(&mut self) -> Result<Option<ChangeToken>, StoreError> {
        use std::hash::{Hash, Hasher};
        self.check()?;
        if !self.versioned {
            return Ok(None);
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for r in &self.rows {
            (&r.username, &r.domain, &r.mailbox, r.active, &r.quota).hash(&mut h);
            r.password.as_ref().map(|p| p.stored()).hash(&mut h);
        }
        Ok(Some(ChangeToken::new([
            h.finish(),
            self.rows.len() as u64,
            0,
            0,
            0,
            0,
        ])))
    }
    fn reopen(&mut self) -> Result<(), StoreError> {
        self.check()
    }
    fn list(&mut self, domain: Option<&str>) -> Result<Vec<Row>, StoreError> {
        let mut rows = self.filter(|r| domain.is_none_or(|d| r.domain == d))?;
        rows.sort_by(|a, b| (&a.domain, &a.username).cmp(&(&b.domain, &b.username)));
        Ok(rows)
    }
    fn domains(&mut self) -> Result<Vec<String>, StoreError> {
        let mut d: Vec<String> = self
            .filter(|_| true)?
            .into_iter()
            .map(|r| r.domain)
            .collect();
        d.sort();
        d.dedup();
        Ok(d)
    }
    fn begin(&mut self) -> Result<(), StoreError> {
        self.check()?;
        self.snapshot = Some(self.rows.clone());
        Ok(())
    }
    fn commit(&mut self) -> Result<(), StoreError> {
        self.check()?;
        self.snapshot = None;
        Ok(())
    }
    fn rollback(&mut self) {
        if let Some(rows) = self.snapshot.take() {
            self.rows = rows;
        }
    }
    fn insert(&mut self, row: &Row) -> Result<(), StoreError> {
        self.check()?;
        self.rows.push(row.clone());
        Ok(())
    }
    fn delete(
        &mut self,
        username: &str,
        domain: &str,
        what: Delete<'_>,
    ) -> Result<usize, StoreError> {
        self.check()?;
        let before = self.rows.len();
        self.rows.retain(|r| {
            let same = r.username == username && r.domain == domain;
            let hit = match what {
                Delete::Mailbox => r.is_mailbox(),
                Delete::Alias(None) => !r.is_mailbox(),
                Delete::Alias(Some(t)) => !r.is_mailbox() && t.contains(&r.mailbox),
            };
            !(same && hit)
        });
        Ok(before - self.rows.len())
    }
    fn set_password(
        &mut self,
        username: &str,
        domain: &str,
        hash: &PasswordHash,
    ) -> Result<usize, StoreError> {
        self.check()?;
        let mut n = 0;
        for r in self
            .rows
            .iter_mut()
            .filter(|r| r.username == username && r.domain == domain && r.is_mailbox())
        {
            r.password = Some(hash.clone());
            n += 1;
        }
        Ok(n)
    }
    fn set_active(
        &mut self,
        username: &str,
        domain: &str,
        active: bool,
    ) -> Result<usize, StoreError> {
        self.check()?;
        let mut n = 0;
        for r in self
            .rows
            .iter_mut()
            .filter(|r| r.username == username && r.domain == domain && r.is_mailbox())
        {
            r.active = active;
            n += 1;
        }
        Ok(n)
    }
    fn set_quota(
        &mut self,
        username: &str,
        domain: &str,
        quota: Option<&str>,
    ) -> Result<usize, StoreError> {
        self.check()?;
        let mut n = 0;
        for r in self
            .rows
            .iter_mut()
            .filter(|r| r.username == username && r.domain == domain && r.is_mailbox())
        {
            r.quota = quota.map(str::to_string);
            n += 1;
        }
        Ok(n)
    }
    fn retarget(&mut self, from: &str, to: &str) -> Result<usize, StoreError> {
        self.check()?;
        let mut n = 0;
        for r in self
            .rows
            .iter_mut()
            .filter(|r| r.mailbox == from && r.password.is_none())
        {
            r.mailbox = to.to_string();
            n += 1;
        }
        Ok(n)
    }
    fn schema_state(&mut self) -> Result<SchemaState, StoreError> {
        self.check()?;
        Ok(SchemaState::Version(super::migrate::LATEST))
    }
    fn apply_migration(&mut self, _version: u32, _sql: &str) -> Result<(), StoreError> {
        self.check()
    }
}
