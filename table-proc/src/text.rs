//! The line protocol "0.1" of OpenSMTPD 7.6 and later: pure parsers and
//! writers, no I/O of their own.
//!
//! smtpd's side is `usr.sbin/smtpd/table_proc.c` (OpenSMTPD/OpenSMTPD, tags
//! 7.6.0p0 to 7.8.0p1) and the man page `smtpd-tables.7`; where the two
//! differ, the code wins (fetch replies are `fetch-result`, not the man page's
//! `lookup-result`). smtpd reads every reply with `getline` and treats
//! anything it cannot parse as fatal, so the writers here are built to be
//! unable to produce a malformed line: a value that cannot travel becomes
//! `error|...`, reasons are cleaned and capped, and an id that could not be
//! echoed safely is refused before a byte is written.
//!
//! Parsers take one line without its `\n`. The framing (splitting lines,
//! bounding their length, dropping injected bytes) is the loop's job in
//! `serve.rs`.

use std::io::{self, Write};

use crate::proto::{sanitize_reason, valid_value, Answer, Op, ProtoError, Request, Service};

/// The only protocol version there is (`config|protocol|0.1`).
pub const PROTOCOL_VERSION: &str = "0.1";

/// One line of the handshake smtpd sends before any request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigLine {
    /// `config|ready`: the handshake is over, register now.
    Ready,
    /// `config|<key>|<value>`, e.g. `smtpd-version`, `protocol`, `tablename`.
    /// Unknown keys are kept for forward compatibility; the value is the rest
    /// of the line and may contain `|`.
    Entry {
        /// The word after `config|`.
        key: String,
        /// Everything after the key's `|`, possibly empty.
        value: String,
    },
}

/// Parses one handshake line, e.g. `config|tablename|creds`.
pub fn parse_config_line(line: &str) -> Result<ConfigLine, ProtoError> {
    if line.contains('\n') {
        return Err(ProtoError::LineFeed);
    }
    let rest = line.strip_prefix("config|").ok_or(ProtoError::NotConfig)?;
    if rest == "ready" {
        return Ok(ConfigLine::Ready);
    }
    let (key, value) = rest.split_once('|').unwrap_or((rest, ""));
    Ok(ConfigLine::Entry {
        key: key.to_owned(),
        value: value.to_owned(),
    })
}

/// What the handshake said that reading the requests depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// `config|protocol|`: the version every request line carries.
    pub version: String,
    /// `config|tablename|`: the table's name in smtpd.conf, which every
    /// request line carries too.
    pub table: String,
}

impl Default for Session {
    /// Before (or without) a handshake: version 0.1, name unknown.
    fn default() -> Session {
        Session {
            version: PROTOCOL_VERSION.to_owned(),
            table: String::new(),
        }
    }
}

/// `line.splitn(8, '|')` into an array, with the number of fields: at most
/// eight, the last (the key) may contain `|`. By hand, because this runs
/// for every lookup and the generic splitter and a `Vec` cost more than the
/// rest of parsing. `|` is ASCII, so every cut is at a char boundary.
///
/// The table name (field 3) is the one field before the key that may hold
/// `|` too: smtpd.conf accepts `|` in an unquoted name (`allowed_in_string`
/// in `usr.sbin/smtpd/parse.y`) and `table_proc.c` writes the name as it
/// is. `table` is the name the handshake gave; where it holds `|` and the
/// line carries it, it is taken whole. Without that, every request of such
/// a table was unparseable, so never answered, and smtpd waited forever.
fn split_fields<'a>(line: &'a str, table: &str) -> ([&'a str; 8], usize) {
    let mut fields = [""; 8];
    let mut count = 0;
    let mut rest = line;
    while count < 7 {
        let whole_name = count == 3
            && table.contains('|')
            && rest.strip_prefix(table).is_some_and(|r| r.starts_with('|'));
        let bar = match whole_name {
            true => Some(table.len()),
            false => rest.bytes().position(|b| b == b'|'),
        };
        let Some(bar) = bar else {
            break;
        };
        fields[count] = &rest[..bar];
        rest = &rest[bar + 1..];
        count += 1;
    }
    fields[count] = rest;
    (fields, count + 1)
}

/// Parses one request line such as
/// `table|0.1|1713795082.354255|creds|lookup|credentials|f4a835e2|alice@example.org`.
///
/// The line is split into at most eight fields, as smtpd's own parser of the
/// backend side does (smtpd-tables.7): the key is the rest of the line, may
/// contain `|` (an `auth` key carries a password) and may be empty (`match
/// tag` on an untagged message sends `...|check|string|b21277ff|`). Update
/// has no service, fetch has no key. The id must be non-empty printable ASCII
/// without `|`; smtpd sends `%08x` but the id is only ever echoed, so any
/// such word is accepted and returned exactly.
///
/// A request on an unknown service still yields its op and id, in
/// [`ProtoError::UnknownService`], because smtpd waits for an answer to it.
///
/// This reads version 0.1 of a table whose name has no `|`; the serving
/// loop reads with what its handshake said ([`parse_request_in`]).
pub fn parse_request(line: &str) -> Result<Request, ProtoError> {
    parse_request_in(line, &Session::default())
}

/// [`parse_request`] in a session: the version field must be the one the
/// handshake announced (a newer smtpd's requests are read as 0.1's, as the
/// handshake's warning says, rather than left unanswered), and the table
/// name is the one it gave, `|` and all.
pub fn parse_request_in(line: &str, session: &Session) -> Result<Request, ProtoError> {
    if line.contains('\n') {
        return Err(ProtoError::LineFeed);
    }
    let (slots, count) = split_fields(line, &session.table);
    let fields = &slots[..count];
    if fields.first() != Some(&"table") || fields.len() < 5 {
        return Err(ProtoError::NotARequest);
    }
    if fields[1] != session.version {
        return Err(ProtoError::Version(fields[1].to_owned()));
    }
    if !valid_timestamp(fields[2]) {
        return Err(ProtoError::Timestamp(fields[2].to_owned()));
    }
    if fields[3].is_empty() {
        return Err(ProtoError::TableName);
    }
    let op: Op = fields[4].parse()?;
    let want = match op {
        Op::Update => 6,
        Op::Fetch => 7,
        Op::Check | Op::Lookup => 8,
    };
    if fields.len() != want {
        return Err(ProtoError::FieldCount {
            op,
            count: fields.len(),
        });
    }
    if op == Op::Update {
        return Ok(Request {
            op,
            service: None,
            id: checked_id(fields[5])?.to_owned(),
            key: String::new(),
        });
    }
    let id = checked_id(fields[6])?.to_owned();
    let service: Service = match fields[5].parse() {
        Ok(service) => service,
        Err(_) => {
            return Err(ProtoError::UnknownService {
                op,
                id,
                service: fields[5].to_owned(),
            })
        }
    };
    let key = fields.get(7).copied().unwrap_or_default().to_owned();
    Ok(Request {
        op,
        service: Some(service),
        id,
        key,
    })
}

/// [`parse_request`] for raw bytes off the socket.
///
/// Only the key can carry 8-bit bytes from an SMTP client (an AUTH user name
/// is base64-decoded bytes, a recipient may be 8-bit); the other fields come
/// from smtpd's format strings and config. A request whose key is not UTF-8
/// gives [`ProtoError::KeyNotUtf8`] with its op and id so that it can still
/// be answered; other non-UTF-8 fields are read lossily (the table name and
/// timestamp are never used, and a damaged id fails validation).
pub fn parse_request_bytes(line: &[u8], session: &Session) -> Result<Request, ProtoError> {
    if let Ok(s) = std::str::from_utf8(line) {
        return parse_request_in(s, session);
    }
    // The key starts after the seventh `|`, not counting those of the
    // table's name (field 3, as `split_fields` takes it).
    let after_bar = |n: usize| {
        line.iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'|')
            .nth(n)
            .map(|(i, _)| i + 1)
    };
    let name = session.table.as_bytes();
    let name_bars = match after_bar(2).and_then(|i| line[i..].strip_prefix(name)) {
        Some([b'|', ..]) if name.contains(&b'|') => name.iter().filter(|&&b| b == b'|').count(),
        _ => 0,
    };
    let key_start = after_bar(6 + name_bars);
    let (head, key) = match key_start {
        Some(i) => line.split_at(i),
        None => (line, &[][..]),
    };
    let head = String::from_utf8_lossy(head);
    match std::str::from_utf8(key) {
        Ok(key) => parse_request_in(&format!("{head}{key}"), session),
        Err(_) => {
            let req = parse_request_in(&head, session)?;
            Err(ProtoError::KeyNotUtf8 {
                op: req.op,
                id: req.id,
            })
        }
    }
}

/// Writes the handshake answer: one `register|<service>` line per service,
/// then `register|ready`.
///
/// smtpd exits on zero registered services ("no services registered") and
/// enforces the registered set only for `auth` (`lka_authenticate` in
/// `usr.sbin/smtpd/lka.c`), so an empty list registers every service except
/// `auth` instead of killing smtpd. Duplicates are written once.
pub fn write_register(w: &mut impl Write, services: &[Service]) -> io::Result<()> {
    let mut seen: Vec<Service> = Vec::with_capacity(Service::ALL.len());
    for &s in services {
        if !seen.contains(&s) {
            seen.push(s);
        }
    }
    if seen.is_empty() {
        seen = Service::ALL
            .into_iter()
            .filter(|&s| s != Service::Auth)
            .collect();
    }
    let mut out = String::new();
    for s in seen {
        out.push_str("register|");
        out.push_str(s.name());
        out.push('\n');
    }
    out.push_str("register|ready\n");
    w.write_all(out.as_bytes())
}

/// Writes the reply to request `id`, e.g. `lookup-result|f4a835e2|found|alice@example.org`.
///
/// The result part follows the operation (`table_proc.c`, which parses
/// the reply of each op):
///
/// * check: `found` for any [`Answer::Found`] (the value is not sent),
///   `not-found`, `error|<reason>`;
/// * lookup and fetch: `found|<value>`, `not-found`, `error|<reason>`; a
///   found value that is empty or holds `\r`, `\n` or NUL becomes
///   `error|...`, because smtpd dies on `found|` with nothing after it and
///   reads only up to `\n`;
/// * update: `ok` for [`Answer::Found`], `error|not found` for
///   [`Answer::NotFound`], `error|<reason>`.
///
/// Reasons go through [`sanitize_reason`]. An id that [`parse_request`]
/// would refuse is refused here with [`io::ErrorKind::InvalidInput`] before
/// anything is written: no valid reply to it exists.
pub fn write_reply(w: &mut impl Write, op: Op, id: &str, answer: &Answer) -> io::Result<()> {
    if checked_id(id).is_err() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "request id cannot be echoed",
        ));
    }
    let reason;
    let (result, value) = match (op, answer) {
        (Op::Check, Answer::Found(_)) => ("found", ""),
        (Op::Lookup | Op::Fetch, Answer::Found(v)) if valid_value(v) => ("found|", v.as_str()),
        (Op::Lookup | Op::Fetch, Answer::Found(_)) => (
            "error|table produced an empty value or one with CR, LF or NUL",
            "",
        ),
        (Op::Update, Answer::Found(_)) => ("ok", ""),
        (Op::Update, Answer::NotFound) => ("error|not found", ""),
        (_, Answer::NotFound) => ("not-found", ""),
        (_, Answer::Error(r)) => {
            reason = sanitize_reason(r);
            ("error|", &*reason)
        }
    };
    // The channel is unbuffered and smtpd reads whole lines: one write
    // per reply. `concat`, which allocates the exact size once, because
    // this runs for every lookup and `format!` cost more than the rest of
    // a cached one.
    let line = [op.name(), "-result|", id, "|", result, value, "\n"].concat();
    w.write_all(line.as_bytes())
}

/// Writes `req` as smtpd would, for table `table` at `timestamp`
/// (`seconds.micros`). The inverse of [`parse_request_in`] in a session of
/// that table, for tests and the fuzz round trip (a name may hold `|`, as
/// smtpd's may).
///
/// Refuses with [`io::ErrorKind::InvalidInput`] what smtpd could not send
/// and [`parse_request_in`] would not read back: a bad id, table name or
/// timestamp, a key with `\n`, a key on fetch or update, a missing service
/// (or one on update).
pub fn write_request(
    w: &mut impl Write,
    table: &str,
    timestamp: &str,
    req: &Request,
) -> io::Result<()> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_owned());
    if table.is_empty() || table.contains('\n') {
        return Err(invalid("bad table name"));
    }
    if !valid_timestamp(timestamp) {
        return Err(invalid("bad timestamp"));
    }
    if checked_id(&req.id).is_err() {
        return Err(invalid("bad request id"));
    }
    if req.key.contains('\n') {
        return Err(invalid("line feed in key"));
    }
    let head = format!("table|{PROTOCOL_VERSION}|{timestamp}|{table}|{}", req.op);
    let line = match (req.op, req.service) {
        (Op::Update, None) if req.key.is_empty() => format!("{head}|{}\n", req.id),
        (Op::Fetch, Some(s)) if req.key.is_empty() => format!("{head}|{s}|{}\n", req.id),
        (Op::Check | Op::Lookup, Some(s)) => format!("{head}|{s}|{}|{}\n", req.id, req.key),
        _ => return Err(invalid("service or key does not fit the operation")),
    };
    w.write_all(line.as_bytes())
}

/// `%lld.%06ld` in smtpd (`table_proc.c`); accepted as digits, optionally
/// followed by a dot and more digits.
fn valid_timestamp(ts: &str) -> bool {
    let (secs, micros) = ts.split_once('.').unwrap_or((ts, "0"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(secs) && digits(micros)
}

/// An id is echoed into the reply, so it must not be able to break the line.
fn checked_id(id: &str) -> Result<&str, ProtoError> {
    let printable = id.bytes().all(|b| b.is_ascii_graphic() && b != b'|');
    if id.is_empty() || !printable {
        return Err(ProtoError::Id(id.to_owned()));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(op: Op, service: Option<Service>, id: &str, key: &str) -> Request {
        Request {
            op,
            service,
            id: id.to_owned(),
            key: key.to_owned(),
        }
    }

    /// The hand-written split is `splitn(8, '|')`, on every string of up
    /// to nine characters over `|`, an ASCII letter and a two-byte one.
    #[test]
    fn split_fields_is_splitn_8() {
        let alphabet = ['|', 'a', 'é'];
        let mut level = vec![String::new()];
        let mut lines = level.clone();
        for _ in 0..9 {
            level = level
                .iter()
                .flat_map(|l| alphabet.iter().map(move |c| format!("{l}{c}")))
                .collect();
            lines.extend(level.iter().cloned());
        }
        assert_eq!(lines.len(), (0..=9).map(|n| 3usize.pow(n)).sum::<usize>());
        for line in &lines {
            let (fields, count) = split_fields(line, "");
            let want: Vec<&str> = line.splitn(8, '|').collect();
            assert_eq!(&fields[..count], &want[..], "{line:?}");
            // A name without `|` changes nothing.
            assert_eq!(split_fields(line, "a"), (fields, count), "{line:?}");
        }
    }

    #[test]
    fn a_table_name_with_bars_is_one_field() {
        let s = Session {
            table: "my|users".into(),
            ..Session::default()
        };
        for (line, want) in [
            (
                "table|0.1|1.5|my|users|lookup|credentials|00000001|hugo@barrera.io",
                Ok(req(
                    Op::Lookup,
                    Some(Service::Credentials),
                    "00000001",
                    "hugo@barrera.io",
                )),
            ),
            (
                "table|0.1|1.5|my|users|check|alias|00000002|a|b",
                Ok(req(Op::Check, Some(Service::Alias), "00000002", "a|b")),
            ),
            (
                "table|0.1|1.5|my|users|update|00000003",
                Ok(req(Op::Update, None, "00000003", "")),
            ),
            (
                "table|0.1|1.5|my|users|fetch|source|00000004",
                Ok(req(Op::Fetch, Some(Service::Source), "00000004", "")),
            ),
            // Another name (not this table's) is split as before.
            (
                "table|0.1|1.5|other|lookup|alias|00000005|x",
                Ok(req(Op::Lookup, Some(Service::Alias), "00000005", "x")),
            ),
            // A name that only starts like this table's is not taken.
            (
                "table|0.1|1.5|my|usersx|lookup|alias|00000006|x",
                Err(ProtoError::UnknownOp("usersx".into())),
            ),
        ] {
            assert_eq!(parse_request_in(line, &s), want, "{line}");
            assert_eq!(parse_request_bytes(line.as_bytes(), &s), want, "{line}");
        }
        // The 8-bit key path counts the name's bars too.
        let mut line = b"table|0.1|1.5|my|users|lookup|alias|00000007|b".to_vec();
        line.push(0xff);
        assert_eq!(
            parse_request_bytes(&line, &s),
            Err(ProtoError::KeyNotUtf8 {
                op: Op::Lookup,
                id: "00000007".to_owned()
            })
        );
        // Without the handshake's name the line is not a request.
        assert!(parse_request("table|0.1|1.5|my|users|lookup|alias|00000001|x").is_err());
    }

    #[test]
    fn the_announced_version_is_read() {
        let s = Session {
            version: "0.2".into(),
            ..Session::default()
        };
        let line = "table|0.2|1.5|t|lookup|alias|00000001|x";
        assert_eq!(
            parse_request_in(line, &s),
            Ok(req(Op::Lookup, Some(Service::Alias), "00000001", "x"))
        );
        assert_eq!(
            parse_request_in("table|0.1|1.5|t|lookup|alias|00000001|x", &s),
            Err(ProtoError::Version("0.1".into()))
        );
        assert_eq!(parse_request(line), Err(ProtoError::Version("0.2".into())));
    }

    fn reply(op: Op, id: &str, answer: &Answer) -> String {
        let mut out = Vec::new();
        write_reply(&mut out, op, id, answer).expect("valid id");
        String::from_utf8(out).expect("replies are utf-8")
    }

    // The four observed request lines of the reference, section 3.4.
    #[test]
    fn observed_lookup_line() {
        let line =
            "table|0.1|1795313212.429891|creds|lookup|credentials|f4a835e2|alice@example.org";
        assert_eq!(
            parse_request(line),
            Ok(req(
                Op::Lookup,
                Some(Service::Credentials),
                "f4a835e2",
                "alice@example.org"
            ))
        );
    }

    #[test]
    fn observed_check_line() {
        let line = "table|0.1|1795313213.693606|mf|check|mailaddr|2a94060e|alice@example.org";
        assert_eq!(
            parse_request(line),
            Ok(req(
                Op::Check,
                Some(Service::Mailaddr),
                "2a94060e",
                "alice@example.org"
            ))
        );
    }

    #[test]
    fn observed_fetch_line_has_no_key() {
        let line = "table|0.1|1795313468.209204|srcs|fetch|source|803f9730";
        assert_eq!(
            parse_request(line),
            Ok(req(Op::Fetch, Some(Service::Source), "803f9730", ""))
        );
    }

    #[test]
    fn observed_update_line_has_no_service() {
        let line = "table|0.1|1795313213.758366|creds|update|ecbaaee1";
        assert_eq!(
            parse_request(line),
            Ok(req(Op::Update, None, "ecbaaee1", ""))
        );
    }

    #[test]
    fn key_is_the_rest_of_the_line_pipes_included() {
        let line =
            "table|0.1|1795313212.429891|auth|lookup|auth|0badf00d|alice@example.org:mixed|pa:ss";
        assert_eq!(
            parse_request(line),
            Ok(req(
                Op::Lookup,
                Some(Service::Auth),
                "0badf00d",
                "alice@example.org:mixed|pa:ss"
            ))
        );
        let line = "table|0.1|1.2|t|check|string|00000001||||";
        assert_eq!(parse_request(line).map(|r| r.key), Ok("|||".to_owned()));
    }

    #[test]
    fn empty_key_is_a_key() {
        let line = "table|0.1|1795313212.429891|tg|check|string|b21277ff|";
        assert_eq!(
            parse_request(line),
            Ok(req(Op::Check, Some(Service::String), "b21277ff", ""))
        );
    }

    #[test]
    fn check_or_lookup_without_key_field_is_refused() {
        let line = "table|0.1|1795313212.429891|tg|check|string|b21277ff";
        assert_eq!(
            parse_request(line),
            Err(ProtoError::FieldCount {
                op: Op::Check,
                count: 7
            })
        );
    }

    #[test]
    fn longest_key_smtpd_sends() {
        // table_lookup() refuses keys of 1024 bytes or more (usr.sbin/smtpd/table.c).
        let key = "k".repeat(1023);
        let line = format!("table|0.1|1.000001|t|lookup|alias|12345678|{key}");
        assert_eq!(parse_request(&line).map(|r| r.key), Ok(key));
    }

    #[test]
    fn every_service_and_op_parses() {
        for s in Service::ALL {
            for op in [Op::Check, Op::Lookup] {
                let line = format!("table|0.1|1.5|t|{op}|{s}|abcdef01|k");
                assert_eq!(parse_request(&line), Ok(req(op, Some(s), "abcdef01", "k")));
            }
            let line = format!("table|0.1|1.5|t|fetch|{s}|abcdef01");
            assert_eq!(
                parse_request(&line),
                Ok(req(Op::Fetch, Some(s), "abcdef01", ""))
            );
        }
    }

    #[test]
    fn unknown_service_keeps_op_and_id() {
        let line = "table|0.1|1.5|t|lookup|bogus|abcdef01|k";
        assert_eq!(
            parse_request(line),
            Err(ProtoError::UnknownService {
                op: Op::Lookup,
                id: "abcdef01".to_owned(),
                service: "bogus".to_owned()
            })
        );
        let line = "table|0.1|1.5|t|fetch|none|abcdef01";
        assert!(matches!(
            parse_request(line),
            Err(ProtoError::UnknownService { op: Op::Fetch, .. })
        ));
    }

    #[test]
    fn garbage_lines_are_refused() {
        let cases: &[(&str, ProtoError)] = &[
            ("", ProtoError::NotARequest),
            ("ss", ProtoError::NotARequest),
            ("table", ProtoError::NotARequest),
            ("table|0.1|1.5|t", ProtoError::NotARequest),
            ("config|ready", ProtoError::NotARequest),
            ("lookup-result|f4a835e2|not-found", ProtoError::NotARequest),
            (
                "table|0.2|1.5|t|update|abcdef01",
                ProtoError::Version("0.2".into()),
            ),
            (
                "table|0.1|x|t|update|abcdef01",
                ProtoError::Timestamp("x".into()),
            ),
            (
                "table|0.1|1.|t|update|abcdef01",
                ProtoError::Timestamp("1.".into()),
            ),
            (
                "table|0.1||t|update|abcdef01",
                ProtoError::Timestamp("".into()),
            ),
            ("table|0.1|1.5||update|abcdef01", ProtoError::TableName),
            (
                "table|0.1|1.5|t|delete|abcdef01",
                ProtoError::UnknownOp("delete".into()),
            ),
            ("table|0.1|1.5|t|update|", ProtoError::Id("".into())),
            (
                "table|0.1|1.5|t|update|ab\rcd",
                ProtoError::Id("ab\rcd".into()),
            ),
            (
                "table|0.1|1.5|t|update|abcdef01|x",
                ProtoError::FieldCount {
                    op: Op::Update,
                    count: 7,
                },
            ),
            (
                "table|0.1|1.5|t|fetch|source|abcdef01|",
                ProtoError::FieldCount {
                    op: Op::Fetch,
                    count: 8,
                },
            ),
            ("table|0.1|1.5|t|lookup|alias|id\nx|k", ProtoError::LineFeed),
        ];
        for (line, want) in cases {
            assert_eq!(parse_request(line).as_ref(), Err(want), "{line:?}");
        }
    }

    #[test]
    fn id_is_echoed_exactly_even_when_not_hex() {
        let line = "table|0.1|1.5|t|lookup|alias|Request-42|bob";
        let r = parse_request(line).expect("parses");
        assert_eq!(r.id, "Request-42");
        assert_eq!(
            reply(r.op, &r.id, &Answer::NotFound),
            "lookup-result|Request-42|not-found\n"
        );
    }

    #[test]
    fn key_may_hold_cr_and_nul() {
        // 7.6.0 .. 7.8.0p0 pass a CR of an AUTH user name through; it is key data.
        let line = "table|0.1|1.5|t|lookup|credentials|abcdef01|bob\r";
        assert_eq!(parse_request(line).map(|r| r.key), Ok("bob\r".to_owned()));
    }

    #[test]
    fn bytes_with_8bit_key_are_still_answerable() {
        let mut line = b"table|0.1|1.5|t|lookup|credentials|abcdef01|b".to_vec();
        line.push(0xff);
        assert_eq!(
            parse_request_bytes(&line, &Session::default()),
            Err(ProtoError::KeyNotUtf8 {
                op: Op::Lookup,
                id: "abcdef01".to_owned()
            })
        );
        let line = "table|0.1|1.5|t|lookup|alias|abcdef01|jürgen@x.org".as_bytes();
        assert_eq!(
            parse_request_bytes(line, &Session::default()).map(|r| r.key),
            Ok("jürgen@x.org".to_owned())
        );
    }

    #[test]
    fn bytes_with_8bit_table_name_are_read_lossily() {
        let mut line = b"table|0.1|1.5|t".to_vec();
        line.push(0xe9);
        line.extend_from_slice(b"|lookup|alias|abcdef01|bob|x");
        assert_eq!(
            parse_request_bytes(&line, &Session::default()),
            Ok(req(Op::Lookup, Some(Service::Alias), "abcdef01", "bob|x"))
        );
        let mut line = b"table|0.1|1.5|t".to_vec();
        line.push(0xe9);
        line.extend_from_slice(b"|update|abcdef01");
        assert_eq!(
            parse_request_bytes(&line, &Session::default()),
            Ok(req(Op::Update, None, "abcdef01", ""))
        );
        assert_eq!(
            parse_request_bytes(&[0xff, b'|'], &Session::default()),
            Err(ProtoError::NotARequest)
        );
    }

    #[test]
    fn config_lines_of_the_observed_handshake() {
        assert_eq!(
            parse_config_line("config|smtpd-version|7.8.0-portable"),
            Ok(ConfigLine::Entry {
                key: "smtpd-version".into(),
                value: "7.8.0-portable".into()
            })
        );
        assert_eq!(
            parse_config_line("config|protocol|0.1"),
            Ok(ConfigLine::Entry {
                key: "protocol".into(),
                value: "0.1".into()
            })
        );
        assert_eq!(
            parse_config_line("config|tablename|a|b"),
            Ok(ConfigLine::Entry {
                key: "tablename".into(),
                value: "a|b".into()
            })
        );
        assert_eq!(parse_config_line("config|ready"), Ok(ConfigLine::Ready));
        assert_eq!(
            parse_config_line("config|future"),
            Ok(ConfigLine::Entry {
                key: "future".into(),
                value: String::new()
            })
        );
        assert_eq!(parse_config_line("config"), Err(ProtoError::NotConfig));
        assert_eq!(
            parse_config_line("table|0.1|1.5|t|update|abcdef01"),
            Err(ProtoError::NotConfig)
        );
    }

    #[test]
    fn register_lines() {
        let mut out = Vec::new();
        write_register(
            &mut out,
            &[Service::Alias, Service::Credentials, Service::Alias],
        )
        .expect("vec write");
        assert_eq!(
            out,
            b"register|alias\nregister|credentials\nregister|ready\n"
        );
    }

    #[test]
    fn empty_register_list_still_registers_something() {
        let mut out = Vec::new();
        write_register(&mut out, &[]).expect("vec write");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(text.starts_with("register|alias\n"));
        assert!(text.ends_with("register|regex\nregister|ready\n"));
        assert!(!text.contains("register|auth"));
        assert_eq!(text.lines().count(), 13);
    }

    // The observed replies of the reference, section 3.5.
    #[test]
    fn observed_replies() {
        assert_eq!(
            reply(
                Op::Lookup,
                "f4a835e2",
                &Answer::Found("alice@example.org:$6$RqY8".into())
            ),
            "lookup-result|f4a835e2|found|alice@example.org:$6$RqY8\n"
        );
        assert_eq!(
            reply(Op::Check, "2a94060e", &Answer::NotFound),
            "check-result|2a94060e|not-found\n"
        );
        assert_eq!(
            reply(Op::Fetch, "803f9730", &Answer::Found("127.0.0.1".into())),
            "fetch-result|803f9730|found|127.0.0.1\n"
        );
        assert_eq!(
            reply(Op::Update, "ecbaaee1", &Answer::Found(String::new())),
            "update-result|ecbaaee1|ok\n"
        );
    }

    #[test]
    fn every_reply_form() {
        let id = "0000abcd";
        let found = Answer::Found("v|w".into());
        let err = Answer::Error("backend down".into());
        let cases = [
            (Op::Check, &found, "check-result|0000abcd|found\n"),
            (
                Op::Check,
                &Answer::Found(String::new()),
                "check-result|0000abcd|found\n",
            ),
            (
                Op::Check,
                &Answer::NotFound,
                "check-result|0000abcd|not-found\n",
            ),
            (
                Op::Check,
                &err,
                "check-result|0000abcd|error|backend down\n",
            ),
            (Op::Lookup, &found, "lookup-result|0000abcd|found|v|w\n"),
            (
                Op::Lookup,
                &Answer::NotFound,
                "lookup-result|0000abcd|not-found\n",
            ),
            (
                Op::Lookup,
                &err,
                "lookup-result|0000abcd|error|backend down\n",
            ),
            (Op::Fetch, &found, "fetch-result|0000abcd|found|v|w\n"),
            (
                Op::Fetch,
                &Answer::NotFound,
                "fetch-result|0000abcd|not-found\n",
            ),
            (
                Op::Fetch,
                &err,
                "fetch-result|0000abcd|error|backend down\n",
            ),
            (Op::Update, &found, "update-result|0000abcd|ok\n"),
            (
                Op::Update,
                &Answer::NotFound,
                "update-result|0000abcd|error|not found\n",
            ),
            (
                Op::Update,
                &err,
                "update-result|0000abcd|error|backend down\n",
            ),
        ];
        for (op, answer, want) in cases {
            assert_eq!(reply(op, id, answer), want, "{op} {answer:?}");
        }
    }

    #[test]
    fn unusable_values_become_errors() {
        for bad in ["", "a\nb", "a\r", "a\0"] {
            for op in [Op::Lookup, Op::Fetch] {
                let line = reply(op, "0000abcd", &Answer::Found(bad.into()));
                assert!(
                    line.starts_with(&format!("{op}-result|0000abcd|error|")),
                    "{line:?}"
                );
                assert_eq!(line.matches('\n').count(), 1);
                assert!(!line.contains('\r') && !line.contains('\0'));
            }
        }
    }

    #[test]
    fn error_reasons_are_cleaned_and_capped() {
        let line = reply(Op::Lookup, "0000abcd", &Answer::Error("a\r\nb".into()));
        assert_eq!(line, "lookup-result|0000abcd|error|a  b\n");
        let line = reply(Op::Lookup, "0000abcd", &Answer::Error(String::new()));
        assert_eq!(line, "lookup-result|0000abcd|error|error\n");
        let line = reply(Op::Check, "0000abcd", &Answer::Error("x".repeat(5000)));
        assert!(line.len() < 300);
        assert!(line.ends_with("x\n"));
    }

    #[test]
    fn reply_to_an_unechoable_id_writes_nothing() {
        for id in ["", "a|b", "a\nb", "a b", "é"] {
            let mut out = Vec::new();
            let err = write_reply(&mut out, Op::Check, id, &Answer::NotFound)
                .expect_err("bad id refused");
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert!(out.is_empty());
        }
    }

    #[test]
    fn requests_round_trip() {
        let cases = [
            req(Op::Update, None, "ecbaaee1", ""),
            req(Op::Fetch, Some(Service::Source), "803f9730", ""),
            req(Op::Check, Some(Service::String), "b21277ff", ""),
            req(Op::Lookup, Some(Service::Auth), "0badf00d", "a@b:c|d"),
        ];
        for r in cases {
            let mut out = Vec::new();
            write_request(&mut out, "tbl", "1795313213.758366", &r).expect("writable");
            let line = String::from_utf8(out).expect("utf-8");
            let line = line.strip_suffix('\n').expect("terminated");
            assert_eq!(parse_request(line), Ok(r));
        }
    }

    #[test]
    fn unwritable_requests_are_refused() {
        let bad = [
            req(Op::Update, Some(Service::Alias), "ecbaaee1", ""),
            req(Op::Update, None, "ecbaaee1", "k"),
            req(Op::Fetch, None, "ecbaaee1", ""),
            req(Op::Lookup, None, "ecbaaee1", "k"),
            req(Op::Lookup, Some(Service::Alias), "", "k"),
            req(Op::Lookup, Some(Service::Alias), "ecbaaee1", "a\nb"),
        ];
        for r in bad {
            let mut out = Vec::new();
            assert!(write_request(&mut out, "t", "1.5", &r).is_err(), "{r:?}");
            assert!(out.is_empty());
        }
        let ok = req(Op::Update, None, "ecbaaee1", "");
        assert!(write_request(&mut Vec::new(), "", "1.5", &ok).is_err());
        assert!(write_request(&mut Vec::new(), "a\nb", "1.5", &ok).is_err());
        assert!(write_request(&mut Vec::new(), "t", "now", &ok).is_err());
    }
}
