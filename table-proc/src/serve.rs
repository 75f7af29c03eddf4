//! The serving loop: detects which protocol smtpd speaks, does the
//! handshake, then answers one request at a time through a [`Handler`].
//!
//! Everything here follows from one fact: smtpd's lka process blocks on each
//! table reply and exits (taking all of smtpd with it) on EOF, a malformed
//! reply, a reply with the wrong id, or a reply it did not ask for
//! (`usr.sbin/smtpd/table_proc.c`). So the loop
//!
//! * returns only on EOF (`Ok`) or when the channel itself fails (`Err`: a
//!   read or write error means smtpd is gone already);
//! * answers every request exactly once, including requests on unknown
//!   services (`error`) and requests whose key is not UTF-8 (`not-found`: no
//!   entry of a UTF-8 database can match), and turns a handler panic into an
//!   `error` answer;
//! * never answers a line it cannot parse: such a line is not from smtpd's
//!   request format, and an extra reply would desynchronise smtpd. It is
//!   logged without its content (it may be part of a password) and skipped;
//! * drops text lines longer than [`MAX_LINE`] while holding at most about
//!   that much in memory.
//!
//! **Injected bytes.** OpenSMTPD 7.6.0p1 to 7.8.0p0 copy a line feed inside
//! an SMTP AUTH user name or password into the table channel, so one write
//! from smtpd can carry a request line followed by a second, attacker-chosen
//! line (fixed in 7.8.0p1 by commits 4dd940fe and c1ab227c). smtpd sends one
//! request and waits for its reply, so any byte that is readable after a
//! complete request line and before its reply is written cannot be a
//! request. The loop reads in large chunks, so smtpd's single write of a line
//! (keys are below 1024 bytes) arrives whole; if anything follows the line
//! in the buffer, or the caller's `pending` probe says more input is already
//! waiting, all of it is dropped and the request is answered `error` (its
//! key was cut at the line feed). If the dropped bytes do not end in `\n`,
//! the rest of that injected line is still in flight and is skipped when it
//! arrives, so that no suffix of it can pass for a request. The cost: a
//! future smtpd that pipelined requests would get errors, not answers.
//!
//! **imsg** has no such injection (keys are NUL-terminated C strings) and
//! its framing says where each message ends, so several messages found in
//! one read are simply answered in order. That is lenient towards a client
//! that pipelines and changes nothing for smtpd, which never does. A header
//! with an impossible length cannot be resynchronised: everything buffered
//! is dropped and reading goes on.
//!
//! The output must be the socket smtpd reads: fd 0 for imsg (fd 1 is smtpd's
//! own stdout in 6.x) and fd 0 or fd 1 for the text protocol (7.x puts the
//! socket on both); see [`crate::channel`].

use std::io::{self, Read, Write};
use std::panic::{self, AssertUnwindSafe};

use tracing::{debug, error, info, warn};

use crate::imsg::{self, Message};
use crate::proto::{loggable_key, Answer, Op, ProtoError, Request, Service};
use crate::text::{self, ConfigLine};
use mailtable_core::logging::{left_out_note, Throttle};

/// Longest text line kept; longer ones are dropped unread. smtpd's keys are
/// below 1024 bytes (`table_lookup` in `usr.sbin/smtpd/table.c`).
pub const MAX_LINE: usize = 64 * 1024;

/// Size of one read. Far above one request (text lines below about 1.1 KiB,
/// imsg messages at most 16 KiB), so a request and what was injected behind
/// it arrive in the same read.
const CHUNK: usize = 16 * 1024;

/// Most bytes dropped in one go after a request line; smtpd never writes
/// more than a line at once, so a longer stream is not an injection through
/// smtpd and is left to the line parser.
const MAX_DRAIN: usize = 1024 * 1024;

/// The text protocol's first bytes (`table_proc.c` sends `config|...`
/// first; the imsg protocol starts with the OPEN type, `02 00 00 00`).
const TEXT_MAGIC: &[u8] = b"config|";

/// What answers smtpd's questions. One handler serves one table; smtpd runs
/// one process per table (reference, section 1.4).
///
/// A panic in any method is caught and answered as an error, so a bug costs
/// one temporary failure, not the mail server.
pub trait Handler {
    /// The services to register in the text handshake. Registration is
    /// enforced by smtpd only for `auth` (`lka_authenticate` in
    /// `usr.sbin/smtpd/lka.c`): list it only if passwords arrive here
    /// lower-cased and that is acceptable. An empty list registers every
    /// service but `auth` (smtpd refuses zero). Unused by imsg.
    fn services(&self) -> Vec<Service>;

    /// The table name, from `config|tablename|...` or the imsg OPEN.
    fn open(&mut self, table_name: &str) {
        let _ = table_name;
    }

    /// `smtpctl update table NAME`: reload. `Err` is logged by smtpd (text
    /// protocol) and makes smtpctl print "command failed".
    fn update(&mut self) -> Result<(), String>;

    /// Is `key` in the table for `service`; the value of a found answer is
    /// not sent.
    fn check(&mut self, service: Service, key: &str) -> Answer;

    /// The value of `key` for `service`.
    fn lookup(&mut self, service: Service, key: &str) -> Answer;

    /// The next value of `service` with no key (round-robin `source`
    /// lists). Most tables have nothing to fetch.
    fn fetch(&mut self, service: Service) -> Answer {
        let _ = service;
        Answer::NotFound
    }
}

/// Serves smtpd on `input`/`output` until EOF, with no readiness probe: only
/// bytes already read behind a request count as injected. See
/// [`serve_with_probe`].
pub fn serve(input: impl Read, output: impl Write, handler: &mut impl Handler) -> io::Result<()> {
    serve_with_probe(input, output, handler, || false)
}

/// Serves smtpd on `input`/`output` until EOF.
///
/// `pending` tells whether more input can be read without blocking (data or
/// EOF); it is asked once after each complete request line when nothing
/// else is buffered, and while dropping injected bytes. Pass
/// [`crate::channel::input_pending`] on fd 0; `|| false` is always safe.
///
/// Returns `Ok(())` at EOF, also in the middle of a line or message, and
/// `Err` only when reading or writing the channel fails.
pub fn serve_with_probe(
    input: impl Read,
    mut output: impl Write,
    handler: &mut impl Handler,
    mut pending: impl FnMut() -> bool,
) -> io::Result<()> {
    let mut conn = Input::new(input);
    loop {
        let head = conn.buffered();
        if head.starts_with(TEXT_MAGIC) {
            return serve_text(&mut conn, &mut output, handler, &mut pending);
        }
        if !TEXT_MAGIC.starts_with(head) {
            return serve_imsg(&mut conn, &mut output, handler);
        }
        if conn.fill()? == 0 {
            return Ok(());
        }
    }
}

fn serve_text(
    conn: &mut Input<impl Read>,
    output: &mut impl Write,
    handler: &mut impl Handler,
    pending: &mut impl FnMut() -> bool,
) -> io::Result<()> {
    let Some(session) = read_text_handshake(conn)? else {
        return Ok(());
    };
    guarded("open", || handler.open(&session.table));
    let services = guarded("services", || handler.services()).unwrap_or_default();
    text::write_register(output, &services)?;
    output.flush()?;
    info!(
        table = session.table,
        ?services,
        "serving OpenSMTPD text protocol {}",
        session.version
    );

    loop {
        let Some(line) = conn.next_line()? else {
            return Ok(());
        };
        let mut injected = !conn.buffered().is_empty();
        if !injected && pending() {
            injected = conn.fill()? > 0;
        }
        let parsed = text::parse_request_bytes(&line, &session);
        if injected {
            let dropped = conn.drain(pending)?;
            answer_injected(output, &parsed, dropped)?;
            continue;
        }
        match &parsed {
            Ok(req) => {
                let answer = dispatch(handler, req);
                log_answer(req, &answer);
                send_text(output, req.op, &req.id, &answer)?;
            }
            Err(ProtoError::UnknownService { op, id, service }) => {
                warn!(op = %op, id, service, "request on an unknown service, answering error");
                send_text(output, *op, id, &Answer::Error("unknown service".into()))?;
            }
            Err(ProtoError::KeyNotUtf8 { op, id }) => {
                warn!(op = %op, id, "key is not utf-8, answering not-found");
                send_text(output, *op, id, &Answer::NotFound)?;
            }
            Err(e) => warn!(
                len = line.len(),
                "skipping unparseable line: {}",
                e.summary()
            ),
        }
    }
}

/// The `config|...` lines up to `config|ready`; returns the table name and
/// protocol version, or `None` at EOF. Unknown keys and bad lines are
/// logged and skipped: a newer smtpd may send more than 7.6 does.
fn read_text_handshake(conn: &mut Input<impl Read>) -> io::Result<Option<text::Session>> {
    let mut session = text::Session::default();
    loop {
        let Some(line) = conn.next_line()? else {
            return Ok(None);
        };
        match text::parse_config_line(&String::from_utf8_lossy(&line)) {
            Ok(ConfigLine::Ready) => return Ok(Some(session)),
            Ok(ConfigLine::Entry { key, value }) => {
                debug!(key, value, "config");
                match key.as_str() {
                    "tablename" => session.table = value,
                    "protocol" => {
                        if value != text::PROTOCOL_VERSION {
                            warn!(
                                version = value,
                                "unknown table protocol version, reading its requests as 0.1's"
                            );
                        }
                        session.version = value;
                    }
                    _ => {}
                }
            }
            Err(e) => warn!(
                len = line.len(),
                "skipping line in handshake: {}",
                e.summary()
            ),
        }
    }
}

/// A request line that more bytes followed before its reply was written
/// (DESIGN.md, "Failure semantics": a line feed in an SMTP AUTH name on
/// 7.6.0p1 to 7.8.0p0). The bytes behind it are already dropped; the
/// request itself is answered `error`, since its key was cut.
fn answer_injected(
    output: &mut impl Write,
    parsed: &Result<Request, ProtoError>,
    dropped: usize,
) -> io::Result<()> {
    let Some((op, id)) = parsed_target(parsed) else {
        warn!(
            dropped,
            "dropped an unparseable line and the bytes behind it"
        );
        return Ok(());
    };
    if let Ok(req) = parsed {
        warn!(
            op = %req.op,
            id = req.id,
            service = ?req.service,
            key = %loggable_key(req.service, &req.key),
            dropped,
            "bytes followed a request before its reply (line feed in an SMTP AUTH name?): dropped them, answering error"
        );
    } else {
        warn!(op = %op, id, dropped, "bytes followed a request: dropped them, answering error");
    }
    let answer = Answer::Error("request line followed by unexpected bytes".into());
    send_text(output, op, id, &answer)
}

/// The op and id a parse result must be answered for, if any.
fn parsed_target(parsed: &Result<Request, ProtoError>) -> Option<(Op, &str)> {
    match parsed {
        Ok(req) => Some((req.op, &req.id)),
        Err(e) => e.unanswered(),
    }
}

/// Writes and flushes one text reply. An id the writer refuses cannot occur
/// for a parsed request; should it, no reply is possible and the loop goes on.
fn send_text(output: &mut impl Write, op: Op, id: &str, answer: &Answer) -> io::Result<()> {
    match text::write_reply(output, op, id, answer) {
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
            error!(op = %op, "cannot echo request id, no reply sent: {e}");
            Ok(())
        }
        other => other.and_then(|()| output.flush()),
    }
}

fn serve_imsg(
    conn: &mut Input<impl Read>,
    output: &mut impl Write,
    handler: &mut impl Handler,
) -> io::Result<()> {
    info!("serving OpenSMTPD imsg protocol v2");
    // Answers too long for an imsg reply ([`imsg::refused_value`]), logged
    // at most once a second: a login's senders list is asked at every
    // MAIL FROM it sends.
    let oversized = Throttle::new();
    loop {
        match imsg::parse_message(conn.buffered()) {
            Ok(Some((message, consumed))) => {
                conn.consume(consumed);
                answer_imsg(message, output, handler, &oversized)?;
            }
            Ok(None) => {
                if conn.fill()? == 0 {
                    if !conn.buffered().is_empty() {
                        warn!(len = conn.buffered().len(), "EOF inside an imsg message");
                    }
                    return Ok(());
                }
            }
            Err(e) => {
                warn!(
                    dropped = conn.buffered().len(),
                    "{e}: dropping buffered input"
                );
                conn.clear();
            }
        }
    }
}

fn answer_imsg(
    message: Message,
    output: &mut impl Write,
    handler: &mut impl Handler,
    oversized: &Throttle,
) -> io::Result<()> {
    match message {
        Message::Open { version, name } => {
            if version != imsg::API_VERSION {
                warn!(
                    version,
                    "unexpected imsg table API version, answering anyway"
                );
            }
            info!(table = name, "imsg open");
            guarded("open", || handler.open(&name));
            imsg::write_open_reply(output)?;
        }
        Message::Close => {
            // table_api.c exits here; this table never exits before EOF.
            info!("imsg close, waiting for EOF");
            return Ok(());
        }
        Message::Request(req) => {
            let answer = dispatch(handler, &req);
            match imsg::refused_value(req.op, &answer) {
                // The reply goes out as an error; smtpd logs no reason
                // ("failure during ... lookup"), so the admin's only
                // clue is this line.
                Some(why) => match oversized.admit(std::time::Instant::now()) {
                    Some(n) => warn!(
                        op = %req.op,
                        service = req.service.map(Service::name).unwrap_or("-"),
                        key = %loggable_key(req.service, &req.key),
                        "answering error: {why}{}",
                        left_out_note(n)
                    ),
                    None => debug!(op = %req.op, "answering error: {why}"),
                },
                None => log_answer(&req, &answer),
            }
            imsg::write_reply(output, req.op, &answer)?;
        }
        Message::Invalid { kind, error } => {
            warn!(kind, "invalid imsg message: {}", error.summary());
            if kind == imsg::TYPE_OPEN {
                imsg::write_open_reply(output)?;
            } else if let Some(op) = imsg::op_of_type(kind) {
                let answer = match error {
                    ProtoError::KeyNotUtf8 { .. } => Answer::NotFound,
                    _ => Answer::Error(error.summary().into()),
                };
                imsg::write_reply(output, op, &answer)?;
            } else {
                return Ok(());
            }
        }
    }
    output.flush()
}

/// Runs the handler for one request, turning a panic into an error answer.
fn dispatch(handler: &mut impl Handler, req: &Request) -> Answer {
    let run = || match (req.op, req.service) {
        (Op::Update, _) => match handler.update() {
            Ok(()) => Answer::Found(String::new()),
            Err(reason) => Answer::Error(reason),
        },
        (Op::Check, Some(s)) => handler.check(s, &req.key),
        (Op::Lookup, Some(s)) => handler.lookup(s, &req.key),
        (Op::Fetch, Some(s)) => handler.fetch(s),
        (_, None) => Answer::Error("request without a service".into()),
    };
    guarded(req.op.name(), run).unwrap_or_else(|| Answer::Error("internal error".into()))
}

/// Calls `f`, catching a panic (the default hook has already printed it to
/// stderr, where smtpd keeps table logs).
fn guarded<T>(what: &str, f: impl FnOnce() -> T) -> Option<T> {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => Some(v),
        Err(_) => {
            error!("handler panicked in {what}");
            None
        }
    }
}

/// One debug line per request. Values are never logged: a credentials value
/// is a password hash, and the key of `auth` carries the password itself.
/// An error is a debug line too: the handler logs why, at most once a
/// second (an outage fails every uncached lookup, and one line each, now
/// in syslog, would bury the rest of the mail log).
fn log_answer(req: &Request, answer: &Answer) {
    let key = loggable_key(req.service, &req.key);
    let service = req.service.map(Service::name).unwrap_or("-");
    match answer {
        Answer::Found(_) => debug!(op = %req.op, service, key = %key, "found"),
        Answer::NotFound => debug!(op = %req.op, service, key = %key, "not found"),
        // `smtpctl update table` prints only "command failed": its
        // reason goes to the log at the level an admin sees.
        Answer::Error(reason) if req.op == Op::Update => {
            warn!(op = %req.op, reason, "answering error");
        }
        Answer::Error(reason) => {
            debug!(op = %req.op, service, key = %key, reason, "answering error");
        }
    }
}

/// The read side: a buffer filled in [`CHUNK`]-sized reads.
///
/// The bytes read and not yet consumed are `buf[start..end]`; `buf[end..]`
/// is room for the next read, zeroed once when the buffer grew and never
/// again. (Zeroing a fresh `CHUNK` before every read, as `Vec::resize`
/// does, was a third of the instructions of a cached lookup.)
struct Input<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Inside a line that is being dropped (too long, or the tail of
    /// injected bytes): skip up to and including the next `\n`.
    skipping: bool,
}

impl<R: Read> Input<R> {
    fn new(inner: R) -> Self {
        Input {
            inner,
            buf: Vec::new(),
            start: 0,
            end: 0,
            skipping: false,
        }
    }

    fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
    }

    fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// One read appended to the buffer; `Ok(0)` at EOF. What was consumed
    /// is given back first, so the buffer never holds more than the
    /// unconsumed bytes and one read's room (a line is capped at
    /// [`MAX_LINE`] by [`Input::next_line`]).
    fn fill(&mut self) -> io::Result<usize> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let room = self.end + CHUNK;
        if self.buf.len() < room {
            self.buf.resize(room, 0);
        }
        loop {
            match self.inner.read(&mut self.buf[self.end..room]) {
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The next complete line without its `\n`, or `None` at EOF (a partial
    /// last line is dropped: smtpd is gone and cannot read an answer).
    fn next_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(pos) = self.buffered().iter().position(|&b| b == b'\n') {
                let line = self.buffered()[..pos].to_vec();
                self.consume(pos + 1);
                if self.skipping {
                    self.skipping = false;
                    continue;
                }
                return Ok(Some(line));
            }
            if self.buffered().len() > MAX_LINE {
                if !self.skipping {
                    warn!("dropping a line longer than {MAX_LINE} bytes");
                }
                self.clear();
                self.skipping = true;
            }
            if self.fill()? == 0 {
                return Ok(None);
            }
        }
    }

    /// Drops everything buffered and everything `pending` says is readable
    /// (up to [`MAX_DRAIN`]); returns the number of bytes dropped.
    fn drain(&mut self, pending: &mut impl FnMut() -> bool) -> io::Result<usize> {
        let mut dropped = self.buffered().len();
        let mut last = self.buffered().last().copied();
        self.clear();
        while dropped < MAX_DRAIN && pending() {
            let n = self.fill()?;
            if n == 0 {
                break;
            }
            dropped += n;
            last = self.buffered().last().copied();
            self.clear();
        }
        // smtpd ends every write with `\n`; without one, the rest of the
        // injected line is still on its way.
        self.skipping = last.is_some_and(|b| b != b'\n');
        Ok(dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::collections::VecDeque;
    use std::rc::Rc;
    use std::sync::{Arc, Mutex};

    /// A reader that returns one scripted chunk per `read`, like a socket
    /// receiving one write of smtpd at a time.
    struct Chunks {
        chunks: VecDeque<Vec<u8>>,
    }

    impl Chunks {
        fn new<I: IntoIterator<Item = T>, T: AsRef<[u8]>>(chunks: I) -> Self {
            Chunks {
                chunks: chunks.into_iter().map(|c| c.as_ref().to_vec()).collect(),
            }
        }
    }

    impl Read for Chunks {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let Some(chunk) = self.chunks.front_mut() else {
                return Ok(0);
            };
            let n = chunk.len().min(buf.len());
            buf[..n].copy_from_slice(&chunk[..n]);
            chunk.drain(..n);
            if chunk.is_empty() {
                self.chunks.pop_front();
            }
            Ok(n)
        }
    }

    /// A table of fixed answers that records what it was asked and panics
    /// on the key `panic`.
    #[derive(Default)]
    struct Fake {
        opened: Vec<String>,
        calls: Vec<String>,
        update_fails: bool,
    }

    impl Handler for Fake {
        fn services(&self) -> Vec<Service> {
            vec![Service::Alias, Service::Credentials]
        }

        fn open(&mut self, table_name: &str) {
            self.opened.push(table_name.to_owned());
        }

        fn update(&mut self) -> Result<(), String> {
            self.calls.push("update".into());
            if self.update_fails {
                Err("database\nunreachable".into())
            } else {
                Ok(())
            }
        }

        fn check(&mut self, service: Service, key: &str) -> Answer {
            self.calls.push(format!("check {service} {key}"));
            match key {
                "panic" => panic!("fake handler panics on purpose"),
                "example.org" | "alice@example.org" => Answer::Found(String::new()),
                "down" => Answer::Error("backend down".into()),
                _ => Answer::NotFound,
            }
        }

        fn lookup(&mut self, service: Service, key: &str) -> Answer {
            self.calls.push(format!("lookup {service} {key}"));
            match (service, key) {
                (_, "panic") => panic!("fake handler panics on purpose"),
                (Service::Credentials, "alice@example.org") => {
                    Answer::Found("alice@example.org:$2b$05$hash".into())
                }
                (Service::Alias, "bob@example.org") => Answer::Found("bob_example.org".into()),
                (_, "empty") => Answer::Found(String::new()),
                (_, "huge") => Answer::Found("x".repeat(20_000)),
                (_, "down") => Answer::Error("backend down".into()),
                _ => Answer::NotFound,
            }
        }

        fn fetch(&mut self, service: Service) -> Answer {
            self.calls.push(format!("fetch {service}"));
            Answer::Found("127.0.0.1".into())
        }
    }

    const HANDSHAKE: &str = "config|smtpd-version|7.8.0-portable\nconfig|protocol|0.1\nconfig|tablename|creds\nconfig|ready\n";
    const REGISTERED: &str = "register|alias\nregister|credentials\nregister|ready\n";

    fn run_chunks<T: AsRef<[u8]>>(chunks: Vec<T>, handler: &mut Fake) -> Vec<u8> {
        let mut out = Vec::new();
        serve(Chunks::new(chunks), &mut out, handler).expect("serve ends at EOF");
        out
    }

    fn run_text(chunks: &[&str], handler: &mut Fake) -> String {
        let mut all = vec![HANDSHAKE];
        all.extend_from_slice(chunks);
        let out = run_chunks(all, handler);
        let out = String::from_utf8(out).expect("text replies are utf-8");
        out.strip_prefix(REGISTERED)
            .expect("handshake answered first")
            .to_owned()
    }

    fn line(op: &str, service: &str, id: &str, key: &str) -> String {
        format!("table|0.1|1795313212.429891|creds|{op}|{service}|{id}|{key}\n")
    }

    #[test]
    fn text_handshake_transcript() {
        let mut h = Fake::default();
        let out = run_chunks(vec![HANDSHAKE], &mut h);
        assert_eq!(String::from_utf8_lossy(&out), REGISTERED);
        assert_eq!(h.opened, ["creds"]);
    }

    #[test]
    fn handshake_in_pieces_and_unknown_config_keys() {
        let mut h = Fake::default();
        let out = run_chunks(
            vec![
                "con",
                "fig|smtpd-version|7.6.0-portable\nconfig|protocol|0.1\n",
                "config|future-key|x|y\ngarbage\nconfig|tablename|users\n",
                "config|ready\n",
            ],
            &mut h,
        );
        assert_eq!(String::from_utf8_lossy(&out), REGISTERED);
        assert_eq!(h.opened, ["users"]);
    }

    /// Every request gets its answer when the table's name holds `|`
    /// (smtpd.conf allows it) and when the handshake announces a version
    /// other than 0.1: before, each request was skipped unanswered and
    /// smtpd waited for ever.
    #[test]
    fn a_name_with_a_bar_and_a_newer_version_are_answered() {
        for (version, name) in [("0.1", "my|users"), ("0.2", "users"), ("0.2", "a|b|c")] {
            let mut h = Fake::default();
            let handshake = format!(
                "config|smtpd-version|7.9.0\nconfig|protocol|{version}\n\
                 config|tablename|{name}\nconfig|ready\n"
            );
            let request = |op: &str, service: &str, id: &str, key: &str| {
                format!("table|{version}|1795313212.429891|{name}|{op}|{service}|{id}|{key}\n")
            };
            let out = run_chunks(
                vec![
                    handshake,
                    request("lookup", "alias", "00000001", "bob@example.org"),
                    request("check", "alias", "00000002", "x|y@example.org"),
                    format!("table|{version}|1795313212.429891|{name}|update|00000003\n"),
                    format!("table|{version}|1795313212.429891|{name}|fetch|source|00000004\n"),
                ],
                &mut h,
            );
            assert_eq!(h.opened, [name], "{version} {name}");
            assert_eq!(
                String::from_utf8_lossy(&out),
                format!(
                    "{REGISTERED}lookup-result|00000001|found|bob_example.org\n\
                     check-result|00000002|not-found\n\
                     update-result|00000003|ok\n\
                     fetch-result|00000004|found|127.0.0.1\n"
                ),
                "{version} {name}"
            );
            assert_eq!(
                h.calls,
                [
                    "lookup alias bob@example.org",
                    "check alias x|y@example.org",
                    "update",
                    "fetch source"
                ]
            );
        }
    }

    #[test]
    fn eof_before_anything_or_mid_handshake_is_clean() {
        for chunks in [vec![], vec!["con"], vec!["config|protocol|0.1\nconfig|rea"]] {
            let mut h = Fake::default();
            assert!(run_chunks(chunks, &mut h).is_empty());
        }
    }

    #[test]
    fn text_requests_transcript() {
        let mut h = Fake::default();
        let out = run_text(
            &[
                &line("lookup", "credentials", "f4a835e2", "alice@example.org"),
                &line("check", "alias", "2a94060e", "nobody@example.org"),
                &line("lookup", "alias", "0000beef", "bob@example.org"),
                "table|0.1|1795313468.209204|srcs|fetch|source|803f9730\n",
                "table|0.1|1795313213.758366|creds|update|ecbaaee1\n",
                &line("check", "string", "b21277ff", ""),
            ],
            &mut h,
        );
        assert_eq!(
            out,
            "lookup-result|f4a835e2|found|alice@example.org:$2b$05$hash\n\
             check-result|2a94060e|not-found\n\
             lookup-result|0000beef|found|bob_example.org\n\
             fetch-result|803f9730|found|127.0.0.1\n\
             update-result|ecbaaee1|ok\n\
             check-result|b21277ff|not-found\n"
        );
        assert_eq!(
            h.calls,
            [
                "lookup credentials alice@example.org",
                "check alias nobody@example.org",
                "lookup alias bob@example.org",
                "fetch source",
                "update",
                "check string ",
            ]
        );
    }

    #[test]
    fn errors_and_bad_values_are_error_replies() {
        let mut h = Fake {
            update_fails: true,
            ..Fake::default()
        };
        let out = run_text(
            &[
                &line("lookup", "alias", "00000001", "down"),
                &line("lookup", "alias", "00000002", "empty"),
                "table|0.1|1.5|creds|update|00000003\n",
                &line("check", "domain", "00000004", "down"),
            ],
            &mut h,
        );
        assert_eq!(
            out,
            "lookup-result|00000001|error|backend down\n\
             lookup-result|00000002|error|table produced an empty value or one with CR, LF or NUL\n\
             update-result|00000003|error|database unreachable\n\
             check-result|00000004|error|backend down\n"
        );
    }

    #[test]
    fn panicking_handler_is_an_error_and_the_loop_goes_on() {
        let mut h = Fake::default();
        let out = run_text(
            &[
                &line("lookup", "alias", "00000001", "panic"),
                &line("check", "domain", "00000002", "panic"),
                &line("check", "domain", "00000003", "example.org"),
            ],
            &mut h,
        );
        assert_eq!(
            out,
            "lookup-result|00000001|error|internal error\n\
             check-result|00000002|error|internal error\n\
             check-result|00000003|found\n"
        );
    }

    #[test]
    fn garbage_lines_get_no_reply() {
        let mut h = Fake::default();
        let out = run_text(
            &[
                "ss\n",
                "\n",
                "table|0.1|1.5|creds|lookup|alias\n",
                "table|9.9|1.5|creds|update|00000001\n",
                "lookup-result|00000001|found|x\n",
                "config|ready\n",
                &line("check", "domain", "00000002", "example.org"),
            ],
            &mut h,
        );
        assert_eq!(out, "check-result|00000002|found\n");
        assert_eq!(h.calls, ["check domain example.org"]);
    }

    #[test]
    fn unknown_service_is_answered_with_error() {
        let mut h = Fake::default();
        let out = run_text(&[&line("lookup", "bogus", "00000001", "k")], &mut h);
        assert_eq!(out, "lookup-result|00000001|error|unknown service\n");
        assert!(h.calls.is_empty());
    }

    #[test]
    fn non_utf8_key_is_not_found_without_asking_the_handler() {
        let mut h = Fake::default();
        let mut bad = line("lookup", "credentials", "00000001", "b").into_bytes();
        bad.insert(bad.len() - 1, 0xff);
        let mut chunks = vec![HANDSHAKE.as_bytes().to_vec(), bad];
        chunks.push(line("check", "domain", "00000002", "example.org").into_bytes());
        let out = run_chunks(chunks, &mut h);
        assert_eq!(
            String::from_utf8_lossy(&out),
            format!("{REGISTERED}lookup-result|00000001|not-found\ncheck-result|00000002|found\n")
        );
        assert_eq!(h.calls, ["check domain example.org"]);
    }

    #[test]
    fn longest_key_and_pipes_in_keys() {
        let key = "k".repeat(1023);
        let mut h = Fake::default();
        let out = run_text(
            &[
                &line("lookup", "alias", "00000001", &key),
                &line(
                    "lookup",
                    "auth",
                    "00000002",
                    "alice@example.org:mixed|pa:ss",
                ),
            ],
            &mut h,
        );
        assert_eq!(
            out,
            "lookup-result|00000001|not-found\nlookup-result|00000002|not-found\n"
        );
        assert_eq!(h.calls[1], "lookup auth alice@example.org:mixed|pa:ss");
    }

    // DESIGN.md "Failure semantics": a line feed in an AUTH user name.
    #[test]
    fn injected_line_in_the_same_read_is_dropped_and_the_request_fails() {
        let injected = format!(
            "{}{}",
            line("lookup", "auth", "00000001", "alice"),
            line("lookup", "auth", "deadbeef", "mallory:x")
        );
        let mut h = Fake::default();
        let out = run_text(
            &[
                &injected,
                &line("check", "domain", "00000002", "example.org"),
            ],
            &mut h,
        );
        assert_eq!(
            out,
            "lookup-result|00000001|error|request line followed by unexpected bytes\n\
             check-result|00000002|found\n"
        );
        assert_eq!(h.calls, ["check domain example.org"]);
    }

    #[test]
    fn injected_garbage_after_a_request_is_dropped() {
        let mut h = Fake::default();
        let out = run_text(
            &[
                &format!("{}ss\n", line("lookup", "credentials", "00000001", "ali")),
                &line("check", "domain", "00000002", "example.org"),
            ],
            &mut h,
        );
        assert_eq!(
            out,
            "lookup-result|00000001|error|request line followed by unexpected bytes\n\
             check-result|00000002|found\n"
        );
    }

    #[test]
    fn injected_bytes_seen_only_by_the_probe_are_dropped() {
        // The request arrives alone; the probe says more is waiting; that
        // read brings half an injected line, whose rest arrives later and
        // must not pass for a request either.
        let req = line("lookup", "credentials", "00000001", "alice");
        let tail = line("lookup", "credentials", "deadbeef", "mallory");
        let (a, b) = tail.split_at(20);
        let chunks = Chunks::new([
            HANDSHAKE,
            req.as_str(),
            a,
            b,
            &line("check", "domain", "00000002", "example.org"),
        ]);
        let calls = Rc::new(Cell::new(0));
        let probe_calls = Rc::clone(&calls);
        let probe = move || {
            probe_calls.set(probe_calls.get() + 1);
            // Asked after the request line, then while draining.
            probe_calls.get() == 1
        };
        let mut h = Fake::default();
        let mut out = Vec::new();
        serve_with_probe(chunks, &mut out, &mut h, probe).expect("serve ends at EOF");
        assert_eq!(
            String::from_utf8_lossy(&out),
            format!(
                "{REGISTERED}lookup-result|00000001|error|request line followed by unexpected bytes\n\
                 check-result|00000002|found\n"
            )
        );
        assert_eq!(h.calls, ["check domain example.org"]);
        assert!(calls.get() >= 2);
    }

    /// The injected line is cut where its remainder is itself a complete,
    /// well-formed request (issue 19): the first read carries the request
    /// and the start of the injected line (`cut`, any prefix of a request
    /// line), the next read the remainder `rest`. The remainder belongs to
    /// the injected line and must never be answered.
    const CUT_REQUEST: &str =
        "lookup-result|00000001|error|request line followed by unexpected bytes\n";

    fn injected_cuts() -> (String, String, Vec<String>) {
        let req = line("lookup", "auth", "00000001", "alice");
        // Answered `found` by the fake, were it ever asked.
        let rest = line("lookup", "credentials", "deadbeef", "alice@example.org");
        let template = line("lookup", "credentials", "cafebabe", "alice@example.org");
        let template = template.trim_end_matches('\n');
        let cuts = (1..=template.len())
            .map(|k| template[..k].to_string())
            .collect();
        (req, rest, cuts)
    }

    #[test]
    fn rest_of_an_injected_line_is_never_a_request_at_any_cut() {
        let (req, rest, cuts) = injected_cuts();
        for cut in &cuts {
            let first = format!("{req}{cut}");
            let mut h = Fake::default();
            let out = run_text(
                &[
                    &first,
                    &rest,
                    &line("check", "domain", "00000002", "example.org"),
                ],
                &mut h,
            );
            assert_eq!(
                out,
                format!("{CUT_REQUEST}check-result|00000002|found\n"),
                "cut after {cut:?}"
            );
            assert_eq!(h.calls, ["check domain example.org"], "cut after {cut:?}");
        }
    }

    #[test]
    fn rest_of_an_injected_line_seen_by_the_probe_is_never_a_request_at_any_cut() {
        let (req, rest, cuts) = injected_cuts();
        for cut in &cuts {
            let chunks = Chunks::new([
                HANDSHAKE,
                req.as_str(),
                cut.as_str(),
                rest.as_str(),
                &line("check", "domain", "00000002", "example.org"),
            ]);
            // Pending once, after the request line: the read brings the
            // cut; the remainder arrives after the error reply.
            let mut asked = 0;
            let probe = move || {
                asked += 1;
                asked == 1
            };
            let mut h = Fake::default();
            let mut out = Vec::new();
            serve_with_probe(chunks, &mut out, &mut h, probe).expect("serve ends at EOF");
            assert_eq!(
                String::from_utf8_lossy(&out),
                format!("{REGISTERED}{CUT_REQUEST}check-result|00000002|found\n"),
                "cut after {cut:?}"
            );
            assert_eq!(h.calls, ["check domain example.org"], "cut after {cut:?}");
        }
    }

    #[test]
    fn probe_reporting_eof_is_not_an_injection() {
        let chunks = Chunks::new([
            HANDSHAKE,
            &line("check", "domain", "00000001", "example.org"),
        ]);
        let mut h = Fake::default();
        let mut out = Vec::new();
        serve_with_probe(chunks, &mut out, &mut h, || true).expect("serve ends at EOF");
        assert_eq!(
            String::from_utf8_lossy(&out),
            format!("{REGISTERED}check-result|00000001|found\n")
        );
    }

    #[test]
    fn whole_transcript_in_one_read_answers_only_the_first_request() {
        let all = format!(
            "{HANDSHAKE}{}{}",
            line("check", "domain", "00000001", "example.org"),
            line("check", "domain", "00000002", "example.org")
        );
        let mut h = Fake::default();
        let mut out = Vec::new();
        serve(all.as_bytes(), &mut out, &mut h).expect("serve ends at EOF");
        assert_eq!(
            String::from_utf8_lossy(&out),
            format!(
                "{REGISTERED}check-result|00000001|error|request line followed by unexpected bytes\n"
            )
        );
    }

    #[test]
    fn overlong_line_is_dropped_in_bounded_memory() {
        let mut chunks: Vec<Vec<u8>> = vec![HANDSHAKE.into()];
        let mut long = b"table|0.1|1.5|creds|lookup|alias|00000001|".to_vec();
        long.resize(MAX_LINE * 4, b'a');
        chunks.extend(long.chunks(CHUNK).map(<[u8]>::to_vec));
        chunks.push(b"aaa\n".to_vec());
        chunks.push(line("check", "domain", "00000002", "example.org").into_bytes());
        let mut h = Fake::default();
        let out = run_chunks(chunks, &mut h);
        assert_eq!(
            String::from_utf8_lossy(&out),
            format!("{REGISTERED}check-result|00000002|found\n")
        );
        assert_eq!(h.calls, ["check domain example.org"]);
    }

    #[test]
    fn eof_mid_line_is_clean() {
        let mut h = Fake::default();
        let out = run_text(&["table|0.1|1.5|creds|lookup|alias|0000"], &mut h);
        assert!(out.is_empty());
        assert!(h.calls.is_empty());
    }

    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn write_errors_end_the_loop_with_an_error() {
        let mut h = Fake::default();
        let err = serve(HANDSHAKE.as_bytes(), Broken, &mut h).expect_err("pipe broken");
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }

    // imsg transcripts. Messages are built with the library's own writer,
    // which the imsg tests check against the observed bytes.

    fn imsg_msg(m: &Message) -> Vec<u8> {
        let mut out = Vec::new();
        imsg::write_request(&mut out, m).expect("writable");
        out
    }

    fn imsg_req(op: Op, service: Option<Service>, key: &str) -> Vec<u8> {
        imsg_msg(&Message::Request(Request {
            op,
            service,
            id: String::new(),
            key: key.to_owned(),
        }))
    }

    fn open() -> Vec<u8> {
        imsg_msg(&Message::Open {
            version: 2,
            name: "creds".into(),
        })
    }

    /// Splits replies into (r, value) pairs; an OPEN reply is (None, None).
    fn imsg_replies(mut out: &[u8]) -> Vec<(Option<i32>, Option<Vec<u8>>)> {
        let mut replies = Vec::new();
        while !out.is_empty() {
            assert_eq!(&out[..4], &0u32.to_ne_bytes());
            let len = usize::from(u16::from_ne_bytes([out[4], out[5]]));
            assert!((16..=16384).contains(&len));
            let payload = &out[16..len];
            let r = payload
                .get(..4)
                .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
            let value = payload
                .get(4..)
                .filter(|v| !v.is_empty())
                .map(<[u8]>::to_vec);
            replies.push((r, value));
            out = &out[len..];
        }
        replies
    }

    #[test]
    fn imsg_transcript() {
        let mut h = Fake::default();
        let out = run_chunks(
            vec![
                open(),
                imsg_req(Op::Lookup, Some(Service::Credentials), "alice@example.org"),
                imsg_req(Op::Check, Some(Service::Domain), "example.org"),
                imsg_req(Op::Check, Some(Service::Domain), "other.org"),
                imsg_req(Op::Check, Some(Service::Domain), "down"),
                imsg_req(Op::Lookup, Some(Service::Alias), "nobody"),
                imsg_req(Op::Fetch, Some(Service::Source), ""),
                imsg_req(Op::Update, None, ""),
            ],
            &mut h,
        );
        assert_eq!(
            imsg_replies(&out),
            [
                (None, None),
                (Some(1), Some(b"alice@example.org:$2b$05$hash\0".to_vec())),
                (Some(1), None),
                (Some(0), None),
                (Some(-1), None),
                (Some(0), None),
                (Some(1), Some(b"127.0.0.1\0".to_vec())),
                (Some(1), None),
            ]
        );
        assert_eq!(h.opened, ["creds"]);
    }

    #[test]
    fn imsg_messages_in_one_read_are_answered_in_order() {
        let mut all = open();
        all.extend(imsg_req(Op::Check, Some(Service::Domain), "example.org"));
        all.extend(imsg_req(Op::Check, Some(Service::Domain), "other.org"));
        let mut h = Fake::default();
        let mut out = Vec::new();
        serve(&all[..], &mut out, &mut h).expect("serve ends at EOF");
        assert_eq!(
            imsg_replies(&out),
            [(None, None), (Some(1), None), (Some(0), None)]
        );
    }

    #[test]
    fn imsg_bad_values_panics_and_invalid_messages() {
        let mut bad_service = imsg_req(Op::Lookup, Some(Service::Alias), "k");
        bad_service[16..20].copy_from_slice(&0x3i32.to_ne_bytes());
        let mut bad_key = imsg_req(Op::Check, Some(Service::Mailaddr), "b");
        let at = bad_key.len() - 2;
        bad_key[at] = 0xff;
        let mut short_open = open();
        short_open[4..6].copy_from_slice(&18u16.to_ne_bytes());
        short_open.truncate(18);
        let mut h = Fake::default();
        let out = run_chunks(
            vec![
                short_open,
                imsg_req(Op::Lookup, Some(Service::Alias), "empty"),
                imsg_req(Op::Lookup, Some(Service::Alias), "huge"),
                imsg_req(Op::Lookup, Some(Service::Alias), "panic"),
                bad_service,
                bad_key,
                imsg_msg(&Message::Close),
                imsg_req(Op::Check, Some(Service::Domain), "example.org"),
            ],
            &mut h,
        );
        assert_eq!(
            imsg_replies(&out),
            [
                (None, None),
                (Some(-1), None),
                (Some(-1), None),
                (Some(-1), None),
                (Some(-1), None),
                (Some(0), None),
                (Some(1), None),
            ]
        );
    }

    /// A value imsg cannot carry goes out as an error, and the log says
    /// why at the level an admin sees: smtpd itself logs no reason. Once
    /// a second: a login's senders list is asked at every MAIL FROM.
    #[test]
    fn an_answer_imsg_cannot_carry_is_logged_as_a_warning() {
        let logs = logs_of(|| {
            let mut h = Fake::default();
            let huge = || imsg_req(Op::Lookup, Some(Service::Alias), "huge");
            let out = run_chunks(
                vec![
                    open(),
                    huge(),
                    imsg_req(Op::Lookup, Some(Service::Alias), "bob@example.org"),
                    huge(),
                    huge(),
                ],
                &mut h,
            );
            assert_eq!(
                imsg_replies(&out),
                [
                    (None, None),
                    (Some(-1), None),
                    (Some(1), Some(b"bob_example.org\0".to_vec())),
                    (Some(-1), None),
                    (Some(-1), None),
                ]
            );
        });
        let warned: Vec<&str> = logs.lines().filter(|l| l.contains("WARN")).collect();
        assert_eq!(warned.len(), 1, "{logs}");
        let left_out = logs
            .lines()
            .filter(|l| l.contains("DEBUG") && l.contains("over the 16363"));
        assert_eq!(left_out.count(), 2, "{logs}");
        assert!(warned[0].contains("key=huge"), "{logs}");
        assert!(
            warned[0].contains("the answer is 20000 bytes, over the 16363"),
            "{logs}"
        );
    }

    #[test]
    fn imsg_bad_length_drops_the_buffer_and_goes_on() {
        let mut bad = 4u32.to_ne_bytes().to_vec();
        bad.extend_from_slice(&3u16.to_ne_bytes());
        bad.resize(40, 0);
        let mut h = Fake::default();
        let out = run_chunks(
            vec![
                open(),
                bad,
                imsg_req(Op::Check, Some(Service::Domain), "example.org"),
            ],
            &mut h,
        );
        assert_eq!(imsg_replies(&out), [(None, None), (Some(1), None)]);
    }

    #[test]
    fn imsg_eof_mid_message_is_clean() {
        let req = imsg_req(Op::Lookup, Some(Service::Alias), "bob@example.org");
        for cut in [1, 15, 16, req.len() - 1] {
            let mut h = Fake::default();
            let out = run_chunks(vec![open(), req[..cut].to_vec()], &mut h);
            assert_eq!(imsg_replies(&out), [(None, None)]);
            assert!(h.calls.is_empty());
        }
    }

    #[test]
    fn imsg_message_split_across_reads() {
        let req = imsg_req(Op::Lookup, Some(Service::Alias), "bob@example.org");
        let (a, b) = req.split_at(10);
        let mut h = Fake::default();
        let out = run_chunks(vec![open(), a.to_vec(), b.to_vec()], &mut h);
        assert_eq!(
            imsg_replies(&out),
            [(None, None), (Some(1), Some(b"bob_example.org\0".to_vec()))]
        );
    }

    /// Captures log output of one test.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if let Ok(mut v) = self.0.lock() {
                v.extend_from_slice(buf);
            }
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn logs_never_show_passwords_or_hashes() {
        // Through `logs_of`, which guards against a log line lost to
        // another test thread's cached interest (this test lost its first
        // lines that way once, in CI).
        let logs = logs_of(|| {
            let mut h = Fake::default();
            run_text(
                &[
                    &line("lookup", "auth", "00000001", "alice@example.org:s3cr3t|pw"),
                    &line("lookup", "credentials", "00000002", "alice@example.org"),
                    &format!(
                        "{}s3cr3t2\n",
                        line("lookup", "auth", "00000003", "bob:pass")
                    ),
                    "s3cr3t3|table\n",
                ],
                &mut h,
            );
        });
        assert!(logs.contains("alice@example.org:<redacted>"), "{logs}");
        assert!(logs.contains("bob:<redacted>"), "{logs}");
        for secret in ["s3cr3t", "pass", "$2b$"] {
            assert!(!logs.contains(secret), "{secret} in {logs}");
        }
    }

    /// A writer that accepts `room` bytes, then fails as a closed socket.
    struct FailsAfter {
        room: usize,
    }

    impl Write for FailsAfter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::Error::from(io::ErrorKind::BrokenPipe));
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// smtpd gone while a reply is written: the loop ends with the error
    /// and asks the table nothing more.
    #[test]
    fn a_failed_reply_ends_the_loop_with_the_error() {
        // Room for the handshake reply and part of the first answer.
        for room in [REGISTERED.len(), REGISTERED.len() + 5] {
            let chunks = Chunks::new([
                HANDSHAKE.to_string(),
                line("check", "domain", "00000001", "example.org"),
                line("check", "domain", "00000002", "example.org"),
            ]);
            let mut h = Fake::default();
            let err = serve(chunks, FailsAfter { room }, &mut h).expect_err("pipe broken");
            assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
            assert_eq!(h.calls, ["check domain example.org"], "room {room}");
        }
    }

    /// A reader that fails with `Interrupted` before every chunk, as a read
    /// cut short by a signal.
    struct Interrupting {
        inner: Chunks,
        interrupt: bool,
    }

    impl Read for Interrupting {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.interrupt = !self.interrupt;
            if self.interrupt {
                return Err(io::Error::from(io::ErrorKind::Interrupted));
            }
            self.inner.read(buf)
        }
    }

    #[test]
    fn interrupted_reads_are_retried() {
        let input = Interrupting {
            inner: Chunks::new([
                HANDSHAKE.to_string(),
                line("check", "domain", "00000001", "example.org"),
            ]),
            interrupt: false,
        };
        let mut h = Fake::default();
        let mut out = Vec::new();
        serve(input, &mut out, &mut h).expect("serve ends at EOF");
        assert_eq!(
            String::from_utf8_lossy(&out),
            format!("{REGISTERED}check-result|00000001|found\n")
        );
    }

    /// A line of exactly [`MAX_LINE`] bytes (without its `\n`) is kept and
    /// answered; one byte more is dropped.
    #[test]
    fn a_line_of_max_line_bytes_is_answered() {
        for (len, answered) in [(MAX_LINE, true), (MAX_LINE + 1, false)] {
            let mut long = line("lookup", "alias", "00000001", "").into_bytes();
            long.pop();
            long.resize(len, b'k');
            let mut chunks: Vec<Vec<u8>> = vec![HANDSHAKE.into()];
            chunks.extend(long.chunks(CHUNK).map(<[u8]>::to_vec));
            chunks.push(b"\n".to_vec());
            chunks.push(line("check", "domain", "00000002", "example.org").into_bytes());
            let mut h = Fake::default();
            let out = run_chunks(chunks, &mut h);
            let first = if answered {
                "lookup-result|00000001|not-found\n"
            } else {
                ""
            };
            assert_eq!(
                String::from_utf8_lossy(&out),
                format!("{REGISTERED}{first}check-result|00000002|found\n"),
                "line of {len} bytes"
            );
        }
    }

    /// An overlong line arriving in reads of any size is dropped whole,
    /// not only when a read happens to end at [`MAX_LINE`].
    #[test]
    fn overlong_line_in_uneven_reads_is_dropped() {
        let mut long = b"table|0.1|1.5|creds|lookup|alias|00000001|".to_vec();
        long.resize(MAX_LINE * 3, b'a');
        long.push(b'\n');
        let mut chunks: Vec<Vec<u8>> = vec![HANDSHAKE.into()];
        chunks.extend(long.chunks(10_000).map(<[u8]>::to_vec));
        chunks.push(line("check", "domain", "00000002", "example.org").into_bytes());
        let mut h = Fake::default();
        let out = run_chunks(chunks, &mut h);
        assert_eq!(
            String::from_utf8_lossy(&out),
            format!("{REGISTERED}check-result|00000002|found\n")
        );
        assert_eq!(h.calls, ["check domain example.org"]);
    }

    /// At most [`MAX_DRAIN`] bytes are dropped behind a request, even when
    /// the probe keeps saying more is waiting: the request after them is
    /// read and answered.
    #[test]
    fn draining_stops_at_max_drain() {
        let req = line("lookup", "auth", "00000001", "alice");
        let mut first = req.clone().into_bytes();
        first.resize(CHUNK, b'x');
        let mut chunks = vec![HANDSHAKE.as_bytes().to_vec(), first];
        let full = MAX_DRAIN / CHUNK - 1;
        chunks.extend((0..full).map(|_| vec![b'x'; CHUNK]));
        let mut last = vec![b'x'; req.len() - 1];
        last.push(b'\n');
        chunks.push(last);
        chunks.push(line("check", "domain", "00000002", "example.org").into_bytes());
        let mut h = Fake::default();
        let mut out = Vec::new();
        serve_with_probe(Chunks::new(chunks), &mut out, &mut h, || true)
            .expect("serve ends at EOF");
        assert_eq!(
            String::from_utf8_lossy(&out),
            format!("{REGISTERED}{CUT_REQUEST}check-result|00000002|found\n")
        );
    }

    /// Bytes read and consumed are given back at the next read: the buffer
    /// holds what is not yet read, not the whole conversation.
    #[test]
    fn consumed_bytes_are_reclaimed_at_the_next_read() {
        let mut input = Input::new(Chunks::new(["abc\n", "defgh\n"]));
        assert_eq!(input.next_line().unwrap().as_deref(), Some(&b"abc"[..]));
        assert_eq!(input.next_line().unwrap().as_deref(), Some(&b"defgh"[..]));
        assert_eq!(input.fill().unwrap(), 0);
        assert_eq!((input.start, input.end), (0, 0));
        assert_eq!(input.buf.len(), CHUNK, "one read's room, no more");
    }

    /// Draining drops what is buffered and every read the probe says is
    /// waiting, whole lines included, and counts all of it; the next line
    /// is the first one after them. (Skipping to the next line feed alone
    /// would answer the complete injected line `more`.)
    #[test]
    fn draining_drops_every_waiting_read_and_counts_it() {
        let mut input = Input::new(Chunks::new(["req\ninj", "ected\n", "more\n", "next\n"]));
        assert_eq!(input.next_line().unwrap().as_deref(), Some(&b"req"[..]));
        let mut waiting = 2_u32;
        let mut pending = move || {
            let more = waiting > 0;
            waiting = waiting.saturating_sub(1);
            more
        };
        let dropped = input.drain(&mut pending).unwrap();
        assert_eq!(dropped, "inj".len() + "ected\n".len() + "more\n".len());
        assert!(!input.skipping, "the last read ended its line");
        assert_eq!(input.next_line().unwrap().as_deref(), Some(&b"next"[..]));
        assert_eq!(input.next_line().unwrap(), None);
    }

    /// The log output of `f` at every level.
    fn logs_of(f: impl FnOnce()) -> String {
        // A global subscriber that wants every level (and writes nowhere):
        // otherwise a test thread that reaches a log call with no
        // subscriber can cache its interest as "never" while this thread
        // captures, and the line is lost (seen once in CI under load,
        // despite the rebuild below).
        static GLOBAL: std::sync::Once = std::sync::Once::new();
        GLOBAL.call_once(|| {
            let quiet = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_writer(std::io::sink)
                .finish();
            let _ = tracing::subscriber::set_global_default(quiet);
        });
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            // A log call first reached by a test running without a
            // subscriber may have been cached as disabled: ask again.
            tracing::callsite::rebuild_interest_cache();
            f();
        });
        let logs = captured.0.lock().map(|v| v.clone()).unwrap_or_default();
        String::from_utf8(logs).expect("utf-8 logs")
    }

    /// What smtpd sent that was odd but answered anyway is in the log, once,
    /// and only when it happened: another protocol version, input cut by
    /// EOF inside an imsg message, an overlong line.
    #[test]
    fn odd_input_is_logged_when_it_happens() {
        let text = |protocol: &str| {
            logs_of(|| {
                let handshake = HANDSHAKE.replace("protocol|0.1", &format!("protocol|{protocol}"));
                let out = run_chunks(vec![handshake], &mut Fake::default());
                assert_eq!(String::from_utf8_lossy(&out), REGISTERED);
            })
        };
        const PROTOCOL: &str = "unknown table protocol version";
        assert!(text("0.2").contains(PROTOCOL));
        assert!(!text("0.1").contains(PROTOCOL));

        let imsg = |version: u32, cut: usize| {
            logs_of(|| {
                let mut all = imsg_msg(&Message::Open {
                    version,
                    name: "creds".into(),
                });
                let req = imsg_req(Op::Check, Some(Service::Domain), "example.org");
                all.extend_from_slice(&req[..cut]);
                let out = run_chunks(vec![all], &mut Fake::default());
                assert_eq!(imsg_replies(&out), [(None, None)]);
            })
        };
        const VERSION: &str = "unexpected imsg table API version";
        const CUT: &str = "EOF inside an imsg message";
        let odd = imsg(3, 10);
        assert!(odd.contains(VERSION) && odd.contains(CUT), "{odd}");
        let normal = imsg(imsg::API_VERSION, 0);
        assert!(
            !normal.contains(VERSION) && !normal.contains(CUT),
            "{normal}"
        );

        let overlong = logs_of(|| {
            let mut chunks: Vec<Vec<u8>> = vec![HANDSHAKE.into()];
            let mut long = b"table|0.1|1.5|creds|lookup|alias|00000001|".to_vec();
            long.resize(MAX_LINE * 4, b'a');
            chunks.extend(long.chunks(CHUNK).map(<[u8]>::to_vec));
            chunks.push(b"aaa\n".to_vec());
            run_chunks(chunks, &mut Fake::default());
        });
        assert_eq!(
            overlong.matches("dropping a line longer than").count(),
            1,
            "{overlong}"
        );
    }

    /// An id the writer refuses gets no reply (none is possible), and it is
    /// no failure of the channel: the loop would go on. The parser refuses
    /// such ids first, so this guards a future parser change.
    #[test]
    fn an_unechoable_id_gets_no_reply_and_the_loop_goes_on() {
        for id in ["", "a|b", "a b"] {
            let mut out = Vec::new();
            send_text(&mut out, Op::Lookup, id, &Answer::NotFound).expect("not a channel error");
            assert!(out.is_empty(), "{id:?}");
        }
        let mut out = Vec::new();
        send_text(&mut out, Op::Lookup, "00000001", &Answer::NotFound).expect("written");
        assert_eq!(out, b"lookup-result|00000001|not-found\n");
    }

    /// A reader that fails once with `error`, then reads `then`.
    struct FailsOnce {
        error: Option<io::ErrorKind>,
        then: Chunks,
    }

    impl Read for FailsOnce {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.error.take() {
                Some(kind) => Err(io::Error::from(kind)),
                None => self.then.read(buf),
            }
        }
    }

    /// A read error other than an interruption means smtpd is gone: the
    /// loop ends with it instead of reading again.
    #[test]
    fn a_read_error_ends_the_loop_with_the_error() {
        let input = FailsOnce {
            error: Some(io::ErrorKind::ConnectionReset),
            then: Chunks::new([HANDSHAKE]),
        };
        let mut h = Fake::default();
        let mut out = Vec::new();
        let err = serve(input, &mut out, &mut h).expect_err("read failed");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
        assert!(out.is_empty());
        assert!(h.opened.is_empty());
    }
}
