//! The database side of the table: (service, key) -> store calls -> the
//! value smtpd expects (`table_parse_lookup` in `usr.sbin/smtpd/table.c`).
//!
//! | service | key from smtpd | value |
//! |---|---|---|
//! | `alias` | each key of smtpd's virtual walk | final destinations: delivery user names of our mailboxes, external addresses, `, `-separated |
//! | `domain` | recipient domain | the domain |
//! | `credentials` | SMTP AUTH user name | `address:hash`, the bare crypt string; for an unknown or disabled login a dummy hash of the stored hashes' cost that matches no password |
//! | `userinfo` | delivery user name (`hugo_barrera.io`) | `uid:gid:home` |
//! | `mailaddrmap` | authenticated user name | own address, aliases reaching it, `@dom` of catch-alls |
//! | `mailaddr` | an address (check) | found when deliverable |
//! | `auth` | `user:password`, lower-cased by smtpd | check only |
//!
//! Every database problem is an `error` answer (smtpd: 4xx), never
//! not-found (5xx). A store that cannot be opened is retried on the next
//! request, so a database that comes back serves again without restarting
//! smtpd.
//!
//! Answers go through the answer cache ([`mailtable_core::cache`]), keyed
//! by service and key and checked against the database's change token
//! before each one: a repeated recipient costs one change check instead of
//! the queries of the resolution, and a mailbox or alias that answered
//! within `stale_if_error` keeps answering through a database outage.
//! Only through an outage: data the database gives that cannot be served
//! (an alias whose target lost its rows, a row written by hand that cannot
//! be read) is a temporary failure at once, whatever was cached before.
//! `auth` is never cached (its key carries the password); smtpd's `update`
//! (`smtpctl update table`) empties the cache.

use crate::{Answer, Handler, Service};
use mailtable_core::accounts::{AccountError, Accounts, Credentials, Verdict, Verifier};
use mailtable_core::cache::{AnswerCache, Fetched, LookupError};
use mailtable_core::logging::{left_out_note, Throttle};
use mailtable_core::resolve::{smtpd_list, KeyAnswer, ResolveError};
use mailtable_core::store::{self, Access, OpenOptions, SchemaState};
use mailtable_core::{Address, Config, Domain, Outcome, Store, StoreError};
use std::fmt;
use std::panic::{self, AssertUnwindSafe};

/// Failed lookups, logged at most once a second (the table's stderr is
/// smtpd's log).
static LOOKUP_FAILURES: Throttle = Throttle::new();

/// The table: config plus a lazily (re)opened read-only store.
pub struct Tables {
    config: Result<Config, String>,
    accounts: Accounts,
    store: Option<Box<dyn Store>>,
    name: String,
    /// Taken out while a lookup runs (the lookup borrows the rest).
    cache: Option<AnswerCache<Option<String>>>,
    /// Reads the config again, at `update`; `None` for a config given
    /// as it is (tests, benchmarks).
    reload: Option<Box<dyn Fn() -> Result<Config, String>>>,
}

/// What a lookup gives: the value smtpd gets (`None`: not found), and
/// whether it may outlive an outage.
type Looked = Result<Fetched<Option<String>>, Failure>;

/// Why a lookup has no answer (smtpd's `error`, a temporary failure): the
/// database could not answer, or it answered with data that cannot be
/// served. Only the first lets a cached answer stand in.
#[derive(Debug)]
struct Failure {
    why: String,
    outage: bool,
}

impl Failure {
    /// The database answered; what it holds cannot be served.
    fn data(why: impl Into<String>) -> Failure {
        Failure {
            why: why.into(),
            outage: false,
        }
    }
}

/// The config or the store could not be had: an outage.
impl From<String> for Failure {
    fn from(why: String) -> Failure {
        Failure { why, outage: true }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        Failure {
            outage: e.is_outage(),
            why: e.to_string(),
        }
    }
}

impl From<ResolveError> for Failure {
    fn from(e: ResolveError) -> Failure {
        Failure {
            outage: e.is_outage(),
            why: e.to_string(),
        }
    }
}

impl From<AccountError> for Failure {
    fn from(e: AccountError) -> Failure {
        Failure::data(e.to_string())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.why)
    }
}

impl LookupError for Failure {
    fn is_outage(&self) -> bool {
        self.outage
    }
}

/// The cache's key for a request.
fn cache_key(service: Service, key: &str) -> String {
    // Not `format!`: this runs for every lookup, and `concat` (one
    // allocation of the exact size) is a fraction of its cost.
    [service.name(), "\t", key].concat()
}

/// A found value is positive, not-found is negative.
fn by_value(v: Result<Option<String>, Failure>) -> Looked {
    v.map(|v| Fetched {
        positive: v.is_some(),
        value: v,
    })
}

impl Tables {
    /// A table from a loaded config, or from the reason the config could not
    /// be loaded (every answer is then that error: smtpd keeps running and
    /// tempfails, and its log says why).
    pub fn new(config: Result<Config, String>) -> Tables {
        let fallback = Config::default();
        let settings = config.as_ref().unwrap_or(&fallback);
        let accounts = Accounts::new(settings);
        let mut tables = Tables {
            config,
            accounts,
            store: None,
            name: String::from("?"),
            cache: None,
            reload: None,
        };
        tables.cache = Some(tables.new_cache());
        tables
    }

    /// A table whose config `load` reads, now and again at every `update`
    /// (`smtpctl update table`): a config fixed or changed while smtpd
    /// runs takes effect without a restart. A load that fails at start is
    /// served as [`Tables::new`] serves it; one that fails at `update`
    /// fails the update and keeps the config in use.
    pub fn loading(load: impl Fn() -> Result<Config, String> + 'static) -> Tables {
        let config = load();
        if let Err(e) = &config {
            tracing::error!(
                "{e}; answering every lookup with a temporary failure until it is fixed \
                 (`smtpctl update table NAME` reads it again)"
            );
        }
        let mut t = Tables::new(config);
        t.reload = Some(Box::new(load));
        t
    }

    /// A table over an already opened store (tests, benchmarks).
    pub fn with_store(config: Config, store: Box<dyn Store>) -> Tables {
        let mut t = Tables::new(Ok(config));
        t.store = Some(store);
        t
    }

    fn config(&self) -> Result<&Config, String> {
        self.config.as_ref().map_err(Clone::clone)
    }

    /// The store and the policy, borrowed together.
    fn store(&mut self) -> Result<(&mut (dyn Store + 'static), &Accounts), String> {
        if self.store.is_none() {
            let config = self.config()?;
            let url = config.database_url()?;
            let opts = OpenOptions {
                access: Access::ReadOnly,
                timeout: config.timeout(),
            };
            let s = store::open(&url, &opts).map_err(|e| e.to_string())?;
            tracing::info!(table = %self.name, database = %url, "database opened");
            self.store = Some(s);
        }
        match self.store.as_deref_mut() {
            Some(s) => Ok((s, &self.accounts)),
            None => Err("no database".to_string()),
        }
    }

    /// Run a lookup through the cache; on any error log it and answer
    /// `error`. The backends drop a failed connection themselves and
    /// reconnect on the next call (the PostgreSQL one with back-off), so
    /// nothing is reopened here.
    fn answer(
        &mut self,
        service: Service,
        key: &str,
        f: impl FnOnce(&mut Self) -> Looked,
    ) -> Answer {
        self.begin_lookup();
        // The lookup ends also when it panics (the loop answers `error`
        // and goes on): the store's read lock must not outlive it, or a
        // write by the CLI would wait for smtpd's next request.
        let result = panic::catch_unwind(AssertUnwindSafe(|| self.cached(service, key, f)));
        self.end_lookup();
        match result {
            Ok(result) => self.reply(service, result),
            Err(payload) => {
                // The cache was out for the lookup and is lost with it:
                // start an empty one rather than run uncached from now on.
                if self.cache.is_none() {
                    self.cache = Some(self.new_cache());
                }
                panic::resume_unwind(payload)
            }
        }
    }

    /// [`Tables::answer`]'s lookup: the change check, then the cache.
    fn cached(
        &mut self,
        service: Service,
        key: &str,
        f: impl FnOnce(&mut Self) -> Looked,
    ) -> Result<Option<String>, Failure> {
        let token = self
            .store()
            .map_err(Failure::from)
            .and_then(|(s, _)| s.change_token().map_err(Failure::from));
        match self.cache.take() {
            Some(mut cache) => {
                let ck = cache_key(service, key);
                let mut r = cache.lookup(token, &ck, || f(self));
                if let Err(e) = &r {
                    if e.outage
                        && (self.walk_goes_on(&cache, service, key)
                            || self.still_not_ours(&cache, service, &ck))
                    {
                        cache.note_stale(e);
                        r = Ok(None);
                    }
                }
                self.cache = Some(cache);
                r
            }
            None => token.and_then(|_| f(self).map(|v| v.value)),
        }
    }

    /// `update`'s part that asks the database.
    fn reopen_and_check(&mut self) -> Result<(), String> {
        if let Some(s) = self.store.as_mut() {
            s.reopen().map_err(|e| e.to_string())?;
        }
        // `smtpctl update table` prints this answer: a file that opens
        // but is no mailtable database (emptied, the wrong path, a restore
        // of the wrong file) is said here, not answered "ok" and then an
        // error for every lookup.
        let (s, _) = self.store()?;
        if s.schema_state().map_err(|e| e.to_string())? == SchemaState::Empty {
            return Err(format!(
                "{} has no users table: not a mailtable database (mailtable init creates one)",
                s.kind()
            ));
        }
        // The query every lookup makes first, which reads every column a
        // lookup needs: a users table dropped or replaced behind the
        // schema's version table, one without a column lookups read (no
        // `password`), or one the daemon may not read, fails here too, and
        // the table in use is kept.
        s.exact("update-check", "update-check.invalid")
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn new_cache(&self) -> AnswerCache<Option<String>> {
        let fallback = Config::default();
        let settings = self.config.as_ref().unwrap_or(&fallback);
        AnswerCache::new(settings.cache_settings())
    }

    /// One request is one lookup for the store ([`Store::begin_lookup`]):
    /// the change check and every query read the file as it was when the
    /// request came, and on SQLite one read transaction. A store not
    /// opened yet is opened by the lookup itself, once.
    fn begin_lookup(&mut self) {
        if let Some(s) = self.store.as_deref_mut() {
            s.begin_lookup();
        }
    }

    fn end_lookup(&mut self) {
        if let Some(s) = self.store.as_deref_mut() {
            s.end_lookup();
        }
    }

    /// In an outage, whether the `not found` this alias key got before may
    /// be answered again: smtpd's walk (`aliases_virtual_get`) then goes
    /// on to its next keys, and one of them got a found answer that the
    /// cache still serves. So a tagged address of a mailbox
    /// (`hugo+news@dom`, found at `hugo@dom`) and an address of a
    /// catch-all (`anything@dom`, found at `@dom`) keep being accepted,
    /// while an address whose walk found nothing stays a temporary failure.
    fn walk_goes_on(
        &self,
        cache: &AnswerCache<Option<String>>,
        service: Service,
        key: &str,
    ) -> bool {
        if service != Service::Alias {
            return false;
        }
        let Ok(addr) = Address::parse(key) else {
            return false;
        };
        let keys = self.accounts.resolver().smtpd_keys(&addr);
        let Some(at) = keys.iter().position(|k| k == key) else {
            return false;
        };
        let not_found = |k: &str| matches!(cache.recent(&cache_key(service, k)), Some((None, _)));
        let found = |k: &str| matches!(cache.recent(&cache_key(service, k)), Some((Some(_), true)));
        not_found(key) && keys[at + 1..].iter().any(|k| found(k))
    }

    /// In an outage, whether the `domain` check may answer "not ours"
    /// again: the database said so under the data version it last showed.
    /// smtpd asks it of every external destination of an alias (its rules
    /// run again for each) and of every message it relays: failing it
    /// deferred an alias to `friend@gmail.example` and all outgoing mail
    /// for the whole outage. A domain not asked before stays a temporary
    /// failure, and "ours" is a positive answer, served as any other.
    /// Not when the data is known to have moved since (a domain added by
    /// the `sqlite3` shell just before a writer's lock): its mail would be
    /// refused for good. A file gone tells nothing, and the answer stands.
    fn still_not_ours(
        &self,
        cache: &AnswerCache<Option<String>>,
        service: Service,
        ck: &str,
    ) -> bool {
        let unchanged = |token| match &self.store {
            Some(s) => s.known_unchanged_since(token),
            None => Some(false),
        };
        service == Service::Domain && matches!(cache.confirmed_negative(ck, unchanged), Some(None))
    }

    /// A lookup that bypasses the cache (`auth`: the key is a password).
    /// Not one lookup for the store: hashing the password takes as long
    /// as the hash's cost says, and no read lock is held meanwhile (each
    /// query checks the file for itself).
    fn uncached(
        &mut self,
        service: Service,
        f: impl FnOnce(&mut Self) -> Result<Option<String>, Failure>,
    ) -> Answer {
        let result = f(self);
        // Holds nothing here; lets go of a WAL database's connection, as
        // every other lookup does (a table that only serves auth would
        // otherwise keep the file in WAL for good).
        self.end_lookup();
        self.reply(service, result)
    }

    fn reply(&self, service: Service, result: Result<Option<String>, Failure>) -> Answer {
        match result {
            Ok(Some(v)) => Answer::Found(v),
            Ok(None) => Answer::NotFound,
            Err(Failure { why: reason, .. }) => {
                // At most one line a second: smtpd logs every temporary
                // failure itself, and an outage fails every uncached key.
                match LOOKUP_FAILURES.admit(std::time::Instant::now()) {
                    Some(n) => tracing::warn!(table = %self.name, service = service.name(),
                        "lookup failed: {reason}{}", left_out_note(n)),
                    None => tracing::debug!(table = %self.name, service = service.name(),
                        "lookup failed: {reason}"),
                }
                Answer::Error(reason)
            }
        }
    }

    /// `alias`: what [`Resolver::smtpd_answer`](mailtable_core::Resolver)
    /// gives, the one rule `mailtable resolve` shows too.
    fn alias(&mut self, key: &str) -> Result<Option<String>, Failure> {
        let (store, accounts) = self.store()?;
        match accounts.resolver().smtpd_answer(store, key)? {
            None => Ok(None),
            Some(KeyAnswer::Items(items)) => Ok(Some(smtpd_list(&items))),
            Some(KeyAnswer::Unusable(why)) => Err(Failure::data(why)),
        }
    }

    fn domain(&mut self, key: &str) -> Result<Option<String>, Failure> {
        let Ok(domain) = Domain::parse(key) else {
            return Ok(None);
        };
        let (store, _) = self.store()?;
        let found = store.has_domain(domain.as_str())?;
        Ok(found.then(|| domain.to_string()))
    }

    /// `credentials`: `name:hash` for smtpd's crypt(3). A disabled or
    /// unknown login gets a dummy hash ([`Accounts::dummy_for_smtpd`]):
    /// smtpd spends the time a real check costs and answers 535, where
    /// not-found would answer at once and tell which users exist. A hash
    /// smtpd could not check is an error, never handed over (portable
    /// `crypt_checkpass` accepts any password against an empty hash).
    ///
    /// Only a real hash is a positive answer: the dummy of an unknown or
    /// disabled login is never served stale.
    fn credentials(&mut self, key: &str) -> Looked {
        // `key:hash` must not start with `:`, or smtpd refuses the value
        // (table_parse_lookup, K_CREDENTIALS, in usr.sbin/smtpd/table.c)
        // and answers an empty AUTH user name 421 instead of 535. No such
        // name is anybody's, so not found tells nothing. Nor is a name with
        // a byte no reply line may carry (a CR sent in SMTP AUTH): the
        // value would be refused as a whole, an error, and smtpd 421.
        if key.is_empty() || key.starts_with(':') || key.contains(['\r', '\n', '\0']) {
            return Ok(Fetched::negative(None));
        }
        let (store, accounts) = self.store()?;
        match accounts.credentials(store, key, Verifier::Smtpd)? {
            Credentials::Found { hash, .. } => Ok(Fetched::positive(Some(format!("{key}:{hash}")))),
            Credentials::Unknown => Ok(Fetched::negative(Some(format!(
                "{key}:{}",
                accounts.dummy_for_smtpd(None)
            )))),
            Credentials::Refused(account, _) => Ok(Fetched::negative(Some(format!(
                "{key}:{}",
                accounts.dummy_for_smtpd(Some(&account))
            )))),
            Credentials::CannotVerify(reason) => Err(Failure::data(reason)),
        }
    }

    /// `userinfo`: `uid:gid:home` of a delivery user name (or an address).
    fn userinfo(&mut self, key: &str) -> Result<Option<String>, Failure> {
        let (store, accounts) = self.store()?;
        let Some(account) = accounts.find(store, key)? else {
            return Ok(None);
        };
        let info = accounts.userinfo(&account)?;
        Ok(Some(format!("{}:{}:{}", info.uid, info.gid, info.home)))
    }

    fn senders(&mut self, key: &str) -> Result<Option<String>, Failure> {
        let (store, accounts) = self.store()?;
        let list = accounts.senders(store, key)?;
        Ok(list.map(|l| smtpd_list(&l)))
    }

    fn mailaddr(&mut self, key: &str) -> Result<Option<String>, Failure> {
        let Ok(addr) = Address::parse_key(key) else {
            return Ok(None);
        };
        let (store, accounts) = self.store()?;
        match accounts.resolver().resolve(store, &addr) {
            Ok(Outcome::Found(_)) => Ok(Some(addr.to_string())),
            Ok(_) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// `auth`: `user:password`, split at the first `:` as smtpd does for
    /// credentials. smtpd has lower-cased the password (OpenSMTPD #1268).
    /// Unknown and disabled users cost one dummy check, like a wrong
    /// password ([`Accounts::verify`]).
    fn auth(&mut self, key: &str) -> Result<Option<String>, Failure> {
        let Some((user, pw)) = key.split_once(':') else {
            return Ok(None);
        };
        let (store, accounts) = self.store()?;
        match accounts.verify(store, user, pw.as_bytes())? {
            Verdict::Ok(_) => Ok(Some(String::new())),
            Verdict::Mismatch | Verdict::Unknown | Verdict::Refused(..) => Ok(None),
            Verdict::CannotVerify(reason) => Err(Failure::data(reason)),
        }
    }
}

impl Handler for Tables {
    fn services(&self) -> Vec<Service> {
        let mut s = vec![
            Service::Alias,
            Service::Domain,
            Service::Credentials,
            Service::Userinfo,
            Service::Mailaddr,
            Service::Mailaddrmap,
        ];
        if self.config.as_ref().is_ok_and(|c| c.table.auth) {
            tracing::warn!(
                "registering the auth service: smtpd lower-cases passwords before asking \
                 (OpenSMTPD issue #1268), so passwords with upper-case letters will fail"
            );
            s.push(Service::Auth);
        }
        s
    }

    fn open(&mut self, table_name: &str) {
        self.name = table_name.to_string();
        if let Err(e) = self.store() {
            tracing::warn!(table = %self.name, "database not available yet: {e}");
        }
    }

    fn update(&mut self) -> Result<(), String> {
        if let Some(load) = &self.reload {
            let fresh = load().map_err(|e| {
                tracing::error!(table = %self.name, "{e}; the config in use stays");
                e
            })?;
            if self.config.as_ref().ok() != Some(&fresh) {
                if matches!(&self.config, Ok(c) if c.table.auth != fresh.table.auth) {
                    tracing::warn!(table = %self.name,
                        "[table] auth changed: smtpd asks which services a table has only \
                         when it starts it; restart smtpd for that");
                }
                // Another config: a table of its own (accounts, cache,
                // store) that must answer the update's check before it
                // replaces this one. An update that fails changes nothing:
                // a new database path that cannot be used keeps the old
                // database serving, not every recipient refused.
                let mut next = Tables::new(Ok(fresh));
                next.name = self.name.clone();
                next.reopen_and_check().map_err(|e| {
                    tracing::error!(table = %self.name,
                        "the new config's database cannot be used ({e}); the config in use stays");
                    e
                })?;
                self.config = next.config;
                self.accounts = next.accounts;
                self.store = next.store.take();
                self.cache = next.cache.take();
                tracing::info!(table = %self.name, "config read again: it changed");
                return Ok(());
            }
        }
        self.config()?;
        self.reopen_and_check()?;
        // Emptied once the database answered: an update that fails (run
        // during an outage) keeps the answers that ride it out.
        if let Some(cache) = self.cache.as_mut() {
            cache.clear();
        }
        Ok(())
    }

    fn check(&mut self, service: Service, key: &str) -> Answer {
        match service {
            Service::Auth => self.uncached(service, |t| t.auth(key)),
            _ => self.lookup(service, key),
        }
    }

    fn lookup(&mut self, service: Service, key: &str) -> Answer {
        match service {
            Service::Alias => self.answer(service, key, |t| by_value(t.alias(key))),
            Service::Domain => self.answer(service, key, |t| by_value(t.domain(key))),
            Service::Credentials => self.answer(service, key, |t| t.credentials(key)),
            Service::Userinfo => self.answer(service, key, |t| by_value(t.userinfo(key))),
            Service::Mailaddrmap => self.answer(service, key, |t| by_value(t.senders(key))),
            Service::Mailaddr => self.answer(service, key, |t| by_value(t.mailaddr(key))),
            // A lookup-only value makes no sense for auth.
            Service::Auth => Answer::NotFound,
            // Services mailtable has no data for.
            _ => Answer::NotFound,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailtable_core::password::{self, Secret};
    use mailtable_core::store::failing::FailingStore;
    use mailtable_core::store::memory::MemStore;
    use mailtable_core::testdata;

    fn table(store: MemStore) -> Tables {
        let config = Config::parse("uid = 2000\ngid = 2001\nhome = \"/var/vmail/%d/%n\"").unwrap();
        Tables::with_store(config, Box::new(store))
    }

    fn fixture() -> MemStore {
        let h = password::hash(&Secret::new("secret"), 4).unwrap();
        let mut s = MemStore::default()
            .with("hugo", "barrera.io", "hugo@barrera.io", Some(h.stored()))
            // The catch-all points elsewhere than the mailbox it competes
            // with, so that precedence shows in the answers.
            .with("%", "barrera.io", "catch@barrera.io", None)
            .with("catch", "barrera.io", "catch@barrera.io", Some(h.stored()))
            .with("contact", "example.com", "hugo@barrera.io", None)
            .with(
                "argon",
                "example.com",
                "argon@example.com",
                Some("{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$x"),
            )
            .with("empty", "example.com", "empty@example.com", Some(""))
            .with("off", "example.com", "off@example.com", Some(h.stored()));
        s.rows.last_mut().unwrap().active = false;
        s
    }

    #[test]
    fn opening_the_table_opens_the_database_and_names_the_table() {
        // smtpd opens every table at start: the database is opened then,
        // so a problem shows in smtpd's log at once (not at the first
        // mail), and the log lines carry the table's name.
        use mailtable_core::store::{self, Access, OpenOptions};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail.db");
        let url: mailtable_core::store::DatabaseUrl =
            format!("sqlite://{}", path.display()).parse().unwrap();
        let create = OpenOptions {
            access: Access::Create,
            timeout: std::time::Duration::from_secs(5),
        };
        drop(store::open(&url, &create).unwrap());
        let config = Config::parse(&format!("database = \"sqlite://{}\"", path.display())).unwrap();
        let mut t = Tables::new(Ok(config));
        assert!(t.store.is_none());
        t.open("users");
        assert_eq!(t.name, "users");
        assert!(
            t.store.is_some(),
            "the database was not opened with the table"
        );
    }

    /// Every request, of every service but `auth`, cached or not, is one
    /// lookup for the store: `begin_lookup`, the calls, `end_lookup`. The SQLite
    /// store then `stat`s once per request and reads one file for it.
    #[test]
    fn each_request_is_one_lookup_for_the_store() {
        let log = mailtable_core::store::memory::CallLog::default();
        let mut store = fixture();
        store.versioned = true;
        store.log = Some(log.clone());
        let mut t = table(store);
        let requests = [
            (Service::Alias, "hugo@barrera.io", false),
            (Service::Domain, "barrera.io", false),
            (Service::Credentials, "hugo@barrera.io", false),
            (Service::Userinfo, "hugo_barrera.io", false),
            (Service::Mailaddrmap, "hugo@barrera.io", false),
            (Service::Mailaddr, "hugo@barrera.io", true),
        ];
        for (service, key, check) in requests {
            log.lock().unwrap().clear();
            let answer = if check {
                t.check(service, key)
            } else {
                t.lookup(service, key)
            };
            assert!(
                matches!(answer, Answer::Found(_)),
                "{service:?} {key}: {answer:?}"
            );
            let calls = log.lock().unwrap().clone();
            let n = calls.len();
            assert!(n >= 3, "{service:?}: {calls:?}");
            assert_eq!(calls[0], "begin", "{service:?}: {calls:?}");
            assert_eq!(calls[n - 1], "end", "{service:?}: {calls:?}");
            assert!(
                calls[1..n - 1].iter().all(|c| *c == "call"),
                "{service:?}: {calls:?}"
            );
        }
        // `auth` hashes the password after its queries: no lookup holds
        // the store (SQLite: its read lock) that long. It ends with an
        // `end_lookup` all the same, which lets go of a WAL database.
        log.lock().unwrap().clear();
        assert_eq!(
            t.check(Service::Auth, "hugo@barrera.io:secret"),
            Answer::Found(String::new())
        );
        let calls = log.lock().unwrap().clone();
        let (last, queries) = calls.split_last().expect("calls made");
        assert_eq!(*last, "end", "{calls:?}");
        assert!(!queries.is_empty(), "{calls:?}");
        assert!(queries.iter().all(|c| *c == "call"), "{calls:?}");
    }

    /// A lookup that panics (the loop answers `error` and goes on) still
    /// ends: the SQLite read lock is released at once, not at smtpd's next
    /// request, and the table goes on with an answer cache.
    #[test]
    fn a_lookup_that_panics_releases_the_database() {
        use mailtable_core::store::sqlite::SqliteStore;
        use mailtable_core::store::{self, Access, OpenOptions};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail.db");
        let opts = |access| OpenOptions {
            access,
            timeout: std::time::Duration::from_secs(1),
        };
        let mut w = SqliteStore::open(&path, &opts(Access::Create)).unwrap();
        store::migrate::migrate(&mut w, store::migrate::Dialect::Sqlite, true).unwrap();
        let row = |user: &str, target: &str| mailtable_core::Row {
            username: user.into(),
            domain: "barrera.io".into(),
            mailbox: target.into(),
            password: None,
            active: true,
            quota: None,
        };
        let h = password::hash(&Secret::new("secret"), 4).unwrap();
        let mailbox = mailtable_core::Row {
            password: Some(mailtable_core::PasswordHash::new(h.stored())),
            ..row("hugo", "hugo@barrera.io")
        };
        w.insert(&mailbox).unwrap();
        w.insert(&row("info", "hugo@barrera.io")).unwrap();
        drop(w);
        // Calls: the change check, the alias's row (which begins the read
        // transaction), its target's row: that one panics.
        let reader = SqliteStore::open(&path, &opts(Access::ReadOnly)).unwrap();
        let failing = FailingStore::panicking_at(reader, 3);
        let config = Config::parse("uid = 2000\ngid = 2001\nhome = \"/var/vmail/%d/%n\"").unwrap();
        let mut t = Tables::with_store(config, Box::new(failing));
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
            t.lookup(Service::Alias, "info@barrera.io")
        }));
        // Only the first call is the change check: a query panicking third
        // means the one before it opened the read transaction.
        let message = match outcome {
            Ok(answer) => panic!("call 3 did not panic: {answer:?}"),
            Err(payload) => payload
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_default(),
        };
        assert!(message.contains("(exact"), "{message}");

        // The writer waits for the lock a second at most (its timeout).
        let mut w = SqliteStore::open(&path, &opts(Access::ReadWrite)).unwrap();
        w.insert(&row("new", "hugo@barrera.io"))
            .expect("the panicked lookup holds no lock");
        assert!(t.cache.is_some(), "the table has an answer cache again");
        let hugo = Answer::Found("hugo_barrera.io".into());
        assert_eq!(t.lookup(Service::Alias, "new@barrera.io"), hugo);
    }

    /// An address with `'` reaches smtpd escaped in `alias` and
    /// `mailaddrmap` answers, so that its list splitter keeps it whole.
    #[test]
    fn list_values_escape_smtpd_list_syntax() {
        let mut t = table(
            fixture()
                .with("q1", "example.org", "o'brien@gmail.com", None)
                .with("o'brien", "example.org", "hugo@barrera.io", None),
        );
        assert_eq!(
            t.lookup(Service::Alias, "q1@example.org"),
            Answer::Found("o\\'brien@gmail.com".into())
        );
        let Answer::Found(senders) = t.lookup(Service::Mailaddrmap, "hugo@barrera.io") else {
            panic!("hugo has senders");
        };
        assert!(senders.contains("o\\'brien@example.org"), "{senders}");
        assert!(!senders.contains(" o'brien"), "{senders}");
    }

    #[test]
    fn answers() {
        let mut t = table(fixture());
        let f = |v: &str| Answer::Found(v.into());
        assert_eq!(
            t.lookup(Service::Alias, "hugo+news@barrera.io"),
            Answer::NotFound
        );
        assert_eq!(
            t.lookup(Service::Alias, "hugo@barrera.io"),
            f("hugo_barrera.io")
        );
        assert_eq!(
            t.lookup(Service::Alias, "@barrera.io"),
            f("catch_barrera.io")
        );
        assert_eq!(
            t.lookup(Service::Alias, "hugo_barrera.io@"),
            Answer::NotFound
        );
        assert_eq!(
            t.lookup(Service::Alias, "hugo_barrera.io"),
            Answer::NotFound
        );
        assert_eq!(t.check(Service::Domain, "barrera.io"), f("barrera.io"));
        assert_eq!(t.check(Service::Domain, "nowhere.org"), Answer::NotFound);
        assert_eq!(
            t.lookup(Service::Userinfo, "hugo_barrera.io"),
            f("2000:2001:/var/vmail/barrera.io/hugo")
        );
        assert_eq!(t.lookup(Service::Userinfo, "vmail"), Answer::NotFound);
        assert_eq!(
            t.lookup(Service::Userinfo, "off_example.com"),
            f("2000:2001:/var/vmail/example.com/off")
        );
        let Answer::Found(c) = t.lookup(Service::Credentials, "hugo@barrera.io") else {
            panic!()
        };
        assert!(c.starts_with("hugo@barrera.io:$2b$04$"), "{c}");
        // Unknown and disabled logins: a dummy of the stored hashes' cost,
        // the same for both, that the right password does not match.
        let dummy = |t: &mut Tables, key: &str| {
            let Answer::Found(c) = t.lookup(Service::Credentials, key) else {
                panic!("{key}: no dummy")
            };
            let hash = c.strip_prefix(&format!("{key}:")).unwrap().to_string();
            assert!(hash.starts_with("$2b$04$"), "{c}");
            let hash = password::PasswordHash::new(hash);
            assert_eq!(hash.verify(&Secret::new("secret")).ok(), Some(false));
            hash
        };
        let off = dummy(&mut t, "off@example.com");
        assert_eq!(dummy(&mut t, "nobody@barrera.io"), off);
        assert_eq!(dummy(&mut t, "no address"), off);
        // smtpd's crypt(3) cannot check Argon2, and an empty hash would
        // accept any password: a temporary failure, never handed over and
        // never "no such user".
        assert!(matches!(
            t.lookup(Service::Credentials, "argon@example.com"),
            Answer::Error(_)
        ));
        assert!(matches!(
            t.lookup(Service::Credentials, "empty@example.com"),
            Answer::Error(_)
        ));
        assert_eq!(dummy(&mut t, "contact@example.com"), off);
        assert_eq!(
            t.lookup(Service::Mailaddrmap, "hugo@barrera.io"),
            f("hugo@barrera.io, contact@example.com")
        );
        assert_eq!(
            t.lookup(Service::Mailaddrmap, "catch_barrera.io"),
            f("catch@barrera.io, @barrera.io")
        );
        assert_eq!(
            t.check(Service::Mailaddr, "x@barrera.io"),
            f("x@barrera.io")
        );
        assert_eq!(
            t.check(Service::Mailaddr, "x@example.com"),
            Answer::NotFound
        );
        assert_eq!(t.check(Service::Auth, "hugo@barrera.io:secret"), f(""));
        assert_eq!(
            t.check(Service::Auth, "hugo@barrera.io:wrong"),
            Answer::NotFound
        );
        assert_eq!(
            t.check(Service::Auth, "nobody@barrera.io:secret"),
            Answer::NotFound
        );
        assert_eq!(
            t.check(Service::Auth, "off@example.com:secret"),
            Answer::NotFound
        );
        assert_eq!(t.lookup(Service::Netaddr, "127.0.0.1"), Answer::NotFound);
    }

    /// smtpd's walk of a recipient through the `alias` service: the first
    /// key that answers, and its answer.
    fn walk(t: &mut Tables, recipient: &str) -> Option<(String, Answer)> {
        let addr = Address::parse(recipient).unwrap();
        let keys = t.accounts.resolver().smtpd_keys(&addr);
        keys.into_iter()
            .map(|k| {
                let a = t.lookup(Service::Alias, &k);
                (k, a)
            })
            .find(|(_, a)| *a != Answer::NotFound)
    }

    /// A mailbox beats the catch-all, with or without a tag; an unknown
    /// address gets the catch-all at `@dom`.
    #[test]
    fn smtpd_walk_shows_precedence() {
        let mut t = table(fixture());
        let f = |k: &str, v: &str| Some((k.to_string(), Answer::Found(v.into())));
        assert_eq!(
            walk(&mut t, "hugo+news@barrera.io"),
            f("hugo@barrera.io", "hugo_barrera.io")
        );
        assert_eq!(
            walk(&mut t, "hugo@barrera.io"),
            f("hugo@barrera.io", "hugo_barrera.io")
        );
        assert_eq!(
            walk(&mut t, "random+x@barrera.io"),
            f("@barrera.io", "catch_barrera.io")
        );
        assert_eq!(walk(&mut t, "x@example.com"), None);
    }

    /// Every service, over every address of the shared resolution table
    /// and every login of `store`.
    fn every_ask(store: &MemStore) -> Vec<(Service, String)> {
        let resolver = table(MemStore::default()).accounts.resolver().clone();
        let mut asks: Vec<(Service, String)> = Vec::new();
        for &(address, _) in testdata::resolution::CASES {
            let addr = Address::parse_key(address).unwrap();
            for key in resolver.smtpd_keys(&addr) {
                asks.push((Service::Alias, key));
            }
            asks.push((Service::Alias, address.to_string()));
            asks.push((Service::Mailaddr, address.to_string()));
            asks.push((Service::Domain, addr.domain().to_string()));
        }
        for &(key, _) in testdata::resolution::KEYS {
            asks.push((Service::Alias, key.to_string()));
        }
        let logins = store
            .rows
            .iter()
            .map(|r| format!("{}@{}", r.username, r.domain))
            .chain(["nobody@barrera.io".into(), "x@nowhere.org".into()])
            .collect::<Vec<_>>();
        for login in &logins {
            let delivery_name = login.replacen('@', "_", 1);
            for key in [login.clone(), delivery_name] {
                asks.push((Service::Credentials, key.clone()));
                asks.push((Service::Userinfo, key.clone()));
                asks.push((Service::Mailaddrmap, key.clone()));
                asks.push((Service::Auth, format!("{key}:secret")));
                asks.push((Service::Auth, format!("{key}:wrong")));
            }
        }
        asks
    }

    fn ask(t: &mut Tables, service: Service, key: &str) -> Answer {
        match service {
            Service::Auth | Service::Mailaddr | Service::Domain => t.check(service, key),
            _ => t.lookup(service, key),
        }
    }

    /// Every service, over every address of the shared resolution table
    /// and every login: with each store call of the lookup failing in
    /// turn (`store::failing`), the answer is `error`, never found or
    /// not-found.
    #[test]
    fn a_failing_store_call_is_always_an_error() {
        let mut store = fixture();
        store.rows.extend(testdata::resolution::rows());
        let asks = every_ask(&store);
        let mut bad = Vec::new();
        let mut runs = 0;
        for (service, key) in &asks {
            let ask = |t: &mut Tables| ask(t, *service, key);
            let counting = FailingStore::counting(store.clone());
            let good = ask(&mut table_over(counting.clone()));
            for n in 1..=counting.calls() {
                let failing = FailingStore::failing_at(store.clone(), n);
                let answer = ask(&mut table_over(failing.clone()));
                assert!(
                    failing.has_failed(),
                    "{service:?} {key}: call {n} never made"
                );
                runs += 1;
                // A failed change check only skips the cache: the lookup's
                // own calls then decide, and must give the good answer.
                let checked = failing.failed_call() == Some("change_token") && answer == good;
                if !matches!(answer, Answer::Error(_)) && !checked {
                    bad.push(format!("{service:?} {key:?}, call {n} failing: {answer:?}"));
                }
            }
        }
        assert!(
            bad.is_empty(),
            "{} of {runs}:\n  {}",
            bad.len(),
            bad.join("\n  ")
        );
        assert!(runs > 1000, "only {runs} failing runs");
    }

    /// With a warm cache, the database gone (every call from the change
    /// check on fails): a found answer is served again, unchanged; every
    /// other answer that needs data (not found, the dummy hash of an
    /// unknown or disabled login) is an error. Never a different
    /// definitive answer.
    #[test]
    fn with_a_warm_cache_an_outage_serves_only_found_answers_again() {
        let mut store = fixture();
        store.rows.extend(testdata::resolution::rows());
        store.versioned = true;
        let mut bad = Vec::new();
        let (mut stale, mut errors, mut data_free, mut not_ours_again) = (0, 0, 0, 0);
        for (service, key) in every_ask(&store) {
            if service == Service::Auth {
                // Never cached; the class test above covers it.
                continue;
            }
            let counting = FailingStore::counting(store.clone());
            let warm = ask(&mut table_over(counting.clone()), service, &key);
            let failing = FailingStore::failing_from(store.clone(), counting.calls() + 1);
            let mut t = table_over(failing.clone());
            assert_eq!(ask(&mut t, service, &key), warm);
            let before = failing.calls();
            let again = ask(&mut t, service, &key);
            assert!(failing.has_failed(), "{service:?} {key}: no change check");
            if failing.calls() == before + 1 {
                // Only the change check: an answer that needs no data
                // (not an address, not a login) is given as before.
                data_free += 1;
                if again != warm {
                    bad.push(format!("{service:?} {key:?}: {warm:?} then {again:?}"));
                }
                continue;
            }
            // "Not our domain", confirmed by the last change check, is
            // the one negative answer served again (smtpd relays there,
            // as before the outage): `still_not_ours`.
            let not_ours = service == Service::Domain && warm == Answer::NotFound;
            match &again {
                Answer::Error(_) => errors += 1,
                Answer::Found(_) if again == warm => stale += 1,
                Answer::NotFound if not_ours => not_ours_again += 1,
                _ => bad.push(format!("{service:?} {key:?}: {warm:?} then {again:?}")),
            }
            let dummy = service == Service::Credentials
                && !matches!(t.accounts.find(&mut store.clone(), &key), Ok(Some(a)) if a.is_active());
            let negative = dummy || (warm == Answer::NotFound && !not_ours);
            if negative && !matches!(again, Answer::Error(_)) {
                bad.push(format!(
                    "{service:?} {key:?}: negative served stale: {again:?}"
                ));
            }
        }
        assert!(bad.is_empty(), "{}", bad.join("\n"));
        assert!(
            stale > 50 && errors > 50 && data_free > 5 && not_ours_again > 0,
            "stale {stale}, errors {errors}, data-free {data_free}, not ours {not_ours_again}"
        );
    }

    /// In an outage, a domain the database last said is not ours is still
    /// not ours (smtpd checks every external destination of an alias and
    /// every relayed message against `domain`); one never asked, or asked
    /// before the data changed, stays a temporary failure.
    #[test]
    fn an_outage_keeps_external_domains_not_ours() {
        let mut store = fixture();
        store.versioned = true;
        let warm_up = |t: &mut Tables| {
            assert_eq!(t.lookup(Service::Domain, "gmail.example"), Answer::NotFound);
            assert!(matches!(
                t.lookup(Service::Alias, "hugo@barrera.io"),
                Answer::Found(_)
            ));
        };
        let counting = FailingStore::counting(store.clone());
        warm_up(&mut table_over(counting.clone()));
        // The same lookups on a store that fails from then on.
        let failing = FailingStore::failing_from(store.clone(), counting.calls() + 1);
        let mut t = table_over(failing.clone());
        warm_up(&mut t);
        assert_eq!(t.lookup(Service::Domain, "gmail.example"), Answer::NotFound);
        assert!(failing.has_failed());
        assert!(matches!(
            t.lookup(Service::Alias, "hugo@barrera.io"),
            Answer::Found(_)
        ));
        assert!(matches!(
            t.lookup(Service::Domain, "never-asked.example"),
            Answer::Error(_)
        ));
        assert!(matches!(
            t.lookup(Service::Alias, "nobody@barrera.io"),
            Answer::Error(_)
        ));
    }

    /// A credentials answer is never a value smtpd refuses (one starting
    /// with `:`) or no reply may carry (a CR): an empty AUTH user name, or
    /// one with a CR, is not found (535), not a lookup failure (421).
    #[test]
    fn credentials_of_an_empty_name_are_not_found() {
        let mut t = table_over(FailingStore::counting(fixture()));
        for key in [
            "",
            ":",
            ":hugo@barrera.io",
            "hugo\r@barrera.io",
            "hugo@barrera.io\r",
        ] {
            assert_eq!(
                t.lookup(Service::Credentials, key),
                Answer::NotFound,
                "{key:?}"
            );
        }
        assert!(matches!(
            t.lookup(Service::Credentials, "nobody@barrera.io"),
            Answer::Found(v) if v.starts_with("nobody@barrera.io:$2b$")
        ));
    }

    /// A failure's text is its reason, as the logs show it (the outage
    /// line of the cache prints it), and its class follows the error's.
    #[test]
    fn a_failure_says_why_and_whether_it_is_an_outage() {
        let down = Failure::from(StoreError::Unavailable("gone".into()));
        assert_eq!(down.to_string(), "database unavailable: gone");
        assert!(down.is_outage());
        let broken = Failure::data("x@ex.org points to nothing");
        assert_eq!(broken.to_string(), "x@ex.org points to nothing");
        assert!(!broken.is_outage());
    }

    /// The database answers that an alias's data cannot be served: its
    /// target lost its rows, or a row written by hand cannot be read. That
    /// is a temporary failure at once, never the answer cached before
    /// (smtpd would deliver to a mailbox that is gone, whose userinfo is
    /// then not found: 550), and never later in an outage either.
    #[test]
    fn broken_data_is_an_error_not_the_cached_answer() {
        use mailtable_core::store::Delete;
        let mut s = fixture()
            .with("ee", "example.com", "argon@example.com", None)
            .with("team", "example.com", "argon@example.com", None);
        s.versioned = true;
        let mut t = table(s);
        let before = t.lookup(Service::Alias, "ee@example.com");
        assert_eq!(before, Answer::Found("argon_example.com".into()));
        assert!(matches!(
            t.lookup(Service::Alias, "team@example.com"),
            Answer::Found(_)
        ));
        let catch = t.lookup(Service::Alias, "catch@barrera.io");
        assert_eq!(catch, Answer::Found("catch_barrera.io".into()));
        let store = t.store.as_deref_mut().unwrap();
        store
            .delete("argon", "example.com", Delete::Mailbox)
            .unwrap();
        // What `sqlite3` can write and mailtable cannot read: two targets in
        // one row.
        store
            .delete("team", "example.com", Delete::Alias(None))
            .unwrap();
        store
            .insert(&mailtable_core::Row {
                username: "team".into(),
                domain: "example.com".into(),
                mailbox: "hugo@barrera.io, catch@barrera.io".into(),
                password: None,
                active: true,
                quota: None,
            })
            .unwrap();
        for key in ["ee@example.com", "team@example.com"] {
            let after = t.lookup(Service::Alias, key);
            assert!(matches!(after, Answer::Error(_)), "{key}: {after:?}");
        }
        assert_eq!(
            t.lookup(Service::Userinfo, "argon_example.com"),
            Answer::NotFound
        );
        // An outage now: nothing stands in for the broken answers, while a
        // mailbox answered before the outage still does.
        let mut down = MemStore::default();
        down.broken = true;
        down.versioned = true;
        t.store = Some(Box::new(down));
        for key in ["ee@example.com", "team@example.com"] {
            let after = t.lookup(Service::Alias, key);
            assert!(
                matches!(after, Answer::Error(_)),
                "{key} in an outage: {after:?}"
            );
        }
        assert_eq!(t.lookup(Service::Alias, "catch@barrera.io"), catch);
    }

    /// `smtpctl update table` during an outage fails, and keeps the answers
    /// that ride the outage out; once the database answers it, the cache is
    /// emptied.
    #[test]
    fn a_failed_update_keeps_the_cache() {
        let mut s = fixture();
        s.versioned = true;
        let counting = FailingStore::counting(s.clone());
        let mut t = table_over(counting.clone());
        let warm = t.lookup(Service::Alias, "hugo@barrera.io");
        assert!(matches!(warm, Answer::Found(_)), "{warm:?}");
        let failing = FailingStore::failing_from(s.clone(), counting.calls() + 1);
        let mut t = table_over(failing.clone());
        assert_eq!(t.lookup(Service::Alias, "hugo@barrera.io"), warm);
        assert!(!failing.has_failed());
        assert!(t.update().is_err());
        assert_eq!(t.lookup(Service::Alias, "hugo@barrera.io"), warm);

        let counting = FailingStore::counting(s);
        let mut t = table_over(counting.clone());
        t.lookup(Service::Alias, "hugo@barrera.io");
        t.update().unwrap();
        let before = counting.calls();
        t.lookup(Service::Alias, "hugo@barrera.io");
        assert!(
            counting.calls() > before + 1,
            "answered from the cache after update"
        );
    }

    /// smtpd's walk through an outage: a tagged address of a mailbox and
    /// an address of a catch-all were accepted before, at a later key
    /// than the first; their earlier keys' `not found` is answered again
    /// so that smtpd reaches that key. An address whose walk found nothing
    /// fails temporarily at its first key. In a domain without a
    /// catch-all, a tagged address has only its very next key to go on to
    /// (no found `@dom` answer further down the walk).
    #[test]
    fn an_outage_keeps_smtpds_walk_to_a_found_key() {
        let mut s = fixture();
        s.versioned = true;
        let addrs = [
            "hugo+news@barrera.io",
            "random@barrera.io",
            "nobody@example.com",
            "contact+news@example.com",
        ];
        let counting = FailingStore::counting(s.clone());
        let mut t = table_over(counting.clone());
        let warm: Vec<_> = addrs.iter().map(|a| walk(&mut t, a)).collect();
        let f = |k: &str, v: &str| Some((k.to_string(), Answer::Found(v.into())));
        assert_eq!(warm[0], f("hugo@barrera.io", "hugo_barrera.io"));
        assert_eq!(warm[1], f("@barrera.io", "catch_barrera.io"));
        assert_eq!(warm[2], None);
        assert_eq!(warm[3], f("contact@example.com", "hugo_barrera.io"));

        let failing = FailingStore::failing_from(s, counting.calls() + 1);
        let mut t = table_over(failing.clone());
        for (a, w) in addrs.iter().zip(&warm) {
            assert_eq!(&walk(&mut t, a), w, "{a} before the outage");
        }
        assert!(!failing.has_failed());
        assert_eq!(walk(&mut t, addrs[0]), warm[0]);
        assert_eq!(walk(&mut t, addrs[1]), warm[1]);
        assert!(failing.has_failed());
        assert_eq!(walk(&mut t, addrs[3]), warm[3]);
        assert!(matches!(
            walk(&mut t, addrs[2]),
            Some((k, Answer::Error(_))) if k == "nobody@example.com"
        ));
        // A key never asked before the outage is no step of a found walk.
        assert!(matches!(
            walk(&mut t, "other+x@barrera.io"),
            Some((k, Answer::Error(_))) if k == "other+x@barrera.io"
        ));
    }

    /// A versioned store under a counting wrapper, in a table.
    fn counted(store: &MemStore) -> (Tables, FailingStore<MemStore>) {
        let mut s = store.clone();
        s.versioned = true;
        let counting = FailingStore::counting(s);
        (table_over(counting.clone()), counting)
    }

    #[test]
    fn a_repeated_lookup_costs_one_change_check() {
        let (mut t, calls) = counted(&fixture());
        for (service, key) in [
            (Service::Alias, "hugo@barrera.io"),
            (Service::Alias, "contact@example.com"),
            (Service::Alias, "nobody@nowhere.org"),
            (Service::Credentials, "hugo@barrera.io"),
            (Service::Credentials, "nobody@barrera.io"),
            (Service::Userinfo, "hugo_barrera.io"),
            (Service::Mailaddrmap, "hugo@barrera.io"),
            (Service::Domain, "barrera.io"),
        ] {
            let first = ask(&mut t, service, key);
            let before = calls.calls();
            assert_eq!(ask(&mut t, service, key), first, "{service:?} {key}");
            assert_eq!(calls.calls(), before + 1, "{service:?} {key}");
        }
        // auth is never answered from memory (its key is a password).
        let before = calls.calls();
        t.check(Service::Auth, "hugo@barrera.io:secret");
        let first = calls.calls() - before;
        let before = calls.calls();
        t.check(Service::Auth, "hugo@barrera.io:secret");
        assert!(first > 0);
        assert_eq!(calls.calls() - before, first, "auth answered from memory");
        // smtpctl update table empties the cache.
        t.update().unwrap();
        let before = calls.calls();
        ask(&mut t, Service::Alias, "hugo@barrera.io");
        assert!(
            calls.calls() > before + 1,
            "answered from the cache after update"
        );
    }

    /// A table that only serves `auth` lets go of a WAL database after each
    /// check too, so the CLI's next write can convert the file.
    #[test]
    fn an_auth_check_lets_go_of_a_wal_database() {
        use mailtable_core::store::{self, Access, OpenOptions};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail.db");
        let url: store::DatabaseUrl = format!("sqlite://{}", path.display()).parse().unwrap();
        let opts = |access| OpenOptions {
            access,
            timeout: std::time::Duration::from_secs(5),
        };
        let mut w = store::open(&url, &opts(Access::Create)).unwrap();
        store::migrate::migrate(w.as_mut(), store::migrate::Dialect::Sqlite, true).unwrap();
        let h = password::hash(&Secret::new("secret"), 4).unwrap();
        w.insert(&mailtable_core::Row {
            username: "hugo".into(),
            domain: "barrera.io".into(),
            mailbox: "hugo@barrera.io".into(),
            password: Some(h),
            active: true,
            quota: None,
        })
        .unwrap();
        drop(w);
        let journal = || -> String {
            rusqlite::Connection::open(&path)
                .unwrap()
                .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                .unwrap()
        };
        rusqlite::Connection::open(&path)
            .unwrap()
            .pragma_update(None, "journal_mode", "wal")
            .unwrap();
        assert_eq!(journal(), "wal");
        let config = format!(
            "database = \"sqlite://{}\"\n[table]\nauth = true\n",
            path.display()
        );
        let mut t = Tables::new(Ok(Config::parse(&config).unwrap()));
        assert_eq!(
            t.check(Service::Auth, "hugo@barrera.io:secret"),
            Answer::Found(String::new())
        );
        drop(store::open(&url, &opts(Access::ReadWrite)).unwrap());
        assert_eq!(journal(), "delete");
    }

    /// `smtpctl update table` reads the config again: one fixed while smtpd
    /// ran takes effect, one broken later fails the update and the config
    /// in use stays, and a new database path is followed.
    #[test]
    fn update_reads_the_config_again() {
        use mailtable_core::store::{self, Access, OpenOptions};
        let dir = tempfile::tempdir().unwrap();
        let db = |name: &str, user: &str| {
            let path = dir.path().join(name);
            let url: store::DatabaseUrl = format!("sqlite://{}", path.display()).parse().unwrap();
            let opts = OpenOptions {
                access: Access::Create,
                timeout: std::time::Duration::from_secs(5),
            };
            let mut w = store::open(&url, &opts).unwrap();
            store::migrate::migrate(w.as_mut(), store::migrate::Dialect::Sqlite, true).unwrap();
            w.insert(&mailtable_core::Row {
                username: user.into(),
                domain: "barrera.io".into(),
                mailbox: format!("{user}@barrera.io"),
                password: Some(mailtable_core::PasswordHash::new("$2b$04$x")),
                active: true,
                quota: None,
            })
            .unwrap();
            format!("database = \"sqlite://{}\"\n", path.display())
        };
        let (one, two) = (db("one.db", "hugo"), db("two.db", "ann"));
        let conf = dir.path().join("mailtable.toml");
        std::fs::write(&conf, "database = \"sqlite://\n").unwrap();
        let at = conf.clone();
        let mut t = Tables::loading(move || Config::locate(Some(&at)).map_err(|e| e.to_string()));
        assert!(matches!(
            t.lookup(Service::Alias, "hugo@barrera.io"),
            Answer::Error(_)
        ));
        std::fs::write(&conf, &one).unwrap();
        t.update().unwrap();
        let hugo = Answer::Found("hugo_barrera.io".into());
        assert_eq!(t.lookup(Service::Alias, "hugo@barrera.io"), hugo);
        std::fs::write(&conf, "database = [").unwrap();
        assert!(t.update().is_err());
        assert_eq!(t.lookup(Service::Alias, "hugo@barrera.io"), hugo);
        std::fs::write(&conf, &two).unwrap();
        t.update().unwrap();
        assert_eq!(
            t.lookup(Service::Alias, "hugo@barrera.io"),
            Answer::NotFound
        );
        assert_eq!(
            t.lookup(Service::Alias, "ann@barrera.io"),
            Answer::Found("ann_barrera.io".into())
        );
        // A database path that cannot be used: the update fails, and the
        // database in use keeps answering.
        let missing = dir.path().join("missing.db");
        std::fs::write(
            &conf,
            format!("database = \"sqlite://{}\"\n", missing.display()),
        )
        .unwrap();
        assert!(t.update().is_err());
        assert_eq!(
            t.lookup(Service::Alias, "ann@barrera.io"),
            Answer::Found("ann_barrera.io".into())
        );
        std::fs::write(&conf, &two).unwrap();
        // A new home, read while a writer holds the database's lock: the
        // update fails and changes nothing (the old home is answered, from
        // the database, which is back); the next update takes it.
        let info = t.lookup(Service::Userinfo, "ann_barrera.io");
        assert!(matches!(&info, Answer::Found(v) if v.ends_with(":/var/vmail/barrera.io/ann")));
        let writer = rusqlite::Connection::open(dir.path().join("two.db")).unwrap();
        writer.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let new_home = format!("{two}home = \"/srv/mail/%u\"\nquery_timeout_ms = 100\n");
        std::fs::write(&conf, new_home).unwrap();
        assert!(t.update().is_err());
        writer.execute_batch("ROLLBACK").unwrap();
        assert_eq!(t.lookup(Service::Userinfo, "ann_barrera.io"), info);
        t.update().unwrap();
        assert_eq!(
            t.lookup(Service::Userinfo, "ann_barrera.io"),
            Answer::Found("5000:5000:/srv/mail/ann@barrera.io".into())
        );
    }

    /// The cache over a real SQLite file: writes by another connection are
    /// seen by the very next lookup; with the file gone, found answers go on
    /// and everything else is an error; back again, the changes made
    /// meanwhile are seen at once.
    #[test]
    fn sqlite_changes_are_seen_at_once_and_outages_serve_found_answers() {
        use mailtable_core::store::{self, Access, OpenOptions};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail.db");
        let url: mailtable_core::store::DatabaseUrl =
            format!("sqlite://{}", path.display()).parse().unwrap();
        let opts = |access| OpenOptions {
            access,
            timeout: std::time::Duration::from_secs(5),
        };
        let mut w = store::open(&url, &opts(Access::Create)).unwrap();
        store::migrate::migrate(w.as_mut(), store::migrate::Dialect::Sqlite, true).unwrap();
        let row = |user: &str, target: &str, pw: Option<&str>| mailtable_core::Row {
            username: user.into(),
            domain: "barrera.io".into(),
            mailbox: target.into(),
            password: pw.map(mailtable_core::PasswordHash::new),
            active: true,
            quota: None,
        };
        let h = password::hash(&Secret::new("secret"), 4).unwrap();
        w.insert(&row("hugo", "hugo@barrera.io", Some(h.stored())))
            .unwrap();
        w.insert(&row("info", "hugo@barrera.io", None)).unwrap();
        let config = Config::parse(&format!("database = \"sqlite://{}\"", path.display())).unwrap();
        let mut t = Tables::new(Ok(config));
        let hugo = Answer::Found("hugo_barrera.io".into());
        assert_eq!(t.lookup(Service::Alias, "info@barrera.io"), hugo);
        assert_eq!(t.lookup(Service::Alias, "new@barrera.io"), Answer::NotFound);
        let cred = t.lookup(Service::Credentials, "hugo@barrera.io");
        assert_eq!(
            cred,
            Answer::Found(format!("hugo@barrera.io:{}", h.stored()))
        );

        // Another connection (the CLI) changes a target and adds an address.
        w.delete("info", "barrera.io", store::Delete::Alias(None))
            .unwrap();
        w.insert(&row("info", "ext@example.net", None)).unwrap();
        w.insert(&row("new", "hugo@barrera.io", None)).unwrap();
        let ext = Answer::Found("ext@example.net".into());
        assert_eq!(t.lookup(Service::Alias, "info@barrera.io"), ext);
        assert_eq!(t.lookup(Service::Alias, "new@barrera.io"), hugo);
        assert_eq!(
            t.lookup(Service::Alias, "gone@barrera.io"),
            Answer::NotFound
        );
        drop(w);

        // The file is moved away: found answers go on, the rest fail.
        let aside = dir.path().join("aside.db");
        std::fs::rename(&path, &aside).unwrap();
        assert_eq!(t.lookup(Service::Alias, "info@barrera.io"), ext);
        assert_eq!(t.lookup(Service::Alias, "new@barrera.io"), hugo);
        assert_eq!(t.lookup(Service::Credentials, "hugo@barrera.io"), cred);
        assert!(matches!(
            t.lookup(Service::Alias, "gone@barrera.io"),
            Answer::Error(_)
        ));
        assert!(matches!(
            t.lookup(Service::Alias, "never@barrera.io"),
            Answer::Error(_)
        ));
        assert!(matches!(
            t.lookup(Service::Credentials, "nobody@barrera.io"),
            Answer::Error(_)
        ));

        // Changed while away, and back: seen at once.
        let away: mailtable_core::store::DatabaseUrl =
            format!("sqlite://{}", aside.display()).parse().unwrap();
        let mut w = store::open(&away, &opts(Access::ReadWrite)).unwrap();
        w.delete("new", "barrera.io", store::Delete::Alias(None))
            .unwrap();
        drop(w);
        std::fs::rename(&aside, &path).unwrap();
        assert_eq!(t.lookup(Service::Alias, "new@barrera.io"), Answer::NotFound);
        assert_eq!(t.lookup(Service::Alias, "info@barrera.io"), ext);
    }

    /// "Not our domain" stands in an outage only for the data it was
    /// given for: a writer holding the lock without a change gets it
    /// again (smtpd relays as before), but a domain added just before the
    /// lock (the `sqlite3` shell's commit, then a backup's lock), or a
    /// file gone, gets an error: smtpd defers the mail instead of
    /// refusing it for good.
    #[test]
    fn not_ours_outlasts_an_outage_only_for_unchanged_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail.db");
        let shell = || rusqlite::Connection::open(&path).unwrap();
        shell()
            .execute_batch(
                "CREATE TABLE users (username TEXT NOT NULL, domain TEXT NOT NULL, \
                 mailbox TEXT NOT NULL, password TEXT);
                 INSERT INTO users VALUES ('info', 'barrera.io', 'ext@example.net', NULL);",
            )
            .unwrap();
        let config = Config::parse(&format!(
            "database = \"sqlite://{}\"\nquery_timeout_ms = 100",
            path.display()
        ))
        .unwrap();
        let mut t = Tables::new(Ok(config));
        let domain = |t: &mut Tables| t.lookup(Service::Domain, "newdom.org");
        assert_eq!(domain(&mut t), Answer::NotFound);
        // A lock without a change: the answer stands.
        let writer = shell();
        writer.execute_batch("BEGIN EXCLUSIVE").unwrap();
        assert_eq!(domain(&mut t), Answer::NotFound);
        writer.execute_batch("ROLLBACK").unwrap();
        assert_eq!(domain(&mut t), Answer::NotFound);
        // The domain added, then a writer's lock: an error until it ends.
        std::thread::sleep(std::time::Duration::from_millis(20));
        shell()
            .execute_batch("INSERT INTO users VALUES ('x', 'newdom.org', 'info@barrera.io', NULL)")
            .unwrap();
        writer.execute_batch("BEGIN EXCLUSIVE").unwrap();
        assert!(matches!(domain(&mut t), Answer::Error(_)));
        assert!(matches!(domain(&mut t), Answer::Error(_)));
        writer.execute_batch("ROLLBACK").unwrap();
        let ours = Answer::Found("newdom.org".into());
        assert_eq!(domain(&mut t), ours);
        // Another domain not ours, then the file gone (the outage the
        // cache rides out): the answer stands, as mail to an alias's
        // external destination must keep relaying.
        assert_eq!(t.lookup(Service::Domain, "other.org"), Answer::NotFound);
        std::fs::rename(&path, dir.path().join("aside.db")).unwrap();
        assert_eq!(t.lookup(Service::Domain, "other.org"), Answer::NotFound);
        assert_eq!(domain(&mut t), ours);
    }

    fn table_over(store: FailingStore<MemStore>) -> Tables {
        // Cost 4: unknown users cost one dummy check of this cost.
        let config =
            Config::parse("uid = 2000\ngid = 2001\nhome = \"/var/vmail/%d/%n\"\npassword_cost = 4")
                .unwrap();
        Tables::with_store(config, Box::new(store))
    }

    #[test]
    fn database_errors_are_errors_for_every_service() {
        let mut s = fixture();
        s.broken = true;
        let mut t = table(s);
        for (svc, key) in [
            (Service::Alias, "hugo@barrera.io"),
            (Service::Domain, "barrera.io"),
            (Service::Credentials, "hugo@barrera.io"),
            (Service::Userinfo, "hugo_barrera.io"),
            (Service::Mailaddrmap, "hugo@barrera.io"),
            (Service::Mailaddr, "hugo@barrera.io"),
        ] {
            assert!(matches!(t.lookup(svc, key), Answer::Error(_)), "{svc:?}");
            assert!(matches!(t.check(svc, key), Answer::Error(_)), "{svc:?}");
        }
        assert!(matches!(
            t.check(Service::Auth, "hugo@barrera.io:secret"),
            Answer::Error(_)
        ));
        assert!(t.update().is_err());
    }

    /// An alias whose final destinations do not fit smtpd's alias buffer
    /// (2047 bytes): up to it, the destinations; beyond, the alias's own
    /// targets when they fit (an "everyone" alias of team aliases), each
    /// team then answered by its own lookup; else an error that says to
    /// split it, never a value smtpd would answer 424 to forever.
    #[test]
    fn an_alias_too_long_for_smtpd_answers_its_targets_or_says_how_to_split_it() {
        // The rule and its byte boundary are Resolver::smtpd_answer's,
        // tested in the core; here, that the table answers what it gives.
        let found = |a: Answer| match a {
            Answer::Found(v) => v,
            other => panic!("{other:?}"),
        };
        let mut store = MemStore::default();
        for i in 0..120 {
            let t = format!("member{i:03}@partner.example");
            store = store.with("over", "ex.org", &t, None);
        }
        let h = password::hash(&Secret::new("secret"), 4).unwrap();
        for team in ["red", "blue"] {
            for i in 0..60 {
                let user = format!("{team}-member-{i:02}");
                let addr = format!("{user}@ex.org");
                store = store
                    .with(&user, "ex.org", &addr, Some(h.stored()))
                    .with(team, "ex.org", &addr, None);
            }
            store = store.with("all", "ex.org", &format!("{team}@ex.org"), None);
        }
        let mut t = table(store);
        match t.lookup(Service::Alias, "over@ex.org") {
            Answer::Error(e) => assert!(e.contains("split the alias"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            found(t.lookup(Service::Alias, "all@ex.org")),
            "red@ex.org, blue@ex.org"
        );
        let red = found(t.lookup(Service::Alias, "red@ex.org"));
        assert_eq!(red.split(", ").count(), 60);
        assert!(red.starts_with("red-member-00_ex.org, "), "{red}");
    }

    /// `smtpctl update table` on a file that opens but holds no mailtable
    /// database (emptied, a restore of the wrong file) says so, instead of
    /// "ok" and then an error for every lookup; once it holds one, ok.
    #[test]
    fn update_says_when_the_file_is_no_mailtable_database() {
        use mailtable_core::store::sqlite::SqliteStore;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail.db");
        std::fs::write(&path, b"").unwrap();
        let opts = OpenOptions {
            access: Access::ReadOnly,
            timeout: std::time::Duration::from_secs(2),
        };
        let store = SqliteStore::open(&path, &opts).unwrap();
        let mut t = Tables::with_store(Config::default(), Box::new(store));
        let e = t.update().unwrap_err();
        assert!(e.contains("no users table"), "{e}");
        let mut w = SqliteStore::open(
            &path,
            &OpenOptions {
                access: Access::ReadWrite,
                ..opts
            },
        )
        .unwrap();
        store::migrate::migrate(&mut w, store::migrate::Dialect::Sqlite, true).unwrap();
        t.update().unwrap();
        // The users table gone while the schema's version table stays.
        drop(w);
        drop_users(&path);
        let e = t.update().unwrap_err();
        assert!(e.contains("users"), "{e}");
        // A users table that lookups cannot read (no password column):
        // the update fails, the table in use stays.
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE users (username TEXT, domain TEXT, mailbox TEXT);
             INSERT INTO users VALUES ('hugo', 'barrera.io', 'hugo@barrera.io');",
        )
        .unwrap();
        drop(c);
        let e = t.update().unwrap_err();
        assert!(e.contains("password"), "{e}");
    }

    /// `DROP TABLE users`, through the one writer this crate's tests have
    /// (a migration step: the version table stays, at a version of its
    /// own).
    fn drop_users(path: &std::path::Path) {
        use mailtable_core::store::sqlite::SqliteStore;
        let mut w = SqliteStore::open(
            path,
            &OpenOptions {
                access: Access::ReadWrite,
                timeout: std::time::Duration::from_secs(2),
            },
        )
        .unwrap();
        w.apply_migration(99, "DROP TABLE users").unwrap();
    }

    #[test]
    fn broken_config_answers_errors_and_never_panics() {
        let mut t = Tables::new(Err("invalid config /x: bad".into()));
        assert!(
            matches!(t.lookup(Service::Alias, "a@b.org"), Answer::Error(e) if e.contains("/x"))
        );
        assert!(t.update().is_err());
        assert_eq!(t.services().len(), 6);
    }
}
