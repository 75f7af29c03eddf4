//! The binary imsg protocol v2 of OpenSMTPD up to 7.5 (Debian 12 ships
//! 6.8.0p2): pure framing, parsing and writing, no I/O of their own.
//!
//! smtpd's side is `usr.sbin/smtpd/table_proc.c` and `smtpd-api.h`
//! (OpenSMTPD/OpenSMTPD v6.8.0p2); the reference backend side is
//! `api/table_api.c` of OpenSMTPD/OpenSMTPD-extras 6.7.1. Every message is a
//! 16-byte header in host byte order (type u32, len u16, flags u16, peerid
//! u32, pid u32) followed by `len - 16` payload bytes, at most 16384 bytes in
//! all (`MAX_IMSGSIZE`). Both ends run on one machine and copy C structs to
//! the wire, hence `from_ne_bytes`/`to_ne_bytes` and a params count of the
//! native `size_t` width.
//!
//! Parsing is split in two levels on purpose: [`parse_message`] fails only
//! when the stream itself cannot be framed any more, while a complete message
//! that makes no sense comes back as [`Message::Invalid`] with its length, so
//! the loop can skip exactly that message and still send the reply smtpd is
//! blocked on. smtpd answers any malformed reply with `fatalx`, taking the
//! whole daemon down, so [`write_reply`] only ever emits the shapes of the
//! reference's section 2.5.

use std::io::{self, Write};

use mailtable_core::resolve::SMTPD_IMSG_VALUE_MAX;

use crate::proto::{valid_value, Answer, Op, ProtoError, Request, Service};

/// Size of the imsg header.
pub const HEADER_LEN: usize = 16;

/// Largest message, header included (`MAX_IMSGSIZE` in `imsg.h`). A longer
/// reply makes smtpd's `imsg_get` fail with ERANGE, which is fatal.
pub const MAX_MESSAGE: usize = 16384;

/// `PROC_TABLE_API_VERSION` sent in OPEN.
pub const API_VERSION: u32 = 2;

/// `LINE_MAX` of glibc and OpenBSD, the size of the name in
/// `struct table_open_params`; used only when writing an OPEN for tests.
const LINE_MAX: usize = 2048;

/// `PROC_TABLE_OK`: the type of every reply.
pub const TYPE_OK: u32 = 0;
/// `PROC_TABLE_FAIL`: defined, never used; smtpd treats it as fatal.
pub const TYPE_FAIL: u32 = 1;
/// `PROC_TABLE_OPEN`: version and table name, sent once after the spawn.
pub const TYPE_OPEN: u32 = 2;
/// `PROC_TABLE_CLOSE`: defined but never sent by smtpd; expect EOF instead.
pub const TYPE_CLOSE: u32 = 3;
/// `PROC_TABLE_UPDATE`: reload, empty payload.
pub const TYPE_UPDATE: u32 = 4;
/// `PROC_TABLE_CHECK`: `table_match`.
pub const TYPE_CHECK: u32 = 5;
/// `PROC_TABLE_LOOKUP`.
pub const TYPE_LOOKUP: u32 = 6;
/// `PROC_TABLE_FETCH`.
pub const TYPE_FETCH: u32 = 7;

/// One complete message from smtpd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// OPEN: answered with a header-only reply ([`write_open_reply`]).
    Open {
        /// The API version smtpd speaks; 2 in every release.
        version: u32,
        /// The table name from smtpd.conf (read up to the first NUL).
        name: String,
    },
    /// CLOSE: no reply expected.
    Close,
    /// UPDATE, CHECK, LOOKUP or FETCH, with an empty `id`.
    Request(Request),
    /// A complete message that cannot be served as sent. smtpd still waits
    /// for a reply if `kind` is OPEN or a request type ([`op_of_type`]).
    Invalid {
        /// The header's type field.
        kind: u32,
        /// What is wrong with it.
        error: ProtoError,
    },
}

/// The operation a request type asks for: what shape its reply must have.
pub fn op_of_type(kind: u32) -> Option<Op> {
    match kind {
        TYPE_UPDATE => Some(Op::Update),
        TYPE_CHECK => Some(Op::Check),
        TYPE_LOOKUP => Some(Op::Lookup),
        TYPE_FETCH => Some(Op::Fetch),
        _ => None,
    }
}

fn type_of_op(op: Op) -> u32 {
    match op {
        Op::Update => TYPE_UPDATE,
        Op::Check => TYPE_CHECK,
        Op::Lookup => TYPE_LOOKUP,
        Op::Fetch => TYPE_FETCH,
    }
}

/// Frames and parses the first message of `buf`.
///
/// * `Ok(None)`: `buf` holds less than one whole message; read more.
/// * `Ok(Some((message, consumed)))`: one message of `consumed` bytes
///   (always `<= buf.len()`), possibly [`Message::Invalid`].
/// * `Err(ProtoError::ImsgLength)`: the header's length is below 16 or above
///   16384. smtpd never sends that; the stream cannot be resynchronised.
///
/// OPEN payloads of any size from 5 bytes are accepted: the payload is
/// `4 + LINE_MAX` bytes, and LINE_MAX differs between libcs (2048 on glibc
/// and OpenBSD, 4096 on musl); insisting on one size caused the "bogus data"
/// crash of OpenSMTPD/OpenSMTPD issue #816. CHECK and LOOKUP skip the
/// params pairs that `table_api.c` accepts (smtpd always sends none), and
/// bytes after the key's NUL are tolerated.
pub fn parse_message(buf: &[u8]) -> Result<Option<(Message, usize)>, ProtoError> {
    let mut header = Reader { rest: buf };
    let (Some(kind), Some(len)) = (header.u32(), header.u16()) else {
        return Ok(None);
    };
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = usize::from(len);
    if !(HEADER_LEN..=MAX_MESSAGE).contains(&len) {
        return Err(ProtoError::ImsgLength(len));
    }
    let Some(payload) = buf.get(HEADER_LEN..len) else {
        return Ok(None);
    };
    let message =
        parse_payload(kind, payload).unwrap_or_else(|error| Message::Invalid { kind, error });
    Ok(Some((message, len)))
}

fn parse_payload(kind: u32, payload: &[u8]) -> Result<Message, ProtoError> {
    let mut p = Reader { rest: payload };
    match kind {
        TYPE_OPEN => {
            if payload.len() < 5 {
                return Err(ProtoError::ImsgPayload("open"));
            }
            let version = p.u32().ok_or(ProtoError::ImsgPayload("open"))?;
            // The name is NUL-padded; a name filling the whole buffer has no
            // NUL at all, so the end of the payload also ends it.
            let name = p.rest.split(|&b| b == 0).next().unwrap_or_default();
            Ok(Message::Open {
                version,
                name: String::from_utf8_lossy(name).into_owned(),
            })
        }
        TYPE_CLOSE => Ok(Message::Close),
        TYPE_UPDATE => Ok(Message::Request(Request {
            op: Op::Update,
            service: None,
            id: String::new(),
            key: String::new(),
        })),
        TYPE_CHECK | TYPE_LOOKUP | TYPE_FETCH => {
            let (op, what) = match kind {
                TYPE_CHECK => (Op::Check, "check"),
                TYPE_LOOKUP => (Op::Lookup, "lookup"),
                _ => (Op::Fetch, "fetch"),
            };
            let truncated = ProtoError::ImsgPayload(what);
            let number = p.i32().ok_or_else(|| truncated.clone())?;
            let count = p.usize().ok_or_else(|| truncated.clone())?;
            // Each C string takes at least its NUL, so this loop ends within
            // the payload whatever `count` claims.
            for _ in 0..count {
                p.cstr()
                    .and_then(|_| p.cstr())
                    .ok_or_else(|| truncated.clone())?;
            }
            let key = if op == Op::Fetch {
                &[][..]
            } else {
                p.cstr().ok_or(truncated)?
            };
            let service =
                Service::from_imsg_number(number).ok_or(ProtoError::ImsgService(number))?;
            let key = std::str::from_utf8(key).map_err(|_| ProtoError::KeyNotUtf8 {
                op,
                id: String::new(),
            })?;
            Ok(Message::Request(Request {
                op,
                service: Some(service),
                id: String::new(),
                key: key.to_owned(),
            }))
        }
        other => Err(ProtoError::ImsgType(other)),
    }
}

/// Writes the reply to an OPEN: a header with no payload (any payload makes
/// smtpd fail with "bogus data").
pub fn write_open_reply(w: &mut impl Write) -> io::Result<()> {
    w.write_all(&header(TYPE_OK, HEADER_LEN))
}

/// Writes the reply to a request of operation `op`.
///
/// The payload is an i32 `r` (1 found, 0 not found, -1 error; for update,
/// [`Answer::Found`] is success). For lookup and fetch, and only with
/// `r == 1`, the value and a NUL follow. A value that is empty, holds `\r`,
/// `\n` or NUL, or would make the message exceed 16384 bytes is sent as
/// `r = -1` instead: smtpd would otherwise die on it (`table_proc.c`,
/// "empty response", "not NUL-terminated", ERANGE). imsg cannot carry an
/// error reason; the caller logs it.
pub fn write_reply(w: &mut impl Write, op: Op, answer: &Answer) -> io::Result<()> {
    let (r, value): (i32, Option<&str>) = match (op, answer) {
        (Op::Lookup | Op::Fetch, Answer::Found(v)) => match refused_value(op, answer) {
            None => (1, Some(v)),
            Some(_) => (-1, None),
        },
        (Op::Check | Op::Update, Answer::Found(_)) => (1, None),
        (_, Answer::NotFound) => (0, None),
        (_, Answer::Error(_)) => (-1, None),
    };
    let value_len = value.map_or(0, |v| v.len() + 1);
    let mut msg = header(TYPE_OK, HEADER_LEN + 4 + value_len);
    msg.extend_from_slice(&r.to_ne_bytes());
    if let Some(v) = value {
        msg.extend_from_slice(v.as_bytes());
        msg.push(0);
    }
    w.write_all(&msg)
}

/// Why the value of a found answer cannot go out in a reply (it goes as
/// `r = -1`), for the log; `None` when it can, or when the reply carries
/// no value.
pub fn refused_value(op: Op, answer: &Answer) -> Option<String> {
    match (op, answer) {
        (Op::Lookup | Op::Fetch, Answer::Found(v)) if !valid_value(v) => {
            Some("the table produced an empty value or one with CR, LF or NUL".into())
        }
        (Op::Lookup | Op::Fetch, Answer::Found(v)) if v.len() > SMTPD_IMSG_VALUE_MAX => {
            Some(format!(
                "the answer is {} bytes, over the {SMTPD_IMSG_VALUE_MAX} one reply carries \
                 to smtpd 7.5 and older (imsg; 7.6 and later take it)",
                v.len()
            ))
        }
        _ => None,
    }
}

/// Writes a message as smtpd would: the inverse of [`parse_message`], for
/// tests and the fuzz round trip. An OPEN name is NUL-padded to glibc's
/// LINE_MAX when it fits. The request id is not part of imsg and is dropped.
///
/// Refuses with [`io::ErrorKind::InvalidInput`] what smtpd could not send:
/// [`Message::Invalid`], a name or key with a NUL, a missing service, a key
/// on fetch or update, and anything longer than 16384 bytes.
pub fn write_request(w: &mut impl Write, message: &Message) -> io::Result<()> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_owned());
    let (kind, payload) = match message {
        Message::Open { version, name } => {
            if name.contains('\0') {
                return Err(invalid("NUL in table name"));
            }
            let mut payload = version.to_ne_bytes().to_vec();
            payload.extend_from_slice(name.as_bytes());
            payload.resize(payload.len().max(4 + LINE_MAX), 0);
            if payload.len() == 4 + name.len() {
                payload.push(0);
            }
            (TYPE_OPEN, payload)
        }
        Message::Close => (TYPE_CLOSE, Vec::new()),
        Message::Request(req) => {
            let mut payload = Vec::new();
            match (req.op, req.service) {
                (Op::Update, None) if req.key.is_empty() => {}
                (Op::Fetch, Some(s)) if req.key.is_empty() => {
                    payload.extend_from_slice(&s.imsg_number().to_ne_bytes());
                    payload.extend_from_slice(&0usize.to_ne_bytes());
                }
                (Op::Check | Op::Lookup, Some(s)) if !req.key.contains('\0') => {
                    payload.extend_from_slice(&s.imsg_number().to_ne_bytes());
                    payload.extend_from_slice(&0usize.to_ne_bytes());
                    payload.extend_from_slice(req.key.as_bytes());
                    payload.push(0);
                }
                _ => return Err(invalid("service or key does not fit the operation")),
            }
            (type_of_op(req.op), payload)
        }
        Message::Invalid { .. } => return Err(invalid("invalid message")),
    };
    let len = HEADER_LEN + payload.len();
    if len > MAX_MESSAGE {
        return Err(invalid("message longer than 16384 bytes"));
    }
    let mut msg = header(kind, len);
    msg.extend_from_slice(&payload);
    w.write_all(&msg)
}

/// A header for a message of `len` bytes (callers keep `len <= MAX_MESSAGE`).
/// Flags and peer id are 0; the pid is ours, as `table_api.c` sends.
fn header(kind: u32, len: usize) -> Vec<u8> {
    let mut h = Vec::with_capacity(len);
    h.extend_from_slice(&kind.to_ne_bytes());
    h.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_ne_bytes());
    h.extend_from_slice(&0u16.to_ne_bytes());
    h.extend_from_slice(&0u32.to_ne_bytes());
    h.extend_from_slice(&own_pid().to_ne_bytes());
    h
}

/// Our pid, asked once: `std::process::id` is a `getpid` system call, a
/// measurable share of a reply answered from the cache, and the table
/// never forks.
fn own_pid() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(std::process::id)
}

/// A cursor over native-endian fields that never panics: every read of too
/// few bytes is `None`.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.rest.split_first_chunk::<N>()?;
        self.rest = rest;
        Some(*head)
    }

    fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_ne_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_ne_bytes)
    }

    fn i32(&mut self) -> Option<i32> {
        self.take().map(i32::from_ne_bytes)
    }

    /// A C `size_t`: 8 bytes on 64-bit builds, 4 on 32-bit ones.
    fn usize(&mut self) -> Option<usize> {
        self.take().map(usize::from_ne_bytes)
    }

    /// The bytes up to the next NUL, which is consumed too.
    fn cstr(&mut self) -> Option<&'a [u8]> {
        let end = self.rest.iter().position(|&b| b == 0)?;
        let s = &self.rest[..end];
        self.rest = &self.rest[end + 1..];
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PID: [u8; 4] = [0x39, 0x30, 0, 0];

    /// A message with the header layout smtpd writes.
    fn msg(kind: u32, payload: &[u8]) -> Vec<u8> {
        let mut m = kind.to_ne_bytes().to_vec();
        let len = u16::try_from(HEADER_LEN + payload.len()).expect("test message fits");
        m.extend_from_slice(&len.to_ne_bytes());
        m.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        m.extend_from_slice(&PID);
        m.extend_from_slice(payload);
        m
    }

    fn lookup_payload(service: i32, key: &[u8]) -> Vec<u8> {
        let mut p = service.to_ne_bytes().to_vec();
        p.extend_from_slice(&0usize.to_ne_bytes());
        p.extend_from_slice(key);
        p.push(0);
        p
    }

    fn parsed(buf: &[u8]) -> (Message, usize) {
        parse_message(buf).expect("framed").expect("complete")
    }

    fn request(op: Op, service: Option<Service>, key: &str) -> Message {
        Message::Request(Request {
            op,
            service,
            id: String::new(),
            key: key.to_owned(),
        })
    }

    fn reply(op: Op, answer: &Answer) -> Vec<u8> {
        let mut out = Vec::new();
        write_reply(&mut out, op, answer).expect("vec write");
        out
    }

    /// Header fields of a reply, pid left out.
    fn reply_header(out: &[u8]) -> (u32, usize, u16, u32) {
        let mut r = Reader { rest: out };
        let kind = r.u32().expect("type");
        let len = usize::from(r.u16().expect("len"));
        let flags = r.u16().expect("flags");
        let peer = r.u32().expect("peerid");
        (kind, len, flags, peer)
    }

    // Observed on Debian 12's 6.8.0p2 for table `creds` (reference, 2.4).
    #[cfg(all(target_endian = "little", target_pointer_width = "64"))]
    #[test]
    fn observed_open_of_2068_bytes() {
        let mut bytes = vec![0x02, 0, 0, 0, 0x14, 0x08, 0, 0, 0, 0, 0, 0];
        bytes.extend_from_slice(&PID);
        bytes.extend_from_slice(&[0x02, 0, 0, 0]);
        bytes.extend_from_slice(b"creds");
        bytes.resize(2068, 0);
        assert_eq!(
            parsed(&bytes),
            (
                Message::Open {
                    version: 2,
                    name: "creds".into()
                },
                2068
            )
        );
    }

    #[cfg(all(target_endian = "little", target_pointer_width = "64"))]
    #[test]
    fn observed_check_bytes() {
        let mut bytes = vec![0x05, 0, 0, 0, 0x2e, 0, 0, 0, 0, 0, 0, 0];
        bytes.extend_from_slice(&PID);
        bytes.extend_from_slice(&[0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        bytes.extend_from_slice(b"alice@example.org\0");
        assert_eq!(
            parsed(&bytes),
            (
                request(Op::Check, Some(Service::Mailaddr), "alice@example.org"),
                0x2e
            )
        );
    }

    #[cfg(all(target_endian = "little", target_pointer_width = "64"))]
    #[test]
    fn observed_fetch_bytes() {
        let mut bytes = vec![0x07, 0, 0, 0, 0x1c, 0, 0, 0, 0, 0, 0, 0];
        bytes.extend_from_slice(&PID);
        bytes.extend_from_slice(&[0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            parsed(&bytes),
            (request(Op::Fetch, Some(Service::Source), ""), 0x1c)
        );
    }

    #[cfg(all(target_endian = "little", target_pointer_width = "64"))]
    #[test]
    fn observed_lookup_reply_bytes() {
        let out = reply(Op::Lookup, &Answer::Found("probe.example.org".into()));
        assert_eq!(&out[..12], &[0, 0, 0, 0, 0x26, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&out[12..16], &std::process::id().to_ne_bytes());
        assert_eq!(&out[16..20], &[1, 0, 0, 0]);
        assert_eq!(&out[20..], b"probe.example.org\0");
    }

    #[test]
    fn open_of_odd_sizes() {
        // musl's LINE_MAX 4096, a name with no NUL at all, the 5-byte minimum.
        let mut musl = 2u32.to_ne_bytes().to_vec();
        musl.extend_from_slice(b"users");
        musl.resize(4 + 4096, 0);
        let bytes = msg(TYPE_OPEN, &musl);
        assert_eq!(
            parsed(&bytes),
            (
                Message::Open {
                    version: 2,
                    name: "users".into()
                },
                4116
            )
        );
        let mut bare = 2u32.to_ne_bytes().to_vec();
        bare.extend_from_slice(b"x");
        assert_eq!(
            parsed(&msg(TYPE_OPEN, &bare)).0,
            Message::Open {
                version: 2,
                name: "x".into()
            }
        );
        let mut v3 = 3u32.to_ne_bytes().to_vec();
        v3.extend_from_slice(b"t\0junk");
        assert_eq!(
            parsed(&msg(TYPE_OPEN, &v3)).0,
            Message::Open {
                version: 3,
                name: "t".into()
            }
        );
    }

    #[test]
    fn open_shorter_than_five_bytes_is_invalid_but_framed() {
        for size in 0..5 {
            let bytes = msg(TYPE_OPEN, &vec![2; size]);
            assert_eq!(
                parsed(&bytes),
                (
                    Message::Invalid {
                        kind: TYPE_OPEN,
                        error: ProtoError::ImsgPayload("open")
                    },
                    16 + size
                )
            );
        }
    }

    #[test]
    fn update_and_close_are_header_only() {
        assert_eq!(
            parsed(&msg(TYPE_UPDATE, &[])),
            (request(Op::Update, None, ""), 16)
        );
        assert_eq!(parsed(&msg(TYPE_CLOSE, &[])), (Message::Close, 16));
    }

    #[test]
    fn lookup_of_every_service() {
        for s in Service::ALL {
            let bytes = msg(TYPE_LOOKUP, &lookup_payload(s.imsg_number(), b"bob@x.org"));
            assert_eq!(parsed(&bytes).0, request(Op::Lookup, Some(s), "bob@x.org"));
        }
    }

    #[test]
    fn empty_and_long_keys() {
        let bytes = msg(TYPE_CHECK, &lookup_payload(0x400, b""));
        assert_eq!(
            parsed(&bytes).0,
            request(Op::Check, Some(Service::String), "")
        );
        let key = "k".repeat(1023);
        let bytes = msg(TYPE_LOOKUP, &lookup_payload(1, key.as_bytes()));
        assert_eq!(
            parsed(&bytes).0,
            request(Op::Lookup, Some(Service::Alias), &key)
        );
    }

    #[test]
    fn params_pairs_are_skipped() {
        let mut p = 1i32.to_ne_bytes().to_vec();
        p.extend_from_slice(&2usize.to_ne_bytes());
        p.extend_from_slice(b"a\0b\0c\0\0key\0trailing");
        assert_eq!(
            parsed(&msg(TYPE_LOOKUP, &p)).0,
            request(Op::Lookup, Some(Service::Alias), "key")
        );
        // A count far beyond the payload is a truncated message, not a hang.
        let mut p = 1i32.to_ne_bytes().to_vec();
        p.extend_from_slice(&usize::MAX.to_ne_bytes());
        p.extend_from_slice(b"a\0b\0");
        assert_eq!(
            parsed(&msg(TYPE_LOOKUP, &p)).0,
            Message::Invalid {
                kind: TYPE_LOOKUP,
                error: ProtoError::ImsgPayload("lookup")
            }
        );
    }

    #[test]
    fn malformed_requests_are_invalid_and_keep_their_length() {
        let cases: Vec<(u32, Vec<u8>, ProtoError)> = vec![
            (TYPE_CHECK, vec![1, 0], ProtoError::ImsgPayload("check")),
            (
                TYPE_FETCH,
                1i32.to_ne_bytes().to_vec(),
                ProtoError::ImsgPayload("fetch"),
            ),
            (
                TYPE_LOOKUP,
                lookup_payload(1, b"no-nul")
                    .split_last()
                    .expect("nonempty")
                    .1
                    .to_vec(),
                ProtoError::ImsgPayload("lookup"),
            ),
            (
                TYPE_LOOKUP,
                lookup_payload(0, b"k"),
                ProtoError::ImsgService(0),
            ),
            (
                TYPE_LOOKUP,
                lookup_payload(0xfff, b"k"),
                ProtoError::ImsgService(0xfff),
            ),
            (
                TYPE_CHECK,
                lookup_payload(1, b"\xffbob"),
                ProtoError::KeyNotUtf8 {
                    op: Op::Check,
                    id: String::new(),
                },
            ),
            (TYPE_OK, vec![], ProtoError::ImsgType(0)),
            (TYPE_FAIL, vec![], ProtoError::ImsgType(1)),
            (99, vec![1, 2, 3], ProtoError::ImsgType(99)),
        ];
        for (kind, payload, error) in cases {
            let bytes = msg(kind, &payload);
            assert_eq!(
                parsed(&bytes),
                (Message::Invalid { kind, error }, bytes.len()),
                "type {kind}"
            );
        }
    }

    #[test]
    fn incomplete_is_not_an_error() {
        let bytes = msg(TYPE_LOOKUP, &lookup_payload(1, b"bob"));
        for cut in 0..bytes.len() {
            assert_eq!(parse_message(&bytes[..cut]), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn bad_lengths_are_framing_errors() {
        for len in [0u16, 15, 16385, u16::MAX] {
            let mut bytes = TYPE_UPDATE.to_ne_bytes().to_vec();
            bytes.extend_from_slice(&len.to_ne_bytes());
            bytes.resize(16, 0);
            assert_eq!(
                parse_message(&bytes),
                Err(ProtoError::ImsgLength(usize::from(len)))
            );
        }
    }

    #[test]
    fn several_messages_in_one_buffer() {
        let mut bytes = msg(TYPE_UPDATE, &[]);
        bytes.extend(msg(TYPE_CHECK, &lookup_payload(2, b"example.org")));
        let (first, n) = parsed(&bytes);
        assert_eq!(first, request(Op::Update, None, ""));
        let (second, m) = parsed(&bytes[n..]);
        assert_eq!(
            second,
            request(Op::Check, Some(Service::Domain), "example.org")
        );
        assert_eq!(n + m, bytes.len());
    }

    #[test]
    fn open_reply_is_a_bare_header() {
        let mut out = Vec::new();
        write_open_reply(&mut out).expect("vec write");
        assert_eq!(out.len(), 16);
        assert_eq!(reply_header(&out), (TYPE_OK, 16, 0, 0));
    }

    #[test]
    fn check_and_update_replies_are_four_bytes() {
        let cases = [
            (Op::Check, Answer::Found("x".into()), 1i32),
            (Op::Check, Answer::Found(String::new()), 1),
            (Op::Check, Answer::NotFound, 0),
            (Op::Check, Answer::Error("down".into()), -1),
            (Op::Update, Answer::Found(String::new()), 1),
            (Op::Update, Answer::NotFound, 0),
            (Op::Update, Answer::Error("down".into()), -1),
            (Op::Lookup, Answer::NotFound, 0),
            (Op::Lookup, Answer::Error("down".into()), -1),
            (Op::Fetch, Answer::NotFound, 0),
            (Op::Fetch, Answer::Error("down".into()), -1),
        ];
        for (op, answer, r) in cases {
            let out = reply(op, &answer);
            assert_eq!(reply_header(&out), (TYPE_OK, 20, 0, 0), "{op} {answer:?}");
            assert_eq!(&out[16..], &r.to_ne_bytes(), "{op} {answer:?}");
        }
    }

    #[test]
    fn found_values_are_nul_terminated() {
        for op in [Op::Lookup, Op::Fetch] {
            let out = reply(op, &Answer::Found("1000:1000:/var/vmail".into()));
            assert_eq!(reply_header(&out), (TYPE_OK, 16 + 4 + 21, 0, 0));
            assert_eq!(&out[16..20], &1i32.to_ne_bytes());
            assert_eq!(&out[20..], b"1000:1000:/var/vmail\0");
        }
    }

    #[test]
    fn unusable_or_oversize_values_become_errors() {
        let largest = "v".repeat(MAX_MESSAGE - HEADER_LEN - 4 - 1);
        let out = reply(Op::Lookup, &Answer::Found(largest.clone()));
        assert_eq!(out.len(), MAX_MESSAGE);
        assert_eq!(reply_header(&out).1, MAX_MESSAGE);
        assert_eq!(largest.len(), SMTPD_IMSG_VALUE_MAX, "the core's bound");
        assert_eq!(
            refused_value(Op::Lookup, &Answer::Found(largest.clone())),
            None
        );
        let too_long = format!("{largest}v");
        for bad in ["", "a\0b", "a\nb", "a\r", too_long.as_str()] {
            let out = reply(Op::Lookup, &Answer::Found(bad.into()));
            assert_eq!(out.len(), 20);
            assert_eq!(&out[16..], &(-1i32).to_ne_bytes());
            assert!(refused_value(Op::Lookup, &Answer::Found(bad.into())).is_some());
        }
        let why = refused_value(Op::Fetch, &Answer::Found(too_long)).unwrap();
        assert!(
            why.starts_with("the answer is 16364 bytes, over the 16363"),
            "{why}"
        );
        // A check carries no value: any found answer goes out.
        assert_eq!(refused_value(Op::Check, &Answer::Found("".into())), None);
    }

    #[test]
    fn requests_round_trip() {
        let cases = [
            Message::Open {
                version: 2,
                name: "creds".into(),
            },
            Message::Open {
                version: 2,
                name: "n".repeat(3000),
            },
            Message::Close,
            request(Op::Update, None, ""),
            request(Op::Fetch, Some(Service::Source), ""),
            request(Op::Check, Some(Service::Mailaddr), "alice@example.org"),
            request(Op::Lookup, Some(Service::Auth), "a@b:c|d"),
            request(Op::Lookup, Some(Service::Alias), ""),
        ];
        for m in cases {
            let mut out = Vec::new();
            write_request(&mut out, &m).expect("writable");
            assert_eq!(parsed(&out), (m, out.len()));
        }
    }

    #[test]
    fn unwritable_requests_are_refused() {
        let bad = [
            request(Op::Update, Some(Service::Alias), ""),
            request(Op::Fetch, None, ""),
            request(Op::Fetch, Some(Service::Source), "k"),
            request(Op::Lookup, Some(Service::Alias), "a\0b"),
            request(Op::Lookup, Some(Service::Alias), &"k".repeat(MAX_MESSAGE)),
            Message::Open {
                version: 2,
                name: "a\0b".into(),
            },
            Message::Invalid {
                kind: 9,
                error: ProtoError::ImsgType(9),
            },
        ];
        for m in bad {
            let mut out = Vec::new();
            assert!(write_request(&mut out, &m).is_err(), "{m:?}");
            assert!(out.is_empty());
        }
    }
}
