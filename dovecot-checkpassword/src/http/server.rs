//! The HTTP around [`super::api`]: one connection served by hyper, the
//! request head checked before the body is read, the limits, and the
//! response head.
//!
//! The decision a reader would question: the body is read by hand, late,
//! instead of letting the service take a whole request. hyper sends
//! `HTTP/1.1 100 Continue` the first time the body is polled
//! (hyper 1.x `src/proto/h1/conn.rs`, `Writing::Continue`), so everything
//! that can refuse a request (token, path, method, framing, size) runs on
//! the head alone; only then is the body polled.
//!
//! # HTTP handled
//!
//! - `Expect: 100-continue`: Dovecot 2.3 sends it with every payload
//!   (`http_client_request_set_payload(..., TRUE)` in
//!   core@2.3.19.1:src/lib-lua/dlua-dovecot-http.c; VERIFIED §5.1), 2.4 only
//!   when the script passes `true` as the third argument of `set_payload`
//!   (core@2.4.1:src/lib-lua/dlua-dovecot-http.c). The client adds the
//!   header only for a non-empty payload sent with that flag, and then
//!   holds the body until `100 Continue` arrives (or, before the first
//!   one, 2 s pass: `HTTP_CLIENT_CONTINUE_TIMEOUT_MSECS`)
//!   (`http_client_request_set_payload` and `http_client_request_send_real`
//!   in src/lib-http/http-client-request.c, both versions): one more round
//!   trip. So the shipped script sends no payload: its fields travel in
//!   headers (the header form, [`super::api::parse_header_fields`]) and the
//!   request goes out in one write. Every request is logged at debug level
//!   with its form and whether it asked to continue (the e2e tests check
//!   that line). Bodies with `Expect` stay accepted: older scripts, and
//!   this one for fields too long for headers.
//!   A request with `Expect` that is refused gets `Connection: close`,
//!   since the client may or may not send the body after all (RFC 9110
//!   §10.1.1); without `Expect` the announced body is read, dropped, and
//!   the connection kept.
//! - Keep-alive: HTTP/1.1 connections persist unless `Connection: close`;
//!   HTTP/1.0 ones only with `Connection: keep-alive` (hyper then answers
//!   in HTTP/1.0 with `Connection: keep-alive`). Pipelined requests are
//!   answered in order. A client that half-closes after its request still
//!   gets the answer.
//! - Header form: the fields in `Mailtable-User` and `Mailtable-Password`
//!   with an empty body. A non-empty body besides them is a 400 (two
//!   sources for one field); so is a repeated field header. Their values,
//!   like a body's password, stay in hyper's buffers until the request is
//!   done; only the decoded copy is a [`Secret`].
//! - Bodies by `Content-Length` only. `Transfer-Encoding: chunked` gets 411
//!   with the connection closed. Dovecot never sends chunked: its Lua
//!   payload is a fixed string with a known size.
//! - Request targets in origin form (`/passdb/verify`) and absolute form
//!   (`http://127.0.0.1:8787/passdb/verify`), the latter because Dovecot
//!   2.4's client sends it when told to reach the server through
//!   `proxy_socket_path`, its only way onto a UNIX socket
//!   (core@2.4.1:src/lib-http/http-client-request.c,
//!   `http_client_request_do_submit`); hyper's `Uri::path` is the path of
//!   both. The query string is ignored.
//! - Limits: a head of at most [`MAX_HEAD`] bytes and [`MAX_HEADERS`]
//!   fields (hyper answers 431 beyond), complete within
//!   [`HEADER_TIMEOUT`] of the connection opening or of the previous
//!   response (hyper closes the connection then, without an answer). The
//!   same deadline ends idle keep-alive connections: hyper starts it as
//!   soon as it waits for a head. A body has as long again once the head
//!   is in; past that the connection ends without an answer. A request
//!   without the token is answered 401 and closed without waiting for its
//!   body (any client that reaches the socket could otherwise hold
//!   connections open).
//! - Garbage never panics: hyper answers what it cannot parse with a bare
//!   400 and closes; an EOF mid-request just ends the connection.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, StatusCode, Version};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use super::api::{
    dispatch, dispatch_in_place, error_response, parse_request, reason, route, ApiBackend,
    ApiConfig, FieldHeader, Format, HttpError, Response, PASSWORD_HEADER, USER_HEADER,
};
use crate::secret::Secret;
use crate::stop::stopped;

/// Largest request head (request line and headers) accepted.
pub const MAX_HEAD: usize = 8 * 1024;
/// Most header fields accepted in one request.
pub const MAX_HEADERS: usize = 32;
/// Deadline for a whole request head, and for the next one on a kept-alive
/// connection. A few seconds: Dovecot writes a head in one go.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// What the server needs from a request head. Not `PartialEq`: it holds
/// the `Authorization` value.
#[derive(Debug)]
struct Head {
    /// Method, e.g. `POST`.
    method: String,
    /// Path of the target, query and absolute-form authority dropped.
    path: String,
    /// Body length announced (0 when absent); `None` for chunked.
    content_length: Option<u64>,
    /// `Transfer-Encoding` present: `Some(true)` when it ends in chunked.
    chunked: Option<bool>,
    /// `Expect: 100-continue` from an HTTP/1.1 client.
    expect_continue: bool,
    /// Whether the connection may serve another request after this one.
    keep_alive: bool,
    /// The `Authorization` header value, kept secret.
    authorization: Option<Secret>,
    /// Body format from `Content-Type`.
    format: Format,
    /// The fields come in headers ([`USER_HEADER`], [`PASSWORD_HEADER`]),
    /// not in the body.
    header_form: bool,
}

/// Whether a comma-separated header has `token` (case-insensitive).
fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

impl Head {
    fn of<B: Body>(req: &Request<B>) -> Head {
        let headers = req.headers();
        let http11 = req.version() == Version::HTTP_11;
        let close = has_token(headers, header::CONNECTION, "close");
        let keep_alive = !close && (http11 || has_token(headers, header::CONNECTION, "keep-alive"));
        let chunked = headers
            .contains_key(header::TRANSFER_ENCODING)
            .then(|| has_token(headers, header::TRANSFER_ENCODING, "chunked"));
        Head {
            method: req.method().as_str().to_owned(),
            path: req.uri().path().to_owned(),
            content_length: req.body().size_hint().exact(),
            chunked,
            // An HTTP/1.0 client cannot understand 100 (RFC 9110 §10.1.1).
            expect_continue: http11 && has_token(headers, header::EXPECT, "100-continue"),
            keep_alive,
            authorization: headers
                .get(header::AUTHORIZATION)
                .map(|v| Secret::new(v.as_bytes())),
            format: headers
                .get(header::CONTENT_TYPE)
                .map_or(Format::Text, |v| Format::from_content_type(v.as_bytes())),
            header_form: headers.contains_key(USER_HEADER) || headers.contains_key(PASSWORD_HEADER),
        }
    }

    /// A framing problem that ends the request before routing: the body's
    /// end is unknown or it is too large to read.
    fn framing_error(&self, max_body: usize) -> Option<HttpError> {
        match (self.chunked, self.content_length) {
            (Some(true), _) => Some(HttpError::Chunked),
            (Some(false), _) => Some(HttpError::TransferEncoding),
            (None, Some(n)) if n > max_body as u64 => Some(HttpError::BodyTooLarge(max_body)),
            (None, None) => Some(HttpError::Chunked),
            (None, Some(_)) => None,
        }
    }
}

/// One field header of the header form, as [`parse_header_fields`] wants
/// it.
fn field_header<'a>(headers: &'a HeaderMap, name: &str) -> FieldHeader<'a> {
    let mut all = headers.get_all(name).iter();
    match (all.next(), all.next()) {
        (None, _) => FieldHeader::Absent,
        (Some(v), None) => FieldHeader::Once(v.as_bytes()),
        (Some(_), Some(_)) => FieldHeader::Repeated,
    }
}

/// Reads the whole body, at most `max` bytes, complete within `within`
/// (the head's deadline: a body that never comes would hold the
/// connection, and one of `max_connections`, for good). Polling it is what
/// sends `100 Continue` to a client that asked for it.
async fn read_body(body: Incoming, max: usize, within: Duration) -> io::Result<Bytes> {
    match tokio::time::timeout(within, Limited::new(body, max).collect()).await {
        Ok(collected) => collected.map(|c| c.to_bytes()).map_err(io::Error::other),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("request body not complete within {} ms", within.as_millis()),
        )),
    }
}

/// Answers one request. An `Err` (the body ended early, the client went
/// away) makes hyper drop the connection without a response: there is no
/// one left to read it.
async fn answer<B>(
    req: Request<Incoming>,
    api: Arc<ApiConfig>,
    body_timeout: Duration,
    backend: B,
) -> io::Result<HttpResponse>
where
    B: ApiBackend + Send + 'static,
{
    let head = Head::of(&req);
    // Which request form, and whether the client waits for `100 Continue`
    // (one more round trip): tests/e2e/test-dovecot-2[34].sh read this line
    // to check that the shipped Lua script never asks for it.
    tracing::debug!(
        "api: {} {}: {}, {}",
        head.method,
        head.path,
        match (head.header_form, head.content_length) {
            (true, _) => "fields in headers",
            (false, Some(0)) => "no fields",
            (false, _) => "fields in body",
        },
        if head.expect_continue {
            "Expect: 100-continue"
        } else {
            "no Expect"
        }
    );
    let (parts, body) = req.into_parts();
    if let Some(e) = head.framing_error(api.max_body) {
        tracing::warn!("api: {} {}: {e}", head.method, head.path);
        return Ok(to_hyper(&error_response(&e, head.format, true)));
    }
    let routed = route(&head.method, &head.path, head.authorization.as_ref(), &api);
    let endpoint = match routed {
        Ok(endpoint) => endpoint,
        Err(e) => {
            tracing::warn!("api: {} {}: {e}", head.method, head.path);
            // The client may hold the body back (it asked to continue), or
            // send it anyway; only a body announced without Expect can be
            // skipped safely. A client without the token is not waited
            // for at all: it gets its 401 and the connection ends.
            let skip = !head.expect_continue && head.keep_alive && e != HttpError::Unauthorized;
            if skip {
                read_body(body, api.max_body, body_timeout).await?;
            }
            return Ok(to_hyper(&error_response(&e, head.format, !skip)));
        }
    };
    let bytes = read_body(body, api.max_body, body_timeout).await?;
    let format = head.format;
    let parsed = parse_request(
        endpoint,
        format,
        &bytes,
        field_header(&parts.headers, USER_HEADER),
        field_header(&parts.headers, PASSWORD_HEADER),
    );
    let mut backend = backend;
    let mut response = match parsed {
        // A fresh cached answer needs no thread that may wait (see
        // `dispatch_in_place`): answered here, without the hop.
        Ok(request) => match dispatch_in_place(endpoint, &request, &mut backend, format) {
            Some(response) => response,
            None => tokio::task::spawn_blocking(move || {
                dispatch(endpoint, &request, &mut backend, format)
            })
            .await
            .map_err(io::Error::other)?,
        },
        Err(e) => {
            tracing::warn!("api: {}: {e}", head.path);
            error_response(&e, format, false)
        }
    };
    wipe(bytes);
    response.close |= !head.keep_alive;
    Ok(to_hyper(&response))
}

/// The body held a cleartext password: zero it when the bytes are ours
/// alone. When they still share hyper's read buffer they are out of reach
/// (the same best effort as [`Secret`]'s).
fn wipe(bytes: Bytes) {
    if let Ok(mut owned) = bytes.try_into_mut() {
        owned.fill(0);
    }
}

type HttpResponse = hyper::Response<Full<Bytes>>;

/// The hyper response for `r`: `Content-Type`, `Content-Length`, the
/// status's extra fields, `Connection: close` when the connection ends
/// (hyper closes after writing a response that carries it), and the RFC
/// 9110 reason phrase.
fn to_hyper(r: &Response) -> HttpResponse {
    let mut response = hyper::Response::new(Full::new(Bytes::from(r.body.clone())));
    *response.status_mut() =
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(r.format.content_type()),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(r.body.len()));
    for (name, value) in r.extra_headers() {
        if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    if r.close {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let phrase = reason(r.status);
    if phrase != "Unknown" {
        response
            .extensions_mut()
            .insert(hyper::ext::ReasonPhrase::from_static(phrase.as_bytes()));
    }
    response
}

/// Serves one connection until the client closes it, a response closes
/// it, the header deadline passes, or `stop` turns true (then a request
/// being answered still gets its response, and an idle connection ends at
/// once).
pub async fn serve_connection<I, B>(
    io: I,
    api: Arc<ApiConfig>,
    header_timeout: Duration,
    backend: B,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: ApiBackend + Clone + Send + 'static,
{
    let service =
        service_fn(move |req| answer(req, Arc::clone(&api), header_timeout, backend.clone()));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_header_size(MAX_HEAD)
        .max_headers(MAX_HEADERS)
        .title_case_headers(true)
        .half_close(true)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let ended = tokio::select! {
        ended = conn.as_mut() => ended,
        () = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    ended.map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::api::{Account, Endpoint, LookupResult, VerifyResult, MAX_BODY};
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const SECRET: &str = "s3cret-token";
    const CONTINUE: &str = "HTTP/1.1 100 Continue\r\n\r\n";

    /// A backend with one user, alice, password "pw"; `down` fails all.
    /// Clones share the call log: hyper's service clones the backend for
    /// every request.
    #[derive(Default, Clone)]
    struct OneUser {
        down: bool,
        /// Answers userdb lookups in place, as if cached.
        cached: bool,
        log: Arc<Mutex<Vec<String>>>,
    }

    impl OneUser {
        fn call(&self, what: String) {
            self.log.lock().expect("log lock").push(what);
        }
        fn calls(&self) -> Vec<String> {
            self.log.lock().expect("log lock").clone()
        }
    }

    fn alice() -> Account {
        Account {
            user: "alice@example.org".into(),
            fields: vec![
                ("uid".into(), "5000".into()),
                ("gid".into(), "5000".into()),
                ("home".into(), "/var/vmail/example.org/alice".into()),
                ("quota_rule".into(), "*:storage=1G".into()),
            ],
        }
    }

    impl ApiBackend for OneUser {
        fn passdb_verify(&mut self, user: &str, password: &Secret) -> VerifyResult {
            self.call(format!("verify {user}"));
            if self.down {
                return VerifyResult::TempFail("database down".into());
            }
            match (user, password.expose()) {
                ("alice@example.org" | "alice_example.org", b"pw") => VerifyResult::Ok(Account {
                    user: "alice@example.org".into(),
                    fields: vec![("userdb_uid".into(), "5000".into())],
                }),
                ("alice@example.org" | "alice_example.org", _) => VerifyResult::Mismatch,
                _ => VerifyResult::Unknown,
            }
        }
        fn passdb_lookup(&mut self, user: &str) -> LookupResult {
            self.call(format!("passdb {user}"));
            if self.down {
                return LookupResult::TempFail("database down".into());
            }
            match user {
                "alice@example.org" => LookupResult::Found(Account {
                    user: user.into(),
                    fields: vec![("password".into(), "{BLF-CRYPT}$2b$05$x".into())],
                }),
                _ => LookupResult::Unknown,
            }
        }
        fn userdb_lookup(&mut self, user: &str) -> LookupResult {
            self.call(format!("userdb {user}"));
            if self.down {
                return LookupResult::TempFail("database down".into());
            }
            match user {
                "alice@example.org" | "alice_example.org" => LookupResult::Found(alice()),
                _ => LookupResult::Unknown,
            }
        }
        fn userdb_iterate(&mut self) -> Result<Vec<String>, String> {
            self.call("iterate".into());
            match self.down {
                true => Err("database down".into()),
                false => Ok(vec!["alice@example.org".into(), "bob@example.org".into()]),
            }
        }
        fn lookup_in_place(&mut self, endpoint: Endpoint, user: &str) -> Option<LookupResult> {
            if !self.cached || endpoint != Endpoint::UserdbLookup {
                return None;
            }
            self.call(format!("in place {user}"));
            Some(match user {
                "alice@example.org" | "alice_example.org" => LookupResult::Found(alice()),
                _ => LookupResult::Unknown,
            })
        }
    }

    /// One connection served with head deadline `deadline`: the client's
    /// end, the server's task, and the stop switch (kept off while held).
    fn serve_one(
        deadline: Duration,
        backend: OneUser,
    ) -> (
        tokio::io::DuplexStream,
        tokio::task::JoinHandle<io::Result<()>>,
        watch::Sender<bool>,
    ) {
        let (client, server) = tokio::io::duplex(1 << 20);
        let (keep, stop) = watch::channel(false);
        let api = Arc::new(ApiConfig::new(Secret::new(SECRET)));
        let served = tokio::spawn(serve_connection(server, api, deadline, backend, stop));
        (client, served, keep)
    }

    /// Plays a client on a fresh connection: sends each chunk; a chunk
    /// marked as gated body goes out only once `100 Continue` has arrived,
    /// like a client that waits for it (and is never sent otherwise).
    /// Then the client half-closes and reads to the end. Returns all the
    /// server wrote, `Date` lines removed (hyper adds one, RFC 9110
    /// §6.6.1).
    async fn exchange(chunks: &[(&[u8], bool)], backend: &OneUser) -> String {
        let run = async {
            let (client, served, _keep) = serve_one(HEADER_TIMEOUT, backend.clone());
            let (mut rd, mut wr) = tokio::io::split(client);
            let mut out = Vec::new();
            for &(chunk, gated) in chunks {
                if gated {
                    while !String::from_utf8_lossy(&out).contains(CONTINUE) {
                        let mut buf = [0u8; 4096];
                        match rd.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => out.extend_from_slice(&buf[..n]),
                        }
                    }
                    if !String::from_utf8_lossy(&out).contains(CONTINUE) {
                        break;
                    }
                }
                if wr.write_all(chunk).await.is_err() {
                    break;
                }
            }
            let _ = wr.shutdown().await;
            let _ = rd.read_to_end(&mut out).await;
            let _ = served.await;
            out
        };
        let out = tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("exchange finished");
        String::from_utf8_lossy(&out)
            .split_inclusive("\r\n")
            .filter(|line| !line.starts_with("Date: "))
            .collect()
    }

    async fn send(input: &[u8], backend: &OneUser) -> String {
        exchange(&[(input, false)], backend).await
    }

    fn post(path: &str, extra_headers: &str, body: &[u8]) -> Vec<u8> {
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:8787\r\nAuthorization: Bearer {SECRET}\r\n{extra_headers}Content-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        req
    }

    // ---- the head

    #[test]
    fn reads_a_dovecot_style_head() {
        // What Dovecot 2.3's client sends (VERIFIED §5.1).
        let req = Request::builder()
            .method("POST")
            .uri("/passdb/verify")
            .header("Host", "127.0.0.1:8787")
            .header("Date", "Mon, 01 Jan 2024 00:00:00 GMT")
            .header("User-Agent", "dovecot")
            .header("Expect", "100-continue")
            .header("Connection", "Keep-Alive")
            .header("Content-Length", "30")
            .header("Authorization", "Bearer abc")
            .body(Full::new(Bytes::from_static(&[b'x'; 30])))
            .expect("valid request");
        let head = Head::of(&req);
        assert_eq!(head.method, "POST");
        assert_eq!(head.path, "/passdb/verify");
        assert_eq!(head.content_length, Some(30));
        assert!(head.expect_continue);
        assert!(head.keep_alive);
        assert_eq!(head.format, Format::Text);
        assert_eq!(head.framing_error(MAX_BODY), None);
        assert_eq!(
            head.authorization.as_ref().map(|s| s.expose().to_vec()),
            Some(b"Bearer abc".to_vec())
        );
        // The Authorization value never shows in Debug output.
        assert!(!format!("{head:?}").contains("abc"));
    }

    #[tokio::test]
    async fn head_limits() {
        let mut big = b"POST / HTTP/1.1\r\nX: ".to_vec();
        big.extend(vec![b'a'; MAX_HEAD]);
        big.extend_from_slice(b"\r\n\r\n");
        let out = send(&big, &OneUser::default()).await;
        assert!(
            out.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{out}"
        );
        let mut many = b"POST / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        let out = send(&many, &OneUser::default()).await;
        assert!(
            out.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{out}"
        );
        assert!(out.contains("Connection: close\r\n"), "{out}");
    }

    #[tokio::test]
    async fn framing_errors() {
        let auth = format!("Authorization: Bearer {SECRET}\r\n");
        let too_large = format!("Content-Length: {}\r\n", MAX_BODY + 1);
        for (headers, status) in [
            ("Transfer-Encoding: chunked\r\n", "411 Length Required"),
            (
                "Transfer-Encoding: gzip, chunked\r\n",
                "411 Length Required",
            ),
            ("Transfer-Encoding: gzip\r\n", "400 Bad Request"),
            ("Content-Length: -1\r\n", "400 Bad Request"),
            (
                "Content-Length: 1\r\nContent-Length: 2\r\n",
                "400 Bad Request",
            ),
            (too_large.as_str(), "413 Content Too Large"),
            (
                "Content-Length: 99999999999999999999999\r\n",
                "400 Bad Request",
            ),
        ] {
            let input = format!("POST /passdb/verify HTTP/1.1\r\n{auth}{headers}\r\n");
            let backend = OneUser::default();
            let out = send(input.as_bytes(), &backend).await;
            assert!(
                out.starts_with(&format!("HTTP/1.1 {status}\r\n")),
                "{headers}: {out}"
            );
            assert_eq!(out.matches("HTTP/1.1").count(), 1, "{headers}: {out}");
            assert!(out.contains("Connection: close\r\n"), "{headers}: {out}");
            assert!(backend.calls().is_empty());
        }
        // Repeated Content-Length headers that agree are fine (RFC 9112
        // §6.3): the body is read and parsed.
        let input = format!(
            "POST /userdb/lookup HTTP/1.1\r\n{auth}Content-Length: 2\r\nContent-Length: 2\r\n\r\nxy"
        );
        let out = send(input.as_bytes(), &OneUser::default()).await;
        assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
        assert!(out.contains("bad request body: field without '='"), "{out}");
    }

    #[tokio::test]
    async fn garbage_is_a_bare_400_not_a_panic() {
        for raw in [
            &b"\x00\x01\x02\r\n\r\n"[..],
            b"GET\r\n\r\n",
            b"POST /x HTTP/9.9\r\n\r\n",
            b"POST /x HTTP/1.1\r\nbad header\r\n\r\n",
            b"\xff\xfe\xfd garbage \r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        ] {
            let out = send(raw, &OneUser::default()).await;
            assert!(
                out.starts_with("HTTP/1.1 400 Bad Request\r\n"),
                "{raw:?}: {out}"
            );
            assert!(out.contains("Connection: close\r\n"), "{raw:?}: {out}");
            assert_eq!(out.matches("HTTP/1.1").count(), 1, "{raw:?}: {out}");
        }
    }

    #[tokio::test]
    async fn connection_semantics() {
        let req = |version: &str, headers: &str| {
            format!(
                "POST /userdb/lookup HTTP/1.{version}\r\nAuthorization: Bearer {SECRET}\r\n{headers}Content-Length: 22\r\n\r\nuser=alice@example.org"
            )
        };
        // Two requests each; how many are answered shows whether the
        // connection was kept.
        for (version, headers, answered) in [
            ("1", "Connection: close\r\n", 1),
            ("1", "", 2),
            ("0", "", 1),
            ("0", "Connection: keep-alive\r\n", 2),
        ] {
            let twice = req(version, headers).repeat(2);
            let out = send(twice.as_bytes(), &OneUser::default()).await;
            assert_eq!(
                out.matches(" 200 OK\r\n").count(),
                answered,
                "{version} {headers}: {out}"
            );
        }
        // HTTP/1.0 cannot do 100-continue: no 100, and a body sent at once
        // is answered.
        let out = send(
            req("0", "Expect: 100-continue\r\n").as_bytes(),
            &OneUser::default(),
        )
        .await;
        assert!(!out.contains("100 Continue"), "{out}");
        assert!(out.contains(" 200 OK\r\n"), "{out}");
    }

    #[tokio::test]
    async fn absolute_form_and_query_are_reduced_to_the_path() {
        for target in [
            "http://127.0.0.1:8787/userdb/lookup",
            "/userdb/lookup?x=1",
            "http://localhost/userdb/lookup?x=1",
        ] {
            let out = send(
                &post(target, "", b"user=alice@example.org"),
                &OneUser::default(),
            )
            .await;
            assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{target}: {out}");
        }
        let out = send(
            &post("http://localhost", "", b"user=a"),
            &OneUser::default(),
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 404 Not Found\r\n"), "{out}");
    }

    // ---- full exchanges

    #[tokio::test]
    async fn writes_a_response() {
        let backend = OneUser::default();
        let out = send(
            &post("/userdb/lookup", "", b"user=alice@example.org"),
            &backend,
        )
        .await;
        let body = "ok\tuser=alice@example.org\tuid=5000\tgid=5000\thome=/var/vmail/example.org/alice\tquota_rule=*:storage=1G\n";
        assert_eq!(
            out,
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\r\n{body}",
                body.len()
            )
        );
        let out = send(
            b"POST /passdb/verify HTTP/1.1\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
            &backend,
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{out}");
        // hyper writes field names title-cased: "Www-Authenticate" (field
        // names are case-insensitive, RFC 9110 §5.1).
        assert!(
            out.to_ascii_lowercase()
                .contains("\r\nwww-authenticate: bearer\r\n"),
            "{out}"
        );
        assert!(out.contains("Connection: close\r\n"));
        assert!(
            out.ends_with("{\"error\":\"missing or wrong bearer token\",\"result\":\"error\"}\n")
        );
    }

    #[tokio::test]
    async fn verify_ok_with_100_continue_text() {
        let head = format!(
            "POST /passdb/verify HTTP/1.1\r\nHost: 127.0.0.1:8787\r\nAuthorization: Bearer {SECRET}\r\nExpect: 100-continue\r\nConnection: Keep-Alive\r\nContent-Type: text/plain\r\nContent-Length: 34\r\n\r\n"
        );
        let backend = OneUser::default();
        let out = exchange(
            &[
                (head.as_bytes(), false),
                (b"user=alice@example.org\tpassword=pw", true),
            ],
            &backend,
        )
        .await;
        let body = "ok\tuser=alice@example.org\tuserdb_uid=5000\n";
        assert_eq!(
            out,
            format!(
                "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\r\n{body}",
                body.len()
            )
        );
        assert_eq!(backend.calls(), vec!["verify alice@example.org"]);
    }

    #[tokio::test]
    async fn header_form_needs_no_100_continue() {
        // The fields in headers and no body: the client sends no Expect and
        // gets its answer to the one write; verify, mismatch, lookups and
        // a delivery name, pipelined on one kept-alive connection.
        let auth = format!("Authorization: Bearer {SECRET}\r\n");
        let req = |path: &str, fields: &str| {
            format!(
                "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:8787\r\n{auth}{fields}Connection: Keep-Alive\r\nContent-Length: 0\r\n\r\n"
            )
        };
        let input = [
            req(
                "/passdb/verify",
                "Mailtable-User: alice@example.org\r\nMailtable-Password: pw\r\n",
            ),
            req(
                "/passdb/verify",
                "mailtable-user: alice%5Fexample.org\r\nmailtable-password: p%77%0A\r\n",
            ),
            req("/passdb/lookup", "Mailtable-User: alice@example.org\r\n"),
            req("/userdb/lookup", "Mailtable-User: alice_example.org\r\n"),
            req("/userdb/lookup", "Mailtable-User: eve@example.org\r\n"),
        ]
        .concat();
        let backend = OneUser::default();
        let out = send(input.as_bytes(), &backend).await;
        assert!(!out.contains("100 Continue"), "{out}");
        // A status line follows the previous body's final LF.
        let statuses: Vec<&str> = out
            .split("HTTP/1.1 ")
            .skip(1)
            .filter_map(|r| r.split("\r\n").next())
            .collect();
        assert_eq!(
            statuses,
            [
                "200 OK",
                "403 Forbidden",
                "200 OK",
                "200 OK",
                "404 Not Found"
            ],
            "{out}"
        );
        assert!(out.contains("\r\n\r\nok\tuser=alice@example.org\tuserdb_uid=5000\n"));
        assert!(out.contains("\r\n\r\nmismatch\n"));
        assert!(out.contains("\tpassword={BLF-CRYPT}$2b$05$x\n"));
        assert!(out.contains("\r\n\r\nunknown\n"));
        assert_eq!(
            backend.calls(),
            [
                "verify alice@example.org",
                "verify alice_example.org",
                "passdb alice@example.org",
                "userdb alice_example.org",
                "userdb eve@example.org"
            ]
        );
    }

    /// A lookup the backend answers in place gets its answer without the
    /// lookup proper (and without a blocking thread); the rest, a password
    /// check and a passdb lookup here, are asked as before.
    #[tokio::test]
    async fn lookups_answered_in_place_skip_the_lookup_proper() {
        let auth = format!("Authorization: Bearer {SECRET}\r\n");
        let req = |path: &str, fields: &str| {
            format!(
                "POST {path} HTTP/1.1\r\n{auth}{fields}Connection: Keep-Alive\r\nContent-Length: 0\r\n\r\n"
            )
        };
        let input = [
            req("/userdb/lookup", "Mailtable-User: alice_example.org\r\n"),
            req("/userdb/lookup", "Mailtable-User: eve@example.org\r\n"),
            req("/passdb/lookup", "Mailtable-User: alice@example.org\r\n"),
            req(
                "/passdb/verify",
                "Mailtable-User: alice@example.org\r\nMailtable-Password: pw\r\n",
            ),
        ]
        .concat();
        let backend = OneUser {
            cached: true,
            ..OneUser::default()
        };
        let out = send(input.as_bytes(), &backend).await;
        let statuses: Vec<&str> = out
            .split("HTTP/1.1 ")
            .skip(1)
            .filter_map(|r| r.split("\r\n").next())
            .collect();
        assert_eq!(
            statuses,
            ["200 OK", "404 Not Found", "200 OK", "200 OK"],
            "{out}"
        );
        assert!(
            out.contains("\tuser=alice@example.org\tuid=5000\t"),
            "{out}"
        );
        assert_eq!(
            backend.calls(),
            [
                "in place alice_example.org",
                "in place eve@example.org",
                "passdb alice@example.org",
                "verify alice@example.org"
            ]
        );
    }

    #[tokio::test]
    async fn replays_what_dovecot_23_sends_with_the_shipped_script() {
        // The bytes serve read from Dovecot 2.3.19.1 (Debian 12) running
        // lua/mailtable-auth.lua, captured in one read during
        // tests/e2e/test-dovecot-23.sh; only user, password, port and token
        // are changed. No Expect, Content-Length: 0: the whole request in
        // one write, the answer without `100 Continue`.
        let captured = format!(
            "POST /passdb/verify HTTP/1.1\r\nHost: 127.0.0.1:34339\r\nDate: Sun, 29 Nov 2026 19:17:25 GMT\r\nUser-Agent: mailtable-auth.lua\r\nContent-Length: 0\r\nConnection: Keep-Alive\r\nAuthorization: Bearer {SECRET}\r\nMailtable-User: alice@example.org\r\nMailtable-Password: pw\r\n\r\n"
        );
        let backend = OneUser::default();
        let out = send(captured.as_bytes(), &backend).await;
        let body = "ok\tuser=alice@example.org\tuserdb_uid=5000\n";
        assert_eq!(
            out,
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\r\n{body}",
                body.len()
            )
        );
        assert_eq!(backend.calls(), ["verify alice@example.org"]);
        // The same script's fallback for fields too long for headers: a body
        // with Expect (2.3 always asks), answered after `100 Continue`.
        let head = format!(
            "POST /passdb/verify HTTP/1.1\r\nHost: 127.0.0.1:34339\r\nDate: Sun, 29 Nov 2026 19:17:30 GMT\r\nUser-Agent: mailtable-auth.lua\r\nExpect: 100-continue\r\nContent-Length: 34\r\nConnection: Keep-Alive\r\nAuthorization: Bearer {SECRET}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        );
        let out = exchange(
            &[
                (head.as_bytes(), false),
                (b"user=alice@example.org\tpassword=pw", true),
            ],
            &backend,
        )
        .await;
        assert!(
            out.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn header_form_faults_are_400_and_keep_the_connection() {
        let auth = format!("Authorization: Bearer {SECRET}\r\n");
        for (fields, body, error) in [
            (
                "Mailtable-User: alice@example.org\r\n",
                "",
                "missing mailtable-password",
            ),
            (
                "Mailtable-User: alice@example.org\r\nMailtable-Password: hunter2%\r\n",
                "",
                "mailtable-password is not percent-encoded",
            ),
            (
                "Mailtable-User: alice@example.org\r\nMailtable-Password: hunter2\r\nMailtable-Password: hunter3\r\n",
                "",
                "repeated mailtable-password",
            ),
            (
                "Mailtable-User: alice@example.org\r\nMailtable-Password: hunter2\r\n",
                "user=alice@example.org\tpassword=hunter2",
                "fields in both headers and body",
            ),
        ] {
            let mut input = format!(
                "POST /passdb/verify HTTP/1.1\r\n{auth}{fields}Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes();
            input.extend(post("/userdb/lookup", "", b"user=alice@example.org"));
            let backend = OneUser::default();
            let out = send(&input, &backend).await;
            assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
            assert!(
                out.contains(&format!("\r\n\r\nerror\terror=bad request header: {error}\n")),
                "{out}"
            );
            assert!(!out.contains("hunter"), "{out}");
            assert!(out.contains("HTTP/1.1 200 OK\r\n"), "{out}");
            assert_eq!(backend.calls(), ["userdb alice@example.org"]);
        }
    }

    #[tokio::test]
    async fn header_form_refusals_come_before_the_fields() {
        // Wrong token or path: refused on the head, the fields unread.
        let out = send(
            b"POST /passdb/verify HTTP/1.1\r\nAuthorization: Bearer wrong\r\nMailtable-User: a\r\nMailtable-Password: hunter2\r\nContent-Length: 0\r\n\r\n",
            &OneUser::default(),
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{out}");
        assert!(!out.contains("hunter"), "{out}");
    }

    #[tokio::test]
    async fn three_outcomes_and_tempfail_are_distinct() {
        let mut input = post(
            "/passdb/verify",
            "",
            b"user=alice@example.org\tpassword=bad",
        );
        input.extend(post(
            "/passdb/verify",
            "",
            b"user=eve@example.org\tpassword=pw",
        ));
        input.extend(post("/userdb/lookup", "", b"user=eve@example.org"));
        let out = send(&input, &OneUser::default()).await;
        let statuses: Vec<&str> = out.matches("HTTP/1.1 ").collect();
        assert_eq!(statuses.len(), 3, "{out}");
        assert!(out.contains("HTTP/1.1 403 Forbidden\r\n"));
        assert!(out.contains("\r\n\r\nmismatch\n"));
        assert_eq!(out.matches("HTTP/1.1 404 Not Found\r\n").count(), 2);
        assert_eq!(out.matches("\r\n\r\nunknown\n").count(), 2);

        let down = OneUser {
            down: true,
            ..Default::default()
        };
        let out = send(
            &post("/userdb/lookup", "", b"user=alice@example.org"),
            &down,
        )
        .await;
        assert!(
            out.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{out}"
        );
        assert!(out.ends_with("\r\n\r\ntempfail\terror=database down\n"));
    }

    /// `doveadm user '*'` in Lua mode: the script's request carries no
    /// fields (no payload, no field headers), the answer one user a line;
    /// a failing store is a 503, never an empty list; a request with
    /// fields is the client's mistake (400). Each on one connection.
    #[tokio::test]
    async fn the_iteration_lists_users_and_fails_as_a_tempfail() {
        let backend = OneUser::default();
        let mut input = post("/userdb/iterate", "", b"");
        input.extend(post("/userdb/iterate", "Mailtable-User: a\r\n", b""));
        input.extend(post("/userdb/iterate", "", b"user=a"));
        let out = send(&input, &backend).await;
        let answers: Vec<&str> = out.split("HTTP/1.1 ").skip(1).collect();
        assert_eq!(answers.len(), 3, "{out}");
        assert!(answers[0].starts_with("200 OK\r\n"), "{out}");
        assert!(
            answers[0].ends_with("\r\n\r\nok\nalice@example.org\nbob@example.org\n"),
            "{out}"
        );
        for refused in &answers[1..] {
            assert!(refused.starts_with("400 Bad Request\r\n"), "{out}");
            assert!(refused.contains("takes no fields"), "{out}");
        }
        assert_eq!(backend.calls(), vec!["iterate".to_string()]);

        let down = OneUser {
            down: true,
            ..Default::default()
        };
        let out = send(&post("/userdb/iterate", "", b""), &down).await;
        assert!(
            out.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{out}"
        );
        assert!(
            out.ends_with("\r\n\r\ntempfail\terror=database down\n"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn userdb_lookup_returns_canonical_user_and_fields() {
        let out = send(
            &post("/userdb/lookup", "", b"user=alice_example.org\n"),
            &OneUser::default(),
        )
        .await;
        assert!(out.ends_with(
            "\r\n\r\nok\tuser=alice@example.org\tuid=5000\tgid=5000\thome=/var/vmail/example.org/alice\tquota_rule=*:storage=1G\n"
        ), "{out}");
    }

    #[tokio::test]
    async fn passdb_lookup_returns_the_hash() {
        let out = send(
            &post("/passdb/lookup", "", b"user=alice@example.org"),
            &OneUser::default(),
        )
        .await;
        assert!(
            out.ends_with("\r\n\r\nok\tuser=alice@example.org\tpassword={BLF-CRYPT}$2b$05$x\n"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn json_round_trip() {
        let out = send(
            &post(
                "/userdb/lookup",
                "Content-Type: application/json\r\n",
                br#"{"user":"alice@example.org"}"#,
            ),
            &OneUser::default(),
        )
        .await;
        assert!(out.contains("Content-Type: application/json\r\n"), "{out}");
        let body = out.split("\r\n\r\n").nth(1).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(body).expect("JSON body");
        assert_eq!(v["result"], "ok");
        assert_eq!(v["user"], "alice@example.org");
        assert_eq!(v["fields"]["home"], "/var/vmail/example.org/alice");
        assert_eq!(v["fields"]["uid"], "5000");
    }

    #[tokio::test]
    async fn unauthorized_with_expect_closes_without_reading_body() {
        let head =
            b"POST /passdb/verify HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n";
        let backend = OneUser::default();
        let out = exchange(&[(head, false), (b"user=a\tpw=", true)], &backend).await;
        assert!(out.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{out}");
        assert!(!out.contains("100 Continue"));
        assert!(out.contains("Connection: close\r\n"));
        assert!(backend.calls().is_empty());
    }

    /// Plays a client that sends `input` and then neither writes nor
    /// closes, against a server whose head deadline is `deadline`: what
    /// the server wrote, and how long until it ended the connection.
    async fn stalled(input: &[u8], deadline: Duration) -> (String, Duration) {
        let (client, served, _keep) = serve_one(deadline, OneUser::default());
        let (mut rd, mut wr) = tokio::io::split(client);
        let start = tokio::time::Instant::now();
        wr.write_all(input).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), rd.read_to_end(&mut out))
            .await
            .expect("the server ended the connection")
            .unwrap();
        let ended = start.elapsed();
        let _ = served.await;
        drop(wr);
        (String::from_utf8_lossy(&out).into_owned(), ended)
    }

    /// A body announced and never sent holds the connection (and one of
    /// `max_connections`) no longer than the head's deadline, and not at
    /// all without the token.
    #[tokio::test]
    async fn a_body_that_never_comes_does_not_hold_the_connection() {
        let deadline = Duration::from_millis(300);
        // No token: 401 at once, closed, the body not waited for.
        let head = b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n";
        let (out, ended) = stalled(head, deadline).await;
        assert!(out.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{out}");
        assert!(out.contains("Connection: close\r\n"), "{out}");
        assert!(ended < deadline, "{ended:?}");
        // With the token, a body stuck halfway: dropped at the deadline,
        // without an answer (nobody to read it), the backend never asked.
        let mut input = post("/userdb/lookup", "", b"user=alice@example.org");
        input.truncate(input.len() - 5);
        let (out, ended) = stalled(&input, deadline).await;
        assert_eq!(out, "");
        assert!(ended >= deadline && ended < deadline * 5, "{ended:?}");
    }

    #[tokio::test]
    async fn refused_request_without_expect_keeps_the_connection() {
        let mut input =
            b"POST /nope HTTP/1.1\r\nAuthorization: Bearer s3cret-token\r\nContent-Length: 6\r\n\r\nuser=a"
                .to_vec();
        input.extend(post("/userdb/lookup", "", b"user=alice@example.org"));
        let out = send(&input, &OneUser::default()).await;
        assert!(out.starts_with("HTTP/1.1 404 Not Found\r\n"), "{out}");
        assert!(out.contains("\r\n\r\nerror\terror=no such endpoint\n"));
        assert!(out.contains("HTTP/1.1 200 OK\r\n"));
    }

    #[tokio::test]
    async fn connection_close_stops_after_one_response() {
        let mut input = post(
            "/userdb/lookup",
            "Connection: close\r\n",
            b"user=alice@example.org",
        );
        input.extend(post("/userdb/lookup", "", b"user=alice@example.org"));
        let backend = OneUser::default();
        let out = send(&input, &backend).await;
        assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 1);
        assert!(out.contains("Connection: close\r\n"));
        assert_eq!(backend.calls().len(), 1);
    }

    #[tokio::test]
    async fn chunked_gets_411_and_close() {
        let input = format!(
            "POST /passdb/verify HTTP/1.1\r\nAuthorization: Bearer {SECRET}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nuser=\r\n0\r\n\r\n"
        );
        let backend = OneUser::default();
        let out = send(input.as_bytes(), &backend).await;
        assert!(out.starts_with("HTTP/1.1 411 Length Required\r\n"), "{out}");
        assert!(out.contains("Connection: close\r\n"));
        assert_eq!(out.matches("HTTP/1.1").count(), 1);
        assert!(backend.calls().is_empty());
    }

    #[tokio::test]
    async fn oversized_body_gets_413() {
        let body = vec![b'x'; MAX_BODY + 1];
        let out = send(&post("/passdb/verify", "", &body), &OneUser::default()).await;
        assert!(
            out.starts_with("HTTP/1.1 413 Content Too Large\r\n"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn bad_body_is_400_and_connection_survives() {
        let mut input = post("/passdb/verify", "", b"user=alice@example.org");
        input.extend(post("/userdb/lookup", "", b"user=alice@example.org"));
        let out = send(&input, &OneUser::default()).await;
        assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
        assert!(out.contains("error\terror=bad request body: missing password\n"));
        assert!(out.contains("HTTP/1.1 200 OK\r\n"));
    }

    #[tokio::test]
    async fn http10_keep_alive_is_echoed() {
        let input = format!(
            "POST /userdb/lookup HTTP/1.0\r\nConnection: keep-alive\r\nAuthorization: Bearer {SECRET}\r\nContent-Length: 22\r\n\r\nuser=alice@example.org"
        );
        let out = send(input.as_bytes(), &OneUser::default()).await;
        assert!(out.contains("Connection: keep-alive\r\n"), "{out}");
    }

    #[tokio::test]
    async fn eof_mid_request_ends_quietly() {
        for input in [
            &b""[..],
            b"POST /passdb/verify HTTP/1.1\r\nHost",
            b"POST /userdb/lookup HTTP/1.1\r\nAuthorization: Bearer s3cret-token\r\nContent-Length: 50\r\n\r\nuser=",
        ] {
            let backend = OneUser::default();
            let out = send(input, &backend).await;
            assert!(out.is_empty(), "{input:?}: {out}");
            assert!(backend.calls().is_empty());
        }
    }
}
