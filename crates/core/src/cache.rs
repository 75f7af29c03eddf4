//! The answer cache of the daemons (`table-mailtable`, `dovecot-mailtable
//! serve`): the last answer to each request, kept while the data it came
//! from is unchanged, and positive answers kept a while longer to ride out a
//! database outage ("stale-if-error", RFC 5861's name for the same idea in
//! HTTP caches).
//!
//! Correct by construction, not by expiry:
//! - before every lookup the caller asks the store for its
//!   [`ChangeToken`] ([`crate::Store::change_token`]); an entry is served only if
//!   it was stored under the token the store reports now. Any write, by the
//!   CLI, the `sqlite3` shell, a restore by `cp`, or another host on
//!   PostgreSQL, changes the token (each backend documents how, and how
//!   soon), so the next lookup asks the database again;
//! - the token is read *before* the answer is computed, so an answer is
//!   never filed under a token older than the data it saw;
//! - a store that cannot give a token (`Ok(None)`) is never served from the
//!   cache;
//! - when the change check fails, nothing is served from memory fresh; the
//!   lookup runs anyway, so an answer that needs no data (a key that is no
//!   address) is still given, and one that needs the database fails with it
//!   (a temporary failure) unless stale-if-error applies.
//!
//! Stale-if-error: when the change check or the lookup fails, an answer the
//! caller marked *positive* (a mailbox, an alias's destinations, user info,
//! a login's hash) that the database confirmed within `stale_if_error` is
//! served instead, and the outage is logged once. Negative answers (unknown
//! user, not our domain, the dummy hash of an unknown login) are never
//! served stale: during an outage those stay temporary failures, so no mail
//! bounces and no login is refused on old evidence. The one exception is
//! the caller's to make ([`AnswerCache::confirmed_negative`]): a negative
//! answer that sends no mail back, given under the data version the
//! database last showed (smtpd's `domain` check of an external
//! destination, which decides relaying, not bouncing). Nothing here ever turns
//! an error into "not found". Only an outage lets a cached answer stand in
//! ([`LookupError::is_outage`]): when the database answers and its data
//! cannot be served (an alias to an address that no longer has rows, a
//! row written by hand that cannot be read), the data changed since the
//! answer was cached, and the lookup is a temporary failure until the data
//! is fixed.
//!
//! Bounded memory: at most `entries` answers, kept in two generations (the
//! current map and the previous one, swapped when the current one is half
//! full), so the entries in use survive and the rest are dropped without
//! any per-hit bookkeeping. `entries = 0` turns the cache off.

/// The longest key kept ([`AnswerCache::put`]): a service name, a
/// separator and an address (254 bytes, RFC 5321), with room to spare.
pub const MAX_KEY: usize = 512;

use crate::resolve::ResolveError;
use crate::store::{ChangeToken, StoreError};
use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

/// Why a lookup gave no answer, and whether a cached answer may stand in.
pub trait LookupError: fmt::Display {
    /// True when the database could not answer (down, missing, locked,
    /// not a database right now): a positive answer it gave within
    /// `stale_if_error` stands in. False when it answered and the data
    /// itself cannot be served: nothing cached may stand in for data that
    /// changed.
    fn is_outage(&self) -> bool;
}

/// Every kind but [`StoreError::Other`]: the database could not be had
/// (down, locked, a file half-copied by a restore, which reads as no
/// database or one without the table for a moment, a config that cannot
/// be used). `Other` is the database answering with what cannot be read
/// as rows (a value of another type or encoding, a NULL, a column gone, a
/// statement the changed table refuses): the data changed, and what was
/// cached before must not stand in for it.
impl LookupError for StoreError {
    fn is_outage(&self) -> bool {
        !matches!(self, StoreError::Other(_))
    }
}

impl LookupError for ResolveError {
    fn is_outage(&self) -> bool {
        matches!(self, ResolveError::Store(e) if e.is_outage())
    }
}

/// Default bound on cached answers (each a key and a value of a few hundred
/// bytes at most: a few MB).
pub const DEFAULT_ENTRIES: usize = 20_000;

/// Default `stale_if_error`: an hour.
pub const DEFAULT_STALE_IF_ERROR: Duration = Duration::from_secs(3600);

/// How the cache is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// Most answers kept; 0 turns the cache off (stale-if-error too).
    pub entries: usize,
    /// How long after the database last confirmed a positive answer it may
    /// still be served when the database fails; zero turns that off.
    pub stale_if_error: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            entries: DEFAULT_ENTRIES,
            stale_if_error: DEFAULT_STALE_IF_ERROR,
        }
    }
}

/// An answer as the database gave it, with whether it may be served stale.
#[derive(Debug, Clone)]
pub struct Fetched<V> {
    /// The answer.
    pub value: V,
    /// A positive answer (found): may be served during an outage.
    pub positive: bool,
}

impl<V> Fetched<V> {
    /// A positive answer.
    pub fn positive(value: V) -> Fetched<V> {
        Fetched {
            value,
            positive: true,
        }
    }

    /// A negative answer: cached while the data is unchanged, never served
    /// stale.
    pub fn negative(value: V) -> Fetched<V> {
        Fetched {
            value,
            positive: false,
        }
    }
}

#[derive(Debug, Clone)]
struct Entry<V> {
    value: V,
    positive: bool,
    /// The data version the answer was computed under.
    generation: u64,
    /// When the database last gave this answer, or confirmed it: a fresh
    /// hit is one, the change check having found the data unchanged.
    seen: Instant,
}

/// Where a lookup stands after the change check: the data version it reads,
/// when the store gave one, and whether the check reached the database at
/// all. Handed back to [`AnswerCache::put`], so an answer computed while
/// another thread saw a newer version is filed under the older one and
/// never served fresh, and an answer that needed no data does not end an
/// outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    generation: Option<u64>,
    checked: bool,
}

/// How a lookup was answered, for the counters of the benchmarks and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Answered from the cache, the data unchanged.
    pub hits: u64,
    /// Asked the database.
    pub misses: u64,
    /// Answered stale during an outage.
    pub stale: u64,
}

/// The cache. `V` is the answer as the daemon sends it.
#[derive(Debug)]
pub struct AnswerCache<V> {
    settings: CacheSettings,
    /// The token of the current data version, when the last check gave one.
    token: Option<ChangeToken>,
    /// Bumped whenever the token changes or is lost.
    generation: u64,
    /// The generation of the last change check that succeeded: the data
    /// version the database last showed.
    confirmed: u64,
    /// The token that check gave.
    confirmed_token: Option<ChangeToken>,
    current: HashMap<String, Entry<V>>,
    previous: HashMap<String, Entry<V>>,
    /// In an outage (logged when it began).
    outage: bool,
    stats: CacheStats,
}

impl<V: Clone> AnswerCache<V> {
    /// An empty cache.
    pub fn new(settings: CacheSettings) -> AnswerCache<V> {
        AnswerCache {
            settings,
            token: None,
            generation: 0,
            confirmed: 0,
            confirmed_token: None,
            current: HashMap::new(),
            previous: HashMap::new(),
            outage: false,
            stats: CacheStats::default(),
        }
    }

    /// The settings.
    pub fn settings(&self) -> CacheSettings {
        self.settings
    }

    /// Counters since the start.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// How many answers are kept.
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    /// Whether no answer is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forget everything (smtpd's `update`, `smtpctl update table`).
    pub fn clear(&mut self) {
        self.current = HashMap::new();
        self.previous = HashMap::new();
        self.token = None;
        self.generation += 1;
    }

    /// Record the store's answer to the change check; returns the ticket
    /// of this lookup. A new token, or none, starts a new data version.
    pub fn begin(&mut self, token: Option<ChangeToken>) -> Ticket {
        if token.is_none() || token != self.token {
            self.generation += 1;
            self.token = token;
        }
        if token.is_some() {
            self.confirmed = self.generation;
            self.confirmed_token = token;
        }
        Ticket {
            generation: token.map(|_| self.generation),
            checked: true,
        }
    }

    /// The ticket of a lookup whose change check failed: the data version
    /// is unknown from here on, nothing is fresh until a check succeeds
    /// again, and the lookup's answer, if it has one, is no sign that the
    /// database is back.
    pub fn begin_unchecked(&mut self) -> Ticket {
        Ticket {
            checked: false,
            ..self.begin(None)
        }
    }

    /// The answer stored under this lookup's data version, if any. A hit
    /// renews the answer's time for stale-if-error: the data it came from
    /// was just found unchanged.
    pub fn fresh(&mut self, ticket: Ticket, key: &str) -> Option<V> {
        let generation = ticket.generation?;
        if self.settings.entries == 0 {
            return None;
        }
        let hit = match self.current.get_mut(key) {
            Some(e) if e.generation == generation => {
                e.seen = Instant::now();
                Some(e.value.clone())
            }
            Some(_) => None,
            None => {
                // Used again: move it to the current generation so the next
                // swap keeps it.
                let mut e = self.previous.remove(key)?;
                let hit = (e.generation == generation).then(|| {
                    e.seen = Instant::now();
                    e.value.clone()
                });
                self.insert(key, e);
                hit
            }
        };
        if hit.is_some() {
            self.stats.hits += 1;
        }
        hit
    }

    /// File an answer the database just gave (under the lookup's ticket).
    /// The end of an outage is logged here, when the change check of the
    /// lookup succeeded: an answer that needs no data (smtpd's delivery
    /// user keys) comes while the database is still down.
    pub fn put(&mut self, ticket: Ticket, key: &str, fetched: Fetched<V>) {
        self.stats.misses += 1;
        if self.outage && ticket.checked {
            self.outage = false;
            tracing::warn!("database answers again; cached answers are checked against it");
        }
        // A key longer than any key of an account is not kept: it names
        // no account (an address is 254 bytes at most, RFC 5321), and
        // 20,000 of them sent by a client (Dovecot passes the login name
        // as typed) would put hundreds of MB under a bound that counts
        // answers. The lookup is answered all the same.
        if self.settings.entries == 0 || key.len() > MAX_KEY {
            return;
        }
        // Without a token the answer cannot be served fresh (generation 0
        // is never current: `begin` has bumped it at least once), but a
        // positive one can still ride out an outage.
        let generation = ticket.generation.unwrap_or(0);
        if !fetched.positive && ticket.generation.is_none() {
            self.current.remove(key);
            self.previous.remove(key);
            return;
        }
        self.insert(
            key,
            Entry {
                value: fetched.value,
                positive: fetched.positive,
                generation,
                seen: Instant::now(),
            },
        );
    }

    /// After the change check or the lookup failed in an outage: a
    /// positive answer the database gave within `stale_if_error`, if there
    /// is one. The first stale answer of an outage is logged, with the
    /// error. Never an answer for an error that is no outage.
    pub fn stale(&mut self, key: &str, error: &dyn LookupError) -> Option<V> {
        if !error.is_outage() {
            return None;
        }
        let value = match self.recent(key) {
            Some((v, true)) => v.clone(),
            _ => return None,
        };
        self.note_stale(error);
        Some(value)
    }

    /// Drop what is kept for `key`: the database answered that its data
    /// can no longer be served, so the answer kept must not stand in for
    /// it in a later outage either.
    pub fn forget(&mut self, key: &str) {
        self.current.remove(key);
        self.previous.remove(key);
    }

    /// The answer kept for `key`, positive or not, when the database gave
    /// it within `stale_if_error`: for a caller whose negative answers can
    /// be steps towards a positive one (smtpd's alias walk, where a key
    /// not found sends smtpd on to the next key). Counts nothing; a caller
    /// that serves it calls [`AnswerCache::note_stale`].
    pub fn recent(&self, key: &str) -> Option<(&V, bool)> {
        self.within_stale_limit(key).map(|e| (&e.value, e.positive))
    }

    /// The entry kept for `key` when the database gave it within
    /// `stale_if_error` (never with 0, which disables stale answers).
    fn within_stale_limit(&self, key: &str) -> Option<&Entry<V>> {
        let limit = self.settings.stale_if_error;
        if limit.is_zero() {
            return None;
        }
        let e = self.current.get(key).or_else(|| self.previous.get(key))?;
        (e.seen.elapsed() <= limit).then_some(e)
    }

    /// In an outage, the negative answer kept for `key` when it holds for
    /// the data version the database last showed: computed or confirmed
    /// under the last change check that succeeded, and within
    /// `stale_if_error`. For a caller whose negative answer sends no mail
    /// back (smtpd's `domain` check of an external destination: "not
    /// ours" means relay it, as before the outage). A change the database
    /// made after that check, and no lookup saw, is what it could miss:
    /// `unchanged` tells, from the token of that check
    /// ([`Store::known_unchanged_since`](crate::Store::known_unchanged_since)),
    /// whether the data is still that version (`None`: cannot tell, and
    /// the answer is served). Counts nothing, as [`AnswerCache::recent`].
    pub fn confirmed_negative(
        &self,
        key: &str,
        unchanged: impl FnOnce(ChangeToken) -> Option<bool>,
    ) -> Option<&V> {
        let e = self.within_stale_limit(key)?;
        if e.positive || e.generation != self.confirmed {
            return None;
        }
        let token = self.confirmed_token?;
        unchanged(token).unwrap_or(true).then_some(&e.value)
    }

    /// Count a stale answer, and log the first of an outage with the
    /// error.
    pub fn note_stale(&mut self, error: &dyn fmt::Display) {
        self.stats.stale += 1;
        if !self.outage {
            self.outage = true;
            tracing::warn!(
                "database unavailable ({error}); serving positive answers it gave \
                 within the last {} s from the cache, every other lookup fails \
                 temporarily",
                self.settings.stale_if_error.as_secs()
            );
        }
    }

    fn insert(&mut self, key: &str, entry: Entry<V>) {
        if self.previous.contains_key(key) {
            self.previous.remove(key);
        }
        if !self.current.contains_key(key) && self.current.len() >= self.half() {
            match self.settings.entries {
                // One answer: no room for a previous generation.
                1 => self.current.clear(),
                _ => self.previous = std::mem::take(&mut self.current),
            }
        }
        self.current.insert(key.to_string(), entry);
    }

    /// A generation's size: two of them hold `entries` answers at most
    /// (rounded up, an odd bound held one answer too many).
    fn half(&self) -> usize {
        (self.settings.entries / 2).max(1)
    }

    /// One whole lookup for a caller that owns its store: change check,
    /// fresh hit, else `compute`, else (on error) a stale positive answer.
    ///
    /// `token` is the store's answer to [`crate::Store::change_token`],
    /// asked just before (its error in the caller's error type). When it
    /// failed, `compute` still runs; an error of `compute` is the lookup's
    /// error unless a stale answer applies.
    pub fn lookup<E: LookupError>(
        &mut self,
        token: Result<Option<ChangeToken>, E>,
        key: &str,
        compute: impl FnOnce() -> Result<Fetched<V>, E>,
    ) -> Result<V, E> {
        let ticket = match token {
            Ok(t) => self.begin(t),
            // The data version is unknown from here on: nothing is fresh
            // until a check succeeds again. The lookup itself still runs:
            // an answer that needs no data (smtpd asks its delivery user
            // names back, `hugo_barrera.io@`, as part of delivering to a
            // mailbox) stays right, and one that needs data fails with
            // the database.
            Err(_) => self.begin_unchecked(),
        };
        if let Some(v) = self.fresh(ticket, key) {
            return Ok(v);
        }
        match compute() {
            Ok(f) => {
                let value = f.value.clone();
                self.put(ticket, key, f);
                Ok(value)
            }
            Err(e) => match self.stale(key, &e) {
                Some(v) => Ok(v),
                None => {
                    if !e.is_outage() {
                        self.forget(key);
                    }
                    Err(e)
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(n: u64) -> Option<ChangeToken> {
        Some(ChangeToken::new([n, 0, 0, 0, 0, 0]))
    }

    fn cache(entries: usize) -> AnswerCache<String> {
        AnswerCache::new(CacheSettings {
            entries,
            stale_if_error: Duration::from_secs(60),
        })
    }

    type R = Result<String, Fail>;

    /// A lookup's error: an outage unless it says otherwise.
    #[derive(Debug, PartialEq)]
    struct Fail {
        why: String,
        outage: bool,
    }

    impl From<&str> for Fail {
        fn from(why: &str) -> Fail {
            Fail {
                why: why.to_string(),
                outage: true,
            }
        }
    }

    impl fmt::Display for Fail {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&self.why)
        }
    }

    impl LookupError for Fail {
        fn is_outage(&self) -> bool {
            self.outage
        }
    }

    /// The database answered, and its data cannot be served.
    fn broken() -> Result<Fetched<String>, Fail> {
        Err(Fail {
            why: "alias points to nothing".into(),
            outage: false,
        })
    }

    fn found(v: &str) -> impl FnOnce() -> Result<Fetched<String>, Fail> + '_ {
        move || Ok(Fetched::positive(v.to_string()))
    }

    fn unknown() -> Result<Fetched<String>, Fail> {
        Ok(Fetched::negative("unknown".into()))
    }

    fn down() -> Result<Fetched<String>, Fail> {
        Err("database unavailable".into())
    }

    fn never() -> Result<Fetched<String>, Fail> {
        panic!("the database was asked although the answer was cached")
    }

    fn outage() -> Result<Option<ChangeToken>, Fail> {
        Err("database unavailable: gone".into())
    }

    #[test]
    fn an_unchanged_token_serves_the_cached_answer() {
        let mut c = cache(10);
        assert_eq!(c.lookup(Ok(tok(1)), "k", found("a")), R::Ok("a".into()));
        assert_eq!(c.lookup(Ok(tok(1)), "k", never), R::Ok("a".into()));
        assert_eq!(
            c.stats(),
            CacheStats {
                hits: 1,
                misses: 1,
                stale: 0
            }
        );
    }

    #[test]
    fn a_new_token_asks_the_database_again() {
        let mut c = cache(10);
        c.lookup(Ok(tok(1)), "k", found("a")).unwrap();
        assert_eq!(c.lookup(Ok(tok(2)), "k", found("b")), R::Ok("b".into()));
        assert_eq!(c.lookup(Ok(tok(2)), "k", never), R::Ok("b".into()));
        // Back to an earlier token is a change too (a restored backup).
        assert_eq!(c.lookup(Ok(tok(1)), "k", found("c")), R::Ok("c".into()));
    }

    #[test]
    fn negative_answers_are_cached_while_the_data_is_unchanged() {
        let mut c = cache(10);
        assert_eq!(c.lookup(Ok(tok(1)), "k", unknown), R::Ok("unknown".into()));
        assert_eq!(c.lookup(Ok(tok(1)), "k", never), R::Ok("unknown".into()));
    }

    #[test]
    fn a_store_without_a_token_is_never_served_from_the_cache() {
        let mut c = cache(10);
        c.lookup(Ok(None), "k", found("a")).unwrap();
        assert_eq!(c.lookup(Ok(None), "k", found("b")), R::Ok("b".into()));
        assert_eq!(c.stats().hits, 0);
    }

    #[test]
    fn stale_if_error_serves_positive_answers_only() {
        let mut c = cache(10);
        c.lookup(Ok(tok(1)), "mailbox", found("a")).unwrap();
        c.lookup(Ok(tok(1)), "unknown", unknown).unwrap();
        // The change check fails.
        assert_eq!(c.lookup(outage(), "mailbox", down), R::Ok("a".into()));
        assert_eq!(
            c.lookup(outage(), "unknown", down),
            R::Err("database unavailable".into())
        );
        assert_eq!(
            c.lookup(outage(), "never-seen", down),
            R::Err("database unavailable".into())
        );
        // An answer that needs no data is still given, never from memory.
        assert_eq!(
            c.lookup(outage(), "not-an-address", unknown),
            R::Ok("unknown".into())
        );
        // The check fails but the lookup answers: its answer, kept for
        // the next outage.
        assert_eq!(c.lookup(outage(), "mailbox", found("b")), R::Ok("b".into()));
        // The check passes but the lookup fails.
        assert_eq!(c.lookup(Ok(tok(1)), "mailbox", down), R::Ok("b".into()));
        assert_eq!(
            c.lookup(Ok(tok(1)), "unknown", down),
            R::Err("database unavailable".into())
        );
        assert_eq!(c.stats().stale, 2);
        assert_eq!(c.stats().hits, 0);
    }

    /// A negative answer stands for an outage only when it was given (or
    /// confirmed) under the data version the last successful check saw,
    /// within `stale_if_error`; a positive one is no negative.
    #[test]
    fn a_negative_answer_holds_only_for_the_last_data_seen() {
        let mut c = cache(10);
        c.lookup(Ok(tok(1)), "d", unknown).unwrap();
        c.lookup(Ok(tok(1)), "old", unknown).unwrap();
        c.lookup(Ok(tok(1)), "mailbox", found("a")).unwrap();
        // The data changes; only "d" is asked again.
        c.lookup(Ok(tok(2)), "d", unknown).unwrap();
        assert!(c.lookup(outage(), "x", down).is_err());
        // The store cannot tell whether the data moved since (PostgreSQL).
        let unknown_since = |_| None;
        assert_eq!(
            c.confirmed_negative("d", unknown_since),
            Some(&"unknown".to_string())
        );
        assert_eq!(c.confirmed_negative("old", unknown_since), None);
        assert_eq!(c.confirmed_negative("mailbox", unknown_since), None);
        assert_eq!(c.confirmed_negative("never", unknown_since), None);
        // Still so after more failed checks; and off with stale_if_error.
        assert!(c.lookup(outage(), "y", down).is_err());
        assert!(c.confirmed_negative("d", unknown_since).is_some());
        // The store tells (SQLite's file): asked with the token of the
        // last check that succeeded, and no answer once the data moved.
        let mut asked = None;
        let still = c.confirmed_negative("d", |t| {
            asked = Some(t);
            Some(true)
        });
        assert!(still.is_some());
        assert_eq!(asked, tok(2));
        assert_eq!(c.confirmed_negative("d", |_| Some(false)), None);
        let mut off = AnswerCache::new(CacheSettings {
            entries: 10,
            stale_if_error: Duration::ZERO,
        });
        off.lookup(Ok(tok(1)), "d", unknown).unwrap();
        assert_eq!(off.confirmed_negative("d", unknown_since), None);
    }

    /// The database answers, with data that cannot be served (an alias
    /// whose target was deleted): the data changed since the answer was
    /// cached, which no longer stands, and no outage is noted.
    #[test]
    fn a_data_error_is_never_served_stale() {
        let mut c = cache(10);
        c.lookup(Ok(tok(1)), "alias", found("a")).unwrap();
        assert_eq!(
            c.lookup(Ok(tok(2)), "alias", broken),
            R::Err(Fail {
                why: "alias points to nothing".into(),
                outage: false
            })
        );
        assert_eq!(
            c.lookup(outage(), "alias", broken).map_err(|e| e.outage),
            Err(false)
        );
        assert_eq!(c.stats().stale, 0);
        // Nor in an outage after it: the answer is forgotten.
        assert_eq!(
            c.lookup(outage(), "alias", down),
            R::Err("database unavailable".into())
        );
        assert_eq!(c.stats().stale, 0);
    }

    /// Which store errors are outages: every kind but `Other`, the
    /// database answering with rows that cannot be read (a NULL or a
    /// value of another type or encoding written by hand, a column gone).
    /// Through the resolver the same.
    #[test]
    fn store_errors_are_outages_but_unreadable_rows() {
        let outage = |e: StoreError| (e.is_outage(), ResolveError::Store(e).is_outage());
        for e in [
            StoreError::Unavailable("locked".into()),
            StoreError::NotADatabase("half copied".into()),
            StoreError::Schema("no users table".into()),
            StoreError::Config("bad url".into()),
        ] {
            assert_eq!(outage(e), (true, true));
        }
        let unreadable = StoreError::Other("error deserializing column 2".into());
        assert_eq!(outage(unreadable), (false, false));
        let mut c: AnswerCache<String> = cache(10);
        c.lookup::<StoreError>(Ok(tok(1)), "alias", || {
            Ok(Fetched {
                value: "a".into(),
                positive: true,
            })
        })
        .unwrap();
        let r = c.lookup(Ok(tok(2)), "alias", || {
            Err(StoreError::Other("invalid byte sequence".into()))
        });
        assert!(r.is_err());
        assert_eq!(c.stats().stale, 0);
    }

    /// The stale window counts from when the database last confirmed an
    /// answer, and a fresh hit confirms it: a mailbox that gets mail all
    /// day from the cache of an unchanged database rides out an outage
    /// that starts an hour after its answer was first computed.
    #[test]
    fn a_fresh_hit_renews_the_stale_window() {
        let mut c = cache(10);
        let backdate = |c: &mut AnswerCache<String>, key: &str| {
            let e = c.current.get_mut(key).expect("cached");
            e.seen = Instant::now()
                .checked_sub(Duration::from_secs(120))
                .expect("the clock is past 120 s");
        };
        c.lookup(Ok(tok(1)), "hit", found("a")).unwrap();
        c.lookup(Ok(tok(1)), "idle", found("b")).unwrap();
        backdate(&mut c, "hit");
        backdate(&mut c, "idle");
        assert_eq!(c.lookup(Ok(tok(1)), "hit", never), R::Ok("a".into()));
        assert_eq!(c.lookup(outage(), "hit", down), R::Ok("a".into()));
        // Not asked within the window: the outage is not ridden out.
        assert_eq!(
            c.lookup(outage(), "idle", down),
            R::Err("database unavailable".into())
        );
    }

    /// An outage is logged once: an answer that needs no data, given
    /// while the change check still fails, is no end of it; a lookup
    /// whose check and query both succeed is.
    #[test]
    fn only_a_lookup_that_reached_the_database_ends_an_outage() {
        let mut c = cache(10);
        c.lookup(Ok(tok(1)), "mailbox", found("a")).unwrap();
        c.lookup(outage(), "mailbox", down).unwrap();
        assert!(c.outage);
        c.lookup(outage(), "not-an-address", unknown).unwrap();
        assert!(c.outage, "an answer without data ended the outage");
        c.lookup(outage(), "mailbox", down).unwrap();
        assert_eq!(c.stats().stale, 2);
        c.lookup(Ok(tok(1)), "mailbox", found("a")).unwrap();
        assert!(!c.outage);
    }

    #[test]
    fn after_an_outage_nothing_is_served_without_asking() {
        let mut c = cache(10);
        c.lookup(Ok(tok(1)), "k", found("a")).unwrap();
        c.lookup(outage(), "k", down).unwrap();
        // Same token as before the outage: still asked again, because the
        // outage broke the chain of checks (a reconnect, a replaced file).
        assert_eq!(c.lookup(Ok(tok(1)), "k", found("b")), R::Ok("b".into()));
        assert_eq!(c.lookup(Ok(tok(1)), "k", never), R::Ok("b".into()));
    }

    #[test]
    fn a_negative_answer_replaces_a_positive_one_for_the_outage() {
        // Deleted while the database was up: the delete must hold through
        // the next outage.
        let mut c = cache(10);
        c.lookup(Ok(tok(1)), "k", found("a")).unwrap();
        c.lookup(Ok(tok(2)), "k", unknown).unwrap();
        assert!(c.lookup(outage(), "k", down).is_err());
    }

    #[test]
    fn stale_if_error_has_an_age_limit_and_can_be_off() {
        let mut c = AnswerCache::new(CacheSettings {
            entries: 10,
            stale_if_error: Duration::from_millis(30),
        });
        c.lookup(Ok(tok(1)), "k", found("a")).unwrap();
        assert_eq!(c.lookup(outage(), "k", down), R::Ok("a".into()));
        std::thread::sleep(Duration::from_millis(60));
        assert!(c.lookup(outage(), "k", down).is_err());

        let mut off = AnswerCache::new(CacheSettings {
            entries: 10,
            stale_if_error: Duration::ZERO,
        });
        off.lookup(Ok(tok(1)), "k", found("a")).unwrap();
        assert!(off.lookup(outage(), "k", down).is_err());
    }

    #[test]
    fn a_positive_answer_without_a_token_still_rides_out_an_outage() {
        let mut c = cache(10);
        c.lookup(Ok(None), "k", found("a")).unwrap();
        assert_eq!(c.lookup(outage(), "k", down), R::Ok("a".into()));
    }

    #[test]
    fn an_answer_computed_under_an_older_version_is_never_fresh() {
        // Thread A checks (version 1) and computes slowly; thread B sees
        // version 2 meanwhile. A's answer must not be served as current.
        let mut c = cache(10);
        let a = c.begin(tok(1));
        let b = c.begin(tok(2));
        c.put(a, "k", Fetched::positive("old".to_string()));
        assert_eq!(c.fresh(b, "k"), None);
    }

    #[test]
    fn cleared_by_update() {
        let mut c = cache(10);
        c.lookup(Ok(tok(1)), "k", found("a")).unwrap();
        c.clear();
        assert!(c.is_empty());
        assert_eq!(c.lookup(Ok(tok(1)), "k", found("b")), R::Ok("b".into()));
    }

    #[test]
    fn memory_is_bounded_and_keys_in_use_survive() {
        let mut c = cache(100);
        c.lookup(Ok(tok(1)), "hot", found("h")).unwrap();
        for i in 0..10_000 {
            let k = format!("cold{i}");
            c.lookup(Ok(tok(1)), &k, found("x")).unwrap();
            assert!(c.len() <= 100, "{} entries", c.len());
            // The hot key is asked as often as real traffic repeats it.
            if i % 10 == 0 {
                assert_eq!(c.lookup(Ok(tok(1)), "hot", never), R::Ok("h".into()));
            }
        }
    }

    /// A key no account has (longer than any address) is answered but
    /// not kept: the bound counts answers, and such keys from a client
    /// would otherwise fill it with their bytes.
    #[test]
    fn keys_longer_than_an_address_are_not_kept() {
        let mut c = cache(100);
        let long = "x".repeat(MAX_KEY + 1);
        assert_eq!(c.lookup(Ok(tok(1)), &long, found("a")), R::Ok("a".into()));
        assert!(c.is_empty());
        assert_eq!(c.lookup(Ok(tok(1)), &long, found("b")), R::Ok("b".into()));
        let fits = "x".repeat(MAX_KEY);
        c.lookup(Ok(tok(1)), &fits, found("a")).unwrap();
        assert_eq!(c.len(), 1);
    }

    /// Never more than `entries` answers, odd bounds and 1 included.
    #[test]
    fn the_bound_holds_for_every_size() {
        for entries in 1..=9 {
            let mut c = cache(entries);
            for i in 0..50 {
                c.lookup(Ok(tok(1)), &format!("k{i}"), found("x")).unwrap();
                assert!(c.len() <= entries, "{entries}: {} held", c.len());
            }
            // The last answer is always kept.
            assert_eq!(c.lookup(Ok(tok(1)), "k49", never), R::Ok("x".into()));
        }
    }

    #[test]
    fn zero_entries_turns_the_cache_off() {
        let mut c = cache(0);
        c.lookup(Ok(tok(1)), "k", found("a")).unwrap();
        assert_eq!(c.lookup(Ok(tok(1)), "k", found("b")), R::Ok("b".into()));
        assert!(c.lookup(outage(), "k", down).is_err());
        assert!(c.is_empty());
    }
}
