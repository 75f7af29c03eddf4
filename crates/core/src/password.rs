//! Passwords: a secret type that never prints, stored hashes, verification
//! and hashing.
//!
//! Stored hashes are crypt(3) strings, optionally behind a Dovecot `{SCHEME}`
//! prefix. Verification covers bcrypt (`$2a$ $2b$ $2y$`), SHA-crypt (`$6$`,
//! `$5$`) and Argon2 PHC strings, and what older hosts bring along
//! (`password/legacy.rs`): MD5-crypt (`$1$`) and Dovecot's digest schemes (`{PLAIN}`,
//! `{SHA512}`, `{SSHA512}`, `{PLAIN-MD5}`, ...). New hashes are bcrypt `$2b$`: the one format
//! that OpenBSD's `crypt_checkpass(3)`, Linux libxcrypt (what smtpd's
//! `crypt_checkpass` calls on Debian, `openbsd-compat/crypt_checkpass.c`) and
//! Dovecot's BLF-CRYPT all accept (reference: dovecot-auth-protocols §4.4).
//!
//! smtpd gets the bare crypt string, Dovecot the `{BLF-CRYPT}` form. A hash
//! that smtpd's crypt(3) cannot check, or an empty one, is never handed to
//! smtpd: portable `crypt_checkpass` accepts any password against an empty
//! hash.

mod legacy;

use std::fmt;
use std::sync::OnceLock;

/// A cleartext password. `Debug` and `Display` print `<redacted>` in every
/// build, so it cannot reach a log line or an error message by accident.
/// Equality is constant-time, and the buffer is zeroed when dropped
/// (`zeroize`; best effort: copies made by the allocator are out of reach).
#[derive(Clone)]
pub struct Secret(String);

impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        constant_time_eq(self.0.as_bytes(), other.0.as_bytes())
    }
}

impl Eq for Secret {}

impl Secret {
    /// Wrap a cleartext password.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The cleartext, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// Hash formats mailtable knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `$2a$`, `$2b$`, `$2y$`, `$2x$`.
    Bcrypt,
    /// `$6$`.
    Sha512Crypt,
    /// `$5$`.
    Sha256Crypt,
    /// `$argon2id$`, `$argon2i$`, `$argon2d$`.
    Argon2,
    /// Another crypt(3) format libxcrypt checks: MD5-crypt `$1$`, which
    /// mailtable checks too, and yescrypt `$y$`, `$gy$`, scrypt `$7$`,
    /// which it does not.
    OtherCrypt,
    /// A Dovecot digest scheme mailtable checks (`{PLAIN}`, `{SHA512}`,
    /// `{SSHA512}`, `{PLAIN-MD5}`, ...; see `legacy.rs`); smtpd's crypt(3)
    /// cannot.
    Digest,
    /// Anything else (a Dovecot-only scheme such as `{SSHA512}`, or garbage).
    Unknown,
}

impl Scheme {
    /// A short name for messages (`bcrypt`, `SHA512-crypt`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Bcrypt => "bcrypt",
            Scheme::Sha512Crypt => "SHA512-crypt",
            Scheme::Sha256Crypt => "SHA256-crypt",
            Scheme::Argon2 => "argon2",
            Scheme::OtherCrypt => "crypt",
            Scheme::Digest => "Dovecot digest",
            Scheme::Unknown => "unknown",
        }
    }
}

/// Why a password could not be checked or hashed.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The stored hash uses a scheme mailtable cannot verify.
    #[error("stored hash uses a scheme mailtable cannot verify ({0})")]
    Unsupported(String),
    /// The stored hash is malformed.
    #[error("stored hash is malformed ({0} hash)")]
    Malformed(&'static str),
    /// The password column is empty: no hash at all.
    #[error("the password column is empty")]
    Empty,
    /// Refused input when hashing.
    #[error("{0}")]
    Refused(&'static str),
}

/// A stored password hash. `Debug` shows only its scheme: hashes are not
/// passwords, but they are still secrets worth keeping out of logs.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PasswordHash({:?}, <redacted>)", self.scheme())
    }
}

/// Dovecot's password schemes: 2.3.19's `doveadm pw -l`, plus 2.4's
/// `ARGON2`. The `{PREFIX}`es an error may name (anything else between
/// braces is not repeated: it could be the password itself), and the ones
/// handed to Dovecot unchecked ([`PasswordHash::dovecot_only`]).
const DOVECOT_SCHEMES: &[&str] = &[
    "ARGON2",
    "ARGON2I",
    "ARGON2ID",
    "BLF-CRYPT",
    "CLEAR",
    "CLEARTEXT",
    "CRAM-MD5",
    "CRYPT",
    "DES-CRYPT",
    "DIGEST-MD5",
    "HMAC-MD5",
    "LDAP-MD5",
    "MD5",
    "MD5-CRYPT",
    "OTP",
    "PBKDF2",
    "PLAIN",
    "PLAIN-MD4",
    "PLAIN-MD5",
    "PLAIN-TRUNC",
    "SCRAM-SHA-1",
    "SCRAM-SHA-256",
    "SHA",
    "SHA1",
    "SHA256",
    "SHA256-CRYPT",
    "SHA512",
    "SHA512-CRYPT",
    "SMD5",
    "SSHA",
    "SSHA256",
    "SSHA512",
];

/// crypt(3) method ids (`$id$`) of libxcrypt's crypt(5), the ones an error
/// may name.
const CRYPT_IDS: &[&str] = &[
    "1", "2", "2a", "2b", "2x", "2y", "3", "5", "6", "7", "argon2d", "argon2i", "argon2id", "gy",
    "md5", "pbkdf2", "scrypt", "sha1", "y",
];

impl PasswordHash {
    /// Wrap a stored value as read from the database.
    pub fn new(stored: impl Into<String>) -> PasswordHash {
        PasswordHash(stored.into())
    }

    /// The stored form, exactly as in the database.
    pub fn stored(&self) -> &str {
        &self.0
    }

    /// The `{SCHEME}` prefix, upper-cased, if any.
    pub fn prefix(&self) -> Option<String> {
        let rest = self.0.strip_prefix('{')?;
        let (scheme, _) = rest.split_once('}')?;
        Some(scheme.to_ascii_uppercase())
    }

    /// The crypt string without a Dovecot `{SCHEME}` prefix.
    pub fn crypt_string(&self) -> &str {
        match self.0.strip_prefix('{').and_then(|r| r.split_once('}')) {
            Some((_, rest)) => rest,
            None => &self.0,
        }
    }

    /// The hash without a `{SCHEME}` prefix that only names the crypt(3)
    /// family of the string after it (`{SHA512-CRYPT}$6$...`,
    /// `{BLF-CRYPT}$2y$...`, `{SHA256-CRYPT}$5$...`, `{ARGON2ID}$argon2id$...`,
    /// `{MD5-CRYPT}$1$...`, and `{CRYPT}` before anything): Dovecot checks
    /// those with the same crypt(3) or Argon2 call as the bare string (its
    /// `password-scheme-crypt.c`; a bare value in a passwd-file is read with
    /// the default scheme `CRYPT`), and smtpd gets the bare string anyway.
    /// Any other value, a prefix that does not match its string included,
    /// comes back as stored.
    pub fn canonical(&self) -> &str {
        match self.prefix() {
            Some(p) if names_crypt_string(&p, self.crypt_string()) == Some(true) => {
                self.crypt_string()
            }
            _ => &self.0,
        }
    }

    /// Whether two stored hashes are one password, perhaps written in two
    /// notations ([`canonical`](Self::canonical)): an smtpd table's `$6$...`
    /// and a Dovecot passwd-file's `{SHA512-CRYPT}$6$...` of the same user.
    pub fn same_password(&self, other: &PasswordHash) -> bool {
        self.canonical() == other.canonical()
    }

    /// The format of the hash.
    pub fn scheme(&self) -> Scheme {
        let c = self.crypt_string();
        let bare = bare_scheme(c);
        let Some(p) = self.prefix() else {
            return bare;
        };
        // A prefix that names a crypt(3) family is that family's only over
        // a string of it (see `names_crypt_string`). Any other prefix
        // (SSHA512, PLAIN, PBKDF2, ...) is a digest mailtable checks, or
        // Dovecot's own business.
        match names_crypt_string(&p, c) {
            Some(true) => bare,
            Some(false) => Scheme::Unknown,
            None if legacy::digest_scheme(&p, c).is_some() => Scheme::Digest,
            None => Scheme::Unknown,
        }
    }

    /// The bare crypt string for smtpd's `credentials` service, or `None` when
    /// the host's crypt(3) (libxcrypt) could not check it, or it is empty.
    pub fn for_smtpd(&self) -> Option<&str> {
        let c = self.crypt_string();
        let ok = matches!(
            self.scheme(),
            Scheme::Bcrypt | Scheme::Sha512Crypt | Scheme::Sha256Crypt | Scheme::OtherCrypt
        );
        // `$2x$` is the buggy-8-bit variant that libxcrypt only verifies for
        // compatibility; a ':' or a line break would corrupt smtpd's value.
        (ok && c.len() > 3 && !c.contains([':', '\n', '\r', '\0'])).then_some(c)
    }

    /// The `{SCHEME}hash` form for Dovecot. A stored prefix is kept;
    /// otherwise one is chosen from the hash itself.
    pub fn for_dovecot(&self) -> Option<String> {
        // A prefix with nothing after it (`{SHA512-CRYPT}`) is no hash
        // either: an empty password field for Dovecot.
        if self.crypt_string().is_empty() || self.0.contains(['\n', '\r', '\0', '\t']) {
            return None;
        }
        if self.prefix().is_some() {
            return Some(self.0.clone());
        }
        let scheme = match self.scheme() {
            Scheme::Bcrypt => "BLF-CRYPT",
            Scheme::Sha512Crypt => "SHA512-CRYPT",
            Scheme::Sha256Crypt => "SHA256-CRYPT",
            Scheme::Argon2 if self.0.starts_with("$argon2id$") => "ARGON2ID",
            Scheme::Argon2 => "ARGON2I",
            Scheme::OtherCrypt => "CRYPT",
            // Only a prefix makes a digest scheme: never without one.
            Scheme::Digest | Scheme::Unknown => return None,
        };
        Some(format!("{{{scheme}}}{}", self.0))
    }

    /// Whether mailtable checks this hash itself ([`PasswordHash::verify`]
    /// answers yes or no, never an error): what checkpassword and the Lua
    /// endpoint need.
    pub fn mailtable_checks(&self) -> bool {
        let c = self.crypt_string();
        self.validate().is_ok()
            && match self.scheme() {
                Scheme::OtherCrypt => c.starts_with("$1$"),
                Scheme::Unknown => false,
                _ => true,
            }
    }

    /// Whether the entry is locked, in the notation of passwd(5) and
    /// shadow(5), bare or under a crypt `{PREFIX}`: `!` before a crypt(3)
    /// string (`usermod -L`, `passwd -l`) or before nothing (`!`, `!!`: no
    /// password set), or `*` alone (`*LK*`, `*NP*` on Solaris). crypt(3)
    /// matches no password to it, as meant: the login is refused, like a
    /// disabled mailbox's, where a malformed hash would be a temporary
    /// failure until the row is fixed. Nothing else that starts with
    /// either character is: a password stored in clear (`!Summer2024`), a
    /// MySQL hash (`*94BD...`), a `{PLAIN}` password.
    pub fn is_locked(&self) -> bool {
        let crypt = match self.prefix() {
            None => true,
            Some(p) => matches!(
                p.as_str(),
                "CRYPT" | "DES-CRYPT" | "MD5-CRYPT" | "SHA256-CRYPT" | "SHA512-CRYPT" | "BLF-CRYPT"
            ),
        };
        let c = self.crypt_string();
        let no_password = |s: &str| matches!(s, "" | "*" | "*LK*" | "*NP*");
        let hash = c.trim_start_matches('!');
        let locked = match hash.len() < c.len() {
            true => {
                no_password(hash)
                    || bare_scheme(hash) != Scheme::Unknown
                    || crypt_id_shaped(hash)
                    || des_shaped(hash)
            }
            false => !c.is_empty() && no_password(c),
        };
        crypt && locked
    }

    /// Whether the value is a password in clear (`{PLAIN}`, `{CLEAR}`,
    /// `{CLEARTEXT}`, in any encoding): checkable, but no hash, and never
    /// what mailtable writes.
    pub fn is_cleartext(&self) -> bool {
        self.prefix()
            .and_then(|p| legacy::digest_scheme(&p, self.crypt_string()))
            == Some(legacy::Digest::Plain)
    }

    /// Whether this is a value of a Dovecot scheme mailtable does not check
    /// (`{PBKDF2}`, `{SCRAM-SHA-256}`, `{DES-CRYPT}`, `{CRAM-MD5}`, ...):
    /// one prefix Dovecot knows, and nothing that would break its reply
    /// line. Dovecot checks such a value itself when it gets it (dict);
    /// checkpassword and the Lua endpoint cannot.
    pub fn dovecot_only(&self) -> bool {
        self.scheme() == Scheme::Unknown
            && self.misnamed_family().is_none()
            && self
                .prefix()
                .is_some_and(|p| DOVECOT_SCHEMES.contains(&p.as_str()))
            && !self.crypt_string().starts_with('{')
            && self.for_dovecot().is_some()
    }

    /// Whether the stored value is a well-formed hash of its scheme, so that
    /// whoever checks it (mailtable, smtpd's crypt(3), Dovecot) gets the same
    /// answer. A malformed hash is never handed on and never checked: it
    /// would read as "wrong password" to one verifier and as an error to
    /// another. Formats: bcrypt `$2b$NN$` + 53 characters of bcrypt's base64
    /// (OpenBSD bcrypt(3)); SHA-crypt `$6$[rounds=N$]salt$` + 86 (or `$5$` +
    /// 43) characters of crypt's base64 with a salt of at most 16
    /// characters (Drepper's specification, as in glibc and libxcrypt
    /// crypt-sha512.c); Argon2 a PHC string; yescrypt and scrypt their
    /// fields (`other_crypt_well_formed`). Other crypt(3) formats are only
    /// checked for characters that would corrupt a protocol line.
    pub fn validate(&self) -> Result<(), PasswordError> {
        if self.0.is_empty() {
            return Err(PasswordError::Empty);
        }
        if let Some(family) = self.misnamed_family() {
            return Err(PasswordError::Malformed(family));
        }
        let c = self.crypt_string();
        let scheme = self.scheme();
        let well_formed = match scheme {
            Scheme::Bcrypt => bcrypt_well_formed(c),
            Scheme::Sha512Crypt => sha_crypt_well_formed(c, 86),
            Scheme::Sha256Crypt => sha_crypt_well_formed(c, 43),
            // A PHC string may omit salt and hash; a stored hash needs both,
            // or every password would read as a mismatch.
            Scheme::Argon2 => {
                argon2::PasswordHash::new(c).is_ok_and(|p| p.salt.is_some() && p.hash.is_some())
            }
            Scheme::OtherCrypt if c.starts_with("$1$") => legacy::md5_crypt_well_formed(c),
            Scheme::OtherCrypt => other_crypt_well_formed(c),
            Scheme::Digest => self
                .prefix()
                .is_some_and(|p| legacy::digest_well_formed(&p, c)),
            Scheme::Unknown => {
                return Err(PasswordError::Unsupported(self.scheme_label()));
            }
        };
        if well_formed {
            Ok(())
        } else {
            Err(PasswordError::Malformed(scheme.name()))
        }
    }

    /// The family a crypt `{PREFIX}` names when the string after it is none
    /// of the strings that prefix's check takes: a malformed hash. Dovecot
    /// would check `{SHA512-CRYPT}garbage` with crypt(3) and answer
    /// "password mismatch", `{BLF-CRYPT}$6$...` with its bcrypt and fail the
    /// same way (core@2.3.19.1: src/auth/password-scheme-crypt.c): a wrong
    /// password to the user, where the row is what needs fixing. The
    /// crypt(3) prefixes (`CRYPT`, `DES-CRYPT`, `SHA256-CRYPT`,
    /// `SHA512-CRYPT`) take any crypt(3) string, a `$id$` one mailtable
    /// does not know and DES included; the others their own family only.
    fn misnamed_family(&self) -> Option<&'static str> {
        let p = self.prefix()?;
        let c = self.crypt_string();
        let family = match p.as_str() {
            "CRYPT" | "DES-CRYPT" => Scheme::OtherCrypt,
            "SHA256-CRYPT" => Scheme::Sha256Crypt,
            "SHA512-CRYPT" => Scheme::Sha512Crypt,
            "BLF-CRYPT" => Scheme::Bcrypt,
            "ARGON2" | "ARGON2I" | "ARGON2ID" => Scheme::Argon2,
            "MD5-CRYPT" => return (!c.starts_with("$1$")).then_some("MD5-crypt"),
            _ => return None,
        };
        // An empty string is an empty hash, said as such elsewhere. A
        // locked entry is refused at login, by the one rule that says what
        // one is ([`PasswordHash::is_locked`]): `{SHA512-CRYPT}!Summer2024`
        // is no lock but a malformed value.
        let takes = c.is_empty()
            || self.is_locked()
            || names_crypt_string(&p, c) == Some(true)
                && (bare_scheme(c) != Scheme::Unknown || crypt_id_shaped(c) || des_shaped(c));
        (!takes).then_some(family.name())
    }

    /// What to call the scheme of a hash mailtable cannot use, in an error
    /// (logs, smtpd's and Dovecot's replies): its `{PREFIX}` or crypt `$id$`
    /// when it looks like one, and never a character of anything else: a
    /// value of neither form is most likely a password someone stored in
    /// clear (the `sqlite3` shell makes that easy).
    fn scheme_label(&self) -> String {
        if let Some(prefix) = self.prefix() {
            return match DOVECOT_SCHEMES.contains(&prefix.as_str()) {
                true => prefix,
                false => "an unknown {SCHEME} prefix".into(),
            };
        }
        let id = self
            .crypt_string()
            .strip_prefix('$')
            .and_then(|rest| rest.split_once('$'))
            .map(|(id, _)| id)
            .filter(|id| CRYPT_IDS.contains(id));
        match id {
            Some(id) => format!("${id}$"),
            None => "neither {SCHEME} nor $id$: not a hash, perhaps a cleartext password".into(),
        }
    }

    /// Check `password` against this hash. `Ok(false)` is a mismatch; an
    /// error means the hash cannot be checked here (never a mismatch).
    pub fn verify(&self, password: &Secret) -> Result<bool, PasswordError> {
        self.verify_bytes(password.expose().as_bytes())
    }

    /// [`PasswordHash::verify`] of the bytes a client sent, UTF-8 or not:
    /// every scheme hashes bytes, and a hash made elsewhere from a Latin-1
    /// password (`doveadm pw`, crypt(3)) is one of those bytes.
    pub fn verify_bytes(&self, pw: &[u8]) -> Result<bool, PasswordError> {
        self.validate()?;
        let c = self.crypt_string();
        match self.scheme() {
            Scheme::Bcrypt => bcrypt::verify(pw, c).map_err(|_| PasswordError::Malformed("bcrypt")),
            Scheme::Sha512Crypt => sha_crypt_verify(true, pw, c),
            Scheme::Sha256Crypt => sha_crypt_verify(false, pw, c),
            Scheme::Argon2 => {
                use argon2::password_hash::PasswordVerifier;
                let parsed =
                    argon2::PasswordHash::new(c).map_err(|_| PasswordError::Malformed("argon2"))?;
                match argon2::Argon2::default().verify_password(pw, &parsed) {
                    Ok(()) => Ok(true),
                    Err(argon2::password_hash::Error::Password) => Ok(false),
                    Err(_) => Err(PasswordError::Malformed("argon2")),
                }
            }
            Scheme::OtherCrypt if c.starts_with("$1$") => {
                legacy::md5_crypt_verify(c, pw).ok_or(PasswordError::Malformed("MD5-crypt"))
            }
            Scheme::Digest => self
                .prefix()
                .and_then(|p| legacy::digest_verify(&p, c, pw))
                .ok_or(PasswordError::Malformed(Scheme::Digest.name())),
            Scheme::OtherCrypt | Scheme::Unknown => {
                Err(PasswordError::Unsupported(self.scheme_label()))
            }
        }
    }
}

/// Whether the upper-cased Dovecot `prefix` names the crypt(3) family of
/// the crypt string `c` after it, as Dovecot 2.3 checks it
/// (password-scheme-crypt.c): `{CRYPT}`, `{DES-CRYPT}`, `{SHA256-CRYPT}`
/// and `{SHA512-CRYPT}` with the system's crypt(3), whatever the string;
/// `{BLF-CRYPT}` with its own bcrypt, which refuses anything but `$2?$`;
/// the Argon2 and MD5-crypt schemes their own strings only. MD5-crypt in
/// Dovecot's notation is the bare `$1$` string: one hash, one scheme, to
/// smtpd as to Dovecot. `None` for a prefix of no crypt(3) family.
fn names_crypt_string(prefix: &str, c: &str) -> Option<bool> {
    let bare = bare_scheme(c);
    Some(match prefix {
        "CRYPT" | "DES-CRYPT" | "SHA256-CRYPT" | "SHA512-CRYPT" => true,
        "BLF-CRYPT" => bare == Scheme::Bcrypt,
        "ARGON2ID" => c.starts_with("$argon2id$"),
        "ARGON2I" => c.starts_with("$argon2i$"),
        "ARGON2" => bare == Scheme::Argon2,
        p if names_md5_crypt(p, c) => true,
        _ => return None,
    })
}

/// The format of a crypt string without a prefix.
fn bare_scheme(c: &str) -> Scheme {
    if ["$2a$", "$2b$", "$2y$", "$2x$"]
        .iter()
        .any(|p| c.starts_with(p))
    {
        Scheme::Bcrypt
    } else if c.starts_with("$6$") {
        Scheme::Sha512Crypt
    } else if c.starts_with("$5$") {
        Scheme::Sha256Crypt
    } else if c.starts_with("$argon2") {
        Scheme::Argon2
    } else if ["$y$", "$gy$", "$7$", "$1$"]
        .iter()
        .any(|p| c.starts_with(p))
    {
        Scheme::OtherCrypt
    } else {
        Scheme::Unknown
    }
}

/// Whether Dovecot scheme `prefix` over crypt string `c` is MD5-crypt:
/// MD5-CRYPT is, and MD5 is too over a `$1$` string (PLAIN-MD5 otherwise):
/// `md5_crypt_verify` and `md5_verify` in core's
/// src/auth/password-scheme.c.
fn names_md5_crypt(prefix: &str, c: &str) -> bool {
    matches!(prefix, "MD5-CRYPT" | "MD5") && c.starts_with("$1$")
}

/// `$id$...`: the form of every crypt(3) method but DES (crypt(5)), `id`
/// letters and digits.
fn crypt_id_shaped(c: &str) -> bool {
    c.strip_prefix('$')
        .and_then(|rest| rest.split_once('$'))
        .is_some_and(|(id, _)| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// A traditional DES-crypt string (2 characters of salt, 11 of hash) or
/// BSDi's extended one (`_`, 4 of rounds, 4 of salt, 11 of hash), as
/// crypt(3) takes them (libxcrypt crypt-des.c).
fn des_shaped(c: &str) -> bool {
    let b = c.as_bytes();
    match b.first() {
        Some(b'_') => b.len() == 20 && b[1..].iter().all(|&x| is_crypt_b64(x)),
        _ => b.len() == 13 && b.iter().all(|&x| is_crypt_b64(x)),
    }
}

/// The characters of crypt(3)'s and bcrypt's base64 alphabets (same set,
/// different order).
fn is_crypt_b64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'/'
}

/// `$2?$NN$` + 22 characters of salt and 31 of hash.
fn bcrypt_well_formed(c: &str) -> bool {
    let b = c.as_bytes();
    b.len() == 60
        && b[3] == b'$'
        && b[6] == b'$'
        && c.get(4..6)
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| COST_RANGE.contains(&n))
        && b[7..].iter().all(|&x| is_crypt_b64(x))
}

/// `$6$[rounds=N$]salt$hash` with a salt of at most 16 characters that
/// are neither `$`, `:` nor control bytes (crypt(3) reads at most 16), and
/// a hash of `hash_len` base64 characters.
/// A crypt(3) string of a family mailtable hands to the host's crypt(3)
/// (libxcrypt) or to Dovecot without checking it itself. The families
/// Debian's libxcrypt makes by default have a fixed shape, which a string
/// cut short in a copy or made up does not (crypt(5): yescrypt
/// `$y$PARAMS$SALT$HASH` and gost-yescrypt `$gy$...` alike, scrypt
/// `$7$PARAMS+SALT$HASH`, each HASH 43 characters of crypt's base64); any
/// other `$id$` string needs at least a salt field and a non-empty hash
/// after its id. DES and the like (no `$`) need only printable characters:
/// their forms are too many to tell apart here.
fn other_crypt_well_formed(c: &str) -> bool {
    if c.len() <= 3 || !c.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
        return false;
    }
    let Some(rest) = c.strip_prefix('$') else {
        return true;
    };
    let Some((id, fields)) = rest.split_once('$') else {
        return false;
    };
    let fields: Vec<&str> = fields.split('$').collect();
    let hash = fields[fields.len() - 1];
    let shaped = |n: usize| {
        fields.len() == n
            && fields.iter().all(|f| !f.is_empty())
            && hash.len() == 43
            && hash.bytes().all(is_crypt_b64)
    };
    match id {
        "y" | "gy" => shaped(3),
        "7" => shaped(2),
        _ => !id.is_empty() && fields.len() >= 2 && !hash.is_empty(),
    }
}

fn sha_crypt_well_formed(c: &str, hash_len: usize) -> bool {
    let Some(rest) = c.get(3..) else {
        return false;
    };
    let rest = match rest.strip_prefix("rounds=") {
        Some(r) => match r.split_once('$') {
            Some((n, tail)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => tail,
            _ => return false,
        },
        None => rest,
    };
    let Some((salt, hash)) = rest.split_once('$') else {
        return false;
    };
    salt.len() <= 16
        && salt.bytes().all(|b| b.is_ascii_graphic() && b != b':')
        && hash.len() == hash_len
        && hash.bytes().all(is_crypt_b64)
}

/// Verify `$6$[rounds=N$]salt$hash` (or `$5$`) by recomputing it.
///
/// The sha-crypt crate's own `*_check` does not export its error type, so a
/// mismatch could not be told from a malformed hash; recomputing keeps the
/// two apart. Format: Ulrich Drepper's "Unix crypt using SHA-256 and
/// SHA-512", as implemented by glibc and libxcrypt.
fn sha_crypt_verify(is512: bool, pw: &[u8], c: &str) -> Result<bool, PasswordError> {
    let what = if is512 {
        "SHA512-crypt"
    } else {
        "SHA256-crypt"
    };
    let bad = || PasswordError::Malformed(what);
    let rest = c.get(3..).ok_or_else(bad)?;
    let mut parts: Vec<&str> = rest.split('$').collect();
    let mut rounds = 5000usize;
    if let Some(r) = parts.first().and_then(|p| p.strip_prefix("rounds=")) {
        // Out-of-range rounds are clamped, as crypt(3) does.
        rounds = r
            .parse::<usize>()
            .map_err(|_| bad())?
            .clamp(1000, 999_999_999);
        parts.remove(0);
    }
    let [salt, hash] = parts[..] else {
        return Err(bad());
    };
    // A stored value is never trusted to be ASCII: slicing inside a
    // multi-byte character would panic.
    let salt = salt.get(..salt.len().min(16)).ok_or_else(bad)?;
    let computed = if is512 {
        let params = sha_crypt::Sha512Params::new(rounds).map_err(|_| bad())?;
        sha_crypt::sha512_crypt_b64(pw, salt.as_bytes(), &params).map_err(|_| bad())?
    } else {
        let params = sha_crypt::Sha256Params::new(rounds).map_err(|_| bad())?;
        sha_crypt::sha256_crypt_b64(pw, salt.as_bytes(), &params).map_err(|_| bad())?
    };
    Ok(constant_time_eq(computed.as_bytes(), hash.as_bytes()))
}

/// Equal lengths and bytes, in time that does not depend on where they
/// differ (the length is not hidden).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    bool::from(subtle::ConstantTimeEq::ct_eq(a, b))
}

/// bcrypt costs accepted for new hashes (the bcrypt crate's own range).
pub const COST_RANGE: std::ops::RangeInclusive<u32> = 4..=31;

/// The `password_cost` a config may ask for: each step doubles the time of
/// a hash and of every check of it (about a second at 14 on a 2024 server
/// core, four at 16). Past 16 a login's check outlasts what smtpd's and
/// Dovecot's clients wait, and `user add` takes minutes to days (31). A
/// stored hash of a higher cost is still checked ([`COST_RANGE`]).
pub const CONFIG_COST_RANGE: std::ops::RangeInclusive<u32> = 4..=16;

/// Hash a new password as bcrypt `$2b$` with `cost`.
pub fn hash(password: &Secret, cost: u32) -> Result<PasswordHash, PasswordError> {
    let pw = password.expose();
    if pw.is_empty() {
        return Err(PasswordError::Refused("empty password refused"));
    }
    if pw.len() > 72 {
        // bcrypt only looks at the first 72 bytes; silently truncating would
        // make every longer password equal to its prefix.
        return Err(PasswordError::Refused(
            "password longer than 72 bytes refused (bcrypt ignores the rest)",
        ));
    }
    // Dovecot refuses a login whose password holds ^A, a tab or a line
    // break before any passdb is asked ("password having illegal chars",
    // password_has_illegal_chars in src/auth/auth-request.c, 2.3 and 2.4),
    // and no SASL client sends a NUL inside one: such a password would
    // work for smtpd's AUTH and never for IMAP.
    if pw.contains(['\0', '\x01', '\t', '\n', '\r']) {
        return Err(PasswordError::Refused(
            "password with a tab, line break, NUL or ^A refused (Dovecot refuses such a login)",
        ));
    }
    if !COST_RANGE.contains(&cost) {
        return Err(PasswordError::Refused(
            "bcrypt cost must be between 4 and 31",
        ));
    }
    let parts = bcrypt::hash_with_result(pw, cost)
        .map_err(|_| PasswordError::Refused("bcrypt hashing failed"))?;
    Ok(PasswordHash(
        parts.format_for_version(bcrypt::Version::TwoB),
    ))
}

/// What checking a stored hash costs: its scheme and work factor. A dummy
/// check ([`dummy_verify`], [`dummy_hash`]) of the same cost takes the same
/// time, so that timing does not tell which users exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashCost {
    /// bcrypt of this cost (`$2b$10$...` is 10).
    Bcrypt(u32),
    /// SHA-crypt: `$6$` (`sha512`) or `$5$`, with this many rounds
    /// (5000 when the hash does not say).
    ShaCrypt {
        /// `$6$` rather than `$5$`.
        sha512: bool,
        /// The rounds, clamped as crypt(3) does.
        rounds: u32,
    },
    /// MD5-crypt `$1$` (a fixed 1000 rounds).
    Md5Crypt,
    /// A Dovecot digest scheme: one hash, too cheap to tell apart.
    Digest,
}

impl HashCost {
    /// Whether checking a hash of this kind is far cheaper than one of
    /// `other`'s kind: a digest than MD5-crypt's thousand rounds, those
    /// than bcrypt or SHA-crypt. Within one kind, costs are not compared.
    pub fn cheaper_kind_than(self, other: HashCost) -> bool {
        fn rank(c: HashCost) -> u8 {
            match c {
                HashCost::Digest => 0,
                HashCost::Md5Crypt => 1,
                HashCost::Bcrypt(_) | HashCost::ShaCrypt { .. } => 2,
            }
        }
        rank(self) < rank(other)
    }

    /// The cost of checking `hash`, or `None` for a hash that is malformed or
    /// of a scheme mailtable cannot make a dummy of (Argon2, other crypt(3)
    /// formats).
    pub fn of(hash: &PasswordHash) -> Option<HashCost> {
        hash.validate().ok()?;
        let c = hash.crypt_string();
        match hash.scheme() {
            Scheme::Bcrypt => bcrypt_cost(hash).map(HashCost::Bcrypt),
            scheme @ (Scheme::Sha512Crypt | Scheme::Sha256Crypt) => {
                let rounds = match c.get(3..).and_then(|r| r.strip_prefix("rounds=")) {
                    Some(r) => r.split('$').next()?.parse::<u64>().ok()?,
                    None => 5000,
                };
                Some(HashCost::ShaCrypt {
                    sha512: scheme == Scheme::Sha512Crypt,
                    rounds: u32::try_from(rounds.clamp(1000, 999_999_999)).ok()?,
                })
            }
            Scheme::OtherCrypt if c.starts_with("$1$") => Some(HashCost::Md5Crypt),
            Scheme::Digest => Some(HashCost::Digest),
            _ => None,
        }
    }
}

/// `n` random characters of `alphabet` (64 symbols); the last one only from
/// those whose `unused_bits` low bits are zero, so that the string is the
/// canonical encoding of whole bytes.
fn random_b64(alphabet: &[u8; 64], n: usize, unused_bits: u32) -> String {
    use rand::Rng;
    let mut rng = rand::rngs::OsRng;
    (0..n)
        .map(|i| {
            let mut x = rng.gen_range(0..64usize);
            if i + 1 == n {
                x &= !((1usize << unused_bits) - 1);
            }
            char::from(alphabet[x])
        })
        .collect()
}

const BCRYPT_B64: &[u8; 64] = b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const CRYPT_B64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A well-formed hash of `cost` whose salt and digest are random, made once
/// per process and cost: the hash of a secret nobody has, not even this
/// process, so no password matches it, and making it costs nothing (a
/// hash of a random secret would cost one more hashing in every
/// short-lived process). What smtpd gets for an unknown or disabled
/// login, so that its crypt(3) spends the time a real check takes and
/// then refuses every password; also what [`dummy_verify`] checks against.
/// bcrypt is `$2b$`.
pub fn dummy_hash(cost: HashCost) -> PasswordHash {
    static CACHE: OnceLock<std::sync::Mutex<Vec<(HashCost, String)>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = match cache.lock() {
        Ok(c) => c,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some((_, h)) = cache.iter().find(|(c, _)| *c == cost) {
        return PasswordHash(h.clone());
    }
    let h = match cost {
        // 16 bytes of salt in 22 characters, 23 of digest in 31
        // (OpenBSD bcrypt's encoding).
        HashCost::Bcrypt(n) => format!(
            "$2b${:02}${}{}",
            n.clamp(4, 31),
            random_b64(BCRYPT_B64, 22, 4),
            random_b64(BCRYPT_B64, 31, 2)
        ),
        // 64 (or 32) bytes of digest in 86 (or 43) characters; crypt(3)
        // compares the encoded string, so the last one needs no care.
        HashCost::ShaCrypt { sha512, rounds } => {
            let rounds = rounds.clamp(1000, 999_999_999);
            let (id, len) = if sha512 { ("6", 86) } else { ("5", 43) };
            // Explicit rounds even for the default: the same work.
            format!(
                "${id}$rounds={rounds}${}${}",
                random_b64(CRYPT_B64, 16, 0),
                random_b64(CRYPT_B64, len, 0)
            )
        }
        HashCost::Md5Crypt => format!(
            "$1${}${}",
            random_b64(CRYPT_B64, 8, 0),
            random_b64(CRYPT_B64, 22, 0)
        ),
        // 64 bytes of SHA-512 and 16 of salt, in base64.
        HashCost::Digest => {
            use base64::Engine;
            let mut raw = [0u8; 80];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut raw);
            format!(
                "{{SSHA512}}{}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            )
        }
    };
    cache.push((cost, h.clone()));
    PasswordHash(h)
}

/// Spend the same time as checking a real hash of `cost`, for an unknown
/// user, so that timing does not tell which users exist.
pub fn dummy_verify(password: &[u8], cost: HashCost) {
    let _ = dummy_hash(cost).verify_bytes(password);
}

/// The bcrypt cost of a stored hash (`$2b$10$...` gives 10), for matching the
/// time of [`dummy_verify`] to the real hashes of a database.
pub fn bcrypt_cost(hash: &PasswordHash) -> Option<u32> {
    let c = hash.crypt_string();
    c.get(4..6)?.parse().ok()
}

#[cfg(test)]
mod tests {
    /// Said as what it is on every path that checks it (the daemons' log,
    /// doctor), not taken for a password stored in clear.
    #[test]
    fn an_empty_column_is_named_as_such() {
        let e = PasswordHash::new("").verify(&Secret::new("x")).unwrap_err();
        assert_eq!(e.to_string(), "the password column is empty");
    }

    #[test]
    fn locked_entries_are_crypt_strings_after_a_bang_or_a_star() {
        let locked = [
            "!",
            "*",
            "!!",
            "!*",
            "!$2b$10$abcdefghijklmnopqrstuu",
            "!!$6$salt$hash",
            "!abJnggxhB/yWI",
            "*LK*",
            "{CRYPT}!$6$salt$hash",
            "{BLF-CRYPT}!$2y$10$x",
            "{sha512-crypt}*",
        ];
        for h in locked {
            assert!(PasswordHash::new(h).is_locked(), "{h}");
        }
        let not_locked = [
            "{PLAIN}!secret",
            "{ARGON2ID}!x",
            "$2b$10$!x",
            "",
            "x!",
            "{SSHA}*",
            // A password in clear, a MySQL hash: no lock, named as what
            // no daemon can check.
            "!Summer2024",
            "*94BDCEBE19083CE2A1F959FD02F964C7AF4CFC29",
            "*secret",
            "{SHA512-CRYPT}!Summer2024",
        ];
        for h in not_locked {
            assert!(!PasswordHash::new(h).is_locked(), "{h}");
        }
        // Under a crypt prefix, what is neither a crypt string nor a lock
        // is malformed, never handed to Dovecot as a lock.
        let e = PasswordHash::new("{SHA512-CRYPT}!Summer2024").validate();
        assert!(matches!(e, Err(PasswordError::Malformed(_))), "{e:?}");
        assert!(PasswordHash::new("{SHA512-CRYPT}!$6$salt$hash")
            .misnamed_family()
            .is_none());
    }

    #[test]
    fn one_password_in_two_notations() {
        let h = |s: &str| super::PasswordHash::new(s);
        let sha = "$6$Kq3TgFj8x2Lm9PzA$o/UJKeMt56XRFROebDD8Tdu0rgtt07FC1Ogqe6/jkFLBCy3CUzbm6o96RK2dneTUJBNBfAjythty8mfi2j.GH/";
        let bf = "$2y$05$8dQgwmQ1KU9byJcUGpyP1OIo4JgD9ubeH.eGRDWfIQV/axEm3D5Ue";
        let a2 = "$argon2id$v=19$m=65536,t=3,p=1$YbhB3+dPpV2cIVF/Hr2KQQ$Eo7xsjLuF1ojmW4Nxic70puU+o1YPRzjyhAl4+YBTOw";
        let md5 = "$1$saltsalt$qjXMvbEw8oaL.CzflDugX/";
        let same = [
            (sha.to_string(), format!("{{SHA512-CRYPT}}{sha}")),
            (sha.to_string(), format!("{{CRYPT}}{sha}")),
            (format!("{{crypt}}{sha}"), format!("{{SHA512-CRYPT}}{sha}")),
            (bf.to_string(), format!("{{BLF-CRYPT}}{bf}")),
            ("$5$s$h".to_string(), "{SHA256-CRYPT}$5$s$h".to_string()),
            (a2.to_string(), format!("{{ARGON2ID}}{a2}")),
            (a2.to_string(), format!("{{ARGON2}}{a2}")),
            (
                "abJnggxhB/yWI".to_string(),
                "{CRYPT}abJnggxhB/yWI".to_string(),
            ),
            // Dovecot's MD5-CRYPT, and MD5 over a `$1$` string, check the
            // same MD5-crypt as crypt(3) does with the bare string.
            (md5.to_string(), format!("{{MD5-CRYPT}}{md5}")),
            (format!("{{md5-crypt}}{md5}"), format!("{{MD5}}{md5}")),
            (md5.to_string(), format!("{{CRYPT}}{md5}")),
        ];
        for (a, b) in &same {
            assert!(h(a).same_password(&h(b)), "{a} = {b}");
            // One password is one scheme, and smtpd checks it or not
            // whichever notation the table holds.
            assert_eq!(h(a).scheme(), h(b).scheme(), "{a} = {b}");
            assert_eq!(h(a).for_smtpd(), h(b).for_smtpd(), "{a} = {b}");
        }
        assert_eq!(h(&format!("{{MD5-CRYPT}}{md5}")).for_smtpd(), Some(md5));
        let different = [
            // Another hash, the same notation or not.
            (
                sha.to_string(),
                format!("{{SHA512-CRYPT}}{}x", &sha[..sha.len() - 1]),
            ),
            // A prefix whose own code refuses the string (Dovecot's
            // bcrypt; SHA512-CRYPT is crypt(3), which takes any).
            (sha.to_string(), format!("{{BLF-CRYPT}}{sha}")),
            (a2.to_string(), format!("{{ARGON2I}}{a2}")),
            // Dovecot's own schemes are not crypt strings.
            ("c2VjcmV0".to_string(), "{SSHA512}c2VjcmV0".to_string()),
            ("secret".to_string(), "{PLAIN}secret".to_string()),
            // {MD5} over anything else is PLAIN-MD5, not a crypt string.
            (
                "5f4dcc3b5aa765d61d8327deb882cf99".to_string(),
                "{MD5}5f4dcc3b5aa765d61d8327deb882cf99".to_string(),
            ),
            (sha.to_string(), format!("{{MD5-CRYPT}}{sha}")),
            // $2y$ and $2b$ are kept apart: byte for byte, or a conflict.
            (bf.to_string(), bf.replacen("$2y$", "$2b$", 1)),
        ];
        for (a, b) in &different {
            assert!(!h(a).same_password(&h(b)), "{a} != {b}");
        }
        assert_eq!(h(&format!("{{BLF-CRYPT}}{bf}")).canonical(), bf);
        assert_eq!(h("{SSHA512}x").canonical(), "{SSHA512}x");
    }

    #[test]
    fn non_ascii_sha_crypt_salt_is_malformed_not_a_panic() {
        // 15 ASCII bytes then a 2-byte character straddling byte 16.
        for c in [
            "$6$aaaaaaaaaaaaaaaé$xyz",
            "$5$rounds=5000$ééééééééé$x",
            "$6$é$",
        ] {
            let r = sha_crypt_verify(c.starts_with("$6$"), b"pw", c);
            assert!(
                matches!(r, Err(PasswordError::Malformed(_)) | Ok(false)),
                "{c}: {r:?}"
            );
        }
    }

    #[test]
    fn secrets_compare_by_value() {
        assert_eq!(Secret::new("a b"), Secret::new("a b"));
        assert_ne!(Secret::new("a b"), Secret::new("a c"));
        assert_ne!(Secret::new("a"), Secret::new("ab"));
    }

    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert_eq!(format!("{s}"), "<redacted>");
        let h = PasswordHash::new("$2b$04$abcdefghijklmnopqrstuu5Mx0Ykq8w0cU1pzqKmAfRp3kE6rX9mW");
        assert!(!format!("{h:?}").contains("abcdef"));
    }

    #[test]
    fn bcrypt_round_trip_is_2b_and_verifies() {
        let pw = Secret::new("correct horse");
        let h = hash(&pw, 4).unwrap();
        assert!(h.stored().starts_with("$2b$04$"), "{}", h.stored());
        assert!(h.verify(&pw).unwrap());
        assert!(!h.verify(&Secret::new("wrong")).unwrap());
        assert_eq!(h.for_smtpd(), Some(h.stored()));
        assert_eq!(
            h.for_dovecot().unwrap(),
            format!("{{BLF-CRYPT}}{}", h.stored())
        );
        assert_eq!(bcrypt_cost(&h), Some(4));
    }

    #[test]
    fn verifies_2a_2y_and_prefixed() {
        let pw = Secret::new("secret");
        let parts = bcrypt::hash_with_result("secret", 4).unwrap();
        for v in [
            bcrypt::Version::TwoA,
            bcrypt::Version::TwoY,
            bcrypt::Version::TwoB,
        ] {
            let s = parts.format_for_version(v);
            assert!(PasswordHash::new(s.clone()).verify(&pw).unwrap());
            let prefixed = PasswordHash::new(format!("{{BLF-CRYPT}}{s}"));
            assert!(prefixed.verify(&pw).unwrap());
            assert_eq!(prefixed.for_smtpd(), Some(s.as_str()));
            assert_eq!(prefixed.for_dovecot().unwrap(), prefixed.stored());
        }
    }

    #[test]
    fn verifies_sha_crypt() {
        // Produced by glibc/libxcrypt crypt(3) with salt `saltsaltsaltsalt`,
        // password `secret` (Debian 12).
        let s512 = "$6$saltsaltsaltsalt$ph0yGsyjzqdeFaon7.gJZo8eAG5/rj9/JdzOu1Rl7dKzBYg3xgvl7T2VQ2Rt81bc5AXkdA54r0p8QvC1omD6R1";
        let s256 = "$5$saltsaltsaltsalt$X0ra9qlY7TJaGBDgorLevriQfwysW8fXnbybcO4mF4/";
        let pw = Secret::new("secret");
        for s in [s512, s256] {
            let h = PasswordHash::new(s);
            assert!(h.verify(&pw).unwrap(), "{s}");
            assert!(!h.verify(&Secret::new("Secret")).unwrap());
            assert!(h.for_smtpd().is_some());
        }
        let p = PasswordHash::new(format!("{{SHA512-CRYPT}}{s512}"));
        assert!(p.verify(&pw).unwrap());
    }

    #[test]
    fn verifies_argon2_but_not_for_smtpd() {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let s = argon2::Argon2::default()
            .hash_password(b"secret", &salt)
            .unwrap()
            .to_string();
        let h = PasswordHash::new(format!("{{ARGON2ID}}{s}"));
        assert!(h.verify(&Secret::new("secret")).unwrap());
        assert!(!h.verify(&Secret::new("nope")).unwrap());
        assert_eq!(h.for_smtpd(), None, "libxcrypt cannot check argon2");
        assert!(PasswordHash::new(s)
            .for_dovecot()
            .unwrap()
            .starts_with("{ARGON2ID}$argon2id$"));
    }

    #[test]
    fn unknown_and_empty_hashes() {
        let pw = Secret::new("x");
        for s in ["", "{SSHA512}abc", "{PBKDF2}x", "x"] {
            let h = PasswordHash::new(s);
            assert!(h.verify(&pw).is_err(), "{s:?} verified");
            assert_eq!(h.for_smtpd(), None, "{s:?} given to smtpd");
        }
        // Dovecot's own schemes go to Dovecot as they are; the ones it
        // shares with crypt(3), and the digests mailtable checks, are not
        // "Dovecot only".
        assert!(PasswordHash::new("{PBKDF2}x").dovecot_only());
        assert!(PasswordHash::new("{scram-sha-256}x").dovecot_only());
        for not in [
            "{PLAIN}x",
            "{X}x",
            "x",
            "{PBKDF2}{PLAIN}x",
            "{PBKDF2}a\nb",
            S512,
        ] {
            assert!(!PasswordHash::new(not).dovecot_only(), "{not:?}");
        }
        // A crypt family's prefix over a string its check cannot take is
        // malformed: Dovecot would answer "password mismatch", so it is
        // never handed on.
        let mixed = PasswordHash::new(format!("{{BLF-CRYPT}}{S512}"));
        assert_eq!(mixed.scheme(), Scheme::Unknown);
        assert!(mixed.verify(&pw).is_err());
        assert!(!mixed.dovecot_only());
        assert_eq!(
            PasswordHash::new(format!("{{CRYPT}}{S512}")).scheme(),
            Scheme::Sha512Crypt
        );
        // Dovecot checks the SHA-crypt and DES-crypt schemes with crypt(3),
        // which takes any of its strings: so does mailtable.
        let bf = hash(&Secret::new("x"), 4).unwrap();
        let sha_over_bf = PasswordHash::new(format!("{{SHA512-CRYPT}}{}", bf.stored()));
        assert_eq!(sha_over_bf.scheme(), Scheme::Bcrypt);
        assert!(sha_over_bf.verify(&Secret::new("x")).unwrap());
        assert!(sha_over_bf.same_password(&bf));
        assert_eq!(
            PasswordHash::new(format!("{{CRYPT}}{S512}")).scheme(),
            Scheme::Sha512Crypt
        );
        assert!(!mixed.mailtable_checks());
        assert!(PasswordHash::new("{PLAIN}x").is_cleartext());
        assert!(PasswordHash::new("{clear.b64}eA==").is_cleartext());
        assert!(
            !PasswordHash::new("{SHA}x").is_cleartext() && !PasswordHash::new("x").is_cleartext()
        );
        for checks in ["{PLAIN}x", "$1$ab$rn6aQS/o7141mj179E/zA.", S512] {
            assert!(PasswordHash::new(checks).mailtable_checks(), "{checks:?}");
        }
        for not in [
            "$y$j9T$F5Jx5fExrKuJdvTI5b7Ak/$5UiCg2g.gQ2w4go5BZ2i.aIHSEum6qlbkN8Z1WSBsh4",
            "{PBKDF2}x",
            "x",
        ] {
            assert!(!PasswordHash::new(not).mailtable_checks(), "{not:?}");
        }
        // Dovecot's digest schemes are checked here, never by smtpd.
        let plain = PasswordHash::new("{PLAIN}x");
        assert!(plain.verify(&pw).unwrap());
        assert!(!plain.verify(&Secret::new("y")).unwrap());
        assert_eq!(plain.for_smtpd(), None);
        assert_eq!(plain.for_dovecot().as_deref(), Some("{PLAIN}x"));
        assert_eq!(PasswordHash::new("").for_dovecot(), None);
        // A scheme prefix alone is an empty hash: never handed to Dovecot,
        // whatever the scheme.
        for bare in ["{SHA512-CRYPT}", "{PLAIN}", "{PBKDF2}", "{CRYPT}"] {
            let h = PasswordHash::new(bare);
            assert_eq!(h.for_dovecot(), None, "{bare}");
            assert!(!h.dovecot_only(), "{bare}");
        }
        assert!(PasswordHash::new("$2b$04$broken").verify(&pw).is_err());
    }

    /// A crypt `{PREFIX}` over a string its check cannot take is
    /// malformed, never handed to Dovecot (which would answer "password
    /// mismatch"); what crypt(3) takes under the crypt(3) prefixes stays
    /// Dovecot's to check.
    #[test]
    fn a_crypt_prefix_over_a_string_it_cannot_take_is_malformed() {
        for (s, family) in [
            ("{SHA512-CRYPT}garbage", "SHA512-crypt"),
            ("{sha256-crypt}xyz", "SHA256-crypt"),
            ("{MD5-CRYPT}xyz", "MD5-crypt"),
            ("{BLF-CRYPT}xyz", "bcrypt"),
            (
                "{ARGON2ID}$argon2i$v=19$m=65536,t=3,p=1$c2FsdHNhbHQ$aGFzaA",
                "argon2",
            ),
            ("{CRYPT}not a hash", "crypt"),
            ("{DES-CRYPT}abc", "crypt"),
            ("{SHA512-CRYPT}$garbage", "SHA512-crypt"),
            ("{SHA512-CRYPT}$$x", "SHA512-crypt"),
        ] {
            let h = PasswordHash::new(s);
            assert_eq!(
                h.validate().map_err(|e| e.to_string()),
                Err(format!("stored hash is malformed ({family} hash)")),
                "{s}"
            );
            assert!(!h.dovecot_only(), "{s}");
            assert!(!h.mailtable_checks(), "{s}");
            assert_eq!(h.for_smtpd(), None, "{s}");
        }
        // DES (traditional and extended) and a `$id$` string mailtable does
        // not know: crypt(3) checks them, so Dovecot does.
        for s in [
            "{CRYPT}abJnggxhB/yWI",
            "{DES-CRYPT}_J9..CCCCXBrJUJV154M",
            "{SHA512-CRYPT}abJnggxhB/yWI",
            "{CRYPT}$sha1$40000$salt$hash",
            // Locked entries: Dovecot refuses the login, as meant.
            "{CRYPT}!$6$salt$hash",
            "{SHA512-CRYPT}*",
        ] {
            let h = PasswordHash::new(s);
            assert!(h.dovecot_only(), "{s}");
            assert!(
                matches!(h.validate(), Err(PasswordError::Unsupported(_))),
                "{s}"
            );
        }
    }

    #[test]
    fn hash_refuses_bad_input() {
        assert!(hash(&Secret::new(""), 4).is_err());
        assert!(hash(&Secret::new("a".repeat(73)), 4).is_err());
        for bad in ["a\nb", "a\rb", "a\tb", "a\u{1}b", "a\0b"] {
            assert!(hash(&Secret::new(bad), 4).is_err(), "{bad:?}");
        }
        assert!(hash(&Secret::new("a b\u{2}c~"), 4).is_ok());
        assert!(hash(&Secret::new("ok"), 3).is_err());
    }

    #[test]
    fn cost_of_stored_hashes() {
        let b = hash(&Secret::new("x"), 5).unwrap();
        assert_eq!(HashCost::of(&b), Some(HashCost::Bcrypt(5)));
        let prefixed = PasswordHash::new(format!("{{BLF-CRYPT}}{}", b.stored()));
        assert_eq!(HashCost::of(&prefixed), Some(HashCost::Bcrypt(5)));
        let s512 = "$6$saltsaltsaltsalt$ph0yGsyjzqdeFaon7.gJZo8eAG5/rj9/JdzOu1Rl7dKzBYg3xgvl7T2VQ2Rt81bc5AXkdA54r0p8QvC1omD6R1";
        assert_eq!(
            HashCost::of(&PasswordHash::new(s512)),
            Some(HashCost::ShaCrypt {
                sha512: true,
                rounds: 5000
            })
        );
        let r =
            sha_crypt::sha256_simple("x", &sha_crypt::Sha256Params::new(1234).unwrap()).unwrap();
        assert_eq!(
            HashCost::of(&PasswordHash::new(r)),
            Some(HashCost::ShaCrypt {
                sha512: false,
                rounds: 1234
            })
        );
        assert_eq!(HashCost::of(&PasswordHash::new("$2b$04$broken")), None);
        assert_eq!(HashCost::of(&PasswordHash::new("{PBKDF2}x")), None);
        assert_eq!(
            HashCost::of(&PasswordHash::new("{PLAIN}x")),
            Some(HashCost::Digest)
        );
        assert_eq!(
            HashCost::of(&PasswordHash::new(
                "{MD5-CRYPT}$1$ab$rn6aQS/o7141mj179E/zA."
            )),
            Some(HashCost::Md5Crypt)
        );
        assert_eq!(HashCost::of(&PasswordHash::new("$1$ab$short")), None);
        // Other crypt(3) formats: no dummy of theirs is made.
        let yescrypt = "$y$j9T$F5Jx5fExrKuJdvTI5b7Ak/$5UiCg2g.gQ2w4go5BZ2i.aIHSEum6qlbkN8Z1WSBsh4";
        assert_eq!(HashCost::of(&PasswordHash::new(yescrypt)), None);
    }

    /// The dummy has the asked scheme and cost, is the same within a
    /// process, and matches neither an empty nor a guessable password.
    #[test]
    fn dummy_hashes_have_the_cost_and_match_nothing() {
        for cost in [
            HashCost::Bcrypt(4),
            HashCost::ShaCrypt {
                sha512: true,
                rounds: 1000,
            },
            HashCost::ShaCrypt {
                sha512: false,
                rounds: 1000,
            },
            HashCost::Md5Crypt,
            HashCost::Digest,
        ] {
            let d = dummy_hash(cost);
            assert_eq!(HashCost::of(&d), Some(cost));
            assert_eq!(dummy_hash(cost), d);
            assert_eq!(d.for_smtpd().is_some(), cost != HashCost::Digest);
            for pw in ["", "mailtable-dummy", "secret", "x"] {
                assert!(!d.verify(&Secret::new(pw)).unwrap(), "{pw:?}");
            }
        }
        assert!(dummy_hash(HashCost::Bcrypt(4))
            .stored()
            .starts_with("$2b$04$"));
    }

    const S512: &str = "$6$saltsaltsaltsalt$ph0yGsyjzqdeFaon7.gJZo8eAG5/rj9/JdzOu1Rl7dKzBYg3xgvl7T2VQ2Rt81bc5AXkdA54r0p8QvC1omD6R1";

    fn malformed(s: &str) -> bool {
        matches!(
            PasswordHash::new(s).validate(),
            Err(PasswordError::Malformed(_))
        )
    }

    #[test]
    fn hash_debug_shows_the_scheme_only() {
        let h = PasswordHash::new(S512);
        assert_eq!(format!("{h:?}"), "PasswordHash(Sha512Crypt, <redacted>)");
    }

    /// Errors name the scheme (for the admin), never the hash.
    #[test]
    fn errors_name_the_scheme_never_the_hash() {
        let err = |s: &str| match PasswordHash::new(s).validate() {
            Err(e) => e.to_string(),
            Ok(()) => panic!("{s:?} validated"),
        };
        assert_eq!(
            err("$2b$04$broken"),
            "stored hash is malformed (bcrypt hash)"
        );
        assert_eq!(
            err("$6$salt$short"),
            "stored hash is malformed (SHA512-crypt hash)"
        );
        assert_eq!(
            err("$5$salt$short"),
            "stored hash is malformed (SHA256-crypt hash)"
        );
        // Salted SHA-512 needs more than the 64 bytes of its digest.
        assert_eq!(
            err("{SSHA512}c2VjcmV0c2VjcmV0"),
            "stored hash is malformed (Dovecot digest hash)"
        );
        // A cleartext no Dovecot login can send: a trailing CR (a CSV
        // from Windows), a tab, in any encoding.
        for bad in ["{PLAIN}Right-pw1\r", "{PLAIN}a\tb", "{PLAIN.B64}YQ1i"] {
            assert_eq!(
                err(bad),
                "stored hash is malformed (Dovecot digest hash)",
                "{bad:?}"
            );
        }
        assert!(PasswordHash::new("{PLAIN}Right-pw1").validate().is_ok());
        assert_eq!(
            err("{PBKDF2}$1$c2VjcmV0$5000$aGFzaA"),
            "stored hash uses a scheme mailtable cannot verify (PBKDF2)"
        );
        assert_eq!(
            err("$1$saltsalt$short"),
            "stored hash is malformed (crypt hash)"
        );
        // A value of no known form: none of it, whatever it is (a
        // cleartext password, most likely).
        assert_eq!(
            err("{hunter2}x"),
            "stored hash uses a scheme mailtable cannot verify (an unknown {SCHEME} prefix)"
        );
        for value in ["abcdefgh", "pw1", "$hunter2$x", "$$x"] {
            assert_eq!(
                err(value),
                "stored hash uses a scheme mailtable cannot verify (neither {SCHEME} nor $id$: \
                 not a hash, perhaps a cleartext password)",
                "{value}"
            );
        }
        let yescrypt = PasswordHash::new(
            "$y$j9T$F5Jx5fExrKuJdvTI5b7Ak/$5UiCg2g.gQ2w4go5BZ2i.aIHSEum6qlbkN8Z1WSBsh4",
        );
        match yescrypt.verify(&Secret::new("x")) {
            Err(e) => assert_eq!(
                e.to_string(),
                "stored hash uses a scheme mailtable cannot verify ($y$)"
            ),
            Ok(v) => panic!("yescrypt checked: {v}"),
        }
    }

    /// `{ARGON2I}` names `$argon2i$` strings, and a bare `$argon2i$` string
    /// goes to Dovecot as `{ARGON2I}` (not `{ARGON2ID}`).
    #[test]
    fn argon2i_strings_are_named_argon2i() {
        let a2i = "$argon2i$v=19$m=65536,t=3,p=1$YbhB3+dPpV2cIVF/Hr2KQQ$Eo7xsjLuF1ojmW4Nxic70puU+o1YPRzjyhAl4+YBTOw";
        let h = PasswordHash::new(a2i);
        assert!(h.same_password(&PasswordHash::new(format!("{{ARGON2I}}{a2i}"))));
        assert_eq!(h.for_dovecot(), Some(format!("{{ARGON2I}}{a2i}")));
    }

    /// A value of many `{...}` prefixes is one unknown hash, answered at
    /// once: no call per prefix, which would overflow the stack on a long
    /// one (a 2 MB test thread, like the daemons' worker threads).
    #[test]
    fn many_prefixes_are_one_unknown_hash() {
        for v in [
            "{}".repeat(100_000),
            format!("{}{{MD5-CRYPT}}$1$ab$cd", "{X}".repeat(50_000)),
        ] {
            let h = PasswordHash::new(v.clone());
            assert_eq!(h.scheme(), Scheme::Unknown);
            assert_eq!(h.for_smtpd(), None);
            assert_eq!(h.canonical(), v);
        }
        // One prefix of the MD5 kind over `$1$` is MD5-crypt; a second
        // one in front is not Dovecot's notation of anything.
        let md5 = PasswordHash::new("{MD5}$1$ab$cd");
        assert_eq!(md5.scheme(), Scheme::OtherCrypt);
        assert_eq!(md5.for_smtpd(), Some("$1$ab$cd"));
        assert_eq!(
            PasswordHash::new("{X}{MD5}$1$ab$cd").scheme(),
            Scheme::Unknown
        );
        assert!(PasswordHash::new("{MD5}").validate().is_err());
    }

    /// A bare scheme marker (`$6$`) is no hash; smtpd's crypt(3) never gets it.
    #[test]
    fn a_bare_scheme_marker_is_never_given_to_smtpd() {
        for s in ["$6$", "$5$", "$1$"] {
            assert_eq!(PasswordHash::new(s).for_smtpd(), None, "{s:?}");
        }
        assert_eq!(PasswordHash::new("$1$ab$").for_smtpd(), Some("$1$ab$"));
    }

    /// A line break, NUL or tab would end or split a Dovecot reply line.
    #[test]
    fn for_dovecot_refuses_bytes_that_break_a_reply_line() {
        for bad in ["\n", "\r", "\0", "\t"] {
            let h = PasswordHash::new(format!("{S512}{bad}"));
            assert_eq!(h.for_dovecot(), None, "{bad:?}");
        }
        assert!(PasswordHash::new(S512).for_dovecot().is_some());
    }

    /// A PHC string without salt or without hash is refused: every password
    /// would read as a mismatch against it.
    #[test]
    fn argon2_needs_salt_and_hash() {
        assert!(malformed(
            "$argon2id$v=19$m=65536,t=3,p=1$YbhB3+dPpV2cIVF/Hr2KQQ"
        ));
        assert!(malformed("$argon2id$v=19$m=65536,t=3,p=1"));
        assert!(PasswordHash::new("$argon2id$v=19$m=65536,t=3,p=1$YbhB3+dPpV2cIVF/Hr2KQQ$Eo7xsjLuF1ojmW4Nxic70puU+o1YPRzjyhAl4+YBTOw").validate().is_ok());
    }

    /// Formats only libxcrypt checks need their shape (crypt(5)) and no
    /// byte that would corrupt a protocol line (space, control, `:`). The
    /// good ones were made by Debian 12's crypt(3) (libxcrypt 4.4.33).
    #[test]
    fn other_crypt_formats_need_their_shape_of_printable_bytes() {
        for ok in [
            "$y$j9T$F5Jx5fExrKuJdvTI5b7Ak/$5UiCg2g.gQ2w4go5BZ2i.aIHSEum6qlbkN8Z1WSBsh4",
            "$gy$j9T$F5Jx5fExrKuJdvTI5b7Ak/$nVUUwjbImn4LBahpV6c.uSOyJEbbcGl26jpFpVeZEN8",
            "$7$CU..../....F5Jx5fExrKuJdvTI5b7Ak/$YlgfdAZgr6ndtu2Tti6XaGM86ErAJCHtWpmHyf.cMS1",
            "$1$abcdefgh$OlRbJeGDH/0Rr0rsGvNC61",
        ] {
            assert!(PasswordHash::new(ok).validate().is_ok(), "{ok:?}");
        }
        for bad in [
            "$y$",
            "$1$",
            "$y$a:b",
            "$y$a b",
            "$1$ab\tc",
            // Made up, or cut short in a copy.
            "$y$garbage",
            "$gy$abc",
            "$7$xyz",
            "$y$j9T$F5Jx5fExrKuJdvTI5b7Ak/$5UiCg2g.gQ2w4go5BZ2i.aIHSEum6qlbkN8Z1WSB",
            "$y$j9T$$5UiCg2g.gQ2w4go5BZ2i.aIHSEum6qlbkN8Z1WSBsh4",
            "$7$CU..../....F5Jx5fExrKuJdvTI5b7Ak/$YlgfdAZgr6ndtu2Tti6XaGM86ErAJCHtWpmHyf.cM!1",
            "{CRYPT}$y$garbage",
        ] {
            assert!(malformed(bad), "{bad:?}");
        }
    }

    /// bcrypt and SHA-crypt strings are made of crypt's base64 alphabet.
    #[test]
    fn characters_outside_crypt_base64_are_malformed() {
        let bf = "$2y$05$8dQgwmQ1KU9byJcUGpyP1OIo4JgD9ubeH.eGRDWfIQV/axEm3D5Ue";
        assert!(PasswordHash::new(bf).validate().is_ok());
        assert!(malformed(&bf.replacen('e', "!", 1)));
        assert!(malformed(&format!("{}!", &S512[..S512.len() - 1])));
        assert!(malformed(&format!("{}$", &S512[..S512.len() - 1])));
    }

    /// SHA-crypt: `$6$[rounds=N$]salt$hash`, the rounds a decimal number,
    /// the salt at most 16 printable characters without `:`, the hash of the
    /// exact length.
    #[test]
    fn sha_crypt_shape_is_checked() {
        let hash = &S512["$6$saltsaltsaltsalt$".len()..];
        let with = |rounds: &str, salt: &str, hash: &str| format!("$6${rounds}{salt}${hash}");
        assert!(PasswordHash::new(with("", "saltsaltsaltsalt", hash))
            .validate()
            .is_ok());
        assert!(PasswordHash::new(with("rounds=5000$", "s", hash))
            .validate()
            .is_ok());
        for bad in [
            with("rounds=$", "salt", hash),
            with("rounds=abc$", "salt", hash),
            with("rounds=12a$", "salt", hash),
            with("", "saltsaltsaltsalt1", hash),
            with("", "salt:salt", hash),
            with("", "salt salt", hash),
            with("", "salt", &hash[1..]),
            with("", "salt", &format!("{hash}A")),
            "$6$saltonly".to_string(),
            "$6$salt$short".to_string(),
        ] {
            assert!(malformed(&bad), "{bad:?}");
        }
    }

    /// bcrypt reads 72 bytes: a password of exactly 72 is hashed and
    /// checked in full, one byte more is refused.
    #[test]
    fn a_72_byte_password_is_the_longest_hashed() {
        let pw = Secret::new("a".repeat(72));
        let h = hash(&pw, 4).expect("72 bytes are hashed");
        assert!(h.verify(&pw).unwrap());
        assert!(!h.verify(&Secret::new("a".repeat(71))).unwrap());
        assert!(matches!(
            hash(&Secret::new("a".repeat(73)), 4),
            Err(PasswordError::Refused(_))
        ));
    }

    /// The last character of a random salt or digest carries no bits beyond
    /// whole bytes (bcrypt refuses a salt whose unused low bits are set, so
    /// the dummy would be an error, not a mismatch); every other bit is
    /// random.
    #[test]
    fn random_b64_is_the_canonical_encoding_of_whole_bytes() {
        let index = |c: u8| {
            BCRYPT_B64
                .iter()
                .position(|&a| a == c)
                .expect("in the alphabet")
        };
        for (n, unused_bits) in [(22, 4), (31, 2)] {
            let mut seen = 0;
            for _ in 0..64 {
                let s = random_b64(BCRYPT_B64, n, unused_bits);
                let b = s.as_bytes();
                assert_eq!(b.len(), n);
                let last = index(b[n - 1]);
                assert_eq!(last & ((1 << unused_bits) - 1), 0, "{s}");
                seen |= last;
                seen |= b[..n - 1].iter().fold(0, |acc, &c| acc | index(c));
            }
            assert_eq!(seen, 63, "some bit is never set");
        }
    }
}
