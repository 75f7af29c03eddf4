//! What Dovecot is told about a user: the core account policy
//! ([`mailtable_core::accounts`]) rendered as passdb and userdb answers for
//! all three mechanisms (checkpassword, dict, the HTTP API for Lua).
//!
//! Nothing here decides who may log in: [`Accounts`] finds the mailbox of a
//! login name (both `hugo@barrera.io` and `hugo_barrera.io`), gives the
//! verdict of a password check with equal work for unknown users, and the
//! user info. [`Directory`] maps those onto Dovecot's words; [`Backend`]
//! puts it behind the crate's [`DictBackend`] and [`ApiBackend`] traits
//! with a [`StorePool`] and, in `serve`, a [`HashPool`].
//!
//! The mapping:
//! - every answer carries the canonical `user=hugo@barrera.io`, so Dovecot
//!   files the mail of both login forms under one user;
//! - **userdb**: `uid`, `gid`, `home`, and with a quota both
//!   `quota_rule=*:storage=<quota>` (Dovecot 2.3) and
//!   `quota_storage_size=<quota>` (2.4, which replaced quota rules with
//!   that setting); each generation takes its own and keeps the other as an
//!   unused plugin variable or setting override (tests/e2e shows both); a
//!   disabled mailbox keeps its userdb entry (LMTP keeps delivering);
//! - **passdb verify**: right password: the canonical user plus the userdb
//!   fields as `userdb_*` (for `userdb prefetch`); wrong password and
//!   **disabled mailbox: "mismatch"** (the client sees the same
//!   `AUTHENTICATIONFAILED` and learns nothing about the account's state;
//!   never a temporary failure, which would make clients retry forever);
//!   no such mailbox: "unknown";
//! - **passdb lookup** (CRAM-MD5 and friends, `doveadm auth lookup`, the
//!   dict passdb where Dovecot checks the hash itself): the canonical user,
//!   `password={SCHEME}hash` and the `userdb_*` fields; a disabled mailbox
//!   gets no `password` field, so Dovecot refuses the login ("No password
//!   returned (and no nopassword)", a mismatch);
//! - **temporary failure**: any store error, a hash that cannot be checked
//!   (empty, malformed, unknown scheme), user info no protocol can carry.
//!   Never "unknown", never "mismatch": a database outage must not bounce
//!   mail or lock users out (DESIGN.md, "Failure semantics").
//!
//! In `serve`, every lookup goes through one answer cache shared by all
//! connection threads ([`mailtable_core::cache`]): userdb and passdb
//! answers, dict answers, and the database part of a password check (the
//! login's hash; the hashing itself is never skipped). Each is checked
//! against the database's change token first, and found answers ride out
//! an outage for `stale_if_error`.

use std::sync::{Arc, Mutex, MutexGuard};

use mailtable_core::accounts::{
    self, AccountError, Accounts, Credentials, Login, UserInfo, Verdict, Verifier,
};
use mailtable_core::cache::{AnswerCache, Fetched};
use mailtable_core::store::ChangeToken;
use mailtable_core::{Config, Store, StoreError};

use crate::checkpassword::{userdb_fields, CheckpasswordRequest, Mode, Outcome};
use crate::dict::{DictBackend, Lookup};
use crate::http::{Account, ApiBackend, Endpoint, LookupResult, VerifyResult};
use crate::pool::{try_lock, HashPool, StorePool};
use crate::secret::Secret;

/// Dict key prefix of passdb lookups (`key = passdb/%u` plus Dovecot's
/// `shared/`, conf/dovecot-dict-auth-mailtable.conf.ext).
pub const DICT_PASSDB_PREFIX: &str = "shared/passdb/";
/// Dict key prefix of userdb lookups and of the user iteration.
pub const DICT_USERDB_PREFIX: &str = "shared/userdb/";

/// What a password check needs after the database was asked: everything but
/// the hashing, which [`VerifyPlan::run`] does (on the hash pool in
/// `serve`).
#[derive(Debug, Clone)]
pub struct VerifyPlan {
    login: Login,
    accounts: Accounts,
}

impl VerifyPlan {
    /// Does the CPU part of a password check.
    pub fn run(self, password: &Secret) -> VerifyResult {
        match self.login.check(password.expose()) {
            Verdict::Ok(account) => match prefetch_fields(&self.accounts, &account) {
                Ok(fields) => VerifyResult::Ok(Account {
                    user: account.address.to_string(),
                    fields,
                }),
                Err(e) => VerifyResult::TempFail(e.to_string()),
            },
            Verdict::Mismatch => VerifyResult::Mismatch,
            Verdict::Refused(address, why) => {
                // The client sees a wrong password and learns nothing about
                // the account's state; the log says why.
                tracing::info!(user = %address, "login refused: {why}");
                VerifyResult::Mismatch
            }
            Verdict::Unknown => VerifyResult::Unknown,
            Verdict::CannotVerify(reason) => VerifyResult::TempFail(reason),
        }
    }

    /// The passdb lookup's answer for the mailbox this check was planned
    /// for, from the same row, without the database: `None` when the plan
    /// found no active mailbox.
    fn passdb_answer(&self, dir: &Directory) -> Option<LookupResult> {
        let account = self.login.account()?.clone();
        Some(dir.passdb_answer(self.accounts.credentials_of(account, Verifier::Dovecot)))
    }
}

/// The userdb fields of a mailbox: `uid`, `gid`, `home` and, with a quota,
/// `quota_rule` and `quota_storage_size` (values decided by
/// [`Accounts::userinfo`]).
fn userdb_fields_of(info: UserInfo) -> Vec<(String, String)> {
    let quota_rule = info.quota_rule();
    let mut fields = vec![
        ("uid".to_string(), info.uid.to_string()),
        ("gid".to_string(), info.gid.to_string()),
        ("home".to_string(), info.home),
    ];
    if let Some(rule) = quota_rule {
        fields.push(("quota_rule".to_string(), rule));
    }
    if let Some(size) = info.quota {
        fields.push(("quota_storage_size".to_string(), size));
    }
    fields
}

/// The same fields as `userdb_*` passdb extra fields, for `userdb
/// prefetch` (core@2.3.19.1:src/auth/userdb-prefetch.c).
fn prefetch_fields(
    accounts: &Accounts,
    account: &accounts::Account,
) -> Result<Vec<(String, String)>, AccountError> {
    Ok(userdb_fields_of(accounts.userinfo(account)?)
        .into_iter()
        .map(|(k, v)| (format!("userdb_{k}"), v))
        .collect())
}

/// The Dovecot answers over the core account policy ([`Accounts`]): this
/// type only renders what the policy decided as passdb and userdb fields.
#[derive(Debug, Clone)]
pub struct Directory {
    config: Config,
    accounts: Accounts,
}

impl Directory {
    /// A directory for `config` (already validated by `Config::load`).
    pub fn new(config: Config) -> Directory {
        let accounts = Accounts::new(&config);
        Directory { config, accounts }
    }

    /// The config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A userdb lookup.
    pub fn userdb_lookup(
        &self,
        store: &mut dyn Store,
        name: &str,
    ) -> Result<LookupResult, StoreError> {
        let Some(account) = self.accounts.find(store, name)? else {
            return Ok(LookupResult::Unknown);
        };
        Ok(match self.accounts.userinfo(&account) {
            Ok(info) => LookupResult::Found(Account {
                user: account.address.to_string(),
                fields: userdb_fields_of(info),
            }),
            Err(e) => LookupResult::TempFail(e.to_string()),
        })
    }

    /// A passdb lookup: the hash in Dovecot's `{SCHEME}` form and the
    /// prefetch fields.
    ///
    /// A disabled mailbox gets a hash that matches no password (of its own
    /// hash's cost, [`Accounts::dummy_for_dovecot`]) and `nologin=y`: a
    /// login is refused like a wrong password, and so is everything that
    /// does not check a password, whose lookup still finds a user (a master
    /// user's login to it, `doveadm auth lookup`): Dovecot refuses a
    /// passdb answer with `nologin` (doc.dovecot.org, "Password database
    /// extra fields"). Without a password field those were an internal
    /// error ("No password returned (and no nopassword)"), a temporary
    /// failure that clients retry for ever.
    pub fn passdb_lookup(
        &self,
        store: &mut dyn Store,
        name: &str,
    ) -> Result<LookupResult, StoreError> {
        let credentials = self.accounts.credentials(store, name, Verifier::Dovecot)?;
        Ok(self.passdb_answer(credentials))
    }

    /// [`Directory::passdb_lookup`]'s answer for what the database gave.
    fn passdb_answer(&self, credentials: Credentials) -> LookupResult {
        let (account, password, disabled) = match credentials {
            Credentials::Found { account, hash } => (account, hash, false),
            Credentials::Refused(account, why) => {
                tracing::info!(user = %account.address,
                    "passdb lookup refused (nologin): {why}");
                let dummy = self.accounts.dummy_for_dovecot(&account);
                (account, dummy, true)
            }
            Credentials::Unknown => return LookupResult::Unknown,
            Credentials::CannotVerify(reason) => return LookupResult::TempFail(reason),
        };
        let mut fields: Vec<(String, String)> = vec![("password".to_string(), password)];
        if disabled {
            fields.push(("nologin".to_string(), "y".to_string()));
        }
        match prefetch_fields(&self.accounts, &account) {
            Ok(f) => fields.extend(f),
            Err(e) => return LookupResult::TempFail(e.to_string()),
        }
        LookupResult::Found(Account {
            user: account.address.to_string(),
            fields,
        })
    }

    /// The database part of a password check.
    pub fn verify_plan(&self, store: &mut dyn Store, name: &str) -> Result<VerifyPlan, StoreError> {
        Ok(VerifyPlan {
            login: self.accounts.login(store, name)?,
            accounts: self.accounts.clone(),
        })
    }

    /// A whole password check, hashing on the calling thread
    /// (checkpassword).
    pub fn verify(
        &self,
        store: &mut dyn Store,
        name: &str,
        password: &Secret,
    ) -> Result<VerifyResult, StoreError> {
        Ok(self.verify_plan(store, name)?.run(password))
    }

    /// The dict answer for `key`: `shared/passdb/<user>` or
    /// `shared/userdb/<user>` as one flat JSON object (reference §3.3);
    /// anything else is not found.
    pub fn dict_lookup(&self, store: &mut dyn Store, key: &str) -> Result<Lookup, StoreError> {
        if let Some(user) = key.strip_prefix(DICT_PASSDB_PREFIX) {
            Ok(dict_answer(self.passdb_lookup(store, user)?))
        } else if let Some(user) = key.strip_prefix(DICT_USERDB_PREFIX) {
            Ok(dict_answer(self.userdb_lookup(store, user)?))
        } else {
            Ok(Lookup::NotFound)
        }
    }

    /// Rows for `doveadm user '*'`: every mailbox under
    /// `shared/userdb/`, value the userdb JSON. Other paths list nothing;
    /// a mailbox whose user info is unusable is left out (a lookup of it
    /// fails with the reason).
    pub fn dict_iterate(
        &self,
        store: &mut dyn Store,
        path: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        if !DICT_USERDB_PREFIX.starts_with(path) && !path.starts_with(DICT_USERDB_PREFIX) {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for (user, info) in self.userdb_entries(store)? {
            let key = format!("{DICT_USERDB_PREFIX}{user}");
            if key.starts_with(path) {
                out.push((key, json_object(&user, &userdb_fields_of(info))));
            }
        }
        Ok(out)
    }

    /// The users of `doveadm user '*'` and `doveadm -A` in Lua mode (the
    /// HTTP API's `/userdb/iterate`): the same users as
    /// [`Directory::dict_iterate`]'s, by canonical name.
    pub fn userdb_users(&self, store: &mut dyn Store) -> Result<Vec<String>, StoreError> {
        Ok(self
            .userdb_entries(store)?
            .into_iter()
            .map(|(user, _)| user)
            .collect())
    }

    /// Every mailbox a userdb lookup finds, by canonical name, with its
    /// user info, each once: a mailbox whose user info is unusable is left
    /// out (a lookup of it fails with the reason), and so is a row a lookup
    /// cannot reach (`accounts.list` keeps those out). A row written twice
    /// by hand is one user, as its lookup gives one answer (the first
    /// row's): listed twice, every `doveadm -A` command would handle it
    /// twice.
    fn userdb_entries(&self, store: &mut dyn Store) -> Result<Vec<(String, UserInfo)>, StoreError> {
        let mut seen = std::collections::HashSet::new();
        Ok(self
            .accounts
            .list(store)?
            .into_iter()
            .filter(|account| seen.insert(account.address.clone()))
            .filter_map(|account| {
                let info = self.accounts.userinfo(&account).ok()?;
                Some((account.address.to_string(), info))
            })
            .collect())
    }
}

/// The checkpassword answer for one request: the outcome and, on success,
/// the fd-4 fields (reference §1.6).
///
/// | mode | fields on success |
/// |---|---|
/// | verify | `user`, `userdb_uid`, `userdb_gid`, `userdb_home`, `userdb_quota_rule` (for `userdb prefetch`) |
/// | passdb / credentials lookup | the same plus `password={SCHEME}hash` (none when disabled) |
/// | userdb lookup | `userdb_user` (the canonical name), `userdb_uid`, `userdb_gid`, `userdb_home`, `userdb_quota_rule` |
///
/// The userdb side of Dovecot applies only `userdb_*` fields
/// (core@2.3.19.1:src/auth/userdb-checkpassword.c), so the canonical name
/// travels as `userdb_user` there; `user` renames on the passdb side.
pub fn checkpassword_answer(
    directory: &Directory,
    store: &mut dyn Store,
    mode: &Mode,
    request: &CheckpasswordRequest,
) -> (Outcome, Vec<(String, String)>) {
    let user = request.user.as_str();
    let result = match mode {
        Mode::Verify => directory
            .verify(store, user, &request.password)
            .map(|r| match r {
                VerifyResult::Ok(a) => Ok(a),
                VerifyResult::Mismatch => Err(Outcome::Mismatch),
                VerifyResult::Unknown => Err(Outcome::Unknown),
                VerifyResult::TempFail(e) => {
                    tracing::warn!("checkpassword: {e}");
                    Err(Outcome::TempFail)
                }
            }),
        Mode::PassdbLookup | Mode::CredentialsLookup { .. } => {
            directory.passdb_lookup(store, user).map(lookup_outcome)
        }
        // Whether the user exists and may log in, as dict and Lua answer
        // Dovecot's `skip_password_check`: a disabled mailbox gets
        // `nologin`, which the login process refuses. No `password`
        // field: this is a login, not a credentials lookup.
        Mode::MasterLogin { master } => directory.passdb_lookup(store, user).map(|r| {
            lookup_outcome(r).map(|mut a| {
                tracing::info!(master = %master, user = %a.user, "checkpassword: master user login");
                a.fields.retain(|(k, _)| k != "password");
                a
            })
        }),
        Mode::UserdbLookup => directory.userdb_lookup(store, user).map(|r| {
            lookup_outcome(r).map(|a| Account {
                fields: userdb_fields(&a.fields),
                user: a.user,
            })
        }),
    };
    match result {
        Ok(Ok(account)) => {
            let mut fields = Vec::with_capacity(account.fields.len() + 1);
            let name_key = if matches!(mode, Mode::UserdbLookup) {
                "userdb_user"
            } else {
                "user"
            };
            fields.push((name_key.to_string(), account.user));
            fields.extend(account.fields);
            (Outcome::Success, fields)
        }
        Ok(Err(outcome)) => (outcome, Vec::new()),
        Err(e) => {
            tracing::warn!("checkpassword: {e}");
            (Outcome::TempFail, Vec::new())
        }
    }
}

fn lookup_outcome(r: LookupResult) -> Result<Account, Outcome> {
    match r {
        LookupResult::Found(a) => Ok(a),
        LookupResult::Unknown => Err(Outcome::Unknown),
        LookupResult::TempFail(e) => {
            tracing::warn!("checkpassword: {e}");
            Err(Outcome::TempFail)
        }
    }
}

/// A flat JSON object: `user` first, then the fields, all strings
/// (Dovecot converts them, reference §3.3).
fn json_object(user: &str, fields: &[(String, String)]) -> String {
    let mut map = serde_json::Map::new();
    map.insert("user".into(), serde_json::Value::from(user));
    for (k, v) in fields {
        map.insert(k.clone(), serde_json::Value::from(v.as_str()));
    }
    serde_json::Value::Object(map).to_string()
}

fn dict_answer(r: LookupResult) -> Lookup {
    match r {
        LookupResult::Found(a) => Lookup::Found(json_object(&a.user, &a.fields)),
        LookupResult::Unknown => Lookup::NotFound,
        LookupResult::TempFail(e) => Lookup::Failed(e),
    }
}

/// [`Directory`] behind the protocol traits, with pooled stores and, when
/// given a [`HashPool`], password checks off the connection thread.
/// Cloning is cheap; `serve` gives each connection thread its own clone.
#[derive(Clone)]
pub struct Backend {
    directory: Arc<Directory>,
    stores: Arc<StorePool>,
    hashes: Option<Arc<HashPool>>,
    cache: Arc<Mutex<AnswerCache<Cached>>>,
}

/// What the cache keeps, by kind of request.
#[derive(Debug, Clone)]
enum Cached {
    /// A passdb or userdb lookup of the HTTP API.
    Lookup(LookupResult),
    /// A dict lookup.
    Dict(Lookup),
    /// The database part of a password check (boxed: an account and a
    /// hash are several times the size of the other answers).
    Login(Box<VerifyPlan>),
}

impl Cached {
    /// Found: may be served during an outage. Unknown users, dict misses,
    /// and unknown or disabled logins never are.
    fn positive(&self) -> bool {
        match self {
            Cached::Lookup(r) => matches!(r, LookupResult::Found(_)),
            Cached::Dict(l) => matches!(l, Lookup::Found(_)),
            Cached::Login(plan) => plan.login.is_known(),
        }
    }
}

impl Backend {
    /// A backend; `hashes: None` hashes on the calling thread.
    pub fn new(
        directory: Arc<Directory>,
        stores: Arc<StorePool>,
        hashes: Option<Arc<HashPool>>,
    ) -> Backend {
        let cache = AnswerCache::new(directory.config().cache_settings());
        Backend {
            directory,
            stores,
            hashes,
            cache: Arc::new(Mutex::new(cache)),
        }
    }

    fn cache(&self) -> MutexGuard<'_, AnswerCache<Cached>> {
        // A thread that panicked while holding the lock left the cache
        // consistent (every method completes its change before returning).
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One lookup through the cache: the change check and a fresh answer
    /// on a pooled store, else `compute` there (also when the check
    /// failed); when the database fails, a found answer within
    /// `stale_if_error`, else the error. The lock is never held while the
    /// database is asked.
    fn cached(
        &self,
        key: &str,
        compute: impl FnOnce(&Directory, &mut dyn Store) -> Result<Cached, StoreError>,
    ) -> Result<Cached, StoreError> {
        let dir = &self.directory;
        // Every store lent (waiting on a writer's lock, most likely):
        // `with` would open another, which waits on the same lock before
        // the cache is even asked. An answer the file says is fresh needs
        // no store.
        if !self.stores.has_idle() {
            if let Some(hit) = self.fresh_in_place(key) {
                return Ok(hit);
            }
        }
        let result = self.stores.with(|s| {
            // A failed check: nothing fresh from memory, the lookup runs
            // anyway (see mailtable_core::cache).
            let token = s.change_token();
            let ticket = {
                let mut cache = self.cache();
                let ticket = match token {
                    Ok(token) => cache.begin(token),
                    Err(_) => cache.begin_unchecked(),
                };
                if let Some(hit) = cache.fresh(ticket, key) {
                    return Ok(hit);
                }
                ticket
            };
            let value = compute(dir, s)?;
            let fetched = Fetched {
                positive: value.positive(),
                value: value.clone(),
            };
            self.cache().put(ticket, key, fetched);
            Ok(value)
        });
        // A failed lookup says nothing of the data (a lock held past the
        // timeout, a store that could not be opened): the other answers
        // stay as fresh as the change check says, and a lookup run after
        // this one is answered from memory at once when the data has not
        // changed, instead of waiting out the same lock.
        result.or_else(|e| self.cache().stale(key, &e).ok_or(e))
    }

    /// The cached answer under `key` when the change check can be made in
    /// place, on an idle store ([`Store::change_token_in_place`]), and says
    /// it is fresh. `None` otherwise (nothing cached, the data changed, no
    /// idle store, a check that would wait or failed, the cache locked by
    /// another thread): [`Backend::cached`] then runs where waiting is
    /// allowed. Never a stale answer: an outage is for [`Backend::cached`]
    /// to report and ride out.
    fn fresh_in_place(&self, key: &str) -> Option<Cached> {
        // Some(answer): an idle store made the check (`None` in it: not
        // fresh); None: no store could (none idle, or the check needs a
        // reconnect), and the file is asked directly where it can be.
        let checked = self.stores.try_idle(|s| {
            let token = s.change_token_in_place()?.ok()??;
            Some(self.fresh_at(token, key))
        });
        match checked {
            Some(answer) => answer,
            None => self.fresh_at(self.stores.peek_token()?, key),
        }
    }

    /// The cached answer under `key` if `token`, the change check's, says
    /// it is fresh. The cache is not waited for: the thread holding it may
    /// be writing a log line (an outage's first stale answer, its end), and
    /// a runtime worker must not wait on whoever reads the log.
    fn fresh_at(&self, token: ChangeToken, key: &str) -> Option<Cached> {
        let mut cache = try_lock(&self.cache)?;
        let ticket = cache.begin(Some(token));
        cache.fresh(ticket, key)
    }

    /// A passdb lookup's answer from the password check of `user` kept in
    /// the cache, when the database is unavailable (served as any stale
    /// answer is: found only, within `stale_if_error`, logged once per
    /// outage).
    fn passdb_from_login(&self, user: &str, error: &StoreError) -> Option<LookupResult> {
        let Cached::Login(plan) = self.cache().stale(&verify_key(user), error)? else {
            return None;
        };
        plan.passdb_answer(&self.directory)
    }

    /// One HTTP API lookup through the cache; `outage`: an answer of its
    /// own for a database error the cache had nothing for.
    fn run_lookup(
        &self,
        what: &str,
        user: &str,
        f: impl FnOnce(&Directory, &mut dyn Store) -> Result<LookupResult, StoreError>,
        outage: impl FnOnce(&StoreError) -> Option<LookupResult>,
    ) -> LookupResult {
        // Not logged here: the protocol layer logs every temporary failure
        // with the request it belongs to.
        let answer = self.cached(&lookup_key(what, user), |d, s| f(d, s).map(Cached::Lookup));
        match answer {
            Ok(Cached::Lookup(r)) => r,
            Ok(_) => LookupResult::TempFail(format!("{what}: {KIND_MISMATCH}")),
            Err(e) => outage(&e).unwrap_or_else(|| LookupResult::TempFail(format!("{what}: {e}"))),
        }
    }
}

/// Keys carry the kind of request, so a kind never finds another's entry;
/// if it ever did, the lookup fails temporarily rather than guess.
const KIND_MISMATCH: &str = "the answer cache kept another kind of answer under this key";

/// What the cache keys and the messages of the HTTP API's lookups call
/// them.
const PASSDB_LOOKUP: &str = "passdb lookup";
const USERDB_LOOKUP: &str = "userdb lookup";

/// The cache key of an HTTP API lookup (`what`: [`PASSDB_LOOKUP`] or
/// [`USERDB_LOOKUP`]).
fn lookup_key(what: &str, user: &str) -> String {
    [what, "\t", &canonical(user)].concat()
}

/// The cache key of a password check's plan.
fn verify_key(user: &str) -> String {
    ["verify\t", &canonical(user)].concat()
}

/// The cache key of a dict lookup.
fn dict_key(key: &str) -> String {
    for prefix in [DICT_PASSDB_PREFIX, DICT_USERDB_PREFIX] {
        if let Some(user) = key.strip_prefix(prefix) {
            return ["dict\t", prefix, &canonical(user)].concat();
        }
    }
    ["dict\t", key].concat()
}

/// A login name in the one form the lookups reduce it to (`hugo@barrera.io`
/// for `hugo_barrera.io`, `Hugo@Barrera.IO`): the forms of one mailbox get
/// one answer, so they share one cache entry, and an outage finds the
/// entry whichever form was asked before it (LMTP asks the delivery name,
/// a login the address). A name that is no login stays as it is.
fn canonical(user: &str) -> std::borrow::Cow<'_, str> {
    match mailtable_core::delivery::parse_login(user) {
        Ok(a) => a.to_string().into(),
        Err(_) => user.into(),
    }
}

/// What [`lookup_key`] calls an HTTP API lookup; `None` for a password
/// check, which is never answered in place (it waits for a hashing
/// thread).
fn lookup_kind(endpoint: Endpoint) -> Option<&'static str> {
    match endpoint {
        Endpoint::PassdbLookup => Some(PASSDB_LOOKUP),
        Endpoint::UserdbLookup => Some(USERDB_LOOKUP),
        Endpoint::PassdbVerify | Endpoint::UserdbIterate => None,
    }
}

impl ApiBackend for Backend {
    fn passdb_verify(&mut self, user: &str, password: &Secret) -> VerifyResult {
        let plan = self.cached(&verify_key(user), |d, s| {
            Ok(Cached::Login(Box::new(d.verify_plan(s, user)?)))
        });
        let plan = match plan {
            Ok(Cached::Login(p)) => *p,
            Ok(_) => return VerifyResult::TempFail(format!("passdb verify: {KIND_MISMATCH}")),
            Err(e) => return VerifyResult::TempFail(format!("passdb verify: {e}")),
        };
        match &self.hashes {
            None => plan.run(password),
            Some(pool) => {
                let password = password.clone();
                pool.run(move || plan.run(&password))
                    .unwrap_or_else(|e| VerifyResult::TempFail(e.to_string()))
            }
        }
    }

    /// In an outage, a user with no passdb lookup cached but a password
    /// check (a normal login) is answered from that check's row: a master
    /// user's login to it (Lua mode asks a lookup for that, and a verify
    /// for the user's own login) works whichever the user made before.
    /// The dict shares one entry for both.
    fn passdb_lookup(&mut self, user: &str) -> LookupResult {
        self.run_lookup(
            PASSDB_LOOKUP,
            user,
            |d, s| d.passdb_lookup(s, user),
            |e| self.passdb_from_login(user, e),
        )
    }

    fn userdb_lookup(&mut self, user: &str) -> LookupResult {
        self.run_lookup(
            USERDB_LOOKUP,
            user,
            |d, s| d.userdb_lookup(s, user),
            |_| None,
        )
    }

    /// Never from the cache: a listing is asked rarely (doveadm), and a
    /// cached one would miss every user added since.
    fn userdb_iterate(&mut self) -> Result<Vec<String>, String> {
        let dir = &self.directory;
        self.stores
            .with(|s| dir.userdb_users(s))
            .map_err(|e| format!("userdb iterate: {e}"))
    }

    fn lookup_in_place(&mut self, endpoint: Endpoint, user: &str) -> Option<LookupResult> {
        match self.fresh_in_place(&lookup_key(lookup_kind(endpoint)?, user))? {
            Cached::Lookup(r) => Some(r),
            // Reported by the lookup proper.
            _ => None,
        }
    }
}

impl DictBackend for Backend {
    fn lookup(&mut self, key: &str, _user: &str) -> Lookup {
        let answer = self.cached(&dict_key(key), |d, s| {
            d.dict_lookup(s, key).map(Cached::Dict)
        });
        match answer {
            Ok(Cached::Dict(l)) => l,
            Ok(_) => Lookup::Failed(KIND_MISMATCH.into()),
            Err(e) => Lookup::Failed(e.to_string()),
        }
    }

    fn lookup_in_place(&mut self, key: &str, _user: &str) -> Option<Lookup> {
        match self.fresh_in_place(&dict_key(key))? {
            Cached::Dict(l) => Some(l),
            // Reported by the lookup proper.
            _ => None,
        }
    }

    fn iterate(&mut self, path: &str) -> Result<Vec<(String, String)>, String> {
        let dir = &self.directory;
        self.stores
            .with(|s| dir.dict_iterate(s, path))
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailtable_core::password::{self, Secret as CoreSecret};
    use mailtable_core::store::failing::FailingStore;
    use mailtable_core::store::memory::MemStore;
    use std::sync::atomic::{AtomicBool, Ordering};

    const PW: &str = "correct horse";

    fn config() -> Config {
        Config::parse("uid = 2000\ngid = 2001\nhome = \"/var/vmail/%d/%n\"\npassword_cost = 4")
            .expect("valid test config")
    }

    fn fixture() -> MemStore {
        let h = password::hash(&CoreSecret::new(PW), 4).expect("hashing works");
        let mut s = MemStore::default()
            .with("hugo", "barrera.io", "hugo@barrera.io", Some(h.stored()))
            .with(
                "john_doe",
                "example.com",
                "john_doe@example.com",
                Some(h.stored()),
            )
            .with("%", "barrera.io", "hugo@barrera.io", None)
            .with("alias", "barrera.io", "hugo@barrera.io", None)
            .with("off", "barrera.io", "off@barrera.io", Some(h.stored()))
            .with(
                "weird",
                "barrera.io",
                "weird@barrera.io",
                Some("{SSHA512}abc"),
            )
            .with("empty", "barrera.io", "empty@barrera.io", Some(""));
        s.rows[0].quota = Some("2G".into());
        s.rows[4].active = false;
        s
    }

    fn dir() -> Directory {
        Directory::new(config())
    }

    fn secret(s: &str) -> Secret {
        Secret::new(s)
    }

    fn backend_over(
        store: MemStore,
        broken: Arc<AtomicBool>,
        hashes: Option<Arc<HashPool>>,
    ) -> Backend {
        let pool = StorePool::new(
            Box::new(move || {
                let mut s = store.clone();
                s.broken = broken.load(Ordering::SeqCst);
                Ok(Box::new(s) as Box<dyn Store>)
            }),
            0,
        );
        Backend::new(Arc::new(dir()), Arc::new(pool), hashes)
    }

    fn fields(a: &Account) -> Vec<(&str, &str)> {
        a.fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn userdb_for_both_login_forms() {
        let d = dir();
        let mut s = fixture();
        for name in ["hugo@barrera.io", "hugo_barrera.io", "Hugo@Barrera.IO"] {
            let LookupResult::Found(a) = d.userdb_lookup(&mut s, name).expect("store works") else {
                panic!("{name} not found");
            };
            assert_eq!(a.user, "hugo@barrera.io");
            assert_eq!(
                fields(&a),
                vec![
                    ("uid", "2000"),
                    ("gid", "2001"),
                    ("home", "/var/vmail/barrera.io/hugo"),
                    ("quota_rule", "*:storage=2G"),
                    ("quota_storage_size", "2G"),
                ]
            );
        }
        // The last `_` splits: john_doe_example.com is john_doe@example.com.
        let LookupResult::Found(a) = d
            .userdb_lookup(&mut s, "john_doe_example.com")
            .expect("store works")
        else {
            panic!("john_doe not found");
        };
        assert_eq!(a.user, "john_doe@example.com");
        assert_eq!(fields(&a).len(), 3, "no quota, no quota_rule");
    }

    #[test]
    fn userdb_unknown_aliases_and_non_addresses() {
        let d = dir();
        let mut s = fixture();
        // An alias and a catch-all are not mailboxes: no login, no userdb.
        for name in [
            "alias@barrera.io",
            "nobody@barrera.io",
            "hugo",
            "",
            "x@y@z",
            "nobody_nowhere.org",
        ] {
            assert_eq!(
                d.userdb_lookup(&mut s, name).expect("store works"),
                LookupResult::Unknown,
                "{name}"
            );
        }
    }

    #[test]
    fn disabled_mailbox_still_receives_mail() {
        let r = dir()
            .userdb_lookup(&mut fixture(), "off_barrera.io")
            .expect("store works");
        assert!(matches!(r, LookupResult::Found(a) if a.user == "off@barrera.io"));
    }

    #[test]
    fn verify_outcomes() {
        let d = dir();
        let mut s = fixture();
        let ok = d
            .verify(&mut s, "hugo_barrera.io", &secret(PW))
            .expect("store works");
        let VerifyResult::Ok(a) = ok else {
            panic!("right password refused: {ok:?}");
        };
        assert_eq!(a.user, "hugo@barrera.io");
        assert!(fields(&a).contains(&("userdb_home", "/var/vmail/barrera.io/hugo")));
        assert!(fields(&a).contains(&("userdb_quota_rule", "*:storage=2G")));
        assert!(!a.fields.iter().any(|(k, _)| k == "password"));

        assert_eq!(
            d.verify(&mut s, "hugo@barrera.io", &secret("wrong"))
                .expect("store works"),
            VerifyResult::Mismatch
        );
        assert_eq!(
            d.verify(&mut s, "nobody@barrera.io", &secret(PW))
                .expect("store works"),
            VerifyResult::Unknown
        );
        assert_eq!(
            d.verify(&mut s, "alias@barrera.io", &secret(PW))
                .expect("store works"),
            VerifyResult::Unknown
        );
        // Disabled: refused like a wrong password, even with the right one.
        assert_eq!(
            d.verify(&mut s, "off@barrera.io", &secret(PW))
                .expect("store works"),
            VerifyResult::Mismatch
        );
        // Bytes that are not UTF-8 never match.
        assert_eq!(
            d.verify(
                &mut s,
                "hugo@barrera.io",
                &Secret::new(b"\xff\xfe".to_vec())
            )
            .expect("store works"),
            VerifyResult::Mismatch
        );
    }

    #[test]
    fn uncheckable_hash_is_a_temporary_failure() {
        let d = dir();
        let mut s = fixture();
        for name in ["weird@barrera.io", "empty@barrera.io"] {
            let r = d.verify(&mut s, name, &secret(PW)).expect("store works");
            assert!(matches!(r, VerifyResult::TempFail(_)), "{name}: {r:?}");
        }
        let r = d
            .passdb_lookup(&mut s, "empty@barrera.io")
            .expect("store works");
        assert!(matches!(r, LookupResult::TempFail(_)), "{r:?}");
    }

    #[test]
    fn passdb_lookup_returns_the_dovecot_hash() {
        let d = dir();
        let mut s = fixture();
        let LookupResult::Found(a) = d
            .passdb_lookup(&mut s, "hugo_barrera.io")
            .expect("store works")
        else {
            panic!("not found");
        };
        assert_eq!(a.user, "hugo@barrera.io");
        let pw = a
            .fields
            .iter()
            .find(|(k, _)| k == "password")
            .map(|(_, v)| v.as_str());
        assert!(
            pw.is_some_and(|p| p.starts_with("{BLF-CRYPT}$2b$04$")),
            "{pw:?}"
        );
        assert!(fields(&a).contains(&("userdb_uid", "2000")));
        // Disabled: found, with a hash of the stored cost that matches no
        // password, and nologin: Dovecot refuses it whatever is tried.
        let LookupResult::Found(a) = d
            .passdb_lookup(&mut s, "off@barrera.io")
            .expect("store works")
        else {
            panic!("not found");
        };
        let dummy = a
            .fields
            .iter()
            .find(|(k, _)| k == "password")
            .map(|(_, v)| mailtable_core::PasswordHash::new(v.clone()))
            .expect("a password field");
        assert!(
            dummy.stored().starts_with("{BLF-CRYPT}$2b$04$"),
            "{dummy:?}"
        );
        assert_eq!(dummy.verify_bytes(PW.as_bytes()).ok(), Some(false));
        assert!(fields(&a).contains(&("nologin", "y")));
        assert_eq!(
            d.passdb_lookup(&mut s, "nobody@barrera.io")
                .expect("store works"),
            LookupResult::Unknown
        );
    }

    #[test]
    fn store_errors_surface_as_errors() {
        let d = dir();
        let mut s = fixture();
        s.broken = true;
        assert!(d.userdb_lookup(&mut s, "hugo@barrera.io").is_err());
        assert!(d.passdb_lookup(&mut s, "hugo@barrera.io").is_err());
        assert!(d.verify_plan(&mut s, "hugo@barrera.io").is_err());
        assert!(d
            .dict_lookup(&mut s, "shared/userdb/hugo@barrera.io")
            .is_err());
    }

    #[test]
    fn dict_answers() {
        let d = dir();
        let mut s = fixture();
        let Lookup::Found(json) = d
            .dict_lookup(&mut s, "shared/userdb/hugo_barrera.io")
            .expect("store works")
        else {
            panic!("not found");
        };
        let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        assert_eq!(v["user"], "hugo@barrera.io");
        assert_eq!(v["uid"], "2000");
        assert_eq!(v["home"], "/var/vmail/barrera.io/hugo");
        assert_eq!(v["quota_rule"], "*:storage=2G");

        let Lookup::Found(json) = d
            .dict_lookup(&mut s, "shared/passdb/hugo@barrera.io")
            .expect("store works")
        else {
            panic!("not found");
        };
        let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        assert!(v["password"]
            .as_str()
            .is_some_and(|p| p.starts_with("{BLF-CRYPT}$2b$")));
        assert_eq!(v["userdb_gid"], "2001");

        for key in [
            "shared/userdb/nobody@barrera.io",
            "shared/other/hugo@barrera.io",
            "priv/quota/x",
        ] {
            assert_eq!(
                d.dict_lookup(&mut s, key).expect("store works"),
                Lookup::NotFound,
                "{key}"
            );
        }
        let Lookup::Failed(_) = d
            .dict_lookup(&mut s, "shared/passdb/empty@barrera.io")
            .expect("store works")
        else {
            panic!("an unusable hash must fail the lookup");
        };
    }

    #[test]
    fn dict_iterates_mailboxes_only() {
        let d = dir();
        let mut s = fixture();
        let rows = d
            .dict_iterate(&mut s, "shared/userdb/")
            .expect("store works");
        let keys: Vec<&str> = rows.iter().map(|(k, _)| k.as_str()).collect();
        assert!(keys.contains(&"shared/userdb/hugo@barrera.io"));
        assert!(keys.contains(&"shared/userdb/john_doe@example.com"));
        assert!(keys.contains(&"shared/userdb/off@barrera.io"));
        assert!(!keys.iter().any(|k| k.contains('%') || k.contains("alias")));
        assert!(d
            .dict_iterate(&mut s, "shared/passdb/")
            .expect("store works")
            .is_empty());
        // A path above the userdb prefix lists every mailbox; one below it,
        // the mailboxes under it.
        assert_eq!(
            d.dict_iterate(&mut s, "shared/").expect("store works"),
            rows
        );
        let under: Vec<String> = d
            .dict_iterate(&mut s, "shared/userdb/hugo")
            .expect("store works")
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(under, vec!["shared/userdb/hugo@barrera.io".to_string()]);
    }

    /// Rows written by hand in another case (`Hugo2`, `Barrera.IO`) are
    /// found by no lookup, so `doveadm user '*'` must not list them: every
    /// name listed is one `doveadm user NAME` then finds.
    #[test]
    fn dict_iterates_only_what_lookups_find() {
        let d = dir();
        let mut s = fixture()
            .with("Hugo2", "barrera.io", "hugo2@barrera.io", Some("x"))
            .with("hugo3", "Barrera.IO", "hugo3@barrera.io", Some("x"));
        let listed: Vec<String> = d
            .dict_iterate(&mut s, "shared/userdb/")
            .expect("store works")
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        for name in ["hugo2@barrera.io", "hugo3@barrera.io"] {
            assert!(
                !listed.iter().any(|k| k.ends_with(name)),
                "{name} listed: {listed:?}"
            );
            assert!(matches!(
                d.dict_lookup(&mut s, &format!("shared/userdb/{name}"))
                    .expect("store works"),
                Lookup::NotFound
            ));
        }
        assert!(listed.contains(&"shared/userdb/hugo@barrera.io".to_string()));
    }

    /// The HTTP API's listing (Lua mode) names exactly the users of the
    /// dict's (`doveadm user '*'` lists the same in both modes), hand-made
    /// rows no lookup finds left out there too.
    #[test]
    fn the_api_lists_the_users_the_dict_lists() {
        let d = dir();
        let mut s = fixture()
            .with("Hugo2", "barrera.io", "hugo2@barrera.io", Some("x"))
            .with("hugo", "barrera.io", "hugo@barrera.io", Some("x"));
        let dict: Vec<String> = d
            .dict_iterate(&mut s, "shared/userdb/")
            .expect("store works")
            .into_iter()
            .map(|(k, _)| k[DICT_USERDB_PREFIX.len()..].to_string())
            .collect();
        let mut api = d.userdb_users(&mut s).expect("store works");
        assert_eq!(api, dict);
        api.sort();
        assert_eq!(
            api,
            [
                "empty@barrera.io",
                "hugo@barrera.io",
                "john_doe@example.com",
                "off@barrera.io",
                "weird@barrera.io"
            ]
        );
    }

    #[test]
    fn backend_maps_outages_to_temporary_failures() {
        let broken = Arc::new(AtomicBool::new(true));
        let mut b = backend_over(fixture(), Arc::clone(&broken), None);
        assert!(matches!(
            b.passdb_verify("hugo@barrera.io", &secret(PW)),
            VerifyResult::TempFail(_)
        ));
        assert!(matches!(
            b.passdb_lookup("hugo@barrera.io"),
            LookupResult::TempFail(_)
        ));
        assert!(matches!(
            b.userdb_lookup("hugo_barrera.io"),
            LookupResult::TempFail(_)
        ));
        assert!(matches!(
            DictBackend::lookup(&mut b, "shared/userdb/hugo@barrera.io", ""),
            Lookup::Failed(_)
        ));
        assert!(b.iterate("shared/userdb/").is_err());
        assert!(b.userdb_iterate().is_err());

        // The database comes back: the same backend answers again.
        broken.store(false, Ordering::SeqCst);
        assert!(b
            .userdb_iterate()
            .expect("store works")
            .contains(&"hugo@barrera.io".to_string()));
        assert!(matches!(
            b.passdb_verify("hugo@barrera.io", &secret(PW)),
            VerifyResult::Ok(_)
        ));
        assert!(matches!(
            b.userdb_lookup("hugo_barrera.io"),
            LookupResult::Found(_)
        ));
        assert!(matches!(
            DictBackend::lookup(&mut b, "shared/userdb/hugo@barrera.io", ""),
            Lookup::Found(_)
        ));
    }

    /// Lua mode asks a verify for a user's own login and a passdb lookup
    /// for a master user's login to it: in an outage, a user who only
    /// logged in before still gets the lookup, from that login's row, the
    /// same answer the database gave; a user never seen, or one whose
    /// check found no active mailbox, stays a temporary failure.
    #[test]
    fn an_outage_answers_a_passdb_lookup_from_a_login_seen_before() {
        let broken = Arc::new(AtomicBool::new(false));
        let mut store = fixture();
        store.versioned = true;
        let mut b = backend_over(store.clone(), Arc::clone(&broken), None);
        let fresh = Directory::new(config())
            .passdb_lookup(&mut store.clone(), "hugo@barrera.io")
            .expect("store works");
        assert!(matches!(fresh, LookupResult::Found(_)));
        assert!(matches!(
            b.passdb_verify("hugo_barrera.io", &secret(PW)),
            VerifyResult::Ok(_)
        ));
        assert!(matches!(
            b.passdb_verify("off@barrera.io", &secret(PW)),
            VerifyResult::Mismatch
        ));

        broken.store(true, Ordering::SeqCst);
        assert_eq!(b.passdb_lookup("hugo@barrera.io"), fresh);
        assert_eq!(b.passdb_lookup("Hugo@Barrera.IO"), fresh);
        for user in [
            "off@barrera.io",
            "john_doe@example.com",
            "nobody@barrera.io",
        ] {
            assert!(
                matches!(b.passdb_lookup(user), LookupResult::TempFail(_)),
                "{user}"
            );
        }
        // No stale answer at all: none from a login either.
        let mut b = backend_over(store, Arc::clone(&broken), None);
        broken.store(false, Ordering::SeqCst);
        assert!(matches!(
            b.passdb_verify("hugo@barrera.io", &secret(PW)),
            VerifyResult::Ok(_)
        ));
        broken.store(true, Ordering::SeqCst);
        b.cache().forget(&verify_key("hugo@barrera.io"));
        assert!(matches!(
            b.passdb_lookup("hugo@barrera.io"),
            LookupResult::TempFail(_)
        ));
    }

    /// With answers cached, an outage: found users keep their userdb and
    /// passdb answers and their logins (the password is still checked,
    /// against the hash the database gave last), unknown users fail
    /// temporarily; back again, a change made meanwhile is seen at once.
    #[test]
    fn cached_answers_ride_out_an_outage_and_only_found_ones() {
        let broken = Arc::new(AtomicBool::new(false));
        let mut store = fixture();
        store.versioned = true;
        let mut b = backend_over(store.clone(), Arc::clone(&broken), None);
        let userdb = |b: &mut Backend, u: &str| b.userdb_lookup(u);
        assert!(matches!(
            b.passdb_verify("hugo@barrera.io", &secret(PW)),
            VerifyResult::Ok(_)
        ));
        assert!(matches!(
            userdb(&mut b, "hugo_barrera.io"),
            LookupResult::Found(_)
        ));
        assert!(matches!(
            b.passdb_lookup("hugo@barrera.io"),
            LookupResult::Found(_)
        ));
        let dict = DictBackend::lookup(&mut b, "shared/userdb/hugo@barrera.io", "");
        assert!(matches!(dict, Lookup::Found(_)));
        assert_eq!(userdb(&mut b, "nobody@barrera.io"), LookupResult::Unknown);
        assert!(matches!(
            b.passdb_verify("nobody@barrera.io", &secret(PW)),
            VerifyResult::Unknown
        ));

        broken.store(true, Ordering::SeqCst);
        assert!(matches!(
            b.passdb_verify("hugo@barrera.io", &secret(PW)),
            VerifyResult::Ok(_)
        ));
        assert!(matches!(
            b.passdb_verify("hugo@barrera.io", &secret("wrong")),
            VerifyResult::Mismatch
        ));
        assert!(matches!(
            userdb(&mut b, "hugo_barrera.io"),
            LookupResult::Found(_)
        ));
        assert!(matches!(
            b.passdb_lookup("hugo@barrera.io"),
            LookupResult::Found(_)
        ));
        assert_eq!(
            DictBackend::lookup(&mut b, "shared/userdb/hugo@barrera.io", ""),
            dict
        );
        // The other forms of the same mailbox share the entries: LMTP
        // asks the delivery name, a login the address, in any case.
        assert_eq!(
            DictBackend::lookup(&mut b, "shared/userdb/hugo_barrera.io", ""),
            dict
        );
        assert!(matches!(
            userdb(&mut b, "Hugo@Barrera.IO"),
            LookupResult::Found(_)
        ));
        assert!(matches!(
            b.passdb_verify("HUGO_barrera.io", &secret(PW)),
            VerifyResult::Ok(_)
        ));
        assert!(matches!(
            userdb(&mut b, "nobody@barrera.io"),
            LookupResult::TempFail(_)
        ));
        assert!(matches!(
            b.passdb_verify("nobody@barrera.io", &secret(PW)),
            VerifyResult::TempFail(_)
        ));
        assert!(matches!(
            DictBackend::lookup(&mut b, "shared/userdb/nobody@barrera.io", ""),
            Lookup::Failed(_)
        ));

        // Back, with hugo deleted meanwhile: seen at once.
        store.rows.retain(|r| r.username != "hugo");
        let mut b2 = backend_over(store, Arc::clone(&broken), None);
        b2.cache = Arc::clone(&b.cache);
        broken.store(false, Ordering::SeqCst);
        assert_eq!(userdb(&mut b2, "hugo_barrera.io"), LookupResult::Unknown);
        assert!(matches!(
            b2.passdb_verify("hugo@barrera.io", &secret(PW)),
            VerifyResult::Unknown
        ));
    }

    /// A lookup that fails while the change check succeeds (a writer holds
    /// the lock past the timeout) says nothing about the data: the other
    /// answers stay fresh and are given without asking the database again
    /// (a query would wait out the lock once more, past the Lua script's
    /// request timeout).
    #[test]
    fn a_failed_lookup_leaves_the_other_answers_fresh() {
        let mut store = fixture();
        store.versioned = true;
        let over = |s: FailingStore<MemStore>| {
            let pool = StorePool::new(
                Box::new(move || Ok(Box::new(s.clone()) as Box<dyn Store>)),
                0,
            );
            Backend::new(Arc::new(dir()), Arc::new(pool), None)
        };
        let run = |b: &mut Backend| {
            let hugo = b.passdb_verify("hugo@barrera.io", &secret(PW));
            assert!(matches!(hugo, VerifyResult::Ok(_)), "{hugo:?}");
            b.passdb_verify("nobody@barrera.io", &secret(PW))
        };
        let counting = FailingStore::counting(store.clone());
        assert_eq!(run(&mut over(counting.clone())), VerifyResult::Unknown);
        // The same, with the last query of nobody's lookup failing.
        let failing = FailingStore::failing_at(store, counting.calls());
        let mut b = over(failing.clone());
        assert!(matches!(run(&mut b), VerifyResult::TempFail(_)));
        assert_ne!(failing.failed_call(), Some("change_token"));
        let before = failing.calls();
        let hugo = b.passdb_verify("hugo@barrera.io", &secret(PW));
        assert!(matches!(hugo, VerifyResult::Ok(_)), "{hugo:?}");
        assert_eq!(failing.calls(), before + 1, "only the change check");
        assert_eq!(b.cache().stats().stale, 0);
    }

    /// Every store lent (waiting on a writer's lock): a cached answer the
    /// file's own change token says is fresh is given at once, as a hit,
    /// without a store; one whose data changed is not (here the pool gives
    /// up at once, so it is served as an outage's stale answer instead).
    #[test]
    fn cached_answers_need_no_store_when_all_are_lent() {
        let mut store = fixture();
        store.versioned = true;
        let token = store.clone().change_token().unwrap().unwrap();
        let over = |peeked: ChangeToken| {
            let s = store.clone();
            let pool = StorePool::new(
                Box::new(move || Ok(Box::new(s.clone()) as Box<dyn Store>)),
                1,
            )
            .limit(1, std::time::Duration::ZERO)
            .peek(Box::new(move || Some(peeked)));
            let pool = Arc::new(pool);
            (Backend::new(Arc::new(dir()), Arc::clone(&pool), None), pool)
        };
        let lend_the_store = |pool: Arc<StorePool>| {
            let (lent, give_back) = std::sync::mpsc::channel::<()>();
            let (taken, wait_taken) = std::sync::mpsc::channel::<()>();
            let holder = std::thread::spawn(move || {
                pool.with(|_| {
                    taken.send(()).unwrap();
                    let _ = give_back.recv();
                    Ok(())
                })
            });
            wait_taken.recv().unwrap();
            (lent, holder)
        };
        let dict_key = "shared/userdb/hugo@barrera.io";

        let (mut b, pool) = over(token);
        assert!(matches!(
            b.userdb_lookup("hugo_barrera.io"),
            LookupResult::Found(_)
        ));
        assert!(matches!(
            DictBackend::lookup(&mut b, dict_key, ""),
            Lookup::Found(_)
        ));
        let (release, holder) = lend_the_store(Arc::clone(&pool));
        assert!(!pool.has_idle());
        let hits = b.cache().stats().hits;
        assert!(matches!(
            b.userdb_lookup("hugo_barrera.io"),
            LookupResult::Found(_)
        ));
        assert!(matches!(
            DictBackend::lookup_in_place(&mut b, dict_key, ""),
            Some(Lookup::Found(_))
        ));
        let stats = b.cache().stats();
        assert_eq!((stats.hits, stats.stale), (hits + 2, 0), "{stats:?}");
        drop(release);
        holder.join().unwrap().unwrap();

        // The file says the data changed: nothing fresh from memory.
        let changed = ChangeToken::new([1, 2, 3, 4, 5, 6]);
        let (mut b, pool) = over(changed);
        assert!(matches!(
            b.userdb_lookup("hugo_barrera.io"),
            LookupResult::Found(_)
        ));
        let (release, holder) = lend_the_store(Arc::clone(&pool));
        assert_eq!(DictBackend::lookup_in_place(&mut b, dict_key, ""), None);
        assert!(matches!(
            b.userdb_lookup("hugo_barrera.io"),
            LookupResult::Found(_)
        ));
        assert_eq!(b.cache().stats().stale, 1);
        drop(release);
        holder.join().unwrap().unwrap();
    }

    /// `stale_if_error = 0`: an outage fails every lookup, cached or not.
    #[test]
    fn stale_if_error_off_fails_every_lookup_in_an_outage() {
        let broken = Arc::new(AtomicBool::new(false));
        let mut store = fixture();
        store.versioned = true;
        let mut config = config();
        config.stale_if_error = 0;
        let s = store.clone();
        let flag = Arc::clone(&broken);
        let pool = StorePool::new(
            Box::new(move || {
                let mut s = s.clone();
                s.broken = flag.load(Ordering::SeqCst);
                Ok(Box::new(s) as Box<dyn Store>)
            }),
            0,
        );
        let mut b = Backend::new(Arc::new(Directory::new(config)), Arc::new(pool), None);
        assert!(matches!(
            b.userdb_lookup("hugo_barrera.io"),
            LookupResult::Found(_)
        ));
        assert!(matches!(
            b.userdb_lookup("hugo_barrera.io"),
            LookupResult::Found(_)
        ));
        broken.store(true, Ordering::SeqCst);
        assert!(matches!(
            b.userdb_lookup("hugo_barrera.io"),
            LookupResult::TempFail(_)
        ));
    }

    fn cp(
        mode: Mode,
        user: &str,
        pw: &str,
        store: &mut MemStore,
    ) -> (Outcome, Vec<(String, String)>) {
        let request = CheckpasswordRequest {
            user: user.into(),
            password: secret(pw),
        };
        checkpassword_answer(&dir(), store, &mode, &request)
    }

    /// A master user's login: the master's password (any) is not checked;
    /// the user must exist, and a disabled one is answered `nologin`.
    #[test]
    fn checkpassword_master_login() {
        let mut s = fixture();
        let master = || Mode::MasterLogin {
            master: "admin".into(),
        };
        let (o, f) = cp(master(), "hugo@barrera.io", "the master's pw", &mut s);
        assert_eq!(o, Outcome::Success);
        assert_eq!(o.exit_code(&master()), 0);
        assert_eq!(f[0], ("user".to_string(), "hugo@barrera.io".to_string()));
        assert!(f.contains(&("userdb_uid".into(), "2000".into())));
        assert!(f.iter().all(|(k, _)| k != "password"), "{f:?}");
        assert!(f.iter().all(|(k, _)| k != "nologin"), "{f:?}");
        let (o, f) = cp(master(), "off@barrera.io", "x", &mut s);
        assert_eq!(o, Outcome::Success);
        assert!(f.contains(&("nologin".into(), "y".into())), "{f:?}");
        let (o, _) = cp(master(), "nobody@barrera.io", "x", &mut s);
        assert_eq!((o, o.exit_code(&master())), (Outcome::Unknown, 1));
    }

    #[test]
    fn checkpassword_modes() {
        let mut s = fixture();
        let (o, f) = cp(Mode::Verify, "hugo@barrera.io", PW, &mut s);
        assert_eq!(o, Outcome::Success);
        assert_eq!(f[0], ("user".to_string(), "hugo@barrera.io".to_string()));
        assert!(f.contains(&("userdb_uid".into(), "2000".into())));
        assert_eq!(
            cp(Mode::Verify, "hugo@barrera.io", "bad", &mut s).0,
            Outcome::Mismatch
        );
        assert_eq!(
            cp(Mode::Verify, "nobody@barrera.io", PW, &mut s).0,
            Outcome::Unknown
        );
        assert_eq!(
            cp(Mode::Verify, "off@barrera.io", PW, &mut s).0,
            Outcome::Mismatch
        );

        let (o, f) = cp(Mode::UserdbLookup, "hugo_barrera.io", "", &mut s);
        assert_eq!(o, Outcome::Success);
        assert_eq!(
            f,
            vec![
                ("userdb_user".to_string(), "hugo@barrera.io".to_string()),
                ("userdb_uid".into(), "2000".into()),
                ("userdb_gid".into(), "2001".into()),
                ("userdb_home".into(), "/var/vmail/barrera.io/hugo".into()),
                ("userdb_quota_rule".into(), "*:storage=2G".into()),
                ("userdb_quota_storage_size".into(), "2G".into()),
            ]
        );
        assert_eq!(
            cp(Mode::UserdbLookup, "nobody_barrera.io", "", &mut s).0,
            Outcome::Unknown
        );

        let (o, f) = cp(Mode::PassdbLookup, "hugo_barrera.io", "", &mut s);
        assert_eq!(o, Outcome::Success);
        assert!(f
            .iter()
            .any(|(k, v)| k == "password" && v.starts_with("{BLF-CRYPT}")));
        let scheme = Mode::CredentialsLookup {
            scheme: "CRAM-MD5".into(),
        };
        assert_eq!(
            cp(scheme, "hugo@barrera.io", "", &mut s).0,
            Outcome::Success
        );

        s.broken = true;
        for mode in [Mode::Verify, Mode::UserdbLookup, Mode::PassdbLookup] {
            let (o, f) = cp(mode.clone(), "hugo@barrera.io", PW, &mut s);
            assert_eq!(o, Outcome::TempFail, "{mode:?}");
            assert!(f.is_empty());
            assert_eq!(o.exit_code(&mode), 111);
        }
    }

    /// The fixture in a SQLite file, and a backend over it whose pool keeps
    /// a store between requests, as serve's does.
    fn over_sqlite() -> (tempfile::TempDir, std::path::PathBuf, Backend) {
        use mailtable_core::store::{migrate, sqlite::SqliteStore, Access, OpenOptions};
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("mail.db");
        let options = |access| OpenOptions {
            access,
            timeout: std::time::Duration::from_secs(2),
        };
        let mut w = SqliteStore::open(&path, &options(Access::Create)).expect("created");
        migrate::migrate(&mut w, migrate::Dialect::Sqlite, true).expect("schema");
        for r in &fixture().rows {
            w.insert(r).expect("row written");
        }
        let at = path.clone();
        let pool = StorePool::new(
            Box::new(move || {
                let s = SqliteStore::open(&at, &options(Access::ReadOnly))?;
                Ok(Box::new(s) as Box<dyn Store>)
            }),
            1,
        );
        let b = Backend::new(Arc::new(self::dir()), Arc::new(pool), None);
        (dir, path, b)
    }

    /// What serve answers on its async workers without the hop to a
    /// blocking thread: a cached answer, found or not, that a change check
    /// made in place says is fresh; nothing else. Not before the lookup
    /// proper cached it, not a password check, not after a change, and
    /// never in an outage (the lookup proper reports it and serves stale
    /// answers, logged); the pooled store is kept for the lookup proper to
    /// meet the failure again and drop it.
    #[test]
    fn fresh_cached_answers_are_given_in_place_and_nothing_else() {
        use mailtable_core::store::{sqlite::SqliteStore, Access, Delete, OpenOptions};
        let (_dir, path, mut b) = over_sqlite();
        let dict = |b: &mut Backend, key: &str| DictBackend::lookup(b, key, "");
        let in_place = |b: &mut Backend, key: &str| DictBackend::lookup_in_place(b, key, "");
        let hugo = "shared/userdb/hugo@barrera.io";
        let john = "shared/passdb/john_doe@example.com";
        let nobody = "shared/userdb/nobody@barrera.io";
        assert_eq!(in_place(&mut b, hugo), None, "nothing cached yet");
        for key in [hugo, john, nobody] {
            let answer = dict(&mut b, key);
            assert_eq!(in_place(&mut b, key), Some(answer), "{key}");
        }
        assert!(matches!(in_place(&mut b, hugo), Some(Lookup::Found(_))));
        assert_eq!(in_place(&mut b, nobody), Some(Lookup::NotFound));

        let api =
            |b: &mut Backend, e: Endpoint, user: &str| ApiBackend::lookup_in_place(b, e, user);
        for (endpoint, user) in [
            (Endpoint::UserdbLookup, "hugo_barrera.io"),
            (Endpoint::PassdbLookup, "hugo@barrera.io"),
        ] {
            assert_eq!(
                api(&mut b, endpoint, user),
                None,
                "{endpoint:?} not cached yet"
            );
            let answer = match endpoint {
                Endpoint::UserdbLookup => b.userdb_lookup(user),
                _ => b.passdb_lookup(user),
            };
            assert!(matches!(answer, LookupResult::Found(_)), "{endpoint:?}");
            assert_eq!(api(&mut b, endpoint, user), Some(answer), "{endpoint:?}");
        }
        // The forms of one mailbox share an entry; a passdb answer is no
        // userdb answer.
        assert!(matches!(
            api(&mut b, Endpoint::UserdbLookup, "Hugo@Barrera.IO"),
            Some(LookupResult::Found(_))
        ));
        assert!(matches!(
            b.passdb_lookup("john_doe@example.com"),
            LookupResult::Found(_)
        ));
        assert_eq!(
            api(&mut b, Endpoint::UserdbLookup, "john_doe_example.com"),
            None,
            "a passdb answer is not a userdb answer"
        );
        assert!(matches!(
            b.passdb_verify("hugo@barrera.io", &secret(PW)),
            VerifyResult::Ok(_)
        ));
        assert_eq!(
            api(&mut b, Endpoint::PassdbVerify, "hugo@barrera.io"),
            None,
            "a password check waits for a hashing thread"
        );

        // A write by another program: nothing cached is fresh any more.
        let options = OpenOptions {
            access: Access::ReadWrite,
            timeout: std::time::Duration::from_secs(2),
        };
        let mut w = SqliteStore::open(&path, &options).expect("opened");
        assert_eq!(
            w.delete("hugo", "barrera.io", Delete::Mailbox).ok(),
            Some(1)
        );
        drop(w);
        assert_eq!(in_place(&mut b, hugo), None, "changed");
        assert_eq!(in_place(&mut b, john), None, "changed");
        assert_eq!(dict(&mut b, hugo), Lookup::NotFound);
        assert_eq!(in_place(&mut b, hugo), Some(Lookup::NotFound));
        let found = dict(&mut b, john);
        assert!(matches!(found, Lookup::Found(_)));

        // An outage: nothing in place; the store stays pooled.
        std::fs::remove_file(&path).expect("removed");
        assert_eq!(in_place(&mut b, john), None, "an outage");
        assert_eq!(b.stores.idle_count(), 1, "kept for the lookup proper");
        assert_eq!(
            dict(&mut b, john),
            found,
            "served stale by the lookup proper"
        );
        assert_eq!(
            b.stores.idle_count(),
            1,
            "kept through the outage: it recovers by itself"
        );
        assert!(
            matches!(dict(&mut b, hugo), Lookup::Failed(_)),
            "never a stale miss"
        );
    }

    /// In place means without waiting, for the database and for the cache
    /// alike: a check that needs a query (a database in WAL mode) and a
    /// cache locked by another thread (which may be writing a log line)
    /// decline, and the lookup proper answers, from the cache.
    #[test]
    fn nothing_is_waited_for_in_place() {
        let (_dir, path, mut b) = over_sqlite();
        let key = "shared/userdb/hugo@barrera.io";
        let answer = DictBackend::lookup(&mut b, key, "");
        assert!(matches!(answer, Lookup::Found(_)));

        let locked = b.cache.lock().expect("cache lock");
        let mut other = b.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let asking = std::thread::spawn(move || {
            tx.send(DictBackend::lookup_in_place(&mut other, key, ""))
                .expect("send");
        });
        let got = rx.recv_timeout(std::time::Duration::from_secs(10));
        drop(locked);
        asking.join().expect("no panic");
        assert_eq!(
            got,
            Ok(None),
            "the cache is locked: declined, not waited for"
        );
        assert_eq!(
            DictBackend::lookup_in_place(&mut b, key, ""),
            Some(answer.clone())
        );

        // WAL: the check is a query (PRAGMA data_version).
        let conn = rusqlite::Connection::open(&path).expect("opened");
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "wal", |r| r.get(0))
            .expect("WAL");
        assert_eq!(mode, "wal");
        assert_eq!(DictBackend::lookup(&mut b, key, ""), answer, "cached anew");
        assert_eq!(
            DictBackend::lookup(&mut b, key, ""),
            answer,
            "answered again"
        );
        assert_eq!(DictBackend::lookup_in_place(&mut b, key, ""), None, "WAL");
        drop(conn);
    }

    #[test]
    fn backend_hashes_on_the_pool() {
        let pool = Arc::new(HashPool::new(2, 4).expect("threads start"));
        let mut b = backend_over(fixture(), Arc::new(AtomicBool::new(false)), Some(pool));
        assert!(matches!(
            b.passdb_verify("hugo@barrera.io", &secret(PW)),
            VerifyResult::Ok(_)
        ));
        assert_eq!(
            b.passdb_verify("hugo@barrera.io", &secret("nope")),
            VerifyResult::Mismatch
        );
        assert_eq!(
            b.passdb_verify("nobody@barrera.io", &secret(PW)),
            VerifyResult::Unknown
        );
        assert_eq!(
            b.passdb_verify("off@barrera.io", &secret(PW)),
            VerifyResult::Mismatch
        );
    }
}
