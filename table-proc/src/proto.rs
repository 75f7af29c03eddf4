//! The vocabulary both OpenSMTPD table protocols share: services, operations,
//! requests, answers and the one error type of the parsers.
//!
//! The text protocol 0.1 (OpenSMTPD 7.6 and later, `text.rs`) and the binary
//! imsg protocol v2 (OpenSMTPD up to 7.5, `imsg.rs`) carry the same four
//! operations on the same thirteen services, so the loop in `serve.rs` and the
//! handler behind it see one [`Request`] and answer one [`Answer`], whichever
//! protocol smtpd speaks. The rules that decide whether a value can go on the
//! wire at all ([`valid_value`], [`sanitize_reason`]) live here too, so both
//! writers refuse exactly the same values.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

/// A table service: what kind of question smtpd asks.
///
/// The wire names and numbers come from `table_service_name` in
/// `usr.sbin/smtpd/table.c` and `enum table_service` in
/// `usr.sbin/smtpd/smtpd-api.h` (OpenSMTPD/OpenSMTPD).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    /// `alias`: local and virtual alias expansion (K_ALIAS).
    Alias,
    /// `domain`: is this one of our domains (K_DOMAIN).
    Domain,
    /// `credentials`: `user:hash` for SMTP AUTH (K_CREDENTIALS).
    Credentials,
    /// `netaddr`: client address matching (K_NETADDR).
    Netaddr,
    /// `userinfo`: `uid:gid:home` of a delivery user (K_USERINFO).
    Userinfo,
    /// `source`: source addresses for relaying, fetched (K_SOURCE).
    Source,
    /// `mailaddr`: is this address in the table (K_MAILADDR).
    Mailaddr,
    /// `addrname`: host name to announce for a local address (K_ADDRNAME).
    Addrname,
    /// `mailaddrmap`: addresses an authenticated user may send as (K_MAILADDRMAP).
    Mailaddrmap,
    /// `relayhost`: relay URL (K_RELAYHOST).
    Relayhost,
    /// `string`: exact string match (K_STRING).
    String,
    /// `regex`: the table's own patterns against a subject (K_REGEX).
    Regex,
    /// `auth`: `user:password` checked by the table itself; 7.6+ text protocol only (K_AUTH).
    Auth,
}

impl Service {
    /// Every service, in the order of their imsg numbers.
    pub const ALL: [Service; 13] = [
        Service::Alias,
        Service::Domain,
        Service::Credentials,
        Service::Netaddr,
        Service::Userinfo,
        Service::Source,
        Service::Mailaddr,
        Service::Addrname,
        Service::Mailaddrmap,
        Service::Relayhost,
        Service::String,
        Service::Regex,
        Service::Auth,
    ];

    /// The wire name, as in `table_service_name` (`usr.sbin/smtpd/table.c`).
    pub fn name(self) -> &'static str {
        match self {
            Service::Alias => "alias",
            Service::Domain => "domain",
            Service::Credentials => "credentials",
            Service::Netaddr => "netaddr",
            Service::Userinfo => "userinfo",
            Service::Source => "source",
            Service::Mailaddr => "mailaddr",
            Service::Addrname => "addrname",
            Service::Mailaddrmap => "mailaddrmap",
            Service::Relayhost => "relayhost",
            Service::String => "string",
            Service::Regex => "regex",
            Service::Auth => "auth",
        }
    }

    /// The `K_*` number sent as a C `int` in imsg CHECK/LOOKUP/FETCH payloads
    /// (`enum table_service`, `usr.sbin/smtpd/smtpd-api.h`).
    pub fn imsg_number(self) -> i32 {
        match self {
            Service::Alias => 0x001,
            Service::Domain => 0x002,
            Service::Credentials => 0x004,
            Service::Netaddr => 0x008,
            Service::Userinfo => 0x010,
            Service::Source => 0x020,
            Service::Mailaddr => 0x040,
            Service::Addrname => 0x080,
            Service::Mailaddrmap => 0x100,
            Service::Relayhost => 0x200,
            Service::String => 0x400,
            Service::Regex => 0x800,
            Service::Auth => 0x1000,
        }
    }

    /// The service of an imsg `K_*` number. `K_NONE` (0), the `K_ANY` masks
    /// and combinations of bits are not services a request can ask for.
    pub fn from_imsg_number(n: i32) -> Option<Service> {
        Service::ALL.into_iter().find(|s| s.imsg_number() == n)
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Service {
    type Err = ProtoError;

    /// Exact, lower-case match. `none` exists in smtpd's name table but is not
    /// a service anyone can ask for, so it is refused like any unknown word.
    fn from_str(s: &str) -> Result<Service, ProtoError> {
        Service::ALL
            .into_iter()
            .find(|svc| svc.name() == s)
            .ok_or_else(|| ProtoError::UnknownServiceName(s.to_owned()))
    }
}

/// A table operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Is the key in the table (`table_match`); the value is not wanted.
    Check,
    /// The value for a key.
    Lookup,
    /// The next value of a service, no key (round-robin `source` lists).
    Fetch,
    /// Reload (`smtpctl update table NAME`); no service, no key.
    Update,
}

impl Op {
    /// The wire name, also the prefix of the text reply (`<name>-result`).
    pub fn name(self) -> &'static str {
        match self {
            Op::Check => "check",
            Op::Lookup => "lookup",
            Op::Fetch => "fetch",
            Op::Update => "update",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Op {
    type Err = ProtoError;

    fn from_str(s: &str) -> Result<Op, ProtoError> {
        match s {
            "check" => Ok(Op::Check),
            "lookup" => Ok(Op::Lookup),
            "fetch" => Ok(Op::Fetch),
            "update" => Ok(Op::Update),
            _ => Err(ProtoError::UnknownOp(s.to_owned())),
        }
    }
}

/// One request from smtpd, protocol-independent.
///
/// `service` is `None` exactly for [`Op::Update`]; `key` is empty for fetch
/// and update (and may legitimately be empty for check and lookup, e.g. `match
/// tag` on an untagged message). `id` is the text protocol's request id, to
/// be echoed byte for byte; the imsg protocol has no ids and leaves it empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// What to do.
    pub op: Op,
    /// On which service; `None` for update.
    pub service: Option<Service>,
    /// The text protocol's request id (`%08x` in smtpd), empty for imsg.
    pub id: String,
    /// The lower-cased key smtpd asks about; empty for fetch and update.
    pub key: String,
}

/// The three outcomes of every lookup, kept distinct all the way to the wire:
/// smtpd answers not-found with a permanent failure and an error with a
/// temporary one (`usr.sbin/smtpd/lka.c`), so a database problem must never
/// become [`Answer::NotFound`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Found, with its value. The value is ignored for check; for update,
    /// `Found` means success.
    Found(String),
    /// Definitely not in the table.
    NotFound,
    /// Could not tell (database down, timeout, bad value); the reason is
    /// logged by smtpd.
    Error(String),
}

/// Why bytes from smtpd could not be understood.
///
/// The `Display` texts quote the offending input, for tests and debugging.
/// The serving loop logs only [`ProtoError::summary`], because a line that
/// does not parse is most likely the tail of an SMTP AUTH user name or
/// password injected through a line feed (see `serve.rs`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtoError {
    /// The line does not start with `table|`.
    #[error("line does not start with \"table|\"")]
    NotARequest,
    /// The line does not start with `config|`.
    #[error("line does not start with \"config|\"")]
    NotConfig,
    /// The protocol field is not `0.1`.
    #[error("unsupported protocol version {0:?}")]
    Version(String),
    /// The timestamp is not `seconds.micros`.
    #[error("bad timestamp {0:?}")]
    Timestamp(String),
    /// The table name field is empty.
    #[error("empty table name")]
    TableName,
    /// The operation is none of check, lookup, fetch, update.
    #[error("unknown operation {0:?}")]
    UnknownOp(String),
    /// Fields are missing or in excess for the operation.
    #[error("wrong number of fields for {op}: {count}")]
    FieldCount {
        /// The operation of the line.
        op: Op,
        /// How many `|`-separated fields the line had (at most 8 counted).
        count: usize,
    },
    /// The request id is empty or holds bytes that cannot be echoed safely.
    #[error("bad request id {0:?}")]
    Id(String),
    /// A line holds a line feed: callers split lines before parsing.
    #[error("line feed inside a line")]
    LineFeed,
    /// A word that is not a service name (from [`Service::from_str`]).
    #[error("unknown service {0:?}")]
    UnknownServiceName(String),
    /// A well-formed request on an unknown service. The id is known, so the
    /// request can and must still be answered (with an error).
    #[error("unknown service {service:?} in {op} request {id}")]
    UnknownService {
        /// The operation of the request.
        op: Op,
        /// The id to answer.
        id: String,
        /// The service word smtpd sent.
        service: String,
    },
    /// A well-formed request whose key is not UTF-8. No entry of a UTF-8
    /// database can match it, so it is answered not-found.
    #[error("key of {op} request {id} is not utf-8")]
    KeyNotUtf8 {
        /// The operation of the request.
        op: Op,
        /// The id to answer (empty for imsg).
        id: String,
    },
    /// An imsg header whose length is outside 16..=16384: the stream cannot
    /// be framed any more.
    #[error("imsg length {0} outside 16..=16384")]
    ImsgLength(usize),
    /// An imsg message of an unknown type.
    #[error("unknown imsg type {0}")]
    ImsgType(u32),
    /// An imsg payload that is too short or lacks a NUL terminator.
    #[error("truncated {0} payload")]
    ImsgPayload(&'static str),
    /// An imsg service number that is no single service.
    #[error("unknown imsg service number {0:#x}")]
    ImsgService(i32),
}

impl ProtoError {
    /// The request this error still has to be answered for, if its op and id
    /// could be read: an unknown service or a non-UTF-8 key. smtpd blocks
    /// until it gets that answer. (The id is empty for imsg.)
    pub fn unanswered(&self) -> Option<(Op, &str)> {
        match self {
            ProtoError::UnknownService { op, id, .. } | ProtoError::KeyNotUtf8 { op, id } => {
                Some((*op, id))
            }
            _ => None,
        }
    }

    /// A description without any input bytes, safe to log even when the input
    /// was a fragment of a password.
    pub fn summary(&self) -> &'static str {
        match self {
            ProtoError::NotARequest => "line does not start with \"table|\"",
            ProtoError::NotConfig => "line does not start with \"config|\"",
            ProtoError::Version(_) => "unsupported protocol version",
            ProtoError::Timestamp(_) => "bad timestamp",
            ProtoError::TableName => "empty table name",
            ProtoError::UnknownOp(_) => "unknown operation",
            ProtoError::FieldCount { .. } => "wrong number of fields",
            ProtoError::Id(_) => "bad request id",
            ProtoError::LineFeed => "line feed inside a line",
            ProtoError::UnknownServiceName(_) | ProtoError::UnknownService { .. } => {
                "unknown service"
            }
            ProtoError::KeyNotUtf8 { .. } => "key is not utf-8",
            ProtoError::ImsgLength(_) => "imsg length out of range",
            ProtoError::ImsgType(_) => "unknown imsg type",
            ProtoError::ImsgPayload(_) => "truncated imsg payload",
            ProtoError::ImsgService(_) => "unknown imsg service number",
        }
    }
}

/// Longest reason put after `error|`; smtpd only logs it.
pub const MAX_REASON: usize = 200;

/// Whether a found value can go on the wire in either protocol: non-empty
/// (smtpd treats `found|` with nothing after it as fatal, and an empty imsg
/// value as "empty response", `usr.sbin/smtpd/table_proc.c`) and free of
/// `\r`, `\n` and NUL (smtpd strips only the `\n` of a text line, and a NUL
/// would cut an imsg C string).
pub fn valid_value(value: &str) -> bool {
    !value.is_empty() && !value.bytes().any(|b| matches!(b, b'\r' | b'\n' | b'\0'))
}

/// Makes an error reason safe for one wire line: control characters become
/// spaces, the text is cut to [`MAX_REASON`] bytes on a character boundary,
/// and an empty reason becomes `error`. `|` is kept: smtpd logs everything
/// after the first `|` of `error|...` verbatim.
pub fn sanitize_reason(reason: &str) -> Cow<'_, str> {
    let clean =
        reason.len() <= MAX_REASON && !reason.is_empty() && !reason.chars().any(char::is_control);
    if clean {
        return Cow::Borrowed(reason);
    }
    let mut out = String::with_capacity(reason.len().min(MAX_REASON));
    for c in reason.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > MAX_REASON {
            break;
        }
        out.push(c);
    }
    if out.is_empty() {
        out.push_str("error");
    }
    Cow::Owned(out)
}

/// The key as it may appear in a log line. An `auth` key is `user:password`
/// (lower-cased by smtpd, `usr.sbin/smtpd/lka.c` `lka_authenticate`), so only
/// the user part is shown.
pub fn loggable_key(service: Option<Service>, key: &str) -> Cow<'_, str> {
    match service {
        Some(Service::Auth) => match key.split_once(':') {
            Some((user, _)) => Cow::Owned(format!("{user}:<redacted>")),
            None => Cow::Borrowed("<redacted>"),
        },
        _ => Cow::Borrowed(key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_round_trip() {
        for s in Service::ALL {
            assert_eq!(s.name().parse::<Service>(), Ok(s));
            assert_eq!(s.to_string(), s.name());
            assert_eq!(Service::from_imsg_number(s.imsg_number()), Some(s));
        }
    }

    #[test]
    fn service_numbers_match_smtpd_api_h() {
        assert_eq!(Service::Alias.imsg_number(), 0x001);
        assert_eq!(Service::Mailaddr.imsg_number(), 0x040);
        assert_eq!(Service::Source.imsg_number(), 0x020);
        assert_eq!(Service::Mailaddrmap.imsg_number(), 0x100);
        assert_eq!(Service::Regex.imsg_number(), 0x800);
        assert_eq!(Service::Auth.imsg_number(), 0x1000);
    }

    #[test]
    fn none_and_masks_are_not_services() {
        assert!("none".parse::<Service>().is_err());
        assert!("Alias".parse::<Service>().is_err());
        assert!("".parse::<Service>().is_err());
        assert_eq!(Service::from_imsg_number(0), None);
        assert_eq!(Service::from_imsg_number(0xfff), None);
        assert_eq!(Service::from_imsg_number(0x003), None);
        assert_eq!(Service::from_imsg_number(-1), None);
    }

    #[test]
    fn op_names_round_trip() {
        for op in [Op::Check, Op::Lookup, Op::Fetch, Op::Update] {
            assert_eq!(op.name().parse::<Op>(), Ok(op));
        }
        assert!("lookup-result".parse::<Op>().is_err());
    }

    #[test]
    fn values_that_cannot_go_on_the_wire() {
        assert!(valid_value("alice@example.org"));
        assert!(valid_value("a|b"));
        assert!(valid_value("\t"));
        assert!(!valid_value(""));
        assert!(!valid_value("a\nb"));
        assert!(!valid_value("a\r"));
        assert!(!valid_value("a\0b"));
    }

    #[test]
    fn reasons_are_one_short_line() {
        assert_eq!(sanitize_reason("backend down"), "backend down");
        assert_eq!(sanitize_reason("a|b"), "a|b");
        assert_eq!(sanitize_reason("db\r\nerror\0x"), "db  error x");
        assert_eq!(sanitize_reason(""), "error");
        assert_eq!(sanitize_reason("\n"), " ");
        let long = "é".repeat(300);
        let cut = sanitize_reason(&long);
        assert!(cut.len() <= MAX_REASON);
        assert_eq!(cut.len(), MAX_REASON);
        assert!(cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn auth_keys_lose_their_password_in_logs() {
        assert_eq!(
            loggable_key(Some(Service::Auth), "alice@example.org:mixed|pa:ss"),
            "alice@example.org:<redacted>"
        );
        assert_eq!(loggable_key(Some(Service::Auth), "nocolon"), "<redacted>");
        assert_eq!(
            loggable_key(Some(Service::Credentials), "alice@example.org"),
            "alice@example.org"
        );
    }
}
