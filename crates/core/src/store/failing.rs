//! A [`Store`] wrapper that fails exactly its Nth call, for tests of the
//! rule "a database error is never a definitive answer" (DESIGN.md,
//! "Failure semantics").
//!
//! A store that fails every call ([`super::memory::MemStore::broken`]) only
//! tests the first query of a lookup: an error swallowed by a later query
//! (the third `exact` of an alias walk, the `has_domain` after a miss, the
//! `resolve` inside `senders`) goes unseen, and smtpd would answer 5xx, or
//! Dovecot "unknown user", during a database problem. The way to make that
//! impossible as a class: count the calls C a lookup makes on a good store,
//! then run it C more times, failing call 1, then call 2, ... then call C;
//! each run must end in an error, never in found, not found, mismatch or
//! unknown. [`each_failure`] does exactly that.
//!
//! Only the Nth call fails; the calls after it succeed again, so code that
//! ignores an error and carries on gets every chance to produce a
//! (wrong) definitive answer, which the test then sees.
//!
//! Every method that asks the database counts, whatever it returns;
//! `kind` (a constant) and `rollback` (best effort, cannot report) do not.
//! Clones share the count and the failing call: a pool that opens a fresh
//! clone per request (Dovecot's `serve`) still counts every call of the one
//! lookup under test.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::{ChangeToken, Delete, Joined, Row, SchemaState, Store, StoreError};
use crate::password::PasswordHash;

/// `inner`, with its calls counted and call number `fail_at` (1-based)
/// failing with [`StoreError::Unavailable`].
#[derive(Debug, Clone)]
pub struct FailingStore<S> {
    inner: S,
    calls: Arc<AtomicUsize>,
    fail_at: Option<usize>,
    /// Every call from `fail_at` on fails (a database that went away),
    /// not only that one.
    fail_after: bool,
    /// Call `fail_at` panics instead of failing: a bug below the lookup.
    panics: bool,
    /// The method whose call failed, once it has.
    failed: Arc<Mutex<Option<&'static str>>>,
}

impl<S: Store> FailingStore<S> {
    /// Counts the calls, never fails: the run that measures a lookup.
    pub fn counting(inner: S) -> FailingStore<S> {
        FailingStore {
            inner,
            calls: Arc::new(AtomicUsize::new(0)),
            fail_at: None,
            fail_after: false,
            panics: false,
            failed: Arc::new(Mutex::new(None)),
        }
    }

    /// Fails call number `n` (the first call is 1), and only that one.
    pub fn failing_at(inner: S, n: usize) -> FailingStore<S> {
        FailingStore {
            fail_at: Some(n),
            ..FailingStore::counting(inner)
        }
    }

    /// Fails call number `n` and every call after it: the database went
    /// away (for the answer cache's stale-if-error).
    pub fn failing_from(inner: S, n: usize) -> FailingStore<S> {
        FailingStore {
            fail_after: true,
            ..FailingStore::failing_at(inner, n)
        }
    }

    /// Panics in call number `n`: for the test that a lookup that panics
    /// releases what it holds of the database.
    pub fn panicking_at(inner: S, n: usize) -> FailingStore<S> {
        FailingStore {
            panics: true,
            ..FailingStore::failing_at(inner, n)
        }
    }

    /// How many calls were made so far, by this store and its clones.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Whether the failing call has happened (a lookup that made fewer
    /// calls than `n` never met the failure).
    pub fn has_failed(&self) -> bool {
        self.fail_at.is_some_and(|n| self.calls() >= n)
    }

    /// The method whose call failed (`"exact"`, `"change_token"`, ...), once
    /// it has. A failed `change_token` only costs the answer cache its
    /// freshness: the lookup then runs on the store, so when its own calls
    /// succeed it gives the same answer as a good run (and no other).
    pub fn failed_call(&self) -> Option<&'static str> {
        *self.failed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one call; the Nth is the error.
    fn call(&self, what: &'static str) -> Result<(), StoreError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let fails = match self.fail_at {
            Some(at) if self.fail_after => n >= at,
            at => at == Some(n),
        };
        if fails && self.panics {
            panic!("test store panics in call {n} ({what})");
        }
        if fails {
            *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(what);
            Err(StoreError::Unavailable(format!(
                "test store fails call {n} ({what})"
            )))
        } else {
            Ok(())
        }
    }
}

/// Runs `lookup` on a counting copy of `store`, then once more for each
/// call it made, with that call failing. Returns the answer of the good
/// run and, for each failing call N, `(N, answer)`.
///
/// Panics if a failing run makes fewer than N calls: the lookup then
/// depends on something other than the store, and the test would prove
/// nothing for that N.
pub fn each_failure<S, T>(
    store: &S,
    mut lookup: impl FnMut(&mut dyn Store) -> T,
) -> (T, Vec<(usize, T)>)
where
    S: Store + Clone,
{
    let mut counting = FailingStore::counting(store.clone());
    let good = lookup(&mut counting);
    let failures = (1..=counting.calls())
        .map(|n| {
            let mut failing = FailingStore::failing_at(store.clone(), n);
            let answer = lookup(&mut failing);
            assert!(
                failing.has_failed(),
                "run {n} made only {} calls",
                failing.calls()
            );
            (n, answer)
        })
        .collect();
    (good, failures)
}

impl<S: Store> Store for FailingStore<S> {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn exact(&mut self, username: &str, domain: &str) -> Result<Vec<Row>, StoreError> {
        self.call("exact")?;
        self.inner.exact(username, domain)
    }
    fn exact_joined(&mut self, username: &str, domain: &str) -> Result<Joined, StoreError> {
        self.call("exact_joined")?;
        self.inner.exact_joined(username, domain)
    }
    fn exact_many(&mut self, keys: &[(&str, &str)]) -> Result<Vec<Row>, StoreError> {
        self.call("exact_many")?;
        self.inner.exact_many(keys)
    }
    fn wildcards(&mut self, domain: &str) -> Result<Vec<Row>, StoreError> {
        self.call("wildcards")?;
        self.inner.wildcards(domain)
    }
    fn has_domain(&mut self, domain: &str) -> Result<bool, StoreError> {
        self.call("has_domain")?;
        self.inner.has_domain(domain)
    }
    fn targeting(&mut self, mailbox: &str) -> Result<Vec<Row>, StoreError> {
        self.call("targeting")?;
        self.inner.targeting(mailbox)
    }
    fn wildcard_targets(&mut self) -> Result<Vec<Row>, StoreError> {
        self.call("wildcard_targets")?;
        self.inner.wildcard_targets()
    }
    fn sample_passwords(&mut self) -> Result<Vec<String>, StoreError> {
        self.call("sample_passwords")?;
        self.inner.sample_passwords()
    }
    fn change_token(&mut self) -> Result<Option<ChangeToken>, StoreError> {
        self.call("change_token")?;
        self.inner.change_token()
    }
    // Counted as a change check: it reads the database like one.
    fn change_token_in_place(&mut self) -> Option<Result<Option<ChangeToken>, StoreError>> {
        if let Err(e) = self.call("change_token") {
            return Some(Err(e));
        }
        self.inner.change_token_in_place()
    }
    // Cannot fail, so no call to count: the inner store's own checks are
    // what a lookup's failures come from.
    fn begin_lookup(&mut self) {
        self.inner.begin_lookup();
    }
    fn end_lookup(&mut self) {
        self.inner.end_lookup();
    }
    fn reopen(&mut self) -> Result<(), StoreError> {
        self.call("reopen")?;
        self.inner.reopen()
    }
    fn list(&mut self, domain: Option<&str>) -> Result<Vec<Row>, StoreError> {
        self.call("list")?;
        self.inner.list(domain)
    }
    fn scan(&mut self, domain: Option<&str>, each: &mut dyn FnMut(Row)) -> Result<(), StoreError> {
        self.call("scan")?;
        self.inner.scan(domain, each)
    }
    fn domains(&mut self) -> Result<Vec<String>, StoreError> {
        self.call("domains")?;
        self.inner.domains()
    }
    fn begin(&mut self) -> Result<(), StoreError> {
        self.call("begin")?;
        self.inner.begin()
    }
    fn commit(&mut self) -> Result<(), StoreError> {
        self.call("commit")?;
        self.inner.commit()
    }
    fn rollback(&mut self) {
        self.inner.rollback();
    }
    fn insert(&mut self, row: &Row) -> Result<(), StoreError> {
        self.call("insert")?;
        self.inner.insert(row)
    }
    fn delete(
        &mut self,
        username: &str,
        domain: &str,
        what: Delete<'_>,
    ) -> Result<usize, StoreError> {
        self.call("delete")?;
        self.inner.delete(username, domain, what)
    }
    fn set_password(
        &mut self,
        username: &str,
        domain: &str,
        hash: &PasswordHash,
    ) -> Result<usize, StoreError> {
        self.call("set_password")?;
        self.inner.set_password(username, domain, hash)
    }
    fn set_active(
        &mut self,
        username: &str,
        domain: &str,
        active: bool,
    ) -> Result<usize, StoreError> {
        self.call("set_active")?;
        self.inner.set_active(username, domain, active)
    }
    fn set_quota(
        &mut self,
        username: &str,
        domain: &str,
        quota: Option<&str>,
    ) -> Result<usize, StoreError> {
        self.call("set_quota")?;
        self.inner.set_quota(username, domain, quota)
    }
    fn retarget(&mut self, from: &str, to: &str) -> Result<usize, StoreError> {
        self.call("retarget")?;
        self.inner.retarget(from, to)
    }
    fn schema_state(&mut self) -> Result<SchemaState, StoreError> {
        self.call("schema_state")?;
        self.inner.schema_state()
    }
    fn apply_migration(&mut self, version: u32, sql: &str) -> Result<(), StoreError> {
        self.call("apply_migration")?;
        self.inner.apply_migration(version, sql)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemStore;

    #[test]
    fn only_the_nth_call_fails_and_clones_share_the_count() {
        let inner = MemStore::default().with("a", "x.org", "a@x.org", None);
        let mut s = FailingStore::failing_at(inner, 2);
        let mut twin = s.clone();
        assert!(s.exact("a", "x.org").is_ok());
        assert!(!s.has_failed());
        assert!(matches!(
            twin.has_domain("x.org"),
            Err(StoreError::Unavailable(_))
        ));
        assert!(s.has_failed());
        assert_eq!(s.wildcards("x.org").map(|r| r.len()).ok(), Some(0));
        s.rollback();
        assert_eq!(twin.calls(), 3);
    }

    #[test]
    fn each_failure_fails_each_call_once() {
        let inner = MemStore::default().with("a", "x.org", "a@x.org", None);
        let (good, failures) = each_failure(&inner, |s| {
            let first = s.exact("a", "x.org").is_ok();
            let second = s.has_domain("x.org").is_ok();
            (first, second)
        });
        assert_eq!(good, (true, true));
        assert_eq!(failures, [(1, (false, true)), (2, (true, false))]);
    }
}
