//! The Dovecot dict proxy protocol, pure: [`parse_command`] turns one
//! line into a [`Command`], [`write_reply`] turns a [`Reply`] into bytes.
//! No sockets and no state here; the per-connection state machine and the
//! connection loop are in [`super::session`].
//!
//! Every field is tab-escaped ([`crate::tabescape`]); a line is split on
//! TAB first and each field unescaped afterwards, as Dovecot does
//! (core@2.3.19.1:src/lib-dict/dict-client.h, reference §2.3, §2.4).
//!
//! The decision a reader would question: transaction commands (`B S U A T
//! V R`) are parsed in full although this server is read-only and ignores
//! them. A line that does not parse is answered differently from one that
//! does (see `session.rs`), so the parser must know their exact shape.

use crate::tabescape;

/// Longest accepted command line, without its LF (64 KiB).
pub const MAX_LINE_LENGTH: usize = 64 * 1024;

/// Protocol major versions this server speaks: 3 (Dovecot 2.3.17 to 2.3.21)
/// and 4 (Dovecot 2.4).
pub const SUPPORTED_MAJOR_VERSIONS: [u32; 2] = [3, 4];

/// Iterate flag: return keys only, no values (`DICT_ITERATE_FLAG_NO_VALUE`).
pub const ITERATE_FLAG_NO_VALUE: u32 = 0x08;
/// Iterate flag: sort rows by key.
pub const ITERATE_FLAG_SORT_BY_KEY: u32 = 0x02;
/// Iterate flag: sort rows by value.
pub const ITERATE_FLAG_SORT_BY_VALUE: u32 = 0x04;

/// Error text of the `F` reply to a commit.
pub const READ_ONLY_ERROR: &str = "mailtable dict is read-only";

/// One parsed client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `H<major>⇥<minor>⇥<value_type>⇥<user>⇥<dict_name>`; never answered.
    Hello {
        /// Protocol major version (3 or 4 are served).
        major: u32,
        /// Protocol minor version (informational).
        minor: u32,
        /// Requested value type: 0 string, 1 uint32 (auth sends 0).
        value_type: u32,
        /// The dict name from the client's URI or `dict_proxy_name`.
        dict_name: String,
    },
    /// `L<key>⇥<user>`.
    Lookup {
        /// Full key, e.g. `shared/passdb/alice@example.org`.
        key: String,
        /// User the lookup is made for; may be empty.
        user: String,
    },
    /// `I<flags>⇥<max_rows>⇥<path>⇥<user>`.
    Iterate {
        /// `ITERATE_FLAG_*` bits.
        flags: u32,
        /// Row limit; 0 is unlimited.
        max_rows: u64,
        /// Key prefix, e.g. `shared/userdb/`.
        path: String,
        /// User the iteration is made for; may be empty.
        user: String,
    },
    /// `B<id>⇥<user>` (v3) or `B<id>⇥<user>⇥<expire_secs>` (v4).
    Begin {
        /// Transaction id, scoped to the connection.
        id: u32,
        /// Transaction user.
        user: String,
        /// v4 only: expiry of the values set in this transaction.
        expire_secs: Option<u32>,
    },
    /// `S<id>⇥<key>⇥<value>`.
    Set {
        /// Transaction id.
        id: u32,
        /// Key.
        key: String,
        /// Value.
        value: String,
    },
    /// `U<id>⇥<key>`.
    Unset {
        /// Transaction id.
        id: u32,
        /// Key.
        key: String,
    },
    /// `A<id>⇥<key>⇥<diff>`.
    AtomicInc {
        /// Transaction id.
        id: u32,
        /// Key.
        key: String,
        /// Signed increment.
        diff: i64,
    },
    /// `T<id>⇥<sec>⇥<nsec>`.
    Timestamp {
        /// Transaction id.
        id: u32,
        /// Seconds.
        sec: u64,
        /// Nanoseconds.
        nsec: u32,
    },
    /// `V<id>⇥yes|no` (v4).
    HideLogValues {
        /// Transaction id.
        id: u32,
        /// Whether values are hidden from logs.
        hide: bool,
    },
    /// `C<id>`; answered.
    Commit {
        /// Transaction id.
        id: u32,
    },
    /// `D<id>` (v3 async commit); answered with an `A`-prefixed reply.
    CommitAsync {
        /// Transaction id.
        id: u32,
    },
    /// `R<id>`.
    Rollback {
        /// Transaction id.
        id: u32,
    },
}

/// Why a line is not a valid command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DictError {
    /// The line is empty.
    #[error("empty command line")]
    Empty,
    /// The first byte is no command letter this protocol knows.
    #[error("unknown command {0:?}")]
    UnknownCommand(char),
    /// Too few or too many fields.
    #[error("{cmd}: broken input: expected {expected}")]
    Broken {
        /// The command letter.
        cmd: char,
        /// What the fields should have looked like.
        expected: &'static str,
    },
    /// A numeric field is not a number.
    #[error("{cmd}: invalid {field} {value:?}")]
    InvalidNumber {
        /// The command letter.
        cmd: char,
        /// Which field.
        field: &'static str,
        /// The field as received (lossily decoded).
        value: String,
    },
    /// A key, value or name is not UTF-8.
    #[error("{cmd}: {field} is not valid UTF-8")]
    NotUtf8 {
        /// The command letter.
        cmd: char,
        /// Which field.
        field: &'static str,
    },
}

impl DictError {
    /// The command letter the bad line started with, if it was a known one.
    pub fn command(&self) -> Option<char> {
        match self {
            DictError::Empty | DictError::UnknownCommand(_) => None,
            DictError::Broken { cmd, .. }
            | DictError::InvalidNumber { cmd, .. }
            | DictError::NotUtf8 { cmd, .. } => Some(*cmd),
        }
    }
}

/// Parses one command line (without its LF).
///
/// The line is split on TAB first and each field unescaped afterwards, as
/// Dovecot does; the command letter is glued to the first field.
pub fn parse_command(line: &[u8]) -> Result<Command, DictError> {
    let (&letter, rest) = line.split_first().ok_or(DictError::Empty)?;
    let f = Fields {
        cmd: char::from(letter),
        fields: tabescape::split(rest),
    };
    match letter {
        b'H' => parse_hello(&f),
        b'L' | b'I' => parse_query(letter, &f),
        b'B' | b'S' | b'U' | b'A' | b'T' | b'V' | b'C' | b'D' | b'R' => {
            parse_transaction(letter, &f)
        }
        _ => Err(DictError::UnknownCommand(f.cmd)),
    }
}

/// The unescaped fields after the command letter, with typed accessors
/// whose errors name the command and the field.
struct Fields {
    cmd: char,
    fields: Vec<Vec<u8>>,
}

impl Fields {
    fn len(&self) -> usize {
        self.fields.len()
    }

    /// Field `i`, empty when absent.
    fn raw(&self, i: usize) -> &[u8] {
        self.fields.get(i).map(Vec::as_slice).unwrap_or_default()
    }

    fn text(&self, i: usize, field: &'static str) -> Result<String, DictError> {
        String::from_utf8(self.raw(i).to_vec()).map_err(|_| DictError::NotUtf8 {
            cmd: self.cmd,
            field,
        })
    }

    /// Field `i` as text, U+FFFD for what is not UTF-8.
    fn lossy(&self, i: usize) -> String {
        String::from_utf8_lossy(self.raw(i)).into_owned()
    }

    fn number(&self, i: usize, field: &'static str) -> Result<u64, DictError> {
        let raw = self.raw(i);
        parse_uint(raw).ok_or_else(|| DictError::InvalidNumber {
            cmd: self.cmd,
            field,
            value: String::from_utf8_lossy(raw).into_owned(),
        })
    }

    fn number_u32(&self, i: usize, field: &'static str) -> Result<u32, DictError> {
        let v = self.number(i, field)?;
        u32::try_from(v).map_err(|_| DictError::InvalidNumber {
            cmd: self.cmd,
            field,
            value: v.to_string(),
        })
    }

    fn broken(&self, expected: &'static str) -> DictError {
        DictError::Broken {
            cmd: self.cmd,
            expected,
        }
    }
}

/// `H`: the handshake.
fn parse_hello(f: &Fields) -> Result<Command, DictError> {
    // Dovecot requires at least five fields and ignores the rest
    // (dict-connection.c `dict_connection_handshake_args`).
    if f.len() < 5 {
        return Err(f.broken("H<major>\\t<minor>\\t<value_type>\\t<user>\\t<name>"));
    }
    Ok(Command::Hello {
        major: f.number_u32(0, "major version")?,
        minor: f.number_u32(1, "minor version")?,
        value_type: f.number_u32(2, "value type")?,
        dict_name: f.text(4, "dict name")?,
    })
}

/// `L` and `I`: the commands that read, each owed a reply.
fn parse_query(letter: u8, f: &Fields) -> Result<Command, DictError> {
    match letter {
        b'L' => {
            // `L<key>` without a user field is accepted with an empty user,
            // as Dovecot's server reads args[1] as NULL there.
            if f.len() > 2 {
                return Err(f.broken("L<key>\\t<user>"));
            }
            // A key that is not UTF-8 (a Latin-1 login, with Dovecot's
            // `auth_username_chars` empty) is nobody's: read with U+FFFD
            // for its bad bytes, which no address holds, it is looked up
            // and not found, as checkpassword and the HTTP API answer it.
            Ok(Command::Lookup {
                key: f.lossy(0),
                user: f.lossy(1),
            })
        }
        b'I' => {
            if !(3..=4).contains(&f.len()) {
                return Err(f.broken("I<flags>\\t<max_rows>\\t<path>\\t<user>"));
            }
            Ok(Command::Iterate {
                flags: f.number_u32(0, "flags")?,
                max_rows: f.number(1, "max_rows")?,
                path: f.text(2, "path")?,
                user: f.text(3, "user")?,
            })
        }
        _ => Err(DictError::UnknownCommand(f.cmd)),
    }
}

/// The transaction commands; only `C` and `D` are owed a reply.
fn parse_transaction(letter: u8, f: &Fields) -> Result<Command, DictError> {
    match letter {
        b'B' => {
            if !(2..=3).contains(&f.len()) {
                return Err(f.broken("B<id>\\t<user>[\\t<expire_secs>]"));
            }
            let expire_secs = if f.len() == 3 {
                Some(f.number_u32(2, "expire_secs")?)
            } else {
                None
            };
            Ok(Command::Begin {
                id: f.number_u32(0, "transaction id")?,
                user: f.text(1, "user")?,
                expire_secs,
            })
        }
        b'S' => {
            if f.len() != 3 {
                return Err(f.broken("S<id>\\t<key>\\t<value>"));
            }
            Ok(Command::Set {
                id: f.number_u32(0, "transaction id")?,
                key: f.text(1, "key")?,
                value: f.text(2, "value")?,
            })
        }
        b'U' => {
            if f.len() != 2 {
                return Err(f.broken("U<id>\\t<key>"));
            }
            Ok(Command::Unset {
                id: f.number_u32(0, "transaction id")?,
                key: f.text(1, "key")?,
            })
        }
        b'A' => {
            if f.len() != 3 {
                return Err(f.broken("A<id>\\t<key>\\t<diff>"));
            }
            let raw = f.raw(2);
            let diff = std::str::from_utf8(raw)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(|| DictError::InvalidNumber {
                    cmd: f.cmd,
                    field: "diff",
                    value: String::from_utf8_lossy(raw).into_owned(),
                })?;
            Ok(Command::AtomicInc {
                id: f.number_u32(0, "transaction id")?,
                key: f.text(1, "key")?,
                diff,
            })
        }
        b'T' => {
            if f.len() != 3 {
                return Err(f.broken("T<id>\\t<sec>\\t<nsec>"));
            }
            Ok(Command::Timestamp {
                id: f.number_u32(0, "transaction id")?,
                sec: f.number(1, "seconds")?,
                nsec: f.number_u32(2, "nanoseconds")?,
            })
        }
        b'V' => {
            if f.len() != 2 {
                return Err(f.broken("V<id>\\t<yes|no>"));
            }
            let hide = match f.raw(1) {
                b"yes" => true,
                b"no" => false,
                _ => return Err(f.broken("V<id>\\t<yes|no>")),
            };
            Ok(Command::HideLogValues {
                id: f.number_u32(0, "transaction id")?,
                hide,
            })
        }
        b'C' | b'D' | b'R' => {
            if f.len() != 1 {
                return Err(f.broken("<letter><id>"));
            }
            let id = f.number_u32(0, "transaction id")?;
            Ok(match letter {
                b'C' => Command::Commit { id },
                b'D' => Command::CommitAsync { id },
                _ => Command::Rollback { id },
            })
        }
        _ => Err(DictError::UnknownCommand(f.cmd)),
    }
}

/// Strict unsigned decimal: digits only, no sign, no spaces, no overflow
/// (like Dovecot's `str_to_uint`).
fn parse_uint(raw: &[u8]) -> Option<u64> {
    if raw.is_empty() || !raw.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(raw).ok()?.parse().ok()
}

/// The answer to a lookup, from a [`DictBackend`](super::DictBackend).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The key exists; the value (for auth: one flat JSON object).
    Found(String),
    /// The key does not exist (auth: user unknown).
    NotFound,
    /// The lookup could not be answered (auth: temporary failure). The text
    /// goes to Dovecot's log.
    Failed(String),
}

/// The result of a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitResult<'a> {
    /// Committed (`O<id>`).
    Ok,
    /// Nothing to change (`N<id>`).
    NotFound,
    /// Failed (`F<id>⇥<error>`).
    Failed(&'a str),
    /// Maybe written (`W<id>⇥<error>`).
    WriteUncertain(&'a str),
}

/// One server reply line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply<'a> {
    /// The reply to `L`: `O<value>`, `N` or `F<error>`.
    Lookup(&'a Lookup),
    /// One iteration row: `O<key>⇥<value>`, or `O<key>⇥` without values
    /// (the TAB is mandatory, §2.5).
    IterateRow {
        /// Full key.
        key: &'a str,
        /// The value, or `None` for `ITERATE_FLAG_NO_VALUE`.
        value: Option<&'a str>,
    },
    /// End of an iteration: an empty line.
    IterateEnd,
    /// A failed iteration: `F<error>` (also ends it).
    IterateFailed(&'a str),
    /// The reply to `C` (or `D`, with `async_commit`, prefixed `A`).
    Commit {
        /// Transaction id echoed back.
        id: u32,
        /// Whether this answers a `D` (2.3 async commit).
        async_commit: bool,
        /// Outcome.
        result: CommitResult<'a>,
    },
}

/// Appends `reply` and its LF to `out`; every value is tab-escaped.
pub fn write_reply(reply: &Reply<'_>, out: &mut Vec<u8>) {
    match reply {
        Reply::Lookup(Lookup::Found(value)) => {
            out.push(b'O');
            tabescape::escape_into(out, value.as_bytes());
        }
        Reply::Lookup(Lookup::NotFound) => out.push(b'N'),
        Reply::Lookup(Lookup::Failed(error)) => {
            out.push(b'F');
            tabescape::escape_into(out, error.as_bytes());
        }
        Reply::IterateFailed(error) => {
            out.push(b'F');
            tabescape::escape_into(out, error.as_bytes());
        }
        Reply::IterateRow { key, value } => {
            out.push(b'O');
            tabescape::escape_into(out, key.as_bytes());
            out.push(b'\t');
            if let Some(value) = value {
                tabescape::escape_into(out, value.as_bytes());
            }
        }
        Reply::IterateEnd => {}
        Reply::Commit {
            id,
            async_commit,
            result,
        } => {
            if *async_commit {
                out.push(b'A');
            }
            let (letter, error) = match result {
                CommitResult::Ok => (b'O', None),
                CommitResult::NotFound => (b'N', None),
                CommitResult::Failed(e) => (b'F', Some(e)),
                CommitResult::WriteUncertain(e) => (b'W', Some(e)),
            };
            out.push(letter);
            out.extend_from_slice(id.to_string().as_bytes());
            if let Some(error) = error {
                out.push(b'\t');
                tabescape::escape_into(out, error.as_bytes());
            }
        }
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    // ---- parse_command, literal lines from dovecot-auth-protocols.md §2.4

    #[test]
    fn parses_v3_hello() {
        assert_eq!(
            parse_command(b"H3\t2\t0\t\tauthdict"),
            Ok(Command::Hello {
                major: 3,
                minor: 2,
                value_type: 0,
                dict_name: "authdict".into()
            })
        );
    }

    #[test]
    fn parses_v4_hello() {
        assert_eq!(
            parse_command(b"H4\t0\t0\t\tmailtable"),
            Ok(Command::Hello {
                major: 4,
                minor: 0,
                value_type: 0,
                dict_name: "mailtable".into()
            })
        );
    }

    #[test]
    fn hello_needs_five_fields() {
        assert!(matches!(
            parse_command(b"H3\t2\t0"),
            Err(DictError::Broken { cmd: 'H', .. })
        ));
        assert!(matches!(
            parse_command(b"Hx\t2\t0\t\tauth"),
            Err(DictError::InvalidNumber { cmd: 'H', .. })
        ));
    }

    #[test]
    fn parses_lookup_with_and_without_user() {
        assert_eq!(
            parse_command(b"Lshared/passdb/alice\talice"),
            Ok(Command::Lookup {
                key: "shared/passdb/alice".into(),
                user: "alice".into()
            })
        );
        assert_eq!(
            parse_command(b"Lshared/userdb/bob"),
            Ok(Command::Lookup {
                key: "shared/userdb/bob".into(),
                user: "".into()
            })
        );
    }

    #[test]
    fn lookup_fields_are_unescaped_after_splitting() {
        assert_eq!(
            parse_command(b"Lshared/passdb/a\x01tb\ta\x01tb"),
            Ok(Command::Lookup {
                key: "shared/passdb/a\tb".into(),
                user: "a\tb".into()
            })
        );
    }

    #[test]
    fn parses_iterate() {
        assert_eq!(
            parse_command(b"I0\t0\tshared/userdb/\t*"),
            Ok(Command::Iterate {
                flags: 0,
                max_rows: 0,
                path: "shared/userdb/".into(),
                user: "*".into()
            })
        );
        assert!(matches!(
            parse_command(b"I-1\t0\tshared/userdb/\t*"),
            Err(DictError::InvalidNumber { cmd: 'I', .. })
        ));
    }

    #[test]
    fn parses_begin_v3_and_v4() {
        assert_eq!(
            parse_command(b"B1\talice"),
            Ok(Command::Begin {
                id: 1,
                user: "alice".into(),
                expire_secs: None
            })
        );
        assert_eq!(
            parse_command(b"B7\t\t0"),
            Ok(Command::Begin {
                id: 7,
                user: "".into(),
                expire_secs: Some(0)
            })
        );
    }

    #[test]
    fn parses_transaction_commands() {
        assert_eq!(
            parse_command(b"S1\tpriv/quota/storage\t42"),
            Ok(Command::Set {
                id: 1,
                key: "priv/quota/storage".into(),
                value: "42".into()
            })
        );
        assert_eq!(
            parse_command(b"U1\tpriv/x"),
            Ok(Command::Unset {
                id: 1,
                key: "priv/x".into()
            })
        );
        assert_eq!(
            parse_command(b"A1\tpriv/quota/messages\t-3"),
            Ok(Command::AtomicInc {
                id: 1,
                key: "priv/quota/messages".into(),
                diff: -3
            })
        );
        assert_eq!(
            parse_command(b"T1\t1700000000\t500"),
            Ok(Command::Timestamp {
                id: 1,
                sec: 1_700_000_000,
                nsec: 500
            })
        );
        assert_eq!(
            parse_command(b"V1\tyes"),
            Ok(Command::HideLogValues { id: 1, hide: true })
        );
        assert_eq!(parse_command(b"C1"), Ok(Command::Commit { id: 1 }));
        assert_eq!(parse_command(b"D2"), Ok(Command::CommitAsync { id: 2 }));
        assert_eq!(parse_command(b"R3"), Ok(Command::Rollback { id: 3 }));
    }

    #[test]
    fn rejects_bad_lines() {
        assert_eq!(parse_command(b""), Err(DictError::Empty));
        assert_eq!(parse_command(b"Zfoo"), Err(DictError::UnknownCommand('Z')));
        assert!(matches!(
            parse_command(b"C"),
            Err(DictError::InvalidNumber { cmd: 'C', .. })
        ));
        assert!(matches!(
            parse_command(b"C1\textra"),
            Err(DictError::Broken { cmd: 'C', .. })
        ));
        assert!(matches!(
            parse_command(b"V1\tmaybe"),
            Err(DictError::Broken { cmd: 'V', .. })
        ));
        assert!(matches!(
            parse_command(b"C99999999999"),
            Err(DictError::InvalidNumber { cmd: 'C', .. })
        ));
        // A key that is not UTF-8 is nobody's, not a broken line.
        assert!(matches!(
            parse_command(b"Lshared/passdb/j\xfcrgen@x.org\tj\xfcrgen@x.org"),
            Ok(Command::Lookup { key, user })
                if key == "shared/passdb/j\u{fffd}rgen@x.org" && user == "j\u{fffd}rgen@x.org"
        ));
        assert!(matches!(
            parse_command(b"Lkey\tuser\tmore"),
            Err(DictError::Broken { cmd: 'L', .. })
        ));
    }

    #[test]
    fn parse_never_panics_on_odd_bytes() {
        for line in [
            &b"\x00"[..],
            b"\x01",
            b"H",
            b"H\t\t\t\t",
            b"I\t\t",
            b"A1\tk\t99999999999999999999",
            b"T1\t1\t99999999999",
            b"\xff\xfe",
        ] {
            let _ = parse_command(line);
        }
    }

    // ---- write_reply

    fn reply_bytes(r: Reply<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        write_reply(&r, &mut out);
        out
    }

    #[test]
    fn writes_lookup_replies() {
        assert_eq!(
            reply_bytes(Reply::Lookup(&Lookup::Found(
                "{\"uid\":1000,\"home\":\"/home/a\\tb\"}".into()
            ))),
            b"O{\"uid\":1000,\"home\":\"/home/a\\tb\"}\n".to_vec()
        );
        assert_eq!(
            reply_bytes(Reply::Lookup(&Lookup::Found("a\tb\nc".into()))),
            b"Oa\x01tb\x01nc\n".to_vec()
        );
        assert_eq!(
            reply_bytes(Reply::Lookup(&Lookup::NotFound)),
            b"N\n".to_vec()
        );
        assert_eq!(
            reply_bytes(Reply::Lookup(&Lookup::Failed("backend down".into()))),
            b"Fbackend down\n".to_vec()
        );
    }

    #[test]
    fn writes_iterate_replies() {
        assert_eq!(
            reply_bytes(Reply::IterateRow {
                key: "shared/userdb/alice",
                value: Some("1")
            }),
            b"Oshared/userdb/alice\t1\n".to_vec()
        );
        assert_eq!(
            reply_bytes(Reply::IterateRow {
                key: "shared/userdb/alice",
                value: None
            }),
            b"Oshared/userdb/alice\t\n".to_vec()
        );
        assert_eq!(reply_bytes(Reply::IterateEnd), b"\n".to_vec());
        assert_eq!(
            reply_bytes(Reply::IterateFailed("x\ty")),
            b"Fx\x01ty\n".to_vec()
        );
    }

    #[test]
    fn writes_commit_replies() {
        let commit = |id, async_commit, result| Reply::Commit {
            id,
            async_commit,
            result,
        };
        assert_eq!(
            reply_bytes(commit(5, false, CommitResult::Ok)),
            b"O5\n".to_vec()
        );
        assert_eq!(
            reply_bytes(commit(5, false, CommitResult::NotFound)),
            b"N5\n".to_vec()
        );
        assert_eq!(
            reply_bytes(commit(5, false, CommitResult::Failed("read-only"))),
            b"F5\tread-only\n".to_vec()
        );
        assert_eq!(
            reply_bytes(commit(5, true, CommitResult::Failed("read-only"))),
            b"AF5\tread-only\n".to_vec()
        );
        assert_eq!(
            reply_bytes(commit(6, false, CommitResult::WriteUncertain("?"))),
            b"W6\t?\n".to_vec()
        );
    }
}
