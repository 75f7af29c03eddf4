//! The Dovecot dict proxy protocol, server side, read-only.
//!
//! Dovecot's `proxy` dict client (2.3.17+ speaks protocol 3, 2.4 speaks 4)
//! connects to a UNIX socket, sends `H<major>⇥<minor>⇥<value_type>⇥⇥<name>`
//! and then LF-terminated commands; every field is tab-escaped
//! ([`crate::tabescape`]). Dovecot 2.3's `passdb`/`userdb { driver = dict }`
//! uses it for `L`ookups of `shared/passdb/<user>` and `shared/userdb/<user>`
//! and an `I`terate over `shared/userdb/` for `doveadm user '*'`
//! (reference: dovecot-auth-protocols.md §2, §3).
//!
//! This module has three layers, all free of sockets:
//! - [`parse_command`] turns one line into a [`Command`];
//! - [`write_reply`] turns a [`Reply`] into bytes;
//! - [`DictSession`] is the per-connection state machine that ties them to a
//!   [`DictBackend`], and [`serve_connection`] drives it over any
//!   `BufRead`/`Write` pair with the 64 KiB line cap.
//!
//! Decisions a reader would otherwise question:
//! - **`H` gets no reply.** Dovecot's server does not answer the handshake
//!   and its client takes any line as the answer to the *next* command
//!   (VERIFIED on 2.3.19.1, §2.4 "Pitfall").
//! - **Unknown major version, a command before `H`, a second `H`, an unknown
//!   command letter or an empty line close the connection**, exactly as
//!   Dovecot's own server does (core@2.4.1:src/dict/dict-connection.c
//!   `dict_connection_handshake_args`, src/dict/dict-commands.c
//!   `dict_command_input`). After such a line we cannot know whether the
//!   client waits for a reply, so any answer could desynchronise its FIFO of
//!   pending commands; closing makes it reconnect and retry once.
//! - **A malformed `L`, `I`, `C` or `D` gets an `F` reply** and the
//!   connection goes on: the client waits for exactly one reply (one reply
//!   plus terminator for `I`), so the FIFO stays in step. A malformed
//!   transaction command without a reply (`B S U A T V R`) is logged and
//!   ignored.
//! - **Read-only.** `B S U A T V R` are accepted and ignored; no transaction
//!   state is kept, so a connection's memory does not grow with them.
//!   `C<id>` is answered `F<id>⇥mailtable dict is read-only` and `D<id>`
//!   (2.3 async commit) `AF<id>⇥…`, the shape of Dovecot's own failed
//!   commit (core@2.4.1:src/dict/dict-commands.c `cmd_commit_finish`).
//!   Writers such as quota-clone then log a failed commit; auth never writes.
//! - **Lines over 64 KiB close the connection** (Dovecot's server sets the
//!   same `input_max_size`, core@2.3.19.1:src/dict/dict-connection.c; its
//!   client never sends more, `DICT_CLIENT_MAX_LINE_LENGTH` in
//!   src/lib-dict/dict-client.h). The cut line may have been a lookup that
//!   is owed a reply, and what follows the cut cannot be trusted as a
//!   command boundary, so no reply is attempted.
//! - **Replies are written in request order** without the optional `*<n>` /
//!   `+<n>` async ids and without timing fields; both are optional for the
//!   client (§2.5, §2.6).
//!
//! Checked by hand against Dovecot 2.3.19.1 with
//! `conf/dovecot-dict-auth.conf.ext` and a stub backend: `doveadm auth test`
//! (ok, mismatch, unknown, `F` as temp_fail), `doveadm auth lookup`,
//! `doveadm user` (found, unknown), `doveadm user '*'` (iterate) and
//! CRAM-MD5.

use std::io::{self, BufRead, Write};

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
    let cmd = char::from(letter);
    let fields = tabescape::split(rest);
    let n = fields.len();
    let text = |i: usize, field: &'static str| -> Result<String, DictError> {
        let raw = fields.get(i).map(Vec::as_slice).unwrap_or_default();
        String::from_utf8(raw.to_vec()).map_err(|_| DictError::NotUtf8 { cmd, field })
    };
    let number = |i: usize, field: &'static str| -> Result<u64, DictError> {
        let raw = fields.get(i).map(Vec::as_slice).unwrap_or_default();
        parse_uint(raw).ok_or_else(|| DictError::InvalidNumber {
            cmd,
            field,
            value: String::from_utf8_lossy(raw).into_owned(),
        })
    };
    let number_u32 = |i: usize, field: &'static str| -> Result<u32, DictError> {
        let v = number(i, field)?;
        u32::try_from(v).map_err(|_| DictError::InvalidNumber {
            cmd,
            field,
            value: v.to_string(),
        })
    };
    let broken = |expected: &'static str| DictError::Broken { cmd, expected };

    match letter {
        b'H' => {
            // Dovecot requires at least five fields and ignores the rest
            // (dict-connection.c `dict_connection_handshake_args`).
            if n < 5 {
                return Err(broken(
                    "H<major>\\t<minor>\\t<value_type>\\t<user>\\t<name>",
                ));
            }
            Ok(Command::Hello {
                major: number_u32(0, "major version")?,
                minor: number_u32(1, "minor version")?,
                value_type: number_u32(2, "value type")?,
                dict_name: text(4, "dict name")?,
            })
        }
        b'L' => {
            // `L<key>` without a user field is accepted with an empty user,
            // as Dovecot's server reads args[1] as NULL there.
            if n > 2 {
                return Err(broken("L<key>\\t<user>"));
            }
            Ok(Command::Lookup {
                key: text(0, "key")?,
                user: text(1, "user")?,
            })
        }
        b'I' => {
            if !(3..=4).contains(&n) {
                return Err(broken("I<flags>\\t<max_rows>\\t<path>\\t<user>"));
            }
            Ok(Command::Iterate {
                flags: number_u32(0, "flags")?,
                max_rows: number(1, "max_rows")?,
                path: text(2, "path")?,
                user: text(3, "user")?,
            })
        }
        b'B' => {
            if !(2..=3).contains(&n) {
                return Err(broken("B<id>\\t<user>[\\t<expire_secs>]"));
            }
            let expire_secs = if n == 3 {
                Some(number_u32(2, "expire_secs")?)
            } else {
                None
            };
            Ok(Command::Begin {
                id: number_u32(0, "transaction id")?,
                user: text(1, "user")?,
                expire_secs,
            })
        }
        b'S' => {
            if n != 3 {
                return Err(broken("S<id>\\t<key>\\t<value>"));
            }
            Ok(Command::Set {
                id: number_u32(0, "transaction id")?,
                key: text(1, "key")?,
                value: text(2, "value")?,
            })
        }
        b'U' => {
            if n != 2 {
                return Err(broken("U<id>\\t<key>"));
            }
            Ok(Command::Unset {
                id: number_u32(0, "transaction id")?,
                key: text(1, "key")?,
            })
        }
        b'A' => {
            if n != 3 {
                return Err(broken("A<id>\\t<key>\\t<diff>"));
            }
            let raw = &fields[2];
            let diff = std::str::from_utf8(raw)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(|| DictError::InvalidNumber {
                    cmd,
                    field: "diff",
                    value: String::from_utf8_lossy(raw).into_owned(),
                })?;
            Ok(Command::AtomicInc {
                id: number_u32(0, "transaction id")?,
                key: text(1, "key")?,
                diff,
            })
        }
        b'T' => {
            if n != 3 {
                return Err(broken("T<id>\\t<sec>\\t<nsec>"));
            }
            Ok(Command::Timestamp {
                id: number_u32(0, "transaction id")?,
                sec: number(1, "seconds")?,
                nsec: number_u32(2, "nanoseconds")?,
            })
        }
        b'V' => {
            if n != 2 {
                return Err(broken("V<id>\\t<yes|no>"));
            }
            let hide = match fields[1].as_slice() {
                b"yes" => true,
                b"no" => false,
                _ => return Err(broken("V<id>\\t<yes|no>")),
            };
            Ok(Command::HideLogValues {
                id: number_u32(0, "transaction id")?,
                hide,
            })
        }
        b'C' | b'D' | b'R' => {
            if n != 1 {
                return Err(broken("<letter><id>"));
            }
            let id = number_u32(0, "transaction id")?;
            Ok(match letter {
                b'C' => Command::Commit { id },
                b'D' => Command::CommitAsync { id },
                _ => Command::Rollback { id },
            })
        }
        _ => Err(DictError::UnknownCommand(cmd)),
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

/// The answer to a lookup, from a [`DictBackend`].
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

/// What a dict server needs from the database. Implemented by the binary
/// over the mailtable store.
pub trait DictBackend {
    /// Looks up one key (`shared/passdb/alice@example.org`) for `user`.
    fn lookup(&mut self, key: &str, user: &str) -> Lookup;
    /// Lists `(key, value)` rows whose key starts with `path`
    /// (`shared/userdb/`), full keys included. An error fails the whole
    /// iteration.
    fn iterate(&mut self, path: &str) -> Result<Vec<(String, String)>, String>;
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

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    AwaitHello,
    Ready {
        major: u32,
        minor: u32,
        dict_name: String,
    },
    Closed,
}

/// The per-connection state machine: feed it lines, write what it returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DictSession {
    state: State,
}

impl Default for DictSession {
    fn default() -> Self {
        Self::new()
    }
}

impl DictSession {
    /// A session waiting for the client's `H` line.
    pub fn new() -> Self {
        DictSession {
            state: State::AwaitHello,
        }
    }

    /// Whether the connection must be closed now (see the module doc for
    /// when). Once closed, [`DictSession::handle`] ignores every line.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// The `(major, minor)` protocol version the client announced.
    pub fn version(&self) -> Option<(u32, u32)> {
        match self.state {
            State::Ready { major, minor, .. } => Some((major, minor)),
            _ => None,
        }
    }

    /// The dict name the client announced in `H`.
    pub fn dict_name(&self) -> Option<&str> {
        match &self.state {
            State::Ready { dict_name, .. } => Some(dict_name),
            _ => None,
        }
    }

    fn close(&mut self, why: &str) -> Vec<u8> {
        tracing::warn!("dict: closing connection: {why}");
        self.state = State::Closed;
        Vec::new()
    }

    /// Handles one line (without LF) and returns the reply bytes, possibly
    /// empty. Check [`DictSession::is_closed`] afterwards.
    pub fn handle(&mut self, line: &[u8], backend: &mut impl DictBackend) -> Vec<u8> {
        if self.is_closed() {
            return Vec::new();
        }
        let command = parse_command(line);
        if let State::AwaitHello = self.state {
            return match command {
                Ok(Command::Hello {
                    major,
                    minor,
                    dict_name,
                    ..
                }) if SUPPORTED_MAJOR_VERSIONS.contains(&major) => {
                    tracing::debug!("dict: hello {major}.{minor} for dict {dict_name:?}");
                    self.state = State::Ready {
                        major,
                        minor,
                        dict_name,
                    };
                    Vec::new()
                }
                Ok(Command::Hello { major, .. }) => self.close(&format!(
                    "unsupported protocol major version {major} \
                     (Dovecot 2.3.17 or later needed)"
                )),
                Ok(_) => self.close("command before handshake"),
                Err(e) => self.close(&format!("bad handshake: {e}")),
            };
        }

        let mut out = Vec::new();
        match command {
            Ok(Command::Hello { .. }) => return self.close("second handshake"),
            Ok(Command::Lookup { key, user }) => {
                let answer = backend.lookup(&key, &user);
                if let Lookup::Failed(e) = &answer {
                    tracing::error!("dict: lookup {key:?} failed: {e}");
                }
                write_reply(&Reply::Lookup(&answer), &mut out);
            }
            Ok(Command::Iterate {
                flags,
                max_rows,
                path,
                ..
            }) => match backend.iterate(&path) {
                Ok(mut rows) => {
                    if flags & ITERATE_FLAG_SORT_BY_KEY != 0 {
                        rows.sort_by(|a, b| a.0.cmp(&b.0));
                    } else if flags & ITERATE_FLAG_SORT_BY_VALUE != 0 {
                        rows.sort_by(|a, b| a.1.cmp(&b.1));
                    }
                    let limit = usize::try_from(max_rows).unwrap_or(usize::MAX);
                    let limit = if limit == 0 { usize::MAX } else { limit };
                    for (key, value) in rows.iter().take(limit) {
                        let value = if flags & ITERATE_FLAG_NO_VALUE != 0 {
                            None
                        } else {
                            Some(value.as_str())
                        };
                        write_reply(&Reply::IterateRow { key, value }, &mut out);
                    }
                    write_reply(&Reply::IterateEnd, &mut out);
                }
                Err(e) => {
                    tracing::error!("dict: iterate {path:?} failed: {e}");
                    write_reply(&Reply::IterateFailed(&e), &mut out);
                }
            },
            Ok(Command::Commit { id }) | Ok(Command::CommitAsync { id }) => {
                let async_commit = matches!(command, Ok(Command::CommitAsync { .. }));
                write_reply(
                    &Reply::Commit {
                        id,
                        async_commit,
                        result: CommitResult::Failed(READ_ONLY_ERROR),
                    },
                    &mut out,
                );
            }
            Ok(
                Command::Begin { .. }
                | Command::Set { .. }
                | Command::Unset { .. }
                | Command::AtomicInc { .. }
                | Command::Timestamp { .. }
                | Command::HideLogValues { .. }
                | Command::Rollback { .. },
            ) => {}
            Err(e) => match e.command() {
                // Commands that are owed one reply get an F so the client's
                // FIFO of pending commands stays aligned.
                Some('L') => {
                    tracing::warn!("dict: {e}");
                    write_reply(&Reply::Lookup(&Lookup::Failed(e.to_string())), &mut out);
                }
                Some('I') => {
                    tracing::warn!("dict: {e}");
                    write_reply(&Reply::IterateFailed(&e.to_string()), &mut out);
                }
                Some(cmd @ ('C' | 'D')) => {
                    tracing::warn!("dict: {e}");
                    // The id could not be parsed; the client ignores it.
                    write_reply(
                        &Reply::Commit {
                            id: 0,
                            async_commit: cmd == 'D',
                            result: CommitResult::Failed(&e.to_string()),
                        },
                        &mut out,
                    );
                }
                Some(_) => tracing::warn!("dict: ignoring bad transaction command: {e}"),
                None => return self.close(&e.to_string()),
            },
        }
        out
    }
}

/// How a call to [`read_line`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineRead {
    /// `buf` holds one line without LF (and without a CR before it).
    Line,
    /// End of input. An unterminated last fragment is discarded: Dovecot
    /// always ends a command with LF.
    Eof,
    /// The line exceeded the cap; the connection must be closed.
    TooLong,
}

/// Reads one LF-terminated line into `buf` (cleared first), refusing lines
/// longer than `max` bytes. A CR before the LF is removed, as Dovecot's
/// `i_stream_next_line` does (core@2.3.19.1:src/lib/istream.c).
pub fn read_line(reader: &mut impl BufRead, buf: &mut Vec<u8>, max: usize) -> io::Result<LineRead> {
    buf.clear();
    loop {
        let available = match reader.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(LineRead::Eof);
        }
        let (chunk, found) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], true),
            None => (available, false),
        };
        if buf.len() + chunk.len() > max {
            return Ok(LineRead::TooLong);
        }
        buf.extend_from_slice(chunk);
        let used = chunk.len() + usize::from(found);
        reader.consume(used);
        if found {
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return Ok(LineRead::Line);
        }
    }
}

/// Serves one client connection until it closes, a line is too long, or the
/// session decides to close. Replies are flushed after every line that
/// produced one, so a pipelining client is answered in order.
pub fn serve_connection<R: BufRead, W: Write, B: DictBackend>(
    mut reader: R,
    mut writer: W,
    backend: &mut B,
) -> io::Result<()> {
    let mut session = DictSession::new();
    let mut line = Vec::new();
    loop {
        match read_line(&mut reader, &mut line, MAX_LINE_LENGTH)? {
            LineRead::Eof => return Ok(()),
            LineRead::TooLong => {
                tracing::warn!(
                    "dict: closing connection: line longer than {MAX_LINE_LENGTH} bytes"
                );
                return Ok(());
            }
            LineRead::Line => {}
        }
        let reply = session.handle(&line, backend);
        if !reply.is_empty() {
            writer.write_all(&reply)?;
            writer.flush()?;
        }
        if session.is_closed() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A backend over a map; `fail` makes every call fail.
    #[derive(Default)]
    struct MapBackend {
        map: BTreeMap<String, String>,
        fail: bool,
        lookups: Vec<(String, String)>,
    }

    impl MapBackend {
        fn with(rows: &[(&str, &str)]) -> Self {
            MapBackend {
                map: rows
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            }
        }
    }

    impl DictBackend for MapBackend {
        fn lookup(&mut self, key: &str, user: &str) -> Lookup {
            self.lookups.push((key.to_string(), user.to_string()));
            if self.fail {
                return Lookup::Failed("database down".into());
            }
            match self.map.get(key) {
                Some(v) => Lookup::Found(v.clone()),
                None => Lookup::NotFound,
            }
        }
        fn iterate(&mut self, path: &str) -> Result<Vec<(String, String)>, String> {
            if self.fail {
                return Err("database down".into());
            }
            Ok(self
                .map
                .iter()
                .filter(|(k, _)| k.starts_with(path))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect())
        }
    }

    fn ready(major: u32) -> DictSession {
        let mut s = DictSession::new();
        let hello = format!("H{major}\t0\t0\t\tauth");
        assert!(s
            .handle(hello.as_bytes(), &mut MapBackend::default())
            .is_empty());
        assert!(!s.is_closed());
        s
    }

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
        assert!(matches!(
            parse_command(b"Lkey\xff\tuser"),
            Err(DictError::NotUtf8 { cmd: 'L', .. })
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

    // ---- DictSession

    #[test]
    fn verified_2_3_passdb_exchange() {
        // The wire seen from Dovecot 2.3.19.1 (§2.4): hello, then one lookup.
        let mut b =
            MapBackend::with(&[("shared/passdb/alice", "{\"password\":\"{PLAIN}secret\"}")]);
        let mut s = DictSession::new();
        assert!(s.handle(b"H3\t2\t0\t\tauthdict", &mut b).is_empty());
        assert_eq!(s.version(), Some((3, 2)));
        assert_eq!(s.dict_name(), Some("authdict"));
        assert_eq!(
            s.handle(b"Lshared/passdb/alice\talice", &mut b),
            b"O{\"password\":\"{PLAIN}secret\"}\n".to_vec()
        );
        assert_eq!(
            b.lookups,
            vec![("shared/passdb/alice".to_string(), "alice".to_string())]
        );
    }

    #[test]
    fn v4_session_answers_lookups() {
        let mut b = MapBackend::with(&[("shared/userdb/bob", "{\"uid\":5000}")]);
        let mut s = ready(4);
        assert_eq!(s.version(), Some((4, 0)));
        assert_eq!(
            s.handle(b"Lshared/userdb/bob\tbob", &mut b),
            b"O{\"uid\":5000}\n".to_vec()
        );
        assert_eq!(
            s.handle(b"Lshared/userdb/eve\teve", &mut b),
            b"N\n".to_vec()
        );
    }

    #[test]
    fn backend_failure_is_an_f_reply_not_not_found() {
        let mut b = MapBackend {
            fail: true,
            ..Default::default()
        };
        let mut s = ready(3);
        assert_eq!(
            s.handle(b"Lshared/passdb/alice\talice", &mut b),
            b"Fdatabase down\n".to_vec()
        );
        assert_eq!(
            s.handle(b"I0\t0\tshared/userdb/\t*", &mut b),
            b"Fdatabase down\n".to_vec()
        );
        assert!(!s.is_closed());
    }

    #[test]
    fn iterate_lists_rows_then_terminator() {
        let mut b = MapBackend::with(&[
            ("shared/userdb/bob", "{\"uid\":2}"),
            ("shared/userdb/alice", "{\"uid\":1}"),
            ("shared/passdb/alice", "{}"),
        ]);
        let mut s = ready(3);
        assert_eq!(
            s.handle(b"I0\t0\tshared/userdb/\t*", &mut b),
            b"Oshared/userdb/alice\t{\"uid\":1}\nOshared/userdb/bob\t{\"uid\":2}\n\n".to_vec()
        );
        // NO_VALUE (0x08) keeps the mandatory TAB; max_rows limits.
        assert_eq!(
            s.handle(b"I8\t1\tshared/userdb/\t*", &mut b),
            b"Oshared/userdb/alice\t\n\n".to_vec()
        );
        // Nothing under the path: just the terminator.
        assert_eq!(
            s.handle(b"I0\t0\tshared/nothing/\t", &mut b),
            b"\n".to_vec()
        );
    }

    #[test]
    fn iterate_sorts_by_value_when_asked() {
        let mut b = MapBackend::with(&[("shared/u/a", "2"), ("shared/u/b", "1")]);
        let mut s = ready(3);
        assert_eq!(
            s.handle(b"I4\t0\tshared/u/\t", &mut b),
            b"Oshared/u/b\t1\nOshared/u/a\t2\n\n".to_vec()
        );
    }

    #[test]
    fn transactions_are_ignored_and_commit_fails_read_only() {
        let mut b = MapBackend::default();
        let mut s = ready(4);
        for line in [
            &b"B1\talice\t0"[..],
            b"V1\tno",
            b"S1\tpriv/last-login\t1700000000",
            b"U1\tpriv/x",
            b"A1\tpriv/n\t1",
            b"T1\t1\t2",
        ] {
            assert!(s.handle(line, &mut b).is_empty());
        }
        assert_eq!(
            s.handle(b"C1", &mut b),
            b"F1\tmailtable dict is read-only\n".to_vec()
        );
        assert!(s.handle(b"B2\talice", &mut b).is_empty());
        assert!(s.handle(b"R2", &mut b).is_empty());
        assert_eq!(
            s.handle(b"D3", &mut b),
            b"AF3\tmailtable dict is read-only\n".to_vec()
        );
        assert!(!s.is_closed());
    }

    #[test]
    fn malformed_lookup_gets_f_and_session_continues() {
        let mut b = MapBackend::with(&[("k", "v")]);
        let mut s = ready(3);
        let reply = s.handle(b"Lk\tu\textra", &mut b);
        assert!(reply.starts_with(b"FL: broken input"), "{reply:?}");
        assert!(reply.ends_with(b"\n"));
        assert_eq!(s.handle(b"Lk\tu", &mut b), b"Ov\n".to_vec());
    }

    #[test]
    fn malformed_commit_gets_f() {
        let mut s = ready(3);
        let reply = s.handle(b"Cx", &mut MapBackend::default());
        assert!(
            reply.starts_with(b"F0\tC: invalid transaction id"),
            "{reply:?}"
        );
    }

    #[test]
    fn malformed_transaction_command_is_ignored() {
        let mut s = ready(3);
        assert!(s.handle(b"Sx\tk\tv", &mut MapBackend::default()).is_empty());
        assert!(!s.is_closed());
    }

    #[test]
    fn never_replies_to_hello() {
        let mut s = DictSession::new();
        assert!(s
            .handle(b"H3\t2\t0\t\tauthdict", &mut MapBackend::default())
            .is_empty());
    }

    #[test]
    fn unknown_major_version_closes() {
        for hello in [&b"H2\t1\t0\talice\tauth"[..], b"H5\t0\t0\t\tauth"] {
            let mut s = DictSession::new();
            assert!(s.handle(hello, &mut MapBackend::default()).is_empty());
            assert!(s.is_closed());
        }
    }

    #[test]
    fn command_before_hello_closes() {
        let mut b = MapBackend::with(&[("k", "v")]);
        let mut s = DictSession::new();
        assert!(s.handle(b"Lk\tu", &mut b).is_empty());
        assert!(s.is_closed());
        assert!(b.lookups.is_empty());
        // Closed sessions ignore everything, even a valid hello.
        assert!(s.handle(b"H3\t2\t0\t\tauth", &mut b).is_empty());
        assert!(s.is_closed());
    }

    #[test]
    fn unknown_command_empty_line_and_second_hello_close() {
        for line in [&b"Zsomething"[..], b"", b"H3\t2\t0\t\tauth"] {
            let mut s = ready(3);
            assert!(s.handle(line, &mut MapBackend::default()).is_empty());
            assert!(s.is_closed(), "{line:?}");
        }
    }

    // ---- read_line / serve_connection

    #[test]
    fn read_line_strips_lf_and_crlf() {
        let mut r = io::Cursor::new(b"one\ntwo\r\nthree".to_vec());
        let mut buf = Vec::new();
        assert_eq!(read_line(&mut r, &mut buf, 10).ok(), Some(LineRead::Line));
        assert_eq!(buf, b"one");
        assert_eq!(read_line(&mut r, &mut buf, 10).ok(), Some(LineRead::Line));
        assert_eq!(buf, b"two");
        assert_eq!(read_line(&mut r, &mut buf, 10).ok(), Some(LineRead::Eof));
    }

    #[test]
    fn read_line_enforces_the_cap() {
        let mut buf = Vec::new();
        let mut exact = io::Cursor::new(b"12345\n".to_vec());
        assert_eq!(
            read_line(&mut exact, &mut buf, 5).ok(),
            Some(LineRead::Line)
        );
        let mut long = io::Cursor::new(b"123456\n".to_vec());
        assert_eq!(
            read_line(&mut long, &mut buf, 5).ok(),
            Some(LineRead::TooLong)
        );
    }

    #[test]
    fn read_line_joins_short_reads() {
        // A BufRead with a 2-byte buffer delivers the line in pieces.
        let inner = io::Cursor::new(b"Lshared/x\tu\n".to_vec());
        let mut r = io::BufReader::with_capacity(2, inner);
        let mut buf = Vec::new();
        assert_eq!(read_line(&mut r, &mut buf, 64).ok(), Some(LineRead::Line));
        assert_eq!(buf, b"Lshared/x\tu");
    }

    #[test]
    fn serves_a_pipelined_transcript() {
        let mut b = MapBackend::with(&[("shared/passdb/alice", "{\"user\":\"alice\"}")]);
        let input = b"H3\t2\t0\t\tauthdict\nLshared/passdb/alice\talice\nB1\t\nC1\nLshared/passdb/bob\tbob\n";
        let mut out = Vec::new();
        assert!(serve_connection(&input[..], &mut out, &mut b).is_ok());
        assert_eq!(
            out,
            b"O{\"user\":\"alice\"}\nF1\tmailtable dict is read-only\nN\n".to_vec()
        );
    }

    #[test]
    fn over_long_line_closes_without_reply() {
        let mut b = MapBackend::default();
        let mut input = b"H4\t0\t0\t\tauth\nL".to_vec();
        input.extend(vec![b'x'; MAX_LINE_LENGTH]);
        input.extend_from_slice(b"\tu\nLshared/x\tu\n");
        let mut out = Vec::new();
        assert!(serve_connection(&input[..], &mut out, &mut b).is_ok());
        assert!(out.is_empty());
        assert!(b.lookups.is_empty());
    }

    #[test]
    fn bad_hello_ends_the_connection() {
        let mut b = MapBackend::with(&[("k", "v")]);
        let mut out = Vec::new();
        assert!(serve_connection(&b"H2\t1\t0\t\tauth\nLk\tu\n"[..], &mut out, &mut b).is_ok());
        assert!(out.is_empty());
        assert!(b.lookups.is_empty());
    }
}
