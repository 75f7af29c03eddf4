//! The account policy: who may log in, with which hash, and what the
//! daemons are told about a mailbox. Every login path of every binary goes
//! through here (smtpd's `credentials`, `auth` and `userinfo` services,
//! Dovecot's checkpassword, dict and HTTP answers), so they cannot disagree;
//! the protocol crates only format what this module decides.
//!
//! The rules:
//! - **Login names.** `hugo@barrera.io` (a login) and `hugo_barrera.io` (the
//!   delivery user smtpd hands to LMTP, [`crate::delivery`]) name the same
//!   mailbox. Only a [`RowKind::Mailbox`] row is an account: an alias, a
//!   pattern or a catch-all never logs in. A name that is no address is an
//!   unknown user, never an error.
//! - **Disabled mailboxes** (`active = false`) are refused at login but keep
//!   their user info: mail is still delivered (`mailtable user disable`).
//!   So are mailboxes whose hash is locked (`!` or `*` before a crypt
//!   string, passwd(5)'s notation: [`PasswordHash::is_locked`]).
//! - **Equal work.** An unknown user, a disabled mailbox and a hash that
//!   cannot be checked all cost one dummy check,
//!   like a wrong password, so timing does not tell which accounts exist.
//!   The dummy has the scheme and cost of the hashes actually stored
//!   ([`HashCost`]): the first login lookup of a process samples one
//!   ([`Store::sample_passwords`]: the newest usable one), and every real
//!   hash looked up since
//!   replaces it; a disabled mailbox costs a check of its own hash's cost.
//!   Only a database with no usable hash falls back to bcrypt of
//!   `password_cost`. smtpd, which checks hashes itself, is handed a dummy
//!   hash of that cost ([`Accounts::dummy_for_smtpd`]): a hash of a secret
//!   made at random per process, so it never matches a password.
//! - **Cannot verify is not a mismatch.** A stored hash that is empty,
//!   malformed, or of a scheme the verifier lacks is a temporary failure:
//!   the admin must fix the row, and until then nobody is told "wrong
//!   password" or "no such user" on the strength of a broken value.
//! - **One rule for user info.** uid and gid from the config, home from its
//!   template, the quota from the row; a value with a control character
//!   would corrupt a protocol line (smtpd's `uid:gid:home`, Dovecot's
//!   TAB-separated fields), so it is refused for every protocol alike.

use crate::address::Address;
use crate::config::Config;
use crate::delivery;
use crate::password::{self, HashCost, PasswordHash};
use crate::resolve::{ResolveError, Resolver};
use crate::row::{Row, RowKind};
use crate::store::{Store, StoreError};
use std::sync::{Arc, Mutex};

/// The subaddress delimiter when a config does not say (DESIGN.md).
pub const DEFAULT_TAG_DELIMITER: char = '+';

/// A mailbox found for a login name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The canonical address (`hugo@barrera.io` for `hugo_barrera.io` too).
    pub address: Address,
    /// Its row; always of kind [`RowKind::Mailbox`].
    pub row: Row,
}

impl Account {
    /// Whether the mailbox is enabled (`active`).
    pub fn is_active(&self) -> bool {
        self.row.active
    }

    /// Why the mailbox may not log in, or `None` when it may.
    pub fn refusal(&self) -> Option<Refusal> {
        match &self.row.password {
            _ if !self.is_active() => Some(Refusal::Disabled),
            Some(hash) if hash.is_locked() => Some(Refusal::Locked),
            _ => None,
        }
    }
}

/// Why a mailbox is refused at login whatever the password: mail to it is
/// still delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `active = false` (`mailtable user disable`).
    Disabled,
    /// A locked hash ([`PasswordHash::is_locked`]).
    Locked,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Disabled => "mailbox disabled",
            Refusal::Locked => "password locked (! or * before the hash)",
        })
    }
}

/// What the daemons deliver as: smtpd's `userinfo`, Dovecot's userdb.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// Owner of the mail store.
    pub uid: u32,
    /// Group of the mail store.
    pub gid: u32,
    /// The mailbox's home, from the config's template.
    pub home: String,
    /// The row's quota (`2G`), if any.
    pub quota: Option<String>,
}

impl UserInfo {
    /// Dovecot's `quota_rule` value: `*:storage=<quota>` applies to every
    /// folder (core@2.3.19.1:src/plugins/quota/quota-util.c).
    pub fn quota_rule(&self) -> Option<String> {
        self.quota.as_ref().map(|q| format!("*:storage={q}"))
    }
}

/// A quota as Dovecot reads it alike in 2.3 and 2.4: a bare number (a byte
/// count written by hand or by another tool, an integer column) gets `B`.
/// Dovecot 2.3 reads `storage=N` without a unit as kilobytes
/// (core@2.3.19.1:src/plugins/quota/quota-util.c multiplies by 1024),
/// 2.4's `quota_storage_size` as bytes: 1024 times apart. The CLI stores
/// `1536B` itself; `2G` and the like pass as they are.
fn quota_with_unit(q: &str) -> String {
    match q.bytes().all(|b| b.is_ascii_digit()) {
        true => format!("{q}B"),
        false => q.to_string(),
    }
}

/// A value of an account that no protocol can carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// The home template gives a path with a control character.
    #[error("home of {0} is not a usable path (it contains a control character)")]
    BadHome(Address),
    /// The quota column holds a control character.
    #[error("quota of {0} is not usable (it contains a control character)")]
    BadQuota(Address),
}

/// The outcome of a password check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Right password, active mailbox.
    Ok(Account),
    /// Wrong password.
    Mismatch,
    /// No mailbox of that name.
    Unknown,
    /// A disabled or locked mailbox: refused whatever the password.
    Refused(Address, Refusal),
    /// The stored hash cannot be checked: a temporary failure, with the
    /// reason for the log (it never contains the hash or the password).
    CannotVerify(String),
}

/// Who checks a hash that is handed on instead of checked here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verifier {
    /// smtpd's `credentials` service: the host's crypt(3) (libxcrypt on
    /// Debian), given the bare crypt string.
    Smtpd,
    /// A Dovecot passdb lookup: Dovecot's own schemes, given `{SCHEME}hash`.
    Dovecot,
}

/// A hash handed to the daemon that checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// An active mailbox and its hash in the form the verifier reads.
    Found {
        /// The mailbox.
        account: Account,
        /// The hash, never empty, free of protocol separators.
        hash: String,
    },
    /// No mailbox of that name.
    Unknown,
    /// A disabled or locked mailbox: no hash is handed on, so every
    /// password fails.
    Refused(Account, Refusal),
    /// The stored hash cannot be used by the verifier: a temporary failure.
    CannotVerify(String),
}

/// The database half of a password check, so that the costly hashing can
/// run elsewhere (Dovecot's `serve` hashes on a pool of threads).
#[derive(Debug, Clone)]
pub struct Login {
    state: LoginState,
    dummy_cost: HashCost,
}

#[derive(Debug, Clone)]
enum LoginState {
    Check(Account, PasswordHash),
    Refused(Address, Refusal),
    Unknown,
}

impl Login {
    /// Whether there is an active mailbox with a hash to check against (a
    /// positive answer of the database; unknown and disabled logins are
    /// negative ones).
    pub fn is_known(&self) -> bool {
        matches!(self.state, LoginState::Check(_, _))
    }

    /// The active mailbox the check would be made against, when there is
    /// one: what a lookup of the same name would have found.
    pub fn account(&self) -> Option<&Account> {
        match &self.state {
            LoginState::Check(account, _) => Some(account),
            _ => None,
        }
    }

    /// Check `password` (bytes as the client sent them).
    pub fn check(self, password: &[u8]) -> Verdict {
        let dummy = |verdict: Verdict| {
            password::dummy_verify(password, self.dummy_cost);
            verdict
        };
        match self.state {
            LoginState::Unknown => dummy(Verdict::Unknown),
            LoginState::Refused(address, why) => dummy(Verdict::Refused(address, why)),
            LoginState::Check(account, hash) => match hash.verify_bytes(password) {
                Ok(true) => Verdict::Ok(account),
                Ok(false) => Verdict::Mismatch,
                Err(e) => dummy(Verdict::CannotVerify(format!(
                    "cannot check the password of {}: {e}",
                    account.address
                ))),
            },
        }
    }
}

/// The policy over a config; cheap to clone (clones share what they learnt
/// of the stored hashes' cost).
#[derive(Debug, Clone)]
pub struct Accounts {
    resolver: Resolver,
    uid: u32,
    gid: u32,
    home: String,
    /// `password_cost`: the dummy's cost while no stored hash is known.
    fallback_cost: u32,
    /// The cost of the stored hashes, once sampled or seen.
    seen_cost: Arc<Mutex<Option<HashCost>>>,
}

impl Accounts {
    /// The policy of a validated config.
    pub fn new(config: &Config) -> Accounts {
        Accounts {
            resolver: Resolver::new(config.delimiter().unwrap_or(DEFAULT_TAG_DELIMITER)),
            uid: config.uid,
            gid: config.gid,
            home: config.home.clone(),
            fallback_cost: config.password_cost,
            seen_cost: Arc::default(),
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Option<HashCost>> {
        match self.seen_cost.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The cost a dummy check must have: that of the stored hashes, sampled
    /// from `store` on the first call (every login lookup makes this call,
    /// known user or not, so all do the same store work).
    fn dummy_cost(&self, store: &mut dyn Store) -> Result<HashCost, StoreError> {
        if let Some(cost) = *self.seen() {
            return Ok(cost);
        }
        // The newest hash whose cost is known: one PBKDF2 or yescrypt row
        // added last must not make every unknown login cost `password_cost`.
        let sampled = store
            .sample_passwords()?
            .into_iter()
            .find_map(|h| HashCost::of(&PasswordHash::new(h)));
        let cost = sampled.unwrap_or(HashCost::Bcrypt(self.fallback_cost));
        *self.seen() = Some(cost);
        Ok(cost)
    }

    /// Remember the cost of a real hash just looked up: the next dummy
    /// check costs the same. Never a cheaper kind than one seen before
    /// ([`HashCost::cheaper_kind_than`]): one `{PLAIN}` or MD5-crypt user
    /// left in a database of bcrypt hashes would otherwise make every
    /// unknown login answer in microseconds, and timing tell who exists.
    fn note(&self, hash: &PasswordHash) -> Option<HashCost> {
        let cost = HashCost::of(hash)?;
        let mut seen = self.seen();
        match *seen {
            Some(old) if cost.cheaper_kind_than(old) => {}
            _ => *seen = Some(cost),
        }
        Some(cost)
    }

    /// The cost of the stored hashes as far as this process knows (bcrypt
    /// of `password_cost` before any login lookup).
    pub fn current_dummy_cost(&self) -> HashCost {
        self.seen().unwrap_or(HashCost::Bcrypt(self.fallback_cost))
    }

    /// The cost of a dummy check for `account` (a disabled mailbox): its own
    /// hash's, or for none (an unknown login) that of the stored hashes.
    fn dummy_cost_of(&self, account: Option<&Account>) -> HashCost {
        account
            .and_then(|a| a.row.password.as_ref())
            .and_then(HashCost::of)
            .unwrap_or_else(|| self.current_dummy_cost())
    }

    /// The hash smtpd gets for an unknown (`None`) or disabled login after
    /// [`Accounts::credentials`]: a hash of a per-process random secret
    /// ([`password::dummy_hash`]) of the cost of the disabled mailbox's own
    /// hash, or of the stored hashes, so smtpd's crypt(3) takes as long as
    /// for a wrong password and then refuses whatever was tried.
    pub fn dummy_for_smtpd(&self, account: Option<&Account>) -> String {
        let dummy = password::dummy_hash(self.dummy_cost_of(account));
        // A digest scheme's dummy is no crypt(3) string (nor is a real hash
        // of that scheme, which smtpd never gets): bcrypt then.
        match dummy.for_smtpd() {
            Some(_) => dummy.stored().to_string(),
            None => password::dummy_hash(HashCost::Bcrypt(self.fallback_cost))
                .stored()
                .to_string(),
        }
    }

    /// The hash Dovecot's passdb gets for a disabled login: a hash of a
    /// per-process random secret ([`password::dummy_hash`]) in Dovecot's
    /// notation, of the cost of the mailbox's own hash, so that Dovecot's
    /// check of it takes as long as a real one and refuses whatever was
    /// tried. bcrypt of `password_cost` where the own scheme has no
    /// Dovecot notation.
    pub fn dummy_for_dovecot(&self, account: &Account) -> String {
        password::dummy_hash(self.dummy_cost_of(Some(account)))
            .for_dovecot()
            .or_else(|| password::dummy_hash(HashCost::Bcrypt(self.fallback_cost)).for_dovecot())
            .unwrap_or_default()
    }

    /// The resolver with the config's tag delimiter, for the alias services.
    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }

    /// The mailbox of a login name in either form, or `None`.
    pub fn find(&self, store: &mut dyn Store, name: &str) -> Result<Option<Account>, StoreError> {
        let Ok(address) = delivery::parse_login(name) else {
            return Ok(None);
        };
        if let Some(row) = self.resolver.mailbox(store, &address)? {
            return Ok(Some(Account { address, row }));
        }
        // Dovecot's `auth_default_realm` appends `@realm` to every name
        // without an `@`, the delivery user name LMTP gets from smtpd
        // included (`hugo_barrera.io@barrera.io`; auth_request_fix_username
        // in src/auth/auth-request.c, 2.3 and 2.4): without this, every
        // delivery of such a site bounced as an unknown user. Only when
        // the name itself is no mailbox.
        let Some(address) = delivery::with_realm_appended(name) else {
            return Ok(None);
        };
        Ok(self
            .resolver
            .mailbox(store, &address)?
            .map(|row| Account { address, row }))
    }

    /// Every mailbox, ordered by domain then local part (`doveadm user '*'`).
    /// Rows whose address does not parse, or is not stored in the normal
    /// form lookups ask for (`Hugo` or `Example.ORG` written by hand), are
    /// skipped: no login or delivery could reach them either, and a name
    /// listed here must be one `doveadm user` then finds (doctor names
    /// such rows).
    pub fn list(&self, store: &mut dyn Store) -> Result<Vec<Account>, StoreError> {
        Ok(store
            .list(None)?
            .into_iter()
            .filter(|r| r.kind() == RowKind::Mailbox)
            .filter_map(|row| {
                let address = Address::from_parts(&row.username, &row.domain).ok()?;
                let stored_as_looked_up =
                    address.local() == row.username && address.domain().as_str() == row.domain;
                stored_as_looked_up.then_some(Account { address, row })
            })
            .collect())
    }

    /// What the login `name` (either form) may send as: its own address,
    /// the addresses of ours that deliver to it, `@dom` for a catch-all
    /// that does; `None` when `name` is no mailbox ([`Resolver::senders`]).
    pub fn senders(
        &self,
        store: &mut dyn Store,
        name: &str,
    ) -> Result<Option<Vec<String>>, ResolveError> {
        let Ok(address) = delivery::parse_login(name) else {
            return Ok(None);
        };
        self.resolver.senders(store, &address)
    }

    /// uid, gid, home and quota of a mailbox, disabled or not.
    pub fn userinfo(&self, account: &Account) -> Result<UserInfo, AccountError> {
        let home = crate::config::expand_home(&self.home, &account.address);
        if home.chars().any(char::is_control) {
            return Err(AccountError::BadHome(account.address.clone()));
        }
        let quota = account
            .row
            .quota
            .as_deref()
            .map(str::trim)
            .filter(|q| !q.is_empty());
        if quota.is_some_and(|q| q.chars().any(char::is_control)) {
            return Err(AccountError::BadQuota(account.address.clone()));
        }
        Ok(UserInfo {
            uid: self.uid,
            gid: self.gid,
            home,
            quota: quota.map(quota_with_unit),
        })
    }

    /// The database half of a password check for `name`.
    pub fn login(&self, store: &mut dyn Store, name: &str) -> Result<Login, StoreError> {
        let mut dummy_cost = self.dummy_cost(store)?;
        let state = match self.find(store, name)? {
            None => LoginState::Unknown,
            Some(a) => match (a.refusal(), a.row.password.clone()) {
                (Some(why), own) => {
                    // Its own hash's cost: what checking it would have cost.
                    if let Some(own) = own.as_ref().and_then(HashCost::of) {
                        dummy_cost = own;
                    }
                    LoginState::Refused(a.address, why)
                }
                (None, Some(hash)) => {
                    self.note(&hash);
                    LoginState::Check(a, hash)
                }
                // `find` only returns mailbox rows, which have a hash.
                (None, None) => LoginState::Unknown,
            },
        };
        Ok(Login { state, dummy_cost })
    }

    /// A whole password check on the calling thread.
    pub fn verify(
        &self,
        store: &mut dyn Store,
        name: &str,
        password: &[u8],
    ) -> Result<Verdict, StoreError> {
        Ok(self.login(store, name)?.check(password))
    }

    /// The hash of `name` for a daemon that checks it itself. For an unknown
    /// or disabled login, [`Accounts::dummy_for_smtpd`] then gives a hash of
    /// the right cost (sampled here on the first call).
    pub fn credentials(
        &self,
        store: &mut dyn Store,
        name: &str,
        verifier: Verifier,
    ) -> Result<Credentials, StoreError> {
        self.dummy_cost(store)?;
        Ok(match self.find(store, name)? {
            Some(account) => self.credentials_of(account, verifier),
            None => Credentials::Unknown,
        })
    }

    /// [`Accounts::credentials`] of a mailbox already found: the part that
    /// asks the database nothing.
    pub fn credentials_of(&self, account: Account, verifier: Verifier) -> Credentials {
        if let Some(why) = account.refusal() {
            return Credentials::Refused(account, why);
        }
        let Some(stored) = account.row.password.as_ref() else {
            return Credentials::Unknown;
        };
        if let Err(e) = stored.validate() {
            // A scheme only Dovecot knows (PBKDF2, SCRAM, DES-crypt, ...) is
            // Dovecot's to check when it is the one asking.
            if !(verifier == Verifier::Dovecot && stored.dovecot_only()) {
                return Credentials::CannotVerify(format!(
                    "stored hash of {}: {e}",
                    account.address
                ));
            }
        }
        self.note(stored);
        let hash = match verifier {
            Verifier::Smtpd => stored.for_smtpd().map(str::to_string),
            Verifier::Dovecot => stored.for_dovecot(),
        };
        match hash {
            Some(hash) => Credentials::Found { account, hash },
            None => Credentials::CannotVerify(format!(
                "stored hash of {} ({}) cannot be checked by {}",
                account.address,
                stored.scheme().name(),
                match verifier {
                    Verifier::Smtpd => "smtpd's crypt(3)",
                    Verifier::Dovecot => "Dovecot",
                }
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::password::Secret;
    use crate::store::failing::each_failure;
    use crate::store::memory::MemStore;

    const PW: &str = "correct horse";

    fn accounts() -> Accounts {
        let c =
            Config::parse("uid = 2000\ngid = 2001\nhome = \"/var/vmail/%d/%n\"\npassword_cost = 4")
                .expect("valid test config");
        Accounts::new(&c)
    }

    fn store() -> MemStore {
        let h = password::hash(&Secret::new(PW), 4).expect("hashing works");
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
            .with("tab", "barrera.io", "tab@barrera.io", Some(h.stored()));
        s.rows[0].quota = Some(" 2G ".into());
        s.rows[4].active = false;
        s.rows[5].quota = Some("1G\tx".into());
        s
    }

    #[test]
    fn both_login_forms_find_the_mailbox_and_nothing_else_does() {
        let a = accounts();
        let mut s = store();
        // The last: the delivery name with Dovecot's auth_default_realm
        // appended.
        for name in [
            "hugo@barrera.io",
            "hugo_barrera.io",
            "HUGO@Barrera.IO",
            "hugo_barrera.io@barrera.io",
        ] {
            let found = a.find(&mut s, name).expect("store works");
            assert_eq!(
                found.map(|f| f.address.to_string()).as_deref(),
                Some("hugo@barrera.io")
            );
        }
        let found = a.find(&mut s, "john_doe_example.com").expect("store works");
        assert_eq!(
            found.map(|f| f.address.to_string()).as_deref(),
            Some("john_doe@example.com")
        );
        for name in [
            "alias@barrera.io",
            "%@barrera.io",
            "x@barrera.io",
            "hugo",
            "",
            "a@b@c",
            // A realm after a name that is no delivery name of a mailbox.
            "alias_barrera.io@barrera.io",
            "hugo_nowhere.org@barrera.io",
        ] {
            assert_eq!(a.find(&mut s, name).expect("store works"), None, "{name}");
        }
    }

    /// Stands for `accounts()`, made anew for every call.
    struct Fresh;
    impl Fresh {
        fn find(&self, s: &mut dyn Store, n: &str) -> Result<Option<Account>, StoreError> {
            accounts().find(s, n)
        }
        fn verify(&self, s: &mut dyn Store, n: &str, p: &[u8]) -> Result<Verdict, StoreError> {
            accounts().verify(s, n, p)
        }
        fn credentials(
            &self,
            s: &mut dyn Store,
            n: &str,
            v: Verifier,
        ) -> Result<Credentials, StoreError> {
            accounts().credentials(s, n, v)
        }
        fn senders(&self, s: &mut dyn Store, n: &str) -> Result<Option<Vec<String>>, ResolveError> {
            accounts().senders(s, n)
        }
        fn list(&self, s: &mut dyn Store) -> Result<Vec<Account>, StoreError> {
            accounts().list(s)
        }
    }

    /// What an older host brings (MD5-crypt, Dovecot's digest schemes) logs
    /// in through mailtable's own check; a scheme only Dovecot knows goes
    /// to Dovecot as it is and is a temporary failure for the others;
    /// smtpd never gets a digest.
    #[test]
    fn legacy_hashes_log_in_and_dovecot_only_ones_go_to_dovecot() {
        // `doveadm pw -s SSHA512 -p 'pässwörd 1'`, `openssl passwd -1`.
        let ssha = "{SSHA512}M8AgWyPjdKo8Cp+VUlYW1Y2mwA/5jXhqZymqmlm2FjgQmPbq1nxLDPfEwqYeSEj8R2e4AijSTO0PgVSYDvHprYiFTrI=";
        let md5 = "$1$saltsalt$qjXMvbEw8oaL.CzflDtaK/";
        let pbkdf2 = "{PBKDF2}$1$.8EG.f/6LSIKluCw$5000$473c6686f453b9113ca0eb28c3c293c4d4de909f";
        let mut s = MemStore::default()
            .with("s", "x.org", "s@x.org", Some(ssha))
            .with("m", "x.org", "m@x.org", Some(md5))
            .with("p", "x.org", "p@x.org", Some(pbkdf2))
            // Broken, in a scheme mailtable checks: nobody's to check.
            .with("b", "x.org", "b@x.org", Some("$2b$05$cut-short"))
            // A crypt prefix over no crypt string: Dovecot would say
            // "mismatch", so it is nobody's to check either.
            .with("g", "x.org", "g@x.org", Some("{SHA512-CRYPT}garbage"));
        let a = accounts();
        let ok = |v: Verdict| matches!(v, Verdict::Ok(_));
        assert!(ok(a
            .verify(&mut s, "s@x.org", "pässwörd 1".as_bytes())
            .unwrap()));
        assert!(ok(a.verify(&mut s, "m@x.org", b"password").unwrap()));
        assert_eq!(
            a.verify(&mut s, "s@x.org", b"password").unwrap(),
            Verdict::Mismatch
        );
        assert_eq!(
            a.verify(&mut s, "m@x.org", "pässwörd".as_bytes()).unwrap(),
            Verdict::Mismatch
        );
        assert!(matches!(
            a.verify(&mut s, "p@x.org", b"password").unwrap(),
            Verdict::CannotVerify(_)
        ));
        let mut hash = |name: &str, v: Verifier| match a.credentials(&mut s, name, v).unwrap() {
            Credentials::Found { hash, .. } => Some(hash),
            Credentials::CannotVerify(_) => None,
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(hash("s@x.org", Verifier::Dovecot).as_deref(), Some(ssha));
        assert_eq!(hash("p@x.org", Verifier::Dovecot).as_deref(), Some(pbkdf2));
        assert_eq!(hash("m@x.org", Verifier::Smtpd).as_deref(), Some(md5));
        assert_eq!(hash("s@x.org", Verifier::Smtpd), None);
        assert_eq!(hash("p@x.org", Verifier::Smtpd), None);
        assert_eq!(hash("b@x.org", Verifier::Dovecot), None);
        assert_eq!(hash("b@x.org", Verifier::Smtpd), None);
        assert_eq!(hash("g@x.org", Verifier::Dovecot), None);
        assert!(matches!(
            a.verify(&mut s, "g@x.org", b"password").unwrap(),
            Verdict::CannotVerify(why) if why.contains("malformed (SHA512-crypt hash)")
        ));
    }

    /// The sample skips hashes whose cost is unknown: a PBKDF2 or
    /// yescrypt row added last does not make unknown logins cost
    /// `password_cost` where usable hashes are stored.
    #[test]
    fn the_sample_is_the_newest_usable_hash() {
        let h5 = password::hash(&Secret::new(PW), 5).expect("hashing works");
        let mut s = MemStore::default()
            .with("a", "x.org", "a@x.org", Some(h5.stored()))
            .with(
                "y",
                "x.org",
                "y@x.org",
                Some("$y$j9T$F5Jx5fExrKuJdvTI5b7Ak/$5UiCg2g.gQ2w4go5BZ2i.aIHSEum6qlbkN8Z1WSBsh4"),
            )
            .with("p", "x.org", "p@x.org", Some("{PBKDF2}$1$salt$1000$abcdef"));
        let a = accounts();
        a.credentials(&mut s, "nobody@x.org", Verifier::Smtpd)
            .expect("store works");
        assert_eq!(a.current_dummy_cost(), HashCost::Bcrypt(5));
        // None usable at all: `password_cost`.
        let mut s = MemStore::default().with(
            "y",
            "x.org",
            "y@x.org",
            Some("$y$j9T$F5Jx5fExrKuJdvTI5b7Ak/$5UiCg2g.gQ2w4go5BZ2i.aIHSEum6qlbkN8Z1WSBsh4"),
        );
        let a = accounts();
        a.credentials(&mut s, "nobody@x.org", Verifier::Smtpd)
            .expect("store works");
        assert_eq!(a.current_dummy_cost(), HashCost::Bcrypt(4));
    }

    /// The dummy check takes the cost of the hashes stored: sampled on the
    /// first lookup, then of the last real hash looked up; a disabled
    /// mailbox's own; `password_cost` only for a store with none.
    #[test]
    fn the_dummy_cost_follows_the_stored_hashes() {
        let h5 = password::hash(&Secret::new(PW), 5).expect("hashing works");
        let h6 = password::hash(&Secret::new(PW), 6).expect("hashing works");
        let s512 = "$6$saltsaltsaltsalt$ph0yGsyjzqdeFaon7.gJZo8eAG5/rj9/JdzOu1Rl7dKzBYg3xgvl7T2VQ2Rt81bc5AXkdA54r0p8QvC1omD6R1";
        let mut s = MemStore::default()
            .with("a", "x.org", "a@x.org", Some(h5.stored()))
            .with("off", "x.org", "off@x.org", Some(h6.stored()))
            .with("sha", "x.org", "sha@x.org", Some(s512));
        s.rows[1].active = false;
        let sha = HashCost::ShaCrypt {
            sha512: true,
            rounds: 5000,
        };
        let a = accounts();
        assert_eq!(a.current_dummy_cost(), HashCost::Bcrypt(4));
        a.credentials(&mut s, "nobody@x.org", Verifier::Smtpd)
            .expect("store works");
        // The sample: the last mailbox row.
        assert_eq!(a.current_dummy_cost(), sha);
        let d = a.dummy_for_smtpd(None);
        assert!(d.starts_with("$6$"), "{d}");
        a.credentials(&mut s, "a@x.org", Verifier::Smtpd)
            .expect("store works");
        assert_eq!(a.current_dummy_cost(), HashCost::Bcrypt(5));
        assert!(a.dummy_for_smtpd(None).starts_with("$2b$05$"));
        let Ok(Credentials::Refused(off, Refusal::Disabled)) =
            a.credentials(&mut s, "off@x.org", Verifier::Smtpd)
        else {
            panic!("not disabled")
        };
        assert!(a.dummy_for_smtpd(Some(&off)).starts_with("$2b$06$"));
        // Dovecot's passdb gets it in its own notation, matching no
        // password: not even the mailbox's own.
        let d = a.dummy_for_dovecot(&off);
        assert!(d.starts_with("{BLF-CRYPT}$2b$06$"), "{d}");
        let dummy = PasswordHash::new(d.trim_start_matches("{BLF-CRYPT}").to_string());
        assert!(!dummy.verify(&Secret::new(PW)).expect("a bcrypt hash"));
        assert!(!dummy.verify(&Secret::new("")).expect("a bcrypt hash"));
        assert_eq!(
            a.login(&mut s, "off@x.org")
                .expect("store works")
                .dummy_cost,
            HashCost::Bcrypt(6)
        );
        a.verify(&mut s, "sha@x.org", b"wrong")
            .expect("store works");
        assert_eq!(
            a.login(&mut s, "nobody@x.org")
                .expect("store works")
                .dummy_cost,
            sha
        );
        // Clones share what was learnt.
        assert_eq!(a.clone().current_dummy_cost(), sha);
        // A cheap hash among dear ones never makes the dummy cheap: a
        // `{PLAIN}` or MD5-crypt user left over from an import.
        let mut s = s
            .with("plain", "x.org", "plain@x.org", Some("{PLAIN}x"))
            .with(
                "md5",
                "x.org",
                "md5@x.org",
                Some("$1$saltsalt$qjXMvbEw8oaL.CzflDtaK/"),
            );
        for cheap in ["plain@x.org", "md5@x.org"] {
            a.verify(&mut s, cheap, b"wrong").expect("store works");
            assert_eq!(a.current_dummy_cost(), sha, "{cheap}");
        }
        let c = accounts();
        c.verify(&mut s, "md5@x.org", b"wrong")
            .expect("store works");
        c.verify(&mut s, "plain@x.org", b"wrong")
            .expect("store works");
        assert_eq!(c.current_dummy_cost(), HashCost::Md5Crypt);
        c.verify(&mut s, "a@x.org", b"wrong").expect("store works");
        assert_eq!(c.current_dummy_cost(), HashCost::Bcrypt(5));
        let b = accounts();
        b.login(&mut MemStore::default(), "nobody@x.org")
            .expect("store works");
        assert_eq!(b.current_dummy_cost(), HashCost::Bcrypt(4));
    }

    #[test]
    fn userinfo_is_one_rule() {
        let a = accounts();
        let mut s = store();
        let hugo = a
            .find(&mut s, "hugo@barrera.io")
            .expect("store works")
            .expect("found");
        let info = a.userinfo(&hugo).expect("usable");
        assert_eq!(info.home, "/var/vmail/barrera.io/hugo");
        assert_eq!((info.uid, info.gid), (2000, 2001));
        assert_eq!(info.quota_rule().as_deref(), Some("*:storage=2G"));
        // A bare byte count (by hand, an integer column) is bytes for
        // both Dovecot versions, not kilobytes for 2.3.
        let mut bytes = hugo.clone();
        bytes.row.quota = Some(" 1073741824 ".into());
        let info = a.userinfo(&bytes).expect("usable");
        assert_eq!(info.quota.as_deref(), Some("1073741824B"));
        assert_eq!(info.quota_rule().as_deref(), Some("*:storage=1073741824B"));
        let tab = a
            .find(&mut s, "tab@barrera.io")
            .expect("store works")
            .expect("found");
        assert!(matches!(a.userinfo(&tab), Err(AccountError::BadQuota(_))));
        let c = Config::parse("home = \"/v/%n\\t/x\"").expect("valid");
        assert!(matches!(
            Accounts::new(&c).userinfo(&hugo),
            Err(AccountError::BadHome(_))
        ));
    }

    #[test]
    fn verdicts() {
        let a = accounts();
        let mut s = store();
        let v = |s: &mut MemStore, n: &str, p: &[u8]| a.verify(s, n, p).expect("store works");
        assert!(
            matches!(v(&mut s, "hugo_barrera.io", PW.as_bytes()), Verdict::Ok(acc) if acc.address.to_string() == "hugo@barrera.io")
        );
        assert_eq!(v(&mut s, "hugo@barrera.io", b"wrong"), Verdict::Mismatch);
        assert_eq!(v(&mut s, "hugo@barrera.io", b"\xff\xfe"), Verdict::Mismatch);
        assert_eq!(
            v(&mut s, "nobody@barrera.io", PW.as_bytes()),
            Verdict::Unknown
        );
        assert_eq!(
            v(&mut s, "alias@barrera.io", PW.as_bytes()),
            Verdict::Unknown
        );
        assert!(matches!(
            v(&mut s, "off@barrera.io", PW.as_bytes()),
            Verdict::Refused(_, Refusal::Disabled)
        ));
        s.broken = true;
        assert!(a.verify(&mut s, "hugo@barrera.io", PW.as_bytes()).is_err());
        assert!(a
            .credentials(&mut s, "hugo@barrera.io", Verifier::Smtpd)
            .is_err());
    }

    /// Only an active mailbox is a known login: a positive answer, which
    /// an answer cache may serve again through an outage. An unknown name,
    /// an alias and a disabled mailbox are negative answers.
    #[test]
    fn only_an_active_mailbox_is_a_known_login() {
        let a = accounts();
        let mut s = store();
        let known = |s: &mut MemStore, n: &str| a.login(s, n).expect("store works").is_known();
        assert!(known(&mut s, "hugo@barrera.io"));
        assert!(known(&mut s, "hugo_barrera.io"));
        for name in [
            "nobody@barrera.io",
            "alias@barrera.io",
            "off@barrera.io",
            "no address",
        ] {
            assert!(!known(&mut s, name), "{name}");
        }
    }

    /// Fails each store call of every login lookup in turn
    /// (`store::failing`): the answer must be the store error, never an
    /// account, a verdict or "unknown".
    #[test]
    fn a_failing_store_call_is_never_a_definitive_answer() {
        // A fresh policy per run: the first lookup of one samples the
        // stored hashes' cost, later ones do not.
        let a = Fresh;
        let s = store();
        let mut bad = Vec::new();
        let mut runs = 0;
        let names = [
            "hugo@barrera.io",
            "hugo_barrera.io",
            "john_doe_example.com",
            "alias@barrera.io",
            "%@barrera.io",
            "nobody@barrera.io",
            "off@barrera.io",
            "tab@barrera.io",
            "nobody@nowhere.org",
        ];
        for name in names {
            let mut check = |what: &str, failures: Vec<(usize, bool)>| {
                runs += failures.len();
                for (n, is_error) in failures {
                    if !is_error {
                        bad.push(format!("{what} {name}: call {n} failing"));
                    }
                }
            };
            check("find", each_failure(&s, |s| a.find(s, name).is_err()).1);
            check(
                "verify",
                each_failure(&s, |s| a.verify(s, name, PW.as_bytes()).is_err()).1,
            );
            check(
                "verify (wrong password)",
                each_failure(&s, |s| a.verify(s, name, b"wrong").is_err()).1,
            );
            for verifier in [Verifier::Smtpd, Verifier::Dovecot] {
                check(
                    "credentials",
                    each_failure(&s, |s| a.credentials(s, name, verifier).is_err()).1,
                );
            }
            check(
                "senders",
                each_failure(&s, |s| {
                    matches!(a.senders(s, name), Err(ResolveError::Store(_)))
                })
                .1,
            );
            check("list", each_failure(&s, |s| a.list(s).is_err()).1);
        }
        assert!(bad.is_empty(), "{} of {runs}: {bad:?}", bad.len());
        assert!(runs > 50, "only {runs} failing runs");
    }

    /// Bytes that are not UTF-8 are checked as the bytes they are: never
    /// as some other text (a mailbox whose password is empty must not
    /// accept them as ""), and a hash made of them elsewhere (Dovecot's
    /// `doveadm pw` from a Latin-1 password) accepts them.
    #[test]
    fn non_utf8_passwords_are_checked_as_bytes() {
        let a = accounts();
        let latin1 = bcrypt::hash(b"j\xfcrgen", 4).expect("hashing works");
        let mut s = MemStore::default().with("j", "x.org", "j@x.org", Some(&latin1));
        assert!(matches!(
            a.verify(&mut s, "j@x.org", b"j\xfcrgen"),
            Ok(Verdict::Ok(_))
        ));
        assert_eq!(
            a.verify(&mut s, "j@x.org", "jürgen".as_bytes()).ok(),
            Some(Verdict::Mismatch)
        );
        // SHA512-crypt of the same bytes, as crypt(3) makes it.
        let params = sha_crypt::Sha512Params::new(5000).expect("valid rounds");
        let b64 = sha_crypt::sha512_crypt_b64(b"j\xfcrgen", b"saltsalt", &params).expect("hashed");
        let h = PasswordHash::new(format!("{{SHA512-CRYPT}}$6$saltsalt${b64}"));
        assert_eq!(h.verify_bytes(b"j\xfcrgen").ok(), Some(true));
        assert_eq!(h.verify_bytes("jürgen".as_bytes()).ok(), Some(false));
    }

    /// Bytes that are not UTF-8 are never checked as some other text: a
    /// mailbox whose password is empty must not accept them as "".
    #[test]
    fn non_utf8_password_never_matches_an_empty_password() {
        let a = accounts();
        // mailtable refuses to make such a hash; another tool may not.
        let empty = bcrypt::hash("", 4).expect("hashing works");
        let mut s = MemStore::default().with("e", "x.org", "e@x.org", Some(&empty));
        assert!(matches!(
            a.verify(&mut s, "e@x.org", b""),
            Ok(Verdict::Ok(_))
        ));
        assert_eq!(
            a.verify(&mut s, "e@x.org", b"\xff").ok(),
            Some(Verdict::Mismatch)
        );
    }

    #[test]
    fn the_resolver_uses_the_configured_delimiter() {
        let c = Config::parse("tag_delimiter = \"-\"").expect("valid");
        assert_eq!(Accounts::new(&c).resolver().delimiter, '-');
    }

    #[test]
    fn list_and_senders() {
        let a = accounts();
        let mut s = store();
        let listed: Vec<String> = a
            .list(&mut s)
            .expect("store works")
            .iter()
            .map(|acc| acc.address.to_string())
            .collect();
        assert_eq!(
            listed,
            [
                "hugo@barrera.io",
                "off@barrera.io",
                "tab@barrera.io",
                "john_doe@example.com"
            ]
        );
        assert_eq!(
            a.senders(&mut s, "hugo_barrera.io").expect("store works"),
            Some(vec![
                "hugo@barrera.io".to_string(),
                "@barrera.io".to_string(),
                "alias@barrera.io".to_string(),
            ])
        );
        assert_eq!(
            a.senders(&mut s, "alias@barrera.io").expect("store works"),
            None
        );
        assert_eq!(a.senders(&mut s, "no address").expect("store works"), None);
    }

    #[test]
    fn credentials_for_each_verifier() {
        let a = accounts();
        let mut s = store();
        let Credentials::Found { hash, .. } = a
            .credentials(&mut s, "hugo@barrera.io", Verifier::Smtpd)
            .expect("store works")
        else {
            panic!("not found");
        };
        assert!(hash.starts_with("$2b$04$"));
        let Credentials::Found { hash, .. } = a
            .credentials(&mut s, "hugo_barrera.io", Verifier::Dovecot)
            .expect("store works")
        else {
            panic!("not found");
        };
        assert!(hash.starts_with("{BLF-CRYPT}$2b$04$"));
        assert!(matches!(
            a.credentials(&mut s, "off@barrera.io", Verifier::Dovecot),
            Ok(Credentials::Refused(_, Refusal::Disabled))
        ));
        assert_eq!(
            a.credentials(&mut s, "alias@barrera.io", Verifier::Smtpd)
                .ok(),
            Some(Credentials::Unknown)
        );
    }
}
