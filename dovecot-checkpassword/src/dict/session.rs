//! One dict client connection: [`DictSession`], the state machine that
//! turns lines into replies through a [`DictBackend`], and
//! [`serve_connection`], the loop that reads lines (64 KiB cap, idle
//! timeout) and writes the replies.
//!
//! The decision a reader would question: a session hops to a blocking
//! thread (`spawn_blocking`) for every `L` and `I` line, although most of
//! them take well under a millisecond. Each is a database call that may
//! hang for the whole store timeout when the database is down; on a
//! runtime worker it would stall every other connection on that worker,
//! HTTP logins included. Two kinds of line are handled in place: those
//! that never touch the backend, and an `L` the backend can answer without
//! waiting ([`DictBackend::lookup_in_place`]: a cached answer known to be
//! fresh), which is most of them on a busy server; the hop and back costs
//! more than such an answer. When to close and what to answer is described
//! in the module doc of [`super`].

use std::io;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use crate::stop::stopped;
use mailtable_core::logging::{left_out_note, Throttle};

use super::proto::{
    parse_command, write_reply, Command, CommitResult, DictError, Lookup, Reply,
    ITERATE_FLAG_NO_VALUE, ITERATE_FLAG_SORT_BY_KEY, ITERATE_FLAG_SORT_BY_VALUE, MAX_LINE_LENGTH,
    READ_ONLY_ERROR, SUPPORTED_MAJOR_VERSIONS,
};

/// A connection with no byte of a next line for this long is closed.
/// Dovecot's dict client disconnects as soon as it is idle unless
/// `idle_msecs` says otherwise (reference §2.1); the shipped config keeps
/// connections 30 s, below this, so Dovecot closes first and never writes
/// to a connection serve is closing.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on writing one reply to a client that stopped reading.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a dict server needs from the database. Implemented by the binary
/// over the mailtable store.
pub trait DictBackend {
    /// Looks up one key (`shared/passdb/alice@example.org`) for `user`.
    fn lookup(&mut self, key: &str, user: &str) -> Lookup;
    /// Lists `(key, value)` rows whose key starts with `path`
    /// (`shared/userdb/`), full keys included. An error fails the whole
    /// iteration.
    fn iterate(&mut self, path: &str) -> Result<Vec<(String, String)>, String>;
    /// The answer of [`DictBackend::lookup`] when it can be given without
    /// waiting on the database (a cached answer known to be fresh);
    /// `None`: `lookup` is called on a thread that may wait. Default:
    /// `None`.
    fn lookup_in_place(&mut self, key: &str, user: &str) -> Option<Lookup> {
        let _ = (key, user);
        None
    }
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
            return self.hello(command);
        }
        let mut out = Vec::new();
        match command {
            Ok(Command::Hello { .. }) => return self.close("second handshake"),
            Ok(command) => answer(command, backend, &mut out),
            Err(e) => match e.command() {
                Some(cmd) => answer_malformed(cmd, &e, &mut out),
                None => return self.close(&e.to_string()),
            },
        }
        out
    }

    /// [`DictSession::handle`] for an `L` line of an open session that
    /// the backend answers in place ([`DictBackend::lookup_in_place`]),
    /// the same reply; `None` for any other line, or when the backend
    /// cannot answer without waiting: then `handle` it where waiting is
    /// allowed.
    pub fn handle_in_place(
        &mut self,
        line: &[u8],
        backend: &mut impl DictBackend,
    ) -> Option<Vec<u8>> {
        if !matches!(self.state, State::Ready { .. }) {
            return None;
        }
        let Ok(Command::Lookup { key, user }) = parse_command(line) else {
            return None;
        };
        let answer = backend.lookup_in_place(&key, &user)?;
        let mut out = Vec::new();
        lookup_reply(&key, &answer, &mut out);
        Some(out)
    }

    /// The first line of a connection: only a hello of a version we speak
    /// opens the session; anything else closes it, as Dovecot's server
    /// does (core@2.4.1:src/dict/dict-connection.c
    /// `dict_connection_handshake_args`).
    fn hello(&mut self, command: Result<Command, DictError>) -> Vec<u8> {
        match command {
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
        }
    }
}

/// Appends the reply to a well-formed command after the handshake; the
/// transaction commands get none.
fn answer(command: Command, backend: &mut impl DictBackend, out: &mut Vec<u8>) {
    match command {
        Command::Lookup { key, user } => lookup_reply(&key, &backend.lookup(&key, &user), out),
        Command::Iterate {
            flags,
            max_rows,
            path,
            ..
        } => iterate(backend, flags, max_rows, &path, out),
        Command::Commit { id } | Command::CommitAsync { id } => {
            let async_commit = matches!(command, Command::CommitAsync { .. });
            write_reply(
                &Reply::Commit {
                    id,
                    async_commit,
                    result: CommitResult::Failed(READ_ONLY_ERROR),
                },
                out,
            );
        }
        Command::Hello { .. }
        | Command::Begin { .. }
        | Command::Set { .. }
        | Command::Unset { .. }
        | Command::AtomicInc { .. }
        | Command::Timestamp { .. }
        | Command::HideLogValues { .. }
        | Command::Rollback { .. } => {}
    }
}

/// Failed dict lookups, logged at most once a second.
static LOOKUP_FAILURES: Throttle = Throttle::new();

/// Appends the reply to a lookup of `key`, after logging a failure.
fn lookup_reply(key: &str, answer: &Lookup, out: &mut Vec<u8>) {
    if let Lookup::Failed(e) = answer {
        match LOOKUP_FAILURES.admit(std::time::Instant::now()) {
            Some(n) => tracing::error!("dict: lookup {key:?} failed: {e}{}", left_out_note(n)),
            None => tracing::debug!("dict: lookup {key:?} failed: {e}"),
        }
    }
    write_reply(&Reply::Lookup(answer), out);
}

/// Appends the rows under `path` and the terminator, or one `F` line.
fn iterate(
    backend: &mut impl DictBackend,
    flags: u32,
    max_rows: u64,
    path: &str,
    out: &mut Vec<u8>,
) {
    let mut rows = match backend.iterate(path) {
        Ok(rows) => rows,
        Err(e) => {
            tracing::error!("dict: iterate {path:?} failed: {e}");
            write_reply(&Reply::IterateFailed(&e), out);
            return;
        }
    };
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
        write_reply(&Reply::IterateRow { key, value }, out);
    }
    write_reply(&Reply::IterateEnd, out);
}

/// Appends the reply to a malformed command with a known letter.
/// Commands that are owed one reply get an `F` so the client's FIFO of
/// pending commands stays aligned; transaction commands get none.
fn answer_malformed(cmd: char, e: &DictError, out: &mut Vec<u8>) {
    match cmd {
        'L' => {
            tracing::warn!("dict: {e}");
            write_reply(&Reply::Lookup(&Lookup::Failed(e.to_string())), out);
        }
        'I' => {
            tracing::warn!("dict: {e}");
            write_reply(&Reply::IterateFailed(&e.to_string()), out);
        }
        'C' | 'D' => {
            tracing::warn!("dict: {e}");
            // The id could not be parsed; the client ignores it.
            write_reply(
                &Reply::Commit {
                    id: 0,
                    async_commit: cmd == 'D',
                    result: CommitResult::Failed(&e.to_string()),
                },
                out,
            );
        }
        _ => tracing::warn!("dict: ignoring bad transaction command: {e}"),
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
pub async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<LineRead> {
    buf.clear();
    loop {
        let available = reader.fill_buf().await?;
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

/// Which clock of [`serve_connection`] ran out.
enum Waited {
    /// No byte of a next line within [`IDLE_TIMEOUT`].
    Idle,
    /// A line begun but not complete within the line deadline.
    Slow,
}

/// [`read_line`] under the two clocks: up to [`IDLE_TIMEOUT`] for the
/// first byte, then `line_timeout` for the whole line.
async fn next_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    line_timeout: Duration,
) -> Result<io::Result<LineRead>, Waited> {
    match tokio::time::timeout(IDLE_TIMEOUT, reader.fill_buf()).await {
        Err(_) => return Err(Waited::Idle),
        Ok(Err(e)) => return Ok(Err(e)),
        Ok(Ok(_)) => {}
    }
    tokio::time::timeout(line_timeout, read_line(reader, line, MAX_LINE_LENGTH))
        .await
        .map_err(|_| Waited::Slow)
}

/// Whether handling `line` may call the backend: lookups and iterations.
fn needs_backend(line: &[u8]) -> bool {
    matches!(line.first(), Some(b'L' | b'I'))
}

/// Serves one client connection until it closes, a line is too long, it
/// stays idle (no byte of a next line) for [`IDLE_TIMEOUT`], a line once
/// begun is not complete within `line_timeout`, the session decides to
/// close, or `stop` turns true. A line being answered when `stop` comes
/// still gets its reply. Replies are flushed after every line that
/// produced one, so a pipelining client is answered in order.
///
/// Two clocks, because Dovecot has two behaviours: it writes a command in
/// one go, so a line that has begun and does not end within a few seconds
/// (`serve` passes its HTTP header deadline) is a stuck or hostile client
/// trickling bytes to hold a connection slot; but with `idle_msecs` (2.4:
/// `dict_proxy_idle_timeout`) it keeps a quiet connection open between
/// lookups (the shipped config: 30 s), and closing that early would race
/// its next command.
pub async fn serve_connection<R, W, B>(
    mut reader: R,
    mut writer: W,
    mut backend: B,
    line_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
    B: DictBackend + Send + 'static,
{
    let mut session = DictSession::new();
    let mut line = Vec::new();
    loop {
        let read = tokio::select! {
            biased;
            () = stopped(&mut stop) => return Ok(()),
            read = next_line(&mut reader, &mut line, line_timeout) => read,
        };
        match read {
            Err(Waited::Idle) => {
                tracing::debug!("dict: closing connection idle for {IDLE_TIMEOUT:?}");
                return Ok(());
            }
            Err(Waited::Slow) => {
                tracing::warn!(
                    "dict: closing connection: a line begun was not complete within {line_timeout:?}"
                );
                return Ok(());
            }
            Ok(read) => match read? {
                LineRead::Eof => return Ok(()),
                LineRead::TooLong => {
                    tracing::warn!(
                        "dict: closing connection: line longer than {MAX_LINE_LENGTH} bytes"
                    );
                    return Ok(());
                }
                LineRead::Line => {}
            },
        }
        let reply = if !needs_backend(&line) {
            session.handle(&line, &mut backend)
        } else if let Some(reply) = session.handle_in_place(&line, &mut backend) {
            reply
        } else {
            let (mut s, mut b, l) = (session, backend, std::mem::take(&mut line));
            let (s, b, reply) = tokio::task::spawn_blocking(move || {
                let reply = s.handle(&l, &mut b);
                (s, b, reply)
            })
            .await
            .map_err(io::Error::other)?;
            (session, backend) = (s, b);
            reply
        };
        if !reply.is_empty() {
            let write = async {
                writer.write_all(&reply).await?;
                writer.flush().await
            };
            tokio::time::timeout(WRITE_TIMEOUT, write)
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "dict: reply not taken"))??;
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
    use std::sync::{Arc, Mutex};

    /// A backend over a map; `fail` makes every call fail. Clones share the
    /// log of lookups, so a test can read it after the connection loop
    /// took the backend.
    #[derive(Default, Clone)]
    struct MapBackend {
        map: BTreeMap<String, String>,
        /// Answered by `lookup_in_place`, without a log entry.
        cached: BTreeMap<String, Lookup>,
        fail: bool,
        log: Arc<Mutex<Vec<(String, String)>>>,
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

        fn lookups(&self) -> Vec<(String, String)> {
            self.log.lock().expect("log lock").clone()
        }
    }

    impl DictBackend for MapBackend {
        fn lookup(&mut self, key: &str, user: &str) -> Lookup {
            self.log
                .lock()
                .expect("log lock")
                .push((key.to_string(), user.to_string()));
            if self.fail {
                return Lookup::Failed("database down".into());
            }
            match self.map.get(key) {
                Some(v) => Lookup::Found(v.clone()),
                None => Lookup::NotFound,
            }
        }
        fn lookup_in_place(&mut self, key: &str, _user: &str) -> Option<Lookup> {
            self.cached.get(key).cloned()
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
            b.lookups(),
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
        assert!(b.lookups().is_empty());
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

    /// A lookup the backend answers in place gets the reply the lookup
    /// proper would give (the same bytes), without a call to it; any other
    /// line, an uncached key, and a session before its hello are left to
    /// `handle`.
    #[test]
    fn lookups_answered_in_place_get_the_same_reply() {
        let rows = [("shared/a", "1"), ("shared/b", "2")];
        let mut b = MapBackend::with(&rows);
        b.cached
            .insert("shared/a".into(), Lookup::Found("1".into()));
        b.cached.insert("shared/none".into(), Lookup::NotFound);
        for line in [&b"Lshared/a\tu"[..], b"Lshared/none\tu"] {
            let in_place = ready(3).handle_in_place(line, &mut b);
            let proper = ready(3).handle(line, &mut MapBackend::with(&rows));
            assert_eq!(in_place, Some(proper), "{line:?}");
        }
        assert!(b.lookups().is_empty());
        for line in [
            &b"Lshared/b\tu"[..],
            b"Ishared/\t0\t0\tu",
            b"L",
            b"H3\t2\t0\t\tauth",
            b"C1",
        ] {
            assert_eq!(ready(3).handle_in_place(line, &mut b), None, "{line:?}");
        }
        assert_eq!(
            DictSession::new().handle_in_place(b"Lshared/a\tu", &mut b),
            None
        );
        assert!(b.lookups().is_empty());
    }

    // ---- read_line / serve_connection

    /// Runs the connection loop over `input`, collecting its output; the
    /// backend is a clone sharing `b`'s log.
    async fn serve(input: &[u8], out: &mut Vec<u8>, b: &MapBackend) -> io::Result<()> {
        let (_keep, stop) = watch::channel(false);
        serve_connection(input, &mut *out, b.clone(), Duration::from_secs(5), stop).await
    }

    #[tokio::test]
    async fn read_line_strips_lf_and_crlf() {
        let mut r = &b"one\ntwo\r\nthree"[..];
        let mut buf = Vec::new();
        assert_eq!(
            read_line(&mut r, &mut buf, 10).await.ok(),
            Some(LineRead::Line)
        );
        assert_eq!(buf, b"one");
        assert_eq!(
            read_line(&mut r, &mut buf, 10).await.ok(),
            Some(LineRead::Line)
        );
        assert_eq!(buf, b"two");
        assert_eq!(
            read_line(&mut r, &mut buf, 10).await.ok(),
            Some(LineRead::Eof)
        );
    }

    #[tokio::test]
    async fn read_line_enforces_the_cap() {
        let mut buf = Vec::new();
        let mut exact = &b"12345\n"[..];
        assert_eq!(
            read_line(&mut exact, &mut buf, 5).await.ok(),
            Some(LineRead::Line)
        );
        let mut long = &b"123456\n"[..];
        assert_eq!(
            read_line(&mut long, &mut buf, 5).await.ok(),
            Some(LineRead::TooLong)
        );
    }

    #[tokio::test]
    async fn read_line_joins_short_reads() {
        // A reader with a 2-byte buffer delivers the line in pieces.
        let inner = &b"Lshared/x\tu\n"[..];
        let mut r = tokio::io::BufReader::with_capacity(2, inner);
        let mut buf = Vec::new();
        assert_eq!(
            read_line(&mut r, &mut buf, 64).await.ok(),
            Some(LineRead::Line)
        );
        assert_eq!(buf, b"Lshared/x\tu");
    }

    #[tokio::test]
    async fn serves_a_pipelined_transcript() {
        let b = MapBackend::with(&[("shared/passdb/alice", "{\"user\":\"alice\"}")]);
        let input = b"H3\t2\t0\t\tauthdict\nLshared/passdb/alice\talice\nB1\t\nC1\nLshared/passdb/bob\tbob\n";
        let mut out = Vec::new();
        assert!(serve(&input[..], &mut out, &b).await.is_ok());
        assert_eq!(
            out,
            b"O{\"user\":\"alice\"}\nF1\tmailtable dict is read-only\nN\n".to_vec()
        );
    }

    /// The loop answers a cached lookup in place and the rest through the
    /// backend's lookup proper, replies in the order of the lines.
    #[tokio::test]
    async fn the_loop_answers_cached_lookups_in_place_in_order() {
        let mut b = MapBackend::with(&[("shared/passdb/alice", "A"), ("shared/passdb/bob", "B")]);
        b.cached
            .insert("shared/passdb/bob".into(), Lookup::Found("B".into()));
        let input = b"H3\t2\t0\t\tauth\nLshared/passdb/alice\ta\nLshared/passdb/bob\tb\nLshared/passdb/carol\tc\n";
        let mut out = Vec::new();
        assert!(serve(&input[..], &mut out, &b).await.is_ok());
        assert_eq!(out, b"OA\nOB\nN\n".to_vec());
        let asked: Vec<String> = b.lookups().into_iter().map(|(k, _)| k).collect();
        assert_eq!(asked, ["shared/passdb/alice", "shared/passdb/carol"]);
    }

    #[tokio::test]
    async fn over_long_line_closes_without_reply() {
        let b = MapBackend::default();
        let mut input = b"H4\t0\t0\t\tauth\nL".to_vec();
        input.extend(vec![b'x'; MAX_LINE_LENGTH]);
        input.extend_from_slice(b"\tu\nLshared/x\tu\n");
        let mut out = Vec::new();
        assert!(serve(&input[..], &mut out, &b).await.is_ok());
        assert!(out.is_empty());
        assert!(b.lookups().is_empty());
    }

    #[tokio::test]
    async fn bad_hello_ends_the_connection() {
        let b = MapBackend::with(&[("k", "v")]);
        let mut out = Vec::new();
        assert!(serve(b"H2\t1\t0\t\tauth\nLk\tu\n", &mut out, &b)
            .await
            .is_ok());
        assert!(out.is_empty());
        assert!(b.lookups().is_empty());
    }
}
