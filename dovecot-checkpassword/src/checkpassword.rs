//! The checkpassword interface as Dovecot 2.3 drives it, without I/O.
//!
//! Dovecot forks the helper once per lookup, writes `user\0password\0\0` to
//! fd 3 and closes it, reads the reply from fd 4 until EOF, and acts on the
//! exit status (core@2.3.19.1:src/auth/db-checkpassword.c; reference §1).
//! This module holds the pieces, pure but for [`read_input`]:
//!
//! - [`read_input`] and [`parse_request`]: the fd-3 bytes to a
//!   [`CheckpasswordRequest`];
//! - [`Mode::from_env`]: which of the four calls this is (§1.5);
//! - [`write_reply`] and [`Outcome::exit_code`]: the fd-4 bytes and the exit
//!   code (§1.6, §1.7).
//!
//! Decisions:
//! - **Direct reply.** The helper writes `key=value` fields to fd 4 itself
//!   and exits 0 (verify) or 2 (lookup) instead of exec'ing
//!   `checkpassword-reply` (§1.6 way B, VERIFIED on 2.3.19.1): one exec
//!   less, no uid check, and the exit code table stays in one place.
//! - **Unknown user in verify mode exits 1**, the same as a wrong password:
//!   the checkpassword interface has no separate code there, and Dovecot
//!   answers both with the same "Authentication failed" (§1.7).
//! - **Malformed fd-3 input.** More than 512 bytes, or no NUL-terminated
//!   user at all, never comes from Dovecot (it refuses to spawn for
//!   user+password over 512 bytes), so it is a protocol error: temporary
//!   failure (exit 111), never a permanent "unknown user" that would make
//!   LMTP bounce mail. An empty or non-UTF-8 user name can never match a
//!   mailtable address, so it is "unknown" (exit 1 or 3).
//! - **Missing trailing fields are tolerated**: `alice\0secret` and
//!   `alice\0` parse like DJB's interface allows; the third field (the
//!   "timestamp", always empty from Dovecot) and anything after are ignored.
//!   The NUL after the user name is not optional: without it the name may
//!   be cut short.

use std::io::{self, Read};

use crate::secret::Secret;
use crate::tabescape;

/// Largest fd-3 request accepted, per the checkpassword interface
/// (<https://cr.yp.to/checkpwd/interface.html>) and Dovecot's own check.
pub const MAX_REQUEST_LEN: usize = 512;

/// Exit code: verify succeeded.
pub const EXIT_VERIFY_OK: i32 = 0;
/// Exit code: wrong password or unknown user (verify mode).
pub const EXIT_MISMATCH: i32 = 1;
/// Exit code: lookup succeeded (`AUTHORIZED=2` in checkpassword-reply terms).
pub const EXIT_LOOKUP_OK: i32 = 2;
/// Exit code: unknown user (lookup mode).
pub const EXIT_LOOKUP_UNKNOWN: i32 = 3;
/// Exit code: temporary failure.
pub const EXIT_TEMPFAIL: i32 = 111;

/// The parsed fd-3 input.
#[derive(Debug, Clone)]
pub struct CheckpasswordRequest {
    /// The user name as Dovecot sends it (already `auth_username_format`ed,
    /// lower-case by default).
    pub user: String,
    /// The cleartext password; empty for lookups.
    pub password: Secret,
}

/// Why the fd-3 input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// More than [`MAX_REQUEST_LEN`] bytes.
    #[error("checkpassword input is {0} bytes, more than 512")]
    TooLong(usize),
    /// Nothing at all on fd 3.
    #[error("checkpassword input is empty")]
    Empty,
    /// No NUL after the user name: not what Dovecot writes (it ends every
    /// field with one), so the name may be cut short.
    #[error("checkpassword input has no NUL after the user name")]
    Unterminated,
    /// The user field is empty.
    #[error("checkpassword user name is empty")]
    EmptyUser,
    /// The user field is not UTF-8.
    #[error("checkpassword user name is not valid UTF-8")]
    UserNotUtf8,
}

impl RequestError {
    /// What to answer for this error: a protocol error is a temporary
    /// failure, a user name that cannot exist is "unknown" (module doc).
    pub fn outcome(&self) -> Outcome {
        match self {
            RequestError::TooLong(_) | RequestError::Empty | RequestError::Unterminated => {
                Outcome::TempFail
            }
            RequestError::EmptyUser | RequestError::UserNotUtf8 => Outcome::Unknown,
        }
    }
}

/// Reads the fd-3 input to EOF, but never more than one byte past
/// [`MAX_REQUEST_LEN`]: enough for [`parse_request`] to see that it is too
/// long, without letting a runaway writer fill memory.
pub fn read_input(reader: impl Read) -> io::Result<Vec<u8>> {
    let mut input = Vec::with_capacity(MAX_REQUEST_LEN + 1);
    reader
        .take(MAX_REQUEST_LEN as u64 + 1)
        .read_to_end(&mut input)?;
    Ok(input)
}

/// Parses the bytes read from fd 3: `user\0password\0timestamp\0…`.
pub fn parse_request(input: &[u8]) -> Result<CheckpasswordRequest, RequestError> {
    if input.len() > MAX_REQUEST_LEN {
        return Err(RequestError::TooLong(input.len()));
    }
    if input.is_empty() {
        return Err(RequestError::Empty);
    }
    if !input.contains(&0) {
        return Err(RequestError::Unterminated);
    }
    let mut fields = input.splitn(3, |&b| b == 0);
    let user = fields.next().unwrap_or_default();
    let password = fields.next().unwrap_or_default();
    if user.is_empty() {
        return Err(RequestError::EmptyUser);
    }
    let user = std::str::from_utf8(user).map_err(|_| RequestError::UserNotUtf8)?;
    Ok(CheckpasswordRequest {
        user: user.to_owned(),
        password: Secret::new(password),
    })
}

/// Which call this is, from the environment Dovecot sets (§1.4, §1.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Plaintext login: check the password (`AUTHORIZED` unset).
    Verify,
    /// A master user's login as this user (`AUTHORIZED` unset,
    /// `MASTER_USER=<master>`): Dovecot has checked the master's password
    /// in the master passdb, which has `pass = yes`, and asks this passdb
    /// whether the user exists and may log in. It sets the variable only
    /// then (`checkpassword_setup_env` in
    /// core@2.3.19.1:src/auth/db-checkpassword.c; `master_user` is filled
    /// in after the master passdb succeeded), and it passes the master's
    /// password, which no user's hash matches: the password is not checked.
    MasterLogin {
        /// The master user's name, for the log.
        master: String,
    },
    /// passdb credentials lookup for a non-plaintext mechanism
    /// (`AUTHORIZED=1 CREDENTIALS_LOOKUP=1 SCHEME=<scheme>`): reply with
    /// `password={SCHEME}…`.
    CredentialsLookup {
        /// The scheme the mechanism wants, e.g. `CRAM-MD5`.
        scheme: String,
    },
    /// passdb lookup without authentication (`doveadm auth lookup`,
    /// proxying): `AUTHORIZED=1 CREDENTIALS_LOOKUP=1` and an empty `SCHEME`
    /// (VERIFIED on 2.3.19.1, contrary to the 2.3 docs).
    PassdbLookup,
    /// userdb lookup (LMTP, LDA, `doveadm user`): `AUTHORIZED=1` without
    /// `CREDENTIALS_LOOKUP`.
    UserdbLookup,
}

impl Mode {
    /// Decides the mode with `get` reading an environment variable (use
    /// `|k| std::env::var_os(k)` in the binary). A variable set to the empty
    /// string counts as unset for `AUTHORIZED` and `CREDENTIALS_LOOKUP`.
    pub fn from_env<F, V>(get: F) -> Mode
    where
        F: Fn(&str) -> Option<V>,
        V: AsRef<std::ffi::OsStr>,
    {
        let set = |name: &str| get(name).is_some_and(|v| !v.as_ref().is_empty());
        if !set("AUTHORIZED") {
            return match get("MASTER_USER") {
                Some(m) if !m.as_ref().is_empty() => Mode::MasterLogin {
                    master: m.as_ref().to_string_lossy().into_owned(),
                },
                _ => Mode::Verify,
            };
        }
        if !set("CREDENTIALS_LOOKUP") {
            return Mode::UserdbLookup;
        }
        let scheme = get("SCHEME")
            .map(|v| v.as_ref().to_string_lossy().into_owned())
            .unwrap_or_default();
        if scheme.is_empty() {
            Mode::PassdbLookup
        } else {
            Mode::CredentialsLookup { scheme }
        }
    }

    /// Whether this is one of the lookup modes (exit 2/3 instead of 0/1).
    pub fn is_lookup(&self) -> bool {
        !matches!(self, Mode::Verify | Mode::MasterLogin { .. })
    }
}

/// How a call ended, before it becomes an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Password correct (verify) or user found (lookups); fd 4 holds the
    /// reply.
    Success,
    /// Wrong password (verify only).
    Mismatch,
    /// No such user.
    Unknown,
    /// Database or protocol trouble: try again later.
    TempFail,
}

impl Outcome {
    /// The exit code for this outcome in `mode`, per the table in §1.7
    /// (core@2.3.19.1:src/auth/db-checkpassword.c,
    /// `checkpassword_request_finish_auth` / `…_finish_lookup`):
    ///
    /// | outcome  | verify | lookup |
    /// |----------|--------|--------|
    /// | Success  | 0      | 2      |
    /// | Mismatch | 1      | 111    |
    /// | Unknown  | 1      | 3      |
    /// | TempFail | 111    | 111    |
    ///
    /// Mismatch cannot happen in a lookup (there is no password); should a
    /// caller report it anyway, 111 keeps it a temporary failure, which is
    /// what Dovecot makes of exit 1 in lookup mode too.
    pub fn exit_code(self, mode: &Mode) -> i32 {
        match (self, mode.is_lookup()) {
            (Outcome::Success, false) => EXIT_VERIFY_OK,
            (Outcome::Success, true) => EXIT_LOOKUP_OK,
            (Outcome::Mismatch | Outcome::Unknown, false) => EXIT_MISMATCH,
            (Outcome::Unknown, true) => EXIT_LOOKUP_UNKNOWN,
            (Outcome::Mismatch, true) | (Outcome::TempFail, _) => EXIT_TEMPFAIL,
        }
    }
}

/// Why a reply could not be formatted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// No fields: Dovecot treats an empty fd-4 buffer with a success exit
    /// code as an internal failure ("Received no input").
    #[error("checkpassword reply has no fields")]
    Empty,
    /// A key Dovecot would mis-split (see [`tabescape::is_valid_key`]).
    #[error("invalid checkpassword reply field name {0:?}")]
    InvalidKey(String),
}

/// Formats the fd-4 reply: `key=value` pairs joined by TAB, values
/// tab-escaped, so the buffer holds no LF and no NUL (Dovecot refuses
/// either, §1.6).
///
/// What to put in it: `user=` (canonical name) and `userdb_uid`,
/// `userdb_gid`, `userdb_home`, … in every mode (the userdb side reads only
/// `userdb_*` fields), plus `password={SCHEME}hash` for a credentials
/// lookup. [`userdb_fields`] adds the prefix to plain userdb field names.
pub fn write_reply<K, V>(fields: &[(K, V)]) -> Result<Vec<u8>, ReplyError>
where
    K: AsRef<str>,
    V: AsRef<[u8]>,
{
    if fields.is_empty() {
        return Err(ReplyError::Empty);
    }
    let mut out = Vec::new();
    for (key, value) in fields {
        let key = key.as_ref();
        if !tabescape::is_valid_key(key) {
            return Err(ReplyError::InvalidKey(key.to_owned()));
        }
        tabescape::push_field(&mut out, key, value.as_ref());
    }
    Ok(out)
}

/// Prefixes userdb field names (`uid`, `home`, `quota_rule`) with
/// `userdb_`, leaving names that already carry it alone, because the
/// checkpassword userdb applies only `userdb_*` fields
/// (core@2.3.19.1:src/auth/userdb-checkpassword.c).
pub fn userdb_fields<K, V>(fields: &[(K, V)]) -> Vec<(String, String)>
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    fields
        .iter()
        .map(|(k, v)| {
            let k = k.as_ref();
            let key = if k.starts_with("userdb_") {
                k.to_owned()
            } else {
                format!("userdb_{k}")
            };
            (key, v.as_ref().to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    // ---- parse_request, literal fd-3 bytes VERIFIED on 2.3.19.1 (§1.3)

    #[test]
    fn parses_login_request() {
        let r = parse_request(b"alice\x00secret\x00\x00").expect("valid request");
        assert_eq!(r.user, "alice");
        assert_eq!(r.password.expose(), b"secret");
    }

    #[test]
    fn parses_lookup_request_with_empty_password() {
        let r = parse_request(b"alice\x00\x00\x00").expect("valid request");
        assert_eq!(r.user, "alice");
        assert!(r.password.is_empty());
    }

    #[test]
    fn tolerates_missing_trailing_fields() {
        let r = parse_request(b"alice\x00secret").expect("no timestamp field");
        assert_eq!(r.password.expose(), b"secret");
        let r = parse_request(b"alice\x00").expect("no password field");
        assert!(r.password.is_empty());
        // No NUL at all: the user name may be cut short, so it is not
        // looked up (an "unknown" would make LMTP bounce the mail).
        let e = parse_request(b"nobody@barrera.io").map(|_| ()).unwrap_err();
        assert_eq!(e, RequestError::Unterminated);
        assert_eq!(e.outcome(), Outcome::TempFail);
    }

    #[test]
    fn password_may_hold_any_bytes_but_nul() {
        let r = parse_request(b"bob@example.org\x00p\xe4ss\tw=rd\x00\x00").expect("valid");
        assert_eq!(r.password.expose(), b"p\xe4ss\tw=rd");
    }

    #[test]
    fn extra_fields_are_ignored() {
        let r = parse_request(b"alice\x00pw\x00ts\x00more\x00").expect("valid");
        assert_eq!(r.password.expose(), b"pw");
    }

    #[test]
    fn rejects_bad_input() {
        let long = [b'a'; 513];
        assert_eq!(parse_request(&long).err(), Some(RequestError::TooLong(513)));
        let mut full = [b'a'; 512];
        full[511] = 0;
        assert!(parse_request(&full).is_ok());
        assert_eq!(parse_request(b"").err(), Some(RequestError::Empty));
        assert_eq!(
            parse_request(b"\x00pw\x00\x00").err(),
            Some(RequestError::EmptyUser)
        );
        assert_eq!(
            parse_request(b"\xffalice\x00pw\x00\x00").err(),
            Some(RequestError::UserNotUtf8)
        );
    }

    #[test]
    fn request_errors_map_to_outcomes() {
        assert_eq!(RequestError::TooLong(600).outcome(), Outcome::TempFail);
        assert_eq!(RequestError::Empty.outcome(), Outcome::TempFail);
        assert_eq!(RequestError::EmptyUser.outcome(), Outcome::Unknown);
        assert_eq!(RequestError::UserNotUtf8.outcome(), Outcome::Unknown);
    }

    #[test]
    fn request_debug_redacts_password() {
        let r = parse_request(b"alice\x00hunter2\x00\x00").expect("valid");
        let shown = format!("{r:?}");
        assert!(shown.contains("alice"));
        assert!(shown.contains("<redacted>"));
        assert!(!shown.contains("hunter2"));
    }

    #[test]
    fn read_input_stops_one_byte_past_the_cap() {
        let big = vec![b'a'; 4096];
        let input = read_input(&big[..]).expect("reading a slice cannot fail");
        assert_eq!(input.len(), MAX_REQUEST_LEN + 1);
        assert_eq!(
            parse_request(&input).err(),
            Some(RequestError::TooLong(513))
        );
        let input = read_input(&b"alice\x00pw\x00\x00"[..]).expect("reading a slice cannot fail");
        assert_eq!(input, b"alice\x00pw\x00\x00".to_vec());
    }

    // ---- Mode::from_env, the four calls of §1.5

    #[test]
    fn mode_verify_without_authorized() {
        assert_eq!(Mode::from_env(env(&[("SERVICE", "imap")])), Mode::Verify);
        assert_eq!(Mode::from_env(env(&[("AUTHORIZED", "")])), Mode::Verify);
    }

    #[test]
    fn mode_master_login_in_verify_mode_only() {
        assert_eq!(
            Mode::from_env(env(&[("MASTER_USER", "admin"), ("SERVICE", "imap")])),
            Mode::MasterLogin {
                master: "admin".into()
            }
        );
        assert!(!Mode::MasterLogin {
            master: "admin".into()
        }
        .is_lookup());
        assert_eq!(Mode::from_env(env(&[("MASTER_USER", "")])), Mode::Verify);
        // A lookup made for a master login is a lookup.
        assert_eq!(
            Mode::from_env(env(&[("MASTER_USER", "admin"), ("AUTHORIZED", "1")])),
            Mode::UserdbLookup
        );
    }

    #[test]
    fn mode_credentials_lookup() {
        assert_eq!(
            Mode::from_env(env(&[
                ("AUTHORIZED", "1"),
                ("CREDENTIALS_LOOKUP", "1"),
                ("SCHEME", "CRAM-MD5")
            ])),
            Mode::CredentialsLookup {
                scheme: "CRAM-MD5".into()
            }
        );
    }

    #[test]
    fn mode_passdb_lookup_has_empty_scheme() {
        assert_eq!(
            Mode::from_env(env(&[
                ("AUTHORIZED", "1"),
                ("CREDENTIALS_LOOKUP", "1"),
                ("SCHEME", "")
            ])),
            Mode::PassdbLookup
        );
        assert_eq!(
            Mode::from_env(env(&[("AUTHORIZED", "1"), ("CREDENTIALS_LOOKUP", "1")])),
            Mode::PassdbLookup
        );
    }

    #[test]
    fn mode_userdb_lookup() {
        assert_eq!(
            Mode::from_env(env(&[("AUTHORIZED", "1"), ("SERVICE", "lmtp")])),
            Mode::UserdbLookup
        );
    }

    #[test]
    fn from_env_reads_os_strings() {
        let get = |k: &str| (k == "AUTHORIZED").then(|| std::ffi::OsString::from("1"));
        assert_eq!(Mode::from_env(get), Mode::UserdbLookup);
    }

    // ---- exit codes, §1.7

    #[test]
    fn exit_codes_in_verify_mode() {
        let m = Mode::Verify;
        assert_eq!(Outcome::Success.exit_code(&m), 0);
        assert_eq!(Outcome::Mismatch.exit_code(&m), 1);
        assert_eq!(Outcome::Unknown.exit_code(&m), 1);
        assert_eq!(Outcome::TempFail.exit_code(&m), 111);
    }

    #[test]
    fn exit_codes_in_lookup_modes() {
        for m in [
            Mode::UserdbLookup,
            Mode::PassdbLookup,
            Mode::CredentialsLookup {
                scheme: "PLAIN".into(),
            },
        ] {
            assert_eq!(Outcome::Success.exit_code(&m), 2);
            assert_eq!(Outcome::Unknown.exit_code(&m), 3);
            assert_eq!(Outcome::TempFail.exit_code(&m), 111);
            assert_eq!(Outcome::Mismatch.exit_code(&m), 111);
        }
    }

    // ---- write_reply, the fd-4 bytes of §1.6

    #[test]
    fn writes_verified_reply_shape() {
        let reply = write_reply(&[
            ("user", "alice@example.org"),
            ("userdb_uid", "1000"),
            ("userdb_gid", "1000"),
            ("userdb_home", "/var/vmail/example.org/alice"),
        ])
        .expect("valid fields");
        assert_eq!(
            reply,
            b"user=alice@example.org\tuserdb_uid=1000\tuserdb_gid=1000\tuserdb_home=/var/vmail/example.org/alice"
                .to_vec()
        );
    }

    #[test]
    fn reply_values_are_escaped_and_hold_no_lf_or_nul() {
        let reply = write_reply(&[
            ("password", &b"{PLAIN}se\tcr\net\x00"[..]),
            ("userdb_quota_rule", b"*:storage=1G"),
        ])
        .expect("valid fields");
        assert_eq!(
            reply,
            b"password={PLAIN}se\x01tcr\x01net\x010\tuserdb_quota_rule=*:storage=1G".to_vec()
        );
        assert!(!reply.contains(&b'\n'));
        assert!(!reply.contains(&0));
    }

    #[test]
    fn reply_refuses_empty_and_bad_keys() {
        let none: [(&str, &str); 0] = [];
        assert_eq!(write_reply(&none), Err(ReplyError::Empty));
        assert_eq!(
            write_reply(&[("a=b", "x")]),
            Err(ReplyError::InvalidKey("a=b".into()))
        );
        assert_eq!(
            write_reply(&[("", "x")]),
            Err(ReplyError::InvalidKey("".into()))
        );
    }

    #[test]
    fn userdb_fields_get_the_prefix_once() {
        assert_eq!(
            userdb_fields(&[("uid", "5000"), ("userdb_gid", "5000"), ("home", "/h")]),
            vec![
                ("userdb_uid".to_string(), "5000".to_string()),
                ("userdb_gid".to_string(), "5000".to_string()),
                ("userdb_home".to_string(), "/h".to_string()),
            ]
        );
    }
}
