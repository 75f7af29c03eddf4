//! The small HTTP/1.1 API that `lua/mailtable-auth.lua` calls from Dovecot.
//!
//! Dovecot 2.4 dropped checkpassword and the dict passdb/userdb; its Lua
//! passdb/userdb can still make HTTP requests through `dovecot.http.client`
//! (core@2.4.1:src/lib-lua/dlua-dovecot-http.c), and so can 2.3.19.1. This
//! module is the server end: a request reader and response writer over
//! `httparse`, generic over any `Read + Write` stream, and the routing of
//! three endpoints to an [`ApiBackend`].
//!
//! # The API
//!
//! Every request is `POST` with `Authorization: Bearer <secret>` (compared
//! in constant time; wrong or missing: 401) and a body of at most
//! [`MAX_BODY`] bytes in one of two formats, chosen by `Content-Type`:
//!
//! - `application/json`: `{"user": "...", "password": "..."}`;
//! - anything else, meant for `text/plain`: TAB-separated `key=value`
//!   fields with tab-escaped values ([`crate::tabescape`]), an optional
//!   final LF: `user=alice@example.org⇥password=secret`. This is the
//!   format the Lua script uses: Dovecot's Lua has no JSON library (the
//!   2.4.1 HTTP client test needs an external `require 'json'`,
//!   core@2.4.1:src/lib-lua/test-lua-http-client.lua), while splitting on
//!   TAB and undoing five escapes is a few lines of Lua. Passwords are
//!   arbitrary bytes in this format; JSON needs UTF-8.
//!
//! | endpoint | body | 200 | 403 | 404 | 503 |
//! |---|---|---|---|---|---|
//! | `POST /passdb/verify` | `user`, `password` | password correct | wrong password | unknown user | temporary failure |
//! | `POST /passdb/lookup` | `user` | found, fields include `password={SCHEME}hash` | — | unknown user | temporary failure |
//! | `POST /userdb/lookup` | `user` | found: `uid`, `gid`, `home`, `quota_rule`, … | — | unknown user | temporary failure |
//!
//! The response has the request's format. Its first item is a result token
//! (`ok`, `mismatch`, `unknown`, `tempfail` or `error`), so a 404 from a
//! wrong URL (`error`) can never be taken for "unknown user" and bounce
//! mail; the Lua script requires token *and* status to agree.
//!
//! - text: `ok⇥user=alice@example.org⇥uid=5000⇥gid=5000⇥home=/var/vmail/…\n`,
//!   `mismatch\n`, `unknown\n`, `tempfail⇥error=<text>\n`,
//!   `error⇥error=<text>\n`;
//! - JSON: `{"result":"ok","user":"alice@example.org","fields":{"uid":"5000",…}}`,
//!   `{"result":"unknown"}`, `{"result":"tempfail","error":"…"}`, ….
//!
//! `user` is the canonical name (DESIGN: `hugo_barrera.io` comes back as
//! `hugo@barrera.io`); field values are strings. Other statuses: 400 bad
//! request or body, 401, 404 unknown endpoint, 405 not POST, 411 chunked
//! body, 413 body too large, 431 head too large; all carry `error`.
//!
//! # HTTP handled
//!
//! - `Expect: 100-continue`: Dovecot 2.3 sends it with every payload
//!   (`http_client_request_set_payload(..., TRUE)` in
//!   core@2.3.19.1:src/lib-lua/dlua-dovecot-http.c; VERIFIED §5.1), 2.4 only
//!   when the script passes `true` as the third argument of `set_payload`.
//!   The head is checked first (auth, route, length); only then is
//!   `HTTP/1.1 100 Continue` sent and the body read. A request with
//!   `Expect` that is refused at that point gets `Connection: close`, since
//!   the client may or may not send the body after all (RFC 9110 §10.1.1);
//!   without `Expect` the announced body is read, dropped, and the
//!   connection kept.
//! - Keep-alive: HTTP/1.1 connections persist unless `Connection: close`;
//!   HTTP/1.0 ones only with `Connection: keep-alive`. Pipelined requests
//!   are answered in order.
//! - Bodies by `Content-Length` only. `Transfer-Encoding: chunked` gets 411
//!   and any other transfer coding 400, both with the connection closed
//!   because the body's end is unknown. Dovecot never sends chunked: its Lua
//!   payload is a fixed string with a known size.
//! - Request targets in origin form (`/passdb/verify`) and absolute form
//!   (`http://127.0.0.1:8787/passdb/verify`), the latter because Dovecot
//!   2.4's client sends it when told to reach the server through
//!   `proxy_socket_path`, its only way onto a UNIX socket
//!   (core@2.4.1:src/lib-http/http-client-request.c,
//!   `http_client_request_do_submit`). The query string is ignored.
//! - Garbage never panics: every parse failure becomes 400 and a closed
//!   connection; an EOF mid-request just ends the connection.
//!
//! Checked by hand against Dovecot 2.3.19.1 (Debian 12, dovecot-auth-lua)
//! with the shipped script and a stub backend: `doveadm auth test` (ok,
//! mismatch, unknown, tempfail), `doveadm auth lookup`, `doveadm user`,
//! CRAM-MD5 through `/passdb/lookup`, LMTP RCPT 250/550/451, API down and
//! wrong token (451, never 550), 20 parallel logins over keep-alive.

use std::io::{self, Read, Write};

use serde::Deserialize;

use crate::secret::Secret;
use crate::tabescape;

/// Where the API listens unless configured otherwise; the Lua script's
/// default `url` points here.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8787";

/// Largest request head (request line and headers) accepted.
pub const MAX_HEAD: usize = 8 * 1024;
/// Largest request body accepted.
pub const MAX_BODY: usize = 8 * 1024;
/// Most header fields accepted in one request.
pub const MAX_HEADERS: usize = 32;

/// A found user: the canonical name and its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Canonical user name (`alice@example.org`).
    pub user: String,
    /// passdb: extra fields (`userdb_uid`, …; `password={SCHEME}hash` for a
    /// lookup). userdb: `uid`, `gid`, `home`, `quota_rule`, ….
    pub fields: Vec<(String, String)>,
}

/// The answer to a password check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyResult {
    /// Password correct.
    Ok(Account),
    /// Wrong password.
    Mismatch,
    /// No such user.
    Unknown,
    /// Database trouble; the text is logged by Dovecot.
    TempFail(String),
}

/// The answer to a passdb or userdb lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupResult {
    /// Found.
    Found(Account),
    /// No such user.
    Unknown,
    /// Database trouble; the text is logged by Dovecot.
    TempFail(String),
}

/// What the API needs from the database. Implemented by the binary over
/// the mailtable store; found, not found, mismatch and error stay distinct.
pub trait ApiBackend {
    /// Checks `password` for `user` (login with a plaintext mechanism).
    fn passdb_verify(&mut self, user: &str, password: &Secret) -> VerifyResult;
    /// passdb lookup without a password (`doveadm auth lookup`, proxying,
    /// non-plaintext mechanisms): the fields must carry
    /// `password={SCHEME}hash`, or Dovecot treats the user as having no
    /// password (see `lua/mailtable-auth.lua`).
    fn passdb_lookup(&mut self, user: &str) -> LookupResult;
    /// userdb lookup (LMTP, `doveadm user`, after login).
    fn userdb_lookup(&mut self, user: &str) -> LookupResult;
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The bearer token callers must present. An empty secret matches no
    /// request: the API fails closed.
    pub secret: Secret,
    /// Body size cap; at most [`MAX_BODY`] is sensible.
    pub max_body: usize,
}

impl ApiConfig {
    /// Settings with `secret` and the default body cap.
    pub fn new(secret: Secret) -> Self {
        ApiConfig {
            secret,
            max_body: MAX_BODY,
        }
    }
}

/// The three endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /passdb/verify`.
    PassdbVerify,
    /// `POST /passdb/lookup`.
    PassdbLookup,
    /// `POST /userdb/lookup`.
    UserdbLookup,
}

impl Endpoint {
    /// The endpoint served at `path`.
    pub fn from_path(path: &str) -> Option<Endpoint> {
        match path {
            "/passdb/verify" => Some(Endpoint::PassdbVerify),
            "/passdb/lookup" => Some(Endpoint::PassdbLookup),
            "/userdb/lookup" => Some(Endpoint::UserdbLookup),
            _ => None,
        }
    }
}

/// Body and response format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// TAB-separated `key=value`, tab-escaped.
    Text,
    /// JSON.
    Json,
}

/// Everything the server needs from a request head. Not `PartialEq`: it
/// holds the `Authorization` value.
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// Method, e.g. `POST`.
    pub method: String,
    /// Path without query, absolute-form authority removed.
    pub path: String,
    /// HTTP minor version: 0 or 1.
    pub minor_version: u8,
    /// Body length (0 when absent).
    pub content_length: usize,
    /// `Expect: 100-continue` from an HTTP/1.1 client.
    pub expect_continue: bool,
    /// Whether the connection may serve another request after this one.
    pub keep_alive: bool,
    /// The `Authorization` header value, kept secret.
    pub authorization: Option<Secret>,
    /// Body format from `Content-Type`.
    pub format: Format,
}

/// Why a request is refused. [`HttpError::status`] gives the status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// Unparsable request line or headers.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// Head over [`MAX_HEAD`] bytes or over [`MAX_HEADERS`] fields.
    #[error("request head too large")]
    HeadTooLarge,
    /// `Transfer-Encoding: chunked`.
    #[error("chunked request bodies are not supported, send Content-Length")]
    Chunked,
    /// Another transfer coding.
    #[error("unsupported transfer coding")]
    TransferEncoding,
    /// Invalid or conflicting `Content-Length`.
    #[error("invalid Content-Length")]
    BadContentLength,
    /// Body larger than the cap.
    #[error("request body larger than {0} bytes")]
    BodyTooLarge(usize),
    /// Missing or wrong bearer token.
    #[error("missing or wrong bearer token")]
    Unauthorized,
    /// Unknown path.
    #[error("no such endpoint")]
    NoEndpoint,
    /// Not `POST`.
    #[error("method not allowed, use POST")]
    MethodNotAllowed,
    /// The body does not hold what the endpoint needs.
    #[error("bad request body: {0}")]
    BadBody(String),
}

impl HttpError {
    /// The response status for this error.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::Malformed(_)
            | HttpError::TransferEncoding
            | HttpError::BadContentLength
            | HttpError::BadBody(_) => 400,
            HttpError::Unauthorized => 401,
            HttpError::NoEndpoint => 404,
            HttpError::MethodNotAllowed => 405,
            HttpError::Chunked => 411,
            HttpError::BodyTooLarge(_) => 413,
            HttpError::HeadTooLarge => 431,
        }
    }
}

/// Parses a request head from the start of `buf`.
///
/// `Ok(None)`: incomplete, read more (unless `buf` already holds
/// [`MAX_HEAD`] bytes, which the caller turns into
/// [`HttpError::HeadTooLarge`]). `Ok(Some((head, n)))`: the head took the
/// first `n` bytes. Errors mean the connection cannot continue: the body's
/// end is unknown.
pub fn parse_head(buf: &[u8], max_body: usize) -> Result<Option<(RequestHead, usize)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let n = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= MAX_HEAD {
                Err(HttpError::HeadTooLarge)
            } else {
                Ok(None)
            }
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadTooLarge),
        Err(e) => return Err(HttpError::Malformed(e.to_string())),
    };
    if n > MAX_HEAD {
        return Err(HttpError::HeadTooLarge);
    }
    // httparse returns Complete only with method, path and version set.
    let method = req.method.unwrap_or_default().to_owned();
    let target = req.path.unwrap_or_default();
    let minor_version = req.version.unwrap_or_default();

    let mut content_length: Option<usize> = None;
    let mut expect_continue = false;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut authorization = None;
    let mut format = Format::Text;
    for h in req.headers.iter() {
        let name = h.name;
        let value = h.value;
        if name.eq_ignore_ascii_case("content-length") {
            let len = std::str::from_utf8(value)
                .ok()
                .map(str::trim)
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<usize>().ok())
                .ok_or(HttpError::BadContentLength)?;
            // Repeated Content-Length headers must agree (RFC 9112 §6.3).
            if content_length.is_some_and(|prev| prev != len) {
                return Err(HttpError::BadContentLength);
            }
            content_length = Some(len);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            let chunked = tokens(value).any(|t| t.eq_ignore_ascii_case(b"chunked"));
            return Err(if chunked {
                HttpError::Chunked
            } else {
                HttpError::TransferEncoding
            });
        } else if name.eq_ignore_ascii_case("expect") {
            expect_continue |= tokens(value).any(|t| t.eq_ignore_ascii_case(b"100-continue"));
        } else if name.eq_ignore_ascii_case("connection") {
            for t in tokens(value) {
                conn_close |= t.eq_ignore_ascii_case(b"close");
                conn_keep_alive |= t.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("authorization") {
            if authorization.is_none() {
                authorization = Some(Secret::new(value));
            }
        } else if name.eq_ignore_ascii_case("content-type") {
            let media = value.split(|&b| b == b';').next().unwrap_or_default();
            if media.trim_ascii().eq_ignore_ascii_case(b"application/json") {
                format = Format::Json;
            }
        }
    }
    let content_length = content_length.unwrap_or(0);
    if content_length > max_body {
        return Err(HttpError::BodyTooLarge(max_body));
    }
    let keep_alive = !conn_close && (minor_version == 1 || conn_keep_alive);
    Ok(Some((
        RequestHead {
            method,
            path: origin_path(target).to_owned(),
            minor_version,
            content_length,
            // An HTTP/1.0 client cannot understand 100 (RFC 9110 §10.1.1).
            expect_continue: expect_continue && minor_version == 1,
            keep_alive,
            authorization,
            format,
        },
        n,
    )))
}

/// Comma-separated header tokens, trimmed, empty ones skipped.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// The path of a request target: the query dropped, and for the absolute
/// form (`http://host:port/path`) the scheme and authority too.
fn origin_path(target: &str) -> &str {
    let without_query = target.split(['?', '#']).next().unwrap_or_default();
    match without_query.find("://") {
        Some(i) if !without_query[..i].contains('/') => {
            let after = &without_query[i + 3..];
            after.find('/').map_or("/", |j| &after[j..])
        }
        _ => without_query,
    }
}

/// Checks the bearer token, the path and the method.
///
/// The token is checked first, so a caller without it learns nothing about
/// which paths exist.
pub fn route(head: &RequestHead, config: &ApiConfig) -> Result<Endpoint, HttpError> {
    if !authorized(head.authorization.as_ref(), &config.secret) {
        return Err(HttpError::Unauthorized);
    }
    let endpoint = Endpoint::from_path(&head.path).ok_or(HttpError::NoEndpoint)?;
    if head.method != "POST" {
        return Err(HttpError::MethodNotAllowed);
    }
    Ok(endpoint)
}

/// Whether `header` is `Bearer <secret>` (scheme case-insensitive, RFC 9110
/// §11.1), compared in constant time. An empty configured secret never
/// matches.
fn authorized(header: Option<&Secret>, secret: &Secret) -> bool {
    let Some(header) = header else {
        return false;
    };
    if secret.is_empty() {
        return false;
    }
    let value = header.expose().trim_ascii();
    let Some((scheme, token)) = value
        .iter()
        .position(|&b| b == b' ')
        .map(|i| (&value[..i], value[i + 1..].trim_ascii()))
    else {
        return false;
    };
    scheme.eq_ignore_ascii_case(b"bearer") && secret.ct_eq(token)
}

/// A decoded request body.
#[derive(Debug)]
pub struct ApiRequest {
    /// The user name.
    pub user: String,
    /// The password, for `/passdb/verify`.
    pub password: Option<Secret>,
}

/// The JSON body. Not `Debug`: it holds the cleartext password until it is
/// moved into a [`Secret`].
#[derive(Deserialize)]
struct JsonBody {
    user: String,
    #[serde(default)]
    password: Option<String>,
}

/// Decodes `body` for `endpoint`. Unknown fields are ignored (room for
/// later additions); a verify without `password`, an empty `user` or a
/// repeated field is a bad request.
pub fn parse_body(
    endpoint: Endpoint,
    format: Format,
    body: &[u8],
) -> Result<ApiRequest, HttpError> {
    let (user, password) = match format {
        Format::Json => {
            let parsed: JsonBody = serde_json::from_slice(body)
                .map_err(|e| HttpError::BadBody(format!("invalid JSON: {e}")))?;
            (parsed.user, parsed.password.map(Secret::from))
        }
        Format::Text => parse_text_body(body)?,
    };
    if user.is_empty() {
        return Err(HttpError::BadBody("empty user".into()));
    }
    let password = match endpoint {
        Endpoint::PassdbVerify => {
            Some(password.ok_or_else(|| HttpError::BadBody("missing password".into()))?)
        }
        // A lookup never needs the password; drop it rather than carry it.
        Endpoint::PassdbLookup | Endpoint::UserdbLookup => None,
    };
    Ok(ApiRequest { user, password })
}

fn parse_text_body(body: &[u8]) -> Result<(String, Option<Secret>), HttpError> {
    let body = body.strip_suffix(b"\n").unwrap_or(body);
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    let mut user = None;
    let mut password = None;
    for item in body.split(|&b| b == b'\t') {
        if item.is_empty() {
            continue;
        }
        let eq = item
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| HttpError::BadBody("field without '='".into()))?;
        let (key, value) = (&item[..eq], &item[eq + 1..]);
        let slot_is_empty = match key {
            b"user" => user.is_none(),
            b"password" => password.is_none(),
            _ => continue,
        };
        if !slot_is_empty {
            return Err(HttpError::BadBody(format!(
                "repeated field {}",
                String::from_utf8_lossy(key)
            )));
        }
        let value = tabescape::unescape(value);
        if key == b"user" {
            let u = String::from_utf8(value)
                .map_err(|_| HttpError::BadBody("user is not valid UTF-8".into()))?;
            user = Some(u);
        } else {
            password = Some(Secret::new(value));
        }
    }
    let user = user.ok_or_else(|| HttpError::BadBody("missing user".into()))?;
    Ok((user, password))
}

/// Runs `request` against the backend and renders the answer.
pub fn dispatch(
    endpoint: Endpoint,
    request: &ApiRequest,
    backend: &mut impl ApiBackend,
    format: Format,
) -> Response {
    let user = request.user.as_str();
    let answer = match (endpoint, &request.password) {
        (Endpoint::PassdbVerify, Some(password)) => match backend.passdb_verify(user, password) {
            VerifyResult::Ok(a) => Answer::Ok(a),
            VerifyResult::Mismatch => Answer::Mismatch,
            VerifyResult::Unknown => Answer::Unknown,
            VerifyResult::TempFail(e) => Answer::TempFail(e),
        },
        // parse_body guarantees a password for verify; should it ever be
        // missing, that is a bad request, never a login.
        (Endpoint::PassdbVerify, None) => {
            return error_response(
                &HttpError::BadBody("missing password".into()),
                format,
                false,
            )
        }
        (Endpoint::PassdbLookup, _) => backend.passdb_lookup(user).into(),
        (Endpoint::UserdbLookup, _) => backend.userdb_lookup(user).into(),
    };
    if let Answer::TempFail(e) = &answer {
        tracing::error!("api: {endpoint:?} for {user:?} failed: {e}");
    } else {
        tracing::debug!("api: {endpoint:?} for {user:?}: {}", answer.token());
    }
    answer.render(format)
}

/// The four API answers, for rendering.
enum Answer {
    Ok(Account),
    Mismatch,
    Unknown,
    TempFail(String),
}

impl From<LookupResult> for Answer {
    fn from(r: LookupResult) -> Self {
        match r {
            LookupResult::Found(a) => Answer::Ok(a),
            LookupResult::Unknown => Answer::Unknown,
            LookupResult::TempFail(e) => Answer::TempFail(e),
        }
    }
}

impl Answer {
    fn token(&self) -> &'static str {
        match self {
            Answer::Ok(_) => "ok",
            Answer::Mismatch => "mismatch",
            Answer::Unknown => "unknown",
            Answer::TempFail(_) => "tempfail",
        }
    }

    fn status(&self) -> u16 {
        match self {
            Answer::Ok(_) => 200,
            Answer::Mismatch => 403,
            Answer::Unknown => 404,
            Answer::TempFail(_) => 503,
        }
    }

    fn render(&self, format: Format) -> Response {
        let token = self.token();
        let body = match (format, self) {
            (Format::Text, Answer::Ok(account)) => {
                let mut out = token.as_bytes().to_vec();
                tabescape::push_field(&mut out, "user", account.user.as_bytes());
                for (k, v) in usable_fields(account) {
                    tabescape::push_field(&mut out, k, v.as_bytes());
                }
                out.push(b'\n');
                out
            }
            (Format::Text, Answer::TempFail(e)) => text_error(token, e),
            (Format::Text, _) => format!("{token}\n").into_bytes(),
            (Format::Json, Answer::Ok(account)) => {
                let fields: serde_json::Map<String, serde_json::Value> = usable_fields(account)
                    .map(|(k, v)| (k.to_owned(), serde_json::Value::from(v.as_str())))
                    .collect();
                json_bytes(serde_json::json!({
                    "result": token,
                    "user": account.user,
                    "fields": fields,
                }))
            }
            (Format::Json, Answer::TempFail(e)) => {
                json_bytes(serde_json::json!({ "result": token, "error": e }))
            }
            (Format::Json, _) => json_bytes(serde_json::json!({ "result": token })),
        };
        Response::new(self.status(), format, body)
    }
}

/// Fields safe to send: keys Dovecot can parse (see
/// [`tabescape::is_valid_key`]), and never a second `user`, which would
/// contradict the canonical name.
fn usable_fields(account: &Account) -> impl Iterator<Item = (&str, &String)> {
    account.fields.iter().filter_map(|(k, v)| {
        if k != "user" && tabescape::is_valid_key(k) {
            Some((k.as_str(), v))
        } else {
            tracing::warn!("api: dropping field {k:?} of {:?}", account.user);
            None
        }
    })
}

fn text_error(token: &str, error: &str) -> Vec<u8> {
    let mut out = token.as_bytes().to_vec();
    tabescape::push_field(&mut out, "error", error.as_bytes());
    out.push(b'\n');
    out
}

fn json_bytes(value: serde_json::Value) -> Vec<u8> {
    let mut out = value.to_string().into_bytes();
    out.push(b'\n');
    out
}

/// A response about to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Body format (sets `Content-Type`).
    pub format: Format,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Whether to send `Connection: close` and close afterwards.
    pub close: bool,
}

impl Response {
    /// A response that keeps the connection open.
    pub fn new(status: u16, format: Format, body: Vec<u8>) -> Self {
        Response {
            status,
            format,
            body,
            close: false,
        }
    }
}

/// The response for a refused request, in the request's format.
pub fn error_response(error: &HttpError, format: Format, close: bool) -> Response {
    let message = error.to_string();
    let body = match format {
        Format::Text => text_error("error", &message),
        Format::Json => json_bytes(serde_json::json!({ "result": "error", "error": message })),
    };
    Response {
        status: error.status(),
        format,
        body,
        close,
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// The interim response sent before reading a body announced with
/// `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Appends `response` to `out`. `http10_keep_alive` adds
/// `Connection: keep-alive`, which an HTTP/1.0 client needs to reuse the
/// connection.
pub fn write_response(response: &Response, http10_keep_alive: bool, out: &mut Vec<u8>) {
    let content_type = match response.format {
        Format::Text => "text/plain; charset=utf-8",
        Format::Json => "application/json",
    };
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n",
        response.status,
        reason(response.status),
        response.body.len(),
    );
    match response.status {
        401 => head.push_str("WWW-Authenticate: Bearer\r\n"),
        405 => head.push_str("Allow: POST\r\n"),
        _ => {}
    }
    if response.close {
        head.push_str("Connection: close\r\n");
    } else if http10_keep_alive {
        head.push_str("Connection: keep-alive\r\n");
    }
    head.push_str("\r\n");
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(&response.body);
}

/// Reads more bytes from `stream` into `buf`; returns how many (0 at EOF).
fn read_more(stream: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

fn send(stream: &mut impl Write, response: &Response, http10_keep_alive: bool) -> io::Result<()> {
    let mut out = Vec::with_capacity(256 + response.body.len());
    write_response(response, http10_keep_alive, &mut out);
    stream.write_all(&out)?;
    stream.flush()
}

/// Serves requests on one connection until the client closes it, a
/// response closes it, or an I/O error (a read timeout set by the caller,
/// say) ends it.
pub fn serve_connection<S: Read + Write>(
    stream: &mut S,
    config: &ApiConfig,
    backend: &mut impl ApiBackend,
) -> io::Result<()> {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        // 1. The head.
        let (head, head_len) = loop {
            match parse_head(&buf, config.max_body) {
                Ok(Some(parsed)) => break parsed,
                Ok(None) => {
                    if read_more(stream, &mut buf)? == 0 {
                        // EOF between requests, or mid-head: nothing to answer.
                        return Ok(());
                    }
                }
                Err(e) => {
                    tracing::warn!("api: {e}");
                    return send(stream, &error_response(&e, Format::Text, true), false);
                }
            }
        };
        buf.drain(..head_len);
        let http10_keep_alive = head.keep_alive && head.minor_version == 0;

        // 2. Auth, path, method: refused before the body is read.
        let endpoint = match route(&head, config) {
            Ok(endpoint) => endpoint,
            Err(e) => {
                tracing::warn!("api: {} {}: {e}", head.method, head.path);
                // The client may hold the body back (it asked to continue),
                // or send it anyway; only a body already announced without
                // Expect can be skipped safely.
                let skip = !head.expect_continue && head.keep_alive;
                if skip && !discard(stream, &mut buf, head.content_length)? {
                    return Ok(());
                }
                send(
                    stream,
                    &error_response(&e, head.format, !skip),
                    http10_keep_alive,
                )?;
                if skip {
                    continue;
                }
                return Ok(());
            }
        };

        // 3. The body, after 100 Continue if asked for.
        if head.expect_continue && head.content_length > 0 && buf.len() < head.content_length {
            stream.write_all(CONTINUE)?;
            stream.flush()?;
        }
        while buf.len() < head.content_length {
            if read_more(stream, &mut buf)? == 0 {
                return Ok(());
            }
        }
        let mut body: Vec<u8> = buf.drain(..head.content_length).collect();

        // 4. Answer.
        let mut response = match parse_body(endpoint, head.format, &body) {
            Ok(request) => dispatch(endpoint, &request, backend, head.format),
            Err(e) => {
                tracing::warn!("api: {}: {e}", head.path);
                error_response(&e, head.format, false)
            }
        };
        // The body held a cleartext password: do not leave it in memory.
        body.fill(0);
        response.close |= !head.keep_alive;
        send(stream, &response, http10_keep_alive)?;
        if response.close {
            return Ok(());
        }
    }
}

/// Reads and drops `len` body bytes; false at EOF.
fn discard(stream: &mut impl Read, buf: &mut Vec<u8>, len: usize) -> io::Result<bool> {
    while buf.len() < len {
        if read_more(stream, buf)? == 0 {
            return Ok(false);
        }
    }
    buf.drain(..len);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cret-token";

    /// A backend with one user, alice, password "pw"; `down` fails all.
    #[derive(Default)]
    struct OneUser {
        down: bool,
        calls: Vec<String>,
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
            self.calls.push(format!("verify {user}"));
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
            self.calls.push(format!("passdb {user}"));
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
            self.calls.push(format!("userdb {user}"));
            if self.down {
                return LookupResult::TempFail("database down".into());
            }
            match user {
                "alice@example.org" | "alice_example.org" => LookupResult::Found(alice()),
                _ => LookupResult::Unknown,
            }
        }
    }

    /// A stream whose input arrives in chunks. A chunk marked as body is
    /// only released once `100 Continue` has been written, like a client
    /// that waits for it; before that a read returns EOF.
    struct Client {
        chunks: Vec<(Vec<u8>, bool)>,
        output: Vec<u8>,
    }

    impl Client {
        fn new(input: &[u8]) -> Self {
            Client {
                chunks: vec![(input.to_vec(), false)],
                output: Vec::new(),
            }
        }
        fn head_then_gated_body(head: &[u8], body: &[u8]) -> Self {
            Client {
                chunks: vec![(head.to_vec(), false), (body.to_vec(), true)],
                output: Vec::new(),
            }
        }
        fn out(&self) -> String {
            String::from_utf8_lossy(&self.output).into_owned()
        }
    }

    impl Read for Client {
        fn read(&mut self, dst: &mut [u8]) -> io::Result<usize> {
            let Some((chunk, gated)) = self.chunks.first_mut() else {
                return Ok(0);
            };
            if *gated && !self.output.windows(CONTINUE.len()).any(|w| w == CONTINUE) {
                return Ok(0);
            }
            let n = dst.len().min(chunk.len());
            dst[..n].copy_from_slice(&chunk[..n]);
            chunk.drain(..n);
            if chunk.is_empty() {
                self.chunks.remove(0);
            }
            Ok(n)
        }
    }

    impl Write for Client {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.output.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn run(client: &mut Client, backend: &mut OneUser) {
        let config = ApiConfig::new(Secret::new(SECRET));
        assert!(serve_connection(client, &config, backend).is_ok());
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

    fn head_of(raw: &[u8]) -> RequestHead {
        match parse_head(raw, MAX_BODY) {
            Ok(Some((head, _))) => head,
            other => panic!("expected a complete head, got {other:?}"),
        }
    }

    // ---- parse_head

    #[test]
    fn parses_dovecot_style_head() {
        // What Dovecot 2.3's client sends (VERIFIED §5.1).
        let raw = b"POST /passdb/verify HTTP/1.1\r\nHost: 127.0.0.1:8787\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nUser-Agent: dovecot\r\nExpect: 100-continue\r\nConnection: Keep-Alive\r\nContent-Length: 30\r\nAuthorization: Bearer abc\r\n\r\n";
        let (head, n) = match parse_head(raw, MAX_BODY) {
            Ok(Some(p)) => p,
            other => panic!("{other:?}"),
        };
        assert_eq!(n, raw.len());
        assert_eq!(head.method, "POST");
        assert_eq!(head.path, "/passdb/verify");
        assert_eq!(head.minor_version, 1);
        assert_eq!(head.content_length, 30);
        assert!(head.expect_continue);
        assert!(head.keep_alive);
        assert_eq!(head.format, Format::Text);
        assert_eq!(
            head.authorization.as_ref().map(|s| s.expose().to_vec()),
            Some(b"Bearer abc".to_vec())
        );
        // The Authorization value never shows in Debug output.
        assert!(!format!("{head:?}").contains("abc"));
    }

    #[test]
    fn partial_head_asks_for_more() {
        assert!(matches!(
            parse_head(b"POST /passdb/verify HTTP/1.1\r\nHost: x\r\n", 10),
            Ok(None)
        ));
        assert!(matches!(parse_head(b"", 10), Ok(None)));
    }

    #[test]
    fn head_limits() {
        let mut big = b"POST / HTTP/1.1\r\nX: ".to_vec();
        big.extend(vec![b'a'; MAX_HEAD]);
        assert!(matches!(
            parse_head(&big, MAX_BODY),
            Err(HttpError::HeadTooLarge)
        ));
        let mut many = b"POST / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(matches!(
            parse_head(&many, MAX_BODY),
            Err(HttpError::HeadTooLarge)
        ));
    }

    #[test]
    fn framing_errors() {
        assert!(matches!(
            parse_head(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 10),
            Err(HttpError::Chunked)
        ));
        assert!(matches!(
            parse_head(
                b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                10
            ),
            Err(HttpError::Chunked)
        ));
        assert!(matches!(
            parse_head(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 10),
            Err(HttpError::TransferEncoding)
        ));
        assert!(matches!(
            parse_head(b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 10),
            Err(HttpError::BadContentLength)
        ));
        assert!(matches!(
            parse_head(
                b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                10
            ),
            Err(HttpError::BadContentLength)
        ));
        assert!(parse_head(
            b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n",
            10
        )
        .is_ok_and(|h| h.is_some()));
        assert!(matches!(
            parse_head(b"POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n", 10),
            Err(HttpError::BodyTooLarge(10))
        ));
        assert!(matches!(
            parse_head(
                b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                10
            ),
            Err(HttpError::BadContentLength)
        ));
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for raw in [
            &b"\x00\x01\x02\r\n\r\n"[..],
            b"GET\r\n\r\n",
            b"POST /x HTTP/9.9\r\n\r\n",
            b"POST /x HTTP/1.1\r\nbad header\r\n\r\n",
            b"\xff\xfe\xfd garbage \r\n\r\n",
        ] {
            assert!(
                matches!(parse_head(raw, 10), Err(HttpError::Malformed(_))),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn connection_semantics() {
        assert!(!head_of(b"POST / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(head_of(b"POST / HTTP/1.1\r\n\r\n").keep_alive);
        assert!(!head_of(b"POST / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(head_of(b"POST / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive);
        // HTTP/1.0 cannot do 100-continue.
        assert!(!head_of(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").expect_continue);
    }

    #[test]
    fn content_type_picks_format() {
        assert_eq!(
            head_of(b"POST / HTTP/1.1\r\nContent-Type: Application/JSON; charset=utf-8\r\n\r\n")
                .format,
            Format::Json
        );
        assert_eq!(
            head_of(b"POST / HTTP/1.1\r\nContent-Type: text/plain\r\n\r\n").format,
            Format::Text
        );
    }

    #[test]
    fn absolute_form_and_query_are_reduced_to_the_path() {
        assert_eq!(origin_path("/passdb/verify?x=1"), "/passdb/verify");
        assert_eq!(
            origin_path("http://127.0.0.1:8787/userdb/lookup"),
            "/userdb/lookup"
        );
        assert_eq!(origin_path("http://localhost"), "/");
        assert_eq!(origin_path("/a://b"), "/a://b");
    }

    // ---- route

    fn routed(raw: &[u8], secret: &str) -> Result<Endpoint, HttpError> {
        route(&head_of(raw), &ApiConfig::new(Secret::new(secret)))
    }

    #[test]
    fn route_checks_token_then_path_then_method() {
        let ok = b"POST /userdb/lookup HTTP/1.1\r\nAuthorization: bearer  s3cret-token \r\n\r\n";
        assert_eq!(routed(ok, SECRET), Ok(Endpoint::UserdbLookup));
        assert_eq!(
            routed(b"POST /userdb/lookup HTTP/1.1\r\n\r\n", SECRET),
            Err(HttpError::Unauthorized)
        );
        assert_eq!(
            routed(
                b"POST /nope HTTP/1.1\r\nAuthorization: Bearer wrong\r\n\r\n",
                SECRET
            ),
            Err(HttpError::Unauthorized)
        );
        assert_eq!(
            routed(
                b"POST /userdb/lookup HTTP/1.1\r\nAuthorization: Basic s3cret-token\r\n\r\n",
                SECRET
            ),
            Err(HttpError::Unauthorized)
        );
        assert_eq!(
            routed(
                b"POST /nope HTTP/1.1\r\nAuthorization: Bearer s3cret-token\r\n\r\n",
                SECRET
            ),
            Err(HttpError::NoEndpoint)
        );
        assert_eq!(
            routed(
                b"GET /passdb/lookup HTTP/1.1\r\nAuthorization: Bearer s3cret-token\r\n\r\n",
                SECRET
            ),
            Err(HttpError::MethodNotAllowed)
        );
    }

    #[test]
    fn empty_secret_fails_closed() {
        assert_eq!(
            routed(
                b"POST /userdb/lookup HTTP/1.1\r\nAuthorization: Bearer \r\n\r\n",
                ""
            ),
            Err(HttpError::Unauthorized)
        );
        assert_eq!(
            routed(
                b"POST /userdb/lookup HTTP/1.1\r\nAuthorization: Bearer\r\n\r\n",
                ""
            ),
            Err(HttpError::Unauthorized)
        );
    }

    // ---- parse_body

    #[test]
    fn text_body_is_unescaped() {
        let r = parse_body(
            Endpoint::PassdbVerify,
            Format::Text,
            b"user=alice@example.org\tpassword=p\x01tw\x01nd\xff\n",
        )
        .expect("valid body");
        assert_eq!(r.user, "alice@example.org");
        assert_eq!(
            r.password.as_ref().map(|p| p.expose().to_vec()),
            Some(b"p\tw\nd\xff".to_vec())
        );
    }

    #[test]
    fn json_body() {
        let r = parse_body(
            Endpoint::PassdbVerify,
            Format::Json,
            br#"{"user":"alice@example.org","password":"pw","service":"imap"}"#,
        )
        .expect("valid body");
        assert_eq!(r.user, "alice@example.org");
        assert_eq!(
            r.password.as_ref().map(|p| p.expose().to_vec()),
            Some(b"pw".to_vec())
        );
        let r = parse_body(Endpoint::UserdbLookup, Format::Json, br#"{"user":"bob"}"#)
            .expect("valid body");
        assert!(r.password.is_none());
    }

    #[test]
    fn lookups_drop_a_password() {
        let r = parse_body(Endpoint::PassdbLookup, Format::Text, b"user=a\tpassword=x")
            .expect("valid body");
        assert!(r.password.is_none());
    }

    #[test]
    fn bad_bodies() {
        for (endpoint, format, body) in [
            (Endpoint::PassdbVerify, Format::Text, &b"user=alice"[..]),
            (Endpoint::UserdbLookup, Format::Text, b"password=x"),
            (Endpoint::UserdbLookup, Format::Text, b"user="),
            (Endpoint::UserdbLookup, Format::Text, b"user=a\tuser=b"),
            (Endpoint::UserdbLookup, Format::Text, b"user"),
            (Endpoint::UserdbLookup, Format::Text, b"user=\xff"),
            (Endpoint::UserdbLookup, Format::Text, b""),
            (Endpoint::UserdbLookup, Format::Json, b"{"),
            (Endpoint::UserdbLookup, Format::Json, br#"{"user":1}"#),
            (Endpoint::PassdbVerify, Format::Json, br#"{"user":"a"}"#),
        ] {
            assert!(
                matches!(
                    parse_body(endpoint, format, body),
                    Err(HttpError::BadBody(_))
                ),
                "{body:?}"
            );
        }
    }

    // ---- write_response

    #[test]
    fn writes_a_response() {
        let mut out = Vec::new();
        write_response(
            &Response::new(200, Format::Text, b"ok\n".to_vec()),
            false,
            &mut out,
        );
        assert_eq!(
            String::from_utf8_lossy(&out),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\nCache-Control: no-store\r\n\r\nok\n"
        );
        let mut out = Vec::new();
        write_response(
            &error_response(&HttpError::Unauthorized, Format::Json, true),
            false,
            &mut out,
        );
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{text}");
        assert!(text.contains("WWW-Authenticate: Bearer\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(
            text.ends_with("{\"error\":\"missing or wrong bearer token\",\"result\":\"error\"}\n")
        );
    }

    // ---- full exchanges through serve_connection

    #[test]
    fn verify_ok_with_100_continue_text() {
        let head = format!(
            "POST /passdb/verify HTTP/1.1\r\nHost: 127.0.0.1:8787\r\nAuthorization: Bearer {SECRET}\r\nExpect: 100-continue\r\nConnection: Keep-Alive\r\nContent-Type: text/plain\r\nContent-Length: 34\r\n\r\n"
        );
        let mut client =
            Client::head_then_gated_body(head.as_bytes(), b"user=alice@example.org\tpassword=pw");
        let mut backend = OneUser::default();
        run(&mut client, &mut backend);
        let body = "ok\tuser=alice@example.org\tuserdb_uid=5000\n";
        assert_eq!(
            client.out(),
            format!(
                "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\r\n{body}",
                body.len()
            )
        );
        assert_eq!(backend.calls, vec!["verify alice@example.org"]);
    }

    #[test]
    fn three_outcomes_and_tempfail_are_distinct() {
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
        let mut client = Client::new(&input);
        run(&mut client, &mut OneUser::default());
        let out = client.out();
        let statuses: Vec<&str> = out.matches("HTTP/1.1 ").map(|_| "").collect();
        assert_eq!(statuses.len(), 3, "{out}");
        assert!(out.contains("HTTP/1.1 403 Forbidden\r\n"));
        assert!(out.contains("\r\n\r\nmismatch\n"));
        assert_eq!(out.matches("HTTP/1.1 404 Not Found\r\n").count(), 2);
        assert_eq!(out.matches("\r\n\r\nunknown\n").count(), 2);

        let mut client = Client::new(&post("/userdb/lookup", "", b"user=alice@example.org"));
        run(
            &mut client,
            &mut OneUser {
                down: true,
                ..Default::default()
            },
        );
        let out = client.out();
        assert!(
            out.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{out}"
        );
        assert!(out.ends_with("\r\n\r\ntempfail\terror=database down\n"));
    }

    #[test]
    fn userdb_lookup_returns_canonical_user_and_fields() {
        let mut client = Client::new(&post("/userdb/lookup", "", b"user=alice_example.org\n"));
        run(&mut client, &mut OneUser::default());
        assert!(client.out().ends_with(
            "\r\n\r\nok\tuser=alice@example.org\tuid=5000\tgid=5000\thome=/var/vmail/example.org/alice\tquota_rule=*:storage=1G\n"
        ));
    }

    #[test]
    fn passdb_lookup_returns_the_hash() {
        let mut client = Client::new(&post("/passdb/lookup", "", b"user=alice@example.org"));
        run(&mut client, &mut OneUser::default());
        assert!(client
            .out()
            .ends_with("\r\n\r\nok\tuser=alice@example.org\tpassword={BLF-CRYPT}$2b$05$x\n"));
    }

    #[test]
    fn json_round_trip() {
        let mut client = Client::new(&post(
            "/userdb/lookup",
            "Content-Type: application/json\r\n",
            br#"{"user":"alice@example.org"}"#,
        ));
        run(&mut client, &mut OneUser::default());
        let out = client.out();
        assert!(out.contains("Content-Type: application/json\r\n"), "{out}");
        let body = out.split("\r\n\r\n").nth(1).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(body).expect("JSON body");
        assert_eq!(v["result"], "ok");
        assert_eq!(v["user"], "alice@example.org");
        assert_eq!(v["fields"]["home"], "/var/vmail/example.org/alice");
        assert_eq!(v["fields"]["uid"], "5000");
    }

    #[test]
    fn unauthorized_with_expect_closes_without_reading_body() {
        let head =
            b"POST /passdb/verify HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n";
        let mut client = Client::head_then_gated_body(head, b"user=a\tpw=");
        let mut backend = OneUser::default();
        run(&mut client, &mut backend);
        let out = client.out();
        assert!(out.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{out}");
        assert!(!out.contains("100 Continue"));
        assert!(out.contains("Connection: close\r\n"));
        assert!(backend.calls.is_empty());
    }

    #[test]
    fn refused_request_without_expect_keeps_the_connection() {
        let mut input =
            b"POST /nope HTTP/1.1\r\nAuthorization: Bearer s3cret-token\r\nContent-Length: 6\r\n\r\nuser=a"
                .to_vec();
        input.extend(post("/userdb/lookup", "", b"user=alice@example.org"));
        let mut client = Client::new(&input);
        run(&mut client, &mut OneUser::default());
        let out = client.out();
        assert!(out.starts_with("HTTP/1.1 404 Not Found\r\n"), "{out}");
        assert!(out.contains("\r\n\r\nerror\terror=no such endpoint\n"));
        assert!(out.contains("HTTP/1.1 200 OK\r\n"));
    }

    #[test]
    fn connection_close_stops_after_one_response() {
        let mut input = post(
            "/userdb/lookup",
            "Connection: close\r\n",
            b"user=alice@example.org",
        );
        input.extend(post("/userdb/lookup", "", b"user=alice@example.org"));
        let mut client = Client::new(&input);
        let mut backend = OneUser::default();
        run(&mut client, &mut backend);
        assert_eq!(client.out().matches("HTTP/1.1 200 OK").count(), 1);
        assert!(client.out().contains("Connection: close\r\n"));
        assert_eq!(backend.calls.len(), 1);
    }

    #[test]
    fn chunked_gets_411_and_close() {
        let input = format!(
            "POST /passdb/verify HTTP/1.1\r\nAuthorization: Bearer {SECRET}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nuser=\r\n0\r\n\r\n"
        );
        let mut client = Client::new(input.as_bytes());
        let mut backend = OneUser::default();
        run(&mut client, &mut backend);
        let out = client.out();
        assert!(out.starts_with("HTTP/1.1 411 Length Required\r\n"), "{out}");
        assert!(out.contains("Connection: close\r\n"));
        assert_eq!(out.matches("HTTP/1.1").count(), 1);
        assert!(backend.calls.is_empty());
    }

    #[test]
    fn oversized_body_gets_413() {
        let body = vec![b'x'; MAX_BODY + 1];
        let mut client = Client::new(&post("/passdb/verify", "", &body));
        run(&mut client, &mut OneUser::default());
        assert!(client
            .out()
            .starts_with("HTTP/1.1 413 Content Too Large\r\n"));
    }

    #[test]
    fn bad_body_is_400_and_connection_survives() {
        let mut input = post("/passdb/verify", "", b"user=alice@example.org");
        input.extend(post("/userdb/lookup", "", b"user=alice@example.org"));
        let mut client = Client::new(&input);
        run(&mut client, &mut OneUser::default());
        let out = client.out();
        assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
        assert!(out.contains("error\terror=bad request body: missing password\n"));
        assert!(out.contains("HTTP/1.1 200 OK\r\n"));
    }

    #[test]
    fn http10_keep_alive_is_echoed() {
        let input = format!(
            "POST /userdb/lookup HTTP/1.0\r\nConnection: keep-alive\r\nAuthorization: Bearer {SECRET}\r\nContent-Length: 22\r\n\r\nuser=alice@example.org"
        );
        let mut client = Client::new(input.as_bytes());
        run(&mut client, &mut OneUser::default());
        assert!(client.out().contains("Connection: keep-alive\r\n"));
    }

    #[test]
    fn eof_mid_request_ends_quietly() {
        for input in [
            &b""[..],
            b"POST /passdb/verify HTTP/1.1\r\nHost",
            b"POST /userdb/lookup HTTP/1.1\r\nAuthorization: Bearer s3cret-token\r\nContent-Length: 50\r\n\r\nuser=",
        ] {
            let mut client = Client::new(input);
            let mut backend = OneUser::default();
            run(&mut client, &mut backend);
            assert!(client.output.is_empty(), "{input:?}");
            assert!(backend.calls.is_empty());
        }
    }

    #[test]
    fn garbage_gets_400_and_close() {
        let mut client = Client::new(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n");
        run(&mut client, &mut OneUser::default());
        let out = client.out();
        assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
        assert!(out.contains("Connection: close\r\n"));
    }

    #[test]
    fn invalid_field_names_are_dropped() {
        struct Odd;
        impl ApiBackend for Odd {
            fn passdb_verify(&mut self, _: &str, _: &Secret) -> VerifyResult {
                VerifyResult::Unknown
            }
            fn passdb_lookup(&mut self, _: &str) -> LookupResult {
                LookupResult::Unknown
            }
            fn userdb_lookup(&mut self, user: &str) -> LookupResult {
                LookupResult::Found(Account {
                    user: user.into(),
                    fields: vec![
                        ("a=b".into(), "x".into()),
                        ("user".into(), "someone-else".into()),
                        ("home".into(), "/h\t1".into()),
                    ],
                })
            }
        }
        let request = ApiRequest {
            user: "bob".into(),
            password: None,
        };
        let r = dispatch(Endpoint::UserdbLookup, &request, &mut Odd, Format::Text);
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"ok\tuser=bob\thome=/h\x01t1\n".to_vec());
    }
}
